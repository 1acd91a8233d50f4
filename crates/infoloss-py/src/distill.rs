//! Knowledge distillation (dense and top-k teacher) and the UDA consistency loss.
//!
//! `distill` and `distill_topk` return `(loss or None, grad_student or None, None)` like the other losses (the
//! third slot, the target gradient, is always `None`: the teacher is a constant); `uda_consistency` returns
//! `(loss, grad_aug, mask, kept, row_kl)` and `uda_consistency_backward` the gradient wrt `aug` for an upstream
//! gradient. The Python layer (`infoloss/_distill.py`) validates the options,
//! converts dtypes and builds the public results.

use ndarray::{ArrayView, ArrayView1, ArrayView2, Dimension, Ix1, Ix2};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use infoloss::distill::{DistillOptions, SparseTeacher};
use infoloss::uda::UdaOptions;
use infoloss::{Error, GradOutput};
use numpy::PyReadonlyArrayDyn;
use numpy::prelude::*;

use crate::boundary::{
    Float, Plan, array_to_py, compute, dispatch, drive, float_arr, float_fn, grad_output, index_arr, kind,
    opt_float_arr, probe, scalar_to_py, to_py_err,
};
use crate::catalog::from_tuple;

/// A backward pass given the upstream gradient (for the unused target-gradient slot of `drive`).
type Backward<'g, T> = fn(&GradOutput<'g, T>) -> infoloss::Result<ndarray::ArrayD<T>>;

fn no_target<'g, T: Float>() -> Option<Backward<'g, T>> {
    None
}

/// A view as `(rows, k)`, or the core's rank error naming the argument.
pub(crate) fn view_2d<'a, A, D: Dimension>(
    op: &'static str,
    name: &'static str,
    a: ArrayView<'a, A, D>,
) -> PyResult<ArrayView2<'a, A>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>().map_err(|_| to_py_err(Error::bad_rank(op, name, &shape, "2 dimensions")))
}

/// Labels as `(rows,)`, or the core's rank error.
fn labels_1d<'a, D: Dimension>(op: &'static str, a: ArrayView<'a, i64, D>) -> PyResult<ArrayView1<'a, i64>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix1>()
        .map_err(|_| to_py_err(Error::bad_rank(op, "labels", &shape, "1 dimension (rows,)")))
}

/// Optional labels borrowed from Python (`None`: no labels).
pub(crate) struct Labels<'py>(Option<PyReadonlyArrayDyn<'py, i64>>);

impl<'py> Labels<'py> {
    pub(crate) fn borrow(obj: Option<&Bound<'py, PyAny>>, op: &'static str) -> PyResult<Self> {
        Ok(Labels(obj.filter(|o| !o.is_none()).map(|o| index_arr(o, op, "labels")).transpose()?))
    }

    /// The labels as `(rows,)`, or the core's rank error.
    pub(crate) fn view(&self, op: &'static str) -> PyResult<Option<ArrayView1<'_, i64>>> {
        self.0.as_ref().map(|y| labels_1d(op, y.as_array())).transpose()
    }
}

/// A stored top-k teacher borrowed from Python: its classes and log-probabilities, `(rows, k)` each.
pub(crate) struct TopK<'py, T: Float> {
    indices: PyReadonlyArrayDyn<'py, i64>,
    logprobs: PyReadonlyArrayDyn<'py, T>,
}

impl<'py, T: Float> TopK<'py, T> {
    pub(crate) fn borrow(
        indices: &Bound<'py, PyAny>,
        logprobs: &Bound<'py, PyAny>,
        op: &'static str,
    ) -> PyResult<Self> {
        Ok(TopK {
            indices: index_arr(indices, op, "topk_indices")?,
            logprobs: float_arr::<T>(logprobs, op, "topk_logprobs")?,
        })
    }

    /// The core's sparse teacher, or its rank error naming the argument.
    pub(crate) fn teacher(&self, op: &'static str, add_tail: bool) -> PyResult<SparseTeacher<'_, T>> {
        Ok(SparseTeacher {
            indices: view_2d(op, "topk_indices", self.indices.as_array())?,
            logprobs: view_2d(op, "topk_logprobs", self.logprobs.as_array())?,
            add_tail,
        })
    }
}

// ----------------------------------------------------------------------------------------------------- distill

float_fn! {
    /// `distill(student, teacher, labels)`: `(loss, grad_student, None)`.
    fn distill(
        student_logits: &Bound<'_, PyAny>,
        teacher_logits: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        options: &Bound<'_, PyTuple>,
        grad_output: Option<&Bound<'_, PyAny>>,
        loss: bool,
        grad: bool,
    ) signature (student_logits, teacher_logits, labels, options, grad_output, loss, grad),
        dtype of student_logits in "distill";
    let opts: DistillOptions = from_tuple("distill", options)?;
    |py, T| {
        const OP: &str = "distill";
        let plan = Plan { loss, grad, target_grad: false };
        let s = float_arr::<T>(student_logits, OP, "student_logits")?;
        let t = float_arr::<T>(teacher_logits, OP, "teacher_logits")?;
        let y = Labels::borrow(labels, OP)?;
        let g = opt_float_arr::<T>(grad_output, OP, "grad_output")?;
        probe(OP, &[s.shape()], 1 + usize::from(plan.grad))?;
        let sv = s.as_array();
        let tv = t.as_array();
        let yv = y.view(OP)?;
        let gv = g.as_ref().map(|g| crate::boundary::grad_output(g.as_array()));
        let out = compute(py, OP, move || {
            drive(
                plan,
                gv,
                || infoloss::distill(sv.view(), tv.view(), yv, &opts),
                || infoloss::distill_with_grad(sv.view(), tv.view(), yv, &opts).map(|(l, g)| (l, g.into_dyn())),
                |g| infoloss::distill_backward(sv.view(), tv.view(), yv, &opts, g).map(|a| a.into_dyn()),
                no_target(),
            )
        })?;
        out.into_py(py)
    }
}

// ------------------------------------------------------------------------------------------------ distill_topk

float_fn! {
    /// `distill_topk(student, topk_indices, topk_logprobs, labels)`: `(loss, grad_student, None)`.
    fn distill_topk(
        student_logits: &Bound<'_, PyAny>,
        topk_indices: &Bound<'_, PyAny>,
        topk_logprobs: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        add_tail: bool,
        options: &Bound<'_, PyTuple>,
        grad_output: Option<&Bound<'_, PyAny>>,
        loss: bool,
        grad: bool,
    ) signature (student_logits, topk_indices, topk_logprobs, labels, add_tail, options, grad_output, loss, grad),
        dtype of student_logits in "distill_topk";
    let opts: DistillOptions = from_tuple("distill_topk", options)?;
    |py, T| {
        const OP: &str = "distill_topk";
        let plan = Plan { loss, grad, target_grad: false };
        let s = float_arr::<T>(student_logits, OP, "student_logits")?;
        let topk = TopK::<T>::borrow(topk_indices, topk_logprobs, OP)?;
        let y = Labels::borrow(labels, OP)?;
        let g = opt_float_arr::<T>(grad_output, OP, "grad_output")?;
        probe(OP, &[s.shape()], 1 + usize::from(plan.grad))?;
        let sv = s.as_array();
        let teacher = topk.teacher(OP, add_tail)?;
        let yv = y.view(OP)?;
        let gv = g.as_ref().map(|g| crate::boundary::grad_output(g.as_array()));
        let out = compute(py, OP, move || {
            let tref = &teacher;
            drive(
                plan,
                gv,
                || infoloss::distill_topk(sv.view(), tref, yv, &opts),
                || infoloss::distill_topk_with_grad(sv.view(), tref, yv, &opts).map(|(l, g)| (l, g.into_dyn())),
                |g| infoloss::distill_topk_backward(sv.view(), tref, yv, &opts, g).map(|a| a.into_dyn()),
                no_target(),
            )
        })?;
        out.into_py(py)
    }
}

// --------------------------------------------------------------------------------------------- uda_consistency

/// `uda_consistency` without `grad_out`: `(loss, grad_aug, mask, kept, row_kl)`, or `(loss, mask, kept,
/// row_kl)` without `want_grad`; with `grad_out`, the gradient of `uda_consistency_backward`.
fn uda_impl<T: Float>(
    py: Python<'_>,
    ori: &Bound<'_, PyAny>,
    aug: &Bound<'_, PyAny>,
    grad_out: Option<&Bound<'_, PyAny>>,
    opts: UdaOptions,
    want_grad: bool,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "uda_consistency";
    let o = float_arr::<T>(ori, OP, "ori_logits")?;
    let a = float_arr::<T>(aug, OP, "aug_logits")?;
    let g = opt_float_arr::<T>(grad_out, OP, "grad_output")?;
    probe(OP, &[a.shape()], 2)?;
    let ov = o.as_array();
    let av = a.as_array();
    if let Some(g) = &g {
        let gv = g.as_array();
        let grad = compute(py, OP, move || {
            infoloss::uda::uda_consistency_backward(ov, av, &opts, &grad_output(gv))
        })?;
        return Ok(array_to_py(py, grad.into_dyn()));
    }
    let (loss, grad, mask, kept, row_kl) = if want_grad {
        let out = compute(py, OP, move || infoloss::uda_consistency_with_grad(ov, av, &opts))?;
        (out.loss, Some(out.grad), out.mask, out.kept, out.row_kl)
    } else {
        let out = compute(py, OP, move || infoloss::uda_consistency_loss(ov, av, &opts))?;
        (out.loss, None, out.mask, out.kept, out.row_kl)
    };
    let mut items = vec![scalar_to_py(py, loss)];
    items.extend(grad.map(|g| array_to_py(py, g.into_dyn())));
    items.push(array_to_py(py, mask.into_dyn()));
    items.push(kept.into_pyobject(py)?.into_any().unbind());
    items.push(array_to_py(py, row_kl.into_dyn()));
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

/// `uda_consistency(ori, aug)`: `(loss, grad_aug, mask, kept, row_kl)`; with `want_grad=False`,
/// `(loss, mask, kept, row_kl)` without computing the gradient.
#[pyfunction]
#[pyo3(signature = (ori_logits, aug_logits, options, want_grad=true))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn uda_consistency(
    py: Python<'_>,
    ori_logits: &Bound<'_, PyAny>,
    aug_logits: &Bound<'_, PyAny>,
    options: &Bound<'_, PyTuple>,
    want_grad: bool,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "uda_consistency";
    let opts = from_tuple::<UdaOptions>(OP, options)?;
    dispatch!(
        kind(aug_logits, OP, "aug_logits")?,
        uda_impl(py, ori_logits, aug_logits, None, opts, want_grad)
    )
}

/// `uda_consistency_backward(ori, aug, grad_output)`: the gradient wrt `aug` for the upstream gradient.
#[pyfunction]
#[pyo3(signature = (ori_logits, aug_logits, grad_output, options))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn uda_consistency_backward(
    py: Python<'_>,
    ori_logits: &Bound<'_, PyAny>,
    aug_logits: &Bound<'_, PyAny>,
    grad_output: &Bound<'_, PyAny>,
    options: &Bound<'_, PyTuple>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "uda_consistency";
    let opts = from_tuple::<UdaOptions>(OP, options)?;
    if grad_output.is_none() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{OP}: grad_output must be a scalar (a 0-d array), got None"
        )));
    }
    dispatch!(
        kind(aug_logits, OP, "aug_logits")?,
        uda_impl(py, ori_logits, aug_logits, Some(grad_output), opts, true)
    )
}
