//! # NaN and infinity policy
//!
//! What infoloss does with non-finite values, rule by rule. The rules are PyTorch 2.15's (and SciPy
//! 1.17.1's for the SciPy-style measures in [`info`](crate::losses::info)): infoloss never "fixes" a non-finite
//! value that torch propagates, and never propagates one that torch rejects. Each rule has a test in
//! `tests/nan_policy.rs` that checks the exact values (which torch and SciPy give for the same inputs).
//!
//! In short: **non-finite values propagate; only invalid *options* and the inputs of
//! [`binary_cross_entropy`](crate::binary_cross_entropy) are errors.**
//!
//! ## Propagation
//!
//! 1. **NaN propagates through everything it enters.** A NaN logit makes its row's `softmax`,
//!    `log_softmax`, `logsumexp`, cross-entropy loss and gradient NaN; the other rows are unaffected
//!    (`reduction = none`), and a reduced loss (`mean`, `sum`, `batchmean`) that adds a NaN is NaN.
//! 2. **Only what is read can propagate.** [`nll_loss`](crate::nll_loss) reads only the target class's
//!    entry of each row, so a NaN elsewhere in the row does not reach the loss, and the gradient there is
//!    0 (torch: `nll_loss([[nan, 0]], [1]) = 0`). Ignored rows add nothing to the loss (but see rule 16
//!    for their gradient).
//! 3. **A `+inf` logit makes its whole row NaN** in `softmax`/`log_softmax` (`inf − inf`) and in the
//!    cross-entropy; `logsumexp` of such a row is `+inf`.
//! 4. **A `−inf` logit has probability 0.** The rest of the row stays finite. If the target class has
//!    the `−inf` logit, the cross-entropy is `+inf` with the finite gradient `softmax − onehot`. A row of
//!    only `−inf` has no distribution: `softmax`, `log_softmax` and the loss are NaN, `logsumexp` is `−inf`.
//!
//! ## Empty inputs and ignored targets
//!
//! 5. **The mean of nothing is NaN, the sum of nothing is 0.** An empty batch, or a batch whose class
//!    targets are all `ignore_index`, gives `mean = NaN` (0/0) and `sum = 0`, with an all-zero gradient.
//! 6. **Weights are values like any other.** A NaN class weight makes the loss of the rows whose target
//!    has it NaN, and — through the summed weight that divides `mean` — the mean NaN.
//!
//! ## Options
//!
//! 7. **`label_smoothing` is applied only when `> 0`,** as torch's `if label_smoothing > 0` does: a
//!    negative or NaN value means no smoothing; a value above 1 is an [`Error::InvalidOption`](crate::Error).
//! 8. **Other non-finite options are errors:** a NaN or non-positive `base`, a NaN or non-positive
//!    distillation or UDA `temperature`, a NaN `alpha` or `beta` give [`Error::InvalidOption`](crate::Error)
//!    naming the option.
//!
//! ## Per function
//!
//! 9. **`kl_div`** uses `xlogy(t, t) − t·input`: a zero target contributes 0 for any finite input, but
//!    `0 · (−inf) = NaN` when the input is `−inf`; a negative target is NaN (log of a negative number);
//!    with `log_target`, `t = −inf` gives NaN (`exp(−inf)·(−inf − input)`). Its target gradient is NaN
//!    where the target is 0 (torch's `xlogy` rule).
//! 10. **`binary_cross_entropy` rejects** inputs and targets outside `[0, 1]`, NaN included, with
//!     [`Error::InvalidValue`](crate::Error) naming the first such element (torch: "all elements of input
//!     should be between 0 and 1"); each log is clamped at −100, so `x = 0, t = 1` gives 100, not `inf`.
//! 11. **`binary_cross_entropy_with_logits` neither checks nor clamps:** `x = −1e4, t = 1` gives `1e4`,
//!     `x = +inf, t = 0` gives `+inf`, and `x = −inf` gives NaN (`(1 − t)·x − log σ(x)` is `0·(−inf)` for
//!     `t = 1` and `−inf + inf` for `t = 0`), as torch computes.
//! 12. **`entr`** (SciPy, torch): `entr(0) = 0`, `entr(x < 0) = −inf`, `entr(+inf) = −inf`, NaN → NaN;
//!     its gradient is `+inf` at 0 and NaN for `x < 0`.
//! 13. **`rel_entr`** (SciPy): `p = 0, q ≥ 0` → 0; `p > 0, q = 0` → `+inf`; `p > 0, q = +inf` → `−inf`;
//!     a negative argument → `+inf`; NaN → NaN.
//! 14. **`entropy`, `shannon_cross_entropy`, `jensenshannon`** (SciPy) normalize each distribution by its
//!     sum first: a distribution summing to 0 gives NaN; an infinite or NaN entry gives NaN; negative
//!     entries give `−inf` (entropy) or `+inf` (relative entropy, Jensen–Shannon).
//! 15. **Class indices are integers, so they cannot be NaN;** an index outside `[0, classes)` that is not
//!     `ignore_index` is an [`Error::TargetOutOfRange`](crate::Error) naming its position and value.
//! 16. **An ignored row's gradient is 0, or NaN where torch's autograd forms `0·NaN`:** in
//!     `cross_entropy`, `cross_entropy_extras` and `linear_cross_entropy` a row whose target is
//!     `ignore_index` gets a NaN gradient row when its (capped) logits hold a NaN, a `+inf` or only `−inf`
//!     (`log_softmax`'s backward is `g − softmax·Σg` with `g = 0`), else 0. Under a `softcap` only a NaN
//!     counts (`±inf` are capped to `±c`). In `linear_cross_entropy` that NaN row then makes every entry
//!     of the weight and bias gradients NaN (`Gᵀ·X` sums over rows), as `F.linear_cross_entropy` gives.
//! 17. **Total variation takes `sign(NaN) = 0`** (torch's `abs` backward, `torch.sign(nan) = 0`): a
//!     distillation row whose teacher holds a NaN has a NaN loss but a zero soft-part gradient; a NaN
//!     student row still has a NaN gradient (through `softmax(s)`).
//! 18. **A top-k teacher holding every class has no tail bucket** (`distill_topk`, `linear_distill`
//!     with `add_tail`): the teacher's leftover `1 − Σq` is then only rounding, and comparing it with an
//!     empty student tail would give `+inf`; the loss is the dense one.
//!
//! ```
//! use infoloss::{cross_entropy, CrossEntropyOptions, Reduction, ndarray::array};
//! // Rule 1 and rule 4: a NaN row stays NaN, a −inf logit at the target gives +inf.
//! let x = array![[f64::NAN, 0.0], [f64::NEG_INFINITY, 0.0]];
//! let opts = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
//! let l = cross_entropy(x.view(), array![1i64, 0].view(), &opts)?.into_array();
//! assert!(l[0].is_nan());
//! assert_eq!(l[1], f64::INFINITY);
//! # Ok::<(), infoloss::Error>(())
//! ```
