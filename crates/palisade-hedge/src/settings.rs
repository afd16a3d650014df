//! [`HedgeSettings`]: every setting of a hedging layer, as plain data.

use std::time::Duration;

use palisade_core::ConfigError;

/// The most hedges one request may send.
pub const MAX_HEDGES: u32 = 10;

/// The longest duration a setting accepts: a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The settings of a [`HedgeLayer`](crate::HedgeLayer). The builder's
/// setters and the gateway's TOML keys have these names; durations are
/// strings in TOML (`"10s"`, `"1ms"`).
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `percentile` | 95 | hedge a request still unanswered after this percentile of observed latency |
/// | `window` | 10 s | how far back latencies are observed |
/// | `min_samples` | 100 | fewer answers than this in the window: the percentile is not trusted, no hedging (unless `initial_delay`) |
/// | `initial_delay` | none | the delay used until `min_samples` answers are in |
/// | `min_delay` | 1 ms | the shortest hedge delay, whatever the percentile |
/// | `max_hedges` | 1 | the most extra attempts per request (0 turns hedging off) |
/// | `budget_ratio` | 0.05 | extra attempts allowed per request over `budget_ttl` |
/// | `min_hedges_per_sec` | 0 | extra attempts allowed every second whatever the rate |
/// | `budget_ttl` | 10 s | how long a request counts towards the budget |
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct HedgeSettings {
    /// The latency percentile after which a request still unanswered is
    /// hedged, in `(0, 100)` (default 95). With `p`, about `100 − p` % of
    /// requests would be hedged; the budget caps it.
    pub percentile: f64,
    /// How far back answers' latencies are observed (default 10 s; from
    /// 100 ms to an hour). The window moves in quarters: it holds between
    /// three and four quarters of the most recent answers.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// The answers needed in the window before the percentile is trusted
    /// (default 100; at least 1).
    pub min_samples: u32,
    /// The delay used while the window holds fewer than `min_samples`
    /// answers (default: none, no hedging until then).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub initial_delay: Option<Duration>,
    /// The shortest hedge delay, whatever the percentile (default 1 ms).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub min_delay: Duration,
    /// The most extra attempts one request may send (default 1, at most
    /// [`MAX_HEDGES`]; 0 turns hedging off). Each one waits the delay after
    /// the one before.
    pub max_hedges: u32,
    /// Extra attempts allowed per request, over `budget_ttl` (default 0.05:
    /// at most 5 % more load). Finite, in `[0, 1000]`.
    pub budget_ratio: f64,
    /// Extra attempts allowed every second whatever the request rate
    /// (default 0).
    pub min_hedges_per_sec: u32,
    /// How long a request counts towards the budget (default 10 s; whole
    /// seconds from 1 to 60).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub budget_ttl: Duration,
}

impl Default for HedgeSettings {
    fn default() -> Self {
        Self {
            percentile: 95.0,
            window: Duration::from_secs(10),
            min_samples: 100,
            initial_delay: None,
            min_delay: Duration::from_millis(1),
            max_hedges: 1,
            budget_ratio: 0.05,
            min_hedges_per_sec: 0,
            budget_ttl: Duration::from_secs(10),
        }
    }
}

impl HedgeSettings {
    /// Checks every setting, without side effects (the budget's settings
    /// included).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.percentile.is_finite() && self.percentile > 0.0 && self.percentile < 100.0) {
            return Err(ConfigError::new(
                "percentile",
                format!("must be in (0, 100), got {}", self.percentile),
            ));
        }
        if self.window < Duration::from_millis(100) || self.window > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "window",
                format!("must be from 100ms to 1h, got {:?}", self.window),
            ));
        }
        if self.min_samples == 0 {
            return Err(ConfigError::new("min_samples", "must be at least 1, got 0"));
        }
        if let Some(d) = self.initial_delay
            && d > MAX_DURATION
        {
            return Err(ConfigError::new(
                "initial_delay",
                format!("must be at most a year, got {d:?}"),
            ));
        }
        if self.min_delay > MAX_DURATION {
            return Err(ConfigError::new(
                "min_delay",
                format!("must be at most a year, got {:?}", self.min_delay),
            ));
        }
        if self.max_hedges > MAX_HEDGES {
            return Err(ConfigError::new(
                "max_hedges",
                format!("must be at most {MAX_HEDGES}, got {}", self.max_hedges),
            ));
        }
        // The budget's own rules (`RetryBudgetBuilder::build` applies the
        // same), checked here so that validating builds nothing.
        if !(self.budget_ratio.is_finite() && (0.0..=1000.0).contains(&self.budget_ratio)) {
            return Err(ConfigError::new(
                "budget_ratio",
                format!(
                    "must be a finite number in [0, 1000], got {}",
                    self.budget_ratio
                ),
            ));
        }
        if self.budget_ttl.subsec_nanos() != 0 || !(1..=60).contains(&self.budget_ttl.as_secs()) {
            return Err(ConfigError::new(
                "budget_ttl",
                format!(
                    "must be a whole number of seconds from 1 to 60, got {:?}",
                    self.budget_ttl
                ),
            ));
        }
        Ok(())
    }
}
