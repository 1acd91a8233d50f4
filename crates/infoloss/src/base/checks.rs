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
