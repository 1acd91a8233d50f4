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

/// Declares the Python functions of each row function: the forward `$fwd(input, dim)` and the backward
/// `$bwd($first, grad_output, dim)`, where `$first` is what the core's backward reads (`output` or `input`).
macro_rules! row_functions {
    ($($op:ident: $fwd:ident, $bwd:ident($first:ident);)*) => {$(
        #[doc = concat!("`", stringify!($fwd), "(input, dim)`.")]
        #[pyfunction]
        pub(crate) fn $fwd(py: Python<'_>, input: &Bound<'_, PyAny>, dim: isize) -> PyResult<Py<PyAny>> {
            dispatch!(kind(input, stringify!($fwd), "input")?, forward_impl(py, Op::$op, input, dim))
        }

        #[doc = concat!("Gradient of `", stringify!($fwd), "` from its ", stringify!($first), ".")]
        #[pyfunction]
        pub(crate) fn $bwd(
            py: Python<'_>,
            $first: &Bound<'_, PyAny>,
            grad_output: &Bound<'_, PyAny>,
            dim: isize,
        ) -> PyResult<Py<PyAny>> {
            dispatch!(
                kind($first, stringify!($fwd), stringify!($first))?,
                backward_impl(py, Op::$op, $first, grad_output, dim)
            )
        }
    )*};
}

row_functions! {
    LogSoftmax: log_softmax, log_softmax_backward(output);
    Softmax: softmax, softmax_backward(output);
    LogSumExp: logsumexp, logsumexp_backward(input);
}
