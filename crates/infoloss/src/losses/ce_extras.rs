//! Cross-entropy with the extras large-vocabulary training uses: **z-loss**, **logit softcapping**, the
//! per-row **log-sum-exp** and **token accuracy** — on logits `(N, C)` with class-index targets.
//!
//! # Definitions (Liger-Kernel's `LigerCrossEntropyLoss`, checked against its source)
//!
//! For row `i` with logits `x_i` and target `y_i`:
//!
//! ```text
//! x̃_i      = c·tanh(x_i / c)            (softcap c; x̃ = x without it)
//! lse_i    = log Σ_k exp(x̃_ik)
//! CE_i     = exactly F.cross_entropy's row term on x̃ (class weight w, label smoothing ε, ignore_index)
//! z_i      = s·lse_i²                   (s = lse_square_scale; 0 for ignored rows)
//! loss     = CE + Z
//! ```
//!
//! reduced as follows (`n` = number of non-ignored rows, `W` = Σ over them of `w[y_i]`):
//!
//! | reduction | CE | Z (the reported `z_loss`) |
//! |---|---|---|
//! | `Mean` | as `F.cross_entropy`: `Σ CE_i / W` (smoothing term as in `pytorch-semantics.md` §3c) | `Σ z_i / n` |
//! | `Sum` | `Σ CE_i` | `Σ z_i` |
//! | `None` | `CE_i` per row | `z_i` per row |
//!
//! So, as in Liger: the z-loss is **not** weighted by the class weights and **not** affected by label
//! smoothing, and with `Mean` it is divided by the **count** of non-ignored rows even when class weights
//! make the cross-entropy divide by `W` (Liger: "TODO: Implement weighted z_loss"). The softcap is applied
//! before everything else (cross-entropy, z-loss, lse, accuracy all see `x̃`). The `z_loss` output is the Z
//! term alone, for logging; the gradient is that of `loss`.
//!
//! Token accuracy: `argmax_k x̃_ik == y_i` (first index of the maximum, NaN counting as the maximum, as
//! `torch.argmax`), averaged over the non-ignored rows for `Mean` and `Sum` (Liger divides by the count
//! for both), and per row (1 or 0, 0 for ignored rows) for `None`. `lse` is returned for **every** row,
//! ignored ones included (`torch.logsumexp(x̃, 1)`).
//!
//! # Gradient
//!
//! With `p = softmax(x̃_i)`, upstream `g` (÷`W` for the CE part and ÷`n` for the z part under `Mean`):
//!
//! ```text
//! ∂loss/∂x̃ = [(1−ε)·w_y·(p − e_y) + (ε/C)·(p·Σ_k w_k − w)]·g/W  +  2·s·lse·p·g/n
//! ∂loss/∂x  = ∂loss/∂x̃ · (1 − tanh²(x/c))
//! ```
//!
//! computed in autograd's order (upstream on `log_softmax`, then its backward; `logsumexp`'s backward
//! `g·exp(x̃ − lse)`; `tanh`'s backward `(g·c)·(1 − t²)/c`). Ignored rows get 0, or NaN where torch's autograd gives NaN
//! for a zero upstream gradient (a capped row with a NaN, a `+inf` or only `-inf`, as
//! `F.cross_entropy`). With `Mean` and every row ignored the loss is NaN and the gradient 0 (as
//! `F.cross_entropy`).
//!
//! # PyTorch
//!
//! ```text
//! xc   = c * torch.tanh(x / c)                                        # or x
//! lse  = torch.logsumexp(xc, 1)
//! keep = y != ignore_index
//! z    = torch.where(keep, s * lse.pow(2), 0)
//! loss = F.cross_entropy(xc, y, weight=w, ignore_index=ii, reduction=red, label_smoothing=eps) \
//!        + {'mean': z.sum() / keep.sum(), 'sum': z.sum(), 'none': z}[red]
//! acc  = (xc.argmax(1) == y)[keep].float().mean()
//! ```
//!
//! The row function here (one row, in place: logits in, gradient out) is the same one the fused
//! [`linear_cross_entropy`](crate::losses::linear::linear_cross_entropy) runs on each chunk of logits.

use ndarray::{Array1, Array2, ArrayView, ArrayView2, ArrayViewD, Dimension};
use num_traits::Zero;

use crate::base::class_targets::index_targets;
use crate::base::shape::as_2d;
use crate::base::upstream::RowUpstream as Upstream;
use crate::rows::ce_rows::*;
use crate::{Element, GradOutput, Loss, Result};

pub use crate::options::CrossEntropyExtrasOptions;

/// What [`cross_entropy_extras_with_grad`] returns.
///
/// ```
/// use infoloss::ce_extras::{CrossEntropyExtrasOptions, cross_entropy_extras_with_grad};
/// use infoloss::ndarray::array;
/// let opts = CrossEntropyExtrasOptions::<f64> { return_lse: true, return_token_accuracy: true, ..Default::default() };
/// let out = cross_entropy_extras_with_grad(array![[2.0f64, 0.0], [0.0, 1.0]].view(), array![0i64, 0].view(), &opts).unwrap();
/// assert_eq!(out.token_accuracy.unwrap().scalar(), Some(0.5)); // row 0 right, row 1 wrong
/// assert!((out.lse.unwrap()[0] - (1.0 + 2f64.exp()).ln()).abs() < 1e-15);
/// assert_eq!(out.grad.shape(), &[2, 2]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropyExtrasOutput<T> {
    /// The total loss: cross-entropy + z-loss (scalar, or `(N,)` for `Reduction::None`).
    pub loss: Loss<T>,
    /// The z-loss component alone, reduced like the loss (0 when `lse_square_scale = 0`).
    pub z_loss: Loss<T>,
    /// Gradient of `loss` with respect to the logits `(N, C)`.
    pub grad: Array2<T>,
    /// `(N,)` log-sum-exp of the (capped) logits, every row, if asked for.
    pub lse: Option<Array1<T>>,
    /// Token accuracy, if asked for: the fraction of non-ignored rows whose argmax is the target
    /// (`Mean`/`Sum`; NaN without such rows), or `(N,)` 1/0 indicators (`None`; 0 at ignored rows).
    /// Always `f64`: a count ratio such as 1/6 is not rounded to the logits' type.
    pub token_accuracy: Option<Loss<f64>>,
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Validates the input and runs the row function over every row.
fn extras_core<T: Element, D: Dimension, D2: Dimension>(
    op: &'static str,
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyExtrasOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<CrossEntropyExtrasOutput<T>> {
    extras_2d(op, as_2d(op, "input", input)?, target.into_dyn(), opts, grad_output)
}

/// [`extras_core`] of a two-dimensional input.
#[inline(never)]
fn extras_2d<T: Element>(
    op: &'static str,
    x: ArrayView2<'_, T>,
    target: ArrayViewD<'_, i64>,
    opts: &CrossEntropyExtrasOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<CrossEntropyExtrasOutput<T>> {
    let shape = x.shape().to_vec();
    let tg = index_targets::<T>(op, &shape, &target, opts.weight.as_ref(), opts.ignore_index)?;
    let (rows, classes) = x.dim();
    let cfg = row_config(op, opts, &tg, classes)?;
    let reduction = opts.reduction;
    let up = Upstream::read(op, reduction, &[rows], grad_output)?;

    let zero = T::Acc::zero();
    // (No scratch when there is no row: a `[0, 2^50]` input names many classes but holds nothing.)
    let mut row = vec![zero; if rows == 0 { 0 } else { classes }];
    let mut tanh_buf = Vec::new();
    let mut grad = Array2::<T>::default((rows, classes));
    let mut outs = Vec::with_capacity(rows);
    for (r, (xr, mut gr)) in x.outer_iter().zip(grad.outer_iter_mut()).enumerate() {
        for (o, v) in row.iter_mut().zip(xr.iter()) {
            *o = v.to_acc();
        }
        let cls = tg.class.get(r).copied().flatten();
        outs.push(ce_row_in_place(&mut row, cls, &cfg, Some(up.at(r)), &mut tanh_buf));
        for (o, &v) in gr.iter_mut().zip(&row) {
            *o = T::from_acc(v);
        }
    }
    let red = reduce_rows(op, opts, &cfg, &tg, &outs)?;
    Ok(CrossEntropyExtrasOutput {
        loss: red.loss,
        z_loss: red.z_loss,
        grad,
        lse: red.lse,
        token_accuracy: red.token_accuracy,
    })
}

/// Cross-entropy with z-loss, softcap, lse and token accuracy on logits `(N, C)` with class-index
/// targets `(N,)`: the loss, its parts, and the gradient for an upstream gradient of 1 (all ones for
/// `Reduction::None`), in one pass over each row.
///
/// # Formula
///
/// `loss = CE(x̃, y) + Z`, `x̃ = c·tanh(x/c)` (softcap `c`, else `x̃ = x`), `CE` exactly
/// [`cross_entropy`](crate::cross_entropy()) with `weight`, `ignore_index`, `label_smoothing`,
/// `Z = s·Σ_i lse_i² / n` (`Mean`, `n` = non-ignored rows, class weights not applied), `s·Σ lse_i²`
/// (`Sum`) or per row (`None`). See the [module docs](self) for the full definitions (Liger-Kernel's).
///
/// # Gradient
///
/// `∂/∂x = {[(1−ε)·w_y·(p − e_y) + (ε/C)·(p·Σw − w)]/W + 2·s·lse·p/n}·(1 − tanh²(x/c))`, with
/// `p = softmax(x̃)` (no `/W`, `/n` for `Sum`; times `g_i` for `None`). Ignored rows get 0.
///
/// # PyTorch
///
/// ```text
/// xc = c * torch.tanh(x / c); lse = torch.logsumexp(xc, 1); keep = y != ii
/// loss = F.cross_entropy(xc, y, weight=w, ignore_index=ii, label_smoothing=eps) \
///        + (torch.where(keep, s * lse.pow(2), 0)).sum() / keep.sum()
/// ```
///
/// # Errors
///
/// [`Error::BadRank`] unless the input is 2-D; [`Error::ShapeMismatch`] naming both shapes (target not
/// `(N,)`, weight not `(C,)`); [`Error::TargetOutOfRange`]; [`Error::InvalidOption`] for
/// `label_smoothing` outside `[0, 1]`, a non-finite `lse_square_scale`, a `softcap` that is not finite
/// and > 0, and `Reduction::BatchMean`.
///
/// # Example
///
/// ```
/// use infoloss::ce_extras::{CrossEntropyExtrasOptions, cross_entropy_extras_with_grad};
/// use infoloss::{Reduction, ndarray::array};
/// let x = array![[1.0f64, 2.0, 3.0], [0.5, -1.0, 2.0]];
/// let y = array![2i64, 0];
/// let opts = CrossEntropyExtrasOptions { lse_square_scale: 0.01, softcap: Some(2.0), ..Default::default() };
/// let out = cross_entropy_extras_with_grad(x.view(), y.view(), &opts)?;
/// // torch (float64): xc = 2*torch.tanh(x/2); lse = torch.logsumexp(xc, 1)
/// //   F.cross_entropy(xc, y) + (0.01 * lse.pow(2)).mean(), then .backward()
/// assert!((out.loss.scalar().unwrap() - 1.1366601080888337).abs() < 1e-12);
/// assert!((out.z_loss.scalar().unwrap() - 0.05117482166635792).abs() < 1e-12);
/// assert!((out.grad[[0, 2]] - (-0.04641830443011503)).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn cross_entropy_extras_with_grad<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyExtrasOptions<'_, T>,
) -> Result<CrossEntropyExtrasOutput<T>> {
    extras_core("cross_entropy_extras", input, target, opts, &GradOutput::one())
}

/// The earlier name of [`cross_entropy_extras_with_grad`] (it returns the gradient too), kept for one
/// release.
///
/// ```
/// # #![allow(deprecated)]
/// use infoloss::ce_extras::{CrossEntropyExtrasOptions, cross_entropy_extras, cross_entropy_extras_with_grad};
/// use infoloss::ndarray::array;
/// let (x, y) = (array![[1.0f64, 2.0, 3.0]], array![2i64]);
/// let o = CrossEntropyExtrasOptions::default();
/// assert_eq!(cross_entropy_extras(x.view(), y.view(), &o)?.grad, cross_entropy_extras_with_grad(x.view(), y.view(), &o)?.grad);
/// # Ok::<(), infoloss::Error>(())
/// ```
#[deprecated(since = "0.2.0", note = "renamed cross_entropy_extras_with_grad (it returns the gradient)")]
pub fn cross_entropy_extras<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyExtrasOptions<'_, T>,
) -> Result<CrossEntropyExtrasOutput<T>> {
    cross_entropy_extras_with_grad(input, target, opts)
}

/// Gradient of [`cross_entropy_extras_with_grad`]'s total loss with respect to the logits for an upstream
/// gradient `grad_output`: a scalar (or 0-d array) for `Mean`/`Sum`, an `(N,)` array (or a scalar for
/// every row) for `None`.
///
/// # Formula
///
/// `grad_output ×` the gradient of [`cross_entropy_extras_with_grad`] (per row for `None`); see there.
///
/// # PyTorch
///
/// `x.grad` after `loss.backward(g)` with the expression of [`cross_entropy_extras_with_grad`].
///
/// # Errors
///
/// As [`cross_entropy_extras`], plus [`Error::ShapeMismatch`] for a `grad_output` of the wrong shape.
///
/// # Example
///
/// ```
/// use infoloss::ce_extras::{CrossEntropyExtrasOptions, cross_entropy_extras_backward};
/// use infoloss::{GradOutput, Reduction, ndarray::array};
/// let x = array![[0.0f64, 0.0], [0.0, 0.0]];
/// let opts = CrossEntropyExtrasOptions { reduction: Reduction::None, ..Default::default() };
/// let g = array![2.0f64, 0.0];
/// let grad = cross_entropy_extras_backward(x.view(), array![0i64, 1].view(), &opts,
///     &GradOutput::Array(g.view().into_dyn()))?;
/// // 2·(softmax − onehot) in row 0, zeros in row 1
/// assert_eq!(grad, array![[-1.0, 1.0], [0.0, 0.0]]);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn cross_entropy_extras_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyExtrasOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<Array2<T>> {
    Ok(extras_core("cross_entropy_extras_backward", input, target, opts, grad_output)?.grad)
}

compiled_here! {
    extras_2d: fn(
        &'static str,
        ArrayView2<'_, T>,
        ArrayViewD<'_, i64>,
        &CrossEntropyExtrasOptions<'_, T>,
        &GradOutput<'_, T>,
    ) -> Result<CrossEntropyExtrasOutput<T>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::Reduction;
    use ndarray::array;

    #[test]
    fn argmax_is_first_and_nan_wins() {
        assert_eq!(row_argmax(&[1.0f64, 3.0, 3.0]), Some(1));
        assert_eq!(row_argmax(&[1.0f64, f64::NAN, 5.0, f64::NAN]), Some(1));
        assert_eq!(row_argmax(&[f64::NEG_INFINITY, f64::NEG_INFINITY]), Some(0));
        assert_eq!(row_argmax::<f64>(&[]), None);
    }

    #[test]
    fn without_extras_equals_cross_entropy() {
        let x = array![[1.0f64, 2.0, 0.5], [0.3, -1.0, 2.2], [0.0, 0.1, 0.2]];
        let y = array![2i64, -100, 0];
        let w = array![0.5f64, 2.0, 1.5];
        for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let o = CrossEntropyExtrasOptions {
                weight: Some(w.view()),
                label_smoothing: 0.2,
                reduction: red,
                ..Default::default()
            };
            let ce = crate::CrossEntropyOptions {
                weight: Some(w.view()),
                label_smoothing: 0.2,
                reduction: red,
                ..Default::default()
            };
            let out = cross_entropy_extras_with_grad(x.view(), y.view(), &o).unwrap();
            let (l, g) = crate::cross_entropy_with_grad(x.view(), y.view(), &ce).unwrap();
            assert_eq!(out.loss.into_array(), l.into_array());
            assert_eq!(out.grad.into_dyn(), g);
        }
    }

    #[test]
    fn options_are_validated() {
        let x = array![[1.0f64, 2.0]];
        let y = array![0i64];
        let bad = [
            CrossEntropyExtrasOptions { softcap: Some(0.0), ..Default::default() },
            CrossEntropyExtrasOptions { softcap: Some(f64::INFINITY), ..Default::default() },
            CrossEntropyExtrasOptions { lse_square_scale: f64::NAN, ..Default::default() },
            CrossEntropyExtrasOptions { label_smoothing: 1.5, ..Default::default() },
            CrossEntropyExtrasOptions { reduction: Reduction::BatchMean, ..Default::default() },
        ];
        for o in bad {
            let e = cross_entropy_extras_with_grad(x.view(), y.view(), &o).unwrap_err();
            assert!(matches!(e, Error::InvalidOption { .. }), "{e}");
        }
        let e = cross_entropy_extras_with_grad(
            array![[1.0f64, 2.0], [0.0, 1.0]].view(),
            array![0i64].view(),
            &CrossEntropyExtrasOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("[2, 2]") && e.to_string().contains("[1]"), "{e}");
        let e = cross_entropy_extras_with_grad(
            array![1.0f64, 2.0].view(),
            array![0i64].view(),
            &Default::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::BadRank { .. }), "{e}");
        let e =
            cross_entropy_extras_with_grad(x.view(), array![2i64].view(), &Default::default()).unwrap_err();
        assert_eq!(e.to_string(), "cross_entropy_extras: target 2 at [0] is out of range for 2 classes");
    }
}
