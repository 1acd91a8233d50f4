//! The options of the SciPy-style information measures.

use crate::options::options;

options! {
    /// Options of [`entropy`](crate::entropy) and [`shannon_cross_entropy`](crate::shannon_cross_entropy):
    /// `scipy.stats.entropy(pk, qk, base, axis)`; `Default` equals SciPy's (`base=None, axis=0`).
    ///
    /// ```
    /// use infoloss::EntropyOptions;
    /// let o = EntropyOptions { base: Some(2.0), ..Default::default() };
    /// assert_eq!(o.axis, 0);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct EntropyOptions {
        /// Logarithm base; `None` = natural log (nats). Must be positive and not 1 (NaN is rejected too).
        pub base: Option<f64> = None,
        /// Axis along which the distributions lie (default 0, as SciPy); negative counts from the end.
        pub axis: isize = 0,
    }
}

options! {
    /// Options of [`jensenshannon`](crate::jensenshannon):
    /// `scipy.spatial.distance.jensenshannon(p, q, base, axis, keepdims)`; `Default` equals SciPy's
    /// (`base=None, axis=0, keepdims=False`).
    ///
    /// ```
    /// use infoloss::JensenShannonOptions;
    /// let o = JensenShannonOptions { keepdims: true, ..Default::default() };
    /// assert_eq!((o.base, o.axis), (None, 0));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct JensenShannonOptions {
        /// Logarithm base; `None` = natural log. Must be greater than 1 (see the [`info`](crate::losses::info) module docs).
        pub base: Option<f64> = None,
        /// Axis along which the distributions lie (default 0); negative counts from the end.
        pub axis: isize = 0,
        /// Keep the reduced axis with size 1.
        pub keepdims: bool = false,
    }
}
