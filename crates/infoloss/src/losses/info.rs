//! Information measures with SciPy semantics: [`entr`], [`rel_entr`], [`entropy`],
//! [`shannon_cross_entropy`], [`jensenshannon`], [`self_information`], and their gradients.
//!
//! # Values
//!
//! The forward values follow SciPy 1.17.1 (`scipy.special.entr`, `scipy.special.rel_entr`,
//! `scipy.stats.entropy`, `scipy.spatial.distance.jensenshannon`): the same special cases, the same
//! normalization of unnormalized inputs, the same broadcasting, the same zero-size results. Element math
//! runs in [`Element::Acc`] (`f32` for `f32`/`f16`/`bf16`, `f64` for `f64`); the sums along the
//! distribution axis (the normalizer `Σx` and the sum of the terms) accumulate in `f64` and are rounded
//! once.
//!
//! Deliberate differences from SciPy, all about the `base` option (SciPy divides by `ln(base)`):
//!
//! - `base` NaN, `base ≤ 0` and `base = 1` are rejected with [`Error::InvalidOption`] naming `base`
//!   (SciPy's `entropy` raises for `base ≤ 0`, but returns `inf`/NaN for `base = 1` because
//!   `ln 1 = 0`, and NaN for a NaN base; `jensenshannon` checks nothing).
//! - [`jensenshannon`] also rejects `0 < base < 1`: the divergence divided by `ln(base) < 0` is
//!   negative and SciPy returns `sqrt(negative) = NaN` for every pair of distinct distributions.
//!
//! `base = +inf` is accepted as in SciPy (results are 0, or NaN where the natural value is not finite).
//!
//! # Gradients
//!
//! SciPy has none; these are the derivatives of the same formulas:
//!
//! - Elementwise ([`entr_backward`], [`self_information_backward`]) follow PyTorch's autograd of the
//!   same expression (`torch.special.entr`, `-torch.log(x) / ln(base)`), including its infinities and
//!   NaNs (e.g. `entr`'s gradient is `+inf` at 0 and NaN for `x < 0`).
//! - [`rel_entr_backward`] documents its choices where `rel_entr` is not differentiable.
//! - Through the normalization `x̂ = x / Σx` along the axis, the adjoint is
//!   `dx_j = (G_j − Σ_{i: x̂_i ≠ 0} x̂_i·G_i) / Σx` where `G` is the gradient with respect to `x̂`.
//!   Terms with `x̂_i = 0` are left out of the sum: such an `x̂_i` stays 0 whatever `Σx` is, so its
//!   (possibly infinite) partial cannot affect the others. Autograd of the literal formula would compute
//!   `0·∞ = NaN` there and turn the whole row into NaN as soon as one probability is 0.
//! - A row (one distribution) whose value is `±inf` or NaN gets NaN gradients everywhere in the row.
//! - Broadcasting is undone by summing the gradient over the broadcast dimensions, so each gradient has
//!   the shape of its own input.
//! - `grad_output` has the output's shape, or is 0-dimensional (every output element gets that value).

use ndarray::{ArrayD, ArrayView, ArrayViewD, Axis, Dimension, IxDyn};

mod fast;
crate::base::path::deprecated_switches!("info");
use num_traits::{Float, One};

use crate::base::array::{try_full, try_vec};
use crate::base::shape::checked_numel;
use crate::{Element, Error, Real, Result};

pub use crate::options::EntropyOptions;

pub use crate::options::JensenShannonOptions;

// ---------------------------------------------------------------------------------------------------------
// Elementwise functions
// ---------------------------------------------------------------------------------------------------------

/// `scipy.special.entr`: `−x·ln x`, 0 at 0, −inf for x < 0.
///
/// Cases (as SciPy): NaN → NaN; `x > 0` → `−x·ln x` (so `entr(1) = −0` and `entr(+inf) = −inf`);
/// `x = 0` → 0; `x < 0` → `−inf`. PyTorch's `torch.special.entr` gives the same values.
///
/// Gradient: [`entr_backward`].
///
/// ```
/// use infoloss::{entr, ndarray::array};
/// let y = entr(array![0.5f64, 0.0, -1.0].view());
/// assert!((y[0] - 0.5 * 2f64.ln()).abs() < 1e-15);
/// assert_eq!(y[1], 0.0);
/// assert_eq!(y[2], f64::NEG_INFINITY);
/// ```
pub fn entr<T: Element, D: Dimension>(x: ArrayView<'_, T, D>) -> ArrayD<T> {
    x.into_dyn().map(|&v| T::from_acc(entr_elem(v.to_acc())))
}

/// Gradient of [`entr`]: `g·(−ln x − 1)`, computed as PyTorch's autograd of `torch.special.entr` does,
/// `g·(−(1 + ln x))`.
///
/// So it is `+inf·g` at `x = 0` (NaN when `g = 0`), NaN for `x < 0` and for NaN, `−inf` at `x = +inf`
/// (all as torch 2.15). `grad_output` must have the shape of `x`, or be 0-dimensional (one upstream
/// gradient for every element); otherwise [`Error::ShapeMismatch`] naming both shapes.
///
/// ```
/// use infoloss::{entr_backward, ndarray::{arr0, array}};
/// let x = array![1.0f64, 0.0, -1.0];
/// let d = entr_backward(x.view(), arr0(2.0).view()).unwrap();
/// assert_eq!(d[0], -2.0);
/// assert_eq!(d[1], f64::INFINITY);
/// assert!(d[2].is_nan());
/// ```
pub fn entr_backward<T: Element, D: Dimension, D2: Dimension>(
    x: ArrayView<'_, T, D>,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<ArrayD<T>> {
    const OP: &str = "entr_backward";
    let x = x.into_dyn();
    let g = grad_output.into_dyn();
    let g = grad_into(OP, &g, x.shape())?;
    Ok(ndarray::Zip::from(&x).and(&g).map_collect(|&x, &g| {
        let (x, g) = (x.to_acc(), g.to_acc());
        T::from_acc(g * entr_grad_elem(x))
    }))
}

/// `scipy.special.rel_entr`: `p·ln(p/q)` elementwise with SciPy's cases; p and q broadcast.
///
/// Cases (as SciPy): either NaN → NaN; `p > 0, q > 0` → `p·ln(p/q)` (so `rel_entr(1, +inf) = −inf`,
/// `rel_entr(+inf, +inf) = NaN`); `p = 0, q ≥ 0` → 0; otherwise (`p < 0`, `q < 0`, or `p > 0, q = 0`)
/// → `+inf`. `p` and `q` broadcast by NumPy rules and the result has the broadcast shape; shapes that do
/// not broadcast give [`Error::ShapeMismatch`] naming both.
///
/// Gradient: [`rel_entr_backward`].
///
/// ```
/// use infoloss::{rel_entr, ndarray::array};
/// let r = rel_entr(array![1.0f64, 0.0, 1.0].view(), array![2.0f64, 0.0, 0.0].view()).unwrap();
/// assert!((r[0] + 2f64.ln()).abs() < 1e-15);
/// assert_eq!(r[1], 0.0);
/// assert_eq!(r[2], f64::INFINITY);
/// ```
pub fn rel_entr<T: Element, D: Dimension, D2: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D2>,
) -> Result<ArrayD<T>> {
    const OP: &str = "rel_entr";
    let (p, q) = (p.into_dyn(), q.into_dyn());
    let shape = broadcast_shape(OP, "p", p.shape(), "q", q.shape())?;
    let pb = broadcast_view(OP, "p", &p, &shape)?;
    let qb = broadcast_view(OP, "q", &q, &shape)?;
    // The broadcast of two inputs may be far larger than either: allocate it fallibly.
    let mut out = try_vec(OP, "output", pb.len())?;
    // (In logical order: `Zip` may visit Fortran-order inputs in memory order.)
    out.extend(pb.iter().zip(qb.iter()).map(|(&p, &q)| T::from_acc(rel_entr_elem(p.to_acc(), q.to_acc()))));
    to_array(OP, &shape, out)
}

/// Gradients of [`rel_entr`] wrt p and q (each in its own shape).
///
/// Where `p > 0, q > 0`: `dp = g·(ln(p/q) + 1)`, `dq = −g·p/q` (the autograd of `p·ln(p/q)`; infinite
/// inputs give what the formula gives). Where `p = 0, q ≥ 0` (`rel_entr` is 0 there): `dq = 0` (exactly,
/// as PyTorch's `xlogy` gradient is masked), and `dp = g·(ln(0/q) + 1)`, i.e. the one-sided derivative
/// `−inf·g` for `q > 0` (as `entr`'s gradient is `+inf` at 0) and NaN for `q = 0`, where `rel_entr`
/// jumps from 0 to `+inf`. Where `rel_entr` is `+inf` by SciPy's last case, or an input is NaN, both are
/// NaN.
///
/// `grad_output` has the broadcast shape of `p` and `q` (or is 0-dimensional); the gradients are
/// summed over broadcast dimensions back to the shapes of `p` and `q`.
///
/// ```
/// use infoloss::{rel_entr_backward, ndarray::{arr0, array}};
/// // q broadcasts along the rows: its gradient is summed over them.
/// let p = array![[1.0f64, 2.0], [4.0, 2.0]];
/// let q = array![2.0f64, 2.0];
/// let (dp, dq) = rel_entr_backward(p.view(), q.view(), arr0(1.0).view()).unwrap();
/// assert!((dp[[0, 0]] - (0.5f64.ln() + 1.0)).abs() < 1e-15);
/// assert_eq!(dq.shape(), &[2]);
/// assert!((dq[0] - (-0.5 - 2.0)).abs() < 1e-15);
/// assert!((dq[1] - (-1.0 - 1.0)).abs() < 1e-15);
/// ```
pub fn rel_entr_backward<T: Element, D: Dimension, D2: Dimension, D3: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D2>,
    grad_output: ArrayView<'_, T, D3>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    const OP: &str = "rel_entr_backward";
    let (p, q) = (p.into_dyn(), q.into_dyn());
    let g = grad_output.into_dyn();
    let shape = broadcast_shape(OP, "p", p.shape(), "q", q.shape())?;
    let pb = broadcast_view(OP, "p", &p, &shape)?;
    let qb = broadcast_view(OP, "q", &q, &shape)?;
    let gb = grad_into(OP, &g, &shape)?;
    let n = checked_numel(OP, "output", &shape)?;
    let mut dp = try_vec(OP, "gradient", n)?;
    let mut dq = try_vec(OP, "gradient", n)?;
    // In logical (row-major) order, as `sum_to_shape` reads them: `Zip` may visit Fortran-order
    // inputs in memory order.
    pb.iter().zip(qb.iter()).zip(gb.iter()).for_each(|((&p, &q), &g)| {
        let (a, b) = rel_entr_grad_elem(p.to_acc(), q.to_acc(), g.to_acc());
        dp.push(a.f64());
        dq.push(b.f64());
    });
    let dp = sum_to_shape::<T>(OP, &shape, dp, p.shape())?;
    let dq = sum_to_shape::<T>(OP, &shape, dq, q.shape())?;
    Ok((dp, dq))
}

/// Self-information `I(p) = −log_base p` elementwise.
///
/// `−ln p / ln(base)` (`−ln p` without a base): `+inf` at 0, NaN for `p < 0` and NaN, 0 at 1. SciPy has
/// no function for it; NumPy's `-np.log(p) / np.log(base)` gives the same values. `base` must be
/// positive and not 1 (NaN rejected): [`Error::InvalidOption`] naming `base` otherwise; `0 < base < 1`
/// is allowed (negative information).
///
/// Gradient: [`self_information_backward`].
///
/// ```
/// use infoloss::{self_information, ndarray::array};
/// let i = self_information(array![0.25f64, 1.0, 0.0].view(), Some(2.0)).unwrap();
/// assert_eq!(i[0], 2.0);
/// assert_eq!(i[1], 0.0);
/// assert_eq!(i[2], f64::INFINITY);
/// ```
pub fn self_information<T: Element, D: Dimension>(
    p: ArrayView<'_, T, D>,
    base: Option<f64>,
) -> Result<ArrayD<T>> {
    const OP: &str = "self_information";
    let ln_b = log_base(OP, base, true)?;
    let p = p.into_dyn();
    let c = T::Acc::c(ln_b);
    Ok(p.map(|&v| {
        let i = -(v.to_acc().ln());
        T::from_acc(if base.is_some() { i / c } else { i })
    }))
}

/// Gradient of [`self_information`]: `−g / (p·ln(base))` (`−g/p` without a base).
///
/// Computed as PyTorch's autograd of `-torch.log(p) / ln(base)`: `(−g / ln(base)) / p`. It is `−inf·g`
/// at `p = 0` and, as torch, finite for `p < 0` (`log`'s gradient `1/p` does not look at the domain).
/// `grad_output` has the shape of `p` or is 0-dimensional.
///
/// ```
/// use infoloss::{info::self_information_backward, ndarray::{arr0, array}};
/// let d = self_information_backward(array![0.5f64, 0.0].view(), None, arr0(1.0).view()).unwrap();
/// assert_eq!(d[0], -2.0);
/// assert_eq!(d[1], f64::NEG_INFINITY);
/// ```
pub fn self_information_backward<T: Element, D: Dimension, D2: Dimension>(
    p: ArrayView<'_, T, D>,
    base: Option<f64>,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<ArrayD<T>> {
    const OP: &str = "self_information_backward";
    let ln_b = log_base(OP, base, true)?;
    let p = p.into_dyn();
    let g = grad_output.into_dyn();
    let g = grad_into(OP, &g, p.shape())?;
    let c = T::Acc::c(ln_b);
    Ok(ndarray::Zip::from(&p).and(&g).map_collect(|&p, &g| {
        let ng = -g.to_acc();
        let ng = if base.is_some() { ng / c } else { ng };
        T::from_acc(ng / p.to_acc())
    }))
}

// ---------------------------------------------------------------------------------------------------------
// Entropy, relative entropy, cross-entropy
// ---------------------------------------------------------------------------------------------------------

/// `scipy.stats.entropy(pk, qk=None, base=None, axis=0)`.
///
/// Along `axis`, `p̂ = pk / Σpk` (and `q̂ = qk / Σqk`); then the Shannon entropy
/// `S = Σ entr(p̂) = −Σ p̂·ln p̂`, or with `qk` the relative entropy (KL divergence)
/// `D(p̂‖q̂) = Σ rel_entr(p̂, q̂) = Σ p̂·ln(p̂/q̂)`; divided by `ln(base)` when a base is given. The
/// output has the broadcast shape with `axis` removed (0-dimensional for 1-D input).
///
/// As SciPy: `pk` and `qk` broadcast by NumPy rules (including along `axis`) **before** normalizing; a
/// 0-dimensional input is one distribution of one element (`entropy(5) = 0`); a zero-length axis gives 0;
/// a row summing to 0 gives NaN; negative entries give `−inf` (entropy) or `+inf` (relative);
/// `q̂ = 0 < p̂` gives `+inf`; NaN or inf entries give NaN.
///
/// Errors: [`Error::InvalidOption`] for `axis` out of range or an invalid `base` (NaN, `≤ 0`, or 1 —
/// SciPy divides by `ln 1 = 0` and returns inf/NaN; we reject it); [`Error::ShapeMismatch`] naming both
/// shapes when `pk` and `qk` do not broadcast.
///
/// Gradient: [`entropy_backward`].
///
/// ```
/// use infoloss::{EntropyOptions, entropy, ndarray::array};
/// let bits = EntropyOptions { base: Some(2.0), ..Default::default() };
/// assert_eq!(entropy(array![0.5f64, 0.5].view(), None, &bits).unwrap()[[]], 1.0);
/// // Unnormalized input is normalized first (scipy: entropy([1, 2, 3]) = 1.0114042647073518).
/// let h = entropy(array![1.0f64, 2.0, 3.0].view(), None, &Default::default()).unwrap();
/// assert!((h[[]] - 1.0114042647073518).abs() < 1e-15);
/// // Relative entropy of a fair coin to a biased one, in bits (scipy: 0.7369655941662062).
/// let d = entropy(array![0.5f64, 0.5].view(), Some(array![0.9, 0.1].view()), &bits).unwrap();
/// assert!((d[[]] - 0.7369655941662062).abs() < 1e-15);
/// ```
pub fn entropy<T: Element, D: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: Option<ArrayView<'_, T, D>>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    let kind = if qk.is_some() { Kind::Relative } else { Kind::Entropy };
    entropy_family("entropy", kind, pk.into_dyn(), qk.map(|q| q.into_dyn()), opts)
}

/// Gradients of [`entropy`] wrt pk and (if given) qk, through the normalization.
///
/// With respect to the normalized `p̂` the partials are `entr'(p̂) = −(1 + ln p̂)` (PyTorch's `entr`
/// gradient: `+inf` at 0) or, with `qk`, [`rel_entr_backward`]'s `ln(p̂/q̂) + 1` and `−p̂/q̂`; they are
/// scaled by `g / ln(base)` and carried through `p̂ = pk/Σpk` as described in the module docs, which
/// gives, for a row with a finite value,
///
/// - entropy: `dpk_j = g·(−ln p̂_j − S) / (Σpk·ln base)` (`+inf` where `p̂_j = 0`),
/// - relative: `dpk_j = g·(ln(p̂_j/q̂_j) − D) / (Σpk·ln base)` (`−inf` where `p̂_j = 0 < q̂_j`, NaN
///   where both are 0) and `dqk_j = g·(1 − p̂_j/q̂_j) / (Σqk·ln base)`.
///
/// Rows whose value is not finite get NaN. Gradients are summed over broadcast dimensions back to the
/// shapes of `pk` and `qk`. `grad_output` has the output's shape or is 0-dimensional. The second
/// result is `Some` exactly when `qk` is given.
///
/// ```
/// use infoloss::{EntropyOptions, entropy_backward, ndarray::{arr0, array}};
/// // dS/dpk for pk = [1, 3]: p̂ = [0.25, 0.75], S = 0.5623351446188083.
/// let (dp, dq) = entropy_backward(array![1.0f64, 3.0].view(), None, &EntropyOptions::default(), arr0(1.0).view())
///     .unwrap();
/// let s = 0.5623351446188083;
/// assert!((dp[0] - (-(0.25f64.ln()) - s) / 4.0).abs() < 1e-15);
/// assert!((dp[1] - (-(0.75f64.ln()) - s) / 4.0).abs() < 1e-15);
/// assert!(dq.is_none());
/// ```
pub fn entropy_backward<T: Element, D: Dimension, D2: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: Option<ArrayView<'_, T, D>>,
    opts: &EntropyOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, Option<ArrayD<T>>)> {
    let kind = if qk.is_some() { Kind::Relative } else { Kind::Entropy };
    entropy_family_backward(
        "entropy_backward",
        kind,
        pk.into_dyn(),
        qk.map(|q| q.into_dyn()),
        opts,
        grad_output.into_dyn(),
    )
}

/// Cross-entropy of two distributions, `H(p, q) = −Σ p̂·log q̂` after normalizing like [`entropy`].
///
/// Normalization, broadcasting, `axis`, `base`, output shape and errors are those of [`entropy`]
/// with `qk`. Each term is `−p̂·ln q̂` where `p̂ > 0, q̂ > 0`, and otherwise
/// `entr(p̂) + rel_entr(p̂, q̂)` (0 where `p̂ = 0, q̂ ≥ 0`; `+inf` where `q̂ = 0 < p̂`; NaN for `p̂ < 0`),
/// so that `H(p, q) = entropy(p) + entropy(p, q)` holds term by term. SciPy computes it as
/// `entropy(pk, base=b) + entropy(pk, qk, base=b)` (see the `scipy.stats.entropy` docs); PyTorch's
/// `F.cross_entropy` with probability targets computes the same sum from logits.
///
/// Gradient: [`shannon_cross_entropy_backward`].
///
/// ```
/// use infoloss::{EntropyOptions, shannon_cross_entropy, ndarray::array};
/// let h = shannon_cross_entropy(array![0.0f64, 0.0, 1.0].view(), array![0.3, 0.3, 0.4].view(), &EntropyOptions::default())
///     .unwrap();
/// assert!((h[[]] - 0.9162907318741551).abs() < 1e-15); // −ln 0.4
/// ```
pub fn shannon_cross_entropy<T: Element, D: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: ArrayView<'_, T, D>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    entropy_family("shannon_cross_entropy", Kind::Cross, pk.into_dyn(), Some(qk.into_dyn()), opts)
}

/// Gradients of [`shannon_cross_entropy`] wrt pk and qk, through the normalization.
///
/// With respect to the normalized distributions the partials are `−ln q̂` and `−p̂/q̂` (0 where
/// `p̂ = 0`), scaled by `g / ln(base)`; through the normalization (module docs) this is, for a row with
/// a finite value `H`, `dpk_j = g·(−ln q̂_j − H) / (Σpk·ln base)` and
/// `dqk_j = g·(1 − p̂_j/q̂_j) / (Σqk·ln base)`. Rows whose value is not finite get NaN. Gradients are
/// summed over broadcast dimensions back to each input's shape.
///
/// ```
/// use infoloss::{EntropyOptions, info::shannon_cross_entropy_backward, ndarray::{arr0, array}};
/// let (dp, dq) = shannon_cross_entropy_backward(
///     array![1.0f64, 1.0].view(),
///     array![1.0f64, 3.0].view(),
///     &EntropyOptions::default(),
///     arr0(1.0).view(),
/// )
/// .unwrap();
/// // H = −(ln 0.25 + ln 0.75)/2; dq = (1 − p̂/q̂)/Σq = [(1 − 2)/4, (1 − 2/3)/4].
/// assert!((dq[0] + 0.25).abs() < 1e-15 && (dq[1] - 1.0 / 12.0).abs() < 1e-15);
/// let h = -(0.25f64.ln() + 0.75f64.ln()) / 2.0;
/// assert!((dp[0] - (-(0.25f64.ln()) - h) / 2.0).abs() < 1e-15);
/// ```
pub fn shannon_cross_entropy_backward<T: Element, D: Dimension, D2: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: ArrayView<'_, T, D>,
    opts: &EntropyOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    const OP: &str = "shannon_cross_entropy_backward";
    let (dp, dq) = entropy_family_backward(
        OP,
        Kind::Cross,
        pk.into_dyn(),
        Some(qk.into_dyn()),
        opts,
        grad_output.into_dyn(),
    )?;
    let dq = dq.ok_or_else(|| Error::invalid_option(OP, "qk", "None", "internal: missing qk gradient"))?;
    Ok((dp, dq))
}

// ---------------------------------------------------------------------------------------------------------
// Jensen–Shannon
// ---------------------------------------------------------------------------------------------------------

/// `scipy.spatial.distance.jensenshannon(p, q, base=None, axis=0, keepdims=False)`: the JS **distance**.
///
/// As SciPy: `p̂ = p/Σp` and `q̂ = q/Σq` along `axis`, **each in its own shape** (before broadcasting),
/// `m = (p̂ + q̂)/2`, `L = Σ rel_entr(p̂, m)`, `R = Σ rel_entr(q̂, m)` along `axis` of the broadcast
/// shape, and `JS = sqrt((L + R) / ln(base) / 2)`. Its square is the Jensen–Shannon divergence, in
/// `[0, ln 2]` nats (`[0, 1]` with base 2). The output has the broadcast shape with `axis` removed,
/// or kept with size 1 when `keepdims` (a 0-dimensional result stays 0-dimensional, as NumPy).
///
/// SciPy's quirks kept: a row summing to 0 gives NaN; negative entries give `+inf`; because `L + R` is
/// rounded, two almost equal distributions can give a tiny negative divergence and then
/// `sqrt` gives **NaN** (SciPy does the same: about 7% of pairs differing by one ulp); a zero-length
/// axis gives 0. The axis is resolved against each input's own rank and against the broadcast rank
/// (SciPy normalizes before broadcasting).
///
/// Errors: [`Error::InvalidOption`] for `axis` out of range for `p`, `q` or their broadcast, or `base`
/// NaN or `≤ 1` (see the module docs); [`Error::ShapeMismatch`] when `p` and `q` do not broadcast.
///
/// Gradient: [`jensenshannon_backward`].
///
/// ```
/// use infoloss::{JensenShannonOptions, jensenshannon, ndarray::array};
/// let bits = JensenShannonOptions { base: Some(2.0), ..Default::default() };
/// let js = jensenshannon(array![1.0f64, 0.0, 0.0].view(), array![0.0, 1.0, 0.0].view(), &bits).unwrap();
/// assert_eq!(js[[]], 1.0);
/// // scipy: jensenshannon([1.0, 0.0], [0.5, 0.5]) = 0.464501404022459
/// let js = jensenshannon(array![1.0f64, 0.0].view(), array![0.5, 0.5].view(), &Default::default()).unwrap();
/// assert!((js[[]] - 0.464501404022459).abs() < 1e-15);
/// ```
pub fn jensenshannon<T: Element, D: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D>,
    opts: &JensenShannonOptions,
) -> Result<ArrayD<T>> {
    jensenshannon_dyn(p.into_dyn(), q.into_dyn(), opts)
}

/// [`jensenshannon`] of dynamic-rank views.
#[inline(never)]
fn jensenshannon_dyn<T: Element>(
    p: ArrayViewD<'_, T>,
    q: ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
) -> Result<ArrayD<T>> {
    if let Some(out) = fast::js("jensenshannon", &p, &q, opts)? {
        return Ok(out);
    }
    let pr = js_prepare::<T>("jensenshannon", p, q, opts)?;
    let l = &pr.layout;
    if pr.pb.is_empty() {
        // Every row is empty (or there is none): one value for all, without visiting them.
        let (lsum, rsum) = js_row::<T::Acc>(&[], &[], &mut Vec::new());
        let v = T::from_acc(T::Acc::c(js_value(lsum, rsum, pr.ln_b)));
        return try_full("jensenshannon", "output", &pr.out_shape, v);
    }
    let mut out = try_vec("jensenshannon", "output", l.rows)?;
    let (mut bp, mut bq, mut bm) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..l.rows {
        l.gather(&pr.pb, r, &mut bp);
        l.gather(&pr.qb, r, &mut bq);
        let (lsum, rsum) = js_row(&bp, &bq, &mut bm);
        out.push(T::from_acc(T::Acc::c(js_value(lsum, rsum, pr.ln_b))));
    }
    to_array("jensenshannon", &pr.out_shape, out)
}

/// Gradients of [`jensenshannon`] wrt p and q.
///
/// With `m = (p̂+q̂)/2`, `∂(L+R)/∂p̂_j = ln(p̂_j/m_j)` (the `m`-terms cancel), `−inf` where
/// `p̂_j = 0 < q̂_j` (the one-sided derivative) and `ln 2` where `p̂_j = q̂_j = 0` (along that coordinate
/// `L + R = p̂_j·ln 2`). The chain through the square root multiplies by `g / (4·JS·ln(base))`; the
/// result is summed over broadcast dimensions back to each input's shape and carried through the
/// normalization as described in the module docs; without broadcasting this is
/// `dp_j = g·(ln(p̂_j/m_j) − L) / (4·JS·ln(base)·Σp)`.
///
/// At `JS = 0` (`p̂ = q̂`) the distance is not differentiable (it behaves like a norm of `p̂ − q̂`); the
/// gradient there is **0**, the subgradient PyTorch's `torch.linalg.vector_norm` returns at 0
/// (autograd of the literal `sqrt` formula would give NaN). Rows whose value is not finite (including
/// SciPy's NaN from a rounded negative divergence) get NaN.
///
/// ```
/// use infoloss::{JensenShannonOptions, jensenshannon_backward, ndarray::{arr0, array}};
/// let o = JensenShannonOptions::default();
/// // Equal distributions: JS = 0, gradient 0.
/// let (dp, dq) = jensenshannon_backward(array![1.0f64, 3.0].view(), array![2.0, 6.0].view(), &o, arr0(1.0).view())
///     .unwrap();
/// assert_eq!((dp[0], dq[1]), (0.0, 0.0));
/// // p = [1, 0], q = [0, 1]: JS = sqrt(ln 2), dp = g·(ln 2 − ln 2)/(4·JS) = 0 for the first element,
/// // −inf for the second (moving mass there is infinitely steep).
/// let (dp, _) = jensenshannon_backward(array![1.0f64, 0.0].view(), array![0.0, 1.0].view(), &o, arr0(1.0).view())
///     .unwrap();
/// assert_eq!(dp[0], 0.0);
/// assert_eq!(dp[1], f64::NEG_INFINITY);
/// ```
pub fn jensenshannon_backward<T: Element, D: Dimension, D2: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D>,
    opts: &JensenShannonOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    jensenshannon_backward_dyn(p.into_dyn(), q.into_dyn(), opts, grad_output.into_dyn())
}

/// [`jensenshannon_backward`] of dynamic-rank views.
#[inline(never)]
fn jensenshannon_backward_dyn<T: Element>(
    p: ArrayViewD<'_, T>,
    q: ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
    grad_output: ArrayViewD<'_, T>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    const OP: &str = "jensenshannon_backward";
    if let Some(out) = fast::js_backward(OP, &p, &q, opts, &grad_output)? {
        return Ok(out);
    }
    let pr = js_prepare::<T>(OP, p, q, opts)?;
    if pr.pb.is_empty() {
        // No element receives a gradient: zeros of each input's shape, without visiting the rows.
        grad_into(OP, &grad_output, &pr.out_shape)?;
        let dp = pr.p.backward::<T>(OP, &pr.shape, Vec::new())?;
        let dq = pr.q.backward::<T>(OP, &pr.shape, Vec::new())?;
        return Ok((dp, dq));
    }
    let g = row_grads::<T>(OP, &grad_output, &pr.out_shape, pr.layout.rows)?;
    let l = &pr.layout;
    let n = pr.pb.len();
    let mut gp = zeros_f64(OP, n)?;
    let mut gq = zeros_f64(OP, n)?;
    let (mut bp, mut bq, mut bm, mut rp, mut rq) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, &g) in g.iter().enumerate() {
        l.gather(&pr.pb, r, &mut bp);
        l.gather(&pr.qb, r, &mut bq);
        let (lsum, rsum) = js_row(&bp, &bq, &mut bm);
        let js = js_value(lsum, rsum, pr.ln_b);
        js_row_backward(&bp, &bq, &bm, js, pr.ln_b, g, &mut rp, &mut rq);
        l.scatter(&rp, r, &mut gp);
        l.scatter(&rq, r, &mut gq);
    }
    let dp = pr.p.backward::<T>(OP, &pr.shape, gp)?;
    let dq = pr.q.backward::<T>(OP, &pr.shape, gq)?;
    Ok((dp, dq))
}

// ---------------------------------------------------------------------------------------------------------
// Element kernels (the reference the SIMD kernels will be tested against)
// ---------------------------------------------------------------------------------------------------------

/// `entr` with SciPy's cases.
#[inline]
fn entr_elem<A: Real>(x: A) -> A {
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
fn entr_grad_elem<A: Real>(x: A) -> A {
    -(A::one() + x.ln())
}

/// `rel_entr` with SciPy's cases.
#[inline]
fn rel_entr_elem<A: Real>(p: A, q: A) -> A {
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
fn rel_entr_grad_elem<A: Real>(p: A, q: A, g: A) -> (A, A) {
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
fn cross_elem<A: Real>(p: A, q: A) -> A {
    if p > A::zero() && q > A::zero() { -p * q.ln() } else { entr_elem(p) + rel_entr_elem(p, q) }
}

/// `(∂/∂p, ∂/∂q)` of [`cross_elem`], times `g`.
#[inline]
fn cross_grad_elem<A: Real>(p: A, q: A, g: A) -> (A, A) {
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
fn js_grad_elem<A: Real>(x: A, y: A, m: A) -> A {
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

// ---------------------------------------------------------------------------------------------------------
// Row kernels
// ---------------------------------------------------------------------------------------------------------

/// Normalizes a row in place (`x / Σx`, the sum in f64) and returns `Σx`.
fn normalize_row<A: Real>(x: &mut [A]) -> A {
    let s = A::c(x.iter().map(|v| v.f64()).sum::<f64>());
    for v in x.iter_mut() {
        *v /= s;
    }
    s
}

/// Adjoint of `x̂ = x / s` along a row: `G_j ← (G_j − Σ_{x̂_i ≠ 0} x̂_i·G_i) / s`.
fn normalize_backward_row<A: Real>(xhat: &[A], s: A, g: &mut [A]) {
    let dot: f64 =
        xhat.iter().zip(g.iter()).filter(|(x, _)| **x != A::zero()).map(|(x, g)| x.f64() * g.f64()).sum();
    let dot = A::c(dot);
    for gj in g.iter_mut() {
        *gj = (*gj - dot) / s;
    }
}

/// What an entropy-family function sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `Σ entr(p̂)`.
    Entropy,
    /// `Σ rel_entr(p̂, q̂)`.
    Relative,
    /// `−Σ p̂·ln q̂` (with [`cross_elem`]'s cases).
    Cross,
}

/// The natural-log value of one normalized row.
fn family_row<A: Real>(kind: Kind, p: &[A], q: &[A]) -> f64 {
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
fn family_row_backward<A: Real>(
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
fn js_row<A: Real>(p: &[A], q: &[A], m: &mut Vec<A>) -> (f64, f64) {
    m.clear();
    m.extend(p.iter().zip(q).map(|(&x, &y)| (x + y) / A::c(2.0)));
    let l = p.iter().zip(m.iter()).map(|(&x, &mm)| rel_entr_elem(x, mm).f64()).sum();
    let r = q.iter().zip(m.iter()).map(|(&y, &mm)| rel_entr_elem(y, mm).f64()).sum();
    (l, r)
}

/// SciPy's `sqrt((L + R) / ln(base) / 2)`.
fn js_value(l: f64, r: f64, ln_b: f64) -> f64 {
    ((l + r) / ln_b / 2.0).sqrt()
}

/// Gradient of JS with respect to the normalized (broadcast) rows `p`, `q` (not yet through the
/// normalization).
#[allow(clippy::too_many_arguments)]
fn js_row_backward<A: Real>(
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

// ---------------------------------------------------------------------------------------------------------
// Layout, broadcasting, drivers
// ---------------------------------------------------------------------------------------------------------

/// A row-major array seen as `outer × n × inner`, rows running along the middle axis.
#[derive(Debug, Clone, Copy)]
struct Layout {
    n: usize,
    inner: usize,
    rows: usize,
}

impl Layout {
    /// The layout of `shape` along `axis` (a 0-dimensional shape is one row of one element).
    fn new(op: &'static str, shape: &[usize], axis: usize) -> Result<Self> {
        if shape.is_empty() {
            return Ok(Layout { n: 1, inner: 1, rows: 1 });
        }
        let (before, rest) = shape.split_at(axis.min(shape.len()));
        let (&n, after) =
            rest.split_first().ok_or_else(|| Error::invalid_option(op, "axis", axis, "axis out of range"))?;
        let outer = checked_numel(op, "input", before)?;
        let inner = checked_numel(op, "input", after)?;
        let rows = outer
            .checked_mul(inner)
            .ok_or_else(|| Error::too_large(op, "output", format!("shape {shape:?}")))?;
        checked_numel(op, "input", shape)?;
        Ok(Layout { n, inner, rows })
    }

    fn start(&self, r: usize) -> usize {
        (r / self.inner) * self.n * self.inner + r % self.inner
    }

    /// Copies row `r` of `data` into `out`.
    fn gather<A: Copy>(&self, data: &[A], r: usize, out: &mut Vec<A>) {
        out.clear();
        out.extend(data.iter().skip(self.start(r)).step_by(self.inner).take(self.n).copied());
    }

    /// Writes `src` (f64-widened) into row `r` of `data`.
    fn scatter<A: Real>(&self, src: &[A], r: usize, data: &mut [f64]) {
        for (d, s) in data.iter_mut().skip(self.start(r)).step_by(self.inner).take(self.n).zip(src) {
            *d = s.f64();
        }
    }
}

/// Resolves a SciPy `axis` (negative from the end) for an array called `name` of shape `shape`;
/// a 0-dimensional array accepts 0 and −1, as NumPy does.
fn resolve_axis(op: &'static str, name: &str, axis: isize, shape: &[usize]) -> Result<usize> {
    let nd = shape.len().max(1) as isize;
    let a = if axis < 0 { axis.checked_add(nd) } else { Some(axis) };
    match a {
        Some(a) if (0..nd).contains(&a) => Ok(a as usize),
        _ => Err(Error::invalid_option(
            op,
            "axis",
            axis,
            format!("out of bounds for {name} of shape {shape:?} ({} dimensions)", shape.len()),
        )),
    }
}

/// `ln(base)` of a validated base, 1 for `None`.
fn log_base(op: &'static str, base: Option<f64>, below_one_ok: bool) -> Result<f64> {
    let Some(b) = base else { return Ok(1.0) };
    if b.is_nan() || b <= 0.0 || b == 1.0 {
        return Err(Error::invalid_option(
            op,
            "base",
            b,
            "must be a positive number other than 1 (the result is divided by ln(base))",
        ));
    }
    if !below_one_ok && b < 1.0 {
        return Err(Error::invalid_option(
            op,
            "base",
            b,
            "must be greater than 1 (with ln(base) < 0 the divergence is negative and has no square root; SciPy returns NaN)",
        ));
    }
    Ok(b.ln())
}

/// NumPy broadcast shape of `a` and `b`, or an error naming both.
fn broadcast_shape(
    op: &'static str,
    a_name: &'static str,
    a: &[usize],
    b_name: &'static str,
    b: &[usize],
) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let (oa, ob) = (n - a.len(), n - b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i >= oa { a.get(i - oa).copied().unwrap_or(1) } else { 1 };
        let db = if i >= ob { b.get(i - ob).copied().unwrap_or(1) } else { 1 };
        let d = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape_mismatch(
                op,
                a_name,
                a,
                b_name,
                b,
                "cannot be broadcast together (NumPy broadcasting rules)",
            ));
        };
        out.push(d);
    }
    checked_numel(op, "broadcast shape", &out)?;
    Ok(out)
}

/// `v` broadcast to `shape` (known to be its broadcast with something).
fn broadcast_view<'b, T>(
    op: &'static str,
    name: &'static str,
    v: &'b ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayViewD<'b, T>> {
    v.broadcast(IxDyn(shape))
        .ok_or_else(|| Error::shape_mismatch(op, name, v.shape(), "broadcast", shape, "cannot be broadcast"))
}

/// Row-major values of `v` broadcast to `shape`, in the compute type.
fn widen<T: Element>(
    op: &'static str,
    name: &'static str,
    v: &ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<Vec<T::Acc>> {
    let b = broadcast_view(op, name, v, shape)?;
    let mut out = try_vec(op, name, b.len())?;
    out.extend(b.iter().map(|x| x.to_acc()));
    Ok(out)
}

/// `n` zeros (a gradient accumulator), allocated fallibly.
fn zeros_f64(op: &'static str, n: usize) -> Result<Vec<f64>> {
    let mut v = try_vec(op, "gradient", n)?;
    v.resize(n, 0.0);
    Ok(v)
}

/// An upstream gradient for an elementwise function: exactly `shape`, or 0-dimensional.
fn grad_into<'b, T>(
    op: &'static str,
    g: &'b ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayViewD<'b, T>> {
    if g.shape() == shape || g.ndim() == 0 {
        if let Some(v) = g.broadcast(IxDyn(shape)) {
            return Ok(v);
        }
    }
    Err(Error::shape_mismatch(
        op,
        "grad_output",
        g.shape(),
        "output",
        shape,
        "must be equal (or grad_output 0-dimensional)",
    ))
}

/// One upstream gradient per output row: `g` has the output shape, or is 0-dimensional.
fn row_grads<T: Element>(
    op: &'static str,
    g: &ArrayViewD<'_, T>,
    out_shape: &[usize],
    rows: usize,
) -> Result<Vec<T::Acc>> {
    let v = grad_into(op, g, out_shape)?;
    let mut out = try_vec(op, "grad_output", v.len())?;
    out.extend(v.iter().map(|x| x.to_acc()));
    if out.len() != rows {
        return Err(Error::shape_mismatch(
            op,
            "grad_output",
            g.shape(),
            "output",
            out_shape,
            "must be equal",
        ));
    }
    Ok(out)
}

/// Builds an owned array of `shape` from row-major values.
fn to_array<T>(op: &'static str, shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::too_large(op, "output", e.to_string()))
}

/// Sums a row-major f64 gradient of the broadcast shape `from` back to `to` (the adjoint of
/// broadcasting), still in f64.
fn sum_to_shape_f64(op: &'static str, from: &[usize], g: Vec<f64>, to: &[usize]) -> Result<Vec<f64>> {
    if from == to {
        return Ok(g);
    }
    if g.is_empty() {
        // Sums over nothing: zeros, without visiting the (possibly huge) broadcast dimensions.
        return zeros_f64(op, checked_numel(op, "gradient", to)?);
    }
    let mut a = to_array(op, from, g)?;
    while a.ndim() > to.len() {
        a = a.sum_axis(Axis(0));
    }
    for (i, &d) in to.iter().enumerate() {
        if d == 1 && a.shape().get(i).copied() != Some(1) {
            a = a.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    if a.shape() != to {
        return Err(Error::shape_mismatch(op, "gradient", a.shape(), "input", to, "internal: cannot reduce"));
    }
    Ok(a.iter().copied().collect())
}

/// [`sum_to_shape_f64`], rounded once to `T`.
fn sum_to_shape<T: Element>(
    op: &'static str,
    from: &[usize],
    g: Vec<f64>,
    to: &[usize],
) -> Result<ArrayD<T>> {
    let v = sum_to_shape_f64(op, from, g, to)?;
    to_array(op, to, v.into_iter().map(|x| T::from_acc(T::Acc::c(x))).collect())
}

/// Validated inputs of the entropy family, broadcast to a common shape.
struct Family<A> {
    ln_b: f64,
    shape: Vec<usize>,
    layout: Layout,
    out_shape: Vec<usize>,
    p: Vec<A>,
    q: Option<Vec<A>>,
}

fn family_prepare<T: Element>(
    op: &'static str,
    pk: &ArrayViewD<'_, T>,
    qk: Option<&ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
) -> Result<Family<T::Acc>> {
    let ln_b = log_base(op, opts.base, true)?;
    let shape = match qk {
        Some(q) => broadcast_shape(op, "pk", pk.shape(), "qk", q.shape())?,
        None => {
            checked_numel(op, "pk", pk.shape())?;
            pk.shape().to_vec()
        }
    };
    let name = if qk.is_some() { "the broadcast of pk and qk" } else { "pk" };
    let axis = resolve_axis(op, name, opts.axis, &shape)?;
    let layout = Layout::new(op, &shape, axis)?;
    let mut out_shape = shape.clone();
    if !out_shape.is_empty() {
        out_shape.remove(axis);
    }
    let p = widen(op, "pk", pk, &shape)?;
    let q = match qk {
        Some(q) => Some(widen(op, "qk", q, &shape)?),
        None => None,
    };
    Ok(Family { ln_b, shape, layout, out_shape, p, q })
}

#[inline(never)]
fn entropy_family<T: Element>(
    op: &'static str,
    kind: Kind,
    pk: ArrayViewD<'_, T>,
    qk: Option<ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    if let Some(out) = fast::family(op, kind, &pk, qk.as_ref(), opts)? {
        return Ok(out);
    }
    let f = family_prepare(op, &pk, qk.as_ref(), opts)?;
    let l = f.layout;
    if f.p.is_empty() {
        // Every row is empty (or there is none): one value for all, without visiting them.
        let v = T::from_acc(T::Acc::c(family_row::<T::Acc>(kind, &[], &[]) / f.ln_b));
        return try_full(op, "output", &f.out_shape, v);
    }
    let mut out = try_vec(op, "output", l.rows)?;
    let (mut bp, mut bq) = (Vec::new(), Vec::new());
    for r in 0..l.rows {
        l.gather(&f.p, r, &mut bp);
        normalize_row(&mut bp);
        if let Some(q) = &f.q {
            l.gather(q, r, &mut bq);
            normalize_row(&mut bq);
        }
        let v = family_row(kind, &bp, &bq);
        out.push(T::from_acc(T::Acc::c(v / f.ln_b)));
    }
    to_array(op, &f.out_shape, out)
}

#[inline(never)]
fn entropy_family_backward<T: Element>(
    op: &'static str,
    kind: Kind,
    pk: ArrayViewD<'_, T>,
    qk: Option<ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
    grad_output: ArrayViewD<'_, T>,
) -> Result<(ArrayD<T>, Option<ArrayD<T>>)> {
    if let Some(out) = fast::family_backward(op, kind, &pk, qk.as_ref(), opts, &grad_output)? {
        return Ok(out);
    }
    if let Some(out) = fast::family_backward(op, kind, &pk, qk.as_ref(), opts, &grad_output)? {
        return Ok(out);
    }
    let f = family_prepare(op, &pk, qk.as_ref(), opts)?;
    let l = f.layout;
    if f.p.is_empty() {
        // No element receives a gradient: zeros of each input's shape, without visiting the rows.
        grad_into(op, &grad_output, &f.out_shape)?;
        let zero = T::from_acc(T::Acc::c(0.0));
        let dq = match &qk {
            Some(q) => Some(try_full(op, "gradient", q.shape(), zero)?),
            None => None,
        };
        return Ok((try_full(op, "gradient", pk.shape(), zero)?, dq));
    }
    let g = row_grads::<T>(op, &grad_output, &f.out_shape, l.rows)?;
    let n = f.p.len();
    let mut dp = zeros_f64(op, n)?;
    let mut dq = if f.q.is_some() { zeros_f64(op, n)? } else { Vec::new() };
    let (mut bp, mut bq, mut rp, mut rq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, &g) in g.iter().enumerate() {
        l.gather(&f.p, r, &mut bp);
        let sp = normalize_row(&mut bp);
        let sq = match &f.q {
            Some(q) => {
                l.gather(q, r, &mut bq);
                normalize_row(&mut bq)
            }
            None => T::Acc::one(),
        };
        let v = family_row(kind, &bp, &bq);
        let gs = T::Acc::c(g.f64() / f.ln_b);
        family_row_backward(kind, &bp, &bq, sp, sq, v, gs, &mut rp, &mut rq);
        l.scatter(&rp, r, &mut dp);
        if f.q.is_some() {
            l.scatter(&rq, r, &mut dq);
        }
    }
    let dp = sum_to_shape::<T>(op, &f.shape, dp, pk.shape())?;
    let dq = match &qk {
        Some(q) => Some(sum_to_shape::<T>(op, &f.shape, dq, q.shape())?),
        None => None,
    };
    Ok((dp, dq))
}

/// One input of [`jensenshannon`], normalized along the axis in its own shape.
struct JsSide<A> {
    shape: Vec<usize>,
    layout: Layout,
    /// The normalized values, row-major in `shape`.
    hat: Vec<A>,
    /// The normalizer of each row.
    sums: Vec<A>,
}

impl<A: Real> JsSide<A> {
    fn new<T: Element<Acc = A>>(
        op: &'static str,
        name: &'static str,
        v: &ArrayViewD<'_, T>,
        axis: isize,
    ) -> Result<Self> {
        let shape = v.shape().to_vec();
        let ax = resolve_axis(op, name, axis, &shape)?;
        let layout = Layout::new(op, &shape, ax)?;
        let mut data = try_vec(op, name, v.len())?;
        data.extend(v.iter().map(|x| x.to_acc()));
        let mut hat = try_vec(op, name, data.len())?;
        hat.resize(data.len(), A::zero());
        // An empty input has only empty rows (or none): nothing to normalize, no row to visit.
        let rows = if data.is_empty() { 0 } else { layout.rows };
        let mut sums = try_vec(op, name, rows)?;
        let mut buf = Vec::new();
        for r in 0..rows {
            layout.gather(&data, r, &mut buf);
            sums.push(normalize_row(&mut buf));
            // Write back in the compute type (scatter works on f64, so do it by hand).
            for (d, s) in hat.iter_mut().skip(layout.start(r)).step_by(layout.inner).take(layout.n).zip(&buf)
            {
                *d = *s;
            }
        }
        Ok(JsSide { shape, layout, hat, sums })
    }

    /// The normalized values broadcast to `shape`, row-major.
    fn broadcast(&self, op: &'static str, name: &'static str, shape: &[usize]) -> Result<Vec<A>> {
        let v = ArrayViewD::from_shape(IxDyn(&self.shape), &self.hat)
            .map_err(|e| Error::too_large(op, name, e.to_string()))?;
        let b = broadcast_view(op, name, &v, shape)?;
        let mut out = try_vec(op, name, b.len())?;
        out.extend(b.iter().copied());
        Ok(out)
    }

    /// Gradient wrt the raw input from `g`, the gradient wrt the normalized values in the broadcast shape.
    fn backward<T: Element<Acc = A>>(
        &self,
        op: &'static str,
        from: &[usize],
        g: Vec<f64>,
    ) -> Result<ArrayD<T>> {
        let g = sum_to_shape_f64(op, from, g, &self.shape)?;
        let g: Vec<A> = g.into_iter().map(A::c).collect();
        let mut out = zeros_f64(op, g.len())?;
        let (mut bh, mut bg) = (Vec::new(), Vec::new());
        for (r, &s) in self.sums.iter().enumerate() {
            self.layout.gather(&self.hat, r, &mut bh);
            self.layout.gather(&g, r, &mut bg);
            normalize_backward_row(&bh, s, &mut bg);
            self.layout.scatter(&bg, r, &mut out);
        }
        to_array(op, &self.shape, out.into_iter().map(|x| T::from_acc(A::c(x))).collect())
    }
}

/// Validated inputs of [`jensenshannon`].
struct JsPrepared<A> {
    ln_b: f64,
    p: JsSide<A>,
    q: JsSide<A>,
    /// Broadcast shape.
    shape: Vec<usize>,
    layout: Layout,
    out_shape: Vec<usize>,
    pb: Vec<A>,
    qb: Vec<A>,
}

fn js_prepare<T: Element>(
    op: &'static str,
    p: ArrayViewD<'_, T>,
    q: ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
) -> Result<JsPrepared<T::Acc>> {
    let ln_b = log_base(op, opts.base, false)?;
    let shape = broadcast_shape(op, "p", p.shape(), "q", q.shape())?;
    let ps = JsSide::new(op, "p", &p, opts.axis)?;
    let qs = JsSide::new(op, "q", &q, opts.axis)?;
    let axis = resolve_axis(op, "the broadcast of p and q", opts.axis, &shape)?;
    let layout = Layout::new(op, &shape, axis)?;
    let mut out_shape = shape.clone();
    if !out_shape.is_empty() {
        if opts.keepdims {
            if let Some(d) = out_shape.get_mut(axis) {
                *d = 1;
            }
        } else {
            out_shape.remove(axis);
        }
    }
    let pb = ps.broadcast(op, "p", &shape)?;
    let qb = qs.broadcast(op, "q", &shape)?;
    Ok(JsPrepared { ln_b, p: ps, q: qs, shape, layout, out_shape, pb, qb })
}

compiled_here! {
    entropy_family: fn(&'static str, Kind, ArrayViewD<'_, T>, Option<ArrayViewD<'_, T>>, &EntropyOptions) -> Result<ArrayD<T>>;
    entropy_family_backward: fn(
        &'static str,
        Kind,
        ArrayViewD<'_, T>,
        Option<ArrayViewD<'_, T>>,
        &EntropyOptions,
        ArrayViewD<'_, T>,
    ) -> Result<(ArrayD<T>, Option<ArrayD<T>>)>;
    jensenshannon_dyn: fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &JensenShannonOptions) -> Result<ArrayD<T>>;
    jensenshannon_backward_dyn: fn(
        ArrayViewD<'_, T>,
        ArrayViewD<'_, T>,
        &JensenShannonOptions,
        ArrayViewD<'_, T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, arr0, array};

    #[test]
    fn layout_rows_follow_row_major_order_of_the_other_axes() {
        let shape = [2, 3, 4];
        let data: Vec<usize> = (0..24).collect();
        let l = Layout::new("t", &shape, 1).unwrap();
        assert_eq!(l.rows, 8);
        let mut buf = Vec::new();
        l.gather(&data, 5, &mut buf); // outer 1, inner 1
        assert_eq!(buf, vec![13, 17, 21]);
        let l0 = Layout::new("t", &[], 0).unwrap();
        assert_eq!((l0.n, l0.inner, l0.rows), (1, 1, 1));
        let le = Layout::new("t", &[3, 0], 1).unwrap();
        assert_eq!((le.n, le.rows), (0, 3));
        le.gather(&[] as &[usize], 2, &mut buf);
        assert!(buf.is_empty());
        let lz = Layout::new("t", &[0, 3], 1).unwrap();
        assert_eq!(lz.rows, 0);
    }

    #[test]
    fn broadcast_shapes_follow_numpy() {
        assert_eq!(broadcast_shape("t", "a", &[2, 1, 3], "b", &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast_shape("t", "a", &[0], "b", &[1]).unwrap(), vec![0]);
        assert_eq!(broadcast_shape("t", "a", &[], "b", &[2]).unwrap(), vec![2]);
        let e = broadcast_shape("t", "pk", &[3], "qk", &[2]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: pk shape [3] and qk shape [2] cannot be broadcast together (NumPy broadcasting rules)"
        );
    }

    #[test]
    fn sum_to_shape_reduces_broadcast_dims() {
        let g: Vec<f64> = (0..6).map(f64::from).collect();
        assert_eq!(sum_to_shape_f64("t", &[2, 3], g.clone(), &[3]).unwrap(), vec![3.0, 5.0, 7.0]);
        assert_eq!(sum_to_shape_f64("t", &[2, 3], g.clone(), &[2, 1]).unwrap(), vec![3.0, 12.0]);
        assert_eq!(sum_to_shape_f64("t", &[2, 3], g, &[]).unwrap(), vec![15.0]);
        assert_eq!(sum_to_shape_f64("t", &[0, 3], vec![], &[1, 3]).unwrap(), vec![0.0; 3]);
    }

    #[test]
    fn element_cases_match_scipy() {
        // scipy.special.entr([0, -1, nan, inf, 1, 0.5]) = [0, -inf, nan, -inf, -0, 0.34657359]
        assert_eq!(entr_elem(0.0f64), 0.0);
        assert_eq!(entr_elem(-1.0f64), f64::NEG_INFINITY);
        assert!(entr_elem(f64::NAN).is_nan());
        assert_eq!(entr_elem(f64::INFINITY), f64::NEG_INFINITY);
        assert!(entr_elem(1.0f64) == 0.0 && entr_elem(1.0f64).is_sign_negative());
        // scipy.special.rel_entr cases
        let inf = f64::INFINITY;
        let cases = [
            (0.0, 0.0, 0.0),
            (0.0, 1.0, 0.0),
            (0.0, -1.0, inf),
            (1.0, 0.0, inf),
            (1.0, -1.0, inf),
            (1.0, inf, -inf),
            (-1.0, 1.0, inf),
            (inf, 1.0, inf),
            (0.0, inf, 0.0),
        ];
        for (p, q, want) in cases {
            assert_eq!(rel_entr_elem(p, q), want, "rel_entr({p}, {q})");
        }
        assert!(rel_entr_elem(inf, inf).is_nan());
        assert!(rel_entr_elem(f64::NAN, 1.0).is_nan());
        assert!(rel_entr_elem(0.0, f64::NAN).is_nan());
        assert!((rel_entr_elem(1.0f64, 2.0) + 2f64.ln()).abs() < 1e-16);
    }

    #[test]
    fn cross_term_is_entr_plus_rel_entr() {
        for &(p, q) in &[(0.3f64, 0.6), (0.0, 0.5), (0.0, 0.0), (0.2, 0.0), (-0.1, 0.5), (0.5, -0.1)] {
            let a = cross_elem(p, q);
            let b = entr_elem(p) + rel_entr_elem(p, q);
            assert!((a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-15 || a == b, "{p} {q}: {a} vs {b}");
        }
    }

    #[test]
    fn half_precision_inputs() {
        use half::{bf16, f16};
        let p = array![f16::from_f32(0.5), f16::from_f32(0.5)];
        let o = EntropyOptions { base: Some(2.0), axis: 0 };
        assert_eq!(entropy(p.view(), None, &o).unwrap()[[]], f16::from_f32(1.0));
        let p = array![bf16::from_f32(1.0), bf16::from_f32(0.0)];
        let q = array![bf16::from_f32(0.0), bf16::from_f32(1.0)];
        let js = jensenshannon(
            p.view(),
            q.view(),
            &JensenShannonOptions { base: Some(2.0), ..Default::default() },
        );
        assert_eq!(js.unwrap()[[]], bf16::from_f32(1.0));
        let e = entr(array![f16::from_f32(0.5)].view());
        assert_eq!(e[0], f16::from_f32(0.5 * std::f32::consts::LN_2));
    }

    #[test]
    fn f32_matches_scipy_float32() {
        // scipy.stats.entropy(np.array([1, 2, 3], dtype=np.float32)) = 1.0114043 (float32)
        let h = entropy(array![1.0f32, 2.0, 3.0].view(), None, &EntropyOptions::default()).unwrap();
        assert!((h[[]] - 1.011_404_3).abs() <= 1e-7);
        // jensenshannon(float32 [1,2,3], [1,2,4]) = 0.0506594
        let js = jensenshannon(
            array![1.0f32, 2.0, 3.0].view(),
            array![1.0f32, 2.0, 4.0].view(),
            &Default::default(),
        );
        assert!((js.unwrap()[[]] - 0.050_659_4).abs() <= 1e-6);
    }

    #[test]
    fn grad_output_shape_is_checked() {
        let x = Array2::<f64>::ones((2, 3));
        let e = entr_backward(x.view(), array![1.0, 2.0].view()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "entr_backward: grad_output shape [2] and output shape [2, 3] must be equal (or grad_output 0-dimensional)"
        );
        let e = entropy_backward(x.view(), None, &EntropyOptions::default(), array![1.0, 2.0].view())
            .unwrap_err();
        assert!(e.to_string().contains("grad_output shape [2] and output shape [3]"), "{e}");
        assert!(entropy_backward(x.view(), None, &EntropyOptions::default(), arr0(1.0).view()).is_ok());
    }
}
