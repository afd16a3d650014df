//! `RetryLayer`, its builder, and the state shared by every service it builds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::stripe::Striped;
use palisade_core::{ConfigError, ErrorsAsFailures, Listeners};
use tower_layer::Layer;

use crate::backoff::{Backoff, Jitter};
use crate::budget::{RetryBudget, RetryBudgetBuilder};
use crate::event::RetryEvent;
use crate::kind::{Plain, Sealed};
use crate::metrics::Metrics;
use crate::rng::JitterSource;
use crate::service::Retry;

/// The state one layer owns and shares with every service it builds, every
/// clone of them, and every response future that needs to retry.
pub(crate) struct Shared<C, K> {
    pub(crate) name: Arc<str>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) rng: JitterSource,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) classifier: C,
    pub(crate) retry_on_attempt_timeout: bool,
    pub(crate) kind: K,
    pub(crate) metrics: Metrics,
    pub(crate) listeners: Listeners<RetryEvent>,
}

/// The longest duration any setting accepts: one year (365 days).
///
/// A longer wait, timeout or deadline means "never", and an instant that far
/// ahead may not be representable on the platform's clock. With every setting
/// bounded, a retry's wake-up time is always representable; should one not be
/// anyway, the call gives up and returns the last outcome rather than retrying
/// at once.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The layer's state and the references calls take to it: a call in flight
/// keeps the state alive through the stripe of the thread it starts on
/// ([`palisade_core::stripe`]), so calls on different cores do not bounce one
/// reference count.
pub(crate) type Handles<C, K> = Striped<Shared<C, K>>;

impl<C, K> Shared<C, K> {
    /// `true` when an attempt needs the clock: a deadline or a per-attempt
    /// timeout is set.
    pub(crate) const fn timed(&self) -> bool {
        self.deadline.is_some() || self.attempt_timeout.is_some()
    }
}

impl<C, K: fmt::Debug> fmt::Debug for Shared<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("kind", &self.kind)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// Retries failed calls to the services it wraps: backoff with jitter, a
/// shared retry budget, an overall deadline and per-attempt timeouts.
///
/// Build one with [`RetryLayer::builder`] (requests that are `Clone`) or
/// `RetryLayer::http_builder` (feature `http`, `http::Request<B>`). The
/// layer owns its state (the budget, the jitter source, the metric handles):
/// cloning the layer, or a service it built, does not create new state, and
/// every service the layer builds shares it.
pub struct RetryLayer<C = ErrorsAsFailures, K = Plain> {
    pub(crate) handles: Arc<Handles<C, K>>,
}

impl<C, K> Clone for RetryLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            handles: Arc::clone(&self.handles),
        }
    }
}

impl<C, K: fmt::Debug> fmt::Debug for RetryLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RetryLayer")
            .field(self.handles.get())
            .finish()
    }
}

impl RetryLayer {
    /// A builder for requests that are `Clone`, with every `Err` retryable
    /// except rejections. See [`RetryBuilder`] for the settings and defaults.
    pub fn builder(name: impl Into<Arc<str>>) -> RetryBuilder {
        RetryBuilder::new(name.into(), ErrorsAsFailures, Plain)
    }
}

impl<C, K> RetryLayer<C, K> {
    /// The layer's name: the `name` label of its metrics and the `name` field
    /// of its events.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.handles.name
    }

    /// The budget retries draw from, if any: share it with another layer
    /// (hedging, another route to the same downstream) through
    /// [`RetryBuilder::budget`].
    #[must_use]
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.handles.budget.as_ref()
    }

    /// The maximum number of attempts per call, the first included.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.handles.max_attempts
    }
}

impl<S, C, K> Layer<S> for RetryLayer<C, K> {
    type Service = Retry<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, Arc::clone(&self.handles))
    }
}

// ===== builder =====

/// Refuses a zero duration or one above [`MAX_DURATION`].
fn positive_and_bounded(field: &'static str, d: Option<Duration>) -> Result<(), ConfigError> {
    match d {
        Some(d) if d.is_zero() => Err(ConfigError::new(field, "must be greater than zero, got 0s")),
        Some(d) if d > MAX_DURATION => Err(ConfigError::new(
            field,
            format!("must be at most one year ({MAX_DURATION:?}), got {d:?}"),
        )),
        _ => Ok(()),
    }
}

#[derive(Clone, Debug)]
enum BudgetChoice {
    Own(RetryBudgetBuilder),
    Shared(Arc<RetryBudget>),
    None,
}

/// Builds a [`RetryLayer`]. Every setting is checked by [`build`](Self::build),
/// which names the offending setter in its [`ConfigError`].
///
/// | setting | default |
/// |---|---|
/// | [`max_attempts`](Self::max_attempts) | 3 (the first attempt included) |
/// | [`backoff`](Self::backoff) | exponential: 50 ms, ×2, capped at 2 s |
/// | [`jitter`](Self::jitter) | [`Jitter::Full`] |
/// | [`attempt_timeout`](Self::attempt_timeout) | none |
/// | [`deadline`](Self::deadline) | none |
/// | budget: [`retry_ratio`](Self::retry_ratio), [`min_retries_per_sec`](Self::min_retries_per_sec), [`budget_ttl`](Self::budget_ttl) | 0.2, 10, 10 s (a budget of the layer's own) |
/// | [`classifier`](Self::classifier) | `Err` fails ([`ErrorsAsFailures`]); for HTTP, 429/502/503/504 and `Err` |
/// | [`retry_on_attempt_timeout`](Self::retry_on_attempt_timeout) | `true` |
#[must_use]
pub struct RetryBuilder<C = ErrorsAsFailures, K = Plain> {
    name: Arc<str>,
    max_attempts: u32,
    backoff: Backoff,
    jitter: Jitter,
    seed: Option<u64>,
    attempt_timeout: Option<Duration>,
    deadline: Option<Duration>,
    budget: BudgetChoice,
    classifier: C,
    retry_on_attempt_timeout: bool,
    pub(crate) kind: K,
    listeners: Listeners<RetryEvent>,
}

impl<C, K: fmt::Debug> fmt::Debug for RetryBuilder<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("seed", &self.seed)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("retry_on_attempt_timeout", &self.retry_on_attempt_timeout)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<C, K> RetryBuilder<C, K> {
    pub(crate) fn new(name: Arc<str>, classifier: C, kind: K) -> Self {
        Self {
            name,
            max_attempts: 3,
            backoff: Backoff::default(),
            jitter: Jitter::Full,
            seed: None,
            attempt_timeout: None,
            deadline: None,
            budget: BudgetChoice::Own(RetryBudgetBuilder::default()),
            classifier,
            retry_on_attempt_timeout: true,
            kind,
            listeners: Listeners::new(),
        }
    }

    /// The most attempts one call may make, the first included (default 3).
    /// Must be at least 1; 1 turns retries off.
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How the delay before each retry grows (default: exponential from
    /// 50 ms, doubling, capped at 2 s).
    pub const fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The jitter applied to fixed and exponential delays (default
    /// [`Jitter::Full`]). [`Jitter::None`] makes the schedule exact.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Draws jitter from a reproducible sequence seeded with `seed` instead
    /// of a per-thread generator: the same seed and the same order of
    /// retries give the same delays.
    pub const fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Cuts off each attempt after `timeout` with [`AttemptTimedOut`], which
    /// is retried as a failure unless
    /// [`retry_on_attempt_timeout(false)`](Self::retry_on_attempt_timeout)
    /// (default: none).
    /// Must be greater than zero and at most [`MAX_DURATION`].
    ///
    /// This timeout is part of the retry layer, so it sits *outside* every
    /// layer below it: a circuit breaker below sees an attempt it cuts off as
    /// a dropped call, which it does not count. Under a breaker, bound each
    /// attempt with a timeout layer *inside* the breaker (see the crate's
    /// Ordering section).
    ///
    /// [`AttemptTimedOut`]: crate::AttemptTimedOut
    pub const fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Bounds the whole call, every attempt and backoff included (default:
    /// none). No retry starts if its backoff would end past the deadline (the
    /// last outcome is returned); an attempt still in flight at the deadline
    /// is dropped and the call fails with [`DeadlineExceeded`]. Must be
    /// greater than zero and at most [`MAX_DURATION`].
    ///
    /// [`DeadlineExceeded`]: crate::DeadlineExceeded
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The fraction of requests that may be retried, for the layer's own
    /// budget (default 0.2): finite, in `[0, 1000]`.
    pub fn retry_ratio(mut self, ratio: f64) -> Self {
        self.budget = BudgetChoice::Own(self.own_budget().retry_ratio(ratio));
        self
    }

    /// Retries allowed every second whatever the request rate, for the
    /// layer's own budget (default 10).
    pub fn min_retries_per_sec(mut self, per_sec: u32) -> Self {
        self.budget = BudgetChoice::Own(self.own_budget().min_retries_per_sec(per_sec));
        self
    }

    /// How long a request counts towards the layer's own budget (default
    /// 10 s): whole seconds from 1 to 60.
    pub fn budget_ttl(mut self, ttl: Duration) -> Self {
        self.budget = BudgetChoice::Own(self.own_budget().ttl(ttl));
        self
    }

    /// Draws retries from `budget`, shared with whatever else holds it,
    /// instead of a budget of the layer's own.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// Retries without a budget: only `max_attempts` and the deadline bound
    /// them. A retry storm waiting to happen; meant for tests and for callers
    /// that budget retries themselves.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::None;
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
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            jitter: self.jitter,
            seed: self.seed,
            attempt_timeout: self.attempt_timeout,
            deadline: self.deadline,
            budget: self.budget,
            classifier,
            retry_on_attempt_timeout: self.retry_on_attempt_timeout,
            kind: self.kind,
            listeners: self.listeners,
        }
    }

    /// Whether an attempt cut off by
    /// [`attempt_timeout`](Self::attempt_timeout) is retried (default
    /// `true`: it counts as a failure). `false` returns its
    /// [`AttemptTimedOut`](crate::AttemptTimedOut) at once, counted as an
    /// outcome that is not a failure, as one the classifier ignores.
    pub const fn retry_on_attempt_timeout(mut self, retry: bool) -> Self {
        self.retry_on_attempt_timeout = retry;
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

    fn own_budget(&self) -> RetryBudgetBuilder {
        match &self.budget {
            BudgetChoice::Own(builder) => builder.clone(),
            BudgetChoice::Shared(_) | BudgetChoice::None => RetryBudgetBuilder::default(),
        }
    }

    /// Checks every setting and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose `field` is the setter's name: `max_attempts`
    /// below 1, an invalid `backoff` (multiplier below 1 or not finite, base
    /// above cap, zero decorrelated base, a duration above [`MAX_DURATION`]),
    /// a zero `attempt_timeout` or `deadline` or one above [`MAX_DURATION`],
    /// `retry_ratio` outside `[0, 1000]`, `budget_ttl` not whole seconds in
    /// `1..=60`, and for HTTP, `max_retry_after` above [`MAX_DURATION`].
    pub fn build(self) -> Result<RetryLayer<C, K>, ConfigError>
    where
        K: Sealed,
    {
        if self.max_attempts < 1 {
            return Err(ConfigError::new(
                "max_attempts",
                "must be at least 1 (the first attempt counts), got 0",
            ));
        }
        self.backoff.validate("backoff")?;
        positive_and_bounded("attempt_timeout", self.attempt_timeout)?;
        positive_and_bounded("deadline", self.deadline)?;
        self.kind.validate()?;
        self.build_unbounded()
    }

    /// Builds without the checks of durations (the budget's settings are
    /// still checked): the response future must cope with any duration, and
    /// tests prove it with this.
    pub(crate) fn build_unbounded(self) -> Result<RetryLayer<C, K>, ConfigError> {
        let budget = match self.budget {
            BudgetChoice::Own(builder) => {
                // Name the retry builder's setters, not the budget builder's.
                builder.validate_as("retry_ratio", "budget_ttl")?;
                Some(Arc::new(builder.build()?))
            }
            BudgetChoice::Shared(budget) => Some(budget),
            BudgetChoice::None => None,
        };
        let rng = self.seed.map_or(JitterSource::Thread, JitterSource::seeded);
        let metrics = Metrics::new(&self.name);
        let handles = Arc::new(Striped::new(Shared {
            name: self.name,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            jitter: self.jitter,
            rng,
            attempt_timeout: self.attempt_timeout,
            deadline: self.deadline,
            budget,
            classifier: self.classifier,
            retry_on_attempt_timeout: self.retry_on_attempt_timeout,
            kind: self.kind,
            metrics,
            listeners: self.listeners,
        }));
        Ok(RetryLayer { handles })
    }
}
