//! Selecting a teacher's top-k from its logits: `log_softmax(logits / T)` at the `k` largest logits of each
//! row, and the log of the mass outside them, without writing the log-softmax of the whole row.
//!
//! Per row, four reads of the row (which stays in cache): its maximum `m` ([`infoloss::kernels::max_f32`]);
//! `e_i = exp(x_i − m)` and `Z = Σ e_i` ([`infoloss::kernels::exp_sub_sum_f32`], SIMD); the top-k scan, which
//! compares a block of 64 logits' maximum with the running k-th best and looks inside only when it is larger;
//! and the tail `Σ e_i` over the classes outside the top-k, summed directly (not `Z − Σ_top`, which would lose the
//! digits of a small tail). Rows run in parallel (rayon); the result does not depend on the thread count.

use std::cmp::Ordering;

use half::{bf16, f16};
use infoloss::kernels::{exp_sub_sum_f32, max_f32};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};
use rayon::prelude::*;

use crate::error::{CacheError, Result};
use crate::rows::TopkRows;

/// A logit element type the selection reads: rows are taken as `f32` (divided by `T`).
pub trait Logit: Copy + Send + Sync + 'static {
    /// The row `src / temp` as `f32`: `src` itself for `f32` at `T = 1`, otherwise written into `scratch` (the
    /// division in the input's own precision for `f32` and `f64`, in `f32` for the half types, as torch computes
    /// their division).
    fn scaled_f32<'a>(src: &'a [Self], temp: f64, scratch: &'a mut [f32]) -> &'a [f32];
}

/// `x /= t` unless `t` is 1.
fn divide(x: &mut [f32], t: f32) {
    if t != 1.0 {
        x.iter_mut().for_each(|v| *v /= t);
    }
}

impl Logit for f32 {
    fn scaled_f32<'a>(src: &'a [f32], temp: f64, scratch: &'a mut [f32]) -> &'a [f32] {
        let t = temp as f32;
        if t == 1.0 {
            return src;
        }
        scratch.iter_mut().zip(src).for_each(|(d, &x)| *d = x / t);
        scratch
    }
}

impl Logit for f64 {
    fn scaled_f32<'a>(src: &'a [f64], temp: f64, scratch: &'a mut [f32]) -> &'a [f32] {
        scratch.iter_mut().zip(src).for_each(|(d, &x)| *d = (x / temp) as f32);
        scratch
    }
}

impl Logit for f16 {
    fn scaled_f32<'a>(src: &'a [f16], temp: f64, scratch: &'a mut [f32]) -> &'a [f32] {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, scratch);
        divide(scratch, temp as f32);
        scratch
    }
}

impl Logit for bf16 {
    fn scaled_f32<'a>(src: &'a [bf16], temp: f64, scratch: &'a mut [f32]) -> &'a [f32] {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, scratch);
        divide(scratch, temp as f32);
        scratch
    }
}

/// The top-`k` of every row of `logits` `(rows, V)` at temperature `temperature`:
/// `indices[r]` are the classes of the `k` largest logits, best first (ties: the lower class first, as
/// `torch.topk`), `logprobs[r] = log_softmax(logits[r] / T)` at them and `tail[r] = ln Σ_{i ∉ top-k}
/// softmax(logits[r] / T)_i`.
///
/// PyTorch equivalent: `lp = F.log_softmax(logits.float() / T, -1); v, i = lp.topk(k)`, `tail =
/// torch.log1p(-v.exp().sum(-1))` (but summed directly over the tail here).
///
/// Errors: `k` of 0 or above `V`; a row with a NaN or `+inf` logit, or with every logit `-inf` (naming the row).
///
/// ```
/// use infoloss_cache::select_topk;
/// use infoloss::ndarray::array;
/// let top = select_topk(array![[1.0f32, 3.0, 2.0, 0.0]].view(), 2, 1.0).unwrap();
/// assert_eq!(top.indices, array![[1u32, 2]]);
/// let z = (1.0f64.exp() + 3.0f64.exp() + 2.0f64.exp() + 1.0).ln();
/// assert!((top.logprobs[[0, 0]] as f64 - (3.0 - z)).abs() < 1e-6);
/// assert!((top.tail[0] as f64 - ((1.0f64.exp() + 1.0).ln() - z)).abs() < 1e-6);
/// ```
pub fn select_topk<T: Logit>(logits: ArrayView2<'_, T>, k: usize, temperature: f64) -> Result<TopkRows> {
    let (rows, v) = logits.dim();
    if k == 0 || k > v {
        return Err(CacheError::Invalid(format!(
            "select_topk: k must be 1 to the vocabulary size {v}, got {k}"
        )));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(CacheError::Invalid(format!(
            "select_topk: temperature must be finite and > 0, got {temperature}"
        )));
    }
    let logits = logits.as_standard_layout();
    let flat = logits.as_slice().expect("standard layout");
    let mut indices = Array2::<u32>::zeros((rows, k));
    let mut logprobs = Array2::<f32>::zeros((rows, k));
    let mut tail = Array1::<f32>::zeros(rows);
    if rows == 0 {
        return Ok(TopkRows { indices, logprobs, tail });
    }
    let (ix, lp, tl) = (
        indices.as_slice_mut().expect("fresh"),
        logprobs.as_slice_mut().expect("fresh"),
        tail.as_slice_mut().expect("fresh"),
    );
    ix.par_chunks_mut(k)
        .zip(lp.par_chunks_mut(k))
        .zip(tl.par_iter_mut())
        .zip(flat.par_chunks(v))
        .enumerate()
        .try_for_each_init(Scratch::default, |sc, (r, (((ix, lp), tl), row))| {
            sc.resize(v);
            let x = T::scaled_f32(row, temperature, &mut sc.x);
            row_topk(x, &mut sc.e, &mut sc.cand, k, ix, lp, tl)
                .map_err(|what| CacheError::Invalid(format!("select_topk: row {r}: {what}")))
        })?;
    Ok(TopkRows { indices, logprobs, tail })
}

/// Bytes of logits [`select_topk_linear`] materializes at a time.
pub const LINEAR_CHUNK_BYTES: usize = 64 << 20;

/// The top-`k` of `hidden · weightᵀ + bias` at temperature `temperature`, as [`select_topk`], from teacher
/// hidden states `(rows, H)` and the teacher's output layer `weight` `(V, H)` (and `bias` `(V,)`): the logits
/// are computed a chunk of rows at a time (at most [`LINEAR_CHUNK_BYTES`] of them), never whole.
///
/// PyTorch equivalent: `select_topk(F.linear(hidden, weight, bias), k, T)`.
///
/// ```
/// use infoloss_cache::{select_topk, select_topk_linear};
/// use infoloss::ndarray::array;
/// let h = array![[1.0f32, 0.0], [0.5, 2.0]];
/// let w = array![[1.0f32, 1.0], [0.0, 1.0], [2.0, -1.0]];
/// let logits = h.dot(&w.t());
/// let a = select_topk_linear(h.view(), w.view(), None, 2, 1.0).unwrap();
/// assert_eq!(a, select_topk(logits.view(), 2, 1.0).unwrap());
/// ```
pub fn select_topk_linear(
    hidden: ArrayView2<'_, f32>,
    weight: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    k: usize,
    temperature: f64,
) -> Result<TopkRows> {
    linear_in_chunks(hidden, weight, bias, k, temperature, LINEAR_CHUNK_BYTES)
}

/// [`select_topk_linear`] with at most `chunk_bytes` of logits at a time.
fn linear_in_chunks(
    hidden: ArrayView2<'_, f32>,
    weight: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    k: usize,
    temperature: f64,
    chunk_bytes: usize,
) -> Result<TopkRows> {
    let (rows, h) = hidden.dim();
    let v = weight.nrows();
    if weight.ncols() != h || bias.is_some_and(|b| b.len() != v) {
        return Err(CacheError::Invalid(format!(
            "select_topk_linear: hidden {:?}, weight {:?} and bias {:?} must be (rows, H), (V, H) and (V,)",
            hidden.shape(),
            weight.shape(),
            bias.map(|b| b.shape().to_vec())
        )));
    }
    let chunk = (chunk_bytes / (4 * v.max(1))).max(1);
    let mut out = TopkRows::empty(k);
    let mut logits = Array2::<f32>::zeros((chunk.min(rows), v));
    for start in (0..rows).step_by(chunk) {
        let end = (start + chunk).min(rows);
        let mut l = logits.slice_mut(s![..end - start, ..]);
        infoloss::linear::matmul(l.view_mut(), hidden.slice(s![start..end, ..]), weight.t(), false)?;
        if let Some(b) = bias {
            l.axis_iter_mut(Axis(0)).for_each(|mut row| row += &b);
        }
        let part = select_topk(l.view(), k, temperature)
            .map_err(|e| CacheError::Invalid(shift_row(&e.to_string(), start)))?;
        out.append(&part)?;
    }
    if rows == 0 {
        // the argument checks of a non-empty call
        select_topk(Array2::<f32>::zeros((0, v)).view(), k, temperature)?;
    }
    Ok(out)
}

/// `select_topk: row R: …` with `R` counted from `start`.
fn shift_row(msg: &str, start: usize) -> String {
    let rest = msg.strip_prefix("select_topk: row ").and_then(|r| r.split_once(':'));
    match rest.and_then(|(n, tail)| Some((n.parse::<usize>().ok()?, tail))) {
        Some((n, tail)) => format!("select_topk_linear: row {}:{tail}", n + start),
        None => msg.replacen("select_topk", "select_topk_linear", 1),
    }
}

/// Per-thread buffers: the scaled row, its exponentials and the candidates.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    e: Vec<f32>,
    cand: Vec<(f32, u32)>,
}

impl Scratch {
    fn resize(&mut self, v: usize) {
        self.x.resize(v, 0.0);
        self.e.resize(v, 0.0);
    }
}

/// `a` ranks before `b`: larger value, then lower index.
fn rank(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1))
}

/// Keeps the `k` best candidates and returns the k-th best value (the threshold a newcomer must exceed).
fn prune(cand: &mut Vec<(f32, u32)>, k: usize) -> f32 {
    if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, rank);
        cand.truncate(k);
    }
    cand.iter().map(|c| c.0).fold(f32::INFINITY, f32::min)
}

/// The maximum of a block (no NaN: the row was checked), in eight independent lanes the compiler vectorizes.
fn block_max(b: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    for &x in chunks.remainder() {
        acc[0] = if x > acc[0] { x } else { acc[0] };
    }
    acc.into_iter().fold(f32::NEG_INFINITY, |a, x| if x > a { x } else { a })
}

/// `Σ x` in `f64`, in eight lanes.
fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f64::from(v);
        }
    }
    acc.iter().sum::<f64>() + chunks.remainder().iter().map(|&v| f64::from(v)).sum::<f64>()
}

/// One row: `x = logits / T`; `e` and `cand` are scratch.
fn row_topk(
    x: &[f32],
    e: &mut [f32],
    cand: &mut Vec<(f32, u32)>,
    k: usize,
    ix: &mut [u32],
    lp: &mut [f32],
    tail: &mut f32,
) -> std::result::Result<(), String> {
    let m = max_f32(x);
    if m.is_nan() {
        return Err("a logit is NaN".into());
    }
    if m == f32::INFINITY {
        return Err("a logit is +inf".into());
    }
    if m == f32::NEG_INFINITY {
        return Err("every logit is -inf".into());
    }
    let z = exp_sub_sum_f32(x, m, e).map_err(|e| e.to_string())?;
    // the scan: the first k entries, then blocks whose maximum beats the k-th best so far
    cand.clear();
    cand.extend(x[..k].iter().enumerate().map(|(i, &v)| (v, i as u32)));
    let cap = (2 * k).max(64);
    let mut thr = prune(cand, k);
    const BLOCK: usize = 64;
    for (b, blk) in x[k..].chunks(BLOCK).enumerate() {
        if block_max(blk) > thr {
            let base = k + b * BLOCK;
            for (j, &v) in blk.iter().enumerate() {
                if v > thr {
                    cand.push((v, (base + j) as u32));
                }
            }
            if cand.len() >= cap {
                thr = prune(cand, k);
            }
        }
    }
    prune(cand, k);
    cand.sort_unstable_by(rank);
    let ln_z = z.ln();
    for ((o, l), &(v, i)) in ix.iter_mut().zip(lp.iter_mut()).zip(cand.iter()) {
        *o = i;
        // PyTorch's order of operations: (x − m) − ln Z
        *l = ((f64::from(v) - f64::from(m)) - ln_z) as f32;
        e[i as usize] = 0.0;
    }
    let t = sum_f64(e);
    *tail = if t > 0.0 { (t.ln() - ln_z) as f32 } else { f32::NEG_INFINITY };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_selection_in_chunks_is_the_selection_of_the_whole_logits() {
        // small multiples of powers of two: every logit is exact whatever the GEMM's summation order
        let h = Array2::from_shape_fn((23, 5), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.5 - 2.5);
        let w = Array2::from_shape_fn((97, 5), |(i, j)| ((i * 5 + j * 13) % 17) as f32 * 0.25 - 2.0);
        let b = Array1::from_shape_fn(97, |i| (i % 3) as f32 * 0.125);
        let logits = h.dot(&w.t()) + &b;
        let want = select_topk(logits.view(), 9, 2.0).unwrap();
        for chunk_rows in [1, 4, 23, 100] {
            let got =
                linear_in_chunks(h.view(), w.view(), Some(b.view()), 9, 2.0, chunk_rows * 97 * 4).unwrap();
            assert_eq!(got, want, "{chunk_rows} rows per chunk");
        }
        let mut bad = h.clone();
        bad[[17, 0]] = f32::NAN;
        let e = linear_in_chunks(bad.view(), w.view(), None, 9, 2.0, 4 * 97 * 4).unwrap_err();
        assert_eq!(e.to_string(), "select_topk_linear: row 17: a logit is NaN");
    }
}
