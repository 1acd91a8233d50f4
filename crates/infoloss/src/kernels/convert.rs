//! Converting rows between an element type and the `f32` the kernels compute in.

use super::simd;
use crate::base::{Element, Real};

/// `dst[i] = src[i]` as `f32` over the shorter length: a copy for `f32`, exact SIMD widening for `bf16`
/// (a shift of the bits) and `f16` (F16C where the CPU has it), [`Element::load_f32`] otherwise.
#[inline]
pub(crate) fn widen<T: Element>(src: &[T], dst: &mut [f32]) {
    if let Some(s) = T::as_f32(src) {
        let n = s.len().min(dst.len());
        dst[..n].copy_from_slice(&s[..n]);
    } else if let Some(s) = T::as_bf16(src) {
        simd::bf16_to_f32(s, dst);
    } else if let Some(s) = T::as_f16(src) {
        simd::f16_to_f32(s, dst);
    } else {
        T::load_f32(src, dst);
    }
}

/// `dst[i] = src[i]` rounded to `T` (round to nearest even, NaN stays NaN) over the shorter length: the
/// same bits as [`Element::store_f32`], with SIMD instructions for `bf16` and `f16`.
#[inline]
pub(crate) fn narrow<T: Element>(src: &[f32], dst: &mut [T]) {
    if let Some(d) = T::as_f32_mut(dst) {
        let n = src.len().min(d.len());
        d[..n].copy_from_slice(&src[..n]);
    } else if let Some(d) = T::as_bf16_mut(dst) {
        simd::f32_to_bf16(src, d);
    } else if let Some(d) = T::as_f16_mut(dst) {
        simd::f32_to_f16(src, d);
    } else {
        T::store_f32(src, dst);
    }
}

/// `dst[c] = src[base + c·inner]` for every `c`, as `f32`: one lane of a row-major array (`inner` the
/// product of the dimensions after the lane's) gathered into a contiguous scratch row. The fast
/// paths use it for lanes that are not contiguous `f32`.
pub(crate) fn gather_lane<T: Element>(src: &[T], base: usize, inner: usize, dst: &mut [f32]) {
    if inner == 1 {
        widen(src.get(base..).unwrap_or_default(), dst);
    } else {
        for (c, d) in dst.iter_mut().enumerate() {
            *d = src.get(base + c * inner).map_or(0.0, |v| v.to_acc().f64() as f32);
        }
    }
}

/// `dst[base + c·inner] = src[c]` for every `c`: the inverse of [`gather_lane`].
pub(crate) fn scatter_lane<T: Element>(src: &[f32], dst: &mut [T], base: usize, inner: usize) {
    if inner == 1 {
        narrow(src, dst.get_mut(base..).unwrap_or_default());
    } else {
        for (c, &v) in src.iter().enumerate() {
            if let Some(d) = dst.get_mut(base + c * inner) {
                *d = T::from_acc(T::Acc::c(v as f64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_slice_conversions_match_half() {
        // every bf16 widens exactly; a spread of f32 bit patterns (incl. NaN, inf, ties) rounds as half does
        let all: Vec<half::bf16> = (0..=u16::MAX).map(half::bf16::from_bits).collect();
        let mut wide = vec![0f32; all.len()];
        widen(&all, &mut wide);
        for (h, w) in all.iter().zip(&wide) {
            assert!(h.to_f32().to_bits() == w.to_bits() || (h.is_nan() && w.is_nan()), "{h}");
        }
        let pats: Vec<f32> =
            (0..1u64 << 20).map(|i| f32::from_bits((i * 4099 + (i & 3) * 0x8000) as u32)).collect();
        let mut out = vec![half::bf16::ZERO; pats.len()];
        narrow(&pats, &mut out);
        for (p, o) in pats.iter().zip(&out) {
            let want = half::bf16::from_f32(*p);
            assert!(want.to_bits() == o.to_bits() || (want.is_nan() && o.is_nan()), "{p:e}: {want} vs {o}");
        }
    }
}
