//! [`RetrySettings`]: every setting of a retry layer that is plain data, its
//! default and its bounds.
//!
//! The builder's setters, the gateway's TOML keys and the handle's snapshot
//! use these field names. With the `serde` feature the settings
//! (de)serialize, unknown keys are refused, and durations are strings
//! (`"250ms"`, `"2s"`, `"1m"`).
//!
//! What is not plain data stays on the builder: the classifier, listeners, a
//! budget shared with other layers ([`RetryBuilder::budget`]), a registry,
//! and for HTTP the wall clock.
//!
//! [`RetryBuilder::budget`]: crate::RetryBuilder::budget

use std::time::Duration;

use palisade_core::ConfigError;

use crate::state::backoff::{Backoff, Jitter};
use crate::state::budget::{validate_ratio, validate_ttl};

/// The longest duration any setting accepts: one year (365 days).
///
/// A longer wait, timeout or deadline means "never", and an instant that far
/// ahead may not be representable on the platform's clock. With every setting
/// bounded, a retry's wake-up time is always representable; should one not be
/// anyway, the call gives up and returns the last outcome rather than retrying
/// at once.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Every setting of a retry layer that is plain data. `Default` gives the
/// documented defaults; [`validate`](Self::validate) checks the bounds.
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`max_attempts`](Self::max_attempts) | 3 | ≥ 1 (1 turns retries off) |
/// | [`backoff`](Self::backoff) | exponential: 50 ms, ×2, capped at 2 s | see [`Backoff`] |
/// | [`jitter`](Self::jitter) | [`Jitter::Full`] | |
/// | [`jitter_seed`](Self::jitter_seed) | none (a per-thread generator) | |
/// | [`attempt_timeout`](Self::attempt_timeout) | none | > 0, ≤ 1 year |
/// | [`deadline`](Self::deadline) | none | > 0, ≤ 1 year |
/// | [`retry_on_attempt_timeout`](Self::retry_on_attempt_timeout) | `true` | |
/// | [`retry_ratio`](Self::retry_ratio) | 0.2 | finite, in `[0, 1000]` |
/// | [`min_retries_per_sec`](Self::min_retries_per_sec) | 10 | |
/// | [`budget_ttl`](Self::budget_ttl) | 10 s | whole seconds, 1 to 60 |
/// | [`no_budget`](Self::no_budget) | `false` | |
/// | `max_body_bytes` (`http`) | 64 KiB | |
/// | `retry_non_idempotent` (`http`) | `false` | |
/// | `idempotency_key_header` (`http`) | `idempotency-key` | a header name |
/// | `attempt_header` (`http`) | none | a header name |
/// | `honor_retry_after` (`http`) | `true` | |
/// | `max_retry_after` (`http`) | 10 s | ≤ 1 year |
///
/// ```
/// use palisade_retry::{RetryLayer, RetrySettings};
/// use std::time::Duration;
///
/// let settings = RetrySettings {
///     max_attempts: 4,
///     deadline: Some(Duration::from_secs(2)),
///     ..RetrySettings::default()
/// };
/// assert!(settings.validate().is_ok());
/// let layer = RetryLayer::builder("inventory").settings(settings.clone()).build()?;
/// assert_eq!(layer.handle().settings(), &settings);
///
/// let bad = RetrySettings { max_attempts: 0, ..RetrySettings::default() };
/// assert_eq!(bad.validate().unwrap_err().field(), "max_attempts");
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RetrySettings {
    /// The most attempts one call may make, the first included. At least 1;
    /// 1 turns retries off.
    pub max_attempts: u32,
    /// How the delay before each retry grows.
    pub backoff: Backoff,
    /// The jitter applied to fixed and exponential delays.
    pub jitter: Jitter,
    /// Draws jitter from a reproducible sequence seeded with this value
    /// instead of a per-thread generator: the same seed and the same order
    /// of retries give the same delays.
    pub jitter_seed: Option<u64>,
    /// Cuts off each attempt after this long with
    /// [`AttemptTimedOut`](crate::AttemptTimedOut). Part of the retry layer,
    /// so *outside* every layer below it: see
    /// [`RetryBuilder::attempt_timeout`](crate::RetryBuilder::attempt_timeout).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub attempt_timeout: Option<Duration>,
    /// Bounds the whole call, every attempt and backoff included.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub deadline: Option<Duration>,
    /// Whether an attempt cut off by `attempt_timeout` is retried (as a
    /// failure) or returned at once.
    pub retry_on_attempt_timeout: bool,
    /// The fraction of requests that may be retried, for the layer's own
    /// budget.
    pub retry_ratio: f64,
    /// Retries allowed every second whatever the request rate, for the
    /// layer's own budget.
    pub min_retries_per_sec: u32,
    /// How long a request counts towards the layer's own budget.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub budget_ttl: Duration,
    /// Retries without a budget: only `max_attempts` and the deadline bound
    /// them. A retry storm waiting to happen; meant for tests and for callers
    /// that budget retries themselves.
    pub no_budget: bool,
    /// HTTP: the largest request body buffered for replay. A body whose size
    /// hint allows more is sent once and not retried; so is one that turns
    /// out longer than this.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub max_body_bytes: usize,
    /// HTTP: also retries POST and PATCH requests, but only those carrying
    /// the idempotency-key header.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub retry_non_idempotent: bool,
    /// HTTP: the header that makes a POST or PATCH retryable when
    /// `retry_non_idempotent` is on.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub idempotency_key_header: String,
    /// HTTP: a header set to the attempt number (`1`, `2`, ...) on every
    /// attempt, as Envoy's `x-envoy-attempt-count`.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub attempt_header: Option<String>,
    /// HTTP: whether a 429's or 503's `Retry-After` replaces the backoff.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub honor_retry_after: bool,
    /// HTTP: the longest `Retry-After` waited for; a longer one returns the
    /// response at once.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_retry_after: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::default(),
            jitter: Jitter::Full,
            jitter_seed: None,
            attempt_timeout: None,
            deadline: None,
            retry_on_attempt_timeout: true,
            retry_ratio: 0.2,
            min_retries_per_sec: 10,
            budget_ttl: Duration::from_secs(10),
            no_budget: false,
            #[cfg(feature = "http")]
            max_body_bytes: 64 * 1024,
            #[cfg(feature = "http")]
            retry_non_idempotent: false,
            #[cfg(feature = "http")]
            idempotency_key_header: "idempotency-key".to_owned(),
            #[cfg(feature = "http")]
            attempt_header: None,
            #[cfg(feature = "http")]
            honor_retry_after: true,
            #[cfg(feature = "http")]
            max_retry_after: Duration::from_secs(10),
        }
    }
}

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

impl RetrySettings {
    /// Checks every setting; has no side effect (nothing is built, no metric
    /// is registered).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting: `max_attempts`
    /// below 1, an invalid `backoff` (multiplier below 1 or not finite, base
    /// above cap, zero decorrelated base, a duration above [`MAX_DURATION`]),
    /// a zero `attempt_timeout` or `deadline` or one above [`MAX_DURATION`],
    /// `retry_ratio` outside `[0, 1000]`, `budget_ttl` not whole seconds in
    /// `1..=60`, and for HTTP, `max_retry_after` above [`MAX_DURATION`] or an
    /// `idempotency_key_header` or `attempt_header` that is not a header name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts < 1 {
            return Err(ConfigError::new(
                "max_attempts",
                "must be at least 1 (the first attempt counts), got 0",
            ));
        }
        self.backoff.validate("backoff", MAX_DURATION)?;
        positive_and_bounded("attempt_timeout", self.attempt_timeout)?;
        positive_and_bounded("deadline", self.deadline)?;
        #[cfg(feature = "http")]
        self.validate_http()?;
        self.validate_budget()
    }

    /// The checks of the budget's settings alone.
    pub(crate) fn validate_budget(&self) -> Result<(), ConfigError> {
        validate_ratio("retry_ratio", self.retry_ratio)?;
        validate_ttl("budget_ttl", self.budget_ttl)
    }

    #[cfg(feature = "http")]
    fn validate_http(&self) -> Result<(), ConfigError> {
        if self.max_retry_after > MAX_DURATION {
            return Err(ConfigError::new(
                "max_retry_after",
                format!(
                    "must be at most one year ({MAX_DURATION:?}), got {:?}",
                    self.max_retry_after
                ),
            ));
        }
        header_name("idempotency_key_header", &self.idempotency_key_header)?;
        if let Some(name) = &self.attempt_header {
            header_name("attempt_header", name)?;
        }
        Ok(())
    }
}

/// `name` as a header name, or a [`ConfigError`] on `field`.
#[cfg(feature = "http")]
pub(crate) fn header_name(
    field: &'static str,
    name: &str,
) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::new(field, format!("`{name}` is not a header name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(RetrySettings::default().validate().is_ok());
    }

    #[test]
    fn each_bad_setting_is_named() {
        let d = RetrySettings::default;
        let ms = Duration::from_millis;
        let cases = [
            (
                RetrySettings {
                    max_attempts: 0,
                    ..d()
                },
                "max_attempts",
            ),
            (
                RetrySettings {
                    backoff: Backoff::exponential(ms(20), 2.0, ms(10)),
                    ..d()
                },
                "backoff",
            ),
            (
                RetrySettings {
                    attempt_timeout: Some(Duration::ZERO),
                    ..d()
                },
                "attempt_timeout",
            ),
            (
                RetrySettings {
                    deadline: Some(MAX_DURATION + ms(1)),
                    ..d()
                },
                "deadline",
            ),
            (
                RetrySettings {
                    retry_ratio: f64::NAN,
                    ..d()
                },
                "retry_ratio",
            ),
            (
                RetrySettings {
                    budget_ttl: ms(1500),
                    ..d()
                },
                "budget_ttl",
            ),
            #[cfg(feature = "http")]
            (
                RetrySettings {
                    max_retry_after: MAX_DURATION + ms(1),
                    ..d()
                },
                "max_retry_after",
            ),
            #[cfg(feature = "http")]
            (
                RetrySettings {
                    idempotency_key_header: "not a header".to_owned(),
                    ..d()
                },
                "idempotency_key_header",
            ),
            #[cfg(feature = "http")]
            (
                RetrySettings {
                    attempt_header: Some(String::new()),
                    ..d()
                },
                "attempt_header",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(settings.validate().unwrap_err().field(), field);
        }
    }
}
