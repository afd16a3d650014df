//! The proxy feature: `[[routes]]` prefixes forwarded to their upstream's
//! stack. It owns the route table (`route.rs`), the upstreams and their
//! stacks ([`upstream`]), the stack errors as problem responses
//! ([`errors`]), the per-upstream statistics ([`stats`]), the HTTP client
//! ([`client`], whose items are re-exported here) and the upstream tiles of
//! the dashboard ([`panel`]).

pub mod client;
pub mod errors;
pub mod panel;
pub(crate) mod route;
pub mod stats;
pub mod upstream;

/// The proxy's config sections: `[upstreams.<name>]` and `[[routes]]`.
pub use crate::config::{RouteConfig, UpstreamConfig, UpstreamTarget};
pub use client::*;
