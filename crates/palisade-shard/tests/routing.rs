//! Routing: each key goes to its owner; the map changes at runtime without
//! disturbing calls in flight; state is shared by clones and registries.

mod support;

use palisade_core::{BoxError, Registry};
use palisade_shard::{ChangeKind, MapErrorKind, Scheme, Shard, ShardHandle, ShardKey, ShardRouter};
use support::{Named, key_on};
use tower::ServiceExt;

type ById = palisade_shard::KeyFn<fn(&u64) -> Option<u64>>;

fn users(scheme: Scheme) -> ShardRouter<Named, ById> {
    ShardRouter::builder("users")
        .scheme(scheme)
        .shard(Shard::new("users-0", Named("users-0")))
        .shard(Shard::new("users-1", Named("users-1")))
        .shard(Shard::new("users-2", Named("users-2")))
        .key_fn((|id: &u64| Some(*id)) as fn(&u64) -> Option<u64>)
        .build()
        .unwrap()
}

#[tokio::test]
async fn each_key_goes_to_its_owner_under_every_scheme() {
    for scheme in [Scheme::Rendezvous, Scheme::Ring, Scheme::Jump] {
        let router = users(scheme);
        let map = router.handle().map();
        for id in 0..500u64 {
            let served = router.clone().oneshot(id).await.unwrap();
            assert_eq!(served, map.owner_name(ShardKey::from(id)));
            assert_eq!(served, &*router.handle().owner(id));
        }
        let counts: Vec<u64> = router
            .handle()
            .snapshot()
            .shards
            .iter()
            .map(|s| s.requests)
            .collect();
        assert_eq!(counts.iter().sum::<u64>(), 500);
        assert!(counts.iter().all(|&c| c > 100), "{scheme:?}: {counts:?}");
        // One replica per shard: no choice, so no latency estimate.
        assert_eq!(
            router.handle().snapshot().shards[0].replicas[0].latency_ms,
            None
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_map_changes_at_runtime_and_calls_in_flight_finish_where_they_started() {
    let (mock, mut mock_handle) = tower_test::mock::pair::<u64, &'static str>();
    type Svc = tower::util::BoxCloneSyncService<u64, &'static str, BoxError>;
    let named = |name: &'static str| -> Svc {
        tower::util::BoxCloneSyncService::new(ServiceExt::<u64>::map_err(
            Named(name),
            BoxError::from,
        ))
    };
    let router = ShardRouter::builder("users")
        .shard(Shard::new("users-0", Svc::new(mock)))
        .shard(Shard::new("users-1", named("users-1")))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    let handle = router.handle();
    let before = handle.map();
    // A call in flight on users-0 for a key that users-2 will take.
    let after_preview = before.with_shard("users-2", 1.0).unwrap();
    let moving = (0..10_000u64)
        .find(|id| {
            before.owner_name(ShardKey::from(*id)) == "users-0"
                && after_preview.owner_name(ShardKey::from(*id)) == "users-2"
        })
        .unwrap();
    let in_flight = tokio::spawn(router.clone().oneshot(moving));
    let (request, respond) = mock_handle.next_request().await.unwrap();
    assert_eq!(request, moving);

    let change = handle
        .add_shard(Shard::new("users-2", named("users-2")))
        .unwrap();
    assert_eq!(
        (change.epoch, change.kind, &*change.shard),
        (2, ChangeKind::Added, "users-2")
    );
    assert!(
        (change.moved_share - 1.0 / 3.0).abs() < 0.03,
        "{}",
        change.moved_share
    );
    // New calls see the new map at once; the call in flight is unaffected.
    assert_eq!(router.clone().oneshot(moving).await.unwrap(), "users-2");
    respond.send_response("users-0");
    assert_eq!(in_flight.await.unwrap().unwrap(), "users-0");

    // Exactly the keys the map says moved, moved.
    let after = handle.map();
    let known: Vec<ShardKey> = (0..3_000u64).map(ShardKey::from).collect();
    let moved = before.moved_keys(&after, known.iter().copied());
    assert!(moved > 800 && moved < 1_200, "{moved}");

    // Re-weight, then remove; a bad change leaves the map alone.
    let reweighted = handle.set_weight("users-1", 3.0).unwrap();
    assert_eq!(
        (reweighted.epoch, reweighted.kind),
        (3, ChangeKind::Reweighted)
    );
    assert_eq!(
        handle.remove_shard("nope").unwrap_err().kind(),
        MapErrorKind::UnknownShard
    );
    assert_eq!(
        handle
            .add_shard(Shard::new("users-1", named("x")))
            .unwrap_err()
            .kind(),
        MapErrorKind::DuplicateShard
    );
    assert_eq!(handle.epoch(), 3);
    let removed = handle.remove_shard("users-2").unwrap();
    assert_eq!((removed.epoch, removed.kind), (4, ChangeKind::Removed));
    let only = key_on(&handle.map(), "users-1", 0);
    assert_eq!(router.clone().oneshot(only).await.unwrap(), "users-1");
    assert_eq!(handle.last_change(), Some(removed));
    assert!(
        !handle.complete_move(),
        "a forward router keeps no previous map"
    );
}

#[tokio::test]
async fn clones_and_registries_share_one_map() {
    let registry: Registry<ShardHandle<Named>> = Registry::new();
    let build = || {
        ShardRouter::builder("users")
            .shard(Shard::new("users-0", Named("users-0")))
            .shard(Shard::new("users-1", Named("users-1")))
            .key_fn(|id: &u64| Some(*id))
            .registry(&registry)
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let clone = a.clone();
    a.handle()
        .add_shard(Shard::new("users-2", Named("users-2")))
        .unwrap();
    assert_eq!(b.handle().epoch(), 2);
    assert_eq!(clone.handle().map().len(), 3);
    assert_eq!(registry.get("users").unwrap().epoch(), 2);
    let key = key_on(&b.handle().map(), "users-2", 0);
    assert_eq!(b.oneshot(key).await.unwrap(), "users-2");
    assert_eq!(registry.names(), vec!["users".to_owned()]);
}
