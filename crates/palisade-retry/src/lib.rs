//! Retries for tower services: backoff with jitter, a shared retry budget, Retry-After, replayable HTTP requests.
//!
//! [`RetryLayer`] retries calls whose outcome the classifier calls a failure,
//! waiting a [`Backoff`] (fixed, exponential or decorrelated, with full or
//! equal [`Jitter`]) between attempts, for at most
//! [`max_attempts`](RetryBuilder::max_attempts), within an optional overall
//! [`deadline`](RetryBuilder::deadline), each attempt bounded by an optional
//! [`attempt_timeout`](RetryBuilder::attempt_timeout). Every retry draws from
//! a [`RetryBudget`] (20 % of requests plus 10 per second by default) shared
//! by everything the layer builds, so that against a downstream that fails
//! everything, the attempts of `T` seconds number at most
//! `(1 + retry_ratio) × requests + min_retries_per_sec × T` instead of
//! `max_attempts × requests` (`T` counts the seconds of the budget's clock the
//! run touches; see [`budget`]). With the defaults that is 1.2 times the
//! requests plus 10 attempts a second: the load is at most `1.2 + 10 / rate`
//! times the usual one, which approaches 1.2× only when the request rate is
//! well above the floor (1.21× at 1 000 requests a second, 1.25× at 200, 1.3×
//! at 100, 1.4× at 50; a slower client is bounded by `max_attempts` first).
//! Rejections (an open circuit breaker or a full bulkhead further down) are
//! never retried.
//!
//! With the `http` feature, `RetryLayer::http_builder` retries
//! `http::Request<B>`: idempotent methods only (POST and PATCH when opted in
//! and carrying an idempotency key), bodies buffered up to a limit and
//! replayed, 429/502/503/504 and transport errors retried, `Retry-After`
//! honoured. See the `http` module.
//!
//! Every setting that is plain data is a field of [`RetrySettings`], the one
//! place its default and bounds are written: the builder's setters have the
//! fields' names, [`RetryBuilder::settings`] takes them all, and with the
//! `serde` feature they read from a config file (durations as `"250ms"`).
//! [`RetryLayer::handle`] gives a [`RetryHandle`], whose
//! [`snapshot`](RetryHandle::snapshot) (the name, the settings in effect and
//! the budget's figures) an admin API can serialize; a
//! [`Registry<RetryHandle>`](Registry) given to
//! [`RetryBuilder::registry`] keeps one instance per name.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use palisade_core::BoxError;
//! use palisade_retry::{Backoff, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let retry = RetryLayer::builder("inventory")
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(50), 2.0, Duration::from_secs(1)))
//!     .attempt_timeout(Duration::from_millis(500))
//!     .deadline(Duration::from_secs(2))
//!     .build()?;
//!
//! // A downstream that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&calls);
//! let inventory = tower::service_fn(move |sku: u32| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
//!     async move {
//!         if n < 3 { Err::<u32, BoxError>("connection reset".into()) } else { Ok(sku * 2) }
//!     }
//! });
//!
//! let svc = ServiceBuilder::new().layer(retry).service(inventory);
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok::<_, BoxError>(())
//! # }).unwrap();
//! ```
//!
//! # Ordering
//!
//! In a `ServiceBuilder` the first layer sees the request first. Put retry
//! outside the layers whose every attempt should count, and inside the one
//! that bounds the whole call:
//!
//! ```text
//! ServiceBuilder::new()
//!     .timeout(total)            // optional: an overall bound, or use `deadline`
//!     .layer(retry)              // attempts, backoff, budget
//!     .layer(circuit_breaker)    // counts every attempt; when open, retries stop
//!     .timeout(per_attempt)      // inside the breaker: a hung attempt is a failure it counts
//!     .layer(bulkhead)           // innermost: holds a permit only while an attempt runs
//!     .service(client)
//! ```
//!
//! - **Per-attempt timeout inside the breaker**: tower's `TimeoutLayer`
//!   (`ServiceBuilder::timeout`) below the breaker ends a hung attempt with
//!   an error; the breaker counts it as a failure, and retry retries it like
//!   any error. Retry's own [`attempt_timeout`](RetryBuilder::attempt_timeout)
//!   is part of the retry layer, so it sits *outside* the breaker: when it
//!   cuts an attempt off it drops the breaker's response future, and a
//!   breaker records nothing for a dropped call. A downstream that hangs
//!   would then never trip the breaker. Use `attempt_timeout` when there is
//!   no breaker below, or in addition to the inner timeout (an outer bound
//!   on each attempt, layers above the breaker included). A timeout
//!   *outside* the retry bounds the whole call instead.
//! - **A deadline carried with the request**: HTTP requests carrying a
//!   `palisade_core::Deadline` (set by `palisade-deadline`'s layer above)
//!   are bounded by it as by [`deadline`](RetryBuilder::deadline), whichever
//!   comes first: no attempt starts whose backoff would end past it,
//!   `attempt_timeout` is cut to what is left, and every attempt carries it
//!   on.
//! - **Overall deadline outside**: [`deadline`](RetryBuilder::deadline) is
//!   the built-in form and knows not to start a backoff it cannot finish
//!   (it returns the last outcome instead of cutting the wait short with a
//!   timeout error); an outer tower `Timeout` also works.
//! - **Breaker inside retry**, so the breaker sees every attempt (with the
//!   per-attempt timeout inside it, every attempt ends in an outcome it
//!   counts), and an open breaker's `CircuitOpen` stops the retries at once.
//!   A breaker outside retry would count one failure per call however many
//!   attempts failed, and would keep retrying against an open circuit
//!   further down.
//! - **Bulkhead innermost**, so a permit is held only while an attempt is in
//!   flight, not during backoff; a `BulkheadFull` is never retried.
//! - **One retry layer per path.** Retries multiply across layers (3 attempts
//!   at each of 3 layers is 27 calls at the leaf); retry at one place, ideally
//!   closest to the failing dependency, and let the budget bound the rest.
//!
//! # Clone
//!
//! A [`RetryLayer`] owns its state in an `Arc`: the [`RetryBudget`], the
//! jitter source, the metric handles, the listeners. Cloning the layer or a
//! [`Retry`] service does not create new state: every service the layer
//! builds (axum calls `layer()` once per route) and every clone of them (axum
//! and hyper clone per request) draw from the same budget. Share a budget
//! between layers explicitly with [`RetryBuilder::budget`], or build every
//! layer for one downstream under one name through one registry
//! ([`RetryBuilder::registry`]): each gets the registered instance's
//! settings, budget and listeners, with its own classifier.
//!
//! `Retry<S>` needs `S: Clone`: a call takes the inner service that
//! `poll_ready` readied into its response future (leaving a fresh clone for
//! the next call), and the future drives it to readiness again before every
//! retry. A clone of `Retry` starts unready, as its inner clone does. Generic
//! requests must be `Clone`: the layer keeps one copy per call (that is the
//! cost of being able to retry: one clone of the request and one of the inner
//! service per call) and clones it again for each retry but the last, which
//! takes the copy. For HTTP, see the `http` module.
//!
//! Each call also takes a counted reference to the layer's state, so that
//! its response future can retry after the caller dropped the service
//! (`ServiceExt::oneshot` does). The layer keeps 16 such references, each on
//! its own cache lines, and a call takes the one of the thread it starts on:
//! calls on different cores do not bounce one counter between them.
//!
//! # Backpressure
//!
//! `poll_ready` is the inner service's `poll_ready`: the layer reserves
//! nothing of its own and never returns `Pending` by itself. Whatever the
//! inner service reserved moves into the response future with the call.
//! Before each retry the response future polls the inner service's readiness
//! again (`Pending` until it is ready, woken by the inner service; bounded by
//! the deadline); it never calls a clone that was not polled ready. A
//! readiness error ends the call with that error. Dropping the response
//! future drops the attempt in flight and any timer: nothing is spawned and no
//! attempt starts after the drop.
//!
//! # Runtime
//!
//! Backoffs, `attempt_timeout` and `deadline` use tokio's timer: a call that
//! has to wait needs a tokio runtime with the time driver enabled (tokio
//! panics otherwise, as it does for `tokio::time::sleep`). A layer with
//! `Backoff::none()` and no timeouts never creates a timer. Every wait is on
//! tokio's clock, so a test on tokio's paused clock sees exact times.
//!
//! One value is read from the wall clock: the time an HTTP-date
//! `Retry-After` is measured against (a date is wall-clock time). It is read
//! in one place, the system clock by default; an HTTP layer takes another
//! through `RetryBuilder::wall_clock` (feature `http`), for instance one that
//! follows tokio's paused clock, which makes an HTTP-date exact in a test.
//!
//! # Errors
//!
//! The layer's error type is [`BoxError`](palisade_core::BoxError); the inner
//! error is boxed with `Into<BoxError>` and otherwise returned unchanged, so
//! `is_caused_by` finds inside it what it would find without the layer. When
//! retries stop (attempts, budget, deadline, a non-retryable outcome) the
//! last attempt's outcome is returned: a response or an error. The layer adds
//! two errors:
//!
//! | error | when | HTTP (`http::error_response`) |
//! |---|---|---|
//! | [`AttemptTimedOut`] | an attempt ran into `attempt_timeout`; retried (unless `retry_on_attempt_timeout(false)`), returned if it was the last | `504` problem+json |
//! | [`DeadlineExceeded`] | the deadline passed while an attempt was in flight or the service was not ready | `504` problem+json |
//! | [`NoTimeToRetry`] | the deadline the request carries (a `palisade_core::Deadline` set by a deadline layer above) leaves no room for the next attempt's backoff; its source is the last attempt's error | the source's |
//! | `palisade_core::DeadlineExpired` | the deadline the request carries passed while an attempt was in flight | `504` problem+json (palisade-core's mapping) |
//!
//! Rejections are returned as they came (`CircuitOpen`, `BulkheadFull`,
//! re-exported here), never retried, even when wrapped: they are found with
//! [`palisade_core::is_rejection`], which walks the `source()` chain.
//! For HTTP, a `503` carrying `x-palisade-circuit-breaker` or
//! `x-palisade-bulkhead` (a rejection already answered as a response) is not
//! retried either.
//!
//! # Metrics
//!
//! Handles are resolved once, when the layer is built; every series has a
//! `name` label. Without a recorder they cost a branch each.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `palisade_retry_requests_total` | `name` | calls made through the layer |
//! | `palisade_retry_attempts_total` | `name` | attempts started, first ones included |
//! | `palisade_retry_retries_total` | `name`, `reason` = `error` \| `timeout` \| `response` | retries, by why the previous attempt failed |
//! | `palisade_retry_budget_exhausted_total` | `name` | failed calls not retried because the budget was spent |
//! | `palisade_retry_calls_total` | `name`, `outcome` = `success_without_retry` \| `success_with_retry` \| `failed_without_retry` \| `failed_with_retry` | completed calls, as Resilience4j counts them (a call "succeeds" when its last outcome is not a failure) |
//!
//! # Events
//!
//! tracing, target `palisade_retry`, with a `name` field: each retry at
//! `debug` (`attempt`, `reason`, `delay_ms`, `retry_after`); a spent budget at
//! `debug`; every other reason to stop at `debug`; HTTP requests that cannot
//! be retried (method, body too large or of unknown length, body that turned
//! out longer than `max_body_bytes`) at `debug`, with the reason. Listeners
//! registered with
//! [`on_event`](RetryBuilder::on_event) receive [`RetryEvent`]s (`Retry`,
//! `Stopped` with a [`StopReason`], `Recovered`); an event is only built when
//! someone listens, and a first attempt that succeeds emits nothing.
//!
//! # Why budgets, not just max attempts
//!
//! `max_attempts` bounds one call, not the load. When a dependency degrades,
//! every call fails and retries: with 3 attempts the dependency receives up
//! to 3 times its usual load exactly when it can least take it, and a
//! retrying caller of a retrying caller multiplies again (3 × 3 × 3 = 27). The
//! overload can outlive what triggered it. A budget bounds the aggregate:
//! retries may add at most a fraction of the request rate (20 %), plus a small
//! floor per second (10) so a quiet client can still retry a blip. Finagle,
//! Linkerd and Envoy ship this; tower's `TpsBudget` is the same design.
//!
//! Where this crate goes beyond the peers, and why:
//!
//! - **The budget is exact for any ratio.** tower's `TpsBudget` withdraws
//!   `1/ratio` tokens rounded down, so 0.6 behaves as 100 % (tower#857); here
//!   retries ≤ `ratio ×` requests for 0.6, 0.2 or 0.01 alike (tested).
//! - **No lock on the request path.** `TpsBudget` takes a mutex on every
//!   deposit and withdrawal; tower-resilience's budgets too. A deposit here is
//!   a plain store to a per-thread stripe, with no clock read.
//! - **The budget is on by default and shared by default**, owned by the
//!   layer; tower leaves it to each `Policy`, tower-resilience leaves it off.
//! - **Rejections are never retried**, through any wrapping, so a retry never
//!   adds load to a breaker that asked for less.
//! - **`Retry-After`, an overall deadline and per-attempt timeouts** are
//!   built in (neither tower nor tower-resilience has them), and the deadline
//!   never starts a backoff it cannot finish.
//! - **HTTP requests replay safely**: idempotency rules, bounded body
//!   buffering with the unbuffered case sent once and whole.
//! - **No boxed future per call** (tower-resilience boxes one), and every
//!   attempt re-polls readiness (as tower does).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
pub mod error;
pub mod event;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod kind;
mod layer;
mod metrics;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::RetryBuilder;
pub use error::{AttemptTimedOut, DeadlineExceeded, NoTimeToRetry, RequestLost};
pub use event::{RetryEvent, RetryReason, StopReason};
pub use handle::{RetryHandle, RetrySnapshot};
pub use layer::RetryLayer;
pub use palisade_core::{BulkheadFull, CircuitOpen, Registry};
pub use service::Retry;
pub use settings::{MAX_DURATION, RetrySettings};
pub use state::backoff::{Backoff, Jitter};
pub use state::budget::{BudgetSnapshot, RetryBudget, RetryBudgetBuilder};
pub use state::{backoff, budget};
