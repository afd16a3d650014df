//! [`DeadlineHandle`]: a deadline layer's figures, for admin APIs and
//! dashboards.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::shared::Shared;

/// A handle to a [`DeadlineLayer`](crate::DeadlineLayer)'s shared state:
/// cheap to clone, off the request path. What a
/// `palisade_core::Registry<DeadlineHandle>` holds.
#[derive(Clone)]
pub struct DeadlineHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A deadline layer's settings and figures at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct DeadlineSnapshot {
    /// The layer's name.
    pub name: Arc<str>,
    /// The most time the layer gives a request, if it sets one.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub budget: Option<Duration>,
    /// Whether the layer fails calls whose deadline passed.
    pub enforce: bool,
    /// Requests that arrived with no time left, since the layer was built.
    pub expired_on_arrival: u64,
    /// Calls cut off when their deadline passed, since the layer was built.
    pub expired_in_flight: u64,
}

impl DeadlineSnapshot {
    /// Every expiry: on arrival and in flight.
    #[must_use]
    pub const fn expired(&self) -> u64 {
        self.expired_on_arrival + self.expired_in_flight
    }
}

impl DeadlineHandle {
    /// The layer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The layer's settings and figures now.
    #[must_use]
    pub fn snapshot(&self) -> DeadlineSnapshot {
        let (expired_on_arrival, expired_in_flight) = self.shared.expiries();
        DeadlineSnapshot {
            name: Arc::clone(&self.shared.name),
            budget: self.shared.settings.budget,
            enforce: self.shared.settings.enforce,
            expired_on_arrival,
            expired_in_flight,
        }
    }

    /// `true` if both handles are to the same layer's state.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl fmt::Debug for DeadlineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeadlineHandle")
            .field(&self.shared.name)
            .finish()
    }
}

impl palisade_core::Handle for DeadlineHandle {
    type Snapshot = DeadlineSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> DeadlineSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
