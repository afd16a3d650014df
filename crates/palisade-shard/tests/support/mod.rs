//! Shared test helpers.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

use palisade_shard::{ShardKey, ShardMap};
use tower::Service;

/// A service that answers every request with its own name: which shard
/// served it.
#[derive(Clone, Debug)]
pub struct Named(pub &'static str);

impl<Req> Service<Req> for Named {
    type Response = &'static str;
    type Error = Infallible;
    type Future = Ready<Result<&'static str, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Req) -> Self::Future {
        std::future::ready(Ok(self.0))
    }
}

/// The first key (a user id from `from`) that `map` gives to `shard`.
pub fn key_on(map: &ShardMap, shard: &str, from: u64) -> u64 {
    (from..from + 100_000)
        .find(|id| map.owner_name(ShardKey::from(*id)) == shard)
        .expect("some key lands on every shard")
}
