//! The runtime handle: read a limiter's figures, change its limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, Registry};

use crate::backend::Backend;
use crate::settings::{FailureMode, Limit};
use crate::shared::Shared;

/// Named limiters, for an admin API and a dashboard: building a limiter with
/// [`registry(&r)`](crate::RateLimitBuilder::registry) under a name the
/// registry holds shares that limiter's state.
pub type RateLimitRegistry = Registry<RateLimitHandle>;

/// Reads and changes one limiter at runtime. Cheap to clone; every clone
/// (and every layer and service of the limiter) sees the same limiter.
///
/// ```
/// use palisade_rate_limit::{Limit, Rate, RateLimitLayer};
///
/// let layer = RateLimitLayer::builder("api")
///     .rate(Rate::per_second(10))
///     .tier("paid", Limit::new(Rate::per_second(100), 200))
///     .build()?;
/// let handle = layer.handle();
/// handle.set_limit("paid", Limit::new(Rate::per_second(500), 500))?;
/// handle.set_key_tier("key-7f3a", Some("paid"))?;
/// let snapshot = handle.snapshot();
/// assert_eq!(snapshot.tiers[1].name, "paid");
/// assert_eq!(snapshot.tiers[1].limit.rate, Rate::per_second(500));
/// assert_eq!(handle.key_tier("key-7f3a").as_deref(), Some("paid"));
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RateLimitHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for RateLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// One tier's limit and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TierSnapshot {
    /// The tier's name (`default` for the top-level limit).
    pub name: String,
    /// Its limit.
    pub limit: Limit,
    /// Calls admitted at once since the limiter was built.
    pub admitted: u64,
    /// Calls admitted after waiting for their slot.
    pub delayed: u64,
    /// Calls refused for being over the limit.
    pub limited: u64,
}

/// The remote backend's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RemoteSnapshot {
    /// What applies when the backend fails.
    pub failure_mode: FailureMode,
    /// The state of the breaker in front of it (`closed`, `open`, ...).
    pub breaker: String,
    /// Decisions the backend made.
    pub decided: u64,
    /// Calls to it that failed or timed out.
    pub errors: u64,
    /// Calls not sent because its breaker was open.
    pub not_permitted: u64,
    /// Calls decided by the failure mode instead.
    pub fallbacks: u64,
    /// Calls refused from the local over-the-limit cache, with no round trip.
    pub cache_hits: u64,
    /// Keys in that cache.
    pub cached_keys: usize,
}

/// A limiter's state at one instant, for admin APIs and dashboards (the
/// counts are cumulative: a dashboard's rates are their differences).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// The limiter's name.
    pub name: String,
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// How long a call may wait for its slot (zero: refused at once).
    #[cfg_attr(feature = "serde", serde(with = "crate::settings::serde_duration"))]
    pub max_delay: Duration,
    /// Keys held in process (for Redis: in the fallback limiter).
    pub keys: usize,
    /// The most keys held at once.
    pub max_keys: usize,
    /// Calls of new keys decided on the shared overflow key.
    pub overflowed: u64,
    /// Requests refused because their key could not be used.
    pub invalid_keys: u64,
    /// Every tier, the default first.
    pub tiers: Vec<TierSnapshot>,
    /// The remote backend's figures, if there is one.
    pub remote: Option<RemoteSnapshot>,
}

/// What a key has left, from [`RateLimitHandle::remaining`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyQuota {
    /// The key's tier.
    pub tier: String,
    /// Calls it could make at once.
    pub remaining: u32,
    /// Time until it may make one more (zero when its allowance is whole).
    pub reset: Duration,
}

impl RateLimitHandle {
    pub(crate) const fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The limiter's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// `true` if both handles are of the same limiter.
    #[must_use]
    pub fn same_limiter(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Every tier and its limit, the default tier first.
    #[must_use]
    pub fn limits(&self) -> Vec<(String, Limit)> {
        self.shared
            .limits()
            .tiers
            .iter()
            .map(|t| (t.name.to_string(), t.limit))
            .collect()
    }

    /// The limit of `tier`.
    #[must_use]
    pub fn limit(&self, tier: &str) -> Option<Limit> {
        self.shared
            .limits()
            .tiers
            .iter()
            .find(|t| &*t.name == tier)
            .map(|t| t.limit)
    }

    /// Sets the limit of `tier` (`default` for the top-level limit), or adds
    /// a tier of that name. Takes effect on the next call: keys keep what
    /// they have spent (their TAT), measured against the new limit. A Redis
    /// backend's cache of refused keys is cleared.
    ///
    /// # Errors
    ///
    /// An invalid name or limit, or more than 64 tiers.
    pub fn set_limit(&self, tier: &str, limit: Limit) -> Result<(), ConfigError> {
        self.shared.set_limit(tier, limit)
    }

    /// Assigns `key` (its text; an IP address in its usual form for
    /// client-IP keys) to `tier`, or removes its assignment (`None`).
    /// Returns whether anything changed.
    ///
    /// # Errors
    ///
    /// An empty or over-long key, or a tier that does not exist.
    pub fn set_key_tier(&self, key: &str, tier: Option<&str>) -> Result<bool, ConfigError> {
        self.shared.set_key_tier(key, tier)
    }

    /// The tier `key` is assigned to, if any.
    #[must_use]
    pub fn key_tier(&self, key: &str) -> Option<String> {
        self.shared.key_tier(key).map(|t| t.to_string())
    }

    /// How long a call may wait for its slot.
    #[must_use]
    pub fn max_delay(&self) -> Duration {
        self.shared.max_delay()
    }

    /// Sets how long a call may wait for its slot (zero: refuse at once).
    ///
    /// # Errors
    ///
    /// More than an hour.
    pub fn set_max_delay(&self, max_delay: Duration) -> Result<(), ConfigError> {
        self.shared.set_max_delay(max_delay)
    }

    /// What `key` (its text; an IP address for client-IP keys) has left,
    /// under its assigned tier, else the tier `class` names, else the
    /// default; `None` if the limiter holds nothing for it (its allowance is
    /// whole). In-process state only: for a Redis backend, the fallback
    /// limiter's.
    #[must_use]
    pub fn remaining(&self, key: &str, class: Option<&str>) -> Option<KeyQuota> {
        let (tier, quota) = self.shared.remaining(key, class)?;
        Some(KeyQuota {
            tier: tier.to_string(),
            remaining: quota.remaining,
            reset: Duration::from_nanos(quota.reset),
        })
    }

    /// The number of keys held in process.
    #[must_use]
    pub fn keys(&self) -> usize {
        self.shared.backend.local().table().len()
    }

    /// Evicts every idle key now (they are evicted anyway as new keys come).
    /// Returns how many.
    pub fn evict_idle(&self) -> usize {
        self.shared.evict_idle()
    }

    /// Forgets every key: all allowances are whole again.
    pub fn reset_keys(&self) {
        self.shared.backend.local().clear();
        #[cfg(feature = "redis")]
        if let Backend::Redis(store) = &self.shared.backend {
            store.clear_cache();
        }
        self.shared.metrics.keys(0);
        tracing::info!(name = %self.shared.name, "rate limit keys reset");
    }

    /// The breaker in front of the Redis backend, if there is one.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[must_use]
    pub fn backend_breaker(&self) -> Option<palisade_circuit_breaker::CircuitBreakerHandle> {
        match &self.shared.backend {
            Backend::Redis(store) => Some(store.breaker().clone()),
            Backend::Memory(_) => None,
        }
    }

    /// The limiter's figures now.
    #[must_use]
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let shared = &self.shared;
        let tiers = shared
            .limits()
            .tiers
            .iter()
            .map(|t| TierSnapshot {
                name: t.name.to_string(),
                limit: t.limit,
                admitted: t.stats.admitted.get(),
                delayed: t.stats.delayed.get(),
                limited: t.stats.limited.get(),
            })
            .collect();
        let keys = shared.backend.local().table().len();
        shared.metrics.keys(keys);
        RateLimitSnapshot {
            name: shared.name.to_string(),
            backend: shared.backend.kind(),
            max_delay: shared.max_delay(),
            keys,
            max_keys: shared.fixed.max_keys,
            overflowed: shared.metrics.overflowed.get(),
            invalid_keys: shared.metrics.invalid_keys.get(),
            tiers,
            remote: remote_snapshot(&shared.backend),
        }
    }
}

/// What a [`Registry<RateLimitHandle>`](RateLimitRegistry) needs:
/// `registry.snapshots()` lists every limiter's [`RateLimitSnapshot`].
impl palisade_core::Handle for RateLimitHandle {
    type Snapshot = RateLimitSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> RateLimitSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        self.same_limiter(other)
    }
}

#[cfg(feature = "redis")]
fn remote_snapshot(backend: &Backend) -> Option<RemoteSnapshot> {
    let Backend::Redis(store) = backend else {
        return None;
    };
    let m = &store.metrics;
    Some(RemoteSnapshot {
        failure_mode: store.failure_mode(),
        breaker: store.breaker().state().as_str().to_owned(),
        decided: m.remote_ok.get(),
        errors: m.remote_errors.get(),
        not_permitted: m.skipped.get(),
        fallbacks: m.fallbacks.get(),
        cache_hits: m.cache_hit.get(),
        cached_keys: store.cache().len(),
    })
}

#[cfg(not(feature = "redis"))]
const fn remote_snapshot(_: &Backend) -> Option<RemoteSnapshot> {
    None
}
