//! The live dashboard: `GET /dashboard` (a self-contained page) and
//! `GET /dashboard/events` (Server-Sent Events, one [`DashboardSnapshot`]
//! per second, event name `snapshot`).

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use http::header::{CACHE_CONTROL, HeaderValue};
use palisade::bulkhead::BulkheadSnapshot;
use palisade::circuit_breaker::CircuitBreakerSnapshot;
use serde::Serialize;

use crate::admin::ChaosView;
use crate::state::AppState;

/// The page, served from the binary.
pub const DASHBOARD_HTML: &str = include_str!("../static/dashboard.html");

/// How often the event stream sends a snapshot.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Everything the dashboard shows, once.
#[derive(Clone, Debug, Serialize)]
pub struct DashboardSnapshot {
    /// When it was taken, ms since the Unix epoch.
    pub at_ms: u64,
    /// Seconds the rolling window spans.
    pub window_secs: u64,
    /// One tile per upstream, by name.
    pub upstreams: Vec<UpstreamTile>,
    /// `true` when the admin API (and so the chaos buttons) is enabled.
    pub admin_enabled: bool,
}

/// One upstream's tile.
#[derive(Clone, Debug, Serialize)]
pub struct UpstreamTile {
    /// The upstream's name.
    pub name: String,
    /// Where it forwards (`http://127.0.0.1:41234`).
    pub url: String,
    /// The route prefixes that proxy to it.
    pub prefixes: Vec<String>,
    /// Its timeout, ms.
    pub timeout_ms: u64,
    /// Calls completed in the window.
    pub requests: u64,
    /// Of those, errors and 5xx responses.
    pub errors: u64,
    /// Requests per second over the window.
    pub rate_per_sec: f64,
    /// Error percentage over the window.
    pub error_pct: f64,
    /// Median latency to response headers, ms (`null` with no calls).
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// Calls in flight now.
    pub in_flight: u64,
    /// The circuit breaker's figures; `null` when the upstream's stack has
    /// no breaker.
    pub circuit_breaker: Option<BreakerTile>,
    /// The bulkhead's figures; `null` when the upstream's stack has no
    /// bulkhead.
    pub bulkhead: Option<BulkheadTile>,
    /// The chaos state of the demo backend behind it, if it is one.
    pub chaos: Option<ChaosView>,
}

/// A circuit breaker's figures on a tile, from its registry handle's
/// snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerTile {
    /// `closed`, `open`, `half_open`, `forced_open`, `disabled`, ...
    pub state: String,
    /// Milliseconds until the next probe is admitted (open only).
    pub next_probe_in_ms: Option<u64>,
    /// The window's failure rate, percent (`None` before the minimum number
    /// of calls).
    pub failure_rate_pct: Option<f64>,
    /// The window's slow-call rate, percent (`None` before the minimum
    /// number of calls, or without slow-call detection).
    pub slow_call_rate_pct: Option<f64>,
    /// Calls refused so far.
    pub rejected: u64,
}

/// A bulkhead's figures on a tile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BulkheadTile {
    /// Calls holding a permit.
    pub in_flight: u64,
    /// The permit limit.
    pub limit: u64,
    /// Calls waiting for a permit.
    pub waiting: u64,
    /// Calls refused so far.
    pub rejected: u64,
}

impl BreakerTile {
    /// The tile of a breaker's `snapshot`: the rates only once the window
    /// holds its minimum number of calls.
    #[must_use]
    pub fn of(snapshot: &CircuitBreakerSnapshot) -> Self {
        let judged = snapshot.minimum_calls_reached;
        Self {
            state: snapshot.state.as_str().to_owned(),
            next_probe_in_ms: snapshot
                .next_probe_in
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            failure_rate_pct: judged.then_some(snapshot.failure_rate),
            slow_call_rate_pct: (judged && snapshot.config.slow_call_duration.is_some())
                .then_some(snapshot.slow_call_rate),
            rejected: snapshot.not_permitted_calls,
        }
    }
}

impl BulkheadTile {
    /// The tile of a bulkhead's `snapshot`.
    #[must_use]
    pub fn of(snapshot: &BulkheadSnapshot) -> Self {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        Self {
            in_flight: n(snapshot.in_flight),
            limit: n(snapshot.limit),
            waiting: n(snapshot.queued),
            rejected: snapshot.rejected,
        }
    }
}

/// The snapshot of `state` now.
#[must_use]
pub fn snapshot(state: &AppState) -> DashboardSnapshot {
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let upstreams = state
        .upstreams()
        .map(|up| {
            let s = up.stats().snapshot();
            let chaos = up.demo_backend().and_then(|b| {
                state
                    .inner
                    .backends
                    .get(b)
                    .map(|info| ChaosView::of(b, &info.addr.to_string(), &info.chaos))
            });
            UpstreamTile {
                name: up.name().to_owned(),
                url: up.base().to_string(),
                prefixes: state
                    .inner
                    .routes
                    .iter()
                    .filter(|r| r.upstream == up.name())
                    .map(|r| r.prefix.clone())
                    .collect(),
                timeout_ms: u64::try_from(up.timeout().as_millis()).unwrap_or(u64::MAX),
                requests: s.requests,
                errors: s.errors,
                rate_per_sec: s.rate_per_sec,
                error_pct: s.error_pct,
                latency_p50_ms: s.p50_ms,
                latency_p99_ms: s.p99_ms,
                in_flight: s.in_flight,
                circuit_breaker: state
                    .circuit_breakers()
                    .get(up.name())
                    .map(|h| BreakerTile::of(&h.snapshot())),
                bulkhead: state
                    .bulkheads()
                    .get(up.name())
                    .map(|h| BulkheadTile::of(&h.snapshot())),
                chaos,
            }
        })
        .collect();
    DashboardSnapshot {
        at_ms,
        window_secs: crate::stats::WINDOW_SECS,
        upstreams,
        admin_enabled: state.admin_enabled(),
    }
}

async fn page() -> Response {
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(DASHBOARD_HTML),
    )
        .into_response()
}

fn snapshot_event(state: &AppState) -> Event {
    match Event::default()
        .event("snapshot")
        .json_data(snapshot(state))
    {
        Ok(event) => event,
        Err(err) => Event::default().event("error").data(err.to_string()),
    }
}

/// One snapshot at once, then one per [`INTERVAL`]; the stream ends when
/// the drain begins (after the readiness grace), so open dashboards do not
/// hold it up.
fn events(state: AppState) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures_util::stream::unfold((state, interval), |(state, mut interval)| async move {
        tokio::select! {
            // The tick first: the first snapshot is sent even if shutdown
            // began before the stream was first polled.
            biased;
            _ = interval.tick() => {
                let event = snapshot_event(&state);
                Some((Ok(event), (state, interval)))
            }
            () = state.lifecycle().wait_drain() => None,
        }
    })
}

async fn stream(State(state): State<AppState>) -> Response {
    Sse::new(events(state))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /dashboard` and `GET /dashboard/events`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/events", get(stream))
}
