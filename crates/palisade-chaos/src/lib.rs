//! Fault injection for tower services: latency, errors, aborts and outages at
//! a rate, seedable, and switchable at runtime through a [`ChaosHandle`].
//!
//! Put a [`ChaosLayer`] in front of a dependency (a demo backend, a client in
//! a staging build) to watch the timeouts, retries, breakers and bulkheads
//! above it react, the way Polly's Simmy strategies and Envoy's fault filter
//! do.
//!
//! What is injected is a [`ChaosSettings`]: plain data, the builder's setters
//! named after its fields, readable from a config file with the `serde`
//! feature (durations as `"250ms"`), and switchable at runtime through the
//! handle. [`ChaosHandle::snapshot`] gives the name, the seed, the settings
//! now and the counts of what was injected, for an admin API; a
//! [`Registry<ChaosHandle>`](Registry) given to [`ChaosBuilder::registry`]
//! keeps one state per name.
//!
//! # Example
//!
//! ```
//! use palisade_chaos::ChaosLayer;
//! use palisade_core::{is_caused_by, BoxError};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let chaos = ChaosLayer::builder("orders")
//!     .seed(7)
//!     .latency(Duration::from_millis(100))
//!     .latency_rate(1.0)
//!     .build()
//!     .expect("valid settings");
//! let handle = chaos.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(chaos)
//!     .service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 2) });
//!
//! // Every call is delayed by exactly 100 ms.
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.clone().oneshot(21).await.unwrap(), 42);
//! assert_eq!(start.elapsed(), Duration::from_millis(100));
//!
//! // Switch an outage on at runtime: every call fails, at once.
//! handle.set_outage(true);
//! let err = svc.clone().oneshot(1).await.unwrap_err();
//! assert!(is_caused_by::<palisade_chaos::InjectedFault>(&*err));
//! handle.reset();
//! assert_eq!(svc.oneshot(2).await.unwrap(), 4);
//! # }
//! ```
//!
//! # What is injected
//!
//! | fault | setting | what the caller sees | inner service called |
//! |---|---|---|---|
//! | latency | `latency` or `latency_range`, `latency_rate` | the call proceeds after the delay | yes, its future polled after the delay |
//! | error | `error_rate` | the [`Injector`]'s result: an error, or a status response (`http`) | no |
//! | abort | `abort_rate` | a future that never resolves | no |
//! | outage | `outage` on | every call fails at once, like an error | no |
//!
//! Latency is drawn first and may combine with an error or an abort (a slow
//! failure). An outage ignores the rates and adds no latency. `enabled =
//! false` turns everything off, outage included.
//!
//! **Abort, at the tower level**, is a response future that never
//! completes: nothing is sent to the inner service and nothing answers. The
//! caller's timeout (tower's `Timeout`, the gateway's per-upstream timeout)
//! turns it into its own error; dropping the future cancels it cleanly. Put
//! in an HTTP server, the connection stays open with no response until the
//! client gives up: a hung backend, not a reset connection.
//!
//! # Determinism
//!
//! Every call takes the next index of one sequence shared by the layer and
//! all its clones; its decision is a pure function of the seed, the index and
//! the settings ([`ChaosBuilder::seed`]). A test that makes its calls in a
//! known order sees the same faults on every run. Without a seed one is drawn
//! at random ([`ChaosHandle::seed`] tells which).
//!
//! # Ordering
//!
//! Innermost, right above the dependency it simulates (Polly's advice): the
//! layers above it (timeout, retry, breaker, bulkhead) should react to its
//! faults exactly as they would to real ones.
//!
//! ```text
//! timeout → retry → circuit breaker → bulkhead → chaos → client
//! ```
//!
//! Above a timeout, a delay would be added outside the timeout and never
//! trip it; above a breaker, injected errors would never be counted.
//!
//! # Clone
//!
//! The layer owns the state (settings, sequence index, counters) in an
//! `Arc`. Cloning the layer or a service, or calling `layer()` again, does
//! not create new state: one handle switches them all, and they all draw from
//! one sequence. The injector is cloned. Layers built under one name through
//! one registry ([`ChaosBuilder::registry`]) share one state too, each with
//! its own injector.
//!
//! # Backpressure
//!
//! `poll_ready` is the inner service's `poll_ready`; chaos reserves nothing
//! and never returns `Pending` of its own. When a call is failed or aborted
//! the inner service is not called, so the readiness it granted stays with it
//! and serves its next call (tower's contract allows a ready service to be
//! left uncalled). A delayed call has already called the inner service: a
//! permit the inner service took in `poll_ready` is held through the delay.
//!
//! # Errors
//!
//! The service keeps the inner service's error type. An injected error or
//! outage is whatever the [`Injector`] returns:
//!
//! - [`InjectError`] (default): `Err(E::from(InjectedFault))`, for `BoxError`
//!   services or any error with `From<InjectedFault>`;
//! - [`ErrorWith`] (`ChaosLayer::error_with`): `Err(your_closure(&fault))`;
//! - `http::InjectStatus` (feature `http`): `Ok(response)` with the chosen
//!   status (500 by default, 503 for a "service unavailable" simulation) and
//!   an `application/problem+json` body, so axum services stay `Infallible`.
//!
//! # Metrics
//!
//! Resolved once when the layer is built (install the recorder first).
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_chaos_injected_total` | counter | `name`, `kind` = `latency`, `error`, `abort`, `outage` | faults injected |
//!
//! The same counts are on [`ChaosHandle::injected`].
//!
//! # Events
//!
//! `tracing`, target `palisade_chaos`, field `name`: each injected fault at
//! `debug`; each change through the handle at `info` (`warn` when an outage
//! is switched on).
//!
//! # Why, and beyond the peers
//!
//! Resilience code that never sees a failure is untested. tower has no fault
//! injection; tower-resilience's chaos layer has error and latency rates and
//! a seed, but its settings are fixed at build time, it has no abort or
//! outage, and its state is per service. Here:
//!
//! - runtime switching through a handle shared by every clone (an admin API
//!   can break a backend and mend it);
//! - abort (hang) and outage (fail everything) besides error and latency, and
//!   a delay that can combine with a fault, as in Envoy;
//! - a counter-based sequence, so determinism holds across clones and
//!   threads, not only for one service instance;
//! - no lock and no allocation on a passing call: settings are atomics, the
//!   delay is a pinned `Sleep` inside the named response future. A disabled
//!   layer costs one relaxed atomic load.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
pub mod error;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod inject;
mod layer;
mod metrics;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::ChaosBuilder;
pub use error::InjectedFault;
pub use handle::{ChaosHandle, ChaosSnapshot, InjectedCounts};
pub use inject::{ErrorWith, InjectError, Injector};
pub use layer::ChaosLayer;
pub use palisade_core::Registry;
pub use service::Chaos;
pub use settings::ChaosSettings;
