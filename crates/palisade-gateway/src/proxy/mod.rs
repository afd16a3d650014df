//! The proxy feature: `[[routes]]` prefixes forwarded to their upstream's
//! stack. It owns the upstreams and their stacks ([`upstream`]), the stack
//! errors as problem responses ([`errors`]), the per-upstream statistics
//! ([`stats`]) and the HTTP client ([`client`], whose items are re-exported
//! here). The route table that serves them is in [`crate::routes`], the
//! upstream tiles of the dashboard in [`crate::dashboard`].

pub mod client;
pub mod errors;
pub mod stats;
pub mod upstream;

/// The proxy's config sections: `[upstreams.<name>]` and `[[routes]]`.
pub use crate::config::{RouteConfig, UpstreamConfig, UpstreamTarget};
pub use client::*;
