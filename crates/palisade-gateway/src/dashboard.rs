//! The live dashboard: `GET /dashboard` (a self-contained page) and
//! `GET /dashboard/events` (Server-Sent Events, one [`DashboardSnapshot`]
//! per second, event name `snapshot`).
//!
//! Each tile's sparklines come from its upstream's history, kept
//! server-side ([`crate::stats`]: one point per second for the last
//! [`HISTORY_SECS`] seconds, bounded). A stream's
//! first snapshot carries every point; each later one only the points it
//! has not sent yet, so a second's snapshot stays small. The page keeps at
//! most as many points as the server does.

use std::collections::BTreeMap;
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
use crate::aggregator::GatherView;
use crate::state::AppState;
use crate::stats::{HISTORY_SECS, HistoryPoint};

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
    /// Seconds of history the server keeps per upstream (one point each).
    pub history_secs: u64,
    /// One tile per upstream, by name.
    pub upstreams: Vec<UpstreamTile>,
    /// The aggregator's view, when the config has one.
    pub aggregator: Option<AggregatorTile>,
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
    /// Of those, errors and 5xx responses (refusals included).
    pub errors: u64,
    /// Of those, calls a layer refused (an open breaker, a full bulkhead),
    /// in the same window.
    pub refused: u64,
    /// Requests per second over the window.
    pub rate_per_sec: f64,
    /// Error percentage over the window.
    pub error_pct: f64,
    /// Median latency to response headers of the calls not refused, ms
    /// (`null` without any: a refusal has no latency worth showing).
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile latency of the calls not refused, ms.
    pub latency_p99_ms: Option<f64>,
    /// Calls in flight now.
    pub in_flight: u64,
    /// One point per second, oldest first: on a stream's first snapshot the
    /// whole history, then only the points not sent yet.
    pub history: Vec<HistoryPoint>,
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
    /// Calls it refused in the dashboard's window (as callers saw them).
    pub refused: u64,
    /// Calls it refused since start (attempts, retries included).
    pub rejected: u64,
}

/// A bulkhead on a tile: the crate's [`BulkheadSnapshot`] as it is
/// (`in_flight`, `limit`, `rejected`, ...), with what the tile adds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BulkheadTile {
    /// The bulkhead's own snapshot.
    #[serde(flatten)]
    pub snapshot: BulkheadSnapshot,
    /// Calls waiting for a permit (the snapshot's `queued`).
    pub waiting: usize,
    /// Calls it refused in the dashboard's window (as callers saw them).
    pub refused: u64,
}

/// The aggregator on the dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct AggregatorTile {
    /// Its route (`/api/dashboard/user/{id}`).
    pub route: &'static str,
    /// The last gather kept (one every
    /// [`SAMPLE_EVERY`](crate::aggregator::SAMPLE_EVERY) at most), drawn as
    /// a waterfall; `null` before the first.
    pub last: Option<GatherView>,
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
            refused: 0,
            rejected: snapshot.not_permitted_calls,
        }
    }
}

impl BulkheadTile {
    /// The tile of a bulkhead's `snapshot`.
    #[must_use]
    pub fn of(snapshot: BulkheadSnapshot) -> Self {
        Self {
            waiting: snapshot.queued,
            refused: 0,
            snapshot,
        }
    }
}

/// The snapshot of `state` now, with every upstream's whole history.
#[must_use]
pub fn snapshot(state: &AppState) -> DashboardSnapshot {
    snapshot_since(state, &BTreeMap::new())
}

/// The snapshot of `state` now, with each upstream's history points after
/// the second `sent` gives for it (all of them for an upstream it does not
/// name). The seconds that ended are folded into the histories first.
#[must_use]
pub fn snapshot_since(state: &AppState, sent: &BTreeMap<String, u64>) -> DashboardSnapshot {
    state.fold_history();
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
                refused: s.refused,
                latency_p50_ms: s.p50_ms,
                latency_p99_ms: s.p99_ms,
                in_flight: s.in_flight,
                history: up.stats().history_since(sent.get(up.name()).copied()),
                circuit_breaker: state
                    .circuit_breakers()
                    .get(up.name())
                    .map(|h| BreakerTile {
                        refused: s.refused_by_breaker,
                        ..BreakerTile::of(&h.snapshot())
                    }),
                bulkhead: state.bulkheads().get(up.name()).map(|h| BulkheadTile {
                    refused: s.refused_by_bulkhead,
                    ..BulkheadTile::of(h.snapshot())
                }),
                chaos,
            }
        })
        .collect();
    DashboardSnapshot {
        at_ms,
        window_secs: crate::stats::WINDOW_SECS,
        history_secs: HISTORY_SECS,
        upstreams,
        aggregator: state.inner.aggregator.as_ref().map(|_| AggregatorTile {
            route: crate::config::AGGREGATOR_ROUTE,
            last: state.last_gather(),
        }),
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

/// The next snapshot of a stream that has sent the history up to `sent`
/// (updated with what this one carries).
fn snapshot_event(state: &AppState, sent: &mut BTreeMap<String, u64>) -> Event {
    let snap = snapshot_since(state, sent);
    for tile in &snap.upstreams {
        if let Some(last) = tile.history.last() {
            sent.insert(tile.name.clone(), last.t);
        }
    }
    match Event::default().event("snapshot").json_data(snap) {
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
    let sent = BTreeMap::new();
    futures_util::stream::unfold(
        (state, interval, sent),
        |(state, mut interval, mut sent)| async move {
            tokio::select! {
                // The tick first: the first snapshot is sent even if shutdown
                // began before the stream was first polled.
                biased;
                _ = interval.tick() => {
                    let event = snapshot_event(&state, &mut sent);
                    Some((Ok(event), (state, interval, sent)))
                }
                () = state.lifecycle().wait_drain() => None,
            }
        },
    )
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
