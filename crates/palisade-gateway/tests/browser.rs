//! The dashboard in a real browser: headless Chromium driven through
//! ChromeDriver with a few raw WebDriver calls.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`, or on `PATH`; `PALISADE_CHROMIUM` and
//! `PALISADE_CHROMEDRIVER` override the paths). Run by hand without them, the
//! test prints that it skipped; with `CI=true` it runs, and fails if they
//! are missing.
//!
//! Steps: start the gateway on 127.0.0.1:0 (the user upstream with a circuit
//! breaker that opens after 6 calls at 50 % failures and probes after 3 s:
//! long enough for the once-a-second tile to show it open, short enough for
//! a quick recovery; the aggregator over backends with distinct latencies);
//! load `/dashboard`; see a tile per upstream appear and update over
//! Server-Sent Events; press "Send one" and see the aggregator's waterfall:
//! six branch bars, the parallel gather shorter than the sequential sum;
//! while traffic flows, see the user tile's sparklines draw; type the admin
//! token; press the product tile's latency button and see the tile coloured
//! and the message say "latency on", then "off"; press the user tile's
//! outage button and see the message say "outage on", its error percentage
//! rise, its chaos line say so, its breaker tile show the breaker open with
//! the time until its next probe and the calls it refused in the window,
//! and its breaker strip turn to "open"; stop the traffic and press the
//! button again ("outage off"): once the wait is over the tile shows the
//! breaker half-open (waiting for a probe); traffic again: the probe
//! succeeds and the tile shows it closed. Every wait is a bounded poll with
//! a generous deadline.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request};
use http_body_util::BodyExt;
use palisade::circuit_breaker::State;
use serde_json::{Value, json};
use support::{TestGateway, ci, client, demo_config_with, find_tool, get};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const TOKEN: &str = "browser-test-token";
const DEADLINE: Duration = Duration::from_secs(60);

/// A WebDriver session over plain HTTP.
struct Driver {
    base: String,
    session: String,
    http: palisade_gateway::proxy::HttpClient,
}

async fn call(
    http: &palisade_gateway::proxy::HttpClient,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let res = tokio::time::timeout(DEADLINE, http.request(req))
        .await
        .unwrap_or_else(|_| panic!("webdriver call {url} timed out"))
        .unwrap_or_else(|e| panic!("webdriver call {url}: {e}"));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("webdriver answer to {url} is not JSON ({e})"))
}

impl Driver {
    async fn start(driver_port: u16, chromium: &Path, profile: &Path) -> Self {
        let base = format!("http://127.0.0.1:{driver_port}");
        let http = client();
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.to_string_lossy(),
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1280,1000",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }}
        });
        let res = call(&http, Method::POST, &format!("{base}/session"), Some(caps)).await;
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"))
            .to_owned();
        Self {
            base,
            session,
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    async fn goto(&self, url: &str) {
        let res = call(
            &self.http,
            Method::POST,
            &self.url("/url"),
            Some(json!({ "url": url })),
        )
        .await;
        assert!(res["value"].is_null(), "navigation failed: {res}");
    }

    /// Runs `script` in the page with `args`; its return value.
    async fn js(&self, script: &str, args: Value) -> Value {
        let res = call(
            &self.http,
            Method::POST,
            &self.url("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .await;
        res["value"].clone()
    }

    /// The text of the element at `selector`, or `None` if there is none.
    async fn text(&self, selector: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([selector]),
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    async fn element(&self, selector: &str) -> String {
        let res = call(
            &self.http,
            Method::POST,
            &self.url("/element"),
            Some(json!({ "using": "css selector", "value": selector })),
        )
        .await;
        res["value"][ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {res}"))
            .to_owned()
    }

    async fn click(&self, selector: &str) {
        let id = self.element(selector).await;
        let res = call(
            &self.http,
            Method::POST,
            &self.url(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .await;
        assert!(res["value"].is_null(), "click on {selector} failed: {res}");
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let id = self.element(selector).await;
        let res = call(
            &self.http,
            Method::POST,
            &self.url(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        )
        .await;
        assert!(
            res["value"].is_null(),
            "typing into {selector} failed: {res}"
        );
    }

    async fn quit(&self) {
        let _ = call(&self.http, Method::DELETE, &self.url(""), None).await;
    }
}

/// Polls `check` (every 100 ms) until it gives `Some`, for at most
/// [`DEADLINE`]; `what` names the wait in the failure.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET requests to one URL every 20 ms, in the background, until stopped.
struct Traffic {
    stop: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<u64>,
}

impl Traffic {
    fn start(url: &str) -> Self {
        let url = url.to_owned();
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let stopped = std::sync::Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let c = client();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut sent = 0u64;
            loop {
                tokio::select! {
                    () = stopped.notified() => return sent,
                    _ = tick.tick() => {
                        let _ = get(&c, &url).await;
                        sent += 1;
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// Stops after the request under way; the number sent.
    async fn stop(&mut self) -> u64 {
        self.stop.notify_one();
        (&mut self.task).await.unwrap()
    }
}

fn percent(text: &str) -> Option<f64> {
    text.trim().trim_end_matches('%').trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_an_outage_injected_from_its_button() {
    let (chromium, chromedriver) = (
        find_tool("chromium", "PALISADE_CHROMIUM"),
        find_tool("chromedriver", "PALISADE_CHROMEDRIVER"),
    );
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        assert!(
            !ci(),
            "CI=true but chromium and/or chromedriver are missing: install Debian's chromium and chromium-driver"
        );
        println!(
            "skipped: the browser test needs chromium and chromedriver (Debian packages chromium, chromium-driver)"
        );
        return;
    };

    let breaker = "[upstreams.user.circuit_breaker]\ncount_window = 10\nminimum_calls = 6\nfailure_rate_threshold = 50\nwait_in_open_ms = 3000\npermitted_calls_in_half_open = 1\n";
    let mut config = demo_config_with(&[("user", breaker)], &support::aggregator_toml(3000, 2000));
    // Distinct latencies, so the waterfall has something to show.
    for (name, ms) in [
        ("user", 5),
        ("order", 20),
        ("product", 10),
        ("review", 15),
        ("reward", 8),
        ("notification", 25),
    ] {
        config
            .demo
            .as_mut()
            .unwrap()
            .backends
            .get_mut(name)
            .unwrap()
            .latency = Duration::from_millis(ms);
    }
    let gw = TestGateway::start(config, Some(TOKEN)).await;
    let user_breaker = gw.state.circuit_breakers().get("user").unwrap();

    // ChromeDriver on a free port, with a fresh profile directory.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let profile =
        std::env::temp_dir().join(format!("palisade-browser-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&profile).unwrap();
    let mut driver_process = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let status_url = format!("http://127.0.0.1:{port}/status");
    until("chromedriver to be ready", || {
        let url = status_url.clone();
        async move {
            let req = Request::get(&url).body(Body::empty()).ok()?;
            let res = client().request(req).await.ok()?;
            let bytes = res.into_body().collect().await.ok()?.to_bytes();
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        }
    })
    .await;

    let driver = Driver::start(port, &chromium, &profile).await;
    driver.goto(&gw.url("/dashboard")).await;

    // A tile per upstream appears.
    until("a tile per upstream", || async {
        let n = driver
            .js(
                "return document.querySelectorAll('section.tile').length;",
                json!([]),
            )
            .await
            .as_u64()?;
        (n == palisade_gateway::config::DEMO_SERVICES.len() as u64).then_some(())
    })
    .await;
    assert_eq!(driver.text("#status").await.as_deref(), Some("live"));

    // The aggregator's waterfall: one request from the page, drawn as six
    // branch bars against the gather and the sequential sum.
    driver.click("#gather").await;
    let drawn = until("the waterfall of one gather", || async {
        let v = driver
            .js(
                "const rows = [...document.querySelectorAll('#waterfall .wf-row')];
                 return rows.map(r => ({ branch: r.getAttribute('data-branch'), outcome: r.getAttribute('data-outcome'),
                   width: r.querySelector('.wf-bar') ? r.querySelector('.wf-bar').getBoundingClientRect().width : 0 }));",
                json!([]),
            )
            .await;
        (v.as_array()?.len() == 8).then_some(v)
    })
    .await;
    let rows = drawn.as_array().unwrap();
    let branches: Vec<&str> = rows.iter().filter_map(|r| r["branch"].as_str()).collect();
    assert_eq!(
        branches,
        [
            "user",
            "order",
            "product",
            "review",
            "reward",
            "notification",
            "gather",
            "sequential"
        ]
    );
    for r in &rows[..6] {
        assert_eq!(r["outcome"], "ok", "{r}");
        assert!(r["width"].as_f64().unwrap() > 0.0, "a bar for {r}");
    }
    let page = &driver;
    let ms = |field: &'static str| async move {
        page.text(&format!("#gather-summary [data-field={field}]"))
            .await
            .and_then(|t| t.trim_end_matches(" ms").parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {field} figure"))
    };
    let (parallel, sequential) = (ms("parallel").await, ms("sequential").await);
    assert!(
        parallel >= 25.0 && parallel < sequential,
        "parallel {parallel} ms vs sequential {sequential} ms"
    );
    let (sequential_bar, gather_bar) = (
        rows[7]["width"].as_f64().unwrap(),
        rows[6]["width"].as_f64().unwrap(),
    );
    assert!(
        gather_bar < sequential_bar,
        "the gather's bar is the shorter"
    );

    // Traffic to the user upstream, in the background.
    let url = gw.url("/api/user/users/42");
    let mut traffic = Traffic::start(&url);

    // The tile updates over SSE: its call count climbs, with no errors yet.
    until("the user tile to count calls", || async {
        let calls: u64 = driver
            .text("#tile-user [data-field=requests]")
            .await?
            .trim()
            .parse()
            .ok()?;
        (calls >= 10).then_some(())
    })
    .await;
    let before = percent(
        &driver
            .text("#tile-user [data-field=error_pct]")
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(before < 1.0, "no errors before the outage, got {before} %");
    let stamp = driver.text("#updated").await.unwrap();
    until("another snapshot", || async {
        (driver.text("#updated").await? != stamp).then_some(())
    })
    .await;
    // Its sparklines draw the calls, one point a second.
    until("the user tile's request-rate sparkline", || async {
        let v = driver
            .js(
                "const s = document.querySelector('#tile-user svg[data-spark=rate]');
                 return { points: Number(s.getAttribute('data-points') || 0), max: Number(s.getAttribute('data-max') || 0),
                          segments: (s.querySelector('path').getAttribute('d').match(/L/g) || []).length };",
                json!([]),
            )
            .await;
        (v["points"].as_u64()? >= 2 && v["segments"].as_u64()? >= 1 && v["max"].as_f64()? >= 1.0)
            .then_some(())
    })
    .await;
    for spark in ["error_pct", "p99"] {
        let d = driver
            .js(
                "return document.querySelector('#tile-user svg[data-spark=' + arguments[0] + '] path').getAttribute('d');",
                json!([spark]),
            )
            .await;
        assert!(
            d.as_str().is_some_and(|d| d.starts_with('M')),
            "{spark}: {d}"
        );
    }
    let strip = driver
        .js(
            "return [...document.querySelectorAll('#tile-user svg[data-spark=breaker] rect')].map(r => r.getAttribute('data-state'));",
            json!([]),
        )
        .await;
    assert_eq!(strip, json!(["closed"]), "one band: closed so far");

    // The token goes in the field; the chaos buttons call the admin API.
    driver.type_into("#token", TOKEN).await;

    // Injected latency colours the tile, and the message says what changed.
    let slow = |on: bool| async move {
        page
            .js(
                "const t = document.querySelector('#tile-product');
                 return t.classList.contains('slow') && getComputedStyle(t).borderLeftColor === 'rgb(163, 113, 247)';",
                json!([]),
            )
            .await
            .as_bool()
            .filter(|s| *s == on)
            .map(|_| ())
    };
    assert_eq!(slow(false).await, Some(()), "not coloured before");
    driver
        .click("#tile-product button[data-action=latency]")
        .await;
    until("the latency message", || async {
        driver
            .text("#message")
            .await
            .filter(|m| m == "product: +300 ms latency on")
    })
    .await;
    until("the product tile to be coloured", || slow(true)).await;
    driver
        .click("#tile-product button[data-action=latency]")
        .await;
    until("the latency-off message", || async {
        driver
            .text("#message")
            .await
            .filter(|m| m == "product: latency off")
    })
    .await;
    until("the product tile's colour to go", || slow(false)).await;

    driver.click("#tile-user button[data-action=outage]").await;
    until("the admin call to succeed", || async {
        driver
            .text("#message")
            .await
            .filter(|m| m == "user: outage on")
            .map(|_| ())
    })
    .await;
    assert!(
        gw.state.chaos().get("user").unwrap().settings().outage,
        "the outage reached the backend's chaos layer"
    );

    // The tile shows it: the error % rises, the chaos line says OUTAGE.
    let after = until("the user tile's error % to rise", || async {
        let p = percent(&driver.text("#tile-user [data-field=error_pct]").await?)?;
        (p >= 20.0).then_some(p)
    })
    .await;
    assert!(after > before);
    until("the chaos line to show the outage", || async {
        driver
            .text("#tile-user [data-field=chaos]")
            .await
            .filter(|t| t.contains("OUTAGE"))
            .map(|_| ())
    })
    .await;
    let on = driver
        .js("return document.querySelector('#tile-user button[data-action=outage]').classList.contains('on');", json!([]))
        .await;
    assert_eq!(on, json!(true));
    // The breaker tile: open, with the time until the next probe (at most
    // the 3 s wait), while the breaker itself is open.
    let tile = until(
        "the breaker tile to show the breaker open with its next probe",
        || async {
            let text = driver.text("#tile-user [data-field=breaker]").await?;
            let secs: f64 = text
                .strip_prefix("open · probe in ")?
                .split_once(" s")?
                .0
                .parse()
                .ok()?;
            let open = user_breaker.state() == State::Open;
            (open && secs > 0.0 && secs <= 3.0).then_some(text)
        },
    )
    .await;
    assert!(tile.contains("failing"), "{tile}");
    until("the tile to count refused calls", || async {
        driver
            .text("#tile-user [data-field=breaker]")
            .await
            .filter(|t| t.starts_with("open") && t.contains("refused"))
            .map(|_| ())
    })
    .await;
    // Refused over the window, like the other figures.
    until("the refused figure", || async {
        let n: u64 = driver
            .text("#tile-user [data-field=refused]")
            .await?
            .trim()
            .parse()
            .ok()?;
        (n > 0).then_some(())
    })
    .await;
    until("the breaker strip to show it open", || async {
        driver
            .js(
                "return [...document.querySelectorAll('#tile-user svg[data-spark=breaker] rect')].some(r => r.getAttribute('data-state') === 'open');",
                json!([]),
            )
            .await
            .as_bool()
            .filter(|open| *open)
    })
    .await;
    let bad = driver
        .js(
            "return document.querySelector('#tile-user').classList.contains('bad');",
            json!([]),
        )
        .await;
    assert_eq!(bad, json!(true));

    // The outage ends (the same button) with no traffic: once the wait is
    // over the breaker is half-open, waiting for a probe, and the tile says
    // so.
    let sent = traffic.stop().await;
    assert!(sent > 0);
    driver.click("#tile-user button[data-action=outage]").await;
    until("the admin call ending the outage to succeed", || async {
        (!gw.state.chaos().get("user").unwrap().settings().outage).then_some(())
    })
    .await;
    until("the message to say the outage is off", || async {
        driver
            .text("#message")
            .await
            .filter(|m| m == "user: outage off")
    })
    .await;
    until("the breaker tile to show the breaker half-open", || async {
        driver
            .text("#tile-user [data-field=breaker]")
            .await
            .filter(|t| t.starts_with("half_open"))
            .map(|_| ())
    })
    .await;
    assert_eq!(user_breaker.state(), State::HalfOpen);

    // Traffic again: the probe succeeds and closes it.
    let mut traffic = Traffic::start(&url);
    until(
        "the breaker tile to show the breaker closed again",
        || async {
            driver
                .text("#tile-user [data-field=breaker]")
                .await
                .filter(|t| t.starts_with("closed"))
                .map(|_| ())
        },
    )
    .await;
    assert_eq!(user_breaker.state(), State::Closed);
    assert!(!gw.state.chaos().get("user").unwrap().settings().outage);
    // Other tiles are untouched.
    let order_errors = percent(
        &driver
            .text("#tile-order [data-field=error_pct]")
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(order_errors < 1.0);

    assert!(traffic.stop().await > 0);
    driver.quit().await;
    let _ = driver_process.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
    gw.stop().await;
}
