//! Operations end to end: the admin API, /metrics, health and readiness,
//! the dashboard and its event stream, and graceful shutdown.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use palisade_gateway::app;
use support::{
    Gate, TestGateway, client, dashboard_snapshot, demo_config, get as http_get, request, send,
};
use tower::ServiceExt;

#[tokio::test]
async fn chaos_values_out_of_range_are_refused_naming_the_field_and_zero_latency_is_none() {
    let gw = TestGateway::start(demo_config(""), Some("tok")).await;
    let c = client();
    let patch = |json: &str| {
        request(
            Method::PATCH,
            &gw.url("/admin/chaos/reward"),
            Some("tok"),
            Some(json),
        )
    };
    // Bounded: a latency of at most a minute, rates in [0, 1]; the problem
    // names the field, and nothing changes.
    for (body, field) in [
        (r#"{"latency_ms": 60001}"#, "latency_ms"),
        (r#"{"latency_ms": 18446744073709551615}"#, "latency_ms"),
        (r#"{"latency_max_ms": 3600000}"#, "latency_max_ms"),
        (
            r#"{"latency_min_ms": 70000, "latency_max_ms": 80000}"#,
            "latency_min_ms",
        ),
        (
            r#"{"latency_min_ms": 500, "latency_max_ms": 100}"#,
            "latency_min_ms",
        ),
        (r#"{"error_rate": 1.01}"#, "error_rate"),
        (r#"{"abort_rate": -0.5}"#, "abort_rate"),
        (r#"{"latency_rate": 7}"#, "latency_rate"),
    ] {
        let res = send(&c, patch(body)).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            res.body
        );
        assert_eq!(res.header("content-type"), "application/problem+json");
        let problem = res.json();
        assert_eq!(problem["field"], field, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{problem}"
        );
    }
    let chaos = gw.state.chaos().get("reward").unwrap();
    assert_eq!(chaos.settings(), palisade::chaos::ChaosSettings::default());
    // The bound itself is accepted.
    let res = send(&c, patch(r#"{"latency_ms": 60000}"#)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["latency_max_ms"], 60000);
    assert_eq!(res.json()["latency_rate"], 1.0);
    // Zero latency: no latency injection, not "every call delayed by 0".
    let res = send(&c, patch(r#"{"latency_ms": 0}"#)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["latency_max_ms"], 0);
    assert_eq!(res.json()["latency_rate"], 0.0);
    assert_eq!(
        http_get(&c, &gw.url("/api/reward/users/3/rewards"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(chaos.injected().latency, 0, "no call was delayed");
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_api_is_disabled_without_a_token() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    for (method, path) in [
        (Method::GET, "/admin/chaos"),
        (Method::PATCH, "/admin/chaos/user"),
        (Method::GET, "/admin/x"),
    ] {
        let res = send(
            &c,
            request(method, &gw.url(path), Some("anything"), Some("{}")),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(res.json()["title"], "admin API disabled");
        assert!(res.detail().contains("PALISADE_ADMIN_TOKEN"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_api_wants_the_right_bearer_token() {
    let gw = TestGateway::start(demo_config(""), Some("s3cret")).await;
    let c = client();
    for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
        let res = send(
            &c,
            request(Method::GET, &gw.url("/admin/chaos"), token, None),
        )
        .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(
            res.header("www-authenticate"),
            "Bearer realm=\"palisade-admin\""
        );
        assert_eq!(res.header("content-type"), "application/problem+json");
    }
    let res = send(
        &c,
        request(Method::GET, &gw.url("/admin/chaos"), Some("s3cret"), None),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let names: BTreeSet<String> = res.json()["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backend"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = palisade_gateway::config::DEMO_SERVICES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(names, expected);
    gw.stop().await;
}

#[tokio::test]
async fn chaos_knobs_through_the_admin_api_change_what_clients_see() {
    let gw = TestGateway::start(demo_config(""), Some("tok")).await;
    let c = client();
    let admin = |method: Method, path: &str, json: Option<&str>| {
        request(method, &gw.url(path), Some("tok"), json)
    };

    // Outage on: the proxied call gets the backend's 503.
    let res = send(
        &c,
        admin(
            Method::PATCH,
            "/admin/chaos/reward",
            Some(r#"{"outage": true}"#),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["outage"], true);
    assert_eq!(
        http_get(&c, &gw.url("/api/reward/users/3/rewards"))
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let shown = send(&c, admin(Method::GET, "/admin/chaos/reward", None))
        .await
        .json();
    assert_eq!(shown["injected"]["outage"], 1);

    // Error rate 1: every call is a 500.
    send(
        &c,
        admin(
            Method::PATCH,
            "/admin/chaos/reward",
            Some(r#"{"outage": false, "error_rate": 1.0}"#),
        ),
    )
    .await;
    assert_eq!(
        http_get(&c, &gw.url("/api/reward/users/3/rewards"))
            .await
            .status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // Latency: 150 ms added to every call (no rate given means every call).
    let res = send(
        &c,
        admin(
            Method::PATCH,
            "/admin/chaos/reward",
            Some(r#"{"error_rate": 0, "latency_ms": 150}"#),
        ),
    )
    .await;
    assert_eq!(res.json()["latency_rate"], 1.0);
    assert_eq!(res.json()["latency_max_ms"], 150);
    let start = tokio::time::Instant::now();
    assert_eq!(
        http_get(&c, &gw.url("/api/reward/users/3/rewards"))
            .await
            .status,
        StatusCode::OK
    );
    assert!(start.elapsed() >= Duration::from_millis(150));

    // Reset: back to no chaos.
    let res = send(&c, admin(Method::POST, "/admin/chaos/reward/reset", None)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["latency_max_ms"], 0);
    assert_eq!(res.json()["outage"], false);

    // Bad input: 422 for bad values and unknown fields, 400 for broken JSON,
    // 404 for an unknown backend; nothing changes.
    for body in [
        r#"{"error_rate": 2}"#,
        r#"{"abort_rate": -1}"#,
        r#"{"latency_ms": 5, "latency_max_ms": 9}"#,
        r#"{"outtage": true}"#,
    ] {
        let res = send(&c, admin(Method::PATCH, "/admin/chaos/reward", Some(body))).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            res.body
        );
        assert_eq!(res.header("content-type"), "application/problem+json");
    }
    let res = send(
        &c,
        admin(Method::PATCH, "/admin/chaos/reward", Some("{not json")),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = send(&c, admin(Method::PATCH, "/admin/chaos/nope", Some("{}"))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = send(&c, admin(Method::GET, "/admin/nothing-here", None)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let settings = gw.state.chaos().get("reward").unwrap().settings();
    assert_eq!(settings, palisade::chaos::ChaosSettings::default());
    gw.stop().await;
}

// ===== /metrics =====

/// Checks `text` against the Prometheus text exposition format (0.0.4) and
/// returns its samples as `name{labels}` → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(s: &str) -> f64 {
        match s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => s
                .parse()
                .unwrap_or_else(|_| panic!("bad sample value {s:?}")),
        }
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts
                .next()
                .unwrap_or_else(|| panic!("bad comment {line:?}"));
            assert!(is_name(name), "bad metric name in {line:?}");
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "bad type in {line:?}"
                );
                assert!(
                    types.insert(name.to_owned(), t.to_owned()).is_none(),
                    "TYPE given twice for {name}"
                );
            }
            continue;
        }
        // name{label="value",...} value [timestamp]
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line
                    .rfind('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels = &line[open + 1..close];
                // Each label: name="escaped value".
                let mut rest = labels;
                while !rest.is_empty() {
                    let eq = rest
                        .find('=')
                        .unwrap_or_else(|| panic!("bad label in {line:?}"));
                    assert!(is_name(&rest[..eq]), "bad label name in {line:?}");
                    let after = &rest[eq + 1..];
                    assert!(after.starts_with('"'), "unquoted label value in {line:?}");
                    let mut end = None;
                    let mut escaped = false;
                    for (i, c) in after.char_indices().skip(1) {
                        match (escaped, c) {
                            (true, '\\' | '"' | 'n') => escaped = false,
                            (true, _) => panic!("bad escape in {line:?}"),
                            (false, '\\') => escaped = true,
                            (false, '"') => {
                                end = Some(i);
                                break;
                            }
                            (false, '\n') => panic!("raw newline in {line:?}"),
                            _ => {}
                        }
                    }
                    let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                    rest = after[end + 1..]
                        .strip_prefix(',')
                        .unwrap_or(&after[end + 1..]);
                }
                (&line[..=close], line[close + 1..].trim())
            }
            None => {
                let (n, v) = line
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("no value in {line:?}"));
                (n, v.trim())
            }
        };
        let name = series.split('{').next().unwrap();
        assert!(is_name(name), "bad sample name in {line:?}");
        let family = types
            .keys()
            .find(|f| {
                name == f.as_str()
                    || [&**f, "_bucket"].concat() == name
                    || [&**f, "_sum"].concat() == name
                    || [&**f, "_count"].concat() == name
            })
            .unwrap_or_else(|| panic!("sample {name} has no TYPE line before it"));
        let _ = family;
        let mut fields = rest.split_whitespace();
        let v = value(
            fields
                .next()
                .unwrap_or_else(|| panic!("no value in {line:?}")),
        );
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
        }
        assert!(fields.next().is_none(), "trailing fields in {line:?}");
        samples.insert(series.to_owned(), v);
    }
    samples
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_requests() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(
            http_get(&c, &gw.url("/api/product/products/1"))
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        http_get(&c, &gw.url("/api/product/products/99999"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let res = http_get(&c, &gw.url("/metrics")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    let samples = parse_prometheus(&res.body);
    // The recorder is process-wide and other tests run in this binary: at
    // least what this test sent is counted.
    let ok = samples[r#"palisade_gateway_requests_total{upstream="product",status="2xx"}"#];
    let missing = samples[r#"palisade_gateway_requests_total{upstream="product",status="4xx"}"#];
    assert!(ok >= 3.0 && missing >= 1.0, "{ok} {missing}");
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("palisade_gateway_request_duration_seconds"))
    );
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("palisade_chaos_injected_total{"))
    );
    gw.stop().await;
}

/// `promtool check metrics` (Prometheus's own linter, Debian package
/// `prometheus`) finds nothing wrong with `/metrics`: every family has its
/// `# HELP` and `# TYPE`, names and units follow the conventions. Run by
/// hand without promtool, the test prints that it skipped; with `CI=true`
/// it fails.
#[tokio::test]
async fn metrics_pass_promtool_check() {
    let Some(promtool) = support::find_tool("promtool", "PALISADE_PROMTOOL") else {
        assert!(
            !support::ci(),
            "CI=true but promtool is missing: install Debian's prometheus package"
        );
        println!("skipped: the check needs promtool (Debian package prometheus)");
        return;
    };
    let gw = TestGateway::start(layered_config(), Some("t")).await;
    let c = client();
    // Every family the gateway exports: proxied calls (2xx, 4xx), the
    // aggregator (fan-out), chaos, breakers, bulkheads, retries.
    for path in [
        "/api/user/users/1",
        "/api/product/products/99999",
        "/api/dashboard/user/3",
    ] {
        let _ = http_get(&c, &gw.url(path)).await;
    }
    let res = http_get(&c, &gw.url("/metrics")).await;
    assert_eq!(res.status, StatusCode::OK);
    for family in [
        "palisade_gateway_requests_total",
        "palisade_gateway_request_duration_seconds",
        "palisade_fan_out_",
        "palisade_circuit_breaker_",
        "palisade_bulkhead_",
        "palisade_retry_",
        "palisade_chaos_",
    ] {
        assert!(res.body.contains(family), "{family} missing: {}", res.body);
    }
    let mut child = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, res.body.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
    gw.stop().await;
}

#[test]
fn the_prometheus_checker_rejects_broken_text() {
    for bad in [
        "no_type 1\n",
        "# TYPE x counter\nx{a=\"1\" 1\n",
        "# TYPE x counter\nx{a=1} 1\n",
        "# TYPE x counter\nx one\n",
        "# TYPE x countr\nx 1\n",
        "# TYPE 9x counter\n9x 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_prometheus(bad)).is_err(),
            "{bad:?} must be refused"
        );
    }
    let good = parse_prometheus(
        "# HELP x help text\n# TYPE x counter\nx{a=\"q\\\"uote\"} 2\nx 3 1700000000\n",
    );
    assert_eq!(good.len(), 2);
}

// ===== health, dashboard =====

#[tokio::test]
async fn health_readiness_and_the_dashboard_page() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let res = http_get(&c, &gw.url("/healthz")).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "ok\n"));
    let res = http_get(&c, &gw.url("/readyz")).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "ready\n"));
    let page = http_get(&c, &gw.url("/dashboard")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.body.contains("EventSource(\"/dashboard/events\")"));
    // (The SVG namespace is a name, never fetched.)
    let body = page.body.replace("\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "no external resources"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_event_stream_sends_snapshots_with_the_traffic() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    for _ in 0..4 {
        http_get(&c, &gw.url("/api/user/users/1")).await;
    }
    gw.state.chaos().get("user").unwrap().set_outage(true);
    http_get(&c, &gw.url("/api/user/users/1")).await;

    let snap = dashboard_snapshot(&gw).await;
    let user = snap["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "user")
        .unwrap();
    assert_eq!(user["requests"], 5);
    assert_eq!(user["errors"], 1);
    assert!((user["error_pct"].as_f64().unwrap() - 20.0).abs() < 1e-9);
    assert!(user["latency_p50_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(user["chaos"]["outage"], true);
    assert_eq!(user["prefixes"][0], "/api/user");
    assert!(user["circuit_breaker"].is_null() && user["bulkhead"].is_null());
    gw.stop().await;
}

// ===== shutdown =====

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_returns() {
    let mut gate = Gate::start().await;
    let extra = gate.upstream_toml("slow", 30000, "");
    let mut gw = TestGateway::start(demo_config(&extra), None).await;
    let url = gw.url("/api/slow/hold");
    let in_flight = tokio::spawn(async move { http_get(&client(), &url).await });
    gate.entered().await;

    gw.begin_stop();
    tokio::time::timeout(Duration::from_secs(10), gw.state.lifecycle().wait())
        .await
        .expect("shutdown begins");
    // Not ready any more, as a load balancer polling it would see.
    let ready = app(&gw.state)
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // No new connections are accepted.
    gw.wait_until_refusing().await;
    // The in-flight request still completes.
    assert!(
        !gw.task.as_ref().unwrap().is_finished(),
        "serve waits for the in-flight request"
    );
    gate.release(in_flight).await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_answers_readyz_503_to_new_connections_for_the_grace_then_stops_accepting() {
    const GRACE: Duration = Duration::from_secs(2);
    let mut gate = Gate::start().await;
    let extra = gate.upstream_toml("slow", 30000, "");
    let mut config = demo_config(&extra);
    config.server.shutdown_grace = GRACE;
    let mut gw = TestGateway::start(config, None).await;
    assert_eq!(
        http_get(&client(), &gw.url("/readyz")).await.status,
        StatusCode::OK
    );
    let url = gw.url("/api/slow/hold");
    let in_flight = tokio::spawn(async move { http_get(&client(), &url).await });
    gate.entered().await;

    let signalled = tokio::time::Instant::now();
    gw.begin_stop();
    tokio::time::timeout(Duration::from_secs(10), gw.state.lifecycle().wait())
        .await
        .expect("shutdown begins");
    // A load balancer's next check, on a new connection, sees "not ready";
    // the gateway still accepts and serves meanwhile.
    let ready = http_get(&client(), &gw.url("/readyz")).await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    );
    assert_eq!(
        http_get(&client(), &gw.url("/healthz")).await.status,
        StatusCode::OK,
        "alive, only not ready"
    );
    assert_eq!(
        http_get(&client(), &gw.url("/api/user/users/1"))
            .await
            .status,
        StatusCode::OK,
        "still serving during the grace"
    );
    // After the grace: new connections are refused...
    gw.wait_until_refusing().await;
    assert!(
        signalled.elapsed() >= GRACE,
        "accepting stopped only after the grace, at {:?}",
        signalled.elapsed()
    );
    // ...while the request in flight since before the signal still
    // completes, and only then does `serve` return.
    assert!(
        !gw.task.as_ref().unwrap().is_finished(),
        "serve waits for the in-flight request"
    );
    gate.release(in_flight).await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_gives_up_on_stragglers_at_the_drain_deadline() {
    let mut gate = Gate::start().await;
    let mut config = demo_config(&gate.upstream_toml("slow", 60000, ""));
    config.server.drain_timeout = Duration::from_millis(200);
    let mut gw = TestGateway::start(config, None).await;
    let url = gw.url("/api/slow/hold");
    let _stuck = tokio::spawn(async move {
        client()
            .request(Request::get(url).body(Body::empty()).unwrap())
            .await
    });
    gate.entered().await;
    let start = tokio::time::Instant::now();
    gw.begin_stop();
    let task = gw.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "waited for the deadline: {took:?}"
    );
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const DRAIN: Duration = Duration::from_secs(20);
    let mut config = demo_config("");
    config.server.drain_timeout = DRAIN;
    let mut gw = TestGateway::start(config, None).await;
    // One request answered on a keep-alive connection, which then sits idle.
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let head_end = loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
        if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    while answer.len() < head_end + length {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed in the middle of the body");
        answer.extend_from_slice(&buf[..n]);
    }

    // The drain closes the idle connection at once, and the server returns
    // long before the drain deadline.
    let start = tokio::time::Instant::now();
    gw.begin_stop();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("the idle connection is closed when the drain begins");
    assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
    let task = gw.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns without waiting for the drain deadline")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() < DRAIN / 2, "took {:?}", start.elapsed());
}

#[tokio::test]
async fn event_streams_end_at_shutdown_so_they_do_not_hold_the_drain() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let res = c
        .request(
            Request::get(gw.url("/dashboard/events"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("a first event")
        .unwrap()
        .unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    let reader = tokio::spawn(async move { body.collect().await.map(|b| b.to_bytes().len()) });
    // With a 5 s drain deadline, stopping well before it means the stream
    // ended by itself.
    let start = tokio::time::Instant::now();
    gw.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    let rest = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(rest.is_ok(), "the stream ended cleanly: {rest:?}");
}

#[tokio::test]
async fn the_stats_count_what_the_client_saw() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    for _ in 0..3 {
        http_get(&c, &gw.url("/api/review/products/1/reviews")).await;
    }
    gw.state
        .chaos()
        .get("review")
        .unwrap()
        .set_error_rate(1.0)
        .unwrap();
    for _ in 0..2 {
        http_get(&c, &gw.url("/api/review/products/1/reviews")).await;
    }
    let s = gw.state.upstream("review").unwrap().stats().snapshot();
    assert_eq!((s.requests, s.errors), (5, 2));
    assert_eq!(s.in_flight, 0);
    gw.stop().await;
}

#[test]
fn the_request_methods_reach_the_upstream() {
    // A sanity check that `request` builds what it says (used above).
    let r = request(Method::PATCH, "http://x/y", Some("t"), Some("{}"));
    assert_eq!(r.method(), Method::PATCH);
    assert_eq!(r.headers()["authorization"], "Bearer t");
    assert_eq!(r.headers()["content-type"], "application/json");
}

// ===== breakers, bulkheads: admin API, dashboard, metrics =====

/// Every layer on the user upstream, short waits, plus the aggregator.
fn layered_config() -> palisade_gateway::Config {
    let user = "attempt_timeout_ms = 250\n\
                [upstreams.user.retry]\nmax_attempts = 2\nbackoff = { kind = \"none\" }\n\
                [upstreams.user.circuit_breaker]\ncount_window = 10\nminimum_calls = 4\nwait_in_open_ms = 60000\n\
                [upstreams.user.bulkhead]\nmax_concurrent_calls = 7\n";
    support::demo_config_with(&[("user", user)], &support::aggregator_toml(2000, 250))
}

/// The admin API serializes the pattern crates' own snapshots: a retry
/// layer's `RetrySnapshot` (its settings in force and its budget), a
/// bulkhead's `BulkheadSnapshot` (with its pools and settings).
#[tokio::test]
async fn the_admin_api_shows_the_crates_own_snapshots() {
    let gw = TestGateway::start(layered_config(), Some("tok")).await;
    let c = client();
    let admin = |path: &str| request(Method::GET, &gw.url(path), Some("tok"), None);

    let list = send(&c, admin("/admin/retries")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let retries = list.json()["retries"].as_array().unwrap().clone();
    assert_eq!(retries.len(), 1, "only the user upstream retries");
    assert_eq!(retries[0]["name"], "user");
    assert_eq!(retries[0]["settings"]["max_attempts"], 2);
    assert_eq!(retries[0]["settings"]["backoff"]["kind"], "none");
    assert!(retries[0]["budget"].is_object(), "{}", list.body);
    let one = send(&c, admin("/admin/retries/user")).await;
    assert_eq!(one.json()["settings"]["max_attempts"], 2);
    let missing = send(&c, admin("/admin/retries/order")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.detail().contains("known: user"), "{}", missing.body);

    let bulkhead = send(&c, admin("/admin/bulkheads/user")).await.json();
    assert_eq!(bulkhead["settings"]["max_concurrent_calls"], 7);
    assert_eq!(bulkhead["limit_mode"], "fixed");
    assert_eq!(bulkhead["queued"], 0);
    assert_eq!(bulkhead["pools"].as_array().unwrap().len(), 1);

    // Once an App has built the aggregator, its fan-out is listed.
    let fan_outs = send(&c, admin("/admin/fan-outs")).await.json();
    let fan_out = &fan_outs["fan_outs"][0];
    assert_eq!(fan_out["name"], "dashboard");
    assert_eq!(fan_out["settings"]["deadline"], "2s");
    assert_eq!(fan_out["branches"][0]["name"], "user");
    assert_eq!(fan_out["branches"][0]["settings"]["required"], true);
    assert_eq!(fan_out["branches"][0]["settings"]["timeout"], "250ms");
    let snap = palisade_gateway::dashboard::snapshot(&gw.state);
    let tile = snap.aggregator.expect("the aggregator's tile");
    assert_eq!(
        tile.fan_out.expect("its fan-out's snapshot").branches.len(),
        6
    );

    let chaos = send(&c, admin("/admin/chaos/user")).await.json();
    assert_eq!(chaos["name"], "demo-user");
    assert_eq!(chaos["settings"]["outage"], false);
    assert_eq!(chaos["injected"]["outage"], 0);
}

#[tokio::test]
async fn the_admin_api_lists_and_switches_breakers_and_bulkheads() {
    let gw = TestGateway::start(layered_config(), Some("tok")).await;
    let c = client();
    let admin = |method: Method, path: &str, json: Option<&str>| {
        request(method, &gw.url(path), Some("tok"), json)
    };
    for _ in 0..3 {
        http_get(&c, &gw.url("/api/user/users/2")).await;
    }

    let list = send(&c, admin(Method::GET, "/admin/circuit-breakers", None)).await;
    assert_eq!(list.status, StatusCode::OK);
    let breakers = list.json()["circuit_breakers"].as_array().unwrap().clone();
    assert_eq!(breakers.len(), 1, "only the user upstream has a breaker");
    let user = &breakers[0];
    assert_eq!(user["name"], "user");
    assert_eq!(user["state"], "closed");
    assert_eq!(user["calls"], 3);
    assert_eq!(user["failed_calls"], 0);
    assert_eq!(user["minimum_calls_reached"], false);
    assert_eq!(user["config"]["window"], "count");
    assert_eq!(user["config"]["window_size"], 10);
    assert_eq!(user["config"]["minimum_calls"], 4);
    assert_eq!(user["config"]["wait_in_open_ms"], 60_000);
    // The breaker's own snapshot, as the crate serializes it.
    assert_eq!(user["config"]["sliding_window"]["count"], 10);
    assert_eq!(user["config"]["wait_in_open"], "1m");
    assert_eq!(user["config"]["initial_state"], "closed");
    assert_eq!(user["failure_rate"], 0.0);
    assert_eq!(
        list.body.matches("\"config\"").count(),
        1,
        "one config per breaker: {}",
        list.body
    );

    // Forced open: proxied calls are refused with 503 and Retry-After-less
    // (a forced breaker does not know when it will probe).
    let forced = send(
        &c,
        admin(
            Method::POST,
            "/admin/circuit-breakers/user/force-open",
            None,
        ),
    )
    .await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.body);
    assert_eq!(forced.json()["state"], "forced_open");
    let refused = http_get(&c, &gw.url("/api/user/users/2")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("x-palisade-circuit-breaker"), "user");
    let shown = send(&c, admin(Method::GET, "/admin/circuit-breakers/user", None)).await;
    assert_eq!(shown.json()["not_permitted_calls"], 1);

    // Open (timed): the next probe is announced.
    let opened = send(
        &c,
        admin(Method::POST, "/admin/circuit-breakers/user/open", None),
    )
    .await;
    assert_eq!(opened.json()["state"], "open");
    assert!(opened.json()["next_probe_in_ms"].as_u64().unwrap() > 50_000);
    assert!(
        opened.json()["next_probe_in"].is_string(),
        "{}",
        opened.body
    );
    let refused = http_get(&c, &gw.url("/api/user/users/2")).await;
    assert!(refused.header("retry-after").parse::<u64>().unwrap() > 50);

    for (action, state) in [
        ("disable", "disabled"),
        ("metrics-only", "metrics_only"),
        ("half-open", "half_open"),
        ("close", "closed"),
        ("reset", "closed"),
    ] {
        let res = send(
            &c,
            admin(
                Method::POST,
                &format!("/admin/circuit-breakers/user/{action}"),
                None,
            ),
        )
        .await;
        assert_eq!(res.json()["state"], state, "{action}");
    }
    assert_eq!(
        http_get(&c, &gw.url("/api/user/users/2")).await.status,
        StatusCode::OK
    );
    let unknown = send(
        &c,
        admin(Method::POST, "/admin/circuit-breakers/nope/reset", None),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.detail().contains("known: user"));
    let bad = send(
        &c,
        admin(Method::POST, "/admin/circuit-breakers/user/explode", None),
    )
    .await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
    assert!(bad.detail().contains("force-open"));

    // Bulkheads: listed, resized.
    let list = send(&c, admin(Method::GET, "/admin/bulkheads", None)).await;
    let bulkheads = list.json()["bulkheads"].as_array().unwrap().clone();
    assert_eq!(bulkheads.len(), 1);
    assert_eq!(bulkheads[0]["name"], "user");
    assert_eq!(bulkheads[0]["limit"], 7);
    assert_eq!(bulkheads[0]["in_flight"], 0);
    assert_eq!(bulkheads[0]["max_wait_ms"], 0);
    let resized = send(
        &c,
        admin(
            Method::PATCH,
            "/admin/bulkheads/user",
            Some(r#"{"max_concurrent_calls": 3, "max_wait_ms": 20}"#),
        ),
    )
    .await;
    assert_eq!(resized.status, StatusCode::OK, "{}", resized.body);
    assert_eq!(resized.json()["limit"], 3);
    assert_eq!(resized.json()["max_wait_ms"], 20);
    assert_eq!(gw.state.bulkheads().get("user").unwrap().limit(), 3);
    let refused = send(
        &c,
        admin(
            Method::PATCH,
            "/admin/bulkheads/user",
            Some(r#"{"max_concurrent_calls": 0}"#),
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(gw.state.bulkheads().get("user").unwrap().limit(), 3);
    let missing = send(&c, admin(Method::GET, "/admin/bulkheads/order", None)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Without the token: refused.
    let anon = send(
        &c,
        request(
            Method::POST,
            &gw.url("/admin/circuit-breakers/user/force-open"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        gw.state
            .circuit_breakers()
            .get("user")
            .unwrap()
            .state()
            .as_str(),
        "closed"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_dashboard_snapshot_fills_the_breaker_and_bulkhead_tiles() {
    let gw = TestGateway::start(layered_config(), Some("tok")).await;
    let c = client();
    gw.state.chaos().get("user").unwrap().set_outage(true);
    for _ in 0..4 {
        http_get(&c, &gw.url("/api/user/users/2")).await;
    }
    let snap = palisade_gateway::dashboard::snapshot(&gw.state);
    let user = snap.upstreams.iter().find(|u| u.name == "user").unwrap();
    let cb = user
        .circuit_breaker
        .as_ref()
        .expect("the user stack has a breaker");
    assert_eq!(cb.snapshot.state, palisade::circuit_breaker::State::Open);
    assert!(cb.next_probe_in_ms.unwrap() > 50_000);
    assert_eq!(cb.failure_rate_pct, Some(100.0));
    assert_eq!(
        cb.slow_call_rate_pct, None,
        "no slow-call detection configured"
    );
    let bh = user
        .bulkhead
        .as_ref()
        .expect("the user stack has a bulkhead");
    assert_eq!(
        (
            bh.snapshot.in_flight,
            bh.snapshot.limit,
            bh.waiting,
            bh.snapshot.rejected
        ),
        (0, 7, 0, 0)
    );
    let order = snap.upstreams.iter().find(|u| u.name == "order").unwrap();
    assert!(order.circuit_breaker.is_none() && order.bulkhead.is_none());
    // The same as JSON on the event stream's wire.
    let json = serde_json::to_value(&snap).unwrap();
    let tile = json["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "user")
        .unwrap()
        .clone();
    assert_eq!(tile["circuit_breaker"]["state"], "open");
    assert_eq!(tile["bulkhead"]["limit"], 7);
    gw.stop().await;
}

#[tokio::test]
async fn metrics_carry_every_palisade_layer() {
    let gw = TestGateway::start(layered_config(), None).await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(
            http_get(&c, &gw.url("/api/user/users/5")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        http_get(&c, &gw.url("/api/dashboard/user/5")).await.status,
        StatusCode::OK
    );
    let res = http_get(&c, &gw.url("/metrics")).await;
    let samples = parse_prometheus(&res.body);
    for family in [
        "palisade_circuit_breaker_calls_total",
        "palisade_circuit_breaker_state",
        "palisade_retry_requests_total",
        "palisade_retry_attempts_total",
        "palisade_bulkhead_in_flight",
        "palisade_bulkhead_limit",
        "palisade_fan_out_gathers_total",
        "palisade_fan_out_branch_total",
        "palisade_gateway_requests_total",
        "palisade_chaos_injected_total",
    ] {
        assert!(
            samples.keys().any(|k| k.starts_with(family)),
            "{family} missing from /metrics"
        );
    }
    let calls = samples
        .iter()
        .filter(|(k, _)| {
            k.starts_with("palisade_circuit_breaker_calls_total{")
                && k.contains("name=\"user\"")
                && k.contains("outcome=\"success\"")
        })
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert!(
        calls >= 3.0,
        "two proxied calls and one aggregator branch: {calls}"
    );
    gw.stop().await;
}

// ===== the dashboard's refusals, history and waterfall =====

#[tokio::test]
async fn refusals_count_in_the_window_and_have_no_latency() {
    let gw = TestGateway::start(layered_config(), Some("tok")).await;
    let c = client();
    let breaker = gw.state.circuit_breakers().get("user").unwrap();
    breaker.transition_to(palisade::circuit_breaker::State::Open);
    for _ in 0..5 {
        let res = http_get(&c, &gw.url("/api/user/users/2")).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let snap = palisade_gateway::dashboard::snapshot(&gw.state);
    let user = snap.upstreams.iter().find(|u| u.name == "user").unwrap();
    assert_eq!((user.requests, user.errors, user.refused), (5, 5, 5));
    // Only refusals in the window: no latency to show.
    assert_eq!((user.latency_p50_ms, user.latency_p99_ms), (None, None));
    let cb = user.circuit_breaker.as_ref().unwrap();
    assert_eq!((cb.refused, cb.rejected), (5, 5));
    assert_eq!(user.bulkhead.as_ref().unwrap().refused, 0);
    // A call that reaches the backend has one.
    breaker.reset();
    assert_eq!(
        http_get(&c, &gw.url("/api/user/users/2")).await.status,
        StatusCode::OK
    );
    let snap = palisade_gateway::dashboard::snapshot(&gw.state);
    let user = snap.upstreams.iter().find(|u| u.name == "user").unwrap();
    assert_eq!((user.requests, user.refused), (6, 5));
    assert!(user.latency_p50_ms.is_some());
    gw.stop().await;
}

#[tokio::test]
async fn the_snapshot_sends_each_history_point_once() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    assert_eq!(
        http_get(&c, &gw.url("/api/user/users/2")).await.status,
        StatusCode::OK
    );
    // Once a second has ended, it is in the history.
    let first = support::eventually(Duration::from_secs(10), || {
        let snap = palisade_gateway::dashboard::snapshot(&gw.state);
        async move {
            let user = snap.upstreams.into_iter().find(|u| u.name == "user")?;
            user.history
                .iter()
                .any(|p| p.requests == 1)
                .then_some(user.history)
        }
    })
    .await;
    assert_eq!(first[0].t, 0, "from the first second");
    assert_eq!(first.iter().map(|p| p.requests).sum::<u64>(), 1);
    assert!(first.windows(2).all(|w| w[1].t == w[0].t + 1), "{first:?}");
    // A stream that has sent them gets only what is newer.
    let sent: BTreeMap<String, u64> = [("user".to_owned(), first.last().unwrap().t)].into();
    let next = palisade_gateway::dashboard::snapshot_since(&gw.state, &sent);
    let user = next.upstreams.iter().find(|u| u.name == "user").unwrap();
    assert!(user.history.iter().all(|p| p.t > first.last().unwrap().t));
    let review = next.upstreams.iter().find(|u| u.name == "review").unwrap();
    assert!(
        !review.history.is_empty(),
        "all of it for an upstream not sent yet"
    );
    assert_eq!(next.history_secs, 300);
    gw.stop().await;
}

#[tokio::test]
async fn the_aggregator_times_its_branches_for_server_timing_and_the_waterfall() {
    let latencies = [
        ("user", 20),
        ("order", 30),
        ("product", 25),
        ("review", 15),
        ("reward", 10),
        ("notification", 40),
    ];
    let mut config = demo_config(&support::aggregator_toml(3000, 2000));
    for (name, ms) in latencies {
        config
            .demo
            .as_mut()
            .unwrap()
            .backends
            .get_mut(name)
            .unwrap()
            .latency = Duration::from_millis(ms);
    }
    let gw = TestGateway::start(config, None).await;
    let c = client();
    assert!(gw.state.last_gather().is_none());
    let res = http_get(&c, &gw.url("/api/dashboard/user/7")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // Server-Timing: a span per branch, then the whole gather.
    let timing = res.header("server-timing").to_owned();
    for (name, _) in latencies {
        assert!(
            timing.contains(&format!("{name};start=")) && timing.contains("desc=ok"),
            "{timing}"
        );
    }
    assert!(
        timing.ends_with(|c: char| c.is_ascii_digit()) && timing.contains(", gather;dur="),
        "{timing}"
    );

    // The dashboard keeps it, each branch in the config's order.
    let snap = palisade_gateway::dashboard::snapshot(&gw.state);
    let agg = snap.aggregator.expect("the config has an aggregator");
    assert_eq!(agg.route, "/api/dashboard/user/{id}");
    let last = agg.last.expect("the gather was kept");
    assert_eq!(
        (last.status, last.path.as_str()),
        (200, "/api/dashboard/user/7")
    );
    let names: Vec<&str> = last.branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, latencies.map(|(n, _)| n));
    for (b, (_, ms)) in last.branches.iter().zip(latencies) {
        assert_eq!(b.outcome, "ok", "{b:?}");
        assert_eq!(b.required, b.name == "user" || b.name == "order");
        let (start, took) = (b.start_ms.unwrap(), b.duration_ms.unwrap());
        assert!(
            took >= ms as f64,
            "{b:?} took less than its backend's latency"
        );
        assert!(
            start + took <= last.total_ms,
            "{b:?} ends within the gather ({})",
            last.total_ms
        );
    }
    // In parallel: the gather takes about the slowest branch, not the sum.
    let sum: f64 = last.branches.iter().map(|b| b.duration_ms.unwrap()).sum();
    assert!((last.sequential_ms - sum).abs() < 1e-6);
    assert!(last.total_ms >= 40.0, "{last:?}");
    assert!(
        last.total_ms < last.sequential_ms,
        "parallel {} ms vs sequential {} ms",
        last.total_ms,
        last.sequential_ms
    );

    // A required branch failing: kept too, saying which and how.
    gw.state.chaos().get("order").unwrap().set_outage(true);
    let failed = support::eventually(Duration::from_secs(10), || {
        let c = c.clone();
        let url = gw.url("/api/dashboard/user/8");
        let state = gw.state.clone();
        async move {
            let res = http_get(&c, &url).await;
            assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.body);
            state.last_gather().filter(|g| g.status == 502)
        }
    })
    .await;
    let order = failed.branches.iter().find(|b| b.name == "order").unwrap();
    assert_eq!(order.outcome, "error", "{failed:?}");
    gw.stop().await;
}
