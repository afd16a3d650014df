//! [`Projection`]: a read model fed by events, applied inside the read
//! model's transaction; [`ProjectionRunner`]: the task that feeds it, with
//! its checkpoint in the same transaction, parking, rebuilds and one active
//! runner per projection.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use palisade_core::{BoxError, ConfigError, Listeners, Registry};
use palisade_event_store::backend::Backend;
use palisade_event_store::{EventStore, RecordedEvent};
use serde::de::DeserializeOwned;

use crate::backend::ProjectionBackend;
use crate::error::ProjectionError;
use crate::event::CqrsEvent;
use crate::handle::{Control, ProjectionHandle, Shared};
use crate::parked::{ParkedEvent, error_chain};
use crate::settings::{ProjectionSettings, validate_name};

/// A read model fed by events: [`apply`](Self::apply) writes one event's
/// effect through the read model's transaction, which also carries the
/// projection's checkpoint, so the effect and the checkpoint commit
/// together. After a crash the runner resumes at the checkpoint: every
/// event's effect is in the read model exactly once, with no need for the
/// handler to be idempotent.
///
/// `Db` is the read model's sqlx database (`sqlx::Sqlite`,
/// `sqlx::Postgres`).
pub trait Projection<Db: sqlx::Database>: Send + Sync + 'static {
    /// The events it reads (an aggregate's event enum); a payload that does
    /// not decode is parked.
    type Event: DeserializeOwned + Send + Sync;

    /// Whether the projection wants `event` (by its
    /// [`event_type`](RecordedEvent::event_type) or
    /// [`stream`](RecordedEvent::stream)); the others are skipped, the
    /// checkpoint still moves past them. Default: every event.
    fn handles(&self, event: &RecordedEvent) -> bool {
        let _ = event;
        true
    }

    /// Applies `event` through `tx`. An error rolls the transaction back;
    /// the event is tried again, alone, up to
    /// [`max_attempts`](ProjectionSettings::max_attempts) times, then
    /// parked.
    fn apply(
        &self,
        tx: &mut sqlx::Transaction<'static, Db>,
        event: &Self::Event,
        envelope: &RecordedEvent,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Clears the read model (for a rebuild from zero), through `tx`.
    fn reset(
        &self,
        tx: &mut sqlx::Transaction<'static, Db>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Starts projection runners: [`ProjectionRunner::builder`].
#[derive(Debug)]
pub struct ProjectionRunner;

impl ProjectionRunner {
    /// A builder for the runner of projection `name` (its checkpoint's key;
    /// labels metrics and logs), reading `store` and writing through
    /// `backend` (the read model's database).
    pub fn builder<P, K, B>(
        name: impl Into<Arc<str>>,
        projection: P,
        backend: K,
        store: EventStore<B>,
    ) -> ProjectionRunnerBuilder<P, K, B>
    where
        K: ProjectionBackend,
        P: Projection<K::Db>,
        B: Backend,
    {
        ProjectionRunnerBuilder {
            name: name.into(),
            projection,
            backend,
            store,
            settings: ProjectionSettings::default(),
            listeners: Listeners::new(),
            registry: None,
        }
    }
}

/// Builds and starts a projection runner.
#[must_use]
pub struct ProjectionRunnerBuilder<P, K, B> {
    name: Arc<str>,
    projection: P,
    backend: K,
    store: EventStore<B>,
    settings: ProjectionSettings,
    listeners: Listeners<CqrsEvent>,
    registry: Option<Registry<ProjectionHandle>>,
}

impl<P, K: fmt::Debug, B> fmt::Debug for ProjectionRunnerBuilder<P, K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunnerBuilder")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<P, K, B> ProjectionRunnerBuilder<P, K, B>
where
    K: ProjectionBackend,
    P: Projection<K::Db>,
    B: Backend,
{
    /// Every setting at once.
    pub fn settings(mut self, settings: ProjectionSettings) -> Self {
        self.settings = settings;
        self
    }

    /// [`ProjectionSettings::batch_size`].
    pub fn batch_size(mut self, n: usize) -> Self {
        self.settings.batch_size = n;
        self
    }

    /// [`ProjectionSettings::max_attempts`].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.settings.max_attempts = n;
        self
    }

    /// [`ProjectionSettings::retry_backoff`].
    pub fn retry_backoff(mut self, backoff: std::time::Duration) -> Self {
        self.settings.retry_backoff = backoff;
        self
    }

    /// [`ProjectionSettings::lock_retry_interval`].
    pub fn lock_retry_interval(mut self, interval: std::time::Duration) -> Self {
        self.settings.lock_retry_interval = interval;
        self
    }

    /// Adds a listener, called with every [`CqrsEvent`].
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&CqrsEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the handle in `registry`. A projection already running
    /// under this name in the registry is not started twice: its handle is
    /// returned (a stopped one is replaced).
    pub fn registry(mut self, registry: &Registry<ProjectionHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Validates, creates the backend's tables, reads the checkpoint and
    /// spawns the runner on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ProjectionError`] with operation `settings` for a bad setting
    /// (its source is the [`ConfigError`]), or `migrate` / `read checkpoint`
    /// if the read-model database fails.
    pub async fn start(self) -> Result<ProjectionHandle, ProjectionError> {
        let config = |e: ConfigError| ProjectionError::new(&self.name, "settings", e);
        validate_name(&self.name).map_err(config)?;
        self.settings.validate().map_err(config)?;
        if let Some(registry) = &self.registry
            && let Some(running) = registry.get(&self.name)
            && running.is_running()
        {
            return Ok(running);
        }
        self.backend
            .migrate()
            .await
            .map_err(|e| ProjectionError::new(&self.name, "migrate", e))?;
        let checkpoint = self
            .backend
            .checkpoint(&self.name)
            .await
            .map_err(|e| ProjectionError::new(&self.name, "read checkpoint", e))?;
        let shared = Arc::new(Shared::new(
            Arc::clone(&self.name),
            self.settings,
            self.listeners,
        ));
        shared.set_checkpoint(checkpoint);
        if let Ok(head) = self.store.head_position().await {
            shared.set_head(head);
        }
        let runner = Arc::new(Runner {
            shared: Arc::clone(&shared),
            projection: self.projection,
            backend: self.backend,
            store: self.store,
        });
        let handle = ProjectionHandle {
            shared: Arc::clone(&shared),
            control: Arc::clone(&runner) as Arc<dyn Control>,
        };
        let task = tokio::spawn(runner.run());
        *shared.task.lock() = Some(task.abort_handle());
        if let Some(registry) = &self.registry {
            // A stopped runner's handle is replaced.
            registry.insert(&shared.name, handle.clone());
        }
        Ok(handle)
    }
}

struct Runner<P, K, B> {
    shared: Arc<Shared>,
    projection: P,
    backend: K,
    store: EventStore<B>,
}

/// How applying a slice of events ended.
enum Applied {
    /// Committed, with the checkpoint at this position.
    Done(u64),
    /// The handler failed on the event at this index: rolled back.
    Failed(usize, BoxError),
    /// The stored checkpoint is not the one the batch started from (a
    /// rebuild, or another runner): rolled back.
    Moved,
}

impl<P, K, B> Runner<P, K, B>
where
    K: ProjectionBackend,
    P: Projection<K::Db>,
    B: Backend,
{
    fn name(&self) -> &Arc<str> {
        &self.shared.name
    }

    async fn run(self: Arc<Self>) {
        let interval = self.shared.settings.lock_retry_interval;
        loop {
            match self.backend.try_lock(self.name()).await {
                Ok(Some(mut lease)) => {
                    self.shared.set_active(true);
                    self.run_active(&mut lease).await;
                    drop(lease);
                    self.shared.set_active(false);
                }
                Ok(None) => {
                    self.shared.set_active(false);
                    // On standby: follow the active runner's checkpoint for
                    // read-your-writes waits and the lag.
                    if let Ok(checkpoint) = self.backend.checkpoint(self.name()).await {
                        self.shared.set_checkpoint(checkpoint);
                    }
                    if let Ok(head) = self.store.head_position().await {
                        self.shared.set_head(head);
                    }
                    tokio::time::sleep(interval).await;
                }
                Err(e) => {
                    tracing::warn!(name = %self.name(), error = %e, "projection lock failed");
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }

    /// Feeds the projection while this runner holds the lock. Returns if
    /// the lease is lost or the read-model database fails (the lease is
    /// then taken again).
    async fn run_active(&self, lease: &mut K::Lease) {
        let backoff = self.shared.settings.retry_backoff;
        let interval = self.shared.settings.lock_retry_interval;
        let batch_size = self.shared.settings.batch_size;
        let mut checkpoint = loop {
            match self.backend.checkpoint(self.name()).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(name = %self.name(), error = %e, "reading the checkpoint failed");
                    tokio::time::sleep(backoff).await;
                }
            }
        };
        self.shared.set_checkpoint(checkpoint);
        let mut subscription = self.store.subscribe_all(checkpoint);
        loop {
            let first = tokio::select! {
                next = subscription.next() => next,
                () = tokio::time::sleep(interval) => {
                    if !self.backend.lease_alive(lease).await {
                        tracing::warn!(name = %self.name(), "projection lock lost");
                        return;
                    }
                    continue;
                }
                () = self.shared.reload.notified() => {
                    match self.backend.checkpoint(self.name()).await {
                        Ok(c) => checkpoint = c,
                        Err(e) => {
                            tracing::warn!(name = %self.name(), error = %e, "reading the checkpoint failed");
                            return;
                        }
                    }
                    self.shared.set_checkpoint(checkpoint);
                    subscription = self.store.subscribe_all(checkpoint);
                    continue;
                }
            };
            let mut batch = match first {
                Ok(event) => vec![event],
                Err(e) => {
                    tracing::warn!(name = %self.name(), error = %e, "reading events failed");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if batch_size > 1
                && let Ok(more) = subscription.next_batch(batch_size - 1).await
            {
                batch.extend(more);
            }
            match self.process(&batch, checkpoint).await {
                Ok(done) => {
                    checkpoint = done;
                    self.shared.set_checkpoint(checkpoint);
                }
                Err(moved) => {
                    // Rebuilt, another runner, or the database failed:
                    // start again from the stored checkpoint.
                    if let Some(error) = moved {
                        tracing::warn!(name = %self.name(), error = %error, "projection batch failed");
                        tokio::time::sleep(backoff).await;
                    }
                    match self.backend.checkpoint(self.name()).await {
                        Ok(c) => checkpoint = c,
                        Err(e) => {
                            tracing::warn!(name = %self.name(), error = %e, "reading the checkpoint failed");
                            return;
                        }
                    }
                    self.shared.set_checkpoint(checkpoint);
                    subscription = self.store.subscribe_all(checkpoint);
                }
            }
            if let Ok(head) = self.store.head_position().await {
                self.shared.set_head(head);
            }
            if !self.backend.lease_alive(lease).await {
                tracing::warn!(name = %self.name(), "projection lock lost");
                return;
            }
        }
    }

    /// Applies `batch` (whose first event follows `checkpoint`): one
    /// transaction for the whole batch when every handler succeeds; else
    /// the events before the failing one, then the failing one alone with
    /// retries, parked if they all fail, and so on. Returns the new
    /// checkpoint, or `Err` when the batch must be read again from the
    /// stored checkpoint (`Some` error: the database failed).
    async fn process(
        &self,
        batch: &[RecordedEvent],
        checkpoint: u64,
    ) -> Result<u64, Option<sqlx::Error>> {
        let settings = &self.shared.settings;
        let mut checkpoint = checkpoint;
        let mut rest = batch;
        let mut limit = rest.len();
        // Attempts at `rest[0]` so far; the error of the event after the
        // prefix being committed, which failed once in the batch.
        let mut attempts = 0;
        let mut pending: Option<BoxError> = None;
        while !rest.is_empty() {
            let failed = match self.apply(&rest[..limit], checkpoint).await.map_err(Some)? {
                Applied::Done(done) => {
                    checkpoint = done;
                    rest = &rest[limit..];
                    limit = rest.len();
                    attempts = 0;
                    match pending.take() {
                        Some(error) if !rest.is_empty() => error,
                        _ => continue,
                    }
                }
                Applied::Moved => return Err(None),
                Applied::Failed(index, error) if index > 0 => {
                    // Commit what precedes the failing event first.
                    limit = index;
                    pending = Some(error);
                    continue;
                }
                Applied::Failed(_, error) => error,
            };
            // `rest[0]` failed.
            attempts += 1;
            let event = &rest[0];
            let reason = error_chain(&*failed);
            if attempts < settings.max_attempts {
                tracing::debug!(name = %self.name(), position = event.position(), attempt = attempts, error = %reason, "projection handler failed; retrying");
                limit = 1;
                tokio::time::sleep(settings.retry_backoff).await;
                continue;
            }
            if !self
                .park_alone(event, checkpoint, &reason)
                .await
                .map_err(Some)?
            {
                return Err(None);
            }
            checkpoint = event.position();
            rest = &rest[1..];
            limit = rest.len();
            attempts = 0;
        }
        Ok(checkpoint)
    }

    /// One transaction: check the checkpoint, apply `events`, move the
    /// checkpoint past them, commit.
    async fn apply(
        &self,
        events: &[RecordedEvent],
        checkpoint: u64,
    ) -> Result<Applied, sqlx::Error> {
        let name = self.name();
        let mut tx = self.backend.begin().await?;
        let stored = self.backend.lock_checkpoint(&mut tx, name).await?;
        if stored != checkpoint {
            tx.rollback().await?;
            return Ok(Applied::Moved);
        }
        let mut parked = 0;
        for (index, recorded) in events.iter().enumerate() {
            if !self.projection.handles(recorded) {
                continue;
            }
            match recorded.decode::<P::Event>() {
                Ok(event) => {
                    if let Err(error) = self.projection.apply(&mut tx, &event, recorded).await {
                        tx.rollback().await?;
                        return Ok(Applied::Failed(index, error));
                    }
                }
                Err(error) => {
                    // Undecodable: no retry would help. Parked in the same
                    // transaction as its neighbours' effects.
                    let reason = error_chain(&error);
                    self.backend.park(&mut tx, name, recorded, &reason).await?;
                    parked += 1;
                    self.parked_event(recorded, reason);
                }
            }
        }
        let Some(last) = events.last() else {
            tx.rollback().await?;
            return Ok(Applied::Done(checkpoint));
        };
        self.backend
            .set_checkpoint(&mut tx, name, last.position())
            .await?;
        tx.commit().await?;
        let count = events.len() as u64;
        self.shared.applied.fetch_add(count, Ordering::Relaxed);
        self.shared.metrics.projected.increment(count);
        if parked > 0 {
            self.shared.parked.fetch_add(parked, Ordering::Relaxed);
            self.shared.metrics.parked.increment(parked);
        }
        Ok(Applied::Done(last.position()))
    }

    /// Parks `event` and moves the checkpoint past it, in one transaction.
    /// `false` if the checkpoint moved meanwhile.
    async fn park_alone(
        &self,
        event: &RecordedEvent,
        checkpoint: u64,
        reason: &str,
    ) -> Result<bool, sqlx::Error> {
        let name = self.name();
        let mut tx = self.backend.begin().await?;
        if self.backend.lock_checkpoint(&mut tx, name).await? != checkpoint {
            tx.rollback().await?;
            return Ok(false);
        }
        self.backend.park(&mut tx, name, event, reason).await?;
        self.backend
            .set_checkpoint(&mut tx, name, event.position())
            .await?;
        tx.commit().await?;
        self.shared.parked.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.parked.increment(1);
        self.parked_event(event, reason.to_owned());
        Ok(true)
    }

    fn parked_event(&self, event: &RecordedEvent, reason: String) {
        tracing::warn!(name = %self.name(), position = event.position(), stream = event.stream(),
            version = event.version(), event_type = event.event_type(), %reason, "event parked");
        self.shared.listeners.emit_with(|| CqrsEvent::EventParked {
            name: Arc::clone(self.name()),
            position: event.position(),
            reason,
        });
    }

    async fn rebuild(&self) -> Result<(), ProjectionError> {
        let name = self.name();
        let err = |e| ProjectionError::new(name, "rebuild", e);
        let mut tx = self.backend.begin().await.map_err(err)?;
        self.backend
            .lock_checkpoint(&mut tx, name)
            .await
            .map_err(err)?;
        self.projection
            .reset(&mut tx)
            .await
            .map_err(|e| ProjectionError::new(name, "rebuild", e))?;
        self.backend.reset(&mut tx, name).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        tracing::info!(name = %name, "projection reset for a rebuild");
        self.shared.set_checkpoint(0);
        self.shared.reload.notify_one();
        self.shared
            .listeners
            .emit_with(|| CqrsEvent::ProjectionRebuilt {
                name: Arc::clone(name),
            });
        Ok(())
    }
}

impl<P, K, B> Control for Runner<P, K, B>
where
    K: ProjectionBackend,
    P: Projection<K::Db>,
    B: Backend,
{
    fn rebuild(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), ProjectionError>> + Send + '_>> {
        Box::pin(Self::rebuild(self))
    }

    fn parked(
        &self,
        max: usize,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<Vec<ParkedEvent>, ProjectionError>> + Send + '_>,
    > {
        Box::pin(async move {
            self.backend
                .parked(self.name(), max)
                .await
                .map_err(|e| ProjectionError::new(self.name(), "read parked events", e))
        })
    }
}
