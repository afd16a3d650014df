//! Hedged requests for tower services: a second attempt after the observed latency percentile, the first answer wins, extra load capped by a budget.
//!
//! A [`HedgeLayer`] sends each request once; if it has not been answered
//! after the [`percentile`](HedgeBuilder::percentile) of the latencies
//! observed over a sliding [`window`](HedgeBuilder::window) (p95 over 10 s
//! by default), it sends the same request again, up to
//! [`max_hedges`](HedgeBuilder::max_hedges) times, each after the same delay.
//! The first answer that is not a failure wins; every other attempt is
//! cancelled (its future dropped). Extra attempts draw from a budget (5 % of
//! requests by default), so however slow the downstream gets, hedging adds at
//! most that share of load. Only requests that can be replayed are hedged:
//! requests that are `Clone` ([`HedgeLayer::builder`]); over HTTP
//! (`HedgeLayer::http_builder`, feature `http`, module `http`), idempotent
//! methods with a body that fits the replay buffer, by the retry layer's own
//! rules and with its replayable body.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//!
//! use palisade_core::BoxError;
//! use palisade_hedge::HedgeLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let hedge = HedgeLayer::builder("catalog")
//!     .percentile(90.0)
//!     .min_samples(10)
//!     .budget_ratio(0.5)
//!     .build()?;
//! let handle = hedge.handle();
//!
//! // A replica answers in 5 ms, except the first call after 20 calls, which
//! // takes a second.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&calls);
//! let svc = ServiceBuilder::new().layer(hedge).service(service_fn(move |sku: u32| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let ms = if n == 20 { 1000 } else { 5 };
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, BoxError>(sku)
//!     }
//! }));
//!
//! for sku in 0..20 {
//!     svc.clone().oneshot(sku).await?;
//! }
//! // p90 of what was seen is 5 ms (the middle of its bucket: 4.864 ms).
//! assert_eq!(handle.delay(), Some(Duration::from_micros(4_864)));
//!
//! // The slow call is hedged after the delay, and the hedge answers first.
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.oneshot(20).await?, 20);
//! assert!(start.elapsed() < Duration::from_millis(12));
//! assert_eq!((handle.snapshot().hedges, handle.snapshot().won), (1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! Outside the per-attempt stack, inside the deadline:
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(deadline)            // bounds the whole call, hedges included
//!     .layer(hedge)               // each attempt goes through everything below
//!     .layer(circuit_breaker)     // counts every attempt; an open breaker refuses a hedge
//!     .timeout(per_attempt)
//!     .layer(bulkhead)            // a hedge takes a permit like any call
//!     .service(client)
//! ```
//!
//! With retries, put the hedge layer inside the retry layer (each retry is
//! hedged) or outside it (each hedge retries); share one budget between
//! them ([`HedgeBuilder::budget`] with the retry layer's
//! [`RetryLayer::budget`](palisade_retry::RetryLayer::budget)), so that
//! retries and hedges together stay within one share of extra load, as
//! Finagle does. A hedge that a breaker or bulkhead below refuses is a failed
//! attempt: the first attempt keeps running.
//!
//! # Clone
//!
//! The layer owns its state (the latency window, the budget, the counters,
//! the metric handles) in an `Arc`: cloning the layer or a service it built
//! does not create new state, and every service it builds feeds the same
//! window and draws from the same budget. A registry shares it by name.
//!
//! `Hedge<S>` needs `S: Clone`: a call takes the ready inner service into its
//! response future (a fresh clone stays behind), to send its hedges on.
//! Requests of [`HedgeLayer::builder`] must be `Clone`: one copy is kept per
//! call, while a hedge is possible.
//!
//! # Backpressure
//!
//! `poll_ready` is the inner service's: the layer reserves nothing for hedges
//! ahead of time (tower's `Hedge` once did, and exhausted a `Buffer` below
//! it, tower#472). When a hedge is due and its budget granted, the response
//! future polls the inner service's readiness then, for that hedge only; if
//! the first attempt answers meanwhile, that readiness is given up when the
//! future completes. A service that fails to become ready stops the
//! hedging, not the call. Dropping the response future drops every attempt
//! in flight and the timer; nothing is spawned.
//!
//! # Errors
//!
//! The error type is [`BoxError`](palisade_core::BoxError). The layer adds
//! no error of its own: a call returns the winning answer, or, when every
//! attempt failed, the last failure (an error, or a response the classifier
//! calls a failure). Failing attempts are not retried here: that is the
//! retry layer's job.
//!
//! # Metrics
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `palisade_hedge_hedges_total` | `name` | hedges sent |
//! | `palisade_hedge_wins_total` | `name` | calls a hedge answered first |
//! | `palisade_hedge_budget_exhausted_total` | `name` | hedges due but refused by the budget |
//! | `palisade_hedge_delay_seconds` | `name` | gauge: the current hedge delay (0 while there is none) |
//!
//! # Events
//!
//! tracing, target `palisade_hedge`, at `debug`: each hedge (`attempt`,
//! `delay_us`), each refusal by the budget. Listeners added with
//! [`on_event`](HedgeBuilder::on_event) receive [`HedgeEvent`]s (`Hedged`,
//! `Won`, `BudgetExhausted`). [`HedgeHandle::snapshot`] has the delay, the
//! answers observed, hedges sent and won, and the budget's figures.
//!
//! # Why hedge
//!
//! In a fan-out over many backends, the slowest of them sets the response
//! time, and a backend's rare slow answer (a GC pause, a cold cache, a
//! packet lost) becomes common at the top ("The Tail at Scale"). Sending a
//! second copy of a request still unanswered after the usual latency cuts the
//! tail at a small, bounded cost: with a p95 delay, about 5 % more calls, and
//! a slow call now takes the delay plus a normal answer.
//!
//! Where it goes beyond the peers:
//!
//! - **tower's `Hedge`** sends one hedge, keeps its histogram behind an
//!   `Arc<Mutex>` taken on every call, has no budget (its extra load is
//!   whatever the percentile gives), is not `Clone`, and once reserved
//!   `Buffer` slots for hedges (tower#472). Here: several hedges, a lock-free
//!   window, a budget, `Clone`, readiness polled only for a hedge being sent.
//! - **tower-resilience's hedge** has fixed delays only and no budget.
//! - **Idempotency and bodies by the retry layer's rules**, not a second set:
//!   a request the retry layer would not replay is not hedged either.
//! - **Lazy timer**: a request answered at its first poll costs no timer.
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
mod service;
mod settings;
mod shared;
mod state;

pub use builder::HedgeBuilder;
pub use event::HedgeEvent;
pub use handle::{HedgeHandle, HedgeSnapshot};
pub use layer::HedgeLayer;
pub use palisade_retry::RetryBudget;
pub use service::Hedge;
pub use settings::{HedgeSettings, MAX_DURATION, MAX_HEDGES};
