//! The partition pools of one bulkhead: the table of keyed pools (a pure
//! [`Table`]) with its metrics, logs and events, the overflow pool, the
//! per-key limits set through the handle, and the sweeps that reclaim idle
//! pools.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};

use metrics::Gauge;
use tokio::time::Instant;

use super::pool::{Common, Pool, Sweep};
use super::{PartitionConfig, Selected, Shared};
use crate::event::BulkheadEvent;
use crate::metrics::PARTITIONS;
use crate::partition::{MAX_KEY_LEN, OVERFLOW};
use crate::state::table::{Insert, Removed, Table};

/// The partition pools of one bulkhead.
#[derive(Debug)]
pub(crate) struct Partitions {
    table: Table<Arc<Pool>>,
    pub(crate) config: PartitionConfig,
    pub(crate) overflow: Arc<Pool>,
    /// Per-key limits set through the handle; they outlive reclaimed pools.
    pub(crate) overrides: RwLock<HashMap<Arc<str>, usize>>,
    /// The earliest time of the next sweep; its lock also keeps sweeps from
    /// running twice at once.
    next_sweep: Mutex<Instant>,
    live_gauge: Gauge,
}

impl Partitions {
    pub(super) fn new(common: &Arc<Common>, config: PartitionConfig) -> Self {
        let live_gauge = metrics::gauge!(PARTITIONS, "name" => common.name.to_string());
        live_gauge.set(0.0);
        Self {
            table: Table::new(config.max_partitions),
            overflow: Arc::new(Pool::new(
                Arc::clone(common),
                Some(Arc::from(OVERFLOW)),
                config.overflow_limit,
            )),
            config,
            overrides: RwLock::default(),
            next_sweep: Mutex::new(Instant::now() + config.idle_timeout),
            live_gauge,
        }
    }

    /// How many keyed partitions are live.
    pub(crate) fn live(&self) -> usize {
        self.table.live()
    }

    #[inline]
    pub(super) fn get_or_create<'a>(&'a self, key: &str, shared: &'a Shared) -> Selected<'a> {
        if key.len() > MAX_KEY_LEN {
            return Selected::Borrowed(&self.overflow);
        }
        if let Some(pool) = self.table.get(key) {
            return Selected::Owned(pool);
        }
        self.create(key, shared)
    }

    #[cold]
    fn create<'a>(&'a self, key: &str, shared: &Shared) -> Selected<'a> {
        self.sweep_if_due(Instant::now());
        if self.live() >= self.table.max() {
            tracing::debug!(
                name = %shared.common.name,
                partition = key,
                max_partitions = self.config.max_partitions,
                "bulkhead partitions full: the call uses the overflow pool"
            );
            return Selected::Borrowed(&self.overflow);
        }
        let mut limit = 0;
        let inserted = self.table.get_or_insert(key, |key| {
            limit = shared.limit_for(self, key);
            Arc::new(Pool::new(
                Arc::clone(&shared.common),
                Some(Arc::clone(key)),
                limit,
            ))
        });
        let (key, pool, live) = match inserted {
            Insert::Created { key, value, live } => (key, value, live),
            Insert::Found(pool) => return Selected::Owned(pool),
            Insert::Full => return Selected::Borrowed(&self.overflow),
        };
        #[allow(clippy::cast_precision_loss, reason = "partition counts are small")]
        self.live_gauge.set(live as f64);
        tracing::debug!(name = %shared.common.name, partition = %key, limit, "bulkhead partition created");
        shared
            .common
            .listeners
            .emit_with(|| BulkheadEvent::PartitionCreated {
                name: Arc::clone(&shared.common.name),
                partition: key,
            });
        Selected::Owned(pool)
    }

    /// The periodic sweep, if due: when `partition_idle_timeout` has passed
    /// since the previous one, retires the pools idle since then. Returns
    /// how many it removed (0 when not due, or when another sweep runs).
    pub(crate) fn sweep_if_due(&self, now: Instant) -> usize {
        let mut next = match self.next_sweep.try_lock() {
            Ok(next) => next,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another caller is sweeping.
            Err(TryLockError::WouldBlock) => return 0,
        };
        if now < *next {
            return 0;
        }
        *next = now + self.config.idle_timeout;
        let removed = self
            .table
            .remove_where(|pool| pool.sweep() == Sweep::Retired);
        drop(next);
        self.report_reclaimed(removed)
    }

    /// Retires every keyed pool idle now (nothing in flight, nobody
    /// waiting), however recently used and whenever the last sweep ran.
    /// Waits for a periodic sweep running at the same time; leaves the
    /// periodic schedule as it is. Returns how many it removed.
    pub(crate) fn reclaim_idle_now(&self) -> usize {
        let next = self
            .next_sweep
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let removed = self
            .table
            .remove_where(|pool| pool.retire_if_idle() == Sweep::Retired);
        drop(next);
        self.report_reclaimed(removed)
    }

    /// Updates the gauge, logs and emits the events of a sweep's removals,
    /// with no lock held (a listener may call back into the handle).
    fn report_reclaimed(&self, removed: Removed) -> usize {
        let Removed { keys, live } = removed;
        let count = keys.len();
        if count > 0 {
            #[allow(clippy::cast_precision_loss, reason = "partition counts are small")]
            self.live_gauge.set(live as f64);
        }
        let common = &self.overflow.common;
        for key in keys {
            tracing::debug!(name = %common.name, partition = %key, "bulkhead partition reclaimed");
            common
                .listeners
                .emit_with(|| BulkheadEvent::PartitionReclaimed {
                    name: Arc::clone(&common.name),
                    partition: key,
                });
        }
        count
    }

    /// The live pool of `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Pool>> {
        self.table.get(key)
    }

    /// Every live keyed pool.
    pub(crate) fn pools(&self) -> Vec<Arc<Pool>> {
        self.table.values()
    }
}
