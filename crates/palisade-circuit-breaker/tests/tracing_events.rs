//! The tracing events a breaker emits. One test function, alone in its
//! binary: tracing caches each callsite's interest process-wide, and a
//! callsite first hit on another thread while a scoped subscriber is being
//! installed may miss it.

mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, State};
use support::{Step, backend, call, rejected};
use tokio::time::advance;
use tower::Layer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One captured event: its level, target and fields (strings unquoted).
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: fields.0,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Asserts that `event` is a transition of `inventory` from `from` to `to`
/// at `level`.
fn assert_transition(event: &Captured, level: Level, from: State, to: State, reason: &str) {
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
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

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
