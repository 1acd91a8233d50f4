//! [`CacheReader`]: random access by row range, in-order iteration, and zero-copy views of lossless shards.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::{ArrayView1, ArrayView2};

use crate::error::{CacheError, Result};
use crate::index::Index;
use crate::rows::TopkRows;
use crate::shard::Shard;

/// Reads a teacher cache: any row range, in any order, from memory-mapped shards.
///
/// Each shard is checked (size, CRC-32, header, tensor types and shapes) the first time it is touched, and every
/// decoded row is checked too (indices below the vocabulary, distinct): a damaged cache gives an error naming the
/// shard file and what failed, never a wrong value.
///
/// ```
/// use infoloss_cache::{CacheReader, CacheWriter, Index, Mode};
/// use infoloss::ndarray::array;
/// let dir = tempfile::tempdir().unwrap();
/// let mut w = CacheWriter::create(dir.path(), Index::new(3, 1, 1.0, Mode::Packed { value_bits: 8 }, 4, "doc".into()).unwrap()).unwrap();
/// w.push_logits(array![[0.0f32, 2.0, 1.0]].view()).unwrap();
/// w.finish().unwrap();
/// let r = CacheReader::open(dir.path()).unwrap();
/// let rows = r.read(0..1).unwrap();
/// assert_eq!(rows.indices, array![[1u32]]);
/// // the top-1 mass is exact: 1 − exp(tail)
/// let p = (rows.logprobs[[0, 0]] as f64).exp();
/// assert!((p - (1.0 - (rows.tail[0] as f64).exp())).abs() < 1e-6);
/// ```
pub struct CacheReader {
    dir: PathBuf,
    index: Index,
    shards: Vec<Mutex<Option<Arc<Shard>>>>,
}

impl std::fmt::Debug for CacheReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheReader")
            .field("dir", &self.dir)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl CacheReader {
    /// Opens the cache in `dir`: reads and checks its index, and that every shard file is there.
    pub fn open(dir: &Path) -> Result<CacheReader> {
        let index = Index::load(dir)?;
        for s in &index.shards {
            let p = dir.join(&s.file);
            if !p.is_file() {
                return Err(CacheError::corrupt(&p, "missing: the index lists it"));
            }
        }
        let shards = index.shards.iter().map(|_| Mutex::new(None)).collect();
        Ok(CacheReader { dir: dir.to_path_buf(), index, shards })
    }

    /// The cache's index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Rows in the cache.
    pub fn rows(&self) -> u64 {
        self.index.rows
    }

    /// Shard `i`, opened and checked on first use.
    fn shard(&self, i: usize) -> Result<Arc<Shard>> {
        let mut slot = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(Shard::open(&self.dir, &self.index, i)?);
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Rows `range` (global row numbers), decoded.
    pub fn read(&self, range: Range<u64>) -> Result<TopkRows> {
        if range.start > range.end || range.end > self.rows() {
            return Err(CacheError::Invalid(format!(
                "read: rows {}..{} are not within the cache's {} rows",
                range.start,
                range.end,
                self.rows()
            )));
        }
        let per = self.index.rows_per_shard as u64;
        let mut out = TopkRows::empty(self.index.k);
        let mut row = range.start;
        while row < range.end {
            let i = (row / per) as usize;
            let start = self.index.shard_start(i);
            let end = (start + self.index.shards[i].rows as u64).min(range.end);
            let shard = self.shard(i)?;
            let block = shard.read((row - start) as usize..(end - start) as usize)?;
            if out.rows() == 0 {
                out = block;
            } else {
                out.append(&block)?;
            }
            row = end;
        }
        Ok(out)
    }

    /// The rows in order, `block` rows at a time (the last block may be shorter).
    pub fn blocks(&self, block: usize) -> impl Iterator<Item = Result<TopkRows>> + '_ {
        let block = block.max(1) as u64;
        (0..self.rows().div_ceil(block))
            .map(move |b| self.read(b * block..((b + 1) * block).min(self.rows())))
    }

    /// Reads every shard once, checking it whole (size, checksum, header, every row): what `infoloss
    /// teacher-cache --verify` runs.
    pub fn verify(&self) -> Result<()> {
        for i in 0..self.index.shards.len() {
            let s = self.shard(i)?;
            s.read(0..s.rows())?;
        }
        Ok(())
    }

    /// Calls `f` with zero-copy views (`indices`, `logprobs`, `tail`) of shard `i` of a lossless cache, straight
    /// from the memory map; `None` for a packed cache.
    pub fn with_lossless_shard<R>(
        &self,
        i: usize,
        f: impl FnOnce(ArrayView2<'_, u32>, ArrayView2<'_, f32>, ArrayView1<'_, f32>) -> R,
    ) -> Result<Option<R>> {
        if i >= self.index.shards.len() {
            return Err(CacheError::Invalid(format!(
                "shard {i}: the cache has {} shards",
                self.index.shards.len()
            )));
        }
        let s = self.shard(i)?;
        Ok(s.lossless_views().map(|(a, b, c)| f(a, b, c)))
    }

    /// The file of shard `i`.
    pub fn shard_path(&self, i: usize) -> PathBuf {
        self.dir.join(&self.index.shards[i].file)
    }
}
