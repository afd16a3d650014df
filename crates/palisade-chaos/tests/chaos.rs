//! Behaviour of the chaos layer under tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_chaos::{
    Chaos, ChaosHandle, ChaosLayer, ChaosSettings, InjectError, InjectedCounts, InjectedFault,
};
use palisade_core::{BoxError, is_caused_by};
use palisade_test_util::{DropProbe, MetricsCapture, assert_send, assert_send_sync_clone};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// What happened to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Ok { delayed: bool },
    Injected { delayed: bool },
    Hung,
}

type Svc = tower::util::BoxCloneSyncService<u32, u32, BoxError>;

/// A counting echo service behind `layer`.
fn svc(layer: &ChaosLayer, calls: &Arc<AtomicUsize>) -> Svc {
    let calls = Arc::clone(calls);
    let inner = service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(n) }
    });
    tower::util::BoxCloneSyncService::new(layer.layer(inner))
}

/// Runs one call; a call still pending after 1 hour of paused time is hung.
async fn observe(svc: &Svc, n: u32) -> Seen {
    let start = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(3600), svc.clone().oneshot(n)).await;
    let delayed = start.elapsed() > Duration::ZERO;
    match out {
        Err(_) => Seen::Hung,
        Ok(Ok(m)) => {
            assert_eq!(m, n);
            Seen::Ok { delayed }
        }
        Ok(Err(err)) => {
            assert!(
                is_caused_by::<InjectedFault>(&*err),
                "unexpected error {err}"
            );
            Seen::Injected { delayed }
        }
    }
}

fn mixed(seed: u64) -> ChaosLayer {
    ChaosLayer::builder("mixed")
        .seed(seed)
        .latency(Duration::from_millis(10))
        .latency_rate(0.3)
        .error_rate(0.2)
        .abort_rate(0.1)
        .build()
        .unwrap()
}

#[test]
fn public_types_are_send_sync_clone() {
    assert_send_sync_clone::<ChaosLayer>();
    assert_send_sync_clone::<ChaosHandle>();
    assert_send_sync_clone::<Chaos<Svc, InjectError>>();
    assert_send::<palisade_chaos::future::ResponseFuture<<Svc as Service<u32>>::Future>>();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn latency_is_added_exactly() {
    let layer = ChaosLayer::builder("lat")
        .seed(1)
        .latency(Duration::from_millis(250))
        .latency_rate(1.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = svc(&layer, &calls);
    for n in 0..5 {
        let start = Instant::now();
        assert_eq!(svc.clone().oneshot(n).await.unwrap(), n);
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(layer.handle().injected().latency, 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn latency_range_stays_within_bounds_and_varies() {
    let layer = ChaosLayer::builder("range")
        .seed(9)
        .latency_range(Duration::from_millis(10), Duration::from_millis(50))
        .latency_rate(1.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = svc(&layer, &calls);
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..50 {
        let start = Instant::now();
        svc.clone().oneshot(n).await.unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(10) && took <= Duration::from_millis(50),
            "{took:?}"
        );
        seen.insert(took);
    }
    assert!(seen.len() > 10, "latencies should vary: {seen:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_inner_future_is_not_polled_before_the_delay() {
    let polled_at = Arc::new(parking_lot_free::Cell::default());
    let layer = ChaosLayer::builder("lazy")
        .seed(1)
        .latency(Duration::from_secs(2))
        .latency_rate(1.0)
        .build()
        .unwrap();
    let start = Instant::now();
    let p = Arc::clone(&polled_at);
    let svc = layer.layer(service_fn(move |()| {
        let p = Arc::clone(&p);
        async move {
            p.set(start.elapsed());
            Ok::<_, BoxError>(())
        }
    }));
    svc.oneshot(()).await.unwrap();
    assert_eq!(polled_at.get(), Some(Duration::from_secs(2)));
}

/// A tiny `Mutex<Option<Duration>>` wrapper for the test above.
mod parking_lot_free {
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    pub(crate) struct Cell(Mutex<Option<Duration>>);
    impl Cell {
        pub(crate) fn set(&self, d: Duration) {
            *self.0.lock().unwrap() = Some(d);
        }
        pub(crate) fn get(&self) -> Option<Duration> {
            *self.0.lock().unwrap()
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rates_are_statistically_within_bounds_for_a_seed() {
    let layer = mixed(42);
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = svc(&layer, &calls);
    let n = 4_000u32;
    let (mut delayed, mut errors, mut hung, mut passed) = (0u32, 0u32, 0u32, 0u32);
    for i in 0..n {
        match observe(&svc, i).await {
            Seen::Ok { delayed: d } => {
                passed += 1;
                delayed += u32::from(d);
            }
            Seen::Injected { delayed: d } => {
                errors += 1;
                delayed += u32::from(d);
            }
            Seen::Hung => hung += 1,
        }
    }
    // Expected: abort 10%; error 20% of the other 90% = 18%; latency 30% of
    // calls that answer (a hung call's delay is not observable here).
    let within = |count: u32, p: f64, of: u32| {
        let mean = p * f64::from(of);
        let sd = (f64::from(of) * p * (1.0 - p)).sqrt();
        (f64::from(count) - mean).abs() <= 5.0 * sd
    };
    assert!(within(hung, 0.1, n), "aborts {hung} of {n}");
    assert!(within(errors, 0.18, n), "errors {errors} of {n}");
    assert!(
        within(delayed, 0.3, n - hung),
        "delayed {delayed} of {}",
        n - hung
    );
    // The inner service saw exactly the calls that passed.
    assert_eq!(calls.load(Ordering::SeqCst), passed as usize);
    let counts = layer.handle().injected();
    assert_eq!(counts.abort, u64::from(hung));
    assert_eq!(counts.error, u64::from(errors));
    assert_eq!(counts.outage, 0);
}

async fn sequence(layer: &ChaosLayer, n: u32) -> Vec<Seen> {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = svc(layer, &calls);
    let mut out = Vec::new();
    for i in 0..n {
        out.push(observe(&svc, i).await);
    }
    out
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_seed_gives_the_same_sequence_every_time() {
    let a = sequence(&mixed(1234), 300).await;
    let b = sequence(&mixed(1234), 300).await;
    assert_eq!(a, b);
    let c = sequence(&mixed(4321), 300).await;
    assert_ne!(a, c, "another seed gives another sequence");
    // Each outcome kind shows up, so the comparison means something.
    assert!(a.contains(&Seen::Hung));
    assert!(a.iter().any(|s| matches!(s, Seen::Injected { .. })));
    assert!(a.contains(&Seen::Ok { delayed: true }));
    assert!(a.contains(&Seen::Ok { delayed: false }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_and_layer_calls_share_one_sequence() {
    // Alternating between two services built from one layer gives the same
    // sequence as one service: the index is the layer's.
    let reference = sequence(&mixed(77), 200).await;
    let layer = mixed(77);
    let calls = Arc::new(AtomicUsize::new(0));
    let a = svc(&layer, &calls);
    let b = svc(&layer.clone(), &calls);
    let mut alternating = Vec::new();
    for i in 0..200 {
        let s = if i % 2 == 0 { &a } else { &b };
        alternating.push(observe(s, i).await);
    }
    assert_eq!(reference, alternating);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn runtime_switching_applies_to_every_clone() {
    let layer = ChaosLayer::builder("switch").seed(5).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let a = svc(&layer, &calls);
    let b = svc(&layer.clone(), &calls);
    let handle = layer.handle();

    assert_eq!(observe(&a, 1).await, Seen::Ok { delayed: false });

    handle.set_error_rate(1.0).unwrap();
    assert_eq!(observe(&a, 2).await, Seen::Injected { delayed: false });
    assert_eq!(observe(&b, 3).await, Seen::Injected { delayed: false });

    handle.disable();
    assert!(!handle.is_enabled());
    assert_eq!(observe(&b, 4).await, Seen::Ok { delayed: false });
    handle.enable();
    assert_eq!(observe(&b, 5).await, Seen::Injected { delayed: false });

    handle.set_error_rate(0.0).unwrap();
    handle.set_latency(Duration::from_millis(40), 1.0).unwrap();
    let start = Instant::now();
    assert_eq!(observe(&a, 6).await, Seen::Ok { delayed: true });
    assert_eq!(start.elapsed(), Duration::from_millis(40));

    handle.set_abort_rate(1.0).unwrap();
    assert_eq!(observe(&b, 7).await, Seen::Hung);

    // A handle taken from a service is the same handle.
    let from_service = layer.layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
    assert_eq!(from_service.handle().settings().abort_rate, 1.0);

    handle.reset();
    assert_eq!(handle.settings(), ChaosSettings::default());
    assert_eq!(observe(&a, 8).await, Seen::Ok { delayed: false });
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn outage_fails_every_call_at_once_and_ends() {
    let layer = ChaosLayer::builder("outage")
        .seed(3)
        .latency(Duration::from_secs(1))
        .latency_rate(1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = svc(&layer, &calls);

    handle.set_outage(true);
    for i in 0..100 {
        let start = Instant::now();
        let err = svc.clone().oneshot(i).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO, "an outage adds no latency");
        let fault = palisade_core::cause_ref::<InjectedFault>(&*err).unwrap();
        assert!(fault.is_outage());
        assert_eq!(fault.name(), "outage");
        assert_eq!(err.to_string(), "outage injected by chaos layer `outage`");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing reached the service"
    );
    assert_eq!(
        handle.injected(),
        InjectedCounts {
            outage: 100,
            ..InjectedCounts::default()
        }
    );

    handle.set_outage(false);
    assert_eq!(observe(&svc, 1).await, Seen::Ok { delayed: true });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_disabled_layer_injects_nothing_even_in_an_outage() {
    let layer = ChaosLayer::builder("off")
        .enabled(false)
        .outage(true)
        .error_rate(1.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = svc(&layer, &calls);
    for i in 0..10 {
        assert_eq!(observe(&svc, i).await, Seen::Ok { delayed: false });
    }
    layer.handle().enable();
    assert!(matches!(observe(&svc, 0).await, Seen::Injected { .. }));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_a_delayed_future_drops_the_inner_future() {
    let layer = ChaosLayer::builder("drop")
        .seed(1)
        .latency(Duration::from_secs(5))
        .latency_rate(1.0)
        .build()
        .unwrap();
    let probe = DropProbe::new();
    let p = probe.clone();
    let mut svc = layer.layer(service_fn(move |()| {
        let token = p.token();
        async move {
            token.defuse();
            Ok::<_, BoxError>(())
        }
    }));
    let fut = svc.ready().await.unwrap().call(());
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(fut);
    assert!(probe.dropped(), "the inner future was dropped, never run");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_service_before_call_leaks_nothing() {
    // The chaos layer reserves nothing; the inner mock's reservation is
    // released when the service is dropped.
    let layer = ChaosLayer::builder("ready").seed(1).build().unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    handle.allow(1);
    let mut svc = layer.layer(mock);
    tokio_test::assert_ready_ok!(
        tokio_test::task::spawn(()).enter(|cx, _| { Service::poll_ready(&mut svc, cx) })
    );
    drop(svc);
    // The pair is closed: no request was ever sent.
    assert!(handle.next_request().await.is_none());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_aborted_call_is_cancelled_by_a_timeout_above() {
    let layer = ChaosLayer::builder("abort")
        .seed(1)
        .abort_rate(1.0)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(300))
        .layer(layer)
        .service_fn(move |()| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(()) }
        });
    let start = Instant::now();
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_custom_error_type_through_error_with() {
    #[derive(Debug, PartialEq)]
    struct MyError(String);
    let layer = ChaosLayer::builder("custom")
        .seed(1)
        .error_rate(1.0)
        .build()
        .unwrap()
        .error_with(|fault: &InjectedFault| MyError(fault.name().to_owned()));
    let svc = layer.layer(service_fn(|()| async { Ok::<u8, MyError>(1) }));
    assert_eq!(
        svc.oneshot(()).await.unwrap_err(),
        MyError("custom".to_owned())
    );
}

#[test]
fn metrics_count_each_kind() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = ChaosLayer::builder("metered")
            .seed(11)
            .latency(Duration::from_millis(5))
            .latency_rate(0.5)
            .error_rate(0.5)
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = svc(&layer, &calls);
        for i in 0..200 {
            let _ = observe(&svc, i).await;
        }
        layer.handle().set_outage(true);
        for i in 0..3 {
            let _ = observe(&svc, i).await;
        }
        let counts = layer.handle().injected();
        let metric = |kind| {
            capture.counter(
                "palisade_chaos_injected_total",
                &[("name", "metered"), ("kind", kind)],
            )
        };
        assert!(counts.latency > 0 && counts.error > 0);
        assert_eq!(metric("latency"), counts.latency);
        assert_eq!(metric("error"), counts.error);
        assert_eq!(metric("abort"), 0);
        assert_eq!(metric("outage"), 3);
    });
}

#[test]
fn bad_settings_are_refused() {
    let field = |b: palisade_chaos::ChaosBuilder| b.build().unwrap_err().field().to_owned();
    assert_eq!(
        field(ChaosLayer::builder("x").error_rate(1.5)),
        "error_rate"
    );
    assert_eq!(
        field(ChaosLayer::builder("x").abort_rate(-0.1)),
        "abort_rate"
    );
    assert_eq!(
        field(ChaosLayer::builder("x").latency_rate(f64::NAN)),
        "latency_rate"
    );
    assert_eq!(
        field(
            ChaosLayer::builder("x").latency_range(Duration::from_secs(2), Duration::from_secs(1))
        ),
        "latency"
    );

    let layer = ChaosLayer::builder("x").error_rate(0.5).build().unwrap();
    let handle = layer.handle();
    assert!(handle.set_error_rate(2.0).is_err());
    assert!(handle.set_abort_rate(f64::INFINITY).is_err());
    assert!(
        handle
            .set_latency_range(Duration::from_secs(3), Duration::from_secs(1), 1.0)
            .is_err()
    );
    assert!(handle.set_latency(Duration::from_secs(1), 1.1).is_err());
    // Nothing changed.
    assert_eq!(handle.settings().error_rate, 0.5);
    assert_eq!(handle.settings().latency_max, Duration::ZERO);
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn http_status_injection_keeps_the_service_infallible() {
    use http::{Request, Response, StatusCode};
    use palisade_chaos::http::InjectStatus;
    use std::convert::Infallible;

    let layer = ChaosLayer::builder("users")
        .seed(2)
        .build()
        .unwrap()
        .with_injector(InjectStatus::new(StatusCode::SERVICE_UNAVAILABLE));
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("fine")))
    }));

    let res = svc
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    handle.set_outage(true);
    let res = svc
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["x-palisade-chaos"], "users");
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["type"], "urn:palisade:problem:chaos-outage");
    assert_eq!(body["chaos"], "users");

    handle.set_outage(false);
    handle.set_error_rate(1.0).unwrap();
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["type"], "urn:palisade:problem:chaos-fault");
}
