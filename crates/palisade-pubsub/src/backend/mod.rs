//! The two traits every backend implements, and the backends.
//!
//! - [`Publisher`]: publish a [`Message`]. Implemented by
//!   [`MemoryBus`](memory::MemoryBus) and [`NatsBus`](nats::NatsBus); the
//!   outbox relay and a consumer's dead letters publish through it.
//! - [`Delivery`]: one delivery of a message to a subscriber, with its
//!   acknowledgements. A subscription is a
//!   `Stream<Item = Result<D, SubscribeError>>` of deliveries, which a
//!   [`Consumer`](crate::Consumer) drives through a tower service.
//!
//! | | in-process ([`memory`]) | NATS JetStream ([`nats`]) |
//! |---|---|---|
//! | delivery | at most once | at least once |
//! | durable | no (lost with the process) | yes (stream on disk) |
//! | redelivery | by the consumer, in place, while it runs | by the broker, after a nak or the ack wait, across restarts |
//! | slow subscriber | bounded buffer: drop oldest + lag report, or publisher waits | broker keeps the backlog; `max_ack_pending` bounds what is outstanding |
//! | publish de-duplication | none (ids are carried) | `Nats-Msg-Id` within the stream's duplicate window |
//! | queue groups | a shared buffer, competing members | a shared durable consumer |
//! | wildcards | `*`, `>` | `*`, `>` (filter subjects) |

use std::future::Future;
use std::time::Duration;

use crate::error::{AckError, PublishError};
use crate::message::Message;

#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

/// Publishes messages. Cheap to clone; clones publish through the same
/// connection or bus.
pub trait Publisher: Clone + Send + Sync + 'static {
    /// Publishes `message`. Resolves once the backend has accepted it: queued
    /// for every matching subscriber of the in-process bus, stored (and
    /// acknowledged) by a JetStream stream.
    ///
    /// # Errors
    ///
    /// [`PublishError`]; [`PublishError::is_transient`] says whether
    /// publishing the same message again may succeed.
    fn publish(&self, message: Message) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// One delivery of a message, and how to acknowledge it.
///
/// Acknowledging consumes the delivery. Dropping it without acknowledging
/// leaves the message to the backend: JetStream redelivers it after the ack
/// wait; the in-process bus forgets it.
pub trait Delivery: Send + 'static {
    /// The message.
    fn message(&self) -> &Message;

    /// Which delivery of this message this is: 1 for the first.
    fn delivery(&self) -> u32;

    /// Messages still waiting for this subscriber when this one was handed
    /// out (the consumer's lag), when the backend knows.
    fn backlog(&self) -> Option<u64>;

    /// `true` when the backend redelivers a message that was nak'd (or never
    /// acknowledged); `false` when a retry must happen in place, while the
    /// consumer holds the message (the in-process bus).
    fn redelivers(&self) -> bool;

    /// How often to tell the backend the message is still being worked on
    /// while the consumer holds it without handling it (paused behind an
    /// open breaker). `None`: no need.
    fn progress_interval(&self) -> Option<Duration>;

    /// Handled: never deliver it again.
    fn ack(self) -> impl Future<Output = Result<(), AckError>> + Send;

    /// Not handled: deliver it again after `delay`.
    fn nak(self, delay: Duration) -> impl Future<Output = Result<(), AckError>> + Send;

    /// Never deliver it again, without success (it was dead-lettered).
    fn term(self) -> impl Future<Output = Result<(), AckError>> + Send;

    /// Still working on it: restart the ack wait.
    fn in_progress(&self) -> impl Future<Output = Result<(), AckError>> + Send;
}
