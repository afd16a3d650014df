//! Deadlines that travel with HTTP and gRPC requests: set from a budget or the caller's `grpc-timeout`, enforced, and written onto outgoing requests.
//!
//! A [`DeadlineLayer`] gives each request a [`Deadline`]: the earliest of
//! the one it already carries (set by a layer further out), the one its
//! caller announced (`grpc-timeout`, or the [`x-palisade-timeout-ms`](http)
//! header), and the layer's own [`budget`](DeadlineBuilder::budget) from
//! now. It carries the deadline with the request as an extension, so every
//! layer below reads what is left ([`Deadline::of`]): a retry does not start
//! an attempt the deadline cannot fit, a per-try timeout is cut to what is
//! left, a fan-out branch gets what is left of the gather. It writes what is
//! left onto the request (`grpc-timeout` for gRPC, the header otherwise), so
//! the next service knows too. And when the deadline passes it drops the
//! call below and fails with [`DeadlineExpired`]: `504` over HTTP,
//! `DEADLINE_EXCEEDED` over gRPC.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade_core::{BoxError, Deadline, DeadlineExpired, is_caused_by};
//! use palisade_deadline::DeadlineLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let deadline = DeadlineLayer::builder("edge")
//!     .budget(Duration::from_millis(300))
//!     .build()?;
//!
//! // A downstream that reads what is left, then takes 50 ms or 1 s.
//! let svc = ServiceBuilder::new()
//!     .layer(deadline)
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let left = Deadline::of(&req).expect("carried").remaining();
//!         let header = req.headers()["x-palisade-timeout-ms"].clone();
//!         let slow = req.uri().path() == "/slow";
//!         tokio::time::sleep(Duration::from_millis(if slow { 1000 } else { 50 })).await;
//!         Ok::<_, BoxError>(format!("{left:?} {}", header.to_str()?))
//!     }));
//!
//! // The caller announced 120 ms: that wins over the 300 ms budget.
//! let req = http::Request::get("/fast").header("grpc-timeout", "120m").body(())?;
//! assert_eq!(svc.clone().oneshot(req).await?, "120ms 120");
//!
//! // The slow call is cut off when its 300 ms are up.
//! let start = tokio::time::Instant::now();
//! let err = svc.oneshot(http::Request::get("/slow").body(())?).await.unwrap_err();
//! assert!(is_caused_by::<DeadlineExpired>(&*err));
//! assert_eq!(start.elapsed(), Duration::from_millis(300));
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! Outermost, where a request enters the stack: everything below then sees
//! the deadline, and it bounds all of their work (retries, backoffs, waits
//! for a bulkhead permit).
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(problem_responses)   // or GrpcStatusLayer: DeadlineExpired → 504 / DEADLINE_EXCEEDED
//!     .layer(deadline)            // sets, carries, writes and enforces the deadline
//!     .layer(retry)               // no attempt the deadline cannot fit
//!     .layer(circuit_breaker)
//!     .timeout(per_attempt)       // or the retry's attempt_timeout, cut to what is left
//!     .layer(bulkhead)
//!     .service(client)
//! ```
//!
//! On a server the layer reads the caller's deadline from the request (under
//! tonic, with a [`header_offset`](DeadlineBuilder::header_offset) of a few
//! milliseconds: tonic's server enforces `grpc-timeout` itself and answers
//! `CANCELLED` if its timer fires first); on a
//! client stack below it, a second layer (often with `enforce(false)`, the
//! outer one already enforcing) writes what is left onto the outgoing
//! request. Between the two, the application copies the deadline from the
//! incoming request to the outgoing one (`Deadline::of(&incoming)` then
//! [`Deadline::set_on`]`(&mut outgoing)`; a tonic handler finds it in
//! `request.extensions()`).
//!
//! # Clone
//!
//! The layer owns its state (settings, metric handles, listeners, expiry
//! counters) in an `Arc`: cloning the layer or a service it built does not
//! create new state. A service's `Clone` clones the inner service.
//!
//! # Backpressure
//!
//! `poll_ready` is the inner service's: the layer reserves nothing and never
//! returns `Pending` of its own. The deadline starts when `call` is made: time
//! spent waiting for readiness before it is the caller's to bound (put the
//! layer above the layers that wait, such as a bulkhead with a queue, so
//! their waits happen inside the call). A request that arrives with no time
//! left fails at once and the inner service is not called (its readiness
//! stays with the service for the next call). Dropping the response future
//! drops the call below and the timer.
//!
//! # Errors
//!
//! The error type is [`BoxError`](palisade_core::BoxError): the inner error,
//! boxed and otherwise unchanged, or [`DeadlineExpired`] (with the budget the
//! request had on arrival) when the deadline passes, after the call below was
//! dropped, or on arrival. An error from below that arrives once the
//! deadline has passed (a timer of the call's own that fired in the same
//! instant, as tonic's channel keeps one for `grpc-timeout`) is reported as
//! [`DeadlineExpired`] too, with that error as its source. Over HTTP it answers `504 Gateway Timeout`
//! problem+json ([`http::to_problem`], and built into palisade-core's
//! `ProblemResponseLayer`); over gRPC, `DEADLINE_EXCEEDED` (built into
//! palisade-core's `GrpcStatusLayer`). With [`enforce(false)`](DeadlineBuilder::enforce)
//! the layer adds no error.
//!
//! The deadline covers the response future, not the streaming of the response
//! body after it (as tower's `Timeout`); tower-http's body deadlines cover
//! that.
//!
//! # Metrics
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `palisade_deadline_expired_total` | `name`, `when` = `arrival` \| `in_flight` | calls whose deadline passed |
//! | `palisade_deadline_budget_seconds` | `name` | histogram of the time requests had left on arrival |
//!
//! # Events
//!
//! tracing, target `palisade_deadline`: each expiry at `debug`, with `name`,
//! `budget_ms` and `on_arrival`. Listeners added with
//! [`on_event`](DeadlineBuilder::on_event) receive
//! [`DeadlineEvent::Expired`]. [`DeadlineHandle::snapshot`] counts expiries
//! for dashboards.
//!
//! # Why deadlines, not only timeouts
//!
//! A timeout is local: each hop waits its own 2 s, so a request that has
//! already spent 1.9 s upstream is given 2 s more by every hop below, which
//! keeps working long after the caller gave up. A deadline is the caller's:
//! every hop sees what is left and stops when nobody waits any more, so no
//! retry, no backoff and no downstream call is spent on an answer nobody will
//! read. gRPC propagates deadlines (`grpc-timeout`); Finagle carries one in
//! its broadcast context; Envoy and Linkerd carry request timeouts in
//! headers.
//!
//! Where it goes beyond the peers:
//!
//! - **tower's `Timeout`** is a static duration per layer: it knows nothing
//!   of the caller's deadline (tower#798), reads no header and tells nothing
//!   to the next service. This layer honours `grpc-timeout` and an HTTP
//!   header, writes what is left, and lets every layer below read it.
//! - **No timer for an answer that is ready at once**: the timer is created
//!   on the call's first `Pending`, where tower's `Timeout` creates one per
//!   call (see `docs/benchmarks.md` for the cost side by side).
//! - **tower-resilience** has no deadline propagation at all.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod event;
pub mod future;
mod handle;
pub mod http;
mod layer;
mod metrics;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::DeadlineBuilder;
pub use event::DeadlineEvent;
pub use handle::{DeadlineHandle, DeadlineSnapshot};
pub use layer::DeadlineLayer;
pub use palisade_core::{Deadline, DeadlineExpired};
pub use service::DeadlineService;
pub use settings::{DeadlineSettings, MAX_BUDGET};
