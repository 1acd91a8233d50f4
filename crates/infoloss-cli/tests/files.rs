//! End-to-end tests of `infoloss <loss> FILES…`: every subcommand's values against the library, every
//! reader, and the errors (one line naming the file and the problem, exit code 1, no output file left).

use std::path::{Path, PathBuf};
use std::process::Command;

use infoloss::ndarray::{ArrayD, IxDyn, array};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, EntropyOptions, GradOutput, JensenShannonOptions,
    KlDivOptions, NllOptions, Reduction,
};
use serde_json::Value;

#[path = "support/npy.rs"]
mod npy;
use npy::{npy_bytes, zip_npz};

// ---------------------------------------------------------------------------------------------------------
// Helpers: writing inputs, running the binary, reading outputs
// ---------------------------------------------------------------------------------------------------------

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn p(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.p(name), bytes).unwrap();
        self.s(name)
    }
    fn f32(&self, name: &str, shape: &[usize], v: &[f32]) -> String {
        self.write(name, &npy_bytes("<f4", false, shape, &f32_bytes(v)))
    }
    fn f64(&self, name: &str, shape: &[usize], v: &[f64]) -> String {
        self.write(name, &npy_bytes("<f8", false, shape, &f64_bytes(v)))
    }
    fn i64(&self, name: &str, shape: &[usize], v: &[i64]) -> String {
        self.write(name, &npy_bytes("<i8", false, shape, &i64_bytes(v)))
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        v.sort();
        v
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_infoloss")).args(args).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

/// Runs with `--json` and returns the document (the run must succeed).
fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let o = run(&a);
    assert_eq!(o.code, 0, "{args:?} failed: {}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", o.stdout))
}

/// Runs and expects failure: exit code 1 and exactly one line on stderr, containing every `needle`.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let o = run(args);
    assert_eq!(o.code, 1, "{args:?} should fail; stdout {}", o.stdout);
    let line = o.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "one line expected: {line}");
    assert!(line.starts_with("infoloss: error: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "{line:?} should contain {n:?}");
    }
    assert!(o.stdout.is_empty(), "nothing on stdout: {}", o.stdout);
    line.to_string()
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        other => vec![num(other)],
    }
}

fn shape_of(doc: &Value, name: &str) -> Vec<usize> {
    doc[format!("{name}_shape")].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

/// Values equal to the library's: exactly for f64 output, within f32 rounding of the printed shortest form.
fn assert_values<T: Copy + Into<f64>>(got: &[f64], want: impl IntoIterator<Item = T>) {
    let want: Vec<f64> = want.into_iter().map(Into::into).collect();
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(&want) {
        if w.is_nan() {
            assert!(g.is_nan(), "{got:?} vs {want:?}");
        } else {
            assert!(g == w || (g - w).abs() <= 1e-7 * w.abs(), "{got:?} vs {want:?}");
        }
    }
}

/// Reads a little-endian C-order .npy written by the CLI: (descr, shape, values as f64).
fn read_npy(path: &Path) -> (String, Vec<usize>, Vec<f64>) {
    let b = std::fs::read(path).unwrap();
    assert!(b.starts_with(b"\x93NUMPY\x01\x00"));
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0, "data aligned to 64 bytes");
    let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    let descr = h.split("'descr': '").nth(1).unwrap().split('\'').next().unwrap().to_string();
    let shape_s = h.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_s.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let data = &b[10 + hl..];
    let vals = match descr.as_str() {
        "<f4" => data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "<f8" => data.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        "<f2" => data
            .chunks(2)
            .map(|c| infoloss::half::f16::from_le_bytes(c.try_into().unwrap()).to_f64())
            .collect(),
        d => panic!("unexpected descr {d}"),
    };
    (descr, shape, vals)
}

const X: [f32; 12] = [0.5, -1.25, 2.0, 0.0, 1.5, -0.5, 3.0, 0.25, -2.0, 1.0, 0.75, -0.125];
const Y: [i64; 4] = [2, 0, -100, 1];

fn x_arr() -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(&[4, 3]), X.to_vec()).unwrap()
}
fn y_arr() -> ArrayD<i64> {
    ArrayD::from_shape_vec(IxDyn(&[4]), Y.to_vec()).unwrap()
}
/// A directory holding the logits [`X`] as `x.npy` and the class indices [`Y`] as `y.npy`, and their paths.
fn x_y_files() -> (Dir, String, String) {
    let d = Dir::new();
    let (x, y) = (d.f32("x.npy", &[4, 3], &X), d.i64("y.npy", &[4], &Y));
    (d, x, y)
}

// ---------------------------------------------------------------------------------------------------------
// Every subcommand against the library
// ---------------------------------------------------------------------------------------------------------

#[test]
fn cross_entropy_class_targets_match_the_library() {
    let (d, x, y) = x_y_files();
    let w = d.f32("w.npy", &[3], &[0.2, 1.0, 3.0]);
    let doc = json(&["cross-entropy", &x, &y, "--weight", &w, "--label-smoothing", "0.1", "--grad"]);
    let wv = array![0.2f32, 1.0, 3.0];
    let opts = CrossEntropyOptions { weight: Some(wv.view()), label_smoothing: 0.1, ..Default::default() };
    let (l, g) = infoloss::cross_entropy_with_grad(x_arr().view(), y_arr().view(), &opts).unwrap();
    assert_values(&flat(&doc["loss"]), [l.scalar().unwrap()]);
    assert_values(&flat(&doc["grad"]), g.iter().copied());
    assert_eq!(shape_of(&doc, "grad"), vec![4, 3]);
    assert_eq!(doc["dtype"], "float32");
    assert_eq!(doc["options"]["target"], "class indices");
    // --input/--target flags, reduction none, and the alias `ce`.
    let doc = json(&["ce", "--input", &x, "--target", &y, "--reduction", "none"]);
    let o = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
    let l = infoloss::cross_entropy(x_arr().view(), y_arr().view(), &o).unwrap().into_array();
    assert_values(&flat(&doc["loss"]), l.iter().copied());
    // --ignore-index takes negative values.
    let y1 = d.i64("y1.npy", &[4], &[2, 0, -1, 1]);
    let doc = json(&["ce", &x, &y1, "--ignore-index", "-1"]);
    let o = CrossEntropyOptions { ignore_index: -1, ..Default::default() };
    let t1 = array![2i64, 0, -1, 1].into_dyn();
    let l = infoloss::cross_entropy(x_arr().view(), t1.view(), &o).unwrap();
    assert_values(&flat(&doc["loss"]), [l.scalar().unwrap()]);
    assert_eq!(doc["options"]["ignore_index"], -1);
}

#[test]
fn cross_entropy_probability_targets_and_target_gradient_file() {
    let d = Dir::new();
    let x = d.f64("x.npy", &[2, 3], &[1.0, 2.0, 0.5, -1.0, 0.0, 1.0]);
    let t = d.f64("t.npy", &[2, 3], &[0.2, 0.3, 0.5, 1.0, 0.0, 0.0]);
    let gt = d.s("gt.npy");
    let doc = json(&["cross-entropy", &x, &t, "--grad-target-out", &gt]);
    let xa = array![[1.0, 2.0, 0.5], [-1.0, 0.0, 1.0]];
    let ta = array![[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]];
    let o = CrossEntropyOptions::default();
    let (l, gi, gtt) =
        infoloss::cross_entropy::cross_entropy_probs_with_grads(xa.view(), ta.view(), &o).unwrap();
    assert_eq!(doc["options"]["target"], "probabilities");
    assert_eq!(num(&doc["loss"]), l.scalar().unwrap());
    assert_eq!(flat(&doc["grad"]), gi.iter().copied().collect::<Vec<_>>());
    let (descr, shape, vals) = read_npy(&d.p("gt.npy"));
    assert_eq!((descr.as_str(), shape), ("<f8", vec![2, 3]));
    assert_eq!(vals, gtt.iter().copied().collect::<Vec<_>>());
    assert_eq!(doc["written"]["grad_target"], gt);
}

#[test]
fn nll_loss_with_int32_targets() {
    let d = Dir::new();
    let x = d.f32("x.npy", &[4, 3], &X);
    let y32: Vec<u8> = Y.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect();
    let y = d.write("y.npy", &npy_bytes("<i4", false, &[4], &y32));
    let doc = json(&["nll-loss", &x, &y, "--reduction", "sum", "--grad"]);
    let o = NllOptions { reduction: Reduction::Sum, ..Default::default() };
    let (l, g) = infoloss::nll_loss_with_grad(x_arr().view(), y_arr().view(), &o).unwrap();
    assert_values(&flat(&doc["loss"]), [l.scalar().unwrap()]);
    assert_values(&flat(&doc["grad"]), g.iter().copied());
    assert_eq!(doc["inputs"]["target"]["dtype"], "int32");
}

#[test]
fn kl_div_batchmean_log_target_and_both_gradients() {
    let d = Dir::new();
    let x = d.f64("x.npy", &[2, 2], &[-1.2, -0.3, -0.7, -0.7]);
    let t = d.f64("t.npy", &[2, 2], &[-1.6, -0.2, -0.5, -0.9]);
    let (go, gto) = (d.s("g.npy"), d.s("gt.csv"));
    let doc = json(&[
        "kl-div",
        "--input",
        &x,
        "--target",
        &t,
        "--reduction",
        "batchmean",
        "--log-target",
        "--grad-out",
        &go,
        "--grad-target-out",
        &gto,
    ]);
    let xa = array![[-1.2, -0.3], [-0.7, -0.7]];
    let ta = array![[-1.6, -0.2], [-0.5, -0.9]];
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: true };
    let l = infoloss::kl_div(xa.view(), ta.view(), &o).unwrap();
    assert_eq!(num(&doc["loss"]), l.scalar().unwrap());
    let gi = infoloss::kl_div_backward(xa.view(), ta.view(), &o, &GradOutput::one()).unwrap();
    let gt = infoloss::kl_div_backward_target(xa.view(), ta.view(), &o, &GradOutput::one()).unwrap();
    assert_eq!(read_npy(&d.p("g.npy")).2, gi.iter().copied().collect::<Vec<_>>());
    let csv: Vec<f64> = std::fs::read_to_string(d.p("gt.csv"))
        .unwrap()
        .split([',', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(csv, gt.iter().copied().collect::<Vec<_>>());
}

#[test]
fn bce_and_bce_with_logits_with_weights() {
    let d = Dir::new();
    let p = d.f32("p.npy", &[2, 2], &[0.1, 0.9, 0.5, 0.0]);
    let t = d.f32("t.npy", &[2, 2], &[0.0, 1.0, 0.3, 1.0]);
    let w = d.f32("w.npy", &[2], &[1.0, 2.0]);
    let doc = json(&["bce", &p, &t, "--weight", &w, "--grad"]);
    let (pa, ta, wa) =
        (array![[0.1f32, 0.9], [0.5, 0.0]], array![[0.0f32, 1.0], [0.3, 1.0]], array![1.0f32, 2.0]);
    let o = BceOptions { weight: Some(wa.view().into_dyn()), reduction: Reduction::Mean };
    let (l, g) = infoloss::binary_cross_entropy_with_grad(pa.view(), ta.view(), &o).unwrap();
    assert_values(&flat(&doc["loss"]), [l.scalar().unwrap()]);
    assert_values(&flat(&doc["grad"]), g.iter().copied());
    let pw = d.f32("pw.npy", &[2], &[3.0, 0.5]);
    let doc = json(&["bce-with-logits", &p, &t, "--pos-weight", &pw, "--reduction", "none", "--grad"]);
    let pwa = array![3.0f32, 0.5];
    let o = BceWithLogitsOptions {
        weight: None,
        pos_weight: Some(pwa.view().into_dyn()),
        reduction: Reduction::None,
    };
    let (l, g) = infoloss::binary_cross_entropy_with_logits_with_grad(pa.view(), ta.view(), &o).unwrap();
    assert_values(&flat(&doc["loss"]), l.into_array().iter().copied());
    assert_values(&flat(&doc["grad"]), g.iter().copied());
    let gt = infoloss::binary_cross_entropy_with_logits_backward_target(
        pa.view(),
        ta.view(),
        &o,
        &GradOutput::one(),
    )
    .unwrap();
    assert_values(&flat(&doc["grad_target"]), gt.iter().copied());
}

#[test]
fn softmax_family_with_dim_and_upstream_gradient() {
    let d = Dir::new();
    let x = d.f64("x.npy", &[2, 3], &[1.0, 2.0, 3.0, -1.0, 0.0, 5.0]);
    let up = d.f64("up.npy", &[2, 3], &[1.0, 0.0, -2.0, 0.5, 0.5, 0.5]);
    let xa = array![[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]];
    let upa = array![[1.0, 0.0, -2.0], [0.5, 0.5, 0.5]];
    let doc = json(&["log-softmax", &x, "--dim", "0", "--upstream", &up, "--grad"]);
    let y = infoloss::log_softmax(xa.view(), 0).unwrap();
    assert_eq!(flat(&doc["output"]), y.iter().copied().collect::<Vec<_>>());
    let g = infoloss::log_softmax_backward(y.view(), upa.view(), 0).unwrap();
    assert_eq!(flat(&doc["grad"]), g.iter().copied().collect::<Vec<_>>());
    let doc = json(&["softmax", &x, "--grad"]);
    let y = infoloss::softmax(xa.view(), -1).unwrap();
    assert_eq!(flat(&doc["output"]), y.iter().copied().collect::<Vec<_>>());
    let g = infoloss::softmax_backward(y.view(), ArrayD::<f64>::ones(IxDyn(&[2, 3])).view(), -1).unwrap();
    assert_eq!(flat(&doc["grad"]), g.iter().copied().collect::<Vec<_>>());
    let doc = json(&["logsumexp", &x, "--dim", "-1", "--grad"]);
    let y = infoloss::logsumexp(xa.view(), -1).unwrap();
    assert_eq!(flat(&doc["output"]), y.iter().copied().collect::<Vec<_>>());
    assert_eq!(shape_of(&doc, "output"), vec![2]);
    assert_eq!(shape_of(&doc, "grad"), vec![2, 3]);
}

#[test]
fn entropy_of_a_csv_in_bits_along_axis_1() {
    // The example: `infoloss entropy p.csv --base 2 --axis 1`.
    let d = Dir::new();
    let p = d.write("p.csv", b"a,b,c,d\n0.25,0.25,0.25,0.25\n1,0,0,0\n1,2,3,4\n");
    let doc = json(&["entropy", &p, "--base", "2", "--axis", "1"]);
    assert_eq!(doc["inputs"]["pk"]["dtype"], "text");
    let pa = array![[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]];
    let h = infoloss::entropy(pa.view(), None, &EntropyOptions { base: Some(2.0), axis: 1 }).unwrap();
    assert_eq!(flat(&doc["output"]), h.iter().copied().collect::<Vec<_>>());
    assert_eq!(flat(&doc["output"])[0], 2.0);
    // The human output names the result.
    let o = run(&["entropy", &p, "--base", "2", "--axis", "1"]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("output [3]:"), "{}", o.stdout);
    // With QK: the relative entropy, and its gradient file.
    let q = d.write("q.csv", b"0.1,0.2,0.3,0.4\n0.5,0.5,0,0\n4,3,2,1\n");
    let doc = json(&["entropy", &p, &q, "--axis", "1", "--grad-q-out", &d.s("dq.npy")]);
    let qa = array![[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.0, 0.0], [4.0, 3.0, 2.0, 1.0]];
    let o = EntropyOptions { base: None, axis: 1 };
    let h = infoloss::entropy(pa.view(), Some(qa.view()), &o).unwrap();
    assert_eq!(flat(&doc["output"]), h.iter().copied().collect::<Vec<_>>());
    let (_, dq) =
        infoloss::entropy_backward(pa.view(), Some(qa.view()), &o, infoloss::ndarray::arr0(1.0).view())
            .unwrap();
    assert_eq!(read_npy(&d.p("dq.npy")).2, dq.unwrap().iter().copied().collect::<Vec<_>>());
}

#[test]
fn js_rel_entr_entr_self_information_and_shannon_cross_entropy() {
    let d = Dir::new();
    let p = d.f64("p.npy", &[3], &[0.5, 0.5, 0.0]);
    let q = d.f64("q.npy", &[3], &[0.1, 0.2, 0.7]);
    let (pa, qa) = (array![0.5, 0.5, 0.0], array![0.1, 0.2, 0.7]);
    let doc = json(&["js", &p, &q, "--base", "2", "--grad"]);
    let o = JensenShannonOptions { base: Some(2.0), ..Default::default() };
    assert_eq!(num(&doc["output"]), infoloss::jensenshannon(pa.view(), qa.view(), &o).unwrap()[[]]);
    let (dp, dq) =
        infoloss::jensenshannon_backward(pa.view(), qa.view(), &o, infoloss::ndarray::arr0(1.0).view())
            .unwrap();
    assert_eq!(flat(&doc["grad"]), dp.iter().copied().collect::<Vec<_>>());
    assert_eq!(flat(&doc["grad_q"]), dq.iter().copied().collect::<Vec<_>>());
    let doc = json(&["jensenshannon", &p, &q, "--keepdims"]);
    assert_eq!(shape_of(&doc, "output"), vec![1]);

    let doc = json(&["rel-entr", &p, &q]);
    assert_eq!(
        flat(&doc["output"]),
        infoloss::rel_entr(pa.view(), qa.view()).unwrap().iter().copied().collect::<Vec<_>>()
    );
    let doc = json(&["entr", &p, "--grad"]);
    assert_eq!(flat(&doc["output"]), infoloss::entr(pa.view()).iter().copied().collect::<Vec<_>>());
    assert_eq!(num(&doc["grad"][2]), f64::INFINITY, "entr's gradient at 0 is +inf, printed as \"Infinity\"");
    let doc = json(&["self-information", &q, "--base", "2"]);
    let i = infoloss::self_information(qa.view(), Some(2.0)).unwrap();
    assert_eq!(flat(&doc["output"]), i.iter().copied().collect::<Vec<_>>());
    let doc = json(&["shannon-cross-entropy", &p, &q, "--grad"]);
    let h = infoloss::shannon_cross_entropy(pa.view(), qa.view(), &EntropyOptions::default()).unwrap();
    assert_eq!(num(&doc["output"]), h[[]]);
    let doc2 = json(&["cross-entropy-dist", &p, &q]);
    assert_eq!(doc2["output"], doc["output"]);
    // Integer counts are accepted by the SciPy-style measures (as NumPy converts them).
    let counts = d.i64("c.npy", &[3], &[1, 1, 0]);
    assert_eq!(json(&["entropy", &counts])["output"], json(&["entropy", &p])["output"]);
}

// ---------------------------------------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------------------------------------

#[test]
fn readers_give_the_same_loss_for_every_format() {
    let (d, x, y) = x_y_files();
    let want = json(&["ce", &x, &y])["loss"].clone();
    let xb = npy_bytes("<f4", false, &[4, 3], &f32_bytes(&X));
    let yb = npy_bytes("<i8", false, &[4], &i64_bytes(&Y));
    // .npz, stored and deflated, with --key and with #key.
    for (name, deflate) in [("s.npz", false), ("c.npz", true)] {
        zip_npz(&d.p(name), &[("logits", xb.clone()), ("labels", yb.clone())], deflate);
        let f = d.s(name);
        assert_eq!(json(&["ce", &f, &f, "--key", "logits", "--key", "labels"])["loss"], want);
        let doc = json(&["ce", &format!("{f}#logits"), &format!("{f}#labels")]);
        assert_eq!(doc["loss"], want);
        assert_eq!(doc["inputs"]["input"]["file"], format!("{f}#logits"));
    }
    // .safetensors with --tensor and #name.
    let xs: Vec<u8> = f32_bytes(&X);
    let ys: Vec<u8> = i64_bytes(&Y);
    let views = vec![
        ("logits", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 3], &xs).unwrap()),
        ("labels", safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![4], &ys).unwrap()),
    ];
    let st = safetensors::serialize(views, None).unwrap();
    let f = d.write("m.safetensors", &st);
    assert_eq!(json(&["ce", &f, &f, "--tensor", "logits", "--tensor", "labels"])["loss"], want);
    assert_eq!(json(&["ce", &format!("{f}#logits"), &format!("{f}#labels")])["loss"], want);
    // Fortran order (the same matrix stored column by column).
    let mut xf = Vec::new();
    for c in 0..3 {
        for r in 0..4 {
            xf.push(X[r * 3 + c]);
        }
    }
    let xfo = d.write("xf.npy", &npy_bytes("<f4", true, &[4, 3], &f32_bytes(&xf)));
    assert_eq!(json(&["ce", &xfo, &y])["loss"], want);
    // Big-endian.
    let be: Vec<u8> = X.iter().flat_map(|v| v.to_be_bytes()).collect();
    let xbe = d.write("xbe.npy", &npy_bytes(">f4", false, &[4, 3], &be));
    assert_eq!(json(&["ce", &xbe, &y])["loss"], want);
    // CSV for both (float64 text: compare against the library in f64).
    let xc = d.write(
        "x.csv",
        X.chunks(3)
            .map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",") + "\n")
            .collect::<String>()
            .as_bytes(),
    );
    let yc = d.write("y.csv", b"label\n2\n0\n-100\n1\n");
    let doc = json(&["ce", &xc, &yc]);
    assert_eq!(doc["dtype"], "float64");
    let x64 = x_arr().mapv(|v| v as f64);
    let l = infoloss::cross_entropy(x64.view(), y_arr().view(), &CrossEntropyOptions::default()).unwrap();
    assert_eq!(num(&doc["loss"]), l.scalar().unwrap());
}

#[test]
fn half_precision_inputs_compute_in_their_dtype() {
    let d = Dir::new();
    let h: Vec<u8> = X.iter().flat_map(|&v| infoloss::half::f16::from_f32(v).to_le_bytes()).collect();
    let x = d.write("x16.npy", &npy_bytes("<f2", false, &[4, 3], &h));
    let y = d.i64("y.npy", &[4], &Y);
    let doc = json(&["ce", &x, &y, "--out", &d.s("l.npy")]);
    assert_eq!(doc["dtype"], "float16");
    let xa = x_arr().mapv(infoloss::half::f16::from_f32);
    let l = infoloss::cross_entropy(xa.view(), y_arr().view(), &CrossEntropyOptions::default()).unwrap();
    let (descr, shape, vals) = read_npy(&d.p("l.npy"));
    assert_eq!((descr.as_str(), shape), ("<f2", vec![]));
    assert_eq!(vals, vec![l.scalar().unwrap().to_f64()]);
    // bfloat16 from safetensors; --dtype f64 upcasts.
    let b: Vec<u8> = X.iter().flat_map(|&v| infoloss::half::bf16::from_f32(v).to_le_bytes()).collect();
    let st = safetensors::serialize(
        vec![("x", safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![4, 3], &b).unwrap())],
        None,
    )
    .unwrap();
    let f = d.write("b.safetensors", &st);
    assert_eq!(json(&["ce", &f, &y])["dtype"], "bfloat16");
    assert_eq!(json(&["ce", &f, &y, "--dtype", "f64"])["dtype"], "float64");
}

#[test]
fn large_files_are_memory_mapped() {
    let d = Dir::new();
    let (n, c) = (512usize, 64usize);
    let xs: Vec<f32> = (0..n * c).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
    let ys: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
    let x = d.f32("big.npy", &[n, c], &xs);
    let y = d.i64("labels.npy", &[n], &ys);
    let doc = json(&["ce", &x, &y]);
    assert_eq!(doc["inputs"]["input"]["memory_mapped"], true);
    assert_eq!(doc["inputs"]["target"]["memory_mapped"], false);
    let xa = ArrayD::from_shape_vec(IxDyn(&[n, c]), xs).unwrap();
    let ya = ArrayD::from_shape_vec(IxDyn(&[n]), ys).unwrap();
    let l = infoloss::cross_entropy(xa.view(), ya.view(), &CrossEntropyOptions::default()).unwrap();
    assert_values(&flat(&doc["loss"]), [l.scalar().unwrap()]);
}

// ---------------------------------------------------------------------------------------------------------
// Errors: one line naming the file and the problem, exit code 1, nothing written
// ---------------------------------------------------------------------------------------------------------

#[test]
fn missing_unreadable_and_malformed_files() {
    let d = Dir::new();
    let x = d.f32("x.npy", &[4, 3], &X);
    let missing = d.s("nothere.npy");
    let out = d.s("out.npy");
    fails(&["ce", &x, &missing, "--out", &out], &["nothere.npy: no such file"]);
    fails(&["ce", &d.s(""), &x], &["is a directory"]);
    // Unreadable: a path through a regular file.
    fails(&["softmax", &format!("{x}/inner.npy")], &["x.npy/inner.npy: cannot read"]);
    let trunc = d.write("trunc.npy", &npy_bytes("<f4", false, &[4, 3], &f32_bytes(&X[..5])));
    fails(&["softmax", &trunc], &["trunc.npy: truncated .npy file", "[4, 3]", "48 bytes"]);
    let junk = d.write("junk.bin", b"hello world");
    fails(&["softmax", &junk], &["junk.bin: unknown format"]);
    let bad = d.write("bad.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<c8'}\n");
    fails(&["softmax", &bad], &["bad.npy:", "malformed .npy header"]);
    let csv = d.write("bad.csv", b"1,2,3\n4,five,6\n");
    fails(&["softmax", &csv], &["bad.csv: line 2, field 2: 'five' is not a number"]);
    let st = d.write("bad.safetensors", b"\xff\xff\xff\xff\xff\xff\xff\xffxx");
    fails(&["softmax", &st], &["bad.safetensors: not a valid .safetensors file"]);
    let npz = d.write("bad.npz", b"PK\x03\x04 truncated");
    fails(&["softmax", &npz], &["bad.npz: not a valid .npz (zip) archive"]);
    let huge = d.write("huge.npy", &npy_bytes("<f4", false, &[1 << 28, 0, 1 << 28], &[]));
    fails(&["logsumexp", &huge, "--dim", "1"], &["huge.npy: logsumexp: output is too large"]);
    let over = d.write("over.npy", &npy_bytes("<f4", false, &[usize::MAX, 3], &[]));
    fails(&["softmax", &over], &["over.npy:", "more elements than can be addressed"]);
    assert_eq!(
        d.files(),
        vec![
            "bad.csv",
            "bad.npy",
            "bad.npz",
            "bad.safetensors",
            "huge.npy",
            "junk.bin",
            "over.npy",
            "trunc.npy",
            "x.npy"
        ]
    );
}

#[test]
fn wrong_dtypes_shapes_and_values_name_the_files() {
    let (d, x, y) = x_y_files();
    let yf = d.f32("yf.npy", &[4], &[0.0, 1.0, 2.0, 0.0]);
    fails(&["ce", &x, &yf], &["yf.npy: wrong dtype float32: class indices must be integers"]);
    fails(&["ce", &y, &y], &["y.npy: wrong dtype int64: expected floating-point values"]);
    let y3 = d.i64("y3.npy", &[3], &[0, 1, 2]);
    fails(&["ce", &x, &y3], &["x.npy, ", "y3.npy: cross_entropy:", "[4, 3]", "[3]"]);
    let ybad = d.i64("ybad.npy", &[4], &[0, 7, 1, 2]);
    fails(&["ce", &x, &ybad], &["ybad.npy: cross_entropy: target 7 at [1] is out of range for 3 classes"]);
    let yint = d.i64("yint.npy", &[4, 3], &[0; 12]);
    fails(&["ce", &x, &yint], &["yint.npy: wrong dtype int64", "class probabilities"]);
    let t = d.f32("t.npy", &[2, 3], &[0.0; 6]);
    fails(&["kl-div", &x, &t], &["x.npy, ", "t.npy: kl_div"]);
    // A NaN where it is not allowed: BCE inputs, class indices in text.
    let p = d.f32("p.npy", &[2], &[0.5, f32::NAN]);
    let pt = d.f32("pt.npy", &[2], &[1.0, 0.0]);
    fails(&["bce", &p, &pt], &["p.npy: binary_cross_entropy: input value NaN at [1]"]);
    let ycsv = d.write("y.csv", b"0\nnan\n1\n2\n");
    fails(&["ce", &x, &ycsv], &["y.csv: class indices must be integers, found NaN"]);
    // --finite rejects non-finite values anywhere.
    let xn = d.f32("xn.npy", &[2, 2], &[0.0, 1.0, f32::INFINITY, 2.0]);
    fails(&["softmax", &xn, "--finite"], &["xn.npy: Infinity at [1, 0] (--finite rejects NaN and ±inf)"]);
    // Options.
    fails(&["log-softmax", &x, "--dim", "2"], &["x.npy: log_softmax: invalid dim = 2"]);
    fails(&["ce", &x, &y, "--label-smoothing", "1.5"], &["invalid label_smoothing = 1.5"]);
    fails(&["ce", &x, &y, "--reduction", "batchmean"], &["batchmean is not a valid value for reduction"]);
    fails(&["js", &x, &x, "--base", "0.5"], &["invalid base = 0.5"]);
    let w = d.f32("w.npy", &[2, 3], &[1.0; 6]);
    fails(&["ce", &x, &y, "--weight", &w], &["w.npy: weight must be 1-D"]);
    // Archives.
    let xb = npy_bytes("<f4", false, &[4, 3], &f32_bytes(&X));
    zip_npz(&d.p("a.npz"), &[("a", xb.clone()), ("b", xb)], false);
    fails(&["softmax", &d.s("a.npz")], &["a.npz: the archive holds 2 arrays (a, b): choose one with --key"]);
    fails(
        &["softmax", &format!("{}#zz", d.s("a.npz"))],
        &["a.npz: no array 'zz' in the archive (it holds: a, b)"],
    );
    fails(&["softmax", &x, "--key", "a"], &["--key a is not used"]);
    fails(&["softmax", &format!("{x}#a")], &["a .npy file holds one array"]);
}

#[test]
fn no_partial_output_is_left_on_failure() {
    let (d, x, y) = x_y_files();
    // A computation error: no output file at all.
    let bad = d.i64("bad.npy", &[4], &[0, 9, 0, 0]);
    fails(&["ce", &x, &bad, "--out", &d.s("o.npy"), "--grad-out", &d.s("g.npy")], &["bad.npy"]);
    // The second output's directory does not exist: checked before anything is written.
    fails(
        &["ce", &x, &y, "--out", &d.s("o.npy"), "--grad-out", &d.s("nodir/g.npy")],
        &["nodir/g.npy: cannot create the file"],
    );
    fails(&["ce", &x, &y, "--out", &d.s("o.txt")], &["o.txt: unknown output format"]);
    fails(
        &["ce", &x, &y, "--reduction", "none", "--grad-out", &d.s("o.csv"), "--out", &d.s("o.csv")],
        &["given twice"],
    );
    // A 3-D result cannot be CSV: found while writing, after the first output's temporary was written.
    let x3 = d.f32("x3.npy", &[2, 3, 2], &X);
    let t3 = d.i64("t3.npy", &[2, 2], &[0, 1, 2, 0]);
    fails(
        &["ce", &x3, &t3, "--reduction", "none", "--out", &d.s("l.npy"), "--grad-out", &d.s("g3.csv")],
        &["g3.csv: a 3-D array"],
    );
    assert_eq!(
        d.files(),
        vec!["bad.npy", "x.npy", "x3.npy", "t3.npy", "y.npy"]
            .into_iter()
            .map(String::from)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    // An existing output is left untouched by a failed run and replaced by a successful one.
    std::fs::write(d.p("keep.npy"), b"old").unwrap();
    fails(&["ce", &x, &bad, "--out", &d.s("keep.npy")], &["bad.npy"]);
    assert_eq!(std::fs::read(d.p("keep.npy")).unwrap(), b"old");
    assert_eq!(run(&["ce", &x, &y, "--out", &d.s("keep.npy")]).code, 0);
    assert_eq!(read_npy(&d.p("keep.npy")).1, Vec::<usize>::new());
}

#[test]
fn human_output_and_usage_errors() {
    let (_d, x, y) = x_y_files();
    let o = run(&["ce", &x, &y]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("cross_entropy [float32]"), "{}", o.stdout);
    assert!(o.stdout.contains("\nloss = "), "{}", o.stdout);
    assert!(o.stderr.is_empty());
    // Missing arguments are usage errors (clap: exit code 2).
    assert_eq!(run(&["ce", &x]).code, 1);
    assert_eq!(run(&["entropy"]).code, 2);
    assert_eq!(run(&["ce", &x, &y, "--reduction", "avg"]).code, 2);
    // The other subcommands are still there.
    assert_eq!(run(&["bench", "--help"]).code, 0);
    assert_eq!(run(&["distill", "--help"]).code, 0);
    // `bench --help` names every op the bench knows (the list an unknown op prints).
    let unknown = run(&["bench", "--ops", "nope"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    let known =
        unknown.stderr.split("(known: ").nth(1).expect("the known ops").trim_end().trim_end_matches(')');
    let bench_help = run(&["bench", "--help"]).stdout;
    let words: Vec<&str> = bench_help.split(|c: char| c.is_whitespace() || ",;:.".contains(c)).collect();
    assert!(known.split(", ").count() > 30, "{known}");
    for op in known.split(", ") {
        assert!(words.contains(&op), "{op} missing from bench --help");
    }
    let help = run(&["--help"]).stdout;
    for cmd in [
        "cross-entropy",
        "nll-loss",
        "kl-div",
        "bce",
        "bce-with-logits",
        "log-softmax",
        "softmax",
        "logsumexp",
        "entropy",
        "rel-entr",
        "entr",
        "js",
        "self-information",
        "shannon-cross-entropy",
        "bench",
        "distill",
    ] {
        assert!(help.contains(cmd), "{cmd} missing from --help");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Every subcommand from every format; hostile inputs
// ---------------------------------------------------------------------------------------------------------

/// One array in each input format: .npy, .npz (member `a`), .safetensors (tensor `a`) and CSV text.
fn in_every_format(d: &Dir, name: &str, shape: &[usize], v: &[f64], ints: bool) -> [String; 4] {
    let (descr, dtype, bytes) = if ints {
        let i: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        ("<i8", safetensors::Dtype::I64, i64_bytes(&i))
    } else {
        ("<f8", safetensors::Dtype::F64, f64_bytes(v))
    };
    let npy = npy_bytes(descr, false, shape, &bytes);
    let a = d.write(&format!("{name}.npy"), &npy);
    zip_npz(&d.p(&format!("{name}.npz")), &[("a", npy.clone())], true);
    let st = safetensors::serialize(
        vec![("a", safetensors::tensor::TensorView::new(dtype, shape.to_vec(), &bytes).unwrap())],
        None,
    )
    .unwrap();
    d.write(&format!("{name}.safetensors"), &st);
    let cols = shape.get(1).copied().unwrap_or(1);
    let text: String = v
        .chunks(cols)
        .map(|r| {
            r.iter()
                .map(|x| if ints { (*x as i64).to_string() } else { x.to_string() })
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    d.write(&format!("{name}.csv"), text.as_bytes());
    [a, d.s(&format!("{name}.npz#a")), d.s(&format!("{name}.safetensors#a")), d.s(&format!("{name}.csv"))]
}

#[test]
fn every_subcommand_gives_the_same_result_from_every_format() {
    let d = Dir::new();
    let xv: Vec<f64> = X.iter().map(|&v| v as f64).collect();
    let pv = [0.1, 0.2, 0.3, 0.4, 0.25, 0.25, 0.5, 0.0, 0.7, 0.1, 0.1, 0.1];
    let qv = [0.4, 0.3, 0.2, 0.1, 0.5, 0.125, 0.125, 0.25, 0.05, 0.05, 0.6, 0.3];
    let x = in_every_format(&d, "x", &[3, 4], &xv, false);
    let p = in_every_format(&d, "p", &[3, 4], &pv, false);
    let q = in_every_format(&d, "q", &[3, 4], &qv, false);
    let y = in_every_format(&d, "y", &[3], &[3.0, -100.0, 0.0], true);
    // (command, which file set each position takes, options)
    type Case<'a> = (&'a str, Vec<&'a [String; 4]>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        ("cross-entropy", vec![&x, &y], vec!["--label-smoothing", "0.2"]),
        ("cross-entropy", vec![&x, &p], vec!["--reduction", "sum"]),
        ("nll-loss", vec![&x, &y], vec!["--reduction", "none"]),
        ("kl-div", vec![&x, &p], vec!["--reduction", "batchmean"]),
        ("bce", vec![&p, &q], vec![]),
        ("bce-with-logits", vec![&x, &p], vec!["--reduction", "none"]),
        ("log-softmax", vec![&x], vec![]),
        ("softmax", vec![&x], vec!["--dim", "0"]),
        ("logsumexp", vec![&x], vec!["--dim", "1"]),
        ("entropy", vec![&p], vec!["--axis", "1", "--base", "2"]),
        ("entropy", vec![&p, &q], vec![]),
        ("rel-entr", vec![&p, &q], vec![]),
        ("entr", vec![&p], vec![]),
        ("js", vec![&p, &q], vec!["--axis", "1"]),
        ("self-information", vec![&q], vec!["--base", "2"]),
        ("shannon-cross-entropy", vec![&p, &q], vec!["--axis", "-1"]),
    ];
    for (cmd, files, opts) in &cases {
        let mut first: Option<Value> = None;
        for fmt in 0..4 {
            let mut args: Vec<&str> = vec![cmd];
            args.extend(files.iter().map(|f| f[fmt].as_str()));
            args.extend(opts.iter().copied());
            args.push("--grad");
            let mut doc = json(&args);
            assert_eq!(doc["dtype"], "float64", "{args:?}");
            doc.as_object_mut().unwrap().remove("inputs");
            match &first {
                None => first = Some(doc),
                Some(f) => assert_eq!(&doc, f, "{args:?} differs from the .npy result"),
            }
        }
        let doc = first.unwrap();
        assert!(doc.get("grad").is_some(), "{cmd}: no gradient");
    }
    // Spot checks of the .npy results against the library (the per-command tests check the rest).
    let (xa, pa) = (
        ArrayD::from_shape_vec(IxDyn(&[3, 4]), xv.clone()).unwrap(),
        ArrayD::from_shape_vec(IxDyn(&[3, 4]), pv.to_vec()).unwrap(),
    );
    let doc = json(&["kl-div", &x[0], &p[0], "--reduction", "batchmean"]);
    let o = KlDivOptions { reduction: Reduction::BatchMean, log_target: false };
    assert_eq!(num(&doc["loss"]), infoloss::kl_div(xa.view(), pa.view(), &o).unwrap().scalar().unwrap());
    let doc = json(&["entropy", &p[3], "--axis", "1", "--base", "2"]);
    let h = infoloss::entropy(pa.view(), None, &EntropyOptions { base: Some(2.0), axis: 1 }).unwrap();
    assert_eq!(flat(&doc["output"]), h.iter().copied().collect::<Vec<_>>());
    assert_eq!(flat(&doc["output"])[1], 1.5, "H(1/4, 1/4, 1/2, 0) = 1.5 bits");
}

#[test]
fn hostile_inputs_never_panic() {
    let d = Dir::new();
    let inputs = vec![
        d.f32("e0.npy", &[0], &[]),
        d.f32("e03.npy", &[0, 3], &[]),
        d.f32("e30.npy", &[3, 0], &[]),
        d.f32("s.npy", &[], &[0.5]),
        d.f32("nan.npy", &[2, 3], &[f32::NAN, 1.0, f32::INFINITY, -0.0, f32::NEG_INFINITY, 1e-45]),
        d.f64("big.npy", &[2, 3], &[f64::MAX, -f64::MAX, 1e308, 5e-324, 0.0, 1.0]),
        d.f32("huge1.npy", &[1 << 28, 0, 1 << 28], &[]),
        d.f32("huge2.npy", &[1 << 50, 0], &[]),
        d.f32("huge3.npy", &[0, 1 << 50], &[]),
        d.write("trunc.npy", &npy_bytes("<f4", false, &[4, 3], &f32_bytes(&X[..2]))),
        d.write("empty.csv", b""),
    ];
    let targets =
        [d.i64("y2.npy", &[2], &[0, 7]), d.i64("y0.npy", &[0], &[]), d.i64("yh.npy", &[1 << 50], &[])];
    // (command, files, options)
    let cmds: [(&str, usize, &[&str]); 14] = [
        ("cross-entropy", 2, &["--label-smoothing", "0.1"]),
        ("nll-loss", 2, &["--reduction", "none"]),
        ("kl-div", 2, &["--reduction", "batchmean"]),
        ("bce", 2, &[]),
        ("bce-with-logits", 2, &[]),
        ("log-softmax", 1, &["--dim", "1"]),
        ("softmax", 1, &["--dim", "0"]),
        ("logsumexp", 1, &["--dim", "1"]),
        ("entropy", 2, &["--axis", "1"]),
        ("rel-entr", 2, &[]),
        ("entr", 1, &[]),
        ("js", 2, &["--axis", "-1", "--keepdims"]),
        ("self-information", 1, &["--base", "2"]),
        ("shannon-cross-entropy", 2, &[]),
    ];
    let mut runs = 0;
    for (cmd, n, opts) in cmds {
        for a in &inputs {
            let seconds: Vec<&String> =
                if n == 1 { vec![a] } else { inputs.iter().step_by(2).chain(&targets).collect() };
            for b in seconds {
                let mut args = vec![cmd, a.as_str()];
                if n == 2 {
                    args.push(b);
                }
                args.push("--grad");
                args.extend(opts.iter().copied());
                let o = run(&args);
                runs += 1;
                assert!(o.code == 0 || o.code == 1, "{args:?}: exit {} {}", o.code, o.stderr);
                assert!(!o.stderr.contains("panicked"), "{args:?} panicked: {}", o.stderr);
                if o.code == 1 {
                    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{args:?}: {}", o.stderr);
                    assert!(o.stderr.starts_with("infoloss: error: "), "{args:?}: {}", o.stderr);
                }
            }
        }
    }
    assert!(runs > 500, "{runs}");
}

#[test]
fn huge_empty_inputs_are_computed_or_refused_clearly() {
    let d = Dir::new();
    let huge = d.f32("huge.npy", &[1 << 28, 0, 1 << 28], &[]);
    // Reducing over the empty dimension: 2^56 results cannot be allocated (the library's Error::TooLarge).
    fails(
        &["logsumexp", &huge, "--dim", "1"],
        &["huge.npy: logsumexp: output is too large", "cannot allocate"],
    );
    fails(&["entropy", &huge, "--axis", "1"], &["huge.npy: entropy: output is too large"]);
    // Any other dimension: an empty result, computed at once, summarized in text and written as .npy.
    let o = run(&["softmax", &huge, "--dim", "1", "--grad", "--out", &d.s("o.npy")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("output: [268435456, 0, 268435456] written to"), "{}", o.stdout);
    assert!(o.stdout.contains("grad [268435456, 0, 268435456]:\n[]\n"), "{}", o.stdout);
    assert_eq!(read_npy(&d.p("o.npy")), ("<f4".to_string(), vec![1 << 28, 0, 1 << 28], vec![]));
    // JSON would be 2^28 nested lists: refused, naming the result.
    fails(
        &["softmax", &huge, "--json"],
        &["output of shape [268435456, 0, 268435456] would be", "--out FILE.npy"],
    );
    let e = d.f32("e.npy", &[1 << 21, 0], &[]);
    fails(&["softmax", &e, "--out", &d.s("e.csv")], &["e.csv: an empty array of shape [2097152, 0]"]);
    // Class-index losses: mean of no row is NaN, as in PyTorch; a huge target cannot be allocated.
    let e30 = d.f32("e30.npy", &[3, 0], &[]);
    let y = d.i64("y.npy", &[3], &[-100, -100, -100]);
    assert_eq!(json(&["ce", &e30, &y])["loss"], "NaN");
    // A target file cannot claim more rows than it holds.
    let yh = d.i64("yh.npy", &[1 << 50], &[]);
    let xh = d.f32("xh.npy", &[1 << 50, 0], &[]);
    fails(&["ce", &xh, &yh], &["yh.npy: truncated .npy file"]);
}
