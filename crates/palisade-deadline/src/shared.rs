//! [`Shared`]: what a deadline layer owns in one `Arc`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderName;
use palisade_core::Listeners;

use crate::event::DeadlineEvent;
use crate::metrics::Metrics;
use crate::settings::DeadlineSettings;

/// The layer's state: its settings, metric handles, listeners and the
/// counters its handle reports. Shared by every service the layer builds.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) settings: DeadlineSettings,
    pub(crate) header: HeaderName,
    pub(crate) metrics: Metrics,
    pub(crate) listeners: Listeners<DeadlineEvent>,
    expired_on_arrival: AtomicU64,
    expired_in_flight: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        settings: DeadlineSettings,
        header: HeaderName,
        listeners: Listeners<DeadlineEvent>,
    ) -> Self {
        let metrics = Metrics::new(&name);
        Self {
            name,
            settings,
            header,
            metrics,
            listeners,
            expired_on_arrival: AtomicU64::new(0),
            expired_in_flight: AtomicU64::new(0),
        }
    }

    /// Records an expiry: counters, metric, log, event. The rare path.
    #[cold]
    pub(crate) fn expired(&self, budget: Duration, on_arrival: bool) {
        let counter = if on_arrival {
            &self.expired_on_arrival
        } else {
            &self.expired_in_flight
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.metrics.expired(&self.name, budget, on_arrival);
        self.listeners.emit_with(|| DeadlineEvent::Expired {
            name: Arc::clone(&self.name),
            budget,
            on_arrival,
        });
    }

    /// `(on arrival, in flight)` expiries so far.
    pub(crate) fn expiries(&self) -> (u64, u64) {
        (
            self.expired_on_arrival.load(Ordering::Relaxed),
            self.expired_in_flight.load(Ordering::Relaxed),
        )
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}
