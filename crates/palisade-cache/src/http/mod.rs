//! HTTP caching (feature `http`): [`HttpPolicy`] keys requests by method,
//! URI and `Vary`, reads freshness from `Cache-Control`, revalidates with
//! `ETag` / `If-None-Match`, and buffers bodies into shared entries.
//!
//! Built with [`CacheLayer::http_builder`](crate::CacheLayer::http_builder).
//! The service's response is `http::Response<`[`CacheBody`]`<B>>`, and
//! every answer carries `x-palisade-cache` ([`CACHE_STATUS_HEADER`]): `hit`,
//! `miss`, `coalesced`, `revalidated`, `stale` or `bypass`, and `Age` when
//! it comes from an entry.
//!
//! # What is stored
//!
//! | request or response | stored? |
//! |---|---|
//! | `GET` (and `HEAD`, separately) | yes, keyed by URI and the request headers the response's `Vary` names |
//! | any other method | no; a successful `POST`, `PUT`, `PATCH` or `DELETE` invalidates the URI's entries (RFC 9111 §4.4) |
//! | request with `Range` or `Authorization` | no (passed through) |
//! | `200 203 204 301 308 410` | yes, for `s-maxage`, else `max-age`, else `Expires − Date`, else the configured TTL |
//! | `404` | only with `negative_ttl` (at most its own `max-age`) |
//! | other statuses, `5xx` | no; `500 502 503 504` count as backend failures (a stale entry answers within `stale_if_error`) |
//! | `no-store`, `private` (also qualified), `Set-Cookie`, `Vary: *` | no |
//! | `no-cache` | yes, but stale at once: every use is revalidated (with its `ETag` or `Last-Modified`) |
//! | `must-revalidate`, `proxy-revalidate` | yes, never served stale |
//! | `x-palisade-completed: false` (a partial fan-out result) | no |
//! | body larger than `max_entry_bytes`, or with trailers | no: streamed through |
//!
//! Request `Cache-Control` directives (`no-cache`, `max-age=0` from a
//! client) are not honoured: this is a shared cache in front of a backend
//! it protects, as nginx and Varnish are by default.
//!
//! # Parsing
//!
//! `Cache-Control`, `ETag`, `If-None-Match`, `Vary`, `Expires`, `Date` and
//! `Age` are parsed by the `headers` crate (hyperium's typed headers). Its
//! `Cache-Control` reads directive names in lowercase only and ignores the
//! qualified forms `private="..."` and `no-cache="..."`; the cache lowercases
//! a value that has capitals before parsing, and treats a qualified
//! `private` as `private` and a qualified `no-cache` as `no-cache`, the
//! conservative readings. A `Cache-Control` it cannot parse (say
//! `max-age=soon`) means the response is not stored.

mod body;
mod codec;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use headers::{CacheControl, HeaderMapExt};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::Body;
use palisade_core::BoxError;

pub use self::body::CacheBody;
use self::body::{Collect, Collected};
use crate::event::Served;
use crate::policy::{AdmitContext, Admitted, CacheKey, Lookup, Policy, Storage, Variant};
use crate::state::{Decision, Directives, NotStored, decide, is_failure_status};

/// `x-palisade-cache`: how the cache answered (`hit`, `miss`, `coalesced`,
/// `revalidated`, `stale`, `bypass`).
pub const CACHE_STATUS_HEADER: HeaderName = HeaderName::from_static("x-palisade-cache");

/// `x-palisade-completed`: set to `false` by the fan-out layer on a partial
/// result, which is never stored.
pub const COMPLETED_HEADER: HeaderName = HeaderName::from_static("x-palisade-completed");

/// The key of an HTTP entry: the URI (its name for invalidation), then
/// ` HEAD` for a `HEAD` request, then the values of the `Vary` headers.
///
/// Its text is readable (`/products/7`, `/products/7 HEAD`,
/// `/products/7 accept-encoding=gzip`) and is the Redis key after the
/// prefix.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HttpKey {
    text: Box<str>,
    base: usize,
}

impl HttpKey {
    fn new(uri: &http::Uri, head: bool) -> Self {
        let pq = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let origin = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len(),
            _ => 0,
        };
        // Exactly the key's length: no shrink when it is boxed.
        let mut text = String::with_capacity(origin + pq.len() + if head { 5 } else { 0 });
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            text.push_str(scheme);
            text.push_str("://");
            text.push_str(authority.as_str());
        }
        text.push_str(pq);
        let base = text.len();
        if head {
            text.push_str(" HEAD");
        }
        Self {
            text: text.into_boxed_str(),
            base,
        }
    }

    /// This key's variant for a request with `headers`, given the names a
    /// response's `Vary` lists.
    fn variant(&self, names: &[HeaderName], headers: &HeaderMap) -> Self {
        let mut text = String::with_capacity(self.text.len() + 32 * names.len());
        text.push_str(&self.text);
        for name in names {
            text.push(' ');
            text.push_str(name.as_str());
            text.push('=');
            let mut first = true;
            for value in headers.get_all(name) {
                if !first {
                    text.push(',');
                }
                first = false;
                // Header values are visible ASCII (or opaque bytes); spaces
                // around list items do not change the variant.
                text.push_str(&String::from_utf8_lossy(value.as_bytes()).replace(' ', ""));
            }
        }
        Self {
            text: text.into_boxed_str(),
            base: self.base,
        }
    }
}

impl fmt::Debug for HttpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl CacheKey for HttpKey {
    fn base(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.text[..self.base])
    }

    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.text)
    }
}

/// A stored HTTP response: status, headers (hop-by-hop ones removed) and
/// the whole body.
#[derive(Clone, Debug)]
pub struct CachedResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    etag: Option<headers::ETag>,
}

impl CachedResponse {
    /// The status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    #[must_use]
    pub const fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    #[must_use]
    pub const fn body(&self) -> &Bytes {
        &self.body
    }
}

/// What an HTTP entry holds: a response, or the names of the request
/// headers a URI's responses vary on (the variants are entries of their
/// own).
#[derive(Clone, Debug)]
pub enum HttpValue {
    /// A response.
    Response(CachedResponse),
    /// The `Vary` header names, lowercase and sorted.
    Vary(Box<[HeaderName]>),
}

/// What the HTTP cache keeps of a request to answer it.
#[derive(Clone, Debug)]
pub struct HttpMeta {
    head: bool,
    if_none_match: Option<HeaderValue>,
}

/// What the HTTP cache keeps of a request sent to the backend.
#[derive(Debug)]
pub struct HttpPending {
    /// The request's headers, to compute the variant named by a `Vary`.
    headers: HeaderMap,
    authorized: bool,
    head: bool,
}

/// The HTTP caching policy; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct HttpPolicy {
    _private: (),
}

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Reads what a response says about its own caching.
pub(crate) fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    let values: Vec<&HeaderValue> = headers.get_all(header::CACHE_CONTROL).iter().collect();
    if !values.is_empty() {
        // `headers` matches directive names in lowercase only.
        let lowered: Vec<HeaderValue>;
        let parse_from: Vec<&HeaderValue> = if values
            .iter()
            .any(|v| v.as_bytes().iter().any(u8::is_ascii_uppercase))
        {
            lowered = values
                .iter()
                .filter_map(|v| HeaderValue::from_bytes(&v.as_bytes().to_ascii_lowercase()).ok())
                .collect();
            lowered.iter().collect()
        } else {
            values.clone()
        };
        let mut map = HeaderMap::new();
        for v in parse_from {
            map.append(header::CACHE_CONTROL, v.clone());
        }
        match map.typed_try_get::<CacheControl>() {
            Ok(Some(cc)) => {
                d.no_store = cc.no_store();
                d.private = cc.private();
                d.no_cache = cc.no_cache();
                d.public = cc.public();
                d.must_revalidate = cc.must_revalidate();
                d.max_age = cc.max_age();
                d.s_maxage = cc.s_max_age();
            }
            Ok(None) => {}
            Err(_) => d.malformed = true,
        }
        for v in &values {
            let bytes = v.as_bytes();
            // Qualified forms the parser ignores: read them conservatively.
            d.private |= contains_ignore_case(bytes, b"private=");
            d.no_cache |= contains_ignore_case(bytes, b"no-cache=");
            d.must_revalidate |= contains_ignore_case(bytes, b"proxy-revalidate");
        }
    }
    if let Ok(Some(expires)) = headers.typed_try_get::<headers::Expires>() {
        let date = headers
            .typed_get::<headers::Date>()
            .map_or_else(SystemTime::now, SystemTime::from);
        match SystemTime::from(expires).duration_since(date) {
            Ok(d_in) => d.expires_in = Some(d_in),
            Err(_) => d.expired = true,
        }
    } else if headers.contains_key(header::EXPIRES) {
        // An invalid Expires (`0`, say) means already expired.
        d.expired = true;
    }
    d.age = headers
        .typed_get::<headers::Age>()
        .map_or(Duration::ZERO, |age| Duration::from_secs(age.as_secs()));
    d.sets_cookie = headers.contains_key(header::SET_COOKIE);
    d.vary_any = headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|item| item.trim_ascii() == b"*")
    });
    d.partial = headers
        .get(COMPLETED_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"false"));
    d
}

/// The lowercase, sorted, de-duplicated names a response's `Vary` lists.
fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|item| HeaderName::from_bytes(item.trim_ascii()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// A backend response passed on as it came, marked a miss.
fn missed<B>(mut parts: http::response::Parts, body: CacheBody<B>) -> Response<CacheBody<B>> {
    parts
        .headers
        .insert(CACHE_STATUS_HEADER, status_value(Served::Miss));
    Response::from_parts(parts, body)
}

fn status_value(served: Served) -> HeaderValue {
    HeaderValue::from_static(served.as_str())
}

/// Headers a `304 Not Modified` carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_HEADERS: [HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

/// Puts the headers every answer sets (`Age`, `x-palisade-cache`) in a
/// stored map, so that answering replaces their values in its clone instead
/// of growing it (a reallocation per hit).
fn with_placeholders(headers: &mut HeaderMap) {
    headers.insert(header::AGE, HeaderValue::from_static("0"));
    headers.insert(CACHE_STATUS_HEADER, HeaderValue::from_static("hit"));
}

impl CachedResponse {
    fn from_parts(parts: &http::response::Parts, body: Bytes, head: bool) -> Self {
        let mut headers = parts.headers.clone();
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        if !head {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        with_placeholders(&mut headers);
        let etag = headers.typed_get::<headers::ETag>();
        Self {
            status: parts.status,
            version: parts.version,
            headers,
            body,
            etag,
        }
    }

    /// The stored response refreshed by a `304`: its headers updated with
    /// the 304's (RFC 9111 §4.3.4), body kept.
    fn refreshed(&self, not_modified: &HeaderMap) -> Self {
        let mut headers = self.headers.clone();
        let mut updated: Vec<&HeaderName> = not_modified.keys().collect();
        updated.retain(|n| {
            !HOP_BY_HOP.contains(n) && **n != header::CONTENT_LENGTH && **n != CACHE_STATUS_HEADER
        });
        for name in updated {
            headers.remove(name);
            for value in not_modified.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        with_placeholders(&mut headers);
        let etag = headers.typed_get::<headers::ETag>();
        Self {
            status: self.status,
            version: self.version,
            headers,
            body: self.body.clone(),
            etag,
        }
    }
}

impl Storage for HttpPolicy {
    type Key = HttpKey;
    type Value = HttpValue;

    fn weigh(&self, key: &HttpKey, value: &HttpValue) -> usize {
        let value = match value {
            HttpValue::Response(r) => {
                let headers: usize = r
                    .headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len() + 32)
                    .sum();
                r.body.len() + headers + size_of::<CachedResponse>()
            }
            HttpValue::Vary(names) => names.iter().map(|n| n.as_str().len() + 16).sum(),
        };
        key.text.len() + value
    }

    fn encode(&self, value: &HttpValue) -> Option<Vec<u8>> {
        Some(codec::encode(value))
    }

    fn decode(&self, bytes: &[u8]) -> Option<HttpValue> {
        codec::decode(bytes)
    }
}

impl<ReqB, ResB> Policy<Request<ReqB>, Response<ResB>> for HttpPolicy
where
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<CacheBody<ResB>>;
    type Meta = HttpMeta;
    type Pending = HttpPending;
    type Admit = HttpAdmit<ResB>;

    #[inline]
    fn lookup(&self, request: &Request<ReqB>) -> Lookup<HttpKey> {
        let method = request.method();
        let head = *method == Method::HEAD;
        if *method != Method::GET && !head {
            return if matches!(
                *method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ) {
                Lookup::Invalidate(HttpKey::new(request.uri(), false))
            } else {
                Lookup::Bypass
            };
        }
        let headers = request.headers();
        if headers.contains_key(header::RANGE) || headers.contains_key(header::AUTHORIZATION) {
            return Lookup::Bypass;
        }
        Lookup::Key(HttpKey::new(request.uri(), head))
    }

    #[inline]
    fn variant(
        &self,
        request: &Request<ReqB>,
        key: &HttpKey,
        stored: &HttpValue,
    ) -> Variant<HttpKey> {
        match stored {
            HttpValue::Response(_) => Variant::Itself,
            HttpValue::Vary(names) => Variant::At(key.variant(names, request.headers())),
        }
    }

    #[inline]
    fn meta(&self, request: &Request<ReqB>) -> HttpMeta {
        HttpMeta {
            head: *request.method() == Method::HEAD,
            if_none_match: request.headers().get(header::IF_NONE_MATCH).cloned(),
        }
    }

    fn respond(
        &self,
        meta: &HttpMeta,
        value: &HttpValue,
        served: Served,
        age: Duration,
    ) -> Self::Response {
        let HttpValue::Response(stored) = value else {
            // The engine resolves markers before answering; should one get
            // here, answer with an error rather than a wrong body.
            let mut response = Response::new(CacheBody::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return response;
        };
        let not_modified = match (&meta.if_none_match, &stored.etag) {
            (Some(raw), Some(etag)) if stored.status == StatusCode::OK => {
                let mut map = HeaderMap::with_capacity(1);
                map.insert(header::IF_NONE_MATCH, raw.clone());
                map.typed_get::<headers::IfNoneMatch>()
                    .is_some_and(|inm| !inm.precondition_passes(etag))
            }
            _ => false,
        };
        let mut response = if not_modified {
            let mut response = Response::new(CacheBody::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            let headers = response.headers_mut();
            for name in &NOT_MODIFIED_HEADERS {
                for value in stored.headers.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            response
        } else {
            let body = if meta.head {
                CacheBody::empty()
            } else {
                CacheBody::full(stored.body.clone())
            };
            let mut response = Response::new(body);
            *response.status_mut() = stored.status;
            *response.headers_mut() = stored.headers.clone();
            response
        };
        *response.version_mut() = stored.version;
        let headers = response.headers_mut();
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        headers.insert(CACHE_STATUS_HEADER, status_value(served));
        response
    }

    fn prepare(&self, request: &mut Request<ReqB>, stale: Option<&HttpValue>) -> HttpPending {
        let headers = request.headers_mut();
        // The cache wants a whole response to store and share, not the
        // caller's 304: it answers the caller's validators itself.
        headers.remove(header::IF_NONE_MATCH);
        headers.remove(header::IF_MODIFIED_SINCE);
        headers.remove(header::IF_RANGE);
        if let Some(HttpValue::Response(stale)) = stale {
            if let Some(etag) = stale.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            } else if let Some(modified) = stale.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
            }
        }
        HttpPending {
            headers: request.headers().clone(),
            authorized: request.headers().contains_key(header::AUTHORIZATION),
            head: *request.method() == Method::HEAD,
        }
    }

    fn admit(
        &self,
        response: Response<ResB>,
        key: &HttpKey,
        pending: HttpPending,
        stale: Option<&HttpValue>,
        cx: &AdmitContext,
    ) -> HttpAdmit<ResB> {
        let (parts, body) = response.into_parts();
        let status = parts.status;
        if status == StatusCode::NOT_MODIFIED {
            if let Some(HttpValue::Response(stale)) = stale {
                let value = stale.refreshed(&parts.headers);
                let mut d = directives(&value.headers);
                d.authorized_request = pending.authorized;
                let admitted = match decide(value.status.as_u16(), &d, &cx.base, cx.negative_ttl) {
                    Decision::Store { lifetime, age } => Admitted::Store {
                        value: HttpValue::Response(value),
                        lifetime,
                        age,
                        vary: None,
                        revalidated: true,
                    },
                    Decision::Skip(reason) => Admitted::Share {
                        value: HttpValue::Response(value),
                        reason,
                        failure: false,
                    },
                };
                return HttpAdmit::ready(admitted);
            }
            // A 304 the cache did not ask for: pass it on.
            return HttpAdmit::ready(Admitted::Pass {
                response: missed(parts, CacheBody::stream(body)),
                reason: NotStored::Status,
                failure: false,
            });
        }
        let mut d = directives(&parts.headers);
        d.authorized_request = pending.authorized;
        let failure = is_failure_status(status.as_u16());
        let then = match decide(status.as_u16(), &d, &cx.base, cx.negative_ttl) {
            Decision::Store { lifetime, age } => {
                let names = vary_names(&parts.headers);
                let vary = (!names.is_empty()).then(|| {
                    let variant = key.variant(&names, &pending.headers);
                    (variant, HttpValue::Vary(names.into_boxed_slice()))
                });
                Then::Store {
                    lifetime,
                    age,
                    vary,
                }
            }
            // Never shared with other requests: it is one client's.
            Decision::Skip(
                reason @ (NotStored::Private
                | NotStored::SetCookie
                | NotStored::Authorized
                | NotStored::NoStore),
            ) => {
                return HttpAdmit::ready(Admitted::Pass {
                    response: missed(parts, CacheBody::stream(body)),
                    reason,
                    failure,
                });
            }
            Decision::Skip(reason) => Then::Share { reason, failure },
        };
        let declared = body.size_hint().exact().or_else(|| {
            parts
                .headers
                .typed_get::<headers::ContentLength>()
                .map(|l| l.0)
        });
        if declared.is_some_and(|len| len > cx.max_entry_bytes) {
            return HttpAdmit::ready(Admitted::Pass {
                response: missed(parts, CacheBody::stream(body)),
                reason: NotStored::TooLarge,
                failure,
            });
        }
        HttpAdmit {
            state: AdmitState::Reading {
                collect: Collect::new(body, cx.max_entry_bytes),
                parts: Some(parts),
                then: Some(then),
                head: pending.head,
            },
        }
    }

    fn pass(&self, response: Response<ResB>) -> (Self::Response, bool) {
        let success = response.status().is_success() || response.status().is_redirection();
        let (mut parts, body) = response.into_parts();
        parts
            .headers
            .insert(CACHE_STATUS_HEADER, status_value(Served::Bypass));
        (
            Response::from_parts(parts, CacheBody::stream(body)),
            success,
        )
    }
}

/// What to do with a body once read.
#[allow(
    clippy::large_enum_variant,
    reason = "one per response read, never moved in a loop"
)]
enum Then {
    Store {
        lifetime: crate::state::Lifetime,
        age: Duration,
        vary: Option<(HttpKey, HttpValue)>,
    },
    Share {
        reason: NotStored,
        failure: bool,
    },
}

enum AdmitState<B: Body> {
    Ready(Option<Admitted<HttpKey, HttpValue, Response<CacheBody<B>>>>),
    Reading {
        collect: Collect<B>,
        parts: Option<http::response::Parts>,
        then: Option<Then>,
        head: bool,
    },
}

/// Reads a backend response into an HTTP entry (buffers its body up to
/// `max_entry_bytes`).
pub struct HttpAdmit<B: Body> {
    state: AdmitState<B>,
}

impl<B: Body> fmt::Debug for HttpAdmit<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            AdmitState::Ready(_) => "ready",
            AdmitState::Reading { .. } => "reading",
        };
        f.debug_struct("HttpAdmit").field("state", &state).finish()
    }
}

impl<B: Body> HttpAdmit<B> {
    const fn ready(admitted: Admitted<HttpKey, HttpValue, Response<CacheBody<B>>>) -> Self {
        Self {
            state: AdmitState::Ready(Some(admitted)),
        }
    }
}

impl<B> Future for HttpAdmit<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Admitted<HttpKey, HttpValue, Response<CacheBody<B>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            AdmitState::Ready(admitted) => {
                Poll::Ready(admitted.take().expect("HttpAdmit polled after completion"))
            }
            AdmitState::Reading {
                collect,
                parts,
                then,
                head,
            } => {
                let collected = std::task::ready!(collect.poll(cx));
                let parts = parts.take().expect("HttpAdmit polled after completion");
                let then = then.take().expect("HttpAdmit polled after completion");
                let failure = is_failure_status(parts.status.as_u16());
                Poll::Ready(match collected {
                    Collected::Failed(e) => Admitted::Failed(e.into()),
                    Collected::Partial(body) => Admitted::Pass {
                        response: missed(parts, body),
                        reason: NotStored::TooLarge,
                        failure,
                    },
                    Collected::Full(bytes) => {
                        let value =
                            HttpValue::Response(CachedResponse::from_parts(&parts, bytes, *head));
                        match then {
                            Then::Store {
                                lifetime,
                                age,
                                vary,
                            } => Admitted::Store {
                                value,
                                lifetime,
                                age,
                                vary,
                                revalidated: false,
                            },
                            Then::Share { reason, failure } => Admitted::Share {
                                value,
                                reason,
                                failure,
                            },
                        }
                    }
                })
            }
        }
    }
}
