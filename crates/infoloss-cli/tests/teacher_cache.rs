//! End-to-end tests of `infoloss teacher-cache`: the cache it writes from logits files (f32 and bf16) and from
//! hidden states × an output layer is the library's selection; `--resume` after `kill -9` loses nothing; bad
//! inputs and damaged caches are one-line errors naming the file or row.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use infoloss::half::bf16;
use infoloss::ndarray::Array2;
use infoloss_cache::{CacheReader, select_topk};
use safetensors::tensor::{Dtype, TensorView};

#[path = "support/npy.rs"]
mod npy;
use npy::{npy_bytes, zip_npz};

/// Runs `infoloss` with the words of `line` (the temporary paths hold no spaces).
fn infoloss(line: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_infoloss")).args(line.split_whitespace()).output().unwrap()
}

fn ok(line: &str) -> String {
    let o = infoloss(line);
    assert!(o.status.success(), "{line}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(line: &str, needle: &str) {
    let o = infoloss(line);
    assert_eq!(o.status.code(), Some(1), "{line} should fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err:?} should contain {needle:?}");
}

/// Deterministic logits with distinct values in every row (no ties), varied magnitudes.
fn logits(rows: usize, v: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, v), |(r, c)| {
        let h = (r as u64 * 7919 + c as u64 * 104_729) % 1_000_003;
        (h as f32 / 1_000_003.0) * 12.0 - 6.0 + (c % 17) as f32 * 0.001
    })
}

/// Writes `tensors` (name, dtype, shape, bytes) as a safetensors file.
fn write_st(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32_bytes(a: &Array2<f32>) -> Vec<u8> {
    a.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read(dir: &Path) -> infoloss_cache::TopkRows {
    let r = CacheReader::open(dir).unwrap();
    r.read(0..r.rows()).unwrap()
}

#[test]
fn a_cache_from_f32_and_bf16_logits_files_is_the_librarys_selection() {
    let d = tempfile::tempdir().unwrap();
    let x = logits(70, 300);
    let f = d.path().join("t.safetensors");
    let xb = x.mapv(bf16::from_f32);
    let bb: Vec<u8> = xb.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_st(
        &f,
        &[("logits", Dtype::F32, vec![70, 300], f32_bytes(&x)), ("half", Dtype::BF16, vec![7, 10, 300], bb)],
    );
    let fs = f.display().to_string();
    let c1 = d.path().join("c1");
    let out = ok(&format!(
        "teacher-cache {} --logits {fs}#logits --k 20 --temperature 2 --rows-per-shard 16 --block-rows 7 --quiet",
        c1.display()
    ));
    assert!(out.contains("70 rows in 5 shards, k = 20 of V = 300, T = 2, lossless"), "{out}");
    assert_eq!(read(&c1), select_topk(x.view(), 20, 2.0).unwrap());
    // bf16, 3-D (rows flattened), packed
    let c2 = d.path().join("c2");
    let json = ok(&format!("teacher-cache {} --logits {fs}#half --k 8 --mode packed8 --json", c2.display()));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((v["rows"].as_u64(), v["mode"].as_str()), (Some(70), Some("packed8")));
    let want = select_topk(xb.to_shape((70, 300)).unwrap().view(), 8, 1.0).unwrap();
    let got = read(&c2);
    let (mut gi, mut wi) = (got.indices.clone(), want.indices.clone());
    for (mut g, mut w) in gi.rows_mut().into_iter().zip(wi.rows_mut()) {
        g.as_slice_mut().unwrap().sort_unstable();
        w.as_slice_mut().unwrap().sort_unstable();
    }
    assert_eq!(gi, wi, "packed keeps the same classes");
    assert_eq!(got.tail, want.tail);
    // --verify reads it whole
    let out = ok(&format!("teacher-cache {} --verify", c2.display()));
    assert!(out.contains("(verified)"), "{out}");
}

#[test]
fn a_cache_from_hidden_states_and_an_output_layer_equals_one_from_their_logits() {
    let d = tempfile::tempdir().unwrap();
    // multiples of powers of two: the product is exact in any summation order
    let h = Array2::from_shape_fn((40, 6), |(i, j)| ((i * 5 + j * 3) % 9) as f32 * 0.5 - 2.0);
    let w = Array2::from_shape_fn((120, 6), |(i, j)| ((i * 7 + j * 11) % 13) as f32 * 0.25 - 1.5);
    let b = infoloss::ndarray::Array1::from_shape_fn(120, |i| (i % 5) as f32 * 0.125);
    let l = h.dot(&w.t()) + &b;
    let f = d.path().join("m.safetensors");
    write_st(
        &f,
        &[
            ("hidden", Dtype::F32, vec![40, 6], f32_bytes(&h)),
            ("weight", Dtype::F32, vec![120, 6], f32_bytes(&w)),
            ("bias", Dtype::F32, vec![120], b.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ],
    );
    let fs = f.display().to_string();
    let c = d.path().join("c");
    ok(&format!(
        "teacher-cache {} --hidden {fs}#hidden --weight {fs}#weight --bias {fs}#bias --k 10 --quiet",
        c.display()
    ));
    assert_eq!(read(&c), select_topk(l.view(), 10, 1.0).unwrap());
    fails(
        &format!("teacher-cache {}/c3 --hidden {fs}#hidden --weight {fs}#bias", d.path().display()),
        "weight of shape [120] must be (V, H) with H = 6",
    );
}

#[test]
fn bad_inputs_and_options_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let mut x = logits(30, 50);
    x[[17, 3]] = f32::NAN;
    let f = d.path().join("t.safetensors");
    write_st(&f, &[("logits", Dtype::F32, vec![30, 50], f32_bytes(&x))]);
    let fs = f.display().to_string();
    let c = d.path().join("c");
    let cs = c.to_str().unwrap();
    fails(
        &format!("teacher-cache {cs} --logits {fs} --k 5 --block-rows 8"),
        "teacher row 17: a logit is NaN",
    );
    fails(&format!("teacher-cache {}/c2 --logits {fs} --k 51", d.path().display()), "k must be 1 to");
    fails(&format!("teacher-cache {}/c4 --logits {fs} --mode zip", d.path().display()), "invalid --mode");
    fails(&format!("teacher-cache {cs}"), "give the teacher as --logits FILE");
    // an existing cache is not overwritten; --resume with other options is refused
    let y = logits(30, 50);
    write_st(&f, &[("logits", Dtype::F32, vec![30, 50], f32_bytes(&y))]);
    let c = d.path().join("c5");
    let cs = c.to_str().unwrap();
    ok(&format!("teacher-cache {cs} --logits {fs} --k 5 --quiet"));
    fails(&format!("teacher-cache {cs} --logits {fs} --k 5"), "pass --resume to continue it");
    fails(
        &format!("teacher-cache {cs} --logits {fs} --k 6 --resume"),
        "--resume: the cache was written from",
    );
    // a damaged shard
    let shard = c.join("shard-000000.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    fails(&format!("teacher-cache {cs} --verify"), "shard-000000.safetensors: checksum mismatch");
}

#[test]
fn resume_after_kill_minus_nine_finishes_the_same_cache() {
    let d = tempfile::tempdir().unwrap();
    let x = logits(3000, 2000);
    let f = d.path().join("t.safetensors");
    write_st(&f, &[("logits", Dtype::F32, vec![3000, 2000], f32_bytes(&x))]);
    let fs = f.display().to_string();
    let args = |dir: &Path| -> Vec<String> {
        [
            "teacher-cache",
            dir.to_str().unwrap(),
            "--logits",
            &fs,
            "--k",
            "16",
            "--mode",
            "packed7",
            "--rows-per-shard",
            "64",
            "--block-rows",
            "16",
            "--quiet",
            "--resume",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let clean = d.path().join("clean");
    let o = Command::new(env!("CARGO_BIN_EXE_infoloss")).args(args(&clean)).output().unwrap();
    assert!(o.status.success());
    let c = d.path().join("c");
    let mut kills = 0;
    for wait_ms in [0u64, 2, 5, 10, 20, 40, 80, 150, 250, 400, 600, 900, 1300] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_infoloss"))
            .args(args(&c))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if c.join("index.json").exists() {
            // what is on disk reads back, and is a prefix of the clean cache
            let r = CacheReader::open(&c).unwrap();
            let n = r.rows();
            assert_eq!(r.read(0..n).unwrap(), read(&clean).slice(0..n as usize));
        }
    }
    // a release build on a quiet machine can finish in tens of milliseconds: one kill mid-run is the test
    assert!(kills >= 1, "the run finished before any kill");
    let o = Command::new(env!("CARGO_BIN_EXE_infoloss")).args(args(&c)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["index.json", "shard-000000.safetensors", "shard-000046.safetensors"] {
        assert_eq!(std::fs::read(c.join(name)).unwrap(), std::fs::read(clean.join(name)).unwrap(), "{name}");
    }
    assert_eq!(read(&c), read(&clean));
}

#[test]
fn npz_logits_stored_or_deflated_are_read_a_block_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let x = logits(50, 300);
    let want = select_topk(x.view(), 20, 1.0).unwrap();
    for (name, deflate) in [("s.npz", false), ("c.npz", true)] {
        let f = d.path().join(name);
        let npy = |a: &Array2<f32>| npy_bytes("<f4", false, a.shape(), &f32_bytes(a));
        zip_npz(&f, &[("logits", npy(&x)), ("other", npy(&logits(2, 3)))], deflate);
        let c = d.path().join(format!("cache-{name}"));
        let line = format!(
            "teacher-cache {} --logits {}#logits --k 20 --rows-per-shard 16 --block-rows 7 --quiet",
            c.display(),
            f.display()
        );
        let out = ok(&line);
        assert!(out.contains("50 rows in 4 shards"), "{name}: {out}");
        assert_eq!(read(&c), want, "{name}");
        // damage in the member's data: a one-line error naming the array (its checksum, or its stream)
        let mut b = std::fs::read(&f).unwrap();
        let at = b.len() / 2;
        b[at] ^= 0x5a;
        std::fs::write(&f, &b).unwrap();
        std::fs::remove_dir_all(&c).unwrap();
        fails(&line, "array 'logits'");
    }
}
