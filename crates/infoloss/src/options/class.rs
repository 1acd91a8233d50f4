//! The options of the class-index losses: cross-entropy, NLL and the cross-entropy extras.

use ndarray::ArrayView1;

use crate::Reduction;
use crate::options::options;

options! {
    /// Options of the cross-entropy functions; `Default` equals PyTorch's defaults
    /// (`weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.0`).
    ///
    /// ```
    /// use infoloss::{CrossEntropyOptions, Reduction, cross_entropy, ndarray::array};
    /// // ε = 1 ignores the target: the loss is the mean of −log_softmax over the classes
    /// let opts = CrossEntropyOptions { label_smoothing: 1.0, reduction: Reduction::Sum, ..Default::default() };
    /// let loss = cross_entropy(array![[0.0f64, 0.0]].view(), array![1i64].view(), &opts).unwrap();
    /// assert!((loss.scalar().unwrap() - 2f64.ln()).abs() < 1e-15);
    /// ```
    #[derive(Debug, Clone)]
    pub struct CrossEntropyOptions<'a, T> {
        /// Per-class weight `(C,)`.
        pub weight: Option<ArrayView1<'a, T>> = None,
        /// Target value to ignore (default −100). Probability targets accept only negative values.
        pub ignore_index: i64 = -100,
        /// Reduction (default mean).
        pub reduction: Reduction = Reduction::Mean,
        /// Label smoothing ε in [0, 1] (default 0).
        pub label_smoothing: f64 = 0.0,
    }
}

options! {
    /// Options of [`nll_loss`](crate::nll_loss); `Default` equals PyTorch's defaults
    /// (`weight=None, ignore_index=-100, reduction='mean'`).
    ///
    /// ```
    /// use infoloss::{NllOptions, Reduction, nll_loss, ndarray::array};
    /// let w = array![1.0f64, 3.0];
    /// // F.nll_loss(x, y, weight=w, ignore_index=0, reduction='sum')
    /// let opts = NllOptions { weight: Some(w.view()), ignore_index: 0, reduction: Reduction::Sum };
    /// let loss = nll_loss(array![[-1.0f64, -2.0], [-0.5, -0.25]].view(), array![1i64, 0].view(), &opts).unwrap();
    /// assert_eq!(loss.scalar(), Some(6.0));
    /// assert_eq!(NllOptions::<f32>::default().ignore_index, -100);
    /// ```
    #[derive(Debug, Clone)]
    pub struct NllOptions<'a, T> {
        /// Per-class weight `(C,)`.
        pub weight: Option<ArrayView1<'a, T>> = None,
        /// Target value to ignore (default −100; may lie outside `[0, C)`).
        pub ignore_index: i64 = -100,
        /// Reduction (default mean).
        pub reduction: Reduction = Reduction::Mean,
    }
}

options! {
    /// Options of [`cross_entropy_extras`](crate::cross_entropy_extras); `Default` equals PyTorch's
    /// cross-entropy defaults with every extra off (`weight=None, ignore_index=-100, reduction='mean',
    /// label_smoothing=0`, no z-loss, no softcap, no lse, no accuracy).
    ///
    /// ```
    /// use infoloss::ce_extras::{CrossEntropyExtrasOptions, cross_entropy_extras};
    /// use infoloss::ndarray::array;
    /// // PaLM's z-loss 1e-4·lse² and Gemma-2's final-logit softcap 30
    /// let opts = CrossEntropyExtrasOptions { lse_square_scale: 1e-4, softcap: Some(30.0), ..Default::default() };
    /// let out = cross_entropy_extras(array![[0.0f64, 0.0]].view(), array![1i64].view(), &opts).unwrap();
    /// // ln 2 + 1e-4·(ln 2)²
    /// assert!((out.loss.scalar().unwrap() - (2f64.ln() + 1e-4 * 2f64.ln().powi(2))).abs() < 1e-15);
    /// ```
    #[derive(Debug, Clone)]
    pub struct CrossEntropyExtrasOptions<'a, T> {
        /// Per-class weight `(C,)` of the cross-entropy (not of the z-loss).
        pub weight: Option<ArrayView1<'a, T>> = None,
        /// Target value to ignore (default −100).
        pub ignore_index: i64 = -100,
        /// `Mean` (default), `Sum` or `None`.
        pub reduction: Reduction = Reduction::Mean,
        /// Label smoothing ε in `[0, 1]` (default 0); does not affect the z-loss.
        pub label_smoothing: f64 = 0.0,
        /// z-loss scale `s` of `s·lse²` (default 0 = off); must be finite.
        pub lse_square_scale: f64 = 0.0,
        /// Logit softcap `c` of `c·tanh(x/c)` (default `None`); must be finite and > 0.
        pub softcap: Option<f64> = None,
        /// Return the per-row log-sum-exp of the (capped) logits.
        pub return_lse: bool = false,
        /// Return the token accuracy (argmax of the capped logits == target).
        pub return_token_accuracy: bool = false,
    }
}
