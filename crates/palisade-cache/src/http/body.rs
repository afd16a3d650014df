//! [`CacheBody`]: the body of every response the HTTP cache answers with,
//! and the reading of a backend body into an entry.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// The body of a response from the HTTP cache: a stored body, or the
/// backend's own body passed through (with the part already read replayed
/// first, when it turned out too large to store).
pub struct CacheBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    Full(Option<Bytes>),
    Stream(B),
    Replay {
        frames: VecDeque<Frame<Bytes>>,
        rest: Option<B>,
    },
}

impl<B> CacheBody<B> {
    /// A body holding `bytes`.
    #[must_use]
    pub fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// An empty body.
    #[must_use]
    pub const fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    /// The backend's body, passed through.
    pub const fn stream(body: B) -> Self {
        Self {
            kind: Kind::Stream(body),
        }
    }

    /// `frames` already read from `rest`, then the rest of it.
    pub(crate) const fn replay(frames: VecDeque<Frame<Bytes>>, rest: Option<B>) -> Self {
        Self {
            kind: Kind::Replay { frames, rest },
        }
    }

    /// `true` if the body is a stored one (not streamed from the backend).
    #[must_use]
    pub const fn is_stored(&self) -> bool {
        matches!(self.kind, Kind::Full(_))
    }
}

impl<B> From<String> for CacheBody<B> {
    /// A stored body holding `text` (what a problem+json answer is built
    /// from).
    fn from(text: String) -> Self {
        Self::full(Bytes::from(text))
    }
}

impl<B> From<Bytes> for CacheBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl<B> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Full(_) => "full",
            Kind::Stream(_) => "stream",
            Kind::Replay { .. } => "replay",
        };
        f.debug_struct("CacheBody").field("kind", &kind).finish()
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => Pin::new(body).poll_frame(cx),
            Kind::Replay { frames, rest } => {
                if let Some(frame) = frames.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                match rest {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
            Kind::Replay { frames, rest } => {
                frames.is_empty() && rest.as_ref().is_none_or(Body::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => body.size_hint(),
            Kind::Replay { frames, rest } => {
                let buffered: u64 = frames
                    .iter()
                    .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
                    .sum();
                let mut hint = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
                hint.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}

/// Reads a body up to a limit.
pub(crate) struct Collect<B> {
    body: Option<B>,
    frames: VecDeque<Frame<Bytes>>,
    len: u64,
    limit: u64,
}

/// What reading a body came to.
pub(crate) enum Collected<B: Body> {
    /// The whole body, within the limit.
    Full(Bytes),
    /// Too large, or with trailers: what was read, and the rest.
    Partial(CacheBody<B>),
    /// The body failed.
    Failed(B::Error),
}

impl<B> Collect<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    pub(crate) const fn new(body: B, limit: u64) -> Self {
        Self {
            body: Some(body),
            frames: VecDeque::new(),
            len: 0,
            limit,
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Collected<B>> {
        loop {
            let body = self.body.as_mut().expect("polled after completion");
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.body = None;
                    return Poll::Ready(Collected::Full(self.concat()));
                }
                Poll::Ready(Some(Err(e))) => {
                    self.body = None;
                    return Poll::Ready(Collected::Failed(e));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let trailers = frame.is_trailers();
                    if let Some(data) = frame.data_ref() {
                        self.len += data.len() as u64;
                    }
                    self.frames.push_back(frame);
                    if trailers || self.len > self.limit {
                        let frames = std::mem::take(&mut self.frames);
                        return Poll::Ready(Collected::Partial(CacheBody::replay(
                            frames,
                            self.body.take(),
                        )));
                    }
                }
            }
        }
    }

    fn concat(&mut self) -> Bytes {
        let mut frames = std::mem::take(&mut self.frames);
        if frames.len() == 1 {
            if let Some(Ok(data)) = frames.pop_front().map(Frame::into_data) {
                return data;
            }
            return Bytes::new();
        }
        let mut out = BytesMut::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for frame in frames {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
            }
        }
        out.freeze()
    }
}
