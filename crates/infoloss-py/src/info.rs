//! SciPy-style information measures: `entr`, `rel_entr`, `entropy`, `shannon_cross_entropy`,
//! `jensenshannon`, `self_information`, and their gradients.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use ndarray::{ArrayD, ArrayViewD};
use numpy::PyReadonlyArrayDyn;

use infoloss::{EntropyOptions, JensenShannonOptions};
use numpy::prelude::*;

use crate::boundary::{Float, array_to_py, compute, float_arr, float_fn, opt_float_arr, probe};
use crate::catalog::from_tuple;

/// The body of the one-operand measures (`entr`, `self_information`): borrows `x` (named `name`) and the upstream
/// gradient, refuses work whose two arrays cannot be allocated, and returns `fwd(x)`, or the gradient
/// `bwd(x, g)` when `grad_output` is given.
fn single<T: Float>(
    py: Python<'_>,
    op: &str,
    (x, name): (&Bound<'_, PyAny>, &str),
    grad_output: Option<&Bound<'_, PyAny>>,
    fwd: impl for<'a> FnOnce(ArrayViewD<'a, T>) -> infoloss::Result<ArrayD<T>> + Send,
    bwd: impl for<'a> FnOnce(ArrayViewD<'a, T>, ArrayViewD<'a, T>) -> infoloss::Result<ArrayD<T>> + Send,
) -> PyResult<Py<PyAny>> {
    let x = float_arr::<T>(x, op, name)?;
    let g = opt_float_arr::<T>(grad_output, op, "grad_output")?;
    probe(op, &[x.shape()], 2)?;
    let xv = x.as_array();
    let out = match g {
        None => compute(py, op, move || fwd(xv))?,
        Some(g) => {
            let gv = g.as_array();
            compute(py, op, move || bwd(xv, gv))?
        }
    };
    Ok(array_to_py(py, out))
}

float_fn! {
    /// `entr(x)`, or its gradient when `grad_output` is given.
    fn entr(x: &Bound<'_, PyAny>, grad_output: Option<&Bound<'_, PyAny>>)
        signature (x, grad_output=None), dtype of x in "entr";
    |py, T| {
        single::<T>(py, "entr", (x, "x"), grad_output, |x| Ok(infoloss::entr(x)), infoloss::entr_backward)
    }
}

float_fn! {
    /// `rel_entr(x, y)`, or `(grad_x, grad_y)` when `grad_output` is given.
    fn rel_entr(x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>, grad_output: Option<&Bound<'_, PyAny>>)
        signature (x, y, grad_output=None), dtype of x in "rel_entr";
    |py, T| {
        let (fwd, bwd) = (infoloss::rel_entr, infoloss::rel_entr_backward);
        pair::<T>(py, "rel_entr", [(x, "x"), (y, "y")], grad_output, 3, fwd, bwd)
    }
}

/// The body of the measures of two distributions of one shape (`rel_entr`, `shannon_cross_entropy`,
/// `jensenshannon`): borrows `p` and `q` and the upstream gradient, refuses work whose `arrays` arrays cannot be
/// allocated, and returns `fwd(p, q)`, or `(grad_p, grad_q)` from `bwd(p, q, g)` when `grad_output` is given.
#[allow(clippy::type_complexity)]
fn pair<T: Float>(
    py: Python<'_>,
    op: &str,
    [(p, p_name), (q, q_name)]: [(&Bound<'_, PyAny>, &str); 2],
    grad_output: Option<&Bound<'_, PyAny>>,
    arrays: usize,
    fwd: impl for<'a> FnOnce(ArrayViewD<'a, T>, ArrayViewD<'a, T>) -> infoloss::Result<ArrayD<T>> + Send,
    bwd: impl for<'a> FnOnce(
        ArrayViewD<'a, T>,
        ArrayViewD<'a, T>,
        ArrayViewD<'a, T>,
    ) -> infoloss::Result<(ArrayD<T>, ArrayD<T>)>
    + Send,
) -> PyResult<Py<PyAny>> {
    let p = float_arr::<T>(p, op, p_name)?;
    let q = float_arr::<T>(q, op, q_name)?;
    let g = opt_float_arr::<T>(grad_output, op, "grad_output")?;
    probe(op, &[p.shape(), q.shape()], arrays)?;
    let (pv, qv) = (p.as_array(), q.as_array());
    measure(
        py,
        op,
        g,
        || fwd(pv.view(), qv.view()),
        |gv| bwd(pv.view(), qv.view(), gv).map(|(gp, gq)| (gp, Some(gq))),
    )
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

float_fn! {
    /// `entropy(pk, qk, options)` (`options`: `EntropyOptions` in catalog order), or `(grad_pk, grad_qk or None)`
    /// when `grad_output` is given.
    fn entropy(
        pk: &Bound<'_, PyAny>,
        qk: Option<&Bound<'_, PyAny>>,
        options: &Bound<'_, PyTuple>,
        grad_output: Option<&Bound<'_, PyAny>>,
    ) signature (pk, qk, options, grad_output=None), dtype of pk in "entropy";
    let opts: EntropyOptions = from_tuple("entropy", options)?;
    |py, T| {
        const OP: &str = "entropy";
        let p = float_arr::<T>(pk, OP, "pk")?;
        let q = opt_float_arr::<T>(qk, OP, "qk")?;
        let g = opt_float_arr::<T>(grad_output, OP, "grad_output")?;
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
}

/// Declares a measure of two distributions with the options `$opts` (a tuple in catalog order): the Python function
/// `$name($p, $q, options, grad_output=None)`, returning the measure, or `(grad_p, grad_q)` when `grad_output` is
/// given; `$arrays` arrays of the operands' size are probed, `$fwd` and `$bwd` are the core's measure and backward.
macro_rules! pair_measure {
    (
        $(#[$doc:meta])*
        $name:ident($p:ident, $q:ident): $opts:ty, arrays: $arrays:literal, $fwd:path, $bwd:path
    ) => {
        float_fn! {
            $(#[$doc])*
            fn $name(
                $p: &Bound<'_, PyAny>,
                $q: &Bound<'_, PyAny>,
                options: &Bound<'_, PyTuple>,
                grad_output: Option<&Bound<'_, PyAny>>,
            ) signature ($p, $q, options, grad_output=None), dtype of $p in stringify!($name);
            let opts: $opts = from_tuple(stringify!($name), options)?;
            |py, T| {
                pair::<T>(
                    py,
                    stringify!($name),
                    [($p, stringify!($p)), ($q, stringify!($q))],
                    grad_output,
                    $arrays,
                    |p, q| $fwd(p, q, &opts),
                    |p, q, g| $bwd(p, q, &opts, g),
                )
            }
        }
    };
}

pair_measure! {
    /// `shannon_cross_entropy(pk, qk, options)`, or `(grad_pk, grad_qk)` when `grad_output` is given.
    shannon_cross_entropy(pk, qk): EntropyOptions, arrays: 3,
    infoloss::shannon_cross_entropy, infoloss::info::shannon_cross_entropy_backward
}

pair_measure! {
    /// `jensenshannon(p, q, options)`, or `(grad_p, grad_q)` when `grad_output` is given.
    jensenshannon(p, q): JensenShannonOptions, arrays: 4, infoloss::jensenshannon, infoloss::jensenshannon_backward
}

float_fn! {
    /// `self_information(p, base)`, or its gradient when `grad_output` is given.
    fn self_information(p: &Bound<'_, PyAny>, base: Option<f64>, grad_output: Option<&Bound<'_, PyAny>>)
        signature (p, base, grad_output=None), dtype of p in "self_information";
    |py, T| {
        single::<T>(
            py,
            "self_information",
            (p, "p"),
            grad_output,
            |p| infoloss::self_information(p, base),
            |p, g| infoloss::info::self_information_backward(p, base, g),
        )
    }
}
