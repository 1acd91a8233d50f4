//! What is written is what is read: bit for bit in lossless mode, within half a quantization level (and with the
//! exact top-k mass) in packed mode, by any row range across shard boundaries.

use infoloss::{DistillOptions, SparseTeacher, distill_topk};
use infoloss_cache::{CacheReader, Mode, TopkRows, select_topk};

use crate::support::{by_index, write_cache, zipf_logits};

#[test]
fn lossless_reads_back_the_selection_bit_for_bit_by_any_range() {
    let x = zipf_logits(53, 700, 1.2, 0.5, 21);
    let want = select_topk(x.view(), 40, 1.0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ix = write_cache(dir.path(), &x, 40, Mode::Lossless, 10);
    assert_eq!((ix.rows, ix.shards.len(), ix.complete), (53, 6, true));
    let r = CacheReader::open(dir.path()).unwrap();
    assert_eq!(r.read(0..53).unwrap(), want);
    for (a, b) in [(0u64, 1u64), (9, 11), (10, 20), (17, 53), (52, 53), (30, 30)] {
        assert_eq!(r.read(a..b).unwrap(), want.slice(a as usize..b as usize), "rows {a}..{b}");
    }
    let mut blocks = TopkRows::empty(40);
    for b in r.blocks(7) {
        blocks.append(&b.unwrap()).unwrap();
    }
    assert_eq!(blocks, want);
    // zero-copy views of a shard are the rows too
    let same = r
        .with_lossless_shard(2, |i, l, t| {
            i == want.indices.slice(infoloss::ndarray::s![20..30, ..])
                && l == want.logprobs.slice(infoloss::ndarray::s![20..30, ..])
                && t == want.tail.slice(infoloss::ndarray::s![20..30])
        })
        .unwrap();
    assert_eq!(same, Some(true));
    assert!(r.read(50..54).unwrap_err().to_string().contains("not within the cache's 53 rows"));
}

#[test]
fn packed_keeps_every_index_and_each_value_within_one_level_and_the_top_k_mass_exactly() {
    let x = zipf_logits(40, 5000, 1.1, 0.5, 22);
    let want = select_topk(x.view(), 64, 1.0).unwrap();
    for bits in [4u8, 6, 8, 12, 16] {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &x, 64, Mode::Packed { value_bits: bits }, 16);
        let got = CacheReader::open(dir.path()).unwrap().read(0..40).unwrap();
        assert_eq!(got.tail, want.tail);
        for (r, (g, w)) in by_index(&got).iter().zip(by_index(&want)).enumerate() {
            let lo = w.iter().map(|e| e.1).fold(f32::INFINITY, f32::min);
            let hi = w.iter().map(|e| e.1).fold(f32::NEG_INFINITY, f32::max);
            // half a level, plus the f16 rounding of the range, plus the common shift of the renormalization
            let level = (hi - lo) / ((1u32 << bits) - 1) as f32;
            for (a, b) in g.iter().zip(w.iter()) {
                assert_eq!(a.0, b.0, "row {r}: indices are exact");
                assert!((a.1 - b.1).abs() <= level + 0.02, "row {r}, {bits} bits: {} vs {}", a.1, b.1);
            }
            let mass: f64 = g.iter().map(|e| f64::from(e.1).exp()).sum();
            let want_mass = -f64::from(want.tail[r]).exp_m1();
            assert!((mass - want_mass).abs() < 1e-6, "row {r}: top-k mass {mass} vs {want_mass}");
        }
    }
}

#[test]
fn a_distillation_loss_from_a_packed_cache_is_close_to_the_exact_top_k_loss() {
    let v = 3000;
    let teacher = zipf_logits(64, v, 1.2, 0.5, 23);
    let student = &teacher + &zipf_logits(64, v, 0.0, 1.0, 24);
    let loss = |rows: &TopkRows| {
        let idx = rows.indices_i64();
        let t = SparseTeacher { indices: idx.view(), logprobs: rows.logprobs.view(), add_tail: true };
        distill_topk(student.view(), &t, None, &DistillOptions::default()).unwrap().scalar().unwrap() as f64
    };
    let exact = loss(&select_topk(teacher.view(), 128, 1.0).unwrap());
    let mut prev = f64::INFINITY;
    for bits in [4u8, 8, 12] {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &teacher, 128, Mode::Packed { value_bits: bits }, 32);
        let got = loss(&CacheReader::open(dir.path()).unwrap().read(0..64).unwrap());
        let rel = (got - exact).abs() / exact;
        assert!(
            rel < prev.max(1e-6),
            "more bits, smaller error: {bits} bits give {rel:e}, fewer gave {prev:e}"
        );
        prev = rel;
    }
    assert!(prev < 1e-4, "12 bits: relative error {prev:e}");
}
