//! [`EventStore`]: a named store over a [`Backend`], with metrics, tracing,
//! listeners, snapshot checks and subscriptions; [`EventStoreBuilder`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::Listeners;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{AnyBackend, Backend};
use crate::envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::error::{EventStoreError, StoreError};
use crate::event::EventStoreEvent;
use crate::handle::EventStoreHandle;
use crate::metrics::Metrics;
use crate::settings::EventStoreSettings;
use crate::shared::Figures;
use crate::snapshot::Snapshot;
use crate::upcast::Upcasters;

struct Inner<B> {
    name: Arc<str>,
    backend: B,
    metrics: Metrics,
    figures: Arc<Figures>,
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

impl<B: Backend> EventStore<B> {
    /// A store over `backend`, from a validated builder's parts.
    pub(crate) fn from_parts(
        name: Arc<str>,
        backend: B,
        settings: &EventStoreSettings,
        listeners: Listeners<EventStoreEvent>,
        upcasters: Upcasters,
    ) -> Self {
        let metrics = Metrics::new(&name);
        let figures = Arc::new(Figures::new(Arc::clone(&name), backend.kind(), settings));
        Self {
            inner: Arc::new(Inner {
                name,
                backend,
                metrics,
                figures,
                listeners,
                head: watch::Sender::new(0),
                page_size: settings.page_size,
                poll_interval: settings.poll_interval,
                upcasters,
            }),
        }
    }

    /// A handle on the store's figures (for an admin API or dashboard).
    #[must_use]
    pub fn handle(&self) -> EventStoreHandle {
        EventStoreHandle {
            figures: Arc::clone(&self.inner.figures),
        }
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
        let figures = &*inner.figures;
        match &result {
            Ok(done) if done.already_stored => Figures::add(&figures.already_stored, 1),
            Ok(done) => {
                Figures::add(&figures.appends, 1);
                Figures::add(&figures.events_appended, done.positions.len() as u64);
            }
            Err(EventStoreError::Conflict(_)) => Figures::add(&figures.conflicts, 1),
            Err(_) => Figures::add(&figures.append_errors, 1),
        }
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
        self.inner
            .figures
            .head
            .fetch_max(position, std::sync::atomic::Ordering::Relaxed);
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
                Figures::add(&inner.figures.events_read, events.len() as u64);
                if !inner.upcasters.is_empty() {
                    for event in events.iter_mut() {
                        if !inner.upcasters.apply(event) {
                            inner.metrics.upcast_failures.increment(1);
                            Figures::add(&inner.figures.upcast_failures, 1);
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
                Figures::add(&self.inner.figures.read_errors, 1);
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
        let (store, checkpoint) = (&self.store, self.checkpoint);
        let event = follow(store, &mut self.head, &mut self.buffer, || {
            store.read_all(checkpoint, store.inner.page_size)
        })
        .await?;
        self.checkpoint = event.position;
        Ok(event)
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
        let (store, stream, from) = (
            &self.store,
            &*self.stream,
            self.checkpoint.saturating_add(1),
        );
        let event = follow(store, &mut self.head, &mut self.buffer, || {
            store.read_stream(stream, from, store.inner.page_size)
        })
        .await?;
        self.checkpoint = event.version;
        Ok(event)
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

/// The loop both subscriptions run: the next buffered event, else `read` the
/// page after the checkpoint; when it is empty, wait for an append through
/// this store or the poll interval, and read again. Cancel-safe: an event
/// leaves the buffer only when it is returned.
async fn follow<B, F, Fut>(
    store: &EventStore<B>,
    head: &mut watch::Receiver<u64>,
    buffer: &mut VecDeque<RecordedEvent>,
    read: F,
) -> Result<RecordedEvent, StoreError>
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<RecordedEvent>, StoreError>>,
{
    loop {
        if let Some(event) = buffer.pop_front() {
            return Ok(event);
        }
        // Marked seen before reading: an append committed after the read
        // started wakes the wait below.
        head.borrow_and_update();
        let page = read().await?;
        if page.is_empty() {
            let poll = store.inner.poll_interval;
            tokio::select! {
                _ = head.changed() => {}
                () = tokio::time::sleep(poll) => {}
            }
        } else {
            buffer.extend(page);
        }
    }
}
