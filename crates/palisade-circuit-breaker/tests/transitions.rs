//! Every transition of the state machine, through the service, under tokio's
//! paused clock.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_circuit_breaker::{
    CircuitBreakerEvent, CircuitBreakerLayer, Outcome, State, StateTransition, TransitionReason,
};
use support::{Step, backend, call, count, rejected, rejection};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};

const SEC: Duration = Duration::from_secs(1);

/// A listener that keeps the state transitions.
fn recorder() -> (
    Arc<Mutex<Vec<StateTransition>>>,
    impl Fn(&CircuitBreakerEvent) + Send + Sync + 'static,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    (log, move |e: &CircuitBreakerEvent| {
        if let CircuitBreakerEvent::StateTransition(t) = e {
            sink.lock().unwrap().push(t.clone());
        }
    })
}

fn moves(log: &Mutex<Vec<StateTransition>>) -> Vec<(State, State, TransitionReason)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to, t.reason))
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn closed_opens_on_failure_rate_and_recovers_through_half_open() {
    let (log, listener) = recorder();
    let layer = CircuitBreakerLayer::builder("orders")
        .count_window(10)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .wait_in_open(5 * SEC)
        .permitted_calls_in_half_open(3)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, calls) = backend();
    let mut svc = layer.layer(backend);

    // 9 calls, all failing: below the minimum, still closed.
    for _ in 0..9 {
        assert!(!rejected(&call(&mut svc, Step::Fail).await));
    }
    assert_eq!(handle.state(), State::Closed);
    // The 10th call: 9 of 10 failed.
    call(&mut svc, Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Open);
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.failed_calls), (10, 9));
    assert_eq!(snap.next_probe_in, Some(5 * SEC));

    // Open: rejected at once, with the time left; the backend is not called.
    advance(2 * SEC).await;
    let r = call(&mut svc, Step::Ok).await;
    assert_eq!(rejection(&r).unwrap().retry_after(), Some(3 * SEC));
    assert_eq!(count(&calls), 10);

    // The wait elapses: the handle sees HalfOpen before any call.
    advance(3 * SEC).await;
    assert_eq!(handle.state(), State::HalfOpen);
    // Three successful probes close it (the decision is certain after 2 of 3
    // at 50 %: 1 failure could no longer reach 50 % of 3).
    call(&mut svc, Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::HalfOpen);
    call(&mut svc, Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().calls, 0, "a new, empty window");

    let log = log.lock().unwrap();
    assert_eq!(
        log.iter()
            .map(|t| (t.from, t.to, t.reason))
            .collect::<Vec<_>>(),
        vec![
            (State::Closed, State::Open, TransitionReason::FailureRate),
            (State::Open, State::HalfOpen, TransitionReason::WaitElapsed),
            (
                State::HalfOpen,
                State::Closed,
                TransitionReason::ProbesSucceeded
            ),
        ]
    );
    assert_eq!(log[0].calls, 10);
    assert_eq!(log[0].failure_rate, 90.0);
    assert_eq!(log[0].open_for, Some(5 * SEC));
    assert_eq!(&*log[0].name, "orders");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failed_probes_reopen_with_a_growing_capped_wait() {
    let (log, listener) = recorder();
    let layer = CircuitBreakerLayer::builder("orders")
        .count_window(4)
        .wait_in_open(SEC)
        .wait_in_open_multiplier(2.0)
        .max_wait_in_open(5 * SEC)
        .permitted_calls_in_half_open(2)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);

    for _ in 0..4 {
        let _ = call(&mut svc, Step::Fail).await;
    }
    let mut waits = Vec::new();
    for _ in 0..5 {
        assert_eq!(handle.state(), State::Open);
        let wait = handle.snapshot().next_probe_in.unwrap();
        waits.push(wait);
        advance(wait).await;
        // One failed probe of 2 is 50 %: re-open.
        let _ = call(&mut svc, Step::Fail).await;
    }
    assert_eq!(waits, [1, 2, 4, 5, 5].map(|s| s * SEC));
    assert_eq!(
        moves(&log)[2],
        (State::HalfOpen, State::Open, TransitionReason::ProbesFailed)
    );

    // Recovery resets the growth.
    advance(5 * SEC).await;
    call(&mut svc, Step::Ok).await.unwrap();
    call(&mut svc, Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    for _ in 0..4 {
        let _ = call(&mut svc, Step::Fail).await;
    }
    assert_eq!(handle.snapshot().next_probe_in, Some(SEC));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn jittered_waits_stay_within_bounds_and_follow_the_seed() {
    async fn waits(seed: u64) -> Vec<Duration> {
        let layer = CircuitBreakerLayer::builder("j")
            .count_window(1)
            .wait_in_open(10 * SEC)
            .wait_in_open_jitter(0.5)
            .jitter_seed(seed)
            .permitted_calls_in_half_open(1)
            .build()
            .unwrap();
        let handle = layer.handle();
        let (backend, _) = backend();
        let mut svc = layer.layer(backend);
        let _ = call(&mut svc, Step::Fail).await;
        let mut out = Vec::new();
        for _ in 0..20 {
            let wait = handle.snapshot().next_probe_in.unwrap();
            out.push(wait);
            advance(wait).await;
            let _ = call(&mut svc, Step::Fail).await;
        }
        out
    }
    let a = waits(42).await;
    assert!(a.iter().all(|w| (5 * SEC..=15 * SEC).contains(w)), "{a:?}");
    assert!(
        a.windows(2).any(|p| p[0] != p[1]),
        "jitter spreads the waits: {a:?}"
    );
    assert_eq!(a, waits(42).await, "the seed reproduces them");
    assert_ne!(a, waits(43).await);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_calls_open_the_breaker() {
    let (log, listener) = recorder();
    let layer = CircuitBreakerLayer::builder("slow")
        .count_window(4)
        .slow_call_duration(Duration::from_millis(500))
        .slow_call_rate_threshold(50.0)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);

    call(&mut svc, Step::OkAfter(Duration::from_millis(499)))
        .await
        .unwrap();
    call(&mut svc, Step::OkAfter(Duration::from_millis(10)))
        .await
        .unwrap();
    call(&mut svc, Step::OkAfter(Duration::from_millis(500)))
        .await
        .unwrap();
    assert_eq!(handle.snapshot().slow_calls, 1);
    call(&mut svc, Step::OkAfter(Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        moves(&log),
        vec![(State::Closed, State::Open, TransitionReason::SlowCallRate)]
    );
    assert_eq!(log.lock().unwrap()[0].slow_call_rate, 50.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_probes_reopen() {
    let (log, listener) = recorder();
    let layer = CircuitBreakerLayer::builder("slow")
        .count_window(2)
        .slow_call_duration(Duration::from_millis(100))
        .permitted_calls_in_half_open(2)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    handle.half_open();
    call(&mut svc, Step::OkAfter(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(handle.state(), State::HalfOpen, "1 slow of 2 is 50 %");
    call(&mut svc, Step::OkAfter(Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        moves(&log).last().unwrap(),
        &(State::HalfOpen, State::Open, TransitionReason::ProbesSlow)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn consecutive_failures_open_before_the_minimum() {
    let (log, listener) = recorder();
    let layer = CircuitBreakerLayer::builder("c")
        .count_window(100)
        .consecutive_failures(3)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    for step in [Step::Fail, Step::Fail, Step::Ok, Step::Fail, Step::Fail] {
        let _ = call(&mut svc, step).await;
    }
    assert_eq!(handle.snapshot().consecutive_failures, 2);
    assert_eq!(handle.state(), State::Closed);
    let _ = call(&mut svc, Step::Fail).await;
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        moves(&log),
        vec![(
            State::Closed,
            State::Open,
            TransitionReason::ConsecutiveFailures
        )]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hung_probes_reopen_after_the_max_wait() {
    let (log, listener) = recorder();
    let layer = CircuitBreakerLayer::builder("hung")
        .count_window(2)
        .wait_in_open(10 * SEC)
        .permitted_calls_in_half_open(1)
        .max_wait_in_half_open(3 * SEC)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, calls) = backend();
    let svc = layer.layer(backend);
    handle.half_open();

    let mut probe = svc.clone();
    let hung = tokio::spawn(async move { call(&mut probe, Step::Hang).await });
    tokio::task::yield_now().await;
    assert_eq!(count(&calls), 1);
    assert_eq!(handle.snapshot().half_open.unwrap().in_flight, 1);

    // The permit is taken: others are rejected without a retry-after.
    let r = call(&mut svc.clone(), Step::Ok).await;
    assert_eq!(rejection(&r).unwrap().retry_after(), None);
    advance(3 * SEC).await;
    // Past the max wait: re-opened (visible through the handle).
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.snapshot().next_probe_in, Some(10 * SEC));
    assert_eq!(
        moves(&log).last().unwrap(),
        &(
            State::HalfOpen,
            State::Open,
            TransitionReason::HalfOpenTimeout
        )
    );
    advance(10 * SEC).await;
    call(&mut svc.clone(), Step::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    hung.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ignored_outcomes_record_nothing_and_return_probe_permits() {
    let layer = CircuitBreakerLayer::builder("ignore")
        .count_window(2)
        .permitted_calls_in_half_open(1)
        .classifier(|r: &Result<&'static str, std::io::Error>| match r {
            Ok("ignore") => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc =
        tower::service_fn(|reply: &'static str| async move { Ok::<_, std::io::Error>(reply) });
    let mut svc = layer.layer(svc);
    for _ in 0..5 {
        svc.ready().await.unwrap().call("ignore").await.unwrap();
    }
    assert_eq!(handle.snapshot().calls, 0);

    handle.half_open();
    for _ in 0..5 {
        // Each ignored probe gives its single permit back.
        svc.ready().await.unwrap().call("ignore").await.unwrap();
        assert_eq!(handle.state(), State::HalfOpen);
    }
    svc.ready().await.unwrap().call("fine").await.unwrap();
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn manual_states() {
    let (log, listener) = recorder();
    let layer = CircuitBreakerLayer::builder("manual")
        .count_window(2)
        .wait_in_open(10 * SEC)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, calls) = backend();
    let mut svc = layer.layer(backend);

    // Disabled: everything passes, nothing is recorded.
    handle.disable();
    for _ in 0..10 {
        assert!(call(&mut svc, Step::Fail).await.is_err());
    }
    assert_eq!(count(&calls), 10);
    assert_eq!(handle.snapshot().calls, 0);
    assert_eq!(handle.state(), State::Disabled);

    // MetricsOnly: records, never opens.
    handle.metrics_only();
    for _ in 0..10 {
        assert!(!rejected(&call(&mut svc, Step::Fail).await));
    }
    let snap = handle.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failed_calls),
        (State::MetricsOnly, 2, 2)
    );
    assert_eq!(snap.failure_rate, 100.0);

    // ForcedOpen: rejects all, forever, with no retry-after.
    handle.force_open();
    advance(1_000 * SEC).await;
    let r = call(&mut svc, Step::Ok).await;
    assert_eq!(rejection(&r).unwrap().retry_after(), None);
    assert_eq!(count(&calls), 20);
    assert_eq!(handle.state(), State::ForcedOpen);

    // Reset: Closed with an empty window.
    handle.reset();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().calls, 0);
    call(&mut svc, Step::Ok).await.unwrap();

    // Open for a given time, then half-open as usual.
    handle.open_for(3 * SEC);
    let r = call(&mut svc, Step::Ok).await;
    assert_eq!(rejection(&r).unwrap().retry_after(), Some(3 * SEC));
    advance(3 * SEC).await;
    assert_eq!(handle.state(), State::HalfOpen);

    // Open until an instant.
    handle.open_until(tokio::time::Instant::now() + 2 * SEC);
    assert_eq!(handle.snapshot().next_probe_in, Some(2 * SEC));
    advance(2 * SEC).await;
    assert_eq!(handle.state(), State::HalfOpen);
    // transition_to, for an admin API: Open for the configured wait; setting
    // the current state again does nothing.
    handle.transition_to(State::Open);
    handle.transition_to(State::Open);
    assert_eq!(handle.snapshot().next_probe_in, Some(10 * SEC));
    handle.transition_to(State::Closed);
    assert_eq!(handle.state(), State::Closed);

    assert_eq!(
        moves(&log),
        vec![
            (State::Closed, State::Disabled, TransitionReason::Manual),
            (
                State::Disabled,
                State::MetricsOnly,
                TransitionReason::Manual
            ),
            (
                State::MetricsOnly,
                State::ForcedOpen,
                TransitionReason::Manual
            ),
            (State::ForcedOpen, State::Closed, TransitionReason::Reset),
            (State::Closed, State::Open, TransitionReason::Manual),
            (State::Open, State::HalfOpen, TransitionReason::WaitElapsed),
            (State::HalfOpen, State::Open, TransitionReason::Manual),
            (State::Open, State::HalfOpen, TransitionReason::WaitElapsed),
            (State::HalfOpen, State::Open, TransitionReason::Manual),
            (State::Open, State::Closed, TransitionReason::Reset),
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn initial_manual_state() {
    let layer = CircuitBreakerLayer::builder("shadow")
        .initial_state(State::MetricsOnly)
        .count_window(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    for _ in 0..5 {
        assert!(!rejected(&call(&mut svc, Step::Fail).await));
    }
    assert_eq!(handle.state(), State::MetricsOnly);
    assert_eq!(handle.snapshot().failed_calls, 2);
}

/// tower-resilience 0.13 keeps growing counters while closed: after 10 000
/// successes a window of 100 at 50 % needs 10 000 failures to open. A true
/// window of the last 100 opens after 50.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn after_ten_thousand_successes_a_window_of_100_opens_within_100_failures() {
    let layer = CircuitBreakerLayer::builder("long-lived")
        .count_window(100)
        .minimum_calls(100)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    for _ in 0..10_000 {
        call(&mut svc, Step::Ok).await.unwrap();
    }
    let mut failures = 0;
    while handle.state() == State::Closed {
        let _ = call(&mut svc, Step::Fail).await;
        failures += 1;
        assert!(failures <= 100, "still closed after 100 failures");
    }
    assert_eq!(failures, 50, "exactly half of the last 100");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn time_window_forgets_old_seconds() {
    let layer = CircuitBreakerLayer::builder("time")
        .time_window(10 * SEC)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let mut svc = layer.layer(backend);
    for _ in 0..3 {
        let _ = call(&mut svc, Step::Fail).await;
    }
    assert_eq!(handle.snapshot().failed_calls, 3);
    // Ten seconds later the failures have left the window.
    advance(10 * SEC).await;
    assert_eq!(handle.snapshot().calls, 0);
    for _ in 0..3 {
        call(&mut svc, Step::Ok).await.unwrap();
    }
    advance(SEC).await;
    let _ = call(&mut svc, Step::Fail).await;
    let _ = call(&mut svc, Step::Fail).await;
    assert_eq!(handle.state(), State::Closed, "2 of 5");
    let _ = call(&mut svc, Step::Fail).await;
    assert_eq!(handle.state(), State::Open, "3 of 6");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_time_window_with_default_settings_opens_on_low_traffic() {
    // A service called once every 5 s: a 60 s window never holds more than
    // 12 calls, so the count window's default minimum (100) would keep the
    // breaker closed forever. The time window's default (10) is reached.
    let layer = CircuitBreakerLayer::builder("quiet")
        .time_window(60 * SEC)
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(handle.config().minimum_calls, 10);
    let (backend, reached) = backend();
    let mut svc = layer.layer(backend);
    for n in 1..=9 {
        let _ = call(&mut svc, Step::Fail).await;
        assert_eq!(handle.state(), State::Closed, "{n} calls: too few to judge");
        advance(5 * SEC).await;
    }
    let _ = call(&mut svc, Step::Fail).await;
    assert_eq!(handle.state(), State::Open, "10 failures in 50 s");
    assert_eq!(count(&reached), 10);
    assert!(rejected(&call(&mut svc, Step::Ok).await));
    assert_eq!(count(&reached), 10);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn calls_admitted_before_a_transition_do_not_count_after_it() {
    let layer = CircuitBreakerLayer::builder("gen")
        .count_window(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (backend, _) = backend();
    let svc = layer.layer(backend);
    // Two slow failing calls admitted while closed...
    let a = tokio::spawn(call_owned(svc.clone(), Step::FailAfter(5 * SEC)));
    let b = tokio::spawn(call_owned(svc.clone(), Step::FailAfter(5 * SEC)));
    tokio::task::yield_now().await;
    // ... then a reset starts a new window before they complete.
    handle.reset();
    assert!(a.await.unwrap().is_err());
    assert!(b.await.unwrap().is_err());
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().calls, 0);
}

async fn call_owned<S>(
    mut svc: S,
    step: Step,
) -> Result<&'static str, palisade_circuit_breaker::BoxError>
where
    S: Service<Step, Response = &'static str, Error = palisade_circuit_breaker::BoxError>,
{
    call(&mut svc, step).await
}
