//! The admin API under `/admin`, guarded by a bearer token.
//!
//! | request | what |
//! |---|---|
//! | `GET /admin/circuit-breakers` | every breaker's `CircuitBreakerSnapshot`: state, window figures and settings ([`BreakerView`]) |
//! | `GET /admin/circuit-breakers/{name}` | one breaker's |
//! | `POST /admin/circuit-breakers/{name}/{action}` | `force-open`, `open`, `half-open`, `close`, `reset`, `disable`, `metrics-only`; answers the new view |
//! | `GET /admin/bulkheads` | every bulkhead's `BulkheadSnapshot` ([`BulkheadView`]) |
//! | `GET /admin/bulkheads/{name}` | one bulkhead's |
//! | `PATCH /admin/bulkheads/{name}` | `{"max_concurrent_calls": n, "max_wait_ms": n}` (both optional); answers the new view |
//! | `GET /admin/retries` | every upstream's retry layer: its settings in force and its budget (the retry crate's `RetrySnapshot`) |
//! | `GET /admin/retries/{name}` | one upstream's |
//! | `GET /admin/fan-outs` | the aggregator's fan-out: its settings and branches (the fan-out crate's `FanOutSnapshot`) |
//! | `GET /admin/deadlines` | the deadline layers: every route's (`gateway`) and each upstream's overall timeout, with budgets and expiries (the deadline crate's `DeadlineSnapshot`) |
//! | `GET /admin/fallbacks` | the aggregator branches' fallbacks: classes answered and answers served, by class (the fallback crate's `FallbackSnapshot`) |
//! | `GET /admin/hedges` | every hedging upstream's hedge layer: delay, hedges sent and won, budget (the hedge crate's `HedgeSnapshot`) |
//! | `GET /admin/event-store` | the accounts' event store: appends, conflicts, reads, the head position and its settings (the event store crate's `EventStoreSnapshot`) |
//! | `GET /admin/projections` | each projection's checkpoint, lag and settings (the CQRS crate's `ProjectionSnapshot`) with its parked events (`ParkedEvent`) |
//! | `GET /admin/chaos` | every demo backend's chaos settings and injected counts |
//! | `GET /admin/chaos/{backend}` | one backend's |
//! | `PATCH /admin/chaos/{backend}` | change some settings (JSON, fields below); answers the new state |
//! | `POST /admin/chaos/{backend}/reset` | back to the settings it started with |
//! | `GET /admin/shards` | every sharded upstream's router: the shard crate's `ShardSnapshot` (map version `epoch`, shards, `last_change` with the share of keys it moved) and each shard's URL ([`ShardsView`](shards::ShardsView)) |
//! | `GET /admin/shards/{upstream}` | one sharded upstream's |
//! | `POST /admin/shards/{upstream}` | `{"name": "user-3", "url": "demo://user-0", "weight": 1.0}` (weight optional): adds a shard; `201` with the change and the new view |
//! | `DELETE /admin/shards/{upstream}/{shard}` | removes a shard (its keys move to the others); the change and the new view |
//! | `PATCH /admin/shards/{upstream}/{shard}` | `{"weight": 2.0}`: re-weights a shard; the change and the new view |
//! | `GET /admin/rate-limits` | every rate limiter's `RateLimitSnapshot` (the `/api` limiter of `[rate_limit]`: tiers, limits, counts) |
//! | `GET /admin/rate-limits/{name}` | one limiter's |
//! | `PUT /admin/rate-limits/{name}/tiers/{tier}` | `{"rate": "10/s", "burst": 20}`: a tier's limit; `PATCH /admin/rate-limits/{name}` sets `max_delay_ms`; `PUT`/`DELETE .../key-tiers/{key}` assign a key to a tier ([`rate_limits`]) |
//! | `GET /admin/caches` | every upstream's cache: the cache crate's `CacheSnapshot` (hit ratio, stale serves by reason, bytes, the Redis tier) |
//! | `GET /admin/caches/{name}` | one upstream's |
//! | `POST /admin/caches/{name}/purge` | `{"key": "/products/7"}` or `{"prefix": "/products/"}` (exactly one, a path as the upstream gets it): removes those entries from both tiers; answers what was removed ([`caches::PurgeView`]) |
//! | `GET /admin/pubsub` | the events feature (`[pubsub]`): published, each consumer's `ConsumerSnapshot` (delivered, acked, redelivered, dead-lettered, lag) and their totals, the notifications sent, the analytics count, the latest dead letters with their reason ([`PubSubSnapshot`](crate::pubsub::PubSubSnapshot)) |
//! | `PATCH /admin/pubsub/notification/chaos` | the notification handler's chaos knob, the `PATCH` fields below (`{"error_rate": 1}`: every notification fails); answers the chaos crate's `ChaosSnapshot` |
//! | `POST /admin/pubsub/notification/chaos/reset` | back to no fault |
//!
//! `PATCH` fields, all optional: `enabled` (bool), `outage` (bool),
//! `error_rate`, `abort_rate`, `latency_rate` (fractions in `[0, 1]`),
//! `latency_ms` (exact added latency) or `latency_min_ms` with
//! `latency_max_ms` (a uniform range), each at most [`MAX_LATENCY_MS`].
//! Setting a latency above zero without a rate applies it to every call
//! (`latency_rate` 1); setting it to zero without a rate turns latency
//! injection off (`latency_rate` 0). A value out of range is refused with
//! `422` and a problem naming the `field`; nothing changes.
//!
//! Without a token (config `admin.token` or `PALISADE_ADMIN_TOKEN`) every
//! admin request gets `403` saying the API is disabled. A missing or wrong
//! token gets `401` with `WWW-Authenticate: Bearer realm="palisade-admin"`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use palisade::bulkhead::{BulkheadHandle, BulkheadSnapshot};
use palisade::chaos::{ChaosHandle, ChaosSettings, ChaosSnapshot};
use palisade::circuit_breaker::{
    CircuitBreakerHandle, CircuitBreakerSnapshot, ConfigSummary, SlidingWindow,
    State as BreakerState,
};
use palisade::http::Problem;
use palisade::retry::RetrySnapshot;
use serde::{Deserialize, Serialize};

use crate::proxy::errors::problem;
use crate::state::AppState;

/// The admin API's config section: `[admin]`.
pub use crate::config::AdminConfig;

pub mod breakers;
pub mod bulkheads;
pub mod caches;
pub mod chaos;
pub mod deadlines;
pub mod event_store;
pub mod fallbacks;
pub mod fan_outs;
pub mod hedges;
pub mod pubsub;
pub mod rate_limits;
pub mod retries;
pub mod shards;

pub use breakers::{BreakerConfigView, BreakerView};
pub use bulkheads::{BulkheadPatch, BulkheadView};
pub use chaos::{ChaosPatch, ChaosPatchError, ChaosView, MAX_LATENCY_MS};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn no_such(kind: &'static str, name: &str, known: &[String]) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        match kind {
            "circuit breaker" => "no such circuit breaker",
            "retry layer" => "no such retry layer",
            _ => "no such bulkhead",
        },
        format!(
            "no {kind} named `{name}` (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    )
}

/// Constant-time comparison, so the token cannot be guessed byte by byte
/// from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = state.inner.admin_token.as_deref() else {
        return problem(
            StatusCode::FORBIDDEN,
            "admin API disabled",
            "no admin token is configured: set `admin.token` in the config or PALISADE_ADMIN_TOKEN",
        );
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(given) if same(given.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => Problem::new(StatusCode::UNAUTHORIZED, "unauthorized")
            .detail("the admin API needs `Authorization: Bearer <token>` with the admin token")
            .header(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"palisade-admin\""),
            )
            .into_response::<Body>(),
    }
}

async fn admin_not_found(req: Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not found",
        format!("no admin endpoint {} {}", req.method(), req.uri().path()),
    )
}

/// The admin routes, to nest under `/admin`: each resource's own routes
/// behind the bearer token.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(breakers::routes())
        .merge(bulkheads::routes())
        .merge(retries::routes())
        .merge(fan_outs::routes())
        .merge(chaos::routes())
        .merge(deadlines::routes())
        .merge(fallbacks::routes())
        .merge(hedges::routes())
        .merge(event_store::routes())
        .merge(shards::routes())
        .merge(rate_limits::routes())
        .merge(caches::routes())
        .merge(pubsub::routes())
        .fallback(admin_not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(same(b"", b""));
    }
}
