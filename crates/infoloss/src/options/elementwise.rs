//! The options of the elementwise losses: KL divergence and the two binary cross-entropies.

use ndarray::ArrayViewD;

use crate::Reduction;
use crate::options::options;

options! {
    /// Options of [`kl_div`](crate::kl_div()); `Default` equals PyTorch's defaults (`reduction='mean'`,
    /// `log_target=False`).
    ///
    /// ```
    /// use infoloss::{KlDivOptions, Reduction};
    /// let o = KlDivOptions { reduction: Reduction::BatchMean, ..Default::default() };
    /// assert!(!o.log_target);
    /// assert_eq!(KlDivOptions::default().reduction, Reduction::Mean);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct KlDivOptions {
        /// Reduction; `BatchMean` is the mathematically correct KL.
        pub reduction: Reduction = Reduction::Mean,
        /// Whether `target` holds log-probabilities.
        pub log_target: bool = false,
    }
}

options! {
    /// Options of [`binary_cross_entropy`](crate::binary_cross_entropy); `Default` equals PyTorch's
    /// defaults (`weight=None, reduction='mean'`).
    ///
    /// ```
    /// use infoloss::{BceOptions, Reduction};
    /// use ndarray::array;
    /// let w = array![1.0f32, 2.0].into_dyn();
    /// let o = BceOptions { weight: Some(w.view()), reduction: Reduction::Sum };
    /// assert_eq!(o.weight.unwrap()[1], 2.0);
    /// assert_eq!(BceOptions::<f32>::default().reduction, Reduction::Mean);
    /// ```
    #[derive(Debug, Clone)]
    pub struct BceOptions<'a, T> {
        /// Per-element weight, broadcast into the input shape.
        pub weight: Option<ArrayViewD<'a, T>> = None,
        /// Reduction (default mean).
        pub reduction: Reduction = Reduction::Mean,
    }
}

options! {
    /// Options of [`binary_cross_entropy_with_logits`](crate::binary_cross_entropy_with_logits);
    /// `Default` equals PyTorch's defaults (`weight=None, pos_weight=None, reduction='mean'`).
    ///
    /// ```
    /// use infoloss::{BceWithLogitsOptions, Reduction};
    /// use ndarray::array;
    /// let pw = array![3.0f32, 1.0].into_dyn(); // acts on the last dimension
    /// let o = BceWithLogitsOptions { pos_weight: Some(pw.view()), ..Default::default() };
    /// assert_eq!(o.pos_weight.unwrap().shape(), &[2]);
    /// assert_eq!(o.reduction, Reduction::Mean);
    /// ```
    #[derive(Debug, Clone)]
    pub struct BceWithLogitsOptions<'a, T> {
        /// Per-element weight, broadcast into the input shape.
        pub weight: Option<ArrayViewD<'a, T>> = None,
        /// Weight of positive examples, broadcast into the input shape (a `(C,)` array acts on the last
        /// dimension).
        pub pos_weight: Option<ArrayViewD<'a, T>> = None,
        /// Reduction (default mean).
        pub reduction: Reduction = Reduction::Mean,
    }
}
