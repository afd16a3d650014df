//! `/admin/deadlines`: the deadline layers, as the deadline crate's own
//! snapshot: the one every route has (`gateway`, `[deadline]`) and each
//! upstream's overall timeout, with their budgets and expiries.

use super::*;

async fn list_deadlines(State(state): State<AppState>) -> Response {
    axum::Json(serde_json::json!({ "deadlines": state.deadlines().snapshots() })).into_response()
}

/// `/admin/deadlines`.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/deadlines", get(list_deadlines))
}
