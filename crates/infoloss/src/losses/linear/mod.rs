//! Fused linear losses: a linear layer (`logits = X·Wᵀ + b`, e.g. a language model's head) followed by
//! cross-entropy or distillation, **without ever holding the `(N, V)` logits**.
//!
//! # How
//!
//! The rows are processed in chunks of `chunk_rows`. Per chunk `c` (rows `X_c`):
//!
//! 1. `L_c = X_c·Wᵀ (+ b)` — one GEMM into a `chunk_rows × V` buffer, the only large temporary;
//! 2. the loss row function turns `L_c` **in place** into `G_c = ∂loss/∂L_c`, already scaled by the
//!    global normalizer (for `Mean` the summed target weight `W` and the count `n` over **all** rows are
//!    computed from the targets before the first chunk, so every chunk's gradient is final at once);
//! 3. `∂loss/∂X_c = G_c·W` (GEMM), `∂loss/∂W += G_cᵀ·X_c` (GEMM, accumulated over chunks),
//!    `∂loss/∂b += Σ_rows G_c` (column sums, accumulated in f64).
//!
//! Three GEMMs (`6·N·V·H` flops), no recomputation. All GEMMs run through the `gemm` crate with rayon
//! parallelism (the current rayon pool); the row functions run in parallel over the chunk's rows.
//!
//! # Memory
//!
//! Beyond the inputs and the returned gradients (`N·H + V·H (+ V)` elements), the cross-entropy needs one
//! logits chunk (`chunk_rows·V` elements), per-thread row scratch only with a softcap (`V` elements per
//! thread), a few words per row, an f64 bias accumulator (`8·V` bytes) and `gemm`'s packing buffers.
//! Distillation holds three chunk-sized buffers (student logits, teacher logits, their gradient) of a
//! third of the rows, and with a top-k teacher one chunk of its `k` indices and log-probabilities.
//! [`linear_cross_entropy_workspace`], [`linear_distill_workspace`] and [`linear_distill_workspace_with`]
//! return these sizes for given shapes; `tests/linear_memory.rs` checks the peak heap use against them with
//! a counting allocator (N = 2048, H = 1024, V = 32000, f32: 72 MiB beyond the inputs and gradients for the
//! cross-entropy, 67 MiB for distillation, where the logits alone are 250 MiB). Inputs that are not in
//! standard (row-major) layout are copied once.
//!
//! # Precision
//!
//! `f32` and `f64` ([`LinearFloat`]); every GEMM runs in the element type (as `torch.mm` does). The
//! cross-entropy row is [`cross_entropy_extras`](crate::losses::ce_extras::cross_entropy_extras)'s with one `exp`
//! per element (`p = exp(x̃ − m)/Σ` instead of `exp(log_softmax)`, element math in the element type, row
//! sums in f64), tested against that reference row to a few ulps. The result therefore equals
//! `cross_entropy_extras` applied to the logits `X·Wᵀ + b` up to rounding, mostly the GEMMs', whose
//! summation order differs from torch's BLAS.

use std::borrow::Cow;

use ndarray::{Array1, Array2, ArrayView, ArrayView1, ArrayView2, ArrayViewMut2, Dimension};
use rayon::prelude::*;

use crate::base::class_targets::index_targets;
use crate::base::shape::checked_numel;
use crate::base::upstream::RowUpstream as Upstream;
use crate::kernels::linear_gemm::{self, Accum, GemmError, MatMut, MatRef};
use crate::losses::distill::{DistillOptions, SparseTeacher, distill_with_grad};
use crate::rows::ce_rows::{
    CeRowConfig, CeRowOut, fill_ignored_grad, grad_coefs, ignored_grad_is_nan, reduce_rows, row_argmax,
    row_config, softcap_row,
};
use crate::rows::distill_rows::OnlineLse;
use crate::rows::softmax_rows::row_logsumexp;
use crate::{Element, Error, GradOutput, Loss, Real, Reduction, Result};

const OP_CE: &str = "linear_cross_entropy";
const OP_DISTILL: &str = "linear_distill";

/// The automatic chunk holds at least this many bytes of logits, so the weight-gradient GEMM (whose inner
/// dimension is the chunk's row count) and the per-chunk repacking of the weight stay cheap: measured at
/// N = 2048, H = 1024, V = 32000, f32, 64 MiB (525 rows) costs ~1.1× the unchunked GEMMs, 32 MiB ~1.2×.
const MIN_CHUNK_BYTES: usize = 64 << 20;

/// Classes per call of the weight-gradient GEMM (bounds `gemm`'s packing buffer to `chunk_rows × 4096`).
const GW_BLOCK: usize = 4096;

mod sealed {
    /// The per-type row primitives of the fast cross-entropy row (not callable outside the crate).
    pub trait Sealed: Sized {
        /// The row maximum, NaN if any element is NaN, `−inf` for an empty row.
        fn row_max_fast(x: &[Self]) -> Self;
        /// `x ← exp(x − m)` in place; returns `Σ x` accumulated in f64.
        fn exp_shift_sum(x: &mut [Self], m: Self) -> f64;
    }

    /// `Σ x` in f64 with 8 independent accumulators (vectorizable; the order is fixed).
    fn sum_f64<T: Copy + Into<f64>>(x: &[T]) -> f64 {
        let mut acc = [0f64; 8];
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v.into();
            }
        }
        let mut tail = 0f64;
        for &v in chunks.remainder() {
            tail += v.into();
        }
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
    }

    impl Sealed for f32 {
        fn row_max_fast(x: &[f32]) -> f32 {
            crate::kernels::max_f32(x)
        }
        fn exp_shift_sum(x: &mut [f32], m: f32) -> f64 {
            // The C library's expf (≤ 1 ulp). `kernels::exp_f32_in_place` was measured ~3× slower in
            // this loop (pulp's AVX-512 path did not inline its intrinsics); switch when it is fixed.
            for v in x.iter_mut() {
                *v = (*v - m).exp();
            }
            sum_f64(x)
        }
    }

    impl Sealed for f64 {
        fn row_max_fast(x: &[f64]) -> f64 {
            crate::rows::softmax_rows::row_max(x)
        }
        fn exp_shift_sum(x: &mut [f64], m: f64) -> f64 {
            for v in x.iter_mut() {
                *v = (*v - m).exp();
            }
            sum_f64(x)
        }
    }
}

/// The element types of the fused linear losses: `f32` and `f64`, computed in their own precision.
///
/// ```
/// fn takes<T: infoloss::LinearFloat>() {}
/// takes::<f32>();
/// takes::<f64>();
/// ```
pub trait LinearFloat: Element<Acc = Self> + Real + sealed::Sealed {}
impl LinearFloat for f32 {}
impl LinearFloat for f64 {}

pub use crate::options::LinearCrossEntropyOptions;

/// What [`linear_cross_entropy`] returns: the loss and its parts, and the gradients of the loss with
/// respect to the hidden states, the linear weight and the bias.
///
/// ```
/// use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy};
/// use infoloss::ndarray::array;
/// let x = array![[1.0f64, 0.0], [0.0, 1.0]];
/// let w = array![[0.0f64, 0.0], [0.0, 0.0], [0.0, 0.0]];
/// let b = array![0.0f64, 0.0, 0.0];
/// let mut opts = LinearCrossEntropyOptions::default();
/// opts.ce.lse_square_scale = 0.5;
/// opts.ce.return_lse = true;
/// let out = linear_cross_entropy(x.view(), w.view(), Some(b.view()), array![0i64, 2].view(), &opts)?;
/// // uniform logits over 3 classes: CE = ln 3, z = 0.5·(ln 3)²
/// let l3 = 3f64.ln();
/// assert!((out.loss.scalar().unwrap() - (l3 + 0.5 * l3 * l3)).abs() < 1e-15);
/// assert!((out.z_loss.scalar().unwrap() - 0.5 * l3 * l3).abs() < 1e-15);
/// assert!((out.lse.unwrap()[1] - l3).abs() < 1e-15);
/// // ∂/∂b_k = mean over rows of (1 + 2·0.5·ln 3)/3 − [y = k]
/// assert!((out.grad_bias.unwrap()[1] - (1.0 + l3) / 3.0).abs() < 1e-15);
/// assert_eq!(out.grad_hidden.shape(), &[2, 2]);
/// # Ok::<(), infoloss::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCrossEntropyOutput<T> {
    /// Cross-entropy + z-loss (scalar, or `(N,)` for `Reduction::None`).
    pub loss: Loss<T>,
    /// The z-loss part alone, reduced like the loss.
    pub z_loss: Loss<T>,
    /// `(N,)` log-sum-exp of the (capped) logits, if `ce.return_lse`.
    pub lse: Option<Array1<T>>,
    /// Token accuracy, if `ce.return_token_accuracy` (see [`CrossEntropyExtrasOutput`](crate::CrossEntropyExtrasOutput)).
    pub token_accuracy: Option<Loss<f64>>,
    /// `∂loss/∂hidden`, `(N, H)`.
    pub grad_hidden: Array2<T>,
    /// `∂loss/∂weight`, `(V, H)`.
    pub grad_weight: Array2<T>,
    /// `∂loss/∂bias`, `(V,)`, when a bias was given.
    pub grad_bias: Option<Array1<T>>,
}

/// The temporary memory of a fused linear loss for given sizes (bytes; inputs, returned gradients and
/// `gemm`'s internal packing buffers not included).
///
/// ```
/// use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy_workspace};
/// let opts = LinearCrossEntropyOptions::<f32> { chunk_size: Some(256), ..Default::default() };
/// let ws = linear_cross_entropy_workspace(2048, 1024, 32000, false, &opts);
/// assert_eq!(ws.chunk_rows, 256);
/// assert_eq!(ws.logits_chunk_bytes, 256 * 32000 * 4); // 31.25 MiB
/// assert_eq!(ws.gemm_packing_bytes, 256 * (4096 + 1024) * 4); // 5 MiB
/// assert!(ws.total_bytes < ws.logits_chunk_bytes + ws.gemm_packing_bytes + (1 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearWorkspace {
    /// Rows per chunk actually used.
    pub chunk_rows: usize,
    /// Number of logits-sized chunk buffers alive at once (1 for cross-entropy, 2 for distillation:
    /// student logits, overwritten by their gradient, and teacher logits).
    pub chunk_buffers: usize,
    /// Bytes of one logits chunk (`chunk_rows · V · size_of::<T>()`).
    pub logits_chunk_bytes: usize,
    /// Per-thread row scratch (softcap `tanh` values; distillation's f64 row buffers), all threads.
    pub row_scratch_bytes: usize,
    /// Per-row bookkeeping (target class and the row's loss terms), all rows.
    pub per_row_bytes: usize,
    /// The f64 bias-gradient accumulator (`8·V`, only with a bias).
    pub bias_accumulator_bytes: usize,
    /// One chunk of a top-k teacher's indices and log-probabilities (`chunk_rows · k · (8 + size_of::<T>())`;
    /// only [`linear_distill_backward`] with a [`TeacherTopK`]).
    pub teacher_topk_bytes: usize,
    /// Estimate of `gemm`'s packing buffers (the largest: `chunk_rows · (min(V, 4096) + H)` elements for
    /// the weight-gradient product's block of `G` and the chunk of hidden states).
    pub gemm_packing_bytes: usize,
    /// The sum of the above with `chunk_buffers` chunks.
    pub total_bytes: usize,
}

/// The chunk rows for `n` rows of `v` classes: `chunk_size`, or automatically enough rows that a
/// chunk holds `max(hidden bytes, 64 MiB)` of logits, at most `n` (at least 1).
fn chunk_rows_for(
    n: usize,
    h: usize,
    v: usize,
    elem: usize,
    chunk_size: Option<usize>,
    buffers: usize,
) -> usize {
    let rows = match chunk_size {
        Some(c) => c,
        None => {
            let row_bytes = v.saturating_mul(elem).max(1);
            let budget = n.saturating_mul(h).saturating_mul(elem).max(MIN_CHUNK_BYTES) / buffers.max(1);
            budget.div_ceil(row_bytes)
        }
    };
    rows.clamp(1, n.max(1))
}

/// The temporary memory [`linear_cross_entropy`] needs for `n` rows, hidden size `h`, `v` classes
/// (with or without a bias) and these options, on the current rayon pool.
///
/// # Formula
///
/// `chunk_rows·V·size_of::<T>()` (one logits chunk, turned into the gradient in place) + with a softcap
/// `threads·V·size_of::<T>()` + `n·(16 + size_of::<CeRowOut>)` (target class, row losses) + with a bias
/// `8·V` + `gemm`'s packing, estimated as `chunk_rows·(min(V, 4096) + H)` elements. The automatic chunk holds `max(N·H·size_of::<T>(), 64 MiB)` of logits (the hidden states' size,
/// as Liger-Kernel's heuristic, but not below 64 MiB so the weight-gradient GEMM keeps an inner dimension
/// of a few hundred rows).
///
/// # PyTorch
///
/// None; torch's `F.linear_cross_entropy(..., options=nn.LinearCrossEntropyOptions(batch_chunk_size=…))`
/// is the analogue.
///
/// # Example
///
/// ```
/// use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy_workspace};
/// let ws = linear_cross_entropy_workspace::<f32>(2048, 1024, 32000, false, &Default::default());
/// assert_eq!(ws.chunk_rows, 525); // ⌈64 MiB / (32000·4 B)⌉
/// assert_eq!(ws.chunk_buffers, 1);
/// ```
pub fn linear_cross_entropy_workspace<T: LinearFloat>(
    n: usize,
    h: usize,
    v: usize,
    has_bias: bool,
    opts: &LinearCrossEntropyOptions<'_, T>,
) -> LinearWorkspace {
    let elem = std::mem::size_of::<T>();
    let chunk_rows = chunk_rows_for(n, h, v, elem, opts.chunk_size, 1);
    let logits_chunk_bytes = chunk_rows.min(n).saturating_mul(v).saturating_mul(elem);
    let threads = rayon::current_num_threads();
    let row_scratch_bytes =
        if opts.ce.softcap.is_some() { threads.saturating_mul(v).saturating_mul(elem) } else { 0 };
    let per_row_bytes = n.saturating_mul(16 + std::mem::size_of::<CeRowOut<T>>());
    let bias_accumulator_bytes = if has_bias { v.saturating_mul(8) } else { 0 };
    let gemm_packing_bytes = packing_estimate(chunk_rows.min(n), v, h, elem);
    LinearWorkspace {
        chunk_rows,
        chunk_buffers: 1,
        logits_chunk_bytes,
        row_scratch_bytes,
        per_row_bytes,
        bias_accumulator_bytes,
        teacher_topk_bytes: 0,
        gemm_packing_bytes,
        total_bytes: logits_chunk_bytes
            .saturating_add(row_scratch_bytes)
            .saturating_add(per_row_bytes)
            .saturating_add(bias_accumulator_bytes)
            .saturating_add(gemm_packing_bytes),
    }
}

/// `chunk_rows · (min(V, GW_BLOCK) + H)` elements: what `gemm` packs for one chunk's largest products.
fn packing_estimate(rows: usize, v: usize, h: usize, elem: usize) -> usize {
    rows.saturating_mul(v.min(GW_BLOCK).saturating_add(h)).saturating_mul(elem)
}

mod cross_entropy;
mod distill;
mod distill_topk;
mod gemm;
mod teacher_topk;

pub use cross_entropy::*;
pub use distill::*;
pub use distill_topk::*;
pub use gemm::matmul;
use gemm::*;
use teacher_topk::*;

compiled_here! {
    @for [f32, f64]
    linear_ce_core: fn(
        &'static str,
        ArrayView2<'_, T>,
        ArrayView2<'_, T>,
        Option<ArrayView1<'_, T>>,
        ndarray::ArrayViewD<'_, i64>,
        &LinearCrossEntropyOptions<'_, T>,
        &GradOutput<'_, T>,
    ) -> Result<LinearCrossEntropyOutput<T>>;
    linear_distill_backward: fn(
        &LinearHead<'_, T>,
        &LinearHead<'_, T>,
        Option<ArrayView1<'_, i64>>,
        Option<TeacherTopK>,
        &LinearDistillOptions,
        &GradOutput<'_, T>,
    ) -> Result<LinearDistillOutput<T>>;
    linear_distill_topk: fn(
        &LinearHead<'_, T>,
        &SparseTeacher<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &LinearDistillOptions,
        &GradOutput<'_, T>,
    ) -> Result<LinearDistillOutput<T>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::ce_rows::ce_row_in_place;

    fn cfg<T: LinearFloat>(
        classes: usize,
        weight: Option<Vec<T>>,
        eps: f64,
        z: f64,
        cap: Option<f64>,
        mean: Option<(f64, f64)>,
    ) -> CeRowConfig<T> {
        CeRowConfig {
            weight,
            smoothing: eps > 0.0,
            keep: T::c(1.0 - eps),
            eps_c: T::c(eps / classes as f64),
            z_scale: (z != 0.0).then(|| T::c(z)),
            softcap: cap.map(T::c),
            mean_norm: mean.map(|(a, b)| (T::c(a), T::c(b))),
            want_lse: true,
            want_acc: true,
        }
    }

    /// Compares the fast row with the reference row: `tol` in units of the largest magnitude involved.
    fn compare<T: LinearFloat>(row: &[T], cls: Option<usize>, c: &CeRowConfig<T>, g: T, tol: f64) {
        let w_sum: f64 = match &c.weight {
            Some(w) => w.iter().map(|v| v.f64()).sum(),
            None => row.len() as f64,
        };
        let (mut a, mut b) = (row.to_vec(), row.to_vec());
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        let ra = ce_row_in_place(&mut a, cls, c, Some(g), &mut ta);
        let rb = ce_row_fast(&mut b, cls, c, w_sum, g, &mut tb);
        let same = |x: T, y: T, what: &str| {
            let (x, y) = (x.f64(), y.f64());
            let ok = if x.is_nan() || y.is_nan() {
                x.is_nan() && y.is_nan()
            } else if x.is_infinite() || y.is_infinite() {
                x == y
            } else {
                (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs()))
            };
            assert!(ok, "{what}: reference {x} vs fast {y} (row {row:?}, class {cls:?})");
        };
        same(ra.nll, rb.nll, "nll");
        same(ra.smooth, rb.smooth, "smooth");
        same(ra.z, rb.z, "z");
        same(ra.lse, rb.lse, "lse");
        assert_eq!(ra.correct, rb.correct);
        for (k, (&x, &y)) in a.iter().zip(&b).enumerate() {
            same(x, y, &format!("grad[{k}]"));
        }
    }

    fn rows(seed: u64, len: usize, scale: f64) -> Vec<Vec<f64>> {
        let mut s = seed;
        let mut u = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0 * scale
        };
        let mut out: Vec<Vec<f64>> = (0..6).map(|_| (0..len).map(|_| u()).collect()).collect();
        let mut special = out[0].clone();
        special[1] = f64::NEG_INFINITY;
        out.push(special.clone());
        special[2] = f64::NAN;
        out.push(special.clone());
        special[2] = f64::INFINITY;
        out.push(special);
        out.push(vec![f64::NEG_INFINITY; len]);
        out
    }

    fn sweep<T: LinearFloat>(tol: f64) {
        let len = 37;
        let w: Vec<T> = (0..len).map(|i| T::c(0.25 + 0.05 * i as f64)).collect();
        let mut n = 0;
        for (ri, row) in rows(5, len, 6.0).into_iter().enumerate() {
            let row: Vec<T> = row.into_iter().map(T::c).collect();
            for weight in [None, Some(w.clone())] {
                for eps in [0.0, 0.2] {
                    for z in [0.0, 0.03] {
                        for cap in [None, Some(3.0)] {
                            for mean in [None, Some((4.5, 3.0))] {
                                let c = cfg::<T>(len, weight.clone(), eps, z, cap, mean);
                                for cls in [Some(1), Some(ri % len), None] {
                                    compare(&row, cls, &c, T::c(-1.3), tol);
                                    n += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 10 * 2 * 2 * 2 * 2 * 2 * 3);
    }

    #[test]
    fn fast_row_agrees_with_the_reference_row_f64() {
        sweep::<f64>(1e-14);
    }

    #[test]
    fn fast_row_agrees_with_the_reference_row_f32() {
        sweep::<f32>(2e-6);
    }
}
