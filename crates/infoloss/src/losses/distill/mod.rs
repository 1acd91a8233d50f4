//! Knowledge distillation on raw logits: forward KL, reverse KL, generalized Jensen–Shannon and total
//! variation between a student and a teacher, with temperature, Hinton's T² factor, a hard-label
//! cross-entropy mix, `ignore_index` masking, an explicit normalizer, and a sparse top-k teacher.
//!
//! # Layout and notation
//!
//! Inputs are **raw logits of shape `(rows, classes)`** (2-D; a batch of sequences is flattened to
//! `(batch·seq, vocab)` first). For one row, with temperature `T`:
//!
//! - `p = softmax(s / T)` — the **student** (the gradient is taken with respect to `s`),
//! - `q = softmax(t / T)` — the **teacher** (constant),
//! - `log p = s/T − lse(s/T)`, `log q = t/T − lse(t/T)`, `lse(x) = log Σ exp(x)`.
//!
//! The row's soft loss `D(q, p)` is one of the [`Divergence`]s. Terms with a zero weight count as 0
//! (`0·log 0 = 0`, as `xlogy` in `F.kl_div(input, target)` with probability targets); a teacher logit
//! of `−inf` therefore contributes nothing, where `F.kl_div(..., log_target=True)` would give NaN.
//!
//! # The row loss and the reductions
//!
//! ```text
//! row_loss_r = alpha · c_T · D(q_r, p_r) + (1 − alpha) · CE_r,      c_T = T² if t2_scaling else 1
//! CE_r       = lse(s_r) − s_r[y_r]                                   (untempered s, as F.cross_entropy)
//! ```
//!
//! Rows whose label equals `ignore_index` are dropped from **both** terms (loss 0, gradient 0). Let
//! `n` = the number of kept rows (all rows without labels), or the explicit `normalizer`, and `V` =
//! `classes`:
//!
//! | [`Reduction`](crate::Reduction) | result | PyTorch expression it equals (kept rows only) |
//! |---|---|---|
//! | `BatchMean` (default) | `Σ_r row_loss_r / n` | `alpha·F.kl_div(lp, lq, 'batchmean', log_target=True)·T² + (1−alpha)·F.cross_entropy(s, y)` |
//! | `Mean` | `alpha·c_T·Σ_r D_r / (n·V) + (1−alpha)·Σ_r CE_r / n` | `alpha·F.kl_div(lp, lq, 'mean', log_target=True)·T² + (1−alpha)·F.cross_entropy(s, y, 'mean')` |
//! | `Sum` | `Σ_r row_loss_r` | `... 'sum' ...` |
//! | `None` | `row_loss_r` per row, shape `(rows,)`, 0 at ignored rows | per-row sums of `'none'` |
//!
//! `BatchMean` divides by the number of **non-ignored** rows, as TRL's `generalized_jsd_loss`
//! (`jsd.sum() / mask.sum()`) and DistillKit (`Σ token KL · T² / num_items`) do; without labels it is
//! `F.kl_div(..., reduction='batchmean')` (÷ rows). `Mean` is the element mean of `F.kl_div`'s
//! `'mean'` for the soft part (TRL's `jsd.mean()`), and the mean over kept rows for the cross-entropy.
//! With no kept rows `BatchMean`/`Mean` give NaN (0/0) and a zero gradient, as PyTorch does.
//!
//! `normalizer = Some(n)` replaces the kept-row count `n` in `BatchMean` and `Mean` — e.g. the global
//! number of tokens of all micro-batches of a gradient-accumulation step, so the micro-batch losses
//! add up to the mean over the step. It must be finite and > 0, and is rejected with `Sum`/`None`.
//!
//! # Gradients with respect to the student logits
//!
//! Per row, before the factor `alpha·c_T` (or `1 − alpha`), the reduction's divisor and the upstream
//! gradient:
//!
//! - forward KL `KL(q‖p)`: `∂/∂s = (p − q) / T`, so with T² scaling `T·(p − q)`;
//! - reverse KL `KL(p‖q)`: `∂/∂s = p·(log p − log q − KL(p‖q)) / T`;
//! - generalized JSD(β): `∂/∂s = (1−β)·p·(log p − log m − KL(p‖m)) / T`, `m = β·q + (1−β)·p`;
//! - total variation: `∂/∂s = p·(σ − Σ_j p_j σ_j) / T`, `σ = ½·sign(p − q)` (`sign(0) = 0`);
//! - cross-entropy: `∂/∂s = softmax(s) − onehot(y)`.
//!
//! # Precision: the reference and the fast path
//!
//! The **reference** widens every dtype to `f64` and rounds the results once to the element type. The
//! fused forward KL subtracts two log-sum-exps (`KL = E_q[t − s]/T − lse(t/T) + lse(s/T)`); in `f64`
//! that cancellation costs nothing visible, so reference `f32` results are within about one `f32`
//! rounding of the exact value. `f64` inputs always take it.
//!
//! The **fast path** (on by default for `f32`, `f16`, `bf16`; [`with_reference_path`] switches it off)
//! runs forward KL, reverse KL, generalized JSD (any `β`; `β ∈ {0, 1}` are the KLs) and total
//! variation through one `f32` SIMD row kernel: exponentials and elementwise terms in `f32`, sums in `f32` lanes flushed into `f64` every 512
//! elements, the loss assembled in `f64`, and the differences `t/T − s/T` taken relative to each row's
//! own maxima, so the log-sum-exps that cancel are only `ln Σ exp(·)` of size `ln V`. Its results
//! differ from the reference by a relative ~1e-7 plus a few `f32` roundings of the cancelling terms
//! (`Σ q·(|log q| + |log p|)` for the loss, `|c|·(p + q)` for the gradient `c·(p − q)`; for total
//! variation, where `p ≈ q` to `f32` rounding the sign of `p − q` may differ from the reference's; for
//! JSD, whose `ln(p/m)`, `ln(q/m)` are taken of `f32` ratios, a few roundings of `p·(|log p| + |log q|)`), which
//! is what `tests/oracle/distill.rs` holds it to; the torch fixtures pass at rtol 1e-6 / atol 1e-7 on both paths.
//! Rows with a NaN or infinite logit are handed to the reference row by row, so special values are
//! exactly the reference's; a non-finite upstream gradient sends the whole call there. `alpha = 0`
//! uses the reference. The sparse top-k teacher ([`distill_topk`]) runs its dense row work — the
//! student's log-sum-exps at `T` and 1, the tail's (a direct sum over the classes outside the top-k;
//! a tail below 2^-64 of the mass goes to the reference), the dense gradient pass — in an `f32` kernel
//! (`kernels::topk`) and the `k` buckets in `f64` as the reference does.
//!
//! Both paths give the same bits for any number of threads: each row is computed on its own and the
//! per-row results are summed in row order in `f64`.
//!
//! # Cost
//!
//! Fast path (forward KL with temperature): pass 1 reads a row of `s` and of `t` once, computing both
//! online maxima and sums and `Σ e^{b−m_b}·(b − a)` (two `exp` per element), and caches `e^{a−m_a}` in
//! the gradient row and `e^{b−m_b}` in a per-worker scratch row; pass 2 writes the gradient
//! `c·(p − q)` from that cache with one multiply-add per element. A hard-label term at `T ≠ 1` adds one
//! `exp` per element to each pass (the untempered softmax). No `(rows, classes)` array besides the
//! gradient is allocated, and [`distill_with_grad_in_place`] / [`distill_topk_with_grad_in_place`]
//! write the gradient over the student logits (the training path), allocating none.
//!
//! Reference: forward KL and reverse KL read each row of `s` and `t` once for the loss — two running
//! maxima and rescaled sums (the online softmax), advanced in blocks of 64 — and once more to write the
//! gradient, from kept `f64` exponentials (two `exp` per element in all, one more with a hard-label
//! term at `T ≠ 1`). Generalized JSD and total variation need the final log-sum-exps before the mixture
//! (or the sign of `p − q`), so they take one more pass, also from the kept exponentials (JSD adds the
//! `exp` and `log1p` of its mixture).

use ndarray::{Array2, ArrayView, ArrayView1, ArrayView2, ArrayViewMut, Dimension};

use crate::{Element, GradOutput, Loss, Result};

pub(crate) const OP: &str = "distill";
pub(crate) const OP_TOPK: &str = "distill_topk";
mod engine;
mod fast;

pub use crate::options::Divergence;

pub use crate::options::DistillOptions;

use crate::base::element::zero_t;
use crate::base::shape::as_2d;
use engine::*;
pub(crate) use engine::{TopkNames, check_options, check_topk_indices, dense_in_place, topk_in_place};

crate::base::path::deprecated_switches!("distill");

/// A sparse teacher: per row the indices of its top-k classes and their log-probabilities, as stored
/// offline (e.g. from vLLM `logprobs`), optionally completed by a **tail bucket**.
///
/// - `indices`: `(rows, k)` class indices, each in `[0, classes)`, no repeats within a row.
/// - `logprobs`: `(rows, k)` teacher log-probabilities `log q_j` at those classes, **already at the
///   distillation temperature** (e.g. `log_softmax(t / T)` gathered at the top-k); they are used as
///   given, only the student is divided by `T`.
/// - `add_tail`: add one more bucket holding the missing mass: teacher `q_tail = 1 − Σ_j q_j`
///   (computed as `log1mexp(logsumexp(log q_j))`, 0 when the top-k already sum to ≥ 1) and student
///   `p_tail = 1 − Σ_j p_j`, computed without cancellation as the softmax mass of the classes outside
///   the top-k. Without the tail, the student mass outside the top-k is not compared (DistillKit's
///   "zero" missing-mass mode); with it the loss is the divergence between the two `(k+1)`-bucket
///   distributions (TRL's `loss_add_tail`, DistillKit's symmetric mode). When the top-k hold every
///   class the tail is empty and there is no tail bucket: the teacher's leftover mass is then only the
///   rounding of its log-probabilities (an empty student tail against it would give `+inf`).
///
/// The divergence is then computed over the buckets `b` (the k classes, plus the tail):
/// `KL(q‖p) = Σ_b q_b·(log q_b − log p_b)` and so on. With `k = classes`, with or without the tail, it equals the dense
/// [`distill`] with `logprobs = log_softmax(t/T)`. Gradient wrt `s_i` (class `i` in bucket `b(i)`):
/// `(p_i/T)·(∂D/∂p_{b(i)} − Σ_b p_b·∂D/∂p_b)` (classes in no bucket have `∂D/∂p = 0`).
///
/// ```
/// use infoloss::distill::{distill, distill_topk, DistillOptions, SparseTeacher};
/// use infoloss::ndarray::array;
/// let s = array![[0.5f64, 1.5, -1.0]];
/// let t = array![[1.0f64, 0.0, 2.0]];
/// let lq = t.mapv(|v| v - t.iter().map(|x| x.exp()).sum::<f64>().ln()); // log_softmax(t)
/// let idx = array![[0i64, 1, 2]]; // k = V: the whole distribution
/// let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: false };
/// let o = DistillOptions::default();
/// let sparse = distill_topk(s.view(), &teacher, None, &o)?.scalar().unwrap();
/// let dense = distill(s.view(), t.view(), None, &o)?.scalar().unwrap();
/// assert!((sparse - dense).abs() < 1e-15 && (dense - 1.446974310504596).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SparseTeacher<'a, T> {
    /// `(rows, k)` class indices of the teacher's top-k.
    pub indices: ArrayView2<'a, i64>,
    /// `(rows, k)` teacher log-probabilities at `indices`.
    pub logprobs: ArrayView2<'a, T>,
    /// Whether to add the tail bucket `log(1 − Σ_j q_j)`.
    pub add_tail: bool,
}

/// Distillation loss between student logits `s` and teacher logits `t`, both `(rows, classes)`.
///
/// `row_loss = alpha·c_T·D(softmax(t/T), softmax(s/T)) + (1 − alpha)·cross_entropy(s, labels)`,
/// reduced as in the [module docs](self). `labels` (`(rows,)`, `i64`) are optional; rows labelled
/// `ignore_index` are dropped from both terms. PyTorch equivalent (forward KL, batchmean, no ignored
/// rows):
///
/// ```text
/// alpha * F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction='batchmean', log_target=True) * T**2
///     + (1 - alpha) * F.cross_entropy(s, labels)
/// ```
///
/// Errors: non-2-D inputs, shape mismatch (both shapes named), `labels` of the wrong length, a label
/// outside `[0, classes)` that is not `ignore_index`, and invalid options (`temperature` ≤ 0,
/// `alpha` outside `[0, 1]` or `< 1` without labels, `beta` outside `[0, 1]`, a `normalizer` that is
/// not finite and > 0 or combined with `Sum`/`None`).
///
/// ```
/// use infoloss::distill::{distill, DistillOptions};
/// use infoloss::ndarray::array;
/// let s = array![[1.0f32, 2.0, 0.5], [0.3, -1.0, 2.2]];
/// let t = array![[0.5f32, 1.5, 2.0], [0.0, -0.5, 3.0]];
/// let o = DistillOptions { temperature: 2.0, ..Default::default() }; // T² scaling on
/// let loss = distill(s.view(), t.view(), None, &o)?.scalar().unwrap();
/// // F.kl_div(F.log_softmax(s/2, 1), F.log_softmax(t/2, 1), reduction='batchmean', log_target=True) * 4
/// assert!((loss - 0.273417041786).abs() < 1e-6);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill<T: Element, D1: Dimension, D2: Dimension>(
    student: ArrayView<'_, T, D1>,
    teacher: ArrayView<'_, T, D2>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Loss<T>> {
    Ok(dense_impl(student, teacher, labels, opts, None)?.0)
}

/// [`distill`]'s loss and its gradient with respect to the student logits (upstream gradient 1;
/// all ones per row for `Reduction::None`), shape `(rows, classes)`.
///
/// Forward KL: `grad = alpha·c_T·(p − q)/(T·n) + (1 − alpha)·(softmax(s) − onehot(y))/n` for
/// `BatchMean` (`n` = kept rows), i.e. `T·(p − q)/n` with T² scaling and `alpha = 1` — the gradient
/// autograd gives for the PyTorch expression in [`distill`]. The other divergences are listed in the
/// [module docs](self). Ignored rows get 0.
///
/// ```
/// use infoloss::distill::{distill_with_grad, DistillOptions};
/// use infoloss::ndarray::array;
/// let s = array![[1.0f64, 2.0, 0.5], [0.3, -1.0, 2.2]];
/// let t = array![[0.5f64, 1.5, 2.0], [0.0, -0.5, 3.0]];
/// let y = array![1i64, -100];
/// let o = DistillOptions { temperature: 2.0, alpha: 0.5, ..Default::default() };
/// let (loss, grad) = distill_with_grad(s.view(), t.view(), Some(y.view()), &o)?;
/// // 0.5 * F.kl_div(lp[:1], lq[:1], 'batchmean', log_target=True) * 4 + 0.5 * F.cross_entropy(s, y)
/// assert!((loss.scalar().unwrap() - 0.46138968877707626).abs() < 1e-12);
/// assert!((grad[[0, 0]] - 0.19753608652395943).abs() < 1e-12);
/// assert_eq!(grad[[1, 2]], 0.0); // ignored row
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill_with_grad<T: Element, D1: Dimension, D2: Dimension>(
    student: ArrayView<'_, T, D1>,
    teacher: ArrayView<'_, T, D2>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<(Loss<T>, Array2<T>)> {
    let (loss, grad) = dense_impl(student, teacher, labels, opts, Some(&GradOutput::one()))?;
    Ok((loss, grad.unwrap_or_else(|| Array2::from_elem((0, 0), zero_t()))))
}

/// [`distill_with_grad`] writing the gradient over the student logits instead of into a new array:
/// the training path, where the logits are dead after the loss. Returns the loss; afterwards `student`
/// holds `∂loss/∂student` (upstream gradient 1), bit for bit what [`distill_with_grad`] returns, ignored
/// rows 0. No `(rows, classes)` temporary is allocated on the fast path (each row is copied into
/// per-thread scratch before its gradient overwrites it); a non-contiguous `student`, `f64`, or a call
/// the fast path does not take computes the gradient as [`distill_with_grad`] does and copies it over.
///
/// Formula, gradient and PyTorch equivalent: [`distill_with_grad`]. Errors: those of [`distill`]
/// (nothing is written when the inputs are rejected).
///
/// ```
/// use infoloss::distill::{distill_with_grad, distill_with_grad_in_place, DistillOptions};
/// use infoloss::ndarray::array;
/// let mut s = array![[1.0f32, 2.0, 0.5], [0.3, -1.0, 2.2]];
/// let t = array![[0.5f32, 1.5, 2.0], [0.0, -0.5, 3.0]];
/// let y = array![1i64, -100];
/// let o = DistillOptions { temperature: 2.0, alpha: 0.5, ..Default::default() };
/// let (loss, grad) = distill_with_grad(s.view(), t.view(), Some(y.view()), &o)?;
/// let loss2 = distill_with_grad_in_place(s.view_mut(), t.view(), Some(y.view()), &o)?;
/// assert_eq!(loss2.scalar(), loss.scalar());
/// assert_eq!(s, grad);
/// assert!((s[[0, 0]] - 0.197_536_09).abs() < 1e-6);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill_with_grad_in_place<T: Element, D1: Dimension, D2: Dimension>(
    student: ArrayViewMut<'_, T, D1>,
    teacher: ArrayView<'_, T, D2>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Loss<T>> {
    let s = as_2d_mut(OP, student)?;
    let t = as_2d(OP, "teacher", teacher)?;
    dense_in_place(s, t, labels, opts, &GradOutput::one())
}

/// Gradient of [`distill`] with respect to the student logits for an upstream gradient
/// `grad_output`: a scalar for the reduced losses, an array of shape `(rows,)` (or a scalar meaning
/// "every row") for `Reduction::None`. Equal to `grad_output ×` the gradient of [`distill_with_grad`].
///
/// ```
/// use infoloss::distill::{distill_backward, DistillOptions};
/// use infoloss::{GradOutput, Reduction, ndarray::array};
/// let s = array![[1.0f64, 2.0, 0.5], [0.3, -1.0, 2.2]];
/// let t = array![[0.5f64, 1.5, 2.0], [0.0, -0.5, 3.0]];
/// let o = DistillOptions { reduction: Reduction::None, ..Default::default() };
/// let g = array![2.0f64, 0.0];
/// let grad = distill_backward(s.view(), t.view(), None, &o, &GradOutput::Array(g.view().into_dyn()))?;
/// // 2·(p − q) in row 0, zeros in row 1
/// assert!((grad[[0, 1]] - 0.5940655175753419).abs() < 1e-12);
/// assert_eq!(grad[[1, 0]], 0.0);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill_backward<T: Element, D1: Dimension, D2: Dimension>(
    student: ArrayView<'_, T, D1>,
    teacher: ArrayView<'_, T, D2>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<Array2<T>> {
    let (_, grad) = dense_impl(student, teacher, labels, opts, Some(grad_output))?;
    Ok(grad.unwrap_or_else(|| Array2::from_elem((0, 0), zero_t())))
}

/// Distillation loss against a sparse top-k teacher ([`SparseTeacher`]); the student `s` stays dense
/// `(rows, classes)`. Options, labels, reductions (with `V` = the student's `classes` in `Mean`) and
/// errors are those of [`distill`]; in addition the teacher arrays must both be `(rows, k)`, each index
/// must lie in `[0, classes)` and not repeat within its row.
///
/// PyTorch equivalent (forward KL, no tail): with `lp = F.log_softmax(s / T, 1)`,
/// `F.kl_div(lp.gather(1, idx), logprobs, reduction='batchmean', log_target=True) * T**2`; with the tail
/// bucket, both sides get one more column (`log(1 − Σ exp(logprobs))` and the student's log mass
/// outside `idx`).
///
/// ```
/// use infoloss::distill::{distill_topk, DistillOptions, SparseTeacher};
/// use infoloss::ndarray::array;
/// let s = array![[1.0f64, 2.0, 0.5, -1.0]];
/// let idx = array![[2i64, 1]];
/// let lq = array![[-0.4f64, -1.5]]; // teacher: q = 0.670 at class 2, 0.223 at class 1
/// let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
/// let loss = distill_topk(s.view(), &teacher, None, &DistillOptions::default())?.scalar().unwrap();
/// // Σ_b q_b·(log q_b − log p_b) over buckets {class 2, class 1, tail}
/// assert!((loss - 0.7522841393309505).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill_topk<T: Element, D: Dimension>(
    student: ArrayView<'_, T, D>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Loss<T>> {
    Ok(topk_impl(student, teacher, labels, opts, None)?.0)
}

/// [`distill_topk`]'s loss and its gradient with respect to the student logits (upstream gradient 1),
/// shape `(rows, classes)`.
///
/// Forward KL with `k = classes` and no tail gives `(p − q)/T` as the dense loss; with a tail the
/// classes outside the top-k share the tail's gradient in proportion to their probability:
/// `∂/∂s_i = (p_i·Σ_b q_b − q_tail·p_i/p_tail)/T` for `i` outside, `(p_i·Σ_b q_b − q_i)/T` inside.
///
/// ```
/// use infoloss::distill::{distill_topk_with_grad, DistillOptions, SparseTeacher};
/// use infoloss::ndarray::array;
/// let s = array![[1.0f64, 2.0, 0.5, -1.0]];
/// let idx = array![[2i64, 1]];
/// let lq = array![[-0.4f64, -1.5]];
/// let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
/// let (_, grad) = distill_topk_with_grad(s.view(), &teacher, None, &DistillOptions::default())?;
/// assert!((grad[[0, 2]] - (-0.5343311302421339)).abs() < 1e-12);
/// assert!(grad.sum().abs() < 1e-15); // softmax gradients sum to zero
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill_topk_with_grad<T: Element, D: Dimension>(
    student: ArrayView<'_, T, D>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<(Loss<T>, Array2<T>)> {
    let (loss, grad) = topk_impl(student, teacher, labels, opts, Some(&GradOutput::one()))?;
    Ok((loss, grad.unwrap_or_else(|| Array2::from_elem((0, 0), zero_t()))))
}

/// [`distill_topk_with_grad`] writing the gradient over the student logits (see
/// [`distill_with_grad_in_place`]): returns the loss, leaves `∂loss/∂student` in `student`, bit for bit
/// [`distill_topk_with_grad`]'s gradient. Errors: those of [`distill_topk`] (nothing is written when
/// the inputs are rejected).
///
/// ```
/// use infoloss::distill::{distill_topk_with_grad_in_place, DistillOptions, SparseTeacher};
/// use infoloss::ndarray::array;
/// let mut s = array![[1.0f64, 2.0, 0.5, -1.0]];
/// let idx = array![[2i64, 1]];
/// let lq = array![[-0.4f64, -1.5]];
/// let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
/// let loss = distill_topk_with_grad_in_place(s.view_mut(), &teacher, None, &DistillOptions::default())?;
/// assert!((loss.scalar().unwrap() - 0.7522841393309505).abs() < 1e-12);
/// assert!((s[[0, 2]] - (-0.5343311302421339)).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill_topk_with_grad_in_place<T: Element, D: Dimension>(
    student: ArrayViewMut<'_, T, D>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Loss<T>> {
    let s = as_2d_mut(OP_TOPK, student)?;
    topk_in_place(s, teacher, labels, opts, &GradOutput::one())
}

/// Gradient of [`distill_topk`] with respect to the student logits for an upstream gradient
/// `grad_output` (scalar, or `(rows,)` for `Reduction::None`).
///
/// ```
/// use infoloss::distill::{distill_topk_backward, DistillOptions, SparseTeacher};
/// use infoloss::{GradOutput, ndarray::array};
/// let s = array![[1.0f64, 2.0, 0.5, -1.0]];
/// let idx = array![[2i64, 1]];
/// let lq = array![[-0.4f64, -1.5]];
/// let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
/// let g = distill_topk_backward(s.view(), &teacher, None, &DistillOptions::default(), &GradOutput::Scalar(2.0))?;
/// assert!((g[[0, 2]] - 2.0 * (-0.5343311302421339)).abs() < 1e-12);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn distill_topk_backward<T: Element, D: Dimension>(
    student: ArrayView<'_, T, D>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<Array2<T>> {
    let (_, grad) = topk_impl(student, teacher, labels, opts, Some(grad_output))?;
    Ok(grad.unwrap_or_else(|| Array2::from_elem((0, 0), zero_t())))
}
