//! Support for Palisade's benchmarks: drive a tower service by hand, without a
//! runtime's scheduler in the measurement.
//!
//! Every benchmarked service here is ready at once and answers with a future
//! that completes on its first poll, so one call is `poll_ready`, `call` and a
//! single `poll`, all with a no-op waker. What remains in the measurement is
//! the layer's own work. [`enter_runtime`] gives the calling thread a tokio
//! context for layers that create timers (tower's `Timeout`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::Service;

/// Calls `svc` once with `req`: `poll_ready`, `call`, then polls the response
/// future to completion with a no-op waker.
///
/// # Panics
///
/// If the service is not ready at once or its future does not complete within
/// a bounded number of polls: the benchmark would be measuring a stall.
#[inline]
pub fn call_now<S, Req>(svc: &mut S, req: Req) -> Result<S::Response, S::Error>
where
    S: Service<Req>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => panic!("benchmarked service was not ready at once"),
    }
    let fut = svc.call(req);
    poll_now(fut)
}

/// Polls `fut` with a no-op waker until it completes (at most 64 polls).
///
/// # Panics
///
/// If the future is still pending after 64 polls.
#[inline]
pub fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    for _ in 0..64 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("benchmarked future did not complete");
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// Runs `f` inside a tokio runtime context on this thread (a per-thread
/// runtime, built once), so layers that create timers can be driven by
/// [`call_now`].
pub fn enter_runtime<T>(f: impl FnOnce() -> T) -> T {
    RUNTIME.with(|rt| {
        let _guard = rt.enter();
        f()
    })
}

/// An always-ready identity service whose future is ready on first poll: the
/// bare inner service every benchmark is measured against. `Clone`, `Send`,
/// `Sync`, and inlined away entirely.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<T> Service<T> for Identity {
    type Response = T;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<T, std::convert::Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: T) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

/// Sustained contention: two threads started together, many calls each,
/// through clones of one service, every layer in turn over interleaved
/// rounds. divan's `threads = 2` samples last microseconds, and on a 2-vCPU
/// machine the two threads do not always overlap within one; these rounds
/// are long enough that they do for most of each.
pub mod contended {
    use std::fmt::Debug;
    use std::hint::black_box;
    use std::sync::Barrier;
    use std::time::Duration;

    use tokio::time::Instant;
    use tower::Service;

    /// Calls per thread per round.
    pub const CALLS: usize = 200_000;
    /// Rounds; in each, every layer runs once, in turn, so that the
    /// machine's background load falls on all of them alike.
    pub const ROUNDS: usize = 9;

    /// One layer's name and its time per call in each round, in ns.
    pub type Results = Vec<(&'static str, Vec<f64>)>;

    /// An empty table: one row per layer name, no rounds yet.
    #[must_use]
    pub fn results(names: &[&'static str]) -> Results {
        names.iter().map(|&name| (name, Vec::new())).collect()
    }

    /// How a thread makes one call through `S` (`call_now`, or a driver for
    /// a layer whose futures need more than one poll).
    pub type Call<S> =
        fn(&mut S, u64) -> Result<<S as Service<u64>>::Response, <S as Service<u64>>::Error>;

    /// Two threads, started together, each making [`CALLS`] calls with
    /// `call` through its own clone of `svc`. Returns one thread's mean time
    /// per call, in nanoseconds.
    ///
    /// # Panics
    ///
    /// If a call fails or a thread panics.
    pub fn two_threads<S>(svc: &S, call: Call<S>) -> f64
    where
        S: Service<u64> + Clone + Send,
        S::Error: Debug,
    {
        let start = Barrier::new(2);
        let elapsed: Vec<Duration> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let mut svc = svc.clone();
                    let start = &start;
                    scope.spawn(move || {
                        start.wait();
                        let began = Instant::now();
                        for _ in 0..CALLS {
                            black_box(call(&mut svc, black_box(1u64)).unwrap());
                        }
                        began.elapsed()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let total: Duration = elapsed.iter().sum();
        #[allow(clippy::cast_precision_loss)]
        let calls = (2 * CALLS) as f64;
        total.as_secs_f64() * 1e9 / calls
    }

    /// The median of `values` (the upper one for an even count).
    ///
    /// # Panics
    ///
    /// If `values` is empty.
    #[must_use]
    pub fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// Prints each layer's time per call (median over rounds, min, max) and
    /// its ratio to `results[baseline]` (median of the per-round ratios),
    /// under the column title `ratio`.
    pub fn report(results: &Results, baseline: usize, ratio: &str) {
        let Some((_, base)) = results.get(baseline) else {
            return;
        };
        println!();
        println!(
            "contended: 2 threads started together, {CALLS} calls each through clones of one \
             service; {ROUNDS} interleaved rounds"
        );
        println!(
            "{:<32} {:>16} {:>10} {:>10} {:>26}",
            "layer", "ns/call (median)", "min", "max", ratio
        );
        for (name, per_round) in results {
            let ratios: Vec<f64> = per_round.iter().zip(base).map(|(a, b)| a / b).collect();
            let min = per_round.iter().copied().fold(f64::INFINITY, f64::min);
            let max = per_round.iter().copied().fold(0.0, f64::max);
            println!(
                "{name:<32} {:>16.1} {min:>10.1} {max:>10.1} {:>26.2}",
                median(per_round),
                median(&ratios)
            );
        }
    }
}
