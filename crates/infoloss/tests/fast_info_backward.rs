//! The SIMD fast path of the backwards of `entropy` (with and without `qk`), `shannon_cross_entropy` and
//! `jensenshannon` against the reference implementation (`infoloss::with_reference_path`): row lengths
//! crossing lane and chunk boundaries, magnitudes from 1e-30 to 1e30, zeros, negative, infinite and NaN
//! entries, per-row upstream gradients (including 0 and negative), both axes and a middle axis, half types,
//! and bit-identical results for 1, 2 and 3 threads.
//!
//! Tolerance. A gradient element is `c·(d_j − Σ_i x̂_i·d_i)/s` (the raw partial `d_j` wrt the normalized
//! row, the normalization's dot, the row sum `s`, the upstream coefficient `c`). The fast path's `ln` is
//! within 0.885 ulp (the reference's libm within 0.5) and its dot is summed in another order, so the two
//! agree to a few roundings of the *terms*, `(|d_j| + Σ_i |x̂_i·d_i|)·|c|/s`, not of the result (which
//! cancels where `d_j` is close to the dot): the bound is `ATOL + RTOL·|ref| + 16·ε₃₂·terms`.

use crate::support;

use infoloss::ndarray::{Array1, Array2, Array3, ArrayD, Axis};
use infoloss::{
    EntropyOptions, JensenShannonOptions, entropy_backward, info::shannon_cross_entropy_backward,
    jensenshannon_backward,
};
use infoloss::{with_fast_path, with_reference_path};
use support::{EPS32, LENGTHS, Rng, SCALES, bits, compare_bounded, on_threads};

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-7;

fn dist(rows: usize, c: usize, scale: f64, special: bool, seed: u64) -> Array2<f32> {
    support::info_dist(rows, c, scale, special, seed)
}

/// Per-row upstream gradients: mostly O(1) of both signs, one exact zero.
fn upstream(rows: usize, seed: u64) -> Array1<f32> {
    let mut rng = Rng(seed);
    Array1::from_shape_fn(rows, |i| if i == 1 { 0.0 } else { (2.0 * rng.sym()) as f32 })
}

fn flat(a: &ArrayD<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Entropy,
    Relative,
    Cross,
    Js,
}

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
                    x.iter()
                        .zip(&ph)
                        .zip(&qh)
                        .map(|((&v, &a), &b)| if v > 0.0 { v * (v / ((a + b) / 2.0)).ln() } else { 0.0 })
                        .sum()
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
    let jo = JensenShannonOptions { base: base.or(Some(std::f64::consts::E)), axis: 1, keepdims: false };
    match w {
        Which::Entropy => {
            let (dp, dq) = entropy_backward(p.view(), None, &eo, g.view()).unwrap();
            assert!(dq.is_none());
            (flat(&dp), Vec::new())
        }
        Which::Relative => {
            let (dp, dq) = entropy_backward(p.view(), Some(q.view()), &eo, g.view()).unwrap();
            (flat(&dp), flat(&dq.unwrap()))
        }
        Which::Cross => {
            let (dp, dq) = shannon_cross_entropy_backward(p.view(), q.view(), &eo, g.view()).unwrap();
            (flat(&dp), flat(&dq))
        }
        Which::Js => {
            let (dp, dq) = jensenshannon_backward(p.view(), q.view(), &jo, g.view()).unwrap();
            (flat(&dp), flat(&dq))
        }
    }
}

const ALL: [Which; 4] = [Which::Entropy, Which::Relative, Which::Cross, Which::Js];

fn name(w: Which) -> &'static str {
    match w {
        Which::Entropy => "entropy",
        Which::Relative => "relative entropy",
        Which::Cross => "cross-entropy",
        Which::Js => "jensenshannon",
    }
}

fn check(p: &Array2<f32>, q: &Array2<f32>, g: &Array1<f32>, base: Option<f64>, tag: &str) -> usize {
    let mut bad = 0;
    for w in ALL {
        // `base.unwrap_or(1.0)` first: LLVM may call `ln` speculatively on the payload of `None`
        // before selecting 1.0 (harmless, but valgrind reports the uninitialised argument)
        let ln_b = if base.is_some() { base.unwrap_or(1.0).ln() } else { 1.0 };
        let (fp, fq) = with_fast_path(|| grads(w, p, q, g, base));
        let (rp, rq) = with_reference_path(|| grads(w, p, q, g, base));
        let (tp, tq) = term_sizes(w, p, q, g, ln_b);
        let bound = |t: Vec<f64>, r: Vec<f32>| {
            move |i: usize| ATOL + RTOL * (r[i] as f64).abs() + 16.0 * EPS32 * t[i]
        };
        bad += compare_bounded(&fp, &rp, bound(tp, rp.clone()), &format!("{tag} {} dp", name(w)));
        if w != Which::Entropy {
            bad += compare_bounded(&fq, &rq, bound(tq, rq.clone()), &format!("{tag} {} dq", name(w)));
        }
    }
    bad
}

#[test]
fn fast_backward_matches_reference() {
    let mut bad = 0;
    let mut seed = 1000;
    for &c in LENGTHS {
        for &scale in SCALES {
            for special in [false, true] {
                seed += 3;
                let rows = if c >= 1024 { 4 } else { 6 };
                let p = dist(rows, c, scale, special, seed);
                let q = dist(rows, c, scale, false, seed + 1);
                let g = upstream(rows, seed + 2);
                for base in [None, Some(2.0)] {
                    bad += check(
                        &p,
                        &q,
                        &g,
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
fn special_rows_follow_the_reference_exactly() {
    // p̂ = [0.25, 0.75, 0] (a zero: +inf in entropy's gradient), a NaN row, a negative entry, an all-zero row,
    // equal rows (JS = 0: gradient 0), disjoint rows (JS = ln 2: −inf where p̂ = 0 < q̂)
    let p = Array2::from_shape_vec(
        (6, 3),
        vec![
            1.0f32,
            3.0,
            0.0,
            f32::NAN,
            1.0,
            1.0,
            2.0,
            -1.0,
            1.0,
            0.0,
            0.0,
            0.0,
            1.0,
            2.0,
            3.0,
            1.0,
            0.0,
            0.0,
        ],
    )
    .unwrap();
    let q = Array2::from_shape_vec(
        (6, 3),
        vec![1.0f32, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 6.0, 0.0, 1.0, 0.0],
    )
    .unwrap();
    let g = Array1::from_vec(vec![1.0f32, 1.0, 1.0, 1.0, -0.5, 2.0]);
    for w in ALL {
        let (fp, fq) = with_fast_path(|| grads(w, &p, &q, &g, None));
        let (rp, rq) = with_reference_path(|| grads(w, &p, &q, &g, None));
        for (f, r) in fp.iter().chain(&fq).zip(rp.iter().chain(&rq)) {
            let same = if r.is_finite() {
                (f - r).abs() <= 1e-6 * r.abs() + 1e-7
            } else {
                f.to_bits() == r.to_bits() || (f.is_nan() && r.is_nan())
            };
            assert!(same, "{}: fast {fp:?} {fq:?}\nreference {rp:?} {rq:?}", name(w));
        }
    }
    // the named cases
    let (dp, _) = grads(Which::Entropy, &p, &q, &g, None);
    assert_eq!(dp[2], f32::INFINITY);
    assert!(dp[3..6].iter().all(|v| v.is_nan()) && dp[9..12].iter().all(|v| v.is_nan()));
    let (dp, dq) = grads(Which::Js, &p, &q, &g, None);
    assert!(dp[12..15].iter().chain(&dq[12..15]).all(|&v| v == 0.0));
    assert_eq!((dp[16], dq[15]), (f32::NEG_INFINITY, f32::NEG_INFINITY));
}

#[test]
fn axes_and_layouts_agree() {
    // axis 0 of the transpose and a middle axis of a 3-D array are the same rows as axis 1 of (rows, c)
    let p = dist(7, 129, 3.0, true, 77);
    let q = dist(7, 129, 3.0, false, 78);
    let g = upstream(7, 79);
    for w in ALL {
        let (want_p, want_q) = grads(w, &p, &q, &g, Some(2.0));
        let eo = EntropyOptions { base: Some(2.0), axis: 0 };
        let jo = JensenShannonOptions { base: Some(2.0), axis: 0, keepdims: false };
        let (pt, qt) = (p.t(), q.t());
        let (dp, dq) = match w {
            Which::Entropy => (entropy_backward(pt, None, &eo, g.view()).unwrap().0, None),
            Which::Relative => {
                let (a, b) = entropy_backward(pt, Some(qt), &eo, g.view()).unwrap();
                (a, b)
            }
            Which::Cross => {
                let (a, b) = shannon_cross_entropy_backward(pt, qt, &eo, g.view()).unwrap();
                (a, Some(b))
            }
            Which::Js => {
                let (a, b) = jensenshannon_backward(pt, qt, &jo, g.view()).unwrap();
                (a, Some(b))
            }
        };
        let back = |a: &ArrayD<f32>| -> Vec<f32> { a.t().iter().copied().collect() };
        assert_eq!(bits(&back(&dp)), bits(&want_p), "{} dp, axis 0", name(w));
        if let Some(dq) = dq {
            assert_eq!(bits(&back(&dq)), bits(&want_q), "{} dq, axis 0", name(w));
        }
    }
    // (2, 129, 3) along axis 1: row (a, c) is row a·3 + c of the 2-D array
    let p3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| p[[a * 3 + c, b]]);
    let q3 = Array3::from_shape_fn((2, 129, 3), |(a, b, c)| q[[a * 3 + c, b]]);
    let p6 = p.slice(infoloss::ndarray::s![0..6, ..]).to_owned();
    let q6 = q.slice(infoloss::ndarray::s![0..6, ..]).to_owned();
    let g6 = g.slice(infoloss::ndarray::s![0..6]).to_owned();
    let g3 = g6.clone().into_shape_with_order((2, 3)).unwrap();
    let jo = JensenShannonOptions { base: None, axis: 1, keepdims: false };
    let (dp3, dq3) = jensenshannon_backward(p3.view(), q3.view(), &jo, g3.view()).unwrap();
    let (dp2, dq2) = grads(Which::Js, &p6, &q6, &g6, None);
    for a in 0..2 {
        for c in 0..3 {
            for b in 0..129 {
                assert_eq!(dp3[[a, b, c]].to_bits(), dp2[(a * 3 + c) * 129 + b].to_bits());
                assert_eq!(dq3[[a, b, c]].to_bits(), dq2[(a * 3 + c) * 129 + b].to_bits());
            }
        }
    }
    let _ = Axis(0);
}

#[test]
fn bit_identical_for_any_thread_count() {
    for &(rows, c) in &[(41usize, 1025usize), (3, 32000), (500, 9)] {
        let p = dist(rows, c, 1.0, rows >= 4, 5 + c as u64);
        let q = dist(rows, c, 1.0, false, 6 + c as u64);
        let g = upstream(rows, 7 + c as u64);
        let run = || {
            let mut all = Vec::new();
            for w in ALL {
                let (a, b) = grads(w, &p, &q, &g, Some(2.0));
                all.extend(a);
                all.extend(b);
            }
            bits(&all)
        };
        let one = on_threads(1, run);
        assert_eq!(one, on_threads(2, run), "{rows}x{c}: 2 threads");
        assert_eq!(one, on_threads(3, run), "{rows}x{c}: 3 threads");
    }
}

#[test]
fn half_types_are_the_rounded_f32_results() {
    use infoloss::half::bf16;
    let p = dist(5, 1000, 1.0, false, 9);
    let q = dist(5, 1000, 1.0, false, 10);
    let g = upstream(5, 11);
    let (ph, qh, gh) = (p.mapv(bf16::from_f32), q.mapv(bf16::from_f32), g.mapv(bf16::from_f32));
    let (pf, qf, gf) = (ph.mapv(f32::from), qh.mapv(f32::from), gh.mapv(f32::from));
    let o = JensenShannonOptions::default();
    let o = JensenShannonOptions { axis: 1, ..o };
    let (want_p, want_q) = jensenshannon_backward(pf.view(), qf.view(), &o, gf.view()).unwrap();
    let (got_p, got_q) = jensenshannon_backward(ph.view(), qh.view(), &o, gh.view()).unwrap();
    let round = |a: &ArrayD<f32>| a.iter().map(|v| bf16::from_f32(*v)).collect::<Vec<_>>();
    // bit patterns (NaN ≠ NaN): rows with a zero upstream gradient have 0·(−inf) = NaN entries
    let b16 = |v: Vec<bf16>| v.iter().map(|x| x.to_bits()).collect::<Vec<u16>>();
    assert_eq!(b16(got_p.iter().copied().collect()), b16(round(&want_p)), "dp");
    assert_eq!(b16(got_q.iter().copied().collect()), b16(round(&want_q)), "dq");
    // and the fast path is the one taken: over many rows the two paths cannot agree bit for bit
    let p = dist(500, 999, 1.0, false, 12);
    let g = upstream(500, 13);
    let eo = EntropyOptions { base: None, axis: 1 };
    let f = || flat(&entropy_backward(p.view(), None, &eo, g.view()).unwrap().0);
    assert_ne!(bits(&with_fast_path(f)), bits(&with_reference_path(f)));
}

/// Timing, not a test of speed (never asserted): `cargo test --release -p infoloss --test integration --
/// --ignored --nocapture fast_info_backward::timing` prints the fast and reference backwards at 1024 × 32000 f32.
#[test]
#[ignore]
fn timing() {
    let (rows, c) = (1024, 32000);
    let p = dist(rows, c, 1.0, false, 1);
    let q = dist(rows, c, 1.0, false, 2);
    let g = Array1::<f32>::ones(rows);
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
        let fast = time(&|| with_fast_path(|| grads(w, &p, &q, &g, None)));
        let slow = time(&|| with_reference_path(|| grads(w, &p, &q, &g, None)));
        println!("{} backward {rows}x{c} f32: fast {fast:.1} ms, reference {slow:.1} ms", name(w));
    }
}
