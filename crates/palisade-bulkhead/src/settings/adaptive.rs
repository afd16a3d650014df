//! The settings of an adaptive limit: [`Aimd`], [`Gradient`] and
//! [`AdaptiveLimit`], the choice between them. Plain data; the algorithms
//! that use them are in [`limiter`](crate::limiter).

use std::time::Duration;

use palisade_core::ConfigError;

use super::MAX_LIMIT;

// ===== Aimd =====

/// Additive increase, multiplicative decrease.
///
/// Defaults: `initial_limit` 20, `min_limit` 1, `max_limit` 200,
/// `increase_by` 1, `decrease_factor` 0.9, `latency_threshold` 5 s (Netflix's
/// `AIMDLimit` defaults, except `min_limit`, which Netflix sets to 20 so that
/// the limit never shrinks below its start).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Aimd {
    pub(crate) initial_limit: usize,
    pub(crate) min_limit: usize,
    pub(crate) max_limit: usize,
    pub(crate) increase_by: usize,
    pub(crate) decrease_factor: f64,
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub(crate) latency_threshold: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

impl Aimd {
    /// AIMD with the defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 200,
            increase_by: 1,
            decrease_factor: 0.9,
            latency_threshold: Duration::from_secs(5),
        }
    }

    /// The limit to start from.
    #[must_use]
    pub const fn initial_limit(mut self, limit: usize) -> Self {
        self.initial_limit = limit;
        self
    }

    /// The limit never goes below this.
    #[must_use]
    pub const fn min_limit(mut self, limit: usize) -> Self {
        self.min_limit = limit;
        self
    }

    /// The limit never goes above this.
    #[must_use]
    pub const fn max_limit(mut self, limit: usize) -> Self {
        self.max_limit = limit;
        self
    }

    /// Added to the limit per fast success while the pool is at least half
    /// used.
    #[must_use]
    pub const fn increase_by(mut self, step: usize) -> Self {
        self.increase_by = step;
        self
    }

    /// The limit is multiplied by this on a failure or a slow call; in
    /// `(0, 1)`.
    #[must_use]
    pub const fn decrease_factor(mut self, factor: f64) -> Self {
        self.decrease_factor = factor;
        self
    }

    /// A call slower than this counts as a failure.
    #[must_use]
    pub const fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.latency_threshold = threshold;
        self
    }
}

// ===== Gradient =====

/// Netflix's `Gradient2Limit`: the limit follows the ratio of the long-run
/// average RTT to the current RTT.
///
/// Defaults: `initial_limit` 20, `min_limit` 1, `max_limit` 200, `smoothing`
/// 0.2, `rtt_tolerance` 1.5, `long_window` 600 samples, `queue_size` 4,
/// `decrease_factor` 0.9 (Netflix's defaults, except `min_limit`, 20 there,
/// and `decrease_factor`, which Gradient2 does not have: it ignores errors).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Gradient {
    pub(crate) initial_limit: usize,
    pub(crate) min_limit: usize,
    pub(crate) max_limit: usize,
    pub(crate) smoothing: f64,
    pub(crate) rtt_tolerance: f64,
    pub(crate) long_window: u32,
    pub(crate) queue_size: f64,
    pub(crate) decrease_factor: f64,
}

impl Default for Gradient {
    fn default() -> Self {
        Self::new()
    }
}

impl Gradient {
    /// The gradient limiter with the defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 200,
            smoothing: 0.2,
            rtt_tolerance: 1.5,
            long_window: 600,
            queue_size: 4.0,
            decrease_factor: 0.9,
        }
    }

    /// The limit to start from.
    #[must_use]
    pub const fn initial_limit(mut self, limit: usize) -> Self {
        self.initial_limit = limit;
        self
    }

    /// The limit never goes below this.
    #[must_use]
    pub const fn min_limit(mut self, limit: usize) -> Self {
        self.min_limit = limit;
        self
    }

    /// The limit never goes above this.
    #[must_use]
    pub const fn max_limit(mut self, limit: usize) -> Self {
        self.max_limit = limit;
        self
    }

    /// How much of each new target the limit moves towards, in `(0, 1]`.
    #[must_use]
    pub const fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How far above the long average an RTT may go before the limit
    /// shrinks (1.5: 50 % slower is still fine); at least 1.
    #[must_use]
    pub const fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.rtt_tolerance = tolerance;
        self
    }

    /// Samples in the long RTT average (its EWMA factor is `2 / (n + 1)`).
    #[must_use]
    pub const fn long_window(mut self, samples: u32) -> Self {
        self.long_window = samples;
        self
    }

    /// Headroom added to each target: how many calls may queue downstream
    /// while the limit probes upwards.
    #[must_use]
    pub const fn queue_size(mut self, size: f64) -> Self {
        self.queue_size = size;
        self
    }

    /// The limit is multiplied by this on a failure; in `(0, 1]` (1 ignores
    /// failures, as Gradient2 does).
    #[must_use]
    pub const fn decrease_factor(mut self, factor: f64) -> Self {
        self.decrease_factor = factor;
        self
    }
}

// ===== AdaptiveLimit =====

/// The configuration of an adaptive limit: [`Aimd`] or [`Gradient`].
///
/// With the `serde` feature it is a table naming its `algorithm` beside that
/// algorithm's settings (each defaulted when absent; an unknown key is
/// refused), as in the gateway's TOML:
///
/// ```toml
/// [upstreams.inventory.bulkhead.adaptive]
/// algorithm = "aimd"            # or "gradient"
/// min_limit = 5
/// max_limit = 50
/// latency_threshold = "250ms"
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct AdaptiveLimit(pub(crate) Algorithm);

#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "algorithm", rename_all = "snake_case")
)]
pub(crate) enum Algorithm {
    Aimd(Aimd),
    Gradient(Gradient),
}

impl From<Aimd> for AdaptiveLimit {
    fn from(aimd: Aimd) -> Self {
        Self(Algorithm::Aimd(aimd))
    }
}

impl From<Gradient> for AdaptiveLimit {
    fn from(gradient: Gradient) -> Self {
        Self(Algorithm::Gradient(gradient))
    }
}

fn bounds_check(initial: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if min == 0 {
        return Err(ConfigError::new("min_limit", "must be at least 1, got 0"));
    }
    if max > MAX_LIMIT {
        return Err(ConfigError::new(
            "max_limit",
            format!("must be at most {MAX_LIMIT}, got {max}"),
        ));
    }
    if min > max {
        return Err(ConfigError::new(
            "min_limit",
            format!("must not exceed max_limit ({max}), got {min}"),
        ));
    }
    if initial < min || initial > max {
        return Err(ConfigError::new(
            "initial_limit",
            format!("must be within min_limit..=max_limit ({min}..={max}), got {initial}"),
        ));
    }
    Ok(())
}

impl AdaptiveLimit {
    /// A short name for snapshots and logs: `aimd` or `gradient`.
    #[must_use]
    pub const fn algorithm(&self) -> &'static str {
        match self.0 {
            Algorithm::Aimd(_) => "aimd",
            Algorithm::Gradient(_) => "gradient",
        }
    }

    /// The `(min_limit, max_limit)` bounds.
    #[must_use]
    pub const fn bounds(&self) -> (usize, usize) {
        match &self.0 {
            Algorithm::Aimd(a) => (a.min_limit, a.max_limit),
            Algorithm::Gradient(g) => (g.min_limit, g.max_limit),
        }
    }

    /// The limit a new pool starts with.
    #[must_use]
    pub const fn initial_limit(&self) -> usize {
        match &self.0 {
            Algorithm::Aimd(a) => a.initial_limit,
            Algorithm::Gradient(g) => g.initial_limit,
        }
    }

    /// Checks every setting; the error names the offending setter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first invalid setting: `min_limit` of 0,
    /// `min_limit > max_limit`, `initial_limit` outside the bounds, a factor
    /// out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.0 {
            Algorithm::Aimd(a) => {
                bounds_check(a.initial_limit, a.min_limit, a.max_limit)?;
                if a.increase_by == 0 {
                    return Err(ConfigError::new("increase_by", "must be at least 1, got 0"));
                }
                if !(a.decrease_factor > 0.0 && a.decrease_factor < 1.0) {
                    return Err(ConfigError::new(
                        "decrease_factor",
                        format!("must be in (0, 1), got {}", a.decrease_factor),
                    ));
                }
                if a.latency_threshold.is_zero() {
                    return Err(ConfigError::new(
                        "latency_threshold",
                        "must be greater than zero",
                    ));
                }
            }
            Algorithm::Gradient(g) => {
                bounds_check(g.initial_limit, g.min_limit, g.max_limit)?;
                if !(g.smoothing > 0.0 && g.smoothing <= 1.0) {
                    return Err(ConfigError::new(
                        "smoothing",
                        format!("must be in (0, 1], got {}", g.smoothing),
                    ));
                }
                if !(g.rtt_tolerance >= 1.0 && g.rtt_tolerance.is_finite()) {
                    return Err(ConfigError::new(
                        "rtt_tolerance",
                        format!(
                            "must be a finite number of at least 1, got {}",
                            g.rtt_tolerance
                        ),
                    ));
                }
                if g.long_window == 0 {
                    return Err(ConfigError::new("long_window", "must be at least 1, got 0"));
                }
                if !(g.queue_size >= 0.0 && g.queue_size.is_finite()) {
                    return Err(ConfigError::new(
                        "queue_size",
                        format!(
                            "must be a finite number of at least 0, got {}",
                            g.queue_size
                        ),
                    ));
                }
                if !(g.decrease_factor > 0.0 && g.decrease_factor <= 1.0) {
                    return Err(ConfigError::new(
                        "decrease_factor",
                        format!("must be in (0, 1], got {}", g.decrease_factor),
                    ));
                }
            }
        }
        Ok(())
    }
}
