//! Each kind of bad config is refused with the file, line, column and key;
//! the binary exits non-zero with that message, and on a port in use.

use std::process::Command;

use palisade_gateway::config::{Config, DEFAULT_CONFIG};

const BIN: &str = env!("CARGO_BIN_EXE_palisade-gateway");

/// A small valid config; tests break one line of it.
const BASE: &str = r#"[server]
listen = "127.0.0.1:0"

[upstreams.users]
url = "http://127.0.0.1:9000"
timeout_ms = 500

[upstreams.users.circuit_breaker]
failure_rate_threshold = 50

[[routes]]
prefix = "/api/users"
upstream = "users"
"#;

/// Parses `BASE` with `from` replaced by `to`, expecting an error at
/// `(line, column)` about `key`, whose message contains `says`.
fn refused(from: &str, to: &str, line: usize, column: usize, key: &str, says: &str) {
    assert!(BASE.contains(from), "{from:?} not in the base config");
    let text = BASE.replacen(from, to, 1);
    let err = Config::parse("bad.toml", &text).expect_err(&format!("must be refused:\n{text}"));
    assert_eq!(err.file(), "bad.toml");
    assert_eq!((err.line(), err.column()), (line, column), "{err}");
    assert_eq!(err.key(), key, "{err}");
    assert!(err.message().contains(says), "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("bad.toml:{line}:{column}: `{key}`: ")),
        "{shown}"
    );
}

#[test]
fn the_base_config_is_valid() {
    let cfg = Config::parse("ok.toml", BASE).unwrap();
    assert_eq!(cfg.upstreams["users"].timeout.as_millis(), 500);
    assert_eq!(cfg.routes[0].upstream, "users");
    let cb = cfg.upstreams["users"].circuit_breaker.as_ref().unwrap();
    assert!((cb.failure_rate_threshold - 50.0).abs() < f64::EPSILON);
    assert_eq!(
        cb.minimum_number_of_calls, 20,
        "defaults fill what is not written"
    );
}

#[test]
fn an_unknown_field() {
    refused(
        "timeout_ms = 500",
        "timeout_ms = 500\ntimeout = 5",
        7,
        1,
        "upstreams.users.timeout",
        "unknown field `timeout`",
    );
    refused(
        "[server]\n",
        "[server]\nlisten_addr = \"x\"\n",
        2,
        1,
        "server.listen_addr",
        "unknown field `listen_addr`",
    );
    refused(
        "failure_rate_threshold = 50",
        "failure_rate_treshold = 50",
        9,
        1,
        "upstreams.users.circuit_breaker.failure_rate_treshold",
        "unknown field",
    );
}

#[test]
fn a_negative_or_zero_timeout() {
    refused(
        "timeout_ms = 500",
        "timeout_ms = -5",
        6,
        14,
        "upstreams.users.timeout_ms",
        "must be > 0 milliseconds, got -5",
    );
    refused(
        "timeout_ms = 500",
        "timeout_ms = 0",
        6,
        14,
        "upstreams.users.timeout_ms",
        "got 0",
    );
}

#[test]
fn a_threshold_over_100_percent() {
    refused(
        "failure_rate_threshold = 50",
        "failure_rate_threshold = 150",
        9,
        26,
        "upstreams.users.circuit_breaker.failure_rate_threshold",
        "must be a percentage in (0, 100], got 150",
    );
    refused(
        "failure_rate_threshold = 50",
        "failure_rate_threshold = 0",
        9,
        26,
        "upstreams.users.circuit_breaker.failure_rate_threshold",
        "got 0",
    );
}

#[test]
fn a_route_naming_a_missing_upstream() {
    refused(
        "upstream = \"users\"",
        "upstream = \"orders\"",
        13,
        12,
        "routes[0].upstream",
        "no upstream named `orders` (declared: users)",
    );
}

#[test]
fn other_bad_values() {
    refused(
        "listen = \"127.0.0.1:0\"",
        "listen = \"localhost\"",
        2,
        10,
        "server.listen",
        "not an address",
    );
    refused(
        "url = \"http://127.0.0.1:9000\"",
        "url = \"https://x.example\"",
        5,
        7,
        "upstreams.users.url",
        "no TLS",
    );
    refused(
        "url = \"http://127.0.0.1:9000\"",
        "url = \"ftp:/x\"",
        5,
        7,
        "upstreams.users.url",
        "not an upstream URL",
    );
    refused(
        "url = \"http://127.0.0.1:9000\"",
        "url = \"demo://users\"",
        5,
        7,
        "upstreams.users.url",
        "names no demo backend",
    );
    refused(
        "prefix = \"/api/users\"",
        "prefix = \"/admin/users\"",
        12,
        10,
        "routes[0].prefix",
        "gateway serves itself",
    );
    refused(
        "prefix = \"/api/users\"",
        "prefix = \"api/{x}\"",
        12,
        10,
        "routes[0].prefix",
        "must look like",
    );
    // A value of the wrong type is placed at the value, with its key.
    refused(
        "timeout_ms = 500",
        "timeout_ms = \"soon\"",
        6,
        14,
        "upstreams.users.timeout_ms",
        "invalid type",
    );
}

#[test]
fn broken_toml_is_placed_too() {
    let err = Config::parse("broken.toml", "[server]\nlisten = \n").unwrap_err();
    assert_eq!(err.line(), 2, "{err}");
    assert_eq!(err.key(), "server.listen", "{err}");
}

#[test]
fn every_layer_table_is_checked() {
    let extra = |table: &str| format!("{BASE}\n[upstreams.users.{table}]\n");
    for (table, bad, key) in [
        (
            "retry",
            "max_attempts = 0",
            "upstreams.users.retry.max_attempts",
        ),
        (
            "retry",
            "budget_percent = 101",
            "upstreams.users.retry.budget_percent",
        ),
        (
            "retry",
            "backoff = \"sometimes\"",
            "upstreams.users.retry.backoff",
        ),
        (
            "retry",
            "initial_backoff_ms = 100\nmax_backoff_ms = 10",
            "upstreams.users.retry.max_backoff_ms",
        ),
        (
            "bulkhead",
            "max_concurrent_calls = 0",
            "upstreams.users.bulkhead.max_concurrent_calls",
        ),
        (
            "bulkhead",
            "max_wait_ms = -1",
            "upstreams.users.bulkhead.max_wait_ms",
        ),
        (
            "bulkhead",
            "max_queue = 3",
            "upstreams.users.bulkhead.max_queue",
        ),
    ] {
        // The circuit_breaker table already exists in BASE; others are new.
        let text = format!("{}{bad}\n", extra(table));
        let err = Config::parse("t.toml", &text).expect_err(&text);
        assert_eq!(err.key(), key, "{err}");
        assert!(err.line() > 13, "{err}");
    }
    let text = BASE.replace(
        "failure_rate_threshold = 50",
        "sliding_window_type = \"sideways\"",
    );
    assert_eq!(
        Config::parse("t.toml", &text).unwrap_err().key(),
        "upstreams.users.circuit_breaker.sliding_window_type"
    );
}

#[test]
fn the_binary_prints_the_default_config() {
    let out = Command::new(BIN)
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, DEFAULT_CONFIG);
    Config::parse("printed", &text).unwrap();
}

#[test]
fn the_binary_exits_non_zero_on_a_bad_config_naming_the_place() {
    let dir = std::env::temp_dir().join(format!("palisade-gateway-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        BASE.replacen("timeout_ms = 500", "timeout_ms = -5", 1),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:6:14: `upstreams.users.timeout_ms`",
            path.display()
        )),
        "{err}"
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
    std::fs::write(&path, BASE).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_in_use_is_a_clear_error_and_a_non_zero_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(BIN)
        .arg("--listen")
        .arg(addr.to_string())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} for the gateway")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    drop(taken);
}

#[tokio::test]
async fn a_demo_backend_port_in_use_names_the_backend_and_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[demo]\n[demo.backends.review]\nlisten = \"{addr}\"\n"
    );
    let config = Config::parse("t.toml", &text).unwrap();
    let err = palisade_gateway::Gateway::bind(config, None)
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "cannot listen on {addr} for the demo backend `review`"
        )),
        "{shown}"
    );
    assert!(shown.contains("in use"), "{shown}");
    drop(taken);
}

mod routes_from_any_config {
    use std::collections::BTreeMap;

    use palisade_gateway::config::{Config, UpstreamTarget};
    use palisade_gateway::upstream::Upstream;
    use palisade_gateway::{AppState, app};
    use proptest::prelude::*;

    /// Builds the router for every config that validates: no route prefix
    /// the config accepts may make the router panic at start-up.
    fn build(prefixes: &[String]) -> Result<(), String> {
        let mut text = String::from("[upstreams.a]\nurl = \"http://127.0.0.1:9\"\n");
        for p in prefixes {
            let quoted = serde_json::to_string(p).unwrap();
            text.push_str(&format!(
                "[[routes]]\nprefix = {quoted}\nupstream = \"a\"\n"
            ));
        }
        let Ok(config) = Config::parse("p.toml", &text) else {
            return Ok(());
        };
        let upstreams: BTreeMap<String, Upstream> = config
            .upstreams
            .iter()
            .map(|(name, up)| {
                let UpstreamTarget::Url(base) = &up.target else {
                    unreachable!()
                };
                (
                    name.clone(),
                    Upstream::new(name, base.clone(), None, up.clone()),
                )
            })
            .collect();
        let state = AppState::new(upstreams, config.routes, BTreeMap::new(), None, 1024);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(app(state))))
            .map_err(|_| format!("the router panicked for {prefixes:?}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn no_accepted_prefix_panics_the_router(
            prefixes in proptest::collection::vec("/[a-z:{}*.%~_ /-]{0,8}(/[a-z:{}*.]{0,4})?", 1..4)
        ) {
            prop_assert_eq!(build(&prefixes), Ok(()));
        }
    }

    #[test]
    fn nested_and_neighbouring_prefixes_build() {
        let prefixes: Vec<String> = [
            "/api/user",
            "/api/user/users",
            "/api/users",
            "/healthzz",
            "/adminx",
            "/api/u.v",
            "/api/~x",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(build(&prefixes), Ok(()));
        // And the config really accepted them (the check above is not vacuous).
        let mut text = String::from("[upstreams.a]\nurl = \"http://127.0.0.1:9\"\n");
        for p in &prefixes {
            text.push_str(&format!("[[routes]]\nprefix = \"{p}\"\nupstream = \"a\"\n"));
        }
        assert_eq!(
            Config::parse("p.toml", &text).unwrap().routes.len(),
            prefixes.len()
        );
    }
}
