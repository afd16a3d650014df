//! Run with: cargo run -p example-grpc-service
//!
//! Serves the inventory on 127.0.0.1:50051 behind its Palisade stack, then
//! calls it through the client's stack: a reservation; a call during an
//! outage (`UNAVAILABLE`, retried, until the client's breaker opens and
//! calls fail at once); a call to a service that hangs (`DEADLINE_EXCEEDED`
//! when the client's deadline, sent as `grpc-timeout`, passes). Then it
//! keeps serving until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use example_grpc_service::{ClientSettings, Control, Mode, client, reserve_request, serve};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), palisade::BoxError> {
    let addr: SocketAddr = ([127, 0, 0, 1], 50051).into();
    let listener = TcpListener::bind(addr).await?;
    let control = Arc::new(Control::default());
    let server = tokio::spawn(serve(listener, Arc::clone(&control), async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    println!("inventory serving on {addr}");

    let settings = ClientSettings {
        budget: Duration::from_millis(500),
        ..ClientSettings::default()
    };
    let mut inventory = client(addr, settings)?;

    let reply = inventory
        .inventory
        .reserve(reserve_request("order-1", "book", 2))
        .await?;
    println!("reserved: {:?}", reply.into_inner());

    control.set_mode(Mode::Unavailable);
    for n in 2..=8 {
        let status = inventory
            .inventory
            .reserve(reserve_request(&format!("order-{n}"), "book", 1))
            .await
            .expect_err("the inventory is unavailable");
        println!(
            "order-{n}: {:?} {} (breaker {}, server saw {} calls)",
            status.code(),
            status.message(),
            inventory.breaker.state().as_str(),
            control.calls()
        );
    }

    control.set_mode(Mode::Hang);
    let mut fresh = client(addr, settings)?;
    let status = fresh
        .inventory
        .reserve(reserve_request("order-9", "book", 1))
        .await
        .expect_err("the inventory hangs");
    println!("order-9: {:?} {}", status.code(), status.message());

    control.set_mode(Mode::Normal);
    println!("serving until Ctrl-C");
    server.await??;
    Ok(())
}
