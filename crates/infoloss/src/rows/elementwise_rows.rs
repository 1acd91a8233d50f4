//! Rows of the elementwise losses' reference implementations, and the driver all three (`kl_div`, both
//! BCEs) run: the fused kernel where it applies, else the reference loop over chunks of elements.

use ndarray::{ArrayD, ArrayViewD};
use num_traits::Zero;

use crate::base::Real;
use crate::base::array::try_vec;
use crate::base::outputs::{Outputs, Want, to_array};
use crate::base::shape::checked_numel;
use crate::base::upstream::{ElementUpstream, fill, upstream_of};
use crate::kernels::elementwise::{Done, LossOut, Plan, PointOp};
use crate::{Element, GradOutput, Result};

/// Elements per reference chunk.
pub(crate) const CHUNK: usize = 1024;

/// `out *= w` (when weighted), then `out /= n` (for `Mean`), in that order as PyTorch's BCE gradients.
pub(crate) fn row_scale<A: Real>(out: &mut [A], w: Option<&[A]>, div: Option<A>) {
    if let Some(w) = w {
        for (o, &w) in out.iter_mut().zip(w) {
            *o *= w;
        }
    }
    if let Some(n) = div {
        for o in out.iter_mut() {
            *o /= n;
        }
    }
}

/// An elementwise loss's formula on contiguous chunks in the compute type `A` (unweighted: the driver
/// applies the weight and the gradient divisor), in PyTorch's order of operations. `p` is the chunk of
/// `pos_weight` where the loss has one, `g` the upstream gradient.
pub(crate) trait ElementRows<A: Real> {
    /// The first element outside the loss's domain in a chunk starting at element `offset` of a loss
    /// of `shape`, as an error (`binary_cross_entropy`'s `[0, 1]`).
    fn check(&self, _x: &[A], _t: &[A], _offset: usize, _shape: &[usize]) -> Result<()> {
        Ok(())
    }
    /// The loss terms.
    fn loss(&self, x: &[A], t: &[A], p: Option<&[A]>, out: &mut [A]);
    /// ∂/∂x.
    fn grad_input(&self, x: &[A], t: &[A], p: Option<&[A]>, g: &[A], out: &mut [A]);
    /// ∂/∂t.
    fn grad_target(&self, x: &[A], t: &[A], p: Option<&[A]>, g: &[A], out: &mut [A]);
}

/// Runs an elementwise loss of `plan` on `x` and `t` (views of `plan.shape`, broadcast where the loss
/// broadcasts): the fused kernel `fast` where it applies, else the reference `rows`. The gradients have
/// the shapes `grad_shapes` (input's, target's), summed over the broadcast dimensions where they differ
/// from `plan.shape`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_elementwise<T: Element, K: PointOp, R: ElementRows<T::Acc>>(
    plan: &Plan<'_, T>,
    fast: Option<K>,
    rows: &R,
    x: &ArrayViewD<'_, T>,
    t: &ArrayViewD<'_, T>,
    grad_shapes: [&[usize]; 2],
    grad_output: Option<&GradOutput<'_, T>>,
    want: Want,
) -> Result<Outputs<T>> {
    let op = plan.op;
    let (n, reduction) = (plan.n, plan.reduction);
    let (g_view, g_const) = upstream_of(op, grad_output, want, reduction, &plan.shape, plan.upstream_div)?;
    if let Some(k) = fast {
        if let Some(out) = plan.fast_outputs(k, x, t, want, (g_view, g_const)) {
            return out;
        }
    }

    let mut upstream = ElementUpstream::new(g_view, g_const);
    let loss_out = LossOut::of(want.loss, reduction);
    let mut loss_vals: Vec<T> = try_vec(op, "output", if loss_out == LossOut::Elements { n } else { 0 })?;
    let mut loss_sum = 0.0f64;
    let sink = |wanted: bool, shape: &[usize]| wanted.then(|| GradSink::<T>::new(op, shape, &plan.shape, n));
    let mut gx = sink(want.grad_input, grad_shapes[0]).transpose()?;
    let mut gt = sink(want.grad_target, grad_shapes[1]).transpose()?;

    let (mut xs, mut ts, mut ws, mut ps, mut gs, mut os) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut xi = x.iter();
    let mut ti = t.iter();
    let mut wi = plan.weight.as_ref().map(|w| w.iter());
    let mut pi = plan.pos_weight.as_ref().map(|p| p.iter());
    let mut done = 0usize;
    while done < n {
        let len = CHUNK.min(n - done);
        fill::<T>(&mut xs, &mut xi, len);
        fill::<T>(&mut ts, &mut ti, len);
        rows.check(&xs, &ts, done, &plan.shape)?;
        if let Some(wi) = wi.as_mut() {
            fill::<T>(&mut ws, wi, len);
        }
        if let Some(pi) = pi.as_mut() {
            fill::<T>(&mut ps, pi, len);
        }
        let w = plan.weight.as_ref().map(|_| ws.as_slice());
        let pw = plan.pos_weight.as_ref().map(|_| ps.as_slice());
        os.clear();
        os.resize(xs.len(), T::Acc::zero());
        if want.loss {
            rows.loss(&xs, &ts, pw, &mut os);
            row_scale(&mut os, w, None);
            for &v in &os {
                let r = T::from_acc(v);
                loss_sum += r.to_acc().f64();
                if loss_out == LossOut::Elements {
                    loss_vals.push(r);
                }
            }
        }
        if want.grad_input || want.grad_target {
            upstream.fill(&mut gs, xs.len());
        }
        if let Some(sink) = gx.as_mut() {
            rows.grad_input(&xs, &ts, pw, &gs, &mut os);
            row_scale(&mut os, w, plan.grad_div);
            sink.push(&os);
        }
        if let Some(sink) = gt.as_mut() {
            rows.grad_target(&xs, &ts, pw, &gs, &mut os);
            row_scale(&mut os, w, plan.grad_div);
            sink.push(&os);
        }
        done += len;
    }

    // (the mean of nothing is 0/0 = NaN; `kl_div`'s batchmean of an empty batch likewise)
    let done = Done {
        loss_elems: Some(loss_vals),
        loss_sum,
        loss: loss_out,
        grad_input: None,
        grad_target: None,
        flagged: false,
    };
    Ok(Outputs {
        grad_input: gx.map(|s| s.finish(op, grad_shapes[0])).transpose()?,
        grad_target: gt.map(|s| s.finish(op, grad_shapes[1])).transpose()?,
        ..done.into_outputs(op, &plan.shape, plan.divisor)?
    })
}

/// Walks the positions of an argument broadcast into a larger output shape, in the output's row-major
/// order.
pub(crate) struct BroadcastIndex {
    dims: Vec<usize>,
    steps: Vec<usize>,
    idx: Vec<usize>,
    pos: usize,
}

impl BroadcastIndex {
    /// For an argument of `arg_shape` inside `out_shape` (aligned on the right).
    pub(crate) fn new(arg_shape: &[usize], out_shape: &[usize]) -> Self {
        let off = out_shape.len() - arg_shape.len();
        let mut steps = vec![0; out_shape.len()];
        let mut stride = 1usize;
        for (i, &d) in arg_shape.iter().enumerate().rev() {
            if d != 1 {
                steps[off + i] = stride;
            }
            // bounded by the number of elements of an existing array
            stride = stride.saturating_mul(d);
        }
        BroadcastIndex { dims: out_shape.to_vec(), steps, idx: vec![0; out_shape.len()], pos: 0 }
    }

    /// The argument's flat position of the next output element.
    pub(crate) fn next_pos(&mut self) -> usize {
        let p = self.pos;
        for d in (0..self.dims.len()).rev() {
            self.idx[d] += 1;
            self.pos += self.steps[d];
            if self.idx[d] < self.dims[d] {
                return p;
            }
            self.pos -= self.steps[d] * self.dims[d];
            self.idx[d] = 0;
        }
        p
    }
}

/// Collects a gradient computed over the broadcast output into its argument's shape. When the
/// argument was broadcast, values (rounded to `T`, as PyTorch's `sum_to_size` sees them) are summed
/// in f64 over the broadcast dimensions.
pub(crate) enum GradSink<T> {
    /// The argument has the output's shape.
    Same(Vec<T>),
    /// The argument was broadcast.
    Summed { sums: Vec<f64>, index: BroadcastIndex },
}

impl<T: Element> GradSink<T> {
    /// For an argument of `arg_shape` inside `out_shape` (of `out_numel` elements).
    pub(crate) fn new(
        op: &'static str,
        arg_shape: &[usize],
        out_shape: &[usize],
        out_numel: usize,
    ) -> Result<Self> {
        if arg_shape == out_shape {
            Ok(GradSink::Same(try_vec(op, "gradient", out_numel)?))
        } else {
            let n = checked_numel(op, "gradient", arg_shape)?;
            let mut sums = try_vec(op, "gradient", n)?;
            sums.resize(n, 0.0);
            Ok(GradSink::Summed { sums, index: BroadcastIndex::new(arg_shape, out_shape) })
        }
    }

    /// The gradients of the next output elements.
    pub(crate) fn push(&mut self, vals: &[T::Acc]) {
        match self {
            GradSink::Same(v) => v.extend(vals.iter().map(|&g| T::from_acc(g))),
            GradSink::Summed { sums, index } => {
                for &g in vals {
                    let p = index.next_pos();
                    if let Some(s) = sums.get_mut(p) {
                        *s += T::from_acc(g).to_acc().f64();
                    }
                }
            }
        }
    }

    /// The gradient as an array of `arg_shape`.
    pub(crate) fn finish(self, op: &'static str, arg_shape: &[usize]) -> Result<ArrayD<T>> {
        let data = match self {
            GradSink::Same(v) => v,
            GradSink::Summed { sums, .. } => sums.into_iter().map(|s| T::from_acc(T::Acc::c(s))).collect(),
        };
        to_array(op, data, arg_shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_index_walks_the_argument() {
        // arg (3,1) inside out (2,3,2): positions repeat over dim 0 and stay within a row along dim 2
        let mut b = BroadcastIndex::new(&[3, 1], &[2, 3, 2]);
        let got: Vec<usize> = (0..12).map(|_| b.next_pos()).collect();
        assert_eq!(got, vec![0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]);
    }
}
