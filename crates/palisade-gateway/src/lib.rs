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
//! One module (folder) per feature area. Imports run one way, bottom first:
//! [`config`], [`shared`], [`logs`]; the feature cores [`proxy`],
//! [`aggregator`], [`demo`], [`accounts`]; [`state`]; [`admin`] and [`dashboard`];
//! [`aggregator`], [`demo`], [`sharding`], [`rate_limit`] (and [`cache`], below [`proxy`],
//! which puts it in its stacks); [`state`]; [`admin`] and [`dashboard`];
//! [`routes`]; [`lifecycle`]. A type two modules share goes down, what builds
//! from several features goes up (routes into [`routes`], tiles into
//! [`dashboard`]), so a new pattern is a new folder plus a line in [`routes`]
//! and [`config`].
//!
//! | module | what |
//! |---|---|
//! | [`config`] | TOML config, one file per section; errors with file:line:column and key |
//! | [`shared`] | leaf types several modules name: [`StartError`], [`X_REQUEST_ID`](shared::X_REQUEST_ID) |
//! | [`logs`] | the access log setting and the rate limit on per-call failure lines |
//! | [`proxy`] | `[[routes]]`: the upstreams' stacks ([`upstream`]: the overall timeout as a deadline, hedging, retry, breaker, bulkhead, the deadline header on each attempt), errors as problem+json ([`errors`]), statistics ([`stats`]), the HTTP client |
//! | [`aggregator`] | `GET /api/dashboard/user/{id}`: the fan-out over the upstreams' stacks, its timing and waterfall sample, the optional branches' fallbacks ([`aggregator::fallback`]) |
//! | [`demo`] | the six demo backends, each behind a chaos layer |
//! | [`accounts`] | `/api/accounts`: the seeds' bank account, event-sourced (`[event_store]`): the aggregate, the balances projection, the command stack (timeout, breaker, CQRS command handler), the projection runner and the recent-events feed |
//! | [`sharding`] | `[upstreams.<name>.shards]`: a sharded upstream (the demo's user service), its router over the shards' stacks, map changes |
//! | [`rate_limit`] | `[rate_limit]`: the per-client limit on `/api` (API key, else client IP; tiers; memory or Redis), the crate's HTTP layer and the meter of its rates; [`routes`] applies it to `/api` after the request id, access log, body limit and panic catcher; its admin resource is `admin::rate_limits`, its panel `dashboard::rate_limit` |
//! | [`cache`] | `[upstreams.<name>.cache]`: an upstream's cache (palisade-cache, with an optional Redis tier), the layer the proxy puts in its stack, the key forms a purge removes; its admin resource is [`admin::caches`], its panel [`dashboard::caches`] |
//! | [`pubsub`] | `[pubsub]`: order events on the in-process bus or NATS JetStream ([`EventPublisher`](pubsub::EventPublisher), the one way features publish), the notification consumer and the analytics queue group, started and drained with the gateway |
//! | [`state`] | [`AppState`], the shared state every handler sees, and the lifecycle's phases |
//! | [`admin`] | the admin API (bearer token): one file per resource (breakers, bulkheads, retries, chaos, deadlines, fallbacks, hedges, event store and projections), serializing the crates' snapshots |
//! | [`dashboard`] | the dashboard page and its event stream, with its panels: the upstream tiles, the aggregator's waterfall, deadlines, fallbacks and hedges, the event store's latest events and projections' lag |
//! | [`routes`] | [`app`]: the gateway's service: request id, access log, body limit, the request's deadline (`[deadline]`, on every route), the proxy route table (the one place a proxied request is recorded), then the router of every feature's routes, the aggregator's and `/healthz`, `/readyz`, `/metrics` included |
//! | [`lifecycle`] | [`Gateway`] ([`server`]): start-up, a thread per core, graceful shutdown |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod accounts;
pub mod admin;
pub mod aggregator;
pub mod cache;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod lifecycle;
pub mod logs;
pub mod proxy;
pub mod pubsub;
pub mod rate_limit;
pub mod routes;
pub mod sharding;
pub mod shared;
pub mod state;

pub use config::{Config, ConfigFileError};
pub use lifecycle::server;
pub use lifecycle::server::{Gateway, StartError};
pub use proxy::{errors, stats, upstream};
pub use routes::{App, app};
pub use state::AppState;
