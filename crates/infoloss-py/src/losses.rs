//! The losses: cross-entropy (class indices and probabilities), NLL, KL divergence, BCE, BCE with logits.
//!
//! Every function takes `(input, target, options, weight=None, pos_weight=None, grad_output=None, loss=True,
//! grad=False, target_grad=False)`, where `options` is the tuple of the loss's scalar options in catalog order
//! (see [`from_tuple`]), and returns `(loss or None, grad_input or None, grad_target or None)`; the Python layer
//! (`infoloss/_functional.py`) validates arguments, converts dtypes and shapes the public results.

use ndarray::{ArrayView1, ArrayViewD, Ix1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use infoloss::{BceOptions, BceWithLogitsOptions, CrossEntropyOptions, GradOutput, KlDivOptions, NllOptions};
use numpy::prelude::*;

use crate::boundary::{Float, Plan, compute, drive, float_arr, float_fn, index_arr, opt_float_arr, probe};
use crate::catalog::from_tuple;

/// The per-class weight of the class-index losses: one dimension.
pub(crate) fn weight_1d<'a, T>(w: ArrayViewD<'a, T>, op: &str) -> PyResult<ArrayView1<'a, T>> {
    let shape = w.shape().to_vec();
    w.into_dimensionality::<Ix1>().map_err(|_| {
        PyValueError::new_err(format!(
            "{op}: weight must be 1-D with one value per class, got shape {shape:?}"
        ))
    })
}

/// An element weight: any shape (broadcast into the input's by the core).
fn weight_nd<'a, T>(w: ArrayViewD<'a, T>, _op: &str) -> PyResult<ArrayViewD<'a, T>> {
    Ok(w)
}

/// How many arrays of the input's size a call allocates (for the allocation probe).
fn arrays(plan: Plan) -> usize {
    2 + usize::from(plan.grad) + usize::from(plan.target_grad)
}

/// A backward pass given the upstream gradient.
type Backward<'g, T> = fn(&GradOutput<'g, T>) -> infoloss::Result<ndarray::ArrayD<T>>;

/// No target gradient (for the closure type of `drive`).
fn no_target<'g, T: Float>() -> Option<Backward<'g, T>> {
    None
}

/// Declares one loss: the Python function `$name` and its generic body. `$target` reads the target
/// (`index_arr` or `float_arr`), `probe_target` says whether the target has the input's size, each
/// `$field: $conv` sets an array option from the argument of the same name, and the paths are the core's
/// forward, fused forward + gradient, backward and (optional) target backward.
macro_rules! loss {
    (
        $(#[$doc:meta])*
        $name:ident: $opts:ty, $target:ident, probe_target: $pt:literal, [$($field:ident: $conv:ident),*],
        $fwd:path, $with_grad:path, $bwd:path $(, $bwd_target:path)?
    ) => {
        float_fn! {
            $(#[$doc])*
            fn $name(
                input: &Bound<'_, PyAny>,
                target: &Bound<'_, PyAny>,
                options: &Bound<'_, PyTuple>,
                weight: Option<&Bound<'_, PyAny>>,
                pos_weight: Option<&Bound<'_, PyAny>>,
                grad_output: Option<&Bound<'_, PyAny>>,
                loss: bool,
                grad: bool,
                target_grad: bool,
            ) signature (
                input, target, options, weight=None, pos_weight=None, grad_output=None, loss=true, grad=false,
                target_grad=false
            ), dtype of input in stringify!($name);
            |py, T| {
                const OP: &str = stringify!($name);
                let plan = Plan { loss, grad, target_grad };
                let x = float_arr::<T>(input, OP, "input")?;
                let t = loss!(@target $target, T, target, OP)?;
                let weight = opt_float_arr::<T>(weight, OP, "weight")?;
                let pos_weight = opt_float_arr::<T>(pos_weight, OP, "pos_weight")?;
                let g = opt_float_arr::<T>(grad_output, OP, "grad_output")?;
                #[allow(unused_mut)]
                let mut opts = from_tuple::<$opts>(OP, options)?;
                if $pt {
                    probe(OP, &[x.shape(), t.shape()], arrays(plan))?;
                } else {
                    probe(OP, &[x.shape()], arrays(plan))?;
                }
                let (xv, tv) = (x.as_array(), t.as_array());
                $(opts.$field = loss!(@array $field, weight, pos_weight)
                    .as_ref()
                    .map(|a| $conv(a.as_array(), OP))
                    .transpose()?;)*
                let gv = g.as_ref().map(|g| crate::boundary::grad_output(g.as_array()));
                let out = compute(py, OP, move || {
                    drive(
                        plan,
                        gv,
                        || $fwd(xv.view(), tv.view(), &opts),
                        || $with_grad(xv.view(), tv.view(), &opts),
                        |g| $bwd(xv.view(), tv.view(), &opts, g),
                        loss!(@target_grad T, xv, tv, opts $(, $bwd_target)?),
                    )
                })?;
                out.into_py(py)
            }
        }
    };
    (@array weight, $w:ident, $pw:ident) => { $w };
    (@array pos_weight, $w:ident, $pw:ident) => { $pw };
    (@target index_arr, $t:ident, $arg:expr, $op:expr) => { index_arr($arg, $op, "target") };
    (@target float_arr, $t:ident, $arg:expr, $op:expr) => { float_arr::<$t>($arg, $op, "target") };
    (@target_grad $t:ident, $x:ident, $tv:ident, $opts:ident) => { no_target::<$t>() };
    (@target_grad $t:ident, $x:ident, $tv:ident, $opts:ident, $bwd_target:path) => {
        Some(|g: &GradOutput<'_, $t>| $bwd_target($x.view(), $tv.view(), &$opts, g))
    };
}

loss! {
    /// `cross_entropy` with class-index targets.
    cross_entropy: CrossEntropyOptions<'_, T>, index_arr, probe_target: false, [weight: weight_1d],
    infoloss::cross_entropy, infoloss::cross_entropy_with_grad, infoloss::cross_entropy_backward
}

loss! {
    /// `cross_entropy` with class-probability targets (target of the input's shape).
    cross_entropy_probs: CrossEntropyOptions<'_, T>, float_arr, probe_target: true, [weight: weight_1d],
    infoloss::cross_entropy_probs, infoloss::cross_entropy_probs_with_grad, infoloss::cross_entropy_probs_backward,
    infoloss::cross_entropy_probs_backward_target
}

loss! {
    /// `nll_loss`.
    nll_loss: NllOptions<'_, T>, index_arr, probe_target: false, [weight: weight_1d],
    infoloss::nll_loss, infoloss::nll_loss_with_grad, infoloss::nll_loss_backward
}

loss! {
    /// `kl_div` (the reduction is already resolved: `batchmean` is passed through).
    kl_div: KlDivOptions, float_arr, probe_target: true, [],
    infoloss::kl_div, infoloss::kl_div_with_grad, infoloss::kl_div_backward, infoloss::kl_div_backward_target
}

loss! {
    /// `binary_cross_entropy`.
    binary_cross_entropy: BceOptions<'_, T>, float_arr, probe_target: true, [weight: weight_nd],
    infoloss::binary_cross_entropy, infoloss::binary_cross_entropy_with_grad,
    infoloss::binary_cross_entropy_backward, infoloss::binary_cross_entropy_backward_target
}

loss! {
    /// `binary_cross_entropy_with_logits`.
    binary_cross_entropy_with_logits: BceWithLogitsOptions<'_, T>, float_arr, probe_target: true,
    [weight: weight_nd, pos_weight: weight_nd],
    infoloss::binary_cross_entropy_with_logits, infoloss::binary_cross_entropy_with_logits_with_grad,
    infoloss::binary_cross_entropy_with_logits_backward, infoloss::binary_cross_entropy_with_logits_backward_target
}
