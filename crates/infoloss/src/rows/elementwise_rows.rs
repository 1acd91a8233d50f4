//! Rows of the elementwise losses' reference implementations.

use crate::base::Real;

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
