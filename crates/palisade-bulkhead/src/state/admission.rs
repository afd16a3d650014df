//! A pool's admission state, as pure data: the packed admission word and the
//! FIFO queue of waiters. The pool (`shared::pool`) applies these under its
//! atomics and its queue lock; nothing here reads a clock, logs or counts.
//!
//! The whole admission state is one `u64`:
//!
//! ```text
//!  63        62        61..32              31..0
//! RETIRED | TOUCHED | waiters (30 bits) | available permits (i32, negative = debt)
//! ```

use std::collections::VecDeque;
use std::task::Waker;

use crate::settings::MAX_QUEUE;

const AVAIL_MASK: u64 = 0xFFFF_FFFF;
const WAITERS_SHIFT: u32 = 32;
const WAITERS_MASK: u64 = MAX_QUEUE as u64;
/// One waiter, in the waiter count.
pub(crate) const ONE_WAITER: u64 = 1 << WAITERS_SHIFT;
/// Used since the last sweep.
pub(crate) const TOUCHED: u64 = 1 << 62;
/// Reclaimed: admits nothing.
pub(crate) const RETIRED: u64 = 1 << 63;

/// The available permits of the word `s` (negative: a debt).
#[inline]
pub(crate) fn avail(s: u64) -> i64 {
    // The low 32 bits hold an i32.
    i64::from(s as u32 as i32)
}

/// The waiter count of the word `s`.
#[inline]
pub(crate) fn waiters(s: u64) -> u64 {
    (s >> WAITERS_SHIFT) & WAITERS_MASK
}

/// The word `s` with `available` permits.
#[inline]
pub(crate) fn with_avail(s: u64, available: i64) -> u64 {
    debug_assert!(i64::from(i32::MIN) <= available && available <= i64::from(i32::MAX));
    (s & !AVAIL_MASK) | u64::from(available as i32 as u32)
}

// ===== WaitQueue =====

#[derive(Debug)]
pub(crate) enum Slot {
    Free,
    /// Waiting; the waker of the last poll, if polled yet.
    Waiting(Option<Waker>),
    /// A permit was handed over; the ticket has not claimed it yet.
    Granted,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) generation: u32,
    pub(crate) slot: Slot,
}

/// The waiters of one pool: a slab of slots and their FIFO order. Entries in
/// `order` whose generation no longer matches their slot were cancelled; they
/// are skipped, and compacted away when they outnumber the live ones.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    pub(crate) entries: Vec<Entry>,
    free: Vec<u32>,
    pub(crate) order: VecDeque<(u32, u32)>,
    stale: usize,
}

impl WaitQueue {
    /// Queues a new waiter; returns its slot index and generation.
    #[inline]
    pub(crate) fn push(&mut self) -> (u32, u32) {
        let index = if let Some(index) = self.free.pop() {
            self.entries[index as usize].slot = Slot::Waiting(None);
            index
        } else {
            let index =
                u32::try_from(self.entries.len()).expect("waiters are bounded by MAX_QUEUE");
            self.entries.push(Entry {
                generation: 0,
                slot: Slot::Waiting(None),
            });
            index
        };
        let generation = self.entries[index as usize].generation;
        self.order.push_back((index, generation));
        (index, generation)
    }

    #[inline]
    fn is_live(&self, (index, generation): (u32, u32)) -> bool {
        let entry = &self.entries[index as usize];
        entry.generation == generation && matches!(entry.slot, Slot::Waiting(_))
    }

    /// Grants the oldest waiter; returns its waker.
    #[inline]
    pub(crate) fn grant_front(&mut self) -> Option<Waker> {
        while let Some(front) = self.order.pop_front() {
            if !self.is_live(front) {
                self.stale -= 1;
                continue;
            }
            let entry = &mut self.entries[front.0 as usize];
            return match std::mem::replace(&mut entry.slot, Slot::Granted) {
                Slot::Waiting(waker) => waker,
                Slot::Free | Slot::Granted => unreachable!("checked live above"),
            };
        }
        debug_assert!(false, "a waiter was counted but none is queued");
        None
    }

    /// Frees the slot `index` (a granted ticket claimed or passed on its
    /// permit).
    #[inline]
    pub(crate) fn free(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        entry.slot = Slot::Free;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
    }

    /// Removes a waiter that was not granted; its place in `order` goes stale.
    #[inline]
    pub(crate) fn cancel(&mut self, index: u32) {
        self.free(index);
        self.stale += 1;
        if self.stale > 32 && self.stale * 2 > self.order.len() {
            let entries = &self.entries;
            self.order.retain(|&(i, g)| {
                let e = &entries[i as usize];
                e.generation == g && matches!(e.slot, Slot::Waiting(_))
            });
            self.stale = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for a in [-(1i64 << 29), -1, 0, 1, 1 << 29] {
            let s = with_avail(TOUCHED | (5 * ONE_WAITER), a);
            assert_eq!(avail(s), a);
            assert_eq!(waiters(s), 5);
            assert!(s & TOUCHED != 0 && s & RETIRED == 0);
        }
    }

    #[test]
    fn the_queue_grants_in_order_and_skips_the_cancelled() {
        let mut q = WaitQueue::default();
        let (a, _) = q.push();
        let (b, _) = q.push();
        let (c, _) = q.push();
        q.cancel(b);
        assert!(q.grant_front().is_none(), "a was never polled: no waker");
        assert!(matches!(q.entries[a as usize].slot, Slot::Granted));
        q.grant_front();
        assert!(matches!(q.entries[c as usize].slot, Slot::Granted));
        assert!(matches!(q.entries[b as usize].slot, Slot::Free));
        // A freed slot is reused with a new generation.
        q.free(a);
        let (again, generation) = q.push();
        assert_eq!((again, generation), (a, 1));
    }
}
