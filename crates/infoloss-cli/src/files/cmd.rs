//! The loss subcommands: arguments, loading, running the library function, reporting.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use infoloss::ndarray::{ArrayD, ArrayViewD, CowArray, Dimension, Ix1, IxDyn, arr0};
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, Element, EntropyOptions, GradOutput,
    JensenShannonOptions, KlDivOptions, Loss, NllOptions, Reduction,
};
use serde_json::{Map, Value, json};

use super::progress::Progress;
use super::report::{InputInfo, Named, Report};
use super::source::{Format, Input, Spec, Want};
use super::tensor::StoredDType;
use super::write::{OutElem, Pending, add_array, check_out_path};

/// The element types a command computes in.
pub trait Elem: Element + OutElem {}
impl Elem for f32 {}
impl Elem for f64 {}
impl Elem for f16 {}
impl Elem for bf16 {}

/// `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// Single precision.
    F32,
    /// Double precision.
    F64,
}

/// `--reduction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReductionArg {
    /// No reduction: one loss per element (per row for class-index losses).
    None,
    /// The mean (class-index losses: divided by the summed weight of the kept targets).
    Mean,
    /// The sum.
    Sum,
    /// The sum divided by the batch size (kl-div only).
    Batchmean,
}

impl From<ReductionArg> for Reduction {
    fn from(r: ReductionArg) -> Reduction {
        match r {
            ReductionArg::None => Reduction::None,
            ReductionArg::Mean => Reduction::Mean,
            ReductionArg::Sum => Reduction::Sum,
            ReductionArg::Batchmean => Reduction::BatchMean,
        }
    }
}

/// Options every loss subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Print one JSON document (non-finite numbers as "NaN", "Infinity", "-Infinity").
    #[arg(long)]
    pub json: bool,
    /// Write the loss (or output) to this file (.npy or .csv) instead of printing its values.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also compute the gradients (with respect to every input PyTorch differentiates).
    #[arg(long)]
    pub grad: bool,
    /// Write the gradient with respect to the first input to this file (.npy or .csv); implies --grad.
    #[arg(long, value_name = "FILE")]
    pub grad_out: Option<PathBuf>,
    /// The upstream gradient (PyTorch's grad_output): a file with the output's shape (or a 0-d array).
    /// Default: 1 for every output element.
    #[arg(long, value_name = "FILE")]
    pub upstream: Option<String>,
    /// Array to read from a .npz input (repeat once per .npz input, in argument order); or FILE.npz#KEY.
    #[arg(long, value_name = "NAME")]
    pub key: Vec<String>,
    /// Tensor to read from a .safetensors input (repeat once per such input); or FILE.safetensors#NAME.
    #[arg(long, value_name = "NAME")]
    pub tensor: Vec<String>,
    /// Compute in this dtype (default: the widest floating-point dtype among the inputs; float64 for text).
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
    /// Reject inputs that contain NaN or ±inf (by default they propagate as in PyTorch).
    #[arg(long)]
    pub finite: bool,
    /// Never show the progress indicator.
    #[arg(long)]
    pub quiet: bool,
}

/// INPUT TARGET, positionally or as --input/--target.
#[derive(Debug, Clone, clap::Args)]
pub struct TwoFiles {
    /// INPUT and TARGET files (.npy, .npz, .safetensors, .csv).
    #[arg(value_name = "FILE", num_args = 0..=2)]
    pub files: Vec<String>,
    /// The input file (instead of the first positional argument).
    #[arg(long, value_name = "FILE")]
    pub input: Option<String>,
    /// The target file (instead of the second positional argument).
    #[arg(long, value_name = "FILE")]
    pub target: Option<String>,
}

impl TwoFiles {
    fn resolve(&self) -> Result<(String, String), String> {
        let mut pos = self.files.iter().cloned();
        let input = match (&self.input, pos.next()) {
            (Some(i), None) => i.clone(),
            (None, Some(i)) => i,
            (Some(i), Some(p)) => match (&self.target, pos.next()) {
                // `--input A B`: B is the target.
                (None, None) => return Ok((i.clone(), p)),
                _ => return Err(format!("the input is given twice ({i} and {p})")),
            },
            (None, None) => {
                return Err("no input file: give INPUT TARGET or --input FILE --target FILE".into());
            }
        };
        let target = match (&self.target, pos.next()) {
            (Some(t), None) => t.clone(),
            (None, Some(t)) => t,
            (Some(t), Some(p)) => return Err(format!("the target is given twice ({t} and {p})")),
            (None, None) => {
                return Err("no target file: give INPUT TARGET or --input FILE --target FILE".into());
            }
        };
        Ok((input, target))
    }
}

/// The options of the class-index losses.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassOpts {
    /// Per-class weights, shape (C).
    #[arg(long, value_name = "FILE")]
    weight: Option<String>,
    /// Target value whose rows are skipped (class-index targets).
    #[arg(long, default_value_t = -100, allow_negative_numbers = true)]
    ignore_index: i64,
    /// none, mean or sum.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionArg,
}

/// `cross-entropy`.
#[derive(Debug, Clone, clap::Args)]
pub struct CrossEntropyArgs {
    #[command(flatten)]
    files: TwoFiles,
    #[command(flatten)]
    class: ClassOpts,
    /// Label smoothing ε in [0, 1].
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    label_smoothing: f64,
    /// Write the gradient with respect to probability targets to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_target_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `nll-loss`.
#[derive(Debug, Clone, clap::Args)]
pub struct NllArgs {
    #[command(flatten)]
    files: TwoFiles,
    #[command(flatten)]
    class: ClassOpts,
    #[command(flatten)]
    common: Common,
}

/// `kl-div`.
#[derive(Debug, Clone, clap::Args)]
pub struct KlArgs {
    #[command(flatten)]
    files: TwoFiles,
    /// none, mean, sum or batchmean (what KL divergence means: the sum over classes, averaged over the batch).
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionArg,
    /// The target holds log-probabilities.
    #[arg(long)]
    log_target: bool,
    /// Write the gradient with respect to the target to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_target_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `bce`.
#[derive(Debug, Clone, clap::Args)]
pub struct BceArgs {
    #[command(flatten)]
    files: TwoFiles,
    /// Weights broadcast into the input's shape.
    #[arg(long, value_name = "FILE")]
    weight: Option<String>,
    /// none, mean or sum.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionArg,
    /// Write the gradient with respect to the target to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_target_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `bce-with-logits`.
#[derive(Debug, Clone, clap::Args)]
pub struct BceLogitsArgs {
    #[command(flatten)]
    files: TwoFiles,
    /// Weights broadcast into the input's shape.
    #[arg(long, value_name = "FILE")]
    weight: Option<String>,
    /// Weights of the positive term, broadcast into the input's shape (shape (C) acts on the last dimension).
    #[arg(long, value_name = "FILE")]
    pos_weight: Option<String>,
    /// none, mean or sum.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionArg,
    /// Write the gradient with respect to the target to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_target_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `softmax`, `log-softmax`, `logsumexp`.
#[derive(Debug, Clone, clap::Args)]
pub struct DimArgs {
    /// The input file.
    #[arg(value_name = "INPUT")]
    input: String,
    /// The dimension (negative counts from the end).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    dim: isize,
    #[command(flatten)]
    common: Common,
}

/// `entr`.
#[derive(Debug, Clone, clap::Args)]
pub struct OneArgs {
    /// The input file.
    #[arg(value_name = "X")]
    x: String,
    #[command(flatten)]
    common: Common,
}

/// `self-information`.
#[derive(Debug, Clone, clap::Args)]
pub struct SelfInfoArgs {
    /// Probabilities.
    #[arg(value_name = "P")]
    p: String,
    /// Logarithm base (default e: nats; 2: bits).
    #[arg(long, allow_negative_numbers = true)]
    base: Option<f64>,
    #[command(flatten)]
    common: Common,
}

/// `rel-entr`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelEntrArgs {
    /// P.
    #[arg(value_name = "P")]
    p: String,
    /// Q (broadcasts with P).
    #[arg(value_name = "Q")]
    q: String,
    /// Write the gradient with respect to Q to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_q_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `--base`, `--axis` and `--grad-q-out` of the SciPy-style measures of two distributions.
#[derive(Debug, Clone, clap::Args)]
pub struct Measure {
    /// Logarithm base (default e: nats; 2: bits). `js` needs a base greater than 1.
    #[arg(long, allow_negative_numbers = true)]
    base: Option<f64>,
    /// The axis along which the distributions lie (SciPy's default 0; negative counts from the end).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    axis: isize,
    /// Write the gradient with respect to the second distribution (QK, Q) to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_q_out: Option<PathBuf>,
}

/// `entropy`.
#[derive(Debug, Clone, clap::Args)]
pub struct EntropyArgs {
    /// Distribution(s) PK (normalized along --axis).
    #[arg(value_name = "PK")]
    pk: String,
    /// Optional QK: then the relative entropy (KL divergence) D(PK‖QK).
    #[arg(value_name = "QK")]
    qk: Option<String>,
    #[command(flatten)]
    m: Measure,
    #[command(flatten)]
    common: Common,
}

/// `shannon-cross-entropy` (and `js`): two distributions, P and Q (normalized along --axis).
#[derive(Debug, Clone, clap::Args)]
pub struct PqArgs {
    /// P (PK).
    #[arg(value_name = "P")]
    p: String,
    /// Q (QK).
    #[arg(value_name = "Q")]
    q: String,
    #[command(flatten)]
    m: Measure,
    #[command(flatten)]
    common: Common,
}

/// `js`.
#[derive(Debug, Clone, clap::Args)]
pub struct JsArgs {
    #[command(flatten)]
    pq: PqArgs,
    /// Keep the reduced axis with size 1.
    #[arg(long)]
    keepdims: bool,
}

/// The loss and information-measure subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LossCommand {
    /// Cross-entropy from logits (F.cross_entropy): class-index targets, or probability targets of the
    /// input's shape. Class dimension 1.
    #[command(visible_alias = "ce")]
    CrossEntropy(CrossEntropyArgs),
    /// Negative log-likelihood of log-probabilities (F.nll_loss). Class dimension 1.
    #[command(visible_alias = "nll")]
    NllLoss(NllArgs),
    /// KL divergence KL(target ‖ exp(input)) with INPUT holding log-probabilities (F.kl_div).
    #[command(visible_alias = "kl")]
    KlDiv(KlArgs),
    /// Binary cross-entropy of probabilities in [0, 1] (F.binary_cross_entropy).
    Bce(BceArgs),
    /// Binary cross-entropy from logits (F.binary_cross_entropy_with_logits).
    #[command(visible_alias = "bce-logits")]
    BceWithLogits(BceLogitsArgs),
    /// log_softmax along --dim (F.log_softmax).
    LogSoftmax(DimArgs),
    /// softmax along --dim (F.softmax).
    Softmax(DimArgs),
    /// logsumexp along --dim (torch.logsumexp).
    Logsumexp(DimArgs),
    /// Shannon entropy of PK, or relative entropy D(PK‖QK), along --axis (scipy.stats.entropy).
    Entropy(EntropyArgs),
    /// Elementwise p·ln(p/q) (scipy.special.rel_entr).
    RelEntr(RelEntrArgs),
    /// Elementwise −x·ln x (scipy.special.entr, torch.special.entr).
    Entr(OneArgs),
    /// Jensen–Shannon distance along --axis (scipy.spatial.distance.jensenshannon).
    #[command(visible_alias = "jensenshannon")]
    Js(JsArgs),
    /// Elementwise self-information −log p.
    SelfInformation(SelfInfoArgs),
    /// Cross-entropy of two distributions H(PK, QK) = −Σ p̂·log q̂ along --axis.
    #[command(visible_alias = "cross-entropy-dist")]
    ShannonCrossEntropy(PqArgs),
}

// ---------------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------------

/// The files of one command, opened.
struct Files {
    list: Vec<(&'static str, Input)>,
}

impl Files {
    /// Opens each (role, argument), giving `--key`/`--tensor` values to archive inputs without a `#NAME`.
    fn open(args: &[(&'static str, &str)], common: &Common, progress: &Progress) -> Result<Files, String> {
        let mut keys: VecDeque<String> = common.key.iter().cloned().collect();
        let mut tensors: VecDeque<String> = common.tensor.iter().cloned().collect();
        let mut specs = Vec::new();
        for &(role, arg) in args {
            let mut spec = Spec::parse(arg);
            if spec.name.is_none() {
                match spec.format_hint() {
                    Some(Format::Npz) => spec.name = keys.pop_front(),
                    Some(Format::Safetensors) => spec.name = tensors.pop_front(),
                    _ => {}
                }
            }
            specs.push((role, spec));
        }
        if !keys.is_empty() {
            return Err(format!(
                "--key {} is not used: there are more --key options than .npz inputs without #NAME",
                keys.front().map_or("", |s| s.as_str())
            ));
        }
        if !tensors.is_empty() {
            return Err(format!(
                "--tensor {} is not used: there are more --tensor options than .safetensors inputs without #NAME",
                tensors.front().map_or("", |s| s.as_str())
            ));
        }
        let mut list = Vec::new();
        for (role, spec) in specs {
            progress.stage(format!("reading {}", spec.path.display()));
            list.push((role, Input::open(&spec)?));
        }
        Ok(Files { list })
    }

    fn get(&self, role: &str) -> Option<&Input> {
        self.list.iter().find(|(r, _)| *r == role).map(|(_, i)| i)
    }

    fn req(&self, role: &str) -> Result<&Input, String> {
        self.get(role).ok_or_else(|| format!("internal: no {role} file"))
    }

    fn label(&self, role: &str) -> Option<&str> {
        self.get(role).map(|i| i.label.as_str())
    }

    fn infos(&self, indices_roles: &[&str]) -> Vec<InputInfo> {
        self.list
            .iter()
            .map(|(role, inp)| {
                let want = if indices_roles.contains(role) { Want::Indices } else { Want::Floats };
                let (shape, dtype) = inp.describe(want);
                InputInfo { role, file: inp.label.clone(), shape, dtype, mapped: inp.mapped() }
            })
            .collect()
    }

    /// The dtype to compute in: `--dtype`, else the widest float dtype among `roles`' typed inputs (f16 with
    /// bf16 gives f32), else float64.
    fn dtype(&self, common: &Common, roles: &[&str]) -> Result<StoredDType, String> {
        if let Some(d) = common.dtype {
            return Ok(match d {
                DTypeArg::F16 => StoredDType::F16,
                DTypeArg::Bf16 => StoredDType::BF16,
                DTypeArg::F32 => StoredDType::F32,
                DTypeArg::F64 => StoredDType::F64,
            });
        }
        let mut best: Option<StoredDType> = None;
        for &r in roles {
            let Some(inp) = self.get(r) else { continue };
            if !inp.typed() {
                continue;
            }
            let t = inp.tensor(Want::Floats)?;
            if !t.dtype.is_float() {
                continue;
            }
            best = Some(match (best, t.dtype) {
                (None, d) => d,
                (Some(a), b) if a == b => a,
                (Some(StoredDType::F64), _) | (_, StoredDType::F64) => StoredDType::F64,
                _ => StoredDType::F32,
            });
        }
        Ok(best.unwrap_or(StoredDType::F64))
    }
}

/// Loads a floating-point input as `T`; `ints_ok` lets integer arrays through (SciPy-style measures, as
/// NumPy converts counts to float64).
fn floats<'a, T: Elem>(
    inp: &'a Input,
    ints_ok: bool,
    common: &Common,
    progress: &Progress,
) -> Result<CowArray<'a, T, IxDyn>, String> {
    let t = inp.tensor(Want::Floats)?;
    if inp.typed() && !t.dtype.is_float() && !ints_ok {
        return Err(format!(
            "{}: wrong dtype {}: expected floating-point values (float16, bfloat16, float32 or float64)",
            inp.label, t.dtype
        ));
    }
    progress.stage(format!("loading {}", inp.label));
    let a = convert::<T>(inp)?;
    if common.finite {
        if let Some((i, v)) = a.indexed_iter().find(|(_, v)| !v.to_f64().is_finite()) {
            return Err(format!(
                "{}: {} at {:?} (--finite rejects NaN and ±inf)",
                inp.label,
                super::report::json_number(*v).as_str().unwrap_or("non-finite value"),
                i.slice()
            ));
        }
    }
    Ok(a)
}

fn convert<T: Elem>(inp: &Input) -> Result<CowArray<'_, T, IxDyn>, String> {
    inp.tensor(Want::Floats)?.into_floats::<T>().map_err(|m| format!("{}: {m}", inp.label))
}

fn indices(inp: &Input) -> Result<CowArray<'_, i64, IxDyn>, String> {
    inp.tensor(Want::Indices)?.into_indices().map_err(|m| format!("{}: {m}", inp.label))
}

/// Turns a library error into one line naming the files involved.
fn lib_error(e: infoloss::Error, files: &Files, names: &[(&str, &str)]) -> String {
    use infoloss::Error as E;
    let file_of = |name: &str| -> Option<String> {
        names.iter().find(|(n, _)| *n == name).and_then(|(_, role)| files.label(role)).map(str::to_string)
    };
    let prefix = match &e {
        E::ShapeMismatch { left_name, right_name, .. } => match (file_of(left_name), file_of(right_name)) {
            (Some(a), Some(b)) if a != b => Some(format!("{a}, {b}")),
            (Some(a), _) | (None, Some(a)) => Some(a),
            _ => None,
        },
        E::BadRank { name, .. } | E::InvalidValue { name, .. } => file_of(name),
        E::TargetOutOfRange { .. } => file_of("target"),
        E::InvalidOption { option, .. } if matches!(*option, "dim" | "axis") => file_of("input"),
        E::TooLarge { .. } => file_of("input"),
        _ => None,
    };
    match prefix {
        Some(p) => format!("{p}: {e}"),
        None => e.to_string(),
    }
}

const LOSS_NAMES: &[(&str, &str)] = &[
    ("input", "input"),
    ("target", "target"),
    ("weight", "weight"),
    ("pos_weight", "pos_weight"),
    ("grad_output", "upstream"),
    ("x", "input"),
    ("p", "input"),
    ("pk", "input"),
    ("q", "target"),
    ("qk", "target"),
    ("output", "input"),
];

// ---------------------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------------------

/// A library result, as the library returns it.
type Lib<A> = Result<A, infoloss::Error>;

/// Requested output files, by result name.
struct Outs(Vec<(&'static str, PathBuf)>);

impl Outs {
    fn new(
        primary: &'static str,
        c: &Common,
        second: Option<(&'static str, &Option<PathBuf>)>,
    ) -> Result<Outs, String> {
        let mut v = Vec::new();
        if let Some(p) = &c.out {
            v.push((primary, p.clone()));
        }
        if let Some(p) = &c.grad_out {
            v.push(("grad", p.clone()));
        }
        if let Some((name, Some(p))) = second {
            v.push((name, p.clone()));
        }
        for (i, (_, p)) in v.iter().enumerate() {
            check_out_path(p)?;
            if v[..i].iter().any(|(_, q)| q == p) {
                return Err(format!("{}: the same output file is given twice", p.display()));
            }
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(format!(
                    "{}: cannot create the file: directory {} does not exist",
                    p.display(),
                    dir.display()
                ));
            }
        }
        Ok(Outs(v))
    }

    fn wants_grad(&self, c: &Common) -> bool {
        c.grad || self.0.iter().any(|(n, _)| n.starts_with("grad"))
    }
}

/// What a command computes with: its opened files, options, and whether gradients are wanted.
struct Cx<'a> {
    files: Files,
    c: &'a Common,
    p: &'a Progress,
    grad: bool,
}

impl Cx<'_> {
    /// The floating-point input of `role` (integers too when `ints_ok`).
    fn floats<T: Elem>(&self, role: &str, ints_ok: bool) -> Result<CowArray<'_, T, IxDyn>, String> {
        floats::<T>(self.files.req(role)?, ints_ok, self.c, self.p)
    }

    /// The optional input of `role`, owned.
    fn opt_floats<T: Elem>(&self, role: &str, ints_ok: bool) -> Result<Option<ArrayD<T>>, String> {
        match self.files.get(role) {
            Some(i) => Ok(Some(floats::<T>(i, ints_ok, self.c, self.p)?.into_owned())),
            None => Ok(None),
        }
    }

    /// `--upstream`, if given.
    fn upstream<T: Elem>(&self) -> Result<Option<ArrayD<T>>, String> {
        self.opt_floats("upstream", false)
    }

    /// A library error as one line naming the files involved.
    fn le(&self, e: infoloss::Error) -> String {
        lib_error(e, &self.files, LOSS_NAMES)
    }

    /// An empty report of `op` with `options` (a JSON object); `idx_roles` are read as class indices.
    fn report<T: Elem>(&self, op: &'static str, options: Value, idx_roles: &[&str]) -> Report<T> {
        self.p.stage(format!("computing {op}"));
        let options = match options {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Report {
            op,
            dtype: dtype_name::<T>(),
            options,
            inputs: self.files.infos(idx_roles),
            results: Vec::new(),
        }
    }
}

/// The upstream gradient for the library: the `--upstream` array, or 1.
fn grad_output<T: Elem>(u: &Option<ArrayD<T>>) -> GradOutput<'_, T> {
    match u {
        Some(a) => GradOutput::Array(a.view()),
        None => GradOutput::one(),
    }
}

fn push<T>(r: &mut Report<T>, name: &'static str, array: ArrayD<T>) {
    r.results.push(Named { name, array });
}

/// The loss and, with gradients, the input's: fused (upstream 1) or forward then backward (`--upstream`).
fn loss_and_grad<T: Elem>(
    cx: &Cx<'_>,
    r: &mut Report<T>,
    u: &Option<ArrayD<T>>,
    forward: impl FnOnce() -> Lib<Loss<T>>,
    fused: impl FnOnce() -> Lib<(Loss<T>, ArrayD<T>)>,
    backward: impl FnOnce(&GradOutput<'_, T>) -> Lib<ArrayD<T>>,
) -> Result<(), String> {
    let (loss, grad) = match (cx.grad, u) {
        (false, _) => (forward().map_err(|e| cx.le(e))?, None),
        (true, None) => {
            let (l, g) = fused().map_err(|e| cx.le(e))?;
            (l, Some(g))
        }
        (true, Some(_)) => {
            (forward().map_err(|e| cx.le(e))?, Some(backward(&grad_output(u)).map_err(|e| cx.le(e))?))
        }
    };
    push(r, "loss", loss.into_array());
    if let Some(g) = grad {
        push(r, "grad", g);
    }
    Ok(())
}

/// The library functions of a loss of two arrays of the same shape (`kl_div`, the BCEs): the loss, and
/// the backwards with respect to the input and to the target.
struct PairFns<T: Elem, O> {
    loss: PairLoss<T, O>,
    grad: PairGrad<T, O>,
    grad_target: PairGrad<T, O>,
}

/// A loss of two arrays with options `O`.
type PairLoss<T, O> = fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O) -> Lib<Loss<T>>;
/// A backward of a [`PairLoss`] for an upstream gradient.
type PairGrad<T, O> = fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O, &GradOutput<'_, T>) -> Lib<ArrayD<T>>;

/// Runs a loss of INPUT and TARGET with the options `opts` (reported as `options`): the loss and, with
/// gradients, `grad` and `grad_target` for the upstream gradient (1 without `--upstream`).
fn pair_loss<T: Elem, O>(
    cx: &Cx<'_>,
    op: &'static str,
    opts: &O,
    options: Value,
    f: PairFns<T, O>,
) -> Result<Report<T>, String> {
    let (x, t) = (cx.floats::<T>("input", false)?, cx.floats::<T>("target", false)?);
    let u = cx.upstream::<T>()?;
    let mut r = cx.report::<T>(op, options, &[]);
    push(&mut r, "loss", (f.loss)(x.view(), t.view(), opts).map_err(|e| cx.le(e))?.into_array());
    if cx.grad {
        let g = grad_output(&u);
        for (name, b) in [("grad", f.grad), ("grad_target", f.grad_target)] {
            push(&mut r, name, b(x.view(), t.view(), opts, &g).map_err(|e| cx.le(e))?);
        }
    }
    Ok(r)
}

/// An output and, with gradients, `grad` (wrt the first input) and `grad_q` (wrt the second, if any)
/// from the backward function, given the upstream gradient (1 without `--upstream`).
fn output_and_grads<T: Elem>(
    cx: &Cx<'_>,
    r: &mut Report<T>,
    output: Lib<ArrayD<T>>,
    backward: impl FnOnce(ArrayViewD<'_, T>) -> Lib<(ArrayD<T>, Option<ArrayD<T>>)>,
) -> Result<(), String> {
    push(r, "output", output.map_err(|e| cx.le(e))?);
    if cx.grad {
        let g = cx.upstream::<T>()?.unwrap_or_else(|| arr0(one::<T>()).into_dyn());
        let (dp, dq) = backward(g.view()).map_err(|e| cx.le(e))?;
        push(r, "grad", dp);
        if let Some(dq) = dq {
            push(r, "grad_q", dq);
        }
    }
    Ok(())
}

/// What a subcommand reads and writes.
struct Io<'a> {
    common: &'a Common,
    /// The result `--out` writes: `loss` or `output`.
    primary: &'static str,
    /// The input files by role (`input`, `target`, `weight`, …); `--upstream` is added to them.
    files: Result<Vec<(&'static str, String)>, String>,
    /// A second gradient file option: (result name, path).
    second: Option<(&'static str, &'a Option<PathBuf>)>,
    /// The roles whose stored dtypes choose the dtype of the computation.
    dtype_roles: &'static [&'static str],
    /// How the report names the roles `input` and `target`.
    names: (&'static str, &'static str),
}

impl<'a> Io<'a> {
    fn new(
        common: &'a Common,
        primary: &'static str,
        files: Result<Vec<(&'static str, String)>, String>,
        second: Option<(&'static str, &'a Option<PathBuf>)>,
    ) -> Self {
        Io { common, primary, files, second, dtype_roles: &["input", "target"], names: ("input", "target") }
    }

    /// A loss of INPUT TARGET and the `extra` files (role, option), with `--grad-target-out` if it has one.
    fn loss(
        common: &'a Common,
        files: &TwoFiles,
        extra: &[(&'static str, &Option<String>)],
        grad_target: Option<&'a Option<PathBuf>>,
    ) -> Self {
        Io::new(common, "loss", two_files(files, extra), grad_target.map(|g| ("grad_target", g)))
    }

    /// A measure of P (and Q), with `--grad-q-out` if it has one.
    fn measure(common: &'a Common, p: &str, q: Option<&String>, grad_q: Option<&'a Option<PathBuf>>) -> Self {
        let files = match (q, grad_q) {
            (None, Some(Some(_))) => Err("--grad-q-out needs QK (the entropy of PK alone has no QK)".into()),
            _ => Ok(pq(p, q)),
        };
        Io::new(common, "output", files, grad_q.map(|g| ("grad_q", g)))
    }

    /// Only the input's dtype chooses the computation's.
    fn dtype_of_input(self) -> Self {
        Io { dtype_roles: &["input"], ..self }
    }

    /// The report calls the input and target `first` and `second`.
    fn names(self, first: &'static str, second: &'static str) -> Self {
        Io { names: (first, second), ..self }
    }
}

/// One subcommand: its files, and its computation in the element type `T`.
trait Cmd {
    /// What it reads and writes.
    fn spec(&self) -> Io<'_>;
    /// Runs the computation.
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String>;
}

/// Runs `cmd`: checks the outputs, opens the files, computes in the chosen dtype, writes and reports.
fn go<C: Cmd>(cmd: &C, p: &Progress) -> Result<String, String> {
    let spec = cmd.spec();
    let c = spec.common;
    let outs = Outs::new(spec.primary, c, spec.second)?;
    let mut args = spec.files?;
    if let Some(u) = &c.upstream {
        args.push(("upstream", u.clone()));
    }
    let a: Vec<(&'static str, &str)> = args.iter().map(|(r, s)| (*r, s.as_str())).collect();
    let files = Files::open(&a, c, p)?;
    let dt = files.dtype(c, spec.dtype_roles)?;
    let cx = Cx { files, c, p, grad: outs.wants_grad(c) };
    macro_rules! in_dtype {
        ($($variant:ident => $t:ty),*) => {
            match dt {
                $(StoredDType::$variant => {
                    let mut r = cmd.compute::<$t>(&cx)?;
                    relabel(&mut r, spec.names);
                    finish(r, &outs, c)
                })*
                _ => {
                    let mut r = cmd.compute::<f64>(&cx)?;
                    relabel(&mut r, spec.names);
                    finish(r, &outs, c)
                }
            }
        };
    }
    in_dtype!(F16 => f16, BF16 => bf16, F32 => f32)
}

fn relabel<T>(r: &mut Report<T>, (first, second): (&'static str, &'static str)) {
    for i in &mut r.inputs {
        i.role = match i.role {
            "input" => first,
            "target" => second,
            other => other,
        };
    }
}

/// Writes the requested output files (atomically, all or none) and renders the report.
fn finish<T: Elem>(report: Report<T>, outs: &Outs, c: &Common) -> Result<String, String> {
    let mut pending = Pending::default();
    let mut written = Vec::new();
    for (name, path) in &outs.0 {
        let r = report
            .results
            .iter()
            .find(|r| r.name == *name)
            .ok_or_else(|| format!("{}: this command has no {name} to write", path.display()))?;
        add_array(&mut pending, path, r.array.view())?;
        written.push((*name, path.display().to_string()));
    }
    if c.json {
        report.check_json_size()?;
    }
    pending.commit()?;
    Ok(if c.json {
        let mut s = serde_json::to_string_pretty(&report.to_json(&written)).map_err(|e| e.to_string())?;
        s.push('\n');
        s
    } else {
        report.to_text(&written)
    })
}

fn one<T: Elem>() -> T {
    T::from_acc(<T::Acc as infoloss::Real>::c(1.0))
}

fn dtype_name<T: Elem>() -> &'static str {
    <T as super::tensor::FromStored>::STORED.name()
}

/// `--weight` of the class-index losses: one value per class.
fn weight1<T: Elem>(cx: &Cx<'_>) -> Result<Option<infoloss::ndarray::Array1<T>>, String> {
    let Some(a) = cx.opt_floats::<T>("weight", false)? else { return Ok(None) };
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix1>().map(Some).map_err(|_| {
        format!(
            "{}: weight must be 1-D (one value per class), got shape {shape:?}",
            cx.files.label("weight").unwrap_or("--weight")
        )
    })
}

/// INPUT TARGET and the optional files given by `extra` (role, option).
fn two_files(
    tf: &TwoFiles,
    extra: &[(&'static str, &Option<String>)],
) -> Result<Vec<(&'static str, String)>, String> {
    let (i, t) = tf.resolve()?;
    let mut v = vec![("input", i), ("target", t)];
    v.extend(extra.iter().filter_map(|(role, f)| f.as_ref().map(|f| (*role, f.clone()))));
    Ok(v)
}

/// P and, if given, Q, as the roles `input` and `target`.
fn pq(p: &str, q: Option<&String>) -> Vec<(&'static str, String)> {
    let mut v = vec![("input", p.to_string())];
    v.extend(q.map(|q| ("target", q.clone())));
    v
}

/// The `cross-entropy` options for the library.
fn ce_options<'w, T: Elem>(
    a: &CrossEntropyArgs,
    w: &'w Option<infoloss::ndarray::Array1<T>>,
) -> CrossEntropyOptions<'w, T> {
    CrossEntropyOptions {
        weight: w.as_ref().map(|w| w.view()),
        ignore_index: a.class.ignore_index,
        reduction: a.class.reduction.into(),
        label_smoothing: a.label_smoothing,
    }
}

impl Cmd for CrossEntropyArgs {
    fn spec(&self) -> Io<'_> {
        Io::loss(&self.common, &self.files, &[("weight", &self.class.weight)], Some(&self.grad_target_out))
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let x = cx.floats::<T>("input", false)?;
        let tin = cx.files.req("target")?;
        let ttensor = tin.tensor(Want::Floats)?;
        // PyTorch's rule: a target of the input's shape holds class probabilities, anything else indices.
        let probs = ttensor.shape == x.shape();
        if tin.typed() && probs != ttensor.dtype.is_float() {
            return Err(if probs {
                format!(
                    "{}: wrong dtype {}: a target of the input's shape {:?} holds class probabilities and must be \
                     floating point (PyTorch: \"Expected floating point type for target with class probabilities\")",
                    tin.label,
                    ttensor.dtype,
                    x.shape()
                )
            } else {
                format!(
                    "{}: wrong dtype {}: class indices must be integers (int64 or int32); a floating-point target \
                     must have the input's shape {:?} to hold class probabilities, but has shape {:?}",
                    tin.label,
                    ttensor.dtype,
                    x.shape(),
                    ttensor.shape
                )
            });
        }
        if !probs && self.grad_target_out.is_some() {
            return Err(format!(
                "{}: --grad-target-out: class-index targets have no gradient (only probability targets do)",
                tin.label
            ));
        }
        let w = weight1::<T>(cx)?;
        let opts = ce_options(self, &w);
        let u = cx.upstream::<T>()?;
        let options = json!({
            "reduction": opts.reduction.as_str(), "ignore_index": self.class.ignore_index,
            "label_smoothing": self.label_smoothing,
            "target": if probs { "probabilities" } else { "class indices" },
        });
        if !probs {
            let t = indices(tin)?;
            let mut r = cx.report::<T>("cross_entropy", options, &["target"]);
            loss_and_grad(
                cx,
                &mut r,
                &u,
                || infoloss::cross_entropy(x.view(), t.view(), &opts),
                || infoloss::cross_entropy_with_grad(x.view(), t.view(), &opts),
                |g| infoloss::cross_entropy_backward(x.view(), t.view(), &opts, g),
            )?;
            return Ok(r);
        }
        let t = cx.floats::<T>("target", false)?;
        let mut r = cx.report::<T>("cross_entropy", options, &[]);
        if !cx.grad {
            push(
                &mut r,
                "loss",
                infoloss::cross_entropy_probs(x.view(), t.view(), &opts).map_err(|e| cx.le(e))?.into_array(),
            );
            return Ok(r);
        }
        let (loss, gi, gt) = match &u {
            None => infoloss::cross_entropy::cross_entropy_probs_with_grads(x.view(), t.view(), &opts)
                .map_err(|e| cx.le(e))?,
            Some(_) => {
                let g = grad_output(&u);
                (
                    infoloss::cross_entropy_probs(x.view(), t.view(), &opts).map_err(|e| cx.le(e))?,
                    infoloss::cross_entropy_probs_backward(x.view(), t.view(), &opts, &g)
                        .map_err(|e| cx.le(e))?,
                    infoloss::cross_entropy_probs_backward_target(x.view(), t.view(), &opts, &g)
                        .map_err(|e| cx.le(e))?,
                )
            }
        };
        push(&mut r, "loss", loss.into_array());
        push(&mut r, "grad", gi);
        push(&mut r, "grad_target", gt);
        Ok(r)
    }
}

impl Cmd for NllArgs {
    fn spec(&self) -> Io<'_> {
        Io::loss(&self.common, &self.files, &[("weight", &self.class.weight)], None).dtype_of_input()
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let x = cx.floats::<T>("input", false)?;
        let t = indices(cx.files.req("target")?)?;
        let w = weight1::<T>(cx)?;
        let reduction: Reduction = self.class.reduction.into();
        let opts = NllOptions {
            weight: w.as_ref().map(|w| w.view()),
            ignore_index: self.class.ignore_index,
            reduction,
        };
        let u = cx.upstream::<T>()?;
        let options = json!({"reduction": reduction.as_str(), "ignore_index": self.class.ignore_index});
        let mut r = cx.report::<T>("nll_loss", options, &["target"]);
        loss_and_grad(
            cx,
            &mut r,
            &u,
            || infoloss::nll_loss(x.view(), t.view(), &opts),
            || infoloss::nll_loss_with_grad(x.view(), t.view(), &opts),
            |g| infoloss::nll_loss_backward(x.view(), t.view(), &opts, g),
        )?;
        Ok(r)
    }
}

impl Cmd for KlArgs {
    fn spec(&self) -> Io<'_> {
        Io::loss(&self.common, &self.files, &[], Some(&self.grad_target_out))
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let opts = KlDivOptions { reduction: self.reduction.into(), log_target: self.log_target };
        let options = json!({"reduction": opts.reduction.as_str(), "log_target": self.log_target});
        let f = PairFns {
            loss: infoloss::kl_div::<T, IxDyn, IxDyn>,
            grad: infoloss::kl_div_backward::<T, IxDyn, IxDyn>,
            grad_target: infoloss::kl_div_backward_target::<T, IxDyn, IxDyn>,
        };
        pair_loss(cx, "kl_div", &opts, options, f)
    }
}

impl Cmd for BceArgs {
    fn spec(&self) -> Io<'_> {
        Io::loss(&self.common, &self.files, &[("weight", &self.weight)], Some(&self.grad_target_out))
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let w = cx.opt_floats::<T>("weight", false)?;
        let opts = BceOptions { weight: w.as_ref().map(|w| w.view()), reduction: self.reduction.into() };
        let options = json!({"reduction": opts.reduction.as_str()});
        let f = PairFns {
            loss: infoloss::binary_cross_entropy::<T, IxDyn, IxDyn>,
            grad: infoloss::binary_cross_entropy_backward::<T, IxDyn, IxDyn>,
            grad_target: infoloss::binary_cross_entropy_backward_target::<T, IxDyn, IxDyn>,
        };
        pair_loss(cx, "binary_cross_entropy", &opts, options, f)
    }
}

impl Cmd for BceLogitsArgs {
    fn spec(&self) -> Io<'_> {
        Io::loss(
            &self.common,
            &self.files,
            &[("weight", &self.weight), ("pos_weight", &self.pos_weight)],
            Some(&self.grad_target_out),
        )
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let (w, pw) = (cx.opt_floats::<T>("weight", false)?, cx.opt_floats::<T>("pos_weight", false)?);
        let opts = BceWithLogitsOptions {
            weight: w.as_ref().map(|w| w.view()),
            pos_weight: pw.as_ref().map(|w| w.view()),
            reduction: self.reduction.into(),
        };
        let options = json!({"reduction": opts.reduction.as_str()});
        let f = PairFns {
            loss: infoloss::binary_cross_entropy_with_logits::<T, IxDyn, IxDyn>,
            grad: infoloss::binary_cross_entropy_with_logits_backward::<T, IxDyn, IxDyn>,
            grad_target: infoloss::binary_cross_entropy_with_logits_backward_target::<T, IxDyn, IxDyn>,
        };
        pair_loss(cx, "binary_cross_entropy_with_logits", &opts, options, f)
    }
}

/// `softmax`, `log-softmax` and `logsumexp`: one [`DimArgs`] each.
#[derive(Clone, Copy)]
enum DimOp {
    LogSoftmax,
    Softmax,
    Logsumexp,
}

/// A [`DimOp`] with its arguments.
struct DimCmd<'a>(DimOp, &'a DimArgs);

impl Cmd for DimCmd<'_> {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.1.common, &self.1.input, None, None).dtype_of_input()
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let (op, dim) = (self.0, self.1.dim);
        let x = cx.floats::<T>("input", false)?;
        let name = match op {
            DimOp::LogSoftmax => "log_softmax",
            DimOp::Softmax => "softmax",
            DimOp::Logsumexp => "logsumexp",
        };
        let mut r = cx.report::<T>(name, json!({ "dim": dim }), &[]);
        let y = match op {
            DimOp::LogSoftmax => infoloss::log_softmax(x.view(), dim),
            DimOp::Softmax => infoloss::softmax(x.view(), dim),
            DimOp::Logsumexp => infoloss::logsumexp(x.view(), dim),
        }
        .map_err(|e| cx.le(e))?;
        if cx.grad {
            // The backward of (log_)softmax takes the output, that of logsumexp the input; the upstream
            // gradient has the output's shape (ones by default).
            let g = cx.upstream::<T>()?.unwrap_or_else(|| ArrayD::from_elem(y.raw_dim(), one::<T>()));
            let gi = match op {
                DimOp::LogSoftmax => infoloss::log_softmax_backward(y.view(), g.view(), dim),
                DimOp::Softmax => infoloss::softmax_backward(y.view(), g.view(), dim),
                DimOp::Logsumexp => infoloss::logsumexp_backward(x.view(), g.view(), dim),
            }
            .map_err(|e| cx.le(e))?;
            push(&mut r, "output", y);
            push(&mut r, "grad", gi);
        } else {
            push(&mut r, "output", y);
        }
        Ok(r)
    }
}

impl Cmd for OneArgs {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.common, &self.x, None, None).dtype_of_input()
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let x = cx.floats::<T>("input", true)?;
        let mut r = cx.report::<T>("entr", json!({}), &[]);
        output_and_grads(cx, &mut r, Ok(infoloss::entr(x.view())), |g| {
            infoloss::entr_backward(x.view(), g).map(|d| (d, None))
        })?;
        Ok(r)
    }
}

impl Cmd for SelfInfoArgs {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.common, &self.p, None, None).dtype_of_input()
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let x = cx.floats::<T>("input", true)?;
        let mut r = cx.report::<T>("self_information", json!({ "base": self.base }), &[]);
        output_and_grads(cx, &mut r, infoloss::self_information(x.view(), self.base), |g| {
            infoloss::self_information_backward(x.view(), self.base, g).map(|d| (d, None))
        })?;
        Ok(r)
    }
}

impl Cmd for RelEntrArgs {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.common, &self.p, Some(&self.q), Some(&self.grad_q_out)).names("p", "q")
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let (p, q) = (cx.floats::<T>("input", true)?, cx.floats::<T>("target", true)?);
        let mut r = cx.report::<T>("rel_entr", json!({}), &[]);
        output_and_grads(cx, &mut r, infoloss::rel_entr(p.view(), q.view()), |g| {
            infoloss::rel_entr_backward(p.view(), q.view(), g).map(|(dp, dq)| (dp, Some(dq)))
        })?;
        Ok(r)
    }
}

impl Cmd for EntropyArgs {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.common, &self.pk, self.qk.as_ref(), Some(&self.m.grad_q_out)).names("pk", "qk")
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let pk = cx.floats::<T>("input", true)?;
        let qk = cx.opt_floats::<T>("target", true)?;
        let opts = EntropyOptions { base: self.m.base, axis: self.m.axis };
        let mut r = cx.report::<T>("entropy", json!({"base": self.m.base, "axis": self.m.axis}), &[]);
        output_and_grads(
            cx,
            &mut r,
            infoloss::entropy(pk.view(), qk.as_ref().map(|q| q.view()), &opts),
            |g| infoloss::entropy_backward(pk.view(), qk.as_ref().map(|q| q.view()), &opts, g),
        )?;
        Ok(r)
    }
}

impl Cmd for PqArgs {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.common, &self.p, Some(&self.q), Some(&self.m.grad_q_out)).names("pk", "qk")
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let (pk, qk) = (cx.floats::<T>("input", true)?, cx.floats::<T>("target", true)?);
        let opts = EntropyOptions { base: self.m.base, axis: self.m.axis };
        let options = json!({"base": self.m.base, "axis": self.m.axis});
        let mut r = cx.report::<T>("shannon_cross_entropy", options, &[]);
        output_and_grads(cx, &mut r, infoloss::shannon_cross_entropy(pk.view(), qk.view(), &opts), |g| {
            infoloss::shannon_cross_entropy_backward(pk.view(), qk.view(), &opts, g)
                .map(|(dp, dq)| (dp, Some(dq)))
        })?;
        Ok(r)
    }
}

impl Cmd for JsArgs {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.pq.common, &self.pq.p, Some(&self.pq.q), Some(&self.pq.m.grad_q_out))
            .names("p", "q")
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let (p, q) = (cx.floats::<T>("input", true)?, cx.floats::<T>("target", true)?);
        let opts =
            JensenShannonOptions { base: self.pq.m.base, axis: self.pq.m.axis, keepdims: self.keepdims };
        let options = json!({"base": self.pq.m.base, "axis": self.pq.m.axis, "keepdims": self.keepdims});
        let mut r = cx.report::<T>("jensenshannon", options, &[]);
        output_and_grads(cx, &mut r, infoloss::jensenshannon(p.view(), q.view(), &opts), |g| {
            infoloss::jensenshannon_backward(p.view(), q.view(), &opts, g).map(|(dp, dq)| (dp, Some(dq)))
        })?;
        Ok(r)
    }
}

/// Runs a loss subcommand; returns what to print on standard output.
pub fn run(cmd: LossCommand) -> Result<String, String> {
    use LossCommand::*;
    macro_rules! each {
        ($a:ident => $e:expr) => {
            match &cmd {
                CrossEntropy($a) => $e,
                NllLoss($a) => $e,
                KlDiv($a) => $e,
                Bce($a) => $e,
                BceWithLogits($a) => $e,
                LogSoftmax(a) => {
                    let $a = &DimCmd(DimOp::LogSoftmax, a);
                    $e
                }
                Softmax(a) => {
                    let $a = &DimCmd(DimOp::Softmax, a);
                    $e
                }
                Logsumexp(a) => {
                    let $a = &DimCmd(DimOp::Logsumexp, a);
                    $e
                }
                Entropy($a) => $e,
                RelEntr($a) => $e,
                Entr($a) => $e,
                Js($a) => $e,
                SelfInformation($a) => $e,
                ShannonCrossEntropy($a) => $e,
            }
        };
    }
    let progress = Progress::start(!each!(a => a.spec().common.quiet));
    let out = each!(a => go(a, &progress));
    progress.finish();
    out
}
