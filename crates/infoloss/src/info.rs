//! Information measures with SciPy semantics.
// STUB: contract only; bodies are being written.
use ndarray::{ArrayD, ArrayView, Dimension};

use crate::{Element, Result};

/// Options of [`entropy`] and [`shannon_cross_entropy`]: `scipy.stats.entropy(pk, qk, base, axis)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyOptions {
    /// Logarithm base; `None` = natural log (nats).
    pub base: Option<f64>,
    /// Axis along which the distributions lie (default 0, as SciPy).
    pub axis: isize,
}

impl Default for EntropyOptions {
    fn default() -> Self {
        EntropyOptions { base: None, axis: 0 }
    }
}

/// Options of [`jensenshannon`]: `scipy.spatial.distance.jensenshannon(p, q, base, axis, keepdims)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JensenShannonOptions {
    /// Logarithm base; `None` = natural log.
    pub base: Option<f64>,
    /// Axis along which the distributions lie (default 0).
    pub axis: isize,
    /// Keep the reduced axis with size 1.
    pub keepdims: bool,
}

/// `scipy.special.entr`: `−x·ln x`, 0 at 0, −inf for x < 0.
pub fn entr<T: Element, D: Dimension>(x: ArrayView<'_, T, D>) -> ArrayD<T> {
    let _ = x;
    todo!()
}

/// Gradient of [`entr`]: `g·(−ln x − 1)`.
pub fn entr_backward<T: Element, D: Dimension, D2: Dimension>(
    x: ArrayView<'_, T, D>,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<ArrayD<T>> {
    let _ = (x, grad_output);
    todo!()
}

/// `scipy.special.rel_entr`: `p·ln(p/q)` elementwise with SciPy's cases; p and q broadcast.
pub fn rel_entr<T: Element, D: Dimension, D2: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D2>,
) -> Result<ArrayD<T>> {
    let _ = (p, q);
    todo!()
}

/// Gradients of [`rel_entr`] wrt p and q (each in its own shape).
pub fn rel_entr_backward<T: Element, D: Dimension, D2: Dimension, D3: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D2>,
    grad_output: ArrayView<'_, T, D3>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    let _ = (p, q, grad_output);
    todo!()
}

/// `scipy.stats.entropy(pk, qk=None, base=None, axis=0)`.
pub fn entropy<T: Element, D: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: Option<ArrayView<'_, T, D>>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    let _ = (pk, qk, opts);
    todo!()
}

/// Gradients of [`entropy`] wrt pk and (if given) qk, through the normalization.
pub fn entropy_backward<T: Element, D: Dimension, D2: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: Option<ArrayView<'_, T, D>>,
    opts: &EntropyOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, Option<ArrayD<T>>)> {
    let _ = (pk, qk, opts, grad_output);
    todo!()
}

/// Cross-entropy of two distributions, `H(p, q) = −Σ p̂·log q̂` after normalizing like [`entropy`].
pub fn shannon_cross_entropy<T: Element, D: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: ArrayView<'_, T, D>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    let _ = (pk, qk, opts);
    todo!()
}

/// `scipy.spatial.distance.jensenshannon(p, q, base=None, axis=0, keepdims=False)`: the JS **distance**.
pub fn jensenshannon<T: Element, D: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D>,
    opts: &JensenShannonOptions,
) -> Result<ArrayD<T>> {
    let _ = (p, q, opts);
    todo!()
}

/// Gradients of [`jensenshannon`] wrt p and q.
pub fn jensenshannon_backward<T: Element, D: Dimension, D2: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D>,
    opts: &JensenShannonOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    let _ = (p, q, opts, grad_output);
    todo!()
}

/// Self-information `I(p) = −log_base p` elementwise.
pub fn self_information<T: Element, D: Dimension>(p: ArrayView<'_, T, D>, base: Option<f64>) -> Result<ArrayD<T>> {
    let _ = (p, base);
    todo!()
}
