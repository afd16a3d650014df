//! The state every clone of a chaos layer shares, and the handle that
//! switches it at runtime.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::ConfigError;

use crate::decision::{self, Fault, Plan, Settings};
use crate::metrics::Metrics;

/// What a chaos layer is set to inject: the figures a [`ChaosHandle`] reads
/// and writes, and what [`ChaosBuilder`](crate::ChaosBuilder) starts from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChaosSettings {
    /// Master switch: when `false` nothing is injected, outage included.
    pub enabled: bool,
    /// When `true` (and enabled), every call fails at once.
    pub outage: bool,
    /// Fraction of calls, in `[0, 1]`, that get added latency.
    pub latency_rate: f64,
    /// The least latency added to a delayed call.
    pub latency_min: Duration,
    /// The most latency added to a delayed call; the amount is uniform in
    /// `[latency_min, latency_max]`.
    pub latency_max: Duration,
    /// Fraction of calls, in `[0, 1]`, that fail with an injected error.
    pub error_rate: f64,
    /// Fraction of calls, in `[0, 1]`, that never answer.
    pub abort_rate: f64,
}

impl Default for ChaosSettings {
    /// Enabled, with every rate at zero and no outage: nothing is injected
    /// until a rate or the outage is set.
    fn default() -> Self {
        Self {
            enabled: true,
            outage: false,
            latency_rate: 0.0,
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
            error_rate: 0.0,
            abort_rate: 0.0,
        }
    }
}

impl ChaosSettings {
    /// Checks every rate is in `[0, 1]` and `latency_min <= latency_max`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, rate) in [
            ("latency_rate", self.latency_rate),
            ("error_rate", self.error_rate),
            ("abort_rate", self.abort_rate),
        ] {
            decision::check_rate(rate).map_err(|reason| ConfigError::new(field, reason))?;
        }
        if self.latency_min > self.latency_max {
            return Err(ConfigError::new(
                "latency",
                format!(
                    "the minimum {:?} is above the maximum {:?}",
                    self.latency_min, self.latency_max
                ),
            ));
        }
        Ok(())
    }
}

/// How many faults of each kind a chaos layer has injected since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectedCounts {
    /// Calls that were delayed.
    pub latency: u64,
    /// Calls failed by the error rate.
    pub error: u64,
    /// Calls that were never answered.
    pub abort: u64,
    /// Calls failed because of an outage.
    pub outage: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The shared state: settings in atomics, the sequence index, counters.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    seed: u64,
    next: AtomicU64,
    enabled: AtomicBool,
    outage: AtomicBool,
    latency_rate: AtomicU64,
    latency_min: AtomicU64,
    latency_max: AtomicU64,
    error_rate: AtomicU64,
    abort_rate: AtomicU64,
    initial: ChaosSettings,
    counts: [AtomicU64; 4],
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

    fn settings(&self) -> Settings {
        Settings {
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
        let plan = decision::decide(&settings, decision::draws(self.seed, index));
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

/// Switches a chaos layer at runtime.
///
/// Every handle, the layer it came from, every clone of that layer and every
/// service it built share one state: a change made through any handle applies
/// to calls that start after it. Settings live in atomics; a call reads them
/// without a lock, so a call racing a change may see part of it.
///
/// ```
/// use palisade_chaos::ChaosLayer;
/// use std::time::Duration;
///
/// let layer = ChaosLayer::builder("orders").build().unwrap();
/// let handle = layer.handle();
/// handle.set_error_rate(0.25).unwrap();
/// handle.set_latency(Duration::from_millis(200), 0.5).unwrap();
/// handle.set_outage(true);
/// assert!(handle.settings().outage);
/// handle.reset();
/// assert_eq!(handle.settings().error_rate, 0.0);
/// ```
#[derive(Clone)]
pub struct ChaosHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ChaosHandle {
    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The seed of the layer's decision sequence.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// The current settings.
    #[must_use]
    pub fn settings(&self) -> ChaosSettings {
        let s = self.shared.settings();
        ChaosSettings {
            enabled: s.enabled,
            outage: s.outage,
            latency_rate: s.latency_rate,
            latency_min: s.latency_min,
            latency_max: s.latency_max,
            error_rate: s.error_rate,
            abort_rate: s.abort_rate,
        }
    }

    /// How many faults of each kind were injected since the layer was built.
    #[must_use]
    pub fn injected(&self) -> InjectedCounts {
        let c = &self.shared.counts;
        InjectedCounts {
            latency: c[0].load(Ordering::Relaxed),
            error: c[1].load(Ordering::Relaxed),
            abort: c[2].load(Ordering::Relaxed),
            outage: c[3].load(Ordering::Relaxed),
        }
    }

    /// `true` when the layer injects anything at all.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Relaxed)
    }

    /// Turns injection on (the settings are kept).
    pub fn enable(&self) {
        self.shared.enabled.store(true, Ordering::Relaxed);
        tracing::info!(name = %self.shared.name, "chaos enabled");
    }

    /// Turns every injection off, outage included (the settings are kept).
    pub fn disable(&self) {
        self.shared.enabled.store(false, Ordering::Relaxed);
        tracing::info!(name = %self.shared.name, "chaos disabled");
    }

    /// Switches the outage on (every call fails at once) or off.
    pub fn set_outage(&self, on: bool) {
        self.shared.outage.store(on, Ordering::Relaxed);
        if on {
            tracing::warn!(name = %self.shared.name, "chaos outage on: every call fails");
        } else {
            tracing::info!(name = %self.shared.name, "chaos outage off");
        }
    }

    /// Sets the fraction of calls that fail with an injected error.
    ///
    /// # Errors
    ///
    /// `rate` is not in `[0, 1]`; nothing changes.
    pub fn set_error_rate(&self, rate: f64) -> Result<(), ConfigError> {
        decision::check_rate(rate).map_err(|r| ConfigError::new("error_rate", r))?;
        self.shared
            .error_rate
            .store(rate.to_bits(), Ordering::Relaxed);
        tracing::info!(name = %self.shared.name, rate, "chaos error rate set");
        Ok(())
    }

    /// Sets the fraction of calls that never answer.
    ///
    /// # Errors
    ///
    /// `rate` is not in `[0, 1]`; nothing changes.
    pub fn set_abort_rate(&self, rate: f64) -> Result<(), ConfigError> {
        decision::check_rate(rate).map_err(|r| ConfigError::new("abort_rate", r))?;
        self.shared
            .abort_rate
            .store(rate.to_bits(), Ordering::Relaxed);
        tracing::info!(name = %self.shared.name, rate, "chaos abort rate set");
        Ok(())
    }

    /// Adds exactly `latency` to a fraction `rate` of calls
    /// (`Duration::ZERO` or a rate of 0 turns latency off).
    ///
    /// # Errors
    ///
    /// `rate` is not in `[0, 1]`; nothing changes.
    pub fn set_latency(&self, latency: Duration, rate: f64) -> Result<(), ConfigError> {
        self.set_latency_range(latency, latency, rate)
    }

    /// Adds a latency uniform in `[min, max]` to a fraction `rate` of calls.
    ///
    /// # Errors
    ///
    /// `rate` is not in `[0, 1]` or `min > max`; nothing changes.
    pub fn set_latency_range(
        &self,
        min: Duration,
        max: Duration,
        rate: f64,
    ) -> Result<(), ConfigError> {
        decision::check_rate(rate).map_err(|r| ConfigError::new("latency_rate", r))?;
        if min > max {
            return Err(ConfigError::new(
                "latency",
                format!("the minimum {min:?} is above the maximum {max:?}"),
            ));
        }
        let s = &self.shared;
        // Order the two stores so a concurrent call never sees min > max.
        if nanos(min) > s.latency_max.load(Ordering::Relaxed) {
            s.latency_max.store(nanos(max), Ordering::Relaxed);
            s.latency_min.store(nanos(min), Ordering::Relaxed);
        } else {
            s.latency_min.store(nanos(min), Ordering::Relaxed);
            s.latency_max.store(nanos(max), Ordering::Relaxed);
        }
        s.latency_rate.store(rate.to_bits(), Ordering::Relaxed);
        tracing::info!(name = %s.name, ?min, ?max, rate, "chaos latency set");
        Ok(())
    }

    /// Applies every setting at once.
    ///
    /// # Errors
    ///
    /// A setting is invalid ([`ChaosSettings::validate`]); nothing changes.
    pub fn apply(&self, settings: ChaosSettings) -> Result<(), ConfigError> {
        settings.validate()?;
        let s = &self.shared;
        s.enabled.store(settings.enabled, Ordering::Relaxed);
        s.outage.store(settings.outage, Ordering::Relaxed);
        s.error_rate
            .store(settings.error_rate.to_bits(), Ordering::Relaxed);
        s.abort_rate
            .store(settings.abort_rate.to_bits(), Ordering::Relaxed);
        self.set_latency_range(
            settings.latency_min,
            settings.latency_max,
            settings.latency_rate,
        )
    }

    /// Restores the settings the layer was built with.
    pub fn reset(&self) {
        let initial = self.shared.initial;
        // The initial settings were validated when the layer was built.
        if let Err(err) = self.apply(initial) {
            tracing::error!(name = %self.shared.name, %err, "chaos reset failed");
        }
        tracing::info!(name = %self.shared.name, "chaos reset");
    }
}

impl fmt::Debug for ChaosHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosHandle")
            .field("name", &self.shared.name)
            .field("seed", &self.shared.seed)
            .field("settings", &self.settings())
            .finish()
    }
}
