//! The tracing events a breaker emits. One test function, alone in its
//! binary: tracing caches each callsite's interest process-wide, and a
//! callsite first hit on another thread while a scoped subscriber is being
//! installed may miss it.

mod support;

use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, State};
use palisade_test_util::{CapturedEvent, EventCapture};
use support::{Step, backend, call, rejected};
use tokio::time::advance;
use tower::Layer;
use tracing::Level;

/// Asserts that `event` is a transition of `inventory` from `from` to `to`
/// at `level`.
fn assert_transition(event: &CapturedEvent, level: Level, from: State, to: State, reason: &str) {
    assert_eq!(event.level, level, "{event:?}");
    assert!(
        event.target.starts_with("palisade_circuit_breaker"),
        "{event:?}"
    );
    assert_eq!(event.field("name"), Some("inventory"), "{event:?}");
    assert_eq!(event.field("from"), Some(from.as_str()), "{event:?}");
    assert_eq!(event.field("to"), Some(to.as_str()), "{event:?}");
    assert_eq!(event.field("reason"), Some(reason), "{event:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn transitions_and_rejections_are_traced_and_closed_calls_are_not() {
    let capture = EventCapture::default();
    let _guard = capture.set_default();

    let layer = CircuitBreakerLayer::builder("inventory")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_secs(5))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);

    // Successful calls through a closed breaker: not one event.
    for _ in 0..50 {
        call(&mut svc, Step::Ok).await.unwrap();
    }
    let events = capture.take();
    assert!(events.is_empty(), "events on the closed path: {events:#?}");

    // Failures below the threshold: still nothing (the window of 4 holds
    // one failure, then two of four trip it).
    call(&mut svc, Step::Fail).await.unwrap_err();
    assert!(capture.take().is_empty());
    call(&mut svc, Step::Fail).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);

    // The trip: exactly one event, a warning.
    let events = capture.take();
    assert_eq!(events.len(), 1, "{events:#?}");
    let trip = &events[0];
    assert_transition(
        trip,
        Level::WARN,
        State::Closed,
        State::Open,
        "failure_rate",
    );
    assert_eq!(trip.field("message"), Some("circuit breaker opened"));
    assert_eq!(trip.field("calls"), Some("4"));
    assert_eq!(trip.field("failure_rate"), Some("50.0"));
    assert_eq!(trip.field("open_for_ms"), Some("5000"));

    // A rejection: one debug event naming the breaker.
    assert!(rejected(&call(&mut svc, Step::Ok).await));
    let events = capture.take();
    assert_eq!(events.len(), 1, "{events:#?}");
    let rejection = &events[0];
    assert_eq!(rejection.level, Level::DEBUG, "{rejection:?}");
    assert!(rejection.target.starts_with("palisade_circuit_breaker"));
    assert_eq!(rejection.field("name"), Some("inventory"));
    assert_eq!(rejection.field("state"), Some("open"));
    assert_eq!(rejection.field("retry_after_ms"), Some("5000"));
    assert_eq!(
        rejection.field("message"),
        Some("circuit breaker rejected a call")
    );

    // The wait elapses; one probe succeeds: two transitions at info.
    advance(Duration::from_secs(5)).await;
    call(&mut svc, Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    let events = capture.take();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_transition(
        &events[0],
        Level::INFO,
        State::Open,
        State::HalfOpen,
        "wait_elapsed",
    );
    assert_transition(
        &events[1],
        Level::INFO,
        State::HalfOpen,
        State::Closed,
        "probes_succeeded",
    );
    assert_eq!(
        events[1].field("message"),
        Some("circuit breaker changed state")
    );

    // Closed again: successful calls are silent once more.
    for _ in 0..50 {
        call(&mut svc, Step::Ok).await.unwrap();
    }
    assert!(capture.take().is_empty());

    // Manual states: forced open is a warning, a reset is info.
    handle.force_open();
    handle.reset();
    let events = capture.take();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_transition(
        &events[0],
        Level::WARN,
        State::Closed,
        State::ForcedOpen,
        "manual",
    );
    assert_transition(
        &events[1],
        Level::INFO,
        State::ForcedOpen,
        State::Closed,
        "reset",
    );
}
