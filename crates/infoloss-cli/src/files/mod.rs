//! `infoloss <loss> FILES…`: the library's losses and information measures on arrays stored in files.
//!
//! - Readers: `.npy` (every version; C or Fortran order; little- or big-endian; float16/32/64 and integer
//!   types), `.npz` (stored or deflated; `--key` or `FILE.npz#KEY`), `.safetensors` (F16, BF16, F32, F64 and
//!   integers; `--tensor` or `FILE.safetensors#NAME`) and CSV text. Files of 64 KiB and more are
//!   memory-mapped, and arrays already in the dtype the computation runs in are used in place.
//! - Writers: `.npy` and `.csv`, atomically (a temporary file in the same directory, renamed when every
//!   output is complete).
//! - Every error is one line that names the file and the problem.

pub mod cmd;
pub mod csv;
#[cfg(test)]
pub mod fuzzing;
pub mod npy;
pub mod npz;
pub mod progress;
pub mod report;
pub mod source;
pub mod st;
pub mod tensor;
pub mod write;
