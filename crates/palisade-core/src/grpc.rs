//! gRPC vocabulary (feature `grpc`): status codes, a classifier that reads
//! `grpc-status`, and [`GrpcStatusLayer`], which answers a stack's errors
//! with gRPC statuses.
//!
//! Palisade's layers sit below tonic, on the `http::Request` /
//! `http::Response` level where tonic's server routes and client channels
//! meet tower, so this module needs no tonic dependency: a gRPC call is an
//! HTTP/2 request, its status a `grpc-status` header. tonic answers a
//! handler's `Err(Status)` with a *trailers-only* response (the status in the
//! response headers, no body), so [`GrpcClassifier`] finds the status of every
//! failed unary call in the headers. A status sent in trailers after a body
//! (a stream that fails halfway) arrives after the response future has
//! completed, when classification is over: such a call counts as a success.
//!
//! ```
//! use palisade_core::{Classify, Outcome};
//! use palisade_core::grpc::{GrpcClassifier, GrpcCode};
//!
//! let classify = GrpcClassifier::server_errors();
//! let answer = |code: GrpcCode| {
//!     Ok::<_, ()>(
//!         http::Response::builder()
//!             .header("content-type", "application/grpc")
//!             .header("grpc-status", code.as_i32())
//!             .body(())
//!             .unwrap(),
//!     )
//! };
//! assert_eq!(classify.classify(&answer(GrpcCode::Unavailable)), Outcome::Failure);
//! assert_eq!(classify.classify(&answer(GrpcCode::InvalidArgument)), Outcome::Success);
//! assert_eq!(classify.classify(&answer(GrpcCode::Cancelled)), Outcome::Ignored);
//! ```

use std::borrow::Cow;
use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::classify::{Classify, Outcome};
use crate::deadline::DeadlineExpired;
use crate::http::{BULKHEAD_HEADER, CIRCUIT_BREAKER_HEADER, RATE_LIMIT_HEADER};
use crate::reject::{Rejection, rejection};

/// The `grpc-status` header (or trailer): the call's status code.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header (or trailer): the status message, percent-encoded.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The `grpc-timeout` request header: the time the caller still waits.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The `grpc-retry-pushback-ms` response header: how long a client should
/// wait before retrying (gRPC's `Retry-After`).
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
/// The content type of gRPC requests and responses.
pub const GRPC_CONTENT_TYPE: &str = "application/grpc";

// ===== GrpcCode =====

/// A gRPC status code (the 17 codes of the gRPC specification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// `OK` (0): not an error.
    Ok = 0,
    /// `CANCELLED` (1): the caller cancelled the call.
    Cancelled = 1,
    /// `UNKNOWN` (2): an error the server could not name.
    Unknown = 2,
    /// `INVALID_ARGUMENT` (3): the caller sent a bad request.
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED` (4): the deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// `NOT_FOUND` (5).
    NotFound = 5,
    /// `ALREADY_EXISTS` (6).
    AlreadyExists = 6,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8): a quota or a rate limit ran out.
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition = 9,
    /// `ABORTED` (10): a concurrency conflict.
    Aborted = 10,
    /// `OUT_OF_RANGE` (11).
    OutOfRange = 11,
    /// `UNIMPLEMENTED` (12).
    Unimplemented = 12,
    /// `INTERNAL` (13): the server broke an invariant.
    Internal = 13,
    /// `UNAVAILABLE` (14): the service cannot take the call now; safe to retry.
    Unavailable = 14,
    /// `DATA_LOSS` (15).
    DataLoss = 15,
    /// `UNAUTHENTICATED` (16).
    Unauthenticated = 16,
}

impl GrpcCode {
    const ALL: [Self; 17] = [
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    /// The code numbered `code`; a number outside 0..=16 is `UNKNOWN`, as
    /// the specification says a client must read it.
    #[must_use]
    pub const fn from_i32(code: i32) -> Self {
        if code >= 0 && code <= 16 {
            Self::ALL[code as usize]
        } else {
            Self::Unknown
        }
    }

    /// The code's number.
    #[must_use]
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code's name, as the specification spells it (`UNAVAILABLE`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Cancelled => "CANCELLED",
            Self::Unknown => "UNKNOWN",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Aborted => "ABORTED",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::DataLoss => "DATA_LOSS",
            Self::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code a gRPC client reads from a response whose HTTP status is not
    /// `200` (the mapping of the gRPC specification): a proxy's `503` is
    /// `UNAVAILABLE`, a `404` `UNIMPLEMENTED`, and so on.
    #[must_use]
    pub const fn from_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            200 => Self::Ok,
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502..=504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }

    /// The code carried in `headers` (`grpc-status`), if there is one. A
    /// value that is not a number is `UNKNOWN`.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(GRPC_STATUS)?;
        Some(
            value
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .map_or(Self::Unknown, Self::from_i32),
        )
    }

    /// The status a gRPC client reads from `res`: from its HTTP status when
    /// that is not `200`, else from its `grpc-status` header; `None` when
    /// the status is yet to come in the trailers.
    #[must_use]
    pub fn of_response<B>(res: &Response<B>) -> Option<Self> {
        if res.status() != StatusCode::OK {
            return Some(Self::from_http_status(res.status()));
        }
        Self::from_headers(res.headers())
    }

    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ===== GrpcClassifier =====

/// Classifies gRPC calls by status code: `Result<http::Response<B>, E>` (a
/// tower stack under tonic) through [`Classify`], and a bare code through
/// [`classify_code`](Self::classify_code) (for a closure over tonic's
/// `Status`).
///
/// An `Err` (a transport error, a layer's error) is a failure. A response is
/// classified by the code a client reads from it ([`GrpcCode::of_response`]);
/// a response whose status is still to come in the trailers is a success.
///
/// | preset | failures | ignored |
/// |---|---|---|
/// | [`server_errors`](Self::server_errors) (default; a breaker's) | `UNKNOWN`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS` | `CANCELLED` |
/// | [`transient`](Self::transient) (a retry's) | `UNAVAILABLE` | `CANCELLED`, and rejections a Palisade layer answered |
///
/// Every other code (`INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED`,
/// ...) is a success: the server worked, the caller asked for something it
/// could not have. `CANCELLED` says the caller gave up, nothing about the
/// server. `UNAVAILABLE` is the one code gRPC calls safe to retry: the server
/// did not process the call.
///
/// A response carrying `x-palisade-circuit-breaker`, `x-palisade-bulkhead` or
/// `x-palisade-rate-limit` is a rejection a Palisade layer answered
/// ([`GrpcStatusLayer`]): "add no load". Under
/// [`transient`](Self::transient) it is ignored, so a retry never retries it
/// (see [`ignore_rejections`](Self::ignore_rejections)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrpcClassifier {
    failures: u32,
    ignored: u32,
    ignore_rejections: bool,
}

impl GrpcClassifier {
    /// Server-side failures: `UNKNOWN`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE` and `DATA_LOSS`;
    /// `CANCELLED` ignored.
    #[must_use]
    pub const fn server_errors() -> Self {
        Self {
            failures: GrpcCode::Unknown.bit()
                | GrpcCode::DeadlineExceeded.bit()
                | GrpcCode::ResourceExhausted.bit()
                | GrpcCode::Internal.bit()
                | GrpcCode::Unavailable.bit()
                | GrpcCode::DataLoss.bit(),
            ignored: GrpcCode::Cancelled.bit(),
            ignore_rejections: false,
        }
    }

    /// The codes worth trying again: `UNAVAILABLE` only; `CANCELLED` and
    /// rejections answered by a Palisade layer ignored.
    #[must_use]
    pub const fn transient() -> Self {
        Self {
            failures: GrpcCode::Unavailable.bit(),
            ignored: GrpcCode::Cancelled.bit(),
            ignore_rejections: true,
        }
    }

    /// No code is a failure (only `Err` is); build up from here.
    #[must_use]
    pub const fn none() -> Self {
        Self {
            failures: 0,
            ignored: 0,
            ignore_rejections: false,
        }
    }

    /// Also count `code` as a failure.
    #[must_use]
    pub const fn failure(mut self, code: GrpcCode) -> Self {
        self.failures |= code.bit();
        self
    }

    /// Do not count `code` as a failure (it becomes a success).
    #[must_use]
    pub const fn not_failure(mut self, code: GrpcCode) -> Self {
        self.failures &= !code.bit();
        self
    }

    /// Ignore `code`: neither success nor failure.
    #[must_use]
    pub const fn ignore(mut self, code: GrpcCode) -> Self {
        self.ignored |= code.bit();
        self
    }

    /// Whether a response a Palisade layer answered for a rejection (it
    /// carries `x-palisade-circuit-breaker`, `x-palisade-bulkhead` or
    /// `x-palisade-rate-limit`) is ignored (`true` under
    /// [`transient`](Self::transient)) or classified by its code.
    #[must_use]
    pub const fn ignore_rejections(mut self, ignore: bool) -> Self {
        self.ignore_rejections = ignore;
        self
    }

    /// How a call that ended with `code` counts.
    #[inline]
    #[must_use]
    pub const fn classify_code(&self, code: GrpcCode) -> Outcome {
        if self.ignored & code.bit() != 0 {
            Outcome::Ignored
        } else if self.failures & code.bit() != 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// `true` if `code` counts as a failure.
    #[must_use]
    pub const fn is_failure(&self, code: GrpcCode) -> bool {
        matches!(self.classify_code(code), Outcome::Failure)
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::server_errors()
    }
}

/// `true` if `headers` carry the header of a Palisade rejection.
fn is_rejection_answer(headers: &HeaderMap) -> bool {
    headers.contains_key(CIRCUIT_BREAKER_HEADER)
        || headers.contains_key(BULKHEAD_HEADER)
        || headers.contains_key(RATE_LIMIT_HEADER)
}

impl<B, E> Classify<Response<B>, E> for GrpcClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(res) => match GrpcCode::of_response(res) {
                None => Outcome::Success,
                Some(code) => {
                    if self.ignore_rejections
                        && code != GrpcCode::Ok
                        && is_rejection_answer(res.headers())
                    {
                        Outcome::Ignored
                    } else {
                        self.classify_code(code)
                    }
                }
            },
            Err(_) => Outcome::Failure,
        }
    }
}

// ===== GrpcStatus =====

/// A gRPC error status, answered as a *trailers-only* response: HTTP `200`,
/// `content-type: application/grpc`, `grpc-status` and `grpc-message` in the
/// headers, no body. tonic's client reads it as a `tonic::Status`.
///
/// ```
/// use palisade_core::grpc::{GrpcCode, GrpcStatus};
///
/// let res: http::Response<String> = GrpcStatus::new(GrpcCode::Unavailable, "downstream is 100% down")
///     .into_response();
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.headers()["grpc-status"], "14");
/// assert_eq!(res.headers()["grpc-message"], "downstream is 100%25 down");
/// assert!(res.body().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct GrpcStatus {
    code: GrpcCode,
    message: Cow<'static, str>,
    headers: HeaderMap,
}

impl GrpcStatus {
    /// A status `code` with `message`.
    pub fn new(code: GrpcCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            headers: HeaderMap::new(),
        }
    }

    /// Adds a response header (metadata the client can read).
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The code.
    #[must_use]
    pub const fn code(&self) -> GrpcCode {
        self.code
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The trailers-only response.
    pub fn into_response<B: Default>(self) -> Response<B> {
        let mut res = Response::new(B::default());
        *res.headers_mut() = self.headers;
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(GRPC_CONTENT_TYPE));
        headers.insert(GRPC_STATUS, HeaderValue::from(self.code.as_i32()));
        if !self.message.is_empty()
            && let Ok(message) = HeaderValue::from_str(&percent_encode(&self.message))
        {
            headers.insert(GRPC_MESSAGE, message);
        }
        res
    }
}

/// What a `grpc-message` percent-encodes: every byte outside printable
/// ASCII, and `%` itself, as the gRPC specification asks (bytes above 0x7E are
/// always encoded).
const GRPC_MESSAGE_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// Percent-encodes a `grpc-message`.
fn percent_encode(message: &str) -> Cow<'_, str> {
    percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE_ENCODED).into()
}

/// Decodes a percent-encoded `grpc-message` (invalid escapes are kept as
/// they are; invalid UTF-8 is replaced).
#[must_use]
pub fn decode_message(value: &HeaderValue) -> String {
    percent_encoding::percent_decode(value.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

fn pushback(after: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(after.as_millis()).unwrap_or(u64::MAX))
}

/// The gRPC status for a rejection anywhere in `error`'s chain: an open
/// breaker or a full bulkhead is `UNAVAILABLE`, a rate limit
/// `RESOURCE_EXHAUSTED`; each names the layer in its `x-palisade-*` header and
/// sets `grpc-retry-pushback-ms` when the wait is known. `None` when `error`
/// is not a rejection.
#[must_use]
pub fn rejection_status(error: &(dyn Error + 'static)) -> Option<GrpcStatus> {
    let found = rejection(error)?;
    let (code, header) = match found {
        Rejection::CircuitOpen(_) => (GrpcCode::Unavailable, CIRCUIT_BREAKER_HEADER),
        Rejection::BulkheadFull(_) => (GrpcCode::Unavailable, BULKHEAD_HEADER),
        Rejection::RateLimited(_) => (GrpcCode::ResourceExhausted, RATE_LIMIT_HEADER),
    };
    let message = match found {
        Rejection::CircuitOpen(open) => open.to_string(),
        Rejection::BulkheadFull(full) => full.to_string(),
        Rejection::RateLimited(limited) => limited.to_string(),
    };
    let mut status = GrpcStatus::new(code, message);
    if let Some(name) = header_value(found.name()) {
        status = status.header(header, name);
    }
    if let Some(after) = found.retry_after() {
        status = status.header(GRPC_RETRY_PUSHBACK_MS, pushback(after));
    }
    Some(status)
}

/// `DEADLINE_EXCEEDED` for a [`DeadlineExpired`] anywhere in `error`'s chain.
#[must_use]
pub fn deadline_status(error: &(dyn Error + 'static)) -> Option<GrpcStatus> {
    crate::cause_ref::<DeadlineExpired>(error)
        .map(|expired| GrpcStatus::new(GrpcCode::DeadlineExceeded, expired.to_string()))
}

// ===== GrpcStatusLayer =====

/// Maps an error (anywhere in its source chain) to the gRPC status that
/// answers it, or says it does not know the error.
pub type ToGrpcStatus = fn(&(dyn Error + 'static)) -> Option<GrpcStatus>;

/// What becomes of an error no mapper knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unknown {
    /// `UNKNOWN`, message hidden, logged at `warn`: a server does not tell
    /// callers about its internals.
    Hide,
    /// `UNAVAILABLE` with the error's message: on a client, an error below
    /// the stack is the transport's (the server could not be reached).
    Unavailable,
}

/// Answers a stack's errors with gRPC statuses (trailers-only responses), so
/// its error type becomes [`Infallible`], as tonic's `Server::add_service`
/// wants, and a tonic client reads each layer's error as the right
/// `tonic::Status` code instead of `UNKNOWN`.
///
/// Each error is offered to the mappers added with
/// [`map_errors`](Self::map_errors), in the order added, then to
/// [`rejection_status`] (an open breaker or a full bulkhead is
/// `UNAVAILABLE`, a rate limit `RESOURCE_EXHAUSTED`), then to
/// [`deadline_status`] (an expired deadline is `DEADLINE_EXCEEDED`). An error
/// nobody claims becomes `UNKNOWN` with its message hidden (logged at `warn`)
/// under [`server`](Self::server), or `UNAVAILABLE` with its message under
/// [`client`](Self::client). An error from the inner service's `poll_ready`
/// is answered on the next call.
///
/// Put it outermost, above every Palisade layer of the stack: a retry or a
/// breaker above it would see a response, not an error. The facade's
/// `palisade::grpc::status_responses()` returns one that knows every enabled
/// pattern's errors.
///
/// ```
/// use palisade_core::{BoxError, CircuitOpen, grpc::GrpcStatusLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(GrpcStatusLayer::server())
///     .service(service_fn(|_: ()| async {
///         Err::<http::Response<String>, BoxError>(CircuitOpen::new("orders", None).into())
///     }));
/// let res = svc.oneshot(()).await.unwrap();
/// assert_eq!(res.headers()["grpc-status"], "14"); // UNAVAILABLE
/// assert_eq!(res.headers()["x-palisade-circuit-breaker"], "orders");
/// # }
/// ```
#[derive(Clone)]
pub struct GrpcStatusLayer {
    shared: Arc<Mappers>,
}

struct Mappers {
    mappers: Vec<ToGrpcStatus>,
    unknown: Unknown,
}

impl GrpcStatusLayer {
    /// For a server's stack: an unknown error is `UNKNOWN`, its message
    /// hidden.
    #[must_use]
    pub fn server() -> Self {
        Self::with(Unknown::Hide)
    }

    /// For a client's stack (under a tonic client): an unknown error is
    /// `UNAVAILABLE` with its message, as tonic reports a channel's
    /// transport errors.
    #[must_use]
    pub fn client() -> Self {
        Self::with(Unknown::Unavailable)
    }

    fn with(unknown: Unknown) -> Self {
        Self {
            shared: Arc::new(Mappers {
                mappers: Vec::new(),
                unknown,
            }),
        }
    }

    /// Also answers the errors `mapper` knows, tried before the built-in
    /// mappings and in the order added.
    #[must_use]
    pub fn map_errors(self, mapper: ToGrpcStatus) -> Self {
        let mut mappers = self.shared.mappers.clone();
        mappers.push(mapper);
        Self {
            shared: Arc::new(Mappers {
                mappers,
                unknown: self.shared.unknown,
            }),
        }
    }

    /// The status answering `error`.
    #[must_use]
    pub fn status_for(&self, error: &(dyn Error + 'static)) -> GrpcStatus {
        self.shared.status_for(error)
    }
}

impl Mappers {
    fn status_for(&self, error: &(dyn Error + 'static)) -> GrpcStatus {
        self.mappers
            .iter()
            .find_map(|map| map(error))
            .or_else(|| rejection_status(error))
            .or_else(|| deadline_status(error))
            .unwrap_or_else(|| match self.unknown {
                Unknown::Hide => {
                    tracing::warn!(error = %error, "request failed; answering UNKNOWN");
                    GrpcStatus::new(GrpcCode::Unknown, "internal error")
                }
                Unknown::Unavailable => GrpcStatus::new(GrpcCode::Unavailable, error.to_string()),
            })
    }
}

impl fmt::Debug for GrpcStatusLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcStatusLayer")
            .field("mappers", &self.shared.mappers.len())
            .field("unknown", &self.shared.unknown)
            .finish()
    }
}

impl<S> Layer<S> for GrpcStatusLayer {
    type Service = GrpcStatusResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcStatusResponse {
            inner,
            shared: Arc::clone(&self.shared),
            ready_error: None,
        }
    }
}

/// The service of [`GrpcStatusLayer`].
pub struct GrpcStatusResponse<S> {
    inner: S,
    shared: Arc<Mappers>,
    ready_error: Option<BoxError>,
}

impl<S> GrpcStatusResponse<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes this service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for GrpcStatusResponse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcStatusResponse")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: Clone> Clone for GrpcStatusResponse<S> {
    /// A clone does not carry a pending `poll_ready` error.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            ready_error: None,
        }
    }
}

impl<S, Req, B> Service<Req> for GrpcStatusResponse<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = GrpcStatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_none()
            && let Err(error) = ready!(self.inner.poll_ready(cx))
        {
            self.ready_error = Some(error.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.ready_error.take() {
            Some(error) => StatusState::Failed { error: Some(error) },
            None => StatusState::Called {
                future: self.inner.call(req),
            },
        };
        GrpcStatusFuture {
            state,
            shared: Arc::clone(&self.shared),
        }
    }
}

pin_project! {
    #[project = StatusStateProj]
    enum StatusState<F> {
        Called { #[pin] future: F },
        Failed { error: Option<BoxError> },
    }
}

pin_project! {
    /// Response future of [`GrpcStatusResponse`].
    pub struct GrpcStatusFuture<F> {
        #[pin]
        state: StatusState<F>,
        shared: Arc<Mappers>,
    }
}

impl<F> fmt::Debug for GrpcStatusFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcStatusFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for GrpcStatusFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    /// # Panics
    ///
    /// When polled again after it completed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error: BoxError = match this.state.project() {
            StatusStateProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(res) => return Poll::Ready(Ok(res)),
                Err(error) => error.into(),
            },
            StatusStateProj::Failed { error } => error
                .take()
                .expect("GrpcStatusFuture polled after completion"),
        };
        Poll::Ready(Ok(this.shared.status_for(&*error).into_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BulkheadFull, CircuitOpen, RateLimited};
    use tower::{ServiceExt, service_fn};

    fn grpc(code: GrpcCode) -> Response<()> {
        Response::builder()
            .header(GRPC_STATUS, code.as_i32())
            .body(())
            .unwrap()
    }

    #[test]
    fn codes_round_trip() {
        for n in 0..=16 {
            assert_eq!(GrpcCode::from_i32(n).as_i32(), n);
        }
        assert_eq!(GrpcCode::from_i32(17), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_i32(-1), GrpcCode::Unknown);
        assert_eq!(GrpcCode::Unavailable.to_string(), "UNAVAILABLE");
    }

    #[test]
    fn reading_the_status() {
        assert_eq!(GrpcCode::of_response(&Response::new(())), None);
        assert_eq!(
            GrpcCode::of_response(&grpc(GrpcCode::DataLoss)),
            Some(GrpcCode::DataLoss)
        );
        let garbage = Response::builder()
            .header(GRPC_STATUS, "fourteen")
            .body(())
            .unwrap();
        assert_eq!(GrpcCode::of_response(&garbage), Some(GrpcCode::Unknown));
        let proxy = Response::builder().status(503).body(()).unwrap();
        assert_eq!(GrpcCode::of_response(&proxy), Some(GrpcCode::Unavailable));
        let missing = Response::builder().status(404).body(()).unwrap();
        assert_eq!(
            GrpcCode::of_response(&missing),
            Some(GrpcCode::Unimplemented)
        );
    }

    #[test]
    fn presets() {
        let s = GrpcClassifier::server_errors();
        let failures: Vec<GrpcCode> = GrpcCode::ALL
            .into_iter()
            .filter(|c| s.is_failure(*c))
            .collect();
        assert_eq!(
            failures,
            [
                GrpcCode::Unknown,
                GrpcCode::DeadlineExceeded,
                GrpcCode::ResourceExhausted,
                GrpcCode::Internal,
                GrpcCode::Unavailable,
                GrpcCode::DataLoss
            ]
        );
        assert_eq!(s.classify_code(GrpcCode::InvalidArgument), Outcome::Success);
        assert_eq!(s.classify_code(GrpcCode::Cancelled), Outcome::Ignored);
        assert_eq!(
            s.classify(&Ok::<_, ()>(Response::new(()))),
            Outcome::Success
        );
        assert_eq!(s.classify(&Err::<Response<()>, _>(())), Outcome::Failure);

        let t = GrpcClassifier::transient();
        let failures: Vec<GrpcCode> = GrpcCode::ALL
            .into_iter()
            .filter(|c| t.is_failure(*c))
            .collect();
        assert_eq!(failures, [GrpcCode::Unavailable]);

        let custom = GrpcClassifier::none()
            .failure(GrpcCode::Aborted)
            .failure(GrpcCode::Internal)
            .not_failure(GrpcCode::Internal)
            .ignore(GrpcCode::NotFound);
        assert!(custom.is_failure(GrpcCode::Aborted));
        assert!(!custom.is_failure(GrpcCode::Internal));
        assert_eq!(custom.classify_code(GrpcCode::NotFound), Outcome::Ignored);
    }

    #[test]
    fn rejections_answered_are_ignored_by_the_transient_preset() {
        let mut res = grpc(GrpcCode::Unavailable);
        res.headers_mut()
            .insert(CIRCUIT_BREAKER_HEADER, HeaderValue::from_static("db"));
        let res = Ok::<_, ()>(res);
        assert_eq!(GrpcClassifier::transient().classify(&res), Outcome::Ignored);
        assert_eq!(
            GrpcClassifier::server_errors().classify(&res),
            Outcome::Failure
        );
        assert_eq!(
            GrpcClassifier::transient()
                .ignore_rejections(false)
                .classify(&res),
            Outcome::Failure
        );
    }

    #[test]
    fn messages_are_percent_encoded_and_decoded() {
        assert_eq!(percent_encode("plain text"), "plain text");
        assert_eq!(percent_encode("50% off"), "50%25 off");
        assert_eq!(percent_encode("naïve\n"), "na%C3%AFve%0A");
        for text in ["50% off", "naïve\n", "", "%", "ok"] {
            let encoded = HeaderValue::from_str(&percent_encode(text)).unwrap();
            assert_eq!(decode_message(&encoded), text);
        }
        assert_eq!(
            decode_message(&HeaderValue::from_static("bad %zz %4")),
            "bad %zz %4"
        );
    }

    #[test]
    fn built_in_statuses() {
        let open: BoxError = CircuitOpen::new("db", Some(Duration::from_millis(1500))).into();
        let s = rejection_status(&*open).unwrap();
        assert_eq!(s.code(), GrpcCode::Unavailable);
        let res: Response<String> = s.into_response();
        assert_eq!(res.headers()[CIRCUIT_BREAKER_HEADER], "db");
        assert_eq!(res.headers()[GRPC_RETRY_PUSHBACK_MS], "1500");
        assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");

        let full: BoxError = BulkheadFull::new("pool").into();
        let res: Response<String> = rejection_status(&*full).unwrap().into_response();
        assert_eq!(res.headers()[GRPC_STATUS], "14");
        assert_eq!(res.headers()[BULKHEAD_HEADER], "pool");

        let limited: BoxError = RateLimited::new("api", None).into();
        let res: Response<String> = rejection_status(&*limited).unwrap().into_response();
        assert_eq!(res.headers()[GRPC_STATUS], "8");
        assert_eq!(res.headers()[RATE_LIMIT_HEADER], "api");

        let late: BoxError = DeadlineExpired::new("edge").into();
        assert_eq!(
            deadline_status(&*late).unwrap().code(),
            GrpcCode::DeadlineExceeded
        );
        let other: BoxError = "boom".into();
        assert!(rejection_status(&*other).is_none());
        assert!(deadline_status(&*other).is_none());
    }

    fn teapot(error: &(dyn Error + 'static)) -> Option<GrpcStatus> {
        (error.to_string() == "teapot").then(|| GrpcStatus::new(GrpcCode::Aborted, "short"))
    }

    #[tokio::test]
    async fn layer_answers_every_error_with_a_status() {
        let inner = service_fn(|e: &'static str| async move {
            match e {
                "ok" => Ok(Response::new(String::from("body"))),
                "late" => Err::<Response<String>, BoxError>(DeadlineExpired::new("x").into()),
                other => Err(other.into()),
            }
        });
        let server = GrpcStatusLayer::server().map_errors(teapot).layer(inner);
        let res = server.clone().oneshot("ok").await.unwrap();
        assert_eq!(res.body(), "body");
        let res = server.clone().oneshot("late").await.unwrap();
        assert_eq!(res.headers()[GRPC_STATUS], "4");
        let res = server.clone().oneshot("teapot").await.unwrap();
        assert_eq!(res.headers()[GRPC_STATUS], "10");
        let res = server.clone().oneshot("secret").await.unwrap();
        assert_eq!(res.headers()[GRPC_STATUS], "2");
        assert_eq!(res.headers()[GRPC_MESSAGE], "internal error");

        let client = GrpcStatusLayer::client().layer(inner);
        let res = client.oneshot("connection refused").await.unwrap();
        assert_eq!(res.headers()[GRPC_STATUS], "14");
        assert_eq!(res.headers()[GRPC_MESSAGE], "connection refused");
    }
}
