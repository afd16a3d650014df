//! [`HedgeEvent`]: what a hedging layer tells its listeners.

use std::sync::Arc;
use std::time::Duration;

/// An event of a [`HedgeLayer`](crate::HedgeLayer), handed to the listeners
/// added with [`on_event`](crate::HedgeBuilder::on_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HedgeEvent {
    /// A hedge was sent: attempt `attempt` (2 for the first hedge), `delay`
    /// after the attempt before it.
    Hedged {
        /// The layer's name.
        name: Arc<str>,
        /// The attempt sent (the first one is 1).
        attempt: u32,
        /// The delay waited before it.
        delay: Duration,
    },
    /// A hedge answered first; the other attempts were dropped.
    Won {
        /// The layer's name.
        name: Arc<str>,
        /// The attempt that answered (2 or more).
        attempt: u32,
    },
    /// A hedge was due but the budget was spent: the request goes on with
    /// the attempts it has.
    BudgetExhausted {
        /// The layer's name.
        name: Arc<str>,
    },
}
