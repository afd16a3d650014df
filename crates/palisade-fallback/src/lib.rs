//! Fallbacks for tower services: answer a classified failure or a rejection from a value, a closure or another service, marked and counted.
//!
//! A [`FallbackLayer`] lets a call through; when it fails in a class the
//! layer answers ([`on`](FallbackBuilder::on)), the caller gets the
//! fallback's answer instead of the failure:
//!
//! - **what it answers**: rejections found anywhere in the error's chain (an
//!   open breaker, a full bulkhead, a rate limit), an expired
//!   [`Deadline`](palisade_core::Deadline), an error or a response the
//!   [`classifier`](FallbackBuilder::classifier) calls a failure; each one a
//!   [`FallbackClass`], chosen per layer.
//! - **how it answers**: a [`value`](FallbackBuilder::value), a
//!   [closure](FallbackBuilder::with) of the [`Cause`], another
//!   [service](FallbackBuilder::service) (a replica, a cache, a degraded
//!   mode) or an [`Answer`] of your own; over HTTP a
//!   [`StaticResponse`](http::StaticResponse).
//! - **that it answered**: every answer is counted (metrics, events, the
//!   handle's [snapshot](FallbackHandle::snapshot)) and, over HTTP, marked
//!   with `x-palisade-fallback` and `x-palisade-fallback-class` headers.
//!
//! # Example
//!
//! ```
//! use palisade_core::{BoxError, CircuitOpen};
//! use palisade_fallback::{FallbackClass, FallbackLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Recommendations are optional: when their breaker is open, or the
//! // deadline passed, answer an empty list; let other errors through.
//! let fallback = FallbackLayer::builder("recommendations")
//!     .value(Vec::<String>::new())
//!     .on([FallbackClass::CircuitOpen, FallbackClass::Deadline])
//!     .build()?;
//! let handle = fallback.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(fallback)
//!     .service(service_fn(|user: u32| async move {
//!         match user {
//!             0 => Err::<Vec<String>, BoxError>(CircuitOpen::new("recs", None).into()),
//!             1 => Err("corrupt row".into()),
//!             _ => Ok(vec!["book".to_owned()]),
//!         }
//!     }));
//!
//! assert_eq!(svc.clone().oneshot(7).await?, ["book"]);
//! assert!(svc.clone().oneshot(0).await?.is_empty()); // the fallback
//! assert_eq!(svc.oneshot(1).await.unwrap_err().to_string(), "corrupt row");
//! assert_eq!(handle.snapshot().served, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! Above the layers whose failures it answers, and below what must see the
//! real outcome:
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(fallback)            // answers what is left after retries
//!     .layer(retry)               // retries transient failures first
//!     .layer(circuit_breaker)     // counts real outcomes, never a fallback
//!     .timeout(per_attempt)
//!     .layer(bulkhead)
//!     .service(client)
//! ```
//!
//! - **Outside retry**: a fallback answers once retries gave up. Inside retry
//!   it would turn every failure into a success and nothing would be
//!   retried.
//! - **Outside the breaker**: the breaker must count the real failures to
//!   open; once open, its rejection is a failure the fallback answers at once
//!   (class `circuit-open`), which is the point of the pair: the dependency
//!   is shielded and callers still get an answer.
//! - **Inside a deadline layer** when the fallback must answer an expired
//!   deadline: the deadline error comes from below it. (A deadline layer
//!   *below* the fallback, or the retry's deadline, raises it there.)
//!
//! # Clone
//!
//! The layer owns its state (the answer, the classifier, the counters, the
//! metric handles, the listeners) in an `Arc`: cloning the layer or a
//! service it built does not create new state, and a registry shares the
//! counters by name. A service's `Clone` clones the inner service and does
//! not carry a readiness failure waiting for its call.
//!
//! # Backpressure
//!
//! `poll_ready` is the inner service's. When it fails with an error the
//! layer answers (a bulkhead that refuses in `poll_ready`), the layer
//! reports ready and the next call is answered by the fallback without
//! reaching the inner service; any other readiness error is returned. A
//! [`service`](FallbackBuilder::service) fallback is driven to readiness
//! inside the answer (`oneshot`): it never holds up calls that succeed.
//! Dropping the response future drops the call below or the fallback's
//! answer in flight.
//!
//! # Errors
//!
//! The error type is [`BoxError`](palisade_core::BoxError): a failure the
//! layer does not answer, boxed and otherwise unchanged; or
//! [`FallbackFailed`] when the fallback's answer failed too (its source is
//! the fallback's error). A fallback that answers never fails: values and
//! closures cannot.
//!
//! # Metrics
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `palisade_fallback_served_total` | `name`, `class` | failed calls answered by the fallback |
//! | `palisade_fallback_failed_total` | `name`, `class` | failed calls whose fallback failed too |
//!
//! # Events
//!
//! tracing, target `palisade_fallback`, at `debug`: each answer (`name`,
//! `class`) and each failed answer (with the error). Listeners added with
//! [`on_event`](FallbackBuilder::on_event) receive [`FallbackEvent`]s.
//!
//! # Why a fallback layer
//!
//! A breaker or a bulkhead protects the dependency by refusing calls; a
//! fallback decides what the caller gets instead: a default, a cached or
//! stale answer, a degraded mode. Answering a refusal rather than surfacing
//! it keeps an optional feature (recommendations, reviews) from failing the
//! page that shows it. Resilience4j and Polly pair every breaker with one;
//! tower has none.
//!
//! Where it goes beyond tower-resilience's fallback:
//!
//! - **Classes, not predicates only**: rejections are told apart (open
//!   breaker, full bulkhead, rate limited) and found through any wrapping,
//!   so "answer when the breaker is open, not when the request was bad" is
//!   one line.
//! - **Marked and counted**: the answer says it is a fallback (a header over
//!   HTTP) and every answer is counted by class, so a dashboard shows how
//!   much of the traffic is degraded.
//! - **No lock and no boxed future**: tower-resilience keeps its backup
//!   service behind a shared `futures::lock::Mutex` and boxes its future;
//!   here the fallback service is cloned and driven with `oneshot`, and the
//!   response future is a named, unboxed state machine.
#![cfg_attr(docsrs, feature(doc_cfg))]

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
mod service;
mod settings;
mod shared;
mod source;
mod state;

pub use builder::{CloneRequest, FallbackBuilder};
pub use error::FallbackFailed;
pub use event::FallbackEvent;
pub use handle::{ClassCount, FallbackHandle, FallbackSnapshot};
pub use layer::FallbackLayer;
pub use palisade_core::{BulkheadFull, CircuitOpen, DeadlineExpired, RateLimited};
pub use service::Fallback;
pub use settings::{FallbackClass, FallbackClasses, FallbackSettings};
pub use source::{
    Answer, Cause, Custom, FromFn, FromService, Mark, NoFallback, Plain, ServiceAnswer, Source,
    Value,
};
