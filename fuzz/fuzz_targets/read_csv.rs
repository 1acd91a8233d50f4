//! Fuzz target `read_csv`: the infoloss command line's csv reader on arbitrary bytes (see
//! crates/infoloss-cli/src/files/fuzzing.rs for what is checked).
#![no_main]

#[path = "common/readers.rs"]
mod readers;

libfuzzer_sys::fuzz_target!(|data: &[u8]| readers::fuzzing::csv(data));
