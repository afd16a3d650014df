//! Request coalescing: at most one backend call per key at a time.
//!
//! The first request to miss on a key becomes the *leader* of a flight and
//! makes the backend call; the requests that miss on the same key while it
//! runs become *waiters* and get its outcome. A flight is one entry of a
//! sharded map, touched only on misses (a hit never locks anything):
//!
//! - The leader completes the flight with an [`Outcome`]: it leaves the map,
//!   and every waiter is woken (tokio's `Notify::notify_waiters`; a waiter
//!   creates its `OwnedNotified` before it looks at the state, so it cannot
//!   miss the wake-up).
//! - A leader dropped before it completes (its caller went away) *orphans*
//!   the flight: the waiters are woken, and the first to look claims it and
//!   becomes the leader, with its own request and its own clone of the
//!   service. A request that arrives at an orphaned flight claims it too.
//! - The last participant of an orphaned flight removes it from the map, so
//!   nothing is left behind.
//!
//! Locks: a shard's map lock, then a flight's state lock, always in that
//! order, never held across an `.await` or a poll return.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;

use palisade_core::BoxError;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use super::store::Entry;

const SHARDS: usize = 64;

/// What a flight's waiters get.
#[derive(Debug)]
pub(crate) enum Outcome<V> {
    /// A value: stored (or only shared) for the flight's key. `exact` is
    /// `false` when it was stored under another key (an HTTP variant), so a
    /// waiter must look its own variant up again. `failure`: it reports a
    /// failure of the backend (a waiter with a stale entry serves that).
    Value {
        entry: Arc<Entry<V>>,
        exact: bool,
        failure: bool,
    },
    /// The call failed.
    Failed(Arc<BoxError>),
    /// The leader could not share its response (too large to buffer):
    /// each waiter calls the backend on its own.
    Passed { failure: bool },
}

impl<V> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Self::Value {
                entry,
                exact,
                failure,
            } => Self::Value {
                entry: Arc::clone(entry),
                exact: *exact,
                failure: *failure,
            },
            Self::Failed(e) => Self::Failed(Arc::clone(e)),
            Self::Passed { failure } => Self::Passed { failure: *failure },
        }
    }
}

#[derive(Debug)]
enum State<V> {
    /// A leader is making the call.
    Leading,
    /// The leader went away without an outcome.
    Orphaned,
    /// The call is over.
    Done(Outcome<V>),
}

/// One key's backend call in progress.
#[derive(Debug)]
pub(crate) struct Flight<K, V> {
    key: K,
    state: Mutex<State<V>>,
    notify: Arc<Notify>,
}

type Shard<K, V> = Mutex<HashMap<K, Arc<Flight<K, V>>>>;

/// The flights of one cache.
pub(crate) struct Flights<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: RandomState,
}

/// What joining a key's flight made of the request.
pub(crate) enum Joined<K: Hash + Eq + Clone, V> {
    Leader(Leader<K, V>),
    Waiter(Waiter<K, V>),
}

impl<K: Hash + Eq + Clone, V> Flights<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, V> {
        #[allow(clippy::cast_possible_truncation, reason = "a shard index")]
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[i]
    }

    /// Leads the key's flight, or waits on the one in progress.
    pub(crate) fn join(self: &Arc<Self>, key: &K) -> Joined<K, V> {
        let mut map = self.shard(key).lock();
        if let Some(flight) = map.get(key) {
            let mut state = flight.state.lock();
            match &*state {
                State::Leading => {
                    drop(state);
                    return Joined::Waiter(Waiter {
                        flights: Arc::clone(self),
                        flight: Arc::clone(flight),
                    });
                }
                State::Orphaned => {
                    *state = State::Leading;
                    drop(state);
                    return Joined::Leader(Leader {
                        flights: Arc::clone(self),
                        flight: Some(Arc::clone(flight)),
                    });
                }
                // A completed flight leaves the map before it is marked
                // done; should one be found, a new flight replaces it.
                State::Done(_) => {}
            }
        }
        let flight = Arc::new(Flight {
            key: key.clone(),
            state: Mutex::new(State::Leading),
            notify: Arc::new(Notify::new()),
        });
        map.insert(key.clone(), Arc::clone(&flight));
        Joined::Leader(Leader {
            flights: Arc::clone(self),
            flight: Some(flight),
        })
    }

    /// Leads the key's flight if there is none in progress (a background
    /// refresh: whoever finds one running does not wait for it).
    pub(crate) fn try_lead(self: &Arc<Self>, key: &K) -> Option<Leader<K, V>> {
        let map = self.shard(key).lock();
        if let Some(flight) = map.get(key) {
            let mut state = flight.state.lock();
            return match &*state {
                State::Orphaned => {
                    *state = State::Leading;
                    drop(state);
                    Some(Leader {
                        flights: Arc::clone(self),
                        flight: Some(Arc::clone(flight)),
                    })
                }
                State::Leading | State::Done(_) => None,
            };
        }
        drop(map);
        match self.join(key) {
            Joined::Leader(leader) => Some(leader),
            Joined::Waiter(_) => None,
        }
    }

    /// Flights in progress (or orphaned), over every shard.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Removes `flight` from its shard if it is still there; with
    /// `only_if_orphaned_and_alone`, only when nobody else holds it and
    /// nobody leads it.
    fn remove(&self, flight: &Arc<Flight<K, V>>, only_if_orphaned_and_alone: bool) {
        let mut map = self.shard(&flight.key).lock();
        let Some(current) = map.get(&flight.key) else {
            return;
        };
        if !Arc::ptr_eq(current, flight) {
            return;
        }
        if only_if_orphaned_and_alone {
            // The map and the caller hold it; clones are only taken under
            // this shard's lock, so the count cannot grow meanwhile.
            let alone = Arc::strong_count(flight) == 2;
            let orphaned = matches!(*flight.state.lock(), State::Orphaned);
            if !(alone && orphaned) {
                return;
            }
        }
        map.remove(&flight.key);
    }
}

/// The request making a flight's backend call. Dropping it before
/// [`complete`](Self::complete) orphans the flight, and a waiter takes
/// over.
pub(crate) struct Leader<K: Hash + Eq + Clone, V> {
    flights: Arc<Flights<K, V>>,
    flight: Option<Arc<Flight<K, V>>>,
}

impl<K: Hash + Eq + Clone, V> Leader<K, V> {
    /// Ends the flight with a failure; returns the error this request
    /// reports: its own when nobody waited, else the shared one
    /// ([`Coalesced`](crate::error::Coalesced)), which every waiter gets too.
    pub(crate) fn fail(mut self, error: BoxError) -> BoxError {
        let flight = self.flight.take().expect("a live leader");
        self.flights.remove(&flight, false);
        // Out of the map: nobody can join any more, and every waiter holds
        // a reference.
        let (outcome, error) = if Arc::strong_count(&flight) == 1 {
            (Outcome::Passed { failure: true }, error)
        } else {
            let shared = Arc::new(error);
            let error: BoxError = crate::error::Coalesced::new(Arc::clone(&shared)).into();
            (Outcome::Failed(shared), error)
        };
        *flight.state.lock() = State::Done(outcome);
        flight.notify.notify_waiters();
        error
    }

    /// Ends the flight with `outcome`: it leaves the map and every waiter
    /// gets the outcome.
    pub(crate) fn complete(mut self, outcome: Outcome<V>) {
        let flight = self.flight.take().expect("a live leader");
        self.flights.remove(&flight, false);
        *flight.state.lock() = State::Done(outcome);
        flight.notify.notify_waiters();
    }
}

impl<K: Hash + Eq + Clone, V> Drop for Leader<K, V> {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            {
                // Shard lock first, then the state: the order `join` takes.
                let map = self.flights.shard(&flight.key).lock();
                *flight.state.lock() = State::Orphaned;
                drop(map);
            }
            self.flights.remove(&flight, true);
            flight.notify.notify_waiters();
        }
    }
}

/// What a waiter found when it looked at its flight.
pub(crate) enum Look<K: Hash + Eq + Clone, V> {
    /// The call is over.
    Done(Outcome<V>),
    /// The leader went away; this request now leads.
    Lead(Leader<K, V>),
    /// Still running: wait for the notification.
    Wait,
}

/// A request waiting for another request's backend call.
pub(crate) struct Waiter<K: Hash + Eq + Clone, V> {
    flights: Arc<Flights<K, V>>,
    flight: Arc<Flight<K, V>>,
}

impl<K: Hash + Eq + Clone, V> Waiter<K, V> {
    /// A notification of the flight's next change. Create it *before*
    /// [`look`](Self::look): it then cannot miss a change that happens
    /// between the two.
    pub(crate) fn notified(&self) -> OwnedNotified {
        Arc::clone(&self.flight.notify).notified_owned()
    }

    /// The flight's state, claiming it if it is orphaned.
    pub(crate) fn look(&self) -> Look<K, V> {
        // The shard lock too: a claim must not race a new arrival's claim.
        let map = self.flights.shard(&self.flight.key).lock();
        let mut state = self.flight.state.lock();
        match &*state {
            State::Done(outcome) => Look::Done(outcome.clone()),
            State::Leading => Look::Wait,
            State::Orphaned => {
                *state = State::Leading;
                drop(state);
                drop(map);
                Look::Lead(Leader {
                    flights: Arc::clone(&self.flights),
                    flight: Some(Arc::clone(&self.flight)),
                })
            }
        }
    }
}

impl<K: Hash + Eq + Clone, V> Drop for Waiter<K, V> {
    fn drop(&mut self) {
        self.flights.remove(&self.flight, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Lifetime, Times};
    use std::time::Duration;

    fn entry(v: u32) -> Arc<Entry<u32>> {
        let now = tokio::time::Instant::now();
        let lifetime = Lifetime::new(Duration::from_secs(1), Duration::ZERO, Duration::ZERO);
        Arc::new(Entry::new(v, Times::new(now, Duration::ZERO, &lifetime), 1))
    }

    fn value(outcome: &Outcome<u32>) -> u32 {
        match outcome {
            Outcome::Value { entry, .. } => entry.value,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn one_leader_then_waiters_then_done() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let Joined::Leader(leader) = flights.join(&1) else {
            panic!("the first is the leader")
        };
        let Joined::Waiter(waiter) = flights.join(&1) else {
            panic!("the second waits")
        };
        assert!(matches!(waiter.look(), Look::Wait));
        assert!(flights.try_lead(&1).is_none(), "a flight is running");
        assert!(flights.try_lead(&2).is_some(), "another key is free");
        assert_eq!(
            flights.len(),
            1,
            "the try_lead flight of key 2 was dropped and removed"
        );
        leader.complete(Outcome::Value {
            entry: entry(7),
            exact: true,
            failure: false,
        });
        assert_eq!(flights.len(), 0);
        let Look::Done(outcome) = waiter.look() else {
            panic!("done")
        };
        assert_eq!(value(&outcome), 7);
        // A new miss after completion leads a new flight.
        assert!(matches!(flights.join(&1), Joined::Leader(_)));
    }

    #[test]
    fn a_dropped_leader_hands_over_to_one_waiter() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let Joined::Leader(leader) = flights.join(&1) else {
            panic!()
        };
        let Joined::Waiter(a) = flights.join(&1) else {
            panic!()
        };
        let Joined::Waiter(b) = flights.join(&1) else {
            panic!()
        };
        drop(leader);
        let Look::Lead(new_leader) = a.look() else {
            panic!("the first to look takes over")
        };
        assert!(matches!(b.look(), Look::Wait), "only one takes over");
        drop(a);
        assert_eq!(flights.len(), 1, "the flight stays while b waits");
        new_leader.complete(Outcome::Failed(Arc::new("boom".into())));
        assert!(matches!(b.look(), Look::Done(Outcome::Failed(_))));
    }

    #[test]
    fn an_orphaned_flight_with_nobody_left_leaves_the_map() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let Joined::Leader(leader) = flights.join(&1) else {
            panic!()
        };
        let Joined::Waiter(waiter) = flights.join(&1) else {
            panic!()
        };
        drop(leader);
        assert_eq!(flights.len(), 1);
        drop(waiter);
        assert_eq!(flights.len(), 0);
        // A leader dropped alone leaves nothing either.
        let joined = flights.join(&2);
        drop(joined);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_new_arrival_claims_an_orphaned_flight() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let Joined::Leader(leader) = flights.join(&1) else {
            panic!()
        };
        let Joined::Waiter(waiter) = flights.join(&1) else {
            panic!()
        };
        drop(leader);
        let Joined::Leader(newcomer) = flights.join(&1) else {
            panic!("an orphaned flight is led by whoever comes")
        };
        assert!(matches!(waiter.look(), Look::Wait));
        newcomer.complete(Outcome::Passed { failure: false });
        assert!(matches!(waiter.look(), Look::Done(Outcome::Passed { .. })));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_notification_made_before_looking_sees_the_completion() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let Joined::Leader(leader) = flights.join(&1) else {
            panic!()
        };
        let Joined::Waiter(waiter) = flights.join(&1) else {
            panic!()
        };
        let notified = waiter.notified();
        assert!(matches!(waiter.look(), Look::Wait));
        leader.complete(Outcome::Value {
            entry: entry(3),
            exact: true,
            failure: false,
        });
        notified.await;
        let Look::Done(outcome) = waiter.look() else {
            panic!()
        };
        assert_eq!(value(&outcome), 3);
    }
}
