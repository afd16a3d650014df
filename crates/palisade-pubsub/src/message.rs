//! The message envelope every backend carries: an id, a subject, headers
//! (the correlation id and the trace context among them) and payload bytes.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::InvalidMessage;
use crate::state::subject::validate_subject;
use crate::trace::{TRACEPARENT, TraceContext};

/// The header that carries the correlation id: the id of the conversation
/// (an order's saga, a request) a message belongs to.
pub const CORRELATION_ID: &str = "Correlation-Id";
/// The header that carries the causation id: the id of the message whose
/// handling published this one.
pub const CAUSATION_ID: &str = "Causation-Id";
/// The longest message id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// The most headers a message may carry.
pub const MAX_HEADERS: usize = 64;
/// The longest header name or value accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 4096;

/// The message a consumer is handling on this task, and the trace context of
/// the consumer's span for it.
#[derive(Clone, Debug)]
pub(crate) struct Handling {
    pub(crate) message: Message,
    pub(crate) trace: TraceContext,
}

tokio::task_local! {
    pub(crate) static HANDLING: Handling;
}

/// The message a consumer's handler is handling on this task, if any.
#[must_use]
pub fn current_message() -> Option<Message> {
    HANDLING.try_with(|h| h.message.clone()).ok()
}

/// The trace context of the consumer span handling a message on this task,
/// if any: a message built now continues this trace.
#[must_use]
pub fn current_trace() -> Option<TraceContext> {
    HANDLING.try_with(|h| h.trace).ok()
}

/// A message: cheap to clone (one reference count), immutable once built.
///
/// ```
/// use palisade_pubsub::{Message, message::CORRELATION_ID};
///
/// let msg = Message::builder("orders.created")
///     .id("order-17-created")
///     .correlation_id("order-17")
///     .header("Content-Type", "text/plain")
///     .payload("17 widgets")
///     .build()
///     .unwrap();
/// assert_eq!(msg.id(), "order-17-created");
/// assert_eq!(msg.subject(), "orders.created");
/// assert_eq!(msg.headers().get(CORRELATION_ID), Some("order-17"));
/// assert_eq!(&msg.payload()[..], b"17 widgets");
/// assert!(msg.trace_context().is_some(), "every message carries a trace");
/// ```
#[derive(Clone)]
pub struct Message {
    inner: Arc<Inner>,
}

struct Inner {
    // `String`, not `Box<str>`: a builder's strings move in without the
    // reallocation that shrinking them to fit would cost.
    id: String,
    subject: String,
    headers: Headers,
    payload: Bytes,
}

impl Message {
    /// A builder for a message to `subject`.
    pub fn builder(subject: impl Into<String>) -> MessageBuilder {
        MessageBuilder {
            subject: subject.into(),
            id: None,
            headers: Headers::new(),
            payload: Bytes::new(),
            error: None,
        }
    }

    /// A message to `subject` with `payload`, a fresh id, and the correlation
    /// id and trace of the message being handled on this task (if any).
    ///
    /// # Errors
    ///
    /// [`InvalidMessage`] for an invalid subject.
    pub fn new(
        subject: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<Self, InvalidMessage> {
        Self::builder(subject).payload(payload).build()
    }

    /// A message as a backend received it: no validation, nothing inherited.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn from_parts(
        id: String,
        subject: String,
        headers: Headers,
        payload: Bytes,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                subject,
                headers,
                payload,
            }),
        }
    }

    /// A copy with a new id and subject and extra headers, keeping the
    /// payload: what a dead letter is made of.
    pub(crate) fn redirected(&self, id: &str, subject: &str, extra: &[(&str, &str)]) -> Self {
        let mut headers = self.inner.headers.clone();
        for (name, value) in extra {
            headers.insert(*name, sanitize(value));
        }
        Self::from_parts(
            id.into(),
            subject.into(),
            headers,
            self.inner.payload.clone(),
        )
    }

    /// The message id: unique per message, stable across redeliveries and
    /// re-publications (de-duplication keys on it).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The subject it was published to.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// Its headers.
    #[must_use]
    pub fn headers(&self) -> &Headers {
        &self.inner.headers
    }

    /// Its payload.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.inner.payload
    }

    /// The correlation id header, if any.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&str> {
        self.inner.headers.get(CORRELATION_ID)
    }

    /// The trace context of the span that published it (the `traceparent`
    /// header), if present and valid.
    #[must_use]
    pub fn trace_context(&self) -> Option<TraceContext> {
        self.inner
            .headers
            .get(TRACEPARENT)
            .and_then(TraceContext::parse)
    }

    /// Decodes the payload as JSON.
    ///
    /// # Errors
    ///
    /// The decoding error. A consumer's handler usually wraps it in
    /// [`Terminal`](crate::error::Terminal): a payload that does not decode
    /// now never will.
    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.inner.payload)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id())
            .field("subject", &self.subject())
            .field("headers", &self.inner.headers)
            .field("payload_len", &self.inner.payload.len())
            .finish()
    }
}

/// Builds a [`Message`]; [`build`](Self::build) validates.
pub struct MessageBuilder {
    subject: String,
    id: Option<String>,
    headers: Headers,
    payload: Bytes,
    error: Option<InvalidMessage>,
}

impl MessageBuilder {
    /// Sets the message id (default: a fresh unique id). Give an id derived
    /// from the business fact (an event id, `order-17-created`) so that
    /// publishing it twice is recognised as one message.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets a header, replacing any value it had.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the correlation id (default: the correlation id of the message
    /// being handled on this task, else this message's own id).
    #[must_use]
    pub fn correlation_id(self, id: impl Into<String>) -> Self {
        self.header(CORRELATION_ID, id)
    }

    /// Sets the payload.
    #[must_use]
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the payload to `value` encoded as JSON, and `Content-Type:
    /// application/json`.
    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    #[must_use]
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.payload = Bytes::from(bytes);
                self.header("Content-Type", "application/json")
            }
            Err(err) => {
                self.error = Some(
                    InvalidMessage::new("payload", "it could not be encoded as JSON")
                        .with_source(err),
                );
                self
            }
        }
    }

    /// Validates and builds the message. Inside a consumer's handler the
    /// message inherits the handled message's correlation id (unless one was
    /// set), gets it as its causation id, and continues its trace.
    ///
    /// # Errors
    ///
    /// [`InvalidMessage`]: an invalid subject (empty, a wildcard, spaces),
    /// an empty or too long id, a header name or value with a line break or
    /// too long, too many headers, a payload the serde helper could not
    /// encode.
    pub fn build(self) -> Result<Message, InvalidMessage> {
        let Self {
            subject,
            id,
            mut headers,
            payload,
            error,
        } = self;
        if let Some(err) = error {
            return Err(err);
        }
        validate_subject(&subject)?;
        let id = match id {
            Some(id) => {
                validate_id(&id)?;
                id
            }
            None => next_id(),
        };
        let inherited = HANDLING.try_with(Clone::clone).ok();
        if headers.get(CORRELATION_ID).is_none() {
            let correlation = inherited
                .as_ref()
                .and_then(|h| h.message.correlation_id())
                .map_or_else(|| id.clone(), str::to_owned);
            headers.insert_static(CORRELATION_ID, correlation);
        }
        if let Some(h) = &inherited
            && headers.get(CAUSATION_ID).is_none()
        {
            headers.insert_static(CAUSATION_ID, h.message.id().to_owned());
        }
        if headers.get(TRACEPARENT).is_none() {
            let trace = inherited
                .as_ref()
                .map_or_else(TraceContext::new_root, |h| h.trace.child());
            headers.insert_static(TRACEPARENT, trace.header_value());
        }
        headers.validate()?;
        Ok(Message::from_parts(id, subject, headers, payload))
    }
}

impl fmt::Debug for MessageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBuilder")
            .field("subject", &self.subject)
            .field("id", &self.id)
            .field("headers", &self.headers)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

fn validate_id(id: &str) -> Result<(), InvalidMessage> {
    if id.is_empty() {
        return Err(InvalidMessage::new("id", "is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidMessage::new(
            "id",
            format!("is longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if id.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(InvalidMessage::new(
            "id",
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// A fresh message id: 32 hex digits, a random per-process prefix and a
/// counter, so ids never repeat within a process and collide across
/// processes with probability 2⁻⁶⁴ per pair. No clock, no lock: one atomic
/// increment.
fn next_id() -> String {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| fastrand::u64(..));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

/// Replaces line breaks and control characters so a reason can travel as a
/// header value, and cuts it to [`MAX_HEADER_LEN`].
pub(crate) fn sanitize(value: &str) -> String {
    let mut out: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_HEADER_LEN {
        let mut cut = MAX_HEADER_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// A message's headers: an ordered list of name/value pairs, names compared
/// exactly (NATS preserves case), at most one value per name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// The names the crate sets itself are `'static` (no allocation per
    /// message); others are owned.
    entries: Vec<(Cow<'static, str>, String)>,
}

impl Headers {
    /// No headers.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// No headers, with room for `n` without reallocating.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// The value of `name`, if set.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing a previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.set(Cow::Owned(name.into()), value.into());
    }

    /// [`insert`](Self::insert) for a name known at compile time.
    pub(crate) fn insert_static(&mut self, name: &'static str, value: String) {
        self.set(Cow::Borrowed(name), value);
    }

    fn set(&mut self, name: Cow<'static, str>, value: String) {
        if let Some(slot) = self.entries.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.entries.push((name, value));
        }
    }

    /// Appends a header the caller knows is not set yet (a backend copying
    /// a received map, whose names are unique), the crate's own names
    /// without an allocation.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn push_unique(&mut self, name: &str, value: String) {
        let name = match name {
            CORRELATION_ID => Cow::Borrowed(CORRELATION_ID),
            TRACEPARENT => Cow::Borrowed(TRACEPARENT),
            CAUSATION_ID => Cow::Borrowed(CAUSATION_ID),
            other => Cow::Owned(other.to_owned()),
        };
        self.entries.push((name, value));
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.entries.iter().position(|(n, _)| n == name)?;
        Some(self.entries.remove(at).1)
    }

    /// The headers in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (&**n, v.as_str()))
    }

    /// How many headers are set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when none is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.entries.len() > MAX_HEADERS {
            return Err(InvalidMessage::new(
                "header",
                format!("more than {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in &self.entries {
            if name.is_empty()
                || name.len() > MAX_HEADER_LEN
                || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':')
            {
                return Err(InvalidMessage::new(
                    "header",
                    format!(
                        "name {name:?} must be 1 to {MAX_HEADER_LEN} printable ASCII bytes without `:`"
                    ),
                ));
            }
            if value.len() > MAX_HEADER_LEN || has_control(value) {
                return Err(InvalidMessage::new(
                    "header",
                    format!(
                        "value of {name:?} must be at most {MAX_HEADER_LEN} bytes without control characters"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `value` holds a control character (`char::is_control`), looking
/// at bytes when it is ASCII.
fn has_control(value: &str) -> bool {
    for b in value.bytes() {
        if b < 0x20 || b == 0x7f {
            return true;
        }
        if b >= 0x80 {
            return value.chars().any(char::is_control);
        }
    }
    false
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_message_correlates_with_itself_and_starts_a_trace() {
        let msg = Message::new("a.b", "x").unwrap();
        assert_eq!(msg.correlation_id(), Some(msg.id()));
        assert!(msg.trace_context().is_some());
        assert_eq!(msg.headers().get(CAUSATION_ID), None);
        let other = Message::new("a.b", "x").unwrap();
        assert_ne!(msg.id(), other.id());
    }

    #[tokio::test]
    async fn a_message_built_while_handling_inherits_its_context() {
        let parent = Message::builder("orders.created")
            .correlation_id("order-1")
            .build()
            .unwrap();
        let parent_trace = parent.trace_context().unwrap();
        let inherited = Handling {
            message: parent.clone(),
            trace: parent_trace.child(),
        };
        let child = HANDLING
            .scope(inherited.clone(), async {
                assert_eq!(current_message().unwrap().id(), parent.id());
                Message::new("payments.requested", "").unwrap()
            })
            .await;
        assert!(current_trace().is_none());
        assert_eq!(child.correlation_id(), Some("order-1"));
        assert_eq!(child.headers().get(CAUSATION_ID), Some(parent.id()));
        let tc = child.trace_context().unwrap();
        assert_eq!(tc.trace_id(), parent_trace.trace_id());
        assert_ne!(tc.span_id(), inherited.trace.span_id());
    }

    #[test]
    fn rejects_bad_input() {
        let field = |b: MessageBuilder| b.build().unwrap_err().field();
        assert_eq!(field(Message::builder("a.*")), "subject");
        assert_eq!(field(Message::builder("")), "subject");
        assert_eq!(field(Message::builder("a").id("")), "id");
        assert_eq!(field(Message::builder("a").id("has space")), "id");
        assert_eq!(
            field(Message::builder("a").id("x".repeat(MAX_ID_LEN + 1))),
            "id"
        );
        assert_eq!(
            field(Message::builder("a").header("Bad:Name", "v")),
            "header"
        );
        assert_eq!(
            field(Message::builder("a").header("X", "line\r\nbreak")),
            "header"
        );
        let mut b = Message::builder("a");
        for i in 0..=MAX_HEADERS {
            b = b.header(format!("H{i}"), "v");
        }
        assert_eq!(field(b), "header");
    }

    #[test]
    fn sanitize_removes_line_breaks_and_cuts() {
        assert_eq!(sanitize("a\r\nb"), "a  b");
        assert!(sanitize(&"é".repeat(MAX_HEADER_LEN)).len() <= MAX_HEADER_LEN);
    }

    proptest::proptest! {
        #[test]
        fn control_characters_are_found_as_by_chars(value in "[a\\x00-\\x20\\x7e-\\u{a0}é]{0,6}") {
            proptest::prop_assert_eq!(has_control(&value), value.chars().any(char::is_control));
        }
    }
}
