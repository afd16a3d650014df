//! The events panel on the dashboard: message counts (the page turns them
//! into rates), consumer lag, the latest dead letters with their reason,
//! and the notification handler's chaos knob.

use crate::pubsub::PubSubSnapshot;
use crate::state::AppState;

/// The events panel: the events feature's snapshot as the admin API serves
/// it (`GET /admin/pubsub`); `None` when `[pubsub]` is off.
pub(crate) fn tile(state: &AppState) -> Option<PubSubSnapshot> {
    state.pubsub().map(crate::pubsub::PubSub::snapshot)
}
