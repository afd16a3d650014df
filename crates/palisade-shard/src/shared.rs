//! What a router owns in one `Arc`: the versioned map with its shards'
//! services, the settings, the metrics and the listeners; and the shard and
//! replica descriptions users hand in.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use palisade_circuit_breaker::{CircuitBreakerHandle, State};
use palisade_core::Listeners;
use tokio::time::Instant;

use crate::error::{MapError, MapErrorKind};
use crate::event::{ChangeKind, MapChange, ShardEvent};
use crate::metrics::{RouterMetrics, ShardMetrics};
use crate::settings::{MovePolicy, ShardSettings};
use crate::state::ShardMap;
use crate::state::load::PeakEwma;

// ===== Shard, Replica =====

/// One copy of a shard's service: a name (for metrics and snapshots), the
/// service, and optionally the handle of the circuit breaker in its stack,
/// so the router skips it while the breaker is open.
pub struct Replica<S> {
    name: Arc<str>,
    service: S,
    breaker: Option<CircuitBreakerHandle>,
}

impl<S> Replica<S> {
    /// A replica called `name` served by `service`.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Self {
            name: name.into(),
            service,
            breaker: None,
        }
    }

    /// The breaker guarding `service` (build it with
    /// `CircuitBreakerLayer::handle()`): while it is open (or forced open),
    /// the router sends this shard's calls to its other replicas; when every
    /// replica's breaker is open, the call goes to one of them and is refused
    /// by its breaker (`503` with `Retry-After` over HTTP).
    #[must_use]
    pub fn breaker(mut self, handle: CircuitBreakerHandle) -> Self {
        self.breaker = Some(handle);
        self
    }

    /// The replica's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<S> fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("name", &self.name)
            .field(
                "breaker",
                &self.breaker.as_ref().map(CircuitBreakerHandle::name),
            )
            .finish_non_exhaustive()
    }
}

/// A shard: a name (what the map hashes, so keep it stable), a weight, and
/// one or more replicas of its service.
///
/// ```
/// use palisade_shard::{Replica, Shard};
/// use tower::service_fn;
///
/// let svc = service_fn(|n: u64| async move { Ok::<_, std::convert::Infallible>(n) });
/// let single = Shard::new("users-0", svc);
/// let replicated = Shard::replicated("users-1", [
///     Replica::new("users-1a", svc),
///     Replica::new("users-1b", svc),
/// ])
/// .weight(2.0);
/// assert_eq!(replicated.name(), "users-1");
/// # let _ = single;
/// ```
pub struct Shard<S> {
    name: Arc<str>,
    weight: f64,
    replicas: Vec<Replica<S>>,
}

impl<S> Shard<S> {
    /// A shard called `name` with one replica, `service` (its replica is
    /// named after the shard).
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        let name = name.into();
        Self {
            replicas: vec![Replica::new(Arc::clone(&name), service)],
            name,
            weight: 1.0,
        }
    }

    /// A shard called `name` served by `replicas` (at least one, distinct
    /// names): each call goes to one of them, chosen by power of two choices
    /// on peak-EWMA latency, skipping those whose breaker is open.
    pub fn replicated(
        name: impl Into<Arc<str>>,
        replicas: impl IntoIterator<Item = Replica<S>>,
    ) -> Self {
        Self {
            name: name.into(),
            weight: 1.0,
            replicas: replicas.into_iter().collect(),
        }
    }

    /// The shard's weight: its share of the keys is its weight over the sum
    /// of all weights. Default 1.0. Jump hash accepts only 1.0.
    #[must_use]
    pub const fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// The shard's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shard's weight.
    #[must_use]
    pub const fn get_weight(&self) -> f64 {
        self.weight
    }

    pub(crate) const fn name_arc(&self) -> &Arc<str> {
        &self.name
    }
}

impl<S> fmt::Debug for Shard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("replicas", &self.replicas)
            .finish()
    }
}

// ===== Slot =====

/// A replica as the router keeps it.
pub(crate) struct ReplicaSlot<S> {
    pub(crate) name: Arc<str>,
    pub(crate) service: S,
    pub(crate) breaker: Option<CircuitBreakerHandle>,
    pub(crate) load: Arc<PeakEwma>,
    pub(crate) requests: AtomicU64,
}

impl<S> ReplicaSlot<S> {
    /// `false` while its breaker refuses calls.
    pub(crate) fn available(&self) -> bool {
        !matches!(
            self.breaker.as_ref().map(CircuitBreakerHandle::state),
            Some(State::Open | State::ForcedOpen)
        )
    }
}

/// A shard as the router keeps it: shared by every version of the map it
/// belongs to, so its figures survive re-weighting and other shards' moves.
pub(crate) struct Slot<S> {
    pub(crate) name: Arc<str>,
    /// The router's name, for errors.
    pub(crate) router: Arc<str>,
    pub(crate) replicas: Box<[ReplicaSlot<S>]>,
    pub(crate) metrics: ShardMetrics,
    pub(crate) requests: AtomicU64,
    pub(crate) not_ready: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
    /// The router's origin of the replicas' EWMA timestamps (a copy of
    /// [`Shared::base`], so that a call's future needs only its slot).
    pub(crate) base: Instant,
    /// The router's [`ready_timeout`](ShardSettings::ready_timeout), for a
    /// call that waits for this shard.
    pub(crate) ready_timeout: Duration,
}

impl<S> Slot<S> {
    fn new(
        shard: Shard<S>,
        router: &Arc<str>,
        settings: &ShardSettings,
        base: Instant,
    ) -> Result<Self, MapError> {
        let decay_ns = nanos(settings.ewma_decay);
        if shard.replicas.is_empty() {
            return Err(MapError::new(
                MapErrorKind::InvalidReplicas,
                Some(&shard.name),
                "a shard needs at least one replica".to_owned(),
            ));
        }
        for (i, replica) in shard.replicas.iter().enumerate() {
            if replica.name.is_empty() || shard.replicas[..i].iter().any(|r| r.name == replica.name)
            {
                return Err(MapError::new(
                    MapErrorKind::InvalidReplicas,
                    Some(&shard.name),
                    format!("replica name `{}` is empty or used twice", replica.name),
                ));
            }
        }
        Ok(Self {
            metrics: ShardMetrics::new(router, &shard.name),
            router: Arc::clone(router),
            name: shard.name,
            replicas: shard
                .replicas
                .into_iter()
                .map(|r| ReplicaSlot {
                    name: r.name,
                    service: r.service,
                    breaker: r.breaker,
                    load: Arc::new(PeakEwma::new(decay_ns)),
                    requests: AtomicU64::new(0),
                })
                .collect(),
            requests: AtomicU64::new(0),
            not_ready: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            base,
            ready_timeout: settings.ready_timeout,
        })
    }

    /// Nanoseconds from the router's origin to `at`.
    #[inline]
    pub(crate) fn nanos_since_base(&self, at: Instant) -> u64 {
        nanos_between(self.base, at)
    }
}

// ===== Version =====

/// The map in force before the last change, with its shards, consulted
/// during a move.
pub(crate) struct Previous<S> {
    pub(crate) map: ShardMap,
    pub(crate) slots: Box<[Arc<Slot<S>>]>,
}

/// One version of the map: immutable, swapped whole.
pub(crate) struct Version<S> {
    pub(crate) epoch: u64,
    pub(crate) map: ShardMap,
    /// In the map's shard order.
    pub(crate) slots: Box<[Arc<Slot<S>>]>,
    /// The index of the default shard, if one is set and in the map.
    pub(crate) default_index: Option<usize>,
    pub(crate) previous: Option<Previous<S>>,
    pub(crate) last_change: Option<MapChange>,
}

impl<S> Version<S> {
    fn default_index(map: &ShardMap, default: Option<&str>) -> Option<usize> {
        default.and_then(|name| map.index_of(name))
    }
}

// ===== Shared =====

/// Everything a router, its clones, its handles and its scatter-gathers
/// share.
pub(crate) struct Shared<S> {
    pub(crate) name: Arc<str>,
    pub(crate) settings: ShardSettings,
    pub(crate) current: ArcSwap<Version<S>>,
    /// Incremented after every store to `current`: a router compares it
    /// with the version it cached (one plain load per call).
    pub(crate) generation: AtomicU64,
    /// Serializes changes (never taken by a call).
    writer: Mutex<()>,
    /// The origin of the replicas' EWMA timestamps.
    pub(crate) base: Instant,
    pub(crate) listeners: Listeners<ShardEvent>,
    pub(crate) metrics: RouterMetrics,
    pub(crate) key_missing: AtomicU64,
    pub(crate) key_malformed: AtomicU64,
    pub(crate) defaulted: AtomicU64,
}

/// Nanoseconds from `base` to `at` (0 if `at` is earlier).
#[inline]
fn nanos_between(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

#[allow(clippy::cast_precision_loss)]
fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}

impl<S> Shared<S> {
    pub(crate) fn new(
        name: Arc<str>,
        settings: ShardSettings,
        shards: Vec<Shard<S>>,
        listeners: Listeners<ShardEvent>,
    ) -> Result<Self, MapError> {
        let map = ShardMap::new(
            settings.scheme,
            settings.virtual_nodes,
            shards.iter().map(|s| (Arc::clone(&s.name), s.weight)),
        )?;
        let base = Instant::now();
        let slots: Vec<Arc<Slot<S>>> = shards
            .into_iter()
            .map(|s| Slot::new(s, &name, &settings, base).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let metrics = RouterMetrics::new(&name);
        publish_shares(&map, &slots);
        metrics.published(1, map.len(), None);
        let version = Version {
            epoch: 1,
            default_index: Version::<S>::default_index(&map, settings.default_shard.as_deref()),
            map,
            slots: slots.into(),
            previous: None,
            last_change: None,
        };
        Ok(Self {
            name,
            settings,
            current: ArcSwap::from_pointee(version),
            generation: AtomicU64::new(0),
            writer: Mutex::new(()),
            base,
            listeners,
            metrics,
            key_missing: AtomicU64::new(0),
            key_malformed: AtomicU64::new(0),
            defaulted: AtomicU64::new(0),
        })
    }

    fn store(&self, version: Version<S>) {
        self.current.store(Arc::new(version));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The version in force, from `cached` when it is still current.
    #[inline]
    pub(crate) fn refresh(&self, cached: &mut (u64, Arc<Version<S>>)) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != cached.0 {
            *cached = (generation, self.current.load_full());
        }
    }

    /// Nanoseconds since the router was built.
    #[inline]
    pub(crate) fn nanos_since_base(&self, at: Instant) -> u64 {
        nanos_between(self.base, at)
    }

    /// Applies a change: builds the next version from the one in force and
    /// swaps it in. Calls in flight keep the version they started with.
    pub(crate) fn change(
        &self,
        kind: ChangeKind,
        shard: &str,
        next_map: impl FnOnce(&ShardMap) -> Result<ShardMap, MapError>,
        added: Option<Shard<S>>,
    ) -> Result<MapChange, MapError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.current.load_full();
        let map = next_map(&old.map)?;
        let mut added = match added {
            Some(shard) => Some(Arc::new(Slot::new(
                shard,
                &self.name,
                &self.settings,
                self.base,
            )?)),
            None => None,
        };
        let slots: Box<[Arc<Slot<S>>]> = map
            .shards()
            .iter()
            .map(|spec| {
                old.slots
                    .iter()
                    .find(|slot| slot.name == *spec.name_arc())
                    .cloned()
                    .or_else(|| added.take())
                    .expect("every shard of the next map is an old one or the added one")
            })
            .collect();
        if kind == ChangeKind::Removed
            && let Some(gone) = old.slots.iter().find(|s| &*s.name == shard)
        {
            gone.metrics.share.set(0.0);
        }
        let change = MapChange {
            epoch: old.epoch + 1,
            kind,
            shard: Arc::from(shard),
            moved_share: old.map.moved_share(&map),
        };
        publish_shares(&map, &slots);
        let version = Version {
            epoch: change.epoch,
            default_index: Version::<S>::default_index(
                &map,
                self.settings.default_shard.as_deref(),
            ),
            map,
            slots,
            // Only a policy that reads from the previous owners keeps them.
            previous: (self.settings.during_move == MovePolicy::FallBackToPrevious).then(|| {
                Previous {
                    map: old.map.clone(),
                    slots: old.slots.clone(),
                }
            }),
            last_change: Some(change.clone()),
        };
        let shards = version.map.len();
        self.store(version);
        self.metrics.published(change.epoch, shards, Some(&change));
        self.listeners.emit_with(|| ShardEvent::MapChanged {
            router: Arc::clone(&self.name),
            change: change.clone(),
        });
        Ok(change)
    }

    /// Ends a move: the previous map is forgotten. `false` when no move was
    /// under way.
    pub(crate) fn complete_move(&self) -> bool {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.current.load_full();
        if old.previous.is_none() {
            return false;
        }
        let version = Version {
            epoch: old.epoch,
            map: old.map.clone(),
            slots: old.slots.clone(),
            default_index: old.default_index,
            previous: None,
            last_change: old.last_change.clone(),
        };
        self.store(version);
        tracing::info!(name = %self.name, epoch = old.epoch, "shard move completed");
        self.listeners.emit_with(|| ShardEvent::MoveCompleted {
            router: Arc::clone(&self.name),
            epoch: old.epoch,
        });
        true
    }

    pub(crate) fn count_key_error(&self, missing: bool) {
        if missing {
            self.key_missing.fetch_add(1, Ordering::Relaxed);
            self.metrics.key_missing.increment(1);
        } else {
            self.key_malformed.fetch_add(1, Ordering::Relaxed);
            self.metrics.key_malformed.increment(1);
        }
    }
}

fn publish_shares<S>(map: &ShardMap, slots: &[Arc<Slot<S>>]) {
    for (slot, share) in slots.iter().zip(map.shares()) {
        slot.metrics.share.set(share);
    }
}

impl<S> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.current.load();
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("epoch", &version.epoch)
            .field("map", &version.map)
            .finish_non_exhaustive()
    }
}
