//! The SIMD fast path of the elementwise losses (`kl_div`, `binary_cross_entropy`,
//! `binary_cross_entropy_with_logits`) against the reference implementation
//! (`infoloss::with_reference_path`), and bit-identical results for any number
//! of threads.
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

use crate::support;
use support::Rng;

use infoloss::ndarray::{Array1, Array2, ArrayD, ArrayViewD, IxDyn};
use infoloss::{
    BceOptions, BceWithLogitsOptions, Element, GradOutput, KlDivOptions, Loss, Real, Reduction,
    binary_cross_entropy, binary_cross_entropy_backward, binary_cross_entropy_backward_target,
    binary_cross_entropy_with_grad, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward, binary_cross_entropy_with_logits_backward_target,
    binary_cross_entropy_with_logits_with_grad, kl_div, kl_div_backward, kl_div_backward_target,
    kl_div_with_grad,
};
use infoloss::{
    with_fast_path as with_elementwise_fast_path, with_reference_path as with_elementwise_reference_path,
};

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-7;
const TERM_ROUNDINGS: f64 = 4.0;

/// Row lengths (the last dimension; weights of this length broadcast over the rows).
const LENGTHS: &[usize] =
    &[0, 1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 32, 33, 127, 128, 129, 1023, 1024, 1025, 32000];
const SCALES: &[f64] = &[1e-30, 1e-3, 1.0, 30.0, 1e4, 1e30];
/// The magnitudes swept for rows of length `c`: all of them for short rows, three for long ones.
fn scales(c: usize) -> &'static [f64] {
    if c < 1000 { SCALES } else { &[1e-30, 1.0, 1e30] }
}

/// Whole-array sizes around the parallel task size (65536 elements) as (rows, length).
const BIG: &[(usize, usize)] = &[(1, 65535), (1, 65536), (1, 65537), (2, 32769), (3, 70001)];
const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// Compares fast (`a`) and reference (`b`) values; returns how many differ in their bits.
fn compare_with(a: &[f32], b: &[f32], bound: &[f64], what: &str) -> usize {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let mut differ = 0;
    for (i, (&u, &v)) in a.iter().zip(b).enumerate() {
        if u.to_bits() != v.to_bits() {
            differ += 1;
        }
        if u.is_nan() || v.is_nan() {
            assert!(u.is_nan() && v.is_nan(), "{what}[{i}]: fast {u} vs reference {v}");
        } else if u.is_infinite() || v.is_infinite() {
            assert_eq!(u, v, "{what}[{i}]: fast {u} vs reference {v}");
        } else {
            let d = (u as f64 - v as f64).abs();
            let cond = TERM_ROUNDINGS * f32::EPSILON as f64 * bound.get(i).copied().unwrap_or(0.0);
            assert!(
                d <= ATOL + RTOL * (v as f64).abs() + cond,
                "{what}[{i}]: fast {u} vs reference {v} (diff {d:e}, term bound {cond:e})"
            );
        }
    }
    differ
}

fn loss_vec<T: Element>(l: &Loss<T>) -> Vec<f32> {
    match l {
        Loss::Scalar(v) => vec![v.to_acc().f64() as f32],
        Loss::Elementwise(a) => flat(a),
    }
}

fn flat<T: Element>(a: &ArrayD<T>) -> Vec<f32> {
    a.iter().map(|v| v.to_acc().f64() as f32).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `f(x)` with non-finite values (and NaN) counted as 0, for bounds.
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

/// The upstream gradient used by the `_backward` calls: an array for `None`, else the scalar 0.7.
fn upstream(n: usize, c: usize) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[n, c]), |i| 0.25 + ((i[0] * 7 + i[1]) % 5) as f32 * 0.5)
}

fn grad_out<'a>(reduction: Reduction, up: &'a ArrayD<f32>) -> GradOutput<'a, f32> {
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

/// Runs `f` on both paths.
fn both<R>(f: &dyn Fn() -> R) -> (R, R) {
    (with_elementwise_fast_path(f), with_elementwise_reference_path(f))
}

// ----------------------------------------------------------------------------------------------
// kl_div
// ----------------------------------------------------------------------------------------------

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

fn check_kl(x: &Array2<f32>, t: &Array2<f32>, opts: &KlDivOptions, tag: &str) -> usize {
    let (n, c) = x.dim();
    let (xv, tv) = (x.view(), t.view());
    let up = upstream(n, c);
    let reduction = opts.reduction;
    let count = (n * c) as f64;
    let div = match reduction {
        Reduction::Mean => count,
        Reduction::BatchMean => n as f64,
        _ => 1.0,
    };
    let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let ts: Vec<f64> = t.iter().map(|&v| v as f64).collect();
    let elem_loss: Vec<f64> =
        xs.iter()
            .zip(&ts)
            .map(|(&x, &t)| {
                if opts.log_target { fin(t.exp()) * (fin(t) + fin(x)) } else { fin(t * t.ln()) + fin(t * x) }
            })
            .collect();
    let gt_bound = |backward: bool| -> Vec<f64> {
        (0..xs.len())
            .map(|i| {
                let g =
                    fin(g_at(reduction, &up, backward, i)
                        / if reduction == Reduction::None { 1.0 } else { div });
                let (x, t) = (xs[i], ts[i]);
                if opts.log_target {
                    g * fin(t.exp()) * (fin(t - x) + 1.0)
                } else {
                    g * (fin(t.ln()) + 1.0 + fin(x))
                }
            })
            .collect()
    };
    let lb = loss_bound(&elem_loss, reduction, div);
    let mut differ = 0;
    let (a, b) = both(&|| loss_vec(&kl_div(xv, tv, opts).unwrap()));
    differ += compare_with(&a, &b, &lb, &format!("{tag} kl_div"));
    let ((la, ga), (lb2, gb)) = both(&|| {
        let (l, g) = kl_div_with_grad(xv, tv, opts).unwrap();
        (loss_vec(&l), flat(&g))
    });
    differ += compare_with(&la, &lb2, &lb, &format!("{tag} kl_div_with_grad loss"));
    differ += compare_with(&ga, &gb, &[], &format!("{tag} kl_div_with_grad grad"));
    let go = grad_out(reduction, &up);
    let (a, b) = both(&|| flat(&kl_div_backward(xv, tv, opts, &go).unwrap()));
    differ += compare_with(&a, &b, &[], &format!("{tag} kl_div_backward"));
    let (a, b) = both(&|| flat(&kl_div_backward_target(xv, tv, opts, &go).unwrap()));
    differ += compare_with(&a, &b, &gt_bound(true), &format!("{tag} kl_div_backward_target"));
    differ
}

#[test]
fn kl_div_fast_path_matches_reference() {
    let mut differ = 0;
    let mut seed = 10u64;
    for &c in LENGTHS {
        let n = if c >= 32000 { 2 } else { 3 };
        for &scale in scales(c) {
            for special in [false, true] {
                for log_target in [false, true] {
                    seed += 1;
                    let (x, t) = kl_case(n, c, scale, special, log_target, seed);
                    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean]
                    {
                        let opts = KlDivOptions { reduction, log_target };
                        let tag = format!(
                            "C={c} scale={scale:e} special={special} log_target={log_target} {reduction:?}"
                        );
                        differ += check_kl(&x, &t, &opts, &tag);
                    }
                }
            }
        }
    }
    for &(n, c) in BIG {
        for log_target in [false, true] {
            seed += 1;
            let (x, t) = kl_case(n, c, 5.0, true, log_target, seed);
            for reduction in [Reduction::None, Reduction::BatchMean] {
                let opts = KlDivOptions { reduction, log_target };
                differ +=
                    check_kl(&x, &t, &opts, &format!("N={n} C={c} log_target={log_target} {reduction:?}"));
            }
        }
    }
    // the paths use different exp/ln: some bits must differ, otherwise the fast path is not in use
    assert!(differ > 0, "fast path never differed from the reference");
}

#[test]
fn kl_div_broadcast_target_and_layouts() {
    // target broadcast over rows: the loss and input gradient take the fast path, the target gradient
    // (summed over rows) the reference
    let (x, t) = kl_case(5, 33, 3.0, false, false, 77);
    let t_row = t.row(0).to_owned();
    let opts = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let ((la, ga), (lb, gb)) = both(&|| {
        let (l, g) = kl_div_with_grad(x.view(), t_row.view(), &opts).unwrap();
        (loss_vec(&l), flat(&g))
    });
    // terms |t ln t| + |t·x| ≤ 0.37 + 3 per element
    compare_with(&la, &lb, &[165.0 * 4.0], "broadcast target loss");
    assert_eq!(bits(&ga), bits(&gb), "broadcast target grad");
    let (a, b) =
        both(&|| flat(&kl_div_backward_target(x.view(), t_row.view(), &opts, &GradOutput::one()).unwrap()));
    assert_eq!(bits(&a), bits(&b), "summed target gradient");
    // a transposed (non-standard layout) input and target
    let (xt, tt) = (x.t(), t.t());
    let opts = KlDivOptions { reduction: Reduction::None, log_target: false };
    let ((la, ga), (lb, gb)) = both(&|| {
        let (l, g) = kl_div_with_grad(xt, tt, &opts).unwrap();
        (loss_vec(&l), flat(&g))
    });
    compare_with(&la, &lb, &[4.0; 165], "transposed loss");
    assert_eq!(bits(&ga), bits(&gb), "transposed grad");
    // the torch example: ∂t = [0.590562, 1.076856, nan], ∂x = [−0.2, −0.8, −0]
    let x = Array1::from_vec(vec![-1.2f32, -0.3, -2.0]);
    let t = Array1::from_vec(vec![0.2f32, 0.8, 0.0]);
    let opts = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let gt =
        with_elementwise_fast_path(|| kl_div_backward_target(x.view(), t.view(), &opts, &GradOutput::one()))
            .unwrap();
    assert!((gt[0] - 0.590_562).abs() < 1e-6 && (gt[1] - 1.076_856).abs() < 1e-6 && gt[2].is_nan(), "{gt}");
    let gx = with_elementwise_fast_path(|| kl_div_backward(x.view(), t.view(), &opts, &GradOutput::one()))
        .unwrap();
    assert_eq!(gx.as_slice().unwrap(), &[-0.2, -0.8, -0.0]);
}

// ----------------------------------------------------------------------------------------------
// binary_cross_entropy
// ----------------------------------------------------------------------------------------------

/// `(x, t)` in `[0, 1]`: exact 0 and 1, `scale·u` near 0 and `1 − scale·u` near 1 (scale ≤ 1), `u`.
fn bce_case(n: usize, c: usize, scale: f64, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng(seed);
    let s = scale.min(1.0);
    let draw = |rng: &mut Rng| -> f32 {
        match rng.below(8) {
            0 => 0.0,
            1 => 1.0,
            2 | 3 => (s * rng.unit()) as f32,
            4 => (1.0 - s * rng.unit()) as f32,
            _ => rng.unit() as f32,
        }
    };
    let x = Array2::from_shape_fn((n, c), |_| draw(&mut rng));
    let t = Array2::from_shape_fn((n, c), |_| draw(&mut rng));
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

fn check_bce(x: &Array2<f32>, t: &Array2<f32>, opts: &BceOptions<'_, f32>, tag: &str) -> usize {
    let (n, c) = x.dim();
    let (xv, tv) = (x.view(), t.view());
    let up = upstream(n, c);
    let mut differ = 0;
    // nothing cancels in BCE: the loss terms (t − 1)·log1p(−x) and −t·ln x have one sign, and the
    // gradients run the very same operations as the reference (ln aside)
    let (a, b) = both(&|| loss_vec(&binary_cross_entropy(xv, tv, opts).unwrap()));
    differ += compare_with(&a, &b, &[], &format!("{tag} bce"));
    let ((la, ga), (lb, gb)) = both(&|| {
        let (l, g) = binary_cross_entropy_with_grad(xv, tv, opts).unwrap();
        (loss_vec(&l), flat(&g))
    });
    differ += compare_with(&la, &lb, &[], &format!("{tag} bce_with_grad loss"));
    assert_eq!(bits(&ga), bits(&gb), "{tag} bce_with_grad grad: same operations, same bits");
    let go = grad_out(opts.reduction, &up);
    let (a, b) = both(&|| flat(&binary_cross_entropy_backward(xv, tv, opts, &go).unwrap()));
    differ += compare_with(&a, &b, &[], &format!("{tag} bce_backward"));
    let (a, b) = both(&|| flat(&binary_cross_entropy_backward_target(xv, tv, opts, &go).unwrap()));
    differ += compare_with(&a, &b, &[], &format!("{tag} bce_backward_target"));
    differ
}

#[test]
fn bce_fast_path_matches_reference() {
    let mut differ = 0;
    let mut seed = 1000u64;
    for &c in LENGTHS {
        let n = if c >= 32000 { 2 } else { 3 };
        for &scale in if c < 1000 { &[1e-30, 1e-7, 1e-3, 1.0][..] } else { &[1e-7, 1.0][..] } {
            seed += 1;
            let (x, t) = bce_case(n, c, scale, seed);
            // hard 0/1 targets take the one-logarithm branch of the kernel
            let hard = t.mapv(|v| if v > 0.5 { 1.0 } else { 0.0 });
            for reduction in REDUCTIONS {
                let opts = BceOptions { weight: None, reduction };
                differ +=
                    check_bce(&x, &hard, &opts, &format!("C={c} scale={scale:e} hard targets {reduction:?}"));
            }
            for shape in weight_shapes(n, c) {
                let w = shape.as_ref().map(|s| weight(s, scale == 1.0, seed));
                for reduction in REDUCTIONS {
                    let opts = BceOptions { weight: w.as_ref().map(|w| w.view()), reduction };
                    let tag = format!("C={c} scale={scale:e} weight={shape:?} {reduction:?}");
                    differ += check_bce(&x, &t, &opts, &tag);
                }
            }
        }
    }
    for &(n, c) in BIG {
        seed += 1;
        let (x, t) = bce_case(n, c, 1e-3, seed);
        let w = weight(&[c], false, seed);
        for reduction in [Reduction::None, Reduction::Mean] {
            let opts = BceOptions { weight: Some(w.view()), reduction };
            differ += check_bce(&x, &t, &opts, &format!("N={n} C={c} {reduction:?}"));
        }
    }
    assert!(differ > 0, "fast path never differed from the reference");
}

#[test]
fn bce_clamp_and_eps_values() {
    // torch: x = [0, 1, 0, 1e-8], t = [1, 0, 0, 0] → [100, 100, 0, 1e-8]; ∂x at x = 0, t = 1 is −1/1e-12f
    let x = Array1::from_vec(vec![0.0f32, 1.0, 0.0, 1e-8, 0.25]);
    let t = Array1::from_vec(vec![1.0f32, 0.0, 0.0, 0.0, 1.0]);
    let opts = BceOptions { reduction: Reduction::None, ..Default::default() };
    let (l, g) =
        with_elementwise_fast_path(|| binary_cross_entropy_with_grad(x.view(), t.view(), &opts)).unwrap();
    let l = l.into_array();
    assert_eq!(l.as_slice().unwrap()[..3], [100.0, 100.0, 0.0]);
    assert_eq!(l[3], 1e-8);
    assert!((l[4] - 4f32.ln()).abs() < 1e-6);
    assert_eq!(g[0], -1.0 / 1e-12f32);
    assert_eq!(g[4], -4.0);
    // hard targets (one logarithm per element) give the reference's bits, signed zeros included
    let xh = Array1::from_vec(vec![0.0f32, -0.0, 1.0, 0.3, 1e-30, 0.0, -0.0, 1.0, 0.7, 1e-30]);
    let th = Array1::from_vec(vec![0.0f32, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    let (a, b) = both(&|| flat(&binary_cross_entropy(xh.view(), th.view(), &opts).unwrap().into_array()));
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(a[..3], [0.0, 0.0, 100.0]);
    assert_eq!(a[5], 100.0);
    // the target gradient is unclamped: ±∞ at x ∈ {0, 1}
    let sum = BceOptions { reduction: Reduction::Sum, ..Default::default() };
    let gt = with_elementwise_fast_path(|| {
        binary_cross_entropy_backward_target(x.view(), t.view(), &sum, &GradOutput::one())
    })
    .unwrap();
    assert_eq!((gt[0], gt[1]), (f32::INFINITY, f32::NEG_INFINITY));
}

#[test]
fn bce_invalid_values_give_the_reference_error() {
    let (mut x, t) = bce_case(4, 70000, 1.0, 5);
    x[[3, 69998]] = -0.25;
    x[[2, 5]] = f32::NAN;
    let (a, b) =
        both(&|| binary_cross_entropy(x.view(), t.view(), &BceOptions::default()).unwrap_err().to_string());
    assert_eq!(a, b);
    assert!(a.contains("input value NaN at [2, 5]"), "{a}");
    let (x, mut t) = bce_case(2, 9, 1.0, 6);
    t[[1, 8]] = 1.5;
    let (a, b) = both(&|| {
        binary_cross_entropy_with_grad(x.view(), t.view(), &BceOptions::default()).unwrap_err().to_string()
    });
    assert_eq!(a, b);
    assert!(a.contains("target value 1.5 at [1, 8]"), "{a}");
}

// ----------------------------------------------------------------------------------------------
// binary_cross_entropy_with_logits
// ----------------------------------------------------------------------------------------------

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
    match w {
        None => vec![1.0; n * c],
        Some(w) => w.broadcast(IxDyn(&[n, c])).unwrap().iter().map(|&v| v as f64).collect(),
    }
}

fn check_bcel(
    x: &Array2<f32>,
    t: &Array2<f32>,
    w: Option<&ArrayD<f32>>,
    pw: Option<&ArrayD<f32>>,
    reduction: Reduction,
    tag: &str,
) -> usize {
    let (n, c) = x.dim();
    let (xv, tv) = (x.view(), t.view());
    let opts =
        BceWithLogitsOptions { weight: w.map(|w| w.view()), pos_weight: pw.map(|p| p.view()), reduction };
    let up = upstream(n, c);
    let count = (n * c) as f64;
    let div = if reduction == Reduction::Mean { count } else { 1.0 };
    let at = |i: usize| (x.as_slice().unwrap()[i] as f64, t.as_slice().unwrap()[i] as f64);
    let (wf, pf) = (broadcast_flat(w, n, c), broadcast_flat(pw, n, c));
    let elem_loss: Vec<f64> = (0..n * c)
        .map(|i| {
            let (x, t) = at(i);
            let lw = pw.map_or(1.0, |_| (pf[i] - 1.0) * t + 1.0);
            fin(wf[i]) * (fin((1.0 - t) * x) + fin(log_sigmoid(x) * lw))
        })
        .collect();
    let gx_bound = |backward: bool| -> Vec<f64> {
        (0..n * c)
            .map(|i| {
                let (x, t) = at(i);
                let g = fin(g_at(reduction, &up, backward, i) * wf[i] / div);
                let sig = 1.0 / (1.0 + (-x).exp());
                match pw {
                    Some(_) => {
                        let pt = pf[i] * t;
                        g * (fin((pt + 1.0 - t) * sig) + fin(pt))
                    }
                    None => g * (fin(sig) + fin(t)),
                }
            })
            .collect()
    };
    let gt_bound: Vec<f64> = (0..n * c)
        .map(|i| {
            let (x, _) = at(i);
            let g = fin(g_at(reduction, &up, true, i) * wf[i] / div);
            match pw {
                Some(_) => g * (fin(log_sigmoid(-x)) + fin(log_sigmoid(x) * pf[i])),
                None => 0.0,
            }
        })
        .collect();
    let lb = loss_bound(&elem_loss, reduction, div);
    let mut differ = 0;
    let (a, b) = both(&|| loss_vec(&binary_cross_entropy_with_logits(xv, tv, &opts).unwrap()));
    differ += compare_with(&a, &b, &lb, &format!("{tag} bce_logits"));
    let ((la, ga), (lb2, gb)) = both(&|| {
        let (l, g) = binary_cross_entropy_with_logits_with_grad(xv, tv, &opts).unwrap();
        (loss_vec(&l), flat(&g))
    });
    differ += compare_with(&la, &lb2, &lb, &format!("{tag} bce_logits_with_grad loss"));
    differ += compare_with(&ga, &gb, &gx_bound(false), &format!("{tag} bce_logits_with_grad grad"));
    let go = grad_out(reduction, &up);
    let (a, b) = both(&|| flat(&binary_cross_entropy_with_logits_backward(xv, tv, &opts, &go).unwrap()));
    differ += compare_with(&a, &b, &gx_bound(true), &format!("{tag} bce_logits_backward"));
    let (a, b) =
        both(&|| flat(&binary_cross_entropy_with_logits_backward_target(xv, tv, &opts, &go).unwrap()));
    differ += compare_with(&a, &b, &gt_bound, &format!("{tag} bce_logits_backward_target"));
    differ
}

#[test]
fn bce_with_logits_fast_path_matches_reference() {
    let mut differ = 0;
    let mut seed = 5000u64;
    for &c in LENGTHS {
        let n = if c >= 32000 { 2 } else { 3 };
        for &scale in scales(c) {
            for special in [false, true] {
                seed += 1;
                let (x, t) = bcel_case(n, c, scale, special, seed);
                let shapes = weight_shapes(n, c);
                // weight and pos_weight shapes paired off so every shape meets both roles
                for (k, wshape) in shapes.iter().enumerate() {
                    let pshape = &shapes[(k + 1 + seed as usize % 3) % shapes.len()];
                    let w = wshape.as_ref().map(|s| weight(s, special, seed));
                    let pw = pshape.as_ref().map(|s| weight(s, false, seed + 1));
                    for reduction in REDUCTIONS {
                        let tag = format!(
                            "C={c} scale={scale:e} special={special} weight={wshape:?} pos_weight={pshape:?} {reduction:?}"
                        );
                        differ += check_bcel(&x, &t, w.as_ref(), pw.as_ref(), reduction, &tag);
                    }
                }
            }
        }
    }
    for &(n, c) in BIG {
        seed += 1;
        let (x, t) = bcel_case(n, c, 6.0, true, seed);
        let pw = weight(&[c], false, seed);
        for reduction in [Reduction::None, Reduction::Mean] {
            differ += check_bcel(&x, &t, None, Some(&pw), reduction, &format!("N={n} C={c} {reduction:?}"));
        }
    }
    assert!(differ > 0, "fast path never differed from the reference");
}

#[test]
fn bce_with_logits_torch_values_and_channel_pos_weight() {
    // torch: z = [−200, −3, 0, 2.5, 200], y = [1, .3, 1, 0, 0], pw = 3 → ∂z = [−3, −0.82412, −1.5, 0.92414, 1]
    let z = Array1::from_vec(vec![-200.0f32, -3.0, 0.0, 2.5, 200.0]);
    let y = Array1::from_vec(vec![1.0f32, 0.3, 1.0, 0.0, 0.0]);
    let pw = ArrayD::from_elem(IxDyn(&[1]), 3.0f32);
    let opts =
        BceWithLogitsOptions { pos_weight: Some(pw.view()), reduction: Reduction::Sum, ..Default::default() };
    let g = with_elementwise_fast_path(|| {
        binary_cross_entropy_with_logits_backward(z.view(), y.view(), &opts, &GradOutput::one())
    })
    .unwrap();
    let want = [-3.0, -0.824_118_6, -1.5, 0.924_141_8, 1.0];
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{g}");
    }
    // a (C, 1, 1) pos_weight and weight on (N, C, H, W): each value repeated H·W times
    let (n, ch, h, wd) = (3, 4, 5, 7);
    let mut rng = Rng(3);
    let x = ArrayD::from_shape_fn(IxDyn(&[n, ch, h, wd]), |_| (8.0 * rng.unit() - 4.0) as f32);
    let t = ArrayD::from_shape_fn(IxDyn(&[n, ch, h, wd]), |_| rng.below(2) as f32);
    let pw = weight(&[ch, 1, 1], false, 4);
    let w = weight(&[ch, 1, wd], false, 5);
    for reduction in REDUCTIONS {
        let opts = BceWithLogitsOptions { weight: Some(w.view()), pos_weight: Some(pw.view()), reduction };
        let ((la, ga), (lb, gb)) = both(&|| {
            let (l, g) = binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &opts).unwrap();
            (loss_vec(&l), flat(&g))
        });
        // |x| ≤ 4, |logσ(x)| ≤ 4.02, lw ≤ 3, w ≤ 2.1: terms below 40 per element
        let lbound = match reduction {
            Reduction::None => vec![40.0; 420],
            Reduction::Sum => vec![40.0 * 420.0],
            _ => vec![40.0],
        };
        compare_with(&la, &lb, &lbound, &format!("NCHW loss {reduction:?}"));
        compare_with(&ga, &gb, &[10.0; 420], &format!("NCHW grad {reduction:?}"));
    }
}

// ----------------------------------------------------------------------------------------------
// half precision, thread counts
// ----------------------------------------------------------------------------------------------

/// `a` and `b` (half values widened) agree to one unit in the last place of the half type.
fn compare_half(a: &[f32], b: &[f32], half_eps: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (&u, &v)) in a.iter().zip(b).enumerate() {
        if u.is_nan() || v.is_nan() {
            assert!(u.is_nan() && v.is_nan(), "{what}[{i}]: fast {u} vs reference {v}");
        } else {
            let d = (u as f64 - v as f64).abs();
            assert!(
                d <= 1e-7 + 2.0 * half_eps * (v as f64).abs() || u == v,
                "{what}[{i}]: fast {u} vs reference {v}"
            );
        }
    }
}

fn half_checks<T: Element>(half_eps: f64) {
    let conv = |a: &Array2<f32>| a.mapv(|v| T::from_acc(<T::Acc as Real>::c(v as f64)));
    for (n, c) in [(3usize, 1025usize), (2, 33), (1, 70001)] {
        // mild values, no cancellation: every result is within a rounding of the half type
        let (x, t) = bce_case(n, c, 1.0, 9);
        let (x, t) = (conv(&x), conv(&t));
        let w = weight(&[c], false, 3).mapv(|v| T::from_acc(<T::Acc as Real>::c(v as f64)));
        for reduction in REDUCTIONS {
            let opts = BceOptions { weight: Some(w.view()), reduction };
            let ((la, ga), (lb, gb)) = both(&|| {
                let (l, g) = binary_cross_entropy_with_grad(x.view(), t.view(), &opts).unwrap();
                (loss_vec(&l), flat(&g))
            });
            compare_half(&la, &lb, half_eps, &format!("{:?} bce loss {reduction:?}", T::DTYPE));
            compare_half(&ga, &gb, half_eps, &format!("{:?} bce grad {reduction:?}", T::DTYPE));
            let bo = BceWithLogitsOptions { weight: Some(w.view()), pos_weight: Some(w.view()), reduction };
            let ((la, ga), (lb, gb)) = both(&|| {
                let (l, g) = binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &bo).unwrap();
                (loss_vec(&l), flat(&g))
            });
            compare_half(&la, &lb, half_eps, &format!("{:?} bce_logits loss {reduction:?}", T::DTYPE));
            compare_half(&ga, &gb, half_eps, &format!("{:?} bce_logits grad {reduction:?}", T::DTYPE));
        }
        let (lx, p) = kl_case(n, c, 1.0, false, false, 4);
        let lx = lx.mapv(|v| -v.abs() - 0.5);
        let (lx, p) = (conv(&lx), conv(&p));
        for log_target in [false, true] {
            let opts = KlDivOptions { reduction: Reduction::None, log_target };
            let ((la, ga), (lb, gb)) = both(&|| {
                let (l, g) = kl_div_with_grad(lx.view(), p.view(), &opts).unwrap();
                (loss_vec(&l), flat(&g))
            });
            // the loss terms cancel (t ln t − t x): compare them to the terms' size
            for (i, (&u, &v)) in la.iter().zip(&lb).enumerate() {
                let bound = 4.0 * half_eps * (1.0 + (lx.as_slice().unwrap()[i].to_acc().f64()).abs());
                assert!(
                    ((u - v) as f64).abs() <= bound || (u.is_nan() && v.is_nan()),
                    "{:?} kl loss[{i}]: {u} vs {v}",
                    T::DTYPE
                );
            }
            compare_half(&ga, &gb, half_eps, &format!("{:?} kl grad", T::DTYPE));
        }
    }
}

#[test]
fn half_types_take_the_fast_path() {
    half_checks::<infoloss::half::bf16>(1.0 / 256.0);
    half_checks::<infoloss::half::f16>(1.0 / 2048.0);
}

/// Every result of the fast path for the current thread count, as bits.
fn run_all(x: &Array2<f32>, t: &Array2<f32>, p: &Array2<f32>, w: &ArrayD<f32>) -> Vec<u32> {
    let mut out: Vec<f32> = Vec::new();
    let up = upstream(x.nrows(), x.ncols());
    let wv: ArrayViewD<'_, f32> = w.view();
    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean] {
        for log_target in [false, true] {
            let opts = KlDivOptions { reduction, log_target };
            let (l, g) = kl_div_with_grad(x.view(), p.view(), &opts).unwrap();
            out.extend(loss_vec(&l).into_iter().chain(flat(&g)));
            let go = grad_out(reduction, &up);
            out.extend(flat(&kl_div_backward_target(x.view(), p.view(), &opts, &go).unwrap()));
        }
        if reduction == Reduction::BatchMean {
            continue;
        }
        let bo = BceOptions { weight: Some(wv.clone()), reduction };
        let (l, g) = binary_cross_entropy_with_grad(p.view(), t.view(), &bo).unwrap();
        out.extend(loss_vec(&l).into_iter().chain(flat(&g)));
        let lo = BceWithLogitsOptions { weight: Some(wv.clone()), pos_weight: Some(wv.clone()), reduction };
        let (l, g) = binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &lo).unwrap();
        out.extend(loss_vec(&l).into_iter().chain(flat(&g)));
    }
    out.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn bit_identical_for_any_thread_count() {
    for (n, c) in [(3usize, 70001usize), (67, 1025), (5000, 7)] {
        let (x, _) = kl_case(n, c, 6.0, true, false, 21);
        let (p, t) = bce_case(n, c, 1.0, 22);
        let w = weight(&[c], false, 23);
        let mut first: Option<Vec<u32>> = None;
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let bits = pool.install(|| with_elementwise_fast_path(|| run_all(&x, &t, &p, &w)));
            match &first {
                None => first = Some(bits),
                Some(f) => assert!(f == &bits, "N={n} C={c}: {threads} threads differ from 1 thread"),
            }
        }
    }
}

#[test]
fn empty_inputs_follow_torch() {
    let x = Array2::<f32>::zeros((0, 4));
    for reduction in REDUCTIONS {
        let l = binary_cross_entropy(x.view(), x.view(), &BceOptions { weight: None, reduction }).unwrap();
        let want_nan = reduction == Reduction::Mean;
        assert_eq!(loss_vec(&l).first().is_some_and(|v| v.is_nan()), want_nan, "{reduction:?}");
        let (_, g) = binary_cross_entropy_with_logits_with_grad(
            x.view(),
            x.view(),
            &BceWithLogitsOptions { reduction, ..Default::default() },
        )
        .unwrap();
        assert_eq!(g.shape(), &[0, 4]);
    }
    let l = kl_div(x.view(), x.view(), &KlDivOptions { reduction: Reduction::BatchMean, log_target: false })
        .unwrap();
    assert!(l.scalar().unwrap().is_nan());
}
