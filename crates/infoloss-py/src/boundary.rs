//! Everything that crosses the Python boundary: reading NumPy arrays, mapping errors and panics, releasing the
//! GIL, refusing allocations that cannot succeed, and building the Python results.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{ArrayD, ArrayViewD};
use numpy::prelude::*;
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyTuple};

use infoloss::{Element, GradOutput, Loss, Real};

/// The element types the extension accepts: what NumPy and infoloss both know.
pub(crate) trait Float: Element + numpy::Element {}
impl Float for f32 {}
impl Float for f64 {}
impl Float for half::f16 {}

/// The dtype of a float operand, used to pick the monomorphized implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    F16,
    F32,
    F64,
}

/// NumPy caps arrays at 64 dimensions, rust-numpy's views at 32.
const MAX_NDIM: usize = 32;

/// Allocations below this size are not probed.
const PROBE_THRESHOLD: usize = 1 << 26;

/// "an array of dtype int64" / "a list" — what the caller passed, for error messages.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        let dt = a.dtype().str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
        format!("an array of dtype {dt}")
    } else {
        let name = obj.get_type().name().map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
        format!("an object of type {name}")
    }
}

/// Which float dtype `obj` holds.
pub(crate) fn kind(obj: &Bound<'_, PyAny>, op: &str, name: &str) -> PyResult<Kind> {
    if obj.cast::<PyArrayDyn<f32>>().is_ok() {
        Ok(Kind::F32)
    } else if obj.cast::<PyArrayDyn<f64>>().is_ok() {
        Ok(Kind::F64)
    } else if obj.cast::<PyArrayDyn<half::f16>>().is_ok() {
        Ok(Kind::F16)
    } else {
        Err(PyTypeError::new_err(format!(
            "{op}: {name} must be a float16, float32 or float64 array in native byte order, got {}",
            describe(obj)
        )))
    }
}

/// Checks what rust-numpy's views need: at most 32 dimensions, aligned data.
fn check_layout(arr: &Bound<'_, PyUntypedArray>, op: &str, name: &str) -> PyResult<()> {
    if arr.ndim() > MAX_NDIM {
        return Err(PyValueError::new_err(format!(
            "{op}: {name} has {} dimensions; at most {MAX_NDIM} are supported",
            arr.ndim()
        )));
    }
    if !arr.is_aligned() {
        return Err(PyValueError::new_err(format!(
            "{op}: {name} is not aligned in memory; pass a copy (numpy.array(x))"
        )));
    }
    Ok(())
}

/// Borrows an array of element type `E` (any strides); `expected` says what it must be, for the `TypeError`.
pub(crate) fn borrow_arr<'py, E: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    op: &str,
    name: &str,
    expected: impl FnOnce() -> String,
) -> PyResult<PyReadonlyArrayDyn<'py, E>> {
    let arr = obj.cast::<PyArrayDyn<E>>().map_err(|_| {
        PyTypeError::new_err(format!("{op}: {name} must be {}, got {}", expected(), describe(obj)))
    })?;
    check_layout(arr.as_untyped(), op, name)?;
    arr.try_readonly().map_err(|e| PyRuntimeError::new_err(format!("{op}: {name} cannot be borrowed: {e}")))
}

/// Borrows a float array of element type `T` (any strides).
pub(crate) fn float_arr<'py, T: Float>(
    obj: &Bound<'py, PyAny>,
    op: &str,
    name: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    borrow_arr(obj, op, name, || format!("a {} array (the dtype of input)", T::DTYPE))
}

/// Borrows an optional float array.
pub(crate) fn opt_float_arr<'py, T: Float>(
    obj: Option<&Bound<'py, PyAny>>,
    op: &str,
    name: &str,
) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    obj.filter(|o| !o.is_none()).map(|o| float_arr::<T>(o, op, name)).transpose()
}

/// Borrows a class-index target (int64; the Python layer converts other integer dtypes).
pub(crate) fn index_arr<'py>(
    obj: &Bound<'py, PyAny>,
    op: &str,
    name: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, i64>> {
    borrow_arr(obj, op, name, || "an int64 array of class indices".to_string())
}

/// An upstream gradient: a 0-d array means "every output element gets this value".
pub(crate) fn grad_output<'a, T: Element>(g: ArrayViewD<'a, T>) -> GradOutput<'a, T> {
    if g.ndim() == 0 {
        match g.iter().next() {
            Some(v) => GradOutput::Scalar(*v),
            None => GradOutput::Array(g),
        }
    } else {
        GradOutput::Array(g)
    }
}

pyo3::import_exception!(numpy.exceptions, AxisError);

/// Maps a core error to the Python exception users expect: `IndexError` for an out-of-range class index,
/// NumPy's `AxisError` (a subclass of both `ValueError` and `IndexError`, like torch's `IndexError` for a bad
/// dim) for a dimension out of range, `MemoryError` for arrays too large to index, `ValueError` otherwise.
pub(crate) fn to_py_err(e: infoloss::Error) -> PyErr {
    match e {
        infoloss::Error::TargetOutOfRange { .. } => PyIndexError::new_err(e.to_string()),
        infoloss::Error::InvalidOption { option: "dim" | "axis", .. } => AxisError::new_err(e.to_string()),
        infoloss::Error::TooLarge { .. } => PyMemoryError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Refuses, with `MemoryError`, work whose arrays (the broadcast of `shapes`, `arrays` of them, 8 bytes an
/// element) cannot be allocated — before the core tries, since a failed allocation in Rust aborts the process.
pub(crate) fn probe(op: &str, shapes: &[&[usize]], arrays: usize) -> PyResult<()> {
    let ndim = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut numel: Option<usize> = Some(1);
    for k in 0..ndim {
        let d = shapes
            .iter()
            .filter_map(|s| if k < s.len() { s.get(s.len() - 1 - k) } else { None })
            .copied()
            .max()
            .unwrap_or(1);
        numel = numel.and_then(|n| n.checked_mul(d));
    }
    let bytes = numel.and_then(|n| n.checked_mul(8)).and_then(|b| b.checked_mul(arrays.max(1)));
    let too_large = || {
        let shapes: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
        PyMemoryError::new_err(format!(
            "{op}: cannot allocate the {} array(s) needed for shape(s) {}",
            arrays.max(1),
            shapes.join(", ")
        ))
    };
    match bytes {
        None => Err(too_large()),
        Some(b) if b < PROBE_THRESHOLD => Ok(()),
        Some(b) => {
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(b).map_err(|_| too_large())
        }
    }
}

/// Runs `f` without the GIL, in the extension's own thread pool (`crate::threads`: never rayon's global pool,
/// which a forked child cannot use), turning core errors into Python exceptions and a panic (a bug) into
/// `RuntimeError` instead of unwinding into the interpreter.
pub(crate) fn compute<R, F>(py: Python<'_>, op: &str, f: F) -> PyResult<R>
where
    R: Send,
    F: FnOnce() -> infoloss::Result<R> + Send,
{
    guarded(py, op, f, to_py_err)
}

/// [`compute`] for work with another error type (the teacher cache's), which `to_err` maps to a Python
/// exception.
pub(crate) fn guarded<R, E, F>(py: Python<'_>, op: &str, f: F, to_err: impl FnOnce(E) -> PyErr) -> PyResult<R>
where
    R: Send,
    E: Send,
    F: FnOnce() -> Result<R, E> + Send,
{
    // The pool is fetched (and built, on first use or after a fork) without the GIL, so other Python threads
    // run meanwhile.
    let res = py.detach(move || {
        crate::threads::pool().map(|p| crate::threads::run(&p, move || catch_unwind(AssertUnwindSafe(f))))
    })?;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_err(e)),
        Err(payload) => {
            let msg = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic".to_string()
            };
            Err(PyRuntimeError::new_err(format!(
                "{op}: internal error in infoloss (please report it): {msg}"
            )))
        }
    }
}

/// A scalar as a Python float.
pub(crate) fn scalar_to_py<T: Float>(py: Python<'_>, v: T) -> Py<PyAny> {
    PyFloat::new(py, v.to_acc().f64()).into_any().unbind()
}

/// An owned array as a NumPy array (no copy).
pub(crate) fn array_to_py<T: Float>(py: Python<'_>, a: ArrayD<T>) -> Py<PyAny> {
    a.into_pyarray(py).into_any().unbind()
}

/// A loss: Python float when reduced, array otherwise.
pub(crate) fn loss_to_py<T: Float>(py: Python<'_>, l: Loss<T>) -> Py<PyAny> {
    match l {
        Loss::Scalar(v) => scalar_to_py(py, v),
        Loss::Elementwise(a) => array_to_py(py, a),
    }
}

/// What a loss call should produce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Compute the loss.
    pub loss: bool,
    /// Compute the gradient wrt the input.
    pub grad: bool,
    /// Compute the gradient wrt the target.
    pub target_grad: bool,
}

/// The results of a loss call.
pub(crate) struct Out<T> {
    pub loss: Option<Loss<T>>,
    pub grad_input: Option<ArrayD<T>>,
    pub grad_target: Option<ArrayD<T>>,
}

impl<T: Float> Out<T> {
    /// `(loss or None, grad_input or None, grad_target or None)`.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let loss = self.loss.map(|l| loss_to_py(py, l));
        let gi = self.grad_input.map(|g| array_to_py(py, g));
        let gt = self.grad_target.map(|g| array_to_py(py, g));
        Ok(PyTuple::new(py, [loss, gi, gt])?.into_any().unbind())
    }
}

/// The shared control flow of every loss: forward only, fused forward + input gradient when the upstream
/// gradient is the default 1, or explicit backward passes with the given upstream gradient.
pub(crate) fn drive<'g, T: Element>(
    plan: Plan,
    go: Option<GradOutput<'g, T>>,
    fwd: impl FnOnce() -> infoloss::Result<Loss<T>>,
    with_grad: impl FnOnce() -> infoloss::Result<(Loss<T>, ArrayD<T>)>,
    bwd: impl FnOnce(&GradOutput<'g, T>) -> infoloss::Result<ArrayD<T>>,
    bwd_target: Option<impl FnOnce(&GradOutput<'g, T>) -> infoloss::Result<ArrayD<T>>>,
) -> infoloss::Result<Out<T>> {
    let mut out = Out { loss: None, grad_input: None, grad_target: None };
    match (&go, plan.grad) {
        (None, true) => {
            let (l, g) = with_grad()?;
            out.grad_input = Some(g);
            if plan.loss {
                out.loss = Some(l);
            }
        }
        (Some(g), true) => {
            if plan.loss {
                out.loss = Some(fwd()?);
            }
            out.grad_input = Some(bwd(g)?);
        }
        (_, false) => {
            if plan.loss {
                out.loss = Some(fwd()?);
            }
        }
    }
    if let (true, Some(bt)) = (plan.target_grad, bwd_target) {
        let g = go.unwrap_or_else(GradOutput::one);
        out.grad_target = Some(bt(&g)?);
    }
    Ok(out)
}

/// Dispatches a generic implementation on the float kind of an operand.
macro_rules! dispatch {
    ($kind:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $kind {
            $crate::boundary::Kind::F16 => $f::<half::f16>($($arg),*),
            $crate::boundary::Kind::F32 => $f::<f32>($($arg),*),
            $crate::boundary::Kind::F64 => $f::<f64>($($arg),*),
        }
    };
}
pub(crate) use dispatch;

/// Declares a `#[pyfunction]` whose body is generic over the float type `T` of one operand, with its parameter
/// list written once: the body is instantiated for float16, float32 and float64 and picked by the dtype of the
/// operand named after `dtype of` (a `TypeError` naming the function `$op` otherwise). The `let` lines run
/// before the dtype is looked at and hand their values to the body as parameters of the same names (the
/// options read from their tuple, which do not depend on the dtype).
macro_rules! float_fn {
    (
        $(#[$doc:meta])*
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) signature $sig:tt, dtype of $on:ident in $op:expr;
        $(let $pre:ident: $pre_ty:ty = $pre_e:expr;)*
        |$py:ident, $T:ident| $body:block
    ) => {
        $(#[$doc])*
        #[pyfunction]
        #[pyo3(signature = $sig)]
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name(py: Python<'_>, $($arg: $ty),*) -> PyResult<Py<PyAny>> {
            $(let $pre: $pre_ty = $pre_e;)*
            #[allow(clippy::too_many_arguments, unused_variables)]
            fn body<$T: $crate::boundary::Float>(
                $py: Python<'_>,
                $($arg: $ty,)*
                $($pre: $pre_ty,)*
            ) -> PyResult<Py<PyAny>> $body
            $crate::boundary::dispatch!(
                $crate::boundary::kind($on, $op, stringify!($on))?,
                body(py, $($arg,)* $($pre,)*)
            )
        }
    };
}
pub(crate) use float_fn;
