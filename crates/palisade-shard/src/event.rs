//! [`ShardEvent`]: what a shard router tells its listeners.

use std::sync::Arc;

/// What a change did to the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ChangeKind {
    /// A shard was added.
    Added,
    /// A shard was removed.
    Removed,
    /// A shard's weight changed.
    Reweighted,
}

impl ChangeKind {
    /// `added`, `removed` or `reweighted`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Reweighted => "reweighted",
        }
    }
}

/// One change of the shard map, as recorded by the router.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct MapChange {
    /// The map's version after the change (the first map is version 1).
    pub epoch: u64,
    /// What changed.
    pub kind: ChangeKind,
    /// The shard concerned.
    pub shard: Arc<str>,
    /// The share of the key space whose owner changed, estimated from
    /// [`MOVE_SAMPLES`](crate::MOVE_SAMPLES) sample keys (0.25 means a
    /// quarter of the keys moved). `ShardMap::moved_keys` counts a known set
    /// of keys exactly.
    pub moved_share: f64,
}

/// An event of a shard router, handed to the listeners added with
/// [`ShardRouterBuilder::on_event`](crate::ShardRouterBuilder::on_event).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ShardEvent {
    /// The map changed: a shard was added, removed or re-weighted.
    MapChanged {
        /// The router's name.
        router: Arc<str>,
        /// The change.
        change: MapChange,
    },
    /// A move ended: the previous map is no longer consulted.
    MoveCompleted {
        /// The router's name.
        router: Arc<str>,
        /// The version of the map in force.
        epoch: u64,
    },
    /// A request for a key that moved failed on its new owner and was sent to
    /// its previous owner ([`MovePolicy::FallBackToPrevious`](crate::MovePolicy::FallBackToPrevious)).
    FellBack {
        /// The router's name.
        router: Arc<str>,
        /// The new owner, which failed the request.
        from: Arc<str>,
        /// The previous owner, which was asked next.
        to: Arc<str>,
    },
}
