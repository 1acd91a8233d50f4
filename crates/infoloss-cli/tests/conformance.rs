//! The command line's conformance adapter: every fixture case (read and compared by `infoloss-conformance`;
//! schema in `testdata/README.md`) whose function has an `infoloss` subcommand runs through the built binary on
//! files. The case's arrays are written as `.npy` (inputs, class weights, `pos_weight`, the upstream gradient),
//! the subcommand runs with the case's options in its dtype and writes the output and the gradients as `.npy`,
//! which are compared with torch's at the file's tolerances. An input torch rejects must make the command fail.
//! Functions without a subcommand (the cross-entropy extras, the fused linear losses, distillation, UDA)
//! count as not supported.

use std::path::Path;
use std::process::Command;

use infoloss_conformance::{Case, Checker, Support, npy};

/// The subcommand of a fixture function, if the command line has one.
fn subcommand(function: &str) -> Option<&'static str> {
    Some(match function {
        "logsumexp" => "logsumexp",
        "log_softmax" => "log-softmax",
        "softmax" => "softmax",
        "nll_loss" => "nll-loss",
        "cross_entropy" | "cross_entropy_probs" => "cross-entropy",
        "kl_div" => "kl-div",
        "binary_cross_entropy" => "bce",
        "binary_cross_entropy_with_logits" => "bce-with-logits",
        "entr" => "entr",
        "rel_entr" => "rel-entr",
        "entropy" => "entropy",
        "shannon_cross_entropy" => "shannon-cross-entropy",
        "jensenshannon" => "js",
        "self_information" => "self-information",
        _ => return None,
    })
}

fn supports(function: &str) -> bool {
    subcommand(function).is_some()
}

/// The information measures name their target gradient after SciPy's `qk`.
fn is_info(function: &str) -> bool {
    matches!(
        function,
        "entr" | "rel_entr" | "entropy" | "shannon_cross_entropy" | "jensenshannon" | "self_information"
    )
}

fn arg_file(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn adapter(ck: &mut Checker, case: &Case) -> Support {
    let Some(cmd) = subcommand(case.function()) else { return Support::NotSupported };
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir = dir.path();
    let (descr, dtype) = if case.dtype() == "float32" { ("<f4", "f32") } else { ("<f8", "f64") };
    let mut args: Vec<String> = vec![cmd.to_string(), "--dtype".into(), dtype.into()];
    // positional inputs: INPUT (or P) and TARGET (or Q)
    for name in ["input", "target"] {
        if let Some(a) = case.input(name) {
            let int = case.raw["inputs"][name]["dtype"] == "int64";
            npy::write(&dir.join(format!("{name}.npy")), &a, if int { "<i8" } else { descr });
            args.push(arg_file(dir, &format!("{name}.npy")));
        }
    }
    for (opt, flag) in [("weight", "--weight"), ("pos_weight", "--pos-weight")] {
        if let Some(a) = case.opt_arr(opt) {
            npy::write(&dir.join(format!("{opt}.npy")), &a, descr);
            args.extend([flag.to_string(), arg_file(dir, &format!("{opt}.npy"))]);
        }
    }
    for (opt, flag) in [("ignore_index", "--ignore-index"), ("dim", "--dim"), ("axis", "--axis")] {
        if case.has_opt(opt) {
            args.push(format!("{flag}={}", case.opt_i64(opt)));
        }
    }
    for (opt, flag) in [("label_smoothing", "--label-smoothing"), ("base", "--base")] {
        if let Some(v) = case.opt_f64_or_none(opt) {
            args.push(format!("{flag}={v}"));
        }
    }
    if case.has_opt("reduction") {
        args.push(format!("--reduction={}", case.opt_str("reduction")));
    }
    for (opt, flag) in [("log_target", "--log-target"), ("keepdims", "--keepdims")] {
        if case.has_opt(opt) && case.opt_bool(opt) {
            args.push(flag.to_string());
        }
    }
    // the upstream gradient; the information measures' cases without one use p (as the core adapter does)
    let upstream = case.grad_output().or_else(|| is_info(case.function()).then(|| case.arg("input")));
    if let Some(u) = upstream {
        npy::write(&dir.join("upstream.npy"), &u, descr);
        args.extend(["--upstream".to_string(), arg_file(dir, "upstream.npy")]);
    }
    args.extend(["--out".to_string(), arg_file(dir, "output.npy")]);
    args.extend(["--grad-out".to_string(), arg_file(dir, "grad_input.npy")]);
    if case.expects("grad_target") {
        let flag = if is_info(case.function()) { "--grad-q-out" } else { "--grad-target-out" };
        args.extend([flag.to_string(), arg_file(dir, "grad_target.npy")]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_infoloss")).args(&args).output().expect("run infoloss");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if case.is_error() {
        if out.status.success() {
            ck.fail(format!(
                "`infoloss {}` succeeded, but the reference raises: {}",
                args.join(" "),
                case.message()
            ));
        }
        return Support::Ran;
    }
    if !out.status.success() {
        ck.fail(format!("`infoloss {}` failed: {}", args.join(" "), stderr.trim()));
        return Support::Ran;
    }
    for field in ["output", "grad_input", "grad_target"] {
        if case.expects(field) {
            ck.field_values(field, field, &npy::read(&dir.join(format!("{field}.npy"))));
        }
    }
    Support::Ran
}

infoloss_conformance::fixture_tests!("cli", supports, adapter);
