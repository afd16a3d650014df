//! Metrics, listener events and bad configuration.

use std::sync::{Arc, Mutex};

use palisade_event_store::{
    EventStore, EventStoreEvent, EventStoreSettings, ExpectedVersion, NewEvent,
};
use palisade_test_util::{MetricsCapture, assert_send_sync_clone};
use serde_json::json;

fn ev(id: &str) -> NewEvent {
    NewEvent::new(id, "Deposited", json!({"cents": 1}))
}

#[tokio::test(flavor = "current_thread")]
async fn appends_are_counted_by_outcome_and_heard_by_listeners() {
    let capture = MetricsCapture::new();
    let _guard = capture.enter();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let store = {
        let heard = Arc::clone(&heard);
        EventStore::builder("bank")
            .url("memory:")
            .on_event(move |e: &EventStoreEvent| heard.lock().unwrap().push(e.clone()))
            .open()
            .await
            .unwrap()
    };
    store
        .append("a", ExpectedVersion::NoStream, &[ev("1"), ev("2")])
        .await
        .unwrap();
    store
        .append("a", ExpectedVersion::NoStream, &[ev("1"), ev("2")])
        .await
        .unwrap();
    store
        .append("a", ExpectedVersion::NoStream, &[ev("3")])
        .await
        .unwrap_err();
    store
        .append("", ExpectedVersion::Any, &[ev("4")])
        .await
        .unwrap_err();
    store
        .append("a", ExpectedVersion::Any, &[ev("3"), ev("1")])
        .await
        .unwrap_err();
    store.read_all(0, 10).await.unwrap();

    let appends = |outcome| {
        capture.counter(
            "palisade_event_store_appends_total",
            &[("name", "bank"), ("outcome", outcome)],
        )
    };
    assert_eq!(appends("written"), 1);
    assert_eq!(appends("already_stored"), 1);
    assert_eq!(appends("conflict"), 1);
    assert_eq!(appends("invalid"), 1);
    assert_eq!(appends("duplicate"), 1);
    assert_eq!(appends("error"), 0);
    let named = [("name", "bank")];
    assert_eq!(
        capture.counter("palisade_event_store_events_appended_total", &named),
        2
    );
    assert_eq!(
        capture.counter("palisade_event_store_events_read_total", &named),
        2
    );
    assert_eq!(
        capture
            .histogram("palisade_event_store_append_duration_seconds", &named)
            .len(),
        5
    );
    assert_eq!(
        capture.gauge("palisade_event_store_head_position", &named),
        Some(2.0)
    );

    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 2);
    assert!(matches!(
        &heard[0],
        EventStoreEvent::Appended { stream, version: 2, position: 2, count: 2, .. } if &**stream == "a"
    ));
    assert!(matches!(
        &heard[1],
        EventStoreEvent::Conflict {
            expected: ExpectedVersion::NoStream,
            actual: 2,
            ..
        }
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn bad_settings_are_refused_before_opening() {
    assert_send_sync_clone::<EventStore>();
    let err = EventStore::builder("")
        .url("memory:")
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`name`"), "{err}");
    let err = EventStore::builder("x")
        .url("mysql://db")
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`url`"), "{err}");
    let err = EventStore::builder("x")
        .settings(EventStoreSettings {
            page_size: 0,
            ..EventStoreSettings::with_url("memory:")
        })
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`page_size`"), "{err}");
    assert!(EventStore::in_memory("").is_err());
}

#[cfg(feature = "serde")]
#[test]
fn settings_read_from_toml() {
    let settings: EventStoreSettings = toml::from_str(
        r#"
        url = "postgres://db/events"
        table_prefix = "bank.es"
        poll_interval = "250ms"
        "#,
    )
    .unwrap();
    assert_eq!(settings.url, "postgres://db/events");
    assert_eq!(
        settings.poll_interval,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(settings.page_size, EventStoreSettings::default().page_size);
    assert!(settings.validate().is_ok());
    assert!(toml::from_str::<EventStoreSettings>("nope = 1").is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn the_handle_snapshot_counts_and_the_registry_holds_one_store_per_name() {
    let registry = palisade_event_store::Registry::new();
    let store = EventStore::builder("bank")
        .url("memory:")
        .registry(&registry)
        .open()
        .await
        .unwrap();
    store
        .append("a", ExpectedVersion::NoStream, &[ev("1"), ev("2")])
        .await
        .unwrap();
    store
        .append("a", ExpectedVersion::NoStream, &[ev("1"), ev("2")])
        .await
        .unwrap(); // a retry: already stored
    store
        .append("a", ExpectedVersion::NoStream, &[ev("3")])
        .await
        .unwrap_err(); // a conflict
    store
        .append("", ExpectedVersion::Any, &[ev("4")])
        .await
        .unwrap_err(); // refused input
    store.read_stream("a", 1, 10).await.unwrap();

    let handle = registry.get("bank").expect("registered under its name");
    assert!(handle.same_as(&store.handle()));
    let snap = handle.snapshot();
    assert_eq!(&*snap.name, "bank");
    assert_eq!(snap.backend, "memory");
    assert_eq!(snap.head_position, 2);
    assert_eq!((snap.appends, snap.events_appended), (1, 2));
    assert_eq!(
        (snap.already_stored, snap.conflicts, snap.append_errors),
        (1, 1, 1)
    );
    assert_eq!((snap.events_read, snap.read_errors), (2, 0));
    assert_eq!(registry.snapshots(), vec![snap.clone()]);
    // Serializable as it is, for an admin API.
    #[cfg(feature = "serde")]
    {
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["conflicts"], 1);
        assert_eq!(json["settings"]["url"], "memory:");
    }

    // A second store under a registered name is refused: open once, clone.
    let err = EventStore::builder("bank")
        .url("memory:")
        .registry(&registry)
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("registry"), "{err}");
    assert!(store.handle().same_as(&registry.get("bank").unwrap()));
}

#[tokio::test(flavor = "current_thread")]
async fn the_snapshot_never_shows_a_password() {
    let store = EventStore::builder("pg")
        .url("memory:")
        .open()
        .await
        .unwrap();
    // The URL a snapshot shows is cut before the credentials.
    let mut settings = store.handle().snapshot().settings;
    settings.url = "postgres://u:secret@db/x".into();
    let opened = EventStore::builder("pg2")
        .settings(settings)
        .build(palisade_event_store::backend::AnyBackend::Memory(
            palisade_event_store::backend::memory::MemoryBackend::new(),
        ))
        .unwrap();
    let snap = opened.handle().snapshot();
    assert_eq!(snap.settings.url, "postgres://db/x");
    assert_eq!(snap.backend, "memory");
}
