//! SciPy-style information measures: `entr`, `rel_entr`, `entropy`, `shannon_cross_entropy`,
//! `jensenshannon`, `self_information`, and their gradients.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use ndarray::{ArrayD, ArrayViewD};
use numpy::PyReadonlyArrayDyn;

use infoloss::{EntropyOptions, JensenShannonOptions};
use numpy::prelude::*;

use crate::boundary::{Float, array_to_py, compute, dispatch, float_arr, kind, opt_float_arr, probe};
use crate::catalog::from_tuple;

fn entr_impl<T: Float>(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    go: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "entr";
    let x = float_arr::<T>(x, OP, "x")?;
    let g = opt_float_arr::<T>(go, OP, "grad_output")?;
    probe(OP, &[x.shape()], 2)?;
    let xv = x.as_array();
    match g {
        None => Ok(array_to_py(py, compute(py, OP, move || Ok(infoloss::entr(xv)))?)),
        Some(g) => {
            let gv = g.as_array();
            Ok(array_to_py(py, compute(py, OP, move || infoloss::entr_backward(xv, gv))?))
        }
    }
}

/// `entr(x)`, or its gradient when `grad_output` is given.
#[pyfunction]
#[pyo3(signature = (x, grad_output=None))]
pub(crate) fn entr(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    dispatch!(kind(x, "entr", "x")?, entr_impl(py, x, grad_output))
}

fn rel_entr_impl<T: Float>(
    py: Python<'_>,
    p: &Bound<'_, PyAny>,
    q: &Bound<'_, PyAny>,
    go: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "rel_entr";
    let p = float_arr::<T>(p, OP, "x")?;
    let q = float_arr::<T>(q, OP, "y")?;
    let g = opt_float_arr::<T>(go, OP, "grad_output")?;
    probe(OP, &[p.shape(), q.shape()], 3)?;
    let pv = p.as_array();
    let qv = q.as_array();
    match g {
        None => Ok(array_to_py(py, compute(py, OP, move || infoloss::rel_entr(pv, qv))?)),
        Some(g) => {
            let gv = g.as_array();
            let (gp, gq) = compute(py, OP, move || infoloss::rel_entr_backward(pv, qv, gv))?;
            Ok(PyTuple::new(py, [array_to_py(py, gp), array_to_py(py, gq)])?.into_any().unbind())
        }
    }
}

/// `rel_entr(x, y)`, or `(grad_x, grad_y)` when `grad_output` is given.
#[pyfunction]
#[pyo3(signature = (x, y, grad_output=None))]
pub(crate) fn rel_entr(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    dispatch!(kind(x, "rel_entr", "x")?, rel_entr_impl(py, x, y, grad_output))
}

/// The shared tail of the two-distribution measures: `fwd()`, or `(grad_p, grad_q or None)` from `bwd(g)` for the
/// upstream gradient `g`.
fn measure<T: Float>(
    py: Python<'_>,
    op: &str,
    g: Option<PyReadonlyArrayDyn<'_, T>>,
    fwd: impl FnOnce() -> infoloss::Result<ArrayD<T>> + Send,
    bwd: impl FnOnce(ArrayViewD<'_, T>) -> infoloss::Result<(ArrayD<T>, Option<ArrayD<T>>)> + Send,
) -> PyResult<Py<PyAny>> {
    match g {
        None => Ok(array_to_py(py, compute(py, op, fwd)?)),
        Some(g) => {
            let gv = g.as_array();
            let (gp, gq) = compute(py, op, move || bwd(gv))?;
            let gq = gq.map(|a| array_to_py(py, a));
            Ok(PyTuple::new(py, [Some(array_to_py(py, gp)), gq])?.into_any().unbind())
        }
    }
}

fn entropy_impl<T: Float>(
    py: Python<'_>,
    pk: &Bound<'_, PyAny>,
    qk: Option<&Bound<'_, PyAny>>,
    opts: EntropyOptions,
    go: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "entropy";
    let p = float_arr::<T>(pk, OP, "pk")?;
    let q = opt_float_arr::<T>(qk, OP, "qk")?;
    let g = opt_float_arr::<T>(go, OP, "grad_output")?;
    probe(OP, &[p.shape()], 3)?;
    let pv = p.as_array();
    let qv = q.as_ref().map(|q| q.as_array());
    measure(
        py,
        OP,
        g,
        || infoloss::entropy(pv.view(), qv.clone(), &opts),
        |gv| infoloss::entropy_backward(pv.view(), qv.clone(), &opts, gv),
    )
}

/// `entropy(pk, qk, options)` (`options`: `EntropyOptions` in catalog order), or `(grad_pk, grad_qk or None)`
/// when `grad_output` is given.
#[pyfunction]
#[pyo3(signature = (pk, qk, options, grad_output=None))]
pub(crate) fn entropy(
    py: Python<'_>,
    pk: &Bound<'_, PyAny>,
    qk: Option<&Bound<'_, PyAny>>,
    options: &Bound<'_, PyTuple>,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let opts = from_tuple::<EntropyOptions>("entropy", options)?;
    dispatch!(kind(pk, "entropy", "pk")?, entropy_impl(py, pk, qk, opts, grad_output))
}

fn shannon_cross_entropy_impl<T: Float>(
    py: Python<'_>,
    pk: &Bound<'_, PyAny>,
    qk: &Bound<'_, PyAny>,
    opts: EntropyOptions,
    go: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "shannon_cross_entropy";
    let p = float_arr::<T>(pk, OP, "pk")?;
    let q = float_arr::<T>(qk, OP, "qk")?;
    let g = opt_float_arr::<T>(go, OP, "grad_output")?;
    probe(OP, &[p.shape(), q.shape()], 3)?;
    let (pv, qv) = (p.as_array(), q.as_array());
    measure(
        py,
        OP,
        g,
        || infoloss::shannon_cross_entropy(pv.view(), qv.view(), &opts),
        |gv| {
            infoloss::info::shannon_cross_entropy_backward(pv.view(), qv.view(), &opts, gv)
                .map(|(gp, gq)| (gp, Some(gq)))
        },
    )
}

/// `shannon_cross_entropy(pk, qk, options)`, or `(grad_pk, grad_qk)` when `grad_output` is given.
#[pyfunction]
#[pyo3(signature = (pk, qk, options, grad_output=None))]
pub(crate) fn shannon_cross_entropy(
    py: Python<'_>,
    pk: &Bound<'_, PyAny>,
    qk: &Bound<'_, PyAny>,
    options: &Bound<'_, PyTuple>,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let opts = from_tuple::<EntropyOptions>("shannon_cross_entropy", options)?;
    dispatch!(
        kind(pk, "shannon_cross_entropy", "pk")?,
        shannon_cross_entropy_impl(py, pk, qk, opts, grad_output)
    )
}

fn jensenshannon_impl<T: Float>(
    py: Python<'_>,
    p: &Bound<'_, PyAny>,
    q: &Bound<'_, PyAny>,
    opts: JensenShannonOptions,
    go: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "jensenshannon";
    let p = float_arr::<T>(p, OP, "p")?;
    let q = float_arr::<T>(q, OP, "q")?;
    let g = opt_float_arr::<T>(go, OP, "grad_output")?;
    probe(OP, &[p.shape(), q.shape()], 4)?;
    let (pv, qv) = (p.as_array(), q.as_array());
    measure(
        py,
        OP,
        g,
        || infoloss::jensenshannon(pv.view(), qv.view(), &opts),
        |gv| infoloss::jensenshannon_backward(pv.view(), qv.view(), &opts, gv).map(|(gp, gq)| (gp, Some(gq))),
    )
}

/// `jensenshannon(p, q, options)`, or `(grad_p, grad_q)` when `grad_output` is given.
#[pyfunction]
#[pyo3(signature = (p, q, options, grad_output=None))]
pub(crate) fn jensenshannon(
    py: Python<'_>,
    p: &Bound<'_, PyAny>,
    q: &Bound<'_, PyAny>,
    options: &Bound<'_, PyTuple>,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let opts = from_tuple::<JensenShannonOptions>("jensenshannon", options)?;
    dispatch!(kind(p, "jensenshannon", "p")?, jensenshannon_impl(py, p, q, opts, grad_output))
}

fn self_information_impl<T: Float>(
    py: Python<'_>,
    p: &Bound<'_, PyAny>,
    base: Option<f64>,
    go: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "self_information";
    let p = float_arr::<T>(p, OP, "p")?;
    let g = opt_float_arr::<T>(go, OP, "grad_output")?;
    probe(OP, &[p.shape()], 2)?;
    let pv = p.as_array();
    let out = match g {
        None => compute(py, OP, move || infoloss::self_information(pv, base))?,
        Some(g) => {
            let gv = g.as_array();
            compute(py, OP, move || infoloss::info::self_information_backward(pv, base, gv))?
        }
    };
    Ok(array_to_py(py, out))
}

/// `self_information(p, base)`, or its gradient when `grad_output` is given.
#[pyfunction]
#[pyo3(signature = (p, base, grad_output=None))]
pub(crate) fn self_information(
    py: Python<'_>,
    p: &Bound<'_, PyAny>,
    base: Option<f64>,
    grad_output: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    dispatch!(kind(p, "self_information", "p")?, self_information_impl(py, p, base, grad_output))
}
