//! Each kind of bad config is refused with the file, line, column and key;
//! the binary exits non-zero with that message, and on a port in use.

use std::process::Command;

use palisade::circuit_breaker::{CircuitBreakerLayer, CircuitBreakerSettings, SlidingWindow};
use palisade_gateway::config::{Config, DEFAULT_CONFIG};

const BIN: &str = env!("CARGO_BIN_EXE_palisade-gateway");

/// A small valid config; tests break one line of it.
const BASE: &str = r#"[server]
listen = "127.0.0.1:0"

[upstreams.users]
url = "http://127.0.0.1:9000"
timeout_ms = 500

[upstreams.users.circuit_breaker]
failure_rate_threshold = 40

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
    assert_eq!(
        cfg.upstreams["users"].attempt_timeout.as_millis(),
        500,
        "the attempt timeout defaults to the timeout"
    );
    assert_eq!(cfg.routes[0].upstream, "users");
    let cb = cfg.upstreams["users"].circuit_breaker.as_ref().unwrap();
    // Only what is written differs from the crate's defaults.
    assert_eq!(
        *cb,
        CircuitBreakerSettings {
            failure_rate_threshold: 40.0,
            ..CircuitBreakerSettings::default()
        }
    );
    assert_eq!(cb.minimum_calls, None, "only what is written is set");
    // What is not written is the builder's default.
    let built = CircuitBreakerLayer::builder("users")
        .settings(cb.clone())
        .build()
        .unwrap();
    let summary = built.handle().config().clone();
    assert_eq!(summary.failure_rate_threshold, Some(40.0));
    assert_eq!(summary.minimum_calls, 100);
    assert_eq!(summary.wait_in_open, std::time::Duration::from_secs(30));
}

#[test]
fn the_readiness_grace_defaults_to_5_s_allows_0_and_refuses_a_negative() {
    let cfg = Config::parse("ok.toml", BASE).unwrap();
    assert_eq!(cfg.server.shutdown_grace, std::time::Duration::from_secs(5));
    let none = BASE.replacen(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nshutdown_grace_ms = 0",
        1,
    );
    assert!(
        Config::parse("ok.toml", &none)
            .unwrap()
            .server
            .shutdown_grace
            .is_zero()
    );
    refused(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nshutdown_grace_ms = -1",
        3,
        21,
        "server.shutdown_grace_ms",
        "must be ≥ 0 milliseconds",
    );
    // The demo's own config: a prompt Ctrl-C.
    let demo = Config::parse("default", DEFAULT_CONFIG).unwrap();
    assert_eq!(
        demo.server.shutdown_grace,
        std::time::Duration::from_secs(1)
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
        "failure_rate_threshold = 40",
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
    // The breaker's builder refuses it; the error is placed at the key.
    refused(
        "failure_rate_threshold = 40",
        "failure_rate_threshold = 150",
        9,
        26,
        "upstreams.users.circuit_breaker.failure_rate_threshold",
        "must be in (0, 100], got 150",
    );
    refused(
        "failure_rate_threshold = 40",
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
    for (table, bad, key, says) in [
        (
            "retry",
            "max_attempts = 0",
            "upstreams.users.retry.max_attempts",
            "must be at least 1",
        ),
        (
            "retry",
            "max_attempts = -2",
            "upstreams.users.retry.max_attempts",
            "got -2",
        ),
        (
            "retry",
            "retry_ratio = 1001",
            "upstreams.users.retry.retry_ratio",
            "[0, 1000]",
        ),
        (
            "retry",
            "backoff = { kind = \"sometimes\" }",
            "upstreams.users.retry.backoff.kind",
            "unknown backoff `sometimes`",
        ),
        (
            "retry",
            "backoff = { kind = \"exponential\", base_ms = 100, cap_ms = 10 }",
            "upstreams.users.retry.backoff",
            "must not exceed its cap",
        ),
        (
            "retry",
            "backoff = { kind = \"fixed\", delay_ms = 10, cap_ms = 10 }",
            "upstreams.users.retry.backoff.cap_ms",
            "does not take `cap_ms`",
        ),
        (
            "retry",
            "jitter = \"half\"",
            "upstreams.users.retry.jitter",
            "unknown jitter",
        ),
        (
            "retry",
            "deadline_ms = 0",
            "upstreams.users.retry.deadline_ms",
            "must be greater than zero",
        ),
        (
            "retry",
            "budget_ttl_ms = 1500",
            "upstreams.users.retry.budget_ttl_ms",
            "whole number of seconds",
        ),
        (
            "retry",
            "budget_percent = 20",
            "upstreams.users.retry.budget_percent",
            "unknown field",
        ),
        (
            "bulkhead",
            "max_concurrent_calls = 0",
            "upstreams.users.bulkhead.max_concurrent_calls",
            "must be at least 1, got 0",
        ),
        (
            "bulkhead",
            "max_wait_ms = -1",
            "upstreams.users.bulkhead.max_wait_ms",
            "got -1",
        ),
        (
            "bulkhead",
            "max_queue = 2000000000",
            "upstreams.users.bulkhead.max_queue",
            "must be at most",
        ),
        (
            "bulkhead",
            "max_queu = 3",
            "upstreams.users.bulkhead.max_queu",
            "unknown field",
        ),
    ] {
        let text = format!("{}{bad}\n", extra(table));
        let err = Config::parse("t.toml", &text).expect_err(&text);
        assert_eq!(err.key(), key, "{err}");
        assert!(err.message().contains(says), "{bad}: {err}");
        assert!(err.line() > 13, "{err}");
    }
}

/// Parses `BASE` with the breaker table's line replaced by `lines`,
/// expecting an error about `key` (under the breaker's table) on `line`.
fn breaker_refused(lines: &str, key: &str, line: usize, says: &str) {
    let text = BASE.replace("failure_rate_threshold = 40", lines);
    let err = Config::parse("cb.toml", &text).expect_err(&text);
    assert_eq!(
        err.key(),
        format!("upstreams.users.circuit_breaker.{key}"),
        "{err}"
    );
    assert_eq!(err.line(), line, "{err}");
    assert!(err.message().contains(says), "{lines}: {err}");
}

#[test]
fn builder_errors_name_the_key_the_setter_reads() {
    // Each is the circuit breaker builder's own validation.
    breaker_refused("count_window = 0", "count_window", 9, "must be 1 to");
    breaker_refused(
        "time_window_ms = 1500",
        "time_window_ms",
        9,
        "whole seconds",
    );
    breaker_refused(
        "wait_in_open_ms = 0",
        "wait_in_open_ms",
        9,
        "must be more than zero",
    );
    breaker_refused(
        "wait_in_open_ms = 5000\nmax_wait_in_open_ms = 100",
        "max_wait_in_open_ms",
        10,
        "must be at least wait_in_open",
    );
    breaker_refused(
        "slow_call_rate_threshold = 50",
        "slow_call_rate_threshold",
        9,
        "has no effect without a slow_call_duration",
    );
    breaker_refused(
        "trip_on_failure_rate = false",
        "trip_on_failure_rate",
        9,
        "leaves no way to open",
    );
    breaker_refused(
        "permitted_calls_in_half_open = 5000",
        "permitted_calls_in_half_open",
        9,
        "must be 1 to 4095",
    );
    breaker_refused(
        "wait_in_open_jitter = 1.5",
        "wait_in_open_jitter",
        9,
        "must be in [0, 1]",
    );
    breaker_refused(
        "initial_state = \"open\"",
        "initial_state",
        9,
        "must be closed, disabled, metrics_only or forced_open, got open",
    );
    breaker_refused(
        "initial_state = \"sideways\"",
        "initial_state",
        9,
        "unknown state `sideways`",
    );
    // The gateway's own checks of the same table.
    breaker_refused(
        "count_window = 10\ntime_window_ms = 10000",
        "time_window_ms",
        10,
        "not both",
    );
    breaker_refused("minimum_calls = -1", "minimum_calls", 9, "got -1");
    // The crate's own form, and the two forms of one setting together.
    breaker_refused(
        "sliding_window = { count = 0 }",
        "sliding_window",
        9,
        "must be 1 to",
    );
    breaker_refused(
        "time_window = \"90s\"\nsliding_window = { count = 5 }",
        "sliding_window",
        10,
        "not both",
    );
    breaker_refused(
        "time_window_ms = \"60s\"",
        "time_window_ms",
        9,
        "(or `time_window` as a duration string",
    );
    breaker_refused(
        "wait_in_open = \"0s\"",
        "wait_in_open",
        9,
        "must be more than zero",
    );
    breaker_refused(
        "wait_in_open = \"1s\"\nwait_in_open_ms = 5",
        "wait_in_open_ms",
        10,
        "not both",
    );
}

#[test]
fn the_breaker_window_reads_the_same_in_every_form() {
    let window = |lines: &str| {
        let text = BASE.replace("failure_rate_threshold = 40", lines);
        let cfg = Config::parse("w.toml", &text).unwrap_or_else(|e| panic!("{lines}: {e}"));
        cfg.upstreams["users"]
            .circuit_breaker
            .as_ref()
            .unwrap()
            .sliding_window
    };
    let minute = SlidingWindow::Time(std::time::Duration::from_secs(60));
    assert_eq!(window("time_window_ms = 60000"), minute);
    assert_eq!(window("time_window = \"1m\""), minute);
    assert_eq!(window("sliding_window = { time = \"60s\" }"), minute);
    assert_eq!(window("count_window = 20"), SlidingWindow::Count(20));
    assert_eq!(
        window("sliding_window = { count = 20 }"),
        SlidingWindow::Count(20)
    );
}

#[test]
fn the_attempt_timeout_is_checked_against_the_timeout() {
    refused(
        "timeout_ms = 500",
        "timeout_ms = 500\nattempt_timeout_ms = 900",
        7,
        22,
        "upstreams.users.attempt_timeout_ms",
        "must be at most timeout_ms (500 ms), got 900 ms",
    );
    refused(
        "timeout_ms = 500",
        "timeout_ms = 500\nattempt_timeout_ms = 0",
        7,
        22,
        "upstreams.users.attempt_timeout_ms",
        "must be > 0 milliseconds",
    );
}

/// `BASE` plus an aggregator over `users` with `branches` (TOML) after
/// `head` (keys of `[aggregator]`).
fn with_aggregator(head: &str, branches: &str) -> String {
    format!("{BASE}\n[aggregator]\n{head}\n{branches}")
}

const BRANCH: &str = "[[aggregator.branches]]\nname = \"user\"\nupstream = \"users\"\npath = \"/users/{id}\"\nrequired = true\n";

#[test]
fn the_aggregator_is_checked_by_the_fan_out_builder() {
    let ok = Config::parse("a.toml", &with_aggregator("deadline_ms = 900", BRANCH)).unwrap();
    let agg = ok.aggregator.unwrap();
    assert_eq!(
        agg.settings.deadline,
        Some(std::time::Duration::from_millis(900))
    );
    assert!(agg.branches[0].settings.required);

    for (head, branches, key, says) in [
        (
            "deadline_ms = 0",
            BRANCH.to_owned(),
            "aggregator.deadline_ms",
            "must be more than zero",
        ),
        (
            "max_in_flight = 0",
            BRANCH.to_owned(),
            "aggregator.max_in_flight",
            "must be at least 1",
        ),
        (
            "",
            format!("{BRANCH}timeout_ms = 0\n"),
            "aggregator.branches[0].timeout_ms",
            "must be more than zero",
        ),
        (
            "",
            format!("{BRANCH}{BRANCH}"),
            "aggregator.branches[1].name",
            "used twice",
        ),
        (
            "",
            String::new(),
            "aggregator.branches",
            "at least one branch",
        ),
        (
            "",
            BRANCH.replace("/users/{id}", "/users/{uid}"),
            "aggregator.branches[0].path",
            "does not declare",
        ),
        (
            "",
            BRANCH.replace("upstream = \"users\"", "upstream = \"orders\""),
            "aggregator.branches[0].upstream",
            "no upstream named `orders`",
        ),
        (
            "",
            format!("{BRANCH}optional = true\n"),
            "aggregator.branches.optional",
            "unknown field",
        ),
    ] {
        let text = with_aggregator(head, &branches);
        let err = Config::parse("a.toml", &text).expect_err(&text);
        assert!(err.key().starts_with(key), "{key}: {err}");
        assert!(err.message().contains(says), "{key}: {err}");
        assert!(err.line() > 13, "{err}");
    }
}

#[test]
fn the_aggregator_prefix_is_reserved() {
    refused(
        "prefix = \"/api/users\"",
        "prefix = \"/api/dashboard\"",
        12,
        10,
        "routes[0].prefix",
        "gateway serves itself",
    );
}

/// The README warns that an outage on a required aggregator branch fails
/// the whole aggregate, naming the required and the optional branches: the
/// names it gives are the embedded config's.
#[test]
fn the_readme_names_the_default_configs_required_and_optional_branches() {
    let readme = include_str!("../../../README.md").replace("\n> ", " ");
    let config = Config::embedded_default();
    let branches = &config
        .aggregator
        .expect("the default config has an aggregator")
        .branches;
    let names = |required: bool| -> Vec<String> {
        branches
            .iter()
            .filter(|b| b.settings.required == required)
            .map(|b| format!("`{}`", b.name))
            .collect()
    };
    let list = |names: Vec<String>| match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    let required = format!("the required branches are {}", list(names(true)));
    let optional = format!("The optional branches are {}", list(names(false)));
    assert!(
        readme.contains("fails the whole aggregate"),
        "no warning in the README"
    );
    assert!(
        readme.contains(&required),
        "the README does not say: {required}"
    );
    assert!(
        readme.contains(&optional),
        "the README does not say: {optional}"
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
fn the_access_log_is_off_unless_asked_for_and_its_values_are_checked() {
    use palisade_gateway::config::AccessLog;
    let log = |table: &str| Config::parse("log.toml", &format!("{table}\n{BASE}"));
    assert_eq!(
        Config::parse("ok.toml", BASE).unwrap().log.access_log,
        AccessLog::Off
    );
    assert_eq!(
        Config::embedded_default().log.access_log,
        AccessLog::Off,
        "the embedded config keeps it off"
    );
    assert_eq!(
        log("[log]\naccess_log = \"all\"").unwrap().log.access_log,
        AccessLog::All
    );
    assert_eq!(
        log("[log]\naccess_log = \"sampled\"")
            .unwrap()
            .log
            .access_log,
        AccessLog::Sampled(0.01)
    );
    assert_eq!(
        log("[log]\naccess_log = \"sampled\"\naccess_log_sample = 0.25")
            .unwrap()
            .log
            .access_log,
        AccessLog::Sampled(0.25)
    );
    for (table, line, key, says) in [
        (
            "[log]\naccess_log = \"loud\"",
            2,
            "log.access_log",
            "\"off\", \"sampled\" or \"all\"",
        ),
        (
            "[log]\naccess_log = \"sampled\"\naccess_log_sample = 0",
            3,
            "log.access_log_sample",
            "(0, 1]",
        ),
        (
            "[log]\naccess_log_sample = 1.5",
            2,
            "log.access_log_sample",
            "(0, 1]",
        ),
        ("[log]\naccess = \"all\"", 2, "log.access", "unknown field"),
    ] {
        let err = log(table).expect_err(table);
        assert_eq!((err.line(), err.key()), (line, key), "{err}");
        assert!(err.message().contains(says), "{err}");
    }
}

/// A temporary directory of this test process, removed by the caller.
fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-gateway-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_empty_config_file_is_refused_even_by_check_config() {
    for empty in ["", "\n\n", "   \n", "# just a comment\n\n  # another\n"] {
        let err =
            Config::parse("empty.toml", empty).expect_err(&format!("{empty:?} must be refused"));
        assert_eq!(err.file(), "empty.toml");
        assert!(err.message().contains("empty"), "{err}");
        assert!(
            err.to_string().contains("--print-default-config"),
            "the error says where to start: {err}"
        );
    }
    let dir = temp_dir("empty");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, "# nothing yet\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("bad config: {}: ", path.display())) && err.contains("empty"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("config OK"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_admin_token_set_but_empty_in_the_environment_is_refused() {
    let dir = temp_dir("token");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, BASE).unwrap();
    for empty in ["", "   "] {
        for check in [true, false] {
            let mut cmd = tokio::process::Command::new(BIN);
            cmd.arg("--config")
                .arg(&path)
                .env("PALISADE_ADMIN_TOKEN", empty)
                .kill_on_drop(true);
            if check {
                cmd.arg("--check-config");
            }
            // Bounded: a gateway that started anyway would serve until killed.
            let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
                .await
                .expect("the binary refuses at once")
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{empty:?} check={check}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("PALISADE_ADMIN_TOKEN is set but empty"),
                "{empty:?}: {err}"
            );
            assert!(!err.contains("listening"), "it never started: {err}");
        }
    }
    // Set and not empty: accepted.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .env("PALISADE_ADMIN_TOKEN", "a-token")
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
fn help_names_the_environment_and_the_manual() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needed in ["PALISADE_ADMIN_TOKEN", "RUST_LOG", "docs/gateway.md"] {
        assert!(
            help.contains(needed),
            "--help does not mention {needed}:\n{help}"
        );
    }
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

/// The gateway's own address is bound first: with it in use, the error is
/// the only thing said; no demo backend starts (or logs), no admin token is
/// generated or shown.
#[test]
fn a_port_in_use_is_reported_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(BIN)
        .arg("--listen")
        .arg(addr.to_string())
        .env("RUST_LOG", "info")
        .env_remove("PALISADE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "only the error: {err}");
    assert!(
        lines[0].contains(&format!("cannot listen on {addr} for the gateway")),
        "{err}"
    );
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

    use palisade_gateway::config::Config;
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
        let state = AppState::from_config(&config, BTreeMap::new(), None)
            .map_err(|e| format!("state: {e}"))?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(app(&state))))
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
