//! `kl_div`.
// STUB: contract only; bodies are being written.
use ndarray::{ArrayD, ArrayView, Dimension};

use crate::{Element, GradOutput, Loss, Reduction, Result};

/// Options of [`kl_div`]; `Default` equals PyTorch's defaults (`reduction='mean'`, `log_target=False`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KlDivOptions {
    /// Reduction; `BatchMean` is the mathematically correct KL.
    pub reduction: Reduction,
    /// Whether `target` holds log-probabilities.
    pub log_target: bool,
}

/// KL(target ‖ exp(input)), elementwise terms then reduced.
pub fn kl_div<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &KlDivOptions,
) -> Result<Loss<T>> {
    let _ = (input, target, opts);
    todo!()
}

/// Gradient of [`kl_div`] with respect to `input`.
pub fn kl_div_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &KlDivOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Gradient of [`kl_div`] with respect to `target` (shape of `target`).
pub fn kl_div_backward_target<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &KlDivOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Loss and input gradient in one call.
pub fn kl_div_with_grad<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &KlDivOptions,
) -> Result<(Loss<T>, ArrayD<T>)> {
    let _ = (input, target, opts);
    todo!()
}
