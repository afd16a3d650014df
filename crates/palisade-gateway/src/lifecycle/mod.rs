//! The gateway's lifecycle in one module: start-up ([`server::Gateway`]:
//! backends, upstreams, listeners, a worker thread per core), the shared
//! state every request sees ([`state::AppState`]), the phases of shutdown
//! (readiness grace, drain). The liveness, readiness and metrics endpoints
//! that report it are in [`crate::routes`].

/// The lifecycle's config section: `[server]`.
pub use crate::config::ServerConfig;

pub(crate) mod drain;
pub mod server;
/// The shared state, at its old path; it lives in [`crate::state`].
pub use crate::state;
