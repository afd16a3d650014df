//! The metrics a breaker emits, and its listeners.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_circuit_breaker::{
    CallNotPermitted, CallOutcome, CircuitBreakerEvent, CircuitBreakerLayer, Outcome, State,
};
use palisade_test_util::MetricsCapture;
use support::{Step, backend, call};
use tokio::time::advance;
use tower::Layer;

const CALLS: &str = "palisade_circuit_breaker_calls_total";
const NOT_PERMITTED: &str = "palisade_circuit_breaker_not_permitted_calls_total";
const SLOW: &str = "palisade_circuit_breaker_slow_calls_total";
const STATE: &str = "palisade_circuit_breaker_state";
const FAILURE_RATE: &str = "palisade_circuit_breaker_failure_rate";
const SLOW_RATE: &str = "palisade_circuit_breaker_slow_call_rate";
const TRANSITIONS: &str = "palisade_circuit_breaker_transitions_total";

fn state_gauges(capture: &MetricsCapture, name: &str) -> Vec<(State, f64)> {
    State::ALL
        .iter()
        .map(|s| {
            let v = capture
                .gauge(STATE, &[("name", name), ("state", s.as_str())])
                .expect("one gauge per state");
            (*s, v)
        })
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn counters_gauges_and_transitions() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = CircuitBreakerLayer::builder("orders")
        .count_window(4)
        .slow_call_duration(Duration::from_millis(100))
        .wait_in_open(Duration::from_secs(1))
        .permitted_calls_in_half_open(1)
        .build()
        .unwrap();
    // Registered at build: the state is visible before any call.
    assert_eq!(state_gauges(&capture, "orders"), vec![(State::Closed, 1.0)]);
    assert_eq!(
        capture.gauge(FAILURE_RATE, &[("name", "orders")]),
        Some(0.0)
    );

    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    call(&mut svc, Step::Ok).await.unwrap();
    call(&mut svc, Step::OkAfter(Duration::from_millis(150)))
        .await
        .unwrap();
    let _ = call(&mut svc, Step::Fail).await;
    assert_eq!(
        capture.gauge(FAILURE_RATE, &[("name", "orders")]),
        Some(100.0 / 3.0)
    );
    assert_eq!(
        capture.gauge(SLOW_RATE, &[("name", "orders")]),
        Some(100.0 / 3.0)
    );
    let _ = call(&mut svc, Step::Fail).await; // 2 of 4: open
    assert_eq!(handle.state(), State::Open);

    for _ in 0..3 {
        let _ = call(&mut svc, Step::Ok).await;
    }
    assert_eq!(
        capture.counter(CALLS, &[("name", "orders"), ("outcome", "success")]),
        2
    );
    assert_eq!(
        capture.counter(CALLS, &[("name", "orders"), ("outcome", "failure")]),
        2
    );
    assert_eq!(
        capture.counter(CALLS, &[("name", "orders"), ("outcome", "ignored")]),
        0
    );
    assert_eq!(capture.counter(SLOW, &[("name", "orders")]), 1);
    assert_eq!(capture.counter(NOT_PERMITTED, &[("name", "orders")]), 3);
    assert_eq!(state_gauges(&capture, "orders"), vec![(State::Open, 1.0)]);
    assert_eq!(
        capture.gauge(FAILURE_RATE, &[("name", "orders")]),
        Some(50.0)
    );

    advance(Duration::from_secs(1)).await;
    assert_eq!(handle.state(), State::HalfOpen);
    assert_eq!(
        state_gauges(&capture, "orders"),
        vec![(State::HalfOpen, 1.0)]
    );
    call(&mut svc, Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(state_gauges(&capture, "orders"), vec![(State::Closed, 1.0)]);
    assert_eq!(
        capture.gauge(FAILURE_RATE, &[("name", "orders")]),
        Some(0.0)
    );

    let t = |from: State, to: State| {
        capture.counter(
            TRANSITIONS,
            &[
                ("name", "orders"),
                ("from", from.as_str()),
                ("to", to.as_str()),
            ],
        )
    };
    assert_eq!(t(State::Closed, State::Open), 1);
    assert_eq!(t(State::Open, State::HalfOpen), 1);
    assert_eq!(t(State::HalfOpen, State::Closed), 1);
    assert_eq!(t(State::HalfOpen, State::Open), 0);

    handle.force_open();
    assert_eq!(
        state_gauges(&capture, "orders"),
        vec![(State::ForcedOpen, 1.0)]
    );
    assert_eq!(t(State::Closed, State::ForcedOpen), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ignored_calls_are_counted_as_ignored() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = CircuitBreakerLayer::builder("ign")
        .classifier(
            |_: &Result<support::Reply, palisade_circuit_breaker::BoxError>| Outcome::Ignored,
        )
        .build()
        .unwrap();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    for _ in 0..3 {
        call(&mut svc, Step::Ok).await.unwrap();
    }
    assert_eq!(
        capture.counter(CALLS, &[("name", "ign"), ("outcome", "ignored")]),
        3
    );
    assert_eq!(layer.handle().snapshot().calls, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn disabled_records_and_reports_nothing() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let layer = CircuitBreakerLayer::builder("off")
        .initial_state(State::Disabled)
        .build()
        .unwrap();
    assert_eq!(state_gauges(&capture, "off"), vec![(State::Disabled, 1.0)]);
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    for _ in 0..3 {
        let _ = call(&mut svc, Step::Fail).await;
    }
    assert_eq!(capture.counter(CALLS, &[("name", "off")]), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn listeners_hear_outcomes_and_rejections() {
    let outcomes = Arc::new(Mutex::new(Vec::<CallOutcome>::new()));
    let rejections = Arc::new(Mutex::new(Vec::<CallNotPermitted>::new()));
    let (o, r) = (Arc::clone(&outcomes), Arc::clone(&rejections));
    let layer = CircuitBreakerLayer::builder("heard")
        .count_window(2)
        .wait_in_open(Duration::from_secs(9))
        .on_event(move |e| match e {
            CircuitBreakerEvent::CallOutcome(e) => o.lock().unwrap().push(e.clone()),
            CircuitBreakerEvent::CallNotPermitted(e) => r.lock().unwrap().push(e.clone()),
            _ => {}
        })
        .on_event(|e| {
            if let CircuitBreakerEvent::StateTransition(_) = e {
                panic!("a panicking listener never breaks a call")
            }
        })
        .build()
        .unwrap();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    call(&mut svc, Step::OkAfter(Duration::from_millis(30)))
        .await
        .unwrap();
    let _ = call(&mut svc, Step::Fail).await;
    let rejected = call(&mut svc, Step::Ok).await;
    assert!(support::rejected(&rejected));

    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].outcome, Outcome::Success);
    assert_eq!(
        outcomes[0].duration,
        Duration::from_millis(30),
        "timed when listened to"
    );
    assert!(!outcomes[0].slow && !outcomes[0].probe);
    assert_eq!(outcomes[1].outcome, Outcome::Failure);
    assert_eq!(&*outcomes[1].name, "heard");
    let rejections = rejections.lock().unwrap();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].state, State::Open);
    assert_eq!(rejections[0].retry_after, Some(Duration::from_secs(9)));
}
