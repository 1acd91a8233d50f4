//! # infoloss-candle
//!
//! The [`infoloss`] losses — computed exactly as PyTorch 2.15 does, forward and backward — as
//! [candle](https://github.com/huggingface/candle) ops with a **real backward**: each loss is a
//! `candle_core::CustomOp1`/`CustomOp2` applied with `apply_op1`/`apply_op2`, whose `bwd` calls infoloss's
//! `*_backward` with candle's upstream gradient. So `loss.backward()` reaches the logits (and the target,
//! where PyTorch differentiates it), and the gradient candle stores is exactly infoloss's.
//!
//! | function | PyTorch | gradient to |
//! |---|---|---|
//! | [`cross_entropy`] | `F.cross_entropy` (class indices or probabilities; weight, ignore_index, label_smoothing) | input (+ probability target) |
//! | [`cross_entropy_probs`] | `F.cross_entropy` with probability targets | input, target |
//! | [`nll_loss`] | `F.nll_loss` | input |
//! | [`kl_div`] | `F.kl_div` (log_target; none/mean/sum/batchmean) | input, target |
//! | [`binary_cross_entropy`] | `F.binary_cross_entropy` (weight) | input, target |
//! | [`binary_cross_entropy_with_logits`] | `F.binary_cross_entropy_with_logits` (weight, pos_weight) | input, target |
//! | [`log_softmax`], [`softmax`], [`logsumexp`] | `torch.log_softmax` … along `dim` | input |
//! | [`distill`], [`distill_topk`] | knowledge distillation (KL / reverse KL / JSD / TV, T², alpha) | student |
//! | [`uda_consistency`] | UDA consistency (sharpening, confidence mask) | augmented logits |
//! | [`linear_distill`], [`linear_distill_topk`] | fused student head + distillation (teacher head or stored top-k; `f32`/`f64`) | student hidden, weight, bias |
//!
//! ## Conventions
//!
//! - **CPU only.** infoloss computes on the host; a tensor on another device gives an error saying so.
//! - **dtypes**: `f32`, `f64`, `f16`, `bf16` (half types computed in `f32` and rounded once, as infoloss
//!   does). Both float arguments of a loss, and its weights, must have the same dtype. Class-index targets
//!   may be `u8`, `u32`, `i16`, `i32` or `i64`; they never get a gradient.
//! - **Layouts**: any candle layout works — contiguous, transposed, narrowed (offset), broadcast (stride 0).
//!   The storage is read in place through the layout's strides and offset; nothing is made contiguous.
//! - **Reductions** are infoloss's [`Reduction`]: a reduced loss is a 0-dimensional tensor, `None` keeps the
//!   per-element shape.
//! - **Constants**: weights, `pos_weight`, distillation labels and top-k indices are copied into the op when
//!   it is built and get no gradient (PyTorch refuses to differentiate them). The teacher of [`distill`] /
//!   [`distill_topk`] and the original logits of [`uda_consistency`] are detached: `backward()` does not
//!   walk into the graph that produced them, as the methods prescribe.
//! - **Errors**: infoloss's messages (shapes, out-of-range targets with index and value, invalid options)
//!   come back as `candle_core::Error`, never a panic.
//! - Second-order gradients are not supported (the backward is not itself differentiable).
//! - **Cost**: the forward is infoloss's forward, the backward infoloss's `*_backward`; results and gradients
//!   are handed to candle as the buffers infoloss allocated, without a copy. What `loss.backward()` adds on
//!   top is candle's: its backprop accumulates every gradient it receives into a fresh `zeros_like` with a
//!   single-threaded `add`, which at large sizes costs more than the loss itself, most in `bf16` (see
//!   `BENCHMARKS.md`, `infoloss bench --ops candle-ce,candle-accum`).
//!
//! ## Example: one training step
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use infoloss_candle::{cross_entropy, CrossEntropyOptions};
//!
//! let dev = Device::Cpu;
//! let w = Var::zeros((4, 3), candle_core::DType::F32, &dev)?; // a linear model, 4 features → 3 classes
//! let x = Tensor::new(&[[1.0f32, 0.0, 0.0, 0.5], [0.0, 1.0, 0.5, 0.0]], &dev)?;
//! let y = Tensor::new(&[2u32, 0], &dev)?;
//! let opts = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
//! let loss = cross_entropy(&x.matmul(w.as_tensor())?, &y, &opts)?;
//! assert!((loss.to_scalar::<f32>()? - 3f32.ln()).abs() < 1e-6); // uniform prediction
//! let grads = loss.backward()?;
//! w.set(&(w.as_tensor() - (grads.get(&w).unwrap() * 0.5)?)?)?; // SGD step
//! let after = cross_entropy(&x.matmul(w.as_tensor())?, &y, &opts)?.to_scalar::<f32>()?;
//! assert!(after < 3f32.ln());
//! # Ok::<(), candle_core::Error>(())
//! ```
#![deny(missing_docs)]

mod binary;
mod class;
mod convert;
mod distill;
mod linear;
mod ops;
mod softmax;

pub use binary::{
    BceOptions, BceWithLogitsOptions, binary_cross_entropy, binary_cross_entropy_with_logits, kl_div,
};
pub use class::{CrossEntropyOptions, NllOptions, cross_entropy, cross_entropy_probs, nll_loss};
pub use distill::{SparseTeacher, UdaOutput, distill, distill_topk, uda_consistency};
pub use linear::{LinearHead, linear_distill, linear_distill_topk};
pub use softmax::{log_softmax, logsumexp, softmax};

pub use infoloss::distill::{DistillOptions, Divergence};
pub use infoloss::linear::TeacherTopK;
pub use infoloss::uda::{Sharpen, UdaNormalize, UdaOptions};
pub use infoloss::{KlDivOptions, LinearDistillOptions, Reduction};

/// Re-export of the candle version this crate is built against.
pub use candle_core;
/// Re-export of the core crate.
pub use infoloss;
