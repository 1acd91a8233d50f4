//! `logsumexp`, `log_softmax` and `softmax` along one dimension, with their backward.
// STUB: contract only; bodies are being written.
use ndarray::{ArrayD, ArrayView, Dimension};

use crate::{Element, Result};

/// logsumexp along `dim` (keepdim = false).
pub fn logsumexp<T: Element, D: Dimension>(input: ArrayView<'_, T, D>, dim: isize) -> Result<ArrayD<T>> {
    let _ = (input, dim);
    todo!()
}

/// Backward of logsumexp: `g · softmax(x)` with `g` broadcast along `dim`.
pub fn logsumexp_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    grad_output: ArrayView<'_, T, D2>,
    dim: isize,
) -> Result<ArrayD<T>> {
    let _ = (input, grad_output, dim);
    todo!()
}

/// log_softmax along `dim`.
pub fn log_softmax<T: Element, D: Dimension>(input: ArrayView<'_, T, D>, dim: isize) -> Result<ArrayD<T>> {
    let _ = (input, dim);
    todo!()
}

/// Backward of log_softmax from its output `y`: `g − exp(y)·Σ_dim g`.
pub fn log_softmax_backward<T: Element, D: Dimension, D2: Dimension>(
    output: ArrayView<'_, T, D>,
    grad_output: ArrayView<'_, T, D2>,
    dim: isize,
) -> Result<ArrayD<T>> {
    let _ = (output, grad_output, dim);
    todo!()
}

/// softmax along `dim`.
pub fn softmax<T: Element, D: Dimension>(input: ArrayView<'_, T, D>, dim: isize) -> Result<ArrayD<T>> {
    let _ = (input, dim);
    todo!()
}

/// Backward of softmax from its output `s`: `s·(g − Σ_dim g·s)`.
pub fn softmax_backward<T: Element, D: Dimension, D2: Dimension>(
    output: ArrayView<'_, T, D>,
    grad_output: ArrayView<'_, T, D2>,
    dim: isize,
) -> Result<ArrayD<T>> {
    let _ = (output, grad_output, dim);
    todo!()
}
