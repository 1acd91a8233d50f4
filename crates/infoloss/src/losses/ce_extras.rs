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

use ndarray::{Array1, Array2, ArrayView, ArrayView2, ArrayViewD, Dimension, Ix2};
use num_traits::Zero;

use crate::base::array::array_from_vec;
use crate::base::class_targets::{IndexTargets, index_targets};
use crate::base::outputs::mean_of;
use crate::base::upstream::RowUpstream as Upstream;
use crate::rows::softmax_rows::{row_logsumexp, row_max};
use crate::{Element, Error, GradOutput, Loss, Real, Reduction, Result};

pub use crate::options::CrossEntropyExtrasOptions;

/// What [`cross_entropy_extras`] returns.
///
/// ```
/// use infoloss::ce_extras::{CrossEntropyExtrasOptions, cross_entropy_extras};
/// use infoloss::ndarray::array;
/// let opts = CrossEntropyExtrasOptions::<f64> { return_lse: true, return_token_accuracy: true, ..Default::default() };
/// let out = cross_entropy_extras(array![[2.0f64, 0.0], [0.0, 1.0]].view(), array![0i64, 0].view(), &opts).unwrap();
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
// The row function shared with the fused linear losses
// ---------------------------------------------------------------------------------------------

/// Validated options in the compute type, shared by every row.
#[derive(Debug, Clone)]
pub(crate) struct CeRowConfig<A> {
    /// Class weights (`None` = all 1).
    pub(crate) weight: Option<Vec<A>>,
    /// Label smoothing ε > 0.
    pub(crate) smoothing: bool,
    /// `1 − ε`.
    pub(crate) keep: A,
    /// `ε / C`.
    pub(crate) eps_c: A,
    /// z-loss scale, `None` when 0.
    pub(crate) z_scale: Option<A>,
    /// Softcap `c`.
    pub(crate) softcap: Option<A>,
    /// `Some((W, n))` for `Reduction::Mean`: the CE and z-loss divisors of the gradient.
    pub(crate) mean_norm: Option<(A, A)>,
    /// Whether ignored rows still need their lse.
    pub(crate) want_lse: bool,
    /// Whether to compute the argmax.
    pub(crate) want_acc: bool,
}

impl<A: Real> CeRowConfig<A> {
    #[inline]
    pub(crate) fn w(&self, c: usize) -> A {
        match &self.weight {
            Some(w) => w.get(c).copied().unwrap_or_else(A::one),
            None => A::one(),
        }
    }
}

/// The per-row results of [`ce_row_in_place`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CeRowOut<A> {
    /// `−w_y·lsm_y` (0 for an ignored row).
    pub(crate) nll: A,
    /// `−Σ_k w_k·lsm_k` (0 for an ignored row or without smoothing).
    pub(crate) smooth: A,
    /// `s·lse²` (0 for an ignored row or without z-loss).
    pub(crate) z: A,
    /// `logsumexp` of the capped row (NaN when not computed).
    pub(crate) lse: A,
    /// argmax == target (false for ignored rows).
    pub(crate) correct: bool,
}

/// First index of the maximum, NaN counting as the maximum (`torch.argmax`).
#[inline]
pub(crate) fn row_argmax<A: Real>(x: &[A]) -> Option<usize> {
    let mut best: Option<(usize, A)> = None;
    for (i, &v) in x.iter().enumerate() {
        match best {
            None => best = Some((i, v)),
            Some((_, b)) if b.is_nan() => {}
            Some(_) if v.is_nan() => best = Some((i, v)),
            Some((_, b)) if v > b => best = Some((i, v)),
            _ => {}
        }
    }
    best.map(|(i, _)| i)
}

/// The upstream coefficients of a row with upstream gradient `g` (autograd's order of operations):
/// `a` on `lsm_y` (times `w_y`), `b` on every `lsm_k` (times `−w_k`, label smoothing), and `a_z` on
/// `exp(x̃ − lse)` (the z-loss): `a = −(g·(1−ε))/W`, `b = (g·ε/C)/W`, `a_z = ((g/n)·s)·(2·lse)` for
/// `Mean` (no divisions otherwise).
#[inline]
pub(crate) fn grad_coefs<A: Real>(cfg: &CeRowConfig<A>, g: A, lse: A) -> (A, A, Option<A>) {
    let g_nll = if cfg.smoothing { g * cfg.keep } else { g };
    let a = match cfg.mean_norm {
        Some((wt, _)) => -(g_nll / wt),
        None => -g_nll,
    };
    let g_ret = g * cfg.eps_c;
    let b = match cfg.mean_norm {
        Some((wt, _)) => g_ret / wt,
        None => g_ret,
    };
    let a_z = cfg.z_scale.map(|sc| {
        let gz = match cfg.mean_norm {
            Some((_, n)) => g / n,
            None => g,
        };
        (gz * sc) * (lse + lse)
    });
    (a, b, a_z)
}

/// The gradient of an ignored row, written over its logits `x` (uncapped when `softcap` is given):
/// 0, except where PyTorch's autograd gives NaN for a zero upstream gradient — a capped row with a
/// NaN, a `+inf` or only `-inf` (the `log_softmax` / `logsumexp` backwards form `0·exp(NaN)`). The
/// softcap maps `±inf` to `±c`, so then only a NaN does.
pub(crate) fn fill_ignored_grad<A: Real>(x: &mut [A], softcap: Option<A>) {
    let nan = ignored_grad_is_nan(x, softcap.is_some());
    x.fill(if nan { A::nan() } else { A::zero() });
}

/// Whether [`fill_ignored_grad`] writes NaN for the row `x` (`capped`: a softcap is still to be applied).
pub(crate) fn ignored_grad_is_nan<A: Real>(x: &[A], capped: bool) -> bool {
    if capped {
        x.iter().any(|v| v.is_nan())
    } else {
        x.iter().any(|v| v.is_nan() || *v == A::infinity()) || x.iter().all(|v| *v == A::neg_infinity())
    }
}

/// One row of cross-entropy with the extras, **in place**: `x` holds the row's logits on entry; with an
/// upstream gradient `g` (the row's, before any `Mean` division) it holds the gradient wrt the
/// (uncapped) logits on return, otherwise the capped logits. `tanh_buf` is scratch (resized as needed).
///
/// Follows PyTorch's order of operations: `lsm = (x̃ − max) − ln Σ exp(x̃ − max)` (sum in f64); the CE
/// upstream on `lsm` is `G_y = w_y·a`, `G_k −= b·w_k` (smoothing), then `G − exp(lsm)·ΣG`; the z part is
/// `((g/n)·s)·(2·lse)·exp(x̃ − lse)`; the softcap chain `((g·c)·(1 − t²))/c`.
pub(crate) fn ce_row_in_place<A: Real>(
    x: &mut [A],
    cls: Option<usize>,
    cfg: &CeRowConfig<A>,
    g: Option<A>,
    tanh_buf: &mut Vec<A>,
) -> CeRowOut<A> {
    let zero = A::zero();
    let mut out = CeRowOut { lse: A::nan(), ..Default::default() };
    if cls.is_none() && !cfg.want_lse {
        if g.is_some() {
            fill_ignored_grad(x, cfg.softcap);
        }
        return out;
    }
    // 1. softcap
    if let Some(c) = cfg.softcap {
        tanh_buf.clear();
        tanh_buf.reserve(x.len());
        for v in x.iter_mut() {
            let t = (*v / c).tanh();
            tanh_buf.push(t);
            *v = c * t;
        }
    }
    // 2. max (NaN-propagating) and Σ exp(x̃ − max) in f64
    let m = row_max(x);
    let mut s = 0f64;
    for &v in x.iter() {
        s += (v - m).exp().f64();
    }
    let log_sum = A::c(s.ln());
    let lse = if m.is_infinite() { row_logsumexp(x) } else { log_sum + m };
    out.lse = lse;
    let Some(y) = cls else {
        if g.is_some() {
            // `x` holds the capped row now: the softcap is already applied
            fill_ignored_grad(x, None);
        }
        return out;
    };
    if cfg.want_acc {
        out.correct = row_argmax(x) == Some(y);
    }
    // 3. losses
    let lsm = |v: A| (v - m) - log_sum;
    let w_y = cfg.w(y);
    out.nll = -x.get(y).map_or(zero, |&v| lsm(v)) * w_y;
    if let Some(sc) = cfg.z_scale {
        out.z = sc * (lse * lse);
    }
    // upstream coefficients on lsm: G_y = w_y·a, G_k −= b·w_k
    let (a, b, a_z) = match g {
        Some(g) => grad_coefs(cfg, g, lse),
        None => (zero, zero, None),
    };
    let mut sum_g = 0f64;
    if cfg.smoothing {
        let mut sm = 0f64;
        for (k, &v) in x.iter().enumerate() {
            let l = lsm(v);
            let wk = cfg.w(k);
            sm += match &cfg.weight {
                Some(_) => (l * wk).f64(),
                None => l.f64(),
            };
            let gk = if k == y { w_y * a } else { zero };
            sum_g += (gk + -b * wk).f64();
        }
        out.smooth = -A::c(sm);
    } else {
        sum_g = (w_y * a).f64();
    }
    if g.is_none() {
        return out;
    }
    // 4. gradient, in place
    let sum_g = A::c(sum_g);
    for (k, v) in x.iter_mut().enumerate() {
        let xv = *v;
        let mut gk = if k == y { w_y * a } else { zero };
        if cfg.smoothing {
            gk += -b * cfg.w(k);
        }
        let mut d = gk - lsm(xv).exp() * sum_g;
        if let Some(az) = a_z {
            d += az * (xv - lse).exp();
        }
        if let (Some(c), Some(&t)) = (cfg.softcap, tanh_buf.get(k)) {
            d = ((d * c) * (A::one() - t * t)) / c;
        }
        *v = d;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Validation and reduction, shared with the fused linear losses
// ---------------------------------------------------------------------------------------------

/// Rejects a label smoothing outside `[0, 1]` or NaN (as `cross_entropy`).
fn check_label_smoothing(op: &'static str, eps: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&eps) {
        Ok(eps)
    } else {
        Err(Error::invalid_option(op, "label_smoothing", eps, "label_smoothing must be between 0.0 and 1.0"))
    }
}

/// Validates the extras' options for `classes` classes and builds the row configuration.
pub(crate) fn row_config<T: Element>(
    op: &'static str,
    opts: &CrossEntropyExtrasOptions<'_, T>,
    tg: &IndexTargets<T::Acc>,
    classes: usize,
) -> Result<CeRowConfig<T::Acc>> {
    let reduction = opts.reduction.reject_batchmean(op)?;
    let eps = check_label_smoothing(op, opts.label_smoothing)?;
    if !opts.lse_square_scale.is_finite() {
        return Err(Error::invalid_option(op, "lse_square_scale", opts.lse_square_scale, "must be finite"));
    }
    if let Some(c) = opts.softcap {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid_option(op, "softcap", c, "must be a finite number > 0"));
        }
    }
    let count = tg.class.iter().filter(|c| c.is_some()).count();
    Ok(CeRowConfig {
        weight: tg.weight.clone(),
        smoothing: eps > 0.0,
        keep: T::Acc::c(1.0 - eps),
        eps_c: T::Acc::c(eps / classes as f64),
        z_scale: (opts.lse_square_scale != 0.0).then(|| T::Acc::c(opts.lse_square_scale)),
        softcap: opts.softcap.map(T::Acc::c),
        mean_norm: (reduction == Reduction::Mean)
            .then(|| (T::Acc::c(tg.total_weight), T::Acc::c(count as f64))),
        want_lse: opts.return_lse,
        want_acc: opts.return_token_accuracy,
    })
}

/// The reduced outputs built from the per-row results (summed in row order, in f64).
pub(crate) struct Reduced<T> {
    pub(crate) loss: Loss<T>,
    pub(crate) z_loss: Loss<T>,
    pub(crate) lse: Option<Array1<T>>,
    pub(crate) token_accuracy: Option<Loss<f64>>,
}

/// Reduces the per-row results exactly as `F.cross_entropy` (+ the z-loss as Liger).
pub(crate) fn reduce_rows<T: Element>(
    op: &'static str,
    opts: &CrossEntropyExtrasOptions<'_, T>,
    cfg: &CeRowConfig<T::Acc>,
    tg: &IndexTargets<T::Acc>,
    rows: &[CeRowOut<T::Acc>],
) -> Result<Reduced<T>> {
    let n = rows.len();
    let kept = tg.class.iter().filter(|c| c.is_some()).count();
    let ce_row = |r: &CeRowOut<T::Acc>| {
        if cfg.smoothing { cfg.keep * r.nll + r.smooth * cfg.eps_c } else { r.nll }
    };
    let z_on = cfg.z_scale.is_some();
    let (loss, z_loss) = match opts.reduction {
        Reduction::None => {
            let total: Vec<T> =
                rows.iter().map(|r| T::from_acc(if z_on { ce_row(r) + r.z } else { ce_row(r) })).collect();
            let z: Vec<T> = rows.iter().map(|r| T::from_acc(r.z)).collect();
            (
                Loss::Elementwise(array_from_vec(op, &[n], total)?),
                Loss::Elementwise(array_from_vec(op, &[n], z)?),
            )
        }
        red => {
            let (mut nll, mut smooth, mut z) = (0f64, 0f64, 0f64);
            for r in rows {
                nll += r.nll.f64();
                smooth += r.smooth.f64();
                z += r.z.f64();
            }
            let (ce, zl) = if red == Reduction::Mean {
                let nll_m = T::Acc::c(mean_of(nll, tg.total_weight, n));
                let ce = if cfg.smoothing {
                    cfg.keep * nll_m + T::Acc::c(mean_of(smooth, tg.total_weight, n)) * cfg.eps_c
                } else {
                    nll_m
                };
                (ce, T::Acc::c(mean_of(z, kept as f64, n)))
            } else {
                let ce = if cfg.smoothing {
                    cfg.keep * T::Acc::c(nll) + T::Acc::c(smooth) * cfg.eps_c
                } else {
                    T::Acc::c(nll)
                };
                (ce, T::Acc::c(z))
            };
            let total = if z_on { ce + zl } else { ce };
            (
                Loss::Scalar(T::from_acc(total)),
                Loss::Scalar(T::from_acc(if z_on { zl } else { T::Acc::zero() })),
            )
        }
    };
    let lse =
        if opts.return_lse { Some(Array1::from_iter(rows.iter().map(|r| T::from_acc(r.lse)))) } else { None };
    let token_accuracy = if opts.return_token_accuracy {
        let one = |b: bool| if b { 1.0 } else { 0.0 };
        Some(match opts.reduction {
            Reduction::None => {
                let v: Vec<f64> = rows.iter().map(|r| one(r.correct)).collect();
                Loss::Elementwise(array_from_vec(op, &[n], v)?)
            }
            _ => {
                let correct: f64 = rows.iter().map(|r| one(r.correct)).sum();
                Loss::Scalar(correct / kept as f64)
            }
        })
    } else {
        None
    };
    Ok(Reduced { loss, z_loss, lse, token_accuracy })
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
    let shape = input.shape().to_vec();
    let x = input
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::bad_rank(op, "input", &shape, "2 dimensions (rows × classes)"))?;
    extras_2d(op, x, target.into_dyn(), opts, grad_output)
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
/// use infoloss::ce_extras::{CrossEntropyExtrasOptions, cross_entropy_extras};
/// use infoloss::{Reduction, ndarray::array};
/// let x = array![[1.0f64, 2.0, 3.0], [0.5, -1.0, 2.0]];
/// let y = array![2i64, 0];
/// let opts = CrossEntropyExtrasOptions { lse_square_scale: 0.01, softcap: Some(2.0), ..Default::default() };
/// let out = cross_entropy_extras(x.view(), y.view(), &opts)?;
/// // torch (float64): xc = 2*torch.tanh(x/2); lse = torch.logsumexp(xc, 1)
/// //   F.cross_entropy(xc, y) + (0.01 * lse.pow(2)).mean(), then .backward()
/// assert!((out.loss.scalar().unwrap() - 1.1366601080888337).abs() < 1e-12);
/// assert!((out.z_loss.scalar().unwrap() - 0.05117482166635792).abs() < 1e-12);
/// assert!((out.grad[[0, 2]] - (-0.04641830443011503)).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn cross_entropy_extras<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, i64, D2>,
    opts: &CrossEntropyExtrasOptions<'_, T>,
) -> Result<CrossEntropyExtrasOutput<T>> {
    extras_core("cross_entropy_extras", input, target, opts, &GradOutput::one())
}

/// Gradient of [`cross_entropy_extras`]'s total loss with respect to the logits for an upstream
/// gradient `grad_output`: a scalar (or 0-d array) for `Mean`/`Sum`, an `(N,)` array (or a scalar for
/// every row) for `None`.
///
/// # Formula
///
/// `grad_output ×` the gradient of [`cross_entropy_extras`] (per row for `None`); see there.
///
/// # PyTorch
///
/// `x.grad` after `loss.backward(g)` with the expression of [`cross_entropy_extras`].
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
            let out = cross_entropy_extras(x.view(), y.view(), &o).unwrap();
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
            let e = cross_entropy_extras(x.view(), y.view(), &o).unwrap_err();
            assert!(matches!(e, Error::InvalidOption { .. }), "{e}");
        }
        let e = cross_entropy_extras(
            array![[1.0f64, 2.0], [0.0, 1.0]].view(),
            array![0i64].view(),
            &CrossEntropyExtrasOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("[2, 2]") && e.to_string().contains("[1]"), "{e}");
        let e = cross_entropy_extras(array![1.0f64, 2.0].view(), array![0i64].view(), &Default::default())
            .unwrap_err();
        assert!(matches!(e, Error::BadRank { .. }), "{e}");
        let e = cross_entropy_extras(x.view(), array![2i64].view(), &Default::default()).unwrap_err();
        assert_eq!(e.to_string(), "cross_entropy_extras: target 2 at [0] is out of range for 2 classes");
    }
}
