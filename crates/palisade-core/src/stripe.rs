//! Per-thread stripes: counted references to one shared value that do not
//! make every thread bump the same reference count.
//!
//! A call in flight usually keeps its layer's state alive through an `Arc`
//! (the response future may outlive the service: `oneshot` drops the service
//! right after `call`). Were that one `Arc` for every call, every call on every
//! core would increment and decrement the same counter, and its cache line
//! would bounce between cores on each call. A [`Striped`] value instead keeps
//! [`STRIPES`] references to the value, each in an allocation of its own cache
//! lines, and a call clones the one of the thread it starts on
//! ([`Striped::stripe`]): threads share a counter only when there are more
//! threads than stripes.
//!
//! ```
//! use palisade_core::stripe::Striped;
//!
//! struct Breaker { name: &'static str }
//!
//! let striped = Striped::new(Breaker { name: "orders" });
//! // On the call path: one reference-count increment on this thread's stripe.
//! let stripe = striped.stripe();
//! assert_eq!(stripe.name, "orders");
//! // The same value, whichever thread asks.
//! let other = std::thread::scope(|s| s.spawn(|| striped.stripe()).join().unwrap());
//! assert!(std::ptr::eq(stripe.get(), other.get()));
//! ```

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Stripes per [`Striped`] value (a power of two).
pub const STRIPES: usize = 16;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A small number per thread, handed out round-robin on the thread's first
/// call and stable for the thread's life: the index of its stripe in every
/// striped structure (take it modulo the number of stripes). During the
/// thread's teardown, when its thread-local storage is gone, it is 0.
#[inline]
#[must_use]
pub fn thread_index() -> usize {
    THREAD_INDEX
        .try_with(|index| {
            let i = index.get();
            if i == usize::MAX { assign(index) } else { i }
        })
        .unwrap_or(0)
}

#[cold]
fn assign(index: &Cell<usize>) -> usize {
    let i = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % (usize::MAX - 1);
    index.set(i);
    i
}

/// One counted reference to a [`Striped`] value, alone on its cache lines.
///
/// What [`Striped::stripe`] hands out, as `Arc<Stripe<T>>`: cloning and
/// dropping that `Arc` touches only this stripe's counter. Dereferences to the
/// shared value.
#[repr(align(128))]
pub struct Stripe<T>(Arc<T>);

impl<T> Stripe<T> {
    /// The shared value.
    #[inline]
    #[must_use]
    pub fn get(&self) -> &T {
        &self.0
    }

    /// The shared value's own `Arc`.
    #[inline]
    #[must_use]
    pub const fn shared(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T> Deref for Stripe<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Stripe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Stripe").field(&*self.0).finish()
    }
}

/// A shared value and [`STRIPES`] per-thread references to it; see the
/// [module docs](self).
///
/// A layer owns one (in its own `Arc`); every service and clone shares it.
pub struct Striped<T> {
    shared: Arc<T>,
    stripes: Box<[Arc<Stripe<T>>]>,
}

impl<T> Striped<T> {
    /// Shares `value` through [`STRIPES`] stripes.
    #[must_use]
    pub fn new(value: T) -> Self {
        Self::from_arc(Arc::new(value))
    }

    /// Shares an existing `Arc` through [`STRIPES`] stripes.
    #[must_use]
    pub fn from_arc(shared: Arc<T>) -> Self {
        let stripes = (0..STRIPES)
            .map(|_| Arc::new(Stripe(Arc::clone(&shared))))
            .collect();
        Self { shared, stripes }
    }

    /// A reference for a call starting on this thread: one reference-count
    /// increment, on a counter no other thread shares unless there are more
    /// threads than stripes.
    #[inline]
    #[must_use]
    pub fn stripe(&self) -> Arc<Stripe<T>> {
        self.stripe_at(thread_index())
    }

    /// The reference for the thread whose [`thread_index`] is `index`: for a
    /// caller that needs the index for stripes of its own as well (a budget's
    /// counters), so that it reads the thread-local once per call.
    #[inline]
    #[must_use]
    pub fn stripe_at(&self, index: usize) -> Arc<Stripe<T>> {
        Arc::clone(&self.stripes[index % STRIPES])
    }

    /// The shared value.
    #[inline]
    #[must_use]
    pub fn get(&self) -> &T {
        &self.shared
    }

    /// The shared value's own `Arc` (not striped: for what is off the call
    /// path, such as handles).
    #[inline]
    #[must_use]
    pub const fn shared(&self) -> &Arc<T> {
        &self.shared
    }
}

impl<T> Deref for Striped<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.shared
    }
}

impl<T: fmt::Debug> fmt::Debug for Striped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Striped")
            .field("shared", &*self.shared)
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_stable_indexes_and_stripes_share_the_value() {
        let here = thread_index();
        assert_eq!(here, thread_index());
        let there = std::thread::spawn(thread_index).join().unwrap();
        assert_ne!(here, there);

        let striped = Striped::new(7_u32);
        let a = striped.stripe();
        let b = striped.stripe();
        assert!(Arc::ptr_eq(&a, &b), "one thread, one stripe");
        assert_eq!(**a, 7);
        let (index, other) = std::thread::scope(|s| {
            s.spawn(|| (thread_index(), striped.stripe()))
                .join()
                .unwrap()
        });
        assert_eq!(
            Arc::ptr_eq(&a, &other),
            index % STRIPES == thread_index() % STRIPES,
            "another thread's stripe unless its index falls on this one's"
        );
        assert!(std::ptr::eq(a.get(), other.get()));
        assert!(Arc::ptr_eq(striped.shared(), a.shared()));
        // The value lives as long as any stripe reference.
        let kept = striped.stripe();
        drop(striped);
        assert_eq!(*kept.get(), 7);
    }

    #[test]
    fn a_stripe_is_alone_on_its_cache_lines() {
        assert_eq!(align_of::<Stripe<u8>>(), 128);
    }
}
