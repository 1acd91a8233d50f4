//! Selecting a teacher's top-k from its logits: `log_softmax(logits / T)` at the `k` largest logits of each
//! row, and the log of the mass outside them, without writing the log-softmax of the whole row.
//!
//! Per row, two reads of the row: the top-k scan, which compares a block of 64 logits' maximum with the running
//! k-th best and looks inside only when it is larger, and finds the row's maximum `m` on the way; then, a segment
//! at a time, `e_i = exp(x_i − m)` and `Z = Σ e_i` ([`infoloss::kernels::exp_sub_sum_f32`], SIMD) and the tail
//! `Σ e_i` over the classes outside the top-k, summed directly while the segment is in L1 (not `Z − Σ_top`,
//! which would lose the digits of a small tail). Rows run in parallel (rayon); the result does not depend on the
//! thread count.

use half::{bf16, f16};
use infoloss::kernels::exp_sub_sum_f32;
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
            let mut x = std::mem::take(&mut sc.x);
            let op = RowOp { x: T::scaled_f32(row, temperature, &mut x), sc, k, ix, lp, tail: tl };
            let got = pulp::Arch::new().dispatch(op);
            sc.x = x;
            got.map_err(|what| CacheError::Invalid(format!("select_topk: row {r}: {what}")))
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

/// Per-thread buffers: the scaled row, one segment's exponentials, the candidates and the top-k's classes in
/// increasing order.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    e: Vec<f32>,
    cand: Vec<u64>,
    by_class: Vec<u32>,
}

impl Scratch {
    fn resize(&mut self, v: usize) {
        self.x.resize(v, 0.0);
        self.e.resize(SEGMENT.min(v), 0.0);
    }
}

/// Elements per call of [`exp_sub_sum_f32`]: the kernel sums each 512-element chunk of a row into one `f64`
/// and adds those in order, so summing the calls' results in order is the sum of one call over the whole row,
/// bit for bit (a test checks it), while the exponentials stay in L1 between the two uses of a segment.
const SEGMENT: usize = 512;

/// A candidate (a non-NaN logit `v` of class `i`) as one integer that orders as the ranking does (larger value
/// first, then lower class, as `torch.topk`): the value's order-preserving bits (`-0` as `+0`) above the
/// complement of the class.
#[inline(always)]
fn key(v: f32, i: u32) -> u64 {
    let b = (v + 0.0).to_bits();
    let ord = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
    u64::from(ord) << 32 | u64::from(!i)
}

/// The value of a [`key`].
fn key_value(key: u64) -> f32 {
    let ord = (key >> 32) as u32;
    f32::from_bits(if ord >> 31 == 1 { ord & 0x7fff_ffff } else { !ord })
}

/// The class of a [`key`].
fn key_class(key: u64) -> u32 {
    !(key as u32)
}

/// Keeps the `k` best candidates and returns the k-th best value (the threshold a newcomer must exceed).
fn prune(cand: &mut Vec<u64>, k: usize) -> f32 {
    if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        cand.truncate(k);
    }
    cand.iter().copied().min().map_or(f32::INFINITY, key_value)
}

/// The maximum of a block ignoring NaN, and whether it holds a NaN, in eight independent lanes the compiler
/// vectorizes.
#[inline(always)]
fn block_max(b: &[f32]) -> (f32, bool) {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut nan = [false; 8];
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        for ((a, n), &x) in acc.iter_mut().zip(&mut nan).zip(c) {
            *a = if x > *a { x } else { *a };
            *n |= x.is_nan();
        }
    }
    for &x in chunks.remainder() {
        acc[0] = if x > acc[0] { x } else { acc[0] };
        nan[0] |= x.is_nan();
    }
    (acc.into_iter().fold(f32::NEG_INFINITY, |a, x| if x > a { x } else { a }), nan.contains(&true))
}

/// `Σ x` in `f64` in eight lanes (element `i` in lane `i mod 8`), fed a segment at a time: every segment but
/// the last a multiple of 8 long.
#[derive(Default)]
struct LaneSum {
    acc: [f64; 8],
    rest: f64,
}

impl LaneSum {
    #[inline(always)]
    fn add(&mut self, x: &[f32]) {
        // the lanes as a local array, indexed: kept in vector registers
        let mut acc = self.acc;
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            let c: &[f32; 8] = c.try_into().expect("8 elements");
            for j in 0..8 {
                acc[j] += f64::from(c[j]);
            }
        }
        self.acc = acc;
        self.rest = chunks.remainder().iter().map(|&v| f64::from(v)).sum::<f64>();
    }

    fn total(&self) -> f64 {
        self.acc.iter().sum::<f64>() + self.rest
    }
}

/// The top-k scan of a row, with the row's maximum: the first `k` entries, then blocks of 64 whose maximum
/// beats the k-th best so far. Leaves the top-k in `cand`, best first; `Err` names a NaN, `+inf` or all `-inf`.
#[inline(always)]
fn scan(x: &[f32], cand: &mut Vec<u64>, k: usize) -> std::result::Result<f32, String> {
    const BLOCK: usize = 64;
    cand.clear();
    cand.extend(x[..k].iter().enumerate().map(|(i, &v)| key(v, i as u32)));
    let (mut m, mut nan) = block_max(&x[..k]);
    let cap = (2 * k).max(64);
    let mut thr = prune(cand, k);
    for (b, blk) in x[k..].chunks(BLOCK).enumerate() {
        let (bm, bn) = block_max(blk);
        nan |= bn;
        if bm > m {
            m = bm;
        }
        if bm > thr {
            let base = k + b * BLOCK;
            for (j, &v) in blk.iter().enumerate() {
                if v > thr {
                    cand.push(key(v, (base + j) as u32));
                }
            }
            if cand.len() >= cap {
                thr = prune(cand, k);
            }
        }
    }
    if nan {
        return Err("a logit is NaN".into());
    }
    if m == f32::INFINITY {
        return Err("a logit is +inf".into());
    }
    if m == f32::NEG_INFINITY {
        return Err("every logit is -inf".into());
    }
    prune(cand, k);
    cand.sort_unstable_by(|a, b| b.cmp(a));
    Ok(m)
}

/// One row: `x = logits / T`; `sc` is scratch. Two reads of the row: the scan ([`scan`], which finds the
/// maximum `m` too), then segment by segment `e = exp(x − m)` ([`exp_sub_sum_f32`], SIMD) summed into `Z` and,
/// with the top-k's entries zeroed, into the tail (summed directly, not `Z − Σ_top`, which would lose the digits
/// of a small tail).
///
/// The row runs as one [`pulp::WithSimd`] operation so that the loops of the scan and the tail sum, inlined into
/// it, are compiled for the machine's vector instructions (their lanes are spelled out, so the sums do not
/// depend on the instruction set).
struct RowOp<'a> {
    x: &'a [f32],
    sc: &'a mut Scratch,
    k: usize,
    ix: &'a mut [u32],
    lp: &'a mut [f32],
    tail: &'a mut f32,
}

impl pulp::WithSimd for RowOp<'_> {
    type Output = std::result::Result<(), String>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Self::Output {
        let RowOp { x, sc, k, ix, lp, tail } = self;
        let Scratch { e, cand, by_class, .. } = sc;
        let m = scan(x, cand, k)?;
        by_class.clear();
        by_class.extend(cand.iter().map(|&c| key_class(c)));
        by_class.sort_unstable();
        let mut top = by_class.iter().map(|&i| i as usize).peekable();
        let (mut z, mut t) = (0f64, LaneSum::default());
        for (s, xs) in x.chunks(SEGMENT).enumerate() {
            let es = &mut e[..xs.len()];
            z += exp_sub_sum_f32(xs, m, es).map_err(|e| e.to_string())?;
            let base = s * SEGMENT;
            while let Some(i) = top.next_if(|&i| i < base + xs.len()) {
                es[i - base] = 0.0;
            }
            t.add(es);
        }
        let ln_z = z.ln();
        for ((o, l), &c) in ix.iter_mut().zip(lp.iter_mut()).zip(cand.iter()) {
            let i = key_class(c);
            let v = x[i as usize];
            *o = i;
            // PyTorch's order of operations: (x − m) − ln Z
            *l = ((f64::from(v) - f64::from(m)) - ln_z) as f32;
        }
        let t = t.total();
        *tail = if t > 0.0 { (t.ln() - ln_z) as f32 } else { f32::NEG_INFINITY };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segments_sum_to_the_whole_rows_sums_bit_for_bit() {
        for v in [1usize, 7, 8, 511, 512, 513, 1031, 4099, 128_256] {
            let x: Vec<f32> = (0..v).map(|i| ((i * 7919 % 1000) as f32 * 0.013).sin() * 9.0).collect();
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut e_whole = vec![0f32; v];
            let z_whole = exp_sub_sum_f32(&x, m, &mut e_whole).unwrap();
            let (mut z, mut lanes, mut e) = (0f64, LaneSum::default(), vec![0f32; SEGMENT]);
            for (s, xs) in x.chunks(SEGMENT).enumerate() {
                let es = &mut e[..xs.len()];
                z += exp_sub_sum_f32(xs, m, es).unwrap();
                assert_eq!(es, &e_whole[s * SEGMENT..s * SEGMENT + xs.len()], "V = {v}");
                lanes.add(es);
            }
            assert_eq!(z.to_bits(), z_whole.to_bits(), "Z, V = {v}");
            // the tail sum of one pass over the whole row, in eight lanes and the remainder
            let mut acc = [0f64; 8];
            let mut chunks = e_whole.chunks_exact(8);
            for c in &mut chunks {
                acc.iter_mut().zip(c).for_each(|(a, &v)| *a += f64::from(v));
            }
            let whole =
                acc.iter().sum::<f64>() + chunks.remainder().iter().map(|&v| f64::from(v)).sum::<f64>();
            assert_eq!(lanes.total().to_bits(), whole.to_bits(), "tail, V = {v}");
        }
    }

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
