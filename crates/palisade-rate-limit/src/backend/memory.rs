//! The in-process backend: one GCRA word per key in the [`Table`], plus one
//! word shared by every call of an unkeyed limiter (or every request without
//! a key, under `MissingKey::Shared`).

use std::sync::atomic::Ordering;

use hashbrown::DefaultHashBuilder;

use crate::state::table::{Full, KeyRef, Padded, Slot, Table, cas_step};
use crate::state::{Decision, Gcra};

/// How often a shard of the table drops its idle keys (at most), in
/// nanoseconds.
pub(crate) const SWEEP_EVERY: u64 = 1_000_000_000;

/// Which word a decision used, to give a reservation back to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word {
    /// The unkeyed word.
    Unkeyed,
    /// The table's overflow word.
    Overflow,
    /// The key's own entry.
    Keyed,
    /// The key's own entry, just added to the table.
    Inserted,
}

/// The in-process GCRA store.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    unkeyed: Padded,
    table: Table,
}

impl MemoryStore {
    pub(crate) fn new(max_keys: usize, now: u64, hasher: DefaultHashBuilder) -> Self {
        Self {
            unkeyed: Padded::default(),
            table: Table::new(max_keys, SWEEP_EVERY, now, hasher),
        }
    }

    pub(crate) const fn table(&self) -> &Table {
        &self.table
    }

    /// One call of `key` (`None`: the unkeyed word) at `now`. `on_full` is
    /// told when a new key found the table full.
    #[inline(always)]
    pub(crate) fn decide(
        &self,
        key: Option<(KeyRef<'_>, u64)>,
        gcra: &Gcra,
        now: u64,
        max_delay: u64,
        on_full: impl FnOnce(Full),
    ) -> (Decision, Word) {
        let step = |tat| gcra.step(tat, now, max_delay);
        let (prev, word) = match key {
            None => (cas_step(&self.unkeyed.0, step).0, Word::Unkeyed),
            Some((key, hash)) => {
                let updated = self.table.update(key, hash, now, step, on_full);
                let word = match updated.slot {
                    Slot::Found => Word::Keyed,
                    Slot::Inserted => Word::Inserted,
                    Slot::Overflow => Word::Overflow,
                };
                (updated.prev, word)
            }
        };
        // The same pure function on the value the winning swap saw.
        (gcra.decide(prev, now, max_delay), word)
    }

    /// Gives back a reservation: sets the word from `from` (the TAT the
    /// reservation left) to `to` (the TAT before it), only if nothing was
    /// reserved after it since. Returns whether it did.
    pub(crate) fn give_back(
        &self,
        word: Word,
        key: Option<(KeyRef<'_>, u64)>,
        from: u64,
        to: u64,
    ) -> bool {
        match (word, key) {
            (Word::Unkeyed, _) => self
                .unkeyed
                .0
                .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok(),
            (Word::Overflow, _) => self.table.compare_exchange_overflow(from, to),
            (Word::Keyed | Word::Inserted, Some((key, hash))) => {
                self.table.compare_exchange(key, hash, from, to)
            }
            (Word::Keyed | Word::Inserted, None) => false,
        }
    }

    /// The TAT of `key` (`None`: the unkeyed word), if held.
    pub(crate) fn tat(&self, key: Option<(KeyRef<'_>, u64)>) -> Option<u64> {
        match key {
            None => Some(self.unkeyed.0.load(Ordering::Relaxed)),
            Some((key, hash)) => self.table.get(key, hash),
        }
    }

    /// Forgets every key and the unkeyed word.
    pub(crate) fn clear(&self) {
        self.table.clear();
        self.unkeyed.0.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Limit, Rate};
    use crate::state::table::TAG_TEXT;

    #[test]
    fn a_reservation_is_given_back_only_while_nothing_was_built_on_it() {
        let store = MemoryStore::new(16, 0, DefaultHashBuilder::default());
        let gcra = Gcra::new(Limit::new(Rate::per_second(10), 1));
        let t = gcra.emission();
        let k = KeyRef {
            tag: TAG_TEXT,
            bytes: b"k",
        };
        let key = Some((k, store.table().hash(k)));
        let (first, _) = store.decide(key, &gcra, 0, t * 5, |_| {});
        assert_eq!(first, Decision::Admit { tat: t, wait: 0 });
        let (second, word) = store.decide(key, &gcra, 0, t * 5, |_| {});
        assert_eq!(
            second,
            Decision::Admit {
                tat: 2 * t,
                wait: t
            }
        );
        // A third reserves after the second: the second cannot give back.
        let (third, _) = store.decide(key, &gcra, 0, t * 5, |_| {});
        assert_eq!(
            third,
            Decision::Admit {
                tat: 3 * t,
                wait: 2 * t
            }
        );
        assert!(!store.give_back(word, key, 2 * t, t));
        // The third, the last, can; then the second can.
        assert!(store.give_back(word, key, 3 * t, 2 * t));
        assert!(store.give_back(word, key, 2 * t, t));
        assert_eq!(store.tat(key), Some(t));
        // Unkeyed too.
        let (d, w) = store.decide(None, &gcra, 0, t, |_| {});
        assert_eq!((d, w), (Decision::Admit { tat: t, wait: 0 }, Word::Unkeyed));
        assert!(store.give_back(Word::Unkeyed, None, t, 0));
    }
}
