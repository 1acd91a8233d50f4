//! The committed PyTorch fixture suite (`testdata/*.json`, written by `scripts/gen_fixtures.py`) run through the
//! candle front end: for every case of a function the candle API covers, the candle forward must match torch's
//! output, and the gradients `Tensor::backward()` leaves on the input (and on a float target) must match
//! torch's `grad_input` (`grad_target`) for the fixture's upstream gradient — at rtol 1e-6 / atol 1e-7 (f32),
//! 1e-12 (f64), NaN and ±inf exactly where torch has them. Inputs torch rejects must give `Err`.
//!
//! The JSON plumbing (exact number parsing, tolerant comparison) is the core crate's fixture helper module,
//! shared rather than copied.

use crate::common;
use crate::support;

use candle_core::{Tensor, Var};
use common::{Arr, Checker, Fx, int, int_array, load, num, string};
use infoloss::ndarray::ArrayD;
use infoloss_candle::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, KlDivOptions, NllOptions, Reduction,
};
use serde_json::Value;

/// Element types of the fixtures, usable as candle tensors.
trait Fc: Fx + support::F {}
impl Fc for f32 {}
impl Fc for f64 {}

fn arr(v: &Value) -> Arr {
    Arr::parse(v)
}

fn opt<'a>(case: &'a Value, name: &str) -> &'a Value {
    &case["options"][name]
}

fn reduction(case: &Value) -> Reduction {
    string(opt(case, "reduction"), "reduction").parse().expect("reduction name")
}

fn expected(case: &Value, what: &str) -> Option<Arr> {
    match &case["expected"][what] {
        Value::Null => None,
        v => Some(Arr::parse(v).with_f32_reference(&case["f32_reference"][what])),
    }
}

fn is_error(case: &Value) -> bool {
    case["error"].as_bool().unwrap_or(false)
}

fn float_tensor<T: Fc>(a: &Arr) -> Tensor {
    support::tensor(&a.to_nd::<T>())
}

fn opt_tensor<T: Fc>(case: &Value, name: &str) -> Option<Tensor> {
    match opt(case, name) {
        Value::Null => None,
        v => Some(float_tensor::<T>(&arr(v))),
    }
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
    case: &Value,
    target: Option<Target>,
    f: &dyn Fn(&Tensor, Option<&Tensor>) -> candle_core::Result<Tensor>,
) {
    let x = Var::from_tensor(&float_tensor::<T>(&arr(&case["inputs"]["input"]))).expect("input tensor");
    let t = target.as_ref().map(Target::tensor);
    let result = f(x.as_tensor(), t);
    if is_error(case) {
        ck.expect_err("forward", result, case["message"].as_str().unwrap_or(""));
        return;
    }
    let Some(loss) = ck.result("forward", result) else { return };
    if let Some(exp) = expected(case, "output") {
        ck.array("output", &support::nd::<T>(&loss), &exp);
    }
    let go: ArrayD<T> = arr(&case["grad_output"]).to_nd();
    if go.shape() != loss.dims() {
        ck.fail(format!("output shape {:?} but grad_output shape {:?}", loss.dims(), go.shape()));
        return;
    }
    let Some(grads) = ck.result("backward", support::objective(&loss, &go).backward()) else { return };
    match (grads.get(x.as_tensor()), expected(case, "grad_input")) {
        (Some(g), Some(exp)) => ck.array("grad_input", &support::nd::<T>(g), &exp),
        (None, Some(_)) => ck.fail("backward() did not reach the input"),
        _ => {}
    }
    if let (Some(Target::Float(tv)), Some(exp)) = (&target, expected(case, "grad_target")) {
        match grads.get(tv.as_tensor()) {
            Some(g) => ck.array("grad_target", &support::nd::<T>(g), &exp),
            None => ck.fail("backward() did not reach the target"),
        }
    }
}

fn float_target<T: Fc>(case: &Value) -> Option<Target> {
    Some(Target::Float(
        Var::from_tensor(&float_tensor::<T>(&arr(&case["inputs"]["target"]))).expect("target"),
    ))
}

fn index_target(case: &Value) -> Option<Target> {
    Some(Target::Index(support::index_tensor(&int_array(&case["inputs"]["target"]))))
}

fn run_case<T: Fc>(ck: &mut Checker, case: &Value) -> bool {
    let function = string(&case["function"], "function");
    let red = || reduction(case);
    match function {
        "log_softmax" | "softmax" | "logsumexp" => {
            let dim = isize::try_from(int(opt(case, "dim"))).expect("dim fits isize");
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
                ignore_index: int(opt(case, "ignore_index")),
                reduction: red(),
            };
            check_loss::<T>(ck, case, index_target(case), &|x, t| {
                infoloss_candle::nll_loss(x, t.expect("target"), &o)
            });
        }
        "cross_entropy" | "cross_entropy_probs" => {
            let o = CrossEntropyOptions {
                weight: opt_tensor::<T>(case, "weight"),
                ignore_index: int(opt(case, "ignore_index")),
                reduction: red(),
                label_smoothing: num(opt(case, "label_smoothing")),
            };
            // F.cross_entropy itself: the target's dtype selects class indices or probabilities
            let target =
                if function == "cross_entropy" { index_target(case) } else { float_target::<T>(case) };
            check_loss::<T>(ck, case, target, &|x, t| {
                infoloss_candle::cross_entropy(x, t.expect("target"), &o)
            });
        }
        "kl_div" => {
            let o = KlDivOptions {
                reduction: red(),
                log_target: opt(case, "log_target").as_bool().expect("log_target"),
            };
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
        _ => return false,
    }
    true
}

/// Runs every case of `file` whose function the candle API covers; returns how many ran.
fn run_file(file: &str) -> usize {
    let doc = load(file);
    let cases = doc["cases"].as_array().unwrap_or_else(|| panic!("{file}: no cases array"));
    assert_eq!(cases.len() as i64, int(&doc["count"]), "{file}: count field");
    let mut ck = Checker::new();
    let mut ran = 0;
    for case in cases {
        let name = string(&case["name"], "name");
        let dtype = string(&case["dtype"], "dtype");
        ck.begin(name, dtype);
        let covered = match dtype {
            "float32" => run_case::<f32>(&mut ck, case),
            "float64" => run_case::<f64>(&mut ck, case),
            d => panic!("{name}: unknown dtype {d}"),
        };
        ran += usize::from(covered);
        ck.end();
    }
    // `Checker::finish` counts every case begun; uncovered ones compared nothing and cannot fail.
    ck.finish(file);
    ran
}

/// Every case of the file is one the candle API covers.
fn run_all(file: &str) {
    let total = usize::try_from(int(&load(file)["count"])).expect("count");
    assert_eq!(run_file(file), total, "{file}: cases not run through candle");
}

#[test]
fn fixtures_softmax() {
    run_all("softmax.json");
}

#[test]
fn fixtures_nll_loss() {
    run_all("nll_loss.json");
}

#[test]
fn fixtures_cross_entropy() {
    run_all("cross_entropy.json");
}

#[test]
fn fixtures_kl_div() {
    run_all("kl_div.json");
}

#[test]
fn fixtures_binary_cross_entropy() {
    run_all("binary_cross_entropy.json");
}

#[test]
fn fixtures_binary_cross_entropy_with_logits() {
    run_all("binary_cross_entropy_with_logits.json");
}
