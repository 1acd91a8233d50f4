//! The UDA consistency loss (Unsupervised Data Augmentation, Xie et al. 2019) on raw logits.
//!
//! For a batch of unlabeled examples given twice — original logits `o` and logits of an augmented
//! version `x`, both **`(rows, classes)`** (2-D) — the loss pulls the prediction on the augmented
//! version toward the (fixed) prediction on the original:
//!
//! ```text
//! target_r  = softmax(o_r / T_o)                     (no gradient)
//! log p_r   = log_softmax(x_r / T_x)
//! row_kl_r  = Σ_c target_rc · (log target_rc − log p_rc)          (KLDivLoss(reduction='none').sum(-1))
//! mask_r    = 1 if max_c softmax(o_r)_c > threshold else 0       (all ones without a threshold)
//! loss      = Σ_r row_kl_r · mask_r / max(Σ_r mask_r, 1)         (UdaNormalize::KeptRows, default)
//!           = Σ_r row_kl_r · mask_r / rows                       (UdaNormalize::AllRows, Google's original)
//! ```
//!
//! The temperature `T` goes to one side, chosen by [`Sharpen`]: `Target` (`T_o = T`, `T_x = 1`; Google's
//! original code, "sharpening" the target when `T < 1`; the default) or `Augmented` (`T_o = 1`, `T_x = T`;
//! the PyTorch port in the articles the project started from). The confidence mask always uses the
//! untempered `softmax(o)`, as both codes do. Gradient wrt `x` (the original side has none):
//!
//! ```text
//! ∂loss/∂x_r = mask_r / denom · (softmax(x_r / T_x) − target_r) / T_x
//! ```
//!
//! A masked row is multiplied by 0 rather than skipped, as in PyTorch: a NaN in a masked row still makes
//! the loss NaN. `f32`, `f16` and `bf16` inputs take the SIMD fast path of [the `distill` module](mod@crate::losses::distill)
//! (its forward-KL row kernel with the temperatures `T_x` on `x` and `T_o` on `o`: one read of both rows, the
//! gradient written from cache; the mask from one more read of `o`), with the precision described there;
//! [`with_reference_path`](crate::losses::distill::with_reference_path) switches it off. `f64` inputs, and rows with a
//! NaN or infinite logit, use the `f64` reference row functions.

use crate::base::shape::check_same_shape;
use ndarray::{Array1, Array2, ArrayView, ArrayView2, Dimension};
use rayon::prelude::*;

use crate::base::checks::check_temperature;
use crate::base::element::to_t;
use crate::base::shape::as_2d;
use crate::base::shape::checked_numel;
use crate::kernels::Kernels;
use crate::kernels::distill::{KdDiv, KdRowCfg};
use crate::rows::distill_fast::{FastScratch, fast_path_for, fast_row, row_f32, store_f64_row};
use crate::rows::distill_rows::{
    PairStats, Scratch, fkl_grad, gather, min_rows_per_task, online_sum_exp, pair_stats,
};
use crate::{Element, Error, GradOutput, Real, Result};

const OP: &str = "uda_consistency";

pub use crate::options::Sharpen;

pub use crate::options::UdaNormalize;

pub use crate::options::UdaOptions;

/// The result of [`uda_consistency_with_grad`]: the loss, its gradient, and what callers log.
///
/// ```
/// use infoloss::uda::{uda_consistency, UdaOptions};
/// use infoloss::ndarray::array;
/// let ori = array![[1.0f32, 0.0, 0.0]];
/// let out = uda_consistency(ori.view(), ori.view(), &UdaOptions::default())?;
/// assert_eq!((out.loss, out.kept), (0.0, 1)); // same logits, no temperature: KL = 0
/// assert_eq!(out.mask.to_vec(), vec![1.0]);
/// assert!(out.grad.iter().all(|&g| g == 0.0));
/// # Ok::<(), infoloss::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct UdaOutput<T> {
    /// The consistency loss (`unsup_loss`).
    pub loss: T,
    /// Gradient of `loss` wrt the augmented logits, `(rows, classes)`; zero in masked rows.
    pub grad: Array2<T>,
    /// The float 0/1 confidence mask, `(rows,)`.
    pub mask: Array1<T>,
    /// Number of kept rows (`Σ mask`).
    pub kept: usize,
    /// The per-row KL before masking, `(rows,)`.
    pub row_kl: Array1<T>,
}

/// The result of [`uda_consistency_loss`]: [`UdaOutput`] without the gradient.
///
/// ```
/// use infoloss::uda::{uda_consistency_loss, UdaOptions};
/// use infoloss::ndarray::array;
/// let ori = array![[1.0f32, 0.0, 0.0]];
/// let out = uda_consistency_loss(ori.view(), ori.view(), &UdaOptions::default())?;
/// assert_eq!((out.loss, out.kept, out.row_kl.to_vec()), (0.0, 1, vec![0.0]));
/// # Ok::<(), infoloss::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct UdaLoss<T> {
    /// The consistency loss (`unsup_loss`).
    pub loss: T,
    /// The float 0/1 confidence mask, `(rows,)`.
    pub mask: Array1<T>,
    /// Number of kept rows (`Σ mask`).
    pub kept: usize,
    /// The per-row KL before masking, `(rows,)`.
    pub row_kl: Array1<T>,
}

impl<T> UdaLoss<T> {
    fn with_grad(self, grad: Array2<T>) -> UdaOutput<T> {
        UdaOutput { loss: self.loss, grad, mask: self.mask, kept: self.kept, row_kl: self.row_kl }
    }
}

/// UDA consistency loss between original logits `ori_logits` (no gradient) and augmented logits
/// `aug_logits`, both `(rows, classes)`, with its gradient wrt `aug_logits`; see the
/// [module docs](self) for the formula.
///
/// PyTorch equivalent (`Sharpen::Augmented`, the articles' code; `Sharpen::Target` divides `ori_logits`
/// by `T` in the `softmax` instead and uses `T = 1` for `aug_logits`):
///
/// ```text
/// with torch.no_grad():
///     ori_prob = F.softmax(ori_logits, dim=-1)
///     mask = (ori_prob.max(dim=-1)[0] > thresh).float()          # or torch.ones(rows)
/// aug_log_prob = F.log_softmax(aug_logits / T, dim=-1)
/// row_kl = torch.sum(nn.KLDivLoss(reduction='none')(aug_log_prob, ori_prob), dim=-1)
/// loss = torch.sum(row_kl * mask, dim=-1) / torch.max(torch.sum(mask, dim=-1), torch.tensor(1.))
/// ```
///
/// Errors: non-2-D inputs, different shapes (both named), `temperature` not finite and > 0, a NaN
/// `confidence_threshold`.
///
/// ```
/// use infoloss::uda::{uda_consistency_with_grad, Sharpen, UdaOptions};
/// use infoloss::ndarray::array;
/// let ori = array![[2.0f32, 0.5, -1.0], [0.1, 0.2, 0.0]];
/// let aug = array![[1.0f32, 1.0, -0.5], [0.3, -0.2, 0.4]];
/// let o = UdaOptions { temperature: 0.4, sharpen: Sharpen::Target, confidence_threshold: Some(0.5), ..Default::default() };
/// let out = uda_consistency_with_grad(ori.view(), aug.view(), &o)?;
/// assert_eq!(out.mask.to_vec(), vec![1.0, 0.0]); // max softmax(ori) = 0.786 and 0.367
/// assert_eq!(out.kept, 1);
/// assert!((out.loss - 0.6857713851463987).abs() < 1e-6); // torch float32: 0.6857712864875793
/// assert!((out.grad[[0, 0]] - (-0.5267)).abs() < 1e-4);
/// assert_eq!(out.grad[[1, 0]], 0.0);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn uda_consistency_with_grad<T: Element, D1: Dimension, D2: Dimension>(
    ori_logits: ArrayView<'_, T, D1>,
    aug_logits: ArrayView<'_, T, D2>,
    opts: &UdaOptions,
) -> Result<UdaOutput<T>> {
    let (out, grad) = uda_impl(ori_logits, aug_logits, opts, Some(1.0))?;
    Ok(out.with_grad(grad.unwrap_or_default()))
}

/// The earlier name of [`uda_consistency_with_grad`] (it returns the gradient too), kept for one release.
///
/// ```
/// # #![allow(deprecated)]
/// use infoloss::uda::{uda_consistency, uda_consistency_with_grad, UdaOptions};
/// use infoloss::ndarray::array;
/// let (ori, aug) = (array![[2.0f64, 0.5]], array![[1.0f64, 1.0]]);
/// let o = UdaOptions::default();
/// assert_eq!(uda_consistency(ori.view(), aug.view(), &o)?.loss, uda_consistency_with_grad(ori.view(), aug.view(), &o)?.loss);
/// # Ok::<(), infoloss::Error>(())
/// ```
#[deprecated(
    since = "0.2.0",
    note = "renamed uda_consistency_with_grad (it returns the gradient); the loss alone is uda_consistency_loss"
)]
pub fn uda_consistency<T: Element, D1: Dimension, D2: Dimension>(
    ori_logits: ArrayView<'_, T, D1>,
    aug_logits: ArrayView<'_, T, D2>,
    opts: &UdaOptions,
) -> Result<UdaOutput<T>> {
    uda_consistency_with_grad(ori_logits, aug_logits, opts)
}

/// [`uda_consistency_with_grad`]'s loss, mask, kept-row count and per-row KL **without** the gradient (evaluation,
/// logging, or a forward pass whose backward comes later through [`uda_consistency_backward`]): one read
/// of both inputs and no `(rows, classes)` allocation.
///
/// PyTorch equivalent: the expression of [`uda_consistency_with_grad`] under `torch.no_grad()`.
///
/// Errors: those of [`uda_consistency_with_grad`].
///
/// ```
/// use infoloss::uda::{uda_consistency_with_grad, uda_consistency_loss, Sharpen, UdaOptions};
/// use infoloss::ndarray::array;
/// let ori = array![[2.0f64, 0.5, -1.0], [0.1, 0.2, 0.0]];
/// let aug = array![[1.0f64, 1.0, -0.5], [0.3, -0.2, 0.4]];
/// let o = UdaOptions { temperature: 0.4, sharpen: Sharpen::Target, ..Default::default() };
/// let l = uda_consistency_loss(ori.view(), aug.view(), &o)?;
/// assert_eq!(l.loss, uda_consistency_with_grad(ori.view(), aug.view(), &o)?.loss);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn uda_consistency_loss<T: Element, D1: Dimension, D2: Dimension>(
    ori_logits: ArrayView<'_, T, D1>,
    aug_logits: ArrayView<'_, T, D2>,
    opts: &UdaOptions,
) -> Result<UdaLoss<T>> {
    Ok(uda_impl(ori_logits, aug_logits, opts, None)?.0)
}

/// Gradient of [`uda_consistency_with_grad`]'s loss with respect to `aug_logits` for an upstream gradient
/// `grad_output` (the loss is a scalar, so `grad_output` is a scalar or a 0-d array), shape
/// `(rows, classes)`.
///
/// # Formula
///
/// `∂(g·loss)/∂x_r = g · mask_r / denom · (softmax(x_r / T_x) − target_r) / T_x` (see the
/// [module docs](self)); the factor `g` enters the row coefficient, which is computed in `f64`, so the
/// result is rounded once (unlike multiplying [`uda_consistency_with_grad`]'s gradient by `g` afterwards). Masked
/// rows get 0 (NaN if `g` is not finite, as `0 · g` in PyTorch).
///
/// # PyTorch
///
/// `(g * loss).backward()` (or `loss.backward(g)`) on the expression of [`uda_consistency_with_grad`];
/// `aug_logits.grad` is the result.
///
/// # Errors
///
/// Those of [`uda_consistency_with_grad`], and [`Error::ShapeMismatch`] for a `grad_output` array that is not 0-d.
///
/// # Example
///
/// ```
/// use infoloss::uda::{uda_consistency, uda_consistency_backward, UdaOptions};
/// use infoloss::{GradOutput, ndarray::array};
/// let ori = array![[2.0f64, 0.5, -1.0], [0.1, 0.2, 0.0]];
/// let aug = array![[1.0f64, 1.0, -0.5], [0.3, -0.2, 0.4]];
/// let o = UdaOptions { temperature: 0.4, confidence_threshold: Some(0.5), ..Default::default() };
/// let g = uda_consistency_backward(ori.view(), aug.view(), &o, &GradOutput::Scalar(-2.5))?;
/// // torch (float64): (-2.5 * loss).backward(); aug.grad[0, 0]
/// assert!((g[[0, 0]] - 1.316696845115658).abs() < 1e-12);
/// assert_eq!(g[[1, 2]], 0.0); // masked row
/// let one = uda_consistency(ori.view(), aug.view(), &o)?.grad;
/// assert!((g[[0, 1]] - (-2.5) * one[[0, 1]]).abs() < 1e-15);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn uda_consistency_backward<T: Element, D1: Dimension, D2: Dimension>(
    ori_logits: ArrayView<'_, T, D1>,
    aug_logits: ArrayView<'_, T, D2>,
    opts: &UdaOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<Array2<T>> {
    let g = grad_output.expect_scalar(OP)?.to_acc().f64();
    Ok(uda_impl(ori_logits, aug_logits, opts, Some(g))?.1.unwrap_or_default())
}

/// The loss and, for `Some(upstream)`, the gradient for the upstream gradient `upstream`.
type UdaParts<T> = (UdaLoss<T>, Option<Array2<T>>);

/// [`uda_consistency_with_grad`] with the gradient for the upstream gradient `upstream`, if any.
fn uda_impl<T: Element, D1: Dimension, D2: Dimension>(
    ori_logits: ArrayView<'_, T, D1>,
    aug_logits: ArrayView<'_, T, D2>,
    opts: &UdaOptions,
    upstream: Option<f64>,
) -> Result<UdaParts<T>> {
    uda_core(as_2d(OP, "ori_logits", ori_logits)?, as_2d(OP, "aug_logits", aug_logits)?, opts, upstream)
}

/// [`uda_impl`] of two-dimensional views.
#[inline(never)]
fn uda_core<T: Element>(
    ori: ArrayView2<'_, T>,
    aug: ArrayView2<'_, T>,
    opts: &UdaOptions,
    upstream: Option<f64>,
) -> Result<UdaParts<T>> {
    check_same_shape(OP, "ori_logits", ori.shape(), "aug_logits", aug.shape())?;
    let temp = check_temperature(OP, opts.temperature)?;
    if let Some(th) = opts.confidence_threshold {
        if th.is_nan() {
            return Err(Error::invalid_option(OP, "confidence_threshold", th, "must not be NaN"));
        }
    }
    let (rows, classes) = ori.dim();
    let (t_ori, t_aug) = match opts.sharpen {
        Sharpen::Target => (temp, 1.0),
        Sharpen::Augmented => (1.0, temp),
    };
    let min_len = min_rows_per_task(classes);
    if fast_path_for::<T>() && rows > 0 && classes > 0 && upstream.is_none_or(f64::is_finite) {
        return uda_fast(ori, aug, opts, upstream, (t_ori, t_aug));
    }

    // Pass 1: per-row statistics, KL and mask. Allocated fallibly: `[2^40, 0]` inputs hold nothing but
    // would need a statistic per row.
    let mut stats: Vec<(PairStats, f64)> = crate::base::array::try_vec(OP, "row statistics", rows)?;
    stats.par_extend((0..rows).into_par_iter().with_min_len(min_len).map_init(Scratch::default, |sc, r| {
        gather(aug.row(r), &mut sc.s);
        gather(ori.row(r), &mut sc.t);
        let st = pair_stats(&sc.s, &sc.t, t_aug, t_ori);
        let m = match opts.confidence_threshold {
            None => 1.0,
            Some(th) => {
                let z1 = if t_ori == 1.0 { st.z_t } else { sum_exp_rel_max(&sc.t) };
                // max softmax(ori) = exp(max − lse) = 1 / Σ exp(o − max)
                if 1.0 / z1 > th { 1.0 } else { 0.0 }
            }
        };
        (st, m)
    }));
    let kept = stats.iter().filter(|(_, m)| *m == 1.0).count();
    let denom = match opts.normalize {
        UdaNormalize::KeptRows => kept.max(1) as f64,
        UdaNormalize::AllRows => rows as f64,
    };
    let mut total = 0.0f64;
    for (st, m) in &stats {
        total += st.fkl * m;
    }
    let loss = UdaLoss {
        loss: to_t(total / denom),
        mask: stats.iter().map(|(_, m)| to_t(*m)).collect(),
        kept,
        row_kl: stats.iter().map(|(st, _)| to_t(st.fkl)).collect(),
    };
    let Some(upstream) = upstream else { return Ok((loss, None)) };

    // Pass 2: the gradient, `g · mask/denom · (softmax(aug/T_x) − target)/T_x`.
    let numel = checked_numel(OP, "aug_logits", &[rows, classes])?;
    let mut buf = crate::kernels::alloc::try_zeroed::<T>(OP, "gradient", numel)?;
    if classes > 0 {
        buf.par_chunks_mut(classes).enumerate().with_min_len(min_len).for_each_init(
            || (Scratch::default(), Vec::<f64>::new()),
            |(sc, g), (r, out)| {
                let Some((st, m)) = stats.get(r) else { return };
                if *m == 0.0 && st.fkl.is_finite() && upstream.is_finite() {
                    return; // 0 · finite: the row's gradient is exactly zero
                }
                gather(aug.row(r), &mut sc.s);
                gather(ori.row(r), &mut sc.t);
                g.clear();
                g.resize(classes, 0.0);
                fkl_grad(&sc.s, &sc.t, t_aug, t_ori, st, upstream * m / denom / t_aug, g);
                for (o, &x) in out.iter_mut().zip(g.iter()) {
                    *o = to_t(x);
                }
            },
        );
    }
    let grad = Array2::from_shape_vec((rows, classes), buf)
        .map_err(|e| Error::too_large(OP, "gradient", e.to_string()))?;
    Ok((loss, Some(grad)))
}

/// The reference's mask of row `r` (`sc` receives the widened rows).
fn reference_mask<T: Element>(
    ori: ArrayView2<'_, T>,
    aug: ArrayView2<'_, T>,
    r: usize,
    th: f64,
    (t_ori, t_aug): (f64, f64),
    sc: &mut Scratch,
) -> f64 {
    gather(aug.row(r), &mut sc.s);
    gather(ori.row(r), &mut sc.t);
    let z1 = if t_ori == 1.0 { pair_stats(&sc.s, &sc.t, t_aug, t_ori).z_t } else { sum_exp_rel_max(&sc.t) };
    if 1.0 / z1 > th { 1.0 } else { 0.0 }
}

/// [`uda_impl`] on the SIMD fast path (`f32`, `f16`, `bf16`; see
/// [`with_reference_path`](crate::losses::distill::with_reference_path)). The mask comes first, from one read of
/// `ori` per row (`max softmax(ori) = 1/Σ exp(o − max)` in `f32`; a row within a relative `1e-5` of the
/// threshold, or with a non-finite logit, is decided by the reference's own `f64` computation, so the masks
/// are the reference's). The count of kept rows then gives every row's gradient factor, and each row takes
/// one fused pass (the distillation kernel, forward KL with temperatures `T_x` on `aug` and `T_o` on `ori`):
/// the gradient is written from cache. Rows with a non-finite logit take the reference row functions.
fn uda_fast<T: Element>(
    ori: ArrayView2<'_, T>,
    aug: ArrayView2<'_, T>,
    opts: &UdaOptions,
    upstream: Option<f64>,
    temps: (f64, f64),
) -> Result<UdaParts<T>> {
    let (t_ori, t_aug) = temps;
    let (rows, classes) = ori.dim();
    let min_len = min_rows_per_task(classes);
    let mut mask: Vec<f64> = crate::base::array::try_vec(OP, "mask", rows)?;
    mask.resize(rows, 1.0);
    if let Some(th) = opts.confidence_threshold {
        mask.par_iter_mut().enumerate().with_min_len(min_len).for_each_init(
            FastScratch::default,
            |sc, (r, m)| {
                let o = row_f32(ori.row(r), &mut sc.t);
                let (mx, z) = Kernels::new().max_sum_exp_f32(o);
                let pm = 1.0 / z;
                *m = if mx.is_finite() && pm.is_finite() && (pm - th).abs() > 1e-5 * pm {
                    if pm > th { 1.0 } else { 0.0 }
                } else {
                    reference_mask(ori, aug, r, th, temps, &mut sc.reference)
                };
            },
        );
    }
    let kept = mask.iter().filter(|&&m| m == 1.0).count();
    let denom = match opts.normalize {
        UdaNormalize::KeptRows => kept.max(1) as f64,
        UdaNormalize::AllRows => rows as f64,
    };
    let cfg = KdRowCfg { ts: t_aug, tt: t_ori, div: KdDiv::Forward, beta: 0.0, label: None };
    let numel = checked_numel(OP, "aug_logits", &[rows, classes])?;
    // Without a gradient the rows are still visited in chunks of `classes`: an empty buffer has none.
    let mut buf = match upstream {
        Some(_) => crate::kernels::alloc::try_zeroed::<T>(OP, "gradient", numel)?,
        None => Vec::new(),
    };
    let mut row_kl: Vec<f64> = crate::base::array::try_vec(OP, "row statistics", rows)?;
    row_kl.resize(rows, 0.0);
    let row = |sc: &mut FastScratch, r: usize, out: Option<&mut [T]>, kl: &mut f64| {
        let m = mask.get(r).copied().unwrap_or(0.0);
        let coef = upstream.unwrap_or(0.0) * m / denom / t_aug;
        let mut out = out;
        let grad = out.as_deref_mut().filter(|_| m != 0.0).map(|o| (o, coef, 0.0));
        if let Some(k) = fast_row(aug.row(r), ori.row(r), cfg, grad, sc) {
            *kl = k.fkl;
            return;
        }
        // a non-finite row: the reference's row functions
        let rs = &mut sc.reference;
        gather(aug.row(r), &mut rs.s);
        gather(ori.row(r), &mut rs.t);
        let st = pair_stats(&rs.s, &rs.t, t_aug, t_ori);
        *kl = st.fkl;
        if let Some(out) = out.filter(|_| !(m == 0.0 && st.fkl.is_finite())) {
            sc.g64.clear();
            sc.g64.resize(classes, 0.0);
            fkl_grad(&rs.s, &rs.t, t_aug, t_ori, &st, coef, &mut sc.g64);
            store_f64_row(&sc.g64, out);
        }
    };
    if upstream.is_some() {
        buf.par_chunks_mut(classes)
            .zip(row_kl.par_iter_mut())
            .enumerate()
            .with_min_len(min_len)
            .for_each_init(FastScratch::default, |sc, (r, (out, kl))| row(sc, r, Some(out), kl));
    } else {
        row_kl
            .par_iter_mut()
            .enumerate()
            .with_min_len(min_len)
            .for_each_init(FastScratch::default, |sc, (r, kl)| row(sc, r, None, kl));
    }
    let mut total = 0.0f64;
    for (kl, m) in row_kl.iter().zip(&mask) {
        total += kl * m;
    }
    let loss = UdaLoss {
        loss: to_t(total / denom),
        mask: mask.iter().map(|&m| to_t(m)).collect(),
        kept,
        row_kl: row_kl.iter().map(|&v| to_t(v)).collect(),
    };
    if upstream.is_none() {
        return Ok((loss, None));
    }
    let grad = Array2::from_shape_vec((rows, classes), buf)
        .map_err(|e| Error::too_large(OP, "gradient", e.to_string()))?;
    Ok((loss, Some(grad)))
}

/// `Σ exp(x − max(x))` in one pass (so that `max softmax(x) = 1 / result`).
fn sum_exp_rel_max(x: &[f64]) -> f64 {
    online_sum_exp(x, 1.0).1
}

/// The total UDA objective `sup_loss + uda_coeff · unsup_loss` (SEEDS.md step 6): `sup_loss` is the
/// ordinary cross-entropy on the labeled batch, `unsup_loss` the [`uda_consistency_with_grad`] loss. Its gradient
/// is `uda_coeff` times the consistency gradient on the augmented logits (plus the supervised one).
///
/// ```
/// assert_eq!(infoloss::uda::uda_total(0.5f32, 0.25, 2.0), 1.0);
/// ```
pub fn uda_total<F: num_traits::Float>(sup_loss: F, unsup_loss: F, uda_coeff: F) -> F {
    sup_loss + uda_coeff * unsup_loss
}
compiled_here! {
    uda_core: fn(ArrayView2<'_, T>, ArrayView2<'_, T>, &UdaOptions, Option<f64>) -> Result<UdaParts<T>>;
}
