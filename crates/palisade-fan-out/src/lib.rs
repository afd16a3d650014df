//! Scatter-gather for tower services: call many branches concurrently, merge, and return partial results.
//!
//! A [`FanOut`] is the aggregator pattern as a tower [`Service`](tower_service::Service): it
//! takes one request, builds a request for each of its named [`Branch`]es, calls them all at
//! once and merges their answers into one response. A dashboard that needs the user, their
//! orders, products, reviews, rewards and notifications answers in the time of the slowest
//! branch (150 ms in the seed's example) instead of their sum (580 ms).
//!
//! - **Branches.** Each has a name, its own service with its own stack (its own breaker, retry
//!   and bulkhead), a mapping from the incoming request to its request, an optional
//!   [`timeout`](Branch::timeout), [`required`](Branch::required) or optional (the default),
//!   and an optional [`fallback`](Branch::fallback) value.
//! - **Deadline.** [`deadline`](FanOutBuilder::deadline) bounds the whole gather: when it
//!   elapses, optional branches still pending count as failed and the answer holds what
//!   completed.
//! - **Partial results.** An optional branch that fails leaves the answer incomplete, with a
//!   machine-readable account of what is missing and why (the `errors` object of a JSON
//!   answer; `X-Palisade-Completed: false` and `Cache-Control: no-store` over HTTP). A required
//!   branch that fails fails the gather at once and cancels every other call. When nothing
//!   succeeds the gather is an error ([`NothingSucceeded`]), never an empty answer.
//! - **Merges.** [`JsonMerge::keyed`] (the default: one key per branch),
//!   [`JsonMerge::flatten`] (one object; the branch declared first wins a shared field), or
//!   any function of the [`Gathered`] results ([`merge_fn`](FanOutBuilder::merge_fn)).
//! - **Readiness** without head-of-line blocking, an optional cap on branches in flight
//!   ([`max_in_flight`](FanOutBuilder::max_in_flight)), a tracing span per gather and per
//!   branch, and metrics per branch and per gather.
//! - **HTTP** (feature `http`, module [`http`]): path templates filled from the incoming
//!   route's parameters and query, method and chosen headers forwarded, branch bodies read as
//!   JSON with a size limit, and [`http::JsonResponse`], which answers `200` (complete or
//!   partial) or a problem+json error and never fails, so the fan-out is an axum route as it is.
//! - **Settings as data.** The deadline and the in-flight cap are a [`FanOutSettings`], each
//!   branch's `required` and `timeout` a [`BranchSettings`]: plain data with a side-effect-free
//!   `validate`, read from a config file with the `serde` feature (`deadline = "500ms"`).
//!   [`FanOut::handle`] gives a [`FanOutHandle`] whose [`snapshot`](FanOutHandle::snapshot) an
//!   admin API can list and serialize.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use palisade_core::BoxError;
//! use palisade_fan_out::{Branch, FanOut};
//! use serde_json::{json, Value};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! // Stand-in for the clients of three services: user and order answer in 80
//! // and 120 ms, reviews hangs.
//! async fn call(service: &'static str, user: u64) -> Result<Value, BoxError> {
//!     let ms = match service {
//!         "user" => 80,
//!         "order" => 120,
//!         _ => 10_000,
//!     };
//!     tokio::time::sleep(Duration::from_millis(ms)).await;
//!     Ok(json!({ "from": service, "user": user }))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // Every branch is its own stack (here a concurrency limit per downstream;
//! // in a gateway its breaker, retry and bulkhead), of one type.
//! let branch = |name: &'static str| {
//!     let stack = ServiceBuilder::new()
//!         .concurrency_limit(32)
//!         .service_fn(move |user: u64| call(name, user));
//!     Branch::new(name, stack, |user: &u64| *user)
//! };
//! let dashboard = FanOut::builder("dashboard")
//!     .deadline(Duration::from_millis(300))
//!     .branch(branch("user").required())
//!     .branch(branch("order").required())
//!     .branch(branch("review").timeout(Duration::from_millis(100)))
//!     .build()?;
//!
//! // Around the whole fan-out: a bound on gathers in flight.
//! let mut service = ServiceBuilder::new().concurrency_limit(1024).service(dashboard);
//!
//! let start = tokio::time::Instant::now();
//! let merged = service.ready().await?.call(12345).await?;
//! assert_eq!(start.elapsed(), Duration::from_millis(120)); // the slowest branch that answered
//! assert_eq!(merged["user"], json!({ "from": "user", "user": 12345 }));
//! assert_eq!(merged["order"]["from"], "order");
//! assert_eq!(merged["errors"]["review"]["reason"], "timeout");
//! # Ok(())
//! # }
//! ```
//!
//! The HTTP version (feature `http`) is in the [`http`] module's docs: the gateway's
//! `GET /api/dashboard/user/{id}` over six services, mounted as an axum route.
//!
//! # Ordering
//!
//! A fan-out sits **above** its branches' stacks: each branch carries its own resilience
//! stack (retry outside its breaker, per-attempt timeout, bulkhead innermost, as in
//! `docs/ARCHITECTURE.md`), so one failing downstream trips only its own breaker and the
//! others keep answering. Over HTTP, put [`http::ParseJsonLayer`] outermost in each branch
//! stack so the breaker and retry inside it see the HTTP status.
//!
//! The branch [`timeout`](Branch::timeout) is the fan-out's own and covers everything the
//! branch does: waiting to become ready, retries and reading the body. The
//! [`deadline`](FanOutBuilder::deadline) covers the whole gather. Around the fan-out, add what
//! bounds gathers as a whole: a bulkhead or concurrency limit (each gather calls every
//! branch), and a load shed if callers must not wait (see Backpressure). A retry around a
//! fan-out repeats every branch; prefer retries inside the branches that need them.
//!
//! # Clone
//!
//! Cloning a [`FanOut`] is one reference-count increment: the branches, their configuration,
//! the merge and the metric handles are built once and shared by every clone. Each gather
//! calls a clone of each branch's service, so the branch stacks' own state (a breaker's
//! window, a bulkhead's permits, a retry budget) is shared by every gather and every clone of
//! the fan-out, as the branch layers promise. Cloning the fan-out never creates new state;
//! building another fan-out from the same branch services shares their state too.
//!
//! # Backpressure
//!
//! [`FanOut::poll_ready`](tower_service::Service::poll_ready) is always ready and reserves
//! nothing. Each branch is driven to readiness inside the gather, on a clone of its service,
//! only when the branch is about to be called (after the in-flight cap admits it), and that
//! clone is called exactly once (tower's `oneshot` pattern). So:
//!
//! - one branch slow to become ready never holds up the others: they are called at once, and
//!   the slow one's wait counts against its own timeout (there is no head-of-line blocking,
//!   unlike a service that needs every child ready before it is ready itself, as tower's
//!   `Steer` documents);
//! - no capacity is reserved for a call that never happens: a branch's bulkhead permit or
//!   half-open probe is taken by its own `poll_ready` right before its call, and released with
//!   that call (style guide traps 2 and 10);
//! - dropping the fan-out before `call` releases nothing because nothing was taken.
//!
//! The cost of that choice is that the fan-out itself never says "not ready": a caller is not
//! slowed down when branches are saturated; their bulkheads reject or queue instead. Bound
//! gathers with a concurrency limit or bulkhead around the fan-out, and add a load shed if
//! callers must fail fast.
//!
//! # Errors
//!
//! A branch failure is never the fan-out's error by itself: it becomes a [`BranchError`]
//! (its [`kind`](BranchError::kind): `timeout`, `deadline`, `rejected`, `status`,
//! `invalid_response`, `request` or `failed`) in the account of what is missing. The gather
//! fails with:
//!
//! | error | when | HTTP ([`http::JsonResponse`]) |
//! |---|---|---|
//! | [`RequiredBranchFailed`] | a required branch without a fallback failed; the others are cancelled at once | 504 if it timed out, 503 (+ `Retry-After`) if rejected, 400 if its request could not be built from the incoming one, the branch's own 4xx if it answered one (but 407, 408, 421: 502; 429: 503), else 502 |
//! | [`DeadlineElapsed`] | the deadline elapsed with a required branch pending | 504 |
//! | [`NothingSucceeded`] | every branch failed (fallbacks are not successes) | 502, or 504 if every branch timed out |
//!
//! Each wraps its cause through `source()` and is found with
//! [`palisade_core::is_caused_by`]. With the JSON merges the fan-out's error type is
//! [`BoxError`](palisade_core::BoxError) and the branch services' errors must be
//! `Into<BoxError>`; with [`http::JsonResponse`] failures are problem+json responses and the
//! error type is [`Infallible`](std::convert::Infallible); [`http::error_response`] maps the
//! same errors for other merges (in an axum `HandleErrorLayer`). A request that cannot be
//! built for a branch (a missing path parameter) fails that branch with reason `request`,
//! without calling it. Bad settings are refused by [`FanOutBuilder::build`] with a
//! [`ConfigError`](palisade_core::ConfigError) naming the setting.
//!
//! # Metrics
//!
//! Handles are resolved when the fan-out is built (one per branch and outcome), so a call
//! never formats a label. Every gather counts exactly one outcome per branch and one result.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `palisade_fan_out_branch_duration_seconds` | histogram | `name`, `branch`, `outcome` | latency of each branch call, from its start (readiness included) to its answer or cut-off; not recorded for branches that never started |
//! | `palisade_fan_out_branch_total` | counter | `name`, `branch`, `outcome` | branch calls by outcome: `success`, `timeout`, `deadline`, `rejected`, `status`, `invalid_response`, `request`, `failed`, `cancelled` |
//! | `palisade_fan_out_gathers_total` | counter | `name`, `result` | gathers: `complete`, `partial` (something missing or on its fallback), `failed`, `cancelled` (dropped by the caller) |
//! | `palisade_fan_out_gather_duration_seconds` | histogram | `name`, `result` | latency of whole gathers |
//!
//! `cancelled` counts calls dropped unfinished: when a required branch failed, or when the
//! caller dropped the gather. The completeness ratio is `complete / (complete + partial)`.
//!
//! # Events
//!
//! tracing, target `palisade_fan_out`:
//!
//! - span `fan_out` (`debug`) per gather, fields `name` and `result`; every branch call runs
//!   inside a child span `branch` (`debug`), fields `branch`, `outcome` and `latency_ms`,
//!   closed when the branch settles, so the branch stack's own events nest under it;
//! - event `fan-out branch failed` (`debug`): `branch`, `reason`, `error`;
//! - event `fan-out gather failed` (`debug`): `name`, `reason`, `error`.
//!
//! # Cost
//!
//! A gather makes **one allocation** for up to eight branches (one more per further eight):
//! the branch calls are pinned in place side by side, in a chunk of structurally pinned
//! fields, without a `Box::pin` per branch and without `unsafe` (`unsafe_code` is forbidden;
//! `futures_util`'s `join_all` pins a slice with `unsafe`, and `FuturesUnordered` allocates
//! per future). The gather keeps one timer, set to the earliest pending deadline and created
//! only when a gather has to wait (so timeouts and the deadline need tokio's time driver, as
//! tower's `Timeout` does, but only then); it reads the clock once per pass over its branches. Each
//! wake-up polls every unfinished branch, like `join!`. What a gather costs against a
//! hand-written `join!` of the same branches is measured in `docs/benchmarks.md` (the one
//! place for figures; design notes in `docs/benchmarks/fan-out.md`). A fan-out over services of different types boxes them at the
//! edge (`tower::util::BoxCloneSyncService`), which adds one boxed future per branch call.
//!
//! # Why
//!
//! Composing several backends into one answer is what API gateways do (KrakenD's merging
//! endpoints, Apollo Router's query plans, `docs/patterns/aggregator.md`), and what
//! hand-written handlers get subtly wrong: they wait for the slowest branch without a
//! deadline, fail the whole page when a decorative widget's service is down, return an empty
//! `200` when everything failed, let a cache keep a partial page, or block every branch on
//! the one that is not ready. No Rust crate offers scatter-gather as a tower `Service`; tower's
//! `Steer` routes to one child, and `join_all`/`FuturesUnordered` are building blocks without
//! timeouts, partiality, cancellation or accounting. This crate goes past the gateways it
//! learns from in a few places: required branches fail fast and cancel the rest (KrakenD waits
//! for the deadline), per-branch fallbacks chosen by the kind of failure, a flatten rule that
//! never depends on answer order (KrakenD's "the slowest backend would overwrite"), an
//! in-flight cap per gather, and an account whose reasons (`timeout`, `rejected`, `status`, ...)
//! are the same labels as its metrics.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to the `http` module, which exists with feature `http`
// (docs.rs builds with every feature); without it those links cannot resolve.
#![cfg_attr(not(feature = "http"), allow(rustdoc::broken_intra_doc_links))]

mod branch;
mod builder;
pub mod error;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod merge;
mod metrics;
mod service;
mod settings;
mod shared;
mod state;

pub use branch::Branch;
pub use builder::FanOutBuilder;
pub use error::{
    BranchError, BranchErrorKind, DeadlineElapsed, GatherError, NothingSucceeded,
    RequiredBranchFailed,
};
pub use handle::{BranchSnapshot, FanOutHandle, FanOutSnapshot};
pub use merge::{JsonMerge, Merge, MergeFn};
pub use service::FanOut;
pub use settings::{BranchSettings, FanOutSettings};
pub use shared::CarriedDeadline;
pub use state::{BranchResult, Gathered, IntoIter};
