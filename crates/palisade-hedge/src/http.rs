//! HTTP hedging (feature `http`): only requests the retry layer would
//! replay, with its replayable body.
//!
//! [`HedgeLayer::http_builder`] accepts `http::Request<B>` and hands the
//! inner service `http::Request<RetryBody<B>>`, palisade-retry's replayable
//! body. Which requests are hedged is the retry layer's rule, not a second
//! one ([`palisade_retry::http::Http::replay_rules`]):
//!
//! | request | hedged? |
//! |---|---|
//! | GET, HEAD, OPTIONS, PUT, DELETE, TRACE | yes |
//! | POST, PATCH | only with [`hedge_non_idempotent(true)`](HedgeBuilder::hedge_non_idempotent) *and* the idempotency-key header |
//! | body empty, or whose size hint's upper bound is at most [`max_body_bytes`](HedgeBuilder::max_body_bytes) | buffered, replayed on each attempt |
//! | body larger, or of unknown length | sent once, never hedged |
//!
//! Responses are classified by [`StatusClassifier::server_errors`]: a 5xx is
//! a failed attempt (it does not win the race; the others keep running).
//! The [`Deadline`](palisade_core::Deadline) a request carries is in its
//! head, so every hedge carries it too.

use std::sync::Arc;

use http::HeaderName;
use palisade_core::http::StatusClassifier;
pub use palisade_retry::http::{Http, IDEMPOTENCY_KEY, RetryBody};

use crate::builder::HedgeBuilder;
use crate::layer::HedgeLayer;

impl HedgeLayer {
    /// A builder for `http::Request<B>`: idempotent requests only, bodies up
    /// to 64 KiB replayed, 5xx and errors failed attempts.
    pub fn http_builder(name: impl Into<Arc<str>>) -> HedgeBuilder<StatusClassifier, Http> {
        let name = name.into();
        let kind = Http::replay_rules(Arc::clone(&name));
        HedgeBuilder::new(name, StatusClassifier::server_errors(), kind)
    }
}

/// Settings for HTTP requests.
impl<C> HedgeBuilder<C, Http> {
    /// The largest request body buffered for replay (default 64 KiB); a
    /// request with a larger body is sent once.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.kind = self.kind.with_max_body_bytes(bytes);
        self
    }

    /// Also hedges POST and PATCH requests carrying the idempotency-key
    /// header (default `false`).
    pub fn hedge_non_idempotent(mut self, hedge: bool) -> Self {
        self.kind = self.kind.with_non_idempotent(hedge);
        self
    }

    /// The header that makes a POST or PATCH hedgeable when
    /// [`hedge_non_idempotent`](Self::hedge_non_idempotent) is on (default
    /// `idempotency-key`).
    pub fn idempotency_key_header(mut self, name: HeaderName) -> Self {
        self.kind = self.kind.with_idempotency_key_header(name);
        self
    }
}
