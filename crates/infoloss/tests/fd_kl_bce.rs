//! Gradient checks and PyTorch-verified values for `kl_div`, `binary_cross_entropy` and
//! `binary_cross_entropy_with_logits`.
//!
//! * Central finite differences in f64 for every gradient (input and target), every reduction and
//!   option (log_target, weights, pos_weight, broadcasting, batchmean), with a random upstream gradient
//!   array for `Reduction::None` and a random scalar otherwise.
//! * The numbers of `pytorch-semantics.md` §4–§6 and the seed acceptance cases, each with the torch 2.15
//!   snippet that produced it.
//! * NaN/inf positions, error messages, empty inputs, f16/bf16.

use infoloss::{
    BceOptions, BceWithLogitsOptions, DType, Element, GradOutput, KlDivOptions, Loss, Real, Reduction,
    binary_cross_entropy, binary_cross_entropy_backward, binary_cross_entropy_backward_target,
    binary_cross_entropy_with_grad, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward, binary_cross_entropy_with_logits_backward_target,
    binary_cross_entropy_with_logits_with_grad, kl_div, kl_div_backward, kl_div_backward_target,
    kl_div_with_grad,
};
use ndarray::{ArrayD, IxDyn, array};

use crate::support::Rng;

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];
const KL_REDUCTIONS: [Reduction; 4] =
    [Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean];

/// The upstream gradient used by a check: a random array of the output shape for `None`, a random
/// scalar otherwise. The scalar objective is `Σ G ⊙ loss` (or `g · loss`), whose gradient is exactly
/// what the backward functions return for that `grad_output`.
enum Up {
    Scalar(f64),
    Array(ArrayD<f64>),
}

impl Up {
    fn new(rng: &mut Rng, reduction: Reduction, out_shape: &[usize]) -> Up {
        if reduction == Reduction::None {
            Up::Array(rng.uniform(out_shape, -1.5, 1.5))
        } else {
            Up::Scalar(0.3 + rng.unit())
        }
    }

    fn grad_output(&self) -> GradOutput<'_, f64> {
        match self {
            Up::Scalar(g) => GradOutput::Scalar(*g),
            Up::Array(a) => GradOutput::Array(a.view()),
        }
    }

    fn objective(&self, loss: Loss<f64>) -> f64 {
        match (self, loss) {
            (Up::Scalar(g), Loss::Scalar(l)) => g * l,
            (Up::Array(g), Loss::Elementwise(l)) => {
                assert_eq!(g.shape(), l.shape());
                g.iter().zip(l.iter()).map(|(a, b)| a * b).sum()
            }
            _ => panic!("reduction and upstream gradient disagree"),
        }
    }
}

/// Central finite difference of `f` at `x`, element by element.
fn fd(f: impl Fn(&ArrayD<f64>) -> f64, x: &ArrayD<f64>, h: f64) -> ArrayD<f64> {
    let mut out = ArrayD::zeros(x.raw_dim());
    let mut xp = x.clone();
    for (i, o) in out.iter_mut().enumerate() {
        let x0 = x.as_slice().unwrap()[i];
        xp.as_slice_mut().unwrap()[i] = x0 + h;
        let fp = f(&xp);
        xp.as_slice_mut().unwrap()[i] = x0 - h;
        let fm = f(&xp);
        xp.as_slice_mut().unwrap()[i] = x0;
        *o = (fp - fm) / (2.0 * h);
    }
    out
}

/// Elementwise closeness with NaN and ±inf required in the same positions.
fn assert_close<T: Element>(actual: &ArrayD<T>, expected: &ArrayD<f64>, rtol: f64, atol: f64, ctx: &str) {
    assert_eq!(actual.shape(), expected.shape(), "{ctx}: shape");
    for (i, (a, &e)) in actual.iter().zip(expected.iter()).enumerate() {
        let a = a.to_acc().f64();
        let ok = if e.is_nan() {
            a.is_nan()
        } else if e.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= atol + rtol * e.abs()
        };
        assert!(ok, "{ctx}: element {i}: got {a:e}, expected {e:e}");
    }
}

fn assert_vals<T: Element>(actual: &ArrayD<T>, expected: &[f64], rtol: f64, atol: f64, ctx: &str) {
    let e = ArrayD::from_shape_vec(actual.raw_dim(), expected.to_vec()).unwrap();
    assert_close(actual, &e, rtol, atol, ctx);
}

/// FD tolerance: step 1e-6 in f64 gives ~1e-9 relative accuracy on smooth functions.
const H: f64 = 1e-6;
const FD_RTOL: f64 = 1e-6;
const FD_ATOL: f64 = 1e-8;

fn to<T: Element>(a: &ArrayD<f64>) -> ArrayD<T> {
    a.mapv(|v| T::from_acc(T::Acc::c(v)))
}

fn back(a: &ArrayD<impl Element>) -> ArrayD<f64> {
    a.mapv(|v| v.to_acc().f64())
}

// ------------------------------------------------------------------------------------------------
// kl_div: finite differences
// ------------------------------------------------------------------------------------------------

fn check_kl_fd(rng: &mut Rng, x_shape: &[usize], t_shape: &[usize], log_target: bool, reduction: Reduction) {
    let x = rng.uniform(x_shape, -3.0, -0.1);
    let t = if log_target { rng.uniform(t_shape, -3.0, 0.5) } else { rng.uniform(t_shape, 0.05, 1.0) };
    let opts = KlDivOptions { reduction, log_target };
    let out_shape = kl_div(x.view(), t.view(), &KlDivOptions { reduction: Reduction::None, log_target })
        .unwrap()
        .into_array()
        .shape()
        .to_vec();
    let up = Up::new(rng, reduction, &out_shape);
    let ctx = format!("kl_div x{x_shape:?} t{t_shape:?} log_target={log_target} {reduction}");

    let gx = kl_div_backward(x.view(), t.view(), &opts, &up.grad_output()).unwrap();
    let num_x = fd(|xp| up.objective(kl_div(xp.view(), t.view(), &opts).unwrap()), &x, H);
    assert_close(&gx, &num_x, FD_RTOL, FD_ATOL, &format!("{ctx} ∂input"));

    let gt = kl_div_backward_target(x.view(), t.view(), &opts, &up.grad_output()).unwrap();
    let num_t = fd(|tp| up.objective(kl_div(x.view(), tp.view(), &opts).unwrap()), &t, H);
    assert_close(&gt, &num_t, FD_RTOL, FD_ATOL, &format!("{ctx} ∂target"));

    // the fused call equals forward + backward with upstream 1
    let (l, g1) = kl_div_with_grad(x.view(), t.view(), &opts).unwrap();
    assert_eq!(l, kl_div(x.view(), t.view(), &opts).unwrap(), "{ctx}");
    assert_eq!(g1, kl_div_backward(x.view(), t.view(), &opts, &GradOutput::one()).unwrap(), "{ctx}");
}

#[test]
fn fd_kl_div_every_reduction_and_log_target() {
    let mut rng = Rng(1);
    for log_target in [false, true] {
        for reduction in KL_REDUCTIONS {
            check_kl_fd(&mut rng, &[3, 4], &[3, 4], log_target, reduction);
            check_kl_fd(&mut rng, &[2, 3, 2], &[2, 3, 2], log_target, reduction);
        }
    }
}

#[test]
fn fd_kl_div_broadcasting_sums_gradients_back() {
    let mut rng = Rng(2);
    let pairs: [(&[usize], &[usize]); 6] = [
        (&[3, 4], &[4]),
        (&[3, 1], &[3, 4]),
        (&[4], &[2, 3, 4]),
        (&[], &[2, 3]),
        (&[2, 1, 4], &[3, 1]),
        (&[2, 3], &[]),
    ];
    for (xs, ts) in pairs {
        for log_target in [false, true] {
            for reduction in KL_REDUCTIONS {
                check_kl_fd(&mut rng, xs, ts, log_target, reduction);
            }
        }
    }
}

#[test]
fn kl_div_batchmean_divides_by_input_dim0_not_the_broadcast_batch() {
    // torch: i = torch.tensor([-1., -2., -3.], dtype=torch.float64); t = torch.full((2, 3), 0.5, dtype=torch.float64)
    //        F.kl_div(i, t, reduction='batchmean') == F.kl_div(i, t, reduction='sum') / 3   (input.size(0) = 3)
    let x = array![-1.0f64, -2.0, -3.0];
    let t = ArrayD::from_elem(IxDyn(&[2, 3]), 0.5f64);
    let bm = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let sum = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let b = kl_div(x.view(), t.view(), &bm).unwrap().scalar().unwrap();
    let s = kl_div(x.view(), t.view(), &sum).unwrap().scalar().unwrap();
    assert_eq!(b, s / 3.0);
    assert!((s - (6.0 * 0.5 * 0.5f64.ln() + 6.0)).abs() < 1e-14);
    // 0-d input: no division. torch: F.kl_div(torch.tensor(-1.), t, reduction='batchmean') == sum
    let x0 = ndarray::arr0(-1.0f64);
    assert_eq!(kl_div(x0.view(), t.view(), &bm).unwrap(), kl_div(x0.view(), t.view(), &sum).unwrap());
}

// ------------------------------------------------------------------------------------------------
// kl_div: PyTorch values (§4)
// ------------------------------------------------------------------------------------------------

#[test]
fn kl_div_spec_gradients_nan_at_target_zero() {
    // x = torch.tensor([-1.2, -0.3, -2.], dtype=dt, requires_grad=True)
    // t = torch.tensor([0.2, 0.8, 0.], dtype=dt, requires_grad=True)
    // F.kl_div(x, t, reduction=red).backward()
    //   float64 sum:  loss -0.020402423538187886, t.grad [0.5905620875658997, 1.0768564486857903, nan],
    //                 x.grad [-0.2, -0.8, -0.0]
    //   float64 mean / batchmean: loss -0.006800807846062629,
    //                 t.grad [0.19685402918863326, 0.35895214956193006, nan], x.grad [-0.0666…67, -0.2666…67, -0.0]
    //   float32 sum:  loss -0.020402386784553528, t.grad [0.590562105178833, 1.0768564939498901, nan]
    let x = array![-1.2f64, -0.3, -2.0].into_dyn();
    let t = array![0.2f64, 0.8, 0.0].into_dyn();
    let sum = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let one = GradOutput::one();
    let l = kl_div(x.view(), t.view(), &sum).unwrap().scalar().unwrap();
    assert!((l - -0.020402423538187886).abs() < 1e-17);
    let gt = kl_div_backward_target(x.view(), t.view(), &sum, &one).unwrap();
    assert_vals(&gt, &[0.5905620875658997, 1.0768564486857903, f64::NAN], 1e-15, 0.0, "∂t f64");
    let gx = kl_div_backward(x.view(), t.view(), &sum, &one).unwrap();
    assert_eq!(gx, array![-0.2, -0.8, -0.0].into_dyn());
    assert!(gx[2].is_sign_negative(), "−0 as torch");
    for red in [Reduction::Mean, Reduction::BatchMean] {
        let o = KlDivOptions { reduction: red, log_target: false };
        let l = kl_div(x.view(), t.view(), &o).unwrap().scalar().unwrap();
        assert!((l - -0.006800807846062629).abs() < 1e-17, "{red}");
        let gt = kl_div_backward_target(x.view(), t.view(), &o, &one).unwrap();
        assert_vals(&gt, &[0.19685402918863326, 0.35895214956193006, f64::NAN], 1e-15, 0.0, "∂t mean");
        let gx = kl_div_backward(x.view(), t.view(), &o, &one).unwrap();
        assert_vals(&gx, &[-0.06666666666666667, -0.26666666666666666, -0.0], 1e-15, 0.0, "∂x mean");
    }
    let (x32, t32) = (to::<f32>(&x), to::<f32>(&t));
    let l = kl_div(x32.view(), t32.view(), &sum).unwrap().scalar().unwrap();
    assert!((l as f64 - -0.020402386784553528).abs() < 1e-9);
    let gt = kl_div_backward_target(x32.view(), t32.view(), &sum, &GradOutput::one()).unwrap();
    assert_vals(&gt, &[0.590562105178833, 1.0768564939498901, f64::NAN], 1e-6, 1e-7, "∂t f32");
}

#[test]
fn kl_div_log_target_spec_gradients() {
    // x = torch.tensor([-1., -2.], dtype=dt, requires_grad=True)
    // t = torch.tensor([-0.5, -1.5], dtype=dt, requires_grad=True)
    // F.kl_div(x, t, reduction='sum', log_target=True).backward()
    //   float64: loss 0.4148304099305316, t.grad [0.9097959895689501, 0.33469524022264474],
    //            x.grad [-0.6065306597126334, -0.22313016014842982]
    //   float32: loss 0.41483041644096375, t.grad [0.9097959995269775, 0.3346952497959137]
    let x = array![-1.0f64, -2.0].into_dyn();
    let t = array![-0.5f64, -1.5].into_dyn();
    let o = KlDivOptions { reduction: Reduction::Sum, log_target: true };
    let one = GradOutput::one();
    let l = kl_div(x.view(), t.view(), &o).unwrap().scalar().unwrap();
    assert!((l - 0.4148304099305316).abs() < 1e-16);
    let gt = kl_div_backward_target(x.view(), t.view(), &o, &one).unwrap();
    assert_vals(&gt, &[0.9097959895689501, 0.33469524022264474], 1e-15, 0.0, "∂t");
    let gx = kl_div_backward(x.view(), t.view(), &o, &one).unwrap();
    assert_vals(&gx, &[-0.6065306597126334, -0.22313016014842982], 1e-15, 0.0, "∂x");
    let (x32, t32) = (to::<f32>(&x), to::<f32>(&t));
    let l = kl_div(x32.view(), t32.view(), &o).unwrap().scalar().unwrap();
    assert!((l as f64 - 0.41483041644096375).abs() < 1e-7);
    let gt = kl_div_backward_target(x32.view(), t32.view(), &o, &GradOutput::one()).unwrap();
    assert_vals(&gt, &[0.9097959995269775, 0.3346952497959137], 1e-6, 1e-7, "∂t f32");
}

#[test]
fn kl_div_nan_and_inf_positions_match_torch() {
    // inf, nan = float('inf'), float('nan')
    // x = torch.tensor([-inf, -1., 0., inf, -1., -1., -2., -1.], dtype=torch.float64, requires_grad=True)
    // t = torch.tensor([0., 0., 0., 0., -0.5, inf, nan, 1e-30], dtype=torch.float64, requires_grad=True)
    // l = F.kl_div(x, t, reduction='none'); l.backward(torch.ones_like(l))
    let x = array![f64::NEG_INFINITY, -1.0, 0.0, f64::INFINITY, -1.0, -1.0, -2.0, -1.0].into_dyn();
    let t = array![0.0, 0.0, 0.0, 0.0, -0.5, f64::INFINITY, f64::NAN, 1e-30].into_dyn();
    let o = KlDivOptions { reduction: Reduction::None, log_target: false };
    let one = GradOutput::one();
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let l = kl_div(x.view(), t.view(), &o).unwrap().into_array();
    assert_vals(&l, &[nan, 0.0, 0.0, nan, nan, inf, nan, -6.807755278982137e-29], 1e-15, 0.0, "loss");
    let gx = kl_div_backward(x.view(), t.view(), &o, &one).unwrap();
    assert_vals(&gx, &[-0.0, -0.0, -0.0, -0.0, 0.5, -inf, nan, -1e-30], 1e-15, 0.0, "∂x");
    let gt = kl_div_backward_target(x.view(), t.view(), &o, &one).unwrap();
    assert_vals(&gt, &[nan, nan, nan, nan, nan, nan, nan, -67.07755278982137], 1e-15, 0.0, "∂t");

    // x = torch.tensor([-1., 0., -1., -1.], ...); t = torch.tensor([-inf, inf, nan, -200.], ...)
    // l = F.kl_div(x, t, reduction='none', log_target=True); l.backward(torch.ones_like(l))
    //   l [nan, inf, nan, -2.7539540882061076e-85], x.grad [-0.0, -inf, nan, -1.3838965267367376e-87],
    //   t.grad [nan, inf, nan, -2.74011512293874e-85]
    let x = array![-1.0, 0.0, -1.0, -1.0].into_dyn();
    let t = array![f64::NEG_INFINITY, inf, nan, -200.0].into_dyn();
    let o = KlDivOptions { reduction: Reduction::None, log_target: true };
    let l = kl_div(x.view(), t.view(), &o).unwrap().into_array();
    assert_vals(&l, &[nan, inf, nan, -2.7539540882061076e-85], 1e-14, 0.0, "loss lt");
    let gx = kl_div_backward(x.view(), t.view(), &o, &one).unwrap();
    assert_vals(&gx, &[-0.0, -inf, nan, -1.3838965267367376e-87], 1e-14, 0.0, "∂x lt");
    let gt = kl_div_backward_target(x.view(), t.view(), &o, &one).unwrap();
    assert_vals(&gt, &[nan, inf, nan, -2.74011512293874e-85], 1e-14, 0.0, "∂t lt");
}

#[test]
fn kl_div_seed_distillation_case() {
    // l = torch.tensor([[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]], dtype=dt)
    // q = torch.tensor([[0.3, 0.4, 0.3], [0.1, 0.5, 0.4]], dtype=dt)
    // F.kl_div(torch.log(F.softmax(l, dim=1)), q, reduction='batchmean')
    //   float64 0.057796191309196596, float32 0.05779624730348587
    let l = array![[0.5f64, 1.0, 0.8], [0.2, 0.4, 0.6]];
    let q = array![[0.3f64, 0.4, 0.3], [0.1, 0.5, 0.4]];
    // log_softmax over dim 1, written out
    let mut logp = l.clone();
    for mut row in logp.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        row.mapv_inplace(|v| (v - m) - lse);
    }
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let v = kl_div(logp.view(), q.view(), &o).unwrap().scalar().unwrap();
    assert!((v - 0.057796191309196596).abs() < 1e-16, "{v}");
    // float32: torch's own log-probabilities, torch.log(F.softmax(l, dim=1)).tolist()
    let logp32 = array![
        [-1.385939359664917f64, -0.885939359664917, -1.0859394073486328],
        [-1.3119014501571655, -1.1119015216827393, -0.9119014739990234]
    ]
    .mapv(|v| v as f32); // exact: these are float32 values
    let v32 = kl_div(logp32.view(), q.mapv(|v| v as f32).view(), &o).unwrap().scalar().unwrap();
    assert!((v32 as f64 - 0.05779624730348587).abs() < 1e-6 * 0.0578, "{v32}");
}

// ------------------------------------------------------------------------------------------------
// binary_cross_entropy
// ------------------------------------------------------------------------------------------------

#[test]
fn fd_bce_every_reduction_and_weight() {
    let mut rng = Rng(3);
    let weights: [Option<&[usize]>; 5] = [None, Some(&[3, 4]), Some(&[4]), Some(&[3, 1]), Some(&[])];
    for reduction in REDUCTIONS {
        for wshape in weights {
            let x = rng.uniform(&[3, 4], 0.02, 0.98);
            let t = rng.uniform(&[3, 4], 0.01, 0.99);
            let w = wshape.map(|s| rng.uniform(s, 0.2, 2.0));
            let opts = BceOptions { weight: w.as_ref().map(|w| w.view()), reduction };
            let up = Up::new(&mut rng, reduction, &[3, 4]);
            let ctx = format!("bce {reduction} weight {wshape:?}");

            let gx = binary_cross_entropy_backward(x.view(), t.view(), &opts, &up.grad_output()).unwrap();
            let num = fd(|xp| up.objective(binary_cross_entropy(xp.view(), t.view(), &opts).unwrap()), &x, H);
            assert_close(&gx, &num, FD_RTOL, FD_ATOL, &format!("{ctx} ∂input"));

            let gt =
                binary_cross_entropy_backward_target(x.view(), t.view(), &opts, &up.grad_output()).unwrap();
            let num = fd(|tp| up.objective(binary_cross_entropy(x.view(), tp.view(), &opts).unwrap()), &t, H);
            assert_close(&gt, &num, FD_RTOL, FD_ATOL, &format!("{ctx} ∂target"));

            let (l, g1) = binary_cross_entropy_with_grad(x.view(), t.view(), &opts).unwrap();
            assert_eq!(l, binary_cross_entropy(x.view(), t.view(), &opts).unwrap(), "{ctx}");
            assert_eq!(
                g1,
                binary_cross_entropy_backward(x.view(), t.view(), &opts, &GradOutput::one()).unwrap()
            );
        }
    }
}

#[test]
fn bce_spec_clamps_and_epsilon() {
    // x = torch.tensor([0., 1., 0., 1e-8, 1e-30, 1e-50], dtype=dt, requires_grad=True)
    // t = torch.tensor([1., 0., 0., 0., 1., 0.3], dtype=dt, requires_grad=True)
    // l = F.binary_cross_entropy(x, t, reduction='none'); l.backward(torch.ones_like(l))
    let x = array![0.0f64, 1.0, 0.0, 1e-8, 1e-30, 1e-50].into_dyn();
    let t = array![1.0f64, 0.0, 0.0, 0.0, 1.0, 0.3].into_dyn();
    let o = BceOptions { reduction: Reduction::None, ..Default::default() };
    let one = GradOutput::one();
    let inf = f64::INFINITY;
    // float64: l [100.0, 100.0, 0.0, 1.0000000050000001e-08, 69.07755278982137, 30.0]
    //          x.grad [-1000000003995.8029, 1000000003995.8029, 0.0, 1.0000000100000002,
    //                  -1000000003995.8029, -300000001198.74084]
    //          t.grad [inf, -inf, inf, 18.420680733952366, 69.07755278982137, 115.12925464970229]
    let l = binary_cross_entropy(x.view(), t.view(), &o).unwrap().into_array();
    assert_vals(
        &l,
        &[100.0, 100.0, 0.0, 1.0000000050000001e-08, 69.07755278982137, 30.0],
        1e-15,
        0.0,
        "loss",
    );
    let gx = binary_cross_entropy_backward(x.view(), t.view(), &o, &one).unwrap();
    assert_eq!(gx[0], -1000000003995.8029, "−1/(float)1e-12, not −1e12");
    assert_vals(
        &gx,
        &[
            -1000000003995.8029,
            1000000003995.8029,
            0.0,
            1.0000000100000002,
            -1000000003995.8029,
            -300000001198.74084,
        ],
        1e-15,
        0.0,
        "∂x",
    );
    let gt = binary_cross_entropy_backward_target(x.view(), t.view(), &o, &one).unwrap();
    assert_vals(
        &gt,
        &[inf, -inf, inf, 18.420680733952366, 69.07755278982137, 115.12925464970229],
        1e-15,
        0.0,
        "∂t",
    );

    // float32: l [100.0, 100.0, 0.0, 9.99999993922529e-09, 69.07755279541016, 30.000001907348633]
    //          x.grad [-999999995904.0, 999999995904.0, 0.0, 1.0, -999999995904.0, -300000018432.0]
    //          t.grad [inf, -inf, inf, 18.42068099975586, 69.07755279541016, inf]   (1e-50 is 0 in float32)
    let (x32, t32) = (to::<f32>(&x), to::<f32>(&t));
    let one32 = GradOutput::one();
    let l = binary_cross_entropy(x32.view(), t32.view(), &o_f32(Reduction::None)).unwrap().into_array();
    assert_vals(
        &l,
        &[100.0, 100.0, 0.0, 9.99999993922529e-09, 69.07755279541016, 30.000001907348633],
        1e-6,
        1e-7,
        "f32",
    );
    let gx = binary_cross_entropy_backward(x32.view(), t32.view(), &o_f32(Reduction::None), &one32).unwrap();
    assert_vals(
        &gx,
        &[-999999995904.0, 999999995904.0, 0.0, 1.0, -999999995904.0, -300000018432.0],
        1e-6,
        0.0,
        "f32 ∂x",
    );
    let gt = binary_cross_entropy_backward_target(x32.view(), t32.view(), &o_f32(Reduction::None), &one32)
        .unwrap();
    assert_vals(&gt, &[inf, -inf, inf, 18.42068099975586, 69.07755279541016, inf], 1e-6, 0.0, "f32 ∂t");
}

fn o_f32(reduction: Reduction) -> BceOptions<'static, f32> {
    BceOptions { weight: None, reduction }
}

#[test]
fn bce_seed_cases() {
    // x = torch.tensor([[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]], dtype=dt); t = torch.tensor([[0., 1., 0.], [0., 0., 1.]], dtype=dt)
    // w = torch.tensor([[0.1, 0.9, 0.1], [0.1, 0.1, 0.9]], dtype=dt)
    // F.binary_cross_entropy(x, t, weight=w): float64 0.12723308136613606, float32 0.12723307311534882
    // F.binary_cross_entropy(x, t):           float64 0.5912299819733728,  float32 0.5912299752235413
    let x = array![[0.5f64, 1.0, 0.8], [0.2, 0.4, 0.6]];
    let t = array![[0.0f64, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let w = array![[0.1f64, 0.9, 0.1], [0.1, 0.1, 0.9]].into_dyn();
    let ow = BceOptions { weight: Some(w.view()), reduction: Reduction::Mean };
    let v = binary_cross_entropy(x.view(), t.view(), &ow).unwrap().scalar().unwrap();
    assert!((v - 0.12723308136613606).abs() < 1e-16, "{v}");
    let v = binary_cross_entropy(x.view(), t.view(), &BceOptions::default()).unwrap().scalar().unwrap();
    assert!((v - 0.5912299819733728).abs() < 1e-15, "{v}");
    let (x32, t32, w32) = (x.mapv(|v| v as f32), t.mapv(|v| v as f32), w.mapv(|v| v as f32));
    let ow32 = BceOptions { weight: Some(w32.view()), reduction: Reduction::Mean };
    let v = binary_cross_entropy(x32.view(), t32.view(), &ow32).unwrap().scalar().unwrap();
    assert!((v as f64 - 0.12723307311534882).abs() < 1e-7 * 0.13);
    let v = binary_cross_entropy(x32.view(), t32.view(), &BceOptions::default()).unwrap().scalar().unwrap();
    assert!((v as f64 - 0.5912299752235413).abs() < 1e-7 * 0.6);
}

#[test]
fn bce_rejects_values_outside_unit_interval_naming_index_and_value() {
    // torch: F.binary_cross_entropy(torch.tensor([0.5, nan]), torch.tensor([0.5, 0.3]))
    //   RuntimeError: all elements of input should be between 0 and 1   (NaN fails the check too)
    // torch: F.binary_cross_entropy(torch.tensor([0.5, 0.3]), torch.tensor([nan, 0.3]))  (and 1.5, -0.1)
    //   RuntimeError: all elements of target should be between 0 and 1
    // torch: F.binary_cross_entropy(torch.tensor([0.5, 2.0]), torch.tensor([3.0, 0.3]))
    //   RuntimeError: all elements of target should be between 0 and 1   (first bad element wins)
    let ok = array![[0.5f64, 0.3], [0.2, 0.1]];
    let mut bad = ok.clone();
    bad[[1, 0]] = f64::NAN;
    let e = binary_cross_entropy(bad.view(), ok.view(), &BceOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "binary_cross_entropy: input value NaN at [1, 0] is outside [0, 1] (all elements of input should be between 0 and 1)"
    );
    bad[[1, 0]] = 1.5;
    let e = binary_cross_entropy_backward(bad.view(), ok.view(), &BceOptions::default(), &GradOutput::one())
        .unwrap_err();
    assert!(e.to_string().contains("input value 1.5 at [1, 0]"), "{e}");
    for (v, s) in [(f64::NAN, "NaN"), (1.5, "1.5"), (-0.1, "-0.1")] {
        let mut t = ok.clone();
        t[[0, 1]] = v;
        let e = binary_cross_entropy(ok.view(), t.view(), &BceOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "binary_cross_entropy: target value {s} at [0, 1] is outside [0, 1] \
                 (all elements of target should be between 0 and 1)"
            )
        );
        assert!(
            binary_cross_entropy_backward_target(
                ok.view(),
                t.view(),
                &BceOptions::default(),
                &GradOutput::one()
            )
            .is_err()
        );
    }
    let x = array![0.5f64, 2.0];
    let t = array![3.0f64, 0.3];
    let e = binary_cross_entropy(x.view(), t.view(), &BceOptions::default()).unwrap_err();
    assert!(e.to_string().contains("target value 3 at [0]"), "{e}");
}

#[test]
fn bce_shape_errors_name_both_shapes() {
    // torch: F.binary_cross_entropy(torch.rand(3, 2), torch.rand(3, 1))
    //   ValueError: Using a target size (torch.Size([3, 1])) that is different to the input size (torch.Size([3, 2])) ...
    let x = ndarray::Array2::<f32>::from_elem((3, 2), 0.5);
    let t = ndarray::Array2::<f32>::from_elem((3, 1), 0.5);
    let e = binary_cross_entropy(x.view(), t.view(), &BceOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "binary_cross_entropy: input shape [3, 2] and target shape [3, 1] must be equal"
    );
    // a weight that would enlarge the output, or does not fit
    let w = ArrayD::<f32>::ones(IxDyn(&[2, 3, 2]));
    let o = BceOptions { weight: Some(w.view()), reduction: Reduction::Mean };
    let e = binary_cross_entropy(x.view(), x.view(), &o).unwrap_err();
    assert!(e.to_string().contains("weight shape [2, 3, 2] and input shape [3, 2]"), "{e}");
    let w = ArrayD::<f32>::ones(IxDyn(&[3]));
    let o = BceOptions { weight: Some(w.view()), reduction: Reduction::Mean };
    let e = binary_cross_entropy_with_grad(x.view(), x.view(), &o).unwrap_err();
    assert!(e.to_string().contains("weight shape [3] and input shape [3, 2]"), "{e}");
    // batchmean is only for kl_div
    let o = BceOptions { weight: None, reduction: Reduction::BatchMean };
    let e = binary_cross_entropy(x.view(), x.view(), &o).unwrap_err();
    assert!(e.to_string().contains("batchmean is not a valid value for reduction"), "{e}");
}

// ------------------------------------------------------------------------------------------------
// binary_cross_entropy_with_logits
// ------------------------------------------------------------------------------------------------

#[test]
fn fd_bce_with_logits_every_reduction_weight_and_pos_weight() {
    let mut rng = Rng(4);
    let weights: [Option<&[usize]>; 3] = [None, Some(&[3, 4]), Some(&[4])];
    let pos_weights: [Option<&[usize]>; 5] = [None, Some(&[4]), Some(&[3, 1]), Some(&[3, 4]), Some(&[1])];
    for reduction in REDUCTIONS {
        for wshape in weights {
            for pshape in pos_weights {
                let x = rng.uniform(&[3, 4], -4.0, 4.0);
                // soft labels, some outside [0, 1]: not range-checked
                let t = rng.uniform(&[3, 4], -0.3, 1.3);
                let w = wshape.map(|s| rng.uniform(s, 0.2, 2.0));
                let p = pshape.map(|s| rng.uniform(s, 0.1, 4.0));
                let opts = BceWithLogitsOptions {
                    weight: w.as_ref().map(|w| w.view()),
                    pos_weight: p.as_ref().map(|p| p.view()),
                    reduction,
                };
                let up = Up::new(&mut rng, reduction, &[3, 4]);
                let ctx = format!("bce_with_logits {reduction} weight {wshape:?} pos_weight {pshape:?}");
                let f = |xp: &ArrayD<f64>, tp: &ArrayD<f64>| {
                    up.objective(binary_cross_entropy_with_logits(xp.view(), tp.view(), &opts).unwrap())
                };

                let gx =
                    binary_cross_entropy_with_logits_backward(x.view(), t.view(), &opts, &up.grad_output())
                        .unwrap();
                assert_close(&gx, &fd(|xp| f(xp, &t), &x, H), FD_RTOL, FD_ATOL, &format!("{ctx} ∂input"));
                let gt = binary_cross_entropy_with_logits_backward_target(
                    x.view(),
                    t.view(),
                    &opts,
                    &up.grad_output(),
                )
                .unwrap();
                assert_close(&gt, &fd(|tp| f(&x, tp), &t, H), FD_RTOL, FD_ATOL, &format!("{ctx} ∂target"));

                let (l, g1) = binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), &opts).unwrap();
                assert_eq!(l, binary_cross_entropy_with_logits(x.view(), t.view(), &opts).unwrap(), "{ctx}");
                assert_eq!(
                    g1,
                    binary_cross_entropy_with_logits_backward(x.view(), t.view(), &opts, &GradOutput::one())
                        .unwrap()
                );
            }
        }
    }
}

#[test]
fn bce_with_logits_spec_pos_weight_gradient() {
    // z = torch.tensor([-200., -3., 0., 2.5, 200.], dtype=torch.float64, requires_grad=True)
    // y = torch.tensor([1., .3, 1., 0., 0.], dtype=torch.float64)
    // F.binary_cross_entropy_with_logits(z, y, pos_weight=torch.tensor(3., dtype=torch.float64),
    //                                    reduction='sum').backward()
    //   z.grad [-3.0, -0.8241186029158931, -1.5, 0.9241418199787566, 1.0]
    let z = array![-200.0f64, -3.0, 0.0, 2.5, 200.0];
    let y = array![1.0f64, 0.3, 1.0, 0.0, 0.0];
    let pw = ndarray::arr0(3.0f64).into_dyn();
    let o =
        BceWithLogitsOptions { pos_weight: Some(pw.view()), reduction: Reduction::Sum, ..Default::default() };
    let g = binary_cross_entropy_with_logits_backward(z.view(), y.view(), &o, &GradOutput::one()).unwrap();
    assert_vals(&g, &[-3.0, -0.8241186029158931, -1.5, 0.9241418199787566, 1.0], 1e-15, 0.0, "∂z");
}

#[test]
fn bce_with_logits_extreme_logits_match_torch() {
    // z = torch.tensor([-inf, -1e4, -200, -3, 0, 2.5, 200, 1e4, inf], dtype=dt, requires_grad=True)
    // y = torch.tensor([1, 1, 1, .3, 1, 0, 0, 0, 0], dtype=dt, requires_grad=True)
    // l = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction='none'); l.sum().backward()
    let inf = f64::INFINITY;
    let nan = f64::NAN;
    let z = array![-inf, -1e4, -200.0, -3.0, 0.0, 2.5, 200.0, 1e4, inf].into_dyn();
    let y = array![1.0, 1.0, 1.0, 0.3, 1.0, 0.0, 0.0, 0.0, 0.0].into_dyn();
    fn none(pw: Option<&ArrayD<f64>>) -> BceWithLogitsOptions<'_, f64> {
        BceWithLogitsOptions { weight: None, pos_weight: pw.map(|p| p.view()), reduction: Reduction::None }
    }
    let pw = ndarray::arr0(3.0f64).into_dyn();
    // (loss, ∂z, ∂y) per dtype and pos_weight, as printed by torch 2.15
    type Row = [f64; 9];
    let cases: [(bool, bool, Row, Row, Row); 4] = [
        (
            true,
            false,
            [
                nan,
                10000.0,
                200.0,
                0.9485873515737424,
                std::f64::consts::LN_2, // torch prints 0.6931471805599453
                2.5788897342925496,
                200.0,
                10000.0,
                inf,
            ],
            [-1.0, -1.0, -1.0, -0.2525741268224332, -0.5, 0.9241418199787566, 1.0, 1.0, 1.0],
            [inf, 10000.0, 200.0, 3.0, -0.0, -2.5, -200.0, -10000.0, -inf],
        ),
        (
            true,
            true,
            [
                nan,
                30000.0,
                600.0,
                2.777739762517988,
                2.0794415416798357,
                2.5788897342925496,
                200.0,
                10000.0,
                inf,
            ],
            [-3.0, -3.0, -3.0, -0.8241186029158931, -1.5, 0.9241418199787566, 1.0, 1.0, 1.0],
            [
                inf,
                30000.0,
                600.0,
                9.097174703147484,
                1.3862943611198904,
                -2.3422205314149007,
                -200.0,
                -10000.0,
                -inf,
            ],
        ),
        (
            false,
            false,
            [
                nan,
                10000.0,
                200.0,
                0.9485874176025391,
                0.6931471824645996,
                2.578889846801758,
                200.0,
                10000.0,
                inf,
            ],
            [-1.0, -1.0, -1.0, -0.2525741457939148, -0.5, 0.9241418242454529, 1.0, 1.0, 1.0],
            [inf, 10000.0, 200.0, 3.0, -0.0, -2.5, -200.0, -10000.0, -inf],
        ),
        (
            false,
            true,
            [
                nan,
                30000.0,
                600.0,
                2.777740001678467,
                2.079441547393799,
                2.578889846801758,
                200.0,
                10000.0,
                inf,
            ],
            [-3.0, -3.0, -3.0, -0.8241186141967773, -1.5, 0.9241418242454529, 1.0, 1.0, 1.0],
            [
                inf,
                30000.0,
                600.0,
                9.097173690795898,
                1.3862943649291992,
                -2.3422205448150635,
                -200.0,
                -10000.0,
                -inf,
            ],
        ),
    ];
    for (f64_case, with_pw, loss, dz, dy) in cases {
        let ctx = format!("f64={f64_case} pos_weight={with_pw}");
        let one = GradOutput::one();
        if f64_case {
            let o = none(with_pw.then_some(&pw));
            let l = binary_cross_entropy_with_logits(z.view(), y.view(), &o).unwrap().into_array();
            assert_vals(&l, &loss, 1e-14, 0.0, &ctx);
            let g = binary_cross_entropy_with_logits_backward(z.view(), y.view(), &o, &one).unwrap();
            assert_vals(&g, &dz, 1e-14, 0.0, &ctx);
            let g = binary_cross_entropy_with_logits_backward_target(z.view(), y.view(), &o, &one).unwrap();
            assert_vals(&g, &dy, 1e-14, 0.0, &ctx);
        } else {
            let (z32, y32, pw32) = (to::<f32>(&z), to::<f32>(&y), to::<f32>(&pw));
            let o = BceWithLogitsOptions {
                weight: None,
                pos_weight: with_pw.then(|| pw32.view()),
                reduction: Reduction::None,
            };
            let one = GradOutput::one();
            let l = binary_cross_entropy_with_logits(z32.view(), y32.view(), &o).unwrap().into_array();
            assert_vals(&l, &loss, 1e-6, 1e-7, &ctx);
            let g = binary_cross_entropy_with_logits_backward(z32.view(), y32.view(), &o, &one).unwrap();
            assert_vals(&g, &dz, 1e-6, 1e-7, &ctx);
            let g =
                binary_cross_entropy_with_logits_backward_target(z32.view(), y32.view(), &o, &one).unwrap();
            assert_vals(&g, &dy, 1e-6, 1e-7, &ctx);
        }
    }
}

#[test]
fn bce_with_logits_seed_cases() {
    // t = torch.tensor([[0., 1., 0.], [0., 0., 1.]], dtype=dt)
    // F.binary_cross_entropy_with_logits(torch.tensor([[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]], dtype=dt), t)
    //   float64 0.7678469016522563, float32 0.7678468823432922
    // F.binary_cross_entropy_with_logits(torch.tensor([[5., 1, 8], [2, 4, 6]], dtype=dt), t)
    //   float64 3.244644344413125, float32 3.2446444034576416
    let t = array![[0.0f64, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let o = BceWithLogitsOptions::default();
    for (x, want64, want32) in [
        (array![[0.5f64, 1.0, 0.8], [0.2, 0.4, 0.6]], 0.7678469016522563, 0.7678468823432922),
        (array![[5.0f64, 1.0, 8.0], [2.0, 4.0, 6.0]], 3.244644344413125, 3.2446444034576416),
    ] {
        let v = binary_cross_entropy_with_logits(x.view(), t.view(), &o).unwrap().scalar().unwrap();
        assert!((v - want64).abs() < 1e-15 * want64);
        let v = binary_cross_entropy_with_logits(
            x.mapv(|v| v as f32).view(),
            t.mapv(|v| v as f32).view(),
            &o_l32(),
        )
        .unwrap()
        .scalar()
        .unwrap();
        assert!((v as f64 - want32).abs() < 1e-6 * want32);
    }
}

fn o_l32() -> BceWithLogitsOptions<'static, f32> {
    BceWithLogitsOptions::default()
}

#[test]
fn bce_with_logits_broadcast_weights_and_errors() {
    // a (C,) pos_weight acts on the last dimension; a (C,1,1) one on dimension 1 of (N,C,H,W).
    // torch: x = torch.zeros(2, 3, 2, 2); t = torch.ones(2, 3, 2, 2); pw = torch.tensor([1., 2., 3.]).view(3, 1, 1)
    //        F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction='none')[1, :, 1, 0] = [ln2, 2 ln2, 3 ln2]
    let x = ArrayD::<f64>::zeros(IxDyn(&[2, 3, 2, 2]));
    let t = ArrayD::<f64>::ones(IxDyn(&[2, 3, 2, 2]));
    let pw = array![[[1.0f64]], [[2.0]], [[3.0]]].into_dyn();
    let o = BceWithLogitsOptions {
        pos_weight: Some(pw.view()),
        reduction: Reduction::None,
        ..Default::default()
    };
    let l = binary_cross_entropy_with_logits(x.view(), t.view(), &o).unwrap().into_array();
    let ln2 = std::f64::consts::LN_2;
    for c in 0..3 {
        assert!((l[[1, c, 1, 0]] - (c + 1) as f64 * ln2).abs() < 1e-15);
    }
    // torch: pos_weight of shape (2, 4, 3) with a (4, 3) input:
    //   RuntimeError: output with shape [4, 3] doesn't match the broadcast shape [2, 4, 3]
    let x = ArrayD::<f32>::zeros(IxDyn(&[4, 3]));
    let big = ArrayD::<f32>::ones(IxDyn(&[2, 4, 3]));
    let o = BceWithLogitsOptions { pos_weight: Some(big.view()), ..Default::default() };
    let e = binary_cross_entropy_with_logits(x.view(), x.view(), &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "binary_cross_entropy_with_logits: pos_weight shape [2, 4, 3] and input shape [4, 3] are not compatible: \
         pos_weight must broadcast to the input shape without enlarging it"
    );
    // torch: wrong length: "The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 1"
    let w4 = ArrayD::<f32>::ones(IxDyn(&[4]));
    let o = BceWithLogitsOptions { weight: Some(w4.view()), ..Default::default() };
    let e =
        binary_cross_entropy_with_logits_backward(x.view(), x.view(), &o, &GradOutput::one()).unwrap_err();
    assert!(e.to_string().contains("weight shape [4] and input shape [4, 3]"), "{e}");
    // torch: "Target size (torch.Size([4, 2])) must be the same as input size (torch.Size([4, 3]))"
    let t = ArrayD::<f32>::zeros(IxDyn(&[4, 2]));
    let e =
        binary_cross_entropy_with_logits(x.view(), t.view(), &BceWithLogitsOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "binary_cross_entropy_with_logits: input shape [4, 3] and target shape [4, 2] must be equal"
    );
    let o = BceWithLogitsOptions::<f32> { reduction: Reduction::BatchMean, ..Default::default() };
    assert!(binary_cross_entropy_with_logits(x.view(), x.view(), &o).is_err());
}

// ------------------------------------------------------------------------------------------------
// Shared: kl_div errors, upstream gradient shapes, empty inputs, half precision
// ------------------------------------------------------------------------------------------------

#[test]
fn kl_div_shape_errors_name_both_shapes() {
    // torch: F.kl_div(torch.zeros(2, 3), torch.zeros(4))
    //   RuntimeError: The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1
    let x = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
    let t = ArrayD::<f32>::zeros(IxDyn(&[4]));
    let e = kl_div(x.view(), t.view(), &KlDivOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "kl_div: input shape [2, 3] and target shape [4] cannot be broadcast together: the size of input (3) \
         must match the size of target (4) at non-singleton dimension 1"
    );
    assert!(
        kl_div_backward_target(x.view(), t.view(), &KlDivOptions::default(), &GradOutput::one()).is_err()
    );
}

#[test]
fn upstream_gradient_shapes_are_checked() {
    let x = array![[-1.0f64, -2.0], [-0.5, -0.1]];
    let t = array![[0.5f64, 0.5], [0.2, 0.8]];
    let none = KlDivOptions { reduction: Reduction::None, log_target: false };
    // none + wrong-shaped array
    let g = ArrayD::<f64>::ones(IxDyn(&[2]));
    let e = kl_div_backward(x.view(), t.view(), &none, &GradOutput::Array(g.view())).unwrap_err();
    assert!(e.to_string().contains("grad_output shape [2] and output shape [2, 2]"), "{e}");
    // none + scalar: every element gets it
    let g2 = kl_div_backward(x.view(), t.view(), &none, &GradOutput::Scalar(2.0)).unwrap();
    assert_eq!(g2, (-2.0 * &t).into_dyn());
    // reduced + 0-d array is fine, + (2,2) array is an error
    let sum = KlDivOptions { reduction: Reduction::Sum, log_target: false };
    let g0 = ndarray::arr0(3.0f64).into_dyn();
    let gx = kl_div_backward(x.view(), t.view(), &sum, &GradOutput::Array(g0.view())).unwrap();
    assert_eq!(gx, (-3.0 * &t).into_dyn());
    let g22 = ArrayD::<f64>::ones(IxDyn(&[2, 2]));
    assert!(kl_div_backward(x.view(), t.view(), &sum, &GradOutput::Array(g22.view())).is_err());
    let p = array![[0.5f64, 0.5], [0.2, 0.8]];
    let bo = BceOptions { weight: None, reduction: Reduction::Mean };
    let e =
        binary_cross_entropy_backward(p.view(), p.view(), &bo, &GradOutput::Array(g22.view())).unwrap_err();
    assert!(e.to_string().contains("grad_output shape [2, 2]"), "{e}");
    let lo = BceWithLogitsOptions::<f64> { reduction: Reduction::None, ..Default::default() };
    let e = binary_cross_entropy_with_logits_backward_target(
        x.view(),
        p.view(),
        &lo,
        &GradOutput::Array(g.view()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("grad_output shape [2] and output shape [2, 2]"), "{e}");
}

#[test]
fn empty_inputs_behave_as_torch() {
    // torch: F.kl_div(torch.zeros(0, 3), torch.zeros(0, 3), reduction=r): mean nan, sum 0, batchmean nan
    //        F.kl_div(torch.zeros(2, 0), torch.zeros(2, 0), reduction='batchmean') -> 0
    //        F.kl_div(torch.zeros(3), torch.zeros(0, 3), reduction='batchmean') -> 0   (÷ input.size(0) = 3)
    let e03 = ArrayD::<f32>::zeros(IxDyn(&[0, 3]));
    let kl = |x: &ArrayD<f32>, t: &ArrayD<f32>, reduction| {
        kl_div(x.view(), t.view(), &KlDivOptions { reduction, log_target: false }).unwrap()
    };
    assert!(kl(&e03, &e03, Reduction::Mean).scalar().unwrap().is_nan());
    assert_eq!(kl(&e03, &e03, Reduction::Sum).scalar(), Some(0.0));
    assert!(kl(&e03, &e03, Reduction::BatchMean).scalar().unwrap().is_nan());
    assert_eq!(kl(&e03, &e03, Reduction::None).into_array().shape(), &[0, 3]);
    let e20 = ArrayD::<f32>::zeros(IxDyn(&[2, 0]));
    assert_eq!(kl(&e20, &e20, Reduction::BatchMean).scalar(), Some(0.0));
    let z3 = ArrayD::<f32>::zeros(IxDyn(&[3]));
    assert_eq!(kl(&z3, &e03, Reduction::BatchMean).scalar(), Some(0.0));
    // gradients: zero-size, or zeros where an argument was broadcast over an empty dimension
    let o = KlDivOptions { reduction: Reduction::Mean, log_target: false };
    let gx = kl_div_backward(z3.view(), e03.view(), &o, &GradOutput::one()).unwrap();
    assert_eq!(gx, ArrayD::<f32>::zeros(IxDyn(&[3])));
    let (l, g) = kl_div_with_grad(e03.view(), e03.view(), &o).unwrap();
    assert!(l.scalar().unwrap().is_nan());
    assert_eq!(g.shape(), &[0, 3]);

    // torch: F.binary_cross_entropy(torch.zeros(0), torch.zeros(0)) -> nan; reduction='sum' -> 0
    let e0 = ArrayD::<f64>::zeros(IxDyn(&[0]));
    let bce = |reduction| {
        binary_cross_entropy(e0.view(), e0.view(), &BceOptions { weight: None, reduction }).unwrap()
    };
    assert!(bce(Reduction::Mean).scalar().unwrap().is_nan());
    assert_eq!(bce(Reduction::Sum).scalar(), Some(0.0));
    assert_eq!(bce(Reduction::None).into_array().shape(), &[0]);
    let (_, g) = binary_cross_entropy_with_grad(e0.view(), e0.view(), &BceOptions::default()).unwrap();
    assert_eq!(g.shape(), &[0]);
    let lo = BceWithLogitsOptions::default();
    assert!(binary_cross_entropy_with_logits(e0.view(), e0.view(), &lo).unwrap().scalar().unwrap().is_nan());
    let g = binary_cross_entropy_with_logits_backward_target(e0.view(), e0.view(), &lo, &GradOutput::one())
        .unwrap();
    assert_eq!(g.shape(), &[0]);
}

/// `true` when `a` is within one unit in the last place (of `T`) of the exact value.
fn within_one_ulp<T: Element>(a: T, exact: f64) -> bool {
    let bits = match T::DTYPE {
        DType::F16 => 10,
        DType::BF16 => 7,
        DType::F32 => 23,
        DType::F64 => 52,
    };
    let ulp = 2f64.powi(exact.abs().log2().floor() as i32 - bits);
    (a.to_acc().f64() - exact).abs() <= ulp
}

fn check_half<T: Element>(rtol_vs_torch: f64, torch_vals: [f64; 4]) {
    // inputs of the seed cases, representable in T
    let x = to::<T>(&array![[0.5f64, 1.0, 0.8], [0.2, 0.4, 0.6]].into_dyn());
    let t = to::<T>(&array![[0.0f64, 1.0, 0.0], [0.0, 0.0, 1.0]].into_dyn());
    let w = to::<T>(&array![[0.1f64, 0.9, 0.1], [0.1, 0.1, 0.9]].into_dyn());
    let z = to::<T>(&array![[5.0f64, 1.0, 8.0], [2.0, 4.0, 6.0]].into_dyn());
    let (x64, t64, w64, z64) = (back(&x), back(&t), back(&w), back(&z));
    let ours = [
        binary_cross_entropy(
            x.view(),
            t.view(),
            &BceOptions { weight: Some(w.view()), reduction: Reduction::Mean },
        ),
        binary_cross_entropy(x.view(), t.view(), &BceOptions::default()),
        binary_cross_entropy_with_logits(x.view(), t.view(), &BceWithLogitsOptions::default()),
        binary_cross_entropy_with_logits(z.view(), t.view(), &BceWithLogitsOptions::default()),
    ]
    .map(|l| l.unwrap().scalar().unwrap());
    let exact = [
        binary_cross_entropy(
            x64.view(),
            t64.view(),
            &BceOptions { weight: Some(w64.view()), reduction: Reduction::Mean },
        ),
        binary_cross_entropy(x64.view(), t64.view(), &BceOptions::default()),
        binary_cross_entropy_with_logits(x64.view(), t64.view(), &BceWithLogitsOptions::default()),
        binary_cross_entropy_with_logits(z64.view(), t64.view(), &BceWithLogitsOptions::default()),
    ]
    .map(|l| l.unwrap().scalar().unwrap());
    for i in 0..4 {
        // computed in f32 and rounded once: within one ulp of the exact value on the same inputs
        assert!(
            within_one_ulp(ours[i], exact[i]),
            "{:?} case {i}: {:?} vs exact {}",
            T::DTYPE,
            ours[i],
            exact[i]
        );
        // and close to torch, which rounds every intermediate to the element type
        let o = ours[i].to_acc().f64();
        assert!(
            (o - torch_vals[i]).abs() <= rtol_vs_torch * torch_vals[i].abs(),
            "{:?} case {i}: {o} vs torch",
            T::DTYPE
        );
    }
    // kl_div and the gradients accept the type too
    let logq = to::<T>(&array![[-1.0f64, -0.5], [-0.7, -0.7]].into_dyn());
    let p = to::<T>(&array![[0.25f64, 0.75], [0.5, 0.5]].into_dyn());
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let (l, g) = kl_div_with_grad(logq.view(), p.view(), &o).unwrap();
    let (l64, g64) = kl_div_with_grad(back(&logq).view(), back(&p).view(), &o).unwrap();
    assert!(within_one_ulp(l.scalar().unwrap(), l64.scalar().unwrap()));
    for (a, &e) in g.iter().zip(g64.iter()) {
        assert!(within_one_ulp(*a, e));
    }
    let gt = binary_cross_entropy_with_logits_backward_target(
        z.view(),
        t.view(),
        &BceWithLogitsOptions::default(),
        &GradOutput::one(),
    )
    .unwrap();
    assert_eq!(back(&gt), back(&z).mapv(|v| -v / 6.0).mapv(|v| T::from_acc(T::Acc::c(v)).to_acc().f64()));
}

#[test]
fn half_precision_is_accepted_and_rounded_once() {
    // dt in (torch.float16, torch.bfloat16): the four seed values
    //   F.binary_cross_entropy(x, t, weight=w), F.binary_cross_entropy(x, t),
    //   F.binary_cross_entropy_with_logits(x, t), F.binary_cross_entropy_with_logits(z, t)
    //   float16:  0.127197265625, 0.5908203125, 0.767578125, 3.244140625
    //   bfloat16: 0.126953125, 0.59375, 0.76953125, 3.25
    check_half::<half::f16>(2e-3, [0.127197265625, 0.5908203125, 0.767578125, 3.244140625]);
    check_half::<half::bf16>(1.6e-2, [0.126953125, 0.59375, 0.76953125, 3.25]);
}

#[test]
fn half_precision_bce_epsilon_is_rounded_to_the_element_type() {
    // x = torch.tensor([0., 0., 1., 0.25], dtype=dt, requires_grad=True); t = torch.tensor([0., 1., 1., 1.], dtype=dt)
    // F.binary_cross_entropy(x, t, reduction='sum').backward(); x.grad
    //   float16:  [nan, -inf, nan, -4.0]            (half(1e-12) = 0, so 0/0 and −1/0)
    //   bfloat16: [0.0, -996432412672.0, 0.0, -4.0] (bfloat16(1e-12) ≈ 1.0036e-12)
    let o16 = BceOptions::<half::f16> { weight: None, reduction: Reduction::Sum };
    let x = to::<half::f16>(&array![0.0, 0.0, 1.0, 0.25].into_dyn());
    let t = to::<half::f16>(&array![0.0, 1.0, 1.0, 1.0].into_dyn());
    let g = binary_cross_entropy_backward(x.view(), t.view(), &o16, &GradOutput::one()).unwrap();
    assert_vals(&g, &[f64::NAN, f64::NEG_INFINITY, f64::NAN, -4.0], 0.0, 0.0, "f16");
    let ob = BceOptions::<half::bf16> { weight: None, reduction: Reduction::Sum };
    let x = to::<half::bf16>(&array![0.0, 0.0, 1.0, 0.25].into_dyn());
    let t = to::<half::bf16>(&array![0.0, 1.0, 1.0, 1.0].into_dyn());
    let g = binary_cross_entropy_backward(x.view(), t.view(), &ob, &GradOutput::one()).unwrap();
    assert_vals(&g, &[0.0, -996432412672.0, 0.0, -4.0], 0.0, 0.0, "bf16");
}
