//! Metric handles, resolved once when the layer is built.

use std::sync::Arc;

use metrics::Counter;

/// The counters of `palisade_chaos_injected_total`, one per kind.
pub(crate) struct Metrics {
    pub(crate) latency: Counter,
    pub(crate) error: Counter,
    pub(crate) abort: Counter,
    pub(crate) outage: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        let counter = |kind: &'static str| {
            metrics::counter!(
                "palisade_chaos_injected_total",
                "name" => name.to_string(),
                "kind" => kind
            )
        };
        metrics::describe_counter!(
            "palisade_chaos_injected_total",
            "Faults injected by a chaos layer, by kind (latency, error, abort, outage)."
        );
        Self {
            latency: counter("latency"),
            error: counter("error"),
            abort: counter("abort"),
            outage: counter("outage"),
        }
    }
}
