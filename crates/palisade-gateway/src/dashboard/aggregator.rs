//! The aggregator's panel on the dashboard: its route and the last gather
//! kept, drawn as a waterfall.

use palisade::fan_out::FanOutSnapshot;
use serde::Serialize;

use crate::aggregator::GatherView;
use crate::state::AppState;

/// The aggregator on the dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct AggregatorTile {
    /// Its route (`/api/dashboard/user/{id}`).
    pub route: &'static str,
    /// The fan-out crate's own snapshot: its settings and branches (`null`
    /// before a worker has built it).
    pub fan_out: Option<FanOutSnapshot>,
    /// The last gather kept (one every
    /// [`SAMPLE_EVERY`](crate::aggregator::SAMPLE_EVERY) at most), drawn as
    /// a waterfall; `null` before the first.
    pub last: Option<GatherView>,
}

/// The aggregator's tile, when the config has an aggregator.
pub(crate) fn tile(state: &AppState) -> Option<AggregatorTile> {
    state.inner.aggregator.as_ref().map(|_| AggregatorTile {
        route: crate::config::AGGREGATOR_ROUTE,
        fan_out: state.fan_outs().snapshots().into_iter().next(),
        last: state.last_gather(),
    })
}
