//! Element types: what an array may hold, and the type its math runs in.
//!
//! `f32` and `f64` compute in their own precision, element by element, in the same order of
//! operations as PyTorch's CPU kernels. `f16` and `bf16` are converted to `f32` on load, computed in
//! `f32`, and rounded once on store. PyTorch CPU does the same for the element math of
//! `log_softmax`, BCE and `kl_div`, but **accumulates `nll_loss` sums in half precision**
//! (see `pytorch-semantics.md` §8); infoloss always accumulates in at least `f32` (reductions over
//! many elements use `f64`), so for large half-precision batches our sums are the more accurate ones and
//! can differ from torch CPU by more than one half-precision ulp.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A floating-point type the math runs in: `f32` or `f64`.
pub trait Real:
    num_traits::Float
    + num_traits::FloatConst
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// Converts an `f64` constant (rounding to nearest for `f32`).
    fn c(x: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// `1e-12` as PyTorch's **float** `EPSILON` in the BCE backward (`1e-12f`, even for doubles).
    fn bce_eps() -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn c(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn bce_eps() -> Self {
        1e-12f32
    }
}

impl Real for f64 {
    #[inline(always)]
    fn c(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn bce_eps() -> Self {
        1e-12f32 as f64
    }
}

/// The data types infoloss accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
}

impl Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        })
    }
}

/// An array element type: `f32`, `f64`, [`half::f16`] or [`half::bf16`].
///
/// `Acc` is the type the element math runs in (`f32` for the three narrow types, `f64` for `f64`).
pub trait Element: Copy + Debug + Default + Send + Sync + PartialEq + 'static {
    /// The type computations run in.
    type Acc: Real;
    /// The dtype tag.
    const DTYPE: DType;
    /// Converts to the compute type (exact).
    fn to_acc(self) -> Self::Acc;
    /// Rounds from the compute type (round to nearest even).
    fn from_acc(x: Self::Acc) -> Self;

    /// Whether the compute type is `f32` (`f32`, `f16`, `bf16`): these types run through the `f32`
    /// SIMD kernels.
    const F32_COMPUTE: bool = true;

    /// The slice itself when `Self` is `f32` (the fast paths use it without a copy), else `None`.
    #[inline(always)]
    fn as_f32(_s: &[Self]) -> Option<&[f32]> {
        None
    }

    /// The slice itself when `Self` is `f32`, else `None`.
    #[inline(always)]
    fn as_f32_mut(_s: &mut [Self]) -> Option<&mut [f32]> {
        None
    }

    /// The slice itself when `Self` is [`half::bf16`], else `None`.
    #[inline(always)]
    fn as_bf16(_s: &[Self]) -> Option<&[half::bf16]> {
        None
    }

    /// The slice itself when `Self` is [`half::bf16`], else `None`.
    #[inline(always)]
    fn as_bf16_mut(_s: &mut [Self]) -> Option<&mut [half::bf16]> {
        None
    }

    /// The slice itself when `Self` is [`half::f16`], else `None`.
    #[inline(always)]
    fn as_f16(_s: &[Self]) -> Option<&[half::f16]> {
        None
    }

    /// The slice itself when `Self` is [`half::f16`], else `None`.
    #[inline(always)]
    fn as_f16_mut(_s: &mut [Self]) -> Option<&mut [half::f16]> {
        None
    }

    /// `dst[i] = src[i]` as `f32` (exact for the `f32`-compute types), over the shorter length, one element at
    /// a time (the kernels convert whole rows with SIMD instructions instead).
    #[inline]
    fn load_f32(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_acc().f64() as f32;
        }
    }

    /// `dst[i] = src[i]` rounded to `Self` (round to nearest even), over the shorter length.
    #[inline]
    fn store_f32(src: &[f32], dst: &mut [Self]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = Self::from_acc(Self::Acc::c(s as f64));
        }
    }
}

impl Element for f32 {
    type Acc = f32;
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    #[inline(always)]
    fn as_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_acc(x: f32) -> Self {
        x
    }
}

impl Element for f64 {
    type Acc = f64;
    const DTYPE: DType = DType::F64;
    const F32_COMPUTE: bool = false;
    #[inline(always)]
    fn to_acc(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_acc(x: f64) -> Self {
        x
    }
}

/// The two 16-bit types: computed in `f32`, each with its own slice view.
macro_rules! half_element {
    ($t:ty, $dtype:ident, $as:ident, $as_mut:ident) => {
        impl Element for $t {
            type Acc = f32;
            const DTYPE: DType = DType::$dtype;
            #[inline(always)]
            fn $as(s: &[$t]) -> Option<&[$t]> {
                Some(s)
            }
            #[inline(always)]
            fn $as_mut(s: &mut [$t]) -> Option<&mut [$t]> {
                Some(s)
            }
            #[inline(always)]
            fn to_acc(self) -> f32 {
                self.to_f32()
            }
            #[inline(always)]
            fn from_acc(x: f32) -> Self {
                <$t>::from_f32(x)
            }
        }
    };
}

half_element!(half::f16, F16, as_f16, as_f16_mut);
half_element!(half::bf16, BF16, as_bf16, as_bf16_mut);

#[inline]
pub(crate) fn zero_t<T: Element>() -> T {
    T::from_acc(<T::Acc as Real>::c(0.0))
}

#[inline]
pub(crate) fn to_t<T: Element>(x: f64) -> T {
    T::from_acc(<T::Acc as Real>::c(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_eps_is_the_float_constant_even_in_f64() {
        assert_eq!(<f64 as Real>::bce_eps(), 9.999999960041972e-13);
        assert_eq!(<f32 as Real>::bce_eps(), 1e-12f32);
    }

    #[test]
    fn half_round_trips_through_f32() {
        let x = half::bf16::from_f32(1.5);
        assert_eq!(x.to_acc(), 1.5f32);
        assert_eq!(half::f16::from_acc(0.333_333_34f32), half::f16::from_f32(0.333_333_34));
    }
}
