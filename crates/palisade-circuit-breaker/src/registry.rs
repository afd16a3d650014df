//! Named breakers, for admin APIs and dashboards.

use std::sync::Arc;

use palisade_core::{ConfigError, Registry};

use crate::config::CircuitBreakerBuilder;
use crate::handle::{CircuitBreakerHandle, CircuitBreakerSnapshot};
use crate::layer::{CircuitBreakerLayer, build_core};

/// Breakers by name: one breaker per downstream, however many times a stack
/// is built, and a list of them all with their figures.
///
/// Clones share the same entries. The registry is off the request path: it is
/// touched when a layer is built and when someone asks.
///
/// ```
/// use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitBreakerRegistry, State};
///
/// let registry = CircuitBreakerRegistry::new();
/// // Built once per route, one breaker all the same.
/// let a = registry.get_or_build(CircuitBreakerLayer::builder("orders")).unwrap();
/// let b = registry.get_or_build(CircuitBreakerLayer::builder("orders")).unwrap();
/// assert!(a.handle().same_breaker(&b.handle()));
///
/// registry.get("orders").unwrap().force_open();
/// let snapshots = registry.snapshots();
/// assert_eq!(snapshots.len(), 1);
/// assert_eq!(snapshots[0].state, State::ForcedOpen);
/// ```
#[derive(Clone, Debug, Default)]
pub struct CircuitBreakerRegistry {
    inner: Registry<CircuitBreakerHandle>,
}

impl CircuitBreakerRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The layer for the breaker named by `builder`: the registered breaker
    /// if there is one, otherwise a new one built from `builder` and
    /// registered. The builder is always validated; when the breaker exists,
    /// only its classifier is used (the first registration's settings and
    /// listeners stay).
    ///
    /// # Errors
    ///
    /// The builder's [`ConfigError`], if any setting is invalid.
    pub fn get_or_build<C>(
        &self,
        builder: CircuitBreakerBuilder<C>,
    ) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let (config, parts, classifier) = builder.into_parts()?;
        let name = Arc::clone(&parts.name);
        let handle = self.inner.get_or_insert_with(&name, || {
            CircuitBreakerHandle::new(build_core(config, parts))
        });
        Ok(handle.layer_with(classifier))
    }

    /// Registers the breaker of `handle` under its name, returning the handle
    /// it replaced.
    pub fn register(&self, handle: CircuitBreakerHandle) -> Option<CircuitBreakerHandle> {
        let name = Arc::clone(handle.core().observer().name());
        self.inner.insert(&name, handle)
    }

    /// The breaker called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<CircuitBreakerHandle> {
        self.inner.get(name)
    }

    /// Removes the breaker called `name` from the registry (layers built over
    /// it keep working).
    pub fn remove(&self, name: &str) -> Option<CircuitBreakerHandle> {
        self.inner.remove(name)
    }

    /// The registered names, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.inner.names()
    }

    /// Every registered breaker, sorted by name.
    #[must_use]
    pub fn handles(&self) -> Vec<CircuitBreakerHandle> {
        self.inner.entries().into_iter().map(|(_, h)| h).collect()
    }

    /// Every registered breaker's snapshot, sorted by name.
    #[must_use]
    pub fn snapshots(&self) -> Vec<CircuitBreakerSnapshot> {
        self.inner
            .entries()
            .into_iter()
            .map(|(_, h)| h.snapshot())
            .collect()
    }

    /// The number of registered breakers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// `true` when no breaker is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The underlying generic registry.
    #[must_use]
    pub const fn as_registry(&self) -> &Registry<CircuitBreakerHandle> {
        &self.inner
    }
}

impl From<Registry<CircuitBreakerHandle>> for CircuitBreakerRegistry {
    fn from(inner: Registry<CircuitBreakerHandle>) -> Self {
        Self { inner }
    }
}
