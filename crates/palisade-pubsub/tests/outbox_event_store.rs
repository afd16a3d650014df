//! The event store as the outbox: a relay following `palisade-event-store`
//! publishes every committed event once, in position order, with the event's
//! id, type, stream, version and correlation; a relay restarted from its
//! checkpoint (a crash between publish and checkpoint, or after it) loses
//! nothing; a subject the mapper gets wrong stops the relay before the event.
#![cfg(all(feature = "event-store", feature = "memory"))]

use palisade_event_store::{EventStore, ExpectedVersion, Metadata, NewEvent};
use palisade_pubsub::backend::memory::MemoryBus;
use palisade_pubsub::outbox::event_store::{
    EVENT_POSITION, EVENT_STREAM, EVENT_TYPE, EVENT_VERSION,
};
use palisade_pubsub::outbox::{
    CheckpointStore, EventStoreOutbox, MemoryCheckpoints, OutboxSource, Relay,
};
use palisade_test_util::unique_name;

fn subject(event: &palisade_event_store::RecordedEvent) -> String {
    format!("accounts.{}.{}", event.stream(), event.event_type())
}

fn deposit(id: &str, amount: u64) -> NewEvent {
    NewEvent::json(id, "Deposited", &serde_json::json!({ "amount": amount })).unwrap()
}

async fn append_some(store: &EventStore) {
    store
        .append(
            "acc-1",
            ExpectedVersion::NoStream,
            &[
                deposit("d-1", 10).metadata(Metadata::correlated("req-1")),
                deposit("d-2", 20),
            ],
        )
        .await
        .unwrap();
    store
        .append("acc-2", ExpectedVersion::NoStream, &[deposit("d-3", 30)])
        .await
        .unwrap();
    store
        .append("acc-1", ExpectedVersion::Exact(2), &[deposit("d-4", 40)])
        .await
        .unwrap();
}

async fn relays_every_event_in_order(store: EventStore) {
    append_some(&store).await;
    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut sub = bus.subscribe("accounts.>").unwrap();
    let checkpoints = MemoryCheckpoints::new();
    let outbox = EventStoreOutbox::new(store.clone(), subject);
    assert_eq!(outbox.head().await.unwrap(), Some(4));
    let mut relay = Relay::builder("accounts")
        .batch_size(3)
        .build(outbox, checkpoints.clone(), bus.clone())
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 3);
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(relay.run_once().await.unwrap(), 0);
    assert_eq!(checkpoints.load("accounts").await.unwrap(), Some(4));

    let expected = [
        ("d-1", "acc-1", 1, 1),
        ("d-2", "acc-1", 2, 2),
        ("d-3", "acc-2", 1, 3),
        ("d-4", "acc-1", 3, 4),
    ];
    for (id, stream, version, position) in expected {
        let m = sub.recv().await.unwrap().unwrap();
        assert_eq!(m.id(), id);
        assert_eq!(m.subject(), format!("accounts.{stream}.Deposited"));
        assert_eq!(m.headers().get(EVENT_TYPE), Some("Deposited"));
        assert_eq!(m.headers().get(EVENT_STREAM), Some(stream));
        assert_eq!(
            m.headers().get(EVENT_VERSION),
            Some(version.to_string().as_str())
        );
        assert_eq!(
            m.headers().get(EVENT_POSITION),
            Some(position.to_string().as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        assert!(body["amount"].as_u64().unwrap() > 0);
        if id == "d-1" {
            assert_eq!(m.correlation_id(), Some("req-1"));
        }
    }
    assert_eq!(sub.buffered(), 0);

    // A later append is picked up from the checkpoint, nothing repeated.
    store
        .append("acc-2", ExpectedVersion::Exact(1), &[deposit("d-5", 50)])
        .await
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap(), 1);
    assert_eq!(sub.recv().await.unwrap().unwrap().id(), "d-5");
    assert_eq!(sub.buffered(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn memory_store_relays_every_event_in_order() {
    relays_every_event_in_order(EventStore::in_memory("mem").unwrap()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sqlite_store_relays_every_event_in_order() {
    let dir = std::env::temp_dir().join(unique_name("outbox_es"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("events.db").display());
    let store = EventStore::builder("sqlite")
        .url(&url)
        .open()
        .await
        .unwrap();
    relays_every_event_in_order(store).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A relay that stops after publishing but before saving its checkpoint
/// (its task dropped there) publishes that batch again when restarted: at
/// least once, never lost.
#[tokio::test(flavor = "current_thread")]
async fn a_restarted_relay_resumes_from_its_checkpoint_without_loss() {
    let store = EventStore::in_memory("restart").unwrap();
    append_some(&store).await;
    let bus = MemoryBus::builder("bus").build().unwrap();
    let mut sub = bus.subscribe("accounts.>").unwrap();
    let checkpoints = MemoryCheckpoints::new();

    let mut first = Relay::builder("accounts")
        .batch_size(2)
        .build(
            EventStoreOutbox::new(store.clone(), subject),
            checkpoints.clone(),
            bus.clone(),
        )
        .unwrap();
    assert_eq!(first.run_once().await.unwrap(), 2);
    drop(first);
    // A crash after the checkpoint of 2: the restart resumes at 3.
    let mut second = Relay::builder("accounts")
        .batch_size(10)
        .build(
            EventStoreOutbox::new(store.clone(), subject),
            checkpoints.clone(),
            bus.clone(),
        )
        .unwrap();
    assert_eq!(second.run_once().await.unwrap(), 2);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(sub.recv().await.unwrap().unwrap().id().to_owned());
    }
    assert_eq!(ids, ["d-1", "d-2", "d-3", "d-4"]);

    // A crash before the checkpoint was saved: the checkpoint is rolled back
    // by hand to what it was before the last batch; the batch comes again.
    checkpoints.save("accounts", 2).await.unwrap();
    let mut third = Relay::builder("accounts")
        .build(
            EventStoreOutbox::new(store.clone(), subject),
            checkpoints.clone(),
            bus.clone(),
        )
        .unwrap();
    assert_eq!(third.run_once().await.unwrap(), 2);
    let mut again = Vec::new();
    for _ in 0..2 {
        again.push(sub.recv().await.unwrap().unwrap().id().to_owned());
    }
    assert_eq!(again, ["d-3", "d-4"]);
    assert_eq!(sub.buffered(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn an_invalid_subject_stops_the_relay_before_the_event() {
    let store = EventStore::in_memory("bad").unwrap();
    append_some(&store).await;
    let bus = MemoryBus::builder("bus").build().unwrap();
    let checkpoints = MemoryCheckpoints::new();
    let mut relay = Relay::builder("bad")
        .build(
            EventStoreOutbox::new(store, |_: &palisade_event_store::RecordedEvent| {
                "has spaces".to_owned()
            }),
            checkpoints.clone(),
            bus,
        )
        .unwrap();
    let err = relay.run_once().await.unwrap_err();
    assert!(format!("{err:#}").contains("map event"), "{err:#}");
    assert_eq!(checkpoints.load("bad").await.unwrap(), None);
}
