//! `[server]`: where the gateway listens and how it treats requests.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigFileError};

/// `[server]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    listen: Option<Spanned<String>>,
    body_limit_bytes: Option<Spanned<i64>>,
    drain_timeout_ms: Option<Spanned<i64>>,
    shutdown_grace_ms: Option<Spanned<i64>>,
    worker_threads: Option<Spanned<i64>>,
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// `listen`: the gateway's address (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `body_limit_bytes`: the largest request body accepted (default 1 MiB);
    /// larger ones get `413`.
    pub body_limit_bytes: usize,
    /// `drain_timeout_ms`: how long shutdown waits for in-flight requests
    /// (default 10 s).
    pub drain_timeout: Duration,
    /// `shutdown_grace_ms`: how long, once shutdown begins, `/readyz`
    /// answers `503` while connections are still accepted and served, so a
    /// load balancer polling it stops sending new requests before the
    /// gateway stops accepting them (default 5 s; 0: drain at once). A
    /// second Ctrl-C or SIGTERM ends it early.
    pub shutdown_grace: Duration,
    /// `worker_threads`: threads serving requests, each with its own runtime,
    /// listener and HTTP client (default, or 0: one per CPU).
    pub worker_threads: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            drain_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            worker_threads: None,
        }
    }
}

impl Checker<'_> {
    pub(super) fn server(&self, raw: &RawServer) -> Result<ServerConfig, ConfigFileError> {
        let defaults = ServerConfig::default();
        let server = ServerConfig {
            listen: match &raw.listen {
                Some(v) => self.addr(v, "server.listen")?,
                None => defaults.listen,
            },
            body_limit_bytes: self
                .whole(raw.body_limit_bytes.as_ref(), "server.body_limit_bytes", 1)?
                .unwrap_or(defaults.body_limit_bytes),
            drain_timeout: self.millis(
                raw.drain_timeout_ms.as_ref(),
                "server.drain_timeout_ms",
                10_000,
                true,
            )?,
            shutdown_grace: self.millis(
                raw.shutdown_grace_ms.as_ref(),
                "server.shutdown_grace_ms",
                5_000,
                true,
            )?,
            worker_threads: self
                .whole::<usize>(raw.worker_threads.as_ref(), "server.worker_threads", 0)?
                .filter(|n| *n > 0),
        };
        if let (Some(v), Some(n)) = (raw.worker_threads.as_ref(), server.worker_threads)
            && n > 1024
        {
            return self.err(
                v.span(),
                "server.worker_threads",
                format!("must be at most 1024, got {n}"),
            );
        }
        Ok(server)
    }
}
