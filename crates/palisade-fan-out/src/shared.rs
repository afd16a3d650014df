//! What a fan-out and all its clones share in one `Arc`, built once: the
//! branches with their metric handles, the settings the gather reads, the
//! merge and the gather's metric handles.

use std::sync::Arc;
use std::time::Duration;

use tower_service::Service;

use crate::branch::Branch;
use crate::metrics::{BranchMetrics, GatherMetrics};
use crate::settings::{BranchSettings, FanOutSettings};

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
    /// `usize::MAX`: no cap.
    pub(crate) max_in_flight: usize,
    /// Some branch has a timeout, or there is a deadline: the gather needs
    /// its timer.
    pub(crate) timed: bool,
    pub(crate) merge: M,
    pub(crate) metrics: GatherMetrics,
    /// The name and settings, for the handle.
    pub(crate) summary: Arc<Summary>,
}

/// Reads the [`Deadline`](palisade_core::Deadline) an incoming request
/// carries: see [`FanOutBuilder::carried_deadline`](crate::FanOutBuilder::carried_deadline).
pub type CarriedDeadline<Req> = fn(&Req) -> Option<palisade_core::Deadline>;

/// A fan-out's name and settings, and its branches': what its handle reads.
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) name: Arc<str>,
    pub(crate) settings: FanOutSettings,
    /// Each branch's name, settings and whether it has a fallback.
    pub(crate) branches: Box<[(Arc<str>, BranchSettings, bool)]>,
}
