//! A teacher cache for offline distillation: a teacher's top-k log-probabilities per token, selected once from
//! its logits, stored compressed and crash-safely, and read back by row range for training a student against
//! them (with [`infoloss::distill_topk`] and the fused linear distillation of `infoloss`).
//!
//! ```
//! use infoloss_cache::{CacheReader, CacheWriter, Index, Mode};
//! use infoloss::{distill_topk, DistillOptions, SparseTeacher};
//! use infoloss::ndarray::array;
//! let dir = tempfile::tempdir().unwrap();
//! let teacher = array![[2.0f32, 0.5, -1.0, 0.0], [0.0, 3.0, 1.0, 0.5]];
//! let index = Index::new(4, 2, 2.0, Mode::Lossless, 1024, "two rows".into()).unwrap();
//! let mut w = CacheWriter::create(dir.path(), index).unwrap();
//! w.push_logits(teacher.view()).unwrap();
//! w.finish().unwrap();
//!
//! let rows = CacheReader::open(dir.path()).unwrap().read(0..2).unwrap();
//! let idx = rows.indices_i64();
//! let t = SparseTeacher { indices: idx.view(), logprobs: rows.logprobs.view(), add_tail: true };
//! let student = array![[1.0f32, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]];
//! let o = DistillOptions { temperature: 2.0, ..Default::default() };
//! let loss = distill_topk(student.view(), &t, None, &o).unwrap().scalar().unwrap();
//! assert!(loss > 0.0);
//! ```
//!
//! # The format (version 1)
//!
//! A cache is a directory holding `index.json` and shards `shard-000000.safetensors`, `shard-000001…`, each a
//! plain [safetensors](https://huggingface.co/docs/safetensors) file that the stock `safetensors` packages read.
//!
//! `index.json` ([`Index`]): `format` (`"infoloss-teacher-cache"`), `version` (1), `vocab_size` `V`, `k`,
//! `temperature` `T`, `mode` (`{"kind": "lossless"}` or `{"kind": "packed", "value_bits": b}`), `rows_per_shard`,
//! `source` (a description of the input), `rows` (rows in the listed shards), `complete`, and `shards`: for each,
//! `file`, `rows`, `bytes` and `crc32` (CRC-32/IEEE of the whole file, 8 hex digits). Shard `i` holds rows
//! `i·rows_per_shard …`; only the last may be shorter. A shard not listed in the index does not exist.
//!
//! Every row stores the top-k of `log_softmax(logits / T)` and `tail = ln(1 − Σ_top p)`, summed over the classes
//! outside the top-k (`-inf` if none).
//!
//! - **lossless** shard tensors: `indices` U32 `(n, k)` (best first; ties: lower class first), `logprobs` F32
//!   `(n, k)`, `tail` F32 `(n,)`. 8·k + 4 bytes per row: what was selected, bit for bit.
//! - **packed** (`packedB`, B = 2…16) shard tensors: `data` U8, `offsets` U32 `(n + 1,)`, `range` F16 `(n, 2)`,
//!   `tail` F32 `(n,)`. Row `r` is the bit stream `data[offsets[r]..offsets[r+1]]` (least significant bit first):
//!   a 5-bit Rice parameter `ρ`; the `k` indices sorted ascending as gaps `g_0 = i_0`, `g_j = i_j − i_{j−1} − 1`,
//!   each as `g >> ρ` one bits, a zero bit and the low `ρ` bits of `g`; a 5-bit parameter `σ`; then the `k`
//!   log-probabilities in that order as levels `q ∈ [0, 2^B − 1]`, Rice-coded with `σ` the same way:
//!   `lp = lo + q·(hi − lo)/(2^B − 1)` with `[lo, hi] = range[r]` (values more than 80 nats below the row's best
//!   are stored at `hi − 80`). The reader then adds `ln((1 − exp(tail))/Σ exp(lp))` to every value, so the top-k
//!   mass is the stored one. About `k·(log2(V/k) + 1.5 + B)/8 + 13` bytes per row.
//!
//! # Crash safety
//!
//! A shard is written to `name.tmp`, synced, renamed; then the index (written the same way) lists it. A killed
//! writer leaves only listed, complete shards plus leftovers that [`CacheWriter::resume`] removes.

mod bits;
mod error;
mod index;
mod packed;
mod reader;
mod rows;
mod select;
mod shard;
mod writer;

pub use error::{CacheError, Result};
pub use index::{FORMAT, INDEX_FILE, Index, Mode, ShardEntry, VERSION};
pub use reader::CacheReader;
pub use rows::TopkRows;
pub use select::{LINEAR_CHUNK_BYTES, Logit, select_topk, select_topk_linear};
pub use writer::CacheWriter;
