//! [`ServiceBuilderExt`]: Palisade's layers as `ServiceBuilder` methods.

use tower::ServiceBuilder;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds Palisade's layers to [`tower::ServiceBuilder`], one method per
/// pattern, each behind its cargo feature.
///
/// Each method takes a built layer (`FooLayer::builder(name)...build()?`):
/// building validates the settings and creates the pattern's shared state, so
/// the stack itself cannot fail. As with `.layer(..)`, the first layer added
/// is the outermost: it sees the request first.
///
/// The retry method is called [`retries`](Self::retries), not `retry`: tower's
/// `ServiceBuilder` has an inherent `retry(policy)` method (feature `retry` of
/// tower), and an inherent method always wins over a trait method of the same
/// name, so `.retry(layer)` would silently mean tower's. For the same reason
/// the rate limiter's is `rate_limiter`, not `rate_limit` (tower's inherent
/// `rate_limit(num, per)`, feature `limit`).
///
/// This trait is sealed: it is implemented for `ServiceBuilder` only.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a circuit breaker: rejected calls fail with
    /// [`CircuitOpen`](crate::CircuitOpen).
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    fn circuit_breaker<C>(
        self,
        layer: palisade_circuit_breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_circuit_breaker::CircuitBreakerLayer<C>, L>>;

    /// Adds a circuit breaker for HTTP services that answers rejected calls
    /// with `503 Service Unavailable` and `Retry-After` instead of an error.
    #[cfg(all(feature = "circuit-breaker", feature = "http"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "circuit-breaker", feature = "http"))))]
    fn http_circuit_breaker<C>(
        self,
        layer: palisade_circuit_breaker::http::HttpCircuitBreakerLayer<C>,
    ) -> ServiceBuilder<
        tower_layer::Stack<palisade_circuit_breaker::http::HttpCircuitBreakerLayer<C>, L>,
    >;

    /// Adds retries (with the layer's retry budget).
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn retries<C, K>(
        self,
        layer: palisade_retry::RetryLayer<C, K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_retry::RetryLayer<C, K>, L>>;

    /// Adds a bulkhead: calls beyond its limit wait (bounded) or fail with
    /// [`BulkheadFull`](crate::BulkheadFull).
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    fn bulkhead<P, C>(
        self,
        layer: palisade_bulkhead::BulkheadLayer<P, C>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_bulkhead::BulkheadLayer<P, C>, L>>;

    /// Adds a rate limiter: calls over their key's limit fail with
    /// [`RateLimited`](crate::RateLimited) (or wait for their slot, when
    /// throttling).
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    fn rate_limiter<K>(
        self,
        layer: palisade_rate_limit::RateLimitLayer<K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_rate_limit::RateLimitLayer<K>, L>>;

    /// Adds a rate limiter for HTTP services that answers refusals with
    /// `429 Too Many Requests` (with `Retry-After` and the IETF `RateLimit`
    /// fields, which admitted responses carry too) instead of an error.
    #[cfg(all(feature = "rate-limit", feature = "http"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "rate-limit", feature = "http"))))]
    fn http_rate_limiter<K>(
        self,
        layer: palisade_rate_limit::http::HttpRateLimitLayer<K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_rate_limit::http::HttpRateLimitLayer<K>, L>>;

    /// Adds fault injection (latency, errors, aborts), for testing the layers
    /// above it.
    #[cfg(feature = "chaos")]
    #[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
    fn chaos<I>(
        self,
        layer: palisade_chaos::ChaosLayer<I>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_chaos::ChaosLayer<I>, L>>;

    /// Adds a cache: hits are answered without calling the layers below;
    /// misses are coalesced, and stale entries answer while they refresh
    /// and when the layers below fail. Put it above retry, the breaker and
    /// the timeouts.
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    fn cache<P: palisade_cache::Storage>(
        self,
        layer: palisade_cache::CacheLayer<P>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_cache::CacheLayer<P>, L>>;

    /// Adds a deadline: every layer below sees what is left of it, the next
    /// service is told, and a call still running when it passes fails with
    /// [`DeadlineExpired`](crate::DeadlineExpired).
    #[cfg(feature = "deadline")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deadline")))]
    fn deadline(
        self,
        layer: palisade_deadline::DeadlineLayer,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_deadline::DeadlineLayer, L>>;

    /// Adds a fallback: failures and rejections of the classes it covers are
    /// answered by it.
    #[cfg(feature = "fallback")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fallback")))]
    fn fallback<F, C, K>(
        self,
        layer: palisade_fallback::FallbackLayer<F, C, K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_fallback::FallbackLayer<F, C, K>, L>>;

    /// Adds hedging: a request still unanswered after the latency percentile
    /// is sent again, under a budget.
    #[cfg(feature = "hedge")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
    fn hedge<C, K>(
        self,
        layer: palisade_hedge::HedgeLayer<C, K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_hedge::HedgeLayer<C, K>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker<C>(
        self,
        layer: palisade_circuit_breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_circuit_breaker::CircuitBreakerLayer<C>, L>>
    {
        self.layer(layer)
    }

    #[cfg(all(feature = "circuit-breaker", feature = "http"))]
    fn http_circuit_breaker<C>(
        self,
        layer: palisade_circuit_breaker::http::HttpCircuitBreakerLayer<C>,
    ) -> ServiceBuilder<
        tower_layer::Stack<palisade_circuit_breaker::http::HttpCircuitBreakerLayer<C>, L>,
    > {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn retries<C, K>(
        self,
        layer: palisade_retry::RetryLayer<C, K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_retry::RetryLayer<C, K>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead<P, C>(
        self,
        layer: palisade_bulkhead::BulkheadLayer<P, C>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_bulkhead::BulkheadLayer<P, C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "rate-limit")]
    fn rate_limiter<K>(
        self,
        layer: palisade_rate_limit::RateLimitLayer<K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_rate_limit::RateLimitLayer<K>, L>> {
        self.layer(layer)
    }

    #[cfg(all(feature = "rate-limit", feature = "http"))]
    fn http_rate_limiter<K>(
        self,
        layer: palisade_rate_limit::http::HttpRateLimitLayer<K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_rate_limit::http::HttpRateLimitLayer<K>, L>>
    {
        self.layer(layer)
    }

    #[cfg(feature = "chaos")]
    fn chaos<I>(
        self,
        layer: palisade_chaos::ChaosLayer<I>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_chaos::ChaosLayer<I>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "deadline")]
    fn deadline(
        self,
        layer: palisade_deadline::DeadlineLayer,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_deadline::DeadlineLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "fallback")]
    fn fallback<F, C, K>(
        self,
        layer: palisade_fallback::FallbackLayer<F, C, K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_fallback::FallbackLayer<F, C, K>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "hedge")]
    fn hedge<C, K>(
        self,
        layer: palisade_hedge::HedgeLayer<C, K>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_hedge::HedgeLayer<C, K>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "cache")]
    fn cache<P: palisade_cache::Storage>(
        self,
        layer: palisade_cache::CacheLayer<P>,
    ) -> ServiceBuilder<tower_layer::Stack<palisade_cache::CacheLayer<P>, L>> {
        self.layer(layer)
    }
}
