//! The plumbing both fused linear losses share: operand checks, the chunk's logits product and the
//! weight/hidden gradient products through `gemm`, and the matrix product behind them.

use super::*;
use crate::base::shape::ensure_shapes;

pub(crate) fn gemm_err(op: &'static str, e: GemmError) -> Error {
    Error::too_large(op, "matrix product", format!("gemm refused the operands ({e:?})"))
}

/// Views a 2-D input or names its shape in the error.
pub(crate) fn as_2d<'a, T, D: Dimension>(
    op: &'static str,
    name: &'static str,
    a: ArrayView<'a, T, D>,
) -> Result<ArrayView2<'a, T>> {
    crate::base::shape::view_2d(op, name, a, "2 dimensions")
}

/// The elements in row-major order, borrowed when already standard layout.
pub(crate) fn contiguous<'a, T: Clone, D: Dimension>(a: &'a ArrayView<'_, T, D>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

impl<T> LinearHead<'_, T> {
    /// Checks the head's `hidden (N, H)` against its `weight (V, H)` and its optional `bias (V,)` (one
    /// entry per output row), each called by its name in `[hidden, weight, bias]` in the errors.
    pub(crate) fn check(&self, op: &'static str, [hname, wname, bname]: [&'static str; 3]) -> Result<()> {
        let (hidden, weight) = (self.hidden.shape(), self.weight.shape());
        ensure_shapes(
            hidden.get(1) == weight.get(1),
            op,
            (hname, hidden),
            (wname, weight),
            "are not compatible: hidden (N, H) and weight (V, H) must have the same H",
        )?;
        match &self.bias {
            Some(b) if Some(&b.len()) != weight.first() => Err(Error::shape_mismatch(
                op,
                bname,
                b.shape(),
                wname,
                weight,
                format!("are not compatible: {bname} must have one entry per output row of {wname} (V)"),
            )),
            _ => Ok(()),
        }
    }
}

/// The row-major matrices of one chunk's three products.
pub(crate) struct Chunk<'a, T> {
    /// `X_c`, `rows × H`.
    pub(crate) x: &'a [T],
    pub(crate) rows: usize,
}

/// `logits (rows × V) = X_c · Wᵀ` into `buf`.
pub(crate) fn logits_gemm<T: LinearFloat>(
    op: &'static str,
    buf: &mut [T],
    c: &Chunk<'_, T>,
    w: &[T],
    v: usize,
    h: usize,
) -> Result<()> {
    linear_gemm::matmul(
        MatMut { data: buf, rows: c.rows, cols: v, rs: v, cs: 1 },
        MatRef { data: c.x, rows: c.rows, cols: h, rs: h, cs: 1 },
        MatRef { data: w, rows: h, cols: v, rs: 1, cs: h },
        Accum::Replace,
        0,
    )
    .map_err(|e| gemm_err(op, e))
}

/// `grad_x (rows × H) = G · W` and `grad_w (V × H) += Gᵀ · X_c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_gemms<T: LinearFloat>(
    op: &'static str,
    g: &[T],
    c: &Chunk<'_, T>,
    w: &[T],
    grad_x: &mut [T],
    grad_w: &mut [T],
    v: usize,
    h: usize,
) -> Result<()> {
    linear_gemm::matmul(
        MatMut { data: grad_x, rows: c.rows, cols: h, rs: h, cs: 1 },
        MatRef { data: g, rows: c.rows, cols: v, rs: v, cs: 1 },
        MatRef { data: w, rows: v, cols: h, rs: h, cs: 1 },
        Accum::Replace,
        0,
    )
    .map_err(|e| gemm_err(op, e))?;
    // In blocks of classes: gemm packs the (strided) `G` block it reads, `chunk_rows × block` elements,
    // which stays small instead of growing to a second chunk-sized buffer.
    let mut v0 = 0;
    while v0 < v {
        let v1 = (v0 + GW_BLOCK).min(v);
        linear_gemm::matmul(
            MatMut {
                data: grad_w.get_mut(v0 * h..v1 * h).unwrap_or(&mut []),
                rows: v1 - v0,
                cols: h,
                rs: h,
                cs: 1,
            },
            MatRef { data: g.get(v0..).unwrap_or(&[]), rows: v1 - v0, cols: c.rows, rs: 1, cs: v },
            MatRef { data: c.x, rows: c.rows, cols: h, rs: h, cs: 1 },
            Accum::Add,
            0,
        )
        .map_err(|e| gemm_err(op, e))?;
        v0 = v1;
    }
    Ok(())
}

pub(crate) fn to_array2<T>(
    op: &'static str,
    what: &'static str,
    shape: (usize, usize),
    v: Vec<T>,
) -> Result<Array2<T>> {
    Array2::from_shape_vec(shape, v).map_err(|e| Error::too_large(op, what, e.to_string()))
}

/// A matrix seen as a slice with non-negative strides, borrowed when it is contiguous in memory
/// (row- or column-major, e.g. a transposed view), else copied to row-major.
pub(crate) fn mat_of<'a, T: Clone>(a: &'a ArrayView2<'_, T>) -> (Cow<'a, [T]>, usize, usize) {
    let st = a.strides();
    let (s0, s1) = (st.first().copied().unwrap_or(0), st.get(1).copied().unwrap_or(0));
    if s0 >= 0 && s1 >= 0 {
        if let Some(sl) = a.as_slice_memory_order() {
            return (Cow::Borrowed(sl), s0 as usize, s1 as usize);
        }
    }
    (Cow::Owned(a.iter().cloned().collect()), a.ncols(), 1)
}

/// Matrix product with the GEMM the fused losses use (`gemm` crate, rayon-parallel on the current pool):
/// `dst = lhs·rhs`, or `dst += lhs·rhs` with `accumulate`.
///
/// # Formula
///
/// `dst[i, j] (+)= Σ_l lhs[i, l]·rhs[l, j]`, computed in the element type. `lhs` and `rhs` may be any
/// views (transposed views are used in place; other non-contiguous views are copied once); `dst` must be
/// contiguous in memory (row- or column-major) with non-negative strides.
///
/// # Gradient
///
/// Not applicable (a building block: `∂/∂lhs = g·rhsᵀ`, `∂/∂rhs = lhsᵀ·g`).
///
/// # PyTorch
///
/// `torch.mm(lhs, rhs, out=dst)`, or `dst.addmm_(lhs, rhs)` with `accumulate`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] naming the shapes when `lhs.ncols() != rhs.nrows()` or `dst` is not
/// `lhs.nrows() × rhs.ncols()`; [`Error::InvalidOption`] (option `dst`) when `dst` is not contiguous.
///
/// # Example
///
/// ```
/// use infoloss::linear::matmul;
/// use infoloss::ndarray::{array, Array2};
/// let a = array![[1.0f32, 2.0], [3.0, 4.0]];
/// let b = array![[1.0f32, 0.0, 2.0], [0.5, 1.0, -1.0]];
/// let mut c = Array2::<f32>::zeros((2, 3));
/// matmul(c.view_mut(), a.view(), b.view(), false)?;
/// assert_eq!(c, array![[2.0, 2.0, 0.0], [5.0, 4.0, 2.0]]);
/// matmul(c.view_mut(), a.view(), b.view(), true)?; // accumulate
/// assert_eq!(c[[1, 2]], 4.0);
/// let mut d = Array2::<f32>::zeros((2, 2));
/// matmul(d.view_mut(), a.view(), a.t(), false)?; // a·aᵀ, transposed view used in place
/// assert_eq!(d, array![[5.0, 11.0], [11.0, 25.0]]);
/// # Ok::<(), infoloss::Error>(())
/// ```
pub fn matmul<T: LinearFloat>(
    mut dst: ndarray::ArrayViewMut2<'_, T>,
    lhs: ArrayView2<'_, T>,
    rhs: ArrayView2<'_, T>,
    accumulate: bool,
) -> Result<()> {
    const OP: &str = "matmul";
    ensure_shapes(
        lhs.ncols() == rhs.nrows(),
        OP,
        ("lhs", lhs.shape()),
        ("rhs", rhs.shape()),
        "cannot be multiplied",
    )?;
    if dst.dim() != (lhs.nrows(), rhs.ncols()) {
        return Err(Error::shape_mismatch(
            OP,
            "dst",
            dst.shape(),
            "lhs",
            lhs.shape(),
            format!("are not compatible: dst must be {} × {}", lhs.nrows(), rhs.ncols()),
        ));
    }
    let (m, n, k) = (lhs.nrows(), rhs.ncols(), lhs.ncols());
    let (l, lrs, lcs) = mat_of(&lhs);
    let (r, rrs, rcs) = mat_of(&rhs);
    let st = dst.strides().to_vec();
    let (s0, s1) = (st.first().copied().unwrap_or(0), st.get(1).copied().unwrap_or(0));
    let d = match dst.as_slice_memory_order_mut() {
        Some(d) if s0 >= 0 && s1 >= 0 => d,
        _ => {
            return Err(Error::invalid_option(
                OP,
                "dst",
                format!("strides {st:?}"),
                "dst must be contiguous in memory (row- or column-major) with non-negative strides",
            ));
        }
    };
    linear_gemm::matmul(
        MatMut { data: d, rows: m, cols: n, rs: s0 as usize, cs: s1 as usize },
        MatRef { data: &l, rows: m, cols: k, rs: lrs, cs: lcs },
        MatRef { data: &r, rows: k, cols: n, rs: rrs, cs: rcs },
        if accumulate { Accum::Add } else { Accum::Replace },
        0,
    )
    .map_err(|e| gemm_err(OP, e))
}
