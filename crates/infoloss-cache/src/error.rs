//! What can go wrong with a cache: every error names the file (and the row or tensor) it is about.

use std::path::PathBuf;

/// The cache's result type.
pub type Result<T> = std::result::Result<T, CacheError>;

/// An error of the teacher cache.
///
/// ```
/// use infoloss_cache::CacheReader;
/// let dir = tempfile::tempdir().unwrap();
/// let err = CacheReader::open(dir.path()).unwrap_err();
/// assert!(err.to_string().contains("index.json"), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An operating-system error on `path`.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`"reading"`, `"renaming"`, …).
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file that is not what the index says it is: wrong checksum, size, header, tensor shape or content.
    #[error("{path}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What failed, in words (`"checksum 0x1234abcd, the index says 0x…"`).
        what: String,
    },
    /// An argument that does not fit the cache (shapes, row ranges, options): names the argument.
    #[error("{0}")]
    Invalid(String),
    /// The core library rejected an input.
    #[error(transparent)]
    Core(#[from] infoloss::Error),
}

impl CacheError {
    /// An I/O error on `path` while doing `what`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        what: &'static str,
    ) -> impl FnOnce(std::io::Error) -> CacheError {
        let path = path.into();
        move |source| CacheError::Io { path, what, source }
    }

    /// A corrupt file.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> CacheError {
        CacheError::Corrupt { path: path.into(), what: what.into() }
    }
}
