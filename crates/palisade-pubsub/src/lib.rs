//! Publish-subscribe for tower services: an in-process bus and NATS
//! JetStream behind one API, consumers that drive a tower `Service<Message>`,
//! idempotent consumers, and a transactional outbox relay.
//!
//! - [`Message`]: the envelope (id, subject, headers with the correlation id
//!   and W3C `traceparent`, payload bytes, JSON helpers under `serde`).
//! - [`Publisher`]: what every backend implements;
//!   [`MemoryBus`](backend::memory::MemoryBus) (feature `memory`, default)
//!   and [`NatsBus`](backend::nats::NatsBus) (feature `nats`). Subjects use
//!   NATS syntax on both (`orders.*`, `orders.>`); queue groups give
//!   competing consumers on both.
//! - [`Consumer`]: pulls [`Delivery`]s from a subscription and runs each
//!   message through a tower stack; acks after success, redelivers a
//!   retryable failure after a growing delay, dead-letters a
//!   [`Terminal`](error::Terminal) failure or one past `max_deliver` with
//!   its reason, and stops pulling while the stack refuses (an open
//!   breaker).
//! - [`IdempotentLayer`]: skips messages already handled, by id, in a
//!   bounded store; `SqliteInbox`/`PgInbox` (features `sqlite`, `postgres`)
//!   for effects that must happen exactly once.
//! - [`outbox::Relay`]: publishes committed events at least once, in
//!   global-position order, with a durable checkpoint, from any
//!   [`OutboxSource`](outbox::OutboxSource); `outbox::EventStoreOutbox`
//!   (feature `event-store`) follows `palisade-event-store`.
//!
//! `docs/patterns/pubsub.md` compares the backends' delivery guarantees and
//! says what a handler must do.
//!
//! # Example
//!
//! An order service publishes; a notification consumer handles each message
//! through a breaker, a timeout and a bulkhead, de-duplicated by id; a
//! poison message ends in the dead letters with its reason.
//!
//! ```
//! use std::time::Duration;
//! use palisade_bulkhead::BulkheadLayer;
//! use palisade_circuit_breaker::CircuitBreakerLayer;
//! use palisade_pubsub::backend::memory::MemoryBus;
//! use palisade_pubsub::error::Terminal;
//! use palisade_pubsub::{Consumer, IdempotentLayer, Message, DEAD_LETTER_REASON};
//! use tower::{BoxError, ServiceBuilder, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let bus = MemoryBus::builder("events").capacity(1024).build()?;
//! let orders = bus.subscribe("orders.*")?;
//! let mut dead_letters = bus.subscribe("dead_letter.>")?;
//!
//! let handler = ServiceBuilder::new()
//!     .layer(IdempotentLayer::builder("notify").build()?)
//!     .layer(CircuitBreakerLayer::builder("notify").build()?)
//!     .timeout(Duration::from_secs(2))
//!     .layer(BulkheadLayer::builder("notify").max_concurrent_calls(8).build()?)
//!     .service(service_fn(|msg: Message| async move {
//!         if msg.payload().is_empty() {
//!             return Err(BoxError::from(Terminal::new("an order without lines")));
//!         }
//!         Ok(()) // send the e-mail
//!     }));
//!
//! let consumer = Consumer::builder("notify")
//!     .max_in_flight(16)
//!     .max_deliver(5)
//!     .build(orders, handler, bus.clone())?;
//! let stats = consumer.handle();
//! let running = tokio::spawn(consumer.run());
//!
//! bus.publish(Message::builder("orders.placed").id("order-1").payload("2 books").build()?).await?;
//! bus.publish(Message::builder("orders.placed").id("order-1").payload("2 books").build()?).await?;
//! bus.publish(Message::builder("orders.placed").id("order-2").build()?).await?;
//!
//! let letter = dead_letters.recv().await.unwrap()?;
//! assert_eq!(letter.headers().get(DEAD_LETTER_REASON), Some("an order without lines"));
//! bus.close();
//! running.await?;
//! assert_eq!(stats.snapshot().acked, 2, "the duplicate was acked without running the handler twice");
//! assert_eq!(stats.snapshot().dead_lettered, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! The [`Consumer`] is outermost: it owns the delivery and decides ack, nak
//! or dead letter from the stack's result. Inside it, outermost first:
//!
//! ```text
//! Consumer → IdempotentLayer → (retry) → circuit breaker → timeout → bulkhead → handler
//! ```
//!
//! - **Idempotent first**, so a duplicate costs nothing below it and a
//!   failure anywhere below leaves no mark (the redelivery runs again).
//! - **Retry is optional.** Redelivery already retries with backoff, across
//!   restarts; a retry layer only helps for quick in-process retries of a
//!   flaky call. It never retries a rejection.
//! - **Breaker outside the timeout**, so a hung handler is a failure it
//!   counts; when it opens, its [`CircuitOpen`] is a rejection, and the
//!   consumer stops pulling instead of spending deliveries.
//! - **Timeout below the broker's ack wait** (JetStream): a handler still
//!   running when the ack wait expires is redelivered to another consumer.
//! - **Bulkhead innermost** bounds calls really in flight; with
//!   `backpressure(true)` it is `Pending` when full and the consumer does not
//!   pull.
//!
//! # Clone
//!
//! A [`MemoryBus`](backend::memory::MemoryBus) or
//! [`NatsBus`](backend::nats::NatsBus) clone is the same bus (an `Arc`).
//! [`Message`] clones share one allocation. An [`IdempotentLayer`] and the
//! services it builds share one store. The [`Consumer`] clones the handler
//! service per message, as tower's `Buffer` does: the stack's state is
//! shared through its layers' `Arc`s; readiness is not (the consumer moves
//! the service it polled ready into the message's task and keeps a fresh
//! clone).
//!
//! # Backpressure
//!
//! - **In-process publishers** never wait under the default
//!   [`SlowSubscriber::DropOldest`] (a slow subscriber loses its oldest
//!   messages and is told how many); under [`SlowSubscriber::Wait`] they
//!   wait for room in every matching buffer, up to `publish_timeout`, all or
//!   nothing. Memory is bounded either way: each subscription holds at most
//!   `capacity` messages.
//! - **JetStream publishers** wait for the stream's acknowledgement, up to
//!   `publish_timeout`, and then fail with a transient error: no hidden
//!   buffer grows while NATS is down. [`NatsBus::send`](backend::nats::NatsBus::send)
//!   pipelines instead (the acknowledgement is awaited later); it waits
//!   while 5 000 acknowledgements are outstanding on the connection.
//! - **Consumers** hold at most `max_in_flight` messages (handling, waiting
//!   for an in-place retry, or held behind a rejection). Before each pull
//!   the consumer polls the handler's `poll_ready`: a `Pending` stack (a full
//!   bulkhead with backpressure) stops the pulling. A rejection from the
//!   stack ([`CircuitOpen`], [`BulkheadFull`], [`RateLimited`]) stops it for
//!   the rejection's `retry_after` (or `rejection_backoff`); the refused
//!   message is held (JetStream is told it is in progress, so its ack wait
//!   does not expire) and offered again, without counting a delivery.
//!
//! # Errors
//!
//! In `pub mod error`: [`PublishError`](error::PublishError) (with a kind:
//! too large, closed, full, unavailable, rejected; and `is_transient`),
//! [`SubscribeError`](error::SubscribeError) (lagged, unavailable,
//! rejected), [`AckError`](error::AckError),
//! [`InvalidMessage`](error::InvalidMessage) and
//! [`InvalidSubject`](error::InvalidSubject) for bad input,
//! [`StoreError`](error::StoreError) for the SQL stores and the outbox, and
//! the handler-side [`Terminal`](error::Terminal) (dead-letter now) and
//! [`AlreadyInProgress`](error::AlreadyInProgress) (a concurrent duplicate,
//! retried). Builders return [`palisade_core::ConfigError`].
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, every series
//! labelled `name` (the bus, consumer, idempotent store or relay). Handles are
//! resolved when each is built; install the recorder first. Subjects and
//! message ids are never labels.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_pubsub_published_total` | counter | | messages accepted by the bus or stream |
//! | `palisade_pubsub_publish_errors_total` | counter | `kind` | failed publishes |
//! | `palisade_pubsub_dropped_total` | counter | | messages dropped from slow in-process subscribers |
//! | `palisade_pubsub_delivered_total` | counter | | deliveries a consumer received |
//! | `palisade_pubsub_acked_total` | counter | | messages handled and acknowledged |
//! | `palisade_pubsub_redelivered_total` | counter | | deliveries after the first (broker or in place) |
//! | `palisade_pubsub_dead_lettered_total` | counter | `kind` = `terminal`, `max_deliver` | dead letters |
//! | `palisade_pubsub_rejected_total` | counter | | messages the handler's stack refused |
//! | `palisade_pubsub_duplicates_total` | counter | | messages an idempotent consumer skipped |
//! | `palisade_pubsub_consumer_lag` | gauge | | backlog reported with the latest delivery |
//! | `palisade_pubsub_in_flight` | gauge | | messages a consumer holds |
//! | `palisade_pubsub_handle_seconds` | histogram | | handler time per delivery |
//! | `palisade_pubsub_relayed_total` | counter | | events the outbox relay published |
//! | `palisade_pubsub_relay_position` | gauge | | the relay's checkpoint |
//! | `palisade_pubsub_relay_lag` | gauge | | committed events not yet relayed |
//! | `palisade_pubsub_relay_errors_total` | counter | | relay failures |
//!
//! # Events
//!
//! - Tracing: one span per handled delivery, `pubsub.consume`, with
//!   `consumer`, `subject`, `message_id`, `delivery`, `correlation_id` and
//!   the trace fields `trace_id`, `span_id`, `parent_span_id` taken from the
//!   message's `traceparent` ([`trace`] explains how the trace is carried
//!   with `tracing` alone). A message built inside a handler continues the
//!   trace, keeps the correlation id and names the handled message as its
//!   causation. Dead letters at `warn`, redeliveries and rejections at
//!   `debug`, with the `name` field.
//! - Listeners (`.on_event`) on the bus, consumers and relays receive a
//!   [`PubSubEvent`]: lagged, redelivering, dead-lettered, paused, relayed,
//!   relay failed. Nothing is built when nobody listens.
//! - [`ConsumerHandle::snapshot`] and [`outbox::RelayHandle`] read the
//!   counters at any time (for a dashboard).
//!
//! # Why
//!
//! Events between services (order placed → notification, inventory,
//! analytics; a saga's choreography) need delivery that survives crashes,
//! handlers that may run twice, and consumers that do not melt a failing
//! downstream. The Rust pieces exist (tokio's broadcast, async-nats), but
//! each stops short:
//!
//! - `tokio::sync::broadcast` is at most once, has one buffer for all
//!   receivers (a slow receiver lags, the publisher never feels it), and no
//!   subjects, wildcards or queue groups. The in-process bus has per
//!   subscription bounds, an explicit policy (drop oldest with a lag report,
//!   or push back on the publisher), wildcards and competing consumers,
//!   within a small factor of broadcast's speed (`docs/benchmarks.md`).
//! - async-nats gives JetStream's primitives (acks, nak with delay, message
//!   ids) but no consumer loop: every service rewrites the ack/nak/dead
//!   letter decision, usually without bounds. Here the loop is written once,
//!   around a tower stack, so the resilience layers the rest of Palisade
//!   provides apply per message, and an open breaker pauses the consumer
//!   (JetStream's own `max_deliver` would burn the budget and drop the
//!   message into an advisory nobody reads; the consumer counts deliveries
//!   itself and dead-letters with a reason).
//! - The outbox relay is generic over its source, so any store with a
//!   gap-safe global read plugs in with a few lines; the event store's
//!   adapter ships (`outbox::EventStoreOutbox`).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod consumer;
pub mod error;
mod event;
mod idempotent;
pub mod message;
mod metrics;
pub mod outbox;
pub mod settings;
mod state;
pub mod trace;

pub use backend::{Delivery, Publisher};
pub use consumer::{
    CONSUMER, Consumer, ConsumerBuilder, ConsumerHandle, ConsumerSnapshot, DEAD_LETTER_KIND,
    DEAD_LETTER_REASON, DELIVERIES, ORIGINAL_ID, ORIGINAL_SUBJECT,
};
pub use event::{DeadLetterKind, PubSubEvent};
pub use idempotent::{Idempotent, IdempotentBuilder, IdempotentLayer, ResponseFuture};
pub use message::{Headers, Message, MessageBuilder};
pub use palisade_core::{BulkheadFull, CircuitOpen, RateLimited};
pub use settings::{
    BusSettings, ConsumerSettings, DedupSettings, NatsSettings, RelaySettings, SlowSubscriber,
};
pub use state::subject::{MAX_SUBJECT_LEN, Pattern, validate_pattern, validate_subject};
