//! `nll_loss`: the negative log-likelihood of class-index targets.
//!
//! The input holds log-probabilities with the classes on dimension 1: `(C)`, `(N, C)` or
//! `(N, C, d1, …, dk)`; the target holds class indices of shape `()` (or `(1)`), `(N)` or
//! `(N, d1, …, dk)`. See `pytorch-semantics.md` §2.
//!
//! This module also holds the target validation and reduction bookkeeping that
//! [`cross_entropy`](crate::cross_entropy()) shares.

use super::ClassCall;
use crate::base::class_targets::index_targets;
use crate::base::outputs::{LossAndGrad, class_results, mean_of};
use crate::base::upstream::RowUpstream as Upstream;
use ndarray::{ArrayView, Dimension};
use num_traits::Zero;

use crate::base::array::{row_major, try_vec};
use crate::{Element, Error, GradOutput, Loss, Real, Reduction, Result};

pub use crate::options::NllOptions;

// ---------------------------------------------------------------------------------------------
// nll_loss
// ---------------------------------------------------------------------------------------------

/// Forward and/or backward of nll_loss in one pass over the rows.
#[inline(never)]
fn nll_core<T: Element>(call: ClassCall<'_, '_, T, i64, NllOptions<'_, T>>) -> Result<LossAndGrad<T>> {
    let ClassCall { op, input, target, opts, want_loss, grad_output } = call;
    let reduction = opts.reduction.reject_batchmean(op)?;
    let tg = index_targets::<T>(op, input.shape(), &target, opts.weight.as_ref(), opts.ignore_index)?;
    let up = match grad_output {
        Some(g) => Some(Upstream::read(op, reduction, &tg.out_shape, g)?),
        None => None,
    };
    let x = row_major(&input);
    let (classes, inner) = (tg.layout.classes, tg.layout.inner);
    let rows = tg.class.len();
    let zero = T::Acc::zero();

    let mut per_row =
        try_vec(op, "output", if want_loss && reduction == Reduction::None { rows } else { 0 })?;
    let mut sum = 0f64;
    // zero-initialized without a pass over the memory: only the target entries are written
    let mut grad = match up {
        Some(_) => Some(crate::kernels::alloc::try_zeroed::<T>(op, "gradient", x.len())?),
        None => None,
    };
    // For mean/sum the scatter value −g/W (or −g) is the same for every row.
    let w_acc = T::Acc::c(tg.total_weight);

    for (r, cls) in tg.class.iter().enumerate() {
        let Some(c) = *cls else {
            if want_loss && reduction == Reduction::None {
                per_row.push(zero);
            }
            continue;
        };
        let idx = (r / inner) * classes * inner + c * inner + r % inner;
        let wc = tg.w(c);
        if want_loss {
            let xv = x.get(idx).map_or(zero, |v| v.to_acc());
            let l = -xv * wc;
            if reduction == Reduction::None {
                per_row.push(l);
            } else {
                sum += l.f64();
            }
        }
        if let (Some(up), Some(grad)) = (&up, grad.as_mut()) {
            let g = up.at(r);
            let scaled = match reduction {
                Reduction::Mean => -(g / w_acc),
                _ => -g,
            };
            if let Some(slot) = grad.get_mut(idx) {
                *slot = T::from_acc(wc * scaled);
            }
        }
    }

    let reduced = match reduction {
        Reduction::Mean => mean_of(sum, tg.total_weight, rows),
        _ => sum,
    };
    let loss = want_loss.then(|| (per_row, T::Acc::c(reduced)));
    class_results(op, reduction, &tg.out_shape, loss, grad, input.shape())
}

super::class_api! {
    core = nll_core, target = i64, options = NllOptions<'_, T>, op = "nll_loss", backward_op = "nll_loss_backward";
    /// Negative log-likelihood loss of class-index targets.
    ///
    /// # Formula
    ///
    /// Per row `i` (a position `(n, d1, …, dk)`): `l_i = −w[y_i] · x[i, y_i]`, and `l_i = 0` where
    /// `y_i == ignore_index`.
    ///
    /// - `none`: the `l_i`, shaped like the target (a 0-d array for a 1-D input);
    /// - `sum`: `Σ l_i`;
    /// - `mean`: `Σ l_i / W` with `W = Σ_{i not ignored} w[y_i]` (the number of non-ignored targets
    ///   without a weight). An empty input or one whose targets are all ignored gives NaN (`sum`: 0).
    ///
    /// `ignore_index` is tested before the range check, so it may lie outside `[0, C)`.
    ///
    /// # Gradient
    ///
    /// Only `x[i, y_i]` receives a gradient: `−w[y_i]·g/W` (`mean`), `−w[y_i]·g` (`sum`),
    /// `−w[y_i]·g_i` (`none`); ignored rows get 0. See [`nll_loss_backward`].
    ///
    /// # PyTorch
    ///
    /// `torch.nn.functional.nll_loss(input, target, weight, ignore_index=-100, reduction='mean')`.
    ///
    /// # Errors
    ///
    /// - [`Error::ShapeMismatch`] naming both shapes when the target is not the input shape without
    ///   dimension 1, or the weight does not have `C` entries;
    /// - [`Error::TargetOutOfRange`] naming the target's multi-index and value;
    /// - [`Error::InvalidOption`] for `Reduction::BatchMean`;
    /// - [`Error::BadRank`] for a 0-d input.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{NllOptions, Reduction, nll_loss, ndarray::array};
    /// let logp = array![[-0.5f64, -1.0, -2.0], [-3.0, -0.25, -1.5]];
    /// let target = array![0i64, 2];
    /// let loss = nll_loss(logp.view(), target.view(), &NllOptions::default()).unwrap();
    /// assert_eq!(loss.scalar(), Some((0.5 + 1.5) / 2.0));
    ///
    /// // weighted mean divides by the target-class weights: (0.1·0.5 + 0.3·1.5) / (0.1 + 0.3)
    /// let w = array![0.1f64, 0.2, 0.3];
    /// let opts = NllOptions { weight: Some(w.view()), ..Default::default() };
    /// let loss = nll_loss(logp.view(), target.view(), &opts).unwrap().scalar().unwrap();
    /// assert!((loss - 1.25).abs() < 1e-15);
    ///
    /// let opts = NllOptions { reduction: Reduction::None, ignore_index: 2, ..Default::default() };
    /// let l = nll_loss(logp.view(), target.view(), &opts).unwrap();
    /// assert_eq!(l.elementwise().unwrap(), &array![0.5, 0.0].into_dyn());
    /// ```
    fn nll_loss;
    /// Gradient of [`nll_loss`] with respect to `input`.
    ///
    /// # Formula
    ///
    /// `grad[i, y_i] = −w[y_i] · g / W` for `mean`, `−w[y_i] · g` for `sum`, `−w[y_i] · g_i` for
    /// `none`; every other element (and every ignored row) is 0. When all targets are ignored the
    /// gradient is all zeros (not NaN); when `W = 0` with a non-ignored target (its weight is 0) the
    /// gradient at that target is NaN, as in PyTorch.
    ///
    /// `grad_output` is a scalar (or 0-d array) for `mean`/`sum`, and an array of the target's shape
    /// (or a scalar applied to every element) for `none`.
    ///
    /// # PyTorch
    ///
    /// `torch.ops.aten.nll_loss_backward` (the `input.grad` of `F.nll_loss(...).backward(g)`).
    ///
    /// # Errors
    ///
    /// As [`nll_loss`], plus [`Error::ShapeMismatch`] when `grad_output` has the wrong shape.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{GradOutput, NllOptions, nll_loss_backward, ndarray::array};
    /// // torch: w = [1, 2, 3, 4], y = [0, 3, -100] → W = 5, grad[0,0] = -0.2, grad[1,3] = -0.8
    /// let x = array![[0.1f64, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9, 1.0, 1.1, 1.2]];
    /// let w = array![1.0f64, 2.0, 3.0, 4.0];
    /// let opts = NllOptions { weight: Some(w.view()), ..Default::default() };
    /// let g = nll_loss_backward(x.view(), array![0i64, 3, -100].view(), &opts, &GradOutput::one()).unwrap();
    /// assert_eq!((g[[0, 0]], g[[1, 3]], g[[2, 0]]), (-0.2, -0.8, 0.0));
    /// ```
    fn nll_loss_backward;
    /// Loss and input gradient (upstream gradient 1, all ones for `none`) in one pass.
    ///
    /// # Formula
    ///
    /// `(nll_loss(input, target), nll_loss_backward(input, target, 1))`; see [`nll_loss`] and
    /// [`nll_loss_backward`].
    ///
    /// # PyTorch
    ///
    /// `loss = F.nll_loss(x, y, ...); loss.backward(torch.ones_like(loss)); (loss, x.grad)`.
    ///
    /// # Errors
    ///
    /// As [`nll_loss`].
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{NllOptions, nll_loss_with_grad, ndarray::array};
    /// let x = array![[-1.0f32, -2.0], [-0.5, -3.0]];
    /// let (loss, grad) = nll_loss_with_grad(x.view(), array![1i64, 0].view(), &NllOptions::default()).unwrap();
    /// assert_eq!(loss.scalar(), Some(1.25));
    /// assert_eq!(grad, array![[0.0f32, -0.5], [-0.5, 0.0]].into_dyn());
    /// ```
    fn nll_loss_with_grad;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;
    use ndarray::{IxDyn, array};

    const NAN: f64 = f64::NAN;

    #[test]
    fn empty_and_all_ignored() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[0, 3]));
        let y = ArrayD::<i64>::zeros(IxDyn(&[0]));
        for (red, expect) in [(Reduction::Mean, NAN), (Reduction::Sum, 0.0)] {
            let opts = NllOptions { reduction: red, ..Default::default() };
            let (l, g) = nll_loss_with_grad(x.view(), y.view(), &opts).unwrap();
            let v = l.scalar().unwrap();
            assert!(v == expect || (v.is_nan() && expect.is_nan()), "{red}: {v}");
            assert_eq!(g.shape(), &[0, 3]);
        }
        let opts = NllOptions { reduction: Reduction::None, ..Default::default() };
        assert_eq!(nll_loss(x.view(), y.view(), &opts).unwrap().into_array().shape(), &[0]);

        let x = array![[1.0f64, 2.0], [3.0, 4.0]];
        let y = array![-100i64, -100];
        let (l, g) = nll_loss_with_grad(x.view(), y.view(), &NllOptions::default()).unwrap();
        assert!(l.scalar().unwrap().is_nan());
        assert_eq!(g, ArrayD::<f64>::zeros(IxDyn(&[2, 2])));
        let opts = NllOptions { reduction: Reduction::Sum, ..Default::default() };
        assert_eq!(nll_loss(x.view(), y.view(), &opts).unwrap().scalar(), Some(0.0));
    }

    #[test]
    fn zero_weight_of_only_target_class() {
        // torch: nll_loss(x, [1, 1], weight=[1, 0, 2]) → nan, grad nan at [:, 1], 0 elsewhere
        let x = array![[0.3f64, -0.2, 0.1], [1.0, 2.0, 3.0]];
        let w = array![1.0, 0.0, 2.0];
        let opts = NllOptions { weight: Some(w.view()), ..Default::default() };
        let (l, g) = nll_loss_with_grad(x.view(), array![1i64, 1].view(), &opts).unwrap();
        assert!(l.scalar().unwrap().is_nan());
        assert!(g[[0, 1]].is_nan() && g[[1, 1]].is_nan());
        assert_eq!((g[[0, 0]], g[[1, 2]]), (0.0, 0.0));
    }

    #[test]
    fn one_d_input() {
        let x = array![-0.5f64, -1.5, -2.5];
        let opts = NllOptions { reduction: Reduction::None, ..Default::default() };
        // torch: F.nll_loss(x, tensor(1), reduction='none') is 0-d
        let l = nll_loss(x.view(), ndarray::arr0(1i64).view(), &opts).unwrap();
        assert_eq!(l, Loss::Elementwise(ndarray::arr0(1.5).into_dyn()));
        // a target of shape [1] is also accepted by torch and gives a 0-d result
        let l = nll_loss(x.view(), array![2i64].view(), &opts).unwrap();
        assert_eq!(l, Loss::Elementwise(ndarray::arr0(2.5).into_dyn()));
        // torch (CPU): an ignored 0-d target gives mean NaN
        let l = nll_loss(x.view(), ndarray::arr0(-100i64).view(), &NllOptions::default()).unwrap();
        assert!(l.scalar().unwrap().is_nan());
        let e = nll_loss(x.view(), array![0i64, 1].view(), &opts).unwrap_err();
        assert!(e.to_string().starts_with("nll_loss: input shape [3] and target shape [2]"), "{e}");
    }

    #[test]
    fn none_with_array_upstream() {
        let x = array![[-1.0f64, -2.0], [-3.0, -4.0], [-5.0, -6.0]];
        let w = array![2.0, 3.0];
        let opts = NllOptions { weight: Some(w.view()), reduction: Reduction::None, ..Default::default() };
        let g = array![0.5, 7.0, -1.0];
        let grad = nll_loss_backward(
            x.view(),
            array![1i64, -100, 0].view(),
            &opts,
            &GradOutput::Array(g.view().into_dyn()),
        )
        .unwrap();
        assert_eq!(grad, array![[0.0, -1.5], [0.0, 0.0], [2.0, 0.0]].into_dyn());
        let e = nll_loss_backward(
            x.view(),
            array![1i64, -100, 0].view(),
            &opts,
            &GradOutput::Array(array![1.0, 2.0].view().into_dyn()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("grad_output shape [2] and output shape [3]"), "{e}");
        let e = nll_loss_backward(
            x.view(),
            array![1i64, 0, 0].view(),
            &NllOptions::default(),
            &GradOutput::Array(g.view().into_dyn()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("grad_output shape [3]"), "{e}");
    }

    #[test]
    fn errors_name_shapes_and_values() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[2, 3, 4]));
        let y = ArrayD::<i64>::zeros(IxDyn(&[2, 5]));
        let e = nll_loss(x.view(), y.view(), &NllOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nll_loss: input shape [2, 3, 4] and target shape [2, 5] are not compatible: the target must have shape [2, 4] (the input shape without the class dimension 1)"
        );
        let mut y = ArrayD::<i64>::zeros(IxDyn(&[2, 4]));
        y[[1, 2]] = 3;
        let e = nll_loss(x.view(), y.view(), &NllOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "nll_loss: target 3 at [1, 2] is out of range for 3 classes");
        y[[1, 2]] = -1;
        let e = nll_loss(x.view(), y.view(), &NllOptions::default()).unwrap_err();
        assert_eq!(e, Error::target_out_of_range("nll_loss", &[1, 2], -1, 3));
        // ignore_index outside [0, C) is honoured before the range check
        y[[1, 2]] = 7;
        let opts = NllOptions { ignore_index: 7, ..Default::default() };
        assert!(nll_loss(x.view(), y.view(), &opts).is_ok());
        let w = array![1.0, 2.0, 3.0, 4.0];
        let opts = NllOptions { weight: Some(w.view()), ..Default::default() };
        let e = nll_loss(x.view(), ArrayD::<i64>::zeros(IxDyn(&[2, 4])).view(), &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nll_loss: weight shape [4] and input shape [2, 3, 4] are not compatible: weight must have one entry per class (3 classes), but has 4"
        );
        let opts = NllOptions { reduction: Reduction::BatchMean, ..Default::default() };
        let e = nll_loss(x.view(), ArrayD::<i64>::zeros(IxDyn(&[2, 4])).view(), &opts).unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "reduction", .. }), "{e}");
        let e = nll_loss(ndarray::arr0(1.0f64).view(), ndarray::arr0(0i64).view(), &NllOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::BadRank { .. }), "{e}");
    }
}
