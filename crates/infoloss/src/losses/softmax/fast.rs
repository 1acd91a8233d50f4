//! The SIMD fast path of `softmax`, `log_softmax`, `logsumexp` and their backwards.
//!
//! Applies to the `f32`-compute element types (`f32`, `f16`, `bf16`; `f64` stays on the reference
//! path) along any dimension of any layout. The input is seen as `(outer, n, inner)` around the
//! reduced dimension (`n` its length); every lane of `n` elements goes through one row kernel of
//! [`crate::kernels`] (one `exp` per element). Lanes of a standard-layout `f32` array with
//! `inner = 1` are used where they lie; other lanes are gathered into an `f32` scratch row and the
//! result scattered back. Work is split across rayon in chunks of a fixed number of elements, and
//! every lane is computed on its own, so results do not depend on the thread count.

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

use crate::base::array::row_major;
use crate::kernels::Kernels;
use crate::kernels::alloc::Scratch;
use crate::kernels::alloc::try_zeroed;
use crate::kernels::convert::{gather_lane as gather, scatter_lane as scatter};
use crate::{Element, Real, Result};

/// Elements per parallel task (whole outer blocks, at least one): a constant, so the split never
/// depends on the number of threads.
const CHUNK_ELEMS: usize = 1 << 15;

/// `(outer, n, inner)` around the reduced dimension of a standard-layout array.
#[derive(Clone, Copy)]
struct Lanes {
    n: usize,
    inner: usize,
}

impl Lanes {
    fn of(shape: &[usize], axis: usize) -> Lanes {
        let n = shape.get(axis).copied().unwrap_or(1);
        let inner = shape.get(axis + 1..).map_or(1, |s| s.iter().product());
        Lanes { n, inner }
    }

    /// Outer blocks per task.
    fn outer_per_task(&self) -> usize {
        (CHUNK_ELEMS / (self.n * self.inner).max(1)).max(1)
    }
}

/// Whether the fast path takes inputs of type `T`.
fn applies<T: Element>() -> bool {
    T::F32_COMPUTE && crate::base::path::fast_path()
}

/// The lane `[at, at + n)` of `a` as `f32` without a copy, when there is one.
fn direct<T: Element>(a: &[T], at: usize, n: usize, inner: usize) -> Option<&[f32]> {
    if inner == 1 { a.get(at..at + n).and_then(T::as_f32) } else { None }
}

/// A row function on one lane: its index `r` (in the reduced shape), inputs `a` (and `b`), output
/// `out` (all `n` long).
type LaneFn<'a> = dyn Fn(usize, &[f32], &[f32], &mut [f32]) -> Result<()> + Sync + 'a;

/// Maps every lane of `a` (and the matching lane of `b`, when given) through `f` into a new array
/// of `shape`.
fn map_lanes<T: Element>(
    op: &'static str,
    shape: &[usize],
    axis: usize,
    a: &[T],
    b: Option<&[T]>,
    f: &LaneFn<'_>,
) -> Result<ArrayD<T>> {
    let lanes = Lanes::of(shape, axis);
    let (n, inner) = (lanes.n, lanes.inner);
    let block = n * inner;
    let mut out = try_zeroed::<T>(op, "output", a.len())?;
    let per_task = lanes.outer_per_task() * block;
    out.par_chunks_mut(per_task.max(1)).enumerate().try_for_each(|(task, oc)| -> Result<()> {
        let offset = task * per_task;
        let (mut sa, mut sb, mut so) = (Scratch::zeroed(n), Scratch::zeroed(n), Scratch::zeroed(n));
        for local_outer in 0..oc.len() / block.max(1) {
            for i in 0..inner {
                let local = local_outer * block + i;
                let at = offset + local;
                let ar = match direct(a, at, n, inner) {
                    Some(v) => v,
                    None => {
                        gather(a, at, inner, &mut sa);
                        &sa
                    }
                };
                let br: &[f32] = match b {
                    None => &[],
                    Some(b) => match direct(b, at, n, inner) {
                        Some(v) => v,
                        None => {
                            gather(b, at, inner, &mut sb);
                            &sb
                        }
                    },
                };
                let r = (offset / block + local_outer) * inner + i;
                let own =
                    if inner == 1 { oc.get_mut(local..local + n).and_then(T::as_f32_mut) } else { None };
                match own {
                    Some(or) => f(r, ar, br, or)?,
                    None => {
                        f(r, ar, br, &mut so)?;
                        scatter(&so, oc, local, inner);
                    }
                }
            }
        }
        Ok(())
    })?;
    crate::base::array::array_from_vec(op, shape, out)
}

/// The standard-layout elements of `x` (borrowed when possible).
fn data<'a, T: Element>(x: &'a ArrayViewD<'_, T>) -> std::borrow::Cow<'a, [T]> {
    row_major(x)
}

/// Fast `log_softmax` / `softmax` of a non-empty input of at least one dimension, or `None`.
pub(super) fn row_map<T: Element>(
    op: &'static str,
    x: &ArrayViewD<'_, T>,
    axis: usize,
    log: bool,
) -> Result<Option<ArrayD<T>>> {
    if !applies::<T>() || x.is_empty() {
        return Ok(None);
    }
    let k = Kernels::new();
    let xs = data(x);
    let f = move |_: usize, a: &[f32], _: &[f32], o: &mut [f32]| {
        if log { k.log_softmax_f32(a, o) } else { k.softmax_f32(a, o) }
    };
    map_lanes(op, x.shape(), axis, &xs, None, &f).map(Some)
}

/// Fast `log_softmax_backward` (from the output `y`) / `softmax_backward` (from the output `s`),
/// or `None`.
pub(super) fn row_backward<T: Element>(
    op: &'static str,
    y: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    log: bool,
) -> Result<Option<ArrayD<T>>> {
    if !applies::<T>() || y.is_empty() {
        return Ok(None);
    }
    let k = Kernels::new();
    let (ys, gs) = (data(y), data(g));
    let f = move |_: usize, a: &[f32], b: &[f32], o: &mut [f32]| {
        if log { k.log_softmax_backward_f32(a, b, o) } else { k.softmax_backward_f32(a, b, o) }
    };
    map_lanes(op, y.shape(), axis, &ys, Some(&gs), &f).map(Some)
}

/// Fast `logsumexp` of a non-empty input (the reduced dimension removed), or `None`.
pub(super) fn logsumexp<T: Element>(
    op: &'static str,
    x: &ArrayViewD<'_, T>,
    axis: usize,
    out_shape: &[usize],
) -> Result<Option<ArrayD<T>>> {
    if !applies::<T>() || x.is_empty() {
        return Ok(None);
    }
    let k = Kernels::new();
    let xs = data(x);
    let lanes = Lanes::of(x.shape(), axis);
    let (n, inner) = (lanes.n, lanes.inner);
    let rows = xs.len() / n;
    let mut out = try_zeroed::<T>(op, "output", rows)?;
    let outer_per_task = lanes.outer_per_task();
    out.par_chunks_mut(outer_per_task * inner).enumerate().for_each(|(task, oc)| {
        let mut sa = Scratch::zeroed(n);
        for (local, o) in oc.iter_mut().enumerate() {
            let (outer, i) = (task * outer_per_task + local / inner, local % inner);
            let at = outer * n * inner + i;
            let ar = match direct(&xs, at, n, inner) {
                Some(v) => v,
                None => {
                    gather(&xs, at, inner, &mut sa);
                    &sa
                }
            };
            *o = T::from_acc(T::Acc::c(k.logsumexp_f32(ar) as f64));
        }
    });
    crate::base::array::array_from_vec(op, out_shape, out).map(Some)
}

/// Fast `logsumexp_backward` given the per-lane upstream gradient `g` (of the reduced shape), or
/// `None`.
pub(super) fn logsumexp_backward<T: Element>(
    op: &'static str,
    x: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
) -> Result<Option<ArrayD<T>>> {
    if !applies::<T>() || x.is_empty() {
        return Ok(None);
    }
    let k = Kernels::new();
    let xs = data(x);
    let gs = data(g);
    let f = move |r: usize, a: &[f32], _: &[f32], o: &mut [f32]| {
        let g = gs.get(r).map_or(f32::NAN, |v| v.to_acc().f64() as f32);
        k.logsumexp_backward_f32(a, k.logsumexp_f32(a), g, o)
    };
    map_lanes(op, x.shape(), axis, &xs, None, &f).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_split_around_the_axis() {
        let l = Lanes::of(&[2, 3, 4], 1);
        assert_eq!((l.n, l.inner), (3, 4));
        let l = Lanes::of(&[5, 7], 1);
        assert_eq!((l.n, l.inner), (7, 1));
        assert_eq!(Lanes::of(&[5, 70_000], 1).outer_per_task(), 1);
    }

    #[test]
    fn strided_lanes_match_contiguous_ones() {
        // softmax along dim 1 of (2, 3, 4) equals softmax along the last dim of its permutation
        let x = ndarray::Array::from_shape_fn((2, 3, 4), |(a, b, c)| (a * 12 + b * 4 + c) as f32 / 5.0 - 2.0);
        let along1 = row_map("softmax", &x.view().into_dyn(), 1, false).unwrap().unwrap();
        let p = x.view().permuted_axes([0, 2, 1]).as_standard_layout().into_owned();
        let last = row_map("softmax", &p.view().into_dyn(), 2, false).unwrap().unwrap();
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    assert_eq!(along1[[a, b, c]], last[[a, c, b]]);
                }
            }
        }
    }
}
