//! Metric handles, resolved once when the fan-out is built: a call never
//! formats a label or looks up a key.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram, Unit};

use crate::error::BranchErrorKind;

pub(crate) const BRANCH_DURATION: &str = "palisade_fan_out_branch_duration_seconds";
pub(crate) const BRANCH_TOTAL: &str = "palisade_fan_out_branch_total";
pub(crate) const GATHERS_TOTAL: &str = "palisade_fan_out_gathers_total";
pub(crate) const GATHER_DURATION: &str = "palisade_fan_out_gather_duration_seconds";

/// How one branch call ended, as the `outcome` label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BranchOutcome {
    Success,
    Error(BranchErrorKind),
    /// The call was dropped before it finished: a required branch failed, or
    /// the caller dropped the gather.
    Cancelled,
}

const OUTCOMES: usize = BranchErrorKind::ALL.len() + 2;

impl BranchOutcome {
    const fn index(self) -> usize {
        match self {
            Self::Success => 0,
            Self::Error(kind) => 1 + kind.index(),
            Self::Cancelled => OUTCOMES - 1,
        }
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error(kind) => kind.as_str(),
            Self::Cancelled => "cancelled",
        }
    }

    const ALL: [Self; OUTCOMES] = [
        Self::Success,
        Self::Error(BranchErrorKind::Timeout),
        Self::Error(BranchErrorKind::Deadline),
        Self::Error(BranchErrorKind::Rejected),
        Self::Error(BranchErrorKind::Status),
        Self::Error(BranchErrorKind::InvalidResponse),
        Self::Error(BranchErrorKind::Request),
        Self::Error(BranchErrorKind::Failed),
        Self::Cancelled,
    ];
}

/// How a gather ended, as the `result` label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GatherResult {
    /// Every branch answered.
    Complete,
    /// Some branch is missing or answered with its fallback.
    Partial,
    /// The gather failed (required branch, deadline, nothing succeeded).
    Failed,
    /// The caller dropped the gather before it finished.
    Cancelled,
}

impl GatherResult {
    const ALL: [Self; 4] = [Self::Complete, Self::Partial, Self::Failed, Self::Cancelled];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Handles for one branch, one per outcome.
#[derive(Clone, Debug)]
pub(crate) struct BranchMetrics {
    duration: [Histogram; OUTCOMES],
    total: [Counter; OUTCOMES],
}

impl BranchMetrics {
    pub(crate) fn new(name: &Arc<str>, branch: &Arc<str>) -> Self {
        let labels = |outcome: BranchOutcome| {
            [
                ("name", name.to_string()),
                ("branch", branch.to_string()),
                ("outcome", outcome.as_str().to_owned()),
            ]
        };
        Self {
            duration: BranchOutcome::ALL
                .map(|outcome| metrics::histogram!(BRANCH_DURATION, &labels(outcome))),
            total: BranchOutcome::ALL
                .map(|outcome| metrics::counter!(BRANCH_TOTAL, &labels(outcome))),
        }
    }

    /// Counts one ended call; `elapsed` is `None` for a branch that never
    /// started (its request could not be built, or the deadline came first),
    /// which has no latency to record.
    #[inline]
    pub(crate) fn record(&self, outcome: BranchOutcome, elapsed: Option<Duration>) {
        let i = outcome.index();
        self.total[i].increment(1);
        if let Some(elapsed) = elapsed {
            self.duration[i].record(elapsed.as_secs_f64());
        }
    }
}

/// Handles for the whole fan-out.
#[derive(Clone, Debug)]
pub(crate) struct GatherMetrics {
    total: [Counter; 4],
    duration: [Histogram; 4],
}

impl GatherMetrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let total = GatherResult::ALL.map(|result| {
            metrics::counter!(GATHERS_TOTAL, "name" => name.to_string(), "result" => result.as_str())
        });
        let duration = GatherResult::ALL.map(|result| {
            metrics::histogram!(GATHER_DURATION, "name" => name.to_string(), "result" => result.as_str())
        });
        Self { total, duration }
    }

    #[inline]
    pub(crate) fn record(&self, result: GatherResult, elapsed: Option<Duration>) {
        let i = result as usize;
        self.total[i].increment(1);
        if let Some(elapsed) = elapsed {
            self.duration[i].record(elapsed.as_secs_f64());
        }
    }
}

fn describe() {
    metrics::describe_histogram!(
        BRANCH_DURATION,
        Unit::Seconds,
        "Latency of each fan-out branch call, from its start to its answer or cut-off."
    );
    metrics::describe_counter!(
        BRANCH_TOTAL,
        Unit::Count,
        "Fan-out branch calls, by how they ended."
    );
    metrics::describe_counter!(
        GATHERS_TOTAL,
        Unit::Count,
        "Fan-out gathers: complete, partial (some branch missing or on its fallback), failed or cancelled."
    );
    metrics::describe_histogram!(
        GATHER_DURATION,
        Unit::Seconds,
        "Latency of whole fan-out gathers, by result."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_indices_cover_every_label_once() {
        let labels = BranchOutcome::ALL.map(BranchOutcome::as_str);
        for (i, outcome) in BranchOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
        assert_eq!(
            labels,
            [
                "success",
                "timeout",
                "deadline",
                "rejected",
                "status",
                "invalid_response",
                "request",
                "failed",
                "cancelled"
            ]
        );
        for (i, result) in GatherResult::ALL.iter().enumerate() {
            assert_eq!(*result as usize, i);
        }
    }
}
