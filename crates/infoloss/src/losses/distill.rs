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
//! | [`Reduction`] | result | PyTorch expression it equals (kept rows only) |
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
//! is what `tests/fast_distill.rs` holds it to; the torch fixtures pass at rtol 1e-6 / atol 1e-7 on both paths.
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

use std::f64::consts::LN_2;

use ndarray::{
    Array2, ArrayD, ArrayView, ArrayView1, ArrayView2, ArrayViewMut, ArrayViewMut2, Dimension, Ix2, IxDyn,
};
use rayon::prelude::*;

use crate::base::shape::checked_numel;
use crate::kernels::Kernels;
use crate::kernels::distill::{KdDiv, KdGrad, KdRow, KdRowCfg};
use crate::kernels::topk::{TopkRowCfg, TopkScale, TopkSums};
use crate::{Element, Error, GradOutput, Loss, Real, Reduction, Result};

const OP: &str = "distill";
const OP_TOPK: &str = "distill_topk";
const NEG_INF: f64 = f64::NEG_INFINITY;

pub use crate::options::Divergence;

pub use crate::options::DistillOptions;

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

// =============================================================================================
// Public functions
// =============================================================================================

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

// =============================================================================================
// Validation and planning
// =============================================================================================

#[inline]
pub(crate) fn zero_t<T: Element>() -> T {
    T::from_acc(<T::Acc as Real>::c(0.0))
}

#[inline]
pub(crate) fn to_t<T: Element>(x: f64) -> T {
    T::from_acc(<T::Acc as Real>::c(x))
}

/// Views an input as 2-D `(rows, classes)` or names its shape in the error.
pub(crate) fn as_2d<'a, T, D: Dimension>(
    op: &'static str,
    name: &'static str,
    a: ArrayView<'a, T, D>,
) -> Result<ArrayView2<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>()
        .map_err(|_| Error::bad_rank(op, name, &shape, "2 dimensions (rows × classes)"))
}

/// Checks a temperature: finite and > 0.
pub(crate) fn check_temperature(op: &'static str, t: f64) -> Result<f64> {
    if t.is_finite() && t > 0.0 {
        Ok(t)
    } else {
        Err(Error::invalid_option(op, "temperature", t, "must be a finite number > 0"))
    }
}

fn check_options(op: &'static str, opts: &DistillOptions, have_labels: bool) -> Result<()> {
    check_temperature(op, opts.temperature)?;
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(Error::invalid_option(op, "alpha", opts.alpha, "must be in [0, 1]"));
    }
    if opts.alpha < 1.0 && !have_labels {
        return Err(Error::invalid_option(
            op,
            "alpha",
            opts.alpha,
            "alpha < 1 mixes in the hard-label cross-entropy and needs labels",
        ));
    }
    if let Divergence::GeneralizedJsd { beta } = opts.divergence {
        if !(0.0..=1.0).contains(&beta) {
            return Err(Error::invalid_option(op, "beta", beta, "must be in [0, 1]"));
        }
    }
    if let Some(n) = opts.normalizer {
        if !(n.is_finite() && n > 0.0) {
            return Err(Error::invalid_option(op, "normalizer", n, "must be a finite number > 0"));
        }
        if !matches!(opts.reduction, Reduction::BatchMean | Reduction::Mean) {
            return Err(Error::invalid_option(
                op,
                "normalizer",
                n,
                format!("replaces the divisor of batchmean or mean, but reduction is {}", opts.reduction),
            ));
        }
    }
    Ok(())
}

/// What happens to one row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RowKind {
    /// Labelled `ignore_index`: no loss, no gradient.
    Ignored,
    /// Kept, with its class label if labels were given.
    Keep(Option<usize>),
}

/// Everything the row loop needs besides the data.
struct Plan {
    rows: usize,
    classes: usize,
    kinds: Vec<RowKind>,
    /// `alpha · c_T` (0 when alpha = 0).
    soft_w: f64,
    /// `1 − alpha`.
    hard_w: f64,
    /// Divisor of the soft sum.
    soft_div: f64,
    /// Divisor of the cross-entropy sum.
    hard_div: f64,
    reduction: Reduction,
    cfg: RowCfg,
}

/// Per-row configuration shared by all rows.
#[derive(Debug, Clone, Copy)]
struct RowCfg {
    temp: f64,
    div: Divergence,
    soft_on: bool,
    ce_on: bool,
    add_tail: bool,
}

fn make_plan(
    op: &'static str,
    rows: usize,
    classes: usize,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    add_tail: bool,
) -> Result<Plan> {
    check_options(op, opts, labels.is_some())?;
    // One entry per row, allocated fallibly: a `[2^40, 0]` student holds nothing but has that many rows.
    let mut kinds = crate::base::array::try_vec(op, "rows", rows)?;
    match labels {
        None => kinds.resize(rows, RowKind::Keep(None)),
        Some(y) => {
            if y.len() != rows {
                return Err(Error::shape_mismatch(
                    op,
                    "labels",
                    y.shape(),
                    "student",
                    &[rows, classes],
                    "do not match: labels must have one entry per row",
                ));
            }
            for (r, &v) in y.iter().enumerate() {
                if v == opts.ignore_index {
                    kinds.push(RowKind::Ignored);
                } else if v >= 0 && (v as u64) < classes as u64 {
                    kinds.push(RowKind::Keep(Some(v as usize)));
                } else {
                    return Err(Error::target_out_of_range(op, &[r], v, classes));
                }
            }
        }
    }
    let kept = kinds.iter().filter(|k| matches!(k, RowKind::Keep(_))).count();
    let n = opts.normalizer.unwrap_or(kept as f64);
    let (soft_div, hard_div) = match opts.reduction {
        Reduction::None | Reduction::Sum => (1.0, 1.0),
        Reduction::BatchMean => (n, n),
        Reduction::Mean => (n * classes as f64, n),
    };
    let t = opts.temperature;
    let c_t = if opts.t2_scaling { t * t } else { 1.0 };
    let soft_on = opts.alpha > 0.0;
    let ce_on = opts.alpha < 1.0;
    Ok(Plan {
        rows,
        classes,
        kinds,
        soft_w: if soft_on { opts.alpha * c_t } else { 0.0 },
        hard_w: if ce_on { 1.0 - opts.alpha } else { 0.0 },
        soft_div,
        hard_div,
        reduction: opts.reduction,
        cfg: RowCfg { temp: t, div: opts.divergence, soft_on, ce_on, add_tail },
    })
}

/// The upstream gradient per row.
enum Upstream {
    Scalar(f64),
    PerRow(Vec<f64>),
}

impl Upstream {
    fn resolve<T: Element>(
        op: &'static str,
        g: &GradOutput<'_, T>,
        reduction: Reduction,
        rows: usize,
    ) -> Result<Self> {
        if reduction == Reduction::None {
            match g.check(op, &[rows])? {
                Some(a) => Ok(Upstream::PerRow(a.iter().map(|v| v.to_acc().f64()).collect())),
                None => Ok(Upstream::Scalar(g.scalar_value().map_or(1.0, |v| v.to_acc().f64()))),
            }
        } else {
            Ok(Upstream::Scalar(g.expect_scalar(op)?.to_acc().f64()))
        }
    }

    #[inline]
    fn at(&self, r: usize) -> f64 {
        match self {
            Upstream::Scalar(g) => *g,
            Upstream::PerRow(v) => v.get(r).copied().unwrap_or(0.0),
        }
    }
}

/// Per-worker scratch buffers (reused across rows).
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) s: Vec<f64>,
    pub(crate) t: Vec<f64>,
    idx: Vec<usize>,
    mark: Vec<bool>,
    lp: Vec<f64>,
    lq: Vec<f64>,
    e: Vec<f64>,
    kept: KeptExps,
}

/// Widens a row into `out`.
#[inline]
pub(crate) fn gather<T: Element>(row: ArrayView1<'_, T>, out: &mut Vec<f64>) {
    out.clear();
    out.extend(row.iter().map(|x| x.to_acc().f64()));
}

/// Rows per parallel task: enough that a task touches ~32k elements.
#[inline]
pub(crate) fn min_rows_per_task(classes: usize) -> usize {
    (32_768 / classes.max(1)).max(1)
}

/// The per-row gradient destination: buffer, soft coefficient (already divided by T), CE coefficient.
type GradDst<'a> = Option<(&'a mut [f64], f64, f64)>;

/// Runs `row_fn` over all rows (in parallel), then reduces. `row_fn(r, label, scratch, grad)` returns
/// the row's `(soft divergence, cross-entropy)` and, when asked, writes the row's gradient.
fn engine<T, F>(
    op: &'static str,
    plan: &Plan,
    grad_output: Option<&GradOutput<'_, T>>,
    row_fn: F,
) -> Result<(Loss<T>, Option<Array2<T>>)>
where
    T: Element,
    F: Fn(usize, Option<usize>, &mut Scratch, GradDst<'_>) -> (f64, f64) + Sync,
{
    let (rows, v) = (plan.rows, plan.classes);
    let min_len = min_rows_per_task(v);
    let up = match grad_output {
        Some(g) => Some(Upstream::resolve(op, g, plan.reduction, rows)?),
        None => None,
    };
    let mut grad = None;
    let per_row: Vec<(f64, f64)> = match &up {
        // Rows of no class: each divergence and cross-entropy is an empty sum, 0, in both paths (the
        // row functions are not called on empty rows).
        _ if v == 0 => {
            if up.is_some() {
                grad = Some(
                    Array2::from_shape_vec((rows, 0), Vec::new())
                        .map_err(|e| Error::too_large(op, "gradient", e.to_string()))?,
                );
            }
            let mut z = crate::base::array::try_vec(op, "rows", rows)?;
            z.resize(rows, (0.0, 0.0));
            z
        }
        Some(up) => {
            let numel = checked_numel(op, "student", &[rows, v])?;
            let mut buf = crate::kernels::alloc::try_zeroed::<T>(op, "gradient", numel)?;
            let soft_base = plan.soft_w / plan.soft_div / plan.cfg.temp;
            let ce_base = plan.hard_w / plan.hard_div;
            let res = buf
                .par_chunks_mut(v)
                .enumerate()
                .with_min_len(min_len)
                .map_init(
                    || (Scratch::default(), Vec::<f64>::new()),
                    |(sc, g), (r, out)| match plan.kinds.get(r) {
                        Some(RowKind::Keep(label)) => {
                            let gr = up.at(r);
                            g.clear();
                            g.resize(v, 0.0);
                            let res =
                                row_fn(r, *label, sc, Some((g.as_mut_slice(), gr * soft_base, gr * ce_base)));
                            for (o, &x) in out.iter_mut().zip(g.iter()) {
                                *o = to_t(x);
                            }
                            res
                        }
                        _ => (0.0, 0.0),
                    },
                )
                .collect();
            grad = Some(
                Array2::from_shape_vec((rows, v), buf)
                    .map_err(|e| Error::too_large(op, "gradient", e.to_string()))?,
            );
            res
        }
        None => (0..rows)
            .into_par_iter()
            .with_min_len(min_len)
            .map_init(Scratch::default, |sc, r| match plan.kinds.get(r) {
                Some(RowKind::Keep(label)) => row_fn(r, *label, sc, None),
                _ => (0.0, 0.0),
            })
            .collect(),
    };
    Ok((reduce_rows(op, plan, &per_row)?, grad))
}

/// The loss from the per-row `(soft divergence, cross-entropy)` pairs, summed in row order in `f64`.
fn reduce_rows<T: Element>(op: &'static str, plan: &Plan, per_row: &[(f64, f64)]) -> Result<Loss<T>> {
    Ok(match plan.reduction {
        Reduction::None => {
            let vals: Vec<T> = per_row
                .iter()
                .zip(&plan.kinds)
                .map(|(&(soft, ce), k)| match k {
                    RowKind::Keep(_) => to_t(plan.soft_w * soft + plan.hard_w * ce),
                    RowKind::Ignored => zero_t(),
                })
                .collect();
            Loss::Elementwise(
                ArrayD::from_shape_vec(IxDyn(&[plan.rows]), vals)
                    .map_err(|e| Error::too_large(op, "loss", e.to_string()))?,
            )
        }
        _ => {
            let (mut soft, mut ce) = (0.0f64, 0.0f64);
            for &(a, b) in per_row {
                soft += a;
                ce += b;
            }
            Loss::Scalar(to_t(plan.soft_w * (soft / plan.soft_div) + plan.hard_w * (ce / plan.hard_div)))
        }
    })
}

fn dense_impl<T: Element, D1: Dimension, D2: Dimension>(
    student: ArrayView<'_, T, D1>,
    teacher: ArrayView<'_, T, D2>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    dense_core(as_2d(OP, "student", student)?, as_2d(OP, "teacher", teacher)?, labels, opts, grad_output)
}

/// [`dense_impl`] of two-dimensional views.
#[inline(never)]
fn dense_core<T: Element>(
    s: ArrayView2<'_, T>,
    t: ArrayView2<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let plan = dense_plan(s.shape(), t.shape(), labels, opts)?;
    if let Some(job) = FastJob::new::<T>(&plan, grad_output)? {
        return fast_dense(Student::View(s), t, &plan, &job);
    }
    let cfg = plan.cfg;
    engine(OP, &plan, grad_output, |r, label, sc, grad| {
        gather(s.row(r), &mut sc.s);
        gather(t.row(r), &mut sc.t);
        dense_row(&sc.s, &sc.t, label, &cfg, &mut sc.kept, grad)
    })
}

/// The plan of a dense call, after checking that student and teacher have the same shape.
fn dense_plan(
    s: &[usize],
    t: &[usize],
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Plan> {
    if s != t {
        return Err(Error::shape_mismatch(OP, "student", s, "teacher", t, "must be equal"));
    }
    let (rows, classes) = (s.first().copied().unwrap_or(0), s.get(1).copied().unwrap_or(0));
    make_plan(OP, rows, classes, labels, opts, false)
}

/// The (2-D) student of an in-place call.
fn as_2d_mut<'a, T, D: Dimension>(
    op: &'static str,
    a: ArrayViewMut<'a, T, D>,
) -> Result<ArrayViewMut2<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>()
        .map_err(|_| Error::bad_rank(op, "student", &shape, "2 dimensions (rows × classes)"))
}

/// [`distill_with_grad_in_place`] for an upstream gradient: the loss, with `grad_output ×` the
/// gradient written over the student logits.
#[inline(never)]
pub(crate) fn dense_in_place<T: Element>(
    mut student: ArrayViewMut2<'_, T>,
    teacher: ArrayView2<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<Loss<T>> {
    let plan = dense_plan(student.shape(), teacher.shape(), labels, opts)?;
    if let Some(job) = FastJob::new::<T>(&plan, Some(grad_output))? {
        if let Some(buf) = student.as_slice_mut() {
            return Ok(fast_dense(Student::InPlace(buf), teacher, &plan, &job)?.0);
        }
    }
    let (loss, grad) = dense_impl(student.view(), teacher, labels, opts, Some(grad_output))?;
    if let Some(g) = grad {
        student.assign(&g);
    }
    Ok(loss)
}

/// [`distill_topk_with_grad_in_place`] for an upstream gradient (see [`dense_in_place`]).
#[inline(never)]
pub(crate) fn topk_in_place<T: Element>(
    mut student: ArrayViewMut2<'_, T>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<Loss<T>> {
    let plan = topk_plan(student.shape(), teacher, labels, opts)?;
    if let Some(job) = FastJob::with_div(OP_TOPK, &plan, Some(grad_output), KdDiv::Forward, 0.0)? {
        if let Some(buf) = student.as_slice_mut() {
            let (idx, lq) = (teacher.indices, teacher.logprobs);
            return Ok(fast_topk(Student::InPlace(buf), idx, lq, &plan, &job)?.0);
        }
    }
    let (loss, grad) = topk_impl(student.view(), teacher, labels, opts, Some(grad_output))?;
    if let Some(g) = grad {
        student.assign(&g);
    }
    Ok(loss)
}

fn topk_impl<T: Element, D: Dimension>(
    student: ArrayView<'_, T, D>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    topk_core(as_2d(OP_TOPK, "student", student)?, teacher, labels, opts, grad_output)
}

/// [`topk_impl`] of a two-dimensional student.
#[inline(never)]
fn topk_core<T: Element>(
    s: ArrayView2<'_, T>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let classes = s.ncols();
    let plan = topk_plan(s.shape(), teacher, labels, opts)?;
    let (idx, lq) = (teacher.indices, teacher.logprobs);
    if let Some(job) = FastJob::with_div(OP_TOPK, &plan, grad_output, KdDiv::Forward, 0.0)? {
        return fast_topk(Student::View(s), idx, lq, &plan, &job);
    }
    let cfg = plan.cfg;
    engine(OP_TOPK, &plan, grad_output, |r, label, sc, grad| {
        gather(s.row(r), &mut sc.s);
        gather(lq.row(r), &mut sc.t);
        sc.idx.clear();
        sc.idx.extend(idx.row(r).iter().map(|&v| v as usize));
        if sc.mark.len() != classes {
            sc.mark.clear();
            sc.mark.resize(classes, false);
        }
        topk_row(sc, label, &cfg, grad)
    })
}

/// The plan of a top-k call, after checking the teacher's shapes against the student's `s` and its
/// indices (each in range, none repeated within a row).
fn topk_plan<T>(
    s: &[usize],
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Plan> {
    let (rows, classes) = (s.first().copied().unwrap_or(0), s.get(1).copied().unwrap_or(0));
    let (idx, lq) = (teacher.indices, teacher.logprobs);
    if idx.shape() != lq.shape() {
        return Err(Error::shape_mismatch(
            OP_TOPK,
            "teacher indices",
            idx.shape(),
            "teacher logprobs",
            lq.shape(),
            "must be equal",
        ));
    }
    if idx.nrows() != rows {
        return Err(Error::shape_mismatch(
            OP_TOPK,
            "teacher indices",
            idx.shape(),
            "student",
            s,
            "must have the same number of rows",
        ));
    }
    let plan = make_plan(OP_TOPK, rows, classes, labels, opts, teacher.add_tail)?;
    // Every index in range and unique within its row.
    let mut seen = vec![false; if idx.is_empty() { 0 } else { classes }];
    // (An empty index array has nothing to check, however many rows it has.)
    for (r, row) in idx.outer_iter().enumerate().take(if idx.is_empty() { 0 } else { rows }) {
        for (j, &v) in row.iter().enumerate() {
            let slot = if v >= 0 { usize::try_from(v).ok().and_then(|u| seen.get_mut(u)) } else { None };
            match slot {
                None => {
                    return Err(Error::invalid_value(
                        OP_TOPK,
                        "teacher indices",
                        &[r, j],
                        v as f64,
                        format!("is out of range for {classes} classes"),
                    ));
                }
                Some(true) => {
                    return Err(Error::invalid_value(
                        OP_TOPK,
                        "teacher indices",
                        &[r, j],
                        v as f64,
                        "repeats an index earlier in its row",
                    ));
                }
                Some(m) => *m = true,
            }
        }
        for &v in row.iter() {
            if let Some(m) = seen.get_mut(v as usize) {
                *m = false;
            }
        }
    }
    Ok(plan)
}

// =============================================================================================
// The SIMD fast path (f32, f16, bf16)
// =============================================================================================

crate::base::path::deprecated_switches!("distill");

/// Whether the fast path is on for this element type on this thread.
pub(crate) fn fast_path_for<T: Element>() -> bool {
    T::F32_COMPUTE && crate::base::path::fast_path()
}

/// Per-worker buffers of the fast path.
#[derive(Default)]
pub(crate) struct FastScratch {
    pub(crate) s: Vec<f32>,
    pub(crate) t: Vec<f32>,
    pub(crate) g: Vec<f32>,
    pub(crate) eb: Vec<f32>,
    /// For rows handed to the reference.
    pub(crate) reference: Scratch,
    pub(crate) g64: Vec<f64>,
}

/// A row as `f32`: the row itself for contiguous `f32` data, else converted into `buf`.
pub(crate) fn row_f32<'a, T: Element>(row: ArrayView1<'a, T>, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match row.to_slice() {
        Some(sl) => match T::as_f32(sl) {
            Some(f) => f,
            None => {
                buf.resize(sl.len(), 0.0);
                crate::kernels::convert::widen(sl, buf);
                buf
            }
        },
        None => {
            buf.clear();
            buf.extend(row.iter().map(|v| v.to_acc().f64() as f32));
            buf
        }
    }
}

/// Runs the kernel on one row, writing its gradient (scaled by `soft`/`ce`) into `out` when given.
/// `None` (nothing written) for the rows the kernel leaves to the reference.
pub(crate) fn fast_row<T: Element>(
    s: ArrayView1<'_, T>,
    t: ArrayView1<'_, T>,
    cfg: KdRowCfg,
    out: Option<(&mut [T], f64, f64)>,
    sc: &mut FastScratch,
) -> Option<KdRow> {
    let FastScratch { s: sb, t: tb, g, eb, .. } = sc;
    let (sr, tr) = (row_f32(s, sb), row_f32(t, tb));
    let k = Kernels::new();
    match out {
        // total variation and JSD work from the cache even for the loss alone
        None if cfg.div.needs_cache() => {
            eb.resize(sr.len(), 0.0);
            g.resize(sr.len(), 0.0);
            let grad = KdGrad { out: g.as_mut_slice(), eb: eb.as_mut_slice(), soft: 0.0, ce: 0.0 };
            k.kd_row_f32(sr, tr, cfg, Some(grad))
        }
        None => k.kd_row_f32(sr, tr, cfg, None),
        Some((o, soft, ce)) => {
            eb.resize(sr.len(), 0.0);
            let eb = eb.as_mut_slice();
            if let Some(direct) = T::as_f32_mut(o) {
                k.kd_row_f32(sr, tr, cfg, Some(KdGrad { out: direct, eb, soft, ce }))
            } else {
                g.resize(sr.len(), 0.0);
                let r = k.kd_row_f32(sr, tr, cfg, Some(KdGrad { out: g.as_mut_slice(), eb, soft, ce }))?;
                crate::kernels::convert::narrow(g, o);
                Some(r)
            }
        }
    }
}

/// Rounds an `f64` gradient row into the output row.
pub(crate) fn store_f64_row<T: Element>(g: &[f64], out: &mut [T]) {
    for (o, &x) in out.iter_mut().zip(g) {
        *o = to_t(x);
    }
}

/// What the fast dense path needs besides the plan.
struct FastJob {
    div: KdDiv,
    beta: f64,
    up: Option<Upstream>,
    soft_base: f64,
    ce_base: f64,
}

impl FastJob {
    /// `Some` when the fast dense path takes this call (see [`with_reference_path`]).
    fn new<T: Element>(plan: &Plan, grad_output: Option<&GradOutput<'_, T>>) -> Result<Option<FastJob>> {
        let (div, beta) = match plan.cfg.div {
            Divergence::ForwardKl | Divergence::GeneralizedJsd { beta: 0.0 } => (KdDiv::Forward, 0.0),
            Divergence::ReverseKl | Divergence::GeneralizedJsd { beta: 1.0 } => (KdDiv::Reverse, 1.0),
            Divergence::TotalVariation => (KdDiv::Tvd, 0.0),
            Divergence::GeneralizedJsd { beta } if beta > 0.0 && beta < 1.0 => (KdDiv::Jsd, beta),
            _ => return Ok(None),
        };
        Self::with_div(OP, plan, grad_output, div, beta)
    }

    /// `Some` when the fast path takes this call, with the dense kernel's divergence `div` (unused by
    /// the top-k path, whose bucket math takes any divergence).
    fn with_div<T: Element>(
        op: &'static str,
        plan: &Plan,
        grad_output: Option<&GradOutput<'_, T>>,
        div: KdDiv,
        beta: f64,
    ) -> Result<Option<FastJob>> {
        if !(fast_path_for::<T>() && plan.cfg.soft_on && plan.rows > 0 && plan.classes > 0) {
            return Ok(None);
        }
        let soft_base = plan.soft_w / plan.soft_div / plan.cfg.temp;
        let ce_base = plan.hard_w / plan.hard_div;
        let up = match grad_output {
            Some(g) => Some(Upstream::resolve(op, g, plan.reduction, plan.rows)?),
            None => None,
        };
        let finite = |g: f64| g.is_finite() && (g * soft_base).is_finite() && (g * ce_base).is_finite();
        let ok = match &up {
            None => true,
            Some(Upstream::Scalar(g)) => finite(*g),
            Some(Upstream::PerRow(v)) => v.iter().all(|&g| finite(g)),
        };
        Ok(ok.then_some(FastJob { div, beta, up, soft_base, ce_base }))
    }
}

/// [`dense_impl`] on the fast path (see [`fast_drive`]).
fn fast_dense<T: Element>(
    s: Student<'_, T>,
    t: ArrayView2<'_, T>,
    plan: &Plan,
    job: &FastJob,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let v = plan.classes;
    let cfg = plan.cfg;
    fast_drive(OP, plan, job, s, |r, label, soft, ce, s_row, out, sc| {
        let kcfg = KdRowCfg { ts: cfg.temp, tt: cfg.temp, div: job.div, beta: job.beta, label };
        let mut out = out;
        if let Some(k) = fast_row(s_row, t.row(r), kcfg, out.as_deref_mut().map(|o| (o, soft, ce)), sc) {
            let soft = match job.div {
                KdDiv::Forward => k.fkl,
                KdDiv::Reverse => k.rkl,
                KdDiv::Tvd => k.tvd,
                KdDiv::Jsd => k.jsd,
            };
            return (soft, k.ce);
        }
        // a non-finite row: the reference, as `engine` runs it
        reference_row(v, out, soft, ce, sc, |rs, grad| {
            gather(s_row, &mut rs.s);
            gather(t.row(r), &mut rs.t);
            dense_row(&rs.s, &rs.t, label, &cfg, &mut rs.kept, grad)
        })
    })
}

/// One row on the `f64` reference (for the rows the kernels hand back): `f` runs the reference row
/// function with the worker's scratch and, when `out` is given, an `f64` gradient row scaled by
/// `soft`/`ce`, which is then rounded into `out`.
fn reference_row<T: Element>(
    v: usize,
    out: Option<&mut [T]>,
    soft: f64,
    ce: f64,
    sc: &mut FastScratch,
    f: impl FnOnce(&mut Scratch, GradDst<'_>) -> (f64, f64),
) -> (f64, f64) {
    match out {
        None => f(&mut sc.reference, None),
        Some(o) => {
            sc.g64.clear();
            sc.g64.resize(v, 0.0);
            let res = f(&mut sc.reference, Some((&mut sc.g64, soft, ce)));
            store_f64_row(&sc.g64, o);
            res
        }
    }
}

/// The student logits of a fast-path call: read from a view (the gradient goes into a new array), or
/// a row-major buffer that the gradient overwrites (`*_in_place`).
enum Student<'a, T> {
    View(ArrayView2<'a, T>),
    InPlace(&'a mut [T]),
}

/// The fast paths' driver: rows in parallel (each row on its own, so the thread count does not change
/// any bit), per-row `(soft, cross-entropy)` results summed in row order by [`reduce_rows`]. `row(r,
/// label, soft, ce, s_row, out, scratch)` computes kept row `r` from the student row `s_row` (label
/// already dropped when there is no cross-entropy term), writing its gradient scaled by `soft`/`ce`
/// into `out` when given. With [`Student::InPlace`] each row is copied into per-worker scratch before
/// its gradient overwrites it (ignored rows become 0) and no array is returned.
fn fast_drive<T: Element>(
    op: &'static str,
    plan: &Plan,
    job: &FastJob,
    student: Student<'_, T>,
    row: impl Fn(
        usize,
        Option<usize>,
        f64,
        f64,
        ArrayView1<'_, T>,
        Option<&mut [T]>,
        &mut FastScratch,
    ) -> (f64, f64)
    + Sync,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let (rows, v) = (plan.rows, plan.classes);
    let min_len = min_rows_per_task(v);
    let cfg = plan.cfg;
    let mut per_row = crate::base::array::try_vec(op, "rows", rows)?;
    per_row.resize(rows, (0.0f64, 0.0f64));
    let one =
        |r: usize, s_row: ArrayView1<'_, T>, out: Option<&mut [T]>, sc: &mut FastScratch| -> (f64, f64) {
            let Some(RowKind::Keep(label)) = plan.kinds.get(r) else { return (0.0, 0.0) };
            let label = if cfg.ce_on { *label } else { None };
            let g = job.up.as_ref().map_or(1.0, |u| u.at(r));
            row(r, label, g * job.soft_base, g * job.ce_base, s_row, out, sc)
        };
    let grad = match (student, job.up.is_some()) {
        (Student::InPlace(buf), true) if v > 0 => {
            buf.par_chunks_mut(v)
                .zip(per_row.par_iter_mut())
                .enumerate()
                .with_min_len(min_len)
                .for_each_init(
                    || (FastScratch::default(), Vec::<T>::new()),
                    |(sc, copy), (r, (o, slot))| {
                        if !matches!(plan.kinds.get(r), Some(RowKind::Keep(_))) {
                            o.fill(zero_t());
                            return;
                        }
                        copy.clear();
                        copy.extend_from_slice(o);
                        *slot = one(r, ArrayView1::from(copy.as_slice()), Some(o), sc);
                    },
                );
            None
        }
        (Student::InPlace(buf), _) => {
            let s = ArrayView2::from_shape((rows, v), &*buf)
                .map_err(|e| Error::too_large(op, "student", e.to_string()))?;
            loss_rows(&mut per_row, min_len, |r, sc| one(r, s.row(r), None, sc));
            None
        }
        (Student::View(s), true) => {
            let numel = checked_numel(op, "student", &[rows, v])?;
            let mut buf = crate::kernels::alloc::try_zeroed::<T>(op, "gradient", numel)?;
            buf.par_chunks_mut(v)
                .zip(per_row.par_iter_mut())
                .enumerate()
                .with_min_len(min_len)
                .for_each_init(FastScratch::default, |sc, (r, (o, slot))| {
                    *slot = one(r, s.row(r), Some(o), sc)
                });
            Some(
                Array2::from_shape_vec((rows, v), buf)
                    .map_err(|e| Error::too_large(op, "gradient", e.to_string()))?,
            )
        }
        (Student::View(s), false) => {
            loss_rows(&mut per_row, min_len, |r, sc| one(r, s.row(r), None, sc));
            None
        }
    };
    Ok((reduce_rows(op, plan, &per_row)?, grad))
}

/// `per_row[r] = f(r, scratch)` for every row, in parallel (the loss alone).
fn loss_rows(
    per_row: &mut [(f64, f64)],
    min_len: usize,
    f: impl Fn(usize, &mut FastScratch) -> (f64, f64) + Sync,
) {
    per_row
        .par_iter_mut()
        .enumerate()
        .with_min_len(min_len)
        .for_each_init(FastScratch::default, |sc, (r, slot)| *slot = f(r, sc));
}

/// [`topk_impl`] on the fast path: the dense row work (the student's log-sum-exps, the tail's, the
/// dense gradient pass) in the `f32` kernel [`Kernels::topk_row_f32`], the `k` buckets in `f64` as
/// the reference does them ([`bucket_divergence`]).
fn fast_topk<T: Element>(
    s: Student<'_, T>,
    idx: ArrayView2<'_, i64>,
    lq: ArrayView2<'_, T>,
    plan: &Plan,
    job: &FastJob,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let v = plan.classes;
    let cfg = plan.cfg;
    fast_drive(OP_TOPK, plan, job, s, |r, label, soft_c, ce_c, s_row, out, sc| {
        let mut out = out;
        let FastScratch { s: sbuf, g, reference: rs, .. } = &mut *sc;
        rs.idx.clear();
        rs.idx.extend(idx.row(r).iter().map(|&i| i as usize));
        gather(lq.row(r), &mut rs.t);
        let sr = row_f32(s_row, sbuf);
        let coef = (soft_c, ce_c);
        if let Some(res) = topk_fast_row(sr, label, &cfg, out.as_deref_mut(), coef, g, rs) {
            return res;
        }
        // a non-finite row: the reference, as `engine` runs it
        reference_row(v, out, soft_c, ce_c, sc, |rs, grad| {
            gather(s_row, &mut rs.s);
            if rs.mark.len() != v {
                rs.mark.clear();
                rs.mark.resize(v, false);
            }
            topk_row(rs, label, &cfg, grad)
        })
    })
}

/// One row of [`fast_topk`] (`rs.idx`, `rs.t` hold the row's teacher indices and log-probabilities):
/// the loss terms `(soft, cross-entropy)`, and with `out` the gradient scaled by `coef = (soft,
/// ce)`. `None` for a row the kernel hands back (then `out` holds nothing of use).
fn topk_fast_row<T: Element>(
    s: &[f32],
    label: Option<usize>,
    cfg: &RowCfg,
    out: Option<&mut [T]>,
    (soft_c, ce_c): (f64, f64),
    cache: &mut Vec<f32>,
    rs: &mut Scratch,
) -> Option<(f64, f64)> {
    let n = s.len();
    let Scratch { t: lq_in, idx, lp, lq, e, .. } = rs;
    let (idx, lq_in): (&[usize], &[f64]) = (idx, lq_in);
    let kcfg = TopkRowCfg { temp: cfg.temp, tail: cfg.add_tail, ce: label.is_some() };
    let write = out.is_some();
    let direct = write && T::DTYPE == crate::DType::F32;
    // the kernel's cache: the gradient row itself for f32, else `cache` (rounded into `rest` at the end)
    let (buf, rest): (&mut [f32], Option<&mut [T]>) = if direct {
        (T::as_f32_mut(out?)?, None)
    } else if write || cfg.add_tail {
        cache.resize(n, 0.0);
        (cache.as_mut_slice(), out)
    } else {
        (&mut [], None)
    };
    let (mut soft, mut gsum, mut c_tail) = (0.0f64, 0.0f64, 0.0f64);
    let mut finish = |sums: TopkSums| -> Option<TopkScale> {
        lp.clear();
        lq.clear();
        for (&i, &q) in idx.iter().zip(lq_in) {
            lp.push(*s.get(i)? as f64 / cfg.temp - sums.lse_s);
            lq.push(q);
        }
        if cfg.add_tail {
            lp.push(sums.lse_tail - sums.lse_s);
            lq.push(log1mexp(row_lse(lq_in, 1.0)));
        }
        soft = bucket_divergence(lp, lq, cfg.div, e);
        gsum = e.iter().sum();
        let e_tail = if cfg.add_tail { e.last().copied().unwrap_or(0.0) } else { 0.0 };
        let tail_on = cfg.add_tail && e_tail != 0.0 && sums.lse_tail > NEG_INF;
        c_tail = if tail_on { soft_c * e_tail } else { 0.0 };
        Some(TopkScale { c_p: -soft_c * gsum, c_tail, c_ce: if label.is_some() { ce_c } else { 0.0 } })
    };
    let sums = Kernels::new().topk_row_f32(s, idx, kcfg, buf, write, &mut finish)?;
    let ce = match label {
        Some(y) => sums.lse1 - *s.get(y)? as f64,
        None => 0.0,
    };
    if write {
        // the top-k entries: c·(e_b − p_i·Σe) (+ the cross-entropy's softmax), then the label's −c_ce
        for ((&i, &eb), &lpb) in idx.iter().zip(e.iter()).zip(lp.iter()) {
            let mut v = soft_c * (eb - lpb.exp() * gsum);
            if label.is_some() {
                v += ce_c * (*s.get(i)? as f64 - sums.lse1).exp();
            }
            *buf.get_mut(i)? = v as f32;
        }
        // the label's entry in f64 from its terms, so that `softmax(s)_y − 1` cancels exactly (as in
        // the reference) instead of against an f32 rounding
        if let Some(y) = label {
            let a = *s.get(y)? as f64;
            let soft_part = match idx.iter().position(|&i| i == y) {
                Some(j) => soft_c * (e.get(j)? - lp.get(j)?.exp() * gsum),
                None => {
                    let p = (a / cfg.temp - sums.lse_s).exp();
                    let tail =
                        if c_tail != 0.0 { c_tail * (a / cfg.temp - sums.lse_tail).exp() } else { 0.0 };
                    -soft_c * p * gsum + tail
                }
            };
            *buf.get_mut(y)? = (soft_part + ce_c * ((a - sums.lse1).exp() - 1.0)) as f32;
        }
        if let Some(o) = rest {
            crate::kernels::convert::narrow(buf, o);
        }
    }
    Some((soft, ce))
}

// =============================================================================================
// Row functions (f64; plain loops, to be replaced by SIMD kernels)
// =============================================================================================

/// Running log-sum-exp: `lse = m + ln z` with `z = Σ exp(x − m)` and `m` the running maximum
/// (the online softmax of Milakov & Gimelshein, 2018).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnlineLse {
    pub(crate) m: f64,
    pub(crate) z: f64,
}

impl OnlineLse {
    pub(crate) const EMPTY: OnlineLse = OnlineLse { m: NEG_INF, z: 0.0 };

    /// Adds `x`. Returns `(r, w)`: the factor by which the earlier terms were rescaled (1 if the
    /// maximum did not move) and the new term's weight `exp(x − m)` (0 for `x = −inf`, NaN for NaN).
    #[inline(always)]
    pub(crate) fn push(&mut self, x: f64) -> (f64, f64) {
        if x > self.m {
            let r = if self.m == NEG_INF { 0.0 } else { (self.m - x).exp() };
            self.z = self.z * r + 1.0;
            self.m = x;
            (r, 1.0)
        } else if x == NEG_INF {
            (1.0, 0.0)
        } else {
            let w = (x - self.m).exp();
            self.z += w;
            (1.0, w)
        }
    }

    /// `log Σ exp(x)`: −inf for no (or only −inf) terms, NaN if a term was NaN.
    #[inline]
    pub(crate) fn lse(&self) -> f64 {
        if self.z == 0.0 { NEG_INF } else { self.m + self.z.ln() }
    }
}

/// `(m, z)` with `m = max(x/temp)` and `z = Σ exp(x/temp − m)` in one online pass; `z` is NaN if an
/// element is NaN, 0 for no (or only `−inf`) elements.
pub(crate) fn online_sum_exp(x: &[f64], temp: f64) -> (f64, f64) {
    let mut acc = OnlineLse::EMPTY;
    for &v in x {
        acc.push(v / temp);
    }
    (acc.m, acc.z)
}

/// `log Σ exp(x_i / temp)` in one pass: −inf for no (or only −inf) terms, NaN if a term is NaN.
#[inline]
pub(crate) fn row_lse(x: &[f64], temp: f64) -> f64 {
    let mut acc = OnlineLse::EMPTY;
    for &v in x {
        acc.push(v / temp);
    }
    acc.lse()
}

/// One pass over a student row `s` and a teacher row `t`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairStats {
    /// `lse(s / ts)`.
    pub(crate) lse_s: f64,
    /// `lse(t / tt)`.
    pub(crate) lse_t: f64,
    /// `KL(q‖p)` with `q = softmax(t/tt)`, `p = softmax(s/ts)`.
    pub(crate) fkl: f64,
    /// `KL(p‖q)`.
    pub(crate) rkl: f64,
    /// `Σ exp(t/tt − max(t/tt))`, i.e. `1 / max(q)` when `tt = 1`.
    pub(crate) z_t: f64,
    /// `max(s/ts)`, `max(t/tt)` and `Σ exp(s/ts − max(s/ts))`: `p_i = exp(s_i/ts − max)/z_s` without
    /// the absorption of `ln z` into a huge `max` that `exp(s_i/ts − lse_s)` suffers.
    pub(crate) m_s: f64,
    pub(crate) m_t: f64,
    pub(crate) z_s: f64,
}

/// Block length of the fused pass: the running maxima advance once per block (the sums are rescaled
/// when they grow), and the exponentials inside a block are taken against that block's maxima.
const BLOCK: usize = 64;

/// `exp(x − m)`, with `x = −inf` giving 0 even when `m = −inf`; NaN propagates.
#[inline(always)]
fn exp_rel(x: f64, m: f64) -> f64 {
    if x == NEG_INF { 0.0 } else { (x - m).exp() }
}

/// Factor taking sums relative to the maximum `old` to the larger maximum `new`.
#[inline(always)]
fn rescale(old: f64, new: f64) -> f64 {
    if old == NEG_INF { 0.0 } else { (old - new).exp() }
}

/// The exponentials of the fused pass, kept for the gradient pass so that it needs no `exp` per
/// element: `ea[i] = exp(a_i − m_a(k))`, `eb[i] = exp(b_i − m_b(k))` with `m(k)` the running maxima
/// after block `k ∋ i`, so `p_i = ea[i]·exp(m_a(k) − lse(a))` and likewise `q_i`. Per-row scratch (two
/// rows of `f64`), reused across rows; never a full array.
#[derive(Debug, Default)]
pub(crate) struct KeptExps {
    ea: Vec<f64>,
    eb: Vec<f64>,
    m: Vec<[f64; 2]>,
}

/// The fused forward pass: with `a = s/ts`, `b = t/tt`, accumulates online (running maxima `m_a`,
/// `m_b`, sums rescaled whenever a maximum grows)
///
/// ```text
/// Z_a = Σ e^{a−m_a},  Z_b = Σ e^{b−m_b},  W_q = Σ e^{b−m_b}·(b − a),  W_p = Σ e^{a−m_a}·(a − b)
/// KL(q‖p) = W_q/Z_b − lse(b) + lse(a),    KL(p‖q) = W_p/Z_a − lse(a) + lse(b)
/// ```
///
/// (`E_q[b − a] = W_q/Z_b`). Terms whose weight is 0 (a `−inf` logit) are skipped: `0·log 0 = 0`.
/// With `keep`, the exponentials are also stored (see [`KeptExps`]).
pub(crate) fn pair_stats_keep(
    s: &[f64],
    t: &[f64],
    ts: f64,
    tt: f64,
    mut keep: Option<&mut KeptExps>,
) -> PairStats {
    if let Some(k) = keep.as_deref_mut() {
        k.ea.clear();
        k.eb.clear();
        k.m.clear();
    }
    let (mut ma, mut mb) = (NEG_INF, NEG_INF);
    let (mut za, mut zb, mut wq, mut wp) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut buf_a, mut buf_b) = ([0.0f64; BLOCK], [0.0f64; BLOCK]);
    let (mut exp_a, mut exp_b) = ([0.0f64; BLOCK], [0.0f64; BLOCK]);
    for (cs, ct) in s.chunks(BLOCK).zip(t.chunks(BLOCK)) {
        let n = cs.len().min(ct.len());
        let (mut ca, mut cb) = (NEG_INF, NEG_INF);
        for (((pa, pb), &x), &y) in buf_a.iter_mut().zip(buf_b.iter_mut()).zip(cs).zip(ct) {
            *pa = x / ts;
            *pb = y / tt;
            ca = ca.max(*pa);
            cb = cb.max(*pb);
        }
        if ca > ma {
            let r = rescale(ma, ca);
            za *= r;
            wp *= r;
            ma = ca;
        }
        if cb > mb {
            let r = rescale(mb, cb);
            zb *= r;
            wq *= r;
            mb = cb;
        }
        for (((&a, &b), ea_out), eb_out) in
            buf_a.iter().zip(buf_b.iter()).zip(exp_a.iter_mut()).zip(exp_b.iter_mut()).take(n)
        {
            let ea = exp_rel(a, ma);
            let eb = exp_rel(b, mb);
            za += ea;
            zb += eb;
            if eb != 0.0 {
                wq += eb * (b - a);
            }
            if ea != 0.0 {
                wp += ea * (a - b);
            }
            *ea_out = ea;
            *eb_out = eb;
        }
        if let Some(k) = keep.as_deref_mut() {
            k.ea.extend_from_slice(exp_a.get(..n).unwrap_or(&[]));
            k.eb.extend_from_slice(exp_b.get(..n).unwrap_or(&[]));
            k.m.push([ma, mb]);
        }
    }
    let lse = |m: f64, z: f64| if z == 0.0 { NEG_INF } else { m + z.ln() };
    let (lse_s, lse_t) = (lse(ma, za), lse(mb, zb));
    PairStats {
        lse_s,
        lse_t,
        fkl: wq / zb + lse_s - lse_t,
        rkl: wp / za + lse_t - lse_s,
        z_t: zb,
        m_s: ma,
        m_t: mb,
        z_s: za,
    }
}

/// [`pair_stats_keep`] without keeping the exponentials.
#[inline]
pub(crate) fn pair_stats(s: &[f64], t: &[f64], ts: f64, tt: f64) -> PairStats {
    pair_stats_keep(s, t, ts, tt, None)
}

/// `p_i` and `q_i` of a row from the kept exponentials, block by block, passed to `f(i, p_i, q_i)`.
#[inline(always)]
fn for_each_kept_pq(k: &KeptExps, st: &PairStats, mut f: impl FnMut(usize, f64, f64)) {
    let mut i = 0;
    for ((ea, eb), m) in k.ea.chunks(BLOCK).zip(k.eb.chunks(BLOCK)).zip(&k.m) {
        let fa = (m[0] - st.m_s).exp() / st.z_s;
        let fb = (m[1] - st.m_t).exp() / st.z_t;
        for (&x, &y) in ea.iter().zip(eb) {
            f(i, x * fa, y * fb);
            i += 1;
        }
    }
}

/// Forward-KL gradient from the kept exponentials: `out_i = coef·(p_i − q_i)`, plus, when `ce =
/// Some((y, c))` (temperature 1, so `softmax(s) = p`), the cross-entropy gradient `c·(p_i − [i = y])`.
fn fkl_grad_kept(k: &KeptExps, st: &PairStats, coef: f64, ce: Option<(usize, f64)>, out: &mut [f64]) {
    let cc = ce.map_or(0.0, |(_, c)| c);
    for_each_kept_pq(k, st, |i, p, q| {
        if let Some(o) = out.get_mut(i) {
            *o = coef * (p - q) + cc * p;
        }
    });
    if let Some((y, c)) = ce {
        if let Some(o) = out.get_mut(y) {
            *o -= c;
        }
    }
}

/// Reverse-KL gradient from the kept exponentials: `out_i = coef·p_i·(a_i − b_i − (lse_a − lse_b) − KL(p‖q))`.
fn rkl_grad_kept(s: &[f64], t: &[f64], temp: f64, k: &KeptExps, st: &PairStats, coef: f64, out: &mut [f64]) {
    let shift = st.lse_s - st.lse_t + st.rkl;
    for_each_kept_pq(k, st, |i, p, _| {
        if let (Some(o), Some(&x), Some(&y)) = (out.get_mut(i), s.get(i), t.get(i)) {
            *o = if p == 0.0 { 0.0 } else { coef * p * (x / temp - y / temp - shift) };
        }
    });
}

/// Gradient of `KL(q‖p)` wrt `s` times `coef·ts` (callers fold `1/ts` into `coef`):
/// `out_i = coef·(p_i − q_i)`.
pub(crate) fn fkl_grad(s: &[f64], t: &[f64], ts: f64, tt: f64, st: &PairStats, coef: f64, out: &mut [f64]) {
    for ((o, &x), &y) in out.iter_mut().zip(s).zip(t) {
        let p = (x / ts - st.lse_s).exp();
        let q = (y / tt - st.lse_t).exp();
        *o = coef * (p - q);
    }
}

/// `w·d` with `0·d = 0` (the `xlogy` convention).
#[inline(always)]
fn xl(w: f64, d: f64) -> f64 {
    if w == 0.0 { 0.0 } else { w * d }
}

/// `log(e^x + e^y)`, exact for infinite arguments, NaN if either is NaN.
#[inline(always)]
fn logaddexp(x: f64, y: f64) -> f64 {
    let (hi, lo) = if x > y { (x, y) } else { (y, x) };
    if lo == NEG_INF { hi } else { hi + (lo - hi).exp().ln_1p() }
}

/// `log(1 − e^x)` for `x ≤ 0` without cancellation; −inf for `x ≥ 0` (no mass left), 0 for `x = −inf`.
#[inline]
pub(crate) fn log1mexp(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x >= 0.0 {
        NEG_INF
    } else if x > -LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

/// Generalized JSD for `0 < β < 1` (loss, and gradient `coef·(1−β)·p·(log p − log m − KL(p‖m))`),
/// with `p`, `q` from pass 1's kept exponentials. This is pass 2 (the loss, storing `log p − log m`
/// in `out`) and pass 3 (the gradient).
fn jsd_row(
    s: &[f64],
    t: &[f64],
    temp: f64,
    kept: &KeptExps,
    st: &PairStats,
    beta: f64,
    grad: Option<(&mut [f64], f64)>,
) -> f64 {
    let (lb, l1b) = (beta.ln(), (-beta).ln_1p());
    let (mut loss, mut kpm) = (0.0f64, 0.0f64);
    let mut out = grad;
    for_each_kept_pq(kept, st, |i, p, q| {
        let (Some(&x), Some(&y)) = (s.get(i), t.get(i)) else { return };
        let lp = x / temp - st.lse_s;
        let lq = y / temp - st.lse_t;
        let lm = logaddexp(lq + lb, lp + l1b);
        let tq = xl(q, lq - lm);
        let tp = xl(p, lp - lm);
        loss += beta * tq + (1.0 - beta) * tp;
        kpm += tp;
        if let Some(o) = out.as_mut().and_then(|(o, _)| o.get_mut(i)) {
            *o = lp - lm;
        }
    });
    if let Some((o, coef)) = out {
        let c = coef * (1.0 - beta);
        for_each_kept_pq(kept, st, |i, p, _| {
            if let Some(g) = o.get_mut(i) {
                *g = if p == 0.0 { 0.0 } else { c * p * (*g - kpm) };
            }
        });
    }
    loss
}

/// `sign(d)/2` with `sign(0) = 0` and `sign(NaN) = 0`, as PyTorch's `abs` backward (`torch.sign(nan)`
/// is 0): a NaN teacher row gives a NaN loss but a zero gradient, as in torch. A NaN student row still
/// gets a NaN gradient, through `p`.
#[inline(always)]
fn half_sign(d: f64) -> f64 {
    if d > 0.0 {
        0.5
    } else if d < 0.0 {
        -0.5
    } else {
        0.0
    }
}

/// Total variation `½·Σ|p − q|`; gradient `coef·p·(σ − Σ_j p_j σ_j)` with `σ = ½·sign(p − q)`;
/// `p`, `q` from pass 1's kept exponentials.
fn tvd_row(kept: &KeptExps, st: &PairStats, grad: Option<(&mut [f64], f64)>) -> f64 {
    let (mut sum_abs, mut gsum) = (0.0f64, 0.0f64);
    let mut out = grad;
    for_each_kept_pq(kept, st, |i, p, q| {
        let d = p - q;
        sum_abs += d.abs();
        let sg = half_sign(d);
        gsum += p * sg;
        if let Some(o) = out.as_mut().and_then(|(o, _)| o.get_mut(i)) {
            *o = sg;
        }
    });
    if let Some((o, coef)) = out {
        for_each_kept_pq(kept, st, |i, p, _| {
            if let Some(g) = o.get_mut(i) {
                *g = coef * p * (*g - gsum);
            }
        });
    }
    0.5 * sum_abs
}

/// Adds the cross-entropy gradient `coef·(softmax(s) − onehot(y))` to `out`.
fn ce_grad_add(s: &[f64], lse1: f64, y: usize, coef: f64, out: &mut [f64]) {
    for (o, &x) in out.iter_mut().zip(s) {
        *o += coef * (x - lse1).exp();
    }
    if let Some(o) = out.get_mut(y) {
        *o -= coef;
    }
}

/// One dense row: `(soft divergence, cross-entropy)`; writes the row gradient when asked. Forward and
/// reverse KL keep the pass-1 exponentials (`kept`) so their gradient pass takes no `exp` per element.
fn dense_row(
    s: &[f64],
    t: &[f64],
    label: Option<usize>,
    cfg: &RowCfg,
    kept: &mut KeptExps,
    grad: GradDst<'_>,
) -> (f64, f64) {
    if s.is_empty() {
        return (0.0, 0.0);
    }
    let temp = cfg.temp;
    let (mut out, soft_coef, ce_coef) = match grad {
        Some((o, a, b)) => (Some(o), a, b),
        None => (None, 0.0, 0.0),
    };
    let ce_label = if cfg.ce_on { label } else { None };
    let mut soft = 0.0;
    let mut lse_s1 = None;
    let mut ce_done = false;
    if cfg.soft_on {
        let div = match cfg.div {
            Divergence::GeneralizedJsd { beta: 0.0 } => Divergence::ForwardKl,
            Divergence::GeneralizedJsd { beta: 1.0 } => Divergence::ReverseKl,
            d => d,
        };
        // JSD and TVD always use the kept exponentials; FKL/RKL only in their gradient pass
        let keep =
            out.is_some() || matches!(div, Divergence::GeneralizedJsd { .. } | Divergence::TotalVariation);
        let st = pair_stats_keep(s, t, temp, temp, if keep { Some(&mut *kept) } else { None });
        if temp == 1.0 {
            lse_s1 = Some(st.lse_s);
        }
        soft = match div {
            Divergence::ForwardKl => {
                if let Some(o) = out.as_deref_mut() {
                    // at T = 1 the cross-entropy's softmax is p: fold its gradient into this pass
                    let fold = if temp == 1.0 { ce_label.map(|y| (y, ce_coef)) } else { None };
                    ce_done = fold.is_some();
                    fkl_grad_kept(kept, &st, soft_coef, fold, o);
                }
                st.fkl
            }
            Divergence::ReverseKl => {
                if let Some(o) = out.as_deref_mut() {
                    rkl_grad_kept(s, t, temp, kept, &st, soft_coef, o);
                }
                st.rkl
            }
            Divergence::GeneralizedJsd { beta } => {
                jsd_row(s, t, temp, kept, &st, beta, out.as_deref_mut().map(|o| (o, soft_coef)))
            }
            Divergence::TotalVariation => tvd_row(kept, &st, out.as_deref_mut().map(|o| (o, soft_coef))),
        };
    }
    let mut ce = 0.0;
    if let Some(y) = ce_label {
        let lse1 = lse_s1.unwrap_or_else(|| row_lse(s, 1.0));
        ce = lse1 - s.get(y).copied().unwrap_or(f64::NAN);
        if let (Some(o), false) = (out, ce_done) {
            ce_grad_add(s, lse1, y, ce_coef, o);
        }
    }
    (soft, ce)
}

/// Divergence between bucket distributions given as log-probabilities (`lp` student, `lq` teacher).
/// Returns the loss and writes `e_b = p_b·∂D/∂p_b` for every bucket.
fn bucket_divergence(lp: &[f64], lq: &[f64], div: Divergence, e: &mut Vec<f64>) -> f64 {
    e.clear();
    let div = match div {
        Divergence::GeneralizedJsd { beta: 0.0 } => Divergence::ForwardKl,
        Divergence::GeneralizedJsd { beta: 1.0 } => Divergence::ReverseKl,
        d => d,
    };
    let mut loss = 0.0f64;
    match div {
        Divergence::ForwardKl => {
            for (&p, &q) in lp.iter().zip(lq) {
                let qq = q.exp();
                loss += xl(qq, q - p);
                e.push(-qq);
            }
        }
        Divergence::ReverseKl => {
            for (&p, &q) in lp.iter().zip(lq) {
                let pp = p.exp();
                loss += xl(pp, p - q);
                e.push(xl(pp, p - q + 1.0));
            }
        }
        Divergence::GeneralizedJsd { beta } => {
            let (lb, l1b) = (beta.ln(), (-beta).ln_1p());
            for (&p, &q) in lp.iter().zip(lq) {
                let lm = logaddexp(q + lb, p + l1b);
                let tq = xl(q.exp(), q - lm);
                let tp = xl(p.exp(), p - lm);
                loss += beta * tq + (1.0 - beta) * tp;
                e.push((1.0 - beta) * tp);
            }
        }
        Divergence::TotalVariation => {
            for (&p, &q) in lp.iter().zip(lq) {
                let pp = p.exp();
                let d = pp - q.exp();
                loss += d.abs();
                e.push(pp * half_sign(d));
            }
            loss *= 0.5;
        }
    }
    loss
}

/// One row against a sparse teacher (`sc.s` student logits, `sc.idx` top-k classes, `sc.t` their
/// teacher log-probabilities, `sc.mark` all false on entry and exit).
///
/// Gradient: `∂D/∂s_i = (1/T)·(e_{b(i)}·p_i/p_{b(i)} − p_i·Σ_b e_b)`, `e_b = p_b·∂D/∂p_b`; for a top-k
/// class `p_i/p_b = 1`, for a tail class `p_i/p_tail = exp(s_i/T − lse_tail)`.
fn topk_row(sc: &mut Scratch, label: Option<usize>, cfg: &RowCfg, grad: GradDst<'_>) -> (f64, f64) {
    let temp = cfg.temp;
    let (mut out, soft_coef, ce_coef) = match grad {
        Some((o, a, b)) => (Some(o), a, b),
        None => (None, 0.0, 0.0),
    };
    let Scratch { s, t: lq_in, idx, mark, lp, lq, e, .. } = sc;
    let s: &[f64] = s;
    let mut soft = 0.0;
    let mut lse_s1 = None;
    if cfg.soft_on {
        let lse_s = row_lse(s, temp);
        if temp == 1.0 {
            lse_s1 = Some(lse_s);
        }
        lp.clear();
        lq.clear();
        for (&i, &q) in idx.iter().zip(lq_in.iter()) {
            lp.push(s.get(i).map_or(f64::NAN, |&x| x / temp - lse_s));
            lq.push(q);
        }
        let mut lse_tail = NEG_INF;
        // With every class among the top-k there is no tail bucket at all: the teacher's "missing"
        // mass is only the rounding of its log-probabilities, and comparing it against an empty
        // student tail would give +inf where the loss is the dense one.
        let mut has_tail = false;
        if cfg.add_tail {
            for &i in idx.iter() {
                if let Some(m) = mark.get_mut(i) {
                    *m = true;
                }
            }
            let mut acc = OnlineLse::EMPTY;
            for (&x, &m) in s.iter().zip(mark.iter()) {
                if !m {
                    has_tail = true;
                    acc.push(x / temp);
                }
            }
            if has_tail {
                lse_tail = acc.lse();
                lp.push(lse_tail - lse_s);
                lq.push(log1mexp(row_lse(lq_in, 1.0)));
            }
        }
        soft = bucket_divergence(lp, lq, cfg.div, e);
        if let Some(o) = out.as_deref_mut() {
            let gsum: f64 = e.iter().sum();
            let e_tail = if has_tail { e.last().copied().unwrap_or(0.0) } else { 0.0 };
            let tail_on = has_tail && e_tail != 0.0 && lse_tail > NEG_INF;
            for ((g, &x), &m) in o.iter_mut().zip(s).zip(mark.iter()) {
                let a = x / temp;
                let p = (a - lse_s).exp();
                let mut v = -p * gsum;
                if tail_on && !m {
                    v += e_tail * (a - lse_tail).exp();
                }
                *g = soft_coef * v;
            }
            for ((&i, &eb), &lpb) in idx.iter().zip(e.iter()).zip(lp.iter()) {
                if let Some(g) = o.get_mut(i) {
                    *g = soft_coef * (eb - lpb.exp() * gsum);
                }
            }
        }
        if cfg.add_tail {
            for &i in idx.iter() {
                if let Some(m) = mark.get_mut(i) {
                    *m = false;
                }
            }
        }
    }
    let mut ce = 0.0;
    if let (true, Some(y)) = (cfg.ce_on, label) {
        let lse1 = lse_s1.unwrap_or_else(|| row_lse(s, 1.0));
        ce = lse1 - s.get(y).copied().unwrap_or(f64::NAN);
        if let Some(o) = out {
            ce_grad_add(s, lse1, y, ce_coef, o);
        }
    }
    (soft, ce)
}

compiled_here! {
    dense_core: fn(
        ArrayView2<'_, T>,
        ArrayView2<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        Option<&GradOutput<'_, T>>,
    ) -> Result<(Loss<T>, Option<Array2<T>>)>;
    topk_core: fn(
        ArrayView2<'_, T>,
        &SparseTeacher<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        Option<&GradOutput<'_, T>>,
    ) -> Result<(Loss<T>, Option<Array2<T>>)>;
    dense_in_place: fn(
        ArrayViewMut2<'_, T>,
        ArrayView2<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        &GradOutput<'_, T>,
    ) -> Result<Loss<T>>;
    topk_in_place: fn(
        ArrayViewMut2<'_, T>,
        &SparseTeacher<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        &GradOutput<'_, T>,
    ) -> Result<Loss<T>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_lse_matches_direct() {
        let x = [0.3, -2.0, 5.0, 1.0, NEG_INF, 4.9];
        let direct = x.iter().map(|v| (v - 5.0f64).exp()).sum::<f64>().ln() + 5.0;
        assert!((row_lse(&x, 1.0) - direct).abs() < 1e-15);
        assert_eq!(row_lse(&[NEG_INF, NEG_INF], 1.0), NEG_INF);
        assert!(row_lse(&[1.0, f64::NAN], 1.0).is_nan());
    }

    #[test]
    fn fused_kl_matches_two_pass() {
        let s = [0.5, -1.0, 2.0, 0.0, 3.5];
        let t = [1.5, 0.2, -0.7, 2.2, 0.1];
        let temp = 1.7;
        let st = pair_stats(&s, &t, temp, temp);
        let ls = row_lse(&s, temp);
        let lt = row_lse(&t, temp);
        let (mut fkl, mut rkl) = (0.0, 0.0);
        for (&x, &y) in s.iter().zip(&t) {
            let (lp, lq) = (x / temp - ls, y / temp - lt);
            fkl += lq.exp() * (lq - lp);
            rkl += lp.exp() * (lp - lq);
        }
        assert!((st.fkl - fkl).abs() < 1e-15, "{} {}", st.fkl, fkl);
        assert!((st.rkl - rkl).abs() < 1e-15);
        assert!((st.lse_s - ls).abs() < 1e-15);
    }

    #[test]
    fn log1mexp_branches() {
        assert_eq!(log1mexp(0.0), NEG_INF);
        assert_eq!(log1mexp(NEG_INF), 0.0);
        assert!((log1mexp(-0.1) - (1.0 - (-0.1f64).exp()).ln()).abs() < 1e-15);
        assert!((log1mexp(-3.0) - (1.0 - (-3.0f64).exp()).ln()).abs() < 1e-15);
    }

    #[test]
    fn logaddexp_edges() {
        assert_eq!(logaddexp(NEG_INF, NEG_INF), NEG_INF);
        assert_eq!(logaddexp(NEG_INF, 1.5), 1.5);
        assert!((logaddexp(0.0, 0.0) - LN_2).abs() < 1e-16);
        assert!(logaddexp(f64::NAN, 0.0).is_nan() && logaddexp(0.0, f64::NAN).is_nan());
    }
}
