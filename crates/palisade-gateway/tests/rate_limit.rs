//! The `/api` rate limit (`[rate_limit]`) over a real socket: a burst then
//! `429` with its headers, tiers per API key, the admin API changing a limit,
//! the dashboard's counts, unusable keys, the failure modes, and two
//! gateways sharing one limit through Redis.
//!
//! The limits are per minute, so the real clock cannot refill a key between
//! the calls of a test: what a test sees is decided by the counts alone.

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use palisade_gateway::app;
use palisade_gateway::config::Config;
use palisade_gateway::proxy::HttpClient;
use palisade_test_util::{REDIS_URL_VAR, service_url, unique_name};
use support::{Reply, TestGateway, client, dashboard_snapshot, demo_config, get, request, send};
use tower::ServiceExt;

const TOKEN: &str = "test-token";

/// A `[rate_limit]` of per-minute tiers: API keys `free` (burst 2) unless
/// listed, `k-paid` of `paid` (burst 5), clients without a key `anonymous`
/// (burst 4); then `extra`.
fn limits(extra: &str) -> String {
    format!(
        "[rate_limit]\napi_key_tier = \"free\"\nclient_ip_tier = \"anonymous\"\nrate = \"1/min\"\nburst = 3\n{extra}\n\
         [rate_limit.tiers]\nfree = {{ rate = \"1/min\", burst = 2 }}\npaid = {{ rate = \"1/min\", burst = 5 }}\nanonymous = {{ rate = \"1/min\", burst = 4 }}\n\
         [rate_limit.key_tiers]\n\"k-paid\" = \"paid\"\n"
    )
}

async fn call(c: &HttpClient, url: &str, key: Option<&str>) -> Reply {
    let mut req = Request::get(url);
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    send(c, req.body(Body::empty()).unwrap()).await
}

/// Calls until refused (at most `max` calls); the number admitted, and the
/// refusal.
async fn until_refused(c: &HttpClient, url: &str, key: Option<&str>, max: usize) -> (usize, Reply) {
    for admitted in 0..max {
        let reply = call(c, url, key).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            return (admitted, reply);
        }
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    panic!("no refusal within {max} calls");
}

#[tokio::test]
async fn a_burst_then_429_with_retry_after_the_ratelimit_fields_and_a_problem() {
    let gw = TestGateway::start(demo_config(&limits("")), None).await;
    let c = client();
    let url = gw.url("/api/product/products/1");

    let first = call(&c, &url, Some("k-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        first.header("ratelimit-policy"),
        r#""free";q=1;w=60;palisade-burst=2"#
    );
    assert_eq!(first.header("ratelimit"), r#""free";r=1;t=60"#);
    let second = call(&c, &url, Some("k-1")).await;
    assert_eq!(second.status, StatusCode::OK);

    // The refusal: the crate's answer, kept whole by the gateway, with the
    // request id the gateway gives every answer.
    let mut req = Request::get(&url).header("x-api-key", "k-1");
    req = req.header("x-request-id", "limited-call-1");
    let refused = send(&c, req.body(Body::empty()).unwrap()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        refused.header("ratelimit-policy"),
        r#""free";q=1;w=60;palisade-burst=2"#
    );
    assert_eq!(
        refused.header("ratelimit"),
        format!(r#""free";r=0;t={retry_after}"#)
    );
    assert_eq!(refused.header("x-palisade-rate-limit"), "api");
    assert_eq!(refused.header("content-type"), "application/problem+json");
    assert_eq!(refused.header("x-request-id"), "limited-call-1");
    let problem = refused.json();
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["violated-policies"][0], "free");
    assert!(
        !refused.body.contains("k-1"),
        "the key is never in the answer: {}",
        refused.body
    );

    // Another key has its own allowance; the aggregator, under /api, is
    // limited too; paths outside /api are not.
    assert_eq!(call(&c, &url, Some("k-2")).await.status, StatusCode::OK);
    let unrouted = call(&c, &gw.url("/api/nowhere"), Some("k-1")).await;
    assert_eq!(unrouted.status, StatusCode::TOO_MANY_REQUESTS);
    let health = call(&c, &gw.url("/healthz"), Some("k-1")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(!health.headers.contains_key("ratelimit"));

    // A refusal costs the upstream nothing: its statistics saw the admitted
    // calls only (two of k-1, one of k-2).
    let snap = palisade_gateway::dashboard::snapshot(&gw.state);
    let product = snap.upstreams.iter().find(|u| u.name == "product").unwrap();
    assert_eq!(product.requests, 3);

    // The limiter's metrics, by tier, never by key.
    let metrics = get(&c, &gw.url("/metrics")).await.body;
    let limited = metrics
        .lines()
        .find(|l| {
            l.starts_with("palisade_rate_limit_calls_total{")
                && l.contains("name=\"api\"")
                && l.contains("class=\"free\"")
                && l.contains("outcome=\"limited\"")
        })
        .unwrap_or_else(|| panic!("no limited count for `free` in\n{metrics}"));
    assert!(!limited.ends_with(" 0"), "{limited}");
    assert!(!metrics.contains("k-1"), "a key in the metrics");
    gw.stop().await;
}

#[tokio::test]
async fn api_keys_of_different_tiers_and_clients_without_one_have_their_own_limits() {
    let gw = TestGateway::start(demo_config(&limits("")), None).await;
    let c = client();
    let url = gw.url("/api/user/users/1");

    let (free, refused) = until_refused(&c, &url, Some("k-free"), 20).await;
    assert_eq!(free, 2);
    assert_eq!(refused.json()["violated-policies"][0], "free");

    let (paid, refused) = until_refused(&c, &url, Some("k-paid"), 20).await;
    assert_eq!(paid, 5);
    assert_eq!(
        refused.header("ratelimit-policy"),
        r#""paid";q=1;w=60;palisade-burst=5"#
    );

    // No API key: the client's address, in its own tier.
    let (anonymous, refused) = until_refused(&c, &url, None, 20).await;
    assert_eq!(anonymous, 4);
    assert_eq!(refused.json()["violated-policies"][0], "anonymous");

    let counts = gw.state.rate_limit().unwrap().handle().snapshot();
    let tier = |name: &str| counts.tiers.iter().find(|t| t.name == name).unwrap();
    assert_eq!((tier("free").admitted, tier("free").limited), (2, 1));
    assert_eq!((tier("paid").admitted, tier("paid").limited), (5, 1));
    assert_eq!(
        (tier("anonymous").admitted, tier("anonymous").limited),
        (4, 1)
    );
    assert_eq!(counts.keys, 3);
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_api_shows_the_snapshot_and_changes_a_limit_at_runtime() {
    let gw = TestGateway::start(demo_config(&limits("")), Some(TOKEN)).await;
    let c = client();
    let url = gw.url("/api/order/users/1/orders");
    let admin = |path: &str| gw.url(&format!("/admin/rate-limits{path}"));
    let put = |path: &str, json: &str| request(Method::PUT, &admin(path), Some(TOKEN), Some(json));

    let (free, _) = until_refused(&c, &url, Some("k-1"), 20).await;
    assert_eq!(free, 2);

    let list = send(&c, request(Method::GET, &admin(""), Some(TOKEN), None)).await;
    assert_eq!(list.status, StatusCode::OK);
    let one = &list.json()["rate_limits"][0];
    assert_eq!(one["name"], "api");
    assert_eq!(one["backend"], "memory");
    let free_tier = one["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "free")
        .unwrap();
    assert_eq!(free_tier["limit"]["rate"], "1/min");
    assert_eq!(free_tier["limit"]["burst"], 2);
    assert_eq!(free_tier["limited"], 1);
    assert!(!list.body.contains("k-1"), "no key in a snapshot");

    // Raise the free tier's burst: k-1 keeps what it spent (2) and has 3
    // more under the new limit.
    let changed = send(
        &c,
        put("/api/tiers/free", r#"{"rate": "1/min", "burst": 5}"#),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let shown = send(&c, request(Method::GET, &admin("/api"), Some(TOKEN), None)).await;
    let free_tier = shown.json()["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "free")
        .cloned()
        .unwrap();
    assert_eq!(free_tier["limit"]["burst"], 5);
    let (more, refused) = until_refused(&c, &url, Some("k-1"), 20).await;
    assert_eq!(more, 3);
    assert_eq!(
        refused.header("ratelimit-policy"),
        r#""free";q=1;w=60;palisade-burst=5"#
    );

    // Assign a key to a tier: k-1 is now held to `paid` (burst 5, its own
    // spending kept: 5 spent, so still refused), k-2 gets paid's burst.
    let assigned = send(&c, put("/api/key-tiers/k-2", r#"{"tier": "paid"}"#)).await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.body);
    let (k2, _) = until_refused(&c, &url, Some("k-2"), 20).await;
    assert_eq!(k2, 5);

    // Bad input: problems, nothing changed.
    for (req, status, what) in [
        (
            put("/api/tiers/free", r#"{"rate": "fast", "burst": 1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a rate that is not one",
        ),
        (
            put("/api/tiers/free", r#"{"rate": "1/s", "burst": 0}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a burst of 0",
        ),
        (
            put("/api/tiers/free", r#"{"rate": "1/s", "burst": 1, "x": 1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "an unknown field",
        ),
        (
            put("/api/tiers/free", "{not json"),
            StatusCode::BAD_REQUEST,
            "not JSON",
        ),
        (
            put("/api/tiers/bad%20name", r#"{"rate": "1/s", "burst": 1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a tier name with a space",
        ),
        (
            put("/api/key-tiers/k-3", r#"{"tier": "gold"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a tier that does not exist",
        ),
        (
            put("/nope/tiers/free", r#"{"rate": "1/s", "burst": 1}"#),
            StatusCode::NOT_FOUND,
            "a limiter that does not exist",
        ),
        (
            request(
                Method::PATCH,
                &admin("/api"),
                Some(TOKEN),
                Some(r#"{"max_delay_ms": 7200000}"#),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a delay over an hour",
        ),
        (
            request(
                Method::DELETE,
                &admin("/api/key-tiers/k-3"),
                Some(TOKEN),
                None,
            ),
            StatusCode::NOT_FOUND,
            "no such assignment",
        ),
        (
            request(
                Method::PUT,
                &admin("/api/tiers/free"),
                None,
                Some(r#"{"rate": "1/s", "burst": 1}"#),
            ),
            StatusCode::UNAUTHORIZED,
            "no token",
        ),
    ] {
        let reply = send(&c, req).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            "application/problem+json",
            "{what}"
        );
    }
    let after = gw.state.rate_limit().unwrap().handle();
    assert_eq!(after.limit("free").unwrap().burst, 5);
    assert_eq!(after.key_tier("k-3"), None);

    let patched = send(
        &c,
        request(
            Method::PATCH,
            &admin("/api"),
            Some(TOKEN),
            Some(r#"{"max_delay_ms": 250}"#),
        ),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.json()["max_delay"], "250ms");
    let removed = send(
        &c,
        request(
            Method::DELETE,
            &admin("/api/key-tiers/k-2"),
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(after.key_tier("k-2"), None);
    gw.stop().await;
}

#[tokio::test]
async fn the_dashboard_shows_each_tiers_counts_and_never_a_key() {
    let gw = TestGateway::start(demo_config(&limits("")), None).await;
    let c = client();
    let url = gw.url("/api/review/products/1/reviews");
    until_refused(&c, &url, Some("secret-key-1"), 20).await;
    until_refused(&c, &url, Some("k-paid"), 20).await;
    call(&c, &url, Some("k-paid")).await;

    let snap = dashboard_snapshot(&gw).await;
    let tile = &snap["rate_limit"];
    assert_eq!(tile["name"], "api");
    let tiers = tile["tiers"].as_array().unwrap();
    let tier = |name: &str| tiers.iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(tier("free")["admitted"], 2);
    assert_eq!(tier("free")["limited"], 1);
    assert_eq!(tier("paid")["admitted"], 5);
    assert_eq!(tier("paid")["limited"], 2);
    assert_eq!(tier("anonymous")["admitted"], 0);
    // One rate per tier, in the same order.
    let rates = tile["rates"].as_array().unwrap();
    let names: Vec<&str> = rates.iter().map(|r| r["tier"].as_str().unwrap()).collect();
    let tier_names: Vec<&str> = tiers.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, tier_names);
    let text = snap.to_string();
    assert!(
        !text.contains("secret-key-1") && !text.contains("k-paid"),
        "{text}"
    );

    // Without a [rate_limit], no panel.
    let plain = TestGateway::start(demo_config(""), None).await;
    assert!(dashboard_snapshot(&plain).await["rate_limit"].is_null());
    let page = get(&c, &gw.url("/dashboard")).await;
    assert!(page.body.contains("id=\"rate-limit\""));
    plain.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn unusable_keys_are_400_and_a_missing_client_address_a_defined_key() {
    let gw = TestGateway::start(demo_config(&limits("")), None).await;
    let c = client();
    let url = gw.url("/api/user/users/1");
    for (key, reason) in [
        ("a b".to_owned(), "malformed"),
        ("x".repeat(257), "too_long"),
        ("y".repeat(16 * 1024), "too_long"),
        (String::new(), "empty"),
    ] {
        let reply = send(
            &c,
            Request::get(&url)
                .header("x-api-key", key.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{reason}: {}",
            reply.body
        );
        assert_eq!(reply.header("content-type"), "application/problem+json");
        assert_eq!(reply.json()["reason"], reason);
        assert!(reply.headers.contains_key("x-request-id"));
    }
    // A byte that is not visible ASCII (sent raw: hyper's client refuses to
    // build it) is malformed too; the connection and the gateway survive.
    let raw = raw_get(gw.addr, "/api/user/users/1", b"x-api-key: k\xff\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    let snap = gw.state.rate_limit().unwrap().handle().snapshot();
    assert_eq!(snap.invalid_keys, 5);
    assert_eq!(
        snap.tiers
            .iter()
            .map(|t| t.admitted + t.limited)
            .sum::<u64>(),
        0
    );
    assert_eq!(call(&c, &url, Some("fine")).await.status, StatusCode::OK);

    // No client address (the gateway's service called in-process, as a
    // test or an embedding does): all such requests share the default tier's
    // one key...
    let shared = app(&gw.state);
    let in_process = |key: Option<&str>| {
        let mut req = Request::get("/api/user/users/1");
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        shared.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let res = in_process(None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""default";q=1;w=60;palisade-burst=3"#
    );
    // ... and an API key still keys the request.
    let res = in_process(Some("k-paid")).await.unwrap();
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""paid";q=1;w=60;palisade-burst=5"#
    );
    gw.stop().await;

    // Behind a proxy, over the socket: the address comes from a header. None
    // is a missing address (the shared key); garbage is a 400.
    let gw = TestGateway::start(
        demo_config(&limits(
            "client_ip_header = \"x-forwarded-for\"\nmissing_key = \"reject\"",
        )),
        None,
    )
    .await;
    let url = gw.url("/api/user/users/1");
    let missing = call(&c, &url, None).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
    assert_eq!(missing.json()["reason"], "missing");
    let garbage = send(
        &c,
        Request::get(&url)
            .header("x-forwarded-for", "not-an-address")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.json()["reason"], "malformed");
    let proxied = send(
        &c,
        Request::get(&url)
            .header("x-forwarded-for", "203.0.113.9")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(proxied.status, StatusCode::OK);
    assert_eq!(
        proxied.header("ratelimit-policy"),
        r#""anonymous";q=1;w=60;palisade-burst=4"#
    );
    gw.stop().await;
}

/// One raw HTTP/1.1 request with `headers` (CRLF-terminated lines) added;
/// the answer's text.
async fn raw_get(addr: std::net::SocketAddr, path: &str, headers: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n").into_bytes();
    req.extend_from_slice(headers);
    req.extend_from_slice(b"\r\n");
    stream.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_redis_that_does_not_answer_applies_the_failure_mode() {
    // Nothing listens on port 1: every decision fails, then the backend's
    // breaker opens.
    let down = "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\nbackend_timeout_ms = 200";
    let c = client();

    let open = TestGateway::start(
        demo_config(&limits(&format!("{down}\nfailure_mode = \"open\""))),
        None,
    )
    .await;
    let url = open.url("/api/user/users/1");
    // Open: the in-process limiter decides, with the same tiers.
    let (free, _) = until_refused(&c, &url, Some("k-1"), 20).await;
    assert_eq!(free, 2);
    let remote = open
        .state
        .rate_limit()
        .unwrap()
        .handle()
        .snapshot()
        .remote
        .unwrap();
    assert!(remote.fallbacks >= 3, "{remote:?}");
    open.stop().await;

    let closed = TestGateway::start(
        demo_config(&limits(&format!("{down}\nfailure_mode = \"closed\""))),
        None,
    )
    .await;
    let refused = call(&c, &closed.url("/api/user/users/1"), Some("k-1")).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(refused.header("content-type"), "application/problem+json");
    assert_eq!(refused.header("x-palisade-rate-limit"), "api");
    assert!(refused.headers.contains_key("x-request-id"));
    closed.stop().await;
}

#[tokio::test]
async fn two_gateways_on_one_redis_share_one_limit() {
    let Some(redis_url) = service_url(REDIS_URL_VAR, "two_gateways_on_one_redis_share_one_limit")
    else {
        return;
    };
    let prefix = unique_name("gateway-rate-limit");
    let shared = format!(
        "backend = \"redis\"\nredis_url = \"{redis_url}\"\nkey_prefix = \"{prefix}:\"\nfailure_mode = \"closed\"\nbackend_timeout_ms = 2000"
    );
    let a = TestGateway::start(demo_config(&limits(&shared)), None).await;
    let b = TestGateway::start(demo_config(&limits(&shared)), None).await;
    let c = client();
    let (url_a, url_b) = (a.url("/api/user/users/1"), b.url("/api/user/users/1"));

    // k-paid has a burst of 5 in all, whichever gateway it calls.
    let mut admitted = 0;
    for i in 0..8 {
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        let reply = call(&c, url, Some("k-paid")).await;
        match reply.status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert_eq!(admitted, 5, "two gateways admitted more than the one limit");
    // Both asked Redis (the failure mode, closed, would have answered 503).
    for gw in [&a, &b] {
        let remote = gw
            .state
            .rate_limit()
            .unwrap()
            .handle()
            .snapshot()
            .remote
            .unwrap();
        assert!(remote.decided >= 1 && remote.errors == 0, "{remote:?}");
    }
    // Another key is not affected.
    assert_eq!(
        call(&c, &url_b, Some("k-other")).await.status,
        StatusCode::OK
    );
    a.stop().await;
    b.stop().await;
    let mut conn = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[test]
fn the_section_is_read_into_the_crates_settings_with_placed_errors() {
    let cfg = Config::parse(
        "t.toml",
        &format!(
            "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n{}",
            limits("max_delay_ms = 250\nbackend_timeout = \"20ms\"")
        ),
    )
    .unwrap();
    let rl = cfg.rate_limit.unwrap();
    assert_eq!(rl.settings.max_delay, Duration::from_millis(250));
    assert_eq!(rl.settings.backend_timeout, Duration::from_millis(20));
    assert_eq!(rl.settings.tiers["paid"].burst, 5);
    assert_eq!(rl.settings.key_tiers["k-paid"], "paid");
    assert_eq!(rl.api_key_header, "x-api-key");
    assert_eq!(rl.client_ip_tier, "anonymous");

    let err = |section: &str| {
        let text =
            format!("[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n[rate_limit]\n{section}\n");
        let e = Config::parse("t.toml", &text).unwrap_err();
        (
            e.line(),
            e.column(),
            e.key().to_owned(),
            e.message().to_owned(),
        )
    };
    let (line, col, key, msg) = err("burst = 0");
    assert_eq!(
        (line, col, key.as_str()),
        (4, 9, "rate_limit.burst"),
        "{msg}"
    );
    let (line, _, key, msg) = err("rate = \"fast\"");
    assert_eq!((line, key.as_str()), (4, "rate_limit.rate"), "{msg}");
    assert!(msg.contains("invalid rate"), "{msg}");
    let (line, _, key, msg) = err("max_delay_ms = 7200000");
    assert_eq!(
        (line, key.as_str()),
        (4, "rate_limit.max_delay_ms"),
        "{msg}"
    );
    let (_, _, key, msg) = err("client_ip_tier = \"gold\"");
    assert_eq!(key, "rate_limit.client_ip_tier");
    assert!(msg.contains("no tier named `gold`"), "{msg}");
    let (_, _, key, msg) = err("backend = \"redis\"");
    assert_eq!(key, "rate_limit.redis_url", "{msg}");
    let (_, _, key, msg) = err("backend = \"etcd\"");
    assert_eq!(key, "rate_limit.backend");
    assert!(msg.contains("memory or redis"), "{msg}");
    let (_, _, key, _) = err("backend = \"redis\"\nredis_url = \"http://x\"");
    assert_eq!(key, "rate_limit.redis_url");
    let (_, _, key, _) = err("api_key_header = \"bad header\"");
    assert_eq!(key, "rate_limit.api_key_header");
    let (_, _, key, msg) = err("failure_mode = \"sideways\"");
    assert_eq!(key, "rate_limit.failure_mode");
    assert!(msg.contains("open or closed"), "{msg}");
    let (_, _, key, msg) = err("nonsense = 1");
    assert!(key.starts_with("rate_limit"), "{key}: {msg}");
    let (_, _, key, _) = err("trusted_proxies = 1");
    assert_eq!(key, "rate_limit.trusted_proxies");
    let (line, _, key, msg) = err("[rate_limit.key_tiers]\n\"k\" = \"gold\"");
    assert_eq!(key, "rate_limit.key_tiers", "{line} {msg}");

    // `enabled = false`: checked, but off.
    let off = Config::parse(
        "t.toml",
        "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n[rate_limit]\nenabled = false\n",
    )
    .unwrap();
    assert!(off.rate_limit.is_none());
    // The embedded default has one, with the demo's keys.
    let default = Config::embedded_default().rate_limit.unwrap();
    assert_eq!(default.settings.key_tiers["demo-free-key"], "free");
}

#[tokio::test(flavor = "current_thread")]
async fn a_limited_request_is_in_the_access_log_with_its_request_id() {
    let capture = palisade_test_util::EventCapture::default();
    let _guard = capture.set_default();
    let text = "[log]\naccess_log = \"all\"\n[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n\
                [rate_limit]\nrate = \"1/min\"\nburst = 1\n";
    let config = Config::parse("t.toml", text).unwrap();
    let state = palisade_gateway::AppState::from_config(&config, Default::default(), None).unwrap();
    // In-process, so no client address: every call shares the default key.
    let service = app(&state);
    let get = || {
        service
            .clone()
            .oneshot(Request::get("/api/nowhere").body(Body::empty()).unwrap())
    };
    let admitted = get().await.unwrap();
    assert_eq!(admitted.status(), StatusCode::NOT_FOUND);
    let limited = get().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let id = limited.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 16);

    let access: Vec<_> = capture
        .take()
        .into_iter()
        .filter(|e| e.target == "palisade_gateway::access")
        .collect();
    assert_eq!(access.len(), 2, "one line per request, the refused one too");
    assert_eq!(access[1].field("status"), Some("429"));
    assert_eq!(access[1].field("path"), Some("/api/nowhere"));
    assert_eq!(access[1].field("request_id"), Some(id.as_str()));
}

/// The embedded default's limits, on tokio's paused clock: the dashboard's
/// "Generate traffic" (about 35 requests a second from one address, seven
/// every 200 ms) is never refused over a minute, and a burst of curl calls
/// with the demo's free key is, after its tenth.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_default_limits_let_the_dashboard_traffic_through_but_not_a_burst() {
    let config = Config::embedded_default().rate_limit.unwrap();
    let registry = palisade::rate_limit::RateLimitRegistry::new();
    let limit = palisade_gateway::rate_limit::ApiRateLimit::build(&config, &registry).unwrap();
    let svc = tower::Layer::layer(
        limit.layer(),
        tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }),
    );
    let browser: std::net::IpAddr = [192, 0, 2, 7].into();
    let call = |key: Option<&'static str>| {
        let mut req = Request::get("/api/user/users/1");
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut().insert(browser);
        svc.clone().oneshot(req)
    };
    for _ in 0..300 {
        for _ in 0..7 {
            assert_eq!(call(None).await.unwrap().status(), StatusCode::OK);
        }
        tokio::time::advance(Duration::from_millis(200)).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(call(Some("demo-free-key")).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[..10], [200; 10]);
    assert_eq!(statuses[10..], [429; 5]);
    let snap = limit.handle().snapshot();
    let anonymous = snap.tiers.iter().find(|t| t.name == "anonymous").unwrap();
    assert_eq!((anonymous.admitted, anonymous.limited), (2100, 0));
}
