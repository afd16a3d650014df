//! [`EventStoreHandle`]: a store's figures for an admin API or dashboard,
//! and what a [`Registry`](palisade_core::Registry) of stores holds.

use std::sync::Arc;

use crate::settings::EventStoreSettings;
use crate::shared::Figures;

/// A handle on a store's figures: cheap to clone (an `Arc`), from
/// [`EventStore::handle`](crate::EventStore::handle) or a
/// [`Registry<EventStoreHandle>`](palisade_core::Registry) given to the
/// builder.
#[derive(Clone, Debug)]
pub struct EventStoreHandle {
    pub(crate) figures: Arc<Figures>,
}

/// A store's figures at one instant, counted by this process since the
/// store was opened (a fleet's other processes count their own).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EventStoreSnapshot {
    /// The store's name.
    pub name: Arc<str>,
    /// `memory`, `sqlite`, `postgres`, or `custom` for a caller's backend.
    pub backend: &'static str,
    /// The highest global position this process appended or was told of
    /// (`notify_appended`).
    pub head_position: u64,
    /// Appends that wrote events.
    pub appends: u64,
    /// Events those appends wrote.
    pub events_appended: u64,
    /// Appends whose events were all stored already (retries): no-ops.
    pub already_stored: u64,
    /// Appends refused on the expected version.
    pub conflicts: u64,
    /// Appends that failed otherwise (refused input, the backend).
    pub append_errors: u64,
    /// Events returned by reads and subscriptions.
    pub events_read: u64,
    /// Reads that failed.
    pub read_errors: u64,
    /// Events read whose upcaster failed.
    pub upcast_failures: u64,
    /// The settings in effect, the URL without credentials.
    pub settings: EventStoreSettings,
}

impl EventStoreHandle {
    /// The store's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.figures.name
    }

    /// The figures now.
    #[must_use]
    pub fn snapshot(&self) -> EventStoreSnapshot {
        let f = &*self.figures;
        EventStoreSnapshot {
            name: Arc::clone(&f.name),
            backend: f.backend,
            head_position: Figures::get(&f.head),
            appends: Figures::get(&f.appends),
            events_appended: Figures::get(&f.events_appended),
            already_stored: Figures::get(&f.already_stored),
            conflicts: Figures::get(&f.conflicts),
            append_errors: Figures::get(&f.append_errors),
            events_read: Figures::get(&f.events_read),
            read_errors: Figures::get(&f.read_errors),
            upcast_failures: Figures::get(&f.upcast_failures),
            settings: f.settings.clone(),
        }
    }

    /// `true` if both handles are of the same store.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.figures, &other.figures)
    }
}

impl palisade_core::Handle for EventStoreHandle {
    type Snapshot = EventStoreSnapshot;

    fn name(&self) -> &str {
        Self::name(self)
    }

    fn snapshot(&self) -> EventStoreSnapshot {
        Self::snapshot(self)
    }

    fn same_as(&self, other: &Self) -> bool {
        Self::same_as(self, other)
    }
}
