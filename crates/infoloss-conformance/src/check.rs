//! The one comparison of computed results against a case's expectations.

use infoloss::ndarray::{ArrayD, Dimension, IxDyn, indices};

use crate::reader::{Arr, Case, Fx};

/// `|got − expected| ≤ atol + rtol·|expected|`, NaN exactly where expected, infinities exactly equal.
pub fn close(got: f64, expected: f64, rtol: f64, atol: f64) -> bool {
    if expected.is_nan() {
        got.is_nan()
    } else if expected.is_infinite() {
        got == expected
    } else {
        got.is_finite() && (got - expected).abs() <= atol + rtol * expected.abs()
    }
}

/// How many mismatching elements of one array are printed (the count of all is always printed).
const MAX_ELEMENTS_SHOWN: usize = 8;

/// Compares one case's results (one case at a time; [`crate::run_file`] drives it) and collects the messages.
pub struct Checker {
    /// Relative tolerance of the current case (the file's, for the case's dtype).
    pub rtol: f64,
    /// Absolute tolerance of the current case.
    pub atol: f64,
    /// Element comparisons made so far.
    pub comparisons: usize,
    /// Failure messages of the current case.
    pub current: Vec<String>,
    /// float32 elements outside the tolerance of the expected (torch/SciPy float32) value that passed only by
    /// being within `tolerance + slack` of the exact value (`f32_reference`): (case, field, index, values).
    pub via_f32_reference: Vec<String>,
    case: Case,
}

impl Checker {
    pub(crate) fn new() -> Self {
        Checker {
            rtol: 0.0,
            atol: 0.0,
            comparisons: 0,
            current: vec![],
            via_f32_reference: vec![],
            case: Case { raw: serde_json::Value::Null },
        }
    }

    pub(crate) fn begin(&mut self, case: &Case, tol: (f64, f64)) {
        self.case = case.clone();
        (self.rtol, self.atol) = tol;
        self.current.clear();
    }

    /// Records a failure of the current case.
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.current.push(msg.into());
    }

    /// Compares a result with `expected.<field>` (and with every `also_expected` value of the field, at its own
    /// tolerance). A field the case does not expect is a failure.
    pub fn field<T: Fx>(&mut self, field: &str, got: &ArrayD<T>) {
        self.field_as(field, field, got);
    }

    /// [`Checker::field`] for a result reported as `what` (e.g. `with_grad.loss` against `output`).
    pub fn field_as<T: Fx>(&mut self, what: &str, field: &str, got: &ArrayD<T>) {
        self.field_values(what, field, &Arr::of(got));
    }

    /// [`Checker::field_as`] for values already widened to `f64`.
    pub fn field_values(&mut self, what: &str, field: &str, got: &Arr) {
        let Some(expected) = self.case.expected(field) else {
            self.fail(format!("{what}: computed, but the case has no expected.{field}"));
            return;
        };
        self.compare(what, got, &expected, self.rtol, self.atol);
        for (source, rtol, atol, values) in self.case.also_expected(field) {
            self.compare(&format!("{what} (vs {source})"), got, &values, rtol, atol);
        }
    }

    /// Compares two results computed here (e.g. `_with_grad` against forward + backward) at the case's
    /// tolerance.
    pub fn agree<T: Fx>(&mut self, what: &str, got: &ArrayD<T>, reference: &ArrayD<T>) {
        self.compare(what, &Arr::of(got), &Arr::of(reference), self.rtol, self.atol);
    }

    /// Requires two results computed here to be the same bits (NaN matching NaN).
    pub fn identical<T: Fx>(&mut self, what: &str, got: &ArrayD<T>, reference: &ArrayD<T>) {
        self.compare(what, &Arr::of(got), &Arr::of(reference), 0.0, 0.0);
    }

    /// The shape, then every element, of `got` against `expected` at (`rtol`, `atol`).
    pub fn compare(&mut self, what: &str, got: &Arr, expected: &Arr, rtol: f64, atol: f64) {
        self.comparisons += 1;
        if got.shape != expected.shape {
            self.fail(format!("{what}: shape {:?}, expected {:?}", got.shape, expected.shape));
            return;
        }
        let mut bad = 0usize;
        for (i, (&g, &e)) in got.data.iter().zip(&expected.data).enumerate() {
            self.comparisons += 1;
            if close(g, e, rtol, atol) {
                continue;
            }
            if let Some(&(x, slack)) = expected.alt.get(&i) {
                if close(g, x, rtol, atol + slack) {
                    self.via_f32_reference.push(format!(
                        "{} {what} at {:?}: got {g:e}, float32 reference {e:e}, exact {x:e} (|got − exact| = \
                         {:.1e}, allowed {:.1e})",
                        self.case.name(),
                        unravel(i, &expected.shape),
                        (g - x).abs(),
                        atol + rtol * x.abs() + slack
                    ));
                    continue;
                }
            }
            if bad < MAX_ELEMENTS_SHOWN {
                let rel = if e != 0.0 && e.is_finite() { (g - e).abs() / e.abs() } else { f64::NAN };
                let alt = expected
                    .alt
                    .get(&i)
                    .map(|(x, slack)| format!(" or the exact {x:e} ± {slack:.1e}"))
                    .unwrap_or_default();
                self.fail(format!(
                    "{what} at {:?}: got {g:e}, expected {e:e}{alt} (rel err {rel:.2e})",
                    unravel(i, &expected.shape)
                ));
            }
            bad += 1;
        }
        if bad > MAX_ELEMENTS_SHOWN {
            self.fail(format!(
                "{what}: {} more mismatching elements ({bad} of {})",
                bad - MAX_ELEMENTS_SHOWN,
                got.data.len()
            ));
        }
    }

    /// The value of an `Ok`, or records the unexpected error.
    pub fn result<R, E: std::fmt::Display>(&mut self, what: &str, r: Result<R, E>) -> Option<R> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(format!("{what}: unexpected error: {e}"));
                None
            }
        }
    }

    /// Requires an error (the reference library rejects the input).
    pub fn expect_err<R, E>(&mut self, what: &str, r: Result<R, E>, message: &str) {
        self.comparisons += 1;
        if r.is_ok() {
            self.fail(format!("{what}: returned Ok, but the reference raises: {message}"));
        }
    }
}

/// The multi-index of the `flat`-th element of `shape`, in row-major order (for messages).
fn unravel(flat: usize, shape: &[usize]) -> Vec<usize> {
    indices(IxDyn(shape)).into_iter().nth(flat).map(|i| i.slice().to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::unravel;

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
        assert_eq!(unravel(7, &[2, 2, 2]), vec![1, 1, 1]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }
}
