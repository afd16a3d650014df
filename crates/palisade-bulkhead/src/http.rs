//! HTTP integration (feature `http`): partition keys over
//! [`http::Request`], and [`ProblemResponseLayer`], which answers a refused
//! call with `503 Service Unavailable` so an axum stack keeps `Infallible`.
//!
//! ```
//! use palisade_bulkhead::{BulkheadLayer, http::{header, ProblemResponseLayer}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bulkhead = BulkheadLayer::builder("tenants")
//!     .max_concurrent_calls(1)
//!     .partition(header("x-tenant"))
//!     .build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(ProblemResponseLayer::new())
//!     .layer(bulkhead.clone())
//!     .service(service_fn(|_req: http::Request<String>| async {
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         Ok::<_, Infallible>(http::Response::new(String::from("ok")))
//!     }));
//!
//! let req = || http::Request::builder().header("x-tenant", "a").body(String::new()).unwrap();
//! let first = tokio::spawn(svc.clone().oneshot(req()));
//! tokio::task::yield_now().await;
//! // Tenant `a` is at its limit: the second call is refused with a 503.
//! let res = svc.clone().oneshot(req()).await?;
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.headers()["x-palisade-bulkhead"], "tenants");
//! assert_eq!(first.await??.status(), 200);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;

use http::Request;
use http::header::{HOST, HeaderName};

use crate::partition::Partition;

// ===== Keys =====

/// Partitions by the value of a request header (a tenant id, an API key's
/// id). Requests without it, or with a value that is not visible ASCII, use
/// the [`UNKEYED`](crate::partition::UNKEYED) pool.
#[derive(Clone, Debug)]
pub struct HeaderKey(HeaderName);

/// Partitions by the value of the header `name`.
///
/// # Panics
///
/// If `name` is not a valid header name; use [`HeaderKey::new`] with a
/// parsed [`HeaderName`] to handle that case.
#[must_use]
pub fn header(name: &'static str) -> HeaderKey {
    HeaderKey(HeaderName::from_static(name))
}

impl HeaderKey {
    /// Partitions by the value of the header `name`.
    #[must_use]
    pub const fn new(name: HeaderName) -> Self {
        Self(name)
    }
}

impl<B> Partition<Request<B>> for HeaderKey {
    #[inline]
    fn key<'r>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        req.headers().get(&self.0)?.to_str().ok().map(Cow::Borrowed)
    }
}

/// Partitions by the request path, or by its first few segments.
#[derive(Clone, Copy, Debug)]
pub struct PathKey {
    segments: Option<usize>,
}

/// Partitions by the whole path (without the query). Paths that carry ids
/// (`/orders/123`) make one partition per id: prefer [`path_prefix`], or a
/// route template (axum's `MatchedPath`) through
/// [`BulkheadBuilder::partition_by`](crate::BulkheadBuilder::partition_by).
#[must_use]
pub const fn path() -> PathKey {
    PathKey { segments: None }
}

/// Partitions by the first `segments` segments of the path:
/// `path_prefix(2)` keys `/api/orders/123?x=1` as `/api/orders`.
#[must_use]
pub const fn path_prefix(segments: usize) -> PathKey {
    PathKey {
        segments: Some(segments),
    }
}

impl<B> Partition<Request<B>> for PathKey {
    #[inline]
    fn key<'r>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        let path = req.uri().path();
        let Some(segments) = self.segments else {
            return Some(Cow::Borrowed(path));
        };
        // Byte offset of the end of the `segments`-th segment.
        let mut seen = 0;
        for (i, byte) in path.bytes().enumerate().skip(1) {
            if byte == b'/' {
                seen += 1;
                if seen == segments {
                    return Some(Cow::Borrowed(&path[..i]));
                }
            }
        }
        Some(Cow::Borrowed(path))
    }
}

/// Partitions by the authority the request is for: the URI's authority
/// (absolute-form and HTTP/2 requests) or else the `Host` header. Useful in a
/// proxy to isolate downstream hosts from each other.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthorityKey;

/// Partitions by the request's authority; see [`AuthorityKey`].
#[must_use]
pub const fn authority() -> AuthorityKey {
    AuthorityKey
}

impl<B> Partition<Request<B>> for AuthorityKey {
    #[inline]
    fn key<'r>(&self, req: &'r Request<B>) -> Option<Cow<'r, str>> {
        if let Some(authority) = req.uri().authority() {
            return Some(Cow::Borrowed(authority.as_str()));
        }
        req.headers().get(HOST)?.to_str().ok().map(Cow::Borrowed)
    }
}

// ===== ProblemResponse =====

/// Answers errors with `application/problem+json` responses, so the stack's
/// error type is `Infallible` (as axum wants): palisade-core's layer,
/// re-exported here. A rejection anywhere in the error's chain (this
/// bulkhead's [`BulkheadFull`](palisade_core::BulkheadFull), a breaker's
/// [`CircuitOpen`](palisade_core::CircuitOpen)) becomes its `503` response,
/// for a bulkhead with an `x-palisade-bulkhead` header naming it; any other
/// error a `500` that does not reveal it. Put it directly above the
/// bulkhead, or above the whole stack.
pub use palisade_core::http::{ProblemFuture, ProblemResponse, ProblemResponseLayer};

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).unwrap()
    }

    #[test]
    fn path_keys() {
        let r = req("/api/orders/123?x=1");
        assert_eq!(path().key(&r).as_deref(), Some("/api/orders/123"));
        assert_eq!(path_prefix(1).key(&r).as_deref(), Some("/api"));
        assert_eq!(path_prefix(2).key(&r).as_deref(), Some("/api/orders"));
        assert_eq!(path_prefix(9).key(&r).as_deref(), Some("/api/orders/123"));
        assert_eq!(path_prefix(1).key(&req("/")).as_deref(), Some("/"));
        assert_eq!(path_prefix(0).key(&r).as_deref(), Some("/api/orders/123"));
        assert!(
            matches!(path().key(&r), Some(Cow::Borrowed(_))),
            "no allocation"
        );
    }

    #[test]
    fn header_and_authority_keys() {
        let r = Request::builder()
            .uri("/x")
            .header("x-tenant", "acme")
            .header("host", "inventory.local:8080")
            .body(())
            .unwrap();
        assert_eq!(header("x-tenant").key(&r).as_deref(), Some("acme"));
        assert_eq!(header("x-other").key(&r), None);
        assert_eq!(authority().key(&r).as_deref(), Some("inventory.local:8080"));
        let abs = req("http://orders.local/a");
        assert_eq!(authority().key(&abs).as_deref(), Some("orders.local"));
        assert_eq!(authority().key(&req("/a")), None);
        let bad = Request::builder()
            .header("x-tenant", http::HeaderValue::from_bytes(b"\xff").unwrap())
            .body(())
            .unwrap();
        assert_eq!(header("x-tenant").key(&bad), None);
    }
}
