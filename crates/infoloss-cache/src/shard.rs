//! One shard file: a safetensors file holding a run of rows, written once and never modified.
//!
//! Tensors of a `lossless` shard: `indices` U32 `(n, k)`, `logprobs` F32 `(n, k)`, `tail` F32 `(n,)`.
//! Tensors of a `packedB` shard: `data` U8 `(bytes,)` (the rows' bit streams, one after another),
//! `offsets` U32 `(n + 1,)` (row `r` is `data[offsets[r]..offsets[r + 1]]`), `range` F16 `(n, 2)` (each row's
//! `[lo, hi]`), `tail` F32 `(n,)`. The header's `__metadata__` entry `infoloss_teacher_cache` (a JSON object as
//! text) repeats the index's parameters and the shard's `first_row`, so one shard can be read without the index.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::f16;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{CacheError, Result};
use crate::index::{Index, Mode};
use crate::packed::{decode_row, encode_row};
use crate::rows::TopkRows;

/// The safetensors bytes of a shard holding `rows`, the index's rows from `first_row` on.
pub(crate) fn encode(ix: &Index, first_row: u64, rows: &TopkRows) -> Result<Vec<u8>> {
    let (n, k) = (rows.rows(), rows.k());
    // one metadata entry (a JSON object as text): safetensors writes a map in its hash order, and a shard's
    // bytes must not depend on it (a resumed cache is byte for byte an uninterrupted one)
    let about = serde_json::json!({
        "format": crate::index::FORMAT,
        "version": crate::index::VERSION,
        "mode": ix.mode.to_string(),
        "k": ix.k,
        "vocab_size": ix.vocab_size,
        "temperature": ix.temperature,
        "first_row": first_row,
    });
    let meta = HashMap::from([("infoloss_teacher_cache".to_string(), about.to_string())]);
    let bad = |e: safetensors::SafeTensorError| CacheError::Invalid(format!("shard: {e}"));
    let std_rows =
        (rows.indices.as_standard_layout(), rows.logprobs.as_standard_layout(), rows.tail.to_vec());
    let tail: &[u8] = bytemuck::cast_slice(&std_rows.2);
    match ix.mode {
        Mode::Lossless => {
            let idx: &[u8] = bytemuck::cast_slice(std_rows.0.as_slice().expect("standard"));
            let lp: &[u8] = bytemuck::cast_slice(std_rows.1.as_slice().expect("standard"));
            let tensors = vec![
                ("indices", TensorView::new(Dtype::U32, vec![n, k], idx).map_err(bad)?),
                ("logprobs", TensorView::new(Dtype::F32, vec![n, k], lp).map_err(bad)?),
                ("tail", TensorView::new(Dtype::F32, vec![n], tail).map_err(bad)?),
            ];
            safetensors::serialize(tensors, Some(meta)).map_err(bad)
        }
        Mode::Packed { value_bits } => {
            let idx = std_rows.0.as_slice().expect("standard");
            let lp = std_rows.1.as_slice().expect("standard");
            let coded: Vec<(Vec<u8>, [f16; 2])> = idx
                .par_chunks(k.max(1))
                .zip(lp.par_chunks(k.max(1)))
                .map_init(Vec::new, |order, (i, l)| {
                    let mut out = Vec::new();
                    let (lo, hi) = encode_row(i, l, u32::from(value_bits), order, &mut out);
                    (out, [lo, hi])
                })
                .collect();
            let mut data = Vec::new();
            let mut offsets = Vec::with_capacity(n + 1);
            let mut ranges = Vec::with_capacity(2 * n);
            offsets.push(0u32);
            for (bytes, r) in &coded {
                data.extend_from_slice(bytes);
                offsets.push(u32::try_from(data.len()).map_err(|_| {
                    CacheError::Invalid(format!(
                        "shard: more than 4 GiB of packed rows in one shard; lower rows_per_shard ({})",
                        ix.rows_per_shard
                    ))
                })?);
                ranges.extend_from_slice(r);
            }
            let tensors = vec![
                ("data", TensorView::new(Dtype::U8, vec![data.len()], &data).map_err(bad)?),
                (
                    "offsets",
                    TensorView::new(Dtype::U32, vec![n + 1], bytemuck::cast_slice(&offsets)).map_err(bad)?,
                ),
                (
                    "range",
                    TensorView::new(Dtype::F16, vec![n, 2], bytemuck::cast_slice(&ranges)).map_err(bad)?,
                ),
                ("tail", TensorView::new(Dtype::F32, vec![n], tail).map_err(bad)?),
            ];
            safetensors::serialize(tensors, Some(meta)).map_err(bad)
        }
    }
}

/// CRC-32 of `bytes` as the index writes it.
pub(crate) fn crc_hex(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// The bytes of a shard file: memory-mapped.
fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).map_err(CacheError::io(path, "opening the shard"))?;
    // SAFETY: a shard is written whole under a temporary name and renamed into place, and never modified after:
    // nothing writes the mapped file while it is mapped (a user editing the cache by hand is outside the contract,
    // as for every memory-mapping reader). The map is read only through bounds-checked slices.
    unsafe { memmap2::Mmap::map(&file) }.map_err(CacheError::io(path, "memory-mapping the shard"))
}

/// A shard, opened and checked against the index: size, CRC-32, header, tensor names, types and shapes.
pub(crate) struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    mode: Mode,
    k: usize,
    vocab: usize,
    rows: usize,
    /// Byte ranges in `map` of the tensors, by the layout's names.
    parts: HashMap<&'static str, Range<usize>>,
}

impl Shard {
    /// Opens shard `i` of the cache in `dir`.
    pub(crate) fn open(dir: &Path, ix: &Index, i: usize) -> Result<Shard> {
        let entry = &ix.shards[i];
        let path = dir.join(&entry.file);
        let map = map_file(&path)?;
        let corrupt = |what: String| CacheError::corrupt(&path, what);
        if map.len() as u64 != entry.bytes {
            return Err(corrupt(format!(
                "truncated or overwritten: {} bytes, the index says {}",
                map.len(),
                entry.bytes
            )));
        }
        let crc = crc_hex(&map);
        if crc != entry.crc32 {
            return Err(corrupt(format!("checksum mismatch: CRC-32 {crc}, the index says {}", entry.crc32)));
        }
        let (n, k) = (entry.rows, ix.k);
        let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| corrupt(format!("header: {e}")))?;
        let layout: Vec<(&'static str, Dtype, Vec<usize>)> = match ix.mode {
            Mode::Lossless => vec![
                ("indices", Dtype::U32, vec![n, k]),
                ("logprobs", Dtype::F32, vec![n, k]),
                ("tail", Dtype::F32, vec![n]),
            ],
            Mode::Packed { .. } => vec![
                ("offsets", Dtype::U32, vec![n + 1]),
                ("range", Dtype::F16, vec![n, 2]),
                ("tail", Dtype::F32, vec![n]),
                ("data", Dtype::U8, vec![]), // its length is checked against the offsets below
            ],
        };
        let base = map.as_ptr() as usize;
        let mut parts = HashMap::new();
        for (name, dtype, shape) in layout {
            let t = st.tensor(name).map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
            if t.dtype() != dtype || (!shape.is_empty() && t.shape() != shape.as_slice()) {
                return Err(corrupt(format!(
                    "tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            let start = t.data().as_ptr() as usize - base;
            parts.insert(name, start..start + t.data().len());
        }
        let shard = Shard { path, map, mode: ix.mode, k, vocab: ix.vocab_size, rows: n, parts };
        if let Mode::Packed { .. } = ix.mode {
            let off = shard.words::<u32>("offsets");
            let data_len = shard.parts["data"].len();
            if off[0] != 0 || off.windows(2).any(|w| w[0] > w[1]) || off[n] as usize != data_len {
                return Err(shard.corrupt(format!(
                    "tensor `offsets` is not an increasing run from 0 to the {data_len} bytes of `data`"
                )));
            }
        }
        Ok(shard)
    }

    fn corrupt(&self, what: String) -> CacheError {
        CacheError::corrupt(&self.path, what)
    }

    fn bytes(&self, name: &str) -> &[u8] {
        &self.map[self.parts[name].clone()]
    }

    /// A tensor of 4-byte elements, borrowed from the map, or copied if its bytes are not aligned for `T`.
    fn words<T: bytemuck::Pod>(&self, name: &str) -> std::borrow::Cow<'_, [T]> {
        let b = self.bytes(name);
        match bytemuck::try_cast_slice(b) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => std::borrow::Cow::Owned(
                b.chunks_exact(size_of::<T>()).map(bytemuck::pod_read_unaligned).collect(),
            ),
        }
    }

    /// Rows in the shard.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Zero-copy views of a lossless shard's `indices`, `logprobs` and `tail` (`None` for packed shards, or
    /// when the map's bytes are not aligned for them).
    pub(crate) fn lossless_views(
        &self,
    ) -> Option<(ArrayView2<'_, u32>, ArrayView2<'_, f32>, ArrayView1<'_, f32>)> {
        if self.mode != Mode::Lossless {
            return None;
        }
        let idx: &[u32] = bytemuck::try_cast_slice(self.bytes("indices")).ok()?;
        let lp: &[f32] = bytemuck::try_cast_slice(self.bytes("logprobs")).ok()?;
        let tail: &[f32] = bytemuck::try_cast_slice(self.bytes("tail")).ok()?;
        Some((
            ArrayView2::from_shape((self.rows, self.k), idx).ok()?,
            ArrayView2::from_shape((self.rows, self.k), lp).ok()?,
            ArrayView1::from(tail),
        ))
    }

    /// Rows `range` (shard-relative) decoded, and checked: indices below the vocabulary and distinct.
    pub(crate) fn read(&self, range: Range<usize>) -> Result<TopkRows> {
        let (n, k) = (range.len(), self.k);
        let tail_all = self.words::<f32>("tail");
        let tail = Array1::from(tail_all[range.clone()].to_vec());
        let rows = match self.mode {
            Mode::Lossless => {
                let idx = self.words::<u32>("indices");
                let lp = self.words::<f32>("logprobs");
                let (a, b) = (range.start * k, range.end * k);
                TopkRows {
                    indices: Array2::from_shape_vec((n, k), idx[a..b].to_vec()).expect("shape"),
                    logprobs: Array2::from_shape_vec((n, k), lp[a..b].to_vec()).expect("shape"),
                    tail,
                }
            }
            Mode::Packed { value_bits } => {
                let off = self.words::<u32>("offsets");
                let rng: &[u8] = self.bytes("range");
                let data = self.bytes("data");
                let mut indices = Array2::<u32>::zeros((n, k));
                let mut logprobs = Array2::<f32>::zeros((n, k));
                let (ix, lp) =
                    (indices.as_slice_mut().expect("fresh"), logprobs.as_slice_mut().expect("fresh"));
                ix.par_chunks_mut(k).zip(lp.par_chunks_mut(k)).enumerate().try_for_each(
                    |(j, (ix, lp))| {
                        let r = range.start + j;
                        let h = |o: usize| f16::from_le_bytes([rng[4 * r + o], rng[4 * r + o + 1]]);
                        let bytes = &data[off[r] as usize..off[r + 1] as usize];
                        decode_row(bytes, self.vocab, u32::from(value_bits), (h(0), h(2)), tail[j], ix, lp)
                            .map_err(|what| self.corrupt(format!("row {r}: {what}")))
                    },
                )?;
                TopkRows { indices, logprobs, tail }
            }
        };
        crate::rows::check_parts(rows.indices.view(), rows.logprobs.view(), rows.tail.view(), self.vocab)
            .map_err(|e| {
                self.corrupt(format!("rows {range:?}: {}", e.to_string().trim_start_matches("rows: ")))
            })?;
        Ok(rows)
    }
}
