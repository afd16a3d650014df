//! The caches' panel on the dashboard: one row per upstream cache, with its
//! hit ratio and the stale entries it served, by reason (an outage shows
//! as stale serves for `error`, `timeout` or `rejected`).

use palisade::cache::{CacheHandle, CacheSnapshot};
use serde::Serialize;

use crate::state::AppState;

/// One cache on the dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct CacheTile {
    /// The cache crate's own snapshot as it is (`name`, `hits`, `misses`,
    /// `hit_ratio`, `stale_served` by reason, `coalesced`, `bytes`,
    /// `entries`, `shared_tier`, `settings`, ...).
    #[serde(flatten)]
    pub snapshot: CacheSnapshot,
    /// Stale entries served, every reason together.
    pub stale_total: u64,
}

/// Every upstream's cache, by name.
pub(crate) fn tiles(state: &AppState) -> Vec<CacheTile> {
    state
        .caches()
        .handles()
        .iter()
        .map(CacheHandle::snapshot)
        .map(|snapshot| CacheTile {
            stale_total: snapshot.stale_served.total(),
            snapshot,
        })
        .collect()
}
