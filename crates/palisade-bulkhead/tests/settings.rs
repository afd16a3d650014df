//! `BulkheadSettings`: the one source of every plain-data setting. The
//! builder's setters and `.settings(s)` build the same bulkhead, `validate`
//! has no side effect, the snapshot reports the settings in force, and with
//! the `serde` feature the settings read from TOML and the snapshot writes
//! JSON.

use std::borrow::Cow;
use std::time::Duration;

use palisade_bulkhead::partition::OVERFLOW;
use palisade_bulkhead::{Aimd, BulkheadLayer, BulkheadSettings, Gradient};
use palisade_test_util::MetricsCapture;

#[allow(clippy::ptr_arg, reason = "the request type is `String`")]
fn by_str(s: &String) -> Option<Cow<'_, str>> {
    Some(Cow::Borrowed(s.as_str()))
}

fn every_setting() -> BulkheadSettings {
    BulkheadSettings {
        max_concurrent_calls: 7,
        max_wait: Some(Duration::from_millis(50)),
        max_queue: Some(9),
        backpressure: false,
        max_partitions: 11,
        partition_idle_timeout: Duration::from_secs(5),
        overflow_limit: Some(3),
        partition_metrics: false,
        adaptive: None,
    }
}

#[test]
fn settings_and_setters_build_the_same_bulkhead() {
    let s = every_setting();
    let by_setters = BulkheadLayer::builder("a")
        .max_concurrent_calls(s.max_concurrent_calls)
        .max_wait(s.max_wait.unwrap())
        .max_queue(s.max_queue.unwrap())
        .backpressure(s.backpressure)
        .max_partitions(s.max_partitions)
        .partition_idle_timeout(s.partition_idle_timeout)
        .overflow_limit(s.overflow_limit.unwrap())
        .partition_metrics(s.partition_metrics)
        .partition_by(by_str)
        .build()
        .unwrap();
    let by_settings = BulkheadLayer::builder("a")
        .partition_by(by_str)
        .settings(s.clone())
        .build()
        .unwrap();
    let (one, two) = (
        by_setters.handle().snapshot(),
        by_settings.handle().snapshot(),
    );
    assert_eq!(one.settings, s);
    assert_eq!(one, two);
    // A setter after `.settings(s)` changes that one field.
    let tweaked = BulkheadLayer::builder("b")
        .settings(s)
        .max_queue(1)
        .build()
        .unwrap();
    assert_eq!(tweaked.handle().snapshot().settings.max_queue, Some(1));
    assert_eq!(tweaked.handle().limit(), 7);
}

#[test]
fn build_refuses_what_validate_refuses_with_the_same_field() {
    let bad = BulkheadSettings {
        adaptive: Some(Gradient::new().smoothing(0.0).into()),
        ..BulkheadSettings::default()
    };
    let field = bad.validate().unwrap_err().field().to_owned();
    assert_eq!(field, "smoothing");
    let built = BulkheadLayer::builder("x").settings(bad).build();
    assert_eq!(built.unwrap_err().field(), field);
}

#[test]
fn validate_registers_nothing() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    assert!(every_setting().validate().is_ok());
    assert!(
        BulkheadSettings {
            max_concurrent_calls: 0,
            ..every_setting()
        }
        .validate()
        .is_err()
    );
    assert!(capture.names().is_empty(), "{:?}", capture.names());
    // Building does register its metrics.
    let _layer = BulkheadLayer::builder("built")
        .settings(every_setting())
        .build()
        .unwrap();
    assert!(!capture.names().is_empty());
}

#[test]
fn the_snapshot_reports_the_settings_in_force() {
    let layer = BulkheadLayer::builder("live")
        .max_concurrent_calls(4)
        .partition_by(by_str)
        .build()
        .unwrap();
    let handle = layer.handle();
    let resolved = handle.snapshot().settings;
    assert_eq!(
        resolved,
        BulkheadSettings {
            max_concurrent_calls: 4,
            max_wait: Some(Duration::ZERO),
            overflow_limit: Some(4),
            ..BulkheadSettings::default()
        },
        "defaults resolved"
    );
    handle.set_limit(6).unwrap();
    handle.set_max_wait(Duration::from_millis(20));
    handle.set_max_queue(Some(2)).unwrap();
    handle.set_partition_limit(OVERFLOW, 0).unwrap();
    let live = handle.settings();
    assert_eq!(live, handle.snapshot().settings);
    assert_eq!(
        (
            live.max_concurrent_calls,
            live.max_wait,
            live.max_queue,
            live.overflow_limit
        ),
        (6, Some(Duration::from_millis(20)), Some(2), Some(0))
    );

    // Backpressure waits without a deadline by default; an adaptive limit
    // keeps its `max_concurrent_calls` (ignored) and reports its limiter.
    let bp = BulkheadLayer::builder("bp")
        .backpressure(true)
        .adaptive(Aimd::new().initial_limit(5).max_limit(10))
        .build()
        .unwrap();
    let settings = bp.handle().settings();
    assert_eq!(settings.max_wait, Some(Duration::MAX));
    assert_eq!(settings.max_concurrent_calls, 25);
    assert_eq!(
        settings.adaptive,
        Some(Aimd::new().initial_limit(5).max_limit(10).into())
    );
    assert_eq!(bp.handle().limit(), 5);
}

#[cfg(feature = "serde")]
mod serde {
    use super::*;

    #[test]
    fn settings_read_from_toml_with_duration_strings() {
        let settings: BulkheadSettings = toml::from_str(
            r#"
                max_concurrent_calls = 7
                max_wait = "50ms"
                max_queue = 9
                max_partitions = 11
                partition_idle_timeout = "5s"
                overflow_limit = 3
                partition_metrics = false
            "#,
        )
        .unwrap();
        assert_eq!(settings, every_setting());
        // Every key is optional.
        let empty: BulkheadSettings = toml::from_str("").unwrap();
        assert_eq!(empty, BulkheadSettings::default());
        // No deadline is spelled out.
        let forever: BulkheadSettings = toml::from_str(r#"max_wait = "forever""#).unwrap();
        assert_eq!(forever.max_wait, Some(Duration::MAX));
    }

    #[test]
    fn an_adaptive_limit_names_its_algorithm() {
        let settings: BulkheadSettings = toml::from_str(
            r#"
                [adaptive]
                algorithm = "aimd"
                min_limit = 5
                max_limit = 50
                latency_threshold = "250ms"
            "#,
        )
        .unwrap();
        assert_eq!(
            settings.adaptive,
            Some(
                Aimd::new()
                    .min_limit(5)
                    .max_limit(50)
                    .latency_threshold(Duration::from_millis(250))
                    .into()
            )
        );
        let gradient: BulkheadSettings = toml::from_str(
            r#"
                adaptive = { algorithm = "gradient", smoothing = 0.5, long_window = 100 }
            "#,
        )
        .unwrap();
        assert_eq!(
            gradient.adaptive,
            Some(Gradient::new().smoothing(0.5).long_window(100).into())
        );
        assert!(gradient.validate().is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        for (text, needle) in [
            ("max_concurent_calls = 3", "max_concurent_calls"),
            ("max_wait = 50", "string"),
            (r#"max_wait = "soon""#, "soon"),
            (r#"partition_idle_timeout = "1 fortnight""#, "fortnight"),
            ("adaptive = { algorithm = \"vegas\" }", "vegas"),
            (
                "adaptive = { algorithm = \"aimd\", smoothing = 0.5 }",
                "smoothing",
            ),
        ] {
            let err = toml::from_str::<BulkheadSettings>(text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn settings_round_trip() {
        let settings = BulkheadSettings {
            max_wait: Some(Duration::MAX),
            adaptive: Some(Gradient::new().initial_limit(30).into()),
            ..every_setting()
        };
        let text = toml::to_string(&settings).unwrap();
        assert!(text.contains(r#"max_wait = "forever""#), "{text}");
        assert!(text.contains(r#"partition_idle_timeout = "5s""#), "{text}");
        let back: BulkheadSettings = toml::from_str(&text).unwrap();
        assert_eq!(back, settings);
        // `None` fields are left out, and read back as `None`.
        let defaults = toml::to_string(&BulkheadSettings::default()).unwrap();
        assert!(!defaults.contains("max_wait"), "{defaults}");
        assert_eq!(
            toml::from_str::<BulkheadSettings>(&defaults).unwrap(),
            BulkheadSettings::default()
        );
    }

    #[test]
    fn the_snapshot_serializes_with_its_settings() {
        let layer = BulkheadLayer::builder("inventory")
            .max_concurrent_calls(2)
            .max_wait(Duration::from_millis(50))
            .partition_by(by_str)
            .build()
            .unwrap();
        let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
        assert_eq!(json["name"], "inventory");
        assert_eq!(json["limit"], 2);
        assert_eq!(json["max_wait"], "50ms");
        assert_eq!(json["in_flight"], 0);
        assert_eq!(json["pools"][1]["partition"], "(overflow)");
        assert_eq!(json["settings"]["max_wait"], "50ms");
        assert_eq!(json["settings"]["partition_idle_timeout"], "1m");
        assert_eq!(json["settings"]["overflow_limit"], 2);
        let bp = BulkheadLayer::builder("bp")
            .backpressure(true)
            .build()
            .unwrap();
        let json = serde_json::to_value(bp.handle().snapshot()).unwrap();
        assert_eq!(json["max_wait"], "forever");
        assert_eq!(json["pools"][0]["partition"], serde_json::Value::Null);
    }
}
