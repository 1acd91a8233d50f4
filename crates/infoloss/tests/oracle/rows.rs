//! `softmax`, `log_softmax`, `logsumexp` and their backwards: the fast rows against the reference.
//!
//! Tolerance: `1e-7 + 1e-6·|reference|`, plus a few `f32` roundings of the terms a formula subtracts
//! where it cancels (`(x − m) − ln Σ`, `g − exp(y)·Σg`, `(g − Σ g·s)·s`, and `g·exp(x − lse)`, whose
//! argument's rounding is a relative error of the result).

use super::{EPS32, LENGTHS, Oracle, Rng, SCALES, Tol, bits, both, vals};
use infoloss::ndarray::{Array2, Array3, ArrayD, IxDyn, ShapeBuilder, s};
use infoloss::{log_softmax, log_softmax_backward, logsumexp, logsumexp_backward, softmax, softmax_backward};

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-7;

/// `rows × c` values `scale·u`; with `special`, row 0 holds a NaN, row 1 a `+inf`, row 2 is all
/// `-inf`, row 3 has some `-inf`.
fn input(rows: usize, c: usize, scale: f64, special: bool, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    let mut x = Array2::from_shape_fn((rows, c), |_| (scale * rng.sym()) as f32);
    if special {
        let mut p = || rng.below(c);
        x[[0, p()]] = f32::NAN;
        x[[1, p()]] = f32::INFINITY;
        x.row_mut(2).fill(f32::NEG_INFINITY);
        x[[3, p()]] = f32::NEG_INFINITY;
        x[[3, p()]] = f32::NEG_INFINITY;
    }
    x
}

/// `ATOL + RTOL·|reference| + k·ε₃₂·terms[i]`.
fn terms(k: f64, terms: Vec<f64>) -> Tol<'static> {
    Tol::terms(ATOL, RTOL, k * EPS32, terms)
}

#[test]
fn fast_path_matches_reference() {
    let rows = |c| if c >= 1024 { 4 } else { 6 };
    Oracle::new("softmax rows").sizes(LENGTHS, rows).magnitudes(SCALES).check(|run| {
        for special in [false, true] {
            let seed = 2 + 2 * run.index + special as u64;
            let x = input(run.rows, run.size, run.magnitude, special, seed).into_dyn();
            let g = input(run.rows, run.size, 1.0, false, seed + 1000).into_dyn();
            let g_row = g.index_axis(infoloss::ndarray::Axis(1), 0).to_owned();
            let (rows, c, xs, gs) = (run.rows, run.size, vals(&x), vals(&g));
            let (y, s) = (log_softmax(x.view(), 1).unwrap(), softmax(x.view(), 1).unwrap());
            let (ys, ss) = (vals(&y), vals(&s));
            let lse = vals(&logsumexp(x.view(), 1).unwrap());
            let name = |f: &str| format!("{f} special={special}");
            // (x − m) − ln Σ: the subtraction of two large terms keeps their absolute rounding
            let x_terms = xs.iter().map(|v| v.abs()).collect();
            run.compare(&name("log_softmax"), || log_softmax(x.view(), 1).unwrap(), [terms(2.0, x_terms)]);
            run.compare(&name("softmax"), || softmax(x.view(), 1).unwrap(), [Tol::close(ATOL, RTOL)]);
            run.compare(&name("logsumexp"), || logsumexp(x.view(), 1).unwrap(), [Tol::close(ATOL, RTOL)]);
            // backward: g − exp(y)·Σ|g| and (g − Σ g·s)·s cancel
            let row_sum = |f: &dyn Fn(usize) -> f64| -> Vec<f64> {
                (0..rows).map(|r| (0..c).map(|k| f(r * c + k)).sum()).collect()
            };
            let gsum = row_sum(&|i| gs[i].abs());
            let t = (0..xs.len()).map(|i| gs[i].abs() + ys[i].exp() * gsum[i / c]).collect();
            let f = || log_softmax_backward(y.view(), g.view(), 1).unwrap();
            run.compare(&name("log_softmax_backward"), f, [terms(4.0, t)]);
            let dot = row_sum(&|i| (gs[i] * ss[i]).abs());
            let t = (0..xs.len()).map(|i| (gs[i].abs() + dot[i / c]) * ss[i].abs()).collect();
            let f = || softmax_backward(s.view(), g.view(), 1).unwrap();
            run.compare(&name("softmax_backward"), f, [terms(4.0, t)]);
            // g·exp(x − lse): an ulp of lse (and of x − lse) is a relative error of that size
            let lse_tol =
                Tol::by(|i, _, r| ATOL + (RTOL + 2.0 * EPS32 * (lse[i / c].abs() + xs[i].abs())) * r.abs());
            let f = || logsumexp_backward(x.view(), g_row.view(), 1).unwrap();
            run.compare(&name("logsumexp_backward"), f, [lse_tol]);
        }
    });
    // an empty row set and zero-length rows take the same path as the reference
    let e = Array2::<f32>::zeros((0, 5)).into_dyn();
    assert_eq!(log_softmax(e.view(), 1).unwrap().shape(), &[0, 5]);
    let z = Array2::<f32>::zeros((3, 0)).into_dyn();
    assert_eq!(vals(&logsumexp(z.view(), 1).unwrap()), vec![f64::NEG_INFINITY; 3]);
}

#[test]
fn special_rows_follow_torch() {
    // torch 2.15: F.log_softmax / F.softmax / torch.logsumexp of each row, float32
    let inf = f32::INFINITY;
    let x = Array2::from_shape_vec(
        (4, 3),
        vec![inf, 1.0, 0.0, -inf, -inf, -inf, f32::NAN, 1.0, 0.0, -inf, 1.0, 1.0],
    )
    .unwrap()
    .into_dyn();
    let lsm = log_softmax(x.view(), 1).unwrap();
    assert!(lsm.iter().take(9).all(|v| v.is_nan()));
    assert_eq!(lsm[[3, 0]], -inf);
    assert_eq!(lsm[[3, 1]], -std::f32::consts::LN_2);
    let sm = softmax(x.view(), 1).unwrap();
    assert!(sm.iter().take(9).all(|v| v.is_nan()));
    assert_eq!((sm[[3, 0]], sm[[3, 1]]), (0.0, 0.5));
    let lse = logsumexp(x.view(), 1).unwrap();
    assert_eq!((lse[0], lse[1]), (inf, -inf));
    assert!(lse[2].is_nan());
    assert_eq!(lse[3], 1.0 + std::f32::consts::LN_2);
    // torch: logsumexp grad of [inf, 1, 0] is [nan, 0, 0]; of an all −inf row NaN everywhere
    let g = logsumexp_backward(x.view(), ArrayD::from_elem(IxDyn(&[4]), 1.0f32).view(), 1).unwrap();
    assert!(g[[0, 0]].is_nan() && g[[0, 1]] == 0.0 && g[[0, 2]] == 0.0);
    assert!(g.slice(s![1, ..]).iter().all(|v| v.is_nan()));
}

#[test]
fn bit_identical_for_any_thread_count() {
    let shapes = [(37, 1025), (5, 32000), (300, 17)];
    Oracle::new("softmax rows").shapes(&shapes).threads(&[1, 2, 3]).check(|run| {
        let x = input(run.rows, run.size, 20.0, true, 7 + run.size as u64).into_dyn();
        let g = input(run.rows, run.size, 1.0, false, 8 + run.size as u64).into_dyn();
        run.identical("every row function", || {
            let y = log_softmax(x.view(), 1).unwrap();
            let s = softmax(x.view(), 1).unwrap();
            let mut all = vals(&y);
            all.extend(vals(&s));
            all.extend(vals(&logsumexp(x.view(), 1).unwrap()));
            all.extend(vals(&log_softmax_backward(y.view(), g.view(), 1).unwrap()));
            all.extend(vals(&softmax_backward(s.view(), g.view(), 1).unwrap()));
            all
        });
    });
}

#[test]
fn every_layout_gives_the_same_bits() {
    // softmax along dim 1 of (a, c, b) equals softmax along the last dim of the (a, b, c) permutation,
    // in standard, Fortran-order and reversed-axes layouts
    let (a, c, b) = (3, 129, 5);
    let mut rng = Rng(99);
    let x = Array3::from_shape_fn((a, b, c), |_| (10.0 * rng.sym()) as f32);
    let g = Array3::from_shape_fn((a, b, c), |_| rng.sym() as f32);
    let want_lsm = log_softmax(x.view(), 2).unwrap();
    let want_back = log_softmax_backward(want_lsm.view(), g.view(), 2).unwrap();
    let want_lse = logsumexp(x.view(), -1).unwrap();
    let perm = x.view().permuted_axes([0, 2, 1]);
    let gperm = g.view().permuted_axes([0, 2, 1]);
    let mut fortran = Array3::<f32>::zeros(perm.raw_dim().f());
    fortran.assign(&perm);
    let layouts = [
        ("permuted view", perm.to_owned()),
        ("standard copy", perm.as_standard_layout().into_owned()),
        ("fortran", fortran),
    ];
    for (name, v) in layouts {
        let lsm = log_softmax(v.view(), 1).unwrap();
        let back = log_softmax_backward(lsm.view(), gperm.view(), 1).unwrap();
        let permuted = |a: &ArrayD<f32>| a.view().permuted_axes(IxDyn(&[0, 2, 1])).to_owned();
        assert_eq!(bits(&permuted(&lsm)), bits(&want_lsm), "{name}");
        assert_eq!(bits(&permuted(&back)), bits(&want_back), "{name}");
        assert_eq!(bits(&logsumexp(v.view(), 1).unwrap()), bits(&want_lse), "{name}");
    }
}

#[test]
fn half_types_are_the_rounded_f32_results() {
    fn run<H: infoloss::Element>(round: fn(f32) -> H) {
        let x = input(6, 1025, 8.0, true, 5);
        let g = input(6, 1025, 1.0, false, 6);
        // the half input's exact values, widened to f32
        let (xh, gh) = (x.mapv(round), g.mapv(round));
        let widen = |a: &Array2<H>| a.mapv(|v| super::wide(v) as f32);
        let (xw, gw) = (widen(&xh), widen(&gh));
        let got = log_softmax(xh.view(), 1).unwrap();
        assert_eq!(bits(&got), bits(&log_softmax(xw.view(), 1).unwrap().mapv(round)));
        assert_eq!(bits(&softmax(xh.view(), 1).unwrap()), bits(&softmax(xw.view(), 1).unwrap().mapv(round)));
        let yh = log_softmax(xh.view(), 1).unwrap();
        let yw = yh.mapv(|v| super::wide(v) as f32);
        let want = log_softmax_backward(yw.view(), gw.view(), 1).unwrap().mapv(round);
        assert_eq!(bits(&log_softmax_backward(yh.view(), gh.view(), 1).unwrap()), bits(&want));
        // and the reference path takes half inputs too
        let r = infoloss::with_reference_path(|| log_softmax(xh.view(), 1).unwrap());
        assert_eq!(r.shape(), got.shape());
    }
    run(infoloss::half::f16::from_f32);
    run(infoloss::half::bf16::from_f32);
}

#[test]
fn the_fast_path_is_taken() {
    // The kernels' exp differs from libm's by an ulp on some inputs, so over 128,000 elements the
    // two paths cannot agree bit for bit unless both are the same code (this fails if the fast path
    // is not wired in); the comparisons above bound how far apart they are.
    let x = input(4, 32000, 30.0, false, 3).into_dyn();
    let ones = ArrayD::from_elem(IxDyn(&[4]), 1.0f32);
    let (f, r) = both(|| bits(&softmax(x.view(), 1).unwrap()));
    assert_ne!(f, r);
    let (f, r) = both(|| bits(&logsumexp_backward(x.view(), ones.view(), 1).unwrap()));
    assert_ne!(f, r);
}

#[test]
fn the_crate_wide_switch_turns_every_fast_path_off() {
    use infoloss::distill::{DistillOptions, distill};
    use infoloss::{CrossEntropyOptions, EntropyOptions, KlDivOptions, cross_entropy, entropy, kl_div};
    let x = input(4, 1025, 5.0, false, 21);
    let t = input(4, 1025, 5.0, false, 22);
    let y = infoloss::ndarray::Array1::from_vec(vec![0i64, 5, 1000, 3]);
    let p = x.mapv(|v| v.abs());
    let lp = log_softmax(x.view(), 1).unwrap();
    let all = || {
        let mut v = vals(&softmax(x.view(), 1).unwrap());
        v.extend(vals(&cross_entropy(x.view(), y.view(), &CrossEntropyOptions::default()).unwrap()));
        v.extend(vals(&entropy(p.view(), None, &EntropyOptions { base: None, axis: 1 }).unwrap()));
        v.extend(vals(&distill(x.view(), t.view(), None, &DistillOptions::default()).unwrap()));
        v.extend(vals(&kl_div(lp.view(), p.view(), &KlDivOptions::default()).unwrap()));
        bits(&v)
    };
    // the deprecated per-family switches of earlier releases still work, each switching everything
    #[allow(deprecated)]
    let each = || {
        infoloss::cross_entropy::with_reference_path(|| {
            infoloss::kernels::with_elementwise_reference_path(|| {
                infoloss::with_reference_path(|| {
                    infoloss::info::with_reference_path(|| infoloss::distill::with_reference_path(all))
                })
            })
        })
    };
    let crate_wide = infoloss::kernels::with_reference_path(all);
    assert_eq!(crate_wide, each());
    assert_ne!(crate_wide, all(), "the fast paths give other roundings somewhere");
    assert_eq!(infoloss::kernels::with_reference_path(|| infoloss::kernels::with_fast_path(all)), all());
}
