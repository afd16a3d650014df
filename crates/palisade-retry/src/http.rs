//! HTTP retries (feature `http`): idempotency rules, replayable request
//! bodies, `Retry-After`, and 504 problem responses for the layer's errors.
//!
//! Build the layer with [`RetryLayer::http_builder`]. It accepts
//! `http::Request<B>` for any body `B` that is `Unpin` and whose data is a
//! [`Buf`], and hands the inner service `http::Request<RetryBody<B>>`.
//!
//! # What is retried
//!
//! | request | retried? |
//! |---|---|
//! | GET, HEAD, OPTIONS, PUT, DELETE, TRACE | yes |
//! | POST, PATCH | only with [`retry_non_idempotent(true)`](RetryBuilder::retry_non_idempotent) *and* the [idempotency-key header](RetryBuilder::idempotency_key_header) |
//! | CONNECT and other methods | no |
//! | body empty, or whose size hint's upper bound is at most [`max_body_bytes`](RetryBuilder::max_body_bytes) | buffered, then replayed on each attempt, as long as it really is at most `max_body_bytes` (see below) |
//! | body whose size hint allows more, or of unknown length (a chunked stream) | sent once, whole, not retried; a `debug` event says why |
//!
//! A request that is not retried still goes through the layer once, whole,
//! and counts towards the budget like any other.
//!
//! Responses are classified by [`StatusClassifier::transient`] by default:
//! 429, 502, 503 and 504 are retried, and so is every `Err` (transport
//! errors, [`AttemptTimedOut`]) except rejections. A 503 carrying
//! `x-palisade-circuit-breaker` or `x-palisade-bulkhead` is a rejection
//! answered on a breaker's or bulkhead's behalf, and is never retried.
//!
//! # Request bodies
//!
//! A body that fits is read once at `call` time: one already in memory (a
//! `Full`, a body the server has received whole) ends there, and the first
//! attempt starts at once. Any other is collected inside the response future
//! (no boxing, no task) before the first attempt. Either way it is then
//! replayed as one [`Bytes`] frame (and its trailers) on every attempt: the
//! inner service sees a body whose [`size_hint`](Body::size_hint) is exact.
//!
//! The size hint only decides whether buffering is tried; the bound is
//! `max_body_bytes`, counted on the bytes as they come. A body whose hint
//! promised less than it holds is still buffered and replayed if it fits
//! `max_body_bytes` (the replay's hint is then its true length), as
//! linkerd's and Envoy's replay buffers do: the memory held never exceeds
//! the bound the layer was given (plus the one frame that crosses it), and a
//! small body keeps its retries. A body that turns out longer than
//! `max_body_bytes` is not lost and not buffered further: the bytes read so
//! far and the rest of the stream are sent as one body, once, and a `debug`
//! event says so.
//!
//! # `Retry-After`
//!
//! On a 429 or 503, a `Retry-After` header (delta-seconds or an HTTP-date)
//! replaces the backoff for the next delay, without jitter. If it asks for
//! more than [`max_retry_after`](RetryBuilder::max_retry_after) (default
//! 10 s), or would run past the deadline, the response is returned instead. A
//! malformed value is ignored: the backoff applies.

use std::error::Error;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use palisade_core::BoxError;
use palisade_core::http::{
    BULKHEAD_HEADER, CIRCUIT_BREAKER_HEADER, Problem, RATE_LIMIT_HEADER, StatusClassifier,
    parse_retry_after, rejection_response,
};
use pin_project_lite::pin_project;

use crate::builder::RetryBuilder;
use crate::error::{AttemptTimedOut, DeadlineExceeded};
use crate::kind::{Inspect, Replay, Sealed, ServerDelay, Start};
use crate::layer::RetryLayer;
use crate::settings::{RetrySettings, header_name};

/// The default header that marks a POST or PATCH as safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A [`RetryLayer`] for `http::Request<B>`.
pub type HttpRetryLayer<C = StatusClassifier> = RetryLayer<C, Http>;

/// The request kind for `http::Request<B>`: idempotency rules, body
/// buffering, `Retry-After`. Configured through [`RetryBuilder`]; its
/// settings are [`RetrySettings`]' HTTP fields.
#[derive(Clone, Debug)]
pub struct Http {
    name: Arc<str>,
    max_body_bytes: usize,
    non_idempotent: bool,
    idempotency_key: HeaderName,
    attempt_header: Option<HeaderName>,
    honor_retry_after: bool,
    max_retry_after: Duration,
    wall_clock: WallClock,
}

impl Sealed for Http {
    fn configure(
        &mut self,
        name: &Arc<str>,
        settings: &RetrySettings,
    ) -> Result<(), palisade_core::ConfigError> {
        self.name = Arc::clone(name);
        self.max_body_bytes = settings.max_body_bytes;
        self.non_idempotent = settings.retry_non_idempotent;
        self.idempotency_key =
            header_name("idempotency_key_header", &settings.idempotency_key_header)?;
        self.attempt_header = match &settings.attempt_header {
            Some(name) => Some(header_name("attempt_header", name)?),
            None => None,
        };
        self.honor_retry_after = settings.honor_retry_after;
        self.max_retry_after = settings.max_retry_after;
        Ok(())
    }
}

/// Where an HTTP retry layer reads the wall-clock time an HTTP-date
/// `Retry-After` is measured against: the system clock by default, or a
/// function given to [`RetryBuilder::wall_clock`]. The one place the layer
/// reads the wall clock; every other wait is on tokio's clock.
#[derive(Clone, Default)]
struct WallClock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl WallClock {
    /// The time now, by this clock.
    fn now(&self) -> SystemTime {
        match &self.0 {
            None => SystemTime::now(),
            Some(now) => now(),
        }
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "WallClock(custom)"
        } else {
            "WallClock(system)"
        })
    }
}

impl RetryLayer {
    /// A builder for `http::Request<B>`: idempotent methods only, bodies
    /// buffered up to 64 KiB, 429/502/503/504 and errors retried,
    /// `Retry-After` honoured up to 10 s. See [`RetryBuilder`] and the
    /// [`http`](crate::http) module.
    pub fn http_builder(name: impl Into<Arc<str>>) -> RetryBuilder<StatusClassifier, Http> {
        let name = name.into();
        let defaults = RetrySettings::default();
        let kind = Http {
            name: Arc::clone(&name),
            max_body_bytes: defaults.max_body_bytes,
            non_idempotent: defaults.retry_non_idempotent,
            idempotency_key: IDEMPOTENCY_KEY,
            attempt_header: None,
            honor_retry_after: defaults.honor_retry_after,
            max_retry_after: defaults.max_retry_after,
            wall_clock: WallClock::default(),
        };
        RetryBuilder::new(name, StatusClassifier::transient(), kind)
    }
}

/// Settings for HTTP requests.
impl<C> RetryBuilder<C, Http> {
    /// The largest request body buffered for replay (default 64 KiB). A body
    /// whose size hint allows more is sent once and not retried, and so is
    /// one that turns out longer than this whatever its size hint said.
    pub const fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_body_bytes = bytes;
        self
    }

    /// Also retries POST and PATCH requests, but only those carrying the
    /// idempotency-key header (default `false`).
    pub const fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.settings.retry_non_idempotent = retry;
        self
    }

    /// The header that makes a POST or PATCH retryable when
    /// [`retry_non_idempotent`](Self::retry_non_idempotent) is on (default
    /// `idempotency-key`): a [`HeaderName`] or its text, checked by `build`.
    pub fn idempotency_key_header(mut self, name: impl AsRef<str>) -> Self {
        name.as_ref()
            .clone_into(&mut self.settings.idempotency_key_header);
        self
    }

    /// Sets this header to the attempt number (`1`, `2`, ...) on every
    /// attempt (default: no header), as Envoy's `x-envoy-attempt-count`: a
    /// [`HeaderName`] or its text, checked by `build`.
    pub fn attempt_header(mut self, name: impl AsRef<str>) -> Self {
        self.settings.attempt_header = Some(name.as_ref().to_owned());
        self
    }

    /// Whether a 429 or 503's `Retry-After` replaces the backoff (default
    /// `true`).
    pub const fn honor_retry_after(mut self, honor: bool) -> Self {
        self.settings.honor_retry_after = honor;
        self
    }

    /// The longest `Retry-After` waited for (default 10 s; at most
    /// [`MAX_DURATION`](crate::MAX_DURATION)); a longer one returns the
    /// response at once.
    pub const fn max_retry_after(mut self, max: Duration) -> Self {
        self.settings.max_retry_after = max;
        self
    }

    /// Reads the wall-clock time from `now` instead of the system clock
    /// (default [`SystemTime::now`]). Only an HTTP-date `Retry-After` is
    /// measured against the wall clock; every other wait is on tokio's
    /// clock. Not a setting: each layer built under one registered name
    /// keeps its own.
    ///
    /// A clock that follows tokio's makes an HTTP-date exact in a test on
    /// tokio's paused clock (`start_paused = true`, `time::advance`):
    ///
    /// ```
    /// use palisade_retry::RetryLayer;
    /// use std::time::{Duration, SystemTime};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// // A whole second (an HTTP-date has no fraction), then tokio's time.
    /// let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let start = tokio::time::Instant::now();
    /// let layer = RetryLayer::http_builder("pricing")
    ///     .wall_clock(move || epoch + start.elapsed())
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// # });
    /// ```
    pub fn wall_clock<F>(mut self, now: F) -> Self
    where
        F: Fn() -> SystemTime + Send + Sync + 'static,
    {
        self.kind.wall_clock = WallClock(Some(Arc::new(now)));
        self
    }
}

impl Http {
    /// The replay rules on their own, for another layer that sends a
    /// request more than once (hedging): idempotent methods only, bodies up to
    /// 64 KiB buffered and replayed, exactly as this layer does. `name` names
    /// the layer in the `debug` events that say why a request is sent once.
    pub fn replay_rules(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            max_body_bytes: 64 * 1024,
            non_idempotent: false,
            idempotency_key: IDEMPOTENCY_KEY,
            attempt_header: None,
            honor_retry_after: false,
            max_retry_after: Duration::ZERO,
            wall_clock: WallClock::default(),
        }
    }

    /// The largest body buffered for replay (default 64 KiB), as
    /// [`RetryBuilder::max_body_bytes`].
    #[must_use]
    pub const fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Also replays POST and PATCH carrying the idempotency-key header, as
    /// [`RetryBuilder::retry_non_idempotent`].
    #[must_use]
    pub const fn with_non_idempotent(mut self, replay: bool) -> Self {
        self.non_idempotent = replay;
        self
    }

    /// The idempotency-key header, as
    /// [`RetryBuilder::idempotency_key_header`].
    #[must_use]
    pub fn with_idempotency_key_header(mut self, name: HeaderName) -> Self {
        self.idempotency_key = name;
        self
    }

    fn replayable_method<B>(&self, req: &Request<B>) -> bool {
        match *req.method() {
            Method::GET
            | Method::HEAD
            | Method::OPTIONS
            | Method::PUT
            | Method::DELETE
            | Method::TRACE => true,
            Method::POST | Method::PATCH => {
                self.non_idempotent && req.headers().contains_key(&self.idempotency_key)
            }
            _ => false,
        }
    }

    #[cold]
    #[inline(never)]
    fn not_idempotent(&self, method: &Method) {
        tracing::debug!(
            name = %self.name,
            %method,
            "request not retryable: method is not idempotent (or has no idempotency key)"
        );
    }

    #[cold]
    #[inline(never)]
    fn not_buffered(&self, size_hint: Option<u64>) {
        tracing::debug!(
            name = %self.name,
            ?size_hint,
            max_body_bytes = self.max_body_bytes,
            "request not retryable: body too large or of unknown length to buffer; sent once"
        );
    }

    /// A body whose size hint said it fits turned out longer than
    /// `max_body_bytes`: it is streamed on, once.
    #[cold]
    #[inline(never)]
    fn outgrew_the_limit(&self, read: usize) {
        tracing::debug!(
            name = %self.name,
            read,
            max_body_bytes = self.max_body_bytes,
            "request not retryable: body longer than max_body_bytes despite its size hint; sent once"
        );
    }

    #[inline]
    fn mark_attempt(&self, headers: &mut HeaderMap, attempt: u32) {
        if let Some(name) = &self.attempt_header {
            headers.insert(name.clone(), HeaderValue::from(attempt));
        }
    }
}

/// The copy of a request kept for replay: its head, its body and trailers.
#[derive(Debug)]
pub struct Held {
    head: Parts,
    body: Bytes,
    trailers: Option<Box<HeaderMap>>,
}

impl Held {
    /// A request to send: a copy of the kept one.
    #[inline(always)]
    fn copy<B>(&self) -> Request<RetryBody<B>> {
        Request::from_parts(
            self.head.clone(),
            RetryBody::replay_boxed(self.body.clone(), self.trailers.clone()),
        )
    }
}

/// Keeps `req`'s head (its body has been read whole: `body`) in `held`, and
/// returns a copy of the request to send.
///
/// The original is kept and the copy is sent, not the other way round: the
/// head is then moved once, into its place in the response future, and the
/// copy is built where it is handed on. (`always`: with `#[inline]` alone
/// the compiler left it out of line, and returning the copy moved it again.)
#[inline(always)]
fn keep<B, C>(held: &mut Option<Held>, req: Request<B>, body: Bytes) -> Request<RetryBody<C>> {
    held.insert(Held {
        head: req.into_parts().0,
        body,
        trailers: None,
    })
    .copy()
}

impl<B> Replay<Request<B>> for Http
where
    B: Body + Unpin,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    type Sent = Request<RetryBody<B>>;
    type Held = Held;
    type Prepared = Collected<B>;
    type Prepare = Collect<B>;

    #[inline]
    fn start<F>(
        &self,
        mut req: Request<B>,
        held: &mut Option<Held>,
        replay: bool,
        send: impl FnOnce(Self::Sent) -> F,
    ) -> Start<F, Collect<B>> {
        self.mark_attempt(req.headers_mut(), 1);
        if !replay {
            return Start::Sent(send(req.map(RetryBody::new)));
        }
        if !self.replayable_method(&req) {
            self.not_idempotent(req.method());
            return Start::Sent(send(req.map(RetryBody::new)));
        }
        if req.body().is_end_stream() {
            return Start::Sent(send(keep(held, req, Bytes::new())));
        }
        let limit = u64::try_from(self.max_body_bytes).unwrap_or(u64::MAX);
        match req.body().size_hint().upper() {
            Some(upper) if upper <= limit => {
                // Most bodies that fit are in memory already (a `Full`, a
                // body the server has received whole): one read now often
                // ends the body, and the first attempt starts without a
                // buffering step. A body that is not ready registers a no-op
                // waker here and the real one when the buffering step polls
                // it again.
                let read =
                    Pin::new(req.body_mut()).poll_frame(&mut Context::from_waker(Waker::noop()));
                let ended = req.body().is_end_stream();
                let (whole, first) = match read {
                    Poll::Ready(None) => (Some(Bytes::new()), None),
                    Poll::Ready(Some(Ok(frame))) if ended && frame.is_data() => {
                        match frame.into_data() {
                            Ok(mut data) if data.remaining() <= self.max_body_bytes => {
                                (Some(data.copy_to_bytes(data.remaining())), None)
                            }
                            Ok(data) => (None, Some(Some(Ok(Frame::data(data))))),
                            Err(frame) => (None, Some(Some(Ok(frame)))),
                        }
                    }
                    Poll::Ready(frame) => (None, Some(frame)),
                    Poll::Pending => (None, None),
                };
                if let Some(body) = whole {
                    return Start::Sent(send(keep(held, req, body)));
                }
                // The head waits in the kept copy while the body is read.
                let (parts, body) = req.into_parts();
                *held = Some(Held {
                    head: parts,
                    body: Bytes::new(),
                    trailers: None,
                });
                let mut collect = Collect {
                    body: Some(body),
                    first: None,
                    collected: BytesMut::new(),
                    trailers: None,
                    limit: self.max_body_bytes,
                    early: None,
                };
                if let Some(frame) = first {
                    collect.early = collect.accept(frame);
                }
                Start::Prepare(collect)
            }
            upper => {
                self.not_buffered(upper);
                Start::Sent(send(req.map(RetryBody::new)))
            }
        }
    }

    fn prepared(&self, held: &mut Option<Held>, prepared: Collected<B>) -> Option<Self::Sent> {
        match prepared {
            Collected::Whole { body, trailers } => {
                let kept = held.as_mut()?;
                kept.body = body;
                kept.trailers = trailers;
                Some(kept.copy())
            }
            Collected::Overflow { prefix, rest } => {
                self.outgrew_the_limit(prefix.len());
                let head = held.take()?.head;
                Some(Request::from_parts(
                    head,
                    RetryBody::with_prefix(prefix, rest),
                ))
            }
        }
    }

    #[inline]
    fn carried_deadline(&self, req: &Request<B>) -> Option<tokio::time::Instant> {
        palisade_core::Deadline::of(req).map(|d| d.instant())
    }

    fn resend(&self, held: &mut Option<Held>, attempt: u32, last: bool) -> Option<Self::Sent> {
        let mut req = if last {
            let Held {
                head,
                body,
                trailers,
            } = held.take()?;
            Request::from_parts(head, RetryBody::replay_boxed(body, trailers))
        } else {
            held.as_ref()?.copy()
        };
        self.mark_attempt(req.headers_mut(), attempt);
        Some(req)
    }
}

impl<B> Inspect<Response<B>> for Http {
    fn retry_after(&self, res: &Response<B>) -> Option<ServerDelay> {
        let status = res.status();
        if !self.honor_retry_after
            || (status != StatusCode::TOO_MANY_REQUESTS
                && status != StatusCode::SERVICE_UNAVAILABLE)
        {
            return None;
        }
        let value = res.headers().get(RETRY_AFTER)?;
        let Some(delay) = parse_retry_after(value, self.wall_clock.now()) else {
            tracing::debug!(name = %self.name, ?value, "malformed Retry-After ignored; using the backoff");
            return None;
        };
        if delay > self.max_retry_after {
            Some(ServerDelay::TooLong(delay))
        } else {
            Some(ServerDelay::Wait(delay))
        }
    }

    #[inline]
    fn is_rejection_response(res: &Response<B>) -> bool {
        match res.status() {
            StatusCode::SERVICE_UNAVAILABLE => {
                res.headers().contains_key(CIRCUIT_BREAKER_HEADER)
                    || res.headers().contains_key(BULKHEAD_HEADER)
            }
            StatusCode::TOO_MANY_REQUESTS => res.headers().contains_key(RATE_LIMIT_HEADER),
            _ => false,
        }
    }
}

// ===== Collect =====

/// Buffers a request body before the first attempt. Part of
/// [`ResponseFuture`](crate::future::ResponseFuture); not used on its own.
#[derive(Debug)]
pub struct Collect<B> {
    body: Option<B>,
    first: Option<Bytes>,
    collected: BytesMut,
    trailers: Option<Box<HeaderMap>>,
    limit: usize,
    /// How the read made at `call` time ended buffering, if it did.
    early: Option<Ended>,
}

/// How buffering ended; the bytes stay in the [`Collect`] until taken.
#[derive(Debug)]
enum Ended {
    /// The body ended within the limit.
    Whole,
    /// The body outgrew the limit.
    Overflow,
    /// Reading the body failed.
    Failed(BoxError),
}

/// What buffering a body yields: the whole body, or (when it outgrew
/// `max_body_bytes`) what was read and the rest of the stream.
#[derive(Debug)]
pub enum Collected<B> {
    /// The whole body and its trailers, ready to replay.
    Whole {
        /// The body's bytes.
        body: Bytes,
        /// Its trailers, if it had any.
        trailers: Option<Box<HeaderMap>>,
    },
    /// The body was longer than `max_body_bytes` (whatever its size hint
    /// said): `prefix` was read, `rest` is still to stream. Sent once, not
    /// retried.
    Overflow {
        /// The bytes read so far.
        prefix: Bytes,
        /// The rest of the body.
        rest: B,
    },
}

impl<B> Collect<B> {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.collected.len()
    }

    fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if self.first.is_none() && self.collected.is_empty() {
            // One chunk (the usual case) is kept as is, without a copy.
            self.first = Some(chunk);
            return;
        }
        if let Some(first) = self.first.take() {
            self.collected.extend_from_slice(&first);
        }
        self.collected.extend_from_slice(&chunk);
    }

    fn take_bytes(&mut self) -> Bytes {
        match self.first.take() {
            Some(first) => first,
            None => std::mem::take(&mut self.collected).freeze(),
        }
    }
}

impl<B> Collect<B>
where
    B: Body + Unpin,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    /// Takes in one frame read from the body; `Some` once buffering is over.
    fn accept(&mut self, frame: Option<Result<Frame<B::Data>, B::Error>>) -> Option<Ended> {
        let mut ended = frame.is_none();
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    let chunk = data.copy_to_bytes(data.remaining());
                    let overflow = self.len().saturating_add(chunk.len()) > self.limit;
                    self.push(chunk);
                    if overflow {
                        return Some(Ended::Overflow);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        match &mut self.trailers {
                            Some(existing) => existing.extend(trailers),
                            None => self.trailers = Some(Box::new(trailers)),
                        }
                    }
                }
            },
            Some(Err(error)) => return Some(Ended::Failed(error.into())),
            None => {}
        }
        ended = ended || self.body.as_ref().is_none_or(Body::is_end_stream);
        ended.then_some(Ended::Whole)
    }

    /// What buffering yields, once it ended.
    fn finish(&mut self, ended: Ended) -> Result<Collected<B>, BoxError> {
        let body = self.take_bytes();
        match (ended, self.body.take()) {
            (Ended::Failed(error), _) => Err(error),
            // The body is longer than `max_body_bytes`: send what was read
            // and the rest of the stream, once.
            (Ended::Overflow, Some(rest)) => Ok(Collected::Overflow { prefix: body, rest }),
            (Ended::Whole | Ended::Overflow, _) => Ok(Collected::Whole {
                body,
                trailers: self.trailers.take(),
            }),
        }
    }
}

impl<B> Future for Collect<B>
where
    B: Body + Unpin,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    type Output = Result<Collected<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(ended) = this.early.take() {
            return Poll::Ready(this.finish(ended));
        }
        loop {
            let Some(body) = this.body.as_mut() else {
                panic!("retry body buffering polled after completion");
            };
            let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
            if let Some(ended) = this.accept(frame) {
                return Poll::Ready(this.finish(ended));
            }
        }
    }
}

// ===== RetryBody =====

pin_project! {
    /// The request body the inner service receives from an HTTP
    /// [`RetryLayer`]: either bytes replayed on every attempt, or the
    /// original body streamed through once.
    ///
    /// Its data frames are [`Bytes`] (the original body's are converted with
    /// [`Buf::copy_to_bytes`], free for `Bytes`); its error is the original
    /// body's. Hand it to a hyper client, or wrap it in
    /// `axum::body::Body::new` for an axum router.
    pub struct RetryBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Replay { data: Option<Bytes>, trailers: Option<Box<HeaderMap>> },
        Stream { prefix: Option<Bytes>, #[pin] body: B },
    }
}

impl<B> RetryBody<B> {
    /// The original body, streamed through once.
    pub const fn new(body: B) -> Self {
        Self {
            inner: Inner::Stream { prefix: None, body },
        }
    }

    /// `data` (then `trailers`), as a replayed attempt sends it.
    #[must_use]
    pub fn replay(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self::replay_boxed(data, trailers.map(Box::new))
    }

    fn replay_boxed(data: Bytes, trailers: Option<Box<HeaderMap>>) -> Self {
        Self {
            inner: Inner::Replay {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    fn with_prefix(prefix: Bytes, body: B) -> Self {
        Self {
            inner: Inner::Stream {
                prefix: (!prefix.is_empty()).then_some(prefix),
                body,
            },
        }
    }

    /// `true` if this body is a replayable copy, `false` if it streams the
    /// original body (a request that is not retried).
    #[must_use]
    pub const fn is_replay(&self) -> bool {
        matches!(self.inner, Inner::Replay { .. })
    }
}

impl<B> std::fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Replay { data, trailers } => f
                .debug_struct("RetryBody::Replay")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .field("trailers", &trailers.is_some())
                .finish(),
            Inner::Stream { prefix, .. } => f
                .debug_struct("RetryBody::Stream")
                .field("prefix", &prefix.as_ref().map_or(0, Bytes::len))
                .finish_non_exhaustive(),
        }
    }
}

impl<B> Body for RetryBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Replay { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
            InnerProj::Stream { prefix, body } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                let frame = ready!(body.poll_frame(cx));
                Poll::Ready(frame.map(|result| {
                    result.map(|frame| {
                        frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                    })
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Replay { data, trailers } => data.is_none() && trailers.is_none(),
            Inner::Stream { prefix, body } => prefix.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Replay { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Stream { prefix, body } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(extra));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}

// ===== errors as responses =====

/// The response for an error the retry layer returned, for axum's
/// `HandleErrorLayer`: `504 Gateway Timeout` problem+json for
/// [`DeadlineExceeded`] and [`AttemptTimedOut`], `503` with `Retry-After` for
/// a rejection (through [`rejection_response`]); `None` for anything else
/// (the inner service's own errors, which the caller maps).
///
/// ```
/// use palisade_core::BoxError;
/// use palisade_retry::{DeadlineExceeded, http::error_response};
/// use std::time::Duration;
///
/// let err: BoxError = DeadlineExceeded::new(2, Duration::from_secs(1)).into();
/// let res: http::Response<String> = error_response(&*err).expect("a retry error");
/// assert_eq!(res.status(), 504);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[must_use]
pub fn error_response<B: From<String>>(error: &(dyn Error + 'static)) -> Option<Response<B>> {
    rejection_response(error).or_else(|| to_problem(error).map(Problem::into_response))
}

/// The problem for an error this layer adds, anywhere in `error`'s chain:
/// `504 Gateway Timeout` for [`DeadlineExceeded`] and [`AttemptTimedOut`];
/// `None` for anything else. A [`ToProblem`](palisade_core::http::ToProblem)
/// mapper for palisade-core's `ProblemResponseLayer`:
///
/// ```
/// use palisade_core::http::ProblemResponseLayer;
///
/// let answer_errors = ProblemResponseLayer::new().map_errors(palisade_retry::http::to_problem);
/// # let _ = answer_errors;
/// ```
#[must_use]
pub fn to_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    if let Some(deadline) = palisade_core::cause_ref::<DeadlineExceeded>(error) {
        return Some(
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "retry deadline exceeded")
                .kind("deadline-exceeded")
                .detail(deadline.to_string()),
        );
    }
    palisade_core::cause_ref::<AttemptTimedOut>(error).map(|timeout| {
        Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream attempt timed out")
            .kind("attempt-timeout")
            .detail(timeout.to_string())
    })
}
