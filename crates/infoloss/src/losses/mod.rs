//! The losses, each in its own module (re-exported at the crate root: `infoloss::cross_entropy`, …). A
//! loss builds on the ground floor, the kernels and the shared rows; it uses another loss only through
//! what that loss's module offers at its top level, never its submodules (`tests/layers.rs`).

pub mod bce;
pub mod bce_logits;
pub mod ce_extras;
pub mod cross_entropy;
pub mod distill;
pub mod info;
pub mod kl_div;
pub mod linear;
pub mod nll;
pub mod softmax;
pub mod uda;
