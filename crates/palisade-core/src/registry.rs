//! A registry of named layer instances, for admin APIs and dashboards.
//!
//! Each pattern crate keeps its instances' handles (a breaker's handle, a
//! bulkhead's handle) in a `Registry<Handle>` so an operator can list them by
//! name, read their figures and act on them. The registry is off the request
//! path: it is touched when a layer is built and when someone asks.
//!
//! Asking for a name twice gives the same instance
//! ([`get_or_insert_with`](Registry::get_or_insert_with)): one breaker per
//! downstream even when a framework builds the stack once per route.
//!
//! ```
//! use palisade_core::Registry;
//!
//! let registry = Registry::<u32>::new();
//! let a = registry.get_or_insert_with("orders", || 1);
//! let b = registry.get_or_insert_with("orders", || 2);
//! assert_eq!((a, b), (1, 1));
//! assert_eq!(registry.names(), vec!["orders".to_owned()]);
//! ```
//!
//! # The idiom every pattern crate follows
//!
//! A crate's runtime handle (`CircuitBreakerHandle`, `BulkheadHandle`)
//! implements [`Handle`], and its builder takes the registry:
//! `FooLayer::builder(name).registry(&registry).build()`. The first build
//! under a name builds the instance and registers its handle; every later
//! build under that name (validated all the same) returns a layer over the
//! registered instance, whose settings and listeners stay. The registry then
//! lists every instance ([`names`](Registry::names),
//! [`handles`](Registry::handles)) and its figures
//! ([`snapshots`](Registry::snapshots)) for an admin API. There is no
//! registry type per crate: `Registry<CircuitBreakerHandle>`,
//! `Registry<BulkheadHandle>`.
//!
//! ```
//! use palisade_core::{Handle, Registry};
//! use std::sync::Arc;
//!
//! // What a pattern crate's handle looks like to the registry.
//! #[derive(Clone)]
//! struct LimitHandle { name: Arc<str>, state: Arc<u32> }
//!
//! impl Handle for LimitHandle {
//!     type Snapshot = (Arc<str>, u32);
//!     fn name(&self) -> &str { &self.name }
//!     fn snapshot(&self) -> Self::Snapshot { (Arc::clone(&self.name), *self.state) }
//!     fn same_as(&self, other: &Self) -> bool { Arc::ptr_eq(&self.state, &other.state) }
//! }
//!
//! let registry = Registry::new();
//! let handle = LimitHandle { name: "orders".into(), state: Arc::new(8) };
//! assert!(registry.register(handle.clone()).is_none());
//! assert!(registry.get("orders").unwrap().same_as(&handle));
//! assert_eq!(registry.snapshots(), vec![("orders".into(), 8)]);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A runtime handle to one named instance of a pattern (a breaker, a
/// bulkhead): what a [`Registry`] holds.
///
/// Every pattern crate's `FooHandle` implements it, with inherent methods of
/// the same names so that callers need not import this trait.
pub trait Handle: Clone {
    /// The instance's state and figures at one instant (plain data; with the
    /// crate's `serde` feature, `Serialize`).
    type Snapshot;

    /// The instance's name: its registry key, and the `name` label of its
    /// metrics.
    fn name(&self) -> &str;

    /// The instance's state and figures now.
    fn snapshot(&self) -> Self::Snapshot;

    /// `true` if both handles control the same instance.
    fn same_as(&self, other: &Self) -> bool;
}

/// Named handles, sorted by name; clones share the same map.
pub struct Registry<H> {
    map: Arc<RwLock<BTreeMap<Arc<str>, H>>>,
}

impl<H: Clone> Registry<H> {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self {
            map: Arc::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Arc<str>, H>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every write is one insert or remove), so a poisoned lock is usable.
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Arc<str>, H>> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The handle registered under `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<H> {
        self.read().get(name).cloned()
    }

    /// The handle registered under `name`, or the one `make` builds, which is
    /// registered. `make` runs at most once, under the registry's write lock.
    pub fn get_or_insert_with(&self, name: &str, make: impl FnOnce() -> H) -> H {
        if let Some(found) = self.get(name) {
            return found;
        }
        self.write()
            .entry(Arc::from(name))
            .or_insert_with(make)
            .clone()
    }

    /// Registers `handle` under `name`, returning the handle it replaced.
    pub fn insert(&self, name: &str, handle: H) -> Option<H> {
        self.write().insert(Arc::from(name), handle)
    }

    /// Removes and returns the handle registered under `name`.
    pub fn remove(&self, name: &str) -> Option<H> {
        self.write().remove(name)
    }

    /// Every registered handle, sorted by name.
    #[must_use]
    pub fn handles(&self) -> Vec<H> {
        self.read().values().cloned().collect()
    }

    /// The registered names, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.read().keys().map(|k| k.to_string()).collect()
    }

    /// Every `(name, handle)` pair, sorted by name.
    #[must_use]
    pub fn entries(&self) -> Vec<(Arc<str>, H)> {
        self.read()
            .iter()
            .map(|(k, v)| (Arc::clone(k), v.clone()))
            .collect()
    }

    /// The number of registered instances.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// `true` when nothing is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

impl<H: Handle> Registry<H> {
    /// Registers `handle` under its own [name](Handle::name), returning the
    /// handle it replaced.
    pub fn register(&self, handle: H) -> Option<H> {
        let name: Arc<str> = Arc::from(handle.name());
        self.write().insert(name, handle)
    }

    /// Every registered instance's [snapshot](Handle::snapshot), sorted by
    /// name.
    #[must_use]
    pub fn snapshots(&self) -> Vec<H::Snapshot> {
        // Snapshots are taken outside the lock: a handle's snapshot may do
        // work (reading every partition of a bulkhead).
        self.handles().iter().map(Handle::snapshot).collect()
    }
}

impl<H: Clone> Default for Registry<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> Clone for Registry<H> {
    fn clone(&self) -> Self {
        Self {
            map: Arc::clone(&self.map),
        }
    }
}

impl<H> fmt::Debug for Registry<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = match self.map.read() {
            Ok(map) => map.keys().map(|k| k.to_string()).collect(),
            Err(poisoned) => poisoned.get_ref().keys().map(|k| k.to_string()).collect(),
        };
        f.debug_struct("Registry").field("names", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_or_insert_keeps_the_first() {
        let r = Registry::new();
        assert_eq!(r.get_or_insert_with("a", || 1), 1);
        assert_eq!(r.get_or_insert_with("a", || 2), 1);
        assert_eq!(r.get("a"), Some(1));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn clones_share_entries_and_listing_is_sorted() {
        let r = Registry::new();
        let r2 = r.clone();
        r.insert("b", 2);
        r2.insert("a", 1);
        assert_eq!(r.names(), vec!["a".to_owned(), "b".to_owned()]);
        let entries: Vec<(String, i32)> = r2
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(entries, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert_eq!(r.remove("a"), Some(1));
        assert!(r2.get("a").is_none());
        assert!(!r.is_empty());
    }

    #[derive(Clone, Debug)]
    struct Named(&'static str, Arc<u32>);

    impl Handle for Named {
        type Snapshot = (&'static str, u32);
        fn name(&self) -> &str {
            self.0
        }
        fn snapshot(&self) -> Self::Snapshot {
            (self.0, *self.1)
        }
        fn same_as(&self, other: &Self) -> bool {
            Arc::ptr_eq(&self.1, &other.1)
        }
    }

    #[test]
    fn handles_register_under_their_name_and_list_their_snapshots() {
        let r = Registry::new();
        let b = Named("b", Arc::new(2));
        assert!(r.register(b.clone()).is_none());
        assert!(r.register(Named("a", Arc::new(1))).is_none());
        let again = Named("b", Arc::new(3));
        let replaced = r.register(again.clone()).expect("replaced");
        assert!(replaced.same_as(&b));
        assert!(r.get("b").unwrap().same_as(&again));
        assert_eq!(r.snapshots(), vec![("a", 1), ("b", 3)]);
        let names: Vec<&str> = r.handles().iter().map(|h| h.0).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn concurrent_get_or_insert_builds_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let r = Registry::new();
        let built = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let r = r.clone();
                let built = Arc::clone(&built);
                s.spawn(move || {
                    for _ in 0..100 {
                        r.get_or_insert_with("x", || built.fetch_add(1, Ordering::SeqCst));
                    }
                });
            }
        });
        assert_eq!(built.load(Ordering::SeqCst), 1);
    }
}
