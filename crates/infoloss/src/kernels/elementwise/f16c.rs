//! `f16` tiles converted in registers: eight values per `vcvtph2ps` load and per `vcvtps2ph` store, so
//! the formula reads the `f16` data and writes the `f16` results directly, without the `f32` scratch
//! tiles and the separate widening, narrowing and term-rounding passes of the other path.
//!
//! (`bf16` does not go through this loop — a zero extension and a shift to widen, the bit rounding and a
//! pack to narrow: it was slower than its scratch tiles, as the conversions are several instructions each
//! there and the loop runs short of registers; docs/benchmarks-history.md has the measurements.)
//!
//! It runs only inside [`crate::kernels::run_avx2_f16c`] (AVX2 + FMA + F16C, 8 lanes). Every element's results
//! are the scratch-tile path's bits: the same exact widening, the same formula on the same `f32`
//! values, the same rounding to nearest even; a summed loss adds the same rounded terms in the same
//! order (tested).

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
/// [`crate::kernels::run_avx2_f16c`].
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
