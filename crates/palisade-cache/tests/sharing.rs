//! State belongs to the layer: every service, clone and `layer()` call
//! shares it; a registry shares it by name. Nothing is leaked on drop.

mod support;

use std::future::Future;

use palisade_cache::{Cache, CacheHandle, CacheLayer, KeyFn};
use palisade_core::Registry;
use palisade_test_util::{assert_send, assert_send_sync, assert_send_sync_clone};
use support::Backend;
use tower::{Layer, ServiceExt};

type Key = fn(&u32) -> Option<u32>;

fn key(n: &u32) -> Option<u32> {
    Some(*n)
}

#[test]
fn public_types_are_send_sync_clone() {
    assert_send_sync_clone::<Cache<Backend, KeyFn<Key, u32, String>>>();
    assert_send_sync_clone::<CacheLayer<KeyFn<Key, u32, String>>>();
    assert_send_sync_clone::<CacheHandle>();
    assert_send::<palisade_cache::future::ResponseFuture<Backend, u32, KeyFn<Key, u32, String>>>();
    assert_send_sync::<palisade_cache::CacheSnapshot>();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn services_of_one_layer_and_their_clones_share_entries() {
    let backend = Backend::new("v");
    let layer = CacheLayer::builder("shared")
        .key(key as Key)
        .build()
        .unwrap();
    // Two routes, as axum would build them, and a clone of the layer.
    let a = layer.layer(backend.clone());
    let b = layer.clone().layer(backend.clone());
    a.clone().oneshot(1).await.unwrap();
    b.clone().oneshot(1).await.unwrap();
    a.clone().clone().oneshot(1).await.unwrap();
    assert_eq!(backend.calls(), 1);
    assert!(a.handle().same_as(&b.handle()));
    assert_eq!(layer.handle().snapshot().hits, 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_registry_shares_a_cache_by_name() {
    let registry = Registry::<CacheHandle>::new();
    let first = CacheLayer::builder("products")
        .key(key as Key)
        .registry(&registry)
        .build()
        .unwrap();
    let second = CacheLayer::builder("products")
        .key(key as Key)
        .registry(&registry)
        .build()
        .unwrap();
    assert!(first.handle().same_as(&second.handle()));
    assert_eq!(registry.names(), vec!["products".to_owned()]);
    let backend = Backend::new("v");
    first.layer(backend.clone()).oneshot(1).await.unwrap();
    second.layer(backend.clone()).oneshot(1).await.unwrap();
    assert_eq!(backend.calls(), 1);
    // The registry lists every cache's snapshot (palisade_core::Handle).
    let snapshots = registry.snapshots();
    assert_eq!(snapshots.len(), 1);
    assert_eq!((snapshots[0].hits, snapshots[0].misses), (1, 1));

    // Another key type under the same name is an error, not a silent second cache.
    let err = CacheLayer::builder("products")
        .key(|s: &String| Some(s.clone()))
        .registry(&registry)
        .build()
        .map(|_: CacheLayer<KeyFn<_, String, String>>| ())
        .unwrap_err();
    assert_eq!(err.field(), "registry");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_response_future_or_a_service_leaks_nothing() {
    let backend = Backend::new("v");
    backend.hang_call(1);
    let layer = CacheLayer::builder("drops")
        .key(key as Key)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend.clone());

    // A miss dropped mid-call leaves no flight behind.
    let mut future = Box::pin(svc.clone().oneshot(1));
    assert!(futures_poll_once(&mut future).await.is_none());
    assert_eq!(handle.snapshot().in_flight, 1);
    drop(future);
    assert_eq!(handle.snapshot().in_flight, 0);

    // A service dropped before `call` held nothing (the cache reserves nothing).
    drop(svc.clone());
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "v1");
    drop(svc);
    drop(layer);
    // The handle keeps the state alive and readable.
    assert_eq!(handle.snapshot().entries, 1);
}

async fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *future).poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}
