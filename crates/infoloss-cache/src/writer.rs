//! [`CacheWriter`]: appends rows, writes each full shard crash-safely, and resumes after a crash.

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::{ArrayView1, ArrayView2};

use crate::error::{CacheError, Result};
use crate::index::{INDEX_FILE, Index, ShardEntry, sync_dir, write_atomically};
use crate::rows::TopkRows;
use crate::select::{Logit, select_topk, select_topk_linear};
use crate::shard::{crc_hex, encode};

/// Writes a teacher cache.
///
/// Rows are buffered until a shard is full; the shard is then written under a temporary name, synced, renamed
/// into place, and only then added to the index (itself replaced atomically). A process killed at any moment
/// leaves a cache whose index lists complete, checksummed shards only; [`CacheWriter::resume`] reopens it and
/// [`CacheWriter::rows_written`] says from which row to continue. Rows reported written are never lost.
///
/// ```
/// use infoloss_cache::{CacheReader, CacheWriter, Index, Mode};
/// use infoloss::ndarray::array;
/// let dir = tempfile::tempdir().unwrap();
/// let index = Index::new(4, 2, 1.0, Mode::Lossless, 2, "example".into()).unwrap();
/// let mut w = CacheWriter::create(dir.path(), index).unwrap();
/// w.push_logits(array![[1.0f32, 3.0, 2.0, 0.0], [0.0, 0.0, 5.0, 1.0], [2.0, 1.0, 0.0, 0.0]].view()).unwrap();
/// assert_eq!(w.rows_written(), 2); // one full shard is on disk, one row waits
/// w.finish().unwrap();
/// let r = CacheReader::open(dir.path()).unwrap();
/// assert_eq!(r.rows(), 3);
/// assert_eq!(r.read(1..3).unwrap().indices, array![[2u32, 3], [0, 1]]);
/// ```
#[derive(Debug)]
pub struct CacheWriter {
    dir: PathBuf,
    index: Index,
    pending: TopkRows,
}

impl CacheWriter {
    /// Starts a new cache in `dir` (created if missing). Refuses a directory that already holds a cache index.
    pub fn create(dir: &Path, index: Index) -> Result<CacheWriter> {
        fs::create_dir_all(dir).map_err(CacheError::io(dir, "creating the cache directory"))?;
        if dir.join(INDEX_FILE).exists() {
            return Err(CacheError::Invalid(format!(
                "{}: already holds a teacher cache (resume it, or choose an empty directory)",
                dir.display()
            )));
        }
        let k = index.k;
        index.store(dir)?;
        Ok(CacheWriter { dir: dir.to_path_buf(), index, pending: TopkRows::empty(k) })
    }

    /// Reopens the cache in `dir` after an interruption: removes what a killed writer may have left (temporary
    /// files, shard files the index does not list), checks that every listed shard is there with its size, and
    /// continues after [`rows_written`](Self::rows_written) rows.
    pub fn resume(dir: &Path) -> Result<CacheWriter> {
        let index = Index::load(dir)?;
        let listed = index.shards.len();
        let entries = fs::read_dir(dir).map_err(CacheError::io(dir, "listing the cache directory"))?;
        for e in entries {
            let e = e.map_err(CacheError::io(dir, "listing the cache directory"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let stray_shard = name
                .strip_prefix("shard-")
                .and_then(|s| s.strip_suffix(".safetensors"))
                .and_then(|s| s.parse::<usize>().ok())
                .is_some_and(|i| i >= listed);
            if name.ends_with(".tmp") || stray_shard {
                fs::remove_file(e.path()).map_err(CacheError::io(e.path(), "removing a leftover file"))?;
            }
        }
        for s in &index.shards {
            let p = dir.join(&s.file);
            let len = fs::metadata(&p).map_err(CacheError::io(&p, "checking a listed shard"))?.len();
            if len != s.bytes {
                return Err(CacheError::corrupt(&p, format!("{len} bytes, the index says {}", s.bytes)));
            }
        }
        let k = index.k;
        Ok(CacheWriter { dir: dir.to_path_buf(), index, pending: TopkRows::empty(k) })
    }

    /// The index as written so far.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Rows on disk in complete shards: after a crash, the input row to continue from.
    pub fn rows_written(&self) -> u64 {
        self.index.rows
    }

    /// Rows accepted (written or buffered).
    pub fn rows_accepted(&self) -> u64 {
        self.index.rows + self.pending.rows() as u64
    }

    /// Appends rows of top-k entries (`k` columns, indices below the vocabulary size); writes every shard that
    /// becomes full.
    pub fn push(&mut self, rows: &TopkRows) -> Result<()> {
        if self.index.complete {
            return Err(CacheError::Invalid(format!("{}: the cache is complete", self.dir.display())));
        }
        if rows.k() != self.index.k {
            return Err(CacheError::Invalid(format!(
                "push: rows of k = {}, the cache keeps k = {}",
                rows.k(),
                self.index.k
            )));
        }
        rows.check(self.index.vocab_size)?;
        self.pending.append(rows)?;
        let per = self.index.rows_per_shard;
        if self.pending.rows() >= per {
            let mut at = 0;
            while self.pending.rows() - at >= per {
                let block = self.pending.slice(at..at + per);
                self.write_shard(&block)?;
                at += per;
            }
            self.pending = self.pending.slice(at..self.pending.rows());
        }
        Ok(())
    }

    /// Selects the top-k of teacher logits `(rows, V)` at the cache's temperature ([`select_topk`]) and appends
    /// them.
    pub fn push_logits<T: Logit>(&mut self, logits: ArrayView2<'_, T>) -> Result<()> {
        self.check_classes("push_logits: logits", logits.shape(), logits.ncols())?;
        let rows = select_topk(logits, self.index.k, self.index.temperature)?;
        self.push(&rows)
    }

    /// Selects the top-k of `hidden · weightᵀ + bias` ([`select_topk_linear`]: the logits a chunk at a time)
    /// and appends them.
    pub fn push_hidden(
        &mut self,
        hidden: ArrayView2<'_, f32>,
        weight: ArrayView2<'_, f32>,
        bias: Option<ArrayView1<'_, f32>>,
    ) -> Result<()> {
        self.check_classes("push_hidden: weight", weight.shape(), weight.nrows())?;
        let rows = select_topk_linear(hidden, weight, bias, self.index.k, self.index.temperature)?;
        self.push(&rows)
    }

    /// An input with `classes` classes fits the cache's vocabulary.
    fn check_classes(&self, what: &str, shape: &[usize], classes: usize) -> Result<()> {
        if classes == self.index.vocab_size {
            return Ok(());
        }
        Err(CacheError::Invalid(format!(
            "{what} of shape {shape:?} has {classes} classes, the cache's vocabulary has {}",
            self.index.vocab_size
        )))
    }

    /// Writes the buffered rows as the last shard and marks the cache complete.
    pub fn finish(mut self) -> Result<Index> {
        if !self.index.complete {
            if self.pending.rows() > 0 {
                let block = std::mem::replace(&mut self.pending, TopkRows::empty(self.index.k));
                self.write_shard(&block)?;
            }
            self.index.complete = true;
            self.index.store(&self.dir)?;
        }
        Ok(self.index)
    }

    /// Writes one shard (temporary name, sync, rename) and then the index that lists it.
    fn write_shard(&mut self, block: &TopkRows) -> Result<()> {
        let i = self.index.shards.len();
        let bytes = encode(&self.index, self.index.rows, block)?;
        let file = self.index.shard_file(i);
        write_atomically(&self.dir, &file, &bytes)?;
        self.index.shards.push(ShardEntry {
            file,
            rows: block.rows(),
            bytes: bytes.len() as u64,
            crc32: crc_hex(&bytes),
        });
        self.index.rows += block.rows() as u64;
        self.index.store(&self.dir)?;
        sync_dir(&self.dir)
    }
}
