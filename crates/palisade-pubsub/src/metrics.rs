//! Metric handles, resolved once when a bus, a subscription, a consumer or a
//! relay is built, so the message path never looks a metric up or allocates
//! a label. Every series is labelled `name`.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::event::DeadLetterKind;

pub(crate) const PUBLISHED: &str = "palisade_pubsub_published_total";
pub(crate) const PUBLISH_ERRORS: &str = "palisade_pubsub_publish_errors_total";
pub(crate) const DROPPED: &str = "palisade_pubsub_dropped_total";
pub(crate) const DELIVERED: &str = "palisade_pubsub_delivered_total";
pub(crate) const ACKED: &str = "palisade_pubsub_acked_total";
pub(crate) const REDELIVERED: &str = "palisade_pubsub_redelivered_total";
pub(crate) const DEAD_LETTERED: &str = "palisade_pubsub_dead_lettered_total";
pub(crate) const REJECTED: &str = "palisade_pubsub_rejected_total";
pub(crate) const DUPLICATES: &str = "palisade_pubsub_duplicates_total";
pub(crate) const LAG: &str = "palisade_pubsub_consumer_lag";
pub(crate) const IN_FLIGHT: &str = "palisade_pubsub_in_flight";
pub(crate) const HANDLE: &str = "palisade_pubsub_handle_seconds";
pub(crate) const RELAYED: &str = "palisade_pubsub_relayed_total";
pub(crate) const RELAY_POSITION: &str = "palisade_pubsub_relay_position";
pub(crate) const RELAY_LAG: &str = "palisade_pubsub_relay_lag";
pub(crate) const RELAY_ERRORS: &str = "palisade_pubsub_relay_errors_total";

/// Describes every metric to the installed recorder (help text and unit).
pub(crate) fn describe() {
    metrics::describe_counter!(
        PUBLISHED,
        "Messages published (accepted by the bus or stream)"
    );
    metrics::describe_counter!(PUBLISH_ERRORS, "Publishes that failed, by kind");
    metrics::describe_counter!(
        DROPPED,
        "Messages the in-process bus dropped from slow subscribers' buffers"
    );
    metrics::describe_counter!(
        DELIVERED,
        "Deliveries a consumer received, redeliveries included"
    );
    metrics::describe_counter!(ACKED, "Messages a consumer handled and acknowledged");
    metrics::describe_counter!(REDELIVERED, "Deliveries after the first of a message");
    metrics::describe_counter!(DEAD_LETTERED, "Messages sent to the dead letters, by kind");
    metrics::describe_counter!(
        REJECTED,
        "Messages the handler's stack refused (breaker open, bulkhead full, rate limited)"
    );
    metrics::describe_counter!(
        DUPLICATES,
        "Messages an idempotent consumer skipped as already handled"
    );
    metrics::describe_gauge!(
        LAG,
        "Messages waiting for a consumer (buffer or stream backlog)"
    );
    metrics::describe_gauge!(
        IN_FLIGHT,
        "Messages a consumer holds (handling, or waiting to retry)"
    );
    metrics::describe_histogram!(HANDLE, Unit::Seconds, "Time a handler took per delivery");
    metrics::describe_counter!(RELAYED, "Events the outbox relay published");
    metrics::describe_gauge!(
        RELAY_POSITION,
        "The outbox relay's checkpoint (global position)"
    );
    metrics::describe_gauge!(
        RELAY_LAG,
        "Committed events the outbox relay has not published yet"
    );
    metrics::describe_counter!(
        RELAY_ERRORS,
        "Outbox relay failures (read, publish, checkpoint)"
    );
}

/// A publisher's handles (a bus or a JetStream context).
#[cfg_attr(not(any(feature = "memory", feature = "nats")), allow(dead_code))]
#[derive(Clone, Debug)]
pub(crate) struct PublisherMetrics {
    pub(crate) published: Counter,
    pub(crate) dropped: Counter,
    name: Arc<str>,
}

#[cfg_attr(not(any(feature = "memory", feature = "nats")), allow(dead_code))]
impl PublisherMetrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let n = name.to_string();
        Self {
            published: metrics::counter!(PUBLISHED, "name" => n.clone()),
            dropped: metrics::counter!(DROPPED, "name" => n),
            name: Arc::clone(name),
        }
    }

    /// Counts a failed publish (the cold path: the handle is looked up).
    pub(crate) fn publish_error(&self, kind: &'static str) {
        metrics::counter!(PUBLISH_ERRORS, "name" => self.name.to_string(), "kind" => kind)
            .increment(1);
    }
}

/// A consumer's handles.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerMetrics {
    pub(crate) delivered: Counter,
    pub(crate) acked: Counter,
    pub(crate) redelivered: Counter,
    pub(crate) rejected: Counter,
    pub(crate) lag: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) handle: Histogram,
    dead_terminal: Counter,
    dead_max_deliver: Counter,
}

impl ConsumerMetrics {
    pub(crate) fn new(name: &str) -> Self {
        describe();
        let n = name.to_owned();
        let dead = |kind: DeadLetterKind| metrics::counter!(DEAD_LETTERED, "name" => n.clone(), "kind" => kind.as_str());
        Self {
            dead_terminal: dead(DeadLetterKind::Terminal),
            dead_max_deliver: dead(DeadLetterKind::MaxDeliver),
            delivered: metrics::counter!(DELIVERED, "name" => n.clone()),
            acked: metrics::counter!(ACKED, "name" => n.clone()),
            redelivered: metrics::counter!(REDELIVERED, "name" => n.clone()),
            rejected: metrics::counter!(REJECTED, "name" => n.clone()),
            lag: metrics::gauge!(LAG, "name" => n.clone()),
            in_flight: metrics::gauge!(IN_FLIGHT, "name" => n.clone()),
            handle: metrics::histogram!(HANDLE, "name" => n),
        }
    }

    pub(crate) const fn dead_lettered(&self, kind: DeadLetterKind) -> &Counter {
        match kind {
            DeadLetterKind::Terminal => &self.dead_terminal,
            DeadLetterKind::MaxDeliver => &self.dead_max_deliver,
        }
    }
}

/// An idempotent consumer's handles.
#[derive(Clone, Debug)]
pub(crate) struct DedupMetrics {
    pub(crate) duplicates: Counter,
}

impl DedupMetrics {
    pub(crate) fn new(name: &str) -> Self {
        describe();
        Self {
            duplicates: metrics::counter!(DUPLICATES, "name" => name.to_owned()),
        }
    }
}

/// The outbox relay's handles.
#[derive(Clone, Debug)]
pub(crate) struct RelayMetrics {
    pub(crate) relayed: Counter,
    pub(crate) position: Gauge,
    pub(crate) lag: Gauge,
    pub(crate) errors: Counter,
}

impl RelayMetrics {
    pub(crate) fn new(name: &str) -> Self {
        describe();
        let n = name.to_owned();
        Self {
            relayed: metrics::counter!(RELAYED, "name" => n.clone()),
            position: metrics::gauge!(RELAY_POSITION, "name" => n.clone()),
            lag: metrics::gauge!(RELAY_LAG, "name" => n.clone()),
            errors: metrics::counter!(RELAY_ERRORS, "name" => n),
        }
    }
}
