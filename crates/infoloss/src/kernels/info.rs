//! Row kernels of the SciPy-style information measures: entropy, relative entropy and
//! cross-entropy of normalized rows, and the two sums of the Jensen–Shannon divergence.
//!
//! Every function normalizes its rows as the reference does (`x̂ = x / s` with `s = Σx` rounded to
//! `f32`), evaluates SciPy's `entr` / `rel_entr` cases with vector selects, and sums the terms in
//! `f32` lanes flushed into an `f64` total every [`CHUNK`] elements. Lanes past the end of a row are
//! masked out, so a row's value is the sum of exactly its own terms.

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
    let z = simd.splat_f32s(0.0);
    let t = simd.neg_f32s(simd.mul_f32s(x, ln_f32s(simd, x)));
    let t = simd.select_f32s(simd.equal_f32s(x, z), z, t);
    simd.select_f32s(simd.less_than_f32s(x, z), simd.splat_f32s(f32::NEG_INFINITY), t)
}

/// `rel_entr(p, q)`; NaN if either is NaN, `p·ln(p/q)` if both are positive, 0 if `p = 0 ≤ q`,
/// `+inf` otherwise.
#[inline(always)]
fn rel_v<S: Simd>(simd: S, p: S::f32s, q: S::f32s) -> S::f32s {
    let z = simd.splat_f32s(0.0);
    let t = simd.mul_f32s(p, ln_f32s(simd, simd.div_f32s(p, q)));
    let pos = simd.and_m32s(simd.greater_than_f32s(p, z), simd.greater_than_f32s(q, z));
    let zero = simd.and_m32s(simd.equal_f32s(p, z), simd.greater_than_or_equal_f32s(q, z));
    let numbers = simd.and_m32s(simd.equal_f32s(p, p), simd.equal_f32s(q, q));
    let other = simd.select_f32s(numbers, simd.splat_f32s(f32::INFINITY), simd.splat_f32s(f32::NAN));
    simd.select_f32s(pos, t, simd.select_f32s(zero, z, other))
}

/// `−p·ln q` where both are positive, `entr(p) + rel_entr(p, q)` elsewhere.
#[inline(always)]
fn cross_v<S: Simd>(simd: S, p: S::f32s, q: S::f32s) -> S::f32s {
    let z = simd.splat_f32s(0.0);
    let pos = simd.and_m32s(simd.greater_than_f32s(p, z), simd.greater_than_f32s(q, z));
    let main = simd.neg_f32s(simd.mul_f32s(p, ln_f32s(simd, q)));
    simd.select_f32s(pos, main, simd.add_f32s(entr_v(simd, p), rel_v(simd, p, q)))
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
            let m = simd.div_f32s(simd.add_f32s(p, q), simd.splat_f32s(2.0));
            (rel_v(simd, p, m), rel_v(simd, q, m))
        }
    }
}

struct InfoRowOp<'a> {
    kind: InfoKind,
    p: &'a [f32],
    q: &'a [f32],
}

impl WithSimd for InfoRowOp<'_> {
    type Output = (f64, f64);
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f64, f64) {
        let InfoRowOp { kind, p, q } = self;
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
                    let (a, b) = terms(simd, kind, simd.div_f32s(pv[j], sp), simd.div_f32s(qv[j], sq));
                    aa[j] = simd.add_f32s(aa[j], a);
                    ab[j] = simd.add_f32s(ab[j], b);
                }
            }
            for (pv, qv) in pi.remainder().iter().zip(qi.remainder()) {
                let (a, b) = terms(simd, kind, simd.div_f32s(*pv, sp), simd.div_f32s(*qv, sq));
                aa[0] = simd.add_f32s(aa[0], a);
                ab[0] = simd.add_f32s(ab[0], b);
            }
            if !pt.is_empty() {
                // lanes past the end of the row contribute nothing (0/0 there would be NaN)
                let mask = simd.mask_between_m32s(0, pt.len() as u32).mask();
                let pv = simd.div_f32s(simd.partial_load_f32s(pt), sp);
                let qv = simd.div_f32s(simd.partial_load_f32s(qt), sq);
                let (a, b) = terms(simd, kind, pv, qv);
                aa[1] = simd.add_f32s(aa[1], simd.select_f32s(mask, a, z));
                ab[1] = simd.add_f32s(ab[1], simd.select_f32s(mask, b, z));
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

impl Kernels {
    /// The natural-log value(s) of one row of an information measure: `p` and `q` are normalized
    /// (each divided by its `f32`-rounded sum) and `kind`'s terms summed; `q` is ignored for
    /// [`InfoKind::Entropy`] and must otherwise have `p`'s length. Returns `(value, 0)`, or `(L, R)`
    /// for [`InfoKind::Js`].
    pub(crate) fn info_row_f32(self, kind: InfoKind, p: &[f32], q: &[f32]) -> (f64, f64) {
        let q = if kind == InfoKind::Entropy || q.len() != p.len() { p } else { q };
        self.run(InfoRowOp { kind, p, q })
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
