//! Metrics, traces and listeners: everything a cache tells the outside
//! world. Metric handles are resolved once, when the cache is built; the
//! figures the handle's snapshot reads are kept here too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Unit};
use palisade_core::Listeners;

use crate::event::{CacheEvent, StaleReason};
use crate::state::NotStored;

/// `palisade_cache_hits_total{name}`.
pub(crate) const HITS: &str = "palisade_cache_hits_total";
/// `palisade_cache_misses_total{name}`.
pub(crate) const MISSES: &str = "palisade_cache_misses_total";
/// `palisade_cache_stale_served_total{name, reason}`.
pub(crate) const STALE: &str = "palisade_cache_stale_served_total";
/// `palisade_cache_coalesced_total{name}`.
pub(crate) const COALESCED: &str = "palisade_cache_coalesced_total";
/// `palisade_cache_bypassed_total{name}`.
pub(crate) const BYPASSED: &str = "palisade_cache_bypassed_total";
/// `palisade_cache_stored_total{name}`.
pub(crate) const STORED: &str = "palisade_cache_stored_total";
/// `palisade_cache_not_stored_total{name, reason}`.
pub(crate) const NOT_STORED: &str = "palisade_cache_not_stored_total";
/// `palisade_cache_refreshes_total{name, outcome}`.
pub(crate) const REFRESHES: &str = "palisade_cache_refreshes_total";
/// `palisade_cache_shared_tier_total{name, result}`.
pub(crate) const SHARED_TIER: &str = "palisade_cache_shared_tier_total";
/// `palisade_cache_bytes{name}`.
pub(crate) const BYTES: &str = "palisade_cache_bytes";
/// `palisade_cache_entries{name}`.
pub(crate) const ENTRIES: &str = "palisade_cache_entries";
/// `palisade_cache_invalidated_total{name}`.
pub(crate) const INVALIDATED: &str = "palisade_cache_invalidated_total";

fn describe() {
    metrics::describe_counter!(HITS, Unit::Count, "Requests answered from a fresh entry");
    metrics::describe_counter!(
        MISSES,
        Unit::Count,
        "Requests that went to the backend (or the shared tier) for their key"
    );
    metrics::describe_counter!(STALE, Unit::Count, "Stale entries served, by reason");
    metrics::describe_counter!(
        COALESCED,
        Unit::Count,
        "Requests that waited for another request's backend call"
    );
    metrics::describe_counter!(
        BYPASSED,
        Unit::Count,
        "Requests the cache does not apply to (not cacheable)"
    );
    metrics::describe_counter!(STORED, Unit::Count, "Entries stored in the process tier");
    metrics::describe_counter!(NOT_STORED, Unit::Count, "Responses not stored, by reason");
    metrics::describe_counter!(REFRESHES, Unit::Count, "Background refreshes, by outcome");
    metrics::describe_counter!(
        SHARED_TIER,
        Unit::Count,
        "Shared-tier (Redis) lookups and writes, by result"
    );
    metrics::describe_gauge!(BYTES, Unit::Bytes, "Bytes held by the process tier");
    metrics::describe_gauge!(ENTRIES, Unit::Count, "Entries held by the process tier");
    metrics::describe_counter!(
        INVALIDATED,
        Unit::Count,
        "Entries removed from the process tier through the handle"
    );
}

/// A counter exported to `metrics` and kept for the snapshot.
#[derive(Debug)]
pub(crate) struct Figure {
    counter: Counter,
    value: AtomicU64,
}

impl Figure {
    fn new(counter: Counter) -> Self {
        Self {
            counter,
            value: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.counter.increment(n);
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A counter on the hit path: exported to `metrics`, and kept for the
/// snapshot in per-thread stripes, so threads hitting the cache together
/// do not all write one cache line.
#[derive(Debug)]
pub(crate) struct HotFigure {
    counter: Counter,
    stripes: Box<[Stripe]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

const STRIPES: usize = 16;

#[inline]
fn stripe_index() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

impl HotFigure {
    fn new(counter: Counter) -> Self {
        Self {
            counter,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.stripes[stripe_index()]
            .0
            .fetch_add(n, Ordering::Relaxed);
        self.counter.increment(n);
    }

    pub(crate) fn get(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// Results of the shared tier, as labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TierResult {
    Hit,
    Miss,
    Error,
    /// Refused by the breaker in front of the tier.
    Skipped,
    Write,
}

impl TierResult {
    const ALL: [Self; 5] = [
        Self::Hit,
        Self::Miss,
        Self::Error,
        Self::Skipped,
        Self::Write,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Write => "write",
        }
    }
}

/// One cache's metric handles, figures and listeners.
#[derive(Debug)]
pub(crate) struct Telemetry {
    pub(crate) name: Arc<str>,
    pub(crate) hits: HotFigure,
    pub(crate) misses: Figure,
    stale: [Figure; 4],
    pub(crate) coalesced: Figure,
    pub(crate) bypassed: Figure,
    pub(crate) stored: Figure,
    not_stored: [Figure; NotStored::ALL.len()],
    refreshes: [Figure; 2],
    tier: [Figure; 5],
    pub(crate) invalidated: Figure,
    bytes: Gauge,
    entries: Gauge,
    pub(crate) listeners: Listeners<CacheEvent>,
}

impl Telemetry {
    pub(crate) fn new(name: Arc<str>, listeners: Listeners<CacheEvent>) -> Self {
        describe();
        let n = || Arc::clone(&name);
        let counter = |metric: &'static str| Figure::new(metrics::counter!(metric, "name" => n()));
        Self {
            hits: HotFigure::new(metrics::counter!(HITS, "name" => n())),
            misses: counter(MISSES),
            stale: StaleReason::ALL.map(|r| {
                Figure::new(metrics::counter!(STALE, "name" => n(), "reason" => r.as_str()))
            }),
            coalesced: counter(COALESCED),
            bypassed: counter(BYPASSED),
            stored: counter(STORED),
            not_stored: NotStored::ALL.map(|r| {
                Figure::new(metrics::counter!(NOT_STORED, "name" => n(), "reason" => r.as_str()))
            }),
            refreshes: ["success", "failure"]
                .map(|o| Figure::new(metrics::counter!(REFRESHES, "name" => n(), "outcome" => o))),
            tier: TierResult::ALL.map(|r| {
                Figure::new(metrics::counter!(SHARED_TIER, "name" => n(), "result" => r.as_str()))
            }),
            invalidated: counter(INVALIDATED),
            bytes: metrics::gauge!(BYTES, "name" => n()),
            entries: metrics::gauge!(ENTRIES, "name" => n()),
            listeners,
            name,
        }
    }

    /// A stale entry was served.
    pub(crate) fn stale(&self, reason: StaleReason, key: impl FnOnce() -> String) {
        self.stale[reason.index()].add(1);
        tracing::debug!(name = %self.name, reason = reason.as_str(), "cache served a stale entry");
        self.listeners.emit_with(|| CacheEvent::StaleServed {
            name: Arc::clone(&self.name),
            key: key(),
            reason,
        });
    }

    pub(crate) fn stale_count(&self, reason: StaleReason) -> u64 {
        self.stale[reason.index()].get()
    }

    /// A response was not stored.
    pub(crate) fn not_stored(&self, reason: NotStored, key: impl FnOnce() -> String) {
        self.not_stored[reason.index()].add(1);
        self.listeners.emit_with(|| CacheEvent::NotStored {
            name: Arc::clone(&self.name),
            key: key(),
            reason,
        });
    }

    pub(crate) fn not_stored_count(&self, reason: NotStored) -> u64 {
        self.not_stored[reason.index()].get()
    }

    /// A background refresh ended.
    pub(crate) fn refreshed(&self, success: bool, key: impl FnOnce() -> String) {
        self.refreshes[usize::from(!success)].add(1);
        if success {
            tracing::debug!(name = %self.name, "cache refreshed an entry in the background");
        } else {
            tracing::debug!(name = %self.name, "cache background refresh failed; the stale entry stays");
        }
        self.listeners.emit_with(|| CacheEvent::Refreshed {
            name: Arc::clone(&self.name),
            key: key(),
            success,
        });
    }

    pub(crate) fn refresh_count(&self, success: bool) -> u64 {
        self.refreshes[usize::from(!success)].get()
    }

    /// A shared-tier operation ended.
    pub(crate) fn tier(&self, result: TierResult) {
        self.tier[result as usize].add(1);
    }

    pub(crate) fn tier_count(&self, result: TierResult) -> u64 {
        self.tier[result as usize].get()
    }

    /// The shared tier failed or its breaker is open.
    #[cold]
    pub(crate) fn tier_unavailable(&self, skipped: bool, error: &dyn std::fmt::Display) {
        self.tier(if skipped {
            TierResult::Skipped
        } else {
            TierResult::Error
        });
        if skipped {
            tracing::debug!(name = %self.name, %error, "cache shared tier skipped");
        } else {
            tracing::warn!(name = %self.name, %error, "cache shared tier failed; the process tier carries on");
        }
        self.listeners
            .emit_with(|| CacheEvent::SharedTierUnavailable {
                name: Arc::clone(&self.name),
                error: error.to_string(),
            });
    }

    /// Publishes the process tier's size.
    pub(crate) fn size(&self, bytes: u64, entries: u64) {
        #[allow(clippy::cast_precision_loss, reason = "a gauge is a float")]
        {
            self.bytes.set(bytes as f64);
            self.entries.set(entries as f64);
        }
    }
}
