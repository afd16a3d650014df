//! What a gather collected: one [`BranchResult`] per branch, handed to the
//! merge as a [`Gathered`]. Pure data: the gather future fills it.

use std::fmt;
use std::sync::Arc;

use crate::error::BranchError;

// ===== BranchResult =====

/// What one branch contributed to a gather.
#[derive(Debug)]
pub enum BranchResult<T> {
    /// The branch answered.
    Answered(T),
    /// The branch failed and its fallback value stands in for the answer. The
    /// gather counts as incomplete.
    Fallback {
        /// The fallback value.
        value: T,
        /// Why the branch failed.
        error: BranchError,
    },
    /// The branch failed (an optional branch without a fallback).
    Missing(BranchError),
}

impl<T> BranchResult<T> {
    /// The value to merge: the answer or the fallback.
    #[must_use]
    pub const fn value(&self) -> Option<&T> {
        match self {
            Self::Answered(value) | Self::Fallback { value, .. } => Some(value),
            Self::Missing(_) => None,
        }
    }

    /// The value to merge, by value.
    #[must_use]
    pub fn into_value(self) -> Option<T> {
        match self {
            Self::Answered(value) | Self::Fallback { value, .. } => Some(value),
            Self::Missing(_) => None,
        }
    }

    /// Why the branch failed, for a fallback or a missing branch.
    #[must_use]
    pub const fn error(&self) -> Option<&BranchError> {
        match self {
            Self::Answered(_) => None,
            Self::Fallback { error, .. } | Self::Missing(error) => Some(error),
        }
    }

    /// `true` when the branch really answered.
    #[must_use]
    pub const fn is_answered(&self) -> bool {
        matches!(self, Self::Answered(_))
    }

    /// `true` when a fallback stands in for the answer.
    #[must_use]
    pub const fn is_fallback(&self) -> bool {
        matches!(self, Self::Fallback { .. })
    }
}

// ===== Gathered =====

/// Where a gather keeps its branches' results (inside its pinned slot
/// chunk), as the merge sees them: by index, without the branch service's
/// types. `None` inside: no result (taken, or the branch was cancelled).
pub(crate) trait ResultTable<T> {
    fn result(&self, i: usize) -> Option<&Option<BranchResult<T>>>;
    fn result_mut(&mut self, i: usize) -> Option<&mut Option<BranchResult<T>>>;
}

/// Every branch's result, in declaration order: what a
/// [`Merge`](crate::Merge) turns into the response.
///
/// Iterating by value ([`IntoIterator`]) hands over each branch's result;
/// [`take`](Self::take) removes one by name first (it is then skipped by the
/// iteration).
///
/// ```
/// use palisade_fan_out::{Branch, BranchResult, FanOut};
/// use tower::{service_fn, ServiceExt};
/// # use palisade_core::BoxError;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let double = service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 2) });
/// let total = FanOut::builder("sum")
///     .branch(Branch::new("a", double.clone(), |n: &u32| *n))
///     .branch(Branch::new("b", double, |n: &u32| *n + 1))
///     .merge_fn(|gathered| {
///         assert!(gathered.is_complete());
///         Ok(gathered.into_iter().filter_map(|(_, r)| r.into_value()).sum::<u32>())
///     })
///     .build()?;
/// assert_eq!(total.oneshot(10).await?, 20 + 22);
/// # Ok(())
/// # }
/// ```
pub struct Gathered<'a, T> {
    fan_out: &'a str,
    names: &'a [Arc<str>],
    table: &'a mut dyn ResultTable<T>,
}

impl<'a, T> Gathered<'a, T> {
    pub(crate) fn new(
        fan_out: &'a str,
        names: &'a [Arc<str>],
        table: &'a mut dyn ResultTable<T>,
    ) -> Self {
        Self {
            fan_out,
            names,
            table,
        }
    }

    fn result(&self, i: usize) -> Option<&BranchResult<T>> {
        self.table.result(i)?.as_ref()
    }

    /// The fan-out's name.
    #[must_use]
    pub const fn fan_out(&self) -> &str {
        self.fan_out
    }

    /// How many branches the fan-out has.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.names.len()
    }

    /// `true` when the fan-out has no branch (never, for a built fan-out).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `true` when every branch answered: none missing, none on its fallback.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        (0..self.len()).all(|i| self.result(i).is_some_and(BranchResult::is_answered))
    }

    /// Each branch's name and result, in declaration order (results already
    /// [taken](Self::take) are skipped).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BranchResult<T>)> + '_ {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| self.result(i).map(|r| (&**name, r)))
    }

    /// The branches that failed (missing or on their fallback) and why.
    pub fn errors(&self) -> impl Iterator<Item = (&str, &BranchError)> + '_ {
        self.iter()
            .filter_map(|(name, r)| r.error().map(|e| (name, e)))
    }

    /// The result of the branch called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&BranchResult<T>> {
        let i = self.names.iter().position(|n| &**n == name)?;
        self.result(i)
    }

    /// Removes and returns the result of the branch called `name`.
    pub fn take(&mut self, name: &str) -> Option<BranchResult<T>> {
        let i = self.names.iter().position(|n| &**n == name)?;
        self.table.result_mut(i)?.take()
    }
}

impl<'a, T> IntoIterator for Gathered<'a, T> {
    type Item = (&'a str, BranchResult<T>);
    type IntoIter = IntoIter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        IntoIter {
            names: self.names.iter().enumerate(),
            table: self.table,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Gathered<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gathered")
            .field("fan_out", &self.fan_out)
            .field("results", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// The by-value iterator of a [`Gathered`]: `(branch name, result)` in
/// declaration order.
pub struct IntoIter<'a, T> {
    names: std::iter::Enumerate<std::slice::Iter<'a, Arc<str>>>,
    table: &'a mut dyn ResultTable<T>,
}

impl<T> fmt::Debug for IntoIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter").finish_non_exhaustive()
    }
}

impl<'a, T> Iterator for IntoIter<'a, T> {
    type Item = (&'a str, BranchResult<T>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (i, name) = self.names.next()?;
            if let Some(result) = self.table.result_mut(i).and_then(Option::take) {
                return Some((&**name, result));
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.names.len()))
    }
}
