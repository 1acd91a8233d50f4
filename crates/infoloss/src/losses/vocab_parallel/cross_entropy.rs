//! Cross-entropy (with label smoothing over the global vocabulary, class weights, z-loss and softcap)
//! on one rank's slice of the logits.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::collective::Collective;
use super::layout::{VocabShard, check_layout, check_len, check_slice, fingerprint};
use super::rows::{cap_slope, capped, exps, for_each_row, per_row, row_max, with_scratch};
use crate::base::element::Real;
use crate::base::shape::ensure_shapes;
use crate::{CrossEntropyExtrasOptions, Element, Error, Loss, Reduction, Result};

const OP: &str = "vocab_parallel_cross_entropy";

/// Values per row that [`CrossEntropyShard::local_sums`] returns: the sum of `exp(x̃ − M)`, the target's
/// capped logit, the target's class weight, and `Σ_k w_k·x̃_k` (the label-smoothing term).
const SUMS_PER_ROW: usize = 4;

/// What a vocab-parallel cross-entropy returns on each rank.
#[derive(Debug, Clone, PartialEq)]
pub struct VocabParallelCrossEntropyOutput<T> {
    /// The loss (the same on every rank): cross-entropy + z-loss, reduced as asked.
    pub loss: Loss<T>,
    /// The z-loss part alone, reduced like the loss.
    pub z_loss: Loss<T>,
    /// The gradient of the loss wrt this rank's logits `(N, len)`, for an upstream gradient of 1 (all
    /// ones for `Reduction::None`); empty `(0, 0)` when the gradient was not asked for.
    pub grad: Array2<T>,
    /// The per-row log-sum-exp of the whole vocabulary's (capped) logits, `(N,)`.
    pub lse: Array1<T>,
}

/// One rank's part of a vocab-parallel cross-entropy, run as three local steps between two
/// all-reductions (the engine does the communication):
///
/// 1. [`new`](Self::new) checks the inputs and applies the softcap; [`local_max`](Self::local_max)
///    gives `N` row maxima → all-reduce **max**;
/// 2. [`local_sums`](Self::local_sums) gives `4·N + 1` sums → all-reduce **sum**;
/// 3. [`finish`](Self::finish) gives the loss (the same on every rank) and this rank's gradient; no
///    communication.
///
/// [`vocab_parallel_cross_entropy_with_grad`](super::vocab_parallel_cross_entropy_with_grad) runs the
/// three steps over a [`Collective`]. The formulas are those of
/// [`cross_entropy_extras`](crate::cross_entropy_extras) with `C` = the **whole** vocabulary: label
/// smoothing spreads `ε` over every class of every rank (Megatron averages over the local slice only).
///
/// The shard owns what it needs between the steps (an `f64` copy of the capped logits, which becomes
/// the gradient; the targets; the weight slice), so an engine may keep it across calls.
pub struct CrossEntropyShard<T: Element> {
    target: Vec<i64>,
    shard: VocabShard,
    /// The options without the weight (held in `weight`).
    opts: CrossEntropyExtrasOptions<'static, T>,
    /// This slice's class weights, if any.
    weight: Option<Vec<f64>>,
    /// The capped logits `x̃` (`f64`, not rounded), later the gradient.
    buf: Array2<f64>,
    /// The global row maxima, once known.
    max: Vec<f64>,
}

impl<T: Element> CrossEntropyShard<T> {
    /// Checks the inputs of this rank and computes its capped logits.
    ///
    /// `logits` is `(N, shard.len)`; `target` is `(N,)`, the same on every rank, with class indices of
    /// the whole vocabulary (or `ignore_index`); `opts.weight`, if any, is this rank's slice `(len,)`
    /// of the class weights. `return_lse`/`return_token_accuracy` are ignored (the lse is always
    /// returned; the accuracy is not computed).
    ///
    /// Errors: shapes (naming both), a target outside `[0, total)`, an option out of range, as
    /// [`cross_entropy_extras`](crate::cross_entropy_extras).
    pub fn new(
        logits: ArrayView2<'_, T>,
        target: ArrayView1<'_, i64>,
        shard: VocabShard,
        opts: &CrossEntropyExtrasOptions<'_, T>,
    ) -> Result<Self> {
        let target = target.to_vec();
        check_slice(
            OP,
            ("logits", logits.shape()),
            None,
            &shard,
            Some(("target", &target)),
            opts.ignore_index,
        )?;
        if let Some(w) = &opts.weight {
            let want = [shard.len];
            ensure_shapes(
                w.len() == shard.len,
                OP,
                ("weight", w.shape()),
                ("vocab slice (len,)", &want),
                "must be equal",
            )?;
        }
        check_options(opts)?;
        let buf = capped(logits, 1.0, opts.softcap);
        let weight = opts.weight.map(|w| w.iter().map(|v| v.to_acc().f64()).collect());
        let opts = CrossEntropyExtrasOptions { weight: None, ..opts.clone() };
        Ok(CrossEntropyShard { target, shard, opts, weight, buf, max: Vec::new() })
    }

    /// Step 1: the maximum of each row of this rank's capped logits (`-inf` for an empty slice).
    pub fn local_max(&self) -> Vec<f64> {
        per_row::<1>(self.buf.nrows(), |r, _| [row_max(self.buf.row(r))])
    }

    /// Step 2: given the global row maxima `M` (`N`), this rank's `4·N + 1` sums, to be summed over
    /// the ranks: per row `Σ exp(x̃ − M)`, the target's `x̃` and class weight (0 unless the target is
    /// in this slice), `Σ w·x̃` (0 without label smoothing), then `Σ w` over the slice.
    pub fn local_sums(&mut self, global_max: &[f64]) -> Result<Vec<f64>> {
        let rows = self.buf.nrows();
        check_len(OP, "global_max", global_max.len(), rows, "local_max")?;
        self.max = global_max.to_vec();
        let smoothing = self.opts.label_smoothing > 0.0;
        let w = |k: usize| self.weight.as_ref().map_or(1.0, |w| w[k]);
        let mut out = per_row::<SUMS_PER_ROW>(rows, |r, [scratch, ..]| {
            let row = self.buf.row(r);
            let m = global_max[r];
            let z = exps(scratch, row.iter().map(|&v| v - m)).iter().sum();
            let y = self.target[r];
            let (xt, wt) = if y != self.opts.ignore_index && self.shard.contains(y as usize) {
                let k = y as usize - self.shard.start;
                (row[k], w(k))
            } else {
                (0.0, 0.0)
            };
            let wx = if smoothing { row.iter().enumerate().map(|(k, &v)| w(k) * v).sum() } else { 0.0 };
            [z, xt, wt, wx]
        });
        out.push((0..self.shard.len).map(w).sum());
        Ok(out)
    }

    /// Step 3: the loss and, if `want_grad`, this rank's gradient, from the global sums of step 2.
    pub fn finish(
        mut self,
        global_sums: &[f64],
        want_grad: bool,
    ) -> Result<VocabParallelCrossEntropyOutput<T>> {
        let rows = self.buf.nrows();
        check_len(OP, "global_max", self.max.len(), rows, "local_max (local_sums must run first)")?;
        check_len(OP, "global_sums", global_sums.len(), SUMS_PER_ROW * rows + 1, "local_sums")?;
        let o = &self.opts;
        let (eps, s, c_all) = (o.label_smoothing, o.lse_square_scale, self.shard.total as f64);
        let (z, rest) = global_sums.split_at(rows);
        let (xt, rest) = rest.split_at(rows);
        let (wt, rest) = rest.split_at(rows);
        let (wx, wsum) = rest.split_at(rows);
        let wsum = wsum[0];
        let kept: Vec<bool> = self.target.iter().map(|&y| y != o.ignore_index).collect();
        let lse: Vec<f64> = (0..rows).map(|r| self.max[r] + z[r].ln()).collect();
        let ce: Vec<f64> = (0..rows)
            .map(|r| {
                if !kept[r] {
                    return 0.0;
                }
                let nll = (1.0 - eps) * wt[r] * (lse[r] - xt[r]);
                if eps > 0.0 { nll + eps / c_all * (lse[r] * wsum - wx[r]) } else { nll }
            })
            .collect();
        let zl: Vec<f64> =
            (0..rows).map(|r| if kept[r] && s != 0.0 { s * lse[r] * lse[r] } else { 0.0 }).collect();
        let n = kept.iter().filter(|&&k| k).count() as f64;
        let w_total: f64 = (0..rows).filter(|&r| kept[r]).map(|r| wt[r]).sum();
        let (ce_div, z_div) = match o.reduction {
            Reduction::Mean => (w_total, n),
            _ => (1.0, 1.0),
        };
        let as_t = |v: f64| T::from_acc(<T::Acc as Real>::c(v));
        let reduce = |v: &[f64], div: f64| match o.reduction {
            Reduction::None => {
                Loss::Elementwise(v.iter().map(|&x| as_t(x)).collect::<Array1<T>>().into_dyn())
            }
            _ => Loss::Scalar(as_t(v.iter().sum::<f64>() / div)),
        };
        // Without a z-loss its term is 0, not 0/0 (as `cross_entropy_extras`).
        let z_on = s != 0.0;
        let total: Vec<f64> = ce.iter().zip(&zl).map(|(a, b)| a + b).collect();
        let loss = match o.reduction {
            Reduction::Mean => {
                let zm = if z_on { zl.iter().sum::<f64>() / z_div } else { 0.0 };
                Loss::Scalar(as_t(ce.iter().sum::<f64>() / ce_div + zm))
            }
            _ => reduce(&total, 1.0),
        };
        let z_loss = if z_on { reduce(&zl, z_div) } else { reduce(&zl, 1.0) };
        let grad = if want_grad {
            let (g_ce, g_z) =
                if o.reduction == Reduction::Mean { (1.0 / ce_div, 1.0 / z_div) } else { (1.0, 1.0) };
            let shard = self.shard;
            let cap = o.softcap;
            let (weight, target) = (&self.weight, &self.target);
            for_each_row(&mut self.buf, |r, row| {
                if !kept[r] {
                    row.fill(0.0);
                    return;
                }
                let y = target[r];
                let local_y = shard.contains(y as usize).then(|| y as usize - shard.start);
                with_scratch(|[scratch, ..]| {
                    let probs = exps(scratch, row.iter().map(|&x| x - lse[r]));
                    for ((k, g), &p) in row.iter_mut().enumerate().zip(probs) {
                        let xc = *g;
                        let wk = weight.as_ref().map_or(1.0, |w| w[k]);
                        let onehot = if local_y == Some(k) { 1.0 } else { 0.0 };
                        let mut d = (1.0 - eps) * wt[r] * (p - onehot) * g_ce + 2.0 * s * lse[r] * p * g_z;
                        if eps > 0.0 {
                            d += eps / c_all * (p * wsum - wk) * g_ce;
                        }
                        *g = d * cap.map_or(1.0, |c| cap_slope(xc, 1.0, c));
                    }
                });
            });
            self.buf.mapv(as_t)
        } else {
            Array2::default((0, 0))
        };
        Ok(VocabParallelCrossEntropyOutput {
            loss,
            z_loss,
            grad,
            lse: lse.iter().map(|&v| as_t(v)).collect(),
        })
    }

    /// The number that [`check_layout`] compares across ranks: the targets and the shared options.
    pub(crate) fn fingerprint(&self) -> f64 {
        let o = &self.opts;
        let red = o.reduction as u8 as f64;
        fingerprint(
            self.target.iter().copied(),
            &[o.ignore_index as f64, red, o.label_smoothing, o.lse_square_scale, o.softcap.unwrap_or(0.0)],
        )
    }

    /// Runs the three steps over `comm` (after checking that the ranks agree).
    pub(crate) fn run<C: Collective + ?Sized>(
        mut self,
        comm: &C,
        want_grad: bool,
    ) -> Result<VocabParallelCrossEntropyOutput<T>> {
        check_layout(OP, comm, &self.shard, self.buf.nrows(), self.fingerprint())?;
        let mut max = self.local_max();
        comm.all_reduce_max(&mut max)?;
        let mut sums = self.local_sums(&max)?;
        comm.all_reduce_sum(&mut sums)?;
        self.finish(&sums, want_grad)
    }
}

/// The option checks of [`cross_entropy_extras`](crate::cross_entropy_extras), for a slice.
fn check_options<T>(o: &CrossEntropyExtrasOptions<'_, T>) -> Result<()> {
    if !(0.0..=1.0).contains(&o.label_smoothing) {
        return Err(Error::invalid_option(OP, "label_smoothing", o.label_smoothing, "must be in [0, 1]"));
    }
    if !o.lse_square_scale.is_finite() {
        return Err(Error::invalid_option(OP, "lse_square_scale", o.lse_square_scale, "must be finite"));
    }
    if let Some(c) = o.softcap {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid_option(OP, "softcap", c, "must be a finite number > 0"));
        }
    }
    if o.reduction == Reduction::BatchMean {
        return Err(Error::invalid_option(OP, "reduction", o.reduction, "must be mean, sum or none"));
    }
    Ok(())
}
