//! Finite-difference checks (f64, central differences) of every backward in `info.rs`, over every
//! option, and forward values checked against SciPy 1.17.1 / torch 2.15 autograd.
//!
//! Reference values come from the project venv, e.g.
//!
//! ```python
//! import numpy as np
//! from scipy.stats import entropy
//! from scipy.spatial.distance import jensenshannon
//! from scipy.special import entr, rel_entr
//! A = np.array([[1., 2., 3.], [4., 5., 0.5]]); B = np.array([[2., 1., 1.], [1., 3., 2.]])
//! entropy([1, 2, 3])                      # 1.0114042647073518
//! entropy([1, 2, 3], base=10)             # 0.4392472911358187
//! entropy([1, 2, 3], base=0.5)            # -1.459147917027245
//! entropy(A, B, axis=1)                   # [0.25936556631921465, 0.3200632898583567]
//! entropy(A, B, axis=0)                   # [0.4595804290179329, 0.003301709200269315, 0.5894749445854228]
//! entropy(A, B, axis=-1, base=2)          # [0.37418541630608854, 0.46175372104925805]
//! entropy(A, axis=1)                      # [1.0114042647073518, 0.8569977547780645]
//! entropy(A, [1, 2, 3], axis=1)           # [0.0, 0.5121257094885399]
//! entropy(A, [[1], [2]], axis=1)          # [0.08720802396075801, 0.24161453389004522]
//! entropy(A, axis=1) + entropy(A, B, axis=1)   # [1.2707698310265665, 1.1770610446364211]
//! a = np.arange(1, 13).reshape(3, 4); b = a + 12
//! jensenshannon(a, b, axis=0)  # [0.19542878115393794, 0.14476970910187165, 0.11383771437206669, 0.09276357967788262]
//! jensenshannon(a, b, axis=1)  # [0.1402339353467297, 0.0399106285454718, 0.020181534745608052]
//! jensenshannon(a, b, axis=1, keepdims=True).shape   # (3, 1)
//! jensenshannon(a, b, axis=1, base=3)  # [0.1337922309087929, 0.03807731714059288, 0.019254487511187048]
//! jensenshannon([1, 2, 3], [[1, 2, 3], [4, 5, 6]], axis=0)   # [0.33703827725418223, 0.1906709717332218, 0.11984403015647774]
//! jensenshannon([1, 2, 3], [[1, 2, 3], [4, 5, 6]], axis=-1)  # [0.0, 0.09276357967788262]
//! jensenshannon([1., 0, 0], [0, 1., 0], 2.0)                 # 1.0
//! entr(np.array([0.5, 2.0, 1e-300]))   # [0.34657359027997264, -1.3862943611198906, 6.907755278982137e-298]
//! rel_entr(np.array([[1., 2.], [4., 0.]]), np.array([2., 3.]))
//! #   [[-0.6931471805599453, -0.8109302162163288], [2.772588722239781, 0.0]]
//! entropy([]) == 0.0; entropy(np.zeros((0, 3))) -> [0, 0, 0]; entropy(np.zeros((3, 0)), axis=0) -> []
//! entropy([0, 0, 0]) -> nan; entropy([1, -1, 0.5]) -> -inf; entropy([1, 2, 3], [1, 0, 1]) -> inf
//! entropy([1, 2, 3], [0, 0, 0]) -> nan; entropy([1, np.inf, 0]) -> nan; entropy(5.0) -> 0.0
//! entropy([1, 2, 3], base=0) -> ValueError; entropy([1, 2, 3], base=1) -> inf (we reject base 1)
//! entropy([1, 2, 3], [1, 2]) -> ValueError "Array shapes are incompatible for broadcasting."
//! jensenshannon([0, 0, 0], [1, 2, 3]) -> nan; jensenshannon([1, -2, 3], [1, 2, 4]) -> inf
//! jensenshannon([], []) -> 0.0; jensenshannon(np.array(5.0), np.array(2.0), keepdims=True) -> 0.0 (0-d)
//! jensenshannon([1, 2, 3], [1, 2, 4], base=0.5) -> nan (we reject base < 1)
//! ```

use infoloss::info::{self_information_backward, shannon_cross_entropy_backward};
use infoloss::ndarray::{Array, ArrayD, IxDyn, arr0, array};
use infoloss::{
    EntropyOptions, Error, JensenShannonOptions, entr, entr_backward, entropy, entropy_backward,
    jensenshannon, jensenshannon_backward, rel_entr, rel_entr_backward, self_information,
    shannon_cross_entropy,
};

const LN2: f64 = std::f64::consts::LN_2;

// ------------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------------

fn close(got: f64, want: f64, rtol: f64, atol: f64, what: &str) {
    assert!(
        (got - want).abs() <= atol + rtol * want.abs(),
        "{what}: got {got:.17e}, want {want:.17e} (rtol {rtol:e}, atol {atol:e})"
    );
}

fn all_close(got: &ArrayD<f64>, want: &[f64], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length of {:?}", got.shape());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        close(g, w, rtol, 1e-15, &format!("{what}[{i}]"));
    }
}

/// A deterministic upstream gradient of `shape` with varied signs (so sums over rows do not hide errors).
fn upstream(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    Array::from_shape_vec(
        IxDyn(shape),
        (0..n).map(|i| 0.7 - 0.45 * i as f64 + 0.1 * (i * i) as f64).collect(),
    )
    .unwrap()
}

/// Checks `analytic` = ∂/∂x Σ g·f(x) by central differences, element by element.
fn check_fd(what: &str, x: &ArrayD<f64>, analytic: &ArrayD<f64>, f: impl Fn(&ArrayD<f64>) -> f64) {
    assert_eq!(x.shape(), analytic.shape(), "{what}: gradient shape");
    let n = x.len();
    for k in 0..n {
        let xk = *x.iter().nth(k).unwrap();
        let h = 1e-6 * xk.abs().max(1e-2);
        let mut plus = x.clone();
        let mut minus = x.clone();
        *plus.iter_mut().nth(k).unwrap() += h;
        *minus.iter_mut().nth(k).unwrap() -= h;
        let fd = (f(&plus) - f(&minus)) / (2.0 * h);
        let a = *analytic.iter().nth(k).unwrap();
        close(a, fd, 1e-6, 1e-8, &format!("{what}: element {k}"));
    }
}

fn dot(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn d(a: ArrayD<f64>) -> ArrayD<f64> {
    a
}

fn arr(shape: &[usize], v: &[f64]) -> ArrayD<f64> {
    Array::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

fn mat_a() -> ArrayD<f64> {
    arr(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 0.5])
}
fn mat_b() -> ArrayD<f64> {
    arr(&[2, 3], &[2.0, 1.0, 1.0, 1.0, 3.0, 2.0])
}
fn js_a() -> ArrayD<f64> {
    arr(&[3, 4], &(1..=12).map(f64::from).collect::<Vec<_>>())
}
fn js_b() -> ArrayD<f64> {
    arr(&[3, 4], &(13..=24).map(f64::from).collect::<Vec<_>>())
}

fn eopts(base: Option<f64>, axis: isize) -> EntropyOptions {
    EntropyOptions { base, axis }
}

// ------------------------------------------------------------------------------------------------
// Forward values against SciPy
// ------------------------------------------------------------------------------------------------

#[test]
fn entropy_values_match_scipy() {
    let e = |p: ArrayD<f64>, q: Option<ArrayD<f64>>, o: EntropyOptions| {
        entropy(p.view(), q.as_ref().map(|q| q.view()), &o).unwrap()
    };
    assert_eq!(e(d(array![0.5, 0.5].into_dyn()), None, eopts(Some(2.0), 0))[[]], 1.0);
    close(
        e(d(array![1.0, 2.0, 3.0].into_dyn()), None, eopts(None, 0))[[]],
        1.0114042647073518,
        1e-15,
        0.0,
        "H",
    );
    close(
        e(d(array![1.0, 2.0, 3.0].into_dyn()), None, eopts(Some(10.0), 0))[[]],
        0.4392472911358187,
        1e-15,
        0.0,
        "H10",
    );
    close(
        e(d(array![1.0, 2.0, 3.0].into_dyn()), None, eopts(Some(0.5), 0))[[]],
        -1.459147917027245,
        1e-15,
        0.0,
        "H0.5",
    );
    all_close(
        &e(mat_a(), Some(mat_b()), eopts(None, 1)),
        &[0.25936556631921465, 0.3200632898583567],
        1e-14,
        "KL axis 1",
    );
    all_close(
        &e(mat_a(), Some(mat_b()), eopts(None, 0)),
        &[0.4595804290179329, 0.003301709200269315, 0.5894749445854228],
        1e-13,
        "KL axis 0",
    );
    all_close(
        &e(mat_a(), Some(mat_b()), eopts(Some(2.0), -1)),
        &[0.37418541630608854, 0.46175372104925805],
        1e-14,
        "KL axis -1 base 2",
    );
    all_close(
        &e(mat_a(), None, eopts(None, 1)),
        &[1.0114042647073518, 0.8569977547780645],
        1e-15,
        "H axis 1",
    );
    // qk broadcasts: (3,) against (2, 3), and (2, 1) along the axis itself (q̂ uniform).
    let r = e(mat_a(), Some(d(array![1.0, 2.0, 3.0].into_dyn())), eopts(None, 1));
    assert_eq!(r[[0]], 0.0);
    close(r[[1]], 0.5121257094885399, 1e-14, 0.0, "KL bcast");
    let r = e(mat_a(), Some(arr(&[2, 1], &[1.0, 2.0])), eopts(None, 1));
    all_close(&r, &[0.08720802396075801, 0.24161453389004522], 1e-14, "KL bcast along axis");
    // Cross-entropy = H + KL (scipy's documented identity).
    let h = shannon_cross_entropy(mat_a().view(), mat_b().view(), &eopts(None, 1)).unwrap();
    all_close(&h, &[1.2707698310265665, 1.1770610446364211], 1e-15, "cross-entropy");
    // Output shape: the broadcast shape without the axis.
    let r = e(Array::ones(IxDyn(&[2, 3])), Some(Array::ones(IxDyn(&[2, 1, 3]))), eopts(None, 1));
    assert_eq!(r.shape(), &[2, 3]);
    assert!(r.iter().all(|&v| v == 0.0));
}

#[test]
fn entropy_edge_cases_match_scipy() {
    let h = |v: &[f64]| entropy(arr(&[v.len()], v).view(), None, &EntropyOptions::default()).unwrap()[[]];
    let kl = |p: &[f64], q: &[f64]| {
        entropy(arr(&[p.len()], p).view(), Some(arr(&[q.len()], q).view()), &EntropyOptions::default())
            .unwrap()[[]]
    };
    assert_eq!(h(&[]), 0.0);
    assert_eq!(h(&[1.0, 0.0, 0.0]), 0.0);
    assert!(h(&[0.0, 0.0, 0.0]).is_nan());
    assert!(h(&[1.0, f64::NAN, 0.0]).is_nan());
    assert!(h(&[1.0, f64::INFINITY, 0.0]).is_nan());
    assert_eq!(h(&[1.0, -1.0, 0.5]), f64::NEG_INFINITY);
    assert_eq!(kl(&[1.0, 2.0, 3.0], &[1.0, 0.0, 1.0]), f64::INFINITY);
    close(kl(&[1.0, 0.0, 3.0], &[1.0, 0.0, 1.0]), 0.13081203594113697, 1e-15, 0.0, "zeros shared");
    assert!(kl(&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0]).is_nan());
    // 0-d input: one distribution of one element.
    assert_eq!(entropy(arr0(5.0).view(), None, &EntropyOptions::default()).unwrap()[[]], 0.0);
    assert!(entropy(arr0(0.0f64).view(), None, &EntropyOptions::default()).unwrap()[[]].is_nan());
    assert_eq!(entropy(arr0(5.0).view(), Some(arr0(2.0).view()), &eopts(None, -1)).unwrap()[[]], 0.0);
    // Zero-size.
    let z = entropy(Array::<f64, _>::zeros(IxDyn(&[0, 3])).view(), None, &EntropyOptions::default()).unwrap();
    assert_eq!(z.shape(), &[3]);
    assert!(z.iter().all(|&v| v == 0.0));
    let z = entropy(Array::<f64, _>::zeros(IxDyn(&[3, 0])).view(), None, &EntropyOptions::default()).unwrap();
    assert_eq!(z.shape(), &[0]);
    let z = entropy(Array::<f64, _>::zeros(IxDyn(&[0, 3])).view(), None, &eopts(None, 1)).unwrap();
    assert_eq!(z.shape(), &[0]);
    // base = inf is accepted, as SciPy (S / inf = 0).
    assert_eq!(entropy(array![1.0, 2.0].view(), None, &eopts(Some(f64::INFINITY), 0)).unwrap()[[]], 0.0);
}

#[test]
fn jensenshannon_values_match_scipy() {
    let o = |base, axis, keepdims| JensenShannonOptions { base, axis, keepdims };
    let js =
        jensenshannon(array![1.0, 0.0, 0.0].view(), array![0.0, 1.0, 0.0].view(), &o(Some(2.0), 0, false));
    assert_eq!(js.unwrap()[[]], 1.0);
    let r = jensenshannon(js_a().view(), js_b().view(), &o(None, 0, false)).unwrap();
    all_close(
        &r,
        &[0.19542878115393794, 0.14476970910187165, 0.11383771437206669, 0.09276357967788262],
        1e-13,
        "js axis 0",
    );
    let r = jensenshannon(js_a().view(), js_b().view(), &o(None, 1, false)).unwrap();
    all_close(&r, &[0.1402339353467297, 0.0399106285454718, 0.020181534745608052], 1e-13, "js axis 1");
    let r = jensenshannon(js_a().view(), js_b().view(), &o(None, -1, true)).unwrap();
    assert_eq!(r.shape(), &[3, 1]);
    all_close(&r, &[0.1402339353467297, 0.0399106285454718, 0.020181534745608052], 1e-13, "js keepdims");
    let r = jensenshannon(js_a().view(), js_b().view(), &o(Some(3.0), 1, false)).unwrap();
    all_close(&r, &[0.1337922309087929, 0.03807731714059288, 0.019254487511187048], 1e-13, "js base 3");
    // SciPy normalizes p and q each in its own shape before broadcasting: with axis=0, p (3,) is
    // normalized over its 3 entries and q (2, 3) over its 2 rows.
    let p = arr(&[3], &[1.0, 2.0, 3.0]);
    let q = arr(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let r = jensenshannon(p.view(), q.view(), &o(None, 0, false)).unwrap();
    all_close(
        &r,
        &[0.33703827725418223, 0.1906709717332218, 0.11984403015647774],
        1e-13,
        "js mixed rank axis 0",
    );
    let r = jensenshannon(p.view(), q.view(), &o(None, -1, false)).unwrap();
    assert_eq!(r[[0]], 0.0);
    close(r[[1]], 0.09276357967788262, 1e-13, 0.0, "js mixed rank axis -1");
    // Edge cases.
    let z = |p: &[f64], q: &[f64]| {
        jensenshannon(arr(&[p.len()], p).view(), arr(&[q.len()], q).view(), &JensenShannonOptions::default())
            .unwrap()[[]]
    };
    assert_eq!(z(&[], &[]), 0.0);
    assert!(z(&[0.0, 0.0, 0.0], &[1.0, 2.0, 3.0]).is_nan());
    assert_eq!(z(&[1.0, -2.0, 3.0], &[1.0, 2.0, 4.0]), f64::INFINITY);
    assert!(z(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 4.0]).is_nan());
    assert!(z(&[1.0, f64::INFINITY, 3.0], &[1.0, 2.0, 4.0]).is_nan());
    close(z(&[1.0, 0.0], &[0.5, 0.5]), 0.464501404022459, 1e-15, 0.0, "js one-hot");
    let r = jensenshannon(arr0(5.0).view(), arr0(2.0).view(), &o(None, 0, true)).unwrap();
    assert_eq!((r.shape(), r[[]]), (&[] as &[usize], 0.0));
    let zz = Array::<f64, _>::zeros(IxDyn(&[0, 3]));
    let r = jensenshannon(zz.view(), zz.view(), &o(None, 0, false));
    assert_eq!(r.unwrap().as_slice().unwrap(), &[0.0, 0.0, 0.0]);
}

#[test]
fn elementwise_values_match_scipy() {
    let e = entr(array![0.5, 2.0, 1e-300, 0.0, -1.0, f64::NAN].view());
    close(e[0], 0.34657359027997264, 1e-16, 0.0, "entr(0.5)");
    close(e[1], -1.3862943611198906, 1e-16, 0.0, "entr(2)");
    close(e[2], 6.907755278982137e-298, 1e-15, 0.0, "entr(1e-300)");
    assert_eq!((e[3], e[4]), (0.0, f64::NEG_INFINITY));
    assert!(e[5].is_nan());
    let r = rel_entr(array![[1.0, 2.0], [4.0, 0.0]].view(), array![2.0, 3.0].view()).unwrap();
    all_close(&r, &[-LN2, -0.8109302162163288, 2.772588722239781, 0.0], 1e-16, "rel_entr"); // -LN2 = scipy -0.6931471805599453
    let s = self_information(array![0.5, 0.125, 0.0, -1.0].view(), Some(2.0)).unwrap();
    assert_eq!((s[0], s[1], s[2]), (1.0, 3.0, f64::INFINITY));
    assert!(s[3].is_nan());
    let s = self_information(array![0.4].view(), None).unwrap();
    close(s[0], 0.9162907318741551, 2e-16, 0.0, "−ln 0.4");
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

#[test]
fn invalid_options_and_shapes_are_errors() {
    let p = array![1.0, 2.0, 3.0];
    for b in [0.0, -2.0, 1.0, f64::NAN] {
        let e = entropy(p.view(), None, &eopts(Some(b), 0)).unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "base", .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!("entropy: invalid base = {b}: must be a positive number")),
            "{e}"
        );
        assert!(self_information(p.view(), Some(b)).is_err());
        assert!(shannon_cross_entropy(p.view(), p.view(), &eopts(Some(b), 0)).is_err());
        assert!(entropy_backward(p.view(), None, &eopts(Some(b), 0), arr0(1.0).view()).is_err());
    }
    for b in [0.5, 1.0, -1.0, f64::NAN] {
        let o = JensenShannonOptions { base: Some(b), ..Default::default() };
        let e = jensenshannon(p.view(), p.view(), &o).unwrap_err();
        assert!(e.to_string().starts_with(&format!("jensenshannon: invalid base = {b}:")), "{e}");
    }
    let e = entropy(p.view(), Some(array![1.0, 2.0].view()), &EntropyOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "entropy: pk shape [3] and qk shape [2] cannot be broadcast together (NumPy broadcasting rules)"
    );
    let e = jensenshannon(p.view(), array![1.0, 2.0].view(), &JensenShannonOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "jensenshannon: p shape [3] and q shape [2] cannot be broadcast together (NumPy broadcasting rules)"
    );
    let e = rel_entr(array![[1.0, 2.0]].view(), array![1.0, 2.0, 3.0].view()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rel_entr: p shape [1, 2] and q shape [3] cannot be broadcast together (NumPy broadcasting rules)"
    );
    let e = entropy(mat_a().view(), None, &eopts(None, 2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "entropy: invalid axis = 2: out of bounds for pk of shape [2, 3] (2 dimensions)"
    );
    assert!(entropy(mat_a().view(), None, &eopts(None, -3)).is_err());
    assert!(entropy(arr0(1.0).view(), None, &eopts(None, 1)).is_err());
    // jensenshannon resolves the axis against each input's own rank, as SciPy (AxisError for p).
    let e = jensenshannon(
        p.view().into_dyn(),
        mat_a().view(),
        &JensenShannonOptions { axis: 1, ..Default::default() },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "jensenshannon: invalid axis = 1: out of bounds for p of shape [3] (1 dimensions)"
    );
    // Upstream gradients of the wrong shape.
    let e =
        entropy_backward(mat_a().view(), None, &eopts(None, 1), array![1.0, 2.0, 3.0].view()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "entropy_backward: grad_output shape [3] and output shape [2] must be equal (or grad_output 0-dimensional)"
    );
    let o = JensenShannonOptions { axis: 1, keepdims: true, ..Default::default() };
    let e =
        jensenshannon_backward(js_a().view(), js_b().view(), &o, array![1.0, 2.0, 3.0].view()).unwrap_err();
    assert!(e.to_string().contains("grad_output shape [3] and output shape [3, 1]"), "{e}");
    let e = rel_entr_backward(mat_a().view(), array![1.0, 2.0, 3.0].view(), array![1.0, 2.0, 3.0].view())
        .unwrap_err();
    assert!(e.to_string().contains("grad_output shape [3] and output shape [2, 3]"), "{e}");
    assert!(self_information_backward(p.view(), None, array![1.0].view()).is_err());
}

// ------------------------------------------------------------------------------------------------
// Finite differences
// ------------------------------------------------------------------------------------------------

#[test]
fn fd_entr_backward() {
    let x = arr(&[2, 3], &[0.1, 0.5, 1.0, 2.0, 3.5, 0.01]);
    let g = upstream(&[2, 3]);
    let a = entr_backward(x.view(), g.view()).unwrap();
    check_fd("entr", &x, &a, |x| dot(&entr(x.view()), &g));
    // 0-d upstream: every element gets it.
    let a1 = entr_backward(x.view(), arr0(2.0).view()).unwrap();
    check_fd("entr g=2", &x, &a1, |x| 2.0 * entr(x.view()).sum());
    // torch.special.entr autograd: [inf, nan, nan, -1, -0.30685281944005466, -inf] for
    // x = [0, -1, nan, 1, 0.5, inf] with g = 1; g = 0 at 0 gives nan.
    let t =
        entr_backward(array![0.0, -1.0, f64::NAN, 1.0, 0.5, f64::INFINITY].view(), arr0(1.0).view()).unwrap();
    assert_eq!(t[0], f64::INFINITY);
    assert!(t[1].is_nan() && t[2].is_nan());
    assert_eq!(t[3], -1.0);
    close(t[4], -0.30685281944005466, 1e-15, 0.0, "entr'(0.5)");
    assert_eq!(t[5], f64::NEG_INFINITY);
    assert!(entr_backward(array![0.0f64].view(), arr0(0.0).view()).unwrap()[0].is_nan());
}

#[test]
fn fd_rel_entr_backward_with_broadcasting() {
    // p (2, 3) against q (3,); p (2, 1) against q (1, 3); same shapes.
    let cases = [
        (arr(&[2, 3], &[0.2, 1.0, 3.0, 0.7, 0.05, 2.0]), arr(&[3], &[0.5, 1.5, 0.3])),
        (arr(&[2, 1], &[0.4, 1.7]), arr(&[1, 3], &[0.5, 1.5, 0.3])),
        (arr(&[3], &[0.4, 1.7, 0.9]), arr(&[3], &[0.5, 1.5, 0.3])),
    ];
    for (i, (p, q)) in cases.iter().enumerate() {
        let out_shape = rel_entr(p.view(), q.view()).unwrap().shape().to_vec();
        let g = upstream(&out_shape);
        let (dp, dq) = rel_entr_backward(p.view(), q.view(), g.view()).unwrap();
        assert_eq!(dp.shape(), p.shape());
        assert_eq!(dq.shape(), q.shape());
        check_fd(&format!("rel_entr dp case {i}"), p, &dp, |p| {
            dot(&rel_entr(p.view(), q.view()).unwrap(), &g)
        });
        check_fd(&format!("rel_entr dq case {i}"), q, &dq, |q| {
            dot(&rel_entr(p.view(), q.view()).unwrap(), &g)
        });
    }
    // Documented choices: p = 0 → dq = 0, dp = −inf (q > 0) or NaN (q = 0); +inf region → NaN.
    let (dp, dq) = rel_entr_backward(
        array![0.0, 0.0, 1.0, -1.0].view(),
        array![2.0, 0.0, 0.0, 1.0].view(),
        arr0(1.0).view(),
    )
    .unwrap();
    assert_eq!((dp[0], dq[0]), (f64::NEG_INFINITY, 0.0));
    assert!(dp[1].is_nan() && dq[1] == 0.0);
    assert!(dp[2].is_nan() && dq[2].is_nan());
    assert!(dp[3].is_nan() && dq[3].is_nan());
}

/// FD of entropy_backward for one configuration (dp, and dq when `q` is given).
fn fd_entropy_case(what: &str, p: &ArrayD<f64>, q: Option<&ArrayD<f64>>, o: EntropyOptions) {
    let out_shape = entropy(p.view(), q.map(|q| q.view()), &o).unwrap().shape().to_vec();
    let g = upstream(&out_shape);
    let (dp, dq) = entropy_backward(p.view(), q.map(|q| q.view()), &o, g.view()).unwrap();
    check_fd(&format!("{what} dp"), p, &dp, |p| {
        dot(&entropy(p.view(), q.map(|q| q.view()), &o).unwrap(), &g)
    });
    match q {
        Some(q) => {
            let dq = dq.expect("dq");
            assert_eq!(dq.shape(), q.shape());
            check_fd(&format!("{what} dq"), q, &dq, |q| {
                dot(&entropy(p.view(), Some(q.view()), &o).unwrap(), &g)
            });
        }
        None => assert!(dq.is_none()),
    }
}

#[test]
fn fd_entropy_backward_all_options() {
    let p3 = arr(&[2, 3, 2], &[0.3, 1.2, 2.0, 0.4, 0.9, 1.1, 0.25, 3.0, 1.5, 0.6, 0.8, 2.2]);
    let q3 = arr(&[2, 3, 2], &[1.0, 0.5, 0.7, 2.5, 0.3, 1.4, 1.9, 0.2, 0.6, 1.3, 2.1, 0.9]);
    for base in [None, Some(2.0), Some(10.0), Some(0.5)] {
        for axis in [0isize, 1, -1] {
            let o = eopts(base, axis);
            let tag = format!("base {base:?} axis {axis}");
            fd_entropy_case(&format!("H 2-D {tag}"), &mat_a(), None, o);
            fd_entropy_case(&format!("KL 2-D {tag}"), &mat_a(), Some(&mat_b()), o);
            fd_entropy_case(&format!("H 3-D {tag}"), &p3, None, o);
            fd_entropy_case(&format!("KL 3-D {tag}"), &p3, Some(&q3), o);
        }
    }
    // 1-D and broadcasting qk: (3,) against (2, 3), (2, 1) along the axis, (2, 1, 3) enlarging.
    fd_entropy_case("H 1-D", &arr(&[4], &[0.1, 0.2, 0.3, 0.9]), None, EntropyOptions::default());
    fd_entropy_case("KL bcast (3,)", &mat_a(), Some(&arr(&[3], &[0.5, 2.0, 1.0])), eopts(None, 1));
    fd_entropy_case(
        "KL bcast (3,) axis 0",
        &mat_a(),
        Some(&arr(&[3], &[0.5, 2.0, 1.0])),
        eopts(Some(2.0), 0),
    );
    fd_entropy_case("KL bcast (2,1)", &mat_a(), Some(&arr(&[2, 1], &[0.5, 2.0])), eopts(None, 1));
    fd_entropy_case("KL bcast pk (1,3)", &arr(&[1, 3], &[0.5, 2.0, 1.0]), Some(&mat_b()), eopts(None, -1));
    fd_entropy_case(
        "KL enlarging",
        &mat_a(),
        Some(&arr(&[2, 1, 3], &[1.0, 2.0, 3.0, 0.4, 0.5, 0.6])),
        eopts(None, 2),
    );
    // qk (2, 1) broadcast along the axis: q̂ is uniform whatever qk is, so dqk = 0 exactly in math.
    let (_, dq) = entropy_backward(
        mat_a().view(),
        Some(arr(&[2, 1], &[0.5, 2.0]).view()),
        &eopts(None, 1),
        arr0(1.0).view(),
    )
    .unwrap();
    for &v in dq.unwrap().iter() {
        assert!(v.abs() < 1e-15, "{v}");
    }
}

#[test]
fn entropy_backward_matches_torch_autograd() {
    // torch: A, B as in the header, requires_grad; p = A/A.sum(1, keepdim=True), q likewise;
    // D = (p*torch.log(p/q)).sum(1)/math.log(2); D.backward(torch.tensor([1.0, -0.5]))
    let o = eopts(Some(2.0), 1);
    let (da, db) =
        entropy_backward(mat_a().view(), Some(mat_b().view()), &o, array![1.0, -0.5].view()).unwrap();
    all_close(
        &da,
        &[
            -0.32652465283787413,
            0.006808680495459241,
            0.10430243061565192,
            -0.04606743506464801,
            0.02040805997923585,
            0.16445888072482567,
        ],
        1e-13,
        "dA",
    );
    all_close(
        &db.unwrap(),
        &[
            0.24044917348149392,
            -0.12022458674074693,
            -0.36067376022224085,
            0.1835006850253506,
            0.0063276098284603954,
            -0.10124175725536583,
        ],
        1e-13,
        "dB",
    );
}

#[test]
fn entropy_backward_at_zero_probabilities() {
    // H: a zero entry has gradient +inf (entr'(0)); the others stay finite and match FD.
    let p = arr(&[3], &[0.0, 1.0, 3.0]);
    let (dp, _) = entropy_backward(p.view(), None, &EntropyOptions::default(), arr0(1.0).view()).unwrap();
    assert_eq!(dp[0], f64::INFINITY);
    let h = 0.5623351446188083; // scipy: entropy([1, 3])
    close(dp[1], (-(0.25f64.ln()) - h) / 4.0, 1e-15, 0.0, "dp[1]");
    close(dp[2], (-(0.75f64.ln()) - h) / 4.0, 1e-15, 0.0, "dp[2]");
    // KL with p̂ = 0 < q̂: dp = −inf there, dq finite; FD on the nonzero entries.
    let q = arr(&[3], &[1.0, 2.0, 0.5]);
    let o = EntropyOptions::default();
    let (dp, dq) = entropy_backward(p.view(), Some(q.view()), &o, arr0(1.0).view()).unwrap();
    let dq = dq.unwrap();
    assert_eq!(dp[0], f64::NEG_INFINITY);
    let f = |p: &ArrayD<f64>, q: &ArrayD<f64>| entropy(p.view(), Some(q.view()), &o).unwrap()[[]];
    check_fd("KL dq with p̂=0", &q, &dq, |q| f(&p, q));
    let hstep = 1e-6;
    for k in [1, 2] {
        let (mut a, mut b) = (p.clone(), p.clone());
        a[[k]] += hstep;
        b[[k]] -= hstep;
        close(dp[[k]], (f(&a, &q) - f(&b, &q)) / (2.0 * hstep), 1e-6, 1e-9, "KL dp nonzero entry");
    }
    // Rows with a non-finite value get NaN: negative entry (H = −inf), q̂ = 0 < p̂ (KL = +inf).
    let (dp, _) = entropy_backward(
        array![1.0f64, -1.0, 0.5].view(),
        None,
        &EntropyOptions::default(),
        arr0(1.0).view(),
    )
    .unwrap();
    assert!(dp.iter().all(|v| v.is_nan()));
    let two = arr(&[2, 2], &[1.0, 1.0, 1.0, 2.0]);
    let qz = arr(&[2, 2], &[1.0, 0.0, 1.0, 1.0]);
    let (dp, dq) = entropy_backward(two.view(), Some(qz.view()), &eopts(None, 1), arr0(1.0).view()).unwrap();
    let dq = dq.unwrap();
    assert!(dp[[0, 0]].is_nan() && dp[[0, 1]].is_nan() && dq[[0, 0]].is_nan() && dq[[0, 1]].is_nan());
    assert!(dp[[1, 0]].is_finite() && dq[[1, 1]].is_finite(), "the other row is unaffected");
}

fn fd_cross_case(what: &str, p: &ArrayD<f64>, q: &ArrayD<f64>, o: EntropyOptions) {
    let out_shape = shannon_cross_entropy(p.view(), q.view(), &o).unwrap().shape().to_vec();
    let g = upstream(&out_shape);
    let (dp, dq) = shannon_cross_entropy_backward(p.view(), q.view(), &o, g.view()).unwrap();
    check_fd(&format!("{what} dp"), p, &dp, |p| {
        dot(&shannon_cross_entropy(p.view(), q.view(), &o).unwrap(), &g)
    });
    check_fd(&format!("{what} dq"), q, &dq, |q| {
        dot(&shannon_cross_entropy(p.view(), q.view(), &o).unwrap(), &g)
    });
}

#[test]
fn fd_shannon_cross_entropy_backward_all_options() {
    for base in [None, Some(2.0), Some(0.5)] {
        for axis in [0isize, 1, -1] {
            fd_cross_case(&format!("CE base {base:?} axis {axis}"), &mat_a(), &mat_b(), eopts(base, axis));
        }
    }
    fd_cross_case("CE bcast", &mat_a(), &arr(&[3], &[0.5, 2.0, 1.0]), eopts(None, 1));
    // p̂ = 0 entries are smooth for the cross-entropy: dp = (−ln q̂ − H)/Σp, finite.
    let p = arr(&[3], &[0.0, 0.0, 1.0]);
    let q = arr(&[3], &[0.3, 0.3, 0.4]);
    let (dp, dq) =
        shannon_cross_entropy_backward(p.view(), q.view(), &EntropyOptions::default(), arr0(1.0).view())
            .unwrap();
    let h = -(0.4f64.ln());
    close(dp[0], -(0.3f64.ln()) - h, 1e-15, 0.0, "dp[0]");
    close(dp[2], 0.0, 0.0, 1e-15, "dp[2]");
    all_close(&dq, &[1.0, 1.0, 1.0 - 1.0 / 0.4], 1e-15, "dq");
}

fn fd_js_case(what: &str, p: &ArrayD<f64>, q: &ArrayD<f64>, o: JensenShannonOptions) {
    let out_shape = jensenshannon(p.view(), q.view(), &o).unwrap().shape().to_vec();
    let g = upstream(&out_shape);
    let (dp, dq) = jensenshannon_backward(p.view(), q.view(), &o, g.view()).unwrap();
    assert_eq!((dp.shape(), dq.shape()), (p.shape(), q.shape()));
    check_fd(&format!("{what} dp"), p, &dp, |p| dot(&jensenshannon(p.view(), q.view(), &o).unwrap(), &g));
    check_fd(&format!("{what} dq"), q, &dq, |q| dot(&jensenshannon(p.view(), q.view(), &o).unwrap(), &g));
}

#[test]
fn fd_jensenshannon_backward_all_options() {
    let p3 = arr(&[2, 3, 2], &[0.3, 1.2, 2.0, 0.4, 0.9, 1.1, 0.25, 3.0, 1.5, 0.6, 0.8, 2.2]);
    let q3 = arr(&[2, 3, 2], &[1.0, 0.5, 0.7, 2.5, 0.3, 1.4, 1.9, 0.2, 0.6, 1.3, 2.1, 0.9]);
    for base in [None, Some(2.0), Some(3.0)] {
        for axis in [0isize, 1, -1] {
            for keepdims in [false, true] {
                let o = JensenShannonOptions { base, axis, keepdims };
                let tag = format!("base {base:?} axis {axis} keepdims {keepdims}");
                fd_js_case(&format!("JS 2-D {tag}"), &mat_a(), &mat_b(), o);
                fd_js_case(&format!("JS 3-D {tag}"), &p3, &q3, o);
            }
        }
    }
    // Mixed ranks (normalization in each input's own shape, then broadcasting).
    let p = arr(&[3], &[1.0, 2.0, 3.0]);
    let q = arr(&[2, 3], &[1.5, 2.0, 3.0, 4.0, 5.0, 6.0]);
    fd_js_case("JS mixed axis 0", &p, &q, JensenShannonOptions::default());
    fd_js_case("JS mixed axis -1", &p, &q, JensenShannonOptions { axis: -1, ..Default::default() });
    // (No column of q proportional to p: JS = 0 is the kink where the gradient is 0 by convention.)
    let q2 = arr(&[2, 3], &[1.5, 2.0, 3.0, 4.0, 5.0, 7.0]);
    fd_js_case(
        "JS (2,1) vs (2,3)",
        &arr(&[2, 1], &[1.0, 2.0]),
        &q2,
        JensenShannonOptions { axis: 0, ..Default::default() },
    );
}

#[test]
fn jensenshannon_backward_matches_torch_autograd() {
    // torch: p = a/a.sum(1, keepdim=True), q likewise, m = (p+q)/2,
    // js = sqrt(((p*log(p/m)).sum(1) + (q*log(q/m)).sum(1))/math.log(3)/2); js.sum().backward()
    let o = JensenShannonOptions { base: Some(3.0), axis: 1, keepdims: false };
    let (da, db) = jensenshannon_backward(js_a().view(), js_b().view(), &o, arr0(1.0).view()).unwrap();
    let want_a = [
        -0.08568266319633044,
        -0.02030020317871864,
        0.008596984424557136,
        0.02512302907002408,
        -0.021710965485508577,
        -0.00649865631984863,
        0.005018697499214853,
        0.014051985356516337,
        -0.01235132597846643,
        -0.003842014128690021,
        0.0033167811321802763,
        0.009424790219926251,
    ];
    let want_b = [
        0.008968206225354705,
        0.0020877759551020747,
        -0.002796967904459921,
        -0.006491314108383839,
        0.006733422626405516,
        0.0019700850050041697,
        -0.002066039332541658,
        -0.005533748371033867,
        0.005418981705356706,
        0.0016632336388760715,
        -0.0016745720218359467,
        -0.004661441640230734,
    ];
    all_close(&da, &want_a, 1e-11, "da");
    all_close(&db, &want_b, 1e-11, "db");
}

#[test]
fn jensenshannon_backward_at_zeros() {
    let o = JensenShannonOptions::default();
    // JS = 0: gradient 0 (subgradient), not NaN.
    let (dp, dq) = jensenshannon_backward(
        array![1.0, 3.0, 0.0].view(),
        array![2.0, 6.0, 0.0].view(),
        &o,
        arr0(1.0).view(),
    )
    .unwrap();
    assert!(dp.iter().chain(dq.iter()).all(|&v| v == 0.0), "{dp} {dq}");
    // p̂_j = q̂_j = 0: one-sided derivative ln 2 (scaled), checked by a forward difference.
    let p = arr(&[3], &[1.0, 0.0, 2.0]);
    let q = arr(&[3], &[3.0, 0.0, 1.0]);
    let f = |p: &ArrayD<f64>, q: &ArrayD<f64>| jensenshannon(p.view(), q.view(), &o).unwrap()[[]];
    let (dp, dq) = jensenshannon_backward(p.view(), q.view(), &o, arr0(1.0).view()).unwrap();
    let h = 1e-7;
    let mut ph = p.clone();
    ph[[1]] += h;
    close(dp[[1]], (f(&ph, &q) - f(&p, &q)) / h, 1e-5, 1e-8, "one-sided dp at p̂=q̂=0");
    let mut qh = q.clone();
    qh[[1]] += h;
    close(dq[[1]], (f(&p, &qh) - f(&p, &q)) / h, 1e-5, 1e-8, "one-sided dq at p̂=q̂=0");
    for k in [0, 2] {
        let (mut a, mut b) = (p.clone(), p.clone());
        a[[k]] += 1e-6;
        b[[k]] -= 1e-6;
        close(dp[[k]], (f(&a, &q) - f(&b, &q)) / 2e-6, 1e-6, 1e-9, "dp with a shared zero");
    }
    // p̂_j = 0 < q̂_j: −inf (infinitely steep), the others finite.
    let (dp, dq) =
        jensenshannon_backward(array![1.0, 0.0].view(), array![0.0, 1.0].view(), &o, arr0(1.0).view())
            .unwrap();
    assert_eq!((dp[0], dp[1]), (0.0, f64::NEG_INFINITY));
    assert_eq!((dq[0], dq[1]), (f64::NEG_INFINITY, 0.0));
    // Non-finite rows: NaN.
    let (dp, _) = jensenshannon_backward(
        array![1.0f64, -2.0, 3.0].view(),
        array![1.0, 2.0, 4.0].view(),
        &o,
        arr0(1.0).view(),
    )
    .unwrap();
    assert!(dp.iter().all(|v| v.is_nan()));
}

#[test]
fn fd_self_information_backward() {
    let p = arr(&[2, 2], &[0.1, 0.5, 0.9, 2.0]);
    for base in [None, Some(2.0), Some(10.0), Some(0.5)] {
        let g = upstream(&[2, 2]);
        let a = self_information_backward(p.view(), base, g.view()).unwrap();
        check_fd(&format!("self_information base {base:?}"), &p, &a, |p| {
            dot(&self_information(p.view(), base).unwrap(), &g)
        });
    }
    // torch: (-torch.log(x)).backward() at x = [-2, 0] gives [0.5, -inf].
    let t = self_information_backward(array![-2.0, 0.0].view(), None, arr0(1.0).view()).unwrap();
    assert_eq!((t[0], t[1]), (0.5, f64::NEG_INFINITY));
    let t = self_information_backward(array![0.5].view(), Some(2.0), arr0(1.0).view()).unwrap();
    close(t[0], -2.0 / LN2, 1e-15, 0.0, "−1/(p ln 2)");
}

#[test]
fn f32_gradients_agree_with_f64() {
    let a64 = mat_a();
    let b64 = mat_b();
    let (a32, b32) = (a64.mapv(|v| v as f32), b64.mapv(|v| v as f32));
    let o = eopts(Some(2.0), 1);
    let (d64, q64) = entropy_backward(a64.view(), Some(b64.view()), &o, arr0(1.0).view()).unwrap();
    let (d32, q32) = entropy_backward(a32.view(), Some(b32.view()), &o, arr0(1.0f32).view()).unwrap();
    for (x, y) in d32.iter().zip(d64.iter()).chain(q32.unwrap().iter().zip(q64.unwrap().iter())) {
        close(f64::from(*x), *y, 1e-5, 1e-6, "entropy f32 vs f64");
    }
    let oj = JensenShannonOptions { base: None, axis: 1, keepdims: true };
    let (j64, _) = jensenshannon_backward(a64.view(), b64.view(), &oj, arr0(1.0).view()).unwrap();
    let (j32, _) = jensenshannon_backward(a32.view(), b32.view(), &oj, arr0(1.0f32).view()).unwrap();
    for (x, y) in j32.iter().zip(j64.iter()) {
        close(f64::from(*x), *y, 1e-4, 1e-6, "js f32 vs f64");
    }
}
