//! The state a layer owns: its pools, and for a partitioned bulkhead the
//! bounded, self-cleaning map from keys to pools.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::Duration;

use metrics::Gauge;
use tokio::time::Instant;

use crate::event::BulkheadEvent;
use crate::handle::PoolSnapshot;
use crate::partition::{MAX_KEY_LEN, OVERFLOW, UNKEYED};
use crate::pool::{Common, Permit, Pool, Sweep};

/// Shards of the partition map: lookups of different keys mostly take
/// different read locks.
const SHARDS: usize = 16;

/// One shard of the partition map.
type Shard = RwLock<HashMap<Arc<str>, Arc<Pool>>>;

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Every write is one insert, remove or retain of whole entries.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// FNV-1a, to pick a shard. The maps inside use std's randomly keyed hasher,
/// so keys chosen by a client cannot degrade a lookup; at worst they crowd
/// one shard.
#[inline]
fn shard_of(key: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % SHARDS as u64) as usize
}

/// A pool picked for one call: the layer's own pool is borrowed, a
/// partition's pool comes out of the map with a reference count.
#[derive(Debug)]
pub(crate) enum Selected<'a> {
    Borrowed(&'a Arc<Pool>),
    Owned(Arc<Pool>),
}

impl Selected<'_> {
    /// The permit taken by a successful [`Pool::try_take`] on this pool: a
    /// partition's reference count moves into it, the layer's pool is
    /// referenced once more.
    #[inline]
    pub(crate) fn into_permit(self) -> Permit {
        match self {
            Self::Borrowed(pool) => Permit::taken(Arc::clone(pool)),
            Self::Owned(pool) => Permit::taken(pool),
        }
    }
}

impl Deref for Selected<'_> {
    type Target = Arc<Pool>;

    #[inline]
    fn deref(&self) -> &Arc<Pool> {
        match self {
            Self::Borrowed(pool) => pool,
            Self::Owned(pool) => pool,
        }
    }
}

/// Everything a bulkhead's layer, services, clones and handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) common: Arc<Common>,
    /// The only pool of an unpartitioned bulkhead; the [`UNKEYED`] pool of a
    /// partitioned one.
    pub(crate) default_pool: Arc<Pool>,
    pub(crate) partitions: Option<Partitions>,
    pub(crate) backpressure: bool,
    /// The limit new partition pools start with (for an unpartitioned
    /// bulkhead, unused: its pool's limit is the limit).
    pub(crate) default_limit: AtomicUsize,
}

/// Settings of the partition map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartitionConfig {
    pub(crate) max_partitions: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) overflow_limit: usize,
}

impl Shared {
    pub(crate) fn new(
        common: Arc<Common>,
        limit: usize,
        partitions: Option<PartitionConfig>,
        backpressure: bool,
    ) -> Self {
        let default_label = partitions.is_some().then(|| Arc::from(UNKEYED));
        let default_pool = Arc::new(Pool::new(Arc::clone(&common), default_label, limit));
        let partitions = partitions.map(|config| Partitions::new(&common, config));
        Self {
            common,
            default_pool,
            partitions,
            backpressure,
            default_limit: AtomicUsize::new(limit),
        }
    }

    /// The pool for a request with `key`.
    #[inline]
    pub(crate) fn select(&self, key: Option<&str>) -> Selected<'_> {
        match (key, &self.partitions) {
            (Some(key), Some(partitions)) => partitions.get_or_create(key, self),
            _ => Selected::Borrowed(&self.default_pool),
        }
    }

    /// The limit for a new pool of `key`.
    fn limit_for(&self, partitions: &Partitions, key: &str) -> usize {
        read(&partitions.overrides)
            .get(key)
            .copied()
            .unwrap_or_else(|| self.default_limit.load(Ordering::Relaxed))
    }
}

/// The partition pools of one bulkhead.
#[derive(Debug)]
pub(crate) struct Partitions {
    shards: Box<[Shard]>,
    live: AtomicUsize,
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
    fn new(common: &Arc<Common>, config: PartitionConfig) -> Self {
        let live_gauge =
            metrics::gauge!(crate::metrics::PARTITIONS, "name" => common.name.to_string());
        live_gauge.set(0.0);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            live: AtomicUsize::new(0),
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
        self.live.load(Ordering::Relaxed)
    }

    #[inline]
    fn get_or_create<'a>(&'a self, key: &str, shared: &'a Shared) -> Selected<'a> {
        if key.len() > MAX_KEY_LEN {
            return Selected::Borrowed(&self.overflow);
        }
        let shard = &self.shards[shard_of(key)];
        if let Some(pool) = read(shard).get(key) {
            return Selected::Owned(Arc::clone(pool));
        }
        self.create(key, shard, shared)
    }

    #[cold]
    fn create<'a>(&'a self, key: &str, shard: &Shard, shared: &Shared) -> Selected<'a> {
        self.maybe_sweep(Instant::now());
        if self.live() >= self.config.max_partitions {
            tracing::debug!(
                name = %shared.common.name,
                partition = key,
                max_partitions = self.config.max_partitions,
                "bulkhead partitions full: the call uses the overflow pool"
            );
            return Selected::Borrowed(&self.overflow);
        }
        let mut map = write(shard);
        if let Some(pool) = map.get(key) {
            return Selected::Owned(Arc::clone(pool));
        }
        let reserved = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.config.max_partitions).then_some(live + 1)
            });
        let Ok(live) = reserved else {
            return Selected::Borrowed(&self.overflow);
        };
        let key: Arc<str> = Arc::from(key);
        let limit = shared.limit_for(self, &key);
        let pool = Arc::new(Pool::new(
            Arc::clone(&shared.common),
            Some(Arc::clone(&key)),
            limit,
        ));
        map.insert(Arc::clone(&key), Arc::clone(&pool));
        drop(map);
        #[allow(clippy::cast_precision_loss, reason = "partition counts are small")]
        self.live_gauge.set((live + 1) as f64);
        tracing::debug!(name = %shared.common.name, partition = %key, limit, "bulkhead partition created");
        shared
            .common
            .listeners
            .emit_with(|| BulkheadEvent::PartitionCreated {
                name: Arc::clone(&shared.common.name),
                partition: Arc::clone(&key),
            });
        Selected::Owned(pool)
    }

    /// Sweeps if the idle timeout has passed since the previous sweep; a
    /// sweep retires the pools idle since then. Returns how many it removed.
    pub(crate) fn maybe_sweep(&self, now: Instant) -> usize {
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
        let common = &self.overflow.common;
        let mut reclaimed: Vec<Arc<str>> = Vec::new();
        for shard in &*self.shards {
            write(shard).retain(|key, pool| {
                if pool.sweep() == Sweep::Retired {
                    reclaimed.push(Arc::clone(key));
                    false
                } else {
                    true
                }
            });
        }
        drop(next);
        let removed = reclaimed.len();
        if removed > 0 {
            let live = self.live.fetch_sub(removed, Ordering::AcqRel) - removed;
            #[allow(clippy::cast_precision_loss, reason = "partition counts are small")]
            self.live_gauge.set(live as f64);
        }
        // Reported with no lock held: a listener may call back into the
        // handle.
        for key in reclaimed {
            tracing::debug!(name = %common.name, partition = %key, "bulkhead partition reclaimed");
            common
                .listeners
                .emit_with(|| BulkheadEvent::PartitionReclaimed {
                    name: Arc::clone(&common.name),
                    partition: key,
                });
        }
        removed
    }

    /// The live pool of `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Pool>> {
        read(&self.shards[shard_of(key)]).get(key).cloned()
    }

    /// Every live keyed pool.
    pub(crate) fn pools(&self) -> Vec<Arc<Pool>> {
        let mut pools = Vec::with_capacity(self.live());
        for shard in &*self.shards {
            pools.extend(read(shard).values().cloned());
        }
        pools
    }

    /// Snapshots of every live keyed pool, sorted by key.
    pub(crate) fn snapshots(&self) -> Vec<PoolSnapshot> {
        let mut snapshots: Vec<PoolSnapshot> = self.pools().iter().map(|p| p.snapshot()).collect();
        snapshots.sort_by(|a, b| a.partition.cmp(&b.partition));
        snapshots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_spread_keys() {
        let mut seen = [0usize; SHARDS];
        for i in 0..1600 {
            seen[shard_of(&format!("tenant-{i}"))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
