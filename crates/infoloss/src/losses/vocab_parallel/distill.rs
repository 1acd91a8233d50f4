//! Knowledge distillation (every divergence, temperature, T², hard-label mix, student scale and
//! softcap) on one rank's slice of the student and teacher logits.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::collective::Collective;
use super::layout::{VocabShard, check_layout, check_len, check_slice, fingerprint};
use super::rows::{cap_slope, capped, exps, for_each_row, per_row, row_max, with_scratch};
use crate::base::element::Real;
use crate::losses::distill::check_options;
use crate::options::{DistillOptions, Divergence};
use crate::{Element, Loss, Reduction, Result};

const OP: &str = "vocab_parallel_distill";

/// What a vocab-parallel distillation returns on each rank.
#[derive(Debug, Clone, PartialEq)]
pub struct VocabParallelDistillOutput<T> {
    /// The loss (the same on every rank), reduced as asked.
    pub loss: Loss<T>,
    /// The gradient wrt this rank's student logits `(N, len)` for an upstream gradient of 1 (all ones
    /// for `Reduction::None`); `(0, 0)` when not asked for.
    pub grad: Array2<T>,
}

/// The divergence as the shard steps compute it: the two generalized-JSD ends are the KLs (as
/// [`Divergence`] documents).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Div {
    Forward,
    Reverse,
    Jsd(f64),
    Tvd,
}

impl Div {
    fn of(d: Divergence) -> Self {
        match d {
            Divergence::ForwardKl | Divergence::GeneralizedJsd { beta: 0.0 } => Div::Forward,
            Divergence::ReverseKl | Divergence::GeneralizedJsd { beta: 1.0 } => Div::Reverse,
            Divergence::GeneralizedJsd { beta } => Div::Jsd(beta),
            Divergence::TotalVariation => Div::Tvd,
        }
    }
}

/// One rank's part of a vocab-parallel [`distill`](crate::distill()), run as local steps between
/// all-reductions (the engine does the communication):
///
/// 1. [`new`](Self::new), then [`local_max`](Self::local_max): `3·N` maxima (student at `T`, teacher
///    at `T`, student at 1) → all-reduce **max**;
/// 2. [`local_sums`](Self::local_sums): `6·N` sums (the three sums of exponentials, the label's
///    student logit, `Σ e_q·(t − s)/T`, `Σ e_p·(s − t)/T`) → all-reduce **sum**;
/// 3. only if [`needs_round_three`](Self::needs_round_three) (generalized JSD with `0 < β < 1`, total
///    variation, which need the global log-sum-exps before their element terms):
///    [`local_terms`](Self::local_terms): `2·N` sums → all-reduce **sum**;
/// 4. [`finish`](Self::finish): the loss and this rank's gradient, no communication.
///
/// [`vocab_parallel_distill_with_grad`](super::vocab_parallel_distill_with_grad) runs the steps over a
/// [`Collective`]. The formulas, reductions and gradients are [`distill`](crate::distill())'s with `V` =
/// the whole vocabulary.
///
/// The shard owns what it needs between the steps (`f64` copies of the transformed student, which
/// becomes the gradient, and of the tempered teacher; the labels), so an engine may keep it across calls.
pub struct DistillShard<T: Element> {
    labels: Option<Vec<i64>>,
    shard: VocabShard,
    opts: DistillOptions,
    div: Div,
    /// The transformed student logits `s'` (`f64`), later the gradient.
    buf: Array2<f64>,
    /// The teacher logits at temperature, `t/T`.
    v: Array2<f64>,
    max: Vec<f64>,
    sums: Vec<f64>,
    element: std::marker::PhantomData<T>,
}

/// The global log-sum-exps of one row, from the reduced maxima and sums.
#[derive(Debug, Clone, Copy)]
struct RowLse {
    /// Student at `T`.
    u: f64,
    /// Teacher at `T`.
    v: f64,
    /// Student at 1 (the hard-label cross-entropy).
    one: f64,
}

impl<T: Element> DistillShard<T> {
    /// Checks this rank's inputs: `student` and `teacher` `(N, shard.len)` logits of this rank's
    /// slice, `labels` `(N,)` (the same on every rank, classes of the whole vocabulary) if any.
    ///
    /// Errors: shapes naming both, a label out of range, the option errors of
    /// [`distill`](crate::distill()).
    pub fn new(
        student: ArrayView2<'_, T>,
        teacher: ArrayView2<'_, T>,
        labels: Option<ArrayView1<'_, i64>>,
        shard: VocabShard,
        opts: &DistillOptions,
    ) -> Result<Self> {
        let labels = labels.map(|l| l.to_vec());
        let targets = labels.as_deref().map(|l| ("labels", l));
        let same = Some(("teacher", teacher.shape()));
        check_slice(OP, ("student", student.shape()), same, &shard, targets, opts.ignore_index)?;
        check_options(OP, opts, labels.is_some())?;
        let t = opts.temperature;
        let buf = capped(student, opts.logit_scale, opts.softcap);
        let v = teacher.mapv(|x| x.to_acc().f64() / t);
        Ok(DistillShard {
            labels,
            shard,
            opts: *opts,
            div: Div::of(opts.divergence),
            buf,
            v,
            max: Vec::new(),
            sums: Vec::new(),
            element: std::marker::PhantomData,
        })
    }

    fn rows(&self) -> usize {
        self.buf.nrows()
    }

    /// Whether the row is dropped (its label is `ignore_index`).
    fn ignored(&self, r: usize) -> bool {
        self.labels.as_ref().is_some_and(|l| l[r] == self.opts.ignore_index)
    }

    /// The label's column in this slice, if it lies here.
    fn local_label(&self, r: usize) -> Option<usize> {
        let y = self.labels.as_ref()?[r];
        (y != self.opts.ignore_index && self.shard.contains(y as usize))
            .then(|| y as usize - self.shard.start)
    }

    /// Step 1: per row the maxima of `s'/T`, `t/T` and `s'` over this slice (`3·N`, in that order).
    pub fn local_max(&self) -> Vec<f64> {
        let n = self.rows();
        let t = self.opts.temperature;
        per_row::<3>(n, |r, _| {
            let m1 = row_max(self.buf.row(r));
            [m1 / t, row_max(self.v.row(r)), m1]
        })
    }

    /// Step 2: given the reduced maxima (`3·N`), per row `Σ exp(s'/T − M_p)`, `Σ exp(t/T − M_q)`,
    /// `Σ exp(s' − M_1)`, the label's `s'` (0 unless it is in this slice), `Σ e_q·(t − s')/T` and
    /// `Σ e_p·(s' − t)/T` (terms of zero weight skipped) — `6·N` sums.
    pub fn local_sums(&mut self, global_max: &[f64]) -> Result<Vec<f64>> {
        let n = self.rows();
        check_len(OP, "global_max", global_max.len(), 3 * n, "local_max")?;
        self.max = global_max.to_vec();
        let t = self.opts.temperature;
        Ok(per_row::<6>(n, |r, [scratch_u, scratch_v, scratch_1]| {
            let (mu, mv, m1) = (global_max[r], global_max[n + r], global_max[2 * n + r]);
            let (srow, vrow) = (self.buf.row(r), self.v.row(r));
            let eus = exps(scratch_u, srow.iter().map(|&sp| sp / t - mu));
            let evs = exps(scratch_v, vrow.iter().map(|&v| v - mv));
            let z1 = exps(scratch_1, srow.iter().map(|&sp| sp - m1)).iter().sum::<f64>();
            let (mut zu, mut zv, mut af, mut ar) = (0.0, 0.0, 0.0, 0.0);
            for (((&sp, &v), &eu), &ev) in srow.iter().zip(vrow).zip(eus).zip(evs) {
                let u = sp / t;
                zu += eu;
                zv += ev;
                if ev != 0.0 {
                    af += ev * (v - u);
                }
                if eu != 0.0 {
                    ar += eu * (u - v);
                }
            }
            let label = self.local_label(r).map_or(0.0, |k| self.buf[[r, k]]);
            [zu, zv, z1, label, af, ar]
        }))
    }

    /// Whether this divergence needs step 3 (generalized JSD with `0 < β < 1`, total variation).
    pub fn needs_round_three(&self) -> bool {
        matches!(self.div, Div::Jsd(_) | Div::Tvd) && self.opts.alpha > 0.0
    }

    fn lse(&self, r: usize) -> RowLse {
        let n = self.rows();
        let (m, z) = (&self.max, &self.sums);
        RowLse { u: m[r] + z[r].ln(), v: m[n + r] + z[n + r].ln(), one: m[2 * n + r] + z[2 * n + r].ln() }
    }

    /// Step 3 (only if [`needs_round_three`](Self::needs_round_three)): given the reduced sums of step 2,
    /// per row the slice's part of the two global sums the divergence needs — JSD: `Σ q·ln(q/m)` and
    /// `Σ p·ln(p/m)`; total variation: `Σ |p − q|` and `Σ p·σ` (`σ = ½·sign(p − q)`) — `2·N` sums.
    pub fn local_terms(&mut self, global_sums: &[f64]) -> Result<Vec<f64>> {
        self.take_sums(global_sums)?;
        let n = self.rows();
        let t = self.opts.temperature;
        let div = self.div;
        Ok(per_row::<2>(n, |r, [scratch_p, scratch_q, _]| {
            let l = self.lse(r);
            let (srow, vrow) = (self.buf.row(r), self.v.row(r));
            let ps = exps(scratch_p, srow.iter().map(|&sp| sp / t - l.u));
            let qs = exps(scratch_q, vrow.iter().map(|&v| v - l.v));
            let (mut a, mut b) = (0.0, 0.0);
            for (((&sp, &v), &p), &q) in srow.iter().zip(vrow).zip(ps).zip(qs) {
                let (lp, lq) = (sp / t - l.u, v - l.v);
                match div {
                    Div::Jsd(beta) => {
                        let lm = log_mix(lq, lp, beta);
                        if q != 0.0 {
                            a += q * (lq - lm);
                        }
                        if p != 0.0 {
                            b += p * (lp - lm);
                        }
                    }
                    _ => {
                        a += (p - q).abs();
                        b += p * sigma(p, q);
                    }
                }
            }
            [a, b]
        }))
    }

    fn take_sums(&mut self, global_sums: &[f64]) -> Result<()> {
        let n = self.rows();
        check_len(OP, "global_max", self.max.len(), 3 * n, "local_max (local_sums must run first)")?;
        check_len(OP, "global_sums", global_sums.len(), 6 * n, "local_sums")?;
        self.sums = global_sums.to_vec();
        Ok(())
    }

    /// Step 4: the loss and, if `want_grad`, this rank's gradient. `global_sums` are the reduced sums
    /// of step 2; `global_terms` those of step 3 (empty when the divergence needs no step 3).
    pub fn finish(
        mut self,
        global_sums: &[f64],
        global_terms: &[f64],
        want_grad: bool,
    ) -> Result<VocabParallelDistillOutput<T>> {
        if self.sums.is_empty() {
            self.take_sums(global_sums)?;
        }
        let n = self.rows();
        if self.needs_round_three() {
            check_len(OP, "global_terms", global_terms.len(), 2 * n, "local_terms")?;
        }
        let o = self.opts;
        let (t, alpha) = (o.temperature, o.alpha);
        let c_t = if o.t2_scaling { t * t } else { 1.0 };
        let v_all = self.shard.total as f64;
        let lses: Vec<RowLse> = (0..n).map(|r| self.lse(r)).collect();
        let sums = &self.sums;
        // Per row: the divergence and the global scalar its gradient needs.
        let mut div = vec![0.0; n];
        let mut gscalar = vec![0.0; n];
        let mut ce = vec![0.0; n];
        for r in 0..n {
            if self.ignored(r) {
                continue;
            }
            let l = lses[r];
            if alpha > 0.0 {
                (div[r], gscalar[r]) = match self.div {
                    Div::Forward => (sums[4 * n + r] / sums[n + r] - l.v + l.u, 0.0),
                    Div::Reverse => {
                        let d = sums[5 * n + r] / sums[r] - l.u + l.v;
                        (d, d)
                    }
                    Div::Jsd(beta) => {
                        let (kq, kp) = (global_terms[r], global_terms[n + r]);
                        (beta * kq + (1.0 - beta) * kp, kp)
                    }
                    Div::Tvd => (0.5 * global_terms[r], global_terms[n + r]),
                };
            }
            if alpha < 1.0 {
                ce[r] = l.one - sums[3 * n + r];
            }
        }
        let kept = (0..n).filter(|&r| !self.ignored(r)).count() as f64;
        let count = o.normalizer.unwrap_or(kept);
        let row_loss = |r: usize| {
            let soft = if alpha > 0.0 { alpha * c_t * div[r] } else { 0.0 };
            let hard = if alpha < 1.0 { (1.0 - alpha) * ce[r] } else { 0.0 };
            soft + hard
        };
        let as_t = |v: f64| T::from_acc(<T::Acc as Real>::c(v));
        let sum_of = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>();
        // (soft divisor, hard divisor) of the reduction.
        let (d_soft, d_hard) = match o.reduction {
            Reduction::BatchMean => (count, count),
            Reduction::Mean => (count * v_all, count),
            _ => (1.0, 1.0),
        };
        let loss = match o.reduction {
            Reduction::None => {
                Loss::Elementwise((0..n).map(|r| as_t(row_loss(r))).collect::<Array1<T>>().into_dyn())
            }
            Reduction::Mean => {
                let soft = if alpha > 0.0 { alpha * c_t * sum_of(&|r| div[r]) / d_soft } else { 0.0 };
                let hard = if alpha < 1.0 { (1.0 - alpha) * sum_of(&|r| ce[r]) / d_hard } else { 0.0 };
                Loss::Scalar(as_t(soft + hard))
            }
            _ => Loss::Scalar(as_t(sum_of(&|r| row_loss(r)) / d_soft)),
        };
        if !want_grad {
            return Ok(VocabParallelDistillOutput { loss, grad: Array2::default((0, 0)) });
        }
        let (soft_c, hard_c) = (alpha * c_t / t / d_soft, (1.0 - alpha) / d_hard);
        let ignored: Vec<bool> = (0..n).map(|r| self.ignored(r)).collect();
        let labels: Vec<Option<usize>> = (0..n).map(|r| self.local_label(r)).collect();
        let (v, d) = (&self.v, self.div);
        let slope = |sp: f64| o.softcap.map_or(o.logit_scale, |c| cap_slope(sp, o.logit_scale, c));
        for_each_row(&mut self.buf, |r, row| {
            if ignored[r] {
                row.fill(0.0);
                return;
            }
            let l = lses[r];
            let soft = alpha > 0.0;
            with_scratch(|[scratch_p, scratch_q, scratch_1]| {
                let ps = exps(scratch_p, row.iter().filter(|_| soft).map(|&sp| sp / t - l.u));
                let qs = exps(scratch_q, v.row(r).iter().filter(|_| soft).map(|&x| x - l.v));
                let p1s = exps(scratch_1, row.iter().filter(|_| alpha < 1.0).map(|&sp| sp - l.one));
                for (k, g) in row.iter_mut().enumerate() {
                    let sp = *g;
                    let mut grad = 0.0;
                    if soft {
                        let lp = sp / t - l.u;
                        let lq = v[[r, k]] - l.v;
                        let (p, q) = (ps[k], qs[k]);
                        let du = match d {
                            Div::Forward => p - q,
                            Div::Reverse => {
                                if p == 0.0 {
                                    0.0
                                } else {
                                    p * (lp - lq - gscalar[r])
                                }
                            }
                            Div::Jsd(beta) => {
                                if p == 0.0 {
                                    0.0
                                } else {
                                    (1.0 - beta) * p * (lp - log_mix(lq, lp, beta) - gscalar[r])
                                }
                            }
                            Div::Tvd => p * (sigma(p, q) - gscalar[r]),
                        };
                        grad += soft_c * du;
                    }
                    if alpha < 1.0 {
                        grad += hard_c * (p1s[k] - if labels[r] == Some(k) { 1.0 } else { 0.0 });
                    }
                    *g = grad * slope(sp);
                }
            });
        });
        Ok(VocabParallelDistillOutput { loss, grad: self.buf.mapv(as_t) })
    }

    /// The number that [`check_layout`] compares across ranks: the labels and the shared options.
    fn fingerprint(&self) -> f64 {
        let o = &self.opts;
        let opts = [
            o.temperature,
            o.t2_scaling as u8 as f64,
            o.divergence.beta(),
            o.alpha,
            o.ignore_index as f64,
            o.reduction as u8 as f64,
            o.normalizer.unwrap_or(0.0),
            o.logit_scale,
            o.softcap.unwrap_or(0.0),
        ];
        let labels = self.labels.iter().flatten().copied();
        fingerprint(labels, &opts)
    }

    /// Runs the steps over `comm` (after checking that the ranks agree).
    pub(crate) fn run<C: Collective + ?Sized>(
        mut self,
        comm: &C,
        want_grad: bool,
    ) -> Result<VocabParallelDistillOutput<T>> {
        check_layout(OP, comm, &self.shard, self.rows(), self.fingerprint())?;
        let mut max = self.local_max();
        comm.all_reduce_max(&mut max)?;
        let mut sums = self.local_sums(&max)?;
        comm.all_reduce_sum(&mut sums)?;
        let mut terms = Vec::new();
        if self.needs_round_three() {
            terms = self.local_terms(&sums)?;
            comm.all_reduce_sum(&mut terms)?;
        }
        self.finish(&sums, &terms, want_grad)
    }
}

/// `ln m = ln(β·q + (1−β)·p)` from `ln q`, `ln p`, as `logaddexp(ln q + ln β, ln p + ln(1−β))`.
fn log_mix(lq: f64, lp: f64, beta: f64) -> f64 {
    let (a, b) = (lq + beta.ln(), lp + (-beta).ln_1p());
    let m = a.max(b);
    if m == f64::NEG_INFINITY { m } else { m + ((a - m).exp() + (b - m).exp()).ln() }
}

/// `½·sign(p − q)`, 0 where they are equal.
fn sigma(p: f64, q: f64) -> f64 {
    if p > q {
        0.5
    } else if p < q {
        -0.5
    } else {
        0.0
    }
}
