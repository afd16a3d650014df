//! The partition table: a bounded map from partition keys to values (a
//! partition's pool), sharded so that lookups of different keys mostly take
//! different read locks. It counts the live entries and refuses a new key
//! beyond its bound; what a value is and when one is removed is the caller's
//! business.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shards of the table.
pub(crate) const SHARDS: usize = 16;

/// One shard of the table.
type Shard<V> = RwLock<HashMap<Arc<str>, V>>;

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Every write is one insert, remove or retain of whole entries.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
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

/// What [`Table::get_or_insert`] did.
#[derive(Debug)]
pub(crate) enum Insert<V> {
    /// The key was there (another caller inserted it first).
    Found(V),
    /// The key was inserted; `live` entries now.
    Created {
        /// The key, as stored.
        key: Arc<str>,
        /// The new value.
        value: V,
        /// Live entries, the new one included.
        live: usize,
    },
    /// The table holds its bound of entries.
    Full,
}

/// What [`Table::remove_where`] removed.
#[derive(Debug, Default)]
pub(crate) struct Removed {
    /// The keys removed.
    pub(crate) keys: Vec<Arc<str>>,
    /// Live entries left.
    pub(crate) live: usize,
}

/// A bounded, sharded map from keys to values.
#[derive(Debug)]
pub(crate) struct Table<V> {
    shards: Box<[Shard<V>]>,
    live: AtomicUsize,
    max: usize,
}

impl<V: Clone> Table<V> {
    /// An empty table of at most `max` entries.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            live: AtomicUsize::new(0),
            max,
        }
    }

    /// How many entries are live.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The bound on live entries.
    pub(crate) const fn max(&self) -> usize {
        self.max
    }

    /// The value of `key`, if live.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        read(&self.shards[shard_of(key)]).get(key).cloned()
    }

    /// The value of `key`, or a new one made by `make` (under the shard's
    /// write lock, so at most once per key) if the bound allows.
    pub(crate) fn get_or_insert(&self, key: &str, make: impl FnOnce(&Arc<str>) -> V) -> Insert<V> {
        let mut map = write(&self.shards[shard_of(key)]);
        if let Some(value) = map.get(key) {
            return Insert::Found(value.clone());
        }
        let reserved = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.max).then_some(live + 1)
            });
        let Ok(live) = reserved else {
            return Insert::Full;
        };
        let key: Arc<str> = Arc::from(key);
        let value = make(&key);
        map.insert(Arc::clone(&key), value.clone());
        Insert::Created {
            key,
            value,
            live: live + 1,
        }
    }

    /// Removes every entry for which `remove` says `true` (called under its
    /// shard's write lock).
    pub(crate) fn remove_where(&self, mut remove: impl FnMut(&V) -> bool) -> Removed {
        let mut keys: Vec<Arc<str>> = Vec::new();
        for shard in &*self.shards {
            write(shard).retain(|key, value| {
                if remove(value) {
                    keys.push(Arc::clone(key));
                    false
                } else {
                    true
                }
            });
        }
        let removed = keys.len();
        let live = if removed > 0 {
            self.live.fetch_sub(removed, Ordering::AcqRel) - removed
        } else {
            self.live()
        };
        Removed { keys, live }
    }

    /// Every live value.
    pub(crate) fn values(&self) -> Vec<V> {
        let mut values = Vec::with_capacity(self.live());
        for shard in &*self.shards {
            values.extend(read(shard).values().cloned());
        }
        values
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

    #[test]
    fn the_bound_holds_and_removal_makes_room() {
        let table = Table::new(2);
        let mut made = 0;
        let mut make = |key: &Arc<str>| {
            made += 1;
            key.len()
        };
        assert!(matches!(
            table.get_or_insert("a", &mut make),
            Insert::Created {
                value: 1,
                live: 1,
                ..
            }
        ));
        assert!(matches!(
            table.get_or_insert("a", &mut make),
            Insert::Found(1)
        ));
        assert!(matches!(
            table.get_or_insert("bb", &mut make),
            Insert::Created {
                value: 2,
                live: 2,
                ..
            }
        ));
        assert!(matches!(
            table.get_or_insert("ccc", &mut make),
            Insert::Full
        ));
        assert_eq!(made, 2, "made once per inserted key");
        assert_eq!(table.get("bb"), Some(2));
        assert_eq!(table.get("ccc"), None);
        let removed = table.remove_where(|v| *v == 1);
        assert_eq!(removed.keys, vec![Arc::<str>::from("a")]);
        assert_eq!((removed.live, table.live()), (1, 1));
        assert!(matches!(
            table.get_or_insert("ccc", |_| 3),
            Insert::Created {
                value: 3,
                live: 2,
                ..
            }
        ));
        let mut values = table.values();
        values.sort_unstable();
        assert_eq!(values, vec![2, 3]);
        assert_eq!(table.remove_where(|_| false).live, 2);
    }
}
