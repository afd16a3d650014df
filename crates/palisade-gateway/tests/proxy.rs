//! End to end on 127.0.0.1:0: every demo route through the gateway, the
//! proxy's header rules, streaming bodies, and each error mapping.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request as AxumRequest;
use axum::routing::any;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use support::{TestGateway, client, demo_config, get, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An upstream that echoes what it received: method, path, query, headers
/// and the body's length, and sets some hop-by-hop headers on its answer.
async fn echo_server() -> SocketAddr {
    async fn echo(req: AxumRequest) -> axum::response::Response {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").into()))
            .collect();
        let body = serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body_len": bytes.len(),
            "body_sum": bytes.iter().map(|b| u64::from(*b)).sum::<u64>(),
        });
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .header("keep-alive", "timeout=5")
            .header("x-upstream-only", "secret")
            .header("connection", "x-upstream-only")
            .header("x-kept", "yes")
            .body(Body::from(body.to_string()))
            .unwrap()
    }
    async fn big() -> Vec<u8> {
        (0..2_000_000u32).map(|i| (i % 251) as u8).collect()
    }
    let app = Router::new()
        .route("/base/big", any(big))
        .fallback(any(echo));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn with_echo() -> (TestGateway, SocketAddr) {
    let echo = echo_server().await;
    let extra = format!(
        "[upstreams.echo]\nurl = \"http://{echo}/base\"\ntimeout_ms = 2000\n[[routes]]\nprefix = \"/api/echo\"\nupstream = \"echo\"\n"
    );
    (
        TestGateway::start(demo_config(&extra), Some("t0ken")).await,
        echo,
    )
}

#[tokio::test]
async fn every_demo_route_answers_through_the_gateway_as_it_does_directly() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let cases = [
        ("user", "/users/7"),
        ("user", "/users?limit=3&offset=10"),
        ("order", "/users/7/orders"),
        ("product", "/products/42"),
        ("product", "/products?limit=2"),
        ("review", "/products/42/reviews"),
        ("review", "/users/7/reviews"),
        ("reward", "/users/7/rewards"),
        ("notification", "/users/7/notifications"),
        ("user", "/health"),
    ];
    for (service, path) in cases {
        let via = get(&c, &gw.url(&format!("/api/{service}{path}"))).await;
        let direct = get(&c, &format!("http://{}{path}", gw.backend(service))).await;
        assert_eq!(via.status, StatusCode::OK, "{service}{path}: {}", via.body);
        assert_eq!(via.header("content-type"), "application/json");
        assert_eq!(via.json(), direct.json(), "{service}{path}");
        assert!(via.headers.contains_key("x-request-id"));
    }
    // Spot-check the data.
    let user = get(&c, &gw.url("/api/user/users/7")).await.json();
    assert_eq!(user["id"], 7);
    assert!(user["email"].as_str().unwrap().ends_with("@example.com"));
    let page = get(&c, &gw.url("/api/user/users?limit=3&offset=10"))
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["items"][0]["id"], 11);
    let orders = get(&c, &gw.url("/api/order/users/7/orders")).await.json();
    if let Some(first) = orders["orders"].as_array().unwrap().first() {
        let id = first["id"].as_u64().unwrap();
        let one = get(&c, &gw.url(&format!("/api/order/orders/{id}"))).await;
        assert_eq!(one.status, StatusCode::OK);
        assert_eq!(&one.json(), first);
    }
    gw.stop().await;
}

#[tokio::test]
async fn upstream_client_errors_pass_through_and_unknown_routes_are_404() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let missing = get(&c, &gw.url("/api/user/users/5000")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("content-type"), "application/problem+json");
    let bad = get(&c, &gw.url("/api/product/products/abc")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["status"], 400);
    let nowhere = get(&c, &gw.url("/api/nope/x")).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.header("content-type"), "application/problem+json");
    gw.stop().await;
}

#[tokio::test]
async fn forwarding_headers_and_hop_by_hop_rules() {
    let (gw, echo) = with_echo().await;
    let c = client();
    let req = Request::get(gw.url("/api/echo/things/a%2Fb?x=1&y=%20"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=1")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic abc")
        .header("x-custom", "kept")
        .header("x-request-id", "client-id-123")
        .body(Body::empty())
        .unwrap();
    let res = send(&c, req).await;
    assert_eq!(res.status, StatusCode::OK);
    let seen = res.json();
    assert_eq!(
        seen["uri"], "/base/things/a%2Fb?x=1&y=%20",
        "raw path and query under the base path"
    );
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(h["host"], echo.to_string());
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(
        h["x-request-id"], "client-id-123",
        "the client's id goes upstream"
    );
    for gone in ["x-drop-me", "te", "proxy-authorization", "keep-alive"] {
        assert!(h.get(gone).is_none(), "{gone} must not be forwarded: {h}");
    }
    // Response: the id comes back; hop-by-hop headers of the upstream are dropped.
    assert_eq!(res.header("x-request-id"), "client-id-123");
    assert_eq!(res.header("x-kept"), "yes");
    assert!(res.headers.get("x-upstream-only").is_none());
    assert!(res.headers.get("keep-alive").is_none());

    // Without an id, one is generated, sent upstream and returned.
    let res = get(&c, &gw.url("/api/echo/x")).await;
    let id = res.header("x-request-id").to_owned();
    assert_eq!(id.len(), 16);
    assert_eq!(res.json()["headers"]["x-request-id"], id.as_str());
    gw.stop().await;
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let (gw, _) = with_echo().await;
    let c = client();
    // A 60 KB request body (under the 64 KiB limit), sent in chunks.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..60)
        .map(|i| Ok(bytes::Bytes::from(vec![(i % 200) as u8; 1000])))
        .collect();
    let expected_sum: u64 = (0..60u64).map(|i| (i % 200) * 1000).sum();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let req = Request::post(gw.url("/api/echo/upload"))
        .body(body)
        .unwrap();
    let res = send(&c, req).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["method"], "POST");
    assert_eq!(res.json()["body_len"], 60_000);
    assert_eq!(res.json()["body_sum"], expected_sum);

    // A 2 MB response body arrives whole and intact.
    let res = client()
        .request(
            Request::get(gw.url("/api/echo/big"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes.len(), 2_000_000);
    assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    gw.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let (gw, _) = with_echo().await;
    let c = client();
    let req = Request::post(gw.url("/api/echo/upload"))
        .body(Body::from(vec![0u8; 70_000]))
        .unwrap();
    let res = send(&c, req).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Refused up front (its Content-Length says it is over): the same
    // problem type as every other gateway problem, not `about:blank`.
    assert_eq!(res.header("content-type"), "application/problem+json");
    assert_eq!(res.json()["type"], "urn:palisade:problem:body-too-large");
    assert!(res.detail().contains("65536 bytes"), "{}", res.body);
    // Streamed without a length: refused once the limit is crossed.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..80)
        .map(|_| Ok(bytes::Bytes::from(vec![1u8; 1000])))
        .collect();
    let req = Request::post(gw.url("/api/echo/upload"))
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = send(&c, req).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(res.json()["type"], "urn:palisade:problem:body-too-large");
    gw.stop().await;
}

#[tokio::test]
async fn a_hung_upstream_is_a_504_problem_after_its_timeout() {
    let gw = TestGateway::start(demo_config(""), Some("t")).await;
    let chaos = gw.state.chaos().get("user").unwrap();
    chaos.set_abort_rate(1.0).unwrap();
    let c = client();
    let start = tokio::time::Instant::now();
    let res = get(&c, &gw.url("/api/user/users/1")).await;
    let took = start.elapsed();
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.header("content-type"), "application/problem+json");
    let body = res.json();
    assert_eq!(body["type"], "urn:palisade:problem:timeout");
    assert_eq!(body["upstream"], "user");
    assert!(body["detail"].as_str().unwrap().contains("300 ms"));
    assert!(
        took >= Duration::from_millis(300),
        "answered after the 300 ms timeout, took {took:?}"
    );
    assert!(res.headers.contains_key("x-request-id"));
    chaos.reset();
    assert_eq!(
        get(&c, &gw.url("/api/user/users/1")).await.status,
        StatusCode::OK
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_problem() {
    // A port that was free a moment ago and has nobody listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let extra = format!(
        "[upstreams.gone]\nurl = \"http://{closed}\"\n[[routes]]\nprefix = \"/api/gone\"\nupstream = \"gone\"\n"
    );
    let gw = TestGateway::start(demo_config(&extra), None).await;
    let res = get(&client(), &gw.url("/api/gone/anything")).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(res.header("content-type"), "application/problem+json");
    let body = res.json();
    assert_eq!(body["type"], "urn:palisade:problem:upstream-unreachable");
    assert_eq!(body["upstream"], "gone");
    gw.stop().await;
}

#[tokio::test]
async fn an_injected_backend_outage_reaches_the_client_as_the_backends_503() {
    let gw = TestGateway::start(demo_config(""), None).await;
    gw.state.chaos().get("order").unwrap().set_outage(true);
    let res = get(&client(), &gw.url("/api/order/users/1/orders")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.json()["type"], "urn:palisade:problem:chaos-outage");
    assert_eq!(res.header("x-palisade-chaos"), "demo-order");
    gw.stop().await;
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answered")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_and_the_gateway_keeps_serving() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let cases: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET /api/user/users/1 HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        b"GET /api/user/users/1 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for bytes in cases {
        let line = raw(gw.addr, bytes).await;
        assert!(
            line.starts_with("HTTP/1.1 4"),
            "{:?} -> {line:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // A 100 KB request line is refused, not a crash.
    let mut long = b"GET /api/user/".to_vec();
    long.extend(std::iter::repeat_n(b'a', 100_000));
    long.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let line = raw(gw.addr, &long).await;
    assert!(line.starts_with("HTTP/1.1 4"), "{line:?}");
    // Methods and odd paths.
    let c = client();
    let res = send(
        &c,
        Request::builder()
            .method(Method::DELETE)
            .uri(gw.url("/healthz"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    let res = get(&c, &gw.url("/api/user/users/%ff%fe")).await;
    assert!(res.status.is_client_error(), "{}", res.status);
    assert_eq!(get(&c, &gw.url("/healthz")).await.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn paths_with_dot_segments_get_400_and_are_not_forwarded() {
    let (gw, _) = with_echo().await;
    let c = client();
    for path in [
        "/api/echo/../../admin/chaos",
        "/api/echo/..",
        "/api/echo/./x",
        "/api/echo/x/.",
        "/api/echo/%2e%2e/%2e%2e/admin/chaos",
        "/api/echo/%2E%2E/admin",
        "/api/echo/.%2E/x",
        "/api/echo/x/%2e",
    ] {
        let res = get(&c, &gw.url(path)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}: {}", res.body);
        assert_eq!(res.header("content-type"), "application/problem+json");
        assert_eq!(res.json()["type"], "urn:palisade:problem:dot-segment");
        assert!(res.headers.contains_key("x-request-id"));
    }
    // Raw, over a socket (no client in the way).
    let line = raw(
        gw.addr,
        b"GET /api/echo/../../admin/chaos HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 400"), "{line:?}");
    // None reached the upstream: its stack saw no call.
    let stats = gw.state.upstream("echo").unwrap().stats().snapshot();
    assert_eq!(stats.requests, 0, "{stats:?}");
    // Dots inside names are names.
    for (path, forwarded) in [
        ("/api/echo/a.b", "/base/a.b"),
        ("/api/echo/.../x", "/base/.../x"),
        ("/api/echo/.hidden", "/base/.hidden"),
        ("/api/echo/x?to=../y", "/base/x?to=../y"),
    ] {
        let res = get(&c, &gw.url(path)).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.body);
        assert_eq!(res.json()["uri"], forwarded);
    }
    gw.stop().await;
}

/// Spellings of `..` that an upstream (Tomcat and Spring read `..;` as `..`;
/// others decode `%2F` or read `\` as `/` before normalising) would climb
/// with, and what the gateway calls each.
const TRAVERSALS: &[(&str, &str)] = &[
    ("/api/echo/..;/admin", "dot-segment"),
    ("/api/echo/..;jsessionid=x/admin", "dot-segment"),
    ("/api/echo/..%2F..%2Fadmin", "dot-segment"),
    ("/api/echo/x/..%2f..%2fadmin", "dot-segment"),
    ("/api/echo/%2e%2e%2fadmin", "dot-segment"),
    ("/api/echo/..%5C..%5Cadmin", "dot-segment"),
    ("/api/echo/%252e%252e/admin", "dot-segment"),
    ("/api/echo/..%20/admin", "dot-segment"),
    ("/api/echo/a%5Cb", "backslash"),
    ("/api/echo/..%00/admin", "nul-byte"),
    ("/api/echo/%c0%ae%c0%ae/admin", "overlong-utf8"),
];

#[tokio::test]
async fn every_spelling_of_a_climb_gets_400_and_is_not_forwarded() {
    let (gw, _) = with_echo().await;
    let c = client();
    for (path, kind) in TRAVERSALS {
        let res = get(&c, &gw.url(path)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}: {}", res.body);
        assert_eq!(res.header("content-type"), "application/problem+json");
        assert_eq!(
            res.json()["type"],
            format!("urn:palisade:problem:{kind}"),
            "{path}"
        );
    }
    // Raw, over a socket: a literal backslash, and `..;` unencoded.
    for request in [
        &b"GET /api/echo/..\\..\\admin HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /api/echo/x\\y HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/echo/..;/..;/admin HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let line = raw(gw.addr, request).await;
        assert!(line.starts_with("HTTP/1.1 400"), "{line:?}");
    }
    // None reached the upstream.
    let stats = gw.state.upstream("echo").unwrap().stats().snapshot();
    assert_eq!(stats.requests, 0, "{stats:?}");
    // An encoded slash that makes no dot segment is forwarded as written.
    let res = get(&c, &gw.url("/api/echo/a%2Fb.txt")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["uri"], "/base/a%2Fb.txt");
    gw.stop().await;
}

#[test]
fn every_error_maps_to_its_problem() {
    // The mapping itself; the end-to-end tests meet each through real layers.
    use palisade::retry::{AttemptTimedOut, DeadlineExceeded};
    use palisade::{BoxError, BulkheadFull, CircuitOpen};
    use palisade_gateway::errors::error_response;
    let open: BoxError = CircuitOpen::new("user", Some(Duration::from_millis(2500))).into();
    let res = error_response("user", 300, 300, &*open);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "3");
    assert_eq!(res.headers()["x-palisade-circuit-breaker"], "user");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let full: BoxError = BulkheadFull::new("user").into();
    let res = error_response("user", 300, 300, &*full);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-palisade-bulkhead"], "user");
    for err in [
        BoxError::from(tower::timeout::error::Elapsed::new()),
        BoxError::from(DeadlineExceeded::new(2, Duration::from_millis(300))),
        BoxError::from(AttemptTimedOut::new(1, Duration::from_millis(100))),
    ] {
        let res = error_response("user", 300, 100, &*err);
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT, "{err}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let other: BoxError = "connection reset".into();
    assert_eq!(
        error_response("user", 300, 300, &*other).status(),
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn a_client_body_marks_its_failures_as_the_clients() {
    use http_body::Body as _;
    use palisade_gateway::errors::error_response;
    use palisade_gateway::proxy::{ClientBody, ClientFault, client_fault};
    // Data passes through untouched, under the limit.
    let body = ClientBody::new(Body::from("hello"), 5);
    assert_eq!(body.size_hint().exact(), Some(5));
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"hello");
    // Over the limit: `LengthLimitError` itself (axum's extractors answer 413
    // for it), the client's fault, and 413 from an upstream call.
    let over = ClientBody::new(Body::from("hello!"), 5)
        .collect()
        .await
        .unwrap_err();
    assert!(over.is::<http_body_util::LengthLimitError>(), "{over:?}");
    assert_eq!(client_fault(&*over), Some(ClientFault::BodyTooLarge));
    let res = error_response("sink", 300, 300, &*over);
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A body that fails (the client went away): marked, 400 from an
    // upstream call.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from_static(b"abc")),
        Err(std::io::Error::other("connection reset by peer")),
    ];
    let broken = ClientBody::new(Body::from_stream(futures_util::stream::iter(chunks)), 100)
        .collect()
        .await
        .unwrap_err();
    assert_eq!(client_fault(&*broken), Some(ClientFault::BadBody));
    let res = error_response("sink", 300, 300, &*broken);
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["type"], "urn:palisade:problem:bad-request-body");
    assert_eq!(json["upstream"], "sink");
    // Anything else is not the client's.
    let other: palisade::BoxError = "connection reset".into();
    assert_eq!(client_fault(&*other), None);
}
