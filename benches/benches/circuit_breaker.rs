//! Benchmarks for the circuit_breaker layer (being written).

fn main() {
    divan::main();
}
