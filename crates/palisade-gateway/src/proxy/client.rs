//! Reverse proxying: the innermost service of every upstream stack
//! (hyper-util's pooled HTTP/1 client), the header rules for forwarding a
//! client's request, and the client's request body on its way upstream
//! ([`ClientBody`]), whose failures are marked as the client's.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Extensions, Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use palisade::{BoxError, cause_ref};
use pin_project_lite::pin_project;
use tower::Service;

pin_project! {
    /// A client's request body as the gateway passes it on: at most `limit`
    /// bytes, and every error it raises marked as the client's doing.
    ///
    /// Past the limit it fails with [`LengthLimitError`] (as
    /// [`Limited`] does, unwrapped, so axum's extractors still answer `413`);
    /// any other failure (the client closed the connection mid-body, a
    /// malformed chunk) becomes a [`RequestBodyError`]. Either may surface
    /// from an upstream call, under hyper-util's and hyper's errors (the
    /// client sends the body while it waits for the answer): the upstream
    /// stack finds them with [`is_client_fault`] and does not hold them
    /// against the upstream.
    pub struct ClientBody<B> {
        #[pin]
        inner: Limited<B>,
    }
}

impl<B> ClientBody<B> {
    /// `body`, cut off after `limit` bytes.
    pub fn new(body: B, limit: usize) -> Self {
        Self {
            inner: Limited::new(body, limit),
        }
    }
}

impl<B> HttpBody for ClientBody<B>
where
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match ready!(self.project().inner.poll_frame(cx)) {
            Some(Err(err)) if err.is::<LengthLimitError>() => Poll::Ready(Some(Err(err))),
            Some(Err(err)) => Poll::Ready(Some(Err(Box::new(RequestBodyError(err))))),
            other => Poll::Ready(other),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for ClientBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBody").finish_non_exhaustive()
    }
}

/// The client's request body could not be read: the client closed the
/// connection before sending all of it, or sent it malformed (a bad chunk).
/// The client's doing, never the upstream's: answered `400`, not counted by
/// the breaker, not retried. [`source`](Error::source) is what the server
/// connection reported.
#[derive(Debug)]
pub struct RequestBodyError(BoxError);

impl fmt::Display for RequestBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body could not be read from the client")
    }
}

impl Error for RequestBodyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// What the client did wrong, when an upstream call failed because of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    /// Its request body went over the gateway's limit (`413`).
    BodyTooLarge,
    /// Its request body was cut short or malformed (`400`).
    BadBody,
}

/// Whether `err`, from an upstream call, is the client's doing rather than
/// the upstream's, walking its whole `source()` chain: a body over the limit
/// ([`LengthLimitError`]), a body the client cut short or sent malformed
/// ([`RequestBodyError`]), or a body that ended before its declared length
/// (hyper's `is_body_write_aborted`). hyper reports the first two as a user
/// error (`hyper::Error::is_user`) with the body's error as its cause, under
/// hyper-util's `SendRequest` error; the marker types are what is looked for,
/// so no other user error (the connection task gone at shutdown) is taken
/// for the client's.
#[must_use]
pub fn client_fault(err: &(dyn Error + 'static)) -> Option<ClientFault> {
    if cause_ref::<LengthLimitError>(err).is_some() {
        Some(ClientFault::BodyTooLarge)
    } else if cause_ref::<RequestBodyError>(err).is_some()
        || cause_ref::<hyper::Error>(err).is_some_and(hyper::Error::is_body_write_aborted)
    {
        Some(ClientFault::BadBody)
    } else {
        None
    }
}

/// `true` if `err` is the client's doing (see [`client_fault`]).
#[must_use]
pub fn is_client_fault(err: &(dyn Error + 'static)) -> bool {
    client_fault(err).is_some()
}

/// hyper-util's pooled client, HTTP/1 over plain TCP (no TLS in this
/// build). Cloning it is cheap and shares its connection pool.
pub type HttpClient = Client<HttpConnector, Body>;

/// Builds an [`HttpClient`]: HTTP/1 only, `TCP_NODELAY`, a 5 s connect
/// timeout, at most 1024 idle connections per upstream kept 30 s each; a
/// request that finds its pooled connection closed before it was sent is
/// sent again on another (hyper-util's default).
///
/// Its connections run as tasks on the runtime the requests are made from:
/// the gateway gives each worker thread a client of its own, so a request
/// and its upstream connection stay on one thread.
#[must_use]
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// The innermost service of an upstream stack: sends a request to the
/// upstream over an [`HttpClient`] and streams the response back.
///
/// A request with an origin-form URI (`/users/7?x=1`, as the proxy routes
/// send) goes to the upstream's base: `http://host:port{base path}/users/7?x=1`,
/// with `Host` set to the upstream's authority. A request with an absolute
/// URI (as the aggregator builds from the upstream's `url`) is sent as it
/// is. Requests go out as HTTP/1.1. Cloning it allocates nothing.
#[derive(Clone, Debug)]
pub struct ClientService {
    client: HttpClient,
    target: Arc<Target>,
}

#[derive(Debug)]
struct Target {
    authority: Authority,
    base_path: Box<str>,
    host: HeaderValue,
}

impl ClientService {
    /// Sends to `base` (`http://host:port[/base/path]`, as validated by the
    /// config) over `client`.
    #[must_use]
    pub fn new(base: &Uri, client: HttpClient) -> Self {
        let authority = base
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("127.0.0.1:80"));
        let host = HeaderValue::from_str(authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Self {
            client,
            target: Arc::new(Target {
                authority,
                base_path: base.path().trim_end_matches('/').into(),
                host,
            }),
        }
    }

    /// The absolute upstream URI for an origin-form `uri`. Without a base
    /// path, the path and query are moved, not copied.
    fn target(&self, uri: Uri) -> Result<Uri, http::Error> {
        let mut parts = uri.into_parts();
        if !self.target.base_path.is_empty() {
            let path_and_query = parts
                .path_and_query
                .as_ref()
                .map_or("/", PathAndQuery::as_str);
            let mut joined =
                String::with_capacity(self.target.base_path.len() + path_and_query.len());
            joined.push_str(&self.target.base_path);
            joined.push_str(path_and_query);
            parts.path_and_query = Some(PathAndQuery::try_from(joined)?);
        } else if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.target.authority.clone());
        Ok(Uri::from_parts(parts)?)
    }
}

impl Service<Request<Body>> for ClientService {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ClientFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pool opens a connection when none is idle: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        if req.uri().authority().is_none() {
            match self.target(std::mem::take(req.uri_mut())) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(err) => {
                    return ClientFuture {
                        state: ClientState::Failed {
                            error: Some(err.into()),
                        },
                    };
                }
            }
            req.headers_mut()
                .entry(header::HOST)
                .or_insert_with(|| self.target.host.clone());
        }
        *req.version_mut() = Version::HTTP_11;
        ClientFuture {
            state: ClientState::Sent {
                future: self.client.request(req),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ClientService`]: hyper-util's, with the body
    /// as axum's [`Body`] and the error boxed.
    pub struct ClientFuture {
        #[pin]
        state: ClientState,
    }
}

pin_project! {
    #[project = ClientStateProj]
    enum ClientState {
        Sent { #[pin] future: ResponseFuture },
        Failed { error: Option<BoxError> },
    }
}

impl Future for ClientFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ClientStateProj::Sent { future } => {
                let res = ready!(future.poll(cx))?;
                Poll::Ready(Ok(res.map(Body::new)))
            }
            ClientStateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "the request was already answered".into()))),
        }
    }
}

impl fmt::Debug for ClientFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFuture").finish_non_exhaustive()
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
    // Most messages carry none: one pass over the names instead of a lookup
    // per hop-by-hop header.
    if !headers
        .keys()
        .any(|k| *k == header::UPGRADE || HOP_BY_HOP.contains(k))
    {
        return;
    }
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

/// The `X-Forwarded-For` entry for a client at `addr`: its IP. Compute it
/// once per connection.
#[must_use]
pub fn forwarded_for(addr: &SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Turns a client's request to `{prefix}{rest}` into the upstream request
/// for `{rest}`: origin-form URI (the raw, still-encoded path after the
/// prefix, and the query), hop-by-hop headers dropped, `Host` moved to
/// `X-Forwarded-Host` (the client sets `Host` to the upstream's), the
/// client's IP (`client`, from [`forwarded_for`]) appended to
/// `X-Forwarded-For`, `X-Forwarded-Proto: http`, and the client side's
/// extensions dropped (they describe this gateway's connection, not the
/// upstream request) but for the request's [`Deadline`](palisade::Deadline),
/// which goes on. The body is passed through as a stream.
#[must_use]
pub fn upstream_request(
    mut req: Request<Body>,
    prefix_len: usize,
    client: Option<&HeaderValue>,
) -> Request<Body> {
    let uri = req.uri();
    let path = uri.path();
    let rest = path.get(prefix_len..).unwrap_or("");
    let mut pq = String::with_capacity(rest.len() + 1 + uri.query().map_or(0, |q| q.len() + 1));
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
    let deadline = palisade::Deadline::of(&req);
    *req.extensions_mut() = Extensions::new();
    if let Some(deadline) = deadline {
        deadline.set_on(&mut req);
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Some(ip) = client {
        match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => {
                let joined = format!("{prior}, {}", ip.to_str().unwrap_or("unknown"));
                if let Ok(v) = HeaderValue::from_str(&joined) {
                    headers.insert(X_FORWARDED_FOR, v);
                }
            }
            _ => {
                headers.insert(X_FORWARDED_FOR, ip.clone());
            }
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
        let ip = forwarded_for(&SocketAddr::from(([127, 0, 0, 9], 5000)));
        let out = upstream_request(req, "/api/user".len(), Some(&ip));
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
        let client = http_client();
        let svc = ClientService::new(&"http://127.0.0.1:9/v1/".parse().unwrap(), client.clone());
        assert_eq!(
            svc.target("/users/1?a=b".parse().unwrap()).unwrap(),
            "http://127.0.0.1:9/v1/users/1?a=b"
        );
        assert_eq!(svc.target.host, "127.0.0.1:9");
        let bare = ClientService::new(&"http://example.test".parse().unwrap(), client);
        assert_eq!(
            bare.target("/x?y=%20".parse().unwrap()).unwrap(),
            "http://example.test/x?y=%20"
        );
        assert_eq!(bare.target.host, "example.test");
    }
}
