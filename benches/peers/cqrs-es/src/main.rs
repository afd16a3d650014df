//! cqrs-es with postgres-es, appending from 64 concurrent tasks (one
//! aggregate each) on a 2-worker runtime, pools of 8 connections: the
//! peer of `append_64_streams` and `commands_64_streams` in
//! `benches/benches/event_store.rs`.
//!
//! - `persist`: `PostgresEventRepository::persist` of a batch of 1 or 100
//!   serialized events per aggregate and round, sequences counted here
//!   (the repository's append: one transaction, one `INSERT` per event,
//!   the primary key `(aggregate_type, aggregate_id, sequence)` as the
//!   optimistic lock).
//! - `execute`: `CqrsFramework::execute` of one deposit per aggregate and
//!   round (load every event of the aggregate, handle, persist), no
//!   queries, no snapshots.
//!
//! One warm-up round, then `SAMPLES` rounds; prints the median round and
//! events per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent, Query};
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};

const STREAMS: usize = 64;
const POOL: u32 = 8;
const SAMPLES: usize = 10;

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { cents: i64, memo: String },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        "Deposited".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = i64;
    type Event = AccountEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(
        &mut self,
        cents: i64,
        _services: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Refused> {
        sink.write(
            AccountEvent::Deposited {
                cents,
                memo: "salary".to_owned(),
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        let AccountEvent::Deposited { cents, .. } = event;
        self.balance += cents;
    }
}

async fn schema_pool(url: &str, schema: &str) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(POOL)
        .connect(url)
        .await
        .expect("the pool");
    for statement in [
        format!("CREATE SCHEMA {schema}"),
        // postgres-es's own tables (its db/init.sql).
        format!(
            "CREATE TABLE {schema}.events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
             sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, \
             event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, \
             PRIMARY KEY (aggregate_type, aggregate_id, sequence))"
        ),
        format!(
            "CREATE TABLE {schema}.snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
             last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, \
             current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL, \
             PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))"
        ),
    ] {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .expect("the schema");
    }
    pool
}

fn repository(pool: &PgPool, schema: &str) -> PostgresEventRepository {
    PostgresEventRepository::new(pool.clone())
        .with_tables(&format!("{schema}.events"), &format!("{schema}.snapshots"))
}

fn report(name: &str, per_round: usize, mut rounds: Vec<Duration>) {
    rounds.sort();
    let median = rounds[rounds.len() / 2];
    let per_event = median / per_round as u32;
    println!(
        "{name}: median round {median:?} ({per_round} events), {per_event:?} per event, {:.0} events/s; fastest {:?}, slowest {:?}",
        per_round as f64 / median.as_secs_f64(),
        rounds[0],
        rounds[rounds.len() - 1],
    );
}

async fn persist_rounds(repo: Arc<PostgresEventRepository>, batch: usize) -> Vec<Duration> {
    let mut sequences = vec![0_usize; STREAMS];
    let mut rounds = Vec::new();
    for round in 0..=SAMPLES {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (s, sequence) in sequences.iter_mut().enumerate() {
            let repo = Arc::clone(&repo);
            let first = *sequence;
            *sequence += batch;
            tasks.spawn(async move {
                let events: Vec<SerializedEvent> = (1..=batch)
                    .map(|i| {
                        let event = AccountEvent::Deposited {
                            cents: 100,
                            memo: "salary".to_owned(),
                        };
                        SerializedEvent::new(
                            format!("acct-{s}"),
                            first + i,
                            Account::TYPE.to_owned(),
                            event.event_type(),
                            event.event_version(),
                            serde_json::to_value(&event).expect("json"),
                            serde_json::json!({"correlation_id": "req-1"}),
                        )
                    })
                    .collect();
                repo.persist::<Account>(&events, None)
                    .await
                    .expect("persisted");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("the task");
        }
        if round > 0 {
            rounds.push(started.elapsed());
        }
    }
    rounds
}

async fn execute_rounds(cqrs: Arc<PostgresCqrs<Account>>) -> Vec<Duration> {
    let mut rounds = Vec::new();
    for round in 0..=SAMPLES {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for s in 0..STREAMS {
            let cqrs = Arc::clone(&cqrs);
            tasks.spawn(async move {
                cqrs.execute(&format!("acct-{s}"), 100)
                    .await
                    .expect("executed");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("the task");
        }
        if round > 0 {
            rounds.push(started.elapsed());
        }
    }
    rounds
}

fn main() {
    let Ok(url) = std::env::var("PALISADE_TEST_POSTGRES_URL") else {
        println!("cqrs-es peer skipped: PALISADE_TEST_POSTGRES_URL is not set");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut schemas = Vec::new();
        for batch in [1, 100] {
            let schema = format!("bench_peer_persist_{}_{batch}", std::process::id());
            let pool = schema_pool(&url, &schema).await;
            let repo = Arc::new(repository(&pool, &schema));
            let rounds = persist_rounds(repo, batch).await;
            report(
                &format!("append_64_streams/postgres_es_persist batch={batch}"),
                STREAMS * batch,
                rounds,
            );
            schemas.push((pool, schema));
        }
        let schema = format!("bench_peer_execute_{}", std::process::id());
        let pool = schema_pool(&url, &schema).await;
        // No query: the framework only loads, handles and persists.
        let queries: Vec<Box<dyn Query<Account>>> = Vec::new();
        let store =
            cqrs_es::persist::PersistedEventStore::new_event_store(repository(&pool, &schema));
        let cqrs = Arc::new(CqrsFramework::new(store, queries, ()));
        let rounds = execute_rounds(cqrs).await;
        report("commands_64_streams/cqrs_es_execute", STREAMS, rounds);
        schemas.push((pool, schema));
        for (pool, schema) in schemas {
            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&pool)
                .await;
        }
    });
}
