//! The errors this crate adds. A refusal for being over the limit is
//! palisade-core's [`RateLimited`], re-exported at
//! the crate root.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use palisade_core::RateLimited;

/// Why a request's key could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The request carries no key and the limiter refuses such requests
    /// ([`MissingKey::Reject`](crate::MissingKey::Reject)).
    Missing,
    /// The key is present but empty.
    Empty,
    /// The key is longer than `max_key_len`.
    TooLong,
    /// The key is not what its source should hold (a header value that is
    /// not visible ASCII, an address header that holds no IP address).
    Malformed,
}

impl KeyProblem {
    /// A short lowercase name: `missing`, `empty`, `too_long`, `malformed`
    /// (the `reason` label of `palisade_rate_limit_invalid_keys_total`).
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::Malformed => "malformed",
        }
    }
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "the request has no key",
            Self::Empty => "the key is empty",
            Self::TooLong => "the key is too long",
            Self::Malformed => "the key is malformed",
        })
    }
}

/// A request's key could not be read: the request is refused without being
/// counted. HTTP: `400 Bad Request`.
///
/// Not a rejection in palisade-core's sense (it says nothing about load),
/// but a client error: sending the same request again cannot succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidKey {
    name: Arc<str>,
    problem: KeyProblem,
}

impl InvalidKey {
    /// The limiter `name` could not use a request's key because of `problem`.
    pub fn new(name: impl Into<Arc<str>>, problem: KeyProblem) -> Self {
        Self {
            name: name.into(),
            problem,
        }
    }

    /// The name of the limiter.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What was wrong with the key.
    #[must_use]
    pub const fn problem(&self) -> KeyProblem {
        self.problem
    }
}

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limiter `{}` cannot use the request: {}",
            self.name, self.problem
        )
    }
}

impl Error for InvalidKey {}

/// The limiter's remote backend could not decide (it failed, did not answer
/// in time, or its circuit breaker is open) and the limiter fails closed
/// ([`FailureMode::Closed`](crate::FailureMode::Closed)). HTTP: `503 Service
/// Unavailable`.
///
/// Its [`source`](Error::source) is a [`RateLimited`], so the refusal is a
/// rejection ([`palisade_core::is_rejection`]): retries do not retry it and a
/// breaker above under `IgnoreRejections` does not count it. The backend's
/// own error is in [`cause`](Self::cause).
#[derive(Debug)]
pub struct Unavailable {
    limited: RateLimited,
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

impl Unavailable {
    /// The limiter refused because its backend failed with `cause` (`None`:
    /// the backend's breaker is open and it was not asked).
    pub fn new(limited: RateLimited, cause: Option<Arc<dyn Error + Send + Sync>>) -> Self {
        Self { limited, cause }
    }

    /// The rejection, with the limiter's name and, when the backend's breaker
    /// is open, the time until it is tried again.
    #[must_use]
    pub const fn rejection(&self) -> &RateLimited {
        &self.limited
    }

    /// The backend's error, when it was asked and failed.
    #[must_use]
    pub fn cause(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limiter `{}` cannot reach its backend and fails closed",
            self.limited.name()
        )?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl Error for Unavailable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.limited)
    }
}

/// A [`Rate`](crate::Rate) could not be parsed from text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseRateError {
    text: String,
    reason: &'static str,
}

impl ParseRateError {
    pub(crate) fn new(text: &str, reason: &'static str) -> Self {
        Self {
            text: text.chars().take(64).collect(),
            reason,
        }
    }
}

impl fmt::Display for ParseRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid rate {:?}: {}", self.text, self.reason)
    }
}

impl Error for ParseRateError {}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{BoxError, is_rejection, rejection};
    use std::time::Duration;

    #[test]
    fn unavailable_is_a_rejection_with_its_cause() {
        let limited = RateLimited::new("api", Some(Duration::from_secs(1)));
        let cause: Arc<dyn Error + Send + Sync> = Arc::new(std::io::Error::other("refused"));
        let err: BoxError = Unavailable::new(limited, Some(cause)).into();
        assert!(is_rejection(&*err));
        assert_eq!(rejection(&*err).unwrap().name(), "api");
        assert_eq!(
            err.to_string(),
            "rate limiter `api` cannot reach its backend and fails closed: refused"
        );
        let unavailable = err.downcast_ref::<Unavailable>().unwrap();
        assert_eq!(unavailable.cause().unwrap().to_string(), "refused");
    }

    #[test]
    fn invalid_key_reads_well() {
        let err = InvalidKey::new("api", KeyProblem::TooLong);
        assert_eq!(
            err.to_string(),
            "rate limiter `api` cannot use the request: the key is too long"
        );
        assert_eq!(err.problem().as_str(), "too_long");
        assert!(!is_rejection(&err));
    }
}
