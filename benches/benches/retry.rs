//! Retry benchmarks, side by side in one run:
//!
//! - `fast_path`: one call whose first attempt succeeds, with a `u64` request
//!   against the bare `Identity` service: tower's `Retry` with a policy that
//!   clones the request and never retries, tower's `Retry` with a policy on a
//!   `TpsBudget` (deposit per call), tower-resilience 0.13's retry, and ours
//!   (default budget, and without a budget).
//! - `fast_path_threads`: ours, tower with `TpsBudget` and tower-resilience
//!   from 1 and 2 threads through one layer.
//! - `fast_path_http`: the same with real HTTP requests (a GET with four
//!   headers and no body, a PUT with a 1 KiB body) against a service that
//!   answers `200` at once; ours is the HTTP layer (idempotency check, body
//!   buffering and replay copy), against tower's `Retry` with the trivial
//!   policy and with its `TpsBudget`. Each iteration clones a prepared request
//!   (in every variant, the bare one included) so that allocations pair up
//!   within an iteration as they do in a server.
//! - `budget`: deposit, and deposit then withdraw, on one shared budget from
//!   1 thread and 2 threads contending: ours against tower's `TpsBudget`.
//! - after the timed benchmarks, a retry-storm simulation on tokio's paused
//!   clock: 1000 clients, each sending a request every 100 ms for 10 s to a
//!   backend that fails every call, 3 attempts per request, exponential
//!   backoff with full jitter. It prints the load amplification (backend calls
//!   per request) with no budget, tower's `TpsBudget` and ours.
//!
//! Every layer is built outside the timed loop; every call is `poll_ready`,
//! `call` and polls of the response future with a no-op waker. Allocations
//! per call come from divan's `AllocProfiler`.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p palisade-benches --bench retry`
//! (`-- storm` for the simulation alone).

use std::convert::Infallible;
use std::future::Ready;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use divan::{AllocProfiler, Bencher, black_box};
use http::{Request, Response};
use http_body_util::Full;
use palisade_benches::{Identity, call_now};
use palisade_retry::{RetryBudget, RetryLayer};
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
    if storm::wanted() {
        storm::report();
    }
}

const THREADS: &[usize] = &[1, 2];

// ===== peers =====

/// tower's retry with the cheapest possible policy: clone the request, never
/// retry.
#[derive(Clone, Copy, Debug)]
struct CloneNeverRetry;

impl<Req: Clone, Res, E> Policy<Req, Res, E> for CloneNeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's retry with the budget tower ships: the policy holds an
/// `Arc<TpsBudget>`, deposits once per call and withdraws per retry.
#[derive(Clone, Debug)]
struct TpsBudgetPolicy {
    budget: Arc<TpsBudget>,
}

impl<Req: Clone, Res, E> Policy<Req, Res, E> for TpsBudgetPolicy {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) => self.budget.withdraw().then(|| std::future::ready(())),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        // Called once per call by `Retry::call`: the per-request deposit.
        self.budget.deposit();
        Some(req.clone())
    }
}

fn tr_layer<Req, Res, E>() -> tower_resilience::retry::RetryLayer<Req, Res, E> {
    tower_resilience::retry::RetryLayer::<Req, Res, E>::builder()
        .max_attempts(3)
        .build()
}

fn palisade(name: &str) -> RetryLayer {
    RetryLayer::builder(name).build().expect("valid")
}

fn palisade_no_budget(name: &str) -> RetryLayer {
    RetryLayer::builder(name)
        .no_budget()
        .build()
        .expect("valid")
}

// ===== fast path, u64 =====

#[divan::bench_group(sample_count = 200)]
mod fast_path {
    use super::*;

    #[divan::bench]
    fn identity(bencher: Bencher<'_, '_>) {
        let mut svc = Identity;
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }

    #[divan::bench]
    fn tower_retry(bencher: Bencher<'_, '_>) {
        let mut svc = tower::retry::RetryLayer::new(CloneNeverRetry).layer(Identity);
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }

    #[divan::bench]
    fn tower_retry_tps_budget(bencher: Bencher<'_, '_>) {
        let policy = TpsBudgetPolicy {
            budget: Arc::new(TpsBudget::default()),
        };
        let mut svc = tower::retry::RetryLayer::new(policy).layer(Identity);
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }

    #[divan::bench]
    fn tower_resilience(bencher: Bencher<'_, '_>) {
        let mut svc = tr_layer::<u64, u64, Infallible>().layer(Identity);
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }

    #[divan::bench]
    fn palisade_default(bencher: Bencher<'_, '_>) {
        let mut svc = palisade("fast").layer(Identity);
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }

    #[divan::bench]
    fn palisade_no_budget(bencher: Bencher<'_, '_>) {
        let mut svc = super::palisade_no_budget("fast").layer(Identity);
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }
}

// ===== fast path, 1 and 2 threads on one layer =====

/// The same calls from 1 and 2 threads through one layer (each call on its
/// own clone of the service, made outside the timing): what is shared per
/// call (reference counts, locks) shows up as contention.
#[divan::bench_group(sample_count = 100, sample_size = 256)]
mod fast_path_threads {
    use super::*;

    #[divan::bench(threads = THREADS)]
    fn tower_retry_tps_budget(bencher: Bencher<'_, '_>) {
        let policy = TpsBudgetPolicy {
            budget: Arc::new(TpsBudget::default()),
        };
        let svc = tower::retry::RetryLayer::new(policy).layer(Identity);
        bencher
            .with_inputs(|| svc.clone())
            .bench_refs(|svc| call_now(svc, black_box(7u64)));
    }

    #[divan::bench(threads = THREADS)]
    fn tower_resilience(bencher: Bencher<'_, '_>) {
        let svc = tr_layer::<u64, u64, Infallible>().layer(Identity);
        bencher
            .with_inputs(|| svc.clone())
            .bench_refs(|svc| call_now(svc, black_box(7u64)));
    }

    #[divan::bench(threads = THREADS)]
    fn palisade_default(bencher: Bencher<'_, '_>) {
        let svc = palisade("threads").layer(Identity);
        bencher
            .with_inputs(|| svc.clone())
            .bench_refs(|svc| call_now(svc, black_box(7u64)));
    }
}

// ===== fast path, HTTP =====

/// Answers every request with an empty `200` at once, dropping the request.
#[derive(Clone, Copy, Debug)]
struct Ok200;

impl<B> Service<Request<B>> for Ok200 {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        drop(req);
        std::future::ready(Ok(Response::new(())))
    }
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://inventory.internal/items/42?fields=price,stock")
        .header("accept", "application/json")
        .header("user-agent", "palisade-bench/0.1")
        .header("x-request-id", "7f1c9a2e-5b7d-4c1e-9a55-3f0b8f1d2c44")
        .header(
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
        )
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

type MakeRequest = fn() -> Request<Full<Bytes>>;

fn put_1k() -> Request<Full<Bytes>> {
    let mut req = get();
    *req.method_mut() = http::Method::PUT;
    *req.body_mut() = Full::new(Bytes::from(vec![b'x'; 1024]));
    req
}

#[divan::bench_group(sample_count = 200, sample_size = 32)]
mod fast_path_http {
    use super::*;

    #[divan::bench(args = ["get", "put_1k"])]
    fn ok200(bencher: Bencher<'_, '_>, which: &str) {
        let make = pick(which);
        let mut svc = Ok200;
        let req = make();
        bencher.bench_local(|| call_now(&mut svc, req.clone()));
    }

    #[divan::bench(args = ["get", "put_1k"])]
    fn tower_retry(bencher: Bencher<'_, '_>, which: &str) {
        let make = pick(which);
        let mut svc = tower::retry::RetryLayer::new(CloneNeverRetry).layer(Ok200);
        let req = make();
        bencher.bench_local(|| call_now(&mut svc, req.clone()));
    }

    /// tower's `Retry` with its own budget (a deposit per call), the setup
    /// that offers what ours does by default.
    #[divan::bench(args = ["get", "put_1k"])]
    fn tower_retry_tps_budget(bencher: Bencher<'_, '_>, which: &str) {
        let make = pick(which);
        let policy = TpsBudgetPolicy {
            budget: Arc::new(TpsBudget::default()),
        };
        let mut svc = tower::retry::RetryLayer::new(policy).layer(Ok200);
        let req = make();
        bencher.bench_local(|| call_now(&mut svc, req.clone()));
    }

    #[divan::bench(args = ["get", "put_1k"])]
    fn tower_resilience(bencher: Bencher<'_, '_>, which: &str) {
        let make = pick(which);
        let mut svc = tr_layer::<Request<Full<Bytes>>, Response<()>, Infallible>().layer(Ok200);
        let req = make();
        bencher.bench_local(|| call_now(&mut svc, req.clone()));
    }

    #[divan::bench(args = ["get", "put_1k"])]
    fn palisade_http(bencher: Bencher<'_, '_>, which: &str) {
        let make = pick(which);
        let layer = RetryLayer::http_builder("fast-http")
            .build()
            .expect("valid");
        let mut svc = layer.layer(Ok200);
        let req = make();
        bencher.bench_local(|| call_now(&mut svc, req.clone()));
    }

    /// Ours with `max_attempts(1)` and no budget: the layer without the copy.
    #[divan::bench(args = ["get", "put_1k"])]
    fn palisade_http_one_attempt(bencher: Bencher<'_, '_>, which: &str) {
        let make = pick(which);
        let layer = RetryLayer::http_builder("fast-http")
            .max_attempts(1)
            .no_budget()
            .build()
            .expect("valid");
        let mut svc = layer.layer(Ok200);
        let req = make();
        bencher.bench_local(|| call_now(&mut svc, req.clone()));
    }

    /// The bare service plus one more clone of the request: the copy any
    /// retry layer must make to be able to retry.
    #[divan::bench(args = ["get", "put_1k"])]
    fn ok200_and_a_request_clone(bencher: Bencher<'_, '_>, which: &str) {
        let make = pick(which);
        let mut svc = Ok200;
        let req = make();
        bencher.bench_local(|| {
            let r = req.clone();
            let copy = r.clone();
            let out = call_now(&mut svc, r);
            drop(copy);
            out
        });
    }

    fn pick(which: &str) -> MakeRequest {
        match which {
            "get" => get,
            _ => put_1k,
        }
    }
}

// ===== budget =====

#[divan::bench_group(sample_count = 100)]
mod budget {
    use super::*;

    #[divan::bench(threads = THREADS)]
    fn palisade_deposit(bencher: Bencher<'_, '_>) {
        let budget = RetryBudget::default();
        bencher.bench(|| budget.deposit());
    }

    #[divan::bench(threads = THREADS)]
    fn tower_deposit(bencher: Bencher<'_, '_>) {
        let budget = TpsBudget::default();
        bencher.bench(|| budget.deposit());
    }

    #[divan::bench(threads = THREADS)]
    fn palisade_deposit_withdraw(bencher: Bencher<'_, '_>) {
        let budget = RetryBudget::new(1.0, 10, Duration::from_secs(10)).expect("valid");
        bencher.bench(|| {
            budget.deposit();
            black_box(budget.withdraw())
        });
    }

    #[divan::bench(threads = THREADS)]
    fn tower_deposit_withdraw(bencher: Bencher<'_, '_>) {
        let budget = TpsBudget::new(Duration::from_secs(10), 10, 1.0);
        bencher.bench(|| {
            budget.deposit();
            black_box(budget.withdraw())
        });
    }
}

// ===== retry storm =====

mod storm {
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};

    use palisade_core::BoxError;
    use palisade_retry::Backoff;
    use tokio::time::{Instant, Sleep, sleep, sleep_until};
    use tower::ServiceExt;

    use super::*;

    const CLIENTS: u64 = 1000;
    const INTERVAL: Duration = Duration::from_millis(100);
    const OUTAGE: Duration = Duration::from_secs(10);
    const MAX_ATTEMPTS: u32 = 3;

    /// Runs the simulation unless divan was only listing, or was given
    /// filters that do not ask for it.
    pub(super) fn wanted() -> bool {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--list") {
            return false;
        }
        let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        filters.is_empty() || filters.iter().any(|f| "storm".contains(f.as_str()))
    }

    #[derive(Clone, Copy, Debug)]
    enum Setup {
        NoBudget,
        Palisade {
            ratio: f64,
        },
        Tower {
            ratio: f32,
            deposit_on_success: bool,
        },
    }

    /// How budgets are held: one for all clients (the clients of one
    /// service), or one per client (1000 separate processes).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Scope {
        Shared,
        PerClient,
    }

    /// The same backoff for everyone: ours by default, 50 ms doubling to
    /// 2 s with full jitter.
    fn backoff_delay(retry: u32, rng: &mut seeded::Rng) -> Duration {
        Backoff::default().delay(
            retry,
            Duration::ZERO,
            palisade_retry::Jitter::Full,
            rng.f64(),
        )
    }

    /// A tiny seeded generator so every scenario draws the same jitter.
    mod seeded {
        pub(super) struct Rng(u64);

        impl Rng {
            pub(super) const fn new(seed: u64) -> Self {
                Self(seed)
            }

            pub(super) fn f64(&mut self) -> f64 {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                #[allow(clippy::cast_precision_loss)]
                let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
                unit
            }
        }
    }

    /// tower's `Retry` policy for the storm: up to `MAX_ATTEMPTS`, the same
    /// backoff, a `TpsBudget`.
    #[derive(Clone)]
    struct StormPolicy {
        budget: Arc<TpsBudget>,
        deposit_on_success: bool,
        retries: u32,
        seed: u64,
    }

    impl Policy<u64, u64, BoxError> for StormPolicy {
        type Future = Sleep;

        fn retry(&mut self, _: &mut u64, result: &mut Result<u64, BoxError>) -> Option<Sleep> {
            match result {
                Ok(_) => {
                    if self.deposit_on_success {
                        self.budget.deposit();
                    }
                    None
                }
                Err(_) => {
                    if self.retries + 1 >= MAX_ATTEMPTS || !self.budget.withdraw() {
                        return None;
                    }
                    self.retries += 1;
                    let mut rng = seeded::Rng::new(self.seed ^ u64::from(self.retries));
                    Some(sleep(backoff_delay(self.retries, &mut rng)))
                }
            }
        }

        fn clone_request(&mut self, req: &u64) -> Option<u64> {
            Some(*req)
        }
    }

    /// Deposits once per request in front of tower's `Retry` (Finagle and
    /// Linkerd deposit per request).
    #[derive(Clone)]
    struct Deposit<S> {
        budget: Option<Arc<TpsBudget>>,
        inner: S,
    }

    impl<S: Service<u64>> Service<u64> for Deposit<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: u64) -> S::Future {
            if let Some(budget) = &self.budget {
                budget.deposit();
            }
            self.inner.call(req)
        }
    }

    fn backend(
        calls: Arc<AtomicU64>,
    ) -> impl Service<u64, Response = u64, Error = BoxError, Future = Ready<Result<u64, BoxError>>>
    + Clone
    + Send
    + 'static {
        tower::service_fn(move |_: u64| {
            calls.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Err::<u64, BoxError>("backend down".into()))
        })
    }

    type Client = tower::util::BoxCloneSyncService<u64, u64, BoxError>;

    fn client(setup: Setup, calls: &Arc<AtomicU64>, seed: u64) -> Client {
        let inner = backend(Arc::clone(calls));
        match setup {
            Setup::NoBudget => Client::new(
                RetryLayer::builder("storm")
                    .max_attempts(MAX_ATTEMPTS)
                    .no_budget()
                    .jitter_seed(seed)
                    .build()
                    .expect("valid")
                    .layer(inner),
            ),
            Setup::Palisade { ratio } => Client::new(
                RetryLayer::builder("storm")
                    .max_attempts(MAX_ATTEMPTS)
                    .retry_ratio(ratio)
                    .jitter_seed(seed)
                    .build()
                    .expect("valid")
                    .layer(inner),
            ),
            Setup::Tower {
                ratio,
                deposit_on_success,
            } => {
                let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, ratio));
                let policy = StormPolicy {
                    budget: Arc::clone(&budget),
                    deposit_on_success,
                    retries: 0,
                    seed,
                };
                Client::new(Deposit {
                    budget: (!deposit_on_success).then_some(budget),
                    inner: tower::retry::RetryLayer::new(policy).layer(inner),
                })
            }
        }
    }

    /// Returns (requests, backend calls).
    fn run(setup: Setup, scope: Scope) -> (u64, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a paused runtime");
        rt.block_on(async move {
            let calls = Arc::new(AtomicU64::new(0));
            let requests = Arc::new(AtomicU64::new(0));
            let shared = client(setup, &calls, 1);
            let start = Instant::now();
            let mut clients = tokio::task::JoinSet::new();
            for c in 0..CLIENTS {
                let svc = match scope {
                    Scope::Shared => shared.clone(),
                    Scope::PerClient => client(setup, &calls, c + 1),
                };
                let requests = Arc::clone(&requests);
                clients.spawn(async move {
                    // Spread the clients over the interval.
                    let mut next = start + INTERVAL.mul_f64(c as f64 / CLIENTS as f64);
                    let mut inflight = tokio::task::JoinSet::new();
                    while next < start + OUTAGE {
                        sleep_until(next).await;
                        requests.fetch_add(1, Ordering::Relaxed);
                        inflight.spawn(svc.clone().oneshot(c));
                        next += INTERVAL;
                    }
                    while inflight.join_next().await.is_some() {}
                });
            }
            while clients.join_next().await.is_some() {}
            (
                requests.load(Ordering::Relaxed),
                calls.load(Ordering::Relaxed),
            )
        })
    }

    pub(super) fn report() {
        let scenarios: [(&str, Setup, Scope); 8] = [
            ("no budget", Setup::NoBudget, Scope::Shared),
            (
                "tower TpsBudget 20%",
                Setup::Tower {
                    ratio: 0.2,
                    deposit_on_success: false,
                },
                Scope::Shared,
            ),
            (
                "tower TpsBudget 60%",
                Setup::Tower {
                    ratio: 0.6,
                    deposit_on_success: false,
                },
                Scope::Shared,
            ),
            (
                "tower TpsBudget 20%, deposits on success",
                Setup::Tower {
                    ratio: 0.2,
                    deposit_on_success: true,
                },
                Scope::Shared,
            ),
            (
                "palisade 20% (default)",
                Setup::Palisade { ratio: 0.2 },
                Scope::Shared,
            ),
            (
                "palisade 60%",
                Setup::Palisade { ratio: 0.6 },
                Scope::Shared,
            ),
            (
                "tower TpsBudget 20%, one budget per client",
                Setup::Tower {
                    ratio: 0.2,
                    deposit_on_success: false,
                },
                Scope::PerClient,
            ),
            (
                "palisade 20%, one budget per client",
                Setup::Palisade { ratio: 0.2 },
                Scope::PerClient,
            ),
        ];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nretry storm: {CLIENTS} clients, one request each every {INTERVAL:?}, backend failing 100% for {OUTAGE:?}, {MAX_ATTEMPTS} attempts"
        );
        let _ = writeln!(
            out,
            "| scenario | requests | backend calls | amplification |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for (name, setup, scope) in scenarios {
            let (requests, calls) = run(setup, scope);
            #[allow(clippy::cast_precision_loss)]
            let amplification = calls as f64 / requests as f64;
            let _ = writeln!(
                out,
                "| {name} | {requests} | {calls} | {amplification:.3}x |"
            );
        }
        println!("{out}");
    }
}
