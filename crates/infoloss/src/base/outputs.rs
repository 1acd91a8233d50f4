//! What a loss computation produces: which results are wanted, the results, and packing a loss.

use ndarray::{ArrayD, IxDyn};

use super::array::array_from_vec;
use super::{Element, Error, Loss, Reduction, Result};

/// Which results a call computes (also what the losses' reference implementations compute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    /// The loss.
    pub(crate) loss: bool,
    /// The gradient with respect to the input.
    pub(crate) grad_input: bool,
    /// The gradient with respect to the target.
    pub(crate) grad_target: bool,
}

impl Want {
    /// Nothing (for `Want { loss: true, ..Want::NOTHING }`).
    pub(crate) const NOTHING: Want = Want { loss: false, grad_input: false, grad_target: false };
    /// The loss alone (`f`).
    pub(crate) const LOSS: Want = Want { loss: true, ..Want::NOTHING };
    /// The input gradient alone (`f_backward`).
    pub(crate) const GRAD_INPUT: Want = Want { grad_input: true, ..Want::NOTHING };
    /// The target gradient alone (`f_backward_target`).
    pub(crate) const GRAD_TARGET: Want = Want { grad_target: true, ..Want::NOTHING };
    /// The loss and the input gradient (the `_with_grad` and `_in_place` variants).
    pub(crate) const LOSS_AND_INPUT_GRAD: Want = Want { loss: true, grad_input: true, grad_target: false };
}

/// What a loss computation returns.
pub(crate) struct Outputs<T> {
    /// The loss, when wanted.
    pub(crate) loss: Option<Loss<T>>,
    /// The input gradient, when wanted.
    pub(crate) grad_input: Option<ArrayD<T>>,
    /// The target gradient, when wanted.
    pub(crate) grad_target: Option<ArrayD<T>>,
}

impl<T> Outputs<T> {
    /// The loss, which was wanted.
    pub(crate) fn into_loss(self, op: &'static str) -> Result<Loss<T>> {
        self.loss.ok_or_else(|| internal(op))
    }

    /// The input gradient, which was wanted.
    pub(crate) fn into_grad_input(self, op: &'static str) -> Result<ArrayD<T>> {
        self.grad_input.ok_or_else(|| internal(op))
    }

    /// The target gradient, which was wanted.
    pub(crate) fn into_grad_target(self, op: &'static str) -> Result<ArrayD<T>> {
        self.grad_target.ok_or_else(|| internal(op))
    }

    /// The loss and the input gradient, which were wanted.
    pub(crate) fn into_loss_and_grad(self, op: &'static str) -> Result<(Loss<T>, ArrayD<T>)> {
        match (self.loss, self.grad_input) {
            (Some(l), Some(g)) => Ok((l, g)),
            _ => Err(internal(op)),
        }
    }
}

/// The error for a result that was requested but not produced (a bug, never user input).
#[cold]
pub(crate) fn internal(op: &'static str) -> Error {
    Error::too_large(op, "output", "internal error: a requested result was not produced")
}

/// `data` as an array of `shape`.
pub(crate) fn to_array<T>(op: &'static str, data: Vec<T>, shape: &[usize]) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| internal(op))
}

/// The mean PyTorch's class-index losses use: `sum / denom`, NaN for an empty input.
#[inline]
pub(crate) fn mean_of(sum: f64, denom: f64, rows: usize) -> f64 {
    if rows == 0 { f64::NAN } else { sum / denom }
}

/// Packs per-row losses (for `none`) or a reduced value into a [`Loss`].
pub(crate) fn pack_loss<T: Element>(
    op: &'static str,
    reduction: Reduction,
    out_shape: &[usize],
    per_row: Vec<T::Acc>,
    reduced: T::Acc,
) -> Result<Loss<T>> {
    if reduction == Reduction::None {
        let v = per_row.into_iter().map(T::from_acc).collect();
        Ok(Loss::Elementwise(array_from_vec(op, out_shape, v)?))
    } else {
        Ok(Loss::Scalar(T::from_acc(reduced)))
    }
}

/// A class-row loss's results: the loss, when wanted (`(per_row, reduced)`, packed by [`pack_loss`]), and
/// the input gradient (row-major, of `in_shape`), when computed.
pub(crate) fn class_results<T: Element>(
    op: &'static str,
    reduction: Reduction,
    out_shape: &[usize],
    loss: Option<(Vec<T::Acc>, T::Acc)>,
    grad: Option<Vec<T>>,
    in_shape: &[usize],
) -> Result<LossAndGrad<T>> {
    let loss = loss.map(|(per_row, reduced)| pack_loss::<T>(op, reduction, out_shape, per_row, reduced));
    let grad = grad.map(|g| array_from_vec(op, in_shape, g));
    Ok((loss.transpose()?, grad.transpose()?))
}

/// What a one-pass class-index loss computes: the loss and/or the input gradient.
pub(crate) type LossAndGrad<T> = (Option<Loss<T>>, Option<ArrayD<T>>);
