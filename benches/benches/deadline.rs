//! Deadline and fallback benchmarks, side by side in one run:
//!
//! - `per_call`: one HTTP request (`http::Request<()>`, built in every
//!   variant) through the bare `Identity` service; tower's `Timeout` (10 s,
//!   one `Sleep` per call); palisade's `DeadlineLayer` with a 10 s budget
//!   (the default: the deadline set as an extension and written on as
//!   `x-palisade-timeout-ms`), and without the header written; and a request
//!   already carrying a deadline, through a layer that only carries it
//!   (`enforce(false)`, no budget), as a client stack below a server's layer
//!   would.
//! - `server_request`: the same with a request as a server hands it on
//!   (four headers and one extension already there, built in every variant):
//!   the deadline's extension and header then go into maps that exist.
//! - `threads`: tower's `Timeout` and ours from 1 and 2 threads through one
//!   layer.
//! - `fallback`: palisade's `FallbackLayer` (a value answer) over `Identity`
//!   with a `u64` request, against the bare service: what the layer costs
//!   when nothing fails. tower has no fallback to compare with.
//!
//! Every layer is built outside the timed loop; every call is `poll_ready`,
//! `call` and polls of the response future with a no-op waker, inside a
//! tokio runtime context (tower's `Timeout` needs one to create its timer).
//! Allocations per call come from divan's `AllocProfiler`.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p palisade-benches --bench deadline`

use std::time::Duration;

use divan::{AllocProfiler, Bencher, black_box};
use http::Request;
use palisade_benches::{Identity, call_now, enter_runtime};
use palisade_core::Deadline;
use palisade_deadline::DeadlineLayer;
use palisade_fallback::FallbackLayer;
use tower::Layer;
use tower::timeout::TimeoutLayer;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const THREADS: &[usize] = &[1, 2];
const BUDGET: Duration = Duration::from_secs(10);

fn deadline(write_headers: bool) -> DeadlineLayer {
    DeadlineLayer::builder("bench")
        .budget(BUDGET)
        .write_headers(write_headers)
        .build()
        .expect("valid")
}

#[divan::bench_group(sample_count = 200)]
mod per_call {
    use super::*;

    #[divan::bench]
    fn identity(bencher: Bencher<'_, '_>) {
        let mut svc = Identity;
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(Request::new(())))));
    }

    #[divan::bench]
    fn tower_timeout(bencher: Bencher<'_, '_>) {
        let mut svc = TimeoutLayer::new(BUDGET).layer(Identity);
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(Request::new(())))));
    }

    #[divan::bench]
    fn palisade_deadline(bencher: Bencher<'_, '_>) {
        let mut svc = deadline(true).layer(Identity);
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(Request::new(())))));
    }

    #[divan::bench]
    fn palisade_deadline_no_header(bencher: Bencher<'_, '_>) {
        let mut svc = deadline(false).layer(Identity);
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(Request::new(())))));
    }

    /// The request arrives with its deadline (set outside the timed call in
    /// every other variant too: here the extension's allocation is part of
    /// building the request); the layer carries it and writes the header.
    #[divan::bench]
    fn palisade_deadline_carried(bencher: Bencher<'_, '_>) {
        let mut svc = DeadlineLayer::builder("client")
            .enforce(false)
            .build()
            .expect("valid")
            .layer(Identity);
        bencher.bench_local(|| {
            enter_runtime(|| {
                let mut req = Request::new(());
                Deadline::after(BUDGET).set_on(&mut req);
                call_now(&mut svc, black_box(req))
            })
        });
    }

    /// The same request building as `palisade_deadline_carried`, through
    /// the bare service: its baseline.
    #[divan::bench]
    fn identity_carried(bencher: Bencher<'_, '_>) {
        let mut svc = Identity;
        bencher.bench_local(|| {
            enter_runtime(|| {
                let mut req = Request::new(());
                Deadline::after(BUDGET).set_on(&mut req);
                call_now(&mut svc, black_box(req))
            })
        });
    }
}

/// A request as a server hands it on: four headers and one extension already
/// there (as hyper and axum leave them), built the same way in every
/// variant, the bare one included.
fn server_request() -> Request<()> {
    #[derive(Clone, Copy)]
    struct MatchedRoute(#[allow(dead_code, reason = "an extension of a realistic size")] u32);
    Request::get("/items/7")
        .header(http::header::HOST, "catalog.internal")
        .header(http::header::USER_AGENT, "palisade-bench")
        .header(http::header::ACCEPT, "application/json")
        .header("x-request-id", "0f3a9c2e")
        .extension(MatchedRoute(7))
        .body(())
        .expect("a valid request")
}

#[divan::bench_group(sample_count = 200)]
mod server_request {
    use super::*;

    #[divan::bench]
    fn identity(bencher: Bencher<'_, '_>) {
        let mut svc = Identity;
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(server_request()))));
    }

    #[divan::bench]
    fn tower_timeout(bencher: Bencher<'_, '_>) {
        let mut svc = TimeoutLayer::new(BUDGET).layer(Identity);
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(server_request()))));
    }

    #[divan::bench]
    fn palisade_deadline(bencher: Bencher<'_, '_>) {
        let mut svc = deadline(true).layer(Identity);
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(server_request()))));
    }

    #[divan::bench]
    fn palisade_deadline_no_header(bencher: Bencher<'_, '_>) {
        let mut svc = deadline(false).layer(Identity);
        bencher.bench_local(|| enter_runtime(|| call_now(&mut svc, black_box(server_request()))));
    }
}

#[divan::bench_group(sample_count = 200)]
mod threads {
    use super::*;

    #[divan::bench(threads = THREADS)]
    fn tower_timeout(bencher: Bencher<'_, '_>) {
        let svc = TimeoutLayer::new(BUDGET).layer(Identity);
        bencher
            .with_inputs(|| svc.clone())
            .bench_refs(|svc| enter_runtime(|| call_now(svc, black_box(Request::new(())))));
    }

    #[divan::bench(threads = THREADS)]
    fn palisade_deadline(bencher: Bencher<'_, '_>) {
        let svc = deadline(true).layer(Identity);
        bencher
            .with_inputs(|| svc.clone())
            .bench_refs(|svc| enter_runtime(|| call_now(svc, black_box(Request::new(())))));
    }
}

#[divan::bench_group(sample_count = 200)]
mod fallback {
    use super::*;

    #[divan::bench]
    fn identity(bencher: Bencher<'_, '_>) {
        let mut svc = Identity;
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }

    #[divan::bench]
    fn palisade_fallback(bencher: Bencher<'_, '_>) {
        let mut svc = FallbackLayer::builder("bench")
            .value(0u64)
            .build()
            .expect("valid")
            .layer(Identity);
        bencher.bench_local(|| call_now(&mut svc, black_box(7u64)));
    }
}
