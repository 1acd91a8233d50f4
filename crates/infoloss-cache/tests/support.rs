//! Test inputs and the straightforward reference the selection is checked against.

use infoloss::ndarray::{Array1, Array2};
use infoloss_cache::{CacheWriter, Index, Mode, TopkRows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Heavy-tailed teacher logits, as a language model's: the class of rank `r` (a random permutation per row) has
/// logit `−s·ln(r + 1) + σ·N(0, 1)`.
pub fn zipf_logits(rows: usize, v: usize, s: f64, sigma: f64, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sigma).unwrap();
    let mut out = Array2::<f32>::zeros((rows, v));
    let mut perm: Vec<usize> = (0..v).collect();
    for mut row in out.rows_mut() {
        for i in (1..v).rev() {
            perm.swap(i, rng.random_range(0..=i));
        }
        for (r, &c) in perm.iter().enumerate() {
            row[c] = (-s * ((r + 1) as f64).ln() + noise.sample(&mut rng)) as f32;
        }
    }
    out
}

/// The reference top-k: `log_softmax(x / T)` in `f64`, a full sort (value descending, lower class first), the tail
/// summed in `f64` over the rest.
pub fn reference_topk(logits: &Array2<f32>, k: usize, temp: f64) -> (Array2<u32>, Array2<f64>, Array1<f64>) {
    let rows = logits.nrows();
    let mut idx = Array2::<u32>::zeros((rows, k));
    let mut lp = Array2::<f64>::zeros((rows, k));
    let mut tail = Array1::<f64>::zeros(rows);
    for (r, row) in logits.rows().into_iter().enumerate() {
        let x: Vec<f64> = row.iter().map(|&v| f64::from(v / temp as f32)).collect();
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = x.iter().map(|&v| (v - m).exp()).sum();
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).unwrap().then(a.cmp(&b)));
        for j in 0..k {
            idx[[r, j]] = order[j] as u32;
            lp[[r, j]] = (x[order[j]] - m) - z.ln();
        }
        let t: f64 = order[k..].iter().map(|&i| (x[i] - m).exp()).sum();
        tail[r] = if t > 0.0 { t.ln() - z.ln() } else { f64::NEG_INFINITY };
    }
    (idx, lp, tail)
}

/// Writes `logits` into a new cache in `dir` and finishes it.
pub fn write_cache(
    dir: &std::path::Path,
    logits: &Array2<f32>,
    k: usize,
    mode: Mode,
    per_shard: usize,
) -> Index {
    let ix = Index::new(logits.ncols(), k, 1.0, mode, per_shard, "test".into()).unwrap();
    let mut w = CacheWriter::create(dir, ix).unwrap();
    w.push_logits(logits.view()).unwrap();
    w.finish().unwrap()
}

/// Every row's entries as (index, logprob) sorted by index: the packed mode stores rows in that order.
pub fn by_index(rows: &TopkRows) -> Vec<Vec<(u32, f32)>> {
    rows.indices
        .rows()
        .into_iter()
        .zip(rows.logprobs.rows())
        .map(|(i, l)| {
            let mut v: Vec<(u32, f32)> = i.iter().copied().zip(l.iter().copied()).collect();
            v.sort_by_key(|e| e.0);
            v
        })
        .collect()
}
