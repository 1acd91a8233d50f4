//! The options of the fused linear losses: a loss's options and the chunk size.

use crate::options::{CrossEntropyExtrasOptions, DistillOptions, options};

options! {
    /// Options of [`linear_cross_entropy`](crate::linear_cross_entropy): every cross-entropy option of
    /// [`CrossEntropyExtrasOptions`] (class weight, `ignore_index`, label smoothing, reduction, z-loss,
    /// softcap, lse, token accuracy) and the chunk size. `Default`: PyTorch's cross-entropy defaults and an
    /// automatic chunk size.
    ///
    /// ```
    /// use infoloss::linear::LinearCrossEntropyOptions;
    /// let o = LinearCrossEntropyOptions::<f32>::default();
    /// assert_eq!((o.chunk_size, o.ce.ignore_index), (None, -100));
    /// ```
    #[derive(Debug, Clone)]
    pub struct LinearCrossEntropyOptions<'a, T> {
        /// The cross-entropy options. `ce.weight` is the per-class weight `(V,)` of the loss, not the
        /// linear layer's weight.
        pub ce: CrossEntropyExtrasOptions<'a, T> = CrossEntropyExtrasOptions::default(),
        /// Rows per chunk (≥ 1); `None` = automatic (see
        /// [`linear_cross_entropy_workspace`](crate::linear_cross_entropy_workspace)).
        pub chunk_size: Option<usize> = None,
    }
}

options! {
    /// Options of [`linear_distill`](crate::linear_distill): the [`DistillOptions`] and the chunk size.
    ///
    /// ```
    /// use infoloss::linear::LinearDistillOptions;
    /// use infoloss::distill::DistillOptions;
    /// let o = LinearDistillOptions { chunk_size: Some(128), ..Default::default() };
    /// assert_eq!(o.distill, DistillOptions::default());
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct LinearDistillOptions {
        /// Temperature, divergence, T² scaling, hard-label mix, `ignore_index`, reduction, normalizer.
        pub distill: DistillOptions = DistillOptions::default(),
        /// Rows per chunk (≥ 1); `None` = automatic (see [`linear_distill_workspace`](crate::linear_distill_workspace)).
        pub chunk_size: Option<usize> = None,
    }
}
