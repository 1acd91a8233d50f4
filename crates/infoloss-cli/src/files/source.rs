//! Opening an input file: format detection, memory mapping, choosing an array inside an archive.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::csv::{self, Csv};
use super::tensor::{StoredDType, Tensor, checked_size};
use super::{npy, npz, st};

/// Files at least this large are memory-mapped instead of read.
const MMAP_MIN: u64 = 1 << 16;

/// The bytes of a file: memory-mapped (large regular files) or read into memory.
pub enum Buffer {
    /// A read-only map of the whole file.
    Map(memmap2::Mmap),
    /// The file's bytes (small files, pipes, decompressed archive members).
    Heap(Vec<u8>),
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Map(m) => m,
            Buffer::Heap(v) => v,
        }
    }
}

fn io_problem(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file".into(),
        PermissionDenied => "permission denied".into(),
        IsADirectory => "is a directory, not a file".into(),
        _ => format!("cannot read: {e}"),
    }
}

impl Buffer {
    /// Opens `path`: memory-maps a large regular file, reads anything else. Errors are the problem alone
    /// (the caller adds the file name).
    pub fn open(path: &Path) -> Result<Buffer, String> {
        let mut file = File::open(path).map_err(|e| io_problem(&e))?;
        let meta = file.metadata().map_err(|e| io_problem(&e))?;
        if meta.is_dir() {
            return Err("is a directory, not a file".into());
        }
        if meta.is_file() && meta.len() >= MMAP_MIN {
            // SAFETY: the map is read-only and private to this process. What `Mmap::map` cannot rule out
            // is another process truncating or rewriting the file while we read it (the reads would then
            // see the new bytes, or fault past a truncated end) — the condition every memory-mapping reader
            // (NumPy's `mmap_mode` included) accepts. We never create references that outlive the map, and
            // all parsing of the bytes is bounds-checked.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot memory-map: {e}"))?;
            return Ok(Buffer::Map(map));
        }
        let mut v = Vec::new();
        if meta.is_file() {
            v.try_reserve_exact(meta.len() as usize)
                .map_err(|_| format!("cannot allocate {} bytes to read it", meta.len()))?;
        }
        file.read_to_end(&mut v).map_err(|e| io_problem(&e))?;
        Ok(Buffer::Heap(v))
    }
}

/// The format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.npy`.
    Npy,
    /// `.npz`.
    Npz,
    /// `.safetensors`.
    Safetensors,
    /// `.csv`, `.tsv`, `.txt`.
    Csv,
}

impl Format {
    fn of(path: &Path, bytes: &[u8]) -> Result<Format, String> {
        let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
        Ok(match ext.as_deref() {
            Some("npy") => Format::Npy,
            Some("npz") => Format::Npz,
            Some("safetensors") => Format::Safetensors,
            Some("csv" | "tsv" | "txt") => Format::Csv,
            _ if npy::is_npy(bytes) => Format::Npy,
            _ if npz::is_zip(bytes) => Format::Npz,
            _ => {
                return Err("unknown format: expected a .npy, .npz, .safetensors or .csv file".into());
            }
        })
    }
}

/// A file argument: the path and, after `#`, the name of an array inside an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The path.
    pub path: PathBuf,
    /// The array's name (`--key`/`--tensor`/`#NAME`).
    pub name: Option<String>,
}

impl Spec {
    /// Splits `FILE#NAME` (unless a file of that whole name exists).
    pub fn parse(arg: &str) -> Spec {
        if !Path::new(arg).exists() {
            if let Some((p, n)) = arg.rsplit_once('#') {
                if !p.is_empty() && !n.is_empty() {
                    return Spec { path: PathBuf::from(p), name: Some(n.to_string()) };
                }
            }
        }
        Spec { path: PathBuf::from(arg), name: None }
    }

    /// The path's extension decides the format without opening the file.
    pub fn format_hint(&self) -> Option<Format> {
        let ext = self.path.extension().and_then(|e| e.to_str())?.to_ascii_lowercase();
        match ext.as_str() {
            "npz" => Some(Format::Npz),
            "safetensors" => Some(Format::Safetensors),
            "npy" => Some(Format::Npy),
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            _ => None,
        }
    }
}

enum Content {
    /// An `.npy` file at these bytes of the buffer: the whole file, or a stored `.npz` member (read in place).
    Npy(Range<usize>),
    /// A deflated `.npz` member: inflated whole when first asked for whole, or a block at a time by
    /// [`Input::blocks`].
    Deflated { member: npz::Member, head: npy::Head, whole: OnceLock<Vec<u8>> },
    /// A `.safetensors` tensor of this name.
    Safetensors(String),
    /// Parsed text, with its values also as little-endian bytes.
    Csv(Csv),
}

/// An opened input: its bytes and where the array lies in them.
pub struct Input {
    /// How the input is named in messages (`path` or `path#name`).
    pub label: String,
    path: PathBuf,
    buf: Buffer,
    content: Content,
}

/// What the caller needs from an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Floating-point values.
    Floats,
    /// Class indices.
    Indices,
}

impl Input {
    /// Opens and checks an input. Errors are one line naming the file.
    pub fn open(spec: &Spec) -> Result<Input, String> {
        let shown = spec.path.display().to_string();
        let label = match &spec.name {
            Some(n) => format!("{shown}#{n}"),
            None => shown.clone(),
        };
        let err = |m: String| format!("{label}: {m}");
        let buf = Buffer::open(&spec.path).map_err(|m| format!("{shown}: {m}"))?;
        let format = Format::of(&spec.path, &buf).map_err(|m| format!("{shown}: {m}"))?;
        let (buf, content, label) = match format {
            Format::Npy => {
                if spec.name.is_some() {
                    return Err(format!(
                        "{shown}: a .npy file holds one array; a name (#NAME, --key, --tensor) applies to .npz and .safetensors files"
                    ));
                }
                npy::parse(&buf).map_err(err)?;
                let all = 0..buf.len();
                (buf, Content::Npy(all), label)
            }
            Format::Npz => {
                let member =
                    npz::find_member(&buf, spec.name.as_deref()).map_err(|m| format!("{shown}: {m}"))?;
                let label = format!("{shown}#{}", member.key);
                let content = if member.deflated {
                    // the header from the stream's first bytes; the data is inflated when it is read
                    let mut first = vec![0u8; member.size.min(1 << 20) as usize];
                    npz::Inflate::new(&buf, &member).read(&mut first).map_err(|m| format!("{shown}: {m}"))?;
                    let head = npy::head(&first).map_err(|m| format!("{label}: {m}"))?;
                    if (head.start + head.nbytes) as u64 != member.size {
                        return Err(format!(
                            "{label}: the .npy header's shape {:?} of {} needs {} bytes of data but the member holds {}",
                            head.shape,
                            head.dtype,
                            head.nbytes,
                            member.size.saturating_sub(head.start as u64)
                        ));
                    }
                    Content::Deflated { member, head, whole: OnceLock::new() }
                } else {
                    let (_, npy_bytes) =
                        npz::read_member(&buf, Some(&member.key)).map_err(|m| format!("{shown}: {m}"))?;
                    npy::parse(&npy_bytes).map_err(|m| format!("{label}: {m}"))?;
                    Content::Npy(member.at)
                };
                (buf, content, label)
            }
            Format::Safetensors => {
                let (name, _) = st::parse(&buf, spec.name.as_deref()).map_err(|m| format!("{shown}: {m}"))?;
                let label = format!("{shown}#{name}");
                (buf, Content::Safetensors(name), label)
            }
            Format::Csv => {
                if spec.name.is_some() {
                    return Err(format!(
                        "{shown}: a CSV file holds one array; a name applies to .npz and .safetensors files"
                    ));
                }
                let c = csv::parse(&buf).map_err(err)?;
                (Buffer::Heap(Vec::new()), Content::Csv(c), label)
            }
        };
        Ok(Input { label, path: spec.path.clone(), buf, content })
    }

    /// Whether the input carries its own element type (CSV text does not).
    pub fn typed(&self) -> bool {
        !matches!(self.content, Content::Csv(_))
    }

    /// The stored tensor. CSV values are float64 (or int64 for class indices when every field is an integer).
    pub fn tensor(&self, want: Want) -> Result<Tensor<'_>, String> {
        let t = match &self.content {
            Content::Npy(at) => npy::parse(&self.buf[at.clone()]),
            Content::Deflated { member, whole, .. } => {
                if whole.get().is_none() {
                    let (_, all) = npz::read_member(&self.buf, Some(&member.key))
                        .map_err(|m| format!("{}: {m}", self.label))?;
                    let _ = whole.set(all.into_owned());
                }
                npy::parse(whole.get().map_or(&[], |w| w.as_slice()))
            }
            Content::Safetensors(name) => st::parse(&self.buf, Some(name)).map(|(_, t)| t),
            Content::Csv(c) => match want {
                Want::Floats => Ok(Tensor {
                    dtype: StoredDType::F64,
                    shape: c.shape.clone(),
                    fortran: false,
                    big_endian: false,
                    data: Cow::Borrowed(bytemuck::cast_slice(&c.values)),
                }),
                Want::Indices => match &c.ints {
                    Some(i) => Ok(Tensor {
                        dtype: StoredDType::I64,
                        shape: c.shape.clone(),
                        fortran: false,
                        big_endian: false,
                        data: Cow::Borrowed(bytemuck::cast_slice(i)),
                    }),
                    None => {
                        let bad = c.values.iter().find(|v| v.fract() != 0.0 || !v.is_finite()).copied();
                        Err(match bad {
                            Some(v) => format!("class indices must be integers, found {v}"),
                            None => "class indices must be written as integers (e.g. 3, not 3.0)".to_string(),
                        })
                    }
                },
            },
        };
        let t = t.map_err(|m| format!("{}: {m}", self.label))?;
        let _ = checked_size(&t.shape, t.dtype.size()).map_err(|m| format!("{}: {m}", self.label))?;
        Ok(t)
    }

    /// The stored array's layout, without reading its data (a deflated `.npz` member is not inflated).
    pub fn head(&self, want: Want) -> Result<npy::Head, String> {
        if let Content::Deflated { head, .. } = &self.content {
            return Ok(head.clone());
        }
        let t = self.tensor(want)?;
        let nbytes = t.data.len();
        Ok(npy::Head {
            dtype: t.dtype,
            shape: t.shape,
            fortran: t.fortran,
            big_endian: t.big_endian,
            start: 0,
            nbytes,
        })
    }

    /// The stored array's bytes a block at a time, in order: in place, or inflated a block at a time for a
    /// deflated `.npz` member (never whole).
    pub fn blocks(&self, want: Want) -> Result<Blocks<'_>, String> {
        Ok(match &self.content {
            Content::Deflated { member, head, .. } => {
                let msg = |e: std::io::Error| format!("{}: {}", self.label, io_problem(&e));
                let mut file = File::open(&self.path).map_err(msg)?;
                file.seek(std::io::SeekFrom::Start(member.at.start as u64)).map_err(msg)?;
                let packed = file.take(member.at.len() as u64);
                let stream = npz::Inflate::from_reader(Box::new(std::io::BufReader::new(packed)), member);
                Blocks::Inflate { stream, start: head.start as u64, label: &self.label, buf: Vec::new() }
            }
            _ => Blocks::InPlace(self.tensor(want)?.data),
        })
    }

    /// The shape and stored dtype, for reports.
    pub fn describe(&self, want: Want) -> (Vec<usize>, String) {
        match self.head(want) {
            Ok(t) => {
                let d = if self.typed() { t.dtype.name().to_string() } else { "text".to_string() };
                (t.shape, d)
            }
            Err(_) => (vec![], "?".into()),
        }
    }

    /// Whether the file was memory-mapped.
    pub fn mapped(&self) -> bool {
        matches!(self.buf, Buffer::Map(_))
    }
}

/// An array's bytes read a block at a time ([`Input::blocks`]).
pub enum Blocks<'a> {
    /// All of them, in memory or mapped.
    InPlace(Cow<'a, [u8]>),
    /// A deflated `.npz` member's, inflated in order into `buf`.
    Inflate {
        /// The member's stream.
        stream: npz::Inflate<'a>,
        /// Where the array's data starts in the member.
        start: u64,
        /// The input's name for messages.
        label: &'a str,
        /// The block last read.
        buf: Vec<u8>,
    },
}

impl Blocks<'_> {
    /// The array's bytes `range`; a deflated member's ranges must come in increasing order (a gap is skipped).
    pub fn get(&mut self, range: Range<usize>) -> Result<&[u8], String> {
        match self {
            Blocks::InPlace(all) => {
                let n = all.len();
                all.get(range.clone()).ok_or_else(|| format!("bytes {range:?} of an array of {n}"))
            }
            Blocks::Inflate { stream, start, label, buf } => {
                let (from, to) = (*start + range.start as u64, *start + range.end as u64);
                if from < stream.at || to < from {
                    return Err(format!("{label}: bytes {range:?} are behind the stream"));
                }
                let msg = |m: String| format!("{label}: {m}");
                stream.skip(from - stream.at).map_err(msg)?;
                buf.resize(range.len(), 0);
                stream.read(buf).map_err(msg)?;
                Ok(buf)
            }
        }
    }
}
