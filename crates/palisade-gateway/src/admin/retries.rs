//! `/admin/retries`: every upstream's retry layer, as the retry crate's
//! own snapshot.

use super::*;

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

/// `/admin/retries...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/retries", get(list_retries))
        .route("/retries/{name}", get(show_retry))
}
