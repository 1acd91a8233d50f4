//! The one error type of the crate.
//!
//! Every message names what is wrong: both shapes on a mismatch, the index and value of an
//! out-of-range target, the option and its value when an option is invalid.

use std::fmt;

/// Convenience alias used by every fallible function in the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Messages are meant to be shown to users as they are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two arrays whose shapes must agree do not.
    #[error("{op}: {left_name} shape {left} and {right_name} shape {right} {detail}")]
    ShapeMismatch {
        /// The function that rejected the input, e.g. `"cross_entropy"`.
        op: &'static str,
        /// What the first array is (`"input"`).
        left_name: &'static str,
        /// Shape of the first array.
        left: Shape,
        /// What the second array is (`"target"`).
        right_name: &'static str,
        /// Shape of the second array.
        right: Shape,
        /// How they must relate, e.g. `"must be equal"`.
        detail: String,
    },
    /// An array has a number of dimensions the function does not accept.
    #[error("{op}: {name} has shape {shape} ({ndim} dimensions); expected {expected}")]
    BadRank {
        /// The function that rejected the input.
        op: &'static str,
        /// Which argument.
        name: &'static str,
        /// Its shape.
        shape: Shape,
        /// Its number of dimensions.
        ndim: usize,
        /// What would have been accepted, e.g. `"1 or 2 dimensions"`.
        expected: String,
    },
    /// A class-index target lies outside `[0, classes)` and is not the `ignore_index`.
    #[error("{op}: target {value} at {index} is out of range for {classes} classes")]
    TargetOutOfRange {
        /// The function that rejected the input.
        op: &'static str,
        /// Multi-index of the offending target element.
        index: Shape,
        /// The target value.
        value: i64,
        /// Number of classes.
        classes: usize,
    },
    /// An option has a value the function does not accept.
    #[error("{op}: invalid {option} = {value}: {reason}")]
    InvalidOption {
        /// The function that rejected the option.
        op: &'static str,
        /// The option's name as in PyTorch/SciPy, e.g. `"label_smoothing"`.
        option: &'static str,
        /// The value given, formatted.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// An element of an input has a value the function does not accept (e.g. a BCE input outside `[0, 1]`).
    #[error("{op}: {name} value {value} at {index} {reason}")]
    InvalidValue {
        /// The function that rejected the input.
        op: &'static str,
        /// Which argument.
        name: &'static str,
        /// Multi-index of the offending element.
        index: Shape,
        /// The value, as f64.
        value: f64,
        /// Why it is rejected, e.g. `"is outside [0, 1]"`.
        reason: String,
    },
    /// A multi-process loss could not complete its communication: a peer left or timed out, or the
    /// ranks' inputs disagree (row counts, vocabulary ranges, targets).
    #[error("{op}: rank {rank}: {detail}")]
    Collective {
        /// The function that failed.
        op: &'static str,
        /// The rank that reports the failure.
        rank: usize,
        /// What failed, naming the other rank(s) involved.
        detail: String,
    },
    /// An array would be too large to index or allocate.
    #[error("{op}: {what} is too large ({detail})")]
    TooLarge {
        /// The function that rejected the input.
        op: &'static str,
        /// What would be too large.
        what: &'static str,
        /// Details (shape, byte count).
        detail: String,
    },
}

/// A shape or multi-index, printed as `[2, 3, 4]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape(pub Vec<usize>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl From<&[usize]> for Shape {
    fn from(s: &[usize]) -> Self {
        Shape(s.to_vec())
    }
}

impl From<Vec<usize>> for Shape {
    fn from(s: Vec<usize>) -> Self {
        Shape(s)
    }
}

impl Error {
    /// Builds a [`Error::ShapeMismatch`].
    #[cold]
    #[inline(never)]
    pub fn shape_mismatch(
        op: &'static str,
        left_name: &'static str,
        left: &[usize],
        right_name: &'static str,
        right: &[usize],
        detail: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            left_name,
            left: left.into(),
            right_name,
            right: right.into(),
            detail: detail.into(),
        }
    }

    /// Builds a [`Error::BadRank`].
    #[cold]
    #[inline(never)]
    pub fn bad_rank(
        op: &'static str,
        name: &'static str,
        shape: &[usize],
        expected: impl Into<String>,
    ) -> Self {
        Error::BadRank { op, name, shape: shape.into(), ndim: shape.len(), expected: expected.into() }
    }

    /// Builds a [`Error::Collective`].
    #[cold]
    #[inline(never)]
    pub fn collective(op: &'static str, rank: usize, detail: impl Into<String>) -> Self {
        Error::Collective { op, rank, detail: detail.into() }
    }
    /// Builds a [`Error::TargetOutOfRange`].
    #[cold]
    #[inline(never)]
    pub fn target_out_of_range(op: &'static str, index: &[usize], value: i64, classes: usize) -> Self {
        Error::TargetOutOfRange { op, index: index.into(), value, classes }
    }

    /// Builds a [`Error::InvalidOption`].
    #[cold]
    #[inline(never)]
    pub fn invalid_option(
        op: &'static str,
        option: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidOption { op, option, value: value.to_string(), reason: reason.into() }
    }

    /// Builds a [`Error::InvalidValue`].
    #[cold]
    #[inline(never)]
    pub fn invalid_value(
        op: &'static str,
        name: &'static str,
        index: &[usize],
        value: f64,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidValue { op, name, index: index.into(), value, reason: reason.into() }
    }

    /// Builds a [`Error::TooLarge`].
    #[cold]
    #[inline(never)]
    pub fn too_large(op: &'static str, what: &'static str, detail: impl Into<String>) -> Self {
        Error::TooLarge { op, what, detail: detail.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_is_wrong() {
        let e = Error::target_out_of_range("nll_loss", &[3], 12, 10);
        assert_eq!(e.to_string(), "nll_loss: target 12 at [3] is out of range for 10 classes");
        let e = Error::shape_mismatch("kl_div", "input", &[2, 3], "target", &[2, 4], "must be equal");
        assert_eq!(e.to_string(), "kl_div: input shape [2, 3] and target shape [2, 4] must be equal");
        let e = Error::invalid_option("cross_entropy", "label_smoothing", 1.5, "must be between 0.0 and 1.0");
        assert_eq!(
            e.to_string(),
            "cross_entropy: invalid label_smoothing = 1.5: must be between 0.0 and 1.0"
        );
    }
}
