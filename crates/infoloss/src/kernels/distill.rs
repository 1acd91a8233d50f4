//! Fused distillation row kernel: forward KL, reverse KL and total variation between
//! `p = softmax(s/T_s)` and `q = softmax(t/T_t)` (plus the hard-label cross-entropy of `s`) with
//! their gradient wrt `s`, in two passes over a row (three for total variation, the last two from
//! cache) and without materializing `p` or `q`.
//!
//! # Pass 1 (one read of `s` and `t`)
//!
//! The row is walked in the blocks of [`block_len`] (at most [`MAX_BLOCKS`]). Per block the raw
//! maxima of `s` and `t` raise the running references `r_s`, `r_t`; then, per element,
//! `α = (s − r_s)/T_s` and `β = (t − r_t)/T_t` (the division as a multiplication by `1/T` split
//! into two `f32`, `x·hi + x·lo`, which rounds about once), `e_a = exp(α)`, `e_b = exp(β)`
//! (cached: `e_a` in the gradient row, `e_b` in a scratch row) and the block sums
//!
//! ```text
//! Z_a = Σ e_a,   Z_b = Σ e_b,   W_q = Σ e_b·(β − α),   V = Σ e_a·u,   Z_1 = Σ exp(s − r_s)
//! ```
//!
//! with `u = (t − t_c)/T_t − α`, `t_c` the teacher logit at the student's running maximum: on the
//! support of `p` the reverse KL's terms `β − α` may all be large and nearly equal (the teacher puts
//! little mass there), and `u` removes that common part exactly, so that the gradient's
//! `E_p[u] − u` keeps its digits.
//!
//! (`Z_1` only for a cross-entropy term at `T_s ≠ 1`). Sums run in `f32` lanes flushed into `f64`
//! every [`CHUNK`] elements. The blocks are combined in `f64` against the final maxima `R_s`,
//! `R_t`: with `f_a = exp((r_s − R_s)/T_s)`, `f_b = exp((r_t − R_t)/T_t)` and the shift
//! `δ = (r_t − R_t)/T_t − (r_s − R_s)/T_s` of `β − α`,
//! `Z_a = Σ_k f_a Z_a(k)`, `W_q = Σ_k f_b (W_q(k) + δ Z_b(k))`, `V = Σ_k f_a (V(k) + γ Z_a(k))`
//! (`γ` the shift of `u`), and
//!
//! ```text
//! KL(q‖p) = W_q/Z_b + ln Z_a − ln Z_b,      KL(p‖q) = −V/Z_a − (t_c − R_t)/T_t + ln Z_b − ln Z_a
//! ```
//!
//! The differences `β − α` are taken relative to each row's own maxima, so the two log-sum-exps
//! that cancel are only `ln Z_a`, `ln Z_b` (not `max/T + ln Z`).
//!
//! # Pass 2 (from cache)
//!
//! Forward KL: `g = c·(p − q) = e_a·(c f_a/Z_a) − e_b·(c f_b/Z_b)`, one multiply-add per element.
//! Reverse KL: `g = c·p·(log p − log q − KL(p‖q)) = c·p·(V/Z_a − u)` with `u` recomputed from `s`
//! and `t` against the final `R_s`, `t_c` (no `exp`). A cross-entropy term adds `c_ce·softmax(s)`: at
//! `T_s = 1` that is `p` (folded into the factor of `e_a`), otherwise `exp(s − R_s)/Z_1` (one more
//! `exp`). The label's entry then gets `− c_ce`. Total variation first sums `|p − q|` and
//! `Σ p·σ` (`σ = ½·sign(p − q)`, `p = e_a·f_a/Z_a`, `q = e_b·f_b/Z_b` in `f32`) from the cache, then
//! writes `g = c·p·(σ − Σ p σ)` from it. Generalized JSD(β), `0 < β < 1`, likewise first walks the cache:
//! per element `p`, `q` (as for total variation), `m = β·q + (1−β)·p`, `λ_p = ln(p/m)`,
//! `λ_q = ln(q/m)` (the vectorized [`ln_f32s`] of the two ratios, one rounding each, so that rows with
//! `p ≈ q` give small logarithms instead of the difference of two large ones), the sums
//! `Σ q·λ_q`, `Σ p·λ_p` (`0·λ = 0`), and stores `λ_p` over `e_b`; then
//! `JSD = β·Σ q λ_q + (1−β)·Σ p λ_p` and the gradient
//! `g = c·(1−β)·p·(λ_p − Σ_j p_j λ_{p,j})` (`∂JSD/∂p_j = (1−β)·ln(p_j/m_j)`: the terms of `∂m/∂p`
//! cancel) is written from it.
//!
//! # Non-finite rows
//!
//! A NaN or infinite logit (or an `f32` overflow of `s − r`) makes a sum or a maximum non-finite;
//! the kernel then returns `None` and callers take the `f64` reference for that row, so special
//! values come out exactly as there.

use super::simd::{abs, select};
use pulp::{Simd, WithSimd};

use super::Kernels;
use super::exp::exp_nonpos_f32s;
use super::ln::{ln_f32s, ln4_f32s};
use super::row::{CHUNK, MAX_BLOCKS, block_len, block_max};
use super::simd::{hsum_f64, load_tail_fill};
use super::vmap::{VecZip, VecZip2, zip_in_place, zip2_in_place};

/// The divergence whose gradient pass 2 writes (both losses are always computed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KdDiv {
    /// `KL(q‖p)`: gradient `c·(p − q)`.
    Forward,
    /// `KL(p‖q)`: gradient `c·p·(log p − log q − KL(p‖q))`.
    Reverse,
    /// Total variation `½·Σ|p − q|`: gradient `c·p·(σ − Σ_j p_j σ_j)`, `σ = ½·sign(p − q)`. Needs
    /// `grad` (its cache) even for the loss alone.
    Tvd,
    /// Generalized JSD with `0 < β < 1` ([`KdRowCfg::beta`]): gradient
    /// `c·(1−β)·p·(λ_p − Σ_j p_j λ_{p,j})`, `λ_p = ln(p/m)`. Needs `grad` (its cache) even for the loss
    /// alone.
    Jsd,
}

impl KdDiv {
    /// Whether pass 2 works from the cache even for the loss alone.
    pub(crate) fn needs_cache(self) -> bool {
        matches!(self, KdDiv::Tvd | KdDiv::Jsd)
    }
}

/// `1/T` as `hi + lo` (two `f32`): `x·hi + x·lo` is `x/T` within about one rounding.
#[derive(Debug, Clone, Copy)]
pub(super) struct InvT {
    pub(super) t: f64,
    pub(super) hi: f32,
    pub(super) lo: f32,
}

impl InvT {
    pub(super) fn new(t: f64) -> InvT {
        let inv = 1.0 / t;
        let hi = inv as f32;
        InvT { t, hi, lo: (inv - hi as f64) as f32 }
    }
}

/// `x/T` as `fma(x, hi, x·lo)`.
#[inline(always)]
pub(super) fn div_t<S: Simd>(simd: S, x: S::f32s, hi: S::f32s, lo: S::f32s) -> S::f32s {
    simd.mul_add_f32s(x, hi, simd.mul_f32s(x, lo))
}

/// What a row computes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KdRowCfg {
    /// Temperature of the student `s` (the gradient's side).
    pub(crate) ts: f64,
    /// Temperature of the teacher `t`.
    pub(crate) tt: f64,
    /// Whose gradient pass 2 writes.
    pub(crate) div: KdDiv,
    /// `β` of [`KdDiv::Jsd`] (unused otherwise).
    pub(crate) beta: f64,
    /// Label of the hard cross-entropy term of `s` at temperature 1, if any.
    pub(crate) label: Option<usize>,
}

/// Where pass 2 writes and with which factors.
pub(crate) struct KdGrad<'a> {
    /// The row's gradient (also pass 1's cache of `e_a`); `s.len()` elements.
    pub(crate) out: &'a mut [f32],
    /// Scratch for `e_b` (forward KL); `s.len()` elements.
    pub(crate) eb: &'a mut [f32],
    /// Factor `c` of the divergence's gradient (any `1/T` already folded in).
    pub(crate) soft: f64,
    /// Factor `c_ce` of the cross-entropy gradient `softmax(s) − onehot(y)`.
    pub(crate) ce: f64,
}

/// A finite row's results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KdRow {
    /// `KL(q‖p)`.
    pub(crate) fkl: f64,
    /// `KL(p‖q)`.
    pub(crate) rkl: f64,
    /// `lse(s) − s_y` (0 without a label).
    pub(crate) ce: f64,
    /// `½·Σ|p − q|` ([`KdDiv::Tvd`] only, else 0).
    pub(crate) tvd: f64,
    /// `β·KL(q‖m) + (1−β)·KL(p‖m)` ([`KdDiv::Jsd`] only, else 0).
    pub(crate) jsd: f64,
}

/// Pass-1 sums of one block, and the references its exponentials were taken against.
#[derive(Debug, Clone, Copy, Default)]
struct BlockSums {
    rs: f32,
    rt: f32,
    tc: f32,
    za: f64,
    zb: f64,
    wq: f64,
    v: f64,
    z1: f64,
}

/// The splatted constants of pass 1 for one block.
#[derive(Clone, Copy)]
struct P1<S: Simd> {
    /// `r_s`, `r_t` as scalars (the fill of the masked tail).
    rs0: f32,
    rt0: f32,
    rs: S::f32s,
    rt: S::f32s,
    tc: S::f32s,
    s_hi: S::f32s,
    s_lo: S::f32s,
    t_hi: S::f32s,
    t_lo: S::f32s,
}

/// Sum slots of the `f32` accumulators.
const ZA: usize = 0;
const ZB: usize = 1;
const WQ: usize = 2;
const V: usize = 3;
const Z1: usize = 4;

/// One vector of pass 1: adds its terms to `acc`, returns `(e_a, e_b)`.
#[inline(always)]
fn step<S: Simd, const CE1: bool>(
    simd: S,
    c: &P1<S>,
    acc: &mut [S::f32s; 5],
    sv: S::f32s,
    tv: S::f32s,
) -> (S::f32s, S::f32s) {
    let xs = simd.sub_f32s(sv, c.rs);
    let xt = simd.sub_f32s(tv, c.rt);
    let a = div_t(simd, xs, c.s_hi, c.s_lo);
    let b = div_t(simd, xt, c.t_hi, c.t_lo);
    let ea = exp_nonpos_f32s(simd, a);
    let eb = exp_nonpos_f32s(simd, b);
    let d = simd.sub_f32s(b, a);
    // β − α against the teacher logit `t_c` at the student's maximum (see `kd_row`)
    let u = simd.sub_f32s(div_t(simd, simd.sub_f32s(tv, c.tc), c.t_hi, c.t_lo), a);
    acc[ZA] = simd.add_f32s(acc[ZA], ea);
    acc[ZB] = simd.add_f32s(acc[ZB], eb);
    acc[WQ] = simd.mul_add_f32s(eb, d, acc[WQ]);
    acc[V] = simd.mul_add_f32s(ea, u, acc[V]);
    if CE1 {
        acc[Z1] = simd.add_f32s(acc[Z1], exp_nonpos_f32s(simd, xs));
    }
    (ea, eb)
}

/// Pass 1 over one block (`s`, `t` and, when `STORE`, `ga`/`gb` of the same length).
#[inline(always)]
fn pass1_block<S: Simd, const STORE: bool, const CE1: bool>(
    simd: S,
    c: &P1<S>,
    s: &[f32],
    t: &[f32],
    ga: &mut [f32],
    gb: &mut [f32],
    out: &mut BlockSums,
) {
    let z = simd.splat_f32s(0.0);
    let mut start = 0;
    while start < s.len() {
        let end = (start + CHUNK).min(s.len());
        let mut acc = [z; 5];
        let (sh, st) = S::as_simd_f32s(s.get(start..end).unwrap_or_default());
        let (th, tt) = S::as_simd_f32s(t.get(start..end).unwrap_or_default());
        if STORE {
            let (ah, at) = S::as_mut_simd_f32s(ga.get_mut(start..end).unwrap_or_default());
            let (bh, bt) = S::as_mut_simd_f32s(gb.get_mut(start..end).unwrap_or_default());
            for (((sv, tv), av), bv) in sh.iter().zip(th).zip(ah.iter_mut()).zip(bh.iter_mut()) {
                (*av, *bv) = step::<S, CE1>(simd, c, &mut acc, *sv, *tv);
            }
            if !st.is_empty() {
                let (ea, eb) = tail::<S, CE1>(simd, c, &mut acc, st, tt);
                simd.partial_store_f32s(at, ea);
                simd.partial_store_f32s(bt, eb);
            }
        } else {
            for (sv, tv) in sh.iter().zip(th) {
                step::<S, CE1>(simd, c, &mut acc, *sv, *tv);
            }
            if !st.is_empty() {
                tail::<S, CE1>(simd, c, &mut acc, st, tt);
            }
        }
        out.za += hsum_f64::<S>(acc[ZA]);
        out.zb += hsum_f64::<S>(acc[ZB]);
        out.wq += hsum_f64::<S>(acc[WQ]);
        out.v += hsum_f64::<S>(acc[V]);
        if CE1 {
            out.z1 += hsum_f64::<S>(acc[Z1]);
        }
        start = end;
    }
}

/// The masked last vector of a chunk: lanes past the end add nothing.
#[inline(always)]
fn tail<S: Simd, const CE1: bool>(
    simd: S,
    c: &P1<S>,
    acc: &mut [S::f32s; 5],
    st: &[f32],
    tt: &[f32],
) -> (S::f32s, S::f32s) {
    let z = simd.splat_f32s(0.0);
    let mask = simd.mask_between_m32s(0, st.len() as u32).mask();
    // the fill makes the extra lanes' arguments 0, so they stay finite
    let sv = load_tail_fill(simd, st, c.rs0);
    let tv = load_tail_fill(simd, tt, c.rt0);
    let mut part = [z; 5];
    let e = step::<S, CE1>(simd, c, &mut part, sv, tv);
    for (a, p) in acc.iter_mut().zip(part) {
        *a = simd.add_f32s(*a, select(simd, mask, p, z));
    }
    e
}

/// `e_a·ca + e_b·ncb` (forward KL; `ncb = −c f_b/Z_b`), both products rounded, so that equal rows
/// (`p = q`) give exactly 0 as the reference does.
#[derive(Clone, Copy)]
struct FklGrad {
    ca: f32,
    ncb: f32,
}

impl VecZip for FklGrad {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, ea: S::f32s, eb: S::f32s) -> S::f32s {
        let p = simd.mul_f32s(ea, simd.splat_f32s(self.ca));
        simd.add_f32s(p, simd.mul_f32s(eb, simd.splat_f32s(self.ncb)))
    }
}

/// Forward KL plus `c1·exp(s − R_s)` (the cross-entropy's softmax at `T_s ≠ 1`).
#[derive(Clone, Copy)]
struct FklGradCe {
    fkl: FklGrad,
    c1: f32,
    rs: f32,
}

impl VecZip2 for FklGradCe {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, ea: S::f32s, eb: S::f32s, s: S::f32s) -> S::f32s {
        let e1 = exp_nonpos_f32s(simd, simd.sub_f32s(s, simd.splat_f32s(self.rs)));
        let rest =
            simd.mul_add_f32s(eb, simd.splat_f32s(self.fkl.ncb), simd.mul_f32s(e1, simd.splat_f32s(self.c1)));
        simd.mul_add_f32s(ea, simd.splat_f32s(self.fkl.ca), rest)
    }
}

/// Reverse KL: `(e_a·pa)·(k − u)` with `u = (t − t_c)/T_t − (s − R_s)/T_s` (0 where `e_a = 0`) plus the cross-entropy's
/// `e_a·cc` (`T_s = 1`) or `c1·exp(s − R_s)` (`CE1`).
#[derive(Clone, Copy)]
struct RklGrad<const CE1: bool> {
    pa: f32,
    k: f32,
    cc: f32,
    c1: f32,
    rs: f32,
    tc: f32,
    inv_s: InvT,
    inv_t: InvT,
}

impl<const CE1: bool> VecZip2 for RklGrad<CE1> {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, ea: S::f32s, s: S::f32s, t: S::f32s) -> S::f32s {
        let xs = simd.sub_f32s(s, simd.splat_f32s(self.rs));
        let a = div_t(simd, xs, simd.splat_f32s(self.inv_s.hi), simd.splat_f32s(self.inv_s.lo));
        let xt = simd.sub_f32s(t, simd.splat_f32s(self.tc));
        let b = div_t(simd, xt, simd.splat_f32s(self.inv_t.hi), simd.splat_f32s(self.inv_t.lo));
        let w = simd.sub_f32s(simd.splat_f32s(self.k), simd.sub_f32s(b, a));
        let p = simd.mul_f32s(ea, simd.splat_f32s(self.pa));
        let z = simd.splat_f32s(0.0);
        // `0·w = 0` (the reference's convention for p = 0)
        let soft = select(simd, simd.equal_f32s(ea, z), z, simd.mul_f32s(p, w));
        let ce = if CE1 { exp_nonpos_f32s(simd, xs) } else { ea };
        let cc = if CE1 { self.c1 } else { self.cc };
        simd.mul_add_f32s(ce, simd.splat_f32s(cc), soft)
    }
}

struct KdOp<'a> {
    s: &'a [f32],
    t: &'a [f32],
    cfg: KdRowCfg,
    grad: Option<KdGrad<'a>>,
}

impl WithSimd for KdOp<'_> {
    type Output = Option<KdRow>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Option<KdRow> {
        let ce1 = self.cfg.label.is_some() && self.cfg.ts != 1.0;
        match (self.grad.is_some(), ce1) {
            (true, true) => kd_row::<S, true, true>(simd, self),
            (true, false) => kd_row::<S, true, false>(simd, self),
            (false, true) => kd_row::<S, false, true>(simd, self),
            (false, false) => kd_row::<S, false, false>(simd, self),
        }
    }
}

#[inline(always)]
fn kd_row<S: Simd, const STORE: bool, const CE1: bool>(simd: S, op: KdOp<'_>) -> Option<KdRow> {
    let KdOp { s, t, cfg, mut grad } = op;
    let n = s.len();
    if n == 0 || t.len() != n {
        return None;
    }
    let (inv_s, inv_t) = (InvT::new(cfg.ts), InvT::new(cfg.tt));
    let block = block_len(n);
    let mut blocks = [BlockSums::default(); MAX_BLOCKS];
    let (mut rs, mut rt) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    // The teacher logit at (the first) maximum of the student: the reverse KL's terms are taken
    // relative to it, `u = (t − t_c)/T_t − (s − r_s)/T_s`, which is small wherever p is not (when
    // both rows agree up to a shift on p's support), so that `E_p[u] − u` keeps its digits.
    let mut tc = 0.0f32;
    let mut nb = 0;
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let sb = s.get(start..end).unwrap_or_default();
        let tb = t.get(start..end).unwrap_or_default();
        let bs = block_max::<S, false>(simd, sb).0;
        if bs > rs {
            rs = bs;
            tc = sb.iter().position(|&v| v == bs).and_then(|j| tb.get(j)).copied().unwrap_or(f32::NAN);
        }
        rt = rt.max(block_max::<S, false>(simd, tb).0);
        let c = P1::<S> {
            rs0: rs,
            rt0: rt,
            rs: simd.splat_f32s(rs),
            rt: simd.splat_f32s(rt),
            tc: simd.splat_f32s(tc),
            s_hi: simd.splat_f32s(inv_s.hi),
            s_lo: simd.splat_f32s(inv_s.lo),
            t_hi: simd.splat_f32s(inv_t.hi),
            t_lo: simd.splat_f32s(inv_t.lo),
        };
        let slot = blocks.get_mut(nb)?;
        *slot = BlockSums { rs, rt, tc, ..Default::default() };
        match grad.as_mut() {
            Some(g) if STORE => {
                let ga = g.out.get_mut(start..end)?;
                let gb = g.eb.get_mut(start..end)?;
                pass1_block::<S, true, CE1>(simd, &c, sb, tb, ga, gb, slot);
            }
            _ => pass1_block::<S, false, CE1>(simd, &c, sb, tb, &mut [], &mut [], slot),
        }
        nb += 1;
        start = end;
    }
    if !(rs.is_finite() && rt.is_finite() && tc.is_finite()) {
        return None;
    }
    // combine the blocks against the final maxima, in f64
    let (big_rs, big_rt, big_tc) = (rs as f64, rt as f64, tc as f64);
    let (mut za, mut zb, mut wq, mut v, mut z1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let fac = |b: &BlockSums| {
        let ua = (b.rs as f64 - big_rs) / inv_s.t;
        let ub = (b.rt as f64 - big_rt) / inv_t.t;
        let uc = (b.tc as f64 - big_tc) / inv_t.t;
        (ua.exp(), ub.exp(), ub - ua, uc - ua)
    };
    for b in blocks.get(..nb)? {
        let (fa, fb, delta, gamma) = fac(b);
        za += fa * b.za;
        zb += fb * b.zb;
        wq += fb * (b.wq + delta * b.zb);
        v += fa * (b.v + gamma * b.za);
        if CE1 {
            z1 += (b.rs as f64 - big_rs).exp() * b.z1;
        }
    }
    let (lza, lzb) = (za.ln(), zb.ln());
    let fkl = wq / zb + lza - lzb;
    // E_p[β − α] = E_p[u] + (t_c − R_t)/T_t
    let ep_u = v / za;
    let rkl = -ep_u - (big_tc - big_rt) / inv_t.t + lzb - lza;
    let ce = match cfg.label {
        Some(y) => {
            let lse1 = big_rs + if CE1 { z1.ln() } else { lza };
            lse1 - *s.get(y)? as f64
        }
        None => 0.0,
    };
    if !(za.is_finite() && zb.is_finite() && fkl.is_finite() && rkl.is_finite() && ce.is_finite()) {
        return None;
    }
    let (mut tvd, mut jsd) = (0.0, 0.0);
    if let (true, Some(g)) = (STORE, grad) {
        let cc = if cfg.label.is_some() { g.ce } else { 0.0 };
        // total variation and JSD: one more pass from the cache for their sums, (Σ|p − q|, Σ p·σ)
        // and (Σ q·λ_q, Σ p·λ_p), the latter storing λ_p over e_b
        let beta = cfg.beta as f32;
        let (mut sig, mut kpm) = (0.0f32, 0.0f32);
        if cfg.div.needs_cache() {
            let (mut a0, mut a1) = (0.0f64, 0.0f64);
            let mut start = 0;
            for b in blocks.get(..nb)? {
                let end = (start + block).min(n);
                let (fa, fb, _, _) = fac(b);
                let pq = TvdPq { pa: (fa / za) as f32, qb: (fb / zb) as f32 };
                let (ea, eb) = (g.out.get(start..end)?, g.eb.get_mut(start..end)?);
                let (d0, d1) = match cfg.div {
                    KdDiv::Tvd => cache_sums(simd, ea, eb, pq),
                    _ => cache_sums(simd, ea, eb, JsdPq { pq, beta }),
                };
                a0 += d0;
                a1 += d1;
                start = end;
            }
            if cfg.div == KdDiv::Tvd {
                tvd = 0.5 * a0;
                sig = a1 as f32;
            } else {
                jsd = cfg.beta * a0 + (1.0 - cfg.beta) * a1;
                kpm = a1 as f32;
                if !jsd.is_finite() {
                    return None;
                }
            }
        }
        // the cross-entropy's softmax: p itself at T_s = 1, exp(s − R_s)/Z_1 otherwise
        let (cc_p, c1) = if CE1 { (0.0, (cc / z1) as f32) } else { (cc, 0.0) };
        // log p − log q − KL(p‖q) = E_p[u] − u
        let k = ep_u as f32;
        let mut start = 0;
        for b in blocks.get(..nb)? {
            let end = (start + block).min(n);
            let (fa, fb, _, _) = fac(b);
            let pa = fa / za;
            let ca = ((g.soft + cc_p) * pa) as f32;
            let ncb = (-g.soft * fb / zb) as f32;
            let ps = (g.soft * pa) as f32;
            if !(ca.is_finite() && ncb.is_finite() && ps.is_finite() && c1.is_finite()) {
                return None;
            }
            let ob = g.out.get_mut(start..end)?;
            let sb = s.get(start..end)?;
            match cfg.div {
                KdDiv::Tvd => {
                    let eb = g.eb.get(start..end)?;
                    let pq = TvdPq { pa: pa as f32, qb: (fb / zb) as f32 };
                    let ce = CeTerm { cc: cc_p as f32, c1, rs };
                    let op = TvdGrad::<CE1> { pq, c: g.soft as f32, sig, ce };
                    zip2_in_place(simd, ob, eb, sb, op);
                }
                KdDiv::Jsd => {
                    let lam = g.eb.get(start..end)?;
                    let c = (g.soft * (1.0 - cfg.beta)) as f32;
                    let ce = CeTerm { cc: cc_p as f32, c1, rs };
                    let op = JsdGrad::<CE1> { pa: pa as f32, c, kpm, ce };
                    zip2_in_place(simd, ob, lam, sb, op);
                }
                KdDiv::Forward => {
                    let eb = g.eb.get(start..end)?;
                    let fk = FklGrad { ca, ncb };
                    if CE1 {
                        zip2_in_place(simd, ob, eb, sb, FklGradCe { fkl: fk, c1, rs });
                    } else {
                        zip_in_place(simd, ob, eb, fk);
                    }
                }
                KdDiv::Reverse => {
                    let tb = t.get(start..end)?;
                    let op = RklGrad::<CE1> { pa: ps, k, cc: (cc_p * pa) as f32, c1, rs, tc, inv_s, inv_t };
                    zip2_in_place(simd, ob, sb, tb, op);
                }
            }
            start = end;
        }
        if let Some(y) = cfg.label {
            let o = g.out.get_mut(y)?;
            *o -= cc as f32;
        }
    }
    Some(KdRow { fkl, rkl, ce, tvd, jsd })
}

/// `(p·λ_p, q·λ_q, λ_p)` of one vector: `λ = ln(·/m)`, `m = β·q + (1−β)·p`, products 0 where the
/// probability is 0.
#[inline(always)]
fn jsd_terms<S: Simd>(
    simd: S,
    pq: TvdPq,
    beta: f32,
    ea: S::f32s,
    eb: S::f32s,
) -> (S::f32s, S::f32s, S::f32s) {
    let r = jsd_ratios(simd, pq, beta, ea, eb);
    jsd_finish(simd, r, ln_f32s(simd, r.2), ln_f32s(simd, r.3))
}

/// `(p, q, p/m, q/m)` of one vector for [`jsd_terms`].
#[inline(always)]
fn jsd_ratios<S: Simd>(
    simd: S,
    pq: TvdPq,
    beta: f32,
    ea: S::f32s,
    eb: S::f32s,
) -> (S::f32s, S::f32s, S::f32s, S::f32s) {
    let p = simd.mul_f32s(ea, simd.splat_f32s(pq.pa));
    let q = simd.mul_f32s(eb, simd.splat_f32s(pq.qb));
    let m = simd.mul_add_f32s(q, simd.splat_f32s(beta), simd.mul_f32s(p, simd.splat_f32s(1.0 - beta)));
    (p, q, simd.div_f32s(p, m), simd.div_f32s(q, m))
}

/// [`jsd_terms`] from [`jsd_ratios`]' `r` and the logarithms of its two ratios.
#[inline(always)]
fn jsd_finish<S: Simd>(
    simd: S,
    r: (S::f32s, S::f32s, S::f32s, S::f32s),
    ln_pm: S::f32s,
    ln_qm: S::f32s,
) -> (S::f32s, S::f32s, S::f32s) {
    let (p, q) = (r.0, r.1);
    let z = simd.splat_f32s(0.0);
    // p = q gives exactly 0 (m may round away from p)
    let same = simd.equal_f32s(p, q);
    let lp = select(simd, same, z, ln_pm);
    let lq = select(simd, same, z, ln_qm);
    let tp = select(simd, simd.equal_f32s(p, z), z, simd.mul_f32s(p, lp));
    let tq = select(simd, simd.equal_f32s(q, z), z, simd.mul_f32s(q, lq));
    (tp, tq, lp)
}

/// What a pass over the cached `e_a`, `e_b` of a block adds per vector (two `f32` lane sums, flushed
/// into `f64` every [`CHUNK`] elements), and the value it leaves in `e_b`'s place.
trait CacheSums: Copy {
    /// Adds the vector's terms to `acc`; returns the new content of `e_b` (when [`Self::STORE`]).
    fn add<S: Simd>(self, simd: S, ea: S::f32s, eb: S::f32s, acc: &mut [S::f32s; 2]) -> S::f32s;
    /// Whether `e_b` is overwritten.
    const STORE: bool;

    /// [`Self::add`] on four vectors in order (the default). An op with logarithms overrides it
    /// to check the block once and run the four logarithms without branches (the same bits).
    #[inline(always)]
    fn add4<S: Simd>(self, simd: S, ea: &[S::f32s], eb: &mut [S::f32s], acc: &mut [S::f32s; 2]) {
        for (a, b) in ea.iter().zip(eb.iter_mut()) {
            let nb = self.add(simd, *a, *b, acc);
            if Self::STORE {
                *b = nb;
            }
        }
    }
}

/// The two sums of `op` over a block (lanes past the end load as 0 and add nothing).
#[inline(always)]
fn cache_sums<S: Simd, O: CacheSums>(simd: S, ea: &[f32], eb: &mut [f32], op: O) -> (f64, f64) {
    let z = simd.splat_f32s(0.0);
    let (mut s0, mut s1) = (0.0f64, 0.0f64);
    let mut start = 0;
    while start < ea.len() {
        let end = (start + CHUNK).min(ea.len());
        let (ah, at) = S::as_simd_f32s(ea.get(start..end).unwrap_or_default());
        let (bh, bt) = S::as_mut_simd_f32s(eb.get_mut(start..end).unwrap_or_default());
        let mut acc = [z, z];
        let mut ai = ah.chunks_exact(4);
        let mut bi = bh.chunks_exact_mut(4);
        for (a, b) in (&mut ai).zip(&mut bi) {
            op.add4(simd, a, b, &mut acc);
        }
        for (a, b) in ai.remainder().iter().zip(bi.into_remainder()) {
            let nb = op.add(simd, *a, *b, &mut acc);
            if O::STORE {
                *b = nb;
            }
        }
        if !at.is_empty() {
            let nb = op.add(simd, simd.partial_load_f32s(at), simd.partial_load_f32s(bt), &mut acc);
            if O::STORE {
                simd.partial_store_f32s(bt, nb);
            }
        }
        s0 += hsum_f64::<S>(acc[0]);
        s1 += hsum_f64::<S>(acc[1]);
        start = end;
    }
    (s0, s1)
}

/// Total variation's sums `(Σ|p − q|, Σ p·σ)`.
impl CacheSums for TvdPq {
    const STORE: bool = false;
    #[inline(always)]
    fn add<S: Simd>(self, simd: S, ea: S::f32s, eb: S::f32s, acc: &mut [S::f32s; 2]) -> S::f32s {
        let (p, sig, ad) = self.terms(simd, ea, eb);
        acc[0] = simd.add_f32s(acc[0], ad);
        acc[1] = simd.mul_add_f32s(p, sig, acc[1]);
        eb
    }
}

/// JSD's sums `(Σ q·λ_q, Σ p·λ_p)`, leaving `λ_p` in `e_b`'s place.
#[derive(Clone, Copy)]
struct JsdPq {
    pq: TvdPq,
    beta: f32,
}

impl CacheSums for JsdPq {
    const STORE: bool = true;
    #[inline(always)]
    fn add<S: Simd>(self, simd: S, ea: S::f32s, eb: S::f32s, acc: &mut [S::f32s; 2]) -> S::f32s {
        let (tp, tq, lam) = jsd_terms(simd, self.pq, self.beta, ea, eb);
        acc[0] = simd.add_f32s(acc[0], tq);
        acc[1] = simd.add_f32s(acc[1], tp);
        lam
    }

    #[inline(always)]
    fn add4<S: Simd>(self, simd: S, ea: &[S::f32s], eb: &mut [S::f32s], acc: &mut [S::f32s; 2]) {
        let z = simd.splat_f32s(0.0);
        let mut r = [(z, z, z, z); 4];
        let (mut xp, mut xq) = ([z; 4], [z; 4]);
        for j in 0..4 {
            r[j] = jsd_ratios(simd, self.pq, self.beta, ea[j], eb[j]);
            (xp[j], xq[j]) = (r[j].2, r[j].3);
        }
        let (lp, lq) = (ln4_f32s(simd, xp), ln4_f32s(simd, xq));
        for j in 0..4 {
            let (tp, tq, lam) = jsd_finish(simd, r[j], lp[j], lq[j]);
            acc[0] = simd.add_f32s(acc[0], tq);
            acc[1] = simd.add_f32s(acc[1], tp);
            eb[j] = lam;
        }
    }
}

/// Generalized JSD: `(p·c)·(λ_p − Σ p λ_p)` (0 where `p = 0`) plus the cross-entropy's `p·cc`
/// (`T_s = 1`) or `c1·exp(s − R_s)` (`CE1`).
#[derive(Clone, Copy)]
struct JsdGrad<const CE1: bool> {
    pa: f32,
    c: f32,
    kpm: f32,
    ce: CeTerm,
}

impl<const CE1: bool> VecZip2 for JsdGrad<CE1> {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, ea: S::f32s, lam: S::f32s, s: S::f32s) -> S::f32s {
        let p = simd.mul_f32s(ea, simd.splat_f32s(self.pa));
        let w = simd.sub_f32s(lam, simd.splat_f32s(self.kpm));
        let z = simd.splat_f32s(0.0);
        let pc = simd.mul_f32s(p, simd.splat_f32s(self.c));
        let soft = select(simd, simd.equal_f32s(p, z), z, simd.mul_f32s(pc, w));
        self.ce.add::<S, CE1>(simd, soft, p, s)
    }
}

/// The hard-label cross-entropy's share of a gradient written with the soft loss's: `p·cc` at
/// `T_s = 1` (`p` is the softmax of `s`), `c1·exp(s − R_s)` otherwise (`CE1`).
#[derive(Clone, Copy)]
struct CeTerm {
    cc: f32,
    c1: f32,
    rs: f32,
}

impl CeTerm {
    #[inline(always)]
    fn add<S: Simd, const CE1: bool>(self, simd: S, soft: S::f32s, p: S::f32s, s: S::f32s) -> S::f32s {
        if CE1 {
            let e1 = exp_nonpos_f32s(simd, simd.sub_f32s(s, simd.splat_f32s(self.rs)));
            simd.mul_add_f32s(e1, simd.splat_f32s(self.c1), soft)
        } else {
            simd.mul_add_f32s(p, simd.splat_f32s(self.cc), soft)
        }
    }
}

/// `p = e_a·pa`, `q = e_b·qb` of one block, as `f32`.
#[derive(Clone, Copy)]
struct TvdPq {
    pa: f32,
    qb: f32,
}

impl TvdPq {
    /// `(p, ½·sign(p − q), |p − q|)` with `sign(0) = 0`.
    #[inline(always)]
    fn terms<S: Simd>(self, simd: S, ea: S::f32s, eb: S::f32s) -> (S::f32s, S::f32s, S::f32s) {
        let p = simd.mul_f32s(ea, simd.splat_f32s(self.pa));
        let d = simd.sub_f32s(p, simd.mul_f32s(eb, simd.splat_f32s(self.qb)));
        let z = simd.splat_f32s(0.0);
        let neg = select(simd, simd.less_than_f32s(d, z), simd.splat_f32s(-0.5), z);
        let sg = select(simd, simd.greater_than_f32s(d, z), simd.splat_f32s(0.5), neg);
        (p, sg, abs(simd, d))
    }
}

/// Total variation: `(p·c)·(σ − Σ p σ)` plus the cross-entropy's `p·cc` (`T_s = 1`) or
/// `c1·exp(s − R_s)` (`CE1`).
#[derive(Clone, Copy)]
struct TvdGrad<const CE1: bool> {
    pq: TvdPq,
    c: f32,
    sig: f32,
    ce: CeTerm,
}

impl<const CE1: bool> VecZip2 for TvdGrad<CE1> {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, ea: S::f32s, eb: S::f32s, s: S::f32s) -> S::f32s {
        let (p, sg, _) = self.pq.terms(simd, ea, eb);
        let w = simd.sub_f32s(sg, simd.splat_f32s(self.sig));
        let soft = simd.mul_f32s(simd.mul_f32s(p, simd.splat_f32s(self.c)), w);
        self.ce.add::<S, CE1>(simd, soft, p, s)
    }
}

impl Kernels {
    /// One distillation row (see the [module docs](self)); `None` for a row with a non-finite
    /// logit or intermediate (the caller then uses the reference). With `grad`, writes the row's
    /// gradient into `grad.out`.
    pub(crate) fn kd_row_f32(
        self,
        s: &[f32],
        t: &[f32],
        cfg: KdRowCfg,
        grad: Option<KdGrad<'_>>,
    ) -> Option<KdRow> {
        self.run(KdOp { s, t, cfg, grad })
    }
}
