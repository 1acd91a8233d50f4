//! The SIMD fast path of `entropy` (with and without `qk`), `shannon_cross_entropy` and
//! `jensenshannon` against the reference implementation (`infoloss::with_reference_path`):
//! row lengths crossing lane and chunk boundaries, magnitudes from 1e-30 to 1e30, zeros, negative,
//! infinite and NaN entries, both axes, half types, and bit-identical results for 1, 2 and 3 threads.

use crate::support;

use infoloss::ndarray::{Array2, Array3, ArrayD};
use infoloss::{EntropyOptions, JensenShannonOptions, entropy, jensenshannon, shannon_cross_entropy};
use infoloss::{with_fast_path, with_reference_path};
use support::{EPS32, LENGTHS, SCALES, bits, compare_bounded, on_threads};

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-7;

fn dist(rows: usize, c: usize, scale: f64, special: bool, seed: u64) -> Array2<f32> {
    support::info_dist(rows, c, scale, special, seed)
}

fn flat(a: &ArrayD<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

/// `Σ_j |f(p̂_j, q̂_j)|` per row in f64 (rows along axis 1): the magnitude the rounding errors of the
/// terms scale with.
fn term_mass(p: &Array2<f32>, q: &Array2<f32>, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    p.rows()
        .into_iter()
        .zip(q.rows())
        .map(|(pr, qr)| {
            let sp: f64 = pr.iter().map(|v| *v as f64).sum();
            let sq: f64 = qr.iter().map(|v| *v as f64).sum();
            pr.iter()
                .zip(qr.iter())
                .map(|(a, b)| f(*a as f64 / sp, *b as f64 / sq).abs())
                .filter(|v| v.is_finite())
                .sum()
        })
        .collect()
}

fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * y.ln() }
}

fn check(p: &Array2<f32>, q: &Array2<f32>, base: Option<f64>, tag: &str) -> usize {
    let ln_b = base.map_or(1.0, f64::ln);
    let eo = EntropyOptions { base, axis: 1 };
    let jo = JensenShannonOptions { base: base.or(Some(std::f64::consts::E)), axis: 1, keepdims: false };
    let both = |f: &dyn Fn() -> ArrayD<f32>| (flat(&with_fast_path(f)), flat(&with_reference_path(f)));
    let bound = |mass: Vec<f64>, r: Vec<f32>| {
        move |i: usize| ATOL + RTOL * (r[i] as f64).abs() + 8.0 * EPS32 * mass[i] / ln_b
    };
    let mut bad = 0;

    let (f, r) = both(&|| entropy(p.view(), None, &eo).unwrap());
    let m = term_mass(p, p, |a, _| xlogy(a, a));
    bad += compare_bounded(&f, &r, bound(m, r.clone()), &format!("{tag} entropy"));

    let (f, r) = both(&|| entropy(p.view(), Some(q.view()), &eo).unwrap());
    let m = term_mass(p, q, |a, b| xlogy(a, a) - xlogy(a, b));
    bad += compare_bounded(&f, &r, bound(m, r.clone()), &format!("{tag} relative entropy"));

    let (f, r) = both(&|| shannon_cross_entropy(p.view(), q.view(), &eo).unwrap());
    let m = term_mass(p, q, xlogy);
    bad += compare_bounded(&f, &r, bound(m, r.clone()), &format!("{tag} cross-entropy"));

    // JS = sqrt((L + R)/(2 ln b)): compare the squares, whose error is that of the sums
    let (f, r) = both(&|| jensenshannon(p.view(), q.view(), &jo).unwrap());
    let sq = |v: &[f32]| v.iter().map(|x| x * x).collect::<Vec<f32>>();
    let m = term_mass(p, q, |a, b| {
        let mm = (a + b) / 2.0;
        (xlogy(a, a) - xlogy(a, mm)).abs() + (xlogy(b, b) - xlogy(b, mm)).abs()
    });
    let ln_j = jo.base.map_or(1.0, f64::ln);
    let rs = sq(&r);
    let js_bound =
        move |i: usize| ATOL + 4.0 * RTOL * (rs[i] as f64).abs() + 8.0 * EPS32 * m[i] / (2.0 * ln_j);
    bad += compare_bounded(&sq(&f), &sq(&r), js_bound, &format!("{tag} jensenshannon²"));
    bad
}

#[test]
fn fast_path_matches_reference() {
    let mut bad = 0;
    let mut seed = 10;
    for &c in LENGTHS {
        for &scale in SCALES {
            for special in [false, true] {
                seed += 2;
                let rows = if c >= 1024 { 4 } else { 6 };
                let p = dist(rows, c, scale, special, seed);
                let q = dist(rows, c, scale, false, seed + 1);
                for base in [None, Some(2.0)] {
                    bad += check(
                        &p,
                        &q,
                        base,
                        &format!("c={c} scale={scale:e} special={special} base={base:?}"),
                    );
                }
            }
        }
    }
    assert_eq!(bad, 0, "{bad} mismatches (listed above)");
}

#[test]
fn specials_follow_scipy() {
    // scipy.stats.entropy / jensenshannon along axis 1, float32 rows
    let p = Array2::from_shape_vec((5, 2), vec![1.0f32, 3.0, 0.0, 0.0, f32::NAN, 1.0, 2.0, -1.0, 1.0, 0.0])
        .unwrap();
    let o = EntropyOptions { base: None, axis: 1 };
    let h = entropy(p.view(), None, &o).unwrap();
    assert!((h[0] - 0.562_335_14).abs() < 1e-6);
    assert!(h[1].is_nan()); // a row summing to 0
    assert!(h[2].is_nan());
    assert_eq!(h[3], f32::NEG_INFINITY); // a negative entry
    assert_eq!(h[4], 0.0);
    let q =
        Array2::from_shape_vec((5, 2), vec![1.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]).unwrap();
    let d = entropy(p.view(), Some(q.view()), &o).unwrap();
    assert_eq!(d[4], f32::INFINITY); // q̂ = 0 < p̂
    let jo = JensenShannonOptions { base: Some(2.0), axis: 1, keepdims: true };
    let js = jensenshannon(p.view(), q.view(), &jo).unwrap();
    assert_eq!(js.shape(), &[5, 1]);
    assert_eq!(js[[4, 0]], 1.0); // disjoint supports, in bits
    // errors are the reference's (same validation)
    let e = entropy(p.view(), None, &EntropyOptions { base: None, axis: 2 }).unwrap_err().to_string();
    let r = with_reference_path(|| entropy(p.view(), None, &EntropyOptions { base: None, axis: 2 }))
        .unwrap_err()
        .to_string();
    assert_eq!(e, r);
}

#[test]
fn axes_and_layouts_give_the_same_bits() {
    // axis 0 of (c, rows) and axis 1 of its transpose are the same rows; and a 3-D middle axis
    let p = dist(7, 129, 3.0, true, 77);
    let q = dist(7, 129, 3.0, false, 78);
    let o1 = EntropyOptions { base: None, axis: 1 };
    let o0 = EntropyOptions { base: None, axis: 0 };
    let want = flat(&entropy(p.view(), Some(q.view()), &o1).unwrap());
    let pt = p.t().as_standard_layout().into_owned();
    let qt = q.t().as_standard_layout().into_owned();
    assert_eq!(bits(&flat(&entropy(pt.view(), Some(qt.view()), &o0).unwrap())), bits(&want));
    assert_eq!(bits(&flat(&entropy(p.t(), Some(q.t()), &o0).unwrap())), bits(&want));
    let p3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| p[[a * 3 + c, b]]);
    let q3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| q[[a * 3 + c, b]]);
    let js3 =
        jensenshannon(p3.view(), q3.view(), &JensenShannonOptions { base: None, axis: 1, keepdims: false })
            .unwrap();
    let js2 =
        jensenshannon(p.view(), q.view(), &JensenShannonOptions { base: None, axis: 1, keepdims: false })
            .unwrap();
    for a in 0..2 {
        for c in 0..3 {
            assert_eq!(js3[[a, c]].to_bits(), js2[a * 3 + c].to_bits());
        }
    }
}

#[test]
fn bit_identical_for_any_thread_count() {
    for &(rows, c) in &[(41usize, 1025usize), (3, 32000), (500, 9)] {
        let p = dist(rows, c, 1.0, rows >= 4, 5 + c as u64);
        let q = dist(rows, c, 1.0, false, 6 + c as u64);
        let run = || {
            let o = EntropyOptions { base: Some(2.0), axis: 1 };
            let mut all = flat(&entropy(p.view(), None, &o).unwrap());
            all.extend(flat(&entropy(p.view(), Some(q.view()), &o).unwrap()));
            all.extend(flat(
                &jensenshannon(
                    p.view(),
                    q.view(),
                    &JensenShannonOptions { base: None, axis: 1, keepdims: false },
                )
                .unwrap(),
            ));
            bits(&all)
        };
        let one = on_threads(1, run);
        assert_eq!(one, on_threads(2, run), "{rows}x{c}: 2 threads");
        assert_eq!(one, on_threads(3, run), "{rows}x{c}: 3 threads");
    }
}

#[test]
fn half_types_are_the_rounded_f32_results_and_the_fast_path_is_taken() {
    use infoloss::half::{bf16, f16};
    let p = dist(5, 1000, 1.0, false, 9);
    let q = dist(5, 1000, 1.0, false, 10);
    let o = EntropyOptions { base: None, axis: 1 };
    let ph = p.mapv(bf16::from_f32);
    let qh = q.mapv(bf16::from_f32);
    let want: Vec<bf16> = entropy(ph.mapv(f32::from).view(), Some(qh.mapv(f32::from).view()), &o)
        .unwrap()
        .iter()
        .map(|v| bf16::from_f32(*v))
        .collect();
    let got: Vec<bf16> = entropy(ph.view(), Some(qh.view()), &o).unwrap().iter().copied().collect();
    assert_eq!(got, want);
    let pf = p.mapv(f16::from_f32);
    let want: Vec<f16> =
        entropy(pf.mapv(f32::from).view(), None, &o).unwrap().iter().map(|v| f16::from_f32(*v)).collect();
    let got: Vec<f16> = entropy(pf.view(), None, &o).unwrap().iter().copied().collect();
    assert_eq!(got, want);
    // The fast sums run in a different order than the reference's (and its ln is not libm's), so
    // over 2,000 rows the two paths cannot agree bit for bit unless both are the same code.
    let p = dist(2000, 999, 1.0, false, 11);
    let q = dist(2000, 999, 1.0, false, 12).mapv(|v| v + 0.5);
    let f = || flat(&entropy(p.view(), Some(q.view()), &o).unwrap());
    assert!(f().iter().all(|v| v.is_finite()));
    assert_ne!(bits(&with_fast_path(f)), bits(&with_reference_path(f)));
}
