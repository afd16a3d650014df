//! The floor under the gateway's proxy route: hyper's HTTP/1 server and
//! hyper-util's pooled client, laid out as the gateway lays them out (one
//! current-thread runtime per core, each with its own `SO_REUSEPORT`
//! listener and its own client), with nothing else: no router, no
//! resilience layers, no header rules, no metrics, no logging.
//!
//! `scripts/load-test.sh` runs it beside the gateway and nginx, so the load
//! test shows how much of the gap to nginx is the HTTP stack the gateway is
//! built on and how much is the gateway's own work.
//!
//! ```sh
//! cargo run --release -p palisade-benches --example bare_proxy -- 127.0.0.1:19070 127.0.0.1:19101
//! ```
//!
//! Every request goes to `http://{upstream}{path and query}` with its method,
//! headers and body as they came; the answer comes back as it is. The
//! workers share the listening port through `SO_REUSEPORT`, so give a fixed
//! port, not 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

type HttpClient = Client<HttpConnector, Incoming>;

mod proxy_floor;

fn main() -> ExitCode {
    let (listen, upstream): (SocketAddr, Authority) =
        match proxy_floor::args("bare_proxy", "HOST:PORT") {
            Ok(args) => args,
            Err(code) => return code,
        };
    println!("bare_proxy listening on {listen}, upstream {upstream}");
    proxy_floor::run_per_core("bare_proxy", move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|rt| rt.block_on(worker(listen, upstream.clone())))
    })
}

/// One worker: its own `SO_REUSEPORT` listener on `addr` and its own client,
/// as the gateway gives each worker thread.
async fn worker(addr: SocketAddr, upstream: Authority) -> std::io::Result<()> {
    let socket = palisade_gateway::server::worker_socket(addr)?;
    let listener = socket.listen(1024)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), upstream.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: HttpClient,
    upstream: Authority,
    req: Request<Incoming>,
) -> Result<Response<http_body_util::Either<Incoming, String>>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let mut uri = Uri::builder().scheme(Scheme::HTTP).authority(upstream);
    if let Some(path) = parts.uri.path_and_query() {
        uri = uri.path_and_query(path.clone());
    }
    parts.uri = match uri.build() {
        Ok(uri) => uri,
        Err(err) => return Ok(error(StatusCode::BAD_REQUEST, err.to_string())),
    };
    match client.request(Request::from_parts(parts, body)).await {
        Ok(res) => Ok(res.map(http_body_util::Either::Left)),
        Err(err) => Ok(error(StatusCode::BAD_GATEWAY, err.to_string())),
    }
}

fn error(
    status: StatusCode,
    message: String,
) -> Response<http_body_util::Either<Incoming, String>> {
    let mut res = Response::new(http_body_util::Either::Right(message));
    *res.status_mut() = status;
    res
}
