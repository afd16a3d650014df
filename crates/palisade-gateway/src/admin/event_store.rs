//! `/admin/event-store` and `/admin/projections`: the accounts' event store
//! and its projections, as the crates' own snapshots (`EventStoreSnapshot`,
//! `ProjectionSnapshot`), the breaker in front of the accounts' commands
//! (as `/admin/circuit-breakers` shows a breaker), and each projection's
//! parked events
//! (`ParkedEvent`, at most [`MAX_PARKED`] each).

use super::*;

/// The most parked events listed per projection.
pub const MAX_PARKED: usize = 100;

async fn event_store(State(state): State<AppState>) -> Response {
    let stores = state
        .accounts()
        .map(|a| a.stores().snapshots())
        .unwrap_or_default();
    let breaker = state
        .accounts()
        .map(|a| BreakerView::of(a.breaker().snapshot()));
    axum::Json(serde_json::json!({ "event_stores": stores, "command_breaker": breaker }))
        .into_response()
}

async fn projections(State(state): State<AppState>) -> Response {
    let mut out = Vec::new();
    if let Some(accounts) = state.accounts() {
        for handle in [accounts.projection()] {
            let parked = match handle.parked(MAX_PARKED).await {
                Ok(parked) => serde_json::to_value(parked).unwrap_or_default(),
                Err(err) => serde_json::json!({ "error": err.to_string() }),
            };
            out.push(serde_json::json!({
                "projection": handle.snapshot(),
                "parked": parked,
            }));
        }
    }
    axum::Json(serde_json::json!({ "projections": out })).into_response()
}

/// `/admin/event-store`, `/admin/projections`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/event-store", get(event_store))
        .route("/projections", get(projections))
}
