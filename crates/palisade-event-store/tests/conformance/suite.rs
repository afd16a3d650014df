//! The behaviour every backend must have.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;

use palisade_event_store::{
    EventStoreError, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Snapshot,
};
use serde_json::json;

use crate::fixture::{Fixture, PAGE_SIZE};

fn ev(id: &str, n: i64) -> NewEvent {
    NewEvent::new(id, "Deposited", json!({ "cents": n }))
}

fn ids(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(RecordedEvent::id).collect()
}

pub(crate) async fn append_and_read_envelope(f: &Fixture) {
    let s = &f.store;
    let before = SystemTime::now() - std::time::Duration::from_secs(1);
    let metadata = Metadata::correlated("req-9")
        .caused_by("cmd-3")
        .with("user", "ada");
    let first = NewEvent::new("a1", "Opened", json!({"owner": "ada"}))
        .schema_version(2)
        .metadata(metadata.clone());
    let done = s
        .append("acct-1", ExpectedVersion::NoStream, &[first, ev("a2", 5)])
        .await
        .unwrap();
    assert_eq!(done.version(), 2);
    assert_eq!(done.positions(), &[1, 2]);
    assert!(!done.already_stored());
    assert_eq!(s.stream_version("acct-1").await.unwrap(), 2);
    assert_eq!(s.stream_version("nope").await.unwrap(), 0);
    assert_eq!(s.head_position().await.unwrap(), 2);

    let events = s.read_stream("acct-1", 1, 100).await.unwrap();
    assert_eq!(events.len(), 2);
    let e = &events[0];
    assert_eq!(
        (e.id(), e.stream(), e.version(), e.position()),
        ("a1", "acct-1", 1, 1)
    );
    assert_eq!((e.event_type(), e.schema_version()), ("Opened", 2));
    assert_eq!(e.metadata(), &metadata);
    assert_eq!(e.payload(), &json!({"owner": "ada"}));
    assert!(e.recorded_at() >= before);
    assert_eq!(events[1].schema_version(), 1);
    assert_eq!(events[1].metadata(), &Metadata::default());
    #[derive(Debug, serde::Deserialize)]
    struct Deposited {
        cents: i64,
    }
    assert_eq!(events[1].decode::<Deposited>().unwrap().cents, 5);
    let err = events[0].decode::<Deposited>().unwrap_err();
    assert_eq!(
        (err.stream(), err.version(), err.event_type()),
        ("acct-1", 1, "Opened")
    );

    // From a version; past the end; another stream.
    assert_eq!(ids(&s.read_stream("acct-1", 2, 100).await.unwrap()), ["a2"]);
    assert!(s.read_stream("acct-1", 3, 100).await.unwrap().is_empty());
    assert!(s.read_stream("other", 1, 100).await.unwrap().is_empty());
    assert_eq!(ids(&s.read_stream("acct-1", 1, 1).await.unwrap()), ["a1"]);
}

pub(crate) async fn expected_version_conflicts_write_nothing(f: &Fixture) {
    let s = &f.store;
    s.append("x", ExpectedVersion::Exact(0), &[ev("x1", 1), ev("x2", 2)])
        .await
        .unwrap();
    for (expected, batch) in [
        (ExpectedVersion::NoStream, "n"),
        (ExpectedVersion::Exact(1), "e1"),
        (ExpectedVersion::Exact(3), "e3"),
    ] {
        let err = s
            .append(
                "x",
                expected,
                &[ev(&format!("{batch}-a"), 1), ev(&format!("{batch}-b"), 2)],
            )
            .await
            .unwrap_err();
        let EventStoreError::Conflict(c) = err else {
            panic!("expected a conflict, got {err:?}");
        };
        assert_eq!((c.stream(), c.expected(), c.actual()), ("x", expected, 2));
    }
    // Nothing of the refused batches: no version, no position, no id.
    assert_eq!(s.stream_version("x").await.unwrap(), 2);
    assert_eq!(s.head_position().await.unwrap(), 2);
    assert_eq!(s.read_all(0, 100).await.unwrap().len(), 2);
    // The refused ids are free: they append later as new events.
    let done = s
        .append("x", ExpectedVersion::Exact(2), &[ev("n-a", 1)])
        .await
        .unwrap();
    assert_eq!((done.version(), done.positions()), (3, &[3][..]));
    let done = s
        .append("x", ExpectedVersion::Any, &[ev("any", 1)])
        .await
        .unwrap();
    assert_eq!(done.version(), 4);
    let err = s
        .append("y", ExpectedVersion::Exact(1), &[ev("y1", 1)])
        .await
        .unwrap_err();
    assert_eq!(err.as_conflict().unwrap().actual(), 0);
}

pub(crate) async fn empty_batch_checks_the_version(f: &Fixture) {
    let s = &f.store;
    let done = s.append("e", ExpectedVersion::NoStream, &[]).await.unwrap();
    assert_eq!((done.version(), done.positions().len()), (0, 0));
    s.append("e", ExpectedVersion::Any, &[ev("e1", 1)])
        .await
        .unwrap();
    let done = s.append("e", ExpectedVersion::Exact(1), &[]).await.unwrap();
    assert_eq!(done.version(), 1);
    assert!(
        s.append("e", ExpectedVersion::NoStream, &[])
            .await
            .unwrap_err()
            .as_conflict()
            .is_some()
    );
    assert_eq!(s.head_position().await.unwrap(), 1);
}

pub(crate) async fn invalid_input_is_refused(f: &Fixture) {
    let s = &f.store;
    for (stream, event, field) in [
        ("", ev("i1", 1), "stream"),
        ("s", ev("", 1), "id"),
        ("s", NewEvent::new("i2", "", json!(null)), "event_type"),
    ] {
        match s.append(stream, ExpectedVersion::Any, &[event]).await {
            Err(EventStoreError::Invalid(e)) => assert_eq!(e.field(), field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    let too_many: Vec<NewEvent> = (0..=palisade_event_store::MAX_BATCH_SIZE)
        .map(|i| ev(&format!("m{i}"), 1))
        .collect();
    assert!(matches!(
        s.append("s", ExpectedVersion::Any, &too_many).await,
        Err(EventStoreError::Invalid(e)) if e.field() == "events"
    ));
    assert_eq!(s.head_position().await.unwrap(), 0);
}

pub(crate) async fn retried_append_is_a_no_op(f: &Fixture) {
    let s = &f.store;
    s.append("other", ExpectedVersion::Any, &[ev("o1", 1)])
        .await
        .unwrap();
    let batch = [ev("r1", 1), ev("r2", 2)];
    let first = s
        .append("acct", ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    assert_eq!((first.version(), first.positions()), (2, &[2, 3][..]));
    s.append("acct", ExpectedVersion::Exact(2), &[ev("r3", 3)])
        .await
        .unwrap();

    // The same request again, with its stale expected version: the
    // original result, nothing written.
    let retry = s
        .append("acct", ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    assert!(retry.already_stored());
    assert_eq!((retry.version(), retry.positions()), (2, &[2, 3][..]));
    // A retry of a single event in the middle of a stored batch.
    let retry = s
        .append("acct", ExpectedVersion::Any, &[ev("r2", 2)])
        .await
        .unwrap();
    assert_eq!((retry.version(), retry.positions()), (2, &[3][..]));
    assert_eq!(s.stream_version("acct").await.unwrap(), 3);
    assert_eq!(s.head_position().await.unwrap(), 4);
    assert_eq!(
        ids(&s.read_all(0, 100).await.unwrap()),
        ["o1", "r1", "r2", "r3"]
    );
}

pub(crate) async fn mixed_or_foreign_ids_are_refused(f: &Fixture) {
    let s = &f.store;
    s.append("a", ExpectedVersion::Any, &[ev("m1", 1), ev("m2", 2)])
        .await
        .unwrap();
    let refused = [
        (
            vec![ev("m2", 2), ev("new", 3)],
            "a",
            "the batch mixes stored and new event ids",
        ),
        (
            vec![ev("new", 3), ev("m1", 1)],
            "a",
            "the batch mixes stored and new event ids",
        ),
        (vec![ev("m1", 1)], "b", "the id is stored in another stream"),
        (
            vec![ev("m2", 1), ev("m1", 1)],
            "a",
            "the id is stored, not in this batch's order",
        ),
        (vec![ev("z", 1), ev("z", 1)], "a", "repeated in the batch"),
    ];
    for (batch, stream, reason) in refused {
        match s.append(stream, ExpectedVersion::Any, &batch).await {
            Err(EventStoreError::Duplicate(d)) => assert_eq!(d.reason(), reason),
            other => panic!("expected a duplicate refusal ({reason}), got {other:?}"),
        }
    }
    assert_eq!(s.head_position().await.unwrap(), 2);
    assert_eq!(s.stream_version("b").await.unwrap(), 0);
}

pub(crate) async fn read_backward_gives_the_last_n(f: &Fixture) {
    let s = &f.store;
    let batch: Vec<NewEvent> = (1..=5).map(|i| ev(&format!("b{i}"), i)).collect();
    s.append("acct", ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    assert_eq!(ids(&s.read_last("acct", 2).await.unwrap()), ["b5", "b4"]);
    assert_eq!(
        ids(&s.read_last("acct", 100).await.unwrap()),
        ["b5", "b4", "b3", "b2", "b1"]
    );
    assert_eq!(
        ids(&s.read_stream_backward("acct", 3, 2).await.unwrap()),
        ["b3", "b2"]
    );
    assert!(s.read_last("none", 3).await.unwrap().is_empty());
    assert!(
        s.read_stream_backward("acct", 0, 3)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn read_all_follows_global_order(f: &Fixture) {
    let s = &f.store;
    s.append("a", ExpectedVersion::Any, &[ev("g1", 1), ev("g2", 1)])
        .await
        .unwrap();
    s.append("b", ExpectedVersion::Any, &[ev("g3", 1)])
        .await
        .unwrap();
    s.append("a", ExpectedVersion::Any, &[ev("g4", 1)])
        .await
        .unwrap();
    let all = s.read_all(0, 100).await.unwrap();
    assert_eq!(ids(&all), ["g1", "g2", "g3", "g4"]);
    let positions: Vec<u64> = all.iter().map(RecordedEvent::position).collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    assert_eq!(
        all.iter()
            .map(|e| (e.stream(), e.version()))
            .collect::<Vec<_>>(),
        [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    );
    assert_eq!(ids(&s.read_all(2, 100).await.unwrap()), ["g3", "g4"]);
    assert_eq!(ids(&s.read_all(1, 2).await.unwrap()), ["g2", "g3"]);
    assert!(s.read_all(4, 100).await.unwrap().is_empty());
}

/// Tasks append to one stream, each with the version it read as expected:
/// exactly one wins each version, no version twice, none missing.
pub(crate) async fn contention_one_winner_per_version(f: &Fixture) {
    const TASKS: usize = 8;
    const EACH: usize = 5;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = f.store.clone();
        handles.push(tokio::spawn(async move {
            let mut written = 0;
            let mut conflicts = 0;
            while written < EACH {
                let version = store.stream_version("hot").await.unwrap();
                let id = format!("t{task}-{written}");
                match store
                    .append("hot", ExpectedVersion::Exact(version), &[ev(&id, 1)])
                    .await
                {
                    Ok(done) => {
                        assert_eq!(done.version(), version + 1);
                        written += 1;
                    }
                    Err(EventStoreError::Conflict(c)) => {
                        assert!(c.actual() > version);
                        conflicts += 1;
                    }
                    Err(e) => panic!("append failed: {e:?}"),
                }
            }
            conflicts
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let events = f.store.read_stream("hot", 1, 1000).await.unwrap();
    assert_eq!(events.len(), TASKS * EACH);
    let versions: Vec<u64> = events.iter().map(RecordedEvent::version).collect();
    assert_eq!(versions, (1..=(TASKS * EACH) as u64).collect::<Vec<_>>());
    let unique: HashSet<&str> = events.iter().map(RecordedEvent::id).collect();
    assert_eq!(unique.len(), TASKS * EACH);
    let positions: Vec<u64> = events.iter().map(RecordedEvent::position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

/// Concurrent appends on a few streams: nothing lost or doubled, positions
/// contiguous, and each stream's order agrees with the global order.
pub(crate) async fn concurrent_streams_agree_with_global_order(f: &Fixture) {
    const TASKS: usize = 6;
    const BATCHES: usize = 4;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = f.store.clone();
        handles.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let stream = format!("s{}", (task + b) % 3);
                let batch: Vec<NewEvent> =
                    (0..3).map(|i| ev(&format!("{task}-{b}-{i}"), 1)).collect();
                store
                    .append(&stream, ExpectedVersion::Any, &batch)
                    .await
                    .unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let all = f.store.read_all(0, 1000).await.unwrap();
    let n = TASKS * BATCHES * 3;
    assert_eq!(all.len(), n);
    assert_eq!(
        all.iter().map(RecordedEvent::position).collect::<Vec<_>>(),
        (1..=n as u64).collect::<Vec<_>>()
    );
    let mut last_version: BTreeMap<&str, u64> = BTreeMap::new();
    for event in &all {
        let last = last_version.entry(event.stream()).or_insert(0);
        assert_eq!(
            event.version(),
            *last + 1,
            "stream order agrees with global order"
        );
        *last = event.version();
    }
    // A batch's events are adjacent in the global order.
    for chunk in all.chunks(3) {
        let prefix = |e: &RecordedEvent| e.id().rsplit_once('-').unwrap().0.to_owned();
        assert!(chunk.iter().all(|e| prefix(e) == prefix(&chunk[0])));
    }
}

pub(crate) async fn subscription_catches_up_while_appends_continue(f: &Fixture) {
    let s = &f.store;
    for i in 0..7 {
        s.append(
            &format!("c{}", i % 2),
            ExpectedVersion::Any,
            &[ev(&format!("c{i}"), 1)],
        )
        .await
        .unwrap();
    }
    let mut sub = s.subscribe_all(2);
    let mut seen = Vec::new();
    let mut appended = 7;
    // Catch-up goes page by page (PAGE_SIZE events); append after every
    // event received, so appends land mid-page and between pages.
    while seen.len() < 15 {
        let event = sub.next().await.unwrap();
        seen.push(event.position());
        if appended < 17 {
            s.append(
                "c9",
                ExpectedVersion::Any,
                &[ev(&format!("c{appended}"), 1)],
            )
            .await
            .unwrap();
            appended += 1;
        }
    }
    assert_eq!(seen, (3..=17).collect::<Vec<u64>>());
    assert_eq!(sub.checkpoint(), 17);
    // Caught up: nothing available now.
    assert!(sub.next_batch(10).await.unwrap().is_empty());
    const { assert!(PAGE_SIZE < 15, "catch-up takes several pages") };
}

pub(crate) async fn subscription_follows_live_appends(f: &Fixture) {
    let s = f.store.clone();
    s.append("l", ExpectedVersion::Any, &[ev("l1", 1)])
        .await
        .unwrap();
    let mut sub = s.subscribe_all(0);
    assert_eq!(sub.next().await.unwrap().id(), "l1");
    // Caught up: the next call waits until an append wakes it.
    let waiter = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(sub.next().await.unwrap().id().to_owned());
        }
        got
    });
    tokio::task::yield_now().await;
    s.append("l", ExpectedVersion::Any, &[ev("l2", 1)])
        .await
        .unwrap();
    s.append("m", ExpectedVersion::Any, &[ev("l3", 1), ev("l4", 1)])
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap(), ["l2", "l3", "l4"]);

    // Another store on the same data (another process): its appends are
    // seen by polling.
    if f.url != "memory:" {
        let other = palisade_event_store::EventStore::builder("other")
            .url(&f.url)
            .table_prefix(&f.prefix)
            .poll_interval(std::time::Duration::from_millis(20))
            .open()
            .await
            .unwrap();
        let mut sub = other.subscribe_all(4);
        let follower = tokio::spawn(async move { sub.next().await.unwrap().id().to_owned() });
        s.append("l", ExpectedVersion::Any, &[ev("l5", 1)])
            .await
            .unwrap();
        assert_eq!(follower.await.unwrap(), "l5");
    }
}

pub(crate) async fn snapshots_are_never_trusted_over_events(f: &Fixture) {
    let s = &f.store;
    let batch: Vec<NewEvent> = (1..=4).map(|i| ev(&format!("s{i}"), i)).collect();
    s.append("acct", ExpectedVersion::NoStream, &batch)
        .await
        .unwrap();
    assert_eq!(s.load_snapshot("acct", 1).await.unwrap(), None);

    let snap = Snapshot::new("acct", 3, 1, &json!({"balance": 6})).unwrap();
    s.save_snapshot(&snap).await.unwrap();
    let loaded = s.load_snapshot("acct", 1).await.unwrap().unwrap();
    assert_eq!(loaded, snap);
    // Fold the tail onto it: 6 + 4.
    let tail = s
        .read_stream("acct", loaded.version() + 1, 100)
        .await
        .unwrap();
    let balance = loaded.state()["balance"].as_i64().unwrap()
        + tail
            .iter()
            .map(|e| e.payload()["cents"].as_i64().unwrap())
            .sum::<i64>();
    assert_eq!(balance, 10);
    // Another schema version: ignored.
    assert_eq!(s.load_snapshot("acct", 2).await.unwrap(), None);
    // A state that does not decode as the asked type: `decode` says so.
    assert_eq!(loaded.decode::<Vec<u8>>(), None);
    // Ahead of the stream: ignored.
    s.save_snapshot(&Snapshot::new("acct", 9, 1, &json!({"balance": 1})).unwrap())
        .await
        .unwrap();
    assert_eq!(s.load_snapshot("acct", 1).await.unwrap(), None);
    // Replaced by a good one again.
    s.save_snapshot(&snap).await.unwrap();
    assert_eq!(s.load_snapshot("acct", 1).await.unwrap(), Some(snap));
}

/// Polls `fut` at most `polls` times, then drops it; whether it finished.
async fn poll_then_drop<F: Future>(fut: F, polls: usize) -> bool {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        let ready = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
        if ready {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// An append's future dropped at any point leaves all of its batch or none.
pub(crate) async fn cancelled_append_is_all_or_nothing(f: &Fixture) {
    const BATCH: usize = 4;
    let s = Arc::new(f.store.clone());
    let mut finished = 0;
    let mut cancelled = 0;
    for round in 0..40usize {
        let batch: Vec<NewEvent> = (0..BATCH)
            .map(|i| ev(&format!("k{round}-{i}"), 1))
            .collect();
        if poll_then_drop(s.append("k", ExpectedVersion::Any, &batch), round % 20).await {
            finished += 1;
        } else {
            cancelled += 1;
        }
    }
    // A dropped transaction rolls back when its connection returns to the
    // pool; an append after it sees only whole batches.
    s.append("k", ExpectedVersion::Any, &[ev("after", 1)])
        .await
        .unwrap();
    let events = s.read_stream("k", 1, 10_000).await.unwrap();
    let mut by_round: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &events[..events.len() - 1] {
        let (round, _) = event.id().split_once('-').unwrap();
        by_round
            .entry(round.to_owned())
            .or_default()
            .push(event.version());
    }
    for (round, versions) in &by_round {
        assert_eq!(versions.len(), BATCH, "round {round} is whole");
        assert!(versions.windows(2).all(|w| w[1] == w[0] + 1));
    }
    assert!(
        by_round.len() >= finished,
        "every finished append is stored"
    );
    let versions: Vec<u64> = events.iter().map(RecordedEvent::version).collect();
    assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(cancelled > 0, "some appends were cut");
}

pub(crate) async fn stream_subscription_catches_up_then_follows(f: &Fixture) {
    let s = f.store.clone();
    // Two streams interleaved; the subscription sees only its own, in
    // version order, across several pages, then live appends.
    for i in 1..=5 {
        s.append("mine", ExpectedVersion::Any, &[ev(&format!("m{i}"), i)])
            .await
            .unwrap();
        s.append("other", ExpectedVersion::Any, &[ev(&format!("o{i}"), i)])
            .await
            .unwrap();
    }
    let mut sub = s.subscribe_stream("mine", 1);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = sub.next().await.unwrap();
        assert_eq!(event.stream(), "mine");
        seen.push(event.version());
    }
    assert_eq!(seen, [2, 3, 4, 5]);
    assert_eq!(sub.checkpoint(), 5);

    // Caught up: the next call waits for an append to this stream and
    // ignores appends to others.
    let waiter = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(sub.next().await.unwrap().id().to_owned());
        }
        (got, sub.checkpoint())
    });
    tokio::task::yield_now().await;
    s.append("other", ExpectedVersion::Any, &[ev("o6", 6)])
        .await
        .unwrap();
    s.append(
        "mine",
        ExpectedVersion::Exact(5),
        &[ev("m6", 6), ev("m7", 7)],
    )
    .await
    .unwrap();
    let (got, checkpoint) = waiter.await.unwrap();
    assert_eq!(got, ["m6", "m7"]);
    assert_eq!(checkpoint, 7);

    // A stream that does not exist yet: the subscription waits for it.
    let mut fresh = s.subscribe_stream("later", 0);
    let follower = tokio::spawn(async move { fresh.next().await.unwrap().id().to_owned() });
    tokio::task::yield_now().await;
    s.append("later", ExpectedVersion::NoStream, &[ev("l1", 1)])
        .await
        .unwrap();
    assert_eq!(follower.await.unwrap(), "l1");
}
