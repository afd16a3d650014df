//! A rejection, as a caller of the layer sees it, says how to detect it.

use std::time::Duration;

use palisade_bulkhead::{BulkheadFull, BulkheadLayer};
use palisade_core::{BoxError, cause_ref, is_rejection};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_rejection_names_how_to_detect_it() {
    let layer = BulkheadLayer::builder("inventory")
        .max_concurrent_calls(1)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|()| async {
        std::future::pending::<()>().await;
        Ok::<_, BoxError>(())
    }));
    // One call holds the only permit; the next is refused at once.
    let held = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    let err = svc.oneshot(()).await.unwrap_err();

    assert!(is_rejection(&*err));
    assert_eq!(
        cause_ref::<BulkheadFull>(&*err).unwrap().name(),
        "inventory"
    );
    assert_eq!(err.to_string(), "bulkhead `inventory` is full");
    let long = format!("{err:#}");
    assert!(long.starts_with("bulkhead `inventory` is full"), "{long}");
    assert!(long.contains("palisade_core::is_rejection"), "{long}");
    assert!(long.contains("palisade_core::BulkheadFull"), "{long}");
    assert!(long.contains("palisade_core::cause_ref"), "{long}");
    held.abort();
}
