//! The event-sourced bank accounts of `/api/accounts` end to end over a
//! real socket: open, deposit, withdraw, an overdraft refused with the
//! balance, `Idempotency-Key` replays, read-your-writes with
//! `min_position`, the events route, hostile input, the store down (a
//! SQLite file whose write lock another connection holds), the admin and
//! dashboard views, the runner stopping with the gateway, the
//! `[event_store]` section, and the same on PostgreSQL when
//! `PALISADE_TEST_POSTGRES_URL` is set.
//!
//! Real sockets cannot use tokio's paused clock: waits are bounded.

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use palisade::event_store::EventStoreSettings;
use palisade_gateway::config::Config;
use support::{Reply, TestGateway, client, demo_config, get as http_get, request, send};

type Client = palisade_gateway::proxy::HttpClient;

async fn post(c: &Client, url: &str, json: &str, key: Option<&str>) -> Reply {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(key) = key {
        b = b.header("idempotency-key", key);
    }
    send(c, b.body(Body::from(json.to_owned())).unwrap()).await
}

fn problem_type(reply: &Reply) -> String {
    assert_eq!(
        reply.header("content-type"),
        "application/problem+json",
        "{reply:?}"
    );
    reply.json()["type"].as_str().unwrap_or_default().to_owned()
}

async fn open(gw: &TestGateway, c: &Client, owner: &str) -> String {
    let res = post(
        c,
        &gw.url("/api/accounts"),
        &format!(r#"{{"owner":"{owner}"}}"#),
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(res.header("location"), format!("/api/accounts/{id}"));
    id
}

/// `GET /api/accounts/{id}?min_position=N`: the balance once the read
/// model has the write at `N`.
async fn balance_at(gw: &TestGateway, c: &Client, id: &str, position: u64) -> i64 {
    let res = http_get(
        c,
        &gw.url(&format!(
            "/api/accounts/{id}?min_position={position}&wait_ms=5000"
        )),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let body = res.json();
    assert!(body["checkpoint"].as_u64().unwrap() >= position, "{body}");
    body["cents"].as_i64().unwrap()
}

fn position(reply: &Reply) -> u64 {
    reply.json()["position"].as_u64().unwrap()
}

#[tokio::test]
async fn open_deposit_withdraw_and_an_overdraft_refused_with_the_balance() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let id = open(&gw, &c, "Alice").await;
    let deposits = gw.url(&format!("/api/accounts/{id}/deposits"));
    let withdrawals = gw.url(&format!("/api/accounts/{id}/withdrawals"));

    let res = post(&c, &deposits, r#"{"cents":1000}"#, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["version"], 2);
    let res = post(&c, &withdrawals, r#"{"cents":300}"#, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["version"], 3);
    assert_eq!(balance_at(&gw, &c, &id, position(&res)).await, 700);

    let refused = post(&c, &withdrawals, r#"{"cents":701}"#, None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(problem_type(&refused), "urn:palisade:problem:overdraft");
    assert_eq!(refused.json()["balance"], 700);
    assert_eq!(refused.json()["requested"], 701);
    // Nothing written: the stream still has three events.
    let events = http_get(&c, &gw.url(&format!("/api/accounts/{id}/events"))).await;
    assert_eq!(events.json()["events"].as_array().unwrap().len(), 3);

    // An account that was never opened.
    let res = post(
        &c,
        &gw.url("/api/accounts/nobody/deposits"),
        r#"{"cents":1}"#,
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    assert_eq!(problem_type(&res), "urn:palisade:problem:account-not-found");
    let res = http_get(&c, &gw.url("/api/accounts/nobody")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    gw.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_deposits_once_and_answers_the_same() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    // A replayed open answers the same account.
    let first = post(
        &c,
        &gw.url("/api/accounts"),
        r#"{"owner":"Bo"}"#,
        Some("open-1"),
    )
    .await;
    let again = post(
        &c,
        &gw.url("/api/accounts"),
        r#"{"owner":"Bo"}"#,
        Some("open-1"),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(first.json()["id"], again.json()["id"]);
    assert_eq!(again.header("idempotency-replayed"), "true");
    let id = first.json()["id"].as_str().unwrap().to_owned();

    let deposits = gw.url(&format!("/api/accounts/{id}/deposits"));
    let one = post(&c, &deposits, r#"{"cents":250}"#, Some("req-1")).await;
    let two = post(&c, &deposits, r#"{"cents":250}"#, Some("req-1")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(two.status, StatusCode::OK, "{}", two.body);
    assert!(one.headers.get("idempotency-replayed").is_none());
    assert_eq!(two.header("idempotency-replayed"), "true");
    assert_eq!(one.json()["version"], two.json()["version"]);
    assert_eq!(one.json()["position"], two.json()["position"]);
    // The same key with another amount is still the first deposit.
    let three = post(&c, &deposits, r#"{"cents":999}"#, Some("req-1")).await;
    assert_eq!(three.status, StatusCode::OK, "{}", three.body);
    assert_eq!(three.header("idempotency-replayed"), "true");
    assert_eq!(three.json()["cents"], 250);
    assert_eq!(three.json()["position"], one.json()["position"]);
    assert_eq!(balance_at(&gw, &c, &id, position(&two)).await, 250);
    // The same key on a withdrawal is another command.
    let out = post(
        &c,
        &gw.url(&format!("/api/accounts/{id}/withdrawals")),
        r#"{"cents":50}"#,
        Some("req-1"),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(balance_at(&gw, &c, &id, position(&out)).await, 200);
    let events = http_get(&c, &gw.url(&format!("/api/accounts/{id}/events"))).await;
    let types: Vec<String> = events.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]);
    gw.stop().await;
}

#[tokio::test]
async fn min_position_reads_your_writes_or_answers_503_when_the_model_is_behind() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let id = open(&gw, &c, "Cy").await;
    for _ in 0..5 {
        let res = post(
            &c,
            &gw.url(&format!("/api/accounts/{id}/deposits")),
            r#"{"cents":10}"#,
            None,
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        // Each read waits for its own write: never a stale balance.
        let expected = 10 * res.json()["version"].as_i64().unwrap() - 10;
        assert_eq!(balance_at(&gw, &c, &id, position(&res)).await, expected);
    }
    // A position the store has not reached: a bounded wait, then 503.
    let res = http_get(
        &c,
        &gw.url(&format!(
            "/api/accounts/{id}?min_position=1000000&wait_ms=50"
        )),
    )
    .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(problem_type(&res), "urn:palisade:problem:read-model-behind");
    assert_eq!(res.json()["position"], 1_000_000);
    assert_eq!(res.header("retry-after"), "1");
    gw.stop().await;
}

#[tokio::test]
async fn the_events_route_lists_the_stream_in_order() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let id = open(&gw, &c, "Di").await;
    post(
        &c,
        &gw.url(&format!("/api/accounts/{id}/deposits")),
        r#"{"cents":5}"#,
        None,
    )
    .await;
    let res = http_get(&c, &gw.url(&format!("/api/accounts/{id}/events"))).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let body = res.json();
    assert_eq!(body["stream"], format!("account-{id}"));
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["version"], 1);
    assert_eq!(events[0]["type"], "AccountOpened");
    assert_eq!(events[0]["payload"]["owner"], "Di");
    assert_eq!(events[1]["version"], 2);
    assert_eq!(events[1]["payload"]["cents"], 5);
    assert!(events[1]["position"].as_u64() > events[0]["position"].as_u64());
    let tail = http_get(
        &c,
        &gw.url(&format!("/api/accounts/{id}/events?from=2&max=1")),
    )
    .await;
    assert_eq!(tail.json()["events"].as_array().unwrap().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn hostile_input_gets_4xx_problems() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let id = open(&gw, &c, "Ed").await;
    let deposits = format!("/api/accounts/{id}/deposits");
    let long_id = "a".repeat(65);
    let long_key = "k".repeat(129);
    let huge = format!(r#"{{"cents":1,"pad":"{}"}}"#, "x".repeat(70_000));
    // (method, path, body, idempotency key, expected status)
    let cases: Vec<(Method, String, String, Option<&str>, StatusCode)> = vec![
        (
            Method::POST,
            deposits.clone(),
            "not json".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":"#.into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            deposits.clone(),
            String::new(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":"10"}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"amount":10}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":-5}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":0}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":1.5}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":9223372036854775808}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":99999999999999999999999}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":9223372036854775807}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            deposits.clone(),
            huge,
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            deposits.clone(),
            r#"{"cents":1}"#.into(),
            Some(long_key.as_str()),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/api/accounts/{long_id}/deposits"),
            r#"{"cents":1}"#.into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/accounts/a%2Fb/deposits".into(),
            r#"{"cents":1}"#.into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/accounts/..%2F..%2Fetc/deposits".into(),
            r#"{"cents":1}"#.into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/accounts/%FF/deposits".into(),
            r#"{"cents":1}"#.into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/accounts/a%20b".into(),
            String::new(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/accounts/{id}?min_position=-1"),
            String::new(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/accounts/{id}?min_position=abc"),
            String::new(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/accounts/{long_id}/events"),
            String::new(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/accounts/{id}/events?max=-3"),
            String::new(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/accounts".into(),
            r#"{"owner":5}"#.into(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/accounts".into(),
            format!(r#"{{"owner":"{}"}}"#, "o".repeat(201)),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (method, path, body, key, expected) in cases {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(gw.url(&path))
            .header("content-type", "application/json");
        if let Some(key) = key {
            b = b.header("idempotency-key", key);
        }
        let res = send(&c, b.body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(
            res.status, expected,
            "{method} {path} {:.80}: {}",
            body, res.body
        );
        assert!(
            !problem_type(&res).is_empty(),
            "{method} {path}: {}",
            res.body
        );
    }
    // A deposit near i64::MAX fits the amount check but not the balance.
    let big = format!(r#"{{"cents":{}}}"#, palisade_gateway::accounts::MAX_CENTS);
    for _ in 0..2 {
        let res = post(&c, &gw.url(&deposits), &big, None).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    // Nothing of the refusals was written: open plus the two deposits.
    let events = http_get(&c, &gw.url(&format!("/api/accounts/{id}/events"))).await;
    assert_eq!(events.json()["events"].as_array().unwrap().len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn admin_and_dashboard_show_the_store_the_events_and_the_lag() {
    let gw = TestGateway::start(demo_config(""), Some("t0k")).await;
    let c = client();
    let id = open(&gw, &c, "Flo").await;
    let res = post(
        &c,
        &gw.url(&format!("/api/accounts/{id}/deposits")),
        r#"{"cents":42}"#,
        None,
    )
    .await;
    let head = position(&res);
    balance_at(&gw, &c, &id, head).await;

    let store = send(
        &c,
        request(
            Method::GET,
            &gw.url("/admin/event-store"),
            Some("t0k"),
            None,
        ),
    )
    .await;
    assert_eq!(store.status, StatusCode::OK, "{}", store.body);
    let snap = &store.json()["event_stores"][0];
    assert_eq!(snap["name"], "accounts");
    assert_eq!(snap["backend"], "memory");
    assert_eq!(snap["head_position"], head);
    assert_eq!(snap["appends"], 2);
    assert_eq!(store.json()["command_breaker"]["name"], "accounts");
    assert_eq!(store.json()["command_breaker"]["state"], "closed");

    let projections = send(
        &c,
        request(
            Method::GET,
            &gw.url("/admin/projections"),
            Some("t0k"),
            None,
        ),
    )
    .await;
    assert_eq!(projections.status, StatusCode::OK, "{}", projections.body);
    let p = &projections.json()["projections"][0];
    assert_eq!(p["projection"]["name"], "balances");
    assert_eq!(p["projection"]["checkpoint"], head);
    assert_eq!(p["projection"]["lag"], 0);
    assert_eq!(p["parked"], serde_json::json!([]));
    // Behind the token like every admin resource.
    let denied = send(
        &c,
        request(Method::GET, &gw.url("/admin/projections"), None, None),
    )
    .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);

    // The dashboard's panel: the live stream (newest first) and the lag.
    let tile = support::eventually(Duration::from_secs(10), || {
        let state = gw.state.clone();
        async move {
            let tile = palisade_gateway::dashboard::snapshot(&state).events;
            (tile.recent.len() == 2).then_some(tile)
        }
    })
    .await;
    assert_eq!(tile.recent[0].position, head);
    assert_eq!(tile.recent[0].event_type, "MoneyDeposited");
    assert_eq!(tile.recent[0].stream, format!("account-{id}"));
    assert_eq!(tile.recent[0].version, 2);
    assert_eq!(tile.recent[1].event_type, "AccountOpened");
    assert_eq!(tile.projections[0].lag, 0);
    assert_eq!(tile.store.as_ref().unwrap().head_position, head);
    let json = serde_json::to_value(palisade_gateway::dashboard::snapshot(&gw.state)).unwrap();
    assert_eq!(json["events"]["recent"][0]["event_type"], "MoneyDeposited");
    assert_eq!(json["events"]["projections"][0]["name"], "balances");
    // The page has the panel.
    assert!(palisade_gateway::dashboard::DASHBOARD_HTML.contains("id=\"events\""));
    gw.stop().await;
}

#[tokio::test]
async fn the_projection_runner_and_the_feed_stop_with_the_gateway() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let accounts = gw.state.accounts().expect("opened at bind").clone();
    assert!(accounts.is_running());
    assert!(accounts.projection().is_running());
    gw.stop().await;
    assert!(!accounts.projection().is_running());
    assert!(!accounts.is_running());
}

/// The store "down": another connection holds the SQLite file's write
/// lock, so an append waits; the command's timeout answers 503 (nothing
/// written), and once the lock goes the same request succeeds.
#[tokio::test]
async fn a_store_that_does_not_answer_fails_fast_with_503_and_nothing_written() {
    let dir = std::env::temp_dir().join(palisade_test_util::unique_name("gw-accounts"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.db");
    let mut config = demo_config("");
    config.event_store = EventStoreSettings {
        busy_timeout: Duration::from_secs(30),
        ..EventStoreSettings::with_url(format!("sqlite:{}", file.display()))
    };
    let gw = TestGateway::start(config, None).await;
    let c = client();
    let id = open(&gw, &c, "Gus").await;
    let deposits = gw.url(&format!("/api/accounts/{id}/deposits"));
    assert_eq!(
        post(&c, &deposits, r#"{"cents":1}"#, None).await.status,
        StatusCode::OK
    );

    let lock = sqlx::SqlitePool::connect(&format!("sqlite:{}", file.display()))
        .await
        .unwrap();
    let mut holder = lock.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *holder)
        .await
        .unwrap();

    let started = tokio::time::Instant::now();
    let res = post(&c, &deposits, r#"{"cents":7}"#, Some("during-outage")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(
        problem_type(&res),
        "urn:palisade:problem:event-store-timeout"
    );
    assert_eq!(res.header("retry-after"), "1");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    drop(holder);
    lock.close().await;
    // Nothing of the timed-out deposit was written; the retry writes it once.
    let events = http_get(&c, &gw.url(&format!("/api/accounts/{id}/events"))).await;
    assert_eq!(events.json()["events"].as_array().unwrap().len(), 2);
    let res = post(&c, &deposits, r#"{"cents":7}"#, Some("during-outage")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(balance_at(&gw, &c, &id, position(&res)).await, 8);
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the breaker open (as after a run of store failures) a command is
/// refused at once with the breaker's 503, and nothing is written.
#[tokio::test]
async fn an_open_command_breaker_answers_503_at_once_and_writes_nothing() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let id = open(&gw, &c, "Hal").await;
    let accounts = gw.state.accounts().unwrap().clone();
    accounts.breaker().force_open();
    let res = post(
        &c,
        &gw.url(&format!("/api/accounts/{id}/deposits")),
        r#"{"cents":3}"#,
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(problem_type(&res), "urn:palisade:problem:circuit-open");
    let events = http_get(&c, &gw.url(&format!("/api/accounts/{id}/events"))).await;
    assert_eq!(events.json()["events"].as_array().unwrap().len(), 1);
    // An overdraft is an answer, not a failure: it never opens the breaker.
    accounts.breaker().reset();
    for _ in 0..5 {
        let res = post(
            &c,
            &gw.url(&format!("/api/accounts/{id}/withdrawals")),
            r#"{"cents":1}"#,
            None,
        )
        .await;
        assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    }
    assert!(!accounts.breaker().state().is_open());
    gw.stop().await;
}

#[test]
fn the_event_store_section_reads_into_the_crates_settings_with_placed_errors() {
    let base = "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n";
    let ok = Config::parse(
        "a.toml",
        &format!("{base}[event_store]\nurl = \"memory:\"\nbusy_timeout_ms = 250\npage_size = 10\n"),
    )
    .unwrap();
    assert_eq!(ok.event_store.url, "memory:");
    assert_eq!(ok.event_store.busy_timeout, Duration::from_millis(250));
    assert_eq!(ok.event_store.page_size, 10);
    // Without the table: the crate's default, a SQLite file.
    let default = Config::parse("b.toml", base).unwrap();
    assert_eq!(default.event_store, EventStoreSettings::default());
    assert!(default.event_store.url.starts_with("sqlite:"));
    assert_eq!(
        Config::embedded_default().event_store.url,
        "sqlite:palisade-events.db"
    );

    let err = Config::parse(
        "c.toml",
        &format!("{base}[event_store]\nmax_connections = 0\n"),
    )
    .unwrap_err();
    assert_eq!(
        (err.line(), err.key()),
        (4, "event_store.max_connections"),
        "{err}"
    );
    assert!(err.to_string().starts_with("c.toml:4:"), "{err}");
    let err = Config::parse(
        "d.toml",
        &format!("{base}[event_store]\nurl = \"redis://x\"\n"),
    )
    .unwrap_err();
    assert_eq!(err.key(), "event_store.url", "{err}");
    let err = Config::parse(
        "e.toml",
        &format!("{base}[event_store]\nuri = \"memory:\"\n"),
    )
    .unwrap_err();
    assert_eq!((err.line(), err.key()), (4, "event_store.uri"), "{err}");
    let err = Config::parse(
        "f.toml",
        &format!("{base}[event_store]\ntable_prefix = \"x; DROP TABLE y\"\n"),
    )
    .unwrap_err();
    assert_eq!(err.key(), "event_store.table_prefix", "{err}");
    // `/api/accounts` is the gateway's own.
    let err = Config::parse(
        "g.toml",
        &format!("{base}[[routes]]\nprefix = \"/api/accounts\"\nupstream = \"u\"\n"),
    )
    .unwrap_err();
    assert!(err.message().contains("/api/accounts"), "{err}");
}

/// The same on PostgreSQL: events and balances in a schema of the test's
/// own, dropped at the end.
#[tokio::test]
async fn accounts_on_postgresql() {
    let Some(url) = palisade_test_util::service_url(
        palisade_test_util::POSTGRES_URL_VAR,
        "accounts_on_postgresql",
    ) else {
        return;
    };
    let schema = palisade_test_util::unique_name("gw_accounts");
    let mut config = demo_config("");
    config.event_store = EventStoreSettings {
        table_prefix: format!("{schema}.es"),
        ..EventStoreSettings::with_url(url.clone())
    };
    let gw = TestGateway::start(config, None).await;
    let c = client();
    let id = open(&gw, &c, "Pat").await;
    let deposits = gw.url(&format!("/api/accounts/{id}/deposits"));
    let one = post(&c, &deposits, r#"{"cents":900}"#, Some("pg-1")).await;
    let two = post(&c, &deposits, r#"{"cents":900}"#, Some("pg-1")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(two.header("idempotency-replayed"), "true");
    let refused = post(
        &c,
        &gw.url(&format!("/api/accounts/{id}/withdrawals")),
        r#"{"cents":901}"#,
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.json()["balance"], 900);
    assert_eq!(balance_at(&gw, &c, &id, position(&two)).await, 900);
    let store = gw.state.accounts().unwrap().stores().snapshots();
    assert_eq!(store[0].backend, "postgres");
    gw.stop().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}
