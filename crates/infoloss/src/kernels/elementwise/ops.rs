//! The elementwise formulas, one vector at a time: `kl_div`, BCE and BCE with logits as [`PointOp`]s.

use super::*;

/// One vector of each operand (absent operands hold 1, the upstream gradient its constant).
#[derive(Clone, Copy)]
pub(crate) struct Lanes<V> {
    pub(crate) x: V,
    pub(crate) t: V,
    pub(crate) w: V,
    pub(crate) p: V,
    pub(crate) g: V,
}

/// One vector of each result (unrequested ones are unspecified); `bad` is 1 in lanes whose inputs
/// are outside the loss's domain, else 0.
#[derive(Clone, Copy)]
pub(crate) struct Outs<V> {
    pub(crate) loss: V,
    pub(crate) grad_input: V,
    pub(crate) grad_target: V,
    pub(crate) bad: V,
}

impl<V: Copy> Outs<V> {
    /// Every result 0.
    #[inline(always)]
    pub(crate) fn zero<S: Simd<f32s = V>>(simd: S) -> Self {
        let z = simd.splat_f32s(0.0);
        Outs { loss: z, grad_input: z, grad_target: z, bad: z }
    }
}

/// An elementwise loss: its loss term and gradients for one vector of operands.
///
/// Implemented by small `Copy` structs with `#[inline(always)]` methods, never closures (see
/// `vmap.rs`).
pub(crate) trait PointOp: Copy + Send + Sync + 'static {
    /// Whether `Outs::bad` is computed (inputs outside `[0, 1]` for `binary_cross_entropy`).
    const CHECKS: bool;
    /// Whether `bf16` jobs convert in registers ([`pair_tile`]). Two formula calls per loop
    /// iteration need twice the registers: a win for a light formula (`kl_div`), level for unweighted
    /// BCE (and unmeasured with weights, so off), a loss for BCE with logits and a broadcast
    /// `pos_weight` (an `exp`, a `ln` and a division per vector, and the split layout's reordering);
    /// docs/benchmarks-history.md has the measurements.
    const PAIRS: bool;
    /// The requested results for one vector.
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s>;
}

/// `ln(1 + v)` from `u = 1 + v` rounded and `r ≈ 1/u`: `ln(u) + (v − (u − 1))·r`.
///
/// The rounding error `c = v − (u − 1)` of `u` is exact (`|v| ≤ 1`), and `ln(1 + v) = ln(u) + ln(1 + c/u)
/// ≈ ln(u) + c/u`. `r` only scales that small correction: a relative error δ in `r` costs
/// `|c|·δ ≤ ulp(u)·δ/2`, far below an ulp of the result for the `r` the callers pass. Where `u = 1` the
/// result is `v` itself (`log1p(−0) = −0`). NaN propagates; `u = 0` gives `−∞` when `c·r` is finite.
#[inline(always)]
pub(crate) fn log1p_f32s<S: Simd>(simd: S, v: S::f32s, u: S::f32s, r: S::f32s) -> S::f32s {
    log1p_from_ln(simd, v, u, r, ln_f32s(simd, u))
}

/// [`log1p_f32s`] with `ln(u)` already computed (only lanes where `ln_u` is `ln(u)` are meaningful).
#[inline(always)]
pub(crate) fn log1p_from_ln<S: Simd>(simd: S, v: S::f32s, u: S::f32s, r: S::f32s, ln_u: S::f32s) -> S::f32s {
    let one = simd.splat_f32s(1.0);
    let c = simd.sub_f32s(v, simd.sub_f32s(u, one));
    let l = simd.add_f32s(ln_u, simd.mul_f32s(c, r));
    select(simd, simd.equal_f32s(u, one), v, l)
}

/// `log1p(−x)` for `x ∈ [0, 1]`, without a division.
///
/// `u = 1 − x` is exact for `x ≥ ½` (so `c = 0`); below, `w = u − 1 ∈ (−½, 0]` and
/// `r = (1 − w)(1 + w²) = 1/u·(1 − w⁴)`, so `|c|·δ ≤ 2⁻²⁵·w⁴` against a result of at least `|w|`: under
/// 1/16 ulp. `x = 1` gives `ln 0 = −∞`.
#[inline(always)]
pub(crate) fn log1p_neg_unit_f32s<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let (v, u, r) = log1p_neg_unit_parts(simd, x);
    log1p_f32s(simd, v, u, r)
}

/// `(v, u, r)` of [`log1p_neg_unit_f32s`]: `v = −x`, `u = 1 + v`, `r ≈ 1/u`.
#[inline(always)]
pub(crate) fn log1p_neg_unit_parts<S: Simd>(simd: S, x: S::f32s) -> (S::f32s, S::f32s, S::f32s) {
    let one = simd.splat_f32s(1.0);
    let v = neg(simd, x);
    let u = simd.add_f32s(one, v);
    let w = simd.sub_f32s(u, one);
    (v, u, simd.mul_f32s(simd.sub_f32s(one, w), simd.mul_add_f32s(w, w, one)))
}

/// Lanes with `0 ≤ a ≤ 1` (false for NaN).
#[inline(always)]
pub(crate) fn in_unit<S: Simd>(simd: S, a: S::f32s) -> S::m32s {
    let lo = simd.greater_than_or_equal_f32s(a, simd.splat_f32s(0.0));
    simd.and_m32s(lo, simd.less_than_or_equal_f32s(a, simd.splat_f32s(1.0)))
}

/// `std::max(l, −100)` as PyTorch's BCE clamps each log (`l` is never NaN for valid inputs).
#[inline(always)]
pub(crate) fn clamp_log<S: Simd>(simd: S, l: S::f32s) -> S::f32s {
    let lo = simd.splat_f32s(-100.0);
    select(simd, simd.less_than_f32s(l, lo), lo, l)
}

/// `min(a, 0)` as `a < 0 ? a : 0` (0 for NaN, as PyTorch's `log_sigmoid`).
#[inline(always)]
pub(crate) fn min0<S: Simd>(simd: S, a: S::f32s) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    select(simd, simd.less_than_f32s(a, zero), a, zero)
}

/// `v·w` when weighted, then `v / div` when dividing — PyTorch's order for the BCE gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scaling {
    /// Multiply by the weight operand.
    pub(crate) weighted: bool,
    /// Divide by this (the element count for `'mean'`).
    pub(crate) div: Option<f32>,
}

impl Scaling {
    /// `v·w` when weighted (the loss terms: no division).
    #[inline(always)]
    pub(crate) fn weigh<S: Simd>(self, simd: S, v: S::f32s, w: S::f32s) -> S::f32s {
        if self.weighted { simd.mul_f32s(v, w) } else { v }
    }

    /// `v·w` when weighted, then `÷ div` (the gradients).
    #[inline(always)]
    pub(crate) fn apply<S: Simd>(self, simd: S, v: S::f32s, w: S::f32s) -> S::f32s {
        let v = self.weigh(simd, v, w);
        match self.div {
            Some(d) => simd.div_f32s(v, simd.splat_f32s(d)),
            None => v,
        }
    }
}

/// `kl_div`: terms `xlogy(t, t) − t·x` (or `exp(t)·(t − x)` with `log_target`) and their gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KlOp {
    /// Whether `t` holds log-probabilities.
    pub(crate) log_target: bool,
}

impl PointOp for KlOp {
    const CHECKS: bool = false;
    const PAIRS: bool = true;

    #[inline(always)]
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s> {
        let zero = simd.splat_f32s(0.0);
        let mut o = Outs::zero(simd);
        let Lanes { x, t, g, .. } = v;
        let neg_g = neg(simd, g);
        if self.log_target {
            // log-probabilities are ≤ 0: the cheaper exponential gives the same bits there
            let nonpos = simd.less_than_or_equal_f32s(t, zero);
            let e = if simd.first_true_m32s(simd.not_m32s(nonpos)) == S::F32_LANES {
                exp_nonpos_f32s(simd, t)
            } else {
                exp_f32s(simd, t)
            };
            let d = simd.sub_f32s(t, x);
            if want.loss {
                o.loss = simd.mul_f32s(e, d);
            }
            if want.grad_input {
                o.grad_input = neg(simd, simd.mul_f32s(g, e));
            }
            if want.grad_target {
                // autograd of exp(t)·(t − x): (g·(t − x))·exp(t) + g·exp(t)
                o.grad_target = simd.add_f32s(simd.mul_f32s(simd.mul_f32s(g, d), e), simd.mul_f32s(g, e));
            }
            return o;
        }
        if want.loss || want.grad_target {
            let ln_t = ln_f32s(simd, t);
            let t_zero = simd.equal_f32s(t, zero);
            if want.loss {
                // xlogy(t, t): 0 at t = 0, NaN for NaN t (ln gives NaN)
                let xl = select(simd, t_zero, zero, simd.mul_f32s(t, ln_t));
                o.loss = simd.sub_f32s(xl, simd.mul_f32s(t, x));
            }
            if want.grad_target {
                // xlogy(g, t) masked to 0 at t = 0, plus g·t/t, plus (−g)·x
                let xg = select(simd, simd.equal_f32s(g, zero), zero, simd.mul_f32s(g, ln_t));
                let xg = select(simd, simd.equal_f32s(t, t), xg, simd.splat_f32s(f32::NAN));
                let d_self = select(simd, t_zero, zero, xg);
                let d_other = simd.div_f32s(simd.mul_f32s(g, t), t);
                o.grad_target = simd.add_f32s(simd.add_f32s(d_self, d_other), simd.mul_f32s(neg_g, x));
            }
        }
        if want.grad_input {
            o.grad_input = simd.mul_f32s(neg_g, t);
        }
        o
    }
}

/// `binary_cross_entropy`: `((t − 1)·max(log1p(−x), −100) − t·max(ln x, −100))·w` and its gradients
/// (the input one with PyTorch's `max(x·(1 − x), ε)` denominator).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BceOp {
    /// PyTorch's `EPSILON` rounded to the element type.
    pub(crate) eps: f32,
    /// Weight and `'mean'` division of the gradients.
    pub(crate) scaling: Scaling,
}

impl PointOp for BceOp {
    const CHECKS: bool = true;
    const PAIRS: bool = false;

    #[inline(always)]
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s> {
        let zero = simd.splat_f32s(0.0);
        let one = simd.splat_f32s(1.0);
        let Lanes { x, t, w, g, .. } = v;
        let valid = simd.and_m32s(in_unit(simd, x), in_unit(simd, t));
        let mut o = Outs { bad: select(simd, valid, zero, one), ..Outs::zero(simd) };
        if want.loss {
            let t_one = simd.equal_f32s(t, one);
            let hard = simd.or_m32s(simd.equal_f32s(t, zero), t_one);
            let soft = simd.xor_m32s(hard, simd.equal_f32s(one, one));
            let l = if simd.first_true_m32s(soft) == S::F32_LANES {
                // every target 0 or 1: the formula reduces, bit for bit, to −max(ln x, −100) where
                // t = 1 and −max(log1p(−x), −100) + 0 where t = 0 (the other term is a zero; adding
                // +0 gives its sign rule at x = −0), so one logarithm serves both
                let (v, u, r) = log1p_neg_unit_parts(simd, x);
                let ln = ln_f32s(simd, select(simd, t_one, x, u));
                let l1 = log1p_from_ln(simd, v, u, r, ln);
                let l = neg(simd, clamp_log(simd, select(simd, t_one, ln, l1)));
                select(simd, t_one, l, simd.add_f32s(l, zero))
            } else {
                let l1 = clamp_log(simd, log1p_neg_unit_f32s(simd, x));
                let l2 = clamp_log(simd, ln_f32s(simd, x));
                simd.sub_f32s(simd.mul_f32s(simd.sub_f32s(t, one), l1), simd.mul_f32s(t, l2))
            };
            o.loss = self.scaling.weigh(simd, l, w);
        }
        if want.grad_input {
            let d = simd.mul_f32s(simd.sub_f32s(one, x), x);
            let eps = simd.splat_f32s(self.eps);
            let d = select(simd, simd.less_than_f32s(d, eps), eps, d);
            let gi = simd.div_f32s(simd.mul_f32s(g, simd.sub_f32s(x, t)), d);
            o.grad_input = self.scaling.apply(simd, gi, w);
        }
        if want.grad_target {
            // −logit(x)·g, logit(x) = ln(x / (1 − x)) (+∞ at x = 1)
            let logit = ln_f32s(simd, simd.div_f32s(x, simd.sub_f32s(one, x)));
            let logit = select(simd, simd.equal_f32s(x, one), simd.splat_f32s(f32::INFINITY), logit);
            o.grad_target = self.scaling.apply(simd, simd.mul_f32s(neg(simd, logit), g), w);
        }
        o
    }
}

/// The largest `f32` whose exponential is finite (`exp` of the next one rounds to `+∞`).
pub(crate) const EXP_FINITE_MAX_F32: f32 = 88.722_83;

/// `binary_cross_entropy_with_logits`: `((1 − t)·x − lw·logσ(x))·w`, `lw = (p − 1)·t + 1`, and its
/// gradients, as PyTorch's CPU kernel and `FunctionsManual.cpp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BceLogitsOp {
    /// Whether a `pos_weight` operand is given.
    pub(crate) pos_weighted: bool,
    /// Weight and `'mean'` division of the gradients.
    pub(crate) scaling: Scaling,
}

impl PointOp for BceLogitsOp {
    const CHECKS: bool = false;
    const PAIRS: bool = false;

    #[inline(always)]
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s> {
        let zero = simd.splat_f32s(0.0);
        let one = simd.splat_f32s(1.0);
        let mut o = Outs::zero(simd);
        let Lanes { x, t, w, p, g } = v;
        // e = exp(−|x|), one exponential for both σ and logσ
        let need_lsig = want.loss || (want.grad_target && self.pos_weighted);
        let e =
            if want.grad_input || need_lsig { exp_nonpos_f32s(simd, neg(simd, abs(simd, x))) } else { zero };
        // σ(x) = 1 / (1 + exp(−x)) as PyTorch's sigmoid for x ≥ 0 (the same exp(−x), so the same
        // bits); e / (1 + e) below (within an ulp or so of PyTorch's rounding), and 0 where PyTorch's
        // exp(−x) overflows (x < −88.72283: 1/∞)
        let sig = if want.grad_input {
            let pos = simd.greater_than_or_equal_f32s(x, zero);
            let s = simd.div_f32s(select(simd, pos, one, e), simd.add_f32s(one, e));
            select(simd, simd.less_than_f32s(x, simd.splat_f32s(-EXP_FINITE_MAX_F32)), zero, s)
        } else {
            zero
        };
        // logσ(±x) = min(±x, 0) − log1p(e)
        let lp = if need_lsig {
            let u = simd.add_f32s(one, e);
            // 1/u = σ(|x|): σ(x) itself for x ≥ 0 (the same exp(−x), so the same bits), 1 − σ(x)
            // below (relative error ≈ 2⁻²⁴; with |c| ≤ 2⁻²⁴ and a result ≥ 2⁻²⁴ that is under half an
            // ulp); a division when σ is not computed anyway
            let r = if want.grad_input {
                let pos = simd.greater_than_or_equal_f32s(x, zero);
                select(simd, pos, sig, simd.sub_f32s(one, sig))
            } else {
                simd.div_f32s(one, u)
            };
            log1p_f32s(simd, e, u, r)
        } else {
            zero
        };
        let lsig = simd.sub_f32s(min0(simd, x), lp);
        if want.loss {
            let a = simd.mul_f32s(simd.sub_f32s(one, t), x);
            let l = if self.pos_weighted {
                let lw = simd.add_f32s(simd.mul_f32s(simd.sub_f32s(p, one), t), one);
                simd.sub_f32s(a, simd.mul_f32s(lsig, lw))
            } else {
                simd.sub_f32s(a, lsig)
            };
            o.loss = self.scaling.weigh(simd, l, w);
        }
        if want.grad_input {
            let gi = if self.pos_weighted {
                let pt = simd.mul_f32s(p, t);
                let c = simd.sub_f32s(simd.add_f32s(pt, one), t);
                simd.mul_f32s(simd.sub_f32s(simd.mul_f32s(c, sig), pt), g)
            } else {
                simd.mul_f32s(simd.sub_f32s(sig, t), g)
            };
            o.grad_input = self.scaling.apply(simd, gi, w);
        }
        if want.grad_target {
            let gt = if self.pos_weighted {
                let lsig_neg = simd.sub_f32s(min0(simd, neg(simd, x)), lp);
                simd.mul_f32s(simd.sub_f32s(lsig_neg, simd.mul_f32s(lsig, p)), g)
            } else {
                simd.mul_f32s(neg(simd, x), g)
            };
            o.grad_target = self.scaling.apply(simd, gt, w);
        }
        o
    }
}
