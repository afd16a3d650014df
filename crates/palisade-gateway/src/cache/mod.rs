//! The cache feature: `[upstreams.<name>.cache]`, a cache-aside layer
//! ([`palisade::cache`], its HTTP policy) in front of an upstream's stack,
//! with an optional Redis tier a fleet of gateways shares.
//!
//! The proxy puts it just inside the statistics layer, above the overall
//! timeout, retry, the breaker and the bulkhead
//! ([`build_stack`](crate::proxy::upstream::build_stack)): a hit costs none
//! of them, and a miss goes through all of them. So an upstream's cache
//! serves both its proxy route and the aggregator's branches on it, and
//! with the backend down (a 5xx once retries are spent, a timeout, an open
//! breaker) a stale entry answers within `stale_if_error`.
//!
//! # Keys
//!
//! The crate's HTTP key: method and URI as the upstream's stack gets them,
//! plus the `Vary` headers. A proxy route sends the path and query below its
//! prefix (`GET /api/product/products/7` is keyed `/products/7`); the
//! aggregator's branches send absolute URIs under the upstream's `url`
//! (`http://127.0.0.1:41234/users/7/recommendations`). [`key_forms`] gives
//! both forms of a key, which the admin API's purge removes together.

use axum::body::Body;
use http::{Response, Uri};
use palisade::ConfigError;
use palisade::cache::backend::redis::RedisTier;
use palisade::cache::http::{CacheBody, HttpPolicy};
use palisade::cache::{Cache, CacheLayer, RedisSettings};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tower::layer::util::{Identity, Stack};
use tower::util::{Either, MapResponse, MapResponseLayer};

/// The cache's config section: `[upstreams.<name>.cache]`.
pub use crate::config::{CacheConfig, CacheRedisConfig};

/// An upstream's cache layer (HTTP policy).
pub type UpstreamCacheLayer = CacheLayer<HttpPolicy>;

/// The cache's answer with its body as the rest of the gateway takes it.
pub type FromCache = fn(Response<CacheBody<Body>>) -> Response<Body>;

fn from_cache(res: Response<CacheBody<Body>>) -> Response<Body> {
    res.map(Body::new)
}

/// `S` under an upstream's cache, or `S` itself when it has none.
pub type Cached<S> = Either<MapResponse<Cache<S, HttpPolicy>, FromCache>, S>;

/// The layer that makes [`Cached`]: the cache (answering
/// `Response<Body>`) when the upstream has one, a pass-through otherwise.
pub type MaybeCacheLayer = Either<Stack<UpstreamCacheLayer, MapResponseLayer<FromCache>>, Identity>;

/// The layer of `cache`, if any (see [`MaybeCacheLayer`]).
#[must_use]
pub fn layer(cache: Option<&UpstreamCacheLayer>) -> MaybeCacheLayer {
    match cache {
        Some(cache) => Either::Left(Stack::new(
            cache.clone(),
            MapResponseLayer::new(from_cache as FromCache),
        )),
        None => Either::Right(Identity::new()),
    }
}

/// Builds the cache of upstream `name` from `config`, named `name`: the
/// crate's settings as configured, and the Redis tier when
/// `[upstreams.<name>.cache.redis]` is set.
///
/// The Redis connection is made lazily, on the cache's first use of it, so
/// a gateway starts (and serves from its process tier, behind the tier's
/// breaker) while Redis is down; building one needs a tokio runtime.
///
/// # Errors
///
/// The builder's [`ConfigError`] (a loaded config has been checked with
/// the crate's `validate()`, so it builds), or a Redis URL the client
/// refuses, or no tokio runtime to connect from (field `redis.url`).
pub fn build(name: &str, config: &CacheConfig) -> Result<UpstreamCacheLayer, ConfigError> {
    let mut builder = CacheLayer::http_builder(name).settings(config.settings.clone());
    if let Some(redis) = &config.redis {
        builder = builder.redis(redis_tier(redis)?);
    }
    builder.build()
}

/// How long connecting to Redis may take before the operation fails (the
/// tier's breaker counts it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn redis_tier(config: &CacheRedisConfig) -> Result<RedisTier, ConfigError> {
    let url_error = |reason: String| ConfigError::new("redis.url", reason);
    let client = redis::Client::open(config.url.as_str()).map_err(|e| url_error(e.to_string()))?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(url_error(
            "the Redis tier connects from a tokio runtime: build the gateway's state on one"
                .to_owned(),
        ));
    }
    let response_timeout = config
        .settings
        .timeout
        .unwrap_or(RedisSettings::DEFAULT_TIMEOUT);
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1);
    let connection = ConnectionManager::new_lazy_with_config(client, manager)
        .map_err(|e| url_error(e.to_string()))?;
    Ok(RedisTier::new(connection).settings(config.settings.clone()))
}

/// The two forms a purge of `key` (a path, `/products/7`, or a prefix of
/// one) removes for an upstream at `base`: as a proxy route keys it, and
/// as the aggregator's branches do (absolute, under the upstream's `url`).
#[must_use]
pub fn key_forms(base: &Uri, key: &str) -> [String; 2] {
    let origin = match (base.scheme_str(), base.authority()) {
        (Some(scheme), Some(authority)) => format!(
            "{scheme}://{authority}{}",
            base.path().trim_end_matches('/')
        ),
        _ => String::new(),
    };
    [key.to_owned(), format!("{origin}{key}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_its_proxy_and_its_aggregator_form() {
        let base: Uri = "http://127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            key_forms(&base, "/products/7"),
            ["/products/7", "http://127.0.0.1:4000/products/7"]
        );
        let base: Uri = "http://shop.internal:80/api/".parse().unwrap();
        assert_eq!(
            key_forms(&base, "/products/")[1],
            "http://shop.internal:80/api/products/"
        );
    }
}
