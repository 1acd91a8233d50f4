//! The `_with_grad` forms of the information measures: the value and the gradients for an upstream
//! gradient of 1 (every output element's gradient summed), in one call — what `value.sum().backward()`
//! gives in PyTorch. Each is its `_backward` with a 0-dimensional upstream gradient of 1, so values and
//! gradients are bit for bit those of the separate calls.

use ndarray::arr0;

use super::*;

/// A value with the gradients with respect to its two inputs.
pub type WithGrads<T> = (ArrayD<T>, ArrayD<T>, ArrayD<T>);

/// A value with the gradient with respect to `pk` and, when given, `qk`.
pub type WithGradAndOptional<T> = (ArrayD<T>, ArrayD<T>, Option<ArrayD<T>>);

/// `T` one, the upstream gradient of every output element.
fn one<T: Element>() -> ndarray::Array0<T> {
    arr0(T::from_acc(T::Acc::one()))
}

/// [`entr`] and its gradient `−(1 + ln x)` for an upstream gradient of 1.
///
/// PyTorch: `y = torch.special.entr(x); y.sum().backward()` gives `y` and `x.grad`.
///
/// ```
/// use infoloss::{entr_with_grad, ndarray::array};
/// let (y, g) = entr_with_grad(array![0.5f64, 1.0].view()).unwrap();
/// assert!((y[0] - 0.5 * 2f64.ln()).abs() < 1e-15 && y[1] == 0.0);
/// assert!((g[0] - (2f64.ln() - 1.0)).abs() < 1e-15 && g[1] == -1.0);
/// ```
pub fn entr_with_grad<T: Element, D: Dimension>(x: ArrayView<'_, T, D>) -> Result<(ArrayD<T>, ArrayD<T>)> {
    Ok((entr(x.view()), entr_backward(x, one::<T>().view())?))
}

/// [`rel_entr`] and its gradients with respect to `p` and `q` (each summed back to its own shape over
/// broadcast dimensions) for an upstream gradient of 1: `(value, ∂/∂p, ∂/∂q)`.
///
/// SciPy/PyTorch: `torch.special.xlogy`-based `rel_entr(p, q).sum().backward()`.
///
/// ```
/// use infoloss::{rel_entr_with_grad, ndarray::array};
/// let (v, dp, dq) = rel_entr_with_grad(array![1.0f64, 2.0].view(), array![2.0f64, 2.0].view()).unwrap();
/// assert!((v[0] - 0.5f64.ln()).abs() < 1e-15 && v[1] == 0.0);
/// assert!((dp[0] - (0.5f64.ln() + 1.0)).abs() < 1e-15 && (dq[0] + 0.5).abs() < 1e-15);
/// ```
pub fn rel_entr_with_grad<T: Element, D: Dimension, D2: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D2>,
) -> Result<WithGrads<T>> {
    let value = rel_entr(p.view(), q.view())?;
    let (dp, dq) = rel_entr_backward(p, q, one::<T>().view())?;
    Ok((value, dp, dq))
}

/// [`self_information`] and its gradient `−1/(p·ln b)` for an upstream gradient of 1.
///
/// PyTorch: `y = -torch.log(p) / math.log(b); y.sum().backward()`.
///
/// ```
/// use infoloss::{self_information_with_grad, ndarray::array};
/// let (bits, g) = self_information_with_grad(array![0.25f64].view(), Some(2.0)).unwrap();
/// assert_eq!(bits[0], 2.0);
/// assert!((g[0] + 4.0 / 2f64.ln()).abs() < 1e-14);
/// ```
pub fn self_information_with_grad<T: Element, D: Dimension>(
    p: ArrayView<'_, T, D>,
    base: Option<f64>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    Ok((self_information(p.view(), base)?, self_information_backward(p, base, one::<T>().view())?))
}

/// [`entropy`] and its gradients for an upstream gradient of 1: `(value, ∂/∂pk, ∂/∂qk)` (`∂/∂qk` only
/// with `qk`), through the normalization `p̂ = pk/Σpk`.
///
/// SciPy has no gradient; PyTorch: the same formula on tensors, then `.sum().backward()`.
///
/// ```
/// use infoloss::{EntropyOptions, entropy_with_grad, ndarray::array};
/// let (s, dp, dq) = entropy_with_grad(array![1.0f64, 3.0].view(), None, &EntropyOptions::default()).unwrap();
/// assert!((s[[]] - 0.5623351446188083).abs() < 1e-15);
/// assert!((dp[0] - (-(0.25f64.ln()) - s[[]]) / 4.0).abs() < 1e-15);
/// assert!(dq.is_none());
/// ```
pub fn entropy_with_grad<T: Element, D: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: Option<ArrayView<'_, T, D>>,
    opts: &EntropyOptions,
) -> Result<WithGradAndOptional<T>> {
    let value = entropy(pk.view(), qk.as_ref().map(|q| q.view()), opts)?;
    let (dp, dq) = entropy_backward(pk, qk, opts, one::<T>().view())?;
    Ok((value, dp, dq))
}

/// `f_with_grad` of a measure of two distributions `p` and `q` with options: the value of `f` and the
/// gradients of `f_backward` for an upstream gradient of 1.
macro_rules! with_grads {
    ($(#[$m:meta])* fn $with_grad:ident($p:ident, $q:ident, opts: &$opts:ty) = $f:ident, $backward:ident;) => {
        $(#[$m])*
        pub fn $with_grad<T: Element, D: Dimension>(
            $p: ArrayView<'_, T, D>,
            $q: ArrayView<'_, T, D>,
            opts: &$opts,
        ) -> Result<WithGrads<T>> {
            let value = $f($p.view(), $q.view(), opts)?;
            let (dp, dq) = $backward($p, $q, opts, one::<T>().view())?;
            Ok((value, dp, dq))
        }
    };
}

with_grads! {
    /// [`shannon_cross_entropy`] and its gradients `(value, ∂/∂pk, ∂/∂qk)` for an upstream gradient of 1.
    ///
    /// PyTorch: the same formula on tensors, then `.sum().backward()`.
    ///
    /// ```
    /// use infoloss::{EntropyOptions, shannon_cross_entropy_with_grad, ndarray::array};
    /// let p = array![0.0f64, 0.0, 1.0];
    /// let q = array![0.3f64, 0.3, 0.4];
    /// let (h, dp, dq) = shannon_cross_entropy_with_grad(p.view(), q.view(), &EntropyOptions::default()).unwrap();
    /// assert!((h[[]] + 0.4f64.ln()).abs() < 1e-15);
    /// assert_eq!((dp.len(), dq.len()), (3, 3));
    /// ```
    fn shannon_cross_entropy_with_grad(pk, qk, opts: &EntropyOptions) = shannon_cross_entropy, shannon_cross_entropy_backward;
}

with_grads! {
    /// [`jensenshannon`] and its gradients `(distance, ∂/∂p, ∂/∂q)` for an upstream gradient of 1.
    ///
    /// SciPy: `scipy.spatial.distance.jensenshannon` (no gradient); PyTorch: the same formula, then
    /// `.sum().backward()`.
    ///
    /// ```
    /// use infoloss::{JensenShannonOptions, jensenshannon_with_grad, ndarray::array};
    /// let p = array![1.0f64, 0.0];
    /// let q = array![0.5f64, 0.5];
    /// let (d, dp, dq) = jensenshannon_with_grad(p.view(), q.view(), &JensenShannonOptions::default()).unwrap();
    /// let (d2, _, _) = jensenshannon_with_grad(q.view(), p.view(), &JensenShannonOptions::default()).unwrap();
    /// assert!((d[[]] - d2[[]]).abs() < 1e-15);
    /// assert_eq!((dp.len(), dq.len()), (2, 2));
    /// ```
    fn jensenshannon_with_grad(p, q, opts: &JensenShannonOptions) = jensenshannon, jensenshannon_backward;
}
