//! [`EventStore`]: a named store over a [`Backend`], with metrics, tracing,
//! listeners, snapshot checks and subscriptions; [`EventStoreBuilder`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, Listeners};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{AnyBackend, Backend};
use crate::envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::error::{EventStoreError, InvalidEvent, StoreError};
use crate::event::EventStoreEvent;
use crate::metrics::Metrics;
use crate::settings::EventStoreSettings;
use crate::snapshot::Snapshot;
use crate::upcast::Upcasters;

struct Inner<B> {
    name: Arc<str>,
    backend: B,
    metrics: Metrics,
    listeners: Listeners<EventStoreEvent>,
    /// The last position appended through this store: wakes subscriptions.
    head: watch::Sender<u64>,
    page_size: usize,
    poll_interval: Duration,
    upcasters: Upcasters,
}

/// An event store: appends with an expected version, idempotent by event
/// id; reads of a stream and of every stream in global order; snapshots;
/// subscriptions that catch up then follow.
///
/// Cloning is cheap and shares everything (backend, pool, metrics,
/// listeners): cloning does not create a new store.
pub struct EventStore<B = AnyBackend> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for EventStore<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for EventStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// Builds an [`EventStore`]: one setter per [`EventStoreSettings`] field,
/// listeners, then [`open`](Self::open) (the backend the URL selects) or
/// [`build`](Self::build) (a backend of the caller's).
#[must_use]
pub struct EventStoreBuilder {
    name: Arc<str>,
    settings: EventStoreSettings,
    listeners: Listeners<EventStoreEvent>,
    upcasters: Upcasters,
}

impl fmt::Debug for EventStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStoreBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("upcasters", &self.upcasters)
            .finish_non_exhaustive()
    }
}

impl EventStoreBuilder {
    /// Every setting at once.
    pub fn settings(mut self, settings: EventStoreSettings) -> Self {
        self.settings = settings;
        self
    }

    /// [`EventStoreSettings::url`].
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.settings.url = url.into();
        self
    }

    /// [`EventStoreSettings::table_prefix`].
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.table_prefix = prefix.into();
        self
    }

    /// [`EventStoreSettings::max_connections`].
    pub fn max_connections(mut self, n: u32) -> Self {
        self.settings.max_connections = n;
        self
    }

    /// [`EventStoreSettings::page_size`].
    pub fn page_size(mut self, n: usize) -> Self {
        self.settings.page_size = n;
        self
    }

    /// [`EventStoreSettings::poll_interval`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval;
        self
    }

    /// [`EventStoreSettings::busy_timeout`].
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.settings.busy_timeout = timeout;
        self
    }

    /// Adds a listener, called with every [`EventStoreEvent`].
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&EventStoreEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Adds an upcaster: every event read whose type and schema version are
    /// `from` is handed on as `to`, its payload passed through `f`. Steps
    /// chain: an event of `("Deposited", 1)` with steps `1 → 2` and
    /// `2 → ("MoneyDeposited", 1)` is read as `("MoneyDeposited", 1)`, `f`s
    /// applied in that order. Nothing stored changes.
    ///
    /// If `f` fails, the event is handed on as stored, marked
    /// ([`RecordedEvent::is_upcast`] is `false`), and its
    /// [`decode`](RecordedEvent::decode) fails with a
    /// [`DecodeError`](crate::error::DecodeError) naming the stream,
    /// version, type and the upcaster's error: a read never fails for one
    /// bad event, and a projection can park it.
    ///
    /// [`build`](Self::build) / [`open`](Self::open) refuse (field
    /// `upcaster`) two steps from the same `from`, a step to itself, an
    /// empty type, and a chain that loops or is longer than
    /// [`MAX_UPCAST_CHAIN`](crate::MAX_UPCAST_CHAIN).
    pub fn upcaster<F>(mut self, from: (&str, u32), to: (&str, u32), f: F) -> Self
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, palisade_core::BoxError>
            + Send
            + Sync
            + 'static,
    {
        self.upcasters.add(from, to, Arc::new(f));
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        self.upcasters.check()
    }

    /// Validates, then opens the backend the URL selects (creating its
    /// tables).
    ///
    /// # Errors
    ///
    /// An [`EventStoreError::Invalid`] for a bad setting, a
    /// [`StoreError`] if the database cannot be opened or migrated.
    pub async fn open(self) -> Result<EventStore<AnyBackend>, EventStoreError> {
        self.check()
            .map_err(|e| InvalidEvent::new("settings", e.to_string()))?;
        let backend = AnyBackend::open(&self.settings).await?;
        Ok(self.finish(backend))
    }

    /// Validates, then builds a store over `backend` (its own URL and table
    /// settings are the backend's; the page size and poll interval apply).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad setting.
    pub fn build<B: Backend>(self, backend: B) -> Result<EventStore<B>, ConfigError> {
        self.check()?;
        Ok(self.finish(backend))
    }

    fn finish<B: Backend>(self, backend: B) -> EventStore<B> {
        let metrics = Metrics::new(&self.name);
        EventStore {
            inner: Arc::new(Inner {
                name: self.name,
                backend,
                metrics,
                listeners: self.listeners,
                head: watch::Sender::new(0),
                page_size: self.settings.page_size,
                poll_interval: self.settings.poll_interval,
                upcasters: self.upcasters,
            }),
        }
    }
}

impl EventStore<AnyBackend> {
    /// A builder for a store called `name` (labels metrics and logs).
    pub fn builder(name: impl Into<Arc<str>>) -> EventStoreBuilder {
        EventStoreBuilder {
            name: name.into(),
            settings: EventStoreSettings::default(),
            listeners: Listeners::new(),
            upcasters: Upcasters::default(),
        }
    }

    /// An in-memory store with default settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on `name` if it is empty.
    pub fn in_memory(name: impl Into<Arc<str>>) -> Result<Self, ConfigError> {
        Self::builder(name).build(AnyBackend::Memory(
            crate::backend::memory::MemoryBackend::new(),
        ))
    }
}

impl<B: Backend> EventStore<B> {
    /// The store's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The backend, for what only it offers (a SQL backend's
    /// `append_in` inside the caller's transaction).
    #[must_use]
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// Appends `events` to `stream` if its version matches `expected`: all
    /// of them or (on any error) none. Returns the stream's new version and
    /// each event's global position.
    ///
    /// If every event id is already stored in this stream, in this order
    /// (a retried request), nothing is written and the original result is
    /// returned with [`AppendResult::already_stored`] set, whatever
    /// `expected` says. A batch mixing stored and new ids is refused with
    /// [`EventStoreError::Duplicate`].
    ///
    /// # Errors
    ///
    /// [`EventStoreError::Conflict`] (expected version), `Duplicate` (ids),
    /// `Invalid` (names, batch size), `Store` (the backend; nothing was
    /// written).
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        let inner = &*self.inner;
        let started = Instant::now();
        let result = inner.backend.append(stream, expected, events).await;
        inner
            .metrics
            .append_duration
            .record(started.elapsed().as_secs_f64());
        inner
            .metrics
            .append_outcome(result.as_ref().map(AppendResult::already_stored));
        match &result {
            Ok(done) if !done.already_stored => {
                if let Some(position) = done.last_position() {
                    inner
                        .metrics
                        .events_appended
                        .increment(done.positions.len() as u64);
                    self.notify_appended(position);
                    tracing::debug!(
                        name = %inner.name, stream, version = done.version, position,
                        count = done.positions.len(), "appended"
                    );
                    inner.listeners.emit_with(|| EventStoreEvent::Appended {
                        name: Arc::clone(&inner.name),
                        stream: stream.into(),
                        version: done.version,
                        position,
                        count: done.positions.len(),
                    });
                }
            }
            Ok(done) => {
                tracing::debug!(name = %inner.name, stream, version = done.version, "append already stored");
            }
            Err(EventStoreError::Conflict(c)) => {
                tracing::debug!(name = %inner.name, stream, actual = c.actual(), "append conflict");
                inner.listeners.emit_with(|| EventStoreEvent::Conflict {
                    name: Arc::clone(&inner.name),
                    stream: stream.into(),
                    expected: c.expected(),
                    actual: c.actual(),
                });
            }
            Err(EventStoreError::Store(e)) => {
                tracing::warn!(name = %inner.name, stream, error = %e, source = ?std::error::Error::source(e), "append failed");
            }
            Err(e) => tracing::debug!(name = %inner.name, stream, error = %e, "append refused"),
        }
        result
    }

    /// Tells this store's subscriptions that `position` was committed
    /// (call it after committing a SQL backend's `append_in` transaction;
    /// otherwise they see the events at their next poll).
    pub fn notify_appended(&self, position: u64) {
        let head = &self.inner.head;
        head.send_if_modified(|h| {
            if position > *h {
                *h = position;
                true
            } else {
                false
            }
        });
        self.inner.metrics.head.set(position as f64);
    }

    /// Counts a read and runs the upcasters on what it returned.
    fn counted(
        &self,
        mut result: Result<Vec<RecordedEvent>, StoreError>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match &mut result {
            Ok(events) => {
                let inner = &*self.inner;
                inner.metrics.events_read.increment(events.len() as u64);
                if !inner.upcasters.is_empty() {
                    for event in events.iter_mut() {
                        if !inner.upcasters.apply(event) {
                            inner.metrics.upcast_failures.increment(1);
                            tracing::warn!(
                                name = %inner.name, stream = event.stream(), version = event.version(),
                                event_type = event.event_type(), schema_version = event.schema_version(),
                                error = %event.upcast_failure.as_deref().map_or_else(String::new, ToString::to_string),
                                "upcaster failed; event handed on as stored"
                            );
                        }
                    }
                }
            }
            Err(e) => {
                self.inner.metrics.read_errors.increment(1);
                tracing::warn!(name = %self.inner.name, error = %e, "read failed");
            }
        }
        result
    }

    /// Up to `max` events of `stream` from version `from` (inclusive; the
    /// first event is version `1`), oldest first.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let result = self.inner.backend.read_stream(stream, from, max).await;
        self.counted(result)
    }

    /// The last `max` events of `stream`, newest first.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn read_last(
        &self,
        stream: &str,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_backward(stream, u64::MAX, max).await
    }

    /// Up to `max` events of `stream` at version `from` or below, newest
    /// first.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn read_stream_backward(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let result = self
            .inner
            .backend
            .read_stream_backward(stream, from, max)
            .await;
        self.counted(result)
    }

    /// Up to `max` events of every stream after global position `after`
    /// (`0`: from the start), in position order. Gap-safe: an event this
    /// read does not return can only commit at a position after the last
    /// one it returns (see the crate docs, "Ordering").
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let result = self.inner.backend.read_all(after, max).await;
        self.counted(result)
    }

    /// The stream's version (`0`: no stream).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        self.inner.backend.stream_version(stream).await
    }

    /// The last committed global position (`0`: empty).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.backend.head_position().await
    }

    /// Stores a snapshot of a stream, replacing the previous one.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.backend.save_snapshot(snapshot).await
    }

    /// The stream's snapshot if it can be trusted as a shortcut: of
    /// `schema_version`, and not ahead of the stream (a snapshot ahead of
    /// its events was taken of events that are not there, or of another
    /// store). Otherwise `None`: fold the stream from the start. Fold the
    /// events after [`Snapshot::version`] onto it.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from the backend.
    pub async fn load_snapshot(
        &self,
        stream: &str,
        schema_version: u32,
    ) -> Result<Option<Snapshot>, StoreError> {
        let Some(snapshot) = self.inner.backend.load_snapshot(stream).await? else {
            return Ok(None);
        };
        if snapshot.schema_version != schema_version {
            tracing::debug!(name = %self.inner.name, stream, stored = snapshot.schema_version, schema_version, "snapshot of another schema version ignored");
            return Ok(None);
        }
        let version = self.inner.backend.stream_version(stream).await?;
        if snapshot.version > version {
            tracing::warn!(name = %self.inner.name, stream, snapshot = snapshot.version, version, "snapshot ahead of its stream ignored");
            return Ok(None);
        }
        Ok(Some(snapshot))
    }

    /// A subscription to every stream, from the event after global
    /// position `after` (a stored checkpoint, or `0`), catching up and
    /// then following live appends.
    #[must_use]
    pub fn subscribe_all(&self, after: u64) -> Subscription<B> {
        Subscription {
            head: self.inner.head.subscribe(),
            store: self.clone(),
            checkpoint: after,
            buffer: VecDeque::new(),
        }
    }

    /// A subscription to one stream, from the event after version `after`
    /// (`0`: from its first event), catching up and then following live
    /// appends to it, like [`subscribe_all`](Self::subscribe_all) (one
    /// loop, nothing lost or repeated at the switch). For a process manager
    /// or a read model of one aggregate.
    #[must_use]
    pub fn subscribe_stream(&self, stream: &str, after: u64) -> StreamSubscription<B> {
        StreamSubscription {
            head: self.inner.head.subscribe(),
            store: self.clone(),
            stream: stream.into(),
            checkpoint: after,
            buffer: VecDeque::new(),
        }
    }
}

/// Every stream's events in global order, from a checkpoint on: see
/// [`EventStore::subscribe_all`].
///
/// Catching up and following live are one loop: read the page after the
/// last event returned; if it is empty, wait for an append through this
/// store or for the poll interval, and read again. There is no switch from
/// a catch-up source to a live one, so nothing is lost or repeated at it,
/// and since reads by position are gap-safe nothing committed later at a
/// lower position is skipped. At most one page is held in memory.
pub struct Subscription<B = AnyBackend> {
    store: EventStore<B>,
    head: watch::Receiver<u64>,
    checkpoint: u64,
    buffer: VecDeque<RecordedEvent>,
}

impl<B: fmt::Debug> fmt::Debug for Subscription<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("store", &self.store)
            .field("checkpoint", &self.checkpoint)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Subscription<B> {
    /// The next event, waiting for one if caught up. Cancel-safe: dropping
    /// the future loses nothing (the event is returned by the next call).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from a read; the subscription stays usable and the
    /// next call retries from the same checkpoint.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.checkpoint = event.position;
                return Ok(event);
            }
            // Marked seen before reading: an append committed after the read
            // started wakes the wait below.
            self.head.borrow_and_update();
            let page = self
                .store
                .read_all(self.checkpoint, self.store.inner.page_size)
                .await?;
            if page.is_empty() {
                let poll = self.store.inner.poll_interval;
                tokio::select! {
                    _ = self.head.changed() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            } else {
                self.buffer.extend(page);
            }
        }
    }

    /// Up to `max` events already available (never waits; an empty vector
    /// when caught up).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from a read.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if self.buffer.is_empty() {
            let page = self
                .store
                .read_all(self.checkpoint, self.store.inner.page_size)
                .await?;
            self.buffer.extend(page);
        }
        let n = max.min(self.buffer.len());
        let batch: Vec<RecordedEvent> = self.buffer.drain(..n).collect();
        if let Some(last) = batch.last() {
            self.checkpoint = last.position;
        }
        Ok(batch)
    }

    /// The global position of the last event returned (store it to resume).
    #[must_use]
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }
}

/// One stream's events in version order, from a checkpoint on: see
/// [`EventStore::subscribe_stream`].
///
/// The same loop as [`Subscription`]: read the page after the last version
/// returned; if it is empty, wait for an append through this store or for
/// the poll interval. A stream's versions are contiguous and committed in
/// order, so reading by version skips nothing. At most one page is held.
pub struct StreamSubscription<B = AnyBackend> {
    store: EventStore<B>,
    stream: Arc<str>,
    head: watch::Receiver<u64>,
    checkpoint: u64,
    buffer: VecDeque<RecordedEvent>,
}

impl<B: fmt::Debug> fmt::Debug for StreamSubscription<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSubscription")
            .field("store", &self.store)
            .field("stream", &self.stream)
            .field("checkpoint", &self.checkpoint)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> StreamSubscription<B> {
    /// The stream's next event, waiting for one if caught up. Cancel-safe:
    /// dropping the future loses nothing.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] from a read; the subscription stays usable and the
    /// next call retries from the same checkpoint.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.checkpoint = event.version;
                return Ok(event);
            }
            self.head.borrow_and_update();
            let page = self
                .store
                .read_stream(
                    &self.stream,
                    self.checkpoint.saturating_add(1),
                    self.store.inner.page_size,
                )
                .await?;
            if page.is_empty() {
                let poll = self.store.inner.poll_interval;
                tokio::select! {
                    _ = self.head.changed() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            } else {
                self.buffer.extend(page);
            }
        }
    }

    /// The version of the last event returned (store it to resume).
    #[must_use]
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The stream followed.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }
}
