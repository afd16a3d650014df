//! `[upstreams.<name>]`: where an upstream is, its timeouts, and its
//! resilience tables. `retry`, `circuit_breaker`, `bulkhead` and `hedge` are
//! the pattern crates' own settings structs, checked by their `validate()`
//! (the breaker's keys are rewritten by [`super::circuit_breaker`]); `cache`
//! is read by [`super::cache`].

use std::time::Duration;

use palisade::ConfigError;
use palisade::bulkhead::BulkheadSettings;
use palisade::circuit_breaker::CircuitBreakerSettings;
use palisade::hedge::HedgeSettings;
use palisade::retry::RetrySettings;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::cache::{self, CacheConfig, RawCache};
use super::circuit_breaker;
use super::demo::DemoConfig;
use super::document::{self, DialectError, Seg};
use super::{Checker, ConfigFileError};

/// `[upstreams.<name>]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    url: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<i64>>,
    attempt_timeout_ms: Option<Spanned<i64>>,
    retry: Option<RetrySettings>,
    circuit_breaker: Option<CircuitBreakerSettings>,
    bulkhead: Option<BulkheadSettings>,
    hedge: Option<HedgeSettings>,
    shards: Option<super::shards::RawShards>,
    cache: Option<RawCache>,
}

/// The tables of `[upstreams.<name>]` that a pattern crate owns, in the
/// crate's own form (see [`document::crate_dialect`]).
pub(super) fn in_crate_form(upstream: &mut DeTable<'_>) -> Result<(), DialectError> {
    for (key, value) in upstream.iter_mut() {
        let span = value.span();
        let DeValue::Table(table) = value.get_mut() else {
            continue;
        };
        match key.get_ref().as_ref() {
            "retry" | "bulkhead" | "hedge" => document::crate_dialect(table)?,
            "circuit_breaker" => circuit_breaker::in_crate_form(table)?,
            "cache" => cache::in_crate_form(table, span)?,
            _ => {}
        }
    }
    Ok(())
}

pub use super::target::UpstreamTarget;

/// `[upstreams.<name>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// `url`.
    pub target: UpstreamTarget,
    /// `timeout_ms`: the whole call, every attempt and backoff included, up
    /// to response headers (default 2 s; the outermost layer).
    pub timeout: Duration,
    /// `attempt_timeout_ms`: one attempt, inside the circuit breaker, so a
    /// hung attempt is a failure the breaker counts and retry may retry
    /// (default: `timeout_ms`; at most `timeout_ms`).
    pub attempt_timeout: Duration,
    /// `[upstreams.<name>.retry]`: the retry crate's settings (a key left
    /// out takes its default).
    pub retry: Option<RetrySettings>,
    /// `[upstreams.<name>.circuit_breaker]`: the circuit breaker crate's
    /// settings (a key left out takes its default).
    pub circuit_breaker: Option<CircuitBreakerSettings>,
    /// `[upstreams.<name>.bulkhead]`: the bulkhead crate's settings (a key
    /// left out takes its default).
    pub bulkhead: Option<BulkheadSettings>,
    /// `[upstreams.<name>.hedge]`: the hedge crate's settings (a key left
    /// out takes its default); without the table, no hedging. Only
    /// idempotent requests are hedged, by the retry layer's rule.
    pub hedge: Option<HedgeSettings>,
    /// `[upstreams.<name>.shards]`: the shard router's settings and the
    /// shards, each an upstream of its own with the stack above (`None`:
    /// not sharded).
    pub shards: Option<super::shards::ShardsConfig>,
    /// `[upstreams.<name>.cache]`: the cache crate's settings, and its
    /// Redis tier (see [`super::cache`]).
    pub cache: Option<CacheConfig>,
}

impl Checker<'_> {
    pub(super) fn upstream(
        &self,
        name: &str,
        up: RawUpstream,
        demo: Option<&DemoConfig>,
    ) -> Result<UpstreamConfig, ConfigFileError> {
        let key = format!("upstreams.{name}");
        let shards = match up.shards {
            Some(raw) => Some(self.shards(name, raw, |backend| {
                demo.is_some_and(|d| d.backends.contains_key(backend))
            })?),
            None => None,
        };
        let no_url = Spanned::new(0..0, String::new());
        let url_spanned = match (&up.url, &shards) {
            (Some(url), None) => url,
            (Some(url), Some(_)) => {
                return self.err(
                    url.span(),
                    format!("{key}.url"),
                    format!("a sharded upstream has no `url`: each of `[[{key}.shards.members]]` has its own"),
                );
            }
            (None, _) => &no_url,
        };
        let url = url_spanned.get_ref();
        let target = if shards.is_some() {
            UpstreamTarget::Shards
        } else if up.url.is_none() {
            let span = document::get(self.root, &[Seg::Key("upstreams"), Seg::Key(name)])
                .map_or(0..0, |(span, _)| span);
            return self.err(span, key, "missing field `url`");
        } else if let Some(service) = url.strip_prefix("demo://") {
            match demo {
                Some(d) if d.backends.contains_key(service) => {
                    UpstreamTarget::Demo(service.to_owned())
                }
                _ => {
                    return self.err(
                        url_spanned.span(),
                        format!("{key}.url"),
                        format!("`{url}` names no demo backend: declare `[demo.backends.{service}]` with `[demo] enabled = true`"),
                    );
                }
            }
        } else {
            match url.parse::<http::Uri>() {
                Ok(uri)
                    if uri.scheme_str() == Some("http")
                        && uri.authority().is_some()
                        && uri.query().is_none() =>
                {
                    UpstreamTarget::Url(uri)
                }
                Ok(uri) if uri.scheme_str() == Some("https") => {
                    return self.err(url_spanned.span(), format!("{key}.url"), format!("`{uri}`: https upstreams are not supported by this build (no TLS); use http://"));
                }
                _ => {
                    return self.err(url_spanned.span(), format!("{key}.url"), format!("`{url}` is not an upstream URL like http://127.0.0.1:9000 or demo://user"));
                }
            }
        };
        let timeout = self.millis(
            up.timeout_ms.as_ref(),
            &format!("{key}.timeout_ms"),
            2_000,
            false,
        )?;
        let attempt_timeout = match up.attempt_timeout_ms.as_ref() {
            None => timeout,
            Some(v) => {
                let attempt =
                    self.millis(Some(v), &format!("{key}.attempt_timeout_ms"), 0, false)?;
                if attempt > timeout {
                    return self.err(
                        v.span(),
                        format!("{key}.attempt_timeout_ms"),
                        format!(
                            "must be at most timeout_ms ({} ms), got {} ms",
                            timeout.as_millis(),
                            attempt.as_millis()
                        ),
                    );
                }
                attempt
            }
        };
        let path = |table| [Seg::Key("upstreams"), Seg::Key(name), Seg::Key(table)];
        if let Some(retry) = &up.retry {
            retry
                .validate()
                .map_err(|e| self.settings_err(&path("retry"), &format!("{key}.retry"), &e))?;
            if retry.attempt_timeout.is_some() {
                // The retry layer's own would sit outside the breaker, which
                // would then never count a hung attempt.
                let e = ConfigError::new(
                    "attempt_timeout",
                    format!(
                        "not set here: the per-attempt timeout is `{key}.attempt_timeout_ms`, a layer inside the circuit breaker"
                    ),
                );
                return Err(self.settings_err(&path("retry"), &format!("{key}.retry"), &e));
            }
        }
        if let Some(bulkhead) = &up.bulkhead {
            bulkhead.validate().map_err(|e| {
                self.settings_err(&path("bulkhead"), &format!("{key}.bulkhead"), &e)
            })?;
        }
        if let Some(breaker) = &up.circuit_breaker {
            self.breaker(name, breaker)?;
        }
        if let Some(hedge) = &up.hedge {
            hedge
                .validate()
                .map_err(|e| self.settings_err(&path("hedge"), &format!("{key}.hedge"), &e))?;
        }
        let cache = up.cache.map(|c| self.cache(name, c)).transpose()?;
        Ok(UpstreamConfig {
            target,
            timeout,
            attempt_timeout,
            retry: up.retry,
            circuit_breaker: up.circuit_breaker,
            bulkhead: up.bulkhead,
            hedge: up.hedge,
            shards,
            cache,
        })
    }
}
