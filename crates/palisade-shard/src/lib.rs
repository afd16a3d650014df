//! Key-affine sharding for tower services: each request goes to the shard
//! that owns its key, over a versioned shard map that changes at runtime.
//!
//! A [`ShardRouter`] extracts a key from each request (a closure, or with the
//! `http` feature a header or a path parameter), hashes it once with a fixed,
//! specified hash ([`ShardKey`]: XXH3-64 with a fixed seed, the same in every
//! process and release), finds the owning shard in the current
//! [`ShardMap`], picks one of the shard's replicas and calls it.
//!
//! - **Three schemes** ([`Scheme`]): rendezvous (the default: weights,
//!   removal of any shard, an ordered list of next choices), a ring with
//!   virtual nodes (O(log n) lookups for many shards), and jump hash for
//!   numbered shards. `docs/patterns/sharding.md` compares them.
//! - **A versioned map** changed at runtime through the [`ShardHandle`]
//!   (add, remove, re-weight) without blocking any call: the next map is
//!   built aside and swapped in whole. A change moves only the keys it must,
//!   and reports the share that moved ([`MapChange::moved_share`]).
//! - **During a move** ([`MovePolicy`]): forward every request to the new
//!   owner (the default), or read from the new owner and fall back to the
//!   previous one on a miss until [`ShardHandle::complete_move`].
//! - **Replicas** ([`Shard::replicated`]): power of two choices on a
//!   peak-EWMA of each replica's latency, skipping replicas whose circuit
//!   breaker is open.
//! - **Scatter-gather** over every shard ([`ShardHandle::scatter`]), through
//!   palisade-fan-out.
//! - **Observable**: metrics per shard, a span per call naming the shard and
//!   replica, events for every change, a serializable [`ShardSnapshot`].
//!
//! The router is a `Service` over many services, not a `Layer` around one
//! (like tower's `Steer` and the fan-out), so the crate has no layer type.
//!
//! # Example
//!
//! ```
//! use palisade_shard::{Shard, ShardRouter};
//! use tower::{service_fn, ServiceExt};
//! # use palisade_core::BoxError;
//!
//! struct GetUser { id: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Stand-in for the client of one user database.
//! let db = |name: &'static str| service_fn(move |req: GetUser| async move {
//!     Ok::<_, BoxError>(format!("user {} from {name}", req.id))
//! });
//!
//! let users = ShardRouter::builder("users")
//!     .shard(Shard::new("users-0", db("users-0")))
//!     .shard(Shard::new("users-1", db("users-1")))
//!     .shard(Shard::new("users-2", db("users-2")))
//!     .key_fn(|req: &GetUser| Some(req.id))
//!     .build()?;
//!
//! let owner = users.handle().owner(42u64);
//! let answer = users.clone().oneshot(GetUser { id: 42 }).await?;
//! assert_eq!(answer, format!("user 42 from {owner}"));
//!
//! // A fourth shard at runtime: about a quarter of the keys move, all to it.
//! let change = users.handle().add_shard(Shard::new("users-3", db("users-3")))?;
//! assert!((change.moved_share - 0.25).abs() < 0.03);
//! let owner_now = users.handle().owner(42u64);
//! assert!(owner_now == owner || &*owner_now == "users-3");
//! # Ok(())
//! # }
//! ```
//!
//! Over HTTP (feature `http`), [`http::PathParam`] or [`http::Header`] find
//! the key, and [`http::to_problem`] answers a request without one with a
//! `400` problem; see the [`http`] module.
//!
//! # Ordering
//!
//! The router sits **above** the shards' stacks: each shard (each replica)
//! is a service with its own resilience stack — retry outside its breaker,
//! per-attempt timeout, bulkhead innermost, as in `docs/ARCHITECTURE.md` —
//! so one failing shard trips only its own breaker. Give the breaker's
//! handle to [`Replica::breaker`] so the router routes around an open one.
//!
//! Around the router, put what bounds requests as a whole (a timeout, a
//! load shed or a bulkhead for the router's total in flight; see
//! Backpressure) and, over HTTP, `ProblemResponseLayer` with
//! [`http::to_problem`] (the facade's `problem_responses()` includes it). A
//! retry around the router re-extracts the key and re-routes each attempt,
//! which follows a map change between attempts; a retry inside a shard's
//! stack stays on that shard.
//!
//! # Clone
//!
//! The map, the shards' services, the settings, the metrics and the
//! listeners are created once by the builder and shared through an `Arc` by
//! the router, every clone of it, its [`ShardHandle`]s, [`ShardService`]s and
//! [`ScatterGather`]s: cloning the router never creates new state, and a
//! change through any handle is seen by every clone's next call. Building a
//! second router under the same name in a [`Registry`](palisade_core::Registry)
//! shares the first one's map.
//!
//! Each call clones the chosen replica's service (tower's `oneshot`
//! pattern): the shard's own layers keep their state in their layers, as
//! Palisade's do, so their limits hold across clones.
//!
//! # Backpressure
//!
//! `poll_ready` cannot know the key, so it cannot know which shard to wait
//! for. Waiting for every shard (tower's `Steer`) would let one slow shard
//! hold up requests for all the others; reserving capacity in every shard
//! for a call that goes to one would leak it (style guide traps 2 and 10).
//! So:
//!
//! - [`ShardRouter::poll_ready`](tower_service::Service::poll_ready) is
//!   always ready and reserves nothing;
//! - `call` routes the request, clones the chosen replica's service and
//!   returns a future that drives **that service only** to readiness, then
//!   calls it. The wait is bounded by
//!   [`ready_timeout`](ShardSettings::ready_timeout) (default 1 s): past it
//!   the request fails with [`ShardNotReady`] without
//!   being sent. The timer is created only when the service is not ready at
//!   once;
//! - whatever the shard's stack reserves in its own `poll_ready` (a bulkhead
//!   permit, a half-open probe) is reserved right before its call and
//!   released with it, or when the future is dropped.
//!
//! A shard that is slow to become ready therefore delays only requests for
//! its own keys, each by at most `ready_timeout`; other shards' requests
//! never wait for it (the readiness tests observe this on a paused clock).
//! The price: the router never tells its caller "not ready", so it does not
//! propagate a shard's backpressure upstream. Each shard applies its own
//! (a bulkhead refuses or queues, boundedly), and a concurrency limit or
//! load shed around the router bounds the total. If you want a queue per
//! shard instead, put tower's `Buffer` in each shard's stack: it queues
//! that shard's requests without affecting the others, at the cost of a
//! task per shard and an allocation per call.
//!
//! # Errors
//!
//! The router's error type is [`BoxError`](palisade_core::BoxError): the
//! shards' own errors unchanged, and:
//!
//! | error | when | HTTP ([`http::to_problem`]) |
//! |---|---|---|
//! | [`KeyError`] (`missing` or `malformed`) | the request has no usable key and no [`default_shard`](ShardSettings::default_shard) is set | `400`, `urn:palisade:problem:shard-key` |
//! | [`ShardNotReady`] | the shard did not become ready within `ready_timeout` | `503`, `urn:palisade:problem:shard-not-ready` |
//!
//! A request is never refused for a key that hashes badly: every key has an
//! owner, and bad input never panics. A change to the map that cannot be
//! made (a duplicate name, removing the last shard, a weight under jump)
//! returns a [`MapError`] and leaves the map as it was; bad settings are
//! refused by [`ShardRouterBuilder::build`] with a
//! [`ConfigError`](palisade_core::ConfigError) naming the setting.
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, every series
//! labelled `name` (the router's name); handles are resolved when the
//! router is built and when a shard is added, never per call.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_shard_requests_total` | counter | `shard` | requests routed to each shard |
//! | `palisade_shard_request_duration_seconds` | histogram | `shard` | latency per shard, call to answer (when `record_latency`) |
//! | `palisade_shard_not_ready_total` | counter | `shard` | requests failed with `ShardNotReady` |
//! | `palisade_shard_fallbacks_total` | counter | `shard` | requests for moved keys sent again to the previous owner |
//! | `palisade_shard_share` | gauge | `shard` | share of the key space the shard owns (0 when removed) |
//! | `palisade_shard_key_errors_total` | counter | `reason` = `missing`, `malformed` | requests refused for want of a key |
//! | `palisade_shard_defaulted_total` | counter | | requests served by the default shard |
//! | `palisade_shard_map_version` | gauge | | version of the map in force |
//! | `palisade_shard_shards` | gauge | | shards in the map |
//! | `palisade_shard_keys_moved_ratio` | gauge | | share of the keys that moved on the last change |
//! | `palisade_shard_map_changes_total` | counter | `kind` = `added`, `removed`, `reweighted` | map changes |
//!
//! Keys are never labels.
//!
//! # Events
//!
//! - Tracing (target `palisade_shard`): a `debug` span `shard` per call with
//!   fields `name`, `shard` and `replica`, entered while the call is polled
//!   so the shard stack's own events nest under it; map changes at `info`
//!   (with the share that moved); refused keys, default-shard routing, a
//!   shard not ready in time and fall-backs at `debug`.
//! - Listeners ([`ShardRouterBuilder::on_event`]): [`ShardEvent::MapChanged`],
//!   [`ShardEvent::MoveCompleted`], [`ShardEvent::FellBack`]; built only
//!   when someone listens.
//! - [`ShardHandle::snapshot`]: per shard its weight, share, requests,
//!   not-ready and fall-back counts; per replica its requests, calls in
//!   flight, peak-EWMA latency and breaker state; the last change.
//!
//! # Why
//!
//! Sharding spreads data and load over shards by key (a user id, a tenant):
//! each shard holds a part, and losing one loses only that part. The router
//! must agree with every other process on who owns a key, move as few keys
//! as possible when shards come and go, and never let one shard's trouble
//! reach requests for the others. No tower middleware does this: tower's
//! `Steer` picks a child by index and its `poll_ready` waits for every child
//! ("head-of-line blocking unless the underlying services are always
//! ready"); tower-resilience has only weighted routing without key
//! affinity; the lookup crates (`hrw-hash`, `hashring`, `jumpch`) answer
//! which node, but leave the hash (often `DefaultHasher`, not stable across
//! Rust releases), runtime changes, readiness and metrics to you.
//!
//! Where this crate goes further, and why:
//!
//! - **A stable hash by contract**: XXH3-64, pinned in tests to the
//!   reference C implementation's values, with the insertion order of
//!   shards irrelevant for rendezvous and the ring (ties broken by name):
//!   two processes built from the same shard list agree on every key (a
//!   test runs a second process to check).
//! - **Waits only on the shard it picks**, with a bound, instead of on every
//!   shard.
//! - **Changes without a pause**: the map is swapped whole (`arc-swap`), so
//!   a call never takes a lock and a change never waits for calls.
//! - **Replicas balanced by tower's algorithm, without tower's
//!   `Balance`**: peak-EWMA cost (Finagle's, as tower's `PeakEwma`
//!   computes it) and power of two choices. tower's `PeakEwma` is not
//!   `Clone` and counts clones of its handle as calls in flight, so it
//!   cannot sit under a router that clones a replica per call, and it locks
//!   a mutex per call and per load reading; tower's `Balance` owns its
//!   endpoints behind `&mut self`, needs a `Buffer` to be shared (a task and
//!   an allocation per call), and cannot tell an open Palisade breaker
//!   (which reports ready and fails in the future) from a healthy endpoint.
//!   Here the estimate is a few relaxed atomics per replica, measured from
//!   the timing the router already takes.
//! - **Scatter-gather that follows the map**, with the fan-out's deadlines
//!   and partial results.
//!
//! The cost per routed call is measured against the lookup crates and
//! tower's `Steer` in `docs/benchmarks.md`.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to the `http` module, which exists with feature `http`
// (docs.rs builds with every feature); without it those links cannot resolve.
#![cfg_attr(not(feature = "http"), allow(rustdoc::broken_intra_doc_links))]

mod builder;
pub mod error;
mod event;
mod fallback;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod key;
mod metrics;
mod scatter;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::{NoKey, ShardRouterBuilder};
pub use error::{KeyError, KeyErrorKind, MapError, MapErrorKind, ShardNotReady};
pub use event::{ChangeKind, MapChange, ShardEvent};
pub use fallback::{FallBack, Forward, IsFallback, MoveFallback};
pub use handle::{ReplicaFigures, ShardFigures, ShardHandle, ShardSnapshot};
pub use key::{ExtractKey, IntoKeyResult, KeyFn, checked_key};
pub use scatter::{ScatterBuilder, ScatterGather};
pub use service::{ShardRouter, ShardService};
pub use settings::{
    KeyFormat, KeySource, MAX_KEY_LEN, MAX_READY_TIMEOUT, MAX_RING_POINTS, MAX_SHARDS,
    MAX_VIRTUAL_NODES, MAX_WEIGHT, MovePolicy, Scheme, ShardSettings,
};
pub use shared::{Replica, Shard};
pub use state::{MOVE_SAMPLES, ShardKey, ShardMap, ShardSpec, jump};
