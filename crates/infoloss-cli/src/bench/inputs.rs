//! The inputs of the ops: random logits, probabilities, targets and weights of one size, and their candle
//! tensors.

use candle_core::{Device, Tensor, WithDType};
use infoloss::Element;
use infoloss::ndarray::{Array, Array1, Array2, Dimension};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The N×V inputs of the row-wise ops, computed once per size and dtype (values drawn in f64, then rounded).
pub(super) struct Inputs<T> {
    pub(super) logits: Array2<T>,
    pub(super) logits2: Array2<T>,
    pub(super) topk_idx: Array2<i64>,
    pub(super) topk_lp: Array2<T>,
    pub(super) logp: Array2<T>,
    /// `ln` of `probs2` (the log-target of `kl-log`, computed once, outside the timed calls).
    pub(super) logq: Array2<T>,
    pub(super) probs: Array2<T>,
    pub(super) probs2: Array2<T>,
    pub(super) targets: Array1<i64>,
    pub(super) unit: Array2<T>,
    pub(super) binary: Array2<T>,
    pub(super) weight: Array1<T>,
    pub(super) pos_weight: Array1<T>,
    /// Ones, one per row: the upstream gradient of the per-row information measures' backwards.
    pub(super) row_ones: Array1<T>,
    /// A copy of `logits` the in-place ops overwrite with their gradient (its values change from one
    /// repetition to the next; the work per element does not).
    pub(super) scratch: std::cell::RefCell<Array2<T>>,
    /// A copy of `unit` for `bce-inplace`, made on first use and restored before each repetition (a
    /// gradient is no input of BCE: it leaves `[0, 1]`).
    pub(super) unit_scratch: std::cell::RefCell<Array2<T>>,
}

/// The inputs for `rows × cols`, from `seed`.
pub(super) fn make_inputs<T: Element>(rows: usize, cols: usize, seed: u64) -> Inputs<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    let logits64 = Array2::from_shape_fn((rows, cols), |_| rng.random_range(-4.0..4.0f64));
    let lse = |a: &Array2<f64>| {
        let mut out = a.clone();
        for mut row in out.rows_mut() {
            let m = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            let l = m + s.ln();
            row.mapv_inplace(|v| v - l);
        }
        out
    };
    let logp64 = lse(&logits64);
    let other = Array2::from_shape_fn((rows, cols), |_| rng.random_range(-4.0..4.0f64));
    let logq64 = lse(&other);
    let conv = |a: &Array2<f64>| a.mapv(|v| T::from_acc(<T::Acc as infoloss::Real>::c(v)));
    let targets =
        Array1::from_shape_fn(rows, |i| if i % 17 == 5 { -100 } else { rng.random_range(0..cols as i64) });
    // A sparse teacher: the top-64 classes of `other` per row with their log-probabilities at T = 2.
    let k = 64.min(cols);
    let mut topk_idx = Array2::<i64>::zeros((rows, k));
    let mut topk_lp = Array2::<f64>::zeros((rows, k));
    for (r, row) in other.rows().into_iter().enumerate() {
        let mut order: Vec<usize> = (0..cols).collect();
        order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
        let m = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v / 2.0));
        let l = m + row.iter().map(|v| (v / 2.0 - m).exp()).sum::<f64>().ln();
        for (j, &c) in order[..k].iter().enumerate() {
            topk_idx[[r, j]] = c as i64;
            topk_lp[[r, j]] = row[c] / 2.0 - l;
        }
    }
    let logits = conv(&logits64);
    Inputs {
        scratch: std::cell::RefCell::new(logits.clone()),
        logits2: conv(&other),
        topk_idx,
        topk_lp: conv(&topk_lp),
        logits,
        logp: conv(&logp64),
        logq: conv(&logq64),
        probs: conv(&logp64.mapv(f64::exp)),
        probs2: conv(&logq64.mapv(f64::exp)),
        targets,
        unit: conv(&Array2::from_shape_fn((rows, cols), |_| rng.random_range(0.001..0.999f64))),
        unit_scratch: std::cell::RefCell::new(Array2::from_shape_vec((0, 0), Vec::new()).unwrap_or_default()),
        binary: conv(&Array2::from_shape_fn((rows, cols), |_| if rng.random_bool(0.3) { 1.0 } else { 0.0 })),
        weight: conv(&Array2::from_shape_fn((1, cols), |_| rng.random_range(0.5..2.0f64))).row(0).to_owned(),
        row_ones: conv(&Array2::ones((1, rows))).row(0).to_owned(),
        pos_weight: conv(&Array2::from_shape_fn((1, cols), |_| rng.random_range(1.0..3.0f64)))
            .row(0)
            .to_owned(),
    }
}

/// `a` as a contiguous CPU tensor (the inputs of the `candle-*` ops: the same values as [`Inputs`]).
pub(super) fn tensor<T: WithDType, D: Dimension>(a: &Array<T, D>) -> candle_core::Result<Tensor> {
    Tensor::from_slice(a.as_standard_layout().as_slice().unwrap_or(&[]), a.shape(), &Device::Cpu)
}
