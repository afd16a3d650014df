//! Metric handles, resolved once when a command handler or a projection
//! runner is built. Every series is labelled `name`.
// The projection's metrics exist with a SQL backend only.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

use metrics::{Counter, Gauge, Histogram, Unit};

pub(crate) const COMMANDS: &str = "palisade_cqrs_commands_total";
pub(crate) const COMMAND_DURATION: &str = "palisade_cqrs_command_duration_seconds";
pub(crate) const CONFLICTS: &str = "palisade_cqrs_command_conflicts_total";
pub(crate) const SNAPSHOTS: &str = "palisade_cqrs_snapshots_total";
pub(crate) const PROJECTED: &str = "palisade_cqrs_projection_events_total";
pub(crate) const PARKED: &str = "palisade_cqrs_projection_parked_total";
pub(crate) const CHECKPOINT: &str = "palisade_cqrs_projection_checkpoint";
pub(crate) const LAG: &str = "palisade_cqrs_projection_lag";
pub(crate) const ACTIVE: &str = "palisade_cqrs_projection_active";

/// The `outcome` label values of [`COMMANDS`].
pub(crate) const OUTCOMES: [&str; 5] = [
    "written",
    "already_stored",
    "unchanged",
    "rejected",
    "error",
];

/// An index into [`OUTCOMES`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum CommandOutcomeKind {
    Written = 0,
    AlreadyStored = 1,
    Unchanged = 2,
    Rejected = 3,
    Error = 4,
}

/// A command handler's metric handles.
#[derive(Debug)]
pub(crate) struct CommandMetrics {
    outcomes: [Counter; 5],
    pub(crate) duration: Histogram,
    pub(crate) conflicts: Counter,
    pub(crate) snapshots: Counter,
}

impl CommandMetrics {
    pub(crate) fn new(name: &str) -> Self {
        metrics::describe_counter!(COMMANDS, "Commands handled, by outcome");
        metrics::describe_histogram!(
            COMMAND_DURATION,
            Unit::Seconds,
            "Time to load, decide and append a command"
        );
        metrics::describe_counter!(CONFLICTS, "Appends that found a newer stream version");
        metrics::describe_counter!(SNAPSHOTS, "Snapshots saved");
        let label = name.to_owned();
        Self {
            outcomes: OUTCOMES
                .map(|o| metrics::counter!(COMMANDS, "name" => label.clone(), "outcome" => o)),
            duration: metrics::histogram!(COMMAND_DURATION, "name" => label.clone()),
            conflicts: metrics::counter!(CONFLICTS, "name" => label.clone()),
            snapshots: metrics::counter!(SNAPSHOTS, "name" => label),
        }
    }

    pub(crate) fn outcome(&self, kind: CommandOutcomeKind) {
        self.outcomes[kind as usize].increment(1);
    }
}

/// A projection runner's metric handles.
#[derive(Debug)]
pub(crate) struct ProjectionMetrics {
    pub(crate) projected: Counter,
    pub(crate) parked: Counter,
    pub(crate) checkpoint: Gauge,
    pub(crate) lag: Gauge,
    pub(crate) active: Gauge,
}

impl ProjectionMetrics {
    pub(crate) fn new(name: &str) -> Self {
        metrics::describe_counter!(PROJECTED, "Events applied (or skipped) by the projection");
        metrics::describe_counter!(
            PARKED,
            "Events parked: undecodable, or failing every attempt"
        );
        metrics::describe_gauge!(CHECKPOINT, "The global position the read model has reached");
        metrics::describe_gauge!(LAG, "The store's head position minus the checkpoint");
        metrics::describe_gauge!(
            ACTIVE,
            "1 while this process runs the projection, 0 on standby"
        );
        let label = name.to_owned();
        Self {
            projected: metrics::counter!(PROJECTED, "name" => label.clone()),
            parked: metrics::counter!(PARKED, "name" => label.clone()),
            checkpoint: metrics::gauge!(CHECKPOINT, "name" => label.clone()),
            lag: metrics::gauge!(LAG, "name" => label.clone()),
            active: metrics::gauge!(ACTIVE, "name" => label),
        }
    }
}
