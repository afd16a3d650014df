//! Tracing: a map change is an `info` event naming the shard and the share
//! that moved; a refused key and a shard not ready in time are `debug`.
//! (A test binary of its own: the capture is a thread-local subscriber.)

mod support;

use std::time::Duration;

use palisade_core::BoxError;
use palisade_shard::{Shard, ShardRouter};
use palisade_test_util::EventCapture;
use support::{Named, key_on};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn changes_refusals_and_waits_are_traced() {
    let capture = EventCapture::default();
    let _guard = capture.set_default();
    let (mock, mut mock_handle) = tower_test::mock::pair::<Option<u64>, &'static str>();
    mock_handle.allow(0);
    type Svc = BoxCloneSyncService<Option<u64>, &'static str, BoxError>;
    let router = ShardRouter::builder("users")
        .shard(Shard::new("users-0", Svc::new(mock)))
        .shard(Shard::new(
            "users-1",
            Svc::new(ServiceExt::<Option<u64>>::map_err(
                Named("users-1"),
                BoxError::from,
            )),
        ))
        .ready_timeout(Duration::from_millis(100))
        .key_fn(|id: &Option<u64>| *id)
        .build()
        .unwrap();
    let handle = router.handle();
    handle
        .add_shard(Shard::new(
            "users-2",
            Svc::new(ServiceExt::<Option<u64>>::map_err(
                Named("users-2"),
                BoxError::from,
            )),
        ))
        .unwrap();
    let _ = router.clone().oneshot(None).await;
    let stuck = key_on(&handle.map(), "users-0", 0);
    let _ = router.oneshot(Some(stuck)).await;

    let events = capture.take();
    let changed = events
        .iter()
        .find(|e| e.line().contains("shard map changed"))
        .expect("a change event");
    assert_eq!(changed.level, tracing::Level::INFO);
    assert_eq!(changed.field("name"), Some("users"));
    assert_eq!(changed.field("shard"), Some("users-2"));
    assert_eq!(changed.field("change"), Some("added"));
    assert_eq!(changed.field("epoch"), Some("2"));
    let refused = events
        .iter()
        .find(|e| e.line().contains("no usable shard key"))
        .expect("a refusal event");
    assert_eq!(refused.level, tracing::Level::DEBUG);
    let waited = events
        .iter()
        .find(|e| e.line().contains("shard not ready in time"))
        .expect("a not-ready event");
    assert_eq!(waited.field("shard"), Some("users-0"));
}
