//! infoloss: information-theoretic losses computed exactly as PyTorch does.
#![deny(missing_docs)]

pub mod bce;
pub mod bce_logits;
pub mod cross_entropy;
mod error;
mod float;
pub mod info;
pub mod kl_div;
pub mod nll;
mod reduction;
pub mod shape;
pub mod softmax;

pub use bce::{
    BceOptions, binary_cross_entropy, binary_cross_entropy_backward, binary_cross_entropy_backward_target,
    binary_cross_entropy_with_grad,
};
pub use bce_logits::{
    BceWithLogitsOptions, binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_backward_target, binary_cross_entropy_with_logits_with_grad,
};
pub use cross_entropy::{
    CrossEntropyOptions, cross_entropy, cross_entropy_backward, cross_entropy_probs, cross_entropy_probs_backward,
    cross_entropy_probs_backward_target, cross_entropy_probs_with_grad, cross_entropy_with_grad,
};
pub use error::{Error, Result, Shape};
pub use float::{DType, Element, Real};
pub use info::{
    EntropyOptions, JensenShannonOptions, entr, entr_backward, entropy, entropy_backward, jensenshannon,
    jensenshannon_backward, rel_entr, rel_entr_backward, self_information, shannon_cross_entropy,
};
pub use kl_div::{KlDivOptions, kl_div, kl_div_backward, kl_div_backward_target, kl_div_with_grad};
pub use nll::{NllOptions, nll_loss, nll_loss_backward, nll_loss_with_grad};
pub use reduction::{GradOutput, Loss, Reduction};
pub use softmax::{
    log_softmax, log_softmax_backward, logsumexp, logsumexp_backward, softmax, softmax_backward,
};

/// Re-export of the array crate the API is built on.
pub use ndarray;
/// Re-export of the half-precision crate (`f16`, `bf16`).
pub use half;
