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

/// `dst[i] = src[i]` widened from `bf16` (exact: a shift of the bits), over the shorter length; a plain
/// loop, vectorized at the instruction set of the function it is inlined into.
#[inline(always)]
pub(crate) fn widen_bf16(src: &[half::bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s.to_bits() as u32) << 16);
    }
}

/// `dst[i] = src[i]` rounded to `bf16` (round to nearest even; a NaN stays a quiet NaN of the same
/// sign), bit for bit `half::bf16::from_f32`, over the shorter length; a branch-free loop, vectorized
/// at the instruction set of the function it is inlined into.
#[inline(always)]
pub(crate) fn narrow_bf16(src: &[f32], dst: &mut [half::bf16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        let b = s.to_bits();
        let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
        let nan = ((b >> 16) as u16) | 0x0040;
        *d = half::bf16::from_bits(if s.is_nan() { nan } else { rounded });
    }
}

/// Each value rounded to `bf16` and widened back, in place: [`narrow_bf16`] then [`widen_bf16`] on
/// the bits, without the `bf16` buffer (same results, NaN included).
#[inline(always)]
pub(crate) fn round_bf16_in_place(v: &mut [f32]) {
    for x in v.iter_mut() {
        let b = x.to_bits();
        let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
        let nan = (b | 0x0040_0000) & 0xffff_0000;
        *x = f32::from_bits(if x.is_nan() { nan } else { rounded });
    }
}

/// [`widen_bf16`] dispatched at the best instruction set (AVX2/AVX-512 width rather than the crate's
/// SSE2 baseline).
pub(crate) fn bf16_to_f32(src: &[half::bf16], dst: &mut [f32]) {
    struct Widen<'a>(&'a [half::bf16], &'a mut [f32]);
    impl pulp::WithSimd for Widen<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) {
            widen_bf16(self.0, self.1);
        }
    }
    super::Kernels::new().run(Widen(src, dst));
}

/// [`narrow_bf16`] dispatched at the best instruction set, as [`bf16_to_f32`].
pub(crate) fn f32_to_bf16(src: &[f32], dst: &mut [half::bf16]) {
    struct Narrow<'a>(&'a [f32], &'a mut [half::bf16]);
    impl pulp::WithSimd for Narrow<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) {
            narrow_bf16(self.0, self.1);
        }
    }
    super::Kernels::new().run(Narrow(src, dst));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_bf16_in_place_is_narrow_then_widen() {
        // a spread of bit patterns: every exponent, ties, NaN payloads of both signs, infinities
        let mut v: Vec<f32> = (0..=u32::MAX).step_by(65_521).map(f32::from_bits).collect();
        v.extend(
            [0x3f80_8000, 0x3f81_8000, 0x7f7f_ffff, 0xff80_0001, 0x7fc0_0000, 0x7f80_0001]
                .map(f32::from_bits),
        );
        let mut narrow = vec![half::bf16::ZERO; v.len()];
        narrow_bf16(&v, &mut narrow);
        let mut want = vec![0f32; v.len()];
        widen_bf16(&narrow, &mut want);
        let mut got = v.clone();
        round_bf16_in_place(&mut got);
        let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
        // and it is half's rounding
        assert!(v.iter().zip(&got).all(|(x, g)| half::bf16::from_f32(*x).to_f32().to_bits() == g.to_bits()));
    }
}
