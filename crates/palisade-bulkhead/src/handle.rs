//! Runtime control and figures: [`BulkheadHandle`] and its snapshots, what a
//! [`Registry<BulkheadHandle>`](palisade_core::Registry) lists for an admin
//! API.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_core::{ConfigError, Handle};

use crate::partition::{OVERFLOW, UNKEYED};
use crate::pool::{MAX_LIMIT, MAX_WAITERS, Pool};
use crate::shared::Shared;

/// The figures of one pool at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// The figures and settings of one bulkhead at one moment: what the admin API
/// and dashboard show. Plain data, so the gateway can serialize it as it
/// likes.
#[derive(Clone, Debug, PartialEq, Eq)]
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

fn check_limit(field: &'static str, limit: usize, zero_ok: bool) -> Result<(), ConfigError> {
    if limit == 0 && !zero_ok {
        return Err(ConfigError::new(field, "must be at least 1, got 0"));
    }
    if limit > MAX_LIMIT {
        return Err(ConfigError::new(
            field,
            format!("must be at most {MAX_LIMIT}, got {limit}"),
        ));
    }
    Ok(())
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

    fn pools(&self) -> Vec<Arc<Pool>> {
        let mut pools = vec![Arc::clone(&self.shared.default_pool)];
        if let Some(partitions) = &self.shared.partitions {
            pools.push(Arc::clone(&partitions.overflow));
            pools.extend(partitions.pools());
        }
        pools
    }

    /// Calls holding a permit, over every pool.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.pools().iter().map(|p| p.in_flight()).sum()
    }

    /// Calls waiting for a permit, over every pool.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.pools().iter().map(|p| p.queued()).sum()
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
        if removed {
            if let Some(pool) = partitions.get(key) {
                pool.set_limit(self.shared.default_limit.load(Ordering::Relaxed));
            }
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
        if let Some(n) = max_queue {
            if n > MAX_WAITERS {
                return Err(ConfigError::new(
                    "max_queue",
                    format!("must be at most {MAX_WAITERS}, got {n}"),
                ));
            }
        }
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
            UNKEYED => Some(self.shared.default_pool.snapshot()),
            OVERFLOW => Some(partitions.overflow.snapshot()),
            _ => partitions.get(key).map(|pool| pool.snapshot()),
        }
    }

    /// The number of live keyed partitions (0 when unpartitioned).
    #[must_use]
    pub fn partition_count(&self) -> usize {
        self.shared.partitions.as_ref().map_or(0, |p| p.live())
    }

    /// Reclaims the partitions idle since the previous sweep, if
    /// `partition_idle_timeout` has passed since then (sweeps also run when a
    /// new key arrives). Returns how many were reclaimed.
    pub fn reclaim_idle(&self) -> usize {
        self.shared
            .partitions
            .as_ref()
            .map_or(0, |p| p.maybe_sweep(tokio::time::Instant::now()))
    }

    /// Every figure and setting at once.
    #[must_use]
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let shared = &self.shared;
        let mut pools = vec![shared.default_pool.snapshot()];
        if let Some(partitions) = &shared.partitions {
            pools.push(partitions.overflow.snapshot());
            pools.extend(partitions.snapshots());
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
        }
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
