//! The distillation losses (dense and top-k teacher) and UDA consistency: the `f32` fast path against the
//! `f64` reference, over every divergence, temperature, `alpha` mix, reduction, non-finite rows and half
//! types.
//!
//! # Tolerance
//!
//! The fast path computes in `f32` (sums flushed into `f64`), the reference in `f64` rounded once. Two
//! cancellations make an `f32` result differ from the exact one by more than a relative `1e-6` when the
//! result is small against its terms: the loss `Σ q·(β − α) + ln Z_a − ln Z_b` (and its reverse), whose
//! terms are of the size of `Σ q·(|log q| + |log p|)`, and the gradient `c·(p − q)` (`c·p·(log p − log q
//! − KL)`), whose terms are of the size of `|c|·(p·(1 + |log p|) + q·(1 + |log q|))` (an `f32` rounding of
//! the argument `(s − max)/T` changes `p` by that relative amount). So each value must satisfy
//!
//! ```text
//! |fast − reference| ≤ 1e-6·|reference| + 1e-30 + 8·ε₃₂·M        (ε₃₂ = 2⁻²⁴)
//! ```
//!
//! with `M` the magnitude of its cancelling terms computed here in `f64` (the loss: the reduction's
//! weights times the per-row magnitudes; the cross-entropy part adds `|lse(s)| + |s_y|`, its gradient
//! `|c_ce|·(p₁ + [i = y])`). For `f16`/`bf16` results one more rounding step of the element type is
//! allowed (the fast path rounds an `f32` value, the reference an `f64` one). NaN and ±inf must be where
//! the reference has them, exactly.

use super::{EPS32, LENGTHS_0, Oracle, Rng, Tol, bits, narrow as cv, vals, wide as fv};
use infoloss::distill::{DistillOptions, Divergence, distill, distill_backward, distill_with_grad};
use infoloss::half::{bf16, f16};
use infoloss::ndarray::{Array1, Array2, ArrayView1};
use infoloss::uda::{Sharpen, UdaNormalize, UdaOptions, uda_consistency_backward, uda_consistency_with_grad};
use infoloss::{Element, GradOutput, Reduction};
use infoloss::{with_fast_path, with_reference_path};

const SCALES: &[f64] = &[1e-30, 1e-3, 1.0, 10.0, 1e3, 1e30];

/// `rows × c` logits `scale·u` (u uniform in (−1, 1)); the teacher is the student plus noise of the same
/// scale (so that the divergence is small against its terms, the hard case), or independent.
fn logits(rows: usize, c: usize, scale: f64, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = Rng(seed);
    let close = rng.below(2) == 0;
    let mut s = Array2::zeros((rows, c));
    let mut t = Array2::zeros((rows, c));
    for v in s.iter_mut() {
        *v = scale * (2.0 * rng.unit() - 1.0);
    }
    for (v, &x) in t.iter_mut().zip(s.iter()) {
        let u = scale * (2.0 * rng.unit() - 1.0);
        *v = if close { x + 0.3 * u } else { u };
    }
    (s, t)
}

/// Labels in `[0, c)`, every third one `ignore_index`.
fn labels(rows: usize, c: usize, seed: u64) -> Array1<i64> {
    let mut rng = Rng(seed ^ 0xabcdef);
    (0..rows).map(|r| if r % 3 == 1 { -100 } else { rng.below(c.max(1)) as i64 }).collect()
}

fn log_softmax(x: &[f64], temp: f64) -> Vec<f64> {
    let m = x.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v / temp));
    let z: f64 = x.iter().map(|&v| (v / temp - m).exp()).sum();
    x.iter().map(|&v| v / temp - m - z.ln()).collect()
}

/// The cancelling-term magnitudes of one row: `(loss, per-element gradient)` for soft factor `c` and
/// cross-entropy factor `cc` (label `y`).
fn magnitudes(
    s: &[f64],
    t: &[f64],
    temp: f64,
    div: Divergence,
    y: Option<usize>,
    c: f64,
    cc: f64,
) -> (f64, f64, Vec<f64>) {
    let (lp, lq) = (log_softmax(s, temp), log_softmax(t, temp));
    // the reverse KL's gradient is c·p·w with w = log p − log q − KL(p‖q): a relative error of p is
    // multiplied by |w|
    // and w itself is evaluated from f32 differences of log-probability-sized terms
    let (mut rkl, mut ep_abs) = (0.0f64, 0.0f64);
    for (&a, &b) in lp.iter().zip(&lq) {
        if a.exp() != 0.0 {
            rkl += a.exp() * (a - b);
            ep_abs += a.exp() * (a.abs() + b.abs());
        }
    }
    let reverse = matches!(div, Divergence::ReverseKl | Divergence::GeneralizedJsd { beta: 1.0 });
    let tvd = div == Divergence::TotalVariation;
    // generalized JSD (0 < β < 1): λ_p = ln(p/m) from f32 ratios, so its error is ε·(the relative
    // errors of p, q, m), and the gradient c·(1−β)·p·(λ_p − Σ p λ_p) multiplies p's error by
    // |λ_p − Σ p λ_p|
    let jsd_beta = match div {
        Divergence::GeneralizedJsd { beta } if beta > 0.0 && beta < 1.0 => Some(beta),
        _ => None,
    };
    let lam = |i: usize| -> (f64, f64) {
        let (p, q) = (lp[i].exp(), lq[i].exp());
        let b = jsd_beta.unwrap_or(0.5);
        let m = b * q + (1.0 - b) * p;
        ((p / m).ln(), (q / m).ln())
    };
    let dlam = |i: usize| 4.0 + lp[i].abs() + lq[i].abs() + lam(i).0.abs();
    let (mut kpm, mut ep_jsd) = (0.0f64, 0.0f64);
    if jsd_beta.is_some() {
        for (i, l) in lp.iter().enumerate() {
            let p = l.exp();
            if p != 0.0 {
                kpm += p * lam(i).0;
                ep_jsd += p * (dlam(i) + lam(i).0.abs());
            }
        }
    }
    // total variation: where p ≈ q to f32 rounding the sign of p − q may differ from the reference's,
    // which moves that element's gradient by c·p_i and every element's by c·p_j·p_i
    let near_tie = |i: usize| {
        let (p, q) = (lp[i].exp(), lq[i].exp());
        (p - q).abs() <= 16.0 * EPS32 * (p * (2.0 + lp[i].abs()) + q * (2.0 + lq[i].abs()))
    };
    let tie_mass: f64 =
        if tvd { (0..s.len()).filter(|&i| near_tie(i)).map(|i| lp[i].exp()).sum() } else { 0.0 };
    let lp1 = log_softmax(s, 1.0);
    // The reference's own error: its f64 sums cancel terms of the size of the logits/T (visible for
    // logits of 1e30), expressed in units of ε₃₂.
    let big = s.iter().chain(t).fold(0.0f64, |a, &v| a.max((v / temp).abs())) * 2f64.powi(-29);
    let mut soft = 1.0 + big;
    let mut g = Vec::with_capacity(s.len());
    // `w·|l|` with `0·anything = 0`
    let term = |w: f64, l: f64| if w == 0.0 { 0.0 } else { w * l.abs() };
    for i in 0..s.len() {
        let (p, q) = (lp[i].exp(), lq[i].exp());
        soft += term(q, lq[i]) + term(q, lp[i]) + term(p, lp[i]) + term(p, lq[i]);
        if jsd_beta.is_some() {
            let (a, b) = lam(i);
            soft += term(p, 4.0 + a) + term(q, 4.0 + b);
        }
        let pm = if jsd_beta.is_some() {
            (2.0 + lp[i].abs() + big) * (1.0 + (lam(i).0 - kpm).abs()) + dlam(i) + 2.0 * big + ep_jsd
        } else if reverse {
            (2.0 + lp[i].abs() + big) * (1.0 + (lp[i] - lq[i] - rkl).abs()) + lq[i].abs() + ep_abs
        } else if tvd {
            let tie = if near_tie(i) { 1.0 } else { 0.0 };
            2.0 + lp[i].abs() + big + ep_abs + (tie + tie_mass) / (8.0 * EPS32)
        } else {
            2.0 + lp[i].abs() + big
        };
        let mut m = c.abs() * (term(p, pm) + term(q, 2.0 + lq[i].abs()));
        if let Some(y) = y {
            m += cc.abs() * (term(lp1[i].exp(), 2.0 + lp1[i].abs()) + if i == y { 1.0 } else { 0.0 });
        }
        g.push(m);
    }
    let ce = y.map_or(0.0, |y| (lp1[y] - s[y]).abs() + s[y].abs() + 1.0);
    (soft, ce, g)
}

/// One rounding step of `T` at `x` (0 for `f32`: both paths round the same way there... up to the
/// tolerance's own terms).
fn step_of<T: Element>(x: f64) -> f64 {
    let bits = std::mem::size_of::<T>();
    if bits >= 4 || x == 0.0 || !x.is_finite() {
        return 0.0;
    }
    let (mant, min_exp) = if fv(cv::<T>(1.0 + 1.0 / 256.0)) == 1.0 { (7, -133) } else { (10, -24) };
    let e = x.abs().log2().floor() as i32;
    2f64.powi((e - mant).max(min_exp))
}

/// `1e-6·|reference| + 1e-30 + 8·ε₃₂·mag[i] + step` (a NaN magnitude, from a non-finite row, counts 0).
fn tol<T: Element>(mag: Vec<f64>) -> Tol<'static> {
    Tol::by(move |i, f, r| {
        let m = mag.get(i).copied().filter(|m| !m.is_nan()).unwrap_or(0.0);
        1e-6 * r.abs() + 1e-30 + 8.0 * EPS32 * m + step_of::<T>(r.abs().max(f.abs()))
    })
}

/// Runs `distill`, `distill_with_grad` and `distill_backward` (per-row upstream for `None`) on both paths
/// and compares them.
fn compare<T: Element>(
    run: &mut super::Run<'_>,
    what: &str,
    (s64, t64): (&Array2<f64>, &Array2<f64>),
    y: Option<ArrayView1<'_, i64>>,
    o: &DistillOptions,
) {
    let s = s64.mapv(cv::<T>);
    let t = t64.mapv(cv::<T>);
    // magnitudes from the rounded inputs
    let (sr, tr) = (s.mapv(fv), t.mapv(fv));
    let (rows, c) = s.dim();
    let kept: Vec<Option<Option<usize>>> = (0..rows)
        .map(|r| match y {
            None => Some(None),
            Some(y) if y[r] == o.ignore_index => None,
            Some(y) => Some(Some(y[r] as usize)),
        })
        .collect();
    let n = o.normalizer.unwrap_or(kept.iter().filter(|k| k.is_some()).count() as f64);
    let (sd, hd) = match o.reduction {
        Reduction::BatchMean => (n, n),
        Reduction::Mean => (n * c as f64, n),
        _ => (1.0, 1.0),
    };
    let ct = if o.t2_scaling { o.temperature * o.temperature } else { 1.0 };
    let (sw, hw) = (o.alpha * ct, 1.0 - o.alpha);
    let up: Vec<f64> = (0..rows).map(|r| [1.0, -0.5, 2.0, 0.0][r % 4]).collect();
    let none = o.reduction == Reduction::None;
    let (mut lmag_total, mut lmag_rows, mut gmag, mut gmag_up) = (0.0, vec![0.0; rows], vec![], vec![]);
    for r in 0..rows {
        let (srow, trow) = (sr.row(r).to_vec(), tr.row(r).to_vec());
        match kept[r] {
            None => {
                gmag.extend(std::iter::repeat_n(0.0, c));
                gmag_up.extend(std::iter::repeat_n(0.0, c));
            }
            Some(lab) => {
                let lab = if o.alpha < 1.0 { lab } else { None };
                let (cs, cc) = (sw / sd / o.temperature, hw / hd);
                let (ls, lc, g) = magnitudes(&srow, &trow, o.temperature, o.divergence, lab, cs, cc);
                lmag_rows[r] = sw * ls + hw * lc;
                lmag_total += sw * ls / sd + hw * lc / hd;
                gmag_up.extend(g.iter().map(|m| m * up[r].abs()));
                gmag.extend(g);
            }
        }
    }
    let lmag = if none { lmag_rows } else { vec![lmag_total] };
    let loss = run.compare(
        &format!("{what}: distill"),
        || distill(s.view(), t.view(), y, o).unwrap(),
        [tol::<T>(lmag)],
    );
    // the grad of `_with_grad`; its loss is the forward's, bit for bit
    let (fl, _) = run.compare_by(
        &format!("{what}: distill_with_grad"),
        || distill_with_grad(s.view(), t.view(), y, o).unwrap(),
        |_| vec![Tol::by(|_, _, _| f64::INFINITY).on("loss"), tol::<T>(gmag.clone()).on("grad")],
    );
    assert_eq!(bits(&fl), bits(&loss), "{what}: with_grad's loss differs from the forward's");
    // an upstream gradient: per row for `None`, a scalar otherwise
    let ua: Array1<T> = up.iter().map(|&v| cv::<T>(v)).collect();
    let g = if none { GradOutput::Array(ua.view().into_dyn()) } else { GradOutput::Scalar(cv::<T>(-0.5)) };
    let m: Vec<f64> = if none { gmag_up } else { gmag.iter().map(|v| v * 0.5).collect() };
    let f = || distill_backward(s.view(), t.view(), y, o, &g).unwrap();
    run.compare(&format!("{what}: distill_backward"), f, [tol::<T>(m)]);
}

fn opts(temperature: f64, alpha: f64, divergence: Divergence, reduction: Reduction) -> DistillOptions {
    DistillOptions { temperature, alpha, divergence, reduction, ..Default::default() }
}

/// A generalized JSD strictly between the KLs (its own kernel pass).
const JSD: Divergence = Divergence::GeneralizedJsd { beta: 0.3 };

const FAST_DIVS: [Divergence; 8] = [
    Divergence::ForwardKl,
    Divergence::ReverseKl,
    Divergence::GeneralizedJsd { beta: 0.0 },
    Divergence::GeneralizedJsd { beta: 1.0 },
    Divergence::GeneralizedJsd { beta: 0.1 },
    Divergence::GeneralizedJsd { beta: 0.5 },
    Divergence::GeneralizedJsd { beta: 0.9 },
    Divergence::TotalVariation,
];

fn sweep<T: Element>(name: &'static str) {
    let rows = |c| if c >= 32000 { 2 } else { 5 };
    let summary = Oracle::new(name).sizes(LENGTHS_0, rows).magnitudes(SCALES).check(|run| {
        let (c, k) = (run.size, run.index + 1);
        let (s, t) = logits(run.rows, c, run.magnitude, k);
        let y = labels(run.rows, c, k);
        for div in FAST_DIVS {
            for (temp, alpha) in [(1.0, 1.0), (2.0, 0.6), (0.7, 1.0), (1.0, 0.3)] {
                // no labels for rows of no class
                let alpha = if c == 0 { 1.0 } else { alpha };
                let reduction = [Reduction::BatchMean, Reduction::Sum, Reduction::None, Reduction::Mean]
                    [(k as usize + (temp * 10.0) as usize) % 4];
                let o = opts(temp, alpha, div, reduction);
                let lab = (c > 0 && (alpha < 1.0 || k % 2 == 0)).then(|| y.view());
                compare::<T>(run, &format!("{div:?} T={temp} alpha={alpha} {reduction}"), (&s, &t), lab, &o);
            }
        }
    });
    eprintln!("{name}: worst difference {:.3} of the tolerance", summary.worst);
}

#[test]
fn fast_matches_reference_f32() {
    sweep::<f32>("distill f32");
}

#[test]
fn fast_matches_reference_f16() {
    sweep::<f16>("distill f16");
}

#[test]
fn fast_matches_reference_bf16() {
    sweep::<bf16>("distill bf16");
}

/// Every reduction, T² on and off, a normalizer, alpha mixes with ignored rows.
#[test]
fn every_reduction_and_mix() {
    let (s, t) = logits(7, 50, 3.0, 99);
    let y = labels(7, 50, 99);
    Oracle::new("distill, reductions and mixes").shapes(&[(7, 50)]).magnitudes(&[3.0]).check(|run| {
        for div in [Divergence::ForwardKl, Divergence::ReverseKl, Divergence::TotalVariation, JSD] {
            for reduction in [Reduction::BatchMean, Reduction::Mean, Reduction::Sum, Reduction::None] {
                for (alpha, temp, t2, normalizer) in [
                    (1.0, 1.0, true, None),
                    (0.5, 1.0, false, None),
                    (0.7, 4.0, true, Some(11.0)),
                    (0.01, 0.5, true, None),
                ] {
                    let normalizer =
                        normalizer.filter(|_| matches!(reduction, Reduction::BatchMean | Reduction::Mean));
                    let o = DistillOptions {
                        temperature: temp,
                        t2_scaling: t2,
                        alpha,
                        divergence: div,
                        reduction,
                        normalizer,
                        ..Default::default()
                    };
                    let what = format!("{div:?} {reduction} alpha={alpha} T={temp} t2={t2} n={normalizer:?}");
                    compare::<f32>(run, &what, (&s, &t), Some(y.view()), &o);
                    compare::<bf16>(run, &what, (&s, &t), Some(y.view()), &o);
                }
            }
        }
    });
}

/// NaN and ±inf logits in either input: the same non-finite values as the reference, the other rows
/// unaffected.
#[test]
fn non_finite_rows_match_the_reference() {
    let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    Oracle::new("distill, non-finite rows").sizes(&[1, 9, 33, 1025], |_| 4).check(|run| {
        let c = run.size;
        for (k, &v) in specials.iter().enumerate() {
            for side in 0..2 {
                let (mut s, mut t) = logits(4, c, 2.0, 7 + k as u64);
                let target = if side == 0 { &mut s } else { &mut t };
                target[[0, c / 2]] = v;
                target[[2, 0]] = v;
                target[[2, c - 1]] = v;
                // a row of −inf
                target.row_mut(3).fill(f64::NEG_INFINITY);
                let y = labels(4, c, 3);
                for div in [Divergence::ForwardKl, Divergence::ReverseKl, Divergence::TotalVariation, JSD] {
                    for (temperature, alpha) in [(1.0, 1.0), (2.0, 0.5)] {
                        let o = DistillOptions {
                            temperature,
                            alpha,
                            divergence: div,
                            reduction: Reduction::None,
                            ..Default::default()
                        };
                        let what = format!("{v} side={side} {div:?} T={temperature}");
                        compare::<f32>(run, &what, (&s, &t), Some(y.view()), &o);
                        compare::<f16>(run, &what, (&s, &t), Some(y.view()), &o);
                    }
                }
            }
        }
    });
    // a non-finite upstream gradient takes the reference for the whole call
    let (s, t) = logits(3, 8, 1.0, 5);
    let (s, t) = (s.mapv(|v| v as f32), t.mapv(|v| v as f32));
    let (o, g) = (DistillOptions::default(), GradOutput::Scalar(f32::NAN));
    Oracle::new("distill, NaN upstream").check(|run| {
        run.compare(
            "distill_backward",
            || distill_backward(s.view(), t.view(), None, &o, &g).unwrap(),
            [Tol::exact()],
        );
    });
}

/// The fast path really is taken (its `f32` results are not the reference's rounded `f64` ones) and the
/// switch selects it.
#[test]
fn the_switch_selects_the_path() {
    let (s, t) = logits(16, 1000, 4.0, 3);
    let (s, t) = (s.mapv(|v| v as f32), t.mapv(|v| v as f32));
    for divergence in [Divergence::ForwardKl, JSD] {
        let o = DistillOptions { temperature: 2.0, divergence, ..Default::default() };
        let grad = || bits(&distill_with_grad(s.view(), t.view(), None, &o).unwrap().1);
        let (fast, slow) = super::both(grad);
        assert_ne!(fast, slow, "{divergence:?}: fast and reference paths gave the same bits");
        assert_eq!(fast, with_reference_path(|| with_fast_path(grad)));
    }
}

#[test]
fn bit_identical_for_1_2_3_threads() {
    fn all<T: Element>(run: &mut super::Run<'_>, s: &Array2<T>, t: &Array2<T>, y: ArrayView1<'_, i64>) {
        for div in [Divergence::ForwardKl, Divergence::ReverseKl, Divergence::TotalVariation, JSD] {
            for (temp, alpha, reduction) in
                [(1.0, 1.0, Reduction::BatchMean), (2.0, 0.5, Reduction::None), (0.7, 0.8, Reduction::Sum)]
            {
                let o = opts(temp, alpha, div, reduction);
                let what = format!("distill_with_grad {div:?} T={temp} alpha={alpha} {reduction}");
                run.identical(&what, || distill_with_grad(s.view(), t.view(), Some(y), &o).unwrap());
            }
        }
        for sharpen in [Sharpen::Target, Sharpen::Augmented] {
            let o = UdaOptions {
                temperature: 0.6,
                sharpen,
                confidence_threshold: Some(0.05),
                ..Default::default()
            };
            run.identical(&format!("uda {sharpen:?}"), || {
                let u = uda_consistency_with_grad(t.view(), s.view(), &o).unwrap();
                (vec![u.loss], u.grad, u.row_kl)
            });
        }
    }
    let shapes = [(37, 1000), (5, 32000), (300, 17)];
    Oracle::new("distill and uda").shapes(&shapes).threads(&[1, 2, 3]).check(|run| {
        let (s, t) = logits(run.rows, run.size, 3.0, run.rows as u64);
        let y = labels(run.rows, run.size, 1);
        all(run, &s.mapv(|v| v as f32), &t.mapv(|v| v as f32), y.view());
        all(run, &s.mapv(bf16::from_f64), &t.mapv(bf16::from_f64), y.view());
    });
}

/// Equal student and teacher rows: loss and gradient exactly 0 on the fast path too (as the reference).
#[test]
fn equal_rows_give_exactly_zero() {
    let (s, _) = logits(5, 1025, 3.0, 12);
    let s = s.mapv(|v| v as f32);
    for div in [Divergence::ForwardKl, Divergence::ReverseKl, Divergence::TotalVariation, JSD] {
        for temp in [1.0, 2.0, 0.7] {
            let o = DistillOptions { temperature: temp, divergence: div, ..Default::default() };
            let (l, g) = distill_with_grad(s.view(), s.view(), None, &o).unwrap();
            assert_eq!(vals(&l), vec![0.0], "{div:?} T={temp}");
            assert!(g.iter().all(|&v| v == 0.0), "{div:?} T={temp}");
        }
    }
    let u = uda_consistency_with_grad(s.view(), s.view(), &UdaOptions::default()).unwrap();
    assert_eq!(u.loss, 0.0);
    assert!(u.grad.iter().all(|&v| v == 0.0));
}

// ---------------------------------------------------------------------------------------------
// UDA

/// UDA: loss, gradient, mask, kept count and per-row KL of both paths, both sharpening sides, with and
/// without a confidence threshold, both normalizations, an upstream gradient.
fn compare_uda<T: Element>(
    run: &mut super::Run<'_>,
    what: &str,
    ori64: &Array2<f64>,
    aug64: &Array2<f64>,
    o: &UdaOptions,
) {
    let ori = ori64.mapv(cv::<T>);
    let aug = aug64.mapv(cv::<T>);
    let (to, ta) = match o.sharpen {
        Sharpen::Target => (o.temperature, 1.0),
        Sharpen::Augmented => (1.0, o.temperature),
    };
    let (rows, c) = ori.dim();
    let (or, ar) = (ori.mapv(fv), aug.mapv(fv));
    // the magnitudes of loss, per-row KL and gradient, given the reference's mask and kept count
    let magnitudes = |mask: &Array1<T>, kept: usize| {
        let denom = match o.normalize {
            UdaNormalize::KeptRows => kept.max(1) as f64,
            UdaNormalize::AllRows => rows as f64,
        };
        let (mut lm, mut rowm, mut gm) = (0.0, vec![], vec![]);
        for r in 0..rows {
            let m = fv(mask[r]);
            // the KL of softmax(ori/T_o) against softmax(aug/T_a): magnitudes with per-side temperatures
            let lq = log_softmax(&or.row(r).to_vec(), to);
            let lp = log_softmax(&ar.row(r).to_vec(), ta);
            let mut rm = 1.0;
            for i in 0..c {
                let (p, q) = (lp[i].exp(), lq[i].exp());
                let term = |w: f64, l: f64| if w == 0.0 { 0.0 } else { w * l };
                rm += term(q, lq[i].abs() + lp[i].abs()) + term(p, lq[i].abs() + lp[i].abs());
                gm.push(m / denom / ta * (term(p, 2.0 + lp[i].abs()) + term(q, 2.0 + lq[i].abs())));
            }
            rowm.push(rm);
            lm += m * rm / denom;
        }
        (lm, rowm, gm)
    };
    let mut grad_mag = vec![];
    run.compare_by(
        &format!("{what}: uda_consistency_with_grad"),
        || {
            let u = uda_consistency_with_grad(ori.view(), aug.view(), o).unwrap();
            (u.mask, vec![u.kept as f64], vec![u.loss], u.row_kl, u.grad)
        },
        |(mask, kept, ..)| {
            let (lm, rowm, gm) = magnitudes(mask, kept[0] as usize);
            grad_mag = gm.clone();
            let parts = [Tol::exact().on("mask"), Tol::exact().on("kept"), tol::<T>(vec![lm]).on("loss")];
            parts.into_iter().chain([tol::<T>(rowm).on("row_kl"), tol::<T>(gm).on("grad")]).collect()
        },
    );
    let g = GradOutput::Scalar(cv::<T>(-2.5));
    let gm: Vec<f64> = grad_mag.iter().map(|v| v * 2.5).collect();
    let f = || uda_consistency_backward(ori.view(), aug.view(), o, &g).unwrap();
    run.compare(&format!("{what}: uda_consistency_backward"), f, [tol::<T>(gm)]);
}

#[test]
fn uda_fast_matches_reference() {
    let rows = |c| if c >= 32000 { 2 } else { 9 };
    let oracle = Oracle::new("uda")
        .sizes(&[1, 7, 16, 17, 33, 129, 1025, 32000], rows)
        .magnitudes(&[1e-3, 1.0, 5.0, 1e3]);
    oracle.check(|run| {
        let (aug, ori) = logits(run.rows, run.size, run.magnitude, 1001 + run.index);
        for sharpen in [Sharpen::Target, Sharpen::Augmented] {
            for (temperature, confidence_threshold, normalize) in [
                (1.0, None, UdaNormalize::KeptRows),
                (0.4, Some(0.5), UdaNormalize::KeptRows),
                (2.0, Some(0.05), UdaNormalize::AllRows),
                (0.85, None, UdaNormalize::AllRows),
            ] {
                let o = UdaOptions { temperature, sharpen, confidence_threshold, normalize };
                let what = format!("{sharpen:?} T={temperature} thr={confidence_threshold:?} {normalize:?}");
                compare_uda::<f32>(run, &what, &ori, &aug, &o);
                compare_uda::<bf16>(run, &what, &ori, &aug, &o);
            }
        }
    });
}

#[test]
fn uda_non_finite_rows_match_the_reference() {
    Oracle::new("uda, non-finite rows").check(|run| {
        for &v in &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for side in 0..2 {
                let (mut aug, mut ori) = logits(4, 20, 2.0, 77);
                let x = if side == 0 { &mut aug } else { &mut ori };
                x[[1, 3]] = v;
                x[[2, 0]] = v;
                for thr in [None, Some(0.2)] {
                    let o = UdaOptions { temperature: 0.5, confidence_threshold: thr, ..Default::default() };
                    compare_uda::<f32>(run, &format!("{v} side={side} thr={thr:?}"), &ori, &aug, &o);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Sparse (top-k) teacher

/// The teacher's top `k` classes of `t` (by value, first index first on ties) and their
/// log-probabilities at temperature `temp`.
fn topk_teacher(t: &Array2<f64>, k: usize, temp: f64) -> (Array2<i64>, Array2<f64>) {
    let rows = t.nrows();
    let (mut idx, mut lq) = (Array2::zeros((rows, k)), Array2::zeros((rows, k)));
    for r in 0..rows {
        let row = t.row(r).to_vec();
        let ls = log_softmax(&row, temp);
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for (j, &i) in order.iter().take(k).enumerate() {
            idx[[r, j]] = i as i64;
            lq[[r, j]] = ls[i];
        }
    }
    (idx, lq)
}

/// `distill_topk` and `distill_topk_with_grad` on both paths. Bounds: `1e-5·|reference|` plus 64 `f32`
/// roundings of the terms the fast path forms in `f32` — the student's log-sum-exps (size
/// `2 + ln C + max|s|/T`) multiplied, for the gradient, by `|c|·(p_i + [i in top-k])·S` with `S` the row's
/// gradient L1 norm over `|c|` (every bucket factor `e_b`, `Σ e` is below it), and the cross-entropy's
/// `|c_ce|·softmax(s)_i·(2 + |log softmax(s)_i|)`.
fn compare_topk<T: Element>(
    run: &mut super::Run<'_>,
    what: &str,
    (s64, t64): (&Array2<f64>, &Array2<f64>),
    (k, tail): (usize, bool),
    o: &DistillOptions,
    y: Option<ArrayView1<'_, i64>>,
) {
    use infoloss::distill::{SparseTeacher, distill_topk, distill_topk_with_grad};
    let (idx, lq64) = topk_teacher(t64, k, o.temperature);
    let s = s64.mapv(cv::<T>);
    let lq = lq64.mapv(cv::<T>);
    let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: tail };
    let (rows, c) = s.dim();
    let sr = s.mapv(fv);
    // the soft and cross-entropy coefficients of the gradient, as in `compare`
    let kept = (0..rows).filter(|&r| y.is_none_or(|y| y[r] != o.ignore_index)).count() as f64;
    let (sd, hd) = match o.reduction {
        Reduction::BatchMean => (kept, kept),
        Reduction::Mean => (kept * c as f64, kept),
        _ => (1.0, 1.0),
    };
    let ct = if o.t2_scaling { o.temperature * o.temperature } else { 1.0 };
    let (cs, cc) = ((o.alpha * ct / sd / o.temperature).abs(), ((1.0 - o.alpha) / hd).abs());
    // the magnitudes of loss and gradient, given the reference's gradient
    let magnitudes = |rg: &Array2<T>| {
        let (mut gmag, mut lmag) = (Vec::new(), Vec::new());
        for r in 0..rows {
            let row = sr.row(r).to_vec();
            let big = row.iter().fold(0.0f64, |a, &v| a.max((v / o.temperature).abs()));
            let lse = 2.0 + (c as f64).ln() + big;
            let (lp, lp1) = (log_softmax(&row, o.temperature), log_softmax(&row, 1.0));
            let gl1: f64 = (0..c).map(|i| fv(rg[[r, i]]).abs()).sum();
            let mut top = vec![false; c];
            for &j in idx.row(r) {
                top[j as usize] = true;
            }
            let lq_max = lq64.row(r).iter().fold(0.0f64, |a, &v| a.max(v.abs()).min(1e30));
            let label = y.map(|y| y[r]).filter(|&v| v != o.ignore_index).map(|v| v as usize);
            for i in 0..c {
                let (p, p1) = (lp[i].exp(), lp1[i].exp());
                let topk = if top[i] { 1.0 } else { 0.0 };
                // the bucket factors e_b come from differences of log-probabilities (size |c|·(1 + |log q|))
                let soft = lse * (cs * (p + topk * (1.0 + lq_max)) + gl1 * (p + topk));
                let ce = if label.is_some() {
                    cc * (p1 * (2.0 + lp1[i].abs()) + if label == Some(i) { 1.0 } else { 0.0 })
                } else {
                    0.0
                };
                gmag.push(soft + ce);
            }
            lmag.push(lse * (1.0 + lq_max + lp.iter().fold(0.0f64, |a, &v| a.max(v.abs()).min(1e30))));
        }
        let lm = if o.reduction == Reduction::None { lmag } else { vec![lmag.iter().sum::<f64>()] };
        (lm, gmag)
    };
    let tol = |mag: Vec<f64>| {
        Tol::by(move |i, f, r| {
            1e-5 * r.abs() + 1e-30 + 64.0 * EPS32 * mag[i] + step_of::<T>(r.abs().max(f.abs()))
        })
    };
    let mut reference_grad = Vec::new();
    let (fl, fg) = run.compare_by(
        what,
        || distill_topk_with_grad(s.view(), &teacher, y, o).unwrap(),
        |(_, rg)| {
            let (lm, gm) = magnitudes(rg);
            reference_grad = bits(rg);
            vec![tol(lm).on("loss"), tol(gm).on("grad")]
        },
    );
    let plain = distill_topk(s.view(), &teacher, y, o).unwrap();
    assert_eq!(bits(&plain), bits(&fl), "{what}: with_grad's loss differs from the forward's");
    // the fast path must be the one taken: equal bits everywhere would mean it is not
    let smax = sr.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
    if T::DTYPE == infoloss::DType::F32 && c >= 64 && k < c && (0.5..50.0).contains(&smax) {
        assert_ne!(bits(&fg), reference_grad, "{what}: fast and reference gave the same bits");
    }
}

#[test]
fn topk_fast_matches_reference() {
    let rows = |c| if c >= 32000 { 2 } else { 4 };
    let oracle = Oracle::new("distill_topk").sizes(&[1, 7, 17, 33, 129, 1025, 32000], rows);
    let summary = oracle.magnitudes(&[1e-30, 1.0, 10.0, 1e3, 1e30]).check(|run| {
        let (c, seed) = (run.size, 101 + run.index);
        let (s, t) = logits(run.rows, c, run.magnitude, seed);
        let y = labels(run.rows, c, seed);
        for k in [1, 5.min(c), c] {
            for div in [Divergence::ForwardKl, Divergence::ReverseKl, JSD, Divergence::TotalVariation] {
                for (temp, alpha, tail) in
                    [(1.0, 1.0, false), (2.0, 0.6, true), (0.7, 1.0, true), (1.0, 0.3, true)]
                {
                    let reduction =
                        [Reduction::BatchMean, Reduction::None, Reduction::Sum][seed as usize % 3];
                    let o = opts(temp, alpha, div, reduction);
                    let lab = (alpha < 1.0).then(|| y.view());
                    let what = format!("k={k} {div:?} T={temp} alpha={alpha} tail={tail}");
                    compare_topk::<f32>(run, &what, (&s, &t), (k, tail), &o, lab);
                    if c <= 1025 {
                        compare_topk::<bf16>(run, &what, (&s, &t), (k, tail), &o, lab);
                    }
                }
            }
        }
    });
    eprintln!("top-k: worst difference {:.3} of the tolerance", summary.worst);
}

/// Wall-clock times of both paths on the bench's shapes (4096 × 32000, 2 threads), printed, never
/// compared with a threshold: `cargo test --release -p infoloss --test integration -- --ignored --nocapture oracle::distill::timing`.
#[test]
#[ignore]
fn timing_fast_vs_reference() {
    fn run<T: Element + Send + Sync>(name: &str) {
        let (rows, c) = (4096, 32000);
        let mut rng = Rng(1);
        let s: Array2<T> =
            Array2::from_shape_simple_fn((rows, c), || cv::<T>(4.0 * (2.0 * rng.unit() - 1.0)));
        let t: Array2<T> =
            Array2::from_shape_simple_fn((rows, c), || cv::<T>(4.0 * (2.0 * rng.unit() - 1.0)));
        let y = labels(rows, c, 1).mapv(|v| v.max(0));
        // INFOLOSS_TIMING_FAST_ONLY=1 skips the (slow) reference
        let fast_only = std::env::var_os("INFOLOSS_TIMING_FAST_ONLY").is_some();
        let time = |f: &dyn Fn()| {
            let mut v: Vec<f64> = (0..3)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    f();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v[1]
        };
        let ops: [(&str, Divergence, f64); 5] = [
            ("kd", Divergence::ForwardKl, 1.0),
            ("kd-reverse", Divergence::ReverseKl, 1.0),
            ("kd-mix", Divergence::ForwardKl, 0.5),
            ("kd-jsd", Divergence::GeneralizedJsd { beta: 0.5 }, 1.0),
            ("kd-tvd", Divergence::TotalVariation, 1.0),
        ];
        for (op, divergence, alpha) in ops {
            let o = DistillOptions { temperature: 2.0, divergence, alpha, ..Default::default() };
            let lab = (alpha < 1.0).then(|| y.view());
            let f = || drop(distill_with_grad(s.view(), t.view(), lab, &o).unwrap());
            let fast = time(&f);
            let fwd = time(&|| drop(distill(s.view(), t.view(), lab, &o).unwrap()));
            let slow = if fast_only { f64::NAN } else { time(&|| with_reference_path(f)) };
            eprintln!("{name} {op}: fast {fast:.0} ms (loss alone {fwd:.0} ms), reference {slow:.0} ms");
        }
        {
            use infoloss::distill::{SparseTeacher, distill_topk, distill_topk_with_grad};
            let (idx, lq) = topk_teacher(&t.mapv(fv), 64, 2.0);
            let lq = lq.mapv(cv::<T>);
            let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
            let o = DistillOptions { temperature: 2.0, ..Default::default() };
            let f = || drop(distill_topk_with_grad(s.view(), &teacher, None, &o).unwrap());
            let fast = time(&f);
            let fwd = time(&|| drop(distill_topk(s.view(), &teacher, None, &o).unwrap()));
            let slow = if fast_only { f64::NAN } else { time(&|| with_reference_path(f)) };
            eprintln!(
                "{name} kd-topk (k=64, tail): fast {fast:.0} ms (loss alone {fwd:.0} ms), reference {slow:.0} ms"
            );
        }
        let o = UdaOptions { temperature: 0.4, confidence_threshold: Some(0.5), ..Default::default() };
        let f = || drop(uda_consistency_with_grad(t.view(), s.view(), &o).unwrap());
        let fast = time(&f);
        let slow = if fast_only { f64::NAN } else { time(&|| with_reference_path(f)) };
        eprintln!("{name} uda: fast {fast:.0} ms, reference {slow:.0} ms");
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        run::<f32>("f32");
        run::<bf16>("bf16");
    });
}
