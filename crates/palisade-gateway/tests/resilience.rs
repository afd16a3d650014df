//! The upstream stacks end to end on 127.0.0.1:0, through real layers: an
//! open breaker, a full bulkhead, a hung attempt, a refused connection, the
//! breaker's life through a backend outage, the layer order, and the
//! aggregator's partial answers.
//!
//! Real sockets cannot use tokio's paused clock: waits are bounded polls,
//! and the configs use short windows and waits.

mod support;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use palisade::circuit_breaker::State;
use support::{
    Gate, TestGateway, aggregator_toml, client, demo_config, demo_config_with, eventually,
    get as http_get,
};
use tokio::net::TcpListener;

/// A breaker that opens after 4 calls at 50 % failures and probes after
/// 300 ms with one call.
const FAST_BREAKER: &str = "[upstreams.user.circuit_breaker]\ncount_window = 10\nminimum_calls = 4\nfailure_rate_threshold = 50\nwait_in_open_ms = 300\npermitted_calls_in_half_open = 1\n";

#[tokio::test]
async fn a_breaker_opens_under_an_outage_answers_503_with_retry_after_and_closes_after_it() {
    let gw = TestGateway::start(demo_config_with(&[("user", FAST_BREAKER)], ""), None).await;
    let c = client();
    let url = gw.url("/api/user/users/1");
    assert_eq!(http_get(&c, &url).await.status, StatusCode::OK);
    let breaker = gw.state.circuit_breakers().get("user").expect("registered");
    assert_eq!(breaker.state(), State::Closed);

    // The outage: the backend answers 503 (counted as failures) until the
    // breaker opens and answers for it.
    let chaos = gw.state.chaos().get("user").unwrap();
    chaos.set_outage(true);
    let open = eventually(Duration::from_secs(10), || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let res = http_get(&c, &url).await;
            res.headers
                .contains_key("x-palisade-circuit-breaker")
                .then_some(res)
        }
    })
    .await;
    assert_eq!(open.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(open.header("x-palisade-circuit-breaker"), "user");
    assert_eq!(open.header("content-type"), "application/problem+json");
    let retry_after: u64 = open.header("retry-after").parse().unwrap();
    assert!(
        retry_after >= 1,
        "rounded up to a whole second: {retry_after}"
    );
    assert_eq!(open.json()["type"], "urn:palisade:problem:circuit-open");
    assert!(breaker.state().is_open(), "{:?}", breaker.state());
    let injected = chaos.injected().outage;
    // While open, calls do not reach the backend.
    assert_eq!(
        http_get(&c, &url).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(chaos.injected().outage, injected);

    // The outage ends: after the wait a probe goes through and closes it.
    chaos.set_outage(false);
    eventually(Duration::from_secs(10), || {
        let (c, url) = (c.clone(), url.clone());
        async move { (http_get(&c, &url).await.status == StatusCode::OK).then_some(()) }
    })
    .await;
    assert_eq!(breaker.state(), State::Closed);
    assert!(breaker.snapshot().not_permitted_calls >= 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_full_bulkhead_is_a_503_not_retried_and_not_a_breaker_failure() {
    let mut gate = Gate::start().await;
    let extra = gate.upstream_toml(
        "gated",
        10000,
        "[upstreams.gated.retry]\nmax_attempts = 3\nbackoff = { kind = \"none\" }\n\
         [upstreams.gated.circuit_breaker]\ncount_window = 10\nminimum_calls = 1\nwait_in_open_ms = 10000\n\
         [upstreams.gated.bulkhead]\nmax_concurrent_calls = 1\nmax_wait_ms = 0\n",
    );
    let gw = TestGateway::start(demo_config(&extra), None).await;
    let url = gw.url("/api/gated/hold");
    let held = tokio::spawn({
        let url = url.clone();
        async move { http_get(&client(), &url).await }
    });
    // The first call holds the bulkhead's one permit.
    gate.entered().await;

    let full = http_get(&client(), &url).await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(full.header("x-palisade-bulkhead"), "gated");
    assert_eq!(full.json()["type"], "urn:palisade:problem:bulkhead-full");
    assert!(full.headers.get("x-palisade-circuit-breaker").is_none());

    let bulkhead = gw.state.bulkheads().get("gated").unwrap();
    assert_eq!(
        bulkhead.rejected(),
        1,
        "refused once: the refusal was not retried"
    );
    assert_eq!(gate.calls(), 1, "only the held call reached the upstream");
    let breaker = gw.state.circuit_breakers().get("gated").unwrap().snapshot();
    assert_eq!(
        (breaker.calls, breaker.failed_calls),
        (0, 0),
        "the full bulkhead is ignored by the breaker (the held call is still in flight)"
    );
    assert_eq!(breaker.state, State::Closed);

    gate.release(held).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_hung_attempt_is_cut_by_the_attempt_timeout_counted_by_the_breaker_and_retried() {
    let layers = "attempt_timeout_ms = 100\n\
                  [upstreams.user.retry]\nmax_attempts = 3\nbackoff = { kind = \"fixed\", delay_ms = 10 }\n\
                  [upstreams.user.circuit_breaker]\ncount_window = 20\nminimum_calls = 20\nwait_in_open_ms = 10000\n";
    let mut config = demo_config_with(&[("user", layers)], "");
    config.upstreams.get_mut("user").unwrap().timeout = Duration::from_secs(5);
    let gw = TestGateway::start(config, None).await;
    let chaos = gw.state.chaos().get("user").unwrap();
    chaos.set_abort_rate(1.0).unwrap();

    let start = tokio::time::Instant::now();
    let res = http_get(&client(), &gw.url("/api/user/users/1")).await;
    let took = start.elapsed();
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.json()["type"], "urn:palisade:problem:timeout");
    assert!(res.detail().contains("each attempt 100 ms"), "{}", res.body);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "three attempts of 100 ms, well within the 5 s overall timeout: {took:?}"
    );
    assert_eq!(
        chaos.injected().abort,
        3,
        "every attempt reached the backend"
    );
    let breaker = gw.state.circuit_breakers().get("user").unwrap().snapshot();
    assert_eq!(
        (breaker.calls, breaker.failed_calls),
        (3, 3),
        "each cut attempt is a failure the breaker counted"
    );
    gw.stop().await;
}

#[tokio::test]
async fn retries_stop_when_the_breaker_opens() {
    let layers = "[upstreams.user.retry]\nmax_attempts = 5\nbackoff = { kind = \"none\" }\n\
                  [upstreams.user.circuit_breaker]\ncount_window = 10\nminimum_calls = 2\nfailure_rate_threshold = 50\nwait_in_open_ms = 10000\n";
    let gw = TestGateway::start(demo_config_with(&[("user", layers)], ""), None).await;
    let chaos = gw.state.chaos().get("user").unwrap();
    chaos.set_outage(true);
    let res = http_get(&client(), &gw.url("/api/user/users/1")).await;
    // Attempts 1 and 2 fail (503) and open the breaker; attempt 3 is refused
    // by it, and retry never retries a refusal.
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.header("x-palisade-circuit-breaker"), "user");
    assert_eq!(
        chaos.injected().outage,
        2,
        "two attempts reached the backend, not five"
    );
    let breaker = gw.state.circuit_breakers().get("user").unwrap().snapshot();
    assert_eq!((breaker.failed_calls, breaker.not_permitted_calls), (2, 1));
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_connection_through_the_full_stack_is_a_502() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let extra = format!(
        "[upstreams.gone]\nurl = \"http://{closed}\"\nattempt_timeout_ms = 500\n\
         [upstreams.gone.retry]\nmax_attempts = 2\nbackoff = {{ kind = \"none\" }}\n\
         [upstreams.gone.circuit_breaker]\nminimum_calls = 50\n\
         [upstreams.gone.bulkhead]\nmax_concurrent_calls = 4\n\
         [[routes]]\nprefix = \"/api/gone\"\nupstream = \"gone\"\n"
    );
    let gw = TestGateway::start(demo_config(&extra), None).await;
    let res = http_get(&client(), &gw.url("/api/gone/x")).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.json()["type"],
        "urn:palisade:problem:upstream-unreachable"
    );
    let breaker = gw.state.circuit_breakers().get("gone").unwrap().snapshot();
    assert_eq!(
        breaker.failed_calls, 2,
        "both attempts failed and were counted"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_aggregator_answers_partially_without_an_optional_backend_and_fails_without_a_required_one()
 {
    let gw = TestGateway::start(demo_config(&aggregator_toml(2000, 200)), None).await;
    let c = client();
    let url = gw.url("/api/dashboard/user/7");

    let all = http_get(&c, &url).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.header("x-palisade-completed"), "true");
    let body = all.json();
    for key in palisade_gateway::config::DEMO_SERVICES {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
    assert_eq!(body["user"]["id"], 7);
    assert_eq!(body["order"]["user_id"], 7);
    assert!(body.get("errors").is_none());
    // Each branch went through its upstream's stack.
    assert_eq!(
        gw.state
            .upstream("reward")
            .unwrap()
            .stats()
            .snapshot()
            .requests,
        1
    );

    // An optional backend down: 200, partial, and why.
    gw.state.chaos().get("reward").unwrap().set_outage(true);
    let partial = http_get(&c, &url).await;
    assert_eq!(partial.status, StatusCode::OK);
    assert_eq!(partial.header("x-palisade-completed"), "false");
    assert_eq!(partial.header("cache-control"), "no-store");
    let body = partial.json();
    assert_eq!(body["errors"]["reward"]["reason"], "status");
    assert_eq!(body["errors"]["reward"]["status"], 503);
    assert!(body.get("reward").is_none() || body["reward"].is_null());
    assert_eq!(body["user"]["id"], 7);

    // A required backend down: the answer fails, naming the branch.
    gw.state.chaos().get("order").unwrap().set_outage(true);
    let failed = http_get(&c, &url).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert_eq!(failed.header("content-type"), "application/problem+json");
    assert_eq!(failed.json()["branch"], "order");

    // A required branch hanging past its own timeout (200 ms, under the
    // upstream's 300 ms): 504.
    for (_, handle) in gw.state.chaos().entries() {
        handle.reset();
    }
    gw.state
        .chaos()
        .get("user")
        .unwrap()
        .set_abort_rate(1.0)
        .unwrap();
    let slow = http_get(&c, &url).await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT, "{}", slow.body);
    gw.stop().await;
}

#[tokio::test]
async fn an_open_breaker_on_a_required_branch_is_a_503_with_retry_after() {
    let layers = [("user", FAST_BREAKER)];
    let gw = TestGateway::start(
        demo_config_with(&layers, &aggregator_toml(2000, 1000)),
        None,
    )
    .await;
    let breaker = gw.state.circuit_breakers().get("user").unwrap();
    breaker.transition_to(State::Open);
    let res = http_get(&client(), &gw.url("/api/dashboard/user/3")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert!(res.headers.contains_key("retry-after"));
    assert_eq!(res.json()["branch"], "user");
    // Closed again by hand: the answer is whole again.
    breaker.reset();
    let ok = http_get(&client(), &gw.url("/api/dashboard/user/3")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-palisade-completed"), "true");
    gw.stop().await;
}

#[tokio::test]
async fn bad_or_unknown_ids_on_the_aggregator_answer_the_4xx_they_earn() {
    let gw = TestGateway::start(demo_config(&aggregator_toml(2000, 1000)), None).await;
    let c = client();
    // (path, status, reason): a non-numeric id (the backends answer 400), an
    // unknown one (404), and one the branch requests cannot be built from
    // (`..` would climb the backends' paths).
    for (path, status, reason) in [
        ("/api/dashboard/user/abc", StatusCode::BAD_REQUEST, "status"),
        ("/api/dashboard/user/99999", StatusCode::NOT_FOUND, "status"),
        (
            "/api/dashboard/user/%2e%2e",
            StatusCode::BAD_REQUEST,
            "request",
        ),
        (
            "/api/dashboard/user/%2E.",
            StatusCode::BAD_REQUEST,
            "request",
        ),
    ] {
        let res = http_get(&c, &gw.url(path)).await;
        assert_eq!(res.status, status, "{path}: {}", res.body);
        assert_eq!(res.header("content-type"), "application/problem+json");
        assert_eq!(res.header("x-palisade-completed"), "false");
        assert_eq!(res.header("cache-control"), "no-store");
        let problem = res.json();
        assert_eq!(
            problem["type"], "urn:palisade:problem:required-branch-failed",
            "{path}"
        );
        assert_eq!(problem["status"], status.as_u16());
        assert_eq!(problem["reason"], reason, "{path}: {problem}");
        // A required branch (user or order: both answer so) is named, with
        // its entry in `errors`.
        let branch = problem["branch"].as_str().unwrap();
        assert!(branch == "user" || branch == "order", "{path}: {problem}");
        assert_eq!(problem["errors"][branch]["reason"], reason, "{problem}");
        if reason == "status" {
            assert_eq!(problem["errors"][branch]["status"], status.as_u16());
        }
    }
    // A known id still answers whole.
    let ok = http_get(&c, &gw.url("/api/dashboard/user/7")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    gw.stop().await;
}

// ===== the client's faults are not the upstream's =====

/// An upstream that reads a POSTed body whole before answering (so the only
/// way its call can fail is the request body), and answers `GET /ok`.
async fn sink_upstream() -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/sink",
            axum::routing::post(|body: bytes::Bytes| async move { body.len().to_string() }),
        )
        .route("/ok", get(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A gateway with a 1000-byte body limit and the `sink` upstream behind a
/// breaker that would open after 5 calls at 50 % failures, with retries.
async fn sink_gateway() -> TestGateway {
    let upstream = sink_upstream().await;
    let extra = format!(
        "[upstreams.sink]\nurl = \"http://{upstream}\"\ntimeout_ms = 5000\n\
         [upstreams.sink.retry]\nmax_attempts = 3\n\
         [upstreams.sink.circuit_breaker]\ncount_window = 10\nminimum_calls = 5\nfailure_rate_threshold = 50\nwait_in_open_ms = 60000\n\
         [[routes]]\nprefix = \"/api/sink\"\nupstream = \"sink\"\n"
    );
    let mut config = demo_config(&extra);
    config.server.body_limit_bytes = 1000;
    TestGateway::start(config, None).await
}

/// The sink breaker is closed and has counted no failure, the dashboard
/// counts no upstream error, and a normal request still goes through.
async fn sink_is_healthy(gw: &TestGateway) {
    let breaker = gw.state.circuit_breakers().get("sink").expect("registered");
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed, "{snapshot:?}");
    assert_eq!(snapshot.failed_calls, 0, "{snapshot:?}");
    assert_eq!(snapshot.not_permitted_calls, 0, "{snapshot:?}");
    let stats = gw.state.upstream("sink").unwrap().stats().snapshot();
    assert_eq!(stats.errors, 0, "{stats:?}");
    let res = http_get(&client(), &gw.url("/api/sink/ok")).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn oversized_bodies_get_413_and_do_not_open_the_upstreams_breaker() {
    let gw = sink_gateway().await;
    let c = client();
    // Under the limit: proxied, counted as a success.
    let res = support::send(
        &c,
        http::Request::post(gw.url("/api/sink/sink"))
            .body(axum::body::Body::from(vec![7u8; 900]))
            .unwrap(),
    )
    .await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "900"));
    // Ten 5 KB bodies streamed without a length: each crosses the limit while
    // the upstream call is under way, under the breaker. Each is the
    // client's fault: 413, never a breaker failure (counted, five would
    // open the breaker and cut the upstream off for everyone).
    for i in 0..10 {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..5)
            .map(|_| Ok(bytes::Bytes::from(vec![1u8; 1000])))
            .collect();
        let req = http::Request::post(gw.url("/api/sink/sink"))
            .body(axum::body::Body::from_stream(futures_util::stream::iter(
                chunks,
            )))
            .unwrap();
        let res = support::send(&c, req).await;
        assert_eq!(
            res.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request {i}: {}",
            res.body
        );
        assert_eq!(res.json()["type"], "urn:palisade:problem:body-too-large");
    }
    sink_is_healthy(&gw).await;
    gw.stop().await;
}

/// Writes `head` and `body` on a new connection, closes the sending half,
/// and returns whatever the gateway answers before it closes.
async fn send_raw_then_close(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn malformed_or_aborted_uploads_get_400_and_do_not_open_the_upstreams_breaker() {
    let gw = sink_gateway().await;
    // A malformed chunk mid-body: the request is the client's fault, 400.
    for i in 0..6 {
        let answer = send_raw_then_close(
            gw.addr,
            b"POST /api/sink/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "malformed {i}: {answer:?}"
        );
        assert!(
            answer.contains("urn:palisade:problem:bad-request-body"),
            "{answer}"
        );
    }
    // Uploads the client abandons: 900 bytes announced, 100 sent, then the
    // sending half closed (the answer can still be read)...
    let mut aborted =
        b"POST /api/sink/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n".to_vec();
    aborted.extend_from_slice(&[b'a'; 100]);
    for i in 0..6 {
        let answer = send_raw_then_close(gw.addr, &aborted).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "aborted {i}: {answer:?}"
        );
        assert!(
            answer.contains("urn:palisade:problem:bad-request-body"),
            "{answer}"
        );
    }
    // ...or the whole connection dropped, the answer never read.
    for _ in 0..6 {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(&aborted).await.unwrap();
        drop(s);
    }
    // Every one reached the upstream's stack and has finished there.
    let stats = gw.state.upstream("sink").unwrap().stats().clone();
    eventually(Duration::from_secs(10), || {
        let s = stats.snapshot();
        async move { (s.requests >= 18 && s.in_flight == 0).then_some(()) }
    })
    .await;
    sink_is_healthy(&gw).await;
    gw.stop().await;
}
