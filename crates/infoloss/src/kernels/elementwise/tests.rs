use super::*;
use crate::GradOutput;
use half::bf16;
use ndarray::{ArrayD, IxDyn};

/// Elements computed by [`pair_tile`] (so the test below knows the pair path ran).
pub(super) static PAIR_ELEMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Elements computed by `f16c::tile` (so the test below knows the F16C path ran).
pub(super) static F16C_ELEMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `f` with the bf16 pair path on and off.
/// (Inputs of at least `2·16` elements hold a whole group at every instruction set, so the pair
/// path must have run for them.)
fn both<R>(expect: bool, f: impl Fn() -> R) -> (R, R) {
    let (on, off, ran) = on_off(&PAIR_PATH, &PAIR_ELEMENTS, f);
    assert!(ran || !expect, "the pair path did not run");
    (on, off)
}

/// `f` with the path switch `flag` on and off, and whether the path ran (its element counter grew;
/// the counter is shared with the other tests of this binary, so only "it ran" is reliable).
fn on_off<R>(
    flag: &'static std::thread::LocalKey<Cell<bool>>,
    counter: &std::sync::atomic::AtomicUsize,
    f: impl Fn() -> R,
) -> (R, R, bool) {
    let before = counter.load(std::sync::atomic::Ordering::Relaxed);
    let on = f();
    let ran = counter.load(std::sync::atomic::Ordering::Relaxed) > before;
    let off = crate::base::path::with_switch(flag, false, &f);
    (on, off, ran)
}

fn bits(a: &ArrayD<bf16>) -> Vec<u16> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// `f` with the f16 F16C path on and off, and whether it ran (it only can at AVX2 with F16C).
fn both_f16<R>(f: impl Fn() -> R) -> (R, R, bool) {
    on_off(&F16C_PATH, &F16C_ELEMENTS, f)
}

#[test]
fn f16_in_registers_gives_the_scratch_paths_bits() {
    use crate::{BceOptions, BceWithLogitsOptions, KlDivOptions};
    use half::f16;
    // bits, with every NaN as one pattern: which operation makes a NaN (and so its sign) depends on
    // the compiler's instruction choice, which differs between the two paths' loops
    let hbits = |a: &ArrayD<f16>| {
        a.iter().map(|v| if v.is_nan() { 0x7e00 } else { v.to_bits() }).collect::<Vec<u16>>()
    };
    let half = |v: Vec<bf16>| v.into_iter().map(|b| f16::from_f32(b.to_f32())).collect::<Vec<f16>>();
    let check = |a: &Loss<f16>, b: &Loss<f16>, what: &str| match (a, b) {
        (Loss::Elementwise(a), Loss::Elementwise(b)) => assert_eq!(hbits(a), hbits(b), "{what}"),
        // a summed loss adds the same rounded terms in the same order: the same bits
        (Loss::Scalar(a), Loss::Scalar(b)) => {
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what}: {a} vs {b}")
        }
        _ => panic!("different loss kinds"),
    };
    let avx2 =
        crate::kernels::Isa::best() == crate::kernels::Isa::Avx2 && crate::kernels::simd::f16c_available();
    let mut ran_any = false;
    // lengths around a vector, a tile and a task; odd sizes leave tails
    for &(rows, cols) in &[(1, 7), (1, 8), (3, 17), (2, 1023), (5, 1025), (3, 40_000), (1, 65_537)] {
        let n = rows * cols;
        let shape = IxDyn(&[rows, cols]);
        let mut xv = half(data(n, 1, false));
        // f16 subnormals and values that overflow f16 after the formula
        for (i, v) in xv.iter_mut().enumerate().filter(|(i, _)| i % 89 == 21) {
            *v = f16::from_f32(if i % 2 == 0 { 3e-6 } else { 6.0e4 });
        }
        let x = ArrayD::from_shape_vec(shape.clone(), xv).unwrap();
        let xu = ArrayD::from_shape_vec(shape.clone(), half(data(n, 2, true))).unwrap();
        let t = ArrayD::from_shape_vec(shape.clone(), half(data(n, 3, true))).unwrap();
        let hard = t.mapv(|v| if v.to_f32() > 0.5 { f16::ONE } else { f16::ZERO });
        let wv: Vec<f16> = (0..cols).map(|c| f16::from_f32(0.5 + (c % 7) as f32 * 0.25)).collect();
        let w = ndarray::Array1::from(wv).into_dyn();
        let g = x.mapv(|v| f16::from_f32((v.to_f32() * 0.37).sin()));
        for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let what = format!("{rows}x{cols} {red:?}");
            let o = KlDivOptions { reduction: red, ..Default::default() };
            let (a, b, ran) = both_f16(|| crate::kl_div_with_grad(x.view(), t.view(), &o).unwrap());
            ran_any |= ran;
            assert_eq!(hbits(&a.1), hbits(&b.1), "kl grad {what}");
            check(&a.0, &b.0, &format!("kl loss {what}"));
            if red == Reduction::None {
                // an upstream gradient per element, the target's gradient
                let o = KlDivOptions { reduction: red, log_target: true };
                let go = GradOutput::Array(g.view());
                let (a, b, _) =
                    both_f16(|| crate::kl_div_backward_target(x.view(), t.view(), &o, &go).unwrap());
                assert_eq!(hbits(&a), hbits(&b), "kl target grad {what}");
            }
            let o = BceOptions { reduction: red, weight: Some(w.view()) };
            for tt in [&t, &hard] {
                let (a, b, _) =
                    both_f16(|| crate::binary_cross_entropy_with_grad(xu.view(), tt.view(), &o).unwrap());
                assert_eq!(hbits(&a.1), hbits(&b.1), "bce grad {what}");
                check(&a.0, &b.0, &format!("bce loss {what}"));
            }
            let o = BceWithLogitsOptions { reduction: red, pos_weight: Some(w.view()), ..Default::default() };
            let (a, b, _) = both_f16(|| {
                crate::binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &o).unwrap()
            });
            assert_eq!(hbits(&a.1), hbits(&b.1), "bce-logits grad {what}");
            check(&a.0, &b.0, &format!("bce-logits loss {what}"));
            // in place: the gradient over the input
            let (a, b, _) = both_f16(|| {
                let mut buf = x.clone();
                let o = KlDivOptions { reduction: red, ..Default::default() };
                let l = crate::kl_div_with_grad_in_place(buf.view_mut(), t.view(), &o).unwrap();
                (l, buf)
            });
            assert_eq!(hbits(&a.1), hbits(&b.1), "kl in place {what}");
            check(&a.0, &b.0, &format!("kl in place loss {what}"));
            let (a, b, _) = both_f16(|| {
                let mut buf = x.clone();
                let o = BceWithLogitsOptions { reduction: red, ..Default::default() };
                let l =
                    crate::binary_cross_entropy_with_logits_with_grad_in_place(buf.view_mut(), t.view(), &o)
                        .unwrap();
                (l, buf)
            });
            assert_eq!(hbits(&a.1), hbits(&b.1), "bce-logits in place {what}");
            check(&a.0, &b.0, &format!("bce-logits in place loss {what}"));
            let (a, b, _) = both_f16(|| {
                let mut buf = xu.clone();
                let o = BceOptions { reduction: red, weight: None };
                let l = crate::binary_cross_entropy_with_grad_in_place(buf.view_mut(), t.view(), &o).unwrap();
                (l, buf)
            });
            assert_eq!(hbits(&a.1), hbits(&b.1), "bce in place {what}");
            check(&a.0, &b.0, &format!("bce in place loss {what}"));
        }
        // out of the domain: the same error either way
        let mut bad = xu.clone();
        bad[[rows - 1, cols - 1]] = f16::from_f32(1.5);
        let (a, b, _) =
            both_f16(|| crate::binary_cross_entropy_with_grad(bad.view(), t.view(), &BceOptions::default()));
        assert!(a.is_err() && b.is_err(), "bce out of domain {rows}x{cols}");
    }
    assert_eq!(ran_any, avx2, "the F16C path runs exactly where the CPU is at AVX2 with F16C");
}

/// Values in `(0, 1)` with NaN, ±0, 1 and subnormals sprinkled in, as `bf16`.
fn data(n: usize, seed: u64, unit: bool) -> Vec<bf16> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            let v = match i % 97 {
                3 if !unit => f32::NAN,
                5 => 0.0,
                7 => 1.0,
                11 => 1e-39,
                13 if !unit => -0.0,
                17 if !unit => 1e30,
                _ if unit => u,
                _ => (u - 0.5) * 30.0,
            };
            bf16::from_f32(v)
        })
        .collect()
}

#[test]
fn bf16_pair_path_gives_the_scratch_paths_bits() {
    use crate::{BceOptions, BceWithLogitsOptions, KlDivOptions};
    // lengths around a group (16 or 32 lanes of bf16), a tile and a task; odd sizes leave tails
    for &(rows, cols) in &[(1, 15), (1, 16), (3, 17), (2, 1023), (5, 1025), (3, 40_000), (1, 65_537)] {
        let n = rows * cols;
        let shape = IxDyn(&[rows, cols]);
        let x = ArrayD::from_shape_vec(shape.clone(), data(n, 1, false)).unwrap();
        let xu = ArrayD::from_shape_vec(shape.clone(), data(n, 2, true)).unwrap();
        let t = ArrayD::from_shape_vec(shape.clone(), data(n, 3, true)).unwrap();
        // a broadcast (C,) weight: the split layout of periodic operands
        let wv: Vec<bf16> = (0..cols).map(|c| bf16::from_f32(0.5 + (c % 7) as f32 * 0.25)).collect();
        let w = ndarray::Array1::from(wv).into_dyn();
        // a broadcast (C,) target for kl_div: the split layout
        let trow = t.index_axis(Axis(0), 0).to_owned();
        // a whole group of bf16 at every instruction set (AVX-512: 32)
        let pairs = n >= 32;
        for red in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let o = KlDivOptions { reduction: red, ..Default::default() };
            let (a, b) = both(pairs, || crate::kl_div_with_grad(x.view(), t.view(), &o).unwrap());
            assert_eq!(bits(&a.1), bits(&b.1), "kl grad {rows}x{cols} {red:?}");
            check_loss(&a.0, &b.0);
            let (a, b) =
                both(pairs && cols >= 32, || crate::kl_div_with_grad(x.view(), trow.view(), &o).unwrap());
            assert_eq!(bits(&a.1), bits(&b.1), "kl grad {rows}x{cols} {red:?}");
            check_loss(&a.0, &b.0);
            let o = BceOptions { reduction: red, weight: Some(w.view()) };
            let (a, b) =
                both(false, || crate::binary_cross_entropy_with_grad(xu.view(), t.view(), &o).unwrap());
            assert_eq!(bits(&a.1), bits(&b.1), "bce grad {rows}x{cols} {red:?}");
            check_loss(&a.0, &b.0);
            let o = BceWithLogitsOptions { reduction: red, pos_weight: Some(w.view()), ..Default::default() };
            let (a, b) = both(false, || {
                crate::binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &o).unwrap()
            });
            assert_eq!(bits(&a.1), bits(&b.1), "bce-logits grad {rows}x{cols} {red:?}");
            check_loss(&a.0, &b.0);
            // in place: the same bits as allocating
            let (a, b) = both(pairs, || {
                let mut buf = x.clone();
                let o = KlDivOptions { reduction: red, ..Default::default() };
                let l = crate::kl_div_with_grad_in_place(buf.view_mut(), t.view(), &o).unwrap();
                (l, buf)
            });
            assert_eq!(bits(&a.1), bits(&b.1), "kl in place {rows}x{cols} {red:?}");
            check_loss(&a.0, &b.0);
        }
    }
}

#[test]
fn f32_terms_summed_in_the_loop_are_sum_tiles_bits() {
    use crate::{BceWithLogitsOptions, KlDivOptions};
    struct SumTile<'a>(&'a [f32]);
    impl WithSimd for SumTile<'_> {
        type Output = f64;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> f64 {
            sum_tile(simd, self.0)
        }
    }
    // the driver's order: tiles in order within a task, task sums in task order
    let two_pass = |terms: &[f32]| {
        let isa = crate::kernels::Isa::best();
        let task = |c: &[f32]| c.chunks(TILE).fold(0.0, |a, t| a + crate::kernels::dispatch(isa, SumTile(t)));
        terms.chunks(TASK).fold(0.0f64, |a, c| a + task(c))
    };
    // tails of every kind, several tasks, and a tile with an infinite term (the f64 fallback)
    for (n, inf_at) in
        [(5, None), (3 * TILE + 5, None), (TASK + 2 * TILE + 3, None), (2 * TILE + 7, Some(1500))]
    {
        let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let mut t: Vec<f32> = (0..n).map(|i| (i * 13 % 29) as f32 / 29.0).collect();
        let mut xs = x.clone();
        if let Some(i) = inf_at {
            xs[i] = f32::NEG_INFINITY;
            t[i] = 0.5;
        }
        let xa = ArrayD::from_shape_vec(IxDyn(&[n]), xs).unwrap();
        let ta = ArrayD::from_shape_vec(IxDyn(&[n]), t.clone()).unwrap();
        let none = KlDivOptions { reduction: Reduction::None, ..Default::default() };
        let sum = KlDivOptions { reduction: Reduction::Sum, ..Default::default() };
        let terms = crate::kl_div(xa.view(), ta.view(), &none).unwrap().into_array();
        let want = two_pass(terms.as_slice().unwrap()) as f32;
        let (got, _) = crate::kl_div_with_grad(xa.view(), ta.view(), &sum).unwrap();
        let Loss::Scalar(got) = got else { panic!("not reduced") };
        assert_eq!(got.to_bits(), want.to_bits(), "kl_div n = {n}: {got} vs {want}");
        if inf_at.is_some() {
            assert_eq!(got, f32::INFINITY);
        }
        // in place, BCE with logits
        let mut buf = xa.clone();
        let got =
            crate::kl_div_with_grad_in_place(buf.view_mut(), ta.view(), &sum).unwrap().scalar().unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "kl_div in place n = {n}");
        let none = BceWithLogitsOptions { reduction: Reduction::None, ..Default::default() };
        let sum = BceWithLogitsOptions { reduction: Reduction::Sum, ..Default::default() };
        let xa = ArrayD::from_shape_vec(IxDyn(&[n]), x.clone()).unwrap();
        let terms =
            crate::binary_cross_entropy_with_logits(xa.view(), ta.view(), &none).unwrap().into_array();
        let want = two_pass(terms.as_slice().unwrap()) as f32;
        let mut buf = xa.clone();
        let got = crate::binary_cross_entropy_with_logits_with_grad_in_place(buf.view_mut(), ta.view(), &sum)
            .unwrap()
            .scalar()
            .unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "bce-logits in place n = {n}");
    }
}

/// Elementwise losses bit for bit; reduced ones as sums of the same rounded terms in another
/// order (equal after rounding to bf16 but for a rare tie).
fn check_loss(a: &Loss<bf16>, b: &Loss<bf16>) {
    match (a, b) {
        (Loss::Elementwise(a), Loss::Elementwise(b)) => assert_eq!(bits(a), bits(b)),
        (Loss::Scalar(a), Loss::Scalar(b)) => {
            let (a, b) = (a.to_f32(), b.to_f32());
            assert!(a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-2 * a.abs(), "{a} vs {b}");
        }
        _ => panic!("different loss kinds"),
    }
}
