//! Row primitives: max, online max + sum of exponentials, log-sum-exp, softmax, log-softmax.
//!
//! The online pass ([`OnlineRow`]) is shared with the cross-entropy kernels in `ce.rs`.

use super::simd::select;
use pulp::{Simd, WithSimd};

use super::Kernels;
use super::exp::{exp_f32s, exp_nonpos_f32s, len_mismatch};
use super::simd::{hmax_ignore_nan, hsum_f64, load_tail_fill, max_ignore_nan, widen_bf16};
use super::vmap::{Affine, MapInPlace, Scale, VecMap, VecZip, map_f32, map_in_place_f32, zip_in_place};
use crate::Result;

mod backward;
pub use backward::*;

/// Elements summed in `f32` lanes before the partial sums are flushed into an `f64` total.
pub(crate) const CHUNK: usize = 512;
/// At most this many blocks per row (one recorded reference per block, on the stack).
pub(crate) const MAX_BLOCKS: usize = 64;

/// Length of the blocks a row of `n` elements is cut into: a multiple of [`CHUNK`], at least
/// `2·CHUNK` (8 KiB of `f32`: the block stays in L1 between its max scan and its exp pass), and
/// large enough that there are at most [`MAX_BLOCKS`] blocks.
#[inline]
pub(crate) fn block_len(n: usize) -> usize {
    n.div_ceil(MAX_BLOCKS).div_ceil(CHUNK).max(2) * CHUNK
}

// ---------------------------------------------------------------------------------------------
// block max

/// Maximum of `x` ignoring NaN (`-inf` if none), and whether a NaN was seen (only computed when
/// `NAN_FLAG`).
#[inline(always)]
pub(crate) fn block_max<S: Simd, const NAN_FLAG: bool>(simd: S, x: &[f32]) -> (f32, bool) {
    block_max_into::<S, NAN_FLAG, false>(simd, x, &mut [])
}

/// [`block_max`] that, when `COPY`, also copies `x` into `copy` (of the same length) with the scan's
/// own vector stores (the in-place kernels' L1 copy of a block: no separate pass, no `memcpy`).
#[inline(always)]
fn block_max_into<S: Simd, const NAN_FLAG: bool, const COPY: bool>(
    simd: S,
    x: &[f32],
    copy: &mut [f32],
) -> (f32, bool) {
    let (xh, xt) = S::as_simd_f32s(x);
    let (ch, ct) = S::as_mut_simd_f32s(copy);
    let ninf = simd.splat_f32s(f32::NEG_INFINITY);
    let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
    let mut nan = simd.splat_f32s(0.0);
    let mut it = xh.chunks_exact(4);
    let mut ci = ch.chunks_exact_mut(4);
    for v in &mut it {
        a0 = max_ignore_nan(simd, a0, v[0]);
        a1 = max_ignore_nan(simd, a1, v[1]);
        a2 = max_ignore_nan(simd, a2, v[2]);
        a3 = max_ignore_nan(simd, a3, v[3]);
        if COPY && let Some(c) = ci.next() {
            // element stores (a slice copy here could become a `memcpy` call)
            c[0] = v[0];
            c[1] = v[1];
            c[2] = v[2];
            c[3] = v[3];
        }
        if NAN_FLAG {
            // x·0 is NaN exactly for NaN and ±inf lanes (or an overflowing sum, a harmless false
            // positive); the accumulator stays NaN once it is NaN
            let s = simd.add_f32s(simd.add_f32s(v[0], v[1]), simd.add_f32s(v[2], v[3]));
            nan = simd.add_f32s(nan, simd.mul_f32s(s, simd.splat_f32s(0.0)));
        }
    }
    let mut cr = ci.into_remainder().iter_mut();
    for v in it.remainder() {
        a0 = max_ignore_nan(simd, a0, *v);
        if COPY && let Some(c) = cr.next() {
            *c = *v;
        }
        if NAN_FLAG {
            nan = simd.add_f32s(nan, simd.mul_f32s(*v, simd.splat_f32s(0.0)));
        }
    }
    if !xt.is_empty() {
        let v = load_tail_fill(simd, xt, f32::NEG_INFINITY);
        a1 = max_ignore_nan(simd, a1, v);
        if COPY {
            ct.copy_from_slice(xt);
        }
        if NAN_FLAG {
            let v = load_tail_fill(simd, xt, 0.0);
            nan = simd.add_f32s(nan, simd.mul_f32s(v, simd.splat_f32s(0.0)));
        }
    }
    let m = hmax_ignore_nan::<S>(simd.max_f32s(simd.max_f32s(a0, a1), simd.max_f32s(a2, a3)));
    // `nan` lanes are NaN iff some element was NaN or ±inf; ±inf alone is told apart below
    let nan_or_inf = NAN_FLAG && hsum_f64::<S>(nan).is_nan();
    let has_nan = nan_or_inf && x.iter().any(|v| v.is_nan());
    (m, has_nan)
}

// ---------------------------------------------------------------------------------------------
// the exp pass of one block

/// Per-element coefficient `c` of the linear sums of pass 1 (`Σ c·(r − x)` and `Σ c`):
/// `c = w` (W), `c = t·keep + add` (T), their product (both), or 1 (neither).
#[derive(Clone, Copy)]
pub(crate) struct Lin<'a> {
    pub(crate) w: &'a [f32],
    pub(crate) t: &'a [f32],
    pub(crate) keep: f32,
    pub(crate) add: f32,
}

#[inline(always)]
pub(crate) fn coef<S: Simd, const W: bool, const T: bool>(
    simd: S,
    w: S::f32s,
    t: S::f32s,
    keep: S::f32s,
    add: S::f32s,
) -> S::f32s {
    let tt = simd.add_f32s(simd.mul_f32s(t, keep), add);
    match (W, T) {
        (true, true) => simd.mul_f32s(w, tt),
        (true, false) => w,
        (false, true) => tt,
        (false, false) => simd.splat_f32s(1.0),
    }
}

/// Partial sums of one block: `Σ exp(x − r)`, `Σ c·(r − x)`, `Σ c`.
#[derive(Clone, Copy, Default)]
pub(crate) struct BlockSums {
    pub(crate) e: f64,
    pub(crate) lin: f64,
    pub(crate) c: f64,
}

/// Sum of four accumulators' lanes, in `f64`.
#[inline(always)]
fn red4<S: Simd>(simd: S, a: [S::f32s; 4]) -> f64 {
    hsum_f64::<S>(simd.add_f32s(simd.add_f32s(a[0], a[1]), simd.add_f32s(a[2], a[3])))
}

/// One vector of pass 1: `e = exp(x − r)` added to accumulator `j`, and `c·(r − x)`, `c` when `LIN`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step<S: Simd, const LIN: bool, const W: bool, const T: bool>(
    simd: S,
    acc: &mut Acc<S>,
    j: usize,
    x: S::f32s,
    w: S::f32s,
    t: S::f32s,
    rv: S::f32s,
    keep: S::f32s,
    add: S::f32s,
) -> S::f32s {
    let e = exp_nonpos_f32s(simd, simd.sub_f32s(x, rv));
    acc.e[j] = simd.add_f32s(acc.e[j], e);
    if LIN {
        let c = coef::<S, W, T>(simd, w, t, keep, add);
        acc.l[j] = simd.mul_add_f32s(c, simd.sub_f32s(rv, x), acc.l[j]);
        if W || T {
            acc.c[j] = simd.add_f32s(acc.c[j], c);
        }
    }
    e
}

struct Acc<S: Simd> {
    e: [S::f32s; 4],
    l: [S::f32s; 4],
    c: [S::f32s; 4],
}

impl<S: Simd> Acc<S> {
    #[inline(always)]
    fn zero(simd: S) -> Self {
        let z = simd.splat_f32s(0.0);
        Acc { e: [z; 4], l: [z; 4], c: [z; 4] }
    }

    #[inline(always)]
    fn flush<const LIN: bool>(&mut self, simd: S, sums: &mut BlockSums) {
        let z = simd.splat_f32s(0.0);
        sums.e += red4(simd, self.e);
        self.e = [z; 4];
        if LIN {
            sums.lin += red4(simd, self.l);
            sums.c += red4(simd, self.c);
            self.l = [z; 4];
            self.c = [z; 4];
        }
    }
}

/// Writes `exp(x − r)` into `out` (when `STORE`) and returns the block sums. `r` must be finite or
/// `+inf` and at least every non-NaN `x` (the cheap `exp` for non-positive arguments is used).
/// `lin.w`/`lin.t` are only read when `W`/`T`; they must then have `x.len()` elements.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn exp_block<S: Simd, const STORE: bool, const LIN: bool, const W: bool, const T: bool>(
    simd: S,
    x: &[f32],
    r: f32,
    lin: Lin<'_>,
    out: &mut [f32],
) -> BlockSums {
    let mut sums = BlockSums::default();
    let rv = simd.splat_f32s(r);
    let keep = simd.splat_f32s(lin.keep);
    let add = simd.splat_f32s(lin.add);
    let mut acc = Acc::<S>::zero(simd);
    let mut start = 0;
    while start < x.len() {
        let end = (start + CHUNK).min(x.len());
        let xc = x.get(start..end).unwrap_or_default();
        let wc = if W { lin.w.get(start..end).unwrap_or_default() } else { xc };
        let tc = if T { lin.t.get(start..end).unwrap_or_default() } else { xc };
        let (xh, xt) = S::as_simd_f32s(xc);
        let (wh, wt) = S::as_simd_f32s(wc);
        let (th, tt) = S::as_simd_f32s(tc);
        let oc: &mut [f32] = if STORE { out.get_mut(start..end).unwrap_or_default() } else { &mut [] };
        let (oh, ot) = S::as_mut_simd_f32s(oc);

        let groups = xh.len() / 4;
        let (xg, xr) = xh.split_at(groups * 4);
        let (wg, wr) = wh.split_at((groups * 4).min(wh.len()));
        let (tg, tr) = th.split_at((groups * 4).min(th.len()));
        if STORE {
            let (og, or) = oh.split_at_mut((groups * 4).min(oh.len()));
            for (((x, w), t), o) in
                xg.chunks_exact(4).zip(wg.chunks_exact(4)).zip(tg.chunks_exact(4)).zip(og.chunks_exact_mut(4))
            {
                o[0] = step::<S, LIN, W, T>(simd, &mut acc, 0, x[0], w[0], t[0], rv, keep, add);
                o[1] = step::<S, LIN, W, T>(simd, &mut acc, 1, x[1], w[1], t[1], rv, keep, add);
                o[2] = step::<S, LIN, W, T>(simd, &mut acc, 2, x[2], w[2], t[2], rv, keep, add);
                o[3] = step::<S, LIN, W, T>(simd, &mut acc, 3, x[3], w[3], t[3], rv, keep, add);
            }
            for (((x, w), t), o) in xr.iter().zip(wr).zip(tr).zip(or.iter_mut()) {
                *o = step::<S, LIN, W, T>(simd, &mut acc, 0, *x, *w, *t, rv, keep, add);
            }
        } else {
            for ((x, w), t) in xg.chunks_exact(4).zip(wg.chunks_exact(4)).zip(tg.chunks_exact(4)) {
                step::<S, LIN, W, T>(simd, &mut acc, 0, x[0], w[0], t[0], rv, keep, add);
                step::<S, LIN, W, T>(simd, &mut acc, 1, x[1], w[1], t[1], rv, keep, add);
                step::<S, LIN, W, T>(simd, &mut acc, 2, x[2], w[2], t[2], rv, keep, add);
                step::<S, LIN, W, T>(simd, &mut acc, 3, x[3], w[3], t[3], rv, keep, add);
            }
            for ((x, w), t) in xr.iter().zip(wr).zip(tr) {
                step::<S, LIN, W, T>(simd, &mut acc, 0, *x, *w, *t, rv, keep, add);
            }
        }
        if !xt.is_empty() {
            // masked tail: lanes past the end contribute nothing
            let mask = simd.mask_between_m32s(0, xt.len() as u32).mask();
            let xv = load_tail_fill(simd, xt, r);
            let wv = simd.partial_load_f32s(wt);
            let tv = simd.partial_load_f32s(tt);
            let mut tail = Acc::<S>::zero(simd);
            let e = step::<S, LIN, W, T>(simd, &mut tail, 0, xv, wv, tv, rv, keep, add);
            let z = simd.splat_f32s(0.0);
            acc.e[1] = simd.add_f32s(acc.e[1], select(simd, mask, tail.e[0], z));
            if LIN {
                acc.l[1] = simd.add_f32s(acc.l[1], select(simd, mask, tail.l[0], z));
                acc.c[1] = simd.add_f32s(acc.c[1], select(simd, mask, tail.c[0], z));
            }
            if STORE {
                simd.partial_store_f32s(ot, e);
            }
        }
        acc.flush::<LIN>(simd, &mut sums);
        start = end;
    }
    sums
}

// ---------------------------------------------------------------------------------------------
// the online pass over a whole row

/// Result of the online pass: the row max `m`, `Σ exp(x − m)`, `Σ c·(m − x)`, `Σ c`, and the
/// reference each block's exponentials were taken against.
pub(crate) struct OnlineRow {
    /// Maximum over the non-NaN elements (`-inf` if none).
    pub(crate) m: f32,
    /// `Σ exp(x − m)` when `m` is finite (NaN if some `x` is NaN); meaningless otherwise.
    pub(crate) s: f64,
    /// `Σ c·(m − x)` when `m` is finite.
    pub(crate) lin: f64,
    /// `Σ c`.
    pub(crate) c: f64,
    /// Block length used.
    pub(crate) block: usize,
    /// Reference of block `b` (`exp(x − refs[b])` was stored); `-inf` for blocks seen while
    /// the running max was still `-inf`.
    pub(crate) refs: [f32; MAX_BLOCKS],
    /// Number of blocks.
    pub(crate) nblocks: usize,
}

/// Where pass 1 reads a row's values and writes their exponentials, block by block.
pub(crate) trait RowIo {
    /// The row length.
    fn len(&self) -> usize;
    /// Block `[start, end)` (within the row): the maximum of its values ignoring NaN (`-inf` if
    /// none), its values, and where its exponentials go (an empty slice when nothing is stored).
    fn max_block<S: Simd>(&mut self, simd: S, start: usize, end: usize) -> (f32, &[f32], &mut [f32]);
}

/// The values in one slice, the exponentials into another (empty: not stored).
pub(crate) struct Split<'a> {
    pub(crate) x: &'a [f32],
    pub(crate) out: &'a mut [f32],
}

impl RowIo for Split<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.x.len()
    }
    #[inline(always)]
    fn max_block<S: Simd>(&mut self, simd: S, start: usize, end: usize) -> (f32, &[f32], &mut [f32]) {
        let xb = self.x.get(start..end).unwrap_or_default();
        (block_max::<S, false>(simd, xb).0, xb, self.out.get_mut(start..end).unwrap_or_default())
    }
}

/// One slice holds the values and receives the exponentials (the in-place training path): the max
/// scan of each block also copies it into `copy` (at least [`block_len`] of the row's length), which
/// stays in L1, so the row is read from memory once and no row-sized copy is made. (The copy is made
/// by the max loop's own vector stores, not by `memcpy`: glibc's `rep movsb` copy ran 2.4× slower
/// than a streaming copy for some source/destination offsets on AMD Zen 3.)
pub(crate) struct InPlace<'a> {
    pub(crate) io: &'a mut [f32],
    pub(crate) copy: &'a mut [f32],
}

impl RowIo for InPlace<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.io.len()
    }
    #[inline(always)]
    fn max_block<S: Simd>(&mut self, simd: S, start: usize, end: usize) -> (f32, &[f32], &mut [f32]) {
        let ob = self.io.get_mut(start..end).unwrap_or_default();
        let xb = self.copy.get_mut(..ob.len()).unwrap_or_default();
        let (m, _) = block_max_into::<S, false, true>(simd, ob, xb);
        (m, xb, ob)
    }
}

/// `bf16` values, widened block by block into `copy` (L1) before the block's max scan; the
/// exponentials go into the `f32` row `cache`.
pub(crate) struct Bf16Src<'a> {
    pub(crate) x: &'a [half::bf16],
    pub(crate) copy: &'a mut [f32],
    pub(crate) cache: &'a mut [f32],
}

impl RowIo for Bf16Src<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.x.len()
    }
    #[inline(always)]
    fn max_block<S: Simd>(&mut self, simd: S, start: usize, end: usize) -> (f32, &[f32], &mut [f32]) {
        let xb = self.x.get(start..end).unwrap_or_default();
        let cb = self.copy.get_mut(..xb.len()).unwrap_or_default();
        widen_bf16(xb, cb);
        let (m, _) = block_max::<S, false>(simd, cb);
        (m, cb, self.cache.get_mut(start..end).unwrap_or_default())
    }
}

/// Pass 1: online max and sums over `x` (see the module docs of `kernels`).
#[inline(always)]
pub(crate) fn online_row<S: Simd, const STORE: bool, const LIN: bool, const W: bool, const T: bool>(
    simd: S,
    x: &[f32],
    lin: Lin<'_>,
    out: &mut [f32],
) -> OnlineRow {
    online_row_io::<S, STORE, LIN, W, T>(simd, &mut Split { x, out }, lin)
}

/// [`online_row`] over any [`RowIo`].
#[inline(always)]
pub(crate) fn online_row_io<S: Simd, const STORE: bool, const LIN: bool, const W: bool, const T: bool>(
    simd: S,
    io: &mut impl RowIo,
    lin: Lin<'_>,
) -> OnlineRow {
    let n = io.len();
    let block = block_len(n);
    let mut st = OnlineRow {
        m: f32::NEG_INFINITY,
        s: 0.0,
        lin: 0.0,
        c: 0.0,
        block,
        refs: [f32::NEG_INFINITY; MAX_BLOCKS],
        nblocks: 0,
    };
    let mut r = 0.0f32;
    let mut start = 0;
    let mut b = 0;
    while start < n {
        let end = (start + block).min(n);
        let (bm, xb, ob) = io.max_block(simd, start, end);
        if bm > st.m {
            if st.m > f32::NEG_INFINITY {
                st.s *= (st.m as f64 - bm as f64).exp();
            }
            if LIN {
                st.lin += (bm as f64 - r as f64) * st.c;
            }
            st.m = bm;
            r = bm;
        }
        if let Some(slot) = st.refs.get_mut(b) {
            *slot = if st.m > f32::NEG_INFINITY { r } else { f32::NEG_INFINITY };
        }
        let sub = Lin {
            w: if W { lin.w.get(start..end).unwrap_or_default() } else { &[] },
            t: if T { lin.t.get(start..end).unwrap_or_default() } else { &[] },
            ..lin
        };
        let sums = exp_block::<S, STORE, LIN, W, T>(simd, xb, r, sub, ob);
        st.s += sums.e;
        st.lin += sums.lin;
        // Σ c is the element count when c ≡ 1
        st.c += if W || T { sums.c } else { xb.len() as f64 };
        start = end;
        b += 1;
    }
    st.nblocks = b;
    st
}

/// Pass 2 helper: `out[i] = out[i]·a_b + beta` for every block `b` with factor
/// `a_b = alpha·exp(refs[b] − m)` (computed in `f64`).
#[inline(always)]
pub(crate) fn rescale_blocks<S: Simd>(simd: S, st: &OnlineRow, alpha: f64, beta: f32, out: &mut [f32]) {
    let mut start = 0;
    for b in 0..st.nblocks {
        let end = (start + st.block).min(out.len());
        let ref_b = st.refs.get(b).copied().unwrap_or(f32::NEG_INFINITY);
        let a = (alpha * (ref_b as f64 - st.m as f64).exp()) as f32;
        if let Some(ob) = out.get_mut(start..end) {
            map_in_place_f32(simd, ob, Affine { a, b: beta });
        }
        start = end;
    }
}

// ---------------------------------------------------------------------------------------------
// public primitives

struct MaxOp<'a>(&'a [f32]);
impl WithSimd for MaxOp<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let (m, nan) = block_max::<S, true>(simd, self.0);
        if nan { f32::NAN } else { m }
    }
}

struct MaxSumExpOp<'a>(&'a [f32]);
impl WithSimd for MaxSumExpOp<'_> {
    type Output = (f32, f64);
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f32, f64) {
        let x = self.0;
        if x.is_empty() {
            return (f32::NEG_INFINITY, 0.0);
        }
        let none = Lin { w: &[], t: &[], keep: 1.0, add: 0.0 };
        let st = online_row::<S, false, false, false, false>(simd, x, none, &mut []);
        if st.m.is_finite() && !st.s.is_nan() {
            (st.m, st.s)
        } else if st.m == f32::INFINITY && !x.iter().any(|v| v.is_nan()) {
            (st.m, f64::NAN)
        } else if st.s.is_nan() || x.iter().any(|v| v.is_nan()) {
            (f32::NAN, f64::NAN)
        } else {
            // every element is -inf
            (f32::NEG_INFINITY, f64::NAN)
        }
    }
}

struct ExpSubSumOp<'a> {
    x: &'a [f32],
    m: f32,
    out: &'a mut [f32],
}
impl WithSimd for ExpSubSumOp<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let mv = simd.splat_f32s(self.m);
        let mut total = 0.0f64;
        let mut start = 0;
        while start < self.x.len() {
            let end = (start + CHUNK).min(self.x.len());
            let (Some(xc), Some(oc)) = (self.x.get(start..end), self.out.get_mut(start..end)) else { break };
            let (xh, xt) = S::as_simd_f32s(xc);
            let (oh, ot) = S::as_mut_simd_f32s(oc);
            let z = simd.splat_f32s(0.0);
            let mut acc = [z; 4];
            let mut gi = xh.chunks_exact(4);
            let mut go = oh.chunks_exact_mut(4);
            for (x, o) in (&mut gi).zip(&mut go) {
                for j in 0..4 {
                    let e = exp_f32s(simd, simd.sub_f32s(x[j], mv));
                    o[j] = e;
                    acc[j] = simd.add_f32s(acc[j], e);
                }
            }
            for (x, o) in gi.remainder().iter().zip(go.into_remainder()) {
                let e = exp_f32s(simd, simd.sub_f32s(*x, mv));
                *o = e;
                acc[0] = simd.add_f32s(acc[0], e);
            }
            if !xt.is_empty() {
                let mask = simd.mask_between_m32s(0, xt.len() as u32).mask();
                let e = exp_f32s(simd, simd.sub_f32s(simd.partial_load_f32s(xt), mv));
                simd.partial_store_f32s(ot, e);
                acc[1] = simd.add_f32s(acc[1], select(simd, mask, e, z));
            }
            total +=
                hsum_f64::<S>(simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3])));
            start = end;
        }
        total
    }
}

struct SoftmaxOp<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
}
impl WithSimd for SoftmaxOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let none = Lin { w: &[], t: &[], keep: 1.0, add: 0.0 };
        let st = online_row::<S, true, false, false, false>(simd, self.x, none, self.out);
        if st.m.is_finite() {
            // PyTorch's order: the sum rounded to f32, its reciprocal taken in f32, then one product
            // per element (an f64 reciprocal of the unrounded sum differs from it by an ulp at times,
            // which the cancellation in softmax's backward turns into 1e-5 relative errors)
            let inv = 1.0f32 / st.s as f32;
            rescale_blocks(simd, &st, inv as f64, 0.0, self.out);
        } else {
            self.out.fill(f32::NAN);
        }
    }
}

struct LogSoftmaxOp<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
}
impl WithSimd for LogSoftmaxOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let none = Lin { w: &[], t: &[], keep: 1.0, add: 0.0 };
        let st = online_row::<S, false, false, false, false>(simd, self.x, none, &mut []);
        if !st.m.is_finite() {
            self.out.fill(f32::NAN);
            return;
        }
        map_f32(simd, self.x, self.out, LogSoftmaxMap { m: st.m, ls: st.s.ln() as f32 });
    }
}

/// `(v − m) − ls`.
#[derive(Clone, Copy)]
struct LogSoftmaxMap {
    m: f32,
    ls: f32,
}

impl VecMap for LogSoftmaxMap {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        simd.sub_f32s(simd.sub_f32s(v, simd.splat_f32s(self.m)), simd.splat_f32s(self.ls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_len_bounds() {
        for n in [0usize, 1, 100, 1024, 65_536, 65_537, 1 << 20, 10_000_000] {
            let b = block_len(n);
            assert!(b % CHUNK == 0 && b >= 2 * CHUNK);
            assert!(n.div_ceil(b) <= MAX_BLOCKS, "{n}");
        }
        assert_eq!(block_len(32_000), 1024);
    }
}
