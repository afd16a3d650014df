//! Services for the behaviour tests.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of this"
)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_bulkhead::BulkheadFull;
use palisade_core::{BoxError, cause_ref};
use tower::Service;

/// Counts the calls inside it and the most inside at once; each call sleeps
/// for `latency(request)` (tokio time, so paused in tests), or yields
/// `yields` times when `latency` is `None`.
#[derive(Clone)]
pub struct Probe {
    pub inside: Arc<AtomicUsize>,
    pub max: Arc<AtomicUsize>,
    pub calls: Arc<AtomicUsize>,
    pub latency: Arc<dyn Fn(u64) -> Option<Duration> + Send + Sync>,
    pub yields: usize,
}

impl Probe {
    pub fn sleeping(latency: impl Fn(u64) -> Duration + Send + Sync + 'static) -> Self {
        Self {
            inside: Arc::default(),
            max: Arc::default(),
            calls: Arc::default(),
            latency: Arc::new(move |r| Some(latency(r))),
            yields: 0,
        }
    }

    pub fn yielding(yields: usize) -> Self {
        Self {
            inside: Arc::default(),
            max: Arc::default(),
            calls: Arc::default(),
            latency: Arc::new(|_| None),
            yields,
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    pub fn inside(&self) -> usize {
        self.inside.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<u64> for Probe {
    type Response = u64;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<u64, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        let inside = Arc::clone(&self.inside);
        let max = Arc::clone(&self.max);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let latency = (self.latency)(req);
        let yields = self.yields;
        Box::pin(async move {
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            let _guard = Decrement(inside);
            match latency {
                Some(latency) => tokio::time::sleep(latency).await,
                None => {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                }
            }
            Ok(req)
        })
    }
}

struct Decrement(Arc<AtomicUsize>);
impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records the order in which requests reach it.
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<u64>>>,
}

impl Service<u64> for Recorder {
    type Response = u64;
    type Error = Infallible;
    type Future = std::future::Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        self.seen.lock().unwrap().push(req);
        std::future::ready(Ok(req))
    }
}

/// The `BulkheadFull` in `err`, or a panic naming what the error was.
pub fn full(err: &BoxError) -> &BulkheadFull {
    cause_ref::<BulkheadFull>(&**err).unwrap_or_else(|| panic!("expected BulkheadFull, got {err}"))
}

/// Lets spawned tasks run until they block.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}
