//! Small generic helpers over [`pulp::Simd`] shared by the kernels.

use pulp::Simd;

/// Lane sum of `v`, accumulated in `f64`.
#[inline(always)]
pub(crate) fn hsum_f64<S: Simd>(v: S::f32s) -> f64 {
    let lanes: &[f32] = pulp::bytemuck::cast_slice(core::slice::from_ref(&v));
    let mut acc = 0.0f64;
    for &x in lanes {
        acc += x as f64;
    }
    acc
}

/// Lane maximum of `v` ignoring NaN lanes (`-inf` if every lane is NaN or `-inf`).
#[inline(always)]
pub(crate) fn hmax_ignore_nan<S: Simd>(v: S::f32s) -> f32 {
    let lanes: &[f32] = pulp::bytemuck::cast_slice(core::slice::from_ref(&v));
    let mut acc = f32::NEG_INFINITY;
    for &x in lanes {
        acc = acc.max(x);
    }
    acc
}

/// `max(x, acc)` lane-wise, ignoring NaN lanes of `x` (on every level).
///
/// x86 `maxps(a, b)` returns `b` when either operand is NaN, `f32::max` returns the non-NaN
/// operand: both return `acc` for a NaN `x` as long as `acc` is not NaN, which holds because `acc`
/// starts at `-inf` and only ever receives non-NaN values. The explicit select makes this hold for
/// every backend regardless of its operand convention.
#[inline(always)]
pub(crate) fn max_ignore_nan<S: Simd>(simd: S, acc: S::f32s, x: S::f32s) -> S::f32s {
    let is_num = simd.equal_f32s(x, x);
    simd.select_f32s(is_num, simd.max_f32s(acc, x), acc)
}

/// Loads the first `len` elements of a tail slice into a vector, filling the other lanes with `fill`.
#[inline(always)]
pub(crate) fn load_tail_fill<S: Simd>(simd: S, tail: &[f32], fill: f32) -> S::f32s {
    let mask = simd.mask_between_m32s(0, tail.len() as u32).mask();
    simd.select_f32s(mask, simd.partial_load_f32s(tail), simd.splat_f32s(fill))
}
