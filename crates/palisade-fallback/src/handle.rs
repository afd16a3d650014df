//! [`FallbackHandle`]: a fallback layer's figures, for admin APIs and
//! dashboards.

use std::fmt;
use std::sync::Arc;

use crate::settings::{FallbackClass, FallbackClasses};
use crate::shared::Stats;

/// A handle to a [`FallbackLayer`](crate::FallbackLayer)'s figures: cheap to
/// clone, off the request path. What a `palisade_core::Registry<FallbackHandle>`
/// holds.
#[derive(Clone)]
pub struct FallbackHandle {
    pub(crate) stats: Arc<Stats>,
}

/// How many calls of one class a fallback answered, and how many of its
/// answers failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ClassCount {
    /// The class of failure.
    pub class: FallbackClass,
    /// Calls of this class answered by the fallback.
    pub served: u64,
    /// Calls of this class whose fallback failed too.
    pub failed: u64,
}

/// A fallback layer's settings and figures at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FallbackSnapshot {
    /// The layer's name.
    pub name: Arc<str>,
    /// The classes of failure it answers.
    pub on: FallbackClasses,
    /// Calls answered by the fallback since the layer was built.
    pub served: u64,
    /// Calls whose fallback failed too.
    pub failed: u64,
    /// The same, by class (every class, in order, zeros included).
    pub by_class: Vec<ClassCount>,
}

impl FallbackHandle {
    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// The layer's settings and figures now.
    #[must_use]
    pub fn snapshot(&self) -> FallbackSnapshot {
        let (served, failed) = self.stats.counts();
        let by_class = FallbackClass::ALL
            .into_iter()
            .map(|class| ClassCount {
                class,
                served: served[class.index()],
                failed: failed[class.index()],
            })
            .collect();
        FallbackSnapshot {
            name: Arc::clone(&self.stats.name),
            on: self.stats.settings.on,
            served: served.iter().sum(),
            failed: failed.iter().sum(),
            by_class,
        }
    }

    /// `true` if both handles are to the same figures.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.stats, &other.stats)
    }
}

impl fmt::Debug for FallbackHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FallbackHandle")
            .field(&self.stats.name)
            .finish()
    }
}

impl palisade_core::Handle for FallbackHandle {
    type Snapshot = FallbackSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> FallbackSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
