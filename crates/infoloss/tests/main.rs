//! The integration tests of `infoloss`, one test binary (each file a module).
//!
//! One binary instead of one per file: every test binary instantiates the generic losses and kernels it
//! calls anew, so twenty binaries compiled them twenty times, which was most of the release test build
//! (`scripts/test.sh`, CI). `linear_memory.rs` stays its own binary: it installs a counting global
//! allocator.

mod support;

mod ce_extras_linear;
mod distill;
mod distill_in_place;
mod elementwise_in_place;
mod fd_info;
mod fd_kl_bce;
mod fd_softmax_ce;
mod fixtures;
mod fuzz_corpus;
mod kernels;
mod layers;
mod linear_distill_extras;
mod nan_policy;
mod oracle;
mod properties;
mod seeds;
mod vocab_parallel;
