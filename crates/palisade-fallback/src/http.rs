//! HTTP fallbacks (feature `http`): answers marked with
//! `x-palisade-fallback`, static answers, status classification.
//!
//! [`FallbackLayer::http_builder`] classifies responses with
//! [`StatusClassifier::server_errors`] (every 5xx and every `Err` is a
//! failure), and marks every answer with two headers:
//!
//! | header | value |
//! |---|---|
//! | `x-palisade-fallback` ([`FALLBACK_HEADER`]) | the layer's name |
//! | `x-palisade-fallback-class` ([`FALLBACK_CLASS_HEADER`]) | the class answered: `circuit-open`, `bulkhead-full`, `rate-limited`, `deadline`, `error`, `response` |
//!
//! so a client, a cache or a log can tell a fallback from a real answer. A
//! fixed answer is a [`StaticResponse`] (status, headers, body bytes), for
//! any response body that is `From<Bytes>` (axum's `Body`, `Full<Bytes>`,
//! `String` is not: use `Full`).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use palisade_core::http::StatusClassifier;

use crate::builder::FallbackBuilder;
use crate::layer::FallbackLayer;
use crate::settings::FallbackClass;
use crate::source::{Answer, Cause, Mark, NoFallback, Source, sealed};

/// Names the fallback layer that answered.
pub const FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-palisade-fallback");
/// Names the class of failure a fallback answered.
pub const FALLBACK_CLASS_HEADER: HeaderName = HeaderName::from_static("x-palisade-fallback-class");

/// Marks fallback answers with [`FALLBACK_HEADER`] and
/// [`FALLBACK_CLASS_HEADER`].
#[derive(Clone, Debug)]
pub struct Http {
    name: Option<HeaderValue>,
}

impl<B> Mark<Response<B>> for Http {
    fn mark(&self, res: &mut Response<B>, class: FallbackClass) {
        let headers = res.headers_mut();
        if let Some(name) = &self.name {
            headers.insert(FALLBACK_HEADER, name.clone());
        }
        headers.insert(
            FALLBACK_CLASS_HEADER,
            HeaderValue::from_static(class.as_str()),
        );
    }
}

impl FallbackLayer<NoFallback> {
    /// A builder for HTTP services: 5xx and `Err` are failures
    /// ([`StatusClassifier::server_errors`]), and answers are marked with
    /// the `x-palisade-fallback` headers. Choose the answer with
    /// [`response`](FallbackBuilder::response), `with`, `service_with` or
    /// `custom`.
    pub fn http_builder(
        name: impl Into<Arc<str>>,
    ) -> FallbackBuilder<NoFallback, StatusClassifier, Http> {
        let name = name.into();
        let mark = Http {
            // A name that cannot be a header value is left out; the class
            // header still marks the answer.
            name: HeaderValue::from_str(&name).ok(),
        };
        FallbackBuilder::new(name, StatusClassifier::server_errors(), mark)
    }
}

impl<F, C> FallbackBuilder<F, C, Http> {
    /// Answers with `response` (its status, headers and body, copied for
    /// each answer).
    pub fn response(self, response: StaticResponse) -> FallbackBuilder<StaticResponse, C, Http> {
        self.set_answer(response)
    }
}

/// A fixed HTTP answer: status, headers and body bytes (shared, not copied,
/// between answers).
///
/// ```
/// use palisade_fallback::http::StaticResponse;
///
/// let empty_list = StaticResponse::json(r#"{"items":[]}"#);
/// assert_eq!(empty_list.status(), 200);
/// ```
#[derive(Clone, Debug)]
pub struct StaticResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl sealed::Sealed for StaticResponse {}
impl Source for StaticResponse {}

impl StaticResponse {
    /// An answer with `status`, no headers and an empty body.
    #[must_use]
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// A `200 OK` JSON answer (`content-type: application/json`) with `body`,
    /// which must already be JSON.
    #[must_use]
    pub fn json(body: impl Into<Bytes>) -> Self {
        Self::new(StatusCode::OK)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut res = Response::new(B::from(self.body.clone()));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers.clone();
        res
    }
}

impl<Req, B: From<Bytes>> Answer<Req, Response<B>> for StaticResponse {
    type Kept = ();
    type Future = std::future::Ready<Result<Response<B>, palisade_core::BoxError>>;

    #[inline]
    fn keep(&self, _: &Req) {}

    fn answer(&self, (): (), _: Cause<'_>) -> Self::Future {
        std::future::ready(Ok(self.to_response()))
    }
}
