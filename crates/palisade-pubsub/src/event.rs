//! Events the bus, consumers and the outbox relay hand to the listeners
//! registered with `.on_event(..)`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a message went to the dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterKind {
    /// The handler failed with a [`Terminal`](crate::error::Terminal) error.
    Terminal,
    /// The handler failed on the last allowed delivery (`max_deliver`).
    MaxDeliver,
}

impl DeadLetterKind {
    /// A label: `terminal` or `max_deliver`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::MaxDeliver => "max_deliver",
        }
    }
}

impl fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the bus, a consumer or the relay did. Built only when a
/// listener is registered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PubSubEvent {
    /// A slow subscriber of the in-process bus lost its oldest messages.
    Lagged {
        /// The bus.
        bus: Arc<str>,
        /// The subscription's pattern.
        pattern: Arc<str>,
        /// Messages dropped since the last report.
        dropped: u64,
    },
    /// A handler failed and the message will be delivered again.
    Redelivering {
        /// The consumer.
        consumer: Arc<str>,
        /// The message id.
        message_id: Box<str>,
        /// The delivery that failed (1 for the first).
        delivery: u32,
        /// The delay before the next delivery.
        delay: Duration,
        /// The handler's error.
        error: String,
    },
    /// A message was dead-lettered.
    DeadLettered {
        /// The consumer.
        consumer: Arc<str>,
        /// The message id.
        message_id: Box<str>,
        /// The subject it was published to.
        subject: Box<str>,
        /// Why.
        kind: DeadLetterKind,
        /// The reason, as the dead letter's header carries it.
        reason: String,
    },
    /// The handler refused a message (an open breaker, a full bulkhead, a
    /// rate limit): the consumer stops pulling for `pause` and offers the
    /// message again after it.
    Paused {
        /// The consumer.
        consumer: Arc<str>,
        /// How long it stops pulling.
        pause: Duration,
        /// The rejection.
        reason: String,
    },
    /// The outbox relay published events up to `position` and saved its
    /// checkpoint there.
    Relayed {
        /// The relay.
        relay: Arc<str>,
        /// The checkpoint saved.
        position: u64,
        /// Events published in this batch.
        count: usize,
    },
    /// The outbox relay failed to read, publish or checkpoint and will retry.
    RelayFailed {
        /// The relay.
        relay: Arc<str>,
        /// The error.
        error: String,
        /// The delay before it tries again.
        retry_in: Duration,
    },
}
