//! The cross-entropy row with the extras (z-loss, logit softcap, log-sum-exp, token accuracy), written over
//! the logits, and the validation and reduction around it: `cross_entropy_extras` and the fused linear
//! cross-entropy (which runs it on each chunk of logits it computes) share them.

use ndarray::Array1;
use num_traits::Zero;

use crate::base::array::array_from_vec;
use crate::base::class_targets::IndexTargets;
use crate::base::outputs::mean_of;
use crate::options::CrossEntropyExtrasOptions;
use crate::rows::softmax_rows::{row_logsumexp, row_max};
use crate::{Element, Error, Loss, Real, Reduction, Result};

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

/// The logit softcap over the row, `x ← c·tanh(x/c)`, keeping each `tanh(x/c)` in `tanh_buf` (cleared
/// first) for the gradient's `1 − t²`.
#[inline]
pub(crate) fn softcap_row<A: Real>(x: &mut [A], c: A, tanh_buf: &mut Vec<A>) {
    tanh_buf.clear();
    tanh_buf.reserve(x.len());
    for v in x.iter_mut() {
        let t = (*v / c).tanh();
        tanh_buf.push(t);
        *v = c * t;
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
        softcap_row(x, c, tanh_buf);
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

/// Rejects a label smoothing outside `[0, 1]` or NaN (as `cross_entropy`).
pub(crate) fn check_label_smoothing(op: &'static str, eps: f64) -> Result<f64> {
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
