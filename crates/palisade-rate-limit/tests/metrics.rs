//! Metrics by tier, never by key.

mod support;

use std::time::Duration;

use palisade_rate_limit::{Key, Limit, Rate, RateLimitLayer};
use palisade_test_util::MetricsCapture;
use support::{Echo, admitted, call_now};
use tower::Layer;

fn by_key<'a>(k: &'a (&'static str, &'static str)) -> Option<Key<'a>> {
    Some(Key::text(k.0).with_class(k.1))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn metrics_are_labelled_by_tier_never_by_key() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = RateLimitLayer::builder("api")
        .rate(Rate::per_second(1))
        .burst(1)
        .tier("paid", Limit::new(Rate::per_second(10), 2))
        .max_keys(3)
        .max_delay(Duration::from_millis(150))
        .key_by(by_key)
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert!(admitted(&mut svc, ("secret-key-1", "paid")));
    assert!(admitted(&mut svc, ("secret-key-1", "paid")));
    // The third waits 100 ms for its slot (and is dropped here: its slot
    // comes back).
    assert!(call_now(&mut svc, ("secret-key-1", "paid")).is_none());
    assert!(admitted(&mut svc, ("secret-key-2", "default")));
    assert!(!admitted(&mut svc, ("secret-key-2", "default")));
    assert!(call_now(&mut svc, ("", "default")).unwrap().is_err());
    assert!(admitted(&mut svc, ("k3", "default")));
    assert!(admitted(&mut svc, ("k4", "default")), "the overflow key");

    let calls = |class, outcome| {
        capture.counter(
            "palisade_rate_limit_calls_total",
            &[("name", "api"), ("class", class), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("paid", "admitted"), 2);
    assert_eq!(calls("paid", "delayed"), 1);
    assert_eq!(calls("default", "admitted"), 3);
    assert_eq!(calls("default", "limited"), 1);
    assert_eq!(
        capture.histogram(
            "palisade_rate_limit_delay_seconds",
            &[("name", "api"), ("class", "paid")]
        ),
        vec![0.1]
    );
    assert_eq!(
        capture.gauge(
            "palisade_rate_limit_rate",
            &[("name", "api"), ("class", "paid")]
        ),
        Some(10.0)
    );
    assert_eq!(
        capture.gauge(
            "palisade_rate_limit_burst",
            &[("name", "api"), ("class", "default")]
        ),
        Some(1.0)
    );
    assert_eq!(
        capture.gauge("palisade_rate_limit_keys", &[("name", "api")]),
        Some(3.0)
    );
    assert_eq!(
        capture.counter("palisade_rate_limit_overflow_total", &[("name", "api")]),
        1
    );
    assert_eq!(
        capture.counter(
            "palisade_rate_limit_invalid_keys_total",
            &[("name", "api"), ("reason", "empty")]
        ),
        1
    );
    // No series carries a key.
    for name in capture.names() {
        assert!(!name.contains("secret"), "{name}");
    }
    let rendered = format!("{capture:?}");
    assert!(
        !rendered.contains("secret-key"),
        "a key leaked into the metrics: {rendered}"
    );
    // A limit change is published.
    layer
        .handle()
        .set_limit("paid", Limit::new(Rate::per_minute(30), 5))
        .unwrap();
    assert_eq!(
        capture.gauge(
            "palisade_rate_limit_rate",
            &[("name", "api"), ("class", "paid")]
        ),
        Some(0.5)
    );
}
