//! `palisade-gateway`: the demo gateway's command line.
//!
//! With no arguments: the embedded default config, listening on
//! 127.0.0.1:8080, six demo backends on free loopback ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use palisade_gateway::config::{Config, DEFAULT_CONFIG};
use palisade_gateway::demo::DemoBackends;
use palisade_gateway::{ConfigFileError, Gateway};
use tracing_subscriber::EnvFilter;

/// The name of the environment variable holding the admin token.
const TOKEN_ENV: &str = "PALISADE_ADMIN_TOKEN";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What `--help` adds after the options.
const AFTER_HELP: &str = concat!(
    "Environment:\n",
    "  PALISADE_ADMIN_TOKEN  the admin API's bearer token; overrides `admin.token` in the\n",
    "                        config; must not be empty (unset it to use the config's)\n",
    "  RUST_LOG              log level and filters (default `info`), e.g. `warn` or\n",
    "                        `info,palisade_gateway::access=off`\n",
    "\n",
    "Exit codes: 0 after a clean shutdown, 1 when the gateway cannot start (an address in\n",
    "use), 2 for a bad config or bad arguments.\n",
    "\n",
    "The manual, with every config key, the routes, the admin API and the dashboard:\n",
    "docs/gateway.md in the source tree, ",
    env!("CARGO_PKG_REPOSITORY"),
    "/blob/main/docs/gateway.md",
);

/// The Palisade demo gateway: a reverse proxy over in-process demo backends,
/// with chaos controls, Prometheus metrics and a live dashboard.
#[derive(Debug, Parser)]
#[command(name = "palisade-gateway", version, after_help = AFTER_HELP)]
struct Args {
    /// The TOML config file (default: the embedded config, see
    /// --print-default-config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the embedded default config and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Check the config and exit.
    #[arg(long)]
    check_config: bool,
    /// Listen on this address instead of the config's `server.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Run only the demo backends (no gateway), e.g. for load tests.
    #[arg(long)]
    backends_only: bool,
    /// Log format; the level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn load(args: &Args) -> Result<Config, ConfigFileError> {
    match &args.config {
        Some(path) => Config::load(path),
        None => Config::parse(
            palisade_gateway::config::DEFAULT_CONFIG_NAME,
            DEFAULT_CONFIG,
        ),
    }
}

/// Where the admin token in force came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenSource {
    /// `PALISADE_ADMIN_TOKEN`.
    Env,
    /// `admin.token`.
    Config,
    /// Generated for this run (`admin.generate_token`).
    Generated,
    /// None: the admin API is disabled.
    None,
}

/// The admin token in force: the environment, then the config, then (if the
/// config asks) a random one for this run. Logs nothing: the token is
/// announced once the gateway has bound its address
/// ([`announce_admin_token`]).
///
/// # Errors
///
/// `PALISADE_ADMIN_TOKEN` is set but empty (or blank): the docs say it must
/// not be, and silently falling back to another token would hide the
/// mistake.
fn admin_token(config: &Config) -> Result<(Option<String>, TokenSource), String> {
    if let Some(value) = std::env::var_os(TOKEN_ENV) {
        let Some(value) = value.to_str() else {
            return Err(format!("{TOKEN_ENV} is not valid UTF-8"));
        };
        let token = value.trim();
        if token.is_empty() {
            return Err(format!(
                "{TOKEN_ENV} is set but empty: give it a token, or unset it to use `admin.token` from the config"
            ));
        }
        return Ok((Some(token.to_owned()), TokenSource::Env));
    }
    if let Some(token) = &config.admin.token {
        return Ok((Some(token.clone()), TokenSource::Config));
    }
    if config.admin.generate_token {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        return Ok((Some(token), TokenSource::Generated));
    }
    Ok((None, TokenSource::None))
}

/// Logs where the admin token came from (the token itself only when it was
/// generated, since the operator has no other way to learn it).
fn announce_admin_token(token: Option<&str>, source: TokenSource) {
    match (source, token) {
        (TokenSource::Env, _) => {
            tracing::info!("admin API enabled with the token from {TOKEN_ENV}");
        }
        (TokenSource::Config, _) => {
            tracing::info!("admin API enabled with the token from the config");
        }
        (TokenSource::Generated, Some(token)) => {
            if tracing::enabled!(tracing::Level::INFO) {
                tracing::info!(token = %token, "admin API enabled with a token generated for this run (set admin.token or {TOKEN_ENV} to choose one)");
            } else {
                // The operator needs the token even when INFO is filtered out.
                eprintln!("palisade-gateway: admin token for this run: {token}");
            }
        }
        (TokenSource::Generated | TokenSource::None, _) => {
            tracing::info!("admin API disabled: no admin token (set admin.token or {TOKEN_ENV})");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

async fn run(
    args: Args,
    mut config: Config,
    (token, token_source): (Option<String>, TokenSource),
) -> ExitCode {
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if args.backends_only {
        let Some(demo) = &config.demo else {
            eprintln!(
                "palisade-gateway: --backends-only needs `[demo] enabled = true` with backends in the config"
            );
            return ExitCode::from(2);
        };
        let drain = config.server.drain_timeout;
        return match DemoBackends::start(demo).await {
            Ok(backends) => {
                for b in backends.iter() {
                    println!("{} http://{}", b.name, b.addr);
                }
                shutdown_signal().await;
                backends.shutdown(drain).await;
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("palisade-gateway: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let gateway = match Gateway::bind(config, token.clone()).await {
        Ok(g) => g,
        Err(err) => {
            eprintln!("palisade-gateway: {err}");
            return ExitCode::FAILURE;
        }
    };
    announce_admin_token(token.as_deref(), token_source);
    let addr = gateway.local_addr();
    tracing::info!("dashboard: http://{addr}/dashboard  metrics: http://{addr}/metrics");
    // The first signal starts the shutdown (not ready, then drain after the
    // readiness grace); a second one skips the rest of the grace.
    let lifecycle = gateway.state().lifecycle().clone();
    let signals = async move {
        shutdown_signal().await;
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("second signal: skipping the rest of the readiness grace");
            lifecycle.begin_drain();
        });
    };
    match gateway.serve(signals).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("palisade-gateway: server error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    init_logs(args.log_format);
    let config = match load(&args) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("palisade-gateway: bad config: {err}");
            return ExitCode::from(2);
        }
    };
    let token = match admin_token(&config) {
        Ok(token) => token,
        Err(err) => {
            eprintln!("palisade-gateway: bad config: {err}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("config OK");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("palisade-gateway: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args, config, token));
    // By now the gateway has stopped (its workers joined, the demo backends
    // shut down): nothing left on the runtime is worth waiting for. Dropping
    // it would wait without bound for any blocking task still running (a
    // DNS lookup, say); this waits a moment at most.
    runtime.shutdown_timeout(EXIT_WAIT);
    code
}

/// How long the exit waits for whatever is left on the runtime once the
/// gateway has stopped.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
