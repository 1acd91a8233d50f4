//! Building arrays and vectors: fallibly allocated, row-major, with errors that name the operation.

use std::borrow::Cow;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::shape::checked_numel;
use super::{Error, Result};

/// The elements of `a` in row-major (logical) order, borrowed when `a` is already standard-layout.
pub(crate) fn row_major<'a, T: Clone>(a: &'a ArrayViewD<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// Builds an owned array of `shape` from row-major `data` (`data.len()` must be the product of `shape`).
pub(crate) fn array_from_vec<T>(op: &'static str, shape: &[usize], data: Vec<T>) -> Result<ArrayD<T>> {
    let len = data.len();
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| {
        Error::too_large(op, "output", format!("cannot build shape {shape:?} from {len} elements: {e}"))
    })
}

/// A vector with room for `n` elements, allocated fallibly: [`Error::TooLarge`] naming `what` when the
/// memory cannot be had (instead of aborting, as `Vec::with_capacity` would).
pub(crate) fn try_vec<T>(op: &'static str, what: &'static str, n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::too_large(
            op,
            what,
            format!("cannot allocate {n} elements of {} bytes", std::mem::size_of::<T>()),
        )
    })?;
    Ok(v)
}

/// An owned array of `shape` with every element `value`, its size checked
/// ([`checked_numel`]) and allocated fallibly ([`try_vec`]).
pub(crate) fn try_full<T: Clone>(
    op: &'static str,
    what: &'static str,
    shape: &[usize],
    value: T,
) -> Result<ArrayD<T>> {
    let n = checked_numel(op, what, shape)?;
    let mut v = try_vec(op, what, n)?;
    v.resize(n, value);
    array_from_vec(op, shape, v)
}
