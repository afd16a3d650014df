//! [`CacheSettings`]: every setting of a cache, its default and its bounds.
//!
//! Plain data. The builder's setters, the gateway's TOML keys and the
//! handle's snapshot use these field names. Durations in TOML are strings
//! (`"250ms"`, `"30s"`, `"5m"`).

use std::time::Duration;

use palisade_core::ConfigError;

/// The longest duration any setting accepts: one year (365 days). Longer
/// means "forever", which a cache of a live service should not mean; the
/// bound also keeps every instant the cache computes far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The largest entry the cache accepts, in bytes: 1 GiB. The store weighs
/// entries in `u32`, and an entry this large would evict everything else.
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// The largest memory bound accepted, in bytes: 1 TiB.
pub const MAX_BYTES: u64 = 1 << 40;

/// The settings of one cache; see the [crate docs](crate) for what each
/// window means and `docs/patterns/cache.md` for the entry's life.
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`ttl`](Self::ttl) | 60 s | > 0, ≤ 1 year |
/// | [`stale_while_revalidate`](Self::stale_while_revalidate) | 10 s | ≤ 1 year (0: off) |
/// | [`stale_if_error`](Self::stale_if_error) | 5 min | ≤ 1 year (0: off) |
/// | [`negative_ttl`](Self::negative_ttl) | none (404s are not stored) | > 0, ≤ 1 year |
/// | [`max_bytes`](Self::max_bytes) | 64 MiB | 1 KiB to 1 TiB |
/// | [`max_entry_bytes`](Self::max_entry_bytes) | 1 MiB | ≥ 1, ≤ `max_bytes`, ≤ 1 GiB |
/// | [`coalesce`](Self::coalesce) | `true` | |
/// | [`coalesce_timeout`](Self::coalesce_timeout) | 10 s | > 0, ≤ 1 year, or none |
/// | [`refresh_timeout`](Self::refresh_timeout) | 30 s | > 0, ≤ 1 year |
/// | [`clock`](Self::clock) | `tokio` | `tokio` or `coarse` |
///
/// ```
/// use palisade_cache::CacheSettings;
/// use std::time::Duration;
///
/// let settings = CacheSettings {
///     ttl: Duration::from_secs(30),
///     ..CacheSettings::default()
/// };
/// assert!(settings.validate().is_ok());
/// let bad = CacheSettings { max_entry_bytes: 0, ..CacheSettings::default() };
/// assert_eq!(bad.validate().unwrap_err().field(), "max_entry_bytes");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct CacheSettings {
    /// How long an entry is fresh when the response says nothing (HTTP: no
    /// `s-maxage`, `max-age` or `Expires`), and for every entry of a
    /// non-HTTP cache.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub ttl: Duration,
    /// How long after it turns stale an entry is still served at once while
    /// one background refresh runs (RFC 5861 `stale-while-revalidate`,
    /// Varnish's grace). Zero turns it off.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub stale_while_revalidate: Duration,
    /// How long after it turns stale an entry is still served when the
    /// backend fails, times out or is refused by an open breaker (RFC 5861
    /// `stale-if-error`, nginx's `proxy_cache_use_stale`). Zero turns it off.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub stale_if_error: Duration,
    /// HTTP: store `404 Not Found` answers for this long (negative caching);
    /// `None` (the default) never stores them.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub negative_ttl: Option<Duration>,
    /// The memory bound of the process tier, in bytes: keys, values and a
    /// fixed overhead per entry, as weighed when stored.
    pub max_bytes: u64,
    /// The largest entry stored, in bytes. A larger response is passed
    /// through untouched (HTTP: streamed, never buffered beyond this).
    pub max_entry_bytes: u64,
    /// Concurrent misses on one key make one backend call, whose result
    /// every one of them gets (nginx's `proxy_cache_lock`).
    pub coalesce: bool,
    /// How long a coalesced request waits for the call it joined before it
    /// calls the backend on its own (nginx's `proxy_cache_lock_timeout`).
    /// `None`: as long as that call takes (put a timeout below the cache).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub coalesce_timeout: Option<Duration>,
    /// The longest a background refresh may run; it is then abandoned and
    /// the stale entry keeps being served within its windows.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub refresh_timeout: Duration,
    /// The clock that judges freshness, read once per request (a hit
    /// included): [`ClockSource::Tokio`] (the default, follows tokio's
    /// paused clock) or [`ClockSource::Coarse`] (cheaper, a few
    /// milliseconds coarse).
    pub clock: ClockSource,
}

/// The clock a cache reads to judge freshness and age, once per request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ClockSource {
    /// tokio's `Instant` (the default): exact, and follows tokio's paused
    /// clock, so tests run on virtual time. One `clock_gettime` of the
    /// monotonic clock per request: on a hit, the largest cost after the
    /// store's own lookup (`docs/benchmarks.md#cache`).
    #[default]
    Tokio,
    /// The kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`, read
    /// from the vDSO without the time-stamp counter): a few nanoseconds per
    /// read, no background thread, and as coarse as the kernel's tick (1 ms
    /// at `CONFIG_HZ=1000`, 4 ms at 250), so an entry may be judged fresh
    /// up to one tick after it turned stale, and `Age` may be one tick off. Does not follow tokio's paused clock: for
    /// production, where a hit's clock read is a large share of its cost.
    /// On systems other than Linux, Android and FreeBSD it reads tokio's
    /// clock, as [`Tokio`](Self::Tokio).
    Coarse,
}

impl ClockSource {
    /// `"tokio"` or `"coarse"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Coarse => "coarse",
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(300),
            negative_ttl: None,
            max_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            coalesce: true,
            coalesce_timeout: Some(Duration::from_secs(10)),
            refresh_timeout: Duration::from_secs(30),
            clock: ClockSource::Tokio,
        }
    }
}

fn positive(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(field, "must be greater than zero"));
    }
    at_most_a_year(field, d)
}

fn at_most_a_year(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d > MAX_DURATION {
        return Err(ConfigError::new(
            field,
            format!("must be at most one year (365 days), got {d:?}"),
        ));
    }
    Ok(())
}

impl CacheSettings {
    /// Checks every setting against its bounds; the error names the first
    /// bad one by its field (and builder setter) name. No side effect.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first setting out of bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("ttl", self.ttl)?;
        at_most_a_year("stale_while_revalidate", self.stale_while_revalidate)?;
        at_most_a_year("stale_if_error", self.stale_if_error)?;
        if let Some(ttl) = self.negative_ttl {
            positive("negative_ttl", ttl)?;
        }
        if self.max_bytes < 1024 || self.max_bytes > MAX_BYTES {
            return Err(ConfigError::new(
                "max_bytes",
                format!(
                    "must be between 1 KiB and 1 TiB, got {} bytes",
                    self.max_bytes
                ),
            ));
        }
        if self.max_entry_bytes == 0 {
            return Err(ConfigError::new("max_entry_bytes", "must be at least 1"));
        }
        if self.max_entry_bytes > self.max_bytes || self.max_entry_bytes > MAX_ENTRY_BYTES {
            return Err(ConfigError::new(
                "max_entry_bytes",
                format!(
                    "must be at most `max_bytes` ({}) and at most 1 GiB, got {}",
                    self.max_bytes, self.max_entry_bytes
                ),
            ));
        }
        if let Some(wait) = self.coalesce_timeout {
            positive("coalesce_timeout", wait)?;
        }
        positive("refresh_timeout", self.refresh_timeout)?;
        Ok(())
    }
}

/// The settings of the Redis tier (feature `redis`).
///
/// | setting | default | valid |
/// |---|---|---|
/// | [`key_prefix`](Self::key_prefix) | `palisade:cache:<name>:` | not empty, ≤ 256 bytes, no glob characters (`*?[]\`) |
/// | [`timeout`](Self::timeout) | 250 ms | > 0, ≤ 1 year |
/// | [`max_local_ttl`](Self::max_local_ttl) | none | > 0, ≤ 1 year |
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RedisSettings {
    /// The prefix of every key this cache writes, so caches (and tests)
    /// sharing one Redis never see each other's entries. `None`:
    /// `palisade:cache:<name>:`.
    pub key_prefix: Option<String>,
    /// The longest one Redis operation may take before it counts as a
    /// failure (the breaker in front of Redis sees it). `None`: 250 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Option<Duration>,
    /// A cap on how long an entry read from Redis stays fresh in the
    /// process tier, so that an invalidation made by another instance is
    /// seen within this time. `None`: the entry's own lifetime.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_local_ttl: Option<Duration>,
}

#[cfg(feature = "redis")]
impl RedisSettings {
    /// The default operation timeout: 250 ms.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// Checks every setting; the error names the first bad one.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the first setting out of bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(prefix) = &self.key_prefix {
            if prefix.is_empty() || prefix.len() > 256 {
                return Err(ConfigError::new(
                    "key_prefix",
                    format!("must be 1 to 256 bytes long, got {}", prefix.len()),
                ));
            }
            if prefix.contains(['*', '?', '[', ']', '\\']) {
                return Err(ConfigError::new(
                    "key_prefix",
                    format!("must not contain glob characters (*?[]\\), got {prefix:?}"),
                ));
            }
        }
        if let Some(timeout) = self.timeout {
            positive("timeout", timeout)?;
        }
        if let Some(ttl) = self.max_local_ttl {
            positive("max_local_ttl", ttl)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        CacheSettings::default().validate().unwrap();
    }

    #[test]
    fn each_bound_names_its_field() {
        let d = CacheSettings::default;
        let cases: Vec<(CacheSettings, &str)> = vec![
            (
                CacheSettings {
                    ttl: Duration::ZERO,
                    ..d()
                },
                "ttl",
            ),
            (
                CacheSettings {
                    ttl: MAX_DURATION + Duration::from_secs(1),
                    ..d()
                },
                "ttl",
            ),
            (
                CacheSettings {
                    stale_while_revalidate: MAX_DURATION * 2,
                    ..d()
                },
                "stale_while_revalidate",
            ),
            (
                CacheSettings {
                    stale_if_error: MAX_DURATION * 2,
                    ..d()
                },
                "stale_if_error",
            ),
            (
                CacheSettings {
                    negative_ttl: Some(Duration::ZERO),
                    ..d()
                },
                "negative_ttl",
            ),
            (
                CacheSettings {
                    max_bytes: 10,
                    ..d()
                },
                "max_bytes",
            ),
            (
                CacheSettings {
                    max_bytes: MAX_BYTES + 1,
                    ..d()
                },
                "max_bytes",
            ),
            (
                CacheSettings {
                    max_entry_bytes: 0,
                    ..d()
                },
                "max_entry_bytes",
            ),
            (
                CacheSettings {
                    max_bytes: 4096,
                    max_entry_bytes: 4097,
                    ..d()
                },
                "max_entry_bytes",
            ),
            (
                CacheSettings {
                    coalesce_timeout: Some(Duration::ZERO),
                    ..d()
                },
                "coalesce_timeout",
            ),
            (
                CacheSettings {
                    refresh_timeout: Duration::ZERO,
                    ..d()
                },
                "refresh_timeout",
            ),
        ];
        for (settings, field) in cases {
            let err = settings.validate().expect_err(field);
            assert_eq!(err.field(), field, "{err}");
        }
        // Zero windows are valid: the feature is off.
        CacheSettings {
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            coalesce_timeout: None,
            ..d()
        }
        .validate()
        .unwrap();
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_settings_bounds() {
        RedisSettings::default().validate().unwrap();
        let bad = RedisSettings {
            key_prefix: Some("a*".into()),
            ..RedisSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "key_prefix");
        let bad = RedisSettings {
            key_prefix: Some(String::new()),
            ..RedisSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "key_prefix");
        let bad = RedisSettings {
            timeout: Some(Duration::ZERO),
            ..RedisSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "timeout");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn toml_round_trip_with_duration_strings() {
        let settings: CacheSettings = toml::from_str(
            r#"
            ttl = "30s"
            stale_while_revalidate = "5s"
            negative_ttl = "2s"
            max_bytes = 1048576
            clock = "coarse"
            "#,
        )
        .unwrap();
        assert_eq!(settings.ttl, Duration::from_secs(30));
        assert_eq!(settings.clock, ClockSource::Coarse);
        assert_eq!(settings.negative_ttl, Some(Duration::from_secs(2)));
        assert_eq!(settings.stale_if_error, Duration::from_secs(300));
        let back: CacheSettings = toml::from_str(&toml::to_string(&settings).unwrap()).unwrap();
        assert_eq!(back, settings);
        let err = toml::from_str::<CacheSettings>("tll = \"1s\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
