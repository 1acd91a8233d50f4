//! Numbers in text: CSV (comma-separated), or tab/space-separated when a line has no comma.
//!
//! Rules: blank lines and lines starting with `#` are skipped; a first line none of whose fields is a
//! number is a header and skipped; every other line must have the same number of fields; fields are
//! decimal numbers (`nan`, `inf`, `-inf` accepted, as NumPy writes them). The table is `(rows, columns)`,
//! read as a 1-D array when it has a single row or a single column (a list of class indices or one
//! distribution). An empty file is a 1-D array of length 0.

/// A parsed table.
#[derive(Debug, Clone, PartialEq)]
pub struct Csv {
    /// Shape: `[n]` or `[rows, cols]`.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f64>,
    /// The values as integers, when every field was written as an integer.
    pub ints: Option<Vec<i64>>,
}

fn fields(line: &str) -> Vec<&str> {
    if line.contains(',') {
        line.split(',').map(str::trim).collect()
    } else if line.contains(';') {
        line.split(';').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    }
}

fn number(s: &str) -> Option<f64> {
    // Rust's parser accepts "inf", "infinity", "nan" in any case, as NumPy's savetxt writes them.
    let t = s.strip_prefix('+').unwrap_or(s);
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Parses the text of a CSV file.
pub fn parse(bytes: &[u8]) -> Result<Csv, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("line {line} is not valid UTF-8 text (is this a binary file?)")
    })?;
    let mut values: Vec<f64> = Vec::new();
    let mut ints: Option<Vec<i64>> = Some(Vec::new());
    let mut cols: Option<usize> = None;
    let mut rows = 0usize;
    let mut first = true;
    for (lineno, line) in text.lines().enumerate() {
        let lineno = lineno + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f = fields(line);
        if first {
            first = false;
            if f.iter().all(|s| number(s).is_none()) {
                continue; // a header
            }
        }
        match cols {
            None => cols = Some(f.len()),
            Some(c) if c != f.len() => {
                return Err(format!(
                    "line {lineno} has {} fields, expected {c} as on the first data line",
                    f.len()
                ));
            }
            _ => {}
        }
        for (k, s) in f.iter().enumerate() {
            let v = number(s).ok_or_else(|| {
                if s.is_empty() {
                    format!("line {lineno}, field {}: empty field", k + 1)
                } else {
                    format!(
                        "line {lineno}, field {}: '{}' is not a number",
                        k + 1,
                        s.chars().take(40).collect::<String>()
                    )
                }
            })?;
            values.try_reserve(1).map_err(|_| "cannot allocate memory for the values".to_string())?;
            values.push(v);
            if let Some(iv) = ints.as_mut() {
                match s.strip_prefix('+').unwrap_or(s).parse::<i64>() {
                    Ok(i) => {
                        iv.try_reserve(1).map_err(|_| "cannot allocate memory for the values".to_string())?;
                        iv.push(i)
                    }
                    Err(_) => ints = None,
                }
            }
        }
        rows += 1;
    }
    let cols = cols.unwrap_or(0);
    let shape = if rows == 1 || cols == 1 || rows == 0 { vec![values.len()] } else { vec![rows, cols] };
    Ok(Csv { shape, values, ints })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_headers_and_vectors() {
        let c = parse(b"p,q,r\n0.25, 0.25,0.5\n1,2,3\n").unwrap();
        assert_eq!(c.shape, vec![2, 3]);
        assert_eq!(c.values, vec![0.25, 0.25, 0.5, 1.0, 2.0, 3.0]);
        assert!(c.ints.is_none());
        let c = parse(b"# labels\n3\n0\n\n-100\n").unwrap();
        assert_eq!(c.shape, vec![3]);
        assert_eq!(c.ints, Some(vec![3, 0, -100]));
        let c = parse(b"0.1 0.2\tnan\n").unwrap();
        assert_eq!(c.shape, vec![3]);
        assert!(c.values[2].is_nan());
        assert_eq!(parse(b"").unwrap().shape, vec![0]);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse(b"1,2\n3\n").unwrap_err(),
            "line 2 has 1 fields, expected 2 as on the first data line"
        );
        assert_eq!(parse(b"1,2\n3,x\n").unwrap_err(), "line 2, field 2: 'x' is not a number");
        assert_eq!(parse(b"1,,2\n").unwrap_err(), "line 1, field 2: empty field");
        assert!(parse(b"1\n\xff\n").unwrap_err().contains("line 2 is not valid UTF-8"));
    }
}
