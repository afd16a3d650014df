//! Merge strategies: how a gather's branch results become one response.
//!
//! - [`JsonMerge::keyed`] (the default): a JSON object with one key per
//!   branch, `{"user": {...}, "order": {...}}`.
//! - [`JsonMerge::flatten`]: every branch's object merged into one object.
//!   When two branches set the same field, the branch declared first keeps
//!   it: the result never depends on which branch answered first. A branch
//!   whose answer is not an object (an array, a number) goes under its name.
//! - [`MergeFn`] (the builder's `merge_fn`): any function of the
//!   [`Gathered`] results.
//! - `http::JsonResponse` (feature `http`): the JSON merges as an HTTP
//!   response with `X-Palisade-Completed` and `Cache-Control: no-store` on
//!   incomplete answers.
//!
//! The JSON merges add an `errors` object when the gather is incomplete, one
//! entry per missing branch or branch on its fallback:
//!
//! ```json
//! "errors": {
//!   "review": {"reason": "timeout", "message": "timed out after 100ms", "fallback": false},
//!   "reward": {"reason": "status", "status": 503, "message": "answered status 503", "fallback": true}
//! }
//! ```
//!
//! `reason` is a [`BranchErrorKind`](crate::BranchErrorKind) label; `status`
//! is present for an HTTP status; `fallback` says whether a fallback value
//! stands in the data. The key (`errors`) is reserved: building fails if a
//! keyed branch has that name, and in a flattened object the account replaces
//! a branch field of that name when the answer is incomplete. Rename it with
//! [`JsonMerge::errors_key`].

use std::borrow::Cow;
use std::fmt;

use palisade_core::{BoxError, ConfigError};
use serde_json::{Map, Value};

use crate::error::{BranchError, GatherError};
use crate::state::{BranchResult, Gathered};

/// Turns a gather's results into the response, or a failed gather into an
/// error (or, over HTTP, into an error response).
///
/// `T` is the branches' response type. The fan-out's `Service::Response` and
/// `Service::Error` are the merge's [`Response`](Self::Response) and
/// [`Error`](Self::Error): a merge whose `fail` answers with a response can
/// make the fan-out infallible (`http::JsonResponse` does, for axum).
pub trait Merge<T> {
    /// What a successful gather answers.
    type Response;
    /// The fan-out's error type.
    type Error;

    /// Merges the results. Called once per gather that did not fail, with at
    /// least one branch answered.
    fn merge(&self, gathered: Gathered<'_, T>) -> Result<Self::Response, Self::Error>;

    /// Answers a failed gather.
    fn fail(&self, error: GatherError) -> Result<Self::Response, Self::Error>;

    /// Checks the merge against the branch names when the fan-out is built
    /// (for example, a reserved key). The default accepts everything.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] that `FanOutBuilder::build` returns.
    fn check(&self, branches: &[&str]) -> Result<(), ConfigError> {
        let _ = branches;
        Ok(())
    }
}

// ===== JsonMerge =====

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Keyed,
    Flatten,
}

/// Merges JSON answers into one JSON object, keyed by branch or flattened,
/// with an `errors` account when the gather is incomplete (see the
/// [module docs](self)).
///
/// Branch answers are anything `Into<serde_json::Value>`. A failed gather is
/// an error ([`GatherError::into_box`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonMerge {
    mode: Mode,
    errors_key: Cow<'static, str>,
    details: bool,
}

impl Default for JsonMerge {
    fn default() -> Self {
        Self::keyed()
    }
}

impl JsonMerge {
    /// One key per branch: `{"user": <user's answer>, "order": ...}`. The
    /// default. Keys follow `serde_json`'s map order.
    #[must_use]
    pub const fn keyed() -> Self {
        Self {
            mode: Mode::Keyed,
            errors_key: Cow::Borrowed("errors"),
            details: false,
        }
    }

    /// Every branch's object merged into one; on a field set by two branches,
    /// the branch declared first wins. A branch answering something other
    /// than an object is put under its name.
    #[must_use]
    pub const fn flatten() -> Self {
        Self {
            mode: Mode::Flatten,
            errors_key: Cow::Borrowed("errors"),
            details: false,
        }
    }

    /// The key of the account of missing branches (default `errors`).
    #[must_use]
    pub fn errors_key(mut self, key: impl Into<Cow<'static, str>>) -> Self {
        self.errors_key = key.into();
        self
    }

    /// Adds each failure's full cause chain as `detail` in the account
    /// (default off: downstream error texts can name internal hosts).
    #[must_use]
    pub const fn error_details(mut self, on: bool) -> Self {
        self.details = on;
        self
    }

    /// `true` when set to flatten.
    #[must_use]
    pub fn is_flatten(&self) -> bool {
        self.mode == Mode::Flatten
    }

    /// Builds the merged object from `gathered`; the account is added when
    /// the gather is incomplete.
    pub fn to_value<T: Into<Value>>(&self, gathered: Gathered<'_, T>) -> Value {
        let mut data = Map::new();
        let mut errors = Map::new();
        for (name, result) in gathered {
            let value = match result {
                BranchResult::Answered(value) => value.into(),
                BranchResult::Fallback { value, error } => {
                    errors.insert(name.to_owned(), self.account_entry(&error, true));
                    value.into()
                }
                BranchResult::Missing(error) => {
                    errors.insert(name.to_owned(), self.account_entry(&error, false));
                    continue;
                }
            };
            match (self.mode, value) {
                (Mode::Flatten, Value::Object(fields)) => {
                    for (field, value) in fields {
                        // Declaration order: the first branch to set a field
                        // keeps it.
                        data.entry(field).or_insert(value);
                    }
                }
                (_, value) => {
                    data.entry(name.to_owned()).or_insert(value);
                }
            }
        }
        if !errors.is_empty() {
            data.insert(self.errors_key.clone().into_owned(), Value::Object(errors));
        }
        Value::Object(data)
    }

    /// One branch's entry in the account.
    pub(crate) fn account_entry(&self, error: &BranchError, fallback: bool) -> Value {
        account_entry(error, fallback, self.details)
    }

    pub(crate) fn check_names(&self, branches: &[&str]) -> Result<(), ConfigError> {
        if self.errors_key.is_empty() {
            return Err(ConfigError::new("errors_key", "must not be empty"));
        }
        if self.mode == Mode::Keyed && branches.contains(&&*self.errors_key) {
            return Err(ConfigError::new(
                "errors_key",
                format!(
                    "`{}` is both a branch name and the key of the errors account; rename one",
                    self.errors_key
                ),
            ));
        }
        Ok(())
    }
}

pub(crate) fn account_entry(error: &BranchError, fallback: bool, details: bool) -> Value {
    let mut entry = Map::new();
    entry.insert("reason".to_owned(), error.kind().as_str().into());
    if let Some(status) = error.status() {
        entry.insert("status".to_owned(), status.into());
    }
    entry.insert("message".to_owned(), error.account_message(details).into());
    entry.insert("fallback".to_owned(), fallback.into());
    Value::Object(entry)
}

impl<T: Into<Value>> Merge<T> for JsonMerge {
    type Response = Value;
    type Error = BoxError;

    fn merge(&self, gathered: Gathered<'_, T>) -> Result<Value, BoxError> {
        Ok(self.to_value(gathered))
    }

    fn fail(&self, error: GatherError) -> Result<Value, BoxError> {
        Err(error.into_box())
    }

    fn check(&self, branches: &[&str]) -> Result<(), ConfigError> {
        self.check_names(branches)
    }
}

// ===== MergeFn =====

/// A merge made of a function of the [`Gathered`] results (the builder's
/// `merge_fn`). A failed gather is an error ([`GatherError::into_box`]).
#[derive(Clone)]
pub struct MergeFn<F> {
    f: F,
}

impl<F> MergeFn<F> {
    /// Merges with `f`.
    pub const fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for MergeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergeFn").finish_non_exhaustive()
    }
}

impl<T, F, R> Merge<T> for MergeFn<F>
where
    F: Fn(Gathered<'_, T>) -> Result<R, BoxError>,
{
    type Response = R;
    type Error = BoxError;

    fn merge(&self, gathered: Gathered<'_, T>) -> Result<R, BoxError> {
        (self.f)(gathered)
    }

    fn fail(&self, error: GatherError) -> Result<R, BoxError> {
        Err(error.into_box())
    }
}
