//! Order events end to end over a real socket: `POST /api/orders`
//! publishes `orders.placed`, the notification consumer handles it, the
//! analytics queue group counts it once; a failing handler (the chaos knob,
//! through the admin API) redelivers and then dead-letters with the reason;
//! shutdown drains the consumers. On the in-process bus always, on NATS
//! JetStream when `PALISADE_TEST_NATS_URL` is set.
//!
//! Real sockets cannot use tokio's paused clock: waits are bounded polls,
//! and the configs use short redelivery delays.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use palisade_gateway::config::Config;
use palisade_gateway::pubsub::PubSubSnapshot;
use serde_json::Value;
use support::{TestGateway, client, demo_config, eventually, request, send};

const TOKEN: &str = "pubsub-test-token";

/// Three deliveries at most, redelivered after 10 ms, 20 ms.
fn pubsub_toml(head: &str) -> String {
    format!(
        "[pubsub]\n{head}\n[pubsub.notification]\nmax_deliver = 3\nredelivery_delay_ms = 10\nredelivery_delay_max_ms = 50\n[pubsub.analytics]\nredelivery_delay_ms = 10\nredelivery_delay_max_ms = 50\n"
    )
}

fn memory_config() -> Config {
    demo_config(&pubsub_toml("analytics_members = 2\n"))
}

async fn place_order(gw: &TestGateway, request_id: &str, user_id: u64) -> Value {
    let body = format!(
        r#"{{"user_id": {user_id}, "items": [{{"product_id": 3, "quantity": 2}}, {{"product_id": 9, "quantity": 1}}]}}"#
    );
    let mut req = request(Method::POST, &gw.url("/api/orders"), None, Some(&body));
    req.headers_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    let reply = send(&client(), req).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.header("x-request-id"), request_id);
    reply.json()
}

fn snapshot(gw: &TestGateway) -> PubSubSnapshot {
    gw.state.pubsub().expect("[pubsub] is on").snapshot()
}

async fn admin_snapshot(gw: &TestGateway) -> Value {
    let reply = send(
        &client(),
        request(Method::GET, &gw.url("/admin/pubsub"), Some(TOKEN), None),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()
}

/// Orders flow to the notification handler (with the request's id as
/// correlation id) and are counted once by the analytics group, whatever
/// the backend.
async fn orders_are_notified_and_counted_once(gw: &TestGateway, orders: u64) {
    let first = place_order(gw, "req-first-order", 7).await;
    let order_id = first["order_id"].as_str().unwrap().to_owned();
    assert_eq!(first["message_id"], order_id.as_str());
    assert_eq!(first["correlation_id"], "req-first-order");
    assert!(
        first["subject"]
            .as_str()
            .unwrap()
            .ends_with(".orders.placed"),
        "{first}"
    );
    for n in 1..orders {
        place_order(gw, &format!("req-{n}"), 10 + n).await;
    }
    let snap = eventually(Duration::from_secs(20), || async {
        let s = snapshot(gw);
        (s.notifications.sent == orders && s.analytics.orders == orders).then_some(s)
    })
    .await;
    let notified = &snap.notifications.latest;
    let first_note = notified
        .iter()
        .find(|n| n.order_id == order_id)
        .expect("the first order was notified");
    assert_eq!(first_note.user_id, 7);
    assert_eq!(
        first_note.correlation_id.as_deref(),
        Some("req-first-order")
    );
    assert_eq!(snap.published, orders);
    assert_eq!(snap.analytics.items, orders * 3);
    assert_eq!(snap.analytics.per_member.len(), 2);
    assert_eq!(
        snap.analytics.per_member.iter().sum::<u64>(),
        orders,
        "each order counted by exactly one member: {:?}",
        snap.analytics.per_member
    );
    let analytics_acked: u64 = snap
        .consumers
        .iter()
        .filter(|c| c.group == "analytics")
        .map(|c| c.figures.acked)
        .sum();
    assert_eq!(analytics_acked, orders, "{:?}", snap.consumers);
    assert_eq!(snap.dead_letters.len(), 0);

    // The admin API and the dashboard serve the same figures.
    let admin = admin_snapshot(gw).await;
    assert_eq!(admin["published"], orders);
    assert_eq!(admin["analytics"]["orders"], orders);
    assert_eq!(admin["consumers"][0]["name"], "notification");
    assert!(admin["totals"]["acked"].as_u64().unwrap() >= 2 * orders);
    assert!(admin["totals"]["lag"].is_u64());
    let dashboard = serde_json::to_value(palisade_gateway::dashboard::snapshot(&gw.state)).unwrap();
    assert_eq!(dashboard["pubsub"]["published"], orders);
    assert_eq!(dashboard["pubsub"]["notifications"]["sent"], orders);
}

/// With the chaos knob on, the handler fails every delivery: the message is
/// redelivered up to `max_deliver` (3) and dead-lettered with the handler's
/// error as the reason; the analytics group is not affected; turning the
/// knob off heals the handler.
async fn a_failing_handler_redelivers_then_dead_letters(gw: &TestGateway) {
    let c = client();
    let chaos_url = gw.url("/admin/pubsub/notification/chaos");
    let unauthorized = send(
        &c,
        request(
            Method::PATCH,
            &chaos_url,
            None,
            Some(r#"{"error_rate": 1}"#),
        ),
    )
    .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    let on = send(
        &c,
        request(
            Method::PATCH,
            &chaos_url,
            Some(TOKEN),
            Some(r#"{"error_rate": 1}"#),
        ),
    )
    .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(on.json()["settings"]["error_rate"], 1.0);
    let bad = send(
        &c,
        request(
            Method::PATCH,
            &chaos_url,
            Some(TOKEN),
            Some(r#"{"error_rate": 2}"#),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["field"], "error_rate");

    let before = snapshot(gw);
    let placed = place_order(gw, "req-poison", 42).await;
    let order_id = placed["order_id"].as_str().unwrap().to_owned();
    let snap = eventually(Duration::from_secs(20), || async {
        let s = snapshot(gw);
        s.dead_letters
            .iter()
            .any(|d| d.message_id == order_id)
            .then_some(s)
    })
    .await;
    let letter = snap
        .dead_letters
        .iter()
        .find(|d| d.message_id == order_id)
        .unwrap();
    assert_eq!(letter.consumer, "notification");
    assert_eq!(letter.kind, "max_deliver");
    assert!(
        letter
            .reason
            .contains("error injected by chaos layer `pubsub-notification`"),
        "{letter:?}"
    );
    let notification = |s: &PubSubSnapshot| s.consumers[0].figures.clone();
    let (was, now) = (notification(&before), notification(&snap));
    assert_eq!(now.dead_lettered - was.dead_lettered, 1);
    assert_eq!(
        now.redelivered - was.redelivered,
        2,
        "3 deliveries: the first and 2 redeliveries"
    );
    // The in-process bus retries in place (one delivery); JetStream
    // redelivers (three deliveries).
    let deliveries = if snap.backend == "memory" { 1 } else { 3 };
    assert_eq!(now.delivered - was.delivered, deliveries);
    assert_eq!(now.acked, was.acked, "nothing acked while failing");
    assert_eq!(snap.notifications.sent, before.notifications.sent);
    // The analytics group counted it all the same.
    let counted = eventually(Duration::from_secs(20), || async {
        let s = snapshot(gw);
        (s.analytics.orders == before.analytics.orders + 1).then_some(s)
    })
    .await;
    assert_eq!(counted.analytics.orders, before.analytics.orders + 1);

    // The admin snapshot and the dashboard show the dead letter.
    let admin = admin_snapshot(gw).await;
    let listed = admin["dead_letters"].as_array().unwrap();
    assert!(
        listed.iter().any(|d| d["message_id"] == order_id.as_str()
            && d["reason"]
                .as_str()
                .unwrap()
                .contains("error injected by chaos layer")),
        "{admin}"
    );
    let dashboard = serde_json::to_value(palisade_gateway::dashboard::snapshot(&gw.state)).unwrap();
    assert_eq!(
        dashboard["pubsub"]["notifications"]["chaos"]["settings"]["error_rate"],
        1.0
    );
    assert!(
        dashboard["pubsub"]["totals"]["dead_lettered"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // Healed: the next order is notified.
    let reset = send(
        &c,
        request(
            Method::POST,
            &gw.url("/admin/pubsub/notification/chaos/reset"),
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    let sent = snap.notifications.sent;
    place_order(gw, "req-healed", 43).await;
    eventually(Duration::from_secs(20), || async {
        (snapshot(gw).notifications.sent == sent + 1).then_some(())
    })
    .await;
}

/// Stops the gateway: every consumer task has ended when `serve` returns.
async fn shutdown_drains_the_consumers(gw: TestGateway) {
    let state = gw.state.clone();
    assert_eq!(
        state.pubsub().unwrap().running(),
        4,
        "notification, two analytics members and the accounts' outbox relay"
    );
    gw.stop().await;
    let pubsub = state.pubsub().unwrap();
    assert_eq!(pubsub.running(), 0, "no consumer task left running");
    let refused = pubsub
        .events()
        .publish_json("orders.placed", "after-stop", None, &serde_json::json!({}))
        .await;
    if pubsub.snapshot().backend == "memory" {
        assert!(refused.is_err(), "the in-process bus is closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_events_are_relayed_to_the_bus_in_commit_order() {
    let gw = TestGateway::start(memory_config(), Some(TOKEN)).await;
    let pubsub = gw.state.pubsub().expect("[pubsub] is on");
    let palisade_gateway::pubsub::Bus::Memory(bus) = pubsub.bus() else {
        panic!("the in-process bus");
    };
    let prefix = pubsub.snapshot().subject_prefix;
    let mut seen = bus.subscribe(&format!("{prefix}.accounts.>")).unwrap();

    let c = client();
    let opened = send(
        &c,
        request(
            Method::POST,
            &gw.url("/api/accounts"),
            None,
            Some(r#"{"owner":"ada"}"#),
        ),
    )
    .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let id = opened.json()["id"].as_str().unwrap().to_owned();
    for cents in [100, 250] {
        let url = gw.url(&format!("/api/accounts/{id}/deposits"));
        let body = format!(r#"{{"cents":{cents}}}"#);
        let reply = send(&c, request(Method::POST, &url, None, Some(&body))).await;
        assert!(reply.status.is_success(), "{}", reply.body);
    }

    // Every committed event, in commit order, each once, its id the event's.
    let store = gw.state.accounts().expect("accounts run").store().clone();
    let stored = store.read_all(0, 10).await.unwrap();
    assert_eq!(stored.len(), 3);
    for event in &stored {
        let message = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("relayed within 10 s")
            .expect("open")
            .unwrap();
        assert_eq!(message.id(), event.id());
        assert_eq!(
            message.subject(),
            format!("{prefix}.accounts.{}", event.event_type())
        );
        assert_eq!(message.headers().get("Event-Stream"), Some(event.stream()));
    }
    let relayed = eventually(Duration::from_secs(10), || async {
        let view = admin_snapshot(&gw).await["relayed"].clone();
        (view["relayed"] == 3).then_some(view)
    })
    .await;
    assert_eq!(relayed["position"], stored[2].position());
    // The relay stops with the consumers.
    shutdown_drains_the_consumers(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_orders_are_notified_counted_once_dead_lettered_and_drained() {
    let gw = TestGateway::start(memory_config(), Some(TOKEN)).await;
    assert_eq!(snapshot(&gw).backend, "memory");
    orders_are_notified_and_counted_once(&gw, 10).await;
    a_failing_handler_redelivers_then_dead_letters(&gw).await;
    shutdown_drains_the_consumers(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_orders_are_notified_counted_once_dead_lettered_and_drained() {
    let Some(url) = palisade_test_util::service_url(
        palisade_test_util::NATS_URL_VAR,
        "nats_orders_are_notified_counted_once_dead_lettered_and_drained",
    ) else {
        return;
    };
    let stream = palisade_test_util::unique_name("gw_events");
    let prefix = palisade_test_util::unique_name("gw");
    let head = format!(
        "backend = \"nats\"\nurl = \"{url}\"\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\nanalytics_members = 2\n[pubsub.nats]\nack_wait_ms = 5000\n"
    );
    let gw = TestGateway::start(demo_config(&pubsub_toml(&head)), Some(TOKEN)).await;
    assert_eq!(snapshot(&gw).backend, "nats");
    orders_are_notified_and_counted_once(&gw, 5).await;
    a_failing_handler_redelivers_then_dead_letters(&gw).await;
    shutdown_drains_the_consumers(gw).await;
    let bus = palisade::pubsub::backend::nats::NatsBus::connect(
        &url,
        "cleanup",
        palisade::pubsub::NatsSettings::default(),
    )
    .await
    .unwrap();
    bus.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn orders_are_refused_without_pubsub_and_with_a_bad_body() {
    let gw = TestGateway::start(demo_config(""), None).await;
    let c = client();
    let url = gw.url("/api/orders");
    let body = r#"{"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}"#;
    let off = send(&c, request(Method::POST, &url, None, Some(body))).await;
    assert_eq!(off.status, StatusCode::NOT_FOUND);
    assert!(off.detail().contains("[pubsub]"), "{}", off.body);
    gw.stop().await;

    let gw = TestGateway::start(memory_config(), None).await;
    let url = gw.url("/api/orders");
    for (body, status, field) in [
        (r#"{"user_id": 1, "items": []}"#, 422, Some("items")),
        (
            r#"{"user_id": 1, "items": [{"product_id": 1, "quantity": 0}]}"#,
            422,
            Some("items.quantity"),
        ),
        (
            r#"{"user_id": 0, "items": [{"product_id": 1, "quantity": 1}]}"#,
            422,
            Some("user_id"),
        ),
        (r#"{"user": 1}"#, 422, None),
        ("not json", 400, None),
    ] {
        let reply = send(&c, request(Method::POST, &url, None, Some(body))).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.body);
        if let Some(field) = field {
            assert_eq!(reply.json()["field"], field, "{body}");
        }
    }
    assert_eq!(snapshot(&gw).published, 0);
    gw.stop().await;
}

#[test]
fn the_pubsub_section_reads_the_crates_settings_and_places_errors() {
    let cfg = Config::embedded_default();
    let p = cfg.pubsub.expect("[pubsub] in the default config");
    assert!(matches!(
        p.backend,
        palisade_gateway::config::PubSubBackend::Memory(_)
    ));
    assert_eq!(p.notification.redelivery_delay, Duration::from_millis(500));
    assert_eq!(p.analytics_members, 2);

    let parse = |text: &str| {
        Config::parse(
            "g.toml",
            &format!("[server]\nlisten = \"127.0.0.1:0\"\n{text}"),
        )
    };
    let on =
        parse("[pubsub]\n[pubsub.notification]\nredelivery_delay = \"250ms\"\nmax_deliver = 7\n")
            .unwrap()
            .pubsub
            .unwrap();
    assert_eq!(on.notification.redelivery_delay, Duration::from_millis(250));
    assert_eq!(on.notification.max_deliver, 7);
    assert!(
        parse("[pubsub]\nenabled = false\n")
            .unwrap()
            .pubsub
            .is_none()
    );
    for (text, key, line, says) in [
        (
            "[pubsub]\n[pubsub.notification]\nmax_deliver = 0\n",
            "pubsub.notification.max_deliver",
            5,
            "must be in",
        ),
        (
            "[pubsub]\nbackend = \"kafka\"\n",
            "pubsub.backend",
            4,
            "\"memory\" or \"nats\"",
        ),
        (
            "[pubsub]\nbackend = \"nats\"\n",
            "pubsub.url",
            4,
            "needs a url",
        ),
        (
            "[pubsub.bus]\ncapacity = 0\n",
            "pubsub.bus.capacity",
            4,
            "must be in",
        ),
        (
            "[pubsub.nats]\nack_wait_ms = 1\n",
            "pubsub.nats.ack_wait_ms",
            4,
            "must be in",
        ),
        (
            "[pubsub]\nsubject_prefix = \"a.*\"\n",
            "pubsub.subject_prefix",
            4,
            "",
        ),
        (
            "[pubsub.analytics]\nmax_in_flights = 3\n",
            "pubsub.analytics.max_in_flights",
            4,
            "unknown field",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert_eq!(err.key(), key, "{text}: {err}");
        assert_eq!(err.line(), line, "{text}: {err}");
        assert!(err.message().contains(says), "{text}: {err}");
        assert!(err.to_string().starts_with("g.toml:"), "{err}");
    }
}

/// Many failing orders at once open the notification handler's breaker: the
/// consumer then holds the messages instead of spending their deliveries,
/// and once the handler heals they are all handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_holds_the_messages_instead_of_dead_lettering_them() {
    let gw = TestGateway::start(memory_config(), Some(TOKEN)).await;
    let pubsub = gw.state.pubsub().unwrap();
    pubsub.notification_chaos().set_error_rate(1.0).unwrap();
    let orders = 8;
    for n in 0..orders {
        place_order(&gw, &format!("req-burst-{n}"), 100 + n).await;
    }
    let breaker = pubsub.notification_breaker();
    let open = eventually(Duration::from_secs(20), || async {
        let s = snapshot(&gw);
        (breaker.state().is_open() && s.totals.rejected > 0).then_some(s)
    })
    .await;
    assert!(
        open.totals.dead_lettered < orders,
        "the breaker opened before every message spent its deliveries: {:?}",
        open.totals
    );
    assert!(open.totals.in_flight > 0, "held: {:?}", open.totals);

    // Healed: every order ends notified or (for those that spent their
    // deliveries before the breaker opened) dead-lettered, none lost.
    pubsub.notification_chaos().reset();
    breaker.reset();
    let done = eventually(Duration::from_secs(30), || async {
        let s = snapshot(&gw);
        (s.notifications.sent + s.consumers[0].figures.dead_lettered == orders).then_some(s)
    })
    .await;
    assert!(done.notifications.sent > 0, "{:?}", done.totals);
    assert_eq!(done.analytics.orders, orders);
    gw.stop().await;
}
