//! Metric handles, resolved once when the layer is built.

use std::sync::Arc;

use metrics::Counter;

use crate::settings::FallbackClass;

pub(crate) const SERVED: &str = "palisade_fallback_served_total";
pub(crate) const FAILED: &str = "palisade_fallback_failed_total";

fn describe() {
    metrics::describe_counter!(
        SERVED,
        "Failed calls answered by the fallback, by class of failure"
    );
    metrics::describe_counter!(
        FAILED,
        "Failed calls whose fallback failed too, by class of failure"
    );
}

/// The handles of one layer: one per class and outcome.
#[derive(Debug)]
pub(crate) struct Metrics {
    served: [Counter; 6],
    failed: [Counter; 6],
}

impl Metrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let per_class = |metric: &'static str| {
            FallbackClass::ALL.map(|class| {
                metrics::counter!(metric, "name" => name.to_string(), "class" => class.as_str())
            })
        };
        Self {
            served: per_class(SERVED),
            failed: per_class(FAILED),
        }
    }

    pub(crate) fn served(&self, class: FallbackClass) {
        self.served[class.index()].increment(1);
    }

    pub(crate) fn failed(&self, class: FallbackClass) {
        self.failed[class.index()].increment(1);
    }
}
