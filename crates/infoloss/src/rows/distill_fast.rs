//! One distillation row through the fused `f32` SIMD kernel: the fast path `distill`, `distill_topk`, UDA
//! and the fused linear distillation share. Rows the kernel declines (non-finite logits) come back as
//! `None` for the caller's reference row.

use ndarray::ArrayView1;

use super::distill_rows::Scratch;
use crate::base::element::to_t;
use crate::base::{Element, Real};
use crate::kernels::Kernels;
use crate::kernels::distill::{KdGrad, KdRow, KdRowCfg};

/// Whether the fast path is on for this element type on this thread.
pub(crate) fn fast_path_for<T: Element>() -> bool {
    T::F32_COMPUTE && crate::base::path::fast_path()
}

/// Per-worker buffers of the fast path.
#[derive(Default)]
pub(crate) struct FastScratch {
    pub(crate) s: Vec<f32>,
    pub(crate) t: Vec<f32>,
    pub(crate) g: Vec<f32>,
    pub(crate) eb: Vec<f32>,
    /// For rows handed to the reference.
    pub(crate) reference: Scratch,
    pub(crate) g64: Vec<f64>,
}

/// A row as `f32`: the row itself for contiguous `f32` data, else converted into `buf`.
pub(crate) fn row_f32<'a, T: Element>(row: ArrayView1<'a, T>, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match row.to_slice() {
        Some(sl) => match T::as_f32(sl) {
            Some(f) => f,
            None => {
                buf.resize(sl.len(), 0.0);
                crate::kernels::convert::widen(sl, buf);
                buf
            }
        },
        None => {
            buf.clear();
            buf.extend(row.iter().map(|v| v.to_acc().f64() as f32));
            buf
        }
    }
}

/// Runs the kernel on one row, writing its gradient (scaled by `soft`/`ce`) into `out` when given.
/// `None` (nothing written) for the rows the kernel leaves to the reference.
pub(crate) fn fast_row<T: Element>(
    s: ArrayView1<'_, T>,
    t: ArrayView1<'_, T>,
    cfg: KdRowCfg,
    out: Option<(&mut [T], f64, f64)>,
    sc: &mut FastScratch,
) -> Option<KdRow> {
    let FastScratch { s: sb, t: tb, g, eb, .. } = sc;
    let (sr, tr) = (row_f32(s, sb), row_f32(t, tb));
    let k = Kernels::new();
    match out {
        // total variation and JSD work from the cache even for the loss alone
        None if cfg.div.needs_cache() => {
            eb.resize(sr.len(), 0.0);
            g.resize(sr.len(), 0.0);
            let grad = KdGrad { out: g.as_mut_slice(), eb: eb.as_mut_slice(), soft: 0.0, ce: 0.0 };
            k.kd_row_f32(sr, tr, cfg, Some(grad))
        }
        None => k.kd_row_f32(sr, tr, cfg, None),
        Some((o, soft, ce)) => {
            eb.resize(sr.len(), 0.0);
            let eb = eb.as_mut_slice();
            if let Some(direct) = T::as_f32_mut(o) {
                k.kd_row_f32(sr, tr, cfg, Some(KdGrad { out: direct, eb, soft, ce }))
            } else {
                g.resize(sr.len(), 0.0);
                let r = k.kd_row_f32(sr, tr, cfg, Some(KdGrad { out: g.as_mut_slice(), eb, soft, ce }))?;
                crate::kernels::convert::narrow(g, o);
                Some(r)
            }
        }
    }
}

/// Rounds an `f64` gradient row into the output row.
pub(crate) fn store_f64_row<T: Element>(g: &[f64], out: &mut [T]) {
    for (o, &x) in out.iter_mut().zip(g) {
        *o = to_t(x);
    }
}
