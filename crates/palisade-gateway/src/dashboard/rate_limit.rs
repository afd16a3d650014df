//! The rate limit's panel on the dashboard: the `/api` limiter's tiers, each
//! with its limit, its allowed and limited calls per second over the
//! dashboard's window, and its counts since start. Tiers are key classes
//! (`free`, `paid`, `anonymous`): the panel never shows a key.

use std::time::Duration;

use palisade::rate_limit::RateLimitSnapshot;
use serde::Serialize;

use crate::proxy::stats::WINDOW_SECS;
use crate::rate_limit::TierRate;
use crate::state::AppState;

/// The `/api` limiter on the dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct RateLimitTile {
    /// The limiter's own snapshot (`name`, `backend`, `keys`, `max_keys`,
    /// `invalid_keys`, `tiers` with their `limit`, `admitted`, `delayed`
    /// and `limited` counts since start, `remote` for Redis).
    #[serde(flatten)]
    pub snapshot: RateLimitSnapshot,
    /// Per tier, in the snapshot's order: calls allowed and limited per
    /// second over the window (`null` until the gateway has a second of
    /// samples).
    pub rates: Vec<TierRate>,
}

/// The limiter's tile, when the config has a `[rate_limit]`.
pub(crate) fn tile(state: &AppState) -> Option<RateLimitTile> {
    let limit = state.rate_limit()?;
    let snapshot = limit.handle().snapshot();
    let rates = limit.meter().rates(
        &snapshot.tiers,
        tokio::time::Instant::now(),
        Duration::from_secs(WINDOW_SECS),
    );
    Some(RateLimitTile { snapshot, rates })
}
