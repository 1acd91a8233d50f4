//! Validation, planning and the row engine of `distill` and `distill_topk`: options and shapes are checked
//! once into a [`Plan`], then every row runs (in parallel, in fixed-size tasks so results do not depend on
//! the thread count) through the fast row or the `f64` reference row, and the per-row terms are reduced.

use crate::base::shape::ensure_shapes;
use ndarray::{
    Array2, ArrayD, ArrayView, ArrayView1, ArrayView2, ArrayViewMut, ArrayViewMut2, Dimension, Ix2, IxDyn,
};
use rayon::prelude::*;

use crate::base::shape::checked_numel;
use crate::kernels::distill::KdDiv;
use crate::{Element, Error, GradOutput, Loss, Real, Reduction, Result};

use super::fast::*;
use super::{DistillOptions, Divergence, OP, OP_TOPK, SparseTeacher};
use crate::base::checks::check_temperature;
use crate::base::element::{to_t, zero_t};
use crate::base::shape::as_2d;
use crate::rows::distill_rows::*;

pub(crate) fn check_options(op: &'static str, opts: &DistillOptions, have_labels: bool) -> Result<()> {
    check_temperature(op, opts.temperature)?;
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(Error::invalid_option(op, "alpha", opts.alpha, "must be in [0, 1]"));
    }
    if opts.alpha < 1.0 && !have_labels {
        return Err(Error::invalid_option(
            op,
            "alpha",
            opts.alpha,
            "alpha < 1 mixes in the hard-label cross-entropy and needs labels",
        ));
    }
    if let Divergence::GeneralizedJsd { beta } = opts.divergence {
        if !(0.0..=1.0).contains(&beta) {
            return Err(Error::invalid_option(op, "beta", beta, "must be in [0, 1]"));
        }
    }
    if !(opts.logit_scale.is_finite() && opts.logit_scale > 0.0) {
        return Err(Error::invalid_option(
            op,
            "logit_scale",
            opts.logit_scale,
            "must be a finite number > 0",
        ));
    }
    if let Some(c) = opts.softcap {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid_option(op, "softcap", c, "must be a finite number > 0"));
        }
    }
    if let Some(n) = opts.normalizer {
        if !(n.is_finite() && n > 0.0) {
            return Err(Error::invalid_option(op, "normalizer", n, "must be a finite number > 0"));
        }
        if !matches!(opts.reduction, Reduction::BatchMean | Reduction::Mean) {
            return Err(Error::invalid_option(
                op,
                "normalizer",
                n,
                format!("replaces the divisor of batchmean or mean, but reduction is {}", opts.reduction),
            ));
        }
    }
    Ok(())
}

/// The student logit map of [`DistillOptions`]: `s' = c·tanh(a·s / c)` with a softcap `c`, else `a·s`
/// (`a` = `logit_scale`). A [`Plan`] holds `None` for the identity, so the default runs nothing extra.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StudentMap {
    pub(crate) scale: f64,
    pub(crate) cap: Option<f64>,
}

impl StudentMap {
    /// The map of `opts`, `None` when it is the identity (`logit_scale = 1`, no softcap).
    pub(crate) fn of(opts: &DistillOptions) -> Option<Self> {
        (opts.logit_scale != 1.0 || opts.softcap.is_some())
            .then_some(StudentMap { scale: opts.logit_scale, cap: opts.softcap })
    }

    /// `s' = c·tanh(a·s / c)` (`a·s` without a cap), in PyTorch's order of operations.
    #[inline]
    pub(crate) fn apply(self, s: f64) -> f64 {
        let y = self.scale * s;
        match self.cap {
            Some(c) => c * (y / c).tanh(),
            None => y,
        }
    }

    /// `∂s'/∂s = a·(1 − (s'/c)²)` (`a` without a cap) from the mapped logit `s'`, as `tanh`'s backward.
    #[inline]
    pub(crate) fn slope(self, mapped: f64) -> f64 {
        match self.cap {
            Some(c) => {
                let u = mapped / c;
                self.scale * (1.0 - u * u)
            }
            None => self.scale,
        }
    }

    /// Maps the `f64` row `s` in place.
    pub(crate) fn apply_row(self, s: &mut [f64]) {
        for x in s {
            *x = self.apply(*x);
        }
    }

    /// `g ⊙ ∂s'/∂s` for the mapped row `mapped`: the gradient wrt `s'` becomes the one wrt `s`.
    pub(crate) fn chain_row(self, g: &mut [f64], mapped: &[f64]) {
        for (gi, &y) in g.iter_mut().zip(mapped) {
            *gi *= self.slope(y);
        }
    }
}

/// Runs the reference row function `f` on the student row `sc.s` mapped by `map` (if any; `f` must not
/// change `sc.s`), then turns its gradient wrt the mapped logits into the gradient wrt the given ones.
pub(crate) fn mapped_row(
    map: Option<StudentMap>,
    sc: &mut Scratch,
    grad: GradDst<'_>,
    f: impl FnOnce(&mut Scratch, GradDst<'_>) -> (f64, f64),
) -> (f64, f64) {
    let Some(m) = map else { return f(sc, grad) };
    m.apply_row(&mut sc.s);
    match grad {
        None => f(sc, None),
        Some((g, a, b)) => {
            let res = f(sc, Some((&mut *g, a, b)));
            m.chain_row(g, &sc.s);
            res
        }
    }
}

/// What happens to one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RowKind {
    /// Labelled `ignore_index`: no loss, no gradient.
    Ignored,
    /// Kept, with its class label if labels were given.
    Keep(Option<usize>),
}

/// Everything the row loop needs besides the data.
pub(crate) struct Plan {
    pub(crate) rows: usize,
    pub(crate) classes: usize,
    pub(crate) kinds: Vec<RowKind>,
    /// `alpha · c_T` (0 when alpha = 0).
    pub(crate) soft_w: f64,
    /// `1 − alpha`.
    pub(crate) hard_w: f64,
    /// Divisor of the soft sum.
    pub(crate) soft_div: f64,
    /// Divisor of the cross-entropy sum.
    pub(crate) hard_div: f64,
    pub(crate) reduction: Reduction,
    pub(crate) cfg: RowCfg,
    /// The student logit map (logit scale, softcap); `None` for the identity.
    pub(crate) map: Option<StudentMap>,
}

pub(crate) fn make_plan(
    op: &'static str,
    rows: usize,
    classes: usize,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    add_tail: bool,
) -> Result<Plan> {
    check_options(op, opts, labels.is_some())?;
    // One entry per row, allocated fallibly: a `[2^40, 0]` student holds nothing but has that many rows.
    let mut kinds = crate::base::array::try_vec(op, "rows", rows)?;
    match labels {
        None => kinds.resize(rows, RowKind::Keep(None)),
        Some(y) => {
            ensure_shapes(
                y.len() == rows,
                op,
                ("labels", y.shape()),
                ("student", &[rows, classes]),
                "do not match: labels must have one entry per row",
            )?;
            for (r, &v) in y.iter().enumerate() {
                if v == opts.ignore_index {
                    kinds.push(RowKind::Ignored);
                } else if v >= 0 && (v as u64) < classes as u64 {
                    kinds.push(RowKind::Keep(Some(v as usize)));
                } else {
                    return Err(Error::target_out_of_range(op, &[r], v, classes));
                }
            }
        }
    }
    let kept = kinds.iter().filter(|k| matches!(k, RowKind::Keep(_))).count();
    let n = opts.normalizer.unwrap_or(kept as f64);
    let (soft_div, hard_div) = match opts.reduction {
        Reduction::None | Reduction::Sum => (1.0, 1.0),
        Reduction::BatchMean => (n, n),
        Reduction::Mean => (n * classes as f64, n),
    };
    let t = opts.temperature;
    let c_t = if opts.t2_scaling { t * t } else { 1.0 };
    let soft_on = opts.alpha > 0.0;
    let ce_on = opts.alpha < 1.0;
    Ok(Plan {
        rows,
        classes,
        kinds,
        soft_w: if soft_on { opts.alpha * c_t } else { 0.0 },
        hard_w: if ce_on { 1.0 - opts.alpha } else { 0.0 },
        soft_div,
        hard_div,
        reduction: opts.reduction,
        cfg: RowCfg { temp: t, div: opts.divergence, soft_on, ce_on, add_tail },
        map: StudentMap::of(opts),
    })
}

/// The upstream gradient per row.
pub(crate) enum Upstream {
    Scalar(f64),
    PerRow(Vec<f64>),
}

impl Upstream {
    pub(crate) fn resolve<T: Element>(
        op: &'static str,
        g: &GradOutput<'_, T>,
        reduction: Reduction,
        rows: usize,
    ) -> Result<Self> {
        if reduction == Reduction::None {
            match g.check(op, &[rows])? {
                Some(a) => Ok(Upstream::PerRow(a.iter().map(|v| v.to_acc().f64()).collect())),
                None => Ok(Upstream::Scalar(g.scalar_value().map_or(1.0, |v| v.to_acc().f64()))),
            }
        } else {
            Ok(Upstream::Scalar(g.expect_scalar(op)?.to_acc().f64()))
        }
    }

    #[inline]
    pub(crate) fn at(&self, r: usize) -> f64 {
        match self {
            Upstream::Scalar(g) => *g,
            Upstream::PerRow(v) => v.get(r).copied().unwrap_or(0.0),
        }
    }
}

/// Runs `row_fn` over all rows (in parallel), then reduces. `row_fn(r, label, scratch, grad)` returns
/// the row's `(soft divergence, cross-entropy)` and, when asked, writes the row's gradient.
pub(crate) fn engine<T, F>(
    op: &'static str,
    plan: &Plan,
    grad_output: Option<&GradOutput<'_, T>>,
    row_fn: F,
) -> Result<(Loss<T>, Option<Array2<T>>)>
where
    T: Element,
    F: Fn(usize, Option<usize>, &mut Scratch, GradDst<'_>) -> (f64, f64) + Sync,
{
    let (rows, v) = (plan.rows, plan.classes);
    let min_len = min_rows_per_task(v);
    let up = match grad_output {
        Some(g) => Some(Upstream::resolve(op, g, plan.reduction, rows)?),
        None => None,
    };
    let mut grad = None;
    let per_row: Vec<(f64, f64)> = match &up {
        // Rows of no class: each divergence and cross-entropy is an empty sum, 0, in both paths (the
        // row functions are not called on empty rows).
        _ if v == 0 => {
            if up.is_some() {
                grad = Some(
                    Array2::from_shape_vec((rows, 0), Vec::new())
                        .map_err(|e| Error::too_large(op, "gradient", e.to_string()))?,
                );
            }
            let mut z = crate::base::array::try_vec(op, "rows", rows)?;
            z.resize(rows, (0.0, 0.0));
            z
        }
        Some(up) => {
            let numel = checked_numel(op, "student", &[rows, v])?;
            let mut buf = crate::kernels::alloc::try_zeroed::<T>(op, "gradient", numel)?;
            let soft_base = plan.soft_w / plan.soft_div / plan.cfg.temp;
            let ce_base = plan.hard_w / plan.hard_div;
            let res = buf
                .par_chunks_mut(v)
                .enumerate()
                .with_min_len(min_len)
                .map_init(
                    || (Scratch::default(), Vec::<f64>::new()),
                    |(sc, g), (r, out)| match plan.kinds.get(r) {
                        Some(RowKind::Keep(label)) => {
                            let gr = up.at(r);
                            g.clear();
                            g.resize(v, 0.0);
                            let res =
                                row_fn(r, *label, sc, Some((g.as_mut_slice(), gr * soft_base, gr * ce_base)));
                            for (o, &x) in out.iter_mut().zip(g.iter()) {
                                *o = to_t(x);
                            }
                            res
                        }
                        _ => (0.0, 0.0),
                    },
                )
                .collect();
            grad = Some(
                Array2::from_shape_vec((rows, v), buf)
                    .map_err(|e| Error::too_large(op, "gradient", e.to_string()))?,
            );
            res
        }
        None => (0..rows)
            .into_par_iter()
            .with_min_len(min_len)
            .map_init(Scratch::default, |sc, r| match plan.kinds.get(r) {
                Some(RowKind::Keep(label)) => row_fn(r, *label, sc, None),
                _ => (0.0, 0.0),
            })
            .collect(),
    };
    Ok((reduce_rows(op, plan, &per_row)?, grad))
}

/// The loss from the per-row `(soft divergence, cross-entropy)` pairs, summed in row order in `f64`.
pub(crate) fn reduce_rows<T: Element>(
    op: &'static str,
    plan: &Plan,
    per_row: &[(f64, f64)],
) -> Result<Loss<T>> {
    Ok(match plan.reduction {
        Reduction::None => {
            let vals: Vec<T> = per_row
                .iter()
                .zip(&plan.kinds)
                .map(|(&(soft, ce), k)| match k {
                    RowKind::Keep(_) => to_t(plan.soft_w * soft + plan.hard_w * ce),
                    RowKind::Ignored => zero_t(),
                })
                .collect();
            Loss::Elementwise(
                ArrayD::from_shape_vec(IxDyn(&[plan.rows]), vals)
                    .map_err(|e| Error::too_large(op, "loss", e.to_string()))?,
            )
        }
        _ => {
            let (mut soft, mut ce) = (0.0f64, 0.0f64);
            for &(a, b) in per_row {
                soft += a;
                ce += b;
            }
            Loss::Scalar(to_t(plan.soft_w * (soft / plan.soft_div) + plan.hard_w * (ce / plan.hard_div)))
        }
    })
}

pub(crate) fn dense_impl<T: Element, D1: Dimension, D2: Dimension>(
    student: ArrayView<'_, T, D1>,
    teacher: ArrayView<'_, T, D2>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    dense_core(as_2d(OP, "student", student)?, as_2d(OP, "teacher", teacher)?, labels, opts, grad_output)
}

/// [`dense_impl`] of two-dimensional views.
#[inline(never)]
pub(crate) fn dense_core<T: Element>(
    s: ArrayView2<'_, T>,
    t: ArrayView2<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let plan = dense_plan(s.shape(), t.shape(), labels, opts)?;
    if let Some(job) = FastJob::new::<T>(&plan, grad_output)? {
        return fast_dense(Student::View(s), t, &plan, &job);
    }
    let (cfg, map) = (plan.cfg, plan.map);
    engine(OP, &plan, grad_output, |r, label, sc, grad| {
        gather(s.row(r), &mut sc.s);
        gather(t.row(r), &mut sc.t);
        mapped_row(map, sc, grad, |sc, grad| dense_row(&sc.s, &sc.t, label, &cfg, &mut sc.kept, grad))
    })
}

/// The plan of a dense call, after checking that student and teacher have the same shape.
pub(crate) fn dense_plan(
    s: &[usize],
    t: &[usize],
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Plan> {
    if s != t {
        return Err(Error::shape_mismatch(OP, "student", s, "teacher", t, "must be equal"));
    }
    let (rows, classes) = (s.first().copied().unwrap_or(0), s.get(1).copied().unwrap_or(0));
    make_plan(OP, rows, classes, labels, opts, false)
}

/// The (2-D) student of an in-place call.
pub(crate) fn as_2d_mut<'a, T, D: Dimension>(
    op: &'static str,
    a: ArrayViewMut<'a, T, D>,
) -> Result<ArrayViewMut2<'a, T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>()
        .map_err(|_| Error::bad_rank(op, "student", &shape, "2 dimensions (rows × classes)"))
}

/// [`distill_with_grad_in_place`] for an upstream gradient: the loss, with `grad_output ×` the
/// gradient written over the student logits.
#[inline(never)]
pub(crate) fn dense_in_place<T: Element>(
    mut student: ArrayViewMut2<'_, T>,
    teacher: ArrayView2<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<Loss<T>> {
    let plan = dense_plan(student.shape(), teacher.shape(), labels, opts)?;
    if let Some(job) = FastJob::new::<T>(&plan, Some(grad_output))? {
        if let Some(buf) = student.as_slice_mut() {
            return Ok(fast_dense(Student::InPlace(buf), teacher, &plan, &job)?.0);
        }
    }
    let (loss, grad) = dense_impl(student.view(), teacher, labels, opts, Some(grad_output))?;
    if let Some(g) = grad {
        student.assign(&g);
    }
    Ok(loss)
}

/// [`distill_topk_with_grad_in_place`] for an upstream gradient (see [`dense_in_place`]).
#[inline(never)]
pub(crate) fn topk_in_place<T: Element>(
    mut student: ArrayViewMut2<'_, T>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: &GradOutput<'_, T>,
) -> Result<Loss<T>> {
    let plan = topk_plan(student.shape(), teacher, labels, opts)?;
    if let Some(job) = FastJob::with_div(OP_TOPK, &plan, Some(grad_output), KdDiv::Forward, 0.0)? {
        if let Some(buf) = student.as_slice_mut() {
            let (idx, lq) = (teacher.indices, teacher.logprobs);
            return Ok(fast_topk(Student::InPlace(buf), idx, lq, &plan, &job)?.0);
        }
    }
    let (loss, grad) = topk_impl(student.view(), teacher, labels, opts, Some(grad_output))?;
    if let Some(g) = grad {
        student.assign(&g);
    }
    Ok(loss)
}

pub(crate) fn topk_impl<T: Element, D: Dimension>(
    student: ArrayView<'_, T, D>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    topk_core(as_2d(OP_TOPK, "student", student)?, teacher, labels, opts, grad_output)
}

/// [`topk_impl`] of a two-dimensional student.
#[inline(never)]
pub(crate) fn topk_core<T: Element>(
    s: ArrayView2<'_, T>,
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
    grad_output: Option<&GradOutput<'_, T>>,
) -> Result<(Loss<T>, Option<Array2<T>>)> {
    let classes = s.ncols();
    let plan = topk_plan(s.shape(), teacher, labels, opts)?;
    let (idx, lq) = (teacher.indices, teacher.logprobs);
    if let Some(job) = FastJob::with_div(OP_TOPK, &plan, grad_output, KdDiv::Forward, 0.0)? {
        return fast_topk(Student::View(s), idx, lq, &plan, &job);
    }
    let (cfg, map) = (plan.cfg, plan.map);
    engine(OP_TOPK, &plan, grad_output, |r, label, sc, grad| {
        gather(s.row(r), &mut sc.s);
        gather(lq.row(r), &mut sc.t);
        sc.idx.clear();
        sc.idx.extend(idx.row(r).iter().map(|&v| v as usize));
        if sc.mark.len() != classes {
            sc.mark.clear();
            sc.mark.resize(classes, false);
        }
        mapped_row(map, sc, grad, |sc, grad| topk_row(sc, label, &cfg, grad))
    })
}

/// The plan of a top-k call, after checking the teacher's shapes against the student's `s` and its
/// indices (each in range, none repeated within a row).
pub(crate) fn topk_plan<T>(
    s: &[usize],
    teacher: &SparseTeacher<'_, T>,
    labels: Option<ArrayView1<'_, i64>>,
    opts: &DistillOptions,
) -> Result<Plan> {
    let (rows, classes) = (s.first().copied().unwrap_or(0), s.get(1).copied().unwrap_or(0));
    teacher.check_shapes(OP_TOPK, &TopkNames::DISTILL, ("student", s))?;
    let plan = make_plan(OP_TOPK, rows, classes, labels, opts, teacher.add_tail)?;
    check_topk_indices(OP_TOPK, "teacher indices", teacher.indices, classes)?;
    Ok(plan)
}

/// What a top-k loss calls a sparse teacher's parts, and how it words their mismatches, in its errors.
pub(crate) struct TopkNames {
    /// The `(rows, k)` indices.
    pub(crate) indices: &'static str,
    /// The `(rows, k)` log-probabilities.
    pub(crate) logprobs: &'static str,
    /// The detail when the two differ in shape.
    pub(crate) same_shape: &'static str,
    /// The detail when the teacher's rows are not the student's.
    pub(crate) same_rows: &'static str,
}

impl TopkNames {
    /// The names of [`distill_topk`](super::distill_topk).
    pub(crate) const DISTILL: Self = Self {
        indices: "teacher indices",
        logprobs: "teacher logprobs",
        same_shape: "must be equal",
        same_rows: "must have the same number of rows",
    };
}

impl<T> SparseTeacher<'_, T> {
    /// Checks that the indices and log-probabilities have one shape and the rows of `student` (a name and
    /// a shape, rows first).
    pub(crate) fn check_shapes(
        &self,
        op: &'static str,
        names: &TopkNames,
        student: (&'static str, &[usize]),
    ) -> Result<()> {
        let (idx, lq) = (self.indices.shape(), self.logprobs.shape());
        ensure_shapes(idx == lq, op, (names.indices, idx), (names.logprobs, lq), names.same_shape)?;
        ensure_shapes(
            self.indices.nrows() == student.1.first().copied().unwrap_or(0),
            op,
            (names.indices, idx),
            student,
            names.same_rows,
        )
    }
}

/// Checks a top-k teacher's indices `idx (rows, k)` (called `name`) against `classes`: each in `[0, classes)` and none
/// repeated within its row (errors name the position).
pub(crate) fn check_topk_indices(
    op: &'static str,
    name: &'static str,
    idx: ArrayView2<'_, i64>,
    classes: usize,
) -> Result<()> {
    // Every index in range and unique within its row.
    let mut seen = vec![false; if idx.is_empty() { 0 } else { classes }];
    // (An empty index array has nothing to check, however many rows it has.)
    for (r, row) in idx.outer_iter().enumerate().take(if idx.is_empty() { 0 } else { idx.nrows() }) {
        for (j, &v) in row.iter().enumerate() {
            let slot = if v >= 0 { usize::try_from(v).ok().and_then(|u| seen.get_mut(u)) } else { None };
            match slot {
                None => {
                    return Err(Error::invalid_value(
                        op,
                        name,
                        &[r, j],
                        v as f64,
                        format!("is out of range for {classes} classes"),
                    ));
                }
                Some(true) => {
                    return Err(Error::invalid_value(
                        op,
                        name,
                        &[r, j],
                        v as f64,
                        "repeats an index earlier in its row",
                    ));
                }
                Some(m) => *m = true,
            }
        }
        for &v in row.iter() {
            if let Some(m) = seen.get_mut(v as usize) {
                *m = false;
            }
        }
    }
    Ok(())
}

compiled_here! {
    dense_core: fn(
        ArrayView2<'_, T>,
        ArrayView2<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        Option<&GradOutput<'_, T>>,
    ) -> Result<(Loss<T>, Option<Array2<T>>)>;
    topk_core: fn(
        ArrayView2<'_, T>,
        &SparseTeacher<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        Option<&GradOutput<'_, T>>,
    ) -> Result<(Loss<T>, Option<Array2<T>>)>;
    dense_in_place: fn(
        ArrayViewMut2<'_, T>,
        ArrayView2<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        &GradOutput<'_, T>,
    ) -> Result<Loss<T>>;
    topk_in_place: fn(
        ArrayViewMut2<'_, T>,
        &SparseTeacher<'_, T>,
        Option<ArrayView1<'_, i64>>,
        &DistillOptions,
        &GradOutput<'_, T>,
    ) -> Result<Loss<T>>;
}
