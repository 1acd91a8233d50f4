//! The thread count: `set_num_threads(n)` builds a rayon pool of `n` threads that every later call runs in
//! (`ThreadPool::install`), so parallel kernels in the core use at most `n` threads. Until it is called, the
//! core runs on rayon's global pool (`RAYON_NUM_THREADS` or one thread per CPU).

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Arc<rayon::ThreadPool>>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pool set by `set_num_threads`, if any.
pub(crate) fn pool() -> Option<Arc<rayon::ThreadPool>> {
    lock().clone()
}

/// Sets the number of threads infoloss computes with (at least 1).
#[pyfunction]
pub(crate) fn set_num_threads(n: i64) -> PyResult<()> {
    if n < 1 {
        return Err(PyValueError::new_err(format!("set_num_threads: n must be at least 1, got {n}")));
    }
    let n = usize::try_from(n)
        .map_err(|_| PyValueError::new_err(format!("set_num_threads: n = {n} is too large")))?;
    if n > 4096 {
        return Err(PyValueError::new_err(format!("set_num_threads: n = {n} is too large (at most 4096)")));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("infoloss-{i}"))
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("set_num_threads: cannot start {n} threads: {e}")))?;
    *lock() = Some(Arc::new(pool));
    Ok(())
}

/// The number of threads infoloss computes with.
#[pyfunction]
pub(crate) fn get_num_threads() -> usize {
    match pool() {
        Some(p) => p.current_num_threads(),
        None => rayon::current_num_threads(),
    }
}
