//! Runtime control and figures: [`BulkheadHandle`] and its snapshots, what a
//! [`Registry<BulkheadHandle>`](palisade_core::Registry) lists for an admin
//! API.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_core::{ConfigError, Handle};

use crate::partition::{OVERFLOW, UNKEYED};
use crate::settings::{BulkheadSettings, check_limit, check_max_queue};
use crate::shared::{Pool, Shared};

/// The figures of one pool at one moment. `Serialize` with the `serde`
/// feature.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// The partition key; `None` for the pool of an unpartitioned bulkhead.
    /// The special pools are labelled [`UNKEYED`] and [`OVERFLOW`].
    pub partition: Option<Arc<str>>,
    /// The current limit.
    pub limit: usize,
    /// Calls holding a permit. Can exceed `limit` for a while after the
    /// limit was lowered: held permits are never revoked.
    pub in_flight: usize,
    /// Calls waiting for a permit.
    pub queued: usize,
    /// Permits free now.
    pub available: usize,
    /// Calls refused by this pool since it was created.
    pub rejected: u64,
}

impl PoolSnapshot {
    fn of(pool: &Pool) -> Self {
        let view = pool.view();
        Self {
            partition: pool.partition().cloned(),
            limit: view.limit,
            in_flight: view.in_flight,
            queued: view.queued,
            available: view.available,
            rejected: view.rejected,
        }
    }
}

/// The figures and settings of one bulkhead at one moment: what the admin API
/// and dashboard show. Plain data, `Serialize` with the `serde` feature
/// (durations as strings: `"50ms"`, `"forever"` for no deadline).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// The bulkhead's name.
    pub name: Arc<str>,
    /// `fixed`, `aimd` or `gradient`.
    pub limit_mode: &'static str,
    /// The adaptive limit's `(min, max)` bounds, if adaptive.
    pub limit_bounds: Option<(usize, usize)>,
    /// The limit of an unpartitioned bulkhead, or the limit a new partition
    /// starts with.
    pub limit: usize,
    /// How long a call may wait for a permit (`Duration::MAX`: no deadline).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::settings::wait::always::serialize")
    )]
    pub max_wait: Duration,
    /// How many calls may wait per pool (`None`: no bound but time).
    pub max_queue: Option<usize>,
    /// Whether `poll_ready` reserves the permit.
    pub backpressure: bool,
    /// Whether requests are partitioned by key.
    pub partitioned: bool,
    /// Live keyed partitions.
    pub partitions: usize,
    /// The bound on live keyed partitions, if partitioned.
    pub max_partitions: Option<usize>,
    /// Calls holding a permit, over every pool.
    pub in_flight: usize,
    /// Calls waiting, over every pool.
    pub queued: usize,
    /// Calls refused since the bulkhead was built, over every pool (reclaimed
    /// ones included).
    pub rejected: u64,
    /// Every pool: the one pool of an unpartitioned bulkhead; for a
    /// partitioned one the [`UNKEYED`] and [`OVERFLOW`] pools, then the keyed
    /// ones sorted by key.
    pub pools: Vec<PoolSnapshot>,
    /// The settings in force: those the bulkhead was built with, defaults
    /// resolved (`max_wait` is always `Some`, and so is `overflow_limit` of
    /// a partitioned bulkhead), with the changes made through the handle
    /// ([`set_limit`](BulkheadHandle::set_limit) for a fixed limit's
    /// `max_concurrent_calls`, [`set_max_wait`](BulkheadHandle::set_max_wait),
    /// [`set_max_queue`](BulkheadHandle::set_max_queue), the overflow pool's
    /// [`set_partition_limit`](BulkheadHandle::set_partition_limit)).
    pub settings: BulkheadSettings,
}

/// Reads a bulkhead's figures and changes its limits at runtime, without
/// dropping calls in flight. Cheap to clone; every clone controls the same
/// bulkhead. What a [`Registry<BulkheadHandle>`](palisade_core::Registry)
/// holds.
///
/// ```
/// use palisade_bulkhead::BulkheadLayer;
///
/// let layer = BulkheadLayer::builder("inventory").max_concurrent_calls(10).build()?;
/// let handle = layer.handle();
/// assert_eq!(handle.limit(), 10);
/// handle.set_limit(20)?;
/// assert_eq!(handle.snapshot().pools[0].limit, 20);
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BulkheadHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl BulkheadHandle {
    pub(crate) const fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The bulkhead's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.common.name
    }

    /// `true` if both handles control the same bulkhead.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// `true` for a partitioned bulkhead.
    #[must_use]
    pub fn is_partitioned(&self) -> bool {
        self.shared.partitions.is_some()
    }

    /// `true` when the limit adapts itself.
    #[must_use]
    pub fn is_adaptive(&self) -> bool {
        self.shared.common.adaptive.is_some()
    }

    /// The limit of an unpartitioned bulkhead; for a partitioned one, the
    /// limit a new partition starts with.
    #[must_use]
    pub fn limit(&self) -> usize {
        if self.shared.partitions.is_some() {
            self.shared.default_limit.load(Ordering::Relaxed)
        } else {
            self.shared.default_pool.limit()
        }
    }

    /// Calls holding a permit, over every pool.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.shared.pools().iter().map(|p| p.in_flight()).sum()
    }

    /// Calls waiting for a permit, over every pool.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.shared.pools().iter().map(|p| p.queued()).sum()
    }

    /// Calls refused since the bulkhead was built, over every pool.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.shared.common.rejected.load(Ordering::Relaxed)
    }

    /// Sets the limit. For a partitioned bulkhead: the limit of every
    /// partition without its own ([`set_partition_limit`]), of the
    /// [`UNKEYED`] pool, and of partitions created from now on.
    ///
    /// Raising the limit admits waiting calls at once. Lowering it never
    /// revokes a permit: calls in flight finish, and no new call is admitted
    /// until fewer than the new limit are in flight. For an adaptive
    /// bulkhead, the limit is clamped to the limiter's bounds and the limiter
    /// carries on from it. Returns the limit applied.
    ///
    /// [`set_partition_limit`]: Self::set_partition_limit
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `max_concurrent_calls` when `limit` is 0 or
    /// above 2^29.
    pub fn set_limit(&self, limit: usize) -> Result<usize, ConfigError> {
        check_limit("max_concurrent_calls", limit, false)?;
        let applied = self.shared.default_pool.set_limit(limit);
        if let Some(partitions) = &self.shared.partitions {
            self.shared.default_limit.store(applied, Ordering::Relaxed);
            let overrides = partitions
                .overrides
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            for pool in partitions.pools() {
                let key = pool.partition().map(|k| &**k).unwrap_or_default();
                if !overrides.contains_key(key) {
                    pool.set_limit(limit);
                }
            }
        }
        Ok(applied)
    }

    /// Gives the partition `key` its own limit, now and whenever its pool is
    /// created again after being reclaimed. [`UNKEYED`] and [`OVERFLOW`]
    /// address those pools (the overflow pool accepts 0: new keys beyond
    /// `max_partitions` are then refused). Returns the limit applied.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `partition` on an unpartitioned bulkhead, or for
    /// `max_concurrent_calls` when `limit` is out of range.
    pub fn set_partition_limit(&self, key: &str, limit: usize) -> Result<usize, ConfigError> {
        let Some(partitions) = &self.shared.partitions else {
            return Err(ConfigError::new(
                "partition",
                "the bulkhead is not partitioned",
            ));
        };
        check_limit("max_concurrent_calls", limit, key == OVERFLOW)?;
        match key {
            UNKEYED => return Ok(self.shared.default_pool.set_limit(limit)),
            OVERFLOW => return Ok(partitions.overflow.set_limit(limit)),
            _ => {}
        }
        partitions
            .overrides
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(Arc::from(key), limit);
        Ok(partitions
            .get(key)
            .map_or(limit, |pool| pool.set_limit(limit)))
    }

    /// Removes the partition `key`'s own limit: it goes back to the default.
    /// Returns `true` if it had one.
    pub fn clear_partition_limit(&self, key: &str) -> bool {
        let Some(partitions) = &self.shared.partitions else {
            return false;
        };
        let removed = partitions
            .overrides
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key)
            .is_some();
        if removed && let Some(pool) = partitions.get(key) {
            pool.set_limit(self.shared.default_limit.load(Ordering::Relaxed));
        }
        removed
    }

    /// How long a call may wait for a permit (`Duration::MAX`: no deadline).
    #[must_use]
    pub fn max_wait(&self) -> Duration {
        self.shared.common.max_wait().unwrap_or(Duration::MAX)
    }

    /// Changes how long calls may wait for a permit, from the next call
    /// that has to wait (`Duration::ZERO`: refuse at once; `Duration::MAX`:
    /// no deadline).
    pub fn set_max_wait(&self, max_wait: Duration) {
        self.shared.common.set_max_wait(max_wait);
        tracing::info!(name = %self.name(), max_wait_ms = u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX), "bulkhead max_wait changed");
    }

    /// How many calls may wait per pool (`None`: no bound but time).
    #[must_use]
    pub fn max_queue(&self) -> Option<usize> {
        self.shared.common.max_queue()
    }

    /// Changes how many calls may wait per pool. Calls already waiting keep
    /// their place.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `max_queue` above 2^30 − 1.
    pub fn set_max_queue(&self, max_queue: Option<usize>) -> Result<(), ConfigError> {
        check_max_queue(max_queue)?;
        self.shared.common.set_max_queue(max_queue);
        tracing::info!(name = %self.name(), max_queue = ?max_queue, "bulkhead max_queue changed");
        Ok(())
    }

    /// The figures of the partition `key` (or of [`UNKEYED`] / [`OVERFLOW`]),
    /// if its pool is live.
    #[must_use]
    pub fn partition(&self, key: &str) -> Option<PoolSnapshot> {
        let partitions = self.shared.partitions.as_ref()?;
        match key {
            UNKEYED => Some(PoolSnapshot::of(&self.shared.default_pool)),
            OVERFLOW => Some(PoolSnapshot::of(&partitions.overflow)),
            _ => partitions.get(key).map(|pool| PoolSnapshot::of(&pool)),
        }
    }

    /// The number of live keyed partitions (0 when unpartitioned).
    #[must_use]
    pub fn partition_count(&self) -> usize {
        self.shared.partitions.as_ref().map_or(0, |p| p.live())
    }

    /// Reclaims every partition idle now (nothing in flight, nobody
    /// waiting), however recently it was used and whenever the last sweep
    /// ran: what an operator asking to free idle partitions expects.
    /// Returns how many were reclaimed; a second call right after returns 0
    /// because none is left, not because of a schedule. A reclaimed
    /// partition's pool (its learned adaptive limit, its counters) is gone;
    /// its key's own limit, set with
    /// [`set_partition_limit`](Self::set_partition_limit), stays, and its
    /// next call gets a fresh pool. The [`UNKEYED`] and [`OVERFLOW`] pools
    /// are never reclaimed; 0 for an unpartitioned bulkhead.
    ///
    /// Idle partitions also go by themselves: see
    /// [`sweep_if_due`](Self::sweep_if_due).
    pub fn reclaim_idle(&self) -> usize {
        let Some(partitions) = &self.shared.partitions else {
            return 0;
        };
        let reclaimed = partitions.reclaim_idle_now();
        tracing::info!(name = %self.name(), reclaimed, "bulkhead idle partitions reclaimed");
        reclaimed
    }

    /// Runs the periodic sweep of idle partitions if it is due, as the
    /// arrival of a new key does: once `partition_idle_timeout` has passed
    /// since the previous sweep, it reclaims the partitions idle since then
    /// (so a partition goes between one and two timeouts after its last
    /// call); before that it does nothing and returns 0. Cheap to call
    /// often, from a timer, when new keys are rare. Returns how many were
    /// reclaimed. To reclaim now, use [`reclaim_idle`](Self::reclaim_idle).
    pub fn sweep_if_due(&self) -> usize {
        self.shared
            .partitions
            .as_ref()
            .map_or(0, |p| p.sweep_if_due(tokio::time::Instant::now()))
    }

    /// Every figure and setting at once.
    #[must_use]
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let shared = &self.shared;
        let mut pools = vec![PoolSnapshot::of(&shared.default_pool)];
        if let Some(partitions) = &shared.partitions {
            pools.push(PoolSnapshot::of(&partitions.overflow));
            let mut keyed: Vec<PoolSnapshot> = partitions
                .pools()
                .iter()
                .map(|pool| PoolSnapshot::of(pool))
                .collect();
            keyed.sort_by(|a, b| a.partition.cmp(&b.partition));
            pools.extend(keyed);
        }
        let adaptive = shared.common.adaptive.as_ref();
        BulkheadSnapshot {
            name: Arc::clone(&shared.common.name),
            limit_mode: adaptive.map_or("fixed", |a| a.algorithm()),
            limit_bounds: adaptive.map(|a| a.bounds()),
            limit: self.limit(),
            max_wait: self.max_wait(),
            max_queue: self.max_queue(),
            backpressure: shared.backpressure,
            partitioned: shared.partitions.is_some(),
            partitions: self.partition_count(),
            max_partitions: shared.partitions.as_ref().map(|p| p.config.max_partitions),
            in_flight: pools.iter().map(|p| p.in_flight).sum(),
            queued: pools.iter().map(|p| p.queued).sum(),
            rejected: self.rejected(),
            pools,
            settings: self.settings(),
        }
    }

    /// The settings in force; see [`BulkheadSnapshot::settings`].
    #[must_use]
    pub fn settings(&self) -> BulkheadSettings {
        let shared = &self.shared;
        let fixed = shared.common.adaptive.is_none();
        let mut settings = shared.settings.clone();
        settings.max_wait = Some(self.max_wait());
        settings.max_queue = self.max_queue();
        if fixed {
            settings.max_concurrent_calls = self.limit();
        }
        if let Some(partitions) = &shared.partitions {
            settings.overflow_limit = Some(if fixed {
                partitions.overflow.limit()
            } else {
                partitions.config.overflow_limit
            });
        }
        settings
    }
}

impl Handle for BulkheadHandle {
    type Snapshot = BulkheadSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> BulkheadSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
