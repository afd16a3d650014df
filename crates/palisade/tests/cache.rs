//! The cache in the recommended stack: above retry, the breaker and the
//! timeout. A hit never reaches them; when the breaker is open, or the
//! attempts time out, the stale entry answers.
#![cfg(all(feature = "cache", feature = "circuit-breaker", feature = "retry"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade::ServiceBuilderExt;
use palisade::cache::CacheLayer;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::retry::{Backoff, RetryLayer};
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_cache_answers_stale_while_the_breaker_below_is_open() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let cache = CacheLayer::builder("products")
        .key(|id: &u32| Some(*id))
        .ttl(Duration::from_secs(10))
        .stale_while_revalidate(Duration::ZERO)
        .stale_if_error(Duration::from_secs(300))
        .build()
        .unwrap();
    let cache_handle = cache.handle();
    let breaker = CircuitBreakerLayer::builder("products").build().unwrap();
    let breaker_handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .cache(cache)
        .retries(
            RetryLayer::builder("products")
                .max_attempts(3)
                .backoff(Backoff::fixed(Duration::from_millis(10)))
                .build()
                .unwrap(),
        )
        .circuit_breaker(breaker)
        .timeout(Duration::from_secs(1))
        .service(service_fn(move |id: u32| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, palisade::BoxError>(format!("product {id}")) }
        }));

    assert_eq!(svc.clone().oneshot(7).await.unwrap(), "product 7");
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), "product 7");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the hit never reached the layers below"
    );

    tokio::time::advance(Duration::from_secs(11)).await;
    breaker_handle.force_open();
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), "product 7");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refused below, not retried, answered stale"
    );
    assert_eq!(cache_handle.snapshot().stale_served.rejected, 1);

    // Nothing cached for another key: the refusal reaches the caller.
    let err = svc.clone().oneshot(8).await.unwrap_err();
    assert!(palisade::is_rejection(&*err), "{err}");
}
