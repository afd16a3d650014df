//! Upcasters on read: chained by (type, schema version), applied to every
//! read and subscription, never to what is stored; a failing one leaves the
//! event as stored with a decode error naming stream, version and type.

use palisade_event_store::{EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use palisade_test_util::unique_name;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize, PartialEq)]
struct MoneyDeposited {
    amount: Amount,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Amount {
    cents: i64,
    currency: String,
}

/// v1 `{"cents": n}` → v2 `{"cents": n, "currency": "EUR"}` → renamed
/// `MoneyDeposited` v1 `{"amount": {...}}`; v2 refuses a negative amount.
fn with_upcasters(
    builder: palisade_event_store::EventStoreBuilder,
) -> palisade_event_store::EventStoreBuilder {
    builder
        .upcaster(("Deposited", 1), ("Deposited", 2), |mut payload: Value| {
            payload["currency"] = json!("EUR");
            Ok(payload)
        })
        .upcaster(("Deposited", 2), ("MoneyDeposited", 1), |payload: Value| {
            let cents = payload["cents"].as_i64().ok_or("no cents")?;
            if cents < 0 {
                return Err(format!("negative deposit {cents}").into());
            }
            Ok(json!({ "amount": { "cents": cents, "currency": payload["currency"] } }))
        })
}

async fn stored_then_upcast(raw: &EventStore, upcasting: &EventStore) {
    let events = [
        NewEvent::new("e1", "Deposited", json!({ "cents": 5 })),
        NewEvent::new("e2", "Deposited", json!({ "cents": 7, "currency": "USD" }))
            .schema_version(2),
        NewEvent::new("e3", "Deposited", json!({ "cents": -1 })),
        NewEvent::new("e4", "Closed", json!({})),
    ];
    raw.append("acct", ExpectedVersion::NoStream, &events)
        .await
        .unwrap();

    let read = upcasting.read_stream("acct", 1, 10).await.unwrap();
    let types: Vec<(&str, u32)> = read
        .iter()
        .map(|e| (e.event_type(), e.schema_version()))
        .collect();
    assert_eq!(
        types,
        [
            ("MoneyDeposited", 1),
            ("MoneyDeposited", 1),
            ("Deposited", 1), // the upcaster failed: as stored
            ("Closed", 1),
        ]
    );
    assert_eq!(
        read[0].decode::<MoneyDeposited>().unwrap(),
        MoneyDeposited {
            amount: Amount {
                cents: 5,
                currency: "EUR".into()
            }
        }
    );
    // A v2 event enters the chain at its own step.
    assert_eq!(
        read[1].decode::<MoneyDeposited>().unwrap().amount.currency,
        "USD"
    );
    assert!(read[0].is_upcast() && read[3].is_upcast());

    // The failed one: a clear decode error naming stream, version, type and
    // the upcaster's reason; the read itself did not fail.
    assert!(!read[2].is_upcast());
    assert_eq!(read[2].payload(), &json!({ "cents": -1 }));
    let err = read[2].decode::<Value>().unwrap_err();
    assert!(err.is_upcast_failure());
    assert_eq!(
        (err.stream(), err.version(), err.event_type()),
        ("acct", 3, "Deposited")
    );
    assert!(err.to_string().contains("does not upcast"), "{err}");
    let chain = format!("{:#}", anyhow_like(&err));
    assert!(chain.contains("negative deposit -1"), "{chain}");
    assert!(chain.contains("\"Deposited\" v2"), "{chain}");

    // Every read path upcasts: backward, global, subscription.
    let last = upcasting.read_last("acct", 4).await.unwrap();
    assert_eq!(last[3].event_type(), "MoneyDeposited");
    let all = upcasting.read_all(0, 10).await.unwrap();
    assert_eq!(all, read);
    let mut sub = upcasting.subscribe_all(0);
    assert_eq!(sub.next().await.unwrap().event_type(), "MoneyDeposited");
    let mut by_stream = upcasting.subscribe_stream("acct", 1);
    assert_eq!(
        by_stream.next().await.unwrap().event_type(),
        "MoneyDeposited"
    );

    // Nothing stored changed: a store without upcasters reads the originals.
    let stored = raw.read_stream("acct", 1, 10).await.unwrap();
    assert_eq!(stored[0].event_type(), "Deposited");
    assert_eq!(stored[0].schema_version(), 1);
    assert_eq!(stored[0].payload(), &json!({ "cents": 5 }));
    assert!(stored.iter().all(RecordedEvent::is_upcast));
}

/// The error and its sources, joined: what `{:#}` of an error-chain type
/// prints.
fn anyhow_like(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[tokio::test]
async fn upcasters_chain_on_every_read_in_memory() {
    // One memory store: the upcasting store is the one written to, and a
    // second store on the same backend is not possible, so the stored form
    // is checked through a store without upcasters over a clone of the
    // backend.
    let backend = palisade_event_store::backend::AnyBackend::Memory(
        palisade_event_store::backend::memory::MemoryBackend::new(),
    );
    let raw = EventStore::builder("raw").build(backend.clone()).unwrap();
    let upcasting = with_upcasters(EventStore::builder("up"))
        .build(backend)
        .unwrap();
    stored_then_upcast(&raw, &upcasting).await;
}

#[tokio::test]
async fn upcasters_chain_on_every_read_on_sqlite() {
    let dir = std::env::temp_dir().join(unique_name("es_upcast"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("events.db").display());
    let raw = EventStore::builder("raw").url(&url).open().await.unwrap();
    let upcasting = with_upcasters(EventStore::builder("up").url(&url))
        .open()
        .await
        .unwrap();
    stored_then_upcast(&raw, &upcasting).await;
    drop((raw, upcasting));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_looping_chain_is_refused_when_the_store_is_built() {
    let err = EventStore::builder("up")
        .upcaster(("A", 1), ("B", 1), Ok)
        .upcaster(("B", 1), ("A", 1), Ok)
        .url("memory:")
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upcaster"), "{err}");
    assert!(err.to_string().contains("loops"), "{err}");
}
