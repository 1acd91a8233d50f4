//! `nll_loss` and `cross_entropy` (class-index and probability targets).

use candle_core::{DType, Tensor};
use infoloss::Reduction;
use ndarray::{ArrayView1, Ix1};

use crate::convert::{Float, Host, core_err, ensure_all_cpu, msg};
use crate::ops::{IndexLoss, Indexed, Pair, loss_op};

/// Options of [`nll_loss`]; `Default` equals PyTorch's (`weight = None`, `ignore_index = -100`,
/// `reduction = Mean`).
///
/// ```
/// use infoloss_candle::{NllOptions, Reduction};
/// let o = NllOptions { reduction: Reduction::Sum, ..Default::default() };
/// assert_eq!((o.ignore_index, o.weight.is_none()), (-100, true));
/// ```
#[derive(Debug, Clone)]
pub struct NllOptions {
    /// Per-class weight, shape `(C,)`, the input's dtype (a constant: it gets no gradient).
    pub weight: Option<Tensor>,
    /// Target value that is skipped (no loss, no gradient, not counted in the mean).
    pub ignore_index: i64,
    /// `None` (shape of the target), `Mean` (÷ summed weight of the kept targets) or `Sum`.
    pub reduction: Reduction,
}

impl Default for NllOptions {
    fn default() -> Self {
        NllOptions { weight: None, ignore_index: -100, reduction: Reduction::Mean }
    }
}

/// Options of [`cross_entropy`] and [`cross_entropy_probs`]; `Default` equals PyTorch's (`weight = None`,
/// `ignore_index = -100`, `reduction = Mean`, `label_smoothing = 0`).
///
/// ```
/// use infoloss_candle::CrossEntropyOptions;
/// let o = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
/// assert_eq!(o.ignore_index, -100);
/// ```
#[derive(Debug, Clone)]
pub struct CrossEntropyOptions {
    /// Per-class weight, shape `(C,)`, the input's dtype (a constant: it gets no gradient).
    pub weight: Option<Tensor>,
    /// Class-index target value that is skipped (unused with probability targets, as in PyTorch).
    pub ignore_index: i64,
    /// `None`, `Mean` or `Sum`.
    pub reduction: Reduction,
    /// Label smoothing ε in `[0, 1]`: the target becomes `(1 − ε)·target + ε/C`.
    pub label_smoothing: f64,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            weight: None,
            ignore_index: -100,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
        }
    }
}

/// Copies a `(C,)` class-weight tensor to the host, checking device, dtype and rank.
fn class_weight(op: &'static str, w: Option<&Tensor>, input: &Tensor) -> candle_core::Result<Option<Host>> {
    let Some(w) = w else { return Ok(None) };
    if w.rank() != 1 {
        return Err(core_err(infoloss::Error::bad_rank(
            op,
            "weight",
            w.dims(),
            "1 dimension (one weight per class)",
        )));
    }
    Host::from_tensor(op, "weight", w, input.dtype()).map(Some)
}

fn weight1<'h, T: Float>(
    op: &'static str,
    w: &'h Option<Host>,
) -> candle_core::Result<Option<ArrayView1<'h, T>>> {
    match w {
        None => Ok(None),
        Some(h) => h
            .get::<T>(op, "weight")?
            .into_dimensionality::<Ix1>()
            .map(Some)
            .map_err(|e| msg(format!("{op}: weight: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// nll_loss
// ---------------------------------------------------------------------------------------------------------------

struct Nll {
    weight: Option<Host>,
    ignore_index: i64,
    reduction: Reduction,
}

impl Nll {
    fn opts<T: Float>(&self) -> candle_core::Result<infoloss::NllOptions<'_, T>> {
        Ok(infoloss::NllOptions {
            weight: weight1::<T>(Self::NAME, &self.weight)?,
            ignore_index: self.ignore_index,
            reduction: self.reduction,
        })
    }
}

loss_op!(index Nll = "nll_loss": infoloss::nll_loss, infoloss::nll_loss_backward);

/// Negative log-likelihood of class indices: `loss_i = −w[t_i]·input[i, t_i]`, reduced.
///
/// `input` holds log-probabilities, shape `(C)`, `(N, C)` or `(N, C, d1, …)` (class dimension 1); `target`
/// holds class indices of any integer dtype (`u8`, `u32`, `i16`, `i32`, `i64`), shape `()`, `(N)` or
/// `(N, d1, …)`. Gradient wrt `input`: `−w[t]/divisor` at the target class, 0 elsewhere (the target gets
/// none). PyTorch: `torch.nn.functional.nll_loss(input, target, weight, ignore_index=..., reduction=...)`.
///
/// # Errors
///
/// Non-CPU tensors, a non-float input, a float target, shape mismatches, a target outside `[0, C)` that is
/// not `ignore_index`, a weight of the wrong shape or dtype, `Reduction::BatchMean`.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{nll_loss, NllOptions};
/// let logp = Var::new(&[[-0.5f32, -1.5, -2.0], [-1.0, -0.25, -3.0]], &Device::Cpu)?;
/// let target = Tensor::new(&[0u32, 1], &Device::Cpu)?;
/// let loss = nll_loss(logp.as_tensor(), &target, &NllOptions::default())?;
/// assert_eq!(loss.to_scalar::<f32>()?, 0.375); // (0.5 + 0.25) / 2
/// let grad = loss.backward()?.get(&logp).unwrap().to_vec2::<f32>()?;
/// assert_eq!(grad, [[-0.5, 0.0, 0.0], [0.0, -0.5, 0.0]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn nll_loss(input: &Tensor, target: &Tensor, opts: &NllOptions) -> candle_core::Result<Tensor> {
    const OP: &str = "nll_loss";
    ensure_all_cpu(OP, &[("input", input), ("target", target)])?;
    let op = Nll {
        weight: class_weight(OP, opts.weight.as_ref(), input)?,
        ignore_index: opts.ignore_index,
        reduction: opts.reduction,
    };
    input.apply_op2(&target.detach(), Indexed(op))
}

// ---------------------------------------------------------------------------------------------------------------
// cross_entropy
// ---------------------------------------------------------------------------------------------------------------

struct Ce {
    weight: Option<Host>,
    ignore_index: i64,
    reduction: Reduction,
    label_smoothing: f64,
}

impl Ce {
    fn new(op: &'static str, input: &Tensor, opts: &CrossEntropyOptions) -> candle_core::Result<Ce> {
        Ok(Ce {
            weight: class_weight(op, opts.weight.as_ref(), input)?,
            ignore_index: opts.ignore_index,
            reduction: opts.reduction,
            label_smoothing: opts.label_smoothing,
        })
    }

    fn opts<T: Float>(&self) -> candle_core::Result<infoloss::CrossEntropyOptions<'_, T>> {
        Ok(infoloss::CrossEntropyOptions {
            weight: weight1::<T>("cross_entropy", &self.weight)?,
            ignore_index: self.ignore_index,
            reduction: self.reduction,
            label_smoothing: self.label_smoothing,
        })
    }
}

loss_op!(index Ce = "cross_entropy": infoloss::cross_entropy, infoloss::cross_entropy_backward);

// With probability targets (`cross_entropy_probs`), the same options.
loss_op!(pair Ce = "cross_entropy": infoloss::cross_entropy_probs, infoloss::cross_entropy_probs_backward,
    infoloss::cross_entropy_probs_backward_target);

/// Cross-entropy of logits, as `torch.nn.functional.cross_entropy`: the target's dtype decides, as in
/// PyTorch — an **integer** target holds class indices, a **float** target holds class probabilities (then
/// this is [`cross_entropy_probs`]).
///
/// With class indices: `loss_i = −Σ_c w_c·q_ic·log_softmax(input)_ic` with `q = (1 − ε)·onehot(t) + ε/C`
/// (ε = `label_smoothing`), rows whose target is `ignore_index` dropped, and `Mean` dividing by the summed
/// weight `Σ_i w[t_i]` of the kept rows. Gradient wrt `input`: `(softmax(input)·Σ_c w_c q_ic − w·q_i)/divisor`
/// times the upstream gradient; the integer target gets none. Shapes: `input` `(C)`, `(N, C)` or
/// `(N, C, d1, …)`; `target` `()`, `(N)` or `(N, d1, …)` of `u8`/`u32`/`i16`/`i32`/`i64`.
///
/// # Errors
///
/// Non-CPU tensors, non-float input, shape mismatches, a class index outside `[0, C)` that is not
/// `ignore_index`, an invalid `label_smoothing`, a weight of the wrong shape or dtype, `BatchMean`.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{cross_entropy, CrossEntropyOptions};
/// let logits = Var::new(&[[2.0f64, 1.0, 0.1], [0.5, 2.5, 0.3]], &Device::Cpu)?;
/// let target = Tensor::new(&[0i64, 1], &Device::Cpu)?;
/// let loss = cross_entropy(logits.as_tensor(), &target, &CrossEntropyOptions::default())?;
/// assert!((loss.to_scalar::<f64>()? - 0.318_539_769_649_185_7).abs() < 1e-15);
/// // loss.backward() reaches the logits: (softmax − onehot) / N
/// let grad = loss.backward()?.get(&logits).unwrap().to_vec2::<f64>()?;
/// assert!((grad[0][0] - (0.659_001_138_885_967_9 - 1.0) / 2.0).abs() < 1e-15);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn cross_entropy(
    input: &Tensor,
    target: &Tensor,
    opts: &CrossEntropyOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "cross_entropy";
    ensure_all_cpu(OP, &[("input", input), ("target", target)])?;
    if is_float(target.dtype()) {
        return cross_entropy_probs(input, target, opts);
    }
    input.apply_op2(&target.detach(), Indexed(Ce::new(OP, input, opts)?))
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// Cross-entropy with **probability** targets of the input's shape: `loss_i = −Σ_c w_c·q_ic·log_softmax(input)_ic`
/// with `q = (1 − ε)·target + ε/C`, reduced (`Mean` divides by the number of rows `N·d1·…`, not by the
/// weights). Gradient wrt `input`: `(softmax(input)·Σ_c w_c q_ic − w·q_i)/divisor`; wrt `target`:
/// `−(1 − ε)·w·log_softmax(input)/divisor` — both reach `backward()`. PyTorch:
/// `torch.nn.functional.cross_entropy(input, probs, weight, reduction=..., label_smoothing=...)`.
///
/// # Errors
///
/// Non-CPU tensors, dtypes that differ or are not float, shapes that differ, an invalid `label_smoothing`,
/// a weight of the wrong shape or dtype, `BatchMean`.
///
/// ```
/// use candle_core::{Device, Var};
/// use infoloss_candle::{cross_entropy_probs, CrossEntropyOptions};
/// let logits = Var::new(&[[0.0f32, 0.0]], &Device::Cpu)?;
/// let probs = Var::new(&[[0.25f32, 0.75]], &Device::Cpu)?;
/// let loss = cross_entropy_probs(logits.as_tensor(), probs.as_tensor(), &CrossEntropyOptions::default())?;
/// assert!((loss.to_scalar::<f32>()? - std::f32::consts::LN_2).abs() < 1e-7);
/// let grads = loss.backward()?;
/// assert_eq!(grads.get(&logits).unwrap().to_vec2::<f32>()?, [[0.25, -0.25]]); // softmax − probs
/// let gt = grads.get(&probs).unwrap().to_vec2::<f32>()?; // −log_softmax = ln 2
/// assert!((gt[0][0] - std::f32::consts::LN_2).abs() < 1e-7);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn cross_entropy_probs(
    input: &Tensor,
    target: &Tensor,
    opts: &CrossEntropyOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "cross_entropy";
    ensure_all_cpu(OP, &[("input", input), ("target", target)])?;
    input.apply_op2(target, Pair(Ce::new(OP, input, opts)?))
}
