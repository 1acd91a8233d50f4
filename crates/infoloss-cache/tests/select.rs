//! `select_topk` against the reference, over sizes crossing the scan's 64-element blocks, temperatures, ties,
//! `-inf` logits and 1/2/3 threads.

use infoloss::ndarray::{Array2, array};
use infoloss_cache::select_topk;

use crate::support::{reference_topk, zipf_logits};

fn check(logits: &Array2<f32>, k: usize, temp: f64) {
    let got = select_topk(logits.view(), k, temp).unwrap();
    let (idx, lp, tail) = reference_topk(logits, k, temp);
    assert_eq!(got.indices, idx, "indices, k = {k}, V = {}, T = {temp}", logits.ncols());
    for (g, w) in got.logprobs.iter().zip(lp.iter()) {
        if w.is_infinite() {
            assert_eq!(f64::from(*g), *w);
            continue;
        }
        assert!((f64::from(*g) - w).abs() <= 4e-6 * w.abs().max(1.0), "logprob {g} vs {w}");
    }
    for (g, w) in got.tail.iter().zip(tail.iter()) {
        if w.is_infinite() {
            assert_eq!(f64::from(*g), *w);
        } else {
            assert!((f64::from(*g) - w).abs() <= 4e-6 * w.abs().max(1.0), "tail {g} vs {w}");
        }
    }
}

#[test]
fn matches_the_reference_across_sizes_k_and_temperatures() {
    for (v, seed) in [(1usize, 1u64), (7, 2), (63, 3), (64, 4), (65, 5), (129, 6), (1000, 7), (4099, 8)] {
        let x = zipf_logits(5, v, 1.3, 0.5, seed);
        for k in [1, 2, v / 2, v.saturating_sub(1), v].into_iter().filter(|&k| (1..=v).contains(&k)) {
            for temp in [1.0, 0.5, 3.0] {
                check(&x, k, temp);
            }
        }
    }
}

#[test]
fn ties_rank_the_lower_class_first_and_minus_infinity_is_a_class_with_no_mass() {
    let x = array![
        [1.0f32, 3.0, 3.0, f32::NEG_INFINITY, 3.0, 0.0],
        [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0]
    ];
    let t = select_topk(x.view(), 2, 1.0).unwrap();
    assert_eq!(t.indices, array![[1u32, 2], [1, 3]]);
    check(&x, 5, 1.0);
    // the top-k holds all the mass: the tail is -inf
    let all = select_topk(x.view(), 6, 1.0).unwrap();
    assert_eq!(all.tail[0], f32::NEG_INFINITY);
    // large magnitudes
    check(&(zipf_logits(3, 300, 2.0, 1.0, 9) * 1e30f32).mapv(|v| v.max(-3e38)), 10, 1e30);
    check(&(zipf_logits(3, 300, 2.0, 1.0, 10) * 1e-30f32), 10, 1.0);
}

#[test]
fn the_result_does_not_depend_on_the_thread_count() {
    let x = zipf_logits(37, 2000, 1.1, 0.3, 11);
    let run = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
            .install(|| select_topk(x.view(), 50, 2.0).unwrap())
    };
    let one = run(1);
    assert_eq!(run(2), one);
    assert_eq!(run(3), one);
}

#[test]
fn bad_rows_and_arguments_are_named() {
    let x = array![[0.0f32, 1.0], [f32::NAN, 0.0]];
    assert_eq!(select_topk(x.view(), 1, 1.0).unwrap_err().to_string(), "select_topk: row 1: a logit is NaN");
    let x = array![[f32::INFINITY, 1.0]];
    assert!(select_topk(x.view(), 1, 1.0).unwrap_err().to_string().contains("row 0: a logit is +inf"));
    let x = array![[f32::NEG_INFINITY, f32::NEG_INFINITY]];
    assert!(select_topk(x.view(), 1, 1.0).unwrap_err().to_string().contains("every logit is -inf"));
    let x = array![[0.0f32, 1.0]];
    assert!(
        select_topk(x.view(), 3, 1.0)
            .unwrap_err()
            .to_string()
            .contains("k must be 1 to the vocabulary size 2, got 3")
    );
    assert!(select_topk(x.view(), 1, 0.0).unwrap_err().to_string().contains("temperature"));
}

#[test]
fn half_and_double_logits_select_as_their_f32_values() {
    let x = zipf_logits(4, 333, 1.2, 0.4, 12);
    let want = select_topk(x.view(), 20, 2.0).unwrap();
    let x64 = x.mapv(f64::from);
    assert_eq!(select_topk(x64.view(), 20, 2.0).unwrap(), want);
    let h = x.mapv(infoloss::half::f16::from_f32);
    let hf = h.mapv(|v| v.to_f32());
    assert_eq!(select_topk(h.view(), 20, 2.0).unwrap(), select_topk(hf.view(), 20, 2.0).unwrap());
    let b = x.mapv(infoloss::half::bf16::from_f32);
    let bf = b.mapv(|v| v.to_f32());
    assert_eq!(select_topk(b.view(), 20, 2.0).unwrap(), select_topk(bf.view(), 20, 2.0).unwrap());
}
