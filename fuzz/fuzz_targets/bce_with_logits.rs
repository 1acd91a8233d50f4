//! Fuzz target `bce_with_logits`: see crates/infoloss/tests/fuzz_harness/mod.rs for what it generates and checks.
#![no_main]

#[path = "../../crates/infoloss/tests/fuzz_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(init: harness::single_threaded(), |data: &[u8]| {
    harness::targets::bce_with_logits(data);
});
