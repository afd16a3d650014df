//! [`CacheHandle`]: invalidation and figures at runtime, and
//! [`CacheSnapshot`], what the admin API and the dashboard show.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use palisade_core::BoxError;

use crate::event::StaleReason;
use crate::metrics::TierResult;
use crate::policy::Storage;
use crate::settings::CacheSettings;
use crate::shared::{Shared, SharedTierSnapshot, TierError, TierFuture};
use crate::state::NotStored;

/// Stale entries served, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StaleServed {
    /// Within `stale_while_revalidate`, while a background refresh ran.
    pub revalidating: u64,
    /// The backend failed.
    pub error: u64,
    /// The backend timed out.
    pub timeout: u64,
    /// A layer below refused the call (open breaker, full bulkhead, rate
    /// limit).
    pub rejected: u64,
}

impl StaleServed {
    /// All of them.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.revalidating + self.error + self.timeout + self.rejected
    }
}

/// The figures and settings of one cache at one moment. Plain data,
/// `Serialize` with the `serde` feature.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CacheSnapshot {
    /// The cache's name.
    pub name: String,
    /// Its settings.
    pub settings: CacheSettings,
    /// Requests answered from a fresh entry.
    pub hits: u64,
    /// Requests that found no usable entry and went to the backend (or the
    /// shared tier), coalesced ones included.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 before any request.
    pub hit_ratio: f64,
    /// Stale entries served, by reason.
    pub stale_served: StaleServed,
    /// Requests that waited for another request's backend call.
    pub coalesced: u64,
    /// Requests the cache does not apply to.
    pub bypassed: u64,
    /// Entries stored.
    pub stored: u64,
    /// Responses not stored, by reason (`no_store`, `private`, `status`,
    /// ...), only the reasons seen.
    pub not_stored: Vec<(&'static str, u64)>,
    /// Background refreshes that stored a new entry.
    pub refreshes_succeeded: u64,
    /// Background refreshes that failed or timed out.
    pub refreshes_failed: u64,
    /// Background refreshes running now.
    pub refreshes_running: u64,
    /// Keys with a backend call in flight.
    pub in_flight: u64,
    /// Entries removed through the handle.
    pub invalidated: u64,
    /// Bytes held by the process tier.
    pub bytes: u64,
    /// Entries held by the process tier.
    pub entries: u64,
    /// The shared tier, if the cache has one.
    pub shared_tier: Option<SharedTierSnapshot>,
}

/// What an invalidation through [`CacheHandle::purge`] removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Purged {
    /// Entries removed from the process tier.
    pub local: u64,
    /// Keys removed from the shared tier (`None`: there is none).
    pub shared: Option<u64>,
}

/// The operations a handle needs, over any policy.
pub(crate) trait Control: Any + Send + Sync {
    fn name(&self) -> &str;
    fn invalidate_local(&self, pattern: &str, prefix: bool) -> u64;
    fn invalidate_tier(
        &self,
        pattern: &str,
        prefix: bool,
    ) -> Option<TierFuture<Result<u64, TierError>>>;
    fn clear(&self) -> u64;
    fn snapshot(&self) -> CacheSnapshot;
    fn run_pending_tasks(&self);
    fn bytes(&self) -> u64;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<P: Storage> Control for Shared<P> {
    fn name(&self) -> &str {
        Self::name(self)
    }

    fn invalidate_local(&self, pattern: &str, prefix: bool) -> u64 {
        Self::invalidate_local(self, pattern, prefix)
    }

    fn invalidate_tier(
        &self,
        pattern: &str,
        prefix: bool,
    ) -> Option<TierFuture<Result<u64, TierError>>> {
        Self::invalidate_tier(self, pattern, prefix)
    }

    fn clear(&self) -> u64 {
        self.clear_local()
    }

    fn snapshot(&self) -> CacheSnapshot {
        self.publish_size();
        let t = &self.telemetry;
        let hits = t.hits.get();
        let misses = t.misses.get();
        #[allow(clippy::cast_precision_loss, reason = "a ratio")]
        let hit_ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        let stale = |r| t.stale_count(r);
        CacheSnapshot {
            name: self.name().to_string(),
            settings: self.settings.clone(),
            hits,
            misses,
            hit_ratio,
            stale_served: StaleServed {
                revalidating: stale(StaleReason::Revalidating),
                error: stale(StaleReason::Error),
                timeout: stale(StaleReason::Timeout),
                rejected: stale(StaleReason::Rejected),
            },
            coalesced: t.coalesced.get(),
            bypassed: t.bypassed.get(),
            stored: t.stored.get(),
            not_stored: NotStored::ALL
                .iter()
                .map(|r| (r.as_str(), t.not_stored_count(*r)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            refreshes_succeeded: t.refresh_count(true),
            refreshes_failed: t.refresh_count(false),
            refreshes_running: self.refreshing.load(Ordering::Relaxed) as u64,
            in_flight: self.flights.len() as u64,
            invalidated: t.invalidated.get(),
            bytes: self.store.bytes(),
            entries: self.store.entries(),
            shared_tier: self.tier.as_ref().map(|tier| {
                let (key_prefix, breaker_state) = tier.describe();
                SharedTierSnapshot {
                    kind: "redis",
                    key_prefix,
                    breaker_state,
                    hits: t.tier_count(TierResult::Hit),
                    misses: t.tier_count(TierResult::Miss),
                    errors: t.tier_count(TierResult::Error),
                    skipped: t.tier_count(TierResult::Skipped),
                    writes: t.tier_count(TierResult::Write),
                }
            }),
        }
    }

    fn run_pending_tasks(&self) {
        self.store.remove_expired(self.clock.now());
        self.publish_size();
    }

    fn bytes(&self) -> u64 {
        self.store.bytes()
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// Invalidates entries and reads a cache's figures at runtime. Cheap to
/// clone; every clone, and every layer and service of the cache, sees the
/// same cache. This is what a `Registry<CacheHandle>` holds for an admin API.
///
/// Keys are matched by their text: for HTTP the URI (every method and
/// `Vary` variant of it), for a key function the key's text.
///
/// ```
/// use palisade_cache::CacheLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade_core::BoxError> {
/// let layer = CacheLayer::builder("products").key(|id: &u32| Some(*id)).build()?;
/// let handle = layer.handle();
/// let svc = layer.layer(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 10) }));
/// svc.clone().oneshot(7).await?;
/// svc.clone().oneshot(8).await?;
/// assert_eq!(handle.invalidate("7"), 1); // by the key's text
/// assert_eq!(handle.invalidate("7"), 0);
/// let snapshot = handle.snapshot();
/// assert_eq!((snapshot.entries, snapshot.misses), (1, 2));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CacheHandle {
    control: Arc<dyn Control>,
}

impl fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl CacheHandle {
    pub(crate) fn new<P: Storage>(shared: Arc<Shared<P>>) -> Self {
        Self { control: shared }
    }

    pub(crate) fn as_any(&self) -> Arc<dyn Any + Send + Sync> {
        Arc::clone(&self.control).as_any()
    }

    /// The cache's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.control.name()
    }

    /// `true` if both handles control the same cache.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.control), Arc::as_ptr(&other.control))
    }

    /// Removes the entries named `key` from the process tier (for HTTP,
    /// every method and variant of the URI) and returns how many; backend
    /// calls in flight will not store their responses. The shared tier, if
    /// any, is cleared in a background task; await [`purge`](Self::purge)
    /// to know it is done.
    pub fn invalidate(&self, key: &str) -> u64 {
        self.invalidate_with(key, false)
    }

    /// Removes the entries whose names start with `prefix`, as
    /// [`invalidate`](Self::invalidate) does.
    pub fn invalidate_prefix(&self, prefix: &str) -> u64 {
        self.invalidate_with(prefix, true)
    }

    fn invalidate_with(&self, pattern: &str, prefix: bool) -> u64 {
        let removed = self.control.invalidate_local(pattern, prefix);
        if let Some(delete) = self.control.invalidate_tier(pattern, prefix)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(delete);
        }
        removed
    }

    /// Removes the entries named `key` (or starting with it, if `prefix`)
    /// from both tiers, waiting for the shared tier.
    ///
    /// # Errors
    ///
    /// The shared tier's error (the process tier is cleared regardless).
    pub async fn purge(&self, key: &str, prefix: bool) -> Result<Purged, BoxError> {
        let local = self.control.invalidate_local(key, prefix);
        let shared = match self.control.invalidate_tier(key, prefix) {
            Some(delete) => Some(delete.await.map_err(|e| match e {
                TierError::Skipped(e) | TierError::Failed(e) => e,
            })?),
            None => None,
        };
        Ok(Purged { local, shared })
    }

    /// Removes every entry of the process tier; returns how many.
    pub fn invalidate_all(&self) -> u64 {
        self.control.clear()
    }

    /// The cache's figures now. The sizes are exact: the store evicts
    /// within each insert what the byte bound needs.
    #[must_use]
    pub fn snapshot(&self) -> CacheSnapshot {
        self.control.snapshot()
    }

    /// Bytes held by the process tier now, without building a snapshot.
    /// Never more than `max_bytes`: the store evicts within each insert
    /// what the bound needs.
    #[must_use]
    pub fn snapshot_unflushed_bytes(&self) -> u64 {
        self.control.bytes()
    }

    /// Removes the entries expired by now (past their `stale_if_error`
    /// and `stale_while_revalidate` windows), on tokio's clock. Otherwise
    /// an expired entry leaves when a request finds it, or when the byte
    /// bound evicts it: until then it only takes room that the bound
    /// already counts. Takes each shard's write lock in turn, for a walk
    /// over its entries.
    pub fn run_pending_tasks(&self) {
        self.control.run_pending_tasks();
    }
}

impl palisade_core::Handle for CacheHandle {
    type Snapshot = CacheSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> CacheSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
