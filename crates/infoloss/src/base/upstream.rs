//! The upstream gradient (`grad_output`) as the losses read it: per output row ([`RowUpstream`]) or per
//! element ([`ElementUpstream`]).

use ndarray::{ArrayViewD, IxDyn};

use super::array::try_vec;
use super::outputs::{Want, internal};
use super::{Element, Error, GradOutput, Real, Reduction, Result};

/// The upstream gradient seen per output row.
#[derive(Debug, Clone)]
pub(crate) enum RowUpstream<A> {
    /// The same value for every row (a reduced loss, or `GradOutput::Scalar` with `none`).
    Same(A),
    /// One value per row, row-major over the `none` output shape.
    PerRow(Vec<A>),
}

impl<A: Real> RowUpstream<A> {
    /// The upstream gradient of row `r`.
    #[inline]
    pub(crate) fn at(&self, r: usize) -> A {
        match self {
            RowUpstream::Same(g) => *g,
            RowUpstream::PerRow(v) => v.get(r).copied().unwrap_or_else(A::zero),
        }
    }

    /// Reads `grad_output` for a loss with `reduction` whose `none` output has shape `out_shape`.
    pub(crate) fn read<T: Element<Acc = A>>(
        op: &'static str,
        reduction: Reduction,
        out_shape: &[usize],
        grad_output: &GradOutput<'_, T>,
    ) -> Result<Self> {
        if reduction != Reduction::None {
            return Ok(RowUpstream::Same(grad_output.expect_scalar(op)?.to_acc()));
        }
        match grad_output {
            GradOutput::Scalar(g) => Ok(RowUpstream::Same(g.to_acc())),
            GradOutput::Array(_) => match grad_output.check(op, out_shape)? {
                Some(a) => {
                    let mut v = try_vec(op, "grad_output", a.len())?;
                    v.extend(a.iter().map(|v| v.to_acc()));
                    Ok(RowUpstream::PerRow(v))
                }
                None => {
                    Err(Error::shape_mismatch(op, "grad_output", &[], "output", out_shape, "must be equal"))
                }
            },
        }
    }
}

/// The per-element upstream gradient of a loss: an array of the output's shape (for
/// `Reduction::None`), else one value for every element — `grad_output` divided by `divisor` (for
/// `kl_div`'s mean and batchmean, whose autograd divides first), or 1 when no gradient is wanted.
///
/// # Errors
///
/// A `grad_output` of the wrong shape (named in the message).
pub(crate) fn upstream_of<'g, T: Element>(
    op: &'static str,
    grad_output: Option<&'g GradOutput<'_, T>>,
    want: Want,
    reduction: Reduction,
    out_shape: &[usize],
    divisor: Option<usize>,
) -> Result<(Option<&'g ArrayViewD<'g, T>>, T::Acc)> {
    let one = T::Acc::c(1.0);
    match grad_output {
        Some(go) if want.grad_input || want.grad_target => {
            if reduction == Reduction::None {
                match go.check(op, out_shape)? {
                    Some(view) => Ok((Some(view), one)),
                    None => Ok((None, go.scalar_value().ok_or_else(|| internal(op))?.to_acc())),
                }
            } else {
                let g = go.expect_scalar(op)?.to_acc();
                Ok((None, divisor.map_or(g, |d| g / T::Acc::c(d as f64))))
            }
        }
        _ => Ok((None, one)),
    }
}

/// The per-element upstream gradient for the reference loops: one value for every element, or an
/// array's elements in order.
pub(crate) enum ElementUpstream<'v, T: Element> {
    /// The same value everywhere.
    Const(T::Acc),
    /// An array's elements in row-major order.
    Each(ndarray::iter::Iter<'v, T, IxDyn>),
}

impl<'v, T: Element> ElementUpstream<'v, T> {
    /// From [`upstream_of`]'s result.
    pub(crate) fn new(view: Option<&'v ArrayViewD<'v, T>>, g_const: T::Acc) -> Self {
        match view {
            Some(v) => ElementUpstream::Each(v.iter()),
            None => ElementUpstream::Const(g_const),
        }
    }

    /// The next `len` values into `buf`.
    pub(crate) fn fill(&mut self, buf: &mut Vec<T::Acc>, len: usize) {
        match self {
            ElementUpstream::Const(g) => {
                buf.clear();
                buf.resize(len, *g);
            }
            ElementUpstream::Each(it) => fill(buf, it, len),
        }
    }
}

/// The next `len` elements of `it` into `buf`, in the compute type.
pub(crate) fn fill<'v, T: Element>(buf: &mut Vec<T::Acc>, it: &mut impl Iterator<Item = &'v T>, len: usize) {
    buf.clear();
    buf.extend(it.by_ref().take(len).map(|v| v.to_acc()));
}
