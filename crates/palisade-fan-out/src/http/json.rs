//! [`ParseJson`]: turns an HTTP client's response into a JSON value, with a
//! status check and a body size limit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BodyTooLarge, InvalidJson, UnexpectedStatus};

/// The default body size limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

// ===== ParseJsonLayer =====

/// Wraps an HTTP service in [`ParseJson`]: one layer per branch stack, outside
/// the branch's breaker and retry so they see the HTTP status.
#[derive(Clone, Copy, Debug)]
pub struct ParseJsonLayer {
    limit: usize,
}

impl ParseJsonLayer {
    /// Bodies up to [`DEFAULT_BODY_LIMIT`].
    #[must_use]
    pub const fn new() -> Self {
        Self {
            limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Bodies up to `bytes`; a larger one is an
    /// [`invalid_response`](crate::BranchErrorKind::InvalidResponse).
    #[must_use]
    pub const fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }
}

impl Default for ParseJsonLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ParseJsonLayer {
    type Service = ParseJson<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ParseJson::new(inner, self.limit)
    }
}

// ===== ParseJson =====

/// An HTTP service whose answer is a [`serde_json::Value`]: a branch of a JSON
/// fan-out.
///
/// - A status other than 2xx is an [`UnexpectedStatus`] error (the body is
///   not read); `204 No Content` is `null`.
/// - A `content-type` that is not JSON (`application/json` or `+json`) is an
///   [`InvalidJson`] error; without a `content-type`, the body is parsed.
/// - A body over the limit (by `content-length`, or while reading) is a
///   [`BodyTooLarge`] error; a body that is not valid JSON is [`InvalidJson`].
///
/// None of these panics; in a fan-out each is the branch's failure, with
/// reason `status` or `invalid_response` in the account.
#[derive(Clone, Debug)]
pub struct ParseJson<S> {
    inner: S,
    limit: usize,
}

impl<S> ParseJson<S> {
    /// Wraps `inner`, reading bodies up to `limit` bytes.
    pub const fn new(inner: S, limit: usize) -> Self {
        Self { inner, limit }
    }
}

palisade_core::inner_service! {
    ParseJson<S> { inner: S }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ParseJson<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Value;
    type Error = BoxError;
    type Future = ParseJsonFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ParseJsonFuture {
            state: State::Calling {
                future: self.inner.call(request),
                limit: self.limit,
            },
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        Calling { #[pin] future: F, limit: usize },
        Collecting { #[pin] collect: Collect<Limited<B>>, limit: usize },
    }
}

pin_project! {
    /// The response future of [`ParseJson`].
    pub struct ParseJsonFuture<F, B>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<F, B>,
    }
}

impl<F, B> fmt::Debug for ParseJsonFuture<F, B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParseJsonFuture").finish_non_exhaustive()
    }
}

fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<F, B, E> Future for ParseJsonFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Value, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Calling { future, limit } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let limit = *limit;
                    let (parts, body) = response.into_parts();
                    if !parts.status.is_success() {
                        return Poll::Ready(Err(UnexpectedStatus::new(parts.status).into()));
                    }
                    if parts.status == StatusCode::NO_CONTENT {
                        return Poll::Ready(Ok(Value::Null));
                    }
                    if let Some(content_type) = parts.headers.get(CONTENT_TYPE)
                        && !is_json(content_type)
                    {
                        let shown = String::from_utf8_lossy(content_type.as_bytes()).into_owned();
                        return Poll::Ready(Err(InvalidJson::new(format!(
                            "content-type `{shown}` is not JSON"
                        ))
                        .into()));
                    }
                    let declared = parts
                        .headers
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if declared.is_some_and(|len| len > limit as u64) {
                        return Poll::Ready(Err(BodyTooLarge::new(limit).into()));
                    }
                    state.set(State::Collecting {
                        collect: Limited::new(body, limit).collect(),
                        limit,
                    });
                }
                StateProj::Collecting { collect, limit } => {
                    let limit = *limit;
                    let collected = match ready!(collect.poll(cx)) {
                        Ok(collected) => collected,
                        Err(error) if error.is::<LengthLimitError>() => {
                            return Poll::Ready(Err(BodyTooLarge::new(limit).into()));
                        }
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    let bytes = collected.to_bytes();
                    if bytes.is_empty() {
                        return Poll::Ready(Err(
                            InvalidJson::new("the body is empty".to_owned()).into()
                        ));
                    }
                    return Poll::Ready(serde_json::from_slice(&bytes).map_err(|e| {
                        InvalidJson::new(format!("the body is not valid JSON ({e})")).into()
                    }));
                }
            }
        }
    }
}
