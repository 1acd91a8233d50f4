//! The `.npz` format: a zip archive of `.npy` files (`np.savez`, stored, or `np.savez_compressed`,
//! deflated). One member is chosen by its key (the member name without `.npy`), decompressed into
//! memory and parsed as `.npy`.

use std::io::{Cursor, Read};

use super::tensor::choose_member;

/// Whether `bytes` start like a zip archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Chooses a member (by `key`, or the only one when `key` is `None`) and returns its key and the
/// bytes of its `.npy` file.
pub fn read_member(bytes: &[u8], key: Option<&str>) -> Result<(String, Vec<u8>), String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a valid .npz (zip) archive: {e}"))?;
    let mut names: Vec<String> = archive.file_names().map(|s| s.to_string()).collect();
    names.sort();
    let key_of = |n: &str| n.strip_suffix(".npy").unwrap_or(n).to_string();
    let keys: Vec<String> = names.iter().map(|n| key_of(n)).collect();
    let name = names[choose_member(&keys, key, ("array", "archive", "--key"))?].clone();
    let mut f = archive.by_name(&name).map_err(|e| format!("cannot read array '{}': {e}", key_of(&name)))?;
    // A member cannot inflate to more than ~1032 times its compressed size (deflate's limit) and a stored
    // member is as large as it is in the file: a larger declared size is a corrupt or hostile archive.
    let declared = f.size();
    let limit =
        f.compressed_size().saturating_mul(1032).saturating_add(1024).min(bytes.len() as u64 * 1032 + 1024);
    if declared > limit {
        return Err(format!(
            "array '{}' declares {declared} bytes but only {} compressed bytes are stored (corrupt archive)",
            key_of(&name),
            f.compressed_size()
        ));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(declared as usize)
        .map_err(|_| format!("cannot allocate {declared} bytes for array '{}'", key_of(&name)))?;
    (&mut f)
        .take(declared)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress array '{}': {e}", key_of(&name)))?;
    if (out.len() as u64) != declared {
        return Err(format!("array '{}' is truncated ({} of {declared} bytes)", key_of(&name), out.len()));
    }
    Ok((key_of(&name), out))
}
