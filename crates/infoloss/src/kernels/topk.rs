//! The dense part of a sparse-teacher distillation row ([`distill_topk`](crate::losses::distill::distill_topk)):
//! the student's softmax at temperature `T` over the whole row, the log-sum-exp of its tail (the
//! classes outside the teacher's top-k) and the gradient's dense pass. The per-bucket math over the
//! `k` teacher entries stays with the caller, in `f64`.
//!
//! # Passes
//!
//! 1. One read of the row `s`, in the blocks of [`block_len`]: per block the raw maximum raises the
//!    running reference `r`, and per element `e = exp((s − r)/T)` (cached in `out`) and, for a
//!    cross-entropy term at `T ≠ 1`, `exp(s − r)` are summed (`f32` lanes flushed into `f64` every
//!    [`CHUNK`] elements). The blocks are combined against the final maximum `R` with the factors
//!    `f_b = exp((r_b − R)/T)`: `Z = Σ_b f_b·Z_b`, `lse(s/T) = R/T + ln Z`.
//! 2. With a tail bucket: the cached `e` of the top-k classes are set to 0 and the cache summed
//!    again, `Z_tail = Σ_b f_b·Σ e`, `lse_tail = R/T + ln Z_tail` (a direct sum, so a tail holding
//!    1e-12 of the mass keeps its digits). A tail below 2^-64 of the mass, or none, hands the row
//!    back: its exponentials underflow `f32` against the row's maximum.
//! 3. The caller's [`TopkScale`] turns the cache into the gradient with one multiply-add per element
//!    (`g = e·f_b·(c_p/Z + c_tail/Z_tail + c_ce/Z)`, the last at `T = 1`) plus, at `T ≠ 1`,
//!    `c_ce·exp(s − R)/Z_1`; the caller then overwrites the top-k entries and the label's.
//!
//! A row with a NaN or infinite logit (`-inf` included: `-inf·0` in the division by `T`), returns
//! `None` (the caller then takes the reference for the row).

use super::simd::select;
use pulp::{Simd, WithSimd};

use super::Kernels;
use super::distill::{InvT, div_t};
use super::exp::exp_nonpos_f32s;
use super::row::{CHUNK, MAX_BLOCKS, block_len, block_max};
use super::simd::{hsum_f64, load_tail_fill};
use super::vmap::{VecZip, zip_in_place};

/// The row's log-sum-exps, handed to the caller's bucket math.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopkSums {
    /// `lse(s/T)`.
    pub(crate) lse_s: f64,
    /// `lse(s/T)` over the classes outside the top-k (`-inf` when all are inside); NaN without a tail.
    pub(crate) lse_tail: f64,
    /// `lse(s)` at temperature 1 (NaN unless asked for).
    pub(crate) lse1: f64,
}

/// The coefficients of the gradient's dense pass:
/// `g_i = c_p·p_i + c_tail·exp(s_i/T − lse_tail) + c_ce·softmax(s)_i` (`p = softmax(s/T)`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopkScale {
    pub(crate) c_p: f64,
    pub(crate) c_tail: f64,
    pub(crate) c_ce: f64,
}

/// What one row computes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopkRowCfg {
    /// The temperature `T`.
    pub(crate) temp: f64,
    /// Whether to sum the tail (pass 2).
    pub(crate) tail: bool,
    /// Whether to compute `lse(s)` at temperature 1 (a cross-entropy term).
    pub(crate) ce: bool,
}

/// The smallest tail sum `Z_tail` (the row's `Z ≥ 1`) the kernel takes: `2^-64`.
const TAIL_MIN: f64 = 5.421_010_862_427_522e-20;

#[derive(Debug, Clone, Copy, Default)]
struct Block {
    r: f32,
    z: f64,
    z1: f64,
}

struct TopkOp<'a> {
    s: &'a [f32],
    idx: &'a [usize],
    cfg: TopkRowCfg,
    /// The cache (and the gradient when `write`); `s.len()` elements, or empty for a loss without a tail.
    out: &'a mut [f32],
    write: bool,
    /// A trait object, so that the kernel is compiled once here rather than per caller's closure.
    finish: &'a mut dyn FnMut(TopkSums) -> Option<TopkScale>,
}

impl WithSimd for TopkOp<'_> {
    type Output = Option<TopkSums>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Option<TopkSums> {
        let ce1 = self.cfg.ce && self.cfg.temp != 1.0;
        match (!self.out.is_empty(), ce1) {
            (true, true) => topk_row::<S, true, true>(simd, self),
            (true, false) => topk_row::<S, true, false>(simd, self),
            (false, true) => topk_row::<S, false, true>(simd, self),
            (false, false) => topk_row::<S, false, false>(simd, self),
        }
    }
}

/// The splatted constants of pass 1: `r`, `1/T` as `hi + lo`.
#[derive(Clone, Copy)]
struct P1<S: Simd> {
    r0: f32,
    r: S::f32s,
    hi: S::f32s,
    lo: S::f32s,
}

/// One vector of pass 1: adds `e = exp((v − r)/T)` (and `exp(v − r)` when `CE1`) to the sums,
/// returns `e`. (A function, not a closure: a closure would not inherit the SIMD target features.)
#[inline(always)]
fn step<S: Simd, const CE1: bool>(
    simd: S,
    c: P1<S>,
    v: S::f32s,
    acc: &mut S::f32s,
    acc1: &mut S::f32s,
) -> S::f32s {
    let x = simd.sub_f32s(v, c.r);
    let e = exp_nonpos_f32s(simd, div_t(simd, x, c.hi, c.lo));
    *acc = simd.add_f32s(*acc, e);
    if CE1 {
        *acc1 = simd.add_f32s(*acc1, exp_nonpos_f32s(simd, x));
    }
    e
}

/// The masked last vector of a chunk: the fill `r` keeps the extra lanes' arguments 0 (finite),
/// their terms are dropped.
#[inline(always)]
fn tail<S: Simd, const CE1: bool>(
    simd: S,
    c: P1<S>,
    st: &[f32],
    acc: &mut S::f32s,
    acc1: &mut S::f32s,
) -> S::f32s {
    let z0 = simd.splat_f32s(0.0);
    let mask = simd.mask_between_m32s(0, st.len() as u32).mask();
    let (mut a, mut a1) = (z0, z0);
    let e = step::<S, CE1>(simd, c, load_tail_fill(simd, st, c.r0), &mut a, &mut a1);
    *acc = simd.add_f32s(*acc, select(simd, mask, a, z0));
    *acc1 = simd.add_f32s(*acc1, select(simd, mask, a1, z0));
    e
}

/// Pass 1 over one block: `(Σ e, Σ exp(s − r))`, `e = exp((s − r)/T)` stored when `STORE`.
#[inline(always)]
fn pass1_block<S: Simd, const STORE: bool, const CE1: bool>(
    simd: S,
    s: &[f32],
    out: &mut [f32],
    r: f32,
    inv: InvT,
) -> (f64, f64) {
    let c =
        P1::<S> { r0: r, r: simd.splat_f32s(r), hi: simd.splat_f32s(inv.hi), lo: simd.splat_f32s(inv.lo) };
    let z0 = simd.splat_f32s(0.0);
    let (mut z, mut z1) = (0.0f64, 0.0f64);
    let mut start = 0;
    while start < s.len() {
        let end = (start + CHUNK).min(s.len());
        let (sh, st) = S::as_simd_f32s(s.get(start..end).unwrap_or_default());
        let (mut acc, mut acc1) = (z0, z0);
        if STORE {
            let (oh, ot) = S::as_mut_simd_f32s(out.get_mut(start..end).unwrap_or_default());
            for (v, o) in sh.iter().zip(oh.iter_mut()) {
                *o = step::<S, CE1>(simd, c, *v, &mut acc, &mut acc1);
            }
            if !st.is_empty() {
                let e = tail::<S, CE1>(simd, c, st, &mut acc, &mut acc1);
                simd.partial_store_f32s(ot, e);
            }
        } else {
            for v in sh {
                step::<S, CE1>(simd, c, *v, &mut acc, &mut acc1);
            }
            if !st.is_empty() {
                tail::<S, CE1>(simd, c, st, &mut acc, &mut acc1);
            }
        }
        z += hsum_f64::<S>(acc);
        z1 += hsum_f64::<S>(acc1);
        start = end;
    }
    (z, z1)
}

/// `Σ x` over a cached block (lanes past the end load as 0).
#[inline(always)]
fn block_sum<S: Simd>(simd: S, x: &[f32]) -> f64 {
    let mut total = 0.0f64;
    for c in x.chunks(CHUNK) {
        let (h, t) = S::as_simd_f32s(c);
        let mut acc = simd.splat_f32s(0.0);
        for v in h {
            acc = simd.add_f32s(acc, *v);
        }
        acc = simd.add_f32s(acc, simd.partial_load_f32s(t));
        total += hsum_f64::<S>(acc);
    }
    total
}

/// Pass 3: `e·a` (`T = 1`, or no cross-entropy term) or `e·a + c1·exp(s − R)` (`CE1`).
#[derive(Clone, Copy)]
struct Write<const CE1: bool> {
    a: f32,
    c1: f32,
    r: f32,
}

impl<const CE1: bool> VecZip for Write<CE1> {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, e: S::f32s, s: S::f32s) -> S::f32s {
        let g = simd.mul_f32s(e, simd.splat_f32s(self.a));
        if CE1 {
            let e1 = exp_nonpos_f32s(simd, simd.sub_f32s(s, simd.splat_f32s(self.r)));
            simd.mul_add_f32s(e1, simd.splat_f32s(self.c1), g)
        } else {
            g
        }
    }
}

#[inline(always)]
fn topk_row<S: Simd, const STORE: bool, const CE1: bool>(simd: S, op: TopkOp<'_>) -> Option<TopkSums> {
    let TopkOp { s, idx, cfg, out, write, finish } = op;
    let n = s.len();
    if n == 0 || (STORE && out.len() != n) {
        return None;
    }
    let inv = InvT::new(cfg.temp);
    let block = block_len(n);
    let mut blocks = [Block::default(); MAX_BLOCKS];
    let mut r = f32::NEG_INFINITY;
    let mut nb = 0;
    for (k, sb) in s.chunks(block).enumerate() {
        let (bm, nan) = block_max::<S, true>(simd, sb);
        if nan {
            return None;
        }
        r = r.max(bm);
        if !r.is_finite() {
            // an infinite logit, or (so far) only -inf: the reference
            return None;
        }
        let ob = if STORE { out.get_mut(k * block..(k * block + sb.len()))? } else { &mut [] };
        let (z, z1) = pass1_block::<S, STORE, CE1>(simd, sb, ob, r, inv);
        *blocks.get_mut(k)? = Block { r, z, z1 };
        nb = k + 1;
    }
    let big_r = r as f64;
    let fac = |b: &Block| ((b.r as f64 - big_r) / cfg.temp).exp();
    let (mut z, mut z1) = (0.0f64, 0.0f64);
    for b in blocks.get(..nb)? {
        z += fac(b) * b.z;
        if CE1 {
            z1 += (b.r as f64 - big_r).exp() * b.z1;
        }
    }
    let lse_s = big_r / cfg.temp + z.ln();
    let lse1 = match (cfg.ce, CE1) {
        (false, _) => f64::NAN,
        (true, true) => big_r + z1.ln(),
        (true, false) => lse_s,
    };
    if !(z.is_finite() && z > 0.0 && lse_s.is_finite()) || (cfg.ce && !lse1.is_finite()) {
        return None;
    }
    let mut z_tail = f64::NAN;
    if cfg.tail {
        if !STORE {
            return None;
        }
        for &i in idx {
            *out.get_mut(i)? = 0.0;
        }
        z_tail = 0.0;
        for (b, ob) in blocks.get(..nb)?.iter().zip(out.chunks(block)) {
            z_tail += fac(b) * block_sum(simd, ob);
        }
    }
    // A tail below 2^-64 of the row's mass (or empty) sums exponentials that underflow `f32` against
    // the row's maximum, where its log-sum-exp relative to its own maximum (as the reference and
    // PyTorch take it) is finite: the reference takes such rows.
    if cfg.tail && (z_tail.is_nan() || z_tail < TAIL_MIN) {
        return None;
    }
    let lse_tail = if cfg.tail { big_r / cfg.temp + z_tail.ln() } else { f64::NAN };
    let sums = TopkSums { lse_s, lse_tail, lse1 };
    let scale = finish(sums)?;
    if !(STORE && write) {
        return Some(sums);
    }
    let tail = if cfg.tail && z_tail > 0.0 { scale.c_tail / z_tail } else { 0.0 };
    let ce_p = if CE1 { 0.0 } else { scale.c_ce / z };
    let c1 = if CE1 { (scale.c_ce / z1) as f32 } else { 0.0 };
    for (b, (ob, sb)) in blocks.get(..nb)?.iter().zip(out.chunks_mut(block).zip(s.chunks(block))) {
        let a = (fac(b) * (scale.c_p / z + tail + ce_p)) as f32;
        if !(a.is_finite() && c1.is_finite()) {
            return None;
        }
        zip_in_place(simd, ob, sb, Write::<CE1> { a, c1, r });
    }
    Some(sums)
}

impl Kernels {
    /// The dense part of one sparse-teacher row (see the [module docs](self)): returns the row's
    /// log-sum-exps after `finish` (the caller's bucket math) has turned them into the gradient's
    /// coefficients, and with `write` writes the dense gradient into `out`. `out` is the cache:
    /// `s.len()` elements, or empty for a loss without a tail (then `write` must be false). `None`
    /// for a row the reference must take (non-finite values), or when `finish` returns `None`.
    pub(crate) fn topk_row_f32(
        self,
        s: &[f32],
        idx: &[usize],
        cfg: TopkRowCfg,
        out: &mut [f32],
        write: bool,
        finish: &mut dyn FnMut(TopkSums) -> Option<TopkScale>,
    ) -> Option<TopkSums> {
        self.run(TopkOp { s, idx, cfg, out, write, finish })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row's log-sum-exps against a direct `f64` evaluation, the tail's included, and the dense
    /// gradient `c_p·p + c_tail·exp(s/T − lse_tail)` outside the top-k.
    #[test]
    fn sums_and_dense_gradient_match_f64() {
        let s: Vec<f32> = (0..1500).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37).collect();
        let idx = [3usize, 700, 1499];
        for (temp, tail, ce) in [(1.0, false, false), (2.0, true, true), (0.7, true, false)] {
            let lse = |skip: &[usize], t: f64| {
                let m = s.iter().map(|&v| v as f64 / t).fold(f64::NEG_INFINITY, f64::max);
                let z: f64 =
                    (0..s.len()).filter(|i| !skip.contains(i)).map(|i| (s[i] as f64 / t - m).exp()).sum();
                m + z.ln()
            };
            let mut out = vec![0f32; s.len()];
            let cfg = TopkRowCfg { temp, tail, ce };
            let scale = TopkScale {
                c_p: -0.5,
                c_tail: if tail { 0.25 } else { 0.0 },
                c_ce: if ce { 0.125 } else { 0.0 },
            };
            let sums = Kernels::new()
                .topk_row_f32(&s, &idx, cfg, &mut out, true, &mut |_| Some(scale))
                .expect("a finite row");
            assert!((sums.lse_s - lse(&[], temp)).abs() < 1e-6, "{temp}: {} {}", sums.lse_s, lse(&[], temp));
            if tail {
                assert!((sums.lse_tail - lse(&idx, temp)).abs() < 1e-6);
            }
            if ce {
                assert!((sums.lse1 - lse(&[], 1.0)).abs() < 1e-6);
            }
            for i in [0usize, 1, 2, 500, 1498] {
                let a = s[i] as f64 / temp;
                let mut want = -0.5 * (a - sums.lse_s).exp();
                if tail {
                    want += 0.25 * (a - sums.lse_tail).exp();
                }
                if ce {
                    want += 0.125 * (s[i] as f64 - sums.lse1).exp();
                }
                assert!(
                    (out[i] as f64 - want).abs() < 1e-6 * want.abs() + 1e-12,
                    "T={temp} [{i}]: {} vs {want}",
                    out[i]
                );
            }
        }
    }
}
