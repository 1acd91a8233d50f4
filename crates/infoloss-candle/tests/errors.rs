//! Bad input gives a `candle_core::Error` carrying a message that says what is wrong — never a panic.

use crate::support;

use candle_core::{DType, Device, Tensor};
use infoloss_candle::{
    BceOptions, CrossEntropyOptions, DistillOptions, KlDivOptions, NllOptions, Reduction, SparseTeacher,
    UdaOptions,
};
use support::*;

#[track_caller]
fn err_contains<T: std::fmt::Debug>(r: candle_core::Result<T>, want: &str) {
    match r {
        Ok(v) => panic!("expected an error containing {want:?}, got Ok({v:?})"),
        Err(e) => {
            let s = e.to_string();
            assert!(s.contains(want), "error {s:?} does not contain {want:?}");
        }
    }
}

fn logits() -> Tensor {
    tensor(&rand::<f32>(1, &[3, 5], -2.0, 2.0))
}

#[test]
fn class_index_targets() {
    let x = logits();
    let dev = Device::Cpu;
    let ce = CrossEntropyOptions::default();
    err_contains(
        infoloss_candle::cross_entropy(&x, &Tensor::new(&[0i64, 7, 1], &dev).unwrap(), &ce),
        "cross_entropy: target 7 at [1] is out of range for 5 classes",
    );
    err_contains(
        infoloss_candle::nll_loss(&x, &Tensor::new(&[0u8, 1, 9], &dev).unwrap(), &NllOptions::default()),
        "target 9 at [2] is out of range for 5 classes",
    );
    // float targets are class probabilities for cross_entropy, but nll_loss needs indices
    err_contains(
        infoloss_candle::nll_loss(&x, &Tensor::new(&[0f32, 1., 2.], &dev).unwrap(), &NllOptions::default()),
        "nll_loss: target has dtype F32; class-index targets must be an integer tensor",
    );
    err_contains(infoloss_candle::cross_entropy(&x, &Tensor::new(&[0i64, 1], &dev).unwrap(), &ce), "[2]");
}

#[test]
fn dtypes_must_agree_and_be_float() {
    let x = logits();
    let t64 = tensor(&probs::<f64>(2, &[3, 5]));
    err_contains(
        infoloss_candle::kl_div(&x, &t64, &KlDivOptions::default()),
        "kl_div: target has dtype F64, expected F32",
    );
    let xi = x.to_dtype(DType::U32).unwrap();
    err_contains(
        infoloss_candle::log_softmax(&xi, 1),
        "log_softmax: input has dtype U32; expected a float tensor (f32, f64, f16 or bf16)",
    );
    let w = tensor(&rand::<f64>(3, &[5], 0.5, 1.5));
    let o = CrossEntropyOptions { weight: Some(w), ..Default::default() };
    err_contains(
        infoloss_candle::cross_entropy(&x, &Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap(), &o),
        "cross_entropy: weight has dtype F64 but the input has dtype F32",
    );
}

#[test]
fn shapes_and_options() {
    let x = logits();
    let dev = Device::Cpu;
    let t = Tensor::new(&[0u32, 1, 2], &dev).unwrap();
    let w2 = tensor(&rand::<f32>(3, &[1, 5], 0.5, 1.5));
    err_contains(
        infoloss_candle::cross_entropy(
            &x,
            &t,
            &CrossEntropyOptions { weight: Some(w2), ..Default::default() },
        ),
        "cross_entropy: weight has shape [1, 5] (2 dimensions); expected 1 dimension",
    );
    err_contains(
        infoloss_candle::cross_entropy(
            &x,
            &t,
            &CrossEntropyOptions { label_smoothing: 1.5, ..Default::default() },
        ),
        "label_smoothing",
    );
    err_contains(
        infoloss_candle::cross_entropy(
            &x,
            &t,
            &CrossEntropyOptions { reduction: Reduction::BatchMean, ..Default::default() },
        ),
        "batchmean is not a valid value for reduction",
    );
    let p = tensor(&rand::<f32>(4, &[3, 4], 0.1, 0.9));
    let q = tensor(&rand::<f32>(4, &[3, 5], 0.1, 0.9));
    err_contains(infoloss_candle::binary_cross_entropy(&q, &p, &BceOptions::default()), "[3, 4]");
    err_contains(infoloss_candle::binary_cross_entropy(&q, &p, &BceOptions::default()), "[3, 5]");
    let bad = Tensor::new(&[0.5f32, 1.5], &dev).unwrap();
    err_contains(
        infoloss_candle::binary_cross_entropy(
            &bad,
            &Tensor::new(&[0f32, 1.], &dev).unwrap(),
            &BceOptions::default(),
        ),
        "value 1.5 at [1]",
    );
    err_contains(infoloss_candle::softmax(&x, 2), "softmax");
    err_contains(infoloss_candle::logsumexp(&x, -3), "logsumexp");
}

#[test]
fn distillation_inputs() {
    let s = logits();
    let t = tensor(&rand::<f32>(5, &[3, 5], -2.0, 2.0));
    let dev = Device::Cpu;
    err_contains(
        infoloss_candle::distill(&s, &t, None, &DistillOptions { alpha: 0.5, ..Default::default() }),
        "alpha",
    );
    err_contains(
        infoloss_candle::distill(&s, &t, None, &DistillOptions { temperature: 0.0, ..Default::default() }),
        "temperature",
    );
    let labels2 = Tensor::new(&[[0u32, 1, 2]], &dev).unwrap();
    err_contains(
        infoloss_candle::distill(&s, &t, Some(&labels2), &DistillOptions::default()),
        "distill: labels has shape [1, 3] (2 dimensions); expected 1 dimension",
    );
    err_contains(
        infoloss_candle::distill(&s, &t.narrow(1, 0, 4).unwrap(), None, &DistillOptions::default()),
        "student shape [3, 5] and teacher shape [3, 4]",
    );
    let teacher = SparseTeacher {
        indices: Tensor::new(&[[0u32, 9], [1, 2], [3, 4]], &dev).unwrap(),
        logprobs: tensor(&rand::<f32>(6, &[3, 2], -3.0, -0.1)),
        add_tail: false,
    };
    err_contains(infoloss_candle::distill_topk(&s, &teacher, None, &DistillOptions::default()), "9");
    err_contains(
        infoloss_candle::uda_consistency(&s, &t.narrow(0, 0, 2).unwrap(), &UdaOptions::default()),
        "ori_logits shape [3, 5] and aug_logits shape [2, 5]",
    );
    err_contains(
        infoloss_candle::uda_consistency(
            &s.flatten_all().unwrap(),
            &t.flatten_all().unwrap(),
            &UdaOptions::default(),
        ),
        "2 dimensions",
    );
}
