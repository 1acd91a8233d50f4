//! Fused linear distillation ([`linear_distill`], [`linear_distill_topk`]): the student head's logits
//! `hidden · weightᵀ (+ bias)` are computed chunk by chunk by the core and never held whole; `backward()`
//! reaches the hidden states, the weight and the bias.
//!
//! One op serves both: a `CustomOp2` (hidden, weight) without a student bias, a `CustomOp3` (hidden, weight,
//! bias) with one. The teacher — a linear head or a stored top-k — and the labels are constants copied into
//! the op. The core computes the loss and the gradients in one pass for a given upstream gradient, so the
//! forward runs it for the loss and `bwd` runs it again with candle's upstream gradient (the gradient of each
//! row scaled by its upstream value inside the core, rounded once, as the NumPy and torch front ends do).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use infoloss::linear::{LinearDistillOutput, LinearFloat, TeacherTopK};
use infoloss::{GradOutput, LinearDistillOptions};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewD, Ix1};

use crate::convert::{Float, Host, core_err, cpu, ensure_all_cpu, grad_tensor, msg, to_storage, view};
use crate::distill::{SparseTeacher, indices_host, labels_host, two_d};

/// A linear head of candle tensors: hidden states `(rows, H)`, weight `(classes, H)`, optional bias
/// `(classes,)`, all of one float dtype.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1.0f32, 0.5]], &Device::Cpu)?;
/// let w = Tensor::new(&[[0.2f32, -0.1], [0.4, 0.3], [-0.3, 0.8]], &Device::Cpu)?;
/// let head = infoloss_candle::LinearHead { hidden: &x, weight: &w, bias: None };
/// assert_eq!(head.weight.dims()[1], head.hidden.dims()[1]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LinearHead<'a> {
    /// `(rows, H)` hidden states.
    pub hidden: &'a Tensor,
    /// `(classes, H)` output-layer weight.
    pub weight: &'a Tensor,
    /// `(classes,)` output-layer bias, if the head has one.
    pub bias: Option<&'a Tensor>,
}

/// Runs `$body` with `$T` bound to the element type of `$dtype`, `f32` or `f64` (the fused kernels' types).
macro_rules! with_linear_float {
    ($op:expr, $dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            d => Err(msg(format!(
                "{}: student_hidden has dtype {d:?}; the fused linear losses compute in f32 or f64 \
                 (convert with .to_dtype())",
                $op
            ))),
        }
    };
}

/// The teacher a fused distillation carries.
enum Teacher {
    /// `linear_distill`: the teacher's head (hidden states, weight, optional bias), optionally cut to its top-k.
    Head { hidden: Host, weight: Host, bias: Option<Host>, topk: Option<TeacherTopK> },
    /// `linear_distill_topk`: a stored top-k.
    Stored { indices: Array2<i64>, logprobs: Host, add_tail: bool },
}

/// The op of [`linear_distill`] and [`linear_distill_topk`].
struct LinearDistill {
    name: &'static str,
    teacher: Teacher,
    labels: Option<Array1<i64>>,
    opts: LinearDistillOptions,
}

const MATRIX: &str = "2 dimensions";
const HIDDEN: &str = "student_hidden";
const WEIGHT: &str = "student_weight";
const BIAS: &str = "student_bias";

fn host_2d<'a, T: Float>(
    op: &'static str,
    what: &'static str,
    h: &'a Host,
) -> candle_core::Result<ArrayView2<'a, T>> {
    two_d(op, what, h.get::<T>(op, what)?, MATRIX)
}

fn vector<'a, T>(
    op: &'static str,
    what: &'static str,
    a: ArrayViewD<'a, T>,
) -> candle_core::Result<ArrayView1<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix1>()
        .map_err(|_| core_err(infoloss::Error::bad_rank(op, what, &shape, "1 dimension")))
}

impl LinearDistill {
    /// The core's loss and gradients for the student head `(xs, ws, bs)` and the upstream gradient `g`.
    fn run<T: Float + LinearFloat>(
        &self,
        xs: ArrayViewD<'_, T>,
        ws: ArrayViewD<'_, T>,
        bs: Option<ArrayViewD<'_, T>>,
        g: &GradOutput<'_, T>,
    ) -> candle_core::Result<LinearDistillOutput<T>> {
        let op = self.name;
        let student = infoloss::linear::LinearHead {
            hidden: two_d(op, HIDDEN, xs, MATRIX)?,
            weight: two_d(op, WEIGHT, ws, MATRIX)?,
            bias: bs.map(|b| vector(op, BIAS, b)).transpose()?,
        };
        let labels = self.labels.as_ref().map(|l| l.view());
        match &self.teacher {
            Teacher::Head { hidden, weight, bias, topk } => {
                let teacher = infoloss::linear::LinearHead {
                    hidden: host_2d(op, "teacher_hidden", hidden)?,
                    weight: host_2d(op, "teacher_weight", weight)?,
                    bias: bias
                        .as_ref()
                        .map(|b| vector(op, "teacher_bias", b.get::<T>(op, "teacher_bias")?))
                        .transpose()?,
                };
                infoloss::linear::linear_distill_backward(&student, &teacher, labels, *topk, &self.opts, g)
            }
            Teacher::Stored { indices, logprobs, add_tail } => {
                let teacher = infoloss::SparseTeacher {
                    indices: indices.view(),
                    logprobs: host_2d(op, "topk_logprobs", logprobs)?,
                    add_tail: *add_tail,
                };
                infoloss::linear_distill_topk(&student, &teacher, labels, &self.opts, g)
            }
        }
        .map_err(core_err)
    }

    /// The forward: the loss for an upstream gradient of 1 (its gradients are dropped).
    fn forward(&self, args: &[(&CpuStorage, &Layout)]) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name;
        with_linear_float!(op, args[0].0.dtype(), T => {
            let v = [HIDDEN, WEIGHT, BIAS]
                .iter()
                .zip(args)
                .map(|(what, (s, l))| view::<T>(op, what, s, l))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let out = self.run(v[0].view(), v[1].view(), v.get(2).map(|b| b.view()), &GradOutput::one())?;
            Ok(to_storage(out.loss.into_array()))
        })
    }

    /// The gradients of the student's tensors in the graph for candle's upstream gradient `grad`.
    fn backward(&self, args: &[&Tensor], grad: &Tensor) -> candle_core::Result<Vec<Option<Tensor>>> {
        let op = self.name;
        if !args.iter().any(|a| a.track_op()) {
            return Ok(vec![None; args.len()]);
        }
        with_linear_float!(op, args[0].dtype(), T => {
            let guards: Vec<_> = args.iter().map(|a| a.storage_and_layout()).collect();
            let v = [HIDDEN, WEIGHT, BIAS]
                .iter()
                .zip(&guards)
                .map(|(what, (g, l))| view::<T>(op, what, cpu(op, what, g)?, l))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let (gg, gl) = grad.storage_and_layout();
            let g = view::<T>(op, "grad_output", cpu(op, "grad_output", &gg)?, gl)?;
            let out = self.run(v[0].view(), v[1].view(), v.get(2).map(|b| b.view()), &GradOutput::Array(g.view()))?;
            let grads = [Some(out.grad_hidden.into_dyn()), Some(out.grad_weight.into_dyn()), out.grad_bias.map(|b| b.into_dyn())];
            args.iter()
                .zip(grads)
                .zip([HIDDEN, WEIGHT, BIAS])
                .map(|((a, g), what)| match (a.track_op(), g) {
                    (true, Some(g)) => grad_tensor(op, what, g, a).map(Some),
                    _ => Ok(None),
                })
                .collect()
        })
    }
}

impl CustomOp2 for LinearDistill {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward(&[(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        xs: &Tensor,
        ws: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g = self.backward(&[xs, ws], grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten()))
    }
}

impl CustomOp3 for LinearDistill {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.forward(&[(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        xs: &Tensor,
        ws: &Tensor,
        bs: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = self.backward(&[xs, ws, bs], grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), g.next().flatten()))
    }
}

/// Applies the op to the student's head: two or three differentiable tensors.
fn apply(student: &LinearHead<'_>, op: LinearDistill) -> candle_core::Result<Tensor> {
    match student.bias {
        None => student.hidden.apply_op2(student.weight, op),
        Some(b) => student.hidden.apply_op3(student.weight, b, op),
    }
}

fn student_args<'a>(student: &LinearHead<'a>) -> Vec<(&'static str, &'a Tensor)> {
    let mut args = vec![(HIDDEN, student.hidden), (WEIGHT, student.weight)];
    args.extend(student.bias.map(|b| (BIAS, b)));
    args
}

/// Fused linear heads + [`distill`](crate::distill()): student logits `hidden · weightᵀ (+ bias)` and
/// teacher logits likewise, computed chunk by chunk and never held whole, with every option of
/// [`infoloss::linear::linear_distill`] (`topk`: keep only the teacher's `k` largest logits per row). The
/// gradient reaches the student's hidden states, weight and bias; the teacher is a constant.
///
/// # Errors
///
/// Non-CPU tensors, dtypes other than `f32`/`f64` or that differ, shapes that do not chain, labels of the
/// wrong length or out of range, invalid options: the core's messages.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{DistillOptions, LinearDistillOptions, LinearHead, linear_distill};
/// let xs = Var::new(&[[1.0f64, 0.5], [-0.5, 2.0], [0.0, 1.0]], &Device::Cpu)?;
/// let ws = Var::new(&[[0.2f64, -0.1], [0.4, 0.3], [-0.3, 0.8]], &Device::Cpu)?;
/// let (xt, wt) = (Tensor::new(&[[0.3f64], [1.0], [-1.0]], &Device::Cpu)?, Tensor::new(&[[1.0f64], [-1.0], [0.5]], &Device::Cpu)?);
/// let student = LinearHead { hidden: xs.as_tensor(), weight: ws.as_tensor(), bias: None };
/// let teacher = LinearHead { hidden: &xt, weight: &wt, bias: None };
/// let opts = LinearDistillOptions { distill: DistillOptions { temperature: 2.0, ..Default::default() }, chunk_size: None };
/// let loss = linear_distill(&student, &teacher, None, None, &opts)?;
/// assert!((loss.to_scalar::<f64>()? - 0.429576663).abs() < 1e-9); // the NumPy API's example
/// let grads = loss.backward()?;
/// assert!((grads.get(&ws).unwrap().to_vec2::<f64>()?[2][0] - -0.085890086).abs() < 1e-9);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn linear_distill(
    student: &LinearHead<'_>,
    teacher: &LinearHead<'_>,
    labels: Option<&Tensor>,
    topk: Option<TeacherTopK>,
    opts: &LinearDistillOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "linear_distill";
    let mut args = student_args(student);
    args.extend([("teacher_hidden", teacher.hidden), ("teacher_weight", teacher.weight)]);
    args.extend(teacher.bias.map(|b| ("teacher_bias", b)));
    ensure_all_cpu(OP, &args)?;
    let dt = student.hidden.dtype();
    let teacher = Teacher::Head {
        hidden: Host::from_tensor(OP, "teacher_hidden", teacher.hidden, dt)?,
        weight: Host::from_tensor(OP, "teacher_weight", teacher.weight, dt)?,
        bias: teacher.bias.map(|b| Host::from_tensor(OP, "teacher_bias", b, dt)).transpose()?,
        topk,
    };
    apply(student, LinearDistill { name: OP, teacher, labels: labels_host(OP, labels)?, opts: *opts })
}

/// Fused linear head + [`distill_topk`](crate::distill_topk()): the student logits `hidden · weightᵀ
/// (+ bias)`, computed chunk by chunk and never held whole, distilled against a **stored** top-k teacher
/// (what a teacher cache holds), with every option of [`infoloss::linear_distill_topk`]. The gradient
/// reaches the student's hidden states, weight and bias; the teacher is a constant.
///
/// # Errors
///
/// As [`linear_distill`], plus `indices`/`logprobs` that are not one `(rows, k)` shape, out-of-range or
/// repeated indices.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use infoloss_candle::{DistillOptions, LinearDistillOptions, LinearHead, SparseTeacher, linear_distill_topk};
/// let dev = Device::Cpu;
/// let xs = Var::new(&[[1.0f64, 0.5], [-0.5, 2.0], [0.0, 1.0]], &dev)?;
/// let ws = Var::new(&[[0.2f64, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]], &dev)?;
/// let bs = Var::new(&[0.1f64, -0.2, 0.0, 0.3], &dev)?;
/// let teacher = SparseTeacher {
///     indices: Tensor::new(&[[1i64, 3], [0, 2], [3, 1]], &dev)?,
///     logprobs: Tensor::new(&[[-0.5f64, -1.5], [-0.3, -2.0], [-0.9, -1.1]], &dev)?,
///     add_tail: true,
/// };
/// let student = LinearHead { hidden: xs.as_tensor(), weight: ws.as_tensor(), bias: Some(bs.as_tensor()) };
/// let opts = LinearDistillOptions { distill: DistillOptions { temperature: 2.0, ..Default::default() }, chunk_size: Some(2) };
/// let loss = linear_distill_topk(&student, &teacher, None, &opts)?;
/// assert!((loss.to_scalar::<f64>()? - 1.7034088921638537).abs() < 1e-12); // the core's example (torch, f64)
/// let grads = (loss * 0.5)?.backward()?;
/// assert!((grads.get(&bs).unwrap().to_vec1::<f64>()?[1] - -0.10806479178636494).abs() < 1e-12);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn linear_distill_topk(
    student: &LinearHead<'_>,
    teacher: &SparseTeacher,
    labels: Option<&Tensor>,
    opts: &LinearDistillOptions,
) -> candle_core::Result<Tensor> {
    const OP: &str = "linear_distill_topk";
    let mut args = student_args(student);
    args.extend([("topk_indices", &teacher.indices), ("topk_logprobs", &teacher.logprobs)]);
    ensure_all_cpu(OP, &args)?;
    let teacher = Teacher::Stored {
        indices: indices_host(OP, "topk_indices", &teacher.indices)?,
        logprobs: Host::from_tensor(OP, "topk_logprobs", &teacher.logprobs, student.hidden.dtype())?,
        add_tail: teacher.add_tail,
    };
    apply(student, LinearDistill { name: OP, teacher, labels: labels_host(OP, labels)?, opts: *opts })
}
