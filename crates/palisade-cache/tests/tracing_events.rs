//! The cache's tracing events, with the `name` field.

mod support;

use std::time::Duration;

use palisade_cache::CacheLayer;
use palisade_test_util::EventCapture;
use support::{Answer, Backend};
use tower::{Layer, ServiceExt};

#[test]
fn invalidations_at_info_and_stale_serves_at_debug() {
    let capture = EventCapture::default();
    let _guard = capture.set_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = Backend::new("v");
        let layer = CacheLayer::builder("traced")
            .key(|n: &u32| Some(*n))
            .ttl(Duration::from_secs(10))
            .stale_while_revalidate(Duration::ZERO)
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(backend.clone());
        svc.clone().oneshot(1).await.unwrap();
        backend.answer(Answer::Rejected);
        tokio::time::advance(Duration::from_secs(11)).await;
        svc.clone().oneshot(1).await.unwrap();
        handle.invalidate("1");
    });
    let events = capture.take();
    let lines: Vec<String> = events
        .iter()
        .filter(|e| e.target.starts_with("palisade_cache"))
        .map(|e| e.line())
        .collect();
    assert_eq!(
        lines,
        [
            r#"DEBUG message=cache served a stale entry name=traced reason="rejected""#,
            r#"INFO message=cache invalidated entries name=traced pattern="1" prefix=false removed=1"#,
        ]
    );
}
