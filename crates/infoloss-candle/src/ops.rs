//! The candle custom ops: a forward that calls an infoloss loss on views of the CPU storages, and a `bwd` that
//! calls the matching infoloss `*_backward` with candle's upstream gradient, so `Tensor::backward` gets
//! exactly the core's gradient.
//!
//! Three shapes of op cover every loss:
//!
//! - [`Unary`] (`CustomOp1`): `log_softmax`, `softmax`, `logsumexp` along one dimension;
//! - [`Indexed`] (`CustomOp2`, float input + integer class-index target): `nll_loss`, `cross_entropy` —
//!   `bwd` returns `None` for the integer target;
//! - [`Pair`] (`CustomOp2`, two float tensors): `cross_entropy` with probabilities, `kl_div`, both BCEs,
//!   the distillation losses and UDA — each side gets a gradient where infoloss defines one.
//!
//! Constant arrays (class weights, `pos_weight`, labels, top-k indices) are copied to the host when the op
//! is built and live in the op.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use infoloss::{GradOutput, Loss};
use ndarray::{ArrayD, ArrayViewD};

use crate::convert::{Float, cpu, grad_tensor, index_view, to_storage, view, with_float};

// ---------------------------------------------------------------------------------------------------------------
// Unary: softmax family
// ---------------------------------------------------------------------------------------------------------------

/// Which function of the softmax family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryKind {
    LogSoftmax,
    Softmax,
    LogSumExp,
}

/// `log_softmax` / `softmax` / `logsumexp` along `dim` as a `CustomOp1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unary {
    pub kind: UnaryKind,
    pub dim: isize,
}

impl Unary {
    fn forward<T: Float>(&self, x: ArrayViewD<'_, T>) -> candle_core::Result<ArrayD<T>> {
        let r = match self.kind {
            UnaryKind::LogSoftmax => infoloss::log_softmax(x, self.dim),
            UnaryKind::Softmax => infoloss::softmax(x, self.dim),
            UnaryKind::LogSumExp => infoloss::logsumexp(x, self.dim),
        };
        r.map_err(crate::convert::core_err)
    }

    fn backward<T: Float>(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Tensor> {
        let op = self.name();
        let (gg, gl) = grad.storage_and_layout();
        let g = view::<T>(op, "grad_output", cpu(op, "grad_output", &gg)?, gl)?;
        let out = match self.kind {
            UnaryKind::LogSumExp => {
                let (ag, al) = arg.storage_and_layout();
                let x = view::<T>(op, "input", cpu(op, "input", &ag)?, al)?;
                infoloss::logsumexp_backward(x.view(), g.view(), self.dim)
            }
            kind => {
                let (rg, rl) = res.storage_and_layout();
                let y = view::<T>(op, "output", cpu(op, "output", &rg)?, rl)?;
                if kind == UnaryKind::LogSoftmax {
                    infoloss::log_softmax_backward(y.view(), g.view(), self.dim)
                } else {
                    infoloss::softmax_backward(y.view(), g.view(), self.dim)
                }
            }
        }
        .map_err(crate::convert::core_err)?;
        grad_tensor(op, "input", out, arg)
    }
}

impl CustomOp1 for Unary {
    fn name(&self) -> &'static str {
        match self.kind {
            UnaryKind::LogSoftmax => "log_softmax",
            UnaryKind::Softmax => "softmax",
            UnaryKind::LogSumExp => "logsumexp",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        with_float!(op, "input", s.dtype(), T => {
            let x = view::<T>(op, "input", s, l)?;
            Ok(to_storage(self.forward(x.view())?))
        })
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        with_float!(self.name(), "input", arg.dtype(), T => self.backward::<T>(arg, res, grad).map(Some))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Indexed: float input, integer class-index target
// ---------------------------------------------------------------------------------------------------------------

/// A loss of a float input and an integer class-index target (no gradient for the target).
pub(crate) trait IndexLoss: Send + Sync + 'static {
    /// The op's name (for messages).
    const NAME: &'static str;
    /// The loss.
    fn forward<T: Float>(&self, x: ArrayViewD<'_, T>, t: ArrayViewD<'_, i64>)
    -> candle_core::Result<Loss<T>>;
    /// Its gradient wrt the input, given the upstream gradient.
    fn backward<T: Float>(
        &self,
        x: ArrayViewD<'_, T>,
        t: ArrayViewD<'_, i64>,
        g: &GradOutput<'_, T>,
    ) -> candle_core::Result<ArrayD<T>>;
}

/// An [`IndexLoss`] as a `CustomOp2` (input, target).
pub(crate) struct Indexed<L>(pub L);

impl<L: IndexLoss> Indexed<L> {
    fn backward<T: Float>(
        &self,
        input: &Tensor,
        target: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let op = L::NAME;
        let (xg, xl) = input.storage_and_layout();
        let (tg, tl) = target.storage_and_layout();
        let (gg, gl) = grad.storage_and_layout();
        let x = view::<T>(op, "input", cpu(op, "input", &xg)?, xl)?;
        let t = index_view(op, "target", cpu(op, "target", &tg)?, tl)?;
        let g = view::<T>(op, "grad_output", cpu(op, "grad_output", &gg)?, gl)?;
        let out = self.0.backward(x.view(), t.view(), &GradOutput::Array(g.view()))?;
        grad_tensor(op, "input", out, input)
    }
}

impl<L: IndexLoss> CustomOp2 for Indexed<L> {
    fn name(&self) -> &'static str {
        L::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = L::NAME;
        with_float!(op, "input", s1.dtype(), T => {
            let x = view::<T>(op, "input", s1, l1)?;
            let t = index_view(op, "target", s2, l2)?;
            Ok(to_storage(self.0.forward(x.view(), t.view())?.into_array()))
        })
    }

    fn bwd(
        &self,
        input: &Tensor,
        target: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if !input.track_op() {
            let gt = if target.track_op() { Some(target.zeros_like()?) } else { None };
            return Ok((None, gt));
        }
        let g = with_float!(L::NAME, "input", input.dtype(), T => self.backward::<T>(input, target, grad))?;
        // Class indices are integers: they have no gradient. (The public functions detach the target, so it is
        // never in the graph; were it, it would need zeros — see `Pair`.)
        let gt = if target.track_op() { Some(target.zeros_like()?) } else { None };
        Ok((Some(g), gt))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pair: two float tensors
// ---------------------------------------------------------------------------------------------------------------

/// A loss of two float tensors of the same dtype; each side may have a gradient.
pub(crate) trait PairLoss: Send + Sync + 'static {
    /// The op's name (for messages).
    const NAME: &'static str;
    /// What the first argument is called.
    const FIRST: &'static str = "input";
    /// What the second argument is called.
    const SECOND: &'static str = "target";
    /// The loss.
    fn forward<T: Float>(&self, a: ArrayViewD<'_, T>, b: ArrayViewD<'_, T>) -> candle_core::Result<Loss<T>>;
    /// The gradient wrt the first argument, or `None` if it has none (a constant side, the default).
    fn grad_first<T: Float>(
        &self,
        _a: ArrayViewD<'_, T>,
        _b: ArrayViewD<'_, T>,
        _g: &GradOutput<'_, T>,
    ) -> Option<candle_core::Result<ArrayD<T>>> {
        None
    }
    /// The gradient wrt the second argument, or `None` if it has none (a constant side, the default).
    fn grad_second<T: Float>(
        &self,
        _a: ArrayViewD<'_, T>,
        _b: ArrayViewD<'_, T>,
        _g: &GradOutput<'_, T>,
    ) -> Option<candle_core::Result<ArrayD<T>>> {
        None
    }
}

/// Implements [`PairLoss`] (`pair`) or [`IndexLoss`] (`index`) for a type whose `opts::<T>()` gives the
/// infoloss options, by calling the infoloss loss and its backward(s) with them: `pair Op = "name": loss,
/// loss_backward, loss_backward_target` or `index Op = "name": loss, loss_backward`.
macro_rules! loss_op {
    (pair $ty:ty = $name:literal: $forward:path, $first:path, $second:path) => {
        impl $crate::ops::PairLoss for $ty {
            const NAME: &'static str = $name;

            fn forward<T: $crate::convert::Float>(
                &self,
                a: ndarray::ArrayViewD<'_, T>,
                b: ndarray::ArrayViewD<'_, T>,
            ) -> candle_core::Result<infoloss::Loss<T>> {
                $forward(a, b, &self.opts::<T>()?).map_err($crate::convert::core_err)
            }

            $crate::ops::loss_op!(@grad grad_first $first);
            $crate::ops::loss_op!(@grad grad_second $second);
        }
    };
    (@grad $method:ident $backward:path) => {
        fn $method<T: $crate::convert::Float>(
            &self,
            a: ndarray::ArrayViewD<'_, T>,
            b: ndarray::ArrayViewD<'_, T>,
            g: &infoloss::GradOutput<'_, T>,
        ) -> Option<candle_core::Result<ndarray::ArrayD<T>>> {
            Some(self.opts::<T>().and_then(|o| $backward(a, b, &o, g).map_err($crate::convert::core_err)))
        }
    };
    (index $ty:ty = $name:literal: $forward:path, $backward:path) => {
        impl $crate::ops::IndexLoss for $ty {
            const NAME: &'static str = $name;

            fn forward<T: $crate::convert::Float>(
                &self,
                x: ndarray::ArrayViewD<'_, T>,
                t: ndarray::ArrayViewD<'_, i64>,
            ) -> candle_core::Result<infoloss::Loss<T>> {
                $forward(x, t, &self.opts::<T>()?).map_err($crate::convert::core_err)
            }

            fn backward<T: $crate::convert::Float>(
                &self,
                x: ndarray::ArrayViewD<'_, T>,
                t: ndarray::ArrayViewD<'_, i64>,
                g: &infoloss::GradOutput<'_, T>,
            ) -> candle_core::Result<ndarray::ArrayD<T>> {
                $backward(x, t, &self.opts::<T>()?, g).map_err($crate::convert::core_err)
            }
        }
    };
}
pub(crate) use loss_op;

/// A [`PairLoss`] as a `CustomOp2`.
pub(crate) struct Pair<L>(pub L);

type Grads = (Option<Tensor>, Option<Tensor>);

impl<L: PairLoss> Pair<L> {
    fn backward<T: Float>(&self, a: &Tensor, b: &Tensor, grad: &Tensor) -> candle_core::Result<Grads> {
        let op = L::NAME;
        let (ag, al) = a.storage_and_layout();
        let (bg, bl) = b.storage_and_layout();
        let (gg, gl) = grad.storage_and_layout();
        let av = view::<T>(op, L::FIRST, cpu(op, L::FIRST, &ag)?, al)?;
        let bv = view::<T>(op, L::SECOND, cpu(op, L::SECOND, &bg)?, bl)?;
        let g = view::<T>(op, "grad_output", cpu(op, "grad_output", &gg)?, gl)?;
        let go = GradOutput::Array(g.view());
        // An argument in the graph (`track_op`) must receive a gradient, or candle's backprop panics when it
        // reaches that argument's own node ("grad not populated"): a side without a gradient gets zeros. (The
        // public functions detach such sides up front, so this is only a safety net.)
        let ga = if !a.track_op() {
            None
        } else {
            match self.0.grad_first(av.view(), bv.view(), &go) {
                Some(g) => Some(grad_tensor(op, L::FIRST, g?, a)?),
                None => Some(a.zeros_like()?),
            }
        };
        let gb = if !b.track_op() {
            None
        } else {
            match self.0.grad_second(av.view(), bv.view(), &go) {
                Some(g) => Some(grad_tensor(op, L::SECOND, g?, b)?),
                None => Some(b.zeros_like()?),
            }
        };
        Ok((ga, gb))
    }
}

impl<L: PairLoss> CustomOp2 for Pair<L> {
    fn name(&self) -> &'static str {
        L::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = L::NAME;
        with_float!(op, L::FIRST, s1.dtype(), T => {
            let a = view::<T>(op, L::FIRST, s1, l1)?;
            let b = view::<T>(op, L::SECOND, s2, l2)?;
            Ok(to_storage(self.0.forward(a.view(), b.view())?.into_array()))
        })
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Grads> {
        with_float!(L::NAME, L::FIRST, a.dtype(), T => self.backward::<T>(a, b, grad))
    }
}
