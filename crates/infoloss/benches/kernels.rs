//! Criterion benchmarks of the SIMD kernels (placeholder while being written).
fn main() {}
