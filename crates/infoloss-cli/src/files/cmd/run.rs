//! Running a subcommand: its outputs, the library call with or without gradients, writing and reporting.

use super::*;

/// A library result, as the library returns it.
pub(super) type Lib<A> = Result<A, infoloss::Error>;

/// Requested output files, by result name.
pub(super) struct Outs(pub(super) Vec<(&'static str, PathBuf)>);

impl Outs {
    pub(super) fn new(
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

    pub(super) fn wants_grad(&self, c: &Common) -> bool {
        c.grad || self.0.iter().any(|(n, _)| n.starts_with("grad"))
    }
}

/// What a command computes with: its opened files, options, and whether gradients are wanted.
pub(super) struct Cx<'a> {
    pub(super) files: Files,
    pub(super) c: &'a Common,
    pub(super) p: &'a Progress,
    pub(super) grad: bool,
}

impl Cx<'_> {
    /// The floating-point input of `role` (integers too when `ints_ok`).
    pub(super) fn floats<T: Elem>(
        &self,
        role: &str,
        ints_ok: bool,
    ) -> Result<CowArray<'_, T, IxDyn>, String> {
        floats::<T>(self.files.req(role)?, ints_ok, self.c, self.p)
    }

    /// The optional input of `role`, owned.
    pub(super) fn opt_floats<T: Elem>(&self, role: &str, ints_ok: bool) -> Result<Option<ArrayD<T>>, String> {
        match self.files.get(role) {
            Some(i) => Ok(Some(floats::<T>(i, ints_ok, self.c, self.p)?.into_owned())),
            None => Ok(None),
        }
    }

    /// `--upstream`, if given.
    pub(super) fn upstream<T: Elem>(&self) -> Result<Option<ArrayD<T>>, String> {
        self.opt_floats("upstream", false)
    }

    /// A library error as one line naming the files involved.
    pub(super) fn le(&self, e: infoloss::Error) -> String {
        lib_error(e, &self.files, LOSS_NAMES)
    }

    /// An empty report of `op` with `options` (a JSON object); `idx_roles` are read as class indices.
    pub(super) fn report<T: Elem>(&self, op: &'static str, options: Value, idx_roles: &[&str]) -> Report<T> {
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
pub(super) fn grad_output<T: Elem>(u: &Option<ArrayD<T>>) -> GradOutput<'_, T> {
    match u {
        Some(a) => GradOutput::Array(a.view()),
        None => GradOutput::one(),
    }
}

pub(super) fn push<T>(r: &mut Report<T>, name: &'static str, array: ArrayD<T>) {
    r.results.push(Named { name, array });
}

/// The library functions of a loss of class indices (`cross_entropy`, `nll_loss`): the loss, the loss and the
/// input's gradient in one pass, and the backward.
pub(super) struct ClassFns<T: Elem, O> {
    pub(super) loss: ClassLoss<T, O, Loss<T>>,
    pub(super) fused: ClassLoss<T, O, (Loss<T>, ArrayD<T>)>,
    pub(super) backward: ClassGrad<T, O>,
}

/// A function of an input and class indices with options `O`, returning `R`.
pub(super) type ClassLoss<T, O, R> = fn(ArrayViewD<'_, T>, ArrayViewD<'_, i64>, &O) -> Lib<R>;
/// The backward of a [`ClassLoss`] for an upstream gradient.
pub(super) type ClassGrad<T, O> =
    fn(ArrayViewD<'_, T>, ArrayViewD<'_, i64>, &O, &GradOutput<'_, T>) -> Lib<ArrayD<T>>;

/// The loss of the input `x` and the class indices `t` and, with gradients, the input's: fused (upstream 1)
/// or forward then backward (`--upstream`).
pub(super) fn loss_and_grad<T: Elem, O>(
    cx: &Cx<'_>,
    r: &mut Report<T>,
    u: &Option<ArrayD<T>>,
    (x, t): (ArrayViewD<'_, T>, ArrayViewD<'_, i64>),
    opts: &O,
    f: ClassFns<T, O>,
) -> Result<(), String> {
    let (loss, grad) = match (cx.grad, u) {
        (false, _) => ((f.loss)(x.view(), t.view(), opts).map_err(|e| cx.le(e))?, None),
        (true, None) => {
            let (l, g) = (f.fused)(x.view(), t.view(), opts).map_err(|e| cx.le(e))?;
            (l, Some(g))
        }
        (true, Some(_)) => (
            (f.loss)(x.view(), t.view(), opts).map_err(|e| cx.le(e))?,
            Some((f.backward)(x.view(), t.view(), opts, &grad_output(u)).map_err(|e| cx.le(e))?),
        ),
    };
    push(r, "loss", loss.into_array());
    if let Some(g) = grad {
        push(r, "grad", g);
    }
    Ok(())
}

/// The library functions of a loss of two arrays of the same shape (`kl_div`, the BCEs): the loss, and
/// the backwards with respect to the input and to the target.
pub(super) struct PairFns<T: Elem, O> {
    pub(super) loss: PairLoss<T, O>,
    pub(super) grad: PairGrad<T, O>,
    pub(super) grad_target: PairGrad<T, O>,
}

/// A loss of two arrays with options `O`.
pub(super) type PairLoss<T, O> = fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O) -> Lib<Loss<T>>;
/// A backward of a [`PairLoss`] for an upstream gradient.
pub(super) type PairGrad<T, O> =
    fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O, &GradOutput<'_, T>) -> Lib<ArrayD<T>>;

/// Runs a loss of INPUT and TARGET with the options `opts`: the loss and, with gradients, `grad` and
/// `grad_target` for the upstream gradient (1 without `--upstream`).
pub(super) fn pair_loss<T: Elem, O: Options>(
    cx: &Cx<'_>,
    op: &'static str,
    opts: &O,
    f: PairFns<T, O>,
) -> Result<Report<T>, String> {
    let (x, t) = (cx.floats::<T>("input", false)?, cx.floats::<T>("target", false)?);
    let u = cx.upstream::<T>()?;
    let mut r = cx.report::<T>(op, report_options(opts), &[]);
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
pub(super) fn output_and_grads<T: Elem>(
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
pub(super) struct Io<'a> {
    pub(super) common: &'a Common,
    /// The result `--out` writes: `loss` or `output`.
    pub(super) primary: &'static str,
    /// The input files by role (`input`, `target`, `weight`, …); `--upstream` is added to them.
    pub(super) files: Result<Vec<(&'static str, String)>, String>,
    /// A second gradient file option: (result name, path).
    pub(super) second: Option<(&'static str, &'a Option<PathBuf>)>,
    /// The roles whose stored dtypes choose the dtype of the computation.
    pub(super) dtype_roles: &'static [&'static str],
    /// How the report names the roles `input` and `target`.
    pub(super) names: (&'static str, &'static str),
}

impl<'a> Io<'a> {
    pub(super) fn new(
        common: &'a Common,
        primary: &'static str,
        files: Result<Vec<(&'static str, String)>, String>,
        second: Option<(&'static str, &'a Option<PathBuf>)>,
    ) -> Self {
        Io { common, primary, files, second, dtype_roles: &["input", "target"], names: ("input", "target") }
    }

    /// A loss of INPUT TARGET and the `extra` files (role, option), with `--grad-target-out` if it has one.
    pub(super) fn loss(
        common: &'a Common,
        files: &TwoFiles,
        extra: &[(&'static str, Option<String>)],
        grad_target: Option<&'a Option<PathBuf>>,
    ) -> Self {
        Io::new(common, "loss", two_files(files, extra), grad_target.map(|g| ("grad_target", g)))
    }

    /// A measure of P (and Q), with `--grad-q-out` if it has one.
    pub(super) fn measure(
        common: &'a Common,
        p: &str,
        q: Option<&String>,
        grad_q: Option<&'a Option<PathBuf>>,
    ) -> Self {
        let files = match (q, grad_q) {
            (None, Some(Some(_))) => Err("--grad-q-out needs QK (the entropy of PK alone has no QK)".into()),
            _ => Ok(pq(p, q)),
        };
        Io::new(common, "output", files, grad_q.map(|g| ("grad_q", g)))
    }

    /// Only the input's dtype chooses the computation's.
    pub(super) fn dtype_of_input(self) -> Self {
        Io { dtype_roles: &["input"], ..self }
    }

    /// The report calls the input and target `first` and `second`.
    pub(super) fn names(self, first: &'static str, second: &'static str) -> Self {
        Io { names: (first, second), ..self }
    }
}

/// One subcommand: its files, and its computation in the element type `T`.
pub(super) trait Cmd {
    /// What it reads and writes.
    fn spec(&self) -> Io<'_>;
    /// Runs the computation.
    fn compute<T: Elem>(&self, cx: &Cx<'_>) -> Result<Report<T>, String>;
}

/// Runs `cmd`: checks the outputs, opens the files, computes in the chosen dtype, writes and reports.
pub(super) fn go<C: Cmd>(cmd: &C, p: &Progress) -> Result<String, String> {
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

pub(super) fn relabel<T>(r: &mut Report<T>, (first, second): (&'static str, &'static str)) {
    for i in &mut r.inputs {
        i.role = match i.role {
            "input" => first,
            "target" => second,
            other => other,
        };
    }
}

/// Writes the requested output files (atomically, all or none) and renders the report.
pub(super) fn finish<T: Elem>(report: Report<T>, outs: &Outs, c: &Common) -> Result<String, String> {
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

pub(super) fn one<T: Elem>() -> T {
    T::from_acc(<T::Acc as infoloss::Real>::c(1.0))
}

pub(super) fn dtype_name<T: Elem>() -> &'static str {
    <T as super::super::tensor::FromStored>::STORED.name()
}
