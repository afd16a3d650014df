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

        // A body whose size hint says it fits, but which outgrows
        // `max_body_bytes`: the event names the bound it crossed.
        let layer = RetryLayer::http_builder("gateway")
            .max_body_bytes(8)
            .build()
            .unwrap();
        let inner = tower::service_fn(|_: http::Request<RetryBody<Liar>>| async {
            Ok::<_, BoxError>(http::Response::new(String::new()))
        });
        let liar = http::Request::put("/x").body(Liar(2)).unwrap();
        let _ = layer.layer(inner).oneshot(liar).await;
        let lines = lines_of(&capture);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("body longer than max_body_bytes")
                    && l.contains("max_body_bytes=8")
                    && l.contains("name=gateway")),
            "{lines:#?}"
        );
    }
}

/// A body of `n` chunks of 8 bytes whose size hint claims at most 4.
#[cfg(feature = "http")]
struct Liar(usize);

#[cfg(feature = "http")]
impl http_body::Body for Liar {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"01234567",
        )))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = http_body::SizeHint::new();
        hint.set_upper(4);
        hint
    }
}
