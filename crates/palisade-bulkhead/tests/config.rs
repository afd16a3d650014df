//! Bad configuration is refused; public types are Send + Sync + Clone; the
//! registry shares bulkheads by name.

use std::time::Duration;

use palisade_bulkhead::limiter::{Aimd, Gradient};
use palisade_bulkhead::{
    Bulkhead, BulkheadHandle, BulkheadLayer, BulkheadSnapshot, KeyFn, PoolSnapshot, Registry,
    future::ResponseFuture,
};
use palisade_core::ConfigError;
use palisade_test_util::{assert_send, assert_send_sync, assert_send_sync_clone};
use std::borrow::Cow;
use tower::Layer;

fn field<P, C>(result: Result<BulkheadLayer<P, C>, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected a ConfigError"),
        Err(e) => e.field().to_owned(),
    }
}

#[allow(clippy::ptr_arg, reason = "the request type is `String`")]
fn by_str(s: &String) -> Option<Cow<'_, str>> {
    Some(Cow::Borrowed(s.as_str()))
}

#[test]
fn bad_settings_are_refused_with_the_setter_name() {
    let b = || BulkheadLayer::builder("x");
    assert_eq!(field(BulkheadLayer::builder("").build()), "name");
    assert_eq!(
        field(b().max_concurrent_calls(0).build()),
        "max_concurrent_calls"
    );
    assert_eq!(
        field(b().max_concurrent_calls(1 << 30).build()),
        "max_concurrent_calls"
    );
    assert_eq!(field(b().max_queue(1 << 30).build()), "max_queue");
    assert_eq!(
        field(b().backpressure(true).partition_by(by_str).build()),
        "backpressure"
    );
    assert_eq!(
        field(b().partition_by(by_str).max_partitions(0).build()),
        "max_partitions"
    );
    assert_eq!(
        field(b().partition_by(by_str).max_partitions(usize::MAX).build()),
        "max_partitions"
    );
    assert_eq!(
        field(
            b().partition_by(by_str)
                .partition_idle_timeout(Duration::ZERO)
                .build()
        ),
        "partition_idle_timeout"
    );
    assert_eq!(
        field(
            b().partition_by(by_str)
                .partition_idle_timeout(Duration::MAX)
                .build()
        ),
        "partition_idle_timeout"
    );
    assert_eq!(
        field(b().overflow_limit(usize::MAX).build()),
        "overflow_limit"
    );
    assert_eq!(
        field(b().adaptive(Aimd::new().min_limit(0)).build()),
        "min_limit"
    );
    assert_eq!(
        field(
            b().adaptive(Gradient::new().min_limit(10).initial_limit(5))
                .build()
        ),
        "initial_limit"
    );
    assert_eq!(
        field(
            b().adaptive(
                Gradient::new()
                    .min_limit(50)
                    .max_limit(10)
                    .initial_limit(20)
            )
            .build()
        ),
        "min_limit"
    );
    assert_eq!(
        field(b().adaptive(Gradient::new().smoothing(2.0)).build()),
        "smoothing"
    );
    let err = b().max_concurrent_calls(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `max_concurrent_calls`: must be at least 1, got 0"
    );
    // Zero wait and zero queue are valid: they refuse at once.
    assert!(b().max_wait(Duration::ZERO).max_queue(0).build().is_ok());
    assert!(b().max_wait(Duration::MAX).build().is_ok());
}

#[test]
fn handle_setters_validate() {
    let layer = BulkheadLayer::builder("h")
        .partition_by(by_str)
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(
        handle.set_max_queue(Some(usize::MAX)).unwrap_err().field(),
        "max_queue"
    );
    assert_eq!(
        handle.set_partition_limit("k", 0).unwrap_err().field(),
        "max_concurrent_calls"
    );
    assert_eq!(handle.set_partition_limit("(overflow)", 0).unwrap(), 0);
    assert!(!handle.clear_partition_limit("never-set"));
}

type Svc = tower::util::BoxCloneSyncService<u64, u64, palisade_core::BoxError>;

#[test]
fn public_types_are_send_sync_clone() {
    assert_send_sync_clone::<BulkheadLayer>();
    assert_send_sync_clone::<BulkheadLayer<KeyFn<fn(&String) -> Option<Cow<'_, str>>>>>();
    assert_send_sync_clone::<Bulkhead<Svc>>();
    assert_send_sync_clone::<Bulkhead<Svc, KeyFn<fn(&u64) -> Option<Cow<'_, str>>>>>();
    assert_send_sync_clone::<BulkheadHandle>();
    assert_send_sync_clone::<Registry<BulkheadHandle>>();
    assert_send_sync_clone::<BulkheadSnapshot>();
    assert_send_sync_clone::<PoolSnapshot>();
    assert_send_sync::<palisade_bulkhead::BulkheadBuilder>();
    assert_send::<ResponseFuture<Svc, u64, palisade_core::ErrorsAsFailures>>();
}

#[cfg(feature = "http")]
#[test]
fn http_types_are_send_sync_clone() {
    use palisade_bulkhead::http::{
        AuthorityKey, HeaderKey, PathKey, ProblemResponse, ProblemResponseLayer,
    };
    assert_send_sync_clone::<BulkheadLayer<HeaderKey>>();
    assert_send_sync_clone::<BulkheadLayer<PathKey>>();
    assert_send_sync_clone::<BulkheadLayer<AuthorityKey>>();
    assert_send_sync_clone::<ProblemResponseLayer>();
    assert_send_sync_clone::<ProblemResponse<Bulkhead<Svc>>>();
}

#[test]
fn a_registry_gives_one_bulkhead_per_name() {
    let registry = Registry::<BulkheadHandle>::new();
    let first = BulkheadLayer::builder("payments")
        .max_concurrent_calls(3)
        .registry(&registry)
        .build()
        .unwrap();
    // Built again (say, once per route): the same state, whatever the settings.
    let again = BulkheadLayer::builder("payments")
        .max_concurrent_calls(99)
        .registry(&registry)
        .build()
        .unwrap();
    assert!(first.handle().same_as(&again.handle()));
    assert_eq!(again.handle().limit(), 3);
    let other = BulkheadLayer::builder("search")
        .registry(&registry)
        .build()
        .unwrap();
    assert!(!other.handle().same_as(&first.handle()));
    assert_eq!(
        registry.names(),
        vec!["payments".to_owned(), "search".to_owned()]
    );
    let snapshots = registry.snapshots();
    assert_eq!(&*snapshots[0].name, "payments");
    assert_eq!(snapshots[0].limit, 3);
    assert_eq!(snapshots[0].pools.len(), 1);
    assert_eq!(snapshots[0].limit_mode, "fixed");
    assert_eq!(registry.get("search").unwrap().name(), "search");
    // Another shape under a taken name is an error, not a silent mix-up.
    let err = BulkheadLayer::builder("payments")
        .partition_by(by_str)
        .registry(&registry)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "registry");
    assert!(registry.remove("search").is_some());
    assert_eq!(registry.len(), 1);
    // A layer from a removed entry still works: it owns its state.
    let svc = other.layer(tower::service_fn(|x: u64| async move {
        Ok::<_, std::convert::Infallible>(x)
    }));
    drop(svc);
}

#[test]
fn snapshot_of_a_partitioned_bulkhead() {
    let layer = BulkheadLayer::builder("snap")
        .max_concurrent_calls(4)
        .max_wait(Duration::from_millis(5))
        .max_queue(7)
        .partition_by(by_str)
        .max_partitions(10)
        .overflow_limit(2)
        .build()
        .unwrap();
    let s = layer.handle().snapshot();
    assert!(s.partitioned && !s.backpressure);
    assert_eq!(
        (s.limit, s.max_queue, s.max_partitions),
        (4, Some(7), Some(10))
    );
    assert_eq!(s.max_wait, Duration::from_millis(5));
    let labels: Vec<_> = s
        .pools
        .iter()
        .map(|p| p.partition.as_deref().unwrap())
        .collect();
    assert_eq!(labels, vec!["(unkeyed)", "(overflow)"]);
    assert_eq!((s.pools[0].limit, s.pools[1].limit), (4, 2));
    let bp = BulkheadLayer::builder("bp")
        .backpressure(true)
        .build()
        .unwrap();
    assert_eq!(
        bp.handle().max_wait(),
        Duration::MAX,
        "backpressure waits like tower by default"
    );
}
