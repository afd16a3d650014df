//! Reverse proxying: the innermost service of every upstream stack, the
//! header rules for forwarding a client's request, and a pooled HTTP client
//! for callers outside the stacks.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use palisade_core::BoxError;
use tower::Service;

pub use crate::pool::{ConnectError, UpstreamPool};

/// hyper-util's pooled client, HTTP/1 over plain TCP: for calls made outside
/// the upstream stacks (tests, tools). The stacks use [`UpstreamPool`].
pub type HttpClient = Client<HttpConnector, Body>;

/// Builds an [`HttpClient`]: `TCP_NODELAY`, a 5 s connect timeout, idle
/// connections kept 30 s.
#[must_use]
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// The innermost service of an upstream stack: sends a request whose URI is
/// origin-form (`/users/7?x=1`) to the upstream, under its base path, with
/// `Host` set to the upstream's authority, over the upstream's connection
/// pool ([`UpstreamPool`]), and streams the response back.
#[derive(Clone, Debug)]
pub struct ClientService {
    pool: UpstreamPool,
    host: HeaderValue,
    base_path: String,
}

impl ClientService {
    /// Sends to `base` (`http://host:port[/base/path]`, as validated by the
    /// config) over a new connection pool.
    #[must_use]
    pub fn new(base: &Uri) -> Self {
        let authority = base
            .authority()
            .map_or("127.0.0.1:80", http::uri::Authority::as_str);
        let target = if base.port_u16().is_some() {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Self {
            pool: UpstreamPool::new(target),
            host: HeaderValue::from_str(authority)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            base_path: base.path().trim_end_matches('/').to_owned(),
        }
    }

    /// The upstream's connection pool.
    #[must_use]
    pub const fn pool(&self) -> &UpstreamPool {
        &self.pool
    }

    /// The origin-form upstream URI for an origin-form `uri`.
    fn target(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        if self.base_path.is_empty() {
            return Uri::builder().path_and_query(path_and_query).build();
        }
        let mut pq = String::with_capacity(self.base_path.len() + path_and_query.len());
        pq.push_str(&self.base_path);
        pq.push_str(path_and_query);
        Uri::builder().path_and_query(pq).build()
    }
}

impl Service<Request<Body>> for ClientService {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pool opens a connection when none is idle: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.target(req.uri()) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(err) => tracing::warn!(%err, "cannot build the upstream URI; sending as is"),
        }
        *req.version_mut() = Version::HTTP_11;
        req.headers_mut().insert(header::HOST, self.host.clone());
        Box::pin(self.pool.clone().send(req))
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes the hop-by-hop headers: those listed above, `Upgrade`, and every
/// header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// See [`X_FORWARDED_FOR`].
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// See [`X_FORWARDED_FOR`].
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Turns a client's request to `{prefix}{rest}` into the upstream request
/// for `{rest}`: origin-form URI (the raw, still-encoded path after the
/// prefix, and the query), hop-by-hop headers dropped, `Host` moved to
/// `X-Forwarded-Host` (the client sets `Host` to the upstream's), the
/// client's address appended to `X-Forwarded-For`, `X-Forwarded-Proto:
/// http`. The body is passed through as a stream.
#[must_use]
pub fn upstream_request(
    mut req: Request<Body>,
    prefix_len: usize,
    client: Option<SocketAddr>,
) -> Request<Body> {
    let uri = req.uri();
    let path = uri.path();
    let rest = path.get(prefix_len..).unwrap_or("");
    let mut pq = String::with_capacity(rest.len() + 1 + uri.query().map_or(0, str::len));
    if !rest.starts_with('/') {
        pq.push('/');
    }
    pq.push_str(rest);
    if let Some(q) = uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    // The original path was a valid URI path, so the suffix is too.
    if let Ok(new_uri) = Uri::try_from(pq) {
        *req.uri_mut() = new_uri;
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Some(addr) = client {
        let ip = addr.ip().to_string();
        let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    req
}

/// The upstream's response as sent to the client: hop-by-hop headers
/// dropped, body streamed.
#[must_use]
pub fn client_response(mut res: Response<Body>) -> Response<Body> {
    strip_hop_by_hop(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_dropped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-authenticate", "Basic"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
            ("content-type", "application/json"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, vec!["x-kept", "content-type"]);
    }

    #[test]
    fn the_upstream_request_keeps_the_raw_path_and_query() {
        let req = Request::builder()
            .uri("/api/user/users/7%2F8?limit=2&x=%20")
            .header("host", "gw.example")
            .header("x-forwarded-for", "10.0.0.1")
            .body(Body::empty())
            .unwrap();
        let out = upstream_request(
            req,
            "/api/user".len(),
            Some(SocketAddr::from(([127, 0, 0, 9], 5000))),
        );
        assert_eq!(out.uri(), "/users/7%2F8?limit=2&x=%20");
        assert_eq!(out.headers()["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(out.headers()["x-forwarded-proto"], "http");
        assert_eq!(out.headers()["x-forwarded-host"], "gw.example");
        assert!(out.headers().get("host").is_none());

        let bare = Request::builder()
            .uri("/api/user")
            .body(Body::empty())
            .unwrap();
        assert_eq!(upstream_request(bare, "/api/user".len(), None).uri(), "/");
    }

    #[test]
    fn the_client_service_joins_the_base_path() {
        let svc = ClientService::new(&"http://127.0.0.1:9/v1/".parse().unwrap());
        assert_eq!(
            svc.target(&"/users/1?a=b".parse().unwrap()).unwrap(),
            "/v1/users/1?a=b"
        );
        assert_eq!(svc.host, "127.0.0.1:9");
        let bare = ClientService::new(&"http://example.test".parse().unwrap());
        assert_eq!(bare.target(&"/x".parse().unwrap()).unwrap(), "/x");
        assert_eq!(bare.host, "example.test");
        assert!(format!("{:?}", bare.pool()).contains("example.test:80"));
    }
}
