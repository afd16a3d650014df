//! A projection runner in a real process, killed with SIGKILL in the middle
//! of a batch on SQLite: after a restart every event's effect is in the
//! read model exactly once.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use palisade_cqrs::ProjectionRunner;
use support::{Effects, Faults, SqliteFixture, WAIT, once_each, seed};

const CHILD_DIR: &str = "PALISADE_CQRS_CHILD_DIR";

/// The child: runs the projection until it hangs at position 17 (events
/// 11..16 applied in the open transaction), says so, and waits to be killed.
#[tokio::test(flavor = "current_thread")]
#[ignore = "the child process of a_runner_killed_mid_batch_applies_every_event_once"]
async fn child_runner() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        println!(
            "child_runner: skipped, run only by a_runner_killed_mid_batch_applies_every_event_once"
        );
        return;
    };
    let fx = SqliteFixture::open(dir.into(), false).await;
    let faults = Faults {
        hang_at: Some(17),
        ..Faults::default()
    };
    let reached = Arc::clone(&faults.reached);
    let _handle = ProjectionRunner::builder(
        "effects",
        Effects::with(&fx.table, faults),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .batch_size(10)
    .start()
    .await
    .unwrap();
    reached.notified().await;
    println!("HANGING AT 17");
    fx.keep();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_runner_killed_mid_batch_applies_every_event_once() {
    let fx = SqliteFixture::new("kill").await;
    let head = seed(&fx.store, "a", 25).await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_runner",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, fx.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("HANGING AT 17"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), ready).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        matches!(ready, Ok(Ok(true))),
        "the child did not reach position 17: {ready:?}"
    );
    assert_eq!(
        fx.effects().await,
        once_each(10),
        "only the first batch committed"
    );

    let handle = ProjectionRunner::builder(
        "effects",
        Effects::new(&fx.table),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .batch_size(10)
    .start()
    .await
    .unwrap();
    assert_eq!(handle.checkpoint(), 10);
    handle.wait_for(head, WAIT).await.unwrap();
    assert_eq!(fx.effects().await, once_each(25));
    handle.stop();
}
