//! What a loss command prints: a readable summary (NumPy-style arrays, long ones shortened) or one JSON
//! document (`--json`), where non-finite numbers are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.

use std::fmt::Write as _;

use ndarray::{ArrayD, ArrayViewD, Axis};
use serde_json::{Map, Value, json};

use super::write::OutElem;

/// Above this many elements, the human output shows only the first and last 3 along each dimension.
const SUMMARIZE_ABOVE: usize = 1000;
const EDGE: usize = 3;

/// One named result of a command (the loss, the output, a gradient).
pub struct Named<T> {
    /// `loss`, `output`, `grad`, `grad_target`, `grad_q`.
    pub name: &'static str,
    /// The values.
    pub array: ArrayD<T>,
}

/// One input as the report lists it.
pub struct InputInfo {
    /// Its role: `input`, `target`, `weight`, `p`, `q`, …
    pub role: &'static str,
    /// The file (with `#name` for archives).
    pub file: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Stored dtype (`text` for CSV).
    pub dtype: String,
    /// Whether the file was memory-mapped.
    pub mapped: bool,
}

/// The full result of a command.
pub struct Report<T> {
    /// The function, as the library names it (`cross_entropy`).
    pub op: &'static str,
    /// The dtype the computation ran in.
    pub dtype: &'static str,
    /// Options as given or defaulted.
    pub options: Map<String, Value>,
    /// Inputs.
    pub inputs: Vec<InputInfo>,
    /// Results.
    pub results: Vec<Named<T>>,
}

/// A value as JSON: the shortest decimal of its own type (so `0.1f32` is `0.1`), or a string for NaN/inf.
pub fn json_number<T: OutElem>(v: T) -> Value {
    let f = v.to_f64();
    if f.is_nan() {
        Value::String("NaN".into())
    } else if f.is_infinite() {
        Value::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        // The shortest decimal that round-trips in T, read back as f64, prints as that same decimal.
        let short: f64 = v.to_string().parse().unwrap_or(f);
        json!(short)
    }
}

/// Nested lists, as `numpy.array(...)` reads them back.
pub fn json_array<T: OutElem>(a: &ArrayViewD<'_, T>) -> Value {
    if a.ndim() == 0 {
        return a.iter().next().map_or(Value::Null, |&v| json_number(v));
    }
    Value::Array(a.outer_iter().map(|sub| json_array(&sub)).collect())
}

fn fmt_value<T: OutElem>(v: T) -> String {
    let f = v.to_f64();
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        v.to_string()
    }
}

/// How many (nested) lists an array is as JSON: 1 for the outer one, plus one per sub-array at every
/// depth (saturating). Only an empty array can have more lists than elements.
pub fn list_count(shape: &[usize]) -> usize {
    let (mut total, mut at_depth) = (0usize, 1usize);
    for &d in shape {
        total = total.saturating_add(at_depth);
        at_depth = at_depth.saturating_mul(d);
    }
    total
}

/// NumPy-style text of an array, shortened above 1000 elements; `[]` for an empty array (of any shape:
/// the caller prints the shape).
pub fn text_array<T: OutElem>(a: &ArrayViewD<'_, T>) -> String {
    if a.is_empty() {
        return "[]".into();
    }
    let summarize = a.len() > SUMMARIZE_ABOVE;
    let mut width = 0;
    for v in a.iter().take(100_000) {
        width = width.max(fmt_value(*v).len());
    }
    let mut s = String::new();
    rec(a, summarize, width, 0, &mut s);
    s
}

fn rec<T: OutElem>(a: &ArrayViewD<'_, T>, summarize: bool, width: usize, depth: usize, s: &mut String) {
    if a.ndim() == 0 {
        if let Some(&v) = a.iter().next() {
            let _ = write!(s, "{:>width$}", fmt_value(v));
        }
        return;
    }
    let n = a.len_of(Axis(0));
    let pick: Vec<Option<usize>> = if summarize && n > 2 * EDGE {
        (0..EDGE).map(Some).chain([None]).chain((n - EDGE..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    s.push('[');
    for (k, i) in pick.iter().enumerate() {
        if k > 0 {
            if a.ndim() == 1 {
                s.push_str(", ");
            } else {
                s.push(',');
                for _ in 0..a.ndim() - 1 {
                    s.push('\n');
                }
                for _ in 0..=depth {
                    s.push(' ');
                }
            }
        }
        match i {
            Some(i) => rec(&a.index_axis(Axis(0), *i), summarize, width, depth + 1, s),
            None => s.push_str("..."),
        }
    }
    s.push(']');
}

/// Above this many nested lists, an (empty) result is not rendered as JSON.
const JSON_LISTS_MAX: usize = 1 << 20;

impl<T: OutElem> Report<T> {
    /// Refuses results whose JSON would be absurdly large for their size: empty arrays whose other
    /// dimensions are huge (an array `[2^28, 0, 2^28]` would be 2^28 nested empty lists).
    pub fn check_json_size(&self) -> Result<(), String> {
        for r in &self.results {
            let lists = list_count(r.array.shape());
            if lists > JSON_LISTS_MAX {
                return Err(format!(
                    "{} of shape {:?} would be {lists} nested JSON lists (at most {JSON_LISTS_MAX}): drop --json, \
                     or write it with --out FILE.npy",
                    r.name,
                    r.array.shape()
                ));
            }
        }
        Ok(())
    }

    /// The JSON document.
    pub fn to_json(&self, written: &[(&'static str, String)]) -> Value {
        let mut doc = Map::new();
        doc.insert("op".into(), json!(self.op));
        doc.insert("dtype".into(), json!(self.dtype));
        doc.insert("options".into(), Value::Object(self.options.clone()));
        let inputs: Map<String, Value> = self
            .inputs
            .iter()
            .map(|i| {
                (
                    i.role.to_string(),
                    json!({"file": i.file, "shape": i.shape, "dtype": i.dtype, "memory_mapped": i.mapped}),
                )
            })
            .collect();
        doc.insert("inputs".into(), Value::Object(inputs));
        for r in &self.results {
            doc.insert(format!("{}_shape", r.name), json!(r.array.shape()));
            doc.insert(r.name.to_string(), json_array(&r.array.view()));
        }
        if !written.is_empty() {
            let w: Map<String, Value> = written.iter().map(|(k, f)| (k.to_string(), json!(f))).collect();
            doc.insert("written".into(), Value::Object(w));
        }
        Value::Object(doc)
    }

    /// The readable summary.
    pub fn to_text(&self, written: &[(&'static str, String)]) -> String {
        let mut s = String::new();
        let opts: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| match v {
                Value::String(x) => format!("{k}={x}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let _ = writeln!(
            s,
            "{} [{}]{}{}",
            self.op,
            self.dtype,
            if opts.is_empty() { "" } else { "  " },
            opts.join(" ")
        );
        for i in &self.inputs {
            let _ = writeln!(s, "  {:<8} {}  {:?} {}", i.role, i.file, i.shape, i.dtype);
        }
        for r in &self.results {
            if let Some((_, f)) = written.iter().find(|(k, _)| *k == r.name) {
                let _ = writeln!(s, "{}: {:?} written to {f}", r.name, r.array.shape());
                continue;
            }
            if r.array.ndim() == 0 {
                let _ = writeln!(s, "{} = {}", r.name, text_array(&r.array.view()));
            } else {
                let _ = writeln!(s, "{} {:?}:", r.name, r.array.shape());
                let _ = writeln!(s, "{}", text_array(&r.array.view()));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{IxDyn, arr0, array};

    #[test]
    fn json_numbers_are_short_and_nonfinite_are_strings() {
        assert_eq!(json_number(0.1f32).to_string(), "0.1");
        assert_eq!(json_number(f64::NAN), json!("NaN"));
        assert_eq!(json_number(f32::NEG_INFINITY), json!("-Infinity"));
        let a = array![[1.0f64, 2.5], [f64::INFINITY, -0.0]].into_dyn();
        assert_eq!(json_array(&a.view()).to_string(), r#"[[1.0,2.5],["Infinity",-0.0]]"#);
        assert_eq!(json_array(&arr0(3.0f32).into_dyn().view()).to_string(), "3.0");
    }

    #[test]
    fn long_arrays_are_shortened() {
        let a = ArrayD::from_shape_fn(IxDyn(&[2000]), |i| i[0] as f64);
        let t = text_array(&a.view());
        assert!(t.starts_with("[   0,    1,    2, ..., 1997, 1998, 1999]"), "{t}");
        assert_eq!(text_array(&ArrayD::<f32>::zeros(IxDyn(&[1 << 40, 0])).view()), "[]");
        assert_eq!(list_count(&[1 << 28, 0, 1 << 28]), 1 + (1 << 28));
        assert_eq!(list_count(&[usize::MAX, 2, 0]), usize::MAX);
        let b = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        assert_eq!(text_array(&b.view()), "[[1, 2],\n [3, 4]]");
    }
}
