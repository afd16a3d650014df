//! Metric handles, resolved once when the layer is built, and the tracing of
//! expiries.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram, Unit};

pub(crate) const EXPIRED: &str = "palisade_deadline_expired_total";
pub(crate) const BUDGET: &str = "palisade_deadline_budget_seconds";

fn describe() {
    metrics::describe_counter!(
        EXPIRED,
        "Calls whose deadline passed, by when (arrival, in_flight)"
    );
    metrics::describe_histogram!(
        BUDGET,
        Unit::Seconds,
        "The time requests had left when they reached the layer"
    );
}

/// The handles of one layer.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) budget: Histogram,
    expired_on_arrival: Counter,
    expired_in_flight: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let name = name.to_string();
        Self {
            budget: metrics::histogram!(BUDGET, "name" => name.clone()),
            expired_on_arrival: metrics::counter!(EXPIRED, "name" => name.clone(), "when" => "arrival"),
            expired_in_flight: metrics::counter!(EXPIRED, "name" => name, "when" => "in_flight"),
        }
    }

    pub(crate) fn expired(&self, name: &str, budget: Duration, on_arrival: bool) {
        if on_arrival {
            self.expired_on_arrival.increment(1);
        } else {
            self.expired_in_flight.increment(1);
        }
        tracing::debug!(
            name,
            budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            on_arrival,
            "deadline expired"
        );
    }
}
