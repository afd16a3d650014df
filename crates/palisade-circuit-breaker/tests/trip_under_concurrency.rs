//! The trip decision does not depend on which caller's update lands last.
//!
//! A count window of 20 at 100 %, full of successes, then a failing backend:
//! once the window holds 20 failures, the next failure opens the breaker even
//! if the caller whose failure crossed the threshold is stalled before it
//! could decide (here: inside the metrics recorder, which the breaker calls
//! with the new rates before it checks them).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use palisade_circuit_breaker::{BoxError, CircuitBreakerLayer, CircuitOpen, State};
use tower::{Layer, ServiceExt, service_fn};

/// A gauge that, once armed, blocks the first thread that sets it until the
/// test releases it.
struct StallingGauge {
    armed: AtomicBool,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl GaugeFn for StallingGauge {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.lock().unwrap().send(()).unwrap();
            let _ = self.release.lock().unwrap().recv();
        }
    }
}

struct Noop;

impl CounterFn for Noop {
    fn increment(&self, _: u64) {}
    fn absolute(&self, _: u64) {}
}

/// Hands out the stalling gauge for the failure rate, no-ops for the rest.
struct StallingRecorder(Arc<StallingGauge>);

impl Recorder for StallingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Noop))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        if key.name() == "palisade_circuit_breaker_failure_rate" {
            Gauge::from_arc(Arc::clone(&self.0))
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn a_stalled_deciding_caller_does_not_hold_the_breaker_closed() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let gauge = Arc::new(StallingGauge {
        armed: AtomicBool::new(false),
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let recorder = StallingRecorder(Arc::clone(&gauge));
    let layer = metrics::with_local_recorder(&recorder, || {
        CircuitBreakerLayer::builder("stalled")
            .count_window(20)
            .minimum_calls(20)
            .failure_rate_threshold(100.0)
            .build()
            .unwrap()
    });
    let handle = layer.handle();
    let reached = Arc::new(AtomicUsize::new(0));
    let svc = {
        let reached = Arc::clone(&reached);
        layer.layer(service_fn(move |fail: bool| {
            reached.fetch_add(1, Ordering::SeqCst);
            async move {
                if fail {
                    Err(BoxError::from("backend failed"))
                } else {
                    Ok(())
                }
            }
        }))
    };
    let rt = runtime();
    let call = |fail: bool| rt.block_on(svc.clone().oneshot(fail));

    // A window full of successes, then 19 failures: one short of 100 %.
    for _ in 0..20 {
        call(false).unwrap();
    }
    for _ in 0..19 {
        call(true).unwrap_err();
    }
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(reached.load(Ordering::SeqCst), 39);

    // The 20th failure crosses the threshold; its caller stalls in the
    // metrics recorder before it can decide.
    gauge.armed.store(true, Ordering::SeqCst);
    let stalled = {
        let svc = svc.clone();
        std::thread::spawn(move || runtime().block_on(svc.oneshot(true)))
    };
    entered.recv().unwrap();
    assert_eq!(reached.load(Ordering::SeqCst), 40);

    // Every other caller still sees a window of 20 failures in 20: the first
    // failure after it decides, and nothing more reaches the backend.
    let mut rejected = 0;
    for _ in 0..50 {
        if let Err(err) = call(true)
            && err.downcast_ref::<CircuitOpen>().is_some()
        {
            rejected += 1;
        }
    }
    let after = reached.load(Ordering::SeqCst) - 40;
    assert!(
        after <= 1,
        "{after} failing calls reached the backend after the window held 20 failures of 20"
    );
    assert_eq!(rejected, 50 - after);
    assert_eq!(handle.state(), State::Open);

    release.send(()).unwrap();
    stalled.join().unwrap().unwrap_err();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(reached.load(Ordering::SeqCst), 40 + after);
}
