//! The deadlines panel on the dashboard: deadline expiries, fallbacks
//! served and hedges sent and won, each from its crate's own snapshots.

use palisade::deadline::DeadlineSnapshot;
use palisade::fallback::FallbackSnapshot;
use palisade::hedge::HedgeSnapshot;
use serde::Serialize;

use crate::state::AppState;

/// Deadlines, fallbacks and hedges on the dashboard: the totals the panel
/// shows, and the snapshots they add up.
#[derive(Clone, Debug, Serialize)]
pub struct DeadlinesTile {
    /// Requests whose deadline passed (on arrival or in flight), every
    /// deadline layer together: every route's and the upstreams' overall
    /// timeouts.
    pub expired: u64,
    /// Aggregator branches answered by their fallback.
    pub fallbacks_served: u64,
    /// Hedges sent, every hedging upstream together.
    pub hedges_sent: u64,
    /// Of those, calls a hedge answered first.
    pub hedges_won: u64,
    /// The deadline crate's snapshot of each layer (`gateway`: every
    /// route's; then each upstream's).
    pub deadlines: Vec<DeadlineSnapshot>,
    /// The fallback crate's snapshot of each branch's fallback.
    pub fallbacks: Vec<FallbackSnapshot>,
    /// The hedge crate's snapshot of each hedging upstream.
    pub hedges: Vec<HedgeSnapshot>,
}

/// The deadlines panel now.
pub(crate) fn tile(state: &AppState) -> DeadlinesTile {
    let deadlines = state.deadlines().snapshots();
    let fallbacks = state.fallbacks().snapshots();
    let hedges: Vec<HedgeSnapshot> = state
        .upstreams()
        .filter_map(|up| up.layers().hedge())
        .map(|h| h.snapshot())
        .collect();
    DeadlinesTile {
        expired: deadlines.iter().map(DeadlineSnapshot::expired).sum(),
        fallbacks_served: fallbacks.iter().map(|f| f.served).sum(),
        hedges_sent: hedges.iter().map(|h| h.hedges).sum(),
        hedges_won: hedges.iter().map(|h| h.won).sum(),
        deadlines,
        fallbacks,
        hedges,
    }
}
