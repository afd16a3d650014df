//! The fallback layer: what it answers, how, and that it says so.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{
    BoxError, BulkheadFull, CircuitOpen, DeadlineExpired, Outcome, RateLimited, Registry,
    is_caused_by,
};
use palisade_fallback::{
    Cause, FallbackClass, FallbackClasses, FallbackEvent, FallbackFailed, FallbackHandle,
    FallbackLayer,
};
use palisade_test_util::{DropProbe, MetricsCapture, assert_send, assert_send_sync_clone};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// A downstream failing in the way its request names.
fn downstream(req: &'static str) -> std::future::Ready<Result<String, BoxError>> {
    std::future::ready(match req {
        "open" => Err(CircuitOpen::new("db", Some(Duration::from_secs(1))).into()),
        "full" => Err(BulkheadFull::new("db").into()),
        "limited" => Err(RateLimited::new("db", None).into()),
        "late" => Err(DeadlineExpired::new("edge").into()),
        "error" => Err("connection reset".into()),
        ok => Ok(format!("real {ok}")),
    })
}

#[tokio::test]
async fn answers_only_the_configured_classes() {
    for class in FallbackClass::ALL {
        if class == FallbackClass::Response {
            continue;
        }
        let layer = FallbackLayer::builder("f")
            .value("fallback".to_owned())
            .on([class])
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(downstream));
        for (req, req_class) in [
            ("open", FallbackClass::CircuitOpen),
            ("full", FallbackClass::BulkheadFull),
            ("limited", FallbackClass::RateLimited),
            ("late", FallbackClass::Deadline),
            ("error", FallbackClass::Error),
        ] {
            let result = svc.clone().oneshot(req).await;
            if req_class == class {
                assert_eq!(result.unwrap(), "fallback", "{class} answers {req}");
            } else {
                assert!(result.is_err(), "{class} must not answer {req}");
            }
        }
        assert_eq!(svc.oneshot("ok").await.unwrap(), "real ok");
        assert_eq!(layer.handle().snapshot().served, 1);
    }
}

#[tokio::test]
async fn rejections_and_deadlines_are_answered_whatever_the_classifier_says() {
    // A classifier that calls nothing a failure still lets the fallback
    // answer rejections and expired deadlines; plain errors pass through.
    let svc = FallbackLayer::builder("f")
        .value("fallback".to_owned())
        .classifier(|_: &Result<String, BoxError>| Outcome::Ignored)
        .build()
        .unwrap()
        .layer(service_fn(downstream));
    for req in ["open", "full", "limited", "late"] {
        assert_eq!(svc.clone().oneshot(req).await.unwrap(), "fallback", "{req}");
    }
    assert!(svc.oneshot("error").await.is_err());
}

#[tokio::test]
async fn a_closure_sees_the_cause() {
    let svc = FallbackLayer::builder("f")
        .with(|cause: Cause<'_>| {
            format!(
                "{}: {} ({})",
                cause.name(),
                cause.class(),
                cause.error().map(ToString::to_string).unwrap_or_default()
            )
        })
        .build()
        .unwrap()
        .layer(service_fn(downstream));
    assert_eq!(
        svc.oneshot("open").await.unwrap(),
        "f: circuit-open (circuit breaker `db` is open; next probe in 1s)"
    );
}

#[tokio::test]
async fn a_service_fallback_gets_a_copy_of_the_request_and_its_failure_is_reported() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let replica = service_fn(move |req: &'static str| {
        sink.lock().unwrap().push(req);
        async move {
            if req == "error" {
                Err::<String, BoxError>(CircuitOpen::new("replica", None).into())
            } else {
                Ok(format!("replica {req}"))
            }
        }
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let layer = FallbackLayer::builder("f")
        .service(replica)
        .on_event(move |e: &FallbackEvent| log.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(downstream));
    assert_eq!(svc.clone().oneshot("open").await.unwrap(), "replica open");
    let err = svc.oneshot("error").await.unwrap_err();
    let failed = palisade_core::cause_ref::<FallbackFailed>(&*err).expect("FallbackFailed");
    assert_eq!(failed.class(), FallbackClass::Error);
    assert_eq!(failed.primary(), "connection reset");
    assert!(
        is_caused_by::<CircuitOpen>(&*err),
        "the fallback's own error is the source"
    );
    assert_eq!(*seen.lock().unwrap(), ["open", "error"]);
    let snapshot = layer.handle().snapshot();
    assert_eq!((snapshot.served, snapshot.failed), (1, 1));
    let by_class: Vec<(FallbackClass, u64, u64)> = snapshot
        .by_class
        .iter()
        .filter(|c| c.served + c.failed > 0)
        .map(|c| (c.class, c.served, c.failed))
        .collect();
    assert_eq!(
        by_class,
        [
            (FallbackClass::CircuitOpen, 1, 0),
            (FallbackClass::Error, 0, 1)
        ]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            FallbackEvent::Served {
                name: "f".into(),
                class: FallbackClass::CircuitOpen
            },
            FallbackEvent::Failed {
                name: "f".into(),
                class: FallbackClass::Error
            }
        ]
    );
}

/// A real breaker, forced open, below the fallback: the open breaker is
/// answered and the breaker's counts are untouched by the fallback.
#[tokio::test]
async fn an_open_breaker_below_is_answered() {
    use palisade_circuit_breaker::CircuitBreakerLayer;
    let breaker = CircuitBreakerLayer::builder("db").build().unwrap();
    let breaker_handle = breaker.handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::builder("f")
                .value(0u32)
                .on(FallbackClasses::REJECTIONS)
                .build()
                .unwrap(),
        )
        .layer(breaker)
        .service(service_fn(move |n: u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(n) }
        }));
    assert_eq!(svc.clone().oneshot(5).await.unwrap(), 5);
    breaker_handle.force_open();
    assert_eq!(svc.oneshot(6).await.unwrap(), 0);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the open breaker kept the call away"
    );
}

/// A bulkhead that refuses in `poll_ready`: the next call is answered
/// without reaching the inner service.
#[derive(Clone)]
struct RefusesReadiness {
    refuse: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Service<u32> for RefusesReadiness {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.refuse.swap(false, Ordering::SeqCst) {
            Poll::Ready(Err(BulkheadFull::new("pool").into()))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(n))
    }
}

#[tokio::test]
async fn a_readiness_refusal_is_answered_on_the_next_call() {
    let inner = RefusesReadiness {
        refuse: Arc::new(AtomicBool::new(true)),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let calls = Arc::clone(&inner.calls);
    let mut svc = FallbackLayer::builder("f")
        .value(0u32)
        .build()
        .unwrap()
        .layer(inner.clone());
    assert_eq!(svc.ready().await.unwrap().call(9).await.unwrap(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(svc.ready().await.unwrap().call(9).await.unwrap(), 9);
    // Not a class it answers: the readiness error is returned.
    inner.refuse.store(true, Ordering::SeqCst);
    let mut svc = FallbackLayer::builder("f")
        .value(0u32)
        .on([FallbackClass::Error])
        .build()
        .unwrap()
        .layer(inner);
    let err = svc.ready().await.err().expect("refused");
    assert!(is_caused_by::<BulkheadFull>(&*err));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_future_drops_the_call_and_the_answer_in_flight() {
    let probe = DropProbe::new();
    let token = probe.clone();
    let mut svc = FallbackLayer::builder("f")
        .value(0u32)
        .build()
        .unwrap()
        .layer(service_fn(move |_: u32| {
            let token = token.token();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                token.defuse();
                Ok::<u32, BoxError>(1)
            }
        }));
    let mut fut = tokio_test::task::spawn(svc.ready().await.unwrap().call(1));
    assert!(fut.poll().is_pending());
    drop(fut);
    assert!(probe.dropped());

    let answer_probe = DropProbe::new();
    let token = answer_probe.clone();
    let slow_replica = service_fn(move |_: u32| {
        let token = token.token();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            token.defuse();
            Ok::<u32, BoxError>(2)
        }
    });
    let mut svc = FallbackLayer::builder("f")
        .service(slow_replica)
        .build()
        .unwrap()
        .layer(service_fn(|_: u32| async {
            Err::<u32, BoxError>("down".into())
        }));
    let mut fut = tokio_test::task::spawn(svc.ready().await.unwrap().call(1));
    assert!(fut.poll().is_pending());
    drop(fut);
    assert!(answer_probe.dropped());
}

#[tokio::test]
async fn a_registry_shares_the_counters_by_name() {
    let registry = Registry::<FallbackHandle>::new();
    let a = FallbackLayer::builder("f")
        .value(0u32)
        .registry(&registry)
        .build()
        .unwrap();
    let b = FallbackLayer::builder("f")
        .with(|_: Cause<'_>| 1u32)
        .registry(&registry)
        .build()
        .unwrap();
    assert!(a.handle().same_as(&b.handle()));
    let failing = service_fn(|_: u32| async { Err::<u32, BoxError>("down".into()) });
    assert_eq!(a.layer(failing).oneshot(0).await.unwrap(), 0);
    assert_eq!(
        b.layer(failing).oneshot(0).await.unwrap(),
        1,
        "its own answer"
    );
    assert_eq!(registry.get("f").unwrap().snapshot().served, 2);
    // Clones share it too.
    let svc = a.layer(failing);
    svc.clone().oneshot(0).await.unwrap();
    svc.oneshot(0).await.unwrap();
    assert_eq!(a.handle().snapshot().served, 4);
    assert_eq!(a.name(), "f");
}

#[test]
fn metrics_count_answers_by_class() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let svc = FallbackLayer::builder("f")
            .value(String::new())
            .build()
            .unwrap()
            .layer(service_fn(downstream));
        for req in ["open", "open", "late", "ok"] {
            svc.clone().oneshot(req).await.unwrap();
        }
    });
    let served = |class| {
        capture.counter(
            "palisade_fallback_served_total",
            &[("name", "f"), ("class", class)],
        )
    };
    assert_eq!(served("circuit-open"), 2);
    assert_eq!(served("deadline"), 1);
    assert_eq!(served("error"), 0);
}

#[test]
fn public_types_are_send_sync_clone() {
    type Layer = FallbackLayer<palisade_fallback::Value<u32>>;
    type Svc = palisade_fallback::Fallback<
        tower::util::BoxCloneSyncService<u32, u32, BoxError>,
        palisade_fallback::Value<u32>,
        palisade_core::ErrorsAsFailures,
        palisade_fallback::Plain,
    >;
    assert_send_sync_clone::<Layer>();
    assert_send_sync_clone::<Svc>();
    assert_send_sync_clone::<FallbackHandle>();
    assert_send::<<Svc as Service<u32>>::Future>();
}

#[test]
fn a_fallback_that_answers_nothing_is_refused() {
    let err = FallbackLayer::builder("f")
        .value(0u32)
        .on(FallbackClasses::NONE)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "on");
    let err = FallbackLayer::builder("").value(0u32).build().unwrap_err();
    assert_eq!(err.field(), "name");
}

#[cfg(feature = "serde")]
#[test]
fn settings_read_from_toml() {
    use palisade_fallback::FallbackSettings;
    let settings: FallbackSettings =
        toml::from_str(r#"on = ["circuit-open", "deadline"]"#).unwrap();
    assert_eq!(
        settings.on,
        FallbackClasses::from([FallbackClass::CircuitOpen, FallbackClass::Deadline])
    );
    assert!(toml::from_str::<FallbackSettings>(r#"on = ["sometimes"]"#).is_err());
    let layer = FallbackLayer::builder("f")
        .value(0u32)
        .settings(settings)
        .build()
        .unwrap();
    let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
    assert_eq!(json["on"], serde_json::json!(["circuit-open", "deadline"]));
    assert_eq!(json["by_class"][0]["class"], "circuit-open");
}

#[cfg(feature = "http")]
mod http_fallbacks {
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use palisade_fallback::http::{FALLBACK_CLASS_HEADER, FALLBACK_HEADER, StaticResponse};

    async fn body(res: Response<Full<Bytes>>) -> String {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_failed_response_is_answered_and_marked() {
        let svc = FallbackLayer::http_builder("recs")
            .response(StaticResponse::json(r#"{"items":[]}"#))
            .build()
            .unwrap()
            .layer(service_fn(|req: Request<()>| async move {
                let status = req.uri().path()[1..].parse::<u16>().unwrap();
                let res = Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"real")))
                    .unwrap();
                Ok::<_, BoxError>(res)
            }));
        let get = |path: &str| Request::get(path).body(()).unwrap();

        let res = svc.clone().oneshot(get("/200")).await.unwrap();
        assert!(res.headers().get(FALLBACK_HEADER).is_none());
        assert_eq!(body(res).await, "real");

        let res = svc.clone().oneshot(get("/404")).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "a 4xx is no failure");

        let res = svc.oneshot(get("/503")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[FALLBACK_HEADER], "recs");
        assert_eq!(res.headers()[FALLBACK_CLASS_HEADER], "response");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(body(res).await, r#"{"items":[]}"#);
    }

    #[tokio::test]
    async fn an_error_is_answered_and_marked_with_its_class() {
        let svc = FallbackLayer::http_builder("recs")
            .response(StaticResponse::new(StatusCode::NO_CONTENT))
            .on([FallbackClass::Deadline])
            .build()
            .unwrap()
            .layer(service_fn(|req: Request<()>| async move {
                if req.uri().path() == "/late" {
                    Err::<Response<Full<Bytes>>, BoxError>(DeadlineExpired::new("edge").into())
                } else {
                    Err("reset".into())
                }
            }));
        let res = svc
            .clone()
            .oneshot(Request::get("/late").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(res.headers()[FALLBACK_CLASS_HEADER], "deadline");
        assert!(
            svc.oneshot(Request::get("/other").body(()).unwrap())
                .await
                .is_err()
        );
    }
}
