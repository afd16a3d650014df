//! The shape every Palisade layer promises: auto traits, config validation,
//! shared state.

mod support;

use std::sync::Arc;
use std::time::Duration;

use palisade_core::{BoxError, ConfigError, ErrorsAsFailures};
use palisade_retry::future::ResponseFuture;
use palisade_retry::kind::Plain;
use palisade_retry::{Backoff, MAX_DURATION, Retry, RetryBudget, RetryLayer};
use palisade_test_util::{assert_send, assert_send_sync, assert_send_sync_clone};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

type Inner = BoxCloneSyncService<u32, u32, BoxError>;

#[test]
fn public_types_are_send_sync_clone() {
    assert_send_sync_clone::<RetryLayer>();
    assert_send_sync_clone::<Retry<Inner>>();
    assert_send_sync_clone::<Arc<RetryBudget>>();
    assert_send_sync::<RetryBudget>();
    assert_send::<ResponseFuture<Inner, u32, ErrorsAsFailures, Plain>>();
    assert_send_sync_clone::<palisade_retry::AttemptTimedOut>();
    assert_send_sync_clone::<palisade_retry::DeadlineExceeded>();
    assert_send_sync_clone::<palisade_retry::RetryEvent>();
}

#[cfg(feature = "http")]
#[test]
fn http_types_are_send_sync_clone() {
    use bytes::Bytes;
    use http_body_util::Full;
    use palisade_core::http::StatusClassifier;
    use palisade_retry::http::{Http, HttpRetryLayer, RetryBody};

    type HttpInner = BoxCloneSyncService<
        http::Request<RetryBody<Full<Bytes>>>,
        http::Response<String>,
        BoxError,
    >;
    assert_send_sync_clone::<HttpRetryLayer>();
    assert_send_sync_clone::<Retry<HttpInner, StatusClassifier, Http>>();
    assert_send::<ResponseFuture<HttpInner, http::Request<Full<Bytes>>, StatusClassifier, Http>>();
    assert_send_sync::<RetryBody<Full<Bytes>>>();
}

#[test]
fn retry_services_fit_in_a_box_clone_sync_service() {
    let inner: Inner =
        BoxCloneSyncService::new(tower::service_fn(
            |x: u32| async move { Ok::<_, BoxError>(x) },
        ));
    let layer = RetryLayer::builder("boxed").build().unwrap();
    let _boxed: Inner = BoxCloneSyncService::new(layer.layer(inner));
}

fn field(result: Result<RetryLayer, ConfigError>) -> String {
    result.expect_err("invalid config").field().to_owned()
}

#[test]
fn bad_config_names_the_setter() {
    let b = || RetryLayer::builder("bad");
    assert_eq!(field(b().max_attempts(0).build()), "max_attempts");
    let ms = Duration::from_millis;
    assert_eq!(
        field(
            b().backoff(Backoff::exponential(ms(10), 0.5, ms(100)))
                .build()
        ),
        "backoff"
    );
    assert_eq!(
        field(
            b().backoff(Backoff::exponential(ms(10), f64::NAN, ms(100)))
                .build()
        ),
        "backoff"
    );
    assert_eq!(
        field(
            b().backoff(Backoff::exponential(ms(200), 2.0, ms(100)))
                .build()
        ),
        "backoff"
    );
    assert_eq!(
        field(b().backoff(Backoff::decorrelated(ms(200), ms(100))).build()),
        "backoff"
    );
    assert_eq!(
        field(
            b().backoff(Backoff::decorrelated(Duration::ZERO, ms(100)))
                .build()
        ),
        "backoff"
    );
    assert_eq!(
        field(b().attempt_timeout(Duration::ZERO).build()),
        "attempt_timeout"
    );
    assert_eq!(field(b().deadline(Duration::ZERO).build()), "deadline");
    assert_eq!(field(b().retry_ratio(-0.1).build()), "retry_ratio");
    assert_eq!(field(b().retry_ratio(f64::INFINITY).build()), "retry_ratio");
    assert_eq!(
        field(b().budget_ttl(Duration::from_millis(500)).build()),
        "budget_ttl"
    );
    assert_eq!(
        field(b().budget_ttl(Duration::from_secs(61)).build()),
        "budget_ttl"
    );
    let err = b().max_attempts(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `max_attempts`: must be at least 1 (the first attempt counts), got 0"
    );
    // The edges are valid.
    assert!(
        b().max_attempts(1)
            .retry_ratio(0.0)
            .budget_ttl(Duration::from_secs(60))
            .build()
            .is_ok()
    );
    assert!(
        b().backoff(Backoff::exponential(ms(100), 1.0, ms(100)))
            .build()
            .is_ok()
    );
}

#[test]
fn durations_above_a_year_are_refused() {
    assert_eq!(MAX_DURATION, Duration::from_secs(365 * 24 * 3_600));
    let b = || RetryLayer::builder("long");
    let over = MAX_DURATION + Duration::from_nanos(1);
    let ms = Duration::from_millis;
    for backoff in [
        // Once a delay that overflowed the clock and was retried at once.
        Backoff::fixed(Duration::MAX),
        Backoff::fixed(over),
        Backoff::exponential(ms(10), 2.0, Duration::MAX),
        Backoff::exponential(over, 2.0, Duration::MAX),
        Backoff::decorrelated(ms(10), Duration::MAX),
        Backoff::decorrelated(over, over),
    ] {
        let err = b().backoff(backoff).build().unwrap_err();
        assert_eq!(err.field(), "backoff", "{err}");
        assert!(err.to_string().contains("at most one year"), "{err}");
    }
    for d in [over, Duration::MAX] {
        assert_eq!(field(b().attempt_timeout(d).build()), "attempt_timeout");
        assert_eq!(field(b().deadline(d).build()), "deadline");
    }
    // A year is accepted everywhere.
    for backoff in [
        Backoff::fixed(MAX_DURATION),
        Backoff::exponential(MAX_DURATION, 2.0, MAX_DURATION),
        Backoff::decorrelated(ms(10), MAX_DURATION),
    ] {
        b().backoff(backoff)
            .attempt_timeout(MAX_DURATION)
            .deadline(MAX_DURATION)
            .build()
            .unwrap();
    }
}

#[test]
fn defaults_are_documented_ones() {
    let layer = RetryLayer::builder("defaults").build().unwrap();
    assert_eq!(layer.name(), "defaults");
    assert_eq!(layer.max_attempts(), 3);
    let budget = layer.budget().expect("a budget by default");
    assert!((budget.retry_ratio() - 0.2).abs() < f64::EPSILON);
    assert_eq!(budget.min_retries_per_sec(), 10);
    assert_eq!(budget.ttl(), Duration::from_secs(10));
    assert_eq!(
        format!("{:?}", Backoff::default()),
        "Exponential { base: 50ms, multiplier: 2.0, cap: 2s }"
    );
}

async fn echo(x: u32) -> Result<u32, BoxError> {
    Ok(x)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_and_layer_calls_share_the_layer_state() {
    let layer = RetryLayer::builder("shared").build().unwrap();
    let a = layer.layer(tower::service_fn(echo));
    let b = layer.clone().layer(tower::service_fn(echo));
    for svc in [a.clone(), a, b.clone(), b] {
        assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    }
    // Every call deposited into the one budget the layer owns.
    assert_eq!(layer.budget().unwrap().snapshot().requests, 4);
}
