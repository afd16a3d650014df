//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_circuit_breaker::{BoxError, CircuitOpen};
use tower::{Service, ServiceExt, service_fn};

/// What the backend should do with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Succeed at once.
    Ok,
    /// Fail at once.
    Fail,
    /// Succeed after a delay.
    OkAfter(Duration),
    /// Fail after a delay.
    FailAfter(Duration),
    /// Never complete.
    Hang,
}

/// The backend's response.
pub type Reply = &'static str;

type BoxFut = Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

/// A backend that does what each [`Step`] says and counts the calls that
/// reached it.
pub fn backend() -> (
    impl Service<Step, Response = Reply, Error = BoxError, Future = BoxFut>
    + Clone
    + Send
    + Sync
    + 'static,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = service_fn(move |step: Step| -> BoxFut {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match step {
                Step::Ok => Ok("ok"),
                Step::Fail => Err(BoxError::from("backend failed")),
                Step::OkAfter(d) => {
                    tokio::time::sleep(d).await;
                    Ok("ok")
                }
                Step::FailAfter(d) => {
                    tokio::time::sleep(d).await;
                    Err(BoxError::from("backend failed"))
                }
                Step::Hang => std::future::pending().await,
            }
        })
    });
    (svc, calls)
}

/// The number of calls that reached the backend.
pub fn count(calls: &Arc<AtomicUsize>) -> usize {
    calls.load(Ordering::SeqCst)
}

/// Calls `svc` once (`ready` then `call`).
pub async fn call<S>(svc: &mut S, step: Step) -> Result<Reply, BoxError>
where
    S: Service<Step, Response = Reply, Error = BoxError>,
{
    svc.ready().await?.call(step).await
}

/// The rejection in `result`, if it is one.
pub fn rejection(result: &Result<Reply, BoxError>) -> Option<&CircuitOpen> {
    result
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<CircuitOpen>())
}

/// `true` if `result` is a rejection by the breaker.
pub fn rejected(result: &Result<Reply, BoxError>) -> bool {
    rejection(result).is_some()
}
