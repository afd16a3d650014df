//! Start-up and shutdown: binding the demo backends and the gateway, serving
//! on one thread per core, and shutting down in two steps: a readiness
//! grace, then draining in-flight requests within a deadline.
//!
//! # Serving: a thread per core
//!
//! The gateway serves on `server.worker_threads` threads (default: one per
//! CPU). Each runs its own current-thread tokio runtime with its own
//! listener on the gateway's address (`SO_REUSEPORT`: the kernel spreads
//! new connections over the listeners) and its own router, whose upstream
//! stacks use a hyper-util client of the thread's own. A request, its
//! upstream connection and that connection's task all stay on one thread:
//! no cross-thread wake-up on the request path, as nginx's workers. What
//! the threads share is the [`AppState`]: the layers' state (breakers,
//! bulkhead permits, retry budgets, statistics), all atomics.
//!
//! Each thread accepts connections and serves them with hyper's HTTP/1
//! connection (keep-alive, a 30 s limit to read request headers), not the
//! HTTP/1-or-2 sniffing one: the gateway speaks HTTP/1.1 only.
//!
//! Before the listeners are bound with `SO_REUSEPORT`, the address is bound
//! once without it: an address in use (by another gateway too) is an error,
//! not a silent share.
//!
//! # Shutdown
//!
//! When the shutdown future given to [`Gateway::serve`] resolves (or
//! [`Lifecycle::begin_shutdown`] is called):
//!
//! 1. **Not ready** ([`Phase::NotReady`]): `/readyz` answers `503`, but the
//!    workers keep accepting and serving, for `server.shutdown_grace_ms`.
//!    A load balancer polling `/readyz` sees the gateway go unready and
//!    stops sending it requests while it still answers them; had the
//!    gateway stopped accepting at once, the balancer would only ever see
//!    refused connections (and its users errors) until its next check.
//!    [`Lifecycle::begin_drain`] ends the grace early (the binary calls it
//!    on a second Ctrl-C or SIGTERM).
//! 2. **Draining** ([`Phase::Draining`]): the listeners close (new
//!    connections are refused), idle keep-alive connections close, the
//!    dashboard's event streams end, and in-flight requests get up to
//!    `server.drain_timeout_ms` to finish; then their connections are
//!    closed, the demo backends stop, the accounts' projection runner and
//!    event feed stop, and `serve` returns.
//!    closed, the events consumers (`[pubsub]`) finish the messages they
//!    are handling and stop, the demo backends stop and `serve` returns.
//!
//! [`Lifecycle::begin_shutdown`]: crate::state::Lifecycle::begin_shutdown
//! [`Lifecycle::begin_drain`]: crate::state::Lifecycle::begin_drain

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::demo::DemoBackends;
use crate::lifecycle::drain::{DrainSignal, Drains};
use crate::routes::App;
pub use crate::shared::StartError;
use crate::state::{AppState, BackendInfo, Phase, prometheus};

/// A gateway bound to its address, its demo backends running, ready to
/// [`serve`](Self::serve).
#[derive(Debug)]
pub struct Gateway {
    listeners: Vec<std::net::TcpListener>,
    addr: SocketAddr,
    state: AppState,
    backends: Option<DemoBackends>,
    drain_timeout: Duration,
    shutdown_grace: Duration,
}

/// The number of worker threads for `configured` (`None`: one per CPU).
fn worker_count(configured: Option<usize>) -> usize {
    let n = configured.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Without SO_REUSEPORT there is one listener, so one worker.
    if cfg!(all(
        unix,
        not(target_os = "solaris"),
        not(target_os = "illumos"),
        not(target_os = "cygwin")
    )) {
        n.max(1)
    } else {
        1
    }
}

/// `count` listeners on `addr`, sharing it with `SO_REUSEPORT`: first a
/// plain bind, so an address in use is refused, then the group on the
/// address that bind got (its port, when `addr`'s is 0).
async fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), std::io::Error> {
    let bound = {
        let probe = std::net::TcpListener::bind(addr)?;
        probe.local_addr()?
    };
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        // Registered with this runtime until handed to its worker's.
        listeners.push(worker_socket(bound)?.listen(1024)?.into_std()?);
    }
    Ok((listeners, bound))
}

/// A socket bound to `addr` as each worker binds its own: `SO_REUSEADDR`
/// and, where the platform has it, `SO_REUSEPORT`, so that several sockets
/// share the address and the kernel spreads new connections over them. Call
/// `listen` on it. (Public for the benches crate's `examples/bare_proxy.rs`
/// and `examples/in_task_proxy.rs`, which lay their workers out the same
/// way.)
///
/// # Errors
///
/// The socket could not be created, configured or bound.
pub fn worker_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(all(
        unix,
        not(target_os = "solaris"),
        not(target_os = "illumos"),
        not(target_os = "cygwin")
    ))]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

impl Gateway {
    /// Binds the gateway's address (once per worker thread), then installs
    /// the metrics recorder, starts the demo backends and builds every
    /// upstream's layers (registering breakers and bulkheads in the state's
    /// registries). `admin_token` is the token in force (config or
    /// environment, resolved by the caller); `None` disables the admin API.
    ///
    /// The gateway's address is bound first, so an address in use is
    /// reported before anything else starts (or logs).
    ///
    /// It also opens the accounts' event store (`[event_store]`, creating
    /// its tables) and starts their projection runner on the caller's
    /// runtime; [`serve`](Self::serve) stops it when the gateway has
    /// drained.
    ///
    /// # Errors
    ///
    /// An address cannot be bound, or the event store cannot be opened.
    pub async fn bind(config: Config, admin_token: Option<String>) -> Result<Self, StartError> {
        let workers = worker_count(config.server.worker_threads);
        let (listeners, addr) = bind_listeners(config.server.listen, workers)
            .await
            .map_err(|e| StartError::bind("gateway".to_owned(), config.server.listen, &e))?;

        // The recorder before any layer: layers resolve their metric handles
        // when built.
        let _ = prometheus();

        let backends = match &config.demo {
            Some(demo) => Some(DemoBackends::start(demo).await?),
            None => None,
        };
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
        let state = AppState::from_config(&config, backend_infos, admin_token)?;
        let accounts = crate::accounts::Accounts::open(&config.event_store).await?;
        state.set_accounts(accounts);
        if let Some(limit) = state.rate_limit() {
            // Redis connects lazily; connect now, so the first requests do
            // not wait for it (a Redis that does not answer is logged, and
            // the limiter's failure mode applies until it does).
            let _ = limit.check_backend(Duration::from_secs(1)).await;
        }
        if let Some(pubsub) = &config.pubsub {
            let started = crate::pubsub::PubSub::start(pubsub).await?;
            if let Err(extra) = state.attach_pubsub(started) {
                extra.shutdown(config.server.drain_timeout).await;
            }
            // The accounts' events go to the bus through the outbox relay.
            if let (Some(events), Some(accounts)) = (state.pubsub(), state.accounts()) {
                events
                    .relay_events(accounts.store().clone(), &config.event_store.table_prefix)
                    .await?;
            }
        }
        for up in state.upstreams() {
            let layers = up.layers();
            tracing::info!(
                upstream = %up.name(),
                base = %up.base(),
                timeout_ms = up.config().timeout.as_millis(),
                attempt_timeout_ms = up.config().attempt_timeout.as_millis(),
                retry = layers.retries(),
                circuit_breaker = layers.circuit_breaker().is_some(),
                bulkhead = layers.bulkhead().is_some(),
                "upstream ready"
            );
        }

        Ok(Self {
            listeners,
            addr,
            state,
            backends,
            drain_timeout: config.server.drain_timeout,
            shutdown_grace: config.server.shutdown_grace,
        })
    }

    /// The address the gateway listens on.
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (upstreams, registries, chaos handles, lifecycle).
    #[must_use]
    pub const fn state(&self) -> &AppState {
        &self.state
    }

    /// The running demo backends, if the config has them.
    #[must_use]
    pub const fn backends(&self) -> Option<&DemoBackends> {
        self.backends.as_ref()
    }

    /// The number of worker threads [`serve`](Self::serve) starts.
    #[must_use]
    pub fn worker_threads(&self) -> usize {
        self.listeners.len()
    }

    /// A service answering this gateway's requests, with an HTTP client of
    /// its own (as each worker thread has).
    pub fn router(&self) -> App {
        crate::routes::app(&self.state)
    }

    /// Serves until `shutdown` resolves (or shutdown is begun through the
    /// state's [`Lifecycle`]), then: `/readyz` turns `503` while the gateway
    /// still accepts and serves for the readiness grace
    /// (`server.shutdown_grace_ms`, cut short by
    /// [`Lifecycle::begin_drain`]); then the listeners stop accepting, idle
    /// connections close, in-flight requests get up to the drain deadline to
    /// finish (then their connections are closed), and the demo backends
    /// stop. See the [module docs](self).
    ///
    /// The worker threads run their own runtimes; this future (on the
    /// caller's runtime) waits for them and runs the once-a-second upkeep
    /// ([`AppState::upkeep`], and the metrics exporter's every 5 s).
    ///
    /// # Errors
    ///
    /// A worker could not start or failed (not a shutdown).
    ///
    /// [`Lifecycle`]: crate::state::Lifecycle
    /// [`Lifecycle::begin_drain`]: crate::state::Lifecycle::begin_drain
    pub async fn serve<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self {
            listeners,
            addr,
            state,
            backends,
            drain_timeout,
            shutdown_grace,
        } = self;
        let lifecycle = state.lifecycle().clone();
        let upkeep = tokio::spawn({
            let lifecycle = lifecycle.clone();
            let state = state.clone();
            async move {
                let handle = prometheus();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut ticks = 0u64;
                loop {
                    tokio::select! {
                        () = lifecycle.wait_drain() => break,
                        _ = tick.tick() => {
                            state.upkeep();
                            ticks += 1;
                            if ticks.is_multiple_of(5) {
                                handle.run_upkeep();
                            }
                        }
                    }
                }
            }
        });

        let workers = listeners.len();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<std::io::Result<()>>();
        let mut threads = Vec::with_capacity(workers);
        let mut result = Ok(());
        for (i, listener) in listeners.into_iter().enumerate() {
            let state = state.clone();
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("palisade-worker-{i}"))
                .spawn(move || {
                    let outcome = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|rt| rt.block_on(worker(listener, state, drain_timeout)));
                    let _ = done.send(outcome);
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(err) => {
                    result = Err(err);
                    lifecycle.begin_drain();
                    break;
                }
            }
        }
        drop(done_tx);
        tracing::info!(%addr, workers, "gateway listening");

        let phases = lifecycle.clone();
        let signal = tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                () = phases.wait() => {}
            }
            phases.begin_shutdown();
            if phases.phase() < Phase::Draining && !shutdown_grace.is_zero() {
                tracing::info!(
                    shutdown_grace_ms = shutdown_grace.as_millis(),
                    "shutting down: /readyz answers 503; still serving for the readiness grace (Ctrl-C or SIGTERM again to stop now)"
                );
                tokio::select! {
                    () = tokio::time::sleep(shutdown_grace) => {}
                    () = phases.wait_drain() => {}
                }
            }
            tracing::info!(
                drain_timeout_ms = drain_timeout.as_millis(),
                "shutting down: no new connections, draining in-flight requests"
            );
            phases.begin_drain();
        });
        // Every worker reports once, when it stops (or its sender is dropped
        // by a panic).
        for _ in 0..threads.len() {
            match done_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(err)) => {
                    tracing::error!(%err, "a worker failed");
                    lifecycle.begin_drain();
                    if result.is_ok() {
                        result = Err(err);
                    }
                }
                None => {
                    lifecycle.begin_drain();
                    if result.is_ok() {
                        result = Err(std::io::Error::other("a worker thread panicked"));
                    }
                    break;
                }
            }
        }
        signal.abort();
        upkeep.abort();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Some(pubsub) = state.pubsub() {
            pubsub.shutdown(drain_timeout).await;
        }
        if let Some(backends) = backends {
            backends.shutdown(drain_timeout).await;
        }
        if let Some(accounts) = state.accounts() {
            accounts.stop();
        }
        state.flush_logs();
        tracing::info!("gateway stopped");
        result
    }
}

/// The period of the timer that keeps each worker's timer driver from being
/// woken by every new timeout (see [`worker`]).
const TIMER_ANCHOR: Duration = Duration::from_millis(100);

/// One worker thread's server: accepts on its listener until the drain
/// begins, serves each connection with HTTP/1 on this thread's runtime, then
/// waits (at most `drain_timeout`) for its connections to finish.
async fn worker(
    listener: std::net::TcpListener,
    state: AppState,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let app = crate::routes::app(&state);
    let lifecycle = state.lifecycle().clone();
    // tokio's timer wakes its driver (a write to an eventfd, and one more
    // pass through epoll) whenever a timer is set to fire before the
    // driver's next planned wake-up, even on the driver's own thread. Every
    // request sets two (the upstream's timeouts); without a timer due sooner
    // that is a syscall for a quarter of the requests, measured. A timer
    // ticking every 100 ms keeps the planned wake-up near, at ten wake-ups a
    // second.
    let anchor = tokio::spawn({
        let lifecycle = lifecycle.clone();
        async move {
            let mut tick = tokio::time::interval(TIMER_ANCHOR);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = lifecycle.wait_drain() => break,
                    _ = tick.tick() => {}
                }
            }
        }
    });
    // Each connection holds a receiver; `closed()` resolves when all are gone.
    let (connections, connection) = watch::channel(());
    let mut drains = Drains::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = lifecycle.wait_drain() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    stream,
                    remote,
                    app.clone(),
                    drains.register(),
                    connection.clone(),
                ));
            }
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                // Out of file descriptors and the like: back off a little
                // rather than spin on the error.
                tracing::error!(%err, "accept failed");
                tokio::select! {
                    () = lifecycle.wait_drain() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    drains.drain();
    drop(connection);
    anchor.abort();
    if tokio::time::timeout(drain_timeout, connections.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_timeout_ms = drain_timeout.as_millis(),
            "drain deadline passed; closing the remaining connections"
        );
    }
    // Dropping this thread's runtime closes whatever is left.
    Ok(())
}

fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection: HTTP/1.1 with keep-alive, the client's address
/// for `X-Forwarded-For`, a graceful close when the drain begins (an idle
/// connection closes at once, a busy one after its response).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    app: App,
    drain: Arc<DrainSignal>,
    _connection: watch::Receiver<()>,
) {
    let service = app.for_client(remote);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    // Polled at every wake-up of this task: a signal of this connection's
    // own, not the lifecycle's channel (see `crate::lifecycle::drain`).
    let mut shutdown = std::pin::pin!(drain.drained());
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%err, %remote, "connection ended with an error");
                }
                break;
            }
            () = shutdown.as_mut(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
