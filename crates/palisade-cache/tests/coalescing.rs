//! Request coalescing: concurrent misses on one key make one backend call.

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_cache::error::Coalesced;
use palisade_cache::{CacheHandle, CacheLayer};
use palisade_core::{BoxError, is_caused_by, is_rejection};
use support::{Answer, Backend, settle};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

type Svc =
    palisade_cache::Cache<Backend, palisade_cache::KeyFn<fn(&u32) -> Option<u32>, u32, String>>;

fn key(n: &u32) -> Option<u32> {
    Some(*n)
}

fn cache(backend: &Backend, coalesce_timeout: Option<Duration>) -> (Svc, CacheHandle) {
    let layer = CacheLayer::builder("coalescing")
        .key(key as fn(&u32) -> Option<u32>)
        .coalesce_timeout(coalesce_timeout)
        .build()
        .unwrap();
    (layer.layer(backend.clone()), layer.handle())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_thousand_concurrent_misses_make_one_backend_call() {
    let gate = Arc::new(Semaphore::new(0));
    let backend = Backend::new("v").gated(&gate);
    let (svc, handle) = cache(&backend, None);

    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    settle().await;
    assert_eq!(backend.calls(), 1, "one call for the thousand misses");
    let during = handle.snapshot();
    assert_eq!(during.coalesced, 999);
    assert_eq!(during.in_flight, 1);

    gate.add_permits(1);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "v7");
    }
    assert_eq!(backend.calls(), 1);

    // The value was stored: the next request is a hit.
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), "v7");
    assert_eq!(backend.calls(), 1);
    let after = handle.snapshot();
    assert_eq!((after.hits, after.misses, after.in_flight), (1, 1000, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_leader_hands_the_call_to_a_waiter() {
    let gate = Arc::new(Semaphore::new(0));
    let backend = Backend::new("v").gated(&gate);
    let (svc, handle) = cache(&backend, None);

    let leader = tokio::spawn(svc.clone().oneshot(7));
    settle().await;
    assert_eq!(backend.calls(), 1);
    let waiters: Vec<_> = (0..10)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    settle().await;
    assert_eq!(handle.snapshot().coalesced, 10);

    // The leader's caller goes away mid-call: one waiter takes over.
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    settle().await;
    assert_eq!(backend.calls(), 2, "exactly one waiter made a new call");

    gate.add_permits(1);
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap(), "v7");
    }
    assert_eq!(backend.calls(), 2);
    assert_eq!(handle.snapshot().in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flight_left_by_everyone_leaves_nothing_behind() {
    let gate = Arc::new(Semaphore::new(0));
    let backend = Backend::new("v").gated(&gate);
    let (svc, handle) = cache(&backend, None);

    let tasks: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    settle().await;
    assert_eq!(handle.snapshot().in_flight, 1);
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        assert!(task.await.unwrap_err().is_cancelled());
    }
    settle().await;
    assert_eq!(
        handle.snapshot().in_flight,
        0,
        "the orphaned flight was removed"
    );

    // The next miss starts afresh.
    gate.add_permits(1);
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), "v7");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_backend_error_reaches_every_waiter_and_is_not_cached() {
    let gate = Arc::new(Semaphore::new(0));
    let backend = Backend::new("v").gated(&gate);
    backend.answer(Answer::Err("inventory is down".into()));
    let (svc, handle) = cache(&backend, None);

    let tasks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    settle().await;
    gate.add_permits(1);
    for task in tasks {
        let err: BoxError = task.await.unwrap().unwrap_err();
        assert!(is_caused_by::<Coalesced>(&*err), "{err}");
        assert!(err.to_string().contains("inventory is down"), "{err}");
    }
    assert_eq!(backend.calls(), 1);
    assert_eq!(handle.snapshot().stored, 0);

    // Not cached: the next request calls the backend again.
    backend.answer(Answer::Ok("v".into()));
    gate.add_permits(1);
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), "v7");
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_lone_leader_keeps_its_own_error_and_rejections_stay_rejections() {
    let backend = Backend::new("v");
    backend.answer(Answer::Err("plain".into()));
    let (svc, _) = cache(&backend, None);
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert!(
        !is_caused_by::<Coalesced>(&*err),
        "nobody waited: the original error"
    );
    assert_eq!(err.to_string(), "plain");

    let gate = Arc::new(Semaphore::new(0));
    let backend = Backend::new("v").gated(&gate);
    backend.answer(Answer::Rejected);
    let (svc, _) = cache(&backend, None);
    let tasks: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    settle().await;
    gate.add_permits(1);
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(
            is_rejection(&*err),
            "a shared rejection is still a rejection: {err}"
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_waiter_stops_waiting_after_the_coalesce_timeout() {
    let backend = Backend::new("v");
    backend.hang_call(1);
    let (svc, handle) = cache(&backend, Some(Duration::from_secs(2)));

    let leader = tokio::spawn(svc.clone().oneshot(7));
    settle().await;
    let waiter = tokio::spawn(svc.clone().oneshot(7));
    settle().await;
    assert_eq!(handle.snapshot().coalesced, 1);
    assert!(!waiter.is_finished());

    tokio::time::advance(Duration::from_secs(2)).await;
    // Nobody waits forever: the waiter called the backend itself.
    assert_eq!(waiter.await.unwrap().unwrap(), "v7");
    assert_eq!(backend.calls(), 2);
    assert!(!leader.is_finished(), "the first call still hangs");
    leader.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_coalescing_every_miss_calls_the_backend() {
    let gate = Arc::new(Semaphore::new(0));
    let backend = Backend::new("v").gated(&gate);
    let layer = CacheLayer::builder("uncoalesced")
        .key(key as fn(&u32) -> Option<u32>)
        .coalesce(false)
        .build()
        .unwrap();
    let svc = layer.layer(backend.clone());
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    settle().await;
    assert_eq!(backend.calls(), 10);
    gate.add_permits(10);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "v7");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_cache_is_always_ready_and_a_hit_never_touches_the_backend() {
    let backend = Backend::new("v");
    let (mut svc, _) = cache(&backend, None);
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), "v3");
    // A saturated backend (never ready) does not hold hits back.
    backend.set_ready(false);
    let mut hit = svc.clone();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(hit.poll_ready(&mut cx).is_ready());
    assert_eq!(hit.call(3).await.unwrap(), "v3");
    assert_eq!(backend.calls(), 1);
    // A miss waits for the backend's readiness in its own future.
    let miss = tokio::spawn(svc.clone().oneshot(4));
    settle().await;
    assert!(!miss.is_finished());
    assert_eq!(backend.calls(), 1, "not called before it is ready");
    miss.abort();
}
