//! `kl_div`, `binary_cross_entropy`, `binary_cross_entropy_with_logits`: two float tensors, a gradient for
//! each.

use candle_core::Tensor;
use infoloss::{KlDivOptions, Reduction};
use ndarray::ArrayViewD;

use crate::convert::{Float, Host, ensure_all_cpu};
use crate::ops::{Pair, PairLoss, loss_op};

fn host(
    op: &'static str,
    what: &str,
    w: Option<&Tensor>,
    input: &Tensor,
) -> candle_core::Result<Option<Host>> {
    w.map(|w| Host::from_tensor(op, what, w, input.dtype())).transpose()
}

fn get<'h, T: Float>(
    op: &'static str,
    what: &str,
    h: &'h Option<Host>,
) -> candle_core::Result<Option<ArrayViewD<'h, T>>> {
    h.as_ref().map(|h| h.get::<T>(op, what)).transpose()
}

// ---------------------------------------------------------------------------------------------------------------
// kl_div
// ---------------------------------------------------------------------------------------------------------------

struct KlDiv(KlDivOptions);

impl KlDiv {
    fn opts<T: Float>(&self) -> candle_core::Result<KlDivOptions> {
        Ok(self.0)
    }
}

loss_op!(pair KlDiv = "kl_div": infoloss::kl_div, infoloss::kl_div_backward, infoloss::kl_div_backward_target);

/// KL divergence `KL(target ‖ exp(input))` as `torch.nn.functional.kl_div(input, target, reduction, log_target)`.
///
/// `input` holds log-probabilities, `target` probabilities (log-probabilities with `log_target`). Terms
/// `xlogy(t, t) − t·x` (or `exp(t)·(t − x)`), reduced by `None` (the broadcast shape), `Mean` (÷ number of
/// elements), `Sum`, or `BatchMean` (÷ size of dimension 0: the true KL per sample). Gradients reach both
/// sides: wrt `input` `−t` (`−exp(t)`), wrt `target` `ln t + 1 − x` (`exp(t)·(t − x + 1)`), divided by the
/// reduction's divisor and times the upstream gradient; NaN where a probability target is 0, as in PyTorch.
/// The options are infoloss's [`KlDivOptions`].
///
/// # Errors
///
/// Non-CPU tensors, dtypes that differ or are not float, shapes that do not broadcast.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{kl_div, KlDivOptions, Reduction};
/// // KL(P ‖ Q), P = [0.5, 0.5], Q = [0.25, 0.75]
/// let log_q = Var::new(&[0.25f64.ln(), 0.75f64.ln()], &Device::Cpu)?;
/// let p = Tensor::new(&[0.5f64, 0.5], &Device::Cpu)?;
/// let opts = KlDivOptions { reduction: Reduction::Sum, ..Default::default() };
/// let kl = kl_div(log_q.as_tensor(), &p, &opts)?;
/// assert!((kl.to_scalar::<f64>()? - 0.143_841_036_225_890_45).abs() < 1e-15);
/// assert_eq!(kl.backward()?.get(&log_q).unwrap().to_vec1::<f64>()?, [-0.5, -0.5]); // −p
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn kl_div(input: &Tensor, target: &Tensor, opts: &KlDivOptions) -> candle_core::Result<Tensor> {
    const OP: &str = "kl_div";
    ensure_all_cpu(OP, &[("input", input), ("target", target)])?;
    input.apply_op2(target, Pair(KlDiv(*opts)))
}

// ---------------------------------------------------------------------------------------------------------------
// binary_cross_entropy
// ---------------------------------------------------------------------------------------------------------------

/// Options of [`binary_cross_entropy`]; `Default` equals PyTorch's (`weight = None`, `reduction = Mean`).
///
/// ```
/// use infoloss_candle::{BceOptions, Reduction};
/// assert_eq!(BceOptions::default().reduction, Reduction::Mean);
/// ```
#[derive(Debug, Clone, Default)]
pub struct BceOptions {
    /// Per-element weight broadcast into the input's shape, the input's dtype (a constant).
    pub weight: Option<Tensor>,
    /// `None`, `Mean` or `Sum`.
    pub reduction: Reduction,
}

struct Bce {
    weight: Option<Host>,
    reduction: Reduction,
}

impl Bce {
    fn opts<T: Float>(&self) -> candle_core::Result<infoloss::BceOptions<'_, T>> {
        Ok(infoloss::BceOptions {
            weight: get::<T>(Self::NAME, "weight", &self.weight)?,
            reduction: self.reduction,
        })
    }
}

loss_op!(pair Bce = "binary_cross_entropy": infoloss::binary_cross_entropy,
    infoloss::binary_cross_entropy_backward, infoloss::binary_cross_entropy_backward_target);

/// Binary cross-entropy of probabilities, as `torch.nn.functional.binary_cross_entropy(input, target, weight,
/// reduction)`: `loss = −w·(t·max(ln x, −100) + (1 − t)·max(ln(1 − x), −100))`, reduced.
///
/// Gradient wrt `input`: `w·(x − t)/max(x·(1 − x), 1e-12)` (PyTorch's float ε, unclamped near 0 and 1); wrt
/// `target`: `−w·logit(x)` = `−w·ln(x/(1 − x))`; divided by the reduction's divisor and times the upstream
/// gradient.
///
/// # Errors
///
/// Non-CPU tensors, dtypes that differ or are not float, a target not of the input's shape, a weight that
/// does not broadcast into it, an input or target outside `[0, 1]` (index and value named), `BatchMean`.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{binary_cross_entropy, BceOptions};
/// let x = Var::new(&[0.5f32, 0.8], &Device::Cpu)?;
/// let t = Tensor::new(&[1.0f32, 0.0], &Device::Cpu)?;
/// let loss = binary_cross_entropy(x.as_tensor(), &t, &BceOptions::default())?;
/// assert!((loss.to_scalar::<f32>()? - (2.0f32.ln() + 5.0f32.ln()) / 2.0).abs() < 1e-6);
/// let g = loss.backward()?.get(&x).unwrap().to_vec1::<f32>()?; // (x − t) / (x(1 − x)) / 2
/// assert!((g[0] + 1.0).abs() < 1e-6 && (g[1] - 2.5).abs() < 1e-5);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn binary_cross_entropy(
    input: &Tensor,
    target: &Tensor,
    opts: &BceOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "binary_cross_entropy";
    ensure_all_cpu(OP, &[("input", input), ("target", target)])?;
    let op = Bce { weight: host(OP, "weight", opts.weight.as_ref(), input)?, reduction: opts.reduction };
    input.apply_op2(target, Pair(op))
}

// ---------------------------------------------------------------------------------------------------------------
// binary_cross_entropy_with_logits
// ---------------------------------------------------------------------------------------------------------------

/// Options of [`binary_cross_entropy_with_logits`]; `Default` equals PyTorch's (no weights, `Mean`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use infoloss_candle::BceWithLogitsOptions;
/// let o = BceWithLogitsOptions { pos_weight: Some(Tensor::new(&[3.0f32, 1.0], &Device::Cpu)?), ..Default::default() };
/// assert!(o.weight.is_none());
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct BceWithLogitsOptions {
    /// Per-element weight broadcast into the input's shape, the input's dtype (a constant).
    pub weight: Option<Tensor>,
    /// Weight of the positive term broadcast into the input's shape (a `(C,)` tensor acts on the last
    /// dimension), the input's dtype (a constant).
    pub pos_weight: Option<Tensor>,
    /// `None`, `Mean` or `Sum`.
    pub reduction: Reduction,
}

struct BceLogits {
    weight: Option<Host>,
    pos_weight: Option<Host>,
    reduction: Reduction,
}

impl BceLogits {
    fn opts<T: Float>(&self) -> candle_core::Result<infoloss::BceWithLogitsOptions<'_, T>> {
        Ok(infoloss::BceWithLogitsOptions {
            weight: get::<T>(Self::NAME, "weight", &self.weight)?,
            pos_weight: get::<T>(Self::NAME, "pos_weight", &self.pos_weight)?,
            reduction: self.reduction,
        })
    }
}

loss_op!(pair BceLogits = "binary_cross_entropy_with_logits": infoloss::binary_cross_entropy_with_logits,
    infoloss::binary_cross_entropy_with_logits_backward,
    infoloss::binary_cross_entropy_with_logits_backward_target);

/// Binary cross-entropy of logits, as `torch.nn.functional.binary_cross_entropy_with_logits(input, target,
/// weight, pos_weight=..., reduction=...)`: `loss = w·((1 − t)·x − lw·logσ(x))`, `lw = (p − 1)·t + 1` with
/// `pos_weight` p (else 1), computed stably for any logit (no NaN/inf at |x| ≳ 100, unlike candle-nn's
/// `binary_cross_entropy_with_logit`).
///
/// Gradient wrt `input`: `w·((p·t + 1 − t)·σ(x) − p·t)` (`w·(σ(x) − t)` without `pos_weight`); wrt `target`:
/// `w·(logσ(−x) − p·logσ(x))` (`−w·x` without); divided by the reduction's divisor and times the upstream
/// gradient, as PyTorch's `FunctionsManual.cpp`.
///
/// # Errors
///
/// Non-CPU tensors, dtypes that differ or are not float, a target not of the input's shape, a weight or
/// `pos_weight` that does not broadcast into it, `BatchMean`.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{binary_cross_entropy_with_logits, BceWithLogitsOptions};
/// let x = Var::new(&[0.0f64, 200.0], &Device::Cpu)?;
/// let t = Tensor::new(&[1.0f64, 0.0], &Device::Cpu)?;
/// let loss = binary_cross_entropy_with_logits(x.as_tensor(), &t, &BceWithLogitsOptions::default())?;
/// assert!((loss.to_scalar::<f64>()? - (2f64.ln() + 200.0) / 2.0).abs() < 1e-12); // finite at 200
/// let g = loss.backward()?.get(&x).unwrap().to_vec1::<f64>()?; // (σ(x) − t) / 2
/// assert_eq!(g, [-0.25, 0.5]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits(
    input: &Tensor,
    target: &Tensor,
    opts: &BceWithLogitsOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "binary_cross_entropy_with_logits";
    ensure_all_cpu(OP, &[("input", input), ("target", target)])?;
    let op = BceLogits {
        weight: host(OP, "weight", opts.weight.as_ref(), input)?,
        pos_weight: host(OP, "pos_weight", opts.pos_weight.as_ref(), input)?,
        reduction: opts.reduction,
    };
    input.apply_op2(target, Pair(op))
}
