//! The hedging layer under tokio's paused clock: when a hedge fires, who
//! wins, what is dropped, and how much extra load the budget allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{BoxError, CircuitOpen, Registry, is_caused_by};
use palisade_hedge::{HedgeEvent, HedgeHandle, HedgeLayer, RetryBudget};
use palisade_test_util::{DropProbe, MetricsCapture, assert_send, assert_send_sync_clone};
use tokio::time::{Instant, advance, sleep};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const MS: Duration = Duration::from_millis(1);

/// How long an attempt takes and what it answers, by request id and attempt.
type Plan = dyn Fn(u32, u32) -> (Duration, Result<u32, &'static str>) + Send + Sync;

/// A downstream whose latency and answer are chosen per attempt: `plan(id,
/// attempt)` where attempt 1 is the first call with that id. It records the
/// attempts it sees and can hand out a drop probe per attempt.
#[derive(Clone)]
struct Downstream {
    attempts: Arc<Mutex<HashMap<u32, u32>>>,
    calls: Arc<AtomicUsize>,
    plan: Arc<Plan>,
    probes: Arc<Mutex<Vec<(u32, u32, DropProbe)>>>,
}

impl Downstream {
    fn new(
        plan: impl Fn(u32, u32) -> (Duration, Result<u32, &'static str>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            attempts: Arc::default(),
            calls: Arc::default(),
            plan: Arc::new(plan),
            probes: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn dropped(&self, id: u32, attempt: u32) -> bool {
        self.probes
            .lock()
            .unwrap()
            .iter()
            .find(|(i, a, _)| *i == id && *a == attempt)
            .is_some_and(|(_, _, p)| p.dropped())
    }
}

impl Service<u32> for Downstream {
    type Response = u32;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, id: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        let probe = DropProbe::new();
        let token = probe.token();
        self.probes.lock().unwrap().push((id, attempt, probe));
        let (wait, answer) = (self.plan)(id, attempt);
        Box::pin(async move {
            sleep(wait).await;
            token.defuse();
            answer.map_err(|e| -> BoxError {
                if e == "open" {
                    CircuitOpen::new("db", None).into()
                } else {
                    e.into()
                }
            })
        })
    }
}

/// Ids below this warm the latency window up with 10 ms answers.
const WARM: u32 = 100;

/// Warms `svc` up: `WARM` answers of 10 ms, so the p95 delay is the middle
/// of 10 ms's bucket, 9.728 ms (tokio's timer fires on the next whole
/// millisecond: 10 ms after the call).
async fn warm_up<S>(svc: &S)
where
    S: Service<u32, Response = u32, Error = BoxError> + Clone,
{
    for id in 0..WARM {
        svc.clone().oneshot(id).await.unwrap();
    }
}

fn warm_plan(id: u32) -> Option<(Duration, Result<u32, &'static str>)> {
    (id < WARM).then_some((10 * MS, Ok(id)))
}

const DELAY: Duration = Duration::from_micros(9_728);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hedge_fires_only_after_the_percentile_delay_and_the_loser_is_dropped() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let layer = HedgeLayer::builder("catalog")
        .budget_ratio(1.0)
        .on_event(move |e: &HedgeEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let handle = layer.handle();
    let down = Downstream::new(|id, attempt| {
        warm_plan(id).unwrap_or(if attempt == 1 {
            (Duration::from_secs(1), Ok(id))
        } else {
            (10 * MS, Ok(id * 10))
        })
    });
    let svc = layer.layer(down.clone());
    assert_eq!(handle.delay(), None, "no hedging before enough answers");
    warm_up(&svc).await;
    assert_eq!(handle.delay(), Some(DELAY));
    assert_eq!(down.calls(), WARM as usize, "no hedge while warming up");

    let start = Instant::now();
    let mut call = tokio_test::task::spawn(svc.clone().oneshot(500));
    assert!(call.poll().is_pending());
    advance(9 * MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(down.calls(), WARM as usize + 1, "no hedge before the delay");
    // The timer fires on the millisecond tick after 9.728 ms.
    advance(MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(down.calls(), WARM as usize + 2, "the hedge is sent");
    advance(10 * MS).await;
    let answer = call.poll();
    assert!(
        matches!(answer, Poll::Ready(Ok(5000))),
        "the hedge wins: {answer:?}"
    );
    assert_eq!(start.elapsed(), 20 * MS);
    assert!(
        down.dropped(500, 1),
        "the first attempt, the loser, was dropped"
    );
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.hedges, snapshot.won), (1, 1));
    assert_eq!(
        events.lock().unwrap().as_slice(),
        [
            HedgeEvent::Hedged {
                name: "catalog".into(),
                attempt: 2,
                delay: DELAY
            },
            HedgeEvent::Won {
                name: "catalog".into(),
                attempt: 2
            }
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn when_the_first_attempt_answers_first_the_hedge_is_dropped() {
    let layer = HedgeLayer::builder("catalog")
        .budget_ratio(1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let down = Downstream::new(|id, attempt| {
        warm_plan(id).unwrap_or(if attempt == 1 {
            (15 * MS, Ok(1))
        } else {
            (Duration::from_secs(1), Ok(2))
        })
    });
    let svc = layer.layer(down.clone());
    warm_up(&svc).await;
    assert_eq!(svc.clone().oneshot(500).await.unwrap(), 1);
    assert!(down.dropped(500, 2), "the hedge, the loser, was dropped");
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.hedges, snapshot.won), (1, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_budget_caps_extra_load_at_the_configured_share() {
    let layer = HedgeLayer::builder("catalog")
        .budget_ratio(0.05)
        .min_hedges_per_sec(0)
        .build()
        .unwrap();
    let handle = layer.handle();
    // After warming up, every first attempt is slow and every hedge fast:
    // every request wants a hedge. (Made at once, so no slow answer moves
    // the percentile before the hedges are due.)
    let down = Downstream::new(|id, attempt| {
        warm_plan(id).unwrap_or(if attempt == 1 {
            (Duration::from_secs(1), Ok(id))
        } else {
            (10 * MS, Ok(id))
        })
    });
    let svc = layer.layer(down.clone());
    warm_up(&svc).await;
    let requests = 400u32;
    let mut calls = tokio::task::JoinSet::new();
    for id in WARM..WARM + requests {
        calls.spawn(svc.clone().oneshot(id));
    }
    while let Some(answer) = calls.join_next().await {
        answer.unwrap().unwrap();
    }
    let total = WARM + requests;
    let hedges = down.calls() - total as usize;
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.hedges as usize, hedges);
    // 5 % of the 500 requests made: 25 hedges, no more, though all 400 late
    // ones asked.
    assert_eq!(
        hedges,
        (total / 20) as usize,
        "{hedges} hedges for {total} requests"
    );
    assert_eq!(
        snapshot.budget_exhausted,
        u64::from(requests) - hedges as u64
    );
    assert_eq!(snapshot.won, hedges as u64);
    assert_eq!(snapshot.budget_requests, u64::from(total));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn several_hedges_each_wait_the_delay_and_stop_at_the_maximum() {
    let layer = HedgeLayer::builder("catalog")
        .budget_ratio(10.0)
        .max_hedges(2)
        .build()
        .unwrap();
    let down = Downstream::new(|id, _| warm_plan(id).unwrap_or((Duration::from_secs(1), Ok(id))));
    let svc = layer.layer(down.clone());
    warm_up(&svc).await;
    let mut call = tokio_test::task::spawn(svc.clone().oneshot(500));
    assert!(call.poll().is_pending());
    advance(10 * MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(down.calls(), WARM as usize + 2);
    // The second hedge is due 9.728 ms after the first one was sent.
    advance(9 * MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(down.calls(), WARM as usize + 2);
    advance(MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(down.calls(), WARM as usize + 3);
    // No third hedge.
    advance(100 * MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(down.calls(), WARM as usize + 3);
    advance(Duration::from_secs(1)).await;
    assert!(matches!(call.poll(), Poll::Ready(Ok(500))));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_hedge_leaves_the_first_attempt_running_and_a_fast_failure_is_not_hedged() {
    let layer = HedgeLayer::builder("catalog")
        .budget_ratio(1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let down = Downstream::new(|id, attempt| {
        warm_plan(id).unwrap_or(match (id, attempt) {
            // A breaker below refuses the hedge; the first attempt answers.
            (500, 1) => (30 * MS, Ok(1)),
            (500, _) => (MS, Err("open")),
            // Both attempts fail: the last failure is the answer.
            (501, 1) => (30 * MS, Err("first")),
            (501, _) => (5 * MS, Err("second")),
            // A fast failure is returned at once, never hedged.
            _ => (MS, Err("fast")),
        })
    });
    let svc = layer.layer(down.clone());
    warm_up(&svc).await;
    assert_eq!(svc.clone().oneshot(500).await.unwrap(), 1);
    let err = svc.clone().oneshot(501).await.unwrap_err();
    assert_eq!(err.to_string(), "first");
    let before = down.calls();
    let err = svc.clone().oneshot(502).await.unwrap_err();
    assert_eq!(err.to_string(), "fast");
    assert_eq!(down.calls(), before + 1);
    assert_eq!(handle.snapshot().won, 0);
    let _ = is_caused_by::<CircuitOpen>(&*err);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_initial_delay_hedges_before_the_window_is_full() {
    let layer = HedgeLayer::builder("catalog")
        .initial_delay(5 * MS)
        .budget_ratio(1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let down = Downstream::new(|id, attempt| {
        if attempt == 1 {
            (Duration::from_secs(1), Ok(id))
        } else {
            (MS, Ok(id + 1))
        }
    });
    let svc = layer.layer(down.clone());
    assert_eq!(handle.delay(), Some(5 * MS));
    let start = Instant::now();
    // Its budget: the floor is 0 and one request deposits 1 × 1.0.
    assert_eq!(svc.oneshot(7).await.unwrap(), 8);
    assert_eq!(start.elapsed(), 6 * MS);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_hedges_zero_turns_hedging_off() {
    let layer = HedgeLayer::builder("catalog")
        .initial_delay(MS)
        .max_hedges(0)
        .build()
        .unwrap();
    let down = Downstream::new(|id, _| (50 * MS, Ok(id)));
    layer.layer(down.clone()).oneshot(1).await.unwrap();
    assert_eq!(down.calls(), 1);
    assert_eq!(layer.handle().delay(), None);
}

/// Counts `poll_ready` calls of the service it wraps.
#[derive(Clone)]
struct CountPolls<S> {
    inner: S,
    polls: Arc<AtomicUsize>,
}

impl<S: Service<u32>> Service<u32> for CountPolls<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, id: u32) -> Self::Future {
        self.inner.call(id)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn readiness_is_polled_only_for_a_hedge_about_to_be_sent() {
    let layer = HedgeLayer::builder("catalog")
        .budget_ratio(1.0)
        .build()
        .unwrap();
    // One call at a time below (as a full bulkhead or `Buffer` would be):
    // a hedge cannot become ready while the first attempt runs.
    let down = Downstream::new(|id, _| warm_plan(id).unwrap_or((50 * MS, Ok(id))));
    let polls = Arc::new(AtomicUsize::new(0));
    let inner = CountPolls {
        inner: tower::limit::ConcurrencyLimit::new(down.clone(), 1),
        polls: Arc::clone(&polls),
    };
    let mut svc = layer.layer(inner);
    for id in 0..WARM {
        svc.ready().await.unwrap().call(id).await.unwrap();
    }
    polls.store(0, Ordering::SeqCst);
    let mut call = tokio_test::task::spawn(svc.ready().await.unwrap().call(500));
    assert_eq!(polls.load(Ordering::SeqCst), 1, "the call's own readiness");
    assert!(call.poll().is_pending());
    advance(9 * MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(
        polls.load(Ordering::SeqCst),
        1,
        "nothing polled before the hedge is due"
    );
    advance(MS).await;
    assert!(call.poll().is_pending());
    assert!(
        polls.load(Ordering::SeqCst) > 1,
        "polled for the hedge now due"
    );
    // The service never becomes ready while the first attempt runs; that
    // attempt answers, and the call completes without the hedge.
    let start = Instant::now();
    let answer = call.await;
    assert_eq!(answer.unwrap(), 500);
    assert_eq!(start.elapsed(), 40 * MS);
    assert_eq!(down.calls(), WARM as usize + 1, "the hedge was never sent");
    // Nothing was left reserved: the next call goes through.
    svc.ready().await.unwrap().call(1).await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_call_drops_every_attempt() {
    let layer = HedgeLayer::builder("catalog")
        .budget_ratio(1.0)
        .build()
        .unwrap();
    let down = Downstream::new(|id, _| warm_plan(id).unwrap_or((Duration::from_secs(1), Ok(id))));
    let svc = layer.layer(down.clone());
    warm_up(&svc).await;
    let mut call = tokio_test::task::spawn(svc.clone().oneshot(500));
    assert!(call.poll().is_pending());
    advance(10 * MS).await;
    assert!(call.poll().is_pending());
    assert_eq!(down.calls(), WARM as usize + 2);
    drop(call);
    assert!(down.dropped(500, 1) && down.dropped(500, 2));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn clones_and_a_registry_share_the_window_and_the_budget() {
    let registry = Registry::<HedgeHandle>::new();
    let a = HedgeLayer::builder("catalog")
        .registry(&registry)
        .build()
        .unwrap();
    let b = HedgeLayer::builder("catalog")
        .percentile(50.0)
        .registry(&registry)
        .build()
        .unwrap();
    assert!(a.handle().same_as(&b.handle()));
    assert!(Arc::ptr_eq(a.budget(), b.budget()));
    let down = Downstream::new(|id, _| (10 * MS, Ok(id)));
    let sa = a.layer(down.clone());
    let sb = b.layer(down);
    for id in 0..WARM / 2 {
        sa.clone().oneshot(id).await.unwrap();
        sb.clone().oneshot(id).await.unwrap();
    }
    let snapshot = registry.get("catalog").unwrap().snapshot();
    assert_eq!(snapshot.samples, u64::from(WARM));
    assert_eq!(snapshot.delay, Some(DELAY));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_budget_shared_with_retries_is_drawn_from_by_both() {
    let budget = Arc::new(
        RetryBudget::builder()
            .retry_ratio(0.5)
            .min_retries_per_sec(0)
            .build()
            .unwrap(),
    );
    let layer = HedgeLayer::builder("catalog")
        .initial_delay(MS)
        .budget(Arc::clone(&budget))
        .build()
        .unwrap();
    let down = Downstream::new(|id, attempt| {
        if attempt == 1 {
            (50 * MS, Ok(id))
        } else {
            (MS, Ok(id))
        }
    });
    let svc = layer.layer(down.clone());
    // Two requests deposit 2 × 0.5: one extra attempt. A retry takes it.
    budget.deposit();
    budget.deposit();
    assert!(budget.withdraw());
    svc.oneshot(1).await.unwrap();
    assert_eq!(down.calls(), 1, "the retry spent what the hedge would have");
    assert_eq!(layer.handle().snapshot().budget_exhausted, 1);
}

#[test]
fn metrics_count_hedges_and_wins() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = HedgeLayer::builder("catalog")
            .budget_ratio(1.0)
            .build()
            .unwrap();
        let down = Downstream::new(|id, attempt| {
            warm_plan(id).unwrap_or(if attempt == 1 {
                (Duration::from_secs(1), Ok(id))
            } else {
                (MS, Ok(id))
            })
        });
        let svc = layer.layer(down);
        warm_up(&svc).await;
        svc.oneshot(500).await.unwrap();
    });
    let name = [("name", "catalog")];
    assert_eq!(capture.counter("palisade_hedge_hedges_total", &name), 1);
    assert_eq!(capture.counter("palisade_hedge_wins_total", &name), 1);
    assert_eq!(
        capture.gauge("palisade_hedge_delay_seconds", &name),
        Some(DELAY.as_secs_f64())
    );
}

#[test]
fn public_types_are_send_sync_clone() {
    type Svc = palisade_hedge::Hedge<
        tower::util::BoxCloneSyncService<u32, u32, BoxError>,
        palisade_core::ErrorsAsFailures,
        palisade_retry::kind::Plain,
    >;
    assert_send_sync_clone::<HedgeLayer>();
    assert_send_sync_clone::<Svc>();
    assert_send_sync_clone::<HedgeHandle>();
    assert_send::<<Svc as Service<u32>>::Future>();
    let _ = ServiceBuilder::new().layer(HedgeLayer::builder("x").build().unwrap());
}

#[test]
fn bad_settings_are_refused() {
    let field = |b: palisade_hedge::HedgeBuilder<_, _>| b.build().unwrap_err().field().to_owned();
    assert_eq!(
        field(HedgeLayer::builder("x").percentile(100.0)),
        "percentile"
    );
    assert_eq!(
        field(HedgeLayer::builder("x").percentile(f64::NAN)),
        "percentile"
    );
    assert_eq!(field(HedgeLayer::builder("x").window(MS)), "window");
    assert_eq!(
        field(HedgeLayer::builder("x").min_samples(0)),
        "min_samples"
    );
    assert_eq!(field(HedgeLayer::builder("x").max_hedges(11)), "max_hedges");
    assert_eq!(
        field(HedgeLayer::builder("x").budget_ratio(-1.0)),
        "budget_ratio"
    );
    assert_eq!(
        field(HedgeLayer::builder("x").budget_ttl(Duration::from_millis(1500))),
        "budget_ttl"
    );
    assert_eq!(
        field(HedgeLayer::builder("x").min_delay(Duration::from_secs(400 * 24 * 3600))),
        "min_delay"
    );
    assert_eq!(field(HedgeLayer::builder("")), "name");
}

#[cfg(feature = "serde")]
#[test]
fn settings_read_from_toml() {
    use palisade_hedge::HedgeSettings;
    let settings: HedgeSettings = toml::from_str(
        r#"
        percentile = 99.0
        window = "30s"
        initial_delay = "20ms"
        max_hedges = 2
        "#,
    )
    .unwrap();
    assert_eq!(settings.percentile, 99.0);
    assert_eq!(settings.window, Duration::from_secs(30));
    assert_eq!(settings.initial_delay, Some(20 * MS));
    assert_eq!(settings.budget_ratio, 0.05);
    assert!(toml::from_str::<HedgeSettings>("percentil = 1.0").is_err());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = HedgeLayer::builder("cfg")
            .settings(settings)
            .build()
            .unwrap();
        let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
        assert_eq!(json["delay"], "20ms");
        assert_eq!(json["hedges"], 0);
    });
}

#[cfg(feature = "http")]
mod http_hedging {
    use super::*;
    use bytes::Bytes;
    use http::{Method, Request, Response};
    use http_body_util::Full;
    use palisade_hedge::http::RetryBody;

    type Body = Full<Bytes>;

    /// Warm the window with fast GETs, then send one request whose first
    /// attempt hangs.
    async fn hedged_calls(method: Method, key: bool, non_idempotent: bool) -> usize {
        let layer = HedgeLayer::http_builder("catalog")
            .budget_ratio(1.0)
            .hedge_non_idempotent(non_idempotent)
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let svc = layer.layer(tower::service_fn(move |req: Request<RetryBody<Body>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let slow = req.uri().path() == "/slow";
            async move {
                sleep(if slow {
                    Duration::from_secs(1)
                } else {
                    10 * MS
                })
                .await;
                Ok::<_, BoxError>(Response::new(()))
            }
        }));
        for _ in 0..WARM {
            let req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
            svc.clone().oneshot(req).await.unwrap();
        }
        let before = calls.load(Ordering::SeqCst);
        let mut req = Request::builder()
            .method(method)
            .uri("/slow")
            .body(Full::new(Bytes::from_static(b"{\"sku\":7}")))
            .unwrap();
        if key {
            req.headers_mut()
                .insert("idempotency-key", "order-7".parse().unwrap());
        }
        let mut call = tokio_test::task::spawn(svc.oneshot(req));
        assert!(call.poll().is_pending());
        advance(50 * MS).await;
        let _ = call.poll();
        calls.load(Ordering::SeqCst) - before
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_get_with_a_body_is_hedged_and_replayed() {
        assert_eq!(hedged_calls(Method::GET, false, false).await, 2);
        assert_eq!(hedged_calls(Method::PUT, false, false).await, 2);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_post_is_never_hedged() {
        assert_eq!(hedged_calls(Method::POST, false, false).await, 1);
        // Not even with an idempotency key, unless asked for.
        assert_eq!(hedged_calls(Method::POST, true, false).await, 1);
        assert_eq!(hedged_calls(Method::PATCH, true, false).await, 1);
        // Asked for, and keyed: hedged.
        assert_eq!(hedged_calls(Method::POST, true, true).await, 2);
        assert_eq!(hedged_calls(Method::POST, false, true).await, 1);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn every_hedge_carries_the_same_body() {
        let layer = HedgeLayer::http_builder("catalog")
            .initial_delay(5 * MS)
            .budget_ratio(1.0)
            .build()
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bodies);
        let svc = layer.layer(tower::service_fn(move |req: Request<RetryBody<Body>>| {
            let sink = Arc::clone(&sink);
            async move {
                use http_body_util::BodyExt;
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let first = {
                    let mut bodies = sink.lock().unwrap();
                    bodies.push(body);
                    bodies.len() == 1
                };
                sleep(if first { Duration::from_secs(1) } else { MS }).await;
                Ok::<_, BoxError>(Response::new(()))
            }
        }));
        let req = Request::put("/items/7")
            .body(Full::new(Bytes::from_static(b"{\"stock\":3}")))
            .unwrap();
        svc.oneshot(req).await.unwrap();
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies.len(), 2);
        assert!(bodies.iter().all(|b| b.as_ref() == b"{\"stock\":3}"));
    }
}
