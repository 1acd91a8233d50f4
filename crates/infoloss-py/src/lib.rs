//! Python bindings of [`infoloss`]: the private extension module `infoloss._infoloss`.
//!
//! The public Python API lives in `python/infoloss/__init__.py`, which gives every function PyTorch's (or
//! SciPy's) name, argument order, defaults, warnings and docstrings, converts arguments with NumPy, and calls the
//! functions here. This layer borrows the NumPy arrays without copying (any strides), releases the GIL while the
//! core computes, maps core errors to `ValueError` / `IndexError` / `MemoryError`, dtype problems to `TypeError`,
//! and turns a Rust panic (a bug) into `RuntimeError` instead of letting it reach the interpreter.
//!
//! The crate has no Rust tests: it is tested from Python (`tests/`), so `cargo test --workspace` never needs to
//! link libpython.

use pyo3::prelude::*;

mod boundary;
mod cache;
mod catalog;
mod distill;
mod in_place;
mod info;
mod linear;
mod losses;
mod rows;
mod threads;
mod vocab_parallel;

/// Panics inside the guarded computation: the tests check that this raises `RuntimeError` (and does not abort).
#[pyfunction]
fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    boundary::compute(py, "_panic_for_tests", || -> infoloss::Result<()> {
        panic!("deliberate panic for the tests")
    })
}

/// The extension module.
#[pymodule]
fn _infoloss(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(losses::cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(losses::cross_entropy_probs, m)?)?;
    m.add_function(wrap_pyfunction!(losses::nll_loss, m)?)?;
    m.add_function(wrap_pyfunction!(losses::kl_div, m)?)?;
    m.add_function(wrap_pyfunction!(losses::binary_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(losses::binary_cross_entropy_with_logits, m)?)?;
    m.add_function(wrap_pyfunction!(distill::distill, m)?)?;
    m.add_function(wrap_pyfunction!(distill::distill_topk, m)?)?;
    m.add_function(wrap_pyfunction!(in_place::cross_entropy_in_place, m)?)?;
    m.add_function(wrap_pyfunction!(in_place::elementwise_in_place, m)?)?;
    m.add_function(wrap_pyfunction!(in_place::distill_in_place, m)?)?;
    m.add_function(wrap_pyfunction!(in_place::distill_topk_in_place, m)?)?;
    m.add_function(wrap_pyfunction!(distill::uda_consistency, m)?)?;
    m.add_function(wrap_pyfunction!(distill::uda_consistency_backward, m)?)?;
    m.add_function(wrap_pyfunction!(linear::cross_entropy_extras, m)?)?;
    m.add_function(wrap_pyfunction!(linear::linear_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(linear::linear_distill, m)?)?;
    m.add_function(wrap_pyfunction!(linear::linear_distill_topk, m)?)?;
    m.add_function(wrap_pyfunction!(rows::log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(rows::softmax, m)?)?;
    m.add_function(wrap_pyfunction!(rows::logsumexp, m)?)?;
    m.add_function(wrap_pyfunction!(rows::log_softmax_backward, m)?)?;
    m.add_function(wrap_pyfunction!(rows::softmax_backward, m)?)?;
    m.add_function(wrap_pyfunction!(rows::logsumexp_backward, m)?)?;
    m.add_function(wrap_pyfunction!(info::entr, m)?)?;
    m.add_function(wrap_pyfunction!(info::rel_entr, m)?)?;
    m.add_function(wrap_pyfunction!(info::entropy, m)?)?;
    m.add_function(wrap_pyfunction!(info::shannon_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(info::jensenshannon, m)?)?;
    m.add_function(wrap_pyfunction!(info::self_information, m)?)?;
    m.add_function(wrap_pyfunction!(threads::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads::get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads::_set_default_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads::_hold_pool_lock_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(catalog::_catalog, m)?)?;
    m.add_function(wrap_pyfunction!(vocab_parallel::vocab_parallel_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(vocab_parallel::vocab_parallel_distill, m)?)?;
    m.add_function(wrap_pyfunction!(cache::cache_writer_create, m)?)?;
    m.add_function(wrap_pyfunction!(cache::cache_writer_resume, m)?)?;
    m.add_function(wrap_pyfunction!(cache::cache_reader_open, m)?)?;
    m.add_function(wrap_pyfunction!(cache::cache_select_topk, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
