//! Benchmarks for the fan_out layer (being written).

fn main() {
    divan::main();
}
