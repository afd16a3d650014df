//! [`FanOut`]: the scatter-gather service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::BoxError;
use tower_service::Service;

use crate::branch::Branch;
use crate::future::ResponseFuture;
use crate::handle::FanOutHandle;
use crate::merge::{JsonMerge, Merge};
use crate::shared::Shared;

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

impl<S, Req, BReq, M> FanOut<S, Req, BReq, M>
where
    S: Service<BReq>,
{
    /// A fan-out over `shared` (built by the builder).
    pub(crate) const fn new(shared: Arc<Shared<S, Req, BReq, M>>) -> Self {
        Self { shared }
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

    /// The handle that reads the fan-out's name and settings (for an admin
    /// API; see [`FanOutHandle`]). Every clone's handle is the same.
    #[must_use]
    pub fn handle(&self) -> FanOutHandle {
        FanOutHandle::new(Arc::clone(&self.shared.summary))
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
