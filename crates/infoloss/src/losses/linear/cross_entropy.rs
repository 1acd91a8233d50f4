//! `linear_cross_entropy`: the logits computed chunk by chunk, each chunk's cross-entropy rows (one `exp`
//! per element) written over it as the gradient, then the two gradient products.

use super::*;

/// [`ce_row_in_place`](crate::losses::ce_extras) with one `exp` per element (SIMD for f32): pass 1 the max (and
/// argmax, `Σ w·x` for smoothing), pass 2 `e = exp(x̃ − m)` in place with its f64 sum `s`, pass 3 the
/// gradient `e·(a_z − ΣG)/s + G` from cache, then the softcap chain. `ΣG = w_y·a − b·Σw` in closed form.
/// Agrees with the reference row to a few ulps (`p = e/s` instead of `exp(lsm)`).
pub(crate) fn ce_row_fast<T: LinearFloat>(
    x: &mut [T],
    cls: Option<usize>,
    cfg: &CeRowConfig<T>,
    w_sum: f64,
    g: T,
    tanh_buf: &mut Vec<T>,
) -> CeRowOut<T> {
    let zero = T::zero();
    let mut out = CeRowOut { lse: T::nan(), ..Default::default() };
    if cls.is_none() && !cfg.want_lse {
        fill_ignored_grad(x, cfg.softcap);
        return out;
    }
    if let Some(c) = cfg.softcap {
        softcap_row(x, c, tanh_buf);
    }
    let m = T::row_max_fast(x);
    if cfg.want_acc && cls.is_some() {
        out.correct = row_argmax(x) == cls;
    }
    let x_y = cls.and_then(|y| x.get(y).copied()).unwrap_or(zero);
    let wx = if cfg.smoothing && cls.is_some() {
        match &cfg.weight {
            Some(w) => x.iter().zip(w).map(|(&v, &wk)| (v * wk).f64()).sum::<f64>(),
            None => x.iter().map(|v| v.f64()).sum::<f64>(),
        }
    } else {
        0.0
    };
    let inf_lse = if m.is_infinite() { Some(row_logsumexp(x)) } else { None };
    // (the capped row is about to be overwritten by its exponentials)
    let ignored_nan = cls.is_none() && ignored_grad_is_nan(x, false);
    let s = T::exp_shift_sum(x, m);
    let log_sum = T::c(s.ln());
    let lse = inf_lse.unwrap_or(log_sum + m);
    out.lse = lse;
    let Some(y) = cls else {
        x.fill(if ignored_nan { T::nan() } else { zero });
        return out;
    };
    let w_y = cfg.w(y);
    out.nll = -((x_y - m) - log_sum) * w_y;
    if let Some(sc) = cfg.z_scale {
        out.z = sc * (lse * lse);
    }
    if cfg.smoothing {
        // Σ_k w_k·lsm_k = Σ w_k x_k − (m + ln s)·Σ w_k
        out.smooth = -T::c(wx - (m.f64() + log_sum.f64()) * w_sum);
    }
    let (a, b, a_z) = grad_coefs(cfg, g, lse);
    let sum_g = if cfg.smoothing { (w_y * a).f64() - b.f64() * w_sum } else { (w_y * a).f64() };
    let scale = T::c(1.0 / s) * (a_z.unwrap_or(zero) - T::c(sum_g));
    match (cfg.smoothing, &cfg.weight) {
        (false, _) => x.iter_mut().for_each(|v| *v *= scale),
        (true, None) => x.iter_mut().for_each(|v| *v = *v * scale - b),
        (true, Some(w)) => x.iter_mut().zip(w).for_each(|(v, &wk)| *v = *v * scale - b * wk),
    }
    if let Some(v) = x.get_mut(y) {
        *v += w_y * a;
    }
    if let Some(c) = cfg.softcap {
        for (v, &t) in x.iter_mut().zip(tanh_buf.iter()) {
            *v = ((*v * c) * (T::one() - t * t)) / c;
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) fn linear_ce_core<T: LinearFloat>(
    op: &'static str,
    hidden: ArrayView2<'_, T>,
    weight: ArrayView2<'_, T>,
    bias: Option<ArrayView1<'_, T>>,
    targets: ndarray::ArrayViewD<'_, i64>,
    opts: &LinearCrossEntropyOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<LinearCrossEntropyOutput<T>> {
    let (n, h) = hidden.dim();
    let v = weight.nrows();
    LinearHead { hidden, weight, bias }.check(op, ["hidden", "weight", "bias"])?;
    if targets.shape() != [n] {
        return Err(Error::shape_mismatch(
            op,
            "targets",
            targets.shape(),
            "hidden",
            hidden.shape(),
            format!("are not compatible: targets must have shape [{n}] (one class index per row of hidden)"),
        ));
    }
    if let Some(cw) = &opts.ce.weight {
        if cw.len() != v {
            return Err(Error::shape_mismatch(
                op,
                "class weight",
                cw.shape(),
                "weight",
                weight.shape(),
                format!(
                    "are not compatible: the class weight (ce.weight) must have one entry per class ({v} classes)"
                ),
            ));
        }
    }
    if opts.chunk_size == Some(0) {
        return Err(Error::invalid_option(op, "chunk_size", 0, "must be at least 1"));
    }
    checked_numel(op, "logits", &[n, v])?;
    let tg = index_targets::<T>(op, &[n, v], &targets, opts.ce.weight.as_ref(), opts.ce.ignore_index)?;
    let cfg: CeRowConfig<T> = row_config(op, &opts.ce, &tg, v)?;
    let up = Upstream::read(op, opts.ce.reduction, &[n], grad_output)?;

    let ws = linear_cross_entropy_workspace(n, h, v, bias.is_some(), opts);
    let cr = ws.chunk_rows;
    let xs = contiguous(&hidden);
    let wv = contiguous(&weight);
    let bias_v: Option<Vec<T>> = bias.map(|b| b.iter().copied().collect());
    let zero = T::zero();
    let mut grad_hidden = vec![zero; checked_numel(op, "grad_hidden", &[n, h])?];
    let mut grad_weight = vec![zero; checked_numel(op, "grad_weight", &[v, h])?];
    let mut bias_acc: Option<Vec<f64>> = bias_v.as_ref().map(|_| vec![0f64; v]);
    let mut buf = vec![zero; checked_numel(op, "logits chunk", &[cr.min(n), v])?];
    let mut outs: Vec<CeRowOut<T>> = vec![CeRowOut { lse: T::nan(), ..Default::default() }; n];
    let need_all_rows = cfg.want_lse;
    let w_sum: f64 = match &cfg.weight {
        Some(w) => w.iter().map(|v| v.f64()).sum(),
        None => v as f64,
    };

    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + cr).min(n);
        let rows = r1 - r0;
        let classes = tg.class.get(r0..r1).unwrap_or(&[]);
        if !need_all_rows && classes.iter().all(Option::is_none) {
            // nothing to compute: zero loss, zero gradient (grad_hidden is already 0)
            r0 = r1;
            continue;
        }
        let chunk = Chunk { x: xs.get(r0 * h..r1 * h).unwrap_or(&[]), rows };
        let g = buf.get_mut(..rows * v).unwrap_or(&mut []);
        logits_gemm(op, g, &chunk, &wv, v, h)?;
        let row_outs = outs.get_mut(r0..r1).unwrap_or(&mut []);
        let row_fn = |tb: &mut Vec<T>, (i, (row, o)): (usize, (&mut [T], &mut CeRowOut<T>))| {
            if let Some(b) = &bias_v {
                add_bias_row(row, b);
            }
            let cls = classes.get(i).copied().flatten();
            *o = ce_row_fast(row, cls, &cfg, w_sum, up.at(r0 + i), tb);
        };
        if v == 0 {
            let mut tb = Vec::new();
            for (i, o) in row_outs.iter_mut().enumerate() {
                row_fn(&mut tb, (i, (&mut [], o)));
            }
        } else {
            g.par_chunks_mut(v)
                .zip(row_outs.par_iter_mut())
                .enumerate()
                .for_each_init(Vec::new, |tb, item| row_fn(tb, item));
        }
        let gx = grad_hidden.get_mut(r0 * h..r1 * h).unwrap_or(&mut []);
        backward_gemms(op, g, &chunk, &wv, gx, &mut grad_weight, v, h)?;
        if let Some(acc) = bias_acc.as_mut() {
            add_column_sums(acc, g, rows, v);
        }
        r0 = r1;
    }
    drop(buf);
    let red = reduce_rows(op, &opts.ce, &cfg, &tg, &outs)?;
    Ok(LinearCrossEntropyOutput {
        loss: red.loss,
        z_loss: red.z_loss,
        lse: red.lse,
        token_accuracy: red.token_accuracy,
        grad_hidden: to_array2(op, "grad_hidden", (n, h), grad_hidden)?,
        grad_weight: to_array2(op, "grad_weight", (v, h), grad_weight)?,
        grad_bias: bias_acc.map(|a| Array1::from_iter(a.into_iter().map(T::c))),
    })
}

/// Fused linear layer + cross-entropy: `loss = CE(hidden·weightᵀ + bias, targets)` with every option of
/// [`cross_entropy_extras`](crate::losses::ce_extras::cross_entropy_extras), and its gradients with respect to
/// `hidden (N, H)`, `weight (V, H)` and `bias (V,)` for an upstream gradient of 1 — computed chunk by
/// chunk so that at most one `chunk_rows × V` block of logits exists (see the [module docs](crate::linear)).
///
/// # Formula
///
/// `L = X·Wᵀ + b` (never stored whole); `loss = CE(L̃, y) + Z` as in
/// [`cross_entropy_extras`](crate::losses::ce_extras::cross_entropy_extras) (`L̃` = softcapped `L`), reduced over
/// all `N` rows (`Mean` divides the CE by the summed target weight `W` of all rows and the z-loss by the
/// number `n` of non-ignored rows).
///
/// # Gradient
///
/// With `G = ∂loss/∂L` (the cross-entropy-with-extras gradient of every row):
/// `∂/∂X = G·W`, `∂/∂W = Gᵀ·X`, `∂/∂b = Σ_rows G`.
///
/// # PyTorch
///
/// ```text
/// logits = F.linear(hidden, weight, bias)
/// loss = F.cross_entropy(logits, targets, weight=w, ignore_index=ii, reduction=red, label_smoothing=eps)
/// loss.backward()      # hidden.grad, weight.grad, bias.grad
/// ```
///
/// — also `F.linear_cross_entropy(hidden, weight, targets, linear_bias=bias, weight=w, ...)` in torch
/// 2.15 — plus the z-loss/softcap terms of [`cross_entropy_extras`](crate::losses::ce_extras::cross_entropy_extras).
///
/// # Errors
///
/// [`Error::BadRank`] unless `hidden`, `weight` are 2-D and `targets` 1-D; [`Error::ShapeMismatch`]
/// naming both shapes (different `H`, a bias or class weight without `V` entries, targets not `(N,)`);
/// [`Error::TargetOutOfRange`]; [`Error::InvalidOption`] for `chunk_size = Some(0)` and the
/// cross-entropy options [`cross_entropy_extras`](crate::losses::ce_extras::cross_entropy_extras) rejects.
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy};
/// use infoloss::ndarray::array;
/// let x = array![[1.0f64, 0.5], [-0.5, 2.0], [0.0, 1.0]];
/// let w = array![[0.2f64, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]];
/// let b = array![0.0f64, 0.1, -0.1, 0.2];
/// let y = array![1i64, 2, -100];
/// let opts = LinearCrossEntropyOptions { chunk_size: Some(2), ..Default::default() };
/// let out = linear_cross_entropy(x.view(), w.view(), Some(b.view()), y.view(), &opts)?;
/// // torch (float64): F.cross_entropy(F.linear(x, w, b), y) and autograd
/// assert!((out.loss.scalar().unwrap() - 0.8015280200863171).abs() < 1e-12);
/// assert!((out.grad_hidden[[1, 1]] - (-0.1377860562261382)).abs() < 1e-12);
/// assert!((out.grad_weight[[2, 0]] - 0.19657966239893207).abs() < 1e-12);
/// assert!((out.grad_bias.unwrap()[3] - 0.20779042165764278).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn linear_cross_entropy<T: LinearFloat, D1: Dimension, D2: Dimension, D3: Dimension>(
    hidden: ArrayView<'_, T, D1>,
    weight: ArrayView<'_, T, D2>,
    bias: Option<ArrayView1<'_, T>>,
    targets: ArrayView<'_, i64, D3>,
    opts: &LinearCrossEntropyOptions<'_, T>,
) -> Result<LinearCrossEntropyOutput<T>> {
    linear_cross_entropy_backward(hidden, weight, bias, targets, opts, &GradOutput::one())
}

/// [`linear_cross_entropy`] for an upstream gradient `grad_output` (a scalar for `Mean`/`Sum`; an `(N,)`
/// array, or a scalar for every row, for `None`): the loss fields as in [`linear_cross_entropy`], the
/// gradients multiplied by the upstream gradient (per row for `None`).
///
/// # Formula
///
/// `∂/∂X = (g⊙G)·W`, `∂/∂W = (g⊙G)ᵀ·X`, `∂/∂b = Σ_rows g⊙G` with `g` the upstream gradient of each row.
///
/// # PyTorch
///
/// `loss.backward(g)` on the expression of [`linear_cross_entropy`].
///
/// # Errors
///
/// As [`linear_cross_entropy`], plus [`Error::ShapeMismatch`] for a `grad_output` of the wrong shape.
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy_backward};
/// use infoloss::{GradOutput, Reduction, ndarray::array};
/// let x = array![[1.0f64, 0.0], [0.0, 1.0]];
/// let w = array![[0.0f64, 0.0], [0.0, 0.0]];
/// let mut opts = LinearCrossEntropyOptions::default();
/// opts.ce.reduction = Reduction::None;
/// let g = array![2.0f64, 0.0];
/// let out = linear_cross_entropy_backward(x.view(), w.view(), None, array![0i64, 1].view(), &opts,
///     &GradOutput::Array(g.view().into_dyn()))?;
/// // row 0: G = 2·(softmax − e_0) = [-1, 1]; ∂/∂W = Gᵀ·x_0
/// assert_eq!(out.grad_weight, array![[-1.0, 0.0], [1.0, 0.0]]);
/// assert_eq!(out.loss.elementwise().unwrap()[[1]], 2f64.ln());
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn linear_cross_entropy_backward<T: LinearFloat, D1: Dimension, D2: Dimension, D3: Dimension>(
    hidden: ArrayView<'_, T, D1>,
    weight: ArrayView<'_, T, D2>,
    bias: Option<ArrayView1<'_, T>>,
    targets: ArrayView<'_, i64, D3>,
    opts: &LinearCrossEntropyOptions<'_, T>,
    grad_output: &GradOutput<'_, T>,
) -> Result<LinearCrossEntropyOutput<T>> {
    let hidden = as_2d(OP_CE, "hidden", hidden)?;
    let weight = as_2d(OP_CE, "weight", weight)?;
    let tshape = targets.shape().to_vec();
    let targets = targets.into_dyn();
    if tshape.len() != 1 {
        return Err(Error::bad_rank(OP_CE, "targets", &tshape, "1 dimension (N,)"));
    }
    linear_ce_core(OP_CE, hidden, weight, bias, targets, opts, grad_output)
}
