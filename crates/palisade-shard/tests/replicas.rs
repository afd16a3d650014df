//! Replicas of a shard: power of two choices on peak-EWMA latency, skipping
//! replicas whose breaker is open; and scatter-gather over every shard.

use std::time::Duration;

use palisade_circuit_breaker::CircuitBreakerLayer;
use palisade_core::BoxError;
use palisade_shard::{Replica, Shard, ShardRouter};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

type Svc = BoxCloneSyncService<u64, &'static str, BoxError>;

/// A replica answering `name` after `latency`.
fn replica(name: &'static str, latency: Duration) -> Svc {
    BoxCloneSyncService::new(tower::service_fn(move |_: u64| async move {
        tokio::time::sleep(latency).await;
        Ok::<_, BoxError>(name)
    }))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_faster_replica_gets_most_calls() {
    let router = ShardRouter::builder("users")
        .shard(Shard::replicated(
            "users-0",
            [
                Replica::new("fast", replica("fast", Duration::from_millis(5))),
                Replica::new("slow", replica("slow", Duration::from_millis(200))),
            ],
        ))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    let mut fast = 0;
    for id in 0..200u64 {
        if router.clone().oneshot(id).await.unwrap() == "fast" {
            fast += 1;
        }
    }
    // With two replicas p2c always compares both: once each has answered,
    // the slow one (40x the latency) is only chosen while its estimate has
    // decayed below the fast one's.
    assert!(fast >= 190, "fast replica served {fast} of 200");
    let snapshot = router.handle().snapshot();
    let replicas = &snapshot.shards[0].replicas;
    assert_eq!(replicas[0].requests + replicas[1].requests, 200);
    assert!(replicas[1].latency_ms.unwrap() > replicas[0].latency_ms.unwrap());
    assert_eq!(replicas[0].in_flight + replicas[1].in_flight, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_replica_whose_breaker_is_open_is_skipped() {
    let breaker = CircuitBreakerLayer::builder("users-0a").build().unwrap();
    let handle = breaker.handle();
    let guarded: Svc =
        BoxCloneSyncService::new(breaker.layer(replica("a", Duration::from_millis(1))));
    let router = ShardRouter::builder("users")
        .shard(Shard::replicated(
            "users-0",
            [
                Replica::new("a", guarded).breaker(handle.clone()),
                Replica::new("b", replica("b", Duration::from_millis(50))),
                Replica::new("c", replica("c", Duration::from_millis(50))),
            ],
        ))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    handle.force_open();
    for id in 0..100u64 {
        assert_ne!(router.clone().oneshot(id).await.unwrap(), "a");
    }
    let snapshot = router.handle().snapshot();
    let a = &snapshot.shards[0].replicas[0];
    assert_eq!(
        (a.requests, a.available, a.breaker),
        (0, false, Some("forced_open"))
    );
    // Closed again: it takes calls again (it is the fastest).
    handle.reset();
    let mut served = 0;
    for id in 0..100u64 {
        if router.clone().oneshot(id).await.unwrap() == "a" {
            served += 1;
        }
    }
    assert!(served > 50, "{served}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_every_breaker_open_the_call_is_refused_by_a_breaker() {
    let breaker = CircuitBreakerLayer::builder("only").build().unwrap();
    let handle = breaker.handle();
    let guarded: Svc = BoxCloneSyncService::new(breaker.layer(replica("a", Duration::ZERO)));
    let router = ShardRouter::builder("users")
        .shard(Shard::replicated(
            "users-0",
            [Replica::new("a", guarded).breaker(handle.clone())],
        ))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    handle.force_open();
    let err = router.oneshot(1).await.unwrap_err();
    assert!(palisade_core::is_rejection(&*err), "{err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scatter_gather_asks_every_shard_including_new_ones() {
    let count = |n: u64| -> BoxCloneSyncService<(), u64, BoxError> {
        BoxCloneSyncService::new(tower::service_fn(move |_: ()| async move {
            Ok::<_, BoxError>(n)
        }))
    };
    let router = ShardRouter::builder("users")
        .shard(Shard::new("users-0", count(1)))
        .shard(Shard::new("users-1", count(10)))
        .key_fn(|_: &()| None::<u64>)
        .build()
        .unwrap();
    let handle = router.handle();
    let total = handle
        .scatter("count", |req: &()| *req)
        .timeout(Duration::from_secs(1))
        .merge_fn(|gathered| {
            Ok(gathered
                .into_iter()
                .filter_map(|(_, r)| r.into_value())
                .sum::<u64>())
        })
        .build()
        .unwrap();
    assert_eq!(total.clone().oneshot(()).await.unwrap(), 11);
    handle.add_shard(Shard::new("users-2", count(100))).unwrap();
    assert_eq!(total.clone().oneshot(()).await.unwrap(), 111);
    handle.remove_shard("users-0").unwrap();
    assert_eq!(total.oneshot(()).await.unwrap(), 110);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn scatter_gather_with_json_reports_a_failed_shard() {
    let shard = |ok: bool| -> BoxCloneSyncService<(), serde_json::Value, BoxError> {
        BoxCloneSyncService::new(tower::service_fn(move |_: ()| async move {
            if ok {
                Ok(serde_json::json!({ "users": 3 }))
            } else {
                Err(BoxError::from("down"))
            }
        }))
    };
    let router = ShardRouter::builder("users")
        .shard(Shard::new("users-0", shard(true)))
        .shard(Shard::new("users-1", shard(false)))
        .key_fn(|_: &()| None::<u64>)
        .build()
        .unwrap();
    let all = router
        .handle()
        .scatter("all", |req: &()| *req)
        .build()
        .unwrap();
    let merged = all.oneshot(()).await.unwrap();
    assert_eq!(merged["users-0"]["users"], 3);
    assert_eq!(merged["errors"]["users-1"]["reason"], "failed");
}
