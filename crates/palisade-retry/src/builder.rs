//! [`RetryBuilder`]: one setter per setting, then `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::stripe::Striped;
use palisade_core::{ConfigError, ErrorsAsFailures, Listeners, Registry};

use crate::event::RetryEvent;
use crate::handle::RetryHandle;
use crate::kind::{Plain, Sealed};
use crate::layer::RetryLayer;
use crate::metrics::Metrics;
use crate::settings::RetrySettings;
use crate::shared::{Core, Shared};
use crate::state::backoff::{Backoff, Jitter};
use crate::state::budget::RetryBudget;
use crate::state::rng::JitterSource;

impl RetryLayer {
    /// A builder for requests that are `Clone`, with every `Err` retryable
    /// except rejections. See [`RetryBuilder`] for the settings and defaults.
    pub fn builder(name: impl Into<Arc<str>>) -> RetryBuilder {
        RetryBuilder::new(name.into(), ErrorsAsFailures, Plain)
    }
}

/// Builds a [`RetryLayer`]. Every setter is named after its field of
/// [`RetrySettings`] (the gateway's TOML keys use the same names), where the
/// defaults and bounds are listed; [`settings`](Self::settings) sets them all
/// at once. Nothing is checked until [`build`](Self::build), which names the
/// offending setting in its [`ConfigError`].
///
/// | setting | default |
/// |---|---|
/// | [`max_attempts`](Self::max_attempts) | 3 (the first attempt included) |
/// | [`backoff`](Self::backoff) | exponential: 50 ms, ×2, capped at 2 s |
/// | [`jitter`](Self::jitter) | [`Jitter::Full`] |
/// | [`jitter_seed`](Self::jitter_seed) | none (a per-thread generator) |
/// | [`attempt_timeout`](Self::attempt_timeout) | none |
/// | [`deadline`](Self::deadline) | none |
/// | budget: [`retry_ratio`](Self::retry_ratio), [`min_retries_per_sec`](Self::min_retries_per_sec), [`budget_ttl`](Self::budget_ttl) | 0.2, 10, 10 s (a budget of the layer's own) |
/// | [`classifier`](Self::classifier) | `Err` fails ([`ErrorsAsFailures`]); for HTTP, 429/502/503/504 and `Err` |
/// | [`retry_on_attempt_timeout`](Self::retry_on_attempt_timeout) | `true` |
///
/// Which budget retries draw from: of [`no_budget`](Self::no_budget) (none),
/// [`budget`](Self::budget) (one shared with others) and the budget setters
/// `retry_ratio`, `min_retries_per_sec` and `budget_ttl` (one of the layer's
/// own, the default), the last call wins. [`settings`](Self::settings) keeps
/// a shared budget unless `no_budget` is set.
#[must_use]
pub struct RetryBuilder<C = ErrorsAsFailures, K = Plain> {
    name: Arc<str>,
    pub(crate) settings: RetrySettings,
    shared_budget: Option<Arc<RetryBudget>>,
    classifier: C,
    pub(crate) kind: K,
    listeners: Listeners<RetryEvent>,
    registry: Option<Registry<RetryHandle>>,
}

impl<C, K: fmt::Debug> fmt::Debug for RetryBuilder<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("shared_budget", &self.shared_budget)
            .field("kind", &self.kind)
            .field("listeners", &self.listeners.len())
            .field("registry", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

impl<C, K> RetryBuilder<C, K> {
    pub(crate) fn new(name: Arc<str>, classifier: C, kind: K) -> Self {
        Self {
            name,
            settings: RetrySettings::default(),
            shared_budget: None,
            classifier,
            kind,
            listeners: Listeners::new(),
            registry: None,
        }
    }

    /// Every setting at once, replacing those set before (a budget given to
    /// [`budget`](Self::budget) is not a setting and stays, unless
    /// `settings.no_budget`). Checked by [`build`](Self::build).
    pub fn settings(mut self, settings: RetrySettings) -> Self {
        self.settings = settings;
        self
    }

    /// The most attempts one call may make, the first included (default 3).
    /// Must be at least 1; 1 turns retries off.
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts;
        self
    }

    /// How the delay before each retry grows (default: exponential from
    /// 50 ms, doubling, capped at 2 s).
    pub const fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// The jitter applied to fixed and exponential delays (default
    /// [`Jitter::Full`]). [`Jitter::None`] makes the schedule exact.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.settings.jitter = jitter;
        self
    }

    /// Draws jitter from a reproducible sequence seeded with `seed` instead
    /// of a per-thread generator: the same seed and the same order of
    /// retries give the same delays.
    pub const fn jitter_seed(mut self, seed: u64) -> Self {
        self.settings.jitter_seed = Some(seed);
        self
    }

    /// Cuts off each attempt after `timeout` with [`AttemptTimedOut`], which
    /// is retried as a failure unless
    /// [`retry_on_attempt_timeout(false)`](Self::retry_on_attempt_timeout)
    /// (default: none).
    /// Must be greater than zero and at most [`MAX_DURATION`](crate::MAX_DURATION).
    ///
    /// This timeout is part of the retry layer, so it sits *outside* every
    /// layer below it: a circuit breaker below sees an attempt it cuts off as
    /// a dropped call, which it does not count. Under a breaker, bound each
    /// attempt with a timeout layer *inside* the breaker (see the crate's
    /// Ordering section).
    ///
    /// [`AttemptTimedOut`]: crate::AttemptTimedOut
    pub const fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = Some(timeout);
        self
    }

    /// Bounds the whole call, every attempt and backoff included (default:
    /// none). No retry starts if its backoff would end past the deadline (the
    /// last outcome is returned); an attempt still in flight at the deadline
    /// is dropped and the call fails with [`DeadlineExceeded`]. Must be
    /// greater than zero and at most [`MAX_DURATION`](crate::MAX_DURATION).
    ///
    /// [`DeadlineExceeded`]: crate::DeadlineExceeded
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// The fraction of requests that may be retried, for the layer's own
    /// budget (default 0.2): finite, in `[0, 1000]`.
    pub fn retry_ratio(mut self, ratio: f64) -> Self {
        self.settings.retry_ratio = ratio;
        self.own_budget();
        self
    }

    /// Retries allowed every second whatever the request rate, for the
    /// layer's own budget (default 10).
    pub fn min_retries_per_sec(mut self, per_sec: u32) -> Self {
        self.settings.min_retries_per_sec = per_sec;
        self.own_budget();
        self
    }

    /// How long a request counts towards the layer's own budget (default
    /// 10 s): whole seconds from 1 to 60.
    pub fn budget_ttl(mut self, ttl: Duration) -> Self {
        self.settings.budget_ttl = ttl;
        self.own_budget();
        self
    }

    /// A budget setter asks for a budget of the layer's own.
    fn own_budget(&mut self) {
        self.settings.no_budget = false;
        self.shared_budget = None;
    }

    /// Draws retries from `budget`, shared with whatever else holds it,
    /// instead of a budget of the layer's own.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.shared_budget = Some(budget);
        self.settings.no_budget = false;
        self
    }

    /// Retries without a budget: only `max_attempts` and the deadline bound
    /// them. A retry storm waiting to happen; meant for tests and for callers
    /// that budget retries themselves.
    pub const fn no_budget(mut self) -> Self {
        self.settings.no_budget = true;
        self
    }

    /// Decides which outcomes are failures worth retrying: any
    /// [`Classify`](palisade_core::Classify) of the inner service's own
    /// `Result<S::Response, S::Error>` (before the layer boxes the error),
    /// including a closure `Fn(&Result<Res, E>) -> Outcome`. The circuit
    /// breaker and the bulkhead classify the same `Result`, so one classifier
    /// value serves all three over the same service. Rejections (an open
    /// breaker, a full bulkhead) are never retried, whatever the classifier
    /// says. An attempt cut off by [`attempt_timeout`](Self::attempt_timeout)
    /// is the layer's own error, not the inner service's: see
    /// [`retry_on_attempt_timeout`](Self::retry_on_attempt_timeout). It runs
    /// once per completed attempt: keep it cheap and lock-free.
    pub fn classifier<C2>(self, classifier: C2) -> RetryBuilder<C2, K> {
        RetryBuilder {
            name: self.name,
            settings: self.settings,
            shared_budget: self.shared_budget,
            classifier,
            kind: self.kind,
            listeners: self.listeners,
            registry: self.registry,
        }
    }

    /// Whether an attempt cut off by
    /// [`attempt_timeout`](Self::attempt_timeout) is retried (default
    /// `true`: it counts as a failure). `false` returns its
    /// [`AttemptTimedOut`](crate::AttemptTimedOut) at once, counted as an
    /// outcome that is not a failure, as one the classifier ignores.
    pub const fn retry_on_attempt_timeout(mut self, retry: bool) -> Self {
        self.settings.retry_on_attempt_timeout = retry;
        self
    }

    /// Calls `listener` with every [`RetryEvent`]. A listener that panics is
    /// caught and logged.
    pub fn on_event<F>(mut self, listener: F) -> Self
    where
        F: Fn(&RetryEvent) + Send + Sync + 'static,
    {
        self.listeners.push(listener);
        self
    }

    /// Registers the layer's instance in `registry` under its name. If one of
    /// that name is already registered, [`build`](Self::build) (which still
    /// checks this builder's settings) returns a layer over it: its settings,
    /// budget, jitter source and listeners, with this builder's classifier
    /// and request kind. One retry policy and one budget per downstream,
    /// however many times the stack is built.
    ///
    /// ```
    /// use palisade_retry::{Registry, RetryHandle, RetryLayer};
    ///
    /// let registry = Registry::<RetryHandle>::new();
    /// let a = RetryLayer::builder("inventory").registry(&registry).build()?;
    /// let b = RetryLayer::builder("inventory").max_attempts(5).registry(&registry).build()?;
    /// assert!(a.handle().same_as(&b.handle()));
    /// assert_eq!(b.max_attempts(), 3, "the registered instance's settings");
    /// assert!(std::sync::Arc::ptr_eq(a.budget().unwrap(), b.budget().unwrap()));
    /// assert_eq!(registry.names(), vec!["inventory".to_owned()]);
    /// # Ok::<(), palisade_core::ConfigError>(())
    /// ```
    pub fn registry(mut self, registry: &Registry<RetryHandle>) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Checks every setting and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose `field` is the setting's name: an empty
    /// `name`, or any setting [`RetrySettings::validate`] refuses.
    pub fn build(self) -> Result<RetryLayer<C, K>, ConfigError>
    where
        K: Sealed,
    {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.settings.validate()?;
        self.build_unbounded()
    }

    /// Builds without the checks of durations (the budget's settings are
    /// still checked): the response future must cope with any duration, and
    /// tests prove it with this.
    pub(crate) fn build_unbounded(self) -> Result<RetryLayer<C, K>, ConfigError>
    where
        K: Sealed,
    {
        self.settings.validate_budget()?;
        let Self {
            name,
            settings,
            shared_budget,
            classifier,
            mut kind,
            listeners,
            registry,
        } = self;
        let registered = registry.as_ref().and_then(|r| r.get(&name));
        let core = match registered {
            Some(handle) => Arc::clone(handle.core()),
            None => {
                let core = Arc::new(core(name, settings, shared_budget, listeners)?);
                match registry {
                    // A build under the same name may have won the race: use
                    // the instance that is registered.
                    Some(registry) => Arc::clone(
                        registry
                            .get_or_insert_with(&core.name.clone(), || RetryHandle::new(core))
                            .core(),
                    ),
                    None => core,
                }
            }
        };
        kind.configure(&core.name, &core.settings)?;
        let shared = Shared::new(core, classifier, kind);
        Ok(RetryLayer {
            handles: Arc::new(Striped::new(shared)),
        })
    }
}

/// The instance `settings` (validated) describe.
fn core(
    name: Arc<str>,
    mut settings: RetrySettings,
    shared_budget: Option<Arc<RetryBudget>>,
    listeners: Listeners<RetryEvent>,
) -> Result<Core, ConfigError> {
    let budget = if settings.no_budget {
        None
    } else if let Some(budget) = shared_budget {
        // The settings in effect are the shared budget's.
        settings.retry_ratio = budget.retry_ratio();
        settings.min_retries_per_sec =
            u32::try_from(budget.min_retries_per_sec()).unwrap_or(u32::MAX);
        settings.budget_ttl = budget.ttl();
        Some(budget)
    } else {
        let own = RetryBudget::builder()
            .retry_ratio(settings.retry_ratio)
            .min_retries_per_sec(settings.min_retries_per_sec)
            .ttl(settings.budget_ttl)
            // Name the retry builder's setter, not the budget builder's.
            .build()
            .map_err(|e| match e.field() {
                "ttl" => ConfigError::new("budget_ttl", e.reason().to_owned()),
                _ => e,
            })?;
        Some(Arc::new(own))
    };
    let rng = settings
        .jitter_seed
        .map_or(JitterSource::Thread, JitterSource::seeded);
    let metrics = Metrics::new(&name);
    Ok(Core {
        name,
        settings,
        budget,
        rng,
        metrics,
        listeners,
    })
}
