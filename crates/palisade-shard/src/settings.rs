//! [`ShardSettings`]: every setting of a shard router, as plain data.
//!
//! The builder's setters, the gateway's TOML keys and the handle's snapshot
//! use these field names. With the `serde` feature the settings
//! (de)serialize, unknown keys are refused, and durations are strings
//! (`"250ms"`, `"1s"`, `"2m"`).

use std::time::Duration;

use palisade_core::ConfigError;

/// The most virtual nodes per unit of weight on the ring.
pub const MAX_VIRTUAL_NODES: u32 = 10_000;
/// The most points a ring may hold in all (shards × virtual nodes × weight):
/// up to 8 MiB of lookup table (each point's position and owner, and the
/// index that finds a key's point in a step or two).
pub const MAX_RING_POINTS: usize = 1 << 19;
/// The most shards one map may hold.
pub const MAX_SHARDS: usize = 4096;
/// The largest weight a shard may have (weights are relative: 1.0 is the
/// default).
pub const MAX_WEIGHT: f64 = 1_000.0;
/// The longest key, in bytes; a longer one is malformed.
pub const MAX_KEY_LEN: usize = 256;
/// The longest wait for a shard's service to become ready.
pub const MAX_READY_TIMEOUT: Duration = Duration::from_secs(3600);

/// How keys are assigned to shards. `docs/patterns/sharding.md` compares them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Scheme {
    /// Rendezvous (highest random weight): each key goes to the shard with
    /// the highest score for it. Weights, removal of any shard, and a natural
    /// ordered list of the next choices; O(shards) per lookup. The default.
    #[default]
    Rendezvous,
    /// A ring of virtual nodes (Karger; Ketama): each shard owns
    /// [`virtual_nodes`](ShardSettings::virtual_nodes) × weight points, and a
    /// key goes to the first point clockwise. O(log points) per lookup.
    Ring,
    /// Jump consistent hash (Lamping and Veach) over numbered shards: the
    /// least movement and O(1) memory, but no weights, and only the last
    /// shard can be removed.
    Jump,
}

impl Scheme {
    /// `rendezvous`, `ring` or `jump`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rendezvous => "rendezvous",
            Self::Ring => "ring",
            Self::Jump => "jump",
        }
    }
}

/// What a request for a key that moved is answered with, while the map has
/// changed and the data may not have followed yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum MovePolicy {
    /// Every request goes to the key's owner in the newest map at once. The
    /// default: right when the shards share storage or the data is moved
    /// before the map changes.
    #[default]
    Forward,
    /// A request for a key that moved goes to its new owner first; if the
    /// new owner misses (an error, or a `404` because the data has not
    /// arrived: the caller says what a miss is), a copy made before the
    /// first call is sent to the previous owner. Lasts until
    /// [`ShardHandle::complete_move`](crate::ShardHandle::complete_move) or
    /// the next change. Set by
    /// [`ShardRouterBuilder::fall_back_to_previous`](crate::ShardRouterBuilder::fall_back_to_previous),
    /// which says how to copy a request and what a miss is.
    FallBackToPrevious,
}

impl MovePolicy {
    /// `forward` or `fall_back_to_previous`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::FallBackToPrevious => "fall_back_to_previous",
        }
    }
}

/// Where the key of an HTTP request is (feature `http` builds the extractor).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
#[non_exhaustive]
pub enum KeySource {
    /// The value of this header (`x-user-id`).
    Header(String),
    /// A parameter of the request's path.
    Path {
        /// The route as the router declares it, axum's syntax:
        /// `/users/{id}/orders`.
        route: String,
        /// The parameter holding the key: `id`.
        param: String,
    },
}

/// What a valid key looks like, beyond being present, non-empty and at most
/// [`MAX_KEY_LEN`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum KeyFormat {
    /// Any bytes. The default.
    #[default]
    Any,
    /// ASCII digits only (numeric ids).
    Digits,
}

/// Every setting of a shard router. `Default` gives the documented defaults.
///
/// ```
/// use palisade_shard::{Scheme, ShardSettings};
///
/// let settings = ShardSettings { scheme: Scheme::Ring, ..ShardSettings::default() };
/// assert!(settings.validate().is_ok());
/// let bad = ShardSettings { virtual_nodes: 0, ..settings };
/// assert_eq!(bad.validate().unwrap_err().field(), "virtual_nodes");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ShardSettings {
    /// How keys map to shards. Default: [`Scheme::Rendezvous`].
    pub scheme: Scheme,
    /// Ring only: points per shard per unit of weight, 1 to
    /// [`MAX_VIRTUAL_NODES`]. More points even out the shares (the spread
    /// falls as 1/√points) at the cost of memory and a slightly slower
    /// lookup. Default: 1000 (16 shards named `users-0` to `users-15` get
    /// 0.92 to 1.09 of the mean share; with 2000 points, 0.95 to 1.03).
    pub virtual_nodes: u32,
    /// The longest a request waits for its shard's service to become ready
    /// before failing with [`ShardNotReady`](crate::error::ShardNotReady).
    /// Default: 1 s.
    #[cfg_attr(feature = "serde", serde(with = "duration_str"))]
    pub ready_timeout: Duration,
    /// The shard that serves requests without a valid key, instead of
    /// refusing them. Default: none (refused: `400` over HTTP).
    pub default_shard: Option<String>,
    /// What happens to requests for keys that moved. Default:
    /// [`MovePolicy::Forward`].
    pub during_move: MovePolicy,
    /// Where an HTTP request's key is (used with the `http` feature; a key
    /// function set in code takes precedence). Default: none.
    pub key: Option<KeySource>,
    /// What a valid key looks like. Default: [`KeyFormat::Any`].
    pub key_format: KeyFormat,
    /// Record each call's latency per shard (a histogram). It costs two
    /// clock reads per call on a shard with one replica; on a replicated
    /// shard the pick between replicas reads the clock anyway, and that
    /// reading starts the timing. Default: `true`: per-shard latency is how
    /// a hot or slow shard shows, and next to a shard call that leaves the
    /// process the clock reads are noise; turn it off where the shards are
    /// in-process and tens of nanoseconds per call matter (the cost is
    /// measured in `docs/benchmarks.md`).
    pub record_latency: bool,
    /// How fast a replica's peak-EWMA latency forgets a slow call, for the
    /// choice between replicas of a shard. Default: 10 s (linkerd's).
    #[cfg_attr(feature = "serde", serde(with = "duration_str"))]
    pub ewma_decay: Duration,
}

impl Default for ShardSettings {
    fn default() -> Self {
        Self {
            scheme: Scheme::Rendezvous,
            virtual_nodes: 1000,
            ready_timeout: Duration::from_secs(1),
            default_shard: None,
            during_move: MovePolicy::Forward,
            key: None,
            key_format: KeyFormat::Any,
            record_latency: true,
            ewma_decay: Duration::from_secs(10),
        }
    }
}

impl ShardSettings {
    /// Checks every setting; has no side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.virtual_nodes == 0 || self.virtual_nodes > MAX_VIRTUAL_NODES {
            return Err(ConfigError::new(
                "virtual_nodes",
                format!(
                    "must be in 1..={MAX_VIRTUAL_NODES}, got {}",
                    self.virtual_nodes
                ),
            ));
        }
        if self.ready_timeout.is_zero() || self.ready_timeout > MAX_READY_TIMEOUT {
            return Err(ConfigError::new(
                "ready_timeout",
                format!(
                    "must be more than zero and at most {MAX_READY_TIMEOUT:?}, got {:?}",
                    self.ready_timeout
                ),
            ));
        }
        if self.ewma_decay.is_zero() || self.ewma_decay > MAX_READY_TIMEOUT {
            return Err(ConfigError::new(
                "ewma_decay",
                format!(
                    "must be more than zero and at most {MAX_READY_TIMEOUT:?}, got {:?}",
                    self.ewma_decay
                ),
            ));
        }
        if self.default_shard.as_deref() == Some("") {
            return Err(ConfigError::new("default_shard", "must not be empty"));
        }
        match &self.key {
            None => {}
            Some(KeySource::Header(name)) => {
                let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty() || !name.bytes().all(token) {
                    return Err(ConfigError::new(
                        "key",
                        format!("`{name}` is not a header name"),
                    ));
                }
            }
            Some(KeySource::Path { route, param }) => {
                let placeholder = format!("{{{param}}}");
                let wildcard = format!("{{*{param}}}");
                let declared = route
                    .split('/')
                    .any(|segment| segment == placeholder || segment == wildcard);
                if !route.starts_with('/') || param.is_empty() || !declared {
                    return Err(ConfigError::new(
                        "key",
                        format!("route `{route}` has no parameter `{{{param}}}`"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Durations as strings: `"250ms"`, `"1s"`, `"2m"`, `"1h"`, `"500us"`,
/// `"100ns"`; written back in the largest unit that is exact.
#[cfg(feature = "serde")]
pub(crate) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.parse().ok()?;
        Some(match unit {
            "ns" => Duration::from_nanos(n),
            "us" | "µs" => Duration::from_micros(n),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        })
    }

    pub(crate) fn format(d: Duration) -> String {
        let nanos = d.as_nanos();
        if nanos.is_multiple_of(1_000_000_000) {
            format!("{}s", d.as_secs())
        } else if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", d.as_millis())
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", d.as_micros())
        } else {
            format!("{nanos}ns")
        }
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            D::Error::custom(format!(
                "`{text}` is not a duration (an integer and a unit: ns, us, ms, s, m, h)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(ShardSettings::default().validate().is_ok());
    }

    #[test]
    fn each_bad_setting_is_named() {
        let d = ShardSettings::default;
        let cases = [
            (
                ShardSettings {
                    virtual_nodes: MAX_VIRTUAL_NODES + 1,
                    ..d()
                },
                "virtual_nodes",
            ),
            (
                ShardSettings {
                    ready_timeout: Duration::ZERO,
                    ..d()
                },
                "ready_timeout",
            ),
            (
                ShardSettings {
                    ewma_decay: Duration::ZERO,
                    ..d()
                },
                "ewma_decay",
            ),
            (
                ShardSettings {
                    default_shard: Some(String::new()),
                    ..d()
                },
                "default_shard",
            ),
            (
                ShardSettings {
                    key: Some(KeySource::Header("x user".to_owned())),
                    ..d()
                },
                "key",
            ),
            (
                ShardSettings {
                    key: Some(KeySource::Path {
                        route: "/users/{id}".to_owned(),
                        param: "user".to_owned(),
                    }),
                    ..d()
                },
                "key",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(settings.validate().unwrap_err().field(), field);
        }
        let ok = ShardSettings {
            key: Some(KeySource::Path {
                route: "/users/{id}/orders".to_owned(),
                param: "id".to_owned(),
            }),
            ..d()
        };
        assert!(ok.validate().is_ok());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn durations_round_trip() {
        for text in ["250ms", "1s", "120s", "500us", "7ns"] {
            let d = duration_str::parse(text).unwrap();
            assert_eq!(duration_str::format(d), text);
        }
        assert_eq!(duration_str::parse("2m"), Some(Duration::from_secs(120)));
        for bad in ["", "ms", "1", "1 d", "-1s", "1.5s"] {
            assert_eq!(duration_str::parse(bad), None, "{bad}");
        }
    }
}
