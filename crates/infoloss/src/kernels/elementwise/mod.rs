//! Fused elementwise loss kernels: `kl_div`, `binary_cross_entropy` and
//! `binary_cross_entropy_with_logits`, loss and gradients in one pass over the inputs.
//!
//! # What runs
//!
//! The losses call [`run_job`] with their operands (input `x`, target `t`, optional weight `w`,
//! `pos_weight` `p` and upstream gradient `g`, each standard-layout data of the input's shape or a
//! broadcast array) and a [`PointOp`] holding the elementwise formula. The flat element range is cut
//! into tasks of a fixed [`TASK`] elements that rayon runs in parallel; a task walks its range in
//! tiles of [`TILE`] elements that stay in L1: each operand's tile is read once (for `f16`
//! converted into an `f32` scratch tile by F16C, for broadcast weights copied from their period,
//! for absent operands a tile of their constant filled once per task), the formula runs on whole
//! SIMD vectors in a loop without a branch per vector (the last partial vector through masked loads
//! and stores), and the loss, input gradient and target gradient tiles are written once (directly
//! into the output for `f32`, converted from an `f32` scratch tile for `f16`). The training
//! combination (loss and input gradient) has its own copy of that loop, with the wanted results and
//! a scalar upstream gradient as constants.
//!
//! `bf16` tiles of `kl_div` skip the scratch tiles ([`pair_tile`]; where that pays is
//! [`PointOp::PAIRS`]): each SIMD vector of `u32` holds two
//! `bf16` per lane, which a shift and a mask widen into two `f32` vectors; the formula runs on both
//! and the results are rounded (to nearest even, on the bits) and packed back into the outputs, all
//! in registers. Broadcast operands are laid out to match. The last partial group of a job (fewer
//! than two vectors' worth) and data that is not 4-byte aligned take the scratch-tile path, which
//! gives the same bits.
//!
//! `f16` tiles on AVX2 CPUs with F16C skip the scratch tiles too (`f16c::tile`): the task runs
//! through [`super::run_avx2_f16c`], a dispatch entry compiled with F16C enabled, so one `vcvtph2ps`
//! widens eight inputs in a register and one `vcvtps2ph` rounds eight results into the output; a summed
//! loss's terms are rounded in registers and summed in the loop. The results are the scratch-tile
//! path's bits. Broadcast inputs or targets take the scratch tiles.
//!
//! The `_with_grad_in_place` variants run the same job with the input gradient going into the
//! input's own buffer ([`Job::in_place`]): for `f32` each vector of `x` is read and then overwritten
//! by its gradient in the same iteration; a half-type tile is first widened into its L1 scratch
//! tile. The results are the allocating call's bits and no gradient array is allocated. `binary_cross_entropy` checks its domain before anything is
//! written ([`all_in_unit`], a streaming pass over the bits), so an error leaves the input untouched.
//!
//! # Reductions
//!
//! A reduced loss is the sum of the elementwise terms, each first rounded to the element type as the
//! reference implementation does. A tile sums its terms in SIMD lanes with TwoSum error terms
//! (as exact as an `f64` sum; for `f32`, and `f16` through F16C, inside the formula's loop; otherwise
//! in a pass over the rounded terms), a task adds its tiles in order, and the task sums are added in task order: the
//! partition and the order never depend on the number of threads, so results are bit-identical for
//! any rayon pool.
//!
//! # Accuracy
//!
//! The formulas follow PyTorch's CPU kernels operation by operation (no fused multiply-adds where
//! PyTorch rounds twice) with the crate's vectorized `exp`/`ln` (≤ 1 ulp); `log1p(v)` is computed as
//! `ln(u) + (v − (u − 1))·r` with `u = 1 + v` rounded, whose rounding error `v − (u − 1)` is exact, and
//! `r ≈ 1/u` (a short polynomial for BCE, `σ(|x|)` for BCE with logits — no extra division), so the
//! result is within about 1.5 ulp. Where the reference formula subtracts nearly equal terms the two
//! paths may differ by a few roundings of those terms; everywhere else by a few ulp.

use super::simd::{abs, neg, select};
use crate::base::outputs::{Outputs, internal, to_array};
use std::any::Any;
use std::cell::Cell;

use ndarray::{ArrayViewD, Axis};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::Kernels;
use super::exp::{exp_f32s, exp_nonpos_f32s};
use super::ln::ln_f32s;
use super::simd::{hsum_f64, narrow_bf16_pairs, round_bf16_bits, widen_bf16_pairs};
use crate::base::DType;
use crate::base::outputs::Want;
use crate::{Element, Loss, Real, Reduction, Result};

thread_local! {
    // On by default; the unit tests switch it off to compare the two bf16 paths.
    static PAIR_PATH: Cell<bool> = const { Cell::new(true) };
    // On by default; the unit tests switch it off to compare the two f16 paths.
    static F16C_PATH: Cell<bool> = const { Cell::new(true) };
}

/// Whether the fast path is on for this thread and `T` is a type it handles.
pub(crate) fn fast_path_for<T: Element>() -> bool {
    T::DTYPE != DType::F64 && crate::base::path::fast_path()
}

/// Elements per parallel task: a constant, so the split never depends on the number of threads.
pub(crate) const TASK: usize = 1 << 16;
/// Elements per L1-resident tile inside a task.
pub(crate) const TILE: usize = 1024;

/// An element type computed in `f32` (its slice conversions are `Element::as_f32`, `load_f32`,
/// `store_f32`), with a zeroed allocation that makes no pass over the memory.
pub(crate) trait FastElem: Element<Acc = f32> + super::alloc::ZeroBits {
    /// `n` zeros, allocated zeroed (without a pass over the memory) on huge pages where possible
    /// ([`super::alloc::zeroed`]). The callers have checked `n` against the address space; memory
    /// exhaustion here ends the process as any allocation of the standard library does.
    fn zeros(n: usize) -> Vec<Self> {
        super::alloc::zeroed(n).unwrap_or_else(|| vec![Self::default(); n])
    }

    /// `dst = src` widened to `f32` (inlined into the SIMD context of the caller for `bf16`).
    #[inline(always)]
    fn load_tile(src: &[Self], dst: &mut [f32]) {
        super::convert::widen(src, dst);
    }

    /// `dst = src` rounded to the element type (inlined into the SIMD context of the caller for
    /// `bf16`).
    #[inline(always)]
    fn store_tile(src: &[f32], dst: &mut [Self]) {
        super::convert::narrow(src, dst);
    }

    /// Runs one task of the parallel driver at `k`'s instruction set.
    #[inline(always)]
    fn run_task<K: PointOp>(k: Kernels, run: TaskRun<'_, '_, '_, Self, K>) -> (f64, bool) {
        k.run(run)
    }

    /// Each value rounded to the element type and widened back, through `scratch` (of `v`'s
    /// length at least) where no in-register rounding is written.
    #[inline(always)]
    fn round_tile(v: &mut [f32], scratch: &mut [Self]) {
        let r = &mut scratch[..v.len()];
        super::convert::narrow(v, r);
        super::convert::widen(r, v);
    }
}

impl FastElem for f32 {}
impl FastElem for half::f16 {
    /// Through [`super::run_avx2_f16c`] when `run.f16c` is set (only this type instantiates that entry,
    /// a copy of the whole task loop).
    #[inline(always)]
    fn run_task<K: PointOp>(k: Kernels, run: TaskRun<'_, '_, '_, Self, K>) -> (f64, bool) {
        #[cfg(target_arch = "x86_64")]
        if run.f16c {
            return match super::run_avx2_f16c(run) {
                Ok(r) => r,
                // no F16C: the scratch tiles, whose conversions do not need it
                Err(run) => k.run(TaskRun { f16c: false, ..run }),
            };
        }
        k.run(run)
    }
}
impl FastElem for half::bf16 {
    #[inline(always)]
    fn load_tile(src: &[Self], dst: &mut [f32]) {
        super::simd::widen_bf16(src, dst);
    }

    #[inline(always)]
    fn store_tile(src: &[f32], dst: &mut [Self]) {
        super::simd::narrow_bf16(src, dst);
    }

    #[inline(always)]
    fn round_tile(v: &mut [f32], _scratch: &mut [Self]) {
        super::simd::round_bf16_in_place(v);
    }
}

/// Where one operand's values come from, in the flat row-major order of the input shape.
pub(crate) enum Operand<'a, T> {
    /// Standard-layout data of the whole shape.
    Slice(&'a [T]),
    /// Element `i` is `block[(i / inner) % block.len()]`: a broadcast array (a `(C,)` weight of an
    /// `(N, C)` input has `inner = 1`, a `(C, 1, 1)` one of `(N, C, H, W)` has `inner = H·W`), or an
    /// array of another layout copied out in logical order (`inner = 1`, the whole array as block).
    Periodic { block: Vec<f32>, inner: usize },
}

impl<'a, T: Element> Operand<'a, T> {
    /// The operand for `view`, which has the shape of the input (possibly broadcast into it).
    pub(crate) fn of_view(view: &ArrayViewD<'a, T>) -> Self {
        if let Some(s) = view.to_slice() {
            return Operand::Slice(s);
        }
        // the axes that matter (length > 1), and the leading and trailing ones that repeat (stride 0)
        let axes: Vec<usize> = (0..view.ndim()).filter(|&a| view.len_of(Axis(a)) > 1).collect();
        let zero = |a: &&usize| view.strides().get(**a) == Some(&0);
        let lead = axes.iter().take_while(zero).count();
        let (outer, rest) = axes.split_at(lead);
        let trail = rest.iter().rev().take_while(zero).count();
        let (_, repeated) = rest.split_at(rest.len() - trail);
        let inner = repeated.iter().map(|&a| view.len_of(Axis(a))).product::<usize>();
        let mut period = view.clone();
        for &a in outer.iter().chain(repeated) {
            period.collapse_axis(Axis(a), 0);
        }
        let block = period.iter().map(|v| v.to_acc().f64() as f32).collect();
        Operand::Periodic { block, inner: inner.max(1) }
    }
}

impl<T: FastElem> Operand<'_, T> {
    /// The `f32` values of elements `start .. start + scratch.len()`: a slice of the data itself when
    /// possible, else `scratch` filled with them.
    #[inline(always)]
    fn tile<'s>(&'s self, start: usize, scratch: &'s mut [f32]) -> &'s [f32] {
        let len = scratch.len();
        match self {
            Operand::Slice(s) => {
                let src = s.get(start..start + len).unwrap_or_default();
                match T::as_f32(src) {
                    Some(direct) => direct,
                    None => {
                        T::load_tile(src, scratch);
                        scratch
                    }
                }
            }
            Operand::Periodic { block, inner } => {
                if *inner == 1 && !block.is_empty() {
                    let p = start % block.len();
                    if let Some(direct) = block.get(p..p + len) {
                        return direct;
                    }
                }
                fill_periodic(block, *inner, start, scratch);
                scratch
            }
        }
    }
}

/// `out[j] = block[((start + j) / inner) % block.len()]`, copied or filled run by run.
#[inline(always)]
fn fill_periodic(block: &[f32], inner: usize, start: usize, out: &mut [f32]) {
    let period = block.len().max(1);
    let inner = inner.max(1);
    let mut i = start;
    let mut rest = out;
    while !rest.is_empty() {
        let b = (i / inner) % period;
        let run = if inner == 1 { period - b } else { inner - i % inner }.min(rest.len());
        let (head, tail) = rest.split_at_mut(run);
        if inner == 1 {
            head.copy_from_slice(block.get(b..b + run).unwrap_or_default());
        } else {
            head.fill(block.get(b).copied().unwrap_or(0.0));
        }
        rest = tail;
        i += run;
    }
}

mod bf16_pairs;
mod driver;
#[cfg(target_arch = "x86_64")]
mod f16c;
mod ops;
#[cfg(test)]
mod tests;

use bf16_pairs::*;
pub(crate) use driver::*;
pub(crate) use ops::*;
