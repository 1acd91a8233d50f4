//! `binary_cross_entropy_with_logits`: PyTorch's `F.binary_cross_entropy_with_logits` /
//! `nn.BCEWithLogitsLoss`, forward and backward.
//!
//! # Formula
//!
//! For a logit `x` (any real number), a target `t`, an optional `pos_weight` `p` and an optional
//! `weight` `w`, each element is computed with PyTorch's numerically stable form
//! (`aten/src/ATen/native/Loss.cpp`):
//!
//! ```text
//! logσ(x) = min(x, 0) − log1p(exp(−|x|))
//! lw      = (p − 1)·t + 1                          (only when pos_weight is given)
//! ℓ       = ((1 − t)·x − lw·logσ(x))·w             ≡ −w·[p·t·logσ(x) + (1 − t)·logσ(−x)]
//! ```
//!
//! then reduced: `None`, `Mean` (÷ number of elements; NaN when empty) or `Sum`. Nothing is clamped
//! (x = −1e4, t = 1 gives 10000) and `t` is not range-checked (t = 2 is accepted; the loss may then be
//! negative), as in PyTorch. `x = −∞` with `t = 1` gives `0·(−∞) = NaN`, also as in PyTorch.
//!
//! # Shapes
//!
//! `target` must have exactly the input's shape (PyTorch: "Target size … must be the same as input
//! size …"). `weight` and `pos_weight` broadcast *into* the input shape, so a `(C,)` `pos_weight` acts
//! on the **last** dimension (for `(N, C, H, W)` use a `(C, 1, 1)` array — pytorch/pytorch#27936). An
//! array that would enlarge the shape is an error naming both shapes.
//!
//! # Gradients
//!
//! With `g` the upstream gradient of an element and `σ(x) = 1 / (1 + exp(−x))` (÷ numel last, for
//! `Mean`), as PyTorch's `FunctionsManual.cpp`:
//!
//! | | ∂/∂x | ∂/∂t |
//! |---|---|---|
//! | with `pos_weight` | `[(p·t + 1 − t)·σ(x) − p·t]·g·w` | `(logσ(−x) − p·logσ(x))·g·w` |
//! | without | `(σ(x) − t)·g·w` | `−x·g·w` |
//!
//! # Fast path
//!
//! For `f32`, `f16` and `bf16` (the loss, `_with_grad`, `_backward` and `_backward_target`) run a fused SIMD
//! kernel (`kernels/elementwise.rs`): every input is read once and every output written once, in parallel
//! over fixed blocks of elements, with reductions combined in a fixed order, so the results are the same for
//! any number of threads. They agree with the straightforward reference implementation kept below (`f64`
//! always uses it) to a few `f32` roundings; [`with_reference_path`] switches the fast path off on the
//! current thread for tests and benchmarks.

use ndarray::{ArrayView, ArrayViewD, Dimension};

use crate::base::outputs::{Outputs, Want};
use crate::base::shape::broadcast_into;
use crate::kernels::elementwise::{BceLogitsOp, Plan, Scaling, binary_setup};
use crate::rows::elementwise_rows::ElementRows;
use crate::{Element, GradOutput, Loss, Real, Result};

crate::base::path::deprecated_switches!("bce_logits");

const OP: &str = "binary_cross_entropy_with_logits";

pub use crate::options::BceWithLogitsOptions;

super::elementwise_api! {
    op = OP, setup = setup, options = BceWithLogitsOptions<'_, T>;
    /// The loss.
    ///
    /// `((1 − t)·x − lw·logσ(x))·w` with `lw = (p − 1)·t + 1` when `pos_weight` is given, reduced (see the
    /// [module documentation](self)).
    ///
    /// PyTorch: `torch.nn.functional.binary_cross_entropy_with_logits(input, target, weight=...,
    /// pos_weight=..., reduction=...)`.
    ///
    /// # Errors
    ///
    /// `target` not of the input's shape; `weight` or `pos_weight` not broadcastable into it;
    /// `Reduction::BatchMean`.
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_with_logits, BceWithLogitsOptions};
    /// use ndarray::array;
    /// let x = array![[5.0f64, 1.0, 8.0], [2.0, 4.0, 6.0]];
    /// let t = array![[0.0f64, 1.0, 0.0], [0.0, 0.0, 1.0]];
    /// let l = binary_cross_entropy_with_logits(x.view(), t.view(), &BceWithLogitsOptions::default()).unwrap();
    /// assert!((l.scalar().unwrap() - 3.244644344413125).abs() < 1e-15);
    /// ```
    fn binary_cross_entropy_with_logits;
    /// Gradient with respect to `input`.
    ///
    /// `[(p·t + 1 − t)·σ(x) − p·t]·g·w` with `pos_weight`, `(σ(x) − t)·g·w` without (÷ numel for `Mean`),
    /// with `g` = `grad_output` (an array of the input's shape, or one value for every element, for
    /// `Reduction::None`; a scalar otherwise).
    ///
    /// PyTorch: `input.grad` after `F.binary_cross_entropy_with_logits(...).backward(grad_output)`
    /// (`binary_cross_entropy_with_logits_backward`).
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy_with_logits`], and a `grad_output` of the wrong shape.
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_with_logits_backward, BceWithLogitsOptions, GradOutput, Reduction};
    /// use ndarray::array;
    /// let z = array![-200.0f64, -3.0, 0.0, 2.5, 200.0];
    /// let y = array![1.0f64, 0.3, 1.0, 0.0, 0.0];
    /// let pw = array![3.0f64].into_dyn();
    /// let opts = BceWithLogitsOptions { pos_weight: Some(pw.view()), reduction: Reduction::Sum, ..Default::default() };
    /// let g = binary_cross_entropy_with_logits_backward(z.view(), y.view(), &opts, &GradOutput::one()).unwrap();
    /// assert_eq!(g[0], -3.0);
    /// assert!((g[1] + 0.8241186029158931).abs() < 1e-15);
    /// assert_eq!(g[2], -1.5);
    /// ```
    fn binary_cross_entropy_with_logits_backward;
    /// Gradient with respect to `target`.
    ///
    /// `(logσ(−x) − p·logσ(x))·g·w` with `pos_weight`, `−x·g·w` without (÷ numel for `Mean`).
    ///
    /// PyTorch: `target.grad` after `F.binary_cross_entropy_with_logits(input, target.requires_grad_(), ...)
    /// .backward(grad_output)` (`binary_cross_entropy_with_logits_target_backward`).
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy_with_logits_backward`].
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_with_logits_backward_target, BceWithLogitsOptions, GradOutput, Reduction};
    /// use ndarray::array;
    /// let z = array![-3.0f64, 2.5];
    /// let y = array![0.3f64, 0.0];
    /// let opts = BceWithLogitsOptions { reduction: Reduction::Sum, ..Default::default() };
    /// let g = binary_cross_entropy_with_logits_backward_target(z.view(), y.view(), &opts, &GradOutput::one()).unwrap();
    /// assert_eq!(g, array![3.0, -2.5].into_dyn());
    /// ```
    fn binary_cross_entropy_with_logits_backward_target;
    /// Loss and input gradient in one call.
    ///
    /// The same as [`binary_cross_entropy_with_logits`] and [`binary_cross_entropy_with_logits_backward`]
    /// with an upstream gradient of 1 (all ones for `Reduction::None`), computed in one pass.
    ///
    /// PyTorch: `loss = F.binary_cross_entropy_with_logits(x, t, ...); loss.backward(torch.ones_like(loss)); x.grad`.
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy_with_logits`].
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_with_logits_with_grad, BceWithLogitsOptions};
    /// use ndarray::array;
    /// let x = array![0.0f64, 0.0];
    /// let t = array![1.0f64, 0.0];
    /// let (loss, grad) = binary_cross_entropy_with_logits_with_grad(x.view(), t.view(),
    ///     &BceWithLogitsOptions::default()).unwrap();
    /// assert!((loss.scalar().unwrap() - std::f64::consts::LN_2).abs() < 1e-16);
    /// assert_eq!(grad, array![-0.25, 0.25].into_dyn()); // (σ(0) − t) / 2
    /// ```
    fn binary_cross_entropy_with_logits_with_grad;
    /// [`binary_cross_entropy_with_logits_with_grad`] with the gradient written into `input` (the
    /// training path: the logits are dead after the loss); returns the loss.
    ///
    /// Same formula, gradient, reductions and errors as [`binary_cross_entropy_with_logits_with_grad`]; on
    /// an error `input` is left untouched. For `f32`, `f16` and `bf16` inputs in standard layout the
    /// fused kernel reads each tile of `input` into L1 and writes its gradient over it, so no gradient
    /// array is allocated; other inputs are computed by [`binary_cross_entropy_with_logits_with_grad`]
    /// and copied back.
    ///
    /// PyTorch: `loss = F.binary_cross_entropy_with_logits(input, target, ...); loss.backward();
    /// input.copy_(input.grad)` (with the allocation avoided).
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy_with_logits`].
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_with_logits_with_grad_in_place, BceWithLogitsOptions};
    /// use ndarray::array;
    /// let mut x = array![0.0f32, 0.0];
    /// let t = array![1.0f32, 0.0];
    /// let opts = BceWithLogitsOptions::default();
    /// let loss = binary_cross_entropy_with_logits_with_grad_in_place(x.view_mut(), t.view(), &opts).unwrap();
    /// assert!((loss.scalar().unwrap() - std::f32::consts::LN_2).abs() < 1e-7);
    /// assert_eq!(x, array![-0.25f32, 0.25]); // (σ(0) − t) / 2
    /// ```
    fn binary_cross_entropy_with_logits_with_grad_in_place;
}

// ----------------------------------------------------------------------------------------------
// Row functions: contiguous slices in the compute type, PyTorch's order of operations.
// ----------------------------------------------------------------------------------------------

/// `log_sigmoid(x) = min(0, x) − log1p(exp(−|x|))` (PyTorch's CPU kernel).
#[inline]
fn log_sigmoid<A: Real>(x: A) -> A {
    let m = if x < A::zero() { x } else { A::zero() };
    m - (-x.abs()).exp().ln_1p()
}

/// `σ(x) = 1 / (1 + exp(−x))`.
#[inline]
fn sigmoid<A: Real>(x: A) -> A {
    A::one() / (A::one() + (-x).exp())
}

/// Unweighted terms: `(1 − t)·x − logσ(x)·lw`, `lw = (p − 1)·t + 1` (or 1 without `pos_weight`).
fn row_loss<A: Real>(x: &[A], t: &[A], pw: Option<&[A]>, out: &mut [A]) {
    match pw {
        Some(pw) => {
            for (((o, &x), &t), &p) in out.iter_mut().zip(x).zip(t).zip(pw) {
                let lw = (p - A::one()) * t + A::one();
                *o = (A::one() - t) * x - log_sigmoid(x) * lw;
            }
        }
        None => {
            for ((o, &x), &t) in out.iter_mut().zip(x).zip(t) {
                *o = (A::one() - t) * x - log_sigmoid(x);
            }
        }
    }
}

/// Unweighted ∂/∂x: `((p·t + 1 − t)·σ(x) − p·t)·g`, or `(σ(x) − t)·g`.
fn row_grad_input<A: Real>(x: &[A], t: &[A], pw: Option<&[A]>, g: &[A], out: &mut [A]) {
    match pw {
        Some(pw) => {
            for ((((o, &x), &t), &p), &g) in out.iter_mut().zip(x).zip(t).zip(pw).zip(g) {
                let pt = p * t;
                *o = ((pt + A::one() - t) * sigmoid(x) - pt) * g;
            }
        }
        None => {
            for (((o, &x), &t), &g) in out.iter_mut().zip(x).zip(t).zip(g) {
                *o = (sigmoid(x) - t) * g;
            }
        }
    }
}

/// Unweighted ∂/∂t: `(logσ(−x) − logσ(x)·p)·g`, or `(−x)·g`.
fn row_grad_target<A: Real>(x: &[A], pw: Option<&[A]>, g: &[A], out: &mut [A]) {
    match pw {
        Some(pw) => {
            for (((o, &x), &p), &g) in out.iter_mut().zip(x).zip(pw).zip(g) {
                *o = (log_sigmoid(-x) - log_sigmoid(x) * p) * g;
            }
        }
        None => {
            for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
                *o = (-x) * g;
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Driver.
// ----------------------------------------------------------------------------------------------

/// The formula (`pos_weight`, where given, is the chunk `p`).
struct LogitsRows;

impl<A: Real> ElementRows<A> for LogitsRows {
    fn loss(&self, x: &[A], t: &[A], p: Option<&[A]>, out: &mut [A]) {
        row_loss(x, t, p, out);
    }

    fn grad_input(&self, x: &[A], t: &[A], p: Option<&[A]>, g: &[A], out: &mut [A]) {
        row_grad_input(x, t, p, g, out);
    }

    fn grad_target(&self, x: &[A], _: &[A], p: Option<&[A]>, g: &[A], out: &mut [A]) {
        row_grad_target(x, p, g, out);
    }
}

/// The validated options of one call, in PyTorch's order of checks, with the `pos_weight` broadcast
/// into the input's shape; the fused kernel and the reference rows.
fn setup<'w, T: Element>(
    input: &[usize],
    target: &[usize],
    opts: &'w BceWithLogitsOptions<'_, T>,
) -> Result<(Plan<'w, T>, BceLogitsOp, LogitsRows)> {
    let mut plan = binary_setup(OP, input, target, opts.reduction, opts.weight.as_ref())?;
    if let Some(p) = &opts.pos_weight {
        plan.pos_weight = Some(broadcast_into(OP, "pos_weight", p, "input", &plan.shape)?);
    }
    let fast = BceLogitsOp { pos_weighted: plan.pos_weight.is_some(), scaling: Scaling::of(&plan) };
    Ok((plan, fast, LogitsRows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reduction;
    use ndarray::array;

    #[test]
    fn log_sigmoid_is_stable_at_extremes() {
        assert_eq!(log_sigmoid(-1e4f64), -1e4);
        assert_eq!(log_sigmoid(1e4f64), 0.0);
        assert_eq!(log_sigmoid(f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert!((log_sigmoid(0.0f32) + std::f32::consts::LN_2).abs() < 1e-7);
    }

    #[test]
    fn pos_weight_of_shape_c_acts_on_the_last_dimension() {
        // torch (float64): F.binary_cross_entropy_with_logits(torch.zeros(2,2), torch.ones(2,2),
        //     pos_weight=torch.tensor([1., 3.]), reduction='none') -> [[ln 2, 3 ln 2], [ln 2, 3 ln 2]]
        let x = ndarray::Array2::<f64>::zeros((2, 2));
        let t = ndarray::Array2::<f64>::ones((2, 2));
        let pw = array![1.0f64, 3.0].into_dyn();
        let o = BceWithLogitsOptions {
            pos_weight: Some(pw.view()),
            reduction: Reduction::None,
            ..Default::default()
        };
        let l = binary_cross_entropy_with_logits(x.view(), t.view(), &o).unwrap().into_array();
        let ln2 = std::f64::consts::LN_2;
        assert_eq!(l, array![[ln2, 3.0 * ln2], [ln2, 3.0 * ln2]].into_dyn());
    }

    #[test]
    fn enlarging_pos_weight_is_an_error() {
        let x = ndarray::Array2::<f32>::zeros((4, 3));
        let pw = ndarray::ArrayD::<f32>::ones(ndarray::IxDyn(&[2, 4, 3]));
        let o = BceWithLogitsOptions { pos_weight: Some(pw.view()), ..Default::default() };
        let e = binary_cross_entropy_with_logits(x.view(), x.view(), &o).unwrap_err().to_string();
        assert!(e.contains("pos_weight shape [2, 4, 3] and input shape [4, 3]"), "{e}");
    }
}
