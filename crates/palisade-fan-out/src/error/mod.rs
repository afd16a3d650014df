//! Errors: why one branch is missing ([`BranchError`]) and why a whole gather
//! failed ([`RequiredBranchFailed`], [`DeadlineElapsed`], [`NothingSucceeded`]).
//!
//! A failed branch does not fail the gather unless it is required: its
//! [`BranchError`] goes into the account of what is missing (the `errors`
//! object of a JSON response). The gather itself fails only when a required
//! branch fails, when the deadline elapses before a required branch answered,
//! or when no branch at all succeeded. Each of those is its own type, wraps its
//! cause through [`source`](Error::source), and is found with
//! [`palisade_core::is_caused_by`] however other layers wrapped it.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;

#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::http::{BodyTooLarge, InvalidJson, RequestError, UnexpectedStatus};

// ===== BranchErrorKind =====

/// Why a branch has no answer: the machine-readable part of a [`BranchError`].
///
/// [`as_str`](Self::as_str) is the `reason` of the branch's entry in a JSON
/// response's `errors` object and the `outcome` label of the branch metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BranchErrorKind {
    /// The branch did not answer within its own timeout (`timeout`).
    Timeout,
    /// The gather's overall deadline elapsed while the branch was still
    /// waiting to start, becoming ready or running (`deadline`).
    Deadline,
    /// A resilience layer in the branch's stack refused the call: an open
    /// circuit breaker or a full bulkhead (`rejected`).
    Rejected,
    /// The branch answered with an HTTP status that is not a success
    /// (`status`, feature `http`).
    Status,
    /// The branch answered, but the answer could not be used: not JSON, too
    /// large, a broken body (`invalid_response`, feature `http`).
    InvalidResponse,
    /// The branch's request could not be built from the incoming request, for
    /// example a path parameter was missing (`request`).
    Request,
    /// The branch's service failed for any other reason (`failed`).
    Failed,
}

impl BranchErrorKind {
    /// The lowercase label: `timeout`, `deadline`, `rejected`, `status`,
    /// `invalid_response`, `request` or `failed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Deadline => "deadline",
            Self::Rejected => "rejected",
            Self::Status => "status",
            Self::InvalidResponse => "invalid_response",
            Self::Request => "request",
            Self::Failed => "failed",
        }
    }

    /// `true` for the kinds that mean "no answer in time" (a `504` rather than
    /// a `502` over HTTP).
    #[must_use]
    pub const fn is_timeout(self) -> bool {
        matches!(self, Self::Timeout | Self::Deadline)
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Timeout => 0,
            Self::Deadline => 1,
            Self::Rejected => 2,
            Self::Status => 3,
            Self::InvalidResponse => 4,
            Self::Request => 5,
            Self::Failed => 6,
        }
    }

    pub(crate) const ALL: [Self; 7] = [
        Self::Timeout,
        Self::Deadline,
        Self::Rejected,
        Self::Status,
        Self::InvalidResponse,
        Self::Request,
        Self::Failed,
    ];
}

impl fmt::Display for BranchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ===== BranchError =====

/// The kind of failure a service error means, from its chain.
fn classify(cause: &(dyn Error + 'static)) -> (BranchErrorKind, Option<u16>) {
    if palisade_core::is_rejection(cause) {
        return (BranchErrorKind::Rejected, None);
    }
    #[cfg(feature = "http")]
    if let Some(found) = http::classify(cause) {
        return found;
    }
    (BranchErrorKind::Failed, None)
}

/// Why one branch has no answer (or answered with its fallback).
///
/// [`kind`](Self::kind) says why in a word; [`source`](Error::source) is the
/// error the branch's service (or its request mapping) returned, when there
/// was one. `Display` never includes the downstream error's own text, so the
/// message is safe to show to clients; the JSON account adds the cause's text
/// only for kinds whose causes Palisade writes itself (rejections, invalid
/// responses, requests that could not be built), or for every kind when
/// `error_details` is on.
pub struct BranchError {
    kind: BranchErrorKind,
    timeout: Option<Duration>,
    status: Option<u16>,
    source: Option<BoxError>,
}

impl BranchError {
    /// The branch did not answer within `timeout`.
    #[must_use]
    pub const fn timed_out(timeout: Duration) -> Self {
        Self {
            kind: BranchErrorKind::Timeout,
            timeout: Some(timeout),
            status: None,
            source: None,
        }
    }

    /// The gather's deadline elapsed before the branch answered.
    #[must_use]
    pub const fn deadline() -> Self {
        Self {
            kind: BranchErrorKind::Deadline,
            timeout: None,
            status: None,
            source: None,
        }
    }

    /// The branch's request could not be built.
    pub fn request(cause: impl Into<BoxError>) -> Self {
        Self {
            kind: BranchErrorKind::Request,
            timeout: None,
            status: None,
            source: Some(cause.into()),
        }
    }

    /// The branch's service returned `cause`; the kind is worked out from the
    /// cause's chain: a rejection ([`palisade_core::is_rejection`]), and under
    /// feature `http` an unexpected status, an invalid body or a request that
    /// could not be built; anything else is [`BranchErrorKind::Failed`].
    pub fn from_service(cause: impl Into<BoxError>) -> Self {
        let cause = cause.into();
        let (kind, status) = classify(&*cause);
        Self {
            kind,
            timeout: None,
            status,
            source: Some(cause),
        }
    }

    /// Why the branch has no answer.
    #[must_use]
    pub const fn kind(&self) -> BranchErrorKind {
        self.kind
    }

    /// The branch's timeout, for [`BranchErrorKind::Timeout`].
    #[must_use]
    pub const fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The HTTP status the branch answered with, for
    /// [`BranchErrorKind::Status`].
    #[must_use]
    pub const fn status(&self) -> Option<u16> {
        self.status
    }

    /// The message for the JSON account: the `Display` text, plus the cause's
    /// text when the cause is Palisade's own wording (or `details` is set).
    pub(crate) fn account_message(&self, details: bool) -> String {
        let own = self.to_string();
        let safe = matches!(
            self.kind,
            BranchErrorKind::Rejected | BranchErrorKind::InvalidResponse | BranchErrorKind::Request
        );
        match &self.source {
            Some(cause) if details || safe => {
                let mut text = own;
                let mut next: Option<&(dyn Error + 'static)> = Some(&**cause);
                while let Some(err) = next {
                    text.push_str(": ");
                    text.push_str(&err.to_string());
                    if !details {
                        break;
                    }
                    next = err.source();
                }
                text
            }
            _ => own,
        }
    }
}

impl fmt::Debug for BranchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("BranchError");
        d.field("kind", &self.kind);
        if let Some(timeout) = self.timeout {
            d.field("timeout", &timeout);
        }
        if let Some(status) = self.status {
            d.field("status", &status);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for BranchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BranchErrorKind::Timeout => match self.timeout {
                Some(timeout) => write!(f, "timed out after {timeout:?}"),
                None => f.write_str("timed out"),
            },
            BranchErrorKind::Deadline => f.write_str("still pending when the deadline elapsed"),
            BranchErrorKind::Rejected => f.write_str("rejected by a resilience layer"),
            BranchErrorKind::Status => match self.status {
                Some(status) => write!(f, "answered status {status}"),
                None => f.write_str("answered an unexpected status"),
            },
            BranchErrorKind::InvalidResponse => f.write_str("answered an invalid response"),
            BranchErrorKind::Request => f.write_str("could not build the request"),
            BranchErrorKind::Failed => f.write_str("call failed"),
        }
    }
}

impl Error for BranchError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

// ===== RequiredBranchFailed =====

/// A required branch failed (and had no fallback): the gather failed at once
/// and every other branch call was cancelled.
///
/// [`source`](Error::source) is the branch's [`BranchError`].
#[derive(Debug)]
pub struct RequiredBranchFailed {
    fan_out: Arc<str>,
    branch: Arc<str>,
    cause: BranchError,
}

impl RequiredBranchFailed {
    pub(crate) const fn new(fan_out: Arc<str>, branch: Arc<str>, cause: BranchError) -> Self {
        Self {
            fan_out,
            branch,
            cause,
        }
    }

    /// The fan-out's name.
    #[must_use]
    pub fn fan_out(&self) -> &str {
        &self.fan_out
    }

    /// The branch that failed.
    #[must_use]
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Why it failed.
    #[must_use]
    pub const fn cause(&self) -> &BranchError {
        &self.cause
    }
}

impl fmt::Display for RequiredBranchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "required branch `{}` of fan-out `{}` failed",
            self.branch, self.fan_out
        )
    }
}

impl Error for RequiredBranchFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

// ===== DeadlineElapsed =====

/// The gather's overall deadline elapsed while required branches (without a
/// fallback) were still pending; the pending calls were cancelled.
#[derive(Debug)]
pub struct DeadlineElapsed {
    fan_out: Arc<str>,
    deadline: Duration,
    pending: Vec<Arc<str>>,
}

impl DeadlineElapsed {
    pub(crate) const fn new(fan_out: Arc<str>, deadline: Duration, pending: Vec<Arc<str>>) -> Self {
        Self {
            fan_out,
            deadline,
            pending,
        }
    }

    /// The fan-out's name.
    #[must_use]
    pub fn fan_out(&self) -> &str {
        &self.fan_out
    }

    /// The configured deadline.
    #[must_use]
    pub const fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The required branches that had not answered, in declaration order.
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.pending.iter().map(|name| &**name)
    }
}

impl fmt::Display for DeadlineElapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline of {:?} elapsed in fan-out `{}` before required branch",
            self.deadline, self.fan_out
        )?;
        if self.pending.len() > 1 {
            f.write_str("es")?;
        }
        for (i, name) in self.pending.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}`{name}`")?;
        }
        f.write_str(" answered")
    }
}

impl Error for DeadlineElapsed {}

// ===== NothingSucceeded =====

/// Every branch failed: the gather has nothing to return (fallback values do
/// not count as successes), so it is an error rather than an empty answer.
///
/// [`source`](Error::source) is the first branch's error, in declaration
/// order; [`errors`](Self::errors) lists them all.
#[derive(Debug)]
pub struct NothingSucceeded {
    fan_out: Arc<str>,
    errors: Vec<(Arc<str>, BranchError)>,
}

impl NothingSucceeded {
    pub(crate) const fn new(fan_out: Arc<str>, errors: Vec<(Arc<str>, BranchError)>) -> Self {
        Self { fan_out, errors }
    }

    /// The fan-out's name.
    #[must_use]
    pub fn fan_out(&self) -> &str {
        &self.fan_out
    }

    /// Each branch and why it failed, in declaration order.
    pub fn errors(&self) -> impl ExactSizeIterator<Item = (&str, &BranchError)> + '_ {
        self.errors.iter().map(|(name, err)| (&**name, err))
    }
}

impl fmt::Display for NothingSucceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no branch of fan-out `{}` succeeded", self.fan_out)
    }
}

impl Error for NothingSucceeded {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.errors
            .first()
            .map(|(_, err)| err as &(dyn Error + 'static))
    }
}

// ===== GatherError =====

/// Why a gather failed: what a [`Merge`](crate::Merge) is handed in
/// [`fail`](crate::Merge::fail) to turn into its error (or, for HTTP, into a
/// problem response).
#[derive(Debug)]
#[non_exhaustive]
pub enum GatherError {
    /// A required branch failed.
    RequiredBranchFailed(RequiredBranchFailed),
    /// The deadline elapsed before every required branch answered.
    DeadlineElapsed(DeadlineElapsed),
    /// No branch succeeded.
    NothingSucceeded(NothingSucceeded),
}

impl GatherError {
    /// The error as a [`BoxError`] holding the specific type, so
    /// [`palisade_core::is_caused_by`] finds it.
    #[must_use]
    pub fn into_box(self) -> BoxError {
        match self {
            Self::RequiredBranchFailed(e) => Box::new(e),
            Self::DeadlineElapsed(e) => Box::new(e),
            Self::NothingSucceeded(e) => Box::new(e),
        }
    }

    /// A short label for metrics and logs: `required_branch_failed`,
    /// `deadline_elapsed` or `nothing_succeeded`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::RequiredBranchFailed(_) => "required_branch_failed",
            Self::DeadlineElapsed(_) => "deadline_elapsed",
            Self::NothingSucceeded(_) => "nothing_succeeded",
        }
    }
}

impl fmt::Display for GatherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fan-out gather failed")
    }
}

impl Error for GatherError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(match self {
            Self::RequiredBranchFailed(e) => e,
            Self::DeadlineElapsed(e) => e,
            Self::NothingSucceeded(e) => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{CircuitOpen, is_caused_by};

    #[test]
    fn kinds_from_service_errors() {
        let err = BranchError::from_service(CircuitOpen::new("reviews", None));
        assert_eq!(err.kind(), BranchErrorKind::Rejected);
        assert!(is_caused_by::<CircuitOpen>(&err));
        let err = BranchError::from_service("connection refused");
        assert_eq!(err.kind(), BranchErrorKind::Failed);
        assert_eq!(err.to_string(), "call failed");
        // The downstream text is not in the safe message...
        assert_eq!(err.account_message(false), "call failed");
        // ...unless details are asked for.
        assert_eq!(err.account_message(true), "call failed: connection refused");
        let err = BranchError::from_service(CircuitOpen::new("reviews", None));
        assert_eq!(
            err.account_message(false),
            "rejected by a resilience layer: circuit breaker `reviews` is open"
        );
    }

    #[test]
    fn displays_are_lowercase_without_period() {
        let t = BranchError::timed_out(Duration::from_millis(100));
        assert_eq!(t.to_string(), "timed out after 100ms");
        assert_eq!(t.kind().as_str(), "timeout");
        let failed = RequiredBranchFailed::new("dash".into(), "user".into(), t);
        assert_eq!(
            failed.to_string(),
            "required branch `user` of fan-out `dash` failed"
        );
        assert!(is_caused_by::<BranchError>(&failed));
        let deadline = DeadlineElapsed::new(
            "dash".into(),
            Duration::from_millis(300),
            vec!["user".into(), "order".into()],
        );
        assert_eq!(
            deadline.to_string(),
            "deadline of 300ms elapsed in fan-out `dash` before required branches `user`, `order` answered"
        );
        let none =
            NothingSucceeded::new("dash".into(), vec![("a".into(), BranchError::deadline())]);
        assert_eq!(none.to_string(), "no branch of fan-out `dash` succeeded");
        assert!(none.source().is_some());
        let boxed = GatherError::NothingSucceeded(none).into_box();
        assert!(boxed.is::<NothingSucceeded>());
        // Boxed whole (as `?` does), the specific error is still found.
        let none = NothingSucceeded::new("dash".into(), Vec::new());
        let boxed: BoxError = GatherError::NothingSucceeded(none).into();
        assert!(is_caused_by::<NothingSucceeded>(&*boxed));
    }

    #[test]
    fn kind_indices_are_dense() {
        for (i, kind) in BranchErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
