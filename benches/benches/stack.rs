//! The README's stack as a whole, per call, side by side in one run with the
//! same stack built from tower-resilience's layers and from tower's own.
//!
//! The stack, outermost first: a total timeout (5 s), retries with a budget,
//! a circuit breaker, a per-attempt timeout (1 s), a bulkhead (64 calls),
//! around an always-ready `Identity` whose future completes on its first
//! poll. One call is `poll_ready`, `call` and polls of the response future
//! until it completes, with a no-op waker: what remains is the stack's own
//! work. Requests are `u64`, so the retry's request copy is free; the
//! allocation column says what else each stack allocates per call.
//!
//! - Palisade: tower's `Timeout` (as the README's `.timeout(..)`), Palisade's
//!   retry (default budget), breaker (default count window) and bulkhead.
//! - tower-resilience 0.13: tower's `Timeout` (its time limiter is a separate
//!   crate with the same role), its retry (3 attempts, AIMD budget: a deposit
//!   per success as ours), circuit breaker and bulkhead.
//! - tower: `Timeout`, `Retry` with the `TpsBudget` it ships (deposit per call),
//!   `ConcurrencyLimit`; tower has no circuit breaker, so its stack is one
//!   layer short and a floor rather than a peer.
//!
//! Run: `cargo bench -p palisade-benches --bench stack`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use divan::{AllocProfiler, Bencher};
use palisade_benches::{Identity, call_now};
use palisade_bulkhead::BulkheadLayer;
use palisade_circuit_breaker::CircuitBreakerLayer;
use palisade_retry::RetryLayer;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceBuilder};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const TOTAL: Duration = Duration::from_secs(5);
const ATTEMPT: Duration = Duration::from_secs(1);
const CONCURRENCY: usize = 64;

fn main() {
    divan::main();
}

thread_local! {
    /// A tokio context for tower's `Timeout` (it arms a timer per call),
    /// entered once per benchmark thread.
    static RUNTIME: tokio::runtime::EnterGuard<'static> = {
        let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime"),
        ));
        rt.enter()
    };
}

fn in_runtime() {
    RUNTIME.with(|_| ());
}

/// Polls that may spin before a call is declared stalled (tower-resilience's
/// layers hand a lock over between polls when contended).
const MAX_SPINS: u32 = 1 << 26;

/// `call_now` for services whose futures may need more than one poll.
fn call_spin<S: Service<u64>>(svc: &mut S, req: u64) -> Result<S::Response, S::Error> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut spins = 0;
    loop {
        match svc.poll_ready(&mut cx) {
            std::task::Poll::Ready(Ok(())) => break,
            std::task::Poll::Ready(Err(e)) => return Err(e),
            std::task::Poll::Pending => {
                spins += 1;
                assert!(spins < MAX_SPINS, "poll_ready stalled");
                std::hint::spin_loop();
            }
        }
    }
    let mut fut = std::pin::pin!(svc.call(req));
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        spins += 1;
        assert!(spins < MAX_SPINS, "response future stalled");
        std::hint::spin_loop();
    }
}

/// Benchmarks one call per iteration on a clone of `svc` made outside the
/// timing (clones share the layers' state, so two threads contend on it).
fn bench_stack<S>(bencher: Bencher<'_, '_>, svc: S)
where
    S: Service<u64, Response = u64> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    in_runtime();
    let mut svc = svc;
    assert_eq!(call_spin(&mut svc, 1).unwrap(), 1);
    let proto = Mutex::new(svc);
    bencher
        .with_inputs(|| {
            in_runtime();
            proto.lock().unwrap().clone()
        })
        .bench_refs(|svc| call_spin(svc, black_box(7u64)).unwrap());
}

// ===== the stacks =====

fn palisade_stack() -> impl Service<u64, Response = u64, Error = palisade_core::BoxError> + Clone + Send
{
    in_runtime();
    ServiceBuilder::new()
        .layer(TimeoutLayer::new(TOTAL))
        .layer(RetryLayer::builder("stack").build().expect("valid"))
        .layer(CircuitBreakerLayer::builder("stack").build().expect("valid"))
        .layer(TimeoutLayer::new(ATTEMPT))
        .layer(
            BulkheadLayer::builder("stack")
                .max_concurrent_calls(CONCURRENCY)
                .build()
                .expect("valid"),
        )
        .service(Identity)
}

/// tower's retry with the budget tower ships: deposit per call, withdraw per
/// retry.
#[derive(Clone, Debug)]
struct TpsBudgetPolicy {
    budget: Arc<TpsBudget>,
}

impl<Req: Clone, Res, E> Policy<Req, Res, E> for TpsBudgetPolicy {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) => self.budget.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        self.budget.deposit();
        Some(req.clone())
    }
}

fn tower_stack() -> impl Service<u64, Response = u64, Error = tower::BoxError> + Clone + Send {
    in_runtime();
    ServiceBuilder::new()
        .layer(TimeoutLayer::new(TOTAL))
        .layer(tower::retry::RetryLayer::new(TpsBudgetPolicy {
            budget: Arc::new(TpsBudget::default()),
        }))
        .layer(TimeoutLayer::new(ATTEMPT))
        .layer(tower::limit::ConcurrencyLimitLayer::new(CONCURRENCY))
        .service(Identity)
}

fn tower_resilience_stack()
-> impl Service<u64, Response = u64, Error = tower::BoxError> + Clone + Send {
    use tower_resilience::bulkhead::BulkheadLayer as TrBulkhead;
    use tower_resilience::circuitbreaker::CircuitBreakerLayer as TrBreaker;
    use tower_resilience::retry::{RetryBudgetBuilder, RetryLayer as TrRetry};

    in_runtime();
    let bulkhead = TrBulkhead::builder()
        .max_concurrent_calls(CONCURRENCY)
        .build()
        .expect("valid");
    let (breaker, _handle) = TrBreaker::builder()
        .name("stack")
        .build_with_handle()
        .expect("valid");
    let inner = ServiceBuilder::new()
        .layer(breaker)
        .layer(TimeoutLayer::new(ATTEMPT))
        .layer(bulkhead)
        .service(Identity);
    let retry = TrRetry::<u64, u64, _>::builder()
        .max_attempts(3)
        .budget(RetryBudgetBuilder::new().aimd().build().expect("valid"))
        .build();
    ServiceBuilder::new()
        .layer(TimeoutLayer::new(TOTAL))
        .layer(retry)
        .service(inner)
}

/// One call through the whole stack.
#[divan::bench_group(sample_count = 200, sample_size = 1000)]
mod whole_stack {
    use super::*;

    /// The bare service: what a call costs with no stack.
    #[divan::bench(threads = [1, 2])]
    fn identity(bencher: Bencher<'_, '_>) {
        bencher
            .with_inputs(|| Identity)
            .bench_refs(|svc| -> Result<u64, Infallible> { call_now(svc, black_box(7u64)) });
    }

    #[divan::bench(threads = [1, 2])]
    fn palisade(bencher: Bencher<'_, '_>) {
        bench_stack(bencher, palisade_stack());
    }

    #[divan::bench(threads = [1, 2])]
    fn tower_resilience(bencher: Bencher<'_, '_>) {
        bench_stack(bencher, tower_resilience_stack());
    }

    /// tower's own layers: no circuit breaker in the stack.
    #[divan::bench(threads = [1, 2])]
    fn tower_without_breaker(bencher: Bencher<'_, '_>) {
        bench_stack(bencher, tower_stack());
    }
}

/// The same stacks without the two timeouts: the resilience layers alone
/// (tower's `Timeout` arms a timer per call, the same for every stack).
#[divan::bench_group(sample_count = 200, sample_size = 1000)]
mod without_timeouts {
    use super::*;

    #[divan::bench(threads = [1, 2])]
    fn palisade(bencher: Bencher<'_, '_>) {
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::builder("layers").build().expect("valid"))
            .layer(CircuitBreakerLayer::builder("layers").build().expect("valid"))
            .layer(
                BulkheadLayer::builder("layers")
                    .max_concurrent_calls(CONCURRENCY)
                    .build()
                    .expect("valid"),
            )
            .service(Identity);
        bench_stack(bencher, svc);
    }

    #[divan::bench(threads = [1, 2])]
    fn tower_resilience(bencher: Bencher<'_, '_>) {
        use tower_resilience::bulkhead::BulkheadLayer as TrBulkhead;
        use tower_resilience::circuitbreaker::CircuitBreakerLayer as TrBreaker;
        use tower_resilience::retry::{RetryBudgetBuilder, RetryLayer as TrRetry};

        let (breaker, _handle) = TrBreaker::builder()
            .name("layers")
            .build_with_handle()
            .expect("valid");
        let inner = ServiceBuilder::new()
            .layer(breaker)
            .layer(
                TrBulkhead::builder()
                    .max_concurrent_calls(CONCURRENCY)
                    .build()
                    .expect("valid"),
            )
            .service(Identity);
        let svc = TrRetry::<u64, u64, _>::builder()
            .max_attempts(3)
            .budget(RetryBudgetBuilder::new().aimd().build().expect("valid"))
            .build()
            .layer(inner);
        bench_stack(bencher, svc);
    }

    #[divan::bench(threads = [1, 2])]
    fn tower_without_breaker(bencher: Bencher<'_, '_>) {
        let svc = ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(TpsBudgetPolicy {
                budget: Arc::new(TpsBudget::default()),
            }))
            .layer(tower::limit::ConcurrencyLimitLayer::new(CONCURRENCY))
            .service(Identity);
        bench_stack(bencher, svc);
    }
}
