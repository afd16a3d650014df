//! `/admin/fallbacks`: the aggregator branches' fallbacks, as the fallback
//! crate's own snapshot: the classes each answers and how many it answered,
//! by class.

use super::*;

async fn list_fallbacks(State(state): State<AppState>) -> Response {
    axum::Json(serde_json::json!({ "fallbacks": state.fallbacks().snapshots() })).into_response()
}

/// `/admin/fallbacks`.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/fallbacks", get(list_fallbacks))
}
