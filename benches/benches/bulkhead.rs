//! Benchmarks for the bulkhead layer (being written).

fn main() {
    divan::main();
}
