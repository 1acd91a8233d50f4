//! The teacher cache ([`infoloss_cache`]): a writer and a reader handle, and the top-k selection.
//!
//! The Python layer (`infoloss/cache.py`) wraps these in `TeacherCacheWriter`, `TeacherCache` and `select_topk`,
//! converts dtypes (class indices to `uint32`, bfloat16 logits to their `uint16` bits) and reads lossless shards
//! itself, zero-copy; this layer runs the Rust writer and reader without the GIL, in the extension's pool.
//! Errors: the cache's message as `FileNotFoundError` / `OSError` (I/O), `ValueError` (arguments, damaged files).

use std::path::PathBuf;

use half::{bf16, f16};
use infoloss_cache::{CacheError, CacheReader, CacheWriter, Index, Logit, Mode, TopkRows};
use ndarray::{ArrayView1, ArrayView2, ArrayViewD, Ix1};
use numpy::{IntoPyArray, PyArrayDyn};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::boundary::{borrow_arr, float_arr, guarded, opt_float_arr, to_py_err};
use crate::distill::view_2d;

/// Maps a cache error to a Python exception, keeping its text (which names the file, row or argument).
fn cache_err(e: CacheError) -> PyErr {
    match e {
        CacheError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        CacheError::Io { .. } => PyOSError::new_err(e.to_string()),
        CacheError::Core(c) => to_py_err(c),
        e => PyValueError::new_err(e.to_string()),
    }
}

/// `(indices uint32 (n, k), logprobs float32 (n, k), tail float32 (n,))`, moved into NumPy without a copy.
fn rows_to_py(py: Python<'_>, rows: TopkRows) -> PyResult<Py<PyTuple>> {
    let parts = [
        rows.indices.into_pyarray(py).into_any(),
        rows.logprobs.into_pyarray(py).into_any(),
        rows.tail.into_pyarray(py).into_any(),
    ];
    Ok(PyTuple::new(py, parts)?.unbind())
}

/// Runs `f` without the GIL on `logits` `(rows, V)` of NumPy element type `E`, seen as the logit type `L` of the
/// same bits (`E = L`, or `uint16` bits as bfloat16).
fn with_logits<E, L, R>(
    py: Python<'_>,
    op: &'static str,
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(ArrayView2<'_, L>) -> infoloss_cache::Result<R> + Send,
) -> PyResult<R>
where
    E: numpy::Element + bytemuck::Pod + Sync,
    L: Logit + bytemuck::Pod,
    R: Send,
{
    let arr = borrow_arr::<E>(obj, op, "logits", || "a float array".into())?;
    let v = view_2d(op, "logits", arr.as_array())?;
    guarded(
        py,
        op,
        move || {
            let std = v.as_standard_layout();
            let flat: &[L] = bytemuck::cast_slice(std.as_slice().expect("standard layout"));
            f(ArrayView2::from_shape(std.dim(), flat).expect("the same shape"))
        },
        cache_err,
    )
}

/// Calls `with_logits` with the element type of `$obj`: float16, float32, float64, or `uint16` (bfloat16 bits,
/// as the Python layer passes `ml_dtypes.bfloat16`).
macro_rules! on_logits {
    ($py:expr, $op:expr, $obj:expr, |$v:ident| $body:expr) => {{
        let obj: &Bound<'_, PyAny> = $obj;
        if obj.cast::<PyArrayDyn<f32>>().is_ok() {
            with_logits::<f32, f32, _>($py, $op, obj, |$v| $body)
        } else if obj.cast::<PyArrayDyn<f64>>().is_ok() {
            with_logits::<f64, f64, _>($py, $op, obj, |$v| $body)
        } else if obj.cast::<PyArrayDyn<f16>>().is_ok() {
            with_logits::<f16, f16, _>($py, $op, obj, |$v| $body)
        } else if obj.cast::<PyArrayDyn<u16>>().is_ok() {
            with_logits::<u16, bf16, _>($py, $op, obj, |$v| $body)
        } else {
            Err(PyTypeError::new_err(format!(
                "{}: logits must be a float16, float32, float64 or bfloat16 (as uint16 bits) array",
                $op
            )))
        }
    }};
}

/// A view as 1-d, or a `ValueError` naming the argument.
fn view_1d<'a, A>(op: &str, name: &str, a: ArrayViewD<'a, A>) -> PyResult<ArrayView1<'a, A>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix1>()
        .map_err(|_| PyValueError::new_err(format!("{op}: {name} must be 1-d, got shape {shape:?}")))
}

/// A cache being written: `infoloss.cache.TeacherCacheWriter`'s handle. `None` once finished.
#[pyclass(module = "infoloss._infoloss", name = "_CacheWriter")]
pub(crate) struct Writer {
    inner: Option<CacheWriter>,
}

impl Writer {
    fn get(&mut self, op: &str) -> PyResult<&mut CacheWriter> {
        self.inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err(format!("{op}: the teacher cache writer is finished")))
    }
}

#[pymethods]
impl Writer {
    /// Selects the top-k of `logits` `(rows, V)` and appends them.
    fn push_logits(&mut self, py: Python<'_>, logits: &Bound<'_, PyAny>) -> PyResult<()> {
        let op = "push_logits";
        let w = self.get(op)?;
        on_logits!(py, op, logits, |v| w.push_logits(v))
    }

    /// Selects the top-k of `hidden · weightᵀ + bias` and appends them (float32).
    #[pyo3(signature = (hidden, weight, bias=None))]
    fn push_hidden(
        &mut self,
        py: Python<'_>,
        hidden: &Bound<'_, PyAny>,
        weight: &Bound<'_, PyAny>,
        bias: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let op = "push_hidden";
        let w = self.get(op)?;
        let (h, wt) = (float_arr::<f32>(hidden, op, "hidden")?, float_arr::<f32>(weight, op, "weight")?);
        let b = opt_float_arr::<f32>(bias, op, "bias")?;
        let (hv, wv) = (view_2d(op, "hidden", h.as_array())?, view_2d(op, "weight", wt.as_array())?);
        let bv = b.as_ref().map(|b| view_1d(op, "bias", b.as_array())).transpose()?;
        guarded(py, op, move || w.push_hidden(hv, wv, bv), cache_err)
    }

    /// Appends rows already selected: `indices` uint32 `(n, k)`, `logprobs` float32 `(n, k)`, `tail` float32
    /// `(n,)`.
    fn push_topk(
        &mut self,
        py: Python<'_>,
        indices: &Bound<'_, PyAny>,
        logprobs: &Bound<'_, PyAny>,
        tail: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let op = "push_topk";
        let w = self.get(op)?;
        let i = borrow_arr::<u32>(indices, op, "indices", || "a uint32 array".into())?;
        let (l, t) = (float_arr::<f32>(logprobs, op, "logprobs")?, float_arr::<f32>(tail, op, "tail")?);
        let rows = TopkRows {
            indices: view_2d(op, "indices", i.as_array())?.to_owned(),
            logprobs: view_2d(op, "logprobs", l.as_array())?.to_owned(),
            tail: view_1d(op, "tail", t.as_array())?.to_owned(),
        };
        guarded(py, op, move || w.push(&rows), cache_err)
    }

    /// Rows on disk in complete shards (after a crash: the input row to continue from).
    fn rows_written(&mut self) -> PyResult<u64> {
        Ok(self.get("rows_written")?.rows_written())
    }

    /// Rows accepted (written or buffered).
    fn rows_accepted(&mut self) -> PyResult<u64> {
        Ok(self.get("rows_accepted")?.rows_accepted())
    }

    /// The index as written so far, as JSON text.
    fn index_json(&mut self) -> PyResult<String> {
        Ok(index_json(self.get("index")?.index()))
    }

    /// Writes the buffered rows and marks the cache complete; returns the final index as JSON text.
    fn finish(&mut self, py: Python<'_>) -> PyResult<String> {
        let w = self.inner.take().ok_or_else(|| PyValueError::new_err("finish: the writer is finished"))?;
        let index = guarded(py, "finish", move || w.finish(), cache_err)?;
        Ok(index_json(&index))
    }

    /// Whether `finish` ran.
    fn finished(&self) -> bool {
        self.inner.is_none()
    }
}

fn index_json(index: &Index) -> String {
    serde_json::to_string(index).expect("an index serializes")
}

/// An open cache: `infoloss.cache.TeacherCache`'s handle.
#[pyclass(module = "infoloss._infoloss", name = "_CacheReader", frozen)]
pub(crate) struct Reader {
    inner: CacheReader,
}

#[pymethods]
impl Reader {
    /// Rows in the cache.
    fn rows(&self) -> u64 {
        self.inner.rows()
    }

    /// The checked index, as JSON text.
    fn index_json(&self) -> String {
        index_json(self.inner.index())
    }

    /// Rows `start..stop`, decoded and checked.
    fn read(&self, py: Python<'_>, start: u64, stop: u64) -> PyResult<Py<PyTuple>> {
        let rows = guarded(py, "read", || self.inner.read(start..stop), cache_err)?;
        rows_to_py(py, rows)
    }

    /// Checks every shard whole (size, CRC-32, header, every row).
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        guarded(py, "verify", || self.inner.verify(), cache_err)
    }
}

/// Starts a new cache in `path`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn cache_writer_create(
    py: Python<'_>,
    path: PathBuf,
    vocab_size: usize,
    k: usize,
    temperature: f64,
    mode: &str,
    rows_per_shard: usize,
    source: String,
) -> PyResult<Writer> {
    let mode: Mode = mode.parse().map_err(cache_err)?;
    let index = Index::new(vocab_size, k, temperature, mode, rows_per_shard, source).map_err(cache_err)?;
    let w = guarded(py, "TeacherCacheWriter", move || CacheWriter::create(&path, index), cache_err)?;
    Ok(Writer { inner: Some(w) })
}

/// Reopens the cache in `path` after an interruption.
#[pyfunction]
pub(crate) fn cache_writer_resume(py: Python<'_>, path: PathBuf) -> PyResult<Writer> {
    let w = guarded(py, "TeacherCacheWriter.resume", move || CacheWriter::resume(&path), cache_err)?;
    Ok(Writer { inner: Some(w) })
}

/// Opens the cache in `path` for reading.
#[pyfunction]
pub(crate) fn cache_reader_open(py: Python<'_>, path: PathBuf) -> PyResult<Reader> {
    let r = guarded(py, "TeacherCache", move || CacheReader::open(&path), cache_err)?;
    Ok(Reader { inner: r })
}

/// The top-k of `log_softmax(logits / temperature)` per row, and the log of the mass outside it.
#[pyfunction]
pub(crate) fn cache_select_topk(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    k: usize,
    temperature: f64,
) -> PyResult<Py<PyTuple>> {
    let rows = on_logits!(py, "select_topk", logits, |v| infoloss_cache::select_topk(v, k, temperature))?;
    rows_to_py(py, rows)
}
