//! The core's option catalog seen from Python: `_catalog()` describes every loss's options (so the Python
//! signatures and stubs are tested against it, `tests/test_catalog.py`), and [`from_tuple`] builds an options
//! struct from the Python layer's options tuple through the catalog's by-name setter, so the extension holds no
//! table of option names or spellings of its own.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use infoloss::Reduction;
use infoloss::options::{Kind, Options, Value, catalog};

use crate::boundary::to_py_err;

/// The options struct `O` from a tuple of its scalar options in catalog order (the array options, class weights,
/// are passed as arrays): each item is `None`, a `bool`, an `int`, a `float` or a `str`, set by name through the
/// catalog, so the extension's functions take one `options` argument whatever options a loss has.
pub(crate) fn from_tuple<O: Options>(op: &'static str, values: &Bound<'_, PyTuple>) -> PyResult<O> {
    let specs: Vec<_> = O::specs().iter().filter(|s| s.kind != Kind::Array).collect();
    if values.len() != specs.len() {
        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
        return Err(PyValueError::new_err(format!(
            "{op}: expected {} options ({}), got {}",
            specs.len(),
            names.join(", "),
            values.len()
        )));
    }
    let mut o = O::default();
    for (spec, item) in specs.iter().zip(values.iter()) {
        let text;
        let value = if item.is_none() {
            Value::None
        } else if let Ok(b) = item.cast::<PyBool>() {
            Value::Bool(b.is_true())
        } else if item.is_instance_of::<PyInt>() {
            Value::Int(item.extract()?)
        } else if item.is_instance_of::<PyFloat>() {
            Value::Float(item.extract()?)
        } else if let Ok(st) = item.cast::<PyString>() {
            text = st.to_cow()?;
            Value::Str(&text)
        } else {
            return Err(PyTypeError::new_err(format!(
                "{op}: option {} must be None, bool, int, float or str",
                spec.name
            )));
        };
        if let (Value::Str(s), "reduction") = (value, spec.name) {
            // the reduction's own parser names an unknown spelling as PyTorch does ("… is not a valid value for
            // reduction"), where the catalog's setter would list the choices
            s.parse::<Reduction>().map_err(to_py_err)?;
        }
        o.set_in(op, spec.name, value).map_err(to_py_err)?;
    }
    Ok(o)
}

/// A catalog value as a Python object (`None`, `bool`, `int`, `float`, `str`).
fn value_to_py(py: Python<'_>, v: Value<'_>) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::None => py.None(),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Float(x) => x.into_pyobject(py)?.into_any().unbind(),
        Value::Str(s) => s.into_pyobject(py)?.into_any().unbind(),
    })
}

/// `_catalog()`: a list with one dict per loss: `name`, `options_type`, `grads` (argument names), `in_place`,
/// `pytorch`, and `options`, a list of dicts `name`, `type` (the Python annotation), `default`, `choices`
/// (a list, or `None`) and `doc`.
#[pyfunction]
pub(crate) fn _catalog(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let losses = PyList::empty(py);
    for loss in catalog() {
        let options = PyList::empty(py);
        for o in loss.options {
            let d = PyDict::new(py);
            d.set_item("name", o.name)?;
            d.set_item("type", o.kind.python())?;
            d.set_item("default", value_to_py(py, o.default)?)?;
            match o.kind {
                Kind::Choice(choices) => d.set_item("choices", choices.to_vec())?,
                _ => d.set_item("choices", py.None())?,
            }
            d.set_item("doc", o.doc.trim())?;
            options.append(d)?;
        }
        let d = PyDict::new(py);
        d.set_item("name", loss.name)?;
        d.set_item("options_type", loss.options_type)?;
        d.set_item("grads", loss.grads.to_vec())?;
        d.set_item("in_place", loss.in_place)?;
        d.set_item("pytorch", loss.pytorch)?;
        d.set_item("options", options)?;
        losses.append(d)?;
    }
    Ok(losses.into_any().unbind())
}
