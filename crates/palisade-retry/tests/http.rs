//! HTTP retries: idempotency, body replay, Retry-After, rejections.
#![cfg(feature = "http")]

mod support;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use palisade_core::BoxError;
use palisade_core::http::{CIRCUIT_BREAKER_HEADER, RATE_LIMIT_HEADER, StatusClassifier};
use palisade_retry::http::{HttpRetryLayer, RetryBody, error_response};
use palisade_retry::{AttemptTimedOut, Backoff, Jitter, MAX_DURATION, RetryLayer};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

/// What the backend saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    at: Duration,
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    tag: Option<Tag>,
    body: Bytes,
    trailers: Option<HeaderMap>,
    replayed: bool,
}

/// A request extension the backend reports back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tag(&'static str);

/// A backend that reads each request's body whole and answers attempt `n`
/// with `answer(n)`.
struct Backend<F> {
    start: Instant,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<F>,
}

impl<F> Clone for Backend<F> {
    fn clone(&self) -> Self {
        Self {
            start: self.start,
            seen: Arc::clone(&self.seen),
            answer: Arc::clone(&self.answer),
        }
    }
}

fn backend<F>(answer: F) -> (Backend<F>, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(usize) -> Result<Response<String>, BoxError>,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let b = Backend {
        start: Instant::now(),
        seen: Arc::clone(&seen),
        answer: Arc::new(answer),
    };
    (b, seen)
}

fn status(code: u16) -> Result<Response<String>, BoxError> {
    Ok(Response::builder()
        .status(code)
        .body(String::new())
        .unwrap())
}

fn status_with(code: u16, name: HeaderName, value: &str) -> Result<Response<String>, BoxError> {
    Ok(Response::builder()
        .status(code)
        .header(name, value)
        .body(String::new())
        .unwrap())
}

impl<F, B> Service<Request<RetryBody<B>>> for Backend<F>
where
    F: Fn(usize) -> Result<Response<String>, BoxError> + Send + Sync + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<String>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RetryBody<B>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let at = this.start.elapsed();
            let (parts, body) = req.into_parts();
            let replayed = body.is_replay();
            let collected = body.collect().await.map_err(Into::into)?;
            let trailers = collected.trailers().cloned();
            let n = {
                let mut seen = this.seen.lock().unwrap();
                seen.push(Seen {
                    at,
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    tag: parts.extensions.get::<Tag>().cloned(),
                    body: collected.to_bytes(),
                    trailers,
                    replayed,
                });
                seen.len()
            };
            (this.answer)(n)
        })
    }
}

fn builder() -> palisade_retry::RetryBuilder<StatusClassifier, palisade_retry::http::Http> {
    RetryLayer::http_builder("http")
        .max_attempts(3)
        .backoff(Backoff::fixed(MS * 10))
        .jitter(Jitter::None)
        .no_budget()
}

/// Sends `req` once through the default test layer ([`builder`]) over
/// `inner`, and returns the answer.
async fn through<F, B>(inner: Backend<F>, req: Request<B>) -> Response<String>
where
    F: Fn(usize) -> Result<Response<String>, BoxError> + Send + Sync + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    builder()
        .build()
        .unwrap()
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap()
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("http://orders/items/1")
        .body(Empty::new())
        .unwrap()
}

// ===== what is retried =====

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn transient_statuses_and_errors_are_retried() {
    for (first, retried) in [
        (503, true),
        (502, true),
        (504, true),
        (429, true),
        (500, false),
        (404, false),
    ] {
        let (inner, seen) = backend(move |n| if n == 1 { status(first) } else { status(200) });
        let res = through(inner, get()).await;
        let attempts = seen.lock().unwrap().len();
        assert_eq!(attempts, if retried { 2 } else { 1 }, "status {first}");
        assert_eq!(
            res.status(),
            if retried { 200 } else { first },
            "status {first}"
        );
    }
    let (inner, seen) = backend(|n| {
        if n == 1 {
            Err("connection refused".into())
        } else {
            status(200)
        }
    });
    let res = through(inner, get()).await;
    assert_eq!(
        (res.status(), seen.lock().unwrap().len()),
        (StatusCode::OK, 2)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_last_failed_response_is_returned() {
    let (inner, seen) = backend(|_| status(503));
    let res = through(inner, get()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idempotent_methods_are_retried() {
    for method in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ] {
        let (inner, seen) = backend(|_| status(503));
        let req = Request::builder()
            .method(method.clone())
            .uri("/x")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let _ = builder().build().unwrap().layer(inner).oneshot(req).await;
        assert_eq!(seen.lock().unwrap().len(), 3, "{method}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn non_idempotent_methods_need_an_opt_in_and_a_key() {
    let post = |key: Option<&str>| {
        let mut req = Request::post("/orders")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        if let Some(key) = key {
            req.headers_mut()
                .insert("idempotency-key", HeaderValue::from_str(key).unwrap());
        }
        req
    };
    let attempts = |layer: HttpRetryLayer, req: Request<Full<Bytes>>| async move {
        let (inner, seen) = backend(|_| status(503));
        let _ = layer.layer(inner).oneshot(req).await;
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter().all(|s| s.body == "{}"),
            "the body arrives whole every time"
        );
        seen.len()
    };
    // Not opted in: a key alone is not enough.
    assert_eq!(attempts(builder().build().unwrap(), post(None)).await, 1);
    assert_eq!(
        attempts(builder().build().unwrap(), post(Some("k1"))).await,
        1
    );
    // Opted in: only with the key.
    let opted = || builder().retry_non_idempotent(true).build().unwrap();
    assert_eq!(attempts(opted(), post(None)).await, 1);
    assert_eq!(attempts(opted(), post(Some("k1"))).await, 3);
    // PATCH follows the same rule; CONNECT never retries.
    let mut patch = post(Some("k2"));
    *patch.method_mut() = Method::PATCH;
    assert_eq!(attempts(opted(), patch).await, 3);
    let mut connect = post(Some("k3"));
    *connect.method_mut() = Method::CONNECT;
    assert_eq!(attempts(opted(), connect).await, 1);
    // The key's header name is configurable.
    let custom = builder()
        .retry_non_idempotent(true)
        .idempotency_key_header(HeaderName::from_static("x-request-key"))
        .build()
        .unwrap();
    let mut req = post(None);
    req.headers_mut()
        .insert("x-request-key", HeaderValue::from_static("k4"));
    assert_eq!(attempts(custom, req).await, 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn rejections_answered_as_responses_are_not_retried() {
    let (inner, seen) = backend(|_| status_with(503, CIRCUIT_BREAKER_HEADER, "payments"));
    let res = through(inner, get()).await;
    assert_eq!(res.status(), 503);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A rate limiter's 429 below retry is a rejection too, whatever the
    // classifier thinks of 429 (transient() counts it as retryable).
    let (inner, seen) = backend(|_| status_with(429, RATE_LIMIT_HEADER, "api"));
    let res = through(inner, get()).await;
    assert_eq!(res.status(), 429);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

// ===== bodies =====

/// A body of several chunks and trailers with an exact size hint.
struct Chunks {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    hint: Option<u64>,
}

impl Chunks {
    fn new(chunks: &[&'static str], trailers: Option<HeaderMap>) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks: chunks
                .iter()
                .map(|c| Bytes::from_static(c.as_bytes()))
                .collect(),
            trailers,
            hint: Some(len),
        }
    }

    /// Claims at most `upper` bytes, whatever it holds.
    fn lying(mut self, upper: u64) -> Self {
        self.hint = Some(upper);
        self
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        if let Some(upper) = self.hint {
            hint.set_upper(upper);
        }
        hint
    }
}

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-checksum", HeaderValue::from_static("abc123"));
    t
}

/// PUTs `body` to a backend that answers 503 twice, then 201; returns what
/// each of the three attempts carried, after checking each was a replay.
async fn put_until_third_attempt<B>(body: B) -> Vec<Seen>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (inner, seen) = backend(|n| if n < 3 { status(503) } else { status(201) });
    let req = Request::put("/docs/1").body(body).unwrap();
    let res = through(inner, req).await;
    assert_eq!(res.status(), 201);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for attempt in &seen {
        assert!(attempt.replayed);
        assert_eq!(attempt.method, Method::PUT);
    }
    seen
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_buffered_body_arrives_whole_on_every_attempt() {
    let body = Chunks::new(&["hello", " ", "world"], Some(trailers()));
    for attempt in put_until_third_attempt(body).await {
        assert_eq!(attempt.body, "hello world");
        assert_eq!(attempt.trailers.as_ref().unwrap()["x-checksum"], "abc123");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_over_the_limit_is_sent_once_and_whole() {
    let (inner, seen) = backend(|_| status(503));
    let layer = builder().max_body_bytes(8).build().unwrap();
    let big = "x".repeat(100);
    let req = Request::put("/blob")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503, "the failure is returned, not retried");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, big);
    assert!(!seen[0].replayed);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stream_of_unknown_length_is_sent_once_and_whole() {
    let (inner, seen) = backend(|_| status(503));
    let frames =
        ["a", "b", "c"].map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c.as_bytes()))));
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::put("/stream").body(body).unwrap();
    let _ = through(inner, req).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "abc");
}

/// The size hint decides whether buffering is tried; `max_body_bytes` bounds
/// it. A body longer than its hint that still fits is replayed, with a hint
/// that is now exact (linkerd's and Envoy's replay buffers do the same).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_longer_than_its_size_hint_is_replayed_while_it_fits_max_body_bytes() {
    let body = Chunks::new(&["0123", "4567", "89ab", "cdef"], Some(trailers())).lying(8);
    for attempt in put_until_third_attempt(body).await {
        assert_eq!(attempt.body, "0123456789abcdef");
        assert_eq!(attempt.trailers.as_ref().unwrap()["x-checksum"], "abc123");
    }
    // The same at the bound itself: 16 bytes under a limit of 16.
    let (inner, seen) = backend(|n| if n < 2 { status(503) } else { status(200) });
    let layer = builder().max_body_bytes(16).build().unwrap();
    let body = Chunks::new(&["0123", "4567", "89ab", "cdef"], None).lying(4);
    let req = Request::put("/liar").body(body).unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for attempt in seen.iter() {
        assert_eq!(attempt.body, "0123456789abcdef");
        assert!(attempt.replayed);
    }
}

/// Longer than its size hint *and* than `max_body_bytes`: nothing more is
/// buffered, and what was read goes out with the rest of the stream, once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_that_outgrows_its_size_hint_is_sent_once_and_whole() {
    let (inner, seen) = backend(|_| status(503));
    let layer = builder().max_body_bytes(8).build().unwrap();
    let body = Chunks::new(&["0123", "4567", "89ab", "cdef"], Some(trailers())).lying(8);
    let req = Request::put("/liar").body(body).unwrap();
    let _ = layer.layer(inner).oneshot(req).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "0123456789abcdef");
    assert_eq!(seen[0].trailers.as_ref().unwrap()["x-checksum"], "abc123");
}

#[derive(Debug)]
struct Broken;

impl Body for Broken {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(Some(Err("client went away".into())))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(10)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_error_while_buffering_fails_the_call_before_any_attempt() {
    let (inner, seen) = backend(|_| status(200));
    let req = Request::put("/broken").body(Broken).unwrap();
    let err = builder()
        .build()
        .unwrap()
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "client went away");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_in_memory_is_read_at_call_time_and_replayed_on_every_attempt() {
    let body = Full::new(Bytes::from_static(b"payload"));
    for attempt in put_until_third_attempt(body).await {
        assert_eq!(attempt.body, "payload");
        assert!(attempt.trailers.is_none());
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_single_chunk_over_the_limit_under_a_lying_hint_is_sent_once_and_whole() {
    let (inner, seen) = backend(|_| status(503));
    let layer = builder().max_body_bytes(8).build().unwrap();
    let body = Chunks::new(&["0123456789abcdef"], None).lying(8);
    let req = Request::put("/liar").body(body).unwrap();
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503, "the failure is returned, not retried");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "0123456789abcdef");
    assert!(!seen[0].replayed);
}

/// A body of known length whose bytes arrive later, through a channel (as a
/// request body still on the wire).
struct Later {
    rx: tokio::sync::oneshot::Receiver<Bytes>,
    len: u64,
    done: bool,
}

impl Body for Later {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let bytes = std::task::ready!(Pin::new(&mut self.rx).poll(cx))?;
        self.done = true;
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_body_not_ready_at_call_time_is_buffered_when_it_arrives() {
    let (inner, seen) = backend(|n| if n < 2 { status(502) } else { status(200) });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = Request::put("/docs/3")
        .body(Later {
            rx,
            len: 5,
            done: false,
        })
        .unwrap();
    let start = Instant::now();
    let call = builder().build().unwrap().layer(inner).oneshot(req);
    tokio::spawn(async move {
        tokio::time::sleep(MS * 30).await;
        tx.send(Bytes::from_static(b"later")).unwrap();
    });
    let res = call.await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].at, MS * 30, "the first attempt waits for the body");
    assert_eq!(seen[1].at, MS * 40, "then one backoff of 10 ms");
    for attempt in seen.iter() {
        assert_eq!(attempt.body, "later");
        assert!(attempt.replayed);
    }
    assert_eq!(start.elapsed(), MS * 40);
}

/// A request whose every head field differs from `Request::new`'s defaults.
fn full_head<B>(method: Method, body: B) -> Request<B> {
    Request::builder()
        .method(method)
        .uri("https://orders.internal:8443/items/7?fields=price")
        .version(Version::HTTP_2)
        .header("x-request-id", "r-42")
        .extension(Tag("kept"))
        .body(body)
        .unwrap()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_attempt_carries_the_whole_head() {
    async fn attempts<B>(req: Request<B>) -> Vec<Seen>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (inner, seen) = backend(|n| if n < 3 { status(503) } else { status(200) });
        assert_eq!(through(inner, req).await.status(), 200);
        seen.lock().unwrap().clone()
    }
    // No body; a body in memory (read at `call` time); a body buffered
    // before the first attempt. The third attempt is the last, sent from
    // the kept copy itself rather than a clone of it.
    let cases = [
        (
            "empty",
            attempts(full_head(Method::GET, Empty::new())).await,
        ),
        (
            "in memory",
            attempts(full_head(Method::PUT, Full::new(Bytes::from_static(b"x")))).await,
        ),
        (
            "buffered",
            attempts(full_head(Method::PUT, Chunks::new(&["x"], None))).await,
        ),
    ];
    for (case, seen) in cases {
        assert_eq!(seen.len(), 3, "{case}");
        for (i, attempt) in seen.iter().enumerate() {
            let at = format!("{case}, attempt {}", i + 1);
            assert_eq!(
                attempt.uri, "https://orders.internal:8443/items/7?fields=price",
                "{at}"
            );
            assert_eq!(attempt.version, Version::HTTP_2, "{at}");
            assert_eq!(attempt.headers["x-request-id"], "r-42", "{at}");
            assert_eq!(attempt.tag, Some(Tag("kept")), "{at}");
            assert!(attempt.replayed, "{at}");
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_attempt_carries_its_number_when_asked() {
    let (inner, seen) = backend(|n| if n < 3 { status(502) } else { status(200) });
    let layer = builder()
        .attempt_header(HeaderName::from_static("x-attempt"))
        .build()
        .unwrap();
    let _ = layer.layer(inner).oneshot(get()).await.unwrap();
    let numbers: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.headers["x-attempt"].clone())
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    // Off by default.
    let (inner, seen) = backend(|_| status(200));
    let _ = through(inner, get()).await;
    assert!(seen.lock().unwrap()[0].headers.get("x-attempt").is_none());
}

// ===== Retry-After =====

async fn second_attempt_after(
    layer: HttpRetryLayer,
    first: Result<Response<String>, BoxError>,
) -> (usize, Option<Duration>) {
    let first = Mutex::new(Some(first));
    let (inner, seen) = backend(move |n| {
        if n == 1 {
            first.lock().unwrap().take().unwrap()
        } else {
            status(200)
        }
    });
    let _ = layer.layer(inner).oneshot(get()).await;
    let seen = seen.lock().unwrap();
    (seen.len(), seen.get(1).map(|s| s.at - seen[0].at))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_after_in_seconds_replaces_the_backoff() {
    let res = status_with(429, RETRY_AFTER, "2");
    assert_eq!(
        second_attempt_after(builder().build().unwrap(), res).await,
        (2, Some(MS * 2000))
    );
    let res = status_with(503, RETRY_AFTER, "1");
    assert_eq!(
        second_attempt_after(builder().build().unwrap(), res).await,
        (2, Some(MS * 1000))
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_after_as_an_http_date_replaces_the_backoff() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let res = status_with(503, RETRY_AFTER, &at);
    let (attempts, gap) = second_attempt_after(builder().build().unwrap(), res).await;
    assert_eq!(attempts, 2);
    // An HTTP-date has whole seconds: the wait is in (2 s, 3 s].
    let gap = gap.unwrap();
    assert!(gap > MS * 1900 && gap <= MS * 3000, "{gap:?}");
}

/// With the wall clock following tokio's paused clock, an HTTP-date is
/// exact: no tolerance for the system clock's drift from tokio's.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_after_as_an_http_date_is_exact_on_an_injected_wall_clock() {
    // A whole second: an HTTP-date has no fraction.
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let start = Instant::now();
    let clock = move || epoch + start.elapsed();
    tokio::time::advance(MS * 250).await;
    // The 503 is read 250 ms after the epoch; it asks for the epoch + 3 s.
    let at = httpdate::fmt_http_date(epoch + Duration::from_secs(3));
    let res = status_with(503, RETRY_AFTER, &at);
    let layer = builder().wall_clock(clock).build().unwrap();
    assert_eq!(second_attempt_after(layer, res).await, (2, Some(MS * 2750)));
    // Past dates retry at once.
    let res = status_with(503, RETRY_AFTER, &httpdate::fmt_http_date(epoch));
    let layer = builder().wall_clock(clock).build().unwrap();
    assert_eq!(
        second_attempt_after(layer, res).await,
        (2, Some(Duration::ZERO))
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_malformed_retry_after_falls_back_to_the_backoff() {
    for bad in ["soon", "-3", "1.5", "", "Thu, 99 Foo 2015 07:28:00 GMT"] {
        let res = status_with(503, RETRY_AFTER, bad);
        assert_eq!(
            second_attempt_after(builder().build().unwrap(), res).await,
            (2, Some(MS * 10)),
            "{bad:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_after_only_counts_on_429_and_503() {
    let layer = builder()
        .classifier(StatusClassifier::server_errors())
        .build()
        .unwrap();
    let res = status_with(500, RETRY_AFTER, "5");
    assert_eq!(second_attempt_after(layer, res).await, (2, Some(MS * 10)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_retry_after_past_the_deadline_or_the_maximum_returns_the_response() {
    let layer = builder().deadline(Duration::from_secs(1)).build().unwrap();
    let res = status_with(503, RETRY_AFTER, "2");
    let start = Instant::now();
    assert_eq!(second_attempt_after(layer, res).await, (1, None));
    assert_eq!(start.elapsed(), Duration::ZERO, "returned at once");

    let layer = builder()
        .max_retry_after(Duration::from_secs(5))
        .build()
        .unwrap();
    let res = status_with(429, RETRY_AFTER, "60");
    assert_eq!(second_attempt_after(layer, res).await, (1, None));

    let layer = builder().honor_retry_after(false).build().unwrap();
    let res = status_with(429, RETRY_AFTER, "60");
    assert_eq!(second_attempt_after(layer, res).await, (2, Some(MS * 10)));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_retry_after_is_bounded_and_a_huge_retry_after_returns_the_response() {
    // Once accepted: a Retry-After past the clock's range was retried at once.
    let err = builder()
        .max_retry_after(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_retry_after", "{err}");
    assert!(err.to_string().contains("at most one year"), "{err}");
    let over = MAX_DURATION + Duration::from_nanos(1);
    assert_eq!(
        builder().max_retry_after(over).build().unwrap_err().field(),
        "max_retry_after"
    );

    // The largest accepted maximum: a Retry-After beyond it returns the
    // response at once, one attempt.
    for huge in [
        u64::MAX.to_string(),
        (MAX_DURATION.as_secs() + 1).to_string(),
    ] {
        let layer = builder().max_retry_after(MAX_DURATION).build().unwrap();
        let res = status_with(503, RETRY_AFTER, &huge);
        let start = Instant::now();
        assert_eq!(second_attempt_after(layer, res).await, (1, None), "{huge}");
        assert_eq!(start.elapsed(), Duration::ZERO, "returned at once");
    }
    // A year exactly is waited out.
    let layer = builder().max_retry_after(MAX_DURATION).build().unwrap();
    let res = status_with(503, RETRY_AFTER, &MAX_DURATION.as_secs().to_string());
    assert_eq!(
        second_attempt_after(layer, res).await,
        (2, Some(MAX_DURATION))
    );
}

// ===== errors as responses =====

#[test]
fn layer_errors_map_to_problem_responses() {
    let err: BoxError = AttemptTimedOut::new(3, MS * 250).into();
    let res: Response<String> = error_response(&*err).unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(res.body().contains("attempt 3 timed out after 250ms"));
    let err: BoxError =
        palisade_core::CircuitOpen::new("orders", Some(Duration::from_secs(2))).into();
    let res: Response<String> = error_response(&*err).unwrap();
    assert_eq!(
        (res.status().as_u16(), &res.headers()[RETRY_AFTER]),
        (503, &HeaderValue::from_static("2"))
    );
    let err: BoxError = "connection reset".into();
    assert!(error_response::<String>(&*err).is_none());
}
