//! [`EventPublisher`]: how a gateway feature publishes a domain event.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade::pubsub::backend::memory::MemoryBus;
use palisade::pubsub::backend::nats::NatsBus;
use palisade::pubsub::error::{InvalidMessage, PublishError};
use palisade::pubsub::{Message, Publisher};
use serde::Serialize;

/// The header every event carries with the id of the HTTP request that
/// caused it (the gateway's `x-request-id`); the correlation id is the same
/// value.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";

/// The bus the gateway's events travel on: the pubsub crate's in-process bus
/// or its NATS JetStream backend. Cheap to clone (the backends are `Arc`s).
#[derive(Clone, Debug)]
pub enum Bus {
    /// The in-process bus.
    Memory(MemoryBus),
    /// NATS JetStream.
    Nats(NatsBus),
}

impl Publisher for Bus {
    fn publish(&self, message: Message) -> impl Future<Output = Result<(), PublishError>> + Send {
        let bus = self.clone();
        async move {
            match bus {
                Self::Memory(bus) => bus.publish(message).await,
                Self::Nats(bus) => Publisher::publish(&bus, message).await,
            }
        }
    }
}

/// Why an event was not published.
#[derive(Debug)]
pub enum EventError {
    /// The event could not be made into a message (a subject, id or header
    /// value the crate refuses, a payload that does not serialize).
    Invalid(InvalidMessage),
    /// The bus refused it or did not answer in time
    /// ([`PublishError::is_transient`] says whether trying again may work).
    Publish(PublishError),
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "invalid event: {e}"),
            Self::Publish(e) => write!(f, "event not published: {e}"),
        }
    }
}

impl std::error::Error for EventError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Invalid(e) => Some(e),
            Self::Publish(e) => Some(e),
        }
    }
}

/// Publishes the gateway's domain events (`orders.placed` today; account
/// events publish the same way). Cheap to clone: clones share the bus and
/// the counters.
///
/// Every event is a JSON payload under a subject relative to the configured
/// prefix (`orders.placed` is sent as `<subject_prefix>.orders.placed`),
/// with an id of its own (JetStream de-duplicates re-publishes by it, and
/// idempotent consumers skip it the second time), and, when an HTTP request
/// caused it, that request's id as the correlation id and in
/// [`REQUEST_ID_HEADER`]. The trace context (`traceparent`) is set by the
/// crate.
///
/// ```no_run
/// # async fn f(events: &palisade_gateway::pubsub::EventPublisher) -> Result<(), Box<dyn std::error::Error>> {
/// let payload = serde_json::json!({ "account": "acc-1", "amount_cents": 500 });
/// events.publish_json("accounts.deposited", "acc-1-7", Some("4f0c9a1e2b3d4c5f"), &payload).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct EventPublisher {
    bus: Bus,
    prefix: Arc<str>,
    published: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl EventPublisher {
    /// A publisher on `bus`, every subject under `prefix`.
    #[must_use]
    pub fn new(bus: Bus, prefix: &str) -> Self {
        Self {
            bus,
            prefix: prefix.into(),
            published: Arc::default(),
            failed: Arc::default(),
        }
    }

    /// The full subject of `name` (`orders.placed` →
    /// `<prefix>.orders.placed`).
    #[must_use]
    pub fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The subject prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bus.
    #[must_use]
    pub const fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Events published so far.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events that failed to publish so far.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Publishes `payload` as JSON under `name` (relative to the prefix),
    /// with `id` as the message id and `request_id` (the HTTP request's
    /// `x-request-id`, if a request caused it) as the correlation id and in
    /// [`REQUEST_ID_HEADER`]. Returns the message sent.
    ///
    /// # Errors
    ///
    /// [`EventError::Invalid`] for an id, subject, request id or payload the
    /// crate refuses; [`EventError::Publish`] when the bus does not take it.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        id: &str,
        request_id: Option<&str>,
        payload: &T,
    ) -> Result<Message, EventError> {
        let mut builder = Message::builder(self.subject(name)).id(id).json(payload);
        if let Some(request_id) = request_id {
            builder = builder
                .correlation_id(request_id)
                .header(REQUEST_ID_HEADER, request_id);
        }
        let message = builder.build().map_err(|e| {
            self.failed.fetch_add(1, Ordering::Relaxed);
            EventError::Invalid(e)
        })?;
        match self.bus.publish(message.clone()).await {
            Ok(()) => {
                self.published.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    subject = message.subject(),
                    message_id = message.id(),
                    correlation_id = message.correlation_id(),
                    "event published"
                );
                Ok(message)
            }
            Err(err) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subject = message.subject(), message_id = message.id(), error = %err, "event not published");
                Err(EventError::Publish(err))
            }
        }
    }
}
