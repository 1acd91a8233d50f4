//! The `.npz` format: a zip archive of `.npy` files (`np.savez`, stored, or `np.savez_compressed`,
//! deflated). One member is chosen by its key (the member name without `.npy`); a stored member is read in
//! place, a deflated one inflated (whole, or a block at a time with [`Inflate`]).

use std::borrow::Cow;
use std::io::{Cursor, Read};
use std::ops::Range;

use flate2::Crc;
use flate2::read::DeflateDecoder;
use zip::CompressionMethod;

use super::tensor::choose_member;

/// Whether `bytes` start like a zip archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Where a chosen member lies in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's key (its name without `.npy`).
    pub key: String,
    /// Its bytes in the archive: the `.npy` file itself when stored, its deflate stream when deflated.
    pub at: Range<usize>,
    /// Deflated (else stored).
    pub deflated: bool,
    /// The size of its `.npy` file.
    pub size: u64,
    /// The CRC-32 of its `.npy` file.
    pub crc32: u32,
}

/// Chooses a member (by `key`, or the only one when `key` is `None`) and says where it lies in `bytes`.
pub fn find_member(bytes: &[u8], key: Option<&str>) -> Result<Member, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a valid .npz (zip) archive: {e}"))?;
    let mut names: Vec<String> = archive.file_names().map(|s| s.to_string()).collect();
    names.sort();
    let key_of = |n: &str| n.strip_suffix(".npy").unwrap_or(n).to_string();
    let keys: Vec<String> = names.iter().map(|n| key_of(n)).collect();
    let name = names[choose_member(&keys, key, ("array", "archive", "--key"))?].clone();
    let key = key_of(&name);
    let at = archive.index_for_name(&name).ok_or_else(|| format!("cannot read array '{key}'"))?;
    let f = archive.by_index_raw(at).map_err(|e| format!("cannot read array '{key}': {e}"))?;
    if f.encrypted() {
        return Err(format!("cannot read array '{key}': it is encrypted"));
    }
    let deflated = match f.compression() {
        CompressionMethod::Stored => false,
        CompressionMethod::Deflated => true,
        m => return Err(format!("cannot read array '{key}': unsupported compression {m}")),
    };
    let (size, packed) = (f.size(), f.compressed_size());
    // A member cannot inflate to more than ~1032 times its compressed size (deflate's limit) and a stored
    // member is as large as it is in the file: a larger declared size is a corrupt or hostile archive.
    let limit = if deflated { packed.saturating_mul(1032).saturating_add(1024) } else { packed };
    if size > limit {
        return Err(format!(
            "array '{key}' declares {size} bytes but only {packed} compressed bytes are stored (corrupt archive)"
        ));
    }
    let start = usize::try_from(f.data_start()).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(packed).unwrap_or(usize::MAX));
    if end > bytes.len() {
        return Err(format!(
            "array '{key}' is truncated ({packed} bytes from offset {start} in a {} byte file)",
            bytes.len()
        ));
    }
    Ok(Member { key, at: start..end, deflated, size, crc32: f.crc32() })
}

/// Chooses a member as [`find_member`] and returns its key and the bytes of its `.npy` file (borrowed when
/// stored, inflated whole when deflated).
pub fn read_member<'a>(bytes: &'a [u8], key: Option<&str>) -> Result<(String, Cow<'a, [u8]>), String> {
    let m = find_member(bytes, key)?;
    if !m.deflated {
        let data = &bytes[m.at.clone()];
        check_crc(&m, Crc::new(), data)?;
        return Ok((m.key, Cow::Borrowed(data)));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(m.size as usize)
        .map_err(|_| format!("cannot allocate {} bytes for array '{}'", m.size, m.key))?;
    out.resize(m.size as usize, 0);
    Inflate::new(bytes, &m).read(&mut out)?;
    Ok((m.key, Cow::Owned(out)))
}

/// Checks the CRC-32 of a member's bytes: `crc` over what came before, then `last`.
fn check_crc(m: &Member, mut crc: Crc, last: &[u8]) -> Result<(), String> {
    crc.update(last);
    if crc.sum() == m.crc32 {
        return Ok(());
    }
    Err(format!("array '{}' is corrupt: CRC-32 {:08x}, the archive says {:08x}", m.key, crc.sum(), m.crc32))
}

/// A deflated member's `.npy` bytes, inflated in order a block at a time; its CRC-32 is checked when the last
/// byte is read.
pub struct Inflate<'a> {
    member: Member,
    stream: DeflateDecoder<Box<dyn Read + 'a>>,
    crc: Crc,
    /// Bytes inflated so far.
    pub at: u64,
}

impl<'a> Inflate<'a> {
    /// Starts inflating `member` of the archive `bytes`.
    pub fn new(bytes: &'a [u8], member: &Member) -> Inflate<'a> {
        Inflate::from_reader(Box::new(&bytes[member.at.clone()]), member)
    }

    /// Starts inflating `member` from `packed`, its compressed bytes (read as they are needed: from the file,
    /// they do not stay in memory as the pages of a map do).
    pub fn from_reader(packed: Box<dyn Read + 'a>, member: &Member) -> Inflate<'a> {
        Inflate { member: member.clone(), stream: DeflateDecoder::new(packed), crc: Crc::new(), at: 0 }
    }

    /// Fills `out` with the next bytes.
    pub fn read(&mut self, out: &mut [u8]) -> Result<(), String> {
        let m = &self.member;
        if self.at + out.len() as u64 > m.size {
            return Err(format!("array '{}': reading past its {} bytes", m.key, m.size));
        }
        self.stream.read_exact(out).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                format!("array '{}' is truncated (its stream ends before {} bytes)", m.key, m.size)
            }
            _ => format!("cannot decompress array '{}': {e}", m.key),
        })?;
        self.at += out.len() as u64;
        if self.at < m.size {
            self.crc.update(out);
            return Ok(());
        }
        check_crc(m, std::mem::replace(&mut self.crc, Crc::new()), out)
    }

    /// Skips the next `n` bytes (inflating them).
    pub fn skip(&mut self, mut n: u64) -> Result<(), String> {
        let mut buf = vec![0u8; n.min(1 << 20) as usize];
        while n > 0 {
            let step = n.min(buf.len() as u64) as usize;
            self.read(&mut buf[..step])?;
            n -= step as u64;
        }
        Ok(())
    }
}
