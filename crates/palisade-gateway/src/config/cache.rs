//! `[upstreams.<name>.cache]`: a cache in front of the upstream's stack.
//!
//! The table's keys are the cache crate's
//! [`CacheSettings`] (`ttl`,
//! `stale_while_revalidate`, `stale_if_error`, `negative_ttl`, `max_bytes`,
//! `max_entry_bytes`, `coalesce`, `coalesce_timeout`, `refresh_timeout`,
//! `clock`), checked by its `validate()`; a duration is a string (`"30s"`)
//! or an integer of milliseconds under the key plus `_ms`. The optional
//! `[upstreams.<name>.cache.redis]` adds the Redis tier a fleet of gateways
//! shares: `url` is the gateway's key, the rest the crate's
//! [`RedisSettings`] (`key_prefix`,
//! `timeout`, `max_local_ttl`).

use std::ops::Range;

use palisade::cache::{CacheSettings, RedisSettings};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::document::{self, DialectError, Seg};
use super::{Checker, ConfigFileError};

/// The gateway's own key of the cache table; the rest are [`CacheSettings`].
const CACHE_KEYS: [&str; 1] = ["redis"];
/// The gateway's own key of the Redis table; the rest are [`RedisSettings`].
const REDIS_KEYS: [&str; 1] = ["url"];

/// `[upstreams.<name>.cache]` as written: the crate's settings (nested under
/// `settings` by [`in_crate_form`]) and the Redis tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(default)]
    settings: CacheSettings,
    #[serde(default)]
    redis: Option<RawRedis>,
}

/// `[upstreams.<name>.cache.redis]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Spanned<String>,
    #[serde(default)]
    settings: RedisSettings,
}

/// `[upstreams.<name>.cache]` (spanned `span`) in the crate's form: `_ms`
/// keys as durations, the cache's settings under `settings`, the Redis
/// tier's under `redis.settings`.
pub(super) fn in_crate_form(
    cache: &mut DeTable<'_>,
    span: Range<usize>,
) -> Result<(), DialectError> {
    document::crate_dialect(cache)?;
    for (key, value) in cache.iter_mut() {
        if key.get_ref() != "redis" {
            continue;
        }
        let span = value.span();
        if let DeValue::Table(redis) = value.get_mut() {
            document::nest(redis, &REDIS_KEYS, "settings", span);
        }
    }
    document::nest(cache, &CACHE_KEYS, "settings", span);
    Ok(())
}

/// `[upstreams.<name>.cache]`: the upstream's cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// The cache crate's settings (a key left out takes its default).
    pub settings: CacheSettings,
    /// `[upstreams.<name>.cache.redis]`: the shared tier, if any.
    pub redis: Option<CacheRedisConfig>,
}

/// `[upstreams.<name>.cache.redis]`: the Redis tier of a cache, shared by
/// every gateway that names the same server and key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheRedisConfig {
    /// `url`: `redis://[user:password@]host[:port][/db]` (no TLS in this
    /// build).
    pub url: String,
    /// The cache crate's Redis settings (`key_prefix`, `timeout`,
    /// `max_local_ttl`).
    pub settings: RedisSettings,
}

impl Checker<'_> {
    /// Checks `[upstreams.<name>.cache]` with the crate's `validate()`.
    pub(super) fn cache(&self, name: &str, raw: RawCache) -> Result<CacheConfig, ConfigFileError> {
        let dotted = format!("upstreams.{name}.cache");
        let path = [Seg::Key("upstreams"), Seg::Key(name), Seg::Key("cache")];
        raw.settings
            .validate()
            .map_err(|e| self.settings_err(&path, &dotted, &e))?;
        let redis = match raw.redis {
            None => None,
            Some(redis) => {
                let key = format!("{dotted}.redis.url");
                let url = redis.url.get_ref();
                if url.starts_with("rediss://") {
                    return self.err(
                        redis.url.span(),
                        key,
                        format!("`{url}`: TLS is not supported by this build; use redis://"),
                    );
                }
                if !url.starts_with("redis://") {
                    return self.err(
                        redis.url.span(),
                        key,
                        format!("`{url}` is not a Redis URL like redis://127.0.0.1:6379"),
                    );
                }
                if let Err(err) = redis::Client::open(url.as_str()) {
                    return self.err(
                        redis.url.span(),
                        key,
                        format!("`{url}` is not a Redis URL: {err}"),
                    );
                }
                let path = [
                    Seg::Key("upstreams"),
                    Seg::Key(name),
                    Seg::Key("cache"),
                    Seg::Key("redis"),
                ];
                redis
                    .settings
                    .validate()
                    .map_err(|e| self.settings_err(&path, &format!("{dotted}.redis"), &e))?;
                Some(CacheRedisConfig {
                    url: url.clone(),
                    settings: redis.settings,
                })
            }
        };
        Ok(CacheConfig {
            settings: raw.settings,
            redis,
        })
    }
}
