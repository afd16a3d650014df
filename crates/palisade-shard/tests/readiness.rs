//! Readiness: the router waits only on the shard it picks, with a bound; an
//! unready or failing shard never delays requests for other shards' keys;
//! nothing reserved is leaked when a call is dropped. All on tokio's paused
//! clock, so "no delay" is observed exactly.

mod support;

use std::time::Duration;

use palisade_core::{BoxError, is_caused_by};
use palisade_shard::error::ShardNotReady;
use palisade_shard::{Shard, ShardRouter};
use support::{Named, key_on};
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

type Svc = BoxCloneSyncService<u64, &'static str, BoxError>;

fn named(name: &'static str) -> Svc {
    BoxCloneSyncService::new(ServiceExt::<u64>::map_err(Named(name), BoxError::from))
}

fn failing() -> Svc {
    BoxCloneSyncService::new(tower::service_fn(|_: u64| async {
        Err::<&'static str, BoxError>("shard is down".into())
    }))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unready_shard_does_not_delay_requests_for_other_shards() {
    let (mock, mut handle) = tower_test::mock::pair::<u64, &'static str>();
    handle.allow(0);
    let router = ShardRouter::builder("users")
        .shard(Shard::new("stuck", BoxCloneSyncService::new(mock)))
        .shard(Shard::new("healthy", named("healthy")))
        .shard(Shard::new("broken", failing()))
        .ready_timeout(Duration::from_millis(500))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    let map = router.handle().map();
    let (stuck, healthy, broken) = (
        key_on(&map, "stuck", 0),
        key_on(&map, "healthy", 0),
        key_on(&map, "broken", 0),
    );

    // The router itself is always ready, even with a shard that is not.
    let mut probe = router.clone();
    assert_ready_ok!(tokio_test::task::spawn(()).enter(|cx, _| probe.poll_ready(cx)));

    let start = Instant::now();
    let waiting = tokio::spawn(router.clone().oneshot(stuck));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());

    // Requests for the other shards are answered at once, while the stuck
    // shard's request waits.
    for _ in 0..10 {
        assert_eq!(router.clone().oneshot(healthy).await.unwrap(), "healthy");
        let err = router.clone().oneshot(broken).await.unwrap_err();
        assert_eq!(err.to_string(), "shard is down");
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(!waiting.is_finished());

    // The stuck shard's request fails after exactly the bound, never sent.
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    let not_ready = err.downcast_ref::<ShardNotReady>().expect("ShardNotReady");
    assert_eq!(not_ready.shard(), "stuck");
    assert_eq!(not_ready.waited(), Duration::from_millis(500));
    assert!(is_caused_by::<ShardNotReady>(&*err));
    assert_pending!(tokio_test::task::spawn(handle.next_request()).poll());
    let snapshot = router.handle().snapshot();
    let stuck_figures = snapshot
        .shards
        .iter()
        .find(|s| &*s.name == "stuck")
        .unwrap();
    assert_eq!((stuck_figures.requests, stuck_figures.not_ready), (1, 1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shard_ready_within_the_bound_gets_the_request() {
    let (mock, mut handle) = tower_test::mock::pair::<u64, &'static str>();
    handle.allow(0);
    let router = ShardRouter::builder("users")
        .shard(Shard::new("late", BoxCloneSyncService::new(mock)))
        .ready_timeout(Duration::from_secs(1))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    let start = Instant::now();
    let call = tokio::spawn(router.oneshot(7));
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.allow(1);
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request, 7);
    respond.send_response("late");
    assert_eq!(call.await.unwrap().unwrap(), "late");
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_waiting_call_releases_what_its_shard_reserved() {
    let (mock, mut handle) = tower_test::mock::pair::<u64, &'static str>();
    handle.allow(0);
    // One permit: a call that kept it would block every later call.
    let stack = ServiceBuilder::new().concurrency_limit(1).service(mock);
    let router = ShardRouter::builder("users")
        .shard(Shard::new("only", BoxCloneSyncService::new(stack)))
        .ready_timeout(Duration::from_secs(60))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    let mut first = tokio_test::task::spawn(router.clone().oneshot(1));
    assert_pending!(first.poll()); // holds the permit, waits for the mock
    drop(first);

    handle.allow(1);
    let second = tokio::spawn(router.oneshot(2));
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request, 2, "the dropped call's permit came back");
    respond.send_response("ok");
    assert_eq!(second.await.unwrap().unwrap(), "ok");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_call_in_flight_cancels_it() {
    let probe = palisade_test_util::DropProbe::new();
    let token = std::sync::Arc::new(std::sync::Mutex::new(Some(probe.token())));
    let svc = BoxCloneSyncService::new(tower::service_fn(move |_: u64| {
        let token = token.lock().unwrap().take();
        async move {
            let _token = token;
            std::future::pending::<()>().await;
            Ok::<&'static str, BoxError>("never")
        }
    }));
    let router = ShardRouter::builder("users")
        .shard(Shard::new("only", svc))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    let mut call = tokio_test::task::spawn(router.oneshot(1));
    assert_pending!(call.poll());
    assert!(!probe.dropped());
    drop(call);
    assert!(probe.dropped());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_router_dropped_after_poll_ready_reserved_nothing() {
    let (mock, mut handle) = tower_test::mock::pair::<u64, &'static str>();
    handle.allow(1);
    let stack = ServiceBuilder::new().concurrency_limit(1).service(mock);
    let router = ShardRouter::builder("users")
        .shard(Shard::new("only", BoxCloneSyncService::new(stack)))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut clone = router.clone();
        assert_ready_ok!(tokio_test::task::spawn(()).enter(|cx, _| clone.poll_ready(cx)));
        drop(clone);
    }
    // The shard's single permit is still free.
    let call = tokio::spawn(router.oneshot(5));
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request, 5);
    respond.send_response("ok");
    assert_eq!(call.await.unwrap().unwrap(), "ok");
}
