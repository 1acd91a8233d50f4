//! [`TopkRows`]: a block of rows of a teacher's top-k, the unit the cache writes and reads.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};

use crate::error::{CacheError, Result};

/// The top-k of a block of rows: for each row, `k` class indices, the teacher's log-probabilities at them
/// (`log_softmax(logits / T)`), and the log of the probability mass outside them.
///
/// The layout matches [`infoloss::SparseTeacher`]: `indices` and `logprobs` are `(rows, k)`; use
/// [`TopkRows::indices_i64`] for its `i64` indices.
///
/// ```
/// use infoloss_cache::TopkRows;
/// use infoloss::ndarray::{array, Array1};
/// let rows = TopkRows::new(array![[2u32, 0]], array![[-0.5f32, -1.5]], Array1::from(vec![-2.0f32]), 3).unwrap();
/// assert_eq!((rows.rows(), rows.k()), (1, 2));
/// assert_eq!(rows.indices_i64(), array![[2i64, 0]]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TopkRows {
    /// `(rows, k)` class indices, each below the vocabulary size, distinct within a row.
    pub indices: Array2<u32>,
    /// `(rows, k)` log-probabilities at `indices` (`≤ 0`, or `-inf`).
    pub logprobs: Array2<f32>,
    /// `(rows,)` `ln(1 − Σ_j exp(logprobs_j))`, computed from the whole distribution (so a tail holding 1e-12
    /// of the mass keeps its digits); `-inf` when the top-k holds all the mass.
    pub tail: Array1<f32>,
}

impl TopkRows {
    /// Rows from their parts; checks shapes and that every index is below `vocab_size`.
    pub fn new(
        indices: Array2<u32>,
        logprobs: Array2<f32>,
        tail: Array1<f32>,
        vocab_size: usize,
    ) -> Result<Self> {
        let rows = TopkRows { indices, logprobs, tail };
        rows.check(vocab_size)?;
        Ok(rows)
    }

    /// An empty block of `k` columns.
    pub fn empty(k: usize) -> TopkRows {
        TopkRows { indices: Array2::zeros((0, k)), logprobs: Array2::zeros((0, k)), tail: Array1::zeros(0) }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.indices.nrows()
    }

    /// Entries per row.
    pub fn k(&self) -> usize {
        self.indices.ncols()
    }

    /// The indices as `i64`, as [`infoloss::SparseTeacher`] takes them.
    pub fn indices_i64(&self) -> Array2<i64> {
        self.indices.mapv(i64::from)
    }

    /// Rows `range` of this block (copied).
    pub fn slice(&self, range: std::ops::Range<usize>) -> TopkRows {
        TopkRows {
            indices: self.indices.slice(s![range.clone(), ..]).to_owned(),
            logprobs: self.logprobs.slice(s![range.clone(), ..]).to_owned(),
            tail: self.tail.slice(s![range]).to_owned(),
        }
    }

    /// Appends `other`'s rows.
    pub fn append(&mut self, other: &TopkRows) -> Result<()> {
        if other.k() != self.k() {
            return Err(CacheError::Invalid(format!(
                "rows: k = {} cannot be appended to rows of k = {}",
                other.k(),
                self.k()
            )));
        }
        let bad = |e: ndarray::ShapeError| CacheError::Invalid(format!("rows: {e}"));
        self.indices.append(Axis(0), other.indices.view()).map_err(bad)?;
        self.logprobs.append(Axis(0), other.logprobs.view()).map_err(bad)?;
        self.tail.append(Axis(0), other.tail.view()).map_err(bad)?;
        Ok(())
    }

    /// Checks shapes, index range and distinctness.
    pub fn check(&self, vocab_size: usize) -> Result<()> {
        check_parts(self.indices.view(), self.logprobs.view(), self.tail.view(), vocab_size)
    }
}

/// The checks of [`TopkRows::check`] on views.
pub(crate) fn check_parts(
    indices: ArrayView2<'_, u32>,
    logprobs: ArrayView2<'_, f32>,
    tail: ArrayView1<'_, f32>,
    vocab_size: usize,
) -> Result<()> {
    if indices.shape() != logprobs.shape() || tail.len() != indices.nrows() {
        return Err(CacheError::Invalid(format!(
            "rows: indices {:?}, logprobs {:?} and tail {:?} must be (rows, k), (rows, k) and (rows,)",
            indices.shape(),
            logprobs.shape(),
            tail.shape()
        )));
    }
    let mut seen = Vec::with_capacity(indices.ncols());
    for (r, row) in indices.outer_iter().enumerate() {
        seen.clear();
        for (j, &i) in row.iter().enumerate() {
            if i as usize >= vocab_size {
                return Err(CacheError::Invalid(format!(
                    "rows: indices[{r}, {j}] = {i} is not below the vocabulary size {vocab_size}"
                )));
            }
            seen.push(i);
        }
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(CacheError::Invalid(format!("rows: row {r} holds index {} twice", w[0])));
        }
    }
    Ok(())
}
