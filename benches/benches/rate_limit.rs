//! Benchmarks for the rate limiter, side by side with governor (direct and
//! keyed) and tower's `RateLimit`, in one run.
//!
//! - `per_call`: one admitted call through each limiter, with a limit high
//!   enough never to refuse: Palisade's layer and tower's `RateLimit` through
//!   `poll_ready`, `call` and one poll around an always-ready `Identity`;
//!   governor's `check` / `check_key` called directly (it is not a tower
//!   layer, so its figure has no service around it). Keyed: 1 key and
//!   10 000 keys, each call the next key in turn (each thread from its own
//!   offset), every key already held. On 1 thread and on 2 threads (clones
//!   of one service, one shared governor limiter; tower's `RateLimit` is not
//!   `Clone`, so each of its threads has its own, uncontended). Allocations
//!   per call from divan's `AllocProfiler`.
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
    redis_throughput::report();
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

mod per_call {
    use super::*;

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn identity(bencher: Bencher<'_, '_>) {
        let proto = Mutex::new(Identity);
        bencher
            .with_inputs(|| *proto.lock().unwrap())
            .bench_refs(|svc| call_now(svc, black_box("k")).unwrap());
    }

    /// tower's `RateLimit` (fixed window): not `Clone`, so every thread (and
    /// every sample) builds its own.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_rate_limit(bencher: Bencher<'_, '_>) {
        let layer = tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1));
        bencher
            .with_inputs(|| enter_runtime(|| layer.layer(Identity)))
            .bench_refs(|svc| enter_runtime(|| call_now(svc, black_box("k")).unwrap()));
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn governor_direct(bencher: Bencher<'_, '_>) {
        let limiter = RateLimiter::direct(governor_quota());
        bencher.bench(|| limiter.check().unwrap());
    }

    /// governor on the OS clock (`MonotonicClock`, as Palisade's default).
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn governor_direct_os_clock(bencher: Bencher<'_, '_>) {
        let limiter = RateLimiter::direct_with_clock(governor_quota(), MonotonicClock);
        bencher.bench(|| limiter.check().unwrap());
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
        bencher
            .with_inputs(|| proto.lock().unwrap().clone())
            .bench_refs(|svc| call_now(svc, black_box("k")).unwrap());
    }

    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn governor_keyed(bencher: Bencher<'_, '_>, n: usize) {
        let limiter = RateLimiter::keyed(governor_quota());
        let keys = keys(n);
        for k in keys {
            limiter.check_key(k).unwrap();
        }
        bencher.bench(|| limiter.check_key(&next_key(keys)).unwrap());
    }

    /// governor keyed on the OS clock (`MonotonicClock`, as Palisade's
    /// default).
    #[divan::bench(threads = [1, 2], args = [1, 10_000], sample_count = 200, sample_size = 1000)]
    fn governor_keyed_os_clock(bencher: Bencher<'_, '_>, n: usize) {
        let limiter = RateLimiter::dashmap_with_clock(governor_quota(), MonotonicClock);
        let keys = keys(n);
        for k in keys {
            limiter.check_key(k).unwrap();
        }
        bencher.bench(|| limiter.check_key(&next_key(keys)).unwrap());
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

    fn bench_keyed(bencher: Bencher<'_, '_>, n: usize, clock: ClockSource) {
        let mut svc = palisade_layer()
            .clock(clock)
            .key_by(key_of)
            .build()
            .unwrap()
            .layer(Identity);
        for k in keys(n) {
            call_now(&mut svc, *k).unwrap();
        }
        let proto = Mutex::new(svc);
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
