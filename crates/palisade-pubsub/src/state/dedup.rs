//! The bounded set of message ids an idempotent consumer has seen: pure,
//! synchronous, with the clock passed in.
//!
//! An id is *in progress* while a handler runs for it and *done* once a
//! handler succeeded. Done ids are kept, oldest evicted first, up to a
//! capacity (and optionally for at most a time to live); in-progress ids are
//! never evicted (the consumer's in-flight bound caps them) and are removed
//! when their handler fails or is dropped, so a redelivery can try again.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// What [`DedupSet::begin`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Begin {
    /// Not seen (or evicted): now marked in progress; run the handler.
    Fresh,
    /// A handler for this id is running now (a concurrent redelivery).
    InProgress,
    /// A handler already succeeded for this id: skip it.
    Done,
}

#[derive(Clone, Copy, Debug)]
enum State {
    InProgress,
    /// Done at this instant; `seq` tells the eviction queue's entry apart from
    /// an older one for the same id.
    Done {
        at: Instant,
        seq: u64,
    },
}

/// Ids seen, bounded by `capacity` done entries.
#[derive(Debug)]
pub(crate) struct DedupSet {
    capacity: usize,
    ttl: Option<Duration>,
    states: HashMap<Box<str>, State>,
    order: VecDeque<(Box<str>, u64)>,
    next_seq: u64,
    done: usize,
}

impl DedupSet {
    /// An empty set keeping at most `capacity` done ids, each for at most
    /// `ttl` when given.
    #[must_use]
    pub(crate) fn new(capacity: usize, ttl: Option<Duration>) -> Self {
        Self {
            capacity,
            ttl,
            states: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            done: 0,
        }
    }

    /// Looks `id` up; a fresh id is marked in progress.
    pub(crate) fn begin(&mut self, id: &str, now: Instant) -> Begin {
        self.expire(now);
        match self.states.get(id) {
            Some(State::InProgress) => Begin::InProgress,
            Some(State::Done { .. }) => Begin::Done,
            None => {
                self.states.insert(id.into(), State::InProgress);
                Begin::Fresh
            }
        }
    }

    /// The handler for `id` succeeded: keep it as done, evicting the oldest
    /// done id beyond the capacity.
    pub(crate) fn complete(&mut self, id: &str, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.states.entry(id.into()) {
            Entry::Occupied(mut e) => {
                if matches!(e.get(), State::InProgress) {
                    self.done += 1;
                }
                e.insert(State::Done { at: now, seq });
            }
            Entry::Vacant(e) => {
                e.insert(State::Done { at: now, seq });
                self.done += 1;
            }
        }
        self.order.push_back((id.into(), seq));
        while self.done > self.capacity {
            if !self.evict_oldest() {
                break;
            }
        }
        // An id completed again leaves a stale queue entry behind; shed them
        // so the queue stays within twice the live entries.
        if self.order.len() > 2 * self.done.max(8) {
            let states = &self.states;
            self.order.retain(|(id, seq)| {
                matches!(states.get(&**id), Some(State::Done { seq: s, .. }) if s == seq)
            });
        }
    }

    /// The handler for `id` failed or was dropped: forget the in-progress
    /// mark so a redelivery runs it again. A done id is left alone.
    pub(crate) fn abandon(&mut self, id: &str) {
        if let Some(State::InProgress) = self.states.get(id) {
            self.states.remove(id);
        }
    }

    /// Ids kept, in progress and done.
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Drops done ids older than the time to live.
    fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.ttl else { return };
        while let Some((id, seq)) = self.order.front() {
            match self.states.get(&**id) {
                Some(State::Done { at, seq: s }) if s == seq => {
                    if now.saturating_duration_since(*at) < ttl {
                        return;
                    }
                }
                _ => {
                    // A stale queue entry (the id was completed again later).
                    self.order.pop_front();
                    continue;
                }
            }
            self.evict_oldest();
        }
    }

    /// Removes the oldest live done entry; `false` when none is left.
    fn evict_oldest(&mut self) -> bool {
        while let Some((id, seq)) = self.order.pop_front() {
            if let Some(State::Done { seq: s, .. }) = self.states.get(&*id)
                && *s == seq
            {
                self.states.remove(&*id);
                self.done -= 1;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fresh_in_progress_done() {
        let now = Instant::now();
        let mut set = DedupSet::new(2, None);
        assert_eq!(set.begin("a", now), Begin::Fresh);
        assert_eq!(set.begin("a", now), Begin::InProgress);
        set.complete("a", now);
        assert_eq!(set.begin("a", now), Begin::Done);
    }

    #[test]
    fn abandoned_ids_run_again() {
        let now = Instant::now();
        let mut set = DedupSet::new(2, None);
        assert_eq!(set.begin("a", now), Begin::Fresh);
        set.abandon("a");
        assert_eq!(set.begin("a", now), Begin::Fresh);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn evicts_the_oldest_done_beyond_capacity() {
        let now = Instant::now();
        let mut set = DedupSet::new(2, None);
        for id in ["a", "b", "c"] {
            assert_eq!(set.begin(id, now), Begin::Fresh);
            set.complete(id, now);
        }
        assert_eq!(set.len(), 2);
        assert_eq!(set.begin("b", now), Begin::Done);
        assert_eq!(set.begin("c", now), Begin::Done);
        assert_eq!(set.begin("a", now), Begin::Fresh);
    }

    #[test]
    fn in_progress_ids_are_never_evicted() {
        let now = Instant::now();
        let mut set = DedupSet::new(1, None);
        assert_eq!(set.begin("busy", now), Begin::Fresh);
        for id in ["a", "b", "c"] {
            set.begin(id, now);
            set.complete(id, now);
        }
        assert_eq!(set.begin("busy", now), Begin::InProgress);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn done_ids_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut set = DedupSet::new(10, Some(Duration::from_secs(60)));
        set.begin("a", t0);
        set.complete("a", t0);
        assert_eq!(set.begin("a", t0 + Duration::from_secs(59)), Begin::Done);
        assert_eq!(set.begin("a", t0 + Duration::from_secs(60)), Begin::Fresh);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Begin(u8),
        Complete(u8),
        Abandon(u8),
    }

    proptest! {
        /// Memory stays bounded (done entries ≤ capacity, the queue holds no
        /// more than one live entry per done id plus stale ones it sheds) and
        /// a done id within the capacity's most recent is always reported done.
        #[test]
        fn bounded_and_remembers_the_most_recent(
            ops in proptest::collection::vec(
                prop_oneof![
                    (0u8..12).prop_map(Op::Begin),
                    (0u8..12).prop_map(Op::Complete),
                    (0u8..12).prop_map(Op::Abandon),
                ],
                0..200,
            ),
            capacity in 1usize..6,
        ) {
            let now = Instant::now();
            let mut set = DedupSet::new(capacity, None);
            let mut recent: VecDeque<u8> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Begin(i) => { set.begin(&i.to_string(), now); }
                    Op::Complete(i) => {
                        set.complete(&i.to_string(), now);
                        recent.retain(|x| *x != i);
                        recent.push_back(i);
                        if recent.len() > capacity { recent.pop_front(); }
                    }
                    Op::Abandon(i) => set.abandon(&i.to_string()),
                }
                prop_assert!(set.done <= capacity);
                prop_assert!(set.order.len() <= 2 * capacity.max(8) + 1);
                for id in &recent {
                    prop_assert_eq!(set.states.get(&*id.to_string()).map(|s| matches!(s, State::Done { .. })), Some(true));
                }
            }
        }
    }
}
