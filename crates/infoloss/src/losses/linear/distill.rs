//! `linear_distill`: student and teacher logits computed chunk by chunk, each chunk distilled in place
//! (dense or against the teacher's top-k), then the gradient products of the student head.

use super::*;
use crate::base::shape::ensure_shapes;

pub use crate::options::LinearDistillOptions;

/// One side of [`linear_distill_backward`]: a linear head `logits = hidden·weightᵀ + bias` given by its
/// input `hidden (N, H)`, `weight (V, H)` and optional `bias (V,)` (as `F.linear(hidden, weight, bias)`).
///
/// ```
/// use infoloss::linear::LinearHead;
/// use infoloss::ndarray::array;
/// let (x, w, b) = (array![[1.0f32, 2.0]], array![[0.5f32, 0.0], [0.0, 1.0]], array![0.1f32, 0.2]);
/// let head = LinearHead { hidden: x.view(), weight: w.view(), bias: Some(b.view()) };
/// assert_eq!((head.hidden.nrows(), head.weight.nrows()), (1, 2)); // N = 1, V = 2
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LinearHead<'a, T> {
    /// `(N, H)` hidden states.
    pub hidden: ArrayView2<'a, T>,
    /// `(V, H)` weight.
    pub weight: ArrayView2<'a, T>,
    /// `(V,)` bias, if any.
    pub bias: Option<ArrayView1<'a, T>>,
}

/// A sparse top-k teacher for [`linear_distill_backward`]: per row, only the teacher's `k` largest
/// logits are kept, as [`distill_topk`](crate::losses::distill::distill_topk) takes them.
///
/// Per row `r` of the teacher logits `t = Xt·Wtᵀ + bt`: `indices_r` = the `k` classes with the largest
/// `t_r` (sorted descending; a NaN counts as the largest, as in `torch.topk`; exact ties go to the lower
/// class index, where `torch.topk` may pick another of the tied classes), `logprobs_r = log_softmax(t_r / T)[indices_r]` (computed in f64 and rounded to the element
/// type), then the row loss is [`distill_topk`](crate::losses::distill::distill_topk)'s with `add_tail` (the tail
/// bucket `log(1 − Σ_j q_j)` for the mass outside the top-k). `k` must be at most `V`; with `k = V` and no
/// tail the loss equals the dense one.
///
/// ```
/// use infoloss::linear::TeacherTopK;
/// let t = TeacherTopK { k: 64, add_tail: true };
/// assert!(t.k == 64 && t.add_tail);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeacherTopK {
    /// Number of teacher classes kept per row.
    pub k: usize,
    /// Add the tail bucket (see [`SparseTeacher`]).
    pub add_tail: bool,
}

/// What [`linear_distill`] and [`linear_distill_backward`] return: the loss and its gradients with
/// respect to the student's hidden states, head weight and bias (the teacher gets none).
///
/// ```
/// use infoloss::linear::{LinearDistillOptions, linear_distill};
/// use infoloss::ndarray::array;
/// // identical student and teacher: KL = 0 and a zero gradient
/// let x = array![[1.0f32, -0.5], [0.25, 2.0]];
/// let w = array![[0.5f32, 0.1], [-0.3, 0.2], [0.0, 1.0]];
/// let out = linear_distill(x.view(), w.view(), x.view(), w.view(), None, &LinearDistillOptions::default())?;
/// assert!(out.loss.scalar().unwrap().abs() < 1e-7);
/// assert!(out.grad_weight.iter().all(|g| g.abs() < 1e-7));
/// assert_eq!(out.grad_hidden.shape(), &[2, 2]);
/// assert_eq!(out.grad_bias, None); // no student bias
/// # Ok::<(), infoloss::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinearDistillOutput<T> {
    /// The distillation loss (scalar, or `(N,)` for `Reduction::None`).
    pub loss: Loss<T>,
    /// `∂loss/∂student_hidden`, `(N, H_s)`.
    pub grad_hidden: Array2<T>,
    /// `∂loss/∂student_weight`, `(V, H_s)`.
    pub grad_weight: Array2<T>,
    /// `∂loss/∂student_bias`, `(V,)`, when the student has a bias.
    pub grad_bias: Option<Array1<T>>,
}

/// The temporary memory [`linear_distill`] needs for `n` rows, student and teacher hidden sizes `hs`,
/// `ht`, `v` classes, on the current rayon pool (no bias, dense teacher; see
/// [`linear_distill_workspace_with`]).
///
/// # Formula
///
/// Two chunks of `chunk_rows·V·size_of::<T>()` (the student logits, which the chunk's gradient
/// overwrites as [`distill_with_grad_in_place`](crate::distill_with_grad_in_place) does, and the teacher logits) + the distillation row
/// scratch (at most `threads · V · (6·8 + size_of::<T>())` bytes: the reference's f64 rows and the copy
/// of the row being overwritten; `f32` heads on the fast path need `threads · V · 8` bytes, plus those
/// f64 rows only in workers that met a row with a non-finite logit) + the per-row losses
/// (`n · size_of::<T>()` for `None`). The automatic chunk has as many rows as
/// [`linear_cross_entropy_workspace`]'s (so twice its logits memory): every chunk repacks both weights
/// inside `gemm` and re-reads the weight gradient, and at N = 2048, H = 1024, V = 32000, f32 a third of
/// the rows (175) cost 1.5–1.6× the four unchunked GEMMs against 1.26× at 525 rows (with a third,
/// separate gradient buffer; measured in the `linear` bench).
///
/// # PyTorch
///
/// None (Liger-Kernel's `LigerFusedLinearJSD` chunks the same way).
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearDistillOptions, linear_distill_workspace};
/// let ws = linear_distill_workspace::<f32>(2048, 1024, 1024, 32000, &Default::default());
/// assert_eq!((ws.chunk_buffers, ws.chunk_rows), (2, 525)); // ⌈64 MiB / (32000·4 B)⌉
/// ```
pub fn linear_distill_workspace<T: LinearFloat>(
    n: usize,
    hs: usize,
    ht: usize,
    v: usize,
    opts: &LinearDistillOptions,
) -> LinearWorkspace {
    linear_distill_workspace_with::<T>(n, hs, ht, v, false, None, opts)
}

/// The temporary memory [`linear_distill_backward`] needs: [`linear_distill_workspace`] plus, with a
/// student bias, the f64 bias-gradient accumulator, and with a top-k teacher, one chunk of top-k indices
/// and log-probabilities and a per-thread selection buffer.
///
/// # Formula
///
/// [`linear_distill_workspace`]'s terms + `8·V` with `has_bias` + with `teacher_topk = Some(k)`:
/// `chunk_rows · k · (8 + size_of::<T>())` ([`LinearWorkspace::teacher_topk_bytes`]) and
/// `threads · V · size_of::<usize>()` more row scratch.
///
/// # PyTorch
///
/// None.
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearDistillOptions, TeacherTopK, linear_distill_workspace_with};
/// let opts = LinearDistillOptions { chunk_size: Some(100), ..Default::default() };
/// let tk = Some(TeacherTopK { k: 64, add_tail: true });
/// let ws = linear_distill_workspace_with::<f32>(2048, 1024, 1024, 32000, true, tk, &opts);
/// assert_eq!(ws.bias_accumulator_bytes, 8 * 32000);
/// assert_eq!(ws.teacher_topk_bytes, 100 * 64 * (8 + 4));
/// ```
pub fn linear_distill_workspace_with<T: LinearFloat>(
    n: usize,
    hs: usize,
    ht: usize,
    v: usize,
    has_bias: bool,
    teacher_topk: Option<TeacherTopK>,
    opts: &LinearDistillOptions,
) -> LinearWorkspace {
    let elem = std::mem::size_of::<T>();
    let select_bytes = if teacher_topk.is_some() { std::mem::size_of::<usize>() } else { 0 };
    let topk_row_bytes = teacher_topk.map_or(0, |t| t.k.min(v).saturating_mul(8 + elem));
    distill_workspace::<T>(n, hs.max(ht), v, has_bias, 2, select_bytes, topk_row_bytes, opts)
}

/// The fused distillation losses' workspace: `buffers` logits chunks, row scratch of
/// `threads·V·(6·8 + size_of::<T>() + select_bytes)`, the per-row losses, the bias accumulator, and
/// `topk_row_bytes` per chunk row of teacher top-k.
#[allow(clippy::too_many_arguments)]
pub(crate) fn distill_workspace<T: LinearFloat>(
    n: usize,
    h: usize,
    v: usize,
    has_bias: bool,
    buffers: usize,
    select_bytes: usize,
    topk_row_bytes: usize,
    opts: &LinearDistillOptions,
) -> LinearWorkspace {
    let elem = std::mem::size_of::<T>();
    let chunk_rows = chunk_rows_for(n, h, v, elem, opts.chunk_size, 1);
    let rows = chunk_rows.min(n);
    let logits_chunk_bytes = rows.saturating_mul(v).saturating_mul(elem);
    let threads = rayon::current_num_threads();
    let row_scratch_bytes = threads.saturating_mul(v).saturating_mul(6 * 8 + elem + select_bytes);
    let per_row_bytes = n.saturating_mul(elem);
    let bias_accumulator_bytes = if has_bias { v.saturating_mul(8) } else { 0 };
    let teacher_topk_bytes = rows.saturating_mul(topk_row_bytes);
    let gemm_packing_bytes = packing_estimate(rows, v, h, elem);
    LinearWorkspace {
        chunk_rows,
        chunk_buffers: buffers,
        logits_chunk_bytes,
        row_scratch_bytes,
        per_row_bytes,
        bias_accumulator_bytes,
        teacher_topk_bytes,
        gemm_packing_bytes,
        total_bytes: logits_chunk_bytes
            .saturating_mul(buffers)
            .saturating_add(row_scratch_bytes)
            .saturating_add(per_row_bytes)
            .saturating_add(bias_accumulator_bytes)
            .saturating_add(teacher_topk_bytes)
            .saturating_add(gemm_packing_bytes),
    }
}

/// Fused linear heads + distillation: student logits `S = Xs·Wsᵀ`, teacher logits `T = Xt·Wtᵀ` (never
/// stored whole), `loss = distill(S, T, labels)` with every option of [`distill`](crate::distill()), and
/// its gradients with respect to the student's hidden states `Xs (N, Hs)` and weight `Ws (V, Hs)`.
/// [`linear_distill_backward`] adds biases, a top-k teacher and an upstream gradient.
///
/// # Formula
///
/// Per chunk of rows, `S_c = Xs_c·Wsᵀ`, `T_c = Xt_c·Wtᵀ`, `(loss_c, G_c) =`
/// [`distill_with_grad`]`(S_c, T_c, labels_c)` with the `BatchMean`/`Mean` divisor fixed to the global
/// one (the `normalizer` option if given, else the number of non-ignored rows of **all** chunks), so
/// `loss = Σ_c loss_c` equals [`distill`](crate::distill()) on the full logits. With no kept rows and no
/// normalizer, `BatchMean`/`Mean` give NaN and zero gradients, as [`distill`](crate::distill()) does.
///
/// # Gradient
///
/// `∂/∂Xs = G·Ws`, `∂/∂Ws = Gᵀ·Xs` with `G = ∂loss/∂S` (see [`distill_with_grad`]).
///
/// # PyTorch
///
/// ```text
/// s = F.linear(xs, ws); t = F.linear(xt, wt)
/// loss = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction='batchmean', log_target=True) * T**2
/// loss.backward()      # xs.grad, ws.grad
/// ```
///
/// (forward KL; the other divergences and the hard-label mix as in [`distill`](crate::distill())).
///
/// # Errors
///
/// [`Error::BadRank`] unless the four matrices are 2-D; [`Error::ShapeMismatch`] naming both shapes
/// (hidden and weight `H` differ, student and teacher `N` or `V` differ, labels not `(N,)`);
/// [`Error::TargetOutOfRange`] for a label outside `[0, V)` that is not `ignore_index`;
/// [`Error::InvalidOption`] for `chunk_size = Some(0)` and whatever [`distill`](crate::distill()) rejects.
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearDistillOptions, linear_distill};
/// use infoloss::distill::DistillOptions;
/// use infoloss::ndarray::array;
/// let xs = array![[1.0f64, 0.5], [-0.5, 2.0], [0.0, 1.0]];
/// let ws = array![[0.2f64, -0.1], [0.4, 0.3], [-0.3, 0.8]];
/// let xt = array![[0.3f64], [1.0], [-1.0]];
/// let wt = array![[1.0f64], [-1.0], [0.5]];
/// let opts = LinearDistillOptions {
///     distill: DistillOptions { temperature: 2.0, ..Default::default() },
///     chunk_size: Some(2),
/// };
/// let out = linear_distill(xs.view(), ws.view(), xt.view(), wt.view(), None, &opts)?;
/// // torch (float64): F.kl_div(F.log_softmax(F.linear(xs, ws)/2, 1), F.log_softmax(F.linear(xt, wt)/2, 1),
/// //                           reduction='batchmean', log_target=True) * 4, and autograd
/// assert!((out.loss.scalar().unwrap() - 0.42957666277670215).abs() < 1e-12);
/// assert!((out.grad_hidden[[0, 1]] - 0.00232363188231951).abs() < 1e-12);
/// assert!((out.grad_weight[[2, 0]] - (-0.08589008580702065)).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn linear_distill<T: LinearFloat, D1: Dimension, D2: Dimension, D3: Dimension, D4: Dimension>(
    student_hidden: ArrayView<'_, T, D1>,
    student_weight: ArrayView<'_, T, D2>,
    teacher_hidden: ArrayView<'_, T, D3>,
    teacher_weight: ArrayView<'_, T, D4>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &LinearDistillOptions,
) -> Result<LinearDistillOutput<T>> {
    const OP: &str = OP_DISTILL;
    let student = LinearHead {
        hidden: as_2d(OP, "student_hidden", student_hidden)?,
        weight: as_2d(OP, "student_weight", student_weight)?,
        bias: None,
    };
    let teacher = LinearHead {
        hidden: as_2d(OP, "teacher_hidden", teacher_hidden)?,
        weight: as_2d(OP, "teacher_weight", teacher_weight)?,
        bias: None,
    };
    linear_distill_backward(&student, &teacher, labels, None, opts, &GradOutput::one())
}

/// [`linear_distill`] with biases on both heads, an optional sparse top-k teacher ([`TeacherTopK`]) and an
/// upstream gradient `grad_output` (a scalar for the reduced losses; an `(N,)` array, or a scalar for
/// every row, for `Reduction::None`): the loss, and the gradients of `Σ grad_output ⊙ loss` with respect
/// to the student's hidden states, weight and bias.
///
/// # Formula
///
/// Per chunk of rows: `S_c = Xs_c·Wsᵀ + bs`, `T_c = Xt_c·Wtᵀ + bt`; dense teacher:
/// `loss_c = distill(S_c, T_c, labels_c)`; top-k teacher: `loss_c = distill_topk(S_c, top_k(T_c), labels_c)`
/// (see [`TeacherTopK`]); with the global divisor of [`linear_distill`], so `loss = Σ_c loss_c`.
///
/// # Gradient
///
/// `G = g ⊙ ∂loss/∂S` (the [`distill_backward`](crate::distill_backward) / [`distill_topk_backward`](crate::distill_topk_backward) gradient of each chunk for the
/// upstream `g` of its rows, computed in f64 and rounded once); `∂/∂Xs = G·Ws`, `∂/∂Ws = Gᵀ·Xs`,
/// `∂/∂bs = Σ_rows G` (accumulated in f64). The teacher gets none.
///
/// # PyTorch
///
/// ```text
/// s = F.linear(xs, ws, bs); t = F.linear(xt, wt, bt)
/// lq = F.log_softmax(t / T, 1)                       # top-k: idx = t.topk(k, 1).indices
/// loss = F.kl_div(F.log_softmax(s / T, 1), lq, reduction='none', log_target=True).sum(1) * T**2
/// loss.backward(g)                                   # xs.grad, ws.grad, bs.grad
/// ```
///
/// (top-k: `s/T − logsumexp(s/T)` and `lq` gathered at `idx`, plus the tail buckets with `add_tail`; the
/// other divergences, reductions and the hard-label mix as in [`distill`](crate::distill())).
///
/// # Errors
///
/// Those of [`linear_distill`]; [`Error::ShapeMismatch`] for a bias without `V` entries (naming the bias
/// and its weight) and a `grad_output` of the wrong shape; [`Error::InvalidOption`] for a top-k `k > V`.
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearDistillOptions, LinearHead, TeacherTopK, linear_distill_backward};
/// use infoloss::distill::DistillOptions;
/// use infoloss::{GradOutput, ndarray::array};
/// let xs = array![[1.0f64, 0.5], [-0.5, 2.0], [0.0, 1.0]];
/// let ws = array![[0.2f64, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]];
/// let bs = array![0.1f64, -0.2, 0.0, 0.3];
/// let xt = array![[0.3f64], [1.0], [-1.0]];
/// let wt = array![[1.0f64], [-1.0], [0.5], [2.0]];
/// let bt = array![0.0f64, 0.5, -0.4, 0.2];
/// let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: Some(bs.view()) };
/// let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: Some(bt.view()) };
/// let opts = LinearDistillOptions {
///     distill: DistillOptions { temperature: 2.0, ..Default::default() },
///     chunk_size: Some(2),
/// };
/// let topk = Some(TeacherTopK { k: 2, add_tail: true });
/// let out = linear_distill_backward(&student, &teacher, None, topk, &opts, &GradOutput::Scalar(0.5))?;
/// // torch (float64), the expression above with the top-2 buckets and the tail, loss.backward(0.5)
/// assert!((out.loss.scalar().unwrap() - 0.6935923804298162).abs() < 1e-12);
/// assert!((out.grad_hidden[[0, 1]] - 0.008517461935285778).abs() < 1e-12);
/// assert!((out.grad_weight[[3, 0]] - 0.023422359822857987).abs() < 1e-12);
/// assert!((out.grad_bias.unwrap()[1] - (-0.06837931317472623)).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
#[inline(never)]
pub fn linear_distill_backward<T: LinearFloat>(
    student: &LinearHead<'_, T>,
    teacher: &LinearHead<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    teacher_topk: Option<TeacherTopK>,
    opts: &LinearDistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<LinearDistillOutput<T>> {
    const OP: &str = OP_DISTILL;
    let (xs, wsm, xt, wtm) = (student.hidden, student.weight, teacher.hidden, teacher.weight);
    student.check(OP, ["student_hidden", "student_weight", "student_bias"])?;
    teacher.check(OP, ["teacher_hidden", "teacher_weight", "teacher_bias"])?;
    ensure_shapes(
        xs.nrows() == xt.nrows(),
        OP,
        ("student_hidden", xs.shape()),
        ("teacher_hidden", xt.shape()),
        "must have the same number of rows",
    )?;
    ensure_shapes(
        wsm.nrows() == wtm.nrows(),
        OP,
        ("student_weight", wsm.shape()),
        ("teacher_weight", wtm.shape()),
        "must have the same number of rows (classes V)",
    )?;
    let (n, hs) = xs.dim();
    let ht = xt.ncols();
    let v = wsm.nrows();
    let ws = linear_distill_workspace_with::<T>(n, hs, ht, v, student.bias.is_some(), teacher_topk, opts);
    let check_k = || match teacher_topk {
        Some(tk) if tk.k > v => Err(Error::invalid_option(
            OP,
            "teacher_topk.k",
            tk.k,
            format!("must be at most the number of classes ({v})"),
        )),
        _ => Ok(()),
    };
    let cr = ws.chunk_rows.min(n);
    let xt_c = contiguous(&xt);
    let wt_c = contiguous(&wtm);
    let bt_c = teacher.bias.as_ref().map(contiguous);
    let k = teacher_topk.map_or(0, |t| t.k);
    // the teacher's chunk buffers, allocated at the first chunk (after every check)
    let (mut tbuf, mut idx_buf, mut lq_buf) = (Vec::new(), Vec::new(), Vec::new());
    let zero = T::zero();
    distill_chunks(
        OP,
        student,
        labels,
        opts,
        grad_output,
        ws.chunk_rows,
        check_k,
        |rng, sv, yc, copts, go| {
            let rows = rng.len();
            if tbuf.is_empty() {
                tbuf = vec![zero; checked_numel(OP, "logits chunk", &[cr, v])?];
                idx_buf = vec![0i64; checked_numel(OP, "teacher top-k chunk", &[cr, k])?];
                lq_buf = vec![zero; idx_buf.len()];
            }
            let t_chunk = Chunk { x: xt_c.get(rng.start * ht..rng.end * ht).unwrap_or(&[]), rows };
            let tb = tbuf.get_mut(..rows * v).unwrap_or(&mut []);
            logits_gemm(OP, tb, &t_chunk, &wt_c, v, ht)?;
            add_bias_rows(tb, bt_c.as_deref(), v);
            match teacher_topk {
                None => chunk_distill(sv, ChunkTeacher::Dense(view2(OP, rows, v, tb)?), yc, copts, go),
                Some(tk) => {
                    let ib = idx_buf.get_mut(..rows * k).unwrap_or(&mut []);
                    let lb = lq_buf.get_mut(..rows * k).unwrap_or(&mut []);
                    teacher_top_k(tb, v, copts.temperature, ib, lb);
                    let indices = view2(OP, rows, k, ib)?;
                    let logprobs = view2(OP, rows, k, lb)?;
                    let st = SparseTeacher { indices, logprobs, add_tail: tk.add_tail };
                    chunk_distill(sv, ChunkTeacher::Sparse(st), yc, copts, go)
                }
            }
        },
    )
}

/// The chunk loop of the fused distillation losses, whatever the teacher: checks the labels, the chunk
/// size (then runs `check_teacher`, the teacher's own checks), fixes the global divisor, then per chunk
/// of `chunk_rows` rows computes the student logits `S_c = Xs_c·Wsᵀ + bs` into one buffer, lets
/// `chunk_loss` turn it into its gradient `G_c` in place (and return the chunk's loss), and runs
/// `∂/∂Xs_c = G_c·Ws`, `∂/∂Ws += G_cᵀ·Xs_c`, `∂/∂bs += Σ_rows G_c`. `chunk_loss(rows, S_c, labels_c,
/// chunk options, upstream_c)` gets the rows of the chunk and owns the teacher's side. The student's
/// shapes are checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn distill_chunks<T: LinearFloat>(
    op: &'static str,
    student: &LinearHead<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &LinearDistillOptions,
    grad_output: &GradOutput<'_, T>,
    chunk_rows: usize,
    check_teacher: impl FnOnce() -> Result<()>,
    mut chunk_loss: impl FnMut(
        std::ops::Range<usize>,
        ArrayViewMut2<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        &GradOutput<'_, T>,
    ) -> Result<Loss<T>>,
) -> Result<LinearDistillOutput<T>> {
    let (xs, wsm) = (student.hidden, student.weight);
    let (n, hs) = xs.dim();
    let v = wsm.nrows();
    if let Some(y) = &labels {
        ensure_shapes(
            y.len() == n,
            op,
            ("labels", y.shape()),
            ("student_hidden", xs.shape()),
            "are not compatible: labels must have one entry per row",
        )?;
        for (r, &c) in y.iter().enumerate() {
            if c != opts.distill.ignore_index && !(c >= 0 && (c as u64) < v as u64) {
                return Err(Error::target_out_of_range(op, &[r], c, v));
            }
        }
    }
    if opts.chunk_size == Some(0) {
        return Err(Error::invalid_option(op, "chunk_size", 0, "must be at least 1"));
    }
    check_teacher()?;
    checked_numel(op, "logits", &[n, v])?;

    // The chunk options: the global divisor as the normalizer.
    let mut copts = opts.distill;
    let mut no_rows = false;
    if matches!(copts.reduction, Reduction::BatchMean | Reduction::Mean) && copts.normalizer.is_none() {
        let kept = match &labels {
            Some(y) => y.iter().filter(|&&c| c != copts.ignore_index).count(),
            None => n,
        };
        if kept > 0 {
            copts.normalizer = Some(kept as f64);
        } else {
            no_rows = true;
        }
    }
    // Validate the options exactly as distill does (on an empty chunk).
    {
        let e = Array2::<T>::zeros((0, v));
        let ey = Array1::<i64>::zeros(0);
        distill_with_grad(e.view(), e.view(), labels.as_ref().map(|_| ey.view()), &copts)?;
    }
    // the upstream's shape, checked once against the whole loss
    check_upstream(op, copts.reduction, n, grad_output)?;

    let zero = T::zero();
    let mut grad_hidden = vec![zero; checked_numel(op, "grad_hidden", &[n, hs])?];
    let mut grad_weight = vec![zero; checked_numel(op, "grad_weight", &[v, hs])?];
    let mut bias_acc: Option<Vec<f64>> = student.bias.map(|_| vec![0f64; v]);
    let finish = |loss, gh, gw, acc: Option<Vec<f64>>| -> Result<LinearDistillOutput<T>> {
        Ok(LinearDistillOutput {
            loss,
            grad_hidden: to_array2(op, "grad_hidden", (n, hs), gh)?,
            grad_weight: to_array2(op, "grad_weight", (v, hs), gw)?,
            grad_bias: acc.map(|a| Array1::from_iter(a.into_iter().map(T::c))),
        })
    };
    if no_rows {
        // BatchMean/Mean without kept rows: 0/0, as distill
        return finish(Loss::Scalar(T::nan()), grad_hidden, grad_weight, bias_acc);
    }
    let none = copts.reduction == Reduction::None;
    let cr = chunk_rows;
    let xs_c = contiguous(&xs);
    let ws_c = contiguous(&wsm);
    let bs_c = student.bias.as_ref().map(contiguous);
    let cap = checked_numel(op, "logits chunk", &[cr.min(n), v])?;
    let mut sbuf = vec![zero; cap];
    let mut total = 0f64;
    let mut per_row: Vec<T> = Vec::with_capacity(if none { n } else { 0 });
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + cr).min(n);
        let rows = r1 - r0;
        let s_chunk = Chunk { x: xs_c.get(r0 * hs..r1 * hs).unwrap_or(&[]), rows };
        let sb = sbuf.get_mut(..rows * v).unwrap_or(&mut []);
        logits_gemm(op, sb, &s_chunk, &ws_c, v, hs)?;
        add_bias_rows(sb, bs_c.as_deref(), v);
        let sv = ArrayViewMut2::from_shape((rows, v), &mut *sb)
            .map_err(|e| Error::too_large(op, "chunk", e.to_string()))?;
        let yc = labels.as_ref().map(|y| y.slice(ndarray::s![r0..r1]));
        let go = chunk_upstream(grad_output, r0, r1);
        // the chunk's gradient G_c replaces its student logits in `sb`
        match chunk_loss(r0..r1, sv, yc, &copts, &go)? {
            Loss::Scalar(l) => total += l.f64(),
            Loss::Elementwise(a) => per_row.extend(a.iter().copied()),
        }
        let gx = grad_hidden.get_mut(r0 * hs..r1 * hs).unwrap_or(&mut []);
        backward_gemms(op, sb, &s_chunk, &ws_c, gx, &mut grad_weight, v, hs)?;
        if let Some(acc) = bias_acc.as_mut() {
            add_column_sums(acc, sb, rows, v);
        }
        r0 = r1;
    }
    let loss = if none {
        Loss::Elementwise(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), per_row)
                .map_err(|e| Error::too_large(op, "loss", e.to_string()))?,
        )
    } else {
        Loss::Scalar(T::c(total))
    };
    finish(loss, grad_hidden, grad_weight, bias_acc)
}

/// A row-major `rows × cols` view of a chunk buffer.
pub(crate) fn view2<'a, T>(
    op: &'static str,
    rows: usize,
    cols: usize,
    buf: &'a [T],
) -> Result<ArrayView2<'a, T>> {
    ArrayView2::from_shape((rows, cols), buf).map_err(|e| Error::too_large(op, "chunk", e.to_string()))
}

/// `row += bias` for every `v`-element row of `buf` (in parallel).
pub(crate) fn add_bias_rows<T: LinearFloat>(buf: &mut [T], bias: Option<&[T]>, v: usize) {
    if let (Some(b), true) = (bias, v > 0) {
        buf.par_chunks_mut(v).for_each(|row| add_bias_row(row, b));
    }
}

/// `row += bias`.
#[inline]
pub(crate) fn add_bias_row<T: LinearFloat>(row: &mut [T], bias: &[T]) {
    for (x, &b) in row.iter_mut().zip(bias) {
        *x += b;
    }
}

/// `acc[j] += Σ_i g[i·v + j]` over the `rows` rows of `g` (one chunk's bias gradient), in f64, in parallel
/// over blocks of columns.
pub(crate) fn add_column_sums<T: LinearFloat>(acc: &mut [f64], g: &[T], rows: usize, v: usize) {
    const BLOCK: usize = 4096;
    acc.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, a)| {
        for i in 0..rows {
            let start = i * v + bi * BLOCK;
            if let Some(row) = g.get(start..start + a.len()) {
                for (s, &x) in a.iter_mut().zip(row) {
                    *s += x.f64();
                }
            }
        }
    });
}

/// Validates the upstream gradient against the loss: `(n,)` (or a scalar) for `None`, a scalar otherwise.
pub(crate) fn check_upstream<T: LinearFloat>(
    op: &'static str,
    reduction: Reduction,
    n: usize,
    g: &GradOutput<'_, T>,
) -> Result<()> {
    if reduction == Reduction::None {
        g.check(op, &[n])?;
    } else {
        g.expect_scalar(op)?;
    }
    Ok(())
}

/// The upstream gradient of rows `r0..r1`: a per-row array is sliced, a scalar kept.
pub(crate) fn chunk_upstream<'a, T: Clone>(
    g: &'a GradOutput<'_, T>,
    r0: usize,
    r1: usize,
) -> GradOutput<'a, T> {
    match g {
        GradOutput::Array(a) if a.ndim() == 1 => {
            GradOutput::Array(a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(r0..r1)))
        }
        GradOutput::Array(a) => GradOutput::Array(a.view()),
        GradOutput::Scalar(s) => GradOutput::Scalar(s.clone()),
    }
}

/// The teacher of one chunk.
pub(crate) enum ChunkTeacher<'a, T> {
    Dense(ArrayView2<'a, T>),
    Sparse(SparseTeacher<'a, T>),
}

/// One chunk's loss, with its gradient wrt the student logits for the upstream `go` written over the
/// student logits `s` ([`distill_with_grad_in_place`](crate::distill_with_grad_in_place)'s path: no chunk-sized temporary).
pub(crate) fn chunk_distill<T: LinearFloat>(
    s: ArrayViewMut2<'_, T>,
    teacher: ChunkTeacher<'_, T>,
    y: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    go: &GradOutput<'_, T>,
) -> Result<Loss<T>> {
    match teacher {
        ChunkTeacher::Dense(t) => crate::losses::distill::dense_in_place(s, t, y, opts, go),
        ChunkTeacher::Sparse(t) => crate::losses::distill::topk_in_place(s, &t, y, opts, go),
    }
}
