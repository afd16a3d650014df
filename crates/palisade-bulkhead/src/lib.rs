//! A bulkhead for tower services: bounded concurrency with fair waiting, per-key partitions and an adaptive limit.
//!
//! A bulkhead caps how many calls are in flight to a dependency, so one slow
//! dependency can only tie up its own share of the workers. When the pool is
//! full, a call waits its turn for at most [`max_wait`] (first come, first
//! served, behind at most [`max_queue`] others) and is then refused with
//! [`BulkheadFull`], instead of waiting forever as tower's `ConcurrencyLimit`
//! does. Partitions give each key (a tenant, a route, a downstream host) its
//! own pool; limits change at runtime through a [`BulkheadHandle`], or adapt
//! themselves to latency and errors.
//!
//! [`max_wait`]: BulkheadBuilder::max_wait
//! [`max_queue`]: BulkheadBuilder::max_queue
//!
//! # Example
//!
//! ```
//! use palisade_bulkhead::{BulkheadFull, BulkheadLayer};
//! use palisade_core::is_caused_by;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let bulkhead = BulkheadLayer::builder("inventory")
//!     .max_concurrent_calls(2)
//!     .max_wait(Duration::from_millis(50))
//!     .build()?;
//! let handle = bulkhead.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(bulkhead)
//!     .service(service_fn(|sku: u32| async move {
//!         tokio::time::sleep(Duration::from_secs(1)).await; // a slow dependency
//!         Ok::<_, std::convert::Infallible>(sku)
//!     }));
//!
//! // Two calls take both permits; the third waits 50 ms, then is refused.
//! let a = tokio::spawn(svc.clone().oneshot(1));
//! let b = tokio::spawn(svc.clone().oneshot(2));
//! tokio::task::yield_now().await;
//! assert_eq!(handle.in_flight(), 2);
//! let err = svc.clone().oneshot(3).await.unwrap_err();
//! assert!(is_caused_by::<BulkheadFull>(&*err));
//! assert_eq!(err.to_string(), "bulkhead `inventory` is full after waiting 50ms");
//! assert_eq!((a.await??, b.await??), (1, 2));
//! assert_eq!(handle.rejected(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Partitioned by tenant, with the HTTP keys of the `http` feature:
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use palisade_bulkhead::{BulkheadLayer, http::header};
//!
//! let per_tenant = BulkheadLayer::builder("tenants")
//!     .max_concurrent_calls(8)        // each tenant: at most 8 in flight
//!     .partition(header("x-tenant"))
//!     .max_partitions(10_000)         // live tenants; more share an overflow pool
//!     .build()
//!     .unwrap();
//! # }
//! ```
//!
//! Every setting that is plain data is a field of [`BulkheadSettings`]
//! (defaults, bounds, a `validate` with no side effect), which the builder
//! takes whole with [`settings`](BulkheadBuilder::settings) and, with the
//! `serde` feature, reads from a config file (`max_wait = "50ms"`). The
//! partition key, the classifier and the listeners are code, given to the
//! builder.
//!
//! # Ordering
//!
//! Put the bulkhead innermost, right above the client, inside retry, the
//! circuit breaker and the per-attempt timeout:
//!
//! ```text
//! timeout(overall) → retry → circuit breaker → timeout(attempt) → bulkhead → client
//! ```
//!
//! - **Inside retry**, so every attempt takes a permit: retries cannot exceed
//!   the limit. A [`BulkheadFull`] is a rejection ([`palisade_core::is_rejection`]),
//!   which `palisade-retry` never retries: retrying would add load where the
//!   bulkhead asked for less.
//! - **Inside the breaker**, so a full bulkhead is not counted as a failure
//!   of the downstream (it says nothing about the downstream's health, only
//!   about our own concurrency). If you do want sustained saturation to open
//!   the breaker, put the bulkhead outside it, or classify `BulkheadFull` as a
//!   failure in the breaker's classifier.
//! - **Under the attempt timeout**, so the timeout bounds the wait for a
//!   permit plus the call. For an [adaptive](BulkheadBuilder::adaptive) limit,
//!   put a timeout *inside* the bulkhead as well (or instead): a timeout error
//!   is a failure the limiter learns from, while a call cancelled from outside
//!   only tells it how long the call had run.
//!
//! # Clone
//!
//! The state (pools, limits, waiters, counters, the partition map) is owned
//! by the layer in an `Arc` and shared by every service [`Layer::layer`]
//! builds, by every clone of the layer and of those services, and by every
//! [`BulkheadHandle`]. Cloning the layer or the service does not create new
//! state, so the limit holds across axum's per-route `layer()` calls and its
//! per-request clones. What is not shared is a service's reservation (see
//! "Backpressure"): a clone starts with none.
//!
//! [`Layer::layer`]: tower_layer::Layer::layer
//!
//! # Backpressure
//!
//! Two admission modes; the default suits axum, hyper and tonic, where
//! `poll_ready` is called right before `call`:
//!
//! - **In `call`** (default). `poll_ready` reserves nothing: it only polls
//!   the inner service. `call` computes the partition key, then takes a
//!   permit from that key's pool with one atomic operation and calls the
//!   inner service at once. When the pool is full, the call either fails at
//!   once (`max_wait` of zero, or `max_queue` reached) or waits in the
//!   response future, in FIFO order, for at most `max_wait`: the ready inner
//!   service is moved into the future (a clone takes its place, to be polled
//!   ready before the next call), and the future calls it when its turn
//!   comes. The waiting future is woken when a permit is handed to it, or
//!   when `max_wait` passes. Partitioned bulkheads must work this way: the
//!   key is not known in `poll_ready`.
//! - **In `poll_ready`** ([`backpressure(true)`](BulkheadBuilder::backpressure),
//!   unpartitioned only), as tower's `ConcurrencyLimit`. `poll_ready`
//!   reserves a permit, then polls the inner service. It returns `Pending`
//!   while the pool is full, woken when a permit is handed to this service
//!   (FIFO among waiting services) or when `max_wait` passes; after
//!   `max_wait` it returns `Ready(Ok)` without a permit and the next `call`
//!   fails at once with [`BulkheadFull`] (never an error from `poll_ready`,
//!   which `Buffer` would treat as fatal). Repeated `poll_ready` after
//!   `Ready` reserves nothing more. `call` without a `Ready` `poll_ready`
//!   first panics, as tower's does.
//!
//! Either way, a permit is released when the response future completes
//! (not only when it is dropped), when the response future is dropped early
//! (cancellation), and when a service holding a reservation is dropped. A
//! waiting call that is dropped leaves the queue; if a permit had just been
//! handed to it, the permit goes to the next waiter.
//!
//! Waiting needs a tokio runtime with the time driver (for the `max_wait`
//! timer). With `max_wait(Duration::MAX)` a call waits without a deadline.
//!
//! # Spawning
//!
//! `tokio::spawn(async move { svc.ready().await?.call(req).await })` can fail
//! to compile with "implementation of `FnOnce` is not general enough" (or of
//! `From`) when the request or error type holds a lifetime, `BoxError`'s
//! `'static` included. The cause is rustc (rust-lang/rust#110338), not a bound
//! of this layer that could be loosened: in what an `async` block keeps across
//! an `.await`, rustc forgets the lifetimes, then must prove the service's
//! bounds (`S::Error: Into<BoxError>`, the classifier's and the partition's,
//! `service_fn`'s `FnMut(Req)`) for every lifetime, which it cannot. tower's
//! own `Timeout` fails the same way. What compiles: spawning the call's
//! future itself (`tokio::spawn(svc.oneshot(req))`), boxing the service first
//! (`tower::util::BoxCloneSyncService`) and holding that in the block, or
//! request and error types without lifetimes. A closure classifier needs the
//! `&` of its parameter written out (`|result: &Result<_, _>| ...`), or it is
//! no [`Classify`](palisade_core::Classify) at all.
//!
//! ```
//! use palisade_bulkhead::BulkheadLayer;
//! use palisade_core::{BoxError, Outcome};
//! use tower::util::BoxCloneSyncService;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = BulkheadLayer::builder("search")
//!     .max_concurrent_calls(4)
//!     .classifier(|result: &Result<usize, BoxError>| match result {
//!         Ok(_) => Outcome::Success,
//!         Err(_) => Outcome::Failure,
//!     })
//!     .build()
//!     .unwrap();
//! let svc = layer.layer(service_fn(|query: &'static str| async move {
//!     Ok::<_, BoxError>(query.len())
//! }));
//!
//! // The call's future, spawned as it is.
//! let n = tokio::spawn(svc.clone().oneshot("rust")).await.unwrap().unwrap();
//! assert_eq!(n, 4);
//!
//! // A boxed service, held in an async block across `.await`s.
//! let mut svc = BoxCloneSyncService::new(svc);
//! let task = tokio::spawn(async move {
//!     let a = svc.ready().await?.call("tower").await?;
//!     let b = svc.ready().await?.call("tokio").await?;
//!     Ok::<_, BoxError>(a + b)
//! });
//! assert_eq!(task.await.unwrap().unwrap(), 10);
//! # }
//! ```
//!
//! # Errors
//!
//! The service's error is [`BoxError`](palisade_core::BoxError): the inner
//! service's errors, unchanged inside the box, and [`BulkheadFull`] (from
//! `palisade-core`, re-exported here) when a call is refused. `BulkheadFull`
//! carries the bulkhead's [name](BulkheadFull::name), the
//! [partition](BulkheadFull::partition) (for a partitioned bulkhead) and how
//! long the call [waited](BulkheadFull::waited) (`None`: refused at once).
//! Find it with [`palisade_core::is_caused_by`] or
//! [`palisade_core::rejection`], even when another layer wrapped it.
//!
//! With the `http` feature, `BulkheadFull::to_problem` and
//! `palisade_core::http::rejection_response` turn it into a
//! `503 Service Unavailable` problem+json response with an
//! `x-palisade-bulkhead` header naming the bulkhead, and
//! `palisade_bulkhead::http::ProblemResponseLayer` does that for a whole
//! stack so that its error type is `Infallible`, as axum wants.
//!
//! # Metrics
//!
//! Every series has a `name` label; pools of a partitioned bulkhead add
//! `partition` (the key, or `(unkeyed)` / `(overflow)`) unless
//! [`partition_metrics(false)`](BulkheadBuilder::partition_metrics). Handles
//! are resolved when a pool is created, never per call.
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `palisade_bulkhead_in_flight` | gauge | name, partition | calls holding a permit |
//! | `palisade_bulkhead_queued` | gauge | name, partition | calls waiting for a permit |
//! | `palisade_bulkhead_limit` | gauge | name, partition | the pool's current limit |
//! | `palisade_bulkhead_rejected_total` | counter | name, partition, reason | refused calls; `reason` is `full` (could not wait), `queue_full` or `timeout` |
//! | `palisade_bulkhead_wait_seconds` | histogram | name, partition | time queued, for calls that had to wait (admitted or timed out); calls admitted at once are not recorded |
//! | `palisade_bulkhead_partitions` | gauge | name | live keyed partitions |
//!
//! # Events
//!
//! tracing, target `palisade_bulkhead`, every event with a `name` field
//! (and `partition`):
//!
//! - `debug`: a rejection (`reason`, `waited_ms`); a partition created or
//!   reclaimed; a new key sent to the overflow pool; a limit change made by
//!   the adaptive limiter (these can be frequent).
//! - `info`: a limit, `max_wait` or `max_queue` changed through the handle;
//!   idle partitions reclaimed through [`BulkheadHandle::reclaim_idle`].
//!
//! [`BulkheadBuilder::on_event`] registers listeners for the same as
//! [`BulkheadEvent`]s; they cost nothing when none is registered.
//!
//! # Why a bulkhead
//!
//! Without one, every request to a slow dependency holds a worker, a
//! connection and memory until it times out; under load the slow dependency
//! takes all of them, and requests that never touch it fail too. A bulkhead
//! gives each dependency (or each tenant) a fixed share and refuses the
//! excess quickly, which keeps the rest of the service responsive and tells
//! callers to back off (503) instead of letting them queue.
//!
//! Where this crate goes beyond its peers:
//!
//! - **It refuses, fairly and in bounded time.** tower's `ConcurrencyLimit`
//!   only waits (tower#793). Here a call waits in FIFO order for at most
//!   `max_wait`, behind at most `max_queue` others, then fails with a typed
//!   rejection that retry layers know not to retry.
//! - **State is per layer, not per `layer()` call.** tower's
//!   `ConcurrencyLimitLayer` makes a semaphore per `layer()` call, so under
//!   axum each route (once, each request) got its own limit (axum#2582);
//!   tower-resilience shares only when built `with_handle`. Here every
//!   `layer()` call and clone shares one state.
//! - **`Send + Sync + Clone`, no boxing.** tower-resilience's bulkhead was
//!   `!Sync` and broke tonic (tower-resilience#287), and it returns a boxed
//!   future per call. [`Bulkhead`] is `Send + Sync + Clone` whenever its
//!   inner service is, its future is a named state machine, and the
//!   unpartitioned path allocates nothing per call, waiting included (the
//!   waiter queue is a slab reused across waits).
//! - **One atomic operation per admission.** tokio's `Semaphore` (under
//!   tower's `ConcurrencyLimit`) takes its waiter lock on every release; a
//!   pool here acquires and releases with one atomic operation each unless
//!   somebody waits, and only then takes its lock to hand the permit over,
//!   with no allocation. Against tower's `ConcurrencyLimit` it measured
//!   cheaper on one thread and under two-thread contention at first, and
//!   1.35× its time on one thread in the latest rerun (the figures, and what
//!   is known of the difference, are in `docs/benchmarks.md`).
//! - **Partitions with bounded memory.** Per-key pools (a header, a path
//!   prefix, the authority, or any closure), at most `max_partitions` live,
//!   idle ones reclaimed; lookups of a known key allocate nothing.
//! - **Runtime resize without dropping calls.** Raising a limit admits
//!   waiters at once; lowering it lets in-flight calls finish and admits
//!   nobody until the pool is under its new limit (a debt paid back as
//!   permits return).
//! - **Adaptive limits** after Netflix's concurrency-limits: AIMD and
//!   Gradient2, in a pure, tested [`limiter`] module.
//! - **Observable**: metrics per pool, tracing, events, a
//!   [`Registry`] of handles ([`BulkheadBuilder::registry`]) and plain-data
//!   [`BulkheadSnapshot`]s (serializable with the `serde` feature, settings
//!   in force included) for an admin API.
//!
//! Design notes and a diagram: `docs/patterns/bulkhead.md`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod event;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod layer;
mod metrics;
pub mod partition;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::BulkheadBuilder;
pub use event::{BulkheadEvent, LimitCause, RejectReason};
pub use handle::{BulkheadHandle, BulkheadSnapshot, PoolSnapshot};
pub use layer::BulkheadLayer;
pub use palisade_core::{BulkheadFull, Registry};
pub use partition::{KeyFn, Partition, Unpartitioned};
pub use service::Bulkhead;
pub use settings::{
    AdaptiveLimit, Aimd, BulkheadSettings, DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_MAX_PARTITIONS,
    DEFAULT_PARTITION_IDLE_TIMEOUT, Gradient, MAX_LIMIT, MAX_PARTITION_IDLE_TIMEOUT,
    MAX_PARTITIONS, MAX_QUEUE,
};
pub use state::limiter;
