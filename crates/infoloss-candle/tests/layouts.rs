//! Strided inputs: transposed, narrowed (non-zero start offset), permuted and broadcast (stride 0) tensors give
//! exactly the results and gradients of their contiguous copies — the ops read the storage through the
//! layout and never assume contiguity.

use crate::support;

use candle_core::{Tensor, Var};
use infoloss::ndarray::ArrayD;
use infoloss_candle::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, KlDivOptions, NllOptions, Reduction,
};
use support::*;

type LossFn<'a> = &'a dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>;
/// A view of a tensor (transpose, narrow, …).
type ViewFn = Box<dyn Fn(&Tensor) -> Tensor>;
/// A named loss of (input, target).
type NamedLoss = (&'static str, Box<dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>>);

/// Runs `f` on a contiguous input and on `strided(base)` (which must equal the contiguous input), with
/// upstream `up`; asserts equal losses and equal gradients (mapped back through the view by candle).
#[track_caller]
fn compare_input_views(
    name: &str,
    contiguous: &ArrayD<f64>,
    base: &ArrayD<f64>,
    strided: &dyn Fn(&Tensor) -> Tensor,
    target: &Tensor,
    f: LossFn<'_>,
) {
    let xv = Var::from_tensor(&tensor(contiguous)).unwrap();
    let bv = Var::from_tensor(&tensor(base)).unwrap();
    let view = strided(bv.as_tensor());
    assert!(!view.is_contiguous() || view.layout().start_offset() > 0, "{name}: the view is not strided");
    same(&format!("{name}: view content"), &nd::<f64>(&view), contiguous);

    let l1 = f(xv.as_tensor(), target).unwrap();
    let l2 = f(&view, target).unwrap();
    same(&format!("{name}: loss"), &nd::<f64>(&l2), &nd::<f64>(&l1));
    let up = upstream::<f64>(11, l1.dims());
    let g1 = objective(&l1, &up).backward().unwrap();
    let g2 = objective(&l2, &up).backward().unwrap();
    // the gradient of the base, seen through the same view, is the contiguous input's gradient
    let gb = g2.get(bv.as_tensor()).unwrap();
    same(&format!("{name}: grad through the view"), &nd::<f64>(&strided(gb)), &grad_of::<f64>(&g1, &xv));
}

fn transposed(x: &ArrayD<f64>) -> (ArrayD<f64>, ViewFn) {
    (x.t().to_owned(), Box::new(|t: &Tensor| t.t().unwrap()))
}

fn narrowed(x: &ArrayD<f64>) -> (ArrayD<f64>, ViewFn) {
    // embed x at rows 1.. and columns 2.. of a larger array: the view has an offset and a wider row stride
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let mut big = rand::<f64>(99, &[n + 2, c + 3], -9.0, 9.0);
    big.slice_mut(infoloss::ndarray::s![1..n + 1, 2..c + 2]).assign(x);
    (big, Box::new(move |t: &Tensor| t.narrow(0, 1, n).unwrap().narrow(1, 2, c).unwrap()))
}

fn class_losses() -> Vec<NamedLoss> {
    let w = tensor(&rand::<f64>(5, &[5], 0.5, 2.0));
    let w2 = w.clone();
    vec![
        (
            "cross_entropy",
            Box::new(move |x: &Tensor, t: &Tensor| {
                let o = CrossEntropyOptions {
                    weight: Some(w.clone()),
                    label_smoothing: 0.1,
                    reduction: Reduction::None,
                    ..Default::default()
                };
                infoloss_candle::cross_entropy(x, t, &o)
            }),
        ),
        (
            "nll_loss",
            Box::new(move |x: &Tensor, t: &Tensor| {
                infoloss_candle::nll_loss(
                    x,
                    t,
                    &NllOptions { weight: Some(w2.clone()), ..Default::default() },
                )
            }),
        ),
        ("log_softmax", Box::new(|x: &Tensor, _t: &Tensor| infoloss_candle::log_softmax(x, 1))),
        ("softmax", Box::new(|x: &Tensor, _t: &Tensor| infoloss_candle::softmax(x, 0))),
        ("logsumexp", Box::new(|x: &Tensor, _t: &Tensor| infoloss_candle::logsumexp(x, 1))),
    ]
}

#[test]
fn transposed_and_narrowed_logits() {
    let x = rand::<f64>(1, &[4, 5], -3.0, 3.0);
    let t = index_tensor(&classes(2, &[4], 5));
    for (name, f) in class_losses() {
        for (kind, (base, view)) in [("transposed", transposed(&x)), ("narrowed", narrowed(&x))] {
            compare_input_views(&format!("{name} {kind}"), &x, &base, &*view, &t, &*f);
        }
    }
}

#[test]
fn permuted_k_dimensional_cross_entropy() {
    // (N, C, d) logits stored as (d, N, C) and permuted into place
    let x = rand::<f64>(3, &[2, 4, 3], -3.0, 3.0);
    let base = x.view().permuted_axes(infoloss::ndarray::IxDyn(&[2, 0, 1])).as_standard_layout().into_owned();
    let t = index_tensor(&classes(4, &[2, 3], 4));
    let f = |x: &Tensor, t: &Tensor| infoloss_candle::cross_entropy(x, t, &CrossEntropyOptions::default());
    compare_input_views(
        "cross_entropy permuted",
        &x,
        &base,
        &|t: &Tensor| t.permute((1, 2, 0)).unwrap(),
        &t,
        &f,
    );
}

/// Float targets given as views: the loss and the target gradient are those of the contiguous target.
#[test]
fn strided_float_targets() {
    let x = rand::<f64>(5, &[4, 3], 0.1, 0.9);
    let t = rand::<f64>(6, &[4, 3], 0.0, 1.0);
    let losses: Vec<(&str, LossFn<'_>)> = vec![
        ("kl_div", &|x, t| {
            infoloss_candle::kl_div(x, t, &KlDivOptions { reduction: Reduction::None, log_target: false })
        }),
        ("binary_cross_entropy", &|x, t| infoloss_candle::binary_cross_entropy(x, t, &BceOptions::default())),
        ("binary_cross_entropy_with_logits", &|x, t| {
            infoloss_candle::binary_cross_entropy_with_logits(x, t, &BceWithLogitsOptions::default())
        }),
        ("cross_entropy_probs", &|x, t| {
            infoloss_candle::cross_entropy_probs(x, t, &CrossEntropyOptions::default())
        }),
    ];
    for (name, f) in losses {
        for (kind, (base, view)) in [("transposed", transposed(&t)), ("narrowed", narrowed(&t))] {
            let name = format!("{name} {kind} target");
            let tv = Var::from_tensor(&tensor(&t)).unwrap();
            let bv = Var::from_tensor(&tensor(&base)).unwrap();
            let xt = tensor(&x);
            let l1 = f(&xt, tv.as_tensor()).unwrap();
            let l2 = f(&xt, &view(bv.as_tensor())).unwrap();
            same(&format!("{name}: loss"), &nd::<f64>(&l2), &nd::<f64>(&l1));
            let g1 = l1.sum_all().unwrap().backward().unwrap();
            let g2 = l2.sum_all().unwrap().backward().unwrap();
            let gb = g2.get(bv.as_tensor()).unwrap();
            same(&format!("{name}: grad_target"), &nd::<f64>(&view(gb)), &grad_of::<f64>(&g1, &tv));
        }
    }
}

/// Stride-0 (broadcast) tensors are read in place: a broadcast target row, and a broadcast weight.
#[test]
fn broadcast_tensors() {
    let x = rand::<f64>(7, &[3, 4], -2.0, 2.0);
    let row = probs::<f64>(8, &[4]);
    let full = ArrayD::from_shape_fn(infoloss::ndarray::IxDyn(&[3, 4]), |i| row[[i[1]]]);
    let b = tensor(&row).broadcast_as((3, 4)).unwrap();
    assert_eq!(b.stride(), &[0, 1]);
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    let xv = Var::from_tensor(&tensor(&x)).unwrap();
    let l1 = infoloss_candle::kl_div(xv.as_tensor(), &b, &o).unwrap();
    let l2 = infoloss_candle::kl_div(xv.as_tensor(), &tensor(&full), &o).unwrap();
    same("kl_div broadcast target", &nd::<f64>(&l1), &nd::<f64>(&l2));
    // a (3, 4) BCE weight given as a broadcast (4,) row
    let xb = rand::<f64>(9, &[3, 4], 0.1, 0.9);
    let tb = rand::<f64>(10, &[3, 4], 0.0, 1.0);
    let w = tensor(&rand::<f64>(11, &[4], 0.5, 2.0));
    let wb = w.broadcast_as((3, 4)).unwrap();
    let bce = |w: &Tensor| {
        let o = BceOptions { weight: Some(w.clone()), reduction: Reduction::None };
        nd::<f64>(&infoloss_candle::binary_cross_entropy(&tensor(&xb), &tensor(&tb), &o).unwrap())
    };
    same("bce broadcast weight", &bce(&wb), &bce(&wb.contiguous().unwrap()));
    same("bce weight broadcast by infoloss", &bce(&w), &bce(&wb.contiguous().unwrap()));
    // weights that are copied into the op from other layouts: transposed, and narrowed with gaps
    let wt = tensor(&rand::<f64>(12, &[4, 3], 0.5, 2.0)).t().unwrap();
    same("bce transposed weight", &bce(&wt), &bce(&wt.contiguous().unwrap()));
    let wn = tensor(&rand::<f64>(13, &[3, 7], 0.5, 2.0)).narrow(1, 2, 4).unwrap();
    assert!(!wn.is_contiguous());
    same("bce narrowed weight", &bce(&wn), &bce(&wn.contiguous().unwrap()));
    let pw = tensor(&rand::<f64>(14, &[2, 4], 1.0, 3.0)).narrow(0, 1, 1).unwrap().squeeze(0).unwrap();
    let bcel = |pw: &Tensor| {
        let o =
            BceWithLogitsOptions { pos_weight: Some(pw.clone()), reduction: Reduction::None, weight: None };
        nd::<f64>(&infoloss_candle::binary_cross_entropy_with_logits(&tensor(&x), &tensor(&tb), &o).unwrap())
    };
    same("bce_with_logits offset pos_weight", &bcel(&pw), &bcel(&pw.contiguous().unwrap()));
}

/// Integer targets given as views (a column of a matrix, and a transposed index matrix).
#[test]
fn strided_class_index_targets() {
    let x = rand::<f64>(12, &[4, 5], -2.0, 2.0);
    let idx = classes(13, &[4, 2], 5);
    let m = index_tensor(&idx);
    let col = m.narrow(1, 1, 1).unwrap().squeeze(1).unwrap(); // stride 2, offset 1
    assert_eq!((col.stride(), col.layout().start_offset()), (&[2usize][..], 1));
    let o = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
    let l1 = infoloss_candle::cross_entropy(&tensor(&x), &col, &o).unwrap();
    let l2 = infoloss_candle::cross_entropy(&tensor(&x), &col.contiguous().unwrap(), &o).unwrap();
    same("cross_entropy strided target", &nd::<f64>(&l1), &nd::<f64>(&l2));
    let want = infoloss::cross_entropy(
        x.view(),
        idx.index_axis(infoloss::ndarray::Axis(1), 1),
        &infoloss::CrossEntropyOptions { reduction: Reduction::None, ..Default::default() },
    )
    .unwrap()
    .into_array();
    same("cross_entropy strided target vs core", &nd::<f64>(&l1), &want);
}
