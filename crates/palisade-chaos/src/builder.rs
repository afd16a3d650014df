//! [`ChaosBuilder`]: one setter per setting, then `build()`.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, Registry};

use crate::handle::ChaosHandle;
use crate::inject::InjectError;
use crate::layer::ChaosLayer;
use crate::settings::ChaosSettings;
use crate::shared::Shared;

impl ChaosLayer {
    /// A builder for a chaos layer called `name` (labels metrics and logs).
    pub fn builder(name: impl Into<Arc<str>>) -> ChaosBuilder {
        ChaosBuilder {
            name: name.into(),
            seed: None,
            settings: ChaosSettings::default(),
            registry: None,
        }
    }
}

/// Builds a [`ChaosLayer`]; every setting can be changed later through its
/// [`ChaosHandle`], and [`ChaosHandle::reset`] returns to what was built.
///
/// Every setter but `seed`, `latency` and `latency_range` is named after its
/// field of [`ChaosSettings`] (the gateway's TOML keys use the same names),
/// where the bounds are listed; [`settings`](Self::settings) sets them all at
/// once. Nothing is checked until [`build`](Self::build).
///
/// | setter | default |
/// |---|---|
/// | `enabled` | `true` |
/// | `seed` | random |
/// | `latency` / `latency_range` (`latency_min`, `latency_max`), `latency_rate` | none, 0 |
/// | `error_rate` | 0 |
/// | `abort_rate` | 0 |
/// | `outage` | `false` |
#[derive(Clone, Debug)]
#[must_use]
pub struct ChaosBuilder {
    name: Arc<str>,
    seed: Option<u64>,
    settings: ChaosSettings,
    registry: Option<Registry<ChaosHandle>>,
}

impl ChaosBuilder {
    /// Seeds the decision sequence: the same seed and settings give the same
    /// decision for the n-th call. Without a seed, one is drawn at random.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts enabled (the default) or disabled.
    pub const fn enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// Starts with the outage on: every call fails.
    pub const fn outage(mut self, on: bool) -> Self {
        self.settings.outage = on;
        self
    }

    /// Adds exactly `latency` to delayed calls (sets `latency_min` and
    /// `latency_max`).
    pub const fn latency(mut self, latency: Duration) -> Self {
        self.settings.latency_min = latency;
        self.settings.latency_max = latency;
        self
    }

    /// Adds a latency uniform in `[min, max]` to delayed calls (sets
    /// `latency_min` and `latency_max`).
    pub const fn latency_range(mut self, min: Duration, max: Duration) -> Self {
        self.settings.latency_min = min;
        self.settings.latency_max = max;
        self
    }

    /// The least latency added to a delayed call (default 0).
    pub const fn latency_min(mut self, min: Duration) -> Self {
        self.settings.latency_min = min;
        self
    }

    /// The most latency added to a delayed call (default 0: no latency).
    pub const fn latency_max(mut self, max: Duration) -> Self {
        self.settings.latency_max = max;
        self
    }

    /// The fraction of calls, in `[0, 1]`, that are delayed.
    pub const fn latency_rate(mut self, rate: f64) -> Self {
        self.settings.latency_rate = rate;
        self
    }

    /// The fraction of calls, in `[0, 1]`, failed with an injected error.
    pub const fn error_rate(mut self, rate: f64) -> Self {
        self.settings.error_rate = rate;
        self
    }

    /// The fraction of calls, in `[0, 1]`, that never answer.
    pub const fn abort_rate(mut self, rate: f64) -> Self {
        self.settings.abort_rate = rate;
        self
    }

    /// Starts from `settings` as a whole.
    pub const fn settings(mut self, settings: ChaosSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Registers the layer's handle in `registry` under its name. If one of
    /// that name is already registered, [`build`](Self::build) (which still
    /// checks this builder's settings) returns a layer over it: its settings,
    /// seed, sequence and counts. The injector is per layer
    /// ([`ChaosLayer::with_injector`]).
    ///
    /// ```
    /// use palisade_chaos::{ChaosHandle, ChaosLayer, Registry};
    ///
    /// let registry = Registry::<ChaosHandle>::new();
    /// let a = ChaosLayer::builder("orders").error_rate(0.1).registry(&registry).build()?;
    /// let b = ChaosLayer::builder("orders").registry(&registry).build()?;
    /// assert!(a.handle().same_as(&b.handle()));
    /// assert_eq!(b.handle().settings().error_rate, 0.1, "the registered layer's settings");
    /// let snapshot = &registry.snapshots()[0];
    /// assert_eq!((&*snapshot.name, snapshot.injected.error), ("orders", 0));
    /// # Ok::<(), palisade_core::ConfigError>(())
    /// ```
    pub fn registry(mut self, registry: &Registry<ChaosHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Builds the layer, with the default injector ([`InjectError`]).
    ///
    /// # Errors
    ///
    /// An empty `name`, a rate outside `[0, 1]` (field `latency_rate`,
    /// `error_rate` or `abort_rate`) or a latency range whose minimum is
    /// above its maximum (field `latency`).
    pub fn build(self) -> Result<ChaosLayer, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        let Self {
            name,
            seed,
            settings,
            registry,
        } = self;
        let registered_name = Arc::clone(&name);
        let make = move || {
            let seed = seed.unwrap_or_else(|| fastrand::u64(..));
            Arc::new(Shared::new(name, seed, settings))
        };
        let shared = match registry {
            None => make(),
            Some(registry) => {
                registry
                    .get_or_insert_with(&registered_name, || ChaosHandle { shared: make() })
                    .shared
            }
        };
        Ok(ChaosLayer {
            shared,
            injector: InjectError,
        })
    }
}
