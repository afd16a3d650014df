//! Circuit breaker benchmarks, side by side in one run:
//!
//! - `closed`: the cost of one call through a closed breaker, against the
//!   bare `Identity` service, tower's `ConcurrencyLimit` and `Timeout` (the
//!   yardsticks) and tower-resilience 0.13's breaker, on 1 thread and with 2
//!   threads on one shared breaker.
//! - `contended`: sustained contention, printed after the timed benchmarks:
//!   two threads started together, 200 000 calls each through clones of one
//!   closed breaker (or yardstick), every layer in turn, nine interleaved
//!   rounds. divan's `threads = 2` samples are microseconds long, and on a
//!   2-vCPU machine the two threads do not always overlap within them, so
//!   its 2-thread medians understate what a lock costs under contention.
//! - `open`: the cost of one rejected call.
//! - `time_window`: the cost per call of a 60-s time window that already
//!   holds 1k, 100k or 1M calls (tower-resilience: up to 100k; it scans every
//!   recorded call on each call, so filling it with 1M calls would take hours).
//!
//! Every layer is built outside the timed loop, every call is `poll_ready`,
//! `call` and one poll of the (immediately ready) future with a no-op waker.
//! Allocations per call come from divan's `AllocProfiler`.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p palisade-benches --bench circuit_breaker`

use std::time::Duration;

use divan::{AllocProfiler, Bencher, black_box};
use palisade_benches::{Identity, call_now, poll_now};
use palisade_circuit_breaker::CircuitBreakerLayer;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
    contended::report();
}

const THREADS: &[usize] = &[1, 2];

/// Polls that may spin before a contended call is declared stalled.
const MAX_SPINS: u32 = 1 << 26;

/// tower-resilience's breaker returns a boxed future that may need more than
/// one poll when its mutex is contended (the lock is handed over to the
/// waiting future, which a later poll observes): poll it to completion.
fn tr_call<S>(svc: &mut S, req: u64) -> Result<S::Response, S::Error>
where
    S: Service<u64>,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut spins = 0;
    loop {
        match svc.poll_ready(&mut cx) {
            std::task::Poll::Ready(Ok(())) => break,
            std::task::Poll::Ready(Err(e)) => return Err(e),
            std::task::Poll::Pending => {
                spins += 1;
                assert!(spins < MAX_SPINS, "tower-resilience poll_ready stalled");
                std::hint::spin_loop();
            }
        }
    }
    let mut fut = std::pin::pin!(svc.call(req));
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        spins += 1;
        assert!(spins < MAX_SPINS, "tower-resilience future stalled");
        std::hint::spin_loop();
    }
}

fn palisade_layer(name: &str) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder(name).build().expect("valid")
}

fn tr_layer(
    name: &str,
) -> tower_resilience::circuitbreaker::CircuitBreakerLayer<
    tower_resilience::circuitbreaker::DefaultClassifier,
> {
    let (layer, _handle) = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .name(name)
        .build_with_handle()
        .expect("valid");
    layer
}

thread_local! {
    /// A tokio context for tower's `Timeout`, entered once per benchmark
    /// thread (entering it per call would add to the measurement).
    static RUNTIME: tokio::runtime::EnterGuard<'static> = {
        let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime"),
        ));
        rt.enter()
    };
}

fn in_runtime<T>(make: impl FnOnce() -> T) -> T {
    RUNTIME.with(|_| ());
    make()
}

// A fixed sample size: divan's automatic one sometimes settles on 100
// iterations per sample on a busy machine, which inflates fast benchmarks.

/// One call through a closed breaker (or a yardstick layer).
#[divan::bench_group(sample_count = 100, sample_size = 5_000)]
mod closed {
    use super::*;

    #[divan::bench(threads = THREADS)]
    fn identity(bencher: Bencher<'_, '_>) {
        bencher
            .with_inputs(|| Identity)
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
    }

    #[divan::bench(threads = THREADS)]
    fn palisade(bencher: Bencher<'_, '_>) {
        let layer = palisade_layer("closed");
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
        assert_eq!(layer.handle().snapshot().failed_calls, 0);
    }

    /// Switched off by hand (`Disabled`): what the layer costs when it
    /// records nothing.
    #[divan::bench(threads = THREADS)]
    fn palisade_disabled(bencher: Bencher<'_, '_>) {
        let layer = palisade_layer("disabled");
        layer.handle().disable();
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
    }

    /// With slow-call detection: two clock reads per call.
    #[divan::bench(threads = THREADS)]
    fn palisade_timed(bencher: Bencher<'_, '_>) {
        let layer = CircuitBreakerLayer::builder("timed")
            .slow_call_duration(Duration::from_secs(1))
            .build()
            .expect("valid");
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
    }

    #[divan::bench(threads = THREADS)]
    fn tower_concurrency_limit(bencher: Bencher<'_, '_>) {
        // The global form shares one semaphore between threads, as one
        // breaker is shared.
        let layer = tower::limit::GlobalConcurrencyLimitLayer::new(1 << 20);
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
    }

    #[divan::bench(threads = THREADS)]
    fn tower_timeout(bencher: Bencher<'_, '_>) {
        let layer = tower::timeout::TimeoutLayer::new(Duration::from_secs(10));
        bencher
            .with_inputs(|| in_runtime(|| layer.layer(Identity)))
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
    }

    #[divan::bench(threads = THREADS)]
    fn tower_resilience(bencher: Bencher<'_, '_>) {
        let layer = tr_layer("closed");
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| tr_call(svc, black_box(1u64)).unwrap());
    }
}

/// One call rejected by an open breaker.
#[divan::bench_group(sample_count = 100, sample_size = 5_000)]
mod open {
    use super::*;

    #[divan::bench(threads = THREADS)]
    fn palisade(bencher: Bencher<'_, '_>) {
        let layer = palisade_layer("open");
        layer.handle().force_open();
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap_err());
    }

    /// One thread only: when two threads contend for its mutex in the open
    /// state, tower-resilience's `poll_ready` returns `Pending` behind a 1 ms
    /// timer, which a benchmark without a running runtime never wakes.
    #[divan::bench]
    fn tower_resilience(bencher: Bencher<'_, '_>) {
        let (layer, handle) = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .name("open")
            .build_with_handle()
            .expect("valid");
        poll_now(handle.force_open());
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| tr_call(svc, black_box(1u64)).unwrap_err());
    }
}

/// One call into a 60-s time window that already holds `calls` calls.
mod time_window {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[divan::bench(args = [1_000, 100_000, 1_000_000], sample_count = 100, sample_size = 5_000)]
    fn palisade(bencher: Bencher<'_, '_>, calls: usize) {
        let layer = CircuitBreakerLayer::builder("time")
            .time_window(WINDOW)
            .build()
            .expect("valid");
        let mut svc = layer.layer(Identity);
        for _ in 0..calls {
            call_now(&mut svc, 1u64).unwrap();
        }
        assert!(layer.handle().snapshot().calls >= calls as u64);
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
        assert!(
            layer.handle().snapshot().calls > calls as u64,
            "the window still holds the pre-fill"
        );
    }

    #[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 50, sample_size = 10)]
    fn tower_resilience(bencher: Bencher<'_, '_>, calls: usize) {
        use tower_resilience::circuitbreaker::SlidingWindowType;
        let (layer, handle) = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .name("time")
            .sliding_window_type(SlidingWindowType::TimeBased)
            .sliding_window_duration(WINDOW)
            .build_with_handle()
            .expect("valid");
        let mut svc = layer.layer(Identity);
        for _ in 0..calls {
            tr_call(&mut svc, 1u64).unwrap();
        }
        bencher
            .with_inputs(|| layer.layer(Identity))
            .bench_refs(|svc| tr_call(svc, black_box(1u64)).unwrap());
        drop(handle);
    }
}

/// Sustained contention on one breaker (see the module docs).
mod contended {
    use super::*;
    use palisade_benches::contended::{self, ROUNDS, Results, two_threads};
    use std::sync::Mutex;

    static RESULTS: Mutex<Results> = Mutex::new(Vec::new());

    /// Every layer, `ROUNDS` rounds, interleaved.
    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn interleaved() {
        let palisade_layer = palisade_layer("contended");
        let palisade = palisade_layer.layer(Identity);
        let tower_limit = tower::limit::GlobalConcurrencyLimitLayer::new(1 << 20).layer(Identity);
        let tower_resilience = tr_layer("contended").layer(Identity);
        let mut results = contended::results(&[
            "palisade (closed)",
            "tower GlobalConcurrencyLimit",
            "tower-resilience",
        ]);
        for _ in 0..ROUNDS {
            results[0].1.push(two_threads(&palisade, call_now));
            results[1].1.push(two_threads(&tower_limit, call_now));
            results[2].1.push(two_threads(&tower_resilience, tr_call));
        }
        assert_eq!(palisade_layer.handle().snapshot().failed_calls, 0);
        *RESULTS.lock().unwrap() = results;
    }

    /// Prints the table, with each layer's time per call against palisade's.
    pub(super) fn report() {
        contended::report(&RESULTS.lock().unwrap(), 0, "this / palisade");
    }
}
