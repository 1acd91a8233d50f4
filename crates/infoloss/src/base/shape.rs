//! Shape helpers shared by the losses: axis normalization, the class-dimension layout, broadcasting.

use ndarray::{ArrayView, ArrayView2, ArrayViewD, Dimension, Ix2, IxDyn};

use super::{Error, Result};

/// Resolves a PyTorch-style dimension (negative counts from the end) against `ndim`.
///
/// A 0-dimensional array accepts `dim` 0 and −1 (as PyTorch does for softmax of a scalar); the
/// returned axis is then 0 and callers treat the array as one element.
pub fn normalize_axis(op: &'static str, axis: isize, ndim: usize) -> Result<usize> {
    let n = ndim.max(1) as isize;
    let a = if axis < 0 { axis + n } else { axis };
    if a < 0 || a >= n {
        return Err(Error::invalid_option(
            op,
            "dim",
            axis,
            format!("dimension out of range (expected to be in range of [{}, {}])", -n, n - 1),
        ));
    }
    Ok(a as usize)
}

/// The layout of a class-dimension-1 input: `(N, C, d1, …, dk)` seen as `outer = N`, `classes = C`,
/// `inner = d1·…·dk`; a 1-D input `(C)` is `outer = 1`, `inner = 1` with no batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLayout {
    /// Size of the batch dimension (1 for a 1-D input).
    pub outer: usize,
    /// Number of classes.
    pub classes: usize,
    /// Product of the trailing dimensions after the class dimension.
    pub inner: usize,
    /// Whether the input had a batch dimension (ndim ≥ 2).
    pub batched: bool,
}

impl ClassLayout {
    /// Computes the layout of `shape`, which must have at least one dimension.
    ///
    /// # Errors
    /// [`Error::BadRank`] for a 0-d shape; [`Error::TooLarge`] when the shape's product overflows or
    /// when its rows (`outer · inner`) are too many to count: an empty input such as
    /// `[2^40, 0, 2^40]` has no element but 2^80 rows.
    pub fn of(op: &'static str, shape: &[usize]) -> Result<Self> {
        match shape.len() {
            0 => Err(Error::bad_rank(op, "input", shape, "1 or more dimensions (class dimension 1)")),
            1 => Ok(ClassLayout { outer: 1, classes: shape[0], inner: 1, batched: false }),
            _ => {
                let inner = checked_numel(op, "input", &shape[2..])?;
                checked_numel(op, "input", shape)?;
                checked_numel(op, "output", &[shape[0], inner])?;
                Ok(ClassLayout { outer: shape[0], classes: shape[1], inner, batched: true })
            }
        }
    }

    /// Number of rows (positions that carry one distribution over the classes): `outer · inner`.
    ///
    /// A layout from [`ClassLayout::of`] always has a countable number of rows; one built by hand whose
    /// product overflows gives `usize::MAX` (see [`ClassLayout::checked_rows`]).
    pub fn rows(&self) -> usize {
        self.checked_rows().unwrap_or(usize::MAX)
    }

    /// `outer · inner`, or `None` if it overflows `usize`.
    pub fn checked_rows(&self) -> Option<usize> {
        self.outer.checked_mul(self.inner)
    }

    /// The shape of a class-index target / per-row output: the input shape without dimension 1.
    pub fn row_shape(&self, input_shape: &[usize]) -> Vec<usize> {
        if self.batched {
            let mut s = vec![input_shape[0]];
            s.extend_from_slice(&input_shape[2..]);
            s
        } else {
            vec![]
        }
    }
}

/// The product of `shape`, or an error if it overflows `usize` or exceeds `isize::MAX` bytes of f64.
pub fn checked_numel(op: &'static str, what: &'static str, shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d).ok_or_else(|| {
            Error::too_large(op, what, format!("the product of shape {:?} overflows", shape))
        })?;
    }
    if n > (isize::MAX as usize) / 8 {
        return Err(Error::too_large(op, what, format!("shape {:?} has {n} elements", shape)));
    }
    Ok(n)
}

/// Checks that `a` and `b` have exactly the same shape.
pub fn check_same_shape(
    op: &'static str,
    a_name: &'static str,
    a: &[usize],
    b_name: &'static str,
    b: &[usize],
) -> Result<()> {
    ensure_shapes(a == b, op, (a_name, a), (b_name, b), "must be equal")
}

/// `Ok` when `ok`, else the [`Error::ShapeMismatch`] of the named shapes `a` and `b` with `detail`.
#[inline]
pub(crate) fn ensure_shapes(
    ok: bool,
    op: &'static str,
    a: (&'static str, &[usize]),
    b: (&'static str, &[usize]),
    detail: &'static str,
) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::shape_mismatch(op, a.0, a.1, b.0, b.1, detail)) }
}

/// Broadcasts `view` (named `name`) into `shape` by NumPy/PyTorch rules, without enlarging `shape`.
///
/// Errors name both shapes when the broadcast is impossible or would enlarge the output
/// (PyTorch: "output with shape [4, 3] doesn't match the broadcast shape [2, 4, 3]").
pub fn broadcast_into<'b, T>(
    op: &'static str,
    name: &'static str,
    view: &'b ArrayViewD<'_, T>,
    into_name: &'static str,
    shape: &[usize],
) -> Result<ArrayViewD<'b, T>> {
    let err = || {
        Error::shape_mismatch(
            op,
            name,
            view.shape(),
            into_name,
            shape,
            format!(
                "are not compatible: {name} must broadcast to the {into_name} shape without enlarging it"
            ),
        )
    };
    if view.ndim() > shape.len() {
        return Err(err());
    }
    let off = shape.len() - view.ndim();
    for (i, &d) in view.shape().iter().enumerate() {
        if d != 1 && d != shape[off + i] {
            return Err(err());
        }
    }
    view.broadcast(IxDyn(shape)).ok_or_else(err)
}

/// Converts a flat row-major index into a multi-index of `shape` (for error messages).
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Views an input as 2-D `(rows, classes)` or names its shape in the error.
pub(crate) fn as_2d<'a, T, D: Dimension>(
    op: &'static str,
    name: &'static str,
    a: ArrayView<'a, T, D>,
) -> Result<ArrayView2<'a, T>> {
    view_2d(op, name, a, "2 dimensions (rows × classes)")
}

/// Views an input as 2-D or names its shape in the error, which says `expected`.
pub(crate) fn view_2d<'a, T, D: Dimension>(
    op: &'static str,
    name: &'static str,
    a: ArrayView<'a, T, D>,
    expected: &'static str,
) -> Result<ArrayView2<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>().map_err(|_| Error::bad_rank(op, name, &shape, expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn layout_of_nd_input() {
        let l = ClassLayout::of("t", &[2, 5, 3, 4]).unwrap();
        assert_eq!(l, ClassLayout { outer: 2, classes: 5, inner: 12, batched: true });
        assert_eq!(l.row_shape(&[2, 5, 3, 4]), vec![2, 3, 4]);
        let l = ClassLayout::of("t", &[7]).unwrap();
        assert_eq!((l.rows(), l.classes, l.batched), (1, 7, false));
        assert!(ClassLayout::of("t", &[]).is_err());
    }

    #[test]
    fn too_many_rows_are_errors() {
        // No element, but 2^80 rows (and 2^62: more than the limit of checked_numel).
        for big in [1usize << 40, 1 << 31] {
            let e = ClassLayout::of("t", &[big, 0, big]).unwrap_err();
            assert!(matches!(e, Error::TooLarge { op: "t", .. }), "{e}");
        }
        let l = ClassLayout::of("t", &[1 << 28, 0, 1 << 28]).unwrap();
        assert_eq!((l.rows(), l.checked_rows()), (1 << 56, Some(1 << 56)));
        let hand = ClassLayout { outer: 1 << 40, classes: 0, inner: 1 << 40, batched: true };
        assert_eq!((hand.rows(), hand.checked_rows()), (usize::MAX, None));
    }

    #[test]
    fn overflowing_shapes_are_errors() {
        let e = checked_numel("t", "input", &[usize::MAX, 2]).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn broadcasting_rules() {
        let w = ArrayD::<f32>::zeros(IxDyn(&[3]));
        assert_eq!(broadcast_into("t", "weight", &w.view(), "input", &[2, 3]).unwrap().shape(), &[2, 3]);
        let e = broadcast_into("t", "weight", &w.view(), "input", &[2, 4]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t: weight shape [3] and input shape [2, 4] are not compatible: weight must broadcast to the input shape without enlarging it"
        );
        let big = ArrayD::<f32>::zeros(IxDyn(&[2, 4, 3]));
        assert!(broadcast_into("t", "weight", &big.view(), "input", &[4, 3]).is_err());
    }

    #[test]
    fn axes() {
        assert_eq!(normalize_axis("t", -1, 3).unwrap(), 2);
        assert_eq!(normalize_axis("t", 0, 0).unwrap(), 0);
        assert!(normalize_axis("t", 3, 3).is_err());
        assert_eq!(unravel(7, &[2, 3, 2]), vec![1, 0, 1]);
    }
}
