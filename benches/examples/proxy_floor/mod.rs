//! What `bare_proxy` and `in_task_proxy` share: their command line and their
//! layout, one thread per core, each running its own worker (a
//! current-thread runtime and an `SO_REUSEPORT` listener), as the gateway
//! runs its workers.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;

/// Parses `LISTEN_ADDR UPSTREAM` from the command line, printing what is
/// wrong (and returning the exit code to leave with) if it does not parse.
pub(crate) fn args<U>(name: &str, upstream_kind: &str) -> Result<(SocketAddr, U), ExitCode>
where
    U: FromStr,
    U::Err: std::fmt::Display,
{
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: {name} LISTEN_ADDR UPSTREAM ({upstream_kind})");
        return Err(ExitCode::from(2));
    };
    let listen = listen.parse().map_err(|err| {
        eprintln!("{name}: listen address {listen:?}: {err}");
        ExitCode::from(2)
    })?;
    let upstream = upstream.parse().map_err(|err| {
        eprintln!("{name}: upstream {upstream:?} ({upstream_kind}): {err}");
        ExitCode::from(2)
    })?;
    Ok((listen, upstream))
}

/// Runs `worker` on one thread per core and waits for them; the first
/// worker to fail ends the process with a failure.
pub(crate) fn run_per_core<F>(name: &str, worker: F) -> ExitCode
where
    F: Fn() -> io::Result<()> + Clone + Send + 'static,
{
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let threads: Vec<_> = (0..workers)
        .map(|_| std::thread::spawn(worker.clone()))
        .collect();
    println!("{name}: {workers} workers");
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                eprintln!("{name}: worker failed: {err}");
                return ExitCode::FAILURE;
            }
            Err(_) => return ExitCode::FAILURE,
        }
    }
    ExitCode::SUCCESS
}
