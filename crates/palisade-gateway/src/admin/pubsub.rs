//! `/admin/pubsub`: the events feature's snapshot (message counts, each
//! consumer's figures and lag, the latest dead letters with their reason),
//! and the notification handler's chaos knob.

use super::*;
use crate::pubsub::{PubSub, PubSubSnapshot};

fn pubsub_off() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "pubsub is off",
        "the config has no (enabled) `[pubsub]` section",
    )
}

fn with_pubsub(state: &AppState, f: impl FnOnce(&PubSub) -> Response) -> Response {
    state.pubsub().map_or_else(pubsub_off, f)
}

async fn show(State(state): State<AppState>) -> Response {
    with_pubsub(&state, |p| {
        let snapshot: PubSubSnapshot = p.snapshot();
        axum::Json(snapshot).into_response()
    })
}

/// `PATCH /admin/pubsub/notification/chaos`: the fields of
/// `PATCH /admin/chaos/{backend}` ([`ChaosPatch`]); `{"error_rate": 1}`
/// makes every notification fail.
async fn patch_chaos(
    State(state): State<AppState>,
    body: Result<axum::Json<ChaosPatch>, JsonRejection>,
) -> Response {
    with_pubsub(&state, |p| {
        let patch = match body {
            Ok(axum::Json(patch)) => patch,
            Err(rejection) => {
                return problem(
                    rejection.status(),
                    "bad chaos settings",
                    rejection.body_text(),
                );
            }
        };
        let chaos = p.notification_chaos();
        let settings = match patch.apply_to(chaos.settings()) {
            Ok(s) => s,
            Err(err) => return chaos::bad_chaos_settings(err.field, err.to_string()),
        };
        if let Err(err) = chaos.apply(settings) {
            return chaos::bad_chaos_settings(err.field(), err.to_string());
        }
        tracing::info!(
            ?settings,
            "notification handler chaos changed through the admin API"
        );
        axum::Json(chaos.snapshot()).into_response()
    })
}

async fn reset_chaos(State(state): State<AppState>) -> Response {
    with_pubsub(&state, |p| {
        p.notification_chaos().reset();
        axum::Json(p.notification_chaos().snapshot()).into_response()
    })
}

/// `/admin/pubsub...`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/pubsub", get(show))
        .route(
            "/pubsub/notification/chaos",
            axum::routing::patch(patch_chaos),
        )
        .route("/pubsub/notification/chaos/reset", post(reset_chaos))
}
