//! Two processes on one Redis share one limit: this binary runs a limiter,
//! starts itself again as a child (`--child`) running another, and both
//! spend one key's allowance at the same time. Together they admit the
//! limit, no more.
//!
//! `harness = false`: `main` is the test (parent) and the child.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use palisade_rate_limit::backend::RedisBackend;
use palisade_rate_limit::{Key, Rate, RateLimitLayer, RateLimited};
use palisade_test_util::{REDIS_URL_VAR, service_url, unique_name};
use tower::{Layer, ServiceExt, service_fn};

const TEST: &str = "two_processes_on_one_redis_share_one_limit";
const BURST: u32 = 20;
const CALLS: usize = 40;
/// Calls the child makes alone before both spend together.
const CHILD_FIRST: usize = 8;

fn by_key<'a>(k: &'a &str) -> Option<Key<'a>> {
    Some(Key::text(k))
}

/// Makes `CALLS` calls for one key through a limiter on `url` under
/// `prefix`: after `go`, `first` of them one by one, then `halfway`, then the
/// rest all at once. Returns how many were admitted.
async fn spend(
    url: &str,
    prefix: &str,
    go: impl FnOnce(),
    first: usize,
    halfway: impl FnOnce(),
) -> usize {
    let layer = RateLimitLayer::builder("fleet")
        .rate(Rate::per_hour(1))
        .burst(BURST)
        .key_prefix(prefix)
        .key_by(by_key)
        .redis(RedisBackend::connect(url).await.expect("redis"))
        .build()
        .expect("valid settings");
    let svc = layer.layer(service_fn(|_: &'static str| async {
        Ok::<_, std::convert::Infallible>(())
    }));
    go();
    let mut admitted = 0;
    for _ in 0..first {
        match svc.clone().oneshot("tenant").await {
            Ok(()) => admitted += 1,
            Err(e) => assert!(e.is::<RateLimited>(), "unexpected error: {e}"),
        }
    }
    halfway();
    let calls: Vec<_> = (first..CALLS)
        .map(|_| tokio::spawn(svc.clone().oneshot("tenant")))
        .collect();
    for call in calls {
        match call.await.expect("the call's task") {
            Ok(()) => admitted += 1,
            Err(e) => assert!(e.is::<RateLimited>(), "unexpected error: {e}"),
        }
    }
    assert_eq!(
        layer.handle().snapshot().remote.expect("redis").fallbacks,
        0
    );
    admitted
}

fn child(url: &str, prefix: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admitted = rt.block_on(spend(
        url,
        prefix,
        || {
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "go");
        },
        CHILD_FIRST,
        || println!("halfway"),
    ));
    println!("admitted {admitted}");
}

fn parent(url: &str) {
    let prefix = format!("{}:", unique_name("rl_processes"));
    let mut kid = Command::new(std::env::current_exe().unwrap())
        .args(["--child", url, &prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kid_out = BufReader::new(kid.stdout.take().unwrap()).lines();
    let mut kid_in = kid.stdin.take().unwrap();
    assert_eq!(kid_out.next().unwrap().unwrap(), "ready");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The child spends `CHILD_FIRST` calls one by one, then both spend the
    // rest at the same time.
    let mine = rt.block_on(spend(
        url,
        &prefix,
        || {
            writeln!(kid_in, "go").unwrap();
            assert_eq!(kid_out.next().unwrap().unwrap(), "halfway");
        },
        0,
        || {},
    ));
    let line = kid_out.next().unwrap().unwrap();
    let theirs: usize = line.strip_prefix("admitted ").unwrap().parse().unwrap();
    assert!(kid.wait().unwrap().success());
    assert_eq!(
        mine + theirs,
        BURST as usize,
        "parent {mine} + child {theirs}"
    );
    assert!(
        theirs >= CHILD_FIRST,
        "the child's first calls were admitted: {theirs}"
    );

    rt.block_on(async {
        let mut conn = RedisBackend::connect(url)
            .await
            .unwrap()
            .connection()
            .clone();
        let _: () = redis::cmd("DEL")
            .arg(format!("{prefix}k:tenant"))
            .query_async(&mut conn)
            .await
            .unwrap();
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        child(&args[at + 1], &args[at + 2]);
        return;
    }
    // A filter that does not name this test (`cargo test other`) skips it.
    if let Some(filter) = args.iter().skip(1).find(|a| !a.starts_with('-'))
        && !TEST.contains(filter.as_str())
    {
        println!("0 passed; 0 failed; 1 filtered out");
        return;
    }
    let Some(url) = service_url(REDIS_URL_VAR, TEST) else {
        println!("0 passed; 0 failed; 1 skipped");
        return;
    };
    parent(&url);
    println!("test {TEST} ... ok");
    println!("1 passed; 0 failed");
}
