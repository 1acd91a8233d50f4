//! What the reader fuzz targets run on arbitrary bytes (shared by `fuzz/fuzz_targets/read_*.rs`, which
//! include this file and the readers with `#[path]`, and by the unit test that replays their corpora).
//!
//! Beyond "never panic, never allocate without bound", each reader's successful results must be
//! self-consistent: the element bytes match the shape, and conversions to every element type succeed.

#![allow(dead_code)]

use super::tensor::{Tensor, checked_size};
use super::{csv, npy, npz, st};
use half::{bf16, f16};

/// Converts a parsed tensor to every element type and checks the sizes agree.
fn exercise(t: &Tensor<'_>) {
    let (n, bytes) = checked_size(&t.shape, t.dtype.size()).expect("a parsed tensor has a valid size");
    assert_eq!(t.data.len(), bytes, "data length and shape disagree");
    if let Ok(a) = t.clone().into_floats::<f32>() {
        assert_eq!(a.len(), n);
    }
    let _ = t.clone().into_floats::<f64>();
    let _ = t.clone().into_floats::<f16>();
    let _ = t.clone().into_floats::<bf16>();
    if let Ok(a) = t.clone().into_indices() {
        assert_eq!(a.len(), n);
    }
}

/// `.npy`: parse; on success re-write the header and parse again.
pub fn npy(data: &[u8]) {
    if let Ok(t) = npy::parse(data) {
        exercise(&t);
        let mut f = Vec::new();
        npy::write_header(&mut f, t.dtype, &t.shape).expect("writing to memory");
        f.extend_from_slice(&t.data);
        let back = npy::parse(&f).expect("a header we wrote parses");
        assert_eq!(back.shape, t.shape);
    }
}

/// `.npz`: open the archive, read a member (by the first key byte's choice), parse it as `.npy`.
pub fn npz(data: &[u8]) {
    for key in [None, Some("a"), Some("x")] {
        if let Ok((_, member)) = npz::read_member(data, key) {
            npy(&member);
        }
    }
}

/// `.safetensors`: parse and read the only (or a named) tensor.
pub fn safetensors(data: &[u8]) {
    for name in [None, Some("a"), Some("x")] {
        if let Ok((_, t)) = st::parse(data, name) {
            exercise(&t);
        }
    }
}

/// CSV text.
pub fn csv(data: &[u8]) {
    if let Ok(c) = csv::parse(data) {
        let n: usize = c.shape.iter().product();
        assert_eq!(n, c.values.len());
        if let Some(i) = &c.ints {
            assert_eq!(i.len(), n);
        }
    }
}

/// A reader target's entry point.
pub type Reader = fn(&[u8]);

/// The reader targets by name, and the function each runs.
pub const READERS: &[(&str, Reader)] =
    &[("read_npy", npy), ("read_npz", npz), ("read_safetensors", safetensors), ("read_csv", csv)];

#[cfg(test)]
mod tests {
    use super::READERS;

    /// Replays the committed reader corpora (`fuzz/corpus/read_*`) on stable Rust.
    #[test]
    fn reader_fuzz_corpora_replay() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (name, f) in READERS {
            let dir = root.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|_| panic!("no corpus at {}", dir.display()));
            let mut count = 0;
            for e in entries {
                let data = std::fs::read(e.unwrap().path()).unwrap();
                f(&data);
                count += 1;
            }
            assert!(count > 0, "empty corpus {name}");
        }
    }
}
