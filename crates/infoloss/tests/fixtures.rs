//! The core crate's conformance adapter: every case of every fixture file in `testdata/` (PyTorch 2.15 / SciPy
//! 1.17; schema in `testdata/README.md`) through the public API, read and compared by `infoloss-conformance`.
//!
//! Outputs and gradients must satisfy `|got − expected| ≤ atol + rtol·|expected|` at the file's tolerances
//! (f32: rtol 1e-6, atol 1e-7; f64: rtol 1e-12, atol 1e-12, 1e-13 for distillation and UDA), with NaN and ±inf
//! exactly where torch has them; inputs torch rejects must give `Err` from every entry point. `_with_grad`
//! must agree with the forward and with `_backward(GradOutput::one())`; the fused linear losses run at each of
//! the case's chunk sizes and the automatic one. One test per fixture file; each lists every failing case.

use infoloss::distill::{
    DistillOptions, Divergence, SparseTeacher, distill, distill_backward, distill_topk,
    distill_topk_backward, distill_topk_with_grad, distill_with_grad,
};
use infoloss::linear::{
    LinearDistillOutput, LinearHead, TeacherTopK, linear_distill_backward, linear_distill_topk,
};
use infoloss::ndarray::{Array, Array1, Array2, ArrayD, Dimension, Ix1, Ix2, IxDyn, arr0};
use infoloss::uda::{Sharpen, UdaNormalize, UdaOptions, uda_consistency_backward, uda_consistency_with_grad};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyExtrasOptions, CrossEntropyOptions, EntropyOptions,
    GradOutput, JensenShannonOptions, KlDivOptions, LinearCrossEntropyOptions, LinearDistillOptions,
    LinearFloat, Loss, NllOptions, Reduction, Result, cross_entropy_extras_backward,
    cross_entropy_extras_with_grad, linear_cross_entropy_backward, linear_distill,
};
use infoloss_conformance::{Arr, Case, Checker, Fx, Support, int};

// ---------------------------------------------------------------------------------------------------------------
// Case fields
// ---------------------------------------------------------------------------------------------------------------

fn reduction(case: &Case) -> Reduction {
    case.opt_str("reduction").parse().expect("reduction name")
}

fn base(case: &Case) -> Option<f64> {
    case.opt_f64_or_none("base")
}

fn axis(case: &Case, name: &str) -> isize {
    isize::try_from(case.opt_i64(name)).expect("axis fits isize")
}

fn weight1<T: Fx>(case: &Case, name: &str) -> Option<Array1<T>> {
    case.opt_arr(name).map(|a| a.to_nd::<T>().into_dimensionality::<Ix1>().expect("1-D weight"))
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

/// Runs `check_loss` on the loss `infoloss::$fwd` (with its `_backward`, `_with_grad` and, after `target`, its
/// `_backward_target`, each named in full) at the inputs `$x`, `$t` and options `$o`.
macro_rules! check_loss {
    ($ck:expr, $case:expr, $x:expr, $t:expr, $o:expr;
     $fwd:ident, $bwd:ident, $with_grad:ident $(, target: $bwd_target:ident)?) => {{
        let (x, t, o) = (&$x, &$t, &$o);
        let api = LossApi {
            forward: Box::new(move || infoloss::$fwd(x.view(), t.view(), o)),
            backward: Box::new(move |g| infoloss::$bwd(x.view(), t.view(), o, g)),
            backward_target: check_loss!(@target x, t, o $(, $bwd_target)?),
            with_grad: Box::new(move || infoloss::$with_grad(x.view(), t.view(), o)),
        };
        check_loss($ck, $case, api)
    }};
    (@target $x:ident, $t:ident, $o:ident) => {
        None
    };
    (@target $x:ident, $t:ident, $o:ident, $bwd_target:ident) => {
        Some(Box::new(move |g| infoloss::$bwd_target($x.view(), $t.view(), $o, g)))
    };
}

/// The dense input and target of a case.
fn input_and_target<T: Fx>(case: &Case) -> (ArrayD<T>, ArrayD<T>) {
    (case.arg("input").to_nd(), case.arg("target").to_nd())
}

fn check_loss<T: Fx>(ck: &mut Checker, case: &Case, api: LossApi<'_, T>) {
    let red = reduction(case);
    if case.is_error() {
        let msg = case.message().to_string();
        ck.expect_err("forward", (api.forward)(), &msg);
        ck.expect_err("backward", (api.backward)(&GradOutput::one()), &msg);
        if let Some(bt) = &api.backward_target {
            ck.expect_err("backward_target", bt(&GradOutput::one()), &msg);
        }
        ck.expect_err("with_grad", (api.with_grad)(), &msg);
        return;
    }
    let go_arr = case.grad_output().expect("grad_output");
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
        ck.field("output", &out.into_array());
    }
    // backward wrt input
    let grad_one = ck.result("backward(one)", (api.backward)(&GradOutput::one()));
    if let Some(g) = ck.result("backward", (api.backward)(&go)) {
        ck.field("grad_input", &g);
    }
    // backward wrt target
    match (&api.backward_target, case.expects("grad_target")) {
        (Some(bt), true) => {
            if let Some(g) = ck.result("backward_target", bt(&go)) {
                ck.field("grad_target", &g);
            }
        }
        (None, true) => ck.fail("fixture has grad_target but the function has no target backward"),
        _ => {}
    }
    // _with_grad = forward + backward(1)
    if let Some((loss, grad)) = ck.result("with_grad", (api.with_grad)()) {
        if red != Reduction::None && !matches!(loss, Loss::Scalar(_)) {
            ck.fail(format!("with_grad: reduction {red} returned Loss::Elementwise"));
        }
        ck.field_as("with_grad.loss", "output", &loss.into_array());
        if let Some(g1) = &grad_one {
            ck.agree("with_grad.grad vs backward(one)", &grad, g1);
        }
    }
}

fn run_nll<T: Fx>(ck: &mut Checker, case: &Case) {
    let x: ArrayD<T> = case.arg("input").to_nd();
    let t = case.ints("target").expect("class-index target");
    let w = weight1::<T>(case, "weight");
    let o = NllOptions {
        weight: w.as_ref().map(|w| w.view()),
        ignore_index: case.opt_i64("ignore_index"),
        reduction: reduction(case),
    };
    check_loss!(ck, case, x, t, o; nll_loss, nll_loss_backward, nll_loss_with_grad);
}

fn ce_options<'a, T: Fx>(
    case: &Case,
    w: &'a Option<infoloss::ndarray::Array1<T>>,
) -> CrossEntropyOptions<'a, T> {
    CrossEntropyOptions {
        weight: w.as_ref().map(|w| w.view()),
        ignore_index: case.opt_i64("ignore_index"),
        reduction: reduction(case),
        label_smoothing: case.opt_f64("label_smoothing"),
    }
}

fn run_cross_entropy<T: Fx>(ck: &mut Checker, case: &Case) {
    let x: ArrayD<T> = case.arg("input").to_nd();
    let t = case.ints("target").expect("class-index target");
    let w = weight1::<T>(case, "weight");
    let o = ce_options(case, &w);
    check_loss!(ck, case, x, t, o; cross_entropy, cross_entropy_backward, cross_entropy_with_grad);
}

fn run_cross_entropy_probs<T: Fx>(ck: &mut Checker, case: &Case) {
    let (x, t) = input_and_target::<T>(case);
    let w = weight1::<T>(case, "weight");
    let o = ce_options(case, &w);
    check_loss!(ck, case, x, t, o;
        cross_entropy_probs,
        cross_entropy_probs_backward,
        cross_entropy_probs_with_grad,
        target: cross_entropy_probs_backward_target);
}

fn run_kl_div<T: Fx>(ck: &mut Checker, case: &Case) {
    let (x, t) = input_and_target::<T>(case);
    let o = KlDivOptions { reduction: reduction(case), log_target: case.opt_bool("log_target") };
    check_loss!(ck, case, x, t, o; kl_div, kl_div_backward, kl_div_with_grad, target: kl_div_backward_target);
}

fn run_bce<T: Fx>(ck: &mut Checker, case: &Case) {
    let (x, t) = input_and_target::<T>(case);
    let w = case.opt_arr("weight").map(|a| a.to_nd::<T>());
    let o = BceOptions { weight: w.as_ref().map(|w| w.view()), reduction: reduction(case) };
    check_loss!(ck, case, x, t, o;
        binary_cross_entropy,
        binary_cross_entropy_backward,
        binary_cross_entropy_with_grad,
        target: binary_cross_entropy_backward_target);
}

fn run_bce_logits<T: Fx>(ck: &mut Checker, case: &Case) {
    let (x, t) = input_and_target::<T>(case);
    let w = case.opt_arr("weight").map(|a| a.to_nd::<T>());
    let pw = case.opt_arr("pos_weight").map(|a| a.to_nd::<T>());
    let o = BceWithLogitsOptions {
        weight: w.as_ref().map(|w| w.view()),
        pos_weight: pw.as_ref().map(|p| p.view()),
        reduction: reduction(case),
    };
    check_loss!(ck, case, x, t, o;
        binary_cross_entropy_with_logits,
        binary_cross_entropy_with_logits_backward,
        binary_cross_entropy_with_logits_with_grad,
        target: binary_cross_entropy_with_logits_backward_target);
}

// ---------------------------------------------------------------------------------------------------------------
// logsumexp / log_softmax / softmax
// ---------------------------------------------------------------------------------------------------------------

fn run_softmax_family<T: Fx>(ck: &mut Checker, case: &Case, function: &str) {
    let x: ArrayD<T> = case.arg("input").to_nd();
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
    if case.is_error() {
        let msg = case.message().to_string();
        ck.expect_err("forward", forward(&x), &msg);
        ck.expect_err("backward", backward(&x, &x, &x), &msg);
        return;
    }
    let go: ArrayD<T> = case.grad_output().expect("grad_output").to_nd();
    if let Some(y) = ck.result("forward", forward(&x)) {
        ck.field("output", &y);
        if let Some(g) = ck.result("backward", backward(&x, &y, &go)) {
            ck.field("grad_input", &g);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Information measures (SciPy semantics)
// ---------------------------------------------------------------------------------------------------------------

fn run_info<T: Fx>(ck: &mut Checker, case: &Case, function: &str) {
    let p: ArrayD<T> = case.arg("input").to_nd();
    let q: Option<ArrayD<T>> = case.input("target").is_some().then(|| case.arg("target").to_nd());
    let err = case.is_error();
    let msg = case.message().to_string();
    let go: Option<ArrayD<T>> = case.grad_output().map(|a| a.to_nd());
    let exp_gt = case.expects("grad_target");

    // compare a forward result, or require an error
    macro_rules! forward {
        ($r:expr) => {{
            let r = $r;
            if err {
                ck.expect_err("forward", r, &msg);
            } else if let Some(out) = ck.result("forward", r) {
                ck.field("output", &out);
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
                ck.field("grad_input", &gp);
                match (gq, exp_gt) {
                    (Some(gq), true) => ck.field("grad_target", &gq),
                    (None, false) => {}
                    (Some(_), false) => {
                        ck.fail("backward returned a target gradient the fixture does not expect")
                    }
                    (None, true) => ck.fail("backward returned no target gradient"),
                }
            }
        }};
    }
    let go_or_p = || go.clone().unwrap_or_else(|| p.clone());
    match function {
        "entr" => {
            assert!(!err, "entr cannot fail");
            let out = infoloss::entr(p.view());
            ck.field("output", &out);
            if let Some(g) = ck.result("backward", infoloss::entr_backward(p.view(), go_or_p().view())) {
                ck.field("grad_input", &g);
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
                keepdims: case.opt_bool("keepdims"),
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

// ---------------------------------------------------------------------------------------------------------------
// Cross-entropy extras and the fused linear losses
// ---------------------------------------------------------------------------------------------------------------

fn matrix<T: Fx>(case: &Case, name: &str) -> Array2<T> {
    case.arg(name).to_nd::<T>().into_dimensionality::<Ix2>().expect("2-D")
}

fn vector<T: Fx>(case: &Case, name: &str) -> Option<Array1<T>> {
    case.input(name).map(|a| a.to_nd::<T>().into_dimensionality::<Ix1>().expect("1-D"))
}

/// Class indices as a vector, whatever the record's shape (error cases hold wrong shapes on purpose).
fn labels(case: &Case, name: &str) -> Option<Array1<i64>> {
    case.ints(name).map(|a| a.iter().copied().collect())
}

fn dynamic<T: Clone, D: Dimension>(a: &Array<T, D>) -> ArrayD<T> {
    a.clone().into_dyn()
}

/// The case's upstream gradient: a scalar when 0-d, an array otherwise, 1 when the case has none.
fn upstream<T: Fx>(go: &Option<ArrayD<T>>) -> GradOutput<'_, T> {
    match go {
        Some(a) if a.ndim() == 0 => GradOutput::Scalar(a[IxDyn(&[])]),
        Some(a) => GradOutput::Array(a.view()),
        None => GradOutput::one(),
    }
}

fn ce_extras_options<'a, T: Fx>(case: &Case, w: Option<&'a Array1<T>>) -> CrossEntropyExtrasOptions<'a, T> {
    CrossEntropyExtrasOptions {
        weight: w.map(|w| w.view()),
        ignore_index: case.opt_i64("ignore_index"),
        reduction: reduction(case),
        label_smoothing: case.opt_f64("label_smoothing"),
        lse_square_scale: case.opt_f64("lse_square_scale"),
        softcap: case.opt_f64_or_none("softcap"),
        return_lse: true,
        return_token_accuracy: true,
    }
}

fn run_ce_extras<T: Fx>(ck: &mut Checker, case: &Case) {
    let x = matrix::<T>(case, "input");
    let y = labels(case, "target").expect("target");
    let w = weight1::<T>(case, "weight");
    let o = ce_extras_options(case, w.as_ref());
    if case.is_error() {
        ck.expect_err("forward", cross_entropy_extras_with_grad(x.view(), y.view(), &o), case.message());
        let r = cross_entropy_extras_backward(x.view(), y.view(), &o, &GradOutput::one());
        ck.expect_err("backward", r, case.message());
        return;
    }
    let Some(out) = ck.result("forward", cross_entropy_extras_with_grad(x.view(), y.view(), &o)) else {
        return;
    };
    ck.field("output", &out.loss.clone().into_array());
    ck.field("z_loss", &out.z_loss.clone().into_array());
    ck.field("lse", &dynamic(out.lse.as_ref().expect("lse")));
    ck.field("token_accuracy", &out.token_accuracy.clone().expect("accuracy").into_array());
    let go = case.grad_output().map(|a| a.to_nd::<T>());
    if let Some(g) =
        ck.result("backward", cross_entropy_extras_backward(x.view(), y.view(), &o, &upstream(&go)))
    {
        ck.field("grad_input", &dynamic(&g));
    }
    // the gradient of the one-call function is backward(1)
    if let Ok(g1) = cross_entropy_extras_backward(x.view(), y.view(), &o, &GradOutput::one()) {
        ck.identical("cross_entropy_extras grad vs backward(1)", &dynamic(&g1), &dynamic(&out.grad));
    }
}

/// The case's chunk sizes, then the automatic one (error cases with chunk sizes only at those).
fn chunk_sizes(case: &Case) -> Vec<Option<usize>> {
    let mut v: Vec<Option<usize>> = case.chunk_sizes().into_iter().map(Some).collect();
    if !case.is_error() || v.is_empty() {
        v.push(None);
    }
    v
}

fn run_linear_ce<T: Fx + LinearFloat>(ck: &mut Checker, case: &Case) {
    let h = matrix::<T>(case, "hidden");
    let w = matrix::<T>(case, "weight");
    let b = vector::<T>(case, "bias");
    let y = labels(case, "targets").expect("targets");
    let cw = vector::<T>(case, "class_weight");
    let ce = ce_extras_options(case, cw.as_ref());
    let go = if case.is_error() { None } else { case.grad_output().map(|a| a.to_nd::<T>()) };
    for chunk in chunk_sizes(case) {
        let opts = LinearCrossEntropyOptions { ce: ce.clone(), chunk_size: chunk };
        let bv = b.as_ref().map(|b| b.view());
        let r = linear_cross_entropy_backward(h.view(), w.view(), bv, y.view(), &opts, &upstream(&go));
        if case.is_error() {
            ck.expect_err(&format!("chunk {chunk:?}"), r, case.message());
            continue;
        }
        let Some(out) = ck.result(&format!("chunk {chunk:?}"), r) else { continue };
        ck.field("output", &out.loss.clone().into_array());
        ck.field("z_loss", &out.z_loss.clone().into_array());
        ck.field("lse", &dynamic(out.lse.as_ref().expect("lse")));
        ck.field("token_accuracy", &out.token_accuracy.clone().expect("accuracy").into_array());
        ck.field("grad_hidden", &dynamic(&out.grad_hidden));
        ck.field("grad_weight", &dynamic(&out.grad_weight));
        match (&out.grad_bias, b.is_some()) {
            (Some(gb), true) => ck.field("grad_bias", &dynamic(gb)),
            (None, false) => {}
            _ => ck.fail("grad_bias presence does not match the bias"),
        }
    }
}

fn divergence(case: &Case) -> Divergence {
    match case.opt_str("divergence") {
        "forward_kl" => Divergence::ForwardKl,
        "reverse_kl" => Divergence::ReverseKl,
        "jsd" => Divergence::GeneralizedJsd { beta: case.opt_f64("beta") },
        "tvd" => Divergence::TotalVariation,
        d => panic!("unknown divergence {d}"),
    }
}

fn distill_options(case: &Case) -> DistillOptions {
    DistillOptions {
        temperature: case.opt_f64("temperature"),
        t2_scaling: case.opt_bool("t2_scaling"),
        divergence: divergence(case),
        alpha: case.opt_f64("alpha"),
        ignore_index: case.opt_i64("ignore_index"),
        reduction: reduction(case),
        normalizer: case.opt_f64_or_none("normalizer"),
        // absent from the fixtures written before the student logit map
        logit_scale: case.opt_f64_or_none("logit_scale").unwrap_or(1.0),
        softcap: case.opt_f64_or_none("softcap"),
    }
}

/// The fused head's outputs against the case's `output`, `grad_hidden`, `grad_weight` (and `grad_bias`).
fn check_linear_distill<T: Fx>(ck: &mut Checker, out: &LinearDistillOutput<T>, has_bias: bool) {
    ck.field("output", &out.loss.clone().into_array());
    ck.field("grad_hidden", &dynamic(&out.grad_hidden));
    ck.field("grad_weight", &dynamic(&out.grad_weight));
    match (&out.grad_bias, has_bias) {
        (Some(gb), true) => ck.field("grad_bias", &dynamic(gb)),
        (None, false) => {}
        _ => ck.fail("grad_bias presence does not match the student bias"),
    }
}

fn run_linear_distill_topk<T: Fx + LinearFloat>(ck: &mut Checker, case: &Case) {
    let xs = matrix::<T>(case, "student_hidden");
    let ws = matrix::<T>(case, "student_weight");
    let bs = vector::<T>(case, "student_bias");
    let idx = case.ints("topk_indices").expect("topk_indices").into_dimensionality::<Ix2>().expect("2-D");
    let lq = matrix::<T>(case, "topk_logprobs");
    let y = labels(case, "labels");
    let go = case.grad_output().map(|a| a.to_nd::<T>());
    let d = distill_options(case);
    let teacher =
        SparseTeacher { indices: idx.view(), logprobs: lq.view(), add_tail: case.opt_bool("add_tail") };
    let student = LinearHead { hidden: xs.view(), weight: ws.view(), bias: bs.as_ref().map(|b| b.view()) };
    for chunk in chunk_sizes(case) {
        let opts = LinearDistillOptions { distill: d, chunk_size: chunk };
        let r = linear_distill_topk(&student, &teacher, y.as_ref().map(|y| y.view()), &opts, &upstream(&go));
        if case.is_error() {
            ck.expect_err(&format!("chunk {chunk:?}"), r, case.message());
            continue;
        }
        if let Some(out) = ck.result(&format!("chunk {chunk:?}"), r) {
            check_linear_distill(ck, &out, bs.is_some());
        }
    }
}

fn run_linear_distill<T: Fx + LinearFloat>(ck: &mut Checker, case: &Case) {
    let xs = matrix::<T>(case, "student_hidden");
    let ws = matrix::<T>(case, "student_weight");
    let xt = matrix::<T>(case, "teacher_hidden");
    let wt = matrix::<T>(case, "teacher_weight");
    let y = labels(case, "labels");
    // the "ldx_" cases: biases, a top-k teacher, a non-unit upstream gradient
    let bs = vector::<T>(case, "student_bias");
    let bt = vector::<T>(case, "teacher_bias");
    let tk = case.opt("teacher_topk");
    let topk = (!tk.is_null()).then(|| TeacherTopK {
        k: usize::try_from(int(&tk["k"])).expect("k"),
        add_tail: tk["add_tail"].as_bool().expect("add_tail"),
    });
    let go = case.grad_output().map(|a| a.to_nd::<T>());
    let extended = bs.is_some() || bt.is_some() || topk.is_some() || go.is_some();
    let d = distill_options(case);
    for chunk in chunk_sizes(case) {
        let opts = LinearDistillOptions { distill: d, chunk_size: chunk };
        let yv = y.as_ref().map(|y| y.view());
        let r = if extended {
            let student =
                LinearHead { hidden: xs.view(), weight: ws.view(), bias: bs.as_ref().map(|b| b.view()) };
            let teacher =
                LinearHead { hidden: xt.view(), weight: wt.view(), bias: bt.as_ref().map(|b| b.view()) };
            linear_distill_backward(&student, &teacher, yv, topk, &opts, &upstream(&go))
        } else {
            linear_distill(xs.view(), ws.view(), xt.view(), wt.view(), yv, &opts)
        };
        if case.is_error() {
            ck.expect_err(&format!("chunk {chunk:?}"), r, case.message());
            continue;
        }
        if let Some(out) = ck.result(&format!("chunk {chunk:?}"), r) {
            check_linear_distill(ck, &out, bs.is_some());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Distillation and UDA consistency
// ---------------------------------------------------------------------------------------------------------------

fn run_distill<T: Fx>(ck: &mut Checker, case: &Case) {
    let s = matrix::<T>(case, "student");
    let y = labels(case, "labels");
    let yv = y.as_ref().map(|y| y.view());
    let o = distill_options(case);
    let go: Option<Array1<T>> =
        case.grad_output().map(|a| a.to_nd::<T>().into_dimensionality::<Ix1>().expect("1-D upstream"));
    let go_dyn = go.as_ref().map(|u| u.view().into_dyn());
    let topk = case.function() == "distill_topk";
    let (idx, lq) = if topk {
        let idx = case.ints("topk_indices").expect("topk_indices");
        (
            Some(idx.into_dimensionality::<Ix2>().expect("2-D indices")),
            Some(matrix::<T>(case, "topk_logprobs")),
        )
    } else {
        (None, None)
    };
    let teacher = idx.as_ref().zip(lq.as_ref()).map(|(i, l)| SparseTeacher {
        indices: i.view(),
        logprobs: l.view(),
        add_tail: case.opt_bool("add_tail"),
    });
    let dense = (!topk).then(|| matrix::<T>(case, "teacher"));
    let forward = || match (&teacher, &dense) {
        (Some(tk), _) => distill_topk(s.view(), tk, yv, &o),
        (None, Some(t)) => distill(s.view(), t.view(), yv, &o),
        _ => unreachable!("a case has a dense or a top-k teacher"),
    };
    if case.is_error() {
        ck.expect_err("forward", forward(), case.message());
        return;
    }
    let Some(loss) = ck.result("forward", forward()) else { return };
    let grad = match &go_dyn {
        None => {
            let r = match (&teacher, &dense) {
                (Some(tk), _) => distill_topk_with_grad(s.view(), tk, yv, &o),
                (None, Some(t)) => distill_with_grad(s.view(), t.view(), yv, &o),
                _ => unreachable!(),
            };
            let Some((l2, g)) = ck.result("with_grad", r) else { return };
            ck.identical("with_grad loss vs forward", &l2.into_array(), &loss.clone().into_array());
            g
        }
        Some(u) => {
            let g = GradOutput::Array(u.view());
            let r = match (&teacher, &dense) {
                (Some(tk), _) => distill_topk_backward(s.view(), tk, yv, &o, &g),
                (None, Some(t)) => distill_backward(s.view(), t.view(), yv, &o, &g),
                _ => unreachable!(),
            };
            let Some(g) = ck.result("backward", r) else { return };
            g
        }
    };
    // k = V without tail: the dense loss on the same teacher gives the same values
    if let (Some(t), true) = (case.input("dense_teacher"), topk) {
        let t = t.to_nd::<T>().into_dimensionality::<Ix2>().expect("2-D");
        if let Some((dl, dg)) = ck.result("dense", distill_with_grad(s.view(), t.view(), yv, &o)) {
            let (rtol, atol) = (4.0 * ck.rtol, 4.0 * ck.atol);
            ck.compare(
                "k=V vs dense loss",
                &Arr::of(&dl.into_array()),
                &Arr::of(&loss.clone().into_array()),
                rtol,
                atol,
            );
            ck.compare("k=V vs dense grad", &Arr::of(&dynamic(&dg)), &Arr::of(&dynamic(&grad)), rtol, atol);
        }
    }
    ck.field("output", &loss.into_array());
    ck.field("grad_input", &dynamic(&grad));
}

fn uda_options(case: &Case) -> UdaOptions {
    UdaOptions {
        temperature: case.opt_f64("temperature"),
        sharpen: match case.opt_str("sharpen") {
            "target" => Sharpen::Target,
            _ => Sharpen::Augmented,
        },
        confidence_threshold: case.opt_f64_or_none("confidence_threshold"),
        normalize: match case.opt_str("normalize") {
            "kept_rows" => UdaNormalize::KeptRows,
            _ => UdaNormalize::AllRows,
        },
    }
}

fn run_uda<T: Fx>(ck: &mut Checker, case: &Case) {
    let ori = matrix::<T>(case, "ori");
    let aug = matrix::<T>(case, "aug");
    let o = uda_options(case);
    let Some(out) = ck.result("forward", uda_consistency_with_grad(ori.view(), aug.view(), &o)) else {
        return;
    };
    ck.field("output", &arr0(out.loss).into_dyn());
    ck.field("grad_input_unit", &dynamic(&out.grad));
    ck.field("row_kl", &dynamic(&out.row_kl));
    ck.field("mask", &dynamic(&out.mask));
    ck.field_values(
        "kept",
        "kept",
        &Arr { shape: vec![], data: vec![out.kept as f64], alt: Default::default() },
    );
    // torch's loss.backward(upstream) for a non-unit upstream gradient
    let up = case.grad_output().expect("grad_output").scalar();
    if up == 1.0 {
        ck.fail("the upstream gradient must not be 1");
    }
    let r = uda_consistency_backward(ori.view(), aug.view(), &o, &GradOutput::Scalar(T::from_f64(up)));
    if let Some(g) = ck.result("backward", r) {
        ck.field("grad_input", &dynamic(&g));
    }
    // an upstream gradient of 1 (as a scalar or a 0-d array) is uda_consistency's own gradient, bit for bit
    let one = arr0(T::from_f64(1.0)).into_dyn();
    for (what, go) in [("backward(1)", GradOutput::one()), ("backward(0-d 1)", GradOutput::Array(one.view()))]
    {
        if let Some(g) = ck.result(what, uda_consistency_backward(ori.view(), aug.view(), &o, &go)) {
            ck.identical(&format!("{what} vs uda_consistency's gradient"), &dynamic(&g), &dynamic(&out.grad));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------------------------------------------

fn run_case<T: Fx + LinearFloat>(ck: &mut Checker, case: &Case) -> Support {
    let function = case.function();
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
        "cross_entropy_extras" => run_ce_extras::<T>(ck, case),
        "linear_cross_entropy" => run_linear_ce::<T>(ck, case),
        "linear_distill" => run_linear_distill::<T>(ck, case),
        "linear_distill_topk" => run_linear_distill_topk::<T>(ck, case),
        "distill" | "distill_topk" => run_distill::<T>(ck, case),
        "uda_consistency" => run_uda::<T>(ck, case),
        _ => return Support::NotSupported,
    }
    Support::Ran
}

fn adapter(ck: &mut Checker, case: &Case) -> Support {
    match case.dtype() {
        "float32" => run_case::<f32>(ck, case),
        _ => run_case::<f64>(ck, case),
    }
}

/// The core crate has an API for every function in the fixtures.
fn supports(_function: &str) -> bool {
    true
}

infoloss_conformance::fixture_tests!("core", supports, adapter);
