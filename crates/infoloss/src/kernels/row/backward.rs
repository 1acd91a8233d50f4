//! The backward rows: `softmax`, `log_softmax` and `logsumexp` gradients from a row and its upstream
//! gradient, in one or two passes.

use super::*;

/// `Σ a` (`b` empty) or `Σ a·b` (products rounded to `f32`), accumulated in `f32` lanes flushed into
/// an `f64` total every [`CHUNK`] elements.
pub(crate) struct RowSumOp<'a> {
    pub(crate) a: &'a [f32],
    pub(crate) b: &'a [f32],
}
impl WithSimd for RowSumOp<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let dot = !self.b.is_empty();
        let mut total = 0.0f64;
        let mut start = 0;
        while start < self.a.len() {
            let end = (start + CHUNK).min(self.a.len());
            let ac = self.a.get(start..end).unwrap_or_default();
            let bc = if dot { self.b.get(start..end).unwrap_or_default() } else { ac };
            let (ah, at) = S::as_simd_f32s(ac);
            let (bh, bt) = S::as_simd_f32s(bc);
            let z = simd.splat_f32s(0.0);
            let mut acc = [z; 4];
            // (a function, not a closure: a closure would not inherit the SIMD target features)
            #[inline(always)]
            fn term<S: Simd>(simd: S, dot: bool, a: S::f32s, b: S::f32s) -> S::f32s {
                if dot { simd.mul_f32s(a, b) } else { a }
            }
            let mut ai = ah.chunks_exact(4);
            let mut bi = bh.chunks_exact(4);
            for (a, b) in (&mut ai).zip(&mut bi) {
                for j in 0..4 {
                    acc[j] = simd.add_f32s(acc[j], term(simd, dot, a[j], b[j]));
                }
            }
            for (a, b) in ai.remainder().iter().zip(bi.remainder()) {
                acc[0] = simd.add_f32s(acc[0], term(simd, dot, *a, *b));
            }
            if !at.is_empty() {
                // partial loads fill the lanes past the end with zeros
                acc[1] = simd.add_f32s(
                    acc[1],
                    term(simd, dot, simd.partial_load_f32s(at), simd.partial_load_f32s(bt)),
                );
            }
            total +=
                hsum_f64::<S>(simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3])));
            start = end;
        }
        total
    }
}

/// `o ← o − exp(y)·sum` (log-softmax backward, `o` holding the upstream gradient).
#[derive(Clone, Copy)]
struct LogSoftmaxBack(f32);
impl VecZip for LogSoftmaxBack {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, o: S::f32s, y: S::f32s) -> S::f32s {
        simd.sub_f32s(o, simd.mul_f32s(exp_f32s(simd, y), simd.splat_f32s(self.0)))
    }
}

/// `o ← (o − sum)·s` (softmax backward, `o` holding the upstream gradient).
#[derive(Clone, Copy)]
struct SoftmaxBack(f32);
impl VecZip for SoftmaxBack {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, o: S::f32s, s: S::f32s) -> S::f32s {
        simd.mul_f32s(simd.sub_f32s(o, simd.splat_f32s(self.0)), s)
    }
}

/// `o ← g·exp(x − lse)` (logsumexp backward, `o` holding `x`).
#[derive(Clone, Copy)]
struct LseBack {
    lse: f32,
    g: f32,
}
impl VecMap for LseBack {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, x: S::f32s) -> S::f32s {
        simd.mul_f32s(simd.splat_f32s(self.g), exp_f32s(simd, simd.sub_f32s(x, simd.splat_f32s(self.lse))))
    }
}

struct BackOp<'a> {
    kind: BackKind,
    /// `y` (log-softmax output), `s` (softmax output) or `x` (logsumexp input).
    v: &'a [f32],
    /// The upstream gradient row (log-softmax, softmax).
    g: &'a [f32],
    out: &'a mut [f32],
}

#[derive(Clone, Copy)]
enum BackKind {
    LogSoftmax,
    Softmax,
    Lse { lse: f32, g: f32 },
}

impl WithSimd for BackOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let BackOp { kind, v, g, out } = self;
        match kind {
            BackKind::LogSoftmax => {
                let sum = RowSumOp { a: g, b: &[] }.with_simd(simd) as f32;
                out.copy_from_slice(g);
                zip_in_place(simd, out, v, LogSoftmaxBack(sum));
            }
            BackKind::Softmax => {
                let sum = RowSumOp { a: g, b: v }.with_simd(simd) as f32;
                out.copy_from_slice(g);
                zip_in_place(simd, out, v, SoftmaxBack(sum));
            }
            BackKind::Lse { lse, g } => map_f32(simd, v, out, LseBack { lse, g }),
        }
    }
}

impl Kernels {
    /// Row maximum; see [`max_f32`].
    pub fn max_f32(self, x: &[f32]) -> f32 {
        self.run(MaxOp(x))
    }

    /// Online max and sum of exponentials; see [`max_sum_exp_f32`].
    pub fn max_sum_exp_f32(self, x: &[f32]) -> (f32, f64) {
        self.run(MaxSumExpOp(x))
    }

    /// Log-sum-exp of a row; see [`logsumexp_f32`].
    pub fn logsumexp_f32(self, x: &[f32]) -> f32 {
        let (m, s) = self.max_sum_exp_f32(x);
        lse_from(x, m, s)
    }

    /// `out = exp(x − m)`, returns the sum; see [`exp_sub_sum_f32`].
    pub fn exp_sub_sum_f32(self, x: &[f32], m: f32, out: &mut [f32]) -> Result<f64> {
        if x.len() != out.len() {
            return Err(len_mismatch("exp_sub_sum_f32", x.len(), out.len()));
        }
        Ok(self.run(ExpSubSumOp { x, m, out }))
    }

    /// `x *= a`; see [`scale_f32`].
    pub fn scale_f32(self, x: &mut [f32], a: f32) {
        self.run(MapInPlace { x, f: Scale(a) })
    }

    /// Softmax of a row; see [`softmax_f32`].
    pub fn softmax_f32(self, x: &[f32], out: &mut [f32]) -> Result<()> {
        if x.len() != out.len() {
            return Err(len_mismatch("softmax_f32", x.len(), out.len()));
        }
        self.run(SoftmaxOp { x, out });
        Ok(())
    }

    /// Backward of log-softmax for a row; see [`log_softmax_backward_f32`].
    pub fn log_softmax_backward_f32(self, y: &[f32], g: &[f32], out: &mut [f32]) -> Result<()> {
        check_lens("log_softmax_backward_f32", y, g, out)?;
        self.run(BackOp { kind: BackKind::LogSoftmax, v: y, g, out });
        Ok(())
    }

    /// Backward of softmax for a row; see [`softmax_backward_f32`].
    pub fn softmax_backward_f32(self, s: &[f32], g: &[f32], out: &mut [f32]) -> Result<()> {
        check_lens("softmax_backward_f32", s, g, out)?;
        self.run(BackOp { kind: BackKind::Softmax, v: s, g, out });
        Ok(())
    }

    /// Backward of logsumexp for a row; see [`logsumexp_backward_f32`].
    pub fn logsumexp_backward_f32(self, x: &[f32], lse: f32, g: f32, out: &mut [f32]) -> Result<()> {
        check_lens("logsumexp_backward_f32", x, x, out)?;
        self.run(BackOp { kind: BackKind::Lse { lse, g }, v: x, g: &[], out });
        Ok(())
    }

    /// Log-softmax of a row; see [`log_softmax_f32`].
    pub fn log_softmax_f32(self, x: &[f32], out: &mut [f32]) -> Result<()> {
        if x.len() != out.len() {
            return Err(len_mismatch("log_softmax_f32", x.len(), out.len()));
        }
        self.run(LogSoftmaxOp { x, out });
        Ok(())
    }
}

fn check_lens(op: &'static str, a: &[f32], b: &[f32], out: &[f32]) -> Result<()> {
    if a.len() != out.len() {
        return Err(len_mismatch(op, a.len(), out.len()));
    }
    if b.len() != out.len() {
        return Err(len_mismatch(op, b.len(), out.len()));
    }
    Ok(())
}

fn lse_from(x: &[f32], m: f32, s: f64) -> f32 {
    if m.is_nan() {
        f32::NAN
    } else if m.is_infinite() || x.is_empty() {
        // torch.logsumexp: +inf if any +inf (and no NaN), -inf if every element is -inf or empty
        m
    } else {
        (m as f64 + s.ln()) as f32
    }
}

/// Maximum of a row, NaN if any element is NaN, `-inf` for an empty row (`torch.amax` on one row,
/// except that torch rejects empty rows).
///
/// ```
/// assert_eq!(infoloss::kernels::max_f32(&[1.0, 3.0, -2.0]), 3.0);
/// assert!(infoloss::kernels::max_f32(&[1.0, f32::NAN]).is_nan());
/// assert_eq!(infoloss::kernels::max_f32(&[]), f32::NEG_INFINITY);
/// ```
pub fn max_f32(x: &[f32]) -> f32 {
    Kernels::new().max_f32(x)
}

/// Row maximum `m` and `s = Σ exp(x − m)` in one read of the row (online softmax: the running sum
/// is rescaled by `exp(m_old − m_new)` whenever the maximum grows, block by block).
///
/// `s` is accumulated in `f32` lanes flushed every 512 elements into `f64`, and is returned in
/// `f64`. Special rows follow the IEEE evaluation of the formula, as `log_softmax` does: a NaN
/// element gives `(NaN, NaN)`; a `+inf` element gives `(+inf, NaN)`; a row of `-inf` gives
/// `(-inf, NaN)`; the empty row gives `(-inf, 0)`.
///
/// ```
/// let (m, s) = infoloss::kernels::max_sum_exp_f32(&[0.0, 1.0, 2.0]);
/// assert_eq!(m, 2.0);
/// assert!((s - (1.0 + (-1.0f64).exp() + (-2.0f64).exp())).abs() < 1e-6);
/// ```
pub fn max_sum_exp_f32(x: &[f32]) -> (f32, f64) {
    Kernels::new().max_sum_exp_f32(x)
}

/// `ln Σ exp(x)` of a row with `torch.logsumexp` semantics: `m + ln Σ exp(x − m)`, `+inf` if an
/// element is `+inf`, `-inf` if every element is `-inf` or the row is empty, NaN if an element is
/// NaN. Gradient: `softmax(x)`.
///
/// ```
/// let l = infoloss::kernels::logsumexp_f32(&[1.0, 2.0, 3.0]);
/// assert!((l - 3.407_606).abs() < 1e-6);
/// assert_eq!(infoloss::kernels::logsumexp_f32(&[f32::NEG_INFINITY; 2]), f32::NEG_INFINITY);
/// ```
pub fn logsumexp_f32(x: &[f32]) -> f32 {
    Kernels::new().logsumexp_f32(x)
}

/// Writes `out[i] = exp(x[i] − m)` and returns `Σ out[i]` (accumulated as in
/// [`max_sum_exp_f32`], returned in `f64`). Any `m` is allowed (the general [`exp_f32`] is used);
/// with `m` the row max this is the numerator and denominator of softmax.
///
/// # Errors
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `x` and `out` differ in length.
///
/// ```
/// let mut e = [0.0f32; 2];
/// let s = infoloss::kernels::exp_sub_sum_f32(&[1.0, 1.0 + 2.0f32.ln()], 1.0, &mut e).unwrap();
/// assert_eq!(e, [1.0, 2.0]);
/// assert_eq!(s, 3.0);
/// ```
///
/// [`exp_f32`]: crate::kernels::exp_f32
pub fn exp_sub_sum_f32(x: &[f32], m: f32, out: &mut [f32]) -> Result<f64> {
    Kernels::new().exp_sub_sum_f32(x, m, out)
}

/// `x[i] *= a` in place.
///
/// ```
/// let mut x = [1.0f32, -2.0];
/// infoloss::kernels::scale_f32(&mut x, 0.5);
/// assert_eq!(x, [0.5, -1.0]);
/// ```
pub fn scale_f32(x: &mut [f32], a: f32) {
    Kernels::new().scale_f32(x, a)
}

/// `out = softmax(x)` of one row (`torch.softmax(x, -1)`): `exp(x − m)/Σ exp(x − m)`, computed with
/// one `exp` per element (online pass writing `exp(x − m_running)` into `out`, then one rescale).
/// Rows with a NaN or `+inf` element, or with every element `-inf`, give NaN everywhere, as in
/// PyTorch. Gradient: `s·(g − Σ g·s)`.
///
/// # Errors
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `x` and `out` differ in length.
///
/// ```
/// let mut p = [0.0f32; 2];
/// infoloss::kernels::softmax_f32(&[0.0, 3.0f32.ln()], &mut p).unwrap();
/// assert!((p[0] - 0.25).abs() < 1e-7 && (p[1] - 0.75).abs() < 1e-7);
/// ```
pub fn softmax_f32(x: &[f32], out: &mut [f32]) -> Result<()> {
    Kernels::new().softmax_f32(x, out)
}

/// `out = log_softmax(x)` of one row (`torch.log_softmax(x, -1)`), in PyTorch's order of
/// operations: `(x − m) − ln Σ exp(x − m)` (the sum in `f64`, its log rounded to `f32`). Rows with
/// a NaN or `+inf` element, or with every element `-inf`, give NaN everywhere. Gradient:
/// `g − exp(y)·Σ g`.
///
/// # Errors
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `x` and `out` differ in length.
///
/// ```
/// let mut y = [0.0f32; 2];
/// infoloss::kernels::log_softmax_f32(&[0.0, 0.0], &mut y).unwrap();
/// assert_eq!(y, [-std::f32::consts::LN_2; 2]);
/// ```
pub fn log_softmax_f32(x: &[f32], out: &mut [f32]) -> Result<()> {
    Kernels::new().log_softmax_f32(x, out)
}

/// Backward of [`log_softmax_f32`] for one row, from its output `y` and the upstream gradient `g`:
/// `out = g − exp(y)·Σ g` (`Σ g` accumulated as in [`max_sum_exp_f32`] and rounded to `f32`, then
/// PyTorch's unfused `g − exp(y)·sum`).
///
/// # Errors
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the three lengths differ.
///
/// ```
/// let mut out = [0.0f32; 2];
/// let y = [-std::f32::consts::LN_2; 2];
/// infoloss::kernels::log_softmax_backward_f32(&y, &[1.0, 0.0], &mut out).unwrap();
/// assert_eq!(out, [0.5, -0.5]);
/// ```
pub fn log_softmax_backward_f32(y: &[f32], g: &[f32], out: &mut [f32]) -> Result<()> {
    Kernels::new().log_softmax_backward_f32(y, g, out)
}

/// Backward of [`softmax_f32`] for one row, from its output `s` and the upstream gradient `g`:
/// `out = (g − Σ g·s)·s`.
///
/// # Errors
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the three lengths differ.
///
/// ```
/// let mut out = [0.0f32; 2];
/// infoloss::kernels::softmax_backward_f32(&[0.25, 0.75], &[1.0, 0.0], &mut out).unwrap();
/// assert_eq!(out, [0.1875, -0.1875]);
/// ```
pub fn softmax_backward_f32(s: &[f32], g: &[f32], out: &mut [f32]) -> Result<()> {
    Kernels::new().softmax_backward_f32(s, g, out)
}

/// Backward of [`logsumexp_f32`] for one row: `out = g·exp(x − lse)` with `lse` the row's
/// log-sum-exp and `g` its upstream gradient (NaN at `+inf` elements when `lse = +inf`, as PyTorch).
///
/// # Errors
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `x` and `out` differ in length.
///
/// ```
/// let mut out = [0.0f32; 2];
/// infoloss::kernels::logsumexp_backward_f32(&[0.0, 0.0], std::f32::consts::LN_2, 3.0, &mut out).unwrap();
/// assert_eq!(out, [1.5, 1.5]);
/// ```
pub fn logsumexp_backward_f32(x: &[f32], lse: f32, g: f32, out: &mut [f32]) -> Result<()> {
    Kernels::new().logsumexp_backward_f32(x, lse, g, out)
}
