//! What a chaos layer owns in one `Arc`: the settings in atomics, the
//! sequence index, the counts and the metric handles, shared by the layer,
//! every clone, every service it built and every handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::settings::ChaosSettings;
use crate::state::{self, Fault, Plan};

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The shared state: settings in atomics, the sequence index, counters.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) seed: u64,
    next: AtomicU64,
    pub(crate) enabled: AtomicBool,
    pub(crate) outage: AtomicBool,
    pub(crate) latency_rate: AtomicU64,
    pub(crate) latency_min: AtomicU64,
    pub(crate) latency_max: AtomicU64,
    pub(crate) error_rate: AtomicU64,
    pub(crate) abort_rate: AtomicU64,
    pub(crate) initial: ChaosSettings,
    pub(crate) counts: [AtomicU64; 4],
    metrics: Metrics,
}

impl Shared {
    pub(crate) fn new(name: Arc<str>, seed: u64, settings: ChaosSettings) -> Self {
        let metrics = Metrics::new(&name);
        Self {
            name,
            seed,
            next: AtomicU64::new(0),
            enabled: AtomicBool::new(settings.enabled),
            outage: AtomicBool::new(settings.outage),
            latency_rate: AtomicU64::new(settings.latency_rate.to_bits()),
            latency_min: AtomicU64::new(nanos(settings.latency_min)),
            latency_max: AtomicU64::new(nanos(settings.latency_max)),
            error_rate: AtomicU64::new(settings.error_rate.to_bits()),
            abort_rate: AtomicU64::new(settings.abort_rate.to_bits()),
            initial: settings,
            counts: Default::default(),
            metrics,
        }
    }

    /// The settings now (each read on its own: a call racing a change may
    /// see part of it).
    pub(crate) fn settings(&self) -> ChaosSettings {
        ChaosSettings {
            enabled: self.enabled.load(Ordering::Relaxed),
            outage: self.outage.load(Ordering::Relaxed),
            latency_rate: f64::from_bits(self.latency_rate.load(Ordering::Relaxed)),
            latency_min: Duration::from_nanos(self.latency_min.load(Ordering::Relaxed)),
            latency_max: Duration::from_nanos(self.latency_max.load(Ordering::Relaxed)),
            error_rate: f64::from_bits(self.error_rate.load(Ordering::Relaxed)),
            abort_rate: f64::from_bits(self.abort_rate.load(Ordering::Relaxed)),
        }
    }

    /// Decides one call and records what was injected.
    #[inline]
    pub(crate) fn plan(&self) -> Plan {
        // Disabled is the common case outside experiments: one relaxed load.
        if !self.enabled.load(Ordering::Relaxed) {
            return Plan::PASS;
        }
        let settings = self.settings();
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let plan = state::decide(&settings, state::draws(self.seed, index));
        if plan.delay.is_some() {
            self.counts[0].fetch_add(1, Ordering::Relaxed);
            self.metrics.latency.increment(1);
        }
        let slot = match plan.fault {
            Fault::None => None,
            Fault::Error => {
                self.metrics.error.increment(1);
                Some(1)
            }
            Fault::Abort => {
                self.metrics.abort.increment(1);
                Some(2)
            }
            Fault::Outage => {
                self.metrics.outage.increment(1);
                Some(3)
            }
        };
        if let Some(slot) = slot {
            self.counts[slot].fetch_add(1, Ordering::Relaxed);
        }
        if plan != Plan::PASS {
            tracing::debug!(
                name = %self.name,
                delay = ?plan.delay,
                fault = ?plan.fault,
                "chaos injected a fault"
            );
        }
        plan
    }
}
