//! Deadlines, fallbacks and hedges through the gateway, on 127.0.0.1:0: a
//! caller's deadline header honoured and cut short against a slow backend,
//! what is left of it told to the upstream, an optional aggregator branch
//! answered by its fallback, a slow product call hedged and a `POST` never.
//!
//! Real sockets cannot use tokio's paused clock: the slow backends are the
//! demo's chaos latency, and every wait is bounded.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, Request, StatusCode};
use palisade::fallback::FallbackClass;
use support::{TestGateway, client, demo_config, demo_config_with, get as http_get, send};
use tokio::net::TcpListener;

/// An upstream whose `GET /left` answers the `x-palisade-timeout-ms` header
/// it was sent (empty when none).
async fn recording_upstream() -> std::net::SocketAddr {
    let app = Router::new().route(
        "/left",
        get(|headers: HeaderMap| async move {
            headers
                .get("x-palisade-timeout-ms")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn upstream_toml(name: &str, addr: std::net::SocketAddr, timeout_ms: u64) -> String {
    format!(
        "[upstreams.{name}]\nurl = \"http://{addr}\"\ntimeout_ms = {timeout_ms}\n\
         [[routes]]\nprefix = \"/api/{name}\"\nupstream = \"{name}\"\n"
    )
}

/// What the recording upstream was told was left, in ms.
async fn told(gw: &TestGateway, header: Option<(&str, &str)>) -> u64 {
    let mut req = Request::get(gw.url("/api/rec/left"));
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let res = send(&client(), req.body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body
        .parse()
        .unwrap_or_else(|_| panic!("the upstream was told no deadline: {:?}", res.body))
}

#[tokio::test]
async fn a_small_deadline_header_against_a_slow_backend_is_a_504_deadline_problem() {
    let mut config = demo_config("");
    let user = config.upstreams.get_mut("user").unwrap();
    user.timeout = Duration::from_secs(10);
    user.attempt_timeout = Duration::from_secs(10);
    let gw = TestGateway::start(config, None).await;
    let chaos = gw.state.chaos().get("user").unwrap();
    chaos.set_latency(Duration::from_secs(5), 1.0).unwrap();

    let start = tokio::time::Instant::now();
    let req = Request::get(gw.url("/api/user/users/1"))
        .header("x-palisade-timeout-ms", "150")
        .body(Body::empty())
        .unwrap();
    let res = send(&client(), req).await;
    let took = start.elapsed();
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT, "{}", res.body);
    assert_eq!(res.header("content-type"), "application/problem+json");
    assert_eq!(
        res.json()["type"],
        "urn:palisade:problem:deadline-exceeded",
        "the caller's deadline, not the upstream's 10 s timeout: {}",
        res.body
    );
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(5),
        "cut at the caller's 150 ms, not after the backend's 5 s: {took:?}"
    );
    assert_eq!(chaos.injected().latency, 1, "the call reached the backend");
    let expired: u64 = gw
        .state
        .deadlines()
        .snapshots()
        .iter()
        .map(|d| d.expired())
        .sum();
    assert_eq!(expired, 1, "one expiry counted");

    gw.stop().await;

    // The upstream's own timeout, when it is the shorter, is still its own
    // `timeout` problem.
    let mut short = demo_config("");
    short.upstreams.get_mut("user").unwrap().timeout = Duration::from_millis(200);
    let gw = TestGateway::start(short, None).await;
    let chaos = gw.state.chaos().get("user").unwrap();
    chaos.set_abort_rate(1.0).unwrap();
    let req = Request::get(gw.url("/api/user/users/1"))
        .header("x-palisade-timeout-ms", "60000")
        .body(Body::empty())
        .unwrap();
    let res = send(&client(), req).await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT, "{}", res.body);
    assert_eq!(res.json()["type"], "urn:palisade:problem:timeout");
    assert!(res.detail().contains("200 ms"), "{}", res.body);
    gw.stop().await;
}

#[tokio::test]
async fn a_request_with_no_time_left_is_refused_on_arrival_on_any_route() {
    let gw = TestGateway::start(demo_config(""), Some("t")).await;
    let c = client();
    for path in ["/api/user/users/1", "/healthz", "/api/dashboard/user/1"] {
        let req = Request::get(gw.url(path))
            .header("grpc-timeout", "0m")
            .body(Body::empty())
            .unwrap();
        let res = send(&c, req).await;
        assert_eq!(
            res.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{path}: {}",
            res.body
        );
        assert_eq!(res.json()["type"], "urn:palisade:problem:deadline-exceeded");
        assert_eq!(res.json()["deadline"], "gateway", "{path}");
    }
    let route = gw.state.deadlines().get("gateway").unwrap().snapshot();
    assert_eq!(route.expired_on_arrival, 3);
    assert_eq!(
        gw.state.chaos().get("user").unwrap().injected(),
        Default::default(),
        "nothing was sent upstream"
    );
    // Without a header, the route has no deadline of its own (no budget in
    // this config): the same paths answer.
    assert_eq!(
        http_get(&c, &gw.url("/healthz")).await.status,
        StatusCode::OK
    );

    // The admin API and the dashboard count them.
    let admin = send(
        &c,
        support::request(
            http::Method::GET,
            &gw.url("/admin/deadlines"),
            Some("t"),
            None,
        ),
    )
    .await;
    assert_eq!(admin.status, StatusCode::OK);
    let deadlines = admin.json()["deadlines"].as_array().unwrap().clone();
    let route = deadlines.iter().find(|d| d["name"] == "gateway").unwrap();
    assert_eq!(route["expired_on_arrival"], 3, "{route}");
    let user = deadlines.iter().find(|d| d["name"] == "user").unwrap();
    assert_eq!(user["budget"], "300ms", "the upstream's timeout_ms: {user}");
    let dashboard = palisade_gateway::dashboard::snapshot(&gw.state);
    assert_eq!(dashboard.deadlines.expired, 3);
    gw.stop().await;
}

#[tokio::test]
async fn the_upstream_is_told_what_is_left_of_the_deadline() {
    let addr = recording_upstream().await;
    let gw = TestGateway::start(demo_config(&upstream_toml("rec", addr, 5000)), None).await;

    // The caller's header: the upstream is told what is left of it, never
    // more.
    let left = told(&gw, Some(("x-palisade-timeout-ms", "3000"))).await;
    assert!((1000..=3000).contains(&left), "told {left} ms of 3000");
    // grpc-timeout, written on as the HTTP header.
    let left = told(&gw, Some(("grpc-timeout", "2S"))).await;
    assert!((500..=2000).contains(&left), "told {left} ms of 2000");
    // No header: what is left of the upstream's own 5 s timeout.
    let left = told(&gw, None).await;
    assert!((3000..=5000).contains(&left), "told {left} ms of 5000");
    // A caller asking for more than the upstream's timeout gets the timeout.
    let left = told(&gw, Some(("x-palisade-timeout-ms", "60000"))).await;
    assert!(left <= 5000, "told {left} ms, over the 5 s timeout");
    gw.stop().await;

    // `[deadline] budget_ms`: every route's budget when the caller sets none.
    let text = format!(
        "{}\n[deadline]\nbudget_ms = 800\n",
        upstream_toml("rec", addr, 5000)
    );
    let gw = TestGateway::start(demo_config(&text), None).await;
    let left = told(&gw, None).await;
    assert!((100..=800).contains(&left), "told {left} ms of 800");
    gw.stop().await;

    // `write_headers = false`: nothing is told.
    let text = format!(
        "{}\n[deadline]\nwrite_headers = false\n",
        upstream_toml("rec", addr, 5000)
    );
    let gw = TestGateway::start(demo_config(&text), None).await;
    let req = Request::get(gw.url("/api/rec/left"))
        .header("x-palisade-timeout-ms", "3000")
        .body(Body::empty())
        .unwrap();
    let res = send(&client(), req).await;
    assert_eq!(res.body, "3000", "the caller's own header passes as sent");
    gw.stop().await;
}

/// An aggregator of `user` (required), `product` with a fallback and
/// `review` without one; `product` has a breaker.
fn fallback_config() -> palisade_gateway::Config {
    let breaker = "[upstreams.product.circuit_breaker]\ncount_window = 100\nminimum_calls = 100\n";
    let aggregator = "[aggregator]\ndeadline_ms = 3000\n\
        [[aggregator.branches]]\nname = \"user\"\nupstream = \"user\"\npath = \"/users/{id}\"\nrequired = true\n\
        [[aggregator.branches]]\nname = \"product\"\nupstream = \"product\"\npath = \"/users/{id}/recommendations\"\n\
        [aggregator.branches.fallback]\nvalue = { items = [], note = \"later\" }\n\
        [[aggregator.branches]]\nname = \"review\"\nupstream = \"review\"\npath = \"/users/{id}/reviews\"\n";
    demo_config_with(&[("product", breaker)], aggregator)
}

#[tokio::test]
async fn an_optional_branch_that_fails_answers_its_fallback_marked_and_counted() {
    let gw = TestGateway::start(fallback_config(), Some("t")).await;
    let c = client();
    let url = gw.url("/api/dashboard/user/7");

    let whole = http_get(&c, &url).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
    assert_eq!(whole.header("x-palisade-completed"), "true");
    assert!(whole.headers.get("x-palisade-fallback").is_none());
    assert_eq!(whole.json()["product"]["user_id"], 7);

    // The product backend fails: the branch answers its fallback.
    let chaos = gw.state.chaos().get("product").unwrap();
    chaos.set_outage(true);
    let res = http_get(&c, &url).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("x-palisade-fallback"), "product");
    assert_eq!(res.header("x-palisade-completed"), "false");
    assert_eq!(res.header("cache-control"), "no-store");
    let body = res.json();
    assert_eq!(
        body["product"],
        serde_json::json!({ "items": [], "note": "later" })
    );
    assert_eq!(body["user"]["id"], 7, "{body}");
    assert!(body.get("errors").is_none(), "nothing missing: {body}");
    assert_eq!(chaos.injected().outage, 1);

    // Refused by its open breaker: answered too, without reaching it.
    let breaker = gw.state.circuit_breakers().get("product").unwrap();
    breaker.force_open();
    let res = http_get(&c, &url).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("x-palisade-fallback"), "product");
    assert_eq!(
        chaos.injected().outage,
        1,
        "the open breaker refused the call"
    );

    // Counted by the fallback crate, by class.
    let snapshot = gw.state.fallbacks().get("product").unwrap().snapshot();
    assert_eq!(snapshot.served, 2);
    let served = |class| {
        snapshot
            .by_class
            .iter()
            .find(|c| c.class == class)
            .map_or(0, |c| c.served)
    };
    assert_eq!(served(FallbackClass::Response), 1, "the 503");
    assert_eq!(served(FallbackClass::CircuitOpen), 1);
    assert!(
        gw.state.fallbacks().get("review").is_none(),
        "review has none"
    );

    // A branch without a fallback is still just missing.
    gw.state.chaos().get("review").unwrap().set_outage(true);
    let res = http_get(&c, &url).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["errors"]["review"]["reason"], "status");
    assert_eq!(res.header("x-palisade-fallback"), "product");

    // The admin API and the dashboard show it.
    let admin = send(
        &c,
        support::request(
            http::Method::GET,
            &gw.url("/admin/fallbacks"),
            Some("t"),
            None,
        ),
    )
    .await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.json()["fallbacks"][0]["name"], "product");
    assert_eq!(admin.json()["fallbacks"][0]["served"], 3);
    let dashboard = palisade_gateway::dashboard::snapshot(&gw.state);
    assert_eq!(dashboard.deadlines.fallbacks_served, 3);
    gw.stop().await;
}

/// `product` hedged after 50 ms (the percentile not trusted yet), with
/// room in the budget, and a 5 s timeout.
fn hedged_config() -> palisade_gateway::Config {
    let hedge = "[upstreams.product.hedge]\ninitial_delay_ms = 50\nmin_samples = 1000\nbudget_ratio = 1.0\nmin_hedges_per_sec = 10\n";
    let mut config = demo_config_with(&[("product", hedge)], "");
    let product = config.upstreams.get_mut("product").unwrap();
    product.timeout = Duration::from_secs(5);
    product.attempt_timeout = Duration::from_secs(5);
    config
}

#[tokio::test]
async fn a_slow_product_call_is_hedged_and_counted() {
    let gw = TestGateway::start(hedged_config(), Some("t")).await;
    let chaos = gw.state.chaos().get("product").unwrap();
    chaos.set_latency(Duration::from_millis(400), 1.0).unwrap();
    let c = client();

    let res = http_get(&c, &gw.url("/api/product/products/1")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let hedge = gw
        .state
        .upstream("product")
        .unwrap()
        .layers()
        .hedge()
        .unwrap()
        .snapshot();
    assert_eq!(hedge.hedges, 1, "one hedge sent after 50 ms: {hedge:?}");
    assert_eq!(
        chaos.injected().latency,
        2,
        "the call and its hedge both reached the backend"
    );

    let admin = send(
        &c,
        support::request(http::Method::GET, &gw.url("/admin/hedges"), Some("t"), None),
    )
    .await;
    assert_eq!(admin.json()["hedges"][0]["name"], "product");
    assert_eq!(admin.json()["hedges"][0]["hedges"], 1);
    let dashboard = palisade_gateway::dashboard::snapshot(&gw.state);
    assert_eq!(dashboard.deadlines.hedges_sent, 1);

    // Another upstream without a hedge table is not hedged.
    let user = gw.state.chaos().get("user").unwrap();
    user.set_latency(Duration::from_millis(150), 1.0).unwrap();
    assert_eq!(
        http_get(&c, &gw.url("/api/user/users/1")).await.status,
        StatusCode::OK
    );
    assert_eq!(user.injected().latency, 1);
    assert!(
        gw.state
            .upstream("user")
            .unwrap()
            .layers()
            .hedge()
            .is_none()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_post_is_never_hedged() {
    let gw = TestGateway::start(hedged_config(), None).await;
    let chaos = gw.state.chaos().get("product").unwrap();
    chaos.set_latency(Duration::from_millis(300), 1.0).unwrap();

    let req = Request::post(gw.url("/api/product/products/1"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let res = send(&client(), req).await;
    assert_eq!(
        res.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "the backend answered: {}",
        res.body
    );
    let hedge = gw
        .state
        .upstream("product")
        .unwrap()
        .layers()
        .hedge()
        .unwrap()
        .snapshot();
    assert_eq!(hedge.hedges, 0, "{hedge:?}");
    assert_eq!(chaos.injected().latency, 1, "sent once");
    gw.stop().await;
}

#[test]
fn the_new_tables_report_file_line_and_column() {
    use palisade_gateway::Config;
    let base = "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n";

    let err = Config::parse("g.toml", &format!("{base}[deadline]\nbudget_ms = 0\n")).unwrap_err();
    assert_eq!(err.key(), "deadline.budget_ms");
    assert_eq!((err.line(), err.column()), (4, 13), "{err}");
    let err = Config::parse(
        "g.toml",
        &format!("{base}[deadline]\nbudget = \"2s\"\nnope = 1\n"),
    )
    .unwrap_err();
    assert_eq!(err.key(), "deadline.nope", "{err}");
    let ok = Config::parse("g.toml", &format!("{base}[deadline]\nbudget = \"2s\"\n")).unwrap();
    assert_eq!(ok.deadline.budget, Some(Duration::from_secs(2)));

    let err = Config::parse(
        "g.toml",
        &format!("{base}[upstreams.u.hedge]\npercentile = 100\n"),
    )
    .unwrap_err();
    assert_eq!(err.key(), "upstreams.u.hedge.percentile");
    assert_eq!((err.line(), err.column()), (4, 14), "{err}");
    let ok = Config::parse(
        "g.toml",
        &format!("{base}[upstreams.u.hedge]\nwindow_ms = 2000\n"),
    )
    .unwrap();
    let hedge = ok.upstreams["u"].hedge.clone().unwrap();
    assert_eq!(hedge.window, Duration::from_secs(2));

    let aggregator = "[aggregator]\n[[aggregator.branches]]\nname = \"a\"\nupstream = \"u\"\npath = \"/x/{id}\"\n[aggregator.branches.fallback]\n";
    let err = Config::parse(
        "g.toml",
        &format!("{base}{aggregator}value = {{ n_ms = 1 }}\non = []\n"),
    )
    .unwrap_err();
    assert_eq!(err.key(), "aggregator.branches[0].fallback.on", "{err}");
    assert_eq!(err.line(), 10, "{err}");
    let err = Config::parse(
        "g.toml",
        &format!("{base}{aggregator}value = 1\non = [\"sometimes\"]\n"),
    )
    .unwrap_err();
    assert!(err.message().contains("sometimes"), "{err}");
    let ok = Config::parse(
        "g.toml",
        &format!("{base}{aggregator}value = {{ n_ms = 1 }}\n"),
    )
    .unwrap();
    let fallback = ok.aggregator.unwrap().branches[0].fallback.clone().unwrap();
    assert_eq!(
        fallback.value,
        serde_json::json!({ "n_ms": 1 }),
        "the value is taken as written"
    );
}

#[test]
fn the_embedded_config_sets_a_budget_hedges_product_and_has_fallbacks() {
    let config = palisade_gateway::Config::embedded_default();
    assert_eq!(config.deadline.budget, Some(Duration::from_secs(5)));
    let hedged: Vec<&str> = config
        .upstreams
        .iter()
        .filter(|(_, up)| up.hedge.is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(hedged, ["product"]);
    let aggregator = config.aggregator.unwrap();
    for branch in &aggregator.branches {
        assert_eq!(
            branch.fallback.is_some(),
            !branch.settings.required,
            "{}: the optional branches have fallbacks",
            branch.name
        );
    }
}
