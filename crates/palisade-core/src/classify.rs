//! Failure classification: deciding whether a call's outcome counts as a
//! success, a failure, or not at all.
//!
//! A breaker's failure rate, a retry's "try again?" and a bulkhead's adaptive
//! limit all start from the same question, so every Palisade layer takes a
//! [`Classify`] instead of looking at `is_err()`. Ready classifiers:
//!
//! | classifier | `Ok(_)` | `Err(_)` |
//! |---|---|---|
//! | [`ErrorsAsFailures`] (the default for plain `Result`) | success | failure |
//! | `StatusClassifier` (feature `http`) | by status: 5xx failure by default | failure |
//! | any `Fn(&Result<T, E>) -> Outcome` | you decide | you decide |
//!
//! ```
//! use palisade_core::{Classify, ErrorsAsFailures, Outcome};
//!
//! assert_eq!(ErrorsAsFailures.classify(&Ok::<_, ()>(1)), Outcome::Success);
//!
//! // A closure is a classifier: treat "not found" as no signal at all.
//! let classify = |result: &Result<u16, String>| match result {
//!     Ok(404) => Outcome::Ignored,
//!     Ok(_) => Outcome::Success,
//!     Err(_) => Outcome::Failure,
//! };
//! assert_eq!(classify.classify(&Ok(404)), Outcome::Ignored);
//! ```

/// How one completed call counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call worked: it counts towards the success rate.
    Success,
    /// The call failed: it counts towards the failure rate and may be retried.
    Failure,
    /// The call says nothing about the downstream's health (a client error, a
    /// cancelled call): it is not recorded, and any probe permit it held is
    /// given back.
    Ignored,
}

impl Outcome {
    /// `true` for [`Outcome::Success`].
    #[must_use]
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }

    /// `true` for [`Outcome::Failure`].
    #[must_use]
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Failure)
    }

    /// A lowercase label for metrics and logs: `success`, `failure`, `ignored`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Ignored => "ignored",
        }
    }
}

/// Decides how a completed call counts.
///
/// Implemented for [`ErrorsAsFailures`], for `StatusClassifier` (feature
/// `http`), and for every `Fn(&Result<T, E>) -> Outcome`, so a closure is a
/// classifier. A classifier is called once per completed call on the hot path:
/// keep it cheap and free of locks.
pub trait Classify<T, E> {
    /// Classifies the result of one call.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// Every `Ok` is a success, every `Err` a failure: the default classifier for
/// services that are not HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorsAsFailures;

impl ErrorsAsFailures {
    /// Creates the classifier.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

impl<T, E> Classify<T, E> for ErrorsAsFailures {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Wraps a classifier so that a *rejection* by a layer below (an open breaker,
/// a full bulkhead: [`is_rejection`](crate::is_rejection)) is
/// [ignored](Outcome::Ignored) instead of classified.
///
/// A rejection says the call was never sent: it tells nothing about the
/// downstream's health. A breaker above a bulkhead should not trip because
/// the bulkhead shed a burst, so give the breaker its classifier wrapped:
///
/// ```
/// use palisade_core::{BoxError, BulkheadFull, Classify, ErrorsAsFailures, IgnoreRejections, Outcome};
///
/// // For HTTP: `IgnoreRejections::new(palisade_core::http::StatusClassifier::server_errors())`.
/// let classify = IgnoreRejections::new(ErrorsAsFailures);
/// let full: Result<u32, BoxError> = Err(BulkheadFull::new("db").into());
/// assert_eq!(classify.classify(&full), Outcome::Ignored);
/// let failed: Result<u32, BoxError> = Err("connection reset".into());
/// assert_eq!(classify.classify(&failed), Outcome::Failure);
/// ```
///
/// Implemented for results whose error is a [`BoxError`](crate::BoxError), the
/// error type of every Palisade layer that can reject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IgnoreRejections<C> {
    inner: C,
}

impl<C> IgnoreRejections<C> {
    /// Classifies with `inner`, except rejections, which are ignored.
    pub const fn new(inner: C) -> Self {
        Self { inner }
    }

    /// The wrapped classifier.
    pub const fn get_ref(&self) -> &C {
        &self.inner
    }
}

impl<T, C> Classify<T, crate::BoxError> for IgnoreRejections<C>
where
    C: Classify<T, crate::BoxError>,
{
    #[inline]
    fn classify(&self, result: &Result<T, crate::BoxError>) -> Outcome {
        match result {
            Err(error) if crate::is_rejection(&**error) => Outcome::Ignored,
            _ => self.inner.classify(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_as_failures() {
        assert_eq!(
            ErrorsAsFailures.classify(&Ok::<(), ()>(())),
            Outcome::Success
        );
        assert_eq!(
            ErrorsAsFailures.classify(&Err::<(), ()>(())),
            Outcome::Failure
        );
    }

    #[test]
    fn closures_classify() {
        let c = |r: &Result<i32, ()>| match r {
            Ok(n) if *n < 0 => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(()) => Outcome::Failure,
        };
        assert_eq!(c.classify(&Ok(-1)), Outcome::Ignored);
        assert_eq!(c.classify(&Ok(1)), Outcome::Success);
        assert_eq!(c.classify(&Err(())), Outcome::Failure);
    }

    #[test]
    fn rejections_are_ignored_and_the_rest_delegated() {
        use crate::{BoxError, CircuitOpen};
        let classify = IgnoreRejections::new(ErrorsAsFailures);
        let open: Result<(), BoxError> = Err(CircuitOpen::new("x", None).into());
        let other: Result<(), BoxError> = Err("boom".into());
        let ok: Result<(), BoxError> = Ok(());
        assert_eq!(classify.classify(&open), Outcome::Ignored);
        assert_eq!(classify.classify(&other), Outcome::Failure);
        assert_eq!(classify.classify(&ok), Outcome::Success);
        assert_eq!(*classify.get_ref(), ErrorsAsFailures);
    }

    #[test]
    fn labels() {
        assert_eq!(Outcome::Success.as_str(), "success");
        assert_eq!(Outcome::Failure.as_str(), "failure");
        assert_eq!(Outcome::Ignored.as_str(), "ignored");
        assert!(Outcome::Success.is_success() && !Outcome::Success.is_failure());
    }
}
