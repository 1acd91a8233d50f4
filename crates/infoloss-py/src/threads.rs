//! The thread pool every computation of the extension runs in, and the thread count.
//!
//! The extension never touches rayon's global pool: after `fork()` the child inherits the global pool's state but
//! none of its threads, so the first parallel call in the child waits forever for workers that do not exist
//! (every `DataLoader(num_workers > 0)` on Linux, every `multiprocessing` pool, every pre-fork server). Instead,
//! like torch does for its intra-op pool, the extension owns its pool and remembers the process id it was built
//! in; in a process with another id the old pool is leaked — its threads do not exist there, so it can never be
//! joined or dropped — and a new one with the same thread count is built lazily on the next call.
//!
//! The pool's state sits behind one mutex, held only for short sections that never call Python. A fork while
//! another thread holds it would leave the child's copy locked forever, so on Unix a `pthread_atfork` handler
//! takes the lock before the fork and releases it in both processes after (the child also drops its pool there,
//! so the process-id check is a second line of defence, e.g. for a fork that bypasses the handlers).
//!
//! The thread count is the default (`RAYON_NUM_THREADS`, else one thread per CPU, as rayon would choose) until
//! `set_num_threads` is called. `_set_default_num_threads` (called by `infoloss.torch` with torch's count) moves
//! the default but never overrides an explicit `set_num_threads`.

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The most threads a pool may have: far above any machine, low enough that a typo fails fast.
const MAX_THREADS: usize = 4096;

/// The pool's state.
struct State {
    /// The pool, built lazily; `None` until the first call, after a change of the thread count, and after a fork.
    pool: Option<Arc<rayon::ThreadPool>>,
    /// The process the pool was built in.
    pid: u32,
    /// The number of threads the pool has (or will have when built).
    threads: Option<usize>,
    /// Whether `set_num_threads` set `threads` (then `_set_default_num_threads` leaves it alone).
    explicit: bool,
}

static STATE: Mutex<State> = Mutex::new(State { pool: None, pid: 0, threads: None, explicit: false });

/// Locks the state, registering the fork handlers on first use. A poisoned lock is taken over: every section
/// leaves the state consistent, so a panic elsewhere cannot have half-updated it.
fn lock() -> MutexGuard<'static, State> {
    #[cfg(unix)]
    fork::register();
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The default thread count, chosen as rayon chooses its global pool's: `RAYON_NUM_THREADS` when it is a positive
/// integer, else the available parallelism.
fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .min(MAX_THREADS)
}

fn build(n: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("infoloss-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| PyRuntimeError::new_err(format!("infoloss: cannot start a pool of {n} threads: {e}")))
}

impl State {
    /// The pool of this process, built if there is none yet (first call, new thread count, or a fork).
    fn pool(&mut self) -> PyResult<Arc<rayon::ThreadPool>> {
        let pid = std::process::id();
        if self.pid != pid {
            // Built in another process (we are a forked child): its threads are not ours, so its destructor
            // (which signals them and may wait on their latches) must never run.
            if let Some(stale) = self.pool.take() {
                std::mem::forget(stale);
            }
            self.pid = pid;
        }
        if let Some(p) = &self.pool {
            return Ok(Arc::clone(p));
        }
        let n = *self.threads.get_or_insert_with(default_threads);
        let p = build(n)?;
        self.pool = Some(Arc::clone(&p));
        Ok(p)
    }

    /// Sets the thread count; the pool is rebuilt on the next call if the count changed. The old pool's threads
    /// exit once the calls running on it (which hold their own `Arc`) return.
    fn set_threads(&mut self, n: usize) {
        if self.threads != Some(n) {
            self.threads = Some(n);
            self.pool = None;
        }
    }
}

/// The pool every computation runs in, built on first use in this process.
pub(crate) fn pool() -> PyResult<Arc<rayon::ThreadPool>> {
    lock().pool()
}

/// Runs `f` on one of the pool's threads (so the core's parallel loops run in this pool) and returns its
/// result; a panic in `f` is resumed on the calling thread.
///
/// `ThreadPool::install` puts a caller that is not one of the pool's threads to sleep on a condition variable
/// and wakes it when the job is done: a few microseconds per call (a 4 × 10 `cross_entropy` from Python takes
/// about 10 µs instead of the 3.5 µs of an inline call), the price of never touching rayon's fork-unsafe global
/// pool. A spinning wait on a `'static`-transmuted job would save part of it, at the cost of `unsafe` outside the
/// kernels; not worth it next to Python's own per-call cost.
pub(crate) fn run<R: Send, F: FnOnce() -> R + Send>(pool: &rayon::ThreadPool, f: F) -> R {
    pool.install(f)
}

/// Checks a thread count given from Python.
fn checked(op: &str, n: i64) -> PyResult<usize> {
    if n < 1 {
        return Err(PyValueError::new_err(format!("{op}: n must be at least 1, got {n}")));
    }
    match usize::try_from(n) {
        Ok(n) if n <= MAX_THREADS => Ok(n),
        _ => Err(PyValueError::new_err(format!("{op}: n = {n} is too large (at most {MAX_THREADS})"))),
    }
}

/// Sets the number of threads infoloss computes with (at least 1). This wins over `_set_default_num_threads`
/// for the rest of the process and its forked children.
#[pyfunction]
pub(crate) fn set_num_threads(n: i64) -> PyResult<()> {
    let n = checked("set_num_threads", n)?;
    let mut state = lock();
    state.explicit = true;
    state.set_threads(n);
    // Built now so that a failure to start the threads is reported here, not by the next loss.
    state.pool().map(drop)
}

/// Sets the number of threads to `n` unless `set_num_threads` was called: `infoloss.torch` passes
/// `torch.get_num_threads()` before each op. A no-op (one uncontended lock) when `n` is the current count.
#[pyfunction]
pub(crate) fn _set_default_num_threads(n: i64) -> PyResult<()> {
    let n = checked("_set_default_num_threads", n)?;
    let mut state = lock();
    if !state.explicit {
        state.set_threads(n);
    }
    Ok(())
}

/// The number of threads infoloss computes with.
#[pyfunction]
pub(crate) fn get_num_threads() -> usize {
    *lock().threads.get_or_insert_with(default_threads)
}

/// Holds the pool's lock for `seconds` (at most 10) without the GIL, for the fork tests: a process that forks
/// meanwhile must give its child an unlocked state (the `pthread_atfork` handlers below).
#[pyfunction]
pub(crate) fn _hold_pool_lock_for_tests(py: Python<'_>, seconds: f64) {
    let wait =
        std::time::Duration::from_secs_f64(if seconds.is_finite() { seconds.clamp(0.0, 10.0) } else { 0.0 });
    py.detach(|| {
        let _held = lock();
        std::thread::sleep(wait);
    });
}

/// The `pthread_atfork` handlers that keep the state's mutex usable in a forked child.
#[cfg(unix)]
mod fork {
    use std::cell::RefCell;
    use std::sync::{MutexGuard, Once};

    use super::{STATE, State};

    unsafe extern "C" {
        // POSIX; in the C library every Rust program on Unix links.
        fn pthread_atfork(
            prepare: Option<unsafe extern "C" fn()>,
            parent: Option<unsafe extern "C" fn()>,
            child: Option<unsafe extern "C" fn()>,
        ) -> std::ffi::c_int;
    }

    thread_local! {
        /// The lock taken by `prepare`, held across the fork by the forking thread (the only thread of the
        /// child, which inherits this thread-local).
        static HELD: RefCell<Option<MutexGuard<'static, State>>> = const { RefCell::new(None) };
    }

    /// Registers the handlers once per process (a forked child inherits them).
    pub(super) fn register() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: the handlers are `extern "C"` functions without arguments that live for the whole
            // process, as `pthread_atfork` requires. If registration fails (ENOMEM) the process-id check in
            // `State::pool` still rebuilds the pool in a child; only the narrow fork-while-locked race remains.
            let _ = unsafe { pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        });
    }

    /// Before the fork: take the lock, so no other thread holds it at the moment of the fork.
    unsafe extern "C" fn prepare() {
        let guard = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // `try_with`/`try_borrow_mut`: a panic here would abort; if the slot is unusable the guard is dropped
        // (unlocked) and only the process-id check protects the child.
        let _ = HELD.try_with(move |h| {
            if let Ok(mut slot) = h.try_borrow_mut() {
                *slot = Some(guard);
            }
        });
    }

    /// In the parent after the fork: release it.
    unsafe extern "C" fn parent() {
        let _ = HELD.try_with(|h| h.try_borrow_mut().map(|mut slot| slot.take()));
    }

    /// In the child after the fork: leak the parent's pool (see `State::pool`), then release the lock.
    unsafe extern "C" fn child() {
        let _ = HELD.try_with(|h| {
            if let Some(mut guard) = h.try_borrow_mut().ok().and_then(|mut slot| slot.take()) {
                if let Some(stale) = guard.pool.take() {
                    std::mem::forget(stale);
                }
                guard.pid = std::process::id();
            }
        });
    }
}
