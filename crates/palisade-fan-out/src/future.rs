//! The gather future: drives every branch to readiness and to its answer,
//! enforces timeouts and the deadline, and merges.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

use crate::error::{
    BranchError, BranchErrorKind, DeadlineElapsed, GatherError, NothingSucceeded,
    RequiredBranchFailed,
};
use crate::merge::Merge;
use crate::metrics::{BranchOutcome, GatherResult};
use crate::shared::Shared;
use crate::state::{BranchResult, Chunk, Gathered, ResultTable};

// ===== Entry =====

/// Where a branch is in its gather (the unpinned half of its state; the
/// pinned half, its service and call future, lives in the slot chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Its request could not be built (the error waits in `result` as
    /// `Missing`); settled on the first poll.
    Unbuilt,
    /// Waiting for a place under `max_in_flight`.
    Queued,
    /// Started: its service is being polled ready.
    Starting,
    /// Called: its response future is being polled.
    Running,
    /// Settled: `result` is set (or the gather is failing).
    Done,
}

#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) phase: Phase,
    pub(crate) started: Option<Instant>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) span: Span,
    pub(crate) result: Option<BranchResult<T>>,
}

impl<T> Entry<T> {
    pub(crate) const fn queued() -> Self {
        Self {
            phase: Phase::Queued,
            started: None,
            deadline: None,
            span: Span::none(),
            result: None,
        }
    }

    pub(crate) const fn unbuilt(error: BranchError) -> Self {
        Self {
            phase: Phase::Unbuilt,
            started: None,
            deadline: None,
            span: Span::none(),
            result: Some(BranchResult::Missing(error)),
        }
    }

    /// A slot past the last branch: never visited.
    pub(crate) const fn vacant() -> Self {
        Self {
            phase: Phase::Done,
            started: None,
            deadline: None,
            span: Span::none(),
            result: None,
        }
    }

    /// Started and not settled: holds a place under `max_in_flight`.
    pub(crate) const fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Running)
    }
}

/// The entries of a gather, by index (inside its pinned slot chunk).
trait EntryTable<T> {
    fn entry(&self, i: usize) -> Option<&Entry<T>>;
    fn entry_mut(&mut self, i: usize) -> Option<&mut Entry<T>>;
}

pin_project! {
    /// One branch's pinned state: its service clone and request until it is
    /// called, then its response future.
    #[project = SlotProj]
    pub(crate) enum Slot<S, BReq, F> {
        Empty,
        Waiting { service: S, request: Option<BReq> },
        Running { #[pin] future: F },
    }
}

pin_project! {
    /// One branch in the gather's chunk: its pinned call and its unpinned
    /// bookkeeping and result, side by side in the one allocation.
    #[project = CellProj]
    pub(crate) struct Cell<S, BReq, F, T> {
        #[pin]
        slot: Slot<S, BReq, F>,
        entry: Entry<T>,
    }
}

impl<S, BReq, F, T> Cell<S, BReq, F, T> {
    const fn vacant() -> Self {
        Self {
            slot: Slot::Empty,
            entry: Entry::vacant(),
        }
    }
}

type Cells<S, BReq> =
    Chunk<Cell<S, BReq, <S as Service<BReq>>::Future, <S as Service<BReq>>::Response>>;

impl<S, BReq, F, T> EntryTable<T> for Pin<&mut Chunk<Cell<S, BReq, F, T>>> {
    fn entry(&self, i: usize) -> Option<&Entry<T>> {
        let cell = self.as_ref().shared(i)?;
        Some(cell.project_ref().entry)
    }

    fn entry_mut(&mut self, i: usize) -> Option<&mut Entry<T>> {
        let cell = self.as_mut().get(i)?;
        Some(cell.project().entry)
    }
}

// The merge's view: the results alone. `#[inline]`: the merge reads each
// branch's result through these, and without the hint they stayed calls
// (about 100 instructions more per gather of six, measured with callgrind).
impl<S, BReq, F, T> ResultTable<T> for Pin<&mut Chunk<Cell<S, BReq, F, T>>> {
    #[inline]
    fn result(&self, i: usize) -> Option<&Option<BranchResult<T>>> {
        let cell = self.as_ref().shared(i)?;
        Some(&cell.project_ref().entry.result)
    }

    #[inline]
    fn result_mut(&mut self, i: usize) -> Option<&mut Option<BranchResult<T>>> {
        let cell = self.as_mut().get(i)?;
        Some(&mut cell.project().entry.result)
    }
}

pin_project! {
    /// The gather's one timer, set to the earliest pending deadline (a branch
    /// timeout or the overall deadline). Created only when a gather actually
    /// has to wait, so branches that answer at once never touch the timer
    /// wheel.
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not polled yet.
    New,
    /// Branches are running.
    Gathering,
    /// Answered (or failed); branch futures are gone.
    Finished,
}

/// The bookkeeping of one gather.
#[derive(Debug)]
struct Progress {
    state: State,
    began: Option<Instant>,
    deadline: Option<Instant>,
    /// The deadline the incoming request carried, if one was read.
    carried: Option<Instant>,
    in_flight: usize,
    /// Branches not yet settled.
    remaining: usize,
    /// Branches waiting for a place under `max_in_flight`.
    queued: usize,
}

pin_project! {
    /// The response future of [`FanOut`](crate::FanOut).
    ///
    /// Holds one allocation for the branch calls and their results (up to
    /// eight branches; one more per further eight). Dropping it cancels every
    /// branch call still running.
    ///
    /// # Panics
    ///
    /// When polled again after it completed, like most futures.
    pub struct ResponseFuture<S, Req, BReq, M>
    where
        S: Service<BReq>,
        M: Merge<S::Response>,
    {
        shared: Arc<Shared<S, Req, BReq, M>>,
        cells: Pin<Box<Cells<S, BReq>>>,
        progress: Progress,
        span: Span,
        #[pin]
        timer: Timer,
    }

    impl<S, Req, BReq, M> PinnedDrop for ResponseFuture<S, Req, BReq, M>
    where
        S: Service<BReq>,
        M: Merge<S::Response>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.progress.state != State::Finished {
                // The caller gave up: every call still planned or running is
                // cancelled (the slots drop with this future).
                let now = Instant::now();
                cancel_rest(this.shared, this.cells.as_mut(), now);
                let elapsed = this.progress.began.map(|began| now.saturating_duration_since(began));
                this.shared.metrics.record(GatherResult::Cancelled, elapsed);
                this.span.record("result", GatherResult::Cancelled.as_str());
            }
        }
    }
}

impl<S, Req, BReq, M> ResponseFuture<S, Req, BReq, M>
where
    S: Service<BReq> + Clone,
    M: Merge<S::Response>,
{
    pub(crate) fn new(shared: Arc<Shared<S, Req, BReq, M>>, request: &Req) -> Self {
        let n = shared.branches.len();
        let carried = shared
            .carried_deadline
            .and_then(|read| read(request))
            .map(|deadline| deadline.instant());
        let span = tracing::debug_span!("fan_out", name = %shared.name, result = Empty);
        let mut queued = 0;
        let cells = Chunk::pinned(
            n,
            &mut |i| {
                let branch = &shared.branches[i];
                match branch.map_request(request) {
                    Ok(request) => {
                        queued += 1;
                        Cell {
                            slot: Slot::Waiting {
                                service: branch.service.clone(),
                                request: Some(request),
                            },
                            entry: Entry::queued(),
                        }
                    }
                    Err(error) => Cell {
                        slot: Slot::Empty,
                        entry: Entry::unbuilt(error),
                    },
                }
            },
            Cell::vacant,
        );
        Self {
            progress: Progress {
                state: State::New,
                began: None,
                deadline: None,
                carried,
                in_flight: 0,
                remaining: n,
                queued,
            },
            shared,
            cells,
            span,
            timer: Timer::Idle,
        }
    }
}

/// How a gather ends.
enum End {
    /// Every branch is settled and at least one answered.
    Merge,
    Failed(GatherError),
}

impl<S, Req, BReq, M> Future for ResponseFuture<S, Req, BReq, M>
where
    S: Service<BReq>,
    S::Error: Into<BoxError>,
    M: Merge<S::Response>,
{
    type Output = Result<M::Response, M::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared: &Shared<S, Req, BReq, M> = this.shared;
        let _enter = this.span.enter();
        assert!(
            this.progress.state != State::Finished,
            "fan-out response future polled after completion"
        );
        let (end, now) = match drive(
            shared,
            this.cells.as_mut(),
            this.progress,
            this.timer.as_mut(),
            this.span,
            cx,
        ) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(ended) => ended,
        };

        // Finished: cancel whatever still runs (a required branch failed),
        // dropping every branch future at once.
        this.progress.state = State::Finished;
        this.timer.set(Timer::Idle);
        cancel_rest(shared, this.cells.as_mut(), now);
        let elapsed = this
            .progress
            .began
            .map(|began| now.saturating_duration_since(began));
        match end {
            End::Failed(error) => {
                shared.metrics.record(GatherResult::Failed, elapsed);
                this.span.record("result", GatherResult::Failed.as_str());
                tracing::debug!(name = %shared.name, error = %error, reason = error.as_str(), "fan-out gather failed");
                Poll::Ready(shared.merge.fail(error))
            }
            End::Merge => {
                let mut table = this.cells.as_mut();
                let gathered = Gathered::new(&shared.name, &shared.names, &mut table);
                let result = if gathered.is_complete() {
                    GatherResult::Complete
                } else {
                    GatherResult::Partial
                };
                shared.metrics.record(result, elapsed);
                this.span.record("result", result.as_str());
                Poll::Ready(shared.merge.merge(gathered))
            }
        }
    }
}

/// Polls every branch, starts queued ones, enforces timeouts and the
/// deadline. `Ready` carries how the gather ends and the time it ended.
fn drive<S, Req, BReq, M>(
    shared: &Shared<S, Req, BReq, M>,
    mut cells: Pin<&mut Cells<S, BReq>>,
    progress: &mut Progress,
    mut timer: Pin<&mut Timer>,
    span: &Span,
    cx: &mut Context<'_>,
) -> Poll<(End, Instant)>
where
    S: Service<BReq>,
    S::Error: Into<BoxError>,
    M: Merge<S::Response>,
{
    let n = shared.branches.len();
    loop {
        // One clock read per pass: branch start times, latencies and
        // timeouts all use it.
        let now = Instant::now();

        if progress.state == State::New {
            progress.state = State::Gathering;
            progress.began = Some(now);
            let own = shared.deadline.and_then(|d| now.checked_add(d));
            // The caller's deadline, when it comes first: the gather gets
            // what is left of it.
            progress.deadline = match (own, progress.carried) {
                (Some(own), Some(carried)) => Some(own.min(carried)),
                (own, carried) => own.or(carried),
            };
            // Requests that could not be built settle before anything starts,
            // so a required one fails the gather without calling anyone.
            for i in 0..n {
                let Some(cell) = cells.as_mut().get(i) else {
                    break;
                };
                let entry = cell.project().entry;
                if entry.phase != Phase::Unbuilt {
                    continue;
                }
                if let Some(BranchResult::Missing(error)) = entry.result.take()
                    && let Err(failed) = settle(shared, i, entry, Err(error), now, progress)
                {
                    return Poll::Ready((End::Failed(failed), now));
                }
            }
        }

        // The pass: branches in declaration order. A branch that finishes
        // frees its place for the next queued one in the same pass (queued
        // branches always come after started ones).
        for i in 0..n {
            let Some(cell) = cells.as_mut().get(i) else {
                break;
            };
            let CellProj { slot, entry } = cell.project();
            match entry.phase {
                Phase::Queued if progress.in_flight < shared.max_in_flight => {
                    start(shared, i, entry, now, span);
                    progress.in_flight += 1;
                    progress.queued -= 1;
                }
                Phase::Starting | Phase::Running => {}
                Phase::Queued | Phase::Unbuilt | Phase::Done => continue,
            }
            if let Poll::Ready(result) = poll_branch(slot, entry, cx) {
                progress.in_flight -= 1;
                let result = result.map_err(BranchError::from_service);
                if let Err(failed) = settle(shared, i, entry, result, now, progress) {
                    return Poll::Ready((End::Failed(failed), now));
                }
            }
        }

        let mut expired = false;
        if shared.timed {
            let overall = progress.deadline.is_some_and(|at| at <= now);
            let mut pending = Vec::new();
            for i in 0..n {
                let Some(cell) = cells.as_mut().get(i) else {
                    break;
                };
                let CellProj { mut slot, entry } = cell.project();
                // Branch timeouts (readiness counts: a branch stuck in
                // `poll_ready` times out like one stuck in its call), then
                // the overall deadline: what has not answered is cut off.
                let error = if entry.is_active() && entry.deadline.is_some_and(|at| at <= now) {
                    BranchError::timed_out(shared.branches[i].settings.timeout.unwrap_or_default())
                } else if overall
                    && matches!(
                        entry.phase,
                        Phase::Queued | Phase::Starting | Phase::Running
                    )
                {
                    BranchError::deadline()
                } else {
                    continue;
                };
                if entry.is_active() {
                    slot.set(Slot::Empty);
                    progress.in_flight -= 1;
                } else {
                    progress.queued -= 1;
                }
                expired = true;
                let cut_by_deadline = error.kind() == BranchErrorKind::Deadline;
                match settle(shared, i, entry, Err(error), now, progress) {
                    Ok(()) => {}
                    // A required branch cut by the deadline: the gather fails
                    // with `DeadlineElapsed`, naming every such branch.
                    Err(GatherError::RequiredBranchFailed(_)) if cut_by_deadline => {
                        pending.push(Arc::clone(&shared.branches[i].name));
                    }
                    Err(failed) => return Poll::Ready((End::Failed(failed), now)),
                }
            }
            if !pending.is_empty() {
                let deadline = progress
                    .deadline
                    .zip(progress.began)
                    .map(|(at, began)| at.saturating_duration_since(began))
                    .or(shared.deadline)
                    .unwrap_or_default();
                let failed = DeadlineElapsed::new(Arc::clone(&shared.name), deadline, pending);
                return Poll::Ready((End::Failed(GatherError::DeadlineElapsed(failed)), now));
            }
        }

        if progress.remaining == 0 {
            let answered = (0..n).any(|i| {
                cells
                    .as_mut()
                    .entry(i)
                    .and_then(|e| e.result.as_ref())
                    .is_some_and(BranchResult::is_answered)
            });
            if answered {
                return Poll::Ready((End::Merge, now));
            }
            let errors = (0..n)
                .filter_map(|i| match cells.as_mut().entry_mut(i)?.result.take()? {
                    BranchResult::Missing(error) | BranchResult::Fallback { error, .. } => {
                        Some((Arc::clone(&shared.names[i]), error))
                    }
                    BranchResult::Answered(_) => None,
                })
                .collect();
            let failed = NothingSucceeded::new(Arc::clone(&shared.name), errors);
            return Poll::Ready((End::Failed(GatherError::NothingSucceeded(failed)), now));
        }

        if expired && progress.queued > 0 && progress.in_flight < shared.max_in_flight {
            // Timeouts freed places: start the next queued branches now.
            continue;
        }

        if !shared.timed {
            return Poll::Pending;
        }
        let table = cells.as_mut();
        let next = (0..n)
            .filter_map(|i| table.entry(i))
            .filter(|e| e.is_active())
            .filter_map(|e| e.deadline)
            .chain(progress.deadline)
            .min();
        let Some(at) = next else {
            return Poll::Pending;
        };
        if arm(timer.as_mut(), at, cx).is_pending() {
            return Poll::Pending;
        }
        // The timer already fired: go round again with a fresh clock.
    }
}

/// Starts branch `i`: its timeout and span begin now; its service is polled
/// ready from here on.
fn start<S, Req, BReq, M, T>(
    shared: &Shared<S, Req, BReq, M>,
    i: usize,
    entry: &mut Entry<T>,
    now: Instant,
    parent: &Span,
) where
    S: Service<BReq>,
{
    let branch = &shared.branches[i];
    entry.phase = Phase::Starting;
    entry.started = Some(now);
    entry.deadline = branch.settings.timeout.and_then(|t| now.checked_add(t));
    entry.span = tracing::debug_span!(
        parent: parent,
        "branch",
        branch = %branch.name,
        outcome = Empty,
        latency_ms = Empty,
    );
}

/// Drives one branch: readiness, then the call, then its future.
fn poll_branch<S, BReq>(
    mut slot: Pin<&mut Slot<S, BReq, S::Future>>,
    entry: &mut Entry<S::Response>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, S::Error>>
where
    S: Service<BReq>,
{
    let _enter = entry.span.enter();
    if let SlotProj::Waiting { service, request } = slot.as_mut().project() {
        match service.poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => {
                slot.set(Slot::Empty);
                return Poll::Ready(Err(error));
            }
            Poll::Ready(Ok(())) => {
                // The service clone was polled ready for exactly this call;
                // it is dropped once called (the `oneshot` pattern).
                let request = request
                    .take()
                    .expect("a waiting branch holds its request until called");
                let future = service.call(request);
                slot.set(Slot::Running { future });
                entry.phase = Phase::Running;
            }
        }
    }
    match slot.as_mut().project() {
        SlotProj::Running { future } => match future.poll(cx) {
            Poll::Ready(result) => {
                slot.set(Slot::Empty);
                Poll::Ready(result)
            }
            Poll::Pending => Poll::Pending,
        },
        SlotProj::Waiting { .. } | SlotProj::Empty => Poll::Pending,
    }
}

/// Settles branch `i` with `result`: metrics, span, fallback. A required
/// branch that failed without a fallback fails the gather.
fn settle<S, Req, BReq, M>(
    shared: &Shared<S, Req, BReq, M>,
    i: usize,
    entry: &mut Entry<S::Response>,
    result: Result<S::Response, BranchError>,
    now: Instant,
    progress: &mut Progress,
) -> Result<(), GatherError>
where
    S: Service<BReq>,
{
    let branch = &shared.branches[i];
    entry.phase = Phase::Done;
    progress.remaining -= 1;
    let elapsed = entry.started.map(|s| now.saturating_duration_since(s));
    let outcome = match &result {
        Ok(_) => BranchOutcome::Success,
        Err(error) => BranchOutcome::Error(error.kind()),
    };
    branch.metrics.record(outcome, elapsed);
    close_span(entry, outcome, elapsed);
    match result {
        Ok(value) => entry.result = Some(BranchResult::Answered(value)),
        Err(error) => {
            tracing::debug!(
                branch = %branch.name,
                reason = error.kind().as_str(),
                error = %error,
                "fan-out branch failed"
            );
            if let Some(value) = branch.fallback_for(&error) {
                entry.result = Some(BranchResult::Fallback { value, error });
            } else if branch.settings.required {
                return Err(GatherError::RequiredBranchFailed(
                    RequiredBranchFailed::new(
                        Arc::clone(&shared.name),
                        Arc::clone(&branch.name),
                        error,
                    ),
                ));
            } else {
                entry.result = Some(BranchResult::Missing(error));
            }
        }
    }
    Ok(())
}

fn close_span<T>(
    entry: &mut Entry<T>,
    outcome: BranchOutcome,
    elapsed: Option<std::time::Duration>,
) {
    if entry.span.is_none() {
        return;
    }
    entry.span.record("outcome", outcome.as_str());
    if let Some(elapsed) = elapsed {
        entry
            .span
            .record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    }
    // Close the branch span now, not when the gather ends.
    entry.span = Span::none();
}

/// Drops every branch call still running and counts every branch that did
/// not settle as cancelled (a call dropped before its answer, or one that
/// never started).
fn cancel_rest<S, Req, BReq, M>(
    shared: &Shared<S, Req, BReq, M>,
    mut cells: Pin<&mut Cells<S, BReq>>,
    now: Instant,
) where
    S: Service<BReq>,
{
    for (i, branch) in shared.branches.iter().enumerate() {
        let Some(cell) = cells.as_mut().get(i) else {
            break;
        };
        let CellProj { mut slot, entry } = cell.project();
        let outcome = match entry.phase {
            Phase::Done => continue,
            Phase::Unbuilt => BranchOutcome::Error(BranchErrorKind::Request),
            Phase::Queued | Phase::Starting | Phase::Running => BranchOutcome::Cancelled,
        };
        slot.set(Slot::Empty);
        let elapsed = entry.started.map(|s| now.saturating_duration_since(s));
        branch.metrics.record(outcome, elapsed);
        close_span(entry, outcome, elapsed);
        entry.phase = Phase::Done;
    }
}

/// Sets the timer to `at` and polls it.
fn arm(mut timer: Pin<&mut Timer>, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
    if let TimerProj::Armed { mut sleep } = timer.as_mut().project() {
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        return sleep.poll(cx);
    }
    timer.set(Timer::Armed {
        sleep: tokio::time::sleep_until(at),
    });
    match timer.project() {
        TimerProj::Armed { sleep } => sleep.poll(cx),
        TimerProj::Idle => Poll::Ready(()),
    }
}

impl<S, Req, BReq, M> fmt::Debug for ResponseFuture<S, Req, BReq, M>
where
    S: Service<BReq>,
    M: Merge<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("fan_out", &self.shared.name)
            .field("state", &self.progress.state)
            .field("in_flight", &self.progress.in_flight)
            .field("remaining", &self.progress.remaining)
            .finish_non_exhaustive()
    }
}
