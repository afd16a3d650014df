//! [`EventStoreEvent`]: what the store tells its listeners.

use std::sync::Arc;

use crate::envelope::ExpectedVersion;

/// Something the store did, handed to listeners added with
/// [`EventStoreBuilder::on_event`](crate::EventStoreBuilder::on_event). Emitted per append:
/// a listener costs one event built per append.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventStoreEvent {
    /// A batch was written.
    Appended {
        /// The store's name.
        name: Arc<str>,
        /// The stream.
        stream: Arc<str>,
        /// The stream's version after the append.
        version: u64,
        /// The last event's global position.
        position: u64,
        /// How many events were written.
        count: usize,
    },
    /// An append was refused on its expected version.
    Conflict {
        /// The store's name.
        name: Arc<str>,
        /// The stream.
        stream: Arc<str>,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version.
        actual: u64,
    },
}
