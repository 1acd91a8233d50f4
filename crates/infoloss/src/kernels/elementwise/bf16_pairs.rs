//! `bf16` tiles in registers: two `bf16` per `u32` lane, widened and rounded in registers, so the
//! formula reads and writes the `bf16` data without scratch tiles (little-endian targets).

use super::*;

// bf16 in registers.
// ----------------------------------------------------------------------------------------------

/// Whether `bf16` jobs take [`pair_tile`] (the pair layout assumes a little-endian CPU).
pub(crate) const PAIRS: bool = cfg!(target_endian = "little");

/// One operand of [`pair_tile`], per group of `2·lanes` elements.
pub(crate) enum PairIn<'a, S: Simd> {
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
    pub(crate) fn get(&self, simd: S, k: usize) -> (S::f32s, S::f32s) {
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
pub(crate) fn split_pairs(v: &mut [f32], lanes: usize) {
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
pub(crate) fn as_pairs<S: Simd>(b: &[half::bf16]) -> Option<&[S::u32s]> {
    let u: &[u32] = pulp::bytemuck::try_cast_slice(b).ok()?;
    let (head, tail) = S::as_simd_u32s(u);
    tail.is_empty().then_some(head)
}

/// `bf16` output data as pair vectors, as [`as_pairs`].
#[inline(always)]
pub(crate) fn as_pairs_mut<S: Simd>(b: &mut [half::bf16]) -> Option<&mut [S::u32s]> {
    let u: &mut [u32] = pulp::bytemuck::try_cast_slice_mut(b).ok()?;
    let (head, tail) = S::as_mut_simd_u32s(u);
    tail.is_empty().then_some(head)
}

/// The first `n` elements of an output (if requested) as pair vectors; `None` when that is not
/// possible ([`as_pairs`]).
#[inline(always)]
pub(crate) fn out_pairs<S: Simd, E: FastElem>(
    o: Option<&mut [E]>,
    n: usize,
) -> Option<Option<&mut [S::u32s]>> {
    match o {
        Some(o) => Some(Some(as_pairs_mut::<S>(E::as_bf16_mut(o.get_mut(..n)?)?)?)),
        None => Some(None),
    }
}

/// Operand `op`'s elements `at .. at + scratch.len()` for [`pair_tile`]: `bf16` data as pairs, other
/// sources filled into `scratch` in the split layout.
#[inline(always)]
pub(crate) fn pair_in<'s, S: Simd, E: FastElem>(
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
pub(crate) fn pair_opt<'s, S: Simd, E: FastElem>(
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
pub(crate) struct PairTile<'j, 'a, 'o, E> {
    /// The input operand, `None` when it is read from `grad_input` (in place).
    pub(crate) x: Option<&'j Operand<'a, E>>,
    /// The tile's first element in the job.
    pub(crate) at: usize,
    /// The tile's length.
    pub(crate) len: usize,
    pub(crate) loss: Option<&'o mut [E]>,
    pub(crate) grad_input: Option<&'o mut [E]>,
    pub(crate) grad_target: Option<&'o mut [E]>,
}

/// The `f32` scratch tiles of [`pair_tile`] (of [`TILE`] elements each).
pub(crate) struct PairScratch<'s> {
    pub(crate) x: &'s mut [f32],
    pub(crate) t: &'s mut [f32],
    pub(crate) w: &'s mut [f32],
    pub(crate) p: &'s mut [f32],
    pub(crate) g: &'s mut [f32],
    /// The rounded loss terms, for a summed loss.
    pub(crate) terms: &'s mut [f32],
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
pub(crate) fn pair_tile<S: Simd, E: FastElem, K: PointOp>(
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
pub(crate) struct PairIns<'a, S: Simd> {
    pub(crate) x: Option<PairIn<'a, S>>,
    pub(crate) t: PairIn<'a, S>,
    pub(crate) w: PairIn<'a, S>,
    pub(crate) p: PairIn<'a, S>,
    pub(crate) g: PairIn<'a, S>,
}

/// The outputs of [`pair_loop`]: requested ones as pair vectors, and the rounded loss terms.
pub(crate) struct PairOuts<'a, S: Simd> {
    pub(crate) lo: Option<&'a mut [S::u32s]>,
    pub(crate) gio: Option<&'a mut [S::u32s]>,
    pub(crate) gto: Option<&'a mut [S::u32s]>,
    pub(crate) terms: &'a mut [S::f32s],
}

/// [`pair_tile`]'s loop over `groups` groups; a summed loss's rounded terms are stored and added
/// to `acc` in the order `sum_tile` would read them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn pair_loop<S: Simd, K: PointOp>(
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
