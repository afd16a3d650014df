//! [`FallbackEvent`]: what a fallback layer tells its listeners.

use std::sync::Arc;

use crate::settings::FallbackClass;

/// An event of a [`FallbackLayer`](crate::FallbackLayer), handed to the
/// listeners added with [`on_event`](crate::FallbackBuilder::on_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackEvent {
    /// A failed call was answered by the fallback.
    Served {
        /// The layer's name.
        name: Arc<str>,
        /// The class of the call's failure.
        class: FallbackClass,
    },
    /// A failed call's fallback failed too: the call failed with
    /// [`FallbackFailed`](crate::FallbackFailed).
    Failed {
        /// The layer's name.
        name: Arc<str>,
        /// The class of the call's failure.
        class: FallbackClass,
    },
}
