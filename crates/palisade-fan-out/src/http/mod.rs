//! HTTP integration (feature `http`): build each branch's request from the
//! incoming one, read each branch's answer as JSON, answer the gather as a
//! JSON response that says whether it is complete.
//!
//! - [`Route`] and [`Target`]: `/api/dashboard/user/{id}` in,
//!   `http://orders:8080/users/{id}/orders` out, with the method and chosen
//!   headers forwarded ([`Branch::http`](crate::Branch::http)).
//! - [`ParseJson`] / [`ParseJsonLayer`]: a branch stack's HTTP response as a
//!   [`serde_json::Value`], with a status check and a body size limit.
//! - [`JsonResponse`]: the merge; `200` with [`COMPLETED_HEADER`] and
//!   `Cache-Control: no-store` when incomplete, problem+json when the gather
//!   failed, never an error.
//! - [`error_response`]: the same failure responses for other merges.

use http::HeaderName;

mod json;
mod response;
mod template;

pub use json::{
    BodyTooLarge, DEFAULT_BODY_LIMIT, InvalidJson, ParseJson, ParseJsonFuture, ParseJsonLayer,
    UnexpectedStatus,
};
pub use response::{JsonResponse, error_response};
pub use template::{RequestError, Route, Target};

use crate::error::BranchErrorKind;

/// `x-palisade-completed`: `true` when every branch answered, `false` when
/// the answer is partial (some branch missing or on its fallback) or failed.
pub const COMPLETED_HEADER: HeaderName = HeaderName::from_static("x-palisade-completed");

/// The kind of an HTTP branch failure, from the error chain.
pub(crate) fn classify(
    cause: &(dyn std::error::Error + 'static),
) -> Option<(BranchErrorKind, Option<u16>)> {
    use palisade_core::{cause_ref, is_caused_by};
    if let Some(unexpected) = cause_ref::<UnexpectedStatus>(cause) {
        return Some((BranchErrorKind::Status, Some(unexpected.status().as_u16())));
    }
    if is_caused_by::<InvalidJson>(cause) || is_caused_by::<BodyTooLarge>(cause) {
        return Some((BranchErrorKind::InvalidResponse, None));
    }
    if is_caused_by::<RequestError>(cause) {
        return Some((BranchErrorKind::Request, None));
    }
    None
}
