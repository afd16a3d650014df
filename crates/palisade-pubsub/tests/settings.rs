//! Settings from TOML (feature `serde`): durations as strings, unknown keys
//! refused, defaults for what is left out.
#![cfg(feature = "serde")]

use std::time::Duration;

use palisade_pubsub::{BusSettings, ConsumerSettings, NatsSettings, RelaySettings, SlowSubscriber};

#[test]
fn reads_settings_from_toml() {
    let bus: BusSettings = toml::from_str(
        r#"
        capacity = 256
        slow_subscriber = "wait"
        publish_timeout = "250ms"
        "#,
    )
    .unwrap();
    assert_eq!(bus.capacity, 256);
    assert_eq!(bus.slow_subscriber, SlowSubscriber::Wait);
    assert_eq!(bus.publish_timeout, Duration::from_millis(250));
    assert_eq!(bus.max_payload, BusSettings::default().max_payload);
    bus.validate().unwrap();

    let consumer: ConsumerSettings = toml::from_str(
        r#"
        max_in_flight = 8
        max_deliver = 3
        redelivery_delay = "100ms"
        redelivery_delay_max = "30s"
        dead_letter_subject = "dlq.notifications"
        "#,
    )
    .unwrap();
    assert_eq!(consumer.redelivery_delay_max, Duration::from_secs(30));
    assert_eq!(
        consumer.dead_letter_subject.as_deref(),
        Some("dlq.notifications")
    );
    consumer.validate().unwrap();

    let nats: NatsSettings = toml::from_str(r#"ack_wait = "10s""#).unwrap();
    assert_eq!(nats.ack_wait, Duration::from_secs(10));
    let relay: RelaySettings = toml::from_str(r#"poll_interval = "1s""#).unwrap();
    assert_eq!(relay.poll_interval, Duration::from_secs(1));
}

#[test]
fn refuses_unknown_keys_and_bad_values() {
    assert!(toml::from_str::<BusSettings>("capacty = 3").is_err());
    assert!(toml::from_str::<ConsumerSettings>(r#"redelivery_delay = "soon""#).is_err());
    let bad: ConsumerSettings = toml::from_str("max_in_flight = 0").unwrap();
    assert_eq!(bad.validate().unwrap_err().field(), "max_in_flight");
}

#[test]
fn json_payload_helpers() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Order {
        id: u32,
        lines: Vec<String>,
    }
    let order = Order {
        id: 17,
        lines: vec!["book".into()],
    };
    let msg = palisade_pubsub::Message::builder("orders.placed")
        .json(&order)
        .build()
        .unwrap();
    assert_eq!(msg.headers().get("Content-Type"), Some("application/json"));
    assert_eq!(msg.json::<Order>().unwrap(), order);
    assert!(msg.json::<Vec<u8>>().is_err());
}
