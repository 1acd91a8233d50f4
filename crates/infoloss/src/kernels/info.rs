//! Row kernels of the SciPy-style information measures: entropy, relative entropy and
//! cross-entropy of normalized rows, and the two sums of the Jensen–Shannon divergence.
//!
//! Every function normalizes its rows as the reference does (`x̂ = x / s` with `s = Σx` rounded to
//! `f32`), evaluates SciPy's `entr` / `rel_entr` cases with vector selects, and sums the terms in
//! `f32` lanes flushed into an `f64` total every [`CHUNK`] elements. Lanes past the end of a row are
//! masked out, so a row's value is the sum of exactly its own terms.

use super::simd::{neg, select};
use pulp::{Simd, WithSimd};

use super::Kernels;
use super::ln::ln_f32s;
use super::row::{CHUNK, RowSumOp};
use super::simd::hsum_f64;

/// What a row of [`Kernels::info_row_f32`] sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InfoKind {
    /// `Σ entr(p̂)`, `entr(x) = −x·ln x` (0 at 0, `−inf` below).
    Entropy,
    /// `Σ rel_entr(p̂, q̂)`, `rel_entr(x, y) = x·ln(x/y)` with SciPy's cases.
    Relative,
    /// `Σ −p̂·ln q̂` where both are positive, `entr(p̂) + rel_entr(p̂, q̂)` elsewhere.
    Cross,
    /// `(Σ rel_entr(p̂, m), Σ rel_entr(q̂, m))` with `m = (p̂ + q̂)/2` (Jensen–Shannon).
    Js,
}

#[inline(always)]
fn entr_v<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    entr_ln(simd, x, ln_f32s(simd, x))
}

/// [`entr_v`] with `ln x` given (`ln_x`). The callers compute each logarithm once and pass it
/// to every term that needs it: `ln_f32s` branches on its input, so the compiler no longer merges
/// two calls on the same value.
#[inline(always)]
fn entr_ln<S: Simd>(simd: S, x: S::f32s, ln_x: S::f32s) -> S::f32s {
    let z = simd.splat_f32s(0.0);
    let t = neg(simd, simd.mul_f32s(x, ln_x));
    let t = select(simd, simd.equal_f32s(x, z), z, t);
    select(simd, simd.less_than_f32s(x, z), simd.splat_f32s(f32::NEG_INFINITY), t)
}

/// `rel_entr(p, q)`; NaN if either is NaN, `p·ln(p/q)` if both are positive, 0 if `p = 0 ≤ q`,
/// `+inf` otherwise.
#[inline(always)]
fn rel_v<S: Simd>(simd: S, p: S::f32s, q: S::f32s) -> S::f32s {
    rel_ln(simd, p, q, ln_f32s(simd, simd.div_f32s(p, q)))
}

/// [`rel_v`] with `ln(p/q)` given (`ln_pq`).
#[inline(always)]
fn rel_ln<S: Simd>(simd: S, p: S::f32s, q: S::f32s, ln_pq: S::f32s) -> S::f32s {
    let z = simd.splat_f32s(0.0);
    let t = simd.mul_f32s(p, ln_pq);
    let pos = simd.and_m32s(simd.greater_than_f32s(p, z), simd.greater_than_f32s(q, z));
    let zero = simd.and_m32s(simd.equal_f32s(p, z), simd.greater_than_or_equal_f32s(q, z));
    let numbers = simd.and_m32s(simd.equal_f32s(p, p), simd.equal_f32s(q, q));
    let other = select(simd, numbers, simd.splat_f32s(f32::INFINITY), simd.splat_f32s(f32::NAN));
    select(simd, pos, t, select(simd, zero, z, other))
}

/// `−p·ln q` where both are positive, `entr(p) + rel_entr(p, q)` elsewhere.
#[inline(always)]
fn cross_v<S: Simd>(simd: S, p: S::f32s, q: S::f32s) -> S::f32s {
    cross_ln(simd, p, q, ln_f32s(simd, q))
}

/// [`cross_v`] with `ln q` given (`ln_q`).
#[inline(always)]
fn cross_ln<S: Simd>(simd: S, p: S::f32s, q: S::f32s, ln_q: S::f32s) -> S::f32s {
    let z = simd.splat_f32s(0.0);
    let pos = simd.and_m32s(simd.greater_than_f32s(p, z), simd.greater_than_f32s(q, z));
    let main = neg(simd, simd.mul_f32s(p, ln_q));
    if simd.first_true_m32s(simd.not_m32s(pos)) == S::F32_LANES {
        // every lane positive (the common case): no other logarithm is needed
        return main;
    }
    select(simd, pos, main, simd.add_f32s(entr_v(simd, p), rel_v(simd, p, q)))
}

/// The term(s) of one vector of normalized values: `(a, b)`, `b` only for [`InfoKind::Js`].
#[inline(always)]
fn terms<S: Simd>(simd: S, kind: InfoKind, p: S::f32s, q: S::f32s) -> (S::f32s, S::f32s) {
    let z = simd.splat_f32s(0.0);
    match kind {
        InfoKind::Entropy => (entr_v(simd, p), z),
        InfoKind::Relative => (rel_v(simd, p, q), z),
        InfoKind::Cross => (cross_v(simd, p, q), z),
        InfoKind::Js => {
            // `·½` is `/2` exactly (the same real number, rounded once)
            let m = simd.mul_f32s(simd.add_f32s(p, q), simd.splat_f32s(0.5));
            (rel_v(simd, p, m), rel_v(simd, q, m))
        }
    }
}

impl InfoKind {
    /// The kind as the const parameter of the row kernels (so each kind gets its own straight-line
    /// inner loop, without a dispatch per vector).
    const fn code(self) -> u8 {
        match self {
            InfoKind::Entropy => 0,
            InfoKind::Relative => 1,
            InfoKind::Cross => 2,
            InfoKind::Js => 3,
        }
    }

    /// The kind of [`InfoKind::code`] `k`.
    const fn of_code(k: u8) -> InfoKind {
        match k {
            0 => InfoKind::Entropy,
            1 => InfoKind::Relative,
            2 => InfoKind::Cross,
            _ => InfoKind::Js,
        }
    }
}

struct InfoRowOp<'a, const K: u8> {
    p: &'a [f32],
    q: &'a [f32],
}

/// `v / s`, except for the unused `q` operand of [`InfoKind::Entropy`] (returned as is).
#[inline(always)]
fn normalized<S: Simd>(simd: S, used: bool, v: S::f32s, s: S::f32s) -> S::f32s {
    if used { simd.div_f32s(v, s) } else { v }
}

impl<const K: u8> WithSimd for InfoRowOp<'_, K> {
    type Output = (f64, f64);
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f64, f64) {
        let InfoRowOp { p, q } = self;
        let kind = InfoKind::of_code(K);
        let two = kind != InfoKind::Entropy;
        // the normalizers, rounded to f32 as the reference's `normalize_row` does
        let sp = simd.splat_f32s(RowSumOp { a: p, b: &[] }.with_simd(simd) as f32);
        let sq = simd.splat_f32s(if two { RowSumOp { a: q, b: &[] }.with_simd(simd) as f32 } else { 1.0 });
        let (mut ta, mut tb) = (0.0f64, 0.0f64);
        let mut start = 0;
        while start < p.len() {
            let end = (start + CHUNK).min(p.len());
            let pc = p.get(start..end).unwrap_or_default();
            let qc = if two { q.get(start..end).unwrap_or_default() } else { pc };
            let (ph, pt) = S::as_simd_f32s(pc);
            let (qh, qt) = S::as_simd_f32s(qc);
            let z = simd.splat_f32s(0.0);
            let (mut aa, mut ab) = ([z; 4], [z; 4]);
            let mut pi = ph.chunks_exact(4);
            let mut qi = qh.chunks_exact(4);
            for (pv, qv) in (&mut pi).zip(&mut qi) {
                for j in 0..4 {
                    let (pn, qn) = (simd.div_f32s(pv[j], sp), normalized(simd, two, qv[j], sq));
                    let (a, b) = terms(simd, kind, pn, qn);
                    aa[j] = simd.add_f32s(aa[j], a);
                    ab[j] = simd.add_f32s(ab[j], b);
                }
            }
            for (pv, qv) in pi.remainder().iter().zip(qi.remainder()) {
                let (pn, qn) = (simd.div_f32s(*pv, sp), normalized(simd, two, *qv, sq));
                let (a, b) = terms(simd, kind, pn, qn);
                aa[0] = simd.add_f32s(aa[0], a);
                ab[0] = simd.add_f32s(ab[0], b);
            }
            if !pt.is_empty() {
                // lanes past the end of the row contribute nothing (0/0 there would be NaN)
                let mask = simd.mask_between_m32s(0, pt.len() as u32).mask();
                let pv = simd.div_f32s(simd.partial_load_f32s(pt), sp);
                let qv = normalized(simd, two, simd.partial_load_f32s(qt), sq);
                let (a, b) = terms(simd, kind, pv, qv);
                aa[1] = simd.add_f32s(aa[1], select(simd, mask, a, z));
                ab[1] = simd.add_f32s(ab[1], select(simd, mask, b, z));
            }
            ta += hsum_f64::<S>(simd.add_f32s(simd.add_f32s(aa[0], aa[1]), simd.add_f32s(aa[2], aa[3])));
            if kind == InfoKind::Js {
                tb += hsum_f64::<S>(simd.add_f32s(simd.add_f32s(ab[0], ab[1]), simd.add_f32s(ab[2], ab[3])));
            }
            start = end;
        }
        (ta, tb)
    }
}

/// What [`Kernels::info_row_grad_f32`] returns for one row besides the raw partials it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct InfoRowGrad {
    /// The row value(s), as [`Kernels::info_row_f32`] returns them (in nats).
    pub(crate) value: (f64, f64),
    /// `Σ_{p̂_j ≠ 0} p̂_j·dp_j` and `Σ_{q̂_j ≠ 0} q̂_j·dq_j` over the raw partials written: the terms
    /// of the normalization's adjoint (`G_j ← (G_j − Σ x̂_i·G_i) / s`).
    pub(crate) dot: (f64, f64),
    /// The normalizers `Σp`, `Σq` rounded to `f32` (1 for `q` of [`InfoKind::Entropy`]).
    pub(crate) sums: (f32, f32),
}

/// The value terms and the raw partials (wrt the normalized `p̂`, `q̂`, before any scaling) of one
/// vector: `(value a, value b, dp, dq)`. The partials are the reference's element gradients for rows
/// whose value is finite (the only rows they are used for): entropy `−(1 + ln p̂)`; relative
/// `ln(p̂/q̂) + 1` and `−p̂/q̂` (0 at `p̂ = 0`); cross `−ln q̂` and `−p̂/q̂` (0 at `p̂ = 0`); JS
/// `ln(x/m)`, `−inf` at `x = 0 < y`, `ln 2` at `x = y = 0`, for each side.
#[inline(always)]
fn grad_terms<S: Simd>(
    simd: S,
    kind: InfoKind,
    p: S::f32s,
    q: S::f32s,
) -> (S::f32s, S::f32s, S::f32s, S::f32s) {
    let z = simd.splat_f32s(0.0);
    let one = simd.splat_f32s(1.0);
    match kind {
        InfoKind::Entropy => {
            let ln_p = ln_f32s(simd, p);
            (entr_ln(simd, p, ln_p), z, neg(simd, simd.add_f32s(one, ln_p)), z)
        }
        InfoKind::Relative => {
            let ln_pq = ln_f32s(simd, simd.div_f32s(p, q));
            let dq = select(simd, simd.equal_f32s(p, z), z, neg_ratio(simd, p, q));
            (rel_ln(simd, p, q, ln_pq), z, simd.add_f32s(ln_pq, one), dq)
        }
        InfoKind::Cross => {
            let ln_q = ln_f32s(simd, q);
            let dq = select(simd, simd.equal_f32s(p, z), z, neg_ratio(simd, p, q));
            (cross_ln(simd, p, q, ln_q), z, neg(simd, ln_q), dq)
        }
        InfoKind::Js => {
            // `·½` is `/2` exactly (the same real number, rounded once)
            let m = simd.mul_f32s(simd.add_f32s(p, q), simd.splat_f32s(0.5));
            let (ln_pm, ln_qm) = (ln_f32s(simd, simd.div_f32s(p, m)), ln_f32s(simd, simd.div_f32s(q, m)));
            (
                rel_ln(simd, p, m, ln_pm),
                rel_ln(simd, q, m, ln_qm),
                js_side(simd, p, q, ln_pm),
                js_side(simd, q, p, ln_qm),
            )
        }
    }
}

/// `−a/b`. (A function, not a closure: closures do not inherit the SIMD target features.)
#[inline(always)]
fn neg_ratio<S: Simd>(simd: S, a: S::f32s, b: S::f32s) -> S::f32s {
    neg(simd, simd.div_f32s(a, b))
}

/// `∂(L + R)/∂x̂` of one side of the JS sums (`x` this side, `y` the other, `ln_xm = ln(x/m)` with `m`
/// their mean).
#[inline(always)]
fn js_side<S: Simd>(simd: S, x: S::f32s, y: S::f32s, ln_xm: S::f32s) -> S::f32s {
    let z = simd.splat_f32s(0.0);
    let main = ln_xm;
    let at_zero =
        select(simd, simd.greater_than_f32s(y, z), simd.splat_f32s(f32::NEG_INFINITY), simd.splat_f32s(LN_2));
    select(simd, simd.greater_than_f32s(x, z), main, at_zero)
}

const LN_2: f32 = std::f32::consts::LN_2;

struct InfoGradOp<'a, const K: u8> {
    p: &'a [f32],
    q: &'a [f32],
    dp: &'a mut [f32],
    dq: &'a mut [f32],
}

/// Running `f32` lane sums of one chunk: value a, value b, dot p, dot q.
struct Lanes<V> {
    va: V,
    vb: V,
    dp: V,
    dq: V,
}

/// Adds one vector's terms to `acc`: the values, and `x̂·d` where `x̂ ≠ 0`, all where `keep`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn accumulate<S: Simd>(
    simd: S,
    acc: &mut Lanes<S::f32s>,
    keep: S::m32s,
    p: S::f32s,
    q: S::f32s,
    t: (S::f32s, S::f32s, S::f32s, S::f32s),
) {
    let z = simd.splat_f32s(0.0);
    let nzp = simd.and_m32s(keep, simd.not_m32s(simd.equal_f32s(p, z)));
    let nzq = simd.and_m32s(keep, simd.not_m32s(simd.equal_f32s(q, z)));
    acc.va = simd.add_f32s(acc.va, select(simd, keep, t.0, z));
    acc.vb = simd.add_f32s(acc.vb, select(simd, keep, t.1, z));
    acc.dp = simd.add_f32s(acc.dp, select(simd, nzp, simd.mul_f32s(p, t.2), z));
    acc.dq = simd.add_f32s(acc.dq, select(simd, nzq, simd.mul_f32s(q, t.3), z));
}

impl<const K: u8> WithSimd for InfoGradOp<'_, K> {
    type Output = InfoRowGrad;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> InfoRowGrad {
        let InfoGradOp { p, q, dp, dq } = self;
        let kind = InfoKind::of_code(K);
        let two = kind != InfoKind::Entropy;
        let sp = RowSumOp { a: p, b: &[] }.with_simd(simd) as f32;
        let sq = if two { RowSumOp { a: q, b: &[] }.with_simd(simd) as f32 } else { 1.0 };
        let (vsp, vsq) = (simd.splat_f32s(sp), simd.splat_f32s(sq));
        let all = simd.mask_between_m32s(0, u32::MAX).mask();
        let z = simd.splat_f32s(0.0);
        let mut out = InfoRowGrad { sums: (sp, sq), ..Default::default() };
        let mut start = 0;
        while start < p.len() {
            let end = (start + CHUNK).min(p.len());
            let pc = p.get(start..end).unwrap_or_default();
            let qc = if two { q.get(start..end).unwrap_or_default() } else { pc };
            let (ph, pt) = S::as_simd_f32s(pc);
            let (qh, qt) = S::as_simd_f32s(qc);
            let (dph, dpt) = S::as_mut_simd_f32s(dp.get_mut(start..end).unwrap_or_default());
            // `dq` is empty for entropy: its stores go to a scratch vector
            let mut spare = z;
            let (dqh, dqt) =
                S::as_mut_simd_f32s(if two { dq.get_mut(start..end).unwrap_or_default() } else { &mut [] });
            let mut acc = Lanes { va: z, vb: z, dp: z, dq: z };
            let mut dqi = dqh.iter_mut();
            // two vectors per step, both terms before either is used (independent `ln` chains the
            // CPU can overlap); stored and accumulated in vector order, so the sums keep their bits
            let mut it = ph.iter().zip(qh).zip(dph.iter_mut());
            while let Some(((pv, qv), dpv)) = it.next() {
                let (pn, qn) = (simd.div_f32s(*pv, vsp), normalized(simd, two, *qv, vsq));
                if let Some(((pv2, qv2), dpv2)) = it.next() {
                    let (pn2, qn2) = (simd.div_f32s(*pv2, vsp), normalized(simd, two, *qv2, vsq));
                    let (t, t2) = (grad_terms(simd, kind, pn, qn), grad_terms(simd, kind, pn2, qn2));
                    (*dpv, *dpv2) = (t.2, t2.2);
                    *dqi.next().unwrap_or(&mut spare) = t.3;
                    *dqi.next().unwrap_or(&mut spare) = t2.3;
                    accumulate(simd, &mut acc, all, pn, qn, t);
                    accumulate(simd, &mut acc, all, pn2, qn2, t2);
                } else {
                    let t = grad_terms(simd, kind, pn, qn);
                    *dpv = t.2;
                    *dqi.next().unwrap_or(&mut spare) = t.3;
                    accumulate(simd, &mut acc, all, pn, qn, t);
                }
            }
            if !pt.is_empty() {
                // lanes past the end of the row contribute nothing and are not stored
                let mask = simd.mask_between_m32s(0, pt.len() as u32).mask();
                let pn = simd.div_f32s(simd.partial_load_f32s(pt), vsp);
                let qn = normalized(simd, two, simd.partial_load_f32s(qt), vsq);
                let t = grad_terms(simd, kind, pn, qn);
                simd.partial_store_f32s(dpt, t.2);
                if two {
                    simd.partial_store_f32s(dqt, t.3);
                }
                accumulate(simd, &mut acc, mask, pn, qn, t);
            }
            out.value.0 += hsum_f64::<S>(acc.va);
            out.value.1 += hsum_f64::<S>(acc.vb);
            out.dot.0 += hsum_f64::<S>(acc.dp);
            out.dot.1 += hsum_f64::<S>(acc.dq);
            start = end;
        }
        if kind != InfoKind::Js {
            out.value.1 = 0.0;
        }
        out
    }
}

impl Kernels {
    /// The natural-log value(s) of one row of an information measure: `p` and `q` are normalized
    /// (each divided by its `f32`-rounded sum) and `kind`'s terms summed; `q` is ignored for
    /// [`InfoKind::Entropy`] and must otherwise have `p`'s length. Returns `(value, 0)`, or `(L, R)`
    /// for [`InfoKind::Js`].
    pub(crate) fn info_row_f32(self, kind: InfoKind, p: &[f32], q: &[f32]) -> (f64, f64) {
        let q = if kind == InfoKind::Entropy || q.len() != p.len() { p } else { q };
        match kind.code() {
            0 => self.run(InfoRowOp::<0> { p, q }),
            1 => self.run(InfoRowOp::<1> { p, q }),
            2 => self.run(InfoRowOp::<2> { p, q }),
            _ => self.run(InfoRowOp::<3> { p, q }),
        }
    }

    /// One row of an information measure's backward: writes the raw partials wrt the normalized
    /// rows (see [`InfoRowGrad`]; unscaled, not yet through the normalization) into `dp` and, except
    /// for [`InfoKind::Entropy`], `dq` (both of `p`'s length), and returns the row value(s), the
    /// normalization dots and the sums. The caller finishes a row with a finite value as
    /// `g_j = c·(d_j − dot)/s`.
    pub(crate) fn info_row_grad_f32(
        self,
        kind: InfoKind,
        p: &[f32],
        q: &[f32],
        dp: &mut [f32],
        dq: &mut [f32],
    ) -> InfoRowGrad {
        let n = p.len();
        let two = kind != InfoKind::Entropy;
        if dp.len() != n || (two && (q.len() != n || dq.len() != n)) {
            return InfoRowGrad { value: (f64::NAN, f64::NAN), ..Default::default() };
        }
        let q = if two { q } else { p };
        match kind.code() {
            0 => self.run(InfoGradOp::<0> { p, q, dp, dq }),
            1 => self.run(InfoGradOp::<1> { p, q, dp, dq }),
            2 => self.run(InfoGradOp::<2> { p, q, dp, dq }),
            _ => self.run(InfoGradOp::<3> { p, q, dp, dq }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Isa;

    #[test]
    fn scipy_cases_elementwise() {
        // one-element rows: p̂ = 1 unless p is 0, negative, inf or NaN
        let k = Kernels::new();
        let e = |p: f32| k.info_row_f32(InfoKind::Entropy, &[p], &[]).0;
        assert_eq!(e(3.0), 0.0);
        assert!(e(0.0).is_nan()); // 0/0
        assert!(e(f32::NAN).is_nan());
        // two elements: [1, 3] → p̂ = [0.25, 0.75]
        let h = k.info_row_f32(InfoKind::Entropy, &[1.0, 3.0], &[]).0;
        assert!((h - 0.562_335_144_618_808_3).abs() < 1e-7, "{h}");
        // a negative entry: entr = −inf there
        assert_eq!(k.info_row_f32(InfoKind::Entropy, &[2.0, -1.0], &[]).0, f64::NEG_INFINITY);
        // relative entropy with q̂ = 0 < p̂: +inf; p̂ = 0: 0
        assert_eq!(k.info_row_f32(InfoKind::Relative, &[0.5, 0.5], &[1.0, 0.0]).0, f64::INFINITY);
        let d = k.info_row_f32(InfoKind::Relative, &[0.0, 1.0], &[0.5, 0.5]).0;
        assert!((d - std::f64::consts::LN_2).abs() < 1e-7);
        // cross-entropy: −Σ p̂ ln q̂
        let c = k.info_row_f32(InfoKind::Cross, &[1.0, 1.0], &[1.0, 3.0]).0;
        assert!((c - (-(0.5 * 0.25f64.ln() + 0.5 * 0.75f64.ln()))).abs() < 1e-7);
        // JS of disjoint distributions: L = R = ln 2
        let (l, r) = k.info_row_f32(InfoKind::Js, &[1.0, 0.0], &[0.0, 1.0]);
        assert!((l - std::f64::consts::LN_2).abs() < 1e-7 && (r - l).abs() < 1e-12);
    }

    #[test]
    fn every_isa_agrees_and_tails_are_masked() {
        for n in [1usize, 5, 16, 17, 33, 515, 1100] {
            let p: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32) * 0.25).collect();
            let q: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32) + 0.5).collect();
            // a row of alternating ±1 (even length) sums to 0: p̂ = ±inf, every term −inf
            let z: Vec<f32> = (0..n + n % 2).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
            // the lane count changes the summation order, so instruction sets agree to rounding
            // (and exactly in NaN / infinities)
            let mut first: Option<Vec<f64>> = None;
            for isa in Isa::available() {
                let k = Kernels::with_isa(isa).unwrap();
                let mut got = Vec::new();
                for kind in [InfoKind::Entropy, InfoKind::Relative, InfoKind::Cross, InfoKind::Js] {
                    let (a, b) = k.info_row_f32(kind, &p, &q);
                    got.extend([a, b]);
                }
                got.push(k.info_row_f32(InfoKind::Entropy, &z, &[]).0);
                let want = first.get_or_insert(got.clone()).clone();
                for (g, w) in got.iter().zip(&want) {
                    let same = if w.is_finite() {
                        (g - w).abs() <= 1e-6 * w.abs() + 1e-12
                    } else {
                        g.is_nan() == w.is_nan() && (w.is_nan() || g == w)
                    };
                    assert!(same, "{isa:?} n={n}: {got:?} vs {want:?}");
                }
            }
            // entr(±inf) = −inf; masked tails keep it −inf (zero-filled lanes would add 0/0 = NaN)
            assert_eq!(Kernels::new().info_row_f32(InfoKind::Entropy, &z, &[]).0, f64::NEG_INFINITY, "n={n}");
        }
    }
}
