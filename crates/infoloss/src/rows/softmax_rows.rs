//! Softmax-family rows: contiguous slices in the compute type, sums accumulated in `f64`.
//!
//! The straightforward implementations `softmax`, `log_softmax`, `logsumexp`, `nll_loss` and
//! `cross_entropy` (and the reference paths of the fused losses) are built from; the SIMD row kernels
//! are tested against them.

use crate::base::Real;

/// Maximum of a row, propagating NaN (as `at::vec::maximum`); `−inf` for an empty row.
#[inline]
pub(crate) fn row_max<A: Real>(x: &[A]) -> A {
    let mut m = A::neg_infinity();
    for &v in x {
        if v.is_nan() {
            return v;
        }
        if v > m {
            m = v;
        }
    }
    m
}

/// `out = log_softmax(x)` = `(x − max) − ln Σ exp(x − max)` (PyTorch's CPU order of operations).
///
/// A row that is all `−inf`, or contains `+inf` or NaN, gives NaN everywhere.
#[inline]
pub(crate) fn row_log_softmax<A: Real>(x: &[A], out: &mut [A]) {
    let m = row_max(x);
    let mut s = 0f64;
    for &v in x {
        s += (v - m).exp().f64();
    }
    let log_sum = A::c(s.ln());
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m) - log_sum;
    }
}

/// `out = softmax(x)` = `exp(x − max) · (1 / Σ exp(x − max))` (PyTorch's CPU order of operations).
#[inline]
pub(crate) fn row_softmax<A: Real>(x: &[A], out: &mut [A]) {
    let m = row_max(x);
    let mut s = 0f64;
    for (o, &v) in out.iter_mut().zip(x) {
        let e = (v - m).exp();
        *o = e;
        s += e.f64();
    }
    let inv = A::one() / A::c(s);
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// `torch.logsumexp` of a row: `ln Σ exp(x − m) + m` where `m = max(x)`, replaced by 0 when it is
/// infinite (so an all-`−inf` row gives `−inf` and a row with `+inf` gives `+inf`, not NaN).
#[inline]
pub(crate) fn row_logsumexp<A: Real>(x: &[A]) -> A {
    let m = row_max(x);
    let shift = if m.is_infinite() { A::zero() } else { m };
    let mut s = 0f64;
    for &v in x {
        s += (v - shift).exp().f64();
    }
    A::c(s.ln()) + shift
}

/// Backward of `logsumexp` for one row: `out = g · exp(x − lse)`.
#[inline]
pub(crate) fn row_logsumexp_backward<A: Real>(x: &[A], lse: A, g: A, out: &mut [A]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = g * (v - lse).exp();
    }
}

/// Backward of `log_softmax` for one row, from its output `y`: `out = g − exp(y) · Σ g`.
#[inline]
pub(crate) fn row_log_softmax_backward<A: Real>(y: &[A], g: &[A], out: &mut [A]) {
    let mut s = 0f64;
    for &v in g {
        s += v.f64();
    }
    let sum = A::c(s);
    for ((o, &yv), &gv) in out.iter_mut().zip(y).zip(g) {
        *o = gv - yv.exp() * sum;
    }
}

/// Backward of `softmax` for one row, from its output `s`: `out = (g − Σ g·s) · s`.
#[inline]
pub(crate) fn row_softmax_backward<A: Real>(s: &[A], g: &[A], out: &mut [A]) {
    let mut acc = 0f64;
    for (&sv, &gv) in s.iter().zip(g) {
        acc += (gv * sv).f64();
    }
    let sum = A::c(acc);
    for ((o, &sv), &gv) in out.iter_mut().zip(s).zip(g) {
        *o = (gv - sum) * sv;
    }
}
