//! Random sequences of appends (fresh batches with right and wrong
//! expected versions, retries of stored batches, batches mixing stored and
//! new ids) on a few streams, checked against a small model: each result,
//! then every stream and the global order. On memory and on SQLite.

use std::collections::HashMap;

use palisade_event_store::{EventStore, EventStoreError, ExpectedVersion, NewEvent};
use proptest::prelude::*;
use serde_json::json;

#[derive(Clone, Debug)]
enum Op {
    Fresh { stream: u8, expected: u8, n: u8 },
    Retry { of: usize },
    Mix { of: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, 1u8..4).prop_map(|(stream, expected, n)| Op::Fresh { stream, expected, n }),
        1 => (0usize..64).prop_map(|of| Op::Retry { of }),
        1 => (0usize..64).prop_map(|of| Op::Mix { of }),
    ]
}

#[derive(Default)]
struct Model {
    /// (id, stream, version) by position - 1.
    events: Vec<(String, String, u64)>,
    versions: HashMap<String, u64>,
    /// Batches written: (stream, ids, version after, positions).
    batches: Vec<(String, Vec<String>, u64, Vec<u64>)>,
}

async fn run(store: EventStore, ops: Vec<Op>) {
    let mut model = Model::default();
    let mut fresh = 0;
    for op in ops {
        match op {
            Op::Fresh {
                stream,
                expected,
                n,
            } => {
                let stream = format!("s{stream}");
                let current = model.versions.get(&stream).copied().unwrap_or(0);
                let expected = match expected {
                    0 => ExpectedVersion::Any,
                    1 => ExpectedVersion::NoStream,
                    2 => ExpectedVersion::Exact(current),
                    _ => ExpectedVersion::Exact(current + 1),
                };
                let ids: Vec<String> = (0..n)
                    .map(|_| {
                        fresh += 1;
                        format!("e{fresh}")
                    })
                    .collect();
                let batch: Vec<NewEvent> = ids
                    .iter()
                    .map(|id| NewEvent::new(id, "T", json!(null)))
                    .collect();
                let result = store.append(&stream, expected, &batch).await;
                if expected.matches(current) {
                    let done = result.unwrap();
                    let first = model.events.len() as u64 + 1;
                    let positions: Vec<u64> = (first..first + u64::from(n)).collect();
                    let version = current + u64::from(n);
                    assert_eq!(
                        (done.version(), done.positions()),
                        (version, &positions[..])
                    );
                    for (i, id) in ids.iter().enumerate() {
                        model
                            .events
                            .push((id.clone(), stream.clone(), current + i as u64 + 1));
                    }
                    model.versions.insert(stream.clone(), version);
                    model.batches.push((stream, ids, version, positions));
                } else {
                    assert_eq!(result.unwrap_err().as_conflict().unwrap().actual(), current);
                }
            }
            Op::Retry { of } => {
                let Some((stream, ids, version, positions)) = model.batches.get(of).cloned() else {
                    continue;
                };
                let batch: Vec<NewEvent> = ids
                    .iter()
                    .map(|id| NewEvent::new(id, "T", json!(null)))
                    .collect();
                let done = store
                    .append(&stream, ExpectedVersion::NoStream, &batch)
                    .await
                    .unwrap();
                assert!(done.already_stored());
                assert_eq!(
                    (done.version(), done.positions()),
                    (version, &positions[..])
                );
            }
            Op::Mix { of } => {
                let Some((stream, ids, _, _)) = model.batches.get(of).cloned() else {
                    continue;
                };
                let batch = [
                    NewEvent::new(&ids[0], "T", json!(null)),
                    NewEvent::new("never-stored", "T", json!(null)),
                ];
                let err = store
                    .append(&stream, ExpectedVersion::Any, &batch)
                    .await
                    .unwrap_err();
                assert!(matches!(err, EventStoreError::Duplicate(_)), "{err:?}");
            }
        }
    }
    let all = store.read_all(0, 10_000).await.unwrap();
    let seen: Vec<(String, String, u64)> = all
        .iter()
        .map(|e| (e.id().to_owned(), e.stream().to_owned(), e.version()))
        .collect();
    assert_eq!(seen, model.events);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position(), i as u64 + 1);
    }
    for (stream, version) in &model.versions {
        assert_eq!(store.stream_version(stream).await.unwrap(), *version);
        let events = store.read_stream(stream, 1, 10_000).await.unwrap();
        assert_eq!(events.len() as u64, *version);
        assert!(events.windows(2).all(|w| w[0].position() < w[1].position()));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn memory_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(run(EventStore::in_memory("model").unwrap(), ops));
    }
}

#[cfg(feature = "sqlite")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn sqlite_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = std::env::temp_dir().join(palisade_test_util::unique_name("es_model"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("events.db").display());
        runtime().block_on(async {
            let store = EventStore::builder("model").url(url).open().await.unwrap();
            run(store, ops).await;
        });
        let _ = std::fs::remove_dir_all(dir);
    }
}
