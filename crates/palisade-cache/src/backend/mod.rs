//! The shared tier's backends (feature `redis`): [`redis::RedisTier`].

pub mod redis;
