//! `cross_entropy` with class-index targets and with probability targets.
// STUB: contract only; bodies are being written.
use ndarray::{ArrayD, ArrayView, ArrayView1, Dimension};

use crate::{Element, GradOutput, Loss, Reduction, Result};

/// Options of the cross-entropy functions; `Default` equals PyTorch's defaults.
#[derive(Debug, Clone)]
pub struct CrossEntropyOptions<'a, T> {
    /// Per-class weight `(C,)`.
    pub weight: Option<ArrayView1<'a, T>>,
    /// Target value to ignore (default −100). Probability targets accept only negative values.
    pub ignore_index: i64,
    /// Reduction (default mean).
    pub reduction: Reduction,
    /// Label smoothing ε in [0, 1] (default 0).
    pub label_smoothing: f64,
}

impl<T> Default for CrossEntropyOptions<'_, T> {
    fn default() -> Self {
        CrossEntropyOptions { weight: None, ignore_index: -100, reduction: Reduction::Mean, label_smoothing: 0.0 }
    }
}

/// Cross-entropy from logits with class-index targets.
pub fn cross_entropy<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<Loss<T>> {
    let _ = (input, target, opts);
    todo!()
}

/// Gradient of [`cross_entropy`] with respect to `input`.
pub fn cross_entropy_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Loss and input gradient in one call.
pub fn cross_entropy_with_grad<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<(Loss<T>, ArrayD<T>)> {
    let _ = (input, target, opts);
    todo!()
}

/// Cross-entropy from logits with probability targets of the input's shape.
pub fn cross_entropy_probs<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<Loss<T>> {
    let _ = (input, target, opts);
    todo!()
}

/// Gradient of [`cross_entropy_probs`] with respect to `input`.
pub fn cross_entropy_probs_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &CrossEntropyOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Gradient of [`cross_entropy_probs`] with respect to `target`.
pub fn cross_entropy_probs_backward_target<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &CrossEntropyOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    let _ = (input, target, opts, grad_output);
    todo!()
}

/// Loss and input gradient in one call.
pub fn cross_entropy_probs_with_grad<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<(Loss<T>, ArrayD<T>)> {
    let _ = (input, target, opts);
    todo!()
}
