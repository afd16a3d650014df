//! Benchmarks for the rate limiter, side by side with governor (direct and
//! keyed) and tower's `RateLimit`, in one run.
//!
//! - `per_call`: one admitted call through each limiter, with a limit high
//!   enough never to refuse. Every row goes through one harness (`harness`):
//!   each thread calls its own copy (a clone of the one service, or a
//!   reference to the one governor limiter), made on its first call, with
//!   the next key; `per_call::identity` is the harness alone. Palisade's
//!   layer, tower's `RateLimit` and `governor_keyed*_service` (governor's
//!   keyed limiter in a minimal tower service, `governor_service`) are
//!   called as services around an always-ready `Identity` (`poll_ready`,
//!   `call`, one poll); `governor_direct*` and `governor_keyed` /
//!   `governor_keyed_os_clock` call `check` / `check_key` directly, with no
//!   service around them. Keyed: 1 key and 10 000 keys, each call the next
//!   key in turn (each thread from its own offset), every key already held.
//!   On 1 thread and on 2 threads (one shared limiter; tower's `RateLimit`
//!   is not `Clone`, so each of its threads has its own, uncontended).
//!   `palisade_keyed_tsc_cloned_inputs` keeps this bench's earlier harness
//!   (a fresh clone per call through divan's `with_inputs`) for comparison.
//!   Allocations per call from divan's `AllocProfiler`.
//! - `new_key`: a call whose key the limiter has never seen (up to 1 000 000
//!   distinct keys): the insert, and the bytes it allocates, for Palisade's
//!   table and governor's keyed store.
//! - `refused`: a call refused at once (the cost of each call of a client
//!   over its limit).
//! - Redis (printed after divan's table): admitted calls per second from 64
//!   concurrent callers on a 2-worker runtime, through the limiter with its
//!   Redis backend, against a raw loop of the same script through the same
//!   client (one `ConnectionManager`), seven interleaved rounds. Reads
//!   `PALISADE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); skipped
//!   with a message when no server answers.
//!
//! Run: `cargo bench -p palisade-benches --bench rate_limit`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use divan::{AllocProfiler, Bencher};
use governor::clock::MonotonicClock;
use governor::{Quota, RateLimiter};
use palisade_benches::{Identity, call_now, enter_runtime};
use palisade_rate_limit::{ClockSource, Key, Rate, RateLimitLayer};
use tower::Layer;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
    // Given a filter or divan options (one row under callgrind, say), the
    // Redis rounds run only if an argument names them.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--bench"))
        .collect();
    if filters.is_empty() || filters.iter().any(|f| f.contains("redis")) {
        redis_throughput::report();
    }
}

/// `n` keys, made once and kept for the whole run.
fn keys(n: usize) -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let all = KEYS.get_or_init(|| {
        (0..1_000_000)
            .map(|i| &*Box::leak(format!("client-{i:07}").into_boxed_str()))
            .collect()
    });
    &all[..n]
}

/// Each thread's own position in the key list.
fn next_key(keys: &'static [&'static str]) -> &'static str {
    use std::cell::Cell;
    static THREADS: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static AT: Cell<usize> = Cell::new(THREADS.fetch_add(1, Ordering::Relaxed) * 4_999);
    }
    AT.with(|at| {
        let i = at.get();
        at.set(i.wrapping_add(1));
        keys[i % keys.len()]
    })
}

/// The Palisade limiter: a rate that never refuses within a run.
fn palisade_layer() -> palisade_rate_limit::RateLimitBuilder {
    RateLimitLayer::builder("bench")
        .rate(Rate::per_second(1_000_000_000))
        .burst(1_000_000_000)
        .max_keys(2_000_000)
}

fn key_of<'a>(k: &'a &str) -> Option<Key<'a>> {
    Some(Key::text(k))
}

/// The clock of a Palisade bench, as a divan argument.
#[derive(Clone, Copy, Debug)]
enum Clock {
    Tokio,
    Tsc,
}

impl Clock {
    const fn source(self) -> ClockSource {
        match self {
            Self::Tokio => ClockSource::Tokio,
            Self::Tsc => ClockSource::Tsc,
        }
    }
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tokio => "tokio_clock",
            Self::Tsc => "tsc_clock",
        })
    }
}

fn governor_quota() -> Quota {
    Quota::per_second(NonZeroU32::MAX)
}

/// One harness for every `per_call` row: each thread calls its own copy of
/// the benchmarked value (a clone of the one service, or a reference to the
/// one governor limiter), made on its first call and kept for the whole
/// benchmark, with the next key. `per_call::identity` measures the harness.
mod harness {
    use std::cell::RefCell;
    use std::sync::atomic::AtomicU64;
    use std::thread::LocalKey;

    use super::*;

    /// A thread's own copy, tagged with the benchmark it belongs to.
    pub(super) type Own<T> = RefCell<Option<(u64, T)>>;

    /// A type with a slot per thread for its copy.
    pub(super) trait PerThread: Sized + 'static {
        fn slot() -> &'static LocalKey<Own<Self>>;
    }

    macro_rules! per_thread {
        ($($name:ident: $t:ty),* $(,)?) => {$(
            thread_local! {
                static $name: harness::Own<$t> = const { std::cell::RefCell::new(None) };
            }
            impl harness::PerThread for $t {
                fn slot() -> &'static std::thread::LocalKey<harness::Own<Self>> {
                    &$name
                }
            }
        )*};
    }
    pub(super) use per_thread;

    /// Tags each benchmark's per-thread copies.
    static BENCH: AtomicU64 = AtomicU64::new(0);

    /// Calls `f` on this thread's own copy (made by `make` on the thread's
    /// first call) with each of `keys` in turn.
    pub(super) fn bench<T: PerThread, R>(
        bencher: Bencher<'_, '_>,
        keys: &'static [&'static str],
        make: impl Fn() -> T + Sync,
        f: impl Fn(&mut T, &'static str) -> R + Sync,
    ) {
        let bench = BENCH.fetch_add(1, Ordering::Relaxed) + 1;
        bencher.bench(|| {
            T::slot().with_borrow_mut(|own| {
                let own = match own {
                    Some((tag, own)) if *tag == bench => own,
                    _ => &mut own.insert((bench, make())).1,
                };
                f(own, black_box(next_key(keys)))
            })
        });
    }
}

/// governor's keyed limiter as a tower service, the least a service around it
/// does (`poll_ready` of the inner service; `call` checks the key, then calls
/// the inner service or answers the refusal): the same shape as Palisade's
/// layer, for a service-to-service comparison.
mod governor_service {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use governor::clock::{Clock, MonotonicClock};
    use governor::middleware::NoOpMiddleware;
    use governor::state::keyed::DashMapStateStore;
    use governor::{DefaultKeyedRateLimiter, RateLimiter};
    use palisade_core::BoxError;
    use tower::Service;

    /// governor on its default clock (the time-stamp counter).
    pub(super) type Keyed = DefaultKeyedRateLimiter<&'static str>;
    /// governor on the OS clock.
    pub(super) type KeyedOs = RateLimiter<
        &'static str,
        DashMapStateStore<&'static str>,
        MonotonicClock,
        NoOpMiddleware<<MonotonicClock as Clock>::Instant>,
    >;

    /// A keyed limiter's check.
    pub(super) trait Check: Send + Sync + 'static {
        fn check(&self, key: &'static str) -> bool;
    }

    impl Check for Keyed {
        #[inline]
        fn check(&self, key: &'static str) -> bool {
            self.check_key(&key).is_ok()
        }
    }

    impl Check for KeyedOs {
        #[inline]
        fn check(&self, key: &'static str) -> bool {
            self.check_key(&key).is_ok()
        }
    }

    /// The service: the limiter (shared) and the inner service.
    pub(super) struct Governed<L, S> {
        pub(super) limiter: Arc<L>,
        pub(super) inner: S,
    }

    pub(super) enum ResponseFuture<F> {
        Called(F),
        Refused(Option<BoxError>),
    }

    impl<F, T, E> Future for ResponseFuture<F>
    where
        F: Future<Output = Result<T, E>> + Unpin,
        E: Into<BoxError>,
    {
        type Output = Result<T, BoxError>;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.get_mut() {
                Self::Called(f) => Pin::new(f).poll(cx).map_err(Into::into),
                Self::Refused(e) => Poll::Ready(Err(e.take().expect("polled after completion"))),
            }
        }
    }

    impl<L, S> Service<&'static str> for Governed<L, S>
    where
        L: Check,
        S: Service<&'static str>,
        S::Future: Unpin,
        S::Error: Into<BoxError>,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = ResponseFuture<S::Future>;

        #[inline]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.inner.poll_ready(cx).map_err(Into::into)
        }

        #[inline]
        fn call(&mut self, key: &'static str) -> Self::Future {
            if self.limiter.check(key) {
                ResponseFuture::Called(self.inner.call(key))
            } else {
                ResponseFuture::Refused(Some("rate limited".into()))
            }
        }
    }
}

/// The per-call rows' key extractor: the request is the key.
#[derive(Clone, Copy, Debug)]
struct TextKey;

impl palisade_rate_limit::KeyExtractor<&'static str> for TextKey {
    #[inline]
    fn extract<'r>(&'r self, req: &'r &'static str) -> palisade_rate_limit::key::KeyResult<'r> {
        Ok(Some(Key::text(req)))
    }
}

mod per_call {
    use std::sync::Arc;

    use governor::DefaultDirectRateLimiter;
    use governor::middleware::NoOpMiddleware;
    use governor::state::{InMemoryState, NotKeyed};
    use palisade_rate_limit::RateLimit;

    use super::governor_service::{Governed, Keyed, KeyedOs};
    use super::harness::per_thread;
    use super::*;

    type Palisade = RateLimit<Identity, TextKey>;
    type PalisadeUnkeyed = RateLimit<Identity>;
    type TowerRateLimit = tower::limit::RateLimit<Identity>;
    type DirectOs = RateLimiter<
        NotKeyed,
        InMemoryState,
        MonotonicClock,
        NoOpMiddleware<<MonotonicClock as governor::clock::Clock>::Instant>,
    >;

    per_thread!(
        OWN_IDENTITY: Identity,
        OWN_PALISADE: Palisade,
        OWN_PALISADE_UNKEYED: PalisadeUnkeyed,
        OWN_TOWER: TowerRateLimit,
        OWN_DIRECT: Arc<DefaultDirectRateLimiter>,
        OWN_DIRECT_OS: Arc<DirectOs>,
        OWN_KEYED: Arc<Keyed>,
        OWN_KEYED_OS: Arc<KeyedOs>,
        OWN_GOVERNED: Governed<Keyed, Identity>,
        OWN_GOVERNED_OS: Governed<KeyedOs, Identity>,
    );

    /// The harness alone, around an always-ready `Identity`.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn identity(bencher: Bencher<'_, '_>) {
        harness::bench(
            bencher,
            keys(1),
            || Identity,
            |svc, k| call_now(svc, k).unwrap(),
        );
    }

    /// tower's `RateLimit` (fixed window): not `Clone`, so every thread
    /// builds its own.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_rate_limit(bencher: Bencher<'_, '_>) {
        let layer = tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1));
        harness::bench(
            bencher,
            keys(1),
            || enter_runtime(|| layer.layer(Identity)),
            |svc, k| enter_runtime(|| call_now(svc, k).unwrap()),
        );
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn governor_direct(bencher: Bencher<'_, '_>) {
        let limiter = Arc::new(RateLimiter::direct(governor_quota()));
        harness::bench(
            bencher,
            keys(1),
            || Arc::clone(&limiter),
            |l, _| {
                l.check().unwrap();
            },
        );
    }

    /// governor on the OS clock (`MonotonicClock`, as Palisade's default).
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn governor_direct_os_clock(bencher: Bencher<'_, '_>) {
        let limiter = Arc::new(RateLimiter::direct_with_clock(
            governor_quota(),
            MonotonicClock,
        ));
        harness::bench(
            bencher,
            keys(1),
            || Arc::clone(&limiter),
            |l, _| {
                l.check().unwrap();
            },
        );
    }

    #[divan::bench(threads = [1, 2], args = [Clock::Tokio, Clock::Tsc], sample_count = 200, sample_size = 1000)]
    fn palisade_unkeyed(bencher: Bencher<'_, '_>, clock: Clock) {
        let mut svc = palisade_layer()
            .clock(clock.source())
            .build()
            .unwrap()
            .layer(Identity);
        call_now(&mut svc, "k").unwrap();
        let proto = Mutex::new(svc);
        harness::bench(
            bencher,
            keys(1),
            || proto.lock().unwrap().clone(),
            |svc, k| call_now(svc, k).unwrap(),
        );
    }

    fn governor_keyed_limiter(n: usize) -> Arc<Keyed> {
        let limiter = Arc::new(RateLimiter::keyed(governor_quota()));
        for k in keys(n) {
            limiter.check_key(k).unwrap();
        }
        limiter
    }

    fn governor_keyed_os_limiter(n: usize) -> Arc<KeyedOs> {
        let limiter = Arc::new(RateLimiter::dashmap_with_clock(
            governor_quota(),
            MonotonicClock,
        ));
        for k in keys(n) {
            limiter.check_key(k).unwrap();
        }
        limiter
    }

    /// governor's `check_key`, called directly.
    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn governor_keyed(bencher: Bencher<'_, '_>, n: usize) {
        let limiter = governor_keyed_limiter(n);
        harness::bench(
            bencher,
            keys(n),
            || Arc::clone(&limiter),
            |l, k| {
                l.check_key(&k).unwrap();
            },
        );
    }

    /// governor keyed on the OS clock (`MonotonicClock`, as Palisade's
    /// default).
    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn governor_keyed_os_clock(bencher: Bencher<'_, '_>, n: usize) {
        let limiter = governor_keyed_os_limiter(n);
        harness::bench(
            bencher,
            keys(n),
            || Arc::clone(&limiter),
            |l, k| {
                l.check_key(&k).unwrap();
            },
        );
    }

    /// governor keyed inside a minimal tower service around `Identity` (see
    /// `governor_service`): what Palisade's rows are, service for service.
    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn governor_keyed_service(bencher: Bencher<'_, '_>, n: usize) {
        let limiter = governor_keyed_limiter(n);
        harness::bench(
            bencher,
            keys(n),
            || Governed {
                limiter: Arc::clone(&limiter),
                inner: Identity,
            },
            |svc, k| call_now(svc, k).unwrap(),
        );
    }

    /// The same on the OS clock.
    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn governor_keyed_os_clock_service(bencher: Bencher<'_, '_>, n: usize) {
        let limiter = governor_keyed_os_limiter(n);
        harness::bench(
            bencher,
            keys(n),
            || Governed {
                limiter: Arc::clone(&limiter),
                inner: Identity,
            },
            |svc, k| call_now(svc, k).unwrap(),
        );
    }

    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn palisade_keyed(bencher: Bencher<'_, '_>, n: usize) {
        bench_keyed(bencher, n, ClockSource::Tokio);
    }

    /// With the time-stamp counter clock (`ClockSource::Tsc`, as governor's).
    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn palisade_keyed_tsc(bencher: Bencher<'_, '_>, n: usize) {
        bench_keyed(bencher, n, ClockSource::Tsc);
    }

    fn keyed_service(n: usize, clock: ClockSource) -> Palisade {
        let mut svc = palisade_layer()
            .clock(clock)
            .key(TextKey)
            .build()
            .unwrap()
            .layer(Identity);
        for k in keys(n) {
            call_now(&mut svc, *k).unwrap();
        }
        svc
    }

    fn bench_keyed(bencher: Bencher<'_, '_>, n: usize, clock: ClockSource) {
        let proto = Mutex::new(keyed_service(n, clock));
        harness::bench(
            bencher,
            keys(n),
            || proto.lock().unwrap().clone(),
            |svc, k| call_now(svc, k).unwrap(),
        );
    }

    /// The harness of this bench's earlier versions, kept for comparison:
    /// a fresh clone of the service per call (divan's `with_inputs`, 1000
    /// clones a sample, so each call reads another clone's memory), where
    /// the governor rows called one limiter with no service around it.
    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn palisade_keyed_tsc_cloned_inputs(bencher: Bencher<'_, '_>, n: usize) {
        let proto = Mutex::new(keyed_service(n, ClockSource::Tsc));
        let keys = keys(n);
        bencher
            .with_inputs(|| proto.lock().unwrap().clone())
            .bench_refs(|svc| call_now(svc, black_box(next_key(keys))).unwrap());
    }
}

mod new_key {
    use super::*;

    /// Each call a key never seen; the allocations are the insert's (the
    /// key's bytes and the table's growth, amortised).
    #[divan::bench(sample_count = 50, sample_size = 10_000)]
    fn palisade_keyed(bencher: Bencher<'_, '_>) {
        let mut svc = palisade_layer()
            .key_by(key_of)
            .build()
            .unwrap()
            .layer(Identity);
        let keys = keys(1_000_000);
        let mut next = 0;
        bencher.bench_local(|| {
            let key = keys[next % keys.len()];
            next += 1;
            call_now(&mut svc, black_box(key)).unwrap()
        });
    }

    #[divan::bench(sample_count = 50, sample_size = 10_000)]
    fn governor_keyed(bencher: Bencher<'_, '_>) {
        let limiter = RateLimiter::keyed(governor_quota());
        let keys = keys(1_000_000);
        let mut next = 0;
        bencher.bench_local(|| {
            let key = keys[next % keys.len()];
            next += 1;
            limiter.check_key(&black_box(key)).unwrap();
        });
    }
}

mod refused {
    use super::*;

    #[divan::bench(sample_count = 200, sample_size = 1000)]
    fn palisade_keyed(bencher: Bencher<'_, '_>) {
        let mut svc = RateLimitLayer::builder("bench")
            .rate(Rate::per_hour(1))
            .burst(1)
            .key_by(key_of)
            .build()
            .unwrap()
            .layer(Identity);
        call_now(&mut svc, "k").unwrap();
        bencher.bench_local(|| call_now(&mut svc, black_box("k")).unwrap_err());
    }

    #[divan::bench(sample_count = 200, sample_size = 1000)]
    fn governor_keyed(bencher: Bencher<'_, '_>) {
        let limiter = RateLimiter::keyed(Quota::per_hour(NonZeroU32::MIN));
        limiter.check_key(&"k").unwrap();
        bencher.bench_local(|| limiter.check_key(&black_box("k")).unwrap_err());
    }
}

/// Admitted calls per second through the Redis backend.
mod redis_throughput {
    use std::future::Future;
    use std::sync::Arc;

    use palisade_rate_limit::backend::{GCRA_SCRIPT, RedisBackend};
    use redis::aio::ConnectionManager;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;

    const CALLERS: usize = 64;
    const CALLS_EACH: usize = 200;
    const ROUNDS: usize = 7;

    /// One round of `CALLERS` tasks making `CALLS_EACH` calls each; returns
    /// admitted calls per second.
    async fn round<F, Fut>(call: F) -> f64
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let began = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut admitted = 0usize;
                    for _ in 0..CALLS_EACH {
                        admitted += usize::from(call().await);
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += t.await.unwrap();
        }
        assert_eq!(admitted, CALLERS * CALLS_EACH, "every call is admitted");
        #[allow(clippy::cast_precision_loss)]
        let rate = admitted as f64 / began.elapsed().as_secs_f64();
        rate
    }

    pub(super) fn report() {
        let url = std::env::var("PALISADE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let backend = match RedisBackend::connect(&url).await {
                Ok(backend) => backend,
                Err(e) => {
                    println!("\nredis: skipped, no server at {url}: {e}");
                    return;
                }
            };
            let conn: ConnectionManager = backend.connection().clone();
            let prefix = format!("bench:rl:{}:", std::process::id());
            let layer = palisade_layer()
                .rate(Rate::per_second(1_000_000))
                .key_prefix(prefix.clone())
                .key_by(key_of)
                .redis(backend)
                .build()
                .unwrap();
            let svc = layer.layer(Identity);
            let limiter = {
                let svc = svc.clone();
                move || {
                    let svc = svc.clone();
                    async move { svc.oneshot("k").await.is_ok() }
                }
            };
            // The same script, the same arguments (1 µs emission interval,
            // the tolerance of a burst of 10^9, no delay), the same client.
            let script = Arc::new(redis::Script::new(GCRA_SCRIPT));
            let raw_key = format!("{prefix}raw");
            let raw = {
                let conn = conn.clone();
                move || {
                    let (mut conn, script, key) = (conn.clone(), Arc::clone(&script), raw_key.clone());
                    async move {
                        let (admitted, _, _): (i64, i64, i64) = script
                            .key(key)
                            .arg(1u64)
                            .arg(999_999_999u64)
                            .arg(0u64)
                            .invoke_async(&mut conn)
                            .await
                            .unwrap();
                        admitted == 1
                    }
                }
            };
            // Warm up both (script loaded, connection busy).
            round(limiter.clone()).await;
            round(raw.clone()).await;
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            for _ in 0..ROUNDS {
                ours.push(round(limiter.clone()).await);
                theirs.push(round(raw.clone()).await);
            }
            let median = |v: &[f64]| palisade_benches::contended::median(v);
            let ratios: Vec<f64> = theirs.iter().zip(&ours).map(|(r, o)| r / o).collect();
            println!();
            println!(
                "redis: {CALLERS} concurrent callers, {CALLS_EACH} calls each, {ROUNDS} interleaved rounds"
            );
            println!("{:<36} {:>18}", "", "admitted calls/s (median)");
            println!("{:<36} {:>18.0}", "raw script loop (same client)", median(&theirs));
            println!("{:<36} {:>18.0}", "palisade rate limiter (redis)", median(&ours));
            println!(
                "limiter time / raw time (median of the rounds' ratios): {:.3}",
                median(&ratios)
            );
            let snapshot = layer.handle().snapshot();
            let remote = snapshot.remote.unwrap();
            assert_eq!(remote.errors + remote.fallbacks, 0, "every decision by Redis");
            let mut conn = conn;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
            }
        });
    }
}
