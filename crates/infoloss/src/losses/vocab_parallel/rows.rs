//! What the shard losses do to every element of a slice: the student transform (scale, softcap) and
//! its slope, and the row loop.

use ndarray::{Array2, ArrayView2, Zip};
use rayon::prelude::*;

use crate::Element;
use crate::base::element::Real;
use crate::kernels::exp_f64_in_place;

/// `c·tanh(a·x / c)` (softcap `c`) or `a·x` of every element in `f64`, in a standard-layout array.
/// (Not rounded to the element type: the transformed logits stay exact until the result is rounded.)
pub(super) fn capped<T: Element>(x: ArrayView2<'_, T>, scale: f64, softcap: Option<f64>) -> Array2<f64> {
    let mut out = Array2::zeros(x.dim());
    Zip::from(&mut out).and(&x).for_each(|o, &v| {
        let v = scale * v.to_acc().f64();
        *o = softcap.map_or(v, |c| c * (v / c).tanh());
    });
    out
}

/// The slope `∂x̃/∂x = a·(1 − tanh²(a·x/c)) = a·(1 − (x̃/c)²)` of the transform, from its result `x̃`.
pub(super) fn cap_slope(capped: f64, scale: f64, c: f64) -> f64 {
    let t = capped / c;
    scale * (1.0 - t * t)
}

/// Runs `f(row index, row)` over the rows of a standard-layout array, in parallel (each row on its
/// own, so the result does not depend on the thread count).
pub(super) fn for_each_row(a: &mut Array2<f64>, f: impl Fn(usize, &mut [f64]) + Sync) {
    let cols = a.ncols();
    if cols == 0 {
        return;
    }
    let data = a.as_slice_mut().expect("built in standard layout");
    data.par_chunks_mut(cols).enumerate().for_each(|(r, row)| f(r, row));
}

/// `K` numbers per row for rows `0..n`, computed in parallel (each row on its own, with this thread's scratch rows,
/// so the result does not depend on the thread count), laid out as `K` blocks of `n`: value `i` of row `r` at
/// `i·n + r`, the layout the all-reductions carry.
pub(super) fn per_row<const K: usize>(
    n: usize,
    f: impl Fn(usize, &mut [Vec<f64>; 3]) -> [f64; K] + Sync,
) -> Vec<f64> {
    let rows: Vec<[f64; K]> = (0..n).into_par_iter().map(|r| with_scratch(|s| f(r, s))).collect();
    let mut out = vec![0.0; K * n];
    for (r, vals) in rows.iter().enumerate() {
        for (i, &v) in vals.iter().enumerate() {
            out[i * n + r] = v;
        }
    }
    out
}

/// The maximum of a row, NaN if it holds one (`-inf` for an empty row).
pub(super) fn row_max(row: ndarray::ArrayView1<'_, f64>) -> f64 {
    row.iter().fold(f64::NEG_INFINITY, |m, &v| super::collective::nan_max(m, v))
}

/// `exp` of each of `values`, written into `out` (reused between rows), through the SIMD `f64` exponential
/// of the kernels (within 1 ulp of `f64::exp`, several times faster than calling it per element).
pub(super) fn exps(out: &mut Vec<f64>, values: impl Iterator<Item = f64>) -> &[f64] {
    out.clear();
    out.extend(values);
    exp_f64_in_place(out);
    out
}

thread_local! {
    /// Per-thread rows of exponentials, reused from row to row: a fresh `Vec` per row of a 64k-class slice
    /// would be a fresh mapping, and its page faults cost more than the row's arithmetic.
    static SCRATCH: std::cell::RefCell<[Vec<f64>; 3]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` with this thread's three scratch rows.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut [Vec<f64>; 3]) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}
