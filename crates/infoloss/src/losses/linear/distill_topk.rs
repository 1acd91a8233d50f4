//! `linear_distill_topk`: a fused student head distilled against a **stored** top-k teacher (the indices
//! and log-probabilities a teacher cache holds), chunk by chunk through [`distill_chunks`].

use super::*;
use crate::losses::distill::{TopkNames, check_topk_indices};

const OP: &str = "linear_distill_topk";

const TOPK_NAMES: TopkNames = TopkNames {
    indices: "topk_indices",
    logprobs: "topk_logprobs",
    same_shape: "must have the same shape (N, k)",
    same_rows: "must have the same number of rows N",
};

/// The temporary memory [`linear_distill_topk`] needs for `n` rows, hidden size `h`, `v` classes (with
/// or without a student bias), on the current rayon pool.
///
/// # Formula
///
/// One chunk of student logits `chunk_rows·V·size_of::<T>()` (overwritten by its gradient; the teacher
/// is read from its stored `(N, k)` arrays, so there is no teacher chunk) + the distillation row scratch
/// (at most `threads · V · (6·8 + size_of::<T>())` bytes) + the per-row losses (`n · size_of::<T>()` for
/// `None`) + with a bias `8·V` + `gemm`'s packing estimate. The automatic chunk is
/// [`linear_distill_workspace`]'s.
///
/// # PyTorch
///
/// None.
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearDistillOptions, linear_distill_topk_workspace};
/// let ws = linear_distill_topk_workspace::<f32>(2048, 1024, 32000, false, &Default::default());
/// assert_eq!((ws.chunk_buffers, ws.chunk_rows, ws.teacher_topk_bytes), (1, 525, 0));
/// ```
pub fn linear_distill_topk_workspace<T: LinearFloat>(
    n: usize,
    h: usize,
    v: usize,
    has_bias: bool,
    opts: &LinearDistillOptions,
) -> LinearWorkspace {
    distill_workspace::<T>(n, h, v, has_bias, 1, 0, 0, opts)
}

/// Fused linear head + distillation against a stored sparse teacher: student logits
/// `S = Xs·Wsᵀ + bs` (never stored whole), `loss = distill_topk(S, teacher, labels)` with every option of
/// [`distill_topk`](crate::distill_topk) (each divergence, the tail bucket, temperature and `T²`, the
/// hard-label mix with `ignore_index`, the normalizer, the student's logit scale and softcap), and its
/// gradients with respect to `Xs (N, H)`, `Ws (V, H)` and `bs (V,)`, for an upstream gradient
/// `grad_output` (a scalar for the reduced losses; `(N,)` or a scalar for `Reduction::None`).
///
/// # Formula
///
/// Per chunk of rows `c`: `S_c = Xs_c·Wsᵀ + bs`, `loss_c = distill_topk(S_c, (indices_c, logprobs_c,
/// add_tail), labels_c)` with the `BatchMean`/`Mean` divisor fixed to the global one (the `normalizer`
/// option, else the non-ignored rows of **all** chunks), so `loss = Σ_c loss_c`. The teacher's
/// `logprobs` are `log_softmax(t / T)` at `indices`, as a teacher cache stores them.
///
/// # Gradient
///
/// `G = g ⊙ ∂loss/∂S` (the [`distill_topk_backward`](crate::distill_topk_backward) gradient of each
/// chunk, written over its logits); `∂/∂Xs = G·Ws`, `∂/∂Ws = Gᵀ·Xs`, `∂/∂bs = Σ_rows G` (accumulated in
/// f64). The teacher gets none.
///
/// # PyTorch
///
/// ```text
/// s = F.linear(xs, ws, bs) / T
/// lp = s.gather(1, idx) - s.logsumexp(1, keepdim=True)          # student over the teacher's buckets
/// # add_tail: one more bucket, logsumexp(s over the other classes) - logsumexp(s), against
/// #           log(1 - lq.exp().sum(1))
/// loss = F.kl_div(lp, lq, reduction='sum', log_target=True) / N * T**2
/// loss.backward(g)                                               # xs.grad, ws.grad, bs.grad
/// ```
///
/// (the other divergences, reductions and the hard-label mix as in [`distill`](crate::distill())).
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming both shapes: hidden and weight `H` differ, a bias without `V`
/// entries, `topk_indices` and `topk_logprobs` not of one `(N, k)` shape, their `N` not hidden's,
/// labels not `(N,)`, a `grad_output` of the wrong shape; [`Error::InvalidValue`] for a teacher index
/// outside `[0, V)` or repeated in its row; [`Error::TargetOutOfRange`] for a label outside `[0, V)`
/// that is not `ignore_index`; [`Error::InvalidOption`] for `chunk_size = Some(0)` and whatever
/// [`distill_topk`](crate::distill_topk) rejects.
///
/// # Example
///
/// ```
/// use infoloss::distill::{DistillOptions, SparseTeacher};
/// use infoloss::linear::{LinearDistillOptions, LinearHead, linear_distill_topk};
/// use infoloss::{GradOutput, ndarray::array};
/// let xs = array![[1.0f64, 0.5], [-0.5, 2.0], [0.0, 1.0]];
/// let ws = array![[0.2f64, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]];
/// let bs = array![0.1f64, -0.2, 0.0, 0.3];
/// let idx = array![[1i64, 3], [0, 2], [3, 1]];
/// let lq = array![[-0.5f64, -1.5], [-0.3, -2.0], [-0.9, -1.1]];
/// let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: Some(bs.view()) };
/// let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
/// let opts = LinearDistillOptions {
///     distill: DistillOptions { temperature: 2.0, ..Default::default() },
///     chunk_size: Some(2),
/// };
/// let out = linear_distill_topk(&student, &teacher, None, &opts, &GradOutput::Scalar(0.5))?;
/// // torch (float64): the expression above, loss.backward(0.5)
/// assert!((out.loss.scalar().unwrap() - 1.7034088921638537).abs() < 1e-12);
/// assert!((out.grad_hidden[[0, 1]] - 0.00016715660298507264).abs() < 1e-12);
/// assert!((out.grad_weight[[3, 0]] - (-0.01008132044315747)).abs() < 1e-12);
/// assert!((out.grad_bias.unwrap()[1] - (-0.10806479178636494)).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
#[inline(never)]
pub fn linear_distill_topk<T: LinearFloat>(
    student: &LinearHead<'_, T>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &LinearDistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<LinearDistillOutput<T>> {
    let (xs, wsm) = (student.hidden, student.weight);
    student.check(OP, ["student_hidden", "student_weight", "student_bias"])?;
    teacher.check_shapes(OP, &TOPK_NAMES, ("student_hidden", xs.shape()))?;
    let (idx, lq) = (teacher.indices, teacher.logprobs);
    let (n, h) = xs.dim();
    let v = wsm.nrows();
    let ws = linear_distill_topk_workspace::<T>(n, h, v, student.bias.is_some(), opts);
    let check = || check_topk_indices(OP, "topk_indices", idx, v);
    distill_chunks(OP, student, labels, opts, grad_output, ws.chunk_rows, check, |rng, sv, yc, copts, go| {
        let st = SparseTeacher {
            indices: idx.slice(ndarray::s![rng.clone(), ..]),
            logprobs: lq.slice(ndarray::s![rng, ..]),
            add_tail: teacher.add_tail,
        };
        chunk_distill(sv, ChunkTeacher::Sparse(st), yc, copts, go)
    })
}
