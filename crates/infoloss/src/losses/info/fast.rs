//! The SIMD fast path of [`entropy`](super::entropy) (with and without `qk`),
//! [`shannon_cross_entropy`](super::shannon_cross_entropy) and [`jensenshannon`](super::jensenshannon),
//! forward and backward.
//!
//! Applies to `f32`, `f16` and `bf16` inputs of at least one dimension with no broadcasting (the two
//! inputs of one shape) and at least one element; everything else — `f64`, broadcasting, 0-d and
//! empty inputs — takes the reference implementation. Options are validated
//! by the same functions, in the same order, as the reference, so errors are identical. Each row
//! (lane along `axis`) goes through [`Kernels::info_row_f32`] (forward) or
//! [`Kernels::info_row_grad_f32`] (backward: the value, the raw partials wrt the normalized rows and the
//! normalization's dot in one pass, then `c·(d_j − dot)/s` from cache) on its own; rows are split across
//! rayon in chunks of a fixed number of elements, so results do not depend on the thread count. The
//! backward agrees with the reference to a few roundings of its terms (its `ln` is within 0.885 ulp, the
//! dot is summed in another order; `tests/oracle/info.rs`).

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use super::{
    JensenShannonOptions, Kind, Layout, broadcast_shape, js_value, log_base, resolve_axis, row_grads,
    to_array,
};
use crate::base::array::{row_major, try_vec};
use crate::kernels::Kernels;
use crate::kernels::alloc::Scratch;
use crate::kernels::alloc::try_zeroed;
use crate::kernels::convert::gather_lane;
use crate::kernels::info::InfoKind;
use crate::{Element, EntropyOptions, Real, Result};

/// Elements per parallel task (whole rows' worth): a constant, independent of the thread count.
const CHUNK_ELEMS: usize = 1 << 15;

fn applies<T: Element>(shapes: &[&[usize]], numel: usize) -> bool {
    T::F32_COMPUTE
        && crate::base::path::fast_path()
        && numel > 0
        && shapes.iter().all(|s| !s.is_empty() && *s == shapes[0])
}

/// The validated options and shapes of one call.
struct Setup {
    ln_b: f64,
    shape: Vec<usize>,
    layout: Layout,
    out_shape: Vec<usize>,
}

/// The entropy family's validation, in the reference's order (`family_prepare`), for same-shaped inputs.
fn family_setup<T>(
    op: &'static str,
    pk: &ArrayViewD<'_, T>,
    has_q: bool,
    opts: &EntropyOptions,
) -> Result<Setup> {
    let ln_b = log_base(op, opts.base, true)?;
    let name = if has_q { "the broadcast of pk and qk" } else { "pk" };
    let shape = pk.shape().to_vec();
    let axis = resolve_axis(op, name, opts.axis, &shape)?;
    let layout = Layout::new(op, &shape, axis)?;
    let mut out_shape = shape.clone();
    out_shape.remove(axis);
    Ok(Setup { ln_b, shape, layout, out_shape })
}

/// `jensenshannon`'s validation, in the reference's order (`js_prepare`).
fn js_setup<T>(
    op: &'static str,
    p: &ArrayViewD<'_, T>,
    q: &ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
) -> Result<Setup> {
    let ln_b = log_base(op, opts.base, false)?;
    let shape = broadcast_shape(op, "p", p.shape(), "q", q.shape())?;
    resolve_axis(op, "p", opts.axis, p.shape())?;
    resolve_axis(op, "q", opts.axis, q.shape())?;
    let axis = resolve_axis(op, "the broadcast of p and q", opts.axis, &shape)?;
    let layout = Layout::new(op, &shape, axis)?;
    let mut out_shape = shape.clone();
    if opts.keepdims {
        if let Some(d) = out_shape.get_mut(axis) {
            *d = 1;
        }
    } else {
        out_shape.remove(axis);
    }
    Ok(Setup { ln_b, shape, layout, out_shape })
}

/// Row `at` (stride `inner`, `buf.len()` elements) of `x` as `f32`: the slice itself for contiguous `f32`
/// rows, else gathered into `buf`.
fn lane_f32<'a, T: Element>(x: &'a [T], at: usize, inner: usize, buf: &'a mut [f32]) -> &'a [f32] {
    let n = buf.len();
    match (inner == 1).then(|| x.get(at..at + n).and_then(T::as_f32)).flatten() {
        Some(v) => v,
        None => {
            gather_lane(x, at, inner, buf);
            buf
        }
    }
}

/// Computes `value(row)` for every row of the (same-shaped, non-empty) inputs `p` and `q` along
/// `axis` and returns the values in row order.
fn rows<T: Element>(
    op: &'static str,
    layout: &Layout,
    p: &[T],
    q: Option<&[T]>,
    kind: InfoKind,
) -> Result<Vec<(f64, f64)>> {
    let k = Kernels::new();
    let (n, inner) = (layout.n, layout.inner);
    let mut out = try_vec(op, "output", layout.rows)?;
    out.resize(layout.rows, (0.0, 0.0));
    // whole outer blocks per task, so a task's rows are `n·inner`-element blocks
    let outer_per_task = (CHUNK_ELEMS / (n * inner).max(1)).max(1);
    out.par_chunks_mut(outer_per_task * inner).enumerate().for_each(|(task, oc)| {
        let (mut sp, mut sq) = (Scratch::zeroed(n), Scratch::zeroed(if q.is_some() { n } else { 0 }));
        for (local, o) in oc.iter_mut().enumerate() {
            let r = task * outer_per_task * inner + local;
            let at = (r / inner) * n * inner + r % inner;
            let pr = lane_f32(p, at, inner, &mut sp);
            let qr: &[f32] = match q {
                None => &[],
                Some(q) => lane_f32(q, at, inner, &mut sq),
            };
            *o = k.info_row_f32(kind, pr, qr);
        }
    });
    Ok(out)
}

/// The fast path of the entropy family's forward, or `None` when it does not apply.
pub(super) fn family<T: Element>(
    op: &'static str,
    kind: Kind,
    pk: &ArrayViewD<'_, T>,
    qk: Option<&ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
) -> Result<Option<ArrayD<T>>> {
    let shapes: Vec<&[usize]> = std::iter::once(pk.shape()).chain(qk.map(|q| q.shape())).collect();
    if !applies::<T>(&shapes, pk.len()) {
        return Ok(None);
    }
    let Setup { ln_b, layout, out_shape, .. } = family_setup(op, pk, qk.is_some(), opts)?;
    let ik = match kind {
        Kind::Entropy => InfoKind::Entropy,
        Kind::Relative => InfoKind::Relative,
        Kind::Cross => InfoKind::Cross,
    };
    let p = row_major(pk);
    let q = qk.map(row_major);
    let vals = rows(op, &layout, &p, q.as_deref(), ik)?;
    let out: Vec<T> = vals.iter().map(|&(v, _)| T::from_acc(T::Acc::c(v / ln_b))).collect();
    to_array(op, &out_shape, out).map(Some)
}

/// The fast path of [`jensenshannon`](super::jensenshannon), or `None` when it does not apply.
pub(super) fn js<T: Element>(
    op: &'static str,
    p: &ArrayViewD<'_, T>,
    q: &ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
) -> Result<Option<ArrayD<T>>> {
    if !applies::<T>(&[p.shape(), q.shape()], p.len()) {
        return Ok(None);
    }
    let Setup { ln_b, layout, out_shape, .. } = js_setup(op, p, q, opts)?;
    let (pd, qd) = (row_major(p), row_major(q));
    let vals = rows(op, &layout, &pd, Some(&qd), InfoKind::Js)?;
    let out: Vec<T> = vals.iter().map(|&(l, r)| T::from_acc(T::Acc::c(js_value(l, r, ln_b)))).collect();
    to_array(op, &out_shape, out).map(Some)
}

/// The gradients wrt `pk` and (with `qk`) `qk`.
type Grads<T> = (ArrayD<T>, Option<ArrayD<T>>);

/// `finish(row index, value(s))`: how a row is finished.
type FinishFn<'a> = dyn Fn(usize, (f64, f64)) -> Finish + Sync + 'a;

/// How a row of the backward is finished from its value(s).
#[derive(Debug, Clone, Copy)]
enum Finish {
    /// The value is not finite: NaN everywhere (as the reference's NaN partials through the normalization).
    Nan,
    /// JS = 0: the subgradient 0.
    Zero,
    /// `g_j = c·(d_j − dot)/s`.
    Scale(f32),
}

/// The gradient rows of the (same-shaped, non-empty) inputs `p` (and `q` unless entropy) along the
/// layout's axis: each row's raw partials from [`Kernels::info_row_grad_f32`], finished by
/// `finish(row index, value(s))`. Returns `(dp, dq)` in the inputs' row-major order (`dq` empty for
/// entropy). Tasks are whole outer blocks of a fixed number of elements, so the result does not depend on
/// the thread count.
fn grad_rows<T: Element>(
    op: &'static str,
    layout: &Layout,
    p: &[T],
    q: Option<&[T]>,
    kind: InfoKind,
    finish: &FinishFn<'_>,
) -> Result<(Vec<T>, Vec<T>)> {
    let k = Kernels::new();
    let (n, inner) = (layout.n, layout.inner);
    let mut dp = try_zeroed::<T>(op, "gradient", p.len())?;
    let mut dq = try_zeroed::<T>(op, "gradient", q.map_or(0, <[T]>::len))?;
    let block = n * inner;
    let outer_per_task = (CHUNK_ELEMS / block.max(1)).max(1);
    let task = outer_per_task * block;
    // an empty `dq` (entropy) still needs one (empty) chunk per task to zip with
    let dq_task = if q.is_some() { task } else { 1 };
    let mut empty: Vec<Vec<T>> = Vec::new();
    let dq_chunks: Vec<&mut [T]> = if q.is_some() {
        dq.chunks_mut(dq_task).collect()
    } else {
        empty.resize(dp.len().div_ceil(task), Vec::new());
        empty.iter_mut().map(|v| v.as_mut_slice()).collect()
    };
    dp.par_chunks_mut(task).zip(dq_chunks).enumerate().for_each(|(t, (dpc, dqc))| {
        let two = q.is_some();
        let mut buf = RowBufs::new(n, two);
        for (b, (dpb, dqb)) in dpc
            .chunks_mut(block)
            .zip(dqc.chunks_mut(if two { block } else { 1 }).chain(std::iter::repeat_with(|| &mut [][..])))
            .enumerate()
        {
            for i in 0..inner {
                let row = (t * outer_per_task + b) * inner + i;
                let at = (row / inner) * block + i;
                grad_row(&k, kind, &mut buf, p, q, at, inner, row, finish, dpb, dqb, i);
            }
        }
    });
    Ok((dp, dq))
}

/// Scratch rows of one task: the inputs gathered as `f32` and the partials.
struct RowBufs {
    p: Scratch,
    q: Scratch,
    dp: Scratch,
    dq: Scratch,
}

impl RowBufs {
    fn new(n: usize, two: bool) -> Self {
        let m = if two { n } else { 0 };
        RowBufs {
            p: Scratch::zeroed(n),
            q: Scratch::zeroed(m),
            dp: Scratch::zeroed(n),
            dq: Scratch::zeroed(m),
        }
    }
}

/// One row: gathers it (`at`, stride `inner`), computes its partials and writes the finished gradient
/// into lane `i` of the output blocks `dpb`/`dqb` (stride `inner`).
#[allow(clippy::too_many_arguments)]
fn grad_row<T: Element>(
    k: &Kernels,
    kind: InfoKind,
    buf: &mut RowBufs,
    p: &[T],
    q: Option<&[T]>,
    at: usize,
    inner: usize,
    row: usize,
    finish: &FinishFn<'_>,
    dpb: &mut [T],
    dqb: &mut [T],
    i: usize,
) {
    let pr = lane_f32(p, at, inner, &mut buf.p);
    let qr: &[f32] = match q {
        None => &[],
        Some(q) => lane_f32(q, at, inner, &mut buf.q),
    };
    let two = q.is_some();
    // `f32` rows of the last axis: the partials go straight into the output and are finished there
    if inner == 1 {
        let mut none: [f32; 0] = [];
        let dq_out = if two { T::as_f32_mut(&mut *dqb) } else { Some(&mut none[..]) };
        if let (Some(dp_out), Some(dq_out)) = (T::as_f32_mut(&mut *dpb), dq_out) {
            let r = k.info_row_grad_f32(kind, pr, qr, dp_out, dq_out);
            let how = finish(row, r.value);
            finish_side(k, how, r.dot.0, r.sums.0, dp_out);
            if two {
                finish_side(k, how, r.dot.1, r.sums.1, dq_out);
            }
            return;
        }
    }
    let r = k.info_row_grad_f32(kind, pr, qr, &mut buf.dp, &mut buf.dq);
    let how = finish(row, r.value);
    finish_side(k, how, r.dot.0, r.sums.0, &mut buf.dp);
    put_lane(&buf.dp, dpb, i, inner);
    if two {
        finish_side(k, how, r.dot.1, r.sums.1, &mut buf.dq);
        put_lane(&buf.dq, dqb, i, inner);
    }
}

/// `d_j ← c·(d_j − dot)/s` (or NaN / 0 everywhere).
fn finish_side(k: &Kernels, how: Finish, dot: f64, s: f32, d: &mut [f32]) {
    match how {
        Finish::Nan => d.fill(f32::NAN),
        Finish::Zero => d.fill(0.0),
        Finish::Scale(c) => k.info_finish_f32(d, c, dot as f32, s),
    }
}

/// Writes the row `src` into lane `i` (stride `inner`) of the output block `dst`.
fn put_lane<T: Element>(src: &[f32], dst: &mut [T], i: usize, inner: usize) {
    if inner == 1 {
        crate::kernels::convert::narrow(src, dst);
    } else {
        for (d, &s) in dst.iter_mut().skip(i).step_by(inner).zip(src) {
            *d = T::from_acc(T::Acc::c(s as f64));
        }
    }
}

/// The fast path of the entropy family's backward, or `None` when it does not apply. Validation as
/// the reference's `family_prepare` and `row_grads`, in their order.
pub(super) fn family_backward<T: Element>(
    op: &'static str,
    kind: Kind,
    pk: &ArrayViewD<'_, T>,
    qk: Option<&ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
    grad_output: &ArrayViewD<'_, T>,
) -> Result<Option<Grads<T>>> {
    let shapes: Vec<&[usize]> = std::iter::once(pk.shape()).chain(qk.map(|q| q.shape())).collect();
    if !applies::<T>(&shapes, pk.len()) {
        return Ok(None);
    }
    let Setup { ln_b, shape, layout, out_shape } = family_setup(op, pk, qk.is_some(), opts)?;
    let g = row_grads::<T>(op, grad_output, &out_shape, layout.rows)?;
    let ik = match kind {
        Kind::Entropy => InfoKind::Entropy,
        Kind::Relative => InfoKind::Relative,
        Kind::Cross => InfoKind::Cross,
    };
    let finish = |row: usize, (v, _): (f64, f64)| {
        let gs = g.get(row).map_or(f64::NAN, |g| g.f64()) / ln_b;
        if v.is_finite() { Finish::Scale(gs as f32) } else { Finish::Nan }
    };
    let p = row_major(pk);
    let q = qk.map(row_major);
    let (dp, dq) = grad_rows(op, &layout, &p, q.as_deref(), ik, &finish)?;
    let dq = match qk {
        Some(_) => Some(to_array(op, &shape, dq)?),
        None => None,
    };
    Ok(Some((to_array(op, &shape, dp)?, dq)))
}

/// The fast path of [`jensenshannon_backward`](super::jensenshannon_backward), or `None` when it does
/// not apply. Validation as the reference's `js_prepare` and `row_grads`, in their order.
pub(super) fn js_backward<T: Element>(
    op: &'static str,
    p: &ArrayViewD<'_, T>,
    q: &ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
    grad_output: &ArrayViewD<'_, T>,
) -> Result<Option<(ArrayD<T>, ArrayD<T>)>> {
    if !applies::<T>(&[p.shape(), q.shape()], p.len()) {
        return Ok(None);
    }
    let Setup { ln_b, shape, layout, out_shape } = js_setup(op, p, q, opts)?;
    let g = row_grads::<T>(op, grad_output, &out_shape, layout.rows)?;
    let finish = |row: usize, (l, r): (f64, f64)| {
        let js = js_value(l, r, ln_b);
        if !js.is_finite() {
            Finish::Nan
        } else if js == 0.0 {
            Finish::Zero
        } else {
            let g = g.get(row).map_or(f64::NAN, |g| g.f64());
            Finish::Scale((g / (4.0 * js * ln_b)) as f32)
        }
    };
    let (pd, qd) = (row_major(p), row_major(q));
    let (dp, dq) = grad_rows(op, &layout, &pd, Some(&qd), InfoKind::Js, &finish)?;
    Ok(Some((to_array(op, &shape, dp)?, to_array(op, &shape, dq)?)))
}
