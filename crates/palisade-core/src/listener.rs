//! Event listeners: the hooks every pattern offers for its events (a breaker's
//! transitions, a retry's attempts, a bulkhead's rejections).
//!
//! Listeners are registered when a layer is built and never change after, so
//! the list is an immutable, shared slice: emitting takes no lock. An event is
//! only constructed when someone listens ([`Listeners::emit_with`]), so a layer
//! with no listener allocates nothing for its events. A listener that panics
//! is caught and logged; it can never break the call it observes.
//!
//! ```
//! use palisade_core::Listeners;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let seen = Arc::new(AtomicUsize::new(0));
//! let mut listeners = Listeners::<u32>::new();
//! let counter = Arc::clone(&seen);
//! listeners.push(move |n: &u32| {
//!     counter.fetch_add(*n as usize, Ordering::Relaxed);
//! });
//! listeners.emit_with(|| 2);
//! assert_eq!(seen.load(Ordering::Relaxed), 2);
//! ```

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

type Listener<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// An immutable, cheaply cloned list of event listeners.
pub struct Listeners<E> {
    list: Arc<[Listener<E>]>,
}

impl<E> Listeners<E> {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self {
            list: Arc::from(Vec::new()),
        }
    }

    /// Adds a listener. Meant for build time: it copies the list.
    pub fn push<F>(&mut self, listener: F)
    where
        F: Fn(&E) + Send + Sync + 'static,
    {
        let mut list: Vec<Listener<E>> = self.list.iter().cloned().collect();
        list.push(Arc::new(listener));
        self.list = Arc::from(list);
    }

    /// `true` when nothing listens: callers can skip building an event.
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The number of listeners.
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Hands `event` to every listener, in the order they were added. A
    /// listener's panic is caught and logged at `error` level.
    pub fn emit(&self, event: &E) {
        for listener in self.list.iter() {
            if catch_unwind(AssertUnwindSafe(|| listener(event))).is_err() {
                tracing::error!("a palisade event listener panicked; the event was dropped for it");
            }
        }
    }

    /// Builds the event with `make` and emits it, only if someone listens.
    #[inline]
    pub fn emit_with(&self, make: impl FnOnce() -> E) {
        if !self.is_empty() {
            self.emit(&make());
        }
    }
}

impl<E> Default for Listeners<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Clone for Listeners<E> {
    fn clone(&self) -> Self {
        Self {
            list: Arc::clone(&self.list),
        }
    }
}

impl<E> fmt::Debug for Listeners<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("len", &self.list.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn emits_in_order_to_every_listener() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut listeners = Listeners::<&'static str>::new();
        for id in 0..3 {
            let log = Arc::clone(&log);
            listeners.push(move |e: &&'static str| log.lock().unwrap().push((id, *e)));
        }
        assert_eq!(listeners.len(), 3);
        listeners.emit(&"ev");
        assert_eq!(*log.lock().unwrap(), vec![(0, "ev"), (1, "ev"), (2, "ev")]);
    }

    #[test]
    fn no_listener_means_the_event_is_never_built() {
        let listeners = Listeners::<String>::new();
        listeners.emit_with(|| panic!("must not be called"));
        assert!(listeners.is_empty());
    }

    #[test]
    fn a_panicking_listener_does_not_stop_the_others() {
        let hits = Arc::new(Mutex::new(0));
        let mut listeners = Listeners::<()>::new();
        listeners.push(|()| panic!("boom"));
        let h = Arc::clone(&hits);
        listeners.push(move |()| *h.lock().unwrap() += 1);
        listeners.emit(&());
        listeners.emit(&());
        assert_eq!(*hits.lock().unwrap(), 2);
    }

    #[test]
    fn clones_share_the_list() {
        let mut a = Listeners::<()>::new();
        a.push(|()| {});
        let b = a.clone();
        assert_eq!(b.len(), 1);
    }
}
