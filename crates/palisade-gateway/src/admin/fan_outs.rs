//! `/admin/fan-outs`: the aggregator's fan-out, as the fan-out crate's own
//! snapshot (its settings and its branches').

use super::*;

async fn list_fan_outs(State(state): State<AppState>) -> Response {
    axum::Json(serde_json::json!({ "fan_outs": state.fan_outs().snapshots() })).into_response()
}

/// `/admin/fan-outs`.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/fan-outs", get(list_fan_outs))
}
