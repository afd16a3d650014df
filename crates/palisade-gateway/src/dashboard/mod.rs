//! The live dashboard: `GET /dashboard` (a self-contained page) and
//! `GET /dashboard/events` (Server-Sent Events, one [`DashboardSnapshot`]
//! per second, event name `snapshot`).
//!
//! Each panel reads its feature's data: the upstream tiles ([`upstreams`])
//! the proxy's upstreams and stats, the aggregator's waterfall
//! ([`aggregator`]) the aggregator's last gather, the deadlines panel
//! ([`deadlines`]) the deadline, fallback and hedge layers' snapshots, the
//! event-store panel ([`events`]) the accounts' latest events and
//! projections' lag; this
//! module puts them in one snapshot and streams it.
//! shard panel ([`shards`]) the sharded upstreams' routers, the rate limit's
//! panel ([`rate_limit`]) the `/api` limiter's tiers and rates, the caches'
//! panel ([`caches`]) the upstreams' caches; this module puts them in one
//! snapshot and streams it.
//!
//! Each tile's sparklines come from its upstream's history, kept
//! server-side ([`crate::proxy::stats`]: one point per second for the last
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
use serde::Serialize;

pub mod aggregator;
pub mod caches;
pub mod deadlines;
pub mod events;
pub mod pubsub;
pub mod rate_limit;
pub mod shards;
pub mod upstreams;

use crate::proxy::stats::HISTORY_SECS;
use crate::state::AppState;
pub use aggregator::AggregatorTile;
pub use caches::CacheTile;
pub use deadlines::DeadlinesTile;
pub use events::EventsTile;
pub use rate_limit::RateLimitTile;
pub use shards::ShardsTile;
pub use upstreams::{BreakerTile, BulkheadTile, UpstreamTile};

/// The page, served from the binary.
pub const DASHBOARD_HTML: &str = include_str!("../../static/dashboard.html");

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
    /// Deadline expiries, fallbacks served, hedges sent and won.
    pub deadlines: DeadlinesTile,
    /// The accounts' latest events and each projection's lag.
    pub events: EventsTile,
    /// One tile per sharded upstream: traffic per shard, the map's
    /// version and the share of keys its last change moved.
    pub shards: Vec<ShardsTile>,
    /// The `/api` rate limit's tiers and rates, when the config has one.
    pub rate_limit: Option<RateLimitTile>,
    /// The upstreams' caches (none without `[upstreams.<name>.cache]`).
    pub caches: Vec<CacheTile>,
    /// The events panel (`[pubsub]`): counts, lag, dead letters; `null`
    /// when off.
    pub pubsub: Option<crate::pubsub::PubSubSnapshot>,
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
    DashboardSnapshot {
        at_ms,
        window_secs: crate::proxy::stats::WINDOW_SECS,
        history_secs: HISTORY_SECS,
        upstreams: upstreams::tiles(state, sent),
        aggregator: aggregator::tile(state),
        admin_enabled: state.admin_enabled(),
        deadlines: deadlines::tile(state),
        events: events::tile(state),
        shards: shards::tiles(state),
        rate_limit: rate_limit::tile(state),
        caches: caches::tiles(state),
        pubsub: pubsub::tile(state),
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
