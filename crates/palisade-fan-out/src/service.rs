//! [`FanOut`]: the scatter-gather service, and its builder.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{BoxError, ConfigError};
use tower_service::Service;

use crate::branch::Branch;
use crate::future::ResponseFuture;
use crate::gather::Gathered;
use crate::merge::{JsonMerge, Merge, MergeFn};
use crate::metrics::{BranchMetrics, GatherMetrics};

// ===== Shared =====

/// A branch as the fan-out keeps it: its config and its metric handles.
pub(crate) struct BranchState<S, Req, BReq>
where
    S: Service<BReq>,
{
    pub(crate) branch: Branch<S, Req, BReq>,
    pub(crate) metrics: BranchMetrics,
}

impl<S, Req, BReq> std::ops::Deref for BranchState<S, Req, BReq>
where
    S: Service<BReq>,
{
    type Target = Branch<S, Req, BReq>;

    fn deref(&self) -> &Self::Target {
        &self.branch
    }
}

/// Everything a fan-out and its clones share, built once.
pub(crate) struct Shared<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    pub(crate) name: Arc<str>,
    pub(crate) names: Box<[Arc<str>]>,
    pub(crate) branches: Box<[BranchState<S, Req, BReq>]>,
    pub(crate) deadline: Option<Duration>,
    /// Reads the deadline an incoming request carries, if set.
    pub(crate) carried_deadline: Option<CarriedDeadline<Req>>,
    pub(crate) max_in_flight: usize,
    /// Some branch has a timeout, or there is a deadline: the gather needs
    /// its timer.
    pub(crate) timed: bool,
    pub(crate) merge: M,
    pub(crate) metrics: GatherMetrics,
}

// ===== FanOut =====

/// Calls every branch concurrently with a request built from the incoming
/// one, then merges their answers: scatter-gather as a tower [`Service`].
///
/// Built with [`FanOut::builder`]; see the [crate docs](crate) for the
/// behaviour. Cloning is one reference-count increment: the branches, their
/// services and the metric handles are shared, never copied.
pub struct FanOut<S, Req, BReq = Req, M = JsonMerge>
where
    S: Service<BReq>,
{
    shared: Arc<Shared<S, Req, BReq, M>>,
}

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
            deadline: None,
            carried_deadline: None,
            max_in_flight: None,
            merge: JsonMerge::keyed(),
        }
    }
}

impl<S, Req, BReq, M> FanOut<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    /// The fan-out's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The branches' names, in declaration order.
    pub fn branch_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.shared.names.iter().map(|n| &**n)
    }

    /// The branches, in declaration order.
    pub fn branches(&self) -> impl ExactSizeIterator<Item = &Branch<S, Req, BReq>> + '_ {
        self.shared.branches.iter().map(|b| &b.branch)
    }

    /// The overall deadline, if any.
    #[must_use]
    pub fn deadline(&self) -> Option<Duration> {
        self.shared.deadline
    }

    /// The cap on branches in flight at once within one gather, if any.
    #[must_use]
    pub fn max_in_flight(&self) -> Option<usize> {
        (self.shared.max_in_flight != usize::MAX).then_some(self.shared.max_in_flight)
    }

    /// The merge.
    #[must_use]
    pub fn merge(&self) -> &M {
        &self.shared.merge
    }
}

impl<S, Req, BReq, M> Clone for FanOut<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, Req, BReq, M> fmt::Debug for FanOut<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("name", &self.shared.name)
            .field("branches", &self.shared.names)
            .field("deadline", &self.shared.deadline)
            .field("max_in_flight", &self.max_in_flight())
            .finish_non_exhaustive()
    }
}

impl<S, Req, BReq, M> Service<Req> for FanOut<S, Req, BReq, M>
where
    S: Service<BReq> + Clone,
    S::Error: Into<BoxError>,
    M: Merge<S::Response>,
{
    type Response = M::Response;
    type Error = M::Error;
    type Future = ResponseFuture<S, Req, BReq, M>;

    /// Always ready, reserving nothing: each branch is polled ready inside the
    /// gather, only when it is about to be called, so one branch slow to
    /// become ready never holds up the others (see "Backpressure" in the
    /// crate docs).
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(Arc::clone(&self.shared), &request)
    }
}

// ===== FanOutBuilder =====

/// Builds a [`FanOut`]; from [`FanOut::builder`].
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
    deadline: Option<Duration>,
    carried_deadline: Option<CarriedDeadline<Req>>,
    max_in_flight: Option<usize>,
    merge: M,
}

/// Reads the [`Deadline`](palisade_core::Deadline) an incoming request
/// carries: see [`FanOutBuilder::carried_deadline`].
pub type CarriedDeadline<Req> = fn(&Req) -> Option<palisade_core::Deadline>;

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

    /// The deadline for the whole gather, from its first poll: when it
    /// elapses, optional branches still pending count as `deadline` failures
    /// and the answer holds what completed; a required branch still pending
    /// fails the gather with [`DeadlineElapsed`](crate::DeadlineElapsed).
    /// Must be more than zero.
    #[must_use]
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
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
        self.max_in_flight = Some(max);
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
            deadline: self.deadline,
            carried_deadline: self.carried_deadline,
            max_in_flight: self.max_in_flight,
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
    /// an empty or duplicate name), `timeout` (zero), `deadline` (zero),
    /// `max_in_flight` (zero), or whatever the merge's
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
            if branch.timeout.is_some_and(|t| t.is_zero()) {
                return Err(ConfigError::new(
                    "timeout",
                    format!(
                        "timeout of branch `{}` must be more than zero",
                        branch.name()
                    ),
                ));
            }
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("deadline", "must be more than zero"));
        }
        if self.max_in_flight == Some(0) {
            return Err(ConfigError::new(
                "max_in_flight",
                "must be at least 1, got 0",
            ));
        }
        let names: Vec<&str> = self.branches.iter().map(Branch::name).collect();
        self.merge.check(&names)?;

        let timed = self.deadline.is_some()
            || self.carried_deadline.is_some()
            || self.branches.iter().any(|b| b.timeout.is_some());
        let metrics = GatherMetrics::new(&self.name);
        let names = self.branches.iter().map(|b| Arc::clone(&b.name)).collect();
        let branches = self
            .branches
            .into_iter()
            .map(|branch| BranchState {
                metrics: BranchMetrics::new(&self.name, &branch.name),
                branch,
            })
            .collect();
        Ok(FanOut {
            shared: Arc::new(Shared {
                name: self.name,
                names,
                branches,
                deadline: self.deadline,
                carried_deadline: self.carried_deadline,
                max_in_flight: self.max_in_flight.unwrap_or(usize::MAX),
                timed,
                merge: self.merge,
                metrics,
            }),
        })
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
            .field("deadline", &self.deadline)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}
