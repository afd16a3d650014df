//! The exactly-once inboxes on real SQLite and PostgreSQL: effects and the
//! message id commit together; a duplicate is skipped; a handler killed
//! before its commit leaves nothing, and the redelivery handles it once.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

use palisade_pubsub::Message;

fn msg(id: &str) -> Message {
    Message::builder("payments.settled")
        .id(id)
        .payload("100")
        .build()
        .unwrap()
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "current_thread")]
async fn sqlite_inbox_commits_effects_and_id_together() {
    use palisade_pubsub::backend::sqlite::SqliteInbox;
    let path = std::env::temp_dir().join(format!(
        "{}.sqlite",
        palisade_test_util::unique_name("ps_inbox")
    ));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE ledger (id TEXT, cents BIGINT)")
        .execute(&pool)
        .await
        .unwrap();
    let inbox = SqliteInbox::new(pool.clone());
    inbox.migrate().await.unwrap();
    inbox.migrate().await.unwrap();

    // Killed before commit: the effect and the id roll back together.
    {
        let mut tx = inbox.begin("billing", &msg("p1")).await.unwrap().unwrap();
        sqlx::query("INSERT INTO ledger VALUES ('p1', 100)")
            .execute(&mut **tx)
            .await
            .unwrap();
        drop(tx);
    }
    assert!(!inbox.contains("billing", "p1").await.unwrap());
    // The redelivery handles it; later ones are skipped.
    for delivery in 0..3 {
        match inbox.begin("billing", &msg("p1")).await.unwrap() {
            Some(mut tx) => {
                assert_eq!(delivery, 0);
                sqlx::query("INSERT INTO ledger VALUES ('p1', 100)")
                    .execute(&mut **tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            None => assert!(delivery > 0),
        }
    }
    // Another consumer handles the same message on its own.
    assert!(inbox.begin("audit", &msg("p1")).await.unwrap().is_some());
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1, "the effect happened exactly once");
    assert_eq!(
        inbox
            .prune(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(inbox.prune(std::time::Duration::ZERO).await.unwrap(), 1);
    let _ = std::fs::remove_file(path);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox_serializes_concurrent_duplicates() {
    use palisade_pubsub::backend::postgres::PgInbox;
    use palisade_test_util::{POSTGRES_URL_VAR, service_url, unique_name};
    let Some(url) = service_url(
        POSTGRES_URL_VAR,
        "postgres_inbox_serializes_concurrent_duplicates",
    ) else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let schema = unique_name("ps_inbox");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {schema}.ledger (id TEXT, cents BIGINT)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let inbox = PgInbox::with_table(pool.clone(), &format!("{schema}.inbox")).unwrap();
    inbox.migrate().await.unwrap();

    // Two deliveries of one message at once (an ack wait expired while the
    // first was still running): the second waits for the first's commit,
    // then sees the id.
    let mut first = inbox.begin("billing", &msg("p9")).await.unwrap().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.ledger VALUES ('p9', 100)"
    )))
    .execute(&mut **first)
    .await
    .unwrap();
    let other = inbox.clone();
    let second =
        tokio::spawn(async move { other.begin("billing", &msg("p9")).await.unwrap().is_none() });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the duplicate waits on the row lock");
    first.commit().await.unwrap();
    assert!(second.await.unwrap(), "then it is skipped");
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {schema}.ledger"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert!(PgInbox::with_table(pool.clone(), "bad name").is_err());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}
