//! Vectorized `exp` for `f32` and `f64`.
//!
//! # Algorithm (`f32`)
//!
//! Cody–Waite reduction `x = k·ln2 + r`, `k = rint(x·log2 e)` (obtained with the 1.5·2²³ shifter,
//! whose low mantissa bits are then `k` as an integer), `r = (x − k·ln2_hi) − k·ln2_lo` where
//! `ln2_hi` has 9 significant bits so `k·ln2_hi` and the first subtraction are exact. `exp(r)` on
//! `|r| ≤ ln2/2` is a degree-6 minimax polynomial (relative error 2^-27.9 with the `f32`
//! coefficients) evaluated by Horner's rule with fused multiply-adds. The result is
//! `p·2^(k+off)·2^(-off)`, where `2^(k+off)` is built from exponent bits and `off` keeps it normal:
//! `off = 24` for `x < 0` (results down to the smallest subnormal are rounded once, by the last
//! multiplication), `off = -1` for `x ≥ 0` (so `k = 128` still works and overflows to `inf` exactly
//! when the rounded result exceeds `f32::MAX`). `x < -104` gives `0`, `x > 89` gives `inf`, NaN
//! propagates.
//!
//! The "non-positive" variant used inside softmax rows (`x − max ≤ 0`) folds `2^-24` into the
//! polynomial coefficients and drops the `x ≥ 0` branch and the overflow lane: 4 fewer vector
//! operations. It is exact-equal to the general one for `x ≤ 0` and valid up to `x ≤ 64`.
//!
//! # Accuracy
//!
//! Measured over all 2³² `f32` inputs against `f64::exp`: maximum error **0.891 ulp** of the exact
//! result (at `x = 5.2016387`; for subnormal results the ulp is the subnormal spacing 2^-149), so
//! at most **1** ulp from the correctly rounded `f32` result. Every [`Isa`](super::Isa) gives the
//! same bits.

use super::simd::{select, select64};
use pulp::{Simd, WithSimd};

use super::Kernels;
use super::vmap::{VecMap, VecMap64, map_f32, map_f64, map_in_place_f32, map_in_place_f64};
use crate::{Error, Result};

/// `log2(e)` rounded to `f32`.
const LOG2E_F32: f32 = std::f32::consts::LOG2_E;
/// `1.5·2^23`: adding it rounds to an integer held in the low mantissa bits.
const SHIFT_F32: f32 = 12_582_912.0;
/// High part of `ln 2` with 9 significant bits (`355/512`), so `k·LN2_HI` is exact for `|k| < 2^15`.
const LN2_HI_F32: f32 = 355.0 / 512.0;
/// `ln 2 − LN2_HI_F32` rounded to `f32`.
const LN2_LO_F32: f32 = -2.121_944_4e-4;
/// Minimax coefficients of `exp(r) ≈ 1 + r + c2·r² + … + c6·r⁶` on `[-ln2/2 − 1e-3, ln2/2 + 1e-3]`
/// (fitted with a Remez exchange; relative error 2^-27.9 with these `f32` values).
const EXP_C2: f32 = 0.499_999_94;
const EXP_C3: f32 = 0.166_665_2;
const EXP_C4: f32 = 0.041_668_408;
const EXP_C5: f32 = 0.008_368_914;
const EXP_C6: f32 = 0.001_381_419_1;
/// Below this every result rounds to `+0`.
const EXP_UNDERFLOW_F32: f32 = -104.0;
/// Above this every result is `+inf` (between `88.7228…` and `89` the scaling overflows by itself).
const EXP_OVERFLOW_F32: f32 = 89.0;
/// `2^-24`.
const TWO_M24: f32 = 5.960_464_5e-8;

/// Bits added to the shifter's bits to get the biased exponent `k + 127 + 24` (wrapping).
const BIAS_NEG: u32 = (127u32 + 24).wrapping_sub(SHIFT_F32.to_bits());
/// Bits added to the shifter's bits to get the biased exponent `k + 127 − 1` (wrapping).
const BIAS_POS: u32 = (127u32 - 1).wrapping_sub(SHIFT_F32.to_bits());

/// Shared reduction: returns `(r, shifter_bits)`.
#[inline(always)]
fn reduce_f32<S: Simd>(simd: S, x: S::f32s) -> (S::f32s, S::u32s) {
    let t = simd.mul_add_f32s(x, simd.splat_f32s(LOG2E_F32), simd.splat_f32s(SHIFT_F32));
    let kf = simd.sub_f32s(t, simd.splat_f32s(SHIFT_F32));
    let r = simd.mul_add_f32s(kf, simd.splat_f32s(-LN2_HI_F32), x);
    let r = simd.mul_add_f32s(kf, simd.splat_f32s(-LN2_LO_F32), r);
    (r, simd.transmute_u32s_f32s(t))
}

/// Horner evaluation of the polynomial with every coefficient multiplied by `s` (a power of two).
#[inline(always)]
fn poly_f32<S: Simd>(simd: S, r: S::f32s, s: f32) -> S::f32s {
    let p = simd.mul_add_f32s(simd.splat_f32s(EXP_C6 * s), r, simd.splat_f32s(EXP_C5 * s));
    let p = simd.mul_add_f32s(p, r, simd.splat_f32s(EXP_C4 * s));
    let p = simd.mul_add_f32s(p, r, simd.splat_f32s(EXP_C3 * s));
    let p = simd.mul_add_f32s(p, r, simd.splat_f32s(EXP_C2 * s));
    let p = simd.mul_add_f32s(p, r, simd.splat_f32s(s));
    simd.mul_add_f32s(p, r, simd.splat_f32s(s))
}

/// `2^e` from a biased exponent `e` in `[1, 254]`.
#[inline(always)]
fn pow2_bits_f32<S: Simd>(simd: S, biased: S::u32s) -> S::f32s {
    simd.transmute_f32s_u32s(simd.wrapping_dyn_shl_u32s(biased, simd.splat_u32s(23)))
}

/// `exp(x)` for every lane (all inputs, IEEE special values).
#[inline(always)]
pub(crate) fn exp_f32s<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let (r, tbits) = reduce_f32(simd, x);
    let p = poly_f32(simd, r, 1.0);
    let neg = simd.less_than_f32s(x, simd.splat_f32s(0.0));
    let bias = simd.select_u32s(neg, simd.splat_u32s(BIAS_NEG), simd.splat_u32s(BIAS_POS));
    let post = select(simd, neg, simd.splat_f32s(TWO_M24), simd.splat_f32s(2.0));
    let scale = pow2_bits_f32(simd, simd.add_u32s(tbits, bias));
    let y = simd.mul_f32s(simd.mul_f32s(p, post), scale);
    let y = select(simd, simd.less_than_f32s(x, simd.splat_f32s(EXP_UNDERFLOW_F32)), simd.splat_f32s(0.0), y);
    select(
        simd,
        simd.greater_than_f32s(x, simd.splat_f32s(EXP_OVERFLOW_F32)),
        simd.splat_f32s(f32::INFINITY),
        y,
    )
}

/// `exp(x)` for lanes with `x ≤ 0` (also correct up to `x ≤ 64`), NaN and `-inf`; same bits as
/// [`exp_f32s`] there.
#[inline(always)]
pub(crate) fn exp_nonpos_f32s<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let (r, tbits) = reduce_f32(simd, x);
    let p = poly_f32(simd, r, TWO_M24);
    let scale = pow2_bits_f32(simd, simd.add_u32s(tbits, simd.splat_u32s(BIAS_NEG)));
    let y = simd.mul_f32s(p, scale);
    select(simd, simd.less_than_f32s(x, simd.splat_f32s(EXP_UNDERFLOW_F32)), simd.splat_f32s(0.0), y)
}

/// [`exp_f32s`] as a [`VecMap`].
#[derive(Clone, Copy)]
pub(crate) struct ExpMap;

impl VecMap for ExpMap {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        exp_f32s(simd, v)
    }
}

#[cold]
#[inline(never)]
pub(crate) fn len_mismatch(op: &'static str, a: usize, b: usize) -> Error {
    Error::shape_mismatch(op, "input", &[a], "out", &[b], "must be equal")
}

map_op!(f32, ExpF32, ExpF32InPlace, ExpMap);

slice_fn! {
    f32: ExpF32, ExpF32InPlace;
    /// `out[i] = exp(x[i])` in `f32`; see [`exp_f32`].
    fn exp_f32;
    /// `x[i] = exp(x[i])` in `f32`; see [`exp_f32`].
    fn exp_f32_in_place;
    /// `out[i] = exp(x[i])` for `f32` slices, vectorized (PyTorch `torch.exp`, which uses SLEEF
    /// `expf_u10`).
    ///
    /// Maximum error 0.891 ulp of the exact value, so at most 1 ulp from the correctly rounded result
    /// (measured over every `f32` input). Special values: `exp(-inf) = 0`, `exp(+inf) = inf`, `exp(NaN) = NaN`;
    /// `x > 88.72283` overflows to `inf`, `x < -103.97208` underflows to `0`, and results in the
    /// subnormal range are rounded once from an exact scaling. The result does not depend on the
    /// instruction set.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x` and `out` differ in length.
    ///
    /// ```
    /// let x = [0.0f32, 1.0, -1.0, 100.0, f32::NEG_INFINITY];
    /// let mut y = [0.0f32; 5];
    /// infoloss::kernels::exp_f32(&x, &mut y).unwrap();
    /// assert_eq!(y[0], 1.0);
    /// assert!((y[1] - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
    /// assert_eq!(y[3], f32::INFINITY);
    /// assert_eq!(y[4], 0.0);
    /// ```
    pub fn exp_f32;
    /// `x[i] = exp(x[i])` in place; same accuracy and special values as [`exp_f32`].
    ///
    /// ```
    /// let mut x = [0.0f32, 2.0f32.ln()];
    /// infoloss::kernels::exp_f32_in_place(&mut x);
    /// assert_eq!(x, [1.0, 2.0]);
    /// ```
    pub fn exp_f32_in_place;
}

// ---------------------------------------------------------------------------------------------
// f64

/// `1.5·2^52`: adding it rounds an `f64` to an integer.
const SHIFT_F64: f64 = 6_755_399_441_055_744.0;
/// `1.5·2^20`, bits `0x41380000_00000000`: adding an integer `k` to it adds `k` to the high 32-bit
/// word of its bits (its ulp is 2^-32) and leaves the low word 0.
pub(crate) const SHIFT20_F64: f64 = 1_572_864.0;
/// High word of [`SHIFT20_F64`].
pub(crate) const SHIFT20_HI: u32 = 0x4138_0000;
/// `ln 2` with the low 21 bits cleared (`0x3fe62e42fee00000`), so `k·LN2_HI` is exact for `|k| < 2^21`.
pub(crate) const LN2_HI_F64: f64 = 0.693_147_180_369_123_8;
/// `ln 2 − LN2_HI_F64`.
pub(crate) const LN2_LO_F64: f64 = 1.908_214_929_270_587_7e-10;
/// `exp(r) ≈ 1 + r + Σ_{i=2..11} c_i r^i` on `[-ln2/2, ln2/2]` (relative error 2^-56.8).
const EXP64_C: [f64; 10] = [
    0.500000000000001,
    0.16666666666666674,
    0.041666666666522106,
    0.008333333333322215,
    0.0013888888947786544,
    0.00019841269886564585,
    2.4801487364871305e-05,
    2.7557242366561972e-06,
    2.7632641110638405e-07,
    2.511003863139111e-08,
];
const EXP64_UNDERFLOW: f64 = -746.0;
const EXP64_OVERFLOW: f64 = 710.0;
/// `2^-54`.
const TWO_M54: f64 = 5.551_115_123_125_783e-17;

/// Bits of an `f64` vector viewed as `u32` lanes (low word first in each `f64`). Only called when
/// both vector types have the same size; the fallback value is never produced.
#[inline(always)]
pub(crate) fn f64_as_u32<S: Simd>(v: S::f64s) -> S::u32s {
    pulp::bytemuck::try_cast(v).unwrap_or_else(|_| pulp::bytemuck::Zeroable::zeroed())
}

/// Inverse of [`f64_as_u32`].
#[inline(always)]
pub(crate) fn u32_as_f64<S: Simd>(v: S::u32s) -> S::f64s {
    pulp::bytemuck::try_cast(v).unwrap_or_else(|_| pulp::bytemuck::Zeroable::zeroed())
}

/// A vector whose `f64` lanes all have high word `hi` and low word 0, as `u32` lanes.
#[inline(always)]
pub(crate) fn hi_words<S: Simd>(simd: S, hi: u32) -> S::u32s {
    f64_as_u32::<S>(simd.splat_f64s(f64::from_bits((hi as u64) << 32)))
}

/// Whether the `f64` kernels can run at `S` directly (its `u32` and `f64` vectors have the same
/// size); otherwise they run on pulp's 128-bit scalar emulation, with identical results.
#[inline(always)]
pub(crate) fn wide_f64<S: Simd>() -> bool {
    core::mem::size_of::<S::u32s>() == core::mem::size_of::<S::f64s>()
}

/// `exp(x)` for every `f64` lane (`S` must satisfy [`wide_f64`]).
#[inline(always)]
pub(crate) fn exp_f64s<S: Simd>(simd: S, x: S::f64s) -> S::f64s {
    let t = simd.mul_add_f64s(x, simd.splat_f64s(std::f64::consts::LOG2_E), simd.splat_f64s(SHIFT_F64));
    let kf = simd.sub_f64s(t, simd.splat_f64s(SHIFT_F64));
    let r = simd.mul_add_f64s(kf, simd.splat_f64s(-LN2_HI_F64), x);
    let r = simd.mul_add_f64s(kf, simd.splat_f64s(-LN2_LO_F64), r);
    let mut p = simd.splat_f64s(EXP64_C[9]);
    for &c in EXP64_C[..9].iter().rev() {
        p = simd.mul_add_f64s(p, r, simd.splat_f64s(c));
    }
    let p = simd.mul_add_f64s(p, r, simd.splat_f64s(1.0));
    let p = simd.mul_add_f64s(p, r, simd.splat_f64s(1.0));
    let neg = simd.less_than_f64s(x, simd.splat_f64s(0.0));
    let post = select64(simd, neg, simd.splat_f64s(TWO_M54), simd.splat_f64s(2.0));
    // 2^(k+off) with off = 54 (x < 0) or −1 (x ≥ 0): k sits in the high words of kf + 1.5·2^20
    let kw = f64_as_u32::<S>(simd.add_f64s(kf, simd.splat_f64s(SHIFT20_F64)));
    let bias_neg = u32_as_f64::<S>(hi_words(simd, (1023u32 + 54).wrapping_sub(SHIFT20_HI)));
    let bias_pos = u32_as_f64::<S>(hi_words(simd, (1023u32 - 1).wrapping_sub(SHIFT20_HI)));
    let bias = f64_as_u32::<S>(select64(simd, neg, bias_neg, bias_pos));
    let scale = u32_as_f64::<S>(simd.wrapping_dyn_shl_u32s(simd.add_u32s(kw, bias), simd.splat_u32s(20)));
    let y = simd.mul_f64s(simd.mul_f64s(p, post), scale);
    let y = select64(simd, simd.less_than_f64s(x, simd.splat_f64s(EXP64_UNDERFLOW)), simd.splat_f64s(0.0), y);
    select64(
        simd,
        simd.greater_than_f64s(x, simd.splat_f64s(EXP64_OVERFLOW)),
        simd.splat_f64s(f64::INFINITY),
        y,
    )
}

/// The `WithSimd` ops `$name` (`out[i] = f(x[i])`) and `$name_ip` (in place) of the map `$map` on `$t`
/// slices, run by the [`SliceMap`] drivers of `$t`.
macro_rules! map_op {
    ($t:ty, $name:ident, $name_ip:ident, $map:expr) => {
        struct $name<'a> {
            x: &'a [$t],
            out: &'a mut [$t],
        }
        impl WithSimd for $name<'_> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: Simd>(self, simd: S) {
                <$t as $crate::kernels::exp::SliceMap<_>>::map(simd, self.x, self.out, $map);
            }
        }
        struct $name_ip<'a> {
            x: &'a mut [$t],
        }
        impl WithSimd for $name_ip<'_> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: Simd>(self, simd: S) {
                <$t as $crate::kernels::exp::SliceMap<_>>::map_in_place(simd, self.x, $map);
            }
        }
    };
}
pub(crate) use map_op;

/// The slice drivers of the maps `F` on one lane type.
pub(crate) trait SliceMap<F>: Sized {
    /// `out[i] = f(x[i])`; `x` and `out` have the same length.
    fn map<S: Simd>(simd: S, x: &[Self], out: &mut [Self], f: F);
    /// `x[i] = f(x[i])`.
    fn map_in_place<S: Simd>(simd: S, x: &mut [Self], f: F);
}

impl<F: VecMap> SliceMap<F> for f32 {
    #[inline(always)]
    fn map<S: Simd>(simd: S, x: &[f32], out: &mut [f32], f: F) {
        map_f32(simd, x, out, f);
    }
    #[inline(always)]
    fn map_in_place<S: Simd>(simd: S, x: &mut [f32], f: F) {
        map_in_place_f32(simd, x, f);
    }
}

/// At `S`, or on the 128-bit scalar emulation when `S` is not [`wide_f64`].
impl<F: VecMap64> SliceMap<F> for f64 {
    #[inline(always)]
    fn map<S: Simd>(simd: S, x: &[f64], out: &mut [f64], f: F) {
        if wide_f64::<S>() {
            map_f64(simd, x, out, f);
        } else {
            map_f64(pulp::Scalar128b, x, out, f);
        }
    }
    #[inline(always)]
    fn map_in_place<S: Simd>(simd: S, x: &mut [f64], f: F) {
        if wide_f64::<S>() {
            map_in_place_f64(simd, x, f);
        } else {
            map_in_place_f64(pulp::Scalar128b, x, f);
        }
    }
}

/// The public face of a slice function run by the ops `$name` (x → out) and `$name_ip` (in place):
/// the [`Kernels`] methods `f` (lengths checked) and `f_in_place`, and the free functions of the same
/// names on the best instruction set, each with its own documentation.
macro_rules! slice_fn {
    (
        $t:ty: $name:ident, $name_ip:ident;
        $(#[$km:meta])* fn $f:ident;
        $(#[$kim:meta])* fn $f_ip:ident;
        $(#[$fm:meta])* pub fn $f2:ident;
        $(#[$fim:meta])* pub fn $f2_ip:ident;
    ) => {
        impl Kernels {
            $(#[$km])*
            pub fn $f(self, x: &[$t], out: &mut [$t]) -> Result<()> {
                if x.len() != out.len() {
                    return Err($crate::kernels::exp::len_mismatch(stringify!($f), x.len(), out.len()));
                }
                self.run($name { x, out });
                Ok(())
            }

            $(#[$kim])*
            pub fn $f_ip(self, x: &mut [$t]) {
                self.run($name_ip { x });
            }
        }

        $(#[$fm])*
        pub fn $f2(x: &[$t], out: &mut [$t]) -> Result<()> {
            Kernels::new().$f2(x, out)
        }

        $(#[$fim])*
        pub fn $f2_ip(x: &mut [$t]) {
            Kernels::new().$f2_ip(x)
        }
    };
}
pub(crate) use slice_fn;

/// [`map_op`] of the `f64` map `$map` (a [`VecMap64`] calling `$f`), run at `S` or on the 128-bit
/// scalar emulation when `S` is not [`wide_f64`].
macro_rules! f64_map_op {
    ($name:ident, $name_ip:ident, $map:ident, $f:ident) => {
        #[derive(Clone, Copy)]
        struct $map;
        impl $crate::kernels::vmap::VecMap64 for $map {
            #[inline(always)]
            fn call<S: Simd>(self, simd: S, v: S::f64s) -> S::f64s {
                $f(simd, v)
            }
        }
        $crate::kernels::exp::map_op!(f64, $name, $name_ip, $map);
    };
}
pub(crate) use f64_map_op;

f64_map_op!(ExpF64, ExpF64InPlace, Exp64Map, exp_f64s);

slice_fn! {
    f64: ExpF64, ExpF64InPlace;
    /// `out[i] = exp(x[i])` in `f64`; see [`exp_f64`].
    fn exp_f64;
    /// `x[i] = exp(x[i])` in `f64`; see [`exp_f64`].
    fn exp_f64_in_place;
    /// `out[i] = exp(x[i])` for `f64` slices, vectorized (PyTorch `torch.exp` on doubles).
    ///
    /// Same algorithm as [`exp_f32`] with a degree-11 polynomial (relative error 2^-56.8) and the
    /// `f64` thresholds: `x > 709.78…` overflows to `inf`, `x < -745.13…` underflows to `0`, subnormal
    /// results are rounded once. Measured error: within 1 ulp of the C library's `exp` (see
    /// `tests/kernels.rs`). Identical results at every instruction set.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `x` and `out` differ in length.
    ///
    /// ```
    /// let mut y = [0.0f64; 3];
    /// infoloss::kernels::exp_f64(&[0.0, 1.0, -1000.0], &mut y).unwrap();
    /// assert_eq!(y[0], 1.0);
    /// assert!((y[1] - std::f64::consts::E).abs() <= 2.0 * f64::EPSILON);
    /// assert_eq!(y[2], 0.0);
    /// ```
    pub fn exp_f64;
    /// `x[i] = exp(x[i])` in place; see [`exp_f64`].
    ///
    /// ```
    /// let mut x = [0.0f64, f64::NEG_INFINITY];
    /// infoloss::kernels::exp_f64_in_place(&mut x);
    /// assert_eq!(x, [1.0, 0.0]);
    /// ```
    pub fn exp_f64_in_place;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Isa;

    fn ulp_err(y: f32, x: f32) -> f64 {
        let e = (x as f64).exp();
        let u = ulp_of(e);
        ((y as f64) - e).abs() / u
    }

    pub(crate) fn ulp_of(e: f64) -> f64 {
        let a = e.abs();
        if a < f32::MIN_POSITIVE as f64 {
            return 2f64.powi(-149);
        }
        let ex = a.log2().floor() as i32;
        let ex = if 2f64.powi(ex) > a { ex - 1 } else { ex };
        2f64.powi(ex - 23)
    }

    #[test]
    fn special_values_every_isa() {
        let x = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            88.72283,
            88.72284,
            -87.33654,
            -103.0,
            -103.97207,
            -103.97209,
            -200.0,
            1e30,
            -1e30,
            f32::MIN_POSITIVE,
        ];
        for isa in Isa::available() {
            let k = Kernels::with_isa(isa).unwrap();
            let mut y = vec![0.0f32; x.len()];
            k.exp_f32(&x, &mut y).unwrap();
            assert_eq!(y[0], 1.0);
            assert_eq!(y[1], 1.0);
            assert_eq!(y[2], f32::INFINITY);
            assert_eq!(y[3], 0.0);
            assert!(y[4].is_nan());
            assert!(y[5].is_finite() && y[5] > 3.4e38, "{isa:?} {}", y[5]);
            assert_eq!(y[6], f32::INFINITY);
            assert!(ulp_err(y[7], x[7]) <= 1.0);
            assert!(y[8] > 0.0 && ulp_err(y[8], x[8]) <= 1.0, "{isa:?} {}", y[8]);
            assert_eq!(y[9], f32::from_bits(1), "{isa:?}");
            assert_eq!(y[10], 0.0);
            assert_eq!(y[11], 0.0);
            assert_eq!(y[12], f32::INFINITY);
            assert_eq!(y[13], 0.0);
            assert_eq!(y[14], 1.0);
        }
    }

    #[test]
    fn nonpos_variant_matches_general() {
        struct Both<'a>(&'a [f32], &'a mut [f32], &'a mut [f32]);
        impl WithSimd for Both<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, simd: S) {
                #[derive(Clone, Copy)]
                struct NonPos;
                impl VecMap for NonPos {
                    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s {
                        exp_nonpos_f32s(simd, v)
                    }
                }
                map_f32(simd, self.0, self.1, ExpMap);
                map_f32(simd, self.0, self.2, NonPos);
            }
        }
        let mut x: Vec<f32> = (0..200_000).map(|i| -(i as f32) * 5.3e-4).collect();
        x.extend([f32::NEG_INFINITY, f32::NAN, -0.0, 0.0, 10.0, 64.0, -103.972, -150.0]);
        for isa in Isa::available() {
            let mut a = vec![0.0; x.len()];
            let mut b = vec![0.0; x.len()];
            crate::kernels::dispatch(isa, Both(&x, &mut a, &mut b));
            for i in 0..x.len() {
                assert_eq!(a[i].to_bits(), b[i].to_bits(), "{isa:?} x={}", x[i]);
            }
        }
    }
}
