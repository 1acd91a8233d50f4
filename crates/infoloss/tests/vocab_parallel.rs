//! Vocab-parallel losses: over 1, 2 and 3 ranks (threads of a `LocalGroup`), even and uneven slices,
//! every option, they equal the single-process loss of the gathered logits; faults are errors naming
//! the rank, within the timeout.

use std::time::{Duration, Instant};

use infoloss::distill::{DistillOptions, Divergence, distill_with_grad};
use infoloss::ndarray::{Array1, Array2, ArrayView2, Axis, concatenate, s};
use infoloss::vocab_parallel::{
    Collective, LocalGroup, LocalMember, VocabShard, vocab_parallel_cross_entropy_with_grad,
    vocab_parallel_distill_with_grad,
};
use infoloss::{CrossEntropyExtrasOptions, Error, Loss, Reduction, cross_entropy_extras_with_grad};

use crate::support::{Rng, on_threads};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The slice bounds of the splits tested for `v` classes: one rank; even 2 and 3; an uneven 3 with a
/// one-class slice; 3 with an empty slice.
fn splits(v: usize) -> Vec<Vec<usize>> {
    vec![vec![0, v], vec![0, v / 2, v], vec![0, v / 3, 2 * v / 3, v], vec![0, 1, v - 2, v], vec![0, 4, 4, v]]
}

/// Runs `f(rank's member, its shard)` on one thread per rank and returns the results in rank order.
fn run_ranks<R: Send>(
    bounds: &[usize],
    total: usize,
    f: impl Fn(&LocalMember, VocabShard) -> R + Sync,
) -> Vec<R> {
    let members = LocalGroup::members(bounds.len() - 1, TIMEOUT);
    std::thread::scope(|sc| {
        let hs: Vec<_> = members
            .into_iter()
            .map(|m| {
                let f = &f;
                sc.spawn(move || {
                    let r = m.rank();
                    let shard = VocabShard::new(bounds[r], bounds[r + 1] - bounds[r], total).unwrap();
                    f(&m, shard)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The columns of `shard` of `x`.
fn part<'a, T>(x: &'a Array2<T>, shard: VocabShard) -> ArrayView2<'a, T> {
    x.slice(s![.., shard.start..shard.start + shard.len])
}

/// The gradient slices of the ranks side by side, in logical order.
fn gather(parts: Vec<Array2<f64>>) -> Vec<f64> {
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(1), &views).unwrap().iter().copied().collect()
}

/// The elements in logical order.
fn flat<T: Copy + Into<f64>>(a: &Array2<T>) -> Vec<f64> {
    a.iter().map(|&v| v.into()).collect()
}

fn losses(l: &Loss<f64>) -> Vec<f64> {
    match l {
        Loss::Scalar(v) => vec![*v],
        Loss::Elementwise(a) => a.iter().copied().collect(),
    }
}

/// `|a − b| ≤ atol + rtol·|b|`, NaN where NaN.
fn close(what: &str, a: &[f64], b: &[f64], rtol: f64, atol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= atol + rtol * y.abs();
        assert!(ok, "{what}[{i}]: {x} vs {y}");
    }
}

fn logits(rng: &mut Rng, rows: usize, v: usize, scale: f64) -> Array2<f64> {
    rng.array(&[rows, v], |r| scale * r.normal()).into_dimensionality().unwrap()
}

#[test]
fn cross_entropy_over_ranks_equals_the_gathered_loss_for_every_option() {
    let mut rng = Rng(7);
    let (rows, v) = (6, 11);
    let x = logits(&mut rng, rows, v, 3.0);
    let weight: Array1<f64> = (0..v).map(|k| 0.5 + k as f64 / 7.0).collect();
    // Targets in every slice, an ignored row; and every row ignored.
    let targets = [Array1::from(vec![0i64, 10, 3, -100, 5, 1]), Array1::from(vec![-100i64; rows])];
    let mut cases = 0;
    for target in &targets {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            for (eps, zs, cap, weighted) in [
                (0.0, 0.0, None, false),
                (0.1, 0.0, None, true),
                (0.2, 1e-3, Some(4.0), false),
                (0.05, 1e-2, Some(2.0), true),
            ] {
                let w = weighted.then(|| weight.view());
                let opts = CrossEntropyExtrasOptions {
                    weight: w,
                    reduction,
                    label_smoothing: eps,
                    lse_square_scale: zs,
                    softcap: cap,
                    ..Default::default()
                };
                let whole = cross_entropy_extras_with_grad(x.view(), target.view(), &opts).unwrap();
                for bounds in splits(v) {
                    let outs = run_ranks(&bounds, v, |m, shard| {
                        let w = weighted.then(|| weight.slice(s![shard.start..shard.start + shard.len]));
                        let o = CrossEntropyExtrasOptions { weight: w, ..opts.clone() };
                        vocab_parallel_cross_entropy_with_grad(part(&x, shard), target.view(), shard, &o, m)
                            .unwrap()
                    });
                    let what = format!("{bounds:?} {reduction:?} eps={eps} z={zs} cap={cap:?} w={weighted}");
                    for o in &outs {
                        close(&what, &losses(&o.loss), &losses(&outs[0].loss), 0.0, 0.0); // the same bits on every rank
                        close(&what, &losses(&o.loss), &losses(&whole.loss), 1e-13, 1e-15);
                        close(&what, &losses(&o.z_loss), &losses(&whole.z_loss), 1e-13, 1e-15);
                    }
                    let g = gather(outs.into_iter().map(|o| o.grad).collect());
                    close(&what, &g, &flat(&whole.grad), 1e-12, 1e-15);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 2 * 3 * 4 * 5);
}

#[test]
fn distill_over_ranks_equals_the_gathered_loss_for_every_option() {
    let mut rng = Rng(11);
    let (rows, v) = (5, 13);
    let st = logits(&mut rng, rows, v, 2.0);
    let mut te = logits(&mut rng, rows, v, 2.0);
    te[[1, 3]] = f64::NEG_INFINITY; // a class the teacher rules out
    let labels = Array1::from(vec![12i64, -100, 0, 6, 7]);
    let divergences = [
        Divergence::ForwardKl,
        Divergence::ReverseKl,
        Divergence::GeneralizedJsd { beta: 0.3 },
        Divergence::GeneralizedJsd { beta: 0.0 },
        Divergence::GeneralizedJsd { beta: 1.0 },
        Divergence::TotalVariation,
    ];
    let mut cases = 0;
    for divergence in divergences {
        for reduction in [Reduction::BatchMean, Reduction::Mean, Reduction::Sum, Reduction::None] {
            for (temperature, t2_scaling, alpha, with_labels, normalizer, logit_scale, softcap) in [
                (1.0, true, 1.0, false, None, 1.0, None),
                (2.0, true, 0.7, true, None, 1.0, None),
                (0.5, false, 1.0, true, Some(9.0), 1.5, Some(3.0)),
                (3.0, true, 0.0, true, None, 0.8, Some(5.0)),
            ] {
                let normalizer =
                    normalizer.filter(|_| matches!(reduction, Reduction::BatchMean | Reduction::Mean));
                let opts = DistillOptions {
                    temperature,
                    t2_scaling,
                    divergence,
                    alpha,
                    reduction,
                    normalizer,
                    logit_scale,
                    softcap,
                    ..Default::default()
                };
                let lab = with_labels.then(|| labels.view());
                let (loss, grad) = distill_with_grad(st.view(), te.view(), lab, &opts).unwrap();
                for bounds in splits(v) {
                    let outs = run_ranks(&bounds, v, |m, shard| {
                        vocab_parallel_distill_with_grad(
                            part(&st, shard),
                            part(&te, shard),
                            lab,
                            shard,
                            &opts,
                            m,
                        )
                        .unwrap()
                    });
                    let what = format!("{bounds:?} {opts:?}");
                    for o in &outs {
                        close(&what, &losses(&o.loss), &losses(&outs[0].loss), 0.0, 0.0); // the same bits on every rank
                        close(&what, &losses(&o.loss), &losses(&loss), 1e-12, 1e-14);
                    }
                    let g = gather(outs.into_iter().map(|o| o.grad).collect());
                    close(&what, &g, &flat(&grad), 1e-11, 1e-14);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 6 * 4 * 4 * 5);
}

#[test]
fn f32_over_ranks_is_within_a_few_roundings_of_the_single_process_loss() {
    let mut rng = Rng(3);
    let (rows, v) = (9, 1031); // rows crossing SIMD lanes and blocks
    let x = logits(&mut rng, rows, v, 4.0).mapv(|a| a as f32);
    let t = logits(&mut rng, rows, v, 4.0).mapv(|a| a as f32);
    let y: Array1<i64> = (0..rows as i64).map(|i| (i * 131) % v as i64).collect();
    let opts =
        CrossEntropyExtrasOptions { label_smoothing: 0.1, lse_square_scale: 1e-4, ..Default::default() };
    let whole = cross_entropy_extras_with_grad(x.view(), y.view(), &opts).unwrap();
    let dopts = DistillOptions { temperature: 2.0, alpha: 0.5, ..Default::default() };
    let (dl, dg) = distill_with_grad(x.view(), t.view(), Some(y.view()), &dopts).unwrap();
    let bounds = [0, 300, 700, v];
    let outs = run_ranks(&bounds, v, |m, shard| {
        let ce = vocab_parallel_cross_entropy_with_grad(part(&x, shard), y.view(), shard, &opts, m).unwrap();
        let d = vocab_parallel_distill_with_grad(
            part(&x, shard),
            part(&t, shard),
            Some(y.view()),
            shard,
            &dopts,
            m,
        )
        .unwrap();
        (ce, d)
    });
    let f = |l: &Loss<f32>| l.scalar().unwrap() as f64;
    // f32 single-process results carry a few f32 roundings of their own (the fast path sums in f32 lanes).
    let tol = 16.0 * crate::support::EPS32;
    close("ce f32", &[f(&outs[0].0.loss)], &[f(&whole.loss)], tol, 0.0);
    close("distill f32", &[f(&outs[0].1.loss)], &[f(&dl)], tol, 0.0);
    let g: Vec<Array2<f64>> = outs.iter().map(|o| o.0.grad.mapv(f64::from)).collect();
    let max_g = whole.grad.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    close("ce grad f32", &gather(g), &flat(&whole.grad), tol, tol * max_g);
    let g: Vec<Array2<f64>> = outs.iter().map(|o| o.1.grad.mapv(f64::from)).collect();
    let max_g = dg.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    close("distill grad f32", &gather(g), &flat(&dg), tol, tol * max_g);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut rng = Rng(5);
    let (rows, v) = (17, 257);
    let x = logits(&mut rng, rows, v, 3.0);
    let t = logits(&mut rng, rows, v, 3.0);
    let y: Array1<i64> = (0..rows as i64).map(|i| (i * 37) % v as i64).collect();
    let bounds = [0, 100, v];
    let run = |threads| {
        on_threads(threads, || {
            run_ranks(&bounds, v, |m, shard| {
                let o = DistillOptions {
                    divergence: Divergence::GeneralizedJsd { beta: 0.4 },
                    ..Default::default()
                };
                let d =
                    vocab_parallel_distill_with_grad(part(&x, shard), part(&t, shard), None, shard, &o, m)
                        .unwrap();
                let c = vocab_parallel_cross_entropy_with_grad(
                    part(&x, shard),
                    y.view(),
                    shard,
                    &Default::default(),
                    m,
                )
                .unwrap();
                (d, c)
            })
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}

/// The error of rank `r` in `outs`, as text.
fn err_text<T>(outs: &[Result<T, Error>], r: usize) -> String {
    match &outs[r] {
        Err(e) => e.to_string(),
        Ok(_) => panic!("rank {r} succeeded"),
    }
}

#[test]
fn ranks_that_disagree_are_named() {
    let x = Array2::<f64>::zeros((4, 10));
    let y = Array1::from(vec![0i64, 1, 2, 3]);
    // Rank 1 has one row fewer.
    let outs = run_ranks(&[0, 5, 10], 10, |m, shard| {
        let rows = if m.rank() == 1 { 3 } else { 4 };
        let xs = x.slice(s![..rows, shard.start..shard.start + shard.len]);
        vocab_parallel_cross_entropy_with_grad(xs, y.slice(s![..rows]), shard, &Default::default(), m)
    });
    for r in 0..2 {
        assert!(err_text(&outs, r).contains("rank 1 has 3 rows, rank 0 has 4"), "{}", err_text(&outs, r));
    }
    // Overlapping slices: [0, 6) and [4, 10).
    let outs = run_ranks(&[0, 5, 10], 10, |m, _| {
        let shard =
            if m.rank() == 0 { VocabShard::new(0, 6, 10) } else { VocabShard::new(4, 6, 10) }.unwrap();
        vocab_parallel_cross_entropy_with_grad(part(&x, shard), y.view(), shard, &Default::default(), m)
    });
    assert!(
        err_text(&outs, 0).contains("rank 1's vocabulary slice [4, 10) overlaps"),
        "{}",
        err_text(&outs, 0)
    );
    // Different targets.
    let outs = run_ranks(&[0, 5, 10], 10, |m, shard| {
        let y = if m.rank() == 0 { y.clone() } else { Array1::from(vec![0i64, 1, 2, 4]) };
        vocab_parallel_cross_entropy_with_grad(part(&x, shard), y.view(), shard, &Default::default(), m)
    });
    assert!(err_text(&outs, 1).contains("rank 1's targets or options differ"), "{}", err_text(&outs, 1));
    // A target outside the whole vocabulary: the same error on the rank that checks it.
    let bad = Array1::from(vec![0i64, 1, 10, 3]);
    let e = vocab_parallel_cross_entropy_with_grad(
        x.view(),
        bad.view(),
        VocabShard::new(0, 10, 10).unwrap(),
        &Default::default(),
        &infoloss::vocab_parallel::SingleProcess,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "vocab_parallel_cross_entropy: target 10 at [2] is out of range for 10 classes"
    );
}

#[test]
fn a_failed_or_silent_rank_is_an_error_within_the_timeout() {
    let x = Array2::<f64>::zeros((4, 10));
    let y = Array1::from(vec![0i64, 1, 2, 3]);
    // Rank 2 fails before its first collective (a Python exception, a panic unwinding its member).
    let start = Instant::now();
    let outs = run_ranks(&[0, 3, 6, 10], 10, |m, shard| {
        if m.rank() == 2 {
            m.fail();
            return Err(Error::collective("test", 2, "raised"));
        }
        vocab_parallel_cross_entropy_with_grad(part(&x, shard), y.view(), shard, &Default::default(), m)
    });
    assert!(start.elapsed() < TIMEOUT / 2, "a failed peer is noticed at once");
    for r in 0..2 {
        assert!(err_text(&outs, r).contains("rank 2 left the group"), "{}", err_text(&outs, r));
    }
    // A rank that never calls: the others time out, naming it.
    let members = LocalGroup::members(2, Duration::from_millis(300));
    let start = Instant::now();
    let e = std::thread::scope(|sc| {
        let mut it = members.into_iter();
        let (m0, m1) = (it.next().unwrap(), it.next().unwrap());
        let h = sc.spawn(move || {
            let mut v = [1.0];
            m0.all_reduce_sum(&mut v)
        });
        let e = h.join().unwrap().unwrap_err();
        drop(m1);
        e
    });
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
    assert!(e.to_string().contains("timed out after 300ms waiting for rank(s) [1]"), "{e}");
}
