//! An event store for event sourcing: appends checked against an expected
//! version, idempotent by client-supplied event ids, a gap-safe global
//! order, and subscriptions that catch up and then follow; in memory, in a
//! SQLite file (the default, nothing to set up) or in PostgreSQL (a fleet).
//!
//! # Example
//!
//! A bank account as a stream of deposits and withdrawals; the balance is a
//! fold over it. A withdrawal is decided on the balance read at a version
//! and appended with that version expected, so two concurrent withdrawals
//! cannot both spend the same money.
//!
//! ```
//! use palisade_event_store::{EventStore, EventStoreError, ExpectedVersion, NewEvent, RecordedEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum Account {
//!     Deposited { cents: i64 },
//!     Withdrawn { cents: i64 },
//! }
//!
//! fn balance(events: &[RecordedEvent]) -> i64 {
//!     events.iter().fold(0, |balance, event| match event.decode::<Account>() {
//!         Ok(Account::Deposited { cents }) => balance + cents,
//!         Ok(Account::Withdrawn { cents }) => balance - cents,
//!         Err(_) => balance,
//!     })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `EventStore::builder("bank").url("sqlite:bank.db").open().await?` for a file.
//! let store = EventStore::in_memory("bank")?;
//! let deposit = NewEvent::json("req-1", "Deposited", &Account::Deposited { cents: 100 })?;
//! store.append("account-7", ExpectedVersion::NoStream, &[deposit.clone()]).await?;
//! // The same request retried: a no-op with the original position.
//! let retried = store.append("account-7", ExpectedVersion::NoStream, &[deposit]).await?;
//! assert!(retried.already_stored());
//! assert_eq!(retried.positions(), &[1]);
//!
//! // Withdraw 30, decided on the balance at the version read.
//! let events = store.read_stream("account-7", 1, 1000).await?;
//! let version = events.last().map_or(0, |e| e.version());
//! assert!(balance(&events) >= 30);
//! let withdraw = NewEvent::json("req-2", "Withdrawn", &Account::Withdrawn { cents: 30 })?;
//! store.append("account-7", ExpectedVersion::Exact(version), &[withdraw]).await?;
//!
//! // A second withdrawal decided on the same, now stale, version is refused.
//! let stale = NewEvent::json("req-3", "Withdrawn", &Account::Withdrawn { cents: 90 })?;
//! let err = store.append("account-7", ExpectedVersion::Exact(version), &[stale]).await.unwrap_err();
//! let conflict = err.as_conflict().expect("a conflict");
//! assert_eq!((conflict.expected(), conflict.actual()), (ExpectedVersion::Exact(1), 2));
//!
//! assert_eq!(balance(&store.read_stream("account-7", 1, 1000).await?), 70);
//!
//! // Every stream in global order, from a checkpoint, then live.
//! let mut all = store.subscribe_all(0);
//! assert_eq!(all.next().await?.event_type(), "Deposited");
//! assert_eq!(all.next().await?.position(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! Each stream's events have contiguous versions from `1`. Every event has
//! a global position from `1`, increasing in commit order: a reader that
//! follows positions ([`EventStore::read_all`], [`Subscription`]) never
//! skips an event that commits after a higher position became visible (the
//! "sequence gap" problem of stores that read `ORDER BY` a sequence while
//! writers commit out of order). Every backend gets there the same way: an
//! append holds the store's one write lock from its version check to its
//! commit, so positions are allocated and made visible in the same order.
//! In memory that is a mutex; on SQLite the file's write lock
//! (`BEGIN IMMEDIATE`), which SQLite holds for one writer at a time anyway;
//! on PostgreSQL the row lock on the `<prefix>_head` row, released only
//! after the commit is visible (`backend::postgres` explains, and
//! `tests/gap.rs` shows it with two real transactions). The cost is one
//! append in flight per store at a time; batch events to amortize it.
//!
//! In a tower stack, put a timeout and a circuit breaker around the
//! command handling that appends (a database that is down fails fast),
//! and retry only [`EventStoreError::is_transient`] errors: a
//! [`Conflict`](error::Conflict) needs a new decision, and a retried append
//! with the same event ids is a no-op, so retries never write twice.
//!
//! # Upcasting
//!
//! Events are stored as written, forever; when an event's shape changes,
//! register an upcaster ([`EventStoreBuilder::upcaster`]) from the old
//! (type, schema version) to the new one. Every read (stream, backward,
//! global, both subscriptions) runs the chain, so code only ever decodes
//! the current shape. A failing upcaster does not fail the read: the event
//! is handed on as stored and its [`decode`](RecordedEvent::decode) fails
//! with a [`DecodeError`](error::DecodeError) naming stream, version, type
//! and the reason (a projection parks it, an aggregate load reports it).
//!
//! ```
//! use palisade_event_store::{EventStore, ExpectedVersion, NewEvent};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = EventStore::builder("bank")
//!     .url("memory:")
//!     // v1 had no currency: every v1 deposit was in euros.
//!     .upcaster(("Deposited", 1), ("Deposited", 2), |mut payload| {
//!         payload["currency"] = json!("EUR");
//!         Ok(payload)
//!     })
//!     .open()
//!     .await?;
//! store
//!     .append("a", ExpectedVersion::NoStream, &[NewEvent::new("e1", "Deposited", json!({"cents": 5}))])
//!     .await?;
//! let read = store.read_stream("a", 1, 10).await?;
//! assert_eq!(read[0].schema_version(), 2);
//! assert_eq!(read[0].payload(), &json!({"cents": 5, "currency": "EUR"}));
//! # Ok(())
//! # }
//! ```
//!
//! # Clone
//!
//! [`EventStore`] is an `Arc`: cloning shares the backend (its pool),
//! metrics, listeners and subscription wake-ups; cloning does not create a
//! new store. A [`Subscription`] (every stream) or [`StreamSubscription`]
//! (one stream, [`EventStore::subscribe_stream`]) is not `Clone`: it owns
//! its checkpoint.
//!
//! # Backpressure
//!
//! Appends wait for a pooled connection (`max_connections`) and then for
//! the write lock (on SQLite up to `busy_timeout`, then a `StoreError`); a
//! slow subscriber holds at most one page (`page_size`) and makes the store
//! keep nothing for it: it reads from its checkpoint when it asks.
//!
//! # Errors
//!
//! Every method returns [`EventStoreError`] (appends) or
//! [`StoreError`](error::StoreError) (reads):
//!
//! | error | when | what to do |
//! |---|---|---|
//! | [`Conflict`](error::Conflict) | the stream is not at the expected version | reload, decide again |
//! | [`DuplicateEvent`](error::DuplicateEvent) | a batch mixes stored and new ids, or an id is stored elsewhere | a client bug: fix the ids |
//! | [`InvalidEvent`](error::InvalidEvent) | empty or too long names, too many events, bad settings | fix the input |
//! | [`StoreError`](error::StoreError) | the backend failed (nothing written) | retry later; 503 |
//! | [`DecodeError`](error::DecodeError) | [`RecordedEvent::decode`] did not fit the payload | names the stream, version, type |
//!
//! # Metrics
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `palisade_event_store_appends_total` | counter | `name`, `outcome` (`written`, `already_stored`, `conflict`, `duplicate`, `invalid`, `error`) |
//! | `palisade_event_store_events_appended_total` | counter | `name` |
//! | `palisade_event_store_append_duration_seconds` | histogram | `name` |
//! | `palisade_event_store_events_read_total` | counter | `name` |
//! | `palisade_event_store_read_errors_total` | counter | `name` |
//! | `palisade_event_store_head_position` | gauge | `name` |
//! | `palisade_event_store_upcast_failures_total` | counter | `name` |
//!
//! # Handle and snapshot
//!
//! [`EventStore::handle`] (or a [`Registry<EventStoreHandle>`](Registry)
//! given to [`EventStoreBuilder::registry`]) gives an [`EventStoreHandle`]
//! whose [`snapshot`](EventStoreHandle::snapshot) is what this process has
//! counted since it opened the store (appends, events, retries, conflicts,
//! reads, upcast failures, the head position), with the settings (the URL
//! without credentials): `Serialize` behind the `serde` feature, for an
//! admin API or a dashboard as it is.
//!
//! # Events
//!
//! [`EventStoreEvent::Appended`] and [`EventStoreEvent::Conflict`], to
//! listeners added with [`EventStoreBuilder::on_event`].
//!
//! # Why
//!
//! The Rust event stores this project compared (cqrs-es, eventually, esrs)
//! give no global order that is safe to follow, so a projection following
//! them by a sequence can skip an event for good; this one makes the
//! global order gap-safe on every backend and proves it with a real
//! two-transaction test on PostgreSQL. Appends are idempotent by event id
//! (a retried HTTP request never writes twice) and all-or-nothing, also
//! when the append's future is dropped. Snapshots are a shortcut, never the
//! truth: one of another schema version or ahead of its stream is ignored.
//! One conformance suite runs against every backend. A SQL backend's
//! `append_in` writes the events inside the caller's transaction, which is
//! what a transactional outbox or a read model updated in the same
//! transaction needs. See `docs/patterns/event-sourcing.md`.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod builder;
mod envelope;
pub mod error;
mod event;
mod handle;
mod metrics;
mod settings;
mod shared;
mod snapshot;
mod state;
mod store;
mod upcast;

pub use builder::EventStoreBuilder;
pub use envelope::{AppendResult, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
pub use error::EventStoreError;
pub use event::EventStoreEvent;
pub use handle::{EventStoreHandle, EventStoreSnapshot};
pub use palisade_core::Registry;
pub use settings::{
    BackendKind, EventStoreSettings, MAX_BATCH_SIZE, MAX_CONNECTIONS, MAX_NAME_LEN, MAX_PAGE_SIZE,
};
pub use snapshot::Snapshot;
pub use store::{EventStore, StreamSubscription, Subscription};
pub use upcast::MAX_UPCAST_CHAIN;
