//! `RetrySettings` as the one source of every setting, the handle and its
//! snapshot, and the registry.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::{BoxError, Handle, Outcome};
use palisade_retry::{
    Backoff, Jitter, Registry, RetryBudget, RetryEvent, RetryHandle, RetryLayer, RetrySettings,
};
use support::{backend, boom};
use tower::{Layer, ServiceExt};

const MS: Duration = Duration::from_millis(1);

#[test]
fn the_setters_and_the_settings_struct_build_the_same_layer() {
    let by_setters = RetryLayer::builder("a")
        .max_attempts(5)
        .backoff(Backoff::fixed(MS * 30))
        .jitter(Jitter::Equal)
        .jitter_seed(7)
        .attempt_timeout(MS * 200)
        .deadline(Duration::from_secs(2))
        .retry_on_attempt_timeout(false)
        .retry_ratio(0.5)
        .min_retries_per_sec(3)
        .budget_ttl(Duration::from_secs(20))
        .build()
        .unwrap();
    let settings = RetrySettings {
        max_attempts: 5,
        backoff: Backoff::fixed(MS * 30),
        jitter: Jitter::Equal,
        jitter_seed: Some(7),
        attempt_timeout: Some(MS * 200),
        deadline: Some(Duration::from_secs(2)),
        retry_on_attempt_timeout: false,
        retry_ratio: 0.5,
        min_retries_per_sec: 3,
        budget_ttl: Duration::from_secs(20),
        ..RetrySettings::default()
    };
    let by_struct = RetryLayer::builder("a")
        .settings(settings.clone())
        .build()
        .unwrap();
    assert_eq!(by_setters.handle().settings(), &settings);
    assert_eq!(by_struct.handle().settings(), &settings);
    let budget = by_struct.budget().unwrap();
    assert_eq!(
        (
            budget.retry_ratio(),
            budget.min_retries_per_sec(),
            budget.ttl()
        ),
        (0.5, 3, Duration::from_secs(20))
    );
}

#[test]
fn build_checks_the_settings_struct_and_the_name() {
    let field = |settings: RetrySettings| {
        RetryLayer::builder("a")
            .settings(settings)
            .build()
            .unwrap_err()
            .field()
            .to_owned()
    };
    let d = RetrySettings::default;
    assert_eq!(
        field(RetrySettings {
            max_attempts: 0,
            ..d()
        }),
        "max_attempts"
    );
    assert_eq!(
        field(RetrySettings {
            budget_ttl: MS * 10,
            ..d()
        }),
        "budget_ttl"
    );
    let err = RetryLayer::builder("").build().unwrap_err();
    assert_eq!(err.field(), "name");
}

#[test]
fn a_shared_budget_is_what_the_settings_in_effect_report() {
    let budget = Arc::new(RetryBudget::new(0.7, 4, Duration::from_secs(30)).unwrap());
    let layer = RetryLayer::builder("a")
        .budget(Arc::clone(&budget))
        .build()
        .unwrap();
    let s = layer.handle().settings().clone();
    assert_eq!(
        (s.retry_ratio, s.min_retries_per_sec, s.budget_ttl),
        (0.7, 4, Duration::from_secs(30))
    );
    assert!(Arc::ptr_eq(layer.budget().unwrap(), &budget));

    // `no_budget` and `budget`: the later call wins.
    let none = RetryLayer::builder("b")
        .budget(Arc::clone(&budget))
        .no_budget()
        .build()
        .unwrap();
    assert!(none.budget().is_none());
    assert!(none.handle().settings().no_budget);
    assert!(none.handle().snapshot().budget.is_none());
    let shared = RetryLayer::builder("c")
        .no_budget()
        .budget(Arc::clone(&budget))
        .build()
        .unwrap();
    assert!(Arc::ptr_eq(shared.budget().unwrap(), &budget));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_snapshot_carries_the_name_the_settings_and_the_budget_figures() {
    let layer = RetryLayer::builder("inventory")
        .max_attempts(2)
        .backoff(Backoff::none())
        .retry_ratio(1.0)
        .min_retries_per_sec(0)
        .build()
        .unwrap();
    let inner = backend(|_, _: u32| Err::<u32, BoxError>(boom()));
    let svc = layer.layer(inner);
    for _ in 0..3 {
        let _ = svc.clone().oneshot(1).await;
    }
    let handle = svc.handle();
    let snapshot = handle.snapshot();
    assert_eq!(&*snapshot.name, "inventory");
    assert_eq!(snapshot.settings.max_attempts, 2);
    let budget = snapshot.budget.unwrap();
    assert_eq!((budget.requests, budget.retries, budget.allowed), (3, 3, 3));
    // The trait and the inherent methods agree.
    assert_eq!(Handle::snapshot(&handle), handle.snapshot());
    assert_eq!(Handle::name(&handle), "inventory");
    assert!(Handle::same_as(&handle, &layer.handle()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_registry_gives_one_instance_per_name_with_each_layers_classifier() {
    let registry = Registry::<RetryHandle>::new();
    let events = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&events);
    let first = RetryLayer::builder("pricing")
        .max_attempts(3)
        .backoff(Backoff::none())
        .on_event(move |e: &RetryEvent| {
            if matches!(e, RetryEvent::Retry { .. }) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .registry(&registry)
        .build()
        .unwrap();
    // Another build under the name: its settings are checked, then the
    // registered instance's apply; its classifier is its own.
    let err = RetryLayer::builder("pricing")
        .max_attempts(0)
        .registry(&registry)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_attempts");
    let second = RetryLayer::builder("pricing")
        .max_attempts(9)
        .classifier(|_: &Result<u32, BoxError>| Outcome::Success)
        .registry(&registry)
        .build()
        .unwrap();
    assert!(first.handle().same_as(&second.handle()));
    assert_eq!(second.max_attempts(), 3);
    assert!(Arc::ptr_eq(
        first.budget().unwrap(),
        second.budget().unwrap()
    ));
    assert_eq!(registry.len(), 1);

    let calls = Arc::new(AtomicUsize::new(0));
    let inner = |calls: &Arc<AtomicUsize>| {
        let calls = Arc::clone(calls);
        tower::service_fn(move |_: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, BoxError>(boom()) }
        })
    };
    let _ = first.layer(inner(&calls)).oneshot(1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "retried by the first");
    let _ = second.layer(inner(&calls)).oneshot(1).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the second's classifier calls every outcome a success"
    );
    // The registered listeners stay: the second layer adds none of its own.
    assert_eq!(events.load(Ordering::SeqCst), 2);
    assert_eq!(registry.snapshots()[0].budget.unwrap().requests, 2);
}

#[cfg(feature = "serde")]
mod serde_form {
    use super::*;

    #[test]
    fn settings_read_from_toml_with_durations_as_strings() {
        let text = r#"
            max_attempts = 4
            backoff = { kind = "exponential", base = "25ms", cap = "1s" }
            jitter = "equal"
            jitter_seed = 9
            attempt_timeout = "300ms"
            deadline = "2s"
            retry_ratio = 0.1
            min_retries_per_sec = 5
            budget_ttl = "30s"
        "#;
        let settings: RetrySettings = toml::from_str(text).unwrap();
        assert_eq!(
            settings,
            RetrySettings {
                max_attempts: 4,
                backoff: Backoff::exponential(MS * 25, 2.0, Duration::from_secs(1)),
                jitter: Jitter::Equal,
                jitter_seed: Some(9),
                attempt_timeout: Some(MS * 300),
                deadline: Some(Duration::from_secs(2)),
                retry_ratio: 0.1,
                min_retries_per_sec: 5,
                budget_ttl: Duration::from_secs(30),
                ..RetrySettings::default()
            }
        );
        assert!(settings.validate().is_ok());
        let empty: RetrySettings = toml::from_str("").unwrap();
        assert_eq!(empty, RetrySettings::default());
    }

    #[test]
    fn every_backoff_kind_reads_and_round_trips() {
        let read = |text: &str| -> Backoff {
            #[derive(serde::Deserialize)]
            struct One {
                backoff: Backoff,
            }
            toml::from_str::<One>(text).unwrap().backoff
        };
        let s = Duration::from_secs;
        for (text, expected) in [
            (r#"backoff = { kind = "none" }"#, Backoff::none()),
            (r#"backoff = { kind = "fixed" }"#, Backoff::fixed(MS * 50)),
            (
                r#"backoff = { kind = "fixed", delay = "1m" }"#,
                Backoff::fixed(s(60)),
            ),
            (
                r#"backoff = { kind = "exponential" }"#,
                Backoff::exponential(MS * 50, 2.0, s(2)),
            ),
            (
                r#"backoff = { kind = "exponential", multiplier = 1.5 }"#,
                Backoff::exponential(MS * 50, 1.5, s(2)),
            ),
            (
                r#"backoff = { kind = "decorrelated", base = "10ms", cap = "500ms" }"#,
                Backoff::decorrelated(MS * 10, MS * 500),
            ),
        ] {
            let backoff = read(text);
            assert_eq!(backoff, expected, "{text}");
            let json = serde_json::to_string(&backoff).unwrap();
            assert_eq!(
                serde_json::from_str::<Backoff>(&json).unwrap(),
                backoff,
                "{json}"
            );
        }
        let json = serde_json::to_value(Backoff::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "exponential", "base": "50ms", "multiplier": 2.0, "cap": "2s"})
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        for text in [
            "max_attempt = 3",
            r#"backoff = { kind = "fixed", base = "1s" }"#,
            r#"backoff = { kind = "linear" }"#,
            r#"jitter = "some""#,
            r#"deadline = "2 fortnights""#,
            "deadline = 2000",
        ] {
            assert!(toml::from_str::<RetrySettings>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn settings_round_trip_through_json() {
        let settings = RetrySettings {
            deadline: Some(MS * 1500),
            backoff: Backoff::decorrelated(MS * 5, Duration::from_secs(3)),
            jitter: Jitter::None,
            ..RetrySettings::default()
        };
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["deadline"], "1s 500ms");
        assert_eq!(json["budget_ttl"], "10s");
        assert_eq!(json["jitter"], "none");
        assert_eq!(json["attempt_timeout"], serde_json::Value::Null);
        let back: RetrySettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, settings);
    }

    #[test]
    fn the_snapshot_serializes() {
        let layer = RetryLayer::builder("inventory").build().unwrap();
        let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
        assert_eq!(json["name"], "inventory");
        assert_eq!(json["settings"]["max_attempts"], 3);
        assert_eq!(json["budget"]["requests"], 0);
        assert_eq!(json["budget"]["allowed"], 0);
    }

    #[cfg(feature = "http")]
    #[test]
    fn http_settings_read_from_toml() {
        let text = r#"
            max_body_bytes = 1024
            retry_non_idempotent = true
            idempotency_key_header = "x-request-key"
            attempt_header = "x-attempt"
            honor_retry_after = false
            max_retry_after = "30s"
        "#;
        let settings: RetrySettings = toml::from_str(text).unwrap();
        assert_eq!(settings.max_body_bytes, 1024);
        assert!(settings.retry_non_idempotent);
        assert_eq!(settings.idempotency_key_header, "x-request-key");
        assert_eq!(settings.attempt_header.as_deref(), Some("x-attempt"));
        assert!(!settings.honor_retry_after);
        assert_eq!(settings.max_retry_after, Duration::from_secs(30));
        let layer = RetryLayer::http_builder("gateway")
            .settings(settings.clone())
            .build()
            .unwrap();
        assert_eq!(layer.handle().settings(), &settings);
        let bad: RetrySettings = toml::from_str(r#"attempt_header = "x attempt""#).unwrap();
        let err = RetryLayer::http_builder("gateway")
            .settings(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "attempt_header");
    }
}
