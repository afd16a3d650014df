//! The product upstream's cache end to end on 127.0.0.1:0: hits that never
//! reach the backend, stale-if-error through an outage (and what the
//! dashboard and the admin API count of it), purges by key and by prefix,
//! the aggregator's product branch, and two gateways sharing entries
//! through Redis.
//!
//! Backend calls are counted by the demo backend's own chaos layer: a
//! latency of 1 ms injected into every call, so `injected().latency` is the
//! number of calls that reached it. Real sockets cannot use tokio's paused
//! clock: waits are bounded polls for the state a test expects.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use palisade::chaos::ChaosHandle;
use palisade_test_util::{REDIS_URL_VAR, service_url, unique_name};
use support::{
    Reply, TestGateway, aggregator_toml, client, dashboard_snapshot, demo_config_with, eventually,
    get as http_get, request, send,
};

const TOKEN: &str = "cache-test-token";

/// A cache whose entries stay fresh for a minute, never revalidated in the
/// background, served stale for ten minutes when the backend fails.
const CACHE: &str = "[upstreams.product.cache]\nttl = \"60s\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"10m\"\n";

/// The product backend's chaos handle, set to count every call that
/// reaches it (1 ms of latency injected into each).
fn counted(gw: &TestGateway) -> ChaosHandle {
    let chaos = gw
        .state
        .chaos()
        .get("product")
        .expect("the product backend");
    chaos
        .set_latency(Duration::from_millis(1), 1.0)
        .expect("a valid latency");
    chaos
}

fn backend_calls(chaos: &ChaosHandle) -> u64 {
    chaos.injected().latency
}

async fn admin(gw: &TestGateway, method: Method, path: &str, json: Option<&str>) -> Reply {
    send(&client(), request(method, &gw.url(path), Some(TOKEN), json)).await
}

async fn purge(gw: &TestGateway, json: &str) -> Reply {
    admin(gw, Method::POST, "/admin/caches/product/purge", Some(json)).await
}

#[tokio::test]
async fn a_second_get_is_a_hit_and_the_backend_is_called_once() {
    let gw = TestGateway::start(demo_config_with(&[("product", CACHE)], ""), Some(TOKEN)).await;
    let chaos = counted(&gw);
    let c = client();
    let url = gw.url("/api/product/products/7");

    let first = http_get(&c, &url).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-palisade-cache"), "miss");
    assert_eq!(first.json()["id"], 7);
    let second = http_get(&c, &url).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("x-palisade-cache"), "hit");
    assert_eq!(second.body, first.body);
    assert!(second.headers.contains_key("age"));
    assert_eq!(
        backend_calls(&chaos),
        1,
        "the hit did not reach the backend"
    );

    // Another product is another key; an upstream without a cache is not
    // cached.
    assert_eq!(
        http_get(&c, &gw.url("/api/product/products/8"))
            .await
            .header("x-palisade-cache"),
        "miss"
    );
    assert_eq!(backend_calls(&chaos), 2);
    let user = http_get(&c, &gw.url("/api/user/users/1")).await;
    assert!(!user.headers.contains_key("x-palisade-cache"));

    // The admin API shows the crate's snapshot.
    let snap = admin(&gw, Method::GET, "/admin/caches/product", None).await;
    assert_eq!(snap.status, StatusCode::OK);
    let snap = snap.json();
    assert_eq!(
        (snap["hits"].as_u64(), snap["misses"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(snap["entries"], 2);
    assert!((snap["hit_ratio"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(snap["settings"]["ttl"], "1m");
    let all = admin(&gw, Method::GET, "/admin/caches", None).await.json();
    let names: Vec<&str> = all["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["product"]);
    // Its own metrics, labelled with the upstream (other tests in this
    // binary share the recorder, so only their presence is checked).
    let metrics = http_get(&c, &gw.url("/metrics")).await.body;
    for family in ["palisade_cache_hits_total", "palisade_cache_misses_total"] {
        assert!(
            metrics.contains(&format!("{family}{{name=\"product\"}}")),
            "{family} in {metrics}"
        );
    }
    let missing = admin(&gw, Method::GET, "/admin/caches/user", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("content-type"), "application/problem+json");
    gw.stop().await;
}

/// A breaker that opens after 2 calls at 50 % failures and stays open.
const CACHE_AND_BREAKER: &str = "[upstreams.product.cache]\nttl = \"100ms\"\nstale_while_revalidate = \"0s\"\nstale_if_error = \"10m\"\n\
     [upstreams.product.circuit_breaker]\ncount_window = 4\nminimum_calls = 2\nfailure_rate_threshold = 50\nwait_in_open_ms = 60000\n";

#[tokio::test]
async fn with_the_backend_in_outage_a_cached_product_is_served_stale_and_counted() {
    let gw = TestGateway::start(
        demo_config_with(&[("product", CACHE_AND_BREAKER)], ""),
        Some(TOKEN),
    )
    .await;
    let chaos = counted(&gw);
    let c = client();
    let url = gw.url("/api/product/products/7");
    let cached = http_get(&c, &url).await;
    assert_eq!(cached.header("x-palisade-cache"), "miss");

    chaos.set_outage(true);
    // Once the entry is stale (100 ms), the backend's 503 is answered with
    // it: stale-if-error, reason `error`.
    let stale = eventually(Duration::from_secs(10), || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let res = http_get(&c, &url).await;
            (res.header("x-palisade-cache") == "stale").then_some(res)
        }
    })
    .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, cached.body);
    assert!(
        chaos.injected().outage >= 1,
        "the backend was asked and failed"
    );
    let cache = gw.state.caches().get("product").unwrap();
    assert!(cache.snapshot().stale_served.error >= 1);

    // A product never cached fails as the backend does.
    let uncached = http_get(&c, &gw.url("/api/product/products/8")).await;
    assert_eq!(uncached.status, StatusCode::SERVICE_UNAVAILABLE);

    // The breaker opens; the cached product is still served, now without
    // a call reaching the backend (reason `rejected`).
    let breaker = gw.state.circuit_breakers().get("product").unwrap();
    eventually(Duration::from_secs(10), || {
        let (c, url) = (c.clone(), url.clone());
        let breaker = breaker.clone();
        async move {
            let res = http_get(&c, &url).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.body);
            breaker.state().is_open().then_some(())
        }
    })
    .await;
    let calls = backend_calls(&chaos);
    let served = http_get(&c, &url).await;
    assert_eq!(
        (served.status, served.header("x-palisade-cache")),
        (StatusCode::OK, "stale")
    );
    assert_eq!(served.body, cached.body);
    assert_eq!(backend_calls(&chaos), calls, "the open breaker answered");
    let stale = cache.snapshot().stale_served;
    assert!(stale.rejected >= 1, "{stale:?}");

    // The admin API and the dashboard's event stream count it.
    let snap = admin(&gw, Method::GET, "/admin/caches/product", None)
        .await
        .json();
    assert!(snap["stale_served"]["error"].as_u64().unwrap() >= 1);
    assert!(snap["stale_served"]["rejected"].as_u64().unwrap() >= 1);
    let dashboard = dashboard_snapshot(&gw).await;
    let tile = &dashboard["caches"][0];
    assert_eq!(tile["name"], "product");
    assert!(tile["stale_served"]["rejected"].as_u64().unwrap() >= 1);
    assert!(tile["stale_served"]["error"].as_u64().unwrap() >= 1);
    assert_eq!(
        tile["stale_total"].as_u64().unwrap(),
        ["revalidating", "error", "timeout", "rejected"]
            .iter()
            .map(|r| tile["stale_served"][r].as_u64().unwrap())
            .sum::<u64>()
    );
    let product = dashboard["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "product")
        .unwrap();
    assert_eq!(product["chaos"]["outage"], true);
    gw.stop().await;
}

#[tokio::test]
async fn a_purge_by_key_or_by_prefix_makes_the_next_call_a_miss() {
    let gw = TestGateway::start(demo_config_with(&[("product", CACHE)], ""), Some(TOKEN)).await;
    let chaos = counted(&gw);
    let c = client();
    let url = |id: u32| gw.url(&format!("/api/product/products/{id}"));
    let status = |res: Reply| res.header("x-palisade-cache").to_owned();
    for id in 1..=3 {
        assert_eq!(status(http_get(&c, &url(id)).await), "miss");
        assert_eq!(status(http_get(&c, &url(id)).await), "hit");
    }
    assert_eq!(backend_calls(&chaos), 3);

    let purged = purge(&gw, r#"{"key": "/products/1"}"#).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.body);
    let view = purged.json();
    assert_eq!(
        (view["cache"].as_str(), view["key"].as_str()),
        (Some("product"), Some("/products/1"))
    );
    assert_eq!(view["local"], 1);
    assert!(view["shared"].is_null(), "no Redis tier");
    assert_eq!(status(http_get(&c, &url(1)).await), "miss");
    assert_eq!(status(http_get(&c, &url(2)).await), "hit");
    assert_eq!(backend_calls(&chaos), 4);

    let purged = purge(&gw, r#"{"prefix": "/products/"}"#).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.body);
    assert_eq!(purged.json()["local"], 3);
    for id in 1..=3 {
        assert_eq!(status(http_get(&c, &url(id)).await), "miss");
    }
    assert_eq!(backend_calls(&chaos), 7);
    let cache = gw.state.caches().get("product").unwrap();
    assert_eq!(cache.snapshot().invalidated, 4);

    // Bad input: a problem, and nothing purged.
    for (json, status) in [
        ("{}", StatusCode::UNPROCESSABLE_ENTITY),
        (
            r#"{"key": "/a", "prefix": "/b"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (r#"{"key": "products/1"}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"prefix": ""}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (
            r#"{"key": "/a", "ttl": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (r#"{"key": 7}"#, StatusCode::UNPROCESSABLE_ENTITY),
        ("not json", StatusCode::BAD_REQUEST),
    ] {
        let res = purge(&gw, json).await;
        assert_eq!(res.status, status, "{json}: {}", res.body);
        assert_eq!(res.header("content-type"), "application/problem+json");
        assert_eq!(res.json()["title"], "bad purge request", "{json}");
    }
    let unknown = admin(
        &gw,
        Method::POST,
        "/admin/caches/nope/purge",
        Some(r#"{"key": "/a"}"#),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let anonymous = send(
        &c,
        request(
            Method::POST,
            &gw.url("/admin/caches/product/purge"),
            None,
            Some(r#"{"prefix": "/"}"#),
        ),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        cache.snapshot().entries,
        3,
        "nothing purged by bad requests"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_aggregators_product_branch_uses_the_cache() {
    let gw = TestGateway::start(
        demo_config_with(&[("product", CACHE)], &aggregator_toml(5000, 5000)),
        Some(TOKEN),
    )
    .await;
    let chaos = counted(&gw);
    let c = client();
    let url = gw.url("/api/dashboard/user/7");
    let first = http_get(&c, &url).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second = http_get(&c, &url).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(first.json()["product"], second.json()["product"]);
    assert!(first.json()["product"].is_object(), "{}", first.body);
    assert_eq!(
        backend_calls(&chaos),
        1,
        "the second gather's branch was a hit"
    );
    let snap = gw.state.caches().get("product").unwrap().snapshot();
    assert_eq!((snap.hits, snap.misses), (1, 1));

    // A purge by the path removes the branch's entry (keyed by its
    // absolute URL) too.
    let purged = purge(&gw, r#"{"key": "/users/7/recommendations"}"#).await;
    assert_eq!(purged.json()["local"], 1, "{}", purged.body);
    assert_eq!(http_get(&c, &url).await.status, StatusCode::OK);
    assert_eq!(backend_calls(&chaos), 2);

    // With the product backend in outage, the branch is answered from its
    // entry: the gather stays complete.
    chaos.set_outage(true);
    let during = http_get(&c, &url).await;
    assert_eq!(during.status, StatusCode::OK);
    assert_ne!(
        during
            .headers
            .get("x-palisade-completed")
            .map(|v| v.to_str().unwrap()),
        Some("false"),
        "{}",
        during.body
    );
    assert!(during.json().get("errors").is_none(), "{}", during.body);
    assert_eq!(during.json()["product"], first.json()["product"]);
    gw.stop().await;
}

#[tokio::test]
async fn two_gateways_share_entries_through_redis() {
    let Some(redis_url) = service_url(REDIS_URL_VAR, "two_gateways_share_entries_through_redis")
    else {
        return;
    };
    let prefix = format!("{}:", unique_name("gateway_cache"));
    let layers = format!(
        "{CACHE}[upstreams.product.cache.redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 2000\n"
    );
    let a = TestGateway::start(demo_config_with(&[("product", &layers)], ""), Some(TOKEN)).await;
    let b = TestGateway::start(demo_config_with(&[("product", &layers)], ""), Some(TOKEN)).await;
    let (chaos_a, chaos_b) = (counted(&a), counted(&b));
    let c = client();

    let first = http_get(&c, &a.url("/api/product/products/9")).await;
    assert_eq!(first.header("x-palisade-cache"), "miss");
    // The entry is written to Redis in the background: wait for it there.
    let redis = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}/products/9");
    eventually(Duration::from_secs(10), || {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            exists.then_some(())
        }
    })
    .await;

    // The other gateway answers from the shared entry: its backend is not
    // called.
    let shared = http_get(&c, &b.url("/api/product/products/9")).await;
    assert_eq!(shared.status, StatusCode::OK);
    assert_eq!(shared.header("x-palisade-cache"), "hit");
    assert_eq!(shared.body, first.body);
    assert_eq!((backend_calls(&chaos_a), backend_calls(&chaos_b)), (1, 0));
    let snap = b.state.caches().get("product").unwrap().snapshot();
    let tier = snap.shared_tier.expect("a Redis tier");
    assert_eq!((tier.hits, tier.key_prefix.as_str()), (1, prefix.as_str()));

    // A purge through one gateway's admin API removes it from Redis.
    let purged = purge(&a, r#"{"key": "/products/9"}"#).await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.body);
    assert_eq!(purged.json()["shared"], 1);
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);

    let _ = a
        .state
        .caches()
        .get("product")
        .unwrap()
        .purge("", true)
        .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_bad_cache_table_is_refused_at_its_key() {
    let bad = |table: &str| {
        let text =
            format!("[upstreams.p]\nurl = \"http://127.0.0.1:9\"\n[upstreams.p.cache]\n{table}");
        palisade_gateway::Config::parse("gw.toml", &text).unwrap_err()
    };
    let err = bad("ttl = \"0s\"\n");
    assert_eq!(
        (err.key(), err.line(), err.column()),
        ("upstreams.p.cache.ttl", 4, 7)
    );
    let err = bad("max_entry_bytes_ms = 5\n");
    assert_eq!(err.key(), "upstreams.p.cache.max_entry_bytes_ms");
    let err = bad("colour = \"blue\"\n");
    assert_eq!((err.key(), err.line()), ("upstreams.p.cache.colour", 4));
    assert!(err.message().contains("unknown field"), "{err}");
    let err = bad("stale_if_error_ms = 1000\nmax_bytes = 10\n");
    assert_eq!(
        (err.key(), err.line(), err.column()),
        ("upstreams.p.cache.max_bytes", 5, 13)
    );
    let err = bad("[upstreams.p.cache.redis]\nurl = \"rediss://x\"\n");
    assert_eq!((err.key(), err.line()), ("upstreams.p.cache.redis.url", 5));
    assert!(err.message().contains("TLS"), "{err}");
    let err = bad("[upstreams.p.cache.redis]\nurl = \"redis://127.0.0.1\"\nkey_prefix = \"a*\"\n");
    assert_eq!(
        (err.key(), err.line()),
        ("upstreams.p.cache.redis.key_prefix", 6)
    );
    let ok = palisade_gateway::Config::parse(
        "gw.toml",
        "[upstreams.p]\nurl = \"http://127.0.0.1:9\"\n[upstreams.p.cache]\nttl_ms = 1500\nnegative_ttl = \"5s\"\n[upstreams.p.cache.redis]\nurl = \"redis://127.0.0.1:6379\"\ntimeout_ms = 100\n",
    )
    .unwrap();
    let cache = ok.upstreams["p"].cache.clone().unwrap();
    assert_eq!(cache.settings.ttl, Duration::from_millis(1500));
    assert_eq!(cache.settings.negative_ttl, Some(Duration::from_secs(5)));
    let redis = cache.redis.unwrap();
    assert_eq!(redis.url, "redis://127.0.0.1:6379");
    assert_eq!(redis.settings.timeout, Some(Duration::from_millis(100)));
}

#[test]
fn the_redis_tier_connects_lazily_from_a_runtime() {
    let config = palisade_gateway::Config::parse(
        "gw.toml",
        "[upstreams.p]\nurl = \"http://127.0.0.1:9\"\n[upstreams.p.cache]\n[upstreams.p.cache.redis]\nurl = \"redis://127.0.0.1:9\"\n",
    )
    .unwrap();
    let build = || palisade_gateway::AppState::from_config(&config, Default::default(), None);
    // Outside a runtime there is nothing to connect from: a start error,
    // not a panic.
    let err = build().unwrap_err().to_string();
    assert!(err.contains("runtime"), "{err}");
    // In one (not even running), the state builds without reaching Redis,
    // which is not there.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let state = build().expect("builds while Redis is unreachable");
    let snap = state.caches().get("p").unwrap().snapshot();
    assert!(snap.shared_tier.is_some());
}
