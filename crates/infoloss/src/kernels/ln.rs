//! Vectorized natural logarithm for `f32` and `f64`.
//!
//! # Algorithm (`f32`)
//!
//! Subnormal inputs are first multiplied by 2²³ (exact). Then `x = 2^e·m` with
//! `m ∈ [√½, √2)`, obtained from the bits by adding `0x3f800000 − bits(√½)` so that the exponent
//! field rounds at `√½` instead of at 1, and `f = m − 1 ∈ [−0.2929, 0.4142]`.
//! `ln(1 + f) = f − f²/2 + f³·P(f)` with a degree-7 minimax `P` (relative error 2^-27.2, evaluated
//! by Estrin's scheme: three dependent FMAs rather than Horner's seven), and the
//! result is assembled small terms first:
//! `e·ln2_hi + (f + (f³·P − f²/2 + e·ln2_lo))` with the 9-bit `ln2_hi` so `e·ln2_hi` is exact.
//! Special lanes: `ln(±0) = -inf`, `ln(x < 0) = NaN`, `ln(+inf) = +inf`, NaN propagates.
//!
//! # Accuracy
//!
//! Measured over all 2³² `f32` inputs against `f64::ln`: maximum error **0.885 ulp** of the exact
//! result (at `x = 1.3965372`), so at most **1** ulp from the correctly rounded `f32` result.
//! Every [`Isa`](super::Isa) gives the same bits.

use super::simd::{neg64, select, select64};
use pulp::{Simd, WithSimd};

use super::Kernels;
use super::exp::{
    LN2_HI_F64, LN2_LO_F64, SHIFT20_F64, SHIFT20_HI, f64_as_u32, f64_map_op, hi_words, map_op, slice_fn,
    u32_as_f64,
};
use super::vmap::VecMap;
use crate::Result;

const LN2_HI_F32: f32 = 355.0 / 512.0;
const LN2_LO_F32: f32 = -2.121_944_4e-4;
/// Bits of `√½` rounded to `f32`.
const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
/// Added to the bits so the exponent field increments at `m = √½·2` instead of `2`.
const OFFSET_BITS: u32 = 0x3f80_0000 - SQRT_HALF_BITS;
/// `2^23` as `f32`, also the float whose bits are `0x4b000000`.
const TWO_23: f32 = 8_388_608.0;
/// Minimax coefficients of `P(f) ≈ (ln(1+f) − f + f²/2)/f³` on `[√½ − 1, √2 − 1]`
/// (Remez exchange on relative error).
const LN_P0: f32 = 0.333_333_3;
const LN_P1: f32 = -0.250_008_2;
const LN_P2: f32 = 0.200_012_27;
const LN_P3: f32 = -0.166_233_57;
const LN_P4: f32 = 0.142_017_57;
const LN_P5: f32 = -0.131_601_83;
const LN_P6: f32 = 0.127_615_78;
const LN_P7: f32 = -0.076_344_99;

/// `ln(x)` for every lane (all inputs, IEEE special values).
///
/// Vectors whose lanes are all positive normal finite numbers (the common case) skip the
/// subnormal scaling and the special-value selects; both paths give the same bits for such lanes.
#[inline(always)]
pub(crate) fn ln_f32s<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    if all_lanes(simd, normal_m32s(simd, x)) { ln_normal_f32s(simd, x) } else { ln_special(simd, x) }
}

/// The lanes of `x` that are positive normal finite numbers (where [`ln_normal_f32s`] is exact
/// to [`ln_f32s`]'s bits).
#[inline(always)]
pub(crate) fn normal_m32s<S: Simd>(simd: S, x: S::f32s) -> S::m32s {
    simd.and_m32s(
        simd.greater_than_or_equal_f32s(x, simd.splat_f32s(f32::MIN_POSITIVE)),
        simd.less_than_f32s(x, simd.splat_f32s(f32::INFINITY)),
    )
}

/// Whether every lane of `m` is set.
#[inline(always)]
pub(crate) fn all_lanes<S: Simd>(simd: S, m: S::m32s) -> bool {
    simd.first_true_m32s(simd.not_m32s(m)) == S::F32_LANES
}

/// [`ln_f32s`] for lanes that [`normal_m32s`] accepts, without a branch: the same bits there,
/// garbage elsewhere. Callers that check a whole block of vectors first can then interleave the
/// block's logarithms (independent dependency chains the CPU overlaps).
#[inline(always)]
pub(crate) fn ln_normal_f32s<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    ln_core(simd, x, simd.splat_f32s(TWO_23 + 127.0))
}

/// [`ln_f32s`] of four vectors: one check for the whole block, then (in the common case of
/// positive normal lanes only) four branch-free logarithms whose dependency chains the CPU
/// overlaps. The same bits as four [`ln_f32s`] calls.
#[inline(always)]
pub(crate) fn ln4_f32s<S: Simd>(simd: S, x: [S::f32s; 4]) -> [S::f32s; 4] {
    let ok = simd.and_m32s(
        simd.and_m32s(normal_m32s(simd, x[0]), normal_m32s(simd, x[1])),
        simd.and_m32s(normal_m32s(simd, x[2]), normal_m32s(simd, x[3])),
    );
    let mut y = x;
    if all_lanes(simd, ok) {
        for v in &mut y {
            *v = ln_normal_f32s(simd, *v);
        }
    } else {
        for v in &mut y {
            *v = ln_special(simd, *v);
        }
    }
    y
}

/// [`ln_f32s`] for any lanes: subnormals scaled by 2²³ first, then the special values selected.
#[inline(always)]
fn ln_special<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let sub = simd.less_than_f32s(x, simd.splat_f32s(f32::MIN_POSITIVE));
    let xs = select(simd, sub, simd.mul_f32s(x, simd.splat_f32s(TWO_23)), x);
    let ebias = select(simd, sub, simd.splat_f32s(TWO_23 + 127.0 + 23.0), simd.splat_f32s(TWO_23 + 127.0));
    let y = ln_core(simd, xs, ebias);

    let y =
        select(simd, simd.equal_f32s(x, simd.splat_f32s(f32::INFINITY)), simd.splat_f32s(f32::INFINITY), y);
    let y = select(simd, simd.equal_f32s(x, simd.splat_f32s(0.0)), simd.splat_f32s(f32::NEG_INFINITY), y);
    // NaN and negative inputs (the comparison is false for NaN)
    let valid = simd.greater_than_or_equal_f32s(x, simd.splat_f32s(0.0));
    select(simd, valid, y, simd.splat_f32s(f32::NAN))
}

/// `ln(xs)` for a positive normal finite `xs` whose exponent bias (plus 2²³) is `ebias`.
#[inline(always)]
fn ln_core<S: Simd>(simd: S, xs: S::f32s, ebias: S::f32s) -> S::f32s {
    let ix = simd.add_u32s(simd.transmute_u32s_f32s(xs), simd.splat_u32s(OFFSET_BITS));
    // biased exponent in [1, 254] for positive finite inputs
    let ebits = simd.wrapping_dyn_shr_u32s(ix, simd.splat_u32s(23));
    // float(ebits) exactly: the float with bits 0x4b000000 + ebits is 2^23 + ebits
    let ef = simd.transmute_f32s_u32s(simd.add_u32s(ebits, simd.splat_u32s(TWO_23.to_bits())));
    let e = simd.sub_f32s(ef, ebias);
    let mbits =
        simd.add_u32s(simd.and_u32s(ix, simd.splat_u32s(0x007f_ffff)), simd.splat_u32s(SQRT_HALF_BITS));
    let f = simd.sub_f32s(simd.transmute_f32s_u32s(mbits), simd.splat_f32s(1.0));

    let f2 = simd.mul_f32s(f, f);
    // Estrin's scheme: three dependent FMAs instead of Horner's seven
    let f4 = simd.mul_f32s(f2, f2);
    let p01 = simd.mul_add_f32s(simd.splat_f32s(LN_P1), f, simd.splat_f32s(LN_P0));
    let p23 = simd.mul_add_f32s(simd.splat_f32s(LN_P3), f, simd.splat_f32s(LN_P2));
    let p45 = simd.mul_add_f32s(simd.splat_f32s(LN_P5), f, simd.splat_f32s(LN_P4));
    let p67 = simd.mul_add_f32s(simd.splat_f32s(LN_P7), f, simd.splat_f32s(LN_P6));
    let p03 = simd.mul_add_f32s(p23, f2, p01);
    let p47 = simd.mul_add_f32s(p67, f2, p45);
    let p = simd.mul_add_f32s(p47, f4, p03);
    let y = simd.mul_f32s(simd.mul_f32s(f2, f), p);
    let y = simd.mul_add_f32s(e, simd.splat_f32s(LN2_LO_F32), y);
    let y = simd.mul_add_f32s(f2, simd.splat_f32s(-0.5), y);
    let y = simd.add_f32s(f, y);
    simd.mul_add_f32s(e, simd.splat_f32s(LN2_HI_F32), y)
}

/// [`ln_f32s`] as a [`VecMap`].
#[derive(Clone, Copy)]
pub(crate) struct LnMap;

impl VecMap for LnMap {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        ln_f32s(simd, v)
    }
}

map_op!(f32, LnF32, LnF32InPlace, LnMap);

slice_fn! {
    f32: LnF32, LnF32InPlace;
    /// `out[i] = ln(x[i])` in `f32`; see [`ln_f32`].
    fn ln_f32;
    /// `x[i] = ln(x[i])` in `f32`; see [`ln_f32`].
    fn ln_f32_in_place;
    /// `out[i] = ln(x[i])` (natural log) for `f32` slices, vectorized (PyTorch `torch.log`).
    ///
    /// Maximum error 0.885 ulp of the exact value, so at most 1 ulp from the correctly rounded result
    /// (measured over every `f32` input).
    /// Special values: `ln(±0) = -inf`, `ln(x < 0) = NaN`, `ln(+inf) = +inf`, `ln(NaN) = NaN`;
    /// subnormal inputs are handled exactly (scaled by 2²³ first). The result does not depend on the
    /// instruction set.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `x` and `out` differ in length.
    ///
    /// ```
    /// let x = [1.0f32, std::f32::consts::E, 0.0, -1.0, f32::INFINITY];
    /// let mut y = [0.0f32; 5];
    /// infoloss::kernels::ln_f32(&x, &mut y).unwrap();
    /// assert_eq!(y[0], 0.0);
    /// assert!((y[1] - 1.0).abs() <= f32::EPSILON);
    /// assert_eq!(y[2], f32::NEG_INFINITY);
    /// assert!(y[3].is_nan());
    /// assert_eq!(y[4], f32::INFINITY);
    /// ```
    pub fn ln_f32;
    /// `x[i] = ln(x[i])` in place; same accuracy and special values as [`ln_f32`].
    ///
    /// ```
    /// let mut x = [1.0f32, 4.0];
    /// infoloss::kernels::ln_f32_in_place(&mut x);
    /// assert_eq!(x[0], 0.0);
    /// assert!((x[1] - 4.0f32.ln()).abs() <= f32::EPSILON);
    /// ```
    pub fn ln_f32_in_place;
}

// ---------------------------------------------------------------------------------------------
// f64

/// High word of `√½` (`0x3fe6a09e_667f3bcd`): mantissas are split at `0x3fe6a09e_00000000`.
const SQRT_HALF_HI: u32 = 0x3fe6_a09e;
/// `2^54`.
const TWO_54: f64 = 18_014_398_509_481_984.0;
/// `2·atanh(s) = 2s + s·z·P(z)`, `z = s²`, `|s| ≤ 0.1716` (relative error 2^-59.5).
const LN64_P: [f64; 7] = [
    0.6666666666666735,
    0.3999999999941049,
    0.2857142874340922,
    0.22222198459740455,
    0.18183570643299488,
    0.15313878693133873,
    0.14797767128171854,
];

/// `ln(x)` for every `f64` lane (`S` must have `u32` and `f64` vectors of the same size).
///
/// `x = 2^e·m`, `m ∈ [√½, √2)` (split on the high word), `f = m − 1`, `s = f/(2 + f)`,
/// `ln(1+f) = f − (f²/2 − s·(f²/2 + R(s²)))`, result `e·ln2_hi − ((f²/2 − (s·(…) + e·ln2_lo)) − f)`.
#[inline(always)]
pub(crate) fn ln_f64s<S: Simd>(simd: S, x: S::f64s) -> S::f64s {
    let sub = simd.less_than_f64s(x, simd.splat_f64s(f64::MIN_POSITIVE));
    let xs = select64(simd, sub, simd.mul_f64s(x, simd.splat_f64s(TWO_54)), x);
    let u = simd.add_u32s(f64_as_u32::<S>(xs), hi_words(simd, 0x3ff0_0000 - SQRT_HALF_HI));
    // biased exponent in the high words; low words cleared
    let eb = simd.and_u32s(simd.wrapping_dyn_shr_u32s(u, simd.splat_u32s(20)), hi_words(simd, u32::MAX));
    let ef = u32_as_f64::<S>(simd.add_u32s(eb, hi_words(simd, SHIFT20_HI)));
    let ebias = select64(
        simd,
        sub,
        simd.splat_f64s(SHIFT20_F64 + 1023.0 + 54.0),
        simd.splat_f64s(SHIFT20_F64 + 1023.0),
    );
    let e = simd.sub_f64s(ef, ebias);
    let mant_mask = f64_as_u32::<S>(simd.splat_f64s(f64::from_bits(0x000f_ffff_ffff_ffff)));
    let mu = simd.add_u32s(simd.and_u32s(u, mant_mask), hi_words(simd, SQRT_HALF_HI));
    let f = simd.sub_f64s(u32_as_f64::<S>(mu), simd.splat_f64s(1.0));

    let s = simd.div_f64s(f, simd.add_f64s(simd.splat_f64s(2.0), f));
    let z = simd.mul_f64s(s, s);
    let mut p = simd.splat_f64s(LN64_P[6]);
    for &c in LN64_P[..6].iter().rev() {
        p = simd.mul_add_f64s(p, z, simd.splat_f64s(c));
    }
    let r = simd.mul_f64s(z, p);
    let hfsq = simd.mul_f64s(simd.mul_f64s(f, f), simd.splat_f64s(0.5));
    let y = simd.mul_f64s(s, simd.add_f64s(hfsq, r));
    let y = simd.mul_add_f64s(e, simd.splat_f64s(LN2_LO_F64), y);
    let y = simd.sub_f64s(simd.sub_f64s(hfsq, y), f);
    let y = simd.mul_add_f64s(e, simd.splat_f64s(LN2_HI_F64), neg64(simd, y));

    let y =
        select64(simd, simd.equal_f64s(x, simd.splat_f64s(f64::INFINITY)), simd.splat_f64s(f64::INFINITY), y);
    let y = select64(simd, simd.equal_f64s(x, simd.splat_f64s(0.0)), simd.splat_f64s(f64::NEG_INFINITY), y);
    let valid = simd.greater_than_or_equal_f64s(x, simd.splat_f64s(0.0));
    select64(simd, valid, y, simd.splat_f64s(f64::NAN))
}

f64_map_op!(LnF64, LnF64InPlace, Ln64Map, ln_f64s);

slice_fn! {
    f64: LnF64, LnF64InPlace;
    /// `out[i] = ln(x[i])` in `f64`; see [`ln_f64`].
    fn ln_f64;
    /// `x[i] = ln(x[i])` in `f64`; see [`ln_f64`].
    fn ln_f64_in_place;
    /// `out[i] = ln(x[i])` for `f64` slices, vectorized (PyTorch `torch.log` on doubles).
    ///
    /// Reduction to `m ∈ [√½, √2)` and `ln(1+f) = 2·atanh(f/(2+f))` with a degree-6 minimax
    /// polynomial in `s²` (relative error 2^-59.5). Measured error: within 1 ulp of the C library's
    /// `log` (see `tests/kernels.rs`). Special values as [`ln_f32`]; subnormal inputs exact.
    /// Identical results at every instruction set.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `x` and `out` differ in length.
    ///
    /// ```
    /// let mut y = [0.0f64; 3];
    /// infoloss::kernels::ln_f64(&[1.0, std::f64::consts::E, 0.0], &mut y).unwrap();
    /// assert_eq!(y[0], 0.0);
    /// assert!((y[1] - 1.0).abs() <= f64::EPSILON);
    /// assert_eq!(y[2], f64::NEG_INFINITY);
    /// ```
    pub fn ln_f64;
    /// `x[i] = ln(x[i])` in place; see [`ln_f64`].
    ///
    /// ```
    /// let mut x = [1.0f64, -1.0];
    /// infoloss::kernels::ln_f64_in_place(&mut x);
    /// assert_eq!(x[0], 0.0);
    /// assert!(x[1].is_nan());
    /// ```
    pub fn ln_f64_in_place;
}
