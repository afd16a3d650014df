//! `POST /api/orders`: the demo order service's write side. Places an order
//! and publishes `orders.placed` ([`crate::pubsub`]); answers `202 Accepted`
//! once the bus has taken the event.
//!
//! Body: `{"user_id": 7, "items": [{"product_id": 3, "quantity": 2}]}`
//! (1 to [`MAX_LINES`] lines, quantities 1 to [`MAX_QUANTITY`]). The event's
//! correlation id is the request's `x-request-id`. Answers: `202` with
//! `order_id`, `message_id`, `subject` and `correlation_id`; `400`/`422`
//! for a bad body; `404` when `[pubsub]` is off; `503` (with
//! `Retry-After`) when the bus does not take the event in time.

use axum::Router;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade::http::Problem;
use serde::Deserialize;

use crate::proxy::errors::problem;
use crate::pubsub::{EventError, ORDERS_PLACED, OrderLine, OrderPlaced};
use crate::shared::X_REQUEST_ID;
use crate::state::AppState;

/// The route.
pub(crate) const ORDERS_ROUTE: &str = "/api/orders";

/// The most lines an order may have.
pub(crate) const MAX_LINES: usize = 50;

/// The largest quantity of a line.
pub(crate) const MAX_QUANTITY: u32 = 100;

/// The body of `POST /api/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrder {
    user_id: u64,
    items: Vec<OrderLine>,
}

fn unprocessable(field: &'static str, detail: String) -> Response {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "bad order")
        .detail(detail)
        .extension("field", field)
        .into_response()
}

fn check(order: &PlaceOrder) -> Result<(), Box<Response>> {
    if order.user_id == 0 {
        return Err(Box::new(unprocessable(
            "user_id",
            "must be at least 1".to_owned(),
        )));
    }
    if order.items.is_empty() || order.items.len() > MAX_LINES {
        return Err(Box::new(unprocessable(
            "items",
            format!(
                "must have 1 to {MAX_LINES} lines, got {}",
                order.items.len()
            ),
        )));
    }
    for line in &order.items {
        if line.product_id == 0 {
            return Err(Box::new(unprocessable(
                "items.product_id",
                "must be at least 1".to_owned(),
            )));
        }
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            return Err(Box::new(unprocessable(
                "items.quantity",
                format!("must be 1 to {MAX_QUANTITY}, got {}", line.quantity),
            )));
        }
    }
    Ok(())
}

async fn place(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::Json<PlaceOrder>, JsonRejection>,
) -> Response {
    let Some(pubsub) = state.pubsub() else {
        return problem(
            StatusCode::NOT_FOUND,
            "order events are off",
            "placing orders publishes an event: the config has no (enabled) `[pubsub]` section"
                .to_owned(),
        );
    };
    let order = match body {
        Ok(axum::Json(order)) => order,
        Err(rejection) => {
            return problem(rejection.status(), "bad order", rejection.body_text());
        }
    };
    if let Err(res) = check(&order) {
        return *res;
    }
    let request_id = headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok());
    let order_id = format!("order-{:016x}", fastrand::u64(..));
    let event = OrderPlaced {
        order_id: order_id.clone(),
        user_id: order.user_id,
        items: order.items,
        placed_at_ms: crate::pubsub::now_ms(),
    };
    match pubsub
        .events()
        .publish_json(ORDERS_PLACED, &order_id, request_id, &event)
        .await
    {
        Ok(message) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "order_id": order_id,
                "message_id": message.id(),
                "subject": message.subject(),
                "correlation_id": message.correlation_id(),
            })),
        )
            .into_response(),
        Err(EventError::Invalid(e)) => problem(
            StatusCode::BAD_REQUEST,
            "bad order",
            format!("the order cannot be published: {e}"),
        ),
        Err(EventError::Publish(e)) => {
            let mut res = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "order not placed",
                format!("the event bus did not take the order: {e}"),
            );
            if e.is_transient() {
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            res
        }
    }
}

/// `POST /api/orders`.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route(ORDERS_ROUTE, post(place))
}
