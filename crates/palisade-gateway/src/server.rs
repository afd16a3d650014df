//! Start-up and shutdown: binding the demo backends and the gateway, serving,
//! and draining in-flight requests within a deadline.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use http::Uri;
use tokio::net::TcpListener;

use crate::config::{Config, UpstreamTarget};
use crate::demo::DemoBackends;
use crate::state::{AppState, BackendInfo, prometheus};
use crate::upstream::Upstream;

/// Why the gateway could not start.
#[derive(Debug)]
pub enum StartError {
    /// An address could not be bound.
    Bind {
        /// What was to listen there (`gateway`, `demo backend `user``).
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Anything else, described.
    Other(String),
}

impl StartError {
    pub(crate) fn bind(what: String, addr: SocketAddr, source: &std::io::Error) -> Self {
        Self::Bind {
            what,
            addr,
            source: std::io::Error::new(source.kind(), source.to_string()),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { what, addr, source } => {
                write!(f, "cannot listen on {addr} for the {what}: {source}")?;
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        " (another process uses it: stop it, or choose another address with --listen or the config)"
                    )?;
                }
                Ok(())
            }
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } => Some(source),
            Self::Other(_) => None,
        }
    }
}

/// A gateway bound to its address, its demo backends running, ready to
/// [`serve`](Self::serve).
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    backends: Option<DemoBackends>,
    drain_timeout: Duration,
}

impl Gateway {
    /// Installs the metrics recorder, starts the demo backends, builds every
    /// upstream's stack, and binds the gateway's address. `admin_token` is
    /// the token in force (config or environment, resolved by the caller);
    /// `None` disables the admin API.
    ///
    /// # Errors
    ///
    /// An address cannot be bound.
    pub async fn bind(config: Config, admin_token: Option<String>) -> Result<Self, StartError> {
        // The recorder first: layers resolve their metric handles when built.
        let _ = prometheus();

        let backends = match &config.demo {
            Some(demo) => Some(DemoBackends::start(demo).await?),
            None => None,
        };
        let mut upstreams = BTreeMap::new();
        for (name, up) in &config.upstreams {
            let (base, demo_backend) = match &up.target {
                UpstreamTarget::Url(uri) => (uri.clone(), None),
                UpstreamTarget::Demo(service) => {
                    let addr = backends
                        .as_ref()
                        .and_then(|b| b.get(service))
                        .map(|b| b.addr)
                        .ok_or_else(|| {
                            StartError::Other(format!(
                                "upstream `{name}`: demo backend `{service}` is not running"
                            ))
                        })?;
                    let uri: Uri = format!("http://{addr}")
                        .parse()
                        .map_err(|e| StartError::Other(format!("upstream `{name}`: {e}")))?;
                    (uri, Some(service.clone()))
                }
            };
            let unapplied: Vec<&str> = [
                up.retry.as_ref().map(|_| "retry"),
                up.circuit_breaker.as_ref().map(|_| "circuit_breaker"),
                up.bulkhead.as_ref().map(|_| "bulkhead"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !unapplied.is_empty() {
                tracing::info!(
                    upstream = %name,
                    settings = %unapplied.join(", "),
                    "settings validated; those layers are not part of this build's upstream stack yet"
                );
            }
            tracing::info!(upstream = %name, %base, timeout_ms = up.timeout.as_millis(), "upstream ready");
            upstreams.insert(
                name.clone(),
                Upstream::new(name, base, demo_backend, up.clone()),
            );
        }
        let backend_infos = backends
            .as_ref()
            .map(|b| {
                b.iter()
                    .map(|d| {
                        (
                            d.name.clone(),
                            BackendInfo {
                                addr: d.addr,
                                chaos: d.chaos.clone(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let state = AppState::new(
            upstreams,
            config.routes.clone(),
            backend_infos,
            admin_token,
            config.server.body_limit_bytes,
        );

        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| StartError::bind("gateway".to_owned(), config.server.listen, &e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::bind("gateway".to_owned(), config.server.listen, &e))?;
        Ok(Self {
            listener,
            addr,
            state,
            backends,
            drain_timeout: config.server.drain_timeout,
        })
    }

    /// The address the gateway listens on.
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (upstreams, chaos handles, lifecycle).
    #[must_use]
    pub const fn state(&self) -> &AppState {
        &self.state
    }

    /// The running demo backends, if the config has them.
    #[must_use]
    pub const fn backends(&self) -> Option<&DemoBackends> {
        self.backends.as_ref()
    }

    /// The router serving this gateway.
    pub fn router(&self) -> Router {
        crate::routes::app(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then: `/readyz` turns `503`, the
    /// listener stops accepting, idle connections close, in-flight requests
    /// get up to the drain deadline to finish, and the demo backends stop.
    ///
    /// # Errors
    ///
    /// The server failed (not a shutdown).
    pub async fn serve<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self {
            listener,
            addr,
            state,
            backends,
            drain_timeout,
        } = self;
        let app = crate::routes::app(state.clone());
        let lifecycle = state.lifecycle().clone();
        let begin = lifecycle.clone();
        let upkeep = tokio::spawn({
            let lifecycle = lifecycle.clone();
            async move {
                let handle = prometheus();
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        () = lifecycle.wait() => break,
                        _ = tick.tick() => handle.run_upkeep(),
                    }
                }
            }
        });
        tracing::info!(%addr, "gateway listening");
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!(
                drain_timeout_ms = drain_timeout.as_millis(),
                "shutting down: no new connections, draining in-flight requests"
            );
            begin.begin_shutdown();
        });
        let drained = async {
            lifecycle.wait().await;
            tokio::time::sleep(drain_timeout).await;
        };
        let result = tokio::select! {
            result = server => result,
            () = drained => {
                tracing::warn!(drain_timeout_ms = drain_timeout.as_millis(), "drain deadline passed; closing the remaining connections");
                Ok(())
            }
        };
        upkeep.abort();
        if let Some(backends) = backends {
            backends.shutdown(drain_timeout).await;
        }
        tracing::info!("gateway stopped");
        result
    }
}
