//! The process tier: a moka cache bounded by bytes.
//!
//! moka gives the concurrency (lock-free reads over a sharded hash map), the
//! byte bound (a weigher, TinyLFU admission and eviction) and the clean-up of
//! expired entries (a per-entry expiry, on moka's own clock). Freshness is
//! not moka's business: every read checks the entry's [`Times`] against
//! tokio's clock, so the paused clock of tests drives it.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::Expiry;
use moka::notification::RemovalCause;

use crate::state::Times;

/// One stored value with its life and weight.
#[derive(Debug)]
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) times: Times,
    /// Its weight in bytes, as counted against `max_bytes`.
    pub(crate) weight: u32,
    /// How long the store keeps it from insertion (moka's clock).
    keep: Duration,
}

impl<V> Entry<V> {
    pub(crate) fn new(value: V, times: Times, weight: u64, keep: Duration) -> Self {
        Self {
            value,
            times,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            keep,
        }
    }
}

struct KeepFor;

// moka's `Expiry` names std's `Instant` (moka's own clock); the cache's
// freshness runs on tokio's clock and never reads this one.
#[allow(
    clippy::disallowed_types,
    reason = "the signature of moka's Expiry trait"
)]
impl<K, V> Expiry<K, Arc<Entry<V>>> for KeepFor {
    fn expire_after_create(
        &self,
        _: &K,
        entry: &Arc<Entry<V>>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.keep)
    }

    fn expire_after_update(
        &self,
        _: &K,
        entry: &Arc<Entry<V>>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.keep)
    }
}

/// The process tier.
pub(crate) struct Store<K, V> {
    cache: moka::sync::Cache<K, Arc<Entry<V>>>,
    /// Bytes of the entries in the map: added on insert, taken off by the
    /// removal listener, whatever removed them (eviction, expiry,
    /// replacement, invalidation, refused admission).
    held: Arc<AtomicU64>,
}

impl<K, V> Store<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(crate) fn new(name: &str, max_bytes: u64) -> Self {
        let held = Arc::new(AtomicU64::new(0));
        let listener_held = Arc::clone(&held);
        let cache = moka::sync::Cache::builder()
            .name(name)
            .max_capacity(max_bytes)
            .weigher(|_: &K, entry: &Arc<Entry<V>>| entry.weight)
            .expire_after(KeepFor)
            .eviction_listener(move |_: Arc<K>, entry: Arc<Entry<V>>, _: RemovalCause| {
                listener_held.fetch_sub(u64::from(entry.weight), Ordering::Relaxed);
            })
            .build();
        Self { cache, held }
    }

    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<Arc<Entry<V>>> {
        self.cache.get(key)
    }

    pub(crate) fn insert(&self, key: K, entry: Arc<Entry<V>>) {
        self.held
            .fetch_add(u64::from(entry.weight), Ordering::Relaxed);
        self.cache.insert(key, entry);
    }

    /// Removes `key` if it still holds `entry` (an expired entry found by a
    /// read), leaving a newer one alone.
    pub(crate) fn remove_if_same(&self, key: &K, entry: &Arc<Entry<V>>) {
        if let Some(current) = self.cache.get(key)
            && Arc::ptr_eq(&current, entry)
        {
            self.cache.invalidate(key);
        }
    }

    /// Removes every entry whose key matches; returns how many.
    pub(crate) fn remove_matching(&self, matches: impl Fn(&K) -> bool) -> u64 {
        let mut removed = 0;
        for (key, _) in self.cache.iter() {
            if matches(&key) && self.cache.remove(&*key).is_some() {
                removed += 1;
            }
        }
        removed
    }

    pub(crate) fn clear(&self) -> u64 {
        self.remove_matching(|_| true)
    }

    /// Bytes held by the entries in the map.
    pub(crate) fn bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub(crate) fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies moka's pending work (evictions, expiry, admissions).
    pub(crate) fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}
