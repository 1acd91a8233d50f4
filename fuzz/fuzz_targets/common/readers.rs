//! The infoloss command line's file readers, included from `crates/infoloss-cli/src/files/` as they are,
//! with the functions the reader fuzz targets run on arbitrary bytes (`fuzzing`, which says what is
//! checked). Shared by `fuzz_targets/read_*.rs`.

#[path = "../../../crates/infoloss-cli/src/files/csv.rs"]
#[allow(dead_code)]
mod csv;
#[path = "../../../crates/infoloss-cli/src/files/fuzzing.rs"]
pub mod fuzzing;
#[path = "../../../crates/infoloss-cli/src/files/npy.rs"]
#[allow(dead_code)]
mod npy;
#[path = "../../../crates/infoloss-cli/src/files/npz.rs"]
#[allow(dead_code)]
mod npz;
#[path = "../../../crates/infoloss-cli/src/files/st.rs"]
#[allow(dead_code)]
mod st;
#[path = "../../../crates/infoloss-cli/src/files/tensor.rs"]
#[allow(dead_code)]
mod tensor;
