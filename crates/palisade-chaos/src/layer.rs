//! `ChaosLayer` and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::ConfigError;
use tower_layer::Layer;

use crate::handle::{ChaosHandle, ChaosSettings, Shared};
use crate::inject::{ErrorWith, InjectError};
use crate::service::Chaos;

/// Applies [`Chaos`] to a service: injects latency, errors, aborts and
/// outages at rates a [`ChaosHandle`] can change at runtime.
///
/// Built with [`ChaosLayer::builder`]. The layer owns the state (settings,
/// decision sequence, counters) in an `Arc`: cloning the layer or a service
/// it built, or calling [`layer`](Layer::layer) many times, does not create
/// new state. Every service answers to the same handle and draws from the
/// same sequence.
///
/// `I` is the [`Injector`](crate::Injector) that shapes an injected failure:
/// [`InjectError`] by default.
#[derive(Clone)]
pub struct ChaosLayer<I = InjectError> {
    shared: Arc<Shared>,
    injector: I,
}

impl ChaosLayer {
    /// A builder for a chaos layer called `name` (labels metrics and logs).
    pub fn builder(name: impl Into<Arc<str>>) -> ChaosBuilder {
        ChaosBuilder {
            name: name.into(),
            seed: None,
            settings: ChaosSettings::default(),
        }
    }
}

impl<I> ChaosLayer<I> {
    /// The handle that switches this layer (and every clone and service of
    /// it) at runtime.
    #[must_use]
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The same layer (same state and handle) with another injector, for
    /// services whose failures are not `BoxError`: [`ErrorWith`], or
    /// `InjectStatus` with the `http` feature.
    pub fn with_injector<J>(self, injector: J) -> ChaosLayer<J> {
        ChaosLayer {
            shared: self.shared,
            injector,
        }
    }

    /// Shorthand for `with_injector(ErrorWith::new(make))`: injected
    /// failures are the error `make` builds.
    pub fn error_with<F>(self, make: F) -> ChaosLayer<ErrorWith<F>> {
        self.with_injector(ErrorWith::new(make))
    }
}

impl<S, I: Clone> Layer<S> for ChaosLayer<I> {
    type Service = Chaos<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::new(inner, Arc::clone(&self.shared), self.injector.clone())
    }
}

impl<I> fmt::Debug for ChaosLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("handle", &self.handle())
            .finish_non_exhaustive()
    }
}

/// Builds a [`ChaosLayer`]; every setting can be changed later through its
/// [`ChaosHandle`], and [`ChaosHandle::reset`] returns to what was built.
///
/// | setter | default |
/// |---|---|
/// | `enabled` | `true` |
/// | `seed` | random |
/// | `latency` / `latency_range`, `latency_rate` | none, 0 |
/// | `error_rate` | 0 |
/// | `abort_rate` | 0 |
/// | `outage` | `false` |
#[derive(Clone, Debug)]
pub struct ChaosBuilder {
    name: Arc<str>,
    seed: Option<u64>,
    settings: ChaosSettings,
}

impl ChaosBuilder {
    /// Seeds the decision sequence: the same seed and settings give the same
    /// decision for the n-th call. Without a seed, one is drawn at random.
    #[must_use]
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts enabled (the default) or disabled.
    #[must_use]
    pub const fn enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// Starts with the outage on: every call fails.
    #[must_use]
    pub const fn outage(mut self, on: bool) -> Self {
        self.settings.outage = on;
        self
    }

    /// Adds exactly `latency` to delayed calls.
    #[must_use]
    pub const fn latency(mut self, latency: Duration) -> Self {
        self.settings.latency_min = latency;
        self.settings.latency_max = latency;
        self
    }

    /// Adds a latency uniform in `[min, max]` to delayed calls.
    #[must_use]
    pub const fn latency_range(mut self, min: Duration, max: Duration) -> Self {
        self.settings.latency_min = min;
        self.settings.latency_max = max;
        self
    }

    /// The fraction of calls, in `[0, 1]`, that are delayed.
    #[must_use]
    pub const fn latency_rate(mut self, rate: f64) -> Self {
        self.settings.latency_rate = rate;
        self
    }

    /// The fraction of calls, in `[0, 1]`, failed with an injected error.
    #[must_use]
    pub const fn error_rate(mut self, rate: f64) -> Self {
        self.settings.error_rate = rate;
        self
    }

    /// The fraction of calls, in `[0, 1]`, that never answer.
    #[must_use]
    pub const fn abort_rate(mut self, rate: f64) -> Self {
        self.settings.abort_rate = rate;
        self
    }

    /// Starts from `settings` as a whole.
    #[must_use]
    pub const fn settings(mut self, settings: ChaosSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Builds the layer, with the default injector ([`InjectError`]).
    ///
    /// # Errors
    ///
    /// A rate outside `[0, 1]` (field `latency_rate`, `error_rate` or
    /// `abort_rate`) or a latency range whose minimum is above its maximum
    /// (field `latency`).
    pub fn build(self) -> Result<ChaosLayer, ConfigError> {
        self.settings.validate()?;
        let seed = self.seed.unwrap_or_else(|| fastrand::u64(..));
        Ok(ChaosLayer {
            shared: Arc::new(Shared::new(self.name, seed, self.settings)),
            injector: InjectError,
        })
    }
}
