//! Fixture plumbing shared by `tests/fixtures.rs`: exact JSON number parsing, arrays, tolerant comparison.
//!
//! The fixture files (written by `scripts/gen_fixtures.py`, schema in `testdata/README.md`) hold every float as
//! the shortest decimal that round-trips. serde_json's default float parser is only "best effort" (it can be one
//! ulp off without its `float_roundtrip` feature), so before parsing, every bare number token is turned into a
//! JSON string and converted here with `str::parse::<f64>`, which is correctly rounded. Non-finite values are the
//! strings `"nan"`, `"inf"`, `"-inf"`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;

use infoloss::Element;
use infoloss::ndarray::{ArrayD, IxDyn};
use serde_json::Value;

/// The directory holding the fixture files: `<workspace>/testdata`, or `$INFOLOSS_FIXTURE_DIR` when set (used to
/// check that the runner catches deliberately corrupted copies of the fixtures).
pub fn testdata_dir() -> PathBuf {
    match std::env::var_os("INFOLOSS_FIXTURE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("testdata"),
    }
}

/// Wraps every number token outside JSON strings in quotes, so no float goes through serde_json's parser.
pub fn quote_numbers(text: &str) -> String {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + b.len() / 4);
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
            out.push(c);
            i += 1;
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                i += 1;
            }
            out.push(b'"');
            out.extend_from_slice(&b[start..i]);
            out.push(b'"');
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).expect("the input was UTF-8 and only ASCII was inserted")
}

/// Reads and parses one fixture file.
pub fn load(file: &str) -> Value {
    let path = testdata_dir().join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&quote_numbers(&text))
        .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

/// A (quoted) number: decimal text, or `"nan"`, `"inf"`, `"-inf"`.
pub fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            t => t.parse().unwrap_or_else(|e| panic!("bad number {t:?}: {e}")),
        },
        other => panic!("expected a number, got {other}"),
    }
}

/// A (quoted) integer.
pub fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("bad integer {s:?}: {e}")),
        other => panic!("expected an integer, got {other}"),
    }
}

/// A string field.
pub fn string<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

/// An array record `{"shape": [...], "data": [...]}` with float data.
#[derive(Debug, Clone)]
pub struct Arr {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f64>,
    /// float32 cases only (`f32_reference` in the fixture): flat index → (exact, slack) for the elements whose
    /// float32 value is rounding-limited; they also pass when `|got − exact| ≤ atol + rtol·|exact| + slack`.
    pub alt: HashMap<usize, (f64, f64)>,
}

impl Arr {
    /// Parses an array record.
    pub fn parse(v: &Value) -> Arr {
        let shape = shape_of(v);
        let data: Vec<f64> = v["data"].as_array().expect("data").iter().map(num).collect();
        assert_eq!(data.len(), shape.iter().product::<usize>(), "data length vs shape {shape:?}");
        Arr { shape, data, alt: HashMap::new() }
    }

    /// Attaches the float32 reference rows `[[index, exact, slack], ...]` (if any).
    pub fn with_f32_reference(mut self, rows: &Value) -> Arr {
        if let Some(list) = rows.as_array() {
            for row in list {
                let i = usize::try_from(int(&row[0])).expect("index");
                assert!(i < self.data.len(), "f32_reference index {i} out of range");
                let (exact, slack) = (num(&row[1]), num(&row[2]));
                assert!(
                    exact.is_finite() && slack.is_finite() && slack >= 0.0,
                    "bad f32_reference row {row}"
                );
                self.alt.insert(i, (exact, slack));
            }
        }
        self
    }

    /// As an ndarray of element type `T` (f32 values are exact: the file holds the f32 value's decimal).
    pub fn to_nd<T: Fx>(&self) -> ArrayD<T> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data.iter().map(|&v| T::from_f64(v)).collect())
            .expect("shape and data agree")
    }

    /// The single value of a 0-d (or one-element) array.
    pub fn scalar(&self) -> f64 {
        assert_eq!(self.data.len(), 1, "expected one element, shape {:?}", self.shape);
        self.data[0]
    }
}

/// Parses the int64 array record (class-index targets).
pub fn int_array(v: &Value) -> ArrayD<i64> {
    let shape = shape_of(v);
    let data: Vec<i64> = v["data"].as_array().expect("data").iter().map(int).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape and data agree")
}

fn shape_of(v: &Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("array record without shape: {v}"))
        .iter()
        .map(|d| usize::try_from(int(d)).expect("non-negative dimension"))
        .collect()
}

/// The element types the fixtures cover, with exact conversions to and from `f64`.
pub trait Fx: Element + Debug {
    /// Rounds to nearest (exact for values written from this type).
    fn from_f64(v: f64) -> Self;
    /// Widens exactly.
    fn to_f64(self) -> f64;
}

impl Fx for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Fx for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

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

/// Collects the comparisons and failures of one fixture file.
pub struct Checker {
    /// Relative tolerance of the current case.
    pub rtol: f64,
    /// Absolute tolerance of the current case.
    pub atol: f64,
    /// Name of the current case.
    pub case: String,
    /// Element comparisons made so far.
    pub comparisons: usize,
    /// Failure messages of the current case.
    pub current: Vec<String>,
    /// Failing cases: (name, messages).
    pub failed: Vec<(String, Vec<String>)>,
    /// Cases run.
    pub cases: usize,
    /// float32 elements outside the tolerance of the expected (torch/SciPy float32) value that passed only by
    /// being within `tolerance + slack` of the exact value (`f32_reference`).
    pub via_f32_reference: usize,
    /// Those elements (case, array, index, values), for the summary.
    pub via_f32_reference_cases: Vec<String>,
}

/// How many mismatching elements of one array are printed (the count of all is always printed).
const MAX_ELEMENTS_SHOWN: usize = 8;

impl Checker {
    /// A checker with no cases yet.
    pub fn new() -> Self {
        Checker {
            rtol: 0.0,
            atol: 0.0,
            case: String::new(),
            comparisons: 0,
            current: vec![],
            failed: vec![],
            cases: 0,
            via_f32_reference: 0,
            via_f32_reference_cases: vec![],
        }
    }

    /// Starts a case with the tolerances of its dtype.
    pub fn begin(&mut self, name: &str, dtype: &str) {
        self.case = name.to_string();
        self.cases += 1;
        (self.rtol, self.atol) = match dtype {
            "float32" => (1e-6, 1e-7),
            "float64" => (1e-12, 1e-12),
            d => panic!("{name}: unknown dtype {d}"),
        };
    }

    /// Ends the current case, recording it as failing if anything mismatched.
    pub fn end(&mut self) {
        if !self.current.is_empty() {
            self.failed.push((self.case.clone(), std::mem::take(&mut self.current)));
        }
    }

    /// Records a failure of the current case.
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.current.push(msg.into());
    }

    /// Compares an array with the expected record: shape, then every element.
    pub fn array<T: Fx>(&mut self, what: &str, got: &ArrayD<T>, expected: &Arr) {
        self.comparisons += 1;
        if got.shape() != expected.shape.as_slice() {
            self.fail(format!("{what}: shape {:?}, expected {:?}", got.shape(), expected.shape));
            return;
        }
        let mut bad = 0usize;
        for (i, (g, &e)) in got.iter().zip(&expected.data).enumerate() {
            self.comparisons += 1;
            let g = g.to_f64();
            let direct = close(g, e, self.rtol, self.atol);
            let via_reference = !direct
                && expected.alt.get(&i).is_some_and(|&(x, slack)| close(g, x, self.rtol, self.atol + slack));
            if via_reference {
                self.via_f32_reference += 1;
                if let Some(&(x, slack)) = expected.alt.get(&i) {
                    let idx = unravel(i, &expected.shape);
                    self.via_f32_reference_cases.push(format!(
                        "{} {what} at {idx:?}: got {g:e}, float32 reference {e:e}, exact {x:e} (|got − exact| = \
                         {:.1e}, allowed {:.1e})",
                        self.case,
                        (g - x).abs(),
                        self.atol + self.rtol * x.abs() + slack
                    ));
                }
            }
            let ok = direct || via_reference;
            if !ok {
                if bad < MAX_ELEMENTS_SHOWN {
                    let idx = unravel(i, &expected.shape);
                    let rel = if e != 0.0 && e.is_finite() { (g - e).abs() / e.abs() } else { f64::NAN };
                    let alt = expected
                        .alt
                        .get(&i)
                        .map(|(x, slack)| format!(" or the exact {x:e} ± {slack:.1e}"))
                        .unwrap_or_default();
                    self.fail(format!(
                        "{what} at {idx:?}: got {g:e}, expected {e:e}{alt} (rel err {rel:.2e})"
                    ));
                }
                bad += 1;
            }
        }
        if bad > MAX_ELEMENTS_SHOWN {
            self.fail(format!(
                "{what}: {} more mismatching elements ({bad} of {})",
                bad - MAX_ELEMENTS_SHOWN,
                got.len()
            ));
        }
    }

    /// Compares two arrays computed here (e.g. `_with_grad` against forward + backward).
    pub fn agree<T: Fx>(&mut self, what: &str, got: &ArrayD<T>, reference: &ArrayD<T>) {
        let expected = Arr {
            shape: reference.shape().to_vec(),
            data: reference.iter().map(|v| v.to_f64()).collect(),
            alt: HashMap::new(),
        };
        self.array(what, got, &expected);
    }

    /// Records an unexpected error or an unexpected success.
    pub fn result<R, E: std::fmt::Display>(&mut self, what: &str, r: Result<R, E>) -> Option<R> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(format!("{what}: unexpected error: {e}"));
                None
            }
        }
    }

    /// Requires an error (torch rejects the input).
    pub fn expect_err<R, E>(&mut self, what: &str, r: Result<R, E>, torch_message: &str) {
        self.comparisons += 1;
        if r.is_ok() {
            self.fail(format!("{what}: returned Ok, but torch raises: {torch_message}"));
        }
    }

    /// Prints the summary and panics if any case failed or nothing ran.
    pub fn finish(self, file: &str) {
        assert!(self.cases > 0, "{file}: no cases ran");
        if self.failed.is_empty() {
            println!(
                "{file}: {} cases, {} comparisons, all passed ({} float32 elements passed via f32_reference)",
                self.cases, self.comparisons, self.via_f32_reference
            );
            for c in &self.via_f32_reference_cases {
                println!("    float32 rounding-limited (f32_reference): {c}");
            }
            return;
        }
        let mut report = String::new();
        for (name, msgs) in &self.failed {
            report.push_str(&format!("FAIL {name}\n"));
            for m in msgs {
                report.push_str(&format!("    {m}\n"));
            }
        }
        println!("{report}");
        for c in &self.via_f32_reference_cases {
            println!("    float32 rounding-limited (f32_reference): {c}");
        }
        panic!(
            "{file}: {} of {} cases failed ({} comparisons); the failing cases are listed above",
            self.failed.len(),
            self.cases,
            self.comparisons
        );
    }
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}
