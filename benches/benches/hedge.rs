//! Hedging benchmarks, side by side in one run:
//!
//! - `per_call`: one `u64` call through the bare `Identity` service, tower's
//!   `Hedge` (p95, its histogram pre-filled so that it is past its warm-up,
//!   as in steady state) and palisade's `HedgeLayer` (p95, a 5 % budget, its
//!   window warmed up with 200 answers). The answer is ready at once, so
//!   neither sends a hedge: this is what hedging costs every call that does
//!   not need it.
//! - `threads`: the same from 1 and 2 threads through one layer (tower's
//!   histogram is one `Mutex`; ours is atomic counters striped per thread).
//! - after the timed benchmarks, a tail-latency simulation on tokio's paused
//!   clock (deterministic: seeded, no wall clock): a backend where 1 % of
//!   calls take 200 ms and the rest 5 ms, a request every millisecond for
//!   30 s (the first 5 s warm the histograms up and are not counted). It
//!   prints p50, p99, p99.9, p99.99 and the extra load (backend calls per
//!   request, minus one) with no hedging, with tower's `Hedge`, with ours,
//!   and with ours allowed two hedges.
//!
//! Every layer is built outside the timed loop; every call is `poll_ready`,
//! `call` and polls of the response future with a no-op waker, inside a
//! tokio runtime context (both layers create timers). Allocations per call
//! come from divan's `AllocProfiler`.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p palisade-benches --bench hedge`
//! (`-- tail` for the simulation alone).

use std::time::Duration;

use divan::{AllocProfiler, Bencher, black_box};
use palisade_benches::{Identity, call_now, enter_runtime};
use palisade_hedge::HedgeLayer;
use tower::Layer;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
    if tail::wanted() {
        tail::report();
    }
}

const THREADS: &[usize] = &[1, 2];

/// tower's hedge policy for `u64` requests: every request may be hedged.
#[derive(Clone, Copy, Debug)]
struct Idempotent;

impl tower::hedge::Policy<u64> for Idempotent {
    fn clone_request(&self, req: &u64) -> Option<u64> {
        Some(*req)
    }

    fn can_retry(&self, _: &u64) -> bool {
        true
    }
}

/// tower's `Hedge` at p95 over 10 s periods, with 200 answers of 1 ms
/// already in the histogram it reads (past its `min_data_points` of 100).
fn tower_hedge<S>(inner: S) -> tower::hedge::Hedge<S, Idempotent>
where
    S: tower::Service<u64> + Clone,
    S::Error: Into<tower::BoxError>,
{
    tower::hedge::Hedge::new_with_mock_latencies(
        inner,
        Idempotent,
        100,
        0.95,
        Duration::from_secs(10),
        &[1; 200],
    )
}

/// Ours at p95 with a 5 % budget, its window warmed up with 200 answers.
fn palisade_hedge() -> HedgeLayer {
    HedgeLayer::builder("bench")
        .percentile(95.0)
        .budget_ratio(0.05)
        .build()
        .expect("valid")
}

#[divan::bench_group(sample_count = 200)]
mod per_call {
    use super::*;

    #[divan::bench]
    fn identity(bencher: Bencher<'_, '_>) {
        let mut svc = Identity;
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(7u64))));
    }

    #[divan::bench]
    fn tower_hedge(bencher: Bencher<'_, '_>) {
        let mut svc = super::tower_hedge(Identity);
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(7u64))));
    }

    #[divan::bench]
    fn palisade_hedge(bencher: Bencher<'_, '_>) {
        let mut svc = super::palisade_hedge().layer(Identity);
        for n in 0..200 {
            enter_runtime(|| call_now(&mut svc, n)).unwrap();
        }
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(7u64))));
    }
}

#[divan::bench_group(sample_count = 200)]
mod threads {
    use super::*;

    #[divan::bench(threads = THREADS)]
    fn tower_hedge(bencher: Bencher<'_, '_>) {
        // Not `Clone`: each thread builds its own over one shared histogram
        // would need tower's internals; one hedge per thread, each with its
        // own mutex, is the best case for tower here.
        bencher
            .with_inputs(|| super::tower_hedge(Identity))
            .bench_refs(|svc| enter_runtime(|| call_now(svc, black_box(7u64))));
    }

    #[divan::bench(threads = THREADS)]
    fn palisade_hedge(bencher: Bencher<'_, '_>) {
        let mut warm = super::palisade_hedge().layer(Identity);
        for n in 0..200 {
            enter_runtime(|| call_now(&mut warm, n)).unwrap();
        }
        bencher
            .with_inputs(|| warm.clone())
            .bench_refs(|svc| enter_runtime(|| call_now(svc, black_box(7u64))));
    }
}

/// The tail-latency simulation.
mod tail {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use palisade_core::BoxError;
    use tokio::time::{Instant, sleep};
    use tower::util::BoxCloneSyncService;
    use tower::{Layer, ServiceExt};

    /// Requests, one per millisecond.
    const REQUESTS: u64 = 30_000;
    /// The first requests warm the histograms up and are not counted.
    const WARM_UP: u64 = 5_000;
    const SEED: u64 = 0x5eed_0016;

    pub(super) fn wanted() -> bool {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--list") {
            return false;
        }
        let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        filters.is_empty() || filters.iter().any(|f| "tail".contains(f.as_str()))
    }

    #[derive(Clone, Copy, Debug)]
    enum Setup {
        None,
        Tower,
        Palisade,
        PalisadeTwoHedges,
    }

    struct Outcome {
        latencies: Vec<Duration>,
        extra_load: f64,
    }

    /// The backend: 1 % of calls (drawn per call, seeded) take 200 ms, the
    /// rest 5 ms. Counts the calls made for counted requests.
    fn backend(
        calls: Arc<AtomicU64>,
        rng: Arc<Mutex<fastrand::Rng>>,
    ) -> impl tower::Service<u64, Response = u64, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static {
        tower::service_fn(move |id: u64| {
            if id >= WARM_UP {
                calls.fetch_add(1, Ordering::Relaxed);
            }
            let slow = rng.lock().expect("not poisoned").f64() < 0.01;
            async move {
                sleep(Duration::from_millis(if slow { 200 } else { 5 })).await;
                Ok::<_, BoxError>(id)
            }
        })
    }

    fn run(setup: Setup) -> Outcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let calls = Arc::new(AtomicU64::new(0));
            let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(SEED)));
            let inner = backend(Arc::clone(&calls), rng);
            let svc: BoxCloneSyncService<u64, u64, BoxError> = match setup {
                Setup::None => BoxCloneSyncService::new(inner),
                Setup::Tower => {
                    // tower's `Hedge` is not `Clone`: share one, calling it
                    // one request at a time (it is ready at once).
                    let hedge = Arc::new(Mutex::new(tower::hedge::Hedge::new(
                        inner,
                        super::Idempotent,
                        100,
                        0.95,
                        Duration::from_secs(1),
                    )));
                    BoxCloneSyncService::new(tower::service_fn(move |id: u64| {
                        let fut = {
                            let mut hedge = hedge.lock().expect("not poisoned");
                            let ready = palisade_benches::poll_now(std::future::poll_fn(|cx| {
                                tower::Service::poll_ready(&mut *hedge, cx)
                            }));
                            ready.map(|()| tower::Service::call(&mut *hedge, id))
                        };
                        async move { fut?.await }
                    }))
                }
                Setup::Palisade => BoxCloneSyncService::new(super::palisade_hedge().layer(inner)),
                Setup::PalisadeTwoHedges => BoxCloneSyncService::new(
                    palisade_hedge::HedgeLayer::builder("bench")
                        .percentile(95.0)
                        .budget_ratio(0.05)
                        .max_hedges(2)
                        .build()
                        .expect("valid")
                        .layer(inner),
                ),
            };
            let mut answers = Vec::new();
            let start = Instant::now();
            for id in 0..REQUESTS {
                tokio::time::sleep_until(start + Duration::from_millis(id)).await;
                let svc = svc.clone();
                answers.push(tokio::spawn(async move {
                    let began = Instant::now();
                    svc.oneshot(id).await.expect("answered");
                    (id, began.elapsed())
                }));
            }
            let mut latencies = Vec::new();
            for answer in answers {
                let (id, latency) = answer.await.expect("not cancelled");
                if id >= WARM_UP {
                    latencies.push(latency);
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let extra_load =
                calls.load(Ordering::Relaxed) as f64 / (REQUESTS - WARM_UP) as f64 - 1.0;
            Outcome {
                latencies,
                extra_load,
            }
        })
    }

    fn percentile(sorted: &[Duration], p: f64) -> Duration {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((sorted.len() as f64) * p / 100.0).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub(super) fn report() {
        println!();
        println!(
            "tail latency: 1 % of calls take 200 ms, the rest 5 ms; a request every ms for {} s \
             ({} counted after a {} s warm-up); tokio's paused clock, seed {SEED:#x}",
            REQUESTS / 1000,
            REQUESTS - WARM_UP,
            WARM_UP / 1000
        );
        println!(
            "{:<40} {:>8} {:>8} {:>8} {:>8} {:>12}",
            "setup", "p50", "p99", "p99.9", "p99.99", "extra load"
        );
        for (name, setup) in [
            ("no hedging", Setup::None),
            ("tower Hedge (p95, 1 s period)", Setup::Tower),
            ("palisade HedgeLayer (p95, 5 %)", Setup::Palisade),
            (
                "palisade HedgeLayer (p95, 5 %, 2 hedges)",
                Setup::PalisadeTwoHedges,
            ),
        ] {
            let Outcome {
                mut latencies,
                extra_load,
            } = run(setup);
            latencies.sort_unstable();
            println!(
                "{name:<40} {:>8.1?} {:>8.1?} {:>8.1?} {:>8.1?} {:>11.2}%",
                percentile(&latencies, 50.0),
                percentile(&latencies, 99.0),
                percentile(&latencies, 99.9),
                percentile(&latencies, 99.99),
                extra_load * 100.0
            );
        }
    }
}
