//! Criterion benchmarks of the SIMD kernels at every available instruction-set level.
//!
//! `cargo bench -p infoloss --bench kernels` (add a filter such as `exp_f32` to run one group).
//! Bytes are counted as the slices read plus written, so a memcpy of the same buffer is the
//! bandwidth ceiling to compare against.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use infoloss::kernels::{Isa, Kernels};
use std::hint::black_box;

fn data(n: usize, scale: f32) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn elementwise(c: &mut Criterion) {
    // large (DRAM) and small (L2-resident) arrays
    for n in [1usize << 24, 1 << 16] {
        let x = data(n, 50.0);
        let xp: Vec<f32> = x.iter().map(|v| v.abs() + 1e-3).collect();
        let mut out = vec![0.0f32; n];
        let mut g = c.benchmark_group(format!("elementwise_{n}"));
        g.throughput(Throughput::Bytes((2 * n * 4) as u64));
        g.bench_function("memcpy", |b| b.iter(|| out.copy_from_slice(black_box(&x))));
        g.bench_function("std_exp", |b| {
            b.iter(|| {
                for (o, v) in out.iter_mut().zip(black_box(&x)) {
                    *o = v.exp();
                }
            })
        });
        for isa in Isa::available() {
            let k = Kernels::with_isa(isa).unwrap_or_default();
            g.bench_with_input(BenchmarkId::new("exp_f32", format!("{isa:?}")), &x, |b, x| {
                b.iter(|| k.exp_f32(black_box(x), &mut out))
            });
            g.bench_with_input(BenchmarkId::new("ln_f32", format!("{isa:?}")), &xp, |b, x| {
                b.iter(|| k.ln_f32(black_box(x), &mut out))
            });
        }
        g.finish();
    }
}

fn rows(c: &mut Criterion) {
    let (rows, classes) = (256usize, 32_000usize);
    let x = data(rows * classes, 8.0);
    let targets: Vec<usize> = (0..rows).map(|i| (i * 7919) % classes).collect();
    let mut grad = vec![0.0f32; rows * classes];
    let mut g = c.benchmark_group(format!("ce_rows_{rows}x{classes}"));
    // logits read once, gradient written once
    g.throughput(Throughput::Bytes((2 * rows * classes * 4) as u64));
    g.sample_size(20);
    g.bench_function("memcpy", |b| b.iter(|| grad.copy_from_slice(black_box(&x))));
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap_or_default();
        let name = format!("{isa:?}");
        for (id, eps) in [("ce_fwd_bwd", 0.0), ("ce_fwd_bwd_smooth0.1", 0.1)] {
            g.bench_function(BenchmarkId::new(id, &name), |b| {
                b.iter(|| {
                    let mut total = 0.0;
                    for ((xr, gr), &y) in x.chunks(classes).zip(grad.chunks_mut(classes)).zip(&targets) {
                        let row = k.cross_entropy_row_f32(xr, y, None, eps, Some(gr), 1.0 / rows as f32);
                        total += row.map_or(0.0, |r| r.loss(1.0, eps, classes));
                    }
                    total
                })
            });
        }
        g.bench_function(BenchmarkId::new("ce_fwd_only", &name), |b| {
            b.iter(|| {
                let mut total = 0.0;
                for (xr, &y) in x.chunks(classes).zip(&targets) {
                    let row = k.cross_entropy_row_f32(xr, y, None, 0.0, None, 1.0);
                    total += row.map_or(0.0, |r| r.loss(1.0, 0.0, classes));
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("softmax", &name), |b| {
            b.iter(|| {
                for (xr, gr) in x.chunks(classes).zip(grad.chunks_mut(classes)) {
                    let _ = k.softmax_f32(xr, gr);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, elementwise, rows);
criterion_main!(benches);
