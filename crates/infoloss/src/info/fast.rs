//! The SIMD fast path of [`entropy`](super::entropy) (with and without `qk`),
//! [`shannon_cross_entropy`](super::shannon_cross_entropy) and [`jensenshannon`](super::jensenshannon)
//! (forward).
//!
//! Applies to `f32`, `f16` and `bf16` inputs of at least one dimension with no broadcasting (the two
//! inputs of one shape) and at least one element; everything else — `f64`, broadcasting, 0-d and
//! empty inputs, and every backward — takes the reference implementation. Options are validated
//! by the same functions, in the same order, as the reference, so errors are identical. Each row
//! (lane along `axis`) goes through [`Kernels::info_row_f32`] on its own; rows are split across
//! rayon in chunks of a fixed number of elements, so results do not depend on the thread count.

use std::cell::Cell;

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use super::{
    JensenShannonOptions, Kind, Layout, broadcast_shape, js_value, log_base, resolve_axis, to_array,
};
use crate::kernels::Kernels;
use crate::kernels::info::InfoKind;
use crate::softmax::{gather_lane, row_major, try_vec};
use crate::{Element, EntropyOptions, Real, Result};

thread_local! {
    // On by default; `with_reference_path` switches it off for tests and benchmarks.
    static FAST: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with the SIMD fast path of `entropy`, `shannon_cross_entropy` and `jensenshannon`
/// switched off on the current thread (every call inside `f` on this thread takes the reference
/// implementation). Meant for tests and benchmarks.
///
/// ```
/// use infoloss::{entropy, ndarray::array};
/// use infoloss::info::with_reference_path;
/// let p = array![[1.0f32, 3.0]];
/// let o = infoloss::EntropyOptions { axis: 1, ..Default::default() };
/// let slow = with_reference_path(|| entropy(p.view(), None, &o)).unwrap();
/// assert!((slow[0] - 0.562_335_1).abs() < 1e-6);
/// ```
pub fn with_reference_path<R>(f: impl FnOnce() -> R) -> R {
    crate::kernels::with_switch(&FAST, false, f)
}

/// Runs `f` with the fast path switched on on the current thread (the default).
///
/// ```
/// use infoloss::{entropy, ndarray::array};
/// use infoloss::info::{with_fast_path, with_reference_path};
/// let p = array![0.5f32, 0.5];
/// let bits = infoloss::EntropyOptions { base: Some(2.0), ..Default::default() };
/// let h = with_reference_path(|| with_fast_path(|| entropy(p.view(), None, &bits))).unwrap();
/// assert_eq!(h[[]], 1.0);
/// ```
pub fn with_fast_path<R>(f: impl FnOnce() -> R) -> R {
    crate::kernels::with_switch(&FAST, true, f)
}

/// Elements per parallel task (whole rows' worth): a constant, independent of the thread count.
const CHUNK_ELEMS: usize = 1 << 15;

fn applies<T: Element>(shapes: &[&[usize]], numel: usize) -> bool {
    T::F32_COMPUTE
        && FAST.with(Cell::get)
        && numel > 0
        && shapes.iter().all(|s| !s.is_empty() && *s == shapes[0])
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
        let (mut sp, mut sq) = (vec![0f32; n], vec![0f32; if q.is_some() { n } else { 0 }]);
        for (local, o) in oc.iter_mut().enumerate() {
            let r = task * outer_per_task * inner + local;
            let at = (r / inner) * n * inner + r % inner;
            let pr = match (inner == 1).then(|| p.get(at..at + n).and_then(T::as_f32)).flatten() {
                Some(v) => v,
                None => {
                    gather_lane(p, at, inner, &mut sp);
                    &sp
                }
            };
            let qr: &[f32] = match q {
                None => &[],
                Some(q) => match (inner == 1).then(|| q.get(at..at + n).and_then(T::as_f32)).flatten() {
                    Some(v) => v,
                    None => {
                        gather_lane(q, at, inner, &mut sq);
                        &sq
                    }
                },
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
    // the reference's validation, in its order
    let ln_b = log_base(op, opts.base, true)?;
    let name = if qk.is_some() { "the broadcast of pk and qk" } else { "pk" };
    let shape = pk.shape().to_vec();
    let axis = resolve_axis(op, name, opts.axis, &shape)?;
    let layout = Layout::new(op, &shape, axis)?;
    let mut out_shape = shape.clone();
    out_shape.remove(axis);
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
    // the reference's validation, in its order (`js_prepare`)
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
    let (pd, qd) = (row_major(p), row_major(q));
    let vals = rows(op, &layout, &pd, Some(&qd), InfoKind::Js)?;
    let out: Vec<T> = vals.iter().map(|&(l, r)| T::from_acc(T::Acc::c(js_value(l, r, ln_b)))).collect();
    to_array(op, &out_shape, out).map(Some)
}
