//! The deadline layer: where a deadline comes from, how it travels, and what
//! happens when it passes. All under tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http::{HeaderMap, Request};
use palisade_core::{BoxError, Deadline, DeadlineExpired, Registry, cause_ref, is_caused_by};
use palisade_deadline::{DeadlineEvent, DeadlineHandle, DeadlineLayer, DeadlineService};
use palisade_test_util::{DropProbe, MetricsCapture, assert_send, assert_send_sync_clone};
use tokio::time::{Instant, advance, sleep};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// What the service below saw: its deadline's time left, and its headers.
#[derive(Clone, Debug)]
struct Seen {
    left: Option<Duration>,
    headers: HeaderMap,
}

/// A service that records what it saw, then waits `wait` before answering.
fn recorder(
    wait: Duration,
) -> (
    Arc<Mutex<Vec<Seen>>>,
    impl Service<Request<()>, Response = (), Error = BoxError, Future: Send> + Clone + Send + Sync,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let svc = service_fn(move |req: Request<()>| {
        sink.lock().unwrap().push(Seen {
            left: Deadline::of(&req).map(|d| d.remaining()),
            headers: req.headers().clone(),
        });
        async move {
            sleep(wait).await;
            Ok::<_, BoxError>(())
        }
    });
    (seen, svc)
}

fn get() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

fn grpc() -> Request<()> {
    Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_budget_gives_every_request_a_deadline_and_writes_it_on() {
    let layer = DeadlineLayer::builder("edge")
        .budget(250 * MS)
        .build()
        .unwrap();
    let (seen, inner) = recorder(Duration::ZERO);
    let svc = layer.layer(inner);
    svc.clone().oneshot(get()).await.unwrap();
    svc.oneshot(grpc()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].left, Some(250 * MS));
    assert_eq!(seen[0].headers["x-palisade-timeout-ms"], "250");
    assert!(seen[0].headers.get("grpc-timeout").is_none());
    assert_eq!(seen[1].left, Some(250 * MS));
    assert_eq!(seen[1].headers["grpc-timeout"], "250000u");
    assert!(seen[1].headers.get("x-palisade-timeout-ms").is_none());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_caller_can_shorten_its_deadline_but_not_stretch_the_budget() {
    let layer = DeadlineLayer::builder("edge")
        .budget(MS * 500)
        .build()
        .unwrap();
    let (seen, inner) = recorder(Duration::ZERO);
    let svc = layer.layer(inner);
    let mut req = get();
    req.headers_mut()
        .insert("x-palisade-timeout-ms", "80".parse().unwrap());
    svc.clone().oneshot(req).await.unwrap();
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", "3S".parse().unwrap());
    svc.clone().oneshot(req).await.unwrap();
    let mut req = get();
    req.headers_mut()
        .insert("x-palisade-timeout-ms", "soon".parse().unwrap());
    svc.oneshot(req).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].left, Some(80 * MS));
    assert_eq!(seen[0].headers["x-palisade-timeout-ms"], "80");
    assert_eq!(seen[1].left, Some(500 * MS), "3 s asked, 500 ms granted");
    assert_eq!(seen[1].headers["grpc-timeout"], "500000u");
    assert_eq!(
        seen[2].left,
        Some(500 * MS),
        "a malformed header is ignored"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_a_budget_only_a_callers_deadline_applies() {
    let layer = DeadlineLayer::builder("server").build().unwrap();
    let (seen, inner) = recorder(Duration::ZERO);
    let svc = layer.layer(inner);
    svc.clone().oneshot(get()).await.unwrap();
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", "40m".parse().unwrap());
    svc.oneshot(req).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].left, None, "no deadline from anywhere");
    assert!(seen[0].headers.get("x-palisade-timeout-ms").is_none());
    assert_eq!(seen[1].left, Some(40 * MS));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn headers_are_neither_read_nor_written_when_switched_off() {
    let layer = DeadlineLayer::builder("quiet")
        .budget(MS * 100)
        .read_headers(false)
        .write_headers(false)
        .header("x-request-timeout")
        .build()
        .unwrap();
    let (seen, inner) = recorder(Duration::ZERO);
    let mut req = get();
    req.headers_mut()
        .insert("x-request-timeout", "10".parse().unwrap());
    layer.layer(inner).oneshot(req).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].left, Some(100 * MS));
    assert_eq!(
        seen[0].headers["x-request-timeout"], "10",
        "left as it came"
    );
}

/// The remaining budget shrinks through the layers: an edge layer sets 1 s;
/// 300 ms pass above a client stack, whose own layer writes what is left on
/// the outgoing request (700 ms); the next service's layer reads that. As in
/// gRPC, the header is relative to the request's arrival: the 20 ms the hop
/// took are not known to the receiver, so it counts its 700 ms from then.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_remaining_budget_shrinks_through_the_layers() {
    let (seen, downstream) = recorder(Duration::ZERO);
    // The next service: a server-side deadline layer reading the header.
    let server = DeadlineLayer::builder("next")
        .build()
        .unwrap()
        .layer(downstream);
    // The hop: only the headers travel, and it takes 20 ms.
    let hop = service_fn(move |req: Request<()>| {
        let server = server.clone();
        async move {
            sleep(20 * MS).await;
            let mut arrived = Request::new(());
            *arrived.headers_mut() = req.headers().clone();
            server.oneshot(arrived).await
        }
    });
    // The client stack writes what is left (its caller enforces).
    let client = DeadlineLayer::builder("client")
        .enforce(false)
        .build()
        .unwrap()
        .layer(hop);
    // Between the edge and the client: 300 ms of work.
    let work = service_fn(move |req: Request<()>| {
        let client = client.clone();
        async move {
            sleep(300 * MS).await;
            client.oneshot(req).await
        }
    });
    let edge = DeadlineLayer::builder("edge")
        .budget(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(work);
    edge.oneshot(get()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].left, Some(700 * MS));
    assert_eq!(seen[0].headers["x-palisade-timeout-ms"], "700");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_still_running_at_the_deadline_is_dropped_and_fails() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let layer = DeadlineLayer::builder("edge")
        .budget(100 * MS)
        .on_event(move |e: &DeadlineEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let handle = layer.handle();
    let probe = DropProbe::new();
    let token = probe.clone();
    let inner = service_fn(move |_: Request<()>| {
        let token = token.token();
        async move {
            sleep(Duration::from_secs(10)).await;
            token.defuse();
            Ok::<_, BoxError>(())
        }
    });
    let mut svc = layer.layer(inner);
    let mut call = tokio_test::task::spawn(svc.ready().await.unwrap().call(get()));
    assert!(call.poll().is_pending());
    advance(99 * MS).await;
    assert!(call.poll().is_pending());
    advance(MS).await;
    let Poll::Ready(Err(err)) = call.poll() else {
        panic!("the deadline passed");
    };
    // Dropped when the deadline passed, not when the caller drops the future.
    assert!(probe.dropped(), "the call below was dropped");
    drop(call);
    let expired = cause_ref::<DeadlineExpired>(&*err).expect("a DeadlineExpired");
    assert_eq!(expired.name(), "edge");
    assert_eq!(expired.budget(), Some(100 * MS));
    let snapshot = handle.snapshot();
    assert_eq!(
        (snapshot.expired_on_arrival, snapshot.expired_in_flight),
        (0, 1)
    );
    assert_eq!(
        *events.lock().unwrap(),
        [DeadlineEvent::Expired {
            name: "edge".into(),
            budget: 100 * MS,
            on_arrival: false
        }]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_with_no_time_left_is_refused_without_a_call() {
    let layer = DeadlineLayer::builder("server").build().unwrap();
    let handle = layer.handle();
    let (seen, inner) = recorder(Duration::ZERO);
    let mut req = get();
    req.headers_mut()
        .insert("x-palisade-timeout-ms", "0".parse().unwrap());
    let err = layer.layer(inner.clone()).oneshot(req).await.unwrap_err();
    assert!(is_caused_by::<DeadlineExpired>(&*err));
    // A deadline carried in the extensions that has passed, too.
    let mut req = get();
    Deadline::after(10 * MS).set_on(&mut req);
    advance(10 * MS).await;
    let err = layer.layer(inner).oneshot(req).await.unwrap_err();
    assert!(is_caused_by::<DeadlineExpired>(&*err));
    assert!(
        seen.lock().unwrap().is_empty(),
        "the service was never called"
    );
    assert_eq!(handle.snapshot().expired_on_arrival, 2);
    assert_eq!(handle.snapshot().expired(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_faster_answer_is_returned_as_is_and_needs_no_timer() {
    let layer = DeadlineLayer::builder("edge")
        .budget(100 * MS)
        .build()
        .unwrap();
    let (_, inner) = recorder(99 * MS);
    let svc = layer.layer(inner);
    svc.clone().oneshot(get()).await.unwrap();
    // Ready at once: the future completes on its first poll.
    let (_, now) = recorder(Duration::ZERO);
    let mut svc = DeadlineLayer::builder("edge")
        .budget(100 * MS)
        .build()
        .unwrap()
        .layer(now);
    let mut fut = tokio_test::task::spawn(svc.ready().await.unwrap().call(get()));
    assert!(fut.poll().is_ready());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_enforcement_the_deadline_is_only_carried() {
    let layer = DeadlineLayer::builder("carrier")
        .budget(100 * MS)
        .enforce(false)
        .build()
        .unwrap();
    let (seen, inner) = recorder(Duration::from_secs(1));
    let start = Instant::now();
    layer.layer(inner).oneshot(get()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(
        seen.lock().unwrap()[0].headers["x-palisade-timeout-ms"],
        "100"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_outer_deadline_wins_over_a_later_inner_budget() {
    let (seen, inner) = recorder(Duration::ZERO);
    let svc = ServiceBuilder::new()
        .layer(
            DeadlineLayer::builder("outer")
                .budget(50 * MS)
                .build()
                .unwrap(),
        )
        .layer(
            DeadlineLayer::builder("inner")
                .budget(500 * MS)
                .build()
                .unwrap(),
        )
        .service(inner);
    svc.oneshot(get()).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].left, Some(50 * MS));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_and_layers_share_state_and_a_registry_shares_it_by_name() {
    let registry = Registry::<DeadlineHandle>::new();
    let a = DeadlineLayer::builder("edge")
        .budget(10 * MS)
        .registry(&registry)
        .build()
        .unwrap();
    let b = DeadlineLayer::builder("edge")
        .budget(Duration::from_secs(5))
        .registry(&registry)
        .build()
        .unwrap();
    assert!(a.handle().same_as(&b.handle()));
    let (_, slow) = recorder(Duration::from_secs(1));
    let svc = b.layer(slow.clone());
    // The registered layer's settings win: 10 ms.
    assert!(svc.clone().oneshot(get()).await.is_err());
    assert!(a.layer(slow).oneshot(get()).await.is_err());
    let handle = registry.get("edge").unwrap();
    assert_eq!(handle.snapshot().expired_in_flight, 2);
    assert_eq!(handle.snapshot().budget, Some(10 * MS));
    assert_eq!(handle.name(), "edge");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_response_future_drops_the_call_below() {
    let layer = DeadlineLayer::builder("edge")
        .budget(100 * MS)
        .build()
        .unwrap();
    let probe = DropProbe::new();
    let token = probe.clone();
    let mut svc = layer.layer(service_fn(move |_: Request<()>| {
        let token = token.token();
        async move {
            sleep(Duration::from_secs(1)).await;
            token.defuse();
            Ok::<_, BoxError>(())
        }
    }));
    let mut fut = tokio_test::task::spawn(svc.ready().await.unwrap().call(get()));
    assert!(fut.poll().is_pending());
    drop(fut);
    assert!(probe.dropped());
    drop(svc);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_header_offset_shortens_a_deadline_read_from_the_caller() {
    let layer = DeadlineLayer::builder("server")
        .header_offset(5 * MS)
        .budget(Duration::from_secs(1))
        .build()
        .unwrap();
    let (seen, inner) = recorder(Duration::ZERO);
    let svc = layer.layer(inner);
    let mut req = grpc();
    req.headers_mut()
        .insert("grpc-timeout", "100m".parse().unwrap());
    svc.clone().oneshot(req).await.unwrap();
    // Not from the budget: the offset is for deadlines read from headers.
    svc.oneshot(get()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].left, Some(95 * MS));
    assert_eq!(seen[1].left, Some(Duration::from_secs(1)));
}

/// A timer of the call's own (tonic's channel enforces `grpc-timeout` too)
/// that fires in the same instant as the deadline: its error is reported as
/// the deadline passing, with that error kept as the source.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_error_from_below_once_the_deadline_passed_is_a_deadline_expiry() {
    #[derive(Debug)]
    struct TimerFired;
    impl std::fmt::Display for TimerFired {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("timeout expired")
        }
    }
    impl std::error::Error for TimerFired {}

    let layer = DeadlineLayer::builder("client")
        .budget(100 * MS)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        // The call below keeps its own timer at the deadline it was told.
        let left = Deadline::of(&req).unwrap().remaining();
        sleep(left).await;
        Err::<(), _>(TimerFired)
    }));
    let err = svc.oneshot(get()).await.unwrap_err();
    let expired = cause_ref::<DeadlineExpired>(&*err).expect("a DeadlineExpired");
    assert_eq!(expired.name(), "client");
    assert!(
        is_caused_by::<TimerFired>(&*err),
        "the call's own error is the source"
    );
    assert_eq!(handle.snapshot().expired_in_flight, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn inner_errors_pass_through_boxed() {
    let layer = DeadlineLayer::builder("edge")
        .budget(100 * MS)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        Err::<(), _>(std::io::Error::other("reset"))
    }));
    let err = svc.oneshot(get()).await.unwrap_err();
    assert!(is_caused_by::<std::io::Error>(&*err));
    assert!(!is_caused_by::<DeadlineExpired>(&*err));
}

#[test]
fn metrics_count_expiries_and_record_budgets() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = DeadlineLayer::builder("edge")
            .budget(100 * MS)
            .build()
            .unwrap();
        let (_, fast) = recorder(Duration::ZERO);
        let (_, slow) = recorder(Duration::from_secs(1));
        layer.layer(fast).oneshot(get()).await.unwrap();
        layer.layer(slow).oneshot(get()).await.unwrap_err();
    });
    let labels = [("name", "edge"), ("when", "in_flight")];
    assert_eq!(
        capture.counter("palisade_deadline_expired_total", &labels),
        1
    );
    assert_eq!(
        capture.counter(
            "palisade_deadline_expired_total",
            &[("name", "edge"), ("when", "arrival")]
        ),
        0
    );
    assert_eq!(
        capture.histogram("palisade_deadline_budget_seconds", &[("name", "edge")]),
        [0.1, 0.1]
    );
}

#[test]
fn public_types_are_send_sync_clone() {
    type Svc = DeadlineService<tower::util::BoxCloneSyncService<Request<()>, (), BoxError>>;
    assert_send_sync_clone::<DeadlineLayer>();
    assert_send_sync_clone::<Svc>();
    assert_send_sync_clone::<DeadlineHandle>();
    assert_send::<
        palisade_deadline::future::ResponseFuture<std::future::Ready<Result<(), BoxError>>>,
    >();
}

#[test]
fn bad_settings_are_refused() {
    let err = DeadlineLayer::builder("x")
        .budget(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "budget");
    let err = DeadlineLayer::builder("x")
        .budget(Duration::from_secs(400 * 24 * 3600))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "budget");
    let err = DeadlineLayer::builder("x")
        .header("bad header")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "header");
    let err = DeadlineLayer::builder("").build().unwrap_err();
    assert_eq!(err.field(), "name");
}

#[cfg(feature = "serde")]
#[test]
fn settings_read_from_toml_with_duration_strings() {
    use palisade_deadline::DeadlineSettings;
    let settings: DeadlineSettings = toml::from_str(
        r#"
        budget = "250ms"
        write_headers = false
        "#,
    )
    .unwrap();
    assert_eq!(settings.budget, Some(250 * MS));
    assert!(!settings.write_headers);
    assert!(settings.read_headers && settings.enforce);
    assert_eq!(settings.header, "x-palisade-timeout-ms");
    assert!(toml::from_str::<DeadlineSettings>("budgett = \"1s\"").is_err());
    let layer = DeadlineLayer::builder("cfg")
        .settings(settings)
        .build()
        .unwrap();
    let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
    assert_eq!(json["budget"], "250ms");
    assert_eq!(json["expired_in_flight"], 0);
}
