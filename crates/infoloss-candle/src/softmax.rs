//! `log_softmax`, `softmax`, `logsumexp` along a dimension.

use candle_core::Tensor;

use crate::convert::ensure_cpu;
use crate::ops::{Unary, UnaryKind};

fn apply(kind: UnaryKind, x: &Tensor, dim: isize) -> candle_core::Result<Tensor> {
    let op = Unary { kind, dim };
    ensure_cpu(candle_core::CustomOp1::name(&op), "input", x)?;
    x.apply_op1(op)
}

/// `log_softmax(x)_i = (x_i − max) − ln Σ_j exp(x_j − max)` along `dim` (negative counts from the end), as
/// `torch.log_softmax(x, dim)`. Gradient: `g − softmax(x)·Σ g` along `dim`, computed from the output.
///
/// # Errors
///
/// A non-CPU or non-float tensor, `dim` out of range.
///
/// ```
/// use candle_core::{Device, Var};
/// let x = Var::new(&[[0.0f64, 0.0], [1.0, 1.0]], &Device::Cpu)?;
/// let y = infoloss_candle::log_softmax(x.as_tensor(), -1)?;
/// assert_eq!(y.to_vec2::<f64>()?, [[-std::f64::consts::LN_2; 2]; 2]);
/// // d/dx Σ y_0 = [1, 1] − 2·softmax = [0, 0]
/// let g = y.sum_all()?.backward()?.get(&x).unwrap().to_vec2::<f64>()?;
/// assert_eq!(g, [[0.0, 0.0], [0.0, 0.0]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn log_softmax(x: &Tensor, dim: isize) -> candle_core::Result<Tensor> {
    apply(UnaryKind::LogSoftmax, x, dim)
}

/// `softmax(x)_i = exp(x_i − max) / Σ_j exp(x_j − max)` along `dim`, as `torch.softmax(x, dim)`. Gradient:
/// `y·(g − Σ y·g)` along `dim`, computed from the output `y`.
///
/// # Errors
///
/// A non-CPU or non-float tensor, `dim` out of range.
///
/// ```
/// use candle_core::{Device, Var};
/// let x = Var::new(&[0.0f32, 2.0f32.ln()], &Device::Cpu)?;
/// let y = infoloss_candle::softmax(x.as_tensor(), 0)?;
/// let v = y.to_vec1::<f32>()?;
/// assert!((v[0] - 1.0 / 3.0).abs() < 1e-7 && (v[1] - 2.0 / 3.0).abs() < 1e-7);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn softmax(x: &Tensor, dim: isize) -> candle_core::Result<Tensor> {
    apply(UnaryKind::Softmax, x, dim)
}

/// `logsumexp(x) = max + ln Σ exp(x − max)` along `dim` (the dimension is removed), as
/// `torch.logsumexp(x, dim)`. Gradient: `g·softmax(x)`.
///
/// # Errors
///
/// A non-CPU or non-float tensor, `dim` out of range.
///
/// ```
/// use candle_core::{Device, Var};
/// let x = Var::new(&[[1.0f64, 1.0], [0.0, f64::NEG_INFINITY]], &Device::Cpu)?;
/// let y = infoloss_candle::logsumexp(x.as_tensor(), 1)?;
/// assert_eq!(y.to_vec1::<f64>()?, [1.0 + std::f64::consts::LN_2, 0.0]);
/// let g = y.sum_all()?.backward()?.get(&x).unwrap().to_vec2::<f64>()?;
/// assert_eq!(g, [[0.49999999999999994, 0.49999999999999994], [1.0, 0.0]]); // exp(x − y), as torch
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn logsumexp(x: &Tensor, dim: isize) -> candle_core::Result<Tensor> {
    apply(UnaryKind::LogSumExp, x, dim)
}
