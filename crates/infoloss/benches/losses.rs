//! Criterion benches of every loss's public entry point (forward + backward where the loss has one,
//! and the in-place variants), next to a memory copy of the bytes the loss must move, on one size:
//! 256 rows × 32,000 classes, `f32` (32.8 MB per array), plus `bf16` and `f16` groups for the
//! cross-entropy, `kl_div` and BCE with logits (the whole-batch sweep with GB/s and ratios is
//! `infoloss bench`).
//!
//! ```text
//! cargo bench -p infoloss --bench losses
//! cargo bench -p infoloss --bench losses -- 'losses/distill' # the benches whose name matches
//! cargo bench -p infoloss --bench losses -- 'losses_bf16'   # one group
//! ```

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use infoloss::distill::{DistillOptions, distill_with_grad};
use infoloss::ndarray::{Array1, Array2};
use infoloss::uda::{UdaOptions, uda_consistency_with_grad};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, EntropyOptions, JensenShannonOptions,
    KlDivOptions, NllOptions, Reduction,
};

const ROWS: usize = 256;
const CLASSES: usize = 32_000;

/// xorshift values in (−1, 1).
fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn matrix(seed: u64, f: impl Fn(f32) -> f32) -> Array2<f32> {
    let mut u = uniform(seed);
    Array2::from_shape_fn((ROWS, CLASSES), |_| f(u()))
}

fn log_softmax_rows(x: &Array2<f32>) -> Array2<f32> {
    infoloss::log_softmax(x.view(), 1).expect("log_softmax").into_dimensionality().expect("2-d")
}

fn losses(c: &mut Criterion) {
    let logits = matrix(1, |u| 4.0 * u);
    let logits2 = matrix(2, |u| 4.0 * u);
    let logp = log_softmax_rows(&logits);
    let probs2 = log_softmax_rows(&logits2).mapv(f32::exp);
    let probs = logp.mapv(f32::exp);
    let unit = matrix(3, |u| 0.5 + 0.49 * u);
    let binary = matrix(4, |u| if u > 0.4 { 1.0 } else { 0.0 });
    let targets = Array1::from_shape_fn(ROWS, |i| ((i * 7919) % CLASSES) as i64);
    let pos_weight = Array1::from_elem(CLASSES, 2.0f32).into_dyn();
    let bm = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let bytes = |arrays: usize| (arrays * ROWS * CLASSES * 4) as u64;

    let mut g = c.benchmark_group("losses");
    g.sample_size(10);
    // the floor: one array read and one written, and two read and one written
    let src = logits.clone();
    let mut dst = Array2::<f32>::zeros((ROWS, CLASSES));
    g.throughput(Throughput::Bytes(bytes(2)));
    g.bench_function("memcpy (1 read + 1 write)", |b| b.iter(|| dst.assign(black_box(&src))));
    let mut scratch = logits.clone();
    let ce = CrossEntropyOptions::default();
    g.bench_function("cross_entropy_with_grad", |b| {
        b.iter(|| infoloss::cross_entropy_with_grad(black_box(logits.view()), targets.view(), &ce))
    });
    g.bench_function("cross_entropy_with_grad_in_place", |b| {
        b.iter(|| infoloss::cross_entropy_with_grad_in_place(scratch.view_mut(), targets.view(), &ce))
    });
    let ls = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
    g.bench_function("cross_entropy_with_grad label_smoothing=0.1", |b| {
        b.iter(|| infoloss::cross_entropy_with_grad(black_box(logits.view()), targets.view(), &ls))
    });
    g.bench_function("log_softmax", |b| b.iter(|| infoloss::log_softmax(black_box(logits.view()), 1)));
    g.bench_function("softmax", |b| b.iter(|| infoloss::softmax(black_box(logits.view()), 1)));
    g.bench_function("nll_loss_with_grad (writes the zero gradient)", |b| {
        b.iter(|| {
            infoloss::nll_loss_with_grad(black_box(logp.view()), targets.view(), &NllOptions::default())
        })
    });
    g.throughput(Throughput::Bytes(bytes(3)));
    g.bench_function("memcpy x1.5 (2 reads + 1 write)", |b| {
        b.iter(|| {
            dst.assign(black_box(&src));
            dst.slice_mut(infoloss::ndarray::s![..ROWS / 2, ..])
                .assign(&src.slice(infoloss::ndarray::s![..ROWS / 2, ..]))
        })
    });
    g.bench_function("cross_entropy_probs_with_grad", |b| {
        b.iter(|| infoloss::cross_entropy_probs_with_grad(black_box(logits.view()), probs2.view(), &ce))
    });
    g.bench_function("kl_div_with_grad batchmean", |b| {
        b.iter(|| infoloss::kl_div_with_grad(black_box(logp.view()), probs2.view(), &bm))
    });
    g.bench_function("binary_cross_entropy_with_grad", |b| {
        b.iter(|| {
            infoloss::binary_cross_entropy_with_grad(
                black_box(unit.view()),
                binary.view(),
                &BceOptions::default(),
            )
        })
    });
    let bl = BceWithLogitsOptions { pos_weight: Some(pos_weight.view()), ..Default::default() };
    g.bench_function("binary_cross_entropy_with_logits_with_grad pos_weight", |b| {
        b.iter(|| {
            infoloss::binary_cross_entropy_with_logits_with_grad(black_box(logits.view()), binary.view(), &bl)
        })
    });
    // the in-place elementwise variants write the gradient over the input (the training path)
    let mut scratch_logp = logp.clone();
    g.bench_function("kl_div_with_grad_in_place batchmean", |b| {
        b.iter(|| infoloss::kl_div_with_grad_in_place(scratch_logp.view_mut(), probs2.view(), &bm))
    });
    g.bench_function("binary_cross_entropy_with_grad_in_place", |b| {
        // a fresh input each time: the gradient written over it leaves [0, 1]
        b.iter_batched_ref(
            || unit.clone(),
            |x| {
                infoloss::binary_cross_entropy_with_grad_in_place(
                    x.view_mut(),
                    binary.view(),
                    &BceOptions::default(),
                )
            },
            BatchSize::LargeInput,
        )
    });
    let mut scratch_logits = logits.clone();
    g.bench_function("binary_cross_entropy_with_logits_with_grad_in_place pos_weight", |b| {
        b.iter(|| {
            infoloss::binary_cross_entropy_with_logits_with_grad_in_place(
                scratch_logits.view_mut(),
                binary.view(),
                &bl,
            )
        })
    });
    let kd = DistillOptions { temperature: 2.0, ..Default::default() };
    g.bench_function("distill_with_grad forward KL T=2", |b| {
        b.iter(|| distill_with_grad(black_box(logits.view()), logits2.view(), None, &kd))
    });
    let uo = UdaOptions { temperature: 0.4, confidence_threshold: Some(0.5), ..Default::default() };
    g.bench_function("uda_consistency T=0.4 threshold=0.5", |b| {
        b.iter(|| uda_consistency_with_grad(black_box(logits2.view()), logits.view(), &uo))
    });
    g.bench_function("jensenshannon axis=1 (forward)", |b| {
        let o = JensenShannonOptions { axis: 1, ..Default::default() };
        b.iter(|| infoloss::jensenshannon(black_box(probs.view()), probs2.view(), &o))
    });
    g.throughput(Throughput::Bytes(bytes(1)));
    g.bench_function("entropy axis=1 (forward)", |b| {
        let o = EntropyOptions { base: None, axis: 1 };
        b.iter(|| infoloss::entropy(black_box(probs.view()), None, &o))
    });
    g.finish();
}

/// The half types: the same calls on `bf16` and `f16` copies of the inputs (half the bytes of `f32`;
/// the issue's target is at least `f32`'s speed per element).
fn losses_half(c: &mut Criterion) {
    fn group<T: infoloss::Element + Copy>(c: &mut Criterion, name: &str, from: fn(f32) -> T) {
        let logits = matrix(1, |u| 4.0 * u);
        let logp = log_softmax_rows(&logits).mapv(from);
        let probs2 = log_softmax_rows(&matrix(2, |u| 4.0 * u)).mapv(f32::exp).mapv(from);
        let binary = matrix(4, |u| if u > 0.4 { 1.0 } else { 0.0 }).mapv(from);
        let logits = logits.mapv(from);
        let targets = Array1::from_shape_fn(ROWS, |i| ((i * 7919) % CLASSES) as i64);
        let bm = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
        let mut g = c.benchmark_group(format!("losses_{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Bytes((2 * ROWS * CLASSES * std::mem::size_of::<T>()) as u64));
        let src = logits.clone();
        let mut dst = logits.clone();
        g.bench_function("memcpy (1 read + 1 write)", |b| b.iter(|| dst.assign(black_box(&src))));
        let mut scratch = logits.clone();
        g.bench_function("cross_entropy_with_grad_in_place", |b| {
            b.iter(|| {
                infoloss::cross_entropy_with_grad_in_place(
                    scratch.view_mut(),
                    targets.view(),
                    &CrossEntropyOptions::default(),
                )
            })
        });
        g.throughput(Throughput::Bytes((3 * ROWS * CLASSES * std::mem::size_of::<T>()) as u64));
        g.bench_function("kl_div_with_grad batchmean", |b| {
            b.iter(|| infoloss::kl_div_with_grad(black_box(logp.view()), probs2.view(), &bm))
        });
        let mut scratch_logp = logp.clone();
        g.bench_function("kl_div_with_grad_in_place batchmean", |b| {
            b.iter(|| infoloss::kl_div_with_grad_in_place(scratch_logp.view_mut(), probs2.view(), &bm))
        });
        g.bench_function("binary_cross_entropy_with_logits_with_grad", |b| {
            b.iter(|| {
                infoloss::binary_cross_entropy_with_logits_with_grad(
                    black_box(logits.view()),
                    binary.view(),
                    &BceWithLogitsOptions::default(),
                )
            })
        });
        g.finish();
    }
    group(c, "bf16", infoloss::half::bf16::from_f32);
    group(c, "f16", infoloss::half::f16::from_f32);
}

criterion_group!(benches, losses, losses_half);
criterion_main!(benches);
