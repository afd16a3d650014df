//! The key table: one atomic word per key, in a bounded, sharded hash table.
//!
//! Each entry is the key's bytes and one `AtomicU64` (a GCRA TAT, or for the
//! remote backend's local cache a "limited until" time). A word whose time is
//! not in the future carries no information (a whole allowance, or no
//! limit): such an entry is *idle* and may be dropped at any time, which is
//! how the table stays small.
//!
//! - **Lookup of a known key**: hash the key once, take its shard's read lock
//!   (many readers at once; a read lock is one atomic operation on the
//!   shard's own cache line), find the entry and compare-and-swap its word
//!   under that read lock. No allocation, no write lock.
//! - **A new key** takes its shard's write lock and inserts (allocating
//!   the key's bytes only for a key too long to be held inline). Every `sweep_every`, an insert into a shard first
//!   drops that shard's idle entries.
//! - **Bounded**: at most `max` entries in all. A new key that finds the
//!   table full (after its shard's sweep, when one is due) shares the
//!   table's *overflow* word with the other newcomers until room is made.
//!
//! Memory per key: the entry (32 bytes: the key and the word) in a table of
//! at most 7/8 load (one control byte per slot). A key of up to 21 bytes (an
//! IP address, a short id) is held in the entry itself; a longer one has an
//! allocation of its own (its length plus one tag byte, rounded up by the
//! allocator). `docs/benchmarks.md` has the measured bytes per key.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::RwLock;

/// The tag of a key given as text or bytes.
pub(crate) const TAG_TEXT: u8 = 0;
/// The tag of an IPv4 address key (4 bytes).
pub(crate) const TAG_V4: u8 = 1;
/// The tag of an IPv6 address key (16 bytes).
pub(crate) const TAG_V6: u8 = 2;

/// A key as the table sees it: a tag (so the text "1.2.3.4" and the address
/// 1.2.3.4 are different keys) and bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRef<'a> {
    pub(crate) tag: u8,
    pub(crate) bytes: &'a [u8],
}

impl<'a> KeyRef<'a> {
    #[inline]
    fn matches(&self, stored: &StoredKey) -> bool {
        let stored = stored.as_slice();
        stored.first() == Some(&self.tag) && &stored[1..] == self.bytes
    }

    /// The key as stored: the tag, then the bytes.
    pub(crate) fn to_stored(self) -> Box<[u8]> {
        let mut stored = Vec::with_capacity(self.bytes.len() + 1);
        stored.push(self.tag);
        stored.extend_from_slice(self.bytes);
        stored.into_boxed_slice()
    }

    /// The key of a stored form.
    pub(crate) fn from_stored(stored: &'a [u8]) -> Self {
        Self {
            tag: stored.first().copied().unwrap_or(TAG_TEXT),
            bytes: stored.get(1..).unwrap_or_default(),
        }
    }
}

/// The bytes a key's entry holds inline (its tag included): IP addresses
/// and short keys need no allocation of their own, and comparing them reads
/// no other cache line.
const INLINE: usize = 22;

/// A key as the table stores it: the tag, then the bytes; inline when short.
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl StoredKey {
    fn new(key: KeyRef<'_>) -> Self {
        let len = key.bytes.len() + 1;
        if len <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[0] = key.tag;
            bytes[1..len].copy_from_slice(key.bytes);
            // `len` ≤ INLINE < 256.
            Self::Inline {
                len: len as u8,
                bytes,
            }
        } else {
            Self::Heap(key.to_stored())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

/// 32 bytes, aligned to 32: the table's slots then never straddle a 64-byte
/// cache line, so a lookup reads one line of entries (with hashbrown's own
/// 16-byte alignment and the allocator's, every other slot straddled two).
#[repr(align(32))]
struct Entry {
    key: StoredKey,
    word: AtomicU64,
}

const _: () = assert!(size_of::<Entry>() == 32);

struct ShardInner {
    entries: HashTable<Entry>,
    next_sweep: u64,
}

/// One shard, alone on its cache lines so that two threads on two shards do
/// not contend.
#[repr(align(128))]
struct Shard(RwLock<ShardInner>);

/// A word alone on its cache lines.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded(pub(crate) AtomicU64);

/// Where a key's word lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The key's own entry, which existed.
    Found,
    /// The key's own entry, just inserted.
    Inserted,
    /// The shared overflow word: the table was full.
    Overflow,
}

/// The outcome of [`Table::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Updated {
    /// The word before the update (0 for a new key).
    pub(crate) prev: u64,
    /// The word after (equal to `prev` when `step` declined).
    pub(crate) next: u64,
    /// Where the word lives.
    pub(crate) slot: Slot,
}

/// Applies `step` to `word` atomically: `step` maps the current value to the
/// new one, or `None` to leave it. Returns `(previous, current)`.
#[inline]
pub(crate) fn cas_step(word: &AtomicU64, step: impl Fn(u64) -> Option<u64>) -> (u64, u64) {
    // Relaxed is enough: the word is the only data, and atomicity of the
    // read-modify-write does not depend on ordering. `step` runs once per
    // attempt.
    let mut prev = word.load(Ordering::Relaxed);
    loop {
        let Some(next) = step(prev) else {
            return (prev, prev);
        };
        match word.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return (prev, next),
            Err(current) => prev = current,
        }
    }
}

/// The keys of one limiter and their words.
pub(crate) struct Table {
    shards: Box<[Shard]>,
    shard_mask: u64,
    hasher: DefaultHashBuilder,
    len: AtomicUsize,
    max: usize,
    sweep_every: u64,
    overflow: Padded,
    /// Set while new keys are sent to the overflow word (reset by a sweep
    /// that makes room): lets the caller report the first one only.
    full: AtomicBool,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len())
            .field("max", &self.max)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// What an insert that found the table full did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The table was already sending new keys to the overflow word.
    Already,
    /// This key is the first sent to the overflow word since the table last
    /// had room.
    Newly,
}

impl Table {
    /// A table of at most `max` keys whose shards drop idle entries at most
    /// once every `sweep_every` nanoseconds, from `now` on.
    pub(crate) fn new(max: usize, sweep_every: u64, now: u64, hasher: DefaultHashBuilder) -> Self {
        let shards = (max / 256).clamp(1, 64).next_power_of_two();
        Self {
            shards: (0..shards)
                .map(|_| {
                    Shard(RwLock::new(ShardInner {
                        entries: HashTable::new(),
                        next_sweep: now.saturating_add(sweep_every),
                    }))
                })
                .collect(),
            shard_mask: shards as u64 - 1,
            hasher,
            len: AtomicUsize::new(0),
            max,
            sweep_every,
            overflow: Padded::default(),
            full: AtomicBool::new(false),
        }
    }

    /// The key's hash (the limiter hashes with the same builder).
    #[cfg(test)]
    pub(crate) fn hash(&self, key: KeyRef<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u8(key.tag);
        hasher.write(key.bytes);
        hasher.finish()
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        // Bits 40 and up to 45: hashbrown uses the low bits for the slot and
        // the top seven for its control bytes.
        &self.shards[((hash >> 40) & self.shard_mask) as usize]
    }

    /// The number of keys held.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The word of `key`, if the table holds it.
    pub(crate) fn get(&self, key: KeyRef<'_>, hash: u64) -> Option<u64> {
        let shard = self.shard(hash).0.read();
        shard
            .entries
            .find(hash, |e| key.matches(&e.key))
            .map(|e| e.word.load(Ordering::Relaxed))
    }

    /// Applies `step` to the word of `key` (see [`cas_step`]). A key not held
    /// is inserted (with a word of 0 before `step`) if `step` changes it; if
    /// the table is full it uses the overflow word instead, and `on_full` is
    /// told (without any lock held).
    #[inline(always)]
    pub(crate) fn update(
        &self,
        key: KeyRef<'_>,
        hash: u64,
        now: u64,
        step: impl Fn(u64) -> Option<u64>,
        on_full: impl FnOnce(Full),
    ) -> Updated {
        let shard = self.shard(hash);
        {
            let inner = shard.0.read();
            if let Some(entry) = inner.entries.find(hash, |e| key.matches(&e.key)) {
                let (prev, next) = cas_step(&entry.word, &step);
                return Updated {
                    prev,
                    next,
                    slot: Slot::Found,
                };
            }
        }
        self.insert(shard, key, hash, now, step, on_full)
    }

    #[cold]
    #[inline(never)]
    fn insert(
        &self,
        shard: &Shard,
        key: KeyRef<'_>,
        hash: u64,
        now: u64,
        step: impl Fn(u64) -> Option<u64>,
        on_full: impl FnOnce(Full),
    ) -> Updated {
        let mut inner = shard.0.write();
        if let Some(entry) = inner.entries.find(hash, |e| key.matches(&e.key)) {
            let (prev, next) = cas_step(&entry.word, &step);
            return Updated {
                prev,
                next,
                slot: Slot::Found,
            };
        }
        let Some(first) = step(0) else {
            // Nothing to remember: an idle word is the same as no entry.
            return Updated {
                prev: 0,
                next: 0,
                slot: Slot::Found,
            };
        };
        if now >= inner.next_sweep {
            self.sweep_shard(&mut inner, now);
        }
        let reserved = self
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |len| {
                (len < self.max).then_some(len + 1)
            });
        if reserved.is_err() {
            drop(inner);
            let (prev, next) = cas_step(&self.overflow.0, &step);
            let was_full = self.full.swap(true, Ordering::Relaxed);
            on_full(if was_full { Full::Already } else { Full::Newly });
            return Updated {
                prev,
                next,
                slot: Slot::Overflow,
            };
        }
        let hasher = &self.hasher;
        inner.entries.insert_unique(
            hash,
            Entry {
                key: StoredKey::new(key),
                word: AtomicU64::new(first),
            },
            |e| {
                let mut h = hasher.build_hasher();
                let stored = KeyRef::from_stored(e.key.as_slice());
                h.write_u8(stored.tag);
                h.write(stored.bytes);
                h.finish()
            },
        );
        Updated {
            prev: 0,
            next: first,
            slot: Slot::Inserted,
        }
    }

    /// Sets the word of `key` from `from` to `to` if it still holds `from`:
    /// for giving back a reservation nothing was built on since.
    pub(crate) fn compare_exchange(&self, key: KeyRef<'_>, hash: u64, from: u64, to: u64) -> bool {
        let inner = self.shard(hash).0.read();
        inner
            .entries
            .find(hash, |e| key.matches(&e.key))
            .is_some_and(|e| {
                e.word
                    .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            })
    }

    /// The same for the overflow word.
    pub(crate) fn compare_exchange_overflow(&self, from: u64, to: u64) -> bool {
        self.overflow
            .0
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The overflow word.
    #[cfg(test)]
    fn overflow(&self) -> u64 {
        self.overflow.0.load(Ordering::Relaxed)
    }

    fn sweep_shard(&self, inner: &mut ShardInner, now: u64) -> usize {
        let before = inner.entries.len();
        inner
            .entries
            .retain(|e| e.word.load(Ordering::Relaxed) > now);
        inner.next_sweep = now.saturating_add(self.sweep_every);
        let removed = before - inner.entries.len();
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::AcqRel);
            self.full.store(false, Ordering::Relaxed);
            if inner.entries.capacity() > 64 && inner.entries.len() * 4 < inner.entries.capacity() {
                let hasher = &self.hasher;
                inner.entries.shrink_to(inner.entries.len() * 2, |e| {
                    let mut h = hasher.build_hasher();
                    let stored = KeyRef::from_stored(e.key.as_slice());
                    h.write_u8(stored.tag);
                    h.write(stored.bytes);
                    h.finish()
                });
            }
        }
        removed
    }

    /// Drops every idle entry now (every shard). Returns how many.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|shard| self.sweep_shard(&mut shard.0.write(), now))
            .sum()
    }

    /// Forgets every key.
    pub(crate) fn clear(&self) {
        for shard in &*self.shards {
            let mut inner = shard.0.write();
            let removed = inner.entries.len();
            inner.entries.clear();
            inner.entries.shrink_to(0, |_| 0);
            self.len.fetch_sub(removed, Ordering::AcqRel);
        }
        self.overflow.0.store(0, Ordering::Relaxed);
        self.full.store(false, Ordering::Relaxed);
    }

    /// Calls `visit` with every key and its word (takes each shard's read
    /// lock in turn).
    #[cfg(test)]
    fn for_each(&self, mut visit: impl FnMut(KeyRef<'_>, u64)) {
        for shard in &*self.shards {
            for e in shard.0.read().entries.iter() {
                visit(
                    KeyRef::from_stored(e.key.as_slice()),
                    e.word.load(Ordering::Relaxed),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> KeyRef<'_> {
        KeyRef {
            tag: TAG_TEXT,
            bytes: text.as_bytes(),
        }
    }

    fn set(table: &Table, k: &str, now: u64, to: u64) -> Updated {
        table.update(key(k), table.hash(key(k)), now, |_| Some(to), |_| {})
    }

    #[test]
    fn no_entry_straddles_a_cache_line() {
        // 10 000 keys over the shards: every entry lies within one 64-byte
        // line, so a lookup of a known key reads one line of entries.
        let table = Table::new(100_000, 1_000_000, 0, DefaultHashBuilder::default());
        for i in 0..10_000 {
            set(&table, &format!("key-{i}"), 0, 5);
        }
        let mut seen = 0;
        for shard in &*table.shards {
            for entry in shard.0.read().entries.iter() {
                let at = std::ptr::from_ref(entry).addr();
                assert!(
                    at % 64 + size_of::<Entry>() <= 64,
                    "entry at {at:#x} straddles a line"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 10_000);
    }

    #[test]
    fn insert_find_and_tags_keep_keys_apart() {
        let table = Table::new(100, 1_000, 0, DefaultHashBuilder::default());
        assert_eq!(set(&table, "a", 0, 5).slot, Slot::Inserted);
        let again = set(&table, "a", 0, 7);
        assert_eq!((again.prev, again.next, again.slot), (5, 7, Slot::Found));
        let ip = KeyRef {
            tag: TAG_V4,
            bytes: b"a",
        };
        assert_eq!(table.get(ip, table.hash(ip)), None);
        assert_eq!(table.get(key("a"), table.hash(key("a"))), Some(7));
        assert_eq!(table.len(), 1);
        // A step that declines on a new key inserts nothing.
        let declined = table.update(key("b"), table.hash(key("b")), 0, |_| None, |_| {});
        assert_eq!(declined.next, 0);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn short_keys_inline_and_long_keys_on_the_heap_are_both_found() {
        let table = Table::new(100, 1_000, 0, DefaultHashBuilder::default());
        let short = "x".repeat(INLINE - 1);
        let long = "y".repeat(INLINE);
        for (k, w) in [(&short, 1), (&long, 2), (&String::new(), 3)] {
            assert_eq!(set(&table, k, 0, w).slot, Slot::Inserted);
        }
        for (k, w) in [(&short, 1), (&long, 2), (&String::new(), 3)] {
            assert_eq!(table.get(key(k), table.hash(key(k))), Some(w), "{k:?}");
        }
        assert!(matches!(
            StoredKey::new(key(&short)),
            StoredKey::Inline { .. }
        ));
        assert!(matches!(StoredKey::new(key(&long)), StoredKey::Heap(_)));
        // A prefix of a stored key is another key.
        assert_eq!(
            table.get(key(&short[1..]), table.hash(key(&short[1..]))),
            None
        );
    }

    #[test]
    fn full_table_uses_the_overflow_word_and_reports_once() {
        let table = Table::new(3, 1_000, 0, DefaultHashBuilder::default());
        for k in ["a", "b", "c"] {
            assert_eq!(set(&table, k, 0, 10).slot, Slot::Inserted);
        }
        let mut reports = Vec::new();
        for k in ["d", "e"] {
            let u = table.update(
                key(k),
                table.hash(key(k)),
                0,
                |w| Some(w + 1),
                |f| reports.push(f),
            );
            assert_eq!(u.slot, Slot::Overflow);
        }
        assert_eq!(reports, vec![Full::Newly, Full::Already]);
        assert_eq!(table.overflow(), 2);
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn idle_entries_are_swept_when_due() {
        let table = Table::new(200, 100, 0, DefaultHashBuilder::default());
        set(&table, "idle", 0, 50);
        set(&table, "busy", 0, 500);
        // Before the sweep is due, nothing goes.
        set(&table, "x", 60, 61);
        assert_eq!(table.len(), 3);
        // An insert at 100 sweeps its shard (one shard here): `idle` (50)
        // and `x` (61) are in the past.
        set(&table, "y", 100, 1_000);
        assert_eq!(table.len(), 2);
        let mut keys = Vec::new();
        table.for_each(|k, w| keys.push((String::from_utf8(k.bytes.to_vec()).unwrap(), w)));
        keys.sort();
        assert_eq!(
            keys,
            vec![("busy".to_owned(), 500), ("y".to_owned(), 1_000)]
        );
        assert_eq!(table.sweep(10_000), 2);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn compare_exchange_only_from_the_expected_value() {
        let table = Table::new(10, 1_000, 0, DefaultHashBuilder::default());
        set(&table, "a", 0, 10);
        let h = table.hash(key("a"));
        assert!(!table.compare_exchange(key("a"), h, 9, 1));
        assert!(table.compare_exchange(key("a"), h, 10, 1));
        assert_eq!(table.get(key("a"), h), Some(1));
        assert!(!table.compare_exchange(key("zz"), table.hash(key("zz")), 0, 1));
    }

    #[test]
    fn concurrent_updates_are_atomic() {
        let table = Table::new(10_000, u64::MAX, 0, DefaultHashBuilder::default());
        std::thread::scope(|s| {
            for t in 0..4 {
                let table = &table;
                s.spawn(move || {
                    for i in 0..2_000u64 {
                        let k = format!("k{}", (i + t) % 50);
                        table.update(key(&k), table.hash(key(&k)), 0, |w| Some(w + 1), |_| {});
                    }
                });
            }
        });
        let mut total = 0;
        table.for_each(|_, w| total += w);
        assert_eq!(total, 8_000);
        assert_eq!(table.len(), 50);
    }
}
