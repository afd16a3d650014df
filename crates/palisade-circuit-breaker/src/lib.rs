//! A circuit breaker for tower services: count and time windows, slow calls,
//! half-open probes, runtime control.
//!
//! A breaker watches the outcomes of the calls to one downstream. While the
//! downstream is healthy it is *closed* and every call passes. When the
//! failures (or slow calls) in its window reach a threshold it *opens*: calls
//! fail at once with [`CircuitOpen`] instead of adding load to a service that
//! is already failing, and callers learn how long to wait. After the wait it
//! is *half-open*: a fixed number of probe calls pass, and their outcome
//! closes it again or re-opens it. The state machine, its diagram and its
//! transition table are in `docs/patterns/circuit-breaker.md`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitOpen, State};
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::builder("inventory")
//!     .count_window(20)
//!     .minimum_calls(10)
//!     .failure_rate_threshold(50.0)
//!     .wait_in_open(Duration::from_secs(5))
//!     .build()
//!     .expect("valid settings");
//! let handle = breaker.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|n: u32| async move {
//!         if n % 2 == 0 { Ok(n) } else { Err(BoxError::from("backend failed")) }
//!     }));
//!
//! // Ten calls, half of them failing: the breaker opens.
//! for n in 0..10 {
//!     let _ = svc.clone().oneshot(n).await;
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // The next call is rejected at once, without reaching the backend.
//! let err = svc.clone().oneshot(2).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("a rejection");
//! assert_eq!(open.name(), "inventory");
//! assert!(open.retry_after().unwrap() <= Duration::from_secs(5));
//! # }
//! ```
//!
//! Every setting that is plain data is a field of [`CircuitBreakerSettings`]
//! (defaults, bounds, a `validate` with no side effect), which the builder
//! takes whole with [`settings`](CircuitBreakerBuilder::settings) and, with the
//! `serde` feature, reads from a config file (`wait_in_open = "5s"`,
//! `sliding_window = { count = 20 }`). The name, the classifier, the listeners
//! and a registry are code, given to the builder. With `serde`, a
//! [`CircuitBreakerSnapshot`] serializes as it is (state, figures and the
//! effective settings) for an admin API.
//!
//! # Ordering
//!
//! Put the breaker **inside retry** and **outside the per-attempt timeout**:
//!
//! ```text
//! retry → circuit breaker → timeout → bulkhead → service
//! ```
//!
//! - Inside retry, each attempt is judged on its own and a rejection stops
//!   the retries: a [`CircuitOpen`] is a rejection
//!   ([`palisade_core::is_rejection`]) and Palisade's retry never retries one.
//!   A breaker outside retry would see one outcome per request and learn of a
//!   failing downstream only after every retry was spent.
//! - Outside the timeout, a timed-out attempt reaches the breaker as an error
//!   and counts as a failure (the timeout also bounds slow probes).
//! - Outside the bulkhead, a rejected call never takes a bulkhead permit. If
//!   you want a full bulkhead not to count as a failure of the downstream,
//!   classify [`palisade_core::BulkheadFull`] as [`Outcome::Ignored`].
//!
//! In `ServiceBuilder` the first layer added is the outermost.
//!
//! # Clone
//!
//! The breaker (its window, state and probes) is created once by the layer's
//! builder and shared through an `Arc` by every service the layer builds:
//! cloning the layer or the service does not create new state, and calling
//! `layer()` many times (axum does it once per route) gives services over the
//! same breaker. Build one layer per downstream, or build it with a
//! [`Registry`] ([`registry`](CircuitBreakerBuilder::registry)): every build
//! under one name shares the first one's breaker.
//!
//! Readiness is not shared: a cloned service starts unready and holds no
//! probe permit, whatever its original held.
//!
//! # Backpressure
//!
//! The breaker fails fast; it never makes a caller wait. `poll_ready` decides
//! the fate of the next call:
//!
//! - **Closed, MetricsOnly, Disabled**: it reserves nothing and returns the
//!   inner service's readiness (`Pending` from the inner service is passed on,
//!   and the breaker decides afresh on the next poll).
//! - **Open, ForcedOpen**: it returns `Ready(Ok(()))` *without polling the
//!   inner service*, and the next `call` returns a future that fails at once
//!   with [`CircuitOpen`]. The rejection comes from the future, not from
//!   `poll_ready`, because tower's `Buffer` treats an error from `poll_ready`
//!   as fatal, and so that an inner `Buffer` never reserves a slot for a call
//!   that will not reach it.
//! - **HalfOpen**: it takes one of the N probe permits, then polls the inner
//!   service (the permit is kept while the inner service is `Pending`). With
//!   no permit left the call is rejected as above. The permit moves into the
//!   response future on `call`, and is given back if the service is dropped
//!   before `call`, if the future is dropped before it completes, or if the
//!   outcome is [`Outcome::Ignored`].
//!
//! Polling again after `Ready` reserves nothing more. `call` checks the
//! decision once more (one atomic load): a call admitted while Closed that
//! reaches `call` after the breaker opened is rejected there, so no call
//! reaches the inner service while the breaker is open. `call` without a
//! successful `poll_ready` panics, as tower services do.
//!
//! Nothing is locked on any path: the state is one atomic word and the
//! windows are lock-free. A call through a closed breaker costs one atomic
//! load in `poll_ready`, one in `call`, a reference-count increment and
//! decrement on a per-thread stripe (so threads do not contend on one
//! counter), and for a count window one `fetch_add` and one load when it
//! completes (a time window: a clock read and two `fetch_add`s). No
//! allocation, no boxing, no clock read unless a time window, slow-call
//! detection or an outcome listener needs one.
//!
//! # Spawning
//!
//! `tokio::spawn(async move { svc.ready().await?.call(req).await })` can fail
//! to compile with "implementation of `FnOnce` is not general enough" (or of
//! `From`) when the request or error type holds a lifetime, `BoxError`'s
//! `'static` included. The cause is rustc (rust-lang/rust#110338), not a bound
//! of this layer that could be loosened: in what an `async` block keeps across
//! an `.await`, rustc forgets the lifetimes, then must prove the service's
//! bounds (`S::Error: Into<BoxError>`, `C: Classify<S::Response, S::Error>`,
//! `service_fn`'s `FnMut(Req)`) for every lifetime, which it cannot. tower's
//! own `Timeout` fails the same way. What compiles:
//!
//! - spawn the call's future itself rather than an `async` block around it:
//!   `tokio::spawn(svc.oneshot(req))`;
//! - or box the service first (`tower::util::BoxCloneSyncService`), whose
//!   future is a `Pin<Box<dyn Future + Send>>`, and hold that in the block;
//! - or use request and error types without lifetimes (`u32`,
//!   `std::io::Error`, an error enum of your own).
//!
//! A closure classifier needs the `&` of its parameter written out,
//! `|result: &Result<_, _>| ...`: without it rustc infers one lifetime instead
//! of every lifetime, and the closure is no
//! [`Classify`] (`Fn(&Result<T, E>) -> Outcome`) anywhere.
//!
//! ```
//! use palisade_circuit_breaker::{BoxError, CircuitBreakerLayer, Outcome};
//! use tower::util::BoxCloneSyncService;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::builder("search")
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
//! [`CircuitBreaker`] returns `BoxError`: the inner service's errors, converted
//! unchanged, and [`CircuitOpen`] (from `palisade-core`, re-exported here) for
//! a rejected call. [`CircuitOpen::retry_after`] is the time until the next
//! probe is admitted when the breaker is open, `None` when it is forced open
//! or its half-open probes are all taken. Find it behind other layers' wrappers
//! with [`palisade_core::is_rejection`] or
//! [`palisade_core::cause_ref`]`::<CircuitOpen>`.
//!
//! With the `http` feature a rejection maps to `503 Service Unavailable` with
//! `Retry-After` (seconds, rounded up) and an `x-palisade-circuit-breaker`
//! header naming the breaker (see the `http` module):
//! `CircuitBreakerLayer::http_layer` answers with that response directly and
//! keeps the inner error type (an axum app stays `Infallible`), and
//! `palisade_core::http::rejection_response` builds it in a `HandleErrorLayer`.
//!
//! Which outcomes count as failures is the classifier's call
//! ([`Classify`], default [`ErrorsAsFailures`]; with `http`,
//! `StatusClassifier::server_errors()` counts 5xx and transport errors, not
//! 4xx). An [`Outcome::Ignored`] call is not recorded at all.
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, every series
//! labelled `name` (the breaker's name). Handles are resolved when the breaker
//! is built, so install the recorder first.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_circuit_breaker_calls_total` | counter | `outcome` = `success`, `failure`, `ignored` | admitted calls that completed (not in `Disabled`) |
//! | `palisade_circuit_breaker_not_permitted_calls_total` | counter | | rejected calls |
//! | `palisade_circuit_breaker_slow_calls_total` | counter | | calls that took at least the slow-call duration |
//! | `palisade_circuit_breaker_state` | gauge | `state` = `closed`, `open`, `half_open`, `disabled`, `metrics_only`, `forced_open` | 1 for the current state, 0 for the others |
//! | `palisade_circuit_breaker_failure_rate` | gauge | | failure rate over the window, percent |
//! | `palisade_circuit_breaker_slow_call_rate` | gauge | | slow-call rate over the window, percent |
//! | `palisade_circuit_breaker_transitions_total` | counter | `from`, `to` (state labels) | state transitions |
//!
//! The rate gauges follow the window: a count window publishes whenever its
//! figures change, a time window on every failure or slow call and at least
//! once a second while calls flow.
//!
//! # Events
//!
//! - Tracing (target `palisade_circuit_breaker`, field `name`): a transition
//!   to Open or ForcedOpen at `warn`, any other transition at `info` (with the
//!   reason and the figures that decided it), a rejected call at `debug`.
//! - Listeners registered on the builder with
//!   [`on_event`](CircuitBreakerBuilder::on_event) receive every
//!   [`CircuitBreakerEvent`]: [`StateTransition`] (exactly once per
//!   transition), [`CallNotPermitted`] and [`CallOutcome`] (once per
//!   completed call, so with a listener calls are timed). An event is only
//!   built when someone listens: without listeners nothing is allocated or
//!   timed per call.
//! - The [`CircuitBreakerHandle`] reads the state and a
//!   [`CircuitBreakerSnapshot`] of the figures at any time, and switches the
//!   manual states: [`disable`](CircuitBreakerHandle::disable),
//!   [`metrics_only`](CircuitBreakerHandle::metrics_only),
//!   [`force_open`](CircuitBreakerHandle::force_open),
//!   [`open_for`](CircuitBreakerHandle::open_for),
//!   [`half_open`](CircuitBreakerHandle::half_open),
//!   [`reset`](CircuitBreakerHandle::reset).
//!
//! # Why a circuit breaker
//!
//! A downstream that fails or hangs turns every call into wasted work: threads
//! and connections wait on it, retries multiply its load, and its slowness
//! spreads to every caller (cascading failure). A breaker cuts the loop: after
//! enough evidence that the downstream is unwell it stops calling it for a
//! while, answers at once with an error the caller can act on (a fallback, a
//! cached value, a 503 with `Retry-After`), and lets a few probes find out when
//! it has recovered.
//!
//! ## How this one differs from its peers
//!
//! tower 0.5 ships no breaker. tower-resilience 0.13 and Resilience4j are the
//! references; this crate keeps Resilience4j's model (its states, settings and
//! defaults where they make sense) and fixes what the Rust peer gets wrong:
//!
//! - **A real window.** The count window is exactly the last N outcomes, a
//!   ring. tower-resilience's counters only reset on a transition, so after
//!   10 000 successes a window of 100 at 50 % needs 10 000 failures to open;
//!   here it opens within 100. The time window is one-second buckets with
//!   running totals: O(1) per call at any call rate, where tower-resilience
//!   scans every recorded call (O(n) per call).
//! - **A lock-free hot path.** No mutex anywhere, no boxed future, no
//!   allocation per call, and no event built when nobody listens;
//!   tower-resilience locks an async mutex twice per call and boxes every
//!   future. A time window costs the same per call whether it holds 1 000
//!   or 1 000 000 calls. The figures, side by side with tower's layers and
//!   tower-resilience on one thread and under contention, are in
//!   `docs/benchmarks.md` (and only there, so they cannot go stale here).
//! - **Shared by construction.** State lives in the layer: every `layer()`
//!   call and clone shares one breaker, where a breaker rebuilt per axum
//!   route could never open.
//! - **Exact half-open.** Exactly N probes, permits that come back when a
//!   call is cancelled or ignored, a decision as soon as the outcome is
//!   certain, and a maximum wait so the breaker is never stuck half-open.
//!   Each transition is performed by exactly one caller (one CAS), and a call
//!   admitted before a transition is never counted against the state after it.
//! - **More ways to judge**: failure rate, slow-call rate, consecutive
//!   failures (alone or together), a minimum number of calls, an open wait
//!   that grows with jitter on repeated trips, manual states including
//!   MetricsOnly (a shadow mode), a registry, metrics and listeners.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod event;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod kind;
mod layer;
#[cfg(all(test, loom))]
mod loom_tests;
mod metrics;
mod service;
mod settings;
mod shared;
mod state;
mod sync;

pub use builder::CircuitBreakerBuilder;
pub use event::{CallNotPermitted, CallOutcome, CircuitBreakerEvent, StateTransition};
pub use handle::{CircuitBreakerHandle, CircuitBreakerSnapshot, HalfOpenProbes};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use settings::{
    CircuitBreakerSettings, ConfigSummary, DEFAULT_MINIMUM_CALLS,
    DEFAULT_TIME_WINDOW_MINIMUM_CALLS, MAX_DURATION, SlidingWindow,
};
pub use state::{State, TransitionReason};

pub use palisade_core::{BoxError, CircuitOpen, Classify, ErrorsAsFailures, Outcome, Registry};
