//! Metrics, events, snapshots, settings, bad configuration, the read-from-new
//! fall-back-to-old move policy, and the types' auto traits.

mod support;

use std::sync::{Arc, Mutex};

use palisade_core::BoxError;
use palisade_shard::{ChangeKind, MapChange, MovePolicy, Scheme, Shard, ShardEvent, ShardRouter};
use palisade_test_util::{MetricsCapture, assert_send, assert_send_sync, assert_send_sync_clone};
use support::{Named, key_on};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

#[test]
fn metrics_per_shard_and_per_change() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let router = ShardRouter::builder("users")
            .shard(Shard::new("users-0", Named("users-0")))
            .shard(Shard::new("users-1", Named("users-1")))
            .key_fn(|id: &Option<u64>| *id)
            .build()
            .unwrap();
        let map = router.handle().map();
        let on_0 = key_on(&map, "users-0", 0);
        for _ in 0..3 {
            router.clone().oneshot(Some(on_0)).await.unwrap();
        }
        let _ = router.clone().oneshot(None).await.unwrap_err();
        let labels = [("name", "users"), ("shard", "users-0")];
        assert_eq!(capture.counter("palisade_shard_requests_total", &labels), 3);
        assert_eq!(
            capture
                .histogram("palisade_shard_request_duration_seconds", &labels)
                .len(),
            3
        );
        assert_eq!(
            capture.counter(
                "palisade_shard_key_errors_total",
                &[("name", "users"), ("reason", "missing")]
            ),
            1
        );
        assert_eq!(
            capture.gauge("palisade_shard_map_version", &[("name", "users")]),
            Some(1.0)
        );
        assert_eq!(capture.gauge("palisade_shard_share", &labels), Some(0.5));

        router
            .handle()
            .add_shard(Shard::new("users-2", Named("users-2")))
            .unwrap();
        assert_eq!(
            capture.gauge("palisade_shard_map_version", &[("name", "users")]),
            Some(2.0)
        );
        assert_eq!(
            capture.gauge("palisade_shard_shards", &[("name", "users")]),
            Some(3.0)
        );
        let moved = capture
            .gauge("palisade_shard_keys_moved_ratio", &[("name", "users")])
            .unwrap();
        assert!((moved - 1.0 / 3.0).abs() < 0.03, "{moved}");
        assert_eq!(
            capture.counter(
                "palisade_shard_map_changes_total",
                &[("name", "users"), ("kind", "added")]
            ),
            1
        );
        router.handle().remove_shard("users-2").unwrap();
        assert_eq!(
            capture.gauge(
                "palisade_shard_share",
                &[("name", "users"), ("shard", "users-2")]
            ),
            Some(0.0)
        );
    });
}

#[tokio::test]
async fn listeners_hear_every_change() {
    let seen: Arc<Mutex<Vec<ShardEvent>>> = Arc::default();
    let log = Arc::clone(&seen);
    let router = ShardRouter::builder("users")
        .shard(Shard::new("users-0", Named("users-0")))
        .key_fn(|id: &u64| Some(*id))
        .on_event(move |e: &ShardEvent| log.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let change = router
        .handle()
        .add_shard(Shard::new("users-1", Named("users-1")))
        .unwrap();
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    match &events[0] {
        ShardEvent::MapChanged { router, change: c } => {
            assert_eq!(&**router, "users");
            assert_eq!(c, &change);
            assert_eq!(c.kind, ChangeKind::Added);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[cfg(feature = "serde")]
#[test]
fn settings_from_toml_and_snapshot_as_json() {
    use palisade_shard::ShardSettings;

    let settings: ShardSettings = toml::from_str(
        r#"
        scheme = "ring"
        virtual_nodes = 500
        ready_timeout = "250ms"
        default_shard = "users-0"
        key = { path = { route = "/users/{id}", param = "id" } }
        key_format = "digits"
        "#,
    )
    .unwrap();
    assert_eq!(settings.scheme, Scheme::Ring);
    assert_eq!(
        settings.ready_timeout,
        std::time::Duration::from_millis(250)
    );
    settings.validate().unwrap();
    assert!(toml::from_str::<ShardSettings>("virtual_nodez = 1").is_err());
    assert!(toml::from_str::<ShardSettings>("ready_timeout = \"soon\"").is_err());
    let header: ShardSettings = toml::from_str("key = { header = \"x-user-id\" }").unwrap();
    assert_eq!(
        header.key,
        Some(palisade_shard::KeySource::Header("x-user-id".to_owned()))
    );

    let router = ShardRouter::builder("users")
        .settings(settings)
        .shard(Shard::new("users-0", Named("users-0")))
        .shard(Shard::new("users-1", Named("users-1")))
        .key_fn(|id: &u64| Some(*id))
        .build()
        .unwrap();
    router.handle().set_weight("users-1", 2.0).unwrap();
    let json = serde_json::to_value(router.handle().snapshot()).unwrap();
    assert_eq!(json["name"], "users");
    assert_eq!(json["scheme"], "ring");
    assert_eq!(json["epoch"], 2);
    assert_eq!(json["shards"][1]["weight"], 2.0);
    assert_eq!(json["last_change"]["kind"], "reweighted");
    assert!(json["last_change"]["moved_share"].as_f64().unwrap() > 0.1);
    assert_eq!(json["settings"]["ready_timeout"], "250ms");
    // Settings round-trip through their own serialization.
    let back: ShardSettings = serde_json::from_value(json["settings"].clone()).unwrap();
    assert_eq!(&back, router.handle().settings());
}

#[test]
fn bad_configuration_is_refused_with_the_setting_named() {
    let base = || ShardRouter::builder("users").shard(Shard::new("a", Named("a")));
    fn field<T>(result: Result<T, palisade_core::ConfigError>) -> String {
        result.err().expect("refused").field().to_owned()
    }
    assert_eq!(field(base().build()), "key");
    assert_eq!(
        field(
            ShardRouter::<Named, _>::builder("users")
                .key_fn(|n: &u64| Some(*n))
                .build()
        ),
        "shard"
    );
    assert_eq!(
        field(
            base()
                .key_fn(|n: &u64| Some(*n))
                .default_shard("zz")
                .build()
        ),
        "default_shard"
    );
    assert_eq!(
        field(base().key_fn(|n: &u64| Some(*n)).virtual_nodes(0).build()),
        "virtual_nodes"
    );
    assert_eq!(
        field(
            base()
                .key_fn(|n: &u64| Some(*n))
                .ready_timeout(std::time::Duration::ZERO)
                .build()
        ),
        "ready_timeout"
    );
    assert_eq!(
        field(
            base()
                .key_fn(|n: &u64| Some(*n))
                .during_move(MovePolicy::FallBackToPrevious)
                .build()
        ),
        "during_move"
    );
    assert_eq!(
        field(
            base()
                .scheme(Scheme::Jump)
                .shard(Shard::new("b", Named("b")).weight(2.0))
                .key_fn(|n: &u64| Some(*n))
                .build()
        ),
        "shard"
    );
    assert_eq!(
        field(
            base()
                .shard(Shard::new("a", Named("again")))
                .key_fn(|n: &u64| Some(*n))
                .build()
        ),
        "shard"
    );
    assert_eq!(
        field(
            base()
                .shard(Shard::<Named>::replicated("empty", []))
                .key_fn(|n: &u64| Some(*n))
                .build()
        ),
        "shard"
    );
    assert_eq!(
        field(
            ShardRouter::builder("")
                .shard(Shard::new("a", Named("a")))
                .key_fn(|n: &u64| Some(*n))
                .build()
        ),
        "name"
    );
}

type Svc = BoxCloneSyncService<u64, &'static str, BoxError>;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn during_a_move_a_miss_on_the_new_owner_falls_back_to_the_old() {
    // The old shard holds every key; a new shard starts empty: it answers
    // "not found" (an error here) until the data has moved.
    let holds_all: Svc = BoxCloneSyncService::new(tower::service_fn(|_: u64| async {
        Ok::<_, BoxError>("old")
    }));
    let empty: Svc = BoxCloneSyncService::new(tower::service_fn(|_: u64| async {
        Err::<&'static str, BoxError>("not found".into())
    }));
    let seen: Arc<Mutex<Vec<ShardEvent>>> = Arc::default();
    let log = Arc::clone(&seen);
    let router = ShardRouter::builder("users")
        .shard(Shard::new("users-0", holds_all))
        .key_fn(|id: &u64| Some(*id))
        .on_event(move |e: &ShardEvent| log.lock().unwrap().push(e.clone()))
        .fall_back_to_previous(
            |id: &u64| Some(*id),
            |result: &Result<&'static str, BoxError>| result.is_err(),
        )
        .build()
        .unwrap();
    let handle = router.handle();
    let change: MapChange = handle.add_shard(Shard::new("users-1", empty)).unwrap();
    assert!(handle.snapshot().moving);
    assert!(handle.previous_map().is_some());
    let moved = key_on(&handle.map(), "users-1", 0);
    assert_eq!(router.clone().oneshot(moved).await.unwrap(), "old");
    let snapshot = handle.snapshot();
    let new = snapshot
        .shards
        .iter()
        .find(|s| &*s.name == "users-1")
        .unwrap();
    assert_eq!((new.requests, new.fallbacks), (1, 1));
    assert!(seen.lock().unwrap().iter().any(|e| matches!(
        e,
        ShardEvent::FellBack { from, to, .. } if &**from == "users-1" && &**to == "users-0"
    )));
    // A key that did not move is sent once.
    let stayed = key_on(&handle.map(), "users-0", 0);
    assert_eq!(router.clone().oneshot(stayed).await.unwrap(), "old");

    // The move completes: no more fall-back.
    assert!(handle.complete_move());
    assert!(!handle.snapshot().moving);
    assert_eq!(
        router.oneshot(moved).await.unwrap_err().to_string(),
        "not found"
    );
    assert_eq!(handle.last_change(), Some(change));
}

#[test]
fn public_types_are_send_sync_and_clone() {
    type Router = ShardRouter<Svc, palisade_shard::KeyFn<fn(&u64) -> Option<u64>>>;
    assert_send_sync_clone::<Router>();
    assert_send_sync_clone::<palisade_shard::ShardHandle<Svc>>();
    assert_send_sync_clone::<palisade_shard::ShardService<Svc>>();
    assert_send_sync_clone::<palisade_shard::ScatterGather<Svc, u64, palisade_fan_out::JsonMerge>>(
    );
    assert_send::<palisade_shard::future::ResponseFuture<Svc, u64, palisade_shard::Forward>>();
    assert_send_sync::<palisade_shard::ShardSnapshot>();
}
