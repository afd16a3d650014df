//! The event-store panel on the dashboard: the accounts' latest events (a
//! live stream: position, stream, version, type) and each projection's lag,
//! from the event store's and the CQRS crate's snapshots.

use palisade::cqrs::ProjectionSnapshot;
use palisade::event_store::EventStoreSnapshot;
use serde::Serialize;

use crate::accounts::RecentEvent;
use crate::state::AppState;

/// The event-store panel.
#[derive(Clone, Debug, Serialize)]
pub struct EventsTile {
    /// The store's figures (`None` before the accounts are open).
    pub store: Option<EventStoreSnapshot>,
    /// The latest events, newest first.
    pub recent: Vec<RecentEvent>,
    /// Each projection: checkpoint, head, lag.
    pub projections: Vec<ProjectionSnapshot>,
}

/// The event-store panel now.
pub(crate) fn tile(state: &AppState) -> EventsTile {
    match state.accounts() {
        Some(accounts) => EventsTile {
            store: Some(accounts.store().handle().snapshot()),
            recent: accounts.recent_events(),
            projections: accounts.projections().snapshots(),
        },
        None => EventsTile {
            store: None,
            recent: Vec::new(),
            projections: Vec::new(),
        },
    }
}
