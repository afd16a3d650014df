//! Benchmarks for the cache layer, side by side with the store underneath
//! (quick_cache), the store it replaced (moka) and tower-resilience's cache,
//! in one run.
//!
//! - `hit`: one hit (`poll_ready`, `call`, one poll of the response future)
//!   through each cache around an always-ready `Identity`, after one miss
//!   filled the entry; against quick_cache's raw `get` of the same entry
//!   (the floor the layer adds to), moka's, and `Identity` alone. On 1
//!   thread and on 2 threads hitting the same key through clones of one
//!   service. Allocations per call from divan's `AllocProfiler`.
//! - `http_hit`: the same for the HTTP cache (`GET /products/7`, a stored
//!   response with four headers and a 64-byte body), against quick_cache's
//!   raw `get` with the URI as key. The request is built outside the timed
//!   part.
//! - `coalescing`: 1000 concurrent misses on one key, against a backend
//!   that takes 1 ms per call and serves 16 at a time; with coalescing, and
//!   without. divan times the whole burst (until every caller has its
//!   value); the backend calls of each are printed after divan's table.
//!
//! Run: `cargo bench -p palisade-benches --bench cache`.
//!
//! Instructions per hit, repeatable on a busy machine: with
//! `PALISADE_CACHE_HIT_LOOP=<variant>:<n>` the binary runs `n` hits of one
//! variant (`identity`, `quick_cache_get`, `moka_get`, `palisade_cache`,
//! `palisade_cache_coarse`, `tower_resilience_cache`, and
//! `http_palisade_cache`, whose count includes building each request) and
//! exits, without divan. Under
//! `valgrind --tool=callgrind`, two runs of different `n` give the
//! instructions of one hit by difference (`scripts` in
//! `docs/benchmarks.md#cache`).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use divan::{AllocProfiler, Bencher};
use http_body_util::Full;
use palisade_benches::{Identity, call_now, enter_runtime};
use palisade_cache::{CacheLayer, ClockSource};
use tower::{Layer, Service, ServiceExt};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    if let Ok(spec) = std::env::var("PALISADE_CACHE_HIT_LOOP") {
        hit_loop::run(&spec);
        return;
    }
    divan::main();
    contended_hits::report();
    coalescing::report();
}

/// Benchmarks one call per iteration through a clone of `svc`, after one
/// call that fills the cache.
fn bench_hits<S>(bencher: Bencher<'_, '_>, svc: S)
where
    S: Service<u64> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    enter_runtime(|| {
        let mut svc = svc;
        call_now(&mut svc, 1).unwrap();
        let proto = Mutex::new(svc);
        bencher
            .with_inputs(|| proto.lock().unwrap().clone())
            .bench_refs(|svc| call_now(svc, black_box(1u64)).unwrap());
    });
}

/// The store under `palisade-cache`, as the layer builds it (weighed,
/// sharded), with one `Arc` value under `key`.
fn quick_cache_with<K: Eq + std::hash::Hash + Clone>(
    key: K,
) -> quick_cache::sync::Cache<K, Arc<u64>> {
    let cache = quick_cache::sync::Cache::new(64 << 10);
    cache.insert(key, Arc::new(1));
    cache
}

mod hit {
    use super::*;

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn identity(bencher: Bencher<'_, '_>) {
        bench_hits(bencher, Identity);
    }

    /// quick_cache's own `get` of an `Arc` value: the store's floor.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn quick_cache_get(bencher: Bencher<'_, '_>) {
        let cache = quick_cache_with(1u64);
        bencher.bench(|| *cache.get(black_box(&1)).unwrap());
    }

    /// moka's own `get` of an `Arc` value: the store `palisade-cache` had
    /// before quick_cache.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn moka_get(bencher: Bencher<'_, '_>) {
        let cache: moka::sync::Cache<u64, Arc<u64>> =
            moka::sync::Cache::builder().max_capacity(64 << 20).build();
        cache.insert(1, Arc::new(1));
        bencher.bench(|| *cache.get(black_box(&1)).unwrap());
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_cache(bencher: Bencher<'_, '_>) {
        let layer = CacheLayer::builder("bench")
            .key(|n: &u64| Some(*n))
            .build()
            .unwrap();
        bench_hits(bencher, layer.layer(Identity));
    }

    /// The same with `clock = "coarse"`: the kernel's coarse clock judges
    /// freshness instead of tokio's.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_cache_coarse(bencher: Bencher<'_, '_>) {
        let layer = CacheLayer::builder("bench")
            .key(|n: &u64| Some(*n))
            .clock(ClockSource::Coarse)
            .build()
            .unwrap();
        bench_hits(bencher, layer.layer(Identity));
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_resilience_cache(bencher: Bencher<'_, '_>) {
        let layer = tower_resilience::cache::CacheLayer::builder()
            .max_size(1024)
            .ttl(Duration::from_secs(60))
            .key_extractor(|n: &u64| *n)
            .build()
            .unwrap();
        bench_hits(bencher, layer.layer(Identity));
    }
}

/// An origin answering every request with a stored-looking product page.
#[derive(Clone, Copy, Debug, Default)]
struct Origin;

impl Service<http::Request<()>> for Origin {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", "max-age=60")
            .header("etag", "\"v1\"")
            .header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .body(Full::new(Bytes::from_static(&[b'x'; 64])))
            .unwrap();
        ready(Ok(response))
    }
}

fn product() -> http::Request<()> {
    http::Request::get("/products/7").body(()).unwrap()
}

mod http_hit {
    use super::*;

    /// quick_cache's own `get` with the URI as key.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn quick_cache_get(bencher: Bencher<'_, '_>) {
        let cache = quick_cache_with::<Box<str>>("/products/7".into());
        bencher
            .with_inputs(product)
            .bench_local_refs(|request| *cache.get(request.uri().path()).unwrap());
    }

    /// moka's own `get` with the URI as key.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn moka_get(bencher: Bencher<'_, '_>) {
        let cache: moka::sync::Cache<Box<str>, Arc<u64>> =
            moka::sync::Cache::builder().max_capacity(64 << 20).build();
        cache.insert("/products/7".into(), Arc::new(1));
        bencher
            .with_inputs(product)
            .bench_local_refs(|request| *cache.get(request.uri().path()).unwrap());
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_cache(bencher: Bencher<'_, '_>) {
        let layer = CacheLayer::http_builder("bench").build().unwrap();
        let mut svc = layer.layer(Origin);
        enter_runtime(|| {
            call_now(&mut svc, product()).unwrap();
            let proto = Mutex::new(svc);
            bencher
                .with_inputs(|| (proto.lock().unwrap().clone(), product()))
                .bench_local_values(|(mut svc, request)| call_now(&mut svc, request).unwrap());
        });
    }
}

/// 1000 concurrent misses on one key.
mod coalescing {
    use super::*;

    pub(super) const CALLERS: usize = 1000;
    /// The backend's capacity: 16 calls at a time, 1 ms each.
    const BACKEND_CONCURRENCY: usize = 16;
    const BACKEND_LATENCY: Duration = Duration::from_millis(1);

    /// A slow backend with bounded capacity, counting its calls.
    #[derive(Clone)]
    struct Backend {
        calls: Arc<AtomicUsize>,
        capacity: Arc<tokio::sync::Semaphore>,
    }

    impl Backend {
        fn new() -> Self {
            Self {
                calls: Arc::default(),
                capacity: Arc::new(tokio::sync::Semaphore::new(BACKEND_CONCURRENCY)),
            }
        }
    }

    impl Service<u64> for Backend {
        type Response = u64;
        type Error = Infallible;
        type Future = std::pin::Pin<Box<dyn Future<Output = Result<u64, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u64) -> Self::Future {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let capacity = Arc::clone(&self.capacity);
            Box::pin(async move {
                let _permit = capacity.acquire().await.unwrap();
                tokio::time::sleep(BACKEND_LATENCY).await;
                Ok(n * 10)
            })
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// One burst: a fresh cache, 1000 callers at once; returns the backend
    /// calls made.
    pub(super) fn burst(runtime: &tokio::runtime::Runtime, coalesce: bool) -> usize {
        let backend = Backend::new();
        let layer = CacheLayer::builder("burst")
            .key(|n: &u64| Some(*n))
            .coalesce(coalesce)
            .build()
            .unwrap();
        let svc = layer.layer(backend.clone());
        runtime.block_on(async {
            let tasks: Vec<_> = (0..CALLERS)
                .map(|_| tokio::spawn(svc.clone().oneshot(7)))
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap(), 70);
            }
        });
        backend.calls.load(Ordering::Relaxed)
    }

    #[divan::bench(args = [true, false], sample_count = 20, sample_size = 1)]
    fn thousand_misses(bencher: Bencher<'_, '_>, coalesce: bool) {
        let runtime = runtime();
        bencher.bench_local(|| burst(&runtime, coalesce));
    }

    /// Prints each mode's backend calls and time per burst (median of 9).
    pub(super) fn report() {
        let runtime = runtime();
        println!();
        println!(
            "coalescing: {CALLERS} concurrent misses on one key; backend {BACKEND_CONCURRENCY} at a \
             time, {} ms per call; median of 9 bursts",
            BACKEND_LATENCY.as_millis()
        );
        println!(
            "{:<16} {:>14} {:>18}",
            "mode", "backend calls", "time to all (ms)"
        );
        for coalesce in [true, false] {
            let mut times = Vec::new();
            let mut calls = 0;
            for _ in 0..9 {
                let started = tokio::time::Instant::now();
                calls = burst(&runtime, coalesce);
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let mode = if coalesce {
                "coalescing"
            } else {
                "no coalescing"
            };
            println!("{mode:<16} {calls:>14} {:>18.2}", times[times.len() / 2]);
        }
    }
}

/// Sustained contention: two threads hitting one key through clones of one
/// service, each cache in turn over interleaved rounds.
mod contended_hits {
    use super::*;
    use palisade_benches::contended;

    /// quick_cache's raw `get` as a service, so it runs through the same
    /// driver.
    #[derive(Clone)]
    pub(super) struct QuickCacheGet(pub(super) Arc<quick_cache::sync::Cache<u64, Arc<u64>>>);

    impl Service<u64> for QuickCacheGet {
        type Response = u64;
        type Error = Infallible;
        type Future = Ready<Result<u64, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u64) -> Self::Future {
            ready(Ok(*self.0.get(&n).unwrap()))
        }
    }

    /// moka's raw `get` as a service, so it runs through the same driver.
    #[derive(Clone)]
    pub(super) struct MokaGet(pub(super) moka::sync::Cache<u64, Arc<u64>>);

    impl Service<u64> for MokaGet {
        type Response = u64;
        type Error = Infallible;
        type Future = Ready<Result<u64, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u64) -> Self::Future {
            ready(Ok(*self.0.get(&n).unwrap()))
        }
    }

    fn hit<S: Service<u64>>(svc: &mut S, n: u64) -> Result<S::Response, S::Error> {
        call_now(svc, n)
    }

    pub(super) fn report() {
        let quick = QuickCacheGet(Arc::new(quick_cache_with(1u64)));
        let moka: moka::sync::Cache<u64, Arc<u64>> =
            moka::sync::Cache::builder().max_capacity(64 << 20).build();
        moka.insert(1, Arc::new(1));
        let moka = MokaGet(moka);
        let palisade = CacheLayer::builder("contended")
            .key(|n: &u64| Some(*n))
            .build()
            .unwrap()
            .layer(Identity);
        let coarse = CacheLayer::builder("contended")
            .key(|n: &u64| Some(*n))
            .clock(ClockSource::Coarse)
            .build()
            .unwrap()
            .layer(Identity);
        let tr = tower_resilience::cache::CacheLayer::builder()
            .max_size(1024)
            .ttl(Duration::from_secs(60))
            .key_extractor(|n: &u64| *n)
            .build()
            .unwrap()
            .layer(Identity);
        enter_runtime(|| {
            call_now(&mut palisade.clone(), 1).unwrap();
            call_now(&mut coarse.clone(), 1).unwrap();
            call_now(&mut tr.clone(), 1).unwrap();
        });
        let mut results = contended::results(&[
            "quick_cache_get",
            "moka_get",
            "palisade_cache",
            "palisade_cache_coarse",
            "tower_resilience_cache",
        ]);
        for _ in 0..contended::ROUNDS {
            results[0].1.push(contended::two_threads(&quick, hit));
            results[1].1.push(contended::two_threads(&moka, hit));
            results[2]
                .1
                .push(enter_runtime(|| contended::two_threads(&palisade, hit)));
            results[3]
                .1
                .push(enter_runtime(|| contended::two_threads(&coarse, hit)));
            results[4]
                .1
                .push(enter_runtime(|| contended::two_threads(&tr, hit)));
        }
        contended::report(&results, 0, "ratio to quick_cache_get");
    }
}

/// `PALISADE_CACHE_HIT_LOOP=<variant>:<n>`: `n` hits of one variant, for an
/// instruction count under callgrind (see the module docs).
mod hit_loop {
    use super::*;
    use contended_hits::{MokaGet, QuickCacheGet};

    fn hits<S: Service<u64>>(mut svc: S, n: u64)
    where
        S::Error: std::fmt::Debug,
    {
        enter_runtime(|| {
            call_now(&mut svc, 1).unwrap();
            for _ in 0..n {
                black_box(call_now(&mut svc, black_box(1u64)).unwrap());
            }
        });
    }

    pub(super) fn run(spec: &str) {
        let (variant, n) = spec
            .split_once(':')
            .expect("PALISADE_CACHE_HIT_LOOP=<variant>:<n>");
        let n: u64 = n.parse().expect("a count of hits");
        match variant {
            "identity" => hits(Identity, n),
            "quick_cache_get" => hits(QuickCacheGet(Arc::new(quick_cache_with(1u64))), n),
            "moka_get" => {
                let cache = moka::sync::Cache::builder().max_capacity(64 << 20).build();
                cache.insert(1, Arc::new(1));
                hits(MokaGet(cache), n);
            }
            "palisade_cache" => hits(
                CacheLayer::builder("loop")
                    .key(|n: &u64| Some(*n))
                    .build()
                    .unwrap()
                    .layer(Identity),
                n,
            ),
            "palisade_cache_coarse" => hits(
                CacheLayer::builder("loop")
                    .key(|n: &u64| Some(*n))
                    .clock(ClockSource::Coarse)
                    .build()
                    .unwrap()
                    .layer(Identity),
                n,
            ),
            "tower_resilience_cache" => hits(
                tower_resilience::cache::CacheLayer::builder()
                    .max_size(1024)
                    .ttl(Duration::from_secs(60))
                    .key_extractor(|n: &u64| *n)
                    .build()
                    .unwrap()
                    .layer(Identity),
                n,
            ),
            "http_palisade_cache" => {
                let mut svc = CacheLayer::http_builder("loop")
                    .build()
                    .unwrap()
                    .layer(Origin);
                enter_runtime(|| {
                    call_now(&mut svc, product()).unwrap();
                    for _ in 0..n {
                        black_box(call_now(&mut svc, product()).unwrap());
                    }
                });
            }
            other => panic!("unknown variant {other}"),
        }
    }
}
