//! A rejection, as a caller of the layer sees it, says how to detect it.

use palisade_circuit_breaker::{BoxError, CircuitBreakerLayer, CircuitOpen};
use palisade_core::{cause_ref, is_rejection};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rejection_names_how_to_detect_it() {
    let layer = CircuitBreakerLayer::builder("orders").build().unwrap();
    layer.handle().force_open();
    let svc = layer.layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
    let err = svc.oneshot(()).await.unwrap_err();

    assert!(is_rejection(&*err));
    assert_eq!(cause_ref::<CircuitOpen>(&*err).unwrap().name(), "orders");
    // The plain message is short; the alternate form, for logs, names the
    // function and the type to look for.
    assert_eq!(err.to_string(), "circuit breaker `orders` is open");
    let long = format!("{err:#}");
    assert!(
        long.starts_with("circuit breaker `orders` is open"),
        "{long}"
    );
    assert!(long.contains("palisade_core::is_rejection"), "{long}");
    assert!(long.contains("palisade_core::CircuitOpen"), "{long}");
    assert!(long.contains("palisade_core::cause_ref"), "{long}");
}
