//! Distillation and UDA through candle: the PyTorch fixtures (`testdata/distill.json`, `testdata/uda.json`)
//! through `Tensor::backward()`, exact agreement with infoloss's `distill_backward` / `distill_topk_backward`
//! for the upstream gradient candle sends, finite differences (f64) for every divergence, half precision,
//! and what does not get a gradient (teacher, labels, UDA's original logits).

use crate::common;
use crate::support;

use candle_core::{DType, Tensor, Var};
use common::{Arr, Checker, int, load, num, string};
use infoloss::GradOutput;
use infoloss::ndarray::{Array1, Array2, ArrayD, IxDyn};
use infoloss_candle::{
    DistillOptions, Divergence, Reduction, Sharpen, SparseTeacher, UdaNormalize, UdaOptions, distill,
    distill_topk, uda_consistency,
};
use serde_json::Value;
use support::*;

// ---------------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------------

fn flat(v: &Value, shape: &[usize]) -> Arr {
    let data: Vec<f64> = v.as_array().expect("array").iter().map(num).collect();
    Arr { shape: shape.to_vec(), data, alt: Default::default() }
}

fn dims(c: &Value) -> (usize, usize) {
    let s = c["shape"].as_array().expect("shape");
    (usize::try_from(int(&s[0])).expect("rows"), usize::try_from(int(&s[1])).expect("cols"))
}

fn distill_options(o: &Value) -> DistillOptions {
    let beta = num(&o["beta"]);
    DistillOptions {
        temperature: num(&o["temperature"]),
        t2_scaling: o["t2_scaling"].as_bool().expect("t2_scaling"),
        divergence: match string(&o["divergence"], "divergence") {
            "forward_kl" => Divergence::ForwardKl,
            "reverse_kl" => Divergence::ReverseKl,
            "jsd" => Divergence::GeneralizedJsd { beta },
            "tvd" => Divergence::TotalVariation,
            d => panic!("divergence {d}"),
        },
        alpha: num(&o["alpha"]),
        ignore_index: int(&o["ignore_index"]),
        reduction: string(&o["reduction"], "reduction").parse().expect("reduction"),
        normalizer: (!o["normalizer"].is_null()).then(|| num(&o["normalizer"])),
    }
}

fn run_distill_case<T: F + common::Fx>(ck: &mut Checker, c: &Value) {
    let (rows, cols) = dims(c);
    let s: ArrayD<T> = flat(&c["student"], &[rows, cols]).to_nd();
    let sv = Var::from_tensor(&tensor(&s)).expect("student");
    let labels = (!c["labels"].is_null()).then(|| {
        let v: Vec<i64> = c["labels"].as_array().expect("labels").iter().map(int).collect();
        index_tensor(&ArrayD::from_shape_vec(IxDyn(&[rows]), v).expect("labels shape"))
    });
    let opts = distill_options(&c["options"]);
    let result = match c.get("topk").filter(|t| !t.is_null()) {
        Some(tk) => {
            let k = usize::try_from(int(&tk["k"])).expect("k");
            let idx: Vec<i64> = tk["indices"].as_array().expect("indices").iter().map(int).collect();
            let teacher = SparseTeacher {
                indices: index_tensor(
                    &ArrayD::from_shape_vec(IxDyn(&[rows, k]), idx).expect("indices shape"),
                ),
                logprobs: tensor(&flat(&tk["logprobs"], &[rows, k]).to_nd::<T>()),
                add_tail: tk["add_tail"].as_bool().expect("add_tail"),
            };
            distill_topk(sv.as_tensor(), &teacher, labels.as_ref(), &opts)
        }
        None => {
            let t = tensor(&flat(&c["teacher"], &[rows, cols]).to_nd::<T>());
            distill(sv.as_tensor(), &t, labels.as_ref(), &opts)
        }
    };
    let Some(loss) = ck.result("forward", result) else { return };
    let exp_loss = flat(&c["loss"], loss.dims());
    ck.array("loss", &nd::<T>(&loss), &exp_loss);
    let up: ArrayD<T> = if c["upstream"].is_null() {
        ArrayD::from_elem(IxDyn(loss.dims()), <T as common::Fx>::from_f64(1.0))
    } else {
        flat(&c["upstream"], loss.dims()).to_nd()
    };
    let Some(grads) = ck.result("backward", objective(&loss, &up).backward()) else { return };
    match grads.get(sv.as_tensor()) {
        Some(g) => ck.array("grad", &nd::<T>(g), &flat(&c["grad"], &[rows, cols])),
        None => ck.fail("backward() did not reach the student"),
    }
}

#[test]
fn distill_fixtures_through_candle() {
    let doc = load("distill.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut ck = Checker::new();
    for c in cases {
        let dtype = string(&c["dtype"], "dtype");
        ck.begin(string(&c["name"], "name"), if dtype == "f32" { "float32" } else { "float64" });
        match dtype {
            "f32" => run_distill_case::<f32>(&mut ck, c),
            _ => run_distill_case::<f64>(&mut ck, c),
        }
        ck.end();
    }
    ck.finish("distill.json");
}

fn run_uda_case<T: F + common::Fx>(ck: &mut Checker, c: &Value) {
    let (rows, cols) = dims(c);
    let ori = tensor(&flat(&c["ori"], &[rows, cols]).to_nd::<T>());
    let aug = Var::from_tensor(&tensor(&flat(&c["aug"], &[rows, cols]).to_nd::<T>())).expect("aug");
    let o = &c["options"];
    let opts = UdaOptions {
        temperature: num(&o["temperature"]),
        sharpen: if string(&o["sharpen"], "sharpen") == "target" {
            Sharpen::Target
        } else {
            Sharpen::Augmented
        },
        confidence_threshold: (!o["confidence_threshold"].is_null()).then(|| num(&o["confidence_threshold"])),
        normalize: if string(&o["normalize"], "normalize") == "kept_rows" {
            UdaNormalize::KeptRows
        } else {
            UdaNormalize::AllRows
        },
    };
    let Some(out) = ck.result("forward", uda_consistency(&ori, aug.as_tensor(), &opts)) else { return };
    ck.array("loss", &nd::<T>(&out.loss), &flat(&c["loss"], &[]));
    ck.array("row_kl", &nd::<T>(&out.row_kl), &flat(&c["row_kl"], &[rows]));
    ck.array("mask", &nd::<T>(&out.mask), &flat(&c["mask"], &[rows]));
    if out.kept as i64 != int(&c["kept"]) {
        ck.fail(format!("kept {} != {}", out.kept, int(&c["kept"])));
    }
    let Some(grads) = ck.result("backward", out.loss.backward()) else { return };
    match grads.get(aug.as_tensor()) {
        Some(g) => ck.array("grad", &nd::<T>(g), &flat(&c["grad"], &[rows, cols])),
        None => ck.fail("backward() did not reach the augmented logits"),
    }
    if grads.get(&ori).is_some() {
        ck.fail("the original logits got a gradient");
    }
    // torch's loss.backward(upstream) for a non-unit upstream gradient
    let up = ArrayD::from_elem(IxDyn(&[]), <T as common::Fx>::from_f64(num(&c["upstream"])));
    let Some(grads) = ck.result("backward(upstream)", objective(&out.loss, &up).backward()) else { return };
    match grads.get(aug.as_tensor()) {
        Some(g) => ck.array("grad_upstream", &nd::<T>(g), &flat(&c["grad_upstream"], &[rows, cols])),
        None => ck.fail("backward(upstream) did not reach the augmented logits"),
    }
}

#[test]
fn uda_fixtures_through_candle() {
    let doc = load("uda.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut ck = Checker::new();
    for c in cases {
        let dtype = string(&c["dtype"], "dtype");
        ck.begin(string(&c["name"], "name"), if dtype == "f32" { "float32" } else { "float64" });
        match dtype {
            "f32" => run_uda_case::<f32>(&mut ck, c),
            _ => run_uda_case::<f64>(&mut ck, c),
        }
        ck.end();
    }
    ck.finish("uda.json");
}

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
        same(&format!("{name}: loss"), &nd::<T>(&loss), &want);
        let up = upstream::<T>(seed + 3, loss.dims());
        let grads = objective(&loss, &up).backward().expect("backward");
        let go =
            if loss.rank() == 0 { GradOutput::Scalar(up[IxDyn(&[])]) } else { GradOutput::Array(up.view()) };
        let want_g =
            infoloss::distill_backward(s.view(), t.view(), Some(l1.view()), &opts, &go).expect("core");
        same(&format!("{name}: grad"), &grad_of::<T>(&grads, &sv), &want_g.into_dyn());
        assert!(grads.get(tv.as_tensor()).is_none(), "{name}: the teacher got a gradient");
        if fd {
            let s64 = s.mapv(|v| candle_core::WithDType::to_f64(v));
            let t64 = tensor(&t.mapv(|v| candle_core::WithDType::to_f64(v)));
            let up64 = up.mapv(|v| candle_core::WithDType::to_f64(v));
            let g = grad_of::<f64>(&grads, &sv);
            let fdg = finite_diff(&s64, 1e-6, |x| {
                let l = distill(&tensor(x), &t64, Some(&lt), &opts).expect("forward");
                objective(&l, &up64).to_scalar::<f64>().expect("scalar")
            });
            close(&format!("{name}: finite differences"), &g, &fdg, 1e-6, 1e-7);
        }
    }
}

#[test]
fn distill_gradients_are_the_cores_f32() {
    dense_exact::<f32>(false);
}

#[test]
fn distill_gradients_are_the_cores_f64_and_finite_differences() {
    dense_exact::<f64>(true);
}

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
            same(&format!("{name}: loss"), &nd::<T>(&loss), &want.into_array());
            let up = upstream::<T>(seed + 3, loss.dims());
            let grads = objective(&loss, &up).backward().expect("backward");
            let go = if loss.rank() == 0 {
                GradOutput::Scalar(up[IxDyn(&[])])
            } else {
                GradOutput::Array(up.view())
            };
            let want_g =
                infoloss::distill_topk_backward(s.view(), &core_teacher, Some(labels.view()), &opts, &go)
                    .expect("core");
            same(&format!("{name}: grad"), &grad_of::<T>(&grads, &sv), &want_g.into_dyn());
            if fd {
                let s64 = s.mapv(|v| candle_core::WithDType::to_f64(v));
                let up64 = up.mapv(|v| candle_core::WithDType::to_f64(v));
                let fdg = finite_diff(&s64, 1e-6, |x| {
                    let l = distill_topk(&tensor(x), &teacher, Some(&lt), &opts).expect("forward");
                    objective(&l, &up64).to_scalar::<f64>().expect("scalar")
                });
                close(&format!("{name}: finite differences"), &grad_of::<f64>(&grads, &sv), &fdg, 1e-6, 1e-7);
            }
        }
    }
}

#[test]
fn distill_topk_gradients_are_the_cores_f32() {
    topk_exact::<f32>(false);
}

#[test]
fn distill_topk_gradients_are_the_cores_f64_and_finite_differences() {
    topk_exact::<f64>(true);
}

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
        let core = infoloss::uda_consistency(ori.view(), aug.view(), &opts).expect("core");
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
            let a64 = aug.mapv(|v| candle_core::WithDType::to_f64(v));
            let o64 = tensor(&ori.mapv(|v| candle_core::WithDType::to_f64(v)));
            let fdg = finite_diff(&a64, 1e-6, |x| {
                uda_consistency(&o64, &tensor(x), &opts)
                    .expect("forward")
                    .loss
                    .to_scalar::<f64>()
                    .expect("scalar")
            });
            close(&format!("{name}: finite differences"), &grad_of::<f64>(&grads, &av), &fdg, 1e-6, 1e-7);
        }
    }
}

#[test]
fn uda_f32() {
    uda_exact::<f32>(false);
}

#[test]
fn uda_f64_and_finite_differences() {
    uda_exact::<f64>(true);
}

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
