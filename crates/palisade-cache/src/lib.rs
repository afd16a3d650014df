//! Cache-aside as a tower layer: stale-while-revalidate, stale-if-error and
//! request coalescing, in process and in Redis.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod backend;
mod builder;
pub mod error;
mod event;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod layer;
mod metrics;
mod policy;
mod service;
mod settings;
mod shared;
mod state;

pub use builder::{CacheBuilder, Unkeyed};
pub use event::{CacheEvent, Served, StaleReason};
pub use handle::{CacheHandle, CacheSnapshot, Purged, StaleServed};
pub use layer::CacheLayer;
pub use policy::{
    AdmitContext, Admitted, CacheKey, Codec, ENTRY_OVERHEAD, FnCodec, KeyFn, Lookup, NoCodec,
    Policy, SizeOf, Storage, Variant, Weigher,
};
pub use service::Cache;
#[cfg(feature = "redis")]
pub use settings::RedisSettings;
pub use settings::{CacheSettings, MAX_BYTES, MAX_DURATION, MAX_ENTRY_BYTES};
pub use shared::SharedTierSnapshot;
pub use state::{Decision, Directives, Freshness, Lifetime, NotStored, decide, is_failure_status};

pub use palisade_core::BoxError;
