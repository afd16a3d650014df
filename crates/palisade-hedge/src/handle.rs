//! [`HedgeHandle`]: a hedging layer's figures, for admin APIs and
//! dashboards.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::shared::Stats;

/// A handle to a [`HedgeLayer`](crate::HedgeLayer)'s shared state: cheap to
/// clone, off the request path. What a `palisade_core::Registry<HedgeHandle>`
/// holds.
#[derive(Clone)]
pub struct HedgeHandle {
    pub(crate) stats: Arc<Stats>,
}

/// A hedging layer's settings and figures at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HedgeSnapshot {
    /// The layer's name.
    pub name: Arc<str>,
    /// The delay after which a request is hedged now (`None`: not enough
    /// answers observed yet, and no initial delay).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub delay: Option<Duration>,
    /// The answers in the latency window.
    pub samples: u64,
    /// Hedges sent since the layer was built.
    pub hedges: u64,
    /// Requests a hedge answered first.
    pub won: u64,
    /// Hedges due but not sent: the budget was spent.
    pub budget_exhausted: u64,
    /// Requests counted by the budget over its window.
    pub budget_requests: u64,
    /// Extra attempts (hedges, and retries sharing the budget) granted by
    /// its ratio over the window.
    pub budget_spent: u64,
    /// Extra attempts its ratio allows over the window.
    pub budget_allowed: u64,
}

impl HedgeHandle {
    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// The current hedge delay, if hedging is possible now.
    #[must_use]
    pub fn delay(&self) -> Option<Duration> {
        self.stats.delay()
    }

    /// The layer's settings and figures now (the percentile recomputed from
    /// the window first).
    #[must_use]
    pub fn snapshot(&self) -> HedgeSnapshot {
        self.stats.refresh();
        let (hedges, won, budget_exhausted) = self.stats.counts();
        let budget = self.stats.budget.snapshot();
        HedgeSnapshot {
            name: Arc::clone(&self.stats.name),
            delay: self.stats.delay(),
            samples: self.stats.samples(),
            hedges,
            won,
            budget_exhausted,
            budget_requests: budget.requests,
            budget_spent: budget.retries,
            budget_allowed: budget.allowed,
        }
    }

    /// `true` if both handles are to the same state.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.stats, &other.stats)
    }
}

impl fmt::Debug for HedgeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HedgeHandle")
            .field(&self.stats.name)
            .finish()
    }
}

impl palisade_core::Handle for HedgeHandle {
    type Snapshot = HedgeSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> HedgeSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
