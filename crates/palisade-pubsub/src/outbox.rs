//! The transactional outbox relay: events committed to a store are published
//! to the bus at least once, in global-position order, with a durable
//! checkpoint.
//!
//! The events are written in the same transaction as the state change that
//! produced them (an event store's append *is* that transaction), so nothing
//! is published that was not committed, and nothing committed is lost. The
//! [`Relay`] reads committed events after its checkpoint
//! ([`OutboxSource::read_after`]), publishes them one by one in position
//! order, and saves the position of the last one published
//! ([`CheckpointStore::save`]). A crash between publishing and saving means
//! the next run publishes those events again, with the same message ids:
//! JetStream's de-duplication window drops the copies it still remembers,
//! and idempotent consumers ([`IdempotentLayer`](crate::IdempotentLayer), the
//! SQL inboxes) absorb the rest. So delivery is at least once and effects
//! are exactly once where the consumer de-duplicates.
//!
//! A source adapter is a few lines: read the store's global log after a
//! position, and turn each stored event into an [`OutboxEvent`] (its global
//! position, and a [`Message`] whose id is the event id):
//!
//! ```
//! use palisade_pubsub::Message;
//! use palisade_pubsub::error::StoreError;
//! use palisade_pubsub::outbox::{OutboxEvent, OutboxSource};
//!
//! /// Some store's committed log, read in global-position order.
//! struct MyStore;
//! struct Stored { position: u64, id: String, stream: String, kind: String, data: Vec<u8> }
//! impl MyStore {
//!     async fn read_all_after(&self, _after: Option<u64>, _limit: usize) -> Result<Vec<Stored>, std::io::Error> {
//!         Ok(vec![Stored { position: 1, id: "ev-1".into(), stream: "order-17".into(), kind: "placed".into(), data: vec![] }])
//!     }
//! }
//!
//! impl OutboxSource for MyStore {
//!     async fn read_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
//!         let events = self.read_all_after(after, limit).await.map_err(|e| StoreError::new("read events", e))?;
//!         events
//!             .into_iter()
//!             .map(|e| {
//!                 let message = Message::builder(format!("events.{}", e.kind))
//!                     .id(e.id)
//!                     .correlation_id(e.stream)
//!                     .payload(e.data)
//!                     .build()
//!                     .map_err(|err| StoreError::new("map event", err))?;
//!                 Ok(OutboxEvent::new(e.position, message))
//!             })
//!             .collect()
//!     }
//! }
//! # let _ = MyStore;
//! ```
//!
//! The source must be gap-safe: never return an event whose transaction
//! has not committed, and never let a later read return an event at a
//! position at or below one it already returned (PostgreSQL sequences hand
//! out ids at insert time and commit out of order; the event store's
//! global read handles that). Run one relay per name at a time.

#[cfg(feature = "event-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "event-store")))]
pub mod event_store;
#[cfg(feature = "event-store")]
pub use event_store::EventStoreOutbox;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::{ConfigError, Listeners};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::backend::Publisher;
use crate::error::{PublishError, StoreError};
use crate::event::PubSubEvent;
use crate::message::Message;
use crate::metrics::RelayMetrics;
use crate::settings::{RelaySettings, validate_name};

/// One committed event to relay: its global position and the message to
/// publish (its id is the event id, so a re-publication is a duplicate).
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    /// The event's global position: strictly increasing in commit-visible
    /// order.
    pub position: u64,
    /// The message to publish.
    pub message: Message,
}

impl OutboxEvent {
    /// An event at `position` published as `message`.
    #[must_use]
    pub const fn new(position: u64, message: Message) -> Self {
        Self { position, message }
    }
}

/// Committed events in global-position order: what the relay reads.
pub trait OutboxSource: Send + Sync + 'static {
    /// Up to `limit` committed events with a position above `after` (from
    /// the start when `None`), in ascending position order.
    ///
    /// # Errors
    ///
    /// A [`StoreError`]; the relay retries with backoff.
    fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEvent>, StoreError>> + Send;

    /// The position of the last committed event, if known: for the relay's
    /// lag metric. Default: unknown.
    ///
    /// # Errors
    ///
    /// A [`StoreError`]; the lag is then not updated.
    fn head(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        std::future::ready(Ok(None))
    }
}

/// Where a relay keeps its checkpoint: the position of the last event it
/// published. Must be durable for the outbox to be: an in-memory checkpoint
/// starts from the beginning after a restart (correct, with duplicates).
pub trait CheckpointStore: Send + Sync + 'static {
    /// The checkpoint of the relay called `relay`, if it has one.
    ///
    /// # Errors
    ///
    /// A [`StoreError`]; the relay retries with backoff.
    fn load(&self, relay: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Saves `position` as the checkpoint of `relay`.
    ///
    /// # Errors
    ///
    /// A [`StoreError`]; the relay retries with backoff (without publishing
    /// more in between).
    fn save(
        &self,
        relay: &str,
        position: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Configures a [`Relay`]; [`build`](Self::build) validates.
#[must_use]
pub struct RelayBuilder {
    name: String,
    settings: RelaySettings,
    listeners: Listeners<PubSubEvent>,
}

impl RelayBuilder {
    /// Events read per batch. Default 256.
    pub const fn batch_size(mut self, n: usize) -> Self {
        self.settings.batch_size = n;
        self
    }

    /// How often to look for new events when caught up. Default 100 ms.
    pub const fn poll_interval(mut self, every: Duration) -> Self {
        self.settings.poll_interval = every;
        self
    }

    /// The first delay after a failure. Default 100 ms.
    pub const fn retry_delay(mut self, delay: Duration) -> Self {
        self.settings.retry_delay = delay;
        self
    }

    /// The cap on the retry delay. Default 10 s.
    pub const fn retry_delay_max(mut self, delay: Duration) -> Self {
        self.settings.retry_delay_max = delay;
        self
    }

    /// Replaces every setting.
    pub fn settings(mut self, settings: RelaySettings) -> Self {
        self.settings = settings;
        self
    }

    /// Adds a listener ([`PubSubEvent::Relayed`],
    /// [`PubSubEvent::RelayFailed`]).
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&PubSubEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Validates and builds the relay.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting, or `name`.
    pub fn build<Src, Ck, P>(
        self,
        source: Src,
        checkpoints: Ck,
        publisher: P,
    ) -> Result<Relay<Src, Ck, P>, ConfigError>
    where
        Src: OutboxSource,
        Ck: CheckpointStore,
        P: Publisher,
    {
        validate_name(&self.name)?;
        self.settings.validate()?;
        Ok(Relay {
            metrics: RelayMetrics::new(&self.name),
            name: self.name.into(),
            settings: self.settings,
            source,
            checkpoints,
            publisher,
            listeners: self.listeners,
            shared: Arc::new(RelayShared {
                wake: Notify::new(),
                position: AtomicU64::new(0),
                relayed: AtomicU64::new(0),
            }),
            position: None,
            loaded: false,
        })
    }
}

impl fmt::Debug for RelayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Publishes committed events from an [`OutboxSource`] through a
/// [`Publisher`], checkpointing in a [`CheckpointStore`].
pub struct Relay<Src, Ck, P> {
    name: Arc<str>,
    settings: RelaySettings,
    source: Src,
    checkpoints: Ck,
    publisher: P,
    metrics: RelayMetrics,
    listeners: Listeners<PubSubEvent>,
    shared: Arc<RelayShared>,
    /// The checkpoint, once loaded.
    position: Option<u64>,
    loaded: bool,
}

#[derive(Debug)]
struct RelayShared {
    wake: Notify,
    position: AtomicU64,
    relayed: AtomicU64,
}

/// Wakes a running relay and reads its progress. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RelayHandle {
    shared: Arc<RelayShared>,
}

impl RelayHandle {
    /// Makes the relay look for new events now (call it after a commit for
    /// low latency; the poll interval is the fallback).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// The last checkpoint saved (0 before the first).
    #[must_use]
    pub fn position(&self) -> u64 {
        self.shared.position.load(Ordering::Acquire)
    }

    /// Events published since the relay was built.
    #[must_use]
    pub fn relayed(&self) -> u64 {
        self.shared.relayed.load(Ordering::Relaxed)
    }
}

/// Why one relay step failed. Nothing after the failed event was published;
/// the checkpoint covers everything before it.
#[derive(Debug)]
pub enum RelayError {
    /// Reading events or the checkpoint failed.
    Store(StoreError),
    /// Publishing an event failed.
    Publish(PublishError),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "outbox relay: {e}"),
            Self::Publish(e) => write!(f, "outbox relay: {e}"),
        }
    }
}

impl std::error::Error for RelayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            Self::Publish(e) => Some(e),
        }
    }
}

impl Relay<(), (), ()> {
    /// A builder for a relay called `name` (its checkpoint key, and the
    /// label of its metrics).
    pub fn builder(name: impl Into<String>) -> RelayBuilder {
        RelayBuilder {
            name: name.into(),
            settings: RelaySettings::default(),
            listeners: Listeners::new(),
        }
    }
}

impl<Src, Ck, P> Relay<Src, Ck, P>
where
    Src: OutboxSource,
    Ck: CheckpointStore,
    P: Publisher,
{
    /// A handle to wake the relay and read its progress.
    #[must_use]
    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// One step: load the checkpoint (once), read a batch after it, publish
    /// each event in order, save the checkpoint. Returns how many events
    /// were published.
    ///
    /// # Errors
    ///
    /// A [`RelayError`]. When a publish fails after some of the batch was
    /// published, the checkpoint is saved up to the last one published
    /// first (if that save fails too, the store error is returned).
    pub async fn run_once(&mut self) -> Result<usize, RelayError> {
        if !self.loaded {
            self.position = self
                .checkpoints
                .load(&self.name)
                .await
                .map_err(RelayError::Store)?;
            self.loaded = true;
            self.publish_position();
        }
        let batch = self
            .source
            .read_after(self.position, self.settings.batch_size)
            .await
            .map_err(RelayError::Store)?;
        let mut published: Option<u64> = None;
        let mut count = 0usize;
        let mut failure = None;
        for event in batch {
            if self.position.is_some_and(|p| event.position <= p)
                || published.is_some_and(|p| event.position <= p)
            {
                // A source that repeats or reorders positions would break
                // the order guarantee: skip what is behind the checkpoint.
                tracing::warn!(name = %self.name, position = event.position, "source returned an event at or behind the checkpoint; skipped");
                continue;
            }
            match self.publisher.publish(event.message).await {
                Ok(()) => {
                    published = Some(event.position);
                    count += 1;
                    self.metrics.relayed.increment(1);
                    self.shared.relayed.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        if let Some(position) = published {
            self.checkpoints
                .save(&self.name, position)
                .await
                .map_err(RelayError::Store)?;
            self.position = Some(position);
            self.publish_position();
            tracing::debug!(name = %self.name, position, count, "relayed");
            self.listeners.emit_with(|| PubSubEvent::Relayed {
                relay: Arc::clone(&self.name),
                position,
                count,
            });
        }
        if let Ok(Some(head)) = self.source.head().await {
            #[allow(clippy::cast_precision_loss)]
            self.metrics
                .lag
                .set(head.saturating_sub(self.position.unwrap_or(0)) as f64);
        }
        match failure {
            Some(err) => Err(RelayError::Publish(err)),
            None => Ok(count),
        }
    }

    fn publish_position(&self) {
        let position = self.position.unwrap_or(0);
        self.shared.position.store(position, Ordering::Release);
        #[allow(clippy::cast_precision_loss)]
        self.metrics.position.set(position as f64);
    }

    /// Relays until `shutdown` completes: a batch at a time, at once while
    /// batches come back full, else after the poll interval or a
    /// [`RelayHandle::wake`]; after a failure, after a growing delay.
    pub async fn run_until<F: Future>(mut self, shutdown: F) {
        let mut shutdown = pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            let step = tokio::select! {
                biased;
                _ = &mut shutdown => return,
                step = self.run_once() => step,
            };
            let wait = match step {
                Ok(n) if n >= self.settings.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.settings.poll_interval
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let delay = self
                        .settings
                        .retry_delay
                        .checked_mul(1 << failures.saturating_sub(1).min(20))
                        .unwrap_or(self.settings.retry_delay_max)
                        .min(self.settings.retry_delay_max);
                    self.metrics.errors.increment(1);
                    tracing::warn!(name = %self.name, error = %err, retry_in = ?delay, "outbox relay failed; retrying");
                    self.listeners.emit_with(|| PubSubEvent::RelayFailed {
                        relay: Arc::clone(&self.name),
                        error: err.to_string(),
                        retry_in: delay,
                    });
                    delay
                }
            };
            let shared = Arc::clone(&self.shared);
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                () = shared.wake.notified(), if failures == 0 => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl<Src, Ck, P> fmt::Debug for Relay<Src, Ck, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// An in-memory outbox: a log of committed events, positions from 1.
/// Events staged in a [`MemoryTransaction`] become visible (get positions)
/// only when it commits. For tests and examples; it forgets everything with
/// the process.
#[derive(Clone, Debug, Default)]
pub struct MemoryOutbox {
    log: Arc<Mutex<Vec<OutboxEvent>>>,
}

impl MemoryOutbox {
    /// An empty outbox.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits one event at once; returns its position.
    pub fn append(&self, message: Message) -> u64 {
        let mut log = self.log.lock();
        let position = log.len() as u64 + 1;
        log.push(OutboxEvent::new(position, message));
        position
    }

    /// Starts a transaction: its events are invisible until it commits, and
    /// gone if it is dropped.
    #[must_use]
    pub fn begin(&self) -> MemoryTransaction {
        MemoryTransaction {
            outbox: self.clone(),
            staged: Vec::new(),
        }
    }

    /// Committed events.
    #[must_use]
    pub fn len(&self) -> usize {
        self.log.lock().len()
    }

    /// `true` when nothing was committed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Events staged in a [`MemoryOutbox`], invisible until [`commit`](Self::commit).
#[derive(Debug)]
pub struct MemoryTransaction {
    outbox: MemoryOutbox,
    staged: Vec<Message>,
}

impl MemoryTransaction {
    /// Stages an event.
    pub fn stage(&mut self, message: Message) {
        self.staged.push(message);
    }

    /// Commits every staged event at once (consecutive positions); returns
    /// the last position, `None` if nothing was staged.
    #[must_use]
    pub fn commit(self) -> Option<u64> {
        let mut log = self.outbox.log.lock();
        let mut last = None;
        for message in self.staged {
            let position = log.len() as u64 + 1;
            log.push(OutboxEvent::new(position, message));
            last = Some(position);
        }
        last
    }
}

impl OutboxSource for MemoryOutbox {
    fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEvent>, StoreError>> + Send {
        let log = self.log.lock();
        let start = usize::try_from(after.unwrap_or(0)).unwrap_or(usize::MAX);
        let events = log.iter().skip(start).take(limit).cloned().collect();
        std::future::ready(Ok(events))
    }

    fn head(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        let len = self.log.lock().len() as u64;
        std::future::ready(Ok((len > 0).then_some(len)))
    }
}

/// Checkpoints kept in memory (lost with the process): for tests, or a relay
/// whose consumers de-duplicate everything anyway.
#[derive(Clone, Debug, Default)]
pub struct MemoryCheckpoints {
    map: Arc<Mutex<HashMap<String, u64>>>,
}

impl MemoryCheckpoints {
    /// No checkpoints.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

/// The SQL checkpoint stores (their tables and queries live in `backend`).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
macro_rules! sql_checkpoint_store {
    ($checkpoints:ty) => {
        impl CheckpointStore for $checkpoints {
            async fn load(&self, relay: &str) -> Result<Option<u64>, StoreError> {
                self.load_checkpoint(relay).await
            }

            async fn save(&self, relay: &str, position: u64) -> Result<(), StoreError> {
                self.save_checkpoint(relay, position).await
            }
        }
    };
}

#[cfg(feature = "postgres")]
sql_checkpoint_store!(crate::backend::postgres::PgCheckpoints);
#[cfg(feature = "sqlite")]
sql_checkpoint_store!(crate::backend::sqlite::SqliteCheckpoints);

impl CheckpointStore for MemoryCheckpoints {
    fn load(&self, relay: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        std::future::ready(Ok(self.map.lock().get(relay).copied()))
    }

    fn save(
        &self,
        relay: &str,
        position: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.map.lock().insert(relay.to_owned(), position);
        std::future::ready(Ok(()))
    }
}
