//! `binary_cross_entropy_with_logits`.
// STUB: contract only; bodies are being written.
use ndarray::{ArrayD, ArrayView, ArrayViewD, Dimension};

use crate::{Element, GradOutput, Loss, Reduction, Result};

/// Options of [`binary_cross_entropy_with_logits`]; `Default` equals PyTorch's defaults.
#[derive(Debug, Clone)]
pub struct BceWithLogitsOptions<'a, T> {
    /// Per-element weight, broadcast into the input shape.
    pub weight: Option<ArrayViewD<'a, T>>,
    /// Weight of positive examples, broadcast into the input shape (a `(C,)` array acts on the last dimension).
    pub pos_weight: Option<ArrayViewD<'a, T>>,
    /// Reduction (default mean).
    pub reduction: Reduction,
}

impl<T> Default for BceWithLogitsOptions<'_, T> {
    fn default() -> Self {
        BceWithLogitsOptions { weight: None, pos_weight: None, reduction: Reduction::Mean }
    }
}

/// The loss.
pub fn binary_cross_entropy_with_logits<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &BceWithLogitsOptions<'_, T>,
) -> Result<Loss<T>> {
    let _ = (input, target, opts);
    todo!()
}

/// Gradient with respect to `input`.
pub fn binary_cross_entropy_with_logits_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &BceWithLogitsOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Gradient with respect to `target`.
pub fn binary_cross_entropy_with_logits_backward_target<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &BceWithLogitsOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Loss and input gradient in one call.
pub fn binary_cross_entropy_with_logits_with_grad<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &BceWithLogitsOptions<'_, T>,
) -> Result<(Loss<T>, ArrayD<T>)> {
    let _ = (input, target, opts);
    todo!()
}
