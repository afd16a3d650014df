//! [`FanOutBuilder`]: the branches, one setter per setting and the merge;
//! `build()` validates, then builds the shared state once.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{BoxError, ConfigError};
use tower_service::Service;

use crate::branch::Branch;
use crate::merge::{JsonMerge, Merge, MergeFn};
use crate::metrics::{BranchMetrics, GatherMetrics};
use crate::service::FanOut;
use crate::settings::FanOutSettings;
use crate::shared::{BranchState, CarriedDeadline, Shared, Summary};
use crate::state::Gathered;

impl<S, Req, BReq> FanOut<S, Req, BReq, JsonMerge>
where
    S: Service<BReq>,
{
    /// Starts building a fan-out called `name` (the `name` label of its
    /// metrics and the `fan_out` field of its spans), merging with
    /// [`JsonMerge::keyed`] unless told otherwise.
    pub fn builder(name: impl Into<Arc<str>>) -> FanOutBuilder<S, Req, BReq, JsonMerge> {
        FanOutBuilder {
            name: name.into(),
            branches: Vec::new(),
            settings: FanOutSettings::default(),
            carried_deadline: None,
            merge: JsonMerge::keyed(),
        }
    }
}

/// Builds a [`FanOut`]; from [`FanOut::builder`].
///
/// The setters [`deadline`](Self::deadline) and
/// [`max_in_flight`](Self::max_in_flight) set the [`FanOutSettings`] field of
/// their name; [`settings`](Self::settings) sets them all at once. Each
/// branch's own settings are on the [`Branch`] ([`BranchSettings`](crate::BranchSettings)).
///
/// | setting | default |
/// |---|---|
/// | [`branch`](Self::branch) | at least one, unique names |
/// | [`deadline`](Self::deadline) | none |
/// | [`max_in_flight`](Self::max_in_flight) | none: every branch at once |
/// | [`merge`](Self::merge) / [`merge_fn`](Self::merge_fn) | [`JsonMerge::keyed`] |
pub struct FanOutBuilder<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    name: Arc<str>,
    branches: Vec<Branch<S, Req, BReq>>,
    settings: FanOutSettings,
    carried_deadline: Option<CarriedDeadline<Req>>,
    merge: M,
}

impl<S, Req, BReq, M> FanOutBuilder<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    /// Adds a branch. Branches are called, merged and reported in the order
    /// they are added.
    #[must_use]
    pub fn branch(mut self, branch: Branch<S, Req, BReq>) -> Self {
        self.branches.push(branch);
        self
    }

    /// Adds every branch of `branches`, in order.
    #[must_use]
    pub fn branches(mut self, branches: impl IntoIterator<Item = Branch<S, Req, BReq>>) -> Self {
        self.branches.extend(branches);
        self
    }

    /// Replaces every fan-out setting that is plain data with `settings`
    /// (the branches and the merge are kept).
    #[must_use]
    pub fn settings(mut self, settings: FanOutSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The deadline for the whole gather, from its first poll: when it
    /// elapses, optional branches still pending count as `deadline` failures
    /// and the answer holds what completed; a required branch still pending
    /// fails the gather with [`DeadlineElapsed`](crate::DeadlineElapsed).
    /// Must be more than zero.
    #[must_use]
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// Also ends the gather at the deadline the incoming request carries
    /// (a [`Deadline`](palisade_core::Deadline) set by a deadline layer above),
    /// when it comes before [`deadline`](Self::deadline): the gather gets
    /// what is left of the caller's time, and so does every branch. For HTTP
    /// requests pass `palisade_fan_out::http::request_deadline` (feature
    /// `http`), which reads it from the request's extensions; HTTP branches
    /// ([`Branch::http`](crate::Branch::http)) also carry it on to their
    /// own requests.
    #[must_use]
    pub const fn carried_deadline(mut self, read: CarriedDeadline<Req>) -> Self {
        self.carried_deadline = Some(read);
        self
    }

    /// At most `max` branches of one gather started (becoming ready or
    /// running) at once; the others start in declaration order as earlier
    /// ones finish. Per gather, not across gathers: bound the fan-out as a
    /// whole with a bulkhead around it. Must be at least 1.
    #[must_use]
    pub const fn max_in_flight(mut self, max: usize) -> Self {
        self.settings.max_in_flight = Some(max);
        self
    }

    /// Merges with `merge` instead.
    pub fn merge<M2>(self, merge: M2) -> FanOutBuilder<S, Req, BReq, M2>
    where
        M2: Merge<S::Response>,
    {
        FanOutBuilder {
            name: self.name,
            branches: self.branches,
            settings: self.settings,
            carried_deadline: self.carried_deadline,
            merge,
        }
    }

    /// Merges with a function of the [`Gathered`] results; a failed gather is
    /// an error ([`GatherError::into_box`](crate::GatherError::into_box)).
    pub fn merge_fn<F, R>(self, merge: F) -> FanOutBuilder<S, Req, BReq, MergeFn<F>>
    where
        F: Fn(Gathered<'_, S::Response>) -> Result<R, BoxError>,
    {
        self.merge(MergeFn::new(merge))
    }

    /// Checks the settings and builds the fan-out; metric handles are resolved
    /// here, under the metrics recorder current at this point.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting: `name` (empty), `branch` (none,
    /// an empty or duplicate name), `timeout` (a branch's, zero), `deadline`
    /// (zero), `max_in_flight` (zero), or whatever the merge's
    /// [`check`](Merge::check) refuses (`errors_key`).
    pub fn build(self) -> Result<FanOut<S, Req, BReq, M>, ConfigError>
    where
        M: Merge<S::Response>,
    {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.branches.is_empty() {
            return Err(ConfigError::new(
                "branch",
                "a fan-out needs at least one branch",
            ));
        }
        let mut seen = HashSet::new();
        for branch in &self.branches {
            if branch.name().is_empty() {
                return Err(ConfigError::new("branch", "branch names must not be empty"));
            }
            if !seen.insert(branch.name()) {
                return Err(ConfigError::new(
                    "branch",
                    format!("branch name `{}` is used twice", branch.name()),
                ));
            }
            if let Err(error) = branch.settings.validate() {
                return Err(ConfigError::new(
                    error.field().to_owned(),
                    format!(
                        "{} of branch `{}` {}",
                        error.field(),
                        branch.name(),
                        error.reason()
                    ),
                ));
            }
        }
        self.settings.validate()?;
        let names: Vec<&str> = self.branches.iter().map(Branch::name).collect();
        self.merge.check(&names)?;

        let timed = self.settings.deadline.is_some()
            || self.carried_deadline.is_some()
            || self.branches.iter().any(|b| b.settings.timeout.is_some());
        let metrics = GatherMetrics::new(&self.name);
        let names = self.branches.iter().map(|b| Arc::clone(&b.name)).collect();
        let summary = Arc::new(Summary {
            name: Arc::clone(&self.name),
            settings: self.settings.clone(),
            branches: self
                .branches
                .iter()
                .map(|b| (Arc::clone(&b.name), b.settings, b.has_fallback()))
                .collect(),
        });
        let branches = self
            .branches
            .into_iter()
            .map(|branch| BranchState {
                metrics: BranchMetrics::new(&self.name, &branch.name),
                branch,
            })
            .collect();
        Ok(FanOut::new(Arc::new(Shared {
            name: self.name,
            names,
            branches,
            deadline: self.settings.deadline,
            carried_deadline: self.carried_deadline,
            max_in_flight: self.settings.max_in_flight.unwrap_or(usize::MAX),
            timed,
            merge: self.merge,
            metrics,
            summary,
        })))
    }
}

impl<S, Req, BReq, M> fmt::Debug for FanOutBuilder<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOutBuilder")
            .field("name", &self.name)
            .field(
                "branches",
                &self.branches.iter().map(Branch::name).collect::<Vec<_>>(),
            )
            .field("deadline", &self.settings.deadline)
            .field("max_in_flight", &self.settings.max_in_flight)
            .finish_non_exhaustive()
    }
}
