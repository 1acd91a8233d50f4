//! Cross-entropy with extras (z-loss, softcap, lse, token accuracy) and the fused linear losses
//! (`linear_cross_entropy`, `linear_distill`).
//!
//! - `cross_entropy_extras` returns `(loss, z_loss, lse or None, token_accuracy or None, grad_input or None)`;
//! - `linear_cross_entropy` returns `(loss, z_loss, lse or None, token_accuracy or None, grad_hidden,
//!   grad_weight, grad_bias or None)`;
//! - `linear_distill` returns `(loss, grad_hidden, grad_weight, grad_bias or None)` (student side; optional
//!   biases, a top-k teacher and an upstream gradient).
//!
//! The fused linear losses exist for `f32` and `f64` only (`infoloss::LinearFloat`); the Python layer computes
//! float16 in float32.

use ndarray::{ArrayD, ArrayViewD, Ix1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use infoloss::linear::{LinearHead, TeacherTopK, linear_distill_workspace_with};
use infoloss::{
    CrossEntropyExtrasOptions, Error, GradOutput, LinearCrossEntropyOptions, LinearDistillOptions,
    LinearFloat, Loss, linear_cross_entropy_workspace,
};
use numpy::prelude::*;

use crate::boundary::{
    Float, Kind, array_to_py, compute, dispatch, float_arr, grad_output, index_arr, kind, loss_to_py,
    opt_float_arr, probe, to_py_err,
};
use crate::catalog::from_tuple;
use crate::distill::{Labels, view_2d};
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

// ------------------------------------------------------------------------------------------ linear_cross_entropy

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

#[allow(clippy::too_many_arguments)]
fn linear_ce_impl<T: Float + LinearFloat>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    linear_weight: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    linear_bias: Option<&Bound<'_, PyAny>>,
    weight: Option<&Bound<'_, PyAny>>,
    options: &Bound<'_, PyTuple>,
    grad_out: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "linear_cross_entropy";
    let x = float_arr::<T>(input, OP, "input")?;
    let lw = float_arr::<T>(linear_weight, OP, "linear_weight")?;
    let t = index_arr(target, OP, "target")?;
    let b = opt_float_arr::<T>(linear_bias, OP, "linear_bias")?;
    let w = opt_float_arr::<T>(weight, OP, "weight")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    probe(OP, &[x.shape()], 2)?;
    probe(OP, &[lw.shape()], 2)?;
    let xv = x.as_array();
    let lwv = lw.as_array();
    let tv = t.as_array();
    let bv = b.as_ref().map(|b| vector(b.as_array(), OP, "linear_bias")).transpose()?;
    let mut opts = from_tuple::<LinearCrossEntropyOptions<'_, T>>(OP, options)?;
    opts.ce.weight = w.as_ref().map(|w| weight_1d(w.as_array(), OP)).transpose()?;
    if let ([n, h], [v, _]) = (xv.shape(), lwv.shape()) {
        let ws = linear_cross_entropy_workspace(*n, *h, *v, bv.is_some(), &opts);
        probe_bytes(OP, ws.total_bytes)?;
    }
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let out = compute(py, OP, move || {
        let go = gv.unwrap_or_else(GradOutput::one);
        infoloss::linear_cross_entropy_backward(xv, lwv, bv, tv, &opts, &go)
    })?;
    let items: [Option<Py<PyAny>>; 7] = [
        Some(loss_to_py(py, out.loss)),
        Some(loss_to_py(py, out.z_loss)),
        opt_py(py, out.lse.map(|a| a.into_dyn())),
        opt_loss_py(py, out.token_accuracy),
        Some(array_to_py(py, out.grad_hidden.into_dyn())),
        Some(array_to_py(py, out.grad_weight.into_dyn())),
        opt_py(py, out.grad_bias.map(|a| a.into_dyn())),
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
    linear_dispatch!(
        linear_kind(input, OP, "input")?,
        linear_ce_impl(py, input, linear_weight, target, linear_bias, weight, options, grad_output)
    )
}

// ----------------------------------------------------------------------------------------------- linear_distill

/// The optional arguments of `linear_distill` besides the options: biases, upstream gradient.
struct DistillExtras<'a, 'py> {
    student_bias: Option<&'a Bound<'py, PyAny>>,
    teacher_bias: Option<&'a Bound<'py, PyAny>>,
    grad_output: Option<&'a Bound<'py, PyAny>>,
    topk: Option<TeacherTopK>,
}

fn linear_distill_impl<T: Float + LinearFloat>(
    py: Python<'_>,
    arrays: [&Bound<'_, PyAny>; 4],
    labels: Option<&Bound<'_, PyAny>>,
    extras: DistillExtras<'_, '_>,
    opts: LinearDistillOptions,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "linear_distill";
    let [xs, ws, xt, wt] = arrays;
    let xs = float_arr::<T>(xs, OP, "student_hidden")?;
    let ws = float_arr::<T>(ws, OP, "student_weight")?;
    let xt = float_arr::<T>(xt, OP, "teacher_hidden")?;
    let wt = float_arr::<T>(wt, OP, "teacher_weight")?;
    let bs = opt_float_arr::<T>(extras.student_bias, OP, "student_bias")?;
    let bt = opt_float_arr::<T>(extras.teacher_bias, OP, "teacher_bias")?;
    let g = opt_float_arr::<T>(extras.grad_output, OP, "grad_output")?;
    let y = Labels::borrow(labels, OP)?;
    probe(OP, &[xs.shape()], 2)?;
    probe(OP, &[ws.shape()], 2)?;
    let xsv = view_2d(OP, "student_hidden", xs.as_array())?;
    let wsv = view_2d(OP, "student_weight", ws.as_array())?;
    let xtv = view_2d(OP, "teacher_hidden", xt.as_array())?;
    let wtv = view_2d(OP, "teacher_weight", wt.as_array())?;
    let bsv = bs.as_ref().map(|b| vector(b.as_array(), OP, "student_bias")).transpose()?;
    let btv = bt.as_ref().map(|b| vector(b.as_array(), OP, "teacher_bias")).transpose()?;
    let yv = y.view(OP)?;
    let (n, hs, ht, v) = (xsv.nrows(), xsv.ncols(), xtv.ncols(), wsv.nrows());
    let w = linear_distill_workspace_with::<T>(n, hs, ht, v, bsv.is_some(), extras.topk, &opts);
    probe_bytes(OP, w.total_bytes)?;
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let topk = extras.topk;
    let out = compute(py, OP, move || {
        let student = LinearHead { hidden: xsv, weight: wsv, bias: bsv };
        let teacher = LinearHead { hidden: xtv, weight: wtv, bias: btv };
        let go = gv.unwrap_or_else(GradOutput::one);
        infoloss::linear::linear_distill_backward(&student, &teacher, yv, topk, &opts, &go)
    })?;
    let items: [Option<Py<PyAny>>; 4] = [
        Some(loss_to_py(py, out.loss)),
        Some(array_to_py(py, out.grad_hidden.into_dyn())),
        Some(array_to_py(py, out.grad_weight.into_dyn())),
        opt_py(py, out.grad_bias.map(|a| a.into_dyn())),
    ];
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
    let extras = DistillExtras { student_bias, teacher_bias, grad_output, topk };
    let arrays = [student_hidden, student_weight, teacher_hidden, teacher_weight];
    linear_dispatch!(
        linear_kind(student_hidden, OP, "student_hidden")?,
        linear_distill_impl(py, arrays, labels, extras, opts)
    )
}
