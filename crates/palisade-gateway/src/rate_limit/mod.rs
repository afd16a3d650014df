//! The rate-limit feature: per-client limits on the `/api` routes
//! (`[rate_limit]`), with the rate-limit crate's limiter, keys, tiers and
//! HTTP answers.
//!
//! # Keys and tiers
//!
//! A request is keyed by its API key (the `api_key_header`, `x-api-key` by
//! default), else by its client's IP address (the connection's peer, or the
//! `client_ip_header` a reverse proxy sets), with the crate's extractors
//! (`palisade::rate_limit::http::{header, client_ip}`). Its tier is the
//! one `key_tiers` assigns the key to, else `api_key_tier` for an API key
//! and `client_ip_tier` for an address (both `default` unless set): so the
//! config gives free and paid API keys, and anonymous clients, limits of
//! their own. Metrics, the admin API and the dashboard name tiers, never
//! keys.
//!
//! The gateway does not authenticate API keys: an unknown key is limited
//! under `api_key_tier`, so a client that invents keys gets that tier's
//! allowance per key, until the key table is full and newcomers share one
//! overflow allowance (the crate's `max_keys`). Give `api_key_tier` a limit
//! you can afford per client.
//!
//! A key header that cannot be a key (empty, not visible ASCII, longer than
//! `max_key_len`) is answered `400` (problem+json) and not counted. A
//! request with neither (no API key, no client address: only a service
//! called in-process has none) follows `missing_key`: by default all such
//! requests share one key of the default tier.
//!
//! # Where it sits
//!
//! [`crate::routes`] applies the limiter to every request whose path is
//! `/api` or under it (the proxy routes and the aggregator), *inside* the
//! request id, the access log, the body limit and the panic catcher, and
//! before the route: a refused request is logged like any other, carries its
//! `x-request-id`, and costs no upstream work. The answer is the crate's:
//! `429` with `Retry-After`, `RateLimit-Policy`, `RateLimit`,
//! `x-palisade-rate-limit` and a problem+json body; admitted responses carry
//! `RateLimit-Policy` and `RateLimit` too.
//!
//! # Backends
//!
//! `backend = "memory"` keeps the limits in the gateway's process (shared by
//! its worker threads). `backend = "redis"` keeps them in Redis, so that
//! every gateway on that Redis (with the same `key_prefix`) shares one
//! limit. The connection is made lazily (start-up does not wait for it, and
//! a Redis down at start-up is a Redis down: the `failure_mode` applies,
//! `open` deciding with the in-process limiter, `closed` refusing with
//! `503`); [`ApiRateLimit::check_backend`] makes the first connection and
//! logs whether it worked.

pub mod meter;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};
use palisade::rate_limit::backend::RedisBackend;
use palisade::rate_limit::http::{ClientIp, HeaderKey, HttpRateLimitLayer, client_ip};
use palisade::rate_limit::key::{KeyResult, Or, WithClass};
use palisade::rate_limit::{
    KeyExtractor, KeyExtractorExt, RateLimitHandle, RateLimitLayer, RateLimitRegistry,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use meter::{RateMeter, TierRate};

/// The config section: `[rate_limit]`.
pub use crate::config::{RateLimitBackend, RateLimitConfig};
use crate::shared::StartError;

/// The limiter's name: its metrics' `name` label, its registry entry
/// (`/admin/rate-limits/api`), its `x-palisade-rate-limit` header and, by
/// default, its Redis key prefix (`palisade:rate-limit:api:`).
pub const NAME: &str = "api";

/// The path prefix the limiter covers.
pub const API_PREFIX: &str = "/api";

/// `true` if `path` is [`API_PREFIX`] or under it.
#[must_use]
pub fn covers(path: &str) -> bool {
    path.strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The client's address from the value the gateway forwards in
/// `X-Forwarded-For` for a connection (its peer's IP address): what the
/// client-IP key reads when no `client_ip_header` is configured.
#[must_use]
pub fn client_addr(forwarded: Option<&HeaderValue>) -> Option<IpAddr> {
    forwarded?.to_str().ok()?.parse().ok()
}

type Extractor = Or<WithClass<HeaderKey>, WithClass<ClientIp>>;

/// The key of an `/api` request: the API key header (of class
/// `api_key_tier`), else the client's IP address (of class
/// `client_ip_tier`), read by the crate's extractors. Cloning it (once per
/// request) is one reference count.
#[derive(Clone, Debug)]
pub struct ApiKey(Arc<Extractor>);

impl ApiKey {
    /// The key extractor `config` describes.
    #[must_use]
    pub fn new(config: &RateLimitConfig) -> Self {
        let mut ip = client_ip();
        if let Some(header) = &config.client_ip_header {
            ip = ip
                .from_header(header.clone())
                .trusted_proxies(config.trusted_proxies);
        }
        let key = HeaderKey::new(config.api_key_header.clone())
            .class(config.api_key_tier.clone())
            .or(ip.class(config.client_ip_tier.clone()));
        Self(Arc::new(key))
    }
}

impl<B> KeyExtractor<Request<B>> for ApiKey {
    #[inline]
    fn extract<'r>(&'r self, req: &'r Request<B>) -> KeyResult<'r> {
        self.0.extract(req)
    }
}

impl KeyExtractorExt for ApiKey {}

/// The `/api` limiter: its HTTP layer, and the meter the dashboard reads its
/// rates from.
#[derive(Debug)]
pub struct ApiRateLimit {
    layer: HttpRateLimitLayer<ApiKey>,
    redis: Option<RedisBackend>,
    meter: RateMeter,
}

impl ApiRateLimit {
    /// Builds the limiter of `config`, registered in `registry` as [`NAME`].
    /// With the Redis backend, the connection is made on first use (see
    /// [`check_backend`](Self::check_backend)); its background task needs a
    /// tokio runtime, so call this within one.
    ///
    /// # Errors
    ///
    /// The crate's builder refuses the settings (not for a config that
    /// loaded, but for a rate finer than a microsecond with Redis), or the
    /// Redis backend is asked for outside a tokio runtime.
    pub fn build(
        config: &RateLimitConfig,
        registry: &RateLimitRegistry,
    ) -> Result<Self, StartError> {
        let mut builder = RateLimitLayer::builder(NAME)
            .settings(config.settings.clone())
            .registry(registry);
        let mut redis = None;
        if let RateLimitBackend::Redis { url } = &config.backend {
            let backend = redis_backend(url)?;
            builder = builder.redis(backend.clone());
            redis = Some(backend);
        }
        let layer = builder
            .key(ApiKey::new(config))
            .build()
            .map_err(|e| StartError::Other(format!("rate_limit: {e}")))?;
        Ok(Self {
            layer: layer.http_layer(),
            redis,
            meter: RateMeter::default(),
        })
    }

    /// The HTTP layer: `429` answers with the crate's headers, and the
    /// `RateLimit` fields on admitted responses.
    #[must_use]
    pub const fn layer(&self) -> &HttpRateLimitLayer<ApiKey> {
        &self.layer
    }

    /// The limiter's handle: its snapshot, and its limits changed at
    /// runtime.
    #[must_use]
    pub fn handle(&self) -> RateLimitHandle {
        self.layer.handle()
    }

    /// The allowed and limited rates per tier, for the dashboard.
    #[must_use]
    pub const fn meter(&self) -> &RateMeter {
        &self.meter
    }

    /// With the Redis backend: connects (waiting at most `within`) and logs
    /// whether Redis answered; `Some(answered)`. Without it: `None`. A Redis
    /// that does not answer is not an error: the limiter's `failure_mode`
    /// applies until it does.
    pub async fn check_backend(&self, within: Duration) -> Option<bool> {
        let redis = self.redis.as_ref()?;
        let mut conn: ConnectionManager = redis.connection().clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let failure_mode = self.handle().snapshot().remote.map(|r| r.failure_mode);
        let mode = failure_mode.map_or("open", |m| m.as_str());
        match tokio::time::timeout(within, ping).await {
            Ok(Ok(_)) => {
                tracing::info!(name = NAME, "rate limit backend: connected to Redis");
                Some(true)
            }
            Ok(Err(err)) => {
                tracing::warn!(name = NAME, %err, failure_mode = mode, "rate limit backend: Redis does not answer; its failure mode decides until it does");
                Some(false)
            }
            Err(_) => {
                tracing::warn!(
                    name = NAME,
                    within_ms = within.as_millis(),
                    failure_mode = mode,
                    "rate limit backend: Redis did not answer in time; its failure mode decides until it does"
                );
                Some(false)
            }
        }
    }
}

/// A Redis backend on `url` that connects on first use, with the
/// reconnection the crate's `RedisBackend::connect` uses (10 ms doubling to
/// 200 ms, four tries per failure, one second per connection attempt).
fn redis_backend(url: &str) -> Result<RedisBackend, StartError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(StartError::Other(
            "rate_limit: the Redis backend needs a tokio runtime".to_owned(),
        ));
    }
    let client = redis::Client::open(url)
        .map_err(|e| StartError::Other(format!("rate_limit.redis_url: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(200))
        .set_number_of_retries(4)
        .set_connection_timeout(Some(Duration::from_secs(1)));
    let manager = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| StartError::Other(format!("rate_limit: Redis: {e}")))?;
    Ok(RedisBackend::new(manager))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_api_and_below_only() {
        for path in [
            "/api",
            "/api/",
            "/api/user/users/7",
            "/api/dashboard/user/1",
        ] {
            assert!(covers(path), "{path}");
        }
        for path in [
            "/",
            "/apix",
            "/ap",
            "/dashboard",
            "/admin/rate-limits",
            "/x/api",
        ] {
            assert!(!covers(path), "{path}");
        }
    }

    #[test]
    fn client_addresses_parse_from_the_forwarded_value() {
        let v4 = HeaderValue::from_static("10.1.2.3");
        assert_eq!(client_addr(Some(&v4)), Some(IpAddr::from([10, 1, 2, 3])));
        let v6 = HeaderValue::from_static("::1");
        assert_eq!(
            client_addr(Some(&v6)),
            Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        );
        assert_eq!(
            client_addr(Some(&HeaderValue::from_static("unknown"))),
            None
        );
        assert_eq!(client_addr(None), None);
    }
}
