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
    fn labels() {
        assert_eq!(Outcome::Success.as_str(), "success");
        assert_eq!(Outcome::Failure.as_str(), "failure");
        assert_eq!(Outcome::Ignored.as_str(), "ignored");
        assert!(Outcome::Success.is_success() && !Outcome::Success.is_failure());
    }
}
