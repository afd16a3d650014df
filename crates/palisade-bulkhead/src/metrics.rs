//! Metric handles, resolved once per pool when the pool is created, so the
//! call path never looks a metric up or allocates a label.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::event::RejectReason;

pub(crate) const IN_FLIGHT: &str = "palisade_bulkhead_in_flight";
pub(crate) const QUEUED: &str = "palisade_bulkhead_queued";
pub(crate) const LIMIT: &str = "palisade_bulkhead_limit";
pub(crate) const REJECTED: &str = "palisade_bulkhead_rejected_total";
pub(crate) const WAIT: &str = "palisade_bulkhead_wait_seconds";
pub(crate) const PARTITIONS: &str = "palisade_bulkhead_partitions";

/// Describes every metric to the installed recorder (help text and unit).
pub(crate) fn describe() {
    metrics::describe_gauge!(IN_FLIGHT, "Calls holding a permit of the pool");
    metrics::describe_gauge!(QUEUED, "Calls waiting for a permit of the pool");
    metrics::describe_gauge!(LIMIT, "The pool's current concurrency limit");
    metrics::describe_counter!(
        REJECTED,
        "Calls the bulkhead refused, by reason (full, queue_full, timeout)"
    );
    metrics::describe_histogram!(
        WAIT,
        Unit::Seconds,
        "Time calls spent queued for a permit (calls that had to wait)"
    );
    metrics::describe_gauge!(PARTITIONS, "Live partition pools of a partitioned bulkhead");
}

/// The handles of one pool.
#[derive(Debug)]
pub(crate) struct PoolMetrics {
    pub(crate) in_flight: Gauge,
    pub(crate) queued: Gauge,
    pub(crate) limit: Gauge,
    pub(crate) wait: Histogram,
    rejected_full: Counter,
    rejected_queue_full: Counter,
    rejected_timeout: Counter,
}

impl PoolMetrics {
    /// Handles labelled `name` and, when given, `partition`. With
    /// `per_partition` false, partition pools share their bulkhead's
    /// name-only series and report no limit (a sum of limits means nothing).
    pub(crate) fn new(name: &Arc<str>, partition: Option<&Arc<str>>, per_partition: bool) -> Self {
        let name = name.to_string();
        match partition {
            Some(partition) if per_partition => {
                let p = partition.to_string();
                let labels = [("name", name), ("partition", p)];
                let reject = |reason: RejectReason| {
                    metrics::counter!(
                        REJECTED,
                        &[
                            ("name", labels[0].1.clone()),
                            ("partition", labels[1].1.clone()),
                            ("reason", reason.as_str().to_owned()),
                        ]
                    )
                };
                Self {
                    rejected_full: reject(RejectReason::Full),
                    rejected_queue_full: reject(RejectReason::QueueFull),
                    rejected_timeout: reject(RejectReason::Timeout),
                    in_flight: metrics::gauge!(IN_FLIGHT, &labels),
                    queued: metrics::gauge!(QUEUED, &labels),
                    limit: metrics::gauge!(LIMIT, &labels),
                    wait: metrics::histogram!(WAIT, &labels),
                }
            }
            _ => {
                let reject = |reason: RejectReason| metrics::counter!(REJECTED, "name" => name.clone(), "reason" => reason.as_str());
                Self {
                    rejected_full: reject(RejectReason::Full),
                    rejected_queue_full: reject(RejectReason::QueueFull),
                    rejected_timeout: reject(RejectReason::Timeout),
                    in_flight: metrics::gauge!(IN_FLIGHT, "name" => name.clone()),
                    queued: metrics::gauge!(QUEUED, "name" => name.clone()),
                    limit: if partition.is_some() {
                        Gauge::noop()
                    } else {
                        metrics::gauge!(LIMIT, "name" => name.clone())
                    },
                    wait: metrics::histogram!(WAIT, "name" => name),
                }
            }
        }
    }

    pub(crate) fn rejected(&self, reason: RejectReason) -> &Counter {
        match reason {
            RejectReason::Full => &self.rejected_full,
            RejectReason::QueueFull => &self.rejected_queue_full,
            RejectReason::Timeout => &self.rejected_timeout,
        }
    }
}
