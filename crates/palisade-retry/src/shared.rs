//! What a retry layer owns in one `Arc`, shared by every service it builds,
//! every clone of them and every response future that needs to retry.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::Listeners;
use palisade_core::stripe::Striped;

use crate::event::RetryEvent;
use crate::metrics::Metrics;
use crate::settings::RetrySettings;
use crate::state::budget::RetryBudget;
use crate::state::rng::JitterSource;

/// The instance a name stands for: its effective settings, its budget, its
/// jitter source, its metric handles and listeners. What a
/// [`RetryHandle`](crate::RetryHandle) reads, and what a registry shares
/// between layers built under one name (each with its own classifier and
/// request kind).
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    /// The settings in effect: with a shared budget, its own ratio, floor
    /// and window.
    pub(crate) settings: RetrySettings,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) rng: JitterSource,
    pub(crate) metrics: Metrics,
    pub(crate) listeners: Listeners<RetryEvent>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("budget", &self.budget)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// The state one layer owns and shares with every service it builds, every
/// clone of them, and every response future that needs to retry.
///
/// The request path reads the settings, the budget and the metric handles
/// held here, one pointer away from the call; the rest (name, jitter source,
/// listeners) is read through `core` on the retry path only.
pub(crate) struct Shared<C, K> {
    pub(crate) settings: RetrySettings,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) classifier: C,
    pub(crate) kind: K,
    pub(crate) metrics: Metrics,
    pub(crate) core: Arc<Core>,
}

/// The layer's state and the references calls take to it: a call in flight
/// keeps the state alive through the stripe of the thread it starts on
/// ([`palisade_core::stripe`]), so calls on different cores do not bounce one
/// reference count.
pub(crate) type Handles<C, K> = Striped<Shared<C, K>>;

impl<C, K> Shared<C, K> {
    /// The state of a layer over `core`, with its own classifier and kind.
    pub(crate) fn new(core: Arc<Core>, classifier: C, kind: K) -> Self {
        Self {
            settings: core.settings.clone(),
            budget: core.budget.clone(),
            classifier,
            kind,
            metrics: core.metrics.clone(),
            core,
        }
    }

    /// The layer's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.core.name
    }

    /// `true` when an attempt needs the clock: a deadline or a per-attempt
    /// timeout is set.
    pub(crate) const fn timed(&self) -> bool {
        self.settings.deadline.is_some() || self.settings.attempt_timeout.is_some()
    }

    pub(crate) const fn max_attempts(&self) -> u32 {
        self.settings.max_attempts
    }

    pub(crate) const fn attempt_timeout(&self) -> Option<Duration> {
        self.settings.attempt_timeout
    }

    pub(crate) const fn deadline(&self) -> Option<Duration> {
        self.settings.deadline
    }
}

impl<C, K: fmt::Debug> fmt::Debug for Shared<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", self.name())
            .field("max_attempts", &self.settings.max_attempts)
            .field("backoff", &self.settings.backoff)
            .field("jitter", &self.settings.jitter)
            .field("attempt_timeout", &self.settings.attempt_timeout)
            .field("deadline", &self.settings.deadline)
            .field("budget", &self.budget)
            .field("kind", &self.kind)
            .field("listeners", &self.core.listeners.len())
            .finish_non_exhaustive()
    }
}
