//! The settings of a rate limiter: plain data, the one source of every
//! setting. The builder's setters, the gateway's TOML keys and the handle's
//! snapshot use these field names.
//!
//! With the `serde` feature, [`RateLimitSettings`] reads from and writes to
//! any serde format. Rates are strings (`"100/s"`, `"6000/min"`,
//! `"10/100ms"`) and durations are strings (`"250ms"`, `"30s"`):
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use palisade_rate_limit::{Rate, RateLimitSettings};
//!
//! let settings: RateLimitSettings = toml::from_str(r#"
//!     rate = "10/s"
//!     burst = 20
//!     max_delay = "250ms"
//!     [tiers.paid]
//!     rate = "100/s"
//!     burst = 200
//!     [key_tiers]
//!     "key-7f3a" = "paid"
//! "#).unwrap();
//! assert_eq!(settings.rate, Rate::per_second(10));
//! assert_eq!(settings.tiers["paid"].burst, 200);
//! settings.validate().unwrap();
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use palisade_core::ConfigError;

use crate::error::ParseRateError;

/// The name of the tier the top-level `rate` and `burst` define: the limit of
/// every key no other tier claims.
pub const DEFAULT_TIER: &str = "default";
/// The most tiers a limiter has, the default one included.
pub const MAX_TIERS: usize = 64;
/// The default of [`RateLimitSettings::max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// The largest [`RateLimitSettings::max_keys`] accepted.
pub const MAX_KEYS: usize = 1 << 24;
/// The default of [`RateLimitSettings::max_key_len`].
pub const DEFAULT_MAX_KEY_LEN: usize = 256;
/// The largest [`RateLimitSettings::max_key_len`] accepted.
pub const MAX_KEY_LEN: usize = 4096;
/// The longest [`RateLimitSettings::max_delay`] accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// The default of [`RateLimitSettings::backend_timeout`].
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_millis(50);
/// The longest period a [`Rate`] may have.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest tier name accepted.
pub const MAX_TIER_NAME_LEN: usize = 64;
/// The longest [`RateLimitSettings::key_prefix`] accepted.
pub const MAX_KEY_PREFIX_LEN: usize = 256;

// ===== Rate =====

/// A sustained rate: `count` calls per `per`.
///
/// With the burst it defines a GCRA limit: one call every `per / count`
/// (the *emission interval*, rounded up to a whole nanosecond so the limit is
/// never exceeded), and up to `burst` calls at once after a quiet period.
///
/// ```
/// use palisade_rate_limit::Rate;
/// use std::time::Duration;
///
/// let rate: Rate = "6000/min".parse().unwrap();
/// assert_eq!(rate, Rate::per_minute(6000));
/// assert_eq!(rate.emission_interval(), Duration::from_millis(10));
/// assert_eq!(Rate::new(10, Duration::from_millis(100)).to_string(), "10/100ms");
/// assert_eq!(Rate::per_second(5).to_string(), "5/s");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    per: Duration,
}

impl Rate {
    /// `count` calls per `per`. [`RateLimitSettings::validate`] rejects a
    /// zero count, a zero period, a period over a year and more than one call
    /// per nanosecond.
    #[must_use]
    pub const fn new(count: u32, per: Duration) -> Self {
        Self { count, per }
    }

    /// `count` calls per second.
    #[must_use]
    pub const fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` calls per minute.
    #[must_use]
    pub const fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` calls per hour.
    #[must_use]
    pub const fn per_hour(count: u32) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }

    /// The number of calls per period.
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    #[must_use]
    pub const fn per(&self) -> Duration {
        self.per
    }

    /// The time between two calls at this rate, rounded up to a nanosecond
    /// (zero for an invalid rate).
    #[must_use]
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_nanos().unwrap_or(0))
    }

    /// The emission interval in nanoseconds, rounded up; `None` if the rate
    /// is invalid.
    pub(crate) fn emission_nanos(&self) -> Option<u64> {
        if self.count == 0 || self.per.is_zero() || self.per > MAX_PERIOD {
            return None;
        }
        let per = self.per.as_nanos();
        let count = u128::from(self.count);
        if per < count {
            return None;
        }
        u64::try_from(per.div_ceil(count)).ok()
    }

    fn check(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::new(field, "the count must be at least 1"));
        }
        if self.per.is_zero() {
            return Err(ConfigError::new(
                field,
                "the period must be greater than zero",
            ));
        }
        if self.per > MAX_PERIOD {
            return Err(ConfigError::new(
                field,
                format!("the period must be at most a year, got {:?}", self.per),
            ));
        }
        if self.emission_nanos().is_none() {
            return Err(ConfigError::new(
                field,
                format!("at most one call per nanosecond, got {self}"),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rate({self})")
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per {
            p if p == Duration::from_secs(1) => "s",
            p if p == Duration::from_secs(60) => "min",
            p if p == Duration::from_secs(3600) => "h",
            p if p == Duration::from_secs(86_400) => "d",
            p => return write!(f, "{}/{}", self.count, humantime::format_duration(p)),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl FromStr for Rate {
    type Err = ParseRateError;

    /// `<count>/<period>`: the period is a unit (`s`, `sec`, `min`, `m`, `h`,
    /// `hour`, `d`, `day`, `ms`) or a duration (`100ms`, `10s`, `1m 30s`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| ParseRateError::new(text, "expected `<count>/<period>`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| ParseRateError::new(text, "the count is not a whole number"))?;
        let per = per.trim();
        let parsed = if per.starts_with(|c: char| c.is_ascii_digit()) {
            humantime::parse_duration(per)
        } else {
            let unit = match per {
                "min" => "1m",
                "hour" => "1h",
                "day" => "1d",
                other => &format!("1{other}"),
            };
            humantime::parse_duration(unit)
        };
        let per = parsed.map_err(|_| ParseRateError::new(text, "the period is not a duration"))?;
        Ok(Self::new(count, per))
    }
}

// ===== Limit =====

/// A limit: a sustained [`Rate`] and a burst.
///
/// `burst` calls may go through at once after a quiet period; after that,
/// one call per emission interval. A burst of 1 spaces every call by the
/// emission interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Limit {
    /// The sustained rate.
    #[cfg_attr(feature = "serde", serde(with = "serde_impl::rate"))]
    pub rate: Rate,
    /// The most calls admitted at once.
    pub burst: u32,
}

impl Limit {
    /// `rate` with `burst`.
    #[must_use]
    pub const fn new(rate: Rate, burst: u32) -> Self {
        Self { rate, burst }
    }

    /// Checks the limit; `field` names the setting in the error.
    pub(crate) fn check(&self, field: &'static str) -> Result<(), ConfigError> {
        self.rate.check(field)?;
        if self.burst == 0 {
            return Err(ConfigError::new(
                field,
                "the burst must be at least 1, got 0",
            ));
        }
        let emission = self.rate.emission_nanos().unwrap_or(u64::MAX);
        if emission
            .checked_mul(u64::from(self.burst))
            .is_none_or(|w| w > 1 << 62)
        {
            return Err(ConfigError::new(
                field,
                format!(
                    "the burst times the emission interval must be under 146 years, got {} × {:?}",
                    self.burst,
                    self.rate.emission_interval()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(feature = "redis")]
impl Limit {
    /// A remote backend (Redis) keeps times in microseconds: at most one call
    /// per microsecond.
    pub(crate) fn check_micros(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.rate.emission_interval() < Duration::from_micros(1) {
            return Err(ConfigError::new(
                field,
                format!(
                    "with a Redis backend, at most one call per microsecond, got {}",
                    self.rate
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (burst {})", self.rate, self.burst)
    }
}

// ===== MissingKey, FailureMode =====

/// What a keyed limiter does with a request it finds no key in (a missing
/// header, no client address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum MissingKey {
    /// All such requests share one key of the default tier (the default).
    #[default]
    Shared,
    /// Refuse them with [`InvalidKey`](crate::error::InvalidKey) (HTTP 400).
    Reject,
    /// Let them through, unlimited and uncounted.
    Bypass,
}

/// What a limiter with a remote backend (Redis) does when the backend does not
/// answer in time or fails, and while its circuit breaker is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum FailureMode {
    /// Decide with the local, in-process limiter (same tiers and limits,
    /// counted per instance): the default. A fleet of N instances then admits
    /// up to N times the limit until the backend is back.
    #[default]
    Open,
    /// Refuse every call with [`Unavailable`](crate::error::Unavailable)
    /// (HTTP 503): nothing passes that the shared limit did not see.
    Closed,
}

impl FailureMode {
    /// `"open"` or `"closed"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// The clock a limiter reads on every call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ClockSource {
    /// tokio's `Instant` (the default): follows tokio's paused clock, so
    /// tests run on virtual time. One `clock_gettime` per call.
    #[default]
    Tokio,
    /// The CPU's time-stamp counter, through quanta (as governor reads
    /// time): a few nanoseconds per read, calibrated once per process,
    /// falling back to the OS clock where the counter is not usable. Does
    /// not follow tokio's paused clock: for production, where each call's
    /// clock read is a large share of the limiter's cost.
    Tsc,
}

// ===== RateLimitSettings =====

/// Every setting of a rate limiter; [`Default`] gives the documented defaults.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `rate` | 100/s | the default tier's sustained rate |
/// | `burst` | 100 | the default tier's burst |
/// | `tiers` | none | more tiers (a limit per key class), by name |
/// | `key_tiers` | none | keys assigned to a tier, by the key's text (an IP address for client-IP keys) |
/// | `max_delay` | 0 | throttle: how long a call may wait for its slot; 0 rejects at once |
/// | `max_keys` | 100 000 | keys kept at once; more share one overflow key |
/// | `max_key_len` | 256 | longer keys are refused as invalid (HTTP 400) |
/// | `missing_key` | `shared` | requests without a key: `shared`, `reject` or `bypass` |
/// | `headers` | `true` | HTTP: send `RateLimit` and `RateLimit-Policy` on admitted responses too |
/// | `failure_mode` | `open` | remote backend down: `open` (local limiter) or `closed` (refuse) |
/// | `backend_timeout` | 50 ms | remote backend: the longest a decision may take |
/// | `key_prefix` | `palisade:rate-limit:<name>:` | remote backend: the prefix of every key it stores |
/// | `clock` | `tokio` | the clock read per call: `tokio` (follows tokio's paused clock) or `tsc` (cheaper) |
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RateLimitSettings {
    /// The sustained rate of the [`DEFAULT_TIER`].
    #[cfg_attr(feature = "serde", serde(with = "serde_impl::rate"))]
    pub rate: Rate,
    /// The burst of the [`DEFAULT_TIER`].
    pub burst: u32,
    /// More tiers, by name: a key's tier comes from `key_tiers`, else from
    /// the class its extractor gives it, else it is the default tier.
    pub tiers: BTreeMap<String, Limit>,
    /// Keys assigned to a tier: the key's text (a header value; an IP
    /// address in its usual form for client-IP keys) to the tier's name.
    pub key_tiers: BTreeMap<String, String>,
    /// Throttling: a call over the limit waits up to this long for its slot
    /// (its slot is reserved at once); a call whose slot is further away is
    /// refused at once. Zero (the default) refuses every call over the limit.
    #[cfg_attr(feature = "serde", serde(with = "serde_impl::duration"))]
    pub max_delay: Duration,
    /// The most keys held at once. Idle keys (whose allowance is whole again)
    /// are evicted; a new key that finds the table full shares one overflow
    /// key with the other newcomers until room is made.
    pub max_keys: usize,
    /// Keys longer than this many bytes are refused as invalid.
    pub max_key_len: usize,
    /// What to do with a request that has no key.
    pub missing_key: MissingKey,
    /// HTTP: add `RateLimit` and `RateLimit-Policy` to admitted responses
    /// (refusals always carry them).
    pub headers: bool,
    /// Remote backend: what to do when it fails.
    pub failure_mode: FailureMode,
    /// Remote backend: the longest a decision may take before it counts as a
    /// failure.
    #[cfg_attr(feature = "serde", serde(with = "serde_impl::duration"))]
    pub backend_timeout: Duration,
    /// Remote backend: the prefix of every key stored (`None`:
    /// `palisade:rate-limit:<name>:`). Give limiters that must share a limit
    /// the same name or prefix, and others different ones.
    pub key_prefix: Option<String>,
    /// The clock read on every call.
    pub clock: ClockSource,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            rate: Rate::per_second(100),
            burst: 100,
            tiers: BTreeMap::new(),
            key_tiers: BTreeMap::new(),
            max_delay: Duration::ZERO,
            max_keys: DEFAULT_MAX_KEYS,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            missing_key: MissingKey::Shared,
            headers: true,
            failure_mode: FailureMode::Open,
            backend_timeout: DEFAULT_BACKEND_TIMEOUT,
            key_prefix: None,
            clock: ClockSource::Tokio,
        }
    }
}

/// Checks a tier name: it is a metric label and a structured-field string.
pub(crate) fn check_tier_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_TIER_NAME_LEN {
        return Err(ConfigError::new(
            "tiers",
            format!("a tier name must have 1 to {MAX_TIER_NAME_LEN} characters, got {name:?}"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(ConfigError::new(
            "tiers",
            format!("a tier name may hold ASCII letters, digits and `-_.:`, got {name:?}"),
        ));
    }
    Ok(())
}

impl RateLimitSettings {
    /// The default tier's limit.
    #[must_use]
    pub const fn default_limit(&self) -> Limit {
        Limit::new(self.rate, self.burst)
    }

    /// Checks every setting; the error names the field. No side effect.
    ///
    /// # Errors
    ///
    /// The first invalid setting found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rate.check("rate")?;
        if self.burst == 0 {
            return Err(ConfigError::new("burst", "must be at least 1, got 0"));
        }
        self.default_limit().check("burst")?;
        if self.tiers.len() + 1 > MAX_TIERS {
            return Err(ConfigError::new(
                "tiers",
                format!("at most {} tiers besides the default", MAX_TIERS - 1),
            ));
        }
        for (name, limit) in &self.tiers {
            check_tier_name(name)?;
            if name == DEFAULT_TIER {
                return Err(ConfigError::new(
                    "tiers",
                    "`default` is the tier of `rate` and `burst`; set those instead",
                ));
            }
            limit.check("tiers")?;
        }
        for (key, tier) in &self.key_tiers {
            if key.is_empty() || key.len() > self.max_key_len {
                return Err(ConfigError::new(
                    "key_tiers",
                    format!(
                        "a key must have 1 to max_key_len bytes, got {} bytes",
                        key.len()
                    ),
                ));
            }
            if tier != DEFAULT_TIER && !self.tiers.contains_key(tier) {
                return Err(ConfigError::new(
                    "key_tiers",
                    format!("names the tier {tier:?}, which is not defined"),
                ));
            }
        }
        if self.max_delay > MAX_DELAY {
            return Err(ConfigError::new(
                "max_delay",
                format!("must be at most an hour, got {:?}", self.max_delay),
            ));
        }
        if self.max_keys == 0 || self.max_keys > MAX_KEYS {
            return Err(ConfigError::new(
                "max_keys",
                format!("must be within 1..={MAX_KEYS}, got {}", self.max_keys),
            ));
        }
        if self.max_key_len == 0 || self.max_key_len > MAX_KEY_LEN {
            return Err(ConfigError::new(
                "max_key_len",
                format!("must be within 1..={MAX_KEY_LEN}, got {}", self.max_key_len),
            ));
        }
        if self.backend_timeout.is_zero() || self.backend_timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "backend_timeout",
                format!("must be within (0, 60s], got {:?}", self.backend_timeout),
            ));
        }
        if let Some(prefix) = &self.key_prefix
            && prefix.len() > MAX_KEY_PREFIX_LEN
        {
            return Err(ConfigError::new(
                "key_prefix",
                format!("must be at most {MAX_KEY_PREFIX_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    pub(crate) mod rate {
        use serde::{Deserialize, Deserializer, Serializer};

        use crate::settings::Rate;

        pub(crate) fn serialize<S: Serializer>(rate: &Rate, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(rate)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            text.parse().map_err(serde::de::Error::custom)
        }
    }

    pub(crate) mod duration {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&humantime::format_duration(*d))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            humantime::parse_duration(&text).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(feature = "serde")]
pub(crate) use serde_impl::duration as serde_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let cases = [
            ("100/s", Rate::per_second(100), "100/s"),
            ("100/sec", Rate::per_second(100), "100/s"),
            ("6000/min", Rate::per_minute(6000), "6000/min"),
            ("5/m", Rate::per_minute(5), "5/min"),
            ("7/hour", Rate::per_hour(7), "7/h"),
            ("1/d", Rate::new(1, Duration::from_secs(86_400)), "1/d"),
            (
                "10/100ms",
                Rate::new(10, Duration::from_millis(100)),
                "10/100ms",
            ),
            (
                " 3 / 1m 30s ",
                Rate::new(3, Duration::from_secs(90)),
                "3/1m 30s",
            ),
        ];
        for (text, rate, printed) in cases {
            assert_eq!(text.parse::<Rate>().unwrap(), rate, "{text}");
            assert_eq!(rate.to_string(), printed);
            assert_eq!(
                printed.parse::<Rate>().unwrap(),
                rate,
                "round trip of {printed}"
            );
        }
        for bad in [
            "",
            "100",
            "x/s",
            "-1/s",
            "10/",
            "10/fortnight",
            "1.5/s",
            "10/s/s",
        ] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.to_string().contains("invalid rate"), "{bad}: {err}");
        }
    }

    #[test]
    fn emission_interval_rounds_up() {
        assert_eq!(Rate::per_second(3).emission_nanos(), Some(333_333_334));
        assert_eq!(Rate::per_second(1_000_000_000).emission_nanos(), Some(1));
        assert_eq!(Rate::new(2, Duration::from_nanos(1)).emission_nanos(), None);
        assert_eq!(Rate::per_second(0).emission_nanos(), None);
        assert_eq!(Rate::new(1, Duration::ZERO).emission_nanos(), None);
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_field() {
        RateLimitSettings::default().validate().unwrap();
        let field = |s: RateLimitSettings| s.validate().unwrap_err().field().to_owned();
        let base = RateLimitSettings::default;
        assert_eq!(
            field(RateLimitSettings {
                rate: Rate::per_second(0),
                ..base()
            }),
            "rate"
        );
        assert_eq!(
            field(RateLimitSettings {
                rate: Rate::new(1, Duration::from_secs(400 * 86_400)),
                ..base()
            }),
            "rate"
        );
        assert_eq!(field(RateLimitSettings { burst: 0, ..base() }), "burst");
        assert_eq!(
            field(RateLimitSettings {
                rate: Rate::per_hour(1),
                burst: u32::MAX,
                ..base()
            }),
            "burst"
        );
        let mut tiers = BTreeMap::new();
        tiers.insert("bad name".to_owned(), Limit::new(Rate::per_second(1), 1));
        assert_eq!(field(RateLimitSettings { tiers, ..base() }), "tiers");
        let mut tiers = BTreeMap::new();
        tiers.insert(DEFAULT_TIER.to_owned(), Limit::new(Rate::per_second(1), 1));
        assert_eq!(field(RateLimitSettings { tiers, ..base() }), "tiers");
        let mut key_tiers = BTreeMap::new();
        key_tiers.insert("k".to_owned(), "gold".to_owned());
        assert_eq!(
            field(RateLimitSettings {
                key_tiers,
                ..base()
            }),
            "key_tiers"
        );
        assert_eq!(
            field(RateLimitSettings {
                max_delay: Duration::from_secs(7200),
                ..base()
            }),
            "max_delay"
        );
        assert_eq!(
            field(RateLimitSettings {
                max_keys: 0,
                ..base()
            }),
            "max_keys"
        );
        assert_eq!(
            field(RateLimitSettings {
                max_keys: MAX_KEYS + 1,
                ..base()
            }),
            "max_keys"
        );
        assert_eq!(
            field(RateLimitSettings {
                max_key_len: 0,
                ..base()
            }),
            "max_key_len"
        );
        assert_eq!(
            field(RateLimitSettings {
                backend_timeout: Duration::ZERO,
                ..base()
            }),
            "backend_timeout"
        );
        assert_eq!(
            field(RateLimitSettings {
                key_prefix: Some("x".repeat(300)),
                ..base()
            }),
            "key_prefix"
        );
    }
}
