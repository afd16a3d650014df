//! Benchmarks for the shard router: the cost of routing one request, side by
//! side with crates that do the lookup alone, and tower's `Steer`, in one
//! run, for 3, 16 and 256 shards.
//!
//! Keys are user ids as text (`"user-123456"`), 1024 of them taken in turn
//! so that no branch predictor learns one key. Every shard is an
//! always-ready `Identity`, so a routed call is `poll_ready`, `call` and one
//! poll of the response future: what remains is the routing.
//!
//! - `rendezvous`, `ring`, `jump`: per scheme,
//!   - the lookup crate: `hrw-hash` (rendezvous; sorts every node for each
//!     key), `hashring` (a ring of 1000 virtual nodes per shard, SipHash),
//!     `jumpch` (jump hash over std's `DefaultHasher`): key to shard index,
//!     hashing included;
//!   - `palisade_lookup`: `ShardMap::owner(ShardKey::from(key))`, the same;
//!   - `palisade_router`: a whole call through `ShardRouter` (key closure,
//!     map check, lookup, replica, service clone, counters, the response
//!     future), with the default settings (per-shard latency: two clock
//!     reads) and with `record_latency(false)`; for jump also with a fresh
//!     clone of the router per call, as axum calls a route.
//! - `steer`: tower's `Steer` with a jump-hash picker (hashing the key with
//!   XXH3, as the router does): what a hand-written key router on tower
//!   costs. `Steer` polls every shard ready on each call.
//!
//! Run: `cargo bench -p palisade-benches --bench shard`.

use std::hash::{Hash, Hasher};
use std::hint::black_box;
use std::sync::OnceLock;

use divan::{AllocProfiler, Bencher};
use palisade_benches::{Identity, call_now};
use palisade_shard::{KeyFn, Scheme, Shard, ShardKey, ShardMap, ShardRouter};

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

/// Iterates `f` over the keys in turn.
fn bench_keys<T>(bencher: Bencher<'_, '_>, mut f: impl FnMut(&'static str) -> T) {
    let keys = keys();
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = (i + 1) & 1023;
        f(black_box(keys[i]))
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

type Router = ShardRouter<Identity, KeyFn<fn(&&'static str) -> Option<&'static str>>>;

fn router(scheme: Scheme, n: usize, record_latency: bool) -> Router {
    let key: fn(&&'static str) -> Option<&'static str> = |k| Some(*k);
    ShardRouter::builder("bench")
        .scheme(scheme)
        .virtual_nodes(VNODES)
        .record_latency(record_latency)
        .shards((0..n).map(|i| Shard::new(format!("shard-{i}"), Identity)))
        .key_fn(key)
        .build()
        .unwrap()
}

fn bench_router(bencher: Bencher<'_, '_>, mut router: Router) {
    bench_keys(bencher, move |key| call_now(&mut router, key).unwrap());
}

/// As axum calls a route: a fresh clone of the router per request.
fn bench_router_cloned(bencher: Bencher<'_, '_>, router: Router) {
    bench_keys(bencher, move |key| {
        call_now(&mut router.clone(), key).unwrap()
    });
}

mod rendezvous {
    use super::*;

    #[divan::bench(consts = [3, 16, 256])]
    fn hrw_hash<const N: usize>(bencher: Bencher<'_, '_>) {
        let nodes = hrw_hash::HrwNodes::new((0..N as u64).collect::<Vec<_>>());
        bench_keys(bencher, |key| *nodes.sorted(&key).next().unwrap());
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_lookup<const N: usize>(bencher: Bencher<'_, '_>) {
        let map = palisade_map(Scheme::Rendezvous, N);
        bench_keys(bencher, |key| map.owner(ShardKey::from(key)));
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_router<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, router(Scheme::Rendezvous, N, true));
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_router_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, router(Scheme::Rendezvous, N, false));
    }
}

mod ring {
    use super::*;

    #[divan::bench(consts = [3, 16, 256])]
    fn hashring<const N: usize>(bencher: Bencher<'_, '_>) {
        let mut ring = hashring::HashRing::new();
        ring.batch_add(
            (0..N as u32)
                .flat_map(|shard| (0..VNODES).map(move |v| (shard, v)))
                .collect(),
        );
        bench_keys(bencher, |key| ring.get(&key).unwrap().0);
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_lookup<const N: usize>(bencher: Bencher<'_, '_>) {
        let map = palisade_map(Scheme::Ring, N);
        bench_keys(bencher, |key| map.owner(ShardKey::from(key)));
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_router<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, router(Scheme::Ring, N, true));
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_router_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, router(Scheme::Ring, N, false));
    }
}

mod jump {
    use super::*;

    #[divan::bench(consts = [3, 16, 256])]
    fn jumpch<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_keys(bencher, |key| {
            let mut hasher: jumpch::JumpHasher = jumpch::JumpHasher::new(N as u32);
            key.hash(&mut hasher);
            hasher.finish()
        });
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_lookup<const N: usize>(bencher: Bencher<'_, '_>) {
        let map = palisade_map(Scheme::Jump, N);
        bench_keys(bencher, |key| map.owner(ShardKey::from(key)));
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_router<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, router(Scheme::Jump, N, true));
    }

    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_router_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router(bencher, router(Scheme::Jump, N, false));
    }

    /// A clone of the router per call (axum's way), no latency histogram.
    #[divan::bench(consts = [3, 16, 256])]
    fn palisade_router_cloned_no_latency<const N: usize>(bencher: Bencher<'_, '_>) {
        bench_router_cloned(bencher, router(Scheme::Jump, N, false));
    }
}

mod steer {
    use super::*;

    /// tower's `Steer` over `Identity` shards, picking with XXH3 + jump.
    #[divan::bench(consts = [3, 16, 256])]
    fn tower_steer<const N: usize>(bencher: Bencher<'_, '_>) {
        let picker = |key: &&'static str, services: &[Identity]| {
            palisade_shard::jump(ShardKey::from(*key).hash(), services.len())
        };
        let mut steer = tower::steer::Steer::new(vec![Identity; N], picker);
        bench_keys(bencher, move |key| call_now(&mut steer, key).unwrap());
    }
}
