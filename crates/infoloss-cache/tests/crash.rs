//! Interrupted writers: a writer dropped mid-way, leftovers of a killed one, and real `kill -9` at random moments.
//! After `resume`, the finished cache is byte for byte the one an uninterrupted run writes, and no row reported
//! written is lost.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use infoloss::ndarray::{Array2, s};
use infoloss_cache::{CacheReader, CacheWriter, Index, Mode};
use rand::{Rng, SeedableRng};

use crate::support::{write_cache, zipf_logits};

const ROWS: usize = 240;
const V: usize = 3000;
const K: usize = 16;
const PER_SHARD: usize = 8;
const MODE: Mode = Mode::Packed { value_bits: 8 };

fn input() -> Array2<f32> {
    zipf_logits(ROWS, V, 1.2, 0.5, 31)
}

/// Writes (or resumes writing) the test cache in `dir`, `step` rows per push, calling `report` with the rows
/// written after each push.
fn write_resumably(dir: &Path, x: &Array2<f32>, step: usize, mut report: impl FnMut(u64)) {
    let mut w = if dir.join("index.json").exists() {
        CacheWriter::resume(dir).unwrap()
    } else {
        CacheWriter::create(dir, Index::new(V, K, 1.0, MODE, PER_SHARD, "crash test".into()).unwrap())
            .unwrap()
    };
    let mut at = w.rows_written() as usize;
    while at < ROWS {
        let end = (at + step).min(ROWS);
        w.push_logits(x.slice(s![at..end, ..])).unwrap();
        report(w.rows_written());
        at = end;
    }
    w.finish().unwrap();
}

/// Every file of a finished cache, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_writer_dropped_mid_way_resumes_to_the_same_cache() {
    let x = input();
    let clean = tempfile::tempdir().unwrap();
    write_cache(clean.path(), &x, K, MODE, PER_SHARD);
    let dir = tempfile::tempdir().unwrap();
    {
        let mut w = CacheWriter::create(
            dir.path(),
            Index::new(V, K, 1.0, MODE, PER_SHARD, "crash test".into()).unwrap(),
        )
        .unwrap();
        w.push_logits(x.slice(s![0..37, ..])).unwrap();
        assert_eq!((w.rows_written(), w.rows_accepted()), (32, 37));
    } // dropped: the 5 buffered rows were never reported written
    // what a kill between writing and renaming, or between renaming and indexing, leaves behind
    std::fs::write(dir.path().join("shard-000004.safetensors.tmp"), b"half a shard").unwrap();
    std::fs::write(dir.path().join("shard-000004.safetensors"), b"a shard the index never listed").unwrap();
    std::fs::write(dir.path().join("index.json.tmp"), b"{\"half\":").unwrap();
    let w = CacheWriter::resume(dir.path()).unwrap();
    assert_eq!(w.rows_written(), 32);
    drop(w);
    write_resumably(dir.path(), &x, 13, |_| {});
    let mut want = files(clean.path());
    let mut got = files(dir.path());
    // the index's `source` is the same text; everything else must match byte for byte
    want.retain(|f| f.0 != "index.json");
    got.retain(|f| f.0 != "index.json");
    assert_eq!(got.iter().map(|f| &f.0).collect::<Vec<_>>(), want.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert!(got == want, "shards differ after resume");
    let (a, b) = (CacheReader::open(dir.path()).unwrap(), CacheReader::open(clean.path()).unwrap());
    assert_eq!(a.read(0..ROWS as u64).unwrap(), b.read(0..ROWS as u64).unwrap());
}

/// The child of the kill test: writes the cache in `INFOLOSS_CACHE_CHILD_DIR`, printing the rows written after
/// each push. Does nothing in a normal test run.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var("INFOLOSS_CACHE_CHILD_DIR") else { return };
    let x = input();
    write_resumably(Path::new(&dir), &x, 3, |n| println!("written {n}"));
    println!("done");
}

#[test]
fn kill_minus_nine_at_random_moments_loses_nothing_reported_written() {
    let x = input();
    let clean = tempfile::tempdir().unwrap();
    write_resumably(clean.path(), &x, 3, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(32);
    let mut kills = 0;
    for attempt in 0..40 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash::child_writer", "--nocapture", "--test-threads=1"])
            .env("INFOLOSS_CACHE_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let lines: Vec<String> = rx.try_iter().collect();
        if lines.iter().any(|l| l == "done") {
            break;
        }
        kills += 1;
        let reported = lines
            .iter()
            .filter_map(|l| l.strip_prefix("written "))
            .filter_map(|n| n.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        if dir.path().join("index.json").exists() {
            let w = CacheWriter::resume(dir.path()).unwrap();
            assert!(
                w.rows_written() >= reported,
                "attempt {attempt}: {} rows on disk, {reported} were reported written",
                w.rows_written()
            );
            let r = CacheReader::open(dir.path()).unwrap();
            r.verify().unwrap();
            assert_eq!(
                r.read(0..r.rows()).unwrap(),
                CacheReader::open(clean.path()).unwrap().read(0..r.rows()).unwrap()
            );
        } else {
            assert_eq!(reported, 0);
        }
    }
    assert!(kills >= 3, "only {kills} kills landed before the writer finished");
    write_resumably(dir.path(), &x, 3, |_| {});
    assert!(files(dir.path()) == files(clean.path()), "the resumed cache differs from an uninterrupted one");
}
