//! Benchmarks for the retry layer (being written).

fn main() {
    divan::main();
}
