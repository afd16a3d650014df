//! [`Shared`]: what a fallback layer owns in one `Arc`; [`Stats`]: the part a
//! registry shares by name.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_core::Listeners;

use crate::event::FallbackEvent;
use crate::metrics::Metrics;
use crate::settings::{FallbackClass, FallbackSettings};

/// The figures of a fallback layer, shared by every layer built under its
/// name in a registry: its counters, metric handles and listeners.
pub(crate) struct Stats {
    pub(crate) name: Arc<str>,
    pub(crate) settings: FallbackSettings,
    metrics: Metrics,
    listeners: Listeners<FallbackEvent>,
    served: [AtomicU64; 6],
    failed: [AtomicU64; 6],
}

impl Stats {
    pub(crate) fn new(
        name: Arc<str>,
        settings: FallbackSettings,
        listeners: Listeners<FallbackEvent>,
    ) -> Self {
        let metrics = Metrics::new(&name);
        Self {
            name,
            settings,
            metrics,
            listeners,
            served: Default::default(),
            failed: Default::default(),
        }
    }

    #[cold]
    pub(crate) fn served(&self, class: FallbackClass) {
        self.served[class.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.served(class);
        tracing::debug!(name = %self.name, class = class.as_str(), "answered by the fallback");
        self.listeners.emit_with(|| FallbackEvent::Served {
            name: Arc::clone(&self.name),
            class,
        });
    }

    #[cold]
    pub(crate) fn failed(&self, class: FallbackClass, error: &dyn std::error::Error) {
        self.failed[class.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.failed(class);
        tracing::debug!(
            name = %self.name,
            class = class.as_str(),
            error = %error,
            "the fallback failed too"
        );
        self.listeners.emit_with(|| FallbackEvent::Failed {
            name: Arc::clone(&self.name),
            class,
        });
    }

    pub(crate) fn counts(&self) -> ([u64; 6], [u64; 6]) {
        (
            self.served.each_ref().map(|c| c.load(Ordering::Relaxed)),
            self.failed.each_ref().map(|c| c.load(Ordering::Relaxed)),
        )
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// The layer's state: the answer, the classifier, the marking, and the
/// shared figures.
pub(crate) struct Shared<F, C, K> {
    pub(crate) stats: Arc<Stats>,
    pub(crate) answer: F,
    pub(crate) classifier: C,
    pub(crate) mark: K,
}

impl<F, C, K> fmt::Debug for Shared<F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stats.fmt(f)
    }
}
