//! The Redis tier against a real server: two instances share entries; with
//! Redis down, the process tier goes on behind the breaker.
//!
//! `PALISADE_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`) points at the
//! shared server; each test writes under its own key prefix and removes it.
//! The outage test starts its own `redis-server` on a free port and kills it.
#![cfg(all(feature = "redis", feature = "http"))]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use palisade_cache::backend::redis::RedisTier;
use palisade_cache::{CacheHandle, CacheLayer, FnCodec};
use palisade_circuit_breaker::CircuitBreakerLayer;
use palisade_test_util::{REDIS_URL_VAR, in_ci, service_url, unique_name};
use redis::aio::ConnectionManager;
use tower::{Layer, Service, ServiceExt};

/// An origin that counts its calls and names each body after the call.
#[derive(Clone, Default)]
struct Origin(Arc<AtomicUsize>);

impl Service<Request<()>> for Origin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, request: Request<()>) -> Self::Future {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let body = format!("{} from call {n}", request.uri().path());
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert("cache-control", "max-age=60".parse().unwrap());
        ready(Ok(response))
    }
}

impl Origin {
    fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn body(
    response: Response<palisade_cache::http::CacheBody<Full<Bytes>>>,
) -> (String, String) {
    let cache = response.headers()["x-palisade-cache"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8(bytes.to_vec()).unwrap(), cache)
}

/// Waits (bounded, without sleeping) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn connect(url: &str) -> ConnectionManager {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1);
    redis::Client::open(url)
        .unwrap()
        .get_connection_manager_with_config(config)
        .await
        .unwrap()
}

fn writes(handle: &CacheHandle) -> u64 {
    handle.snapshot().shared_tier.unwrap().writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_entries_through_redis() {
    let Some(url) = service_url(REDIS_URL_VAR, "two_instances_share_entries_through_redis") else {
        return;
    };
    let prefix = format!("{}:", unique_name("cache_share"));
    let connection = connect(&url).await;
    let instance = |name: &str| {
        CacheLayer::http_builder(name)
            .redis(RedisTier::new(connection.clone()).key_prefix(prefix.clone()))
            .build()
            .unwrap()
    };
    let (a, b) = (instance("fleet-a"), instance("fleet-b"));
    let (origin_a, origin_b) = (Origin::default(), Origin::default());
    let (svc_a, svc_b) = (a.layer(origin_a.clone()), b.layer(origin_b.clone()));

    let (text, cache) = body(
        svc_a
            .clone()
            .oneshot(Request::get("/products/7").body(()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (text.as_str(), cache.as_str()),
        ("/products/7 from call 1", "miss")
    );
    until("the write to Redis", || writes(&a.handle()) == 1).await;

    // The other instance has never seen the key: Redis answers for it.
    let (text, cache) = body(
        svc_b
            .clone()
            .oneshot(Request::get("/products/7").body(()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (text.as_str(), cache.as_str()),
        ("/products/7 from call 1", "hit")
    );
    assert_eq!(origin_b.calls(), 0, "instance b never called its origin");
    let tier = b.handle().snapshot().shared_tier.unwrap();
    assert_eq!((tier.hits, tier.breaker_state), (1, "closed"));
    // Now in b's process tier too.
    let (_, cache) = body(
        svc_b
            .clone()
            .oneshot(Request::get("/products/7").body(()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cache, "hit");
    assert_eq!(b.handle().snapshot().shared_tier.unwrap().hits, 1);

    // A purge through one instance's handle clears Redis for the fleet.
    let purged = a.handle().purge("/products/", true).await.unwrap();
    assert_eq!((purged.local, purged.shared), (1, Some(1)));
    let mut check = connection.clone();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut check)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_function_cache_shares_through_its_codec() {
    let Some(url) = service_url(
        REDIS_URL_VAR,
        "a_key_function_cache_shares_through_its_codec",
    ) else {
        return;
    };
    let prefix = format!("{}:", unique_name("cache_codec"));
    let connection = connect(&url).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let instance = |name: &str| {
        let calls = Arc::clone(&calls);
        let layer = CacheLayer::builder(name)
            .key(|n: &u32| Some(*n))
            .codec(FnCodec::new(
                |v: &String| Some(v.as_bytes().to_vec()),
                |b: &[u8]| String::from_utf8(b.to_vec()).ok(),
            ))
            .redis(RedisTier::new(connection.clone()).key_prefix(prefix.clone()))
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(tower::service_fn(move |n: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            ready(Ok::<_, Infallible>(format!("value {n}")))
        }));
        (svc, handle)
    };
    let ((a, a_handle), (b, _)) = (instance("codec-a"), instance("codec-b"));
    assert_eq!(a.clone().oneshot(3).await.unwrap(), "value 3");
    until("the write to Redis", || writes(&a_handle) == 1).await;
    assert_eq!(b.clone().oneshot(3).await.unwrap(), "value 3");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    a_handle.purge("3", false).await.unwrap();
}

/// A `redis-server` of the test's own, killed on drop.
struct OwnRedis {
    child: tokio::process::Child,
    url: String,
}

impl OwnRedis {
    async fn start(test: &str) -> Option<Self> {
        let which = std::process::Command::new("redis-server")
            .arg("--version")
            .output();
        if which.is_err() {
            assert!(
                !in_ci(),
                "{test}: redis-server is missing, and CI=true requires this test to run"
            );
            println!(
                "{test}: skipped, redis-server is not installed (Debian package redis-server)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(mut c) = client.get_multiplexed_async_connection().await
                    && redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("redis-server answers");
        Some(Self { child, url })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_process_tier_goes_on() {
    let Some(mut server) = OwnRedis::start("with_redis_down_the_process_tier_goes_on").await else {
        return;
    };
    let connection = connect(&server.url).await;
    let breaker = CircuitBreakerLayer::builder("outage-redis")
        .consecutive_failures(2)
        .wait_in_open(Duration::from_secs(600))
        .build()
        .unwrap();
    let breaker_handle = breaker.handle();
    let layer = CacheLayer::http_builder("outage")
        .redis(
            RedisTier::new(connection)
                .timeout(Duration::from_millis(300))
                .breaker(breaker),
        )
        .build()
        .unwrap();
    let handle = layer.handle();
    let origin = Origin::default();
    let svc = layer.layer(origin.clone());
    let get = |path: &str| svc.clone().oneshot(Request::get(path).body(()).unwrap());

    assert_eq!(body(get("/a").await.unwrap()).await.1, "miss");
    until("the write to Redis", || writes(&handle) == 1).await;

    server.child.kill().await.unwrap();

    // What the process tier holds is served as before.
    assert_eq!(
        body(get("/a").await.unwrap()).await,
        ("/a from call 1".to_owned(), "hit".to_owned())
    );
    // Misses fail over to the origin: Redis errors, then the breaker opens
    // and Redis is not even tried.
    for (i, path) in ["/b", "/c", "/d", "/e"].into_iter().enumerate() {
        let (text, cache) = body(get(path).await.unwrap()).await;
        assert_eq!(text, format!("{path} from call {}", i + 2));
        assert_eq!(cache, "miss");
    }
    assert_eq!(
        body(get("/b").await.unwrap()).await.1,
        "hit",
        "stored in process"
    );
    until("the writes to fail", || {
        let tier = handle.snapshot().shared_tier.unwrap();
        tier.errors + tier.skipped >= 8
    })
    .await;
    assert_eq!(breaker_handle.state().as_str(), "open");
    let tier = handle.snapshot().shared_tier.unwrap();
    assert_eq!(tier.breaker_state, "open");
    assert!(tier.errors >= 2, "{tier:?}");
    assert!(tier.skipped >= 1, "{tier:?}");
    assert_eq!(origin.calls(), 5);
}
