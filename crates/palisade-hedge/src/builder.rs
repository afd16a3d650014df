//! [`HedgeBuilder`]: one setter per setting, validated by `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{ConfigError, ErrorsAsFailures, Listeners, Registry};
use palisade_retry::RetryBudget;
use palisade_retry::kind::Plain;

use crate::event::HedgeEvent;
use crate::handle::HedgeHandle;
use crate::layer::HedgeLayer;
use crate::settings::HedgeSettings;
use crate::shared::{Shared, Stats};

/// Builds a [`HedgeLayer`]; see [`HedgeSettings`] for every setting and its
/// default.
#[must_use]
pub struct HedgeBuilder<C, K> {
    name: Arc<str>,
    settings: HedgeSettings,
    budget: Option<Arc<RetryBudget>>,
    classifier: C,
    pub(crate) kind: K,
    listeners: Listeners<HedgeEvent>,
    registry: Option<Registry<HedgeHandle>>,
}

impl HedgeLayer {
    /// A builder for requests that are `Clone` (each request is cloned once,
    /// to keep a copy for its hedges), with every `Err` a failed attempt.
    pub fn builder(name: impl Into<Arc<str>>) -> HedgeBuilder<ErrorsAsFailures, Plain> {
        HedgeBuilder::new(name.into(), ErrorsAsFailures, Plain)
    }
}

impl<C, K: fmt::Debug> fmt::Debug for HedgeBuilder<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("shared_budget", &self.budget.is_some())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<C, K> HedgeBuilder<C, K> {
    pub(crate) fn new(name: Arc<str>, classifier: C, kind: K) -> Self {
        Self {
            name,
            settings: HedgeSettings::default(),
            budget: None,
            classifier,
            kind,
            listeners: Listeners::new(),
            registry: None,
        }
    }

    /// Replaces every setting with `settings` (from a config file).
    pub fn settings(mut self, settings: HedgeSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The latency percentile after which a request is hedged, in `(0, 100)`
    /// (default 95).
    pub const fn percentile(mut self, percentile: f64) -> Self {
        self.settings.percentile = percentile;
        self
    }

    /// How far back latencies are observed (default 10 s).
    pub const fn window(mut self, window: Duration) -> Self {
        self.settings.window = window;
        self
    }

    /// Answers needed in the window before the percentile is trusted
    /// (default 100).
    pub const fn min_samples(mut self, samples: u32) -> Self {
        self.settings.min_samples = samples;
        self
    }

    /// The delay used until the window holds `min_samples` answers (default:
    /// none, no hedging until then).
    pub const fn initial_delay(mut self, delay: Duration) -> Self {
        self.settings.initial_delay = Some(delay);
        self
    }

    /// The shortest hedge delay (default 1 ms).
    pub const fn min_delay(mut self, delay: Duration) -> Self {
        self.settings.min_delay = delay;
        self
    }

    /// The most extra attempts per request (default 1; 0 turns hedging off).
    pub const fn max_hedges(mut self, hedges: u32) -> Self {
        self.settings.max_hedges = hedges;
        self
    }

    /// Extra attempts allowed per request over `budget_ttl`, for the layer's
    /// own budget (default 0.05).
    pub const fn budget_ratio(mut self, ratio: f64) -> Self {
        self.settings.budget_ratio = ratio;
        self
    }

    /// Extra attempts allowed every second whatever the rate, for the
    /// layer's own budget (default 0).
    pub const fn min_hedges_per_sec(mut self, per_sec: u32) -> Self {
        self.settings.min_hedges_per_sec = per_sec;
        self
    }

    /// How long a request counts towards the layer's own budget (default
    /// 10 s).
    pub const fn budget_ttl(mut self, ttl: Duration) -> Self {
        self.settings.budget_ttl = ttl;
        self
    }

    /// Draws hedges from `budget`, shared with whatever else holds it (a
    /// retry layer's, so retries and hedges together stay within one share
    /// of extra load), instead of a budget of the layer's own.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Decides which answers count as answers: a failed attempt does not win
    /// the race (the others keep running) and its latency is not observed.
    /// Any [`Classify`](palisade_core::Classify) of the inner service's
    /// `Result<Response, Error>`.
    pub fn classifier<C2>(self, classifier: C2) -> HedgeBuilder<C2, K> {
        HedgeBuilder {
            name: self.name,
            settings: self.settings,
            budget: self.budget,
            classifier,
            kind: self.kind,
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// Calls `listener` with every [`HedgeEvent`]. A listener that panics is
    /// caught and logged.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&HedgeEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the layer in `registry` under its name. A layer built under
    /// a registered name shares that name's latency window, budget, counters
    /// and settings (the classifier and request kind are this builder's).
    pub fn registry(mut self, registry: &Registry<HedgeHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting (see
    /// [`HedgeSettings::validate`]), or `name` when it is empty.
    pub fn build(self) -> Result<HedgeLayer<C, K>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        let Self {
            name,
            settings,
            budget,
            classifier,
            kind,
            listeners,
            registry,
        } = self;
        let make = || -> Result<HedgeHandle, ConfigError> {
            let budget = match budget {
                Some(budget) => budget,
                None => Arc::new(
                    RetryBudget::builder()
                        .retry_ratio(settings.budget_ratio)
                        .min_retries_per_sec(settings.min_hedges_per_sec)
                        .ttl(settings.budget_ttl)
                        .build()?,
                ),
            };
            Ok(HedgeHandle {
                stats: Arc::new(Stats::new(Arc::clone(&name), settings, budget, listeners)),
            })
        };
        let handle = match registry {
            Some(registry) => match registry.get(&name) {
                Some(handle) => handle,
                None => {
                    let built = make()?;
                    registry.get_or_insert_with(&name, || built)
                }
            },
            None => make()?,
        };
        Ok(HedgeLayer {
            shared: Arc::new(palisade_core::stripe::Striped::new(Shared {
                stats: handle.stats,
                classifier,
                kind,
            })),
        })
    }
}
