//! An HTTP/1 client whose connections are driven by the request that uses
//! them.
//!
//! hyper-util's pooled client runs every connection on its own task and hands
//! each request to it over a channel: two cross-task wake-ups per request,
//! often across threads. Here a request checks a connection out of the
//! upstream's pool and polls hyper's connection future itself, first with
//! the response future, then from the response body, so the whole exchange
//! runs in the task serving the client. When the body ends the connection
//! goes back to the pool; if the body is dropped early, the connection is
//! closed with it.
//!
//! Idle connections are not polled while they sit in the pool; a checkout
//! polls one once to notice a close by the server, and a request that finds
//! its pooled connection closed before anything was sent is retried once on
//! a new connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use palisade_core::BoxError;
use tokio::net::TcpStream;
use tokio::time::Instant;

type Driver = Connection<TokioIo<TcpStream>, Body>;

/// One upstream connection: the request half and the connection future.
struct Conn {
    tx: SendRequest<Body>,
    driver: Driver,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Inner {
    /// `host:port`, as connected to.
    target: String,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

/// Connecting to the upstream failed (refused, unreachable, timed out).
#[derive(Debug)]
pub struct ConnectError {
    target: String,
    source: std::io::Error,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to {}: {}", self.target, self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The connection pool of one upstream (`host:port`); clones share it.
#[derive(Clone)]
pub struct UpstreamPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("target", &self.inner.target)
            .field("idle", &self.idle_count())
            .finish()
    }
}

fn noop_poll<T>(f: impl FnOnce(&mut Context<'_>) -> T) -> T {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    f(&mut cx)
}

impl UpstreamPool {
    /// A pool for `target` (`host:port`): at most 1024 idle connections, each
    /// kept 30 s, connections opened within 5 s.
    #[must_use]
    pub fn new(target: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                target,
                idle: Mutex::new(Vec::new()),
                max_idle: 1024,
                idle_timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(5),
            }),
        }
    }

    /// Idle connections now in the pool.
    #[must_use]
    pub fn idle_count(&self) -> usize {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Conn> {
        loop {
            let idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()?;
            if idle.since.elapsed() > self.inner.idle_timeout {
                continue;
            }
            let mut conn = idle.conn;
            // Let the connection notice a close by the server, and take the
            // request half to "ready".
            let closed = noop_poll(|cx| Pin::new(&mut conn.driver).poll(cx).is_ready());
            if closed || conn.tx.is_closed() {
                continue;
            }
            let ready = noop_poll(|cx| conn.tx.poll_ready(cx));
            if matches!(ready, Poll::Ready(Ok(()))) {
                return Some(conn);
            }
        }
    }

    fn release(&self, conn: Conn) {
        if conn.tx.is_closed() {
            return;
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.inner.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Conn, BoxError> {
        let target = &self.inner.target;
        let stream = match tokio::time::timeout(
            self.inner.connect_timeout,
            TcpStream::connect(target),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ConnectError {
                    target: target.clone(),
                    source,
                }
                .into());
            }
            Err(_) => {
                return Err(ConnectError {
                    target: target.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                }
                .into());
            }
        };
        let _ = stream.set_nodelay(true);
        let (tx, driver) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await?;
        Ok(Conn { tx, driver })
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response
    /// with a body that drives the connection.
    ///
    /// # Errors
    ///
    /// A [`ConnectError`], or hyper's error for a failed exchange.
    pub async fn send(self, req: Request<Body>) -> Result<Response<Body>, BoxError> {
        let (mut conn, pooled) = match self.checkout() {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        let sent = conn.tx.try_send_request(req);
        let response = match drive(&mut conn, sent).await {
            Ok(res) => res,
            Err(mut err) => match err.take_message() {
                // The pooled connection was closed before the request went
                // out: once more, on a new connection.
                Some(unsent) if pooled => {
                    tracing::debug!(error = %err.error(), "pooled connection closed; retrying on a new one");
                    conn = self.connect().await?;
                    let sent = conn.tx.try_send_request(unsent);
                    drive(&mut conn, sent)
                        .await
                        .map_err(TrySendError::into_error)?
                }
                _ => return Err(err.into_error().into()),
            },
        };
        let (parts, incoming) = response.into_parts();
        let mut body = DrivenBody {
            incoming,
            conn: Some(conn),
            pool: Some(self),
        };
        if body.incoming.is_end_stream() {
            body.finish();
        }
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// Polls the response future and the connection together until the response
/// headers arrive (or the exchange fails).
async fn drive<F>(
    conn: &mut Conn,
    sent: F,
) -> Result<Response<Incoming>, TrySendError<Request<Body>>>
where
    F: Future<Output = Result<Response<Incoming>, TrySendError<Request<Body>>>>,
{
    let mut sent = std::pin::pin!(sent);
    let mut driver_done = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = sent.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if !driver_done {
            if let Poll::Ready(result) = Pin::new(&mut conn.driver).poll(cx) {
                // The connection ended; the response future resolves with
                // the reason on its next poll.
                driver_done = true;
                if let Err(err) = result {
                    tracing::debug!(%err, "upstream connection failed");
                }
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    })
    .await
}

/// A response body that drives its connection while it is read, and gives
/// the connection back to the pool when it ends.
struct DrivenBody {
    incoming: Incoming,
    conn: Option<Conn>,
    pool: Option<UpstreamPool>,
}

impl DrivenBody {
    /// The body ended: the connection can serve another request.
    fn finish(&mut self) {
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take()) {
            pool.release(conn);
        }
    }
}

impl HttpBody for DrivenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(conn) = this.conn.as_mut() {
            if Pin::new(&mut conn.driver).poll(cx).is_ready() {
                // Closed (or failed): what was read is still delivered below.
                this.conn = None;
            }
        }
        let out = Pin::new(&mut this.incoming).poll_frame(cx);
        match &out {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Ok(_))) if this.incoming.is_end_stream() => this.finish(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
