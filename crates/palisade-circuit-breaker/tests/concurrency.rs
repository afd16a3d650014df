//! Many callers at once, on a multi-threaded runtime and on plain threads:
//! exactly N probes, nothing past an open breaker, one event per transition.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_circuit_breaker::{
    BoxError, CircuitBreakerEvent, CircuitBreakerLayer, CircuitOpen, State,
};
use tokio::sync::{Barrier, Semaphore, mpsc};
use tower::{Layer, Service, ServiceExt, service_fn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_in_half_open_let_exactly_n_probes_through() {
    const CALLERS: usize = 1_000;
    const PERMITS: u32 = 7;
    for _round in 0..5 {
        let layer = CircuitBreakerLayer::builder("probes")
            .count_window(10)
            .permitted_calls_in_half_open(PERMITS)
            .build()
            .unwrap();
        let handle = layer.handle();
        handle.half_open();

        let reached = Arc::new(AtomicUsize::new(0));
        // Probes stay in flight until the test adds permits.
        let release = Arc::new(Semaphore::new(0));
        let inner = {
            let reached = Arc::clone(&reached);
            let release = Arc::clone(&release);
            service_fn(move |()| {
                reached.fetch_add(1, Ordering::SeqCst);
                let release = Arc::clone(&release);
                async move {
                    let _permit = release.acquire_owned().await.unwrap();
                    Ok::<_, std::io::Error>(())
                }
            })
        };
        let svc = layer.layer(inner);
        let barrier = Arc::new(Barrier::new(CALLERS));
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..CALLERS {
            let svc = svc.clone();
            let barrier = Arc::clone(&barrier);
            let tx = tx.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let result = svc.oneshot(()).await;
                tx.send(result).unwrap();
            });
        }
        drop(tx);

        // Every caller but the probes is rejected at once.
        for _ in 0..CALLERS - PERMITS as usize {
            let err = rx.recv().await.unwrap().unwrap_err();
            let open = err.downcast_ref::<CircuitOpen>().expect("a rejection");
            assert_eq!(open.retry_after(), None, "probes in flight");
        }
        assert_eq!(reached.load(Ordering::SeqCst), PERMITS as usize);
        let snap = handle.snapshot();
        assert_eq!(snap.half_open.unwrap().in_flight, PERMITS);
        assert_eq!(
            snap.not_permitted_calls,
            (CALLERS - PERMITS as usize) as u64
        );

        release.add_permits(PERMITS as usize);
        for _ in 0..PERMITS {
            rx.recv().await.unwrap().unwrap();
        }
        assert!(rx.recv().await.is_none());
        assert_eq!(handle.state(), State::Closed);
        assert_eq!(reached.load(Ordering::SeqCst), PERMITS as usize);
    }
}

/// Drives a service by hand on a plain thread: `poll_ready`, `call`, then
/// polls the (always immediately ready) future.
fn call_now<S: Service<bool>>(svc: &mut S, fail: bool) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("always ready"),
    }
    let mut fut = std::pin::pin!(svc.call(fail));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("completes at once"),
    }
}

#[test]
fn once_a_caller_sees_the_breaker_open_nothing_passes() {
    for _round in 0..200 {
        let transitions = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&transitions);
        let layer = CircuitBreakerLayer::builder("open")
            .count_window(20)
            .wait_in_open(Duration::from_secs(3_600))
            .on_event(move |e| {
                if let CircuitBreakerEvent::StateTransition(_) = e {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build()
            .unwrap();
        let handle = layer.handle();
        let reached = Arc::new(AtomicUsize::new(0));
        let passed_after_open = Arc::new(AtomicBool::new(false));
        let inner = {
            let reached = Arc::clone(&reached);
            service_fn(move |fail: bool| {
                reached.fetch_add(1, Ordering::SeqCst);
                std::future::ready(if fail {
                    Err(BoxError::from("failed"))
                } else {
                    Ok(())
                })
            })
        };
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let mut svc = layer.layer(inner.clone());
                let handle = handle.clone();
                let admitted = &admitted;
                let passed_after_open = Arc::clone(&passed_after_open);
                s.spawn(move || {
                    for i in 0..2_000 {
                        let seen_open = handle.state() == State::Open;
                        let result = call_now(&mut svc, (i + t) % 3 != 0);
                        let was_rejected = matches!(&result, Err(e) if e.is::<CircuitOpen>());
                        if !was_rejected {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            if seen_open {
                                passed_after_open.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(handle.state(), State::Open);
        assert!(
            !passed_after_open.load(Ordering::SeqCst),
            "a call passed an open breaker"
        );
        assert_eq!(
            reached.load(Ordering::SeqCst),
            admitted.load(Ordering::SeqCst)
        );
        assert!(reached.load(Ordering::SeqCst) < 8_000);
        assert_eq!(
            transitions.load(Ordering::SeqCst),
            1,
            "one transition, one event"
        );
    }
}

#[test]
fn concurrent_probes_and_cancellations_leave_no_permit_behind() {
    const PERMITS: u32 = 3;
    let layer = CircuitBreakerLayer::builder("churn")
        .count_window(10)
        .permitted_calls_in_half_open(PERMITS)
        .build()
        .unwrap();
    let handle = layer.handle();
    handle.half_open();
    let inner = service_fn(|()| std::future::pending::<Result<(), BoxError>>());
    let admitted = AtomicUsize::new(0);
    let in_flight_max = AtomicUsize::new(0);
    let in_flight = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let mut svc = layer.layer(inner);
            let (admitted, in_flight, in_flight_max) = (&admitted, &in_flight, &in_flight_max);
            s.spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                for i in 0..5_000 {
                    assert!(svc.poll_ready(&mut cx).is_ready());
                    if i % 7 == 0 {
                        // Readiness taken, then the service dropped.
                        svc = svc.clone();
                        continue;
                    }
                    let mut fut = Box::pin(svc.call(()));
                    match fut.as_mut().poll(&mut cx) {
                        Poll::Ready(Err(e)) => assert!(e.is::<CircuitOpen>()),
                        Poll::Ready(Ok(())) => unreachable!(),
                        Poll::Pending => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            in_flight_max.fetch_max(now, Ordering::SeqCst);
                            // The probe is cancelled.
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            drop(fut);
                        }
                    }
                }
            });
        }
    });
    assert!(in_flight_max.load(Ordering::SeqCst) <= PERMITS as usize);
    assert!(admitted.load(Ordering::SeqCst) >= PERMITS as usize);
    let snap = handle.snapshot();
    assert_eq!(snap.state, State::HalfOpen);
    assert_eq!(
        snap.half_open.unwrap().in_flight,
        0,
        "every permit came back"
    );
}
