//! The bank account end to end on SQLite: commands through the command
//! handler (a tower service), the balances read model fed by a projection
//! runner, and a read-your-writes query.
//!
//! `cargo run -p palisade-cqrs --example bank_account`

#[path = "bank/account.rs"]
mod account;

use std::time::Duration;

use account::{Account, AccountCommand, AccountError, Balances};
use palisade_cqrs::backend::sqlite::SqliteReadModel;
use palisade_cqrs::{Command, CommandError, CommandHandler, ProjectionRunner};
use palisade_event_store::EventStore;
use tower::{Service, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("palisade-bank-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite:{}", dir.join("bank.db").display());

    // The events and the read model in one SQLite file.
    let store = EventStore::builder("bank").url(&url).open().await?;
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc")).await?;
    Balances::create(&pool).await?;
    let balances = ProjectionRunner::builder(
        "balances",
        Balances,
        SqliteReadModel::new(pool.clone(), "palisade_projection")?,
        store.clone(),
    )
    .start()
    .await?;

    let mut accounts = CommandHandler::<Account, _>::builder("accounts", store).build()?;
    let send = |c| Command::new("alice", c);
    accounts
        .ready()
        .await?
        .call(send(AccountCommand::Open {
            owner: "Alice".into(),
        }))
        .await?;
    // The Idempotency-Key of a request: sent twice, deposited once.
    let deposit = send(AccountCommand::Deposit { cents: 100 }).id("req-1");
    accounts.ready().await?.call(deposit.clone()).await?;
    let done = accounts.ready().await?.call(deposit).await?;
    assert!(done.already_stored());

    match accounts
        .ready()
        .await?
        .call(send(AccountCommand::Withdraw { cents: 500 }))
        .await
    {
        Err(CommandError::Rejected(AccountError::Overdraft { balance, .. })) => {
            println!("overdraft refused, balance {balance}");
        }
        other => println!("unexpected: {other:?}"),
    }

    // Read your writes: wait until the read model has the deposit.
    let position = done.position().unwrap_or(0);
    balances.wait_for(position, Duration::from_secs(5)).await?;
    println!("balance: {:?}", Balances::get(&pool, "alice").await?);
    balances.stop();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
