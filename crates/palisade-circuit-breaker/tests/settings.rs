//! `CircuitBreakerSettings`: defaults, validation without side effects, the
//! builder taking them whole, and (feature `serde`) their TOML/JSON shape.

use std::time::Duration;

use palisade_circuit_breaker::{
    CircuitBreakerLayer, CircuitBreakerSettings, DEFAULT_MINIMUM_CALLS, SlidingWindow, State,
};

#[test]
fn defaults_are_the_builders() {
    let settings = CircuitBreakerSettings::default();
    assert!(settings.validate().is_ok());
    assert_eq!(
        settings.sliding_window,
        SlidingWindow::Count(DEFAULT_MINIMUM_CALLS)
    );
    let from_builder = CircuitBreakerLayer::builder("a").build().unwrap();
    let from_settings = CircuitBreakerLayer::builder("b")
        .settings(settings.clone())
        .build()
        .unwrap();
    assert_eq!(
        from_builder.handle().config(),
        from_settings.handle().config()
    );
    assert_eq!(from_settings.handle().settings(), &settings);
}

#[test]
fn the_builder_takes_settings_whole_and_setters_apply_on_top() {
    let settings = CircuitBreakerSettings {
        sliding_window: SlidingWindow::Time(Duration::from_secs(30)),
        failure_rate_threshold: 25.0,
        wait_in_open: Duration::from_secs(5),
        initial_state: State::MetricsOnly,
        ..CircuitBreakerSettings::default()
    };
    let layer = CircuitBreakerLayer::builder("s")
        .settings(settings)
        .permitted_calls_in_half_open(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let c = handle.config();
    assert_eq!(
        c.sliding_window,
        SlidingWindow::Time(Duration::from_secs(30))
    );
    assert_eq!(c.failure_rate_threshold, Some(25.0));
    assert_eq!(c.minimum_calls, 10, "a time window's default");
    assert_eq!(c.wait_in_open, Duration::from_secs(5));
    assert_eq!(c.max_wait_in_open, Duration::from_secs(50));
    assert_eq!(c.permitted_calls_in_half_open, 3);
    assert_eq!(handle.state(), State::MetricsOnly);
    assert_eq!(handle.settings().permitted_calls_in_half_open, 3);
}

#[test]
fn validate_names_the_bad_setting_as_build_does() {
    let cases = [
        (
            CircuitBreakerSettings {
                sliding_window: SlidingWindow::Count(0),
                ..CircuitBreakerSettings::default()
            },
            "count_window",
        ),
        (
            CircuitBreakerSettings {
                failure_rate_threshold: 101.0,
                ..CircuitBreakerSettings::default()
            },
            "failure_rate_threshold",
        ),
        (
            CircuitBreakerSettings {
                minimum_calls: Some(0),
                ..CircuitBreakerSettings::default()
            },
            "minimum_calls",
        ),
        (
            CircuitBreakerSettings {
                initial_state: State::HalfOpen,
                ..CircuitBreakerSettings::default()
            },
            "initial_state",
        ),
    ];
    for (settings, field) in cases {
        assert_eq!(settings.validate().unwrap_err().field(), field);
        let err = CircuitBreakerLayer::builder("bad")
            .settings(settings)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), field);
    }
}

#[cfg(feature = "serde")]
#[test]
fn settings_read_from_json_with_duration_strings_and_refuse_unknown_keys() {
    let settings: CircuitBreakerSettings = serde_json::from_str(
        r#"{
            "sliding_window": { "time": "1m" },
            "failure_rate_threshold": 40.0,
            "wait_in_open": "250ms",
            "max_wait_in_open": "10s",
            "initial_state": "forced_open"
        }"#,
    )
    .unwrap();
    assert_eq!(
        settings,
        CircuitBreakerSettings {
            sliding_window: SlidingWindow::Time(Duration::from_secs(60)),
            failure_rate_threshold: 40.0,
            wait_in_open: Duration::from_millis(250),
            max_wait_in_open: Some(Duration::from_secs(10)),
            initial_state: State::ForcedOpen,
            ..CircuitBreakerSettings::default()
        }
    );
    let back = serde_json::to_value(&settings).unwrap();
    assert_eq!(back["wait_in_open"], "250ms");
    assert_eq!(back["sliding_window"]["time"], "1m");
    let err =
        serde_json::from_str::<CircuitBreakerSettings>(r#"{ "wait_in_open_ms": 5 }"#).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[cfg(feature = "serde")]
#[test]
fn a_snapshot_serializes_with_its_effective_settings() {
    let layer = CircuitBreakerLayer::builder("orders")
        .count_window(20)
        .build()
        .unwrap();
    layer.handle().force_open();
    let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
    assert_eq!(json["name"], "orders");
    assert_eq!(json["state"], "forced_open");
    assert_eq!(json["config"]["sliding_window"]["count"], 20);
    assert_eq!(json["config"]["minimum_calls"], 20);
    assert_eq!(json["config"]["wait_in_open"], "30s");
}
