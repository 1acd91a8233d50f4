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

// ----------------------------------------------------------------------------------------------
// The fast / reference switch.
// ----------------------------------------------------------------------------------------------

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

// ----------------------------------------------------------------------------------------------
// Element types the driver runs on: f32 directly, f16 / bf16 through f32 scratch tiles.
// ----------------------------------------------------------------------------------------------

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

// ----------------------------------------------------------------------------------------------
// Operands.
// ----------------------------------------------------------------------------------------------

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

// ----------------------------------------------------------------------------------------------
// The elementwise formula, one vector at a time.
// ----------------------------------------------------------------------------------------------

/// One vector of each operand (absent operands hold 1, the upstream gradient its constant).
#[derive(Clone, Copy)]
pub(crate) struct Lanes<V> {
    x: V,
    t: V,
    w: V,
    p: V,
    g: V,
}

/// One vector of each result (unrequested ones are unspecified); `bad` is 1 in lanes whose inputs
/// are outside the loss's domain, else 0.
#[derive(Clone, Copy)]
pub(crate) struct Outs<V> {
    loss: V,
    grad_input: V,
    grad_target: V,
    bad: V,
}

impl<V: Copy> Outs<V> {
    /// Every result 0.
    #[inline(always)]
    fn zero<S: Simd<f32s = V>>(simd: S) -> Self {
        let z = simd.splat_f32s(0.0);
        Outs { loss: z, grad_input: z, grad_target: z, bad: z }
    }
}

/// An elementwise loss: its loss term and gradients for one vector of operands.
///
/// Implemented by small `Copy` structs with `#[inline(always)]` methods, never closures (see
/// `vmap.rs`).
pub(crate) trait PointOp: Copy + Send + Sync + 'static {
    /// Whether `Outs::bad` is computed (inputs outside `[0, 1]` for `binary_cross_entropy`).
    const CHECKS: bool;
    /// Whether `bf16` jobs convert in registers ([`pair_tile`]). Two formula calls per loop
    /// iteration need twice the registers: a win for a light formula (`kl_div`: 54 → 46 ms in place
    /// at 1 thread), level for unweighted BCE (and unmeasured with weights, so off), a loss for BCE
    /// with logits and a broadcast `pos_weight` (117 → 129–137 ms: an `exp`, a `ln` and a division
    /// per vector, and the split layout's reordering).
    const PAIRS: bool;
    /// The requested results for one vector.
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s>;
}

/// `ln(1 + v)` from `u = 1 + v` rounded and `r ≈ 1/u`: `ln(u) + (v − (u − 1))·r`.
///
/// The rounding error `c = v − (u − 1)` of `u` is exact (`|v| ≤ 1`), and `ln(1 + v) = ln(u) + ln(1 + c/u)
/// ≈ ln(u) + c/u`. `r` only scales that small correction: a relative error δ in `r` costs
/// `|c|·δ ≤ ulp(u)·δ/2`, far below an ulp of the result for the `r` the callers pass. Where `u = 1` the
/// result is `v` itself (`log1p(−0) = −0`). NaN propagates; `u = 0` gives `−∞` when `c·r` is finite.
#[inline(always)]
fn log1p_f32s<S: Simd>(simd: S, v: S::f32s, u: S::f32s, r: S::f32s) -> S::f32s {
    log1p_from_ln(simd, v, u, r, ln_f32s(simd, u))
}

/// [`log1p_f32s`] with `ln(u)` already computed (only lanes where `ln_u` is `ln(u)` are meaningful).
#[inline(always)]
fn log1p_from_ln<S: Simd>(simd: S, v: S::f32s, u: S::f32s, r: S::f32s, ln_u: S::f32s) -> S::f32s {
    let one = simd.splat_f32s(1.0);
    let c = simd.sub_f32s(v, simd.sub_f32s(u, one));
    let l = simd.add_f32s(ln_u, simd.mul_f32s(c, r));
    select(simd, simd.equal_f32s(u, one), v, l)
}

/// `log1p(−x)` for `x ∈ [0, 1]`, without a division.
///
/// `u = 1 − x` is exact for `x ≥ ½` (so `c = 0`); below, `w = u − 1 ∈ (−½, 0]` and
/// `r = (1 − w)(1 + w²) = 1/u·(1 − w⁴)`, so `|c|·δ ≤ 2⁻²⁵·w⁴` against a result of at least `|w|`: under
/// 1/16 ulp. `x = 1` gives `ln 0 = −∞`.
#[inline(always)]
fn log1p_neg_unit_f32s<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let (v, u, r) = log1p_neg_unit_parts(simd, x);
    log1p_f32s(simd, v, u, r)
}

/// `(v, u, r)` of [`log1p_neg_unit_f32s`]: `v = −x`, `u = 1 + v`, `r ≈ 1/u`.
#[inline(always)]
fn log1p_neg_unit_parts<S: Simd>(simd: S, x: S::f32s) -> (S::f32s, S::f32s, S::f32s) {
    let one = simd.splat_f32s(1.0);
    let v = neg(simd, x);
    let u = simd.add_f32s(one, v);
    let w = simd.sub_f32s(u, one);
    (v, u, simd.mul_f32s(simd.sub_f32s(one, w), simd.mul_add_f32s(w, w, one)))
}

/// Lanes with `0 ≤ a ≤ 1` (false for NaN).
#[inline(always)]
fn in_unit<S: Simd>(simd: S, a: S::f32s) -> S::m32s {
    let lo = simd.greater_than_or_equal_f32s(a, simd.splat_f32s(0.0));
    simd.and_m32s(lo, simd.less_than_or_equal_f32s(a, simd.splat_f32s(1.0)))
}

/// `std::max(l, −100)` as PyTorch's BCE clamps each log (`l` is never NaN for valid inputs).
#[inline(always)]
fn clamp_log<S: Simd>(simd: S, l: S::f32s) -> S::f32s {
    let lo = simd.splat_f32s(-100.0);
    select(simd, simd.less_than_f32s(l, lo), lo, l)
}

/// `min(a, 0)` as `a < 0 ? a : 0` (0 for NaN, as PyTorch's `log_sigmoid`).
#[inline(always)]
fn min0<S: Simd>(simd: S, a: S::f32s) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    select(simd, simd.less_than_f32s(a, zero), a, zero)
}

/// `v·w` when weighted, then `v / div` when dividing — PyTorch's order for the BCE gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scaling {
    /// Multiply by the weight operand.
    pub(crate) weighted: bool,
    /// Divide by this (the element count for `'mean'`).
    pub(crate) div: Option<f32>,
}

impl Scaling {
    /// `v·w` when weighted (the loss terms: no division).
    #[inline(always)]
    fn weigh<S: Simd>(self, simd: S, v: S::f32s, w: S::f32s) -> S::f32s {
        if self.weighted { simd.mul_f32s(v, w) } else { v }
    }

    /// `v·w` when weighted, then `÷ div` (the gradients).
    #[inline(always)]
    fn apply<S: Simd>(self, simd: S, v: S::f32s, w: S::f32s) -> S::f32s {
        let v = self.weigh(simd, v, w);
        match self.div {
            Some(d) => simd.div_f32s(v, simd.splat_f32s(d)),
            None => v,
        }
    }
}

/// `kl_div`: terms `xlogy(t, t) − t·x` (or `exp(t)·(t − x)` with `log_target`) and their gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KlOp {
    /// Whether `t` holds log-probabilities.
    pub(crate) log_target: bool,
}

impl PointOp for KlOp {
    const CHECKS: bool = false;
    const PAIRS: bool = true;

    #[inline(always)]
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s> {
        let zero = simd.splat_f32s(0.0);
        let mut o = Outs::zero(simd);
        let Lanes { x, t, g, .. } = v;
        let neg_g = neg(simd, g);
        if self.log_target {
            // log-probabilities are ≤ 0: the cheaper exponential gives the same bits there
            let nonpos = simd.less_than_or_equal_f32s(t, zero);
            let e = if simd.first_true_m32s(simd.not_m32s(nonpos)) == S::F32_LANES {
                exp_nonpos_f32s(simd, t)
            } else {
                exp_f32s(simd, t)
            };
            let d = simd.sub_f32s(t, x);
            if want.loss {
                o.loss = simd.mul_f32s(e, d);
            }
            if want.grad_input {
                o.grad_input = neg(simd, simd.mul_f32s(g, e));
            }
            if want.grad_target {
                // autograd of exp(t)·(t − x): (g·(t − x))·exp(t) + g·exp(t)
                o.grad_target = simd.add_f32s(simd.mul_f32s(simd.mul_f32s(g, d), e), simd.mul_f32s(g, e));
            }
            return o;
        }
        if want.loss || want.grad_target {
            let ln_t = ln_f32s(simd, t);
            let t_zero = simd.equal_f32s(t, zero);
            if want.loss {
                // xlogy(t, t): 0 at t = 0, NaN for NaN t (ln gives NaN)
                let xl = select(simd, t_zero, zero, simd.mul_f32s(t, ln_t));
                o.loss = simd.sub_f32s(xl, simd.mul_f32s(t, x));
            }
            if want.grad_target {
                // xlogy(g, t) masked to 0 at t = 0, plus g·t/t, plus (−g)·x
                let xg = select(simd, simd.equal_f32s(g, zero), zero, simd.mul_f32s(g, ln_t));
                let xg = select(simd, simd.equal_f32s(t, t), xg, simd.splat_f32s(f32::NAN));
                let d_self = select(simd, t_zero, zero, xg);
                let d_other = simd.div_f32s(simd.mul_f32s(g, t), t);
                o.grad_target = simd.add_f32s(simd.add_f32s(d_self, d_other), simd.mul_f32s(neg_g, x));
            }
        }
        if want.grad_input {
            o.grad_input = simd.mul_f32s(neg_g, t);
        }
        o
    }
}

/// `binary_cross_entropy`: `((t − 1)·max(log1p(−x), −100) − t·max(ln x, −100))·w` and its gradients
/// (the input one with PyTorch's `max(x·(1 − x), ε)` denominator).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BceOp {
    /// PyTorch's `EPSILON` rounded to the element type.
    pub(crate) eps: f32,
    /// Weight and `'mean'` division of the gradients.
    pub(crate) scaling: Scaling,
}

impl PointOp for BceOp {
    const CHECKS: bool = true;
    const PAIRS: bool = false;

    #[inline(always)]
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s> {
        let zero = simd.splat_f32s(0.0);
        let one = simd.splat_f32s(1.0);
        let Lanes { x, t, w, g, .. } = v;
        let valid = simd.and_m32s(in_unit(simd, x), in_unit(simd, t));
        let mut o = Outs { bad: select(simd, valid, zero, one), ..Outs::zero(simd) };
        if want.loss {
            let t_one = simd.equal_f32s(t, one);
            let hard = simd.or_m32s(simd.equal_f32s(t, zero), t_one);
            let soft = simd.xor_m32s(hard, simd.equal_f32s(one, one));
            let l = if simd.first_true_m32s(soft) == S::F32_LANES {
                // every target 0 or 1: the formula reduces, bit for bit, to −max(ln x, −100) where
                // t = 1 and −max(log1p(−x), −100) + 0 where t = 0 (the other term is a zero; adding
                // +0 gives its sign rule at x = −0), so one logarithm serves both
                let (v, u, r) = log1p_neg_unit_parts(simd, x);
                let ln = ln_f32s(simd, select(simd, t_one, x, u));
                let l1 = log1p_from_ln(simd, v, u, r, ln);
                let l = neg(simd, clamp_log(simd, select(simd, t_one, ln, l1)));
                select(simd, t_one, l, simd.add_f32s(l, zero))
            } else {
                let l1 = clamp_log(simd, log1p_neg_unit_f32s(simd, x));
                let l2 = clamp_log(simd, ln_f32s(simd, x));
                simd.sub_f32s(simd.mul_f32s(simd.sub_f32s(t, one), l1), simd.mul_f32s(t, l2))
            };
            o.loss = self.scaling.weigh(simd, l, w);
        }
        if want.grad_input {
            let d = simd.mul_f32s(simd.sub_f32s(one, x), x);
            let eps = simd.splat_f32s(self.eps);
            let d = select(simd, simd.less_than_f32s(d, eps), eps, d);
            let gi = simd.div_f32s(simd.mul_f32s(g, simd.sub_f32s(x, t)), d);
            o.grad_input = self.scaling.apply(simd, gi, w);
        }
        if want.grad_target {
            // −logit(x)·g, logit(x) = ln(x / (1 − x)) (+∞ at x = 1)
            let logit = ln_f32s(simd, simd.div_f32s(x, simd.sub_f32s(one, x)));
            let logit = select(simd, simd.equal_f32s(x, one), simd.splat_f32s(f32::INFINITY), logit);
            o.grad_target = self.scaling.apply(simd, simd.mul_f32s(neg(simd, logit), g), w);
        }
        o
    }
}

/// The largest `f32` whose exponential is finite (`exp` of the next one rounds to `+∞`).
const EXP_FINITE_MAX_F32: f32 = 88.722_83;

/// `binary_cross_entropy_with_logits`: `((1 − t)·x − lw·logσ(x))·w`, `lw = (p − 1)·t + 1`, and its
/// gradients, as PyTorch's CPU kernel and `FunctionsManual.cpp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BceLogitsOp {
    /// Whether a `pos_weight` operand is given.
    pub(crate) pos_weighted: bool,
    /// Weight and `'mean'` division of the gradients.
    pub(crate) scaling: Scaling,
}

impl PointOp for BceLogitsOp {
    const CHECKS: bool = false;
    const PAIRS: bool = false;

    #[inline(always)]
    fn call<S: Simd>(self, simd: S, want: Want, v: Lanes<S::f32s>) -> Outs<S::f32s> {
        let zero = simd.splat_f32s(0.0);
        let one = simd.splat_f32s(1.0);
        let mut o = Outs::zero(simd);
        let Lanes { x, t, w, p, g } = v;
        // e = exp(−|x|), one exponential for both σ and logσ
        let need_lsig = want.loss || (want.grad_target && self.pos_weighted);
        let e =
            if want.grad_input || need_lsig { exp_nonpos_f32s(simd, neg(simd, abs(simd, x))) } else { zero };
        // σ(x) = 1 / (1 + exp(−x)) as PyTorch's sigmoid for x ≥ 0 (the same exp(−x), so the same
        // bits); e / (1 + e) below (within an ulp or so of PyTorch's rounding), and 0 where PyTorch's
        // exp(−x) overflows (x < −88.72283: 1/∞)
        let sig = if want.grad_input {
            let pos = simd.greater_than_or_equal_f32s(x, zero);
            let s = simd.div_f32s(select(simd, pos, one, e), simd.add_f32s(one, e));
            select(simd, simd.less_than_f32s(x, simd.splat_f32s(-EXP_FINITE_MAX_F32)), zero, s)
        } else {
            zero
        };
        // logσ(±x) = min(±x, 0) − log1p(e)
        let lp = if need_lsig {
            let u = simd.add_f32s(one, e);
            // 1/u = σ(|x|): σ(x) itself for x ≥ 0 (the same exp(−x), so the same bits), 1 − σ(x)
            // below (relative error ≈ 2⁻²⁴; with |c| ≤ 2⁻²⁴ and a result ≥ 2⁻²⁴ that is under half an
            // ulp); a division when σ is not computed anyway
            let r = if want.grad_input {
                let pos = simd.greater_than_or_equal_f32s(x, zero);
                select(simd, pos, sig, simd.sub_f32s(one, sig))
            } else {
                simd.div_f32s(one, u)
            };
            log1p_f32s(simd, e, u, r)
        } else {
            zero
        };
        let lsig = simd.sub_f32s(min0(simd, x), lp);
        if want.loss {
            let a = simd.mul_f32s(simd.sub_f32s(one, t), x);
            let l = if self.pos_weighted {
                let lw = simd.add_f32s(simd.mul_f32s(simd.sub_f32s(p, one), t), one);
                simd.sub_f32s(a, simd.mul_f32s(lsig, lw))
            } else {
                simd.sub_f32s(a, lsig)
            };
            o.loss = self.scaling.weigh(simd, l, w);
        }
        if want.grad_input {
            let gi = if self.pos_weighted {
                let pt = simd.mul_f32s(p, t);
                let c = simd.sub_f32s(simd.add_f32s(pt, one), t);
                simd.mul_f32s(simd.sub_f32s(simd.mul_f32s(c, sig), pt), g)
            } else {
                simd.mul_f32s(simd.sub_f32s(sig, t), g)
            };
            o.grad_input = self.scaling.apply(simd, gi, w);
        }
        if want.grad_target {
            let gt = if self.pos_weighted {
                let lsig_neg = simd.sub_f32s(min0(simd, neg(simd, x)), lp);
                simd.mul_f32s(simd.sub_f32s(lsig_neg, simd.mul_f32s(lsig, p)), g)
            } else {
                simd.mul_f32s(neg(simd, x), g)
            };
            o.grad_target = self.scaling.apply(simd, gt, w);
        }
        o
    }
}

// ----------------------------------------------------------------------------------------------
// The driver.
// ----------------------------------------------------------------------------------------------

/// What becomes of the loss terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LossOut {
    /// Not computed.
    Skip,
    /// Returned elementwise (`Reduction::None`).
    Elements,
    /// Summed (each term rounded to the element type first).
    Sum,
}

impl LossOut {
    /// What a loss with `reduction` does with its terms (`Skip` when the loss is not wanted).
    pub(crate) fn of(wanted: bool, reduction: Reduction) -> LossOut {
        match (wanted, reduction) {
            (false, _) => LossOut::Skip,
            (true, Reduction::None) => LossOut::Elements,
            (true, _) => LossOut::Sum,
        }
    }
}

/// One fused elementwise computation over `len` elements.
pub(crate) struct Job<'a, T, K> {
    /// The formula.
    pub(crate) op: K,
    /// Number of elements (> 0).
    pub(crate) len: usize,
    /// Input.
    pub(crate) x: Operand<'a, T>,
    /// Target.
    pub(crate) t: Operand<'a, T>,
    /// Weight.
    pub(crate) w: Option<Operand<'a, T>>,
    /// `pos_weight`.
    pub(crate) p: Option<Operand<'a, T>>,
    /// Upstream gradient per element; `g_const` for every element when absent.
    pub(crate) g: Option<Operand<'a, T>>,
    /// The upstream gradient of every element when `g` is absent.
    pub(crate) g_const: f32,
    /// The loss.
    pub(crate) loss: LossOut,
    /// Whether the input gradient is computed.
    pub(crate) grad_input: bool,
    /// Whether the target gradient is computed.
    pub(crate) grad_target: bool,
}

impl<'a, T: Element, K: PointOp> Job<'a, T, K> {
    /// `op` over `x` and `t` (views of the same shape, `len` elements), computing `want` with the loss
    /// reduced as `reduction` says; no weights; upstream gradient 1.
    pub(crate) fn new(
        op: K,
        x: &ArrayViewD<'a, T>,
        t: &ArrayViewD<'a, T>,
        want: Want,
        reduction: Reduction,
    ) -> Self {
        Job {
            op,
            len: x.len(),
            x: Operand::of_view(x),
            t: Operand::of_view(t),
            w: None,
            p: None,
            g: None,
            g_const: 1.0,
            loss: LossOut::of(want.loss, reduction),
            grad_input: want.grad_input,
            grad_target: want.grad_target,
        }
    }

    /// `op` for [`Job::in_place`]: the input comes from the buffer given there (its shape is the
    /// target's); the loss, reduced as `reduction` says, and the input gradient are computed.
    pub(crate) fn for_in_place(op: K, t: &ArrayViewD<'a, T>, reduction: Reduction) -> Self {
        Job {
            op,
            len: t.len(),
            x: Operand::Slice(&[]),
            t: Operand::of_view(t),
            w: None,
            p: None,
            g: None,
            g_const: 1.0,
            loss: LossOut::of(true, reduction),
            grad_input: true,
            grad_target: false,
        }
    }

    /// With a weight and a `pos_weight` (views of the input's shape).
    pub(crate) fn weighted(self, w: Option<&ArrayViewD<'a, T>>, p: Option<&ArrayViewD<'a, T>>) -> Self {
        Job { w: w.map(Operand::of_view), p: p.map(Operand::of_view), ..self }
    }

    /// With the upstream gradient `g` per element, or `g_const` for every element.
    pub(crate) fn upstream(self, g: Option<&ArrayViewD<'a, T>>, g_const: T::Acc) -> Self {
        Job { g: g.map(Operand::of_view), g_const: g_const.f64() as f32, ..self }
    }

    /// Runs the job and returns its results as arrays of `shape` (the reduced loss divided by
    /// `divisor`), or `None` when the fast path does not apply (the type, or an input outside the
    /// loss's domain: the reference implementation then reports it).
    pub(crate) fn outputs(
        &self,
        op: &'static str,
        shape: &[usize],
        divisor: Option<usize>,
    ) -> Option<Result<Outputs<T>>> {
        let done = run_job(self, None)?;
        (!done.flagged).then(|| done.into_outputs(op, shape, divisor))
    }

    /// Runs the job for its domain check only: whether any element is outside the loss's domain
    /// ([`PointOp::CHECKS`]); `None` when the fast path does not apply to `T`. Build the job with
    /// [`Want::NOTHING`] so that nothing else is computed.
    pub(crate) fn any_invalid(&self) -> Option<bool> {
        run_job(self, None).map(|d| d.flagged)
    }

    /// Runs the job with the input read from `buf` (the input's data in standard layout; the job's
    /// own `x` operand is not used) and the input gradient written over it, tile by tile. Returns the
    /// loss (`sum / divisor` when reduced), or `None` when the fast path does not apply to `T` or an
    /// element is outside the domain — callers check [`Job::any_invalid`] first, since by then `buf`
    /// has been overwritten.
    pub(crate) fn in_place(
        &self,
        op: &'static str,
        buf: &mut [T],
        shape: &[usize],
        divisor: Option<usize>,
    ) -> Option<Result<Loss<T>>> {
        if !self.grad_input || self.loss == LossOut::Skip || buf.len() != self.len {
            return None;
        }
        let done = run_job(self, Some(buf))?;
        (!done.flagged).then(|| done.into_outputs(op, shape, divisor)?.loss.ok_or_else(|| internal(op)))
    }
}

/// The validated options shared by the two binary cross-entropies, in PyTorch's order of checks.
pub(crate) struct BinarySetup<'w, T: Element> {
    /// The reduction (`'batchmean'` rejected).
    pub(crate) reduction: Reduction,
    /// The input's shape (also the target's).
    pub(crate) shape: Vec<usize>,
    /// Its number of elements.
    pub(crate) n: usize,
    /// The weight broadcast into `shape`.
    pub(crate) weight: Option<ArrayViewD<'w, T>>,
    /// PyTorch divides the gradient by numel after the weight: `grad_input.div_(input.numel())`.
    pub(crate) grad_div: Option<T::Acc>,
}

impl<T: Element> BinarySetup<'_, T> {
    /// What the summed loss is divided by: the element count for `'mean'`.
    pub(crate) fn loss_divisor(&self) -> Option<usize> {
        (self.reduction == Reduction::Mean).then_some(self.n)
    }
}

/// Validates a binary cross-entropy call `op` on `input` and `target` shapes with `reduction` and
/// `weight`.
pub(crate) fn binary_setup<'w, T: Element>(
    op: &'static str,
    input: &[usize],
    target: &[usize],
    reduction: Reduction,
    weight: Option<&'w ArrayViewD<'_, T>>,
) -> Result<BinarySetup<'w, T>> {
    let reduction = reduction.reject_batchmean(op)?;
    let shape = input.to_vec();
    crate::base::shape::check_same_shape(op, "input", &shape, "target", target)?;
    let n = crate::base::shape::checked_numel(op, "input", &shape)?;
    let weight = match weight {
        Some(w) => Some(crate::base::shape::broadcast_into(op, "weight", w, "input", &shape)?),
        None => None,
    };
    let grad_div = (reduction == Reduction::Mean).then(|| T::Acc::c(n as f64));
    Ok(BinarySetup { reduction, shape, n, weight, grad_div })
}

/// Whether every element of `x` and `t` (of one length) lies in `[0, 1]` (NaN does not), checked on
/// the bits in parallel over fixed chunks: `None` when `T` is neither `f32` nor `bf16`.
///
/// A value is in `[0, 1]` exactly when its bits, read as an unsigned integer, are at most those of
/// `1.0` (the positive numbers up to 1, `+0`) or are those of `−0`.
pub(crate) fn all_in_unit<T: Element>(x: &[T], t: &[T]) -> Option<bool> {
    fn check<B: Copy + Into<u32> + Send + Sync>(x: &[B], t: &[B], one: u32, neg_zero: u32) -> bool {
        let ok = |s: &[B]| s.iter().fold(true, |acc, &b| acc & ((b.into() <= one) | (b.into() == neg_zero)));
        x.par_chunks(TASK).zip(t.par_chunks(TASK)).all(|(a, b)| ok(a) && ok(b))
    }
    if let (Some(a), Some(b)) = (T::as_f32(x), T::as_f32(t)) {
        let (a, b): (&[u32], &[u32]) = (pulp::bytemuck::cast_slice(a), pulp::bytemuck::cast_slice(b));
        return Some(check(a, b, 1f32.to_bits(), (-0f32).to_bits()));
    }
    if let (Some(a), Some(b)) = (T::as_bf16(x), T::as_bf16(t)) {
        let (a, b): (&[u16], &[u16]) = (pulp::bytemuck::cast_slice(a), pulp::bytemuck::cast_slice(b));
        return Some(check(a, b, half::bf16::ONE.to_bits().into(), half::bf16::NEG_ZERO.to_bits().into()));
    }
    None
}

/// The results of a [`Job`].
pub(crate) struct Done<T> {
    /// The elementwise loss (`LossOut::Elements`).
    loss_elems: Option<Vec<T>>,
    /// The sum of the rounded loss terms (`LossOut::Sum`).
    loss_sum: f64,
    loss: LossOut,
    grad_input: Option<Vec<T>>,
    grad_target: Option<Vec<T>>,
    /// Some input was outside the domain ([`PointOp::CHECKS`]); the results are meaningless.
    pub(crate) flagged: bool,
}

impl<T: Element> Done<T> {
    /// The results as arrays of `shape`; a reduced loss is `sum / divisor` (no division for `None`),
    /// the mean of nothing being NaN.
    fn into_outputs(self, op: &'static str, shape: &[usize], divisor: Option<usize>) -> Result<Outputs<T>> {
        let loss = match (self.loss, self.loss_elems) {
            (LossOut::Elements, Some(v)) => Some(Loss::Elementwise(to_array(op, v, shape)?)),
            (LossOut::Sum, _) => {
                let v = match divisor {
                    Some(d) => self.loss_sum / d as f64,
                    None => self.loss_sum,
                };
                Some(Loss::Scalar(T::from_acc(T::Acc::c(v))))
            }
            _ => None,
        };
        let array = |v| to_array(op, v, shape);
        Ok(Outputs {
            loss,
            grad_input: self.grad_input.map(array).transpose()?,
            grad_target: self.grad_target.map(array).transpose()?,
        })
    }
}

type Entry<T, K> = for<'j, 'a, 'b> fn(&'j Job<'a, T, K>, Option<&'b mut [T]>) -> Done<T>;

fn cast_fn<F: Copy + 'static, G: Copy + 'static>(f: F) -> Option<G> {
    (&f as &dyn Any).downcast_ref::<G>().copied()
}

/// Runs `job` (with the input read from and its gradient written into `in_place` when given), or
/// returns `None` when `T` is not `f32`, `f16` or `bf16`.
///
/// The generic `T` reaches the typed driver through a function-pointer downcast (`T` is `f32`
/// exactly when the downcast to `f32`'s entry succeeds), which needs no unsafe code.
fn run_job<T: Element, K: PointOp>(job: &Job<'_, T, K>, in_place: Option<&mut [T]>) -> Option<Done<T>> {
    let f = cast_fn::<Entry<f32, K>, Entry<T, K>>(drive::<f32, K>)
        .or_else(|| cast_fn::<Entry<half::bf16, K>, Entry<T, K>>(drive::<half::bf16, K>))
        .or_else(|| cast_fn::<Entry<half::f16, K>, Entry<T, K>>(drive::<half::f16, K>))?;
    Some(f(job, in_place))
}

// `drive` for every element type × formula, compiled in this crate: it inlines the whole task loop
// at every instruction set, and since it is `#[inline(never)]` the crates that call the losses link
// to these copies instead of compiling their own (see `compiled_here!` in `lib.rs`).
const _: () = {
    use half::{bf16, f16};
    #[used]
    #[allow(clippy::type_complexity)]
    static COMPILED_HERE: (
        (Entry<f32, KlOp>, Entry<bf16, KlOp>, Entry<f16, KlOp>),
        (Entry<f32, BceOp>, Entry<bf16, BceOp>, Entry<f16, BceOp>),
        (Entry<f32, BceLogitsOp>, Entry<bf16, BceLogitsOp>, Entry<f16, BceLogitsOp>),
    ) = (
        (drive::<f32, KlOp>, drive::<bf16, KlOp>, drive::<f16, KlOp>),
        (drive::<f32, BceOp>, drive::<bf16, BceOp>, drive::<f16, BceOp>),
        (drive::<f32, BceLogitsOp>, drive::<bf16, BceLogitsOp>, drive::<f16, BceLogitsOp>),
    );
};

/// One task's share of the outputs and what it returns.
struct Task<'o, E> {
    start: usize,
    len: usize,
    loss: Option<&'o mut [E]>,
    grad_input: Option<&'o mut [E]>,
    grad_target: Option<&'o mut [E]>,
    sum: f64,
    bad: bool,
}

#[inline(never)]
fn drive<E: FastElem, K: PointOp>(job: &Job<'_, E, K>, in_place: Option<&mut [E]>) -> Done<E> {
    let n = job.len;
    let mut loss = (job.loss == LossOut::Elements).then(|| E::zeros(n));
    // in place, the input buffer receives the input gradient (and holds the input until then)
    let is_in_place = in_place.is_some();
    let mut grad_input = if is_in_place { None } else { job.grad_input.then(|| E::zeros(n)) };
    let mut grad_target = job.grad_target.then(|| E::zeros(n));
    let mut lc = loss.as_deref_mut().map(|v| v.chunks_mut(TASK));
    let mut gic = match in_place {
        Some(buf) => Some(buf.chunks_mut(TASK)),
        None => grad_input.as_deref_mut().map(|v| v.chunks_mut(TASK)),
    };
    let mut gtc = grad_target.as_deref_mut().map(|v| v.chunks_mut(TASK));
    let mut tasks: Vec<Task<'_, E>> = (0..n.div_ceil(TASK))
        .map(|i| Task {
            start: i * TASK,
            len: TASK.min(n - i * TASK),
            loss: lc.as_mut().and_then(Iterator::next),
            grad_input: gic.as_mut().and_then(Iterator::next),
            grad_target: gtc.as_mut().and_then(Iterator::next),
            sum: 0.0,
            bad: false,
        })
        .collect();
    let k = Kernels::new();
    let pairs = PAIRS && E::DTYPE == DType::BF16 && PAIR_PATH.with(Cell::get);
    // f16 at AVX2: the task runs where F16C is enabled and converts in registers (`f16c::tile`)
    let f16c = cfg!(target_arch = "x86_64")
        && E::DTYPE == DType::F16
        && k.isa() == super::Isa::Avx2
        && F16C_PATH.with(Cell::get);
    tasks.par_iter_mut().for_each(|task| {
        let run = TaskRun {
            job,
            in_place: is_in_place,
            pairs,
            f16c,
            start: task.start,
            len: task.len,
            loss: task.loss.as_deref_mut(),
            grad_input: task.grad_input.as_deref_mut(),
            grad_target: task.grad_target.as_deref_mut(),
        };
        (task.sum, task.bad) = E::run_task(k, run);
    });
    // task sums in task order: the same for any number of threads
    let loss_sum = tasks.iter().fold(0.0, |acc, t| acc + t.sum);
    let flagged = tasks.iter().any(|t| t.bad);
    drop(tasks);
    Done { loss_elems: loss, loss_sum, loss: job.loss, grad_input, grad_target, flagged }
}

/// One task, run inside the SIMD context.
pub(crate) struct TaskRun<'j, 'a, 'o, E, K> {
    job: &'j Job<'a, E, K>,
    /// `grad_input` holds the input: read each tile of `x` from it before overwriting the tile.
    in_place: bool,
    /// Whether tiles try [`pair_tile`] first (`bf16`).
    pairs: bool,
    /// Whether tiles try `f16c::tile` first (`f16`). Only set when the task runs through
    /// [`super::run_avx2_f16c`], where F16C is enabled.
    f16c: bool,
    start: usize,
    len: usize,
    loss: Option<&'o mut [E]>,
    grad_input: Option<&'o mut [E]>,
    grad_target: Option<&'o mut [E]>,
}

/// The output tile for a task's output slice `out`: the slice itself for a requested `f32`
/// output, else `scratch` (rounded into a half-type output afterwards, or never read).
#[inline(always)]
fn out_tile<'s, E: FastElem>(out: Option<&'s mut [E]>, scratch: &'s mut [f32]) -> &'s mut [f32] {
    match out.and_then(E::as_f32_mut) {
        Some(direct) => direct,
        None => scratch,
    }
}

/// `(s + x, e + err)` where `err` is the exact rounding error of `s + x` (Knuth's TwoSum).
#[inline(always)]
fn two_sum<S: Simd>(simd: S, s: S::f32s, e: S::f32s, x: S::f32s) -> (S::f32s, S::f32s) {
    let n = simd.add_f32s(s, x);
    let bp = simd.sub_f32s(n, s);
    let err = simd.add_f32s(simd.sub_f32s(s, simd.sub_f32s(n, bp)), simd.sub_f32s(x, bp));
    (n, simd.add_f32s(e, err))
}

/// Sum of `v` in `f64`, in a fixed order.
///
/// Each vector lane keeps an `f32` running sum and, by TwoSum, the exact rounding error of every
/// addition (accumulated in `f32` too); both are widened at the end. For the ≤ 64 values a lane
/// sees in a tile that is exact to about 2⁻⁴⁰ of `Σ|v|`. When a lane's sum is not finite (an
/// infinite or NaN term, or an `f32` overflow) the tile is summed again in plain `f64`.
#[inline(always)]
fn sum_tile<S: Simd>(simd: S, v: &[f32]) -> f64 {
    let (head, tail) = S::as_simd_f32s(v);
    let mut s = simd.splat_f32s(0.0);
    let mut e = simd.splat_f32s(0.0);
    for &x in head {
        (s, e) = two_sum(simd, s, e, x);
    }
    if !tail.is_empty() {
        (s, e) = two_sum(simd, s, e, simd.partial_load_f32s(tail));
    }
    sum_finish::<S>(s, e).unwrap_or_else(|| sum_f64(v))
}

/// `v` summed in plain `f64`, in order (the fallback of a tile whose `f32` lane sums are not finite).
fn sum_f64(v: &[f32]) -> f64 {
    v.iter().fold(0.0, |acc, &x| acc + x as f64)
}

/// [`sum_tile`]'s result from its lane sums `s` and errors `e`; `None` when it is not finite (the
/// caller then sums the tile again in plain `f64`).
#[inline(always)]
fn sum_finish<S: Simd>(s: S::f32s, e: S::f32s) -> Option<f64> {
    let total = hsum_f64::<S>(s);
    total.is_finite().then(|| total + hsum_f64::<S>(e))
}

impl<E: FastElem, K: PointOp> WithSimd for TaskRun<'_, '_, '_, E, K> {
    type Output = (f64, bool);

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f64, bool) {
        let TaskRun { job, in_place, pairs, f16c, start, len, mut loss, mut grad_input, mut grad_target } =
            self;
        let want = Want {
            loss: job.loss != LossOut::Skip,
            grad_input: job.grad_input,
            grad_target: job.grad_target,
        };
        // from the thread's pool (every tile is written before it is read)
        let mut scratch = super::alloc::Scratch::any(10 * TILE);
        let mut bufs = scratch.chunks_exact_mut(TILE);
        let mut next = || bufs.next().unwrap_or_default();
        let (bx, bt, bw, bp, bg, bl, bgi, bgt) =
            (next(), next(), next(), next(), next(), next(), next(), next());
        // the tiles of absent operands: 1 for `w` and `p`, the upstream constant for `g`
        let (ones, gfill) = (next(), next());
        ones.fill(1.0);
        gfill.fill(job.g_const);
        let mut rounded = [E::default(); TILE];
        let mut bad = simd.splat_f32s(0.0);
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut bad_f16c = false;
        #[cfg(not(target_arch = "x86_64"))]
        let _ = f16c;
        let mut sum = 0.0f64;
        let mut off = 0;
        while off < len {
            let m = TILE.min(len - off);
            let at = start + off;
            #[cfg(target_arch = "x86_64")]
            if f16c {
                let range = off..off + m;
                let (w, p, g) = side_tiles(
                    job,
                    at,
                    (&ones[..m], &gfill[..m]),
                    (&mut bw[..m], &mut bp[..m], &mut bg[..m]),
                );
                let ht = f16c::HalfTile {
                    x: (!in_place).then_some(&job.x),
                    at,
                    loss: loss.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_input: grad_input.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_target: grad_target.as_deref_mut().and_then(|l| l.get_mut(range)),
                    w,
                    p,
                    g,
                    terms: &mut bl[..m],
                };
                // SAFETY: `f16c` is only set for tasks run through `run_avx2_f16c`, so this code runs
                // where the CPU has F16C, the requirement of `f16c::tile`.
                if let Some((b, s)) = unsafe { f16c::tile(simd, job, want, ht) } {
                    bad_f16c |= b;
                    sum += s;
                    off += m;
                    continue;
                }
            }
            if pairs && K::PAIRS {
                // bf16: whole groups of 2·lanes converted in registers
                let range = off..off + m;
                let pt = PairTile {
                    x: match in_place {
                        true => None,
                        false => Some(&job.x),
                    },
                    at,
                    len: m,
                    loss: loss.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_input: grad_input.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_target: grad_target.as_deref_mut().and_then(|l| l.get_mut(range)),
                };
                let scratch = PairScratch {
                    x: &mut *bx,
                    t: &mut *bt,
                    w: &mut *bw,
                    p: &mut *bp,
                    g: &mut *bg,
                    terms: &mut *bl,
                };
                if let Some((done, b, s)) = pair_tile(simd, job, want, pt, scratch) {
                    bad = simd.add_f32s(bad, b);
                    sum += s;
                    off += done;
                    continue;
                }
            }
            let range = off..off + m;
            let mut gio = grad_input.as_deref_mut().and_then(|l| l.get_mut(range.clone()));
            let (w, p, g) =
                side_tiles(job, at, (&ones[..m], &gfill[..m]), (&mut bw[..m], &mut bp[..m], &mut bg[..m]));
            let ins = Ins {
                t: job.t.tile(at, &mut bt[..m]),
                w,
                p,
                g,
                g_const: job.g.is_none().then_some(job.g_const),
            };
            let xg = match (in_place, gio.as_deref_mut()) {
                (true, Some(io)) => match E::as_f32_mut(io) {
                    // f32: each vector read, then its gradient written over it
                    Some(direct) => XGrad::InPlace(direct),
                    None => {
                        // the tile's input, widened into L1 before its gradient overwrites it
                        E::load_tile(io, &mut bx[..m]);
                        XGrad::Split { x: &bx[..m], grad_input: &mut bgi[..m] }
                    }
                },
                (_, gi) => {
                    XGrad::Split { x: job.x.tile(at, &mut bx[..m]), grad_input: out_tile(gi, &mut bgi[..m]) }
                }
            };
            let mut lo = loss.as_deref_mut().and_then(|l| l.get_mut(range.clone()));
            let mut gto = grad_target.as_deref_mut().and_then(|l| l.get_mut(range.clone()));
            let outs = OutTiles {
                loss: match job.loss {
                    LossOut::Skip | LossOut::Sum => &mut bl[..m],
                    LossOut::Elements => out_tile(lo.as_deref_mut(), &mut bl[..m]),
                },
                grad_target: out_tile(gto.as_deref_mut(), &mut bgt[..m]),
            };
            // f32 terms of a reduced loss are summed in the loop; half-type terms are rounded to
            // the element type first, a tile at a time (below): rounding in the loop was slower
            // (f16 `kl_div` in place 52 -> 64 ms at 1 thread, the bits emulated without F16C)
            let in_loop = E::DTYPE == DType::F32 && job.loss == LossOut::Sum;
            let tile = Tile { xg, ins, outs };
            let r = match in_loop {
                true => fused::<S, K, true>(simd, job.op, want, tile),
                false => fused::<S, K, false>(simd, job.op, want, tile),
            };
            bad = simd.add_f32s(bad, r.bad);
            if in_loop {
                let terms = &bl[..m];
                sum += sum_finish::<S>(r.sum, r.err).unwrap_or_else(|| sum_f64(terms));
            }
            // half types: round the scratch tiles into the outputs
            if E::DTYPE != DType::F32 {
                if let Some(o) = lo {
                    E::store_tile(&bl[..m], o);
                }
                if let Some(o) = gio {
                    E::store_tile(&bgi[..m], o);
                }
                if let Some(o) = gto {
                    E::store_tile(&bgt[..m], o);
                }
            }
            if job.loss == LossOut::Sum && !in_loop {
                let terms = &mut bl[..m];
                // each term rounded to the element type, as the reference sums them
                E::round_tile(terms, &mut rounded);
                sum += sum_tile(simd, terms);
            }
            off += m;
        }
        let lanes: &[f32] = pulp::bytemuck::cast_slice(core::slice::from_ref(&bad));
        (sum, bad_f16c || lanes.iter().any(|&b| b != 0.0))
    }
}

/// The `f32` tiles of `w`, `p` and `g` for the tile at `at` (of `scratch`'s length): `consts` (tiles of 1
/// and of the upstream constant) for absent operands, else the operand's tile (its data for `f32`, else
/// filled into `scratch`).
#[inline(always)]
#[allow(clippy::type_complexity)]
fn side_tiles<'s, E: FastElem, K>(
    job: &'s Job<'_, E, K>,
    at: usize,
    consts: (&'s [f32], &'s [f32]),
    scratch: (&'s mut [f32], &'s mut [f32], &'s mut [f32]),
) -> (&'s [f32], &'s [f32], &'s [f32]) {
    let (ones, gfill) = consts;
    let (bw, bp, bg) = scratch;
    (
        job.w.as_ref().map_or(ones, |o| o.tile(at, bw)),
        job.p.as_ref().map_or(ones, |o| o.tile(at, bp)),
        job.g.as_ref().map_or(gfill, |o| o.tile(at, bg)),
    )
}

/// The input tiles of one call other than `x`. Absent operands are tiles of their constant (1 for
/// `w` and `p`, the upstream constant for `g`), so the loop has no branch per vector.
struct Ins<'a> {
    t: &'a [f32],
    w: &'a [f32],
    p: &'a [f32],
    g: &'a [f32],
    /// The upstream constant when `g` is absent (`g` is then a tile of it).
    g_const: Option<f32>,
}

/// Where a tile's `x` comes from and its input gradient goes.
enum XGrad<'a> {
    /// Separate tiles (an unrequested gradient's tile is scratch, written and never read).
    Split { x: &'a [f32], grad_input: &'a mut [f32] },
    /// One tile: each vector of `x` is read, then its gradient written over it (the in-place
    /// calls on `f32`).
    InPlace(&'a mut [f32]),
}

/// The other output tiles of one call (unrequested ones are scratch, neither written nor read).
struct OutTiles<'a> {
    loss: &'a mut [f32],
    grad_target: &'a mut [f32],
}

/// Everything one call of [`fused`] reads and writes.
struct Tile<'a> {
    xg: XGrad<'a>,
    ins: Ins<'a>,
    outs: OutTiles<'a>,
}

/// What [`fused`] returns: the lane-wise sum of `bad` (0 when nothing is out of domain) and, when
/// the loss terms were summed in the loop, their lane sums and TwoSum errors.
struct Fused<V> {
    bad: V,
    sum: V,
    err: V,
}

/// Runs `op` over one tile. With `ACC` the loss terms are also summed as [`sum_tile`] sums them
/// (same order, same bits), without a second pass over the tile.
///
/// The training calls (loss and input gradient) get their own copy of the loop with `want`
/// constant, so the formula's branches on it vanish.
#[inline(always)]
fn fused<S: Simd, K: PointOp, const ACC: bool>(simd: S, op: K, want: Want, tile: Tile<'_>) -> Fused<S::f32s> {
    match (want == Want::LOSS_AND_INPUT_GRAD, tile.ins.g_const) {
        // (a scalar upstream gradient then stays in a register)
        (true, Some(c)) => {
            fused_loop::<S, K, ACC>(simd, op, Want::LOSS_AND_INPUT_GRAD, tile, Some(simd.splat_f32s(c)))
        }
        (true, None) => fused_loop::<S, K, ACC>(simd, op, Want::LOSS_AND_INPUT_GRAD, tile, None),
        (false, _) => fused_loop::<S, K, ACC>(simd, op, want, tile, None),
    }
}

/// One vector of [`fused_loop`]: stores the loss and target gradient, accumulates, returns the
/// input gradient.
#[inline(always)]
fn point<S: Simd, K: PointOp, const ACC: bool>(
    simd: S,
    op: K,
    want: Want,
    v: Lanes<S::f32s>,
    lo: &mut S::f32s,
    gto: &mut S::f32s,
    acc: &mut Fused<S::f32s>,
) -> S::f32s {
    let r = op.call(simd, want, v);
    // (constant in the training copy of the loop: no store of an unrequested result there)
    if want.loss {
        *lo = r.loss;
    }
    if want.grad_target {
        *gto = r.grad_target;
    }
    if ACC {
        (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, r.loss);
    }
    if K::CHECKS {
        acc.bad = simd.add_f32s(acc.bad, r.bad);
    }
    r.grad_input
}

/// [`fused`]'s loop: every operand and output is a tile of the same length, zipped.
#[inline(always)]
fn fused_loop<S: Simd, K: PointOp, const ACC: bool>(
    simd: S,
    op: K,
    want: Want,
    tile: Tile<'_>,
    gc: Option<S::f32s>,
) -> Fused<S::f32s> {
    let Tile { xg, ins, outs } = tile;
    let (th, tt) = S::as_simd_f32s(ins.t);
    let (wh, wt) = S::as_simd_f32s(ins.w);
    let (ph, pt) = S::as_simd_f32s(ins.p);
    let (gh, gt) = S::as_simd_f32s(ins.g);
    let (loh, lot) = S::as_mut_simd_f32s(outs.loss);
    let (gth, gtt) = S::as_mut_simd_f32s(outs.grad_target);
    let z = simd.splat_f32s(0.0);
    let mut acc = Fused { bad: z, sum: z, err: z };
    let heads = th.iter().zip(wh).zip(ph).zip(gh).zip(loh.iter_mut().zip(gth.iter_mut()));
    let (xt, git) = match xg {
        XGrad::Split { x, grad_input } => {
            let (xh, xt) = S::as_simd_f32s(x);
            let (gih, git) = S::as_mut_simd_f32s(grad_input);
            for ((&x, gi), ((((&t, &w), &p), &g), (lo, gto))) in xh.iter().zip(gih).zip(heads) {
                let g = gc.unwrap_or(g);
                *gi = point::<S, K, ACC>(simd, op, want, Lanes { x, t, w, p, g }, lo, gto, &mut acc);
            }
            (simd.partial_load_f32s(xt), git)
        }
        XGrad::InPlace(xio) => {
            let (xh, xt) = S::as_mut_simd_f32s(xio);
            for (xo, ((((&t, &w), &p), &g), (lo, gto))) in xh.iter_mut().zip(heads) {
                let v = Lanes { x: *xo, t, w, p, g: gc.unwrap_or(g) };
                *xo = point::<S, K, ACC>(simd, op, want, v, lo, gto, &mut acc);
            }
            (simd.partial_load_f32s(xt), xt)
        }
    };
    if !git.is_empty() {
        // the partial vector: masked loads fill the missing lanes with 0, which every formula accepts
        let v = Lanes {
            x: xt,
            t: simd.partial_load_f32s(tt),
            w: simd.partial_load_f32s(wt),
            p: simd.partial_load_f32s(pt),
            g: gc.unwrap_or(simd.partial_load_f32s(gt)),
        };
        let r = op.call(simd, want, v);
        simd.partial_store_f32s(git, r.grad_input);
        if want.loss {
            simd.partial_store_f32s(lot, r.loss);
        }
        if want.grad_target {
            simd.partial_store_f32s(gtt, r.grad_target);
        }
        if ACC {
            // the stored terms read back, missing lanes 0, as `sum_tile` reads them
            (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, simd.partial_load_f32s(lot));
        }
        if K::CHECKS {
            acc.bad = simd.add_f32s(acc.bad, r.bad);
        }
    }
    acc
}

// ----------------------------------------------------------------------------------------------
// bf16 in registers.
// ----------------------------------------------------------------------------------------------

/// Whether `bf16` jobs take [`pair_tile`] (the pair layout assumes a little-endian CPU).
const PAIRS: bool = cfg!(target_endian = "little");

/// One operand of [`pair_tile`], per group of `2·lanes` elements.
enum PairIn<'a, S: Simd> {
    /// `bf16` pairs: one `u32` vector per group ([`widen_bf16_pairs`]).
    Pairs(&'a [S::u32s]),
    /// `f32` values split per group: vector `2k` holds the group's elements that sit in the low
    /// halves of the pairs, vector `2k + 1` those in the high halves ([`split_pairs`]).
    Split(&'a [S::f32s]),
    /// The same value everywhere (an absent operand).
    Const(S::f32s),
}

impl<S: Simd> PairIn<'_, S> {
    /// Group `k`'s two vectors.
    #[inline(always)]
    fn get(&self, simd: S, k: usize) -> (S::f32s, S::f32s) {
        match self {
            PairIn::Pairs(v) => widen_bf16_pairs(simd, v.get(k).copied().unwrap_or(simd.splat_u32s(0))),
            PairIn::Split(v) => {
                let z = simd.splat_f32s(0.0);
                (v.get(2 * k).copied().unwrap_or(z), v.get(2 * k + 1).copied().unwrap_or(z))
            }
            PairIn::Const(c) => (*c, *c),
        }
    }
}

/// Reorders `v` (whole groups of `2·lanes` values) into the [`PairIn::Split`] layout: within each
/// group, the even-indexed values (the low halves of the pairs) first, then the odd-indexed ones.
#[inline(always)]
fn split_pairs(v: &mut [f32], lanes: usize) {
    let mut tmp = [0f32; 64];
    for group in v.chunks_exact_mut(2 * lanes) {
        let tmp = &mut tmp[..group.len()];
        tmp.copy_from_slice(group);
        let (lo, hi) = group.split_at_mut(lanes);
        for ((l, h), pair) in lo.iter_mut().zip(hi).zip(tmp.chunks_exact(2)) {
            *l = pair[0];
            *h = pair[1];
        }
    }
}

/// `bf16` data as pair vectors, or `None` when it is not 4-byte aligned or not whole vectors.
#[inline(always)]
fn as_pairs<S: Simd>(b: &[half::bf16]) -> Option<&[S::u32s]> {
    let u: &[u32] = pulp::bytemuck::try_cast_slice(b).ok()?;
    let (head, tail) = S::as_simd_u32s(u);
    tail.is_empty().then_some(head)
}

/// `bf16` output data as pair vectors, as [`as_pairs`].
#[inline(always)]
fn as_pairs_mut<S: Simd>(b: &mut [half::bf16]) -> Option<&mut [S::u32s]> {
    let u: &mut [u32] = pulp::bytemuck::try_cast_slice_mut(b).ok()?;
    let (head, tail) = S::as_mut_simd_u32s(u);
    tail.is_empty().then_some(head)
}

/// The first `n` elements of an output (if requested) as pair vectors; `None` when that is not
/// possible ([`as_pairs`]).
#[inline(always)]
fn out_pairs<S: Simd, E: FastElem>(o: Option<&mut [E]>, n: usize) -> Option<Option<&mut [S::u32s]>> {
    match o {
        Some(o) => Some(Some(as_pairs_mut::<S>(E::as_bf16_mut(o.get_mut(..n)?)?)?)),
        None => Some(None),
    }
}

/// Operand `op`'s elements `at .. at + scratch.len()` for [`pair_tile`]: `bf16` data as pairs, other
/// sources filled into `scratch` in the split layout.
#[inline(always)]
fn pair_in<'s, S: Simd, E: FastElem>(
    op: &'s Operand<'_, E>,
    at: usize,
    scratch: &'s mut [f32],
) -> Option<PairIn<'s, S>> {
    let n = scratch.len();
    match op {
        Operand::Slice(s) => Some(PairIn::Pairs(as_pairs::<S>(E::as_bf16(s.get(at..at + n)?)?)?)),
        Operand::Periodic { block, inner } => {
            fill_periodic(block, *inner, at, scratch);
            split_pairs(scratch, S::F32_LANES);
            Some(PairIn::Split(S::as_simd_f32s(scratch).0))
        }
    }
}

/// An optional operand for [`pair_tile`] (`c` everywhere when absent).
#[inline(always)]
fn pair_opt<'s, S: Simd, E: FastElem>(
    simd: S,
    op: Option<&'s Operand<'_, E>>,
    at: usize,
    scratch: &'s mut [f32],
    c: f32,
) -> Option<PairIn<'s, S>> {
    match op {
        Some(op) => pair_in(op, at, scratch),
        None => Some(PairIn::Const(simd.splat_f32s(c))),
    }
}

/// One tile's place in the job for [`pair_tile`]: the outputs are the task's slices for this tile.
struct PairTile<'j, 'a, 'o, E> {
    /// The input operand, `None` when it is read from `grad_input` (in place).
    x: Option<&'j Operand<'a, E>>,
    /// The tile's first element in the job.
    at: usize,
    /// The tile's length.
    len: usize,
    loss: Option<&'o mut [E]>,
    grad_input: Option<&'o mut [E]>,
    grad_target: Option<&'o mut [E]>,
}

/// The `f32` scratch tiles of [`pair_tile`] (of [`TILE`] elements each).
struct PairScratch<'s> {
    x: &'s mut [f32],
    t: &'s mut [f32],
    w: &'s mut [f32],
    p: &'s mut [f32],
    g: &'s mut [f32],
    /// The rounded loss terms, for a summed loss.
    terms: &'s mut [f32],
}

/// Runs `job`'s formula over the whole groups of `2·lanes` elements at the start of a `bf16` tile,
/// converting in registers: each `u32` vector of `bf16` pairs is widened into two `f32` vectors
/// ([`widen_bf16_pairs`]), the formula runs on each, and the results are rounded and packed back
/// ([`narrow_bf16_pairs`]) straight into the outputs — no scratch tile for the `bf16` data. Every
/// element's results are the bits of the scratch-tile path (the same formula on the same `f32`
/// values, the same rounding); a summed loss adds the same rounded terms in another order within the
/// tile (the TwoSum tile sum is exact to about 2⁻⁴⁰ of the terms' magnitude either way).
///
/// Returns the number of elements done (a multiple of `2·lanes`, at least one group), the lane-wise
/// `bad` sum and the tile's loss sum; `None` when the tile is not handled here (not `bf16`, data not
/// 4-byte aligned, or shorter than a group): the caller then takes the scratch-tile path.
#[inline(always)]
fn pair_tile<S: Simd, E: FastElem, K: PointOp>(
    simd: S,
    job: &Job<'_, E, K>,
    want: Want,
    tile: PairTile<'_, '_, '_, E>,
    scratch: PairScratch<'_>,
) -> Option<(usize, S::f32s, f64)> {
    let group = 2 * S::F32_LANES;
    let n = tile.len / group * group;
    if n == 0 {
        return None;
    }
    let at = tile.at;
    let gio = out_pairs::<S, E>(tile.grad_input, n)?;
    let gto = out_pairs::<S, E>(tile.grad_target, n)?;
    let lo = if job.loss == LossOut::Elements { out_pairs::<S, E>(tile.loss, n)? } else { None };
    let x = match tile.x {
        Some(op) => Some(pair_in::<S, E>(op, at, &mut scratch.x[..n])?),
        None if gio.is_some() => None,
        None => return None,
    };
    let t = pair_in::<S, E>(&job.t, at, &mut scratch.t[..n])?;
    let w = pair_opt::<S, E>(simd, job.w.as_ref(), at, &mut scratch.w[..n], 1.0)?;
    let p = pair_opt::<S, E>(simd, job.p.as_ref(), at, &mut scratch.p[..n], 1.0)?;
    let g = pair_opt::<S, E>(simd, job.g.as_ref(), at, &mut scratch.g[..n], job.g_const)?;
    let sum_terms = job.loss == LossOut::Sum;
    let terms = S::as_mut_simd_f32s(&mut scratch.terms[..n]).0;
    let z = simd.splat_f32s(0.0);
    let mut acc = Fused { bad: z, sum: z, err: z };
    let ins = PairIns { x, t, w, p, g };
    let outs = PairOuts { lo, gio, gto, terms };
    // the training calls get a copy of the loop with `want` constant, as in `fused`
    if want == Want::LOSS_AND_INPUT_GRAD {
        pair_loop(simd, job.op, Want::LOSS_AND_INPUT_GRAD, sum_terms, n / group, ins, outs, &mut acc);
    } else {
        pair_loop(simd, job.op, want, sum_terms, n / group, ins, outs, &mut acc);
    }
    let sum = match sum_terms {
        true => sum_finish::<S>(acc.sum, acc.err).unwrap_or_else(|| sum_f64(&scratch.terms[..n])),
        false => 0.0,
    };
    #[cfg(test)]
    tests::PAIR_ELEMENTS.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    Some((n, acc.bad, sum))
}

/// The operands of [`pair_loop`] (`x` `None`: read from the input gradient's pairs, in place).
struct PairIns<'a, S: Simd> {
    x: Option<PairIn<'a, S>>,
    t: PairIn<'a, S>,
    w: PairIn<'a, S>,
    p: PairIn<'a, S>,
    g: PairIn<'a, S>,
}

/// The outputs of [`pair_loop`]: requested ones as pair vectors, and the rounded loss terms.
struct PairOuts<'a, S: Simd> {
    lo: Option<&'a mut [S::u32s]>,
    gio: Option<&'a mut [S::u32s]>,
    gto: Option<&'a mut [S::u32s]>,
    terms: &'a mut [S::f32s],
}

/// [`pair_tile`]'s loop over `groups` groups; a summed loss's rounded terms are stored and added
/// to `acc` in the order `sum_tile` would read them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pair_loop<S: Simd, K: PointOp>(
    simd: S,
    op: K,
    want: Want,
    sum_terms: bool,
    groups: usize,
    ins: PairIns<'_, S>,
    outs: PairOuts<'_, S>,
    acc: &mut Fused<S::f32s>,
) {
    let PairIns { x, t, w, p, g } = ins;
    let PairOuts { mut lo, mut gio, mut gto, terms } = outs;
    for k in 0..groups {
        let (x0, x1) = match &x {
            Some(x) => x.get(simd, k),
            None => widen_bf16_pairs(
                simd,
                gio.as_ref().and_then(|v| v.get(k)).copied().unwrap_or(simd.splat_u32s(0)),
            ),
        };
        let (t0, t1) = t.get(simd, k);
        let (w0, w1) = w.get(simd, k);
        let (p0, p1) = p.get(simd, k);
        let (g0, g1) = g.get(simd, k);
        let r0 = op.call(simd, want, Lanes { x: x0, t: t0, w: w0, p: p0, g: g0 });
        let r1 = op.call(simd, want, Lanes { x: x1, t: t1, w: w1, p: p1, g: g1 });
        if let Some(o) = lo.as_mut().and_then(|v| v.get_mut(k)) {
            *o = narrow_bf16_pairs(simd, r0.loss, r1.loss);
        }
        if sum_terms {
            let l0 = simd.transmute_f32s_u32s(round_bf16_bits(simd, r0.loss));
            let l1 = simd.transmute_f32s_u32s(round_bf16_bits(simd, r1.loss));
            (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, l0);
            (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, l1);
            if let Some(o) = terms.get_mut(2 * k) {
                *o = l0;
            }
            if let Some(o) = terms.get_mut(2 * k + 1) {
                *o = l1;
            }
        }
        if let Some(o) = gio.as_mut().and_then(|v| v.get_mut(k)) {
            *o = narrow_bf16_pairs(simd, r0.grad_input, r1.grad_input);
        }
        if let Some(o) = gto.as_mut().and_then(|v| v.get_mut(k)) {
            *o = narrow_bf16_pairs(simd, r0.grad_target, r1.grad_target);
        }
        if K::CHECKS {
            acc.bad = simd.add_f32s(acc.bad, simd.add_f32s(r0.bad, r1.bad));
        }
    }
}

// ----------------------------------------------------------------------------------------------
// f16 in registers through F16C (x86-64).
// ----------------------------------------------------------------------------------------------

/// `f16` tiles converted in registers: eight values per `vcvtph2ps` load and per `vcvtps2ph` store, so
/// the formula reads the `f16` data and writes the `f16` results directly, without the `f32` scratch
/// tiles and the separate widening, narrowing and term-rounding passes of the other path.
///
/// (`bf16` through the same loop — a zero extension and a shift to widen, the bit rounding and a pack to
/// narrow — was slower than its scratch tiles at 1 thread: BCE in place 83 → 90–94 ms, BCE with logits
/// 114 → 120 ms; the conversions are several instructions each there, and the loop runs short of registers.)
///
/// It runs only inside [`super::run_avx2_f16c`] (AVX2 + FMA + F16C, 8 lanes). Every element's results
/// are the scratch-tile path's bits: the same exact widening, the same formula on the same `f32`
/// values, the same rounding to nearest even; a summed loss adds the same rounded terms in the same
/// order (tested).
#[cfg(target_arch = "x86_64")]
mod f16c {
    use core::any::TypeId;
    use std::arch::x86_64::{
        __m128i, __m256, _MM_FROUND_TO_NEAREST_INT, _mm_loadu_si128, _mm_storeu_si128, _mm256_cvtph_ps,
        _mm256_cvtps_ph,
    };

    use half::f16;
    use pulp::f32x8;
    use pulp::x86::V3;

    use super::{
        FastElem, Fused, Job, Lanes, LossOut, Operand, PointOp, Simd, Want, sum_f64, sum_finish, two_sum,
    };

    /// One tile of an `f16` job: where its operands come from and its results go.
    pub(super) struct HalfTile<'j, 'a, 'o, E> {
        /// The input operand, `None` when it is read from `grad_input` (in place).
        pub(super) x: Option<&'j Operand<'a, E>>,
        /// The tile's first element in the job.
        pub(super) at: usize,
        /// The task's output slices for this tile (`loss` only read for per-element losses).
        pub(super) loss: Option<&'o mut [E]>,
        pub(super) grad_input: Option<&'o mut [E]>,
        pub(super) grad_target: Option<&'o mut [E]>,
        /// The `f32` tiles of weight, `pos_weight` and upstream gradient (constants when absent); their
        /// length is the tile's.
        pub(super) w: &'j [f32],
        pub(super) p: &'j [f32],
        pub(super) g: &'j [f32],
        /// Scratch of the tile's length for the rounded loss terms (the non-finite sum's fallback).
        pub(super) terms: &'j mut [f32],
    }

    /// Eight `f16` widened (exact).
    #[inline(always)]
    fn load(h: &[f16; 8]) -> f32x8 {
        // SAFETY: `h` is 16 readable bytes, what the unaligned 128-bit load reads. F16C is enabled where
        // this runs (`tile`'s contract).
        let v: __m256 = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast::<__m128i>())) };
        pulp::cast(v)
    }

    /// Eight values rounded to `f16` (nearest even, as `f16::from_f32`).
    #[inline(always)]
    fn store(v: f32x8, h: &mut [f16; 8]) {
        // SAFETY: `h` is 16 writable bytes, what the unaligned 128-bit store writes; F16C as in `load`.
        unsafe {
            let r = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(pulp::cast::<f32x8, __m256>(v));
            _mm_storeu_si128(h.as_mut_ptr().cast::<__m128i>(), r);
        }
    }

    /// Eight values rounded to `f16` and widened back.
    #[inline(always)]
    fn round(v: f32x8) -> f32x8 {
        // SAFETY: register operations only; F16C as in `load`.
        let r: __m256 = unsafe {
            _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(pulp::cast::<f32x8, __m256>(v)))
        };
        pulp::cast(r)
    }

    /// The first `n` (< 8) values of `h`, zeros after.
    #[inline(always)]
    fn load_part(h: &[f16]) -> f32x8 {
        let mut pad = [f16::ZERO; 8];
        let n = h.len().min(8);
        pad[..n].copy_from_slice(&h[..n]);
        load(&pad)
    }

    /// The first `h.len()` (< 8) lanes of `v` rounded into `h`.
    #[inline(always)]
    fn store_part(v: f32x8, h: &mut [f16]) {
        let mut pad = [f16::ZERO; 8];
        store(v, &mut pad);
        let n = h.len().min(8);
        h[..n].copy_from_slice(&pad[..n]);
    }

    /// `job`'s formula over one `f16` tile with the data converted in registers. Returns whether a
    /// lane was out of the loss's domain and the tile's loss sum (0 unless the loss is summed); `None`
    /// when the tile is not handled here (not `f16`, not at 8 lanes, or an input or target that is not
    /// plain `f16` data): the caller then takes the scratch tiles.
    ///
    /// # Safety
    ///
    /// The CPU must support F16C, and the code must run where it is enabled: inside
    /// [`super::super::run_avx2_f16c`].
    #[inline(always)]
    pub(super) unsafe fn tile<S: Simd, E: FastElem, K: PointOp>(
        simd: S,
        job: &Job<'_, E, K>,
        want: Want,
        tile: HalfTile<'_, '_, '_, E>,
    ) -> Option<(bool, f64)> {
        if TypeId::of::<S>() != TypeId::of::<V3>() {
            return None;
        }
        // SAFETY: `S` is `V3` (the type ids are equal), a zero-sized token the caller's context holds.
        let v3: V3 = unsafe { core::mem::transmute_copy::<S, V3>(&simd) };
        let n = tile.w.len();
        let t = half_in(&job.t, tile.at, n)?;
        let x = match tile.x {
            Some(op) => Some(half_in(op, tile.at, n)?),
            None => None,
        };
        let gio = half_out(tile.grad_input, n)?;
        let gto = half_out(tile.grad_target, n)?;
        let lo = if job.loss == LossOut::Elements { half_out(tile.loss, n)? } else { None };
        if x.is_none() && gio.is_none() {
            return None;
        }
        let sum_terms = job.loss == LossOut::Sum;
        let terms = tile.terms;
        let io = Io { x, t, w: tile.w, p: tile.p, g: tile.g, lo, gio, gto, terms: &mut *terms };
        let gc = job.g.is_none().then(|| v3.splat_f32s(job.g_const));
        // the training call (loss summed, input gradient) gets copies of the loop with `want` constant,
        // as in `fused`; every call gets one with its layout (in place or not) constant
        let in_place = io.x.is_none();
        let train = sum_terms && want == Want::LOSS_AND_INPUT_GRAD;
        let acc = match (train, sum_terms, in_place) {
            (true, _, true) => run::<K, true, true>(v3, job.op, Want::LOSS_AND_INPUT_GRAD, gc, io),
            (true, _, false) => run::<K, true, false>(v3, job.op, Want::LOSS_AND_INPUT_GRAD, gc, io),
            (false, true, true) => run::<K, true, true>(v3, job.op, want, gc, io),
            (false, true, false) => run::<K, true, false>(v3, job.op, want, gc, io),
            (false, false, true) => run::<K, false, true>(v3, job.op, want, gc, io),
            (false, false, false) => run::<K, false, false>(v3, job.op, want, gc, io),
        };
        let sum = match sum_terms {
            true => sum_finish::<V3>(acc.sum, acc.err).unwrap_or_else(|| sum_f64(&terms[..n])),
            false => 0.0,
        };
        let bad: [f32; 8] = pulp::cast(acc.bad);
        #[cfg(test)]
        super::tests::F16C_ELEMENTS.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Some((bad.iter().any(|&b| b != 0.0), sum))
    }

    /// Elements `at .. at + n` of `op` when it is `f16` data.
    #[inline(always)]
    fn half_in<'s, E: FastElem>(op: &'s Operand<'_, E>, at: usize, n: usize) -> Option<&'s [f16]> {
        match op {
            Operand::Slice(s) => E::as_f16(s.get(at..at + n)?),
            Operand::Periodic { .. } => None,
        }
    }

    /// The first `n` elements of an output as `f16` (`Some(None)` when it is not requested).
    #[inline(always)]
    fn half_out<E: FastElem>(o: Option<&mut [E]>, n: usize) -> Option<Option<&mut [f16]>> {
        match o {
            Some(o) => Some(Some(E::as_f16_mut(o.get_mut(..n)?)?)),
            None => Some(None),
        }
    }

    /// The 8 values of a chunk widened (`z` for none).
    #[inline(always)]
    fn load8(c: Option<&[f16]>, z: f32x8) -> f32x8 {
        match c.and_then(|c| c.first_chunk::<8>()) {
            Some(h) => load(h),
            None => z,
        }
    }

    /// `v` rounded into a chunk of 8.
    #[inline(always)]
    fn store8(v: f32x8, c: &mut [f16]) {
        if let Some(h) = c.first_chunk_mut::<8>() {
            store(v, h);
        }
    }

    /// `s[from..]` loaded, missing lanes 0.
    #[inline(always)]
    fn tail_f32(simd: V3, s: &[f32], from: usize) -> f32x8 {
        simd.partial_load_f32s(s.get(from..).unwrap_or_default())
    }

    /// The slices of one [`run`]: `x` `None` is read from `gio` (in place); `w`, `p`, `g` and `terms` have
    /// `t`'s length, and so do the requested outputs.
    struct Io<'a> {
        x: Option<&'a [f16]>,
        t: &'a [f16],
        w: &'a [f32],
        p: &'a [f32],
        g: &'a [f32],
        lo: Option<&'a mut [f16]>,
        gio: Option<&'a mut [f16]>,
        gto: Option<&'a mut [f16]>,
        terms: &'a mut [f32],
    }

    /// [`tile`]'s loop: whole vectors of eight, then the partial one (missing lanes 0, as the scratch
    /// tiles' masked loads give). With `SUM` the loss is summed: its terms are rounded to `f16`, kept in
    /// `terms` and added in `sum_tile`'s order. With `IN_PLACE` `x` is read from `gio` (`io.x` is `None`).
    #[inline(always)]
    fn run<K: PointOp, const SUM: bool, const IN_PLACE: bool>(
        simd: V3,
        op: K,
        want: Want,
        gc: Option<f32x8>,
        io: Io<'_>,
    ) -> Fused<f32x8> {
        let Io { x, t, w, p, g, mut lo, mut gio, mut gto, terms } = io;
        let n = t.len();
        let full = n / 8 * 8;
        let z = simd.splat_f32s(0.0);
        let mut acc = Fused { bad: z, sum: z, err: z };
        {
            let mut xs = x.map(|x| x.chunks_exact(8));
            let mut gi8 = gio.as_deref_mut().map(|v| v.chunks_exact_mut(8));
            let mut lo8 = lo.as_deref_mut().map(|v| v.chunks_exact_mut(8));
            let mut gt8 = gto.as_deref_mut().map(|v| v.chunks_exact_mut(8));
            let (w8, p8, g8) = (V3::as_simd_f32s(w).0, V3::as_simd_f32s(p).0, V3::as_simd_f32s(g).0);
            let mut terms8 = V3::as_mut_simd_f32s(&mut *terms).0.iter_mut();
            for (((tc, &wv), &pv), &gv) in t.chunks_exact(8).zip(w8).zip(p8).zip(g8) {
                let gi = gi8.as_mut().and_then(Iterator::next);
                let xv = match IN_PLACE {
                    true => load8(gi.as_deref(), z),
                    false => load8(xs.as_mut().and_then(Iterator::next), z),
                };
                let r = op.call(
                    simd,
                    want,
                    Lanes { x: xv, t: load8(Some(tc), z), w: wv, p: pv, g: gc.unwrap_or(gv) },
                );
                if let Some(o) = gi {
                    store8(r.grad_input, o);
                }
                // (no per-element loss when it is summed; no target gradient unless wanted)
                if !SUM {
                    if let Some(o) = lo8.as_mut().and_then(Iterator::next) {
                        store8(r.loss, o);
                    }
                }
                if want.grad_target {
                    if let Some(o) = gt8.as_mut().and_then(Iterator::next) {
                        store8(r.grad_target, o);
                    }
                }
                let term = terms8.next();
                if SUM {
                    let l = round(r.loss);
                    (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, l);
                    if let Some(o) = term {
                        *o = l;
                    }
                }
                if K::CHECKS {
                    acc.bad = simd.add_f32s(acc.bad, r.bad);
                }
            }
        }
        if full < n {
            let xv = match (x, gio.as_deref()) {
                (Some(x), _) | (None, Some(x)) => load_part(x.get(full..).unwrap_or_default()),
                (None, None) => z,
            };
            let t = load_part(t.get(full..).unwrap_or_default());
            let r = op.call(
                simd,
                want,
                Lanes {
                    x: xv,
                    t,
                    w: tail_f32(simd, w, full),
                    p: tail_f32(simd, p, full),
                    g: gc.unwrap_or(tail_f32(simd, g, full)),
                },
            );
            let outs: [(Option<&mut [f16]>, f32x8); 3] =
                [(gio, r.grad_input), (lo, r.loss), (gto, r.grad_target)];
            for (o, v) in outs {
                if let Some(o) = o.and_then(|o| o.get_mut(full..)) {
                    store_part(v, o);
                }
            }
            if SUM {
                let rounded: [f32; 8] = pulp::cast(round(r.loss));
                let mut l = [0f32; 8];
                let part = terms.get_mut(full..).unwrap_or_default();
                let m = part.len().min(8);
                l[..m].copy_from_slice(&rounded[..m]);
                part[..m].copy_from_slice(&rounded[..m]);
                (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, pulp::cast(l));
            }
            if K::CHECKS {
                acc.bad = simd.add_f32s(acc.bad, r.bad);
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GradOutput;
    use half::bf16;
    use ndarray::{ArrayD, IxDyn};

    /// Elements computed by [`pair_tile`] (so the test below knows the pair path ran).
    pub(super) static PAIR_ELEMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Elements computed by `f16c::tile` (so the test below knows the F16C path ran).
    pub(super) static F16C_ELEMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// `f` with the bf16 pair path on and off.
    /// (Inputs of at least `2·16` elements hold a whole group at every instruction set, so the pair
    /// path must have run for them.)
    fn both<R>(expect: bool, f: impl Fn() -> R) -> (R, R) {
        let (on, off, ran) = on_off(&PAIR_PATH, &PAIR_ELEMENTS, f);
        assert!(ran || !expect, "the pair path did not run");
        (on, off)
    }

    /// `f` with the path switch `flag` on and off, and whether the path ran (its element counter grew;
    /// the counter is shared with the other tests of this binary, so only "it ran" is reliable).
    fn on_off<R>(
        flag: &'static std::thread::LocalKey<Cell<bool>>,
        counter: &std::sync::atomic::AtomicUsize,
        f: impl Fn() -> R,
    ) -> (R, R, bool) {
        let before = counter.load(std::sync::atomic::Ordering::Relaxed);
        let on = f();
        let ran = counter.load(std::sync::atomic::Ordering::Relaxed) > before;
        let off = crate::base::path::with_switch(flag, false, &f);
        (on, off, ran)
    }

    fn bits(a: &ArrayD<bf16>) -> Vec<u16> {
        a.iter().map(|v| v.to_bits()).collect()
    }

    /// `f` with the f16 F16C path on and off, and whether it ran (it only can at AVX2 with F16C).
    fn both_f16<R>(f: impl Fn() -> R) -> (R, R, bool) {
        on_off(&F16C_PATH, &F16C_ELEMENTS, f)
    }

    #[test]
    fn f16_in_registers_gives_the_scratch_paths_bits() {
        use crate::{BceOptions, BceWithLogitsOptions, KlDivOptions};
        use half::f16;
        // bits, with every NaN as one pattern: which operation makes a NaN (and so its sign) depends on
        // the compiler's instruction choice, which differs between the two paths' loops
        let hbits = |a: &ArrayD<f16>| {
            a.iter().map(|v| if v.is_nan() { 0x7e00 } else { v.to_bits() }).collect::<Vec<u16>>()
        };
        let half = |v: Vec<bf16>| v.into_iter().map(|b| f16::from_f32(b.to_f32())).collect::<Vec<f16>>();
        let check = |a: &Loss<f16>, b: &Loss<f16>, what: &str| match (a, b) {
            (Loss::Elementwise(a), Loss::Elementwise(b)) => assert_eq!(hbits(a), hbits(b), "{what}"),
            // a summed loss adds the same rounded terms in the same order: the same bits
            (Loss::Scalar(a), Loss::Scalar(b)) => {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what}: {a} vs {b}")
            }
            _ => panic!("different loss kinds"),
        };
        let avx2 = crate::kernels::Isa::best() == crate::kernels::Isa::Avx2
            && crate::kernels::simd::f16c_available();
        let mut ran_any = false;
        // lengths around a vector, a tile and a task; odd sizes leave tails
        for &(rows, cols) in &[(1, 7), (1, 8), (3, 17), (2, 1023), (5, 1025), (3, 40_000), (1, 65_537)] {
            let n = rows * cols;
            let shape = IxDyn(&[rows, cols]);
            let mut xv = half(data(n, 1, false));
            // f16 subnormals and values that overflow f16 after the formula
            for (i, v) in xv.iter_mut().enumerate().filter(|(i, _)| i % 89 == 21) {
                *v = f16::from_f32(if i % 2 == 0 { 3e-6 } else { 6.0e4 });
            }
            let x = ArrayD::from_shape_vec(shape.clone(), xv).unwrap();
            let xu = ArrayD::from_shape_vec(shape.clone(), half(data(n, 2, true))).unwrap();
            let t = ArrayD::from_shape_vec(shape.clone(), half(data(n, 3, true))).unwrap();
            let hard = t.mapv(|v| if v.to_f32() > 0.5 { f16::ONE } else { f16::ZERO });
            let wv: Vec<f16> = (0..cols).map(|c| f16::from_f32(0.5 + (c % 7) as f32 * 0.25)).collect();
            let w = ndarray::Array1::from(wv).into_dyn();
            let g = x.mapv(|v| f16::from_f32((v.to_f32() * 0.37).sin()));
            for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                let what = format!("{rows}x{cols} {red:?}");
                let o = KlDivOptions { reduction: red, ..Default::default() };
                let (a, b, ran) = both_f16(|| crate::kl_div_with_grad(x.view(), t.view(), &o).unwrap());
                ran_any |= ran;
                assert_eq!(hbits(&a.1), hbits(&b.1), "kl grad {what}");
                check(&a.0, &b.0, &format!("kl loss {what}"));
                if red == Reduction::None {
                    // an upstream gradient per element, the target's gradient
                    let o = KlDivOptions { reduction: red, log_target: true };
                    let go = GradOutput::Array(g.view());
                    let (a, b, _) =
                        both_f16(|| crate::kl_div_backward_target(x.view(), t.view(), &o, &go).unwrap());
                    assert_eq!(hbits(&a), hbits(&b), "kl target grad {what}");
                }
                let o = BceOptions { reduction: red, weight: Some(w.view()) };
                for tt in [&t, &hard] {
                    let (a, b, _) =
                        both_f16(|| crate::binary_cross_entropy_with_grad(xu.view(), tt.view(), &o).unwrap());
                    assert_eq!(hbits(&a.1), hbits(&b.1), "bce grad {what}");
                    check(&a.0, &b.0, &format!("bce loss {what}"));
                }
                let o =
                    BceWithLogitsOptions { reduction: red, pos_weight: Some(w.view()), ..Default::default() };
                let (a, b, _) = both_f16(|| {
                    crate::binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &o).unwrap()
                });
                assert_eq!(hbits(&a.1), hbits(&b.1), "bce-logits grad {what}");
                check(&a.0, &b.0, &format!("bce-logits loss {what}"));
                // in place: the gradient over the input
                let (a, b, _) = both_f16(|| {
                    let mut buf = x.clone();
                    let o = KlDivOptions { reduction: red, ..Default::default() };
                    let l = crate::kl_div_with_grad_in_place(buf.view_mut(), t.view(), &o).unwrap();
                    (l, buf)
                });
                assert_eq!(hbits(&a.1), hbits(&b.1), "kl in place {what}");
                check(&a.0, &b.0, &format!("kl in place loss {what}"));
                let (a, b, _) = both_f16(|| {
                    let mut buf = x.clone();
                    let o = BceWithLogitsOptions { reduction: red, ..Default::default() };
                    let l = crate::binary_cross_entropy_with_logits_with_grad_in_place(
                        buf.view_mut(),
                        t.view(),
                        &o,
                    )
                    .unwrap();
                    (l, buf)
                });
                assert_eq!(hbits(&a.1), hbits(&b.1), "bce-logits in place {what}");
                check(&a.0, &b.0, &format!("bce-logits in place loss {what}"));
                let (a, b, _) = both_f16(|| {
                    let mut buf = xu.clone();
                    let o = BceOptions { reduction: red, weight: None };
                    let l =
                        crate::binary_cross_entropy_with_grad_in_place(buf.view_mut(), t.view(), &o).unwrap();
                    (l, buf)
                });
                assert_eq!(hbits(&a.1), hbits(&b.1), "bce in place {what}");
                check(&a.0, &b.0, &format!("bce in place loss {what}"));
            }
            // out of the domain: the same error either way
            let mut bad = xu.clone();
            bad[[rows - 1, cols - 1]] = f16::from_f32(1.5);
            let (a, b, _) = both_f16(|| {
                crate::binary_cross_entropy_with_grad(bad.view(), t.view(), &BceOptions::default())
            });
            assert!(a.is_err() && b.is_err(), "bce out of domain {rows}x{cols}");
        }
        assert_eq!(ran_any, avx2, "the F16C path runs exactly where the CPU is at AVX2 with F16C");
    }

    /// Values in `(0, 1)` with NaN, ±0, 1 and subnormals sprinkled in, as `bf16`.
    fn data(n: usize, seed: u64, unit: bool) -> Vec<bf16> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                let v = match i % 97 {
                    3 if !unit => f32::NAN,
                    5 => 0.0,
                    7 => 1.0,
                    11 => 1e-39,
                    13 if !unit => -0.0,
                    17 if !unit => 1e30,
                    _ if unit => u,
                    _ => (u - 0.5) * 30.0,
                };
                bf16::from_f32(v)
            })
            .collect()
    }

    #[test]
    fn bf16_pair_path_gives_the_scratch_paths_bits() {
        use crate::{BceOptions, BceWithLogitsOptions, KlDivOptions};
        // lengths around a group (16 or 32 lanes of bf16), a tile and a task; odd sizes leave tails
        for &(rows, cols) in &[(1, 15), (1, 16), (3, 17), (2, 1023), (5, 1025), (3, 40_000), (1, 65_537)] {
            let n = rows * cols;
            let shape = IxDyn(&[rows, cols]);
            let x = ArrayD::from_shape_vec(shape.clone(), data(n, 1, false)).unwrap();
            let xu = ArrayD::from_shape_vec(shape.clone(), data(n, 2, true)).unwrap();
            let t = ArrayD::from_shape_vec(shape.clone(), data(n, 3, true)).unwrap();
            // a broadcast (C,) weight: the split layout of periodic operands
            let wv: Vec<bf16> = (0..cols).map(|c| bf16::from_f32(0.5 + (c % 7) as f32 * 0.25)).collect();
            let w = ndarray::Array1::from(wv).into_dyn();
            // a broadcast (C,) target for kl_div: the split layout
            let trow = t.index_axis(Axis(0), 0).to_owned();
            // a whole group of bf16 at every instruction set (AVX-512: 32)
            let pairs = n >= 32;
            for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                let o = KlDivOptions { reduction: red, ..Default::default() };
                let (a, b) = both(pairs, || crate::kl_div_with_grad(x.view(), t.view(), &o).unwrap());
                assert_eq!(bits(&a.1), bits(&b.1), "kl grad {rows}x{cols} {red:?}");
                check_loss(&a.0, &b.0);
                let (a, b) =
                    both(pairs && cols >= 32, || crate::kl_div_with_grad(x.view(), trow.view(), &o).unwrap());
                assert_eq!(bits(&a.1), bits(&b.1), "kl grad {rows}x{cols} {red:?}");
                check_loss(&a.0, &b.0);
                let o = BceOptions { reduction: red, weight: Some(w.view()) };
                let (a, b) =
                    both(false, || crate::binary_cross_entropy_with_grad(xu.view(), t.view(), &o).unwrap());
                assert_eq!(bits(&a.1), bits(&b.1), "bce grad {rows}x{cols} {red:?}");
                check_loss(&a.0, &b.0);
                let o =
                    BceWithLogitsOptions { reduction: red, pos_weight: Some(w.view()), ..Default::default() };
                let (a, b) = both(false, || {
                    crate::binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &o).unwrap()
                });
                assert_eq!(bits(&a.1), bits(&b.1), "bce-logits grad {rows}x{cols} {red:?}");
                check_loss(&a.0, &b.0);
                // in place: the same bits as allocating
                let (a, b) = both(pairs, || {
                    let mut buf = x.clone();
                    let o = KlDivOptions { reduction: red, ..Default::default() };
                    let l = crate::kl_div_with_grad_in_place(buf.view_mut(), t.view(), &o).unwrap();
                    (l, buf)
                });
                assert_eq!(bits(&a.1), bits(&b.1), "kl in place {rows}x{cols} {red:?}");
                check_loss(&a.0, &b.0);
            }
        }
    }

    #[test]
    fn f32_terms_summed_in_the_loop_are_sum_tiles_bits() {
        use crate::{BceWithLogitsOptions, KlDivOptions};
        struct SumTile<'a>(&'a [f32]);
        impl WithSimd for SumTile<'_> {
            type Output = f64;
            #[inline(always)]
            fn with_simd<S: Simd>(self, simd: S) -> f64 {
                sum_tile(simd, self.0)
            }
        }
        // the driver's order: tiles in order within a task, task sums in task order
        let two_pass = |terms: &[f32]| {
            let isa = crate::kernels::Isa::best();
            let task =
                |c: &[f32]| c.chunks(TILE).fold(0.0, |a, t| a + crate::kernels::dispatch(isa, SumTile(t)));
            terms.chunks(TASK).fold(0.0f64, |a, c| a + task(c))
        };
        // tails of every kind, several tasks, and a tile with an infinite term (the f64 fallback)
        for (n, inf_at) in
            [(5, None), (3 * TILE + 5, None), (TASK + 2 * TILE + 3, None), (2 * TILE + 7, Some(1500))]
        {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let mut t: Vec<f32> = (0..n).map(|i| (i * 13 % 29) as f32 / 29.0).collect();
            let mut xs = x.clone();
            if let Some(i) = inf_at {
                xs[i] = f32::NEG_INFINITY;
                t[i] = 0.5;
            }
            let xa = ArrayD::from_shape_vec(IxDyn(&[n]), xs).unwrap();
            let ta = ArrayD::from_shape_vec(IxDyn(&[n]), t.clone()).unwrap();
            let none = KlDivOptions { reduction: Reduction::None, ..Default::default() };
            let sum = KlDivOptions { reduction: Reduction::Sum, ..Default::default() };
            let terms = crate::kl_div(xa.view(), ta.view(), &none).unwrap().into_array();
            let want = two_pass(terms.as_slice().unwrap()) as f32;
            let (got, _) = crate::kl_div_with_grad(xa.view(), ta.view(), &sum).unwrap();
            let Loss::Scalar(got) = got else { panic!("not reduced") };
            assert_eq!(got.to_bits(), want.to_bits(), "kl_div n = {n}: {got} vs {want}");
            if inf_at.is_some() {
                assert_eq!(got, f32::INFINITY);
            }
            // in place, BCE with logits
            let mut buf = xa.clone();
            let got =
                crate::kl_div_with_grad_in_place(buf.view_mut(), ta.view(), &sum).unwrap().scalar().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "kl_div in place n = {n}");
            let none = BceWithLogitsOptions { reduction: Reduction::None, ..Default::default() };
            let sum = BceWithLogitsOptions { reduction: Reduction::Sum, ..Default::default() };
            let xa = ArrayD::from_shape_vec(IxDyn(&[n]), x.clone()).unwrap();
            let terms =
                crate::binary_cross_entropy_with_logits(xa.view(), ta.view(), &none).unwrap().into_array();
            let want = two_pass(terms.as_slice().unwrap()) as f32;
            let mut buf = xa.clone();
            let got =
                crate::binary_cross_entropy_with_logits_with_grad_in_place(buf.view_mut(), ta.view(), &sum)
                    .unwrap()
                    .scalar()
                    .unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "bce-logits in place n = {n}");
        }
    }

    /// Elementwise losses bit for bit; reduced ones as sums of the same rounded terms in another
    /// order (equal after rounding to bf16 but for a rare tie).
    fn check_loss(a: &Loss<bf16>, b: &Loss<bf16>) {
        match (a, b) {
            (Loss::Elementwise(a), Loss::Elementwise(b)) => assert_eq!(bits(a), bits(b)),
            (Loss::Scalar(a), Loss::Scalar(b)) => {
                let (a, b) = (a.to_f32(), b.to_f32());
                assert!(
                    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-2 * a.abs(),
                    "{a} vs {b}"
                );
            }
            _ => panic!("different loss kinds"),
        }
    }
}
