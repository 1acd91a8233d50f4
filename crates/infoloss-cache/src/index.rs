//! The cache's index file, `index.json`: what the cache holds and which shards are complete.
//!
//! The index is the cache's commit point: a shard counts only once the index lists it, and the index is
//! replaced atomically (written to `index.json.tmp`, synced, renamed over `index.json`, directory synced).

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{CacheError, Result};

/// The `format` field of every index.
pub const FORMAT: &str = "infoloss-teacher-cache";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// The index's file name inside the cache directory.
pub const INDEX_FILE: &str = "index.json";

/// How the top-k of each row is stored (see the crate docs for the exact layouts).
///
/// ```
/// use infoloss_cache::Mode;
/// assert_eq!("packed6".parse::<Mode>().unwrap(), Mode::Packed { value_bits: 6 });
/// assert_eq!(Mode::Lossless.to_string(), "lossless");
/// assert!("packed1".parse::<Mode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// `u32` class indices and `f32` log-probabilities as selected, best first: read back bit for bit.
    Lossless,
    /// Class indices sorted ascending and Rice-coded as gaps, log-probabilities quantized to `value_bits`
    /// bits on a per-row range and renormalized on reading to the exactly stored top-k mass.
    Packed {
        /// Bits per log-probability, 2 to 16.
        value_bits: u8,
    },
}

impl Mode {
    /// Checks the mode's parameters.
    pub fn check(self) -> Result<Mode> {
        match self {
            Mode::Packed { value_bits } if !(2..=16).contains(&value_bits) => {
                Err(CacheError::Invalid(format!("mode: packed value bits must be 2 to 16, got {value_bits}")))
            }
            m => Ok(m),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Lossless => f.write_str("lossless"),
            Mode::Packed { value_bits } => write!(f, "packed{value_bits}"),
        }
    }
}

impl FromStr for Mode {
    type Err = CacheError;
    fn from_str(s: &str) -> Result<Mode> {
        let bad =
            || CacheError::Invalid(format!("mode: expected `lossless` or `packedB` (B = 2..16), got `{s}`"));
        match s {
            "lossless" => Ok(Mode::Lossless),
            _ => {
                let bits = s.strip_prefix("packed").ok_or_else(bad)?.parse::<u8>().map_err(|_| bad())?;
                Mode::Packed { value_bits: bits }.check().map_err(|_| bad())
            }
        }
    }
}

/// One complete shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Its file name in the cache directory (`shard-000000.safetensors`).
    pub file: String,
    /// Its number of rows.
    pub rows: usize,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the whole file, as 8 lowercase hex digits.
    pub crc32: String,
}

/// The contents of `index.json`.
///
/// ```
/// use infoloss_cache::{Index, Mode};
/// let ix = Index::new(128_256, 128, 1.0, Mode::Packed { value_bits: 6 }, 4096, "teacher.npy".into()).unwrap();
/// assert_eq!(ix.rows, 0);
/// assert_eq!(ix.shard_file(3), "shard-000003.safetensors");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The teacher's vocabulary size `V`: every stored class index is below it.
    pub vocab_size: usize,
    /// Entries kept per row.
    pub k: usize,
    /// The temperature the log-probabilities were taken at: `log_softmax(logits / temperature)`.
    pub temperature: f64,
    /// How rows are stored.
    pub mode: Mode,
    /// Rows per shard (the last shard may hold fewer).
    pub rows_per_shard: usize,
    /// Where the rows came from, in words (file, tensor, shape): `--resume` checks it is the same.
    pub source: String,
    /// Rows in the complete shards (the rows a reader sees).
    pub rows: u64,
    /// Whether the writer finished (no more rows will come).
    pub complete: bool,
    /// The complete shards, in row order.
    pub shards: Vec<ShardEntry>,
}

impl Index {
    /// A new, empty index; checks the parameters.
    pub fn new(
        vocab_size: usize,
        k: usize,
        temperature: f64,
        mode: Mode,
        rows_per_shard: usize,
        source: String,
    ) -> Result<Index> {
        let ix = Index {
            format: FORMAT.into(),
            version: VERSION,
            vocab_size,
            k,
            temperature,
            mode,
            rows_per_shard,
            source,
            rows: 0,
            complete: false,
            shards: Vec::new(),
        };
        ix.check_params().map_err(CacheError::Invalid)?;
        Ok(ix)
    }

    /// The file name of shard `i`.
    pub fn shard_file(&self, i: usize) -> String {
        format!("shard-{i:06}.safetensors")
    }

    /// The first row of shard `i`.
    pub fn shard_start(&self, i: usize) -> u64 {
        (i * self.rows_per_shard) as u64
    }

    fn check_params(&self) -> std::result::Result<(), String> {
        if self.vocab_size == 0 || self.vocab_size > u32::MAX as usize {
            return Err(format!("vocab_size must be 1 to 2^32 − 1, got {}", self.vocab_size));
        }
        if self.k == 0 || self.k > self.vocab_size {
            return Err(format!("k must be 1 to vocab_size = {}, got {}", self.vocab_size, self.k));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("temperature must be finite and > 0, got {}", self.temperature));
        }
        if self.rows_per_shard == 0 {
            return Err("rows_per_shard must be at least 1, got 0".into());
        }
        self.mode.check().map(|_| ()).map_err(|e| e.to_string())
    }

    /// Checks that the index is one this crate wrote: format, version, parameters, and shards consistent with
    /// `rows` and `rows_per_shard`.
    fn check(&self) -> std::result::Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format is `{}`, expected `{FORMAT}`", self.format));
        }
        if self.version != VERSION {
            return Err(format!("format version {} (this build reads version {VERSION})", self.version));
        }
        self.check_params()?;
        let mut total = 0u64;
        let last = self.shards.len().saturating_sub(1);
        for (i, s) in self.shards.iter().enumerate() {
            if s.file != self.shard_file(i) {
                return Err(format!("shard {i} is named `{}`, expected `{}`", s.file, self.shard_file(i)));
            }
            if s.rows == 0 || s.rows > self.rows_per_shard || (i < last && s.rows != self.rows_per_shard) {
                return Err(format!(
                    "shard {i} ({}) has {} rows; every shard but the last has rows_per_shard = {}",
                    s.file, s.rows, self.rows_per_shard
                ));
            }
            if s.crc32.len() != 8 || u32::from_str_radix(&s.crc32, 16).is_err() {
                return Err(format!("shard {i} ({}): crc32 `{}` is not 8 hex digits", s.file, s.crc32));
            }
            total += s.rows as u64;
        }
        if total != self.rows {
            return Err(format!("rows = {} but the shards hold {total}", self.rows));
        }
        Ok(())
    }

    /// Reads and checks `dir/index.json`.
    pub fn load(dir: &Path) -> Result<Index> {
        let path = dir.join(INDEX_FILE);
        let text = fs::read_to_string(&path).map_err(CacheError::io(&path, "reading the cache index"))?;
        let ix: Index = serde_json::from_str(&text)
            .map_err(|e| CacheError::corrupt(&path, format!("not a cache index: {e}")))?;
        ix.check().map_err(|what| CacheError::corrupt(&path, what))?;
        Ok(ix)
    }

    /// Replaces `dir/index.json` atomically with this index.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("an index serializes");
        write_atomically(dir, INDEX_FILE, text.as_bytes())
    }
}

/// Writes `bytes` to `dir/name` so that a reader (or a crash) sees either the old file or the whole new one:
/// a temporary `name.tmp` is written and synced, renamed over `name`, and the directory synced.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(CacheError::io(&tmp, "creating"))?;
        f.write_all(bytes).map_err(CacheError::io(&tmp, "writing"))?;
        f.sync_all().map_err(CacheError::io(&tmp, "syncing"))?;
    }
    fs::rename(&tmp, &dst).map_err(CacheError::io(&dst, "renaming the temporary file to"))?;
    sync_dir(dir)
}

/// Syncs a directory, so that a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(CacheError::io(dir, "syncing the directory"))
}
