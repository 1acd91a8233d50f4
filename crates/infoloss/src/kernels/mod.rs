//! SIMD row kernels (the only module allowed to contain `unsafe`).
