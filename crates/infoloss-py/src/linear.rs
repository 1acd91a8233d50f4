//! Cross-entropy with extras (z-loss, softcap, lse, token accuracy) and the fused linear losses
//! (`linear_cross_entropy`, `linear_distill`, `linear_distill_topk`).
//!
//! - `cross_entropy_extras` returns `(loss, z_loss, lse or None, token_accuracy or None, grad_input or None)`;
//! - `linear_cross_entropy` returns `(loss, z_loss, lse or None, token_accuracy or None, grad_hidden,
//!   grad_weight, grad_bias or None)`;
//! - `linear_distill` returns `(loss, grad_hidden, grad_weight, grad_bias or None)` (student side; optional
//!   biases, a top-k teacher and an upstream gradient); `linear_distill_topk` the same against a stored top-k
//!   teacher.
//!
//! The fused linear losses exist for `f32` and `f64` only (`infoloss::LinearFloat`); the Python layer computes
//! float16 in float32.

use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayViewD, Ix1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use infoloss::linear::{
    LinearHead, TeacherTopK, linear_distill_topk_workspace, linear_distill_workspace_with,
};
use infoloss::{
    CrossEntropyExtrasOptions, Error, GradOutput, LinearCrossEntropyOptions, LinearDistillOptions,
    LinearFloat, Loss, linear_cross_entropy_workspace,
};
use numpy::PyReadonlyArrayDyn;
use numpy::prelude::*;

use crate::boundary::{
    Float, Kind, array_to_py, compute, dispatch, float_arr, grad_output, index_arr, kind, loss_to_py,
    opt_float_arr, probe, to_py_err,
};
use crate::catalog::from_tuple;
use crate::distill::{Labels, TopK, view_2d};
use crate::losses::weight_1d;

/// A 1-D float view (bias, class weight), or a `ValueError` naming the argument and its shape.
fn vector<'a, T>(a: ArrayViewD<'a, T>, op: &str, name: &str) -> PyResult<ndarray::ArrayView1<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix1>()
        .map_err(|_| PyValueError::new_err(format!("{op}: {name} must be 1-D, got shape {shape:?}")))
}

/// Checks a temporary of `bytes` bytes can be allocated (`MemoryError` otherwise).
fn probe_bytes(op: &str, bytes: usize) -> PyResult<()> {
    probe(op, &[&[bytes.div_ceil(8)]], 1)
}

fn opt_py<T: Float>(py: Python<'_>, a: Option<ArrayD<T>>) -> Option<Py<PyAny>> {
    a.map(|a| array_to_py(py, a))
}

fn opt_loss_py<T: Float>(py: Python<'_>, l: Option<Loss<T>>) -> Option<Py<PyAny>> {
    l.map(|l| loss_to_py(py, l))
}

// ------------------------------------------------------------------------------------------ cross_entropy_extras

fn ce_extras_impl<T: Float>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    options: &Bound<'_, PyTuple>,
    grad_out: Option<&Bound<'_, PyAny>>,
    want_grad: bool,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "cross_entropy_extras";
    let x = float_arr::<T>(input, OP, "input")?;
    let t = index_arr(target, OP, "target")?;
    let w = opt_float_arr::<T>(weight, OP, "weight")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    probe(OP, &[x.shape()], 2 + usize::from(g.is_some()))?;
    let xv = x.as_array();
    let tv = t.as_array();
    let mut opts = from_tuple::<CrossEntropyExtrasOptions<'_, T>>(OP, options)?;
    opts.weight = w.as_ref().map(|w| weight_1d(w.as_array(), OP)).transpose()?;
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let (out, grad) = compute(py, OP, move || {
        let out = infoloss::cross_entropy_extras_with_grad(xv.view(), tv.view(), &opts)?;
        let grad = match (&gv, want_grad) {
            (_, false) => None,
            (None, true) => Some(out.grad.clone().into_dyn()),
            (Some(g), true) => Some(infoloss::cross_entropy_extras_backward(xv, tv, &opts, g)?.into_dyn()),
        };
        Ok((out, grad))
    })?;
    let items: [Option<Py<PyAny>>; 5] = [
        Some(loss_to_py(py, out.loss)),
        Some(loss_to_py(py, out.z_loss)),
        opt_py(py, out.lse.map(|a| a.into_dyn())),
        opt_loss_py(py, out.token_accuracy),
        opt_py(py, grad),
    ];
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

/// `cross_entropy_extras`: `(loss, z_loss, lse, token_accuracy, grad_input)` (the optional ones may be `None`).
#[pyfunction]
#[pyo3(signature = (input, target, weight, options, grad_output, grad))]
pub(crate) fn cross_entropy_extras(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    options: &Bound<'_, PyTuple>,
    grad_output: Option<&Bound<'_, PyAny>>,
    grad: bool,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "cross_entropy_extras";
    dispatch!(
        kind(input, OP, "input")?,
        ce_extras_impl(py, input, target, weight, options, grad_output, grad)
    )
}

// ------------------------------------------------------------------------------------- the fused linear losses

/// The element kind of a fused linear loss: float32 or float64 (`TypeError` for float16, which the Python layer
/// widens first).
fn linear_kind(obj: &Bound<'_, PyAny>, op: &str, name: &str) -> PyResult<Kind> {
    match kind(obj, op, name)? {
        Kind::F16 => Err(PyTypeError::new_err(format!(
            "{op}: {name} must be a float32 or float64 array (the fused linear losses have no float16 kernels)"
        ))),
        k => Ok(k),
    }
}

macro_rules! linear_dispatch {
    ($kind:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $kind {
            Kind::F32 => $f::<f32>($($arg),*),
            _ => $f::<f64>($($arg),*),
        }
    };
}

/// The Python arguments of a linear head: hidden states, weight and optional bias, with the names their errors
/// use (`input`/`linear_weight`/`linear_bias`, `student_*`, `teacher_*`).
struct HeadArgs<'a, 'py> {
    hidden: &'a Bound<'py, PyAny>,
    weight: &'a Bound<'py, PyAny>,
    bias: Option<&'a Bound<'py, PyAny>>,
    names: [&'static str; 3],
}

/// A linear head borrowed from Python.
struct Head<'py, T: Float> {
    hidden: PyReadonlyArrayDyn<'py, T>,
    weight: PyReadonlyArrayDyn<'py, T>,
    bias: Option<PyReadonlyArrayDyn<'py, T>>,
    names: [&'static str; 3],
}

impl<'py, T: Float> Head<'py, T> {
    fn borrow(op: &'static str, args: &HeadArgs<'_, 'py>) -> PyResult<Self> {
        let [h, w, b] = args.names;
        Ok(Head {
            hidden: float_arr::<T>(args.hidden, op, h)?,
            weight: float_arr::<T>(args.weight, op, w)?,
            bias: opt_float_arr::<T>(args.bias, op, b)?,
            names: args.names,
        })
    }

    /// Checks the hidden states and the weight (and their gradients) can be allocated (`MemoryError` otherwise).
    fn probe(&self, op: &str) -> PyResult<()> {
        probe(op, &[self.hidden.shape()], 2)?;
        probe(op, &[self.weight.shape()], 2)
    }

    /// The bias as `(V,)`.
    fn bias(&self, op: &str) -> PyResult<Option<ArrayView1<'_, T>>> {
        self.bias.as_ref().map(|b| vector(b.as_array(), op, self.names[2])).transpose()
    }

    /// The core's head, or the rank error naming the argument.
    fn view(&self, op: &'static str) -> PyResult<LinearHead<'_, T>> {
        Ok(LinearHead {
            hidden: view_2d(op, self.names[0], self.hidden.as_array())?,
            weight: view_2d(op, self.names[1], self.weight.as_array())?,
            bias: self.bias(op)?,
        })
    }
}

/// Runs a fused loss after checking its `workspace` bytes can be allocated, for the upstream gradient `g`
/// (1 when `None`).
fn fused<T: Float, R: Send>(
    py: Python<'_>,
    op: &str,
    workspace: usize,
    g: Option<&PyReadonlyArrayDyn<'_, T>>,
    f: impl FnOnce(&GradOutput<'_, T>) -> infoloss::Result<R> + Send,
) -> PyResult<R> {
    probe_bytes(op, workspace)?;
    let gv = g.map(|g| grad_output(g.as_array()));
    compute(py, op, move || f(&gv.unwrap_or_else(GradOutput::one)))
}

/// A head's gradients as Python values: hidden states, weight, bias (or `None`).
fn head_grads<T: Float>(
    py: Python<'_>,
    hidden: Array2<T>,
    weight: Array2<T>,
    bias: Option<Array1<T>>,
) -> [Option<Py<PyAny>>; 3] {
    [
        Some(array_to_py(py, hidden.into_dyn())),
        Some(array_to_py(py, weight.into_dyn())),
        opt_py(py, bias.map(|a| a.into_dyn())),
    ]
}

// ------------------------------------------------------------------------------------------ linear_cross_entropy

/// The arguments of `linear_cross_entropy` besides the head.
struct CeArgs<'a, 'py> {
    target: &'a Bound<'py, PyAny>,
    weight: Option<&'a Bound<'py, PyAny>>,
    options: &'a Bound<'py, PyTuple>,
    grad_output: Option<&'a Bound<'py, PyAny>>,
}

fn linear_ce_impl<T: Float + LinearFloat>(
    py: Python<'_>,
    head: HeadArgs<'_, '_>,
    args: CeArgs<'_, '_>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "linear_cross_entropy";
    let head = Head::<T>::borrow(OP, &head)?;
    let t = index_arr(args.target, OP, "target")?;
    let w = opt_float_arr::<T>(args.weight, OP, "weight")?;
    let g = opt_float_arr::<T>(args.grad_output, OP, "grad_output")?;
    head.probe(OP)?;
    let (xv, lwv) = (head.hidden.as_array(), head.weight.as_array());
    let tv = t.as_array();
    let bv = head.bias(OP)?;
    let mut opts = from_tuple::<LinearCrossEntropyOptions<'_, T>>(OP, args.options)?;
    opts.ce.weight = w.as_ref().map(|w| weight_1d(w.as_array(), OP)).transpose()?;
    let workspace = match (xv.shape(), lwv.shape()) {
        ([n, h], [v, _]) => linear_cross_entropy_workspace(*n, *h, *v, bv.is_some(), &opts).total_bytes,
        _ => 0,
    };
    let out = fused(py, OP, workspace, g.as_ref(), move |go| {
        infoloss::linear_cross_entropy_backward(xv, lwv, bv, tv, &opts, go)
    })?;
    let [gx, gw, gb] = head_grads(py, out.grad_hidden, out.grad_weight, out.grad_bias);
    let items: [Option<Py<PyAny>>; 7] = [
        Some(loss_to_py(py, out.loss)),
        Some(loss_to_py(py, out.z_loss)),
        opt_py(py, out.lse.map(|a| a.into_dyn())),
        opt_loss_py(py, out.token_accuracy),
        gx,
        gw,
        gb,
    ];
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

/// `linear_cross_entropy`: `(loss, z_loss, lse, token_accuracy, grad_input, grad_linear_weight,
/// grad_linear_bias)`; `options`: `LinearCrossEntropyOptions` in catalog order.
#[pyfunction]
#[pyo3(signature = (input, linear_weight, target, linear_bias, weight, options, grad_output))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_cross_entropy(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    linear_weight: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    linear_bias: Option<&Bound<'_, PyAny>>,
    weight: Option<&Bound<'_, PyAny>>,
    options: &Bound<'_, PyTuple>,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "linear_cross_entropy";
    let names = ["input", "linear_weight", "linear_bias"];
    let head = HeadArgs { hidden: input, weight: linear_weight, bias: linear_bias, names };
    let args = CeArgs { target, weight, options, grad_output };
    linear_dispatch!(linear_kind(input, OP, "input")?, linear_ce_impl(py, head, args))
}

// ---------------------------------------------------------------------------- linear_distill(_topk)

/// The teacher of a fused distillation: a linear head (`linear_distill`, optionally cut to its top-k) or a
/// stored top-k (`linear_distill_topk`).
enum TeacherArgs<'a, 'py> {
    Head(HeadArgs<'a, 'py>, Option<TeacherTopK>),
    Stored { indices: &'a Bound<'py, PyAny>, logprobs: &'a Bound<'py, PyAny>, add_tail: bool },
}

/// The arguments of a fused distillation besides its options.
struct DistillArgs<'a, 'py> {
    student: HeadArgs<'a, 'py>,
    teacher: TeacherArgs<'a, 'py>,
    labels: Option<&'a Bound<'py, PyAny>>,
    grad_output: Option<&'a Bound<'py, PyAny>>,
}

const STUDENT: [&str; 3] = ["student_hidden", "student_weight", "student_bias"];
const TEACHER: [&str; 3] = ["teacher_hidden", "teacher_weight", "teacher_bias"];

fn linear_distill_impl<T: Float + LinearFloat>(
    py: Python<'_>,
    op: &'static str,
    args: DistillArgs<'_, '_>,
    opts: LinearDistillOptions,
) -> PyResult<Py<PyAny>> {
    let student = Head::<T>::borrow(op, &args.student)?;
    let g = opt_float_arr::<T>(args.grad_output, op, "grad_output")?;
    let y = Labels::borrow(args.labels, op)?;
    student.probe(op)?;
    let sv = student.view(op)?;
    let yv = y.view(op)?;
    let (n, hs, v) = (sv.hidden.nrows(), sv.hidden.ncols(), sv.weight.nrows());
    let has_bias = sv.bias.is_some();
    let out = match args.teacher {
        TeacherArgs::Head(teacher, topk) => {
            let teacher = Head::<T>::borrow(op, &teacher)?;
            let tv = teacher.view(op)?;
            let ht = tv.hidden.ncols();
            let w = linear_distill_workspace_with::<T>(n, hs, ht, v, has_bias, topk, &opts);
            fused(py, op, w.total_bytes, g.as_ref(), move |go| {
                infoloss::linear::linear_distill_backward(&sv, &tv, yv, topk, &opts, go)
            })?
        }
        TeacherArgs::Stored { indices, logprobs, add_tail } => {
            let topk = TopK::<T>::borrow(indices, logprobs, op)?;
            let tv = topk.teacher(op, add_tail)?;
            let w = linear_distill_topk_workspace::<T>(n, hs, v, has_bias, &opts);
            fused(py, op, w.total_bytes, g.as_ref(), move |go| {
                infoloss::linear_distill_topk(&sv, &tv, yv, &opts, go)
            })?
        }
    };
    let [gx, gw, gb] = head_grads(py, out.grad_hidden, out.grad_weight, out.grad_bias);
    let items: [Option<Py<PyAny>>; 4] = [Some(loss_to_py(py, out.loss)), gx, gw, gb];
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

/// `linear_distill`: `(loss, grad_student_hidden, grad_student_weight, grad_student_bias or None)` for the upstream
/// gradient `grad_output` (1 when `None`), with optional biases and a top-k teacher (`teacher_topk = k`).
#[pyfunction]
#[pyo3(signature = (
    student_hidden, student_weight, teacher_hidden, teacher_weight, labels, options, student_bias=None,
    teacher_bias=None,
    teacher_topk=None, add_tail=false, grad_output=None
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_distill(
    py: Python<'_>,
    student_hidden: &Bound<'_, PyAny>,
    student_weight: &Bound<'_, PyAny>,
    teacher_hidden: &Bound<'_, PyAny>,
    teacher_weight: &Bound<'_, PyAny>,
    labels: Option<&Bound<'_, PyAny>>,
    options: &Bound<'_, PyTuple>,
    student_bias: Option<&Bound<'_, PyAny>>,
    teacher_bias: Option<&Bound<'_, PyAny>>,
    teacher_topk: Option<i64>,
    add_tail: bool,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "linear_distill";
    let opts = from_tuple::<LinearDistillOptions>(OP, options)?;
    let topk = match teacher_topk {
        None => None,
        Some(k) => Some(TeacherTopK {
            k: usize::try_from(k).map_err(|_| {
                to_py_err(Error::invalid_option(
                    OP,
                    "teacher_topk",
                    k,
                    "must be a non-negative number of classes",
                ))
            })?,
            add_tail,
        }),
    };
    let args = DistillArgs {
        student: HeadArgs {
            hidden: student_hidden,
            weight: student_weight,
            bias: student_bias,
            names: STUDENT,
        },
        teacher: TeacherArgs::Head(
            HeadArgs { hidden: teacher_hidden, weight: teacher_weight, bias: teacher_bias, names: TEACHER },
            topk,
        ),
        labels,
        grad_output,
    };
    linear_dispatch!(
        linear_kind(student_hidden, OP, "student_hidden")?,
        linear_distill_impl(py, OP, args, opts)
    )
}

/// `linear_distill_topk`: `linear_distill`'s tuple against a stored top-k teacher (`topk_indices`,
/// `topk_logprobs`, `(N, k)` each; `add_tail` adds the bucket of the remaining mass).
#[pyfunction]
#[pyo3(signature = (
    student_hidden, student_weight, topk_indices, topk_logprobs, labels, options, student_bias=None,
    add_tail=false, grad_output=None
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_distill_topk(
    py: Python<'_>,
    student_hidden: &Bound<'_, PyAny>,
    student_weight: &Bound<'_, PyAny>,
    topk_indices: &Bound<'_, PyAny>,
    topk_logprobs: &Bound<'_, PyAny>,
    labels: Option<&Bound<'_, PyAny>>,
    options: &Bound<'_, PyTuple>,
    student_bias: Option<&Bound<'_, PyAny>>,
    add_tail: bool,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "linear_distill_topk";
    let opts = from_tuple::<LinearDistillOptions>(OP, options)?;
    let args = DistillArgs {
        student: HeadArgs {
            hidden: student_hidden,
            weight: student_weight,
            bias: student_bias,
            names: STUDENT,
        },
        teacher: TeacherArgs::Stored { indices: topk_indices, logprobs: topk_logprobs, add_tail },
        labels,
        grad_output,
    };
    linear_dispatch!(
        linear_kind(student_hidden, OP, "student_hidden")?,
        linear_distill_impl(py, OP, args, opts)
    )
}
