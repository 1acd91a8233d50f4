//! The in-place training-path losses: the gradient wrt the logits is written over the logits array, and only the
//! loss is returned (a Python float, or an array for `reduction='none'`).
//!
//! The logits are borrowed writeable first, so any other operand sharing their memory fails to borrow (the Python
//! layer checks `numpy.may_share_memory` before that, with a clearer message). The core writes nothing when it
//! rejects the input, so a failed call leaves the logits as they were.

use ndarray::ArrayViewMutD;
use numpy::prelude::*;
use numpy::{PyArrayDyn, PyReadwriteArrayDyn};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use infoloss::CrossEntropyOptions;
use infoloss::distill::DistillOptions;

use crate::boundary::{Float, compute, float_arr, float_fn, index_arr, loss_to_py, opt_float_arr};
use crate::catalog::from_tuple;
use crate::distill::{Labels, TopK};
use crate::losses::weight_1d;

/// Borrows the logits writeable: a NumPy array of element type `T`, writeable, aligned, not borrowed elsewhere.
fn logits_mut<'py, T: Float>(
    obj: &Bound<'py, PyAny>,
    op: &str,
    name: &str,
) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    let arr = obj
        .cast::<PyArrayDyn<T>>()
        .map_err(|_| PyTypeError::new_err(format!("{op}: {name} must be a {} NumPy array", T::DTYPE)))?;
    if !arr.is_aligned() {
        return Err(PyValueError::new_err(format!(
            "{op}: {name} is not aligned in memory; the gradient cannot be written over it"
        )));
    }
    arr.try_readwrite().map_err(|e| match e {
        numpy::BorrowError::NotWriteable => PyValueError::new_err(format!(
            "{op}: {name} is read-only; the in-place call writes the gradient over it (pass a writeable copy)"
        )),
        other => PyRuntimeError::new_err(format!("{op}: {name} cannot be borrowed writeable: {other}")),
    })
}

// ------------------------------------------------------------------------------------------------ cross_entropy

float_fn! {
    /// `cross_entropy_with_grad_in_place(input, target, weight, options, probs)`: the loss; the gradient overwrites
    /// `input`. `probs` selects probability targets (of `input`'s dtype) over class indices (int64).
    fn cross_entropy_in_place(
        input: &Bound<'_, PyAny>,
        target: &Bound<'_, PyAny>,
        weight: Option<&Bound<'_, PyAny>>,
        options: &Bound<'_, PyTuple>,
        probs: bool,
    ) signature (input, target, weight, options, probs), dtype of input in "cross_entropy_with_grad_in_place";
    |py, T| {
        const OP: &str = "cross_entropy_with_grad_in_place";
        let mut x = logits_mut::<T>(input, OP, "input")?;
        let w = opt_float_arr::<T>(weight, OP, "weight")?;
        let mut opts = from_tuple::<CrossEntropyOptions<'_, T>>(OP, options)?;
        opts.weight = w.as_ref().map(|w| weight_1d(w.as_array(), OP)).transpose()?;
        let xv: ArrayViewMutD<'_, T> = x.as_array_mut();
        let loss = if probs {
            let t = float_arr::<T>(target, OP, "target")?;
            let tv = t.as_array();
            compute(py, OP, move || {
                infoloss::cross_entropy::cross_entropy_probs_with_grad_in_place(xv, tv, &opts)
            })?
        } else {
            let t = index_arr(target, OP, "target")?;
            let tv = t.as_array();
            compute(py, OP, move || infoloss::cross_entropy_with_grad_in_place(xv, tv, &opts))?
        };
        Ok(loss_to_py(py, loss))
    }
}

// ------------------------------------------------------------------------------------------- elementwise losses

float_fn! {
    /// `elementwise_in_place(loss, input, target, weight, pos_weight, options)`: the loss of `kl_div`,
    /// `binary_cross_entropy` or `binary_cross_entropy_with_logits`; the gradient overwrites `input`.
    fn elementwise_in_place(
        loss: &str,
        input: &Bound<'_, PyAny>,
        target: &Bound<'_, PyAny>,
        weight: Option<&Bound<'_, PyAny>>,
        pos_weight: Option<&Bound<'_, PyAny>>,
        options: &Bound<'_, PyTuple>,
    ) signature (loss, input, target, weight, pos_weight, options), dtype of input in "elementwise_in_place";
    |py, T| {
        let op = match loss {
            "kl_div" => "kl_div_with_grad_in_place",
            "binary_cross_entropy" => "binary_cross_entropy_with_grad_in_place",
            "binary_cross_entropy_with_logits" => "binary_cross_entropy_with_logits_with_grad_in_place",
            other => return Err(PyValueError::new_err(format!("unknown elementwise loss {other:?}"))),
        };
        let mut x = logits_mut::<T>(input, op, "input")?;
        let t = float_arr::<T>(target, op, "target")?;
        let w = opt_float_arr::<T>(weight, op, "weight")?;
        let pw = opt_float_arr::<T>(pos_weight, op, "pos_weight")?;
        let (tv, wv, pwv) = (t.as_array(), w.as_ref().map(|w| w.as_array()), pw.as_ref().map(|p| p.as_array()));
        let xv: ArrayViewMutD<'_, T> = x.as_array_mut();
        let out = match loss {
            "kl_div" => {
                let opts = from_tuple::<infoloss::KlDivOptions>(op, options)?;
                compute(py, op, move || infoloss::kl_div_with_grad_in_place(xv, tv, &opts))?
            }
            "binary_cross_entropy" => {
                let opts = infoloss::BceOptions { weight: wv, ..from_tuple(op, options)? };
                compute(py, op, move || infoloss::binary_cross_entropy_with_grad_in_place(xv, tv, &opts))?
            }
            _ => {
                let opts =
                    infoloss::BceWithLogitsOptions { weight: wv, pos_weight: pwv, ..from_tuple(op, options)? };
                compute(py, op, move || {
                    infoloss::binary_cross_entropy_with_logits_with_grad_in_place(xv, tv, &opts)
                })?
            }
        };
        Ok(loss_to_py(py, out))
    }
}

// ----------------------------------------------------------------------------------------------------- distill

float_fn! {
    /// `distill_with_grad_in_place(student, teacher, labels, …)`: the loss; the gradient overwrites `student`.
    fn distill_in_place(
        student_logits: &Bound<'_, PyAny>,
        teacher_logits: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        options: &Bound<'_, PyTuple>,
    ) signature (student_logits, teacher_logits, labels, options),
        dtype of student_logits in "distill_with_grad_in_place";
    let opts: DistillOptions = from_tuple("distill_with_grad_in_place", options)?;
    |py, T| {
        const OP: &str = "distill_with_grad_in_place";
        let mut s = logits_mut::<T>(student_logits, OP, "student_logits")?;
        let t = float_arr::<T>(teacher_logits, OP, "teacher_logits")?;
        let y = Labels::borrow(labels, OP)?;
        let yv = y.view(OP)?;
        let sv = s.as_array_mut();
        let tv = t.as_array();
        let loss = compute(py, OP, move || infoloss::distill_with_grad_in_place(sv, tv, yv, &opts))?;
        Ok(loss_to_py(py, loss))
    }
}

float_fn! {
    /// `distill_topk_with_grad_in_place(student, topk_indices, topk_logprobs, labels, …)`: the loss; the
    /// gradient overwrites `student`.
    fn distill_topk_in_place(
        student_logits: &Bound<'_, PyAny>,
        topk_indices: &Bound<'_, PyAny>,
        topk_logprobs: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        add_tail: bool,
        options: &Bound<'_, PyTuple>,
    ) signature (student_logits, topk_indices, topk_logprobs, labels, add_tail, options),
        dtype of student_logits in "distill_topk_with_grad_in_place";
    let opts: DistillOptions = from_tuple("distill_topk_with_grad_in_place", options)?;
    |py, T| {
        const OP: &str = "distill_topk_with_grad_in_place";
        let mut s = logits_mut::<T>(student_logits, OP, "student_logits")?;
        let topk = TopK::<T>::borrow(topk_indices, topk_logprobs, OP)?;
        let y = Labels::borrow(labels, OP)?;
        let teacher = topk.teacher(OP, add_tail)?;
        let yv = y.view(OP)?;
        let sv = s.as_array_mut();
        let loss = compute(py, OP, move || infoloss::distill_topk_with_grad_in_place(sv, &teacher, yv, &opts))?;
        Ok(loss_to_py(py, loss))
    }
}
