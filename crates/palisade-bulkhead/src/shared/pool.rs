//! One pool of permits: a FIFO-fair semaphore whose limit changes at runtime.
//!
//! # Design
//!
//! The pool's whole admission state is one `AtomicU64`:
//!
//! ```text
//!  63        62        61..32              31..0
//! RETIRED | TOUCHED | waiters (30 bits) | available permits (i32, negative = debt)
//! ```
//!
//! - **Acquire** (fast path) is one CAS: allowed only when nobody waits and a
//!   permit is available, so a newcomer can never overtake a waiter (FIFO).
//! - **Release** (fast path) is one CAS when nobody waits or the pool is in
//!   debt. Only when somebody waits does it take the pool's queue lock, and
//!   then it hands the permit straight to the oldest waiter (the permit never
//!   becomes available, so nobody can barge). tokio's `Semaphore` takes its
//!   waiter lock on every release; this pool takes it only when there is a
//!   waiter to hand to.
//! - **Resize** adds or removes permits under the queue lock. Shrinking below
//!   what is held makes `available` negative: a debt that returning permits
//!   pay off before any new call is admitted. Held permits are never revoked.
//! - **Waiters** live in a slab inside the queue lock (no allocation per
//!   waiter once the slab has grown), in FIFO order. Every change of the
//!   waiter count happens under that lock, which keeps the invariant
//!   `waiters > 0 ⇒ available ≤ 0`.
//! - **Retirement**: an idle partition pool is retired with one CAS from
//!   exactly "all permits available, nobody waiting, untouched since the last
//!   sweep" (or, when an operator reclaims idle partitions now, "all permits
//!   available, nobody waiting"); a retired pool admits nothing, so a caller
//!   that raced with the sweep looks its key up again and gets a fresh pool.
//!
//! The word's layout and the waiter queue are in `state::admission`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{BulkheadFull, Listeners, Outcome};
use tokio::time::Instant;

use crate::event::{BulkheadEvent, LimitCause, RejectReason};
use crate::metrics::PoolMetrics;
use crate::settings::{AdaptiveLimit, MAX_LIMIT, MAX_QUEUE};
use crate::state::admission::{
    ONE_WAITER, RETIRED, Slot, TOUCHED, WaitQueue, avail, waiters, with_avail,
};
use crate::state::limiter::{Limiter, Sample, Signal};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here never panic half-way through a change, so a
    // poisoned lock still guards consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ===== Common =====

/// What every pool of one bulkhead shares.
#[derive(Debug)]
pub(crate) struct Common {
    pub(crate) name: Arc<str>,
    /// Nanoseconds; `u64::MAX` waits without a deadline.
    max_wait: AtomicU64,
    /// `usize::MAX`: unbounded.
    max_queue: AtomicUsize,
    pub(crate) rejected: AtomicU64,
    pub(crate) listeners: Listeners<BulkheadEvent>,
    pub(crate) adaptive: Option<AdaptiveLimit>,
    pub(crate) per_partition_metrics: bool,
}

pub(crate) fn wait_nanos(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)
}

impl Common {
    pub(crate) fn new(
        name: Arc<str>,
        max_wait: Duration,
        max_queue: Option<usize>,
        listeners: Listeners<BulkheadEvent>,
        adaptive: Option<AdaptiveLimit>,
        per_partition_metrics: bool,
    ) -> Self {
        Self {
            name,
            max_wait: AtomicU64::new(wait_nanos(max_wait)),
            max_queue: AtomicUsize::new(max_queue.unwrap_or(usize::MAX)),
            rejected: AtomicU64::new(0),
            listeners,
            adaptive,
            per_partition_metrics,
        }
    }

    /// `None`: wait without a deadline.
    #[inline]
    pub(crate) fn max_wait(&self) -> Option<Duration> {
        match self.max_wait.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    pub(crate) fn set_max_wait(&self, wait: Duration) {
        self.max_wait.store(wait_nanos(wait), Ordering::Relaxed);
    }

    /// `None`: unbounded.
    pub(crate) fn max_queue(&self) -> Option<usize> {
        match self.max_queue.load(Ordering::Relaxed) {
            usize::MAX => None,
            n => Some(n),
        }
    }

    pub(crate) fn set_max_queue(&self, max: Option<usize>) {
        self.max_queue
            .store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
    }
}

// ===== Pool =====

/// Why `try_acquire` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TryAcquire {
    /// No permit free, or somebody is already waiting.
    Full,
    /// The pool was reclaimed: look the key up again.
    Retired,
}

/// What `enqueue` did.
#[derive(Debug)]
pub(crate) enum Enqueued {
    /// A permit freed up in the meantime.
    Acquired(Permit),
    /// The call waits its turn.
    Queued(Ticket),
    /// `max_queue` calls already wait.
    QueueFull,
    /// The pool was reclaimed: look the key up again.
    Retired,
}

/// Whether a sweep found a pool idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// In use: keep it.
    Busy,
    /// Idle, but used since the previous sweep: keep it for one more round.
    Kept,
    /// Idle since the previous sweep: retired, remove it.
    Retired,
}

/// A pool's figures at one moment (the handle turns them into a
/// `PoolSnapshot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolView {
    pub(crate) limit: usize,
    pub(crate) in_flight: usize,
    pub(crate) queued: usize,
    pub(crate) available: usize,
    pub(crate) rejected: u64,
}

/// One pool of permits.
///
/// `repr(C)` keeps the admission word first, right after the `Arc`'s
/// reference counts: the four atomic operations of a call (count up, take,
/// give back, count down) then touch one cache line, which matters when
/// threads contend for it.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Pool {
    state: AtomicU64,
    /// Written only under `queue`'s lock.
    limit: AtomicUsize,
    queue: Mutex<WaitQueue>,
    rejected: AtomicU64,
    partition: Option<Arc<str>>,
    pub(crate) common: Arc<Common>,
    metrics: PoolMetrics,
    limiter: Option<Mutex<Limiter>>,
}

impl Pool {
    /// A pool with `limit` permits (for an adaptive bulkhead, the limiter's
    /// starting point is `limit` clamped to its bounds).
    pub(crate) fn new(common: Arc<Common>, partition: Option<Arc<str>>, limit: usize) -> Self {
        let metrics = PoolMetrics::new(
            &common.name,
            partition.as_ref(),
            common.per_partition_metrics,
        );
        let mut limiter = common.adaptive.clone().map(Limiter::new);
        let limit = match &mut limiter {
            Some(limiter) => limiter.set_limit(limit),
            None => limit.min(MAX_LIMIT),
        };
        let limiter = limiter.map(Mutex::new);
        #[allow(clippy::cast_precision_loss, reason = "limits are at most 2^29")]
        metrics.limit.set(limit as f64);
        Self {
            state: AtomicU64::new(with_avail(0, limit as i64)),
            limit: AtomicUsize::new(limit),
            queue: Mutex::new(WaitQueue::default()),
            rejected: AtomicU64::new(0),
            partition,
            common,
            metrics,
            limiter,
        }
    }

    pub(crate) fn partition(&self) -> Option<&Arc<str>> {
        self.partition.as_ref()
    }

    /// Takes a permit if one is free and nobody waits, without building the
    /// [`Permit`]: the caller must build exactly one (with
    /// [`Permit::taken`]) right after `Ok`.
    #[inline]
    pub(crate) fn try_take(&self) -> Result<(), TryAcquire> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & RETIRED != 0 {
                return Err(TryAcquire::Retired);
            }
            if waiters(s) != 0 || avail(s) <= 0 {
                return Err(TryAcquire::Full);
            }
            let next = with_avail(s, avail(s) - 1) | TOUCHED;
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.metrics.in_flight.increment(1.0);
                    return Ok(());
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// Takes a permit if one is free and nobody waits.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Result<Permit, TryAcquire> {
        self.try_take()?;
        Ok(Permit::taken(Arc::clone(self)))
    }

    /// Takes a permit if one is free, or joins the queue unless `max_queue`
    /// calls already wait.
    pub(crate) fn enqueue(self: &Arc<Self>, max_queue: usize) -> Enqueued {
        let mut queue = lock(&self.queue);
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & RETIRED != 0 {
                return Enqueued::Retired;
            }
            let next = if waiters(s) == 0 && avail(s) > 0 {
                with_avail(s, avail(s) - 1) | TOUCHED
            } else if waiters(s) as usize >= max_queue.min(MAX_QUEUE) {
                return Enqueued::QueueFull;
            } else {
                (s + ONE_WAITER) | TOUCHED
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if waiters(next) == waiters(s) => {
                    drop(queue);
                    self.metrics.in_flight.increment(1.0);
                    return Enqueued::Acquired(Permit::new(Arc::clone(self)));
                }
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let (index, generation) = queue.push();
        drop(queue);
        self.metrics.queued.increment(1.0);
        Enqueued::Queued(Ticket {
            pool: Arc::clone(self),
            index,
            generation,
            done: false,
        })
    }

    /// Gives a permit back: to the oldest waiter if there is one, else to the
    /// pool (paying off debt first).
    #[inline]
    fn release(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        while waiters(s) == 0 || avail(s) < 0 {
            match self.state.compare_exchange_weak(
                s,
                with_avail(s, avail(s) + 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.metrics.in_flight.decrement(1.0);
                    return;
                }
                Err(actual) => s = actual,
            }
        }
        self.release_locked(lock(&self.queue));
    }

    #[cold]
    fn release_locked(&self, mut queue: MutexGuard<'_, WaitQueue>) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if waiters(s) == 0 || avail(s) < 0 {
                match self.state.compare_exchange_weak(
                    s,
                    with_avail(s, avail(s) + 1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        drop(queue);
                        self.metrics.in_flight.decrement(1.0);
                        return;
                    }
                    Err(actual) => s = actual,
                }
            } else {
                debug_assert_eq!(avail(s), 0, "waiters > 0 implies available <= 0");
                // Hand the permit over: one waiter fewer, availability unchanged.
                match self.state.compare_exchange_weak(
                    s,
                    s - ONE_WAITER,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let waker = queue.grant_front();
                        drop(queue);
                        self.metrics.queued.decrement(1.0);
                        if let Some(waker) = waker {
                            waker.wake();
                        }
                        return;
                    }
                    Err(actual) => s = actual,
                }
            }
        }
    }

    /// Sets the limit, granting waiters at once when it grows. Returns the
    /// previous limit.
    fn resize(&self, limit: usize) -> usize {
        let limit = limit.min(MAX_LIMIT);
        let mut queue = lock(&self.queue);
        let old = self.limit.swap(limit, Ordering::AcqRel);
        let delta = limit as i64 - old as i64;
        if delta == 0 {
            return old;
        }
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            match self.state.compare_exchange_weak(
                s,
                with_avail(s, avail(s) + delta),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let mut wakers = Vec::new();
        if delta > 0 {
            let mut s = self.state.load(Ordering::Acquire);
            while waiters(s) > 0 && avail(s) > 0 {
                match self.state.compare_exchange_weak(
                    s,
                    with_avail(s - ONE_WAITER, avail(s) - 1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        wakers.push(queue.grant_front());
                        s = self.state.load(Ordering::Acquire);
                    }
                    Err(actual) => s = actual,
                }
            }
        }
        drop(queue);
        #[allow(clippy::cast_precision_loss, reason = "counts are at most 2^30")]
        let granted = wakers.len() as f64;
        if granted > 0.0 {
            self.metrics.queued.decrement(granted);
            self.metrics.in_flight.increment(granted);
        }
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
        old
    }

    /// Reports a limit change (with no lock held: a listener may call back
    /// into the handle).
    fn report_limit(&self, from: usize, to: usize, cause: LimitCause) {
        if from == to {
            return;
        }
        #[allow(clippy::cast_precision_loss, reason = "limits are at most 2^29")]
        self.metrics.limit.set(to as f64);
        let partition = self.partition.as_deref().unwrap_or("");
        match cause {
            LimitCause::Handle => tracing::info!(
                name = %self.common.name,
                partition,
                from,
                to,
                cause = cause.as_str(),
                "bulkhead limit changed"
            ),
            LimitCause::Adaptive => tracing::debug!(
                name = %self.common.name,
                partition,
                from,
                to,
                cause = cause.as_str(),
                "bulkhead limit changed"
            ),
        }
        self.common
            .listeners
            .emit_with(|| BulkheadEvent::LimitChanged {
                name: Arc::clone(&self.common.name),
                partition: self.partition.clone(),
                from,
                to,
                cause,
            });
    }

    /// Sets the limit from a handle; an adaptive pool's limiter carries on
    /// from the new value (clamped to its bounds). Returns the limit applied.
    pub(crate) fn set_limit(&self, limit: usize) -> usize {
        let (from, to) = match &self.limiter {
            Some(limiter) => {
                // Held while the limit is applied, so that the limiter and
                // the pool agree (lock order: limiter, then queue).
                let mut limiter = lock(limiter);
                let to = limiter.set_limit(limit);
                (self.resize(to), to)
            }
            None => (self.resize(limit), limit.min(MAX_LIMIT)),
        };
        self.report_limit(from, to, LimitCause::Handle);
        to
    }

    /// Feeds the adaptive limiter one sample and applies its answer.
    fn sample(&self, start: Start, signal: Signal) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let rtt = start.at.elapsed();
        let (from, to) = {
            // Held while the limit is applied, so that concurrent samples
            // apply their answers in the order they computed them.
            let mut limiter = lock(limiter);
            let to = limiter.sample(Sample::new(rtt, start.in_flight, signal));
            if to == self.limit.load(Ordering::Acquire) {
                return;
            }
            (self.resize(to), to)
        };
        self.report_limit(from, to, LimitCause::Adaptive);
    }

    #[inline]
    pub(crate) fn is_adaptive(&self) -> bool {
        self.limiter.is_some()
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// Calls holding a permit (granted waiters included).
    pub(crate) fn in_flight(&self) -> usize {
        let limit = self.limit.load(Ordering::Acquire) as i64;
        let held = limit - avail(self.state.load(Ordering::Acquire));
        usize::try_from(held).unwrap_or(0)
    }

    /// Calls waiting for a permit.
    pub(crate) fn queued(&self) -> usize {
        waiters(self.state.load(Ordering::Acquire)) as usize
    }

    /// A consistent view of the pool's figures (taken under its queue lock).
    pub(crate) fn view(&self) -> PoolView {
        let queue = lock(&self.queue);
        let limit = self.limit.load(Ordering::Acquire);
        let s = self.state.load(Ordering::Acquire);
        drop(queue);
        let held = usize::try_from(limit as i64 - avail(s)).unwrap_or(0);
        PoolView {
            limit,
            in_flight: held,
            queued: waiters(s) as usize,
            available: usize::try_from(avail(s)).unwrap_or(0),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Counts, logs and reports a refused call, and builds its error.
    #[cold]
    pub(crate) fn reject(&self, reason: RejectReason, waited: Option<Duration>) -> BulkheadFull {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.common.rejected.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejected(reason).increment(1);
        if let Some(waited) = waited {
            self.metrics.wait.record(waited.as_secs_f64());
        }
        tracing::debug!(
            name = %self.common.name,
            partition = self.partition.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            waited_ms = waited.map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            "bulkhead rejected a call"
        );
        self.common.listeners.emit_with(|| BulkheadEvent::Rejected {
            name: Arc::clone(&self.common.name),
            partition: self.partition.clone(),
            reason,
            waited,
        });
        let mut full = BulkheadFull::new(Arc::clone(&self.common.name));
        if let Some(partition) = &self.partition {
            full = full.with_partition(Arc::clone(partition));
        }
        if let Some(waited) = waited {
            full = full.with_waited(waited);
        }
        full
    }

    /// Records how long an admitted call waited.
    pub(crate) fn record_wait(&self, waited: Duration) {
        self.metrics.wait.record(waited.as_secs_f64());
    }

    /// Retires the pool if it has been idle since the previous sweep.
    pub(crate) fn sweep(&self) -> Sweep {
        self.retire(false)
    }

    /// Retires the pool if it is idle now (nothing held, nobody waiting),
    /// used since the previous sweep or not.
    pub(crate) fn retire_if_idle(&self) -> Sweep {
        self.retire(true)
    }

    fn retire(&self, now: bool) -> Sweep {
        let _queue = lock(&self.queue);
        let limit = self.limit.load(Ordering::Acquire) as i64;
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & RETIRED != 0 {
                return Sweep::Retired;
            }
            if waiters(s) != 0 || avail(s) != limit {
                self.state.fetch_or(TOUCHED, Ordering::AcqRel);
                return Sweep::Busy;
            }
            let (next, verdict) = if s & TOUCHED != 0 && !now {
                (s & !TOUCHED, Sweep::Kept)
            } else {
                (s | RETIRED, Sweep::Retired)
            };
            match self
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return verdict,
                Err(actual) => s = actual,
            }
        }
    }
}

// ===== Permit =====

#[derive(Clone, Copy, Debug)]
struct Start {
    at: Instant,
    in_flight: usize,
}

/// A held permit. Dropping it gives the permit back (to the oldest waiter,
/// if any).
#[derive(Debug)]
pub(crate) struct Permit {
    pool: Arc<Pool>,
    /// When the call started, for the adaptive limiter's RTT.
    start: Option<Start>,
}

impl Permit {
    #[inline]
    fn new(pool: Arc<Pool>) -> Self {
        Self { pool, start: None }
    }

    /// The permit just taken from `pool` by a successful
    /// [`Pool::try_take`].
    #[inline]
    pub(crate) fn taken(pool: Arc<Pool>) -> Self {
        Self::new(pool)
    }

    /// Marks the start of the call, when the pool is adaptive.
    #[inline]
    pub(crate) fn start_clock(&mut self) {
        if self.pool.is_adaptive() {
            self.start = Some(Start {
                at: Instant::now(),
                in_flight: self.pool.in_flight(),
            });
        }
    }

    /// `true` when the call's outcome feeds an adaptive limit.
    #[inline]
    pub(crate) fn is_sampling(&self) -> bool {
        self.start.is_some()
    }

    /// The call completed with `outcome`; the permit is released.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(start) = self.start.take() {
            match outcome {
                Outcome::Success => self.pool.sample(start, Signal::Success),
                Outcome::Failure => self.pool.sample(start, Signal::Failure),
                Outcome::Ignored => {}
            }
        }
    }

    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if let Some(start) = self.start.take() {
            // Dropped before `finish`: the call was cancelled.
            self.pool.sample(start, Signal::Cancelled);
        }
        self.pool.release();
    }
}

// ===== Ticket =====

/// A place in a pool's queue. Dropping it leaves the queue (or, if a permit
/// was already handed to it, passes the permit on).
#[derive(Debug)]
pub(crate) struct Ticket {
    pool: Arc<Pool>,
    index: u32,
    generation: u32,
    done: bool,
}

impl Ticket {
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Ready with the permit once it is this ticket's turn. After `Ready`,
    /// the ticket is spent.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Permit> {
        debug_assert!(!self.done, "ticket polled after it was spent");
        let mut queue = lock(&self.pool.queue);
        let entry = &mut queue.entries[self.index as usize];
        debug_assert_eq!(entry.generation, self.generation);
        match &mut entry.slot {
            Slot::Granted => {
                queue.free(self.index);
                drop(queue);
                self.done = true;
                Poll::Ready(Permit::new(Arc::clone(&self.pool)))
            }
            Slot::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Free => unreachable!("a live ticket's slot is never free"),
        }
    }

    /// Leaves the queue; if the permit was handed over meanwhile, returns it.
    pub(crate) fn cancel(mut self) -> Option<Permit> {
        self.leave(true)
    }

    fn leave(&mut self, keep_grant: bool) -> Option<Permit> {
        if self.done {
            return None;
        }
        self.done = true;
        let mut queue = lock(&self.pool.queue);
        let granted = matches!(queue.entries[self.index as usize].slot, Slot::Granted);
        if granted {
            queue.free(self.index);
            if keep_grant {
                drop(queue);
                return Some(Permit::new(Arc::clone(&self.pool)));
            }
            // Pass the permit on as if it had been used and released.
            self.pool.release_locked(queue);
            return None;
        }
        queue.cancel(self.index);
        self.pool.state.fetch_sub(ONE_WAITER, Ordering::AcqRel);
        drop(queue);
        self.pool.metrics.queued.decrement(1.0);
        None
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.leave(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    fn common() -> Arc<Common> {
        Arc::new(Common::new(
            Arc::from("test"),
            Duration::ZERO,
            None,
            Listeners::new(),
            None,
            true,
        ))
    }

    fn pool(limit: usize) -> Arc<Pool> {
        Arc::new(Pool::new(common(), None, limit))
    }

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        (Arc::clone(&f), Waker::from(f))
    }

    fn queued(pool: &Arc<Pool>) -> Ticket {
        match pool.enqueue(usize::MAX) {
            Enqueued::Queued(t) => t,
            other => panic!("expected to queue, got {other:?}"),
        }
    }

    #[test]
    fn acquire_release_and_limit() {
        let p = pool(2);
        let a = p.try_acquire().unwrap();
        let b = p.try_acquire().unwrap();
        assert_eq!(p.try_acquire().unwrap_err(), TryAcquire::Full);
        assert_eq!(p.in_flight(), 2);
        drop(a);
        let c = p.try_acquire().unwrap();
        drop((b, c));
        assert_eq!(p.in_flight(), 0);
        assert_eq!(p.view().available, 2);
    }

    #[test]
    fn waiters_are_granted_in_order_and_nobody_barges() {
        let p = pool(1);
        let held = p.try_acquire().unwrap();
        let (f1, w1) = flag();
        let (f2, w2) = flag();
        let mut t1 = queued(&p);
        let mut t2 = queued(&p);
        assert!(t1.poll(&mut Context::from_waker(&w1)).is_pending());
        assert!(t2.poll(&mut Context::from_waker(&w2)).is_pending());
        assert_eq!(p.queued(), 2);
        drop(held);
        assert!(f1.0.load(Ordering::SeqCst) && !f2.0.load(Ordering::SeqCst));
        // The permit went to t1: a newcomer cannot take it.
        assert_eq!(p.try_acquire().unwrap_err(), TryAcquire::Full);
        let Poll::Ready(p1) = t1.poll(&mut Context::from_waker(&w1)) else {
            panic!("t1 was granted")
        };
        assert!(t2.poll(&mut Context::from_waker(&w2)).is_pending());
        drop(p1);
        assert!(f2.0.load(Ordering::SeqCst));
        assert!(t2.poll(&mut Context::from_waker(&w2)).is_ready());
        assert_eq!(p.queued(), 0);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn a_granted_ticket_dropped_unclaimed_passes_the_permit_on() {
        let p = pool(1);
        let held = p.try_acquire().unwrap();
        let t1 = queued(&p);
        let mut t2 = queued(&p);
        drop(held); // granted to t1
        drop(t1); // never claimed: goes to t2
        let (_, w) = flag();
        let permit = t2.poll(&mut Context::from_waker(&w));
        assert!(permit.is_ready());
        assert_eq!(p.in_flight(), 1);
        drop(permit);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn cancel_returns_a_grant_that_raced_with_it() {
        let p = pool(1);
        let held = p.try_acquire().unwrap();
        let t = queued(&p);
        drop(held);
        let permit = t.cancel().expect("granted before cancel");
        assert_eq!(p.in_flight(), 1);
        drop(permit);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn queue_bound() {
        let p = pool(1);
        let _held = p.try_acquire().unwrap();
        let _t = match p.enqueue(1) {
            Enqueued::Queued(t) => t,
            other => panic!("{other:?}"),
        };
        assert!(matches!(p.enqueue(1), Enqueued::QueueFull));
        assert!(matches!(p.enqueue(0), Enqueued::QueueFull));
    }

    #[test]
    fn shrink_below_held_is_paid_back_before_admitting() {
        let p = pool(4);
        let permits: Vec<_> = (0..4).map(|_| p.try_acquire().unwrap()).collect();
        p.set_limit(2);
        assert_eq!(p.in_flight(), 4, "held permits are not revoked");
        let mut permits = permits.into_iter();
        drop(permits.next());
        drop(permits.next());
        assert_eq!(
            p.try_acquire().unwrap_err(),
            TryAcquire::Full,
            "still at 2 of 2"
        );
        drop(permits.next());
        let again = p.try_acquire().unwrap();
        assert_eq!(p.try_acquire().unwrap_err(), TryAcquire::Full);
        drop((again, permits));
        assert_eq!(p.view().available, 2);
    }

    #[test]
    fn growing_grants_waiters_at_once() {
        let p = pool(1);
        let _held = p.try_acquire().unwrap();
        let (f1, w1) = flag();
        let mut t1 = queued(&p);
        let mut t2 = queued(&p);
        let mut t3 = queued(&p);
        assert!(t1.poll(&mut Context::from_waker(&w1)).is_pending());
        p.set_limit(3);
        assert!(f1.0.load(Ordering::SeqCst));
        let (_, w) = flag();
        let p1 = t1.poll(&mut Context::from_waker(&w));
        let p2 = t2.poll(&mut Context::from_waker(&w));
        assert!(p1.is_ready() && p2.is_ready());
        assert!(t3.poll(&mut Context::from_waker(&w)).is_pending());
        assert_eq!(p.in_flight(), 3);
        drop(p1);
        let p3 = t3.poll(&mut Context::from_waker(&w));
        assert!(p3.is_ready(), "a released permit goes to the last waiter");
    }

    #[test]
    fn sweep_retires_only_after_an_untouched_round() {
        let p = pool(2);
        assert_eq!(p.sweep(), Sweep::Retired, "never used since creation");
        let p = pool(2);
        drop(p.try_acquire().unwrap());
        assert_eq!(p.sweep(), Sweep::Kept);
        let held = p.try_acquire().unwrap();
        assert_eq!(p.sweep(), Sweep::Busy);
        drop(held);
        assert_eq!(p.sweep(), Sweep::Kept, "busy marks it touched");
        assert_eq!(p.sweep(), Sweep::Retired);
        assert_eq!(p.try_acquire().unwrap_err(), TryAcquire::Retired);
        assert!(matches!(p.enqueue(10), Enqueued::Retired));
    }

    #[test]
    fn retire_if_idle_ignores_the_mark_but_not_a_call() {
        let p = pool(2);
        drop(p.try_acquire().unwrap());
        let held = p.try_acquire().unwrap();
        assert_eq!(p.retire_if_idle(), Sweep::Busy, "a permit is held");
        drop(held);
        assert_eq!(
            p.retire_if_idle(),
            Sweep::Retired,
            "idle now, used since the last sweep"
        );
        assert_eq!(p.try_acquire().unwrap_err(), TryAcquire::Retired);
        let waited_on = pool(1);
        let _held = waited_on.try_acquire().unwrap();
        let _ticket = queued(&waited_on);
        assert_eq!(waited_on.retire_if_idle(), Sweep::Busy, "a call waits");
    }

    #[test]
    fn stale_entries_are_compacted() {
        let p = pool(1);
        let _held = p.try_acquire().unwrap();
        for _ in 0..1000 {
            drop(queued(&p));
        }
        let q = lock(&p.queue);
        assert!(q.order.len() <= 64, "order kept {} entries", q.order.len());
        assert!(q.entries.len() <= 2);
    }

    fn acquire_or_wait(p: &Arc<Pool>, i: usize, cx: &mut Context<'_>) -> Option<Permit> {
        match p.try_acquire() {
            Ok(permit) => return Some(permit),
            Err(_) if i.is_multiple_of(3) => return None,
            Err(_) => {}
        }
        match p.enqueue(8) {
            Enqueued::Acquired(permit) => Some(permit),
            Enqueued::Queued(mut ticket) => loop {
                if let Poll::Ready(permit) = ticket.poll(cx) {
                    return Some(permit);
                }
                if i.is_multiple_of(7) {
                    return ticket.cancel();
                }
                std::hint::spin_loop();
            },
            Enqueued::QueueFull | Enqueued::Retired => None,
        }
    }

    #[test]
    fn threads_never_exceed_the_limit() {
        let p = pool(3);
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for t in 0..4 {
                let (p, inside, max, admitted) = (
                    Arc::clone(&p),
                    Arc::clone(&inside),
                    Arc::clone(&max),
                    Arc::clone(&admitted),
                );
                s.spawn(move || {
                    let (_, w) = flag();
                    let mut cx = Context::from_waker(&w);
                    for i in 0..20_000 {
                        let Some(permit) = acquire_or_wait(&p, i + t, &mut cx) else {
                            continue;
                        };
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        admitted.fetch_add(1, Ordering::Relaxed);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                });
            }
        });
        let max = max.load(Ordering::SeqCst);
        assert!(
            (1..=3).contains(&max),
            "at most 3 inside at once, saw {max}"
        );
        assert!(admitted.load(Ordering::Relaxed) > 10_000);
        assert_eq!(p.in_flight(), 0);
        assert_eq!(p.queued(), 0);
        assert_eq!(p.view().available, 3);
    }

    // ---- Model test: the real pool against a small reference model. ----

    #[derive(Clone, Debug)]
    enum Op {
        TryAcquire,
        Enqueue,
        Poll(usize),
        Cancel(usize),
        Release(usize),
        Resize(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::TryAcquire),
            3 => Just(Op::Enqueue),
            3 => (0usize..8).prop_map(Op::Poll),
            1 => (0usize..8).prop_map(Op::Cancel),
            3 => (0usize..8).prop_map(Op::Release),
            1 => (1usize..6).prop_map(Op::Resize),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_reference_model(ops in proptest::collection::vec(op(), 1..200)) {
            let p = pool(2);
            // Model: limit, permits held (by calls or granted tickets), FIFO
            // of waiting tickets, the granted set.
            let mut limit = 2usize;
            let mut held = 0usize;
            let mut fifo: VecDeque<usize> = VecDeque::new();
            let mut granted: Vec<usize> = Vec::new();
            let mut tickets: Vec<(usize, Ticket)> = Vec::new();
            let mut permits: Vec<Permit> = Vec::new();
            let mut next_id = 0usize;
            let (_, w) = flag();
            let mut cx = Context::from_waker(&w);
            let grant = |held: &mut usize, limit: usize, fifo: &mut VecDeque<usize>, granted: &mut Vec<usize>| {
                while *held < limit {
                    let Some(id) = fifo.pop_front() else { break };
                    *held += 1;
                    granted.push(id);
                }
            };
            for op in ops {
                match op {
                    Op::TryAcquire => {
                        let expect = fifo.is_empty() && held < limit;
                        let got = p.try_acquire();
                        prop_assert_eq!(got.is_ok(), expect);
                        if let Ok(permit) = got { held += 1; permits.push(permit); }
                    }
                    Op::Enqueue => match p.enqueue(4) {
                        Enqueued::Acquired(permit) => {
                            prop_assert!(fifo.is_empty() && held < limit);
                            held += 1;
                            permits.push(permit);
                        }
                        Enqueued::Queued(t) => {
                            prop_assert!(!(fifo.is_empty() && held < limit));
                            prop_assert!(fifo.len() < 4);
                            fifo.push_back(next_id);
                            tickets.push((next_id, t));
                            next_id += 1;
                        }
                        Enqueued::QueueFull => prop_assert_eq!(fifo.len(), 4),
                        Enqueued::Retired => prop_assert!(false, "never retired here"),
                    },
                    Op::Poll(i) if i < tickets.len() => {
                        let id = tickets[i].0;
                        match tickets[i].1.poll(&mut cx) {
                            Poll::Ready(permit) => {
                                prop_assert!(granted.contains(&id));
                                granted.retain(|g| *g != id);
                                tickets.swap_remove(i);
                                permits.push(permit);
                            }
                            Poll::Pending => prop_assert!(fifo.contains(&id)),
                        }
                    }
                    Op::Cancel(i) if i < tickets.len() => {
                        let (id, t) = tickets.swap_remove(i);
                        match t.cancel() {
                            Some(permit) => {
                                prop_assert!(granted.contains(&id));
                                granted.retain(|g| *g != id);
                                permits.push(permit);
                            }
                            None => {
                                prop_assert!(fifo.contains(&id));
                                fifo.retain(|f| *f != id);
                            }
                        }
                    }
                    Op::Release(i) if i < permits.len() => {
                        drop(permits.swap_remove(i));
                        held -= 1;
                        grant(&mut held, limit, &mut fifo, &mut granted);
                    }
                    Op::Resize(n) => {
                        p.set_limit(n);
                        limit = n;
                        grant(&mut held, limit, &mut fifo, &mut granted);
                    }
                    Op::Poll(_) | Op::Cancel(_) | Op::Release(_) => {}
                }
                let snap = p.view();
                prop_assert_eq!(snap.limit, limit);
                prop_assert_eq!(snap.in_flight, held);
                prop_assert_eq!(snap.queued, fifo.len());
                prop_assert_eq!(snap.available, limit.saturating_sub(held));
            }
        }
    }
}
