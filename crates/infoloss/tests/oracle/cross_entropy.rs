//! The cross-entropy functions, class indices and probability targets, allocating and in place: the fast
//! rows against the reference, over weights, label smoothing, `ignore_index`, every reduction, NaN/±inf
//! rows, every layout, half types and the fuzzer's finds.
//!
//! Tolerance: `|fast − reference| ≤ 1e-7 + 1e-6·|reference| + 4·ε_f32·bound` (ε_f32 = 2⁻²³). `bound` (for
//! gradients) is the magnitude of the two terms PyTorch's `log_softmax` backward subtracts,
//! `|gl_c| + p_c·|Σ gl|`: where they cancel both paths are only exact to a few roundings of those terms
//! (and so is PyTorch, which sums in yet another order); for losses it is zero.

use super::{LENGTHS, Oracle, Rng, SCALES, Tol, Values, narrow, on_threads, vals, wide};
use infoloss::ndarray::{Array1, Array2, Array3, ArrayD, IxDyn};
use infoloss::{
    CrossEntropyOptions, Element, GradOutput, Loss, Reduction, cross_entropy, cross_entropy_backward,
    cross_entropy_probs, cross_entropy_probs_backward, cross_entropy_probs_with_grad,
    cross_entropy_probs_with_grad_in_place, cross_entropy_with_grad, cross_entropy_with_grad_in_place,
};
use infoloss::{with_fast_path, with_reference_path};

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-7;

struct Case {
    x: Array2<f32>,
    y: Array1<i64>,
    t: Array2<f32>,
}

/// `n` rows of `c` logits `scale·u`, u uniform in (−1, 1); targets uniform, row 0's target is −100.
/// With `special`: row 0 (ignored) holds a NaN, row 1 a NaN, row 2 `-inf` at its target, row 3 a `+inf`,
/// row 4 is all `-inf`, row 5 has `-inf` logits away from the target.
fn case(c: usize, n: usize, scale: f64, special: bool, seed: u64) -> Case {
    let mut rng = Rng(seed);
    let mut x = Array2::<f32>::zeros((n, c));
    let mut t = Array2::<f32>::zeros((n, c));
    let mut y = Array1::<i64>::zeros(n);
    for i in 0..n {
        let mut tsum = 0f64;
        for j in 0..c {
            x[[i, j]] = (scale * (2.0 * rng.unit() - 1.0)) as f32;
            // probability targets with some exact zeros
            let v = if rng.below(4) == 0 { 0.0 } else { rng.unit() };
            t[[i, j]] = v as f32;
            tsum += v;
        }
        if tsum > 0.0 {
            for j in 0..c {
                t[[i, j]] = (t[[i, j]] as f64 / tsum) as f32;
            }
        }
        y[i] = rng.below(c) as i64;
    }
    if n > 0 {
        y[0] = -100;
    }
    if special {
        let pos = |rng: &mut Rng| rng.below(c);
        if n > 0 {
            let p = pos(&mut rng);
            x[[0, p]] = f32::NAN;
        }
        if n > 1 {
            let p = pos(&mut rng);
            x[[1, p]] = f32::NAN;
        }
        if n > 2 {
            x[[2, y[2] as usize]] = f32::NEG_INFINITY;
        }
        if n > 3 {
            let p = pos(&mut rng);
            x[[3, p]] = f32::INFINITY;
        }
        if n > 4 {
            x.row_mut(4).fill(f32::NEG_INFINITY);
        }
        if n > 5 && c > 1 {
            for j in 0..c {
                if j as i64 != y[5] && j % 3 == 0 {
                    x[[5, j]] = f32::NEG_INFINITY;
                }
            }
        }
    }
    Case { x, y, t }
}

/// `ATOL + RTOL·|reference| + 4·ε_f32·bound[i]`.
fn tol(bound: Vec<f64>) -> Tol<'static> {
    Tol::terms(ATOL, RTOL, 4.0 * f32::EPSILON as f64, bound)
}

/// Fast `a` and reference `b` agree to `ATOL + RTOL·|b|`.
fn close(a: &impl Values, b: &impl Values, what: &str) {
    super::compare(&vals(a), &vals(b), &tol(Vec::new()), || what.to_string());
}

fn loss_vec(l: &Loss<f32>) -> Vec<f32> {
    match l {
        Loss::Scalar(v) => vec![*v],
        Loss::Elementwise(a) => a.iter().copied().collect(),
    }
}

/// Per element of an `(N, C)` gradient: `|gl_c| + p_c·|S|` with `gl` the upstream gradient of
/// `log_softmax` (`coef(r, c)`, already scaled) and `S = Σ_c gl_c`, `p = softmax(x)` in `f64`.
fn term_bound(x: &Array2<f32>, coef: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let (n, c) = x.dim();
    let mut out = Vec::with_capacity(n * c);
    for r in 0..n {
        let row = x.row(r);
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let s: f64 = (0..c).map(|k| coef(r, k)).sum();
        for k in 0..c {
            let p = (row[k] as f64 - m).exp() / z;
            let b = coef(r, k).abs() + if p.is_finite() { p * s.abs() } else { 0.0 };
            out.push(if b.is_finite() { b } else { 0.0 });
        }
    }
    out
}

/// Runs every class-index and probability-target entry point on the fast and the reference path.
fn check(
    run: &mut super::Run<'_>,
    cs: &Case,
    opts: &CrossEntropyOptions<'_, f32>,
    tag: &str,
    upstream: &ArrayD<f32>,
) {
    // rows targeted at −100 take the other ignore_index instead
    let y = cs.y.mapv(|v| if v == -100 { opts.ignore_index } else { v });
    let (x, y, t) = (cs.x.view(), y.view(), cs.t.view());
    let (n, c) = cs.x.dim();
    let w = |k: usize| opts.weight.as_ref().map_or(1.0, |w| w[k] as f64);
    let eps = opts.label_smoothing.max(0.0);
    let kept = |r: usize| y[r] != opts.ignore_index;
    let big_w: f64 = (0..n).filter(|&r| kept(r)).map(|r| w(y[r] as usize)).sum();
    // per-row upstream: `with_grad` (g = 1) and `backward` (0.7, or the array for `none`)
    let g_row = |r: usize, backward: bool, denom: f64| match (opts.reduction, backward) {
        (Reduction::None, true) => upstream[[r]] as f64,
        (Reduction::None, false) => 1.0,
        (Reduction::Mean, b) => (if b { 0.7 } else { 1.0 }) / denom,
        (_, b) => {
            if b {
                0.7
            } else {
                1.0
            }
        }
    };
    let index_bound = |backward: bool| {
        tol(term_bound(&cs.x, |r, k| {
            if !kept(r) {
                return 0.0;
            }
            let yr = y[r] as usize;
            let d = if k == yr { (1.0 - eps) * w(yr) } else { 0.0 };
            g_row(r, backward, big_w) * (d + eps / c as f64 * w(k))
        }))
    };
    let probs_bound = |backward: bool| {
        tol(term_bound(&cs.x, |r, k| {
            let tt = cs.t[[r, k]] as f64 * (1.0 - eps) + eps / c as f64;
            g_row(r, backward, n as f64) * w(k) * tt
        }))
    };
    let up = if opts.reduction == Reduction::None {
        GradOutput::Array(upstream.view())
    } else {
        GradOutput::Scalar(0.7f32)
    };
    let name = |f: &str| format!("{f} {tag}");
    run.compare(&name("cross_entropy"), || cross_entropy(x, y, opts).unwrap(), [tol(vec![])]);
    let f = || cross_entropy_with_grad(x, y, opts).unwrap();
    run.compare(&name("cross_entropy_with_grad"), f, [tol(vec![]).on("loss"), index_bound(false).on("grad")]);
    let f = || cross_entropy_backward(x, y, opts, &up).unwrap();
    run.compare(&name("cross_entropy_backward"), f, [index_bound(true)]);
    // probability targets take no non-negative ignore_index
    let popts = CrossEntropyOptions { ignore_index: -100, ..opts.clone() };
    run.compare(&name("cross_entropy_probs"), || cross_entropy_probs(x, t, &popts).unwrap(), [tol(vec![])]);
    let f = || cross_entropy_probs_with_grad(x, t, &popts).unwrap();
    run.compare(
        &name("cross_entropy_probs_with_grad"),
        f,
        [tol(vec![]).on("loss"), probs_bound(false).on("grad")],
    );
    let f = || cross_entropy_probs_backward(x, t, &popts, &up).unwrap();
    run.compare(&name("cross_entropy_probs_backward"), f, [probs_bound(true)]);
}

#[test]
fn fast_path_matches_reference() {
    let rows = |c| if c >= 32000 { 3 } else { 7 };
    let summary = Oracle::new("cross_entropy").sizes(LENGTHS, rows).magnitudes(SCALES).check(|run| {
        let (n, c) = (run.rows, run.size);
        let mut rng = Rng(c as u64);
        let weight: Array1<f32> = (0..c).map(|_| (0.1 + 2.0 * rng.unit()) as f32).collect();
        let upstream = ArrayD::from_shape_vec(IxDyn(&[n]), (0..n).map(|i| 0.25 + i as f32 * 0.5).collect()).unwrap();
        for special in [false, true] {
            let cs = case(c, n, run.magnitude, special, 2 + 2 * run.index + special as u64);
            for weighted in [false, true] {
                for ls in [0.0, 0.1, 1.0] {
                    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                        // a second ignore_index that is a real class of some rows
                        for ignore_index in [-100, 0] {
                            if ignore_index == 0 && (ls != 0.1 || !special) {
                                continue;
                            }
                            let weight = weighted.then(|| weight.view());
                            let opts = CrossEntropyOptions { weight, ignore_index, reduction, label_smoothing: ls };
                            let tag = format!("special={special} weight={weighted} ls={ls} {reduction:?} ignore={ignore_index}");
                            check(run, &cs, &opts, &tag, &upstream);
                        }
                    }
                }
            }
        }
    });
    // one exp per element and blocked sums: some bits must differ
    summary.assert_fast_path_taken("cross_entropy");
}

#[test]
fn one_d_input_and_all_ignored() {
    // a 1-D input (one row, no batch) and all targets ignored go through the fast path too
    let x = infoloss::ndarray::array![0.5f32, -1.0, 2.0, 7.0];
    let y = infoloss::ndarray::arr0(2i64);
    let opts = CrossEntropyOptions::default();
    let (l, g) = with_fast_path(|| cross_entropy_with_grad(x.view(), y.view(), &opts)).unwrap();
    let (lr, gr) = with_reference_path(|| cross_entropy_with_grad(x.view(), y.view(), &opts)).unwrap();
    close(&l, &lr, "1-D loss");
    close(&g, &gr, "1-D grad");
    // ln(e^0.5 + e^-1 + e^2 + e^7) − 2 = 5.008540276619498
    assert!((l.scalar().unwrap() - 5.008_54).abs() < 1e-5);

    let x = Array2::<f32>::from_elem((3, 5), 1.0);
    let y = Array1::<i64>::from_elem(3, -100);
    let (l, g) = with_fast_path(|| cross_entropy_with_grad(x.view(), y.view(), &opts)).unwrap();
    assert!(l.scalar().unwrap().is_nan());
    assert!(g.iter().all(|&v| v == 0.0));
    // zero class weights make W = 0: mean is 0/0 = NaN, the reference path handles the gradient
    let w = Array1::<f32>::zeros(5);
    let opts = CrossEntropyOptions { weight: Some(w.view()), ..Default::default() };
    let y = Array1::from_vec(vec![0i64, 1, 2]);
    let (l, g) = with_fast_path(|| cross_entropy_with_grad(x.view(), y.view(), &opts)).unwrap();
    let (lr, gr) = with_reference_path(|| cross_entropy_with_grad(x.view(), y.view(), &opts)).unwrap();
    assert!(l.scalar().unwrap().is_nan() && lr.scalar().unwrap().is_nan());
    close(&g, &gr, "W = 0 grad");
}

#[test]
fn bit_identical_for_any_thread_count() {
    let shapes = [(67, 1025), (9, 32000), (5000, 7)];
    Oracle::new("cross_entropy").shapes(&shapes).threads(&[1, 2, 3]).check(|run| {
        let (n, c) = (run.rows, run.size);
        let cs = case(c, n, 8.0, false, 99 + c as u64);
        let weight: Array1<f32> = (0..c).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
        let (x, y, t) = (cs.x.view(), cs.y.view(), cs.t.view());
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            for (weighted, ls) in [(false, 0.0), (true, 0.1), (false, 0.2)] {
                let weight = weighted.then(|| weight.view());
                let opts =
                    CrossEntropyOptions { weight, reduction, label_smoothing: ls, ..Default::default() };
                let tag = format!("{reduction:?} weighted={weighted} ls={ls}");
                run.identical(&format!("cross_entropy_with_grad {tag}"), || {
                    cross_entropy_with_grad(x, y, &opts).unwrap()
                });
                run.identical(&format!("cross_entropy {tag}"), || cross_entropy(x, y, &opts).unwrap());
                run.identical(&format!("cross_entropy_probs_with_grad {tag}"), || {
                    cross_entropy_probs_with_grad(x, t, &opts).unwrap()
                });
                run.identical(&format!("cross_entropy_with_grad_in_place {tag}"), || {
                    let mut xi = cs.x.clone();
                    (cross_entropy_with_grad_in_place(xi.view_mut(), y, &opts).unwrap(), xi)
                });
            }
        }
    });
}

/// All options the in-place and layout tests sweep.
fn option_sets(weight: &Array1<f32>) -> Vec<CrossEntropyOptions<'_, f32>> {
    let mut v = Vec::new();
    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        for (weighted, ls) in [(false, 0.0), (true, 0.0), (true, 0.1), (false, 0.3)] {
            v.push(CrossEntropyOptions {
                weight: weighted.then(|| weight.view()),
                reduction,
                label_smoothing: ls,
                ..Default::default()
            });
        }
    }
    v
}

fn bits_of(l: &Loss<f32>, g: &ArrayD<f32>) -> Vec<u32> {
    loss_vec(l).iter().chain(g.iter()).map(|v| v.to_bits()).collect()
}

#[test]
fn in_place_equals_with_grad_bit_for_bit() {
    for &c in &[1usize, 9, 33, 1025, 32000] {
        let n = if c >= 32000 { 3 } else { 11 };
        for special in [false, true] {
            let cs = case(c, n, 12.0, special, 7 + c as u64);
            let weight: Array1<f32> = (0..c).map(|i| 0.5 + (i % 5) as f32 * 0.3).collect();
            for opts in option_sets(&weight) {
                let (x, y, t) = (cs.x.view(), cs.y.view(), cs.t.view());
                let (l, g) = cross_entropy_with_grad(x, y, &opts).unwrap();
                let mut xi = cs.x.clone();
                let li = cross_entropy_with_grad_in_place(xi.view_mut(), y, &opts).unwrap();
                assert_eq!(bits_of(&li, &xi.into_dyn()), bits_of(&l, &g), "C={c} {opts:?}");

                let (l, g) = cross_entropy_probs_with_grad(x, t, &opts).unwrap();
                let mut xi = cs.x.clone();
                let li = cross_entropy_probs_with_grad_in_place(xi.view_mut(), t, &opts).unwrap();
                assert_eq!(bits_of(&li, &xi.into_dyn()), bits_of(&l, &g), "probs C={c} {opts:?}");

                // the reference path's in-place (compute aside, copy in) agrees too
                let (l, g) = with_reference_path(|| cross_entropy_with_grad(x, y, &opts)).unwrap();
                let mut xi = cs.x.clone();
                let li = with_reference_path(|| cross_entropy_with_grad_in_place(xi.view_mut(), y, &opts))
                    .unwrap();
                assert_eq!(bits_of(&li, &xi.into_dyn()), bits_of(&l, &g), "reference C={c} {opts:?}");
            }
        }
    }
    // an error leaves the buffer untouched
    let mut x = Array2::<f32>::from_elem((2, 3), 1.5);
    let bad = Array1::from_vec(vec![0i64, 3]);
    let err = cross_entropy_with_grad_in_place(x.view_mut(), bad.view(), &CrossEntropyOptions::default());
    assert!(err.unwrap_err().to_string().contains("target 3 at [1] is out of range for 3 classes"));
    assert!(x.iter().all(|&v| v == 1.5));
}

/// The same rows laid out as `(N, C)` standard, `(N, C)` transposed in memory, and `(N', C, D)`
/// with trailing dimensions: the fast path gives the same bits for each (every row is computed on its
/// own, from the same values), and the in-place variant on a non-contiguous view too.
#[test]
fn every_layout_gives_the_same_bits() {
    let (n, c) = (12usize, 37usize);
    let cs = case(c, n, 6.0, true, 4242);
    let weight: Array1<f32> = (0..c).map(|i| 0.25 + (i % 3) as f32).collect();
    // column-major copy of x: the same logical array, non-standard strides
    let mut xt = Array2::<f32>::zeros((c, n));
    xt.assign(&cs.x.t());
    let x_f = xt.t();
    let mut tt = Array2::<f32>::zeros((c, n));
    tt.assign(&cs.t.t());
    let t_f = tt.t();
    // (N/3, C, 3): row r = (r / 3, :, r % 3)
    let to3 = |a: &Array2<f32>| Array3::from_shape_fn((n / 3, c, 3), |(i, k, d)| a[[i * 3 + d, k]]);
    let from3 = |a: &ArrayD<f32>| -> Vec<f32> {
        let a = a.view().into_dimensionality::<infoloss::ndarray::Ix3>().unwrap();
        (0..n).flat_map(|r| (0..c).map(move |k| a[[r / 3, k, r % 3]])).collect()
    };
    let (x3, t3) = (to3(&cs.x), to3(&cs.t));
    let y3 = cs.y.clone().into_shape_with_order((n / 3, 3)).unwrap();
    for opts in option_sets(&weight) {
        let (l, g) = cross_entropy_with_grad(cs.x.view(), cs.y.view(), &opts).unwrap();
        let (lf, gf) = cross_entropy_with_grad(x_f, cs.y.view(), &opts).unwrap();
        assert_eq!(bits_of(&lf, &gf), bits_of(&l, &g), "column-major {opts:?}");
        let (l3, g3) = cross_entropy_with_grad(x3.view(), y3.view(), &opts).unwrap();
        let flat3: Vec<u32> = loss_vec(&l3).iter().chain(from3(&g3).iter()).map(|v| v.to_bits()).collect();
        assert_eq!(flat3, bits_of(&l, &g), "(N, C, D) {opts:?}");
        let mut xi = xt.clone();
        let li = cross_entropy_with_grad_in_place(xi.view_mut().reversed_axes(), cs.y.view(), &opts).unwrap();
        assert_eq!(bits_of(&li, &xi.t().to_owned().into_dyn()), bits_of(&l, &g), "in place, column-major");

        let (l, g) = cross_entropy_probs_with_grad(cs.x.view(), cs.t.view(), &opts).unwrap();
        let (lf, gf) = cross_entropy_probs_with_grad(x_f, t_f, &opts).unwrap();
        assert_eq!(bits_of(&lf, &gf), bits_of(&l, &g), "probs column-major {opts:?}");
        let (l3, g3) = cross_entropy_probs_with_grad(x3.view(), t3.view(), &opts).unwrap();
        let flat3: Vec<u32> = loss_vec(&l3).iter().chain(from3(&g3).iter()).map(|v| v.to_bits()).collect();
        assert_eq!(flat3, bits_of(&l, &g), "probs (N, C, D) {opts:?}");
    }
    // and the (N, C, D) fast path against the reference
    let opts = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
    let (a, b) = (
        with_fast_path(|| cross_entropy_with_grad(x3.view(), y3.view(), &opts)).unwrap(),
        with_reference_path(|| cross_entropy_with_grad(x3.view(), y3.view(), &opts)).unwrap(),
    );
    close(&a.0, &b.0, "(N, C, D) loss vs reference");
}

/// Half types run through the same `f32` kernels (converted per row): their results are the `f32`
/// results of the widened inputs, rounded once, and agree with the half-type reference path.
#[test]
fn half_types_take_the_fast_path() {
    fn run<H: Element>(cs: &Case, weight: &Array1<f32>) {
        let (xh, th, wh) = (cs.x.mapv(half::<H>), cs.t.mapv(half::<H>), weight.mapv(half::<H>));
        // the widened f32 values
        let widen = |h: H| wide(h) as f32;
        let (xw, tw, ww) = (xh.mapv(widen), th.mapv(widen), wh.mapv(widen));
        // bit patterns, NaN canonical; `rounded` takes f32 values to H first
        let canon = |v: Vec<f64>| {
            v.iter().map(|w| if w.is_nan() { u64::MAX } else { w.to_bits() }).collect::<Vec<_>>()
        };
        let rounded = |v: &dyn Values| canon(vals(v).iter().map(|&f| wide(narrow::<H>(f))).collect());
        let same = |h: &dyn Values, f: &dyn Values, what: &str| {
            assert_eq!(canon(vals(h)), rounded(f), "{:?} {what}", H::DTYPE)
        };
        for ls in [0.0, 0.1] {
            for weighted in [false, true] {
                let (reduction, label_smoothing) = (Reduction::None, ls);
                let oh = CrossEntropyOptions {
                    weight: weighted.then(|| wh.view()),
                    label_smoothing,
                    reduction,
                    ..Default::default()
                };
                let of = CrossEntropyOptions {
                    weight: weighted.then(|| ww.view()),
                    label_smoothing,
                    reduction,
                    ..Default::default()
                };
                let (lh, gh) = cross_entropy_with_grad(xh.view(), cs.y.view(), &oh).unwrap();
                let (lf, gf) = cross_entropy_with_grad(xw.view(), cs.y.view(), &of).unwrap();
                same(&lh, &lf, &format!("loss ls={ls}"));
                same(&gh, &gf, "grad");
                let (lh, gh) = cross_entropy_probs_with_grad(xh.view(), th.view(), &oh).unwrap();
                let (lf, gf) = cross_entropy_probs_with_grad(xw.view(), tw.view(), &of).unwrap();
                same(&lh, &lf, "probs loss");
                same(&gh, &gf, "probs grad");
                // the half reference path agrees within half precision
                let (_, gr) =
                    with_reference_path(|| cross_entropy_probs_with_grad(xh.view(), th.view(), &oh)).unwrap();
                let tol = Tol::by(|_, _, r| 1e-2 * r.abs().max(1e-3));
                super::compare(&vals(&gh), &vals(&gr), &tol, || format!("{:?}: fast vs reference", H::DTYPE));
            }
        }
    }
    fn half<H: Element>(v: f32) -> H {
        narrow::<H>(v as f64)
    }
    let cs = case(1031, 9, 4.0, true, 77);
    let weight: Array1<f32> = (0..1031).map(|i| 0.5 + (i % 4) as f32 * 0.5).collect();
    run::<infoloss::half::bf16>(&cs, &weight);
    run::<infoloss::half::f16>(&cs, &weight);
}

/// Loss and input gradient of `cross_entropy_probs_with_grad` on both paths, NaN/inf in the same places,
/// finite values within `rtol·max(|fast|, |reference|) + atol`.
fn probs_same_class(
    x: &ArrayD<f32>,
    t: &ArrayD<f32>,
    opts: &CrossEntropyOptions<'_, f32>,
    what: &str,
) -> Vec<f32> {
    let class = |(rtol, atol): (f64, f64)| Tol::by(move |_, f, r| rtol * f.abs().max(r.abs()) + atol);
    Oracle::new("cross_entropy_probs, non-finite values").check(|run| {
        run.compare(what, || cross_entropy_probs(x.view(), t.view(), opts).unwrap(), [class((RTOL, 0.0))]);
        // the gradient's finite entries differ by the cancellation of p·Σt' against t' (see `check`)
        let f = || cross_entropy_probs_with_grad(x.view(), t.view(), opts).unwrap();
        run.compare(
            what,
            f,
            [class((RTOL, 0.0)).on("loss of _with_grad"), class((1e-3, 1e-6)).on("gradient")],
        );
    });
    loss_vec(&cross_entropy_probs(x.view(), t.view(), opts).unwrap())
}

fn arr(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

/// The fuzzer's finds (`fuzz/corpus/cross_entropy_probs/regression-fast-path-nan-vs-inf-*`): an
/// infinite target entry at the row's maximum logit, where the fast path's closed form
/// `Σt·ln_s + Σ t·(m − x)` met `inf·0` and gave NaN, while PyTorch's `−Σ t·log_softmax(x)` is ±inf.
#[test]
fn infinite_targets_at_the_row_maximum_give_the_references_infinities() {
    let inf = f32::INFINITY;
    // -1 (bf16 in the fuzz input, computed in f32): row 2 has t = inf at its maximum logit 20.375.
    let x = arr(&[3, 3], &[0.0, 0.0, 708.0, 0.5, 21.0, -30.0, 13.6875, 20.375, -18.25]);
    let t = arr(
        &[3, 3],
        &[17.0, 0.457_031_25, 0.640_625, 0.457_031_25, 0.457_031_25, 0.470_703_13, 0.0, inf, 0.316_406_25],
    );
    let none = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
    let l = probs_same_class(&x, &t, &none, "reproducer 1");
    assert_eq!(l[2], inf);
    // 708·(17 + 0.457…) and 20.5·0.457… + 51·0.4707…
    assert!((l[0] - 12_359.58).abs() < 0.01 && (l[1] - 33.375).abs() < 0.001, "{l:?}");
    let bf = x.mapv(infoloss::half::bf16::from_f32);
    let bt = t.mapv(infoloss::half::bf16::from_f32);
    let bnone = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
    let lb = with_fast_path(|| cross_entropy_probs(bf.view(), bt.view(), &bnone)).unwrap().into_array();
    assert_eq!(lb[2].to_f32(), inf);

    // -2 (f32, class weights, ε = −0.1 i.e. none): t = −inf at the maximum logit 0 of row [1, :, 1, 0].
    let m = -8.67f32;
    let x = arr(&[2, 2, 2, 2], &[m, m, m, 2.0, m, -7.91, m, m, m, m, m, m, m, 0.0, m, m]);
    let t = arr(
        &[2, 2, 2, 2],
        &[
            0.121,
            0.121,
            0.214,
            -0.0,
            -4.651_134_3e-7,
            -1.180_358e14,
            0.944,
            0.944,
            0.08,
            0.0,
            -inf,
            0.238,
            0.526,
            0.35,
            0.797,
            0.797,
        ],
    );
    let w = Array1::from_vec(vec![0.283f32, 0.535]);
    let opts = CrossEntropyOptions {
        weight: Some(w.view()),
        reduction: Reduction::None,
        label_smoothing: -0.1,
        ..Default::default()
    };
    let l = probs_same_class(&x, &t, &opts, "reproducer 2");
    assert_eq!(l[6], -inf, "{l:?}");
    assert!(l.iter().enumerate().all(|(i, v)| i == 6 || v.is_finite()), "{l:?}");
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let o = CrossEntropyOptions { reduction, ..opts };
        assert_eq!(probs_same_class(&x, &t, &o, "reproducer 2, reduced"), vec![-inf]);
    }
}

/// Products `t·log_softmax(x)` that overflow `f32` in the reference but not in the closed form (or
/// the other way round) give the reference's values too.
#[test]
fn overflowing_target_products_give_the_references_values() {
    let big = 3.0e38f32;
    // Opposite infinities: (−ln 10)·3e38 = −inf and +inf, their sum NaN (the closed form gave 0).
    let mut t = vec![0.0f32; 10];
    t[0] = big;
    t[1] = -big;
    let x = arr(&[1, 10], &[0.0; 10]);
    let none = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
    assert!(probs_same_class(&x, &arr(&[1, 10], &t), &none, "opposite overflows")[0].is_nan());
    // One overflowing product (−ln 3·3.3e38) in one of two rows: the mean is +inf (the closed form's
    // row loss 3.6e38 is finite in f64, and so was its mean 1.8e38).
    let x = arr(&[2, 3], &[0.0; 6]);
    let t = arr(&[2, 3], &[3.3e38, 0.0, 0.0, 0.2, 0.3, 0.5]);
    let mean = CrossEntropyOptions::default();
    assert_eq!(probs_same_class(&x, &t, &mean, "one overflow")[0], f32::INFINITY);
    // Large but finite products are the same finite values.
    let t = arr(&[2, 3], &[1e37, 0.0, 0.0, 0.2, 0.3, 0.5]);
    let l = probs_same_class(&x, &t, &mean, "large products")[0];
    assert!((l as f64 - 1e37 * 3f64.ln() / 2.0).abs() < 1e31, "{l}");
    // A −inf logit under a positive target: +inf; under a zero target: 0·inf = NaN.
    let x = arr(&[2, 3], &[f32::NEG_INFINITY, 0.0, 1.0, f32::NEG_INFINITY, 0.0, 1.0]);
    let t = arr(&[2, 3], &[0.5, 0.25, 0.25, 0.0, 0.5, 0.5]);
    let l = probs_same_class(&x, &t, &none, "-inf logits");
    assert_eq!(l[0], f32::INFINITY);
    assert!(l[1].is_nan());
}

/// A nonzero class weight below 2^-100 sends the call to the reference: the kernel's `f32` products
/// `w_c·(m − x_c)` underflow into subnormals differently from PyTorch's `w_c·lsm_c` (fuzz finding of
/// 2 December 2026: the fast path gave 0.66 where the reference and PyTorch's order of rounding give
/// 0.555). Weights of 2^-100 and up keep the fast path and agree with the reference.
#[test]
fn subnormal_class_weights_take_the_reference() {
    let x = arr(&[4], &[5.98, 5.98, 5.98, 6.8]);
    let y = infoloss::ndarray::arr0(0i64).into_dyn();
    for (w0, want) in [(3e-45f32, None), (2f32.powi(-100), Some(0.615f64)), (1e-20, Some(0.615))] {
        let w = Array1::from(vec![w0, 0.0, 0.0, 0.0]);
        let o = CrossEntropyOptions { weight: Some(w.view()), label_smoothing: 0.84, ..Default::default() };
        let fast = cross_entropy(x.view(), y.view(), &o).unwrap().scalar().unwrap();
        let (fused, _) = cross_entropy_with_grad(x.view(), y.view(), &o).unwrap();
        let reference =
            with_reference_path(|| cross_entropy(x.view(), y.view(), &o)).unwrap().scalar().unwrap();
        assert_eq!(fast.to_bits(), reference.to_bits(), "w0 = {w0:e}: fast {fast}, reference {reference}");
        assert_eq!(fused.scalar().unwrap().to_bits(), reference.to_bits(), "w0 = {w0:e}: fused");
        // With a normal weight the ratio Σw·(−lsm)/Σw is −lsm_0 = 1.662…: 0.16·1.662 + 0.21·1.662.
        if let Some(want) = want {
            assert!((fast as f64 - want).abs() < 1e-3, "w0 = {w0:e}: {fast}");
        }
    }
}

/// `bf16` rows go through the `bf16` row kernel (widened block by block, gradient rounded into the
/// output, allocating and in place): every loss and gradient bit equals the `f32` fast path on the
/// widened inputs, rounded to `bf16`, over the row lengths, magnitudes 1e-30..1e30, NaN/±inf rows,
/// weights, label smoothing, ignore_index and reductions, for 1, 2 and 3 threads.
#[test]
fn bf16_rows_are_the_rounded_f32_results_in_place_and_allocating() {
    use infoloss::half::bf16;
    let bits16 = |v: &mut dyn Iterator<Item = bf16>| -> Vec<u16> { v.map(|h| h.to_bits()).collect() };
    let mut lengths = LENGTHS.to_vec();
    lengths.push(70001);
    let mut checked = 0;
    for (i, &c) in lengths.iter().enumerate() {
        let n = if c >= 32000 { 3 } else { 6 };
        for (j, &scale) in SCALES.iter().enumerate() {
            for special in [false, true] {
                let cs = case(c, n, scale, special, 31 + (i * 16 + j) as u64);
                let xh = cs.x.mapv(bf16::from_f32);
                let xw = xh.mapv(bf16::to_f32);
                let wh: Array1<bf16> = (0..c).map(|k| bf16::from_f32(0.5 + (k % 5) as f32 * 0.25)).collect();
                let ww = wh.mapv(bf16::to_f32);
                for (weighted, ls, reduction) in [
                    (false, 0.0, Reduction::Mean),
                    (true, 0.1, Reduction::None),
                    (false, 0.3, Reduction::Sum),
                ] {
                    let oh = CrossEntropyOptions {
                        weight: weighted.then(|| wh.view()),
                        reduction,
                        label_smoothing: ls,
                        ..Default::default()
                    };
                    let of = CrossEntropyOptions {
                        weight: weighted.then(|| ww.view()),
                        reduction,
                        label_smoothing: ls,
                        ..Default::default()
                    };
                    let threads = 1 + (i + j) % 3;
                    let ((lh, gh), (lf, gf), li, xi) = on_threads(threads, || {
                        let (lh, gh) = cross_entropy_with_grad(xh.view(), cs.y.view(), &oh).unwrap();
                        let (lf, gf) = cross_entropy_with_grad(xw.view(), cs.y.view(), &of).unwrap();
                        let mut xi = xh.clone();
                        let li = cross_entropy_with_grad_in_place(xi.view_mut(), cs.y.view(), &oh).unwrap();
                        ((lh, gh), (lf, gf), li, xi)
                    });
                    let want_loss = bits16(&mut loss_vec(&lf).into_iter().map(bf16::from_f32));
                    let lossh = |l: &Loss<bf16>| match l {
                        Loss::Scalar(v) => vec![v.to_bits()],
                        Loss::Elementwise(a) => a.iter().map(|v| v.to_bits()).collect(),
                    };
                    let want_grad = bits16(&mut gf.iter().map(|&v| bf16::from_f32(v)));
                    let tag =
                        format!("C={c} scale={scale:e} special={special} w={weighted} ls={ls} {reduction:?}");
                    assert_eq!(lossh(&lh), want_loss, "{tag}: loss");
                    assert!(bits16(&mut gh.iter().copied()) == want_grad, "{tag}: gradient");
                    assert_eq!(lossh(&li), want_loss, "{tag}: in-place loss");
                    assert!(bits16(&mut xi.iter().copied()) == want_grad, "{tag}: in-place gradient");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 23 * 6 * 2 * 3);
}
