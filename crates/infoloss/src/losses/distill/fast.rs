//! The SIMD fast path of `distill` and `distill_topk` (`f32`, `f16`, `bf16`): rows through the fused
//! kernel, rows with non-finite logits handed to the `f64` reference row, bit-identical for any thread count.

use ndarray::{Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;

use crate::base::shape::checked_numel;
use crate::kernels::Kernels;
use crate::kernels::distill::{KdDiv, KdRowCfg};
use crate::kernels::topk::{TopkRowCfg, TopkScale, TopkSums};
use crate::{Element, Error, GradOutput, Loss, Result};

use super::engine::*;
use super::{Divergence, OP, OP_TOPK};
use crate::Real;
use crate::base::element::{to_t, zero_t};
use crate::rows::distill_fast::*;
use crate::rows::distill_rows::*;

/// What the fast dense path needs besides the plan.
pub(crate) struct FastJob {
    pub(crate) div: KdDiv,
    pub(crate) beta: f64,
    pub(crate) up: Option<Upstream>,
    pub(crate) soft_base: f64,
    pub(crate) ce_base: f64,
}

impl FastJob {
    /// `Some` when the fast dense path takes this call (see [`with_reference_path`]).
    pub(crate) fn new<T: Element>(
        plan: &Plan,
        grad_output: Option<&GradOutput<'_, T>>,
    ) -> Result<Option<FastJob>> {
        let (div, beta) = match plan.cfg.div {
            Divergence::ForwardKl | Divergence::GeneralizedJsd { beta: 0.0 } => (KdDiv::Forward, 0.0),
            Divergence::ReverseKl | Divergence::GeneralizedJsd { beta: 1.0 } => (KdDiv::Reverse, 1.0),
            Divergence::TotalVariation => (KdDiv::Tvd, 0.0),
            Divergence::GeneralizedJsd { beta } if beta > 0.0 && beta < 1.0 => (KdDiv::Jsd, beta),
            _ => return Ok(None),
        };
        Self::with_div(OP, plan, grad_output, div, beta)
    }

    /// `Some` when the fast path takes this call, with the dense kernel's divergence `div` (unused by
    /// the top-k path, whose bucket math takes any divergence).
    pub(crate) fn with_div<T: Element>(
        op: &'static str,
        plan: &Plan,
        grad_output: Option<&GradOutput<'_, T>>,
        div: KdDiv,
        beta: f64,
    ) -> Result<Option<FastJob>> {
        if !(fast_path_for::<T>() && plan.cfg.soft_on && plan.rows > 0 && plan.classes > 0) {
            return Ok(None);
        }
        let soft_base = plan.soft_w / plan.soft_div / plan.cfg.temp;
        let ce_base = plan.hard_w / plan.hard_div;
        let up = match grad_output {
            Some(g) => Some(Upstream::resolve(op, g, plan.reduction, plan.rows)?),
            None => None,
        };
        let finite = |g: f64| g.is_finite() && (g * soft_base).is_finite() && (g * ce_base).is_finite();
        let ok = match &up {
            None => true,
            Some(Upstream::Scalar(g)) => finite(*g),
            Some(Upstream::PerRow(v)) => v.iter().all(|&g| finite(g)),
        };
        Ok(ok.then_some(FastJob { div, beta, up, soft_base, ce_base }))
    }
}

/// [`dense_impl`] on the fast path (see [`fast_drive`]).
pub(crate) fn fast_dense<T: Element>(
    s: Student<'_, T>,
    t: ArrayView2<'_, T>,
    plan: &Plan,
    job: &FastJob,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let v = plan.classes;
    let cfg = plan.cfg;
    fast_drive(OP, plan, job, s, |r, label, soft, ce, s_row, out, sc| {
        let kcfg = KdRowCfg { ts: cfg.temp, tt: cfg.temp, div: job.div, beta: job.beta, label };
        let mut out = out;
        if let Some(k) = fast_row(s_row, t.row(r), kcfg, out.as_deref_mut().map(|o| (o, soft, ce)), sc) {
            let soft = match job.div {
                KdDiv::Forward => k.fkl,
                KdDiv::Reverse => k.rkl,
                KdDiv::Tvd => k.tvd,
                KdDiv::Jsd => k.jsd,
            };
            return (soft, k.ce);
        }
        // a non-finite row: the reference, as `engine` runs it
        reference_row(v, out, soft, ce, sc, |rs, grad| {
            gather(s_row, &mut rs.s);
            gather(t.row(r), &mut rs.t);
            dense_row(&rs.s, &rs.t, label, &cfg, &mut rs.kept, grad)
        })
    })
}

/// One row on the `f64` reference (for the rows the kernels hand back): `f` runs the reference row
/// function with the worker's scratch and, when `out` is given, an `f64` gradient row scaled by
/// `soft`/`ce`, which is then rounded into `out`.
pub(crate) fn reference_row<T: Element>(
    v: usize,
    out: Option<&mut [T]>,
    soft: f64,
    ce: f64,
    sc: &mut FastScratch,
    f: impl FnOnce(&mut Scratch, GradDst<'_>) -> (f64, f64),
) -> (f64, f64) {
    match out {
        None => f(&mut sc.reference, None),
        Some(o) => {
            sc.g64.clear();
            sc.g64.resize(v, 0.0);
            let res = f(&mut sc.reference, Some((&mut sc.g64, soft, ce)));
            store_f64_row(&sc.g64, o);
            res
        }
    }
}

/// The student logits of a fast-path call: read from a view (the gradient goes into a new array), or
/// a row-major buffer that the gradient overwrites (`*_in_place`).
pub(crate) enum Student<'a, T> {
    View(ArrayView2<'a, T>),
    InPlace(&'a mut [T]),
}

/// The fast paths' driver: rows in parallel (each row on its own, so the thread count does not change
/// any bit), per-row `(soft, cross-entropy)` results summed in row order by [`reduce_rows`]. `row(r,
/// label, soft, ce, s_row, out, scratch)` computes kept row `r` from the student row `s_row` (label
/// already dropped when there is no cross-entropy term), writing its gradient scaled by `soft`/`ce`
/// into `out` when given. With [`Student::InPlace`] each row is copied into per-worker scratch before
/// its gradient overwrites it (ignored rows become 0) and no array is returned.
pub(crate) fn fast_drive<T: Element>(
    op: &'static str,
    plan: &Plan,
    job: &FastJob,
    student: Student<'_, T>,
    row: impl Fn(
        usize,
        Option<usize>,
        f64,
        f64,
        ArrayView1<'_, T>,
        Option<&mut [T]>,
        &mut FastScratch,
    ) -> (f64, f64)
    + Sync,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let (rows, v) = (plan.rows, plan.classes);
    let min_len = min_rows_per_task(v);
    let cfg = plan.cfg;
    let mut per_row = crate::base::array::try_vec(op, "rows", rows)?;
    per_row.resize(rows, (0.0f64, 0.0f64));
    // `mapped`: the worker's buffer of the student row after the plan's logit map (unused without one)
    let one = |r: usize,
               s_row: ArrayView1<'_, T>,
               out: Option<&mut [T]>,
               sc: &mut FastScratch,
               mapped: &mut Vec<T>|
     -> (f64, f64) {
        let Some(RowKind::Keep(label)) = plan.kinds.get(r) else { return (0.0, 0.0) };
        let label = if cfg.ce_on { *label } else { None };
        let g = job.up.as_ref().map_or(1.0, |u| u.at(r));
        let (soft, ce) = (g * job.soft_base, g * job.ce_base);
        let Some(m) = plan.map else { return row(r, label, soft, ce, s_row, out, sc) };
        mapped.clear();
        mapped.extend(s_row.iter().map(|&x| to_t::<T>(m.apply(x.to_acc().f64()))));
        let mut out = out;
        let res = row(r, label, soft, ce, ArrayView1::from(mapped.as_slice()), out.as_deref_mut(), sc);
        if let Some(o) = out {
            for (gi, &y) in o.iter_mut().zip(mapped.iter()) {
                *gi = to_t(gi.to_acc().f64() * m.slope(y.to_acc().f64()));
            }
        }
        res
    };
    let grad = match (student, job.up.is_some()) {
        (Student::InPlace(buf), true) if v > 0 => {
            buf.par_chunks_mut(v)
                .zip(per_row.par_iter_mut())
                .enumerate()
                .with_min_len(min_len)
                .for_each_init(
                    || (FastScratch::default(), Vec::<T>::new(), Vec::<T>::new()),
                    |(sc, copy, mapped), (r, (o, slot))| {
                        if !matches!(plan.kinds.get(r), Some(RowKind::Keep(_))) {
                            o.fill(zero_t());
                            return;
                        }
                        copy.clear();
                        copy.extend_from_slice(o);
                        *slot = one(r, ArrayView1::from(copy.as_slice()), Some(o), sc, mapped);
                    },
                );
            None
        }
        (Student::InPlace(buf), _) => {
            let s = ArrayView2::from_shape((rows, v), &*buf)
                .map_err(|e| Error::too_large(op, "student", e.to_string()))?;
            loss_rows(&mut per_row, min_len, |r, sc, mapped| one(r, s.row(r), None, sc, mapped));
            None
        }
        (Student::View(s), true) => {
            let numel = checked_numel(op, "student", &[rows, v])?;
            let mut buf = crate::kernels::alloc::try_zeroed::<T>(op, "gradient", numel)?;
            buf.par_chunks_mut(v)
                .zip(per_row.par_iter_mut())
                .enumerate()
                .with_min_len(min_len)
                .for_each_init(
                    || (FastScratch::default(), Vec::<T>::new()),
                    |(sc, mapped), (r, (o, slot))| *slot = one(r, s.row(r), Some(o), sc, mapped),
                );
            Some(
                Array2::from_shape_vec((rows, v), buf)
                    .map_err(|e| Error::too_large(op, "gradient", e.to_string()))?,
            )
        }
        (Student::View(s), false) => {
            loss_rows(&mut per_row, min_len, |r, sc, mapped| one(r, s.row(r), None, sc, mapped));
            None
        }
    };
    Ok((reduce_rows(op, plan, &per_row)?, grad))
}

/// `per_row[r] = f(r, scratch, row buffer)` for every row, in parallel (the loss alone).
pub(crate) fn loss_rows<T: Element>(
    per_row: &mut [(f64, f64)],
    min_len: usize,
    f: impl Fn(usize, &mut FastScratch, &mut Vec<T>) -> (f64, f64) + Sync,
) {
    per_row
        .par_iter_mut()
        .enumerate()
        .with_min_len(min_len)
        .for_each_init(|| (FastScratch::default(), Vec::new()), |(sc, b), (r, slot)| *slot = f(r, sc, b));
}

/// [`topk_impl`] on the fast path: the dense row work (the student's log-sum-exps, the tail's, the
/// dense gradient pass) in the `f32` kernel [`Kernels::topk_row_f32`], the `k` buckets in `f64` as
/// the reference does them ([`bucket_divergence`]).
pub(crate) fn fast_topk<T: Element>(
    s: Student<'_, T>,
    idx: ArrayView2<'_, i64>,
    lq: ArrayView2<'_, T>,
    plan: &Plan,
    job: &FastJob,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let v = plan.classes;
    let cfg = plan.cfg;
    fast_drive(OP_TOPK, plan, job, s, |r, label, soft_c, ce_c, s_row, out, sc| {
        let mut out = out;
        let FastScratch { s: sbuf, g, reference: rs, .. } = &mut *sc;
        rs.idx.clear();
        rs.idx.extend(idx.row(r).iter().map(|&i| i as usize));
        gather(lq.row(r), &mut rs.t);
        let sr = row_f32(s_row, sbuf);
        let coef = (soft_c, ce_c);
        if let Some(res) = topk_fast_row(sr, label, &cfg, out.as_deref_mut(), coef, g, rs) {
            return res;
        }
        // a non-finite row: the reference, as `engine` runs it
        reference_row(v, out, soft_c, ce_c, sc, |rs, grad| {
            gather(s_row, &mut rs.s);
            if rs.mark.len() != v {
                rs.mark.clear();
                rs.mark.resize(v, false);
            }
            topk_row(rs, label, &cfg, grad)
        })
    })
}

/// One row of [`fast_topk`] (`rs.idx`, `rs.t` hold the row's teacher indices and log-probabilities):
/// the loss terms `(soft, cross-entropy)`, and with `out` the gradient scaled by `coef = (soft,
/// ce)`. `None` for a row the kernel hands back (then `out` holds nothing of use).
pub(crate) fn topk_fast_row<T: Element>(
    s: &[f32],
    label: Option<usize>,
    cfg: &RowCfg,
    out: Option<&mut [T]>,
    (soft_c, ce_c): (f64, f64),
    cache: &mut Vec<f32>,
    rs: &mut Scratch,
) -> Option<(f64, f64)> {
    let n = s.len();
    let Scratch { t: lq_in, idx, lp, lq, e, .. } = rs;
    let (idx, lq_in): (&[usize], &[f64]) = (idx, lq_in);
    let kcfg = TopkRowCfg { temp: cfg.temp, tail: cfg.add_tail, ce: label.is_some() };
    let write = out.is_some();
    let direct = write && T::DTYPE == crate::DType::F32;
    // the kernel's cache: the gradient row itself for f32, else `cache` (rounded into `rest` at the end)
    let (buf, rest): (&mut [f32], Option<&mut [T]>) = if direct {
        (T::as_f32_mut(out?)?, None)
    } else if write || cfg.add_tail {
        cache.resize(n, 0.0);
        (cache.as_mut_slice(), out)
    } else {
        (&mut [], None)
    };
    let (mut soft, mut gsum, mut c_tail) = (0.0f64, 0.0f64, 0.0f64);
    let mut finish = |sums: TopkSums| -> Option<TopkScale> {
        lp.clear();
        lq.clear();
        for (&i, &q) in idx.iter().zip(lq_in) {
            lp.push(*s.get(i)? as f64 / cfg.temp - sums.lse_s);
            lq.push(q);
        }
        if cfg.add_tail {
            lp.push(sums.lse_tail - sums.lse_s);
            lq.push(log1mexp(row_lse(lq_in, 1.0)));
        }
        soft = bucket_divergence(lp, lq, cfg.div, e);
        gsum = e.iter().sum();
        let e_tail = if cfg.add_tail { e.last().copied().unwrap_or(0.0) } else { 0.0 };
        let tail_on = cfg.add_tail && e_tail != 0.0 && sums.lse_tail > NEG_INF;
        c_tail = if tail_on { soft_c * e_tail } else { 0.0 };
        Some(TopkScale { c_p: -soft_c * gsum, c_tail, c_ce: if label.is_some() { ce_c } else { 0.0 } })
    };
    let sums = Kernels::new().topk_row_f32(s, idx, kcfg, buf, write, &mut finish)?;
    let ce = match label {
        Some(y) => sums.lse1 - *s.get(y)? as f64,
        None => 0.0,
    };
    if write {
        // the top-k entries: c·(e_b − p_i·Σe) (+ the cross-entropy's softmax), then the label's −c_ce
        for ((&i, &eb), &lpb) in idx.iter().zip(e.iter()).zip(lp.iter()) {
            let mut v = soft_c * (eb - lpb.exp() * gsum);
            if label.is_some() {
                v += ce_c * (*s.get(i)? as f64 - sums.lse1).exp();
            }
            *buf.get_mut(i)? = v as f32;
        }
        // the label's entry in f64 from its terms, so that `softmax(s)_y − 1` cancels exactly (as in
        // the reference) instead of against an f32 rounding
        if let Some(y) = label {
            let a = *s.get(y)? as f64;
            let soft_part = match idx.iter().position(|&i| i == y) {
                Some(j) => soft_c * (e.get(j)? - lp.get(j)?.exp() * gsum),
                None => {
                    let p = (a / cfg.temp - sums.lse_s).exp();
                    let tail =
                        if c_tail != 0.0 { c_tail * (a / cfg.temp - sums.lse_tail).exp() } else { 0.0 };
                    -soft_c * p * gsum + tail
                }
            };
            *buf.get_mut(y)? = (soft_part + ce_c * ((a - sums.lse1).exp() - 1.0)) as f32;
        }
        if let Some(o) = rest {
            crate::kernels::convert::narrow(buf, o);
        }
    }
    Some((soft, ce))
}
