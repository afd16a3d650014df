//! Telling a worker's connections that the drain began, at the cost of an
//! atomic load per poll.
//!
//! A connection's task waits on two things at once: its HTTP/1 connection
//! and the start of the drain. It is polled at every wake-up of either, so
//! a few times per request. Waiting on the lifecycle's `watch` channel there
//! took the lock of that channel's waiter list at every poll, a lock shared
//! by every connection on every worker thread. Here each connection gets a
//! [`DrainSignal`] of its own, which its worker (the only one that knows of
//! it) trips when the drain begins: polling it is one atomic load and, while
//! it waits, an [`AtomicWaker`] registration of the task's (unchanged)
//! waker; neither is shared with other connections.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// One connection's view of the drain: tripped once, by its worker.
#[derive(Debug, Default)]
pub(crate) struct DrainSignal {
    drained: AtomicBool,
    waker: AtomicWaker,
}

impl DrainSignal {
    /// `Ready` once the drain began; otherwise registers the task to be woken
    /// when it does.
    pub(crate) fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.drained.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Tripped between the load and the registration: the wake may have
        // found no waker, so look again.
        if self.drained.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the drain began.
    pub(crate) async fn drained(&self) {
        poll_fn(|cx| self.poll_drained(cx)).await;
    }

    fn trip(&self) {
        self.drained.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// A worker's connections' signals. Touched when a connection is accepted
/// and when the drain begins, never on a request's path.
#[derive(Debug, Default)]
pub(crate) struct Drains {
    signals: Vec<Weak<DrainSignal>>,
    /// `signals` is pruned of closed connections when it reaches this length.
    prune_at: usize,
}

impl Drains {
    /// A signal for a new connection. Its worker keeps a weak reference only:
    /// a connection that closes frees its signal.
    pub(crate) fn register(&mut self) -> Arc<DrainSignal> {
        if self.signals.len() >= self.prune_at {
            self.signals.retain(|signal| signal.strong_count() > 0);
            // Amortised: prune again once the live ones have doubled.
            self.prune_at = (self.signals.len() * 2).max(64);
        }
        let signal = Arc::new(DrainSignal::default());
        self.signals.push(Arc::downgrade(&signal));
        signal
    }

    /// Trips every open connection's signal.
    pub(crate) fn drain(&mut self) {
        for signal in self.signals.drain(..) {
            if let Some(signal) = signal.upgrade() {
                signal.trip();
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.signals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_signal_waits_until_its_worker_drains() {
        let mut drains = Drains::default();
        let signal = drains.register();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(signal.poll_drained(&mut cx), Poll::Pending);
        assert_eq!(signal.poll_drained(&mut cx), Poll::Pending);
        drains.drain();
        assert_eq!(signal.poll_drained(&mut cx), Poll::Ready(()));
        // And stays tripped.
        assert_eq!(signal.poll_drained(&mut cx), Poll::Ready(()));
    }

    #[tokio::test(start_paused = true)]
    async fn draining_wakes_a_waiting_connection() {
        let mut drains = Drains::default();
        let signal = drains.register();
        let waiting = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.drained().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drains.drain();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken by the drain")
            .expect("task ran to completion");
    }

    #[test]
    fn closed_connections_are_pruned_and_draining_skips_them() {
        let mut drains = Drains::default();
        let kept: Vec<_> = (0..10).map(|_| drains.register()).collect();
        for _ in 0..1000 {
            drop(drains.register());
        }
        // Pruned as it grows: the closed ones do not pile up.
        assert!(drains.tracked() < 200, "tracked {}", drains.tracked());
        drains.drain();
        let mut cx = Context::from_waker(Waker::noop());
        for signal in &kept {
            assert_eq!(signal.poll_drained(&mut cx), Poll::Ready(()));
        }
        assert_eq!(drains.tracked(), 0);
    }
}
