//! Tests of `infoloss::kernels` against straightforward `f64` computations, at every SIMD level
//! this machine offers. Heavy sweeps: `cargo test -p infoloss --test integration --release kernels::`
//! (`-- --ignored` adds the exhaustive 2^32 sweeps).
#![allow(clippy::needless_range_loop)]

use crate::support::Rng;
use infoloss::kernels::{self, Isa, Kernels};
use rayon::prelude::*;

// ---------------------------------------------------------------------------------------------
// ulp measurement

/// Spacing of `f32` numbers at the magnitude of `e` (subnormal spacing below `f32::MIN_POSITIVE`).
fn ulp_f32(e: f64) -> f64 {
    let a = e.abs();
    if a < f32::MIN_POSITIVE as f64 {
        return 2f64.powi(-149);
    }
    // exponent of a, exactly, from the f64 bits
    let ex = ((a.to_bits() >> 52) as i32) - 1023;
    2f64.powi(ex - 23)
}

/// Spacing of `f64` numbers at the magnitude of `e`.
fn ulp_f64(e: f64) -> f64 {
    let a = e.abs();
    if a < f64::MIN_POSITIVE {
        return f64::from_bits(1);
    }
    let ex = ((a.to_bits() >> 52) as i32) - 1023;
    2f64.powi(ex - 52)
}

/// Error statistics of one function over a sweep.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    /// max |computed − exact| / ulp(exact)
    max_ulp: f64,
    /// input where it occurs
    worst_x: f32,
    /// max integer distance to the correctly rounded f32 (round(exact))
    max_dist: u32,
    /// number of special-value mismatches (NaN/inf/zero classification)
    bad_specials: u64,
    count: u64,
}

impl Stats {
    fn merge(mut self, o: Stats) -> Stats {
        if o.max_ulp > self.max_ulp {
            self.max_ulp = o.max_ulp;
            self.worst_x = o.worst_x;
        }
        self.max_dist = self.max_dist.max(o.max_dist);
        self.bad_specials += o.bad_specials;
        self.count += o.count;
        self
    }
}

fn ordered(x: f32) -> i64 {
    let b = x.to_bits() as i32 as i64;
    if b < 0 { i32::MIN as i64 - b } else { b }
}

fn record(st: &mut Stats, x: f32, y: f32, exact: f64) {
    st.count += 1;
    let rounded = exact as f32;
    if exact.is_nan() || rounded.is_infinite() || rounded == 0.0 && exact == 0.0 {
        // special: must match exactly (NaN ↔ NaN)
        let ok = if exact.is_nan() { y.is_nan() } else { y == rounded };
        if !ok {
            st.bad_specials += 1;
            if st.bad_specials < 5 {
                eprintln!("special mismatch x={x:e} ({:#x}) y={y:e} exact={exact:e}", x.to_bits());
            }
        }
        return;
    }
    if !y.is_finite() {
        st.bad_specials += 1;
        if st.bad_specials < 5 {
            eprintln!("non-finite x={x:e} y={y:e} exact={exact:e}");
        }
        return;
    }
    let e = ((y as f64) - exact).abs() / ulp_f32(exact);
    if e > st.max_ulp {
        st.max_ulp = e;
        st.worst_x = x;
    }
    let d = (ordered(y) - ordered(rounded)).unsigned_abs() as u32;
    st.max_dist = st.max_dist.max(d);
}

type F32Fn = fn(Kernels, &[f32], &mut [f32]);

fn exp_k(k: Kernels, x: &[f32], y: &mut [f32]) {
    k.exp_f32(x, y).unwrap()
}
fn ln_k(k: Kernels, x: &[f32], y: &mut [f32]) {
    k.ln_f32(x, y).unwrap()
}

/// Runs `f` over the bit patterns `start, start+stride, …` below `end` in parallel blocks.
fn sweep(k: Kernels, f: F32Fn, exact: fn(f64) -> f64, start: u64, end: u64, stride: u64) -> Stats {
    const BLOCK: u64 = 1 << 16;
    let n = (end - start).div_ceil(stride);
    let blocks = n.div_ceil(BLOCK);
    (0..blocks)
        .into_par_iter()
        .map(|b| {
            let lo = b * BLOCK;
            let hi = ((b + 1) * BLOCK).min(n);
            let x: Vec<f32> = (lo..hi).map(|i| f32::from_bits((start + i * stride) as u32)).collect();
            let mut y = vec![0.0f32; x.len()];
            f(k, &x, &mut y);
            let mut st = Stats::default();
            for (&xi, &yi) in x.iter().zip(&y) {
                record(&mut st, xi, yi, exact(xi as f64));
            }
            st
        })
        .reduce(Stats::default, Stats::merge)
}

const DENSE_STRIDE: u64 = if cfg!(debug_assertions) { 40_009 } else { 97 };

fn check_sweep(name: &str, f: F32Fn, exact: fn(f64) -> f64, stride: u64, max_ulp: f64) {
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        let st = sweep(k, f, exact, 0, 1 << 32, stride);
        eprintln!("{name} {isa:?} stride {stride}: {st:?}");
        assert_eq!(st.bad_specials, 0, "{name} {isa:?}");
        assert!(st.max_ulp <= max_ulp, "{name} {isa:?}: {st:?}");
        assert!(st.max_dist <= 1, "{name} {isa:?}: {st:?}");
    }
}

#[test]
fn exp_f32_dense_sweep_ulp() {
    check_sweep("exp_f32", exp_k, f64::exp, DENSE_STRIDE, 1.0);
}

#[test]
fn ln_f32_dense_sweep_ulp() {
    check_sweep("ln_f32", ln_k, f64::ln, DENSE_STRIDE, 1.0);
}

/// All 2^32 inputs of exp and ln at every level (a few minutes in release).
#[test]
#[ignore]
fn exhaustive_f32_exp_ln() {
    check_sweep("exp_f32", exp_k, f64::exp, 1, 1.0);
    check_sweep("ln_f32", ln_k, f64::ln, 1, 1.0);
}

#[test]
fn exp_ln_same_bits_at_every_isa() {
    let x: Vec<f32> = (0..1u64 << 32).step_by(1_000_003).map(|b| f32::from_bits(b as u32)).collect();
    let reference = |f: F32Fn| {
        let mut y = vec![0.0f32; x.len()];
        f(Kernels::with_isa(Isa::Scalar).unwrap(), &x, &mut y);
        y
    };
    for f in [exp_k as F32Fn, ln_k] {
        let r = reference(f);
        for isa in Isa::available() {
            let mut y = vec![0.0f32; x.len()];
            f(Kernels::with_isa(isa).unwrap(), &x, &mut y);
            for i in 0..x.len() {
                assert!(
                    y[i].to_bits() == r[i].to_bits() || (y[i].is_nan() && r[i].is_nan()),
                    "{isa:?} x={:e}: {:e} vs scalar {:e}",
                    x[i],
                    y[i],
                    r[i]
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// deterministic data

fn lengths() -> Vec<usize> {
    let mut v = vec![1usize];
    v.extend(7..=17);
    v.extend(31..=33);
    v.extend(127..=129);
    v.extend(1023..=1025);
    v.extend([2047, 2049, 32_000]);
    if !cfg!(debug_assertions) {
        // several block sizes (block length grows beyond 64 Ki elements)
        v.push(70_001);
    }
    v
}

/// Logit magnitudes (fewer in debug builds, where the SIMD code is not inlined and slow).
const SCALES: &[f64] = if cfg!(debug_assertions) {
    &[1e-30, 1.0, 100.0, 1e30]
} else {
    &[1e-30, 1e-3, 1.0, 10.0, 100.0, 1e4, 1e30]
};

/// Element orders (all in release builds).
const ORDERS: &[Order] = if cfg!(debug_assertions) {
    &[Order::Random, Order::Increasing]
} else {
    &[Order::Random, Order::Increasing, Order::Decreasing]
};

#[derive(Debug, Clone, Copy)]
enum Order {
    Random,
    /// the maximum grows in every block: every block rescales the running sum
    Increasing,
    Decreasing,
}

fn make_row(rng: &mut Rng, n: usize, scale: f64, order: Order, neg_inf: bool) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n).map(|_| ((rng.unit() * 2.0 - 1.0) * scale) as f32).collect();
    match order {
        Order::Random => {}
        Order::Increasing => x.sort_by(|a, b| a.total_cmp(b)),
        Order::Decreasing => x.sort_by(|a, b| b.total_cmp(a)),
    }
    if neg_inf && n > 2 {
        for _ in 0..(n / 7).max(1) {
            let i = rng.below(n);
            x[i] = f32::NEG_INFINITY;
        }
    }
    x
}

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Exact (f64) softmax of a row, and a bound on the relative error of an `f32` evaluation of
/// `s = Σ exp(x − m)` (argument rounding `|x − m|·u`, two roundings per term, and the lane sums).
struct RefRow {
    m: f64,
    s: f64,
    ln_s: f64,
    p: Vec<f64>,
    eps_s: f64,
}

fn reference(x: &[f32]) -> RefRow {
    let m = x.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    let p: Vec<f64> = e.iter().map(|v| v / s).collect();
    let mut eps_s = 64.0 * U;
    for (&v, &pc) in x.iter().zip(&p) {
        if pc > 0.0 {
            eps_s += pc * ((v as f64 - m).abs() * U + 2.0 * U);
        }
    }
    RefRow { m, s, ln_s: s.ln(), p, eps_s }
}

/// `got` equals `want` within `tol`, with NaN/±inf required in exactly the same places.
fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() {
        got == want
    } else {
        (got - want).abs() <= tol
    }
}

// ---------------------------------------------------------------------------------------------
// row primitives

fn check_row_primitives(k: Kernels, x: &[f32], ctx: &str) {
    let r = reference(x);
    let n = x.len();
    // max
    assert_eq!(k.max_f32(x) as f64, r.m, "{ctx} max");
    // online max + sum
    let (m, s) = k.max_sum_exp_f32(x);
    assert_eq!(m as f64, r.m, "{ctx} max_sum_exp m");
    assert!(close(s, r.s, r.s * r.eps_s), "{ctx} max_sum_exp s {s} vs {}", r.s);
    // logsumexp
    let lse = k.logsumexp_f32(x) as f64;
    let want = r.m + r.ln_s;
    assert!(close(lse, want, r.eps_s + 2.0 * U * want.abs() + 1e-300), "{ctx} lse {lse} vs {want}");
    // exp(x − m) and its sum
    let mut e = vec![f32::NAN; n];
    let se = k.exp_sub_sum_f32(x, m, &mut e).unwrap();
    assert!(close(se, r.s, r.s * r.eps_s), "{ctx} exp_sub_sum {se} vs {}", r.s);
    for i in 0..n {
        let want = r.p[i] * r.s;
        let tol = if want > 0.0 { want * ((x[i] as f64 - r.m).abs() * U + 2.0 * U) } else { 0.0 } + 1e-44;
        assert!(close(e[i] as f64, want, tol), "{ctx} exp_sub_sum[{i}] {} vs {want}", e[i]);
    }
    // softmax
    let mut p = vec![f32::NAN; n];
    k.softmax_f32(x, &mut p).unwrap();
    for i in 0..n {
        let want = r.p[i];
        let tol =
            if want > 0.0 { want * ((x[i] as f64 - r.m).abs() * U + 4.0 * U + r.eps_s) } else { 0.0 } + 1e-44;
        assert!(close(p[i] as f64, want, tol), "{ctx} softmax[{i}] {} vs {want} (x={})", p[i], x[i]);
    }
    // log_softmax
    let mut l = vec![f32::NAN; n];
    k.log_softmax_f32(x, &mut l).unwrap();
    for i in 0..n {
        let d = x[i] as f64 - r.m;
        let want = d - r.ln_s;
        let tol =
            if d.is_finite() { d.abs() * U } else { 0.0 } + r.eps_s + 2.0 * U * (want.abs() + r.ln_s.abs());
        assert!(close(l[i] as f64, want, tol), "{ctx} log_softmax[{i}] {} vs {want}", l[i]);
    }
    // scale
    let mut y = x.to_vec();
    k.scale_f32(&mut y, -0.5);
    for i in 0..n {
        assert_eq!(y[i].to_bits(), (x[i] * -0.5).to_bits(), "{ctx} scale");
    }
}

#[test]
fn row_primitives_against_f64() {
    let mut rng = Rng(1);
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        for n in lengths() {
            for &scale in SCALES {
                for &order in ORDERS {
                    for neg_inf in [false, true] {
                        let x = make_row(&mut rng, n, scale, order, neg_inf);
                        if x.iter().all(|v| *v == f32::NEG_INFINITY) {
                            continue;
                        }
                        check_row_primitives(
                            k,
                            &x,
                            &format!("{isa:?} n={n} scale={scale:e} {order:?} -inf={neg_inf}"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn row_primitives_special_rows() {
    let inf = f32::INFINITY;
    let nan = f32::NAN;
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        for n in [1usize, 5, 17, 1025, 3000] {
            let base: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.25).collect();
            let with = |i: usize, v: f32| {
                let mut x = base.clone();
                x[i] = v;
                x
            };
            let mut out = vec![0.0f32; n];
            for pos in [0, n / 2, n - 1] {
                // NaN anywhere: everything NaN
                let x = with(pos, nan);
                assert!(k.max_f32(&x).is_nan(), "{isa:?} n={n}");
                let (m, s) = k.max_sum_exp_f32(&x);
                assert!(m.is_nan() && s.is_nan());
                assert!(k.logsumexp_f32(&x).is_nan());
                k.softmax_f32(&x, &mut out).unwrap();
                assert!(out.iter().all(|v| v.is_nan()));
                k.log_softmax_f32(&x, &mut out).unwrap();
                assert!(out.iter().all(|v| v.is_nan()));
                // +inf: lse = +inf, softmax NaN (torch)
                let x = with(pos, inf);
                assert_eq!(k.max_f32(&x), inf);
                let (m, s) = k.max_sum_exp_f32(&x);
                assert!(m == inf && s.is_nan());
                assert_eq!(k.logsumexp_f32(&x), inf);
                k.softmax_f32(&x, &mut out).unwrap();
                assert!(out.iter().all(|v| v.is_nan()));
                k.log_softmax_f32(&x, &mut out).unwrap();
                assert!(out.iter().all(|v| v.is_nan()));
            }
            // every element -inf
            let x = vec![f32::NEG_INFINITY; n];
            assert_eq!(k.max_f32(&x), f32::NEG_INFINITY);
            let (m, s) = k.max_sum_exp_f32(&x);
            assert!(m == f32::NEG_INFINITY && s.is_nan());
            assert_eq!(k.logsumexp_f32(&x), f32::NEG_INFINITY);
            k.softmax_f32(&x, &mut out).unwrap();
            assert!(out.iter().all(|v| v.is_nan()));
            // -inf except one element: probability one there
            let mut x = vec![f32::NEG_INFINITY; n];
            x[n - 1] = -3.0;
            k.softmax_f32(&x, &mut out).unwrap();
            assert_eq!(out[n - 1], 1.0, "{isa:?} n={n}");
            assert!(out[..n - 1].iter().all(|v| *v == 0.0));
            assert_eq!(k.logsumexp_f32(&x), -3.0);
            k.log_softmax_f32(&x, &mut out).unwrap();
            assert_eq!(out[n - 1], 0.0);
            assert!(out[..n - 1].iter().all(|v| *v == f32::NEG_INFINITY));
        }
        // empty row
        assert_eq!(k.max_f32(&[]), f32::NEG_INFINITY);
        assert_eq!(k.max_sum_exp_f32(&[]), (f32::NEG_INFINITY, 0.0));
        assert_eq!(k.logsumexp_f32(&[]), f32::NEG_INFINITY);
        k.softmax_f32(&[], &mut []).unwrap();
        assert_eq!(k.exp_sub_sum_f32(&[], 0.0, &mut []).unwrap(), 0.0);
    }
}

#[test]
fn length_mismatches_are_errors() {
    let mut out = [0.0f32; 2];
    assert!(kernels::exp_f32(&[1.0], &mut out).is_err());
    assert!(kernels::ln_f32(&[1.0], &mut out).is_err());
    assert!(kernels::softmax_f32(&[1.0], &mut out).is_err());
    assert!(kernels::log_softmax_f32(&[1.0], &mut out).is_err());
    assert!(kernels::exp_sub_sum_f32(&[1.0], 0.0, &mut out).is_err());
    let e = kernels::cross_entropy_row_f32(&[1.0, 2.0], 2, None, 0.0, None, 1.0).unwrap_err();
    assert_eq!(e.to_string(), "cross_entropy_row_f32: target 2 at [] is out of range for 2 classes");
    let e = kernels::cross_entropy_row_f32(&[1.0, 2.0], 0, Some(&[1.0]), 0.0, None, 1.0).unwrap_err();
    assert!(e.to_string().contains("weight shape [1]"), "{e}");
    let e = kernels::cross_entropy_row_f32(&[1.0, 2.0], 0, None, 0.0, Some(&mut [0.0; 3]), 1.0).unwrap_err();
    assert!(e.to_string().contains("gradient row shape [3]"), "{e}");
    let e = kernels::cross_entropy_row_f32(&[1.0, 2.0], 0, None, 1.5, None, 1.0).unwrap_err();
    assert!(e.to_string().contains("label_smoothing = 1.5"), "{e}");
    // negative or NaN label smoothing means none (PyTorch)
    for eps in [-0.5, f64::NAN] {
        let a = kernels::cross_entropy_row_f32(&[1.0, 2.0], 0, None, eps, None, 1.0).unwrap();
        let b = kernels::cross_entropy_row_f32(&[1.0, 2.0], 0, None, 0.0, None, 1.0).unwrap();
        assert_eq!(a, b);
        let a = kernels::cross_entropy_probs_row_f32(&[1.0, 2.0], &[0.5, 0.5], None, eps, None, 1.0).unwrap();
        let b = kernels::cross_entropy_probs_row_f32(&[1.0, 2.0], &[0.5, 0.5], None, 0.0, None, 1.0).unwrap();
        assert_eq!(a, b);
    }
    let e = kernels::cross_entropy_probs_row_f32(&[1.0, 2.0], &[1.0], None, 0.0, None, 1.0).unwrap_err();
    assert!(e.to_string().contains("target row shape [1]"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// fused cross-entropy rows

/// Checks one class-index row (loss terms and gradient, and that the forward-only call returns
/// the same terms) against the f64 formulas of PyTorch's closed form.
fn check_ce(k: Kernels, x: &[f32], y: usize, w: Option<&[f32]>, eps: f64, g: f32, ctx: &str) {
    let n = x.len();
    let r = reference(x);
    let mut grad = vec![f32::NAN; n];
    let row = k.cross_entropy_row_f32(x, y, w, eps, Some(&mut grad), g).unwrap();
    let fwd = k.cross_entropy_row_f32(x, y, w, eps, None, g).unwrap();
    assert!(
        fwd.target_log_prob.to_bits() == row.target_log_prob.to_bits()
            && fwd.smooth.to_bits() == row.smooth.to_bits(),
        "{ctx}: forward-only differs: {fwd:?} vs {row:?}"
    );
    let wc = |c: usize| w.map_or(1.0, |w| w[c] as f64);
    let wsum: f64 = (0..n).map(wc).sum();
    let wabs: f64 = (0..n).map(|c| wc(c).abs()).sum();

    // log_softmax at the target
    let d = x[y] as f64 - r.m;
    let lsm_y = d - r.ln_s;
    let tol =
        if d.is_finite() { d.abs() * U } else { 0.0 } + r.eps_s + 2.0 * U * (lsm_y.abs() + r.ln_s.abs());
    assert!(close(row.target_log_prob as f64, lsm_y, tol), "{ctx}: lsm_y {} vs {lsm_y}", row.target_log_prob);
    assert_eq!(row.max as f64, r.m, "{ctx}");

    // smoothing term −Σ w_c lsm_c
    if eps > 0.0 {
        let mut want = 0.0;
        let mut spread = 0.0;
        for c in 0..n {
            let t = r.m - x[c] as f64;
            want += wc(c) * (r.ln_s + t);
            if t.is_finite() {
                spread += wc(c).abs() * t;
            }
        }
        let tol = wabs * (r.eps_s + U * r.ln_s.abs()) + 70.0 * U * spread + 1e-300;
        assert!(close(row.smooth, want, tol), "{ctx}: smooth {} vs {want} (tol {tol})", row.smooth);
    } else {
        assert_eq!(row.smooth, 0.0);
    }

    // gradient: g·[(1−ε)·w_y·(p_c − δ_cy) + (ε/C)·(p_c·Σw − w_c)]
    let gg = g as f64;
    let (keep, unif) = (1.0 - eps, eps / n as f64);
    let a_abs = keep * wc(y).abs() + unif * wsum.abs();
    let mut worst = 0.0f64;
    for c in 0..n {
        let p = r.p[c];
        let onehot = if c == y { 1.0 } else { 0.0 };
        let want = gg * (keep * wc(y) * (p - onehot) + unif * (p * wsum - wc(c)));
        let rel_p = if p > 0.0 { (x[c] as f64 - r.m).abs() * U + 6.0 * U + r.eps_s } else { 0.0 };
        let tol = gg.abs()
            * (a_abs * p * rel_p
                + 2.0 * U * (unif * wc(c).abs() + keep * wc(y).abs() * onehot)
                + 1e-37 * (a_abs + 1.0))
            + 2.0 * U * want.abs();
        assert!(
            close(grad[c] as f64, want, tol),
            "{ctx}: grad[{c}] {} vs {want} (tol {tol:e}, x={}, y={y})",
            grad[c],
            x[c]
        );
        if tol > 0.0 && want.is_finite() {
            worst = worst.max((grad[c] as f64 - want).abs() / tol);
        }
    }
    assert!(worst <= 1.0);
}

/// Calls `f(rng, kernels, isa, n, weights, scale)` for every available instruction set, row length and scale,
/// with class weights in `[0, 3)` drawn once per length.
fn each_isa_length_scale(rng: &mut Rng, mut f: impl FnMut(&mut Rng, Kernels, Isa, usize, &[f32], f64)) {
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        for n in lengths() {
            let weights: Vec<f32> = (0..n).map(|_| (rng.unit() * 3.0) as f32).collect();
            for &scale in SCALES {
                f(rng, k, isa, n, &weights, scale);
            }
        }
    }
}

#[test]
fn cross_entropy_rows_against_f64() {
    each_isa_length_scale(&mut Rng(7), |rng, k, isa, n, weights, scale| {
        for &order in ORDERS {
            for neg_inf in [false, true] {
                let x = make_row(rng, n, scale, order, neg_inf);
                if x.iter().all(|v| *v == f32::NEG_INFINITY) {
                    continue;
                }
                let y = rng.below(n);
                for (w, eps, g) in [
                    (None, 0.0, 1.0f32),
                    (None, 0.1, 0.25),
                    (Some(weights), 0.0, 1.0 / 3.0),
                    (Some(weights), 0.2, -2.0),
                    (None, 1.0, 1.0),
                ] {
                    let ctx = format!(
                        "{isa:?} n={n} scale={scale:e} {order:?} -inf={neg_inf} w={} eps={eps}",
                        w.is_some()
                    );
                    check_ce(k, &x, y, w, eps, g, &ctx);
                }
            }
        }
    });
}

/// Probability-target rows: loss and gradient against f64, `t' = t·(1−ε) + ε/C` in f32 as torch.
fn check_ce_probs(k: Kernels, x: &[f32], t: &[f32], w: Option<&[f32]>, eps: f64, g: f32, ctx: &str) {
    let n = x.len();
    let r = reference(x);
    let mut grad = vec![f32::NAN; n];
    let row = k.cross_entropy_probs_row_f32(x, t, w, eps, Some(&mut grad), g).unwrap();
    let fwd = k.cross_entropy_probs_row_f32(x, t, w, eps, None, g).unwrap();
    assert!(fwd.loss.to_bits() == row.loss.to_bits() || (fwd.loss.is_nan() && row.loss.is_nan()), "{ctx}");
    let (keep, add) = ((1.0 - eps) as f32, (eps / n as f64) as f32);
    let c: Vec<f64> = (0..n).map(|i| (t[i] * keep + add) as f64 * w.map_or(1.0, |w| w[i] as f64)).collect();
    let mass: f64 = c.iter().sum();
    let cabs: f64 = c.iter().map(|v| v.abs()).sum();
    let mut want = 0.0;
    let mut spread = 0.0;
    for i in 0..n {
        let d = r.m - x[i] as f64;
        want += c[i] * (r.ln_s + d);
        if d.is_finite() {
            spread += c[i].abs() * d;
        }
    }
    let tol = cabs * (r.eps_s + 70.0 * U * r.ln_s.abs()) + 70.0 * U * spread + 1e-300;
    assert!(close(row.loss, want, tol), "{ctx}: loss {} vs {want} (tol {tol:e})", row.loss);
    assert!(close(row.target_mass, mass, 70.0 * U * cabs + 1e-300), "{ctx}: mass");
    let gg = g as f64;
    for i in 0..n {
        let p = r.p[i];
        let want = gg * (p * mass - c[i]);
        let rel_p = if p > 0.0 {
            (x[i] as f64 - r.m).abs() * U + 6.0 * U + r.eps_s + 70.0 * U * cabs / mass.abs().max(1e-300)
        } else {
            0.0
        };
        let tol = gg.abs() * (mass.abs() * p * rel_p + 3.0 * U * c[i].abs() + 1e-37 * (mass.abs() + 1.0))
            + 2.0 * U * want.abs();
        assert!(close(grad[i] as f64, want, tol), "{ctx}: grad[{i}] {} vs {want} (tol {tol:e})", grad[i]);
    }
}

#[test]
fn cross_entropy_probs_rows_against_f64() {
    each_isa_length_scale(&mut Rng(11), |rng, k, isa, n, weights, scale| {
        for order in [Order::Random, Order::Increasing] {
            let x = make_row(rng, n, scale, order, false);
            // a random distribution, with some exact zeros
            let mut t: Vec<f32> =
                (0..n).map(|_| if rng.below(4) == 0 { 0.0 } else { rng.unit() as f32 }).collect();
            let z: f32 = t.iter().sum();
            if z > 0.0 {
                t.iter_mut().for_each(|v| *v /= z);
            }
            for (w, eps, g) in
                [(None, 0.0, 1.0f32), (Some(weights), 0.0, 0.5), (None, 0.3, 1.0), (Some(weights), 0.1, -1.0)]
            {
                let ctx = format!("{isa:?} n={n} scale={scale:e} {order:?} w={} eps={eps}", w.is_some());
                check_ce_probs(k, &x, &t, w, eps, g, &ctx);
            }
        }
    });
}

#[test]
fn cross_entropy_special_rows() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let ninf = f32::NEG_INFINITY;
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        for n in [3usize, 17, 1100, 4000] {
            let base: Vec<f32> = (0..n).map(|i| ((i * 7) % 11) as f32 * 0.5 - 2.0).collect();
            let w: Vec<f32> = (0..n).map(|i| 0.5 + (i % 3) as f32).collect();
            let mut grad = vec![0.0f32; n];
            for eps in [0.0, 0.1] {
                for wt in [None, Some(&w[..])] {
                    // NaN, +inf, all -inf: NaN terms, NaN gradient
                    for bad in [nan, inf] {
                        for pos in [0, n / 2, n - 1] {
                            let mut x = base.clone();
                            x[pos] = bad;
                            let row = k.cross_entropy_row_f32(&x, 1, wt, eps, Some(&mut grad), 1.0).unwrap();
                            assert!(row.target_log_prob.is_nan(), "{isa:?} n={n} {bad} at {pos}");
                            assert!(eps == 0.0 || row.smooth.is_nan());
                            assert!(grad.iter().all(|v| v.is_nan()), "{isa:?} n={n} {bad} at {pos}");
                            let row =
                                k.cross_entropy_probs_row_f32(&x, &w, wt, eps, Some(&mut grad), 1.0).unwrap();
                            assert!(row.loss.is_nan());
                            assert!(grad.iter().all(|v| v.is_nan()));
                        }
                    }
                    let x = vec![ninf; n];
                    let row = k.cross_entropy_row_f32(&x, 0, wt, eps, Some(&mut grad), 1.0).unwrap();
                    assert!(row.target_log_prob.is_nan());
                    assert!(grad.iter().all(|v| v.is_nan()));

                    // -inf at the target: loss +inf, gradient finite (torch: [0.2689, -1, 0.7311] for
                    // x = [0, -inf, 1], y = 1)
                    let mut x = base.clone();
                    x[1] = ninf;
                    let row = k.cross_entropy_row_f32(&x, 1, wt, eps, Some(&mut grad), 1.0).unwrap();
                    assert_eq!(row.target_log_prob, ninf);
                    assert!(grad.iter().all(|v| v.is_finite()));
                    check_ce(k, &x, 1, wt, eps, 1.0, &format!("{isa:?} -inf target n={n}"));
                    // leading run of -inf longer than a block, then finite values
                    let mut x = base.clone();
                    let cut = (n * 3 / 4).min(n - 2);
                    x[..cut].fill(ninf);
                    check_ce(k, &x, n - 1, wt, eps, 0.5, &format!("{isa:?} -inf prefix n={n}"));
                    check_ce(k, &x, 0, wt, eps, 0.5, &format!("{isa:?} -inf prefix, -inf target n={n}"));
                }
            }
            // label smoothing with a -inf logit: loss +inf, finite gradient (torch)
            let mut x = base.clone();
            x[2] = ninf;
            let row = k.cross_entropy_row_f32(&x, 0, None, 0.1, Some(&mut grad), 1.0).unwrap();
            assert_eq!(row.smooth, f64::INFINITY);
            assert!(grad.iter().all(|v| v.is_finite()));
            // ... and zero weight there: 0·inf = NaN loss (torch), gradient still finite
            let mut w0 = w.clone();
            w0[2] = 0.0;
            let row = k.cross_entropy_row_f32(&x, 0, Some(&w0), 0.1, Some(&mut grad), 1.0).unwrap();
            assert!(row.smooth.is_nan());
            assert!(grad.iter().all(|v| v.is_finite()));
            // probability target 0 at a -inf logit: NaN loss, finite gradient (torch)
            let mut t = vec![1.0 / n as f32; n];
            t[2] = 0.0;
            let row = k.cross_entropy_probs_row_f32(&x, &t, None, 0.0, Some(&mut grad), 1.0).unwrap();
            assert!(row.loss.is_nan());
            assert!(grad.iter().all(|v| v.is_finite()));
        }
    }
}

/// Values computed with torch 2.15:
/// ```python
/// x = torch.tensor([[1., -float('inf'), 2.]], requires_grad=True)
/// F.cross_entropy(x, torch.tensor([0]), label_smoothing=0.1).backward()  # loss inf
/// x.grad  # [-0.6643918753, -0.0333333351, 0.6977252364]
/// x = torch.tensor([[0., -float('inf'), 1.]], requires_grad=True)
/// F.cross_entropy(x, torch.tensor([1])).backward(); x.grad  # [0.2689414322, -1, 0.7310585976]
/// ```
#[test]
fn cross_entropy_matches_torch_values() {
    let ninf = f32::NEG_INFINITY;
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        let mut g = [0.0f32; 3];
        let row = k.cross_entropy_row_f32(&[1.0, ninf, 2.0], 0, None, 0.1, Some(&mut g), 1.0).unwrap();
        assert_eq!(row.loss(1.0, 0.1, 3), f64::INFINITY);
        for (a, b) in g.iter().zip([-0.664_391_9f32, -0.033_333_335, 0.697_725_24]) {
            assert!((a - b).abs() < 1e-6, "{isa:?} {g:?}");
        }
        let row = k.cross_entropy_row_f32(&[0.0, ninf, 1.0], 1, None, 0.0, Some(&mut g), 1.0).unwrap();
        assert_eq!(row.loss(1.0, 0.0, 3), f64::INFINITY);
        for (a, b) in g.iter().zip([0.268_941_43f32, -1.0, 0.731_058_6]) {
            assert!((a - b).abs() < 1e-6, "{isa:?} {g:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// f64 exp / ln

fn ordered64(x: f64) -> i128 {
    let b = x.to_bits() as i64 as i128;
    if b < 0 { i64::MIN as i128 - b } else { b }
}

/// Inputs for the f64 sweeps: random bit patterns over the whole range, plus dense uniform
/// samples where the functions are interesting.
fn f64_inputs(exp: bool) -> Vec<f64> {
    let mut rng = Rng(99);
    let n = if cfg!(debug_assertions) { 20_000 } else { 2_000_000 };
    let mut v: Vec<f64> = (0..n).map(|_| f64::from_bits(rng.next())).collect();
    for _ in 0..n {
        let u = rng.unit();
        v.push(if exp {
            (u * 2.0 - 1.0) * 750.0
        } else {
            (u * 2.0).powi(8) * 10f64.powi(rng.below(600) as i32 - 300)
        });
    }
    if exp {
        v.extend([
            0.0,
            -0.0,
            709.78,
            709.79,
            710.0,
            -745.13,
            -745.14,
            -708.4,
            -708.39,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]);
    } else {
        v.extend([
            0.0,
            -0.0,
            1.0,
            f64::MIN_POSITIVE,
            5e-324,
            1e-310,
            f64::MAX,
            f64::INFINITY,
            -1.0,
            f64::NAN,
        ]);
        // around 1 (cancellation) and the mantissa split
        v.extend((0..10_000).map(|i| 1.0 + (i as f64 - 5000.0) * 1e-7));
        v.extend((0..10_000).map(|i| std::f64::consts::FRAC_1_SQRT_2 + (i as f64 - 5000.0) * 1e-12));
    }
    v
}

fn check_f64(name: &str, f: fn(Kernels, &[f64], &mut [f64]), libm: fn(f64) -> f64, exp: bool) {
    let x = f64_inputs(exp);
    let mut first: Option<Vec<f64>> = None;
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        let mut y = vec![0.0f64; x.len()];
        f(k, &x, &mut y);
        let (mut max_dist, mut max_ulp, mut worst) = (0i128, 0.0f64, 0.0f64);
        for (&xi, &yi) in x.iter().zip(&y) {
            let want = libm(xi);
            if want.is_nan() || want.is_infinite() || want == 0.0 {
                assert!(
                    (want.is_nan() && yi.is_nan()) || yi == want,
                    "{name} {isa:?} x={xi:e}: {yi:e} vs {want:e}"
                );
                continue;
            }
            let d = (ordered64(yi) - ordered64(want)).abs();
            let u = (yi - want).abs() / ulp_f64(want);
            if d > max_dist {
                max_dist = d;
            }
            if u > max_ulp {
                max_ulp = u;
                worst = xi;
            }
        }
        eprintln!(
            "{name} {isa:?}: max distance to libm {max_dist} ulp ({max_ulp:.3} ulp of libm's value, x={worst:e}) over {}",
            x.len()
        );
        assert!(max_dist <= 1, "{name} {isa:?}");
        // identical bits at every level
        match &first {
            None => first = Some(y),
            Some(f0) => {
                for i in 0..x.len() {
                    assert!(
                        f0[i].to_bits() == y[i].to_bits() || (f0[i].is_nan() && y[i].is_nan()),
                        "{name} {isa:?} x={:e}",
                        x[i]
                    );
                }
            }
        }
    }
}

#[test]
fn exp_f64_sweep() {
    check_f64("exp_f64", |k, x, y| k.exp_f64(x, y).unwrap(), f64::exp, true);
}

#[test]
fn ln_f64_sweep() {
    check_f64("ln_f64", |k, x, y| k.ln_f64(x, y).unwrap(), f64::ln, false);
}

/// The in-place class-index row kernel writes exactly the bits the two-buffer kernel writes (and
/// returns the same terms), at every instruction set, over lengths crossing the lane, chunk and
/// block boundaries (the block copy of pass 1), magnitudes 1e-30..1e30, NaN/±inf rows, weights and
/// smoothing; an error leaves the row untouched.
#[test]
fn cross_entropy_row_in_place_equals_the_two_buffer_kernel() {
    let mut lengths: Vec<usize> =
        vec![1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 127, 128, 129, 1023, 1024, 1025, 2049, 32000, 70001, 128256];
    lengths.dedup();
    let mut seed = 0x5eed_1234_u64;
    let mut unit = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let mut checked = 0;
    for isa in Isa::available() {
        let k = Kernels::with_isa(isa).unwrap();
        for &n in &lengths {
            for &scale in &[1e-30, 1.0, 30.0, 1e30] {
                for special in 0..3 {
                    let mut x: Vec<f32> = (0..n).map(|_| (scale * unit()) as f32).collect();
                    match special {
                        1 if n > 3 => x[n / 2] = f32::NEG_INFINITY,
                        2 => x[n - 1] = if n % 2 == 0 { f32::NAN } else { f32::INFINITY },
                        _ => {}
                    }
                    let w: Vec<f32> = (0..n).map(|i| 0.5 + (i % 4) as f32 * 0.25).collect();
                    let y = (n * 7 / 11).min(n - 1);
                    for (wt, eps) in
                        [(None, 0.0), (Some(w.as_slice()), 0.0), (Some(w.as_slice()), 0.1), (None, 0.3)]
                    {
                        let mut g = vec![0f32; n];
                        let two = k.cross_entropy_row_f32(&x, y, wt, eps, Some(&mut g), 0.75).unwrap();
                        let mut io = x.clone();
                        let one = k.cross_entropy_row_in_place_f32(&mut io, y, wt, eps, 0.75).unwrap();
                        let tag = format!(
                            "{isa:?} n={n} scale={scale:e} special={special} w={} eps={eps}",
                            wt.is_some()
                        );
                        assert_eq!(one.max.to_bits(), two.max.to_bits(), "{tag}: max");
                        assert_eq!(one.ln_sum.to_bits(), two.ln_sum.to_bits(), "{tag}: ln_sum");
                        assert_eq!(
                            one.target_log_prob.to_bits(),
                            two.target_log_prob.to_bits(),
                            "{tag}: lsm_y"
                        );
                        assert_eq!(one.smooth.to_bits(), two.smooth.to_bits(), "{tag}: smooth");
                        let (a, b): (Vec<u32>, Vec<u32>) = (
                            io.iter().map(|v| v.to_bits()).collect(),
                            g.iter().map(|v| v.to_bits()).collect(),
                        );
                        assert!(a == b, "{tag}: gradient bits differ");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 4 * 20 * 12);
    // errors name the problem and leave the row as it was
    let mut row = [1.0f32, 2.0];
    let e = kernels::cross_entropy_row_in_place_f32(&mut row, 2, None, 0.0, 1.0).unwrap_err();
    assert_eq!(e.to_string(), "cross_entropy_row_in_place_f32: target 2 at [] is out of range for 2 classes");
    let e = kernels::cross_entropy_row_in_place_f32(&mut row, 0, Some(&[1.0]), 0.0, 1.0).unwrap_err();
    assert!(e.to_string().contains("weight"), "{e}");
    let e = kernels::cross_entropy_row_in_place_f32(&mut row, 0, None, 1.5, 1.0).unwrap_err();
    assert!(e.to_string().contains("label_smoothing"), "{e}");
    assert_eq!(row, [1.0, 2.0]);
}
