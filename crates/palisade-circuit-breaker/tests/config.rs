//! Every setting is validated by `build`, with the setter's name as the field.

use std::time::Duration;

use palisade_circuit_breaker::{
    CircuitBreakerBuilder, CircuitBreakerLayer, DEFAULT_MINIMUM_CALLS,
    DEFAULT_TIME_WINDOW_MINIMUM_CALLS, MAX_DURATION, SlidingWindow, State,
};

fn error(builder: CircuitBreakerBuilder) -> (String, String) {
    let err = builder.build().expect_err("invalid settings");
    (err.field().to_owned(), err.to_string())
}

fn b() -> CircuitBreakerBuilder {
    CircuitBreakerLayer::builder("cfg")
}

#[test]
fn bad_settings_name_their_setter() {
    let cases: Vec<(CircuitBreakerBuilder, &str)> = vec![
        (CircuitBreakerLayer::builder(""), "name"),
        (b().count_window(0), "count_window"),
        (b().count_window(1_000_001), "count_window"),
        (b().time_window(Duration::ZERO), "time_window"),
        (b().time_window(Duration::from_millis(1_500)), "time_window"),
        (b().time_window(Duration::from_secs(3_601)), "time_window"),
        (b().failure_rate_threshold(0.0), "failure_rate_threshold"),
        (b().failure_rate_threshold(100.5), "failure_rate_threshold"),
        (
            b().failure_rate_threshold(f64::NAN),
            "failure_rate_threshold",
        ),
        (b().failure_rate_threshold(-1.0), "failure_rate_threshold"),
        (
            b().failure_rate_threshold(0.000_01),
            "failure_rate_threshold",
        ),
        (b().slow_call_duration(Duration::ZERO), "slow_call_duration"),
        (
            b().slow_call_rate_threshold(50.0),
            "slow_call_rate_threshold",
        ),
        (
            b().slow_call_duration(Duration::from_secs(1))
                .slow_call_rate_threshold(0.0),
            "slow_call_rate_threshold",
        ),
        (b().consecutive_failures(0), "consecutive_failures"),
        (b().trip_on_failure_rate(false), "trip_on_failure_rate"),
        (b().minimum_calls(0), "minimum_calls"),
        (b().wait_in_open(Duration::ZERO), "wait_in_open"),
        (b().wait_in_open_multiplier(0.5), "wait_in_open_multiplier"),
        (
            b().wait_in_open_multiplier(f64::INFINITY),
            "wait_in_open_multiplier",
        ),
        (
            b().wait_in_open(Duration::from_secs(10))
                .max_wait_in_open(Duration::from_secs(9)),
            "max_wait_in_open",
        ),
        (b().wait_in_open_jitter(1.5), "wait_in_open_jitter"),
        (b().wait_in_open_jitter(-0.1), "wait_in_open_jitter"),
        (
            b().permitted_calls_in_half_open(0),
            "permitted_calls_in_half_open",
        ),
        (
            b().permitted_calls_in_half_open(4_096),
            "permitted_calls_in_half_open",
        ),
        (
            b().max_wait_in_half_open(Duration::ZERO),
            "max_wait_in_half_open",
        ),
        (b().initial_state(State::Open), "initial_state"),
        (b().initial_state(State::HalfOpen), "initial_state"),
    ];
    for (builder, field) in cases {
        let (got, message) = error(builder);
        assert_eq!(got, field, "{message}");
        assert!(
            message.starts_with(&format!("invalid `{field}`: ")),
            "{message}"
        );
    }
}

#[test]
fn defaults() {
    let layer = b().build().unwrap();
    let c = layer.handle().config().clone();
    assert_eq!(c.sliding_window, SlidingWindow::Count(100));
    assert_eq!(c.failure_rate_threshold, Some(50.0));
    assert_eq!(c.slow_call_duration, None);
    assert_eq!(c.slow_call_rate_threshold, None);
    assert_eq!(c.consecutive_failures, None);
    assert_eq!(c.minimum_calls, DEFAULT_MINIMUM_CALLS);
    assert_eq!(c.minimum_calls, 100);
    assert_eq!(c.wait_in_open, Duration::from_secs(30));
    assert_eq!(c.wait_in_open_multiplier, 1.0);
    assert_eq!(c.max_wait_in_open, Duration::from_secs(300));
    assert_eq!(c.wait_in_open_jitter, 0.0);
    assert_eq!(c.permitted_calls_in_half_open, 10);
    assert_eq!(c.max_wait_in_half_open, Duration::from_secs(60));
    assert_eq!(c.initial_state, State::Closed);
}

#[test]
fn effective_values() {
    // The minimum is capped at a count window's size, not a time window's.
    let c = b()
        .count_window(20)
        .build()
        .unwrap()
        .handle()
        .config()
        .clone();
    assert_eq!(c.minimum_calls, 20);
    let c = b()
        .time_window(Duration::from_secs(60))
        .minimum_calls(500)
        .build()
        .unwrap()
        .handle()
        .config()
        .clone();
    assert_eq!(c.minimum_calls, 500);
    assert_eq!(
        c.sliding_window,
        SlidingWindow::Time(Duration::from_secs(60))
    );
    // A time window's own default, whatever its length.
    for secs in [1, 60, 3_600] {
        let c = b()
            .time_window(Duration::from_secs(secs))
            .build()
            .unwrap()
            .handle()
            .config()
            .clone();
        assert_eq!(c.minimum_calls, DEFAULT_TIME_WINDOW_MINIMUM_CALLS);
        assert_eq!(c.minimum_calls, 10);
    }
    // Slow-call detection brings its threshold; rate trips can be off.
    let c = b()
        .slow_call_duration(Duration::from_secs(2))
        .trip_on_failure_rate(false)
        .build()
        .unwrap()
        .handle()
        .config()
        .clone();
    assert_eq!(c.slow_call_rate_threshold, Some(100.0));
    assert_eq!(c.failure_rate_threshold, None);
    // Boundaries are valid.
    for builder in [
        b().count_window(1),
        b().count_window(1_000_000),
        b().time_window(Duration::from_secs(1)),
        b().time_window(Duration::from_secs(3_600)),
        b().failure_rate_threshold(100.0),
        b().failure_rate_threshold(0.0001),
        b().permitted_calls_in_half_open(4_095),
        b().wait_in_open_jitter(1.0),
        b().consecutive_failures(1).trip_on_failure_rate(false),
        b().initial_state(State::ForcedOpen),
    ] {
        builder.build().unwrap();
    }
}

#[test]
fn durations_are_bounded_by_a_year() {
    assert_eq!(MAX_DURATION, Duration::from_secs(365 * 24 * 3_600));
    let over = MAX_DURATION + Duration::from_nanos(1);
    let cases: Vec<(CircuitBreakerBuilder, &str)> = vec![
        // Once a panic in the state machine that wedged the breaker.
        (
            b().wait_in_open(Duration::MAX).wait_in_open_jitter(0.1),
            "wait_in_open",
        ),
        (b().wait_in_open(over), "wait_in_open"),
        (b().max_wait_in_open(Duration::MAX), "max_wait_in_open"),
        (b().max_wait_in_open(over), "max_wait_in_open"),
        (
            b().max_wait_in_half_open(Duration::MAX),
            "max_wait_in_half_open",
        ),
        (b().max_wait_in_half_open(over), "max_wait_in_half_open"),
        (b().slow_call_duration(Duration::MAX), "slow_call_duration"),
        (b().slow_call_duration(over), "slow_call_duration"),
    ];
    for (builder, field) in cases {
        let (got, message) = error(builder);
        assert_eq!(got, field, "{message}");
        assert!(message.contains("at most one year"), "{message}");
    }
    // A year is accepted everywhere, and the default cap (10 × the wait)
    // stops at a year.
    let c = b()
        .wait_in_open(MAX_DURATION)
        .wait_in_open_multiplier(f64::MAX)
        .wait_in_open_jitter(1.0)
        .max_wait_in_half_open(MAX_DURATION)
        .slow_call_duration(MAX_DURATION)
        .build()
        .unwrap()
        .handle()
        .config()
        .clone();
    assert_eq!(c.wait_in_open, MAX_DURATION);
    assert_eq!(c.max_wait_in_open, MAX_DURATION);
    assert_eq!(c.max_wait_in_half_open, MAX_DURATION);
    assert_eq!(c.slow_call_duration, Some(MAX_DURATION));
    let c = b()
        .wait_in_open(Duration::from_secs(40 * 24 * 3_600))
        .build()
        .unwrap()
        .handle()
        .config()
        .clone();
    assert_eq!(c.max_wait_in_open, MAX_DURATION);
}

#[test]
fn builder_debug_names_the_settings() {
    let text = format!("{:?}", b().count_window(7));
    assert!(text.contains("Count(7)"), "{text}");
    assert_eq!(b().name(), "cfg");
}
