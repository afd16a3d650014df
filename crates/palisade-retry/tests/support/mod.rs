//! Shared helpers for the retry behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::BoxError;
use tokio::time::Instant;
use tower::Service;

/// Records when each attempt reached the backend (relative to `start`).
#[derive(Clone, Debug)]
pub struct Calls {
    start: Instant,
    at: Arc<Mutex<Vec<Duration>>>,
}

impl Calls {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            at: Arc::default(),
        }
    }

    pub fn record(&self) -> usize {
        let mut at = self.at.lock().unwrap();
        at.push(self.start.elapsed());
        at.len()
    }

    pub fn count(&self) -> usize {
        self.at.lock().unwrap().len()
    }

    /// When each call arrived, in whole milliseconds since `new`.
    pub fn millis(&self) -> Vec<u128> {
        self.at
            .lock()
            .unwrap()
            .iter()
            .map(Duration::as_millis)
            .collect()
    }
}

/// A backend answering attempt `n` (1-based) with `answer(n)`, after
/// `latency` (zero: at once, without a timer).
pub struct Backend<F> {
    pub calls: Calls,
    answer: Arc<F>,
    latency: Duration,
}

impl<F> Clone for Backend<F> {
    fn clone(&self) -> Self {
        Self {
            calls: self.calls.clone(),
            answer: Arc::clone(&self.answer),
            latency: self.latency,
        }
    }
}

pub fn backend<F, Req, Res>(answer: F) -> Backend<F>
where
    F: Fn(usize, Req) -> Result<Res, BoxError>,
{
    Backend {
        calls: Calls::new(),
        answer: Arc::new(answer),
        latency: Duration::ZERO,
    }
}

impl<F> Backend<F> {
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

impl<F, Req, Res> Service<Req> for Backend<F>
where
    F: Fn(usize, Req) -> Result<Res, BoxError> + Send + Sync + 'static,
    Res: Send + 'static,
{
    type Response = Res;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Res, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let n = self.calls.record();
        let result = (self.answer)(n, req);
        let latency = self.latency;
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            result
        })
    }
}

/// An error that wraps another, as a `Buffer` or a client library would.
#[derive(Debug)]
pub struct Wrapped(pub BoxError);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// A plain transport-like error.
pub fn boom() -> BoxError {
    "connection reset".into()
}

/// Lets spawned tasks and timers at the current instant run.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}
