//! Reductions, loss outputs and upstream gradients, shared by every loss.

use crate::base::shape::ensure_shapes;
use std::str::FromStr;

use ndarray::{ArrayD, ArrayViewD};

use super::{Error, Result};

/// How per-element losses are combined, as PyTorch's `reduction=` argument.
///
/// | variant | PyTorch | result |
/// |---|---|---|
/// | `None` | `'none'` | per-element losses, shape as documented per loss |
/// | `Mean` | `'mean'` | sum ÷ number of elements (class-index losses: ÷ summed target weight) |
/// | `Sum` | `'sum'` | sum |
/// | `BatchMean` | `'batchmean'` | sum ÷ size of dimension 0; only `kl_div` accepts it |
///
/// The mean of an empty set is NaN and its sum is 0, as in PyTorch.
///
/// ```
/// use infoloss::Reduction;
/// assert_eq!("batchmean".parse::<Reduction>().unwrap(), Reduction::BatchMean);
/// assert_eq!(Reduction::default(), Reduction::Mean);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// `'none'`: no reduction.
    None,
    /// `'mean'` (PyTorch's default).
    #[default]
    Mean,
    /// `'sum'`.
    Sum,
    /// `'batchmean'`: sum divided by the size of dimension 0 (`kl_div` only).
    BatchMean,
}

impl Reduction {
    /// The PyTorch spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::BatchMean => "batchmean",
        }
    }

    /// Rejects `BatchMean` for losses other than `kl_div`, with PyTorch's message
    /// (`batchmean is not a valid value for reduction`).
    pub fn reject_batchmean(self, op: &'static str) -> Result<Self> {
        if self == Reduction::BatchMean {
            return Err(Error::invalid_option(
                op,
                "reduction",
                "batchmean",
                "batchmean is not a valid value for reduction (only kl_div accepts it)",
            ));
        }
        Ok(self)
    }
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reduction {
    type Err = Error;
    /// Parses `none`, `mean`, `sum`, `batchmean`, and the deprecated alias `elementwise_mean`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" | "elementwise_mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "batchmean" => Ok(Reduction::BatchMean),
            other => Err(Error::invalid_option(
                "reduction",
                "reduction",
                other,
                format!("{other} is not a valid value for reduction (expected none, mean, sum or batchmean)"),
            )),
        }
    }
}

/// The value of a loss: a scalar for `mean`/`sum`/`batchmean`, an array for `none`.
///
/// ```
/// use infoloss::Loss;
/// let l = Loss::Scalar(0.5f32);
/// assert_eq!(l.scalar(), Some(0.5));
/// assert_eq!(l.into_array().shape(), &[] as &[usize]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Loss<T> {
    /// A reduced loss.
    Scalar(T),
    /// Unreduced per-element (or per-row) losses.
    Elementwise(ArrayD<T>),
}

impl<T: Clone> Loss<T> {
    /// The scalar, if the loss was reduced.
    pub fn scalar(&self) -> Option<T> {
        match self {
            Loss::Scalar(v) => Some(v.clone()),
            Loss::Elementwise(_) => None,
        }
    }

    /// The per-element array, if the loss was not reduced.
    pub fn elementwise(&self) -> Option<&ArrayD<T>> {
        match self {
            Loss::Scalar(_) => None,
            Loss::Elementwise(a) => Some(a),
        }
    }

    /// As an array: a 0-dimensional one for a scalar.
    pub fn into_array(self) -> ArrayD<T> {
        match self {
            Loss::Scalar(v) => ArrayD::from_elem(ndarray::IxDyn(&[]), v),
            Loss::Elementwise(a) => a,
        }
    }
}

/// The gradient of the final objective with respect to a loss's output (PyTorch's `grad_output`).
///
/// For reduced losses use `Scalar` (usually 1). For `reduction = none` use `Array` with the output's
/// shape; `Scalar(g)` there means every element's upstream gradient is `g`.
#[derive(Debug, Clone)]
pub enum GradOutput<'a, T> {
    /// One upstream gradient for every output element.
    Scalar(T),
    /// One upstream gradient per output element.
    Array(ArrayViewD<'a, T>),
}

impl<T: super::Element> GradOutput<'_, T> {
    /// `Scalar(1)`: what `loss.backward()` uses.
    pub fn one() -> Self {
        GradOutput::Scalar(T::from_acc(num_traits::One::one()))
    }

    /// Checks the upstream gradient against the output shape and returns the per-element getter input:
    /// `Ok(None)` for a scalar (use [`GradOutput::scalar_value`]), `Ok(Some(view))` for an array of exactly
    /// `output_shape`.
    pub fn check(&self, op: &'static str, output_shape: &[usize]) -> Result<Option<&ArrayViewD<'_, T>>> {
        match self {
            GradOutput::Scalar(_) => Ok(None),
            GradOutput::Array(a) => {
                ensure_shapes(
                    a.shape() == output_shape,
                    op,
                    ("grad_output", a.shape()),
                    ("output", output_shape),
                    "must be equal",
                )?;
                Ok(Some(a))
            }
        }
    }

    /// The scalar value: `Scalar(g)` → g; a 0-d or one-element array → its element; otherwise `None`.
    pub fn scalar_value(&self) -> Option<T> {
        match self {
            GradOutput::Scalar(g) => Some(*g),
            GradOutput::Array(a) if a.len() == 1 => a.iter().next().copied(),
            GradOutput::Array(_) => None,
        }
    }

    /// For a reduced loss: the scalar upstream gradient, or an error naming the shape given.
    pub fn expect_scalar(&self, op: &'static str) -> Result<T> {
        match self {
            GradOutput::Scalar(g) => Ok(*g),
            GradOutput::Array(a) => match a.iter().next() {
                Some(g) if a.ndim() == 0 => Ok(*g),
                _ => Err(Error::shape_mismatch(
                    op,
                    "grad_output",
                    a.shape(),
                    "output",
                    &[],
                    "must be equal (the loss is reduced to a scalar)",
                )),
            },
        }
    }
}
