//! Benchmarks for the shard router: the cost of routing one request, side by
//! side with crates that do the lookup alone, and tower's `Steer`, in one
//! run, for 3, 16 and 256 shards, on 1 and 2 threads.
//!
//! Keys are user ids as text (`"user-123456"`), 1024 of them taken in turn
//! so that no branch predictor learns one key. Every shard is an
//! always-ready `Identity`, so a routed call is `poll_ready`, `call` and one
//! poll of the response future: what remains is the routing. Every row goes
//! through the same harness (each thread calls its own copy, made on its
//! first call, with the next key; `steer::identity` is the harness alone).
//! No metrics recorder is installed, except in the `prometheus` rows.
//!
//! - `rendezvous`, `ring`, `jump`: per scheme,
//!   - the lookup crate: `hrw-hash` (rendezvous; sorts every node for each
//!     key), `hashring` (a ring of 1000 virtual nodes per shard, SipHash),
//!     `jumpch` (jump hash over std's `DefaultHasher`): key to shard index,
//!     hashing included;
//!   - `palisade_lookup`: `ShardMap::owner(ShardKey::from(key))`, the same;
//!   - `palisade_router`: a whole call through `ShardRouter` (key extractor,
//!     map check, lookup, replica, service clone, counters, the response
//!     future), with the default settings (per-shard latency: two clock
//!     reads) and with `record_latency(false)`; for jump also with a fresh
//!     clone of the router per call, as axum calls a route.
//! - `prometheus`: the jump router with its metric handles from a Prometheus
//!   recorder, so that its counters count and its histogram records.
//! - `steer`: tower's `Steer` with a jump-hash picker (hashing the key with
//!   XXH3, as the router does): what a hand-written key router on tower
//!   costs. `Steer` polls every shard ready on each call.
//! - `key`: hashing a key, as text and as an integer (its decimal text).
//! - `clock`: one read of tokio's clock and of std's.
//!
//! Run: `cargo bench -p palisade-benches --bench shard`; instructions per
//! call: `scripts/shard-instructions.sh`. Figures: `docs/benchmarks.md`.

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::LocalKey;

use divan::{AllocProfiler, Bencher};
use palisade_benches::{Identity, call_now};
use palisade_shard::{ExtractKey, KeyError, Scheme, Shard, ShardKey, ShardMap, ShardRouter};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const VNODES: u32 = 1000;

fn main() {
    divan::main();
}

fn keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..1024u64)
            .map(|i| &*Box::leak(format!("user-{}", 100_000 + i * 7919).into_boxed_str()))
            .collect()
    })
}

thread_local! {
    /// This thread's position in the keys.
    static NEXT_KEY: Cell<usize> = const { Cell::new(0) };
}

/// A thread's own copy of a benchmarked service, tagged with the benchmark
/// it belongs to.
type Own<T> = RefCell<Option<(u64, T)>>;

/// A service type that has a slot per thread for its copy.
trait PerThread: Sized + 'static {
    fn slot() -> &'static LocalKey<Own<Self>>;
}

macro_rules! per_thread {
    ($($name:ident: $t:ty),*) => {$(
        thread_local! {
            static $name: Own<$t> = const { RefCell::new(None) };
        }
        impl PerThread for $t {
            fn slot() -> &'static LocalKey<Own<Self>> {
                &$name
            }
        }
    )*};
}

type Steer = tower::steer::Steer<Identity, fn(&&'static str, &[Identity]) -> usize, &'static str>;

type HashRing = hashring::HashRing<(u32, u32)>;

per_thread!(
    OWN_ROUTER: Router,
    OWN_STEER: Steer,
    OWN_IDENTITY: Identity,
    OWN_MAP: ShardMap,
    OWN_HRW: hrw_hash::HrwNodes<u64>,
    OWN_RING: HashRing,
    OWN_NOTHING: ()
);

/// Tags each benchmark's per-thread copies.
static BENCH: AtomicU64 = AtomicU64::new(0);

/// The next key for this thread (each thread goes through the keys in turn).
#[inline]
fn next_key() -> &'static str {
    let i = NEXT_KEY.get().wrapping_add(1) & 1023;
    NEXT_KEY.set(i);
    keys()[i]
}

/// Calls `f` on this thread's own copy of a service (made by `make` on the
/// thread's first call and kept for the whole benchmark) with each key in
/// turn: as a worker that owns its clone of a router calls it. Every row but the cloned
/// routers' goes through this, lookups included, so they share one harness
/// (`steer::identity` measures it).
fn bench_per_thread<T: PerThread, R>(
    bencher: Bencher<'_, '_>,
    make: impl Fn() -> T + Sync,
    f: impl Fn(&mut T, &'static str) -> R + Sync,
) {
    keys();
    let bench = BENCH.fetch_add(1, Ordering::Relaxed) + 1;
    bencher.bench(|| {
        T::slot().with_borrow_mut(|own| {
            let own = match own {
                Some((tag, own)) if *tag == bench => own,
                _ => &mut own.insert((bench, make())).1,
            };
            f(own, black_box(next_key()))
        })
    });
}

fn names(n: usize) -> Vec<(String, f64)> {
    (0..n).map(|i| (format!("shard-{i}"), 1.0)).collect()
}

fn palisade_map(scheme: Scheme, n: usize) -> ShardMap {
    ShardMap::new(
        scheme,
        VNODES,
        names(n).iter().map(|(s, w)| (s.as_str(), *w)),
    )
    .unwrap()
}

/// The key extractor: the request is its key. A named type so that the
/// router's type can be named here; it compiles as a closure given to
/// `key_fn` does (inlined, where a `fn` pointer would add a call through it).
#[derive(Clone, Copy, Debug)]
struct WholeRequest;

impl ExtractKey<&'static str> for WholeRequest {
    #[inline]
    fn extract(&self, request: &&'static str) -> Result<ShardKey, KeyError> {
        Ok(ShardKey::from(*request))
    }
}

type Router = ShardRouter<Identity, WholeRequest>;

fn router(scheme: Scheme, n: usize, record_latency: bool) -> Router {
    ShardRouter::builder("bench")
        .scheme(scheme)
        .virtual_nodes(VNODES)
        .record_latency(record_latency)
        .shards((0..n).map(|i| Shard::new(format!("shard-{i}"), Identity)))
        .key(WholeRequest)
        .build()
        .unwrap()
}

/// Each thread calls its own clone of `router`, kept for the benchmark.
fn bench_router(bencher: Bencher<'_, '_>, router: &Router) {
    bench_per_thread(
        bencher,
        || router.clone(),
        |router, key| call_now(router, key).unwrap(),
    );
}

/// As axum calls a route: a fresh clone of the router per request (the
/// clone and its drop are in the measurement).
fn bench_router_cloned(bencher: Bencher<'_, '_>, router: Router) {
    bench_per_thread(
        bencher,
        || (),
        move |(), key| call_now(&mut router.clone(), key).unwrap(),
    );
}

// Every benchmark uses a fixed `sample_size = 1000`, as the other benches
// do: left to itself, divan sometimes settles on one call per sample after a
// slow first measurement (a preemption on a busy machine), and then reports
// the clock's own overhead.

mod rendezvous {
    use super::*;

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn hrw_hash<const N: usize>(bencher: Bencher<'_, '_>) {
        let nodes = || hrw_hash::HrwNodes::new((0..N as u64).collect::<Vec<_>>());
        bench_per_thread(bencher, nodes, |nodes, key| {
            *nodes.sorted(&key).next().unwrap()
        });
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_lookup<const N: usize>(bencher: Bencher<'_, '_>) {
        let map = palisade_map(Scheme::Rendezvous, N);
        bench_per_thread(
            bencher,
            || map.clone(),
            |map, key| map.owner(ShardKey::from(key)),
        );
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &router(Scheme::Rendezvous, N, true));
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &router(Scheme::Rendezvous, N, false));
    }
}

mod ring {
    use super::*;

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn hashring<const N: usize>(bencher: Bencher<'_, '_>) {
        let mut ring = HashRing::new();
        ring.batch_add(
            (0..N as u32)
                .flat_map(|shard| (0..VNODES).map(move |v| (shard, v)))
                .collect(),
        );
        bench_per_thread(
            bencher,
            || ring.clone(),
            |ring, key| ring.get(&key).unwrap().0,
        );
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_lookup<const N: usize>(bencher: Bencher<'_, '_>) {
        let map = palisade_map(Scheme::Ring, N);
        bench_per_thread(
            bencher,
            || map.clone(),
            |map, key| map.owner(ShardKey::from(key)),
        );
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &router(Scheme::Ring, N, true));
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &router(Scheme::Ring, N, false));
    }
}

mod jump {
    use super::*;

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn jumpch<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_per_thread(
            bencher,
            || (),
            |(), key| {
                let mut hasher: jumpch::JumpHasher = jumpch::JumpHasher::new(N as u32);
                key.hash(&mut hasher);
                hasher.finish()
            },
        );
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_lookup<const N: usize>(bencher: Bencher<'_, '_>) {
        let map = palisade_map(Scheme::Jump, N);
        bench_per_thread(
            bencher,
            || map.clone(),
            |map, key| map.owner(ShardKey::from(key)),
        );
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &router(Scheme::Jump, N, true));
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &router(Scheme::Jump, N, false));
    }

    /// A clone of the router per call (axum's way), with the default
    /// latency histogram.
    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router_cloned<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router_cloned(bencher, router(Scheme::Jump, N, true));
    }

    /// A clone of the router per call (axum's way), no latency histogram.
    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn palisade_router_cloned_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router_cloned(bencher, router(Scheme::Jump, N, false));
    }
}

/// The jump router with its metrics recorded by a real recorder
/// (metrics-exporter-prometheus, as the gateway installs it): its handles
/// are resolved when the router is built, so building it under the recorder
/// is enough. Every other row runs with no recorder, where a metric handle
/// does nothing.
mod prometheus {
    use super::*;

    fn recorded_router(scheme: Scheme, n: usize, record_latency: bool) -> Router {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || router(scheme, n, record_latency))
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn jump_router<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &recorded_router(Scheme::Jump, N, true));
    }

    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn jump_router_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, &recorded_router(Scheme::Jump, N, false));
    }
}

mod steer {
    use super::*;

    /// tower's `Steer` over `Identity` shards, picking with XXH3 + jump;
    /// each thread calls its own clone.
    #[divan::bench(consts = [3, 16, 256], threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tower_steer<const N: usize>(bencher: Bencher<'_, '_>) {
        fn picker(key: &&'static str, services: &[Identity]) -> usize {
            palisade_shard::jump(ShardKey::from(*key).hash(), services.len())
        }
        let steer: Steer = tower::steer::Steer::new(vec![Identity; N], picker as _);
        bench_per_thread(
            bencher,
            || steer.clone(),
            |steer, key| call_now(steer, key).unwrap(),
        );
    }

    /// The harness alone: `Identity` called as the routers and `Steer` are
    /// (a clone per thread, the next key).
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn identity(bencher: Bencher<'_, '_>) {
        bench_per_thread(
            bencher,
            || Identity,
            |identity, key| call_now(identity, key).unwrap(),
        );
    }
}

/// Hashing a key: text as it comes (a header, a path segment), and an
/// integer id, which is keyed by its decimal text.
mod key {
    use super::*;

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn text(bencher: Bencher<'_, '_>) {
        bench_per_thread(bencher, || (), |(), key| ShardKey::from(key));
    }

    /// Ids of 6 and 7 digits, as the text keys.
    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn integer(bencher: Bencher<'_, '_>) {
        let ids: Vec<u64> = (0..1024u64).map(|i| 100_000 + i * 7919).collect();
        bench_per_thread(
            bencher,
            || (),
            |(), _| {
                let i = NEXT_KEY.get();
                ShardKey::from(black_box(ids[i]))
            },
        );
    }
}

/// One clock read, as the latency histogram takes two per call. This
/// binary is built with tokio's `test-util` (the benches crate's retry and
/// bulkhead benches run on a paused clock), under which
/// `tokio::time::Instant::now()` first checks whether any runtime of the
/// process ever paused its clock (none in this bench has): compare with
/// std's clock, what `tokio::time::Instant::now()` is without `test-util`.
mod clock {
    use super::*;

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    fn tokio_instant_now(bencher: Bencher<'_, '_>) {
        bencher.bench(tokio::time::Instant::now);
    }

    #[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 1000)]
    #[allow(clippy::disallowed_types)] // std's clock is the comparison here
    fn std_instant_now(bencher: Bencher<'_, '_>) {
        bencher.bench(std::time::Instant::now);
    }
}
