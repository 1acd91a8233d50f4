//! `cross_entropy_probs`: cross-entropy against probability targets of the input's shape (PyTorch's
//! soft-label `F.cross_entropy`), with label smoothing, class weights and the target gradient.

use super::*;

/// What a probability-target pass computes.
#[derive(Clone, Copy)]
pub(crate) struct ProbsWant<'g, 'a, T> {
    loss: bool,
    grad_input: Option<&'g GradOutput<'a, T>>,
    grad_target: Option<&'g GradOutput<'a, T>>,
}

pub(crate) type ProbsOut<T> = (Option<Loss<T>>, Option<ArrayD<T>>, Option<ArrayD<T>>);

/// The validated options of a probability-target cross-entropy.
pub(crate) struct ProbsSetup<A> {
    reduction: Reduction,
    eps: f64,
    layout: ClassLayout,
    weight: Option<Vec<A>>,
    out_shape: Vec<usize>,
}

pub(crate) fn prepare_probs<T: Element>(
    op: &'static str,
    shape: &[usize],
    target_shape: &[usize],
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<ProbsSetup<T::Acc>> {
    let reduction = opts.reduction.reject_batchmean(op)?;
    let eps = check_label_smoothing(op, opts.label_smoothing)?;
    if opts.ignore_index >= 0 {
        return Err(Error::invalid_option(
            op,
            "ignore_index",
            opts.ignore_index,
            "ignore_index is not supported for floating point target (use a negative value)",
        ));
    }
    let layout = ClassLayout::of(op, shape)?;
    check_same_shape(op, "input", shape, "target", target_shape)?;
    let weight = check_class_weight(op, shape, opts.weight.as_ref(), layout.classes)?;
    let out_shape = layout.row_shape(shape);
    Ok(ProbsSetup { reduction, eps, layout, weight, out_shape })
}

/// Loss and/or gradients of probability-target cross-entropy, one log-softmax per row.
///
/// PyTorch: `t' = t·(1−ε) + ε/C` (ε > 0), `X = lsm·t'·w`, loss `−X.sum(1)` (`none`), `−ΣX` (`sum`),
/// `−ΣX / (numel/C)` (`mean`, NaN when empty). Gradients by autograd: `c = −g/M` (or `−g`),
/// `G_lsm = (c·w)·t'`, `G_t = (c·w)·lsm·(1−ε)`.
#[inline(never)]
pub(crate) fn ce_probs_core<T: Element>(
    op: &'static str,
    input: ArrayViewD<'_, T>,
    target: ArrayViewD<'_, T>,
    opts: &CrossEntropyOptions<'_, T>,
    want: ProbsWant<'_, '_, T>,
) -> Result<ProbsOut<T>> {
    let ProbsSetup { reduction, eps, layout, weight, out_shape } =
        prepare_probs(op, input.shape(), target.shape(), opts)?;
    // The number of rows (`[2^40, 0, 2^40]` has none to store but too many to count).
    let rows = checked_numel(op, "output", &out_shape)?;
    let up_x = match want.grad_input {
        Some(g) => Some(Upstream::read(op, reduction, &out_shape, g)?),
        None => None,
    };
    let up_t = match want.grad_target {
        Some(g) => Some(Upstream::read(op, reduction, &out_shape, g)?),
        None => None,
    };

    if want.grad_target.is_none()
        && let Some((loss, grad)) = fast::probs::<T>(
            &input,
            &target,
            &layout,
            weight.as_deref(),
            &out_shape,
            reduction,
            eps,
            want.loss,
            up_x.as_ref(),
        )?
    {
        return Ok((loss, grad, None));
    }
    let classes = layout.classes;
    let x = row_major(&input);
    let t = row_major(&target);
    let zero = T::Acc::zero();
    let smoothing = eps > 0.0;
    let keep = T::Acc::c(1.0 - eps);
    let eps_c = T::Acc::c(eps / classes as f64);
    let m_acc = T::Acc::c(rows as f64);
    let w = |c: usize| weight.as_ref().and_then(|w| w.get(c).copied()).unwrap_or_else(T::Acc::one);
    let none = reduction == Reduction::None;

    // Row scratch; none for an empty input (whose rows are empty, however many classes it names).
    let width = if x.is_empty() { 0 } else { classes };
    let mut xs = vec![zero; width];
    let mut ts = vec![zero; width];
    let mut lsm = vec![zero; width];
    let mut g_lsm = vec![zero; width];
    let mut g_row = vec![zero; width];
    let mut per_row = try_vec(op, "output", if want.loss && none { rows } else { 0 })?;
    if x.is_empty() && want.loss && none {
        // Every row is empty (or there is none): each loss is −0 (the negated empty sum).
        per_row.resize(rows, -zero);
    }
    // An empty input has only empty rows: nothing to compute and no gradient, so none is visited.
    let visit = if x.is_empty() { 0 } else { rows };
    let mut total = 0f64;
    let mut grad_x = up_x.as_ref().map(|_| vec![T::from_acc(zero); x.len()]);
    let mut grad_t = up_t.as_ref().map(|_| vec![T::from_acc(zero); x.len()]);
    // Upstream on the per-element products X: −g/M for mean, −g otherwise.
    let scale = |g: T::Acc| if reduction == Reduction::Mean { -(g / m_acc) } else { -g };

    for r in 0..visit {
        gather(&x, r, &layout, &mut xs);
        gather(&t, r, &layout, &mut ts);
        row_log_softmax(&xs, &mut lsm);
        if smoothing {
            for v in ts.iter_mut() {
                *v = *v * keep + eps_c;
            }
        }
        if want.loss {
            let mut s = 0f64;
            for (c, (&l, &tv)) in lsm.iter().zip(&ts).enumerate() {
                s += match &weight {
                    Some(_) => (l * tv * w(c)).f64(),
                    None => (l * tv).f64(),
                };
            }
            if none {
                per_row.push(-T::Acc::c(s));
            } else {
                total += s;
            }
        }
        if let (Some(up), Some(grad)) = (&up_x, grad_x.as_mut()) {
            let c0 = scale(up.at(r));
            for (c, (slot, &tv)) in g_lsm.iter_mut().zip(&ts).enumerate() {
                *slot = match &weight {
                    Some(_) => c0 * w(c) * tv,
                    None => c0 * tv,
                };
            }
            row_log_softmax_backward(&lsm, &g_lsm, &mut g_row);
            scatter(grad, r, &layout, &g_row);
        }
        if let (Some(up), Some(grad)) = (&up_t, grad_t.as_mut()) {
            let c0 = scale(up.at(r));
            for (c, (slot, &l)) in g_row.iter_mut().zip(&lsm).enumerate() {
                let v = match &weight {
                    Some(_) => c0 * w(c) * l,
                    None => c0 * l,
                };
                *slot = if smoothing { v * keep } else { v };
            }
            scatter(grad, r, &layout, &g_row);
        }
    }

    let loss = if want.loss {
        let reduced = match reduction {
            Reduction::Mean if x.is_empty() => f64::NAN,
            Reduction::Mean => -total / rows as f64,
            _ => -total,
        };
        Some(pack_loss::<T>(op, reduction, &out_shape, per_row, T::Acc::c(reduced))?)
    } else {
        None
    };
    let grad_x = grad_x.map(|g| array_from_vec(op, input.shape(), g)).transpose()?;
    let grad_t = grad_t.map(|g| array_from_vec(op, input.shape(), g)).transpose()?;
    Ok((loss, grad_x, grad_t))
}

/// [`ce_probs_core`] for the loss and the input gradient only.
fn probs_core<T: Element>(
    call: ClassCall<'_, '_, T, T, CrossEntropyOptions<'_, T>>,
) -> Result<LossAndGrad<T>> {
    let ClassCall { op, input, target, opts, want_loss: loss, grad_output: grad_input } = call;
    let (loss, grad, _) =
        ce_probs_core(op, input, target, opts, ProbsWant { loss, grad_input, grad_target: None })?;
    Ok((loss, grad))
}

super::super::class_api! {
    core = probs_core, target = T, options = CrossEntropyOptions<'_, T>, op = "cross_entropy", backward_op = "cross_entropy_backward";
    /// Cross-entropy from logits with probability targets of the input's shape.
    ///
    /// # Formula
    ///
    /// With `lsm = log_softmax(x)` over dimension 1 and, when ε > 0, `t ← t·(1−ε) + ε/C`:
    /// `l_i = −Σ_c w_c·t[i, c]·lsm[i, c]` per row; `none` gives the `l_i` (the input shape without
    /// dimension 1), `sum` gives `Σ l_i`, and `mean` gives `Σ l_i / (numel/C)`: the number of rows,
    /// **not** the summed weights. An empty input gives NaN for `mean`.
    ///
    /// # Gradient
    ///
    /// `∂/∂x = (p·Σ_c w_c t_c − w⊙t)·g/M`, `∂/∂t = −w⊙lsm·(1−ε)·g/M` with `M = numel/C` for `mean`
    /// (1 otherwise); see [`cross_entropy_probs_backward`] and [`cross_entropy_probs_backward_target`].
    ///
    /// # PyTorch
    ///
    /// `torch.nn.functional.cross_entropy(input, target, weight, reduction=..., label_smoothing=...)`
    /// with a floating-point `target` of the input's shape.
    ///
    /// # Errors
    ///
    /// - [`Error::ShapeMismatch`] naming both shapes when target and input differ, or the weight does
    ///   not have `C` entries;
    /// - [`Error::InvalidOption`] for `ignore_index >= 0` ("ignore_index is not supported for floating
    ///   point target"), `label_smoothing` above 1 (negative or NaN values disable smoothing, as in PyTorch), and `Reduction::BatchMean`.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, cross_entropy_probs, ndarray::array};
    /// // torch: F.cross_entropy(tensor([[1., 2., 3.]], dtype=torch.float64),
    /// //                        tensor([[0.2, 0.3, 0.5]], dtype=torch.float64))
    /// let x = array![[1.0f64, 2.0, 3.0]];
    /// let t = array![[0.2f64, 0.3, 0.5]];
    /// let loss = cross_entropy_probs(x.view(), t.view(), &CrossEntropyOptions::default()).unwrap();
    /// assert!((loss.scalar().unwrap() - 1.1076059644443805).abs() < 1e-14);
    /// ```
    fn cross_entropy_probs;
    /// Gradient of [`cross_entropy_probs`] with respect to `input`.
    ///
    /// # Formula
    ///
    /// Autograd through `log_softmax`: `G[i, c] = (c_i·w_c)·t'[i, c]` with `c_i = −g/M` (`mean`,
    /// `M = numel/C`), `−g` (`sum`) or `−g_i` (`none`), then `grad = G − exp(lsm)·Σ_c G`, i.e.
    /// `(p·Σ_c w_c t'_c − w⊙t')·g/M`.
    ///
    /// # PyTorch
    ///
    /// `x.grad` after `F.cross_entropy(x, t, ...).backward(g)` with a probability target.
    ///
    /// # Errors
    ///
    /// As [`cross_entropy_probs`], plus [`Error::ShapeMismatch`] for a wrong `grad_output` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, GradOutput, cross_entropy_probs_backward, ndarray::array};
    /// let x = array![[0.0f64, 0.0]];
    /// let t = array![[1.0f64, 0.0]];
    /// let g = cross_entropy_probs_backward(x.view(), t.view(), &CrossEntropyOptions::default(), &GradOutput::one())
    ///     .unwrap();
    /// // p − t
    /// assert_eq!(g, array![[-0.5, 0.5]].into_dyn());
    /// ```
    fn cross_entropy_probs_backward;
    /// Loss and input gradient (upstream gradient 1, all ones for `none`) in one pass: one
    /// log-softmax per row feeds both.
    ///
    /// # Formula
    ///
    /// `(cross_entropy_probs(x, t), cross_entropy_probs_backward(x, t, 1))`; see
    /// [`cross_entropy_probs`].
    ///
    /// # PyTorch
    ///
    /// `loss = F.cross_entropy(x, t, ...); loss.backward(torch.ones_like(loss)); (loss, x.grad)`.
    ///
    /// # Errors
    ///
    /// As [`cross_entropy_probs`].
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, Reduction, cross_entropy_probs_with_grad, ndarray::array};
    /// let x = array![[0.0f64, 0.0], [0.0, 0.0]];
    /// let t = array![[1.0f64, 0.0], [0.5, 0.5]];
    /// let opts = CrossEntropyOptions { reduction: Reduction::Sum, ..Default::default() };
    /// let (loss, grad) = cross_entropy_probs_with_grad(x.view(), t.view(), &opts).unwrap();
    /// assert!((loss.scalar().unwrap() - 2.0 * 2f64.ln()).abs() < 1e-15);
    /// assert_eq!(grad, array![[-0.5, 0.5], [0.0, 0.0]].into_dyn());
    /// ```
    fn cross_entropy_probs_with_grad;
    /// [`cross_entropy_probs_with_grad`] that writes the input gradient into the logits' own buffer
    /// (see [`cross_entropy_with_grad_in_place`]).
    ///
    /// # Formula
    ///
    /// Returns `cross_entropy_probs(x, t)` and leaves `∂loss/∂x = (p·Σ_c w_c t_c − w⊙t)·g/M` in `input`,
    /// bit for bit what [`cross_entropy_probs_with_grad`] returns.
    ///
    /// # PyTorch
    ///
    /// `loss = F.cross_entropy(x, t, ...); loss.backward(); x.data.copy_(x.grad)` with a probability
    /// target `t`.
    ///
    /// # Errors
    ///
    /// As [`cross_entropy_probs`]; every check happens before anything is written.
    ///
    /// # Example
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, cross_entropy_probs_with_grad_in_place, ndarray::array};
    /// let mut x = array![[1.0f32, 2.0, 3.0]];
    /// let t = array![[0.5f32, 0.0, 0.5]];
    /// let loss = cross_entropy_probs_with_grad_in_place(x.view_mut(), t.view(), &Default::default()).unwrap();
    /// // torch: F.cross_entropy(tensor([[1., 2., 3.]]), tensor([[.5, 0., .5]])) = 1.4076
    /// assert!((loss.scalar().unwrap() - 1.407_606).abs() < 1e-6);
    /// assert!((x[[0, 0]] - (0.090_030_57 - 0.5)).abs() < 1e-6);
    /// ```
    fn cross_entropy_probs_with_grad_in_place via |input, target, opts| {
        const OP: &str = "cross_entropy";
        let ProbsSetup { reduction, eps, layout, weight, out_shape } =
            prepare_probs(OP, input.shape(), target.shape(), opts)?;
        checked_numel(OP, "output", &out_shape)?;
        fast::probs_in_place(input, target, &layout, weight.as_deref(), &out_shape, reduction, eps)
    }
}

/// Gradient of [`cross_entropy_probs`] with respect to `target`.
///
/// # Formula
///
/// `grad_t[i, c] = (c_i·w_c)·lsm[i, c]·(1−ε)` with `c_i = −g/M` (`mean`, `M = numel/C`), `−g`
/// (`sum`) or `−g_i` (`none`); the `(1−ε)` factor only when ε > 0. Where `lsm = −inf` the
/// gradient is `+inf` (times the sign of `g·w_c`).
///
/// # PyTorch
///
/// `t.grad` after `F.cross_entropy(x, t, ...).backward(g)` with `t.requires_grad_()`.
///
/// # Errors
///
/// As [`cross_entropy_probs`], plus [`Error::ShapeMismatch`] for a wrong `grad_output` shape.
///
/// # Example
///
/// ```
/// use infoloss::{CrossEntropyOptions, GradOutput, cross_entropy_probs_backward_target, ndarray::array};
/// let x = array![[0.0f64, 0.0]];
/// let t = array![[1.0f64, 0.0]];
/// let g = cross_entropy_probs_backward_target(x.view(), t.view(), &CrossEntropyOptions::default(), &GradOutput::one())
///     .unwrap();
/// // −log_softmax(x) = ln 2
/// assert!((g[[0, 0]] - 2f64.ln()).abs() < 1e-15 && (g[[0, 1]] - 2f64.ln()).abs() < 1e-15);
/// ```
pub fn cross_entropy_probs_backward_target<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &CrossEntropyOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<ArrayD<T>> {
    const OP: &str = "cross_entropy_backward_target";
    let want = ProbsWant { loss: false, grad_input: None, grad_target: Some(grad_output) };
    let (_, _, g) = ce_probs_core(OP, input.into_dyn(), target.into_dyn(), opts, want)?;
    g.ok_or_else(|| Error::invalid_option(OP, "reduction", opts.reduction, "no gradient computed"))
}

/// Loss, input gradient and target gradient (upstream gradient 1, all ones for `none`) in one
/// pass over the rows.
///
/// # Formula
///
/// `(cross_entropy_probs(x, t), ∂/∂x, ∂/∂t)`; see [`cross_entropy_probs_backward`] and
/// [`cross_entropy_probs_backward_target`].
///
/// # PyTorch
///
/// `loss = F.cross_entropy(x, t, ...); loss.backward(torch.ones_like(loss)); (loss, x.grad, t.grad)`.
///
/// # Errors
///
/// As [`cross_entropy_probs`].
///
/// # Example
///
/// ```
/// use infoloss::{CrossEntropyOptions, ndarray::array};
/// use infoloss::cross_entropy::cross_entropy_probs_with_grads;
/// let x = array![[0.0f64, 0.0]];
/// let t = array![[1.0f64, 0.0]];
/// let (loss, gx, gt) = cross_entropy_probs_with_grads(x.view(), t.view(), &CrossEntropyOptions::default()).unwrap();
/// assert!((loss.scalar().unwrap() - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(gx, array![[-0.5, 0.5]].into_dyn());
/// assert!((gt[[0, 1]] - 2f64.ln()).abs() < 1e-15);
/// ```
pub fn cross_entropy_probs_with_grads<T: Element, D: Dimension, D2: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D2>,
    opts: &CrossEntropyOptions<'_, T>,
) -> Result<(Loss<T>, ArrayD<T>, ArrayD<T>)> {
    const OP: &str = "cross_entropy";
    let one = GradOutput::one();
    let want = ProbsWant { loss: true, grad_input: Some(&one), grad_target: Some(&one) };
    match ce_probs_core(OP, input.into_dyn(), target.into_dyn(), opts, want)? {
        (Some(l), Some(gx), Some(gt)) => Ok((l, gx, gt)),
        _ => Err(Error::invalid_option(OP, "reduction", opts.reduction, "no loss computed")),
    }
}
