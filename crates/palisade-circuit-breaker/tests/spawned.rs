//! A breaker over `tower::service_fn` and an `async` block runs inside
//! `tokio::spawn`, with the default classifier or a closure, and with request
//! and error types that hold lifetimes (`&'static str`, `BoxError`).
//!
//! An `async` block that holds such a service across an `.await` inside
//! `tokio::spawn` hits a rustc limitation (rust-lang/rust#110338; tower's own
//! `Timeout` fails the same way): these are the forms the crate docs
//! recommend, and this file only has to compile and pass.

use palisade_circuit_breaker::{BoxError, CircuitBreakerLayer, Outcome};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn backend(req: &'static str) -> Result<usize, BoxError> {
    if req.is_empty() {
        Err(BoxError::from("empty request"))
    } else {
        Ok(req.len())
    }
}

#[tokio::test]
async fn the_calls_future_is_spawned_directly() {
    let layer = CircuitBreakerLayer::builder("spawned").build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(backend));
    let ok = tokio::spawn(svc.clone().oneshot("hello"));
    let failed = tokio::spawn(svc.oneshot(""));
    assert_eq!(ok.await.unwrap().unwrap(), 5);
    assert!(failed.await.unwrap().is_err());
    assert_eq!(handle.snapshot().failed_calls, 1);
}

#[tokio::test]
async fn a_boxed_service_is_held_in_a_spawned_async_block() {
    let layer = CircuitBreakerLayer::builder("spawned")
        .classifier(|result: &Result<usize, BoxError>| match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignored,
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = BoxCloneSyncService::new(layer.layer(service_fn(backend)));
    let task = tokio::spawn(async move {
        let mut svc = svc;
        let mut lengths = Vec::new();
        for req in ["a", "", "abc"] {
            lengths.push(svc.ready().await?.call(req).await.ok());
        }
        Ok::<_, BoxError>(lengths)
    });
    assert_eq!(task.await.unwrap().unwrap(), vec![Some(1), None, Some(3)]);
    // The closure classified the failure as ignored.
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failed_calls), (2, 0));
}

#[tokio::test]
async fn a_closure_classifier_with_an_owned_error_type_runs_in_an_async_block() {
    // With a request and an error type that hold no lifetime, the service
    // itself can be held across `.await` in a spawned block.
    let layer = CircuitBreakerLayer::builder("spawned")
        .classifier(|result: &Result<_, _>| match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|n: u32| async move {
        if n == 0 {
            Err(std::io::Error::other("zero"))
        } else {
            Ok(n)
        }
    }));
    let task = tokio::spawn(async move {
        let one = svc.ready().await?.call(1).await?;
        let zero = svc.ready().await?.call(0).await;
        Ok::<_, BoxError>((one, zero.is_err()))
    });
    assert_eq!(task.await.unwrap().unwrap(), (1, true));
    assert_eq!(handle.snapshot().failed_calls, 1);
}
