//! Metrics and listener events of command handlers and projection runners.

#[path = "../examples/bank/account.rs"]
mod account;
mod support;

use std::sync::{Arc, Mutex};

use account::{Account, AccountCommand};
use palisade_cqrs::{Command, CommandHandler, CqrsEvent, ProjectionHandle, ProjectionRunner};
use palisade_test_util::{MetricsCapture, assert_send_sync, assert_send_sync_clone};
use support::{Effects, Faults, SqliteFixture, WAIT};

#[test]
fn public_types_are_send_sync_and_clone() {
    assert_send_sync_clone::<CommandHandler<Account>>();
    assert_send_sync_clone::<ProjectionHandle>();
    assert_send_sync::<palisade_cqrs::CommandError<account::AccountError>>();
    assert_send_sync::<palisade_cqrs::WaitTimeout>();
}

#[tokio::test(flavor = "current_thread")]
async fn commands_are_counted_by_outcome_and_snapshots_heard() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let store = palisade_event_store::EventStore::in_memory("bank").unwrap();
    let accounts = {
        let heard = Arc::clone(&heard);
        CommandHandler::<Account, _>::builder("accounts", store)
            .snapshot_every(2)
            .on_event(move |e| heard.lock().unwrap().push(e.clone()))
            .build()
            .unwrap()
    };
    let send = |c| Command::new("a", c);
    accounts
        .handle(send(AccountCommand::Open { owner: "A".into() }))
        .await
        .unwrap();
    accounts
        .handle(send(AccountCommand::Deposit { cents: 5 }).id("r"))
        .await
        .unwrap();
    accounts
        .handle(send(AccountCommand::Deposit { cents: 5 }).id("r"))
        .await
        .unwrap();
    accounts
        .handle(send(AccountCommand::Withdraw { cents: 50 }))
        .await
        .unwrap_err();

    let outcome = |o| {
        capture.counter(
            "palisade_cqrs_commands_total",
            &[("name", "accounts"), ("outcome", o)],
        )
    };
    assert_eq!(outcome("written"), 2);
    assert_eq!(outcome("already_stored"), 1);
    assert_eq!(outcome("rejected"), 1);
    assert_eq!(outcome("error"), 0);
    assert_eq!(
        capture.counter("palisade_cqrs_snapshots_total", &[("name", "accounts")]),
        1
    );
    assert_eq!(
        capture
            .histogram(
                "palisade_cqrs_command_duration_seconds",
                &[("name", "accounts")]
            )
            .len(),
        4
    );
    assert_eq!(
        *heard.lock().unwrap(),
        vec![CqrsEvent::Snapshotted {
            name: "accounts".into(),
            stream: "account-a".into(),
            version: 2
        }]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn projections_report_checkpoint_lag_and_parked_events() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let fx = SqliteFixture::new("metrics").await;
    let head = support::seed(&fx.store, "a", 8).await;
    let faults = Faults {
        fail_on_cents: Some(3),
        ..Faults::default()
    };
    let handle = ProjectionRunner::builder(
        "effects",
        Effects::with(&fx.table, faults),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .max_attempts(1)
    .start()
    .await
    .unwrap();
    handle.wait_for(head, WAIT).await.unwrap();
    // Let the runner finish its bookkeeping after the commit.
    for _ in 0..100 {
        if capture.gauge("palisade_cqrs_projection_lag", &[("name", "effects")]) == Some(0.0) {
            break;
        }
        tokio::task::yield_now().await;
    }
    let labels = [("name", "effects")];
    assert_eq!(
        capture.gauge("palisade_cqrs_projection_checkpoint", &labels),
        Some(8.0)
    );
    assert_eq!(
        capture.gauge("palisade_cqrs_projection_lag", &labels),
        Some(0.0)
    );
    assert_eq!(
        capture.gauge("palisade_cqrs_projection_active", &labels),
        Some(1.0)
    );
    assert_eq!(
        capture.counter("palisade_cqrs_projection_parked_total", &labels),
        1
    );
    assert_eq!(
        capture.counter("palisade_cqrs_projection_events_total", &labels),
        7
    );
    handle.stop();
    assert_eq!(
        capture.gauge("palisade_cqrs_projection_active", &labels),
        Some(0.0)
    );
}
