//! Benchmarks for the fan-out, side by side with hand-written gathers of the
//! same branch services, in one run.
//!
//! Every branch is ready at once and answers on its first poll, so what is
//! measured is the gather's own work: one call is `poll_ready`, `call` and a
//! poll of the gather to completion with a no-op waker. On 1 thread, and on 2
//! threads calling clones of one fan-out at once (so both share its
//! configuration and branch services). Allocations per gather from divan's
//! `AllocProfiler`.
//!
//! - `json`: 6 branches answering a small JSON object each (the branch's own
//!   response: one map, two entries), merged into one JSON object keyed by
//!   branch. `hand_join`: `futures::join!` of the six calls, then the same
//!   keyed object built by hand. `fan_out`: `FanOut` with its default keyed
//!   merge. `fan_out_timed`: the same with a deadline and a timeout per
//!   branch (the bookkeeping of both, no timer armed: nothing waits).
//!   `futures_unordered`: a `FuturesUnordered` gather, the usual alternative,
//!   for its allocations.
//! - `bare`: 6 branches answering a number, merged by summing: the fixed cost
//!   of the gather machinery with nothing else to hide it.
//! - `http`: the gateway's dashboard path: 6 HTTP branches (`ParseJson` over a
//!   backend answering JSON text), requests built from the incoming path by
//!   `Target` templates, merged by `JsonResponse`; against `join!` of the same
//!   six `ParseJson` services with requests built by `format!` and the same
//!   response built by hand.
//!
//! Run: `cargo bench -p palisade-benches --bench fan_out`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use divan::{AllocProfiler, Bencher};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use palisade_benches::{call_now, enter_runtime, poll_now};
use palisade_fan_out::http::{JsonResponse, ParseJson, Route};
use palisade_fan_out::{Branch, FanOut, MergeFn};
use serde_json::{Map, Value};
use tower::Service;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const NAMES: [&str; 6] = [
    "user",
    "order",
    "product",
    "review",
    "reward",
    "notification",
];

/// Benchmarks one gather per iteration through a clone of `svc` (cloned
/// outside the timed section; with 2 threads both use clones of one value).
fn bench_calls<S, R>(bencher: Bencher<'_, '_>, svc: S, request: impl Fn() -> R + Sync)
where
    S: Service<R> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    bench_with(bencher, svc, |svc| {
        call_now(svc, black_box(request())).unwrap()
    });
}

/// Benchmarks `gather` on a clone of `proto` per iteration: every variant,
/// fan-out or hand-written, gets its inputs the same way.
fn bench_with<P, O>(bencher: Bencher<'_, '_>, proto: P, gather: impl Fn(&mut P) -> O + Sync)
where
    P: Clone + Send,
{
    let proto = Mutex::new(proto);
    bencher
        .with_inputs(|| proto.lock().unwrap().clone())
        .bench_refs(gather);
}

/// Polls `svc` ready with a no-op waker; every benchmarked branch is.
fn ready_now<S: Service<R>, R>(svc: &mut S) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
}

// ===== branch services =====

/// A branch answering a small JSON object at once.
#[derive(Clone, Copy, Debug)]
struct JsonBranch(u8);

impl Service<u64> for JsonBranch {
    type Response = Value;
    type Error = Infallible;
    type Future = Ready<Result<Value, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, id: u64) -> Self::Future {
        let mut answer = Map::new();
        answer.insert("id".to_owned(), id.into());
        answer.insert("branch".to_owned(), self.0.into());
        ready(Ok(Value::Object(answer)))
    }
}

/// A branch answering a number at once.
#[derive(Clone, Copy, Debug)]
struct NumberBranch(u64);

impl Service<u64> for NumberBranch {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, id: u64) -> Self::Future {
        ready(Ok(id + self.0))
    }
}

/// An HTTP backend answering a small JSON body at once.
#[derive(Clone, Copy, Debug)]
struct HttpBackend(u8);

impl Service<http::Request<String>> for HttpBackend {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<String>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: http::Request<String>) -> Self::Future {
        let body = format!(
            r#"{{"path":"{}","branch":{}}}"#,
            request.uri().path(),
            self.0
        );
        let mut response = http::Response::new(body);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        ready(Ok(response))
    }
}

// ===== the gathers =====

fn json_branches() -> [JsonBranch; 6] {
    [0, 1, 2, 3, 4, 5].map(JsonBranch)
}

fn json_fan_out(timed: bool) -> FanOut<JsonBranch, u64> {
    let mut builder = FanOut::builder("bench");
    if timed {
        builder = builder.deadline(Duration::from_secs(1));
    }
    for (name, svc) in NAMES.into_iter().zip(json_branches()) {
        let mut branch = Branch::new(name, svc, |id: &u64| *id);
        if timed {
            branch = branch.timeout(Duration::from_millis(500));
        }
        builder = builder.branch(branch);
    }
    builder.build().unwrap()
}

/// The keyed object a hand-written gather builds: what `JsonMerge::keyed`
/// builds for a complete gather.
fn keyed(answers: [Value; 6]) -> Value {
    let mut merged = Map::new();
    for (name, answer) in NAMES.into_iter().zip(answers) {
        merged.insert(name.to_owned(), answer);
    }
    Value::Object(merged)
}

/// `futures::join!` of six calls, each service polled ready first.
fn join_six<S, R>(svcs: &mut [S; 6], mut request: impl FnMut() -> R) -> [S::Response; 6]
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    for svc in svcs.iter_mut() {
        ready_now(svc);
    }
    let [a, b, c, d, e, f] = svcs;
    let (a, b, c, d, e, f) = poll_now(async {
        futures_util::join!(
            a.call(request()),
            b.call(request()),
            c.call(request()),
            d.call(request()),
            e.call(request()),
            f.call(request()),
        )
    });
    [a, b, c, d, e, f].map(|r| r.unwrap())
}

/// A `FuturesUnordered` of six calls (one allocation per pushed future),
/// answers put back in declaration order.
fn unordered_six<S>(svcs: &mut [S; 6], id: u64) -> [Option<S::Response>; 6]
where
    S: Service<u64>,
    S::Error: std::fmt::Debug,
{
    let mut calls = FuturesUnordered::new();
    for (i, svc) in svcs.iter_mut().enumerate() {
        ready_now(svc);
        let call = svc.call(id);
        calls.push(async move { (i, call.await) });
    }
    let mut answers = [const { None }; 6];
    poll_now(async {
        while let Some((i, answer)) = calls.next().await {
            answers[i] = Some(answer.unwrap());
        }
    });
    answers
}

mod json {
    use super::*;

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn hand_join(bencher: Bencher<'_, '_>) {
        bench_with(bencher, json_branches(), |svcs| {
            keyed(join_six(svcs, || black_box(12345u64)))
        });
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn fan_out(bencher: Bencher<'_, '_>) {
        bench_calls(bencher, json_fan_out(false), || 12345u64);
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn fan_out_timed(bencher: Bencher<'_, '_>) {
        enter_runtime(|| bench_calls(bencher, json_fan_out(true), || 12345u64));
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn futures_unordered(bencher: Bencher<'_, '_>) {
        bench_with(bencher, json_branches(), |svcs| {
            keyed(unordered_six(svcs, black_box(12345)).map(Option::unwrap))
        });
    }
}

mod bare {
    use super::*;

    fn branches() -> [NumberBranch; 6] {
        [0, 1, 2, 3, 4, 5].map(NumberBranch)
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn hand_join(bencher: Bencher<'_, '_>) {
        bench_with(bencher, branches(), |svcs| {
            join_six(svcs, || black_box(7u64)).iter().sum::<u64>()
        });
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn fan_out(bencher: Bencher<'_, '_>) {
        let mut builder = FanOut::builder("bench");
        for (name, svc) in NAMES.into_iter().zip(branches()) {
            builder = builder.branch(Branch::new(name, svc, |id: &u64| *id));
        }
        let fan_out: FanOut<NumberBranch, u64, u64, MergeFn<_>> = builder
            .merge_fn(|gathered| Ok(gathered.iter().filter_map(|(_, r)| r.value()).sum::<u64>()))
            .build()
            .unwrap();
        bench_calls(bencher, fan_out, || 7u64);
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn futures_unordered(bencher: Bencher<'_, '_>) {
        bench_with(bencher, branches(), |svcs| {
            unordered_six(svcs, black_box(7))
                .into_iter()
                .flatten()
                .sum::<u64>()
        });
    }
}

mod http_dashboard {
    use super::*;
    use http::header::{CACHE_CONTROL, CONTENT_TYPE};
    use http::{HeaderValue, Request, Response};
    use palisade_fan_out::http::COMPLETED_HEADER;

    const PATHS: [&str; 6] = [
        "/users/{id}",
        "/users/{id}/orders",
        "/users/{id}/products",
        "/users/{id}/reviews",
        "/users/{id}/rewards",
        "/users/{id}/notifications",
    ];

    fn incoming() -> Request<()> {
        Request::get("/api/dashboard/user/12345").body(()).unwrap()
    }

    fn backends() -> [ParseJson<HttpBackend>; 6] {
        [0, 1, 2, 3, 4, 5].map(|i| ParseJson::new(HttpBackend(i), 1024 * 1024))
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn hand_join(bencher: Bencher<'_, '_>) {
        bench_with(bencher, backends(), |svcs| {
            let request = incoming();
            let id = request.uri().path().rsplit('/').next().unwrap();
            let mut i = 0;
            let answers = join_six(svcs, || {
                let path = PATHS[i].replace("{id}", id);
                i += 1;
                Request::get(format!("http://backend.test:8080{path}"))
                    .body(String::new())
                    .unwrap()
            });
            let body = keyed(answers).to_string();
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(COMPLETED_HEADER, HeaderValue::from_static("true"));
            black_box(headers.get(CACHE_CONTROL));
            response
        });
    }

    #[divan::bench(threads = [1, 2], sample_count = 1000, sample_size = 32)]
    fn fan_out(bencher: Bencher<'_, '_>) {
        let route = Route::new("/api/dashboard/user/{id}").unwrap();
        let mut builder = FanOut::builder("dashboard");
        for ((name, path), svc) in NAMES.into_iter().zip(PATHS).zip(backends()) {
            let target = route.target("http://backend.test:8080", path).unwrap();
            builder = builder.branch(Branch::http(name, svc, target));
        }
        let fan_out = builder
            .merge(JsonResponse::<String>::keyed())
            .build()
            .unwrap();
        bench_calls(bencher, fan_out, incoming);
    }
}
