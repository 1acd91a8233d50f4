//! The losses, each in its own module (re-exported at the crate root: `infoloss::cross_entropy`, …). A
//! loss builds on the ground floor, the kernels and the shared rows; it uses another loss only through
//! what that loss's module offers at its top level, never its submodules (`tests/layers.rs`).

/// The four wrappers every elementwise loss (`kl_div`, both BCEs) has around its `run(input, target,
/// opts, grad_output, want)`: `f` (the loss), `f_backward` (the input gradient), `f_backward_target` (the
/// target gradient) and `f_with_grad` (loss and input gradient for an upstream gradient of 1). Each
/// keeps its own documentation; the bodies are the same but for which result they ask `run` for.
macro_rules! elementwise_api {
    (
        op = $op:ident, run = $run:ident, options = $opts:ty;
        $(#[$fm:meta])* fn $f:ident;
        $(#[$bm:meta])* fn $backward:ident;
        $(#[$tm:meta])* fn $backward_target:ident;
        $(#[$gm:meta])* fn $with_grad:ident;
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
    };
}
pub(crate) use elementwise_api;

/// The three wrappers a class-row loss (`nll_loss`, `cross_entropy`, `cross_entropy_probs`) has around
/// its `core(op, input, target, opts, want_loss, grad_output) -> LossAndGrad`: `f` (the loss),
/// `f_backward` (the input gradient for `grad_output`) and `f_with_grad` (loss and input gradient for
/// an upstream gradient of 1). `target` is the target's element type (`i64` class indices, or `T`).
/// Each keeps its own documentation.
macro_rules! class_api {
    (
        core = $core:ident, target = $tt:ty, options = $opts:ty, op = $op:literal, backward_op = $bop:literal;
        $(#[$fm:meta])* fn $f:ident;
        $(#[$bm:meta])* fn $backward:ident;
        $(#[$gm:meta])* fn $with_grad:ident;
    ) => {
        $(#[$fm])*
        pub fn $f<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, $tt, D2>,
            opts: &$opts,
        ) -> Result<Loss<T>> {
            let (loss, _) = $core($op, input.into_dyn(), target.into_dyn(), opts, true, None)?;
            loss.ok_or_else(|| Error::invalid_option($op, "reduction", opts.reduction, "no loss computed"))
        }

        $(#[$bm])*
        pub fn $backward<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, $tt, D2>,
            opts: &$opts,
            grad_output: &GradOutput<'_, T>,
        ) -> Result<ndarray::ArrayD<T>> {
            let (_, grad) = $core($bop, input.into_dyn(), target.into_dyn(), opts, false, Some(grad_output))?;
            grad.ok_or_else(|| Error::invalid_option($bop, "reduction", opts.reduction, "no gradient computed"))
        }

        $(#[$gm])*
        pub fn $with_grad<T: Element, D: Dimension, D2: Dimension>(
            input: ArrayView<'_, T, D>,
            target: ArrayView<'_, $tt, D2>,
            opts: &$opts,
        ) -> Result<(Loss<T>, ndarray::ArrayD<T>)> {
            let one = GradOutput::one();
            match $core($op, input.into_dyn(), target.into_dyn(), opts, true, Some(&one))? {
                (Some(l), Some(g)) => Ok((l, g)),
                _ => Err(Error::invalid_option($op, "reduction", opts.reduction, "no loss computed")),
            }
        }
    };
}
pub(crate) use class_api;

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
