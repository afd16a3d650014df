//! `[rate_limit]`: per-client limits on the `/api` routes, keyed by an API
//! key header, else the client's IP address.
//!
//! The table's crate keys are the rate-limit crate's own
//! [`RateLimitSettings`] (`rate`, `burst`, `tiers`, `key_tiers`,
//! `max_delay`, `max_keys`, `max_key_len`, `missing_key`, `headers`,
//! `failure_mode`, `backend_timeout`, `key_prefix`, `clock`), checked by its
//! `validate()`; durations are strings (`max_delay = "200ms"`) or integers of
//! milliseconds under `_ms` (`backend_timeout_ms = 50`). The gateway's own
//! keys say where keys come from and where the limiter keeps its state:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `enabled` | `true` | `false` turns the limiter off (the section is still checked) |
//! | `api_key_header` | `x-api-key` | the header holding a client's API key |
//! | `api_key_tier` | `default` | the tier of an API key `key_tiers` does not list |
//! | `client_ip_tier` | `default` | the tier of a request without an API key, keyed by its client IP |
//! | `client_ip_header` | none | behind a reverse proxy: the header it puts the client's address in (`x-forwarded-for`); none: the connection's address |
//! | `trusted_proxies` | `0` | with `client_ip_header`: how many proxies of yours append an address after the outermost one |
//! | `backend` | `memory` | `memory` (each gateway its own limit) or `redis` (one limit for every gateway on that Redis) |
//! | `redis_url` | none | with `backend = "redis"`: `redis://host:port/db` |
//!
//! A tier named by `api_key_tier`, `client_ip_tier` or `key_tiers` must be
//! `default` (the top-level `rate` and `burst`) or a table of `tiers`.

use std::ops::Range;

use http::HeaderName;
use palisade::rate_limit::{DEFAULT_TIER, RateLimitSettings};
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::document::{self, DialectError, Seg};
use super::{Checker, ConfigFileError};

/// The gateway's own keys of `[rate_limit]`; the rest are the crate's
/// [`RateLimitSettings`].
const GATEWAY_KEYS: [&str; 8] = [
    "enabled",
    "api_key_header",
    "api_key_tier",
    "client_ip_tier",
    "client_ip_header",
    "trusted_proxies",
    "backend",
    "redis_url",
];

/// The default `api_key_header`.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// `[rate_limit]` as written: the crate's settings nested under `settings`
/// by [`in_crate_form`], next to the gateway's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    enabled: Option<bool>,
    api_key_header: Option<Spanned<String>>,
    api_key_tier: Option<Spanned<String>>,
    client_ip_tier: Option<Spanned<String>>,
    client_ip_header: Option<Spanned<String>>,
    trusted_proxies: Option<usize>,
    backend: Option<Spanned<String>>,
    redis_url: Option<Spanned<String>>,
    #[serde(default)]
    settings: RateLimitSettings,
}

/// `[rate_limit]` in the crate's form: `_ms` keys as durations (not inside
/// `key_tiers`, whose keys are API keys, not settings), the crate's settings
/// under `settings`.
pub(super) fn in_crate_form(section: &mut Spanned<DeValue<'_>>) -> Result<(), DialectError> {
    let span = section.span();
    let DeValue::Table(table) = section.get_mut() else {
        return Ok(());
    };
    let mut key_tiers = None;
    for (key, value) in std::mem::take(table) {
        if key.get_ref() == "key_tiers" {
            key_tiers = Some((key, value));
        } else {
            table.insert(key, value);
        }
    }
    document::crate_dialect(table)?;
    if let Some((key, value)) = key_tiers {
        table.insert(key, value);
    }
    document::nest(table, &GATEWAY_KEYS, "settings", span);
    Ok(())
}

/// Where the limiter keeps its state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RateLimitBackend {
    /// `"memory"`: in the gateway's process; each gateway has its own limit.
    #[default]
    Memory,
    /// `"redis"`: in Redis at `url`; every gateway using it (with the same
    /// `key_prefix`) shares one limit.
    Redis {
        /// `redis_url`.
        url: String,
    },
}

impl RateLimitBackend {
    /// `"memory"` or `"redis"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis { .. } => "redis",
        }
    }
}

/// `[rate_limit]`: the limit on the `/api` routes; see the
/// [module docs](self) for the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// The rate-limit crate's settings: the default tier (`rate`, `burst`),
    /// `tiers`, `key_tiers` and the rest.
    pub settings: RateLimitSettings,
    /// `api_key_header`: where a client's API key is.
    pub api_key_header: HeaderName,
    /// `api_key_tier`: the tier of an API key that `key_tiers` does not
    /// list.
    pub api_key_tier: String,
    /// `client_ip_tier`: the tier of a request without an API key.
    pub client_ip_tier: String,
    /// `client_ip_header`: the header a reverse proxy puts the client's
    /// address in (`None`: the connection's peer address).
    pub client_ip_header: Option<HeaderName>,
    /// `trusted_proxies`: with `client_ip_header`, the proxies of yours
    /// that append an address after the outermost one.
    pub trusted_proxies: usize,
    /// `backend` (with `redis_url`).
    pub backend: RateLimitBackend,
}

impl Checker<'_> {
    /// A header name, lowercased; refused at `key` if it is not one.
    fn header_name(&self, v: &Spanned<String>, key: &str) -> Result<HeaderName, ConfigFileError> {
        HeaderName::from_bytes(v.get_ref().to_ascii_lowercase().as_bytes()).or_else(|_| {
            self.err(
                v.span(),
                key,
                format!("`{}` is not a valid header name", v.get_ref()),
            )
        })
    }

    /// The tier named at `key` (`default` when not written), which must be
    /// one the limiter has: `default` or one of `tiers`.
    fn tier(
        &self,
        settings: &RateLimitSettings,
        written: Option<Spanned<String>>,
        key: &str,
    ) -> Result<String, ConfigFileError> {
        let Some(written) = written else {
            return Ok(DEFAULT_TIER.to_owned());
        };
        let span: Range<usize> = written.span();
        let tier = written.into_inner();
        if tier == DEFAULT_TIER || settings.tiers.contains_key(&tier) {
            return Ok(tier);
        }
        let mut known = vec![DEFAULT_TIER];
        known.extend(settings.tiers.keys().map(String::as_str));
        self.err(
            span,
            key,
            format!(
                "no tier named `{tier}` (defined: {}; add it under [rate_limit.tiers])",
                known.join(", ")
            ),
        )
    }

    pub(super) fn rate_limit(
        &self,
        raw: RawRateLimit,
    ) -> Result<Option<RateLimitConfig>, ConfigFileError> {
        let settings = raw.settings;
        settings
            .validate()
            .map_err(|e| self.settings_err(&[Seg::Key("rate_limit")], "rate_limit", &e))?;
        let api_key_header = match &raw.api_key_header {
            Some(v) => self.header_name(v, "rate_limit.api_key_header")?,
            None => HeaderName::from_static(DEFAULT_API_KEY_HEADER),
        };
        let client_ip_header = match &raw.client_ip_header {
            Some(v) => Some(self.header_name(v, "rate_limit.client_ip_header")?),
            None => None,
        };
        if raw.trusted_proxies.is_some() && client_ip_header.is_none() {
            let (span, key) = document::place(
                self.root,
                &[Seg::Key("rate_limit")],
                "rate_limit",
                "trusted_proxies",
            );
            return self.err(
                span,
                key,
                "only used with `client_ip_header` (without it the connection's address is the client's)",
            );
        }
        let api_key_tier = self.tier(&settings, raw.api_key_tier, "rate_limit.api_key_tier")?;
        let client_ip_tier =
            self.tier(&settings, raw.client_ip_tier, "rate_limit.client_ip_tier")?;
        let backend = match raw
            .backend
            .as_ref()
            .map(|v| (v.get_ref().as_str(), v.span()))
        {
            None | Some(("memory", _)) => RateLimitBackend::Memory,
            Some(("redis", backend_span)) => {
                let Some(url) = raw.redis_url else {
                    return self.err(
                        backend_span,
                        "rate_limit.redis_url",
                        "`backend = \"redis\"` needs `redis_url` (redis://host:port/db)",
                    );
                };
                if let Err(err) = redis::Client::open(url.get_ref().as_str()) {
                    return self.err(
                        url.span(),
                        "rate_limit.redis_url",
                        format!("not a Redis URL: {err}"),
                    );
                }
                RateLimitBackend::Redis {
                    url: url.into_inner(),
                }
            }
            Some((other, span)) => {
                return self.err(
                    span,
                    "rate_limit.backend",
                    format!("unknown backend `{other}` (expected memory or redis)"),
                );
            }
        };
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        Ok(Some(RateLimitConfig {
            settings,
            api_key_header,
            api_key_tier,
            client_ip_tier,
            client_ip_header,
            trusted_proxies: raw.trusted_proxies.unwrap_or(0),
            backend,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::de::DeTable;

    #[test]
    fn key_tiers_keep_their_keys_and_settings_nest() {
        let text = "[rate_limit]\nmax_delay_ms = 5\nbackend = \"memory\"\n[rate_limit.key_tiers]\nk_ms = \"paid\"\n";
        let mut root = DeTable::parse(text).unwrap();
        let (_, section) = root.get_mut().iter_mut().next().unwrap();
        in_crate_form(section).ok().unwrap();
        let DeValue::Table(t) = section.get_ref() else {
            panic!()
        };
        let mut keys: Vec<String> = t.keys().map(|k| k.get_ref().to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["backend", "settings"]);
        let settings = t.iter().find(|(k, _)| k.get_ref() == "settings").unwrap().1;
        let DeValue::Table(s) = settings.get_ref() else {
            panic!()
        };
        let mut keys: Vec<String> = s.keys().map(|k| k.get_ref().to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["key_tiers", "max_delay"]);
    }
}
