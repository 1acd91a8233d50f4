//! The loss subcommands. This file holds their arguments (clap) and the dispatch; `opts.rs` builds each loss's
//! option flags from the core's option catalog, `load.rs` opens the files, `run.rs` runs a subcommand (outputs,
//! the library call, writing and reporting) and `losses.rs` holds each subcommand's files, options and library
//! calls. `catalog_check.rs` checks the flags against the catalog.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use infoloss::ndarray::{ArrayD, ArrayViewD, CowArray, Dimension, Ix1, IxDyn, arr0};
use infoloss::options::Options;
use infoloss::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, Element, EntropyOptions, GradOutput,
    JensenShannonOptions, KlDivOptions, Loss, NllOptions,
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

/// A loss of INPUT and TARGET (`cross-entropy`, `kl-div`, `bce`, `bce-with-logits`): the options of the catalog
/// loss `L` and a gradient with respect to the target.
#[derive(Debug, Clone, clap::Args)]
pub struct LossArgs<L: CatalogLoss> {
    #[command(flatten)]
    files: TwoFiles,
    #[command(flatten)]
    opts: CatalogOpts<L>,
    /// Write the gradient with respect to the target to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_target_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `nll-loss`: no gradient with respect to the class indices.
#[derive(Debug, Clone, clap::Args)]
pub struct NllArgs {
    #[command(flatten)]
    files: TwoFiles,
    #[command(flatten)]
    opts: CatalogOpts<NllLoss>,
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
    opts: CatalogOpts<EntropyLoss>,
    /// Write the gradient with respect to the second distribution (QK) to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_q_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `shannon-cross-entropy` and `js`: two distributions, P and Q (normalized along --axis), with the options of
/// the catalog loss `L`.
#[derive(Debug, Clone, clap::Args)]
pub struct PqArgs<L: CatalogLoss> {
    /// P (PK).
    #[arg(value_name = "P")]
    p: String,
    /// Q (QK).
    #[arg(value_name = "Q")]
    q: String,
    #[command(flatten)]
    opts: CatalogOpts<L>,
    /// Write the gradient with respect to the second distribution (Q) to this file; implies --grad.
    #[arg(long, value_name = "FILE")]
    grad_q_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// The loss and information-measure subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LossCommand {
    /// Cross-entropy from logits (F.cross_entropy): class-index targets, or probability targets of the
    /// input's shape. Class dimension 1.
    #[command(visible_alias = "ce")]
    CrossEntropy(LossArgs<CrossEntropyLoss>),
    /// Negative log-likelihood of log-probabilities (F.nll_loss). Class dimension 1.
    #[command(visible_alias = "nll")]
    NllLoss(NllArgs),
    /// KL divergence KL(target ‖ exp(input)) with INPUT holding log-probabilities (F.kl_div).
    #[command(visible_alias = "kl")]
    KlDiv(LossArgs<KlDivLoss>),
    /// Binary cross-entropy of probabilities in [0, 1] (F.binary_cross_entropy).
    Bce(LossArgs<BceLoss>),
    /// Binary cross-entropy from logits (F.binary_cross_entropy_with_logits).
    #[command(visible_alias = "bce-logits")]
    BceWithLogits(LossArgs<BceWithLogitsLoss>),
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
    Js(PqArgs<JensenShannonLoss>),
    /// Elementwise self-information −log p.
    SelfInformation(SelfInfoArgs),
    /// Cross-entropy of two distributions H(PK, QK) = −Σ p̂·log q̂ along --axis.
    #[command(visible_alias = "cross-entropy-dist")]
    ShannonCrossEntropy(PqArgs<ShannonCrossEntropyLoss>),
}

mod load;
mod losses;
mod opts;
mod run;

#[cfg(test)]
mod catalog_check;

use load::*;
use losses::*;
pub use opts::*;
use run::*;

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
                Entr(a) => {
                    let $a = &Elementwise::Entr(a);
                    $e
                }
                Js($a) => $e,
                SelfInformation(a) => {
                    let $a = &Elementwise::SelfInformation(a);
                    $e
                }
                ShannonCrossEntropy($a) => $e,
            }
        };
    }
    let progress = Progress::start(!each!(a => a.spec().common.quiet));
    let out = each!(a => go(a, &progress));
    progress.finish();
    out
}
