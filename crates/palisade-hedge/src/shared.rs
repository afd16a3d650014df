//! [`Shared`]: what a hedging layer owns in one `Arc`; [`Stats`]: the part a
//! registry shares by name (the latency window, the budget, the counters).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::Listeners;
use palisade_retry::RetryBudget;
use tokio::time::Instant;

use crate::event::HedgeEvent;
use crate::metrics::Metrics;
use crate::settings::HedgeSettings;
use crate::state::{LatencyWindow, thread_index};

/// The state every layer built under one name shares.
pub(crate) struct Stats {
    pub(crate) name: Arc<str>,
    pub(crate) settings: HedgeSettings,
    window: LatencyWindow,
    pub(crate) budget: Arc<RetryBudget>,
    metrics: Metrics,
    listeners: Listeners<HedgeEvent>,
    hedges: AtomicU64,
    wins: AtomicU64,
    exhausted: AtomicU64,
}

impl Stats {
    pub(crate) fn new(
        name: Arc<str>,
        settings: HedgeSettings,
        budget: Arc<RetryBudget>,
        listeners: Listeners<HedgeEvent>,
    ) -> Self {
        let window = LatencyWindow::new(
            Instant::now(),
            settings.window,
            settings.percentile,
            settings.min_samples,
            settings.min_delay,
        );
        let metrics = Metrics::new(&name);
        Self {
            name,
            settings,
            window,
            budget,
            metrics,
            listeners,
            hedges: AtomicU64::new(0),
            wins: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }

    /// The hedge delay for a request starting now: the observed percentile,
    /// or the initial delay while there are too few answers; `None` when
    /// hedging is off or not yet possible.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        if self.settings.max_hedges == 0 {
            return None;
        }
        self.window.delay().or(self.settings.initial_delay)
    }

    /// Records an answer that took `latency`.
    #[inline]
    pub(crate) fn record(&self, now: Instant, latency: Duration) {
        let before = self.window.delay();
        self.window.record(now, latency, thread_index());
        let after = self.window.delay();
        if before != after {
            self.metrics
                .delay
                .set(after.map_or(0.0, |d| d.as_secs_f64()));
        }
    }

    #[cold]
    pub(crate) fn hedged(&self, attempt: u32, delay: Duration) {
        self.hedges.fetch_add(1, Ordering::Relaxed);
        self.metrics.hedges.increment(1);
        tracing::debug!(
            name = %self.name,
            attempt,
            delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
            "hedging"
        );
        self.listeners.emit_with(|| HedgeEvent::Hedged {
            name: Arc::clone(&self.name),
            attempt,
            delay,
        });
    }

    #[cold]
    pub(crate) fn won(&self, attempt: u32) {
        self.wins.fetch_add(1, Ordering::Relaxed);
        self.metrics.wins.increment(1);
        self.listeners.emit_with(|| HedgeEvent::Won {
            name: Arc::clone(&self.name),
            attempt,
        });
    }

    #[cold]
    pub(crate) fn exhausted(&self) {
        self.exhausted.fetch_add(1, Ordering::Relaxed);
        self.metrics.budget_exhausted.increment(1);
        tracing::debug!(name = %self.name, "hedge budget spent; not hedging");
        self.listeners.emit_with(|| HedgeEvent::BudgetExhausted {
            name: Arc::clone(&self.name),
        });
    }

    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        (
            self.hedges.load(Ordering::Relaxed),
            self.wins.load(Ordering::Relaxed),
            self.exhausted.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn samples(&self) -> u64 {
        self.window.samples()
    }

    /// Recomputes the percentile from the window now.
    pub(crate) fn refresh(&self) {
        self.window.refresh(Instant::now());
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("delay", &self.window.delay())
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// The layer's state: the shared figures, the classifier and the request
/// kind.
pub(crate) struct Shared<C, K> {
    pub(crate) stats: Arc<Stats>,
    pub(crate) classifier: C,
    pub(crate) kind: K,
}

impl<C, K> fmt::Debug for Shared<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stats.fmt(f)
    }
}
