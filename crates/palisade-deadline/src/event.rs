//! [`DeadlineEvent`]: what a deadline layer tells its listeners.

use std::sync::Arc;
use std::time::Duration;

/// An event of a [`DeadlineLayer`](crate::DeadlineLayer), handed to the
/// listeners added with [`on_event`](crate::DeadlineBuilder::on_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadlineEvent {
    /// A request's deadline passed: the call failed with
    /// [`DeadlineExpired`](palisade_core::DeadlineExpired).
    Expired {
        /// The layer's name.
        name: Arc<str>,
        /// The time the request had when it reached the layer.
        budget: Duration,
        /// `true` when it had none left on arrival (the call below was never
        /// made); `false` when the call below was cut off.
        on_arrival: bool,
    },
}
