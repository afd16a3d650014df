//! [`CqrsEvent`]: what command handlers and projection runners tell
//! listeners.

use std::sync::Arc;

/// An event of a command handler or a projection runner, for listeners
/// added with `on_event`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CqrsEvent {
    /// An append conflicted; the command is reloaded and decided again
    /// (`retrying`) or fails.
    CommandConflict {
        /// The handler's name.
        name: Arc<str>,
        /// The stream.
        stream: Arc<str>,
        /// How many decisions conflicted so far.
        attempt: u32,
        /// Whether the command is decided again.
        retrying: bool,
    },
    /// A snapshot of a stream was saved.
    Snapshotted {
        /// The handler's name.
        name: Arc<str>,
        /// The stream.
        stream: Arc<str>,
        /// The version folded into it.
        version: u64,
    },
    /// A projection parked an event it cannot apply.
    EventParked {
        /// The projection.
        name: Arc<str>,
        /// The event's global position.
        position: u64,
        /// Why (the handler's last error, or the decode error).
        reason: String,
    },
    /// A projection runner took (`true`) or does not hold (`false`) the
    /// projection's lock.
    ProjectionActive {
        /// The projection.
        name: Arc<str>,
        /// Whether this runner applies events.
        active: bool,
    },
    /// A projection was reset to position `0` to be rebuilt.
    ProjectionRebuilt {
        /// The projection.
        name: Arc<str>,
    },
}
