//! The parallel driver: a [`Job`] split into fixed-size tasks (the split never depends on the thread
//! count), each task run tile by tile through the fused loop at the CPU's best instruction set.

use super::*;
use ndarray::ArrayViewMutD;

/// What becomes of the loss terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LossOut {
    /// Not computed.
    Skip,
    /// Returned elementwise (`Reduction::None`).
    Elements,
    /// Summed (each term rounded to the element type first).
    Sum,
}

impl LossOut {
    /// What a loss with `reduction` does with its terms (`Skip` when the loss is not wanted).
    pub(crate) fn of(wanted: bool, reduction: Reduction) -> LossOut {
        match (wanted, reduction) {
            (false, _) => LossOut::Skip,
            (true, Reduction::None) => LossOut::Elements,
            (true, _) => LossOut::Sum,
        }
    }
}

/// One fused elementwise computation over `len` elements.
pub(crate) struct Job<'a, T, K> {
    /// The formula.
    pub(crate) op: K,
    /// Number of elements (> 0).
    pub(crate) len: usize,
    /// Input.
    pub(crate) x: Operand<'a, T>,
    /// Target.
    pub(crate) t: Operand<'a, T>,
    /// Weight.
    pub(crate) w: Option<Operand<'a, T>>,
    /// `pos_weight`.
    pub(crate) p: Option<Operand<'a, T>>,
    /// Upstream gradient per element; `g_const` for every element when absent.
    pub(crate) g: Option<Operand<'a, T>>,
    /// The upstream gradient of every element when `g` is absent.
    pub(crate) g_const: f32,
    /// The loss.
    pub(crate) loss: LossOut,
    /// Whether the input gradient is computed.
    pub(crate) grad_input: bool,
    /// Whether the target gradient is computed.
    pub(crate) grad_target: bool,
}

impl<'a, T: Element, K: PointOp> Job<'a, T, K> {
    /// `op` over `x` and `t` (views of the same shape, `len` elements), computing `want` with the loss
    /// reduced as `reduction` says; no weights; upstream gradient 1.
    pub(crate) fn new(
        op: K,
        x: &ArrayViewD<'a, T>,
        t: &ArrayViewD<'a, T>,
        want: Want,
        reduction: Reduction,
    ) -> Self {
        Job {
            op,
            len: x.len(),
            x: Operand::of_view(x),
            t: Operand::of_view(t),
            w: None,
            p: None,
            g: None,
            g_const: 1.0,
            loss: LossOut::of(want.loss, reduction),
            grad_input: want.grad_input,
            grad_target: want.grad_target,
        }
    }

    /// `op` for [`Job::in_place`]: the input comes from the buffer given there (its shape is the
    /// target's); the loss, reduced as `reduction` says, and the input gradient are computed.
    pub(crate) fn for_in_place(op: K, t: &ArrayViewD<'a, T>, reduction: Reduction) -> Self {
        Job {
            op,
            len: t.len(),
            x: Operand::Slice(&[]),
            t: Operand::of_view(t),
            w: None,
            p: None,
            g: None,
            g_const: 1.0,
            loss: LossOut::of(true, reduction),
            grad_input: true,
            grad_target: false,
        }
    }

    /// With a weight and a `pos_weight` (views of the input's shape).
    pub(crate) fn weighted(self, w: Option<&ArrayViewD<'a, T>>, p: Option<&ArrayViewD<'a, T>>) -> Self {
        Job { w: w.map(Operand::of_view), p: p.map(Operand::of_view), ..self }
    }

    /// With the upstream gradient `g` per element, or `g_const` for every element.
    pub(crate) fn upstream(self, g: Option<&ArrayViewD<'a, T>>, g_const: T::Acc) -> Self {
        Job { g: g.map(Operand::of_view), g_const: g_const.f64() as f32, ..self }
    }

    /// Runs the job and returns its results as arrays of `shape` (the reduced loss divided by
    /// `divisor`), or `None` when the fast path does not apply (the type, or an input outside the
    /// loss's domain: the reference implementation then reports it).
    pub(crate) fn outputs(
        &self,
        op: &'static str,
        shape: &[usize],
        divisor: Option<usize>,
    ) -> Option<Result<Outputs<T>>> {
        let done = run_job(self, None)?;
        (!done.flagged).then(|| done.into_outputs(op, shape, divisor))
    }

    /// Runs the job for its domain check only: whether any element is outside the loss's domain
    /// ([`PointOp::CHECKS`]); `None` when the fast path does not apply to `T`. Build the job with
    /// [`Want::NOTHING`] so that nothing else is computed.
    pub(crate) fn any_invalid(&self) -> Option<bool> {
        run_job(self, None).map(|d| d.flagged)
    }

    /// Runs the job with the input read from `buf` (the input's data in standard layout; the job's
    /// own `x` operand is not used) and the input gradient written over it, tile by tile. Returns the
    /// loss (`sum / divisor` when reduced), or `None` when the fast path does not apply to `T` or an
    /// element is outside the domain — callers check [`Job::any_invalid`] first, since by then `buf`
    /// has been overwritten.
    pub(crate) fn in_place(
        &self,
        op: &'static str,
        buf: &mut [T],
        shape: &[usize],
        divisor: Option<usize>,
    ) -> Option<Result<Loss<T>>> {
        if !self.grad_input || self.loss == LossOut::Skip || buf.len() != self.len {
            return None;
        }
        let done = run_job(self, Some(buf))?;
        (!done.flagged).then(|| done.into_outputs(op, shape, divisor)?.loss.ok_or_else(|| internal(op)))
    }
}

/// The validated options of one elementwise loss call, in PyTorch's order of checks: what the fused
/// kernel and the reference loop (`rows::elementwise_rows`) both run from.
pub(crate) struct Plan<'w, T: Element> {
    /// The loss's name, for errors.
    pub(crate) op: &'static str,
    /// The reduction.
    pub(crate) reduction: Reduction,
    /// The shape of the elementwise loss (the input's for the BCEs, the broadcast one for `kl_div`).
    pub(crate) shape: Vec<usize>,
    /// Its number of elements.
    pub(crate) n: usize,
    /// The weight broadcast into `shape`.
    pub(crate) weight: Option<ArrayViewD<'w, T>>,
    /// `pos_weight` broadcast into `shape`.
    pub(crate) pos_weight: Option<ArrayViewD<'w, T>>,
    /// PyTorch divides the BCE gradients by numel after the weight: `grad_input.div_(input.numel())`.
    pub(crate) grad_div: Option<T::Acc>,
    /// What the summed loss is divided by (the element count for `'mean'`).
    pub(crate) divisor: Option<usize>,
    /// What the upstream gradient is divided by first (`kl_div`'s autograd divides before the formula).
    pub(crate) upstream_div: Option<usize>,
}

impl<'w, T: Element> Plan<'w, T> {
    /// Runs `op` over `x` and `t` (views of `shape`) through the fused kernel with the upstream
    /// gradient `g` (per element, or one value), or `None` when it does not apply (the type, no
    /// elements, or an input outside the loss's domain: the reference implementation then reports it).
    pub(crate) fn fast_outputs<K: PointOp>(
        &self,
        op: K,
        x: &ArrayViewD<'_, T>,
        t: &ArrayViewD<'_, T>,
        want: Want,
        g: (Option<&ArrayViewD<'_, T>>, T::Acc),
    ) -> Option<Result<Outputs<T>>> {
        if self.n == 0 || !fast_path_for::<T>() {
            return None;
        }
        let job = Job::new(op, x, t, want, self.reduction)
            .weighted(self.weight.as_ref(), self.pos_weight.as_ref())
            .upstream(g.0, g.1);
        job.outputs(self.op, &self.shape, self.divisor)
    }

    /// The loss of `op` with the input gradient (upstream gradient 1) written over `input` (of
    /// `shape`) by the fused kernel, or `None`, with `input` untouched, when it does not apply (the
    /// type, the layout, or an input outside the loss's domain, which is checked before anything is
    /// written).
    pub(crate) fn fast_in_place<K: PointOp>(
        &self,
        op: K,
        input: &mut ArrayViewMutD<'_, T>,
        t: &ArrayViewD<'_, T>,
    ) -> Option<Result<Loss<T>>> {
        if self.n == 0 || !fast_path_for::<T>() {
            return None;
        }
        let (weight, pos_weight) = (self.weight.as_ref(), self.pos_weight.as_ref());
        if K::CHECKS {
            // a streaming pass over the bits; the fused kernel's own check for the other types
            let valid = match (input.as_slice(), t.as_slice()) {
                (Some(x), Some(t)) => all_in_unit(x, t),
                _ => None,
            }
            .or_else(|| {
                let check = Job::new(op, &input.view(), t, Want::NOTHING, self.reduction)
                    .weighted(weight, pos_weight);
                check.any_invalid().map(|bad| !bad)
            });
            if valid != Some(true) {
                return None;
            }
        }
        let one = crate::GradOutput::one();
        let g = crate::base::upstream::upstream_of(
            self.op,
            Some(&one),
            Want::LOSS_AND_INPUT_GRAD,
            self.reduction,
            &self.shape,
            self.upstream_div,
        );
        let (g_view, g_const) = match g {
            Ok(g) => g,
            Err(e) => return Some(Err(e)),
        };
        let job =
            Job::for_in_place(op, t, self.reduction).weighted(weight, pos_weight).upstream(g_view, g_const);
        job.in_place(self.op, input.as_slice_mut()?, &self.shape, self.divisor)
    }
}

impl Scaling {
    /// The BCEs' scaling of a call: by its weight, and by the element count for `'mean'`.
    pub(crate) fn of<T: Element>(plan: &Plan<'_, T>) -> Scaling {
        Scaling { weighted: plan.weight.is_some(), div: plan.grad_div.map(|d| d.f64() as f32) }
    }
}

/// Validates a binary cross-entropy call `op` on `input` and `target` shapes with `reduction` and
/// `weight`.
pub(crate) fn binary_setup<'w, T: Element>(
    op: &'static str,
    input: &[usize],
    target: &[usize],
    reduction: Reduction,
    weight: Option<&'w ArrayViewD<'_, T>>,
) -> Result<Plan<'w, T>> {
    let reduction = reduction.reject_batchmean(op)?;
    let shape = input.to_vec();
    crate::base::shape::check_same_shape(op, "input", &shape, "target", target)?;
    let n = crate::base::shape::checked_numel(op, "input", &shape)?;
    let weight = match weight {
        Some(w) => Some(crate::base::shape::broadcast_into(op, "weight", w, "input", &shape)?),
        None => None,
    };
    let grad_div = (reduction == Reduction::Mean).then(|| T::Acc::c(n as f64));
    let divisor = (reduction == Reduction::Mean).then_some(n);
    Ok(Plan { op, reduction, shape, n, weight, pos_weight: None, grad_div, divisor, upstream_div: None })
}

/// Whether every element of `x` and `t` (of one length) lies in `[0, 1]` (NaN does not), checked on
/// the bits in parallel over fixed chunks: `None` when `T` is neither `f32` nor `bf16`.
///
/// A value is in `[0, 1]` exactly when its bits, read as an unsigned integer, are at most those of
/// `1.0` (the positive numbers up to 1, `+0`) or are those of `−0`.
pub(crate) fn all_in_unit<T: Element>(x: &[T], t: &[T]) -> Option<bool> {
    fn check<B: Copy + Into<u32> + Send + Sync>(x: &[B], t: &[B], one: u32, neg_zero: u32) -> bool {
        let ok = |s: &[B]| s.iter().fold(true, |acc, &b| acc & ((b.into() <= one) | (b.into() == neg_zero)));
        x.par_chunks(TASK).zip(t.par_chunks(TASK)).all(|(a, b)| ok(a) && ok(b))
    }
    if let (Some(a), Some(b)) = (T::as_f32(x), T::as_f32(t)) {
        let (a, b): (&[u32], &[u32]) = (pulp::bytemuck::cast_slice(a), pulp::bytemuck::cast_slice(b));
        return Some(check(a, b, 1f32.to_bits(), (-0f32).to_bits()));
    }
    if let (Some(a), Some(b)) = (T::as_bf16(x), T::as_bf16(t)) {
        let (a, b): (&[u16], &[u16]) = (pulp::bytemuck::cast_slice(a), pulp::bytemuck::cast_slice(b));
        return Some(check(a, b, half::bf16::ONE.to_bits().into(), half::bf16::NEG_ZERO.to_bits().into()));
    }
    None
}

/// The results of a [`Job`].
pub(crate) struct Done<T> {
    /// The elementwise loss (`LossOut::Elements`).
    pub(crate) loss_elems: Option<Vec<T>>,
    /// The sum of the rounded loss terms (`LossOut::Sum`).
    pub(crate) loss_sum: f64,
    pub(crate) loss: LossOut,
    pub(crate) grad_input: Option<Vec<T>>,
    pub(crate) grad_target: Option<Vec<T>>,
    /// Some input was outside the domain ([`PointOp::CHECKS`]); the results are meaningless.
    pub(crate) flagged: bool,
}

impl<T: Element> Done<T> {
    /// The results as arrays of `shape`; a reduced loss is `sum / divisor` (no division for `None`),
    /// the mean of nothing being NaN.
    pub(crate) fn into_outputs(
        self,
        op: &'static str,
        shape: &[usize],
        divisor: Option<usize>,
    ) -> Result<Outputs<T>> {
        let loss = match (self.loss, self.loss_elems) {
            (LossOut::Elements, Some(v)) => Some(Loss::Elementwise(to_array(op, v, shape)?)),
            (LossOut::Sum, _) => {
                let v = match divisor {
                    Some(d) => self.loss_sum / d as f64,
                    None => self.loss_sum,
                };
                Some(Loss::Scalar(T::from_acc(T::Acc::c(v))))
            }
            _ => None,
        };
        let array = |v| to_array(op, v, shape);
        Ok(Outputs {
            loss,
            grad_input: self.grad_input.map(array).transpose()?,
            grad_target: self.grad_target.map(array).transpose()?,
        })
    }
}

pub(crate) type Entry<T, K> = for<'j, 'a, 'b> fn(&'j Job<'a, T, K>, Option<&'b mut [T]>) -> Done<T>;

pub(crate) fn cast_fn<F: Copy + 'static, G: Copy + 'static>(f: F) -> Option<G> {
    (&f as &dyn Any).downcast_ref::<G>().copied()
}

/// Runs `job` (with the input read from and its gradient written into `in_place` when given), or
/// returns `None` when `T` is not `f32`, `f16` or `bf16`.
///
/// The generic `T` reaches the typed driver through a function-pointer downcast (`T` is `f32`
/// exactly when the downcast to `f32`'s entry succeeds), which needs no unsafe code.
pub(crate) fn run_job<T: Element, K: PointOp>(
    job: &Job<'_, T, K>,
    in_place: Option<&mut [T]>,
) -> Option<Done<T>> {
    let f = cast_fn::<Entry<f32, K>, Entry<T, K>>(drive::<f32, K>)
        .or_else(|| cast_fn::<Entry<half::bf16, K>, Entry<T, K>>(drive::<half::bf16, K>))
        .or_else(|| cast_fn::<Entry<half::f16, K>, Entry<T, K>>(drive::<half::f16, K>))?;
    Some(f(job, in_place))
}

// `drive` for every element type × formula, compiled in this crate: it inlines the whole task loop
// at every instruction set, and since it is `#[inline(never)]` the crates that call the losses link
// to these copies instead of compiling their own (see `compiled_here!` in `lib.rs`).
const _: () = {
    use half::{bf16, f16};
    #[used]
    #[allow(clippy::type_complexity)]
    static COMPILED_HERE: (
        (Entry<f32, KlOp>, Entry<bf16, KlOp>, Entry<f16, KlOp>),
        (Entry<f32, BceOp>, Entry<bf16, BceOp>, Entry<f16, BceOp>),
        (Entry<f32, BceLogitsOp>, Entry<bf16, BceLogitsOp>, Entry<f16, BceLogitsOp>),
    ) = (
        (drive::<f32, KlOp>, drive::<bf16, KlOp>, drive::<f16, KlOp>),
        (drive::<f32, BceOp>, drive::<bf16, BceOp>, drive::<f16, BceOp>),
        (drive::<f32, BceLogitsOp>, drive::<bf16, BceLogitsOp>, drive::<f16, BceLogitsOp>),
    );
};

/// One task's share of the outputs and what it returns.
pub(crate) struct Task<'o, E> {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) loss: Option<&'o mut [E]>,
    pub(crate) grad_input: Option<&'o mut [E]>,
    pub(crate) grad_target: Option<&'o mut [E]>,
    pub(crate) sum: f64,
    pub(crate) bad: bool,
}

#[inline(never)]
pub(crate) fn drive<E: FastElem, K: PointOp>(job: &Job<'_, E, K>, in_place: Option<&mut [E]>) -> Done<E> {
    let n = job.len;
    let mut loss = (job.loss == LossOut::Elements).then(|| E::zeros(n));
    // in place, the input buffer receives the input gradient (and holds the input until then)
    let is_in_place = in_place.is_some();
    let mut grad_input = if is_in_place { None } else { job.grad_input.then(|| E::zeros(n)) };
    let mut grad_target = job.grad_target.then(|| E::zeros(n));
    let mut lc = loss.as_deref_mut().map(|v| v.chunks_mut(TASK));
    let mut gic = match in_place {
        Some(buf) => Some(buf.chunks_mut(TASK)),
        None => grad_input.as_deref_mut().map(|v| v.chunks_mut(TASK)),
    };
    let mut gtc = grad_target.as_deref_mut().map(|v| v.chunks_mut(TASK));
    let mut tasks: Vec<Task<'_, E>> = (0..n.div_ceil(TASK))
        .map(|i| Task {
            start: i * TASK,
            len: TASK.min(n - i * TASK),
            loss: lc.as_mut().and_then(Iterator::next),
            grad_input: gic.as_mut().and_then(Iterator::next),
            grad_target: gtc.as_mut().and_then(Iterator::next),
            sum: 0.0,
            bad: false,
        })
        .collect();
    let k = Kernels::new();
    let pairs = PAIRS && E::DTYPE == DType::BF16 && PAIR_PATH.with(Cell::get);
    // f16 at AVX2: the task runs where F16C is enabled and converts in registers (`f16c::tile`)
    let f16c = cfg!(target_arch = "x86_64")
        && E::DTYPE == DType::F16
        && k.isa() == crate::kernels::Isa::Avx2
        && F16C_PATH.with(Cell::get);
    tasks.par_iter_mut().for_each(|task| {
        let run = TaskRun {
            job,
            in_place: is_in_place,
            pairs,
            f16c,
            start: task.start,
            len: task.len,
            loss: task.loss.as_deref_mut(),
            grad_input: task.grad_input.as_deref_mut(),
            grad_target: task.grad_target.as_deref_mut(),
        };
        (task.sum, task.bad) = E::run_task(k, run);
    });
    // task sums in task order: the same for any number of threads
    let loss_sum = tasks.iter().fold(0.0, |acc, t| acc + t.sum);
    let flagged = tasks.iter().any(|t| t.bad);
    drop(tasks);
    Done { loss_elems: loss, loss_sum, loss: job.loss, grad_input, grad_target, flagged }
}

/// One task, run inside the SIMD context.
pub(crate) struct TaskRun<'j, 'a, 'o, E, K> {
    pub(crate) job: &'j Job<'a, E, K>,
    /// `grad_input` holds the input: read each tile of `x` from it before overwriting the tile.
    pub(crate) in_place: bool,
    /// Whether tiles try [`pair_tile`] first (`bf16`).
    pub(crate) pairs: bool,
    /// Whether tiles try `f16c::tile` first (`f16`). Only set when the task runs through
    /// [`crate::kernels::run_avx2_f16c`], where F16C is enabled.
    pub(crate) f16c: bool,
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) loss: Option<&'o mut [E]>,
    pub(crate) grad_input: Option<&'o mut [E]>,
    pub(crate) grad_target: Option<&'o mut [E]>,
}

/// The output tile for a task's output slice `out`: the slice itself for a requested `f32`
/// output, else `scratch` (rounded into a half-type output afterwards, or never read).
#[inline(always)]
pub(crate) fn out_tile<'s, E: FastElem>(out: Option<&'s mut [E]>, scratch: &'s mut [f32]) -> &'s mut [f32] {
    match out.and_then(E::as_f32_mut) {
        Some(direct) => direct,
        None => scratch,
    }
}

/// `(s + x, e + err)` where `err` is the exact rounding error of `s + x` (Knuth's TwoSum).
#[inline(always)]
pub(crate) fn two_sum<S: Simd>(simd: S, s: S::f32s, e: S::f32s, x: S::f32s) -> (S::f32s, S::f32s) {
    let n = simd.add_f32s(s, x);
    let bp = simd.sub_f32s(n, s);
    let err = simd.add_f32s(simd.sub_f32s(s, simd.sub_f32s(n, bp)), simd.sub_f32s(x, bp));
    (n, simd.add_f32s(e, err))
}

/// Sum of `v` in `f64`, in a fixed order.
///
/// Each vector lane keeps an `f32` running sum and, by TwoSum, the exact rounding error of every
/// addition (accumulated in `f32` too); both are widened at the end. For the ≤ 64 values a lane
/// sees in a tile that is exact to about 2⁻⁴⁰ of `Σ|v|`. When a lane's sum is not finite (an
/// infinite or NaN term, or an `f32` overflow) the tile is summed again in plain `f64`.
#[inline(always)]
pub(crate) fn sum_tile<S: Simd>(simd: S, v: &[f32]) -> f64 {
    let (head, tail) = S::as_simd_f32s(v);
    let mut s = simd.splat_f32s(0.0);
    let mut e = simd.splat_f32s(0.0);
    for &x in head {
        (s, e) = two_sum(simd, s, e, x);
    }
    if !tail.is_empty() {
        (s, e) = two_sum(simd, s, e, simd.partial_load_f32s(tail));
    }
    sum_finish::<S>(s, e).unwrap_or_else(|| sum_f64(v))
}

/// `v` summed in plain `f64`, in order (the fallback of a tile whose `f32` lane sums are not finite).
pub(crate) fn sum_f64(v: &[f32]) -> f64 {
    v.iter().fold(0.0, |acc, &x| acc + x as f64)
}

/// [`sum_tile`]'s result from its lane sums `s` and errors `e`; `None` when it is not finite (the
/// caller then sums the tile again in plain `f64`).
#[inline(always)]
pub(crate) fn sum_finish<S: Simd>(s: S::f32s, e: S::f32s) -> Option<f64> {
    let total = hsum_f64::<S>(s);
    total.is_finite().then(|| total + hsum_f64::<S>(e))
}

impl<E: FastElem, K: PointOp> WithSimd for TaskRun<'_, '_, '_, E, K> {
    type Output = (f64, bool);

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f64, bool) {
        let TaskRun { job, in_place, pairs, f16c, start, len, mut loss, mut grad_input, mut grad_target } =
            self;
        let want = Want {
            loss: job.loss != LossOut::Skip,
            grad_input: job.grad_input,
            grad_target: job.grad_target,
        };
        // from the thread's pool (every tile is written before it is read)
        let mut scratch = crate::kernels::alloc::Scratch::any(10 * TILE);
        let mut bufs = scratch.chunks_exact_mut(TILE);
        let mut next = || bufs.next().unwrap_or_default();
        let (bx, bt, bw, bp, bg, bl, bgi, bgt) =
            (next(), next(), next(), next(), next(), next(), next(), next());
        // the tiles of absent operands: 1 for `w` and `p`, the upstream constant for `g`
        let (ones, gfill) = (next(), next());
        ones.fill(1.0);
        gfill.fill(job.g_const);
        let mut rounded = [E::default(); TILE];
        let mut bad = simd.splat_f32s(0.0);
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut bad_f16c = false;
        #[cfg(not(target_arch = "x86_64"))]
        let _ = f16c;
        let mut sum = 0.0f64;
        let mut off = 0;
        while off < len {
            let m = TILE.min(len - off);
            let at = start + off;
            #[cfg(target_arch = "x86_64")]
            if f16c {
                let range = off..off + m;
                let (w, p, g) = side_tiles(
                    job,
                    at,
                    (&ones[..m], &gfill[..m]),
                    (&mut bw[..m], &mut bp[..m], &mut bg[..m]),
                );
                let ht = f16c::HalfTile {
                    x: (!in_place).then_some(&job.x),
                    at,
                    loss: loss.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_input: grad_input.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_target: grad_target.as_deref_mut().and_then(|l| l.get_mut(range)),
                    w,
                    p,
                    g,
                    terms: &mut bl[..m],
                };
                // SAFETY: `f16c` is only set for tasks run through `run_avx2_f16c`, so this code runs
                // where the CPU has F16C, the requirement of `f16c::tile`.
                if let Some((b, s)) = unsafe { f16c::tile(simd, job, want, ht) } {
                    bad_f16c |= b;
                    sum += s;
                    off += m;
                    continue;
                }
            }
            if pairs && K::PAIRS {
                // bf16: whole groups of 2·lanes converted in registers
                let range = off..off + m;
                let pt = PairTile {
                    x: match in_place {
                        true => None,
                        false => Some(&job.x),
                    },
                    at,
                    len: m,
                    loss: loss.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_input: grad_input.as_deref_mut().and_then(|l| l.get_mut(range.clone())),
                    grad_target: grad_target.as_deref_mut().and_then(|l| l.get_mut(range)),
                };
                let scratch = PairScratch {
                    x: &mut *bx,
                    t: &mut *bt,
                    w: &mut *bw,
                    p: &mut *bp,
                    g: &mut *bg,
                    terms: &mut *bl,
                };
                if let Some((done, b, s)) = pair_tile(simd, job, want, pt, scratch) {
                    bad = simd.add_f32s(bad, b);
                    sum += s;
                    off += done;
                    continue;
                }
            }
            let range = off..off + m;
            let mut gio = grad_input.as_deref_mut().and_then(|l| l.get_mut(range.clone()));
            let (w, p, g) =
                side_tiles(job, at, (&ones[..m], &gfill[..m]), (&mut bw[..m], &mut bp[..m], &mut bg[..m]));
            let ins = Ins {
                t: job.t.tile(at, &mut bt[..m]),
                w,
                p,
                g,
                g_const: job.g.is_none().then_some(job.g_const),
            };
            let xg = match (in_place, gio.as_deref_mut()) {
                (true, Some(io)) => match E::as_f32_mut(io) {
                    // f32: each vector read, then its gradient written over it
                    Some(direct) => XGrad::InPlace(direct),
                    None => {
                        // the tile's input, widened into L1 before its gradient overwrites it
                        E::load_tile(io, &mut bx[..m]);
                        XGrad::Split { x: &bx[..m], grad_input: &mut bgi[..m] }
                    }
                },
                (_, gi) => {
                    XGrad::Split { x: job.x.tile(at, &mut bx[..m]), grad_input: out_tile(gi, &mut bgi[..m]) }
                }
            };
            let mut lo = loss.as_deref_mut().and_then(|l| l.get_mut(range.clone()));
            let mut gto = grad_target.as_deref_mut().and_then(|l| l.get_mut(range.clone()));
            let outs = OutTiles {
                loss: match job.loss {
                    LossOut::Skip | LossOut::Sum => &mut bl[..m],
                    LossOut::Elements => out_tile(lo.as_deref_mut(), &mut bl[..m]),
                },
                grad_target: out_tile(gto.as_deref_mut(), &mut bgt[..m]),
            };
            // f32 terms of a reduced loss are summed in the loop; half-type terms are rounded to
            // the element type first, a tile at a time (below): rounding inside the loop is slower, as
            // its bits are emulated without F16C (docs/benchmarks-history.md has the measurements)
            let in_loop = E::DTYPE == DType::F32 && job.loss == LossOut::Sum;
            let tile = Tile { xg, ins, outs };
            let r = match in_loop {
                true => fused::<S, K, true>(simd, job.op, want, tile),
                false => fused::<S, K, false>(simd, job.op, want, tile),
            };
            bad = simd.add_f32s(bad, r.bad);
            if in_loop {
                let terms = &bl[..m];
                sum += sum_finish::<S>(r.sum, r.err).unwrap_or_else(|| sum_f64(terms));
            }
            // half types: round the scratch tiles into the outputs
            if E::DTYPE != DType::F32 {
                if let Some(o) = lo {
                    E::store_tile(&bl[..m], o);
                }
                if let Some(o) = gio {
                    E::store_tile(&bgi[..m], o);
                }
                if let Some(o) = gto {
                    E::store_tile(&bgt[..m], o);
                }
            }
            if job.loss == LossOut::Sum && !in_loop {
                let terms = &mut bl[..m];
                // each term rounded to the element type, as the reference sums them
                E::round_tile(terms, &mut rounded);
                sum += sum_tile(simd, terms);
            }
            off += m;
        }
        let lanes: &[f32] = pulp::bytemuck::cast_slice(core::slice::from_ref(&bad));
        (sum, bad_f16c || lanes.iter().any(|&b| b != 0.0))
    }
}

/// The `f32` tiles of `w`, `p` and `g` for the tile at `at` (of `scratch`'s length): `consts` (tiles of 1
/// and of the upstream constant) for absent operands, else the operand's tile (its data for `f32`, else
/// filled into `scratch`).
#[inline(always)]
#[allow(clippy::type_complexity)]
pub(crate) fn side_tiles<'s, E: FastElem, K>(
    job: &'s Job<'_, E, K>,
    at: usize,
    consts: (&'s [f32], &'s [f32]),
    scratch: (&'s mut [f32], &'s mut [f32], &'s mut [f32]),
) -> (&'s [f32], &'s [f32], &'s [f32]) {
    let (ones, gfill) = consts;
    let (bw, bp, bg) = scratch;
    (
        job.w.as_ref().map_or(ones, |o| o.tile(at, bw)),
        job.p.as_ref().map_or(ones, |o| o.tile(at, bp)),
        job.g.as_ref().map_or(gfill, |o| o.tile(at, bg)),
    )
}

/// The input tiles of one call other than `x`. Absent operands are tiles of their constant (1 for
/// `w` and `p`, the upstream constant for `g`), so the loop has no branch per vector.
pub(crate) struct Ins<'a> {
    pub(crate) t: &'a [f32],
    pub(crate) w: &'a [f32],
    pub(crate) p: &'a [f32],
    pub(crate) g: &'a [f32],
    /// The upstream constant when `g` is absent (`g` is then a tile of it).
    pub(crate) g_const: Option<f32>,
}

/// Where a tile's `x` comes from and its input gradient goes.
pub(crate) enum XGrad<'a> {
    /// Separate tiles (an unrequested gradient's tile is scratch, written and never read).
    Split { x: &'a [f32], grad_input: &'a mut [f32] },
    /// One tile: each vector of `x` is read, then its gradient written over it (the in-place
    /// calls on `f32`).
    InPlace(&'a mut [f32]),
}

/// The other output tiles of one call (unrequested ones are scratch, neither written nor read).
pub(crate) struct OutTiles<'a> {
    pub(crate) loss: &'a mut [f32],
    pub(crate) grad_target: &'a mut [f32],
}

/// Everything one call of [`fused`] reads and writes.
pub(crate) struct Tile<'a> {
    pub(crate) xg: XGrad<'a>,
    pub(crate) ins: Ins<'a>,
    pub(crate) outs: OutTiles<'a>,
}

/// What [`fused`] returns: the lane-wise sum of `bad` (0 when nothing is out of domain) and, when
/// the loss terms were summed in the loop, their lane sums and TwoSum errors.
pub(crate) struct Fused<V> {
    pub(crate) bad: V,
    pub(crate) sum: V,
    pub(crate) err: V,
}

/// Runs `op` over one tile. With `ACC` the loss terms are also summed as [`sum_tile`] sums them
/// (same order, same bits), without a second pass over the tile.
///
/// The training calls (loss and input gradient) get their own copy of the loop with `want`
/// constant, so the formula's branches on it vanish.
#[inline(always)]
pub(crate) fn fused<S: Simd, K: PointOp, const ACC: bool>(
    simd: S,
    op: K,
    want: Want,
    tile: Tile<'_>,
) -> Fused<S::f32s> {
    match (want == Want::LOSS_AND_INPUT_GRAD, tile.ins.g_const) {
        // (a scalar upstream gradient then stays in a register)
        (true, Some(c)) => {
            fused_loop::<S, K, ACC>(simd, op, Want::LOSS_AND_INPUT_GRAD, tile, Some(simd.splat_f32s(c)))
        }
        (true, None) => fused_loop::<S, K, ACC>(simd, op, Want::LOSS_AND_INPUT_GRAD, tile, None),
        (false, _) => fused_loop::<S, K, ACC>(simd, op, want, tile, None),
    }
}

/// One vector of [`fused_loop`]: stores the loss and target gradient, accumulates, returns the
/// input gradient.
#[inline(always)]
pub(crate) fn point<S: Simd, K: PointOp, const ACC: bool>(
    simd: S,
    op: K,
    want: Want,
    v: Lanes<S::f32s>,
    lo: &mut S::f32s,
    gto: &mut S::f32s,
    acc: &mut Fused<S::f32s>,
) -> S::f32s {
    let r = op.call(simd, want, v);
    // (constant in the training copy of the loop: no store of an unrequested result there)
    if want.loss {
        *lo = r.loss;
    }
    if want.grad_target {
        *gto = r.grad_target;
    }
    if ACC {
        (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, r.loss);
    }
    if K::CHECKS {
        acc.bad = simd.add_f32s(acc.bad, r.bad);
    }
    r.grad_input
}

/// [`fused`]'s loop: every operand and output is a tile of the same length, zipped.
#[inline(always)]
pub(crate) fn fused_loop<S: Simd, K: PointOp, const ACC: bool>(
    simd: S,
    op: K,
    want: Want,
    tile: Tile<'_>,
    gc: Option<S::f32s>,
) -> Fused<S::f32s> {
    let Tile { xg, ins, outs } = tile;
    let (th, tt) = S::as_simd_f32s(ins.t);
    let (wh, wt) = S::as_simd_f32s(ins.w);
    let (ph, pt) = S::as_simd_f32s(ins.p);
    let (gh, gt) = S::as_simd_f32s(ins.g);
    let (loh, lot) = S::as_mut_simd_f32s(outs.loss);
    let (gth, gtt) = S::as_mut_simd_f32s(outs.grad_target);
    let z = simd.splat_f32s(0.0);
    let mut acc = Fused { bad: z, sum: z, err: z };
    let heads = th.iter().zip(wh).zip(ph).zip(gh).zip(loh.iter_mut().zip(gth.iter_mut()));
    let (xt, git) = match xg {
        XGrad::Split { x, grad_input } => {
            let (xh, xt) = S::as_simd_f32s(x);
            let (gih, git) = S::as_mut_simd_f32s(grad_input);
            for ((&x, gi), ((((&t, &w), &p), &g), (lo, gto))) in xh.iter().zip(gih).zip(heads) {
                let g = gc.unwrap_or(g);
                *gi = point::<S, K, ACC>(simd, op, want, Lanes { x, t, w, p, g }, lo, gto, &mut acc);
            }
            (simd.partial_load_f32s(xt), git)
        }
        XGrad::InPlace(xio) => {
            let (xh, xt) = S::as_mut_simd_f32s(xio);
            for (xo, ((((&t, &w), &p), &g), (lo, gto))) in xh.iter_mut().zip(heads) {
                let v = Lanes { x: *xo, t, w, p, g: gc.unwrap_or(g) };
                *xo = point::<S, K, ACC>(simd, op, want, v, lo, gto, &mut acc);
            }
            (simd.partial_load_f32s(xt), xt)
        }
    };
    if !git.is_empty() {
        // the partial vector: masked loads fill the missing lanes with 0, which every formula accepts
        let v = Lanes {
            x: xt,
            t: simd.partial_load_f32s(tt),
            w: simd.partial_load_f32s(wt),
            p: simd.partial_load_f32s(pt),
            g: gc.unwrap_or(simd.partial_load_f32s(gt)),
        };
        let r = op.call(simd, want, v);
        simd.partial_store_f32s(git, r.grad_input);
        if want.loss {
            simd.partial_store_f32s(lot, r.loss);
        }
        if want.grad_target {
            simd.partial_store_f32s(gtt, r.grad_target);
        }
        if ACC {
            // the stored terms read back, missing lanes 0, as `sum_tile` reads them
            (acc.sum, acc.err) = two_sum(simd, acc.sum, acc.err, simd.partial_load_f32s(lot));
        }
        if K::CHECKS {
            acc.bad = simd.add_f32s(acc.bad, r.bad);
        }
    }
    acc
}

// ----------------------------------------------------------------------------------------------
