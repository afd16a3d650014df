//! [`ProjectionHandle`]: a running projection's checkpoint, lag, parked
//! events, rebuild, read-your-writes wait and stop; [`ProjectionSnapshot`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::Listeners;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::{ProjectionError, WaitTimeout};
use crate::event::CqrsEvent;
use crate::metrics::ProjectionMetrics;
use crate::parked::ParkedEvent;
use crate::settings::ProjectionSettings;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the handle asks of the runner's projection and database.
pub(crate) trait Control: Send + Sync + 'static {
    fn rebuild(&self) -> BoxFuture<'_, Result<(), ProjectionError>>;
    fn parked(&self, max: usize) -> BoxFuture<'_, Result<Vec<ParkedEvent>, ProjectionError>>;
}

/// The state a runner and its handles share.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) settings: ProjectionSettings,
    pub(crate) metrics: ProjectionMetrics,
    pub(crate) listeners: Listeners<CqrsEvent>,
    /// The checkpoint as this process last knows it (its runner's, or read
    /// from the database while on standby).
    pub(crate) checkpoint: watch::Sender<u64>,
    pub(crate) head: AtomicU64,
    pub(crate) active: AtomicBool,
    pub(crate) applied: AtomicU64,
    pub(crate) parked: AtomicU64,
    /// Tells the runner to reload its checkpoint (after a rebuild).
    pub(crate) reload: Notify,
    pub(crate) task: Mutex<Option<AbortHandle>>,
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        settings: ProjectionSettings,
        listeners: Listeners<CqrsEvent>,
    ) -> Self {
        Self {
            metrics: ProjectionMetrics::new(&name),
            name,
            settings,
            listeners,
            checkpoint: watch::Sender::new(0),
            head: AtomicU64::new(0),
            active: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            reload: Notify::new(),
            task: Mutex::new(None),
        }
    }

    pub(crate) fn set_checkpoint(&self, position: u64) {
        self.checkpoint.send_replace(position);
        self.metrics.checkpoint.set(position as f64);
        self.update_lag();
    }

    pub(crate) fn set_head(&self, head: u64) {
        self.head.fetch_max(head, Ordering::Relaxed);
        self.update_lag();
    }

    fn update_lag(&self) {
        let checkpoint = *self.checkpoint.borrow();
        let lag = self.head.load(Ordering::Relaxed).saturating_sub(checkpoint);
        self.metrics.lag.set(lag as f64);
    }

    pub(crate) fn set_active(&self, active: bool) {
        if self.active.swap(active, Ordering::Relaxed) != active {
            self.metrics.active.set(if active { 1.0 } else { 0.0 });
            if active {
                tracing::info!(name = %self.name, "projection runner active");
            } else {
                tracing::info!(name = %self.name, "projection runner on standby");
            }
            self.listeners.emit_with(|| CqrsEvent::ProjectionActive {
                name: Arc::clone(&self.name),
                active,
            });
        }
    }
}

/// Controls a running projection: its checkpoint and lag, its parked
/// events, a rebuild from zero, read-your-writes waits, stop.
///
/// Cloning is cheap (an `Arc`) and every clone controls the same runner.
/// Dropping the handles does not stop the runner: call
/// [`stop`](Self::stop).
#[derive(Clone)]
pub struct ProjectionHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) control: Arc<dyn Control>,
}

impl fmt::Debug for ProjectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("name", &self.shared.name)
            .field("checkpoint", &self.checkpoint())
            .field("active", &self.is_active())
            .finish_non_exhaustive()
    }
}

/// A projection at one instant: plain data for the admin API and the
/// dashboard.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ProjectionSnapshot {
    /// The projection's name.
    pub name: Arc<str>,
    /// The global position its read model has reached.
    pub checkpoint: u64,
    /// The store's last position seen.
    pub head: u64,
    /// `head - checkpoint`: events not yet in the read model.
    pub lag: u64,
    /// Whether this process runs it (else another process does, or it is
    /// stopped).
    pub active: bool,
    /// Events applied (or skipped as not handled) by this process.
    pub applied: u64,
    /// Events parked by this process.
    pub parked: u64,
    /// The effective settings.
    pub settings: ProjectionSettings,
}

impl ProjectionHandle {
    /// The projection's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The global position the read model has reached (as this process
    /// last knows it).
    #[must_use]
    pub fn checkpoint(&self) -> u64 {
        *self.shared.checkpoint.borrow()
    }

    /// The store's head position minus the checkpoint.
    #[must_use]
    pub fn lag(&self) -> u64 {
        self.shared
            .head
            .load(Ordering::Relaxed)
            .saturating_sub(self.checkpoint())
    }

    /// Whether this process's runner holds the projection's lock.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// The projection now.
    #[must_use]
    pub fn snapshot(&self) -> ProjectionSnapshot {
        let checkpoint = self.checkpoint();
        let head = self.shared.head.load(Ordering::Relaxed).max(checkpoint);
        ProjectionSnapshot {
            name: Arc::clone(&self.shared.name),
            checkpoint,
            head,
            lag: head - checkpoint,
            active: self.is_active(),
            applied: self.shared.applied.load(Ordering::Relaxed),
            parked: self.shared.parked.load(Ordering::Relaxed),
            settings: self.shared.settings.clone(),
        }
    }

    /// `true` if both handles control the same runner.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Waits until the read model has reached global `position` (a
    /// command's [`position`](crate::CommandOutcome::position)), at most
    /// `timeout`: read-your-writes on demand. Returns at once if it
    /// already has.
    ///
    /// # Errors
    ///
    /// [`WaitTimeout`] if the checkpoint is still below `position` after
    /// `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), WaitTimeout> {
        let mut checkpoint = self.shared.checkpoint.subscribe();
        let started = Instant::now();
        let reached = tokio::time::timeout(timeout, checkpoint.wait_for(|c| *c >= position)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            // The sender lives in `shared`, which this handle holds: never
            // closed while waiting. Treat it as a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(WaitTimeout::new(
                &self.shared.name,
                position,
                self.checkpoint(),
                started.elapsed(),
            )),
        }
    }

    /// Up to `max` parked events, oldest first.
    ///
    /// # Errors
    ///
    /// A [`ProjectionError`] if the read-model database fails.
    pub async fn parked(&self, max: usize) -> Result<Vec<ParkedEvent>, ProjectionError> {
        self.control.parked(max).await
    }

    /// Rebuilds the read model from zero: in one transaction, the
    /// projection's [`reset`](crate::Projection::reset) clears its tables,
    /// the parked events are forgotten and the checkpoint goes back to `0`;
    /// then the runner replays every event. A batch in flight when it
    /// happens finds the checkpoint moved and rolls back.
    ///
    /// # Errors
    ///
    /// A [`ProjectionError`] if the reset fails (nothing changed).
    pub async fn rebuild(&self) -> Result<(), ProjectionError> {
        self.control.rebuild().await
    }

    /// Whether the runner's task runs (it was not stopped and did not end).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.shared
            .task
            .lock()
            .as_ref()
            .is_some_and(|task| !task.is_finished())
    }

    /// Stops the runner (aborts its task; a batch in flight rolls back, its
    /// events are applied by the next runner from the checkpoint).
    /// Dropping every handle does not stop it: the runner lives as long as
    /// the runtime unless stopped.
    pub fn stop(&self) {
        if let Some(task) = self.shared.task.lock().take() {
            task.abort();
        }
        self.shared.set_active(false);
    }
}

impl palisade_core::Handle for ProjectionHandle {
    type Snapshot = ProjectionSnapshot;

    fn name(&self) -> &str {
        self.name()
    }

    fn snapshot(&self) -> ProjectionSnapshot {
        self.snapshot()
    }

    fn same_as(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}
