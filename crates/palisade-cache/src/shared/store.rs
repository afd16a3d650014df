//! The process tier: a `quick_cache` store bounded by bytes.
//!
//! `quick_cache` gives the concurrency (shards, each behind its own
//! read-write lock: a read takes one shard's read lock, never a lock shared
//! by every caller), the byte bound (a weigher; S3-FIFO admission and
//! eviction, applied within the insert that needs the room, so the bound
//! holds at every moment) and the exact weight held. It has no expiry of
//! its own, and needs none: freshness is the cache's business, judged on
//! every read from the entry's [`Times`] against tokio's clock (so the
//! paused clock of tests drives it). An expired entry leaves the store when
//! a read finds it, when the byte bound evicts it (nothing reads it, so it
//! is among the first to go), or when [`Store::remove_expired`] sweeps.

use std::cell::Cell;
use std::hash::Hash;
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};
use tokio::time::Instant;

use crate::policy::ENTRY_OVERHEAD;
use crate::state::{Freshness, Times};

/// One stored value with its life and weight.
#[derive(Debug)]
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) times: Times,
    /// Its weight in bytes, as counted against `max_bytes`.
    pub(crate) weight: u32,
}

impl<V> Entry<V> {
    pub(crate) fn new(value: V, times: Times, weight: u64) -> Self {
        Self {
            value,
            times,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        }
    }
}

/// Weighs a stored entry by the weight computed when it was built.
#[derive(Clone, Copy, Debug)]
struct ByWeight;

impl<K, V> Weighter<K, Arc<Entry<V>>> for ByWeight {
    #[inline]
    fn weight(&self, _: &K, entry: &Arc<Entry<V>>) -> u64 {
        u64::from(entry.weight)
    }
}

/// `quick_cache` divides `max_bytes` equally between its shards and does
/// not admit an entry heavier than 97 % of one shard (its "hot" share).
/// The shards are as many as `quick_cache` would choose (4 per core, a
/// power of two), but never so many that an entry of `max_entry_bytes`
/// (plus the overhead counted per entry) would not fit in one.
fn shards(max_bytes: u64, max_entry_bytes: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let largest_entry = max_entry_bytes.saturating_add(ENTRY_OVERHEAD as u64);
    let mut shards = (cores * 4).next_power_of_two();
    while shards > 1 && (max_bytes / shards as u64) * 97 / 100 < largest_entry {
        shards /= 2;
    }
    shards
}

/// The process tier.
pub(crate) struct Store<K, V> {
    cache: Cache<K, Arc<Entry<V>>, ByWeight>,
}

impl<K, V> Store<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(crate) fn new(max_bytes: u64, max_entry_bytes: u64) -> Self {
        let shards = shards(max_bytes, max_entry_bytes);
        // The expected count of entries (here: one per 2 KiB) sizes the
        // record of recently evicted keys (S3-FIFO's ghost queue, half as
        // many as the entries). The record lives outside `max_bytes`: a
        // slot of the store's slab and one of its table per key, so about
        // 2 % to 4 % of `max_bytes` at most. At least 32 entries per
        // shard, or quick_cache merges shards.
        let estimated_items = usize::try_from(max_bytes / 2048)
            .unwrap_or(usize::MAX)
            .max(32 * shards);
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(estimated_items)
            .weight_capacity(max_bytes)
            .build()
            .expect("every option is set");
        let cache = Cache::with_options(
            options,
            ByWeight,
            quick_cache::DefaultHashBuilder::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        Self { cache }
    }

    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<Arc<Entry<V>>> {
        self.cache.get(key)
    }

    /// Stores `entry`, evicting what it takes to stay within `max_bytes`
    /// before returning.
    pub(crate) fn insert(&self, key: K, entry: Arc<Entry<V>>) {
        self.cache.insert(key, entry);
    }

    /// Removes `key` if it still holds `entry` (an expired entry found by a
    /// read), leaving a newer one alone.
    pub(crate) fn remove_if_same(&self, key: &K, entry: &Arc<Entry<V>>) {
        self.cache
            .remove_if(key, |current| Arc::ptr_eq(current, entry));
    }

    /// Removes every entry for which `remove` is true; returns how many.
    pub(crate) fn remove_matching(&self, remove: impl Fn(&K, &Entry<V>) -> bool) -> u64 {
        let removed = Cell::new(0);
        self.cache.retain(|key, entry| {
            let gone = remove(key, entry);
            removed.set(removed.get() + u64::from(gone));
            !gone
        });
        removed.get()
    }

    pub(crate) fn clear(&self) -> u64 {
        self.remove_matching(|_, _| true)
    }

    /// Removes the entries expired at `now`; returns how many.
    pub(crate) fn remove_expired(&self, now: Instant) -> u64 {
        self.remove_matching(|_, entry| entry.times.freshness(now) == Freshness::Expired)
    }

    /// Bytes held by the entries in the store.
    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    pub(crate) fn entries(&self) -> u64 {
        self.cache.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_of_max_entry_bytes_fits_in_one_shard() {
        for (max_bytes, max_entry_bytes) in [
            (64 << 20, 1 << 20),
            (64 << 10, 4 << 10),
            (1024, 1024),
            (1 << 40, 1 << 30),
            (1 << 30, 1),
        ] {
            let shards = shards(max_bytes, max_entry_bytes) as u64;
            assert!(shards.is_power_of_two());
            assert!(
                shards == 1
                    || (max_bytes / shards) * 97 / 100 >= max_entry_bytes + ENTRY_OVERHEAD as u64,
                "{max_bytes} / {shards} for {max_entry_bytes}"
            );
        }
    }
}
