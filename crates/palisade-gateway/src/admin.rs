//! The admin API under `/admin`, guarded by a bearer token.
//!
//! | request | what |
//! |---|---|
//! | `GET /admin/circuit-breakers` | every breaker's state, window figures and settings ([`BreakerView`]) |
//! | `GET /admin/circuit-breakers/{name}` | one breaker's |
//! | `POST /admin/circuit-breakers/{name}/{action}` | `force-open`, `open`, `half-open`, `close`, `reset`, `disable`, `metrics-only`; answers the new view |
//! | `GET /admin/bulkheads` | every bulkhead's `BulkheadSnapshot` ([`BulkheadView`]) |
//! | `GET /admin/bulkheads/{name}` | one bulkhead's |
//! | `PATCH /admin/bulkheads/{name}` | `{"max_concurrent_calls": n, "max_wait_ms": n}` (both optional); answers the new view |
//! | `GET /admin/retries` | every upstream's retry layer: its settings in force and its budget (the retry crate's `RetrySnapshot`) |
//! | `GET /admin/retries/{name}` | one upstream's |
//! | `GET /admin/chaos` | every demo backend's chaos settings and injected counts |
//! | `GET /admin/chaos/{backend}` | one backend's |
//! | `PATCH /admin/chaos/{backend}` | change some settings (JSON, fields below); answers the new state |
//! | `POST /admin/chaos/{backend}/reset` | back to the settings it started with |
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
    CircuitBreakerHandle, CircuitBreakerSnapshot, SlidingWindow, State as BreakerState,
};
use palisade::http::Problem;
use palisade::retry::RetrySnapshot;
use serde::{Deserialize, Serialize};

use crate::errors::problem;
use crate::state::AppState;

/// A demo backend's chaos layer as the admin API shows it: the crate's
/// [`ChaosSnapshot`] as it is (`name`, `seed`, `settings`, `injected`),
/// with the backend's address and, at the top level, the settings the
/// `PATCH` body takes (durations in milliseconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChaosView {
    /// The demo backend.
    pub backend: String,
    /// Its address.
    pub addr: String,
    /// The chaos layer's own snapshot.
    #[serde(flatten)]
    pub snapshot: ChaosSnapshot,
    /// Injection on or off.
    pub enabled: bool,
    /// Outage on (every call fails with 503).
    pub outage: bool,
    /// Fraction of calls failed with 500.
    pub error_rate: f64,
    /// Fraction of calls never answered.
    pub abort_rate: f64,
    /// Fraction of calls delayed.
    pub latency_rate: f64,
    /// Least added latency, ms.
    pub latency_min_ms: u64,
    /// Most added latency, ms.
    pub latency_max_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ChaosView {
    /// The view of `handle`, the chaos layer of `backend` at `addr`.
    #[must_use]
    pub fn of(backend: &str, addr: &str, handle: &ChaosHandle) -> Self {
        let snapshot = handle.snapshot();
        let s = &snapshot.settings;
        Self {
            backend: backend.to_owned(),
            addr: addr.to_owned(),
            enabled: s.enabled,
            outage: s.outage,
            error_rate: s.error_rate,
            abort_rate: s.abort_rate,
            latency_rate: s.latency_rate,
            latency_min_ms: millis(s.latency_min),
            latency_max_ms: millis(s.latency_max),
            snapshot,
        }
    }
}

// ===== circuit breakers =====

/// A circuit breaker as the admin API shows it: its
/// [`CircuitBreakerSnapshot`], durations in milliseconds, rates in percent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerView {
    /// The breaker's name (its upstream's).
    pub name: String,
    /// `closed`, `open`, `half_open`, `disabled`, `metrics_only`, `forced_open`.
    pub state: &'static str,
    /// Failure rate over the window's calls, percent.
    pub failure_rate_pct: f64,
    /// Slow-call rate over the window's calls, percent.
    pub slow_call_rate_pct: f64,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failed_calls: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `true` once the window holds enough calls for its rates to count.
    pub minimum_calls_reached: bool,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Calls refused since the breaker was built.
    pub not_permitted_calls: u64,
    /// Open: milliseconds until the next probe is admitted.
    pub next_probe_in_ms: Option<u64>,
    /// Half-open: the probes' figures.
    pub half_open: Option<ProbesView>,
    /// The effective settings.
    pub config: BreakerConfigView,
}

/// A half-open breaker's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProbesView {
    /// Probes admitted in this half-open period, at most.
    pub permitted: u32,
    /// Probes in flight.
    pub in_flight: u32,
    /// Probes completed and recorded.
    pub completed: u32,
    /// Of those, failed.
    pub failed: u32,
    /// Of those, slow.
    pub slow: u32,
}

/// A breaker's effective settings (the builder's, defaults filled in).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerConfigView {
    /// `count` or `time`.
    pub window: &'static str,
    /// Calls (count window) or seconds (time window).
    pub window_size: u64,
    /// Percent; `null` when failure-rate trips are off.
    pub failure_rate_threshold: Option<f64>,
    /// Calls this long or longer are slow; `null`: no slow-call detection.
    pub slow_call_duration_ms: Option<u64>,
    /// Percent.
    pub slow_call_rate_threshold: Option<f64>,
    /// Failures in a row that open the breaker.
    pub consecutive_failures: Option<u32>,
    /// Calls the window must hold before its rates are judged.
    pub minimum_calls: u32,
    /// The wait in the open state after the first trip.
    pub wait_in_open_ms: u64,
    /// The factor the wait grows by on each further trip.
    pub wait_in_open_multiplier: f64,
    /// The longest wait in the open state.
    pub max_wait_in_open_ms: u64,
    /// The random spread of each wait, a fraction.
    pub wait_in_open_jitter: f64,
    /// Probes admitted in the half-open state.
    pub permitted_calls_in_half_open: u32,
    /// How long probes may take to decide.
    pub max_wait_in_half_open_ms: u64,
}

impl BreakerView {
    /// The view of `snapshot`.
    #[must_use]
    pub fn of(snapshot: &CircuitBreakerSnapshot) -> Self {
        let c = &snapshot.config;
        let (window, window_size) = match c.sliding_window {
            SlidingWindow::Count(n) => ("count", u64::from(n)),
            SlidingWindow::Time(d) => ("time", d.as_secs()),
        };
        Self {
            name: snapshot.name.to_string(),
            state: snapshot.state.as_str(),
            failure_rate_pct: snapshot.failure_rate,
            slow_call_rate_pct: snapshot.slow_call_rate,
            calls: snapshot.calls,
            failed_calls: snapshot.failed_calls,
            slow_calls: snapshot.slow_calls,
            minimum_calls_reached: snapshot.minimum_calls_reached,
            consecutive_failures: snapshot.consecutive_failures,
            not_permitted_calls: snapshot.not_permitted_calls,
            next_probe_in_ms: snapshot.next_probe_in.map(millis),
            half_open: snapshot.half_open.map(|p| ProbesView {
                permitted: p.permitted,
                in_flight: p.in_flight,
                completed: p.completed,
                failed: p.failed,
                slow: p.slow,
            }),
            config: BreakerConfigView {
                window,
                window_size,
                failure_rate_threshold: c.failure_rate_threshold,
                slow_call_duration_ms: c.slow_call_duration.map(millis),
                slow_call_rate_threshold: c.slow_call_rate_threshold,
                consecutive_failures: c.consecutive_failures,
                minimum_calls: c.minimum_calls,
                wait_in_open_ms: millis(c.wait_in_open),
                wait_in_open_multiplier: c.wait_in_open_multiplier,
                max_wait_in_open_ms: millis(c.max_wait_in_open),
                wait_in_open_jitter: c.wait_in_open_jitter,
                permitted_calls_in_half_open: c.permitted_calls_in_half_open,
                max_wait_in_half_open_ms: millis(c.max_wait_in_half_open),
            },
        }
    }
}

/// The actions of `POST /admin/circuit-breakers/{name}/{action}`.
const BREAKER_ACTIONS: [&str; 7] = [
    "force-open",
    "open",
    "half-open",
    "close",
    "reset",
    "disable",
    "metrics-only",
];

fn apply_breaker_action(handle: &CircuitBreakerHandle, action: &str) -> bool {
    match action {
        "force-open" => handle.force_open(),
        "open" => handle.transition_to(BreakerState::Open),
        "half-open" => handle.half_open(),
        "close" | "reset" => handle.reset(),
        "disable" => handle.disable(),
        "metrics-only" => handle.metrics_only(),
        _ => return false,
    }
    true
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

fn breaker(state: &AppState, name: &str) -> Result<CircuitBreakerHandle, Box<Response>> {
    let registry = state.circuit_breakers();
    registry
        .get(name)
        .ok_or_else(|| Box::new(no_such("circuit breaker", name, &registry.names())))
}

async fn list_breakers(State(state): State<AppState>) -> Response {
    let views: Vec<BreakerView> = state
        .circuit_breakers()
        .snapshots()
        .iter()
        .map(BreakerView::of)
        .collect();
    axum::Json(serde_json::json!({ "circuit_breakers": views })).into_response()
}

async fn show_breaker(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match breaker(&state, &name) {
        Ok(h) => axum::Json(BreakerView::of(&h.snapshot())).into_response(),
        Err(res) => *res,
    }
}

async fn breaker_action(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let handle = match breaker(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    if !apply_breaker_action(&handle, &action) {
        return problem(
            StatusCode::NOT_FOUND,
            "no such action",
            format!(
                "`{action}` is not a circuit breaker action (known: {})",
                BREAKER_ACTIONS.join(", ")
            ),
        );
    }
    tracing::info!(breaker = %name, %action, state = handle.state().as_str(), "circuit breaker changed through the admin API");
    axum::Json(BreakerView::of(&handle.snapshot())).into_response()
}

// ===== bulkheads =====

/// A bulkhead as the admin API shows it: the crate's [`BulkheadSnapshot`]
/// as it is, with two fields in the names the `PATCH` body and the
/// dashboard use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BulkheadView {
    /// The bulkhead's own snapshot (`name`, `limit_mode`, `limit`,
    /// `in_flight`, `queued`, `rejected`, `max_wait`, `max_queue`,
    /// `partitioned`, `partitions`, `pools`, `settings`, ...).
    #[serde(flatten)]
    pub snapshot: BulkheadSnapshot,
    /// Calls waiting for a permit (the snapshot's `queued`).
    pub waiting: usize,
    /// How long a call may wait for a permit, ms; `null`: no deadline.
    pub max_wait_ms: Option<u64>,
}

impl BulkheadView {
    /// The view of `snapshot`.
    #[must_use]
    pub fn of(snapshot: BulkheadSnapshot) -> Self {
        Self {
            waiting: snapshot.queued,
            max_wait_ms: (snapshot.max_wait != Duration::MAX).then(|| millis(snapshot.max_wait)),
            snapshot,
        }
    }
}

/// The body of `PATCH /admin/bulkheads/{name}`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkheadPatch {
    /// The new permit limit (calls in flight finish; none is revoked).
    pub max_concurrent_calls: Option<usize>,
    /// How long a call may wait for a permit (0: refused at once).
    pub max_wait_ms: Option<u64>,
}

fn bulkhead(state: &AppState, name: &str) -> Result<BulkheadHandle, Box<Response>> {
    let registry = state.bulkheads();
    registry
        .get(name)
        .ok_or_else(|| Box::new(no_such("bulkhead", name, &registry.names())))
}

async fn list_bulkheads(State(state): State<AppState>) -> Response {
    let views: Vec<BulkheadView> = state
        .bulkheads()
        .snapshots()
        .into_iter()
        .map(BulkheadView::of)
        .collect();
    axum::Json(serde_json::json!({ "bulkheads": views })).into_response()
}

async fn show_bulkhead(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match bulkhead(&state, &name) {
        Ok(h) => axum::Json(BulkheadView::of(h.snapshot())).into_response(),
        Err(res) => *res,
    }
}

async fn patch_bulkhead(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<axum::Json<BulkheadPatch>, JsonRejection>,
) -> Response {
    let handle = match bulkhead(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    let patch = match body {
        Ok(axum::Json(p)) => p,
        Err(rejection) => {
            return problem(
                rejection.status(),
                "bad bulkhead settings",
                rejection.body_text(),
            );
        }
    };
    if let Some(limit) = patch.max_concurrent_calls
        && let Err(err) = handle.set_limit(limit)
    {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad bulkhead settings",
            err.to_string(),
        );
    }
    if let Some(ms) = patch.max_wait_ms {
        handle.set_max_wait(Duration::from_millis(ms));
    }
    tracing::info!(bulkhead = %name, ?patch, "bulkhead changed through the admin API");
    axum::Json(BulkheadView::of(handle.snapshot())).into_response()
}

// ===== retries =====

/// Every upstream's retry layer, by the crate's own [`RetrySnapshot`]: its
/// settings in force and what its budget holds.
fn retry_snapshots(state: &AppState) -> Vec<RetrySnapshot> {
    state
        .upstreams()
        .filter_map(|up| up.layers().retry())
        .map(|h| h.snapshot())
        .collect()
}

async fn list_retries(State(state): State<AppState>) -> Response {
    axum::Json(serde_json::json!({ "retries": retry_snapshots(&state) })).into_response()
}

async fn show_retry(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let snapshots = retry_snapshots(&state);
    match snapshots.iter().find(|s| *s.name == *name) {
        Some(s) => axum::Json(s).into_response(),
        None => {
            let known: Vec<String> = snapshots.iter().map(|s| s.name.to_string()).collect();
            no_such("retry layer", &name, &known)
        }
    }
}

// ===== chaos =====

/// The largest added latency the chaos API accepts, in milliseconds (one
/// minute): past every sensible timeout, a longer delay only looks like a
/// call that never answers, which `abort_rate` already injects.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// A refused chaos change: the `PATCH` field at fault and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChaosPatchError {
    /// The field, as written in the `PATCH` body.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: String,
}

impl ChaosPatchError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ChaosPatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

impl std::error::Error for ChaosPatchError {}

/// The body of `PATCH /admin/chaos/{backend}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosPatch {
    /// Injection on or off.
    pub enabled: Option<bool>,
    /// Outage on or off.
    pub outage: Option<bool>,
    /// Fraction of calls failed with 500.
    pub error_rate: Option<f64>,
    /// Fraction of calls never answered.
    pub abort_rate: Option<f64>,
    /// Fraction of calls delayed.
    pub latency_rate: Option<f64>,
    /// Exact added latency, ms.
    pub latency_ms: Option<u64>,
    /// Least added latency, ms.
    pub latency_min_ms: Option<u64>,
    /// Most added latency, ms.
    pub latency_max_ms: Option<u64>,
}

impl ChaosPatch {
    /// `current` with this patch applied. A latency given without a rate
    /// applies to every call (`latency_rate` 1), or, when the resulting
    /// latency is zero, turns latency injection off (`latency_rate` 0).
    ///
    /// # Errors
    ///
    /// The first field at fault: `latency_ms` given with
    /// `latency_min_ms`/`latency_max_ms`; a latency above
    /// [`MAX_LATENCY_MS`]; a rate outside `[0, 1]`; `latency_min_ms` above
    /// `latency_max_ms` (after the patch).
    pub fn apply_to(&self, mut s: ChaosSettings) -> Result<ChaosSettings, ChaosPatchError> {
        if self.latency_ms.is_some()
            && (self.latency_min_ms.is_some() || self.latency_max_ms.is_some())
        {
            return Err(ChaosPatchError::new(
                "latency_ms",
                "is given with `latency_min_ms`/`latency_max_ms`: give one or the other",
            ));
        }
        for (field, ms) in [
            ("latency_ms", self.latency_ms),
            ("latency_min_ms", self.latency_min_ms),
            ("latency_max_ms", self.latency_max_ms),
        ] {
            if let Some(ms) = ms.filter(|ms| *ms > MAX_LATENCY_MS) {
                return Err(ChaosPatchError::new(
                    field,
                    format!("must be at most {MAX_LATENCY_MS} (one minute), got {ms}"),
                ));
            }
        }
        for (field, rate) in [
            ("error_rate", self.error_rate),
            ("abort_rate", self.abort_rate),
            ("latency_rate", self.latency_rate),
        ] {
            if let Some(rate) = rate.filter(|r| !(0.0..=1.0).contains(r)) {
                return Err(ChaosPatchError::new(
                    field,
                    format!("must be a fraction in [0, 1], got {rate}"),
                ));
            }
        }
        if let Some(v) = self.enabled {
            s.enabled = v;
        }
        if let Some(v) = self.outage {
            s.outage = v;
        }
        if let Some(v) = self.error_rate {
            s.error_rate = v;
        }
        if let Some(v) = self.abort_rate {
            s.abort_rate = v;
        }
        let latency_given = self.latency_ms.is_some()
            || self.latency_min_ms.is_some()
            || self.latency_max_ms.is_some();
        if let Some(ms) = self.latency_ms {
            s.latency_min = Duration::from_millis(ms);
            s.latency_max = Duration::from_millis(ms);
        }
        if let Some(ms) = self.latency_min_ms {
            s.latency_min = Duration::from_millis(ms);
        }
        if let Some(ms) = self.latency_max_ms {
            s.latency_max = Duration::from_millis(ms);
        }
        if s.latency_min > s.latency_max {
            let field = if self.latency_min_ms.is_some() {
                "latency_min_ms"
            } else {
                "latency_max_ms"
            };
            return Err(ChaosPatchError::new(
                field,
                format!(
                    "would put the least latency ({} ms) above the most ({} ms)",
                    s.latency_min.as_millis(),
                    s.latency_max.as_millis()
                ),
            ));
        }
        match self.latency_rate {
            Some(rate) => s.latency_rate = rate,
            // No latency to add: injection off, rather than "every call
            // delayed by nothing".
            None if latency_given && s.latency_max.is_zero() => s.latency_rate = 0.0,
            None if latency_given && s.latency_rate == 0.0 => s.latency_rate = 1.0,
            None => {}
        }
        Ok(s)
    }
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

fn backend_view(state: &AppState, name: &str) -> Result<ChaosView, Box<Response>> {
    match state.inner.backends.get(name) {
        Some(b) => Ok(ChaosView::of(name, &b.addr.to_string(), &b.chaos)),
        None => Err(Box::new(problem(
            StatusCode::NOT_FOUND,
            "no such backend",
            format!(
                "no demo backend named `{name}` (known: {})",
                state
                    .inner
                    .backends
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))),
    }
}

async fn list(State(state): State<AppState>) -> Response {
    let views: Vec<ChaosView> = state
        .inner
        .backends
        .iter()
        .map(|(name, b)| ChaosView::of(name, &b.addr.to_string(), &b.chaos))
        .collect();
    axum::Json(serde_json::json!({ "backends": views })).into_response()
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match backend_view(&state, &name) {
        Ok(v) => axum::Json(v).into_response(),
        Err(res) => *res,
    }
}

async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<axum::Json<ChaosPatch>, JsonRejection>,
) -> Response {
    let Some(backend) = state.inner.backends.get(&name) else {
        return backend_view(&state, &name)
            .err()
            .map_or_else(|| StatusCode::NOT_FOUND.into_response(), |res| *res);
    };
    let patch = match body {
        Ok(axum::Json(p)) => p,
        Err(rejection) => {
            return problem(
                rejection.status(),
                "bad chaos settings",
                rejection.body_text(),
            );
        }
    };
    let settings = match patch.apply_to(backend.chaos.settings()) {
        Ok(s) => s,
        Err(err) => return bad_chaos_settings(err.field, err.to_string()),
    };
    if let Err(err) = backend.chaos.apply(settings) {
        return bad_chaos_settings(err.field(), err.to_string());
    }
    tracing::info!(backend = %name, ?settings, "chaos settings changed through the admin API");
    axum::Json(ChaosView::of(
        &name,
        &backend.addr.to_string(),
        &backend.chaos,
    ))
    .into_response()
}

/// `422` for a chaos change refused because of `field`.
fn bad_chaos_settings(field: &str, detail: String) -> Response {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "bad chaos settings")
        .detail(detail)
        .extension("field", field)
        .into_response()
}

async fn reset(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.inner.backends.get(&name) {
        Some(b) => {
            b.chaos.reset();
            axum::Json(ChaosView::of(&name, &b.addr.to_string(), &b.chaos)).into_response()
        }
        None => backend_view(&state, &name)
            .err()
            .map_or_else(|| StatusCode::NOT_FOUND.into_response(), |res| *res),
    }
}

async fn admin_not_found(req: Request) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not found",
        format!("no admin endpoint {} {}", req.method(), req.uri().path()),
    )
}

/// The admin routes, to nest under `/admin`.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/circuit-breakers", get(list_breakers))
        .route("/circuit-breakers/{name}", get(show_breaker))
        .route("/circuit-breakers/{name}/{action}", post(breaker_action))
        .route("/bulkheads", get(list_bulkheads))
        .route(
            "/bulkheads/{name}",
            get(show_bulkhead).patch(patch_bulkhead),
        )
        .route("/retries", get(list_retries))
        .route("/retries/{name}", get(show_retry))
        .route("/chaos", get(list))
        .route("/chaos/{backend}", get(show).patch(patch))
        .route("/chaos/{backend}/reset", post(reset))
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

    #[test]
    fn a_latency_without_a_rate_applies_to_every_call() {
        let patch = ChaosPatch {
            latency_ms: Some(200),
            ..ChaosPatch::default()
        };
        let s = patch.apply_to(ChaosSettings::default()).unwrap();
        assert_eq!(s.latency_min, Duration::from_millis(200));
        assert_eq!(s.latency_max, Duration::from_millis(200));
        assert_eq!(s.latency_rate, 1.0);
        let both = ChaosPatch {
            latency_ms: Some(1),
            latency_max_ms: Some(2),
            ..ChaosPatch::default()
        };
        assert!(both.apply_to(ChaosSettings::default()).is_err());
    }

    #[test]
    fn a_zero_latency_turns_latency_injection_off() {
        let zero = ChaosPatch {
            latency_ms: Some(0),
            ..ChaosPatch::default()
        };
        let s = zero.apply_to(ChaosSettings::default()).unwrap();
        assert_eq!(s.latency_max, Duration::ZERO);
        assert_eq!(s.latency_rate, 0.0, "no latency, no injection");
        // From a latency in force: back to none.
        let delayed = ChaosSettings {
            latency_min: Duration::from_millis(100),
            latency_max: Duration::from_millis(100),
            latency_rate: 0.5,
            ..ChaosSettings::default()
        };
        let s = zero.apply_to(delayed).unwrap();
        assert_eq!((s.latency_max, s.latency_rate), (Duration::ZERO, 0.0));
        // A rate given with it is kept (it applies to a later latency).
        let with_rate = ChaosPatch {
            latency_ms: Some(0),
            latency_rate: Some(0.25),
            ..ChaosPatch::default()
        };
        assert_eq!(
            with_rate
                .apply_to(ChaosSettings::default())
                .unwrap()
                .latency_rate,
            0.25
        );
        // Other knobs leave the latency rate alone.
        let errors = ChaosPatch {
            error_rate: Some(0.5),
            ..ChaosPatch::default()
        };
        assert_eq!(errors.apply_to(delayed).unwrap().latency_rate, 0.5);
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_field() {
        let refused = |patch: ChaosPatch| patch.apply_to(ChaosSettings::default()).unwrap_err();
        let at_most = ChaosPatch {
            latency_ms: Some(MAX_LATENCY_MS),
            ..ChaosPatch::default()
        };
        assert!(at_most.apply_to(ChaosSettings::default()).is_ok());
        for (patch, field) in [
            (
                ChaosPatch {
                    latency_ms: Some(MAX_LATENCY_MS + 1),
                    ..ChaosPatch::default()
                },
                "latency_ms",
            ),
            (
                ChaosPatch {
                    latency_ms: Some(u64::MAX),
                    ..ChaosPatch::default()
                },
                "latency_ms",
            ),
            (
                ChaosPatch {
                    latency_min_ms: Some(1),
                    latency_max_ms: Some(u64::MAX),
                    ..ChaosPatch::default()
                },
                "latency_max_ms",
            ),
            (
                ChaosPatch {
                    latency_min_ms: Some(70_000),
                    ..ChaosPatch::default()
                },
                "latency_min_ms",
            ),
            (
                ChaosPatch {
                    latency_min_ms: Some(500),
                    latency_max_ms: Some(100),
                    ..ChaosPatch::default()
                },
                "latency_min_ms",
            ),
            (
                ChaosPatch {
                    error_rate: Some(1.5),
                    ..ChaosPatch::default()
                },
                "error_rate",
            ),
            (
                ChaosPatch {
                    abort_rate: Some(-0.1),
                    ..ChaosPatch::default()
                },
                "abort_rate",
            ),
            (
                ChaosPatch {
                    latency_rate: Some(2.0),
                    ..ChaosPatch::default()
                },
                "latency_rate",
            ),
        ] {
            let err = refused(patch);
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().starts_with(&format!("`{field}` ")), "{err}");
        }
    }
}
