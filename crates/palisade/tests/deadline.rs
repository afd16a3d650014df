//! A deadline set at the top of a stack bounds everything below it: the
//! retry layer stops when the next attempt cannot fit, a fallback answers
//! the expiry, and the answer is a 504 problem.
#![cfg(all(
    feature = "deadline",
    feature = "retry",
    feature = "fallback",
    feature = "http"
))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use palisade::deadline::DeadlineLayer;
use palisade::fallback::{FallbackClass, FallbackLayer};
use palisade::retry::http::RetryBody;
use palisade::retry::{Backoff, Jitter, NoTimeToRetry, RetryLayer};
use palisade::{BoxError, ServiceBuilderExt, is_caused_by};
use tokio::time::{Instant, sleep};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

type Body = Empty<bytes::Bytes>;

fn get() -> Request<Body> {
    Request::get("/inventory/7").body(Empty::new()).unwrap()
}

/// A downstream that fails every attempt after `latency`.
fn failing(
    latency: Duration,
) -> (
    Arc<AtomicU32>,
    impl tower::Service<
        Request<RetryBody<Body>>,
        Response = Response<String>,
        Error = BoxError,
        Future: Send,
    > + Clone,
) {
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    let svc = service_fn(move |_: Request<RetryBody<Body>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            sleep(latency).await;
            Err::<Response<String>, BoxError>("connection reset".into())
        }
    });
    (attempts, svc)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_stop_when_the_deadline_above_cannot_fit_another_attempt() {
    let (attempts, downstream) = failing(20 * MS);
    let svc = ServiceBuilder::new()
        .deadline(
            DeadlineLayer::builder("edge")
                .budget(200 * MS)
                .build()
                .unwrap(),
        )
        .retries(
            RetryLayer::http_builder("inventory")
                .max_attempts(10)
                .backoff(Backoff::fixed(50 * MS))
                .jitter(Jitter::None)
                .no_budget()
                .build()
                .unwrap(),
        )
        .service(downstream);
    let start = Instant::now();
    let err = svc.oneshot(get()).await.unwrap_err();
    // Attempts at 0, 70 and 140 ms (20 ms each, 50 ms apart); a fourth
    // would start at 210 ms, past the 200 ms deadline.
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), 160 * MS);
    assert!(is_caused_by::<NoTimeToRetry>(&*err), "{err}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_expired_deadline_is_a_504_or_a_fallback() {
    let (_, hanging) = failing(Duration::from_secs(10));
    let problem = ServiceBuilder::new()
        .layer(palisade::http::problem_responses())
        .deadline(
            DeadlineLayer::builder("edge")
                .budget(100 * MS)
                .build()
                .unwrap(),
        )
        .retries(RetryLayer::http_builder("inventory").build().unwrap())
        .service(hanging.clone());
    let res = problem.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["type"], "urn:palisade:problem:deadline-exceeded");

    let answered = ServiceBuilder::new()
        .fallback(
            FallbackLayer::builder("inventory")
                .with(|_| Response::new("cached".to_owned()))
                .on([FallbackClass::Deadline])
                .build()
                .unwrap(),
        )
        .deadline(
            DeadlineLayer::builder("edge")
                .budget(100 * MS)
                .build()
                .unwrap(),
        )
        .retries(RetryLayer::http_builder("inventory").build().unwrap())
        .service(hanging);
    let res = answered.oneshot(get()).await.unwrap();
    assert_eq!(res.body(), "cached");
}
