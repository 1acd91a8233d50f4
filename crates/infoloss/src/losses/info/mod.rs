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

mod drivers;
mod fast;
mod measures;
mod reference_rows;
mod with_grad;

use drivers::*;
pub use measures::*;
use reference_rows::*;
pub use with_grad::*;
crate::base::path::deprecated_switches!("info");
use num_traits::{Float, One};

use crate::base::array::{try_full, try_vec};
use crate::base::shape::checked_numel;
use crate::{Element, Error, Real, Result};

pub use crate::options::EntropyOptions;

pub use crate::options::JensenShannonOptions;

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
