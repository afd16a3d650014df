//! What the gateway logs under an outage: breaker transitions, at most one
//! failure line per upstream and reason per second (every failure counted),
//! and the access log only when the config asks for it.
//!
//! One test in a binary of its own: it captures events with a thread-local
//! subscriber on a current-thread runtime with tokio's paused clock, calling
//! the gateway's service in-process (no socket: a refused call needs none).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use palisade::circuit_breaker::State;
use palisade_gateway::config::Config;
use palisade_gateway::{App, AppState, app};
use palisade_test_util::{CapturedEvent, EventCapture};
use tower::ServiceExt;
use tracing::Level;

/// One upstream (nothing listens at its address; every call below is
/// refused by its breaker before any connection) with a retry and a breaker
/// that stays open for an hour once opened, and `log` as the `[log]` table.
fn config(log: &str) -> Config {
    let text = format!(
        "{log}\n[upstreams.api]\nurl = \"http://127.0.0.1:9\"\ntimeout_ms = 1000\n\
         [upstreams.api.retry]\nmax_attempts = 3\n\
         [upstreams.api.circuit_breaker]\ncount_window = 10\nminimum_calls = 5\nwait_in_open_ms = 3600000\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"api\"\n"
    );
    Config::parse("logs.toml", &text).unwrap()
}

async fn call(app: &App, path: &str) -> StatusCode {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

/// What `RUST_LOG=info` would write.
fn written(events: Vec<CapturedEvent>) -> Vec<CapturedEvent> {
    events
        .into_iter()
        .filter(|e| e.level <= Level::INFO)
        .collect()
}

fn message(e: &CapturedEvent) -> &str {
    e.field("message").unwrap_or("")
}

fn number(e: &CapturedEvent, field: &str) -> u64 {
    e.field(field)
        .unwrap_or_else(|| panic!("no `{field}` in {}", e.line()))
        .parse()
        .unwrap_or_else(|_| panic!("`{field}` is not a number in {}", e.line()))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_outage_writes_a_bounded_number_of_log_lines() {
    const CALLS: u64 = 10_000;
    let capture = EventCapture::default();
    let _guard = capture.set_default();

    // ===== 10 000 refused calls over 10 s =====
    let state = AppState::from_config(&config(""), BTreeMap::new(), None).unwrap();
    let service = app(&state);
    let breaker = state.circuit_breakers().get("api").unwrap();
    breaker.transition_to(State::Open);
    for i in 0..CALLS {
        assert_eq!(
            call(&service, "/api/items/1").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        if i % 1000 == 999 {
            // The gateway's once-a-second upkeep.
            state.upkeep();
        }
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    state.upkeep();
    breaker.transition_to(State::Closed);
    let lines = written(capture.take());

    // The breaker's transitions are logged.
    let opened = lines
        .iter()
        .find(|e| message(e) == "circuit breaker opened")
        .unwrap_or_else(|| panic!("no line says the breaker opened: {lines:#?}"));
    assert_eq!(
        (opened.level, opened.field("name")),
        (Level::WARN, Some("api"))
    );
    assert!(
        lines
            .iter()
            .any(|e| message(e) == "circuit breaker changed state"
                && e.field("name") == Some("api")
                && e.field("to") == Some("closed")),
        "no line says the breaker closed: {lines:#?}"
    );

    // At most one failure line per second (a second or two of slack for the
    // window edges), each saying how many it stands for.
    let failed: Vec<&CapturedEvent> = lines
        .iter()
        .filter(|e| message(e) == "upstream call failed")
        .collect();
    assert!(
        (1..=12).contains(&failed.len()),
        "{} failure lines for 10 s of refused calls",
        failed.len()
    );
    for e in &failed {
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.field("upstream"), Some("api"));
        assert_eq!(e.field("reason"), Some("circuit_open"));
        assert_eq!(e.field("status"), Some("503"));
    }
    let reported: Vec<&CapturedEvent> = lines
        .iter()
        .filter(|e| message(e).starts_with("upstream call failures not logged"))
        .collect();
    assert!(!reported.is_empty(), "the last second's count is reported");
    // Not one failure uncounted: the lines, what each says it suppressed,
    // and what the upkeep reported add up to the calls.
    let counted: u64 = failed
        .iter()
        .map(|e| 1 + number(e, "suppressed"))
        .sum::<u64>()
        + reported
            .iter()
            .map(|e| number(e, "suppressed"))
            .sum::<u64>();
    assert_eq!(counted, CALLS);
    // Nothing else per call: no access log (off by default).
    assert!(
        lines.len() <= failed.len() + reported.len() + 4,
        "{} lines for {CALLS} calls: {lines:#?}",
        lines.len()
    );
    assert!(!lines.iter().any(|e| e.target == "palisade_gateway::access"));

    // ===== the access log, when asked for =====
    let all = AppState::from_config(
        &config("[log]\naccess_log = \"all\""),
        BTreeMap::new(),
        None,
    )
    .unwrap();
    let all_app = app(&all);
    for _ in 0..100 {
        assert_eq!(call(&all_app, "/healthz").await, StatusCode::OK);
    }
    let access: Vec<CapturedEvent> = written(capture.take())
        .into_iter()
        .filter(|e| e.target == "palisade_gateway::access")
        .collect();
    assert_eq!(access.len(), 100, "one line per request");
    // Structured: every field a key of its own.
    let first = &access[0];
    assert_eq!(first.level, Level::INFO);
    assert_eq!(first.field("method"), Some("GET"));
    assert_eq!(first.field("path"), Some("/healthz"));
    assert_eq!(first.field("status"), Some("200"));
    assert_eq!(first.field("request_id").map(str::len), Some(16));
    assert!(first.field("latency_ms").is_some());

    // Sampled: about the fraction asked for (seeded, so the same each run).
    fastrand::seed(7);
    let sampled = AppState::from_config(
        &config("[log]\naccess_log = \"sampled\"\naccess_log_sample = 0.1"),
        BTreeMap::new(),
        None,
    )
    .unwrap();
    let sampled_app = app(&sampled);
    for _ in 0..2_000 {
        assert_eq!(call(&sampled_app, "/healthz").await, StatusCode::OK);
    }
    let n = written(capture.take())
        .iter()
        .filter(|e| e.target == "palisade_gateway::access")
        .count();
    assert!(
        (100..=300).contains(&n),
        "{n} lines for 2 000 requests at 10 %"
    );
}
