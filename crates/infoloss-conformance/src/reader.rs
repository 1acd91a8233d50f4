//! The case reader: fixture files, cases, array records and options (schema in `testdata/README.md`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;

use infoloss::Element;
use infoloss::ndarray::{ArrayD, IxDyn};
use serde_json::Value;

use crate::json::{int, num, quote_numbers};

/// The directory holding the fixture files: `<workspace>/testdata`, or `$INFOLOSS_FIXTURE_DIR` when set (to
/// check that the runner catches deliberately corrupted copies of the fixtures).
pub fn testdata_dir() -> PathBuf {
    match std::env::var_os("INFOLOSS_FIXTURE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("testdata"),
    }
}

/// Reads and parses one fixture file as JSON (numbers quoted, see [`quote_numbers`]).
pub fn load(file: &str) -> Value {
    let path = testdata_dir().join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&quote_numbers(&text))
        .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

/// One fixture file: its header and its cases.
pub struct Fixture {
    /// The file name, e.g. `"kl_div.json"`.
    pub file: String,
    /// The header's `family`.
    pub family: String,
    /// `(rtol, atol)` of float32 cases.
    pub tol_f32: (f64, f64),
    /// `(rtol, atol)` of float64 cases.
    pub tol_f64: (f64, f64),
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

impl Fixture {
    /// Reads `testdata/<file>` and checks its header (schema version, count).
    pub fn read(file: &str) -> Fixture {
        let doc = load(file);
        assert_eq!(int(&doc["schema_version"]), 2, "{file}: schema_version");
        let tol = |dtype: &str| {
            let t = &doc["tolerances"][dtype];
            (num(&t["rtol"]), num(&t["atol"]))
        };
        let cases: Vec<Case> = doc["cases"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no cases array"))
            .iter()
            .map(|raw| Case { raw: raw.clone() })
            .collect();
        assert_eq!(cases.len() as i64, int(&doc["count"]), "{file}: count field");
        Fixture {
            file: file.to_string(),
            family: doc["family"].as_str().expect("family").to_string(),
            tol_f32: tol("float32"),
            tol_f64: tol("float64"),
            cases,
        }
    }
}

/// One case (fields as in `testdata/README.md`).
#[derive(Clone)]
pub struct Case {
    /// The case as parsed (numbers quoted).
    pub raw: Value,
}

impl Case {
    /// `name`.
    pub fn name(&self) -> &str {
        self.raw["name"].as_str().expect("name")
    }

    /// `function`.
    pub fn function(&self) -> &str {
        self.raw["function"].as_str().expect("function")
    }

    /// `dtype`: `"float32"` or `"float64"`.
    pub fn dtype(&self) -> &str {
        self.raw["dtype"].as_str().expect("dtype")
    }

    /// Whether the reference library rejects the input (`error`).
    pub fn is_error(&self) -> bool {
        self.raw["error"].as_bool().unwrap_or(false)
    }

    /// The reference library's error message (empty if none).
    pub fn message(&self) -> &str {
        self.raw["message"].as_str().unwrap_or("")
    }

    /// `inputs.<name>` as a float record, if present and not null.
    pub fn input(&self, name: &str) -> Option<Arr> {
        record(&self.raw["inputs"][name])
    }

    /// `inputs.<name>`, which the case must have.
    pub fn arg(&self, name: &str) -> Arr {
        self.input(name).unwrap_or_else(|| panic!("{}: no input {name}", self.name()))
    }

    /// `inputs.<name>` as an int64 array (class indices), if present.
    pub fn ints(&self, name: &str) -> Option<ArrayD<i64>> {
        let v = &self.raw["inputs"][name];
        if v.is_null() {
            return None;
        }
        let data: Vec<i64> = v["data"].as_array().expect("data").iter().map(int).collect();
        Some(ArrayD::from_shape_vec(IxDyn(&shape_of(v)), data).expect("shape and data agree"))
    }

    /// `options.<name>` (null when absent).
    pub fn opt(&self, name: &str) -> &Value {
        &self.raw["options"][name]
    }

    /// Whether `options.<name>` is present and not null.
    pub fn has_opt(&self, name: &str) -> bool {
        !self.opt(name).is_null()
    }

    /// A number option.
    pub fn opt_f64(&self, name: &str) -> f64 {
        num(self.opt(name))
    }

    /// A number option that may be null.
    pub fn opt_f64_or_none(&self, name: &str) -> Option<f64> {
        self.has_opt(name).then(|| self.opt_f64(name))
    }

    /// An integer option.
    pub fn opt_i64(&self, name: &str) -> i64 {
        int(self.opt(name))
    }

    /// A boolean option.
    pub fn opt_bool(&self, name: &str) -> bool {
        self.opt(name).as_bool().unwrap_or_else(|| panic!("{}: option {name} is not a boolean", self.name()))
    }

    /// A string option.
    pub fn opt_str(&self, name: &str) -> &str {
        self.opt(name).as_str().unwrap_or_else(|| panic!("{}: option {name} is not a string", self.name()))
    }

    /// An array option (`weight`, `pos_weight`), if not null.
    pub fn opt_arr(&self, name: &str) -> Option<Arr> {
        record(self.opt(name))
    }

    /// `grad_output`, if not null.
    pub fn grad_output(&self) -> Option<Arr> {
        record(&self.raw["grad_output"])
    }

    /// Whether `expected.<field>` is present.
    pub fn expects(&self, field: &str) -> bool {
        !self.raw["expected"][field].is_null()
    }

    /// `expected.<field>` with its float32 alternatives (`f32_reference.<field>`), if present.
    pub fn expected(&self, field: &str) -> Option<Arr> {
        record(&self.raw["expected"][field]).map(|a| a.with_f32_reference(&self.raw["f32_reference"][field]))
    }

    /// The further references of `field` (`also_expected`): (source, rtol, atol, values).
    pub fn also_expected(&self, field: &str) -> Vec<(String, f64, f64, Arr)> {
        let Some(list) = self.raw["also_expected"].as_array() else { return vec![] };
        list.iter()
            .filter_map(|a| {
                let values = record(&a["expected"][field])?;
                Some((
                    a["source"].as_str().unwrap_or("?").to_string(),
                    num(&a["rtol"]),
                    num(&a["atol"]),
                    values,
                ))
            })
            .collect()
    }

    /// `chunk_sizes` (the fused linear losses run once per chunk size, then with the automatic one).
    pub fn chunk_sizes(&self) -> Vec<usize> {
        self.raw["chunk_sizes"]
            .as_array()
            .map(|a| a.iter().map(|c| usize::try_from(int(c)).expect("chunk size")).collect())
            .unwrap_or_default()
    }
}

fn record(v: &Value) -> Option<Arr> {
    (!v.is_null()).then(|| Arr::parse(v))
}

/// An array record `{"shape": [...], "data": [...]}`, its data as `f64` (int64 records too).
#[derive(Debug, Clone)]
pub struct Arr {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f64>,
    /// float32 cases only (`f32_reference`): flat index → (exact, slack) for the elements whose float32 value is
    /// rounding-limited; they also pass when `|got − exact| ≤ atol + rtol·|exact| + slack`.
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

    /// An array computed here, as a record to compare against.
    pub fn of<T: Fx>(a: &ArrayD<T>) -> Arr {
        Arr { shape: a.shape().to_vec(), data: a.iter().map(|v| v.to_f64()).collect(), alt: HashMap::new() }
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
