//! Resilience patterns as tower middleware: one crate per pattern, each behind
//! a cargo feature of this facade.
//!
//! | feature | module | what it gives |
//! |---|---|---|
//! | `circuit-breaker` | [`circuit_breaker`] | stop calling a failing dependency, probe it, recover |
//! | `retry` | [`retry`] | backoff with jitter, a shared retry budget, `Retry-After`, replayable HTTP |
//! | `bulkhead` | [`bulkhead`] | bounded concurrency with fair, bounded waiting; partitions; adaptive limits |
//! | `rate-limit` | [`rate_limit`] | keyed GCRA limits with tiers, throttling, the IETF `RateLimit` fields; `rate-limit-redis`: one limit for a fleet |
//! | `fan-out` | [`fan_out`] | scatter-gather with deadlines and partial results |
//! | `chaos` | [`chaos`] | latency, error and abort injection, to see the others work |
//! | `shard` | [`shard`] | key-affine routing over a versioned shard map: rendezvous, ring, jump; replicas; scatter-gather |
//! | `serde` | | `Serialize`/`Deserialize` for settings and snapshots (of the patterns that have them) |
//! | `pubsub` | [`pubsub`] | an in-process bus, consumers that drive a tower stack per message, idempotent consumers, a transactional outbox relay |
//! | `pubsub-nats`, `pubsub-sqlite`, `pubsub-postgres` | [`pubsub`]`::backend` | NATS JetStream; the SQL inboxes and relay checkpoints |
//! | `cache` | [`cache`] | cache-aside: stale-while-revalidate, stale-if-error, request coalescing, bounded by bytes |
//! | `cache-redis` | [`cache`]`::backend::redis` | the cache's second tier in Redis, behind a breaker |
//! | `deadline` | [`deadline`] | a deadline carried with each request, read from `grpc-timeout`, written on, enforced |
//! | `fallback` | [`fallback`] | answer failures and rejections from a value, a closure or a service, marked and counted |
//! | `hedge` | [`hedge`] | a second attempt after the latency percentile, under a budget |
//! | `event-store` | [`event_store`] | event sourcing's store: expected-version appends, idempotent event ids, a gap-safe global order, subscriptions, snapshots; in memory or a SQLite file |
//! | `event-store-postgres` | [`event_store`]`::backend::postgres` | the event store on PostgreSQL, for a fleet |
//! | `cqrs` | [`cqrs`] | aggregates (decide/evolve) with a given/when/then harness, command handling as a tower service with conflict reloads, projections whose checkpoint commits with the read model, parked events, read-your-writes |
//! | `cqrs-postgres` | [`cqrs`]`::backend::postgres` | PostgreSQL read models, one active runner per projection across processes |
//! | `http` | [`http`] and each pattern's `http` module | status classification, problem+json answers for every layer's errors, 503 + `Retry-After` |
//! | `grpc` | [`grpc`] | gRPC status codes, a `grpc-status` classifier, gRPC status answers for every layer's errors |
//! | `serde` | each pattern's settings | `Serialize`/`Deserialize` settings and snapshots (shard, deadline, fallback, hedge) |
//! | `full` | all of the above | |
//!
//! The shared vocabulary is re-exported at the root: [`BoxError`],
//! [`is_caused_by`], [`Classify`] and [`Outcome`], the rejections
//! [`CircuitOpen`], [`BulkheadFull`] and [`RateLimited`], the request's
//! [`Deadline`] and [`DeadlineExpired`], [`Registry`], [`ConfigError`].
//! [`ServiceBuilderExt`] adds one method per pattern to
//! `tower::ServiceBuilder`.
//!
//! # Example
//!
//! The recommended stack for one downstream, outermost first: retries, then
//! the breaker (it counts every attempt, and retries stop when it opens), then
//! a per-attempt timeout (a hung call is a failure the breaker sees), then the
//! bulkhead (it bounds what is really in flight).
//!
//! ```
//! # #[cfg(all(feature = "circuit-breaker", feature = "retry", feature = "bulkhead"))]
//! # {
//! use palisade::{ServiceBuilderExt, is_caused_by, CircuitOpen};
//! use palisade::bulkhead::BulkheadLayer;
//! use palisade::circuit_breaker::CircuitBreakerLayer;
//! use palisade::retry::{Backoff, RetryLayer};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::BoxError> {
//! let breaker = CircuitBreakerLayer::builder("inventory")
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .failure_rate_threshold(50.0)
//!     .build()?;
//! let handle = breaker.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .retries(
//!         RetryLayer::builder("inventory")
//!             .max_attempts(3)
//!             .backoff(Backoff::fixed(Duration::from_millis(10)))
//!             .build()?,
//!     )
//!     .circuit_breaker(breaker)
//!     .timeout(Duration::from_secs(1))
//!     .bulkhead(BulkheadLayer::builder("inventory").max_concurrent_calls(16).build()?)
//!     .service(service_fn(|sku: u32| async move {
//!         Err::<u32, _>(format!("inventory is down (sku {sku})"))
//!     }));
//!
//! // Four failed attempts open the breaker; from then on calls are refused at
//! // once, and the refusal is not retried.
//! for sku in 0..3 {
//!     let _ = svc.clone().oneshot(sku).await;
//! }
//! assert_eq!(handle.state().as_str(), "open");
//! let err = svc.clone().oneshot(7).await.unwrap_err();
//! assert!(is_caused_by::<CircuitOpen>(&*err));
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! # Sharing
//!
//! Every layer owns its pattern's state (a breaker's window, a bulkhead's
//! permits, a retry budget) and shares it with every service it builds and
//! every clone: build one layer per downstream, and a framework that clones
//! services per request or calls `layer()` once per route (axum does both)
//! still gets one breaker, one limit, one budget.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;

pub use builder::ServiceBuilderExt;
/// Refusing request paths that could climb (`..`, `..;`, `%2e%2e`, `..%2F`,
/// backslashes): palisade-core's [`path`] module.
pub use palisade_core::path;
pub use palisade_core::{
    BoxError, BulkheadFull, CircuitOpen, Classify, ConfigError, Deadline, DeadlineExpired,
    ErrorsAsFailures, Handle, IgnoreRejections, Listeners, Outcome, RateLimited, Registry,
    Rejection, cause_ref, is_caused_by, is_deadline_expired, is_rejection, rejection,
};

/// The circuit breaker (feature `circuit-breaker`): the
/// [`palisade-circuit-breaker`](palisade_circuit_breaker) crate.
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub use palisade_circuit_breaker as circuit_breaker;

/// Retries with a budget (feature `retry`): the
/// [`palisade-retry`](palisade_retry) crate.
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use palisade_retry as retry;

/// The bulkhead (feature `bulkhead`): the
/// [`palisade-bulkhead`](palisade_bulkhead) crate.
#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
pub use palisade_bulkhead as bulkhead;

/// Rate limiting (feature `rate-limit`): the
/// [`palisade-rate-limit`](palisade_rate_limit) crate.
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use palisade_rate_limit as rate_limit;

/// Scatter-gather (feature `fan-out`): the
/// [`palisade-fan-out`](palisade_fan_out) crate.
#[cfg(feature = "fan-out")]
#[cfg_attr(docsrs, doc(cfg(feature = "fan-out")))]
pub use palisade_fan_out as fan_out;

/// Fault injection (feature `chaos`): the
/// [`palisade-chaos`](palisade_chaos) crate.
#[cfg(feature = "chaos")]
#[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
pub use palisade_chaos as chaos;

/// Cache-aside (feature `cache`): the [`palisade-cache`](palisade_cache)
/// crate.
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use palisade_cache as cache;
/// Publish-subscribe (feature `pubsub`; backends `pubsub-nats`,
/// `pubsub-sqlite`, `pubsub-postgres`): the
/// [`palisade-pubsub`](palisade_pubsub) crate.
#[cfg(feature = "pubsub")]
#[cfg_attr(docsrs, doc(cfg(feature = "pubsub")))]
pub use palisade_pubsub as pubsub;

/// Event sourcing's store (feature `event-store`; PostgreSQL with
/// `event-store-postgres`): the
/// [`palisade-event-store`](palisade_event_store) crate.
#[cfg(feature = "event-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "event-store")))]
pub use palisade_event_store as event_store;

/// CQRS on the event store (feature `cqrs`; PostgreSQL read models with
/// `cqrs-postgres`): the [`palisade-cqrs`](palisade_cqrs) crate.
#[cfg(feature = "cqrs")]
#[cfg_attr(docsrs, doc(cfg(feature = "cqrs")))]
pub use palisade_cqrs as cqrs;

/// Key-affine sharding (feature `shard`): the
/// [`palisade-shard`](palisade_shard) crate.
#[cfg(feature = "shard")]
#[cfg_attr(docsrs, doc(cfg(feature = "shard")))]
pub use palisade_shard as shard;

/// Deadlines that travel with requests (feature `deadline`): the
/// [`palisade-deadline`](palisade_deadline) crate.
#[cfg(feature = "deadline")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadline")))]
pub use palisade_deadline as deadline;

/// Fallbacks (feature `fallback`): the
/// [`palisade-fallback`](palisade_fallback) crate.
#[cfg(feature = "fallback")]
#[cfg_attr(docsrs, doc(cfg(feature = "fallback")))]
pub use palisade_fallback as fallback;

/// Hedged requests (feature `hedge`): the
/// [`palisade-hedge`](palisade_hedge) crate.
#[cfg(feature = "hedge")]
#[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
pub use palisade_hedge as hedge;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
