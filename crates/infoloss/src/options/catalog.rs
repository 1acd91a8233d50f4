//! The catalog: every loss, its options struct, gradients, in-place variant and reference equivalent.

use std::sync::LazyLock;

use crate::options::{
    BceOptions, BceWithLogitsOptions, CrossEntropyExtrasOptions, CrossEntropyOptions, DistillOptions,
    EntropyOptions, JensenShannonOptions, KlDivOptions, LinearCrossEntropyOptions, LinearDistillOptions,
    NllOptions, OptionSpec, Options, UdaOptions,
};

/// One loss of the catalog.
///
/// ```
/// use infoloss::options::catalog;
/// let kl = catalog().iter().find(|l| l.name == "kl_div").unwrap();
/// assert_eq!(kl.options_type, "KlDivOptions");
/// assert_eq!(kl.grads, &["input", "target"]);
/// assert!(kl.in_place);
/// assert_eq!(kl.options.iter().map(|o| o.name).collect::<Vec<_>>(), ["reduction", "log_target"]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LossSpec {
    /// The function's name in Rust and Python (`"cross_entropy"`).
    pub name: &'static str,
    /// The name of its options struct (`"CrossEntropyOptions"`).
    pub options_type: &'static str,
    /// Its options, in declaration order ([`Options::specs`] of the struct).
    pub options: &'static [OptionSpec],
    /// The arguments it has gradients for, by their PyTorch names (`*_backward` for the first,
    /// `*_backward_target` or a tuple for the others).
    pub grads: &'static [&'static str],
    /// Whether it has `*_with_grad_in_place` (the gradient written over the input).
    pub in_place: bool,
    /// The PyTorch or SciPy function (or recipe) it equals.
    pub pytorch: &'static str,
}

impl LossSpec {
    /// The option `name`, if the loss has it.
    pub fn option(&self, name: &str) -> Option<&'static OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// A catalog entry for the losses whose options are `O`.
fn loss<O: Options>(
    name: &'static str,
    grads: &'static [&'static str],
    in_place: bool,
    pytorch: &'static str,
) -> LossSpec {
    LossSpec { name, options_type: O::NAME, options: O::specs(), grads, in_place, pytorch }
}

/// Every loss of the crate with its options, in the order of the crate's documentation.
///
/// ```
/// use infoloss::options::{catalog, Value};
/// // every class-index loss ignores −100 by default, as PyTorch
/// for l in catalog() {
///     if let Some(ii) = l.option("ignore_index") {
///         assert_eq!(ii.default, Value::Int(-100), "{}", l.name);
///     }
/// }
/// assert!(catalog().iter().any(|l| l.name == "linear_distill" && l.option("beta").is_some()));
/// ```
pub fn catalog() -> &'static [LossSpec] {
    static CATALOG: LazyLock<Vec<LossSpec>> = LazyLock::new(|| {
        type F = f32;
        vec![
            loss::<CrossEntropyOptions<F>>(
                "cross_entropy",
                &["input"],
                true,
                "torch.nn.functional.cross_entropy",
            ),
            loss::<CrossEntropyOptions<F>>(
                "cross_entropy_probs",
                &["input", "target"],
                true,
                "torch.nn.functional.cross_entropy (probability targets)",
            ),
            loss::<NllOptions<F>>("nll_loss", &["input"], false, "torch.nn.functional.nll_loss"),
            loss::<KlDivOptions>("kl_div", &["input", "target"], true, "torch.nn.functional.kl_div"),
            loss::<BceOptions<F>>(
                "binary_cross_entropy",
                &["input", "target"],
                true,
                "torch.nn.functional.binary_cross_entropy",
            ),
            loss::<BceWithLogitsOptions<F>>(
                "binary_cross_entropy_with_logits",
                &["input", "target"],
                true,
                "torch.nn.functional.binary_cross_entropy_with_logits",
            ),
            loss::<EntropyOptions>("entropy", &["pk", "qk"], false, "scipy.stats.entropy"),
            loss::<EntropyOptions>(
                "shannon_cross_entropy",
                &["pk", "qk"],
                false,
                "scipy.stats.entropy(pk) + scipy.stats.entropy(pk, qk)",
            ),
            loss::<JensenShannonOptions>(
                "jensenshannon",
                &["p", "q"],
                false,
                "scipy.spatial.distance.jensenshannon",
            ),
            loss::<DistillOptions>(
                "distill",
                &["student_logits"],
                true,
                "alpha·T²·F.kl_div(F.log_softmax(s/T), F.log_softmax(t/T), 'batchmean', log_target=True) \
                 + (1 − alpha)·F.cross_entropy(s, labels)",
            ),
            loss::<DistillOptions>(
                "distill_topk",
                &["student_logits"],
                true,
                "distill against a stored top-k teacher (TRL/DistillKit sparse KD)",
            ),
            loss::<UdaOptions>(
                "uda_consistency",
                &["aug_logits"],
                false,
                "UDA's KL(softmax(ori/T) ‖ softmax(aug)) with a confidence mask (Xie et al. 2019)",
            ),
            loss::<CrossEntropyExtrasOptions<F>>(
                "cross_entropy_extras",
                &["input"],
                false,
                "F.cross_entropy(softcap·tanh(x/softcap), …) + lse_square_scale·lse² (Liger's cross-entropy)",
            ),
            loss::<LinearCrossEntropyOptions<F>>(
                "linear_cross_entropy",
                &["input", "linear_weight", "linear_bias"],
                false,
                "F.cross_entropy(F.linear(input, linear_weight, linear_bias), target, …)",
            ),
            loss::<LinearDistillOptions>(
                "linear_distill",
                &["student_hidden", "student_weight", "student_bias"],
                false,
                "distill(F.linear(student_hidden, …), F.linear(teacher_hidden, …), labels, …)",
            ),
            loss::<LinearDistillOptions>(
                "linear_distill_topk",
                &["student_hidden", "student_weight", "student_bias"],
                false,
                "distill_topk(F.linear(student_hidden, …), stored teacher top-k (topk_indices, topk_logprobs), …)",
            ),
        ]
    });
    &CATALOG
}
