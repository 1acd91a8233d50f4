//! Small generic helpers over [`pulp::Simd`] shared by the kernels.

use pulp::Simd;

// `pulp` gives `neg_f32s`, `abs_f32s` and `select_f32s` (and their `f64` forms) as default trait
// methods marked only `#[inline]`, built from the ISA's intrinsics. In a large kernel loop LLVM may
// leave them out of line, and an out-of-line copy has no AVX target features: every call then
// passes vectors through memory and calls the intrinsics out of line too. These versions are
// built from the ISA's own always-inlined methods, and the kernels use them instead.

/// `−a` (the sign bit flipped, as `pulp`'s `neg_f32s`).
#[inline(always)]
pub(crate) fn neg<S: Simd>(simd: S, a: S::f32s) -> S::f32s {
    simd.xor_f32s(simd.splat_f32s(-0.0), a)
}

/// `|a|` (the sign bit cleared, as `pulp`'s `abs_f32s`).
#[inline(always)]
pub(crate) fn abs<S: Simd>(simd: S, a: S::f32s) -> S::f32s {
    simd.and_f32s(simd.splat_f32s(f32::from_bits(0x7fff_ffff)), a)
}

/// `m ? a : b` per lane (as `pulp`'s `select_f32s`).
#[inline(always)]
pub(crate) fn select<S: Simd>(simd: S, m: S::m32s, a: S::f32s, b: S::f32s) -> S::f32s {
    pulp::cast(simd.select_u32s(m, pulp::cast(a), pulp::cast(b)))
}

/// `−a` in `f64` (as `pulp`'s `neg_f64s`).
#[inline(always)]
pub(crate) fn neg64<S: Simd>(simd: S, a: S::f64s) -> S::f64s {
    simd.xor_f64s(simd.splat_f64s(-0.0), a)
}

/// `m ? a : b` per `f64` lane (as `pulp`'s `select_f64s`).
#[inline(always)]
pub(crate) fn select64<S: Simd>(simd: S, m: S::m64s, a: S::f64s, b: S::f64s) -> S::f64s {
    pulp::cast(simd.select_u64s(m, pulp::cast(a), pulp::cast(b)))
}

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
    select(simd, is_num, simd.max_f32s(acc, x), acc)
}

/// Loads the first `len` elements of a tail slice into a vector, filling the other lanes with `fill`.
#[inline(always)]
pub(crate) fn load_tail_fill<S: Simd>(simd: S, tail: &[f32], fill: f32) -> S::f32s {
    let mask = simd.mask_between_m32s(0, tail.len() as u32).mask();
    select(simd, mask, simd.partial_load_f32s(tail), simd.splat_f32s(fill))
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

/// The two `f32` vectors held by one vector of `bf16` pairs (each `u32` lane two consecutive `bf16`,
/// the first in its low half on a little-endian CPU): the low halves' values and the high halves'
/// values (exact, a shift and a mask).
#[inline(always)]
pub(crate) fn widen_bf16_pairs<S: Simd>(simd: S, v: S::u32s) -> (S::f32s, S::f32s) {
    let lo = simd.wrapping_dyn_shl_u32s(v, simd.splat_u32s(16));
    let hi = simd.and_u32s(v, simd.splat_u32s(0xffff_0000));
    (simd.transmute_f32s_u32s(lo), simd.transmute_f32s_u32s(hi))
}

/// Each lane of `v` rounded to `bf16` (as [`narrow_bf16`]) and widened back, as bits: the `bf16` in
/// the high half, zeros below.
#[inline(always)]
pub(crate) fn round_bf16_bits<S: Simd>(simd: S, v: S::f32s) -> S::u32s {
    let b = simd.transmute_u32s_f32s(v);
    let high = simd.splat_u32s(0xffff_0000);
    let lsb = simd.and_u32s(simd.wrapping_dyn_shr_u32s(b, simd.splat_u32s(16)), simd.splat_u32s(1));
    let rounded = simd.and_u32s(simd.add_u32s(simd.add_u32s(b, simd.splat_u32s(0x7fff)), lsb), high);
    let nan = simd.and_u32s(simd.or_u32s(b, simd.splat_u32s(0x0040_0000)), high);
    simd.select_u32s(simd.equal_f32s(v, v), rounded, nan)
}

/// The inverse of [`widen_bf16_pairs`] with rounding: `lo` and `hi` rounded to `bf16` (as
/// [`narrow_bf16`]) and packed into the low and high halves of each lane.
#[inline(always)]
pub(crate) fn narrow_bf16_pairs<S: Simd>(simd: S, lo: S::f32s, hi: S::f32s) -> S::u32s {
    let lo = simd.wrapping_dyn_shr_u32s(round_bf16_bits(simd, lo), simd.splat_u32s(16));
    simd.or_u32s(lo, round_bf16_bits(simd, hi))
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

/// `dst[i] = src[i]` widened from `f16` (exact), over the shorter length: the CPU's F16C conversion
/// (`vcvtph2ps`, eight values per instruction) where the CPU has it, else `half`'s slice conversion.
///
/// `half` converts through F16C too, but one call per eight values; a call here converts a whole
/// slice (the kernels' tiles and rows) in one loop.
pub(crate) fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    #[cfg(target_arch = "x86_64")]
    if f16c::available() {
        // SAFETY: the CPU has F16C and AVX (checked just above), the features `f16c::widen` is
        // compiled for; its slice arguments are ordinary references of one length.
        unsafe { f16c::widen(src, dst) };
        return;
    }
    use half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst);
}

/// `dst[i] = src[i]` rounded to `f16` (round to nearest even; NaN stays NaN with its sign), over the
/// shorter length, bit for bit `half::f16::from_f32`: F16C (`vcvtps2ph`) where the CPU has it, else
/// `half`'s slice conversion, as [`f16_to_f32`].
pub(crate) fn f32_to_f16(src: &[f32], dst: &mut [half::f16]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    #[cfg(target_arch = "x86_64")]
    if f16c::available() {
        // SAFETY: as in `f16_to_f32`: the CPU has the features `f16c::narrow` is compiled for.
        unsafe { f16c::narrow(src, dst) };
        return;
    }
    use half::slice::HalfFloatSliceExt;
    dst.convert_from_f32_slice(src);
}

/// Whether the CPU has F16C and AVX (detected once by the standard library, then a cached load).
#[cfg(target_arch = "x86_64")]
pub(crate) fn f16c_available() -> bool {
    f16c::available()
}

/// The F16C loops behind [`f16_to_f32`] and [`f32_to_f16`].
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::{
        __m128i, _MM_FROUND_TO_NEAREST_INT, _mm_loadu_si128, _mm_storeu_si128, _mm256_cvtph_ps,
        _mm256_cvtps_ph, _mm256_loadu_ps, _mm256_storeu_ps,
    };

    /// Whether the CPU has the features [`widen`] and [`narrow`] are compiled for (detected once by
    /// the standard library, then a cached load).
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx")
    }

    /// `dst = src` widened, eight values per `vcvtph2ps`, the last partial group through a padded copy.
    ///
    /// # Safety
    ///
    /// The CPU must support F16C and AVX; `src` and `dst` must have the same length.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn widen(src: &[half::f16], dst: &mut [f32]) {
        debug_assert_eq!(src.len(), dst.len());
        let mut s8 = src.chunks_exact(8);
        let mut d8 = dst.chunks_exact_mut(8);
        for (s, d) in (&mut s8).zip(&mut d8) {
            // SAFETY: `s` holds 8 `f16` (16 bytes, the unaligned 128-bit load reads exactly those)
            // and `d` 8 `f32` (32 bytes, exactly what the unaligned 256-bit store writes); the
            // caller guarantees the CPU features.
            unsafe {
                let h = _mm_loadu_si128(s.as_ptr().cast::<__m128i>());
                _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
            }
        }
        let (s, d) = (s8.remainder(), d8.into_remainder());
        if !s.is_empty() {
            let mut pad = [half::f16::ZERO; 8];
            pad[..s.len()].copy_from_slice(s);
            let mut out = [0f32; 8];
            // SAFETY: `pad` and `out` are 8-element arrays (16 and 32 bytes), as above.
            unsafe {
                let h = _mm_loadu_si128(pad.as_ptr().cast::<__m128i>());
                _mm256_storeu_ps(out.as_mut_ptr(), _mm256_cvtph_ps(h));
            }
            d.copy_from_slice(&out[..d.len()]);
        }
    }

    /// `dst = src` rounded to nearest even, eight values per `vcvtps2ph` (immediate rounding mode,
    /// independent of MXCSR), the last partial group through a padded copy.
    ///
    /// # Safety
    ///
    /// The CPU must support F16C and AVX; `src` and `dst` must have the same length.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn narrow(src: &[f32], dst: &mut [half::f16]) {
        debug_assert_eq!(src.len(), dst.len());
        let mut s8 = src.chunks_exact(8);
        let mut d8 = dst.chunks_exact_mut(8);
        for (s, d) in (&mut s8).zip(&mut d8) {
            // SAFETY: `s` holds 8 `f32` (the 256-bit load reads exactly those) and `d` 8 `f16` (the
            // 128-bit store writes exactly those); the caller guarantees the CPU features.
            unsafe {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.as_ptr()));
                _mm_storeu_si128(d.as_mut_ptr().cast::<__m128i>(), h);
            }
        }
        let (s, d) = (s8.remainder(), d8.into_remainder());
        if !s.is_empty() {
            let mut pad = [0f32; 8];
            pad[..s.len()].copy_from_slice(s);
            let mut out = [half::f16::ZERO; 8];
            // SAFETY: `pad` and `out` are 8-element arrays (32 and 16 bytes), as above.
            unsafe {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(pad.as_ptr()));
                _mm_storeu_si128(out.as_mut_ptr().cast::<__m128i>(), h);
            }
            d.copy_from_slice(&out[..d.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_slice_conversions_are_halfs_bit_for_bit() {
        // every f16 widens as half does (exact); lengths cover the padded tail of every size
        let all: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
        let mut wide = vec![0f32; all.len()];
        f16_to_f32(&all, &mut wide);
        for (h, w) in all.iter().zip(&wide) {
            let want = h.to_f32();
            assert!(want.to_bits() == w.to_bits() || (want.is_nan() && w.is_nan()), "{h:?}: {w} vs {want}");
        }
        // a spread of f32 patterns (every exponent, ties, subnormal results, overflow, NaN, inf)
        let mut v: Vec<f32> = (0..=u32::MAX).step_by(40_009).map(f32::from_bits).collect();
        v.extend(
            [0x3f80_1000, 0x3f80_3000, 0x477f_f000, 0x477f_efff, 0x3380_0000, 0x3300_0001, 0x7fc0_0001]
                .map(f32::from_bits),
        );
        for len in [0, 1, 7, 8, 9, 15, 16, 17, v.len()] {
            let mut narrow = vec![half::f16::ZERO; len];
            f32_to_f16(&v[..len], &mut narrow);
            for (x, h) in v.iter().zip(&narrow) {
                let want = half::f16::from_f32(*x);
                assert!(
                    want.to_bits() == h.to_bits() || (want.is_nan() && h.is_nan()),
                    "{x:e}: {h:?} vs {want:?}"
                );
            }
            let mut back = vec![1f32; len];
            f16_to_f32(&narrow, &mut back);
            assert!(back.iter().zip(&narrow).all(|(b, h)| b.to_bits() == h.to_f32().to_bits() || b.is_nan()));
        }
    }

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
