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

use ndarray::{Array1, Array2, ArrayView, ArrayView1, ArrayView2, ArrayViewMut2, Dimension, Ix2};
use rayon::prelude::*;

use crate::base::class_targets::index_targets;
use crate::base::shape::checked_numel;
use crate::base::upstream::RowUpstream as Upstream;
use crate::kernels::linear_gemm::{self, Accum, GemmError, MatMut, MatRef};
use crate::losses::distill::{DistillOptions, SparseTeacher, distill_with_grad};
use crate::rows::ce_rows::{
    CeRowConfig, CeRowOut, fill_ignored_grad, grad_coefs, ignored_grad_is_nan, reduce_rows, row_argmax,
    row_config,
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

// ---------------------------------------------------------------------------------------------
// Shared plumbing
// ---------------------------------------------------------------------------------------------

fn gemm_err(op: &'static str, e: GemmError) -> Error {
    Error::too_large(op, "matrix product", format!("gemm refused the operands ({e:?})"))
}

/// Views a 2-D input or names its shape in the error.
fn as_2d<'a, T, D: Dimension>(
    op: &'static str,
    name: &'static str,
    a: ArrayView<'a, T, D>,
) -> Result<ArrayView2<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>().map_err(|_| Error::bad_rank(op, name, &shape, "2 dimensions"))
}

/// The elements in row-major order, borrowed when already standard layout.
fn contiguous<'a, T: Clone, D: Dimension>(a: &'a ArrayView<'_, T, D>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// Checks `hidden (N, H)` against `weight (V, H)`.
fn check_linear(
    op: &'static str,
    hidden: &[usize],
    hname: &'static str,
    weight: &[usize],
    wname: &'static str,
) -> Result<()> {
    if hidden.get(1) != weight.get(1) {
        return Err(Error::shape_mismatch(
            op,
            hname,
            hidden,
            wname,
            weight,
            "are not compatible: hidden (N, H) and weight (V, H) must have the same H",
        ));
    }
    Ok(())
}

/// The row-major matrices of one chunk's three products.
struct Chunk<'a, T> {
    /// `X_c`, `rows × H`.
    x: &'a [T],
    rows: usize,
}

/// `logits (rows × V) = X_c · Wᵀ` into `buf`.
fn logits_gemm<T: LinearFloat>(
    op: &'static str,
    buf: &mut [T],
    c: &Chunk<'_, T>,
    w: &[T],
    v: usize,
    h: usize,
) -> Result<()> {
    linear_gemm::matmul(
        MatMut { data: buf, rows: c.rows, cols: v, rs: v, cs: 1 },
        MatRef { data: c.x, rows: c.rows, cols: h, rs: h, cs: 1 },
        MatRef { data: w, rows: h, cols: v, rs: 1, cs: h },
        Accum::Replace,
        0,
    )
    .map_err(|e| gemm_err(op, e))
}

/// `grad_x (rows × H) = G · W` and `grad_w (V × H) += Gᵀ · X_c`.
#[allow(clippy::too_many_arguments)]
fn backward_gemms<T: LinearFloat>(
    op: &'static str,
    g: &[T],
    c: &Chunk<'_, T>,
    w: &[T],
    grad_x: &mut [T],
    grad_w: &mut [T],
    v: usize,
    h: usize,
) -> Result<()> {
    linear_gemm::matmul(
        MatMut { data: grad_x, rows: c.rows, cols: h, rs: h, cs: 1 },
        MatRef { data: g, rows: c.rows, cols: v, rs: v, cs: 1 },
        MatRef { data: w, rows: v, cols: h, rs: h, cs: 1 },
        Accum::Replace,
        0,
    )
    .map_err(|e| gemm_err(op, e))?;
    // In blocks of classes: gemm packs the (strided) `G` block it reads, `chunk_rows × block` elements,
    // which stays small instead of growing to a second chunk-sized buffer.
    let mut v0 = 0;
    while v0 < v {
        let v1 = (v0 + GW_BLOCK).min(v);
        linear_gemm::matmul(
            MatMut {
                data: grad_w.get_mut(v0 * h..v1 * h).unwrap_or(&mut []),
                rows: v1 - v0,
                cols: h,
                rs: h,
                cs: 1,
            },
            MatRef { data: g.get(v0..).unwrap_or(&[]), rows: v1 - v0, cols: c.rows, rs: 1, cs: v },
            MatRef { data: c.x, rows: c.rows, cols: h, rs: h, cs: 1 },
            Accum::Add,
            0,
        )
        .map_err(|e| gemm_err(op, e))?;
        v0 = v1;
    }
    Ok(())
}

fn to_array2<T>(op: &'static str, what: &'static str, shape: (usize, usize), v: Vec<T>) -> Result<Array2<T>> {
    Array2::from_shape_vec(shape, v).map_err(|e| Error::too_large(op, what, e.to_string()))
}

/// A matrix seen as a slice with non-negative strides, borrowed when it is contiguous in memory
/// (row- or column-major, e.g. a transposed view), else copied to row-major.
fn mat_of<'a, T: Clone>(a: &'a ArrayView2<'_, T>) -> (Cow<'a, [T]>, usize, usize) {
    let st = a.strides();
    let (s0, s1) = (st.first().copied().unwrap_or(0), st.get(1).copied().unwrap_or(0));
    if s0 >= 0 && s1 >= 0 {
        if let Some(sl) = a.as_slice_memory_order() {
            return (Cow::Borrowed(sl), s0 as usize, s1 as usize);
        }
    }
    (Cow::Owned(a.iter().cloned().collect()), a.ncols(), 1)
}

/// Matrix product with the GEMM the fused losses use (`gemm` crate, rayon-parallel on the current pool):
/// `dst = lhs·rhs`, or `dst += lhs·rhs` with `accumulate`.
///
/// # Formula
///
/// `dst[i, j] (+)= Σ_l lhs[i, l]·rhs[l, j]`, computed in the element type. `lhs` and `rhs` may be any
/// views (transposed views are used in place; other non-contiguous views are copied once); `dst` must be
/// contiguous in memory (row- or column-major) with non-negative strides.
///
/// # Gradient
///
/// Not applicable (a building block: `∂/∂lhs = g·rhsᵀ`, `∂/∂rhs = lhsᵀ·g`).
///
/// # PyTorch
///
/// `torch.mm(lhs, rhs, out=dst)`, or `dst.addmm_(lhs, rhs)` with `accumulate`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming the shapes when `lhs.ncols() != rhs.nrows()` or `dst` is not
/// `lhs.nrows() × rhs.ncols()`; [`Error::InvalidOption`] (option `dst`) when `dst` is not contiguous.
///
/// # Example
///
/// ```
/// use infoloss::linear::matmul;
/// use infoloss::ndarray::{array, Array2};
/// let a = array![[1.0f32, 2.0], [3.0, 4.0]];
/// let b = array![[1.0f32, 0.0, 2.0], [0.5, 1.0, -1.0]];
/// let mut c = Array2::<f32>::zeros((2, 3));
/// matmul(c.view_mut(), a.view(), b.view(), false)?;
/// assert_eq!(c, array![[2.0, 2.0, 0.0], [5.0, 4.0, 2.0]]);
/// matmul(c.view_mut(), a.view(), b.view(), true)?; // accumulate
/// assert_eq!(c[[1, 2]], 4.0);
/// let mut d = Array2::<f32>::zeros((2, 2));
/// matmul(d.view_mut(), a.view(), a.t(), false)?; // a·aᵀ, transposed view used in place
/// assert_eq!(d, array![[5.0, 11.0], [11.0, 25.0]]);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn matmul<T: LinearFloat>(
    mut dst: ndarray::ArrayViewMut2<'_, T>,
    lhs: ArrayView2<'_, T>,
    rhs: ArrayView2<'_, T>,
    accumulate: bool,
) -> Result<()> {
    const OP: &str = "matmul";
    if lhs.ncols() != rhs.nrows() {
        return Err(Error::shape_mismatch(
            OP,
            "lhs",
            lhs.shape(),
            "rhs",
            rhs.shape(),
            "cannot be multiplied",
        ));
    }
    if dst.dim() != (lhs.nrows(), rhs.ncols()) {
        return Err(Error::shape_mismatch(
            OP,
            "dst",
            dst.shape(),
            "lhs",
            lhs.shape(),
            format!("are not compatible: dst must be {} × {}", lhs.nrows(), rhs.ncols()),
        ));
    }
    let (m, n, k) = (lhs.nrows(), rhs.ncols(), lhs.ncols());
    let (l, lrs, lcs) = mat_of(&lhs);
    let (r, rrs, rcs) = mat_of(&rhs);
    let st = dst.strides().to_vec();
    let (s0, s1) = (st.first().copied().unwrap_or(0), st.get(1).copied().unwrap_or(0));
    let d = match dst.as_slice_memory_order_mut() {
        Some(d) if s0 >= 0 && s1 >= 0 => d,
        _ => {
            return Err(Error::invalid_option(
                OP,
                "dst",
                format!("strides {st:?}"),
                "dst must be contiguous in memory (row- or column-major) with non-negative strides",
            ));
        }
    };
    linear_gemm::matmul(
        MatMut { data: d, rows: m, cols: n, rs: s0 as usize, cs: s1 as usize },
        MatRef { data: &l, rows: m, cols: k, rs: lrs, cs: lcs },
        MatRef { data: &r, rows: k, cols: n, rs: rrs, cs: rcs },
        if accumulate { Accum::Add } else { Accum::Replace },
        0,
    )
    .map_err(|e| gemm_err(OP, e))
}

// ---------------------------------------------------------------------------------------------
// The fast cross-entropy row (one exp per element), tested against ce_extras' reference row
// ---------------------------------------------------------------------------------------------

/// [`ce_row_in_place`](crate::losses::ce_extras) with one `exp` per element (SIMD for f32): pass 1 the max (and
/// argmax, `Σ w·x` for smoothing), pass 2 `e = exp(x̃ − m)` in place with its f64 sum `s`, pass 3 the
/// gradient `e·(a_z − ΣG)/s + G` from cache, then the softcap chain. `ΣG = w_y·a − b·Σw` in closed form.
/// Agrees with the reference row to a few ulps (`p = e/s` instead of `exp(lsm)`).
fn ce_row_fast<T: LinearFloat>(
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
        tanh_buf.clear();
        tanh_buf.reserve(x.len());
        for v in x.iter_mut() {
            let t = (*v / c).tanh();
            tanh_buf.push(t);
            *v = c * t;
        }
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

// ---------------------------------------------------------------------------------------------
// linear_cross_entropy
// ---------------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn linear_ce_core<T: LinearFloat>(
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
    check_linear(op, hidden.shape(), "hidden", weight.shape(), "weight")?;
    check_bias(op, bias.as_ref(), "bias", weight.shape(), "weight")?;
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
/// chunk so that at most one `chunk_rows × V` block of logits exists (see the [module docs](self)).
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

// ---------------------------------------------------------------------------------------------
// linear_distill
// ---------------------------------------------------------------------------------------------

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
    let chunk_rows = chunk_rows_for(n, hs.max(ht), v, elem, opts.chunk_size, 1);
    let rows = chunk_rows.min(n);
    let logits_chunk_bytes = rows.saturating_mul(v).saturating_mul(elem);
    let threads = rayon::current_num_threads();
    let select_bytes = if teacher_topk.is_some() { std::mem::size_of::<usize>() } else { 0 };
    let row_scratch_bytes = threads.saturating_mul(v).saturating_mul(6 * 8 + elem + select_bytes);
    let per_row_bytes = n.saturating_mul(elem);
    let bias_accumulator_bytes = if has_bias { v.saturating_mul(8) } else { 0 };
    let teacher_topk_bytes =
        teacher_topk.map_or(0, |t| rows.saturating_mul(t.k.min(v)).saturating_mul(8 + elem));
    let gemm_packing_bytes = packing_estimate(rows, v, hs.max(ht), elem);
    LinearWorkspace {
        chunk_rows,
        chunk_buffers: 2,
        logits_chunk_bytes,
        row_scratch_bytes,
        per_row_bytes,
        bias_accumulator_bytes,
        teacher_topk_bytes,
        gemm_packing_bytes,
        total_bytes: logits_chunk_bytes
            .saturating_mul(2)
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
    check_linear(OP, xs.shape(), "student_hidden", wsm.shape(), "student_weight")?;
    check_linear(OP, xt.shape(), "teacher_hidden", wtm.shape(), "teacher_weight")?;
    if xs.nrows() != xt.nrows() {
        return Err(Error::shape_mismatch(
            OP,
            "student_hidden",
            xs.shape(),
            "teacher_hidden",
            xt.shape(),
            "must have the same number of rows",
        ));
    }
    if wsm.nrows() != wtm.nrows() {
        return Err(Error::shape_mismatch(
            OP,
            "student_weight",
            wsm.shape(),
            "teacher_weight",
            wtm.shape(),
            "must have the same number of rows (classes V)",
        ));
    }
    check_bias(OP, student.bias.as_ref(), "student_bias", wsm.shape(), "student_weight")?;
    check_bias(OP, teacher.bias.as_ref(), "teacher_bias", wtm.shape(), "teacher_weight")?;
    let (n, hs) = xs.dim();
    let ht = xt.ncols();
    let v = wsm.nrows();
    if let Some(y) = &labels {
        if y.len() != n {
            return Err(Error::shape_mismatch(
                OP,
                "labels",
                y.shape(),
                "student_hidden",
                xs.shape(),
                "are not compatible: labels must have one entry per row",
            ));
        }
        for (r, &c) in y.iter().enumerate() {
            if c != opts.distill.ignore_index && !(c >= 0 && (c as u64) < v as u64) {
                return Err(Error::target_out_of_range(OP, &[r], c, v));
            }
        }
    }
    if opts.chunk_size == Some(0) {
        return Err(Error::invalid_option(OP, "chunk_size", 0, "must be at least 1"));
    }
    if let Some(tk) = teacher_topk {
        if tk.k > v {
            return Err(Error::invalid_option(
                OP,
                "teacher_topk.k",
                tk.k,
                format!("must be at most the number of classes ({v})"),
            ));
        }
    }
    checked_numel(OP, "logits", &[n, v])?;

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
    check_upstream(OP, copts.reduction, n, grad_output)?;

    let zero = T::zero();
    let mut grad_hidden = vec![zero; checked_numel(OP, "grad_hidden", &[n, hs])?];
    let mut grad_weight = vec![zero; checked_numel(OP, "grad_weight", &[v, hs])?];
    let mut bias_acc: Option<Vec<f64>> = student.bias.map(|_| vec![0f64; v]);
    let finish = |loss, gh, gw, acc: Option<Vec<f64>>| -> Result<LinearDistillOutput<T>> {
        Ok(LinearDistillOutput {
            loss,
            grad_hidden: to_array2(OP, "grad_hidden", (n, hs), gh)?,
            grad_weight: to_array2(OP, "grad_weight", (v, hs), gw)?,
            grad_bias: acc.map(|a| Array1::from_iter(a.into_iter().map(T::c))),
        })
    };
    if no_rows {
        // BatchMean/Mean without kept rows: 0/0, as distill
        return finish(Loss::Scalar(T::nan()), grad_hidden, grad_weight, bias_acc);
    }
    let none = copts.reduction == Reduction::None;
    let ws = linear_distill_workspace_with::<T>(n, hs, ht, v, student.bias.is_some(), teacher_topk, opts);
    let cr = ws.chunk_rows;
    let xs_c = contiguous(&xs);
    let ws_c = contiguous(&wsm);
    let xt_c = contiguous(&xt);
    let wt_c = contiguous(&wtm);
    let bs_c = student.bias.as_ref().map(contiguous);
    let bt_c = teacher.bias.as_ref().map(contiguous);
    let cap = checked_numel(OP, "logits chunk", &[cr.min(n), v])?;
    let mut sbuf = vec![zero; cap];
    let mut tbuf = vec![zero; cap];
    let k = teacher_topk.map_or(0, |t| t.k);
    let kcap = checked_numel(OP, "teacher top-k chunk", &[cr.min(n), k])?;
    let mut idx_buf = vec![0i64; kcap];
    let mut lq_buf = vec![zero; kcap];
    let mut total = 0f64;
    let mut per_row: Vec<T> = Vec::with_capacity(if none { n } else { 0 });
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + cr).min(n);
        let rows = r1 - r0;
        let s_chunk = Chunk { x: xs_c.get(r0 * hs..r1 * hs).unwrap_or(&[]), rows };
        let t_chunk = Chunk { x: xt_c.get(r0 * ht..r1 * ht).unwrap_or(&[]), rows };
        let sb = sbuf.get_mut(..rows * v).unwrap_or(&mut []);
        let tb = tbuf.get_mut(..rows * v).unwrap_or(&mut []);
        logits_gemm(OP, sb, &s_chunk, &ws_c, v, hs)?;
        logits_gemm(OP, tb, &t_chunk, &wt_c, v, ht)?;
        add_bias_rows(sb, bs_c.as_deref(), v);
        add_bias_rows(tb, bt_c.as_deref(), v);
        let sv = ArrayViewMut2::from_shape((rows, v), &mut *sb)
            .map_err(|e| Error::too_large(OP, "chunk", e.to_string()))?;
        let tv = view2(OP, rows, v, tb)?;
        let yc = labels.as_ref().map(|y| y.slice(ndarray::s![r0..r1]));
        let go = chunk_upstream(grad_output, r0, r1);
        // the chunk's gradient G_c replaces its student logits in `sb`
        let loss_c = match teacher_topk {
            None => chunk_distill(sv, ChunkTeacher::Dense(tv), yc, &copts, &go)?,
            Some(tk) => {
                let ib = idx_buf.get_mut(..rows * k).unwrap_or(&mut []);
                let lb = lq_buf.get_mut(..rows * k).unwrap_or(&mut []);
                teacher_top_k(tb, v, copts.temperature, ib, lb);
                let indices = view2(OP, rows, k, ib)?;
                let logprobs = view2(OP, rows, k, lb)?;
                let st = SparseTeacher { indices, logprobs, add_tail: tk.add_tail };
                chunk_distill(sv, ChunkTeacher::Sparse(st), yc, &copts, &go)?
            }
        };
        match loss_c {
            Loss::Scalar(l) => total += l.f64(),
            Loss::Elementwise(a) => per_row.extend(a.iter().copied()),
        }
        let gx = grad_hidden.get_mut(r0 * hs..r1 * hs).unwrap_or(&mut []);
        backward_gemms(OP, sb, &s_chunk, &ws_c, gx, &mut grad_weight, v, hs)?;
        if let Some(acc) = bias_acc.as_mut() {
            add_column_sums(acc, sb, rows, v);
        }
        r0 = r1;
    }
    let loss = if none {
        Loss::Elementwise(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), per_row)
                .map_err(|e| Error::too_large(OP, "loss", e.to_string()))?,
        )
    } else {
        Loss::Scalar(T::c(total))
    };
    finish(loss, grad_hidden, grad_weight, bias_acc)
}

/// A row-major `rows × cols` view of a chunk buffer.
fn view2<'a, T>(op: &'static str, rows: usize, cols: usize, buf: &'a [T]) -> Result<ArrayView2<'a, T>> {
    ArrayView2::from_shape((rows, cols), buf).map_err(|e| Error::too_large(op, "chunk", e.to_string()))
}

/// `row += bias` for every `v`-element row of `buf` (in parallel).
fn add_bias_rows<T: LinearFloat>(buf: &mut [T], bias: Option<&[T]>, v: usize) {
    if let (Some(b), true) = (bias, v > 0) {
        buf.par_chunks_mut(v).for_each(|row| add_bias_row(row, b));
    }
}

/// `row += bias`.
#[inline]
fn add_bias_row<T: LinearFloat>(row: &mut [T], bias: &[T]) {
    for (x, &b) in row.iter_mut().zip(bias) {
        *x += b;
    }
}

/// `acc[j] += Σ_i g[i·v + j]` over the `rows` rows of `g` (one chunk's bias gradient), in f64, in parallel
/// over blocks of columns.
fn add_column_sums<T: LinearFloat>(acc: &mut [f64], g: &[T], rows: usize, v: usize) {
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

/// Checks that an optional bias has one entry per row of its weight `(V, H)`.
fn check_bias<T>(
    op: &'static str,
    bias: Option<&ArrayView1<'_, T>>,
    bname: &'static str,
    weight: &[usize],
    wname: &'static str,
) -> Result<()> {
    match bias {
        Some(b) if Some(&b.len()) != weight.first() => Err(Error::shape_mismatch(
            op,
            bname,
            b.shape(),
            wname,
            weight,
            format!("are not compatible: {bname} must have one entry per output row of {wname} (V)"),
        )),
        _ => Ok(()),
    }
}

/// Validates the upstream gradient against the loss: `(n,)` (or a scalar) for `None`, a scalar otherwise.
fn check_upstream<T: LinearFloat>(
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
fn chunk_upstream<'a, T: Clone>(g: &'a GradOutput<'_, T>, r0: usize, r1: usize) -> GradOutput<'a, T> {
    match g {
        GradOutput::Array(a) if a.ndim() == 1 => {
            GradOutput::Array(a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(r0..r1)))
        }
        GradOutput::Array(a) => GradOutput::Array(a.view()),
        GradOutput::Scalar(s) => GradOutput::Scalar(s.clone()),
    }
}

/// The teacher of one chunk.
enum ChunkTeacher<'a, T> {
    Dense(ArrayView2<'a, T>),
    Sparse(SparseTeacher<'a, T>),
}

/// One chunk's loss, with its gradient wrt the student logits for the upstream `go` written over the
/// student logits `s` ([`distill_with_grad_in_place`](crate::distill_with_grad_in_place)'s path: no chunk-sized temporary).
fn chunk_distill<T: LinearFloat>(
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

/// The teacher's top-k of each `v`-element row of `t` (see [`TeacherTopK`]): class indices into `idx` and
/// `log_softmax(row / temp)` at them into `lq`, both `rows × k` (`k = idx.len() / rows`).
fn teacher_top_k<T: LinearFloat>(t: &[T], v: usize, temp: f64, idx: &mut [i64], lq: &mut [T]) {
    let rows = t.len().checked_div(v).unwrap_or(0);
    let k = idx.len().checked_div(rows).unwrap_or(0);
    if k == 0 {
        return;
    }
    t.par_chunks(v)
        .zip(idx.par_chunks_mut(k))
        .zip(lq.par_chunks_mut(k))
        .for_each_init(TopKScratch::default, |sc, ((row, ir), lr)| top_k_row(row, temp, sc, ir, lr));
}

/// A class and its logit, ordered as `torch.topk` ranks them: larger values first, a NaN above every number;
/// among equal values (and among NaNs) the lower class index first.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    value: f64,
    index: usize,
}

impl Ord for Ranked {
    /// `Greater` = ranked higher.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self.value.is_nan(), other.value.is_nan()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (true, true) => other.index.cmp(&self.index),
            (false, false) => self
                .value
                .partial_cmp(&other.value)
                .unwrap_or(Ordering::Equal)
                .then(other.index.cmp(&self.index)),
        }
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Ranked {}

/// Per-thread scratch of [`top_k_row`]: the heap of the best `k` so far and the sorted result.
#[derive(Default)]
struct TopKScratch {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>>,
    best: Vec<Ranked>,
}

/// One row of [`teacher_top_k`]: the `idx.len()` highest-ranked classes ([`Ranked`]), best first, in one
/// pass with a min-heap of size `k` (most entries cost one comparison with its root), and their
/// `log_softmax(row / temp)`.
fn top_k_row<T: LinearFloat>(row: &[T], temp: f64, sc: &mut TopKScratch, idx: &mut [i64], lq: &mut [T]) {
    use std::cmp::Reverse;
    let k = idx.len().min(row.len());
    if k == 0 {
        return;
    }
    sc.heap.clear();
    for (index, x) in row.iter().enumerate() {
        let r = Ranked { value: x.f64(), index };
        if sc.heap.len() < k {
            sc.heap.push(Reverse(r));
        } else if let Some(mut lowest) = sc.heap.peek_mut() {
            if r > lowest.0 {
                *lowest = Reverse(r);
            }
        }
    }
    sc.best.clear();
    sc.best.extend(sc.heap.drain().map(|r| r.0));
    sc.best.sort_unstable_by(|a, b| b.cmp(a));
    // log_softmax(row / temp) = (x/temp − m) − ln Σ exp(x/temp − m), as PyTorch orders it; m is the largest
    // value (NaN if the row has one: then every log-probability is NaN, as in PyTorch)
    let m = sc.best.first().map_or(f64::NAN, |r| r.value / temp);
    let log_z = if m.is_finite() {
        row.iter().map(|x| (x.f64() / temp - m).exp()).sum::<f64>().ln()
    } else {
        // ±inf maxima: the online sum gives PyTorch's NaN / −inf pattern
        let mut acc = OnlineLse::EMPTY;
        for x in row {
            acc.push(x.f64() / temp);
        }
        acc.z.ln()
    };
    for ((o, l), r) in idx.iter_mut().zip(lq.iter_mut()).zip(&sc.best) {
        *o = r.index as i64;
        *l = T::c((r.value / temp - m) - log_z);
    }
}

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
