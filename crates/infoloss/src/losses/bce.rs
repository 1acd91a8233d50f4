//! `binary_cross_entropy`: PyTorch's `F.binary_cross_entropy` / `nn.BCELoss`, forward and backward.
//!
//! # Formula
//!
//! For an input probability `x ∈ [0, 1]`, a target `t ∈ [0, 1]` (soft labels allowed) and an optional
//! weight `w` (broadcast into the input shape), each element is, exactly as PyTorch's CPU kernel
//! (`aten/src/ATen/native/Loss.cpp`):
//!
//! ```text
//! ℓ = ((t − 1)·max(log1p(−x), −100) − t·max(ln x, −100))·w
//! ```
//!
//! then reduced: `None`, `Mean` (÷ number of elements; NaN when empty) or `Sum`. Each logarithm is
//! clamped at −100, so `x = 0, t = 1` gives 100 rather than ∞. `log1p(−x)` is used for the `(1 − x)`
//! term, so `x = 1e-8, t = 0` gives `9.99…e-9` exactly (older PyTorch and CUDA use `ln(1 − x)`).
//!
//! # Checks
//!
//! * `target` must have exactly the shape of `input` (PyTorch: "Using a target size … that is
//!   different to the input size … is deprecated"); the error names both shapes.
//! * `weight` broadcasts into the input shape and may not enlarge it.
//! * Every input and target element must lie in `[0, 1]` — NaN is rejected too, as PyTorch's
//!   `(v >= 0) && (v <= 1)` check does. The error names the argument, the multi-index and the value
//!   of the first offending element in row-major order (at one position the input is checked before
//!   the target, as in PyTorch's kernel). The backward functions perform the same checks.
//!
//! # Gradients
//!
//! With `g` the upstream gradient of an element (for `Mean` the division by the element count comes
//! last, as in PyTorch):
//!
//! * ∂/∂x = `g·(x − t) / max(x·(1 − x), ε)·w`, with ε = [`Real::bce_eps`] — PyTorch's **float**
//!   `1e-12f` even in double precision, so `x = 0, t = 1` gives −1000000003995.8029, not −1e12. The
//!   forward's −100 clamp is not followed: gradients near 0 and 1 are huge (pytorch/pytorch#171327).
//!   PyTorch rounds ε to the element type (`scalar_t(EPSILON)`), and so does infoloss: in `f16` it
//!   underflows to 0, so x ∈ {0, 1} gives ±∞ there, and NaN where also x = t (`bf16` keeps ε ≈ 1e-12).
//! * ∂/∂t = `−logit(x)·g·w` = `−ln(x / (1 − x))·g·w`, **unclamped** (±∞ at x ∈ {0, 1}), computed as
//!   PyTorch's `logit` does.
//!
//! # Fast path
//!
//! For `f32`, `f16` and `bf16` (the loss, `_with_grad`, `_backward` and `_backward_target`) run a fused SIMD
//! kernel (`kernels/elementwise.rs`): every input is read once and every output written once, in parallel
//! over fixed blocks of elements, with reductions combined in a fixed order, so the results are the same for
//! any number of threads (inputs outside `[0, 1]` are detected in the same pass; the reference path then
//! reports the first one, so the error is the same). They agree with the straightforward reference
//! implementation kept below (`f64` always uses it) to a few `f32` roundings; [`with_reference_path`]
//! switches the fast path off on the current thread for tests and benchmarks.

use ndarray::{ArrayView, ArrayViewD, Dimension};

use crate::base::outputs::{Outputs, Want};
use crate::base::shape::unravel;
use crate::kernels::elementwise::{BceOp, Plan, Scaling, binary_setup};
use crate::rows::elementwise_rows::ElementRows;
use crate::{Element, Error, GradOutput, Loss, Real, Result};

crate::base::path::deprecated_switches!("bce");

const OP: &str = "binary_cross_entropy";

pub use crate::options::BceOptions;

super::elementwise_api! {
    op = OP, setup = setup, options = BceOptions<'_, T>;
    /// The loss.
    ///
    /// `((t − 1)·max(log1p(−x), −100) − t·max(ln x, −100))·w`, reduced (see the
    /// [module documentation](self)).
    ///
    /// PyTorch: `torch.nn.functional.binary_cross_entropy(input, target, weight=..., reduction=...)`.
    ///
    /// # Errors
    ///
    /// `target` not of the input's shape; `weight` not broadcastable into it; an input or target element
    /// outside `[0, 1]` or NaN (index and value named); `Reduction::BatchMean`.
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy, BceOptions};
    /// use ndarray::array;
    /// let x = array![[0.5f64, 1.0, 0.8], [0.2, 0.4, 0.6]];
    /// let t = array![[0.0f64, 1.0, 0.0], [0.0, 0.0, 1.0]];
    /// let w = array![[0.1f64, 0.9, 0.1], [0.1, 0.1, 0.9]].into_dyn();
    /// let opts = BceOptions { weight: Some(w.view()), ..Default::default() };
    /// let l = binary_cross_entropy(x.view(), t.view(), &opts).unwrap().scalar().unwrap();
    /// assert!((l - 0.12723308136613606).abs() < 1e-15);
    /// ```
    fn binary_cross_entropy;
    /// Gradient with respect to `input`.
    ///
    /// `g·(x − t) / max(x·(1 − x), ε)·w` (÷ numel for `Mean`), ε = [`Real::bce_eps`] (the float `1e-12f`,
    /// rounded to the element type as PyTorch's `scalar_t(EPSILON)`: 0 in `f16`),
    /// with `g` = `grad_output` (an array of the input's shape, or one value for every element, for
    /// `Reduction::None`; a scalar otherwise).
    ///
    /// PyTorch: `torch.ops.aten.binary_cross_entropy_backward(grad_output, input, target, weight, reduction)`,
    /// i.e. `input.grad` after `F.binary_cross_entropy(...).backward(grad_output)`.
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy`], and a `grad_output` of the wrong shape.
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_backward, BceOptions, GradOutput, Reduction};
    /// use ndarray::array;
    /// let opts = BceOptions { reduction: Reduction::Sum, ..Default::default() };
    /// let g = binary_cross_entropy_backward(array![0.0f64, 0.25].view(), array![1.0f64, 1.0].view(), &opts,
    ///     &GradOutput::one()).unwrap();
    /// assert_eq!(g[0], -1000000003995.8029); // −1 / (1e-12f32 as f64)
    /// assert_eq!(g[1], -4.0); // (0.25 − 1) / 0.1875
    /// ```
    fn binary_cross_entropy_backward;
    /// Gradient with respect to `target`.
    ///
    /// `−logit(x)·g·w` (÷ numel for `Mean`) = `(ln(1 − x) − ln x)·g·w`, unclamped: +∞ at x = 0, −∞ at
    /// x = 1, and 115.13 at x = 1e-50 even though the forward is clamped at 100. Computed as PyTorch's
    /// `logit`: `ln(x / (1 − x))`.
    ///
    /// PyTorch: `target.grad` after `F.binary_cross_entropy(input, target.requires_grad_(), ...)
    /// .backward(grad_output)` (`binary_cross_entropy_target_backward`).
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy_backward`].
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_backward_target, BceOptions, GradOutput, Reduction};
    /// use ndarray::array;
    /// let opts = BceOptions { reduction: Reduction::Sum, ..Default::default() };
    /// let g = binary_cross_entropy_backward_target(array![0.2f64, 0.0].view(), array![1.0f64, 0.5].view(),
    ///     &opts, &GradOutput::one()).unwrap();
    /// assert!((g[0] - 4.0f64.ln()).abs() < 1e-15); // −ln(0.2 / 0.8)
    /// assert_eq!(g[1], f64::INFINITY);
    /// ```
    fn binary_cross_entropy_backward_target;
    /// Loss and input gradient in one call.
    ///
    /// The same as [`binary_cross_entropy`] and [`binary_cross_entropy_backward`] with an upstream
    /// gradient of 1 (all ones for `Reduction::None`), computed in one pass.
    ///
    /// PyTorch: `loss = F.binary_cross_entropy(x, t, ...); loss.backward(torch.ones_like(loss)); x.grad`.
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy`].
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_with_grad, BceOptions};
    /// use ndarray::array;
    /// let x = array![0.5f64, 0.8];
    /// let t = array![1.0f64, 0.0];
    /// let (loss, grad) = binary_cross_entropy_with_grad(x.view(), t.view(), &BceOptions::default()).unwrap();
    /// // (ln 2 + ln 5) / 2
    /// assert!((loss.scalar().unwrap() - 1.151292546497023).abs() < 1e-15);
    /// // (x − t) / (x(1 − x)) / 2
    /// assert!((grad[0] + 1.0).abs() < 1e-15 && (grad[1] - 2.5).abs() < 1e-14);
    /// ```
    fn binary_cross_entropy_with_grad;
    /// [`binary_cross_entropy_with_grad`] with the gradient written into `input` (the training path:
    /// the probabilities are dead after the loss); returns the loss.
    ///
    /// Same formula, gradient, reductions and errors as [`binary_cross_entropy_with_grad`]; on an error
    /// (an input or target outside `[0, 1]` included) `input` is left untouched. For `f32`, `f16` and
    /// `bf16` inputs in standard layout the fused kernel first checks the domain (a pass computing
    /// nothing else), then reads each tile of `input` into L1 and writes its gradient over it, so no
    /// gradient array is allocated; other inputs are computed by [`binary_cross_entropy_with_grad`] and
    /// copied back.
    ///
    /// PyTorch: `loss = F.binary_cross_entropy(input, target, ...); loss.backward();
    /// input.copy_(input.grad)` (with the allocation avoided).
    ///
    /// # Errors
    ///
    /// As [`binary_cross_entropy`].
    ///
    /// ```
    /// use infoloss::{binary_cross_entropy_with_grad_in_place, BceOptions};
    /// use ndarray::array;
    /// let mut x = array![0.5f32, 0.8];
    /// let t = array![1.0f32, 0.0];
    /// let loss = binary_cross_entropy_with_grad_in_place(x.view_mut(), t.view(), &BceOptions::default());
    /// // (ln 2 + ln 5) / 2
    /// assert!((loss.unwrap().scalar().unwrap() - 1.151_292_5).abs() < 1e-6);
    /// // (x − t) / (x(1 − x)) / 2
    /// assert!((x[0] + 1.0).abs() < 1e-6 && (x[1] - 2.5).abs() < 1e-5);
    /// // an input outside [0, 1] is an error, and the input stays as it was
    /// let mut bad = array![0.5f32, 1.5];
    /// assert!(binary_cross_entropy_with_grad_in_place(bad.view_mut(), t.view(), &BceOptions::default()).is_err());
    /// assert_eq!(bad, array![0.5f32, 1.5]);
    /// ```
    fn binary_cross_entropy_with_grad_in_place;
}

// ----------------------------------------------------------------------------------------------
// Row functions: contiguous slices in the compute type, PyTorch's order of operations.
// ----------------------------------------------------------------------------------------------

/// `std::max(v, −100)` (v is never NaN here: x ∈ [0, 1]).
#[inline]
fn clamp_log<A: Real>(v: A) -> A {
    let lo = A::c(-100.0);
    if v < lo { lo } else { v }
}

/// Position of the first element whose input or target is outside `[0, 1]` (NaN included), and
/// whether it is the input (checked first at each position, as PyTorch's kernel does).
fn first_invalid<A: Real>(x: &[A], t: &[A]) -> Option<(usize, bool)> {
    let ok = |v: A| v >= A::zero() && v <= A::one();
    x.iter().zip(t).position(|(&x, &t)| !ok(x) || !ok(t)).map(|i| (i, x.get(i).is_some_and(|&v| !ok(v))))
}

/// The formula, with PyTorch's epsilon.
struct BceRows<A> {
    eps: A,
}

impl<A: Real> ElementRows<A> for BceRows<A> {
    fn check(&self, x: &[A], t: &[A], offset: usize, shape: &[usize]) -> Result<()> {
        let Some((i, is_input)) = first_invalid(x, t) else { return Ok(()) };
        let (name, v) = if is_input { ("input", x.get(i)) } else { ("target", t.get(i)) };
        Err(Error::invalid_value(
            OP,
            name,
            &unravel(offset + i, shape),
            v.map_or(f64::NAN, |v| v.f64()),
            format!("is outside [0, 1] (all elements of {name} should be between 0 and 1)"),
        ))
    }

    /// Unweighted terms `(t − 1)·max(log1p(−x), −100) − t·max(ln x, −100)`.
    fn loss(&self, x: &[A], t: &[A], _: Option<&[A]>, out: &mut [A]) {
        for ((o, &x), &t) in out.iter_mut().zip(x).zip(t) {
            *o = (t - A::one()) * clamp_log((-x).ln_1p()) - t * clamp_log(x.ln());
        }
    }

    /// Unweighted ∂/∂x: `g·(x − t) / max((1 − x)·x, eps)`.
    fn grad_input(&self, x: &[A], t: &[A], _: Option<&[A]>, g: &[A], out: &mut [A]) {
        let eps = self.eps;
        for (((o, &x), &t), &g) in out.iter_mut().zip(x).zip(t).zip(g) {
            let d = (A::one() - x) * x;
            *o = g * (x - t) / if d < eps { eps } else { d };
        }
    }

    /// Unweighted ∂/∂t: `(−logit(x))·g`, `logit(x) = ln(x / (1 − x))` (∞ at x = 1).
    fn grad_target(&self, x: &[A], _: &[A], _: Option<&[A]>, g: &[A], out: &mut [A]) {
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            let logit = if x == A::one() { A::infinity() } else { (x / (A::one() - x)).ln() };
            *o = (-logit) * g;
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Driver.
// ----------------------------------------------------------------------------------------------

/// The validated options of one call, in PyTorch's order of checks, the fused kernel and the reference
/// rows, with PyTorch's epsilon: `scalar_t(EPSILON)`, the float 1e-12f rounded to the element type (0 in
/// f16, so there x ∈ {0, 1} gives ±∞, or NaN where x = t, as in PyTorch). Inputs outside [0, 1] are
/// left by the fused kernel to the reference, which reports the first.
fn setup<'w, T: Element>(
    input: &[usize],
    target: &[usize],
    opts: &'w BceOptions<'_, T>,
) -> Result<(Plan<'w, T>, BceOp, BceRows<T::Acc>)> {
    let plan = binary_setup(OP, input, target, opts.reduction, opts.weight.as_ref())?;
    let eps = T::from_acc(T::Acc::bce_eps()).to_acc();
    let fast = BceOp { eps: eps.f64() as f32, scaling: Scaling::of(&plan) };
    Ok((plan, fast, BceRows { eps }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reduction;
    use crate::rows::elementwise_rows::CHUNK;
    use ndarray::array;

    #[test]
    fn clamped_values_match_torch() {
        // torch (float64): F.binary_cross_entropy(torch.tensor([0., 1., 0., 1e-8]),
        //                                         torch.tensor([1., 0., 0., 0.]), reduction='none')
        //   -> [100., 100., 0., 1.0000000050000001e-08]
        let x = array![0.0f64, 1.0, 0.0, 1e-8];
        let t = array![1.0f64, 0.0, 0.0, 0.0];
        let o = BceOptions { reduction: Reduction::None, ..Default::default() };
        let l = binary_cross_entropy(x.view(), t.view(), &o).unwrap().into_array();
        assert_eq!(l.as_slice().unwrap()[..3], [100.0, 100.0, 0.0]);
        assert_eq!(l[3], 1.0000000050000001e-08);
    }

    #[test]
    fn first_invalid_prefers_the_earliest_position_and_the_input() {
        assert_eq!(first_invalid(&[0.5f64, 2.0], &[3.0, 0.5]), Some((0, false)));
        assert_eq!(first_invalid(&[0.5f64, f64::NAN], &[0.5, 2.0]), Some((1, true)));
        assert_eq!(first_invalid(&[0.0f64, 1.0], &[1.0, 0.0]), None);
    }

    #[test]
    fn invalid_value_across_chunks_reports_the_multi_index() {
        let mut x = ndarray::Array2::<f32>::from_elem((3, CHUNK), 0.5);
        x[[2, 5]] = -0.25;
        let t = ndarray::Array2::<f32>::from_elem((3, CHUNK), 0.5);
        let e = binary_cross_entropy(x.view(), t.view(), &BceOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "binary_cross_entropy: input value -0.25 at [2, 5] is outside [0, 1] \
             (all elements of input should be between 0 and 1)"
        );
    }
}
