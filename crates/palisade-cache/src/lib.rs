//! Cache-aside as a tower layer: stale-while-revalidate, stale-if-error and
//! request coalescing, in process and in Redis.
//!
//! The layer answers a request from its entry while the entry is fresh, and
//! otherwise asks the service below and keeps the answer. Around that
//! simple loop it does what the best proxies do (nginx's
//! `proxy_cache_use_stale` and `proxy_cache_lock`, Varnish's grace):
//!
//! - **Stale-while-revalidate**: a stale entry is served at once while
//!   exactly one background refresh runs.
//! - **Stale-if-error**: a stale entry answers when the backend fails, times
//!   out or is refused by an open breaker, within a configured grace.
//! - **Request coalescing**: N concurrent misses on one key make one backend
//!   call, and every one of them gets its result. If the request making the
//!   call goes away, a waiting one takes over; nobody waits forever.
//! - **Bounded by bytes**, in a [quick_cache](https://docs.rs/quick_cache)
//!   store; an optional **Redis tier** shared by a fleet, behind a circuit
//!   breaker.
//!
//! Entries live through *fresh*, *stale* (revalidating) and *expired*; the
//! diagram and the decision tables are in `docs/patterns/cache.md`.
//!
//! # Example
//!
//! Any request type, with a key function and a TTL:
//!
//! ```
//! use palisade_cache::CacheLayer;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let cache = CacheLayer::builder("prices")
//!     .key(|sku: &u32| Some(*sku))
//!     .ttl(Duration::from_secs(30))
//!     .stale_while_revalidate(Duration::ZERO) // off, for this example
//!     .stale_if_error(Duration::from_secs(300))
//!     .build()?;
//! let handle = cache.handle();
//!
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counted = Arc::clone(&calls);
//! let svc = ServiceBuilder::new().layer(cache).service(service_fn(move |sku: u32| {
//!     let n = counted.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         if n == 0 { Ok(sku * 100) } else { Err(palisade_core::BoxError::from("pricing is down")) }
//!     }
//! }));
//!
//! assert_eq!(svc.clone().oneshot(7).await?, 700); // a miss: the backend answers
//! assert_eq!(svc.clone().oneshot(7).await?, 700); // a hit
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//!
//! // Stale, and the backend fails: the stale entry answers.
//! tokio::time::advance(Duration::from_secs(31)).await;
//! assert_eq!(svc.clone().oneshot(7).await?, 700);
//! assert_eq!(handle.snapshot().stale_served.error, 1);
//! # Ok(())
//! # }
//! ```
//!
//! HTTP (feature `http`): keys from method, URI and `Vary`, freshness from
//! `Cache-Control`, revalidation with `ETag`, bodies buffered into entries
//! (see the [`http`] module for what is stored):
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use palisade_cache::CacheLayer;
//! use std::time::Duration;
//!
//! let cache = CacheLayer::http_builder("products")
//!     .ttl(Duration::from_secs(30))              // when the response says nothing
//!     .stale_while_revalidate(Duration::from_secs(10))
//!     .stale_if_error(Duration::from_secs(600))
//!     .negative_ttl(Duration::from_secs(5))      // 404s, briefly
//!     .max_bytes(256 << 20)
//!     .build()
//!     .unwrap();
//! # let _ = cache;
//! # }
//! ```
//!
//! # Ordering
//!
//! Put the cache **outermost**, above retry, the circuit breaker and the
//! timeouts:
//!
//! ```text
//! cache → timeout(overall) → retry → circuit breaker → timeout(attempt) → bulkhead → client
//! ```
//!
//! - **Above everything that protects the backend**: a hit costs nothing
//!   below, and a miss goes through the whole stack like any request, so
//!   the breaker, the budget and the bulkhead still see every backend call
//!   (background refreshes included).
//! - **Above retry**: stale-if-error answers with the stale entry only once
//!   the retries are spent, and never pre-empts them. Below retry, every
//!   attempt would consult the cache and the first failure would answer
//!   stale.
//! - **Above the breaker**: an open breaker refuses at once
//!   ([`palisade_core::CircuitOpen`]) and the cache answers stale (reason
//!   `rejected`): during an outage the cached keys keep being served
//!   without a single call reaching the backend.
//! - **Above a timeout**: a hung backend becomes an error the cache can
//!   answer stale (reason `timeout`), and coalesced waiters are released
//!   with it. The cache's own `coalesce_timeout` and `refresh_timeout`
//!   bound its waiters and background work even without one.
//!
//! In `ServiceBuilder` the first layer added is the outermost.
//!
//! # Clone
//!
//! The cache (its entries, flights of coalesced misses, figures, shared
//! tier) is created once by the builder and shared through an `Arc` by
//! every service the layer builds: cloning the layer or the service does
//! not create new state, and calling `layer()` many times (axum does it
//! once per route) gives services over the same cache. Build one layer per
//! cached resource, or get it from a `Registry<CacheHandle>` by name
//! ([`CacheBuilder::registry`]).
//!
//! The service reserves nothing, so a clone has no readiness to share.
//!
//! # Backpressure
//!
//! [`Cache::poll_ready`](tower_service::Service::poll_ready) is always
//! `Ready`: the cache reserves nothing and applies no backpressure of its
//! own. A hit is answered without touching the inner service, so a
//! saturated backend (a full bulkhead, a `Buffer` at capacity) never holds
//! hits back, and no capacity below is reserved for a call a hit makes
//! unnecessary (tower's trap of reserving in `poll_ready`). A miss clones
//! the inner service and drives the clone in its response future:
//! `poll_ready` (backpressure from below is felt there, by the miss alone),
//! then `call`. A coalesced request keeps its own clone and request, so it
//! can take over the call if the request making it is dropped. A background
//! refresh runs in a task of its own, on a clone, bounded by
//! `refresh_timeout`.
//!
//! # Errors
//!
//! The service's error is `BoxError`: the inner service's errors, unchanged,
//! for the request that made the backend call. The requests coalesced with
//! it get [`error::Coalesced`], which shares the same error through
//! `source()`, so [`palisade_core::is_caused_by`] and
//! [`palisade_core::is_rejection`] see through it (when other requests
//! waited, the one that made the call gets it too; alone, it gets its own
//! error). The cache adds no failure of its own: Redis failures are never
//! the caller's problem. Errors, and responses the policy says are not
//! storable, are never stored.
//!
//! With `http`, errors keep their HTTP meaning: put
//! `palisade::http::problem_responses()` (or
//! [`palisade_core::http::ProblemResponseLayer`]) above the cache and an
//! axum app stays `Infallible`; [`http::CacheBody`] converts from the
//! problem's text.
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, every series
//! labelled `name`. Handles are resolved when the cache is built, so
//! install the recorder first. Keys never appear in labels.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_cache_hits_total` | counter | | requests answered from a fresh entry |
//! | `palisade_cache_misses_total` | counter | | requests with no usable entry (they went to the shared tier or the backend, or waited for a call that did) |
//! | `palisade_cache_stale_served_total` | counter | `reason` = `revalidating`, `error`, `timeout`, `rejected` | stale entries served |
//! | `palisade_cache_coalesced_total` | counter | | requests that waited for another request's backend call |
//! | `palisade_cache_bypassed_total` | counter | | requests the cache does not apply to |
//! | `palisade_cache_stored_total` | counter | | entries stored |
//! | `palisade_cache_not_stored_total` | counter | `reason` (see [`NotStored`]) | responses not stored |
//! | `palisade_cache_refreshes_total` | counter | `outcome` = `success`, `failure` | background refreshes |
//! | `palisade_cache_shared_tier_total` | counter | `result` = `hit`, `miss`, `error`, `skipped`, `write` | Redis operations (`skipped`: refused by its breaker) |
//! | `palisade_cache_invalidated_total` | counter | | entries removed through the handle |
//! | `palisade_cache_bytes` | gauge | | bytes held by the process tier |
//! | `palisade_cache_entries` | gauge | | entries held by the process tier |
//!
//! The breaker in front of Redis publishes its own
//! `palisade_circuit_breaker_*` series, named `<name>-redis` by default.
//!
//! # Events
//!
//! - Tracing (target `palisade_cache`, field `name`): invalidations at
//!   `info`; a failing Redis tier at `warn`; stale serves, refreshes and
//!   skipped Redis operations at `debug`.
//! - Listeners added with [`CacheBuilder::on_event`] get every
//!   [`CacheEvent`] (hits, misses, stale serves, coalescing, stores,
//!   refreshes, invalidations, Redis unavailable). An event is only built
//!   when someone listens.
//! - The [`CacheHandle`] invalidates by key or prefix (both tiers), and reads
//!   a [`CacheSnapshot`] (`Serialize` with the `serde` feature): hit ratio,
//!   stale serves by reason, coalesced requests, bytes held, the Redis
//!   tier's state.
//!
//! # Why a cache-aside layer
//!
//! A cache in front of a slow or fragile service does more than save
//! latency: it is what keeps answering while that service is down or
//! overloaded. That takes the three behaviours above. Without coalescing, a
//! popular key that expires sends every concurrent request to the backend
//! at once (a cache stampede), exactly when it is busiest. Without
//! stale-while-revalidate, every expiry makes somebody wait for the
//! backend. Without stale-if-error, an outage empties the cache key by key
//! just when it is needed.
//!
//! ## How this one differs from its peers
//!
//! tower has no cache. tower-resilience 0.13 has a cache layer (one
//! `std::sync::Mutex` around an LRU/LFU store counted in entries, a TTL, no
//! stale serving) and a separate `Coalesce` layer whose leader runs on a
//! spawned task. Resilience4j decorates a JCache; Polly v8 dropped its
//! cache. None of them combines these:
//!
//! - **Stale-while-revalidate and stale-if-error** with one background
//!   refresh per key, and stale answers to timeouts and rejections by name.
//! - **Coalescing built in**, without a task per miss: the request that
//!   misses makes the call in its own future; the others wait on a
//!   notification and take over if it is dropped (a timeout bounds the
//!   wait). Errors need not be `Clone`: they are shared.
//! - **A memory bound in bytes**, not entries, that holds at every moment,
//!   over quick_cache's sharded, S3-FIFO store. quick_cache rather than
//!   moka (this crate's store before) or a hand-written map: a hit is
//!   mostly the store's lookup, and quick_cache's is a hash, one shard's
//!   read lock and a probe, where moka's also records the read for its
//!   TinyLFU policy and reads its own clock for an expiry the cache does
//!   not need (freshness is judged from the entry, on the cache's clock).
//!   moka's `get` alone cost more than tower-resilience's whole hit.
//!   quick_cache evicts within the insert that needs the room, so the
//!   bytes gauge is its exact weight. `docs/benchmarks.md` measures both.
//! - **One clock read per hit**, and a choice of clock
//!   ([`ClockSource`]): tokio's (the default, follows the paused clock of
//!   tests) or the kernel's coarse monotonic clock, a few nanoseconds
//!   instead of a `clock_gettime`, a kernel tick coarse. A hit allocates
//!   nothing and counts itself on per-thread stripes.
//! - **HTTP semantics** (`Cache-Control`, `Vary`, `ETag`, `Expires`, `Age`)
//!   parsed by hyperium's `headers` crate, not by hand.
//! - **A shared tier** in Redis with each entry's expiry, behind Palisade's
//!   circuit breaker, so a Redis outage costs nothing but the shared hits.
//! - **Observable**: hit ratio, stale serves by reason, coalesced waiters,
//!   bytes held, per name; invalidation by key and prefix at runtime.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod backend;
mod builder;
pub mod error;
mod event;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod layer;
mod metrics;
mod policy;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::{CacheBuilder, Unkeyed};
pub use event::{CacheEvent, Served, StaleReason};
pub use handle::{CacheHandle, CacheSnapshot, Purged, StaleServed};
pub use layer::CacheLayer;
pub use policy::{
    AdmitContext, Admitted, CacheKey, Codec, ENTRY_OVERHEAD, FnCodec, KeyFn, Lookup, NoCodec,
    Policy, SizeOf, Storage, Variant, Weigher,
};
pub use service::Cache;
#[cfg(feature = "redis")]
pub use settings::RedisSettings;
pub use settings::{CacheSettings, ClockSource, MAX_BYTES, MAX_DURATION, MAX_ENTRY_BYTES};
pub use shared::SharedTierSnapshot;
pub use state::{Decision, Directives, Freshness, Lifetime, NotStored, decide, is_failure_status};

pub use palisade_core::BoxError;
