//! Exact numbers out of the fixture JSON.
//!
//! The files hold every float as the shortest decimal that round-trips. serde_json's default float parser is
//! only "best effort" (it can be one ulp off without its `float_roundtrip` feature, which a dependency of a
//! test must not switch on for the whole build), so before parsing, every bare number token is turned into a
//! JSON string and converted here with `str::parse::<f64>`, which is correctly rounded. Non-finite values are
//! the strings `"nan"`, `"inf"`, `"-inf"`.

use serde_json::Value;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers are read with correct rounding, strings are left alone.
    #[test]
    fn number_quoting_is_exact() {
        let text =
            r#"{"a": [0.10490011715303971, -1.2654214710460525e-3, 5], "s": "x -1.5 \"2\"", "n": "nan"}"#;
        let v: Value = serde_json::from_str(&quote_numbers(text)).expect("valid");
        assert_eq!(num(&v["a"][0]).to_bits(), 0.10490011715303971f64.to_bits());
        assert_eq!(num(&v["a"][1]).to_bits(), (-1.2654214710460525e-3f64).to_bits());
        assert_eq!(int(&v["a"][2]), 5);
        assert_eq!(v["s"].as_str(), Some("x -1.5 \"2\""));
        assert!(num(&v["n"]).is_nan());
    }
}
