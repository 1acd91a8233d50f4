//! The candle front end's conformance adapter: every case of every fixture file in `testdata/` (read and
//! compared by `infoloss-conformance`; schema in `testdata/README.md`) whose function has a candle op runs
//! through it; the others count as not supported. The candle forward must match torch's output, and the
//! gradients `Tensor::backward()` leaves on the input (and on a float target) must match torch's for the
//! fixture's upstream gradient, at the file's tolerances, NaN and ±inf exactly where torch has them. Inputs torch
//! rejects must give `Err`.

use crate::support;

use candle_core::{Tensor, Var};
use infoloss::ndarray::{ArrayD, IxDyn};
use infoloss_candle::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, DistillOptions, Divergence, KlDivOptions,
    LinearDistillOptions, LinearHead, NllOptions, Reduction, Sharpen, SparseTeacher, TeacherTopK,
    UdaNormalize, UdaOptions,
};
use infoloss_conformance::{Arr, Case, Checker, Fx, Support};

/// Element types of the fixtures, usable as candle tensors.
trait Fc: Fx + support::F {}
impl Fc for f32 {}
impl Fc for f64 {}

fn reduction(case: &Case) -> Reduction {
    case.opt_str("reduction").parse().expect("reduction name")
}

fn float_tensor<T: Fc>(a: &Arr) -> Tensor {
    support::tensor(&a.to_nd::<T>())
}

fn opt_tensor<T: Fc>(case: &Case, name: &str) -> Option<Tensor> {
    case.opt_arr(name).map(|a| float_tensor::<T>(&a))
}

/// The target: an i64 tensor for class indices, a float variable otherwise.
enum Target {
    Index(Tensor),
    Float(Var),
}

impl Target {
    fn tensor(&self) -> &Tensor {
        match self {
            Target::Index(t) => t,
            Target::Float(v) => v.as_tensor(),
        }
    }
}

/// Runs one loss case: forward, then `backward()` of `Σ loss·grad_output`, compared with torch.
fn check_loss<T: Fc>(
    ck: &mut Checker,
    case: &Case,
    target: Option<Target>,
    f: &dyn Fn(&Tensor, Option<&Tensor>) -> candle_core::Result<Tensor>,
) {
    let x = Var::from_tensor(&float_tensor::<T>(&case.arg("input"))).expect("input tensor");
    let t = target.as_ref().map(Target::tensor);
    let result = f(x.as_tensor(), t);
    if case.is_error() {
        ck.expect_err("forward", result, case.message());
        return;
    }
    let Some(loss) = ck.result("forward", result) else { return };
    ck.field("output", &support::nd::<T>(&loss));
    let go: ArrayD<T> = case.grad_output().expect("grad_output").to_nd();
    if go.shape() != loss.dims() {
        ck.fail(format!("output shape {:?} but grad_output shape {:?}", loss.dims(), go.shape()));
        return;
    }
    let Some(grads) = ck.result("backward", support::objective(&loss, &go).backward()) else { return };
    match (grads.get(x.as_tensor()), case.expects("grad_input")) {
        (Some(g), true) => ck.field("grad_input", &support::nd::<T>(g)),
        (None, true) => ck.fail("backward() did not reach the input"),
        _ => {}
    }
    if let (Some(Target::Float(tv)), true) = (&target, case.expects("grad_target")) {
        match grads.get(tv.as_tensor()) {
            Some(g) => ck.field("grad_target", &support::nd::<T>(g)),
            None => ck.fail("backward() did not reach the target"),
        }
    }
}

fn float_target<T: Fc>(case: &Case) -> Option<Target> {
    Some(Target::Float(Var::from_tensor(&float_tensor::<T>(&case.arg("target"))).expect("target")))
}

fn index_target(case: &Case) -> Option<Target> {
    Some(Target::Index(support::index_tensor(&case.ints("target").expect("class-index target"))))
}

fn run_case<T: Fc>(ck: &mut Checker, case: &Case) -> Support {
    let function = case.function();
    let red = || reduction(case);
    match function {
        "log_softmax" | "softmax" | "logsumexp" => {
            let dim = isize::try_from(case.opt_i64("dim")).expect("dim fits isize");
            let f = match function {
                "log_softmax" => infoloss_candle::log_softmax,
                "softmax" => infoloss_candle::softmax,
                _ => infoloss_candle::logsumexp,
            };
            check_loss::<T>(ck, case, None, &|x, _| f(x, dim));
        }
        "nll_loss" => {
            let o = NllOptions {
                weight: opt_tensor::<T>(case, "weight"),
                ignore_index: case.opt_i64("ignore_index"),
                reduction: red(),
            };
            check_loss::<T>(ck, case, index_target(case), &|x, t| {
                infoloss_candle::nll_loss(x, t.expect("target"), &o)
            });
        }
        "cross_entropy" | "cross_entropy_probs" => {
            let o = CrossEntropyOptions {
                weight: opt_tensor::<T>(case, "weight"),
                ignore_index: case.opt_i64("ignore_index"),
                reduction: red(),
                label_smoothing: case.opt_f64("label_smoothing"),
            };
            // F.cross_entropy itself: the target's dtype selects class indices or probabilities
            let target =
                if function == "cross_entropy" { index_target(case) } else { float_target::<T>(case) };
            check_loss::<T>(ck, case, target, &|x, t| {
                infoloss_candle::cross_entropy(x, t.expect("target"), &o)
            });
        }
        "kl_div" => {
            let o = KlDivOptions { reduction: red(), log_target: case.opt_bool("log_target") };
            check_loss::<T>(ck, case, float_target::<T>(case), &|x, t| {
                infoloss_candle::kl_div(x, t.expect("target"), &o)
            });
        }
        "binary_cross_entropy" => {
            let o = BceOptions { weight: opt_tensor::<T>(case, "weight"), reduction: red() };
            check_loss::<T>(ck, case, float_target::<T>(case), &|x, t| {
                infoloss_candle::binary_cross_entropy(x, t.expect("target"), &o)
            });
        }
        "binary_cross_entropy_with_logits" => {
            let o = BceWithLogitsOptions {
                weight: opt_tensor::<T>(case, "weight"),
                pos_weight: opt_tensor::<T>(case, "pos_weight"),
                reduction: red(),
            };
            check_loss::<T>(ck, case, float_target::<T>(case), &|x, t| {
                infoloss_candle::binary_cross_entropy_with_logits(x, t.expect("target"), &o)
            });
        }
        "distill" | "distill_topk" => run_distill::<T>(ck, case),
        "uda_consistency" => run_uda::<T>(ck, case),
        "linear_distill" | "linear_distill_topk" => run_linear_distill::<T>(ck, case),
        _ => return Support::NotSupported,
    }
    Support::Ran
}

fn distill_options(case: &Case) -> DistillOptions {
    DistillOptions {
        temperature: case.opt_f64("temperature"),
        t2_scaling: case.opt_bool("t2_scaling"),
        divergence: match case.opt_str("divergence") {
            "forward_kl" => Divergence::ForwardKl,
            "reverse_kl" => Divergence::ReverseKl,
            "jsd" => Divergence::GeneralizedJsd { beta: case.opt_f64("beta") },
            "tvd" => Divergence::TotalVariation,
            d => panic!("divergence {d}"),
        },
        alpha: case.opt_f64("alpha"),
        ignore_index: case.opt_i64("ignore_index"),
        reduction: reduction(case),
        normalizer: case.opt_f64_or_none("normalizer"),
        logit_scale: case.opt_f64_or_none("logit_scale").unwrap_or(1.0),
        softcap: case.opt_f64_or_none("softcap"),
    }
}

/// Distillation through `Tensor::backward()` of `Σ loss·upstream` (upstream 1 when the case has none).
fn run_distill<T: Fc>(ck: &mut Checker, case: &Case) {
    let s: ArrayD<T> = case.arg("student").to_nd();
    let sv = Var::from_tensor(&support::tensor(&s)).expect("student");
    let labels = case.ints("labels").map(|l| support::index_tensor(&l));
    let opts = distill_options(case);
    let result = if case.function() == "distill_topk" {
        let teacher = SparseTeacher {
            indices: support::index_tensor(&case.ints("topk_indices").expect("topk_indices")),
            logprobs: float_tensor::<T>(&case.arg("topk_logprobs")),
            add_tail: case.opt_bool("add_tail"),
        };
        infoloss_candle::distill_topk(sv.as_tensor(), &teacher, labels.as_ref(), &opts)
    } else {
        let t = float_tensor::<T>(&case.arg("teacher"));
        infoloss_candle::distill(sv.as_tensor(), &t, labels.as_ref(), &opts)
    };
    if case.is_error() {
        ck.expect_err("forward", result, case.message());
        return;
    }
    let Some(loss) = ck.result("forward", result) else { return };
    ck.field("output", &support::nd::<T>(&loss));
    let up: ArrayD<T> = match case.grad_output() {
        Some(u) => u.to_nd(),
        None => ArrayD::from_elem(IxDyn(loss.dims()), <T as Fx>::from_f64(1.0)),
    };
    let Some(grads) = ck.result("backward", support::objective(&loss, &up).backward()) else { return };
    match grads.get(sv.as_tensor()) {
        Some(g) => ck.field("grad_input", &support::nd::<T>(g)),
        None => ck.fail("backward() did not reach the student"),
    }
}

/// The fused linear distillations through `Tensor::backward()` of `Σ loss·upstream` at each of the case's chunk
/// sizes and the automatic one: the gradients of the student's hidden states, weight and bias.
fn run_linear_distill<T: Fc>(ck: &mut Checker, case: &Case) {
    let var = |name: &str| Var::from_tensor(&float_tensor::<T>(&case.arg(name))).expect(name);
    let (xs, ws) = (var("student_hidden"), var("student_weight"));
    let bs =
        case.input("student_bias").map(|b| Var::from_tensor(&float_tensor::<T>(&b)).expect("student_bias"));
    let student =
        LinearHead { hidden: xs.as_tensor(), weight: ws.as_tensor(), bias: bs.as_ref().map(Var::as_tensor) };
    let labels = case.ints("labels").map(|l| support::index_tensor(&l));
    let mut chunks: Vec<Option<usize>> = case.chunk_sizes().into_iter().map(Some).collect();
    if !case.is_error() || chunks.is_empty() {
        chunks.push(None);
    }
    for chunk in chunks {
        let what = format!("chunk {chunk:?}");
        let opts = LinearDistillOptions { distill: distill_options(case), chunk_size: chunk };
        let result = if case.function() == "linear_distill_topk" {
            let teacher = SparseTeacher {
                indices: support::index_tensor(&case.ints("topk_indices").expect("topk_indices")),
                logprobs: float_tensor::<T>(&case.arg("topk_logprobs")),
                add_tail: case.opt_bool("add_tail"),
            };
            infoloss_candle::linear_distill_topk(&student, &teacher, labels.as_ref(), &opts)
        } else {
            let (xt, wt) = (
                float_tensor::<T>(&case.arg("teacher_hidden")),
                float_tensor::<T>(&case.arg("teacher_weight")),
            );
            let bt = case.input("teacher_bias").map(|b| float_tensor::<T>(&b));
            let teacher = LinearHead { hidden: &xt, weight: &wt, bias: bt.as_ref() };
            let tk = case.opt("teacher_topk");
            let topk = (!tk.is_null()).then(|| TeacherTopK {
                k: usize::try_from(infoloss_conformance::int(&tk["k"])).expect("k"),
                add_tail: tk["add_tail"].as_bool().expect("add_tail"),
            });
            infoloss_candle::linear_distill(&student, &teacher, labels.as_ref(), topk, &opts)
        };
        let up = |loss: &Tensor| -> ArrayD<T> {
            match case.grad_output() {
                Some(u) => u.to_nd(),
                None => ArrayD::from_elem(IxDyn(loss.dims()), <T as Fx>::from_f64(1.0)),
            }
        };
        if case.is_error() {
            // an error of the forward, or an upstream gradient of the wrong shape, which candle's product with
            // the loss rejects before the op's backward sees it
            let r = result.and_then(|loss| (&loss * support::tensor(&up(&loss)))?.sum_all()?.backward());
            ck.expect_err(&what, r, case.message());
            continue;
        }
        let Some(loss) = ck.result(&what, result) else { continue };
        ck.field("output", &support::nd::<T>(&loss));
        let Some(grads) = ck.result(&what, support::objective(&loss, &up(&loss)).backward()) else {
            continue;
        };
        let named = [("grad_hidden", Some(&xs)), ("grad_weight", Some(&ws)), ("grad_bias", bs.as_ref())];
        for (field, v) in named {
            match v.map(|v| grads.get(v.as_tensor())) {
                Some(Some(g)) => ck.field(field, &support::nd::<T>(g)),
                Some(None) => ck.fail(format!("{what}: backward() did not reach {field}")),
                None => {}
            }
        }
    }
}

/// UDA consistency: the forward's outputs, `backward()` (upstream 1) and `backward()` of `loss·upstream`.
fn run_uda<T: Fc>(ck: &mut Checker, case: &Case) {
    let ori = float_tensor::<T>(&case.arg("ori"));
    let aug = Var::from_tensor(&float_tensor::<T>(&case.arg("aug"))).expect("aug");
    let opts = UdaOptions {
        temperature: case.opt_f64("temperature"),
        sharpen: if case.opt_str("sharpen") == "target" { Sharpen::Target } else { Sharpen::Augmented },
        confidence_threshold: case.opt_f64_or_none("confidence_threshold"),
        normalize: if case.opt_str("normalize") == "kept_rows" {
            UdaNormalize::KeptRows
        } else {
            UdaNormalize::AllRows
        },
    };
    let result = infoloss_candle::uda_consistency(&ori, aug.as_tensor(), &opts);
    let Some(out) = ck.result("forward", result) else { return };
    ck.field("output", &support::nd::<T>(&out.loss));
    ck.field("row_kl", &support::nd::<T>(&out.row_kl));
    ck.field("mask", &support::nd::<T>(&out.mask));
    ck.field_values(
        "kept",
        "kept",
        &Arr { shape: vec![], data: vec![out.kept as f64], alt: Default::default() },
    );
    let Some(grads) = ck.result("backward", out.loss.backward()) else { return };
    match grads.get(aug.as_tensor()) {
        Some(g) => ck.field("grad_input_unit", &support::nd::<T>(g)),
        None => ck.fail("backward() did not reach the augmented logits"),
    }
    if grads.get(&ori).is_some() {
        ck.fail("the original logits got a gradient");
    }
    // torch's loss.backward(upstream) for a non-unit upstream gradient
    let up: ArrayD<T> = case.grad_output().expect("grad_output").to_nd();
    let Some(grads) = ck.result("backward(upstream)", support::objective(&out.loss, &up).backward()) else {
        return;
    };
    match grads.get(aug.as_tensor()) {
        Some(g) => ck.field("grad_input", &support::nd::<T>(g)),
        None => ck.fail("backward(upstream) did not reach the augmented logits"),
    }
}

fn adapter(ck: &mut Checker, case: &Case) -> Support {
    match case.dtype() {
        "float32" => run_case::<f32>(ck, case),
        _ => run_case::<f64>(ck, case),
    }
}

/// The candle ops: the softmax family, the class-index and probability losses, KL, both BCEs, distillation,
/// UDA and the fused linear distillations. The information measures, the cross-entropy extras and
/// `linear_cross_entropy` have no candle op.
fn supports(function: &str) -> bool {
    !matches!(
        function,
        "entr"
            | "rel_entr"
            | "entropy"
            | "shannon_cross_entropy"
            | "jensenshannon"
            | "self_information"
            | "cross_entropy_extras"
            | "linear_cross_entropy"
    )
}

infoloss_conformance::fixture_tests!("candle", supports, adapter);
