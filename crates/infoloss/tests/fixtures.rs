//! Runs every reference case in `testdata/*.json` (PyTorch 2.15 / SciPy 1.17, written by
//! `scripts/gen_fixtures.py`; schema in `testdata/README.md`) against the public API.
//!
//! Each case is dispatched on its `function` and `dtype`. Outputs and gradients must satisfy
//! `|got − expected| ≤ atol + rtol·|expected|` (f32: rtol 1e-6, atol 1e-7; f64: rtol 1e-12, atol 1e-12), with NaN
//! and ±inf exactly where torch has them; inputs torch rejects must give `Err` from every entry point.
//! `_with_grad` must agree with the forward and with `_backward(GradOutput::one())`.
//! One test per fixture file; each lists every failing case before failing.

use crate::common;

use common::{Arr, Checker, Fx, int, int_array, load, num, string};
use infoloss::ndarray::{ArrayD, Ix1};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, EntropyOptions, GradOutput, JensenShannonOptions,
    KlDivOptions, Loss, NllOptions, Reduction, Result,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------------------------
// Case fields
// ---------------------------------------------------------------------------------------------------------------

fn input(case: &Value) -> Arr {
    Arr::parse(&case["inputs"]["input"])
}

fn target(case: &Value) -> Arr {
    Arr::parse(&case["inputs"]["target"])
}

fn has_target(case: &Value) -> bool {
    !case["inputs"]["target"].is_null()
}

fn opt<'a>(case: &'a Value, name: &str) -> &'a Value {
    &case["options"][name]
}

fn reduction(case: &Value) -> Reduction {
    string(opt(case, "reduction"), "reduction").parse().expect("reduction name")
}

fn opt_array(case: &Value, name: &str) -> Option<Arr> {
    match opt(case, name) {
        Value::Null => None,
        v => Some(Arr::parse(v)),
    }
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

fn torch_message(case: &Value) -> String {
    case["message"].as_str().unwrap_or("").to_string()
}

fn base(case: &Value) -> Option<f64> {
    match opt(case, "base") {
        Value::Null => None,
        v => Some(num(v)),
    }
}

fn axis(case: &Value, name: &str) -> isize {
    isize::try_from(int(opt(case, name))).expect("axis fits isize")
}

// ---------------------------------------------------------------------------------------------------------------
// Losses: forward, backward (input and target), _with_grad
// ---------------------------------------------------------------------------------------------------------------

type Fwd<'a, T> = Box<dyn Fn() -> Result<Loss<T>> + 'a>;
type Bwd<'a, T> = Box<dyn Fn(&GradOutput<'_, T>) -> Result<ArrayD<T>> + 'a>;
type WithGrad<'a, T> = Box<dyn Fn() -> Result<(Loss<T>, ArrayD<T>)> + 'a>;

/// The entry points of one loss, bound to a case's inputs and options.
struct LossApi<'a, T> {
    forward: Fwd<'a, T>,
    backward: Bwd<'a, T>,
    backward_target: Option<Bwd<'a, T>>,
    with_grad: WithGrad<'a, T>,
}

fn check_loss<T: Fx>(ck: &mut Checker, case: &Value, api: LossApi<'_, T>) {
    let red = reduction(case);
    if is_error(case) {
        let msg = torch_message(case);
        ck.expect_err("forward", (api.forward)(), &msg);
        ck.expect_err("backward", (api.backward)(&GradOutput::one()), &msg);
        if let Some(bt) = &api.backward_target {
            ck.expect_err("backward_target", bt(&GradOutput::one()), &msg);
        }
        ck.expect_err("with_grad", (api.with_grad)(), &msg);
        return;
    }
    let exp_out = expected(case, "output").expect("expected.output");
    let exp_gi = expected(case, "grad_input").expect("expected.grad_input");
    let go_arr = Arr::parse(&case["grad_output"]);
    let go_nd: ArrayD<T> = go_arr.to_nd();
    let go = if red == Reduction::None {
        GradOutput::Array(go_nd.view())
    } else {
        GradOutput::Scalar(T::from_f64(go_arr.scalar()))
    };

    // forward
    if let Some(out) = ck.result("forward", (api.forward)()) {
        if red != Reduction::None && !matches!(out, Loss::Scalar(_)) {
            ck.fail(format!("forward: reduction {red} returned Loss::Elementwise"));
        }
        ck.array("output", &out.into_array(), &exp_out);
    }
    // backward wrt input
    let grad_one = ck.result("backward(one)", (api.backward)(&GradOutput::one()));
    if let Some(g) = ck.result("backward", (api.backward)(&go)) {
        ck.array("grad_input", &g, &exp_gi);
    }
    // backward wrt target
    match (&api.backward_target, expected(case, "grad_target")) {
        (Some(bt), Some(exp_gt)) => {
            if let Some(g) = ck.result("backward_target", bt(&go)) {
                ck.array("grad_target", &g, &exp_gt);
            }
        }
        (None, Some(_)) => ck.fail("fixture has grad_target but the function has no target backward"),
        _ => {}
    }
    // _with_grad = forward + backward(1)
    if let Some((loss, grad)) = ck.result("with_grad", (api.with_grad)()) {
        if red != Reduction::None && !matches!(loss, Loss::Scalar(_)) {
            ck.fail(format!("with_grad: reduction {red} returned Loss::Elementwise"));
        }
        ck.array("with_grad.loss", &loss.into_array(), &exp_out);
        if let Some(g1) = &grad_one {
            ck.agree("with_grad.grad vs backward(one)", &grad, g1);
        }
    }
}

fn run_nll<T: Fx>(ck: &mut Checker, case: &Value) {
    let x: ArrayD<T> = input(case).to_nd();
    let t = int_array(&case["inputs"]["target"]);
    let w =
        opt_array(case, "weight").map(|a| a.to_nd::<T>().into_dimensionality::<Ix1>().expect("1-D weight"));
    let o = NllOptions {
        weight: w.as_ref().map(|w| w.view()),
        ignore_index: int(opt(case, "ignore_index")),
        reduction: reduction(case),
    };
    let (x, t, o) = (&x, &t, &o);
    check_loss(
        ck,
        case,
        LossApi {
            forward: Box::new(move || infoloss::nll_loss(x.view(), t.view(), o)),
            backward: Box::new(move |g| infoloss::nll_loss_backward(x.view(), t.view(), o, g)),
            backward_target: None,
            with_grad: Box::new(move || infoloss::nll_loss_with_grad(x.view(), t.view(), o)),
        },
    );
}

fn ce_options<'a, T: Fx>(
    case: &Value,
    w: &'a Option<infoloss::ndarray::Array1<T>>,
) -> CrossEntropyOptions<'a, T> {
    CrossEntropyOptions {
        weight: w.as_ref().map(|w| w.view()),
        ignore_index: int(opt(case, "ignore_index")),
        reduction: reduction(case),
        label_smoothing: num(opt(case, "label_smoothing")),
    }
}

fn run_cross_entropy<T: Fx>(ck: &mut Checker, case: &Value) {
    let x: ArrayD<T> = input(case).to_nd();
    let t = int_array(&case["inputs"]["target"]);
    let w =
        opt_array(case, "weight").map(|a| a.to_nd::<T>().into_dimensionality::<Ix1>().expect("1-D weight"));
    let o = ce_options(case, &w);
    let (x, t, o) = (&x, &t, &o);
    check_loss(
        ck,
        case,
        LossApi {
            forward: Box::new(move || infoloss::cross_entropy(x.view(), t.view(), o)),
            backward: Box::new(move |g| infoloss::cross_entropy_backward(x.view(), t.view(), o, g)),
            backward_target: None,
            with_grad: Box::new(move || infoloss::cross_entropy_with_grad(x.view(), t.view(), o)),
        },
    );
}

fn run_cross_entropy_probs<T: Fx>(ck: &mut Checker, case: &Value) {
    let x: ArrayD<T> = input(case).to_nd();
    let t: ArrayD<T> = target(case).to_nd();
    let w =
        opt_array(case, "weight").map(|a| a.to_nd::<T>().into_dimensionality::<Ix1>().expect("1-D weight"));
    let o = ce_options(case, &w);
    let (x, t, o) = (&x, &t, &o);
    check_loss(
        ck,
        case,
        LossApi {
            forward: Box::new(move || infoloss::cross_entropy_probs(x.view(), t.view(), o)),
            backward: Box::new(move |g| infoloss::cross_entropy_probs_backward(x.view(), t.view(), o, g)),
            backward_target: Some(Box::new(move |g| {
                infoloss::cross_entropy_probs_backward_target(x.view(), t.view(), o, g)
            })),
            with_grad: Box::new(move || infoloss::cross_entropy_probs_with_grad(x.view(), t.view(), o)),
        },
    );
}

fn run_kl_div<T: Fx>(ck: &mut Checker, case: &Value) {
    let x: ArrayD<T> = input(case).to_nd();
    let t: ArrayD<T> = target(case).to_nd();
    let o = KlDivOptions {
        reduction: reduction(case),
        log_target: opt(case, "log_target").as_bool().expect("log_target"),
    };
    let (x, t, o) = (&x, &t, &o);
    check_loss(
        ck,
        case,
        LossApi {
            forward: Box::new(move || infoloss::kl_div(x.view(), t.view(), o)),
            backward: Box::new(move |g| infoloss::kl_div_backward(x.view(), t.view(), o, g)),
            backward_target: Some(Box::new(move |g| {
                infoloss::kl_div_backward_target(x.view(), t.view(), o, g)
            })),
            with_grad: Box::new(move || infoloss::kl_div_with_grad(x.view(), t.view(), o)),
        },
    );
}

fn run_bce<T: Fx>(ck: &mut Checker, case: &Value) {
    let x: ArrayD<T> = input(case).to_nd();
    let t: ArrayD<T> = target(case).to_nd();
    let w = opt_array(case, "weight").map(|a| a.to_nd::<T>());
    let o = BceOptions { weight: w.as_ref().map(|w| w.view()), reduction: reduction(case) };
    let (x, t, o) = (&x, &t, &o);
    check_loss(
        ck,
        case,
        LossApi {
            forward: Box::new(move || infoloss::binary_cross_entropy(x.view(), t.view(), o)),
            backward: Box::new(move |g| infoloss::binary_cross_entropy_backward(x.view(), t.view(), o, g)),
            backward_target: Some(Box::new(move |g| {
                infoloss::binary_cross_entropy_backward_target(x.view(), t.view(), o, g)
            })),
            with_grad: Box::new(move || infoloss::binary_cross_entropy_with_grad(x.view(), t.view(), o)),
        },
    );
}

fn run_bce_logits<T: Fx>(ck: &mut Checker, case: &Value) {
    let x: ArrayD<T> = input(case).to_nd();
    let t: ArrayD<T> = target(case).to_nd();
    let w = opt_array(case, "weight").map(|a| a.to_nd::<T>());
    let pw = opt_array(case, "pos_weight").map(|a| a.to_nd::<T>());
    let o = BceWithLogitsOptions {
        weight: w.as_ref().map(|w| w.view()),
        pos_weight: pw.as_ref().map(|p| p.view()),
        reduction: reduction(case),
    };
    let (x, t, o) = (&x, &t, &o);
    check_loss(
        ck,
        case,
        LossApi {
            forward: Box::new(move || infoloss::binary_cross_entropy_with_logits(x.view(), t.view(), o)),
            backward: Box::new(move |g| {
                infoloss::binary_cross_entropy_with_logits_backward(x.view(), t.view(), o, g)
            }),
            backward_target: Some(Box::new(move |g| {
                infoloss::binary_cross_entropy_with_logits_backward_target(x.view(), t.view(), o, g)
            })),
            with_grad: Box::new(move || {
                infoloss::binary_cross_entropy_with_logits_with_grad(x.view(), t.view(), o)
            }),
        },
    );
}

// ---------------------------------------------------------------------------------------------------------------
// logsumexp / log_softmax / softmax
// ---------------------------------------------------------------------------------------------------------------

fn run_softmax_family<T: Fx>(ck: &mut Checker, case: &Value, function: &str) {
    let x: ArrayD<T> = input(case).to_nd();
    let dim = axis(case, "dim");
    let forward = |x: &ArrayD<T>| match function {
        "logsumexp" => infoloss::logsumexp(x.view(), dim),
        "log_softmax" => infoloss::log_softmax(x.view(), dim),
        _ => infoloss::softmax(x.view(), dim),
    };
    // logsumexp's backward takes the input, the others take their own output
    let backward = |x: &ArrayD<T>, y: &ArrayD<T>, g: &ArrayD<T>| match function {
        "logsumexp" => infoloss::logsumexp_backward(x.view(), g.view(), dim),
        "log_softmax" => infoloss::log_softmax_backward(y.view(), g.view(), dim),
        _ => infoloss::softmax_backward(y.view(), g.view(), dim),
    };
    if is_error(case) {
        let msg = torch_message(case);
        ck.expect_err("forward", forward(&x), &msg);
        ck.expect_err("backward", backward(&x, &x, &x), &msg);
        return;
    }
    let go: ArrayD<T> = Arr::parse(&case["grad_output"]).to_nd();
    if let Some(y) = ck.result("forward", forward(&x)) {
        ck.array("output", &y, &expected(case, "output").expect("expected.output"));
        if let Some(g) = ck.result("backward", backward(&x, &y, &go)) {
            ck.array("grad_input", &g, &expected(case, "grad_input").expect("expected.grad_input"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Information measures (SciPy semantics)
// ---------------------------------------------------------------------------------------------------------------

fn run_info<T: Fx>(ck: &mut Checker, case: &Value, function: &str) {
    let p: ArrayD<T> = input(case).to_nd();
    let q: Option<ArrayD<T>> = has_target(case).then(|| target(case).to_nd());
    let err = is_error(case);
    let msg = torch_message(case);
    let go: Option<ArrayD<T>> =
        (!case["grad_output"].is_null()).then(|| Arr::parse(&case["grad_output"]).to_nd());
    let exp_out = expected(case, "output");
    let exp_gi = expected(case, "grad_input");
    let exp_gt = expected(case, "grad_target");

    // compare a forward result, or require an error
    macro_rules! forward {
        ($r:expr) => {{
            let r = $r;
            if err {
                ck.expect_err("forward", r, &msg);
            } else if let Some(out) = ck.result("forward", r) {
                ck.array("output", &out, exp_out.as_ref().expect("expected.output"));
            }
        }};
    }
    // compare (grad_input, grad_target) results, or require an error
    macro_rules! backward2 {
        ($r:expr) => {{
            let r = $r;
            if err {
                ck.expect_err("backward", r, &msg);
            } else if let Some((gp, gq)) = ck.result("backward", r) {
                ck.array("grad_input", &gp, exp_gi.as_ref().expect("expected.grad_input"));
                match (gq, &exp_gt) {
                    (Some(gq), Some(e)) => ck.array("grad_target", &gq, e),
                    (None, None) => {}
                    (Some(_), None) => {
                        ck.fail("backward returned a target gradient the fixture does not expect")
                    }
                    (None, Some(_)) => ck.fail("backward returned no target gradient"),
                }
            }
        }};
    }
    let go_or_p = || go.clone().unwrap_or_else(|| p.clone());
    match function {
        "entr" => {
            assert!(!err, "entr cannot fail");
            let out = infoloss::entr(p.view());
            ck.array("output", &out, exp_out.as_ref().expect("expected.output"));
            if let Some(g) = ck.result("backward", infoloss::entr_backward(p.view(), go_or_p().view())) {
                ck.array("grad_input", &g, exp_gi.as_ref().expect("expected.grad_input"));
            }
        }
        "rel_entr" => {
            let q = q.as_ref().expect("rel_entr has a second argument");
            forward!(infoloss::rel_entr(p.view(), q.view()));
            let g = go_or_p();
            backward2!(infoloss::rel_entr_backward(p.view(), q.view(), g.view()).map(|(a, b)| (a, Some(b))));
        }
        "entropy" => {
            let o = EntropyOptions { base: base(case), axis: axis(case, "axis") };
            forward!(infoloss::entropy(p.view(), q.as_ref().map(|q| q.view()), &o));
            let g = go_or_p();
            backward2!(infoloss::entropy_backward(p.view(), q.as_ref().map(|q| q.view()), &o, g.view()));
        }
        "shannon_cross_entropy" => {
            let q = q.as_ref().expect("shannon_cross_entropy has a second argument");
            let o = EntropyOptions { base: base(case), axis: axis(case, "axis") };
            forward!(infoloss::shannon_cross_entropy(p.view(), q.view(), &o));
            let g = go_or_p();
            backward2!(
                infoloss::info::shannon_cross_entropy_backward(p.view(), q.view(), &o, g.view())
                    .map(|(a, b)| (a, Some(b)))
            );
        }
        "jensenshannon" => {
            let q = q.as_ref().expect("jensenshannon has a second argument");
            let o = JensenShannonOptions {
                base: base(case),
                axis: axis(case, "axis"),
                keepdims: opt(case, "keepdims").as_bool().expect("keepdims"),
            };
            forward!(infoloss::jensenshannon(p.view(), q.view(), &o));
            let g = go_or_p();
            backward2!(
                infoloss::jensenshannon_backward(p.view(), q.view(), &o, g.view()).map(|(a, b)| (a, Some(b)))
            );
        }
        "self_information" => {
            forward!(infoloss::self_information(p.view(), base(case)));
            let g = go_or_p();
            backward2!(
                infoloss::info::self_information_backward(p.view(), base(case), g.view())
                    .map(|a| (a, None::<ArrayD<T>>))
            );
        }
        f => panic!("unknown info function {f}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Dispatch and one test per file
// ---------------------------------------------------------------------------------------------------------------

fn run_case<T: Fx>(ck: &mut Checker, case: &Value) {
    let function = string(&case["function"], "function");
    match function {
        "logsumexp" | "log_softmax" | "softmax" => run_softmax_family::<T>(ck, case, function),
        "nll_loss" => run_nll::<T>(ck, case),
        "cross_entropy" => run_cross_entropy::<T>(ck, case),
        "cross_entropy_probs" => run_cross_entropy_probs::<T>(ck, case),
        "kl_div" => run_kl_div::<T>(ck, case),
        "binary_cross_entropy" => run_bce::<T>(ck, case),
        "binary_cross_entropy_with_logits" => run_bce_logits::<T>(ck, case),
        "entr" | "rel_entr" | "entropy" | "shannon_cross_entropy" | "jensenshannon" | "self_information" => {
            run_info::<T>(ck, case, function)
        }
        f => panic!("{}: unknown function {f}", ck.case),
    }
}

fn run_file(file: &str) {
    let doc = load(file);
    let cases = doc["cases"].as_array().unwrap_or_else(|| panic!("{file}: no cases array"));
    assert_eq!(cases.len() as i64, int(&doc["count"]), "{file}: count field");
    let mut ck = Checker::new();
    for case in cases {
        let name = string(&case["name"], "name");
        let dtype = string(&case["dtype"], "dtype");
        ck.begin(name, dtype);
        match dtype {
            "float32" => run_case::<f32>(&mut ck, case),
            "float64" => run_case::<f64>(&mut ck, case),
            d => panic!("{name}: unknown dtype {d}"),
        }
        ck.end();
    }
    ck.finish(file);
}

/// The fixture files and the test that runs each.
const FILES: &[&str] = &[
    "softmax.json",
    "nll_loss.json",
    "cross_entropy.json",
    "kl_div.json",
    "binary_cross_entropy.json",
    "binary_cross_entropy_with_logits.json",
    "info.json",
];

#[test]
fn fixtures_softmax() {
    run_file("softmax.json");
}

#[test]
fn fixtures_nll_loss() {
    run_file("nll_loss.json");
}

#[test]
fn fixtures_cross_entropy() {
    run_file("cross_entropy.json");
}

#[test]
fn fixtures_kl_div() {
    run_file("kl_div.json");
}

#[test]
fn fixtures_binary_cross_entropy() {
    run_file("binary_cross_entropy.json");
}

#[test]
fn fixtures_binary_cross_entropy_with_logits() {
    run_file("binary_cross_entropy_with_logits.json");
}

#[test]
fn fixtures_info() {
    run_file("info.json");
}

/// Every file in testdata/ written by `scripts/gen_fixtures.py` has a test above, and the suite is as large as
/// promised. (Other generators' files in testdata/, with their own schema and runner, are left alone.)
#[test]
fn every_fixture_file_is_run() {
    let mut ours: Vec<String> = std::fs::read_dir(common::testdata_dir())
        .expect("testdata/ exists")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .filter(|n| load(n)["generator"].as_str() == Some("scripts/gen_fixtures.py"))
        .collect();
    ours.sort();
    let mut known: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(ours, known, "the gen_fixtures.py files in testdata/ and the FILES list differ");
    let total: i64 = FILES.iter().map(|f| int(&load(f)["count"])).sum();
    assert!(total >= 1000, "only {total} fixture cases");
}

/// The exact-number plumbing: numbers are read with correct rounding, strings are left alone.
#[test]
fn number_quoting_is_exact() {
    let text = r#"{"a": [0.10490011715303971, -1.2654214710460525e-3, 5], "s": "x -1.5 \"2\"", "n": "nan"}"#;
    let v: Value = serde_json::from_str(&common::quote_numbers(text)).expect("valid");
    assert_eq!(num(&v["a"][0]).to_bits(), 0.10490011715303971f64.to_bits());
    assert_eq!(num(&v["a"][1]).to_bits(), (-1.2654214710460525e-3f64).to_bits());
    assert_eq!(int(&v["a"][2]), 5);
    assert_eq!(v["s"].as_str(), Some("x -1.5 \"2\""));
    assert!(num(&v["n"]).is_nan());
}
