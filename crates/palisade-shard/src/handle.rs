//! [`ShardHandle`]: read and change a router's map at runtime, and take a
//! [`ShardSnapshot`] of its figures.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use palisade_circuit_breaker::CircuitBreakerHandle;
use tokio::time::Instant;

use crate::error::MapError;
use crate::event::{ChangeKind, MapChange};
use crate::settings::{Scheme, ShardSettings};
use crate::shared::{Shard, Shared};
use crate::state::{ShardKey, ShardMap};

/// Reads and changes one router's shard map at runtime. Cheap to clone;
/// every clone, the router and all its clones share one map.
///
/// A change (add, remove, re-weight) builds the next map beside the one in
/// force and swaps it in atomically: calls never wait for a change, calls in
/// flight finish on the version they started with, and the next call sees
/// the new map. Changes are serialized among themselves. Each change moves
/// only the keys it must (see `docs/patterns/sharding.md`) and reports the
/// share of the key space that moved.
///
/// ```
/// use palisade_shard::{ShardRouter, Shard, ShardKey};
/// use tower::service_fn;
///
/// let svc = service_fn(|n: u64| async move { Ok::<_, std::convert::Infallible>(n) });
/// let router = ShardRouter::builder("users")
///     .shard(Shard::new("users-0", svc))
///     .shard(Shard::new("users-1", svc))
///     .key_fn(|id: &u64| Some(*id))
///     .build()?;
/// let handle = router.handle();
/// let change = handle.add_shard(Shard::new("users-2", svc))?;
/// assert_eq!(change.epoch, 2);
/// assert!(change.moved_share > 0.25 && change.moved_share < 0.42); // about 1/3
/// assert_eq!(handle.snapshot().shards.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShardHandle<S> {
    shared: Arc<Shared<S>>,
}

impl<S> ShardHandle<S> {
    pub(crate) const fn new(shared: Arc<Shared<S>>) -> Self {
        Self { shared }
    }

    pub(crate) const fn shared(&self) -> &Arc<Shared<S>> {
        &self.shared
    }

    /// The router's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The settings the router was built with.
    #[must_use]
    pub fn settings(&self) -> &ShardSettings {
        &self.shared.settings
    }

    /// The version of the map in force (1 for the map it was built with,
    /// one more per change).
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.shared.current.load().epoch
    }

    /// The map in force (a copy: use it to compute owners offline, or to
    /// count how many of a known set of keys a change moved with
    /// [`ShardMap::moved_keys`]).
    #[must_use]
    pub fn map(&self) -> ShardMap {
        self.shared.current.load().map.clone()
    }

    /// The map before the last change, while a move is under way
    /// ([`MovePolicy::FallBackToPrevious`](crate::MovePolicy::FallBackToPrevious)
    /// only; `None` otherwise).
    #[must_use]
    pub fn previous_map(&self) -> Option<ShardMap> {
        self.shared
            .current
            .load()
            .previous
            .as_ref()
            .map(|p| p.map.clone())
    }

    /// The name of the shard that owns `key` now.
    pub fn owner(&self, key: impl Into<ShardKey>) -> Arc<str> {
        let version = self.shared.current.load();
        Arc::clone(&version.slots[version.map.owner(key.into())].name)
    }

    /// The last change, if the map changed since the router was built.
    #[must_use]
    pub fn last_change(&self) -> Option<MapChange> {
        self.shared.current.load().last_change.clone()
    }

    /// Adds `shard`. Only keys the new shard now owns move (about its share
    /// of the key space).
    ///
    /// # Errors
    ///
    /// A [`MapError`]: a name already in the map, a bad weight, no replica,
    /// too many shards; the map is unchanged.
    pub fn add_shard(&self, shard: Shard<S>) -> Result<MapChange, MapError> {
        let (name, weight) = (Arc::clone(shard.name_arc()), shard.get_weight());
        self.shared.change(
            ChangeKind::Added,
            &name,
            |map| map.with_shard(&name, weight),
            Some(shard),
        )
    }

    /// Removes the shard `name`. Only the keys it owned move, each to its
    /// next choice. Calls in flight to it finish. Its service is dropped once
    /// nothing refers to the map that held it: no call in flight on it, no
    /// router clone still caching that map (a clone refreshes on its next
    /// call), and with
    /// [`MovePolicy::FallBackToPrevious`](crate::MovePolicy::FallBackToPrevious)
    /// not before the move completes.
    ///
    /// # Errors
    ///
    /// A [`MapError`]: no such shard, the last shard, or under jump a shard
    /// other than the last one numbered; the map is unchanged.
    pub fn remove_shard(&self, name: &str) -> Result<MapChange, MapError> {
        self.shared.change(
            ChangeKind::Removed,
            name,
            |map| map.without_shard(name),
            None,
        )
    }

    /// Gives the shard `name` the weight `weight`. Only keys between it and
    /// the other shards move, in the direction of the change.
    ///
    /// # Errors
    ///
    /// A [`MapError`]: no such shard, a bad weight, or any weight under jump.
    pub fn set_weight(&self, name: &str, weight: f64) -> Result<MapChange, MapError> {
        self.shared.change(
            ChangeKind::Reweighted,
            name,
            |map| map.with_weight(name, weight),
            None,
        )
    }

    /// Ends the move started by the last change: requests for moved keys no
    /// longer fall back to their previous owner, and the previous map (and
    /// a removed shard's service) is released. `false` when no move was
    /// under way.
    pub fn complete_move(&self) -> bool {
        self.shared.complete_move()
    }

    /// The router's state and figures now, for admin APIs and dashboards.
    #[must_use]
    pub fn snapshot(&self) -> ShardSnapshot {
        let shared = &*self.shared;
        let version = shared.current.load();
        let now = shared.nanos_since_base(Instant::now());
        let shares = version.map.shares();
        let shards = version
            .slots
            .iter()
            .zip(version.map.shards())
            .zip(shares)
            .map(|((slot, spec), share)| ShardFigures {
                name: Arc::clone(&slot.name),
                weight: spec.weight(),
                share,
                requests: slot.requests.load(Ordering::Relaxed),
                not_ready: slot.not_ready.load(Ordering::Relaxed),
                fallbacks: slot.fallbacks.load(Ordering::Relaxed),
                replicas: slot
                    .replicas
                    .iter()
                    .map(|replica| ReplicaFigures {
                        name: Arc::clone(&replica.name),
                        requests: replica.requests.load(Ordering::Relaxed),
                        in_flight: replica.load.in_flight(),
                        latency_ms: (slot.replicas.len() > 1)
                            .then(|| replica.load.estimate(now) / 1e6),
                        breaker: replica
                            .breaker
                            .as_ref()
                            .map(|b: &CircuitBreakerHandle| b.state().as_str()),
                        available: replica.available(),
                    })
                    .collect(),
            })
            .collect();
        ShardSnapshot {
            name: Arc::clone(&shared.name),
            scheme: version.map.scheme(),
            epoch: version.epoch,
            moving: version.previous.is_some(),
            shards,
            last_change: version.last_change.clone(),
            key_missing: shared.key_missing.load(Ordering::Relaxed),
            key_malformed: shared.key_malformed.load(Ordering::Relaxed),
            defaulted: shared.defaulted.load(Ordering::Relaxed),
            settings: shared.settings.clone(),
        }
    }
}

impl<S> Clone for ShardHandle<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> fmt::Debug for ShardHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardHandle")
            .field("shared", &self.shared)
            .finish()
    }
}

/// A router's state and figures at one instant. Plain data
/// (`Serialize` with the `serde` feature).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ShardSnapshot {
    /// The router's name.
    pub name: Arc<str>,
    /// The scheme.
    pub scheme: Scheme,
    /// The version of the map in force.
    pub epoch: u64,
    /// A move is under way: requests for moved keys may fall back to their
    /// previous owner.
    pub moving: bool,
    /// Every shard, in the map's order.
    pub shards: Vec<ShardFigures>,
    /// The last change (with the share of keys it moved), if any.
    pub last_change: Option<MapChange>,
    /// Requests refused for want of a key.
    pub key_missing: u64,
    /// Requests refused for a malformed key.
    pub key_malformed: u64,
    /// Requests without a usable key served by the default shard.
    pub defaulted: u64,
    /// The settings.
    pub settings: ShardSettings,
}

/// One shard's figures, counted since it joined the map.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ShardFigures {
    /// The shard's name.
    pub name: Arc<str>,
    /// Its weight.
    pub weight: f64,
    /// The share of the key space it owns (0 to 1).
    pub share: f64,
    /// Requests routed to it (fallbacks included).
    pub requests: u64,
    /// Requests failed because it was not ready in time.
    pub not_ready: u64,
    /// Requests it failed during a move that were sent to the previous owner.
    pub fallbacks: u64,
    /// Its replicas.
    pub replicas: Vec<ReplicaFigures>,
}

/// One replica's figures.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ReplicaFigures {
    /// The replica's name.
    pub name: Arc<str>,
    /// Requests sent to it.
    pub requests: u64,
    /// Calls in flight (tracked when the shard has more than one replica;
    /// 0 otherwise).
    pub in_flight: u32,
    /// Its peak-EWMA latency in milliseconds (the default estimate, 30 ms,
    /// until it has answered), decayed to now. `None` for a shard with one
    /// replica, which has no choice to make and so no estimate (its latency
    /// is in the `palisade_shard_request_duration_seconds` histogram).
    pub latency_ms: Option<f64>,
    /// Its breaker's state (`closed`, `open`, ...), if it has one.
    pub breaker: Option<&'static str>,
    /// `false` while its breaker refuses calls.
    pub available: bool,
}
