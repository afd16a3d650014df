//! Read-your-writes: a query waits (bounded) until a projection has
//! reached a command's position, or gets a clear timeout. The waits run on
//! tokio's paused clock.

#[path = "../examples/bank/account.rs"]
mod account;
mod support;

use std::sync::Arc;
use std::time::Duration;

use account::{Account, AccountCommand, Balances};
use palisade_cqrs::{Command, CommandHandler, ProjectionRunner, Registry};
use support::{Effects, Faults, SqliteFixture, WAIT};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "current_thread")]
async fn a_query_sees_the_command_it_follows() {
    let fx = SqliteFixture::new("ryw").await;
    Balances::create(&fx.pool).await.unwrap();
    let balances =
        ProjectionRunner::builder("balances", Balances, fx.backend.clone(), fx.store.clone())
            .start()
            .await
            .unwrap();
    let accounts = CommandHandler::<Account, _>::builder("accounts", fx.store.clone())
        .build()
        .unwrap();
    accounts
        .handle(Command::new(
            "alice",
            AccountCommand::Open {
                owner: "Alice".into(),
            },
        ))
        .await
        .unwrap();
    let done = accounts
        .handle(Command::new(
            "alice",
            AccountCommand::Deposit { cents: 250 },
        ))
        .await
        .unwrap();
    balances
        .wait_for(done.position().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(Balances::get(&fx.pool, "alice").await.unwrap(), Some(250));
    balances.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn a_wait_is_bounded_and_ends_when_the_checkpoint_arrives() {
    let fx = SqliteFixture::new("ryw_timeout").await;
    let head = support::seed(&fx.store, "a", 3).await;
    let gate = Arc::new(Semaphore::new(1));
    let faults = Faults {
        gate: Some(Arc::clone(&gate)),
        ..Faults::default()
    };
    let handle = ProjectionRunner::builder(
        "effects",
        Effects::with(&fx.table, faults),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .batch_size(1)
    .start()
    .await
    .unwrap();
    handle.wait_for(1, WAIT).await.unwrap();
    // Already reached: no wait at all.
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    handle.wait_for(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);

    // The runner is stuck before event 2: the wait gives up after its bound.
    let err = handle
        .wait_for(head, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(
        (err.projection(), err.position(), err.reached()),
        ("effects", head, 1)
    );
    // The paused clock rounds timers up to the millisecond.
    let bound = Duration::from_secs(30)..=Duration::from_millis(30_001);
    assert!(bound.contains(&err.waited()), "{:?}", err.waited());
    assert!(bound.contains(&started.elapsed()));
    let text = err.to_string();
    assert!(
        text.starts_with("projection \"effects\" did not reach position 3 within 30")
            && text.ends_with("(at 1)"),
        "{text}"
    );

    // A wait still within its bound ends as soon as the checkpoint arrives.
    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.wait_for(head, Duration::from_secs(60)).await }
    });
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(!waiter.is_finished());
    // The database work runs on the real clock.
    tokio::time::resume();
    gate.add_permits(10);
    waiter.await.unwrap().unwrap();
    assert_eq!(handle.checkpoint(), head);
    handle.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn a_registry_runs_a_projection_once_per_process() {
    let fx = SqliteFixture::new("registry").await;
    let registry = Registry::new();
    let start = || {
        ProjectionRunner::builder(
            "effects",
            Effects::new(&fx.table),
            fx.backend.clone(),
            fx.store.clone(),
        )
        .registry(&registry)
        .start()
    };
    let first = start().await.unwrap();
    let second = start().await.unwrap();
    assert!(first.same_as(&second));
    assert_eq!(registry.names(), vec!["effects".to_owned()]);
    assert_eq!(registry.snapshots()[0].name.as_ref(), "effects");
    assert!(first.is_running());
    first.stop();
    assert!(!first.is_running());
    // A stopped runner is replaced by the next start.
    let third = start().await.unwrap();
    assert!(!third.same_as(&first) && third.is_running());
    assert!(registry.get("effects").unwrap().same_as(&third));
    third.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn bad_settings_are_refused_before_anything_starts() {
    let fx = SqliteFixture::new("settings").await;
    let err = ProjectionRunner::builder(
        "effects",
        Effects::new(&fx.table),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .batch_size(0)
    .start()
    .await
    .unwrap_err();
    assert_eq!(err.operation(), "settings");
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("batch_size")
    );
    let err = ProjectionRunner::builder(
        "",
        Effects::new(&fx.table),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .start()
    .await
    .unwrap_err();
    assert_eq!(err.operation(), "settings");
}
