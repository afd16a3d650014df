//! A rate limiter for tower services: keyed GCRA on one atomic word per key,
//! tiers, throttling, the IETF `RateLimit` fields, and a Redis backend for a
//! fleet.
//!
//! Each key (a client's IP address, an API key, a route, anything a closure
//! reads from the request) has an allowance: a sustained [`Rate`] and a
//! burst. A call over it is refused at once with [`RateLimited`] (HTTP 429,
//! `Retry-After`), or, with a [`max_delay`](RateLimitBuilder::max_delay),
//! waits for its slot (throttling). Tiers give classes of keys their own
//! limits (`free`, `paid`); limits change at runtime through a
//! [`RateLimitHandle`]. The algorithm, its diagram and the distributed mode
//! are in `docs/patterns/rate-limit.md`.
//!
//! # Example
//!
//! ```
//! use palisade_rate_limit::{Key, RateLimited, Rate, RateLimitLayer};
//! use palisade_core::is_caused_by;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! struct Req { tenant: &'static str }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let limit = RateLimitLayer::builder("orders")
//!     .rate(Rate::per_second(2))   // one call every 500 ms...
//!     .burst(3)                    // ...after up to 3 at once
//!     .key_by(|req: &Req| Some(Key::text(req.tenant)))
//!     .build()?;
//! let handle = limit.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(limit)
//!     .service(service_fn(|req: Req| async move { Ok::<_, std::convert::Infallible>(req.tenant) }));
//!
//! for _ in 0..3 {
//!     svc.clone().oneshot(Req { tenant: "acme" }).await?;
//! }
//! // Acme's burst is spent; another tenant is not affected.
//! let err = svc.clone().oneshot(Req { tenant: "acme" }).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().expect("a rate limit");
//! assert_eq!(limited.retry_after(), Some(Duration::from_millis(500)));
//! assert!(is_caused_by::<RateLimited>(&*err));
//! assert_eq!(svc.clone().oneshot(Req { tenant: "globex" }).await?, "globex");
//!
//! // Half a second later, Acme has one more call.
//! tokio::time::advance(Duration::from_millis(500)).await;
//! svc.clone().oneshot(Req { tenant: "acme" }).await?;
//! assert_eq!(handle.snapshot().tiers[0].limited, 1);
//! # Ok(())
//! # }
//! ```
//!
//! For HTTP (feature `http`), key by a header or the client's address and
//! use `RateLimitLayer::http_layer`: refusals become `429`
//! responses with `Retry-After` and the IETF `RateLimit-Policy` and
//! `RateLimit` fields, which admitted responses carry too (see
//! `palisade_rate_limit::http`). The gateway's per-client limit, "the API
//! key, else the client's IP", with tiers:
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use palisade_rate_limit::{KeyExtractorExt, Limit, Rate, RateLimitLayer};
//! use palisade_rate_limit::http::{client_ip, header};
//!
//! let per_client = RateLimitLayer::builder("api")
//!     .rate(Rate::per_second(5))                                    // the default tier
//!     .tier("anonymous", Limit::new(Rate::per_second(1), 10))
//!     .tier("paid", Limit::new(Rate::per_second(100), 200))
//!     .key_tier("key-7f3a", "paid")                                 // a paying API key
//!     .key(header("x-api-key").or(client_ip().class("anonymous")))
//!     .build()
//!     .unwrap()
//!     .http_layer();
//! # }
//! ```
//!
//! # Ordering
//!
//! Put the limiter **outermost** on the path it protects, before any work
//! is spent on the call:
//!
//! ```text
//! rate limit → timeout(overall) → retry → circuit breaker → timeout(attempt) → bulkhead → client
//! ```
//!
//! - **Outside retry**, a client's call counts once however many attempts
//!   follow. A limiter *inside* retry limits attempts instead (to protect a
//!   downstream with a quota): its [`RateLimited`] is a rejection
//!   ([`palisade_core::is_rejection`]), which Palisade's retry never retries.
//! - **Above a breaker**, refusals never reach it; below one, classify with
//!   `IgnoreRejections` so a limit is not taken for a failing downstream.
//! - On an axum app, `.layer()` the HTTP form on the router (or a route):
//!   axum calls `layer()` per route and clones per request, and the limit
//!   holds across all of them.
//!
//! # Clone
//!
//! The limiter's state (tiers, limits, key assignments, the key table or
//! the Redis connection, counters) is owned by the layer in an `Arc` and
//! shared by every service [`Layer::layer`] builds, every clone of the layer
//! or of those services, and every [`RateLimitHandle`]. Cloning the layer or
//! the service does not create new state: one limit holds however a
//! framework clones the stack (tower's `RateLimit` keeps its budget per
//! instance: "cap 5 req/s let 1500 concurrent requests all return 200",
//! axum#2634). A service holds no reservation between `poll_ready` and
//! `call`, so a clone has nothing to share or reset.
//!
//! [`Layer::layer`]: tower_layer::Layer::layer
//!
//! # Backpressure
//!
//! The limiter never makes `poll_ready` wait: `poll_ready` only polls the
//! inner service (the key is not known before `call`). `call` decides:
//!
//! - **Admitted**: the inner service is called at once.
//! - **Refused**: the returned future fails at once; the inner service is not
//!   called (and keeps its readiness for the next call).
//! - **Throttled** (`max_delay` > 0, the call's slot within it): the slot is
//!   reserved at once, and the ready inner service and the request move into
//!   the future (a clone takes the service's place, to be polled ready before
//!   the next call), which calls it when the slot comes. Its timer is the
//!   future's own, with no allocation. Dropped before its slot, the future
//!   gives the slot back if no later call reserved after it (the key is then
//!   exactly as if the call had never come); otherwise the slot stays spent:
//!   a dropped call never gives back more than it took. A call whose slot is
//!   beyond `max_delay` is refused at once rather than after waiting.
//! - **Remote backend**: as throttled, the service and request wait in the
//!   future for Redis's answer (bounded by `backend_timeout`).
//!
//! So the inner service must be `Clone` (as axum's routes and hyper-util's
//! client are). Waiting needs a tokio runtime with the time driver.
//!
//! # Errors
//!
//! The service's error is [`BoxError`](palisade_core::BoxError): the inner
//! service's errors, unchanged inside the box, and:
//!
//! | error | when | HTTP (`http_layer`, or `http::to_problem`) |
//! |---|---|---|
//! | [`RateLimited`] (palisade-core, re-exported) | over the limit; carries the name, the tier (`class`) and `retry_after` | 429, `Retry-After`, `RateLimit-Policy`, `RateLimit`, problem+json |
//! | [`error::InvalidKey`] | the key is empty, too long, malformed, or missing under `MissingKey::Reject` | 400 |
//! | [`error::Unavailable`] | Redis failed and the failure mode is `closed`; its source is a `RateLimited`, so it is a rejection too | 503, `Retry-After` when the backend's breaker knows |
//!
//! A rejection is found with [`palisade_core::rejection`] or
//! [`palisade_core::is_caused_by`] through any wrapping: retries never
//! retry it, and a breaker under `IgnoreRejections` does not count it. No
//! input panics: a malformed or huge key header, a missing client address,
//! anything a closure returns is a key, a defined shared key, or a 400.
//!
//! # Keys and memory
//!
//! Keys live in a bounded, sharded table: [`max_keys`](RateLimitBuilder::max_keys)
//! entries at most (default 100 000). A key whose allowance is whole again
//! carries no information and is evicted as new keys arrive (each shard
//! sweeps at most once a second) or on [`RateLimitHandle::evict_idle`].
//! When the table is full of active keys, new keys share one overflow
//! allowance until room is made: a flood of distinct keys is limited as one
//! client and cannot grow memory. An entry is 32 bytes in a table kept at
//! most 7/8 full; a key of up to 21 bytes (an IP address, a short id) lives
//! in the entry, a longer one in an allocation of its own (its length plus
//! one byte, rounded up by the allocator). `docs/benchmarks.md` has the
//! measured bytes per key. A key already in the table is found without
//! allocating.
//!
//! # Clock
//!
//! Each call reads the clock once. By default it is tokio's `Instant`, so
//! tests on tokio's paused clock drive the limiter deterministically. Where
//! reading the OS clock is slow (on some virtual machines it is most of a
//! call's cost), [`ClockSource::Tsc`] reads the CPU's time-stamp counter
//! instead, as governor does; `docs/benchmarks.md` compares both.
//!
//! # Distributed
//!
//! With the `redis` feature and `RateLimitBuilder::redis`, the
//! words live in Redis and every instance using the same name (or
//! `key_prefix`) shares one limit. Each decision is one script call (one
//! round trip, the server's clock); a key Redis refused is refused locally
//! until its time comes, with no round trip; failures go through a palisade
//! circuit breaker so that a dead Redis costs nothing per call, and the
//! [`FailureMode`] decides meanwhile: `open` (the default) decides with the
//! local limiter, `closed` refuses with 503. Client: redis-rs with its
//! `ConnectionManager` (one multiplexed connection that reconnects by
//! itself). A waiting call dropped before its slot keeps its slot in Redis
//! (a drop cannot make a round trip).
//!
//! # Metrics
//!
//! Every series has a `name` label; per-tier series add `class` (the tier's
//! name), never a key. Handles are resolved when the limiter or tier is
//! built.
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `palisade_rate_limit_calls_total` | counter | name, class, outcome | calls by outcome: `admitted`, `delayed` (throttled, admitted after a wait), `limited` |
//! | `palisade_rate_limit_delay_seconds` | histogram | name, class | how long throttled calls waited |
//! | `palisade_rate_limit_rate` | gauge | name, class | the tier's rate, calls per second |
//! | `palisade_rate_limit_burst` | gauge | name, class | the tier's burst |
//! | `palisade_rate_limit_keys` | gauge | name | keys held in process (updated as keys are added, on snapshots and evictions) |
//! | `palisade_rate_limit_overflow_total` | counter | name | calls of new keys decided on the overflow allowance |
//! | `palisade_rate_limit_invalid_keys_total` | counter | name, reason | requests refused for their key: `missing`, `empty`, `too_long`, `malformed` |
//! | `palisade_rate_limit_backend_calls_total` | counter | name, result | Redis decisions: `ok`, `error` (failed or timed out), `not_permitted` (breaker open) |
//! | `palisade_rate_limit_fallback_total` | counter | name, mode | calls decided by the failure mode |
//! | `palisade_rate_limit_cache_hits_total` | counter | name | calls refused from the local over-the-limit cache |
//!
//! # Events
//!
//! tracing, target `palisade_rate_limit`, with a `name` field: refusals,
//! delays and unusable keys at `debug` (with `class`); the key table filling
//! up at `warn` (once each time); a limit, assignment or delay changed
//! through the handle at `info`; the Redis backend going down at `warn` and
//! coming back at `info`. [`RateLimitBuilder::on_event`] registers
//! listeners for the same as [`RateLimitEvent`]s; they cost nothing when
//! none is registered.
//!
//! # Why a rate limiter, and why this one
//!
//! A rate limit keeps one client from taking what belongs to all: it turns
//! a flood into a steady stream the service can afford, and tells the
//! client, precisely, when to come back. Where this crate goes beyond its
//! peers:
//!
//! - **One limit however the stack is cloned.** tower's `RateLimit` is not
//!   `Clone` and keeps its budget per instance (axum#876, axum#2634,
//!   tower#764); here the state is the layer's.
//! - **GCRA on one atomic word per key**, like governor, with keys from the
//!   request (header, client IP, route, closure), tiers, runtime limits and
//!   automatic, bounded eviction (governor's keyed store must be pruned by
//!   hand and grows with every key). A known key costs no allocation.
//! - **Standard headers.** The IETF `RateLimit-Policy` and `RateLimit`
//!   fields and `Retry-After`, consistent with each other, on refusals and
//!   on admitted responses; a problem+json body.
//! - **Throttling that cannot leak.** A waiting call holds a reserved slot,
//!   given back exactly when that is safe.
//! - **A fleet-wide mode** (tower_governor's open request, tower-governor#37):
//!   one round trip per decision, none for a known-refused key, none while
//!   Redis is down.
//! - **Measured** side by side with governor and tower's `RateLimit`
//!   (`docs/benchmarks.md`).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod builder;
pub mod error;
mod event;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod key;
mod layer;
mod metrics;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::RateLimitBuilder;
pub use event::RateLimitEvent;
pub use handle::{
    KeyQuota, RateLimitHandle, RateLimitRegistry, RateLimitSnapshot, RemoteSnapshot, TierSnapshot,
};
pub use key::{Key, KeyExtractor, KeyExtractorExt, KeyFn, Unkeyed};
pub use layer::RateLimitLayer;
pub use palisade_core::RateLimited;
pub use service::RateLimit;
pub use settings::{
    ClockSource, DEFAULT_BACKEND_TIMEOUT, DEFAULT_MAX_KEY_LEN, DEFAULT_MAX_KEYS, DEFAULT_TIER,
    FailureMode, Limit, MAX_DELAY, MAX_KEY_LEN, MAX_KEY_PREFIX_LEN, MAX_KEYS, MAX_PERIOD,
    MAX_TIER_NAME_LEN, MAX_TIERS, MissingKey, Rate, RateLimitSettings,
};
