//! `cross_entropy` with class-index targets and with probability targets.
//!
//! The input holds logits with the classes on dimension 1: `(C)`, `(N, C)` or `(N, C, d1, …, dk)`.
//! Class-index targets follow [`nll_loss`](crate::nll_loss()) (`(N, C, d…)` input, `(N, d…)` target);
//! probability targets have the input's shape. See `pytorch-semantics.md` §3.
//!
//! Every function makes one pass over the rows (positions `(n, d1, …, dk)`): it gathers the row's
//! logits, computes one `log_softmax`, and from it the loss and/or the gradient.

use ndarray::{ArrayD, ArrayView, ArrayViewD, Dimension};
use num_traits::{One, Zero};

use super::ClassCall;
use crate::base::array::{array_from_vec, row_major, try_vec};
use crate::base::checks::label_smoothing as check_label_smoothing;
use crate::base::class_targets::{IndexTargets, check_class_weight, index_targets};
use crate::base::outputs::{LossAndGrad, class_results, mean_of, pack_loss};
use crate::base::shape::{ClassLayout, check_same_shape, checked_numel};
use crate::base::upstream::RowUpstream as Upstream;
use crate::rows::softmax_rows::{row_log_softmax, row_log_softmax_backward};
use crate::{Element, Error, GradOutput, Loss, Real, Reduction, Result};

crate::base::path::deprecated_switches!("cross_entropy");

pub use crate::options::CrossEntropyOptions;

/// Gathers row `r` (classes strided by `inner`) of a row-major class-dimension-1 array.
#[inline]
fn gather<T: Element>(x: &[T], r: usize, layout: &ClassLayout, out: &mut [T::Acc]) {
    let (classes, inner) = (layout.classes, layout.inner);
    let base = (r / inner) * classes * inner + r % inner;
    for (c, o) in out.iter_mut().enumerate() {
        *o = x.get(base + c * inner).map_or(T::Acc::zero(), |v| v.to_acc());
    }
}

/// Writes row `r` of `vals` into a row-major class-dimension-1 array.
#[inline]
fn scatter<T: Element>(dst: &mut [T], r: usize, layout: &ClassLayout, vals: &[T::Acc]) {
    let (classes, inner) = (layout.classes, layout.inner);
    let base = (r / inner) * classes * inner + r % inner;
    for (c, &v) in vals.iter().enumerate() {
        if let Some(d) = dst.get_mut(base + c * inner) {
            *d = T::from_acc(v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Class-index targets
// ---------------------------------------------------------------------------------------------

/// Validates the options and targets of a class-index cross-entropy: the reduction, ε and the
/// per-row classes.
fn prepare_index<T: Element>(
    op: &'static str,
    shape: &[usize],
    target: &ArrayViewD<'_, i64>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<(Reduction, f64, IndexTargets<T::Acc>)> {
    let reduction = opts.reduction.reject_batchmean(op)?;
    let eps = check_label_smoothing(op, opts.label_smoothing)?;
    let tg: IndexTargets<T::Acc> =
        index_targets::<T>(op, shape, target, opts.weight.as_ref(), opts.ignore_index)?;
    if eps > 0.0 && !tg.layout.batched && target.ndim() == 1 {
        return Err(Error::shape_mismatch(
            op,
            "input",
            shape,
            "target",
            target.shape(),
            "are not compatible: with label_smoothing > 0 a 1-D input takes a 0-d target \
             (PyTorch: output with shape [] doesn't match the broadcast shape [1])",
        ));
    }
    Ok((reduction, eps, tg))
}

/// Loss and/or input gradient of class-index cross-entropy, one log-softmax per row.
///
/// Mirrors PyTorch's composite exactly:
/// `loss = (1−ε)·nll_loss(lsm, y, w) + (ε/C)·ret`, `ret` = the reduced `smooth_i = −Σ_c w_c·lsm_c`
/// (0 for ignored rows; `mean` divides by W), and the gradient is autograd's: an upstream `G` on
/// `lsm` followed by `log_softmax`'s backward `G − exp(lsm)·ΣG`.
#[inline(never)]
fn ce_index_core<T: Element>(
    call: ClassCall<'_, '_, T, i64, CrossEntropyOptions<'_, T>>,
) -> Result<LossAndGrad<T>> {
    let ClassCall { op, input, target, opts, want_loss, grad_output } = call;
    let (reduction, eps, tg) = prepare_index(op, input.shape(), &target, opts)?;
    let smoothing = eps > 0.0;
    let up = match grad_output {
        Some(g) => Some(Upstream::read(op, reduction, &tg.out_shape, g)?),
        None => None,
    };
    if let Some(out) = fast::index::<T>(&input, &tg, opts.reduction, eps, want_loss, up.as_ref())? {
        return Ok(out);
    }
    let layout = tg.layout;
    let classes = layout.classes;
    let rows = tg.class.len();
    let x = row_major(&input);

    let zero = T::Acc::zero();
    let w_total = T::Acc::c(tg.total_weight);
    let keep = T::Acc::c(1.0 - eps);
    let eps_c = T::Acc::c(eps / classes as f64);

    // Row scratch; none for an empty input (whose rows are empty, however many classes it names).
    let width = if x.is_empty() { 0 } else { classes };
    let mut xs = vec![zero; width];
    let mut lsm = vec![zero; width];
    let mut g_lsm = vec![zero; width];
    let mut g_x = vec![zero; width];
    let none = reduction == Reduction::None;
    let mut per_row = try_vec(op, "output", if want_loss && none { rows } else { 0 })?;
    let (mut nll_sum, mut smooth_sum) = (0f64, 0f64);
    let mut grad = up.as_ref().map(|_| vec![T::from_acc(zero); x.len()]);

    for (r, &cls) in tg.class.iter().enumerate() {
        gather(&x, r, &layout, &mut xs);
        row_log_softmax(&xs, &mut lsm);

        if want_loss {
            let nll = match cls {
                Some(c) => -lsm.get(c).copied().unwrap_or(zero) * tg.w(c),
                None => zero,
            };
            let smooth = match cls {
                Some(_) if smoothing => {
                    let mut s = 0f64;
                    for (c, &l) in lsm.iter().enumerate() {
                        s += match &tg.weight {
                            Some(_) => (l * tg.w(c)).f64(),
                            None => l.f64(),
                        };
                    }
                    -T::Acc::c(s)
                }
                _ => zero,
            };
            if none {
                per_row.push(if smoothing { keep * nll + smooth * eps_c } else { nll });
            } else {
                nll_sum += nll.f64();
                smooth_sum += smooth.f64();
            }
        }

        if let (Some(up), Some(grad)) = (&up, grad.as_mut()) {
            g_lsm.fill(zero);
            if let Some(c) = cls {
                let g = up.at(r);
                // nll_loss_backward with upstream (1−ε)·g: −w_y·g'/W (mean) or −w_y·g'.
                let g_nll = if smoothing { g * keep } else { g };
                let a = if reduction == Reduction::Mean { -(g_nll / w_total) } else { -g_nll };
                if let Some(slot) = g_lsm.get_mut(c) {
                    *slot = tg.w(c) * a;
                }
                if smoothing {
                    // ret·(ε/C) → sum → masked → neg → mul by w_c.
                    let g_ret = g * eps_c;
                    let b = if reduction == Reduction::Mean { g_ret / w_total } else { g_ret };
                    for (k, slot) in g_lsm.iter_mut().enumerate() {
                        *slot += -b * tg.w(k);
                    }
                }
            }
            row_log_softmax_backward(&lsm, &g_lsm, &mut g_x);
            scatter(grad, r, &layout, &g_x);
        }
    }

    let reduced = match reduction {
        Reduction::Mean => {
            let nll = T::Acc::c(mean_of(nll_sum, tg.total_weight, rows));
            if smoothing {
                let ret = T::Acc::c(mean_of(smooth_sum, tg.total_weight, rows));
                keep * nll + ret * eps_c
            } else {
                nll
            }
        }
        _ => {
            let nll = T::Acc::c(nll_sum);
            if smoothing { keep * nll + T::Acc::c(smooth_sum) * eps_c } else { nll }
        }
    };
    let loss = want_loss.then_some((per_row, reduced));
    class_results(op, reduction, &tg.out_shape, loss, grad, input.shape())
}

super::class_api! {
    core = ce_index_core, target = i64, options = CrossEntropyOptions<'_, T>, op = "cross_entropy", backward_op = "cross_entropy_backward";
    /// Cross-entropy from logits with class-index targets.
    ///
    /// # Formula
    ///
    /// With `lsm = log_softmax(x)` over dimension 1, per row `i` (a position `(n, d1, …, dk)`):
    ///
    /// - ε = 0: `l_i = −w[y_i]·lsm[i, y_i]`, reduced exactly as [`nll_loss`](crate::nll_loss()):
    ///   `mean` = `Σ l_i / W`, `W = Σ_{i not ignored} w[y_i]` (the count without weight).
    /// - 0 < ε ≤ 1: `loss = (1−ε)·nll + (ε/C)·ret`, where `smooth_i = −Σ_c w_c·lsm[i, c]` (0 for
    ///   ignored rows) and `ret` is `Σ smooth_i / W` (`mean`), `Σ smooth_i` (`sum`) or `smooth_i`
    ///   (`none`). The uniform part is weighted by `w_c` but normalized by the target weights `W`,
    ///   exactly as PyTorch.
    ///
    /// Rows whose target is `ignore_index` contribute 0. An empty input or all-ignored targets give NaN
    /// for `mean` and 0 for `sum`. A target class whose logit is `−inf` gives `+inf`.
    ///
    /// # Gradient
    ///
    /// For a non-ignored row: `[(1−ε)·w_y·(p − e_y) + (ε/C)·(p·Σ_c w_c − w)]·g / W` for `mean` (no `/W`
    /// for `sum`; `g_i` for `none`), with `p = softmax(x)`. Ignored rows get 0. See
    /// [`cross_entropy_backward`].
    ///
    /// # PyTorch
    ///
    /// `torch.nn.functional.cross_entropy(input, target, weight, ignore_index=-100, reduction='mean',
    /// label_smoothing=0.0)` with an integer target.
    ///
    /// # Errors
    ///
    /// - [`Error::ShapeMismatch`] naming both shapes (target not the input shape without dimension 1,
    ///   weight without `C` entries);
    /// - [`Error::TargetOutOfRange`] naming the target's multi-index and value;
    /// - [`Error::InvalidOption`] for `label_smoothing` above 1 (negative or NaN values disable smoothing, as in PyTorch), and for
    ///   `Reduction::BatchMean`.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, cross_entropy, ndarray::array};
    /// // SEEDS #6: CrossEntropyLoss of logits ln([0.3, 0.3, 0.4]) with class 2 is −ln 0.4
    /// let x = array![[0.3f64.ln(), 0.3f64.ln(), 0.4f64.ln()]];
    /// let loss = cross_entropy(x.view(), array![2i64].view(), &CrossEntropyOptions::default()).unwrap();
    /// assert!((loss.scalar().unwrap() - 0.9162907318741551).abs() < 1e-15);
    ///
    /// // torch: F.cross_entropy(tensor([[1., 2., 3.]]), tensor([0]), label_smoothing=0.1)
    /// let opts = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
    /// let loss = cross_entropy(array![[1.0f32, 2.0, 3.0]].view(), array![0i64].view(), &opts).unwrap();
    /// assert!((loss.scalar().unwrap() - 2.3076059818267822).abs() < 1e-6);
    /// ```
    fn cross_entropy;
    /// Gradient of [`cross_entropy`] with respect to `input`.
    ///
    /// # Formula
    ///
    /// Autograd's gradient through the composite: an upstream `G` on `lsm = log_softmax(x)` with
    /// `G[i, y_i] = −(1−ε)·w_{y_i}·g/W` and, for ε > 0, `G[i, c] −= (ε/C)·w_c·g/W` on non-ignored rows,
    /// then `grad = G − exp(lsm)·Σ_c G`. For ε = 0 this is `w_y·(p − e_y)·g/W`. `/W` only for `mean`;
    /// `g_i` per row for `none`. All-ignored targets give a zero gradient (not NaN).
    ///
    /// `grad_output` is a scalar (or 0-d array) for `mean`/`sum`, and an array of the target's shape
    /// (or a scalar applied to every element) for `none`.
    ///
    /// # PyTorch
    ///
    /// `x.grad` after `F.cross_entropy(x, y, ...).backward(g)`.
    ///
    /// # Errors
    ///
    /// As [`cross_entropy`], plus [`Error::ShapeMismatch`] when `grad_output` has the wrong shape.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, GradOutput, cross_entropy_backward, ndarray::array};
    /// // torch: x = [[0, -inf, 1]], y = [1] → loss +inf, grad [[0.2689, -1, 0.7311]]
    /// let x = array![[0.0f64, f64::NEG_INFINITY, 1.0]];
    /// let opts = CrossEntropyOptions::default();
    /// let g = cross_entropy_backward(x.view(), array![1i64].view(), &opts, &GradOutput::one()).unwrap();
    /// assert!((g[[0, 0]] - 0.2689414213699951).abs() < 1e-15);
    /// assert_eq!(g[[0, 1]], -1.0);
    /// assert!((g[[0, 2]] - 0.7310585786300049).abs() < 1e-15);
    /// ```
    fn cross_entropy_backward;
    /// Loss and input gradient (upstream gradient 1, all ones for `none`) in one pass: one
    /// log-softmax per row feeds both.
    ///
    /// # Formula
    ///
    /// `(cross_entropy(x, y), cross_entropy_backward(x, y, 1))`; see [`cross_entropy`].
    ///
    /// # PyTorch
    ///
    /// `loss = F.cross_entropy(x, y, ...); loss.backward(torch.ones_like(loss)); (loss, x.grad)`.
    ///
    /// # Errors
    ///
    /// As [`cross_entropy`].
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, cross_entropy_with_grad, ndarray::array};
    /// let x = array![[0.0f64, 0.0], [0.0, 0.0]];
    /// let (loss, grad) = cross_entropy_with_grad(x.view(), array![0i64, 1].view(), &CrossEntropyOptions::default()).unwrap();
    /// assert!((loss.scalar().unwrap() - 2f64.ln()).abs() < 1e-15);
    /// // (softmax − onehot) / N
    /// assert_eq!(grad, array![[-0.25, 0.25], [0.25, -0.25]].into_dyn());
    /// ```
    fn cross_entropy_with_grad;
    /// [`cross_entropy_with_grad`] that writes the gradient into the logits' own buffer: the training
    /// path, where the logits are dead once the loss is taken. No array of the input's size is
    /// allocated.
    ///
    /// # Formula
    ///
    /// Returns `cross_entropy(x, y)` and leaves `∂loss/∂x` (upstream gradient 1, all ones for `none`)
    /// in `input`, bit for bit what [`cross_entropy_with_grad`] returns. Any layout is accepted;
    /// standard-layout (C-contiguous) `f32`, `f16` and `bf16` inputs take the fused kernel, which
    /// reads every logit once and writes its gradient once; other layouts and `f64` compute the
    /// gradient aside and copy it in.
    ///
    /// # PyTorch
    ///
    /// `loss = F.cross_entropy(x, y, ...); loss.backward(); x.data.copy_(x.grad)`; the in-place idea of
    /// Liger-Kernel's and Unsloth's fused cross-entropy.
    ///
    /// # Errors
    ///
    /// As [`cross_entropy`]; every check happens before anything is written, so on error `input`
    /// is unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, cross_entropy_with_grad_in_place, ndarray::array};
    /// let mut x = array![[0.0f32, 0.0], [0.0, 0.0]];
    /// let loss = cross_entropy_with_grad_in_place(x.view_mut(), array![0i64, 1].view(), &Default::default()).unwrap();
    /// assert!((loss.scalar().unwrap() - 2f32.ln()).abs() < 1e-7);
    /// // the logits now hold (softmax − onehot) / N
    /// assert_eq!(x, array![[-0.25, 0.25], [0.25, -0.25]]);
    /// ```
    fn cross_entropy_with_grad_in_place via |input, target, opts| {
        let (reduction, eps, tg) = prepare_index("cross_entropy", input.shape(), target, opts)?;
        fast::index_in_place(input, &tg, reduction, eps)
    }
}

// ---------------------------------------------------------------------------------------------
// Fast path: f32 rows through the fused SIMD kernels
// ---------------------------------------------------------------------------------------------

mod fast;
mod probs;

pub use probs::*;

compiled_here! {
    ce_probs_core: fn(&'static str, ArrayViewD<'_, T>, ArrayViewD<'_, T>, &CrossEntropyOptions<'_, T>, ProbsWant<'_, '_, T>) -> Result<ProbsOut<T>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{IxDyn, array};

    #[test]
    fn label_smoothing_is_validated_like_torch() {
        let x = array![[1.0f64, 2.0, 3.0]];
        let y = array![0i64];
        for bad in [1.5, f64::INFINITY] {
            let opts = CrossEntropyOptions { label_smoothing: bad, ..Default::default() };
            let e = cross_entropy(x.view(), y.view(), &opts).unwrap_err();
            assert!(matches!(e, Error::InvalidOption { option: "label_smoothing", .. }), "{e}");
            let e = cross_entropy_probs(x.view(), x.view(), &opts).unwrap_err();
            assert!(matches!(e, Error::InvalidOption { option: "label_smoothing", .. }), "{e}");
        }
        // torch: F.cross_entropy(tensor([[1., 2., 3.]]), tensor([0]), label_smoothing=-0.1 or nan)
        //   → 2.4076058864593506 in f32, the unsmoothed loss
        for off in [-0.1, -5.0, f64::NAN] {
            let opts = CrossEntropyOptions { label_smoothing: off, ..Default::default() };
            let v = cross_entropy(x.view(), y.view(), &opts).unwrap().scalar().unwrap();
            let v0 =
                cross_entropy(x.view(), y.view(), &CrossEntropyOptions::default()).unwrap().scalar().unwrap();
            assert_eq!(v, v0);
            assert!((v - 2.4076059644443806).abs() < 1e-15);
        }
        let opts = CrossEntropyOptions { label_smoothing: 1.5, ..Default::default() };
        assert_eq!(
            cross_entropy(x.view(), y.view(), &opts).unwrap_err().to_string(),
            "cross_entropy: invalid label_smoothing = 1.5: label_smoothing must be between 0.0 and 1.0"
        );
    }

    #[test]
    fn probs_reject_non_negative_ignore_index() {
        let x = array![[1.0f64, 2.0]];
        let opts = CrossEntropyOptions { ignore_index: 0, ..Default::default() };
        let e = cross_entropy_probs(x.view(), x.view(), &opts).unwrap_err();
        assert!(e.to_string().contains("ignore_index is not supported for floating point target"), "{e}");
        let opts = CrossEntropyOptions { ignore_index: -1, ..Default::default() };
        assert!(cross_entropy_probs(x.view(), x.view(), &opts).is_ok());
    }

    #[test]
    fn one_d_input_with_shape_1_target() {
        let x = array![1.0f64, 2.0, 3.0];
        let opts = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
        let l = cross_entropy(x.view(), array![2i64].view(), &opts).unwrap();
        assert_eq!(l.elementwise().unwrap().shape(), &[] as &[usize]);
        // torch with label_smoothing > 0: "output with shape [] doesn't match the broadcast shape [1]"
        let opts = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
        assert!(matches!(
            cross_entropy(x.view(), array![2i64].view(), &opts).unwrap_err(),
            Error::ShapeMismatch { .. }
        ));
        assert!(cross_entropy(x.view(), ndarray::arr0(2i64).view(), &opts).is_ok());
    }

    #[test]
    fn empty_class_dimension() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[2, 0]));
        let y = array![-100i64, -100];
        let (l, g) = cross_entropy_with_grad(x.view(), y.view(), &CrossEntropyOptions::default()).unwrap();
        assert!(l.scalar().unwrap().is_nan());
        assert_eq!(g.shape(), &[2, 0]);
        let e =
            cross_entropy(x.view(), array![0i64, -100].view(), &CrossEntropyOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "cross_entropy: target 0 at [0] is out of range for 0 classes");
        let (l, g) =
            cross_entropy_probs_with_grad(x.view(), x.view(), &CrossEntropyOptions::default()).unwrap();
        assert!(l.scalar().unwrap().is_nan());
        assert_eq!(g.shape(), &[2, 0]);
    }
}
