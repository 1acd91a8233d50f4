//! The losses: cross-entropy (class indices and probabilities), NLL, KL divergence, BCE, BCE with logits.
//!
//! Every function returns `(loss or None, grad_input or None, grad_target or None)`; the Python layer
//! (`infoloss/__init__.py`) validates arguments, converts dtypes and shapes the public results.

use ndarray::{ArrayView1, ArrayViewD, Ix1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use infoloss::{BceOptions, BceWithLogitsOptions, CrossEntropyOptions, GradOutput, KlDivOptions, NllOptions};
use numpy::prelude::*;

use crate::boundary::{
    Float, Plan, compute, dispatch, drive, float_arr, grad_output, index_arr, kind, opt_float_arr, probe,
    reduction,
};

/// The per-class weight of the class-index losses: one dimension.
pub(crate) fn weight_1d<'a, T>(w: ArrayViewD<'a, T>, op: &str) -> PyResult<ArrayView1<'a, T>> {
    let shape = w.shape().to_vec();
    w.into_dimensionality::<Ix1>().map_err(|_| {
        PyValueError::new_err(format!(
            "{op}: weight must be 1-D with one value per class, got shape {shape:?}"
        ))
    })
}

/// How many arrays of the input's size a call allocates (for the allocation probe).
fn arrays(plan: Plan) -> usize {
    2 + usize::from(plan.grad) + usize::from(plan.target_grad)
}

/// A backward pass given the upstream gradient.
type Backward<'g, T> = fn(&GradOutput<'g, T>) -> infoloss::Result<ndarray::ArrayD<T>>;

/// No target gradient (for the closure type of `drive`).
fn no_target<'g, T: Float>() -> Option<Backward<'g, T>> {
    None
}

// ---------------------------------------------------------------------------------------------- cross_entropy

#[allow(clippy::too_many_arguments)]
fn cross_entropy_impl<T: Float>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    red: &str,
    label_smoothing: f64,
    grad_out: Option<&Bound<'_, PyAny>>,
    plan: Plan,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "cross_entropy";
    let x = float_arr::<T>(input, OP, "input")?;
    let t = index_arr(target, OP, "target")?;
    let w = opt_float_arr::<T>(weight, OP, "weight")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    let red = reduction(red)?;
    probe(OP, &[x.shape()], arrays(plan))?;
    let xv = x.as_array();
    let tv = t.as_array();
    let wv = w.as_ref().map(|w| weight_1d(w.as_array(), OP)).transpose()?;
    let opts = CrossEntropyOptions { weight: wv, ignore_index, reduction: red, label_smoothing };
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let out = compute(py, OP, move || {
        drive(
            plan,
            gv,
            || infoloss::cross_entropy(xv.view(), tv.view(), &opts),
            || infoloss::cross_entropy_with_grad(xv.view(), tv.view(), &opts),
            |g| infoloss::cross_entropy_backward(xv.view(), tv.view(), &opts, g),
            no_target(),
        )
    })?;
    out.into_py(py)
}

/// `cross_entropy` with class-index targets.
#[pyfunction]
#[pyo3(signature = (input, target, weight, ignore_index, reduction, label_smoothing, grad_output, loss, grad))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_entropy(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    reduction: &str,
    label_smoothing: f64,
    grad_output: Option<&Bound<'_, PyAny>>,
    loss: bool,
    grad: bool,
) -> PyResult<Py<PyAny>> {
    let plan = Plan { loss, grad, target_grad: false };
    dispatch!(
        kind(input, "cross_entropy", "input")?,
        cross_entropy_impl(
            py,
            input,
            target,
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            grad_output,
            plan
        )
    )
}

#[allow(clippy::too_many_arguments)]
fn cross_entropy_probs_impl<T: Float>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    red: &str,
    label_smoothing: f64,
    grad_out: Option<&Bound<'_, PyAny>>,
    plan: Plan,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "cross_entropy";
    let x = float_arr::<T>(input, OP, "input")?;
    let t = float_arr::<T>(target, OP, "target")?;
    let w = opt_float_arr::<T>(weight, OP, "weight")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    let red = reduction(red)?;
    probe(OP, &[x.shape(), t.shape()], arrays(plan))?;
    let xv = x.as_array();
    let tv = t.as_array();
    let wv = w.as_ref().map(|w| weight_1d(w.as_array(), OP)).transpose()?;
    let opts = CrossEntropyOptions { weight: wv, ignore_index: -100, reduction: red, label_smoothing };
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let out = compute(py, OP, move || {
        drive(
            plan,
            gv,
            || infoloss::cross_entropy_probs(xv.view(), tv.view(), &opts),
            || infoloss::cross_entropy_probs_with_grad(xv.view(), tv.view(), &opts),
            |g| infoloss::cross_entropy_probs_backward(xv.view(), tv.view(), &opts, g),
            Some(|g: &GradOutput<'_, T>| {
                infoloss::cross_entropy_probs_backward_target(xv.view(), tv.view(), &opts, g)
            }),
        )
    })?;
    out.into_py(py)
}

/// `cross_entropy` with class-probability targets (target of the input's shape).
#[pyfunction]
#[pyo3(signature = (input, target, weight, reduction, label_smoothing, grad_output, loss, grad, target_grad))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_entropy_probs(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    reduction: &str,
    label_smoothing: f64,
    grad_output: Option<&Bound<'_, PyAny>>,
    loss: bool,
    grad: bool,
    target_grad: bool,
) -> PyResult<Py<PyAny>> {
    let plan = Plan { loss, grad, target_grad };
    dispatch!(
        kind(input, "cross_entropy", "input")?,
        cross_entropy_probs_impl(py, input, target, weight, reduction, label_smoothing, grad_output, plan)
    )
}

// ---------------------------------------------------------------------------------------------------- nll_loss

#[allow(clippy::too_many_arguments)]
fn nll_loss_impl<T: Float>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    red: &str,
    grad_out: Option<&Bound<'_, PyAny>>,
    plan: Plan,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "nll_loss";
    let x = float_arr::<T>(input, OP, "input")?;
    let t = index_arr(target, OP, "target")?;
    let w = opt_float_arr::<T>(weight, OP, "weight")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    let red = reduction(red)?;
    probe(OP, &[x.shape()], arrays(plan))?;
    let xv = x.as_array();
    let tv = t.as_array();
    let wv = w.as_ref().map(|w| weight_1d(w.as_array(), OP)).transpose()?;
    let opts = NllOptions { weight: wv, ignore_index, reduction: red };
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let out = compute(py, OP, move || {
        drive(
            plan,
            gv,
            || infoloss::nll_loss(xv.view(), tv.view(), &opts),
            || infoloss::nll_loss_with_grad(xv.view(), tv.view(), &opts),
            |g| infoloss::nll_loss_backward(xv.view(), tv.view(), &opts, g),
            no_target(),
        )
    })?;
    out.into_py(py)
}

/// `nll_loss`.
#[pyfunction]
#[pyo3(signature = (input, target, weight, ignore_index, reduction, grad_output, loss, grad))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn nll_loss(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    reduction: &str,
    grad_output: Option<&Bound<'_, PyAny>>,
    loss: bool,
    grad: bool,
) -> PyResult<Py<PyAny>> {
    let plan = Plan { loss, grad, target_grad: false };
    dispatch!(
        kind(input, "nll_loss", "input")?,
        nll_loss_impl(py, input, target, weight, ignore_index, reduction, grad_output, plan)
    )
}

// ------------------------------------------------------------------------------------------------------ kl_div

fn kl_div_impl<T: Float>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    red: &str,
    log_target: bool,
    grad_out: Option<&Bound<'_, PyAny>>,
    plan: Plan,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "kl_div";
    let x = float_arr::<T>(input, OP, "input")?;
    let t = float_arr::<T>(target, OP, "target")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    let red = reduction(red)?;
    probe(OP, &[x.shape(), t.shape()], arrays(plan))?;
    let xv = x.as_array();
    let tv = t.as_array();
    let opts = KlDivOptions { reduction: red, log_target };
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let out = compute(py, OP, move || {
        drive(
            plan,
            gv,
            || infoloss::kl_div(xv.view(), tv.view(), &opts),
            || infoloss::kl_div_with_grad(xv.view(), tv.view(), &opts),
            |g| infoloss::kl_div_backward(xv.view(), tv.view(), &opts, g),
            Some(|g: &GradOutput<'_, T>| infoloss::kl_div_backward_target(xv.view(), tv.view(), &opts, g)),
        )
    })?;
    out.into_py(py)
}

/// `kl_div` (the reduction is already resolved: `batchmean` is passed through).
#[pyfunction]
#[pyo3(signature = (input, target, reduction, log_target, grad_output, loss, grad, target_grad))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn kl_div(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    reduction: &str,
    log_target: bool,
    grad_output: Option<&Bound<'_, PyAny>>,
    loss: bool,
    grad: bool,
    target_grad: bool,
) -> PyResult<Py<PyAny>> {
    let plan = Plan { loss, grad, target_grad };
    dispatch!(
        kind(input, "kl_div", "input")?,
        kl_div_impl(py, input, target, reduction, log_target, grad_output, plan)
    )
}

// --------------------------------------------------------------------------------------- binary_cross_entropy

#[allow(clippy::too_many_arguments)]
fn bce_impl<T: Float>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    red: &str,
    grad_out: Option<&Bound<'_, PyAny>>,
    plan: Plan,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "binary_cross_entropy";
    let x = float_arr::<T>(input, OP, "input")?;
    let t = float_arr::<T>(target, OP, "target")?;
    let w = opt_float_arr::<T>(weight, OP, "weight")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    let red = reduction(red)?;
    probe(OP, &[x.shape(), t.shape()], arrays(plan))?;
    let xv = x.as_array();
    let tv = t.as_array();
    let opts = BceOptions { weight: w.as_ref().map(|w| w.as_array()), reduction: red };
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let out = compute(py, OP, move || {
        drive(
            plan,
            gv,
            || infoloss::binary_cross_entropy(xv.view(), tv.view(), &opts),
            || infoloss::binary_cross_entropy_with_grad(xv.view(), tv.view(), &opts),
            |g| infoloss::binary_cross_entropy_backward(xv.view(), tv.view(), &opts, g),
            Some(|g: &GradOutput<'_, T>| {
                infoloss::binary_cross_entropy_backward_target(xv.view(), tv.view(), &opts, g)
            }),
        )
    })?;
    out.into_py(py)
}

/// `binary_cross_entropy`.
#[pyfunction]
#[pyo3(signature = (input, target, weight, reduction, grad_output, loss, grad, target_grad))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn binary_cross_entropy(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    reduction: &str,
    grad_output: Option<&Bound<'_, PyAny>>,
    loss: bool,
    grad: bool,
    target_grad: bool,
) -> PyResult<Py<PyAny>> {
    let plan = Plan { loss, grad, target_grad };
    dispatch!(
        kind(input, "binary_cross_entropy", "input")?,
        bce_impl(py, input, target, weight, reduction, grad_output, plan)
    )
}

#[allow(clippy::too_many_arguments)]
fn bce_logits_impl<T: Float>(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    pos_weight: Option<&Bound<'_, PyAny>>,
    red: &str,
    grad_out: Option<&Bound<'_, PyAny>>,
    plan: Plan,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "binary_cross_entropy_with_logits";
    let x = float_arr::<T>(input, OP, "input")?;
    let t = float_arr::<T>(target, OP, "target")?;
    let w = opt_float_arr::<T>(weight, OP, "weight")?;
    let pw = opt_float_arr::<T>(pos_weight, OP, "pos_weight")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    let red = reduction(red)?;
    probe(OP, &[x.shape(), t.shape()], arrays(plan))?;
    let xv = x.as_array();
    let tv = t.as_array();
    let opts = BceWithLogitsOptions {
        weight: w.as_ref().map(|w| w.as_array()),
        pos_weight: pw.as_ref().map(|w| w.as_array()),
        reduction: red,
    };
    let gv = g.as_ref().map(|g| grad_output(g.as_array()));
    let out = compute(py, OP, move || {
        drive(
            plan,
            gv,
            || infoloss::binary_cross_entropy_with_logits(xv.view(), tv.view(), &opts),
            || infoloss::binary_cross_entropy_with_logits_with_grad(xv.view(), tv.view(), &opts),
            |g| infoloss::binary_cross_entropy_with_logits_backward(xv.view(), tv.view(), &opts, g),
            Some(|g: &GradOutput<'_, T>| {
                infoloss::binary_cross_entropy_with_logits_backward_target(xv.view(), tv.view(), &opts, g)
            }),
        )
    })?;
    out.into_py(py)
}

/// `binary_cross_entropy_with_logits`.
#[pyfunction]
#[pyo3(signature = (input, target, weight, pos_weight, reduction, grad_output, loss, grad, target_grad))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn binary_cross_entropy_with_logits(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    pos_weight: Option<&Bound<'_, PyAny>>,
    reduction: &str,
    grad_output: Option<&Bound<'_, PyAny>>,
    loss: bool,
    grad: bool,
    target_grad: bool,
) -> PyResult<Py<PyAny>> {
    let plan = Plan { loss, grad, target_grad };
    dispatch!(
        kind(input, "binary_cross_entropy_with_logits", "input")?,
        bce_logits_impl(py, input, target, weight, pos_weight, reduction, grad_output, plan)
    )
}
