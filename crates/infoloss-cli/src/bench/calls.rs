//! What each op calls: the core functions, the candle ops, and the fused linear losses (timed on their own
//! inputs).

use candle_core::{Tensor, Var, WithDType};
use infoloss::ndarray::{Array1, Array2};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, Element, EntropyOptions, JensenShannonOptions,
    KlDivOptions, NllOptions, Reduction,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::inputs::{Inputs, tensor};
use super::ops::KD_DIVERGENCES;
use super::timing::time_reps;

/// Hidden size of the fused linear ops (`rows × LINEAR_HIDDEN` hidden states, `classes × LINEAR_HIDDEN` weights).
const LINEAR_HIDDEN: usize = 1024;

/// A `candle-*` op ready to time: each call runs one forward (and, except for `candle-ce-fwd` and
/// `candle-accum`, `backward()`); the gradients are dropped.
pub(super) type CandleCall = Box<dyn FnMut() -> candle_core::Result<()>>;

/// The `candle-*` op `op` on the values of `x`, its tensors made before the first call (the differentiated
/// side a `Var`).
pub(super) fn candle_call<T: Element + WithDType>(
    op: &str,
    x: &Inputs<T>,
) -> candle_core::Result<CandleCall> {
    use infoloss_candle as ic;
    type Forward = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;
    let (input, forward): (_, Forward) = match op {
        "candle-ce" | "candle-ce-fwd" => {
            let t = tensor(&x.targets)?;
            (&x.logits, Box::new(move |s| ic::cross_entropy(s, &t, &ic::CrossEntropyOptions::default())))
        }
        "candle-kl" => {
            let q = tensor(&x.probs2)?;
            let o = ic::KlDivOptions { reduction: Reduction::BatchMean, ..Default::default() };
            (&x.logp, Box::new(move |s| ic::kl_div(s, &q, &o)))
        }
        "candle-bce-logits" => {
            let y = tensor(&x.binary)?;
            let o =
                ic::BceWithLogitsOptions { pos_weight: Some(tensor(&x.pos_weight)?), ..Default::default() };
            (&x.logits, Box::new(move |s| ic::binary_cross_entropy_with_logits(s, &y, &o)))
        }
        "candle-kd" => {
            let t = tensor(&x.logits2)?;
            let o = ic::DistillOptions { temperature: 2.0, ..Default::default() };
            (&x.logits, Box::new(move |s| ic::distill(s, &t, None, &o)))
        }
        "candle-nn-ce" => {
            // candle-nn has no `ignore_index`: the ignored rows become class 0
            let t = tensor(&x.targets.mapv(|t| t.max(0) as u32))?;
            (&x.logits, Box::new(move |s| candle_nn::loss::cross_entropy(s, &t)))
        }
        "candle-accum" => {
            // what candle's backprop does with every gradient it receives
            let grad = tensor(&x.logits2)?;
            (&x.logits, Box::new(move |s| s.zeros_like()?.add(&grad)))
        }
        other => unreachable!("op {other} validated by parse_ops"),
    };
    let input = Var::from_tensor(&tensor(input)?)?;
    let backward = !matches!(op, "candle-ce-fwd" | "candle-accum");
    Ok(Box::new(move || {
        let out = std::hint::black_box(forward(input.as_tensor())?);
        if backward {
            drop(std::hint::black_box(out.backward()?));
        }
        Ok(())
    }))
}

/// One call of the core op `op` on `x`; its results are dropped.
pub(super) fn run_op<T: Element>(op: &str, x: &Inputs<T>) -> Result<(), infoloss::Error> {
    let (logits, logits2, targets, binary) =
        (x.logits.view(), x.logits2.view(), x.targets.view(), x.binary.view());
    let (logp, probs, probs2) = (x.logp.view(), x.probs.view(), x.probs2.view());
    // the in-place ops' gradients overwrite it (nothing else borrows it while an op runs)
    let mut scratch = x.scratch.borrow_mut();
    let bm = KlDivOptions { reduction: Reduction::BatchMean, ..Default::default() };
    let axis1 = EntropyOptions { axis: 1, ..Default::default() };
    let js1 = JensenShannonOptions { axis: 1, ..Default::default() };
    let pos_weight =
        BceWithLogitsOptions { pos_weight: Some(x.pos_weight.view().into_dyn()), ..Default::default() };
    let ce = |o: &CrossEntropyOptions<'_, T>| infoloss::cross_entropy_with_grad(logits, targets, o).map(drop);
    match op {
        "ce" => ce(&Default::default())?,
        "ce-ls" => ce(&CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() })?,
        "ce-weight" => ce(&CrossEntropyOptions { weight: Some(x.weight.view()), ..Default::default() })?,
        "ce-probs" => drop(infoloss::cross_entropy_probs_with_grad(logits, probs, &Default::default())?),
        "ce-inplace" => drop(infoloss::cross_entropy_with_grad_in_place(
            scratch.view_mut(),
            targets,
            &Default::default(),
        )?),
        "ce-probs-inplace" => drop(infoloss::cross_entropy_probs_with_grad_in_place(
            scratch.view_mut(),
            probs,
            &Default::default(),
        )?),
        "nll" => drop(infoloss::nll_loss_with_grad(logp, targets, &NllOptions::default())?),
        "log-softmax" => drop(infoloss::log_softmax(logits, 1)?),
        "softmax" => drop(infoloss::softmax(logits, 1)?),
        "log-softmax-bwd" => drop(infoloss::log_softmax_backward(logp, logits2, 1)?),
        "logsumexp" => drop(infoloss::logsumexp(logits, 1)?),
        "kl" => drop(infoloss::kl_div_with_grad(logp, probs2, &bm)?),
        "kl-log" => {
            drop(infoloss::kl_div_with_grad(logp, x.logq.view(), &KlDivOptions { log_target: true, ..bm })?)
        }
        "kl-inplace" => drop(infoloss::kl_div_with_grad_in_place(scratch.view_mut(), probs2, &bm)?),
        "bce" => {
            drop(infoloss::binary_cross_entropy_with_grad(x.unit.view(), binary, &BceOptions::default())?)
        }
        "bce-inplace" => {
            let mut unit = x.unit_scratch.borrow_mut();
            drop(infoloss::binary_cross_entropy_with_grad_in_place(
                unit.view_mut(),
                binary,
                &BceOptions::default(),
            )?)
        }
        "bce-logits" => {
            drop(infoloss::binary_cross_entropy_with_logits_with_grad(logits, binary, &pos_weight)?)
        }
        "bce-logits-inplace" => drop(infoloss::binary_cross_entropy_with_logits_with_grad_in_place(
            scratch.view_mut(),
            binary,
            &pos_weight,
        )?),
        "entropy" => drop(infoloss::entropy(probs, None, &axis1)?),
        "rel-entropy" => drop(infoloss::entropy(probs, Some(probs2), &axis1)?),
        "js" => drop(infoloss::jensenshannon(probs, probs2, &js1)?),
        "entropy-bwd" => drop(infoloss::entropy_backward(probs, None, &axis1, x.row_ones.view())?),
        "js-bwd" => drop(infoloss::jensenshannon_backward(probs, probs2, &js1, x.row_ones.view())?),
        "kd" | "kd-reverse" | "kd-jsd" | "kd-tvd" | "kd-mix" => {
            use infoloss::distill::{DistillOptions, distill_with_grad};
            use infoloss::options::{Options, Value};
            let spelling =
                KD_DIVERGENCES.iter().find(|(name, _)| *name == op).map_or("forward_kl", |(_, d)| d);
            let (labels, alpha) = if op == "kd-mix" { (Some(targets), 0.5) } else { (None, 1.0) };
            let mut o = DistillOptions { temperature: 2.0, alpha, ..Default::default() };
            o.set("divergence", Value::Str(spelling))?;
            drop(distill_with_grad(logits, logits2, labels, &o)?)
        }
        "kd-inplace" => {
            use infoloss::distill::{DistillOptions, distill_with_grad_in_place};
            let o = DistillOptions { temperature: 2.0, ..Default::default() };
            drop(distill_with_grad_in_place(scratch.view_mut(), logits2, None, &o)?)
        }
        "kd-topk" => {
            use infoloss::distill::{DistillOptions, SparseTeacher, distill_topk_with_grad};
            let t = SparseTeacher { indices: x.topk_idx.view(), logprobs: x.topk_lp.view(), add_tail: true };
            let o = DistillOptions { temperature: 2.0, ..Default::default() };
            drop(distill_topk_with_grad(logits, &t, None, &o)?)
        }
        "uda" => {
            use infoloss::uda::{UdaOptions, uda_consistency_with_grad};
            let o = UdaOptions { temperature: 0.4, confidence_threshold: Some(0.5), ..Default::default() };
            drop(uda_consistency_with_grad(logits2, logits, &o)?)
        }
        other => unreachable!("op {other} validated by parse_ops"),
    }
    Ok(())
}

/// The fused linear ops, timed on their own inputs (hidden states and weights, not N×V logits).
#[derive(Debug, Clone, Copy)]
pub(super) enum LinearOp {
    /// `linear-ce`.
    CrossEntropy,
    /// `linear-distill`.
    Distill,
    /// `linear-distill-topk`.
    DistillTopk,
}

impl LinearOp {
    /// The linear op named `name`, if it is one.
    pub(super) fn of(name: &str) -> Option<LinearOp> {
        match name {
            "linear-ce" => Some(LinearOp::CrossEntropy),
            "linear-distill" => Some(LinearOp::Distill),
            "linear-distill-topk" => Some(LinearOp::DistillTopk),
            _ => None,
        }
    }

    /// Median time of the op for `n` rows and `v` classes.
    pub(super) fn time<T: infoloss::LinearFloat>(
        self,
        n: usize,
        v: usize,
        reps: usize,
    ) -> Result<f64, infoloss::Error> {
        match self {
            LinearOp::CrossEntropy => time_linear_ce::<T>(n, v, reps),
            LinearOp::Distill => time_linear_distill::<T>(n, v, reps, None),
            LinearOp::DistillTopk => time_linear_distill::<T>(n, v, reps, Some(STORED_TOPK)),
        }
    }

    /// The elements it moves at the least for `n` rows and `v` classes.
    pub(super) fn elements(self, n: usize, v: usize) -> usize {
        let h = LINEAR_HIDDEN;
        match self {
            // hidden states and weight read, their gradients written
            LinearOp::CrossEntropy => 2 * n * h + 2 * v * h,
            // the hidden states, weights and biases of both heads read, the student's gradients written
            LinearOp::Distill => 3 * n * h + 3 * v * h + 3 * v,
            // the student's hidden states, weight and bias read and their gradients written, the stored
            // top-k read (indices counted as one element)
            LinearOp::DistillTopk => 2 * n * h + 2 * v * h + 2 * v + 2 * n * STORED_TOPK,
        }
    }
}

/// The `k` of `linear-distill-topk`'s stored teacher.
const STORED_TOPK: usize = 128;

/// Median time of `linear_distill_backward` for `n` rows and `v` classes (hidden size [`LINEAR_HIDDEN`], both
/// heads with a bias, forward KL at T = 2, automatic chunk), or with `stored_k` of `linear_distill_topk`
/// against a stored top-`k` teacher with the tail bucket (the student head alone).
fn time_linear_distill<T: infoloss::LinearFloat>(
    n: usize,
    v: usize,
    reps: usize,
    stored_k: Option<usize>,
) -> Result<f64, infoloss::Error> {
    use infoloss::distill::{DistillOptions, SparseTeacher};
    use infoloss::linear::{LinearDistillOptions, LinearHead, linear_distill_backward, linear_distill_topk};
    let h = LINEAR_HIDDEN;
    let mut rng = StdRng::seed_from_u64(0x11ea_d157);
    let mut m = |r: usize, c: usize, scale: f64| {
        Array2::from_shape_fn((r, c), |_| {
            T::from_acc(<T::Acc as infoloss::Real>::c(rng.random_range(-scale..scale)))
        })
    };
    let (xs, ws, xt, wt) = (m(n, h, 1.0), m(v, h, 0.05), m(n, h, 1.0), m(v, h, 0.05));
    let (bs, bt) = (m(1, v, 0.1).row(0).to_owned(), m(1, v, 0.1).row(0).to_owned());
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: Some(bs.view()) };
    let teacher = LinearHead { hidden: xt.view(), weight: wt.view(), bias: Some(bt.view()) };
    let opts = LinearDistillOptions {
        distill: DistillOptions { temperature: 2.0, ..Default::default() },
        ..Default::default()
    };
    // the stored teacher: k distinct classes per row, log-probabilities leaving mass for the tail
    let k = stored_k.unwrap_or(0).min(v);
    let idx = Array2::from_shape_fn((n, k), |(r, j)| ((r + j * (v / k.max(1))) % v.max(1)) as i64);
    let lq = Array2::from_shape_fn((n, k), |(_, j)| {
        T::from_acc(<T::Acc as infoloss::Real>::c(-6.0 - 0.01 * j as f64))
    });
    let stored = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
    let one = infoloss::GradOutput::one();
    let mut err = None;
    let t = time_reps(reps, || {
        let r = match stored_k {
            None => linear_distill_backward(&student, &teacher, None, None, &opts, &one),
            Some(_) => linear_distill_topk(&student, &stored, None, &opts, &one),
        };
        match r {
            Ok(out) => drop(out),
            Err(e) => err = Some(e),
        }
    });
    err.map_or(Ok(t), Err)
}

/// Median time of `linear_cross_entropy` (loss and the gradients of hidden and weight) for `n` rows and
/// `v` classes, hidden size [`LINEAR_HIDDEN`], no bias, automatic chunk.
fn time_linear_ce<T: infoloss::LinearFloat>(n: usize, v: usize, reps: usize) -> Result<f64, infoloss::Error> {
    use infoloss::linear::{LinearCrossEntropyOptions, linear_cross_entropy};
    let h = LINEAR_HIDDEN;
    let mut rng = StdRng::seed_from_u64(0x11ea_dce0);
    let mut m = |r: usize, c: usize, scale: f64| {
        Array2::from_shape_fn((r, c), |_| {
            T::from_acc(<T::Acc as infoloss::Real>::c(rng.random_range(-scale..scale)))
        })
    };
    let (x, w) = (m(n, h, 1.0), m(v, h, 0.05));
    let y = Array1::from_shape_fn(n, |i| if i % 16 == 5 { -100 } else { ((i * 7919) % v) as i64 });
    let opts = LinearCrossEntropyOptions::default();
    let mut err = None;
    let t = time_reps(reps, || match linear_cross_entropy(x.view(), w.view(), None, y.view(), &opts) {
        Ok(out) => drop(out),
        Err(e) => err = Some(e),
    });
    err.map_or(Ok(t), Err)
}
