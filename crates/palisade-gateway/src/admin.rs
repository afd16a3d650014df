//! The admin API under `/admin`, guarded by a bearer token.
//!
//! | request | what |
//! |---|---|
//! | `GET /admin/chaos` | every demo backend's chaos settings and injected counts |
//! | `GET /admin/chaos/{backend}` | one backend's |
//! | `PATCH /admin/chaos/{backend}` | change some settings (JSON, fields below); answers the new state |
//! | `POST /admin/chaos/{backend}/reset` | back to the settings it started with |
//!
//! `PATCH` fields, all optional: `enabled` (bool), `outage` (bool),
//! `error_rate`, `abort_rate`, `latency_rate` (fractions in `[0, 1]`),
//! `latency_ms` (exact added latency) or `latency_min_ms` with
//! `latency_max_ms` (a uniform range). Setting a latency without a rate
//! applies it to every call (`latency_rate` 1).
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
use palisade_chaos::{ChaosHandle, ChaosSettings};
use palisade_core::http::Problem;
use serde::{Deserialize, Serialize};

use crate::errors::problem;
use crate::state::AppState;

/// A chaos layer's state as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChaosView {
    /// The demo backend.
    pub backend: String,
    /// Its address.
    pub addr: String,
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
    /// Faults injected so far, by kind.
    pub injected: InjectedView,
}

/// Injected fault counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct InjectedView {
    /// Delayed calls.
    pub latency: u64,
    /// Calls failed by the error rate.
    pub error: u64,
    /// Calls never answered.
    pub abort: u64,
    /// Calls failed by an outage.
    pub outage: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ChaosView {
    /// The view of `handle`, the chaos layer of `backend` at `addr`.
    #[must_use]
    pub fn of(backend: &str, addr: &str, handle: &ChaosHandle) -> Self {
        let s = handle.settings();
        let i = handle.injected();
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
            injected: InjectedView {
                latency: i.latency,
                error: i.error,
                abort: i.abort,
                outage: i.outage,
            },
        }
    }
}

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
    /// `current` with this patch applied.
    ///
    /// # Errors
    ///
    /// `latency_ms` given with `latency_min_ms`/`latency_max_ms`.
    pub fn apply_to(&self, mut s: ChaosSettings) -> Result<ChaosSettings, String> {
        if self.latency_ms.is_some()
            && (self.latency_min_ms.is_some() || self.latency_max_ms.is_some())
        {
            return Err(
                "give either `latency_ms` or `latency_min_ms`/`latency_max_ms`, not both"
                    .to_owned(),
            );
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
        match self.latency_rate {
            Some(rate) => s.latency_rate = rate,
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
        Err(reason) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad chaos settings",
                reason,
            );
        }
    };
    if let Err(err) = backend.chaos.apply(settings) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad chaos settings",
            err.to_string(),
        );
    }
    tracing::info!(backend = %name, ?settings, "chaos settings changed through the admin API");
    axum::Json(ChaosView::of(
        &name,
        &backend.addr.to_string(),
        &backend.chaos,
    ))
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

/// The admin routes, to nest under `/admin`. Admin endpoints for breakers
/// and bulkheads are added here.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
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
}
