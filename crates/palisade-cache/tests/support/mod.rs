//! A scripted backend for the cache's behaviour tests.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses a part")]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use palisade_core::BoxError;
use tokio::sync::Semaphore;
use tower::Service;

/// What the backend answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `Ok(value)`, where the value is `format!("{prefix}{request}")`.
    Ok(String),
    /// `Err(message)`.
    Err(String),
    /// An error the caller sees as a rejection (an open breaker).
    Rejected,
}

/// A backend service: counts calls, answers as scripted, and can hold its
/// answers behind a gate until the test opens it.
#[derive(Clone)]
pub struct Backend {
    calls: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
    gate: Option<Arc<Semaphore>>,
    /// Call numbers (1-based) that never answer.
    hang: Arc<Mutex<Vec<usize>>>,
    /// `false`: `poll_ready` stays pending.
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Backend {
    pub fn new(prefix: &str) -> Self {
        Self {
            calls: Arc::new(AtomicUsize::new(0)),
            answer: Arc::new(Mutex::new(Answer::Ok(prefix.to_owned()))),
            gate: None,
            hang: Arc::default(),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Calls wait for a permit of `gate` (one per call) before answering.
    pub fn gated(mut self, gate: &Arc<Semaphore>) -> Self {
        self.gate = Some(Arc::clone(gate));
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// `poll_ready` answers `Pending` while `false`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// The `n`th call (1-based) never answers.
    pub fn hang_call(&self, n: usize) {
        self.hang.lock().unwrap().push(n);
    }

    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

impl Service<u32> for Backend {
    type Response = String;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, request: u32) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let hangs = self.hang.lock().unwrap().contains(&n);
        let answer = Arc::clone(&self.answer);
        let gate = self.gate.clone();
        Box::pin(async move {
            if hangs {
                std::future::pending::<()>().await;
            }
            if let Some(gate) = gate {
                gate.acquire().await.expect("gate open").forget();
            }
            let answer = answer.lock().unwrap().clone();
            match answer {
                Answer::Ok(prefix) => Ok(format!("{prefix}{request}")),
                Answer::Err(message) => Err(message.into()),
                Answer::Rejected => Err(palisade_core::CircuitOpen::new("backend", None).into()),
            }
        })
    }
}

/// Lets every spawned task run until all are blocked.
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}
