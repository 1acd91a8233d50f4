//! The information measures — `entropy` (with and without `qk`), `shannon_cross_entropy`,
//! `jensenshannon` — and their backwards: the fast rows against the reference, over zeros, negative,
//! infinite and NaN entries, both axes, a middle axis and half types.
//!
//! Tolerance of the values: `1e-7 + 1e-6·|reference| + 8·ε₃₂·Σ_j |f(p̂_j, q̂_j)| / ln b`, the terms'
//! size (the fast `ln` is within 0.885 ulp, libm's within 0.5, and the sums run in another order).
//! Jensen–Shannon compares the squares, `(L + R)/(2 ln b)`, whose error is that of the sums.
//!
//! Tolerance of the gradients. An element is `c·(d_j − Σ_i x̂_i·d_i)/s` (the raw partial `d_j` wrt the
//! normalized row, the normalization's dot, the row sum `s`, the upstream coefficient `c`): the two paths
//! agree to a few roundings of the *terms*, `(|d_j| + Σ_i |x̂_i·d_i|)·|c|/s`, not of the result (which
//! cancels where `d_j` is close to the dot): `1e-7 + 1e-6·|reference| + 16·ε₃₂·terms`.

use super::{EPS32, LENGTHS, Oracle, Rng, SCALES, Tol, bits, both, vals};
use infoloss::ndarray::{Array1, Array2, Array3, ArrayD, s};
use infoloss::{EntropyOptions, JensenShannonOptions, entropy, jensenshannon, shannon_cross_entropy};
use infoloss::{entropy_backward, info::shannon_cross_entropy_backward, jensenshannon_backward};

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-7;

fn dist(rows: usize, c: usize, scale: f64, special: bool, seed: u64) -> Array2<f32> {
    crate::support::info_dist(rows, c, scale, special, seed)
}

/// Per-row upstream gradients: mostly O(1) of both signs, one exact zero.
fn upstream(rows: usize, seed: u64) -> Array1<f32> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(rows, |i| if i == 1 { 0.0 } else { (2.0 * rng.sym()) as f32 })
}

fn rows(c: usize) -> usize {
    if c >= 1024 { 4 } else { 6 }
}

fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * y.ln() }
}

/// `Σ_j |f(p̂_j, q̂_j)|` per row in f64 (rows along axis 1): the size of the terms.
fn term_mass(p: &Array2<f32>, q: &Array2<f32>, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let sum = |r: infoloss::ndarray::ArrayView1<'_, f32>| r.iter().map(|v| *v as f64).sum::<f64>();
    let rows = p.rows().into_iter().zip(q.rows());
    rows.map(|(pr, qr)| {
        let (sp, sq) = (sum(pr), sum(qr));
        let t = pr.iter().zip(qr.iter()).map(|(a, b)| f(*a as f64 / sp, *b as f64 / sq).abs());
        t.filter(|v| v.is_finite()).sum()
    })
    .collect()
}

fn js_opts(base: Option<f64>, axis: isize) -> JensenShannonOptions {
    JensenShannonOptions { base: base.or(Some(std::f64::consts::E)), axis, keepdims: false }
}

#[test]
fn fast_path_matches_reference() {
    Oracle::new("information measures").sizes(LENGTHS, rows).magnitudes(SCALES).check(|run| {
        for special in [false, true] {
            let seed = 12 + 4 * run.index + 2 * special as u64;
            let p = dist(run.rows, run.size, run.magnitude, special, seed);
            let q = dist(run.rows, run.size, run.magnitude, false, seed + 1);
            for base in [None, Some(2.0)] {
                let ln_b = base.map_or(1.0, f64::ln);
                let (eo, jo) = (EntropyOptions { base, axis: 1 }, js_opts(base, 1));
                let name = |f: &str| format!("{f} special={special} base={base:?}");
                let tol = |mass| Tol::terms(ATOL, RTOL, 8.0 * EPS32 / ln_b, mass);
                let m = term_mass(&p, &p, |a, _| xlogy(a, a));
                run.compare(&name("entropy"), || entropy(p.view(), None, &eo).unwrap(), [tol(m)]);
                let m = term_mass(&p, &q, |a, b| xlogy(a, a) - xlogy(a, b));
                let f = || entropy(p.view(), Some(q.view()), &eo).unwrap();
                run.compare(&name("relative entropy"), f, [tol(m)]);
                let m = term_mass(&p, &q, xlogy);
                let f = || shannon_cross_entropy(p.view(), q.view(), &eo).unwrap();
                run.compare(&name("cross-entropy"), f, [tol(m)]);
                let m = term_mass(&p, &q, |a, b| {
                    let mm = (a + b) / 2.0;
                    (xlogy(a, a) - xlogy(a, mm)).abs() + (xlogy(b, b) - xlogy(b, mm)).abs()
                });
                let ln_j = jo.base.map_or(1.0, f64::ln);
                let js_tol =
                    Tol::by(move |i, _, r| ATOL + 4.0 * RTOL * r.abs() + 8.0 * EPS32 * m[i] / (2.0 * ln_j));
                let f = || {
                    jensenshannon(p.view(), q.view(), &jo)
                        .unwrap()
                        .iter()
                        .map(|x| x * x)
                        .collect::<Vec<f32>>()
                };
                run.compare(&name("jensenshannon²"), f, [js_tol]);
            }
        }
    });
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
    let (e, r) =
        both(|| entropy(p.view(), None, &EntropyOptions { base: None, axis: 2 }).unwrap_err().to_string());
    assert_eq!(e, r);
}

#[test]
fn axes_and_layouts_give_the_same_bits() {
    // axis 0 of (c, rows) and axis 1 of its transpose are the same rows; and a 3-D middle axis
    let p = dist(7, 129, 3.0, true, 77);
    let q = dist(7, 129, 3.0, false, 78);
    let o1 = EntropyOptions { base: None, axis: 1 };
    let o0 = EntropyOptions { base: None, axis: 0 };
    let want = bits(&entropy(p.view(), Some(q.view()), &o1).unwrap());
    let pt = p.t().as_standard_layout().into_owned();
    let qt = q.t().as_standard_layout().into_owned();
    assert_eq!(bits(&entropy(pt.view(), Some(qt.view()), &o0).unwrap()), want);
    assert_eq!(bits(&entropy(p.t(), Some(q.t()), &o0).unwrap()), want);
    let p3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| p[[a * 3 + c, b]]);
    let q3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| q[[a * 3 + c, b]]);
    let js3 = jensenshannon(p3.view(), q3.view(), &js_opts(None, 1)).unwrap();
    let js2 = jensenshannon(p.view(), q.view(), &js_opts(None, 1)).unwrap();
    // (2, 3) in standard order is row a·3 + c
    assert_eq!(bits(&js3), bits(&js2.slice(s![0..6]).to_owned()));
}

#[test]
fn bit_identical_for_any_thread_count() {
    let shapes = [(41, 1025), (3, 32000), (500, 9)];
    Oracle::new("information measures").shapes(&shapes).threads(&[1, 2, 3]).check(|run| {
        let (rows, c) = (run.rows, run.size);
        let p = dist(rows, c, 1.0, rows >= 4, 5 + c as u64);
        let q = dist(rows, c, 1.0, false, 6 + c as u64);
        let g = upstream(rows, 7 + c as u64);
        let o = EntropyOptions { base: Some(2.0), axis: 1 };
        run.identical("values", || {
            let mut all = vals(&entropy(p.view(), None, &o).unwrap());
            all.extend(vals(&entropy(p.view(), Some(q.view()), &o).unwrap()));
            all.extend(vals(&jensenshannon(p.view(), q.view(), &js_opts(None, 1)).unwrap()));
            all
        });
        run.identical("gradients", || {
            let all = ALL.iter().map(|&w| grads(w, &p, &q, &g, Some(2.0)));
            all.flat_map(|(a, b)| a.into_iter().chain(b)).collect::<Vec<f32>>()
        });
    });
}

#[test]
fn half_types_are_the_rounded_f32_results_and_the_fast_path_is_taken() {
    use infoloss::half::{bf16, f16};
    let p = dist(5, 1000, 1.0, false, 9);
    let q = dist(5, 1000, 1.0, false, 10);
    let o = EntropyOptions { base: None, axis: 1 };
    let (ph, qh) = (p.mapv(bf16::from_f32), q.mapv(bf16::from_f32));
    let want = entropy(ph.mapv(f32::from).view(), Some(qh.mapv(f32::from).view()), &o).unwrap();
    assert_eq!(bits(&entropy(ph.view(), Some(qh.view()), &o).unwrap()), bits(&want.mapv(bf16::from_f32)));
    let pf = p.mapv(f16::from_f32);
    let want = entropy(pf.mapv(f32::from).view(), None, &o).unwrap();
    assert_eq!(bits(&entropy(pf.view(), None, &o).unwrap()), bits(&want.mapv(f16::from_f32)));
    // The fast sums run in a different order than the reference's (and its ln is not libm's), so
    // over 2,000 rows the two paths cannot agree bit for bit unless both are the same code.
    let p = dist(2000, 999, 1.0, false, 11);
    let q = dist(2000, 999, 1.0, false, 12).mapv(|v| v + 0.5);
    let (f, r) = both(|| vals(&entropy(p.view(), Some(q.view()), &o).unwrap()));
    assert!(f.iter().all(|v| v.is_finite()));
    assert_ne!(bits(&f), bits(&r));
}

// ---------------------------------------------------------------------------------------------
// Backwards

#[derive(Clone, Copy, PartialEq, Debug)]
enum Which {
    Entropy,
    Relative,
    Cross,
    Js,
}
const ALL: [Which; 4] = [Which::Entropy, Which::Relative, Which::Cross, Which::Js];

/// The f64 size of the terms of each gradient element (see the module docs), for `p` and `q` (rows along
/// axis 1); `g` the upstream gradient, `ln_b` the log of the base.
fn term_sizes(
    w: Which,
    p: &Array2<f32>,
    q: &Array2<f32>,
    g: &Array1<f32>,
    ln_b: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut sp_all, mut sq_all) = (Vec::new(), Vec::new());
    for ((pr, qr), &gr) in p.rows().into_iter().zip(q.rows()).zip(g) {
        let sp: f64 = pr.iter().map(|v| *v as f64).sum();
        let sq: f64 = qr.iter().map(|v| *v as f64).sum();
        let ph: Vec<f64> = pr.iter().map(|v| *v as f64 / sp).collect();
        let qh: Vec<f64> = qr.iter().map(|v| *v as f64 / sq).collect();
        let ln = |x: f64| if x > 0.0 { x.ln() } else { 0.0 };
        let (dp, dq): (Vec<f64>, Vec<f64>) = ph
            .iter()
            .zip(&qh)
            .map(|(&a, &b)| {
                let m = (a + b) / 2.0;
                match w {
                    Which::Entropy => (1.0 + ln(a).abs(), 0.0),
                    Which::Relative => (ln(a).abs() + ln(b).abs() + 1.0, if b > 0.0 { a / b } else { 0.0 }),
                    Which::Cross => (ln(b).abs(), if b > 0.0 { a / b } else { 0.0 }),
                    Which::Js => (ln(a).abs() + ln(m).abs(), ln(b).abs() + ln(m).abs()),
                }
            })
            .unzip();
        let c = match w {
            Which::Js => {
                let kl = |x: &[f64]| -> f64 {
                    let t = x.iter().zip(&ph).zip(&qh);
                    t.map(|((&v, &a), &b)| if v > 0.0 { v * (v / ((a + b) / 2.0)).ln() } else { 0.0 }).sum()
                };
                let js = ((kl(&ph) + kl(&qh)) / ln_b / 2.0).sqrt();
                gr as f64 / (4.0 * js * ln_b)
            }
            _ => gr as f64 / ln_b,
        }
        .abs();
        let dot = |x: &[f64], d: &[f64]| -> f64 {
            x.iter().zip(d).map(|(a, b)| (a * b).abs()).filter(|v| v.is_finite()).sum()
        };
        let (dotp, dotq) = (dot(&ph, &dp), dot(&qh, &dq));
        sp_all.extend(dp.iter().map(|d| (d + dotp) * c / sp.abs()));
        sq_all.extend(dq.iter().map(|d| (d + dotq) * c / sq.abs()));
    }
    (sp_all, sq_all)
}

/// The gradients of `w` wrt `p` and `q` (`q`'s empty for entropy), along axis 1, base `base`.
fn grads(
    w: Which,
    p: &Array2<f32>,
    q: &Array2<f32>,
    g: &Array1<f32>,
    base: Option<f64>,
) -> (Vec<f32>, Vec<f32>) {
    let eo = EntropyOptions { base, axis: 1 };
    let flat = |a: ArrayD<f32>| a.iter().copied().collect::<Vec<f32>>();
    let (dp, dq) = match w {
        Which::Entropy => {
            let (dp, dq) = entropy_backward(p.view(), None, &eo, g.view()).unwrap();
            assert!(dq.is_none());
            (dp, None)
        }
        Which::Relative => entropy_backward(p.view(), Some(q.view()), &eo, g.view()).unwrap(),
        Which::Cross => {
            let (dp, dq) = shannon_cross_entropy_backward(p.view(), q.view(), &eo, g.view()).unwrap();
            (dp, Some(dq))
        }
        Which::Js => {
            let (dp, dq) = jensenshannon_backward(p.view(), q.view(), &js_opts(base, 1), g.view()).unwrap();
            (dp, Some(dq))
        }
    };
    (flat(dp), dq.map_or(Vec::new(), flat))
}

#[test]
fn fast_backward_matches_reference() {
    Oracle::new("information backwards").sizes(LENGTHS, rows).magnitudes(SCALES).check(|run| {
        for special in [false, true] {
            let seed = 1003 + 3 * (2 * run.index + special as u64);
            let p = dist(run.rows, run.size, run.magnitude, special, seed);
            let q = dist(run.rows, run.size, run.magnitude, false, seed + 1);
            let g = upstream(run.rows, seed + 2);
            for base in [None, Some(2.0f64)] {
                for w in ALL {
                    // `base.unwrap_or(1.0)` first: LLVM may call `ln` speculatively on the payload of `None`
                    // before selecting 1.0 (harmless, but valgrind reports the uninitialised argument)
                    let ln_b = if base.is_some() { base.unwrap_or(1.0).ln() } else { 1.0 };
                    let (tp, tq) = term_sizes(w, &p, &q, &g, ln_b);
                    let tol = |t| Tol::terms(ATOL, RTOL, 16.0 * EPS32, t);
                    let name = format!("{w:?} special={special} base={base:?}");
                    run.compare(&name, || grads(w, &p, &q, &g, base), [tol(tp).on("dp"), tol(tq).on("dq")]);
                }
            }
        }
    });
}

#[test]
fn special_rows_follow_the_reference_exactly() {
    // p̂ = [0.25, 0.75, 0] (a zero: +inf in entropy's gradient), a NaN row, a negative entry, an all-zero row,
    // equal rows (JS = 0: gradient 0), disjoint rows (JS = ln 2: −inf where p̂ = 0 < q̂)
    let nan = f32::NAN;
    let p = [1.0f32, 3.0, 0.0, nan, 1.0, 1.0, 2.0, -1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 1.0, 0.0, 0.0];
    let q = [1.0f32, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 6.0, 0.0, 1.0, 0.0];
    let (p, q) = (
        Array2::from_shape_vec((6, 3), p.to_vec()).unwrap(),
        Array2::from_shape_vec((6, 3), q.to_vec()).unwrap(),
    );
    let g = Array1::from_vec(vec![1.0f32, 1.0, 1.0, 1.0, -0.5, 2.0]);
    Oracle::new("information backwards, special rows").check(|run| {
        for w in ALL {
            let tol = || Tol::close(1e-7, 1e-6);
            run.compare(&format!("{w:?}"), || grads(w, &p, &q, &g, None), [tol().on("dp"), tol().on("dq")]);
        }
    });
    // the named cases
    let (dp, _) = grads(Which::Entropy, &p, &q, &g, None);
    assert_eq!(dp[2], f32::INFINITY);
    assert!(dp[3..6].iter().all(|v| v.is_nan()) && dp[9..12].iter().all(|v| v.is_nan()));
    let (dp, dq) = grads(Which::Js, &p, &q, &g, None);
    assert!(dp[12..15].iter().chain(&dq[12..15]).all(|&v| v == 0.0));
    assert_eq!((dp[16], dq[15]), (f32::NEG_INFINITY, f32::NEG_INFINITY));
}

#[test]
fn backward_axes_and_layouts_agree() {
    // axis 0 of the transpose and a middle axis of a 3-D array are the same rows as axis 1 of (rows, c)
    let p = dist(7, 129, 3.0, true, 77);
    let q = dist(7, 129, 3.0, false, 78);
    let g = upstream(7, 79);
    let eo = EntropyOptions { base: Some(2.0), axis: 0 };
    let jo = JensenShannonOptions { base: Some(2.0), axis: 0, keepdims: false };
    let (pt, qt) = (p.t(), q.t());
    for w in ALL {
        let (dp, dq) = match w {
            Which::Entropy => entropy_backward(pt, None, &eo, g.view()).unwrap(),
            Which::Relative => entropy_backward(pt, Some(qt), &eo, g.view()).unwrap(),
            Which::Cross => {
                shannon_cross_entropy_backward(pt, qt, &eo, g.view()).map(|(a, b)| (a, Some(b))).unwrap()
            }
            Which::Js => jensenshannon_backward(pt, qt, &jo, g.view()).map(|(a, b)| (a, Some(b))).unwrap(),
        };
        let back = |a: &ArrayD<f32>| a.t().iter().copied().collect::<Vec<f32>>();
        let (want_p, want_q) = grads(w, &p, &q, &g, Some(2.0));
        assert_eq!(bits(&back(&dp)), bits(&want_p), "{w:?} dp, axis 0");
        if let Some(dq) = dq {
            assert_eq!(bits(&back(&dq)), bits(&want_q), "{w:?} dq, axis 0");
        }
    }
    // (2, 129, 3) along axis 1: row (a, c) is row a·3 + c of the 2-D array
    let p3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| p[[a * 3 + c, b]]);
    let q3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| q[[a * 3 + c, b]]);
    let (p6, q6, g6) =
        (p.slice(s![0..6, ..]).to_owned(), q.slice(s![0..6, ..]).to_owned(), g.slice(s![0..6]).to_owned());
    let g3 = g6.clone().into_shape_with_order((2, 3)).unwrap();
    let (dp3, dq3) = jensenshannon_backward(p3.view(), q3.view(), &js_opts(None, 1), g3.view()).unwrap();
    let (dp2, dq2) = grads(Which::Js, &p6, &q6, &g6, None);
    let rows_of = |a: &ArrayD<f32>| {
        a.view().permuted_axes(infoloss::ndarray::IxDyn(&[0, 2, 1])).iter().copied().collect::<Vec<f32>>()
    };
    assert_eq!(bits(&rows_of(&dp3)), bits(&dp2));
    assert_eq!(bits(&rows_of(&dq3)), bits(&dq2));
}

#[test]
fn backward_half_types_are_the_rounded_f32_results() {
    use infoloss::half::bf16;
    let p = dist(5, 1000, 1.0, false, 9);
    let q = dist(5, 1000, 1.0, false, 10);
    let g = upstream(5, 11);
    let (ph, qh, gh) = (p.mapv(bf16::from_f32), q.mapv(bf16::from_f32), g.mapv(bf16::from_f32));
    let (pf, qf, gf) = (ph.mapv(f32::from), qh.mapv(f32::from), gh.mapv(f32::from));
    let o = JensenShannonOptions { axis: 1, ..JensenShannonOptions::default() };
    let (want_p, want_q) = jensenshannon_backward(pf.view(), qf.view(), &o, gf.view()).unwrap();
    let (got_p, got_q) = jensenshannon_backward(ph.view(), qh.view(), &o, gh.view()).unwrap();
    // bit patterns (NaN ≠ NaN): rows with a zero upstream gradient have 0·(−inf) = NaN entries
    assert_eq!(bits(&got_p), bits(&want_p.mapv(bf16::from_f32)), "dp");
    assert_eq!(bits(&got_q), bits(&want_q.mapv(bf16::from_f32)), "dq");
    // and the fast path is the one taken: over many rows the two paths cannot agree bit for bit
    let p = dist(500, 999, 1.0, false, 12);
    let g = upstream(500, 13);
    let eo = EntropyOptions { base: None, axis: 1 };
    let (f, r) = both(|| bits(&entropy_backward(p.view(), None, &eo, g.view()).unwrap().0));
    assert_ne!(f, r);
}

/// Timing, not a test of speed (never asserted): `cargo test --release -p infoloss --test integration --
/// --ignored --nocapture oracle::info::timing` prints the fast and reference backwards at 1024 × 32000 f32.
#[test]
#[ignore]
fn timing() {
    let (rows, c) = (1024, 32000);
    let (p, q, g) = (dist(rows, c, 1.0, false, 1), dist(rows, c, 1.0, false, 2), Array1::<f32>::ones(rows));
    for w in [Which::Entropy, Which::Js] {
        let time = |f: &dyn Fn() -> (Vec<f32>, Vec<f32>)| {
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t = std::time::Instant::now();
                std::hint::black_box(f());
                best = best.min(t.elapsed().as_secs_f64());
            }
            best * 1e3
        };
        let fast = time(&|| infoloss::with_fast_path(|| grads(w, &p, &q, &g, None)));
        let slow = time(&|| infoloss::with_reference_path(|| grads(w, &p, &q, &g, None)));
        println!("{w:?} backward {rows}x{c} f32: fast {fast:.1} ms, reference {slow:.1} ms");
    }
}
