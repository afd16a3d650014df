//! Metric handles, resolved once per router and per shard (never per call),
//! and the tracing of map changes.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::event::MapChange;

/// `palisade_shard_requests_total{name, shard}`.
pub(crate) const REQUESTS: &str = "palisade_shard_requests_total";
/// `palisade_shard_request_duration_seconds{name, shard}`.
pub(crate) const DURATION: &str = "palisade_shard_request_duration_seconds";
/// `palisade_shard_not_ready_total{name, shard}`.
pub(crate) const NOT_READY: &str = "palisade_shard_not_ready_total";
/// `palisade_shard_fallbacks_total{name, shard}`.
pub(crate) const FALLBACKS: &str = "palisade_shard_fallbacks_total";
/// `palisade_shard_share{name, shard}`.
pub(crate) const SHARE: &str = "palisade_shard_share";
/// `palisade_shard_key_errors_total{name, reason}`.
pub(crate) const KEY_ERRORS: &str = "palisade_shard_key_errors_total";
/// `palisade_shard_defaulted_total{name}`.
pub(crate) const DEFAULTED: &str = "palisade_shard_defaulted_total";
/// `palisade_shard_map_version{name}`.
pub(crate) const VERSION: &str = "palisade_shard_map_version";
/// `palisade_shard_shards{name}`.
pub(crate) const SHARDS: &str = "palisade_shard_shards";
/// `palisade_shard_keys_moved_ratio{name}`.
pub(crate) const MOVED: &str = "palisade_shard_keys_moved_ratio";
/// `palisade_shard_map_changes_total{name, kind}`.
pub(crate) const CHANGES: &str = "palisade_shard_map_changes_total";

fn describe() {
    metrics::describe_counter!(REQUESTS, Unit::Count, "Requests routed to each shard");
    metrics::describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Latency of requests per shard, from routing to the answer"
    );
    metrics::describe_counter!(
        NOT_READY,
        Unit::Count,
        "Requests failed because their shard was not ready in time"
    );
    metrics::describe_counter!(
        FALLBACKS,
        Unit::Count,
        "Requests for moved keys sent again to their previous shard"
    );
    metrics::describe_gauge!(SHARE, "Share of the key space each shard owns (0 to 1)");
    metrics::describe_counter!(
        KEY_ERRORS,
        Unit::Count,
        "Requests without a usable shard key, by reason"
    );
    metrics::describe_counter!(
        DEFAULTED,
        Unit::Count,
        "Requests without a usable key served by the default shard"
    );
    metrics::describe_gauge!(VERSION, "Version of the shard map in force");
    metrics::describe_gauge!(SHARDS, "Shards in the map in force");
    metrics::describe_gauge!(
        MOVED,
        "Share of the key space that changed owner on the last map change (0 to 1)"
    );
    metrics::describe_counter!(CHANGES, Unit::Count, "Changes of the shard map, by kind");
}

/// A router's own handles.
#[derive(Debug)]
pub(crate) struct RouterMetrics {
    pub(crate) name: Arc<str>,
    pub(crate) key_missing: Counter,
    pub(crate) key_malformed: Counter,
    pub(crate) defaulted: Counter,
    pub(crate) version: Gauge,
    pub(crate) shards: Gauge,
    pub(crate) moved: Gauge,
}

impl RouterMetrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let label = name.to_string();
        Self {
            name: Arc::clone(name),
            key_missing: metrics::counter!(KEY_ERRORS, "name" => label.clone(), "reason" => "missing"),
            key_malformed: metrics::counter!(KEY_ERRORS, "name" => label.clone(), "reason" => "malformed"),
            defaulted: metrics::counter!(DEFAULTED, "name" => label.clone()),
            version: metrics::gauge!(VERSION, "name" => label.clone()),
            shards: metrics::gauge!(SHARDS, "name" => label.clone()),
            moved: metrics::gauge!(MOVED, "name" => label),
        }
    }

    /// Publishes a map in force, and traces the change that made it.
    pub(crate) fn published(&self, epoch: u64, shards: usize, change: Option<&MapChange>) {
        #[allow(clippy::cast_precision_loss)]
        {
            self.version.set(epoch as f64);
            self.shards.set(shards as f64);
        }
        if let Some(change) = change {
            self.moved.set(change.moved_share);
            metrics::counter!(CHANGES, "name" => self.name.to_string(), "kind" => change.kind.as_str())
                .increment(1);
            tracing::info!(
                name = %self.name,
                epoch,
                change = change.kind.as_str(),
                shard = %change.shard,
                shards,
                moved_share = change.moved_share,
                "shard map changed"
            );
        }
    }
}

/// One shard's handles.
#[derive(Debug)]
pub(crate) struct ShardMetrics {
    pub(crate) requests: Counter,
    pub(crate) duration: Histogram,
    pub(crate) not_ready: Counter,
    pub(crate) fallbacks: Counter,
    pub(crate) share: Gauge,
}

impl ShardMetrics {
    pub(crate) fn new(router: &str, shard: &str) -> Self {
        let (name, shard) = (router.to_owned(), shard.to_owned());
        Self {
            requests: metrics::counter!(REQUESTS, "name" => name.clone(), "shard" => shard.clone()),
            duration: metrics::histogram!(DURATION, "name" => name.clone(), "shard" => shard.clone()),
            not_ready: metrics::counter!(NOT_READY, "name" => name.clone(), "shard" => shard.clone()),
            fallbacks: metrics::counter!(FALLBACKS, "name" => name.clone(), "shard" => shard.clone()),
            share: metrics::gauge!(SHARE, "name" => name, "shard" => shard),
        }
    }
}
