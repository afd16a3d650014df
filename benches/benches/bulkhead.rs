//! Benchmarks for the bulkhead layer, side by side with tower's concurrency
//! limits and tower-resilience's bulkhead, in one run.
//!
//! - `overhead`: one call (`poll_ready`, `call`, one poll of the response
//!   future, drop) through each layer around an always-ready `Identity`,
//!   with a limit high enough never to be reached: the acquire/release
//!   overhead. On 1 thread, and on 2 threads calling clones of one service
//!   (so both contend on the same permits). Allocations per call from
//!   divan's `AllocProfiler`.
//! - `overhead_in_runtime`: the same inside a tokio runtime context, for
//!   tower-resilience's fail-fast mode, which arms a timer per call.
//! - `noisy_neighbour`: a backend with 8 workers (10 ms each); a healthy
//!   tenant with 4 closed-loop clients, a noisy one with 64. Real time on a
//!   2-worker multi-thread runtime. The healthy tenant's latency
//!   percentiles are printed after the run; divan's figure is the time the
//!   healthy tenant takes for its 1200 calls.
//!
//! Run: `cargo bench -p palisade-benches --bench bulkhead`.

use std::borrow::Cow;
use std::fmt::Debug;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use divan::{AllocProfiler, Bencher};
use palisade_benches::{Identity, call_now, enter_runtime};
use palisade_bulkhead::BulkheadLayer;
use palisade_bulkhead::limiter::Gradient;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

/// A limit that two threads with one call each never reach.
const LIMIT: usize = 1024;

fn main() {
    divan::main();
    noisy_neighbour::report();
}

/// Benchmarks one call per iteration through a clone of `svc` (the clone is
/// made outside the timed section; clones share the layer's permits, so
/// with 2 threads both contend on the same state).
fn bench_calls<S>(bencher: Bencher<'_, '_>, svc: S)
where
    S: Service<u64> + Clone + Send,
    S::Error: Debug,
{
    // One call first, so one-time work (a partition's pool, lazily
    // initialised statics) is not in the first sample.
    let mut svc = svc;
    call_now(&mut svc, 0).unwrap();
    let proto = Mutex::new(svc);
    bencher
        .with_inputs(|| proto.lock().unwrap().clone())
        .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
}

fn palisade() -> palisade_bulkhead::Bulkhead<Identity> {
    BulkheadLayer::builder("bench")
        .max_concurrent_calls(LIMIT)
        .build()
        .unwrap()
        .layer(Identity)
}

mod overhead {
    use super::*;

    #[divan::bench(threads = [1, 2])]
    fn identity(bencher: Bencher<'_, '_>) {
        bench_calls(bencher, Identity);
    }

    #[divan::bench(threads = [1, 2])]
    fn tower_concurrency_limit(bencher: Bencher<'_, '_>) {
        bench_calls(
            bencher,
            tower::limit::ConcurrencyLimitLayer::new(LIMIT).layer(Identity),
        );
    }

    #[divan::bench(threads = [1, 2])]
    fn tower_global_concurrency_limit(bencher: Bencher<'_, '_>) {
        bench_calls(
            bencher,
            tower::limit::GlobalConcurrencyLimitLayer::new(LIMIT).layer(Identity),
        );
    }

    /// tower-resilience's default: admission in `call`, waiting without a
    /// deadline (no timer).
    #[divan::bench(threads = [1, 2])]
    fn tower_resilience_bulkhead(bencher: Bencher<'_, '_>) {
        let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(LIMIT)
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// tower-resilience's backpressure mode: the permit in `poll_ready`.
    #[divan::bench(threads = [1, 2])]
    fn tower_resilience_bulkhead_backpressure(bencher: Bencher<'_, '_>) {
        let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(LIMIT)
            .backpressure()
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// Palisade's default: admission in `call`, refusing at once when full.
    #[divan::bench(threads = [1, 2])]
    fn palisade_bulkhead(bencher: Bencher<'_, '_>) {
        bench_calls(bencher, palisade());
    }

    /// Palisade with `backpressure(true)`: the permit in `poll_ready`, as
    /// tower's `ConcurrencyLimit`.
    #[divan::bench(threads = [1, 2])]
    fn palisade_bulkhead_backpressure(bencher: Bencher<'_, '_>) {
        let layer = BulkheadLayer::builder("bench")
            .max_concurrent_calls(LIMIT)
            .backpressure(true)
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// Partitioned: a key borrowed from the request and a map lookup.
    #[divan::bench(threads = [1, 2])]
    fn palisade_bulkhead_partitioned(bencher: Bencher<'_, '_>) {
        let layer = BulkheadLayer::builder("bench")
            .max_concurrent_calls(LIMIT)
            .partition_by(|_: &u64| Some(Cow::Borrowed("tenant-a")))
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// Partitioned, each thread with its own key: the keys' pools (and,
    /// most likely, their map shards) differ, so threads share nothing but
    /// the map's shard array.
    #[divan::bench(threads = [1, 2])]
    fn palisade_bulkhead_partitioned_key_per_thread(bencher: Bencher<'_, '_>) {
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static KEY: &'static str = ["tenant-a", "tenant-b"][NEXT.fetch_add(1, Ordering::Relaxed) % 2];
        }
        let layer = BulkheadLayer::builder("bench")
            .max_concurrent_calls(LIMIT)
            .partition_by(|_: &u64| Some(Cow::Borrowed(KEY.with(|k| *k))))
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// Adaptive (gradient): two clock reads and the limiter's update per
    /// call.
    #[divan::bench(threads = [1, 2])]
    fn palisade_bulkhead_adaptive(bencher: Bencher<'_, '_>) {
        let layer = BulkheadLayer::builder("bench")
            .adaptive(
                Gradient::new()
                    .initial_limit(LIMIT)
                    .min_limit(LIMIT)
                    .max_limit(LIMIT),
            )
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }
}

mod overhead_in_runtime {
    use super::*;

    fn bench_in_runtime<S>(bencher: Bencher<'_, '_>, svc: S)
    where
        S: Service<u64> + Clone + Send,
        S::Error: Debug,
    {
        let mut svc = svc;
        enter_runtime(|| call_now(&mut svc, 0)).unwrap();
        let proto = Mutex::new(svc);
        bencher
            .with_inputs(|| proto.lock().unwrap().clone())
            .bench_refs(|svc| enter_runtime(|| call_now(svc, black_box(1u64)).unwrap()));
    }

    #[divan::bench(threads = [1, 2])]
    fn identity(bencher: Bencher<'_, '_>) {
        bench_in_runtime(bencher, Identity);
    }

    /// tower-resilience's fail-fast mode (`reject_when_full`): a
    /// `tokio::time::timeout` of zero around the acquire.
    #[divan::bench(threads = [1, 2])]
    fn tower_resilience_bulkhead_reject(bencher: Bencher<'_, '_>) {
        let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(LIMIT)
            .reject_when_full()
            .build()
            .unwrap();
        bench_in_runtime(bencher, layer.layer(Identity));
    }

    #[divan::bench(threads = [1, 2])]
    fn palisade_bulkhead(bencher: Bencher<'_, '_>) {
        bench_in_runtime(bencher, palisade());
    }
}

mod noisy_neighbour {
    use super::*;
    use std::collections::BTreeMap;
    use tokio::sync::Semaphore;
    use tokio::task::JoinSet;
    use tokio::time::Instant;
    use tower::ServiceExt;
    use tower::util::BoxCloneSyncService;

    const BACKEND_WORKERS: usize = 8;
    const SERVICE_TIME: Duration = Duration::from_millis(10);
    const HEALTHY_CLIENTS: usize = 4;
    const HEALTHY_CALLS_PER_CLIENT: usize = 300;
    const NOISY_CLIENTS: usize = 64;
    /// Per tenant: the noisy one can hold at most half the backend.
    const PER_TENANT_LIMIT: usize = 4;
    const NOISY_BACKOFF: Duration = Duration::from_millis(1);

    #[derive(Clone, Copy, Debug)]
    enum Tenant {
        Healthy,
        Noisy,
    }

    impl Tenant {
        const fn as_str(self) -> &'static str {
            match self {
                Self::Healthy => "healthy",
                Self::Noisy => "noisy",
            }
        }
    }

    type Svc = BoxCloneSyncService<Tenant, (), palisade_core::BoxError>;

    #[derive(Clone, Copy, Debug)]
    pub(super) struct Percentiles {
        calls: usize,
        p50: Duration,
        p90: Duration,
        p99: Duration,
        max: Duration,
    }

    static RESULTS: Mutex<BTreeMap<&'static str, Percentiles>> = Mutex::new(BTreeMap::new());

    /// The shared backend: `BACKEND_WORKERS` workers, FIFO, `SERVICE_TIME`
    /// per call. Calls beyond its capacity queue for a worker.
    fn backend() -> Svc {
        let workers = Arc::new(Semaphore::new(BACKEND_WORKERS));
        BoxCloneSyncService::new(tower::service_fn(move |_tenant: Tenant| {
            let workers = Arc::clone(&workers);
            async move {
                let _worker = workers.acquire_owned().await.expect("never closed");
                tokio::time::sleep(SERVICE_TIME).await;
                Ok::<_, palisade_core::BoxError>(())
            }
        }))
    }

    fn with_bulkhead(backend: Svc) -> Svc {
        let layer = BulkheadLayer::builder("tenants")
            .max_concurrent_calls(PER_TENANT_LIMIT)
            .partition_by(|tenant: &Tenant| Some(Cow::Borrowed(tenant.as_str())))
            .build()
            .unwrap();
        BoxCloneSyncService::new(layer.layer(backend))
    }

    async fn scenario(svc: Svc, noisy: bool) -> Vec<Duration> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut noise = JoinSet::new();
        if noisy {
            for _ in 0..NOISY_CLIENTS {
                let (svc, stop) = (svc.clone(), Arc::clone(&stop));
                noise.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if svc.clone().oneshot(Tenant::Noisy).await.is_err() {
                            tokio::time::sleep(NOISY_BACKOFF).await;
                        }
                    }
                });
            }
            // Let the noise build up its backlog first.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut healthy = JoinSet::new();
        for _ in 0..HEALTHY_CLIENTS {
            let svc = svc.clone();
            healthy.spawn(async move {
                let mut latencies = Vec::with_capacity(HEALTHY_CALLS_PER_CLIENT);
                for _ in 0..HEALTHY_CALLS_PER_CLIENT {
                    let start = Instant::now();
                    svc.clone()
                        .oneshot(Tenant::Healthy)
                        .await
                        .expect("never refused");
                    latencies.push(start.elapsed());
                }
                latencies
            });
        }
        let mut latencies = Vec::new();
        while let Some(done) = healthy.join_next().await {
            latencies.extend(done.unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        while noise.join_next().await.is_some() {}
        latencies
    }

    fn percentiles(mut latencies: Vec<Duration>) -> Percentiles {
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i]
        };
        Percentiles {
            calls: latencies.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: *latencies.last().unwrap(),
        }
    }

    fn run(name: &'static str, make: fn() -> Svc, noisy: bool) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let latencies = rt.block_on(async move { scenario(make(), noisy).await });
        RESULTS.lock().unwrap().insert(name, percentiles(latencies));
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn a_unloaded() {
        run("a_unloaded", backend, false);
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn b_unloaded_with_bulkhead() {
        run(
            "b_unloaded_with_bulkhead",
            || with_bulkhead(backend()),
            false,
        );
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn c_noisy_without_bulkhead() {
        run("c_noisy_without_bulkhead", backend, true);
    }

    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn d_noisy_with_bulkhead() {
        run("d_noisy_with_bulkhead", || with_bulkhead(backend()), true);
    }

    /// Prints the healthy tenant's latency percentiles for every scenario
    /// that ran, and each p99 as a ratio of the unloaded p99.
    pub(super) fn report() {
        let results = RESULTS.lock().unwrap();
        if results.is_empty() {
            return;
        }
        let unloaded = results.get("a_unloaded").map(|p| p.p99);
        println!();
        println!(
            "noisy_neighbour: healthy tenant latency ({HEALTHY_CLIENTS} clients; noisy: {NOISY_CLIENTS} clients; backend {BACKEND_WORKERS} workers x {SERVICE_TIME:?}; per-tenant limit {PER_TENANT_LIMIT})"
        );
        println!(
            "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10} {:>14}",
            "scenario", "calls", "p50", "p90", "p99", "max", "p99/unloaded"
        );
        for (name, p) in results.iter() {
            let ratio = unloaded.map_or(String::from("-"), |u| {
                format!("{:.3}", p.p99.as_secs_f64() / u.as_secs_f64())
            });
            println!(
                "{name:<28} {:>6} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?} {ratio:>14}",
                p.calls, p.p50, p.p90, p.p99, p.max
            );
        }
    }
}
