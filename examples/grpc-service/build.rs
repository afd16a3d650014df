//! Compiles `proto/inventory.proto` with protox, a protobuf compiler written
//! in Rust: building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inventory.proto");
    let descriptors = protox::compile(["inventory.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
