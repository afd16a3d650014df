//! `/admin/hedges`: every upstream's hedge layer, as the hedge crate's own
//! snapshot: its delay now, hedges sent and won, and its budget.

use palisade::hedge::HedgeSnapshot;

use super::*;

/// Every upstream's hedge layer, by the crate's own [`HedgeSnapshot`].
fn hedge_snapshots(state: &AppState) -> Vec<HedgeSnapshot> {
    state
        .upstreams()
        .filter_map(|up| up.layers().hedge())
        .map(|h| h.snapshot())
        .collect()
}

async fn list_hedges(State(state): State<AppState>) -> Response {
    axum::Json(serde_json::json!({ "hedges": hedge_snapshots(&state) })).into_response()
}

/// `/admin/hedges`.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/hedges", get(list_hedges))
}
