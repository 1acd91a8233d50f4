//! A safe, bounds-checked front end to `gemm::gemm` for the fused linear losses.
//!
//! Matrices are slices with explicit non-negative row and column strides. Every element a call can
//! touch is checked to lie inside its slice before the (unsafe) call, the destination must not
//! overlap itself, and only `f32`/`f64` reach `gemm` (it panics on other types), so no input can make
//! the call unsound or panic.

use std::any::TypeId;

use num_traits::{One, Zero};

/// A read-only strided matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// A mutable strided matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug)]
pub(crate) struct MatMut<'a, T> {
    pub(crate) data: &'a mut [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// Whether the product replaces the destination or is added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accum {
    /// `dst = lhs·rhs`.
    Replace,
    /// `dst += lhs·rhs`.
    Add,
}

/// Why a product was refused (never reached from validated callers; kept as an error, not a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GemmError {
    /// The element type is not `f32` or `f64`.
    Type,
    /// Inner or outer dimensions disagree.
    Dims,
    /// A matrix does not fit in its slice, or a stride does not fit `isize`.
    Bounds,
    /// The destination's strides make distinct elements overlap.
    Overlap,
}

/// The largest flat index a `rows × cols` matrix with strides `rs`, `cs` touches, `None` on overflow;
/// `Some(None)` when the matrix is empty.
fn last_index(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<Option<usize>> {
    if rows == 0 || cols == 0 {
        return Some(None);
    }
    let a = (rows - 1).checked_mul(rs)?;
    let b = (cols - 1).checked_mul(cs)?;
    Some(Some(a.checked_add(b)?))
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    let strides_ok = isize::try_from(rs).is_ok() && isize::try_from(cs).is_ok();
    match last_index(rows, cols, rs, cs) {
        Some(None) => true,
        Some(Some(last)) => strides_ok && last < len,
        None => false,
    }
}

/// Distinct `(i, j)` map to distinct offsets: row-major (`rs ≥ cols·cs`, `cs ≥ 1`) or column-major
/// (`cs ≥ rows·rs`, `rs ≥ 1`) layouts, or a matrix with at most one row/column along the zero stride.
fn non_overlapping(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows <= 1 && cols <= 1 {
        return true;
    }
    let row_major = cs >= 1 && cols.checked_mul(cs).is_some_and(|w| rs >= w || rows <= 1);
    let col_major = rs >= 1 && rows.checked_mul(rs).is_some_and(|h| cs >= h || cols <= 1);
    row_major || col_major
}

/// `dst (=|+=) lhs · rhs`, with `gemm`'s rayon parallelism over `threads` threads (0 = rayon's current
/// pool size, 1 = sequential).
pub(crate) fn matmul<T: Copy + Zero + One + 'static>(
    dst: MatMut<'_, T>,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    accum: Accum,
    threads: usize,
) -> Result<(), GemmError> {
    if TypeId::of::<T>() != TypeId::of::<f32>() && TypeId::of::<T>() != TypeId::of::<f64>() {
        return Err(GemmError::Type);
    }
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if lhs.rows != m || rhs.cols != n || rhs.rows != k {
        return Err(GemmError::Dims);
    }
    if !fits(dst.data.len(), m, n, dst.rs, dst.cs)
        || !fits(lhs.data.len(), m, k, lhs.rs, lhs.cs)
        || !fits(rhs.data.len(), k, n, rhs.rs, rhs.cs)
    {
        return Err(GemmError::Bounds);
    }
    if !non_overlapping(m, n, dst.rs, dst.cs) {
        return Err(GemmError::Overlap);
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if accum == Accum::Replace {
            for i in 0..m {
                for j in 0..n {
                    if let Some(d) = dst.data.get_mut(i * dst.rs + j * dst.cs) {
                        *d = T::zero();
                    }
                }
            }
        }
        return Ok(());
    }
    let par = match threads {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    // The strides were checked to fit `isize` by `fits`.
    let s = |v: usize| v as isize;
    // SAFETY: `T` is f32 or f64 (checked above), which `gemm` supports. Every element `gemm` reads or
    // writes — `dst[i·rs + j·cs]` for i < m, j < n, `lhs[i·rs + l·cs]` for l < k, `rhs[l·rs + j·cs]` —
    // lies inside its slice (`fits`: the largest such offset is < len, strides are non-negative and fit
    // `isize`). `dst` is borrowed mutably, so it cannot alias `lhs`/`rhs` (shared borrows), and its
    // strides map distinct elements to distinct offsets (`non_overlapping`), so gemm's parallel writes
    // never race. With `read_dst = false` the destination's previous contents are not read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            s(dst.cs),
            s(dst.rs),
            accum == Accum::Add,
            lhs.data.as_ptr(),
            s(lhs.cs),
            s(lhs.rs),
            rhs.data.as_ptr(),
            s(rhs.cs),
            s(rhs.rs),
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_and_accumulates() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![1.0; m * n];
        let dst = MatMut { data: &mut c, rows: m, cols: n, rs: n, cs: 1 };
        let lhs = MatRef { data: &a, rows: m, cols: k, rs: k, cs: 1 };
        let rhs = MatRef { data: &b, rows: k, cols: n, rs: n, cs: 1 };
        matmul(dst, lhs, rhs, Accum::Replace, 1).unwrap();
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-14);
        }
        let dst = MatMut { data: &mut c, rows: m, cols: n, rs: n, cs: 1 };
        matmul(dst, lhs, rhs, Accum::Add, 0).unwrap();
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-14);
        }
        // transposed rhs view: bᵀ stored as (n × k) row-major
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let rhs_t = MatRef { data: &bt, rows: k, cols: n, rs: 1, cs: k };
        let dst = MatMut { data: &mut c, rows: m, cols: n, rs: n, cs: 1 };
        matmul(dst, lhs, rhs_t, Accum::Replace, 1).unwrap();
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-14);
        }
    }

    #[test]
    fn refuses_what_would_be_unsound() {
        let a = vec![0f32; 6];
        let mut c = vec![0f32; 4];
        let lhs = MatRef { data: &a, rows: 2, cols: 3, rs: 3, cs: 1 };
        let rhs = MatRef { data: &a, rows: 3, cols: 2, rs: 2, cs: 1 };
        let short = MatRef { data: &a[..5], rows: 3, cols: 2, rs: 2, cs: 1 };
        assert_eq!(
            matmul(MatMut { data: &mut c, rows: 2, cols: 2, rs: 2, cs: 1 }, lhs, short, Accum::Replace, 1),
            Err(GemmError::Bounds)
        );
        assert_eq!(
            matmul(MatMut { data: &mut c, rows: 2, cols: 2, rs: 1, cs: 1 }, lhs, rhs, Accum::Replace, 1),
            Err(GemmError::Overlap)
        );
        assert_eq!(
            matmul(MatMut { data: &mut c, rows: 2, cols: 2, rs: 2, cs: 1 }, rhs, rhs, Accum::Replace, 1),
            Err(GemmError::Dims)
        );
        let h = vec![half::f16::ZERO; 4];
        let mut hc = vec![half::f16::ZERO; 4];
        let hr = MatRef { data: &h, rows: 2, cols: 2, rs: 2, cs: 1 };
        assert_eq!(
            matmul(MatMut { data: &mut hc, rows: 2, cols: 2, rs: 2, cs: 1 }, hr, hr, Accum::Replace, 1),
            Err(GemmError::Type)
        );
        // k = 0 zeroes the destination
        let mut c = vec![5f32; 4];
        let e: Vec<f32> = vec![];
        let l0 = MatRef { data: &e, rows: 2, cols: 0, rs: 0, cs: 1 };
        let r0 = MatRef { data: &e, rows: 0, cols: 2, rs: 2, cs: 1 };
        matmul(MatMut { data: &mut c, rows: 2, cols: 2, rs: 2, cs: 1 }, l0, r0, Accum::Replace, 1).unwrap();
        assert_eq!(c, vec![0.0; 4]);
    }
}
