//! The proxy's panel on the dashboard: one tile per upstream, with its
//! window figures, history, and its layers' snapshots.

use std::collections::BTreeMap;

use palisade::bulkhead::BulkheadSnapshot;
use palisade::circuit_breaker::CircuitBreakerSnapshot;
use serde::Serialize;

use crate::admin::chaos::ChaosView;
use crate::proxy::stats::HistoryPoint;
use crate::state::AppState;

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

/// A circuit breaker on a tile: the crate's [`CircuitBreakerSnapshot`] as
/// it is (`state`, `calls`, `failed_calls`, `next_probe_in`, `config`, ...),
/// with what the tile adds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerTile {
    /// The breaker's own snapshot.
    #[serde(flatten)]
    pub snapshot: CircuitBreakerSnapshot,
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
    /// Calls it refused since start (attempts, retries included; the
    /// snapshot's `not_permitted_calls`).
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

impl BreakerTile {
    /// The tile of a breaker's `snapshot`: the rates only once the window
    /// holds its minimum number of calls.
    #[must_use]
    pub fn of(snapshot: CircuitBreakerSnapshot) -> Self {
        let judged = snapshot.minimum_calls_reached;
        Self {
            next_probe_in_ms: snapshot
                .next_probe_in
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            failure_rate_pct: judged.then_some(snapshot.failure_rate),
            slow_call_rate_pct: (judged && snapshot.config.slow_call_duration.is_some())
                .then_some(snapshot.slow_call_rate),
            refused: 0,
            rejected: snapshot.not_permitted_calls,
            snapshot,
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

/// Every upstream's tile, each with its history points after the second
/// `sent` gives for it (all of them for an upstream it does not name).
pub(crate) fn tiles(state: &AppState, sent: &BTreeMap<String, u64>) -> Vec<UpstreamTile> {
    state
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
                        ..BreakerTile::of(h.snapshot())
                    }),
                bulkhead: state.bulkheads().get(up.name()).map(|h| BulkheadTile {
                    refused: s.refused_by_bulkhead,
                    ..BulkheadTile::of(h.snapshot())
                }),
                chaos,
            }
        })
        .collect()
}
