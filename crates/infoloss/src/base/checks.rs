//! Checks of option values that several losses share.

use super::{Error, Result};

/// Checks a temperature: finite and > 0.
pub(crate) fn check_temperature(op: &'static str, t: f64) -> Result<f64> {
    if t.is_finite() && t > 0.0 {
        Ok(t)
    } else {
        Err(Error::invalid_option(op, "temperature", t, "must be a finite number > 0"))
    }
}

/// Validates a label smoothing exactly as PyTorch's `cross_entropy` does: a value above 1 is an error
/// (`label_smoothing must be between 0.0 and 1.0. Got: 1.5`); a negative value or NaN disables smoothing
/// (PyTorch only smooths when `label_smoothing > 0`), so it computes the ε = 0 loss.
pub(crate) fn label_smoothing(op: &'static str, eps: f64) -> Result<f64> {
    if eps > 1.0 {
        Err(Error::invalid_option(op, "label_smoothing", eps, "label_smoothing must be between 0.0 and 1.0"))
    } else if eps > 0.0 {
        Ok(eps)
    } else {
        Ok(0.0)
    }
}
