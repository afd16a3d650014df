//! Metric handles, resolved once when a store is opened, and the tracing of
//! appends. Every series is labelled `name`.

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::error::EventStoreError;

pub(crate) const APPENDS: &str = "palisade_event_store_appends_total";
pub(crate) const EVENTS_APPENDED: &str = "palisade_event_store_events_appended_total";
pub(crate) const APPEND_DURATION: &str = "palisade_event_store_append_duration_seconds";
pub(crate) const EVENTS_READ: &str = "palisade_event_store_events_read_total";
pub(crate) const READ_ERRORS: &str = "palisade_event_store_read_errors_total";
pub(crate) const HEAD: &str = "palisade_event_store_head_position";
pub(crate) const UPCAST_FAILURES: &str = "palisade_event_store_upcast_failures_total";

/// The `outcome` label values of [`APPENDS`].
const OUTCOMES: [&str; 6] = [
    "written",
    "already_stored",
    "conflict",
    "duplicate",
    "invalid",
    "error",
];

fn describe() {
    metrics::describe_counter!(APPENDS, "Appends, by outcome");
    metrics::describe_counter!(EVENTS_APPENDED, "Events written by appends");
    metrics::describe_histogram!(
        APPEND_DURATION,
        Unit::Seconds,
        "Time an append took, refused ones included"
    );
    metrics::describe_counter!(EVENTS_READ, "Events returned by reads and subscriptions");
    metrics::describe_counter!(READ_ERRORS, "Reads that failed");
    metrics::describe_counter!(
        UPCAST_FAILURES,
        "Events read whose upcaster failed (returned as stored; decoding them fails)"
    );
    metrics::describe_gauge!(
        HEAD,
        "The last global position this process appended or read"
    );
}

/// The store's metric handles.
#[derive(Debug)]
pub(crate) struct Metrics {
    appends: [Counter; 6],
    pub(crate) events_appended: Counter,
    pub(crate) append_duration: Histogram,
    pub(crate) events_read: Counter,
    pub(crate) read_errors: Counter,
    pub(crate) upcast_failures: Counter,
    pub(crate) head: Gauge,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        describe();
        let name = name.to_owned();
        Self {
            appends: OUTCOMES.map(
                |outcome| metrics::counter!(APPENDS, "name" => name.clone(), "outcome" => outcome),
            ),
            events_appended: metrics::counter!(EVENTS_APPENDED, "name" => name.clone()),
            append_duration: metrics::histogram!(APPEND_DURATION, "name" => name.clone()),
            events_read: metrics::counter!(EVENTS_READ, "name" => name.clone()),
            read_errors: metrics::counter!(READ_ERRORS, "name" => name.clone()),
            upcast_failures: metrics::counter!(UPCAST_FAILURES, "name" => name.clone()),
            head: metrics::gauge!(HEAD, "name" => name),
        }
    }

    /// Counts an append's outcome.
    pub(crate) fn append_outcome(&self, result: Result<bool, &EventStoreError>) {
        let index = match result {
            Ok(false) => 0,
            Ok(true) => 1,
            Err(EventStoreError::Conflict(_)) => 2,
            Err(EventStoreError::Duplicate(_)) => 3,
            Err(EventStoreError::Invalid(_)) => 4,
            Err(EventStoreError::Store(_)) => 5,
        };
        self.appends[index].increment(1);
    }
}
