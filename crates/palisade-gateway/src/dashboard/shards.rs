//! The sharded upstreams' panel on the dashboard: per sharded upstream, the
//! shard crate's snapshot (each shard's share of the keys and requests, the
//! map's version, the last change and the share of keys it moved), each
//! shard's URL and the route prefixes that reach it. The page turns the
//! request counts into a rate per shard between two snapshots.

use serde::Serialize;

use crate::admin::shards::ShardsView;
use crate::state::AppState;

/// One sharded upstream on the dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct ShardsTile {
    /// The router's snapshot and each shard's URL, as `GET
    /// /admin/shards/{upstream}` shows them.
    #[serde(flatten)]
    pub view: ShardsView,
    /// The route prefixes that proxy to it.
    pub prefixes: Vec<String>,
}

/// A tile per sharded upstream, by name.
pub(crate) fn tiles(state: &AppState) -> Vec<ShardsTile> {
    state
        .sharded_upstreams()
        .map(|up| ShardsTile {
            view: ShardsView::of(up),
            prefixes: state
                .inner
                .routes
                .iter()
                .filter(|r| r.upstream == up.name())
                .map(|r| r.prefix.clone())
                .collect(),
        })
        .collect()
}
