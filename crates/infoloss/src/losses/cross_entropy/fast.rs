//! The SIMD fast path of the cross-entropy functions.
//!
//! Applies to the `f32`-compute element types (`f32`, `f16`, `bf16`; `f64` stays on the reference
//! path) in any layout, with finite class weights and upstream gradients. Every row goes through
//! [`cross_entropy_row_f32`](crate::kernels::cross_entropy_row_f32) /
//! [`cross_entropy_probs_row_f32`](crate::kernels::cross_entropy_probs_row_f32), which write the
//! row's gradient with one `exp` per element. `f32` rows of a `(C)` or `(N, C)` standard-layout
//! array are used where they lie; other rows (half types, trailing dimensions after the class
//! dimension) are converted into an `f32` scratch row and back. Rows are split across rayon in
//! chunks of a fixed number of elements; the per-row loss terms land in one slot per row and are
//! summed sequentially in `f64`, in row order, so results do not depend on the thread count.

use ndarray::{ArrayViewD, ArrayViewMutD};
use rayon::prelude::*;

use crate::base::array::{array_from_vec, row_major};
use crate::base::class_targets::IndexTargets;
use crate::base::outputs::{LossAndGrad, mean_of, pack_loss};
use crate::base::shape::ClassLayout;
use crate::base::upstream::RowUpstream as Upstream;
use crate::kernels::alloc::Scratch;
use crate::kernels::alloc::try_zeroed;
use crate::kernels::convert::{gather_lane as load_row, scatter_lane as store_row};
use crate::kernels::{CeRow, Kernels};
use crate::{DType, Element, Loss, Real, Reduction, Result};

/// Elements per parallel task (at least one outer block): a constant, so the split never depends
/// on the number of threads (the results would not either, as each row is computed on its own).
const CHUNK_ELEMS: usize = 1 << 15;

/// Per-row upstream gradient scale in `f32`.
enum Scale {
    Same(f32),
    PerRow(Vec<f32>),
}

impl Scale {
    fn at(&self, r: usize) -> f32 {
        match self {
            Scale::Same(g) => *g,
            Scale::PerRow(v) => v.get(r).copied().unwrap_or(0.0),
        }
    }

    /// `div(g)` for every row, `None` unless every value is finite.
    fn of<A: Real>(up: &Upstream<A>, div: impl Fn(f64) -> f32) -> Option<Scale> {
        let finite = |g: f64| g.is_finite() && div(g).is_finite();
        match up {
            Upstream::Same(g) => finite(g.f64()).then(|| Scale::Same(div(g.f64()))),
            Upstream::PerRow(v) => v
                .iter()
                .all(|g| finite(g.f64()))
                .then(|| Scale::PerRow(v.iter().map(|g| div(g.f64())).collect())),
        }
    }
}

/// What the row loops return: per-row losses (`none`) and the reduced loss.
struct FastLoss {
    per_row: Vec<f32>,
    reduced: f64,
}

impl FastLoss {
    fn pack<T: Element>(self, reduction: Reduction, out_shape: &[usize]) -> Result<Loss<T>> {
        let per_row = self.per_row.iter().map(|&v| T::Acc::c(v as f64)).collect();
        pack_loss::<T>("cross_entropy", reduction, out_shape, per_row, T::Acc::c(self.reduced))
    }
}

/// The smallest nonzero class weight the fast path takes. The kernel forms `w_c·(m − x_c)` in `f32`
/// where PyTorch forms `w_c·lsm_c`: for a weight this small the two products underflow into
/// subnormals differently (a weight of `3e-45` gave 0.66 against PyTorch's 0.555, a fuzz finding kept
/// in the corpus). From `2^-100` up, the part lost to underflow is below `C·2^-49` of the loss.
const MIN_FAST_WEIGHT: f32 = 7.888_609e-31; // 2^-100

/// The class weights as `f32`, or `None` (the reference path) for a non-finite weight or a nonzero
/// one of magnitude below [`MIN_FAST_WEIGHT`].
fn f32_weight<A: Real>(weight: Option<&[A]>) -> Option<Option<Vec<f32>>> {
    match weight {
        None => Some(None),
        Some(w) => {
            let v: Vec<f32> = w.iter().map(|x| x.f64() as f32).collect();
            let ok = |x: &f32| x.is_finite() && (*x == 0.0 || x.abs() >= MIN_FAST_WEIGHT);
            v.iter().all(ok).then_some(Some(v))
        }
    }
}

/// A NaN log-softmax row (a NaN or `+inf` logit, or every logit `-inf`): torch's
/// `log_softmax` backward gives NaN there even for a zero upstream gradient.
///
/// Ignored rows (every padding position of a batch) are scanned for this, so `f32`, `bf16` and `f16`
/// rows are tested on their bits in a loop without branches, which the compiler vectorizes.
fn nan_row<T: Element>(x: &[T]) -> bool {
    if let Some(x) = T::as_f32(x) {
        return nan_row_bits(x.iter().map(|v| v.to_bits()), 0x7f80_0000, 0x7fff_ffff);
    }
    if let Some(x) = T::as_bf16(x) {
        return nan_row_bits(x.iter().map(|v| u32::from(v.to_bits())), 0x7f80, 0x7fff);
    }
    if let Some(x) = T::as_f16(x) {
        return nan_row_bits(x.iter().map(|v| u32::from(v.to_bits())), 0x7c00, 0x7fff);
    }
    let v = |e: &T| e.to_acc().f64();
    x.iter().any(|e| v(e).is_nan() || v(e) == f64::INFINITY) || x.iter().all(|e| v(e) == f64::NEG_INFINITY)
}

/// [`nan_row`] on the bits of an IEEE binary format whose `+inf` is `inf` and whose sign bit is the
/// one above `abs_mask`: some value is NaN (magnitude bits above `inf`) or `+inf`, or every value is
/// `-inf` (an empty row counts as all `-inf`, as `Iterator::all` does).
#[inline]
fn nan_row_bits(bits: impl Iterator<Item = u32>, inf: u32, abs_mask: u32) -> bool {
    let neg_inf = inf | (abs_mask + 1);
    let (bad, all_neg_inf) = bits.fold((0u32, 1u32), |(bad, all), b| {
        let nan_or_pos_inf = ((b & abs_mask) > inf) | (b == inf);
        (bad | u32::from(nan_or_pos_inf), all & u32::from(b == neg_inf))
    });
    bad != 0 || all_neg_inf != 0
}

// ---------------------------------------------------------------------------------------------
// the row driver

/// The buffers one call works on (row-major, class dimension 1, as `ClassLayout` describes).
enum Io<'a, T> {
    /// Reads the logits; writes the gradient into the second buffer when there is one.
    Read(&'a [T], Option<&'a mut [T]>),
    /// Reads the logits from the buffer and overwrites them with the gradient.
    InPlace(&'a mut [T]),
}

/// `row(r, x_r, t_r, grad_r, slot_r)` for one row: `x_r` the row's logits, `t_r` its probability
/// target (empty without), `grad_r` where its gradient goes (`None` for the loss alone).
type RowFn<'a, S> = dyn Fn(usize, &[f32], &[f32], Option<&mut [f32]>, &mut S) -> Result<()> + Sync + 'a;

/// The buffers of one row a kernel reads its logits from and writes its gradient into directly.
enum RowBuf<'b> {
    /// `f32` logits, overwritten with the gradient.
    F32(&'b mut [f32]),
    /// `bf16` logits (`x`, or `out` itself when `None`), the gradient rounded into `out`.
    Bf16 { x: Option<&'b [half::bf16]>, out: &'b mut [half::bf16] },
}

/// `row(r, buf_r, slot_r)` for one row whose kernel reads and writes the caller's buffers (see
/// [`RowBuf`]).
type InPlaceFn<'a, S> = dyn Fn(usize, RowBuf<'_>, &mut S) -> Result<()> + Sync + 'a;

/// Row `[at, at + c)` of `a` when rows are contiguous (`inner == 1`).
fn direct<T>(a: &[T], at: usize, c: usize, inner: usize) -> Option<&[T]> {
    if inner == 1 { a.get(at..at + c) } else { None }
}

/// The rows of one parallel task: `slots` are rows `first..first + slots.len()`; `x`/`t` are the
/// whole arrays, `g` (the gradient, or the logits themselves when `x` is `None`) this task's part.
#[allow(clippy::too_many_arguments)]
fn task<T: Element, S>(
    layout: &ClassLayout,
    first: usize,
    x: Option<&[T]>,
    t: Option<&[T]>,
    mut g: Option<&mut [T]>,
    slots: &mut [S],
    row: &RowFn<'_, S>,
    in_place: Option<&InPlaceFn<'_, S>>,
) -> Result<()> {
    let (c, inner) = (layout.classes, layout.inner);
    let block = c * inner;
    // scratch rows from the thread's pool, taken when first needed (every use overwrites them
    // completely before reading)
    let (mut sx, mut st, mut sg): (Option<Scratch>, Option<Scratch>, Option<Scratch>) = (None, None, None);
    // the offset of this task's first element in the whole array
    let offset = (first / inner) * block;
    for (local, slot) in slots.iter_mut().enumerate() {
        let r = first + local;
        let base = (local / inner) * block + local % inner;
        if let (Some(f), 1) = (in_place, inner)
            && let Some(gr) = g.as_deref_mut().and_then(|gb| gb.get_mut(base..base + c))
        {
            let xr = x.and_then(|x| x.get(offset + base..offset + base + c));
            // f32 in place, or bf16 in place or from the input: the kernels read and write these
            // rows where they lie
            let buf = match T::DTYPE {
                DType::F32 if xr.is_none() => T::as_f32_mut(gr).map(RowBuf::F32),
                DType::BF16 => T::as_bf16_mut(gr).map(|out| RowBuf::Bf16 { x: xr.and_then(T::as_bf16), out }),
                _ => None,
            };
            if let Some(buf) = buf {
                f(r, buf, slot)?;
                continue;
            }
        }
        // a row converted into scratch anyway (half types, trailing dimensions) whose gradient is
        // converted back: the in-place kernel on the scratch row, with no second scratch row
        if let (Some(f), Some(gb)) = (in_place, g.as_deref_mut())
            && (inner != 1 || T::DTYPE != DType::F32)
        {
            let sx = sx.get_or_insert_with(|| Scratch::any(c));
            match x {
                Some(x) => load_row(x, offset + base, inner, sx),
                None => load_row(gb, base, inner, sx),
            }
            f(r, RowBuf::F32(sx), slot)?;
            store_row(sx, gb, base, inner);
            continue;
        }
        let xr: &[f32] = match x.and_then(|x| direct(x, offset + base, c, inner)).and_then(T::as_f32) {
            Some(v) => v,
            None => {
                let sx = sx.get_or_insert_with(|| Scratch::any(c));
                match x {
                    Some(x) => load_row(x, offset + base, inner, sx),
                    None => load_row(g.as_deref().unwrap_or_default(), base, inner, sx),
                }
                sx
            }
        };
        let tr: &[f32] = match t {
            None => &[],
            Some(t) => match direct(t, offset + base, c, inner).and_then(T::as_f32) {
                Some(v) => v,
                None => {
                    let st = st.get_or_insert_with(|| Scratch::any(c));
                    load_row(t, offset + base, inner, st);
                    st
                }
            },
        };
        match g.as_deref_mut() {
            None => row(r, xr, tr, None, slot)?,
            Some(gb) => {
                let own = if inner == 1 { gb.get_mut(base..base + c).and_then(T::as_f32_mut) } else { None };
                match own {
                    Some(gr) => row(r, xr, tr, Some(gr), slot)?,
                    None => {
                        let sg = sg.get_or_insert_with(|| Scratch::any(c));
                        row(r, xr, tr, Some(sg), slot)?;
                        store_row(sg, gb, base, inner);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs `row` over every row, in parallel over fixed chunks of whole outer blocks.
fn drive<T: Element, S: Send>(
    layout: &ClassLayout,
    io: Io<'_, T>,
    t: Option<&[T]>,
    slots: &mut [S],
    row: &RowFn<'_, S>,
    in_place: Option<&InPlaceFn<'_, S>>,
) -> Result<()> {
    let block = layout.classes * layout.inner;
    let outer_per_task = (CHUNK_ELEMS / block.max(1)).max(1);
    let rows_per_task = outer_per_task * layout.inner;
    let elems_per_task = outer_per_task * block;
    match io {
        Io::Read(x, None) => slots
            .par_chunks_mut(rows_per_task)
            .enumerate()
            .try_for_each(|(i, sc)| task(layout, i * rows_per_task, Some(x), t, None, sc, row, None)),
        Io::Read(x, Some(g)) => g
            .par_chunks_mut(elems_per_task)
            .zip(slots.par_chunks_mut(rows_per_task))
            .enumerate()
            .try_for_each(|(i, (gc, sc))| {
                task(layout, i * rows_per_task, Some(x), t, Some(gc), sc, row, in_place)
            }),
        Io::InPlace(buf) => buf
            .par_chunks_mut(elems_per_task)
            .zip(slots.par_chunks_mut(rows_per_task))
            .enumerate()
            .try_for_each(|(i, (gc, sc))| {
                task(layout, i * rows_per_task, None, t, Some(gc), sc, row, in_place)
            }),
    }
}

/// Whether the fast path can take an input of this type and layout.
fn applies<T: Element>(layout: &ClassLayout) -> bool {
    crate::base::path::fast_path() && T::F32_COMPUTE && layout.classes > 0 && layout.rows() > 0
}

// ---------------------------------------------------------------------------------------------
// class-index targets

struct IndexJob<'a> {
    layout: ClassLayout,
    class: &'a [Option<usize>],
    weight: Option<Vec<f32>>,
    eps: f64,
    reduction: Reduction,
    total_weight: f64,
    scale: Option<Scale>,
    want_loss: bool,
}

impl<'a> IndexJob<'a> {
    /// `None` when a weight or upstream gradient is not finite (the reference path handles those).
    fn new<A: Real>(
        tg: &'a IndexTargets<A>,
        reduction: Reduction,
        eps: f64,
        want_loss: bool,
        up: Option<&Upstream<A>>,
    ) -> Option<Self> {
        let weight = f32_weight(tg.weight.as_deref())?;
        let total_weight = tg.total_weight;
        let scale = match up {
            None => None,
            Some(up) => Some(Scale::of(up, |g| match reduction {
                Reduction::Mean => (g / total_weight) as f32,
                _ => g as f32,
            })?),
        };
        let layout = tg.layout;
        Some(IndexJob { layout, class: &tg.class, weight, eps, reduction, total_weight, scale, want_loss })
    }
}

/// Runs a row loop `rows` reading `input` (into a gradient array, `with_grad`), and packs the loss for
/// `loss` (reduction and `none` shape) where it is wanted.
fn read<T: Element>(
    input: &ArrayViewD<'_, T>,
    with_grad: bool,
    loss: Option<(Reduction, &[usize])>,
    rows: impl FnOnce(Io<'_, T>) -> Result<FastLoss>,
) -> Result<LossAndGrad<T>> {
    const OP: &str = "cross_entropy";
    let x = row_major(input);
    let mut grad = if with_grad { Some(try_zeroed::<T>(OP, "gradient", x.len())?) } else { None };
    let out = rows(Io::Read(&x, grad.as_deref_mut()))?;
    let loss = loss.map(|(reduction, out_shape)| out.pack::<T>(reduction, out_shape)).transpose()?;
    let grad = grad.map(|g| array_from_vec(OP, input.shape(), g)).transpose()?;
    Ok((loss, grad))
}

/// Runs a row loop `rows` writing the gradient over `input`, and packs the loss; `None` (the input
/// untouched) when `input` is not contiguous.
fn in_place<T: Element>(
    input: &mut ArrayViewMutD<'_, T>,
    reduction: Reduction,
    out_shape: &[usize],
    rows: impl FnOnce(Io<'_, T>) -> Result<FastLoss>,
) -> Result<Option<Loss<T>>> {
    let Some(buf) = input.as_slice_mut() else {
        return Ok(None);
    };
    let out = rows(Io::InPlace(buf))?;
    Ok(Some(out.pack::<T>(reduction, out_shape)?))
}

/// The fast path of `ce_index_core`, or `None` when it does not apply.
pub(super) fn index<T: Element>(
    input: &ArrayViewD<'_, T>,
    tg: &IndexTargets<T::Acc>,
    reduction: Reduction,
    eps: f64,
    want_loss: bool,
    up: Option<&Upstream<T::Acc>>,
) -> Result<Option<LossAndGrad<T>>> {
    if !applies::<T>(&tg.layout) || tg.class.is_empty() {
        return Ok(None);
    }
    let Some(job) = IndexJob::new(tg, reduction, eps, want_loss, up) else {
        return Ok(None);
    };
    let loss = want_loss.then_some((reduction, tg.out_shape.as_slice()));
    read(input, job.scale.is_some(), loss, |io| index_rows(io, &job)).map(Some)
}

/// The fast path of `cross_entropy_with_grad_in_place`, or `None` when it does not apply (then the
/// input is untouched).
pub(super) fn index_in_place<T: Element>(
    input: &mut ArrayViewMutD<'_, T>,
    tg: &IndexTargets<T::Acc>,
    reduction: Reduction,
    eps: f64,
) -> Result<Option<Loss<T>>> {
    if !applies::<T>(&tg.layout) || tg.class.is_empty() {
        return Ok(None);
    }
    let up = Upstream::Same(T::Acc::c(1.0));
    let Some(job) = IndexJob::new(tg, reduction, eps, true, Some(&up)) else {
        return Ok(None);
    };
    in_place(input, reduction, &tg.out_shape, |io| index_rows(io, &job))
}

fn index_rows<T: Element>(io: Io<'_, T>, job: &IndexJob<'_>) -> Result<FastLoss> {
    let c = job.layout.classes;
    let rows = job.class.len();
    let smoothing = job.eps > 0.0;
    let k = Kernels::new();
    let weight = job.weight.as_deref();
    let has_grad = !matches!(io, Io::Read(_, None));
    if !job.want_loss && !has_grad {
        return Ok(FastLoss { per_row: Vec::new(), reduced: 0.0 });
    }
    // (−w_y·lsm_y, −Σ_c w_c·lsm_c) per row, each rounded to f32 as the reference computes them
    let mut terms = vec![(0f32, 0f32); rows];
    // the row's (−w_y·lsm_y, smoothing term) from its kernel result
    let terms_of = |out: CeRow, y: usize| -> (f32, f32) {
        let w_y = weight.and_then(|w| w.get(y).copied()).unwrap_or(1.0);
        (-out.target_log_prob * w_y, if smoothing { out.smooth as f32 } else { 0.0 })
    };
    let row = |r: usize, xr: &[f32], _: &[f32], g: Option<&mut [f32]>, slot: &mut (f32, f32)| -> Result<()> {
        match job.class.get(r).copied().flatten() {
            None => {
                if let Some(g) = g {
                    g.fill(if nan_row(xr) { f32::NAN } else { 0.0 });
                }
            }
            Some(y) => {
                let scale = job.scale.as_ref().map_or(0.0, |s| s.at(r));
                *slot = terms_of(k.cross_entropy_row_f32(xr, y, weight, job.eps, g, scale)?, y);
            }
        }
        Ok(())
    };
    // the in-place training path on `f32` rows: the kernel overwrites the logits block by block, no
    // row is copied
    let in_place = |r: usize, buf: RowBuf<'_>, slot: &mut (f32, f32)| -> Result<()> {
        match (job.class.get(r).copied().flatten(), buf) {
            (None, RowBuf::F32(buf)) => buf.fill(if nan_row(buf) { f32::NAN } else { 0.0 }),
            (None, RowBuf::Bf16 { x, out }) => {
                let nan = nan_row(x.unwrap_or(out));
                out.fill(if nan { half::bf16::NAN } else { half::bf16::ZERO });
            }
            (Some(y), buf) => {
                let scale = job.scale.as_ref().map_or(0.0, |s| s.at(r));
                let out = match buf {
                    RowBuf::F32(buf) => k.cross_entropy_row_in_place_f32(buf, y, weight, job.eps, scale)?,
                    RowBuf::Bf16 { x, out } => k.cross_entropy_row_bf16(x, out, y, weight, job.eps, scale)?,
                };
                *slot = terms_of(out, y);
            }
        }
        Ok(())
    };
    drive(&job.layout, io, None, &mut terms, &row, Some(&in_place))?;
    if !job.want_loss {
        return Ok(FastLoss { per_row: Vec::new(), reduced: 0.0 });
    }
    let keep = (1.0 - job.eps) as f32;
    let eps_c = (job.eps / c as f64) as f32;
    let combine = |nll: f32, smooth: f32| if smoothing { keep * nll + smooth * eps_c } else { nll };
    Ok(match job.reduction {
        Reduction::None => {
            FastLoss { per_row: terms.iter().map(|&(n, s)| combine(n, s)).collect(), reduced: 0.0 }
        }
        reduction => {
            let (mut nll_sum, mut smooth_sum) = (0f64, 0f64);
            for &(n, s) in &terms {
                nll_sum += n as f64;
                smooth_sum += s as f64;
            }
            let (nll, smooth) = if reduction == Reduction::Mean {
                (
                    mean_of(nll_sum, job.total_weight, rows) as f32,
                    mean_of(smooth_sum, job.total_weight, rows) as f32,
                )
            } else {
                (nll_sum as f32, smooth_sum as f32)
            };
            FastLoss { per_row: Vec::new(), reduced: combine(nll, smooth) as f64 }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// probability targets

struct ProbsJob {
    layout: ClassLayout,
    weight: Option<Vec<f32>>,
    eps: f64,
    reduction: Reduction,
    scale: Option<Scale>,
    want_loss: bool,
}

impl ProbsJob {
    fn new<A: Real>(
        layout: &ClassLayout,
        weight: Option<&[A]>,
        reduction: Reduction,
        eps: f64,
        want_loss: bool,
        up: Option<&Upstream<A>>,
    ) -> Option<Self> {
        let weight = f32_weight(weight)?;
        let m = layout.rows() as f32;
        let scale = match up {
            None => None,
            Some(up) => Some(Scale::of(up, |g| match reduction {
                Reduction::Mean => g as f32 / m,
                _ => g as f32,
            })?),
        };
        Some(ProbsJob { layout: *layout, weight, eps, reduction, scale, want_loss })
    }
}

/// The fast path of `ce_probs_core` (loss and input gradient), or `None` when it does not apply.
#[allow(clippy::too_many_arguments)]
pub(super) fn probs<T: Element>(
    input: &ArrayViewD<'_, T>,
    target: &ArrayViewD<'_, T>,
    layout: &ClassLayout,
    weight: Option<&[T::Acc]>,
    out_shape: &[usize],
    reduction: Reduction,
    eps: f64,
    want_loss: bool,
    up: Option<&Upstream<T::Acc>>,
) -> Result<Option<LossAndGrad<T>>> {
    if !applies::<T>(layout) {
        return Ok(None);
    }
    let Some(job) = ProbsJob::new(layout, weight, reduction, eps, want_loss, up) else {
        return Ok(None);
    };
    let t = row_major(target);
    let loss = want_loss.then_some((reduction, out_shape));
    read(input, job.scale.is_some(), loss, |io| probs_rows(io, &t, &job)).map(Some)
}

/// The fast path of `cross_entropy_probs_with_grad_in_place`, or `None` when it does not apply
/// (then the input is untouched).
pub(super) fn probs_in_place<T: Element>(
    input: &mut ArrayViewMutD<'_, T>,
    target: &ArrayViewD<'_, T>,
    layout: &ClassLayout,
    weight: Option<&[T::Acc]>,
    out_shape: &[usize],
    reduction: Reduction,
    eps: f64,
) -> Result<Option<Loss<T>>> {
    if !applies::<T>(layout) {
        return Ok(None);
    }
    let up = Upstream::Same(T::Acc::c(1.0));
    let Some(job) = ProbsJob::new(layout, weight, reduction, eps, true, Some(&up)) else {
        return Ok(None);
    };
    in_place(input, reduction, out_shape, |io| probs_rows(io, &row_major(target), &job))
}

fn probs_rows<T: Element>(io: Io<'_, T>, t: &[T], job: &ProbsJob) -> Result<FastLoss> {
    let rows = job.layout.rows();
    let k = Kernels::new();
    let weight = job.weight.as_deref();
    let mut losses = vec![0f64; rows];
    let row = |r: usize, xr: &[f32], tr: &[f32], g: Option<&mut [f32]>, slot: &mut f64| -> Result<()> {
        let scale = job.scale.as_ref().map_or(0.0, |s| s.at(r));
        *slot = k.cross_entropy_probs_row_f32(xr, tr, weight, job.eps, g, scale)?.loss;
        Ok(())
    };
    if job.want_loss || !matches!(io, Io::Read(_, None)) {
        drive(&job.layout, io, Some(t), &mut losses, &row, None)?;
    }
    Ok(match job.reduction {
        Reduction::None => FastLoss { per_row: losses.iter().map(|&l| l as f32).collect(), reduced: 0.0 },
        reduction => {
            let mut total = 0f64;
            for &l in &losses {
                total += l;
            }
            let reduced = if reduction == Reduction::Mean { total / rows as f64 } else { total };
            FastLoss { per_row: Vec::new(), reduced }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::nan_row;
    use crate::{Element, Real};
    use half::{bf16, f16};

    /// The definition: some logit NaN or `+inf`, or every logit `-inf`.
    fn expected(x: &[f64]) -> bool {
        x.iter().any(|v| v.is_nan() || *v == f64::INFINITY) || x.iter().all(|v| *v == f64::NEG_INFINITY)
    }

    fn check<T: Element>(from: impl Fn(f32) -> T, name: &str) {
        let specials = [
            0.0,
            -0.0,
            1.0,
            -3.5,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE / 4.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xff80_0001),
        ];
        // every pair of specials, in rows of lengths around a vector, with the pair at both ends
        for &a in &specials {
            for &b in &specials {
                for n in [1usize, 2, 7, 16, 33] {
                    for (i, j) in [(0, n - 1), (n / 2, 0), (n - 1, n - 1)] {
                        let mut row = vec![f32::NEG_INFINITY; n];
                        row[i] = a;
                        row[j] = b;
                        let x: Vec<T> = row.iter().map(|&v| from(v)).collect();
                        let widened: Vec<f64> = x.iter().map(|v| v.to_acc().f64()).collect();
                        assert_eq!(nan_row(&x), expected(&widened), "{name} {a} {b} n={n} at {i},{j}");
                    }
                }
            }
        }
        assert!(nan_row::<T>(&[]), "{name}: an empty row is all -inf");
    }

    #[test]
    fn nan_row_on_the_bits_matches_its_definition() {
        check(|v| v, "f32");
        check(bf16::from_f32, "bf16");
        check(f16::from_f32, "f16");
        check(f64::from, "f64");
    }
}
