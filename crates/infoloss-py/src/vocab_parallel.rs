//! Vocab-parallel cross-entropy and distillation driven from Python: the core runs the shard steps and
//! calls back into a Python object for each all-reduction (`infoloss.torch` passes an adapter over
//! `torch.distributed`), so the layout check, the rounds and the formulas are the core's.
//!
//! - `vocab_parallel_cross_entropy` returns `(loss, z_loss, lse, grad or None)`;
//! - `vocab_parallel_distill` returns `(loss, grad or None)`.
//!
//! float16, float32 and float64 (the torch layer computes bfloat16 in float32).

use ndarray::{ArrayViewD, Ix1, Ix2};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use infoloss::vocab_parallel::{
    Collective, VocabShard, vocab_parallel_cross_entropy_with_grad, vocab_parallel_distill_with_grad,
};
use infoloss::{CrossEntropyExtrasOptions, DistillOptions, Error};

use crate::boundary::{
    Float, array_to_py, float_arr, float_fn, guarded, index_arr, loss_to_py, opt_float_arr, to_py_err,
};
use crate::catalog::from_tuple;

const CE: &str = "vocab_parallel_cross_entropy";
const KD: &str = "vocab_parallel_distill";

/// A Python object with `rank`, `size` and `all_reduce(buf: numpy.ndarray[float64], op: "max" | "sum")`,
/// which reduces `buf` in place over the group.
struct PyGroup {
    obj: Py<PyAny>,
    rank: usize,
    size: usize,
    op: &'static str,
}

impl PyGroup {
    fn new(obj: &Bound<'_, PyAny>, op: &'static str) -> PyResult<Self> {
        let rank: usize = obj.getattr("rank")?.extract()?;
        let size: usize = obj.getattr("size")?.extract()?;
        if size == 0 || rank >= size {
            return Err(PyValueError::new_err(format!("{op}: rank {rank} is not in a group of {size}")));
        }
        Ok(PyGroup { obj: obj.clone().unbind(), rank, size, op })
    }

    fn reduce(&self, buf: &mut [f64], how: &str) -> infoloss::Result<()> {
        let n = buf.len();
        Python::attach(|py| {
            let arr = PyArray1::from_slice(py, buf);
            let mut run = || -> PyResult<()> {
                self.obj.call_method1(py, "all_reduce", (arr.clone(), how))?;
                buf.copy_from_slice(arr.readonly().as_slice()?);
                Ok(())
            };
            run().map_err(|e| {
                Error::collective(self.op, self.rank, format!("all-reduce ({how}) of {n} values failed: {e}"))
            })
        })
    }
}

impl Collective for PyGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_max(&self, buf: &mut [f64]) -> infoloss::Result<()> {
        self.reduce(buf, "max")
    }
    fn all_reduce_sum(&self, buf: &mut [f64]) -> infoloss::Result<()> {
        self.reduce(buf, "sum")
    }
}

/// A failed collective is a `RuntimeError` (as torch.distributed raises); the rest as everywhere else.
fn vp_err(e: Error) -> PyErr {
    match e {
        Error::Collective { .. } => PyRuntimeError::new_err(e.to_string()),
        e => to_py_err(e),
    }
}

/// A 2-D view or a `ValueError` naming the argument and its shape.
fn matrix<'a, T>(a: ArrayViewD<'a, T>, op: &str, name: &str) -> PyResult<ndarray::ArrayView2<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>().map_err(|_| {
        PyValueError::new_err(format!("{op}: {name} must be 2-D (rows, vocab slice), got shape {shape:?}"))
    })
}

/// A 1-D view or a `ValueError` naming the argument and its shape.
fn vector<'a, T>(a: ArrayViewD<'a, T>, op: &str, name: &str) -> PyResult<ndarray::ArrayView1<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix1>()
        .map_err(|_| PyValueError::new_err(format!("{op}: {name} must be 1-D, got shape {shape:?}")))
}

fn opt_grad<T: Float>(py: Python<'_>, want: bool, g: ndarray::Array2<T>) -> Option<Py<PyAny>> {
    want.then(|| array_to_py(py, g.into_dyn()))
}

/// This rank's slice: `width` classes from `vocab_start` of `vocab_size`.
fn slice(vocab_start: usize, width: usize, vocab_size: usize) -> PyResult<VocabShard> {
    VocabShard::new(vocab_start, width, vocab_size).map_err(to_py_err)
}

float_fn! {
    /// `vocab_parallel_cross_entropy(logits, target, weight, vocab_start, vocab_size, options, group, grad)`:
    /// `(loss, z_loss, lse, grad or None)`; `options` in the catalog order of `cross_entropy_extras`.
    fn vocab_parallel_cross_entropy(
        logits: &Bound<'_, PyAny>,
        target: &Bound<'_, PyAny>,
        weight: Option<&Bound<'_, PyAny>>,
        vocab_start: usize,
        vocab_size: usize,
        options: &Bound<'_, PyTuple>,
        group: &Bound<'_, PyAny>,
        grad: bool,
    ) signature (logits, target, weight, vocab_start, vocab_size, options, group, grad), dtype of logits in CE;
    |py, T| {
        let x = float_arr::<T>(logits, CE, "logits")?;
        let t = index_arr(target, CE, "target")?;
        let w = opt_float_arr::<T>(weight, CE, "weight")?;
        let xv = matrix(x.as_array(), CE, "logits")?;
        let tv = vector(t.as_array(), CE, "target")?;
        let mut opts = from_tuple::<CrossEntropyExtrasOptions<'_, T>>(CE, options)?;
        opts.weight = w.as_ref().map(|w| vector(w.as_array(), CE, "weight")).transpose()?;
        let shard = slice(vocab_start, xv.ncols(), vocab_size)?;
        let comm = PyGroup::new(group, CE)?;
        let out = guarded(py, CE, || vocab_parallel_cross_entropy_with_grad(xv, tv, shard, &opts, &comm), vp_err)?;
        let items: [Option<Py<PyAny>>; 4] = [
            Some(loss_to_py(py, out.loss)),
            Some(loss_to_py(py, out.z_loss)),
            Some(array_to_py(py, out.lse.into_dyn())),
            opt_grad(py, grad, out.grad),
        ];
        Ok(PyTuple::new(py, items)?.into_any().unbind())
    }
}

float_fn! {
    /// `vocab_parallel_distill(student, teacher, labels, vocab_start, vocab_size, options, group, grad)`:
    /// `(loss, grad or None)`; `options` in the catalog order of `distill`.
    fn vocab_parallel_distill(
        student: &Bound<'_, PyAny>,
        teacher: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        vocab_start: usize,
        vocab_size: usize,
        options: &Bound<'_, PyTuple>,
        group: &Bound<'_, PyAny>,
        grad: bool,
    ) signature (student, teacher, labels, vocab_start, vocab_size, options, group, grad), dtype of student in KD;
    |py, T| {
        let s = float_arr::<T>(student, KD, "student")?;
        let t = float_arr::<T>(teacher, KD, "teacher")?;
        let l = labels.map(|l| index_arr(l, KD, "labels")).transpose()?;
        let sv = matrix(s.as_array(), KD, "student")?;
        let tv = matrix(t.as_array(), KD, "teacher")?;
        let lv = l.as_ref().map(|l| vector(l.as_array(), KD, "labels")).transpose()?;
        let opts = from_tuple::<DistillOptions>(KD, options)?;
        let shard = slice(vocab_start, sv.ncols(), vocab_size)?;
        let comm = PyGroup::new(group, KD)?;
        let out = guarded(py, KD, || vocab_parallel_distill_with_grad(sv, tv, lv, shard, &opts, &comm), vp_err)?;
        let items: [Option<Py<PyAny>>; 2] = [Some(loss_to_py(py, out.loss)), opt_grad(py, grad, out.grad)];
        Ok(PyTuple::new(py, items)?.into_any().unbind())
    }
}
