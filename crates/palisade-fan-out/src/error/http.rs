//! The typed errors of the HTTP integration (feature `http`): a branch's
//! answer that cannot be used ([`UnexpectedStatus`], [`InvalidJson`],
//! [`BodyTooLarge`]) and a branch request that cannot be built
//! ([`RequestError`]). Also re-exported from `palisade_fan_out::http`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use ::http::StatusCode;
use palisade_core::path::UnsafePath;
use palisade_core::{cause_ref, is_caused_by};

use super::BranchErrorKind;

/// The kind of an HTTP branch failure, from the error chain.
pub(super) fn classify(cause: &(dyn Error + 'static)) -> Option<(BranchErrorKind, Option<u16>)> {
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

/// The branch answered a status other than 2xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnexpectedStatus(StatusCode);

impl UnexpectedStatus {
    /// An answer with `status`.
    #[must_use]
    pub const fn new(status: StatusCode) -> Self {
        Self(status)
    }

    /// The status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.0
    }
}

impl fmt::Display for UnexpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected status {}", self.0)
    }
}

impl Error for UnexpectedStatus {}

/// The branch's answer is not JSON: a non-JSON `content-type`, an empty body,
/// or a body that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidJson(String);

impl InvalidJson {
    pub(crate) const fn new(reason: String) -> Self {
        Self(reason)
    }

    /// Why the answer is not JSON.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvalidJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response is not JSON: {}", self.0)
    }
}

impl Error for InvalidJson {}

/// The branch's body is larger than the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTooLarge(usize);

impl BodyTooLarge {
    /// A body over `limit` bytes.
    #[must_use]
    pub const fn new(limit: usize) -> Self {
        Self(limit)
    }

    /// The limit in bytes.
    #[must_use]
    pub const fn limit(&self) -> usize {
        self.0
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response body is larger than {} bytes", self.0)
    }
}

impl Error for BodyTooLarge {}

// ===== RequestError =====

/// A branch request could not be built from the incoming request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The route's parameter is missing from the path, or empty.
    MissingPathParam(Box<str>),
    /// The incoming query has no such parameter (or, for a value placed in
    /// the path, an empty one).
    MissingQueryParam(Box<str>),
    /// The incoming path does not match the route.
    PathMismatch(Arc<str>),
    /// The parameter's value would put a `.` or `..` segment into the
    /// branch's path, in some server's reading of it (`..`, `..;`, `%2e%2e`,
    /// `..%2F..%2Fadmin`, `..%5C`: see [`palisade_core::path`]).
    DotSegment(Box<str>),
    /// The parameter's value has something else a server could read as part
    /// of a climb (a backslash, a NUL byte, an overlong UTF-8 encoding).
    UnsafeValue(Box<str>, UnsafePath),
    /// The filled template is not a valid URI.
    InvalidUri,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPathParam(name) => write!(f, "missing path parameter `{name}`"),
            Self::MissingQueryParam(name) => write!(f, "missing query parameter `{name}`"),
            Self::PathMismatch(route) => write!(f, "path does not match route `{route}`"),
            Self::DotSegment(name) => write!(f, "parameter `{name}` may not be `.` or `..`"),
            Self::UnsafeValue(name, reason) => {
                write!(f, "parameter `{name}` is refused: {reason}")
            }
            Self::InvalidUri => f.write_str("the filled template is not a valid uri"),
        }
    }
}

impl Error for RequestError {}
