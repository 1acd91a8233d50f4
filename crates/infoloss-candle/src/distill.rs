//! Knowledge distillation ([`distill`], [`distill_topk`]) and UDA consistency ([`uda_consistency`]) on
//! `(rows, classes)` logits.

use std::sync::{Arc, Mutex};

use candle_core::Tensor;
use infoloss::distill::DistillOptions;
use infoloss::uda::UdaOptions;
use infoloss::{GradOutput, Loss};
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Ix1, Ix2};

use crate::convert::{Float, Host, core_err, cpu, ensure_all_cpu, ensure_cpu, index_view, msg};
use crate::ops::{Pair, PairLoss};

/// Class-index labels (any integer dtype) copied to the host as `(rows,)` `i64`.
pub(crate) fn labels_host(
    op: &'static str,
    labels: Option<&Tensor>,
) -> candle_core::Result<Option<Array1<i64>>> {
    let Some(l) = labels else { return Ok(None) };
    ensure_cpu(op, "labels", l)?;
    if l.rank() != 1 {
        return Err(core_err(infoloss::Error::bad_rank(op, "labels", l.dims(), "1 dimension (rows)")));
    }
    let (g, layout) = l.storage_and_layout();
    let v = index_view(op, "labels", cpu(op, "labels", &g)?, layout)?;
    v.into_owned().into_dimensionality::<Ix1>().map(Some).map_err(|e| msg(format!("{op}: labels: {e}")))
}

/// A view as a matrix, or the core's rank error naming the argument and the `expected` dimensions.
pub(crate) fn two_d<'a, T>(
    op: &'static str,
    what: &'static str,
    a: ArrayViewD<'a, T>,
    expected: &str,
) -> candle_core::Result<ndarray::ArrayView2<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>()
        .map_err(|_| core_err(infoloss::Error::bad_rank(op, what, &shape, expected)))
}

/// A top-k teacher's class indices (any integer dtype) copied to the host as `(rows, k)` `i64`.
pub(crate) fn indices_host(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
) -> candle_core::Result<Array2<i64>> {
    let (g, layout) = t.storage_and_layout();
    let v = index_view(op, what, cpu(op, what, &g)?, layout)?;
    let shape = v.shape().to_vec();
    v.into_owned()
        .into_dimensionality::<Ix2>()
        .map_err(|_| core_err(infoloss::Error::bad_rank(op, what, &shape, "2 dimensions (rows × k)")))
}

// ---------------------------------------------------------------------------------------------------------------
// distill
// ---------------------------------------------------------------------------------------------------------------

/// The op of [`distill`]; the teacher is a constant (no `grad_second`).
struct Distill {
    labels: Option<Array1<i64>>,
    opts: DistillOptions,
}

impl PairLoss for Distill {
    const NAME: &'static str = "distill";
    const FIRST: &'static str = "student";
    const SECOND: &'static str = "teacher";

    fn forward<T: Float>(&self, s: ArrayViewD<'_, T>, t: ArrayViewD<'_, T>) -> candle_core::Result<Loss<T>> {
        infoloss::distill(s, t, self.labels.as_ref().map(|l| l.view()), &self.opts).map_err(core_err)
    }

    fn grad_first<T: Float>(
        &self,
        s: ArrayViewD<'_, T>,
        t: ArrayViewD<'_, T>,
        g: &GradOutput<'_, T>,
    ) -> Option<candle_core::Result<ArrayD<T>>> {
        let labels = self.labels.as_ref().map(|l| l.view());
        Some(infoloss::distill_backward(s, t, labels, &self.opts, g).map(Array2::into_dyn).map_err(core_err))
    }
}

/// Knowledge-distillation loss between student logits and teacher logits, both `(rows, classes)`:
/// `row_loss = alpha·c_T·D(softmax(t/T), softmax(s/T)) + (1 − alpha)·cross_entropy(s, labels)` with the
/// divergence `D` of [`DistillOptions::divergence`] (forward KL, reverse KL, generalized JSD, total
/// variation), `c_T = T²` with `t2_scaling`, rows labelled `ignore_index` dropped, reduced by
/// `BatchMean` (default: ÷ kept rows), `Mean`, `Sum` or `None` (`(rows,)`). The formulas, PyTorch
/// equivalents and gradients are those of [`infoloss::distill`](mod@infoloss::distill).
///
/// The gradient reaches the **student** only: the teacher is a constant (as if detached), and the
/// integer `labels` (`(rows,)`, any integer dtype, optional unless `alpha < 1`) have none.
///
/// # Errors
///
/// Non-CPU tensors, dtypes that differ or are not float, non-2-D logits, different shapes, labels of the
/// wrong length or out of range, invalid options (temperature ≤ 0, alpha outside `[0, 1]` or `< 1` without
/// labels, …).
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{distill, DistillOptions};
/// let s = Var::new(&[[1.0f32, 2.0, 0.5], [0.3, -1.0, 2.2]], &Device::Cpu)?;
/// let t = Tensor::new(&[[0.5f32, 1.5, 2.0], [0.0, -0.5, 3.0]], &Device::Cpu)?;
/// let o = DistillOptions { temperature: 2.0, ..Default::default() }; // forward KL, T² scaling, batchmean
/// let loss = distill(s.as_tensor(), &t, None, &o)?;
/// // F.kl_div(F.log_softmax(s/2, 1), F.log_softmax(t/2, 1), reduction='batchmean', log_target=True) * 4
/// assert!((loss.to_scalar::<f32>()? - 0.273417041786).abs() < 1e-6);
/// let g = loss.backward()?.get(&s).unwrap().to_vec2::<f32>()?; // T·(p − q) / rows: rows sum to 0
/// assert!(g.iter().all(|row| row.iter().sum::<f32>().abs() < 1e-6));
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn distill(
    student: &Tensor,
    teacher: &Tensor,
    labels: Option<&Tensor>,
    opts: &DistillOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "distill";
    ensure_all_cpu(OP, &[("student", student), ("teacher", teacher)])?;
    let op = Distill { labels: labels_host(OP, labels)?, opts: *opts };
    // the teacher is a constant: detached, so backward() does not walk into the graph that produced it
    student.apply_op2(&teacher.detach(), Pair(op))
}

// ---------------------------------------------------------------------------------------------------------------
// distill_topk
// ---------------------------------------------------------------------------------------------------------------

/// A sparse teacher for [`distill_topk`]: per row the indices of its top-k classes and their
/// log-probabilities (already at the distillation temperature), optionally completed by a tail bucket —
/// see [`infoloss::SparseTeacher`] for the semantics.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let t = infoloss_candle::SparseTeacher {
///     indices: Tensor::new(&[[2u32, 0]], &Device::Cpu)?,
///     logprobs: Tensor::new(&[[-0.2f32, -2.0]], &Device::Cpu)?,
///     add_tail: true,
/// };
/// assert_eq!(t.indices.dims(), t.logprobs.dims());
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SparseTeacher {
    /// `(rows, k)` class indices (any integer dtype), distinct within a row.
    pub indices: Tensor,
    /// `(rows, k)` teacher log-probabilities at `indices`, the student's dtype (a constant).
    pub logprobs: Tensor,
    /// Add the bucket holding the missing mass `1 − Σ q` (and `1 − Σ p` for the student).
    pub add_tail: bool,
}

/// The op of [`distill_topk`]; the teacher is a constant (no `grad_second`).
struct DistillTopk {
    indices: Array2<i64>,
    add_tail: bool,
    labels: Option<Array1<i64>>,
    opts: DistillOptions,
}

impl DistillTopk {
    fn teacher<'a, T>(
        &'a self,
        logprobs: ArrayViewD<'a, T>,
    ) -> candle_core::Result<infoloss::SparseTeacher<'a, T>> {
        Ok(infoloss::SparseTeacher {
            indices: self.indices.view(),
            logprobs: two_d(Self::NAME, "teacher logprobs", logprobs, "2 dimensions (rows × classes)")?,
            add_tail: self.add_tail,
        })
    }
}

impl PairLoss for DistillTopk {
    const NAME: &'static str = "distill_topk";
    const FIRST: &'static str = "student";
    const SECOND: &'static str = "teacher logprobs";

    fn forward<T: Float>(&self, s: ArrayViewD<'_, T>, lq: ArrayViewD<'_, T>) -> candle_core::Result<Loss<T>> {
        let teacher = self.teacher(lq)?;
        infoloss::distill_topk(s, &teacher, self.labels.as_ref().map(|l| l.view()), &self.opts)
            .map_err(core_err)
    }

    fn grad_first<T: Float>(
        &self,
        s: ArrayViewD<'_, T>,
        lq: ArrayViewD<'_, T>,
        g: &GradOutput<'_, T>,
    ) -> Option<candle_core::Result<ArrayD<T>>> {
        let labels = self.labels.as_ref().map(|l| l.view());
        Some(self.teacher(lq).and_then(|teacher| {
            infoloss::distill_topk_backward(s, &teacher, labels, &self.opts, g)
                .map(Array2::into_dyn)
                .map_err(core_err)
        }))
    }
}

/// Distillation from a **sparse top-k teacher** (e.g. stored offline): the divergence is taken over the
/// teacher's k classes (plus the tail bucket with `add_tail`), with everything else as in [`distill`]; see
/// [`infoloss::distill_topk`]. The gradient reaches the student only.
///
/// # Errors
///
/// As [`distill`], plus `indices`/`logprobs` that are not `(rows, k)`, out-of-range or repeated indices.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{distill, distill_topk, DistillOptions, SparseTeacher};
/// let s = Var::new(&[[1.0f64, 2.0, 0.5]], &Device::Cpu)?;
/// let t = Tensor::new(&[[0.5f64, 1.5, 2.0]], &Device::Cpu)?;
/// // k = all classes, no tail: the same as the dense loss
/// let teacher = SparseTeacher {
///     indices: Tensor::new(&[[0u32, 1, 2]], &Device::Cpu)?,
///     logprobs: infoloss_candle::log_softmax(&t, 1)?,
///     add_tail: false,
/// };
/// let sparse = distill_topk(s.as_tensor(), &teacher, None, &DistillOptions::default())?.to_scalar::<f64>()?;
/// let dense = distill(s.as_tensor(), &t, None, &DistillOptions::default())?.to_scalar::<f64>()?;
/// assert!((sparse - dense).abs() < 1e-15);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn distill_topk(
    student: &Tensor,
    teacher: &SparseTeacher,
    labels: Option<&Tensor>,
    opts: &DistillOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "distill_topk";
    ensure_all_cpu(
        OP,
        &[
            ("student", student),
            ("teacher logprobs", &teacher.logprobs),
            ("teacher indices", &teacher.indices),
        ],
    )?;
    let indices = indices_host(OP, "teacher indices", &teacher.indices)?;
    let op =
        DistillTopk { indices, add_tail: teacher.add_tail, labels: labels_host(OP, labels)?, opts: *opts };
    student.apply_op2(&teacher.logprobs.detach(), Pair(op))
}

// ---------------------------------------------------------------------------------------------------------------
// uda_consistency
// ---------------------------------------------------------------------------------------------------------------

/// What [`uda_consistency`] returns: the loss (a 0-d tensor in the graph) and what training loops log.
#[derive(Debug, Clone)]
pub struct UdaOutput {
    /// The consistency loss; `backward()` sends its gradient to the augmented logits.
    pub loss: Tensor,
    /// The 0/1 confidence mask, `(rows,)`, the logits' dtype.
    pub mask: Tensor,
    /// Number of kept rows (`Σ mask`).
    pub kept: usize,
    /// The per-row KL before masking, `(rows,)`, the logits' dtype.
    pub row_kl: Tensor,
}

/// What the forward of [`Uda`] leaves for [`uda_consistency`] to return besides the loss.
#[derive(Debug, Default)]
struct UdaStats {
    mask: Option<Host>,
    row_kl: Option<Host>,
    kept: usize,
}

/// The op of [`uda_consistency`]; the original side is a constant target (no `grad_first`), as in UDA.
struct Uda {
    opts: UdaOptions,
    stats: Arc<Mutex<UdaStats>>,
}

impl PairLoss for Uda {
    const NAME: &'static str = "uda_consistency";
    const FIRST: &'static str = "ori_logits";
    const SECOND: &'static str = "aug_logits";

    fn forward<T: Float>(
        &self,
        ori: ArrayViewD<'_, T>,
        aug: ArrayViewD<'_, T>,
    ) -> candle_core::Result<Loss<T>> {
        let out = infoloss::uda_consistency_with_grad(ori, aug, &self.opts).map_err(core_err)?;
        if let Ok(mut st) = self.stats.lock() {
            *st = UdaStats {
                mask: Some(T::into_host(out.mask.into_dyn())),
                row_kl: Some(T::into_host(out.row_kl.into_dyn())),
                kept: out.kept,
            };
        }
        Ok(Loss::Scalar(out.loss))
    }

    fn grad_second<T: Float>(
        &self,
        ori: ArrayViewD<'_, T>,
        aug: ArrayViewD<'_, T>,
        g: &GradOutput<'_, T>,
    ) -> Option<candle_core::Result<ArrayD<T>>> {
        // the upstream gradient enters infoloss's f64 row coefficient: rounded once, as the other losses
        Some(
            infoloss::uda::uda_consistency_backward(ori, aug, &self.opts, g)
                .map(|a| a.into_dyn())
                .map_err(core_err),
        )
    }
}

/// UDA consistency loss (Xie et al. 2019) between original logits `ori` and logits of an augmented copy
/// `aug`, both `(rows, classes)`: the KL from the (sharpened, confidence-masked) prediction on `ori` to the
/// prediction on `aug`, averaged over the kept rows — see [`infoloss::uda`](mod@infoloss::uda) for the
/// formula, the options and the PyTorch code it equals.
///
/// The gradient reaches `aug` only: `ori` is the fixed target (as under `torch.no_grad()`), even when it
/// comes from the same model. The backward pass calls
/// [`infoloss::uda::uda_consistency_backward`] with the upstream gradient (e.g. `uda_coeff` for
/// `(loss * uda_coeff).backward()`), so the gradient is rounded once to the tensor's dtype.
///
/// # Errors
///
/// Non-CPU tensors, dtypes that differ or are not float, non-2-D logits, different shapes, a temperature
/// not finite and > 0, a NaN confidence threshold.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{uda_consistency, Sharpen, UdaOptions};
/// let ori = Tensor::new(&[[2.0f32, 0.5, -1.0], [0.1, 0.2, 0.0]], &Device::Cpu)?;
/// let aug = Var::new(&[[1.0f32, 1.0, -0.5], [0.3, -0.2, 0.4]], &Device::Cpu)?;
/// let o = UdaOptions { temperature: 0.4, sharpen: Sharpen::Target, confidence_threshold: Some(0.5), ..Default::default() };
/// let out = uda_consistency(&ori, aug.as_tensor(), &o)?;
/// assert_eq!((out.kept, out.mask.to_vec1::<f32>()?), (1, vec![1.0, 0.0])); // max softmax(ori) = 0.786, 0.367
/// assert!((out.loss.to_scalar::<f32>()? - 0.6857713851463987).abs() < 1e-6);
/// let g = out.loss.backward()?.get(&aug).unwrap().to_vec2::<f32>()?;
/// assert_eq!(g[1], [0.0, 0.0, 0.0]); // the masked row gets no gradient
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn uda_consistency(ori: &Tensor, aug: &Tensor, opts: &UdaOptions) -> candle_core::Result<UdaOutput> {
    const OP: &str = "uda_consistency";
    ensure_all_cpu(OP, &[("ori_logits", ori), ("aug_logits", aug)])?;
    let stats = Arc::new(Mutex::new(UdaStats::default()));
    // the original side is the fixed target: detached, as under torch.no_grad()
    let loss = ori.detach().apply_op2(aug, Pair(Uda { opts: *opts, stats: Arc::clone(&stats) }))?;
    let st = std::mem::take(&mut *stats.lock().map_err(|_| msg(format!("{OP}: statistics lock poisoned")))?);
    let to_tensor = |h: Option<Host>, what: &str| -> candle_core::Result<Tensor> {
        let t = h
            .ok_or_else(|| msg(format!("{OP}: internal error: the forward left no {what}")))?
            .into_tensor(ori.device())?;
        if t.dims() != [ori.dim(0)?] {
            return Err(msg(format!("{OP}: internal error: {what} has shape {:?}", t.dims())));
        }
        Ok(t)
    };
    Ok(UdaOutput {
        loss,
        mask: to_tensor(st.mask, "mask")?,
        kept: st.kept,
        row_kl: to_tensor(st.row_kl, "row_kl")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The safety net of `Pair::backward`: applied to a teacher that is still in the graph (the public
    /// function detaches it), the op gives the teacher a zero gradient instead of letting candle's backprop
    /// panic on a missing gradient.
    #[test]
    fn a_tracked_side_without_gradient_gets_zeros() {
        let dev = Device::Cpu;
        let s = Var::new(&[[1.0f64, 2.0, 0.5]], &dev).unwrap();
        let wt = Var::new(&[[0.5f64, 1.5, 2.0]], &dev).unwrap();
        let teacher = (wt.as_tensor() * 2.0).unwrap(); // an op node: backprop will visit it
        let op = Distill { labels: None, opts: DistillOptions::default() };
        let loss = s.as_tensor().apply_op2(&teacher, Pair(op)).unwrap();
        let grads = loss.backward().unwrap();
        assert_eq!(grads.get(wt.as_tensor()).unwrap().to_vec2::<f64>().unwrap(), [[0.0, 0.0, 0.0]]);
        let gs = grads.get(s.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        assert!(gs[0].iter().any(|&g| g != 0.0));
    }
}
