//! `kl_div`: PyTorch's `F.kl_div` / `nn.KLDivLoss`, forward and backward.
//!
//! # Argument order
//!
//! `kl_div(input, target)` is **KL(target ‖ exp(input))**: `input` holds the *log*-probabilities of the
//! model distribution Q, `target` holds the probabilities of the reference distribution P (or their
//! logarithms with `log_target = true`). So `kl_div(q.ln(), p)` = Σ p·ln(p/q) = D_KL(P ‖ Q), the
//! same order as PyTorch (pytorch/pytorch#7337, #57459) and as `scipy.special.rel_entr(p, q)`.
//!
//! # Formula
//!
//! Elementwise terms (natural log), exactly as `aten/src/ATen/native/Loss.cpp`:
//!
//! | `log_target` | term |
//! |---|---|
//! | `false` | `xlogy(t, t) − t·x`, with `xlogy(0, t) = 0` |
//! | `true`  | `exp(t)·(t − x)` |
//!
//! then reduced: `None` (per element), `Mean` (÷ number of elements), `Sum`, `BatchMean`
//! (÷ `input.shape()[0]`; no division for a 0-dimensional input). The mean of nothing is NaN.
//!
//! NaN appears where PyTorch puts it: `t = 0` with `x = −∞` (0·−∞), `t < 0` (log of a negative
//! number), `t = NaN`, and with `log_target` `t = −∞` (0·−∞). Nothing checks that the arrays are
//! distributions, so rounding or unnormalized inputs can give negative values (as in PyTorch).
//!
//! # Broadcasting
//!
//! Like PyTorch, `input` and `target` broadcast against each other (NumPy rules, trailing dimensions
//! aligned): the unreduced output has the broadcast shape, and each gradient is summed back to the
//! shape of its own argument. Shapes that cannot be broadcast give an error naming both.
//!
//! # Gradients
//!
//! PyTorch's `kl_div` is differentiated by autograd through the formula above; infoloss reproduces
//! those expressions and their order of operations. With `g` the upstream gradient of an element
//! (already divided by the element count for `Mean`, by `input.shape()[0]` for `BatchMean`):
//!
//! | | ∂/∂input | ∂/∂target |
//! |---|---|---|
//! | `log_target = false` | `−g·t` | `g·(ln t + 1 − x)`, **NaN at t = 0** |
//! | `log_target = true`  | `−g·exp(t)` | `g·exp(t)·(t − x + 1)` |
//!
//! The target gradient is computed as autograd does, `(xlogy(g, t) + g·t/t) + (−g)·x` with
//! `xlogy(g, 0)` masked to 0, so `t = 0` gives `0/0 = NaN` (pytorch/pytorch#89558) and the rounding
//! matches PyTorch's.
//!
//! # Fast path
//!
//! For `f32`, `f16` and `bf16` (`kl_div`, `kl_div_with_grad`, `kl_div_backward` and `kl_div_backward_target`)
//! run a fused SIMD kernel (`kernels/elementwise.rs`): every input is read once and every output written
//! once, in parallel over fixed blocks of elements, with reductions combined in a fixed order, so the results
//! are the same for any number of threads (when the argument whose gradient is requested was broadcast, the
//! gradient is summed by the reference path). They agree with the straightforward reference implementation
//! kept below (`f64` always uses it) to a few `f32` roundings; [`with_reference_path`] switches the fast path
//! off on the current thread for tests and benchmarks.

use crate::base::shape::ensure_shapes;
use ndarray::{ArrayView, ArrayViewD, Dimension, IxDyn};

use crate::base::array::try_vec;
use crate::base::outputs::{Outputs, Want};
use crate::base::shape::checked_numel;
use crate::kernels::elementwise::{KlOp, Plan};
use crate::rows::elementwise_rows::{ElementRows, run_elementwise};
use crate::{Element, Error, GradOutput, Loss, Real, Reduction, Result};

crate::base::path::deprecated_switches!("kl_div");

const OP: &str = "kl_div";

pub use crate::options::KlDivOptions;

super::elementwise_api! {
    op = OP, run = run, options = KlDivOptions;
    /// KL(target ‖ exp(input)), elementwise terms then reduced.
    ///
    /// `input` holds log-probabilities, `target` probabilities (log-probabilities with
    /// `opts.log_target`). Terms: `xlogy(t, t) − t·x`, or `exp(t)·(t − x)` with `log_target`; reduced by
    /// `opts.reduction` (see the [module documentation](self)). `input` and `target` broadcast against each
    /// other; `Reduction::None` returns the broadcast shape.
    ///
    /// PyTorch: `torch.nn.functional.kl_div(input, target, reduction=..., log_target=...)`.
    /// SciPy: `scipy.special.rel_entr(target, exp(input)).sum()` for `Sum`.
    ///
    /// # Errors
    ///
    /// When the shapes cannot be broadcast (the message names both), or are too large.
    ///
    /// ```
    /// use infoloss::{kl_div, KlDivOptions, Reduction};
    /// use ndarray::array;
    /// // D_KL(P ‖ Q) with P = [0.5, 0.5], Q = [0.25, 0.75]
    /// let p = array![0.5f64, 0.5];
    /// let log_q = array![0.25f64.ln(), 0.75f64.ln()];
    /// let opts = KlDivOptions { reduction: Reduction::Sum, ..Default::default() };
    /// let kl = kl_div(log_q.view(), p.view(), &opts).unwrap().scalar().unwrap();
    /// assert!((kl - 0.14384103622589045).abs() < 1e-15);
    /// ```
    fn kl_div;
    /// Gradient of [`kl_div`] with respect to `input` (shape of `input`).
    ///
    /// `−t·g` (or `−exp(t)·g` with `log_target`), where `g` is the upstream gradient of each element:
    /// `grad_output` itself for `Reduction::None` (an array of the broadcast output shape, or a scalar for
    /// every element), `grad_output / numel` for `Mean`, `grad_output / input.shape()[0]` for `BatchMean`.
    /// When `input` was broadcast, the gradient is summed over the broadcast dimensions.
    ///
    /// PyTorch: `input.grad` after `F.kl_div(input, target, ...).backward(grad_output)`.
    ///
    /// # Errors
    ///
    /// Shapes that cannot be broadcast; a `grad_output` of the wrong shape (named in the message).
    ///
    /// ```
    /// use infoloss::{kl_div_backward, GradOutput, KlDivOptions, Reduction};
    /// use ndarray::array;
    /// let x = array![-1.2f64, -0.3, -2.0];
    /// let t = array![0.2f64, 0.8, 0.0];
    /// let opts = KlDivOptions { reduction: Reduction::Sum, ..Default::default() };
    /// let gx = kl_div_backward(x.view(), t.view(), &opts, &GradOutput::one()).unwrap();
    /// assert_eq!(gx, array![-0.2, -0.8, -0.0].into_dyn());
    /// ```
    fn kl_div_backward;
    /// Gradient of [`kl_div`] with respect to `target` (shape of `target`).
    ///
    /// `g·(ln t + 1 − x)` — **NaN where t = 0**, as in PyTorch, whose autograd differentiates
    /// `xlogy(t, t)` into `xlogy(g, t)` (masked to 0 at t = 0) plus `g·t/t` — or `g·exp(t)·(t − x + 1)`
    /// with `log_target`. `g` as in [`kl_div_backward`]; summed over dimensions along which `target` was
    /// broadcast.
    ///
    /// PyTorch: `target.grad` after `F.kl_div(input, target.requires_grad_(), ...).backward(grad_output)`.
    ///
    /// # Errors
    ///
    /// As [`kl_div_backward`].
    ///
    /// ```
    /// use infoloss::{kl_div_backward_target, GradOutput, KlDivOptions, Reduction};
    /// use ndarray::array;
    /// let x = array![-1.2f64, -0.3, -2.0];
    /// let t = array![0.2f64, 0.8, 0.0];
    /// let opts = KlDivOptions { reduction: Reduction::Sum, ..Default::default() };
    /// let gt = kl_div_backward_target(x.view(), t.view(), &opts, &GradOutput::one()).unwrap();
    /// assert!((gt[0] - 0.5905620875658997).abs() < 1e-15); // ln 0.2 + 1 + 1.2
    /// assert!(gt[2].is_nan()); // t = 0
    /// ```
    fn kl_div_backward_target;
    /// Loss and input gradient in one call.
    ///
    /// The same as [`kl_div`] and [`kl_div_backward`] with an upstream gradient of 1 (all ones for
    /// `Reduction::None`), computed in one pass.
    ///
    /// PyTorch: `loss = F.kl_div(input, target, ...); loss.backward(torch.ones_like(loss)); input.grad`.
    ///
    /// # Errors
    ///
    /// As [`kl_div`].
    ///
    /// ```
    /// use infoloss::{kl_div_with_grad, KlDivOptions, Reduction};
    /// use ndarray::array;
    /// let x = array![[-1.0f64, -0.5], [-0.7, -0.7]];
    /// let t = array![[0.25f64, 0.75], [0.5, 0.5]];
    /// let opts = KlDivOptions { reduction: Reduction::BatchMean, ..Default::default() };
    /// let (loss, grad) = kl_div_with_grad(x.view(), t.view(), &opts).unwrap();
    /// // (0.25 ln 0.25 + 0.75 ln 0.75 + 0.25 + 0.375 + 2·(0.5 ln 0.5 + 0.35)) / 2
    /// assert!((loss.scalar().unwrap() - 0.034758837410623175).abs() < 1e-15);
    /// assert_eq!(grad, array![[-0.125, -0.375], [-0.25, -0.25]].into_dyn());
    /// ```
    fn kl_div_with_grad;
    /// [`kl_div_with_grad`] with the gradient written into `input` (the training path: the
    /// log-probabilities are dead after the loss); returns the loss.
    ///
    /// Same formula, gradient, reductions and errors as [`kl_div_with_grad`]; on an error `input` is
    /// left untouched. `input` must have the broadcast shape of the two arguments (a `target` that would
    /// broadcast `input` to a larger shape is an error naming both shapes, since the gradient could not
    /// be written in place). For `f32`, `f16` and `bf16` inputs in standard layout the fused kernel
    /// reads each tile of `input` into L1 and writes its gradient over it, so no gradient array is
    /// allocated; other inputs are computed by [`kl_div_with_grad`] and copied back.
    ///
    /// PyTorch: `loss = F.kl_div(input, target, ...); loss.backward(); input.copy_(input.grad)` (with the
    /// allocation avoided).
    ///
    /// # Errors
    ///
    /// As [`kl_div`], plus [`Error::ShapeMismatch`] when the broadcast shape is not `input`'s.
    ///
    /// ```
    /// use infoloss::{kl_div_with_grad_in_place, KlDivOptions, Reduction};
    /// use ndarray::array;
    /// let mut x = array![[-1.0f32, -0.5], [-0.7, -0.7]];
    /// let t = array![[0.25f32, 0.75], [0.5, 0.5]];
    /// let opts = KlDivOptions { reduction: Reduction::BatchMean, ..Default::default() };
    /// let loss = kl_div_with_grad_in_place(x.view_mut(), t.view(), &opts).unwrap();
    /// assert!((loss.scalar().unwrap() - 0.034_758_84).abs() < 1e-6);
    /// // ∂/∂x = −t / 2
    /// assert_eq!(x, array![[-0.125f32, -0.375], [-0.25, -0.25]]);
    /// ```
    fn kl_div_with_grad_in_place via |input, target, opts| {
        let plan = plan::<T>(input.shape(), target.shape(), opts.reduction)?;
        ensure_shapes(
            plan.shape == input.shape(),
            OP,
            ("input", input.shape()),
            ("target", target.shape()),
            "broadcast to a shape larger than input's, so the gradient cannot be written in place",
        )?;
        let Some(tb) = target.broadcast(IxDyn(&plan.shape)) else { return Ok(None) };
        plan.fast_in_place(KlOp { log_target: opts.log_target }, input, &tb).transpose()
    }
}

// ----------------------------------------------------------------------------------------------
// Row functions: contiguous slices in the compute type, PyTorch's order of operations.
// ----------------------------------------------------------------------------------------------

/// `xlogy(a, b)` as PyTorch's CPU kernel: NaN if `b` is NaN, 0 if `a == 0`, else `a·ln b`.
#[inline]
fn xlogy<A: Real>(a: A, b: A) -> A {
    if b.is_nan() {
        A::nan()
    } else if a == A::zero() {
        A::zero()
    } else {
        a * b.ln()
    }
}

/// Terms `xlogy(t, t) − t·x`.
fn row_loss<A: Real>(x: &[A], t: &[A], out: &mut [A]) {
    for ((o, &x), &t) in out.iter_mut().zip(x).zip(t) {
        *o = xlogy(t, t) - t * x;
    }
}

/// Terms `exp(t)·(t − x)`.
fn row_loss_log_target<A: Real>(x: &[A], t: &[A], out: &mut [A]) {
    for ((o, &x), &t) in out.iter_mut().zip(x).zip(t) {
        *o = t.exp() * (t - x);
    }
}

/// ∂/∂x of `xlogy(t, t) − t·x`: `(−g)·t`.
fn row_grad_input<A: Real>(t: &[A], g: &[A], out: &mut [A]) {
    for ((o, &t), &g) in out.iter_mut().zip(t).zip(g) {
        *o = (-g) * t;
    }
}

/// ∂/∂x of `exp(t)·(t − x)`: `−(g·exp(t))`.
fn row_grad_input_log_target<A: Real>(t: &[A], g: &[A], out: &mut [A]) {
    for ((o, &t), &g) in out.iter_mut().zip(t).zip(g) {
        *o = -(g * t.exp());
    }
}

/// ∂/∂t of `xlogy(t, t) − t·x` as autograd sums it: `(xlogy(g, t)|masked + g·t/t) + (−g)·x`.
fn row_grad_target<A: Real>(x: &[A], t: &[A], g: &[A], out: &mut [A]) {
    for (((o, &x), &t), &g) in out.iter_mut().zip(x).zip(t).zip(g) {
        // derivatives.yaml: self: xlogy(grad, other).masked_fill((self == 0) & (other <= 0), 0)
        let d_self = if t == A::zero() { A::zero() } else { xlogy(g, t) };
        // other: grad * self / other
        let d_other = g * t / t;
        *o = (d_self + d_other) + (-g) * x;
    }
}

/// ∂/∂t of `exp(t)·(t − x)` as autograd sums it: `(g·(t − x))·exp(t) + g·exp(t)`.
fn row_grad_target_log_target<A: Real>(x: &[A], t: &[A], g: &[A], out: &mut [A]) {
    for (((o, &x), &t), &g) in out.iter_mut().zip(x).zip(t).zip(g) {
        let e = t.exp();
        *o = (g * (t - x)) * e + g * e;
    }
}

// ----------------------------------------------------------------------------------------------
// Driver: validation, broadcasting, the chunk loop, reductions.
// ----------------------------------------------------------------------------------------------

/// The broadcast shape of `a` (`input`) and `b` (`target`), or an error naming both shapes.
fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let nd = a.len().max(b.len());
    let mut out = Vec::with_capacity(nd);
    for i in 0..nd {
        // dimension i of the result, counted from the left; shorter shapes are padded with 1 on the left
        let da = if i + a.len() >= nd { a[i + a.len() - nd] } else { 1 };
        let db = if i + b.len() >= nd { b[i + b.len() - nd] } else { 1 };
        let d = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape_mismatch(
                OP,
                "input",
                a,
                "target",
                b,
                format!(
                    "cannot be broadcast together: the size of input ({da}) must match the size of target ({db}) \
                     at non-singleton dimension {i}"
                ),
            ));
        };
        out.push(d);
    }
    Ok(out)
}

/// The number the per-element upstream gradient is divided by (`None`: not divided).
fn divisor(reduction: Reduction, numel: usize, input_shape: &[usize]) -> Option<usize> {
    match reduction {
        Reduction::None | Reduction::Sum => None,
        Reduction::Mean => Some(numel),
        // functional.py: `reduced / input.size()[0]` unless `input.dim() == 0`
        Reduction::BatchMean => input_shape.first().copied(),
    }
}

/// The validated call: the output shape, its element count and the loss divisor of `input` and
/// `target` shapes (the per-element upstream gradient is divided by it first, as autograd does).
fn plan<'w, T: Element>(input: &[usize], target: &[usize], reduction: Reduction) -> Result<Plan<'w, T>> {
    let shape = broadcast_shapes(input, target)?;
    let n = checked_numel(OP, "output", &shape)?;
    let div = divisor(reduction, n, input);
    Ok(Plan {
        op: OP,
        reduction,
        shape,
        n,
        weight: None,
        pos_weight: None,
        grad_div: None,
        divisor: div,
        upstream_div: div,
    })
}

/// The formula, `log_target` or not.
struct KlRows {
    log_target: bool,
}

impl<A: Real> ElementRows<A> for KlRows {
    fn loss(&self, x: &[A], t: &[A], _: Option<&[A]>, out: &mut [A]) {
        if self.log_target { row_loss_log_target(x, t, out) } else { row_loss(x, t, out) }
    }

    fn grad_input(&self, _: &[A], t: &[A], _: Option<&[A]>, g: &[A], out: &mut [A]) {
        if self.log_target { row_grad_input_log_target(t, g, out) } else { row_grad_input(t, g, out) }
    }

    fn grad_target(&self, x: &[A], t: &[A], _: Option<&[A]>, g: &[A], out: &mut [A]) {
        if self.log_target { row_grad_target_log_target(x, t, g, out) } else { row_grad_target(x, t, g, out) }
    }
}

/// The loss and the gradients `want` asks for, of `input` and `target` broadcast together.
#[inline(never)]
fn run<T: Element>(
    input: ArrayViewD<'_, T>,
    target: ArrayViewD<'_, T>,
    opts: &KlDivOptions,
    grad_output: Option<&GradOutput<'_, T>>,
    want: Want,
) -> Result<Outputs<T>> {
    let plan = plan::<T>(input.shape(), target.shape(), opts.reduction)?;
    let mismatch = || {
        Error::shape_mismatch(
            OP,
            "input",
            input.shape(),
            "target",
            target.shape(),
            "cannot be broadcast together",
        )
    };
    let xb = input.broadcast(IxDyn(&plan.shape)).ok_or_else(mismatch)?;
    let tb = target.broadcast(IxDyn(&plan.shape)).ok_or_else(mismatch)?;

    // The broadcast can be far larger than either argument. PyTorch materializes its pointwise loss
    // (and the gradients have its size): one larger than memory is `Error::TooLarge`, not an abort
    // in an allocation (or, reduced, a loop over more elements than memory holds).
    if plan.n > input.len().max(target.len()) {
        drop(try_vec::<T>(OP, "output", plan.n)?);
    }
    // the SIMD fast path, unless a gradient must be summed over broadcast dimensions
    let fast = (!want.grad_input || input.shape() == plan.shape.as_slice())
        && (!want.grad_target || target.shape() == plan.shape.as_slice());
    let rows = KlRows { log_target: opts.log_target };
    let fast = fast.then_some(KlOp { log_target: opts.log_target });
    run_elementwise(&plan, fast, &rows, &xb, &tb, [input.shape(), target.shape()], grad_output, want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::elementwise_rows::CHUNK;
    use ndarray::{ArrayD, array};

    fn sum_opts(log_target: bool) -> KlDivOptions {
        KlDivOptions { reduction: Reduction::Sum, log_target }
    }

    #[test]
    fn broadcast_shape_rules() {
        assert_eq!(broadcast_shapes(&[2, 3], &[3]).unwrap(), vec![2, 3]);
        assert_eq!(broadcast_shapes(&[2, 1], &[1, 4]).unwrap(), vec![2, 4]);
        assert_eq!(broadcast_shapes(&[], &[2]).unwrap(), vec![2]);
        assert_eq!(broadcast_shapes(&[1], &[0]).unwrap(), vec![0]);
        let e = broadcast_shapes(&[2, 3], &[4]).unwrap_err().to_string();
        assert_eq!(
            e,
            "kl_div: input shape [2, 3] and target shape [4] cannot be broadcast together: the size of input (3) \
             must match the size of target (4) at non-singleton dimension 1"
        );
    }

    #[test]
    fn forward_nan_cases_match_torch() {
        // torch: F.kl_div(torch.tensor([-inf, -1., -1., -1.]), torch.tensor([0., -0.5, nan, 0.]), reduction='none')
        //   -> [nan, nan, nan, 0.]
        let x = array![f64::NEG_INFINITY, -1.0, -1.0, -1.0];
        let t = array![0.0, -0.5, f64::NAN, 0.0];
        let o = KlDivOptions { reduction: Reduction::None, log_target: false };
        let l = kl_div(x.view(), t.view(), &o).unwrap().into_array();
        assert!(l[0].is_nan() && l[1].is_nan() && l[2].is_nan());
        assert_eq!(l[3], 0.0);
        // log_target with t = -inf: exp(-inf)·(-inf - x) = 0·(-inf) = NaN
        let o = KlDivOptions { reduction: Reduction::None, log_target: true };
        let l = kl_div(array![-1.0f64].view(), array![f64::NEG_INFINITY].view(), &o).unwrap().into_array();
        assert!(l[0].is_nan());
    }

    #[test]
    fn summed_gradient_over_broadcast_target() {
        // input (2,2), target (2,) broadcast over rows: ∂t_j = Σ_i (ln t_j + 1 − x_ij)
        let x = array![[-1.0f64, -2.0], [-3.0, -4.0]];
        let t = array![0.5f64, 0.25];
        let gt = kl_div_backward_target(x.view(), t.view(), &sum_opts(false), &GradOutput::one()).unwrap();
        let want = [2.0 * (0.5f64.ln() + 1.0) + 4.0, 2.0 * (0.25f64.ln() + 1.0) + 6.0];
        assert!((gt[[0]] - want[0]).abs() < 1e-14 && (gt[[1]] - want[1]).abs() < 1e-14, "{gt}");
        let gx = kl_div_backward(x.view(), t.view(), &sum_opts(false), &GradOutput::one()).unwrap();
        assert_eq!(gx, array![[-0.5, -0.25], [-0.5, -0.25]].into_dyn());
    }

    #[test]
    fn long_inputs_cross_chunk_boundaries() {
        let n = 2 * CHUNK + 7;
        let x = ArrayD::from_shape_fn(IxDyn(&[n]), |i| -1.0 - (i[0] % 5) as f64 * 0.1);
        let t = ArrayD::from_shape_fn(IxDyn(&[n]), |i| 0.1 + (i[0] % 3) as f64 * 0.2);
        let l = kl_div(x.view(), t.view(), &sum_opts(false)).unwrap().scalar().unwrap();
        let direct: f64 = x.iter().zip(&t).map(|(&x, &t)| t * t.ln() - t * x).sum();
        assert!((l - direct).abs() < 1e-10 * direct.abs());
    }

    #[test]
    fn broadcasts_larger_than_memory_are_too_large() {
        // [2^29, 1] and [1, 2^29]: one element each, a broadcast of 2^58 (f32: 2^60 bytes).
        let one = ndarray::arr0(0.5f32);
        let x = one.broadcast(IxDyn(&[1 << 29, 1])).unwrap();
        let t = one.broadcast(IxDyn(&[1, 1 << 29])).unwrap();
        let too_large = |r: Result<()>, what: &str| match r {
            Err(Error::TooLarge { op, .. }) => assert_eq!(op, OP, "{what}"),
            other => panic!("{what}: expected Error::TooLarge, got {other:?}"),
        };
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean, Reduction::BatchMean] {
            for log_target in [false, true] {
                let o = KlDivOptions { reduction, log_target };
                let g = GradOutput::one();
                too_large(kl_div(x.view(), t.view(), &o).map(drop), "kl_div");
                too_large(kl_div_with_grad(x.view(), t.view(), &o).map(drop), "kl_div_with_grad");
                too_large(kl_div_backward(x.view(), t.view(), &o, &g).map(drop), "kl_div_backward");
                too_large(kl_div_backward_target(x.view(), t.view(), &o, &g).map(drop), "backward_target");
            }
        }
        // A broadcast that fits is computed: [3, 1] and [1, 2] give 6 terms 0.5·(ln 0.5 − 0.5).
        let (x, t) = (x.slice(ndarray::s![..3, ..]), t.slice(ndarray::s![.., ..2]));
        let o = KlDivOptions { reduction: Reduction::Sum, log_target: false };
        let l = kl_div(x.into_dyn(), t.into_dyn(), &o).unwrap().scalar().unwrap();
        assert!((l - 6.0 * 0.5 * (0.5f32.ln() - 0.5)).abs() < 1e-6, "{l}");
    }
}
