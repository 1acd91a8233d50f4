//! The reference implementation, element by element and row by row, in the compute type: what the SIMD
//! row kernels of the fast path are tested against.

use super::*;

/// `entr` with SciPy's cases.
#[inline]
pub(crate) fn entr_elem<A: Real>(x: A) -> A {
    if x.is_nan() {
        x
    } else if x > A::zero() {
        -x * x.ln()
    } else if x == A::zero() {
        A::zero()
    } else {
        A::neg_infinity()
    }
}

/// PyTorch's `entr` derivative `−(1 + ln x)`.
#[inline]
pub(crate) fn entr_grad_elem<A: Real>(x: A) -> A {
    -(A::one() + x.ln())
}

/// `rel_entr` with SciPy's cases.
#[inline]
pub(crate) fn rel_entr_elem<A: Real>(p: A, q: A) -> A {
    if p.is_nan() || q.is_nan() {
        A::nan()
    } else if p > A::zero() && q > A::zero() {
        p * (p / q).ln()
    } else if p == A::zero() && q >= A::zero() {
        A::zero()
    } else {
        A::infinity()
    }
}

/// `(∂/∂p, ∂/∂q)` of `rel_entr`, times `g` (see [`rel_entr_backward`]).
#[inline]
pub(crate) fn rel_entr_grad_elem<A: Real>(p: A, q: A, g: A) -> (A, A) {
    if p.is_nan() || q.is_nan() {
        (A::nan(), A::nan())
    } else if p > A::zero() && q > A::zero() {
        (g * ((p / q).ln() + A::one()), -(g * p) / q)
    } else if p == A::zero() && q >= A::zero() {
        (g * ((p / q).ln() + A::one()), A::zero())
    } else {
        (A::nan(), A::nan())
    }
}

/// One term of the cross-entropy: `−p·ln q`, or `entr(p) + rel_entr(p, q)` outside `p > 0, q > 0`.
#[inline]
pub(crate) fn cross_elem<A: Real>(p: A, q: A) -> A {
    if p > A::zero() && q > A::zero() { -p * q.ln() } else { entr_elem(p) + rel_entr_elem(p, q) }
}

/// `(∂/∂p, ∂/∂q)` of [`cross_elem`], times `g`.
#[inline]
pub(crate) fn cross_grad_elem<A: Real>(p: A, q: A, g: A) -> (A, A) {
    if p > A::zero() && q > A::zero() {
        (-(g * q.ln()), -(g * p) / q)
    } else if p == A::zero() && q >= A::zero() {
        (-(g * q.ln()), A::zero())
    } else {
        (A::nan(), A::nan())
    }
}

/// `∂(L+R)/∂x̂` of the JS divergence sum at one element: `x` own probability, `y` the other, `m` their mean.
#[inline]
pub(crate) fn js_grad_elem<A: Real>(x: A, y: A, m: A) -> A {
    if x > A::zero() && m > A::zero() {
        (x / m).ln()
    } else if x == A::zero() && y > A::zero() {
        A::neg_infinity()
    } else if x == A::zero() && y == A::zero() {
        A::LN_2()
    } else {
        A::nan()
    }
}

/// Normalizes a row in place (`x / Σx`, the sum in f64) and returns `Σx`.
pub(crate) fn normalize_row<A: Real>(x: &mut [A]) -> A {
    let s = A::c(x.iter().map(|v| v.f64()).sum::<f64>());
    for v in x.iter_mut() {
        *v /= s;
    }
    s
}

/// Adjoint of `x̂ = x / s` along a row: `G_j ← (G_j − Σ_{x̂_i ≠ 0} x̂_i·G_i) / s`.
pub(crate) fn normalize_backward_row<A: Real>(xhat: &[A], s: A, g: &mut [A]) {
    let dot: f64 =
        xhat.iter().zip(g.iter()).filter(|(x, _)| **x != A::zero()).map(|(x, g)| x.f64() * g.f64()).sum();
    let dot = A::c(dot);
    for gj in g.iter_mut() {
        *gj = (*gj - dot) / s;
    }
}

/// What an entropy-family function sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `Σ entr(p̂)`.
    Entropy,
    /// `Σ rel_entr(p̂, q̂)`.
    Relative,
    /// `−Σ p̂·ln q̂` (with [`cross_elem`]'s cases).
    Cross,
}

/// The natural-log value of one normalized row.
pub(crate) fn family_row<A: Real>(kind: Kind, p: &[A], q: &[A]) -> f64 {
    match kind {
        Kind::Entropy => p.iter().map(|&x| entr_elem(x).f64()).sum(),
        Kind::Relative => p.iter().zip(q).map(|(&x, &y)| rel_entr_elem(x, y).f64()).sum(),
        Kind::Cross => p.iter().zip(q).map(|(&x, &y)| cross_elem(x, y).f64()).sum(),
    }
}

/// Gradient of one row with respect to the unnormalized row (in place of `dp`/`dq`).
///
/// `p`, `q` are the normalized rows, `sp`, `sq` their sums, `value` the natural-log row value and `gs`
/// the upstream gradient divided by `ln(base)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn family_row_backward<A: Real>(
    kind: Kind,
    p: &[A],
    q: &[A],
    sp: A,
    sq: A,
    value: f64,
    gs: A,
    dp: &mut Vec<A>,
    dq: &mut Vec<A>,
) {
    dp.clear();
    dq.clear();
    if !value.is_finite() {
        dp.resize(p.len(), A::nan());
        if kind != Kind::Entropy {
            dq.resize(q.len(), A::nan());
        }
        return;
    }
    match kind {
        Kind::Entropy => dp.extend(p.iter().map(|&x| gs * entr_grad_elem(x))),
        Kind::Relative | Kind::Cross => {
            for (&x, &y) in p.iter().zip(q) {
                let (a, b) = if kind == Kind::Relative {
                    rel_entr_grad_elem(x, y, gs)
                } else {
                    cross_grad_elem(x, y, gs)
                };
                dp.push(a);
                dq.push(b);
            }
        }
    }
    normalize_backward_row(p, sp, dp);
    if kind != Kind::Entropy {
        normalize_backward_row(q, sq, dq);
    }
}

/// `L = Σ rel_entr(p, m)` and `R = Σ rel_entr(q, m)` with `m = (p+q)/2` (left in `m`).
pub(crate) fn js_row<A: Real>(p: &[A], q: &[A], m: &mut Vec<A>) -> (f64, f64) {
    m.clear();
    m.extend(p.iter().zip(q).map(|(&x, &y)| (x + y) / A::c(2.0)));
    let l = p.iter().zip(m.iter()).map(|(&x, &mm)| rel_entr_elem(x, mm).f64()).sum();
    let r = q.iter().zip(m.iter()).map(|(&y, &mm)| rel_entr_elem(y, mm).f64()).sum();
    (l, r)
}

/// SciPy's `sqrt((L + R) / ln(base) / 2)`.
pub(crate) fn js_value(l: f64, r: f64, ln_b: f64) -> f64 {
    ((l + r) / ln_b / 2.0).sqrt()
}

/// Gradient of JS with respect to the normalized (broadcast) rows `p`, `q` (not yet through the
/// normalization).
#[allow(clippy::too_many_arguments)]
pub(crate) fn js_row_backward<A: Real>(
    p: &[A],
    q: &[A],
    m: &[A],
    js: f64,
    ln_b: f64,
    g: A,
    gp: &mut Vec<A>,
    gq: &mut Vec<A>,
) {
    gp.clear();
    gq.clear();
    let n = p.len();
    if !js.is_finite() {
        gp.resize(n, A::nan());
        gq.resize(n, A::nan());
        return;
    }
    if js == 0.0 {
        gp.resize(n, A::zero());
        gq.resize(n, A::zero());
        return;
    }
    let c = A::c(g.f64() / (4.0 * js * ln_b));
    for ((&x, &y), &mm) in p.iter().zip(q).zip(m) {
        gp.push(c * js_grad_elem(x, y, mm));
        gq.push(c * js_grad_elem(y, x, mm));
    }
}
