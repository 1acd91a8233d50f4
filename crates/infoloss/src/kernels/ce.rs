//! Fused cross-entropy row kernels: a row's loss terms and its gradient with one `exp` per element.

use super::simd::abs;
use crate::base::checks;
use crate::base::shape::check_same_shape;
use pulp::{Simd, WithSimd};

use super::Kernels;
use super::alloc::Scratch;
use super::row::{
    Bf16Src, InPlace, Lin, OnlineRow, block_len, coef, online_row, online_row_io, rescale_blocks,
};
use super::simd::load_tail_fill;
use super::simd::narrow_bf16;
use super::vmap::{VecZip, VecZip2, zip_in_place, zip2_in_place};
use crate::{Error, Result};

/// What [`cross_entropy_row_f32`] returns about one row with a class-index target `y`.
///
/// With `lsm = log_softmax(x)`: the unreduced loss of the row is
/// `(1 − ε)·(−w_y·lsm_y) + (ε/C)·smooth` (see [`CeRow::loss`]); PyTorch's `'mean'` divides the sums of
/// both parts by `W = Σ_rows w_y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CeRow {
    /// Maximum `m` of the row's non-NaN logits (`-inf` if there are none).
    pub max: f32,
    /// `ln Σ_c exp(x_c − m)`, rounded to `f32` (NaN for rows whose log-softmax is NaN).
    pub ln_sum: f32,
    /// `lsm_y = (x_y − m) − ln_sum`, in `f32` as PyTorch's `log_softmax` computes it.
    pub target_log_prob: f32,
    /// `−Σ_c w_c·lsm_c` (`−Σ_c lsm_c` without weights) in `f64`; `0` when `label_smoothing` is 0.
    pub smooth: f64,
}

impl CeRow {
    /// `ln Σ_c exp(x_c)` = `max + ln_sum`.
    pub fn lse(&self) -> f32 {
        self.max + self.ln_sum
    }

    /// The row's unreduced loss `(1 − ε)·(−w_y·lsm_y) + (ε/C)·smooth` (`w_y = 1` without weights).
    ///
    /// ```
    /// let x = [1.0f32, 2.0, 3.0];
    /// let row = infoloss::kernels::cross_entropy_row_f32(&x, 2, None, 0.0, None, 1.0).unwrap();
    /// assert!((row.loss(1.0, 0.0, 3) - 0.407_605_97).abs() < 1e-6);
    /// ```
    pub fn loss(&self, w_y: f32, label_smoothing: f64, classes: usize) -> f64 {
        let nll = -(w_y as f64) * self.target_log_prob as f64;
        if label_smoothing == 0.0 {
            nll
        } else {
            (1.0 - label_smoothing) * nll + label_smoothing / classes as f64 * self.smooth
        }
    }
}

/// What [`cross_entropy_probs_row_f32`] returns about one row with a probability target.
///
/// ```
/// // a one-hot probability target gives the same loss as the class index
/// let x = [0.5f32, -1.0, 2.0];
/// let p = infoloss::kernels::cross_entropy_probs_row_f32(&x, &[0.0, 0.0, 1.0], None, 0.0, None, 1.0).unwrap();
/// let i = infoloss::kernels::cross_entropy_row_f32(&x, 2, None, 0.0, None, 1.0).unwrap();
/// assert!((p.loss - i.loss(1.0, 0.0, 3)).abs() < 1e-6);
/// assert_eq!(p.target_mass, 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CeProbsRow {
    /// Row maximum `m` (as in [`CeRow::max`]).
    pub max: f32,
    /// `ln Σ_c exp(x_c − m)` rounded to `f32`.
    pub ln_sum: f32,
    /// The row's loss `−Σ_c w_c·t'_c·lsm_c` in `f64`, with `t' = t·(1−ε) + ε/C`.
    pub loss: f64,
    /// `Σ_c w_c·t'_c` in `f64` (the factor of `p` in the gradient).
    pub target_mass: f64,
}

#[cold]
#[inline(never)]
fn weight_mismatch(op: &'static str, classes: usize, w: usize) -> Error {
    Error::shape_mismatch(op, "input row", &[classes], "weight", &[w], "must have one weight per class")
}

/// The checks of a class-index row of `n` logits: `target < n`, one weight per class.
fn check_index_row(op: &'static str, n: usize, target: usize, weight: Option<&[f32]>) -> Result<()> {
    if target >= n {
        return Err(Error::target_out_of_range(op, &[], target as i64, n));
    }
    check_lengths(op, n, weight, None)
}

/// The length checks of a row of `n` logits: one weight per class, a gradient row of `n`.
fn check_lengths(op: &'static str, n: usize, weight: Option<&[f32]>, grad: Option<&[f32]>) -> Result<()> {
    if let Some(w) = weight
        && w.len() != n
    {
        return Err(weight_mismatch(op, n, w.len()));
    }
    match grad {
        Some(g) if g.len() != n => Err(grad_mismatch(op, n, g.len())),
        _ => Ok(()),
    }
}

#[cold]
#[inline(never)]
fn grad_mismatch(op: &'static str, classes: usize, g: usize) -> Error {
    Error::shape_mismatch(op, "input row", &[classes], "gradient row", &[g], "must be equal")
}

// ---------------------------------------------------------------------------------------------
// class-index target

/// The row a class-index kernel reads and the gradient it writes.
enum CeIo<'a> {
    /// Logits in one slice, the gradient (if wanted) into another.
    Split { x: &'a [f32], grad: Option<&'a mut [f32]> },
    /// Logits read from the slice and overwritten with the gradient.
    InPlace(&'a mut [f32]),
    /// `bf16` logits (from `x`, or from `out` itself when `x` is `None`) and a `bf16` gradient into
    /// `out`: pass 1 widens each block into an L1 buffer while it takes the block's max, the
    /// exponentials are cached in an `f32` row, and the finished `f32` gradient is rounded into `out`
    /// — the same bits as widening the row, running the `f32` kernel and rounding its gradient.
    Bf16 { x: Option<&'a [half::bf16]>, out: &'a mut [half::bf16] },
}

struct CeOp<'a> {
    io: CeIo<'a>,
    target: usize,
    weight: Option<&'a [f32]>,
    eps: f64,
    scale: f32,
}

impl WithSimd for CeOp<'_> {
    type Output = CeRow;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> CeRow {
        let smooth = self.eps != 0.0;
        let store = !matches!(self.io, CeIo::Split { grad: None, .. });
        match (store, smooth, self.weight.is_some()) {
            (true, true, true) => ce_row::<S, true, true, true>(simd, self),
            (true, true, false) => ce_row::<S, true, true, false>(simd, self),
            (true, false, true) => ce_row::<S, true, false, true>(simd, self),
            (true, false, false) => ce_row::<S, true, false, false>(simd, self),
            (false, true, true) => ce_row::<S, false, true, true>(simd, self),
            (false, true, false) => ce_row::<S, false, true, false>(simd, self),
            (false, false, true) => ce_row::<S, false, false, true>(simd, self),
            (false, false, false) => ce_row::<S, false, false, false>(simd, self),
        }
    }
}

#[inline(always)]
fn ce_row<S: Simd, const STORE: bool, const LIN: bool, const W: bool>(simd: S, op: CeOp<'_>) -> CeRow {
    let CeOp { io, target, weight, eps, scale } = op;
    let w = weight.unwrap_or_default();
    let lin = Lin { w, t: &[], keep: 1.0, add: 0.0 };
    let widen = |h: Option<&half::bf16>| h.map_or(f32::NAN, |h| h.to_f32());
    // the target's logit, read before an in-place pass 1 overwrites it
    let (n, x_y) = match &io {
        CeIo::Split { x, .. } => (x.len(), x.get(target).copied().unwrap_or(f32::NAN)),
        CeIo::InPlace(b) => (b.len(), b.get(target).copied().unwrap_or(f32::NAN)),
        CeIo::Bf16 { x: Some(x), .. } => (x.len(), widen(x.get(target))),
        CeIo::Bf16 { x: None, out } => (out.len(), widen(out.get(target))),
    };
    let mut cache = None;
    let mut bf16_out = None;
    let (st, out): (OnlineRow, &mut [f32]) = match io {
        CeIo::Split { x, grad } => {
            let out: &mut [f32] = grad.unwrap_or(&mut []);
            (online_row::<S, STORE, LIN, W, false>(simd, x, lin, out), out)
        }
        CeIo::InPlace(buf) => {
            let mut copy = Scratch::any(block_len(n));
            let st =
                online_row_io::<S, true, LIN, W, false>(simd, &mut InPlace { io: buf, copy: &mut copy }, lin);
            (st, buf)
        }
        CeIo::Bf16 { x, out } => {
            let mut copy = Scratch::any(block_len(n));
            let cache = cache.insert(Scratch::any(n));
            let src: &[half::bf16] = x.unwrap_or(&*out);
            let st = online_row_io::<S, true, LIN, W, false>(
                simd,
                &mut Bf16Src { x: src, copy: &mut copy, cache },
                lin,
            );
            bf16_out = Some(out);
            (st, &mut cache[..])
        }
    };
    let row = ce_finish::<S, STORE, LIN, W>(simd, st, out, n, target, x_y, w, eps, scale);
    if let Some(dst) = bf16_out {
        narrow_bf16(out, dst);
    }
    row
}

/// The end of a class-index row: the loss terms from the pass-1 sums and, when `STORE`, pass 2 over
/// the cached exponentials in `out`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ce_finish<S: Simd, const STORE: bool, const LIN: bool, const W: bool>(
    simd: S,
    st: OnlineRow,
    out: &mut [f32],
    n: usize,
    target: usize,
    x_y: f32,
    w: &[f32],
    eps: f64,
    scale: f32,
) -> CeRow {
    let w_y = if W { w.get(target).copied().unwrap_or(f32::NAN) } else { 1.0 };

    if !(st.m.is_finite() && st.s.is_finite()) {
        out.fill(f32::NAN);
        return CeRow {
            max: st.m,
            ln_sum: f32::NAN,
            target_log_prob: f32::NAN,
            smooth: if LIN { f64::NAN } else { 0.0 },
        };
    }
    let ln_s = st.s.ln();
    let ln_sum = ln_s as f32;
    let target_log_prob = (x_y - st.m) - ln_sum;
    // Σ_c w_c: accumulated in pass 1 when weighted and smoothing (only needed then), C otherwise
    let wsum = if W && LIN { st.c } else { n as f64 };
    let smooth_term = if LIN { wsum * ln_s + st.lin } else { 0.0 };

    if STORE {
        let g = scale as f64;
        let (e, c) = (1.0 - eps, eps / n as f64);
        // grad_c = g·[(1−ε)·w_y·(p_c − δ_cy) + (ε/C)·(p_c·Σw − w_c)]
        //        = p_c·A − g·(ε/C)·w_c − δ_cy·g·(1−ε)·w_y
        let a = g * (e * w_y as f64 + c * wsum);
        let b = -(g * c) as f32;
        // The target's own entry `gl_y − p_y·S` (`gl` the upstream gradient of log_softmax, `S = Σ gl`)
        // is evaluated in f32 from `p_y = exp(lsm_y)` rounded to f32, as PyTorch's log_softmax
        // backward does: when `p_y` is close to 1 the difference cancels, and an exact `p_y − 1`
        // would differ from PyTorch's by more than the tolerance we hold (it is more accurate, but
        // fidelity is the point).
        let p_y = target_log_prob.exp();
        let (gl_y, sum) = if LIN {
            let gl = -g * (e * w_y as f64 + c * w_y as f64);
            (gl as f32, (-g * (e * w_y as f64 + c * wsum)) as f32)
        } else {
            let gl = -(w_y * scale);
            (gl, gl)
        };
        let grad_y = gl_y - p_y * sum;
        if W && LIN {
            rescale_blocks_w(simd, &st, a / st.s, b, w, out);
        } else {
            rescale_blocks(simd, &st, a / st.s, if LIN { b } else { 0.0 }, out);
        }
        if let Some(slot) = out.get_mut(target) {
            *slot = grad_y;
        }
    }
    CeRow { max: st.m, ln_sum, target_log_prob, smooth: smooth_term }
}

/// Pass 2 with per-class weights: `out = out·a_b + beta·w`.
#[inline(always)]
fn rescale_blocks_w<S: Simd>(simd: S, st: &OnlineRow, alpha: f64, beta: f32, w: &[f32], out: &mut [f32]) {
    let mut start = 0;
    for b in 0..st.nblocks {
        let end = (start + st.block).min(out.len());
        let ref_b = st.refs.get(b).copied().unwrap_or(f32::NEG_INFINITY);
        let a = (alpha * (ref_b as f64 - st.m as f64).exp()) as f32;
        if let (Some(ob), Some(wb)) = (out.get_mut(start..end), w.get(start..end)) {
            zip_in_place(simd, ob, wb, RescaleW { a, beta });
        }
        start = end;
    }
}

/// `e·a + beta·w`.
#[derive(Clone, Copy)]
struct RescaleW {
    a: f32,
    beta: f32,
}

impl VecZip for RescaleW {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, e: S::f32s, w: S::f32s) -> S::f32s {
        simd.mul_add_f32s(e, simd.splat_f32s(self.a), simd.mul_f32s(simd.splat_f32s(self.beta), w))
    }
}

/// `e·f − g·t'` with `t' = t·keep + add`.
#[derive(Clone, Copy)]
struct ProbsGrad {
    f: f32,
    neg_g: f32,
    keep: f32,
    add: f32,
}

impl VecZip for ProbsGrad {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, e: S::f32s, t: S::f32s) -> S::f32s {
        let (kv, av) = (simd.splat_f32s(self.keep), simd.splat_f32s(self.add));
        let c = coef::<S, false, true>(simd, t, t, kv, av);
        simd.mul_add_f32s(e, simd.splat_f32s(self.f), simd.mul_f32s(simd.splat_f32s(self.neg_g), c))
    }
}

impl VecZip2 for ProbsGrad {
    /// `e·f + ((−g)·w)·t'`, the product rounded in the order of the reference (and PyTorch's
    /// `(−g·w)·t'` upstream gradient of `log_softmax`), so the two terms only differ in `p·S`.
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, e: S::f32s, t: S::f32s, w: S::f32s) -> S::f32s {
        let (kv, av) = (simd.splat_f32s(self.keep), simd.splat_f32s(self.add));
        let tt = coef::<S, false, true>(simd, w, t, kv, av);
        let gw = simd.mul_f32s(simd.splat_f32s(self.neg_g), w);
        simd.mul_add_f32s(e, simd.splat_f32s(self.f), simd.mul_f32s(gw, tt))
    }
}

// ---------------------------------------------------------------------------------------------
// probability target

struct CeProbsOp<'a> {
    x: &'a [f32],
    t: &'a [f32],
    weight: Option<&'a [f32]>,
    eps: f64,
    grad: Option<&'a mut [f32]>,
    scale: f32,
}

impl WithSimd for CeProbsOp<'_> {
    type Output = CeProbsRow;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> CeProbsRow {
        match (self.grad.is_some(), self.weight.is_some()) {
            (true, true) => ce_probs_row::<S, true, true>(simd, self),
            (true, false) => ce_probs_row::<S, true, false>(simd, self),
            (false, true) => ce_probs_row::<S, false, true>(simd, self),
            (false, false) => ce_probs_row::<S, false, false>(simd, self),
        }
    }
}

#[inline(always)]
fn ce_probs_row<S: Simd, const STORE: bool, const W: bool>(simd: S, op: CeProbsOp<'_>) -> CeProbsRow {
    let CeProbsOp { x, t, weight, eps, grad, scale } = op;
    let n = x.len();
    let w = weight.unwrap_or_default();
    // t' = t·(1−ε) + ε/C with both factors rounded to f32, as PyTorch evaluates it on f32 tensors
    let keep = (1.0 - eps) as f32;
    let add = (eps / n.max(1) as f64) as f32;
    let lin = Lin { w, t, keep, add };
    let mut dummy: [f32; 0] = [];
    let out: &mut [f32] = match grad {
        Some(g) => g,
        None => &mut dummy,
    };
    if n == 0 {
        return CeProbsRow { max: f32::NEG_INFINITY, ln_sum: f32::NEG_INFINITY, loss: 0.0, target_mass: 0.0 };
    }
    let st = online_row::<S, STORE, true, W, true>(simd, x, lin, out);
    if !(st.m.is_finite() && st.s.is_finite()) {
        out.fill(f32::NAN);
        return CeProbsRow { max: st.m, ln_sum: f32::NAN, loss: f64::NAN, target_mass: st.c };
    }
    let ln_s = st.s.ln();
    let loss = st.c * ln_s + st.lin;
    // The closed form `Σc·ln_s + Σ c·(m − x)` differs from PyTorch's `−Σ t'·lsm` where an infinite
    // `t'` meets `m − x = 0` (`inf·0` is NaN, PyTorch's `inf·lsm` is ±inf) and where products
    // overflow `f32` in one form but not the other: such rows take the reference's arithmetic.
    if !loss.is_finite() || may_overflow::<S, W>(simd, x, t, w, keep, add, st.m, ln_s) {
        return exact_probs_row::<STORE, W>(x, t, w, eps, keep, add, st.m, scale, out);
    }
    if STORE {
        // grad_c = g·(p_c·Σ_k w_k t'_k − w_c t'_c)
        let g = scale as f64;
        let alpha = g * st.c / st.s;
        let mut start = 0;
        for b in 0..st.nblocks {
            let end = (start + st.block).min(n);
            let ref_b = st.refs.get(b).copied().unwrap_or(f32::NEG_INFINITY);
            let op = ProbsGrad {
                f: (alpha * (ref_b as f64 - st.m as f64).exp()) as f32,
                neg_g: -scale,
                keep,
                add,
            };
            let ob = out.get_mut(start..end).unwrap_or_default();
            let tb = t.get(start..end).unwrap_or_default();
            if W {
                let wb = w.get(start..end).unwrap_or_default();
                zip2_in_place(simd, ob, tb, wb, op);
            } else {
                zip_in_place(simd, ob, tb, op);
            }
            start = end;
        }
    }
    CeProbsRow { max: st.m, ln_sum: ln_s as f32, loss, target_mass: st.c }
}

/// Whether a product `w_c·t'_c·(m − x_c)` or `t'_c·lsm_c` (or a lane sum of them) of the row can come
/// near `f32::MAX`: then the closed form and the reference's per-element products may overflow in
/// different places. A bound `n·max_c(|t'_c|·max(1, |w_c|))·max(1, m − min x + |ln_s|)` below 2^120
/// rules it out. NaN targets or weights need no care here: they make the closed form NaN.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn may_overflow<S: Simd, const W: bool>(
    simd: S,
    x: &[f32],
    t: &[f32],
    w: &[f32],
    keep: f32,
    add: f32,
    m: f32,
    ln_s: f64,
) -> bool {
    let (xh, xt) = S::as_simd_f32s(x);
    let (th, tt) = S::as_simd_f32s(t);
    let (wh, wt) = S::as_simd_f32s(if W { w } else { t });
    let (kv, av, one) = (simd.splat_f32s(keep), simd.splat_f32s(add), simd.splat_f32s(1.0));
    // (a function, not a closure: a closure would not inherit the SIMD target features)
    #[inline(always)]
    fn coef_bound<S: Simd, const W: bool>(
        simd: S,
        kv: S::f32s,
        av: S::f32s,
        one: S::f32s,
        tv: S::f32s,
        wv: S::f32s,
    ) -> S::f32s {
        let c = abs(simd, simd.add_f32s(simd.mul_f32s(tv, kv), av));
        if W { simd.mul_f32s(c, simd.max_f32s(one, abs(simd, wv))) } else { c }
    }
    let (mut q, mut lo) = (simd.splat_f32s(0.0), simd.splat_f32s(f32::INFINITY));
    for ((xv, tv), wv) in xh.iter().zip(th).zip(wh) {
        q = simd.max_f32s(q, coef_bound::<S, W>(simd, kv, av, one, *tv, *wv));
        lo = simd.min_f32s(lo, *xv);
    }
    if !xt.is_empty() {
        let (tv, wv) = (load_tail_fill(simd, tt, 0.0), load_tail_fill(simd, wt, 0.0));
        q = simd.max_f32s(q, coef_bound::<S, W>(simd, kv, av, one, tv, wv));
        lo = simd.min_f32s(lo, load_tail_fill(simd, xt, f32::INFINITY));
    }
    let (q, lo) = (simd.reduce_max_f32s(q) as f64, simd.reduce_min_f32s(lo) as f64);
    let span = (m as f64 - lo + ln_s.abs()).max(1.0);
    let bound = x.len() as f64 * q * span;
    // a NaN bound (an infinite span times a zero target) counts as a risk too
    bound.is_nan() || bound >= 2f64.powi(120)
}

/// One probability-target row computed as the reference (`cross_entropy::ce_probs_core`, PyTorch's
/// `log_softmax`, then `−Σ_c (lsm_c·t'_c)·w_c`) does, element by element in `f32`, for the rows
/// [`may_overflow`] flags; the gradient as `log_softmax`'s backward of `g_c = ((−g)·w_c)·t'_c`.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn exact_probs_row<const STORE: bool, const W: bool>(
    x: &[f32],
    t: &[f32],
    w: &[f32],
    eps: f64,
    keep: f32,
    add: f32,
    m: f32,
    scale: f32,
    out: &mut [f32],
) -> CeProbsRow {
    let mut s = 0f64;
    for &v in x {
        s += (v - m).exp() as f64;
    }
    let ln_sum = s.ln() as f32;
    let target = |c: usize| {
        let tv = t.get(c).copied().unwrap_or(f32::NAN);
        if eps > 0.0 { tv * keep + add } else { tv }
    };
    let weight = |c: usize| if W { w.get(c).copied().unwrap_or(f32::NAN) } else { 1.0 };
    let (mut loss, mut mass, mut g_sum) = (0f64, 0f64, 0f64);
    for (c, &v) in x.iter().enumerate() {
        let (lsm, tv, wc) = ((v - m) - ln_sum, target(c), weight(c));
        loss += if W { (lsm * tv * wc) as f64 } else { (lsm * tv) as f64 };
        mass += if W { (wc * tv) as f64 } else { tv as f64 };
        if STORE {
            let g = if W { -scale * wc * tv } else { -scale * tv };
            g_sum += g as f64;
            if let Some(slot) = out.get_mut(c) {
                *slot = g;
            }
        }
    }
    if STORE {
        let g_sum = g_sum as f32;
        for (o, &v) in out.iter_mut().zip(x) {
            *o -= ((v - m) - ln_sum).exp() * g_sum;
        }
    }
    CeProbsRow { max: m, ln_sum, loss: -loss, target_mass: mass }
}

impl Kernels {
    /// Fused cross-entropy row; see [`cross_entropy_row_f32`].
    pub fn cross_entropy_row_f32(
        self,
        x: &[f32],
        target: usize,
        weight: Option<&[f32]>,
        label_smoothing: f64,
        grad: Option<&mut [f32]>,
        grad_scale: f32,
    ) -> Result<CeRow> {
        const OP: &str = "cross_entropy_row_f32";
        let n = x.len();
        check_index_row(OP, n, target, weight)?;
        check_lengths(OP, n, None, grad.as_deref())?;
        let eps = checks::label_smoothing(OP, label_smoothing)?;
        Ok(self.run(CeOp { io: CeIo::Split { x, grad }, target, weight, eps, scale: grad_scale }))
    }

    /// The class-index row kernel on `bf16` logits (`x`, or `out` itself when `x` is `None`) with
    /// the gradient rounded into `out`: bit for bit the `f32` kernel on the widened row followed by
    /// rounding its gradient, without a widened copy of the row (the driver of the half-precision
    /// cross-entropy).
    pub(crate) fn cross_entropy_row_bf16(
        self,
        x: Option<&[half::bf16]>,
        out: &mut [half::bf16],
        target: usize,
        weight: Option<&[f32]>,
        label_smoothing: f64,
        grad_scale: f32,
    ) -> Result<CeRow> {
        const OP: &str = "cross_entropy_row_bf16";
        if let Some(x) = x
            && x.len() != out.len()
        {
            return Err(grad_mismatch(OP, x.len(), out.len()));
        }
        check_index_row(OP, out.len(), target, weight)?;
        let eps = checks::label_smoothing(OP, label_smoothing)?;
        Ok(self.run(CeOp { io: CeIo::Bf16 { x, out }, target, weight, eps, scale: grad_scale }))
    }

    /// Fused cross-entropy row computed in place; see [`cross_entropy_row_in_place_f32`].
    pub fn cross_entropy_row_in_place_f32(
        self,
        row: &mut [f32],
        target: usize,
        weight: Option<&[f32]>,
        label_smoothing: f64,
        grad_scale: f32,
    ) -> Result<CeRow> {
        const OP: &str = "cross_entropy_row_in_place_f32";
        check_index_row(OP, row.len(), target, weight)?;
        let eps = checks::label_smoothing(OP, label_smoothing)?;
        Ok(self.run(CeOp { io: CeIo::InPlace(row), target, weight, eps, scale: grad_scale }))
    }

    /// Fused cross-entropy row with a probability target; see [`cross_entropy_probs_row_f32`].
    pub fn cross_entropy_probs_row_f32(
        self,
        x: &[f32],
        target: &[f32],
        weight: Option<&[f32]>,
        label_smoothing: f64,
        grad: Option<&mut [f32]>,
        grad_scale: f32,
    ) -> Result<CeProbsRow> {
        const OP: &str = "cross_entropy_probs_row_f32";
        let n = x.len();
        check_same_shape(OP, "input row", &[n], "target row", &[target.len()])?;
        check_lengths(OP, n, weight, grad.as_deref())?;
        let eps = checks::label_smoothing(OP, label_smoothing)?;
        Ok(self.run(CeProbsOp { x, t: target, weight, eps, grad, scale: grad_scale }))
    }
}

/// One row of `F.cross_entropy` with a class-index target, forward and (optionally) backward,
/// with one `exp` per element.
///
/// `x` is the row of `C` logits, `target` the class `y` (not the ignore index: ignored rows are the
/// caller's, they have loss 0 and a zero gradient), `weight` the optional per-class weights `w`
/// (length `C`), `label_smoothing` ε ≤ 1 (a negative or NaN ε means no smoothing, as in PyTorch). Returns the row's loss terms ([`CeRow`]); when
/// `grad` is given, writes the gradient of the row's loss scaled by `grad_scale = g` (the upstream
/// gradient divided by the mean's denominator `W`, or 1 for `'sum'`):
///
/// `grad_c = g·[(1 − ε)·w_y·(p_c − δ_cy) + (ε/C)·(p_c·Σ_k w_k − w_c)]`, `p = softmax(x)`
///
/// (without weights: `g·(p_c − (1 − ε)·δ_cy − ε/C)`), matching PyTorch's closed form. Pass 1 writes
/// `exp(x − m_running)` into `grad` while taking the online max and sums (`Σ w_c·(m − x_c)` and
/// `Σ w_c` when ε > 0); pass 2 turns them into the gradient from cache. Rows whose log-softmax is NaN
/// (a NaN or `+inf` logit, or all logits `-inf`) return NaN terms and a NaN gradient; a `-inf`
/// logit at the target gives `target_log_prob = -inf` and a finite gradient, as in PyTorch.
///
/// # Errors
/// `target ≥ C` ([`Error::TargetOutOfRange`]), `weight` or `grad` of a length other than `C`
/// ([`Error::ShapeMismatch`]), ε > 1 ([`Error::InvalidOption`]).
///
/// ```
/// let x = [1.0f32, 2.0, 3.0];
/// let mut g = [0.0f32; 3];
/// let row = infoloss::kernels::cross_entropy_row_f32(&x, 0, None, 0.0, Some(&mut g), 1.0).unwrap();
/// // torch.nn.functional.cross_entropy(torch.tensor([[1., 2., 3.]]), torch.tensor([0])) = 2.4076
/// assert!((row.loss(1.0, 0.0, 3) - 2.407_606).abs() < 1e-6);
/// // softmax − onehot
/// assert!((g[0] - (0.090_030_57 - 1.0)).abs() < 1e-6);
/// assert!((g[2] - 0.665_240_94).abs() < 1e-6);
/// ```
pub fn cross_entropy_row_f32(
    x: &[f32],
    target: usize,
    weight: Option<&[f32]>,
    label_smoothing: f64,
    grad: Option<&mut [f32]>,
    grad_scale: f32,
) -> Result<CeRow> {
    Kernels::new().cross_entropy_row_f32(x, target, weight, label_smoothing, grad, grad_scale)
}

/// [`cross_entropy_row_f32`] with the gradient written over the logits: `row` holds the logits on
/// entry and the gradient (scaled by `grad_scale`) on return, bit for bit what
/// `cross_entropy_row_f32(&x, …, Some(&mut g), grad_scale)` writes into `g` — the training path,
/// where the logits are dead after the loss. The row is read from memory once (each block of at
/// most `C/64` rounded up to 512 elements is copied into an L1-resident buffer before its pass 1);
/// no row-sized buffer is allocated.
///
/// # Errors
/// As [`cross_entropy_row_f32`]; on error the row is untouched.
///
/// ```
/// let mut row = [1.0f32, 2.0, 3.0];
/// let out = infoloss::kernels::cross_entropy_row_in_place_f32(&mut row, 0, None, 0.0, 1.0).unwrap();
/// assert!((out.loss(1.0, 0.0, 3) - 2.407_606).abs() < 1e-6);
/// // softmax − onehot, where the logits were
/// assert!((row[0] - (0.090_030_57 - 1.0)).abs() < 1e-6);
/// assert!((row[2] - 0.665_240_94).abs() < 1e-6);
/// ```
pub fn cross_entropy_row_in_place_f32(
    row: &mut [f32],
    target: usize,
    weight: Option<&[f32]>,
    label_smoothing: f64,
    grad_scale: f32,
) -> Result<CeRow> {
    Kernels::new().cross_entropy_row_in_place_f32(row, target, weight, label_smoothing, grad_scale)
}

/// One row of `F.cross_entropy` with a probability target `t` (same length as `x`), forward and
/// (optionally) backward, with one `exp` per element.
///
/// With label smoothing the target is `t' = t·(1 − ε) + ε/C` (both factors rounded to `f32`, as
/// PyTorch computes it). Returns `loss = −Σ_c w_c·t'_c·log_softmax(x)_c` and `Σ_c w_c·t'_c`; when
/// `grad` is given writes `grad_c = g·(p_c·Σ_k w_k t'_k − w_c·t'_c)` with `g = grad_scale` (PyTorch
/// divides by `N` for `'mean'`, not by the weights). The gradient with respect to the target,
/// `−g·(1 − ε)·w ⊙ log_softmax(x)`, is available through [`log_softmax_f32`](super::log_softmax_f32).
/// A zero target entry at a `-inf` logit gives a NaN loss (`0·inf`), as in PyTorch.
///
/// # Errors
/// `target`, `weight` or `grad` of a length other than `x`'s ([`Error::ShapeMismatch`]),
/// ε > 1 ([`Error::InvalidOption`]); a negative or NaN ε means no smoothing, as in PyTorch.
///
/// ```
/// let x = [1.0f32, 2.0, 3.0];
/// let t = [0.5f32, 0.0, 0.5];
/// let mut g = [0.0f32; 3];
/// let row = infoloss::kernels::cross_entropy_probs_row_f32(&x, &t, None, 0.0, Some(&mut g), 1.0).unwrap();
/// // torch: F.cross_entropy(torch.tensor([[1., 2., 3.]]), torch.tensor([[.5, 0., .5]])) = 1.4076
/// assert!((row.loss - 1.407_606).abs() < 1e-6);
/// assert!((g[0] - (0.090_030_57 - 0.5)).abs() < 1e-6);
/// ```
pub fn cross_entropy_probs_row_f32(
    x: &[f32],
    target: &[f32],
    weight: Option<&[f32]>,
    label_smoothing: f64,
    grad: Option<&mut [f32]>,
    grad_scale: f32,
) -> Result<CeProbsRow> {
    Kernels::new().cross_entropy_probs_row_f32(x, target, weight, label_smoothing, grad, grad_scale)
}
