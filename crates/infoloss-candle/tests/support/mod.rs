//! Helpers shared by the integration tests: tensors ↔ ndarray, exact comparison, deterministic data,
//! gradients through `Tensor::backward`, central finite differences.

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var, WithDType};
use infoloss::ndarray::{ArrayD, IxDyn};
use infoloss::{Element, GradOutput};

/// The element types of the tests (both crates know them).
pub trait F: Element + WithDType + std::fmt::Debug {}
impl F for f32 {}
impl F for f64 {}
impl F for half::f16 {}
impl F for half::bf16 {}

/// An ndarray copy of a tensor (any layout).
pub fn nd<T: F>(t: &Tensor) -> ArrayD<T> {
    let v: Vec<T> = t.flatten_all().unwrap().to_vec1::<T>().unwrap();
    ArrayD::from_shape_vec(IxDyn(t.dims()), v).unwrap()
}

/// A contiguous CPU tensor holding an ndarray's elements.
pub fn tensor<T: F>(a: &ArrayD<T>) -> Tensor {
    Tensor::from_vec(a.iter().copied().collect::<Vec<T>>(), a.shape(), &Device::Cpu).unwrap()
}

/// An i64 tensor of class indices.
pub fn index_tensor(a: &ArrayD<i64>) -> Tensor {
    Tensor::from_vec(a.iter().copied().collect::<Vec<i64>>(), a.shape(), &Device::Cpu).unwrap()
}

/// Asserts two arrays are identical: same shape, equal values (`0.0 == -0.0`), NaN at the same positions.
#[track_caller]
pub fn same<T: F>(what: &str, got: &ArrayD<T>, want: &ArrayD<T>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let (g, w) = (WithDType::to_f64(*g), WithDType::to_f64(*w));
        assert!(
            g == w || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g:e}, want {w:e}\n got {got:?}\nwant {want:?}"
        );
    }
}

/// `|got − want| ≤ atol + rtol·|want|` elementwise.
#[track_caller]
pub fn close(what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, rtol: f64, atol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: got {g:e}, want {w:e}");
    }
}

/// Deterministic pseudo-random values in `[lo, hi)` (SplitMix64).
pub fn uniform(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            lo + (hi - lo) * ((z >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// An array of the given shape with values from [`uniform`], rounded to `T`.
pub fn rand<T: F>(seed: u64, shape: &[usize], lo: f64, hi: f64) -> ArrayD<T> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), uniform(seed, n, lo, hi).into_iter().map(T::from_f64).collect())
        .unwrap()
}

/// Probability rows along dimension 1 (softmax of random logits), computed in f64 then rounded.
pub fn probs<T: F>(seed: u64, shape: &[usize]) -> ArrayD<T> {
    let x = rand::<f64>(seed, shape, -2.0, 2.0);
    let p = infoloss::softmax(x.view(), if shape.len() > 1 { 1 } else { 0 }).unwrap();
    p.mapv(T::from_f64)
}

/// Class indices in `[0, classes)`.
pub fn classes(seed: u64, shape: &[usize], classes: usize) -> ArrayD<i64> {
    let n = shape.iter().product();
    let v = uniform(seed, n, 0.0, classes as f64)
        .into_iter()
        .map(|v| (v as i64).min(classes as i64 - 1))
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// The upstream gradient used for a loss output: a fixed non-trivial scalar for a reduced (0-d) output, a
/// random array for an unreduced one.
pub fn upstream<T: F>(seed: u64, out_shape: &[usize]) -> ArrayD<T> {
    if out_shape.is_empty() {
        ArrayD::from_elem(IxDyn(&[]), T::from_f64(1.75))
    } else {
        rand(seed, out_shape, -2.0, 2.0)
    }
}

/// `Σ loss·upstream` — the scalar whose `backward()` sends exactly `upstream` into the loss.
pub fn objective(loss: &Tensor, up: &ArrayD<impl F>) -> Tensor {
    let g = tensor(up);
    (loss * g).unwrap().sum_all().unwrap()
}

/// The gradient `backward()` leaves for `v`, as an ndarray.
pub fn grad_of<T: F>(grads: &candle_core::backprop::GradStore, v: &Var) -> ArrayD<T> {
    nd(grads.get(v.as_tensor()).expect("backward() reached the variable"))
}

/// Central finite differences (f64) of the scalar `f(x)` wrt every element of `x`.
pub fn finite_diff(x: &ArrayD<f64>, h: f64, f: impl Fn(&ArrayD<f64>) -> f64) -> ArrayD<f64> {
    let mut g = ArrayD::zeros(x.raw_dim());
    let mut xp = x.clone();
    for i in 0..x.len() {
        let v = x.as_slice().unwrap()[i];
        xp.as_slice_mut().unwrap()[i] = v + h;
        let fp = f(&xp);
        xp.as_slice_mut().unwrap()[i] = v - h;
        let fm = f(&xp);
        xp.as_slice_mut().unwrap()[i] = v;
        g.as_slice_mut().unwrap()[i] = (fp - fm) / (2.0 * h);
    }
    g
}

/// The dtype of `T`.
pub fn dtype<T: F>() -> DType {
    <T as WithDType>::DTYPE
}

/// An array as f64 (for finite differences).
pub fn f64s<T: F>(a: &ArrayD<T>) -> ArrayD<f64> {
    a.mapv(|v| WithDType::to_f64(v))
}

/// The `GradOutput` that `backward()` of `Σ loss·up` sends into the loss: `up` (a scalar when 0-d).
pub fn grad_output<T: F>(up: &ArrayD<T>) -> GradOutput<'_, T> {
    if up.ndim() == 0 { GradOutput::Scalar(up[IxDyn(&[])]) } else { GradOutput::Array(up.view()) }
}

/// Central finite differences (step 1e-6) of the scalar `f(x)` agree with `grad`: rtol 1e-6, atol 1e-7.
#[track_caller]
pub fn fd_agrees(name: &str, x: &ArrayD<f64>, grad: &ArrayD<f64>, f: impl Fn(&ArrayD<f64>) -> f64) {
    let fd = finite_diff(x, 1e-6, f);
    close(&format!("{name}: finite differences"), grad, &fd, 1e-6, 1e-7);
}

/// Central finite differences of `Σ f(x)·up` (the objective whose `backward()` sends `up` into `f`) agree with
/// `grad`, as [`fd_agrees`].
#[track_caller]
pub fn fd_objective_agrees(
    name: &str,
    x: &ArrayD<f64>,
    up: &ArrayD<f64>,
    grad: &ArrayD<f64>,
    f: impl Fn(&Tensor) -> Tensor,
) {
    fd_agrees(name, x, grad, |xp| objective(&f(&tensor(xp)), up).to_scalar::<f64>().unwrap());
}

/// The two tests of one generic check: `$check::<f32>(false)` and `$check::<f64>(true)` (with finite
/// differences).
macro_rules! f32_and_f64_tests {
    ($check:ident: $f32_test:ident, $f64_test:ident) => {
        #[test]
        fn $f32_test() {
            $check::<f32>(false);
        }

        #[test]
        fn $f64_test() {
            $check::<f64>(true);
        }
    };
}
pub(crate) use f32_and_f64_tests;
