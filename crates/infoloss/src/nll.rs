//! `nll_loss`.
// STUB: contract only; bodies are being written.
use ndarray::{ArrayD, ArrayView, ArrayView1, Dimension};

use crate::{Element, GradOutput, Loss, Reduction, Result};

/// Options of [`nll_loss`]; `Default` equals PyTorch's defaults.
#[derive(Debug, Clone)]
pub struct NllOptions<'a, T> {
    /// Per-class weight `(C,)`.
    pub weight: Option<ArrayView1<'a, T>>,
    /// Target value to ignore (default −100; may lie outside `[0, C)`).
    pub ignore_index: i64,
    /// Reduction (default mean).
    pub reduction: Reduction,
}

impl<T> Default for NllOptions<'_, T> {
    fn default() -> Self {
        NllOptions { weight: None, ignore_index: -100, reduction: Reduction::Mean }
    }
}

/// Negative log-likelihood loss.
pub fn nll_loss<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &NllOptions<'_, T>,
) -> Result<Loss<T>> {
    let _ = (input, target, opts);
    todo!()
}

/// Gradient of [`nll_loss`] with respect to `input`.
pub fn nll_loss_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &NllOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Loss and input gradient (upstream gradient 1) in one call.
pub fn nll_loss_with_grad<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &NllOptions<'_, T>,
) -> Result<(Loss<T>, ArrayD<T>)> {
    let _ = (input, target, opts);
    todo!()
}
