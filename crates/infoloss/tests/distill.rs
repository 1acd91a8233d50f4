//! Distillation and UDA consistency: central finite differences in f64 for every option, property tests, errors.
//! (Their PyTorch fixtures, `testdata/distill.json` and `testdata/uda.json`, run in `fixtures.rs`.)
//!
//! Fixture tolerances: every result is compared with the exact value (the fixture's PyTorch code run in float64
//! on the same inputs) at rtol 1e-12 / atol 1e-13 (f64) and rtol 1e-6 / atol 1e-7 (f32); float32 results are also
//! compared with PyTorch's own float32 result, whose rounding error is larger than ours (see `TORCH_F32`).

use infoloss::distill::{
    DistillOptions, Divergence, SparseTeacher, distill, distill_backward, distill_topk,
    distill_topk_backward, distill_topk_with_grad, distill_with_grad,
};
use infoloss::ndarray::{Array1, Array2, ArrayView1, array};
use infoloss::uda::{Sharpen, UdaNormalize, UdaOptions, uda_consistency_with_grad, uda_total};
use infoloss::{Element, GradOutput, Loss, Real, Reduction};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn cv<T: Element>(x: f64) -> T {
    T::from_acc(<T::Acc as Real>::c(x))
}

fn fv<T: Element>(x: T) -> f64 {
    x.to_acc().f64()
}

/// Max over elements of `|got − exp| / (atol + rtol·|exp|)`; NaN/inf must match exactly. Returns the ratio
/// (≤ 1 passes) or panics on a non-finite mismatch.
fn ratio(what: &str, got: &[f64], exp: &[f64], rtol: f64, atol: f64) -> f64 {
    assert_eq!(got.len(), exp.len(), "{what}: lengths");
    let mut worst = 0.0f64;
    for (i, (&g, &e)) in got.iter().zip(exp).enumerate() {
        if e.is_nan() || g.is_nan() || e.is_infinite() || g.is_infinite() {
            assert!(
                (e.is_nan() && g.is_nan()) || e == g,
                "{what}[{i}]: got {g}, expected {e} (non-finite values must match)"
            );
            continue;
        }
        worst = worst.max((g - e).abs() / (atol + rtol * e.abs()));
    }
    worst
}

fn check(what: &str, got: &[f64], exp: &[f64], rtol: f64, atol: f64) {
    let r = ratio(what, got, exp, rtol, atol);
    assert!(
        r <= 1.0,
        "{what}: off by {r:.3}× the tolerance (rtol {rtol:e}, atol {atol:e})\n got {got:?}\n exp {exp:?}"
    );
}

fn loss_vec<T: Element>(l: &Loss<T>) -> Vec<f64> {
    match l {
        Loss::Scalar(v) => vec![fv(*v)],
        Loss::Elementwise(a) => a.iter().map(|&x| fv(x)).collect(),
    }
}

fn loss_scalar(l: &Loss<f64>) -> f64 {
    l.scalar().expect("scalar loss")
}

// ---------------------------------------------------------------------------------------------
// Central finite differences (f64) for every option
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random logits (xorshift), scale `scale`.
fn logits(rows: usize, cols: usize, seed: u64, scale: f64) -> Array2<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
    })
}

/// Scalar objective: the loss for reduced losses, `Σ_r u_r·loss_r` for `Reduction::None`.
fn objective(l: &Loss<f64>, u: &Array1<f64>) -> f64 {
    match l {
        Loss::Scalar(v) => *v,
        Loss::Elementwise(a) => a.iter().zip(u.iter()).map(|(x, w)| x * w).sum(),
    }
}

/// Compares `grad` with central differences of `f` at `s` (step 1e-5).
fn fd_check(what: &str, s: &Array2<f64>, grad: &Array2<f64>, f: impl Fn(&Array2<f64>) -> f64) {
    let h = 1e-5;
    let mut worst = 0.0f64;
    for i in 0..s.nrows() {
        for j in 0..s.ncols() {
            let mut sp = s.clone();
            sp[[i, j]] += h;
            let mut sm = s.clone();
            sm[[i, j]] -= h;
            let fd = (f(&sp) - f(&sm)) / (2.0 * h);
            let g = grad[[i, j]];
            let err = (fd - g).abs() / (1e-8 + 1e-6 * g.abs());
            worst = worst.max(err);
            assert!(err <= 1.0, "{what}: d/ds[{i},{j}] analytic {g}, finite difference {fd}");
        }
    }
    assert!(worst.is_finite());
}

const DIVS: [Divergence; 7] = [
    Divergence::ForwardKl,
    Divergence::ReverseKl,
    Divergence::GeneralizedJsd { beta: 0.0 },
    Divergence::GeneralizedJsd { beta: 0.25 },
    Divergence::GeneralizedJsd { beta: 0.5 },
    Divergence::GeneralizedJsd { beta: 1.0 },
    Divergence::TotalVariation,
];
const REDUCTIONS: [Reduction; 4] = [Reduction::BatchMean, Reduction::Mean, Reduction::Sum, Reduction::None];

/// (temperature, t2_scaling, alpha, labels?, normalizer?) combinations.
fn configs() -> Vec<(f64, bool, f64, bool, Option<f64>)> {
    vec![
        (1.0, true, 1.0, false, None),
        (2.5, true, 0.6, true, None),
        (0.7, false, 1.0, true, Some(9.0)),
        (3.0, true, 0.0, true, None),
    ]
}

#[test]
fn finite_differences_dense_every_option() {
    let s = logits(5, 6, 1, 2.5);
    let t = logits(5, 6, 2, 2.5);
    let y = array![2i64, -100, 5, 0, -100];
    let u = array![0.7, -1.3, 0.4, 2.0, 1.1];
    let mut n = 0;
    for div in DIVS {
        for red in REDUCTIONS {
            for (temperature, t2_scaling, alpha, with_labels, normalizer) in configs() {
                let normalizer =
                    if matches!(red, Reduction::BatchMean | Reduction::Mean) { normalizer } else { None };
                let o = DistillOptions {
                    temperature,
                    t2_scaling,
                    divergence: div,
                    alpha,
                    reduction: red,
                    normalizer,
                    ..Default::default()
                };
                let lab = with_labels.then(|| y.view());
                let grad = if red == Reduction::None {
                    distill_backward(s.view(), t.view(), lab, &o, &GradOutput::Array(u.view().into_dyn()))
                        .unwrap()
                } else {
                    distill_with_grad(s.view(), t.view(), lab, &o).unwrap().1
                };
                let what = format!(
                    "{div:?} {red} T={temperature} t2={t2_scaling} alpha={alpha} labels={with_labels}"
                );
                fd_check(&what, &s, &grad, |x| objective(&distill(x.view(), t.view(), lab, &o).unwrap(), &u));
                n += 1;
            }
        }
    }
    assert_eq!(n, 7 * 4 * 4);
}

#[test]
fn finite_differences_topk_every_option() {
    let s = logits(4, 9, 3, 2.0);
    let t = logits(4, 9, 4, 2.0);
    let y = array![1i64, 8, -100, 3];
    let u = array![1.5, -0.5, 0.9, 0.3];
    let k = 4;
    // teacher's top-k by logit, log-probabilities at T (computed in f64 here)
    let mut idx = Array2::<i64>::zeros((4, k));
    let mut lq = Array2::<f64>::zeros((4, k));
    for temperature in [1.0, 1.8] {
        for r in 0..4 {
            let row = t.row(r);
            let mut order: Vec<usize> = (0..9).collect();
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
            let lse = row.iter().map(|&v| (v / temperature).exp()).sum::<f64>().ln();
            for j in 0..k {
                idx[[r, j]] = order[j] as i64;
                lq[[r, j]] = row[order[j]] / temperature - lse;
            }
        }
        for add_tail in [false, true] {
            let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail };
            for div in DIVS {
                for red in REDUCTIONS {
                    for (alpha, with_labels) in [(1.0, false), (0.5, true)] {
                        let o = DistillOptions {
                            temperature,
                            divergence: div,
                            alpha,
                            reduction: red,
                            ..Default::default()
                        };
                        let lab = with_labels.then(|| y.view());
                        let grad = if red == Reduction::None {
                            distill_topk_backward(
                                s.view(),
                                &teacher,
                                lab,
                                &o,
                                &GradOutput::Array(u.view().into_dyn()),
                            )
                            .unwrap()
                        } else {
                            distill_topk_with_grad(s.view(), &teacher, lab, &o).unwrap().1
                        };
                        let what =
                            format!("topk tail={add_tail} {div:?} {red} T={temperature} alpha={alpha}");
                        fd_check(&what, &s, &grad, |x| {
                            objective(&distill_topk(x.view(), &teacher, lab, &o).unwrap(), &u)
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn finite_differences_uda_every_option() {
    let ori = logits(6, 5, 5, 2.0);
    let aug = &ori + &logits(6, 5, 6, 1.0);
    for sharpen in [Sharpen::Target, Sharpen::Augmented] {
        for temperature in [1.0, 0.4, 2.0] {
            for confidence_threshold in [None, Some(0.5)] {
                for normalize in [UdaNormalize::KeptRows, UdaNormalize::AllRows] {
                    let o = UdaOptions { temperature, sharpen, confidence_threshold, normalize };
                    let out = uda_consistency_with_grad(ori.view(), aug.view(), &o).unwrap();
                    if confidence_threshold.is_some() {
                        assert!(
                            out.kept > 0 && out.kept < 6,
                            "the threshold should keep some rows: {}",
                            out.kept
                        );
                    }
                    let what = format!("uda {o:?}");
                    fd_check(&what, &aug, &out.grad, |x| {
                        uda_consistency_with_grad(ori.view(), x.view(), &o).unwrap().loss
                    });
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn per_row(s: &Array2<f64>, t: &Array2<f64>, div: Divergence, temperature: f64) -> Vec<f64> {
    let o = DistillOptions {
        temperature,
        divergence: div,
        reduction: Reduction::None,
        t2_scaling: false,
        ..Default::default()
    };
    loss_vec(&distill(s.view(), t.view(), None, &o).unwrap())
}

fn arb_rows() -> impl Strategy<Value = (Array2<f64>, Array2<f64>, f64)> {
    (1usize..5, 1usize..12).prop_flat_map(|(r, c)| {
        (prop::collection::vec(-8.0f64..8.0, r * c), prop::collection::vec(-8.0f64..8.0, r * c), 0.25f64..4.0)
            .prop_map(move |(a, b, temp)| {
                (Array2::from_shape_vec((r, c), a).unwrap(), Array2::from_shape_vec((r, c), b).unwrap(), temp)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn jsd_endpoints_equal_the_kls((s, t, temp) in arb_rows()) {
        let fkl = per_row(&s, &t, Divergence::ForwardKl, temp);
        let rkl = per_row(&s, &t, Divergence::ReverseKl, temp);
        prop_assert_eq!(per_row(&s, &t, Divergence::GeneralizedJsd { beta: 0.0 }, temp), fkl);
        prop_assert_eq!(per_row(&s, &t, Divergence::GeneralizedJsd { beta: 1.0 }, temp), rkl);
        // and the gradients too
        for (beta, div) in [(0.0, Divergence::ForwardKl), (1.0, Divergence::ReverseKl)] {
            let o = DistillOptions { temperature: temp, divergence: div, ..Default::default() };
            let oj = DistillOptions { divergence: Divergence::GeneralizedJsd { beta }, ..o };
            let g = distill_with_grad(s.view(), t.view(), None, &o).unwrap().1;
            let gj = distill_with_grad(s.view(), t.view(), None, &oj).unwrap().1;
            prop_assert_eq!(g, gj);
        }
    }

    #[test]
    fn divergences_are_nonnegative_bounded_and_zero_on_equal_inputs((s, t, temp) in arb_rows()) {
        for div in DIVS.into_iter().chain([Divergence::GeneralizedJsd { beta: 0.8 }]) {
            for v in per_row(&s, &t, div, temp) {
                prop_assert!(v >= -1e-13, "{:?}: {}", div, v);
                if div == Divergence::TotalVariation {
                    prop_assert!(v <= 1.0 + 1e-15, "TVD {}", v);
                }
                if div == (Divergence::GeneralizedJsd { beta: 0.5 }) {
                    prop_assert!(v <= std::f64::consts::LN_2 + 1e-13, "JSD {}", v);
                }
            }
            for v in per_row(&s, &s, div, temp) {
                prop_assert!(v.abs() <= 1e-14, "{:?} with s = t: {}", div, v);
            }
            let o = DistillOptions { temperature: temp, divergence: div, ..Default::default() };
            let g = distill_with_grad(s.view(), s.view(), None, &o).unwrap().1;
            prop_assert!(g.iter().all(|x| x.abs() <= 1e-14), "{:?}: gradient at s = t {:?}", div, g);
        }
    }

    #[test]
    fn topk_with_k_equal_v_equals_dense((s, t, temp) in arb_rows(), rot in 0usize..12) {
        let (rows, cols) = s.dim();
        // indices: a rotation of 0..V per row; log-probabilities of softmax(t/T) at them
        let mut idx = Array2::<i64>::zeros((rows, cols));
        let mut lq = Array2::<f64>::zeros((rows, cols));
        for r in 0..rows {
            let lse = t.row(r).iter().map(|&v| v / temp).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = t.row(r).iter().map(|&v| (v / temp - lse).exp()).sum();
            for j in 0..cols {
                let c = (j + rot + r) % cols;
                idx[[r, j]] = c as i64;
                lq[[r, j]] = t[[r, c]] / temp - lse - z.ln();
            }
        }
        let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: false };
        for div in DIVS {
            for red in [Reduction::BatchMean, Reduction::None] {
                let o = DistillOptions { temperature: temp, divergence: div, reduction: red, ..Default::default() };
                let (ld, gd) = distill_with_grad(s.view(), t.view(), None, &o).unwrap();
                let (ls, gs) = distill_topk_with_grad(s.view(), &teacher, None, &o).unwrap();
                let (ld, ls) = (loss_vec(&ld), loss_vec(&ls));
                prop_assert!(ratio("loss", &ls, &ld, 1e-11, 1e-13) <= 1.0, "{:?} {}: {:?} vs {:?}", div, red, ls, ld);
                let gd: Vec<f64> = gd.iter().copied().collect();
                let gs: Vec<f64> = gs.iter().copied().collect();
                prop_assert!(ratio("grad", &gs, &gd, 1e-10, 1e-13) <= 1.0, "{:?} {}: {:?} vs {:?}", div, red, gs, gd);
            }
        }
    }

    #[test]
    fn shift_invariance_and_zero_sum_gradients((s, t, temp) in arb_rows(), c in -30.0f64..30.0) {
        for div in DIVS {
            let o = DistillOptions { temperature: temp, divergence: div, ..Default::default() };
            let (l1, g) = distill_with_grad(s.view(), t.view(), None, &o).unwrap();
            let l2 = distill((&s + c).view(), (&t - c).view(), None, &o).unwrap();
            let (a, b) = (loss_scalar(&l1), loss_scalar(&l2));
            prop_assert!((a - b).abs() <= 1e-11 * (1.0 + a.abs()), "{:?}: {} vs {}", div, a, b);
            for row in g.rows() {
                let scale: f64 = row.iter().map(|x| x.abs()).sum::<f64>() + 1e-300;
                prop_assert!(row.sum().abs() <= 1e-13 * scale.max(1.0), "{:?}: row sum {}", div, row.sum());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Semantics
// ---------------------------------------------------------------------------------------------

#[test]
fn t2_scaling_makes_the_forward_kl_gradient_t_times_p_minus_q() {
    let s = array![[1.0f64, -0.5, 2.0, 0.25]];
    let t = array![[0.0f64, 1.0, 1.5, -2.0]];
    let temp = 3.0;
    let o = DistillOptions { temperature: temp, ..Default::default() };
    let (_, g) = distill_with_grad(s.view(), t.view(), None, &o).unwrap();
    let sm = |x: ArrayView1<f64>| {
        let z: f64 = x.iter().map(|v| (v / temp).exp()).sum();
        x.mapv(|v| (v / temp).exp() / z)
    };
    let expected = (sm(s.row(0)) - sm(t.row(0))) * temp;
    for (a, b) in g.row(0).iter().zip(expected.iter()) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
    let o2 = DistillOptions { t2_scaling: false, ..o };
    let (_, g2) = distill_with_grad(s.view(), t.view(), None, &o2).unwrap();
    for (a, b) in g2.iter().zip(g.iter()) {
        assert!((a * temp * temp - b).abs() < 1e-15);
    }
}

#[test]
fn normalizer_splits_a_batch_into_micro_batches() {
    // Two micro-batches normalized by the global kept-row count add up to the full batch's batchmean.
    let s = logits(6, 7, 11, 3.0);
    let t = logits(6, 7, 12, 3.0);
    let y = array![1i64, -100, 4, 6, 0, -100];
    let o = DistillOptions { temperature: 2.0, alpha: 0.4, ..Default::default() };
    let (full, gfull) = distill_with_grad(s.view(), t.view(), Some(y.view()), &o).unwrap();
    let on = DistillOptions { normalizer: Some(4.0), ..o };
    let mut total = 0.0;
    for (lo, hi) in [(0, 2), (2, 6)] {
        let sl = s.slice(infoloss::ndarray::s![lo..hi, ..]);
        let tl = t.slice(infoloss::ndarray::s![lo..hi, ..]);
        let yl = y.slice(infoloss::ndarray::s![lo..hi]);
        let (l, g) = distill_with_grad(sl, tl, Some(yl), &on).unwrap();
        total += loss_scalar(&l);
        for (a, b) in g.iter().zip(gfull.slice(infoloss::ndarray::s![lo..hi, ..]).iter()) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
    }
    assert!((total - loss_scalar(&full)).abs() < 1e-14, "{total} vs {:?}", full);
    // Mean: soft part divided by normalizer·V, cross-entropy by normalizer
    let om = DistillOptions { reduction: Reduction::Mean, normalizer: Some(10.0), ..o };
    let os = DistillOptions { reduction: Reduction::Sum, ..o };
    let soft_only = |opts: DistillOptions| {
        loss_scalar(
            &distill(s.view(), t.view(), Some(y.view()), &DistillOptions { alpha: 1.0, ..opts }).unwrap(),
        )
    };
    assert!((soft_only(om) - soft_only(os) / 70.0).abs() < 1e-14);
}

#[test]
fn ignored_rows_are_dropped_from_both_terms() {
    let s = logits(4, 5, 21, 2.0);
    let mut t = logits(4, 5, 22, 2.0);
    // a NaN in an ignored row does not reach the result
    t[[1, 3]] = f64::NAN;
    let y = array![0i64, -100, 3, 2];
    let o = DistillOptions { alpha: 0.5, reduction: Reduction::None, ..Default::default() };
    let (l, g) = distill_with_grad(s.view(), t.view(), Some(y.view()), &o).unwrap();
    let l = loss_vec(&l);
    assert_eq!(l[1], 0.0);
    assert!(l.iter().all(|v| v.is_finite()));
    assert!(g.row(1).iter().all(|&v| v == 0.0));
    let kept_rows = [0usize, 2, 3];
    let s3 = s.select(infoloss::ndarray::Axis(0), &kept_rows);
    let t3 = t.select(infoloss::ndarray::Axis(0), &kept_rows);
    let y3 = array![0i64, 3, 2];
    let ob = DistillOptions { reduction: Reduction::BatchMean, ..o };
    let a = loss_scalar(&distill(s.view(), t.view(), Some(y.view()), &ob).unwrap());
    let b = loss_scalar(&distill(s3.view(), t3.view(), Some(y3.view()), &ob).unwrap());
    assert_eq!(a, b);
}

#[test]
fn non_finite_inputs() {
    // teacher -inf: the class contributes 0 (finite loss and gradient)
    let s = array![[0.5f64, 1.0, -1.0]];
    let t = array![[f64::NEG_INFINITY, 2.0, 0.0]];
    let (l, g) = distill_with_grad(s.view(), t.view(), None, &DistillOptions::default()).unwrap();
    assert!(loss_scalar(&l).is_finite() && g.iter().all(|v| v.is_finite()));
    // student -inf where the teacher has mass: +inf loss, finite gradient p − q
    let s = array![[f64::NEG_INFINITY, 1.0, -1.0]];
    let t = array![[0.0f64, 2.0, 0.0]];
    let (l, g) = distill_with_grad(s.view(), t.view(), None, &DistillOptions::default()).unwrap();
    assert_eq!(loss_scalar(&l), f64::INFINITY);
    assert!(g.iter().all(|v| v.is_finite()));
    // NaN logit: the row's loss and gradient are NaN
    let s = array![[f64::NAN, 1.0], [0.0, 1.0]];
    let t = array![[0.0f64, 1.0], [1.0, 0.0]];
    let o = DistillOptions { reduction: Reduction::None, ..Default::default() };
    let (l, g) = distill_with_grad(s.view(), t.view(), None, &o).unwrap();
    let l = loss_vec(&l);
    assert!(l[0].is_nan() && l[1].is_finite());
    assert!(g.row(0).iter().all(|v| v.is_nan()) && g.row(1).iter().all(|v| v.is_finite()));
    // empty batch: batchmean NaN, sum 0, none empty
    let e = Array2::<f64>::zeros((0, 4));
    assert!(loss_scalar(&distill(e.view(), e.view(), None, &DistillOptions::default()).unwrap()).is_nan());
    let os = DistillOptions { reduction: Reduction::Sum, ..Default::default() };
    assert_eq!(loss_scalar(&distill(e.view(), e.view(), None, &os).unwrap()), 0.0);
    // zero classes: every divergence is an empty sum
    let z = Array2::<f64>::zeros((2, 0));
    let (l, g) = distill_with_grad(z.view(), z.view(), None, &os).unwrap();
    assert_eq!((loss_scalar(&l), g.shape()), (0.0, &[2usize, 0][..]));
}

#[test]
fn topk_tail_bucket_accounts_for_the_missing_mass() {
    let s = array![[1.0f64, 2.0, 0.5, -1.0, 0.0]];
    let t = array![[0.2f64, 2.5, 1.0, -2.0, 0.3]];
    let lse = t.iter().map(|v| v.exp()).sum::<f64>().ln();
    let lq_all = t.mapv(|v| v - lse);
    let idx = array![[1i64, 2]];
    let lq = array![[lq_all[[0, 1]], lq_all[[0, 2]]]];
    let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
    let got = loss_scalar(&distill_topk(s.view(), &teacher, None, &DistillOptions::default()).unwrap());
    // by hand over buckets {1, 2, rest}
    let ls = s.iter().map(|v| v.exp()).sum::<f64>().ln();
    let lp = |c: usize| s[[0, c]] - ls;
    let p_rest: f64 = [0usize, 3, 4].iter().map(|&c| lp(c).exp()).sum();
    let q_rest: f64 = [0usize, 3, 4].iter().map(|&c| lq_all[[0, c]].exp()).sum();
    let want = lq_all[[0, 1]].exp() * (lq_all[[0, 1]] - lp(1))
        + lq_all[[0, 2]].exp() * (lq_all[[0, 2]] - lp(2))
        + q_rest * (q_rest.ln() - p_rest.ln());
    assert!((got - want).abs() < 1e-14, "{got} vs {want}");
    // without the tail the rest is ignored
    let teacher = SparseTeacher { add_tail: false, ..teacher };
    let got = loss_scalar(&distill_topk(s.view(), &teacher, None, &DistillOptions::default()).unwrap());
    let want = want - q_rest * (q_rest.ln() - p_rest.ln());
    assert!((got - want).abs() < 1e-14);
    // k = V with a tail: no teacher mass is missing, the tail bucket is empty on both sides
    let idx = array![[0i64, 1, 2, 3, 4]];
    let teacher = SparseTeacher { indices: idx.view(), logprobs: lq_all.view(), add_tail: true };
    let (l, g) = distill_topk_with_grad(s.view(), &teacher, None, &DistillOptions::default()).unwrap();
    let (ld, gd) = distill_with_grad(s.view(), t.view(), None, &DistillOptions::default()).unwrap();
    let (a, b) = (loss_scalar(&l), loss_scalar(&ld));
    assert!(a.is_infinite() || (a - b).abs() < 1e-12, "{a} vs {b}");
    if a.is_finite() {
        assert!(g.iter().zip(gd.iter()).all(|(x, y)| (x - y).abs() < 1e-12));
    }
}

#[test]
fn uda_sides_masks_and_normalization() {
    let ori = array![[3.0f64, 0.0, -1.0], [0.2, 0.1, 0.0], [-1.0, 2.5, 0.5]];
    let aug = array![[2.0f64, 0.5, -0.5], [0.0, 0.3, 0.1], [0.0, 1.0, 1.0]];
    let base = UdaOptions { temperature: 0.5, confidence_threshold: Some(0.6), ..Default::default() };
    let uda = |o: UdaOptions| uda_consistency_with_grad(ori.view(), aug.view(), &o).unwrap();
    let tgt = uda(base);
    assert_eq!(tgt.mask.to_vec(), vec![1.0, 0.0, 1.0]);
    assert_eq!(tgt.kept, 2);
    let sum_kept = tgt.row_kl[0] + tgt.row_kl[2];
    assert!((tgt.loss - sum_kept / 2.0).abs() < 1e-15);
    let all = uda(UdaOptions { normalize: UdaNormalize::AllRows, ..base });
    assert!((all.loss - sum_kept / 3.0).abs() < 1e-15);
    // the temperature goes to the named side
    let aug_side = uda(UdaOptions { sharpen: Sharpen::Augmented, ..base });
    assert_eq!(aug_side.mask, tgt.mask, "the mask uses the untempered softmax(ori) on both sides");
    assert!((aug_side.loss - tgt.loss).abs() > 1e-3);
    let manual = |o: &[f64], a: &[f64], to: f64, ta: f64| {
        let lse = |x: &[f64], t: f64| x.iter().map(|v| (v / t).exp()).sum::<f64>().ln();
        let (lo, la) = (lse(o, to), lse(a, ta));
        o.iter().zip(a).map(|(x, y)| (x / to - lo).exp() * ((x / to - lo) - (y / ta - la))).sum::<f64>()
    };
    let r0 = |x: &Array2<f64>| x.row(0).to_vec();
    assert!((tgt.row_kl[0] - manual(&r0(&ori), &r0(&aug), 0.5, 1.0)).abs() < 1e-14);
    assert!((aug_side.row_kl[0] - manual(&r0(&ori), &r0(&aug), 1.0, 0.5)).abs() < 1e-14);
    // masked rows: zero gradient; nothing kept: loss 0 with KeptRows
    assert!(tgt.grad.row(1).iter().all(|&v| v == 0.0));
    let none = uda_consistency_with_grad(
        ori.view(),
        aug.view(),
        &UdaOptions { confidence_threshold: Some(0.99), ..base },
    )
    .unwrap();
    assert_eq!((none.loss, none.kept), (0.0, 0));
    assert!(none.grad.iter().all(|&v| v == 0.0));
    // NaN in a masked row still poisons the loss (mask multiplies, as in PyTorch)
    let mut aug_nan = aug.clone();
    aug_nan[[1, 0]] = f64::NAN;
    assert!(uda_consistency_with_grad(ori.view(), aug_nan.view(), &base).unwrap().loss.is_nan());
    assert_eq!(uda_total(0.5, tgt.loss, 2.0), 0.5 + 2.0 * tgt.loss);
}

#[test]
fn half_precision_follows_f64() {
    let s = logits(3, 6, 31, 2.0);
    let t = logits(3, 6, 32, 2.0);
    let y = array![1i64, 4, -100];
    fn run<T: Element>(s: &Array2<f64>, t: &Array2<f64>, y: ArrayView1<i64>, tol: f64) {
        let sh = s.mapv(cv::<T>);
        let th = t.mapv(cv::<T>);
        // the f64 reference on the rounded inputs
        let s64 = sh.mapv(fv);
        let t64 = th.mapv(fv);
        for div in DIVS {
            let o = DistillOptions { temperature: 2.0, alpha: 0.5, divergence: div, ..Default::default() };
            let (l, g) = distill_with_grad(sh.view(), th.view(), Some(y), &o).unwrap();
            let (l64, g64) = distill_with_grad(s64.view(), t64.view(), Some(y), &o).unwrap();
            check("half loss", &loss_vec(&l), &loss_vec(&l64), tol, tol * 1e-2);
            let g: Vec<f64> = g.iter().map(|&x| fv(x)).collect();
            let g64: Vec<f64> = g64.iter().copied().collect();
            check("half grad", &g, &g64, tol, tol * 1e-2);
        }
        let u = uda_consistency_with_grad(
            sh.view(),
            th.view(),
            &UdaOptions { temperature: 0.5, ..Default::default() },
        )
        .unwrap();
        let u64 = uda_consistency_with_grad(
            s64.view(),
            t64.view(),
            &UdaOptions { temperature: 0.5, ..Default::default() },
        )
        .unwrap();
        check("half uda", &[fv(u.loss)], &[u64.loss], tol, tol * 1e-2);
    }
    // one rounding of the f64 result: half an ulp
    run::<infoloss::half::f16>(&s, &t, y.view(), 4.9e-4);
    run::<infoloss::half::bf16>(&s, &t, y.view(), 3.9e-3);
    // f32 to half an ulp: the reference (the fast path's f32 results are compared with it, to a few f32
    // roundings of the cancelling terms, in tests/oracle/distill.rs)
    infoloss::with_reference_path(|| run::<f32>(&s, &t, y.view(), 6e-8));
}

// ---------------------------------------------------------------------------------------------
// Errors (never panics)
// ---------------------------------------------------------------------------------------------

fn err_distill(s: &Array2<f64>, t: &Array2<f64>, y: Option<ArrayView1<i64>>, o: &DistillOptions) -> String {
    distill(s.view(), t.view(), y, o).unwrap_err().to_string()
}

#[test]
fn errors_name_what_is_wrong() {
    let s = logits(2, 3, 41, 1.0);
    let t = logits(2, 3, 42, 1.0);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = err_distill(&s, &t, None, &DistillOptions { temperature: bad, ..Default::default() });
        assert!(e.starts_with("distill: invalid temperature = "), "{e}");
    }
    let t4 = logits(2, 4, 43, 1.0);
    assert_eq!(
        err_distill(&s, &t4, None, &DistillOptions::default()),
        "distill: student shape [2, 3] and teacher shape [2, 4] must be equal"
    );
    let v = array![1.0f64, 2.0];
    let e = distill(v.view(), v.view(), None, &DistillOptions::default()).unwrap_err().to_string();
    assert_eq!(e, "distill: student has shape [2] (1 dimensions); expected 2 dimensions (rows × classes)");
    let y = array![0i64, 5];
    assert_eq!(
        err_distill(&s, &t, Some(y.view()), &DistillOptions::default()),
        "distill: target 5 at [1] is out of range for 3 classes"
    );
    let y3 = array![0i64, 1, 2];
    assert!(
        err_distill(&s, &t, Some(y3.view()), &DistillOptions::default())
            .contains("labels shape [3] and student shape [2, 3]")
    );
    let y = array![0i64, 1];
    let e = err_distill(&s, &t, Some(y.view()), &DistillOptions { alpha: 1.5, ..Default::default() });
    assert_eq!(e, "distill: invalid alpha = 1.5: must be in [0, 1]");
    let e = err_distill(&s, &t, None, &DistillOptions { alpha: 0.5, ..Default::default() });
    assert!(e.starts_with("distill: invalid alpha = 0.5: alpha < 1"), "{e}");
    let e = err_distill(
        &s,
        &t,
        None,
        &DistillOptions { divergence: Divergence::GeneralizedJsd { beta: -0.1 }, ..Default::default() },
    );
    assert_eq!(e, "distill: invalid beta = -0.1: must be in [0, 1]");
    let e = err_distill(&s, &t, None, &DistillOptions { normalizer: Some(0.0), ..Default::default() });
    assert_eq!(e, "distill: invalid normalizer = 0: must be a finite number > 0");
    let e = err_distill(
        &s,
        &t,
        None,
        &DistillOptions { normalizer: Some(8.0), reduction: Reduction::Sum, ..Default::default() },
    );
    assert!(e.contains("normalizer") && e.contains("sum"), "{e}");
    // upstream gradients
    let o = DistillOptions { reduction: Reduction::None, ..Default::default() };
    let g = array![1.0f64, 2.0, 3.0];
    let e =
        distill_backward(s.view(), t.view(), None, &o, &GradOutput::Array(g.view().into_dyn())).unwrap_err();
    assert_eq!(e.to_string(), "distill: grad_output shape [3] and output shape [2] must be equal");
    let e = distill_backward(
        s.view(),
        t.view(),
        None,
        &DistillOptions::default(),
        &GradOutput::Array(g.view().into_dyn()),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("distill: grad_output shape [3] and output shape []"), "{e}");

    // top-k
    let lq = array![[-0.5f64, -1.0], [-0.2, -2.0]];
    let run = |idx: Array2<i64>, lq: &Array2<f64>| {
        let teacher = SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: true };
        distill_topk(s.view(), &teacher, None, &DistillOptions::default()).unwrap_err().to_string()
    };
    assert_eq!(
        run(array![[0, 3], [1, 2]], &lq),
        "distill_topk: teacher indices value 3 at [0, 1] is out of range for 3 classes"
    );
    assert_eq!(
        run(array![[0, 1], [-1, 2]], &lq),
        "distill_topk: teacher indices value -1 at [1, 0] is out of range for 3 classes"
    );
    assert_eq!(
        run(array![[0, 1], [2, 2]], &lq),
        "distill_topk: teacher indices value 2 at [1, 1] repeats an index earlier in its row"
    );
    assert_eq!(
        run(array![[0, 1, 2], [0, 1, 2]], &lq),
        "distill_topk: teacher indices shape [2, 3] and teacher logprobs shape [2, 2] must be equal"
    );
    let lq3 = array![[-0.5f64, -1.0], [-0.2, -2.0], [-0.1, -0.3]];
    assert!(run(array![[0, 1], [1, 2], [0, 2]], &lq3).contains("must have the same number of rows"));

    // UDA
    let e = uda_consistency_with_grad(
        s.view(),
        t.view(),
        &UdaOptions { temperature: -1.0, ..Default::default() },
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "uda_consistency: invalid temperature = -1: must be a finite number > 0");
    let e = uda_consistency_with_grad(
        s.view(),
        t.view(),
        &UdaOptions { confidence_threshold: Some(f64::NAN), ..Default::default() },
    )
    .unwrap_err();
    assert!(e.to_string().contains("confidence_threshold"), "{e}");
    let e = uda_consistency_with_grad(s.view(), t4.view(), &UdaOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "uda_consistency: ori_logits shape [2, 3] and aug_logits shape [2, 4] must be equal"
    );
}
