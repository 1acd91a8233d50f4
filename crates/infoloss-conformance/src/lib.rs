//! The conformance runner of the PyTorch fixtures in `testdata/` (schema in `testdata/README.md`), shared by
//! the tests of every front end: core Rust, candle, the command line.
//!
//! - [`Fixture`] / [`Case`] / [`Arr`]: the one case reader (exact number parsing, array records, options);
//! - [`Checker`]: the one comparison (`|got − expected| ≤ atol + rtol·|expected|` at the file's tolerances, NaN
//!   and ±inf exactly where torch has them, `f32_reference` and `also_expected` as the schema says);
//! - [`run_file`] / [`fixture_tests!`]: a front end's adapter maps a case's `function` and `options` to its
//!   API and answers [`Support::Ran`] or [`Support::NotSupported`]; every case of every file is accounted for,
//!   and the tally (passed / not supported / failed per family) goes to `target/conformance/<front end>/`, from
//!   which `scripts/conformance_table.py` prints the table of all front ends.

mod check;
mod json;
pub mod npy;
mod reader;
mod run;

pub use check::{Checker, close};
pub use json::{int, num, quote_numbers};
pub use reader::{Arr, Case, Fixture, Fx, load, testdata_dir};
pub use run::{FILES, Support, assert_every_file_is_listed, run_file};
