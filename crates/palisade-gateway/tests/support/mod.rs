//! Shared helpers: start a gateway on 127.0.0.1:0, call it, read bodies.
//!
//! These tests run on the real clock, unlike the layer crates' tests: they
//! drive real sockets (hyper's server and client, the demo backends, a
//! browser), and tokio's paused clock would jump past every timeout while the
//! runtime waits on that I/O. So nothing here waits a fixed time: a test polls
//! for the state it expects with [`eventually`] (every 20 ms, bounded by a
//! deadline, returning as soon as the state is reached). The only waits of a
//! set length are the windows a test is about (a shutdown grace, a drain
//! deadline, a chaos latency), kept to a few hundred milliseconds except the
//! 2 s readiness grace, which must outlast the checks made within it on a
//! loaded machine.
#![allow(dead_code, unreachable_pub)] // each test binary uses a subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use palisade_gateway::config::Config;
use palisade_gateway::proxy::{HttpClient, http_client};
use palisade_gateway::{AppState, Gateway};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// A config with every demo backend on a free port, no simulated latency,
/// the gateway on a free port, no readiness grace at shutdown (a test that
/// needs one sets `server.shutdown_grace`), and `extra` appended (more upstreams and
/// routes).
pub fn demo_config(extra: &str) -> Config {
    demo_config_with(&[], extra)
}

/// As [`demo_config`], with `layers[service]` written right after that
/// upstream's `timeout_ms` line: more keys of `[upstreams.<service>]`, then
/// its sub-tables (`[upstreams.user.circuit_breaker]` ...).
pub fn demo_config_with(layers: &[(&str, &str)], extra: &str) -> Config {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nbody_limit_bytes = 65536\ndrain_timeout_ms = 5000\nshutdown_grace_ms = 0\n\n[event_store]\nurl = \"memory:\"\n\n[demo]\nseed = 7\n",
    );
    for s in palisade_gateway::config::DEMO_SERVICES {
        text.push_str(&format!("[demo.backends.{s}]\nlisten = \"127.0.0.1:0\"\n"));
    }
    for s in palisade_gateway::config::DEMO_SERVICES {
        let more = layers
            .iter()
            .find(|(name, _)| *name == s)
            .map_or("", |(_, text)| *text);
        text.push_str(&format!(
            "[upstreams.{s}]\nurl = \"demo://{s}\"\ntimeout_ms = 300\n{more}\n[[routes]]\nprefix = \"/api/{s}\"\nupstream = \"{s}\"\n"
        ));
    }
    text.push_str(extra);
    Config::parse("test.toml", &text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

/// The `[aggregator]` of the embedded default config (six branches, user and
/// order required), with `deadline_ms` and each branch's `timeout_ms`.
pub fn aggregator_toml(deadline_ms: u64, branch_timeout_ms: u64) -> String {
    let mut text = format!("[aggregator]\ndeadline_ms = {deadline_ms}\n");
    for (name, path, required) in [
        ("user", "/users/{id}", true),
        ("order", "/users/{id}/orders", true),
        ("product", "/users/{id}/recommendations", false),
        ("review", "/users/{id}/reviews", false),
        ("reward", "/users/{id}/rewards", false),
        ("notification", "/users/{id}/notifications", false),
    ] {
        text.push_str(&format!(
            "[[aggregator.branches]]\nname = \"{name}\"\nupstream = \"{name}\"\npath = \"{path}\"\nrequired = {required}\ntimeout_ms = {branch_timeout_ms}\n"
        ));
    }
    text
}

/// A gateway serving in the background.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub state: AppState,
    pub backends: Vec<(String, SocketAddr)>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    pub async fn start(config: Config, token: Option<&str>) -> Self {
        // A test gateway keeps the accounts' events in memory unless the
        // test chose a store: the default SQLite file would land in the
        // crate's directory.
        let mut config = config;
        if config.event_store == palisade::event_store::EventStoreSettings::default() {
            config.event_store.url = "memory:".to_owned();
        }
        let gateway = Gateway::bind(config, token.map(str::to_owned))
            .await
            .expect("gateway starts");
        let addr = gateway.local_addr();
        let state = gateway.state().clone();
        let backends = gateway
            .backends()
            .map(|b| b.iter().map(|d| (d.name.clone(), d.addr)).collect())
            .unwrap_or_default();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            state,
            backends,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn backend(&self, name: &str) -> SocketAddr {
        self.backends
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .expect("backend exists")
    }

    /// Signals shutdown without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits (bounded, 10 s) until the listener refuses new connections.
    pub async fn wait_until_refusing(&self) {
        let addr = self.addr;
        eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        })
        .await;
    }

    /// Signals shutdown and waits (bounded) for the server to return.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the gateway stops within 30 s")
                .expect("the serve task did not panic")
                .expect("serve returned Ok");
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The problem body's `detail` text.
    pub fn detail(&self) -> String {
        match &self.json()["detail"] {
            serde_json::Value::String(detail) => detail.clone(),
            _ => panic!("no `detail` string in {}", self.body),
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

pub fn client() -> HttpClient {
    http_client()
}

pub async fn send(client: &HttpClient, req: Request<Body>) -> Reply {
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("an answer within 30 s")
        .expect("the request is answered");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("the body is read").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The first snapshot of `GET /dashboard/events` (a `text/event-stream`
/// whose first event is `snapshot`, sent at once), parsed.
pub async fn dashboard_snapshot(gw: &TestGateway) -> serde_json::Value {
    let res = client()
        .request(
            Request::get(gw.url("/dashboard/events"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let mut text = String::new();
    // Read until the first event is complete.
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.starts_with("event: snapshot\n"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    serde_json::from_str(data).unwrap()
}

pub async fn get(client: &HttpClient, url: &str) -> Reply {
    send(client, Request::get(url).body(Body::empty()).unwrap()).await
}

pub fn request(
    method: Method,
    url: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    match json {
        Some(j) => b
            .header("content-type", "application/json")
            .body(Body::from(j.to_owned()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream whose `GET /hold` answers `released` only when the test
/// releases it; it tells the test when a call arrives, and counts calls.
pub struct Gate {
    /// Where it listens.
    pub addr: SocketAddr,
    entered: mpsc::UnboundedReceiver<()>,
    release: Arc<Notify>,
    calls: Arc<AtomicUsize>,
}

impl Gate {
    /// Starts the upstream on a free loopback port.
    pub async fn start() -> Self {
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let (r, n) = (Arc::clone(&release), Arc::clone(&calls));
        let app = axum::Router::new().route(
            "/hold",
            axum::routing::get(move || {
                let (entered_tx, r, n) = (entered_tx.clone(), Arc::clone(&r), Arc::clone(&n));
                async move {
                    n.fetch_add(1, Ordering::SeqCst);
                    let _ = entered_tx.send(());
                    r.notified().await;
                    "released"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            entered,
            release,
            calls,
        }
    }

    /// `[upstreams.<name>]` at this upstream with `timeout_ms`, then `tables`
    /// (its sub-tables, if any), then the route `/api/<name>` to it.
    pub fn upstream_toml(&self, name: &str, timeout_ms: u64, tables: &str) -> String {
        format!(
            "[upstreams.{name}]\nurl = \"http://{}\"\ntimeout_ms = {timeout_ms}\n{tables}\
             [[routes]]\nprefix = \"/api/{name}\"\nupstream = \"{name}\"\n",
            self.addr
        )
    }

    /// Waits until the next call has reached the upstream (and is held).
    pub async fn entered(&mut self) {
        self.entered
            .recv()
            .await
            .expect("a call reached the gated upstream");
    }

    /// Calls that reached the upstream so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Releases one held call and checks that `held`, the client's side of
    /// it, then gets `200 released`.
    pub async fn release(&self, held: JoinHandle<Reply>) {
        self.release.notify_one();
        let res = held.await.unwrap();
        assert_eq!(
            (res.status, res.body.as_str()),
            (StatusCode::OK, "released")
        );
    }
}

/// `true` when the tests run under CI (`CI=true`): a test that needs an
/// optional tool must then run, and fail if the tool is missing.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `name`'s path: the environment variable `env` if set (a path that does
/// not exist means "missing"), else `/usr/bin/<name>`, else `PATH`.
pub fn find_tool(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(given) = std::env::var_os(env) {
        let given = PathBuf::from(given);
        return given.is_file().then_some(given);
    }
    let fixed = Path::new("/usr/bin").join(name);
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
