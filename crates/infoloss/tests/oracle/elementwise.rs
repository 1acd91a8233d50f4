//! The elementwise losses — `kl_div`, `binary_cross_entropy`, `binary_cross_entropy_with_logits` — and
//! their gradients: the fast kernels against the reference, over row lengths, magnitudes, the task size,
//! NaN and ±∞, weights and `pos_weight` of every broadcast shape, every reduction and half types.
//!
//! # Tolerance
//!
//! Elementwise `|fast − reference| ≤ 1e-7 + 1e-6·|reference| + 4·ε_f32·bound` (ε_f32 = 2⁻²³), NaN and
//! ±∞ in exactly the same places. The two paths run the same operations in the same order; they
//! differ only in `exp`, `ln` and `log1p` (the crate's vectorized ones, ≤ 1 ulp, `log1p` ≈ 1.5 ulp,
//! against the platform's), so every transcendental term may differ by about two roundings of its
//! own magnitude. Where the formula then subtracts nearly equal terms — `t·ln t − t·x` in `kl_div`,
//! `(1 − t)·x − lw·logσ(x)` and `(p·t + 1 − t)·σ(x) − p·t` in BCE with logits — that difference is not
//! small relative to the result, only relative to the terms, so `bound` is the sum of the terms'
//! magnitudes (PyTorch, computing with yet another `exp`/`log`, is only that exact too). Where nothing
//! cancels `bound` is 0. For a reduced loss the bound is the sum of the elementwise bounds, divided as
//! the loss is.

use super::{LENGTHS_0, Oracle, Rng, SCALES, TASK_SIZES, Tol, bits, both, narrow, vals};
use infoloss::ndarray::{Array1, Array2, ArrayD, IxDyn};
use infoloss::{
    BceOptions, BceWithLogitsOptions, Element, GradOutput, KlDivOptions, Reduction, binary_cross_entropy,
    binary_cross_entropy_backward, binary_cross_entropy_backward_target, binary_cross_entropy_with_grad,
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_backward_target, binary_cross_entropy_with_logits_with_grad, kl_div,
    kl_div_backward, kl_div_backward_target, kl_div_with_grad, with_fast_path,
};

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// `1e-7 + 1e-6·|reference| + 4·ε_f32·bound[i]`.
fn tol(bound: Vec<f64>) -> Tol<'static> {
    Tol::terms(1e-7, 1e-6, 4.0 * f32::EPSILON as f64, bound)
}

/// Nothing cancels.
fn close() -> Tol<'static> {
    tol(Vec::new())
}

fn rows(c: usize) -> usize {
    if c >= 32000 { 2 } else { 3 }
}

/// All magnitudes for short rows, three for long ones.
fn long_rows_fewer_scales(c: usize, scale: f64) -> bool {
    c >= 1000 && ![1e-30, 1.0, 1e30].contains(&scale)
}

/// `|v|`, with non-finite values (and NaN) counted as 0, for bounds.
fn fin(v: f64) -> f64 {
    if v.is_finite() { v.abs() } else { 0.0 }
}

/// Loss bound: elementwise, or for a reduced loss the sum divided by `div`.
fn loss_bound(elem: &[f64], reduction: Reduction, div: f64) -> Vec<f64> {
    match reduction {
        Reduction::None => elem.to_vec(),
        _ => vec![fin(elem.iter().sum::<f64>() / div)],
    }
}

/// The upstream gradient of the `_backward` calls with `Reduction::None`.
fn upstream(n: usize, c: usize) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[n, c]), |i| 0.25 + ((i[0] * 7 + i[1]) % 5) as f32 * 0.5)
}

/// The upstream gradient: the array for `None`, else the scalar 0.7.
fn grad_out(reduction: Reduction, up: &ArrayD<f32>) -> GradOutput<'_, f32> {
    if reduction == Reduction::None { GradOutput::Array(up.view()) } else { GradOutput::Scalar(0.7) }
}

/// The per-element upstream gradient `g` (before any division) for a call.
fn g_at(reduction: Reduction, up: &ArrayD<f32>, backward: bool, i: usize) -> f64 {
    match (backward, reduction) {
        (false, _) => 1.0,
        (true, Reduction::None) => up.as_slice().and_then(|s| s.get(i)).copied().unwrap_or(0.0) as f64,
        (true, _) => 0.7,
    }
}

// ----------------------------------------------------------------------------------------------
// kl_div

/// `(x, t)` of shape `(n, c)`: `x = scale·(2u − 1)`; `t` probabilities with exact zeros (or, with
/// `log_target`, `scale·(2u − 1)` clipped below 80 so `exp` stays finite away from its threshold). With
/// `special`: NaN and ±∞ in both, `t = 0` with `x = −∞`, negative `t`.
fn kl_case(
    n: usize,
    c: usize,
    scale: f64,
    special: bool,
    log_target: bool,
    seed: u64,
) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng(seed);
    let mut x = Array2::from_shape_fn((n, c), |_| (scale * (2.0 * rng.unit() - 1.0)) as f32);
    let mut t = Array2::from_shape_fn((n, c), |_| {
        if log_target {
            (scale * (2.0 * rng.unit() - 1.0)).min(80.0) as f32
        } else if rng.below(4) == 0 {
            0.0
        } else {
            let u = rng.unit();
            (if rng.below(5) == 0 { u * scale } else { u }) as f32
        }
    });
    if special && n * c > 0 {
        let put = |a: &mut Array2<f32>, v: f32, rng: &mut Rng| {
            let (i, j) = (rng.below(n), rng.below(c));
            a[[i, j]] = v;
            (i, j)
        };
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            put(&mut x, v, &mut rng);
            put(&mut t, v, &mut rng);
        }
        put(&mut t, -0.5, &mut rng);
        let (i, j) = put(&mut x, f32::NEG_INFINITY, &mut rng);
        t[[i, j]] = 0.0;
    }
    (x, t)
}

/// `kl_div`, its gradients and `_with_grad` on both paths.
fn check_kl(run: &mut super::Run<'_>, x: &Array2<f32>, t: &Array2<f32>, opts: &KlDivOptions, tag: &str) {
    let (n, c) = x.dim();
    let (xv, tv) = (x.view(), t.view());
    let up = upstream(n, c);
    let reduction = opts.reduction;
    let div = match reduction {
        Reduction::Mean => (n * c) as f64,
        Reduction::BatchMean => n as f64,
        _ => 1.0,
    };
    let (xs, ts) = (vals(x), vals(t));
    let elem_loss: Vec<f64> =
        xs.iter()
            .zip(&ts)
            .map(|(&x, &t)| {
                if opts.log_target { fin(t.exp()) * (fin(t) + fin(x)) } else { fin(t * t.ln()) + fin(t * x) }
            })
            .collect();
    let gt_bound: Vec<f64> = (0..xs.len())
        .map(|i| {
            let g = fin(g_at(reduction, &up, true, i) / if reduction == Reduction::None { 1.0 } else { div });
            let (x, t) = (xs[i], ts[i]);
            if opts.log_target {
                g * fin(t.exp()) * (fin(t - x) + 1.0)
            } else {
                g * (fin(t.ln()) + 1.0 + fin(x))
            }
        })
        .collect();
    let lb = loss_bound(&elem_loss, reduction, div);
    let go = grad_out(reduction, &up);
    run.compare(&format!("kl_div {tag}"), || kl_div(xv, tv, opts).unwrap(), [tol(lb.clone())]);
    let f = || kl_div_with_grad(xv, tv, opts).unwrap();
    run.compare(&format!("kl_div_with_grad {tag}"), f, [tol(lb).on("loss"), close().on("grad")]);
    run.compare(&format!("kl_div_backward {tag}"), || kl_div_backward(xv, tv, opts, &go).unwrap(), [close()]);
    let f = || kl_div_backward_target(xv, tv, opts, &go).unwrap();
    run.compare(&format!("kl_div_backward_target {tag}"), f, [tol(gt_bound)]);
}

#[test]
fn kl_div_fast_path_matches_reference() {
    let oracle = Oracle::new("kl_div").sizes(LENGTHS_0, rows).magnitudes(SCALES).skip(long_rows_fewer_scales);
    let mut summary = oracle.check(|run| {
        for special in [false, true] {
            for log_target in [false, true] {
                let seed = 11 + 4 * run.index + 2 * special as u64 + log_target as u64;
                let (x, t) = kl_case(run.rows, run.size, run.magnitude, special, log_target, seed);
                for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean] {
                    let tag = format!("special={special} log_target={log_target} {reduction:?}");
                    check_kl(run, &x, &t, &KlDivOptions { reduction, log_target }, &tag);
                }
            }
        }
    });
    let task = Oracle::new("kl_div, task sizes").shapes(TASK_SIZES).magnitudes(&[5.0]);
    summary.add(&task.check(|run| {
        for log_target in [false, true] {
            let (x, t) =
                kl_case(run.rows, run.size, 5.0, true, log_target, 515 + 2 * run.index + log_target as u64);
            for reduction in [Reduction::None, Reduction::BatchMean] {
                check_kl(
                    run,
                    &x,
                    &t,
                    &KlDivOptions { reduction, log_target },
                    &format!("log_target={log_target} {reduction:?}"),
                );
            }
        }
    }));
    summary.assert_fast_path_taken("kl_div");
}

#[test]
fn kl_div_broadcast_target_and_layouts() {
    // target broadcast over rows: the loss and input gradient take the fast path, the target gradient
    // (summed over rows) the reference
    let (x, t) = kl_case(5, 33, 3.0, false, false, 77);
    let t_row = t.row(0).to_owned();
    let (xt, tt) = (x.t(), t.t());
    Oracle::new("kl_div broadcast and layouts").check(|run| {
        let opts = KlDivOptions { reduction: Reduction::Sum, log_target: false };
        let f = || kl_div_with_grad(x.view(), t_row.view(), &opts).unwrap();
        // terms |t ln t| + |t·x| ≤ 0.37 + 3 per element
        run.compare("broadcast target", f, [tol(vec![165.0 * 4.0]).on("loss"), Tol::exact().on("grad")]);
        let f = || kl_div_backward_target(x.view(), t_row.view(), &opts, &GradOutput::one()).unwrap();
        run.compare("summed target gradient", f, [Tol::exact()]);
        // a transposed (non-standard layout) input and target
        let opts = KlDivOptions { reduction: Reduction::None, log_target: false };
        let f = || kl_div_with_grad(xt, tt, &opts).unwrap();
        run.compare("transposed", f, [tol(vec![4.0; 165]).on("loss"), Tol::exact().on("grad")]);
    });
    // the torch example: ∂t = [0.590562, 1.076856, nan], ∂x = [−0.2, −0.8, −0]
    let x = Array1::from_vec(vec![-1.2f32, -0.3, -2.0]);
    let t = Array1::from_vec(vec![0.2f32, 0.8, 0.0]);
    let opts = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let gt =
        with_fast_path(|| kl_div_backward_target(x.view(), t.view(), &opts, &GradOutput::one())).unwrap();
    assert!((gt[0] - 0.590_562).abs() < 1e-6 && (gt[1] - 1.076_856).abs() < 1e-6 && gt[2].is_nan(), "{gt}");
    let gx = with_fast_path(|| kl_div_backward(x.view(), t.view(), &opts, &GradOutput::one())).unwrap();
    assert_eq!(gx.as_slice().unwrap(), &[-0.2, -0.8, -0.0]);
}

// ----------------------------------------------------------------------------------------------
// binary_cross_entropy

/// `(x, t)` in `[0, 1]`: exact 0 and 1, `scale·u` near 0 and `1 − scale·u` near 1 (scale ≤ 1), `u`.
fn bce_case(n: usize, c: usize, scale: f64, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng(seed);
    let s = scale.min(1.0);
    let mut draw = || -> f32 {
        match rng.below(8) {
            0 => 0.0,
            1 => 1.0,
            2 | 3 => (s * rng.unit()) as f32,
            4 => (1.0 - s * rng.unit()) as f32,
            _ => rng.unit() as f32,
        }
    };
    let x = Array2::from_shape_fn((n, c), |_| draw());
    let t = Array2::from_shape_fn((n, c), |_| draw());
    (x, t)
}

/// A weight of shape `shape` with values in [0.1, 2.1]; with `special` one NaN and one ∞.
fn weight(shape: &[usize], special: bool, seed: u64) -> ArrayD<f32> {
    let mut rng = Rng(seed);
    let mut w = ArrayD::from_shape_fn(IxDyn(shape), |_| (0.1 + 2.0 * rng.unit()) as f32);
    if special && w.len() > 2 {
        if let Some(v) = w.iter_mut().next() {
            *v = f32::NAN;
        }
        if let Some(v) = w.iter_mut().last() {
            *v = f32::INFINITY;
        }
    }
    w
}

/// Weight shapes for an `(n, c)` input: none, `(c,)`, `(n, 1)`, `(n, c)`, `(1,)`.
fn weight_shapes(n: usize, c: usize) -> Vec<Option<Vec<usize>>> {
    vec![None, Some(vec![c]), Some(vec![n, 1]), Some(vec![n, c]), Some(vec![1])]
}

fn check_bce(
    run: &mut super::Run<'_>,
    x: &Array2<f32>,
    t: &Array2<f32>,
    opts: &BceOptions<'_, f32>,
    tag: &str,
) {
    let (xv, tv) = (x.view(), t.view());
    let up = upstream(x.nrows(), x.ncols());
    let go = grad_out(opts.reduction, &up);
    // nothing cancels in BCE: the loss terms (t − 1)·log1p(−x) and −t·ln x have one sign, and the
    // gradients run the very same operations as the reference (ln aside): the same bits
    run.compare(&format!("bce {tag}"), || binary_cross_entropy(xv, tv, opts).unwrap(), [close()]);
    let f = || binary_cross_entropy_with_grad(xv, tv, opts).unwrap();
    run.compare(&format!("bce_with_grad {tag}"), f, [close().on("loss"), Tol::exact().on("grad")]);
    let f = || binary_cross_entropy_backward(xv, tv, opts, &go).unwrap();
    run.compare(&format!("bce_backward {tag}"), f, [close()]);
    let f = || binary_cross_entropy_backward_target(xv, tv, opts, &go).unwrap();
    run.compare(&format!("bce_backward_target {tag}"), f, [close()]);
}

#[test]
fn bce_fast_path_matches_reference() {
    let skip = |c: usize, scale: f64| c >= 1000 && scale != 1e-7 && scale != 1.0;
    let oracle = Oracle::new("binary_cross_entropy")
        .sizes(LENGTHS_0, rows)
        .magnitudes(&[1e-30, 1e-7, 1e-3, 1.0])
        .skip(skip);
    let mut summary = oracle.check(|run| {
        let seed = 1001 + run.index;
        let (x, t) = bce_case(run.rows, run.size, run.magnitude, seed);
        // hard 0/1 targets take the one-logarithm branch of the kernel
        let hard = t.mapv(|v| if v > 0.5 { 1.0 } else { 0.0 });
        for reduction in REDUCTIONS {
            check_bce(
                run,
                &x,
                &hard,
                &BceOptions { weight: None, reduction },
                &format!("hard targets {reduction:?}"),
            );
        }
        for shape in weight_shapes(run.rows, run.size) {
            let w = shape.as_ref().map(|s| weight(s, run.magnitude == 1.0, seed));
            for reduction in REDUCTIONS {
                let opts = BceOptions { weight: w.as_ref().map(|w| w.view()), reduction };
                check_bce(run, &x, &t, &opts, &format!("weight={shape:?} {reduction:?}"));
            }
        }
    });
    summary.add(
        &Oracle::new("binary_cross_entropy, task sizes").shapes(TASK_SIZES).magnitudes(&[1e-3]).check(
            |run| {
                let (x, t) = bce_case(run.rows, run.size, 1e-3, 1085 + run.index);
                let w = weight(&[run.size], false, 1085 + run.index);
                for reduction in [Reduction::None, Reduction::Mean] {
                    check_bce(
                        run,
                        &x,
                        &t,
                        &BceOptions { weight: Some(w.view()), reduction },
                        &format!("{reduction:?}"),
                    );
                }
            },
        ),
    );
    summary.assert_fast_path_taken("binary_cross_entropy");
}

#[test]
fn bce_clamp_and_eps_values() {
    // torch: x = [0, 1, 0, 1e-8], t = [1, 0, 0, 0] → [100, 100, 0, 1e-8]; ∂x at x = 0, t = 1 is −1/1e-12f
    let x = Array1::from_vec(vec![0.0f32, 1.0, 0.0, 1e-8, 0.25]);
    let t = Array1::from_vec(vec![1.0f32, 0.0, 0.0, 0.0, 1.0]);
    let opts = BceOptions { reduction: Reduction::None, ..Default::default() };
    let (l, g) = with_fast_path(|| binary_cross_entropy_with_grad(x.view(), t.view(), &opts)).unwrap();
    let l = l.into_array();
    assert_eq!(l.as_slice().unwrap()[..3], [100.0, 100.0, 0.0]);
    assert_eq!(l[3], 1e-8);
    assert!((l[4] - 4f32.ln()).abs() < 1e-6);
    assert_eq!(g[0], -1.0 / 1e-12f32);
    assert_eq!(g[4], -4.0);
    // hard targets (one logarithm per element) give the reference's bits, signed zeros included
    let xh = Array1::from_vec(vec![0.0f32, -0.0, 1.0, 0.3, 1e-30, 0.0, -0.0, 1.0, 0.7, 1e-30]);
    let th = Array1::from_vec(vec![0.0f32, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    let (a, b) = both(|| vals(&binary_cross_entropy(xh.view(), th.view(), &opts).unwrap()));
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(a[..3], [0.0, 0.0, 100.0]);
    assert_eq!(a[5], 100.0);
    // the target gradient is unclamped: ±∞ at x ∈ {0, 1}
    let sum = BceOptions { reduction: Reduction::Sum, ..Default::default() };
    let gt =
        with_fast_path(|| binary_cross_entropy_backward_target(x.view(), t.view(), &sum, &GradOutput::one()))
            .unwrap();
    assert_eq!((gt[0], gt[1]), (f32::INFINITY, f32::NEG_INFINITY));
}

#[test]
fn bce_invalid_values_give_the_reference_error() {
    let (mut x, t) = bce_case(4, 70000, 1.0, 5);
    x[[3, 69998]] = -0.25;
    x[[2, 5]] = f32::NAN;
    let (a, b) =
        both(|| binary_cross_entropy(x.view(), t.view(), &BceOptions::default()).unwrap_err().to_string());
    assert_eq!(a, b);
    assert!(a.contains("input value NaN at [2, 5]"), "{a}");
    let (x, mut t) = bce_case(2, 9, 1.0, 6);
    t[[1, 8]] = 1.5;
    let (a, b) = both(|| {
        binary_cross_entropy_with_grad(x.view(), t.view(), &BceOptions::default()).unwrap_err().to_string()
    });
    assert_eq!(a, b);
    assert!(a.contains("target value 1.5 at [1, 8]"), "{a}");
}

// ----------------------------------------------------------------------------------------------
// binary_cross_entropy_with_logits

/// `(x, t)`: `x = scale·(2u − 1)`, `t` in [0, 1] with exact 0 and 1 and some 2 and −1 (unchecked by
/// PyTorch); with `special` NaN and ±∞ in `x` and `t`, and `x = −∞` with `t = 1`.
fn bcel_case(n: usize, c: usize, scale: f64, special: bool, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng(seed);
    let mut x = Array2::from_shape_fn((n, c), |_| (scale * (2.0 * rng.unit() - 1.0)) as f32);
    let mut t = Array2::from_shape_fn((n, c), |_| match rng.below(10) {
        0 | 1 => 0.0,
        2 | 3 => 1.0,
        4 => 2.0,
        5 => -1.0,
        _ => rng.unit() as f32,
    });
    if special && n * c > 0 {
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            x[[rng.below(n), rng.below(c)]] = v;
            t[[rng.below(n), rng.below(c)]] = v;
        }
        let (i, j) = (rng.below(n), rng.below(c));
        x[[i, j]] = f32::NEG_INFINITY;
        t[[i, j]] = 1.0;
    }
    (x, t)
}

fn log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

/// A weight broadcast into `(n, c)` as a flat vector (all ones when absent).
fn broadcast_flat(w: Option<&ArrayD<f32>>, n: usize, c: usize) -> Vec<f64> {
    w.map_or(vec![1.0; n * c], |w| vals(&w.broadcast(IxDyn(&[n, c])).unwrap().to_owned()))
}

fn check_bcel(
    run: &mut super::Run<'_>,
    (x, t): (&Array2<f32>, &Array2<f32>),
    (w, pw): (Option<&ArrayD<f32>>, Option<&ArrayD<f32>>),
    reduction: Reduction,
    tag: &str,
) {
    let (n, c) = x.dim();
    let (xv, tv) = (x.view(), t.view());
    let opts =
        BceWithLogitsOptions { weight: w.map(|w| w.view()), pos_weight: pw.map(|p| p.view()), reduction };
    let up = upstream(n, c);
    let div = if reduction == Reduction::Mean { (n * c) as f64 } else { 1.0 };
    let (xs, ts) = (vals(x), vals(t));
    let (wf, pf) = (broadcast_flat(w, n, c), broadcast_flat(pw, n, c));
    let elem_loss: Vec<f64> = (0..n * c)
        .map(|i| {
            let (x, t) = (xs[i], ts[i]);
            let lw = pw.map_or(1.0, |_| (pf[i] - 1.0) * t + 1.0);
            fin(wf[i]) * (fin((1.0 - t) * x) + fin(log_sigmoid(x) * lw))
        })
        .collect();
    let gx_bound = |backward: bool| -> Vec<f64> {
        (0..n * c)
            .map(|i| {
                let (x, t) = (xs[i], ts[i]);
                let g = fin(g_at(reduction, &up, backward, i) * wf[i] / div);
                let sig = 1.0 / (1.0 + (-x).exp());
                match pw {
                    Some(_) => g * (fin((pf[i] * t + 1.0 - t) * sig) + fin(pf[i] * t)),
                    None => g * (fin(sig) + fin(t)),
                }
            })
            .collect()
    };
    let gt_bound: Vec<f64> = (0..n * c)
        .map(|i| {
            let g = fin(g_at(reduction, &up, true, i) * wf[i] / div);
            pw.map_or(0.0, |_| g * (fin(log_sigmoid(-xs[i])) + fin(log_sigmoid(xs[i]) * pf[i])))
        })
        .collect();
    let lb = loss_bound(&elem_loss, reduction, div);
    let go = grad_out(reduction, &up);
    let f = || binary_cross_entropy_with_logits(xv, tv, &opts).unwrap();
    run.compare(&format!("bce_logits {tag}"), f, [tol(lb.clone())]);
    let f = || binary_cross_entropy_with_logits_with_grad(xv, tv, &opts).unwrap();
    run.compare(
        &format!("bce_logits_with_grad {tag}"),
        f,
        [tol(lb).on("loss"), tol(gx_bound(false)).on("grad")],
    );
    let f = || binary_cross_entropy_with_logits_backward(xv, tv, &opts, &go).unwrap();
    run.compare(&format!("bce_logits_backward {tag}"), f, [tol(gx_bound(true))]);
    let f = || binary_cross_entropy_with_logits_backward_target(xv, tv, &opts, &go).unwrap();
    run.compare(&format!("bce_logits_backward_target {tag}"), f, [tol(gt_bound)]);
}

#[test]
fn bce_with_logits_fast_path_matches_reference() {
    let oracle = Oracle::new("binary_cross_entropy_with_logits").sizes(LENGTHS_0, rows).magnitudes(SCALES);
    let mut summary = oracle.skip(long_rows_fewer_scales).check(|run| {
        for special in [false, true] {
            let seed = 5001 + 2 * run.index + special as u64;
            let (x, t) = bcel_case(run.rows, run.size, run.magnitude, special, seed);
            let shapes = weight_shapes(run.rows, run.size);
            // weight and pos_weight shapes paired off so every shape meets both roles
            for (k, wshape) in shapes.iter().enumerate() {
                let pshape = &shapes[(k + 1 + seed as usize % 3) % shapes.len()];
                let w = wshape.as_ref().map(|s| weight(s, special, seed));
                let pw = pshape.as_ref().map(|s| weight(s, false, seed + 1));
                for reduction in REDUCTIONS {
                    let tag =
                        format!("special={special} weight={wshape:?} pos_weight={pshape:?} {reduction:?}");
                    check_bcel(run, (&x, &t), (w.as_ref(), pw.as_ref()), reduction, &tag);
                }
            }
        }
    });
    let task =
        Oracle::new("binary_cross_entropy_with_logits, task sizes").shapes(TASK_SIZES).magnitudes(&[6.0]);
    summary.add(&task.check(|run| {
        let seed = 5253 + run.index;
        let (x, t) = bcel_case(run.rows, run.size, 6.0, true, seed);
        let pw = weight(&[run.size], false, seed);
        for reduction in [Reduction::None, Reduction::Mean] {
            check_bcel(run, (&x, &t), (None, Some(&pw)), reduction, &format!("{reduction:?}"));
        }
    }));
    summary.assert_fast_path_taken("binary_cross_entropy_with_logits");
}

#[test]
fn bce_with_logits_torch_values_and_channel_pos_weight() {
    // torch: z = [−200, −3, 0, 2.5, 200], y = [1, .3, 1, 0, 0], pw = 3 → ∂z = [−3, −0.82412, −1.5, 0.92414, 1]
    let z = Array1::from_vec(vec![-200.0f32, -3.0, 0.0, 2.5, 200.0]);
    let y = Array1::from_vec(vec![1.0f32, 0.3, 1.0, 0.0, 0.0]);
    let pw = ArrayD::from_elem(IxDyn(&[1]), 3.0f32);
    let opts =
        BceWithLogitsOptions { pos_weight: Some(pw.view()), reduction: Reduction::Sum, ..Default::default() };
    let g = with_fast_path(|| {
        binary_cross_entropy_with_logits_backward(z.view(), y.view(), &opts, &GradOutput::one())
    })
    .unwrap();
    let want = [-3.0, -0.824_118_6, -1.5, 0.924_141_8, 1.0];
    assert!(g.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{g}");
    // a (C, 1, 1) pos_weight and weight on (N, C, H, W): each value repeated H·W times
    let (n, ch, h, wd) = (3, 4, 5, 7);
    let mut rng = Rng(3);
    let x = ArrayD::from_shape_fn(IxDyn(&[n, ch, h, wd]), |_| (8.0 * rng.unit() - 4.0) as f32);
    let t = ArrayD::from_shape_fn(IxDyn(&[n, ch, h, wd]), |_| rng.below(2) as f32);
    let pw = weight(&[ch, 1, 1], false, 4);
    let w = weight(&[ch, 1, wd], false, 5);
    Oracle::new("binary_cross_entropy_with_logits (N, C, H, W)").check(|run| {
        for reduction in REDUCTIONS {
            let opts =
                BceWithLogitsOptions { weight: Some(w.view()), pos_weight: Some(pw.view()), reduction };
            // |x| ≤ 4, |logσ(x)| ≤ 4.02, lw ≤ 3, w ≤ 2.1: terms below 40 per element
            let lbound = match reduction {
                Reduction::None => vec![40.0; 420],
                Reduction::Sum => vec![40.0 * 420.0],
                _ => vec![40.0],
            };
            let f = || binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &opts).unwrap();
            run.compare(
                &format!("{reduction:?}"),
                f,
                [tol(lbound).on("loss"), tol(vec![10.0; 420]).on("grad")],
            );
        }
    });
}

// ----------------------------------------------------------------------------------------------
// half precision, thread counts, empty inputs

/// Half types: the fast and reference results agree to `1e-7 + 2·ε_half·|reference|` (mild values, no
/// cancellation), `kl_div`'s cancelling loss terms to `4·ε_half·(1 + |x|)`.
fn half_checks<T: Element>(half_eps: f64) {
    let conv = |a: &Array2<f32>| a.mapv(|v| narrow::<T>(v as f64));
    let half = || Tol::close(1e-7, 2.0 * half_eps);
    Oracle::new("elementwise, half types").shapes(&[(3, 1025), (2, 33), (1, 70001)]).check(|run| {
        let (n, c) = (run.rows, run.size);
        let (x, t) = bce_case(n, c, 1.0, 9);
        let (x, t) = (conv(&x), conv(&t));
        let w = weight(&[c], false, 3).mapv(|v| narrow::<T>(v as f64));
        for reduction in REDUCTIONS {
            let opts = BceOptions { weight: Some(w.view()), reduction };
            let f = || binary_cross_entropy_with_grad(x.view(), t.view(), &opts).unwrap();
            run.compare(&format!("bce {reduction:?}"), f, [half().on("loss"), half().on("grad")]);
            let bo = BceWithLogitsOptions { weight: Some(w.view()), pos_weight: Some(w.view()), reduction };
            let f = || binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &bo).unwrap();
            run.compare(&format!("bce_logits {reduction:?}"), f, [half().on("loss"), half().on("grad")]);
        }
        let (lx, p) = kl_case(n, c, 1.0, false, false, 4);
        let lx = conv(&lx.mapv(|v| -v.abs() - 0.5));
        let (lxs, p) = (vals(&lx), conv(&p));
        for log_target in [false, true] {
            let opts = KlDivOptions { reduction: Reduction::None, log_target };
            // the loss terms cancel (t ln t − t x): compare them to the terms' size
            let terms = Tol::by(|i, _, _| 4.0 * half_eps * (1.0 + lxs[i].abs()));
            let f = || kl_div_with_grad(lx.view(), p.view(), &opts).unwrap();
            run.compare(&format!("kl_div log_target={log_target}"), f, [terms.on("loss"), half().on("grad")]);
        }
    });
}

#[test]
fn half_types_take_the_fast_path() {
    half_checks::<infoloss::half::bf16>(1.0 / 256.0);
    half_checks::<infoloss::half::f16>(1.0 / 2048.0);
}

#[test]
fn bit_identical_for_any_thread_count() {
    let shapes = [(3, 70001), (67, 1025), (5000, 7)];
    Oracle::new("elementwise").shapes(&shapes).threads(&[1, 2, 3]).check(|run| {
        let (n, c) = (run.rows, run.size);
        let (x, _) = kl_case(n, c, 6.0, true, false, 21);
        let (p, t) = bce_case(n, c, 1.0, 22);
        let w = weight(&[c], false, 23);
        let up = upstream(n, c);
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean] {
            for log_target in [false, true] {
                let opts = KlDivOptions { reduction, log_target };
                run.identical(&format!("kl_div {reduction:?} log_target={log_target}"), || {
                    kl_div_with_grad(x.view(), p.view(), &opts).unwrap()
                });
                let go = grad_out(reduction, &up);
                let f = || kl_div_backward_target(x.view(), p.view(), &opts, &go).unwrap();
                run.identical(&format!("kl_div_backward_target {reduction:?} log_target={log_target}"), f);
            }
            if reduction == Reduction::BatchMean {
                continue;
            }
            let bo = BceOptions { weight: Some(w.view()), reduction };
            run.identical(&format!("bce {reduction:?}"), || {
                binary_cross_entropy_with_grad(p.view(), t.view(), &bo).unwrap()
            });
            let lo = BceWithLogitsOptions { weight: Some(w.view()), pos_weight: Some(w.view()), reduction };
            let f = || binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &lo).unwrap();
            run.identical(&format!("bce_logits {reduction:?}"), f);
        }
    });
}

#[test]
fn empty_inputs_follow_torch() {
    let x = Array2::<f32>::zeros((0, 4));
    for reduction in REDUCTIONS {
        let l = binary_cross_entropy(x.view(), x.view(), &BceOptions { weight: None, reduction }).unwrap();
        let want_nan = reduction == Reduction::Mean;
        assert_eq!(vals(&l).first().is_some_and(|v| v.is_nan()), want_nan, "{reduction:?}");
        let o = BceWithLogitsOptions { reduction, ..Default::default() };
        let (_, g) = binary_cross_entropy_with_logits_with_grad(x.view(), x.view(), &o).unwrap();
        assert_eq!(g.shape(), &[0, 4]);
    }
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    assert!(kl_div(x.view(), x.view(), &o).unwrap().scalar().unwrap().is_nan());
}
