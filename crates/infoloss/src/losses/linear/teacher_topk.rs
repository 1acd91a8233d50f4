//! The teacher's top-k per row (a bounded heap), for distilling against a sparse teacher.

use super::*;

/// The teacher's top-k of each `v`-element row of `t` (see [`TeacherTopK`]): class indices into `idx` and
/// `log_softmax(row / temp)` at them into `lq`, both `rows × k` (`k = idx.len() / rows`).
pub(crate) fn teacher_top_k<T: LinearFloat>(t: &[T], v: usize, temp: f64, idx: &mut [i64], lq: &mut [T]) {
    let rows = t.len().checked_div(v).unwrap_or(0);
    let k = idx.len().checked_div(rows).unwrap_or(0);
    if k == 0 {
        return;
    }
    t.par_chunks(v)
        .zip(idx.par_chunks_mut(k))
        .zip(lq.par_chunks_mut(k))
        .for_each_init(TopKScratch::default, |sc, ((row, ir), lr)| top_k_row(row, temp, sc, ir, lr));
}

/// A class and its logit, ordered as `torch.topk` ranks them: larger values first, a NaN above every number;
/// among equal values (and among NaNs) the lower class index first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    pub(crate) value: f64,
    pub(crate) index: usize,
}

impl Ord for Ranked {
    /// `Greater` = ranked higher.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self.value.is_nan(), other.value.is_nan()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (true, true) => other.index.cmp(&self.index),
            (false, false) => self
                .value
                .partial_cmp(&other.value)
                .unwrap_or(Ordering::Equal)
                .then(other.index.cmp(&self.index)),
        }
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Ranked {}

/// Per-thread scratch of [`top_k_row`]: the heap of the best `k` so far and the sorted result.
#[derive(Default)]
pub(crate) struct TopKScratch {
    pub(crate) heap: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>>,
    pub(crate) best: Vec<Ranked>,
}

/// One row of [`teacher_top_k`]: the `idx.len()` highest-ranked classes ([`Ranked`]), best first, in one
/// pass with a min-heap of size `k` (most entries cost one comparison with its root), and their
/// `log_softmax(row / temp)`.
pub(crate) fn top_k_row<T: LinearFloat>(
    row: &[T],
    temp: f64,
    sc: &mut TopKScratch,
    idx: &mut [i64],
    lq: &mut [T],
) {
    use std::cmp::Reverse;
    let k = idx.len().min(row.len());
    if k == 0 {
        return;
    }
    sc.heap.clear();
    for (index, x) in row.iter().enumerate() {
        let r = Ranked { value: x.f64(), index };
        if sc.heap.len() < k {
            sc.heap.push(Reverse(r));
        } else if let Some(mut lowest) = sc.heap.peek_mut() {
            if r > lowest.0 {
                *lowest = Reverse(r);
            }
        }
    }
    sc.best.clear();
    sc.best.extend(sc.heap.drain().map(|r| r.0));
    sc.best.sort_unstable_by(|a, b| b.cmp(a));
    // log_softmax(row / temp) = (x/temp − m) − ln Σ exp(x/temp − m), as PyTorch orders it; m is the largest
    // value (NaN if the row has one: then every log-probability is NaN, as in PyTorch)
    let m = sc.best.first().map_or(f64::NAN, |r| r.value / temp);
    let log_z = if m.is_finite() {
        row.iter().map(|x| (x.f64() / temp - m).exp()).sum::<f64>().ln()
    } else {
        // ±inf maxima: the online sum gives PyTorch's NaN / −inf pattern
        let mut acc = OnlineLse::EMPTY;
        for x in row {
            acc.push(x.f64() / temp);
        }
        acc.z.ln()
    };
    for ((o, l), r) in idx.iter_mut().zip(lq.iter_mut()).zip(&sc.best) {
        *o = r.index as i64;
        *l = T::c((r.value / temp - m) - log_z);
    }
}
