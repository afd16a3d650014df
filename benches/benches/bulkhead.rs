//! Benchmarks for the bulkhead layer, side by side with tower's concurrency
//! limits and tower-resilience's bulkhead, in one run.
//!
//! - `overhead`: one call (`poll_ready`, `call`, one poll of the response
//!   future, drop) through each layer around an always-ready `Identity`,
//!   with a limit high enough never to be reached: the acquire/release
//!   overhead. On 1 thread, and on 2 threads calling clones of one service
//!   (so both contend on the same permits). Allocations per call from
//!   divan's `AllocProfiler`.
//! - `contended`: two threads started together, 200 000 calls each through
//!   clones of one service (sustained contention on the same permits), for
//!   every layer in turn, nine interleaved rounds; one thread's time per
//!   call is printed after divan's table.
//! - `waiting`: two calls on a pool of one, the second queued and handed
//!   the permit when the first is dropped (the queue path, allocations).
//! - `refused`: a call refused at once by a full pool (what each call of a
//!   noisy tenant beyond its limit costs).
//! - `overhead_in_runtime`: the same inside a tokio runtime context, for
//!   tower-resilience's fail-fast mode, which arms a timer per call.
//! - `noisy_neighbour`: a backend with 8 workers (10 ms each); a healthy
//!   tenant with 4 closed-loop clients, a noisy one sending 2 000 calls/s
//!   (2.5x the backend's capacity) with up to 64 outstanding. Real time on a 2-worker
//!   multi-thread runtime, and again on tokio's paused clock; five
//!   scenarios (one a control) in five interleaved rounds. The healthy
//!   tenant's latency percentiles are printed after divan's table (divan's
//!   own figure there is just the simulation's wall time).
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

// Every per-call benchmark uses a fixed `sample_size = 1000`: left to itself,
// divan sometimes settles on one call per sample after a slow first
// measurement (a preemption on a busy machine), and then reports the clock's
// own overhead as the layer's.

fn main() {
    divan::main();
    contended::report();
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

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn identity(bencher: Bencher<'_, '_>) {
        bench_calls(bencher, Identity);
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_concurrency_limit(bencher: Bencher<'_, '_>) {
        bench_calls(
            bencher,
            tower::limit::ConcurrencyLimitLayer::new(LIMIT).layer(Identity),
        );
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_global_concurrency_limit(bencher: Bencher<'_, '_>) {
        bench_calls(
            bencher,
            tower::limit::GlobalConcurrencyLimitLayer::new(LIMIT).layer(Identity),
        );
    }

    /// tower-resilience's default: admission in `call`, waiting without a
    /// deadline (no timer).
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_resilience_bulkhead(bencher: Bencher<'_, '_>) {
        let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(LIMIT)
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// tower-resilience's backpressure mode: the permit in `poll_ready`.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_resilience_bulkhead_backpressure(bencher: Bencher<'_, '_>) {
        let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(LIMIT)
            .backpressure()
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// Palisade's default: admission in `call`, refusing at once when full.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_bulkhead(bencher: Bencher<'_, '_>) {
        bench_calls(bencher, palisade());
    }

    /// Palisade with `backpressure(true)`: the permit in `poll_ready`, as
    /// tower's `ConcurrencyLimit`.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_bulkhead_backpressure(bencher: Bencher<'_, '_>) {
        let layer = BulkheadLayer::builder("bench")
            .max_concurrent_calls(LIMIT)
            .backpressure(true)
            .build()
            .unwrap();
        bench_calls(bencher, layer.layer(Identity));
    }

    /// Partitioned: a key borrowed from the request and a map lookup.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
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
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_bulkhead_partitioned_key_per_thread(bencher: Bencher<'_, '_>) {
        use std::cell::Cell;
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static KEY: Cell<Option<&'static str>> = const { Cell::new(None) };
        }
        fn key() -> &'static str {
            KEY.with(|k| {
                k.get().unwrap_or_else(|| {
                    let key = ["tenant-a", "tenant-b"][NEXT.fetch_add(1, Ordering::Relaxed) % 2];
                    k.set(Some(key));
                    key
                })
            })
        }
        let layer = BulkheadLayer::builder("bench")
            .max_concurrent_calls(LIMIT)
            .partition_by(|_: &u64| Some(Cow::Borrowed(key())))
            .build()
            .unwrap();
        let mut svc = layer.layer(Identity);
        // Create both partitions before measuring.
        for warm in ["tenant-a", "tenant-b"] {
            KEY.with(|k| k.set(Some(warm)));
            call_now(&mut svc, 0).unwrap();
        }
        KEY.with(|k| k.set(None));
        bench_calls(bencher, svc);
    }

    /// Adaptive (gradient): two clock reads and the limiter's update per
    /// call.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
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

mod contended {
    use super::*;
    use palisade_benches::contended::{self, ROUNDS, Results, two_threads};

    /// Nanoseconds per call per thread, per layer, one entry per round.
    static RESULTS: Mutex<Results> = Mutex::new(Vec::new());

    /// All layers, `ROUNDS` rounds, interleaved.
    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn interleaved() {
        let palisade = palisade();
        let tower_limit = tower::limit::ConcurrencyLimitLayer::new(LIMIT).layer(Identity);
        let tower_global = tower::limit::GlobalConcurrencyLimitLayer::new(LIMIT).layer(Identity);
        let tower_resilience = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(LIMIT)
            .build()
            .unwrap()
            .layer(Identity);
        let mut results = contended::results(&[
            "palisade_bulkhead",
            "tower_concurrency_limit",
            "tower_global_concurrency_limit",
            "tower_resilience_bulkhead",
        ]);
        for _ in 0..ROUNDS {
            results[0].1.push(two_threads(&palisade, call_now));
            results[1].1.push(two_threads(&tower_limit, call_now));
            results[2].1.push(two_threads(&tower_global, call_now));
            results[3].1.push(two_threads(&tower_resilience, call_now));
        }
        *RESULTS.lock().unwrap() = results;
    }

    /// Prints the table, with each layer's time per call against tower's
    /// `ConcurrencyLimit`.
    pub(super) fn report() {
        contended::report(&RESULTS.lock().unwrap(), 1, "vs tower ConcurrencyLimit");
    }
}

mod waiting {
    use super::*;
    use palisade_benches::poll_now;
    use std::task::{Context, Waker};

    fn ready<S: Service<u16>>(svc: &mut S) {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
    }

    /// Two calls on a pool of one: the first is admitted and holds the
    /// permit; the second queues; dropping the first hands the permit to the
    /// second, which runs. Measures the queue path (lock, slab slot, hand-
    /// over, moving the ready inner service into the future) and shows it
    /// allocates nothing once the slab has its slot.
    #[divan::bench(sample_count = 200, sample_size = 1000)]
    fn palisade_bulkhead_queue_and_hand_over(bencher: Bencher<'_, '_>) {
        let layer = BulkheadLayer::builder("bench")
            .max_concurrent_calls(1)
            .max_wait(Duration::MAX)
            .build()
            .unwrap();
        let proto = layer.layer(Identity);
        // `u16` requests: this bench's code is its own, so it cannot change
        // how the compiler inlines the `u64` path the overhead group measures.
        let run = |svc: &mut palisade_bulkhead::Bulkhead<Identity>| {
            ready(svc);
            let first = svc.call(1u16);
            ready(svc);
            let second = svc.call(2u16);
            drop(first);
            poll_now(second).unwrap()
        };
        run(&mut proto.clone());
        let handle = layer.handle();
        bencher.with_inputs(|| proto.clone()).bench_refs(run);
        assert_eq!(handle.in_flight(), 0);
    }
}

mod refused {
    use super::*;
    use std::task::{Context, Waker};

    /// A call refused at once by a full pool (`max_wait` zero): what each
    /// call of a noisy tenant beyond its limit costs. The error is a
    /// `BoxError`, so one allocation.
    #[divan::bench(sample_count = 200, sample_size = 1000)]
    fn palisade_bulkhead_refused_at_once(bencher: Bencher<'_, '_>) {
        let layer = BulkheadLayer::builder("bench")
            .max_concurrent_calls(1)
            .build()
            .unwrap();
        let mut holder = layer.layer(Identity);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Service::<u32>::poll_ready(&mut holder, &mut cx).is_ready());
        // Admitted, never polled: it holds the only permit for the run.
        let held = holder.call(0u32);
        let proto = layer.layer(Identity);
        // `u32` requests, for the reason given in `waiting`.
        bencher
            .with_inputs(|| proto.clone())
            .bench_refs(|svc| call_now(svc, black_box(1u32)).unwrap_err());
        drop(held);
        assert_eq!(layer.handle().in_flight(), 0);
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

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn identity(bencher: Bencher<'_, '_>) {
        bench_in_runtime(bencher, Identity);
    }

    /// tower-resilience's fail-fast mode (`reject_when_full`): a
    /// `tokio::time::timeout` of zero around the acquire.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_resilience_bulkhead_reject(bencher: Bencher<'_, '_>) {
        let layer = tower_resilience::bulkhead::BulkheadLayer::builder()
            .max_concurrent_calls(LIMIT)
            .reject_when_full()
            .build()
            .unwrap();
        bench_in_runtime(bencher, layer.layer(Identity));
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_bulkhead(bencher: Bencher<'_, '_>) {
        bench_in_runtime(bencher, palisade());
    }
}

mod noisy_neighbour {
    use super::*;
    use tokio::sync::Semaphore;
    use tokio::task::JoinSet;
    use tokio::time::{Instant, MissedTickBehavior};
    use tower::ServiceExt;
    use tower::util::BoxCloneSyncService;

    /// The shared backend: 8 workers, 10 ms per call, FIFO beyond that.
    const BACKEND_WORKERS: usize = 8;
    const SERVICE_TIME: Duration = Duration::from_millis(10);
    /// The healthy tenant: 4 closed-loop clients (half the backend).
    const HEALTHY_CLIENTS: usize = 4;
    const HEALTHY_CALLS_PER_CLIENT: usize = 100;
    /// The noisy tenant: 2 new calls per millisecond (2 000/s, 2.5x what the
    /// whole backend can serve), whatever the answers, up to 64 outstanding
    /// (its connection pool): beyond that its new calls are not sent.
    const NOISY_CALLS_PER_MS: usize = 2;
    const NOISY_MAX_OUTSTANDING: usize = 64;
    /// Per tenant: the noisy one can hold at most half the backend.
    const PER_TENANT_LIMIT: usize = 4;
    /// Rounds of the four scenarios, interleaved so that a change in the
    /// machine's background load affects them alike. The target compares
    /// the median over rounds of each round's p99: a stall of the machine
    /// (other processes on a shared VM) spoils one round, not the figure.
    const ROUNDS: usize = 5;

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

    #[derive(Clone, Copy)]
    enum Scenario {
        Unloaded,
        UnloadedWithBulkhead,
        NoisyWithoutBulkhead,
        NoisyWithBulkhead,
        NoisyDroppedAtEntry,
    }

    /// The last is a control: the noise is generated as in the others but
    /// every noisy call is refused before it reaches anything (no pool, no
    /// backend). It measures what generating and refusing the noise costs
    /// the healthy tenant on this machine, with no isolation mechanism at
    /// all in the way.
    const SCENARIOS: [(Scenario, &str); 5] = [
        (Scenario::Unloaded, "unloaded"),
        (Scenario::UnloadedWithBulkhead, "unloaded, bulkhead"),
        (Scenario::NoisyWithoutBulkhead, "noisy, no bulkhead"),
        (Scenario::NoisyWithBulkhead, "noisy, bulkhead"),
        (Scenario::NoisyDroppedAtEntry, "noisy, dropped"),
    ];

    /// Per scenario: the healthy tenant's latencies, one vector per round.
    type Results = Vec<(&'static str, Vec<Vec<Duration>>)>;

    /// Real time, then the paused clock.
    static RESULTS: Mutex<[Results; 2]> = Mutex::new([Vec::new(), Vec::new()]);

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

    /// Refuses every noisy call at once; passes the healthy ones on.
    fn dropping_noise(backend: Svc) -> Svc {
        BoxCloneSyncService::new(tower::service_fn(move |tenant: Tenant| {
            let backend = backend.clone();
            async move {
                match tenant {
                    Tenant::Noisy => Err(palisade_core::BoxError::from("dropped")),
                    Tenant::Healthy => backend.oneshot(tenant).await,
                }
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

    /// The healthy tenant's latencies, with or without noise.
    async fn scenario(svc: Svc, noisy: bool) -> Vec<Duration> {
        let stop = Arc::new(AtomicBool::new(false));
        let noise = noisy.then(|| {
            let (svc, stop) = (svc.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
                let mut calls = JoinSet::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    while calls.try_join_next().is_some() {}
                    for _ in 0..NOISY_CALLS_PER_MS {
                        if calls.len() < NOISY_MAX_OUTSTANDING {
                            calls.spawn(svc.clone().oneshot(Tenant::Noisy));
                        }
                    }
                }
                calls.abort_all();
            })
        });
        if noisy {
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
        if let Some(noise) = noise {
            noise.await.unwrap();
        }
        latencies
    }

    /// Every scenario, `ROUNDS` times, interleaved; each on a fresh runtime
    /// and a fresh backend.
    fn rounds(paused: bool) -> Results {
        let mut results: Results = SCENARIOS
            .iter()
            .map(|(_, name)| (*name, Vec::new()))
            .collect();
        for _ in 0..ROUNDS {
            for (i, (kind, _)) in SCENARIOS.iter().enumerate() {
                let rt = if paused {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .start_paused(true)
                        .build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                }
                .unwrap();
                let latencies = rt.block_on(async move {
                    match kind {
                        Scenario::Unloaded => scenario(backend(), false).await,
                        Scenario::UnloadedWithBulkhead => {
                            scenario(with_bulkhead(backend()), false).await
                        }
                        Scenario::NoisyWithoutBulkhead => scenario(backend(), true).await,
                        Scenario::NoisyWithBulkhead => {
                            scenario(with_bulkhead(backend()), true).await
                        }
                        Scenario::NoisyDroppedAtEntry => {
                            scenario(dropping_noise(backend()), true).await
                        }
                    }
                });
                results[i].1.push(latencies);
            }
        }
        results
    }

    /// Real time on a 2-worker runtime: queueing, plus the CPU the noise and
    /// the bulkhead's rejections cost, plus the machine's own noise.
    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn simulation() {
        let results = rounds(false);
        RESULTS.lock().unwrap()[0] = results;
    }

    /// The same on tokio's paused clock: only queueing counts, exactly and
    /// reproducibly (every call's CPU time is zero on that clock).
    #[divan::bench(sample_count = 1, sample_size = 1)]
    fn simulation_paused_clock() {
        let results = rounds(true);
        RESULTS.lock().unwrap()[1] = results;
    }

    fn quantile(sorted: &[Duration], q: f64) -> Duration {
        let rank = (sorted.len() as f64 * q).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// The median over rounds of each round's p99.
    fn median_p99(rounds: &[Vec<Duration>]) -> Duration {
        let mut p99s: Vec<Duration> = rounds
            .iter()
            .map(|round| {
                let mut sorted = round.clone();
                sorted.sort_unstable();
                quantile(&sorted, 0.99)
            })
            .collect();
        p99s.sort_unstable();
        p99s[p99s.len() / 2]
    }

    /// Prints, per clock, the healthy tenant's latency percentiles per
    /// scenario (all rounds pooled), the median of the per-round p99s, and
    /// that median as a ratio of the unloaded one.
    pub(super) fn report() {
        let all = RESULTS.lock().unwrap();
        for (results, clock) in all.iter().zip(["real time", "paused clock"]) {
            if results.is_empty() {
                continue;
            }
            let unloaded = median_p99(&results[0].1);
            println!();
            println!(
                "noisy_neighbour ({clock}): healthy tenant ({HEALTHY_CLIENTS} closed-loop clients) \
                 beside a noisy one ({} calls/s, at most {NOISY_MAX_OUTSTANDING} outstanding); \
                 backend {BACKEND_WORKERS} workers x {SERVICE_TIME:?}; per-tenant limit \
                 {PER_TENANT_LIMIT}; {ROUNDS} interleaved rounds",
                NOISY_CALLS_PER_MS * 1000
            );
            println!(
                "{:<20} {:>6} {:>10} {:>10} {:>10} {:>10} {:>16} {:>10}",
                "scenario", "calls", "p50", "p90", "p99", "max", "p99 (round med.)", "/unloaded"
            );
            for (name, rounds) in results.iter() {
                let mut pooled: Vec<Duration> = rounds.iter().flatten().copied().collect();
                pooled.sort_unstable();
                let p99 = median_p99(rounds);
                println!(
                    "{name:<20} {:>6} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?} {:>16.2?} {:>10.3}",
                    pooled.len(),
                    quantile(&pooled, 0.50),
                    quantile(&pooled, 0.90),
                    quantile(&pooled, 0.99),
                    pooled[pooled.len() - 1],
                    p99,
                    p99.as_secs_f64() / unloaded.as_secs_f64()
                );
            }
            for (name, rounds) in results.iter() {
                let p99s: Vec<String> = rounds
                    .iter()
                    .map(|round| {
                        let mut sorted = round.clone();
                        sorted.sort_unstable();
                        format!("{:.2?}", quantile(&sorted, 0.99))
                    })
                    .collect();
                println!("  p99 per round, {name}: {}", p99s.join(", "));
            }
        }
    }
}
