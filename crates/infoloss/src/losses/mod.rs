//! The losses, each in its own module (re-exported at the crate root: `infoloss::cross_entropy`, …). A
//! loss builds on the ground floor, the kernels and the shared rows; it uses another loss only through
//! what that loss's module offers at its top level, never its submodules (`tests/layers.rs`).

use ndarray::ArrayViewD;

use crate::GradOutput;

/// The five wrappers every elementwise loss (`kl_div`, both BCEs) has around its `run(input, target,
/// opts, grad_output, want)`: `f` (the loss), `f_backward` (the input gradient), `f_backward_target` (the
/// target gradient), `f_with_grad` (loss and input gradient for an upstream gradient of 1) and
/// `f_with_grad_in_place` (see [`in_place_api`]), and the `compiled_here!` list of the two entry points.
/// Each keeps its own documentation; the bodies are the same but for which result they ask `run` for.
///
/// A loss whose input and target have one shape (the BCEs) gives `setup = f` instead, `f(input shape,
/// target shape, opts)` validating a call into its plan, fused kernel and reference rows; `run` and the
/// in-place kernel are then made from it.
macro_rules! elementwise_api {
    (
        op = $op:ident, setup = $setup:ident, options = $opts:ty;
        $(#[$fm:meta])* fn $f:ident;
        $(#[$bm:meta])* fn $backward:ident;
        $(#[$tm:meta])* fn $backward_target:ident;
        $(#[$gm:meta])* fn $with_grad:ident;
        $(#[$im:meta])* fn $in_place:ident;
    ) => {
        /// The loss and the gradients `want` asks for.
        #[inline(never)]
        fn run<T: Element>(
            input: ArrayViewD<'_, T>,
            target: ArrayViewD<'_, T>,
            opts: &$opts,
            grad_output: Option<&GradOutput<'_, T>>,
            want: Want,
        ) -> Result<Outputs<T>> {
            let (plan, fast, rows) = $setup(input.shape(), target.shape(), opts)?;
            let shapes = [plan.shape.as_slice(); 2];
            $crate::rows::elementwise_rows::run_elementwise(&plan, Some(fast), &rows, &input, &target, shapes, grad_output, want)
        }

        $crate::losses::elementwise_api! {
            op = $op, run = run, options = $opts;
            $(#[$fm])* fn $f;
            $(#[$bm])* fn $backward;
            $(#[$tm])* fn $backward_target;
            $(#[$gm])* fn $with_grad;
            $(#[$im])* fn $in_place via |input, target, opts| {
                let (plan, fast, _) = $setup(input.shape(), target.shape(), opts)?;
                plan.fast_in_place(fast, input, target).transpose()
            }
        }
    };
    (
        op = $op:ident, run = $run:ident, options = $opts:ty;
        $(#[$fm:meta])* fn $f:ident;
        $(#[$bm:meta])* fn $backward:ident;
        $(#[$tm:meta])* fn $backward_target:ident;
        $(#[$gm:meta])* fn $with_grad:ident;
        $(#[$im:meta])* fn $in_place:ident via |$x:ident, $t:ident, $o:ident| $fast:block
    ) => {
        $(#[$fm])*
        pub fn $f<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, T, D2>,
            opts: &$opts,
        ) -> Result<Loss<T>> {
            $run(input.into_dyn(), target.into_dyn(), opts, None, Want::LOSS)?.into_loss($op)
        }

        $(#[$bm])*
        pub fn $backward<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, T, D2>,
            opts: &$opts,
            grad_output: &GradOutput<'_, T>,
        ) -> Result<ndarray::ArrayD<T>> {
            $run(input.into_dyn(), target.into_dyn(), opts, Some(grad_output), Want::GRAD_INPUT)?.into_grad_input($op)
        }

        $(#[$tm])*
        pub fn $backward_target<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, T, D2>,
            opts: &$opts,
            grad_output: &GradOutput<'_, T>,
        ) -> Result<ndarray::ArrayD<T>> {
            $run(input.into_dyn(), target.into_dyn(), opts, Some(grad_output), Want::GRAD_TARGET)?
                .into_grad_target($op)
        }

        $(#[$gm])*
        pub fn $with_grad<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, T, D2>,
            opts: &$opts,
        ) -> Result<(Loss<T>, ndarray::ArrayD<T>)> {
            let one = GradOutput::one();
            $run(input.into_dyn(), target.into_dyn(), opts, Some(&one), Want::LOSS_AND_INPUT_GRAD)?.into_loss_and_grad($op)
        }

        $crate::losses::in_place_api!(
            target = T, options = $opts; $(#[$im])* fn $in_place via |$x, $t, $o| $fast else $with_grad
        );

        compiled_here! {
            $run: fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &$opts, Option<&GradOutput<'_, T>>, Want) -> Result<Outputs<T>>;
        }
    };
}
pub(crate) use elementwise_api;

/// One call of a class-row loss, as [`class_api`] hands it to the loss's core.
pub(crate) struct ClassCall<'a, 'g, T, Y, O> {
    /// The function errors name (`"nll_loss"`, or `"nll_loss_backward"` for the gradient alone).
    pub(crate) op: &'static str,
    pub(crate) input: ArrayViewD<'a, T>,
    /// Class indices (`i64`) or probabilities (`T`).
    pub(crate) target: ArrayViewD<'a, Y>,
    pub(crate) opts: &'a O,
    /// Whether the loss is wanted.
    pub(crate) want_loss: bool,
    /// The upstream gradient, when the input gradient is wanted.
    pub(crate) grad_output: Option<&'a GradOutput<'g, T>>,
}

/// The three wrappers a class-row loss (`nll_loss`, `cross_entropy`, `cross_entropy_probs`) has around
/// its `core(ClassCall) -> LossAndGrad`: `f` (the loss),
/// `f_backward` (the input gradient for `grad_output`) and `f_with_grad` (loss and input gradient for
/// an upstream gradient of 1), `f_with_grad_in_place` where the loss has one (see [`in_place_api`]), and
/// the `compiled_here!` list of the entry points. `target` is the target's element type (`i64` class
/// indices, or `T`). Each keeps its own documentation.
macro_rules! class_api {
    (
        core = $core:ident, target = $tt:ty, options = $opts:ty, op = $op:literal, backward_op = $bop:literal;
        $(#[$fm:meta])* fn $f:ident;
        $(#[$bm:meta])* fn $backward:ident;
        $(#[$gm:meta])* fn $with_grad:ident;
        $($(#[$im:meta])* fn $in_place:ident via |$x:ident, $t:ident, $o:ident| $fast:block)?
    ) => {
        $(#[$fm])*
        pub fn $f<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, $tt, D2>,
            opts: &$opts,
        ) -> Result<Loss<T>> {
            let (input, target) = (input.into_dyn(), target.into_dyn());
            let (loss, _) = $core($crate::losses::ClassCall { op: $op, input, target, opts, want_loss: true, grad_output: None })?;
            loss.ok_or_else(|| Error::invalid_option($op, "reduction", opts.reduction, "no loss computed"))
        }

        $(#[$bm])*
        pub fn $backward<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, $tt, D2>,
            opts: &$opts,
            grad_output: &GradOutput<'_, T>,
        ) -> Result<ndarray::ArrayD<T>> {
            let (input, target, grad_output) = (input.into_dyn(), target.into_dyn(), Some(grad_output));
            let (_, grad) = $core($crate::losses::ClassCall { op: $bop, input, target, opts, want_loss: false, grad_output })?;
            grad.ok_or_else(|| Error::invalid_option($bop, "reduction", opts.reduction, "no gradient computed"))
        }

        $(#[$gm])*
        pub fn $with_grad<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, $tt, D2>,
            opts: &$opts,
        ) -> Result<(Loss<T>, ndarray::ArrayD<T>)> {
            let (input, target, one) = (input.into_dyn(), target.into_dyn(), GradOutput::one());
            let call = $crate::losses::ClassCall { op: $op, input, target, opts, want_loss: true, grad_output: Some(&one) };
            match $core(call)? {
                (Some(l), Some(g)) => Ok((l, g)),
                _ => Err(Error::invalid_option($op, "reduction", opts.reduction, "no loss computed")),
            }
        }

        $($crate::losses::in_place_api!(
            target = $tt, options = $opts; $(#[$im])* fn $in_place via |$x, $t, $o| $fast else $with_grad
        );)?

        compiled_here! {
            $core: fn($crate::losses::ClassCall<'_, '_, T, $tt, $opts>) -> Result<crate::base::outputs::LossAndGrad<T>>;
        }
    };
}
pub(crate) use class_api;

/// `f_with_grad_in_place` (the training path: the gradient written over `input`, the loss returned) and
/// its dynamic-rank entry point. `via |input, target, opts| { … }` is the body of a function that checks
/// the call and runs the fused in-place kernel where it applies (`Ok(None)` where not, `input` untouched);
/// else `$with_grad` computes the gradient, which is copied into `input`. So on an error `input` is left
/// as it was.
macro_rules! in_place_api {
    (
        target = $tt:ty, options = $opts:ty;
        $(#[$im:meta])* fn $in_place:ident via |$x:ident, $t:ident, $o:ident| $fast:block else $with_grad:ident
    ) => {
        $(#[$im])*
        pub fn $in_place<T: Element, D: Dimension, D2: Dimension>(
            input: ndarray::ArrayViewMut<'_, T, D>,
            target: ArrayView<'_, $tt, D2>,
            opts: &$opts,
        ) -> Result<Loss<T>> {
            in_place_dyn(input.into_dyn(), target.into_dyn(), opts)
        }

        #[doc = concat!("[`", stringify!($in_place), "`] of dynamic-rank views.")]
        #[inline(never)]
        fn in_place_dyn<T: Element>(
            mut input: ndarray::ArrayViewMutD<'_, T>,
            target: ArrayViewD<'_, $tt>,
            opts: &$opts,
        ) -> Result<Loss<T>> {
            /// The fused in-place kernel, after the checks of the call, where it applies.
            fn fast<T: Element>(
                $x: &mut ndarray::ArrayViewMutD<'_, T>,
                $t: &ArrayViewD<'_, $tt>,
                $o: &$opts,
            ) -> Result<Option<Loss<T>>> $fast
            if let Some(loss) = fast(&mut input, &target, opts)? {
                return Ok(loss);
            }
            let (loss, grad) = $with_grad(input.view(), target, opts)?;
            input.assign(&grad);
            Ok(loss)
        }

        compiled_here! {
            in_place_dyn: fn(ndarray::ArrayViewMutD<'_, T>, ArrayViewD<'_, $tt>, &$opts) -> Result<Loss<T>>;
        }
    };
}
pub(crate) use in_place_api;

pub mod bce;
pub mod bce_logits;
pub mod ce_extras;
pub mod cross_entropy;
pub mod distill;
pub mod info;
pub mod kl_div;
pub mod linear;
pub mod nll;
pub mod softmax;
pub mod uda;
pub mod vocab_parallel;
