//! Finite-difference gradient checks and PyTorch reference values for `logsumexp`, `log_softmax`,
//! `softmax`, `nll_loss` and `cross_entropy` (class-index and probability targets).
//!
//! Every gradient is compared with a central difference (h = 1e-6, f64) of the forward function,
//! over every option combination: weight / no weight, ignore_index hit or not, label smoothing
//! 0 / 0.1 / 1.0, reductions none / mean / sum (a random upstream array for none), 1-D, 2-D and
//! 3-D inputs. Values marked "torch" were computed with torch 2.15.0 (CPU); the snippet is in the
//! comment next to them.

use crate::support::Rng;
use infoloss::cross_entropy::cross_entropy_probs_with_grads;
use infoloss::ndarray::{Array1, Array2, ArrayD, Axis, IxDyn, arr0, array};
use infoloss::{
    CrossEntropyOptions, Element, Error, GradOutput, Loss, NllOptions, Reduction, cross_entropy,
    cross_entropy_backward, cross_entropy_probs, cross_entropy_probs_backward,
    cross_entropy_probs_backward_target, cross_entropy_probs_with_grad, cross_entropy_with_grad, log_softmax,
    log_softmax_backward, logsumexp, logsumexp_backward, nll_loss, nll_loss_backward, nll_loss_with_grad,
    softmax, softmax_backward,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const H: f64 = 1e-6;
const RTOL: f64 = 1e-6;

/// The (2, 3, 4) input `x` of the torch snippets below: `((7k) mod 11)/4 − 1.25` at flat index `k`.
fn torch_x() -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
        let k = (i[0] * 12 + i[1] * 4 + i[2]) as f64;
        ((k * 7.0) % 11.0) * 0.25 - 1.25
    })
}

/// The class targets `y = [[0, 2, -100, 1], [2, 1, 0, -100]]` and weight `w = [0.5, 2.0, 1.25]` of the torch
/// snippets below.
fn torch_y_w() -> (Array2<i64>, Array1<f64>) {
    (array![[0i64, 2, -100, 1], [2, 1, 0, -100]], array![0.5, 2.0, 1.25])
}

/// `cross_entropy_with_grad` of the torch snippets (`torch_x`, `torch_y_w`, label smoothing 0.1), the input and
/// weight converted to `T` by `conv`.
fn torch_ce_with_grad<T: Element>(conv: impl Fn(f64) -> T) -> (Loss<T>, ArrayD<T>) {
    let (y, w) = torch_y_w();
    let (x, w) = (torch_x().mapv(&conv), w.mapv(&conv));
    let opts = CrossEntropyOptions { weight: Some(w.view()), label_smoothing: 0.1, ..Default::default() };
    cross_entropy_with_grad(x.view(), y.view(), &opts).unwrap()
}

/// Central finite difference of `f` at `x`.
fn fd(f: &dyn Fn(&ArrayD<f64>) -> f64, x: &ArrayD<f64>) -> ArrayD<f64> {
    let mut g = ArrayD::zeros(x.raw_dim());
    for (i, gi) in g.iter_mut().enumerate() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        *xp.iter_mut().nth(i).unwrap() += H;
        *xm.iter_mut().nth(i).unwrap() -= H;
        *gi = (f(&xp) - f(&xm)) / (2.0 * H);
    }
    g
}

/// `analytic ≈ numeric` with relative tolerance 1e-6; the absolute floor accounts for the
/// rounding of the difference quotient (≈ 1e-10·|f|).
fn assert_grad(what: &str, analytic: &ArrayD<f64>, numeric: &ArrayD<f64>, fscale: f64) {
    assert_eq!(analytic.shape(), numeric.shape(), "{what}: shapes");
    let floor = 1e-8 * fscale.max(1.0);
    for ((i, a), n) in analytic.indexed_iter().zip(numeric.iter()) {
        assert!(a.is_finite(), "{what}: analytic gradient {a} at {i:?}");
        let tol = RTOL * a.abs().max(n.abs()) + floor;
        assert!((a - n).abs() <= tol, "{what}: at {i:?} analytic {a} vs finite difference {n} (tol {tol})");
    }
}

/// The scalar objective Σ G·loss (G = upstream gradient), i.e. what backward differentiates.
fn objective(loss: Loss<f64>, g: &Upstream) -> f64 {
    match (loss, g) {
        (Loss::Scalar(v), Upstream::Scalar(s)) => v * s,
        (Loss::Elementwise(a), Upstream::Array(gs)) => {
            assert_eq!(a.shape(), gs.shape());
            a.iter().zip(gs.iter()).map(|(x, y)| x * y).sum()
        }
        (l, g) => panic!("loss {l:?} does not match upstream {g:?}"),
    }
}

#[derive(Debug, Clone)]
enum Upstream {
    Scalar(f64),
    Array(ArrayD<f64>),
}

impl Upstream {
    fn for_reduction(rng: &mut Rng, red: Reduction, out_shape: &[usize]) -> Self {
        match red {
            Reduction::None => Upstream::Array(rng.array(out_shape, |r| r.normal() * 1.0)),
            _ => Upstream::Scalar(0.7),
        }
    }
    fn as_grad(&self) -> GradOutput<'_, f64> {
        match self {
            Upstream::Scalar(s) => GradOutput::Scalar(*s),
            Upstream::Array(a) => GradOutput::Array(a.view()),
        }
    }
}

fn max_abs(a: &ArrayD<f64>) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-300) || (a - b).abs() <= tol
}

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// (input shape, target shape) of the class-index cases: 2-D, 3-D (N, C, d) and 1-D.
const INDEX_SHAPES: [(&[usize], &[usize]); 3] = [(&[4, 3], &[4]), (&[2, 3, 4], &[2, 4]), (&[3], &[])];

/// Random class-index targets; when `ignore` is given, a few of them (at least one, never the first
/// of several) are set to it.
fn targets(rng: &mut Rng, shape: &[usize], classes: usize, ignore: Option<i64>) -> ArrayD<i64> {
    let mut y = ArrayD::from_shape_simple_fn(IxDyn(shape), || (rng.unit() * classes as f64) as i64);
    if let Some(ii) = ignore {
        let n = y.len();
        for (k, v) in y.iter_mut().enumerate() {
            if k == n / 2 || (*v == 1 && ii == 1) {
                *v = ii;
            }
            if k == 0 && n > 1 {
                // keep one row that counts, so mean is finite
                *v = 0;
            }
        }
    }
    y
}

// ---------------------------------------------------------------------------------------------
// softmax family
// ---------------------------------------------------------------------------------------------

#[test]
fn fd_logsumexp_every_dim() {
    let mut rng = Rng(1);
    let cases: [(&[usize], &[isize]); 3] =
        [(&[2, 3, 4], &[-3, -2, -1, 0, 1, 2]), (&[5], &[0, -1]), (&[], &[0, -1])];
    for (shape, dims) in cases {
        let x = rng.array(shape, |r| r.normal() * 2.0);
        for &dim in dims {
            let y = logsumexp(x.view(), dim).unwrap();
            let g = rng.array(y.shape(), |r| r.normal() * 1.0);
            let f = |x: &ArrayD<f64>| {
                objective(Loss::Elementwise(logsumexp(x.view(), dim).unwrap()), &Upstream::Array(g.clone()))
            };
            let analytic = logsumexp_backward(x.view(), g.view(), dim).unwrap();
            assert_grad(&format!("logsumexp {shape:?} dim {dim}"), &analytic, &fd(&f, &x), max_abs(&y));
            // the keepdim-shaped upstream gives the same gradient
            if !shape.is_empty() {
                let mut keep = x.shape().to_vec();
                let ax = dim.rem_euclid(shape.len() as isize) as usize;
                keep[ax] = 1;
                let gk = g.clone().into_shape_with_order(IxDyn(&keep)).unwrap();
                assert_eq!(logsumexp_backward(x.view(), gk.view(), dim).unwrap(), analytic);
            }
        }
    }
}

#[test]
fn fd_log_softmax_and_softmax_every_dim() {
    let mut rng = Rng(2);
    let cases: [(&[usize], &[isize]); 3] =
        [(&[2, 3, 4], &[-3, -2, -1, 0, 1, 2]), (&[5], &[0, -1]), (&[], &[0])];
    for (shape, dims) in cases {
        let x = rng.array(shape, |r| r.normal() * 2.0);
        for &dim in dims {
            let g = rng.array(shape, |r| r.normal() * 1.0);
            let up = Upstream::Array(g.clone());
            let f = |x: &ArrayD<f64>| objective(Loss::Elementwise(log_softmax(x.view(), dim).unwrap()), &up);
            let y = log_softmax(x.view(), dim).unwrap();
            let analytic = log_softmax_backward(y.view(), g.view(), dim).unwrap();
            assert_grad(&format!("log_softmax {shape:?} dim {dim}"), &analytic, &fd(&f, &x), max_abs(&y));

            let f = |x: &ArrayD<f64>| objective(Loss::Elementwise(softmax(x.view(), dim).unwrap()), &up);
            let s = softmax(x.view(), dim).unwrap();
            let analytic = softmax_backward(s.view(), g.view(), dim).unwrap();
            assert_grad(&format!("softmax {shape:?} dim {dim}"), &analytic, &fd(&f, &x), 1.0);
            // softmax = exp(log_softmax)
            for (a, b) in s.iter().zip(y.iter()) {
                assert!((a - b.exp()).abs() < 1e-15);
            }
        }
    }
}

#[test]
fn softmax_family_torch_values() {
    // torch: i = arange(24.); x = (((i*7) % 11) * 0.25 - 1.25).reshape(2, 3, 4)
    //   torch.logsumexp(x, 1)[1, 3]     f64 1.1941121864019142   f32 1.1941121816635132
    //   F.log_softmax(x, 1)[0, 2, 1]    f64 -0.6941121864019142  f32 -0.6941121816635132
    //   F.softmax(x, -1)[1, 1, 2]       f64 0.21936906803384734  f32 0.2193690687417984
    let x64 = torch_x();
    let x32 = x64.mapv(|v| v as f32);
    assert!(close(logsumexp(x64.view(), 1).unwrap()[[1, 3]], 1.1941121864019142, 1e-12));
    assert!(close(log_softmax(x64.view(), 1).unwrap()[[0, 2, 1]], -0.6941121864019142, 1e-12));
    assert!(close(softmax(x64.view(), -1).unwrap()[[1, 1, 2]], 0.21936906803384734, 1e-12));
    let v = logsumexp(x32.view(), 1).unwrap()[[1, 3]] as f64;
    assert!(close(v, 1.1941121816635132, 1e-6), "{v}");
    let v = log_softmax(x32.view(), 1).unwrap()[[0, 2, 1]] as f64;
    assert!(close(v, -0.6941121816635132, 1e-6), "{v}");
    let v = softmax(x32.view(), -1).unwrap()[[1, 1, 2]] as f64;
    assert!(close(v, 0.2193690687417984, 1e-6), "{v}");
}

#[test]
fn softmax_family_non_finite_rows() {
    // torch: F.log_softmax / F.softmax of an all -inf row → nan; torch.logsumexp → -inf;
    //        a row with +inf: nan / nan / +inf
    let ninf = f64::NEG_INFINITY;
    let x = array![[ninf, ninf, ninf], [1.0, f64::INFINITY, 0.0], [ninf, 0.0, 0.0]];
    let y = log_softmax(x.view(), 1).unwrap();
    let s = softmax(x.view(), 1).unwrap();
    let l = logsumexp(x.view(), 1).unwrap();
    for c in 0..3 {
        assert!(y[[0, c]].is_nan() && s[[0, c]].is_nan());
        assert!(y[[1, c]].is_nan() && s[[1, c]].is_nan());
    }
    assert_eq!((l[0], l[1]), (ninf, f64::INFINITY));
    assert_eq!(
        y.index_axis(Axis(0), 2).iter().copied().collect::<Vec<_>>(),
        vec![ninf, -(2f64.ln()), -(2f64.ln())]
    );
    assert_eq!(s.index_axis(Axis(0), 2).iter().copied().collect::<Vec<_>>(), vec![0.0, 0.5, 0.5]);
    assert!(close(l[2], 2f64.ln(), 1e-15));
}

// ---------------------------------------------------------------------------------------------
// nll_loss
// ---------------------------------------------------------------------------------------------

/// The backward of a class-index loss at an input, for an upstream gradient.
type IndexBackward<'f> = &'f dyn Fn(&ArrayD<f64>, &GradOutput<'_, f64>) -> infoloss::Result<ArrayD<f64>>;
/// The fused forward + backward(1) of a class-index loss at an input.
type IndexWithGrad<'f> = &'f dyn Fn(&ArrayD<f64>) -> infoloss::Result<(Loss<f64>, ArrayD<f64>)>;

/// Checks a class-index loss at `x`: its gradient against finite differences of `Σ up·loss`, and the fused call
/// against forward + backward with upstream 1. A NaN objective is allowed only for the mean of a 1-D input
/// whose only target is ignored, whose gradient must then be zero; returns whether the full check ran.
fn check_index_loss(
    label: &str,
    x: &ArrayD<f64>,
    red: Reduction,
    up: &Upstream,
    forward: &dyn Fn(&ArrayD<f64>) -> infoloss::Result<Loss<f64>>,
    backward: IndexBackward<'_>,
    with_grad: IndexWithGrad<'_>,
) -> bool {
    let f = |x: &ArrayD<f64>| objective(forward(x).unwrap(), up);
    let analytic = backward(x, &up.as_grad()).unwrap();
    let fx = f(x);
    if fx.is_nan() {
        assert_eq!((x.ndim(), red), (1, Reduction::Mean), "{label}");
        assert!(analytic.iter().all(|&v| v == 0.0), "{label}");
        return false;
    }
    assert_grad(label, &analytic, &fd(&f, x), fx.abs());
    let (l, g) = with_grad(x).unwrap();
    assert_eq!(l, forward(x).unwrap(), "{label}");
    assert_eq!(g, backward(x, &GradOutput::one()).unwrap(), "{label}");
    true
}

#[test]
fn fd_nll_loss_all_options() {
    let mut rng = Rng(3);
    for (ishape, tshape) in INDEX_SHAPES {
        let classes = if ishape.len() == 1 { ishape[0] } else { ishape[1] };
        for weighted in [false, true] {
            for ignore in [None, Some(-100), Some(1)] {
                for red in REDUCTIONS {
                    let x = rng.array(ishape, |r| r.normal() * 1.0);
                    let y = targets(&mut rng, tshape, classes, ignore);
                    let w = rng.array(&[classes], |r| 0.1 + r.unit()).into_shape_with_order(classes).unwrap();
                    let opts = NllOptions {
                        weight: weighted.then(|| w.view()),
                        ignore_index: ignore.unwrap_or(-100),
                        reduction: red,
                    };
                    let label = format!("nll {ishape:?} weight {weighted} ignore {ignore:?} {red}");
                    let up = Upstream::for_reduction(&mut rng, red, tshape);
                    check_index_loss(
                        &label,
                        &x,
                        red,
                        &up,
                        &|x| nll_loss(x.view(), y.view(), &opts),
                        &|x, g| nll_loss_backward(x.view(), y.view(), &opts, g),
                        &|x| nll_loss_with_grad(x.view(), y.view(), &opts),
                    );
                }
            }
        }
    }
}

#[test]
fn nll_spec_weight_example() {
    // spec §2 (torch 2.15): w = [1, 2, 3, 4], y = [0, 3, ignored], W = 5 → grad -0.2 and -0.8
    //   x = torch.arange(12.).reshape(3, 4) / 10
    //   F.nll_loss(x, tensor([0, 3, -100]), weight=w) = -0.56
    let x = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) as f64 / 10.0);
    let w = array![1.0, 2.0, 3.0, 4.0];
    let opts = NllOptions { weight: Some(w.view()), ..Default::default() };
    let (l, g) = nll_loss_with_grad(x.view(), array![0i64, 3, -100].view(), &opts).unwrap();
    assert!(close(l.scalar().unwrap(), -0.56, 1e-15));
    let mut expect = ArrayD::<f64>::zeros(IxDyn(&[3, 4]));
    expect[[0, 0]] = -0.2;
    expect[[1, 3]] = -0.8;
    assert_eq!(g, expect);
}

#[test]
fn nll_nd_torch_values() {
    // torch: x as in softmax_family_torch_values, y = [[0, 2, -100, 1], [2, 1, 0, -100]],
    //        w = [0.5, 2.0, 1.25]: F.nll_loss(x, y, weight=w, reduction='sum') = -3.875,
    //        'mean' = -0.5166666666666667 (f64), -0.5166666507720947 (f32)
    let x = torch_x();
    let (y, w) = torch_y_w();
    let opts = NllOptions { weight: Some(w.view()), reduction: Reduction::Sum, ..Default::default() };
    assert_eq!(nll_loss(x.view(), y.view(), &opts).unwrap().scalar(), Some(-3.875));
    let opts = NllOptions { weight: Some(w.view()), ..Default::default() };
    assert!(close(
        nll_loss(x.view(), y.view(), &opts).unwrap().scalar().unwrap(),
        -0.5166666666666667,
        1e-15
    ));
    let x32 = x.mapv(|v| v as f32);
    let w32 = w.mapv(|v| v as f32);
    let opts = NllOptions { weight: Some(w32.view()), ..Default::default() };
    assert_eq!(nll_loss(x32.view(), y.view(), &opts).unwrap().scalar(), Some(-0.516_666_65_f32));
}

// ---------------------------------------------------------------------------------------------
// cross_entropy, class indices
// ---------------------------------------------------------------------------------------------

#[test]
fn fd_cross_entropy_all_options() {
    let mut rng = Rng(4);
    let mut checked = 0;
    for (ishape, tshape) in INDEX_SHAPES {
        let classes = if ishape.len() == 1 { ishape[0] } else { ishape[1] };
        for weighted in [false, true] {
            for ignore in [None, Some(-100), Some(1)] {
                for eps in [0.0, 0.1, 1.0] {
                    for red in REDUCTIONS {
                        let x = rng.array(ishape, |r| r.normal() * 1.5);
                        let y = targets(&mut rng, tshape, classes, ignore);
                        let w =
                            rng.array(&[classes], |r| 0.1 + r.unit()).into_shape_with_order(classes).unwrap();
                        let opts = CrossEntropyOptions {
                            weight: weighted.then(|| w.view()),
                            ignore_index: ignore.unwrap_or(-100),
                            reduction: red,
                            label_smoothing: eps,
                        };
                        let label =
                            format!("ce {ishape:?} weight {weighted} ignore {ignore:?} eps {eps} {red}");
                        let up = Upstream::for_reduction(&mut rng, red, tshape);
                        checked += usize::from(check_index_loss(
                            &label,
                            &x,
                            red,
                            &up,
                            &|x| cross_entropy(x.view(), y.view(), &opts),
                            &|x, g| cross_entropy_backward(x.view(), y.view(), &opts, g),
                            &|x| cross_entropy_with_grad(x.view(), y.view(), &opts),
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 150, "{checked}");
}

#[test]
fn cross_entropy_eps0_is_nll_of_log_softmax() {
    let mut rng = Rng(5);
    let x = rng.array(&[2, 4, 3], |r| r.normal() * 2.0);
    let y = targets(&mut rng, &[2, 3], 4, Some(-100));
    let w = array![0.3, 1.2, 0.8, 2.0];
    for red in REDUCTIONS {
        let ce = CrossEntropyOptions { weight: Some(w.view()), reduction: red, ..Default::default() };
        let nl = NllOptions { weight: Some(w.view()), reduction: red, ..Default::default() };
        let lsm = log_softmax(x.view(), 1).unwrap();
        let a = cross_entropy(x.view(), y.view(), &ce).unwrap().into_array();
        let b = nll_loss(lsm.view(), y.view(), &nl).unwrap().into_array();
        for (p, q) in a.iter().zip(b.iter()) {
            assert!(close(*p, *q, 1e-14), "{red}: {p} vs {q}");
        }
    }
}

#[test]
fn cross_entropy_spec_label_smoothing_example() {
    // spec §3c, verified with torch 2.15:
    //   torch.manual_seed(0); x = torch.randn(4, 3, dtype=torch.float64)
    //   y = torch.tensor([0, 2, -100, 1]); w = torch.tensor([0.2, 1, 3], dtype=torch.float64)
    //   F.cross_entropy(x, y, weight=w, label_smoothing=0.1, reduction=red).backward(g)
    //   with g = 1 (mean, sum) and g = [0.5, -1, 2, 3] (none)
    let x = array![
        [1.5409961082440433, -0.2934289057609464, -2.1787893820745574],
        [0.5684312772806678, -1.084522342424021, -1.3985953953708767],
        [0.4033468476292993, 0.8380263329976598, -0.7192575784693592],
        [-0.40334352493217457, -0.5966353626151273, 0.18203648506130554]
    ];
    let y = array![0i64, 2, -100, 1];
    let w = array![0.2, 1.0, 3.0];
    let opts = |red| CrossEntropyOptions {
        weight: Some(w.view()),
        reduction: red,
        label_smoothing: 0.1,
        ..Default::default()
    };

    for (red, want, expect) in [
        (
            Reduction::Mean,
            1.9815498399327023,
            array![
                [0.019908638059203138, 0.0023410206478755944, -0.022249658707078717],
                [0.5063089076153879, 0.08931723741861107, -0.5956261450339991],
                [0.0, 0.0, 0.0],
                [0.06681736353096629, -0.16584026566598742, 0.09902290213502117]
            ],
        ),
        (
            Reduction::Sum,
            8.32250932771735,
            array![
                [0.08361627984865316, 0.009832286721077494, -0.09344856656973063],
                [2.1264974119846296, 0.3751323971581666, -2.5016298091427966],
                [0.0, 0.0, 0.0],
                [0.28063292683005847, -0.6965291157971472, 0.41589618896708896]
            ],
        ),
    ] {
        let (l, g) = cross_entropy_with_grad(x.view(), y.view(), &opts(red)).unwrap();
        assert!(close(l.scalar().unwrap(), want, 1e-14), "{red}: {l:?}");
        for (a, b) in g.iter().zip(expect.iter()) {
            assert!(close(*a, *b, 1e-12), "{red}: {a} vs {b}");
        }
    }

    let l = cross_entropy(x.view(), y.view(), &opts(Reduction::None)).unwrap().into_array();
    let expect = [0.487158572844293, 6.375574581999359, 0.0, 1.459776172873698];
    for (a, b) in l.iter().zip(expect) {
        assert!(close(*a, b, 1e-14), "{a} vs {b}");
    }
    let gout = array![0.5, -1.0, 2.0, 3.0].into_dyn();
    let g =
        cross_entropy_backward(x.view(), y.view(), &opts(Reduction::None), &GradOutput::Array(gout.view()))
            .unwrap();
    let expect = array![
        [0.04180813992432658, 0.004916143360538747, -0.04672428328486532],
        [-2.1264974119846296, -0.3751323971581666, 2.5016298091427966],
        [0.0, 0.0, 0.0],
        [0.8418987804901754, -2.0895873473914417, 1.247688566901267]
    ];
    for (a, b) in g.iter().zip(expect.iter()) {
        assert!(close(*a, *b, 1e-12), "{a} vs {b}");
    }

    // The closed form of the spec for a non-ignored row:
    // [(1−ε)·w_y·(p − e_y) + (ε/C)·(p·Σw − w)] / W, W = 0.2 + 3 + 1
    let p = softmax(x.view(), 1).unwrap();
    let g = cross_entropy_backward(x.view(), y.view(), &opts(Reduction::Mean), &GradOutput::one()).unwrap();
    let big_w = 4.2;
    let sum_w = 4.2;
    for (i, &t) in [0usize, 2, 99, 1].iter().enumerate() {
        if t == 99 {
            continue;
        }
        for c in 0..3 {
            let onehot = if c == t { 1.0 } else { 0.0 };
            let v = (0.9 * w[t] * (p[[i, c]] - onehot) + 0.1 / 3.0 * (p[[i, c]] * sum_w - w[c])) / big_w;
            assert!(close(g[[i, c]], v, 1e-12), "row {i} class {c}: {} vs {v}", g[[i, c]]);
        }
    }
}

#[test]
fn cross_entropy_nd_torch_values() {
    // torch: x as in softmax_family_torch_values, y = [[0, 2, -100, 1], [2, 1, 0, -100]],
    //        w = [0.5, 2.0, 1.25]; l = F.cross_entropy(x, y, weight=w, label_smoothing=0.1); l.backward()
    //   f64: l = 0.9615869736714225, grad[1,2,1] = 0.043155711266080164, grad[0,0,0] = -0.05089057841524728
    //   f32: l = 0.9615868926048279, grad[1,2,1] = 0.04315571114420891,  grad[0,0,0] = -0.05089057609438896
    let (l, g) = torch_ce_with_grad(|v| v);
    assert!(close(l.scalar().unwrap(), 0.9615869736714225, 1e-12));
    assert!(close(g[[1, 2, 1]], 0.043155711266080164, 1e-12));
    assert!(close(g[[0, 0, 0]], -0.05089057841524728, 1e-12));
    assert!(g.index_axis(Axis(2), 2).index_axis(Axis(0), 0).iter().all(|&v| v == 0.0), "ignored position");

    let (l, g) = torch_ce_with_grad(|v| v as f32);
    assert!(close(l.scalar().unwrap() as f64, 0.9615868926048279, 1e-6));
    assert!(close(g[[1, 2, 1]] as f64, 0.04315571114420891, 1e-6));
    assert!(close(g[[0, 0, 0]] as f64, -0.05089057609438896, 1e-6));

    // K-dim input equals the same data flattened to (N·d, C)
    let (x, (y, w)) = (torch_x(), torch_y_w());
    let flat = ArrayD::from_shape_fn(IxDyn(&[8, 3]), |i| x[[i[0] / 4, i[1], i[0] % 4]]);
    let yf = y.clone().into_shape_with_order(8).unwrap();
    let opts = CrossEntropyOptions { weight: Some(w.view()), label_smoothing: 0.1, ..Default::default() };
    let lf = cross_entropy(flat.view(), yf.view(), &opts).unwrap().scalar().unwrap();
    assert!(close(lf, 0.9615869736714225, 1e-12));
}

#[test]
fn cross_entropy_seed_and_infinite_logit() {
    // SEEDS #6: CrossEntropyLoss of logits ln([0.3, 0.3, 0.4]), class 2 → −ln 0.4
    let x = array![[0.3f64.ln(), 0.3f64.ln(), 0.4f64.ln()]];
    let l = cross_entropy(x.view(), array![2i64].view(), &CrossEntropyOptions::default()).unwrap();
    assert!(close(l.scalar().unwrap(), 0.9162907318741551, 1e-15));
    let x32 = x.mapv(|v| v as f32);
    let l = cross_entropy(x32.view(), array![2i64].view(), &CrossEntropyOptions::default()).unwrap();
    assert!(close(l.scalar().unwrap() as f64, 0.9162907318741551, 1e-6));

    // torch: x = [[0, -inf, 1]], y = [1] → loss inf, grad [[0.2689414213699951, -1.0, 0.7310585786300049]]
    let x = array![[0.0f64, f64::NEG_INFINITY, 1.0]];
    let (l, g) =
        cross_entropy_with_grad(x.view(), array![1i64].view(), &CrossEntropyOptions::default()).unwrap();
    assert_eq!(l.scalar(), Some(f64::INFINITY));
    assert!(close(g[[0, 0]], 0.2689414213699951, 1e-15));
    assert_eq!(g[[0, 1]], -1.0);
    assert!(close(g[[0, 2]], 0.7310585786300049, 1e-15));
}

#[test]
fn cross_entropy_infinite_logit_with_label_smoothing() {
    // torch: x = [[0, -inf, 1]] (f64), y = [1]; F.cross_entropy(x, y, label_smoothing=eps).backward()
    //   eps 0.1: loss inf, grad [0.23560808803666178, -0.9333333333333333, 0.6977252452966716]
    //   eps 1.0: loss nan (0·inf from the (1−ε)·nll term), grad [-0.06439191196333821, -1/3, 0.3977252452966716]
    let x = array![[0.0f64, f64::NEG_INFINITY, 1.0]];
    let cases = [
        (0.1, f64::INFINITY, [0.23560808803666178, -0.9333333333333333, 0.6977252452966716]),
        (1.0, f64::NAN, [-0.06439191196333821, -0.3333333333333333, 0.3977252452966716]),
    ];
    for (eps, loss, grad) in cases {
        for red in [Reduction::Mean, Reduction::None] {
            let opts = CrossEntropyOptions { label_smoothing: eps, reduction: red, ..Default::default() };
            let (l, g) = cross_entropy_with_grad(x.view(), array![1i64].view(), &opts).unwrap();
            let l = *l.into_array().iter().next().unwrap();
            assert!(l == loss || (l.is_nan() && loss.is_nan()), "eps {eps} {red}: {l}");
            for (a, b) in g.iter().zip(grad) {
                assert!(close(*a, b, 1e-15), "eps {eps} {red}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn cross_entropy_one_d_input_returns_scalar_shape() {
    // torch: F.cross_entropy(x1d, tensor(1), reduction='none') is 0-d
    let x = array![0.5f64, -1.0, 2.0];
    let opts = CrossEntropyOptions { reduction: Reduction::None, label_smoothing: 0.1, ..Default::default() };
    let l = cross_entropy(x.view(), arr0(1i64).view(), &opts).unwrap().into_array();
    assert_eq!(l.ndim(), 0);
    let l2 = cross_entropy(x.view().insert_axis(Axis(0)), array![1i64].view(), &opts).unwrap().into_array();
    assert_eq!(l[[]], l2[[0]]);
}

// ---------------------------------------------------------------------------------------------
// cross_entropy, probability targets
// ---------------------------------------------------------------------------------------------

#[test]
fn fd_cross_entropy_probs_all_options() {
    let mut rng = Rng(6);
    let shapes: [&[usize]; 3] = [&[4, 3], &[2, 3, 4], &[3]];
    for shape in shapes {
        let classes = if shape.len() == 1 { shape[0] } else { shape[1] };
        let out_shape: Vec<usize> = if shape.len() == 1 {
            vec![]
        } else {
            std::iter::once(shape[0]).chain(shape[2..].iter().copied()).collect()
        };
        for weighted in [false, true] {
            for eps in [0.0, 0.1, 1.0] {
                for red in REDUCTIONS {
                    let x = rng.array(shape, |r| r.normal() * 1.5);
                    let t = rng.array(shape, |r| 0.1 + r.unit());
                    let w = rng.array(&[classes], |r| 0.1 + r.unit()).into_shape_with_order(classes).unwrap();
                    let opts = CrossEntropyOptions {
                        weight: weighted.then(|| w.view()),
                        reduction: red,
                        label_smoothing: eps,
                        ..Default::default()
                    };
                    let label = format!("ce probs {shape:?} weight {weighted} eps {eps} {red}");
                    let up = Upstream::for_reduction(&mut rng, red, &out_shape);
                    let fx = |x: &ArrayD<f64>| {
                        objective(cross_entropy_probs(x.view(), t.view(), &opts).unwrap(), &up)
                    };
                    let ft = |t: &ArrayD<f64>| {
                        objective(cross_entropy_probs(x.view(), t.view(), &opts).unwrap(), &up)
                    };
                    let scale = fx(&x).abs();
                    let gx = cross_entropy_probs_backward(x.view(), t.view(), &opts, &up.as_grad()).unwrap();
                    assert_grad(&format!("{label} d/dx"), &gx, &fd(&fx, &x), scale);
                    let gt = cross_entropy_probs_backward_target(x.view(), t.view(), &opts, &up.as_grad())
                        .unwrap();
                    assert_grad(&format!("{label} d/dt"), &gt, &fd(&ft, &t), scale);
                    if eps == 1.0 {
                        // the target no longer matters
                        assert!(gt.iter().all(|&v| v == 0.0), "{label}");
                    }

                    let (l, g) = cross_entropy_probs_with_grad(x.view(), t.view(), &opts).unwrap();
                    let l0 = cross_entropy_probs(x.view(), t.view(), &opts).unwrap();
                    assert_eq!(l, l0, "{label}");
                    assert_eq!(
                        g,
                        cross_entropy_probs_backward(x.view(), t.view(), &opts, &GradOutput::one()).unwrap()
                    );
                    let (l2, g2, gt2) = cross_entropy_probs_with_grads(x.view(), t.view(), &opts).unwrap();
                    assert_eq!((l2, g2), (l0, g), "{label}");
                    assert_eq!(
                        gt2,
                        cross_entropy_probs_backward_target(x.view(), t.view(), &opts, &GradOutput::one())
                            .unwrap()
                    );
                }
            }
        }
    }
}

#[test]
fn cross_entropy_probs_torch_values() {
    // torch: x as in softmax_family_torch_values, t = (((i*5) % 7) * 0.125).reshape(2, 3, 4), both
    //        requires_grad; w = [0.5, 2.0, 1.25]; l = F.cross_entropy(x, t, weight=w, label_smoothing=0.2)
    //   f64: l = 2.154102225965553,  x.grad[1,2,1] = 0.0026309940891286183, t.grad[0,1,3] = 0.31275617266745165
    //   f32: l = 2.1541025638580322, x.grad[1,2,1] = 0.0026309939566999674, t.grad[0,1,3] = 0.31275615096092224
    let x = torch_x();
    let t = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
        let k = (i[0] * 12 + i[1] * 4 + i[2]) as f64;
        ((k * 5.0) % 7.0) * 0.125
    });
    let w = array![0.5, 2.0, 1.25];
    let opts = CrossEntropyOptions { weight: Some(w.view()), label_smoothing: 0.2, ..Default::default() };
    let (l, gx, gt) = cross_entropy_probs_with_grads(x.view(), t.view(), &opts).unwrap();
    assert!(close(l.scalar().unwrap(), 2.154102225965553, 1e-12));
    assert!(close(gx[[1, 2, 1]], 0.0026309940891286183, 1e-12));
    assert!(close(gt[[0, 1, 3]], 0.31275617266745165, 1e-12));

    let (x32, t32, w32) = (x.mapv(|v| v as f32), t.mapv(|v| v as f32), w.mapv(|v| v as f32));
    let opts = CrossEntropyOptions { weight: Some(w32.view()), label_smoothing: 0.2, ..Default::default() };
    let (l, gx, gt) = cross_entropy_probs_with_grads(x32.view(), t32.view(), &opts).unwrap();
    assert!(close(l.scalar().unwrap() as f64, 2.1541025638580322, 1e-6));
    assert!(close(gx[[1, 2, 1]] as f64, 0.0026309939566999674, 1e-6));
    assert!(close(gt[[0, 1, 3]] as f64, 0.31275615096092224, 1e-6));

    // 'mean' divides by numel / C = 8 rows, not by the weights (spec §3a)
    let sum = CrossEntropyOptions {
        weight: Some(w.view()),
        label_smoothing: 0.2,
        reduction: Reduction::Sum,
        ..Default::default()
    };
    let s = cross_entropy_probs(x.view(), t.view(), &sum).unwrap().scalar().unwrap();
    assert!(close(s / 8.0, 2.154102225965553, 1e-12));
}

#[test]
fn cross_entropy_probs_one_hot_equals_index_targets() {
    let mut rng = Rng(7);
    let x = rng.array(&[5, 4], |r| r.normal() * 2.0);
    let y = array![3i64, 0, 1, 1, 2];
    let onehot = ArrayD::from_shape_fn(IxDyn(&[5, 4]), |i| if y[i[0]] as usize == i[1] { 1.0 } else { 0.0 });
    for red in REDUCTIONS {
        // unweighted: index mean divides by N, probability mean by numel/C = N, so they agree
        let opts = CrossEntropyOptions { reduction: red, label_smoothing: 0.1, ..Default::default() };
        let a = cross_entropy(x.view(), y.view(), &opts).unwrap().into_array();
        let b = cross_entropy_probs(x.view(), onehot.view(), &opts).unwrap().into_array();
        for (p, q) in a.iter().zip(b.iter()) {
            assert!(close(*p, *q, 1e-13), "{red}: {p} vs {q}");
        }
        let ga = cross_entropy_backward(x.view(), y.view(), &opts, &GradOutput::one()).unwrap();
        let gb = cross_entropy_probs_backward(x.view(), onehot.view(), &opts, &GradOutput::one()).unwrap();
        for (p, q) in ga.iter().zip(gb.iter()) {
            assert!((p - q).abs() < 1e-15, "{red}: {p} vs {q}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Empty batches, all-ignored targets
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_batches() {
    // torch: empty input → mean NaN, sum 0, none empty, gradient empty
    let x = ArrayD::<f64>::zeros(IxDyn(&[0, 3]));
    let y = ArrayD::<i64>::zeros(IxDyn(&[0]));
    let x3 = ArrayD::<f64>::zeros(IxDyn(&[2, 3, 0]));
    let y3 = ArrayD::<i64>::zeros(IxDyn(&[2, 0]));
    for (x, y) in [(&x, &y), (&x3, &y3)] {
        for eps in [0.0, 0.1] {
            let ce = |red| CrossEntropyOptions { reduction: red, label_smoothing: eps, ..Default::default() };
            let (l, g) = cross_entropy_with_grad(x.view(), y.view(), &ce(Reduction::Mean)).unwrap();
            assert!(l.scalar().unwrap().is_nan());
            assert_eq!(g.shape(), x.shape());
            assert_eq!(cross_entropy(x.view(), y.view(), &ce(Reduction::Sum)).unwrap().scalar(), Some(0.0));
            assert_eq!(
                cross_entropy(x.view(), y.view(), &ce(Reduction::None)).unwrap().into_array().shape(),
                y.shape()
            );

            let (l, g) = cross_entropy_probs_with_grad(x.view(), x.view(), &ce(Reduction::Mean)).unwrap();
            assert!(l.scalar().unwrap().is_nan());
            assert_eq!(g.shape(), x.shape());
            assert_eq!(
                cross_entropy_probs(x.view(), x.view(), &ce(Reduction::Sum)).unwrap().scalar(),
                Some(0.0)
            );
        }
        let nl = |red| NllOptions { reduction: red, ..Default::default() };
        assert!(nll_loss(x.view(), y.view(), &nl(Reduction::Mean)).unwrap().scalar().unwrap().is_nan());
        assert_eq!(nll_loss(x.view(), y.view(), &nl(Reduction::Sum)).unwrap().scalar(), Some(0.0));
    }
}

#[test]
fn all_ignored_targets() {
    // torch: all targets ignored → mean NaN (also with label smoothing), sum 0, gradient all zeros
    let x = array![[0.3f64, -1.0, 2.0], [1.0, 0.5, -0.5]];
    let y = array![-100i64, -100];
    let w = array![0.2, 1.0, 3.0];
    for weighted in [false, true] {
        for eps in [0.0, 0.1, 1.0] {
            let opts = |red| CrossEntropyOptions {
                weight: weighted.then(|| w.view()),
                reduction: red,
                label_smoothing: eps,
                ..Default::default()
            };
            let (l, g) = cross_entropy_with_grad(x.view(), y.view(), &opts(Reduction::Mean)).unwrap();
            assert!(l.scalar().unwrap().is_nan(), "eps {eps}");
            assert_eq!(g, ArrayD::<f64>::zeros(IxDyn(&[2, 3])), "eps {eps}");
            let (l, g) = cross_entropy_with_grad(x.view(), y.view(), &opts(Reduction::Sum)).unwrap();
            assert_eq!(l.scalar(), Some(0.0));
            assert_eq!(g, ArrayD::<f64>::zeros(IxDyn(&[2, 3])));
        }
        let opts = NllOptions { weight: weighted.then(|| w.view()), ..Default::default() };
        let (l, g) = nll_loss_with_grad(x.view(), y.view(), &opts).unwrap();
        assert!(l.scalar().unwrap().is_nan());
        assert_eq!(g, ArrayD::<f64>::zeros(IxDyn(&[2, 3])));
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn error_messages() {
    let x = ArrayD::<f64>::zeros(IxDyn(&[2, 3, 4]));
    let ce = CrossEntropyOptions::<f64>::default();

    // (N, T, C) pitfall: torch "Expected target size [2, 3], got [2, 5]"
    let e = cross_entropy(
        ArrayD::<f64>::zeros(IxDyn(&[2, 5, 3])).view(),
        ArrayD::<i64>::zeros(IxDyn(&[2, 5])).view(),
        &ce,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cross_entropy: input shape [2, 5, 3] and target shape [2, 5] are not compatible: the target must have shape [2, 3] (the input shape without the class dimension 1)"
    );
    // batch size mismatch names both shapes
    let e = nll_loss(
        ArrayD::<f64>::zeros(IxDyn(&[4, 3])).view(),
        array![0i64, 1, 2].view(),
        &NllOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("nll_loss: input shape [4, 3] and target shape [3]"), "{e}");

    // out-of-range target names multi-index and value
    let mut y = ArrayD::<i64>::zeros(IxDyn(&[2, 4]));
    y[[1, 3]] = 12;
    let e = cross_entropy(x.view(), y.view(), &ce).unwrap_err();
    assert_eq!(e.to_string(), "cross_entropy: target 12 at [1, 3] is out of range for 3 classes");
    assert_eq!(e, Error::target_out_of_range("cross_entropy", &[1, 3], 12, 3));
    y[[1, 3]] = -5;
    let opts = CrossEntropyOptions { label_smoothing: 0.2, ..Default::default() };
    assert_eq!(
        cross_entropy_backward(x.view(), y.view(), &opts, &GradOutput::one()).unwrap_err().to_string(),
        "cross_entropy_backward: target -5 at [1, 3] is out of range for 3 classes"
    );

    // weight of the wrong length names both lengths
    let w = array![1.0, 2.0];
    let opts = CrossEntropyOptions { weight: Some(w.view()), ..Default::default() };
    let e = cross_entropy(x.view(), ArrayD::<i64>::zeros(IxDyn(&[2, 4])).view(), &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cross_entropy: weight shape [2] and input shape [2, 3, 4] are not compatible: weight must have one entry per class (3 classes), but has 2"
    );
    let e = cross_entropy_probs(x.view(), x.view(), &opts).unwrap_err();
    assert!(e.to_string().contains("(3 classes), but has 2"), "{e}");

    // label smoothing: above 1 is an error (negative and NaN disable smoothing, as in torch)
    for bad in [1.5, 2.0, f64::INFINITY] {
        let opts = CrossEntropyOptions { label_smoothing: bad, ..Default::default() };
        let e = cross_entropy(x.view(), ArrayD::<i64>::zeros(IxDyn(&[2, 4])).view(), &opts).unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "label_smoothing", .. }), "{e}");
        assert!(e.to_string().contains(&format!("label_smoothing = {bad}")), "{e}");
    }

    // probability targets
    let opts = CrossEntropyOptions { ignore_index: 3, ..Default::default() };
    let e = cross_entropy_probs(x.view(), x.view(), &opts).unwrap_err();
    assert!(e.to_string().contains("ignore_index is not supported for floating point target"), "{e}");
    let e = cross_entropy_probs(x.view(), ArrayD::<f64>::zeros(IxDyn(&[2, 3])).view(), &ce).unwrap_err();
    assert_eq!(e.to_string(), "cross_entropy: input shape [2, 3, 4] and target shape [2, 3] must be equal");

    // batchmean is only for kl_div
    let opts = CrossEntropyOptions { reduction: Reduction::BatchMean, ..Default::default() };
    let e = cross_entropy_probs(x.view(), x.view(), &opts).unwrap_err();
    assert!(e.to_string().contains("batchmean is not a valid value for reduction"), "{e}");

    // upstream gradient shapes
    let y = ArrayD::<i64>::zeros(IxDyn(&[2, 4]));
    let g = ArrayD::<f64>::zeros(IxDyn(&[2, 3]));
    let opts = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
    let e = cross_entropy_backward(x.view(), y.view(), &opts, &GradOutput::Array(g.view())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cross_entropy_backward: grad_output shape [2, 3] and output shape [2, 4] must be equal"
    );
    let e = cross_entropy_probs_backward_target(x.view(), x.view(), &ce, &GradOutput::Array(g.view()))
        .unwrap_err();
    assert!(e.to_string().contains("grad_output shape [2, 3]"), "{e}");

    // dim out of range
    let e = softmax(x.view(), 3).unwrap_err();
    assert!(matches!(e, Error::InvalidOption { option: "dim", .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Half precision
// ---------------------------------------------------------------------------------------------

#[test]
fn half_and_bfloat16_are_accepted() {
    use infoloss::half::{bf16, f16};
    let x64 = torch_x();
    let (y, w64) = torch_y_w();
    // torch (f64): 0.9615869736714225; the inputs are exact in f16/bf16, so the only error is the
    // final rounding (f16 ulp 2^-11 near 1, bf16 2^-8).
    let (_, g64) = torch_ce_with_grad(|v| v);

    let (l, g) = torch_ce_with_grad(f16::from_f64);
    assert_eq!(l.scalar(), Some(f16::from_f64(0.9615869736714225)));
    for (a, b) in g.iter().zip(g64.iter()) {
        assert!((a.to_f64() - b).abs() <= b.abs() * 2f64.powi(-10) + 1e-7, "{a} vs {b}");
    }

    let xb = x64.mapv(bf16::from_f64);
    let wb = w64.mapv(bf16::from_f64);
    let opts = CrossEntropyOptions { weight: Some(wb.view()), label_smoothing: 0.1, ..Default::default() };
    let l = cross_entropy(xb.view(), y.view(), &opts).unwrap();
    assert_eq!(l.scalar(), Some(bf16::from_f64(0.9615869736714225)));

    // probability targets, nll and the softmax family
    let t = array![[0.25f64, 0.75], [1.0, 0.0]];
    let xs = array![[0.5f64, -0.5], [2.0, 1.0]];
    let l64 =
        cross_entropy_probs(xs.view(), t.view(), &CrossEntropyOptions::default()).unwrap().scalar().unwrap();
    let l = cross_entropy_probs(
        xs.mapv(f16::from_f64).view(),
        t.mapv(f16::from_f64).view(),
        &CrossEntropyOptions::default(),
    )
    .unwrap();
    assert_eq!(l.scalar(), Some(f16::from_f64(l64)));
    let l = nll_loss(xs.mapv(bf16::from_f64).view(), array![1i64, 0].view(), &NllOptions::default()).unwrap();
    assert_eq!(l.scalar(), Some(bf16::from_f64(-0.75)));
    let s = softmax(xs.mapv(bf16::from_f64).view(), 1).unwrap();
    let s64 = softmax(xs.view(), 1).unwrap();
    for (a, b) in s.iter().zip(s64.iter()) {
        assert_eq!(*a, bf16::from_f64(*b));
    }
}
