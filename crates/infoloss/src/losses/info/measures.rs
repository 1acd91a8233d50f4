//! The measures along an axis: `entropy` (and relative entropy), `shannon_cross_entropy` and
//! `jensenshannon`, with their gradients.

use super::*;

/// `scipy.stats.entropy(pk, qk=None, base=None, axis=0)`.
///
/// Along `axis`, `p̂ = pk / Σpk` (and `q̂ = qk / Σqk`); then the Shannon entropy
/// `S = Σ entr(p̂) = −Σ p̂·ln p̂`, or with `qk` the relative entropy (KL divergence)
/// `D(p̂‖q̂) = Σ rel_entr(p̂, q̂) = Σ p̂·ln(p̂/q̂)`; divided by `ln(base)` when a base is given. The
/// output has the broadcast shape with `axis` removed (0-dimensional for 1-D input).
///
/// As SciPy: `pk` and `qk` broadcast by NumPy rules (including along `axis`) **before** normalizing; a
/// 0-dimensional input is one distribution of one element (`entropy(5) = 0`); a zero-length axis gives 0;
/// a row summing to 0 gives NaN; negative entries give `−inf` (entropy) or `+inf` (relative);
/// `q̂ = 0 < p̂` gives `+inf`; NaN or inf entries give NaN.
///
/// Errors: [`Error::InvalidOption`] for `axis` out of range or an invalid `base` (NaN, `≤ 0`, or 1 —
/// SciPy divides by `ln 1 = 0` and returns inf/NaN; we reject it); [`Error::ShapeMismatch`] naming both
/// shapes when `pk` and `qk` do not broadcast.
///
/// Gradient: [`entropy_backward`].
///
/// ```
/// use infoloss::{EntropyOptions, entropy, ndarray::array};
/// let bits = EntropyOptions { base: Some(2.0), ..Default::default() };
/// assert_eq!(entropy(array![0.5f64, 0.5].view(), None, &bits).unwrap()[[]], 1.0);
/// // Unnormalized input is normalized first (scipy: entropy([1, 2, 3]) = 1.0114042647073518).
/// let h = entropy(array![1.0f64, 2.0, 3.0].view(), None, &Default::default()).unwrap();
/// assert!((h[[]] - 1.0114042647073518).abs() < 1e-15);
/// // Relative entropy of a fair coin to a biased one, in bits (scipy: 0.7369655941662062).
/// let d = entropy(array![0.5f64, 0.5].view(), Some(array![0.9, 0.1].view()), &bits).unwrap();
/// assert!((d[[]] - 0.7369655941662062).abs() < 1e-15);
/// ```
pub fn entropy<T: Element, D: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: Option<ArrayView<'_, T, D>>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    let kind = if qk.is_some() { Kind::Relative } else { Kind::Entropy };
    entropy_family("entropy", kind, pk.into_dyn(), qk.map(|q| q.into_dyn()), opts)
}

/// Gradients of [`entropy`] wrt pk and (if given) qk, through the normalization.
///
/// With respect to the normalized `p̂` the partials are `entr'(p̂) = −(1 + ln p̂)` (PyTorch's `entr`
/// gradient: `+inf` at 0) or, with `qk`, [`rel_entr_backward`]'s `ln(p̂/q̂) + 1` and `−p̂/q̂`; they are
/// scaled by `g / ln(base)` and carried through `p̂ = pk/Σpk` as described in the module docs, which
/// gives, for a row with a finite value,
///
/// - entropy: `dpk_j = g·(−ln p̂_j − S) / (Σpk·ln base)` (`+inf` where `p̂_j = 0`),
/// - relative: `dpk_j = g·(ln(p̂_j/q̂_j) − D) / (Σpk·ln base)` (`−inf` where `p̂_j = 0 < q̂_j`, NaN
///   where both are 0) and `dqk_j = g·(1 − p̂_j/q̂_j) / (Σqk·ln base)`.
///
/// Rows whose value is not finite get NaN. Gradients are summed over broadcast dimensions back to the
/// shapes of `pk` and `qk`. `grad_output` has the output's shape or is 0-dimensional. The second
/// result is `Some` exactly when `qk` is given.
///
/// ```
/// use infoloss::{EntropyOptions, entropy_backward, ndarray::{arr0, array}};
/// // dS/dpk for pk = [1, 3]: p̂ = [0.25, 0.75], S = 0.5623351446188083.
/// let (dp, dq) = entropy_backward(array![1.0f64, 3.0].view(), None, &EntropyOptions::default(), arr0(1.0).view())
///     .unwrap();
/// let s = 0.5623351446188083;
/// assert!((dp[0] - (-(0.25f64.ln()) - s) / 4.0).abs() < 1e-15);
/// assert!((dp[1] - (-(0.75f64.ln()) - s) / 4.0).abs() < 1e-15);
/// assert!(dq.is_none());
/// ```
pub fn entropy_backward<T: Element, D: Dimension, D2: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: Option<ArrayView<'_, T, D>>,
    opts: &EntropyOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, Option<ArrayD<T>>)> {
    let kind = if qk.is_some() { Kind::Relative } else { Kind::Entropy };
    entropy_family_backward(
        "entropy_backward",
        kind,
        pk.into_dyn(),
        qk.map(|q| q.into_dyn()),
        opts,
        grad_output.into_dyn(),
    )
}

/// Cross-entropy of two distributions, `H(p, q) = −Σ p̂·log q̂` after normalizing like [`entropy`].
///
/// Normalization, broadcasting, `axis`, `base`, output shape and errors are those of [`entropy`]
/// with `qk`. Each term is `−p̂·ln q̂` where `p̂ > 0, q̂ > 0`, and otherwise
/// `entr(p̂) + rel_entr(p̂, q̂)` (0 where `p̂ = 0, q̂ ≥ 0`; `+inf` where `q̂ = 0 < p̂`; NaN for `p̂ < 0`),
/// so that `H(p, q) = entropy(p) + entropy(p, q)` holds term by term. SciPy computes it as
/// `entropy(pk, base=b) + entropy(pk, qk, base=b)` (see the `scipy.stats.entropy` docs); PyTorch's
/// `F.cross_entropy` with probability targets computes the same sum from logits.
///
/// Gradient: [`shannon_cross_entropy_backward`].
///
/// ```
/// use infoloss::{EntropyOptions, shannon_cross_entropy, ndarray::array};
/// let h = shannon_cross_entropy(array![0.0f64, 0.0, 1.0].view(), array![0.3, 0.3, 0.4].view(), &EntropyOptions::default())
///     .unwrap();
/// assert!((h[[]] - 0.9162907318741551).abs() < 1e-15); // −ln 0.4
/// ```
pub fn shannon_cross_entropy<T: Element, D: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: ArrayView<'_, T, D>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    entropy_family("shannon_cross_entropy", Kind::Cross, pk.into_dyn(), Some(qk.into_dyn()), opts)
}

/// Gradients of [`shannon_cross_entropy`] wrt pk and qk, through the normalization.
///
/// With respect to the normalized distributions the partials are `−ln q̂` and `−p̂/q̂` (0 where
/// `p̂ = 0`), scaled by `g / ln(base)`; through the normalization (module docs) this is, for a row with
/// a finite value `H`, `dpk_j = g·(−ln q̂_j − H) / (Σpk·ln base)` and
/// `dqk_j = g·(1 − p̂_j/q̂_j) / (Σqk·ln base)`. Rows whose value is not finite get NaN. Gradients are
/// summed over broadcast dimensions back to each input's shape.
///
/// ```
/// use infoloss::{EntropyOptions, info::shannon_cross_entropy_backward, ndarray::{arr0, array}};
/// let (dp, dq) = shannon_cross_entropy_backward(
///     array![1.0f64, 1.0].view(),
///     array![1.0f64, 3.0].view(),
///     &EntropyOptions::default(),
///     arr0(1.0).view(),
/// )
/// .unwrap();
/// // H = −(ln 0.25 + ln 0.75)/2; dq = (1 − p̂/q̂)/Σq = [(1 − 2)/4, (1 − 2/3)/4].
/// assert!((dq[0] + 0.25).abs() < 1e-15 && (dq[1] - 1.0 / 12.0).abs() < 1e-15);
/// let h = -(0.25f64.ln() + 0.75f64.ln()) / 2.0;
/// assert!((dp[0] - (-(0.25f64.ln()) - h) / 2.0).abs() < 1e-15);
/// ```
pub fn shannon_cross_entropy_backward<T: Element, D: Dimension, D2: Dimension>(
    pk: ArrayView<'_, T, D>,
    qk: ArrayView<'_, T, D>,
    opts: &EntropyOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    const OP: &str = "shannon_cross_entropy_backward";
    let (dp, dq) = entropy_family_backward(
        OP,
        Kind::Cross,
        pk.into_dyn(),
        Some(qk.into_dyn()),
        opts,
        grad_output.into_dyn(),
    )?;
    let dq = dq.ok_or_else(|| Error::invalid_option(OP, "qk", "None", "internal: missing qk gradient"))?;
    Ok((dp, dq))
}

/// `scipy.spatial.distance.jensenshannon(p, q, base=None, axis=0, keepdims=False)`: the JS **distance**.
///
/// As SciPy: `p̂ = p/Σp` and `q̂ = q/Σq` along `axis`, **each in its own shape** (before broadcasting),
/// `m = (p̂ + q̂)/2`, `L = Σ rel_entr(p̂, m)`, `R = Σ rel_entr(q̂, m)` along `axis` of the broadcast
/// shape, and `JS = sqrt((L + R) / ln(base) / 2)`. Its square is the Jensen–Shannon divergence, in
/// `[0, ln 2]` nats (`[0, 1]` with base 2). The output has the broadcast shape with `axis` removed,
/// or kept with size 1 when `keepdims` (a 0-dimensional result stays 0-dimensional, as NumPy).
///
/// SciPy's quirks kept: a row summing to 0 gives NaN; negative entries give `+inf`; because `L + R` is
/// rounded, two almost equal distributions can give a tiny negative divergence and then
/// `sqrt` gives **NaN** (SciPy does the same: about 7% of pairs differing by one ulp); a zero-length
/// axis gives 0. The axis is resolved against each input's own rank and against the broadcast rank
/// (SciPy normalizes before broadcasting).
///
/// Errors: [`Error::InvalidOption`] for `axis` out of range for `p`, `q` or their broadcast, or `base`
/// NaN or `≤ 1` (see the module docs); [`Error::ShapeMismatch`] when `p` and `q` do not broadcast.
///
/// Gradient: [`jensenshannon_backward`].
///
/// ```
/// use infoloss::{JensenShannonOptions, jensenshannon, ndarray::array};
/// let bits = JensenShannonOptions { base: Some(2.0), ..Default::default() };
/// let js = jensenshannon(array![1.0f64, 0.0, 0.0].view(), array![0.0, 1.0, 0.0].view(), &bits).unwrap();
/// assert_eq!(js[[]], 1.0);
/// // scipy: jensenshannon([1.0, 0.0], [0.5, 0.5]) = 0.464501404022459
/// let js = jensenshannon(array![1.0f64, 0.0].view(), array![0.5, 0.5].view(), &Default::default()).unwrap();
/// assert!((js[[]] - 0.464501404022459).abs() < 1e-15);
/// ```
pub fn jensenshannon<T: Element, D: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D>,
    opts: &JensenShannonOptions,
) -> Result<ArrayD<T>> {
    jensenshannon_dyn(p.into_dyn(), q.into_dyn(), opts)
}

/// [`jensenshannon`] of dynamic-rank views.
#[inline(never)]
pub(crate) fn jensenshannon_dyn<T: Element>(
    p: ArrayViewD<'_, T>,
    q: ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
) -> Result<ArrayD<T>> {
    if let Some(out) = fast::js("jensenshannon", &p, &q, opts)? {
        return Ok(out);
    }
    let pr = js_prepare::<T>("jensenshannon", p, q, opts)?;
    let l = &pr.layout;
    if pr.pb.is_empty() {
        // Every row is empty (or there is none): one value for all, without visiting them.
        let (lsum, rsum) = js_row::<T::Acc>(&[], &[], &mut Vec::new());
        let v = T::from_acc(T::Acc::c(js_value(lsum, rsum, pr.ln_b)));
        return try_full("jensenshannon", "output", &pr.out_shape, v);
    }
    let mut out = try_vec("jensenshannon", "output", l.rows)?;
    let (mut bp, mut bq, mut bm) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..l.rows {
        l.gather(&pr.pb, r, &mut bp);
        l.gather(&pr.qb, r, &mut bq);
        let (lsum, rsum) = js_row(&bp, &bq, &mut bm);
        out.push(T::from_acc(T::Acc::c(js_value(lsum, rsum, pr.ln_b))));
    }
    to_array("jensenshannon", &pr.out_shape, out)
}

/// Gradients of [`jensenshannon`] wrt p and q.
///
/// With `m = (p̂+q̂)/2`, `∂(L+R)/∂p̂_j = ln(p̂_j/m_j)` (the `m`-terms cancel), `−inf` where
/// `p̂_j = 0 < q̂_j` (the one-sided derivative) and `ln 2` where `p̂_j = q̂_j = 0` (along that coordinate
/// `L + R = p̂_j·ln 2`). The chain through the square root multiplies by `g / (4·JS·ln(base))`; the
/// result is summed over broadcast dimensions back to each input's shape and carried through the
/// normalization as described in the module docs; without broadcasting this is
/// `dp_j = g·(ln(p̂_j/m_j) − L) / (4·JS·ln(base)·Σp)`.
///
/// At `JS = 0` (`p̂ = q̂`) the distance is not differentiable (it behaves like a norm of `p̂ − q̂`); the
/// gradient there is **0**, the subgradient PyTorch's `torch.linalg.vector_norm` returns at 0
/// (autograd of the literal `sqrt` formula would give NaN). Rows whose value is not finite (including
/// SciPy's NaN from a rounded negative divergence) get NaN.
///
/// ```
/// use infoloss::{JensenShannonOptions, jensenshannon_backward, ndarray::{arr0, array}};
/// let o = JensenShannonOptions::default();
/// // Equal distributions: JS = 0, gradient 0.
/// let (dp, dq) = jensenshannon_backward(array![1.0f64, 3.0].view(), array![2.0, 6.0].view(), &o, arr0(1.0).view())
///     .unwrap();
/// assert_eq!((dp[0], dq[1]), (0.0, 0.0));
/// // p = [1, 0], q = [0, 1]: JS = sqrt(ln 2), dp = g·(ln 2 − ln 2)/(4·JS) = 0 for the first element,
/// // −inf for the second (moving mass there is infinitely steep).
/// let (dp, _) = jensenshannon_backward(array![1.0f64, 0.0].view(), array![0.0, 1.0].view(), &o, arr0(1.0).view())
///     .unwrap();
/// assert_eq!(dp[0], 0.0);
/// assert_eq!(dp[1], f64::NEG_INFINITY);
/// ```
pub fn jensenshannon_backward<T: Element, D: Dimension, D2: Dimension>(
    p: ArrayView<'_, T, D>,
    q: ArrayView<'_, T, D>,
    opts: &JensenShannonOptions,
    grad_output: ArrayView<'_, T, D2>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    jensenshannon_backward_dyn(p.into_dyn(), q.into_dyn(), opts, grad_output.into_dyn())
}

/// [`jensenshannon_backward`] of dynamic-rank views.
#[inline(never)]
pub(crate) fn jensenshannon_backward_dyn<T: Element>(
    p: ArrayViewD<'_, T>,
    q: ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
    grad_output: ArrayViewD<'_, T>,
) -> Result<(ArrayD<T>, ArrayD<T>)> {
    const OP: &str = "jensenshannon_backward";
    if let Some(out) = fast::js_backward(OP, &p, &q, opts, &grad_output)? {
        return Ok(out);
    }
    let pr = js_prepare::<T>(OP, p, q, opts)?;
    if pr.pb.is_empty() {
        // No element receives a gradient: zeros of each input's shape, without visiting the rows.
        grad_into(OP, &grad_output, &pr.out_shape)?;
        let dp = pr.p.backward::<T>(OP, &pr.shape, Vec::new())?;
        let dq = pr.q.backward::<T>(OP, &pr.shape, Vec::new())?;
        return Ok((dp, dq));
    }
    let g = row_grads::<T>(OP, &grad_output, &pr.out_shape, pr.layout.rows)?;
    let l = &pr.layout;
    let n = pr.pb.len();
    let mut gp = zeros_f64(OP, n)?;
    let mut gq = zeros_f64(OP, n)?;
    let (mut bp, mut bq, mut bm, mut rp, mut rq) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, &g) in g.iter().enumerate() {
        l.gather(&pr.pb, r, &mut bp);
        l.gather(&pr.qb, r, &mut bq);
        let (lsum, rsum) = js_row(&bp, &bq, &mut bm);
        let js = js_value(lsum, rsum, pr.ln_b);
        js_row_backward(&bp, &bq, &bm, js, pr.ln_b, g, &mut rp, &mut rq);
        l.scatter(&rp, r, &mut gp);
        l.scatter(&rq, r, &mut gq);
    }
    let dp = pr.p.backward::<T>(OP, &pr.shape, gp)?;
    let dq = pr.q.backward::<T>(OP, &pr.shape, gq)?;
    Ok((dp, dq))
}
