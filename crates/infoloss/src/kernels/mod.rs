//! SIMD building blocks: vectorized `exp`/`ln` and the row kernels the losses are built from.
//!
//! Every kernel is written once against [`pulp::Simd`] and runs at the best instruction set the
//! CPU offers, chosen at run time: AVX-512 (x86-64-v4), AVX2 + FMA (x86-64-v3), NEON on aarch64,
//! or a portable scalar fallback. [`Isa`] names these levels; [`Kernels::with_isa`] forces one
//! (tests run every kernel at every level the machine has), the free functions use [`Isa::best`].
//!
//! # Elementwise functions
//!
//! | function | special values | measured max error |
//! |---|---|---|
//! | [`exp_f32`] | `exp(-inf) = 0`, `exp(+inf) = inf`, NaN → NaN, `x > 88.7228…` → `inf`, `x < -103.972…` → `0`, subnormal results rounded once | 0.891 ulp; ≤ 1 ulp from the correctly rounded result (all 2³² inputs) |
//! | [`ln_f32`] | `ln(±0) = -inf`, `ln(x < 0) = NaN`, `ln(+inf) = +inf`, NaN → NaN, subnormal inputs exact | 0.885 ulp; ≤ 1 ulp from the correctly rounded result (all 2³² inputs) |
//! | [`exp_f64`] | as `exp_f32`, thresholds `709.78…` and `-745.13…` | ≤ 1 ulp from glibc's `exp` (4·10⁶ samples) |
//! | [`ln_f64`] | as `ln_f32` | ≤ 1 ulp from glibc's `log` (4·10⁶ samples) |
//!
//! For `f32`, "ulp" is `|computed − exact| / ulp(exact)` with the exact value taken from glibc's
//! `f64` function (the spacing of subnormals for subnormal results), measured over **all 2³² `f32`
//! bit patterns** at every instruction set (the `#[ignore]`d test `exhaustive_f32_exp_ln` in
//! `tests/kernels.rs`; a dense sweep of every 97th pattern runs by default). Every function gives
//! bit-identical results at every [`Isa`]: all paths use fused multiply-add (the scalar fallback
//! through `f32::mul_add`/`f64::mul_add`, which is slow on CPUs without FMA but exact). PyTorch's
//! CPU `exp`/`log` (SLEEF `u10` variants) are within 1 ulp as well, so results may differ from
//! torch's by one ulp, never in special values.
//!
//! # Row primitives
//!
//! [`max_f32`], [`max_sum_exp_f32`] (online max and `Σ exp(x − max)` in one read),
//! [`logsumexp_f32`], [`exp_sub_sum_f32`] (`out = exp(x − m)`, returns the sum), [`scale_f32`],
//! [`softmax_f32`], [`log_softmax_f32`], and the fused cross-entropy row kernels
//! [`cross_entropy_row_f32`] and [`cross_entropy_probs_row_f32`], which compute a row's loss
//! terms and write its gradient with one `exp` per element (see [below](self#cross-entropy-rows)).
//!
//! Sums over a row accumulate `f32` vector lanes in short runs (512 elements, four accumulators per lane) that are flushed
//! into an `f64` total, so their relative error does not grow with the row length.
//!
//! # Cross-entropy rows
//!
//! Pass 1 walks the row in blocks that fit in L1 (at most 64 blocks per row): it takes the block's
//! maximum, raises the running maximum `m` if needed (rescaling the running sum by
//! `exp(m_old − m_new)`), writes `exp(x − m)` into the gradient row and accumulates the sum and,
//! when needed, `Σ w_c·(m − x_c)`. Pass 2 turns the cached exponentials into the gradient with one
//! multiply-add per element, using the per-block factor `exp(m_block − m)/Σ`. The row is read
//! once from memory and the gradient written once; pass 2 works from cache.
//!
//! [`cross_entropy_row_in_place_f32`] is the same kernel with the gradient written over the logits
//! (the training path): pass 1 copies each block into an L1 buffer during the block's max scan and
//! writes the exponentials where the logits were, so no row-sized copy is made. `bf16` rows (inside
//! the cross-entropy functions) are widened block by block into that L1 buffer, their exponentials
//! cached in an `f32` row and the finished gradient rounded straight into the `bf16` output: the same
//! bits as the `f32` kernel on the widened row, without widening the row or narrowing the gradient in
//! separate passes.
//!
//! # Scratch memory
//!
//! Row and tile buffers of the parallel drivers come from a small per-thread pool (reused across
//! tasks and calls; buffers up to 16 MiB, at most 8 per thread), so a task costs no `malloc`,
//! `memset` or page faults: at 32,000 classes a fresh `vec!` row per task had cost 30–75 % of the
//! `bf16` cross-entropy's time.

/// Zeroed, fallible, huge-page-backed output buffers.
pub(crate) mod alloc;
mod ce;
/// Rows converted between the element types and the `f32` the kernels compute in.
pub(crate) mod convert;
pub(crate) mod distill;
/// Fused elementwise loss kernels (`kl_div`, BCE, BCE with logits) and their parallel driver.
pub(crate) mod elementwise;
mod exp;
/// Row kernels of the SciPy-style information measures.
pub(crate) mod info;
/// The safe wrapper around `gemm::gemm` used by the fused linear losses.
pub(crate) mod linear_gemm;
mod ln;
mod row;
pub(crate) mod simd;
/// The dense part of sparse-teacher (top-k) distillation rows.
pub(crate) mod topk;
mod vmap;

pub use crate::base::{with_fast_path, with_reference_path};
pub use ce::{
    CeProbsRow, CeRow, cross_entropy_probs_row_f32, cross_entropy_row_f32, cross_entropy_row_in_place_f32,
};

/// Deprecated: switches **every** fast path off, as [`with_reference_path`] does.
#[deprecated(since = "0.2.0", note = "one switch serves every loss now: use infoloss::with_reference_path")]
pub fn with_elementwise_reference_path<R>(f: impl FnOnce() -> R) -> R {
    with_reference_path(f)
}

/// Deprecated: switches **every** fast path on, as [`with_fast_path`] does.
#[deprecated(since = "0.2.0", note = "one switch serves every loss now: use infoloss::with_fast_path")]
pub fn with_elementwise_fast_path<R>(f: impl FnOnce() -> R) -> R {
    with_fast_path(f)
}
pub use exp::{exp_f32, exp_f32_in_place, exp_f64, exp_f64_in_place};
pub use ln::{ln_f32, ln_f32_in_place, ln_f64, ln_f64_in_place};
pub use row::{
    exp_sub_sum_f32, log_softmax_backward_f32, log_softmax_f32, logsumexp_backward_f32, logsumexp_f32,
    max_f32, max_sum_exp_f32, scale_f32, softmax_backward_f32, softmax_f32,
};

use pulp::{Simd, WithSimd};

/// An instruction-set level the kernels can run at.
///
/// `Scalar` exists everywhere; the others only on their architecture and when the CPU supports
/// them ([`Isa::is_available`]).
///
/// ```
/// use infoloss::kernels::{Isa, Kernels};
/// // run a kernel at every level this CPU has; the elementwise functions agree bit for bit
/// let x = [0.5f32, -3.0, 20.0];
/// let mut first = None;
/// for isa in Isa::available() {
///     let mut y = [0.0f32; 3];
///     Kernels::with_isa(isa).unwrap().exp_f32(&x, &mut y).unwrap();
///     assert_eq!(*first.get_or_insert(y), y);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Portable scalar code, one element at a time.
    Scalar,
    /// x86-64-v3: AVX2 + FMA, 8 `f32` lanes.
    Avx2,
    /// x86-64-v4: AVX-512 (F, BW, CD, DQ, VL), 16 `f32` lanes.
    Avx512,
    /// aarch64 NEON, 4 `f32` lanes.
    Neon,
}

impl Isa {
    /// Every level, from the widest to the scalar fallback.
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar];

    /// Whether this CPU can run the level.
    ///
    /// ```
    /// use infoloss::kernels::Isa;
    /// assert!(Isa::Scalar.is_available());
    /// assert!(Isa::best().is_available());
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => pulp::x86::V3::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => pulp::x86::V4::try_new().is_some(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => pulp::aarch64::Neon::try_new().is_some(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The widest level this CPU supports (detected once, then cached).
    pub fn best() -> Isa {
        use std::sync::OnceLock;
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::ALL.into_iter().find(|isa| isa.is_available()).unwrap_or(Isa::Scalar))
    }

    /// The levels this CPU supports, widest first (always ends with [`Isa::Scalar`]).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.is_available()).collect()
    }

    /// Number of `f32` lanes of one vector at this level.
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
            Isa::Neon => 4,
        }
    }
}

/// Runs `op` at `isa`, or at the scalar level when `isa` is not available on this CPU.
#[inline(always)]
pub(crate) fn dispatch<Op: WithSimd>(isa: Isa, op: Op) -> Op::Output {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            if let Some(simd) = pulp::x86::V4::try_new() {
                return Simd::vectorize(simd, op);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            if let Some(simd) = pulp::x86::V3::try_new() {
                return Simd::vectorize(simd, op);
            }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            if let Some(simd) = pulp::aarch64::Neon::try_new() {
                return Simd::vectorize(simd, op);
            }
        }
        _ => {}
    }
    Simd::vectorize(pulp::Scalar::new(), op)
}

/// Runs `op` at [`Isa::Avx2`] (pulp's `V3`) inside a function compiled with F16C enabled as well, so that
/// `f16` conversions written with the F16C intrinsics inline into the kernel (`pulp`'s `V3` level does not
/// enable `f16c`, and an intrinsic that cannot be inlined costs a call per vector). Returns `Err(op)` when
/// the CPU lacks AVX2 + FMA or F16C.
///
/// Code that calls F16C intrinsics must only run under this entry: the kernels pass that fact down as a
/// flag set by the caller of this function.
#[cfg(target_arch = "x86_64")]
pub(crate) fn run_avx2_f16c<Op: WithSimd>(op: Op) -> Result<Op::Output, Op> {
    match pulp::x86::V3::try_new() {
        Some(simd) if simd::f16c_available() => {
            // SAFETY: the CPU has every feature of `V3` (its token exists) and F16C (detected just
            // above): all the features `with_avx2_f16c` is compiled for.
            Ok(unsafe { with_avx2_f16c(simd, op) })
        }
        _ => Err(op),
    }
}

/// `op` at `V3`, compiled with `V3`'s features and F16C (see [`run_avx2_f16c`]).
///
/// # Safety
///
/// The CPU must support every feature listed in the attribute.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse,sse2,fxsr,sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,bmi1,bmi2,fma,lzcnt,f16c")]
unsafe fn with_avx2_f16c<Op: WithSimd>(simd: pulp::x86::V3, op: Op) -> Op::Output {
    op.with_simd(simd)
}

/// A handle that runs the kernels at one chosen [`Isa`].
///
/// The free functions of this module are `Kernels::new().<same name>(..)`. Use
/// [`Kernels::with_isa`] to force a level (for tests and benchmarks).
///
/// ```
/// use infoloss::kernels::{Isa, Kernels};
/// let k = Kernels::with_isa(Isa::Scalar).unwrap();
/// let mut out = [0.0f32; 3];
/// k.exp_f32(&[0.0, 1.0, f32::NEG_INFINITY], &mut out).unwrap();
/// assert_eq!(out, [1.0, std::f32::consts::E, 0.0]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kernels {
    isa: Isa,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::new()
    }
}

impl Kernels {
    /// Kernels at the best level of this CPU.
    pub fn new() -> Kernels {
        Kernels { isa: Isa::best() }
    }

    /// Kernels at `isa`, or `None` if this CPU cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Kernels> {
        isa.is_available().then_some(Kernels { isa })
    }

    /// The level these kernels run at.
    pub fn isa(self) -> Isa {
        self.isa
    }

    #[inline(always)]
    pub(crate) fn run<Op: WithSimd>(self, op: Op) -> Op::Output {
        dispatch(self.isa, op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_available_and_last() {
        let all = Isa::available();
        assert_eq!(all.last(), Some(&Isa::Scalar));
        assert_eq!(all.first(), Some(&Isa::best()));
        assert!(Kernels::with_isa(Isa::Scalar).is_some());
    }

    #[test]
    fn dispatch_runs_at_the_requested_width() {
        struct Lanes;
        impl WithSimd for Lanes {
            type Output = usize;
            fn with_simd<S: Simd>(self, _simd: S) -> usize {
                S::F32_LANES
            }
        }
        for isa in Isa::available() {
            assert_eq!(dispatch(isa, Lanes), isa.f32_lanes(), "{isa:?}");
        }
    }
}
