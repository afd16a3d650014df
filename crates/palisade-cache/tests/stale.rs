//! Stale-while-revalidate and stale-if-error, on tokio's paused clock.

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_cache::{CacheBuilder, CacheHandle, CacheLayer, KeyFn};
use support::{Answer, Backend, settle};
use tokio::sync::Semaphore;
use tokio::time::advance;
use tower::{Layer, ServiceExt};

type Key = fn(&u32) -> Option<u32>;
type Svc = palisade_cache::Cache<Backend, KeyFn<Key, u32, String>>;

fn key(n: &u32) -> Option<u32> {
    Some(*n)
}

fn builder(name: &str) -> CacheBuilder<KeyFn<Key, u32, String>> {
    CacheLayer::builder(name).key(key as Key)
}

fn build(builder: CacheBuilder<KeyFn<Key, u32, String>>, backend: &Backend) -> (Svc, CacheHandle) {
    let layer = builder.build().unwrap();
    (layer.layer(backend.clone()), layer.handle())
}

const S: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_exactly_once() {
    let gate = Arc::new(Semaphore::new(1));
    let backend = Backend::new("a").gated(&gate);
    let (svc, handle) = build(
        builder("swr")
            .ttl(10 * S)
            .stale_while_revalidate(60 * S)
            .stale_if_error(Duration::ZERO),
        &backend,
    );
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    backend.answer(Answer::Ok("b".into()));

    advance(11 * S).await;
    // A hundred requests, one after the other and all at once: every one is
    // answered with the stale entry at once, and one refresh runs.
    for _ in 0..100 {
        assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    }
    let concurrent: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(1)))
        .collect();
    for task in concurrent {
        assert_eq!(task.await.unwrap().unwrap(), "a1");
    }
    settle().await;
    assert_eq!(backend.calls(), 2, "exactly one background refresh");
    let during = handle.snapshot();
    assert_eq!(during.stale_served.revalidating, 200);
    assert_eq!(during.refreshes_running, 1);

    gate.add_permits(1);
    settle().await;
    let after = handle.snapshot();
    assert_eq!((after.refreshes_running, after.refreshes_succeeded), (0, 1));
    assert_eq!(
        svc.clone().oneshot(1).await.unwrap(),
        "b1",
        "the refreshed entry"
    );
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_refresh_keeps_the_stale_entry_and_a_later_one_may_retry() {
    let backend = Backend::new("a");
    let (svc, handle) = build(
        builder("swr-fail")
            .ttl(10 * S)
            .stale_while_revalidate(60 * S)
            .stale_if_error(Duration::ZERO),
        &backend,
    );
    svc.clone().oneshot(1).await.unwrap();
    backend.answer(Answer::Err("down".into()));
    advance(11 * S).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    settle().await;
    assert_eq!(handle.snapshot().refreshes_failed, 1);
    assert_eq!(
        svc.clone().oneshot(1).await.unwrap(),
        "a1",
        "still served stale"
    );
    settle().await;
    assert_eq!(
        backend.calls(),
        3,
        "one refresh at a time, a new one after a failure"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_refresh_is_abandoned_after_the_refresh_timeout() {
    let backend = Backend::new("a");
    backend.hang_call(2);
    let (svc, handle) = build(
        builder("swr-hang")
            .ttl(10 * S)
            .stale_while_revalidate(600 * S)
            .refresh_timeout(5 * S),
        &backend,
    );
    svc.clone().oneshot(1).await.unwrap();
    advance(11 * S).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    settle().await;
    assert_eq!(handle.snapshot().refreshes_running, 1);
    advance(5 * S).await;
    settle().await;
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.refreshes_running, 0, "no task left behind");
    assert_eq!(snapshot.refreshes_failed, 1);
    assert_eq!(snapshot.in_flight, 0, "its flight was released");
    // The next request starts a new refresh, which answers.
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    settle().await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stale_if_error_within_and_beyond_the_grace() {
    let backend = Backend::new("a");
    let (svc, handle) = build(
        builder("sie")
            .ttl(10 * S)
            .stale_while_revalidate(Duration::ZERO)
            .stale_if_error(30 * S),
        &backend,
    );
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    backend.answer(Answer::Err("orders is down".into()));

    advance(11 * S).await; // stale for 1 s
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    advance(28 * S).await; // stale for 29 s: still within the grace
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    advance(2 * S).await; // stale for 31 s: beyond it
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "orders is down");
    assert_eq!(
        backend.calls(),
        4,
        "each stale request asked the backend first"
    );
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.stale_served.error, 2);
    assert_eq!(snapshot.stale_served.total(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refusal_by_an_open_breaker_is_answered_stale_as_rejected() {
    let backend = Backend::new("a");
    let (svc, handle) = build(
        builder("sie-rejected")
            .ttl(10 * S)
            .stale_while_revalidate(Duration::ZERO),
        &backend,
    );
    svc.clone().oneshot(1).await.unwrap();
    backend.answer(Answer::Rejected);
    advance(11 * S).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    assert_eq!(handle.snapshot().stale_served.rejected, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_timeout_below_the_cache_is_answered_stale_as_timeout() {
    let backend = Backend::new("a");
    backend.hang_call(2);
    let layer = builder("sie-timeout")
        .ttl(10 * S)
        .stale_while_revalidate(Duration::ZERO)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .timeout(2 * S)
        .service(backend.clone());
    svc.clone().oneshot(1).await.unwrap();
    advance(11 * S).await;
    // The backend hangs; the timeout below the cache cuts it at 2 s.
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    assert_eq!(handle.snapshot().stale_served.timeout, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_expired_deadline_below_the_cache_is_answered_stale_as_timeout() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let layer = builder("sie-deadline")
        .ttl(10 * S)
        .stale_while_revalidate(Duration::ZERO)
        .build()
        .unwrap();
    let handle = layer.handle();
    // A deadline layer below (palisade-deadline) fails the call with
    // `DeadlineExpired` once the request's time is up.
    let svc = layer.layer(tower::service_fn(move |n: u32| {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Ok(format!("a{n}"))
            } else {
                Err(palisade_core::BoxError::from(
                    palisade_core::deadline::DeadlineExpired::new("below"),
                ))
            }
        }
    }));
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    advance(11 * S).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "a1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stale = handle.snapshot().stale_served;
    assert_eq!((stale.timeout, stale.error), (1, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn coalesced_requests_all_get_the_stale_entry_when_the_call_fails() {
    let gate = Arc::new(Semaphore::new(1));
    let backend = Backend::new("a").gated(&gate);
    let (svc, handle) = build(
        builder("sie-coalesced")
            .ttl(10 * S)
            .stale_while_revalidate(Duration::ZERO)
            .coalesce_timeout(None),
        &backend,
    );
    svc.clone().oneshot(1).await.unwrap();
    backend.answer(Answer::Err("down".into()));
    advance(11 * S).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| tokio::spawn(svc.clone().oneshot(1)))
        .collect();
    settle().await;
    gate.add_permits(1);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "a1");
    }
    assert_eq!(backend.calls(), 2);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.coalesced, 49);
    assert_eq!(snapshot.stale_served.error, 50);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_expired_entry_is_a_miss() {
    let backend = Backend::new("a");
    let (svc, handle) = build(
        builder("expired")
            .ttl(10 * S)
            .stale_while_revalidate(5 * S)
            .stale_if_error(5 * S),
        &backend,
    );
    svc.clone().oneshot(1).await.unwrap();
    backend.answer(Answer::Ok("b".into()));
    advance(16 * S).await;
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), "b1");
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.misses, snapshot.stale_served.total()), (2, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn run_pending_tasks_sweeps_expired_entries_only() {
    let backend = Backend::new("a");
    let (svc, handle) = build(
        builder("sweep")
            .ttl(10 * S)
            .stale_while_revalidate(5 * S)
            .stale_if_error(20 * S),
        &backend,
    );
    svc.clone().oneshot(1).await.unwrap();
    advance(20 * S).await;
    svc.clone().oneshot(2).await.unwrap();
    let both = handle.snapshot();
    assert_eq!(both.entries, 2);
    // Key 1 is 20 s old: stale, still within stale_if_error (10 + 20 s).
    handle.run_pending_tasks();
    assert_eq!(handle.snapshot().entries, 2);
    // 31 s: key 1 is past every window; key 2 (11 s) is not.
    advance(11 * S).await;
    handle.run_pending_tasks();
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.entries, 1);
    // The two entries weigh the same ("a1", "a2"): half the bytes left.
    assert_eq!(snapshot.bytes, both.bytes / 2);
    assert_eq!(backend.calls(), 2);
}
