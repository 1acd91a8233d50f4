//! Just enough of the `.npy` format for the command-line adapter: writing a case's arrays (little-endian
//! `<f4`, `<f8`, `<i8`, C order) and reading the files the `infoloss` binary writes back.

use std::path::Path;

use crate::reader::Arr;

/// Writes `a` as a `.npy` file of `descr` (`"<f4"`, `"<f8"` or `"<i8"`).
pub fn write(path: &Path, a: &Arr, descr: &str) {
    let shape = match a.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", a.shape[0]),
        _ => format!("({})", a.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).expect("short header").to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for &v in &a.data {
        match descr {
            "<f4" => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
            "<f8" => bytes.extend_from_slice(&v.to_le_bytes()),
            "<i8" => bytes.extend_from_slice(&(v as i64).to_le_bytes()),
            d => panic!("unsupported descr {d}"),
        }
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Reads a C-order `.npy` file of floats (`<f2` is not needed: the adapter asks for f32 or f64) or int64.
pub fn read(path: &Path) -> Arr {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x93NUMPY"), "{}: not a .npy file", path.display());
    let (len, start) = if bytes[6] == 1 {
        (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).expect("ASCII header");
    let field = |key: &str| {
        let i = header.find(key).unwrap_or_else(|| panic!("{header}: no {key}")) + key.len();
        header[i..].trim_start_matches([':', ' ', '\'']).to_string()
    };
    assert!(field("'fortran_order'").starts_with("False"), "{header}: Fortran order");
    let descr: String = field("'descr'").chars().take(3).collect();
    let shape_text = field("'shape'");
    let shape: Vec<usize> = shape_text[1..shape_text.find(')').expect("shape tuple")]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dimension"))
        .collect();
    let body = &bytes[start + len..];
    let data: Vec<f64> = match descr.as_str() {
        "<f4" => {
            body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect()
        }
        "<f8" => body.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        "<i8" => {
            body.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect()
        }
        d => panic!("{}: unsupported dtype {d}", path.display()),
    };
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{}: data vs shape", path.display());
    Arr { shape, data, alt: Default::default() }
}
