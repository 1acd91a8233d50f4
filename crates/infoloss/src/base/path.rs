//! The fast / reference switch.
//!
//! Every function takes its SIMD fast path where one applies, unless the calling thread is inside
//! [`with_reference_path`]: then it takes the straightforward reference implementation, the oracle the fast
//! kernels are tested against (`tests/oracle/`, one helper and a file per family, compares the two over sizes crossing
//! the lane and chunk boundaries, magnitudes from 1e-30 to 1e30 and 1 to 3 threads). One thread-local flag
//! serves every loss: tests and benchmarks switch all fast paths at once.

use std::cell::Cell;
use std::thread::LocalKey;

thread_local! {
    // On by default; `with_reference_path` switches it off on the calling thread.
    static FAST: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with the thread-local switch `flag` set to `on`, restoring it afterwards (also on unwind).
pub(crate) fn with_switch<R>(flag: &'static LocalKey<Cell<bool>>, on: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(&'static LocalKey<Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(flag, flag.with(|c| c.replace(on)));
    f()
}

/// Whether the fast paths are on for the calling thread.
#[inline]
pub(crate) fn fast_path() -> bool {
    FAST.with(Cell::get)
}

/// Runs `f` with **every** SIMD fast path of the crate switched off on the current thread, so every call
/// inside `f` on this thread takes the straightforward reference implementation the fast kernels are
/// tested against. Calls made on other threads (a rayon pool's workers run the fast paths' row tasks,
/// never the switch test) are not affected. Meant for tests and benchmarks.
///
/// ```
/// use infoloss::{CrossEntropyOptions, cross_entropy, softmax, with_reference_path, ndarray::array};
/// let x = array![[1.0f32, 2.0, 3.0]];
/// let (ce, sm) = with_reference_path(|| {
///     (cross_entropy(x.view(), array![2i64].view(), &CrossEntropyOptions::default()), softmax(x.view(), 1))
/// });
/// assert!((ce.unwrap().scalar().unwrap() - 0.407_606).abs() < 1e-6);
/// assert!((sm.unwrap()[[0, 2]] - 0.665_240_9).abs() < 1e-6);
/// ```
pub fn with_reference_path<R>(f: impl FnOnce() -> R) -> R {
    with_switch(&FAST, false, f)
}

/// Runs `f` with every SIMD fast path switched on on the current thread (the default; undoes
/// [`with_reference_path`] inside it).
///
/// ```
/// use infoloss::{softmax, with_fast_path, with_reference_path, ndarray::array};
/// let x = array![0.0f32, 3.0f32.ln()];
/// let s = with_reference_path(|| with_fast_path(|| softmax(x.view(), 0))).unwrap();
/// assert!((s[1] - 0.75).abs() < 1e-7);
/// ```
pub fn with_fast_path<R>(f: impl FnOnce() -> R) -> R {
    with_switch(&FAST, true, f)
}

/// The per-family switches of earlier releases, kept for one release: each now switches every fast path.
macro_rules! deprecated_switches {
    ($what:literal) => {
        /// Deprecated: switches **every** fast path off, as [`crate::with_reference_path`] does.
        #[deprecated(
            since = "0.2.0",
            note = "one switch serves every loss now: use infoloss::with_reference_path"
        )]
        pub fn with_reference_path<R>(f: impl FnOnce() -> R) -> R {
            crate::base::path::with_reference_path(f)
        }

        /// Deprecated: switches **every** fast path on, as [`crate::with_fast_path`] does.
        #[deprecated(
            since = "0.2.0",
            note = "one switch serves every loss now: use infoloss::with_fast_path"
        )]
        pub fn with_fast_path<R>(f: impl FnOnce() -> R) -> R {
            crate::base::path::with_fast_path(f)
        }
    };
}
pub(crate) use deprecated_switches;
