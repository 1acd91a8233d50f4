//! The SIMD fast path of `softmax`, `log_softmax`, `logsumexp` and their backwards against the
//! reference implementation (`infoloss::with_reference_path`): row lengths crossing lane
//! and chunk boundaries, magnitudes from 1e-30 to 1e30, ±inf and NaN, every layout, half types, and
//! bit-identical results for 1, 2 and 3 threads.

use crate::support;

use infoloss::ndarray::{Array2, Array3, ArrayD, IxDyn, ShapeBuilder};
use infoloss::{log_softmax, log_softmax_backward, logsumexp, logsumexp_backward, softmax, softmax_backward};
use infoloss::{with_fast_path, with_reference_path};
use support::{EPS32, LENGTHS, Rng, SCALES, bits, compare_bounded, on_threads};

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

fn flat(a: &ArrayD<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

/// The five row functions, fast and reference, on one input; returns the number of mismatches.
fn check(x: &Array2<f32>, g: &Array2<f32>, tag: &str) -> usize {
    let xd = x.view().into_dyn();
    let gd = g.view().into_dyn();
    let g_row = g.column(0).to_owned().into_dyn();
    let both = |f: &dyn Fn() -> ArrayD<f32>| (with_fast_path(f), with_reference_path(f));
    let c = x.ncols();
    let mut bad = 0;

    // forward: same formula, elementwise roundings only
    let close = |w: &[f32]| {
        let w = w.to_vec();
        move |i: usize| ATOL + RTOL * (w[i] as f64).abs()
    };
    let (f, r) = both(&|| log_softmax(xd.view(), 1).unwrap());
    let (f, r) = (flat(&f), flat(&r));
    // (x − m) − ln Σ: the subtraction of two large terms keeps their absolute rounding
    let lsm_bound =
        |i: usize| ATOL + RTOL * (r[i] as f64).abs() + 2.0 * EPS32 * (x[[i / c, i % c]] as f64).abs();
    bad += compare_bounded(&f, &r, lsm_bound, &format!("{tag} log_softmax"));
    let y = log_softmax(xd.view(), 1).unwrap();

    let (f, r) = both(&|| softmax(xd.view(), 1).unwrap());
    let (f, r) = (flat(&f), flat(&r));
    bad += compare_bounded(&f, &r, close(&r), &format!("{tag} softmax"));
    let s = softmax(xd.view(), 1).unwrap();

    let (f, r) = both(&|| logsumexp(xd.view(), 1).unwrap());
    let (f, r) = (flat(&f), flat(&r));
    bad += compare_bounded(&f, &r, close(&r), &format!("{tag} logsumexp"));

    // backward: g − exp(y)·Σg and (g − Σ g·s)·s cancel; allow a few f32 roundings of the terms
    let (f, r) = both(&|| log_softmax_backward(y.view(), gd.view(), 1).unwrap());
    let (f, r) = (flat(&f), flat(&r));
    let gsum: Vec<f64> = g.rows().into_iter().map(|r| r.iter().map(|v| (*v as f64).abs()).sum()).collect();
    let bound = |i: usize| {
        let (row, col) = (i / c, i % c);
        let term = (g[[row, col]] as f64).abs() + (y[[row, col]] as f64).exp() * gsum[row];
        ATOL + RTOL * (r[i] as f64).abs() + 4.0 * EPS32 * term
    };
    bad += compare_bounded(&f, &r, bound, &format!("{tag} log_softmax_backward"));

    let (f, r) = both(&|| softmax_backward(s.view(), gd.view(), 1).unwrap());
    let (f, r) = (flat(&f), flat(&r));
    let dot: Vec<f64> = (0..x.nrows())
        .map(|row| (0..c).map(|col| (g[[row, col]] as f64 * s[[row, col]] as f64).abs()).sum())
        .collect();
    let bound = |i: usize| {
        let (row, col) = (i / c, i % c);
        let term = ((g[[row, col]] as f64).abs() + dot[row]) * (s[[row, col]] as f64).abs();
        ATOL + RTOL * (r[i] as f64).abs() + 4.0 * EPS32 * term
    };
    bad += compare_bounded(&f, &r, bound, &format!("{tag} softmax_backward"));

    let (f, r) = both(&|| logsumexp_backward(xd.view(), g_row.view(), 1).unwrap());
    let (f, r) = (flat(&f), flat(&r));
    // g·exp(x − lse): an ulp of lse (and of x − lse) is a relative error of that size in the result
    let lse = logsumexp(xd.view(), 1).unwrap();
    let bound = |i: usize| {
        let (row, col) = (i / c, i % c);
        let arg = (lse[row] as f64).abs() + (x[[row, col]] as f64).abs();
        ATOL + (RTOL + 2.0 * EPS32 * arg) * (r[i] as f64).abs()
    };
    bad += compare_bounded(&f, &r, bound, &format!("{tag} logsumexp_backward"));
    bad
}

#[test]
fn fast_path_matches_reference() {
    let mut bad = 0;
    let mut seed = 1;
    for &c in LENGTHS {
        for &scale in SCALES {
            for special in [false, true] {
                seed += 1;
                let rows = if c >= 1024 { 4 } else { 6 };
                let x = input(rows, c, scale, special, seed);
                let g = input(rows, c, 1.0, false, seed + 1000);
                bad += check(&x, &g, &format!("c={c} scale={scale:e} special={special}"));
            }
        }
    }
    // an empty row set and zero-length rows take the same path as the reference
    let e = Array2::<f32>::zeros((0, 5)).into_dyn();
    assert_eq!(log_softmax(e.view(), 1).unwrap().shape(), &[0, 5]);
    let z = Array2::<f32>::zeros((3, 0)).into_dyn();
    assert_eq!(flat(&logsumexp(z.view(), 1).unwrap()), vec![f32::NEG_INFINITY; 3]);
    assert_eq!(bad, 0, "{bad} mismatches (listed above)");
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
    assert_eq!(lse[0], inf);
    assert_eq!(lse[1], -inf);
    assert!(lse[2].is_nan());
    assert_eq!(lse[3], 1.0 + std::f32::consts::LN_2);
    // torch: logsumexp grad of [inf, 1, 0] is [nan, 0, 0]; of an all −inf row NaN everywhere
    let g = logsumexp_backward(x.view(), ArrayD::from_elem(IxDyn(&[4]), 1.0f32).view(), 1).unwrap();
    assert!(g[[0, 0]].is_nan() && g[[0, 1]] == 0.0 && g[[0, 2]] == 0.0);
    assert!(g.slice(infoloss::ndarray::s![1, ..]).iter().all(|v| v.is_nan()));
}

#[test]
fn bit_identical_for_any_thread_count() {
    for &(rows, c) in &[(37usize, 1025usize), (5, 32000), (300, 17)] {
        let x = input(rows, c, 20.0, true, 7 + c as u64);
        let g = input(rows, c, 1.0, false, 8 + c as u64);
        let run = || {
            let xd = x.view().into_dyn();
            let gd = g.view().into_dyn();
            let y = log_softmax(xd.view(), 1).unwrap();
            let s = softmax(xd.view(), 1).unwrap();
            let mut all = flat(&y);
            all.extend(flat(&s));
            all.extend(flat(&logsumexp(xd.view(), 1).unwrap()));
            all.extend(flat(&log_softmax_backward(y.view(), gd.view(), 1).unwrap()));
            all.extend(flat(&softmax_backward(s.view(), gd.view(), 1).unwrap()));
            bits(&all)
        };
        let one = on_threads(1, run);
        assert_eq!(one, on_threads(2, run), "{rows}x{c}: 2 threads");
        assert_eq!(one, on_threads(3, run), "{rows}x{c}: 3 threads");
    }
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
    let fortran = {
        let mut f = Array3::<f32>::zeros(perm.raw_dim().f());
        f.assign(&perm);
        f
    };
    for (name, v) in [
        ("permuted view", perm.to_owned()),
        ("standard copy", perm.as_standard_layout().into_owned()),
        ("fortran", fortran),
    ] {
        let lsm = log_softmax(v.view(), 1).unwrap();
        let back = log_softmax_backward(lsm.view(), gperm.view(), 1).unwrap();
        let lse = logsumexp(v.view(), 1).unwrap();
        for i in 0..a {
            for j in 0..b {
                for k in 0..c {
                    assert_eq!(lsm[[i, k, j]].to_bits(), want_lsm[[i, j, k]].to_bits(), "{name}");
                    assert_eq!(back[[i, k, j]].to_bits(), want_back[[i, j, k]].to_bits(), "{name}");
                }
                assert_eq!(lse[[i, j]].to_bits(), want_lse[[i, j]].to_bits(), "{name}");
            }
        }
    }
}

#[test]
fn half_types_are_the_rounded_f32_results() {
    fn run<H: infoloss::Element>(round: fn(f32) -> H) {
        let x = input(6, 1025, 8.0, true, 5);
        let g = input(6, 1025, 1.0, false, 6);
        // the half input's exact values, widened to f32
        let xh = x.mapv(round);
        let xw = xh.mapv(|v| v.to_acc_f32());
        let want = log_softmax(xw.view(), 1).unwrap().mapv(round);
        let got = log_softmax(xh.view(), 1).unwrap();
        assert_eq!(hbits(&got), hbits(&want));
        let want = softmax(xw.view(), 1).unwrap().mapv(round);
        assert_eq!(hbits(&softmax(xh.view(), 1).unwrap()), hbits(&want));
        let gh = g.mapv(round);
        let gw = gh.mapv(|v| v.to_acc_f32());
        let yh = log_softmax(xh.view(), 1).unwrap();
        let yw = yh.mapv(|v| v.to_acc_f32());
        let want = log_softmax_backward(yw.view(), gw.view(), 1).unwrap().mapv(round);
        assert_eq!(hbits(&log_softmax_backward(yh.view(), gh.view(), 1).unwrap()), hbits(&want));
        // and the fast half path is not the reference one by accident: the reference of an f16
        // input gives the same values up to one half-precision rounding
        let r = with_reference_path(|| log_softmax(xh.view(), 1).unwrap());
        assert_eq!(r.shape(), got.shape());
    }
    fn hbits<H: infoloss::Element, D: infoloss::ndarray::Dimension>(
        a: &infoloss::ndarray::Array<H, D>,
    ) -> Vec<u64> {
        use infoloss::Real;
        a.iter().map(|v| v.to_acc().f64().to_bits()).collect()
    }
    trait Wide {
        fn to_acc_f32(self) -> f32;
    }
    impl<H: infoloss::Element> Wide for H {
        fn to_acc_f32(self) -> f32 {
            use infoloss::Real;
            self.to_acc().f64() as f32
        }
    }
    run::<infoloss::half::f16>(infoloss::half::f16::from_f32);
    run::<infoloss::half::bf16>(infoloss::half::bf16::from_f32);
}

#[test]
fn the_fast_path_is_taken() {
    // The kernels' exp differs from libm's by an ulp on some inputs, so over 128,000 elements the
    // two paths cannot agree bit for bit unless both are the same code (this fails if the fast path
    // is not wired in); the comparisons above bound how far apart they are.
    let x = input(4, 32000, 30.0, false, 3).into_dyn();
    let differ = |f: &dyn Fn() -> ArrayD<f32>| {
        let (a, b) = (with_fast_path(f), with_reference_path(f));
        a.iter().zip(b.iter()).filter(|(p, q)| p.to_bits() != q.to_bits()).count()
    };
    assert!(differ(&|| softmax(x.view(), 1).unwrap()) > 0);
    assert!(
        differ(&|| logsumexp_backward(x.view(), ArrayD::from_elem(IxDyn(&[4]), 1.0f32).view(), 1).unwrap())
            > 0
    );
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
        let mut v = flat(&softmax(x.view(), 1).unwrap());
        v.push(cross_entropy(x.view(), y.view(), &CrossEntropyOptions::default()).unwrap().scalar().unwrap());
        v.extend(flat(&entropy(p.view(), None, &EntropyOptions { base: None, axis: 1 }).unwrap()));
        v.push(distill(x.view(), t.view(), None, &DistillOptions::default()).unwrap().scalar().unwrap());
        v.push(kl_div(lp.view(), p.view(), &KlDivOptions::default()).unwrap().scalar().unwrap());
        bits(&v)
    };
    // the deprecated per-family switches of earlier releases still work, each switching everything
    #[allow(deprecated)]
    let each = || {
        infoloss::cross_entropy::with_reference_path(|| {
            infoloss::kernels::with_elementwise_reference_path(|| {
                with_reference_path(|| {
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
