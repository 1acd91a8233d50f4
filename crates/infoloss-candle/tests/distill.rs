//! Distillation and UDA through candle (their PyTorch fixtures run in `fixtures.rs`): exact agreement with infoloss's `distill_backward` / `distill_topk_backward`
//! for the upstream gradient candle sends, finite differences (f64) for every divergence, half precision,
//! and what does not get a gradient (teacher, labels, UDA's original logits).

use crate::support;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use infoloss::GradOutput;
use infoloss::ndarray::{Array1, Array2, ArrayD, IxDyn};
use infoloss_candle::{
    DistillOptions, Divergence, Reduction, Sharpen, SparseTeacher, UdaNormalize, UdaOptions, distill,
    distill_topk, uda_consistency,
};
use support::*;

// ---------------------------------------------------------------------------------------------------------------
// Exactly the core's backward, for every divergence and reduction; finite differences in f64
// ---------------------------------------------------------------------------------------------------------------

const DIVERGENCES: [Divergence; 5] = [
    Divergence::ForwardKl,
    Divergence::ReverseKl,
    Divergence::GeneralizedJsd { beta: 0.5 },
    Divergence::GeneralizedJsd { beta: 0.2 },
    Divergence::TotalVariation,
];

fn option_grid() -> Vec<DistillOptions> {
    let mut v = vec![];
    for divergence in DIVERGENCES {
        for (temperature, alpha) in [(1.0, 1.0), (2.5, 0.7)] {
            for reduction in [Reduction::BatchMean, Reduction::Mean, Reduction::Sum, Reduction::None] {
                v.push(DistillOptions { temperature, alpha, divergence, reduction, ..Default::default() });
            }
        }
    }
    v
}

/// The candle loss of the student `s` (variable `sv`) equals the core's `want`, and the gradient `backward()`
/// leaves for an upstream gradient (from `seed`) equals `want_grad` of it; with `fd`, also central finite
/// differences of `candle_f64` (the loss as a function of the f64 student). Returns the gradients.
#[allow(clippy::too_many_arguments)]
fn check_student<T: F>(
    name: &str,
    seed: u64,
    (s, sv): (&ArrayD<T>, &Var),
    loss: &Tensor,
    want: &ArrayD<T>,
    want_grad: &dyn Fn(&GradOutput<'_, T>) -> Array2<T>,
    fd: bool,
    candle_f64: &dyn Fn(&Tensor) -> Tensor,
) -> GradStore {
    same(&format!("{name}: loss"), &nd::<T>(loss), want);
    let up = upstream::<T>(seed, loss.dims());
    let grads = objective(loss, &up).backward().expect("backward");
    same(&format!("{name}: grad"), &grad_of::<T>(&grads, sv), &want_grad(&grad_output(&up)).into_dyn());
    if fd {
        fd_objective_agrees(name, &f64s(s), &f64s(&up), &grad_of::<f64>(&grads, sv), candle_f64);
    }
    grads
}

fn dense_exact<T: F>(fd: bool) {
    let (rows, cols) = (5, 6);
    for (n, opts) in option_grid().into_iter().enumerate() {
        let seed = 3000 + n as u64;
        let s = rand::<T>(seed, &[rows, cols], -3.0, 3.0);
        let t = rand::<T>(seed + 1, &[rows, cols], -3.0, 3.0);
        let mut labels = classes(seed + 2, &[rows], cols);
        labels[[1]] = -100; // an ignored row
        let l1: Array1<i64> = labels.clone().into_dimensionality().expect("1-D");
        let name = format!("distill {opts:?}");
        let sv = Var::from_tensor(&tensor(&s)).expect("student");
        let tv = Var::from_tensor(&tensor(&t)).expect("teacher");
        let lt = index_tensor(&labels).to_dtype(DType::I32).expect("i32 labels");
        let loss = distill(sv.as_tensor(), tv.as_tensor(), Some(&lt), &opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = infoloss::distill(s.view(), t.view(), Some(l1.view()), &opts).expect("core").into_array();
        let t64 = tensor(&f64s(&t));
        let grads = check_student(
            &name,
            seed + 3,
            (&s, &sv),
            &loss,
            &want,
            &|go| infoloss::distill_backward(s.view(), t.view(), Some(l1.view()), &opts, go).expect("core"),
            fd,
            &|x| distill(x, &t64, Some(&lt), &opts).expect("forward"),
        );
        assert!(grads.get(tv.as_tensor()).is_none(), "{name}: the teacher got a gradient");
    }
}

f32_and_f64_tests!(
    dense_exact:
    distill_gradients_are_the_cores_f32,
    distill_gradients_are_the_cores_f64_and_finite_differences
);

#[test]
fn distill_in_half_precision() {
    dense_exact::<half::f16>(false);
    dense_exact::<half::bf16>(false);
}

fn topk_exact<T: F>(fd: bool) {
    let (rows, cols, k) = (4, 7, 3);
    for (n, opts) in option_grid().into_iter().enumerate() {
        for add_tail in [false, true] {
            let seed = 4000 + 2 * n as u64 + u64::from(add_tail);
            let s = rand::<T>(seed, &[rows, cols], -3.0, 3.0);
            // the teacher's top-k: k distinct classes per row, log-probabilities of a random teacher
            let tl = rand::<f64>(seed + 1, &[rows, cols], -3.0, 3.0);
            let lq_full = infoloss::log_softmax(tl.view(), 1).expect("log_softmax");
            let mut idx = Array2::<i64>::zeros((rows, k));
            let mut lq = Array2::<T>::from_elem((rows, k), T::from_f64(0.0));
            for r in 0..rows {
                for j in 0..k {
                    let c = (r + 2 * j) % cols;
                    idx[[r, j]] = c as i64;
                    lq[[r, j]] = T::from_f64(lq_full[[r, c]]);
                }
            }
            let labels: Array1<i64> = (0..rows as i64).map(|r| (r * 3) % cols as i64).collect();
            let name = format!("distill_topk tail={add_tail} {opts:?}");
            let sv = Var::from_tensor(&tensor(&s)).expect("student");
            let teacher = SparseTeacher {
                indices: index_tensor(&idx.clone().into_dyn()).to_dtype(DType::U32).expect("u32"),
                logprobs: tensor(&lq.clone().into_dyn()),
                add_tail,
            };
            let lt = index_tensor(&labels.clone().into_dyn());
            let loss = distill_topk(sv.as_tensor(), &teacher, Some(&lt), &opts)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let core_teacher = infoloss::SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail };
            let want =
                infoloss::distill_topk(s.view(), &core_teacher, Some(labels.view()), &opts).expect("core");
            check_student(
                &name,
                seed + 3,
                (&s, &sv),
                &loss,
                &want.into_array(),
                &|go| {
                    infoloss::distill_topk_backward(s.view(), &core_teacher, Some(labels.view()), &opts, go)
                        .expect("core")
                },
                fd,
                &|x| distill_topk(x, &teacher, Some(&lt), &opts).expect("forward"),
            );
        }
    }
}

f32_and_f64_tests!(
    topk_exact:
    distill_topk_gradients_are_the_cores_f32,
    distill_topk_gradients_are_the_cores_f64_and_finite_differences
);

// ---------------------------------------------------------------------------------------------------------------
// UDA
// ---------------------------------------------------------------------------------------------------------------

fn uda_grid() -> Vec<UdaOptions> {
    let mut v = vec![];
    for sharpen in [Sharpen::Target, Sharpen::Augmented] {
        for temperature in [1.0, 0.4] {
            for confidence_threshold in [None, Some(0.45)] {
                for normalize in [UdaNormalize::KeptRows, UdaNormalize::AllRows] {
                    v.push(UdaOptions { temperature, sharpen, confidence_threshold, normalize });
                }
            }
        }
    }
    v
}

/// Loss, mask, kept and row_kl are the core's; the gradient (upstream 1) is the core's exactly, and for an
/// upstream `g ≠ 1` it is the core's `uda_consistency_backward(g)` exactly; finite differences agree in f64.
fn uda_exact<T: F>(fd: bool) {
    for (n, opts) in uda_grid().into_iter().enumerate() {
        let seed = 5000 + n as u64;
        let ori = rand::<T>(seed, &[6, 4], -2.5, 2.5);
        let aug = rand::<T>(seed + 1, &[6, 4], -2.5, 2.5);
        let name = format!("uda {opts:?}");
        let core = infoloss::uda_consistency_with_grad(ori.view(), aug.view(), &opts).expect("core");
        let ov = Var::from_tensor(&tensor(&ori)).expect("ori");
        let av = Var::from_tensor(&tensor(&aug)).expect("aug");
        let out =
            uda_consistency(ov.as_tensor(), av.as_tensor(), &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        same(&format!("{name}: loss"), &nd::<T>(&out.loss), &ArrayD::from_elem(IxDyn(&[]), core.loss));
        same(&format!("{name}: mask"), &nd::<T>(&out.mask), &core.mask.clone().into_dyn());
        same(&format!("{name}: row_kl"), &nd::<T>(&out.row_kl), &core.row_kl.clone().into_dyn());
        assert_eq!(out.kept, core.kept, "{name}: kept");
        let grads = out.loss.backward().expect("backward");
        same(&format!("{name}: grad"), &grad_of::<T>(&grads, &av), &core.grad.clone().into_dyn());
        assert!(grads.get(ov.as_tensor()).is_none(), "{name}: the original logits got a gradient");
        // upstream 1.75
        let up = ArrayD::from_elem(IxDyn(&[]), T::from_f64(1.75));
        let g2 = grad_of::<T>(&objective(&out.loss, &up).backward().expect("backward"), &av);
        let want = infoloss::uda::uda_consistency_backward(
            ori.view(),
            aug.view(),
            &opts,
            &GradOutput::Scalar(T::from_f64(1.75)),
        )
        .expect("core backward")
        .into_dyn();
        same(&format!("{name}: grad ×1.75"), &g2, &want);
        if fd {
            let o64 = tensor(&f64s(&ori));
            fd_agrees(&name, &f64s(&aug), &grad_of::<f64>(&grads, &av), |x| {
                uda_consistency(&o64, &tensor(x), &opts)
                    .expect("forward")
                    .loss
                    .to_scalar::<f64>()
                    .expect("scalar")
            });
        }
    }
}

f32_and_f64_tests!(uda_exact: uda_f32, uda_f64_and_finite_differences);

#[test]
fn uda_half_precision() {
    uda_exact::<half::f16>(false);
    uda_exact::<half::bf16>(false);
}

/// A teacher that is part of a graph (not detached) still gets no gradient, and the distilled student's
/// gradient flows back into the parameters that produced it.
#[test]
fn distillation_training_graph() {
    let dev = candle_core::Device::Cpu;
    let w = Var::from_tensor(&tensor(&rand::<f64>(20, &[3, 4], -1.0, 1.0))).expect("w");
    let wt = Var::from_tensor(&tensor(&rand::<f64>(21, &[3, 4], -1.0, 1.0))).expect("teacher w");
    let x = tensor(&rand::<f64>(22, &[5, 3], -1.0, 1.0));
    let s = x.matmul(w.as_tensor()).expect("student logits");
    let t = x.matmul(wt.as_tensor()).expect("teacher logits");
    let y = Tensor::new(&[0u32, 1, 2, 3, 0], &dev).expect("labels");
    let opts = DistillOptions { temperature: 2.0, alpha: 0.5, ..Default::default() };
    let loss = distill(&s, &t, Some(&y), &opts).expect("distill");
    let grads = loss.backward().expect("backward");
    assert!(grads.get(wt.as_tensor()).is_none(), "the teacher's weights got a gradient");
    let gs = infoloss::distill_with_grad(
        nd::<f64>(&s).view(),
        nd::<f64>(&t).view(),
        Some(Array1::from(vec![0i64, 1, 2, 3, 0]).view()),
        &opts,
    )
    .expect("core")
    .1;
    let want = nd::<f64>(&x.t().expect("xᵀ").matmul(&tensor(&gs.into_dyn())).expect("matmul"));
    close("dW", &grad_of::<f64>(&grads, &w), &want, 1e-14, 1e-15);
}
