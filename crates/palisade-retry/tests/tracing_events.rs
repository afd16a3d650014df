//! The tracing events the layer emits. One test function, alone in its
//! binary: tracing caches each callsite's interest process-wide, and a
//! callsite first hit on another thread while a scoped subscriber is being
//! installed may miss it.

mod support;

use std::time::Duration;

use palisade_core::BoxError;
use palisade_retry::{Backoff, RetryLayer};
use palisade_test_util::{CapturedEvent, EventCapture};
use support::{backend, boom};
use tower::{Layer, ServiceExt};

/// The events captured since the last call, one line each.
fn lines_of(capture: &EventCapture) -> Vec<String> {
    capture.take().iter().map(CapturedEvent::line).collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_layer_says_what_it_does_and_why() {
    let capture = EventCapture::default();
    let _guard = capture.set_default();

    // A retry, then the budget runs out.
    let layer = RetryLayer::builder("orders")
        .max_attempts(5)
        .backoff(Backoff::fixed(Duration::from_millis(30)))
        .jitter(palisade_retry::Jitter::None)
        .retry_ratio(0.0)
        .min_retries_per_sec(1)
        .build()
        .unwrap();
    let inner = backend(|_, _: u32| Err::<u32, BoxError>(boom()));
    let _ = layer.layer(inner).oneshot(1).await;
    let lines = lines_of(&capture);
    let retrying: Vec<_> = lines.iter().filter(|l| l.contains("retrying")).collect();
    assert_eq!(retrying.len(), 1, "{lines:#?}");
    for part in [
        "DEBUG",
        "name=orders",
        "attempt=2",
        "reason=\"error\"",
        "delay_ms=30",
    ] {
        assert!(
            retrying[0].contains(part),
            "{part} missing from {}",
            retrying[0]
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("retry budget exhausted") && l.contains("attempts=2")),
        "{lines:#?}"
    );

    #[cfg(feature = "http")]
    {
        use bytes::Bytes;
        use http_body_util::Full;
        use palisade_retry::http::RetryBody;

        let layer = RetryLayer::http_builder("gateway")
            .max_body_bytes(4)
            .build()
            .unwrap();
        let inner = tower::service_fn(|_: http::Request<RetryBody<Full<Bytes>>>| async {
            Ok::<_, BoxError>(http::Response::new(String::new()))
        });
        let svc = layer.layer(inner);
        let big = http::Request::put("/x")
            .body(Full::new(Bytes::from_static(b"too long")))
            .unwrap();
        let _ = svc.clone().oneshot(big).await;
        let post = http::Request::post("/x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let _ = svc.oneshot(post).await;
        let lines = lines_of(&capture);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("body too large or of unknown length")
                    && l.contains("name=gateway")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("not idempotent") && l.contains("POST")),
            "{lines:#?}"
        );
    }
}
