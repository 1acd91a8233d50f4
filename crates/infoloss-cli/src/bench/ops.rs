//! The operations `infoloss bench` knows: their names, what each runs and the bytes it must move.

/// One benchmarked operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpSpec {
    /// Name on the command line.
    pub name: &'static str,
    /// What it runs.
    pub what: &'static str,
    /// Number of N×V arrays read at the least.
    pub reads: usize,
    /// Number of N×V arrays written at the least.
    pub writes: usize,
}

/// The divergence each `kd-*` op times, by its catalog spelling (`jsd` at the catalog's default beta, 0.5).
pub(super) const KD_DIVERGENCES: &[(&str, &str)] =
    &[("kd", "forward_kl"), ("kd-reverse", "reverse_kl"), ("kd-jsd", "jsd"), ("kd-tvd", "tvd")];

/// The [`OpSpec`]s of a table with one line per op: `name => what, reads, writes;`.
macro_rules! op_table {
    ($($name:literal => $what:literal, $reads:literal, $writes:literal;)+) => {
        &[$(OpSpec { name: $name, what: $what, reads: $reads, writes: $writes }),+]
    };
}

/// Every operation `infoloss bench` knows.
pub const OPS: &[OpSpec] = op_table![
    "ce" => "cross_entropy_with_grad, class targets", 1, 1;
    "ce-ls" => "cross_entropy_with_grad, label_smoothing=0.1", 1, 1;
    "ce-weight" => "cross_entropy_with_grad, weight + ignore_index", 1, 1;
    "ce-probs" => "cross_entropy_probs_with_grad, probability targets", 2, 1;
    "ce-inplace" => "cross_entropy_with_grad_in_place, class targets (gradient into the logits)", 1, 1;
    "ce-probs-inplace" => "cross_entropy_probs_with_grad_in_place (gradient into the logits)", 2, 1;
    "nll" => "nll_loss_with_grad", 0, 1;
    "log-softmax" => "log_softmax forward", 1, 1;
    "softmax" => "softmax forward", 1, 1;
    "log-softmax-bwd" => "log_softmax_backward (from the output and the upstream gradient)", 2, 1;
    "logsumexp" => "logsumexp along dim 1 (forward)", 1, 0;
    "kl" => "kl_div_with_grad(log p, p), batchmean", 2, 1;
    "kl-log" => "kl_div_with_grad, log_target=True, batchmean", 2, 1;
    "kl-inplace" => "kl_div_with_grad_in_place(log p, p), batchmean (gradient into the input)", 2, 1;
    "bce" => "binary_cross_entropy_with_grad", 2, 1;
    "bce-inplace" => "binary_cross_entropy_with_grad_in_place (gradient into the input; restored untimed)", 2, 1;
    "bce-logits" => "binary_cross_entropy_with_logits_with_grad, pos_weight", 2, 1;
    "bce-logits-inplace" => "binary_cross_entropy_with_logits_with_grad_in_place, pos_weight (gradient into the logits)", 2, 1;
    "entropy" => "entropy(p) along axis 1 (forward)", 1, 0;
    "rel-entropy" => "entropy(p, q) (relative entropy) along axis 1 (forward)", 2, 0;
    "js" => "jensenshannon(p, q) along axis 1 (forward)", 2, 0;
    "entropy-bwd" => "entropy_backward(p) along axis 1 (value and gradient, upstream ones)", 1, 1;
    "js-bwd" => "jensenshannon_backward(p, q) along axis 1 (gradients of p and q, upstream ones)", 2, 2;
    "kd" => "distill_with_grad forward KL, T=2, T² (torch: kl_div(log_softmax) x4)", 2, 1;
    "kd-inplace" => "distill_with_grad_in_place forward KL, T=2 (gradient over the student logits)", 2, 1;
    "kd-reverse" => "distill_with_grad reverse KL, T=2", 2, 1;
    "kd-jsd" => "distill_with_grad generalized JSD beta=0.5, T=2", 2, 1;
    "kd-tvd" => "distill_with_grad total variation, T=2", 2, 1;
    "kd-mix" => "distill_with_grad forward KL + CE on labels, alpha=0.5", 2, 1;
    "kd-topk" => "distill_topk_with_grad, k=64 with tail bucket", 1, 1;
    "uda" => "uda_consistency, T=0.4, threshold 0.5", 2, 1;
    "linear-ce" => "linear_cross_entropy (loss + grad hidden/weight), H=1024, f32/f64 only; bytes: inputs+grads", 0, 0;
    "linear-distill" => "linear_distill_backward, heads H=1024 with biases, forward KL T=2 (f32/f64 only; bytes: inputs+grads)", 0, 0;
    "linear-distill-topk" => "linear_distill_topk, student head H=1024 with bias vs a stored top-128 teacher + tail, forward KL T=2 (f32/f64 only; bytes: inputs+grads)", 0, 0;
    "candle-ce" => "infoloss_candle::cross_entropy + backward(), class targets (vs core ce)", 1, 1;
    "candle-ce-fwd" => "infoloss_candle::cross_entropy forward only, class targets", 1, 0;
    "candle-kl" => "infoloss_candle::kl_div(log p, p) batchmean + backward() (vs core kl)", 2, 1;
    "candle-bce-logits" => "infoloss_candle::binary_cross_entropy_with_logits, pos_weight, + backward() (vs core bce-logits)", 2, 1;
    "candle-kd" => "infoloss_candle::distill forward KL, T=2, T², + backward() (vs core kd)", 2, 1;
    "candle-nn-ce" => "candle_nn::loss::cross_entropy + backward(), no ignored rows (vs core ce)", 1, 1;
    "candle-accum" => "candle's backprop bookkeeping for one gradient: zeros_like + add (no infoloss)", 1, 1;
];

/// The core op a `candle-*` op is compared with (timed alternately in the same run).
pub(super) fn core_counterpart(op: &str) -> Option<&'static str> {
    match op {
        "candle-ce" | "candle-nn-ce" => Some("ce"),
        "candle-kl" => Some("kl"),
        "candle-bce-logits" => Some("bce-logits"),
        "candle-kd" => Some("kd"),
        _ => None,
    }
}

/// `infoloss bench` follows the core's catalog: every loss is timed (or excused), every in-place variant too, and
/// every divergence has its `kd-*` op.
#[cfg(test)]
mod catalog_check {
    use infoloss::Divergence;
    use infoloss::options::catalog;

    use super::{KD_DIVERGENCES, OPS};

    /// Losses and in-place variants without an op, and why.
    const NOT_TIMED: &[(&str, &str)] = &[
        ("shannon_cross_entropy", "entropy(p) + entropy(p, q): both are timed"),
        ("cross_entropy_extras", "the row kernel linear_cross_entropy times"),
        ("distill_topk_with_grad_in_place", "the same row kernel as kd-topk"),
    ];

    /// Whether an op's description names `function` (`name`, `name_with_grad`, `name_backward`, …).
    fn timed(function: &str) -> bool {
        OPS.iter().any(|o| {
            o.what
                .strip_prefix(function)
                .is_some_and(|rest| rest.is_empty() || !rest.starts_with(char::is_alphanumeric))
                || o.what.starts_with(&format!("{function}_with_grad"))
                || o.what.starts_with(&format!("{function}_backward"))
        })
    }

    #[test]
    fn every_loss_and_in_place_variant_is_timed() {
        let excused = |f: &str| NOT_TIMED.iter().any(|(n, _)| *n == f);
        let mut missing = Vec::new();
        for loss in catalog() {
            if !timed(loss.name) && !excused(loss.name) {
                missing.push(loss.name.to_string());
            }
            let in_place = format!("{}_with_grad_in_place", loss.name);
            if loss.in_place && !OPS.iter().any(|o| o.what.starts_with(&in_place)) && !excused(&in_place) {
                missing.push(in_place);
            }
        }
        assert!(
            missing.is_empty(),
            "no bench op (add one to OPS, or to NOT_TIMED with the reason): {missing:?}"
        );
    }

    #[test]
    fn every_divergence_has_a_kd_op() {
        let timed: Vec<&str> = KD_DIVERGENCES.iter().map(|(_, d)| *d).collect();
        assert_eq!(timed, Divergence::CHOICES, "one kd-* op per divergence of the catalog");
        assert!(KD_DIVERGENCES.iter().all(|(op, _)| OPS.iter().any(|o| o.name == *op)));
    }
}
