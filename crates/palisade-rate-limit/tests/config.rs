//! Settings: validation through the builder and the handle, serde, the
//! registry.

mod support;

use std::time::Duration;

use palisade_rate_limit::{Limit, Rate, RateLimitLayer, RateLimitRegistry};
use support::{Echo, admitted};
use tower::Layer;

#[test]
fn bad_settings_name_their_setter() {
    let field =
        |b: palisade_rate_limit::RateLimitBuilder| b.build().unwrap_err().field().to_owned();
    let b = || RateLimitLayer::builder("x");
    assert_eq!(field(RateLimitLayer::builder("")), "name");
    assert_eq!(field(b().rate(Rate::per_second(0))), "rate");
    assert_eq!(
        field(b().rate(Rate::new(1_000, Duration::from_nanos(10)))),
        "rate"
    );
    assert_eq!(field(b().burst(0)), "burst");
    assert_eq!(
        field(b().tier("a b", Limit::new(Rate::per_second(1), 1))),
        "tiers"
    );
    assert_eq!(
        field(b().tier("t", Limit::new(Rate::per_second(1), 0))),
        "tiers"
    );
    assert_eq!(field(b().key_tier("k", "nowhere")), "key_tiers");
    assert_eq!(field(b().max_delay(Duration::from_secs(3601))), "max_delay");
    assert_eq!(field(b().max_keys(0)), "max_keys");
    assert_eq!(field(b().max_key_len(100_000)), "max_key_len");
    assert_eq!(
        field(b().backend_timeout(Duration::ZERO)),
        "backend_timeout"
    );
    let mut b = b();
    for n in 0..64 {
        b = b.tier(format!("t{n}"), Limit::new(Rate::per_second(1), 1));
    }
    assert_eq!(field(b), "tiers");
}

#[test]
fn the_handle_validates_what_it_changes() {
    let handle = RateLimitLayer::builder("h").build().unwrap().handle();
    assert_eq!(
        handle
            .set_limit("default", Limit::new(Rate::per_second(1), 0))
            .unwrap_err()
            .field(),
        "limit"
    );
    assert_eq!(
        handle
            .set_limit("bad name", Limit::new(Rate::per_second(1), 1))
            .unwrap_err()
            .field(),
        "tiers"
    );
    assert!(handle.set_key_tier("k", Some("gold")).is_err());
    assert!(handle.set_key_tier("", Some("default")).is_err());
    assert!(handle.set_max_delay(Duration::from_secs(7200)).is_err());
    // Adding tiers up to the bound.
    for n in 1..64 {
        handle
            .set_limit(&format!("t{n}"), Limit::new(Rate::per_second(1), 1))
            .unwrap();
    }
    assert_eq!(handle.limits().len(), 64);
    assert!(
        handle
            .set_limit("one-too-many", Limit::new(Rate::per_second(1), 1))
            .is_err()
    );
}

#[cfg(feature = "serde")]
#[test]
fn settings_round_trip_through_toml_and_the_snapshot_serializes() {
    use palisade_rate_limit::{FailureMode, MissingKey, RateLimitSettings};
    let text = r#"
        rate = "6000/min"
        burst = 50
        max_delay = "250ms"
        max_keys = 5000
        missing_key = "reject"
        failure_mode = "closed"
        backend_timeout = "20ms"
        key_prefix = "gw:rl:"
        [tiers.free]
        rate = "1/s"
        burst = 5
        [tiers.paid]
        rate = "100/100ms"
        burst = 1000
        [key_tiers]
        "key-1" = "paid"
        "10.0.0.1" = "free"
    "#;
    let settings: RateLimitSettings = toml::from_str(text).unwrap();
    settings.validate().unwrap();
    assert_eq!(settings.rate, Rate::per_minute(6000));
    assert_eq!(settings.max_delay, Duration::from_millis(250));
    assert_eq!(settings.missing_key, MissingKey::Reject);
    assert_eq!(settings.failure_mode, FailureMode::Closed);
    assert_eq!(
        settings.tiers["paid"],
        Limit::new(Rate::new(100, Duration::from_millis(100)), 1000)
    );
    let again: RateLimitSettings = toml::from_str(&toml::to_string(&settings).unwrap()).unwrap();
    assert_eq!(again, settings);
    // Unknown keys and bad values are errors, not silently ignored.
    assert!(toml::from_str::<RateLimitSettings>("rates = \"1/s\"").is_err());
    assert!(toml::from_str::<RateLimitSettings>("rate = \"fast\"").is_err());
    assert!(toml::from_str::<RateLimitSettings>("max_delay = \"soon\"").is_err());

    let layer = RateLimitLayer::builder("from-toml")
        .settings(settings)
        .build()
        .unwrap();
    let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
    assert_eq!(json["name"], "from-toml");
    assert_eq!(json["max_delay"], "250ms");
    assert_eq!(json["tiers"][1]["name"], "free");
    assert_eq!(json["tiers"][1]["limit"]["rate"], "1/s");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_registry_name_shares_one_limiter() {
    let registry = RateLimitRegistry::new();
    let first = RateLimitLayer::builder("api")
        .rate(Rate::per_hour(1))
        .burst(2)
        .registry(&registry)
        .build()
        .unwrap();
    // Built again under the same name (say, once per route): the same state,
    // whatever this builder's own settings.
    let second = RateLimitLayer::builder("api")
        .burst(1_000)
        .registry(&registry)
        .build()
        .unwrap();
    assert!(first.handle().same_limiter(&second.handle()));
    let mut a = first.layer(Echo);
    let mut b = second.layer(Echo);
    assert!(admitted(&mut a, 1));
    assert!(admitted(&mut b, 2));
    assert!(!admitted(&mut a, 3));
    assert!(!admitted(&mut b, 4));
    assert_eq!(registry.names(), vec!["api".to_owned()]);
    assert_eq!(registry.get("api").unwrap().snapshot().tiers[0].limited, 2);
}
