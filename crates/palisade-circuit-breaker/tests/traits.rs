//! The public types are what axum, tonic and hyper need, and state is shared
//! by every `layer()` call and clone.

mod support;

use palisade_circuit_breaker::future::ResponseFuture;
use palisade_circuit_breaker::{
    CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer, CircuitBreakerSnapshot,
    ErrorsAsFailures, Registry, State,
};
use palisade_test_util::{assert_send, assert_send_sync, assert_send_sync_clone};
use support::{Step, backend, call};
use tower::Layer;
use tower::util::BoxCloneSyncService;

type Svc = tower::util::ServiceFn<fn(u8) -> std::future::Ready<Result<u8, std::io::Error>>>;

#[test]
fn public_types_are_send_sync_clone() {
    assert_send_sync_clone::<CircuitBreakerLayer>();
    assert_send_sync_clone::<
        CircuitBreakerLayer<fn(&Result<u8, std::io::Error>) -> palisade_circuit_breaker::Outcome>,
    >();
    assert_send_sync_clone::<CircuitBreaker<Svc, ErrorsAsFailures>>();
    assert_send_sync_clone::<CircuitBreakerHandle>();
    assert_send_sync_clone::<Registry<CircuitBreakerHandle>>();
    assert_send_sync_clone::<CircuitBreakerSnapshot>();
    assert_send::<ResponseFuture<std::future::Ready<Result<u8, std::io::Error>>, ErrorsAsFailures>>(
    );
    assert_send_sync::<
        ResponseFuture<std::future::Ready<Result<u8, std::io::Error>>, ErrorsAsFailures>,
    >();
}

#[cfg(feature = "http")]
#[test]
fn http_types_are_send_sync_clone() {
    use palisade_circuit_breaker::http::{HttpCircuitBreaker, HttpCircuitBreakerLayer};
    use palisade_core::http::StatusClassifier;
    assert_send_sync_clone::<HttpCircuitBreakerLayer<StatusClassifier>>();
    assert_send_sync_clone::<HttpCircuitBreaker<Svc, StatusClassifier>>();
}

#[test]
fn boxes_into_a_clone_sync_service() {
    let layer = CircuitBreakerLayer::builder("boxed").build().unwrap();
    let svc = layer.layer(tower::service_fn(|x: u8| async move {
        Ok::<_, std::io::Error>(x)
    }));
    let _boxed = BoxCloneSyncService::new(svc);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_layer_call_and_clone_shares_one_breaker() {
    let layer = CircuitBreakerLayer::builder("shared")
        .count_window(4)
        .build()
        .unwrap();
    let (backend, _) = backend();
    // As axum does: layer() once per route, services cloned per request.
    let routes: Vec<_> = (0..4)
        .map(|_| layer.clone().layer(backend.clone()))
        .collect();
    for route in &routes {
        let _ = call(&mut route.clone(), Step::Fail).await;
    }
    // Four failures spread over four services opened the one breaker.
    for route in &routes {
        assert_eq!(route.handle().state(), State::Open);
        assert!(support::rejected(&call(&mut route.clone(), Step::Ok).await));
    }
    assert!(routes[0].handle().same_as(&layer.handle()));
    let other = CircuitBreakerLayer::builder("shared").build().unwrap();
    assert!(
        !other.handle().same_as(&layer.handle()),
        "a new build is a new breaker"
    );
}

#[test]
fn debug_output_names_the_breaker() {
    let layer = CircuitBreakerLayer::builder("dbg").build().unwrap();
    assert!(format!("{layer:?}").contains("dbg"));
    let svc = layer.layer(tower::service_fn(|x: u8| async move {
        Ok::<_, std::io::Error>(x)
    }));
    assert!(format!("{svc:?}").contains("dbg"));
    assert!(format!("{:?}", layer.handle()).contains("dbg"));
    assert_eq!(layer.name(), "dbg");
}
