//! Row kernels of the SciPy-style information measures: entropy, relative entropy and
//! cross-entropy of normalized rows, and the two sums of the Jensen–Shannon divergence.
//!
//! Every function normalizes its rows as the reference does (`x̂ = x / s` with `s = Σx` rounded to
//! `f32`), evaluates SciPy's `entr` / `rel_entr` cases with vector selects, and sums the terms in
//! `f32` lanes flushed into an `f64` total every [`CHUNK`] elements. Lanes past the end of a row are
//! masked out, so a row's value is the sum of exactly its own terms.
//!
//! The loops take four vectors per step. When the inputs and the logarithm arguments of all four
//! are positive normal numbers (checked once per block), the four logarithms run without a branch,
//! so the CPU overlaps their dependency chains; any other block takes the per-vector path with
//! SciPy's cases. Both paths give the same bits.

use super::simd::{neg, select};
use std::ops::Range;

use pulp::{Simd, WithSimd};

use super::Kernels;
use super::ln::{all_lanes, ln_f32s, ln_normal_f32s, normal_m32s};
use super::row::{CHUNK, RowSumOp};
use super::simd::hsum_f64;
use super::vmap::{MapInPlace, VecMap};

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

/// The arguments of the logarithms of one vector's terms (`ln p̂`; `ln(p̂/q̂)`; `ln q̂`; for JS
/// `ln(p̂/m)` and `ln(q̂/m)`, `m = (p̂ + q̂)/2`), computed as [`terms`] computes them, and the lanes
/// where the inputs and these arguments are all positive normal numbers (where every SciPy case
/// reduces to its main formula).
#[inline(always)]
fn ln_args<S: Simd>(simd: S, kind: InfoKind, p: S::f32s, q: S::f32s) -> (S::f32s, S::f32s, S::m32s) {
    let ok = normal_m32s(simd, p);
    match kind {
        InfoKind::Entropy => (p, p, ok),
        InfoKind::Relative | InfoKind::Cross => {
            let a = if kind == InfoKind::Cross { q } else { simd.div_f32s(p, q) };
            let ok = simd.and_m32s(ok, simd.and_m32s(normal_m32s(simd, q), normal_m32s(simd, a)));
            (a, a, ok)
        }
        InfoKind::Js => {
            let m = simd.mul_f32s(simd.add_f32s(p, q), simd.splat_f32s(0.5));
            let (a, b) = (simd.div_f32s(p, m), simd.div_f32s(q, m));
            let ok = simd.and_m32s(ok, normal_m32s(simd, q));
            let ok = simd.and_m32s(ok, simd.and_m32s(normal_m32s(simd, a), normal_m32s(simd, b)));
            (a, b, ok)
        }
    }
}

/// Four vectors' terms as [`grad_terms`] gives them, `(value a, value b, dp, dq)`.
type Block<V> = [(V, V, V, V); 4];

/// The terms of a block of four vectors when every lane of [`ln_args`] is positive normal (`None`
/// otherwise): the same bits as [`terms`] and [`grad_terms`], with the four vectors' logarithms
/// free of branches so the CPU overlaps their dependency chains (one vector's chain alone leaves
/// most of the floating-point units idle). The forward uses only the values; the partials it does
/// not read are never computed (the function is inlined).
#[inline(always)]
fn fast_block<S: Simd>(
    simd: S,
    kind: InfoKind,
    p: &[S::f32s; 4],
    q: &[S::f32s; 4],
) -> Option<Block<S::f32s>> {
    let z = simd.splat_f32s(0.0);
    let one = simd.splat_f32s(1.0);
    let mut args = [(z, z); 4];
    let mut ok = simd.equal_f32s(z, z);
    for j in 0..4 {
        let (a, b, good) = ln_args(simd, kind, p[j], q[j]);
        args[j] = (a, b);
        ok = simd.and_m32s(ok, good);
    }
    if !all_lanes(simd, ok) {
        return None;
    }
    let mut t = [(z, z, z, z); 4];
    for j in 0..4 {
        let (a, b) = args[j];
        let la = ln_normal_f32s(simd, a);
        t[j] = match kind {
            InfoKind::Entropy => {
                (neg(simd, simd.mul_f32s(p[j], la)), z, neg(simd, simd.add_f32s(one, la)), z)
            }
            // `a = p̂/q̂`
            InfoKind::Relative => (simd.mul_f32s(p[j], la), z, simd.add_f32s(la, one), neg(simd, a)),
            InfoKind::Cross => {
                (neg(simd, simd.mul_f32s(p[j], la)), z, neg(simd, la), neg_ratio(simd, p[j], q[j]))
            }
            InfoKind::Js => {
                let lb = ln_normal_f32s(simd, b);
                (simd.mul_f32s(p[j], la), simd.mul_f32s(q[j], lb), la, lb)
            }
        };
    }
    Some(t)
}

/// One block of four raw vectors `pv`, `qv` (`sp`, `sq` the splatted normalizers): the normalized
/// vectors and their terms, from [`fast_block`] when it applies, else from [`grad_terms`] per vector.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn block_terms<S: Simd>(
    simd: S,
    kind: InfoKind,
    pv: &[S::f32s],
    qv: &[S::f32s],
    sp: S::f32s,
    sq: S::f32s,
) -> ([S::f32s; 4], [S::f32s; 4], Block<S::f32s>) {
    let two = kind != InfoKind::Entropy;
    let z = simd.splat_f32s(0.0);
    let (mut pn, mut qn) = ([z; 4], [z; 4]);
    for j in 0..4 {
        (pn[j], qn[j]) = (simd.div_f32s(pv[j], sp), normalized(simd, two, qv[j], sq));
    }
    let t = match fast_block(simd, kind, &pn, &qn) {
        Some(t) => t,
        None => {
            let mut t = [(z, z, z, z); 4];
            for j in 0..4 {
                t[j] = grad_terms(simd, kind, pn[j], qn[j]);
            }
            t
        }
    };
    (pn, qn, t)
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

/// The sums of `p` and (for the two-row measures) `q` that normalize them, rounded to `f32` as the
/// reference's `normalize_row` does (`q`'s is 1 for the entropy).
#[inline(always)]
fn normalizers<S: Simd>(simd: S, p: &[f32], q: &[f32], two: bool) -> (f32, f32) {
    let sp = RowSumOp { a: p, b: &[] }.with_simd(simd) as f32;
    (sp, if two { RowSumOp { a: q, b: &[] }.with_simd(simd) as f32 } else { 1.0 })
}

/// The elements `range` of `p` and of `q` (of `p` twice for the entropy, one row), each as whole
/// vectors and a tail.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn chunk_pair<'a, S: Simd>(
    p: &'a [f32],
    q: &'a [f32],
    two: bool,
    range: Range<usize>,
) -> ((&'a [S::f32s], &'a [f32]), (&'a [S::f32s], &'a [f32])) {
    let pc = p.get(range.clone()).unwrap_or_default();
    let qc = if two { q.get(range).unwrap_or_default() } else { pc };
    (S::as_simd_f32s(pc), S::as_simd_f32s(qc))
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
        let (sp, sq) = normalizers(simd, p, q, two);
        let (sp, sq) = (simd.splat_f32s(sp), simd.splat_f32s(sq));
        let (mut ta, mut tb) = (0.0f64, 0.0f64);
        let mut start = 0;
        while start < p.len() {
            let end = (start + CHUNK).min(p.len());
            let ((ph, pt), (qh, qt)) = chunk_pair::<S>(p, q, two, start..end);
            let z = simd.splat_f32s(0.0);
            let (mut aa, mut ab) = ([z; 4], [z; 4]);
            let mut pi = ph.chunks_exact(4);
            let mut qi = qh.chunks_exact(4);
            for (pv, qv) in (&mut pi).zip(&mut qi) {
                // (the partials are not used here, so they are never computed)
                let (_, _, t) = block_terms(simd, kind, pv, qv, sp, sq);
                for j in 0..4 {
                    aa[j] = simd.add_f32s(aa[j], t[j].0);
                    ab[j] = simd.add_f32s(ab[j], t[j].1);
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
        let (sp, sq) = normalizers(simd, p, q, two);
        let (vsp, vsq) = (simd.splat_f32s(sp), simd.splat_f32s(sq));
        let all = simd.mask_between_m32s(0, u32::MAX).mask();
        let z = simd.splat_f32s(0.0);
        let mut out = InfoRowGrad { sums: (sp, sq), ..Default::default() };
        let mut start = 0;
        while start < p.len() {
            let end = (start + CHUNK).min(p.len());
            let ((ph, pt), (qh, qt)) = chunk_pair::<S>(p, q, two, start..end);
            let (dph, dpt) = S::as_mut_simd_f32s(dp.get_mut(start..end).unwrap_or_default());
            let (dqh, dqt) =
                S::as_mut_simd_f32s(if two { dq.get_mut(start..end).unwrap_or_default() } else { &mut [] });
            let mut acc = Lanes { va: z, vb: z, dp: z, dq: z };
            // blocks of four vectors (see `fast_block`); stored and accumulated in vector order
            let mut pi = ph.chunks_exact(4);
            let mut qi = qh.chunks_exact(4);
            let mut dpi = dph.chunks_exact_mut(4);
            let mut dqi = dqh.chunks_exact_mut(4);
            for ((pv, qv), dpv) in (&mut pi).zip(&mut qi).zip(&mut dpi) {
                let (pn, qn, t) = block_terms(simd, kind, pv, qv, vsp, vsq);
                let dqv = dqi.next();
                for j in 0..4 {
                    dpv[j] = t[j].2;
                    accumulate(simd, &mut acc, all, pn[j], qn[j], t[j]);
                }
                if let Some(dqv) = dqv {
                    for j in 0..4 {
                        dqv[j] = t[j].3;
                    }
                }
            }
            // `dq` is empty for entropy: its stores go to a scratch vector
            let mut spare = z;
            let mut dqr = dqi.into_remainder().iter_mut();
            for ((pv, qv), dpv) in pi.remainder().iter().zip(qi.remainder()).zip(dpi.into_remainder()) {
                let (pn, qn) = (simd.div_f32s(*pv, vsp), normalized(simd, two, *qv, vsq));
                let t = grad_terms(simd, kind, pn, qn);
                *dpv = t.2;
                *dqr.next().unwrap_or(&mut spare) = t.3;
                accumulate(simd, &mut acc, all, pn, qn, t);
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

/// `d ← c·(d − dot)/s`, the last step of a gradient row (see [`Kernels::info_finish_f32`]).
#[derive(Clone, Copy)]
struct FinishMap {
    c: f32,
    dot: f32,
    s: f32,
}

impl VecMap for FinishMap {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        let d = simd.sub_f32s(v, simd.splat_f32s(self.dot));
        simd.div_f32s(simd.mul_f32s(simd.splat_f32s(self.c), d), simd.splat_f32s(self.s))
    }
}

impl Kernels {
    /// Finishes a row of raw partials from [`Kernels::info_row_grad_f32`] through the
    /// normalization's adjoint: `d_j ← c·(d_j − dot)/s` in `f32`, rounded after each operation
    /// (the bits of the scalar expression `c * (d - dot) / s`).
    pub(crate) fn info_finish_f32(self, d: &mut [f32], c: f32, dot: f32, s: f32) {
        self.run(MapInPlace { x: d, f: FinishMap { c, dot, s } });
    }

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

    /// `fast_block` on one instruction set: `Some` with exactly `grad_terms`' bits when every
    /// input and logarithm argument is positive normal, `None` as soon as one lane is not.
    struct BlockCheck {
        p: [f32; 64],
        q: [f32; 64],
    }

    impl WithSimd for BlockCheck {
        type Output = Vec<(bool, bool)>;
        fn with_simd<S: Simd>(self, simd: S) -> Vec<(bool, bool)> {
            let mut seen = Vec::new();
            let n = 4 * S::F32_LANES;
            for kind in [InfoKind::Entropy, InfoKind::Relative, InfoKind::Cross, InfoKind::Js] {
                let (ph, _) = S::as_simd_f32s(&self.p[..n]);
                let (qh, _) = S::as_simd_f32s(&self.q[..n]);
                let p: [S::f32s; 4] = [ph[0], ph[1], ph[2], ph[3]];
                let q: [S::f32s; 4] = [qh[0], qh[1], qh[2], qh[3]];
                let fast = fast_block(simd, kind, &p, &q);
                let same = fast.is_some_and(|t| {
                    (0..4).all(|j| {
                        let want = grad_terms(simd, kind, p[j], q[j]);
                        let bits = |v: S::f32s| {
                            let mut out = [0f32; 16];
                            simd.partial_store_f32s(&mut out, v);
                            out.map(f32::to_bits)
                        };
                        let (a, b) = (t[j], want);
                        bits(a.0) == bits(b.0)
                            && bits(a.1) == bits(b.1)
                            && bits(a.2) == bits(b.2)
                            && bits(a.3) == bits(b.3)
                    })
                });
                seen.push((fast.is_some(), same));
            }
            seen
        }
    }

    #[test]
    fn fast_blocks_match_the_general_terms() {
        let mut p = [0f32; 64];
        let mut q = [0f32; 64];
        for i in 0..64 {
            p[i] = 1.0e-3 + (i * 37 % 101) as f32 * 7.3e-3;
            q[i] = 2.0e-3 + (i * 53 % 97) as f32 * 4.1e-3;
        }
        for isa in Isa::available() {
            let k = Kernels::with_isa(isa).unwrap();
            // all positive normal: the fast terms, with the general path's bits
            assert_eq!(k.run(BlockCheck { p, q }), vec![(true, true); 4], "{isa:?}");
            // one zero, one subnormal or one infinity anywhere in the block: the general path
            for (at, v) in [(3usize, 0.0f32), (2, 1.0e-40), (1, f32::INFINITY)] {
                let mut pz = p;
                pz[at] = v;
                assert_eq!(k.run(BlockCheck { p: pz, q }), vec![(false, false); 4], "{isa:?} p[{at}] = {v}");
            }
            // a zero `q` lane: entropy ignores `q`, every other kind takes the general path
            let mut qz = q;
            qz[3] = 0.0;
            let got = k.run(BlockCheck { p, q: qz });
            assert_eq!(got, vec![(true, true), (false, false), (false, false), (false, false)], "{isa:?}");
        }
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
