//! `log_softmax`, `softmax`, `logsumexp` and their backward passes.

use pyo3::prelude::*;

use numpy::prelude::*;

use crate::boundary::{Float, array_to_py, compute, dispatch, float_arr, kind, probe};

/// Which row function.
#[derive(Clone, Copy)]
enum Op {
    LogSoftmax,
    Softmax,
    LogSumExp,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::LogSoftmax => "log_softmax",
            Op::Softmax => "softmax",
            Op::LogSumExp => "logsumexp",
        }
    }
}

fn forward_impl<T: Float>(
    py: Python<'_>,
    op: Op,
    input: &Bound<'_, PyAny>,
    dim: isize,
) -> PyResult<Py<PyAny>> {
    let name = op.name();
    let x = float_arr::<T>(input, name, "input")?;
    probe(name, &[x.shape()], 2)?;
    let xv = x.as_array();
    let out = compute(py, name, move || match op {
        Op::LogSoftmax => infoloss::log_softmax(xv, dim),
        Op::Softmax => infoloss::softmax(xv, dim),
        Op::LogSumExp => infoloss::logsumexp(xv, dim),
    })?;
    Ok(array_to_py(py, out))
}

/// `first` is the forward output for (log_)softmax and the input for logsumexp, as the core expects.
fn backward_impl<T: Float>(
    py: Python<'_>,
    op: Op,
    first: &Bound<'_, PyAny>,
    grad_output: &Bound<'_, PyAny>,
    dim: isize,
) -> PyResult<Py<PyAny>> {
    let name = op.name();
    let what = if matches!(op, Op::LogSumExp) { "input" } else { "output" };
    let y = float_arr::<T>(first, name, what)?;
    let g = float_arr::<T>(grad_output, name, "grad_output")?;
    probe(name, &[y.shape(), g.shape()], 2)?;
    let yv = y.as_array();
    let gv = g.as_array();
    let out = compute(py, name, move || match op {
        Op::LogSoftmax => infoloss::log_softmax_backward(yv, gv, dim),
        Op::Softmax => infoloss::softmax_backward(yv, gv, dim),
        Op::LogSumExp => infoloss::logsumexp_backward(yv, gv, dim),
    })?;
    Ok(array_to_py(py, out))
}

/// `log_softmax(input, dim)`.
#[pyfunction]
pub(crate) fn log_softmax(py: Python<'_>, input: &Bound<'_, PyAny>, dim: isize) -> PyResult<Py<PyAny>> {
    dispatch!(kind(input, "log_softmax", "input")?, forward_impl(py, Op::LogSoftmax, input, dim))
}

/// `softmax(input, dim)`.
#[pyfunction]
pub(crate) fn softmax(py: Python<'_>, input: &Bound<'_, PyAny>, dim: isize) -> PyResult<Py<PyAny>> {
    dispatch!(kind(input, "softmax", "input")?, forward_impl(py, Op::Softmax, input, dim))
}

/// `logsumexp(input, dim)` (the dimension is removed).
#[pyfunction]
pub(crate) fn logsumexp(py: Python<'_>, input: &Bound<'_, PyAny>, dim: isize) -> PyResult<Py<PyAny>> {
    dispatch!(kind(input, "logsumexp", "input")?, forward_impl(py, Op::LogSumExp, input, dim))
}

/// Gradient of `log_softmax` from its output.
#[pyfunction]
pub(crate) fn log_softmax_backward(
    py: Python<'_>,
    output: &Bound<'_, PyAny>,
    grad_output: &Bound<'_, PyAny>,
    dim: isize,
) -> PyResult<Py<PyAny>> {
    dispatch!(
        kind(output, "log_softmax", "output")?,
        backward_impl(py, Op::LogSoftmax, output, grad_output, dim)
    )
}

/// Gradient of `softmax` from its output.
#[pyfunction]
pub(crate) fn softmax_backward(
    py: Python<'_>,
    output: &Bound<'_, PyAny>,
    grad_output: &Bound<'_, PyAny>,
    dim: isize,
) -> PyResult<Py<PyAny>> {
    dispatch!(kind(output, "softmax", "output")?, backward_impl(py, Op::Softmax, output, grad_output, dim))
}

/// Gradient of `logsumexp` from its input.
#[pyfunction]
pub(crate) fn logsumexp_backward(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    grad_output: &Bound<'_, PyAny>,
    dim: isize,
) -> PyResult<Py<PyAny>> {
    dispatch!(kind(input, "logsumexp", "input")?, backward_impl(py, Op::LogSumExp, input, grad_output, dim))
}
