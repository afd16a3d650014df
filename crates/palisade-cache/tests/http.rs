//! HTTP semantics: `Cache-Control` and `Vary` tables, `ETag` revalidation,
//! what is never stored, bodies too large to buffer.
#![cfg(feature = "http")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use palisade_cache::http::CacheBody;
use palisade_cache::{CacheBuilder, CacheHandle, CacheLayer};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};

const S: Duration = Duration::from_secs(1);

/// path → (status, headers, body)
type Script = HashMap<String, (u16, Vec<(String, String)>, String)>;
/// (what, status, response headers, expectation)
type ControlRow = (
    &'static str,
    u16,
    &'static [(&'static str, &'static str)],
    Expect,
);
/// (request headers, `x-palisade-cache`, the origin call whose body it gets)
type VaryRequest = (Vec<(&'static str, &'static str)>, &'static str, usize);

/// What the origin answers with, per path, and what it saw.
#[derive(Clone, Default)]
struct Origin {
    calls: Arc<AtomicUsize>,
    /// path → (status, headers, body)
    script: Arc<Mutex<Script>>,
    /// The headers of each request received, in order.
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Origin {
    fn answer(&self, path: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.script
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, headers, body.to_owned()));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last_seen(&self) -> HeaderMap {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

impl Service<Request<()>> for Origin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(request.headers().clone());
        let script = self.script.lock().unwrap();
        let (status, headers, body) = script.get(request.uri().path()).cloned().unwrap_or((
            200,
            Vec::new(),
            format!("body of {}", request.uri().path()),
        ));
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        ready(Ok(response))
    }
}

type Svc = palisade_cache::Cache<Origin, palisade_cache::http::HttpPolicy>;

fn build(
    builder: CacheBuilder<palisade_cache::http::HttpPolicy>,
    origin: &Origin,
) -> (Svc, CacheHandle) {
    let layer = builder.build().unwrap();
    (layer.layer(origin.clone()), layer.handle())
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = get(path);
    for (n, v) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    request
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn cache(&self) -> &str {
        self.headers["x-palisade-cache"].to_str().unwrap()
    }
}

async fn send(svc: &Svc, request: Request<()>) -> Answer {
    let response: Response<CacheBody<Full<Bytes>>> = svc.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn plain(name: &str) -> CacheBuilder<palisade_cache::http::HttpPolicy> {
    CacheLayer::http_builder(name)
        .ttl(60 * S)
        .stale_while_revalidate(Duration::ZERO)
        .stale_if_error(Duration::ZERO)
}

/// What a response's headers make of it.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Stored, fresh for this many seconds.
    Fresh(u64),
    /// Not stored: every request goes to the origin.
    NotStored,
    /// Stored, but revalidated on every use.
    Revalidated,
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cache_control_table() {
    #[rustfmt::skip]
    let rows: Vec<ControlRow> = vec![
        ("nothing said: the configured ttl", 200, &[], Expect::Fresh(60)),
        ("max-age", 200, &[("cache-control", "max-age=5")], Expect::Fresh(5)),
        ("s-maxage over max-age", 200, &[("cache-control", "max-age=5, s-maxage=20")], Expect::Fresh(20)),
        ("directive names in capitals", 200, &[("cache-control", "Max-Age=7")], Expect::Fresh(7)),
        ("two cache-control lines", 200, &[("cache-control", "public"), ("cache-control", "max-age=9")], Expect::Fresh(9)),
        ("max-age minus the age it arrived with", 200, &[("cache-control", "max-age=10"), ("age", "4")], Expect::Fresh(6)),
        ("expires minus date", 200, &[("date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("expires", "Sun, 06 Nov 1994 08:49:49 GMT")], Expect::Fresh(12)),
        ("an invalid expires is already stale", 200, &[("expires", "0")], Expect::NotStored),
        ("no-store", 200, &[("cache-control", "no-store, max-age=60")], Expect::NotStored),
        ("NO-STORE in capitals", 200, &[("cache-control", "NO-STORE")], Expect::NotStored),
        ("private", 200, &[("cache-control", "private, max-age=60")], Expect::NotStored),
        ("qualified private", 200, &[("cache-control", "private=\"x-user\", max-age=60")], Expect::NotStored),
        ("no-cache: revalidated on every use", 200, &[("cache-control", "no-cache"), ("etag", "\"a\"")], Expect::Revalidated),
        ("qualified no-cache", 200, &[("cache-control", "no-cache=\"set-cookie\""), ("etag", "\"a\"")], Expect::Revalidated),
        ("malformed max-age", 200, &[("cache-control", "max-age=soon")], Expect::NotStored),
        ("set-cookie", 200, &[("set-cookie", "id=1")], Expect::NotStored),
        ("vary: *", 200, &[("vary", "*")], Expect::NotStored),
        ("partial fan-out result", 200, &[("x-palisade-completed", "false")], Expect::NotStored),
        ("complete fan-out result", 200, &[("x-palisade-completed", "true")], Expect::Fresh(60)),
        ("500", 500, &[("cache-control", "max-age=60")], Expect::NotStored),
        ("503", 503, &[], Expect::NotStored),
        ("302", 302, &[], Expect::NotStored),
        ("404 without negative caching", 404, &[], Expect::NotStored),
        ("301 is permanent", 301, &[], Expect::Fresh(60)),
        ("204", 204, &[], Expect::Fresh(60)),
    ];
    for (what, status, headers, expect) in rows {
        let origin = Origin::default();
        origin.answer("/r", status, headers, "payload");
        let (svc, _) = build(plain(what).stale_if_error(600 * S), &origin);
        let first = send(&svc, get("/r")).await;
        assert_eq!(first.status.as_u16(), status, "{what}");
        assert_eq!(first.cache(), "miss", "{what}");
        match expect {
            Expect::Fresh(secs) => {
                advance(Duration::from_secs(secs - 1)).await;
                let hit = send(&svc, get("/r")).await;
                assert_eq!(
                    (hit.cache(), origin.calls()),
                    ("hit", 1),
                    "{what}: fresh at {}s",
                    secs - 1
                );
                assert_eq!(hit.body, first.body, "{what}");
                assert_eq!(
                    hit.headers["age"],
                    (secs - 1 + u64::from(headers.iter().any(|h| h.0 == "age")) * 4).to_string(),
                    "{what}"
                );
                advance(S).await;
                let _ = send(&svc, get("/r")).await;
                assert_eq!(origin.calls(), 2, "{what}: stale at {secs}s");
            }
            Expect::NotStored => {
                let again = send(&svc, get("/r")).await;
                assert_eq!(again.cache(), "miss", "{what}");
                assert_eq!(origin.calls(), 2, "{what}");
            }
            Expect::Revalidated => {
                origin.answer("/r", 304, &[("etag", "\"a\"")], "");
                for n in 2..=3 {
                    let again = send(&svc, get("/r")).await;
                    assert_eq!(
                        (again.status, again.cache()),
                        (StatusCode::OK, "revalidated"),
                        "{what}"
                    );
                    assert_eq!(again.body, first.body, "{what}");
                    assert_eq!(origin.calls(), n, "{what}");
                    assert_eq!(origin.last_seen()["if-none-match"], "\"a\"", "{what}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn vary_table() {
    // (request headers, which response body it gets: the number of the
    // origin call that produced it)
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Vec<VaryRequest>)> = vec![
        ("one header", "accept-encoding", vec![
            (vec![("accept-encoding", "gzip")], "miss", 1),
            (vec![("accept-encoding", "br")], "miss", 2),
            (vec![("accept-encoding", "gzip")], "hit", 1),
            (vec![("accept-encoding", "br")], "hit", 2),
            (vec![], "miss", 3),
            (vec![], "hit", 3),
        ]),
        ("two headers, any order and case", "Accept-Language, accept-encoding", vec![
            (vec![("accept-encoding", "gzip"), ("accept-language", "fr")], "miss", 1),
            (vec![("accept-language", "fr"), ("accept-encoding", "gzip")], "hit", 1),
            (vec![("accept-encoding", "gzip"), ("accept-language", "de")], "miss", 2),
        ]),
        ("list spacing does not split variants", "accept", vec![
            (vec![("accept", "text/html, application/json")], "miss", 1),
            (vec![("accept", "text/html,application/json")], "hit", 1),
        ]),
    ];
    for (what, vary, requests) in rows {
        let origin = Origin::default();
        let (svc, _) = build(plain(what), &origin);
        for (i, (headers, cache, call)) in requests.into_iter().enumerate() {
            // The origin names each body after the call that made it.
            let n = origin.calls() + 1;
            origin.answer("/v", 200, &[("vary", vary)], &format!("call {n}"));
            let answer = send(&svc, get_with("/v", &headers)).await;
            assert_eq!(answer.cache(), cache, "{what}: request {i}");
            assert_eq!(answer.body, format!("call {call}"), "{what}: request {i}");
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn etag_revalidation_refreshes_a_stale_entry_without_its_body() {
    let origin = Origin::default();
    origin.answer(
        "/p",
        200,
        &[("cache-control", "max-age=10"), ("etag", "\"v1\"")],
        "product",
    );
    let (svc, handle) = build(plain("etag").stale_if_error(60 * S), &origin);
    send(&svc, get("/p")).await;

    advance(11 * S).await;
    origin.answer(
        "/p",
        304,
        &[("cache-control", "max-age=20"), ("etag", "\"v1\"")],
        "",
    );
    let revalidated = send(&svc, get("/p")).await;
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(revalidated.cache(), "revalidated");
    assert_eq!(revalidated.body, "product");
    assert_eq!(
        revalidated.headers["cache-control"], "max-age=20",
        "the 304's headers win"
    );
    assert_eq!(origin.last_seen()["if-none-match"], "\"v1\"");

    // Fresh again, for the 304's max-age.
    advance(19 * S).await;
    assert_eq!(send(&svc, get("/p")).await.cache(), "hit");
    assert_eq!(origin.calls(), 2);

    // Changed on the origin: the new body replaces the entry.
    advance(2 * S).await;
    origin.answer(
        "/p",
        200,
        &[("cache-control", "max-age=10"), ("etag", "\"v2\"")],
        "new product",
    );
    let changed = send(&svc, get("/p")).await;
    assert_eq!(
        (changed.cache(), &changed.body[..]),
        ("miss", &b"new product"[..])
    );
    assert_eq!(send(&svc, get("/p")).await.body, "new product");
    assert_eq!(handle.snapshot().stored, 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_client_validator_is_answered_by_the_cache() {
    let origin = Origin::default();
    origin.answer(
        "/p",
        200,
        &[("etag", "W/\"v1\""), ("cache-control", "max-age=60")],
        "product",
    );
    let (svc, _) = build(plain("client-etag"), &origin);
    // The client's own validator is not forwarded on a miss: the cache
    // needs a whole response to store.
    let first = send(&svc, get_with("/p", &[("if-none-match", "\"v1\"")])).await;
    assert!(!origin.last_seen().contains_key("if-none-match"));
    assert_eq!(
        first.status,
        StatusCode::NOT_MODIFIED,
        "weak comparison matches"
    );
    let not_modified = send(
        &svc,
        get_with("/p", &[("if-none-match", "\"v0\", W/\"v1\"")]),
    )
    .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.headers["etag"], "W/\"v1\"");
    let other = send(&svc, get_with("/p", &[("if-none-match", "\"v9\"")])).await;
    assert_eq!(
        (other.status, &other.body[..]),
        (StatusCode::OK, &b"product"[..])
    );
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_5xx_is_never_stored_and_is_answered_by_a_stale_entry() {
    let origin = Origin::default();
    origin.answer("/p", 200, &[("cache-control", "max-age=10")], "product");
    let (svc, handle) = build(plain("5xx").stale_if_error(60 * S), &origin);
    send(&svc, get("/p")).await;
    advance(11 * S).await;
    origin.answer("/p", 503, &[], "down");
    let stale = send(&svc, get("/p")).await;
    assert_eq!(
        (stale.status, stale.cache(), &stale.body[..]),
        (StatusCode::OK, "stale", &b"product"[..])
    );
    advance(60 * S).await;
    let down = send(&svc, get("/p")).await;
    assert_eq!(
        (down.status, &down.body[..]),
        (StatusCode::SERVICE_UNAVAILABLE, &b"down"[..])
    );
    assert_eq!(handle.snapshot().stale_served.error, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn negative_caching_of_404_has_its_own_ttl() {
    let origin = Origin::default();
    origin.answer("/missing", 404, &[], "no such product");
    let (svc, _) = build(plain("404").negative_ttl(5 * S), &origin);
    send(&svc, get("/missing")).await;
    advance(4 * S).await;
    let hit = send(&svc, get("/missing")).await;
    assert_eq!((hit.status, hit.cache()), (StatusCode::NOT_FOUND, "hit"));
    advance(S).await;
    send(&svc, get("/missing")).await;
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn head_is_cached_apart_and_writes_invalidate_the_uri() {
    let origin = Origin::default();
    let (svc, handle) = build(plain("methods"), &origin);
    send(&svc, get("/p")).await;
    let head = Request::head("/p").body(()).unwrap();
    let head_answer = send(&svc, head).await;
    assert_eq!(head_answer.cache(), "miss");
    assert!(head_answer.body.is_empty());
    let head = Request::head("/p").body(()).unwrap();
    assert_eq!(send(&svc, head).await.cache(), "hit");
    assert_eq!(origin.calls(), 2);
    assert_eq!(handle.snapshot().entries, 2);

    let post = Request::builder()
        .method(Method::POST)
        .uri("/p")
        .body(())
        .unwrap();
    assert_eq!(send(&svc, post).await.cache(), "bypass");
    assert_eq!(
        handle.snapshot().entries,
        0,
        "a successful POST invalidates GET and HEAD"
    );
    assert_eq!(send(&svc, get("/p")).await.cache(), "miss");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn authorized_and_range_requests_bypass_the_cache() {
    let origin = Origin::default();
    let (svc, _) = build(plain("bypass"), &origin);
    for headers in [[("authorization", "Bearer x")], [("range", "bytes=0-1")]] {
        assert_eq!(send(&svc, get_with("/p", &headers)).await.cache(), "bypass");
    }
    assert_eq!(send(&svc, get("/p")).await.cache(), "miss");
    assert_eq!(origin.calls(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_too_large_to_store_is_streamed_whole() {
    // A streamed body of unknown length, over the limit after a few chunks.
    let chunks: Vec<Bytes> = (0..10)
        .map(|i| Bytes::from(format!("chunk{i:02}-").repeat(20)))
        .collect();
    let expected: String = (0..10)
        .map(|i| format!("chunk{i:02}-").repeat(20))
        .collect();
    let layer = CacheLayer::http_builder("large")
        .max_entry_bytes(500)
        .build()
        .unwrap();
    let handle = layer.handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let svc = layer.layer(tower::service_fn(move |_: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let frames = chunks
            .iter()
            .cloned()
            .map(|c| Ok::<_, Infallible>(http_body::Frame::data(c)));
        let body = StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()));
        ready(Ok::<_, Infallible>(Response::new(body)))
    }));
    for _ in 0..2 {
        let response = svc.clone().oneshot(get("/big")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected.as_bytes());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(handle.snapshot().not_stored, vec![("too_large", 2)]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn coalesced_requests_for_other_variants_look_their_own_up() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, c) = (Arc::clone(&gate), Arc::clone(&calls));
    let layer = plain("vary-coalesced").build().unwrap();
    let svc = layer.layer(tower::service_fn(move |request: Request<()>| {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = Arc::clone(&g);
        async move {
            gate.acquire().await.unwrap().forget();
            let encoding = request.headers()["accept-encoding"]
                .to_str()
                .unwrap()
                .to_owned();
            let response = Response::builder()
                .header("vary", "accept-encoding")
                .body(Full::new(Bytes::from(format!("{encoding} from call {n}"))))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    }));
    let send = |encoding: &'static str| {
        tokio::spawn(
            svc.clone()
                .oneshot(get_with("/v", &[("accept-encoding", encoding)])),
        )
    };
    let (first, same, other) = (send("gzip"), send("gzip"), send("br"));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one call for the three misses"
    );
    gate.add_permits(2);
    let text = |r: Response<CacheBody<Full<Bytes>>>| async move {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    assert_eq!(
        text(first.await.unwrap().unwrap()).await,
        "gzip from call 1"
    );
    assert_eq!(text(same.await.unwrap().unwrap()).await, "gzip from call 1");
    assert_eq!(
        text(other.await.unwrap().unwrap()).await,
        "br from call 2",
        "its own variant"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
