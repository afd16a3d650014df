//! `/admin/rate-limits`: every rate limiter's snapshot (the `/api` limiter
//! of `[rate_limit]`, named `api`); its limits changed at runtime through
//! the crate's handle.
//!
//! | request | what |
//! |---|---|
//! | `GET /admin/rate-limits` | `{"rate_limits": [RateLimitSnapshot, ...]}` |
//! | `GET /admin/rate-limits/{name}` | one limiter's `RateLimitSnapshot`: backend, keys, tiers with their limits and counts, the Redis figures |
//! | `PUT /admin/rate-limits/{name}/tiers/{tier}` | `{"rate": "10/s", "burst": 20}`: sets the tier's limit (adds the tier if new); answers the snapshot |
//! | `PATCH /admin/rate-limits/{name}` | `{"max_delay_ms": n}`: how long a call over the limit may wait for its slot (0: refused at once) |
//! | `PUT /admin/rate-limits/{name}/key-tiers/{key}` | `{"tier": "paid"}`: assigns an API key (or a client IP address) to a tier |
//! | `DELETE /admin/rate-limits/{name}/key-tiers/{key}` | removes that assignment |
//!
//! A change takes effect on the next request; keys keep what they have
//! spent, measured against the new limit. Bad input is a problem: `400` for
//! a body that is not JSON, `422` for one that does not fit (an unknown
//! field, a rate like `"fast"`) or that the crate refuses (a burst of 0, a
//! tier that does not exist), `404` for a limiter that does not exist.
//! The snapshot names tiers, never keys.

use palisade::rate_limit::{Limit, RateLimitHandle, RateLimitSnapshot};

use super::*;

fn limiter(state: &AppState, name: &str) -> Result<RateLimitHandle, Box<Response>> {
    let registry = state.rate_limits();
    registry.get(name).ok_or_else(|| {
        let known = registry.names();
        Box::new(problem(
            StatusCode::NOT_FOUND,
            "no such rate limiter",
            format!(
                "no rate limiter named `{name}` (known: {})",
                if known.is_empty() {
                    "none: the config has no [rate_limit]".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ))
    })
}

fn bad_body(rejection: &JsonRejection) -> Response {
    problem(
        rejection.status(),
        "bad rate limit settings",
        rejection.body_text(),
    )
}

fn refused(err: &palisade::ConfigError) -> Response {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "bad rate limit settings")
        .detail(err.to_string())
        .extension("field", err.field())
        .into_response()
}

fn view(handle: &RateLimitHandle) -> Response {
    axum::Json::<RateLimitSnapshot>(handle.snapshot()).into_response()
}

async fn list(State(state): State<AppState>) -> Response {
    let snapshots = state.rate_limits().snapshots();
    axum::Json(serde_json::json!({ "rate_limits": snapshots })).into_response()
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match limiter(&state, &name) {
        Ok(h) => view(&h),
        Err(res) => *res,
    }
}

async fn put_tier(
    State(state): State<AppState>,
    Path((name, tier)): Path<(String, String)>,
    body: Result<axum::Json<Limit>, JsonRejection>,
) -> Response {
    let handle = match limiter(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    let limit = match body {
        Ok(axum::Json(limit)) => limit,
        Err(rejection) => return bad_body(&rejection),
    };
    if let Err(err) = handle.set_limit(&tier, limit) {
        return refused(&err);
    }
    tracing::info!(rate_limit = %name, tier = %tier, rate = %limit.rate, burst = limit.burst, "rate limit changed through the admin API");
    view(&handle)
}

/// The body of `PATCH /admin/rate-limits/{name}`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPatch {
    /// How long a call over the limit may wait for its slot, ms (0: refused
    /// at once).
    pub max_delay_ms: Option<u64>,
}

async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<axum::Json<RateLimitPatch>, JsonRejection>,
) -> Response {
    let handle = match limiter(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    let patch = match body {
        Ok(axum::Json(p)) => p,
        Err(rejection) => return bad_body(&rejection),
    };
    let max_delay = patch.max_delay_ms.map(Duration::from_millis);
    if let Some(d) = max_delay
        && let Err(err) = handle.set_max_delay(d)
    {
        return refused(&err);
    }
    tracing::info!(rate_limit = %name, ?max_delay, "rate limit changed through the admin API");
    view(&handle)
}

/// The body of `PUT /admin/rate-limits/{name}/key-tiers/{key}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyTierBody {
    /// The tier the key is assigned to.
    pub tier: String,
}

async fn put_key_tier(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    body: Result<axum::Json<KeyTierBody>, JsonRejection>,
) -> Response {
    let handle = match limiter(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    let body = match body {
        Ok(axum::Json(b)) => b,
        Err(rejection) => return bad_body(&rejection),
    };
    match handle.set_key_tier(&key, Some(&body.tier)) {
        // The key is not logged: keys can be secrets.
        Ok(_) => {
            tracing::info!(rate_limit = %name, tier = %body.tier, "a key was assigned a tier through the admin API");
            view(&handle)
        }
        Err(err) => refused(&err),
    }
}

async fn delete_key_tier(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
) -> Response {
    let handle = match limiter(&state, &name) {
        Ok(h) => h,
        Err(res) => return *res,
    };
    match handle.set_key_tier(&key, None) {
        Ok(true) => view(&handle),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            "no such key assignment",
            "that key is not assigned a tier",
        ),
        Err(err) => refused(&err),
    }
}

/// `/admin/rate-limits...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/rate-limits", get(list))
        .route("/rate-limits/{name}", get(show).patch(patch))
        .route(
            "/rate-limits/{name}/tiers/{tier}",
            axum::routing::put(put_tier),
        )
        .route(
            "/rate-limits/{name}/key-tiers/{key}",
            axum::routing::put(put_key_tier).delete(delete_key_tier),
        )
}
