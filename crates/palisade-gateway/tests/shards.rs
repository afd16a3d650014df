//! The sharded user service end to end, over real sockets: the gateway's
//! `user` upstream is three shards (demo backends `user-0` to `user-2`, a
//! spare `user-3`), each request sent to the shard owning the user id in its
//! path; the admin API changes the map at runtime; the dashboard shows it.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use http::{Method, StatusCode};
use palisade_gateway::config::Config;
use serde_json::Value;
use support::{Reply, TestGateway, client, get as http_get, request, send};

const TOKEN: &str = "tok";

/// Three user shards and a spare backend, the user route, and an
/// aggregator whose one branch is the sharded user upstream.
fn sharded_config() -> Config {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_limit_bytes = 65536\ndrain_timeout_ms = 5000\nshutdown_grace_ms = 0\n\n[demo]\nseed = 7\n",
    );
    for n in 0..4 {
        text.push_str(&format!(
            "[demo.backends.user-{n}]\nservice = \"user\"\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    text.push_str(
        "[upstreams.user]\ntimeout_ms = 2000\n\
         [upstreams.user.circuit_breaker]\ncount_window = 20\nminimum_calls = 10\nwait_in_open_ms = 5000\n\
         [upstreams.user.bulkhead]\nmax_concurrent_calls = 50\nmax_wait_ms = 0\n\
         [upstreams.user.shards]\nkey = { path = { route = \"/users/{id}\", param = \"id\" } }\nkey_format = \"digits\"\nready_timeout_ms = 1000\n",
    );
    for n in 0..3 {
        text.push_str(&format!(
            "[[upstreams.user.shards.members]]\nname = \"user-{n}\"\nurl = \"demo://user-{n}\"\n"
        ));
    }
    text.push_str(
        "[[routes]]\nprefix = \"/api/user\"\nupstream = \"user\"\n\
         [aggregator]\ndeadline_ms = 2000\n\
         [[aggregator.branches]]\nname = \"user\"\nupstream = \"user\"\npath = \"/users/{id}\"\nrequired = true\ntimeout_ms = 1500\n",
    );
    Config::parse("shards.toml", &text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

/// The backend that answered `GET /api/user/users/{id}` (`200` expected).
async fn served_by(gw: &TestGateway, id: u64) -> String {
    let res = http_get(&client(), &gw.url(&format!("/api/user/users/{id}"))).await;
    assert_eq!(res.status, StatusCode::OK, "user {id}: {}", res.body);
    assert_eq!(res.json()["id"], id, "{}", res.body);
    res.header("x-demo-backend").to_owned()
}

/// Which backend serves each of `ids`.
async fn owners(gw: &TestGateway, ids: impl Iterator<Item = u64>) -> BTreeMap<u64, String> {
    let mut map = BTreeMap::new();
    for id in ids {
        map.insert(id, served_by(gw, id).await);
    }
    map
}

async fn admin(gw: &TestGateway, method: Method, path: &str, json: Option<&str>) -> Reply {
    send(&client(), request(method, &gw.url(path), Some(TOKEN), json)).await
}

/// The admin API's view of the sharded upstream `user`.
async fn view(gw: &TestGateway) -> Value {
    let res = admin(gw, Method::GET, "/admin/shards/user", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.json()
}

/// The shard names in `view`, in the map's order.
fn shard_names(view: &Value) -> Vec<String> {
    view["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_user_id_always_reaches_the_same_shard_and_users_spread_over_all_three() {
    let gw = TestGateway::start(sharded_config(), Some(TOKEN)).await;
    let handle = gw.state.sharded_upstream("user").unwrap().handle();
    let first = owners(&gw, 1..=90).await;
    let again = owners(&gw, 1..=90).await;
    assert_eq!(first, again, "a user id moved between two rounds");
    for (id, backend) in &first {
        // The router's own answer, and the backend that really served it.
        assert_eq!(*handle.owner(*id), **backend, "user {id}");
    }
    let used: BTreeSet<&str> = first.values().map(String::as_str).collect();
    assert_eq!(used, BTreeSet::from(["user-0", "user-1", "user-2"]));
    // Roughly a third each (90 users: 30 on average).
    for shard in ["user-0", "user-1", "user-2"] {
        let n = first.values().filter(|b| *b == shard).count();
        assert!((15..=45).contains(&n), "{shard} serves {n} of 90 users");
    }
    // The router counted every request on the shard that served it.
    let snapshot = handle.snapshot();
    let requests: u64 = snapshot.shards.iter().map(|s| s.requests).sum();
    assert_eq!(requests, 180);
    for s in &snapshot.shards {
        let served = first.values().filter(|b| **b == *s.name).count() as u64;
        assert_eq!(s.requests, 2 * served, "{}", s.name);
    }
    // Each shard is an upstream of its own, with its own breaker.
    for shard in ["user-0", "user-1", "user-2"] {
        assert!(gw.state.upstream(shard).is_some(), "{shard}");
        assert!(gw.state.circuit_breakers().get(shard).is_some(), "{shard}");
    }
    // The router's metrics, per shard, on /metrics.
    let metrics = http_get(&client(), &gw.url("/metrics")).await.body;
    for shard in ["user-0", "user-1", "user-2"] {
        let series = metrics
            .lines()
            .find(|l| {
                l.starts_with("palisade_shard_requests_total{")
                    && l.contains("name=\"user\"")
                    && l.contains(&format!("shard=\"{shard}\""))
            })
            .unwrap_or_else(|| panic!("no requests series for {shard}"));
        let n: f64 = series.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{series}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_aggregators_user_branch_goes_through_the_same_router() {
    let gw = TestGateway::start(sharded_config(), Some(TOKEN)).await;
    let handle = gw.state.sharded_upstream("user").unwrap().handle();
    for id in [3u64, 17, 256, 999] {
        let owner = handle.owner(id);
        let before = handle.snapshot();
        let count = |snap: &palisade::shard::ShardSnapshot| {
            snap.shards
                .iter()
                .find(|s| s.name == owner)
                .map_or(0, |s| s.requests)
        };
        let res = http_get(&client(), &gw.url(&format!("/api/dashboard/user/{id}"))).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.json()["user"]["id"], id, "{}", res.body);
        let after = handle.snapshot();
        assert_eq!(count(&after), count(&before) + 1, "user {id} on {owner}");
        let total = |snap: &palisade::shard::ShardSnapshot| -> u64 {
            snap.shards.iter().map(|s| s.requests).sum()
        };
        assert_eq!(total(&after), total(&before) + 1);
    }
    gw.stop().await;
}

#[tokio::test]
async fn requests_without_a_usable_user_id_are_refused_with_a_problem() {
    let gw = TestGateway::start(sharded_config(), Some(TOKEN)).await;
    let c = client();
    for (path, reason) in [
        ("/api/user/users/abc", "malformed"),
        ("/api/user/users/", "malformed"),
        ("/api/user/users", "missing"),
        ("/api/user/people/7", "missing"),
    ] {
        let res = http_get(&c, &gw.url(path)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}: {}", res.body);
        assert_eq!(res.header("content-type"), "application/problem+json");
        let problem = res.json();
        assert_eq!(problem["type"], "urn:palisade:problem:shard-key", "{path}");
        assert_eq!(problem["reason"], reason, "{path}: {problem}");
        assert_eq!(problem["upstream"], "user", "{path}: {problem}");
    }
    let snapshot = gw.state.sharded_upstream("user").unwrap().snapshot();
    assert_eq!((snapshot.key_malformed, snapshot.key_missing), (2, 2));
    assert!(snapshot.shards.iter().all(|s| s.requests == 0));
    gw.stop().await;
}

#[tokio::test]
async fn an_outage_on_one_shard_fails_only_its_own_users() {
    let gw = TestGateway::start(sharded_config(), Some(TOKEN)).await;
    let handle = gw.state.sharded_upstream("user").unwrap().handle();
    gw.state.chaos().get("user-1").unwrap().set_outage(true);
    let c = client();
    for id in 1..=30u64 {
        let res = http_get(&c, &gw.url(&format!("/api/user/users/{id}"))).await;
        if &*handle.owner(id) == "user-1" {
            assert!(res.status.is_server_error(), "user {id}: {}", res.status);
        } else {
            assert_eq!(res.status, StatusCode::OK, "user {id}: {}", res.body);
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn removing_and_adding_shards_changes_the_map_and_moves_only_the_keys_it_must() {
    let gw = TestGateway::start(sharded_config(), Some(TOKEN)).await;
    let ids = || 1..=120u64;
    let start = view(&gw).await;
    assert_eq!(start["epoch"], 1);
    assert_eq!(start["scheme"], "rendezvous");
    assert_eq!(shard_names(&start), ["user-0", "user-1", "user-2"]);
    assert!(start["last_change"].is_null());
    assert_eq!(start["urls"]["user-1"], "demo://user-1");
    let before = owners(&gw, ids()).await;

    // Remove user-1: its users go to the other two, nobody else moves.
    let res = admin(&gw, Method::DELETE, "/admin/shards/user/user-1", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let change = &res.json()["change"];
    assert_eq!(change["kind"], "removed");
    assert_eq!(change["shard"], "user-1");
    assert_eq!(change["epoch"], 2);
    let moved = change["moved_share"].as_f64().unwrap();
    assert!((0.2..0.45).contains(&moved), "moved {moved}");
    let after_remove = owners(&gw, ids()).await;
    for id in ids() {
        if before[&id] == "user-1" {
            assert_ne!(after_remove[&id], "user-1", "user {id}");
        } else {
            assert_eq!(after_remove[&id], before[&id], "user {id} moved");
        }
    }
    let shown = view(&gw).await;
    assert_eq!(shown["epoch"], 2);
    assert_eq!(shard_names(&shown), ["user-0", "user-2"]);
    assert_eq!(shown["last_change"]["moved_share"].as_f64(), Some(moved));
    // The dashboard's snapshot shows the same.
    let dash = serde_json::to_value(palisade_gateway::dashboard::snapshot(&gw.state)).unwrap();
    let panel = &dash["shards"][0];
    assert_eq!(panel["name"], "user");
    assert_eq!(panel["prefixes"][0], "/api/user");
    assert_eq!(panel["epoch"], 2);
    assert_eq!(panel["last_change"]["kind"], "removed");
    assert_eq!(panel["last_change"]["moved_share"].as_f64(), Some(moved));

    // Add the spare backend as user-3: it takes about a third of the users,
    // from both others; nobody else moves.
    let res = admin(
        &gw,
        Method::POST,
        "/admin/shards/user",
        Some(r#"{"name": "user-3", "url": "demo://user-3"}"#),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let body = res.json();
    assert_eq!(body["change"]["kind"], "added");
    assert_eq!(body["change"]["epoch"], 3);
    let moved = body["change"]["moved_share"].as_f64().unwrap();
    assert!((0.2..0.45).contains(&moved), "moved {moved}");
    assert_eq!(body["upstream"]["urls"]["user-3"], "demo://user-3");
    let after_add = owners(&gw, ids()).await;
    let mut gained = 0;
    for id in ids() {
        if after_add[&id] != after_remove[&id] {
            assert_eq!(after_add[&id], "user-3", "user {id}");
            gained += 1;
        }
    }
    assert!(gained > 10, "user-3 took {gained} users of 120");
    // The new shard is an upstream with its own breaker, and the router
    // shows its requests.
    assert!(gw.state.circuit_breakers().get("user-3").is_some());
    let shown = view(&gw).await;
    let user3 = shown["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "user-3")
        .unwrap();
    assert_eq!(user3["requests"], gained);
    assert_eq!(user3["replicas"][0]["breaker"], "closed");

    // Re-weighting moves users towards the heavier shard only.
    let res = admin(
        &gw,
        Method::PATCH,
        "/admin/shards/user/user-3",
        Some(r#"{"weight": 3.0}"#),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["change"]["kind"], "reweighted");
    assert_eq!(res.json()["change"]["epoch"], 4);
    let after_weight = owners(&gw, ids()).await;
    for id in ids() {
        if after_weight[&id] != after_add[&id] {
            assert_eq!(after_weight[&id], "user-3", "user {id}");
        }
    }
    // user-1 comes back: exactly its old users return to it (rendezvous).
    let res = admin(
        &gw,
        Method::POST,
        "/admin/shards/user",
        Some(r#"{"name": "user-1", "url": "demo://user-1", "weight": 1}"#),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let listed = admin(&gw, Method::GET, "/admin/shards", None).await.json();
    assert_eq!(listed["shards"][0]["epoch"], 5);
    assert_eq!(
        shard_names(&listed["shards"][0]),
        ["user-0", "user-2", "user-3", "user-1"]
    );
    gw.stop().await;
}

#[tokio::test]
async fn hostile_admin_input_gets_a_4xx_problem_and_changes_nothing() {
    let gw = TestGateway::start(sharded_config(), Some(TOKEN)).await;
    let c = client();
    // No token, a wrong token.
    for token in [None, Some("nope")] {
        let res = send(
            &c,
            request(
                Method::DELETE,
                &gw.url("/admin/shards/user/user-0"),
                token,
                None,
            ),
        )
        .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let long = "x".repeat(10_000);
    let add_cases: Vec<(String, StatusCode, Option<&str>)> = vec![
        ("not json".to_owned(), StatusCode::BAD_REQUEST, None),
        ("{}".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, None),
        (
            r#"{"name": "user-9", "url": "demo://user-3", "extra": 1}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            r#"{"name": "user-9", "url": "demo://user-3", "weight": "heavy"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            r#"{"name": "", "url": "demo://user-3"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_name"),
        ),
        (
            r#"{"name": "../admin", "url": "demo://user-3"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_name"),
        ),
        (
            r#"{"name": "a b\u0000", "url": "demo://user-3"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_name"),
        ),
        (
            format!(r#"{{"name": "{long}", "url": "demo://user-3"}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_name"),
        ),
        (
            r#"{"name": "user-9", "url": "demo://nope"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_url"),
        ),
        (
            r#"{"name": "user-9", "url": "https://example.com"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_url"),
        ),
        (
            r#"{"name": "user-9", "url": "ftp:///x"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_url"),
        ),
        (
            r#"{"name": "user-9", "url": "http://127.0.0.1:1/?q=1"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_url"),
        ),
        (
            r#"{"name": "user-9", "url": "demo://user-3", "weight": 0}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_weight"),
        ),
        (
            r#"{"name": "user-9", "url": "demo://user-3", "weight": -1}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_weight"),
        ),
        (
            r#"{"name": "user-9", "url": "demo://user-3", "weight": 1e300}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_weight"),
        ),
        (
            r#"{"name": "user-0", "url": "demo://user-3"}"#.to_owned(),
            StatusCode::CONFLICT,
            Some("duplicate_shard"),
        ),
        (
            r#"{"name": "user", "url": "demo://user-3"}"#.to_owned(),
            StatusCode::CONFLICT,
            Some("name_taken"),
        ),
    ];
    for (body, status, reason) in &add_cases {
        let res = send(
            &c,
            request(
                Method::POST,
                &gw.url("/admin/shards/user"),
                Some(TOKEN),
                Some(body),
            ),
        )
        .await;
        assert_eq!(res.status, *status, "{body}: {}", res.body);
        assert_eq!(
            res.header("content-type"),
            "application/problem+json",
            "{body}"
        );
        if let Some(reason) = reason {
            assert_eq!(res.json()["reason"], *reason, "{body}: {}", res.body);
        }
    }
    // A body that is not JSON at all, declared as something else.
    let res = send(
        &c,
        http::Request::post(gw.url("/admin/shards/user"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "text/plain")
            .body(axum::body::Body::from("name=user-9"))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    for (method, path, body, status) in [
        (
            Method::GET,
            "/admin/shards/nope",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/admin/shards/nope",
            Some(r#"{"name": "x", "url": "demo://user-3"}"#),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/admin/shards/user/user-7",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/admin/shards/user/%2e%2e",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "/admin/shards/user/user-7",
            Some(r#"{"weight": 2}"#),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "/admin/shards/user/user-0",
            Some(r#"{"weight": 0}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PATCH,
            "/admin/shards/user/user-0",
            Some(r#"{"weight": 1e9}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PATCH,
            "/admin/shards/user/user-0",
            Some(r#"{}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let res = send(
            &c,
            request(method.clone(), &gw.url(path), Some(TOKEN), body),
        )
        .await;
        assert_eq!(res.status, status, "{method} {path}: {}", res.body);
        assert_eq!(res.header("content-type"), "application/problem+json");
    }
    // Nothing changed.
    let shown = view(&gw).await;
    assert_eq!(shown["epoch"], 1, "{shown}");
    assert_eq!(shard_names(&shown), ["user-0", "user-1", "user-2"]);
    assert!(gw.state.circuit_breakers().get("user-9").is_none());

    // The last shard cannot go.
    for shard in ["user-0", "user-1"] {
        let path = format!("/admin/shards/user/{shard}");
        let res = admin(&gw, Method::DELETE, &path, None).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let res = admin(&gw, Method::DELETE, "/admin/shards/user/user-2", None).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.json()["reason"], "empty");
    // ...and every user is served by it.
    assert_eq!(served_by(&gw, 1).await, "user-2");
    assert_eq!(served_by(&gw, 2).await, "user-2");
    gw.stop().await;
}

#[test]
fn bad_shard_tables_are_refused_naming_the_key() {
    let base = sharded_config_text();
    for (from, to, key, message) in [
        (
            "key_format = \"digits\"",
            "key_format = \"hex\"",
            "upstreams.user.shards.key_format",
            "unknown key_format `hex`",
        ),
        (
            "ready_timeout_ms = 1000",
            "ready_timeout_ms = 0",
            "upstreams.user.shards.ready_timeout_ms",
            "more than zero",
        ),
        (
            "key = { path = { route = \"/users/{id}\", param = \"id\" } }",
            "key = { path = { route = \"/users/{id}\", param = \"user\" } }",
            "upstreams.user.shards.key",
            "has no parameter",
        ),
        (
            "key = { path = { route = \"/users/{id}\", param = \"id\" } }",
            "scheme = \"ring\"",
            "upstreams.user.shards.key",
            "needs a key",
        ),
        (
            "name = \"user-1\"",
            "name = \"user-0\"",
            "upstreams.user.shards.members[1].name",
            "used twice",
        ),
        (
            "url = \"demo://user-2\"",
            "url = \"demo://user-7\"",
            "upstreams.user.shards.members[2].url",
            "names no demo backend",
        ),
        (
            "[upstreams.user]\n",
            "[upstreams.user]\nurl = \"demo://user-0\"\n",
            "upstreams.user.url",
            "has no `url`",
        ),
        (
            "key_format = \"digits\"",
            "key_format = \"digits\"\ndefault_shard = \"user-7\"",
            "upstreams.user.shards.default_shard",
            "not one of the members",
        ),
        (
            "service = \"user\"",
            "service = \"users\"",
            "demo.backends.user-0.service",
            "unknown demo service `users`",
        ),
        (
            "[demo.backends.user-2]",
            "[demo.backends.\"user 2\"]",
            "demo.backends.user 2",
            "a backend name is",
        ),
        (
            "key_format = \"digits\"",
            "key_format = \"digits\"\nduring_move = \"fall_back_to_previous\"",
            "upstreams.user.shards.during_move",
            "forward",
        ),
    ] {
        let text = base.replacen(from, to, 1);
        assert_ne!(text, base, "{from}");
        let err = Config::parse("shards.toml", &text).unwrap_err();
        assert_eq!(err.key(), key, "{to}: {err}");
        assert!(err.message().contains(message), "{to}: {err}");
        assert!(err.line() > 0, "{err}");
    }
}

fn sharded_config_text() -> String {
    let mut text = String::from("[demo]\nseed = 7\n");
    for n in 0..3 {
        text.push_str(&format!("[demo.backends.user-{n}]\nservice = \"user\"\n"));
    }
    text.push_str(
        "[upstreams.user]\ntimeout_ms = 2000\n[upstreams.user.shards]\n\
         key = { path = { route = \"/users/{id}\", param = \"id\" } }\nkey_format = \"digits\"\nready_timeout_ms = 1000\n",
    );
    for n in 0..3 {
        text.push_str(&format!(
            "[[upstreams.user.shards.members]]\nname = \"user-{n}\"\nurl = \"demo://user-{n}\"\n"
        ));
    }
    text.push_str("[[routes]]\nprefix = \"/api/user\"\nupstream = \"user\"\n");
    text
}
