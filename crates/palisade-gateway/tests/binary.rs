//! The binary as an operator runs it: JSON logs, a real SIGTERM, exit 0,
//! promptly.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_palisade-gateway");

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_and_exits_zero_with_json_logs() {
    // The embedded default config, with a readiness grace long enough to
    // check `/readyz` on a busy machine.
    let printed = std::process::Command::new(BIN)
        .arg("--print-default-config")
        .output()
        .unwrap();
    let default = String::from_utf8(printed.stdout).unwrap();
    // And the access log on, to find the request's line.
    let configured = default
        .replacen("shutdown_grace_ms = 1000", "shutdown_grace_ms = 3000", 1)
        .replacen("access_log = \"off\"", "access_log = \"all\"", 1);
    assert!(
        configured.contains("shutdown_grace_ms = 3000")
            && configured.contains("access_log = \"all\""),
        "the default config sets shutdown_grace_ms and access_log"
    );
    let dir = std::env::temp_dir().join(format!("palisade-gateway-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, configured).unwrap();

    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        // The accounts' default SQLite file goes in the test's directory.
        .current_dir(&dir)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .env("PALISADE_ADMIN_TOKEN", "from-env")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();

    // Every log line is a JSON object; find the listening address.
    let mut saw_env_token = false;
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the gateway logs until it listens");
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
            let message = v["message"].as_str().unwrap_or("");
            saw_env_token |= message.contains("token from PALISADE_ADMIN_TOKEN");
            assert!(
                !line.contains("from-env"),
                "the token itself is never logged when it was given: {line}"
            );
            if message == "gateway listening" {
                break v["addr"].as_str().unwrap().to_owned();
            }
        }
    })
    .await
    .expect("the gateway listens within 30 s");
    assert!(saw_env_token);

    // It serves.
    let client = palisade_gateway::proxy::http_client();
    let res = client
        .request(
            http::Request::get(format!("http://{addr}/api/user/users/1"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    drop(res);

    // SIGTERM: a clean exit, 0.
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    // Not ready at once, while still accepting: a new connection's
    // `/readyz` gets 503.
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let not_ready = line.contains("/readyz answers 503");
            rest.push(line);
            if not_ready {
                return;
            }
        }
        panic!("the gateway did not log the readiness grace: {rest:?}");
    })
    .await
    .expect("the gateway logs the readiness grace within 30 s of SIGTERM");
    let ready = palisade_gateway::proxy::http_client()
        .request(
            http::Request::get(format!("http://{addr}/readyz"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .expect("still accepting during the readiness grace");
    assert_eq!(ready.status(), 503);
    drop(ready);
    let exit = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        child.wait().await.unwrap()
    })
    .await
    .expect("the gateway exits within 30 s of SIGTERM");
    assert_eq!(exit.code(), Some(0), "{rest:?}");
    let text = rest.join("\n");
    assert!(
        text.contains("SIGTERM received") && text.contains("gateway stopped"),
        "{text}"
    );
    // The access log line of the request: one JSON object whose fields are
    // keys of their own, its id among them.
    let access = rest
        .iter()
        .find(|l| l.contains("finished processing request") && l.contains("/api/user/users/1"))
        .unwrap_or_else(|| panic!("no access log line in {text}"));
    let access: serde_json::Value = serde_json::from_str(access).unwrap();
    assert_eq!(access["target"], "palisade_gateway::access", "{access}");
    assert_eq!(access["request_id"], request_id.as_str(), "{access}");
    assert_eq!(access["method"], "GET", "{access}");
    assert_eq!(access["path"], "/api/user/users/1", "{access}");
    assert_eq!(access["status"], 200, "{access}");
    assert!(access["latency_ms"].is_number(), "{access}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The embedded default config with `from` replaced by `to` (which must be
/// there), written to a file of its own; the file's directory.
fn default_config_with(
    from: &str,
    to: &str,
    what: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let printed = std::process::Command::new(BIN)
        .arg("--print-default-config")
        .output()
        .unwrap();
    let default = String::from_utf8(printed.stdout).unwrap();
    let configured = default.replacen(from, to, 1);
    assert_ne!(configured, default, "the default config has {from:?}");
    let dir = std::env::temp_dir().join(format!("palisade-gateway-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, configured).unwrap();
    (config, dir)
}

/// Once it logs "gateway stopped" the process has nothing left to do: it
/// exits at once, whatever it served (proxied calls, the aggregator, an
/// open dashboard stream, idle keep-alive connections), not a second or two
/// later.
#[cfg(unix)]
#[tokio::test]
async fn after_sigterm_the_process_exits_promptly_once_stopped() {
    /// A process exit takes milliseconds; the bound leaves room for a busy
    /// machine and still catches a linger of a second.
    const EXIT_BOUND: Duration = Duration::from_millis(750);
    let (config, dir) =
        default_config_with("shutdown_grace_ms = 1000", "shutdown_grace_ms = 0", "exit");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        // The accounts' default SQLite file goes in the test's directory.
        .current_dir(&dir)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    // Every line, stamped as it is read, by a task that does nothing else.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send((tokio::time::Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, line) = rx.recv().await.expect("the gateway logs until it listens");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["message"] == "gateway listening" {
                break v["addr"].as_str().unwrap().to_owned();
            }
        }
    })
    .await
    .expect("the gateway listens within 30 s");

    // Work of every kind, and connections left open: idle keep-alive ones
    // in the client's pool and a dashboard event stream.
    let client = palisade_gateway::proxy::http_client();
    let get = |path: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for path in [
        "/api/user/users/1",
        "/api/dashboard/user/2",
        "/api/review/users/3/reviews",
        "/metrics",
    ] {
        let res = client.request(get(path)).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let _ = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap();
    }
    let events = client.request(get("/dashboard/events")).await.unwrap();
    assert_eq!(events.status(), 200);

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let mut seen = Vec::new();
    let stopped_at = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let Some((at, line)) = rx.recv().await else {
                panic!("the gateway never logged that it stopped: {seen:?}");
            };
            let stopped = line.contains("gateway stopped");
            seen.push(line);
            if stopped {
                return at;
            }
        }
    })
    .await
    .expect("the gateway stops within 30 s of SIGTERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process exits")
        .unwrap();
    let lingered = stopped_at.elapsed();
    assert_eq!(exit.code(), Some(0), "{seen:?}");
    assert!(
        lingered < EXIT_BOUND,
        "the process exited {lingered:?} after logging that it stopped"
    );
    drop(events);
    let _ = std::fs::remove_dir_all(&dir);
}
