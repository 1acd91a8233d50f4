//! `logsumexp`, `log_softmax` and `softmax` along one dimension, with their backward.
//!
//! Every function takes a PyTorch-style `dim` (negative values count from the end). A
//! 0-dimensional input is one row of one element, as in PyTorch: `softmax` gives 1, `log_softmax`
//! gives 0 and `logsumexp` gives the element itself.
//!
//! Non-finite values follow PyTorch's CPU kernels exactly:
//!
//! | row | `log_softmax` / `softmax` | `logsumexp` |
//! |---|---|---|
//! | all `−inf` | NaN | `−inf` |
//! | contains `+inf` | NaN | `+inf` |
//! | contains NaN | NaN | NaN |
//! | some (not all) `−inf` | `−inf` / 0 at those positions | finite |
//!
//! The crate-visible row functions (`row_log_softmax`, `row_logsumexp`, …) are the reference
//! implementations the losses (`nll_loss`, `cross_entropy`) are built from.

use crate::base::array::try_full;
use crate::rows::softmax_rows::*;

mod fast;
crate::base::path::deprecated_switches!("softmax");

use ndarray::{ArrayD, ArrayView, ArrayViewD, Axis, Dimension, IxDyn, Zip};
use num_traits::Zero;

use crate::base::shape::normalize_axis;
use crate::{Element, Error, Result};

/// Resolves `dim` and returns the input seen with at least one dimension (a 0-d input becomes `[1]`).
fn lift<'a, T>(op: &'static str, x: ArrayViewD<'a, T>, dim: isize) -> Result<(ArrayViewD<'a, T>, usize)> {
    let axis = normalize_axis(op, dim, x.ndim())?;
    if x.ndim() == 0 { Ok((x.insert_axis(Axis(0)), 0)) } else { Ok((x, axis)) }
}

/// Applies `f` to the lanes along `axis` of `K` arrays of one shape (an input; or an output and its
/// upstream gradient), in the compute type, into a new array of that shape.
fn map_lanes<T: Element, const K: usize>(
    args: [&ArrayViewD<'_, T>; K],
    axis: usize,
    mut f: impl FnMut([&[T::Acc]; K], &mut [T::Acc]),
) -> ArrayD<T> {
    let shape = args.first().map_or(IxDyn(&[0]), |a| a.raw_dim());
    if shape.size() == 0 {
        // No element to compute, however many (empty) lanes there are: do not visit them.
        return ArrayD::default(shape);
    }
    let n = shape[axis];
    let mut bufs: [Vec<T::Acc>; K] = std::array::from_fn(|_| vec![T::Acc::zero(); n]);
    let mut ys = vec![T::Acc::zero(); n];
    let mut out = ArrayD::<T>::default(shape);
    let mut lanes = args.map(|a| a.lanes(Axis(axis)).into_iter());
    for mut o in out.lanes_mut(Axis(axis)) {
        for (buf, lane) in bufs.iter_mut().zip(lanes.iter_mut()) {
            for (s, v) in buf.iter_mut().zip(lane.next().into_iter().flatten()) {
                *s = v.to_acc();
            }
        }
        f(std::array::from_fn(|k| bufs[k].as_slice()), &mut ys);
        for (o, &y) in o.iter_mut().zip(&ys) {
            *o = T::from_acc(y);
        }
    }
    out
}

/// Reshapes a result computed on the lifted (`[1]`) view of a 0-d input back to 0 dimensions.
fn unlift<T>(out: ArrayD<T>, was_scalar: bool) -> ArrayD<T> {
    if was_scalar { out.index_axis_move(Axis(0), 0) } else { out }
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Log-sum-exp along `dim`, with the dimension removed (`keepdim = false`).
///
/// # Formula
///
/// `lse(x) = ln Σ_dim exp(x − m) + m`, where `m = max_dim x`, replaced by 0 when it is infinite
/// (PyTorch's guard). So a row of all `−inf` gives `−inf`, a row containing `+inf` gives `+inf`,
/// and an empty row gives `−inf`. NaN propagates.
///
/// # Gradient
///
/// `∂lse/∂x = softmax(x)`; see [`logsumexp_backward`].
///
/// # PyTorch
///
/// `torch.logsumexp(input, dim, keepdim=False)`. A 0-d input gives the element itself.
///
/// # Errors
///
/// [`Error::InvalidOption`] naming `dim` when it is out of range.
///
/// # Example
///
/// ```
/// use infoloss::{logsumexp, ndarray::array};
/// // torch.logsumexp(torch.tensor([[1., 2., 3.], [0., 0., 0.]], dtype=torch.float64), 1)
/// let x = array![[1.0f64, 2.0, 3.0], [0.0, 0.0, 0.0]];
/// let lse = logsumexp(x.view(), -1).unwrap();
/// assert!((lse[[0]] - 3.4076059644443806).abs() < 1e-15);
/// assert!((lse[[1]] - 3f64.ln()).abs() < 1e-15);
/// ```
pub fn logsumexp<T: Element, D: Dimension>(input: ArrayView<'_, T, D>, dim: isize) -> Result<ArrayD<T>> {
    logsumexp_dyn(input.into_dyn(), dim)
}

/// [`logsumexp`] of a dynamic-rank view.
#[inline(never)]
fn logsumexp_dyn<T: Element>(input: ArrayViewD<'_, T>, dim: isize) -> Result<ArrayD<T>> {
    const OP: &str = "logsumexp";
    let (x, axis) = lift(OP, input, dim)?;
    let n = x.len_of(Axis(axis));
    let mut shape = x.shape().to_vec();
    shape.remove(axis);
    if x.is_empty() {
        // Every lane is empty (−inf), or there is no lane: no element to read. The output's size is
        // checked and allocated fallibly, as it may be huge (`[2^28, 0, 2^28]` along 1).
        return try_full(OP, "output", &shape, T::from_acc(row_logsumexp::<T::Acc>(&[])));
    }
    if let Some(out) = fast::logsumexp(OP, &x, axis, &shape)? {
        return Ok(out);
    }
    let mut xs = vec![T::Acc::zero(); n];
    let mut out = ArrayD::<T>::default(IxDyn(&shape));
    Zip::from(&mut out).and(x.lanes(Axis(axis))).for_each(|o, lane| {
        for (s, v) in xs.iter_mut().zip(lane.iter()) {
            *s = v.to_acc();
        }
        *o = T::from_acc(row_logsumexp(&xs));
    });
    Ok(out)
}

/// Gradient of [`logsumexp`] with respect to `input`.
///
/// # Formula
///
/// `grad = g · exp(x − lse(x))`, with `g` (the upstream gradient, of the output's shape) broadcast
/// along `dim`. Where `lse` is infinite the gradient is NaN at the infinite elements, as in PyTorch.
///
/// `grad_output` may have the reduced shape (the input's shape without `dim`) or the `keepdim`
/// shape (size 1 at `dim`).
///
/// # PyTorch
///
/// The backward of `torch.logsumexp` (`logsumexp_backward` in `FunctionsManual.cpp`).
///
/// # Errors
///
/// [`Error::InvalidOption`] for a bad `dim`; [`Error::ShapeMismatch`] naming both shapes when
/// `grad_output` does not have the output's shape.
///
/// # Example
///
/// ```
/// use infoloss::{logsumexp_backward, ndarray::array};
/// let x = array![[0.0f64, 0.0], [0.0, 2f64.ln()]];
/// let g = array![1.0f64, 3.0];
/// let grad = logsumexp_backward(x.view(), g.view(), 1).unwrap();
/// // row 0: 1 · [1/2, 1/2]; row 1: 3 · [1/3, 2/3]
/// assert!((grad[[0, 1]] - 0.5).abs() < 1e-15);
/// assert!((grad[[1, 1]] - 2.0).abs() < 1e-15);
/// ```
pub fn logsumexp_backward<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    grad_output: ArrayView<'_, T, D2>,
    dim: isize,
) -> Result<ArrayD<T>> {
    logsumexp_backward_dyn(input.into_dyn(), grad_output.into_dyn(), dim)
}

/// [`logsumexp_backward`] of dynamic-rank views.
#[inline(never)]
fn logsumexp_backward_dyn<T: Element>(
    input: ArrayViewD<'_, T>,
    g: ArrayViewD<'_, T>,
    dim: isize,
) -> Result<ArrayD<T>> {
    const OP: &str = "logsumexp_backward";
    let was_scalar = input.ndim() == 0;
    let (x, axis) = lift(OP, input, dim)?;
    let mut reduced = x.shape().to_vec();
    reduced.remove(axis);
    let mut keep = x.shape().to_vec();
    if let Some(d) = keep.get_mut(axis) {
        *d = 1;
    }
    let g = if g.shape() == reduced.as_slice() {
        g
    } else if !was_scalar && g.shape() == keep.as_slice() {
        g.index_axis_move(Axis(axis), 0)
    } else {
        let out_shape: &[usize] = if was_scalar { &[] } else { &reduced };
        return Err(Error::shape_mismatch(
            OP,
            "grad_output",
            g.shape(),
            "output",
            out_shape,
            "must be equal (or the output shape with size 1 at dim)",
        ));
    };
    if x.is_empty() {
        // An empty gradient, however large `grad_output` (a broadcast view, say) is.
        return Ok(unlift(ArrayD::default(x.raw_dim()), was_scalar));
    }
    if let Some(out) = fast::logsumexp_backward(OP, &x, &g, axis)? {
        return Ok(unlift(out, was_scalar));
    }
    let n = x.len_of(Axis(axis));
    let mut xs = vec![T::Acc::zero(); n];
    let mut ys = vec![T::Acc::zero(); n];
    let mut out = ArrayD::<T>::default(x.raw_dim());
    Zip::from(out.lanes_mut(Axis(axis))).and(x.lanes(Axis(axis))).and(&g).for_each(|mut o, lane, gv| {
        for (s, v) in xs.iter_mut().zip(lane.iter()) {
            *s = v.to_acc();
        }
        let lse = row_logsumexp(&xs);
        row_logsumexp_backward(&xs, lse, gv.to_acc(), &mut ys);
        for (o, &y) in o.iter_mut().zip(&ys) {
            *o = T::from_acc(y);
        }
    });
    Ok(unlift(out, was_scalar))
}

/// A softmax and its gradient: the public functions of `softmax` and `log_softmax` (`log`), the op named
/// in errors being the function's name.
macro_rules! softmax_api {
    (log = $log:literal; $(#[$fm:meta])* fn $f:ident; $(#[$bm:meta])* fn $backward:ident;) => {
        $(#[$fm])*
        pub fn $f<T: Element, D: Dimension>(input: ArrayView<'_, T, D>, dim: isize) -> Result<ArrayD<T>> {
            softmax_dyn(stringify!($f), input.into_dyn(), dim, $log)
        }

        $(#[$bm])*
        pub fn $backward<T: Element, D: Dimension, D2: Dimension>(
            output: ArrayView<'_, T, D>,
            grad_output: ArrayView<'_, T, D2>,
            dim: isize,
        ) -> Result<ArrayD<T>> {
            backward_dyn(stringify!($backward), output.into_dyn(), grad_output.into_dyn(), dim, $log)
        }
    };
}

softmax_api! {
    log = true;
    /// Log-softmax along `dim`.
    ///
    /// # Formula
    ///
    /// `y = (x − m) − ln Σ_dim exp(x − m)`, `m = max_dim x` (PyTorch's CPU order of operations, computed
    /// in `f32` for `f16`/`bf16`). A row that is all `−inf` or contains `+inf` or NaN gives NaN.
    ///
    /// # Gradient
    ///
    /// `∂/∂x (g·y) = g − softmax(x)·Σ_dim g`; see [`log_softmax_backward`].
    ///
    /// # PyTorch
    ///
    /// `torch.nn.functional.log_softmax(input, dim)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming `dim` when it is out of range.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{log_softmax, ndarray::array};
    /// // F.log_softmax(torch.tensor([1., 2., 3.], dtype=torch.float64), 0)
    /// let y = log_softmax(array![1.0f64, 2.0, 3.0].view(), 0).unwrap();
    /// assert!((y[2] - (-0.4076059644443806)).abs() < 1e-15);
    /// assert!((y[0] - (-2.4076059644443806)).abs() < 1e-15);
    /// ```
    fn log_softmax;
    /// Gradient of [`log_softmax`], computed from its output `y`.
    ///
    /// # Formula
    ///
    /// `grad = g − exp(y) · Σ_dim g`.
    ///
    /// # PyTorch
    ///
    /// `torch.ops.aten._log_softmax_backward_data(grad_output, output, dim, dtype)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for a bad `dim`; [`Error::ShapeMismatch`] naming both shapes when
    /// `grad_output` and `output` differ.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{log_softmax, log_softmax_backward, ndarray::array};
    /// let y = log_softmax(array![0.0f64, 0.0].view(), 0).unwrap();
    /// let grad = log_softmax_backward(y.view(), array![1.0f64, 0.0].view(), 0).unwrap();
    /// // [1 − 0.5, 0 − 0.5]
    /// assert!((grad[0] - 0.5).abs() < 1e-15 && (grad[1] + 0.5).abs() < 1e-15);
    /// ```
    fn log_softmax_backward;
}

softmax_api! {
    log = false;
    /// Softmax along `dim`.
    ///
    /// # Formula
    ///
    /// `s = exp(x − m) · (1 / Σ_dim exp(x − m))`, `m = max_dim x`. A row that is all `−inf` or
    /// contains `+inf` or NaN gives NaN.
    ///
    /// # Gradient
    ///
    /// `∂/∂x (g·s) = s·(g − Σ_dim g·s)`; see [`softmax_backward`].
    ///
    /// # PyTorch
    ///
    /// `torch.nn.functional.softmax(input, dim)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming `dim` when it is out of range.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{softmax, ndarray::array};
    /// // F.softmax(torch.tensor([[1., 2., 3.]], dtype=torch.float64), 1)
    /// let s = softmax(array![[1.0f64, 2.0, 3.0]].view(), 1).unwrap();
    /// assert!((s[[0, 2]] - 0.6652409557748218).abs() < 1e-15);
    /// assert!((s.sum() - 1.0).abs() < 1e-15);
    /// ```
    fn softmax;
    /// Gradient of [`softmax`], computed from its output `s`.
    ///
    /// # Formula
    ///
    /// `grad = (g − Σ_dim g·s) · s`.
    ///
    /// # PyTorch
    ///
    /// `torch.ops.aten._softmax_backward_data(grad_output, output, dim, dtype)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for a bad `dim`; [`Error::ShapeMismatch`] naming both shapes when
    /// `grad_output` and `output` differ.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{softmax_backward, ndarray::array};
    /// let s = array![0.25f64, 0.75];
    /// let grad = softmax_backward(s.view(), array![1.0f64, 0.0].view(), 0).unwrap();
    /// // Σ g·s = 0.25 → [(1 − 0.25)·0.25, (0 − 0.25)·0.75]
    /// assert_eq!(grad, array![0.1875, -0.1875].into_dyn());
    /// ```
    fn softmax_backward;
}

/// [`softmax`] (or, with `log`, [`log_softmax`]) of a dynamic-rank view.
#[inline(never)]
fn softmax_dyn<T: Element>(
    op: &'static str,
    input: ArrayViewD<'_, T>,
    dim: isize,
    log: bool,
) -> Result<ArrayD<T>> {
    let was_scalar = input.ndim() == 0;
    let (x, axis) = lift(op, input, dim)?;
    if let Some(out) = fast::row_map(op, &x, axis, log)? {
        return Ok(unlift(out, was_scalar));
    }
    let out = match log {
        true => map_lanes([&x], axis, |[x], out| row_log_softmax(x, out)),
        false => map_lanes([&x], axis, |[x], out| row_softmax(x, out)),
    };
    Ok(unlift(out, was_scalar))
}

/// [`softmax_backward`] (or, with `log`, [`log_softmax_backward`]) of dynamic-rank views.
#[inline(never)]
fn backward_dyn<T: Element>(
    op: &'static str,
    output: ArrayViewD<'_, T>,
    grad_output: ArrayViewD<'_, T>,
    dim: isize,
    log: bool,
) -> Result<ArrayD<T>> {
    let was_scalar = output.ndim() == 0;
    let axis = normalize_axis(op, dim, output.ndim())?;
    crate::base::shape::check_same_shape(op, "grad_output", grad_output.shape(), "output", output.shape())?;
    let (y, g) = if was_scalar {
        (output.insert_axis(Axis(0)), grad_output.insert_axis(Axis(0)))
    } else {
        (output, grad_output)
    };
    if let Some(out) = fast::row_backward(op, &y, &g, axis, log)? {
        return Ok(unlift(out, was_scalar));
    }
    let out = match log {
        true => map_lanes([&y, &g], axis, |[y, g], out| row_log_softmax_backward(y, g, out)),
        false => map_lanes([&y, &g], axis, |[y, g], out| row_softmax_backward(y, g, out)),
    };
    Ok(unlift(out, was_scalar))
}

compiled_here! {
    softmax_dyn: fn(&'static str, ArrayViewD<'_, T>, isize, bool) -> Result<ArrayD<T>>;
    backward_dyn: fn(&'static str, ArrayViewD<'_, T>, ArrayViewD<'_, T>, isize, bool) -> Result<ArrayD<T>>;
    logsumexp_dyn: fn(ArrayViewD<'_, T>, isize) -> Result<ArrayD<T>>;
    logsumexp_backward_dyn: fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, isize) -> Result<ArrayD<T>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    const INF: f64 = f64::INFINITY;

    fn lsm(x: &[f64]) -> Vec<f64> {
        let mut o = vec![0.0; x.len()];
        row_log_softmax(x, &mut o);
        o
    }

    fn sm(x: &[f64]) -> Vec<f64> {
        let mut o = vec![0.0; x.len()];
        row_softmax(x, &mut o);
        o
    }

    #[test]
    fn row_max_propagates_nan() {
        assert!(row_max(&[1.0, f64::NAN, 3.0]).is_nan());
        assert_eq!(row_max(&[1.0, 5.0, 3.0]), 5.0);
        assert_eq!(row_max::<f64>(&[]), -INF);
    }

    #[test]
    fn non_finite_rows_match_torch() {
        // torch 2.15: F.log_softmax / F.softmax / torch.logsumexp of each row (float64)
        let nan = |v: &[f64]| v.iter().all(|x| x.is_nan());
        for row in [[INF, 1.0], [-INF, -INF], [INF, INF], [f64::NAN, 1.0], [INF, -INF]] {
            assert!(nan(&lsm(&row)), "{row:?}");
            assert!(nan(&sm(&row)), "{row:?}");
        }
        assert_eq!(lsm(&[-INF, 1.0]), vec![-INF, 0.0]);
        assert_eq!(sm(&[-INF, 1.0]), vec![0.0, 1.0]);
        assert_eq!(row_logsumexp(&[INF, 1.0]), INF);
        assert_eq!(row_logsumexp(&[-INF, -INF]), -INF);
        assert_eq!(row_logsumexp(&[INF, -INF]), INF);
        assert_eq!(row_logsumexp(&[-INF, 1.0]), 1.0);
        assert!(row_logsumexp(&[f64::NAN, 1.0]).is_nan());
        assert_eq!(row_logsumexp::<f64>(&[]), -INF);
        // torch: logsumexp grad of [inf, 1] is [nan, 0]; of [-inf, -inf] is [nan, nan]
        let mut g = [0.0; 2];
        row_logsumexp_backward(&[INF, 1.0], INF, 1.0, &mut g);
        assert!(g[0].is_nan() && g[1] == 0.0);
        row_logsumexp_backward(&[-INF, -INF], -INF, 1.0, &mut g);
        assert!(g[0].is_nan() && g[1].is_nan());
    }

    #[test]
    fn log_softmax_grad_of_sum_with_minus_inf() {
        // torch: F.log_softmax(tensor([-inf, 1.]), 0).sum().backward() → grad [1, -1]
        let y = lsm(&[-INF, 1.0]);
        let mut g = [0.0; 2];
        row_log_softmax_backward(&y, &[1.0, 1.0], &mut g);
        assert_eq!(g, [1.0, -1.0]);
    }

    #[test]
    fn scalars_are_one_element_rows() {
        // torch: F.log_softmax(tensor(3.), 0) = 0, F.softmax = 1, torch.logsumexp(tensor(3.), -1) = 3
        let x = ndarray::arr0(3.0f64);
        assert_eq!(log_softmax(x.view(), 0).unwrap(), ndarray::arr0(0.0).into_dyn());
        assert_eq!(softmax(x.view(), -1).unwrap(), ndarray::arr0(1.0).into_dyn());
        assert_eq!(logsumexp(x.view(), -1).unwrap(), ndarray::arr0(3.0).into_dyn());
        assert!(log_softmax(ndarray::arr0(INF).view(), 0).unwrap().iter().all(|v| v.is_nan()));
        assert_eq!(logsumexp(ndarray::arr0(-INF).view(), 0).unwrap()[[]], -INF);
        let g = ndarray::arr0(2.0f64);
        assert_eq!(log_softmax_backward(ndarray::arr0(0.0).view(), g.view(), 0).unwrap()[[]], 0.0);
        assert_eq!(softmax_backward(ndarray::arr0(1.0).view(), g.view(), 0).unwrap()[[]], 0.0);
        assert_eq!(logsumexp_backward(x.view(), g.view(), 0).unwrap()[[]], 2.0);
        // torch: "Dimension out of range (expected to be in range of [-1, 0], but got 1)"
        let e = softmax(x.view(), 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "softmax: invalid dim = 1: dimension out of range (expected to be in range of [-1, 0])"
        );
    }

    #[test]
    fn empty_rows() {
        // torch.logsumexp(torch.zeros(3, 0), 1) = [-inf, -inf, -inf]; shapes are kept
        let x = ArrayD::<f64>::zeros(IxDyn(&[3, 0]));
        assert_eq!(logsumexp(x.view(), 1).unwrap().into_raw_vec_and_offset().0, vec![-INF; 3]);
        assert_eq!(log_softmax(x.view(), 1).unwrap().shape(), &[3, 0]);
        assert_eq!(logsumexp(ArrayD::<f64>::zeros(IxDyn(&[0, 3])).view(), 1).unwrap().shape(), &[0]);
    }

    #[test]
    fn middle_dim_and_non_standard_layout() {
        // torch: F.softmax(torch.arange(24.).reshape(2,3,4) / 7, dim=1)[1, :, 2]
        let x = ndarray::Array::from_shape_fn((2, 3, 4), |(a, b, c)| (a * 12 + b * 4 + c) as f64 / 7.0);
        let s = softmax(x.view(), 1).unwrap();
        let col: Vec<f64> = (0..3).map(|b| s[[1, b, 2]]).collect();
        let e: Vec<f64> = (0..3).map(|b| ((b * 4) as f64 / 7.0).exp()).collect();
        let t: f64 = e.iter().sum();
        for (c, ev) in col.iter().zip(&e) {
            assert!((c - ev / t).abs() < 1e-15);
        }
        // a transposed view gives the transposed result
        let xt = x.view().reversed_axes();
        let st = softmax(xt, 1).unwrap();
        assert!((st[[2, 1, 1]] - s[[1, 1, 2]]).abs() < 1e-16);
    }

    #[test]
    fn grad_output_shapes() {
        let x = array![[1.0f64, 2.0], [3.0, 4.0]];
        let keep = array![[1.0f64], [2.0]];
        let red = array![1.0f64, 2.0];
        assert_eq!(
            logsumexp_backward(x.view(), keep.view(), 1).unwrap(),
            logsumexp_backward(x.view(), red.view(), 1).unwrap()
        );
        let e = logsumexp_backward(x.view(), array![1.0f64, 2.0, 3.0].view(), 1).unwrap_err();
        assert!(e.to_string().contains("grad_output shape [3] and output shape [2]"), "{e}");
        let e = log_softmax_backward(x.view(), red.view(), 1).unwrap_err();
        assert!(e.to_string().contains("grad_output shape [2] and output shape [2, 2]"), "{e}");
    }

    #[test]
    fn half_precision_computes_in_f32() {
        let x = array![half::f16::from_f32(1.0), half::f16::from_f32(2.0), half::f16::from_f32(3.0)];
        let y = log_softmax(x.view(), 0).unwrap();
        // We compute in f32 and round once: exact −0.40760596 → f16 −0.4077148.
        // torch: F.log_softmax(torch.tensor([1., 2., 3.], dtype=torch.float16), 0)
        //   = [-2.408203125, -1.4072265625, -0.407470703125]; torch rounds ln Σ exp to f16 before
        //   subtracting, so its last element is one f16 ulp (2^-12) away from ours.
        assert_eq!(y[2].to_f32(), -0.407_714_84);
        assert!((y[2].to_f32() - -0.407_470_7).abs() <= 2f32.powi(-12) * 1.01);
        assert_eq!(y[0].to_f32(), -2.408_203_1);
        assert_eq!(y[1].to_f32(), -1.407_226_6);
    }
}
