//! The bytes/error curve of each cache mode, and the selection's speed against a copy of the same bytes.
//!
//! Teacher logits are Zipf-law with noise (`support`-style: the class of rank `r`, a random permutation per row,
//! gets `−s·ln(r + 1) + σ·N(0, 1)`); the student is the teacher plus `N(0, 1)` noise. For each mode the cache is
//! written to a temporary directory, read back, and the distillation loss against it compared with the loss
//! against the exact top-k (`distill_topk` with the tail bucket, batch mean, and per token).
//!
//! ```text
//! cargo run --release -p infoloss-cache --example cache_curve -- [rows] [vocab] [k] [s] [sigma]
//! ```

use std::time::Instant;

use infoloss::ndarray::{Array2, Axis};
use infoloss::{DistillOptions, Divergence, Reduction, SparseTeacher, distill_topk};
use infoloss_cache::{CacheReader, CacheWriter, Index, Mode, TopkRows, select_topk};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

fn zipf(rows: usize, v: usize, s: f64, sigma: f64, seed: u64) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((rows, v));
    out.axis_iter_mut(Axis(0)).enumerate().for_each(|(r, mut row)| {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(r as u64));
        let noise = Normal::new(0.0, sigma.max(1e-300)).unwrap();
        let mut perm: Vec<usize> = (0..v).collect();
        for i in (1..v).rev() {
            perm.swap(i, rng.random_range(0..=i));
        }
        for (rank, &c) in perm.iter().enumerate() {
            let n = if sigma > 0.0 { noise.sample(&mut rng) } else { 0.0 };
            row[c] = (-s * ((rank + 1) as f64).ln() + n) as f32;
        }
    });
    out
}

fn losses(student: &Array2<f32>, rows: &TopkRows, div: Divergence) -> (f64, Vec<f64>) {
    let idx = rows.indices_i64();
    let t = SparseTeacher { indices: idx.view(), logprobs: rows.logprobs.view(), add_tail: true };
    let o = DistillOptions { divergence: div, ..Default::default() };
    let mean = distill_topk(student.view(), &t, None, &o).unwrap().scalar().unwrap() as f64;
    let o = DistillOptions { reduction: Reduction::None, ..o };
    let per = distill_topk(student.view(), &t, None, &o).unwrap().into_array();
    (mean, per.iter().map(|&v| v as f64).collect())
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (rows, v, k) = (arg(1, 1024.0) as usize, arg(2, 128_256.0) as usize, arg(3, 128.0) as usize);
    let (s, sigma) = (arg(4, 1.2), arg(5, 0.5));
    eprintln!("generating {rows} × {v} teacher logits (Zipf s = {s}, σ = {sigma}) and a student …");
    let teacher = zipf(rows, v, s, sigma, 1);
    let student = &teacher + &zipf(rows, v, 0.0, 1.0, 2);

    // the selection's speed, against a copy of the same bytes in the same run (best of 5)
    let bytes = (rows * v * 4) as f64;
    let mut copy = Array2::<f32>::zeros((rows, v));
    let best = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let t_copy = best(&mut || copy.assign(&teacher));
    let mut exact = None;
    let t_sel = best(&mut || exact = Some(select_topk(teacher.view(), k, 1.0).unwrap()));
    let exact = exact.unwrap();
    let mass: f64 = exact.tail.iter().map(|&t| -(t as f64).exp_m1()).sum::<f64>() / rows as f64;
    println!(
        "select_topk: {:.1} ms ({:.2} GB/s read); copy of the logits: {:.1} ms ({:.2} GB/s read+write); ratio {:.2}",
        t_sel * 1e3,
        bytes / t_sel / 1e9,
        t_copy * 1e3,
        2.0 * bytes / t_copy / 1e9,
        t_copy / t_sel
    );
    println!("mean top-{k} mass of the teacher: {mass:.4}");
    println!();
    println!(
        "| mode | bytes/token | forward KL rel. err (batch) | per token median / max | reverse KL (batch) | JSD β=0.5 (batch) | TVD (batch) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let divs = [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::GeneralizedJsd { beta: 0.5 },
        Divergence::TotalVariation,
    ];
    let want: Vec<(f64, Vec<f64>)> = divs.iter().map(|&d| losses(&student, &exact, d)).collect();
    let mut modes = vec![Mode::Lossless];
    modes.extend([4u8, 5, 6, 7, 8, 10, 12].map(|b| Mode::Packed { value_bits: b }));
    for mode in modes {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::new(v, k, 1.0, mode, 4096, "cache_curve".into()).unwrap();
        let mut w = CacheWriter::create(dir.path(), ix).unwrap();
        w.push(&exact).unwrap();
        let ix = w.finish().unwrap();
        let total: u64 = ix.shards.iter().map(|s| s.bytes).sum();
        let got = CacheReader::open(dir.path()).unwrap().read(0..rows as u64).unwrap();
        let mut cells = vec![format!("{mode}"), format!("{:.1}", total as f64 / rows as f64)];
        for (j, &d) in divs.iter().enumerate() {
            let (m, per) = losses(&student, &got, d);
            cells.push(format!("{:.1e}", (m - want[j].0).abs() / want[j].0.abs()));
            if j == 0 {
                let mut rel: Vec<f64> =
                    per.iter().zip(&want[j].1).map(|(g, w)| (g - w).abs() / w.abs().max(1e-300)).collect();
                rel.sort_by(|a, b| a.partial_cmp(b).unwrap());
                cells.push(format!("{:.1e} / {:.1e}", rel[rel.len() / 2], rel[rel.len() - 1]));
            }
        }
        println!("| {} |", cells.join(" | "));
    }
}
