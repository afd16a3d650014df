//! The key table: bounded under a flood of distinct keys, idle keys
//! evicted, and every request gets a defined key or a defined refusal.

mod support;

use std::time::Duration;

use palisade_core::{BoxError, is_rejection};
use palisade_rate_limit::error::{InvalidKey, KeyProblem};
use palisade_rate_limit::{Key, MissingKey, Rate, RateLimitLayer};
use support::{Echo, admitted, call_now};
use tokio::time::advance;
use tower::Layer;

fn key_of(n: &u64) -> Option<Key<'_>> {
    Some(Key::owned(format!("client-{n}")))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_million_distinct_keys_at_once_stay_within_max_keys() {
    let max_keys = 100_000;
    let layer = RateLimitLayer::builder("flood")
        .rate(Rate::per_second(1))
        .burst(1)
        .max_keys(max_keys)
        .key_by(key_of)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    let mut admitted_count = 0u64;
    for n in 0..1_000_000u64 {
        if admitted(&mut svc, n) {
            admitted_count += 1;
        }
        if n % 10_000 == 0 {
            assert!(
                handle.keys() <= max_keys,
                "{} keys after {n} calls",
                handle.keys()
            );
        }
    }
    // The table holds exactly `max_keys`; every newcomer beyond them shared
    // one overflow allowance (of the default tier: one call per second).
    assert_eq!(handle.keys(), max_keys);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.overflowed, 900_000);
    assert_eq!(admitted_count, max_keys as u64 + 1);
    // A key already held is unaffected by the flood.
    advance(Duration::from_secs(1)).await;
    assert!(admitted(&mut svc, 7));
    // Once their allowance is whole again the keys are idle: evicted.
    advance(Duration::from_secs(2)).await;
    assert_eq!(handle.evict_idle(), max_keys);
    assert_eq!(handle.keys(), 0);
    assert!(
        admitted(&mut svc, 1_000_001),
        "new keys get their own entry again"
    );
    assert_eq!(handle.keys(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_keys_are_evicted_as_new_ones_arrive() {
    // A steady stream of new keys, each idle one second after its call: the
    // table holds about a second's worth of them (each shard sweeps at most
    // once a second), never the whole stream.
    let layer = RateLimitLayer::builder("stream")
        .rate(Rate::per_second(1))
        .burst(1)
        .max_keys(1_000_000)
        .key_by(key_of)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    let mut most = 0;
    for n in 0..300_000u64 {
        assert!(admitted(&mut svc, n), "every key is new");
        if n % 1_000 == 999 {
            // 1000 new keys per 100 ms: 10 000 per second.
            advance(Duration::from_millis(100)).await;
        }
        most = most.max(handle.keys());
    }
    assert!(most <= 25_000, "at most ~2 s of keys held, saw {most}");
    assert_eq!(handle.snapshot().overflowed, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unusable_keys_are_refused_and_not_counted() {
    let layer = RateLimitLayer::builder("bad")
        .rate(Rate::per_second(1))
        .burst(1)
        .max_key_len(16)
        .key_by(|k: &String| Some(Key::text(k)))
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    for (key, problem) in [
        ("x".repeat(17), KeyProblem::TooLong),
        (String::new(), KeyProblem::Empty),
    ] {
        let err: BoxError = call_now(&mut svc, key).unwrap().unwrap_err();
        let invalid = err.downcast_ref::<InvalidKey>().expect("an invalid key");
        assert_eq!((invalid.name(), invalid.problem()), ("bad", problem));
        assert!(!is_rejection(&*err));
    }
    assert!(admitted(&mut svc, "x".repeat(16)), "16 bytes is fine");
    let snapshot = layer.handle().snapshot();
    assert_eq!(snapshot.invalid_keys, 2);
    assert_eq!(snapshot.tiers[0].admitted + snapshot.tiers[0].limited, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn requests_without_a_key_follow_the_missing_key_setting() {
    fn by_key<'r>(k: &'r Option<&'static str>) -> Option<Key<'r>> {
        k.map(Key::text)
    }
    let build = |missing| {
        RateLimitLayer::builder("missing")
            .rate(Rate::per_hour(1))
            .burst(2)
            .missing_key(missing)
            .key_by(by_key)
            .build()
            .unwrap()
            .layer(Echo)
    };
    // Shared: requests without a key share one allowance.
    let mut svc = build(MissingKey::Shared);
    assert!(admitted(&mut svc, None));
    assert!(admitted(&mut svc, None));
    assert!(!admitted(&mut svc, None));
    assert!(
        admitted(&mut svc, Some("k")),
        "keyed requests keep their own"
    );
    // Reject: a 400-class error, uncounted.
    let mut svc = build(MissingKey::Reject);
    let err = call_now(&mut svc, None).unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<InvalidKey>().unwrap().problem(),
        KeyProblem::Missing
    );
    // Bypass: never limited.
    let mut svc = build(MissingKey::Bypass);
    for _ in 0..10 {
        assert!(admitted(&mut svc, None));
    }
    assert!(
        svc.handle().snapshot().tiers[0].admitted == 0,
        "bypassed calls are not counted"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_full_table_limits_newcomers_together_and_recovers() {
    let layer = RateLimitLayer::builder("small")
        .rate(Rate::per_second(1))
        .burst(1)
        .max_keys(2)
        .key_by(key_of)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    assert!(admitted(&mut svc, 1));
    assert!(admitted(&mut svc, 2));
    // Full: key 3 uses the overflow allowance, and key 4 shares it.
    assert!(admitted(&mut svc, 3));
    assert!(!admitted(&mut svc, 4));
    assert_eq!(handle.keys(), 2);
    // After keys 1 and 2 are idle and their shard's sweep is due, room is
    // made on the next new key.
    advance(Duration::from_secs(2)).await;
    assert!(admitted(&mut svc, 5));
    assert!(admitted(&mut svc, 6));
    assert_eq!(handle.keys(), 2);
    assert_eq!(handle.snapshot().overflowed, 2);
}
