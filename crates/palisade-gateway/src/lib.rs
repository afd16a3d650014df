//! The Palisade demo gateway: an axum reverse proxy over six in-process demo
//! backends, with per-upstream stacks, chaos controls, Prometheus metrics and
//! a live dashboard.
//!
//! Run it with `cargo run --release -p palisade-gateway` and open
//! <http://127.0.0.1:8080/dashboard>; `docs/gateway.md` is the manual.
//!
//! # Example
//!
//! The gateway in-process, as the tests drive it: bind on port 0, call it
//! over a real socket, shut it down.
//!
//! ```no_run
//! use palisade_gateway::{Config, Gateway};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::embedded_default();
//! config.server.listen = "127.0.0.1:0".parse()?;
//! let gateway = Gateway::bind(config, Some("secret".to_owned())).await?;
//! println!("listening on {}", gateway.local_addr());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(gateway.serve(async move { let _ = stopped.await; }));
//! // ... send requests ...
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Module map
//!
//! | module | what |
//! |---|---|
//! | [`config`] | TOML config: structs, validation, errors with file:line:column and key |
//! | [`server`] | [`Gateway`]: start-up (backends, upstreams, listeners), a thread per core, graceful shutdown |
//! | [`routes`] | [`app`]: the gateway's service: request id, access log, body limit, the proxy route table, the router |
//! | [`upstream`] | [`build_stack`](upstream::build_stack): one upstream's stack (timeout, retry, breaker, attempt timeout, bulkhead, client) |
//! | [`aggregator`] | `GET /api/dashboard/user/{id}`: the fan-out over the upstreams' stacks |
//! | [`proxy`] | the innermost client service (hyper-util's pooled client), hop-by-hop and forwarding headers |
//! | [`errors`] | stack errors as problem+json responses |
//! | [`logs`] | the access log setting and the rate limit on per-call failure lines |
//! | [`stats`] | per-upstream rolling-window statistics layer |
//! | [`dashboard`] | the dashboard page, its snapshot and event stream |
//! | [`admin`] | the admin API (bearer token): breakers, bulkheads, chaos |
//! | [`demo`] | the six demo backends, each behind a chaos layer |
//! | [`state`] | shared state, lifecycle, the Prometheus recorder |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
pub mod aggregator;
pub mod config;
pub mod dashboard;
pub mod demo;
mod drain;
pub mod errors;
pub mod logs;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod state;
pub mod stats;
pub mod upstream;

pub use config::{Config, ConfigFileError};
pub use routes::{App, app};
pub use server::{Gateway, StartError};
pub use state::AppState;
