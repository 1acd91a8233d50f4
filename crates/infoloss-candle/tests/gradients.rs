//! Every loss through `Tensor::backward()`: the forward equals infoloss's forward and the gradients candle
//! stores equal infoloss's `*_backward` (and `*_backward_target`) **exactly**, for the upstream gradient
//! `backward()` sends (a scalar ≠ 1 for reduced losses, a random array for `Reduction::None`), in f32 and
//! f64, over the options; in f64 they also agree with central finite differences of the candle forward.

use crate::support;

use candle_core::{Tensor, Var};
use infoloss::ndarray::{ArrayD, ArrayViewD, IxDyn};
use infoloss::{GradOutput, Loss};
use infoloss_candle::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, KlDivOptions, NllOptions, Reduction,
};
use support::*;

type CoreResult<T> = infoloss::Result<T>;
/// infoloss's forward of a two-tensor loss.
type PairFwd<'f, T> = &'f dyn Fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>) -> CoreResult<Loss<T>>;
/// infoloss's backward of a two-tensor loss (wrt one side).
type PairBwd<'f, T> =
    &'f dyn Fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &GradOutput<'_, T>) -> CoreResult<ArrayD<T>>;
/// infoloss's backward of a class-index loss (target bound).
type IndexBwd<'f, T> = &'f dyn Fn(ArrayViewD<'_, T>, &GradOutput<'_, T>) -> CoreResult<ArrayD<T>>;
/// A candle function of the softmax family.
type CandleUnary = fn(&Tensor, isize) -> candle_core::Result<Tensor>;

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// Checks a loss of two float tensors; with `fd`, also the gradients wrt the input (and target) against finite
/// differences of the candle forward.
#[allow(clippy::too_many_arguments)]
fn check_pair<T: F>(
    name: &str,
    seed: u64,
    x: &ArrayD<T>,
    t: &ArrayD<T>,
    candle: &dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
    fwd: PairFwd<'_, T>,
    bwd: PairBwd<'_, T>,
    bwd_t: Option<PairBwd<'_, T>>,
    fd: bool,
) {
    let xv = Var::from_tensor(&tensor(x)).unwrap();
    let tv = Var::from_tensor(&tensor(t)).unwrap();
    let loss = candle(xv.as_tensor(), tv.as_tensor()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = fwd(x.view(), t.view()).unwrap().into_array();
    same(&format!("{name}: loss"), &nd::<T>(&loss), &want);
    let up = upstream::<T>(seed, loss.dims());
    let grads = objective(&loss, &up).backward().unwrap();
    let gx = grad_of::<T>(&grads, &xv);
    same(&format!("{name}: grad_input"), &gx, &bwd(x.view(), t.view(), &grad_output(&up)).unwrap());
    let gt = match bwd_t {
        Some(bt) => {
            let gt = grad_of::<T>(&grads, &tv);
            same(&format!("{name}: grad_target"), &gt, &bt(x.view(), t.view(), &grad_output(&up)).unwrap());
            Some(gt)
        }
        None => {
            assert!(grads.get(tv.as_tensor()).is_none(), "{name}: the target got a gradient");
            None
        }
    };
    if fd {
        let (x64, t64) = (f64s(x), f64s(t));
        check_fd(name, seed, &x64, &f64s(&gx), &|x| candle(x, &tensor(&t64)));
        if let Some(gt) = gt {
            check_fd(&format!("{name} target"), seed, &t64, &f64s(&gt), &|t| candle(&tensor(&x64), t));
        }
    }
}

/// `check_pair` against the core loss `infoloss::$loss` and its backwards (named in full) with options `$o`.
macro_rules! check_core_pair {
    ($name:expr, $seed:expr, $x:expr, $t:expr, $candle:expr, $fd:expr;
     $o:expr => $loss:ident, $bwd:ident, $bwd_target:ident) => {
        check_pair::<T>(
            $name,
            $seed,
            $x,
            $t,
            $candle,
            &|x, t| infoloss::$loss(x, t, $o),
            &|x, t, g| infoloss::$bwd(x, t, $o, g),
            Some(&|x, t, g| infoloss::$bwd_target(x, t, $o, g)),
            $fd,
        )
    };
}

/// Checks a loss of a float input and a class-index target; with `fd`, also the gradient against finite
/// differences of the candle forward.
#[allow(clippy::too_many_arguments)]
fn check_index<T: F>(
    name: &str,
    seed: u64,
    x: &ArrayD<T>,
    t: &Tensor,
    candle: &dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
    fwd: &dyn Fn(ArrayViewD<'_, T>) -> CoreResult<Loss<T>>,
    bwd: IndexBwd<'_, T>,
    fd: bool,
) {
    let xv = Var::from_tensor(&tensor(x)).unwrap();
    let loss = candle(xv.as_tensor(), t).unwrap_or_else(|e| panic!("{name}: {e}"));
    same(&format!("{name}: loss"), &nd::<T>(&loss), &fwd(x.view()).unwrap().into_array());
    let up = upstream::<T>(seed, loss.dims());
    let grads = objective(&loss, &up).backward().unwrap();
    let gx = grad_of::<T>(&grads, &xv);
    same(&format!("{name}: grad_input"), &gx, &bwd(x.view(), &grad_output(&up)).unwrap());
    assert!(grads.get(t).is_none(), "{name}: the integer target got a gradient");
    if fd {
        check_fd(name, seed, &f64s(x), &f64s(&gx), &|x| candle(x, t));
    }
}

/// Central differences of `Σ loss·upstream` wrt `x` agree with `grad` (f64).
#[track_caller]
fn check_fd(
    name: &str,
    seed: u64,
    x: &ArrayD<f64>,
    grad: &ArrayD<f64>,
    f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) {
    let out_shape = f(&tensor(x)).unwrap().dims().to_vec();
    fd_objective_agrees(name, x, &upstream::<f64>(seed, &out_shape), grad, |x| f(x).unwrap());
}

// ---------------------------------------------------------------------------------------------------------------
// cross_entropy (class indices) and nll_loss
// ---------------------------------------------------------------------------------------------------------------

fn ce_index<T: F>(fd: bool) {
    // (input shape, target shape); 1-D input = one sample with a 0-d target; 3-D = K-dimensional loss.
    let shapes: [(&[usize], &[usize]); 3] = [(&[4, 5], &[4]), (&[5], &[]), (&[2, 3, 4], &[2, 4])];
    let mut n = 0;
    for (si, (xs, ts)) in shapes.iter().enumerate() {
        let c = if xs.len() == 1 { xs[0] } else { xs[1] };
        for weighted in [false, true] {
            for ls in [0.0, 0.2] {
                for red in REDUCTIONS {
                    for ignore in [false, true] {
                        let seed = 100 + n;
                        n += 1;
                        let x = rand::<T>(seed, xs, -3.0, 3.0);
                        let mut t = classes(seed + 7, ts, c);
                        if ignore && !t.is_empty() {
                            t.as_slice_mut().unwrap()[0] = 3; // this class index is then ignored
                        }
                        let ii = if ignore { 3 } else { -100 };
                        let w = weighted.then(|| rand::<T>(seed + 3, &[c], 0.2, 2.0));
                        let copts = CrossEntropyOptions {
                            weight: w.as_ref().map(tensor),
                            ignore_index: ii,
                            reduction: red,
                            label_smoothing: ls,
                        };
                        let w1 = w.as_ref().map(|w| w.view().into_dimensionality().unwrap());
                        let core = infoloss::CrossEntropyOptions {
                            weight: w1,
                            ignore_index: ii,
                            reduction: red,
                            label_smoothing: ls,
                        };
                        // i64 targets, and u32 targets where every index is non-negative
                        let tt_i64 = index_tensor(&t);
                        let tt_u32 = tt_i64.to_dtype(candle_core::DType::U32).unwrap();
                        for tt in [&tt_i64, &tt_u32] {
                            let name = format!(
                                "cross_entropy {xs:?} w={weighted} ls={ls} {red} ii={ii} {:?}",
                                tt.dtype()
                            );
                            let candle =
                                |x: &Tensor, t: &Tensor| infoloss_candle::cross_entropy(x, t, &copts);
                            check_index::<T>(
                                &name,
                                seed,
                                &x,
                                tt,
                                &candle,
                                &|x| infoloss::cross_entropy(x, t.view(), &core),
                                &|x, g| infoloss::cross_entropy_backward(x, t.view(), &core, g),
                                fd && si != 1,
                            );
                        }
                    }
                }
            }
        }
    }
}

f32_and_f64_tests!(ce_index: cross_entropy_class_indices_f32, cross_entropy_class_indices_f64_and_finite_differences);

fn nll<T: F>(fd: bool) {
    let mut n = 0;
    for (xs, ts) in [(&[6usize, 4][..], &[6usize][..]), (&[2, 4, 3], &[2, 3])] {
        for weighted in [false, true] {
            for red in REDUCTIONS {
                let seed = 500 + n;
                n += 1;
                let logits = rand::<f64>(seed, xs, -3.0, 3.0);
                let x = infoloss::log_softmax(logits.view(), 1).unwrap().mapv(T::from_f64);
                let mut t = classes(seed + 1, ts, 4);
                t.as_slice_mut().unwrap()[1] = -100;
                let w = weighted.then(|| rand::<T>(seed + 2, &[4], 0.2, 2.0));
                let copts = NllOptions { weight: w.as_ref().map(tensor), ignore_index: -100, reduction: red };
                let core = infoloss::NllOptions {
                    weight: w.as_ref().map(|w| w.view().into_dimensionality().unwrap()),
                    ignore_index: -100,
                    reduction: red,
                };
                let name = format!("nll_loss {xs:?} w={weighted} {red}");
                let tt = index_tensor(&t);
                let candle = |x: &Tensor, t: &Tensor| infoloss_candle::nll_loss(x, t, &copts);
                check_index::<T>(
                    &name,
                    seed,
                    &x,
                    &tt,
                    &candle,
                    &|x| infoloss::nll_loss(x, t.view(), &core),
                    &|x, g| infoloss::nll_loss_backward(x, t.view(), &core, g),
                    fd,
                );
            }
        }
    }
}

f32_and_f64_tests!(nll: nll_loss_f32, nll_loss_f64_and_finite_differences);

// ---------------------------------------------------------------------------------------------------------------
// cross_entropy with probabilities
// ---------------------------------------------------------------------------------------------------------------

fn ce_probs<T: F>(fd: bool) {
    let mut n = 0;
    for xs in [&[4usize, 5][..], &[2, 3, 4]] {
        for weighted in [false, true] {
            for ls in [0.0, 0.3] {
                for red in REDUCTIONS {
                    let seed = 900 + n;
                    n += 1;
                    let x = rand::<T>(seed, xs, -3.0, 3.0);
                    let t = probs::<T>(seed + 1, xs);
                    let w = weighted.then(|| rand::<T>(seed + 2, &[xs[1]], 0.2, 2.0));
                    let copts = CrossEntropyOptions {
                        weight: w.as_ref().map(tensor),
                        reduction: red,
                        label_smoothing: ls,
                        ..Default::default()
                    };
                    let core = infoloss::CrossEntropyOptions {
                        weight: w.as_ref().map(|w| w.view().into_dimensionality().unwrap()),
                        reduction: red,
                        label_smoothing: ls,
                        ..Default::default()
                    };
                    let name = format!("cross_entropy_probs {xs:?} w={weighted} ls={ls} {red}");
                    // cross_entropy dispatches float targets to the probability form, as F.cross_entropy
                    for (which, candle) in [
                        (
                            "probs",
                            &(|x: &Tensor, t: &Tensor| infoloss_candle::cross_entropy_probs(x, t, &copts))
                                as &dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
                        ),
                        ("dispatch", &|x: &Tensor, t: &Tensor| infoloss_candle::cross_entropy(x, t, &copts)),
                    ] {
                        let name = format!("{name} ({which})");
                        check_core_pair!(&name, seed, &x, &t, candle, fd; &core =>
                            cross_entropy_probs, cross_entropy_probs_backward, cross_entropy_probs_backward_target);
                    }
                }
            }
        }
    }
}

f32_and_f64_tests!(ce_probs: cross_entropy_probabilities_f32, cross_entropy_probabilities_f64_and_finite_differences);

// ---------------------------------------------------------------------------------------------------------------
// kl_div
// ---------------------------------------------------------------------------------------------------------------

fn kl<T: F>(fd: bool) {
    let mut n = 0;
    // same shapes, and a (4,) target broadcast against a (3, 4) input
    for (xs, ts) in [(&[3usize, 4][..], &[3usize, 4][..]), (&[3, 4], &[4])] {
        for log_target in [false, true] {
            for red in [Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean] {
                let seed = 1300 + n;
                n += 1;
                let x = infoloss::log_softmax(rand::<f64>(seed, xs, -2.0, 2.0).view(), -1)
                    .unwrap()
                    .mapv(T::from_f64);
                let p = probs::<f64>(seed + 1, ts);
                let t = if log_target { p.mapv(f64::ln) } else { p }.mapv(T::from_f64);
                let o = KlDivOptions { reduction: red, log_target };
                let name = format!("kl_div {xs:?}/{ts:?} log_target={log_target} {red}");
                let candle = |x: &Tensor, t: &Tensor| infoloss_candle::kl_div(x, t, &o);
                check_core_pair!(&name, seed, &x, &t, &candle, fd; &o =>
                    kl_div, kl_div_backward, kl_div_backward_target);
            }
        }
    }
}

f32_and_f64_tests!(kl: kl_div_f32, kl_div_f64_and_finite_differences);

// ---------------------------------------------------------------------------------------------------------------
// binary_cross_entropy and binary_cross_entropy_with_logits
// ---------------------------------------------------------------------------------------------------------------

fn bce<T: F>(fd: bool) {
    let mut n = 0;
    for wshape in [None, Some(&[4usize][..]), Some(&[3, 4][..])] {
        for red in REDUCTIONS {
            let seed = 1700 + n;
            n += 1;
            let x = rand::<T>(seed, &[3, 4], 0.05, 0.95);
            let t = rand::<T>(seed + 1, &[3, 4], 0.0, 1.0);
            let w = wshape.map(|s| rand::<T>(seed + 2, s, 0.2, 2.0));
            let copts = BceOptions { weight: w.as_ref().map(tensor), reduction: red };
            let core = infoloss::BceOptions { weight: w.as_ref().map(|w| w.view()), reduction: red };
            let name = format!("binary_cross_entropy weight={wshape:?} {red}");
            let candle = |x: &Tensor, t: &Tensor| infoloss_candle::binary_cross_entropy(x, t, &copts);
            check_core_pair!(&name, seed, &x, &t, &candle, fd; &core =>
                binary_cross_entropy, binary_cross_entropy_backward, binary_cross_entropy_backward_target);
        }
    }
}

f32_and_f64_tests!(bce: binary_cross_entropy_f32, binary_cross_entropy_f64_and_finite_differences);

fn bce_logits<T: F>(fd: bool) {
    let mut n = 0;
    for wshape in [None, Some(&[3usize, 4][..])] {
        for pwshape in [None, Some(&[4usize][..])] {
            for red in REDUCTIONS {
                let seed = 2100 + n;
                n += 1;
                let x = rand::<T>(seed, &[3, 4], -4.0, 4.0);
                let t = rand::<T>(seed + 1, &[3, 4], 0.0, 1.0);
                let w = wshape.map(|s| rand::<T>(seed + 2, s, 0.2, 2.0));
                let pw = pwshape.map(|s| rand::<T>(seed + 3, s, 0.5, 3.0));
                let copts = BceWithLogitsOptions {
                    weight: w.as_ref().map(tensor),
                    pos_weight: pw.as_ref().map(tensor),
                    reduction: red,
                };
                let core = infoloss::BceWithLogitsOptions {
                    weight: w.as_ref().map(|w| w.view()),
                    pos_weight: pw.as_ref().map(|w| w.view()),
                    reduction: red,
                };
                let name = format!(
                    "binary_cross_entropy_with_logits weight={wshape:?} pos_weight={pwshape:?} {red}"
                );
                let candle =
                    |x: &Tensor, t: &Tensor| infoloss_candle::binary_cross_entropy_with_logits(x, t, &copts);
                check_core_pair!(&name, seed, &x, &t, &candle, fd; &core =>
                    binary_cross_entropy_with_logits,
                    binary_cross_entropy_with_logits_backward,
                    binary_cross_entropy_with_logits_backward_target);
            }
        }
    }
}

f32_and_f64_tests!(
    bce_logits:
    binary_cross_entropy_with_logits_f32,
    binary_cross_entropy_with_logits_f64_and_finite_differences
);

// ---------------------------------------------------------------------------------------------------------------
// log_softmax / softmax / logsumexp
// ---------------------------------------------------------------------------------------------------------------

fn softmax_family<T: F>(fd: bool) {
    type Fwd<T> = fn(ArrayViewD<'_, T>, isize) -> CoreResult<ArrayD<T>>;
    let fams: [(&str, CandleUnary, Fwd<T>); 3] = [
        ("log_softmax", infoloss_candle::log_softmax, |x, d| infoloss::log_softmax(x, d)),
        ("softmax", infoloss_candle::softmax, |x, d| infoloss::softmax(x, d)),
        ("logsumexp", infoloss_candle::logsumexp, |x, d| infoloss::logsumexp(x, d)),
    ];
    let mut n = 0;
    for (fname, candle, core) in fams {
        for dim in [0isize, 1, -1] {
            let seed = 2500 + n;
            n += 1;
            let x = rand::<T>(seed, &[3, 4, 5], -3.0, 3.0);
            let xv = Var::from_tensor(&tensor(&x)).unwrap();
            let y = candle(xv.as_tensor(), dim).unwrap();
            let want = core(x.view(), dim).unwrap();
            let name = format!("{fname} dim={dim}");
            same(&format!("{name}: output"), &nd::<T>(&y), &want);
            let up = rand::<T>(seed + 1, y.dims(), -2.0, 2.0);
            let grads = objective(&y, &up).backward().unwrap();
            let gx = grad_of::<T>(&grads, &xv);
            let want_g = match fname {
                "logsumexp" => infoloss::logsumexp_backward(x.view(), up.view(), dim),
                "log_softmax" => infoloss::log_softmax_backward(want.view(), up.view(), dim),
                _ => infoloss::softmax_backward(want.view(), up.view(), dim),
            }
            .unwrap();
            same(&format!("{name}: grad_input"), &gx, &want_g);
            if fd {
                fd_objective_agrees(&name, &f64s(&x), &f64s(&up), &f64s(&gx), |x| candle(x, dim).unwrap());
            }
        }
    }
}

f32_and_f64_tests!(softmax_family: softmax_family_f32, softmax_family_f64_and_finite_differences);

// ---------------------------------------------------------------------------------------------------------------
// Graph behaviour
// ---------------------------------------------------------------------------------------------------------------

/// The loss sits in the middle of a graph: the gradient flows through the op into the ops before it
/// (a matmul), and losses add up in the same backward pass.
#[test]
fn gradient_flows_through_the_op_into_the_graph() {
    let dev = candle_core::Device::Cpu;
    let w = Var::from_tensor(&tensor(&rand::<f64>(1, &[3, 4], -1.0, 1.0))).unwrap();
    let x = tensor(&rand::<f64>(2, &[5, 3], -1.0, 1.0));
    let y = Tensor::new(&[0u32, 3, 1, 2, 3], &dev).unwrap();
    let logits = x.matmul(w.as_tensor()).unwrap();
    let ce = infoloss_candle::cross_entropy(&logits, &y, &CrossEntropyOptions::default()).unwrap();
    let lsm = infoloss_candle::log_softmax(&logits, 1).unwrap();
    let total = (&ce + lsm.sum_all().unwrap()).unwrap();
    let gw = grad_of::<f64>(&total.backward().unwrap(), &w);
    // reference: chain rule by hand with infoloss: dW = xᵀ·(dCE/dlogits + dΣlsm/dlogits)
    let l = nd::<f64>(&logits);
    let t =
        ArrayD::from_shape_vec(IxDyn(&[5]), y.to_vec1::<u32>().unwrap().into_iter().map(i64::from).collect())
            .unwrap();
    let (_, g_ce) = infoloss::cross_entropy_with_grad(l.view(), t.view(), &Default::default()).unwrap();
    let out = infoloss::log_softmax(l.view(), 1).unwrap();
    let g_lsm =
        infoloss::log_softmax_backward(out.view(), ArrayD::<f64>::ones(out.raw_dim()).view(), 1).unwrap();
    let g_logits = tensor(&(&g_ce + &g_lsm));
    let want = nd::<f64>(&x.t().unwrap().matmul(&g_logits).unwrap());
    close("dW", &gw, &want, 1e-14, 1e-15);
}

/// A target that is not a variable gets no gradient (and the input's gradient is unchanged); an input that
/// is not a variable while the target is gets none either.
#[test]
fn only_tracked_arguments_get_gradients() {
    let x = rand::<f64>(3, &[2, 3], -1.0, 1.0);
    let t = probs::<f64>(4, &[2, 3]);
    let xv = Var::from_tensor(&tensor(&x)).unwrap();
    let tc = tensor(&t);
    let loss = infoloss_candle::kl_div(xv.as_tensor(), &tc, &KlDivOptions::default()).unwrap();
    let grads = loss.backward().unwrap();
    assert!(grads.get(xv.as_tensor()).is_some());
    assert!(grads.get(&tc).is_none(), "a constant target gets no gradient");

    let tv = Var::from_tensor(&tensor(&t)).unwrap();
    let xc = tensor(&x);
    let loss = infoloss_candle::kl_div(&xc, tv.as_tensor(), &KlDivOptions::default()).unwrap();
    let grads = loss.backward().unwrap();
    let want =
        infoloss::kl_div_backward_target(x.view(), t.view(), &KlDivOptions::default(), &GradOutput::one())
            .unwrap();
    same("kl_div target only", &grad_of::<f64>(&grads, &tv), &want);
    assert!(grads.get(&xc).is_none(), "a constant input gets no gradient");
}

// ---------------------------------------------------------------------------------------------------------------
// Half precision: the same exact agreement with infoloss (which computes in f32 and rounds once)
// ---------------------------------------------------------------------------------------------------------------

fn all_losses<T: F>() {
    ce_index::<T>(false);
    nll::<T>(false);
    ce_probs::<T>(false);
    kl::<T>(false);
    bce::<T>(false);
    bce_logits::<T>(false);
    softmax_family::<T>(false);
}

#[test]
fn every_loss_in_f16() {
    all_losses::<half::f16>();
}

#[test]
fn every_loss_in_bf16() {
    all_losses::<half::bf16>();
}

/// The half-precision ops really run in half precision: the result is the f32 computation rounded once.
#[test]
fn f16_result_is_the_rounded_f32_result() {
    let x32 = rand::<f32>(7, &[4, 6], -3.0, 3.0);
    let x16 = x32.mapv(half::f16::from_f32);
    let t = index_tensor(&classes(8, &[4], 6));
    let l16 = infoloss_candle::cross_entropy(&tensor(&x16), &t, &CrossEntropyOptions::default()).unwrap();
    assert_eq!(l16.dtype(), candle_core::DType::F16);
    let l32 =
        infoloss_candle::cross_entropy(&tensor(&x16.mapv(f32::from)), &t, &CrossEntropyOptions::default())
            .unwrap();
    assert_eq!(l16.to_scalar::<half::f16>().unwrap(), half::f16::from_f32(l32.to_scalar::<f32>().unwrap()));
}

/// The same tensor on both sides of a loss: both gradients reach it and add up (and reading one storage twice
/// does not deadlock).
#[test]
fn same_tensor_as_input_and_target() {
    let x = rand::<f64>(31, &[3, 4], -2.0, 0.0);
    let o = KlDivOptions { reduction: Reduction::Sum, log_target: true };
    let xv = Var::from_tensor(&tensor(&x)).unwrap();
    let loss = infoloss_candle::kl_div(xv.as_tensor(), xv.as_tensor(), &o).unwrap();
    assert_eq!(loss.to_scalar::<f64>().unwrap(), 0.0);
    let g = grad_of::<f64>(&loss.backward().unwrap(), &xv);
    let one = GradOutput::one();
    let gi = infoloss::kl_div_backward(x.view(), x.view(), &o, &one).unwrap();
    let gt = infoloss::kl_div_backward_target(x.view(), x.view(), &o, &one).unwrap();
    same("kl_div(x, x) gradient", &g, &(&gi + &gt));
    // ∂/∂input = −exp(t) and ∂/∂target = exp(t)·(t − x + 1): at t = x they cancel
    assert!(g.iter().all(|v| v.abs() < 1e-15));
}
