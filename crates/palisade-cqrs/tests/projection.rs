//! Projections on SQLite and PostgreSQL: a crash mid-batch applies every
//! event exactly once after restart; poisoned events are parked without
//! stalling; rebuilds; the lag; one active runner per projection.
//!
//! The PostgreSQL tests need `PALISADE_TEST_POSTGRES_URL` (skipped with a
//! printed reason without it) and use a schema of their own.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_cqrs::{CqrsEvent, ProjectionRunner};
use palisade_event_store::NewEvent;
use support::{Effects, Faults, PgFixture, SqliteFixture, WAIT, once_each, seed};
use tokio::sync::Semaphore;

macro_rules! projection_tests {
    ($module:ident, $fixture:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_crash_mid_batch_applies_every_event_once_after_restart() {
                let Some(fx) = $fixture("crash").await else { return };
                let head = seed(&fx.store, "a", 25).await;
                assert_eq!(head, 25);
                let faults = Faults { hang_at: Some(17), ..Faults::default() };
                let reached = Arc::clone(&faults.reached);
                let first = ProjectionRunner::builder("effects", Effects::with(&fx.table, faults), fx.backend.clone(), fx.store.clone())
                    .batch_size(10)
                    .lock_retry_interval(Duration::from_millis(20))
                    .start()
                    .await
                    .unwrap();
                // Events 11..16 are applied in the open transaction of the
                // second batch when the task is dropped at 17.
                tokio::time::timeout(WAIT, reached.notified()).await.expect("reached 17");
                assert_eq!(first.checkpoint(), 10);
                first.stop();
                assert_eq!(fx.effects().await, once_each(10));

                let second = ProjectionRunner::builder("effects", Effects::new(&fx.table), fx.backend.clone(), fx.store.clone())
                    .batch_size(10)
                    .lock_retry_interval(Duration::from_millis(20))
                    .start()
                    .await
                    .unwrap();
                assert_eq!(second.checkpoint(), 10, "resumes at the stored checkpoint");
                second.wait_for(head, WAIT).await.unwrap();
                assert_eq!(fx.effects().await, once_each(25));
                assert_eq!(second.lag(), 0);
                second.stop();
                fx.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn poisoned_events_are_parked_and_do_not_stall() {
                let Some(fx) = $fixture("parked").await else { return };
                seed(&fx.store, "a", 20).await;
                // An event whose payload does not decode.
                let garbage = NewEvent::new("bad", "MoneyDeposited", serde_json::json!({"type": "Deposited", "cents": "lots"}));
                let bad = fx.store.append("account-z", palisade_event_store::ExpectedVersion::NoStream, &[garbage]).await.unwrap();
                let head = seed(&fx.store, "b", 5).await;
                let faults = Faults { fail_on_cents: Some(13), ..Faults::default() };
                let effects = Effects::with(&fx.table, faults);
                let faults = Arc::clone(&effects.faults);
                let parked_events = Arc::new(std::sync::Mutex::new(Vec::new()));
                let seen = Arc::clone(&parked_events);
                let handle = ProjectionRunner::builder("effects", effects, fx.backend.clone(), fx.store.clone())
                    .batch_size(8)
                    .max_attempts(3)
                    .retry_backoff(Duration::from_millis(1))
                    .on_event(move |e| {
                        if let CqrsEvent::EventParked { position, .. } = e {
                            seen.lock().unwrap().push(*position);
                        }
                    })
                    .start()
                    .await
                    .unwrap();
                handle.wait_for(head, WAIT).await.unwrap();
                assert_eq!(faults.failures.load(Ordering::SeqCst), 3, "three attempts, then parked");
                let parked = handle.parked(100).await.unwrap();
                assert_eq!(parked.len(), 2, "{parked:?}");
                // The deposit of 13 is account a's version 14, position 14.
                assert_eq!((parked[0].position, &*parked[0].stream, parked[0].version), (14, "account-a", 14));
                assert!(parked[0].reason.contains("refused deposit of 13"), "{}", parked[0].reason);
                let bad_position = bad.last_position().unwrap();
                assert_eq!((parked[1].position, &*parked[1].event_id), (bad_position, "bad"));
                assert!(parked[1].reason.contains("does not decode"), "{}", parked[1].reason);
                let mut seen = parked_events.lock().unwrap().clone();
                seen.sort_unstable();
                assert_eq!(seen, vec![14, bad_position]);
                assert_eq!(handle.snapshot().parked, 2);
                // Every other event applied once.
                let expected: Vec<(i64, i64)> = (1..=i64::try_from(head).unwrap())
                    .filter(|p| *p != 14 && *p != i64::try_from(bad_position).unwrap())
                    .map(|p| (p, 1))
                    .collect();
                assert_eq!(fx.effects().await, expected);
                handle.stop();
                fx.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_rebuild_replays_from_zero() {
                let Some(fx) = $fixture("rebuild").await else { return };
                let head = seed(&fx.store, "a", 12).await;
                let handle = ProjectionRunner::builder("effects", Effects::new(&fx.table), fx.backend.clone(), fx.store.clone())
                    .batch_size(5)
                    .start()
                    .await
                    .unwrap();
                handle.wait_for(head, WAIT).await.unwrap();
                // The read model drifted (a bug since fixed): rebuild it.
                fx.execute(&format!("INSERT INTO {} (position, cents) VALUES (3, 999)", fx.table)).await;
                let applied_before = handle.snapshot().applied;
                handle.rebuild().await.unwrap();
                assert!(handle.checkpoint() < head);
                handle.wait_for(head, WAIT).await.unwrap();
                assert_eq!(fx.effects().await, once_each(12));
                assert_eq!(handle.snapshot().applied, applied_before + 12);
                // New events after the rebuild still flow.
                let head = seed(&fx.store, "b", 3).await;
                handle.wait_for(head, WAIT).await.unwrap();
                assert_eq!(fx.effects().await, once_each(15));
                handle.stop();
                fx.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_lag_is_head_minus_checkpoint() {
                let Some(fx) = $fixture("lag").await else { return };
                let head = seed(&fx.store, "a", 6).await;
                let gate = Arc::new(Semaphore::new(0));
                let faults = Faults { gate: Some(Arc::clone(&gate)), ..Faults::default() };
                let handle = ProjectionRunner::builder("effects", Effects::with(&fx.table, faults), fx.backend.clone(), fx.store.clone())
                    .batch_size(1)
                    .start()
                    .await
                    .unwrap();
                assert_eq!((handle.checkpoint(), handle.lag()), (0, 6));
                gate.add_permits(2);
                handle.wait_for(2, WAIT).await.unwrap();
                assert_eq!(handle.lag(), 4);
                let snapshot = handle.snapshot();
                assert_eq!((snapshot.checkpoint, snapshot.head, snapshot.lag), (2, 6, 4));
                gate.add_permits(100);
                handle.wait_for(head, WAIT).await.unwrap();
                assert_eq!(handle.lag(), 0);
                handle.stop();
                fx.cleanup().await;
            }
        }
    };
}

impl SqliteFixture {
    async fn create(test: &str) -> Option<Self> {
        Some(Self::new(test).await)
    }

    async fn cleanup(self) {}
}

impl PgFixture {
    async fn cleanup(self) {
        self.drop_schema().await;
    }
}

projection_tests!(sqlite, SqliteFixture::create);
projection_tests!(postgres, PgFixture::new);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_one_active_runner_per_projection() {
    let Some(fx) = PgFixture::new("one_active").await else {
        return;
    };
    let a = ProjectionRunner::builder(
        "effects",
        Effects::new(&fx.table),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .lock_retry_interval(Duration::from_millis(20))
    .start()
    .await
    .unwrap();
    let took_over = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&took_over);
    // Another process's runner of the same projection.
    let other = palisade_cqrs::backend::postgres::PgReadModel::new(
        fx.pool.clone(),
        &format!("{}.proj", fx.schema),
    )
    .unwrap();
    let b = ProjectionRunner::builder("effects", Effects::new(&fx.table), other, fx.store.clone())
        .lock_retry_interval(Duration::from_millis(20))
        .on_event(move |e| {
            if matches!(e, CqrsEvent::ProjectionActive { active: true, .. }) {
                notify.notify_one();
            }
        })
        .start()
        .await
        .unwrap();
    let head = seed(&fx.store, "a", 10).await;
    a.wait_for(head, WAIT).await.unwrap();
    // The standby follows the stored checkpoint (read-your-writes works in
    // every process) without applying anything.
    b.wait_for(head, WAIT).await.unwrap();
    assert!(a.is_active());
    assert!(!b.is_active());
    assert_eq!(b.snapshot().applied, 0);

    a.stop();
    tokio::time::timeout(WAIT, took_over.notified())
        .await
        .expect("b takes over");
    let head = seed(&fx.store, "b", 5).await;
    b.wait_for(head, WAIT).await.unwrap();
    assert_eq!(b.snapshot().applied, 5);
    assert_eq!(fx.effects().await, once_each(15));
    b.stop();
    fx.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_runner_that_loses_its_lock_session_takes_it_again() {
    let Some(fx) = PgFixture::new("lock_lost").await else {
        return;
    };
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let handle = ProjectionRunner::builder(
        "effects",
        Effects::new(&fx.table),
        fx.backend.clone(),
        fx.store.clone(),
    )
    .lock_retry_interval(Duration::from_millis(20))
    .on_event(move |e| {
        if let CqrsEvent::ProjectionActive { active, .. } = e {
            let _ = tx.send(*active);
        }
    })
    .start()
    .await
    .unwrap();
    let next = async |changes: &mut tokio::sync::mpsc::UnboundedReceiver<bool>| {
        tokio::time::timeout(WAIT, changes.recv())
            .await
            .unwrap()
            .unwrap()
    };
    assert!(next(&mut changes).await);
    // A server restart, as far as the lock's session is concerned.
    let key = palisade_cqrs::backend::postgres::lock_key(&format!("{}.proj", fx.schema), "effects");
    let bits = u64::from_ne_bytes(key.to_ne_bytes());
    let terminated: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
    )
    .bind(i64::try_from(bits >> 32).unwrap())
    .bind(i64::try_from(bits & 0xffff_ffff).unwrap())
    .fetch_all(&fx.pool)
    .await
    .unwrap();
    assert_eq!(terminated, vec![(true,)]);
    assert!(
        !next(&mut changes).await,
        "the runner notices the lost lock"
    );
    assert!(next(&mut changes).await, "and takes it again");
    let head = seed(&fx.store, "a", 5).await;
    handle.wait_for(head, WAIT).await.unwrap();
    assert_eq!(fx.effects().await, once_each(5));
    handle.stop();
    fx.drop_schema().await;
}
