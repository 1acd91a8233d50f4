//! The core's option catalog seen from Python: `_catalog()` describes every loss's options (so the Python
//! signatures and stubs are tested against it, `tests/test_catalog.py`), and [`options`] builds an options
//! struct from `(name, value)` pairs through the catalog's by-name setter, so the extension holds no table of
//! option spellings of its own.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use infoloss::options::{Kind, Options, Value, catalog};

use crate::boundary::to_py_err;

/// The options struct `O` with the given options set (in the order given; a divergence before its `beta`),
/// each error naming `op` and the option.
pub(crate) fn options<O: Options>(op: &'static str, values: &[(&str, Value<'_>)]) -> PyResult<O> {
    let mut o = O::default();
    for (name, value) in values {
        o.set_in(op, name, *value).map_err(to_py_err)?;
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
