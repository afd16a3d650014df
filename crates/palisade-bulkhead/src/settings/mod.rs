//! [`BulkheadSettings`]: every setting of a bulkhead that is plain data, its
//! default and its bounds.
//!
//! The builder's setters, the gateway's TOML keys and the snapshot's
//! `settings` use these field names. With the `serde` feature the settings
//! (de)serialize, unknown keys are refused, and durations are strings
//! (`"50ms"`, `"30s"`, `"1m"`; humantime's syntax).
//!
//! What is code rather than data stays on the builder: the partition key
//! ([`partition`](crate::BulkheadBuilder::partition),
//! [`partition_by`](crate::BulkheadBuilder::partition_by)), the classifier,
//! the listeners and the registry.

mod adaptive;

use std::time::Duration;

use palisade_core::ConfigError;

pub(crate) use adaptive::Algorithm;
pub use adaptive::{AdaptiveLimit, Aimd, Gradient};

/// The default of [`max_concurrent_calls`](BulkheadSettings::max_concurrent_calls)
/// (Resilience4j's).
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 25;
/// The default of [`max_partitions`](BulkheadSettings::max_partitions).
pub const DEFAULT_MAX_PARTITIONS: usize = 1024;
/// The default of [`partition_idle_timeout`](BulkheadSettings::partition_idle_timeout).
pub const DEFAULT_PARTITION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest limit a pool accepts (2^29): `max_concurrent_calls`,
/// `overflow_limit`, an adaptive `max_limit`, and the handle's `set_limit`.
/// It keeps a pool's count of available permits, which goes negative when a
/// limit is lowered below what is held, within an `i32`.
pub const MAX_LIMIT: usize = 1 << 29;
/// The largest [`max_queue`](BulkheadSettings::max_queue) (2^30 − 1): the
/// most calls that can wait on one pool.
pub const MAX_QUEUE: usize = (1 << 30) - 1;
/// The largest [`max_partitions`](BulkheadSettings::max_partitions) (2^20).
pub const MAX_PARTITIONS: usize = 1 << 20;
/// The longest [`partition_idle_timeout`](BulkheadSettings::partition_idle_timeout):
/// a year (365 days).
pub const MAX_PARTITION_IDLE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The settings of one bulkhead. `Default` gives the documented defaults.
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`max_concurrent_calls`](Self::max_concurrent_calls) | 25 | 1 to 2^29 |
/// | [`max_wait`](Self::max_wait) | none: zero (refuse at once), or no deadline with `backpressure` | any; `Duration::MAX` (`"forever"`): no deadline |
/// | [`max_queue`](Self::max_queue) | none: no bound but `max_wait` | 0 to 2^30 − 1 |
/// | [`backpressure`](Self::backpressure) | `false` | unpartitioned only |
/// | [`max_partitions`](Self::max_partitions) | 1024 | 1 to 2^20 |
/// | [`partition_idle_timeout`](Self::partition_idle_timeout) | 60 s | > 0, ≤ 1 year |
/// | [`overflow_limit`](Self::overflow_limit) | none: the partitions' limit | 0 to 2^29 |
/// | [`partition_metrics`](Self::partition_metrics) | `true` | |
/// | [`adaptive`](Self::adaptive) | none: a fixed limit | see [`AdaptiveLimit::validate`] |
///
/// ```
/// use palisade_bulkhead::{BulkheadLayer, BulkheadSettings};
/// use std::time::Duration;
///
/// let settings = BulkheadSettings {
///     max_concurrent_calls: 8,
///     max_wait: Some(Duration::from_millis(50)),
///     ..BulkheadSettings::default()
/// };
/// assert!(settings.validate().is_ok());
/// let layer = BulkheadLayer::builder("inventory").settings(settings).build()?;
/// assert_eq!(layer.handle().limit(), 8);
///
/// let bad = BulkheadSettings { max_concurrent_calls: 0, ..BulkheadSettings::default() };
/// assert_eq!(bad.validate().unwrap_err().field(), "max_concurrent_calls");
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
///
/// In TOML (with the `serde` feature), every key optional:
///
/// ```toml
/// max_concurrent_calls = 8
/// max_wait = "50ms"      # "forever": no deadline
/// max_queue = 100
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BulkheadSettings {
    /// At most this many calls in flight at once, per pool (per partition
    /// when partitioned). Ignored by an adaptive bulkhead, whose limit
    /// starts at the limiter's `initial_limit`.
    pub max_concurrent_calls: usize,
    /// How long a call may wait for a permit when its pool is full, first
    /// come first served. Zero refuses at once; `Duration::MAX` (and any
    /// wait too long to count in nanoseconds, about 584 years; `"forever"`
    /// in TOML) waits without a deadline. `None`: zero, or, with
    /// [`backpressure`](Self::backpressure), no deadline (tower's
    /// `ConcurrencyLimit` semantics).
    #[cfg_attr(
        feature = "serde",
        serde(with = "wait", skip_serializing_if = "Option::is_none")
    )]
    pub max_wait: Option<Duration>,
    /// At most this many calls wait per pool; the next is refused at once.
    /// `None`: no bound but time.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max_queue: Option<usize>,
    /// `true`: reserve the permit in `poll_ready` (the service is `Pending`
    /// while the pool is full), as tower's `ConcurrencyLimit` does. `false`:
    /// `poll_ready` only polls the inner service and the permit is taken in
    /// `call`. Only for an unpartitioned bulkhead.
    pub backpressure: bool,
    /// Partitioned only: at most this many keyed partitions live at once; a
    /// new key beyond it shares the overflow pool until idle partitions are
    /// reclaimed.
    pub max_partitions: usize,
    /// Partitioned only: a partition idle (nothing in flight, nobody
    /// waiting, nothing admitted) for this long is reclaimed, at the latest
    /// twice this long after its last call.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub partition_idle_timeout: Duration,
    /// Partitioned only: the limit of the shared overflow pool (0 refuses
    /// every call of a key that found no room). `None`: the partitions'
    /// limit (`max_concurrent_calls`, or the adaptive `initial_limit`).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub overflow_limit: Option<usize>,
    /// Partitioned only. `true`: partition pools report metrics with a
    /// `partition` label. `false`: they add into the bulkhead's name-only
    /// series, for keys of unbounded cardinality.
    pub partition_metrics: bool,
    /// Lets the limit of every pool adapt itself to latency and errors,
    /// within the limiter's bounds. `None`: a fixed limit.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub adaptive: Option<AdaptiveLimit>,
}

impl Default for BulkheadSettings {
    fn default() -> Self {
        Self {
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            max_wait: None,
            max_queue: None,
            backpressure: false,
            max_partitions: DEFAULT_MAX_PARTITIONS,
            partition_idle_timeout: DEFAULT_PARTITION_IDLE_TIMEOUT,
            overflow_limit: None,
            partition_metrics: true,
            adaptive: None,
        }
    }
}

/// A limit within `1..=MAX_LIMIT` (or `0..=MAX_LIMIT` when `zero_ok`).
pub(crate) fn check_limit(
    field: &'static str,
    limit: usize,
    zero_ok: bool,
) -> Result<(), ConfigError> {
    if limit == 0 && !zero_ok {
        return Err(ConfigError::new(field, "must be at least 1, got 0"));
    }
    if limit > MAX_LIMIT {
        return Err(ConfigError::new(
            field,
            format!("must be at most {MAX_LIMIT}, got {limit}"),
        ));
    }
    Ok(())
}

/// A `max_queue` within `0..=MAX_QUEUE`.
pub(crate) fn check_max_queue(max_queue: Option<usize>) -> Result<(), ConfigError> {
    match max_queue {
        Some(n) if n > MAX_QUEUE => Err(ConfigError::new(
            "max_queue",
            format!("must be at most {MAX_QUEUE}, got {n}"),
        )),
        _ => Ok(()),
    }
}

impl BulkheadSettings {
    /// Checks every setting against its bounds; the error names the first
    /// bad one by its field (and builder setter) name. No side effect: no
    /// metric is registered and nothing is built.
    ///
    /// The partition settings are checked whether or not the bulkhead will
    /// be partitioned (the key is code, given to the builder); whether
    /// `backpressure` meets a partition key is checked by
    /// [`build`](crate::BulkheadBuilder::build).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first setting out of bounds:
    /// `max_concurrent_calls` of 0 or above [`MAX_LIMIT`]; `max_queue` above
    /// [`MAX_QUEUE`]; `max_partitions` of 0 or above [`MAX_PARTITIONS`]; a
    /// zero or over-a-year `partition_idle_timeout`; `overflow_limit` above
    /// [`MAX_LIMIT`]; an invalid adaptive limit (`min_limit`, `max_limit`,
    /// `initial_limit`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_limit("max_concurrent_calls", self.max_concurrent_calls, false)?;
        check_max_queue(self.max_queue)?;
        if self.max_partitions == 0 || self.max_partitions > MAX_PARTITIONS {
            return Err(ConfigError::new(
                "max_partitions",
                format!(
                    "must be within 1..={MAX_PARTITIONS}, got {}",
                    self.max_partitions
                ),
            ));
        }
        if self.partition_idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "partition_idle_timeout",
                "must be greater than zero",
            ));
        }
        if self.partition_idle_timeout > MAX_PARTITION_IDLE_TIMEOUT {
            return Err(ConfigError::new(
                "partition_idle_timeout",
                format!(
                    "must be at most a year, got {:?}",
                    self.partition_idle_timeout
                ),
            ));
        }
        if let Some(limit) = self.overflow_limit {
            check_limit("overflow_limit", limit, true)?;
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate()?;
        }
        Ok(())
    }

    /// The limit every pool starts with: `max_concurrent_calls`, or the
    /// adaptive limit's `initial_limit`.
    #[must_use]
    pub fn initial_limit(&self) -> usize {
        self.adaptive
            .as_ref()
            .map_or(self.max_concurrent_calls, AdaptiveLimit::initial_limit)
    }

    /// The wait in force: `max_wait`, or its default for the mode (zero;
    /// `Duration::MAX`, no deadline, with `backpressure`).
    #[must_use]
    pub fn effective_max_wait(&self) -> Duration {
        self.max_wait.unwrap_or(if self.backpressure {
            Duration::MAX
        } else {
            Duration::ZERO
        })
    }
}

/// `max_wait` as a string: humantime's syntax (`"50ms"`, `"2s"`), or
/// `"forever"` for a wait without a deadline (`Duration::MAX`, or any wait
/// too long to count in nanoseconds).
#[cfg(feature = "serde")]
pub(crate) mod wait {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// The spelling of "no deadline".
    pub(crate) const FOREVER: &str = "forever";

    /// `true` when the bulkhead waits without a deadline for `wait`.
    pub(crate) fn is_forever(wait: Duration) -> bool {
        wait >= Duration::from_nanos(u64::MAX)
    }

    pub(crate) fn format(wait: Duration) -> String {
        if is_forever(wait) {
            FOREVER.to_owned()
        } else {
            humantime_serde::re::humantime::format_duration(wait).to_string()
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        if text.trim() == FOREVER {
            return Ok(Duration::MAX);
        }
        humantime_serde::re::humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration (\"50ms\", \"2s\", \"forever\"): {e}"))
    }

    // `with` needs these exact signatures.
    #[allow(clippy::ref_option, reason = "serde's `with` signature")]
    pub(crate) fn serialize<S: Serializer>(
        wait: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match wait {
            Some(wait) => serializer.serialize_some(&format(*wait)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => parse(&text).map(Some).map_err(D::Error::custom),
            None => Ok(None),
        }
    }

    /// For a field that is always present (the snapshot's `max_wait`).
    pub(crate) mod always {
        use std::time::Duration;

        use serde::Serializer;

        pub(crate) fn serialize<S: Serializer>(
            wait: &Duration,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(&super::format(*wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let d = BulkheadSettings::default();
        assert!(d.validate().is_ok());
        assert_eq!(d.max_concurrent_calls, 25);
        assert_eq!(d.initial_limit(), 25);
        assert_eq!(d.effective_max_wait(), Duration::ZERO);
        let bp = BulkheadSettings {
            backpressure: true,
            ..d
        };
        assert_eq!(bp.effective_max_wait(), Duration::MAX);
    }

    #[test]
    fn each_bound_names_its_field() {
        let d = BulkheadSettings::default;
        let cases: Vec<(BulkheadSettings, &str)> = vec![
            (
                BulkheadSettings {
                    max_concurrent_calls: 0,
                    ..d()
                },
                "max_concurrent_calls",
            ),
            (
                BulkheadSettings {
                    max_concurrent_calls: MAX_LIMIT + 1,
                    ..d()
                },
                "max_concurrent_calls",
            ),
            (
                BulkheadSettings {
                    max_queue: Some(MAX_QUEUE + 1),
                    ..d()
                },
                "max_queue",
            ),
            (
                BulkheadSettings {
                    max_partitions: 0,
                    ..d()
                },
                "max_partitions",
            ),
            (
                BulkheadSettings {
                    max_partitions: MAX_PARTITIONS + 1,
                    ..d()
                },
                "max_partitions",
            ),
            (
                BulkheadSettings {
                    partition_idle_timeout: Duration::ZERO,
                    ..d()
                },
                "partition_idle_timeout",
            ),
            (
                BulkheadSettings {
                    partition_idle_timeout: MAX_PARTITION_IDLE_TIMEOUT + Duration::from_secs(1),
                    ..d()
                },
                "partition_idle_timeout",
            ),
            (
                BulkheadSettings {
                    overflow_limit: Some(MAX_LIMIT + 1),
                    ..d()
                },
                "overflow_limit",
            ),
            (
                BulkheadSettings {
                    adaptive: Some(Aimd::new().min_limit(0).into()),
                    ..d()
                },
                "min_limit",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(settings.validate().unwrap_err().field(), field);
        }
        // The bounds themselves are valid.
        let edge = BulkheadSettings {
            max_concurrent_calls: MAX_LIMIT,
            max_wait: Some(Duration::MAX),
            max_queue: Some(MAX_QUEUE),
            max_partitions: MAX_PARTITIONS,
            partition_idle_timeout: MAX_PARTITION_IDLE_TIMEOUT,
            overflow_limit: Some(0),
            ..d()
        };
        assert!(edge.validate().is_ok());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn waits_are_strings_and_forever_is_spelled_out() {
        assert_eq!(wait::format(Duration::from_millis(50)), "50ms");
        assert_eq!(wait::format(Duration::ZERO), "0s");
        assert_eq!(wait::format(Duration::MAX), "forever");
        assert_eq!(wait::format(Duration::from_nanos(u64::MAX)), "forever");
        assert_ne!(wait::format(Duration::from_nanos(u64::MAX - 1)), "forever");
        assert_eq!(wait::parse("forever"), Ok(Duration::MAX));
        assert_eq!(wait::parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(wait::parse("soon").unwrap_err().contains("`soon`"));
    }
}
