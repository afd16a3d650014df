//! The inventory over a real socket: tonic's server and client, each behind
//! its Palisade stack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use example_grpc_service::{
    Client, ClientSettings, Control, Mode, ServerHandles, ServerSettings, client, reserve_request,
    serve_with, server_stack,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;

/// A server on a free port of 127.0.0.1, stopped when the guard drops.
struct TestServer {
    addr: SocketAddr,
    control: Arc<Control>,
    handles: ServerHandles,
    _stop: oneshot::Sender<()>,
}

async fn start(mode: Mode) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let control = Arc::new(Control::default());
    control.set_mode(mode);
    // The server keeps 50 ms of a caller's deadline back (the example's
    // default is 5 ms): on a machine busy with other builds a request can
    // spend milliseconds between the client's clock and the server's, and
    // these tests check that the *server* answers when the deadline passes.
    let settings = ServerSettings {
        header_offset: Duration::from_millis(50),
        ..ServerSettings::default()
    };
    let (stack, handles) = server_stack(settings).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_with(listener, Arc::clone(&control), stack, async {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        control,
        handles,
        _stop: stop,
    }
}

fn connect(server: &TestServer, budget: Duration) -> Client {
    client(
        server.addr,
        ClientSettings {
            budget,
            ..ClientSettings::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_goes_through_both_stacks() {
    let server = start(Mode::Normal).await;
    let mut client = connect(&server, Duration::from_secs(2));
    let reply = client
        .inventory
        .reserve(reserve_request("order-1", "book", 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.reservation_id, "rsv-order-1");
    assert_eq!(reply.remaining, 97);
    // Idempotent by order id: the same reservation again.
    let again = client
        .inventory
        .reserve(reserve_request("order-1", "book", 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.remaining, 97);
    assert_eq!(server.control.calls(), 2);
}

/// The client's deadline travels as `grpc-timeout`; the server's deadline
/// layer reads it and answers `DEADLINE_EXCEEDED` when it passes, dropping
/// the handler that would never answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deadline_gives_deadline_exceeded() {
    let server = start(Mode::Normal).await;
    let mut client = connect(&server, Duration::from_millis(300));
    // Connect first: a connection set up inside the deadline eats into it
    // before the server sees the request.
    client
        .inventory
        .reserve(reserve_request("order-0", "book", 1))
        .await
        .unwrap();
    server.control.set_mode(Mode::Hang);
    let started = tokio::time::Instant::now();
    let status = client
        .inventory
        .reserve(reserve_request("order-1", "book", 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // The caller's 300 ms ended it, not the server's own cap of 2 s.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.control.calls(), 2, "not retried");
    let server_deadline = server.handles.deadline.snapshot();
    assert_eq!(
        server_deadline.expired_in_flight, 1,
        "the server's layer answered: {server_deadline:?}"
    );
}

/// The breaker counts `UNAVAILABLE` (each retried attempt included); once
/// open, calls fail at once with `UNAVAILABLE` naming the breaker, and never
/// reach the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_on_unavailable() {
    let server = start(Mode::Unavailable).await;
    let mut client = connect(&server, Duration::from_secs(2));
    for n in 0..5 {
        let status = client
            .inventory
            .reserve(reserve_request(&format!("order-{n}"), "book", 1))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        if client.breaker.state().as_str() == "open" {
            break;
        }
    }
    assert_eq!(client.breaker.state().as_str(), "open");
    let reached = server.control.calls();
    assert!(reached >= 5, "the breaker saw every attempt: {reached}");
    let status = client
        .inventory
        .reserve(reserve_request("order-late", "book", 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.metadata().get("x-palisade-circuit-breaker").unwrap(),
        "inventory"
    );
    assert_eq!(server.control.calls(), reached, "refused without a call");
}

/// `INVALID_ARGUMENT` is the caller's mistake: not retried, and no failure
/// for the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_argument_is_neither_retried_nor_a_breaker_failure() {
    let server = start(Mode::Normal).await;
    let mut client = connect(&server, Duration::from_secs(2));
    for n in 0..10 {
        let status = client
            .inventory
            .reserve(reserve_request(&format!("order-{n}"), "book", 0))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    assert_eq!(server.control.calls(), 10);
    assert_eq!(client.breaker.state().as_str(), "closed");
}

/// The server's bulkhead lets 32 calls in; the 33rd is refused with
/// `UNAVAILABLE` naming the bulkhead, not retried by the client (a
/// rejection asks for less load), and never reaches the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bulkhead_answers_unavailable() {
    let server = start(Mode::Normal).await;
    let budget = Duration::from_millis(800);
    // One connection for every call (HTTP/2 multiplexes them), set up first.
    let client = connect(&server, budget);
    client
        .inventory
        .clone()
        .reserve(reserve_request("order-0", "book", 1))
        .await
        .unwrap();
    server.control.set_mode(Mode::Hang);
    let mut hanging = tokio::task::JoinSet::new();
    for n in 0..32 {
        let mut client = client.clone();
        hanging.spawn(async move {
            client
                .inventory
                .reserve(reserve_request(&format!("order-{n}"), "book", 1))
                .await
        });
    }
    server.control.reached(33).await;
    let mut client = client.clone();
    let status = client
        .inventory
        .reserve(reserve_request("order-33", "book", 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("x-palisade-bulkhead")
            .expect("named by the bulkhead"),
        "inventory-server"
    );
    assert_eq!(server.control.calls(), 33);
    while let Some(call) = hanging.join_next().await {
        assert_eq!(call.unwrap().unwrap_err().code(), Code::DeadlineExceeded);
    }
    // Each call's permit went with its handler's work, dropped when the
    // deadline passed, before the answer was sent.
    assert_eq!(server.handles.bulkhead.snapshot().in_flight, 0);
    assert_eq!(server.handles.deadline.snapshot().expired_in_flight, 32);
}
