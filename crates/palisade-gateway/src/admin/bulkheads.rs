//! `/admin/bulkheads`: every bulkhead's snapshot; `PATCH` resizes one.

use super::*;

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

/// `/admin/bulkheads...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/bulkheads", get(list_bulkheads))
        .route(
            "/bulkheads/{name}",
            get(show_bulkhead).patch(patch_bulkhead),
        )
}
