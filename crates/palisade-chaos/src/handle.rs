//! [`ChaosHandle`]: switches a chaos layer at runtime, and
//! [`ChaosSnapshot`], what the admin API and the dashboard show.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_core::ConfigError;

use crate::settings::{ChaosSettings, check_latency, check_rate};
use crate::shared::{Shared, nanos};

/// How many faults of each kind a chaos layer has injected since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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

/// A chaos layer at one instant: what it injects and what it has injected.
/// Plain data, `Serialize` with the `serde` feature.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ChaosSnapshot {
    /// The layer's name.
    pub name: Arc<str>,
    /// The seed of its decision sequence.
    pub seed: u64,
    /// What it injects now.
    pub settings: ChaosSettings,
    /// What it has injected since it was built.
    pub injected: InjectedCounts,
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
///
/// A `Registry<ChaosHandle>` holds handles by name for an admin API
/// ([`ChaosBuilder::registry`](crate::ChaosBuilder::registry)).
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
        self.shared.settings()
    }

    /// The settings the layer was built with, which
    /// [`reset`](Self::reset) restores.
    #[must_use]
    pub fn initial_settings(&self) -> ChaosSettings {
        self.shared.initial
    }

    /// The name, the seed, the current settings and the counts of what was
    /// injected.
    #[must_use]
    pub fn snapshot(&self) -> ChaosSnapshot {
        ChaosSnapshot {
            name: Arc::clone(&self.shared.name),
            seed: self.shared.seed,
            settings: self.settings(),
            injected: self.injected(),
        }
    }

    /// `true` if both handles switch the same layer (the same state).
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
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
        check_rate("error_rate", rate)?;
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
        check_rate("abort_rate", rate)?;
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
        check_rate("latency_rate", rate)?;
        check_latency(min, max)?;
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

impl palisade_core::Handle for ChaosHandle {
    type Snapshot = ChaosSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> ChaosSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
