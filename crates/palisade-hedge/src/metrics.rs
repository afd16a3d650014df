//! Metric handles, resolved once when the layer is built.

use std::sync::Arc;

use metrics::{Counter, Gauge};

pub(crate) const HEDGES: &str = "palisade_hedge_hedges_total";
pub(crate) const WINS: &str = "palisade_hedge_wins_total";
pub(crate) const BUDGET_EXHAUSTED: &str = "palisade_hedge_budget_exhausted_total";
pub(crate) const DELAY: &str = "palisade_hedge_delay_seconds";

fn describe() {
    metrics::describe_counter!(HEDGES, "Hedges sent: extra attempts of a request");
    metrics::describe_counter!(
        WINS,
        "Requests answered by a hedge rather than the first attempt"
    );
    metrics::describe_counter!(
        BUDGET_EXHAUSTED,
        "Hedges due but not sent because the budget was spent"
    );
    metrics::describe_gauge!(
        DELAY,
        metrics::Unit::Seconds,
        "The current hedge delay (the observed latency percentile)"
    );
}

/// The handles of one layer.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) hedges: Counter,
    pub(crate) wins: Counter,
    pub(crate) budget_exhausted: Counter,
    pub(crate) delay: Gauge,
}

impl Metrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let name = name.to_string();
        Self {
            hedges: metrics::counter!(HEDGES, "name" => name.clone()),
            wins: metrics::counter!(WINS, "name" => name.clone()),
            budget_exhausted: metrics::counter!(BUDGET_EXHAUSTED, "name" => name.clone()),
            delay: metrics::gauge!(DELAY, "name" => name),
        }
    }
}
