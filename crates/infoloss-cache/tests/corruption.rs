//! Damaged caches: every error names the file and what failed; no damage makes the reader panic (a fuzz loop of
//! random mutations, with the checksums recomputed so that the parsing behind them is reached too).

use std::path::Path;

use infoloss_cache::{CacheReader, Index, Mode};
use rand::{Rng, SeedableRng};

use crate::support::{write_cache, zipf_logits};

fn cache(mode: Mode) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_cache(dir.path(), &zipf_logits(20, 500, 1.2, 0.5, 41), 12, mode, 8);
    dir
}

/// Opens and reads everything; the error as text.
fn read_all(dir: &Path) -> Result<(), String> {
    let r = CacheReader::open(dir).map_err(|e| e.to_string())?;
    r.read(0..r.rows()).map(|_| ()).map_err(|e| e.to_string())
}

/// Writes `bytes` as `file` of the cache in `dir`; the error reading the cache then gives.
fn refused(dir: &Path, file: &str, bytes: impl AsRef<[u8]>) -> String {
    std::fs::write(dir.join(file), bytes).unwrap();
    read_all(dir).unwrap_err()
}

/// Writes `bytes` as shard 0 and reseals the index to them (the checksum passes, the parsing behind it is
/// reached); the error reading the cache then gives.
fn refused_sealed(dir: &Path, bytes: impl AsRef<[u8]>) -> String {
    std::fs::write(dir.join("shard-000000.safetensors"), bytes).unwrap();
    reseal(dir, 0);
    read_all(dir).unwrap_err()
}

/// Rewrites the index so that shard `i`'s size and checksum match its (changed) bytes.
fn reseal(dir: &Path, i: usize) {
    let mut ix: Index =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join(&ix.shards[i].file)).unwrap();
    ix.shards[i].bytes = bytes.len() as u64;
    ix.shards[i].crc32 = format!("{:08x}", crc32fast::hash(&bytes));
    std::fs::write(dir.join("index.json"), serde_json::to_string(&ix).unwrap()).unwrap();
}

#[test]
fn a_flipped_byte_is_a_checksum_error_naming_the_shard() {
    for mode in [Mode::Lossless, Mode::Packed { value_bits: 8 }] {
        let dir = cache(mode);
        let mut b = std::fs::read(dir.path().join("shard-000001.safetensors")).unwrap();
        let n = b.len();
        b[n - 5] ^= 0x10;
        let e = refused(dir.path(), "shard-000001.safetensors", b);
        assert!(e.contains("shard-000001.safetensors: checksum mismatch: CRC-32"), "{e}");
        // the shards before it still read
        let r = CacheReader::open(dir.path()).unwrap();
        assert_eq!(r.read(0..8).unwrap().rows(), 8);
    }
}

#[test]
fn a_truncated_or_missing_shard_is_named() {
    let dir = cache(Mode::Lossless);
    let p = dir.path().join("shard-000002.safetensors");
    let b = std::fs::read(&p).unwrap();
    let e = refused(dir.path(), "shard-000002.safetensors", &b[..b.len() / 2]);
    assert!(e.contains("shard-000002.safetensors: truncated or overwritten"), "{e}");
    std::fs::remove_file(&p).unwrap();
    let e = read_all(dir.path()).unwrap_err();
    assert!(e.contains("shard-000002.safetensors: missing: the index lists it"), "{e}");
}

#[test]
fn a_bad_index_is_named() {
    let dir = cache(Mode::Lossless);
    let text = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
    let e = refused(dir.path(), "index.json", &text[..text.len() / 2]);
    assert!(e.contains("index.json: not a cache index"), "{e}");
    let e = refused(dir.path(), "index.json", text.replace("\"rows\": 20", "\"rows\": 21"));
    assert!(e.contains("index.json: rows = 21 but the shards hold 20"), "{e}");
    let e = refused(dir.path(), "index.json", text.replace("\"version\": 1", "\"version\": 9"));
    assert!(e.contains("format version 9"), "{e}");
}

#[test]
fn a_shard_with_the_wrong_tensors_is_named_even_with_a_valid_checksum() {
    let dir = cache(Mode::Lossless);
    let p = dir.path().join("shard-000000.safetensors");
    // a well-formed safetensors file whose `indices` has the wrong shape
    let idx = vec![0u8; 8 * 11 * 4];
    let lp = vec![0u8; 8 * 12 * 4];
    let tail = vec![0u8; 8 * 4];
    use safetensors::tensor::{Dtype, TensorView};
    let t = vec![
        ("indices", TensorView::new(Dtype::U32, vec![8, 11], &idx).unwrap()),
        ("logprobs", TensorView::new(Dtype::F32, vec![8, 12], &lp).unwrap()),
        ("tail", TensorView::new(Dtype::F32, vec![8], &tail).unwrap()),
    ];
    let e = refused_sealed(dir.path(), safetensors::serialize(t, None).unwrap());
    assert!(
        e.contains("shard-000000.safetensors: tensor `indices` is U32 [8, 11], expected U32 [8, 12]"),
        "{e}"
    );
    // a header that is not JSON
    let mut b = std::fs::read(&p).unwrap();
    b[10] = b'\xff';
    let e = refused_sealed(dir.path(), b);
    assert!(e.contains("shard-000000.safetensors: header:"), "{e}");
}

#[test]
fn packed_rows_that_decode_to_nonsense_are_named() {
    let dir = cache(Mode::Packed { value_bits: 6 });
    let p = dir.path().join("shard-000000.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    // the `data` tensor is last in the file (the smallest element type): make its first row's gaps huge
    let st = safetensors::SafeTensors::deserialize(&b).unwrap();
    let data = st.tensor("data").unwrap().data();
    let at = data.as_ptr() as usize - b.as_ptr() as usize;
    b[at] |= 0b1110_0000; // ρ's high bits: a huge Rice parameter
    b[at + 1] = 0xff;
    let e = refused_sealed(dir.path(), b);
    assert!(e.contains("shard-000000.safetensors: row 0: "), "{e}");
}

#[test]
fn random_damage_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for mode in [Mode::Lossless, Mode::Packed { value_bits: 5 }] {
        let clean = cache(mode);
        let shards: Vec<_> = (0..3)
            .map(|i| std::fs::read(clean.path().join(format!("shard-{i:06}.safetensors"))).unwrap())
            .collect();
        let index = std::fs::read(clean.path().join("index.json")).unwrap();
        let mut errors = 0;
        for _ in 0..600 {
            let dir = tempfile::tempdir().unwrap();
            for (i, s) in shards.iter().enumerate() {
                std::fs::write(dir.path().join(format!("shard-{i:06}.safetensors")), s).unwrap();
            }
            let which = rng.random_range(0..4);
            let mut b = if which == 3 { index.clone() } else { shards[which].clone() };
            for _ in 0..rng.random_range(1..6) {
                match rng.random_range(0..3) {
                    0 => {
                        let i = rng.random_range(0..b.len());
                        b[i] = rng.random();
                    }
                    1 => b.truncate(rng.random_range(0..b.len())),
                    _ => {
                        let i = rng.random_range(0..=b.len());
                        b.insert(i, rng.random());
                    }
                }
                if b.is_empty() {
                    b.push(0);
                }
            }
            if which == 3 {
                std::fs::write(dir.path().join("index.json"), &b).unwrap();
            } else {
                std::fs::write(dir.path().join("index.json"), &index).unwrap();
                std::fs::write(dir.path().join(format!("shard-{which:06}.safetensors")), &b).unwrap();
                if rng.random_bool(0.7) {
                    reseal(dir.path(), which);
                }
            }
            if read_all(dir.path()).is_err() {
                errors += 1;
            }
        }
        assert!(errors > 300, "{mode}: only {errors} of 600 damaged caches were refused");
    }
}
