//! Row engines shared by several losses: the straightforward (reference) rows the losses' reference paths
//! are built from — the oracle of the SIMD kernels — and the per-row drivers that more than one loss runs.
//! Rows import the ground floor, the options and the kernels; losses import rows, never each other's
//! internals.

pub(crate) mod ce_rows;
pub(crate) mod distill_fast;
pub(crate) mod distill_rows;
pub(crate) mod elementwise_rows;
pub(crate) mod softmax_rows;
