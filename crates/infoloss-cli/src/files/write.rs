//! Output files, written atomically: each goes to a temporary file in the same directory, and only when
//! every output of the command has been written completely are they renamed into place. A failure at any
//! point leaves no partial file behind (the temporary files are removed).

use std::fmt::Display;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::ArrayViewD;
use tempfile::NamedTempFile;

use super::npy;
use super::tensor::{FromStored, StoredDType};

/// Outputs written to temporary files, waiting to be renamed into place.
#[derive(Default)]
pub struct Pending {
    files: Vec<(NamedTempFile, PathBuf)>,
}

fn temp_in(path: &Path) -> Result<NamedTempFile, String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    tempfile::Builder::new()
        .prefix(&format!(".{base}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("{}: cannot create the file: {e}", path.display()))
}

impl Pending {
    /// Writes `bytes` to a temporary file beside `path`.
    pub fn add(
        &mut self,
        path: &Path,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), String> {
        let mut tmp = temp_in(path)?;
        {
            let mut w = BufWriter::new(tmp.as_file_mut());
            write(&mut w)
                .and_then(|_| w.flush())
                .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        }
        tmp.as_file().sync_all().map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        self.files.push((tmp, path.to_path_buf()));
        Ok(())
    }

    /// Renames every temporary file into place.
    pub fn commit(self) -> Result<(), String> {
        for (tmp, path) in self.files {
            tmp.persist(&path).map_err(|e| {
                format!("{}: cannot move the finished file into place: {}", path.display(), e.error)
            })?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
#[allow(dead_code)]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut p = Pending::default();
    p.add(path, |w| w.write_all(bytes))?;
    p.commit()
}

/// An element type that can be written: its `.npy` dtype (bfloat16 is widened to float32, which .npy
/// can name) and its shortest decimal form.
pub trait OutElem: FromStored + Display {}
impl<T: FromStored + Display> OutElem for T {}

/// The output format chosen by the extension of `path`.
pub fn check_out_path(path: &Path) -> Result<(), String> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("npy" | "csv") => Ok(()),
        _ => Err(format!("{}: unknown output format: use a .npy or .csv file name", path.display())),
    }
}

/// At most this many lines of an empty 2-D CSV output (`[n, 0]` is `n` empty lines).
const CSV_EMPTY_LINES_MAX: usize = 1 << 20;

/// Writes `a` as `.npy` (C order, little-endian) or `.csv` (up to 2-D), by the extension of `path`.
pub fn add_array<T: OutElem>(p: &mut Pending, path: &Path, a: ArrayViewD<'_, T>) -> Result<(), String> {
    check_out_path(path)?;
    let csv = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if csv {
        if a.ndim() > 2 {
            return Err(format!(
                "{}: a {}-D array (shape {:?}) cannot be written as CSV: use a .npy file",
                path.display(),
                a.ndim(),
                a.shape()
            ));
        }
        if a.is_empty() && a.ndim() == 2 && a.shape()[0] > CSV_EMPTY_LINES_MAX {
            return Err(format!(
                "{}: an empty array of shape {:?} would be {} empty CSV lines: use a .npy file",
                path.display(),
                a.shape(),
                a.shape()[0]
            ));
        }
        return p.add(path, |w| write_csv(w, &a));
    }
    p.add(path, |w| write_npy(w, &a))
}

fn write_npy<T: OutElem>(w: &mut dyn Write, a: &ArrayViewD<'_, T>) -> std::io::Result<()> {
    let mut w = w;
    match T::STORED {
        StoredDType::BF16 => {
            npy::write_header(&mut w, StoredDType::F32, a.shape())?;
            for v in a.iter() {
                w.write_all(&(v.to_f64() as f32).to_le_bytes())?;
            }
        }
        dt => {
            npy::write_header(&mut w, dt, a.shape())?;
            match a.as_slice() {
                Some(s) if cfg!(target_endian = "little") => w.write_all(bytemuck::cast_slice(s))?,
                _ => {
                    for v in a.iter() {
                        let b = bytemuck::bytes_of(v);
                        let mut b = b.to_vec();
                        if cfg!(target_endian = "big") {
                            b.reverse();
                        }
                        w.write_all(&b)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn write_csv<T: OutElem>(w: &mut dyn Write, a: &ArrayViewD<'_, T>) -> std::io::Result<()> {
    match a.ndim() {
        0 | 1 => {
            for v in a.iter() {
                writeln!(w, "{v}")?;
            }
        }
        _ => {
            for row in a.outer_iter() {
                let mut first = true;
                for v in row.iter() {
                    if !first {
                        w.write_all(b",")?;
                    }
                    first = false;
                    write!(w, "{v}")?;
                }
                w.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}
