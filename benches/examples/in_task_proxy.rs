//! An experiment beside `bare_proxy`: hyper's HTTP/1 server with an upstream
//! client that drives its connection from the request's own task, instead of
//! hyper-util's pooled client (which gives each upstream connection its own
//! task and hands every request and response across to it).
//!
//! It is not the gateway's client: it answers one question for the load test
//! (`scripts/load-test.sh`, row (i)): how much of the HTTP stack's gap to
//! nginx is the pooled client's hand-off between tasks. It has none of what a
//! production client needs (no retry of a request that met a connection the
//! upstream had just closed, no idle timeout, no connect timeout), so it is
//! a floor to measure, not a design.
//!
//! ```sh
//! cargo run --release -p palisade-benches --example in_task_proxy -- 127.0.0.1:19071 127.0.0.1:19101
//! ```
//!
//! The layout is `bare_proxy`'s: one current-thread runtime per core, each
//! with its own `SO_REUSEPORT` listener. Each worker keeps its own idle
//! upstream connections in a plain list (no lock: the worker is one thread).
//! A request takes one (or opens one), and its task polls the connection
//! while it waits for the answer and, through the response body, while the
//! answer streams back; when the body ends the connection goes back to the
//! list.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self as client, SendRequest};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

type Connection = client::Connection<TokioIo<TcpStream>, Incoming>;
type Idle = Rc<RefCell<Vec<Upstream>>>;
type Reply = Response<Either<Tail, String>>;

mod proxy_floor;

fn main() -> ExitCode {
    let (listen, upstream): (SocketAddr, SocketAddr) =
        match proxy_floor::args("in_task_proxy", "an IP:port") {
            Ok(args) => args,
            Err(code) => return code,
        };
    println!("in_task_proxy listening on {listen}, upstream {upstream}");
    proxy_floor::run_per_core("in_task_proxy", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tokio::task::LocalSet::new().block_on(&rt, worker(listen, upstream))
    })
}

async fn worker(addr: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let socket = palisade_gateway::server::worker_socket(addr)?;
    let listener = socket.listen(1024)?;
    let idle: Idle = Rc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let idle = Rc::clone(&idle);
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| forward(Rc::clone(&idle), upstream, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One upstream connection: the handle requests go through and the
/// connection that does the I/O, polled by whichever task is using it.
struct Upstream {
    sender: SendRequest<Incoming>,
    conn: Pin<Box<Connection>>,
}

impl Upstream {
    async fn open(addr: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = client::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(Self {
            sender,
            conn: Box::pin(conn),
        })
    }

    /// Polls the connection's I/O; `false` once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.conn.as_mut().poll(cx).is_pending()
    }

    /// Waits until the connection takes a request; `false` if it has ended.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            if !self.drive(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }
}

async fn forward(
    idle: Idle,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    // An idle connection that has ended since it was put back is dropped.
    let pooled = loop {
        let Some(mut up) = idle.borrow_mut().pop() else {
            break None;
        };
        if up.ready().await {
            break Some(up);
        }
    };
    let mut up = match pooled {
        Some(up) => up,
        None => match Upstream::open(upstream).await {
            Ok(mut up) => {
                if !up.ready().await {
                    return Ok(error(StatusCode::BAD_GATEWAY, "upstream closed".into()));
                }
                up
            }
            Err(err) => return Ok(error(StatusCode::BAD_GATEWAY, err)),
        },
    };
    let mut answer = std::pin::pin!(up.sender.send_request(req));
    let res = poll_fn(|cx| {
        // The connection writes the request and reads the answer; once it
        // has ended, the answer future reports the error.
        let _ = up.drive(cx);
        answer.as_mut().poll(cx)
    })
    .await;
    match res {
        Ok(res) => {
            let up = if res.body().is_end_stream() {
                idle.borrow_mut().push(up);
                None
            } else {
                Some(up)
            };
            Ok(res.map(|body| Either::Left(Tail { body, up, idle })))
        }
        Err(err) => Ok(error(StatusCode::BAD_GATEWAY, err.to_string())),
    }
}

/// The response body: polls the connection that carries it, and puts the
/// connection back in the idle list when the body has ended.
struct Tail {
    body: Incoming,
    up: Option<Upstream>,
    idle: Idle,
}

impl Body for Tail {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(up) = &mut this.up
            && !up.drive(cx)
        {
            this.up = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        // The server stops polling a body that says it has ended, so the
        // connection goes back as soon as the last frame is out.
        if (matches!(frame, Poll::Ready(None)) || this.body.is_end_stream())
            && let Some(up) = this.up.take()
        {
            this.idle.borrow_mut().push(up);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn error(status: StatusCode, message: String) -> Reply {
    let mut res = Response::new(Either::Right(message));
    *res.status_mut() = status;
    res
}
