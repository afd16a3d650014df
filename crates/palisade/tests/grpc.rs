//! `palisade::grpc::status_responses()` answers every enabled pattern's
//! errors with the gRPC status a tonic client reads.
#![cfg(all(feature = "retry", feature = "fan-out", feature = "grpc"))]

use std::time::Duration;

use http::Response;
use palisade::grpc::{GrpcCode, GrpcStatusLayer, client_status_responses, status_responses};
use palisade::retry::{AttemptTimedOut, DeadlineExceeded};
use palisade::{BoxError, BulkheadFull, CircuitOpen, DeadlineExpired, RateLimited};
use tower::{Layer, ServiceExt, service_fn};

async fn code(layer: &GrpcStatusLayer, error: BoxError) -> (GrpcCode, Response<String>) {
    let mut error = Some(error);
    let svc = layer.clone().layer(service_fn(move |()| {
        let error = error.take().expect("one call");
        async move { Err::<Response<String>, BoxError>(error) }
    }));
    let res = svc.oneshot(()).await.expect("infallible");
    (GrpcCode::of_response(&res).expect("a status"), res)
}

#[tokio::test]
async fn every_pattern_error_gets_its_code() {
    let server = status_responses();
    for (error, expected) in [
        (
            BoxError::from(DeadlineExpired::new("edge")),
            GrpcCode::DeadlineExceeded,
        ),
        (
            DeadlineExceeded::new(2, Duration::from_secs(1)).into(),
            GrpcCode::DeadlineExceeded,
        ),
        (
            AttemptTimedOut::new(1, Duration::from_millis(100)).into(),
            GrpcCode::DeadlineExceeded,
        ),
        (
            tower::timeout::error::Elapsed::new().into(),
            GrpcCode::DeadlineExceeded,
        ),
        (CircuitOpen::new("db", None).into(), GrpcCode::Unavailable),
        (BulkheadFull::new("db").into(), GrpcCode::Unavailable),
        (
            RateLimited::new("api", None).into(),
            GrpcCode::ResourceExhausted,
        ),
        ("boom".into(), GrpcCode::Unknown),
    ] {
        let text = error.to_string();
        let (code, _) = code(&server, error).await;
        assert_eq!(code, expected, "{text}");
    }
    let (code, res) = code(&client_status_responses(), "connection refused".into()).await;
    assert_eq!(code, GrpcCode::Unavailable);
    assert_eq!(res.headers()["grpc-message"], "connection refused");
}
