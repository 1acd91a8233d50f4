//! The options of knowledge distillation and UDA: the divergence, [`DistillOptions`], and UDA's
//! [`Sharpen`], [`UdaNormalize`] and [`UdaOptions`].

use crate::Reduction;
use crate::options::{Kind, OptionField, OptionSpec, Setting, Value, choice, one_of, options, parse_str};

/// Which divergence between the teacher `q` and the student `p` (both softmaxes at temperature `T`)
/// the soft loss uses. Sums run over the classes of one row; `0·log 0 = 0`.
///
/// | variant | row loss | PyTorch expression |
/// |---|---|---|
/// | `ForwardKl` | `KL(q‖p) = Σ q·(log q − log p)` | `F.kl_div(lp, lq, reduction='none', log_target=True).sum(1)` |
/// | `ReverseKl` | `KL(p‖q) = Σ p·(log p − log q)` | `F.kl_div(lq, lp, reduction='none', log_target=True).sum(1)` |
/// | `GeneralizedJsd { beta }` | `β·KL(q‖m) + (1−β)·KL(p‖m)`, `m = β·q + (1−β)·p` | TRL `generalized_jsd_loss` |
/// | `TotalVariation` | `½·Σ abs(p − q)` | `0.5 * (lp.exp() - lq.exp()).abs().sum(1)` |
///
/// (`lp = F.log_softmax(s / T, 1)`, `lq = F.log_softmax(t / T, 1)`.)
///
/// `GeneralizedJsd` follows TRL's `GKDTrainer.generalized_jsd_loss`: `β = 0` **is** forward KL and
/// `β = 1` **is** reverse KL (special-cased, as TRL does: the mixture formula itself would give 0 at
/// both ends), and `0 < β < 1` uses the mixture, with `log m = logaddexp(log q + log β, log p +
/// log1p(−β))`. `β = 0.5` is the ordinary Jensen–Shannon divergence (in nats, ≤ ln 2). `β` must lie
/// in `[0, 1]`. Total variation lies in `[0, 1]`. All four are ≥ 0 and 0 when `p = q`.
/// Their gradients with respect to the student logits are listed in the [module docs](crate::losses::distill).
///
/// ```
/// use infoloss::distill::{distill, DistillOptions, Divergence};
/// use infoloss::ndarray::array;
/// let s = array![[1.0f64, 2.0, 0.5]];
/// let t = array![[0.5f64, 1.5, 2.0]];
/// let jsd = |beta| {
///     let o = DistillOptions { divergence: Divergence::GeneralizedJsd { beta }, ..Default::default() };
///     distill(s.view(), t.view(), None, &o).unwrap().scalar().unwrap()
/// };
/// let fkl = distill(s.view(), t.view(), None, &DistillOptions::default()).unwrap().scalar().unwrap();
/// assert_eq!(jsd(0.0), fkl);
/// assert!((fkl - 0.453336953303576).abs() < 1e-12); // F.kl_div(lp, lq, 'batchmean', log_target=True)
/// assert!((jsd(0.5) - 0.09615590747987376).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Divergence {
    /// `KL(q‖p)`, teacher first: mode-covering, the classic knowledge-distillation loss (default).
    #[default]
    ForwardKl,
    /// `KL(p‖q)`, student first: mode-seeking.
    ReverseKl,
    /// TRL's generalized Jensen–Shannon divergence with interpolation `beta ∈ [0, 1]`.
    GeneralizedJsd {
        /// Weight of the teacher in the mixture `m = β·q + (1−β)·p`; 0 = forward KL, 1 = reverse KL.
        beta: f64,
    },
    /// Total variation distance `½·Σ |p − q|`.
    TotalVariation,
}

/// The Python and CLI spellings of the four divergences.
impl Divergence {
    /// The spellings the front ends accept, in declaration order.
    pub const CHOICES: &'static [&'static str] = &["forward_kl", "reverse_kl", "jsd", "tvd"];

    /// The spelling of this divergence (`GeneralizedJsd` is `"jsd"` whatever its `beta`).
    pub fn as_str(self) -> &'static str {
        match self {
            Divergence::ForwardKl => "forward_kl",
            Divergence::ReverseKl => "reverse_kl",
            Divergence::GeneralizedJsd { .. } => "jsd",
            Divergence::TotalVariation => "tvd",
        }
    }

    /// The divergence spelled `s`, with `beta` for `"jsd"`; `None` for an unknown spelling.
    ///
    /// ```
    /// use infoloss::Divergence;
    /// assert_eq!(Divergence::parse("jsd", 0.3), Some(Divergence::GeneralizedJsd { beta: 0.3 }));
    /// assert_eq!(Divergence::parse("tvd", 0.3), Some(Divergence::TotalVariation));
    /// assert_eq!(Divergence::parse("js", 0.3), None);
    /// ```
    pub fn parse(s: &str, beta: f64) -> Option<Self> {
        match s {
            "forward_kl" => Some(Divergence::ForwardKl),
            "reverse_kl" => Some(Divergence::ReverseKl),
            "jsd" => Some(Divergence::GeneralizedJsd { beta }),
            "tvd" => Some(Divergence::TotalVariation),
            _ => None,
        }
    }

    /// The `beta` of `GeneralizedJsd`, [`DEFAULT_JSD_BETA`] for the others.
    pub fn beta(self) -> f64 {
        match self {
            Divergence::GeneralizedJsd { beta } => beta,
            _ => DEFAULT_JSD_BETA,
        }
    }
}

/// The `beta` of `divergence = "jsd"` when none is given: 0.5, the ordinary Jensen–Shannon divergence
/// (TRL's `GKDConfig.beta` default).
pub const DEFAULT_JSD_BETA: f64 = 0.5;

/// A divergence field is two options: `divergence` (the spelling) and `beta` (the mixture weight of
/// `"jsd"`, ignored by the others). Set `divergence` before `beta`: setting `"jsd"` keeps the current beta.
impl OptionField for Divergence {
    fn describe(name: &'static str, doc: &'static str, default: &Self, out: &mut Vec<OptionSpec>) {
        out.push(OptionSpec {
            name,
            kind: Kind::Choice(Self::CHOICES),
            default: Value::Str(default.as_str()),
            doc,
        });
        out.push(OptionSpec {
            name: "beta",
            kind: Kind::Float,
            default: Value::Float(default.beta()),
            doc: "Weight of the teacher in the mixture `m = β·q + (1−β)·p` of `divergence = \"jsd\"` \
                  (default 0.5); ignored by the other divergences.\n",
        });
    }

    fn set_option(&mut self, name: &'static str, s: Setting<'_>) -> Option<crate::Result<()>> {
        if s.option == name {
            let d = parse_str::<DivergenceName>(s.value).and_then(|d| Divergence::parse(d.0, self.beta()));
            return Some(match d {
                Some(d) => {
                    *self = d;
                    Ok(())
                }
                None => Err(crate::Error::invalid_option(s.owner, name, s.value, one_of(Self::CHOICES))),
            });
        }
        (s.option == "beta").then(|| {
            let mut beta = self.beta();
            beta.set_option("beta", s).unwrap_or(Ok(()))?;
            if let Divergence::GeneralizedJsd { beta: b } = self {
                *b = beta;
            }
            Ok(())
        })
    }

    fn read(&self, name: &'static str, out: &mut Vec<(&'static str, Value<'static>)>) {
        out.push((name, Value::Str(self.as_str())));
        out.push(("beta", Value::Float(self.beta())));
    }
}

/// A valid divergence spelling (for [`parse_str`]).
struct DivergenceName(&'static str);

impl std::str::FromStr for DivergenceName {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Divergence::CHOICES.iter().find(|c| **c == s).map(|c| DivergenceName(c)).ok_or(())
    }
}

options! {
    /// Options of [`distill`](crate::distill()) and [`distill_topk`](crate::distill_topk).
    ///
    /// `Default`: `temperature = 1`, `t2_scaling = true`, forward KL, `alpha = 1` (soft loss only),
    /// `ignore_index = −100`, `reduction = BatchMean`, no normalizer, `logit_scale = 1`, no softcap.
    ///
    /// # Student logit transform
    ///
    /// With `logit_scale = a` and `softcap = Some(c)` the student logits become `s' = c·tanh(a·s / c)`
    /// (without a softcap `s' = a·s`) before anything else, so the gradient with respect to the given
    /// logits is the gradient with respect to `s'` times `∂s'/∂s = a·(1 − (s'/c)²)` (`a` without a
    /// softcap). PyTorch: `s = c * torch.tanh(a * s / c)` before the loss expression. The defaults run
    /// nothing extra and leave every result bit-identical.
    ///
    /// ```
    /// use infoloss::distill::{DistillOptions, Divergence};
    /// use infoloss::Reduction;
    /// let o = DistillOptions::default();
    /// assert_eq!((o.temperature, o.t2_scaling, o.alpha), (1.0, true, 1.0));
    /// assert_eq!((o.divergence, o.reduction, o.ignore_index), (Divergence::ForwardKl, Reduction::BatchMean, -100));
    /// assert_eq!((o.logit_scale, o.softcap), (1.0, None));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct DistillOptions {
        /// Softmax temperature `T` applied to both student and teacher logits; finite and > 0.
        pub temperature: f64 = 1.0,
        /// Multiply the soft loss (and its gradient) by `T²` (Hinton et al. 2015), so gradient magnitudes
        /// do not shrink as `1/T²`. DistillKit and axolotl do this; TRL and Liger do not.
        pub t2_scaling: bool = true,
        /// The divergence of the soft loss.
        pub divergence: Divergence = Divergence::ForwardKl,
        /// Weight of the soft loss in `alpha·soft + (1 − alpha)·cross_entropy(s, labels)`; in `[0, 1]`.
        /// Values below 1 need labels. At exactly 1 the cross-entropy is not computed, at exactly 0 the
        /// divergence is not computed (so a non-finite skipped term does not turn the result into NaN).
        pub alpha: f64 = 1.0,
        /// Label value whose rows are dropped from both terms (default −100, as PyTorch).
        pub ignore_index: i64 = -100,
        /// `BatchMean` (default), `Mean`, `Sum` or `None` (per row); see the [module docs](crate::losses::distill).
        pub reduction: Reduction = Reduction::BatchMean,
        /// Replaces the number of kept rows as the divisor of `BatchMean`/`Mean` (e.g. a global token count).
        pub normalizer: Option<f64> = None,
        /// Scale `a` of the student logits, `s' = a·s` (default 1); finite and > 0. Applied before the
        /// softcap, the temperature, the divergence and the hard-label cross-entropy.
        pub logit_scale: f64 = 1.0,
        /// Student logit softcap `c` (Gemma-style, default `None`): `s' = c·tanh(a·s / c)`, finite and > 0.
        /// Every term sees the capped logits — the divergence (after the temperature) **and** the
        /// hard-label cross-entropy — as Gemma caps the final logits every loss reads. The teacher is not
        /// capped (its stored or computed logits are taken as they are).
        pub softcap: Option<f64> = None,
    }
}

/// Which side of the UDA KL the softmax temperature divides.
///
/// ```
/// use infoloss::uda::{uda_consistency, Sharpen, UdaOptions};
/// use infoloss::ndarray::array;
/// let ori = array![[2.0f64, 0.0, -1.0]];
/// let aug = array![[1.0f64, 0.5, 0.0]];
/// let kl = |sharpen| {
///     let o = UdaOptions { temperature: 0.5, sharpen, ..Default::default() };
///     uda_consistency(ori.view(), aug.view(), &o).unwrap().loss
/// };
/// // KL(softmax(ori/0.5) ‖ softmax(aug)) and KL(softmax(ori) ‖ softmax(aug/0.5))
/// assert!((kl(Sharpen::Target) - 0.5847483697347966).abs() < 1e-12);
/// assert!((kl(Sharpen::Augmented) - 0.0815546793694342).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharpen {
    /// `target = softmax(ori / T)` (no gradient), augmented side at temperature 1 — Google's original
    /// UDA (`uda_softmax_temp`); with `T < 1` this sharpens the target. The default.
    #[default]
    Target,
    /// `log_softmax(aug / T)` against `softmax(ori)` — the articles' PyTorch port
    /// (`aug_log_prob = F.log_softmax(aug_logits / uda_softmax_temp, dim=-1)`).
    Augmented,
}

/// How the masked sum of per-row KLs is normalized.
///
/// ```
/// use infoloss::uda::{uda_consistency, UdaNormalize, UdaOptions};
/// use infoloss::ndarray::array;
/// let ori = array![[4.0f64, 0.0], [0.1, 0.0]]; // max softmax: 0.982 and 0.525
/// let aug = array![[1.0f64, 0.0], [0.0, 1.0]];
/// let run = |normalize| {
///     let o = UdaOptions { confidence_threshold: Some(0.9), normalize, ..Default::default() };
///     uda_consistency(ori.view(), aug.view(), &o).unwrap()
/// };
/// let (kept, all) = (run(UdaNormalize::KeptRows), run(UdaNormalize::AllRows));
/// assert_eq!(kept.kept, 1);
/// assert_eq!(kept.loss, kept.row_kl[0]); // ÷ 1 kept row
/// assert_eq!(all.loss, kept.row_kl[0] / 2.0); // ÷ 2 rows
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdaNormalize {
    /// Divide by the number of kept rows, at least 1: `Σ kl·mask / max(Σ mask, 1)` (the articles' port;
    /// the default). An empty or fully masked batch gives 0.
    #[default]
    KeptRows,
    /// Divide by the number of rows, kept or not: `mean(kl·mask)` (Google's `tf.reduce_mean`). An empty
    /// batch gives NaN.
    AllRows,
}

choice!(Sharpen { Target => "target", Augmented => "augmented" });
choice!(UdaNormalize { KeptRows => "kept_rows", AllRows => "all_rows" });

options! {
    /// Options of [`uda_consistency`](crate::uda_consistency). `Default`: `temperature = 1` (no sharpening), `Sharpen::Target`,
    /// no confidence threshold, `UdaNormalize::KeptRows`.
    ///
    /// ```
    /// use infoloss::uda::{Sharpen, UdaNormalize, UdaOptions};
    /// let o = UdaOptions { temperature: 0.4, confidence_threshold: Some(0.5), ..Default::default() };
    /// assert_eq!((o.sharpen, o.normalize), (Sharpen::Target, UdaNormalize::KeptRows));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct UdaOptions {
        /// Softmax temperature `T` (`uda_softmax_temp`), finite and > 0; 1 disables it (the articles' "−1").
        pub temperature: f64 = 1.0,
        /// Which side `T` applies to.
        pub sharpen: Sharpen = Sharpen::Target,
        /// Keep only rows with `max(softmax(ori)) > threshold` (strictly); `None` keeps every row
        /// (`uda_confidence_thresh = −1`). Must not be NaN.
        pub confidence_threshold: Option<f64> = None,
        /// Denominator of the masked sum.
        pub normalize: UdaNormalize = UdaNormalize::KeptRows,
    }
}
