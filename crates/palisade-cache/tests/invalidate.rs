//! Invalidation through the handle: by key, by prefix, everything; and a
//! call in flight across an invalidation does not store its response.

mod support;

use std::sync::Arc;

use palisade_cache::CacheLayer;
use support::{Answer, Backend, settle};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};

type PathKey = fn(&String) -> Option<String>;

#[allow(clippy::ptr_arg, reason = "the key function of `String` requests")]
fn key(path: &String) -> Option<String> {
    Some(path.clone())
}

fn layer() -> CacheLayer<palisade_cache::KeyFn<PathKey, String, String>> {
    CacheLayer::builder("invalidate")
        .key(key as PathKey)
        .build()
        .unwrap()
}

/// A backend over paths (`String` requests).
#[derive(Clone)]
struct Paths(Backend);

impl tower::Service<String> for Paths {
    type Response = String;
    type Error = palisade_core::BoxError;
    type Future = <Backend as tower::Service<u32>>::Future;
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<u32>::poll_ready(&mut self.0, cx)
    }
    fn call(&mut self, path: String) -> Self::Future {
        let n = path
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        self.0.call(n)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn by_key_by_prefix_and_all() {
    let backend = Backend::new("v");
    let layer = layer();
    let handle = layer.handle();
    let svc = layer.layer(Paths(backend.clone()));
    for path in ["/products/1", "/products/2", "/users/1"] {
        svc.clone().oneshot(path.to_owned()).await.unwrap();
    }
    assert_eq!(backend.calls(), 3);

    assert_eq!(handle.invalidate("/products/1"), 1);
    assert_eq!(handle.invalidate("/products/1"), 0);
    svc.clone().oneshot("/products/1".to_owned()).await.unwrap();
    svc.clone().oneshot("/products/2".to_owned()).await.unwrap();
    assert_eq!(
        backend.calls(),
        4,
        "only the invalidated key was fetched again"
    );

    assert_eq!(handle.invalidate_prefix("/products/"), 2);
    svc.clone().oneshot("/users/1".to_owned()).await.unwrap();
    assert_eq!(backend.calls(), 4);
    svc.clone().oneshot("/products/2".to_owned()).await.unwrap();
    assert_eq!(backend.calls(), 5);

    // Held now: /users/1 and /products/2.
    assert_eq!(handle.invalidate_all(), 2);
    assert_eq!(handle.snapshot().entries, 0);
    assert_eq!(handle.snapshot().invalidated, 5);
    let purged = handle.purge("/users/", true).await.unwrap();
    assert_eq!((purged.local, purged.shared), (0, None));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_in_flight_across_an_invalidation_does_not_store() {
    let gate = Arc::new(Semaphore::new(0));
    let backend = Backend::new("old").gated(&gate);
    let layer = layer();
    let handle = layer.handle();
    let svc = layer.layer(Paths(backend.clone()));

    let in_flight = tokio::spawn(svc.clone().oneshot("/products/1".to_owned()));
    settle().await;
    handle.invalidate("/products/1");
    gate.add_permits(1);
    // Its caller gets the answer...
    assert_eq!(in_flight.await.unwrap().unwrap(), "old1");
    // ...but it may predate the invalidation, so it was not stored.
    backend.answer(Answer::Ok("new".into()));
    gate.add_permits(1);
    assert_eq!(
        svc.clone().oneshot("/products/1".to_owned()).await.unwrap(),
        "new1"
    );
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.not_stored, vec![("invalidated", 1)]);
}
