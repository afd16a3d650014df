//! Every setting of the bus, the consumers, the idempotent-consumer store,
//! the outbox relay and the NATS backend: plain data with documented
//! defaults and a side-effect-free `validate()`.
//!
//! With the `serde` feature each type is `Serialize`/`Deserialize` with
//! unknown fields denied and durations as strings (`"250ms"`, `"30s"`).

use std::time::Duration;

use palisade_core::ConfigError;

use crate::state::subject::validate_subject;

/// The largest per-subscriber buffer of the in-process bus.
pub const MAX_CAPACITY: usize = 1 << 20;
/// The largest payload any backend accepts (64 MiB).
pub const MAX_PAYLOAD: usize = 64 << 20;
/// The most messages a consumer may have in flight.
pub const MAX_IN_FLIGHT: usize = 65_536;
/// The most deliveries a consumer may allow per message.
pub const MAX_DELIVER: u32 = 10_000;
/// The longest delay or timeout any setting accepts (one day).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The most ids an in-memory idempotency store may keep.
pub const MAX_DEDUP_CAPACITY: usize = 1 << 24;
/// The largest batch the outbox relay reads at once.
pub const MAX_BATCH: usize = 10_000;

/// What the in-process bus does when a subscriber's buffer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SlowSubscriber {
    /// Drop the subscriber's oldest buffered message to make room, count it,
    /// and tell the subscriber how many it missed (its next receive yields a
    /// lag report). The publisher never waits; one slow subscriber costs the
    /// others nothing. Like `tokio::sync::broadcast`.
    #[default]
    DropOldest,
    /// The publisher waits until every matching subscriber has room, up to
    /// `publish_timeout`; then it fails with
    /// [`PublishErrorKind::Full`](crate::error::PublishErrorKind::Full) and
    /// the message is delivered to nobody. Nothing is dropped while
    /// subscribers keep up; a stuck subscriber slows every publisher to it.
    Wait,
}

/// Settings of the in-process bus ([`MemoryBus`](crate::backend::memory::MemoryBus)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BusSettings {
    /// Messages buffered per subscription (a queue group shares one buffer).
    /// Default 1024.
    pub capacity: usize,
    /// What to do when a buffer is full. Default
    /// [`SlowSubscriber::DropOldest`].
    pub slow_subscriber: SlowSubscriber,
    /// How long a publisher waits for room under [`SlowSubscriber::Wait`].
    /// Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub publish_timeout: Duration,
    /// The largest payload accepted, in bytes. Default 1 MiB. With
    /// `capacity`, bounds what a subscriber can hold:
    /// `capacity × max_payload` (payloads are shared by all subscribers).
    pub max_payload: usize,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            capacity: 1024,
            slow_subscriber: SlowSubscriber::DropOldest,
            publish_timeout: Duration::from_secs(5),
            max_payload: 1 << 20,
        }
    }
}

impl BusSettings {
    /// Checks every bound.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("capacity", self.capacity, 1, MAX_CAPACITY)?;
        duration("publish_timeout", self.publish_timeout, Duration::ZERO)?;
        in_range("max_payload", self.max_payload, 1, MAX_PAYLOAD)
    }
}

/// Settings of a [`Consumer`](crate::Consumer): how it bounds, retries and
/// dead-letters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ConsumerSettings {
    /// Messages handled at once by this consumer. Default 16.
    pub max_in_flight: usize,
    /// Deliveries per message, the first included, before a retryable
    /// failure goes to the dead letters. Default 5.
    pub max_deliver: u32,
    /// The delay before the first redelivery after a retryable failure; it
    /// doubles with each delivery up to `redelivery_delay_max`. Default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub redelivery_delay: Duration,
    /// The cap on the redelivery delay. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub redelivery_delay_max: Duration,
    /// How long the consumer stops pulling after its handler refused a
    /// message (an open breaker, a full bulkhead, a rate limit) that gave no
    /// `retry_after` of its own. Default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub rejection_backoff: Duration,
    /// Where dead letters go. Default `dead_letter.<consumer name>`.
    pub dead_letter_subject: Option<String>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            max_deliver: 5,
            redelivery_delay: Duration::from_secs(1),
            redelivery_delay_max: Duration::from_secs(60),
            rejection_backoff: Duration::from_secs(1),
            dead_letter_subject: None,
        }
    }
}

impl ConsumerSettings {
    /// Checks every bound and the dead-letter subject.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("max_in_flight", self.max_in_flight, 1, MAX_IN_FLIGHT)?;
        in_range(
            "max_deliver",
            self.max_deliver as usize,
            1,
            MAX_DELIVER as usize,
        )?;
        duration("redelivery_delay", self.redelivery_delay, Duration::ZERO)?;
        duration(
            "redelivery_delay_max",
            self.redelivery_delay_max,
            self.redelivery_delay,
        )?;
        duration(
            "rejection_backoff",
            self.rejection_backoff,
            Duration::from_millis(1),
        )?;
        if let Some(subject) = &self.dead_letter_subject {
            validate_subject(subject)
                .map_err(|e| ConfigError::new("dead_letter_subject", e.to_string()))?;
        }
        Ok(())
    }

    /// The delay before redelivering a message that failed on its
    /// `delivery`-th delivery (1-based): `redelivery_delay × 2^(delivery-1)`,
    /// capped.
    #[must_use]
    pub fn redelivery_delay_for(&self, delivery: u32) -> Duration {
        let shift = delivery.saturating_sub(1).min(30);
        self.redelivery_delay
            .checked_mul(1 << shift)
            .unwrap_or(self.redelivery_delay_max)
            .min(self.redelivery_delay_max)
    }
}

/// Settings of the in-memory idempotency store
/// ([`IdempotentLayer`](crate::IdempotentLayer)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct DedupSettings {
    /// Handled message ids kept (oldest forgotten first). Default 100 000.
    /// It must cover every id that can still be redelivered: with JetStream,
    /// the messages handled during the longest redelivery horizon.
    pub capacity: usize,
    /// Forget an id after this long, if set. Default none.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub ttl: Option<Duration>,
}

impl Default for DedupSettings {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: None,
        }
    }
}

impl DedupSettings {
    /// Checks every bound.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("capacity", self.capacity, 1, MAX_DEDUP_CAPACITY)?;
        if let Some(ttl) = self.ttl {
            duration("ttl", ttl, Duration::from_millis(1))?;
        }
        Ok(())
    }
}

/// Settings of the outbox [`Relay`](crate::outbox::Relay).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RelaySettings {
    /// Events read per batch. Default 256.
    pub batch_size: usize,
    /// How often the relay looks for new events when it is caught up (a
    /// [`RelayHandle::wake`](crate::outbox::RelayHandle::wake) looks at
    /// once). Default 100 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub poll_interval: Duration,
    /// The first delay after a failed read, publish or checkpoint; it doubles
    /// up to `retry_delay_max`. Default 100 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_delay: Duration,
    /// The cap on the retry delay. Default 10 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_delay_max: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval: Duration::from_millis(100),
            retry_delay: Duration::from_millis(100),
            retry_delay_max: Duration::from_secs(10),
        }
    }
}

impl RelaySettings {
    /// Checks every bound.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("batch_size", self.batch_size, 1, MAX_BATCH)?;
        duration(
            "poll_interval",
            self.poll_interval,
            Duration::from_millis(1),
        )?;
        duration("retry_delay", self.retry_delay, Duration::from_millis(1))?;
        duration("retry_delay_max", self.retry_delay_max, self.retry_delay)
    }
}

/// Settings of the NATS JetStream backend
/// ([`NatsBus`](crate::backend::nats::NatsBus)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct NatsSettings {
    /// How long a publish waits for the stream's acknowledgement before it
    /// fails with
    /// [`PublishErrorKind::Unavailable`](crate::error::PublishErrorKind::Unavailable).
    /// Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub publish_timeout: Duration,
    /// How long the broker waits for an acknowledgement before it
    /// redelivers. Keep the handler's timeout below it. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub ack_wait: Duration,
    /// Acknowledge and wait for the server to confirm (a round trip per
    /// message) instead of a fire-and-forget ack. A lost plain ack means one
    /// redelivery, which idempotent handlers absorb. Default `false`.
    pub double_ack: bool,
    /// Messages a subscription asks for per pull request (they wait in the
    /// client until handled, their ack wait running: keep it near the
    /// consumer's `max_in_flight`). The next request goes out when half of
    /// a batch is taken, so pulling overlaps handling. Default 64.
    pub pull_batch: usize,
    /// Unacknowledged messages the broker lets a consumer (all members of a
    /// queue group together) hold before it stops delivering. Default 1024.
    pub max_ack_pending: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            double_ack: false,
            pull_batch: 64,
            max_ack_pending: 1024,
        }
    }
}

impl NatsSettings {
    /// Checks every bound.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        duration(
            "publish_timeout",
            self.publish_timeout,
            Duration::from_millis(1),
        )?;
        duration("ack_wait", self.ack_wait, Duration::from_millis(100))?;
        in_range("pull_batch", self.pull_batch, 1, MAX_IN_FLIGHT)?;
        in_range("max_ack_pending", self.max_ack_pending, 1, MAX_IN_FLIGHT)
    }
}

/// Checks `name` can label metrics and name a durable consumer: 1 to 64
/// ASCII letters, digits, `-` and `_`.
///
/// # Errors
///
/// A [`ConfigError`] for field `name`.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigError::new(
            "name",
            format!("must be 1 to 64 ASCII letters, digits, `-` or `_`, got {name:?}"),
        ));
    }
    Ok(())
}

fn in_range(field: &'static str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            field,
            format!("must be in [{min}, {max}], got {value}"),
        ));
    }
    Ok(())
}

fn duration(field: &'static str, value: Duration, min: Duration) -> Result<(), ConfigError> {
    if value < min || value > MAX_DURATION {
        return Err(ConfigError::new(
            field,
            format!("must be in [{min:?}, {MAX_DURATION:?}], got {value:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BusSettings::default().validate().unwrap();
        ConsumerSettings::default().validate().unwrap();
        DedupSettings::default().validate().unwrap();
        RelaySettings::default().validate().unwrap();
        NatsSettings::default().validate().unwrap();
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bus = BusSettings {
            capacity: 0,
            ..BusSettings::default()
        };
        assert_eq!(bus.validate().unwrap_err().field(), "capacity");
        let c = ConsumerSettings {
            redelivery_delay: Duration::from_secs(10),
            redelivery_delay_max: Duration::from_secs(1),
            ..ConsumerSettings::default()
        };
        assert_eq!(c.validate().unwrap_err().field(), "redelivery_delay_max");
        let c = ConsumerSettings {
            dead_letter_subject: Some("dlq.*".into()),
            ..ConsumerSettings::default()
        };
        assert_eq!(c.validate().unwrap_err().field(), "dead_letter_subject");
        let c = ConsumerSettings {
            max_deliver: 0,
            ..ConsumerSettings::default()
        };
        assert_eq!(c.validate().unwrap_err().field(), "max_deliver");
        assert_eq!(validate_name("a.b").unwrap_err().field(), "name");
        assert!(validate_name("orders-v2_x").is_ok());
    }

    #[test]
    fn redelivery_delay_doubles_and_caps() {
        let c = ConsumerSettings {
            redelivery_delay: Duration::from_millis(100),
            redelivery_delay_max: Duration::from_millis(500),
            ..ConsumerSettings::default()
        };
        assert_eq!(c.redelivery_delay_for(1), Duration::from_millis(100));
        assert_eq!(c.redelivery_delay_for(2), Duration::from_millis(200));
        assert_eq!(c.redelivery_delay_for(3), Duration::from_millis(400));
        assert_eq!(c.redelivery_delay_for(4), Duration::from_millis(500));
        assert_eq!(c.redelivery_delay_for(u32::MAX), Duration::from_millis(500));
    }
}
