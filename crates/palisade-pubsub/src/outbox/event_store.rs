//! The event store as the outbox: a [`Relay`](super::Relay) that follows
//! `palisade-event-store`'s global order and publishes every committed event.
//!
//! No outbox table is needed: an event appended to the store *is* the
//! outbox row, written in the same transaction as the state change because it
//! is the state change. The store's `read_all` is gap-safe (an event it has
//! not returned can only commit at a later position), so a relay that follows
//! it with a durable checkpoint publishes every committed event, in commit
//! order, at least once; a consumer behind an
//! [`IdempotentLayer`](crate::IdempotentLayer) makes that exactly once, since
//! each message's id is the event's id.
//!
//! # Example
//!
//! ```
//! use palisade_event_store::{EventStore, ExpectedVersion, NewEvent};
//! use palisade_pubsub::backend::memory::MemoryBus;
//! use palisade_pubsub::outbox::{EventStoreOutbox, MemoryCheckpoints, Relay};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = EventStore::in_memory("accounts")?;
//! let bus = MemoryBus::builder("bus").build()?;
//! let mut deposits = bus.subscribe("accounts.>")?;
//!
//! // Every event of stream `acc-7` of type `Deposited` goes to
//! // `accounts.acc-7.Deposited`.
//! let outbox = EventStoreOutbox::new(store.clone(), |event| {
//!     format!("accounts.{}.{}", event.stream(), event.event_type())
//! });
//! let mut relay = Relay::builder("accounts-relay").build(outbox, MemoryCheckpoints::new(), bus)?;
//!
//! let deposit = NewEvent::json("deposit-1", "Deposited", &serde_json::json!({ "amount": 100 }))?;
//! store.append("acc-7", ExpectedVersion::NoStream, &[deposit]).await?;
//! assert_eq!(relay.run_once().await?, 1);
//!
//! let message = deposits.recv().await.expect("open")?;
//! assert_eq!(message.id(), "deposit-1");
//! assert_eq!(message.subject(), "accounts.acc-7.Deposited");
//! assert_eq!(message.headers().get("Event-Type"), Some("Deposited"));
//! # Ok(())
//! # }
//! ```

use std::fmt;

use palisade_event_store::backend::Backend;
use palisade_event_store::{EventStore, RecordedEvent};

use super::{OutboxEvent, OutboxSource};
use crate::error::StoreError;
use crate::message::Message;

/// Header carrying the event's type.
pub const EVENT_TYPE: &str = "Event-Type";
/// Header carrying the event's stream.
pub const EVENT_STREAM: &str = "Event-Stream";
/// Header carrying the event's version in its stream.
pub const EVENT_VERSION: &str = "Event-Version";
/// Header carrying the event's global position in the store.
pub const EVENT_POSITION: &str = "Event-Position";
/// Header carrying the event payload's schema version.
pub const EVENT_SCHEMA_VERSION: &str = "Event-Schema-Version";

/// An [`OutboxSource`] over an [`EventStore`]: each committed event becomes a
/// message on the subject `subject(event)` names, with the event's id as the
/// message id, its JSON payload (`Content-Type: application/json`), its
/// correlation and causation ids, and the headers [`EVENT_TYPE`],
/// [`EVENT_STREAM`], [`EVENT_VERSION`], [`EVENT_POSITION`] and
/// [`EVENT_SCHEMA_VERSION`].
///
/// Every event is published: a relay's checkpoint can only move past an
/// event it handed on, so there is no filter (route events nobody wants to a
/// subject nobody subscribes to). A subject the mapper gives that is not a
/// valid subject fails the read with a [`StoreError`] naming it; the relay
/// retries with backoff and reports it, and does not move past the event.
pub struct EventStoreOutbox<B, F> {
    store: EventStore<B>,
    subject: F,
}

impl<B, F> EventStoreOutbox<B, F>
where
    B: Backend,
    F: Fn(&RecordedEvent) -> String + Send + Sync + 'static,
{
    /// Follows `store`, publishing each event on the subject `subject`
    /// gives it.
    pub const fn new(store: EventStore<B>, subject: F) -> Self {
        Self { store, subject }
    }

    /// The message an event is published as.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] (`map event`) when the subject or id is not valid.
    pub fn message(&self, event: &RecordedEvent) -> Result<Message, StoreError> {
        let payload =
            serde_json::to_vec(event.payload()).map_err(|err| StoreError::new("map event", err))?;
        let mut builder = Message::builder((self.subject)(event))
            .id(event.id())
            .header("Content-Type", "application/json")
            .header(EVENT_TYPE, event.event_type())
            .header(EVENT_STREAM, event.stream())
            .header(EVENT_VERSION, event.version().to_string())
            .header(EVENT_POSITION, event.position().to_string())
            .header(EVENT_SCHEMA_VERSION, event.schema_version().to_string())
            .payload(payload);
        let metadata = event.metadata();
        if let Some(id) = &metadata.correlation_id {
            builder = builder.correlation_id(id.as_str());
        }
        if let Some(id) = &metadata.causation_id {
            builder = builder.header(crate::message::CAUSATION_ID, id.as_str());
        }
        builder
            .build()
            .map_err(|err| StoreError::new("map event", err))
    }
}

impl<B, F> OutboxSource for EventStoreOutbox<B, F>
where
    B: Backend,
    F: Fn(&RecordedEvent) -> String + Send + Sync + 'static,
{
    async fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let events = self
            .store
            .read_all(after.unwrap_or(0), limit)
            .await
            .map_err(|err| StoreError::new("read events", err))?;
        events
            .iter()
            .map(|event| Ok(OutboxEvent::new(event.position(), self.message(event)?)))
            .collect()
    }

    async fn head(&self) -> Result<Option<u64>, StoreError> {
        let head = self
            .store
            .head_position()
            .await
            .map_err(|err| StoreError::new("read head", err))?;
        Ok((head > 0).then_some(head))
    }
}

impl<B: Backend, F> fmt::Debug for EventStoreOutbox<B, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStoreOutbox")
            .field("store", &self.store.name())
            .finish_non_exhaustive()
    }
}
