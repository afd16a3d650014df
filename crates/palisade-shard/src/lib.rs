//! Key-affine sharding for tower services.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
pub mod error;
mod event;
mod fallback;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod key;
mod metrics;
mod scatter;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::{IsFallback, NoKey, ShardRouterBuilder};
pub use error::{KeyError, KeyErrorKind, MapError, MapErrorKind, ShardNotReady};
pub use event::{ChangeKind, MapChange, ShardEvent};
pub use fallback::{FallBack, Forward, MoveFallback};
pub use handle::{ReplicaFigures, ShardFigures, ShardHandle, ShardSnapshot};
pub use key::{ExtractKey, IntoKeyResult, KeyFn, checked_key};
pub use scatter::{ScatterBuilder, ScatterGather};
pub use service::{ShardRouter, ShardService};
pub use settings::{
    KeyFormat, KeySource, MAX_KEY_LEN, MAX_READY_TIMEOUT, MAX_RING_POINTS, MAX_SHARDS,
    MAX_VIRTUAL_NODES, MAX_WEIGHT, MovePolicy, Scheme, ShardSettings,
};
pub use shared::{Replica, Shard};
pub use state::{MOVE_SAMPLES, ShardKey, ShardMap, ShardSpec, jump};
