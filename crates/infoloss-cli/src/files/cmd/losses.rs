//! Each subcommand's files, options and library calls.

use super::*;

/// `--weight` of the class-index losses: one value per class.
pub(super) fn weight1<T: Elem>(cx: &Cx<'_>) -> Result<Option<infoloss::ndarray::Array1<T>>, String> {
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
pub(super) fn two_files(
    tf: &TwoFiles,
    extra: &[(&'static str, Option<String>)],
) -> Result<Vec<(&'static str, String)>, String> {
    let (i, t) = tf.resolve()?;
    let mut v = vec![("input", i), ("target", t)];
    v.extend(extra.iter().filter_map(|(role, f)| f.as_ref().map(|f| (*role, f.clone()))));
    Ok(v)
}

/// P and, if given, Q, as the roles `input` and `target`.
pub(super) fn pq(p: &str, q: Option<&String>) -> Vec<(&'static str, String)> {
    let mut v = vec![("input", p.to_string())];
    v.extend(q.map(|q| ("target", q.clone())));
    v
}

/// The computation of a loss of INPUT and TARGET (a [`LossArgs`] subcommand), by its catalog loss.
pub(super) trait LossCompute: CatalogLoss + Sized {
    /// Runs the loss with the subcommand's arguments.
    fn compute<T: Elem>(a: &LossArgs<Self>, cx: &Cx<'_>) -> Result<Report<T>, String>;
}

impl<L: LossCompute> Cmd for LossArgs<L> {
    fn spec(&self) -> Io<'_> {
        Io::loss(&self.common, &self.files, self.opts.files(), Some(&self.grad_target_out))
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        L::compute(self, cx)
    }
}

/// The [`PairFns`] of the infoloss loss `$f` of two arrays: `$f`, `$f_backward` and `$f_backward_target`.
macro_rules! pair_fns {
    ($f:ident, $b:ident, $bt:ident) => {
        PairFns {
            loss: infoloss::$f::<T, IxDyn, IxDyn>,
            grad: infoloss::$b::<T, IxDyn, IxDyn>,
            grad_target: infoloss::$bt::<T, IxDyn, IxDyn>,
        }
    };
}

impl LossCompute for CrossEntropyLoss {
    fn compute<T: Elem>(a: &LossArgs<Self>, cx: &Cx<'_>) -> Result<Report<T>, String> {
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
        if !probs && a.grad_target_out.is_some() {
            return Err(format!(
                "{}: --grad-target-out: class-index targets have no gradient (only probability targets do)",
                tin.label
            ));
        }
        let w = weight1::<T>(cx)?;
        let opts = CrossEntropyOptions { weight: w.as_ref().map(|w| w.view()), ..a.opts.build()? };
        let u = cx.upstream::<T>()?;
        let mut options = report_options(&opts);
        options["target"] = json!(if probs { "probabilities" } else { "class indices" });
        if !probs {
            let t = indices(tin)?;
            let mut r = cx.report::<T>("cross_entropy", options, &["target"]);
            let f = ClassFns {
                loss: infoloss::cross_entropy,
                fused: infoloss::cross_entropy_with_grad,
                backward: infoloss::cross_entropy_backward,
            };
            loss_and_grad(cx, &mut r, &u, (x.view(), t.view()), &opts, f)?;
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
        Io::loss(&self.common, &self.files, self.opts.files(), None).dtype_of_input()
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let x = cx.floats::<T>("input", false)?;
        let t = indices(cx.files.req("target")?)?;
        let w = weight1::<T>(cx)?;
        let opts = NllOptions { weight: w.as_ref().map(|w| w.view()), ..self.opts.build()? };
        let u = cx.upstream::<T>()?;
        let mut r = cx.report::<T>("nll_loss", report_options(&opts), &["target"]);
        let f = ClassFns {
            loss: infoloss::nll_loss,
            fused: infoloss::nll_loss_with_grad,
            backward: infoloss::nll_loss_backward,
        };
        loss_and_grad(cx, &mut r, &u, (x.view(), t.view()), &opts, f)?;
        Ok(r)
    }
}

impl LossCompute for KlDivLoss {
    fn compute<T: Elem>(a: &LossArgs<Self>, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let opts: KlDivOptions = a.opts.build()?;
        pair_loss(cx, Self::NAME, &opts, pair_fns!(kl_div, kl_div_backward, kl_div_backward_target))
    }
}

impl LossCompute for BceLoss {
    fn compute<T: Elem>(a: &LossArgs<Self>, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let w = cx.opt_floats::<T>("weight", false)?;
        let opts = BceOptions { weight: w.as_ref().map(|w| w.view()), ..a.opts.build()? };
        let f = pair_fns!(
            binary_cross_entropy,
            binary_cross_entropy_backward,
            binary_cross_entropy_backward_target
        );
        pair_loss(cx, Self::NAME, &opts, f)
    }
}

impl LossCompute for BceWithLogitsLoss {
    fn compute<T: Elem>(a: &LossArgs<Self>, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let (w, pw) = (cx.opt_floats::<T>("weight", false)?, cx.opt_floats::<T>("pos_weight", false)?);
        let opts = BceWithLogitsOptions {
            weight: w.as_ref().map(|w| w.view()),
            pos_weight: pw.as_ref().map(|w| w.view()),
            ..a.opts.build()?
        };
        let f = pair_fns!(
            binary_cross_entropy_with_logits,
            binary_cross_entropy_with_logits_backward,
            binary_cross_entropy_with_logits_backward_target
        );
        pair_loss(cx, Self::NAME, &opts, f)
    }
}

/// `softmax`, `log-softmax` and `logsumexp`: one [`DimArgs`] each.
#[derive(Clone, Copy)]
pub(super) enum DimOp {
    LogSoftmax,
    Softmax,
    Logsumexp,
}

/// A [`DimOp`] with its arguments.
pub(super) struct DimCmd<'a>(pub(super) DimOp, pub(super) &'a DimArgs);

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

/// `entr` and `self-information`: elementwise measures of one input.
#[derive(Clone, Copy)]
pub(super) enum Elementwise<'a> {
    /// `−x·ln x`.
    Entr(&'a OneArgs),
    /// `−log p` in `--base`.
    SelfInformation(&'a SelfInfoArgs),
}

impl Cmd for Elementwise<'_> {
    fn spec(&self) -> Io<'_> {
        let (common, x) = match *self {
            Elementwise::Entr(a) => (&a.common, &a.x),
            Elementwise::SelfInformation(a) => (&a.common, &a.p),
        };
        Io::measure(common, x, None, None).dtype_of_input()
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let x = cx.floats::<T>("input", true)?;
        let (name, options) = match *self {
            Elementwise::Entr(_) => ("entr", json!({})),
            Elementwise::SelfInformation(a) => ("self_information", json!({ "base": a.base })),
        };
        let mut r = cx.report::<T>(name, options, &[]);
        let output = match *self {
            Elementwise::Entr(_) => Ok(infoloss::entr(x.view())),
            Elementwise::SelfInformation(a) => infoloss::self_information(x.view(), a.base),
        };
        output_and_grads(cx, &mut r, output, |g| {
            match *self {
                Elementwise::Entr(_) => infoloss::entr_backward(x.view(), g),
                Elementwise::SelfInformation(a) => infoloss::self_information_backward(x.view(), a.base, g),
            }
            .map(|d| (d, None))
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
        Io::measure(&self.common, &self.pk, self.qk.as_ref(), Some(&self.grad_q_out)).names("pk", "qk")
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let pk = cx.floats::<T>("input", true)?;
        let qk = cx.opt_floats::<T>("target", true)?;
        let opts: EntropyOptions = self.opts.build()?;
        let mut r = cx.report::<T>("entropy", report_options(&opts), &[]);
        output_and_grads(
            cx,
            &mut r,
            infoloss::entropy(pk.view(), qk.as_ref().map(|q| q.view()), &opts),
            |g| infoloss::entropy_backward(pk.view(), qk.as_ref().map(|q| q.view()), &opts, g),
        )?;
        Ok(r)
    }
}

/// A measure of two distributions P and Q (a [`PqArgs`] subcommand): what the report calls them, its
/// options and its library functions.
pub(super) trait PqMeasure: CatalogLoss + Sized {
    /// The report's names of P and Q.
    const NAMES: (&'static str, &'static str);
    /// The options struct.
    type Opts: Options;
    /// The measure and its backward (the gradients with respect to P and Q).
    fn fns<T: Elem>() -> (PqLoss<T, Self::Opts>, PqGrad<T, Self::Opts>);
}

/// A measure of P and Q with options `O`.
pub(super) type PqLoss<T, O> = fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O) -> Lib<ArrayD<T>>;
/// The backward of a [`PqLoss`] for an upstream gradient: the gradients with respect to P and Q.
pub(super) type PqGrad<T, O> =
    fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O, ArrayViewD<'_, T>) -> Lib<(ArrayD<T>, ArrayD<T>)>;

impl<L: PqMeasure> Cmd for PqArgs<L> {
    fn spec(&self) -> Io<'_> {
        Io::measure(&self.common, &self.p, Some(&self.q), Some(&self.grad_q_out))
            .names(L::NAMES.0, L::NAMES.1)
    }
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String> {
        let (p, q) = (cx.floats::<T>("input", true)?, cx.floats::<T>("target", true)?);
        let opts: L::Opts = self.opts.build()?;
        let (measure, backward) = L::fns::<T>();
        let mut r = cx.report::<T>(L::NAME, report_options(&opts), &[]);
        output_and_grads(cx, &mut r, measure(p.view(), q.view(), &opts), |g| {
            backward(p.view(), q.view(), &opts, g).map(|(dp, dq)| (dp, Some(dq)))
        })?;
        Ok(r)
    }
}

impl PqMeasure for ShannonCrossEntropyLoss {
    const NAMES: (&'static str, &'static str) = ("pk", "qk");
    type Opts = EntropyOptions;
    fn fns<T: Elem>() -> (PqLoss<T, EntropyOptions>, PqGrad<T, EntropyOptions>) {
        (
            infoloss::shannon_cross_entropy::<T, IxDyn>,
            infoloss::shannon_cross_entropy_backward::<T, IxDyn, IxDyn>,
        )
    }
}

impl PqMeasure for JensenShannonLoss {
    const NAMES: (&'static str, &'static str) = ("p", "q");
    type Opts = JensenShannonOptions;
    fn fns<T: Elem>() -> (PqLoss<T, JensenShannonOptions>, PqGrad<T, JensenShannonOptions>) {
        (infoloss::jensenshannon::<T, IxDyn>, infoloss::jensenshannon_backward::<T, IxDyn, IxDyn>)
    }
}
