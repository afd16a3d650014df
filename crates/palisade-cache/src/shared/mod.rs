//! [`Shared`]: what a cache layer owns in one `Arc`, shared by every service
//! it builds and every clone: the policy, the settings, the process tier
//! ([`store`]), the flights of coalesced misses ([`flight`]), the shared
//! tier and the telemetry.

pub(crate) mod clock;
pub(crate) mod flight;
pub(crate) mod store;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::BoxError;
use tokio::time::Instant;

use crate::event::CacheEvent;
use crate::metrics::{Telemetry, TierResult};
use crate::policy::{AdmitContext, CacheKey, ENTRY_OVERHEAD, Storage};
use crate::settings::CacheSettings;
use crate::state::{Lifetime, Times};

use self::clock::Clock;
use self::flight::Flights;
use self::store::{Entry, Store};

/// A boxed future of the shared tier: network I/O, off the hit path.
pub(crate) type TierFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A value as the shared tier holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TierEntry {
    /// The value, encoded by the policy.
    pub(crate) value: Vec<u8>,
    /// Its lifetime, measured from its birth.
    pub(crate) lifetime: Lifetime,
    /// How old it is.
    pub(crate) age: Duration,
}

/// Why a shared-tier operation did not happen.
#[derive(Debug)]
#[cfg_attr(
    not(feature = "redis"),
    allow(dead_code, reason = "built by the Redis tier")
)]
pub(crate) enum TierError {
    /// Refused by the breaker in front of the tier: not tried.
    Skipped(BoxError),
    /// Tried, and failed (or timed out).
    Failed(BoxError),
}

impl fmt::Display for TierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skipped(e) | Self::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// The state of the shared tier at one moment, for the handle's snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SharedTierSnapshot {
    /// What the tier is (`redis`).
    pub kind: &'static str,
    /// The prefix of its keys.
    pub key_prefix: String,
    /// The state of the breaker in front of it (`closed`, `open`, ...).
    pub breaker_state: &'static str,
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Operations that failed (or timed out).
    pub errors: u64,
    /// Operations not tried because the breaker was open.
    pub skipped: u64,
    /// Entries written.
    pub writes: u64,
}

/// A second tier shared by a fleet (Redis); implemented in `backend`.
pub(crate) trait SharedTier: Send + Sync + 'static {
    /// The entry stored under `key`, if any.
    fn get(&self, key: String) -> TierFuture<Result<Option<TierEntry>, TierError>>;
    /// Stores `entry` under `key` for the rest of its life.
    fn put(&self, key: String, entry: TierEntry) -> TierFuture<Result<(), TierError>>;
    /// Removes the entries named `pattern` (with their variants), or whose
    /// names start with it; returns how many.
    fn delete(&self, pattern: String, prefix: bool) -> TierFuture<Result<u64, TierError>>;
    /// A cap on the freshness of entries read from the tier.
    fn max_local_ttl(&self) -> Option<Duration>;
    /// Its description, without the counts (the cache keeps those).
    fn describe(&self) -> (String, &'static str);
}

/// Everything one cache shares.
pub(crate) struct Shared<P: Storage> {
    pub(crate) policy: P,
    pub(crate) settings: CacheSettings,
    pub(crate) admit: AdmitContext,
    pub(crate) store: Store<P::Key, P::Value>,
    /// What judges freshness: read once per request.
    pub(crate) clock: Clock,
    pub(crate) flights: Arc<Flights<P::Key, P::Value>>,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) tier: Option<Arc<dyn SharedTier>>,
    /// Bumped by every invalidation: a backend call that started before
    /// one does not store its response.
    generation: AtomicU64,
    /// Background refreshes running.
    pub(crate) refreshing: AtomicUsize,
}

impl<P: Storage> fmt::Debug for Shared<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.telemetry.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<P: Storage> Shared<P> {
    pub(crate) fn new(
        policy: P,
        settings: CacheSettings,
        telemetry: Telemetry,
        tier: Option<Arc<dyn SharedTier>>,
    ) -> Self {
        let admit = AdmitContext {
            base: Lifetime::new(
                settings.ttl,
                settings.stale_while_revalidate,
                settings.stale_if_error,
            ),
            negative_ttl: settings.negative_ttl,
            max_entry_bytes: settings.max_entry_bytes,
        };
        telemetry.size(0, 0);
        Self {
            store: Store::new(settings.max_bytes, settings.max_entry_bytes),
            clock: Clock::new(settings.clock),
            flights: Arc::new(Flights::new()),
            policy,
            settings,
            admit,
            telemetry: Arc::new(telemetry),
            tier,
            generation: AtomicU64::new(0),
            refreshing: AtomicUsize::new(0),
        }
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.telemetry.name
    }

    /// The invalidation generation now.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// An entry for `value`, `age` old, living `lifetime`, not stored.
    pub(crate) fn entry(
        &self,
        key: &P::Key,
        value: P::Value,
        lifetime: &Lifetime,
        age: Duration,
        now: Instant,
    ) -> Arc<Entry<P::Value>> {
        let weight = (self.policy.weigh(key, &value) + ENTRY_OVERHEAD) as u64;
        let times = Times::new(now, age, lifetime);
        Arc::new(Entry::new(value, times, weight))
    }

    /// Stores `entry` under `key` unless the cache was invalidated since
    /// `generation`; returns whether it was stored. A stored entry is also
    /// written to the shared tier (in the background) when `share`.
    pub(crate) fn insert(
        self: &Arc<Self>,
        key: P::Key,
        entry: &Arc<Entry<P::Value>>,
        generation: u64,
        share: bool,
    ) -> bool {
        if self.generation() != generation {
            self.telemetry
                .not_stored(crate::state::NotStored::Invalidated, || {
                    key.text().into_owned()
                });
            return false;
        }
        if share {
            self.write_tier(&key, entry);
        }
        self.telemetry.stored.add(1);
        self.telemetry.listeners.emit_with(|| CacheEvent::Stored {
            name: Arc::clone(self.name()),
            key: key.text().into_owned(),
            bytes: u64::from(entry.weight),
            fresh_for: entry.times.lifetime().fresh,
        });
        // The store evicts within the insert what the bound needs.
        self.store.insert(key, Arc::clone(entry));
        self.publish_size();
        true
    }

    /// Publishes the process tier's size to the gauges.
    pub(crate) fn publish_size(&self) {
        self.telemetry
            .size(self.store.bytes(), self.store.entries());
    }

    /// Writes `entry` to the shared tier, in a background task.
    fn write_tier(&self, key: &P::Key, entry: &Entry<P::Value>) {
        let Some(tier) = &self.tier else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(value) = self.policy.encode(&entry.value) else {
            return;
        };
        let now = self.clock.now();
        let tier_entry = TierEntry {
            value,
            lifetime: entry.times.lifetime(),
            age: entry.times.age(now),
        };
        let put = tier.put(key.text().into_owned(), tier_entry);
        let telemetry = Arc::clone(&self.telemetry);
        runtime.spawn(async move {
            match put.await {
                Ok(()) => telemetry.tier(TierResult::Write),
                Err(TierError::Skipped(e)) => telemetry.tier_unavailable(true, &e),
                Err(TierError::Failed(e)) => telemetry.tier_unavailable(false, &e),
            }
        });
    }

    /// Removes from the process tier the entries named `pattern` (every
    /// method and variant of an HTTP URI), or whose names start with it;
    /// returns how many. Backend calls in flight will not store their
    /// responses.
    pub(crate) fn invalidate_local(&self, pattern: &str, prefix: bool) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let removed = self.store.remove_matching(|key, _| {
            let base = key.base();
            if prefix {
                base.starts_with(pattern)
            } else {
                base == pattern
            }
        });
        self.telemetry.invalidated.add(removed);
        tracing::info!(name = %self.name(), pattern, prefix, removed, "cache invalidated entries");
        self.telemetry
            .listeners
            .emit_with(|| CacheEvent::Invalidated {
                name: Arc::clone(self.name()),
                pattern: pattern.to_owned(),
                prefix,
                removed,
            });
        self.publish_size();
        removed
    }

    /// Removes every entry from the process tier; returns how many.
    pub(crate) fn clear_local(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let removed = self.store.clear();
        self.telemetry.invalidated.add(removed);
        self.publish_size();
        removed
    }

    /// Deletes from the shared tier, if there is one.
    pub(crate) fn invalidate_tier(
        &self,
        pattern: &str,
        prefix: bool,
    ) -> Option<TierFuture<Result<u64, TierError>>> {
        let tier = self.tier.as_ref()?;
        let delete = tier.delete(pattern.to_owned(), prefix);
        let telemetry = Arc::clone(&self.telemetry);
        Some(Box::pin(async move {
            let result = delete.await;
            match &result {
                Ok(_) => {}
                Err(TierError::Skipped(e)) => telemetry.tier_unavailable(true, e),
                Err(TierError::Failed(e)) => telemetry.tier_unavailable(false, e),
            }
            result
        }))
    }
}
