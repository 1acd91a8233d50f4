//! The in-place variants of the elementwise losses (`kl_div_with_grad_in_place`,
//! `binary_cross_entropy_with_grad_in_place`, `binary_cross_entropy_with_logits_with_grad_in_place`):
//! the loss and the gradient written over the input are bit for bit those of the allocating
//! `_with_grad` functions — for every element type, reduction, weight and `pos_weight`, sizes crossing
//! the lane, tile (1024) and task (65536) boundaries, any number of threads, non-contiguous inputs
//! (which take the copy-back route) — and an error leaves the input untouched.

use crate::support;
use support::{Rng, on_threads};

use infoloss::half::{bf16, f16};
use infoloss::ndarray::{Array1, Array2, ArrayD, IxDyn};
use infoloss::{
    BceOptions, BceWithLogitsOptions, Element, KlDivOptions, Loss, Real, Reduction,
    binary_cross_entropy_with_grad, binary_cross_entropy_with_grad_in_place,
    binary_cross_entropy_with_logits_with_grad, binary_cross_entropy_with_logits_with_grad_in_place,
    kl_div_with_grad, kl_div_with_grad_in_place,
};

/// Element counts: one, a partial vector, a tile and one past it, a task and one past it, and two
/// tasks plus a partial tile.
const SIZES: &[usize] = &[1, 13, 1024, 1025, 65536, 65537, 2 * 65536 + 1031];

fn arr<T: Element>(n: usize, cols: usize, f: impl FnMut() -> f64) -> ArrayD<T> {
    let mut f = f;
    let v: Vec<T> = (0..n).map(|_| T::from_acc(<T::Acc as Real>::c(f()))).collect();
    let shape = if n % cols == 0 { vec![n / cols, cols] } else { vec![n] };
    ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap()
}

fn loss_bits<T: Element>(l: &Loss<T>) -> Vec<u64> {
    match l {
        Loss::Scalar(v) => vec![v.to_acc().f64().to_bits()],
        Loss::Elementwise(a) => a.iter().map(|v| v.to_acc().f64().to_bits()).collect(),
    }
}

fn grad_bits<T: Element>(a: &ArrayD<T>) -> Vec<u64> {
    a.iter().map(|v| v.to_acc().f64().to_bits()).collect()
}

/// An allocating `_with_grad` call: the loss and the input gradient.
type Alloc<'a, T> = dyn Fn(&ArrayD<T>) -> (Loss<T>, ArrayD<T>) + Sync + 'a;

/// Checks `in_place` against `alloc` on `x` (bits of the loss and of the gradient), on 1, 2 and 3
/// threads; returns the number of elements compared.
fn same<T: Element>(
    what: &str,
    x: &ArrayD<T>,
    alloc: &Alloc<'_, T>,
    in_place: &(dyn Fn(&mut ArrayD<T>) -> Loss<T> + Sync),
) -> usize {
    let (want_loss, want_grad) = alloc(x);
    assert_eq!(want_grad.shape(), x.shape(), "{what}");
    for threads in [1, 2, 3] {
        let mut buf = x.clone();
        let loss = on_threads(threads, || in_place(&mut buf));
        assert_eq!(loss_bits(&loss), loss_bits(&want_loss), "{what}: loss, {threads} threads");
        assert!(grad_bits(&buf) == grad_bits(&want_grad), "{what}: gradient, {threads} threads");
    }
    x.len()
}

fn run_type<T: Element>(tag: &str) -> usize {
    let mut rng = Rng(0x1f2e_3d4c ^ tag.len() as u64);
    let mut checked = 0;
    for &n in SIZES {
        let cols = if n % 1024 == 0 { 1024 } else { n };
        // kl_div: log-probabilities and probabilities with zeros, both target conventions
        let logp = arr::<T>(n, cols, || -8.0 * rng.unit());
        let p = arr::<T>(n, cols, || if rng.below(5) == 0 { 0.0 } else { rng.unit() });
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean] {
            for log_target in [false, true] {
                let t = if log_target {
                    logp.mapv(|v| T::from_acc(v.to_acc() * <T::Acc as Real>::c(0.5)))
                } else {
                    p.clone()
                };
                let o = KlDivOptions { reduction, log_target };
                let what = format!("{tag} kl_div n={n} {reduction:?} log_target={log_target}");
                checked += same(&what, &logp, &|x| kl_div_with_grad(x.view(), t.view(), &o).unwrap(), &|x| {
                    kl_div_with_grad_in_place(x.view_mut(), t.view(), &o).unwrap()
                });
            }
        }
        // BCE: probabilities in [0, 1] (hard and soft targets), with and without a row weight
        let x = arr::<T>(n, cols, || rng.unit());
        let t = arr::<T>(n, cols, || if rng.below(2) == 0 { (rng.below(2)) as f64 } else { rng.unit() });
        let w = Array1::from_shape_fn(cols, |i| T::from_acc(<T::Acc as Real>::c(0.5 + (i % 7) as f64)))
            .into_dyn();
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            for weighted in [false, true] {
                let o = BceOptions { reduction, weight: weighted.then(|| w.view()) };
                let what = format!("{tag} bce n={n} {reduction:?} weighted={weighted}");
                checked += same(
                    &what,
                    &x,
                    &|x| binary_cross_entropy_with_grad(x.view(), t.view(), &o).unwrap(),
                    &|x| binary_cross_entropy_with_grad_in_place(x.view_mut(), t.view(), &o).unwrap(),
                );
                // BCE with logits, with a pos_weight too
                let logits = arr::<T>(n, cols, || 20.0 * rng.sym());
                let ow = BceWithLogitsOptions {
                    reduction,
                    weight: weighted.then(|| w.view()),
                    pos_weight: weighted.then(|| w.view()),
                };
                let what = format!("{tag} bce_logits n={n} {reduction:?} weighted={weighted}");
                checked += same(
                    &what,
                    &logits,
                    &|x| binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &ow).unwrap(),
                    &|x| {
                        binary_cross_entropy_with_logits_with_grad_in_place(x.view_mut(), t.view(), &ow)
                            .unwrap()
                    },
                );
            }
        }
    }
    checked
}

#[test]
fn in_place_equals_allocating_f32() {
    assert!(run_type::<f32>("f32") > 0);
}

#[test]
fn in_place_equals_allocating_bf16() {
    assert!(run_type::<bf16>("bf16") > 0);
}

#[test]
fn in_place_equals_allocating_f16_and_f64() {
    assert!(run_type::<f16>("f16") > 0);
    assert!(run_type::<f64>("f64") > 0);
}

#[test]
fn the_gradient_is_written_and_known_values_hold() {
    // kl_div, batchmean: ∂/∂x = −t / N
    let mut x = Array2::from_shape_vec((2, 2), vec![-1.0f32, -0.5, -0.7, -0.7]).unwrap();
    let t = Array2::from_shape_vec((2, 2), vec![0.25f32, 0.75, 0.5, 0.5]).unwrap();
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let l = kl_div_with_grad_in_place(x.view_mut(), t.view(), &o).unwrap();
    assert!((l.scalar().unwrap() - 0.034_758_84).abs() < 1e-7);
    assert_eq!(x.as_slice().unwrap(), &[-0.125, -0.375, -0.25, -0.25]);
    // BCE with logits at 0: (σ(0) − t)/2
    let mut z = Array1::from_vec(vec![0.0f32, 0.0]);
    let tz = Array1::from_vec(vec![1.0f32, 0.0]);
    let l = binary_cross_entropy_with_logits_with_grad_in_place(z.view_mut(), tz.view(), &Default::default());
    assert!((l.unwrap().scalar().unwrap() - std::f32::consts::LN_2).abs() < 1e-7);
    assert_eq!(z.as_slice().unwrap(), &[-0.25, 0.25]);
}

#[test]
fn non_contiguous_inputs_take_the_copy_back_route() {
    let mut rng = Rng(7);
    let base = Array2::from_shape_fn((37, 1029), |_| (20.0 * rng.sym()) as f32);
    let t = Array2::from_shape_fn((1029, 37), |_| rng.unit() as f32);
    let o = BceWithLogitsOptions::default();
    let (want_l, want_g) = binary_cross_entropy_with_logits_with_grad(base.t(), t.view(), &o).unwrap();
    let mut buf = base.clone();
    let l = binary_cross_entropy_with_logits_with_grad_in_place(buf.view_mut().reversed_axes(), t.view(), &o)
        .unwrap();
    assert_eq!(loss_bits(&l), loss_bits(&want_l));
    assert!(grad_bits(&buf.t().to_owned().into_dyn()) == grad_bits(&want_g));
}

#[test]
fn errors_leave_the_input_untouched() {
    // an input outside [0, 1] deep inside the second task: the domain check runs before any write
    let n = 65536 + 4000;
    let mut x = Array1::from_shape_fn(n, |i| (i % 97) as f32 / 97.0);
    x[n - 10] = 1.5;
    let before = x.clone();
    let t = Array1::from_elem(n, 0.5f32);
    let e =
        binary_cross_entropy_with_grad_in_place(x.view_mut(), t.view(), &BceOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("input") && msg.contains(&format!("{}", n - 10)), "{msg}");
    assert_eq!(x, before);
    // the same in bf16
    let mut xb = before.mapv(bf16::from_f32);
    let bb = xb.clone();
    let tb = t.mapv(bf16::from_f32);
    assert!(
        binary_cross_entropy_with_grad_in_place(xb.view_mut(), tb.view(), &BceOptions::default()).is_err()
    );
    assert_eq!(xb, bb);

    // a target that would broadcast the input to a larger shape: both shapes named
    let mut y = Array2::from_elem((1, 4), -1.0f32);
    let yb = y.clone();
    let t2 = Array2::from_elem((3, 4), 0.25f32);
    let msg =
        kl_div_with_grad_in_place(y.view_mut(), t2.view(), &KlDivOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("[1, 4]") && msg.contains("[3, 4]"), "{msg}");
    assert_eq!(y, yb);

    // a weight of the wrong shape; batchmean for BCE
    let mut z = Array1::from_elem(8, 0.5f32);
    let w = Array1::from_elem(3, 1.0f32).into_dyn();
    let t8 = Array1::from_elem(8, 1.0f32);
    let o = BceWithLogitsOptions { weight: Some(w.view()), ..Default::default() };
    let msg = binary_cross_entropy_with_logits_with_grad_in_place(z.view_mut(), t8.view(), &o)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("weight") && msg.contains("[3]") && msg.contains("[8]"), "{msg}");
    let o = BceOptions { reduction: Reduction::BatchMean, weight: None };
    let msg = binary_cross_entropy_with_grad_in_place(z.view_mut(), t8.view(), &o).unwrap_err().to_string();
    assert!(msg.contains("reduction"), "{msg}");
    assert!(z.iter().all(|&v| v == 0.5));
}

#[test]
fn broadcast_kl_targets_are_read_in_place() {
    // a (C,) target against an (N, C) input: the fused path broadcasts it
    let mut rng = Rng(11);
    let x = Array2::from_shape_fn((70, 1100), |_| (-6.0 * rng.unit()) as f32).into_dyn();
    let t = Array1::from_shape_fn(1100, |_| rng.unit() as f32).into_dyn();
    let o = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let got = same("kl broadcast target", &x, &|x| kl_div_with_grad(x.view(), t.view(), &o).unwrap(), &|x| {
        kl_div_with_grad_in_place(x.view_mut(), t.view(), &o).unwrap()
    });
    assert_eq!(got, 77_000);
}
