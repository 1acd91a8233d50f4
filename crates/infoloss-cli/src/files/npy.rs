//! The `.npy` format (NumPy's `numpy.lib.format`, versions 1.0, 2.0 and 3.0): reading and writing.
//!
//! A file is the magic `\x93NUMPY`, a version, the header length (2 bytes in 1.0, 4 after), a header that
//! is a Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with
//! spaces and ended by a newline, and then the elements. Every byte of the header is checked: any input,
//! however malformed, gives an error message and never a panic or an unbounded allocation.

use std::borrow::Cow;
use std::io::Write;

use super::tensor::{StoredDType, Tensor, checked_size};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Whether `bytes` start like an `.npy` file.
pub fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// An `.npy` file's header: the array's layout, and where its data lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Element type.
    pub dtype: StoredDType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Column-major (Fortran) element order.
    pub fortran: bool,
    /// Big-endian elements.
    pub big_endian: bool,
    /// The offset of the data in the file.
    pub start: usize,
    /// The size of the data in bytes.
    pub nbytes: usize,
}

impl Head {
    /// The tensor of this layout over `data` (exactly [`Head::nbytes`] bytes).
    pub fn tensor(self, data: Cow<'_, [u8]>) -> Tensor<'_> {
        Tensor {
            dtype: self.dtype,
            shape: self.shape,
            fortran: self.fortran,
            big_endian: self.big_endian,
            data,
        }
    }
}

/// Parses the header of an `.npy` file from its first bytes (`bytes` may end anywhere after the header).
pub fn head(bytes: &[u8]) -> Result<Head, String> {
    if !is_npy(bytes) {
        return Err("not an .npy file (the magic string \\x93NUMPY is missing)".into());
    }
    let (major, minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Err("truncated .npy file: no version".into()),
    };
    let (hlen, start) = match major {
        1 => match bytes.get(8..10) {
            Some(b) => (u16::from_le_bytes([b[0], b[1]]) as usize, 10),
            None => return Err("truncated .npy file: no header length".into()),
        },
        2 | 3 => match bytes.get(8..12) {
            Some(b) => (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12),
            None => return Err("truncated .npy file: no header length".into()),
        },
        _ => return Err(format!("unsupported .npy format version {major}.{minor} (known: 1.0, 2.0, 3.0)")),
    };
    let end = start + hlen;
    let header = bytes.get(start..end).ok_or_else(|| {
        format!("truncated .npy file: the header is {hlen} bytes but the file has {}", bytes.len())
    })?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text".to_string())?;
    if major < 3 && !header.is_ascii() {
        return Err("the .npy header is not ASCII (only version 3.0 allows UTF-8)".into());
    }
    let h = parse_header(header)?;
    let (dtype, big_endian) = parse_descr(&h.descr)?;
    let (_, nbytes) = checked_size(&h.shape, dtype.size()).map_err(|e| format!("the .npy header's {e}"))?;
    Ok(Head { dtype, shape: h.shape, fortran: h.fortran, big_endian, start: end, nbytes })
}

/// Parses an `.npy` file held in `bytes` (the elements are borrowed, not copied).
pub fn parse(bytes: &[u8]) -> Result<Tensor<'_>, String> {
    let h = head(bytes)?;
    let (dtype, nbytes) = (h.dtype, h.nbytes);
    let data = &bytes[h.start..];
    if data.len() < nbytes {
        return Err(format!(
            "truncated .npy file: shape {:?} of {} needs {nbytes} bytes of data but {} follow the header",
            h.shape,
            dtype,
            data.len()
        ));
    }
    if data.len() > nbytes {
        return Err(format!(
            "{} unexpected bytes after the data of shape {:?} {} (corrupt file?)",
            data.len() - nbytes,
            h.shape,
            dtype
        ));
    }
    Ok(h.tensor(Cow::Borrowed(data)))
}

struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// A tiny reader for the Python literal subset NumPy writes.
struct Lit<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lit<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("malformed .npy header: expected {what}")) }
    }
    fn string(&mut self) -> Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err("malformed .npy header: expected a quoted string".into()),
        };
        self.i += 1;
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if c == q {
                let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(v);
            }
            if c == b'\\' {
                return Err("malformed .npy header: escapes in strings are not supported".into());
            }
            self.i += 1;
        }
        Err("malformed .npy header: unterminated string".into())
    }
    fn word(&mut self) -> &str {
        self.ws();
        let start = self.i;
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }
}

fn parse_header(h: &str) -> Result<Header, String> {
    let mut p = Lit { s: h.as_bytes(), i: 0 };
    p.expect(b'{', "'{' at the start of the header")?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':', "':' after a key")?;
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(
                        "structured (record) dtypes are not supported: store a plain numeric array".into()
                    );
                }
                descr = Some(p.string()?);
            }
            "fortran_order" => {
                fortran = Some(match p.word() {
                    "True" => true,
                    "False" => false,
                    w => {
                        return Err(format!(
                            "malformed .npy header: fortran_order is '{w}', not True or False"
                        ));
                    }
                });
            }
            "shape" => {
                p.expect(b'(', "'(' to open the shape")?;
                let mut dims = Vec::new();
                loop {
                    if p.eat(b')') {
                        break;
                    }
                    let w = p.word();
                    let w = w.strip_suffix('L').unwrap_or(w);
                    let d: usize = w.parse().map_err(|_| {
                        format!("malformed .npy header: shape entry '{w}' is not a non-negative integer")
                    })?;
                    if dims.len() >= 64 {
                        return Err("malformed .npy header: more than 64 dimensions".into());
                    }
                    dims.push(d);
                    if !p.eat(b',') {
                        p.expect(b')', "')' to close the shape")?;
                        break;
                    }
                }
                shape = Some(dims);
            }
            other => return Err(format!("malformed .npy header: unknown key '{other}'")),
        }
        if !p.eat(b',') {
            p.expect(b'}', "'}' at the end of the header")?;
            break;
        }
    }
    if p.peek().is_some() {
        return Err("malformed .npy header: text after the closing '}'".into());
    }
    Ok(Header {
        descr: descr.ok_or("malformed .npy header: no 'descr'")?,
        fortran: fortran.ok_or("malformed .npy header: no 'fortran_order'")?,
        shape: shape.ok_or("malformed .npy header: no 'shape'")?,
    })
}

/// `'<f4'` → (F32, little-endian).
fn parse_descr(d: &str) -> Result<(StoredDType, bool), String> {
    let b = d.as_bytes();
    let (order, rest) = match b.first() {
        Some(&c @ (b'<' | b'>' | b'|' | b'=')) => (c, &d[1..]),
        _ => (b'|', d),
    };
    use StoredDType::*;
    let dtype = match rest {
        "f2" | "e" => F16,
        "f4" | "f" => F32,
        "f8" | "d" => F64,
        "i1" | "b" => I8,
        "i2" | "h" => I16,
        "i4" | "i" => I32,
        "i8" | "q" | "l" => I64,
        "u1" | "B" => U8,
        "u2" | "H" => U16,
        "u4" | "I" => U32,
        "u8" | "Q" | "L" => U64,
        "b1" | "?" => Bool,
        "V2" => {
            return Err(format!(
                "unsupported dtype '{d}' (a 2-byte void type, e.g. ml_dtypes' bfloat16, which .npy cannot \
                 name): save it as float32, or as bfloat16 in .safetensors"
            ));
        }
        r if r.starts_with('c') => return Err(format!("unsupported dtype '{d}': complex numbers")),
        r if r.starts_with('f') => return Err(format!("unsupported dtype '{d}': only float16/32/64")),
        _ => {
            return Err(format!(
                "unsupported dtype '{d}' (expected a float or integer type such as '<f4' or '<i8')"
            ));
        }
    };
    let big = match order {
        b'>' => true,
        b'<' => false,
        _ => cfg!(target_endian = "big"),
    };
    Ok((dtype, big && dtype.size() > 1))
}

/// The descr NumPy writes for a little-endian element type.
fn descr_of(dtype: StoredDType) -> &'static str {
    use StoredDType::*;
    match dtype {
        F16 => "<f2",
        // .npy has no bfloat16: writers widen it to float32 first.
        BF16 | F32 => "<f4",
        F64 => "<f8",
        I8 => "|i1",
        I16 => "<i2",
        I32 => "<i4",
        I64 => "<i8",
        U8 => "|u1",
        U16 => "<u2",
        U32 => "<u4",
        U64 => "<u8",
        Bool => "|b1",
    }
}

/// Writes the header of a C-order little-endian array (version 1.0, or 2.0 for very long headers),
/// padded so the data starts at a multiple of 64 bytes, as NumPy does.
pub fn write_header(w: &mut impl Write, dtype: StoredDType, shape: &[usize]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut h = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape_s}, }}", descr_of(dtype));
    let v1 = h.len() + 1 + 10 <= u16::MAX as usize;
    let pre = if v1 { 10 } else { 12 };
    let total = (pre + h.len() + 1).div_ceil(64) * 64;
    while pre + h.len() + 1 < total {
        h.push(' ');
    }
    h.push('\n');
    w.write_all(MAGIC)?;
    if v1 {
        w.write_all(&[1, 0])?;
        w.write_all(&(h.len() as u16).to_le_bytes())?;
    } else {
        w.write_all(&[2, 0])?;
        w.write_all(&(h.len() as u32).to_le_bytes())?;
    }
    w.write_all(h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_what_numpy_writes() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f = npy("<f4", false, "(2, 3)", &data);
        let t = parse(&f).unwrap();
        assert_eq!(
            (t.dtype, t.shape.clone(), t.fortran, t.big_endian),
            (StoredDType::F32, vec![2, 3], false, false)
        );
        assert_eq!(t.clone().into_floats::<f32>().unwrap()[[1, 2]], 6.0);
        let f = npy(">i8", true, "(3L,)", &[0u8; 24]);
        let t = parse(&f).unwrap();
        assert_eq!(
            (t.dtype, t.shape.clone(), t.fortran, t.big_endian),
            (StoredDType::I64, vec![3], true, true)
        );
        let f = npy("<f8", false, "()", &7.5f64.to_le_bytes());
        let t = parse(&f).unwrap();
        assert_eq!(t.shape, Vec::<usize>::new());
    }

    #[test]
    fn round_trips_through_the_writer() {
        let mut f = Vec::new();
        write_header(&mut f, StoredDType::F64, &[2]).unwrap();
        assert_eq!(f.len() % 64, 0);
        f.extend([0.5f64, -1.0].iter().flat_map(|v| v.to_le_bytes()));
        let t = parse(&f).unwrap();
        assert_eq!(t.clone().into_floats::<f64>().unwrap().as_slice().unwrap(), &[0.5, -1.0]);
    }

    #[test]
    fn malformed_files_give_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello".to_vec(), "magic"),
            (MAGIC.to_vec(), "no version"),
            (npy("<f4", false, "(2,)", &[0; 4]), "truncated"),
            (npy("<f4", false, "(1,)", &[0; 8]), "unexpected bytes"),
            (npy("<c8", false, "(1,)", &[0; 8]), "complex"),
            (npy("<V2", false, "(1,)", &[0; 2]), "bfloat16"),
            (npy("<f4", false, "(-1,)", &[]), "non-negative"),
            (npy("<f4", false, "(18446744073709551615, 2)", &[]), "more elements than can be addressed"),
            (npy("<f4", false, "(4611686018427387904, 0, 4611686018427387904)", &[]), "too large"),
        ];
        for (bytes, want) in cases {
            let e = parse(&bytes).unwrap_err();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
    }
}
