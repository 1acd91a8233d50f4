//! The fuzz harness: turns arbitrary bytes into calls of infoloss's public functions.
//!
//! Shared by the cargo-fuzz targets in `fuzz/` (which include this file with `#[path]`) and by the
//! stable regression test `tests/fuzz_corpus.rs`, which replays the committed corpora
//! (`fuzz/corpus/<target>/`). Each target decodes, with [`arbitrary::Unstructured`], an element type
//! (f32, f64, f16, bf16), shapes (0 to 4 dimensions, sizes 0 to 67, sometimes an empty array whose
//! other dimensions are huge), memory layouts (C order, Fortran order, a reversed axis), values (typical
//! ones, special ones — ±0, ±inf, NaN, subnormals, extremes — and arbitrary bit patterns), class targets
//! (valid, `ignore_index`, out of range, `i64::MIN/MAX`) and options (every reduction including invalid
//! combinations, weights of right and wrong shapes, odd label smoothing, temperatures, bases, axes), then
//! calls the function. Any panic, abort or sanitizer report is a bug. Besides "no panic", each target
//! checks what must hold whenever the call succeeds: output and gradient shapes, and that the fused
//! `*_with_grad` returns the same loss as the plain forward.

#![allow(dead_code)]

use arbitrary::{Result, Unstructured};
use infoloss::half::{bf16, f16};
use infoloss::ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, IxDyn, ShapeBuilder};
use infoloss::{Element, GradOutput, Loss, Real, Reduction};

/// The target that fuzzes each loss of the core's option catalog (`tests/fuzz_corpus.rs` checks every catalog
/// loss is listed).
pub const CATALOG_TARGETS: &[(&str, &str)] = &[
    ("cross_entropy", "cross_entropy"),
    ("cross_entropy_probs", "cross_entropy_probs"),
    ("nll_loss", "nll_loss"),
    ("kl_div", "kl_div"),
    ("binary_cross_entropy", "bce"),
    ("binary_cross_entropy_with_logits", "bce_with_logits"),
    ("entropy", "entropy"),
    ("shannon_cross_entropy", "entropy"),
    ("jensenshannon", "jensenshannon"),
    ("distill", "distill"),
    ("distill_topk", "distill"),
    ("uda_consistency", "uda"),
    ("cross_entropy_extras", "ce_extras"),
    ("linear_cross_entropy", "linear"),
    ("linear_distill", "linear"),
    // the linear target does not call linear_distill_topk yet (its chunk loop is linear_distill's)
    ("linear_distill_topk", "linear"),
];

/// Every fuzz target, by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[&str] = &[
    "softmax",
    "nll_loss",
    "cross_entropy",
    "cross_entropy_probs",
    "kl_div",
    "bce",
    "bce_with_logits",
    "info_elementwise",
    "entropy",
    "jensenshannon",
    "ce_extras",
    "distill",
    "uda",
    "linear",
    "kernels",
];

/// Makes the calling thread the one thread of rayon's global pool, so the library's parallel loops run
/// inline on it instead of being handed to another thread and waited for (which cost more than the
/// small inputs of a fuzzer themselves). For the fuzz binaries only (`init:` of their `fuzz_target!`):
/// libFuzzer runs every input on its main thread. A multi-threaded test runner must not call it (the
/// pool's one thread only runs the pool's work while it is inside a parallel loop itself).
pub fn single_threaded() {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build_global();
}

/// Runs one target on `data`. Returns `false` for an unknown target name.
pub fn run(target: &str, data: &[u8]) -> bool {
    let f: fn(&[u8]) = match target {
        "softmax" => targets::softmax,
        "nll_loss" => targets::nll_loss,
        "cross_entropy" => targets::cross_entropy,
        "cross_entropy_probs" => targets::cross_entropy_probs,
        "kl_div" => targets::kl_div,
        "bce" => targets::bce,
        "bce_with_logits" => targets::bce_with_logits,
        "info_elementwise" => targets::info_elementwise,
        "entropy" => targets::entropy,
        "jensenshannon" => targets::jensenshannon,
        "ce_extras" => targets::ce_extras,
        "distill" => targets::distill,
        "uda" => targets::uda,
        "linear" => targets::linear,
        "kernels" => targets::kernels,
        _ => return false,
    };
    f(data);
    true
}

/// One entry point per target (each fuzz binary calls only its own, so it compiles only that code).
pub mod targets {
    use super::*;

    macro_rules! by_dtype {
        ($($name:ident => $f:ident),* $(,)?) => {$(
            /// Runs the target on `data` (the first byte picks f32, f64, f16 or bf16).
            pub fn $name(data: &[u8]) {
                let mut u = Unstructured::new(data);
                let u = &mut u;
                let _ = match u.int_in_range(0u8..=3) {
                    Ok(0) => $f::<f32>(u),
                    Ok(1) => $f::<f64>(u),
                    Ok(2) => $f::<f16>(u),
                    Ok(_) => $f::<bf16>(u),
                    Err(_) => Ok(()),
                };
            }
        )*};
    }

    by_dtype! {
        softmax => softmax_t,
        nll_loss => nll,
        cross_entropy => ce,
        cross_entropy_probs => ce_probs,
        kl_div => kl,
        bce => bce_t,
        bce_with_logits => bce_logits,
        info_elementwise => info_elem,
        entropy => entropy_t,
        jensenshannon => js,
        ce_extras => ce_extras_t,
        distill => distill_t,
        uda => uda_t,
    }

    /// `linear_cross_entropy`, `linear_distill` and `matmul` (f32 or f64).
    pub fn linear(data: &[u8]) {
        let mut u = Unstructured::new(data);
        let _ = if u.arbitrary::<bool>().unwrap_or(false) {
            linear_t::<f64>(&mut u)
        } else {
            linear_t::<f32>(&mut u)
        };
    }

    /// The SIMD kernels at every instruction-set level.
    pub fn kernels(data: &[u8]) {
        let mut u = Unstructured::new(data);
        let _ = kernels_t(&mut u);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------------------

/// Non-empty arrays are kept at most this large, so each run is fast.
const MAX_NUMEL: usize = 600;

const SPECIAL: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    1e-45,
    1e-300,
    5e-324,
    -1e-300,
    1e30,
    -1e30,
    88.8,
    -104.0,
    709.9,
    -745.2,
    65504.0,
    3.4e38,
    f64::MAX,
    f64::MIN,
    1e-8,
    1.0 - 1e-8,
];

/// A value: mostly typical magnitudes, often special, sometimes any bit pattern.
pub fn value(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0u8..=15)? {
        0..=2 => *u.choose(SPECIAL)?,
        3 => f64::from_bits(u.arbitrary()?),
        4 => f32::from_bits(u.arbitrary()?) as f64,
        _ => u.int_in_range(-3000i32..=3000)? as f64 / 100.0,
    })
}

/// A probability-like value: mostly in [0, 1], sometimes anything.
pub fn prob(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0u8..=11)? {
        0 => value(u)?,
        1 => *u.choose(&[0.0, 1.0, 1e-45, 1.0 - 1e-7, 0.5])?,
        _ => u.int_in_range(0u32..=1000)? as f64 / 1000.0,
    })
}

fn conv<T: Element>(v: f64) -> T {
    T::from_acc(<T::Acc as Real>::c(v))
}

/// A dimension size: mostly 1 to 6, sometimes 0 or up to 67.
fn dim(u: &mut Unstructured<'_>) -> Result<usize> {
    Ok(match u.int_in_range(0u8..=15)? {
        0 => 0,
        1 => u.int_in_range(7usize..=67)?,
        _ => u.int_in_range(1usize..=6)?,
    })
}

/// Empty arrays are generated with other dimensions whose product is either at most 2^11
/// ([`SMALL_EMPTY_LOG2_MAX`]: every empty-input path, with results small enough to compute) or between
/// 2^48 and 2^62 (`HUGE_EMPTY_LOG2_MIN..=HUGE_EMPTY_LOG2_MAX`: any result sized by those dimensions is
/// larger than the address space, so the functions must return `Error::TooLarge`, and must not visit
/// the empty rows one by one). Products in between would be legitimate results of gigabytes, too slow
/// for a fuzzer.
pub const SMALL_EMPTY_LOG2_MAX: u32 = 11;
/// See [`SMALL_EMPTY_LOG2_MAX`].
pub const HUGE_EMPTY_LOG2_MIN: u32 = 48;
/// See [`SMALL_EMPTY_LOG2_MAX`]: 2^62 elements still have a valid shape (at most `isize::MAX`).
pub const HUGE_EMPTY_LOG2_MAX: u32 = 62;

/// A shape of `lo..=hi` dimensions; sometimes an empty array whose other dimensions are large.
pub fn shape(u: &mut Unstructured<'_>, lo: usize, hi: usize) -> Result<Vec<usize>> {
    let nd = u.int_in_range(lo..=hi)?;
    let mut s = Vec::with_capacity(nd);
    for _ in 0..nd {
        s.push(dim(u)?);
    }
    if nd >= 2 && u.ratio(1u8, 24)? {
        let z = u.choose_index(nd)?;
        s[z] = 0;
        let huge = u.arbitrary::<bool>()?;
        let mut budget = if huge {
            u.int_in_range(HUGE_EMPTY_LOG2_MIN..=HUGE_EMPTY_LOG2_MAX)?
        } else {
            SMALL_EMPTY_LOG2_MAX
        };
        let last = if z == nd - 1 { nd - 2 } else { nd - 1 };
        for (i, d) in s.iter_mut().enumerate() {
            if i == z {
                continue;
            }
            // A huge budget is spent in full (the last dimension takes what is left).
            let e = if huge && i == last {
                budget
            } else if budget > 0 && u.ratio(1u8, 2)? {
                u.int_in_range(1..=budget)?
            } else {
                0
            };
            budget -= e;
            *d = 1usize << e;
        }
    }
    shrink(&mut s);
    Ok(s)
}

/// The number of elements of `shape`, saturating (the huge dimensions of an empty input, made non-empty
/// by [`near_shape`], may multiply past `usize::MAX`).
fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

/// Shrinks a non-empty shape until it has at most [`MAX_NUMEL`] elements.
fn shrink(s: &mut [usize]) {
    if s.contains(&0) {
        return;
    }
    while numel(s) > MAX_NUMEL {
        if let Some(m) = s.iter_mut().max_by_key(|d| **d) {
            *m = (*m / 2).max(1);
        }
    }
}

/// An array of `shape` (shrunk to at most [`MAX_NUMEL`] elements: a weight or target asked for the huge
/// dimensions of an empty input gets a small wrong shape), stored in C or Fortran order, with values
/// from `gen`.
pub fn array_with<T: Element>(
    u: &mut Unstructured<'_>,
    shape: &[usize],
    values: fn(&mut Unstructured<'_>) -> Result<f64>,
) -> Result<ArrayD<T>> {
    let mut shape = shape.to_vec();
    shrink(&mut shape);
    let shape = &shape[..];
    let n = numel(shape);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(conv::<T>(values(u)?));
    }
    let fortran = u.ratio(1u8, 5)?;
    ArrayD::from_shape_vec(IxDyn(shape).set_f(fortran), v).map_err(|_| arbitrary::Error::IncorrectFormat)
}

/// An array with typical/special values.
pub fn array<T: Element>(u: &mut Unstructured<'_>, shape: &[usize]) -> Result<ArrayD<T>> {
    array_with(u, shape, value)
}

/// A view of `a`, sometimes with one axis reversed (negative stride).
pub fn view<'a, T>(u: &mut Unstructured<'_>, a: &'a ArrayD<T>) -> Result<ArrayViewD<'a, T>> {
    Ok(flipped(a, flip(u, a.ndim())?))
}

/// Which axis (if any) of an array of `ndim` dimensions to reverse.
fn flip(u: &mut Unstructured<'_>, ndim: usize) -> Result<Option<usize>> {
    Ok(if ndim > 0 && u.ratio(1u8, 5)? { Some(u.choose_index(ndim)?) } else { None })
}

/// `a` with axis `axis` reversed.
fn flipped<T>(a: &ArrayD<T>, axis: Option<usize>) -> ArrayViewD<'_, T> {
    let mut v = a.view();
    if let Some(ax) = axis {
        v.invert_axis(Axis(ax));
    }
    v
}

/// Class indices: stored, or one value broadcast to a shape too large to store (the rows of an empty
/// input with huge other dimensions).
pub struct Targets {
    base: ArrayD<i64>,
    shape: Vec<usize>,
}

impl Targets {
    /// The targets, of their full shape.
    pub fn view(&self) -> ArrayViewD<'_, i64> {
        self.base.broadcast(IxDyn(&self.shape)).unwrap_or_else(|| self.base.view())
    }
}

/// Class indices for `classes` classes: mostly valid, sometimes `ignore_index` or out of range.
pub fn targets(u: &mut Unstructured<'_>, shape: &[usize], classes: usize, ignore: i64) -> Result<Targets> {
    let n = numel(shape);
    let (stored, count) = if n > MAX_NUMEL { (vec![1; shape.len()], 1) } else { (shape.to_vec(), n) };
    let mut v = Vec::with_capacity(count);
    for _ in 0..count {
        let t = match u.int_in_range(0u8..=19)? {
            0 => ignore,
            1 => *u.choose(&[-1, classes as i64, i64::MIN, i64::MAX, -100])?,
            _ => u.int_in_range(0..=(classes.max(1) as i64 - 1))?,
        };
        v.push(t);
    }
    let base = ArrayD::from_shape_vec(IxDyn(&stored), v).map_err(|_| arbitrary::Error::IncorrectFormat)?;
    Ok(Targets { base, shape: shape.to_vec() })
}

pub fn reduction(u: &mut Unstructured<'_>) -> Result<Reduction> {
    Ok(*u.choose(&[
        Reduction::None,
        Reduction::Mean,
        Reduction::Sum,
        Reduction::BatchMean,
        Reduction::Mean,
    ])?)
}

fn smoothing(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0u8..=7)? {
        0..=3 => 0.0,
        4 => u.int_in_range(0u32..=100)? as f64 / 100.0,
        _ => *u.choose(&[1.0, 1.5, -0.1, f64::NAN, f64::INFINITY, 1e-12])?,
    })
}

fn ignore_index(u: &mut Unstructured<'_>) -> Result<i64> {
    Ok(*u.choose(&[-100, -100, -1, 0, 1, 3, i64::MIN, i64::MAX])?)
}

/// The shape that class-dimension-1 losses give per row: the input shape without dimension 1.
fn row_shape(s: &[usize]) -> Vec<usize> {
    match s.len() {
        0 | 1 => vec![],
        _ => {
            let mut r = vec![s[0]];
            r.extend_from_slice(&s[2..]);
            r
        }
    }
}

/// A shape near `s`: mostly `s` itself, sometimes with one dimension changed or removed, or random.
fn near_shape(u: &mut Unstructured<'_>, s: &[usize]) -> Result<Vec<usize>> {
    let mut r = s.to_vec();
    match u.int_in_range(0u8..=9)? {
        0 if !r.is_empty() => {
            let i = u.choose_index(r.len())?;
            r[i] = dim(u)?;
        }
        1 if !r.is_empty() => {
            r.remove(0);
        }
        2 => {
            r = shape(u, 0, 4)?;
        }
        3 if !r.is_empty() => {
            let i = u.choose_index(r.len())?;
            r[i] = 1;
        }
        _ => {}
    }
    shrink(&mut r);
    Ok(r)
}

// ---------------------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------------------

/// Two computations of the same value agree: equal, both NaN, or within a relative tolerance of the
/// larger of `|a|`, `|b|`, 1 and `mag`, the size of the terms the value is a sum of. A sum whose terms
/// cancel (targets of ±1e30 against equal log-probabilities, logits of −1e30 and 1e30) depends on the
/// order of summation by up to `mag`·ε, and two correct code paths sum in different orders (fuzz
/// findings of 2 December 2026: 13.5 against −0, −0.93 against −2.17). A non-finite `mag` (terms too
/// large to add) leaves the value undetermined: anything goes.
fn agree<T: Element>(a: T, b: T, mag: f64, what: &str) {
    let (x, y) = (a.to_acc().f64(), b.to_acc().f64());
    let (tol, max) = match T::DTYPE {
        infoloss::DType::F64 => (1e-9, f64::MAX),
        infoloss::DType::F32 => (1e-4, f32::MAX as f64),
        infoloss::DType::BF16 => (2e-2, bf16::MAX.to_f64()),
        _ => (2e-2, f16::MAX.to_f64()),
    };
    // (terms near the type's overflow threshold: one order of summation may overflow, another not)
    if x == y || (x.is_nan() && y.is_nan()) || mag.is_nan() || mag >= max / 4.0 {
        return;
    }
    let scale = x.abs().max(y.abs()).max(1.0).max(mag);
    assert!((x - y).abs() <= tol * scale, "{what}: {x} and {y} should agree (term magnitude {mag:e})");
}

/// The size of the terms a loss is a sum of (see [`agree`]): one number for a reduced loss, one per
/// element for `Reduction::None`. `None` where no terms cancel.
#[derive(Debug, Clone)]
pub enum Mag {
    All(f64),
    Each(ArrayD<f64>),
}

impl Mag {
    /// `Σ_i m_i / div` of per-element magnitudes `m` for a reduced loss, `m` itself for `'none'`.
    fn reduce(m: ArrayD<f64>, reduction: Reduction, div: usize) -> Mag {
        match reduction {
            Reduction::None => Mag::Each(m),
            _ => Mag::All(m.iter().map(|v| v.abs()).sum::<f64>() / div.max(1) as f64),
        }
    }

    /// The magnitude of a reduced loss from its unreduced elements `none` (the same loss with
    /// `Reduction::None`, when that succeeds): `Σ|l_i|` over `div`. For `'none'` itself: `None`.
    fn of_elements<T: Element>(none: R<Loss<T>>, reduction: Reduction, batch: bool) -> Option<Mag> {
        let Ok(Loss::Elementwise(l)) = none else { return None };
        let div = match reduction {
            Reduction::None => return None,
            Reduction::Sum => 1,
            Reduction::Mean => l.len(),
            Reduction::BatchMean if batch => l.shape().first().copied().unwrap_or(1),
            Reduction::BatchMean => l.len(),
        };
        Some(Mag::reduce(l.mapv(|v| v.to_acc().f64()), reduction, div))
    }

    fn at(m: Option<&Mag>, i: &[usize]) -> f64 {
        match m {
            None => 0.0,
            Some(Mag::All(v)) => *v,
            Some(Mag::Each(a)) => a.get(i).copied().unwrap_or(0.0),
        }
    }
}

fn agree_loss<T: Element>(a: &Loss<T>, b: &Loss<T>, mag: Option<&Mag>, what: &str) {
    match (a, b) {
        (Loss::Scalar(x), Loss::Scalar(y)) => agree(*x, *y, Mag::at(mag, &[]), what),
        (Loss::Elementwise(x), Loss::Elementwise(y)) => {
            assert_eq!(x.shape(), y.shape(), "{what}: shapes");
            for ((i, p), q) in x.indexed_iter().zip(y.iter()) {
                agree(
                    *p,
                    *q,
                    Mag::at(mag, infoloss::ndarray::Dimension::slice(&i)),
                    &format!("{what} at {i:?}"),
                );
            }
        }
        _ => panic!("{what}: one loss is reduced and the other is not"),
    }
}

fn loss_shape<T: Element>(l: &Loss<T>, reduction: Reduction, expected_none: &[usize], what: &str) {
    match (l, reduction) {
        (Loss::Elementwise(a), Reduction::None) => assert_eq!(a.shape(), expected_none, "{what}: loss shape"),
        (Loss::Scalar(_), Reduction::Mean | Reduction::Sum | Reduction::BatchMean) => {}
        _ => panic!("{what}: reduction {reduction:?} gave {l:?}"),
    }
}

/// An upstream gradient of a shape near `out_shape` (odds 1 in 3), or None for the upstream gradient 1.
fn upstream<T: Element>(u: &mut Unstructured<'_>, out_shape: &[usize]) -> Result<Option<ArrayD<T>>> {
    if u.ratio(1u8, 3)? {
        let s = near_shape(u, out_shape)?;
        return Ok(Some(array::<T>(u, &s)?));
    }
    Ok(None)
}

fn grad_of<T: Element>(owned: &Option<ArrayD<T>>) -> GradOutput<'_, T> {
    match owned {
        Some(a) => GradOutput::Array(a.view()),
        None => GradOutput::one(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------------------

fn softmax_t<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let s = shape(u, 0, 4)?;
    let x = array::<T>(u, &s)?;
    let xv = view(u, &x)?;
    let dim = u.int_in_range(-5isize..=5)?;
    let gs = near_shape(u, &s)?;
    let g = array::<T>(u, &gs)?;
    if let Ok(y) = infoloss::softmax(xv.clone(), dim) {
        assert_eq!(y.shape(), xv.shape());
        if let Ok(d) = infoloss::softmax_backward(y.view(), g.view(), dim) {
            assert_eq!(d.shape(), xv.shape());
        }
    }
    if let Ok(y) = infoloss::log_softmax(xv.clone(), dim) {
        assert_eq!(y.shape(), xv.shape());
        if let Ok(d) = infoloss::log_softmax_backward(y.view(), g.view(), dim) {
            assert_eq!(d.shape(), xv.shape());
        }
    }
    if let Ok(y) = infoloss::logsumexp(xv.clone(), dim) {
        if let Ok(d) = infoloss::logsumexp_backward(xv.clone(), g.view(), dim) {
            assert_eq!(d.shape(), xv.shape());
        }
        let _ = y;
    }
    Ok(())
}

/// What the class-index losses share: an input with class dimension 1 (a view of `x`, maybe with an
/// axis reversed), class targets of its row shape (sometimes of a nearby wrong shape), the
/// `ignore_index`, and optional class weights.
struct ClassCase<T> {
    s: Vec<usize>,
    x: ArrayD<T>,
    flip: Option<usize>,
    ignore_index: i64,
    t: Targets,
    w: Option<Array1<T>>,
}

impl<T: Element> ClassCase<T> {
    /// Shapes of `lo..=hi` dimensions; weights with odds 1 in `weight_odds`, of a random wrong size
    /// (odds 1 in 6) when `wrong_weight`.
    fn new(
        u: &mut Unstructured<'_>,
        lo: usize,
        hi: usize,
        weight_odds: u8,
        wrong_weight: bool,
    ) -> Result<Self> {
        let s = shape(u, lo, hi)?;
        let x = array::<T>(u, &s)?;
        let flip = flip(u, s.len())?;
        let classes = classes_of(&s);
        let ignore_index = ignore_index(u)?;
        let ts = if u.ratio(1u8, 8)? { near_shape(u, &row_shape(&s))? } else { row_shape(&s) };
        let t = targets(u, &ts, classes, ignore_index)?;
        let w = class_weight(u, classes, weight_odds, wrong_weight)?;
        Ok(ClassCase { s, x, flip, ignore_index, t, w })
    }

    fn xv(&self) -> ArrayViewD<'_, T> {
        flipped(&self.x, self.flip)
    }
}

/// The number of classes of a class-dimension-1 shape (dimension 0 of a 1-D shape).
fn classes_of(s: &[usize]) -> usize {
    s.get(if s.len() == 1 { 0 } else { 1 }).copied().unwrap_or(0)
}

/// Class weights with odds 1 in `odds`: `classes` of them, or (odds 1 in 6, if `wrong`) another number.
fn class_weight<T: Element>(
    u: &mut Unstructured<'_>,
    classes: usize,
    odds: u8,
    wrong: bool,
) -> Result<Option<Array1<T>>> {
    if !u.ratio(1u8, odds)? {
        return Ok(None);
    }
    let n = if wrong && u.ratio(1u8, 6)? { dim(u)? } else { classes };
    Ok(Some(Array1::from(array_with::<T>(u, &[n], prob)?.iter().copied().collect::<Vec<_>>())))
}

type R<A> = std::result::Result<A, infoloss::Error>;

/// The checks of a loss with a fused `_with_grad`: whenever the forward succeeds, its loss has the
/// shape of `reduction` (`none_shape` for `Reduction::None`, when given), and `_with_grad` succeeds too,
/// with the same loss and a gradient of the input's shape.
fn check_fused<T: Element>(
    what: &str,
    forward: R<Loss<T>>,
    with_grad: impl FnOnce() -> R<(Loss<T>, ArrayD<T>)>,
    reduction: Reduction,
    none_shape: Option<&[usize]>,
    input_shape: &[usize],
    mag: Option<&Mag>,
) {
    let Ok(l) = forward else { return };
    if let Some(s) = none_shape {
        loss_shape(&l, reduction, s, what);
    }
    let (l2, g) =
        with_grad().unwrap_or_else(|e| panic!("{what}: _with_grad fails ({e}) where the forward succeeds"));
    agree_loss(&l, &l2, mag, &format!("{what} vs {what}_with_grad"));
    assert_eq!(g.shape(), input_shape, "{what}_with_grad: gradient shape");
}

/// Each backward that succeeds gives a gradient of its argument's shape.
fn check_grads<T: Element>(what: &str, grads: &[(R<ArrayD<T>>, &[usize])]) {
    for (i, (g, shape)) in grads.iter().enumerate() {
        if let Ok(g) = g {
            assert_eq!(g.shape(), *shape, "{what}: shape of gradient {i}");
        }
    }
}

fn nll<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    class_index::<T>(u, false)
}

fn ce<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    class_index::<T>(u, true)
}

/// `nll_loss` (`ce = false`) or `cross_entropy` with class-index targets (`ce = true`, with label
/// smoothing): the same case, options and checks.
fn class_index<T: Element>(u: &mut Unstructured<'_>, ce: bool) -> Result<()> {
    let c = ClassCase::<T>::new(u, 0, 4, 3, true)?;
    let (xv, t, rows) = (c.xv(), c.t.view(), row_shape(&c.s));
    let reduction = reduction(u)?;
    let label_smoothing = if ce { smoothing(u)? } else { 0.0 };
    let up = upstream::<T>(u, &rows)?;
    let g = grad_of(&up);
    let weight = c.w.as_ref().map(|w| w.view());
    let o =
        infoloss::CrossEntropyOptions { weight, ignore_index: c.ignore_index, reduction, label_smoothing };
    let n = infoloss::NllOptions { weight, ignore_index: c.ignore_index, reduction };
    let (x, t2) = (|| xv.clone(), || t.clone());
    let (name, loss, fused, grad) = if ce {
        let fused = infoloss::cross_entropy_with_grad(x(), t2(), &o);
        (
            "cross_entropy",
            infoloss::cross_entropy(x(), t2(), &o),
            fused,
            infoloss::cross_entropy_backward(x(), t2(), &o, &g),
        )
    } else {
        (
            "nll_loss",
            infoloss::nll_loss(x(), t2(), &n),
            infoloss::nll_loss_with_grad(x(), t2(), &n),
            infoloss::nll_loss_backward(x(), t2(), &n, &g),
        )
    };
    check_fused(name, loss, || fused, reduction, Some(&rows), xv.shape(), None);
    check_grads(name, &[(grad, xv.shape())]);
    Ok(())
}

/// An input and a second array of a nearby shape (a target, or Q), each a view maybe with an axis
/// reversed; `x_values` and `t_values` generate their values.
struct Pair<T> {
    s: Vec<usize>,
    x: ArrayD<T>,
    x_flip: Option<usize>,
    t: ArrayD<T>,
    t_flip: Option<usize>,
}

type Gen = fn(&mut Unstructured<'_>) -> Result<f64>;

impl<T: Element> Pair<T> {
    /// Shapes of `lo..=hi` dimensions.
    fn new(u: &mut Unstructured<'_>, (lo, hi): (usize, usize), x_values: Gen, t_values: Gen) -> Result<Self> {
        let s = shape(u, lo, hi)?;
        let x = array_with::<T>(u, &s, x_values)?;
        let x_flip = flip(u, s.len())?;
        let ts = near_shape(u, &s)?;
        let t = array_with::<T>(u, &ts, t_values)?;
        let t_flip = flip(u, ts.len())?;
        Ok(Pair { s, x, x_flip, t, t_flip })
    }

    fn views(&self) -> (ArrayViewD<'_, T>, ArrayViewD<'_, T>) {
        (flipped(&self.x, self.x_flip), flipped(&self.t, self.t_flip))
    }
}

/// The `PairFns` of `infoloss::$loss` and its fused, backward and backward-target functions (named in full).
macro_rules! pair_fns {
    ($loss:ident, $fused:ident, $grad:ident, $grad_target:ident) => {
        PairFns {
            name: stringify!($loss),
            loss: infoloss::$loss::<T, IxDyn, IxDyn>,
            fused: infoloss::$fused::<T, IxDyn, IxDyn>,
            grad: infoloss::$grad::<T, IxDyn, IxDyn>,
            grad_target: infoloss::$grad_target::<T, IxDyn, IxDyn>,
        }
    };
}

/// The library functions of a loss of an input and a target of its shape: the forward, the fused
/// `_with_grad`, and the backwards with respect to the input and to the target.
struct PairFns<T, O> {
    name: &'static str,
    loss: PairFn<T, O, Loss<T>>,
    fused: PairFn<T, O, (Loss<T>, ArrayD<T>)>,
    grad: PairGrad<T, O>,
    grad_target: PairGrad<T, O>,
}

/// A function of two arrays with options `O`.
type PairFn<T, O, Out> = fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O) -> R<Out>;
/// A backward of a [`PairFn`] for an upstream gradient.
type PairGrad<T, O> = fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &O, &GradOutput<'_, T>) -> R<ArrayD<T>>;

/// [`check_pair`] with the term magnitudes of the loss's unreduced elements (`Mag::of_elements` of the forward
/// at the options `none`, `batch` as there).
fn check_pair_by_elements<T: Element, O>(
    f: PairFns<T, O>,
    (xv, tv): (&ArrayViewD<'_, T>, &ArrayViewD<'_, T>),
    (opts, none): (&O, &O),
    reduction: Reduction,
    none_shape: Option<&[usize]>,
    up: &Option<ArrayD<T>>,
    batch: bool,
) {
    let mag = Mag::of_elements((f.loss)(xv.clone(), tv.clone(), none), reduction, batch);
    check_pair(f, (xv, tv), opts, reduction, none_shape, up, mag.as_ref());
}

/// [`check_fused`] and [`check_grads`] of a [`PairFns`] loss (upstream gradient `up`, or 1).
fn check_pair<T: Element, O>(
    f: PairFns<T, O>,
    (xv, tv): (&ArrayViewD<'_, T>, &ArrayViewD<'_, T>),
    opts: &O,
    reduction: Reduction,
    none_shape: Option<&[usize]>,
    up: &Option<ArrayD<T>>,
    mag: Option<&Mag>,
) {
    let (x, t) = (|| xv.clone(), || tv.clone());
    check_fused(
        f.name,
        (f.loss)(x(), t(), opts),
        || (f.fused)(x(), t(), opts),
        reduction,
        none_shape,
        xv.shape(),
        mag,
    );
    let g = grad_of(up);
    check_grads(
        f.name,
        &[((f.grad)(x(), t(), opts, &g), xv.shape()), ((f.grad_target)(x(), t(), opts, &g), tv.shape())],
    );
}

fn ce_probs<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let pair = Pair::<T>::new(u, (0, 4), value, prob)?;
    let (xv, tv) = pair.views();
    let s = &pair.s;
    let w = class_weight::<T>(u, classes_of(s), 3, true)?;
    let reduction = reduction(u)?;
    let opts = infoloss::CrossEntropyOptions {
        weight: w.as_ref().map(|w| w.view()),
        ignore_index: ignore_index(u)?,
        reduction,
        label_smoothing: smoothing(u)?,
    };
    let up = upstream::<T>(u, &row_shape(s))?;
    let mag = ce_probs_mag(&xv, &tv, w.as_ref(), opts.label_smoothing, reduction);
    if let Ok(l) = &infoloss::cross_entropy_probs(xv.clone(), tv.clone(), &opts) {
        let (l3, g, gt) =
            infoloss::cross_entropy::cross_entropy_probs_with_grads(xv.clone(), tv.clone(), &opts)
                .expect("cross_entropy_probs_with_grads fails where the forward succeeds");
        agree_loss(l, &l3, mag.as_ref(), "cross_entropy_probs vs _with_grads");
        assert_eq!((g.shape(), gt.shape()), (xv.shape(), tv.shape()));
    }
    let f = pair_fns!(
        cross_entropy_probs,
        cross_entropy_probs_with_grad,
        cross_entropy_probs_backward,
        cross_entropy_probs_backward_target
    );
    check_pair(f, (&xv, &tv), &opts, reduction, Some(&row_shape(s)), &up, mag.as_ref());
    Ok(())
}

/// The term magnitudes ([`Mag`]) of `cross_entropy_probs`: per row
/// `Σ_c |w_c·t'_c|·(|x_c| + max_c |x_c| + ln C + 1)` (`t'` the smoothed target, non-finite logits
/// counted as 0), a bound on `Σ_c |w_c·t'_c·lsm_c|`.
fn ce_probs_mag<T: Element>(
    x: &ArrayViewD<'_, T>,
    t: &ArrayViewD<'_, T>,
    w: Option<&Array1<T>>,
    eps: f64,
    reduction: Reduction,
) -> Option<Mag> {
    if x.ndim() == 0 || x.shape() != t.shape() {
        return None;
    }
    let axis = Axis(if x.ndim() == 1 { 0 } else { 1 });
    let c = x.len_of(axis);
    // (no classes and huge other dimensions: as many rows as the address space, each of loss 0)
    let mut rows = x.shape().iter().enumerate().filter(|&(k, _)| k != axis.index()).map(|(_, &d)| d);
    if rows.try_fold(1usize, |a, d| a.checked_mul(d)).is_none_or(|n| n > 1 << 20) {
        return None;
    }
    let eps = if eps > 0.0 { eps } else { 0.0 };
    let f = |v: &T| v.to_acc().f64();
    let fin = |v: &T| if f(v).is_finite() { f(v).abs() } else { 0.0 };
    let w = w.filter(|w| w.len() == c);
    let rows = infoloss::ndarray::Zip::from(x.lanes(axis)).and(t.lanes(axis)).map_collect(|xl, tl| {
        let m = xl.iter().map(fin).fold(0.0, f64::max);
        let lnc = (c as f64).ln();
        let term = |(k, (xv, tv)): (usize, (&T, &T))| {
            let wk = w.and_then(|w| w.get(k)).map_or(1.0, f);
            (wk * (f(tv) * (1.0 - eps) + eps / c as f64)).abs() * (fin(xv) + m + lnc + 1.0)
        };
        xl.iter().zip(tl).enumerate().map(term).sum::<f64>()
    });
    let n = rows.len();
    Some(Mag::reduce(rows, reduction, n))
}

fn kl<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let log_target = u.arbitrary::<bool>()?;
    if u.ratio(1u8, 24)? {
        return kl_huge_broadcast::<T>(u, log_target);
    }
    let pair = Pair::<T>::new(u, (0, 4), value, if log_target { value } else { prob })?;
    let (xv, tv) = pair.views();
    let s = &pair.s;
    let reduction = reduction(u)?;
    let opts = infoloss::KlDivOptions { reduction, log_target };
    let up = upstream::<T>(u, s)?;
    let f = pair_fns!(kl_div, kl_div_with_grad, kl_div_backward, kl_div_backward_target);
    let none = infoloss::KlDivOptions { reduction: Reduction::None, log_target };
    check_pair_by_elements(f, (&xv, &tv), (&opts, &none), reduction, None, &up, true);
    Ok(())
}

/// Two one-element arrays broadcast to `[2^a, 1]` and `[1, 2^b]` with `a + b` in
/// `HUGE_EMPTY_LOG2_MIN..=HUGE_EMPTY_LOG2_MAX`: their broadcast is larger than memory, so every
/// `kl_div` function must return `Error::TooLarge` (PyTorch materializes the pointwise loss), whatever
/// the reduction, and at once.
fn kl_huge_broadcast<T: Element>(u: &mut Unstructured<'_>, log_target: bool) -> Result<()> {
    let e = u.int_in_range(HUGE_EMPTY_LOG2_MIN..=HUGE_EMPTY_LOG2_MAX)?;
    let a = u.int_in_range(1..=e - 1)?;
    let (x, t) = (
        ArrayD::from_elem(IxDyn(&[1, 1]), conv::<T>(value(u)?)),
        ArrayD::from_elem(IxDyn(&[1]), conv::<T>(prob(u)?)),
    );
    let bad = || arbitrary::Error::IncorrectFormat;
    let xv = x.broadcast(IxDyn(&[1 << a, 1])).ok_or_else(bad)?;
    let tv = t.broadcast(IxDyn(&[1, 1 << (e - a)])).ok_or_else(bad)?;
    let opts = infoloss::KlDivOptions { reduction: reduction(u)?, log_target };
    let g = GradOutput::one();
    let too_large = |r: R<()>, what: &str| {
        assert!(matches!(r, Err(infoloss::Error::TooLarge { .. })), "{what} of a broadcast of 2^{e}: {r:?}");
    };
    too_large(infoloss::kl_div(xv.clone(), tv.clone(), &opts).map(drop), "kl_div");
    too_large(infoloss::kl_div_with_grad(xv.clone(), tv.clone(), &opts).map(drop), "kl_div_with_grad");
    too_large(infoloss::kl_div_backward(xv.clone(), tv.clone(), &opts, &g).map(drop), "kl_div_backward");
    too_large(infoloss::kl_div_backward_target(xv, tv, &opts, &g).map(drop), "kl_div_backward_target");
    Ok(())
}

/// Weights for the binary losses (odds 1 in 3), of a shape near `s`.
fn binary_weight<T: Element>(u: &mut Unstructured<'_>, s: &[usize]) -> Result<Option<ArrayD<T>>> {
    if !u.ratio(1u8, 3)? {
        return Ok(None);
    }
    let ws = near_shape(u, s)?;
    Ok(Some(array_with::<T>(u, &ws, prob)?))
}

fn bce_t<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let pair = Pair::<T>::new(u, (0, 4), prob, prob)?;
    let w = binary_weight::<T>(u, &pair.s)?;
    let reduction = reduction(u)?;
    let opts = infoloss::BceOptions { weight: w.as_ref().map(|w| w.view()), reduction };
    let up = upstream::<T>(u, &pair.s)?;
    let f = pair_fns!(
        binary_cross_entropy,
        binary_cross_entropy_with_grad,
        binary_cross_entropy_backward,
        binary_cross_entropy_backward_target
    );
    let (xv, tv) = pair.views();
    let none = infoloss::BceOptions { reduction: Reduction::None, weight: opts.weight.clone() };
    check_pair_by_elements(f, (&xv, &tv), (&opts, &none), reduction, Some(&pair.s), &up, false);
    Ok(())
}

fn bce_logits<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let pair = Pair::<T>::new(u, (0, 4), value, prob)?;
    let s = &pair.s;
    let w = binary_weight::<T>(u, s)?;
    let pw = if u.ratio(1u8, 3)? {
        let ws = if u.arbitrary::<bool>()? {
            s.last().map(|&c| vec![c]).unwrap_or_default()
        } else {
            near_shape(u, s)?
        };
        Some(array_with::<T>(u, &ws, prob)?)
    } else {
        None
    };
    let reduction = reduction(u)?;
    let opts = infoloss::BceWithLogitsOptions {
        weight: w.as_ref().map(|w| w.view()),
        pos_weight: pw.as_ref().map(|w| w.view()),
        reduction,
    };
    let up = upstream::<T>(u, s)?;
    let f = pair_fns!(
        binary_cross_entropy_with_logits,
        binary_cross_entropy_with_logits_with_grad,
        binary_cross_entropy_with_logits_backward,
        binary_cross_entropy_with_logits_backward_target
    );
    let (xv, tv) = pair.views();
    let none = infoloss::BceWithLogitsOptions {
        reduction: Reduction::None,
        weight: opts.weight.clone(),
        pos_weight: opts.pos_weight.clone(),
    };
    check_pair_by_elements(f, (&xv, &tv), (&opts, &none), reduction, Some(s), &up, false);
    Ok(())
}

fn base(u: &mut Unstructured<'_>) -> Result<Option<f64>> {
    Ok(match u.int_in_range(0u8..=5)? {
        0..=2 => None,
        3 => Some(2.0),
        4 => Some(value(u)?),
        _ => Some(*u.choose(&[1.0, 0.5, 10.0, f64::INFINITY, 0.0, -2.0, f64::NAN])?),
    })
}

fn info_elem<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let s = shape(u, 0, 4)?;
    let p = array_with::<T>(u, &s, prob)?;
    let pv = view(u, &p)?;
    let qs = near_shape(u, &s)?;
    let q = array_with::<T>(u, &qs, prob)?;
    let qv = view(u, &q)?;
    let gs = near_shape(u, &s)?;
    let g = array::<T>(u, &gs)?;
    let b = base(u)?;
    let e = infoloss::entr(pv.clone());
    assert_eq!(e.shape(), pv.shape());
    if let Ok(d) = infoloss::entr_backward(pv.clone(), g.view()) {
        assert_eq!(d.shape(), pv.shape());
    }
    if let Ok(r) = infoloss::rel_entr(pv.clone(), qv.clone()) {
        if let Ok((dp, dq)) = infoloss::rel_entr_backward(pv.clone(), qv.clone(), g.view()) {
            assert_eq!(dp.shape(), pv.shape());
            assert_eq!(dq.shape(), qv.shape());
        }
        let _ = r;
    }
    if let Ok(i) = infoloss::self_information(pv.clone(), b) {
        assert_eq!(i.shape(), pv.shape());
    }
    if let Ok(d) = infoloss::self_information_backward(pv.clone(), b, g.view()) {
        assert_eq!(d.shape(), pv.shape());
    }
    Ok(())
}

fn entropy_t<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let s = shape(u, 0, 4)?;
    let p = array_with::<T>(u, &s, prob)?;
    let pv = view(u, &p)?;
    let with_q = u.arbitrary::<bool>()?;
    let qs = near_shape(u, &s)?;
    let q = array_with::<T>(u, &qs, prob)?;
    let qv = view(u, &q)?;
    let opts = infoloss::EntropyOptions { base: base(u)?, axis: u.int_in_range(-5isize..=5)? };
    let gs = shape(u, 0, 3)?;
    let g = array::<T>(u, &gs)?;
    let qo = if with_q { Some(qv.clone()) } else { None };
    if let Ok(h) = infoloss::entropy(pv.clone(), qo.clone(), &opts) {
        if let Ok((dp, dq)) = infoloss::entropy_backward(pv.clone(), qo.clone(), &opts, h.view()) {
            assert_eq!(dp.shape(), pv.shape());
            assert_eq!(dq.is_some(), with_q);
        }
    }
    let _ = infoloss::entropy_backward(pv.clone(), qo, &opts, g.view());
    if let Ok(h) = infoloss::shannon_cross_entropy(pv.clone(), qv.clone(), &opts) {
        if let Ok((dp, dq)) =
            infoloss::shannon_cross_entropy_backward(pv.clone(), qv.clone(), &opts, h.view())
        {
            assert_eq!(dp.shape(), pv.shape());
            assert_eq!(dq.shape(), qv.shape());
        }
    }
    let _ = infoloss::shannon_cross_entropy_backward(pv, qv, &opts, g.view());
    Ok(())
}

fn js<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let s = shape(u, 0, 4)?;
    let p = array_with::<T>(u, &s, prob)?;
    let pv = view(u, &p)?;
    let qs = near_shape(u, &s)?;
    let q = array_with::<T>(u, &qs, prob)?;
    let qv = view(u, &q)?;
    let opts = infoloss::JensenShannonOptions {
        base: base(u)?,
        axis: u.int_in_range(-5isize..=5)?,
        keepdims: u.arbitrary()?,
    };
    let gs = shape(u, 0, 3)?;
    let g = array::<T>(u, &gs)?;
    if let Ok(d) = infoloss::jensenshannon(pv.clone(), qv.clone(), &opts) {
        if let Ok((dp, dq)) = infoloss::jensenshannon_backward(pv.clone(), qv.clone(), &opts, d.view()) {
            assert_eq!(dp.shape(), pv.shape());
            assert_eq!(dq.shape(), qv.shape());
        }
    }
    let _ = infoloss::jensenshannon_backward(pv, qv, &opts, g.view());
    Ok(())
}

fn ce_extras_t<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let c = ClassCase::<T>::new(u, 1, 3, 4, false)?;
    let (xv, t) = (c.xv(), c.t.view());
    let opts = infoloss::CrossEntropyExtrasOptions {
        weight: c.w.as_ref().map(|w| w.view()),
        ignore_index: c.ignore_index,
        reduction: reduction(u)?,
        label_smoothing: smoothing(u)?,
        lse_square_scale: *u.choose(&[0.0, 1e-4, 1.0, -1.0, f64::NAN])?,
        softcap: *u.choose(&[None, Some(30.0), Some(1.0), Some(0.0), Some(-1.0), Some(f64::INFINITY)])?,
        return_lse: u.arbitrary()?,
        return_token_accuracy: u.arbitrary()?,
    };
    let up = upstream::<T>(u, &row_shape(&c.s))?;
    if let Ok(out) = infoloss::cross_entropy_extras_with_grad(xv.clone(), t.clone(), &opts) {
        assert_eq!(out.grad.shape(), xv.shape());
    }
    check_grads(
        "cross_entropy_extras_backward",
        &[(
            infoloss::cross_entropy_extras_backward(xv.clone(), t, &opts, &grad_of(&up))
                .map(|g| g.into_dyn()),
            xv.shape(),
        )],
    );
    Ok(())
}

/// Options of type `O` with every scalar option drawn from its catalog spec: a value of its kind from a pool of
/// typical, boundary and invalid ones (the default most often), or any of its choices. A new catalog option of
/// a loss fuzzed this way is fuzzed without a change here. Array options stay unset.
fn catalog_options<O: infoloss::options::Options>(u: &mut Unstructured<'_>) -> Result<O> {
    use infoloss::options::{Kind, Value};
    const FLOATS: &[f64] = &[0.0, 0.5, 1.0, 2.0, 4.0, 1.5, -0.5, -1.0, 1e-30, 1e300, f64::NAN, f64::INFINITY];
    let mut o = O::default();
    for spec in O::specs() {
        let keep = u.int_in_range(0u8..=2)? == 0;
        let value = match spec.kind {
            _ if keep => spec.default,
            Kind::Array => continue,
            Kind::Bool => Value::Bool(u.arbitrary()?),
            Kind::Int => Value::Int(*u.choose(&[-100, -1, 0, 1, 3, i64::MIN, i64::MAX])?),
            Kind::Float => Value::Float(*u.choose(FLOATS)?),
            Kind::OptionalFloat => {
                if u.arbitrary()? {
                    Value::None
                } else {
                    Value::Float(*u.choose(FLOATS)?)
                }
            }
            Kind::OptionalCount => *u.choose(&[Value::None, Value::Int(1), Value::Int(2), Value::Int(7)])?,
            Kind::Choice(choices) => Value::Str(u.choose(choices)?),
        };
        o.set(spec.name, value).expect("a value of the option's kind");
    }
    Ok(o)
}

fn distill_opts(u: &mut Unstructured<'_>) -> Result<infoloss::DistillOptions> {
    catalog_options(u)
}

fn distill_t<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    let pair = Pair::<T>::new(u, (1, 3), value, value)?;
    let (xv, tv) = pair.views();
    let s = &pair.s;
    let rows = s.first().copied().unwrap_or(0);
    let classes = s.get(1).copied().unwrap_or(0);
    let opts = distill_opts(u)?;
    let labels = if u.arbitrary::<bool>()? {
        let n = if u.ratio(1u8, 8)? { dim(u)? } else { rows };
        Some(targets(u, &[n], classes, opts.ignore_index)?)
    } else {
        None
    };
    let lv = labels.as_ref().and_then(|l| l.view().into_dimensionality::<infoloss::ndarray::Ix1>().ok());
    let up = upstream::<T>(u, &[rows])?;
    check_fused(
        "distill",
        infoloss::distill(xv.clone(), tv.clone(), lv, &opts),
        || infoloss::distill_with_grad(xv.clone(), tv.clone(), lv, &opts).map(|(l, g)| (l, g.into_dyn())),
        opts.reduction,
        None,
        xv.shape(),
        None,
    );
    let mut xs = xv.to_owned();
    check_in_place(
        "distill_with_grad_in_place",
        infoloss::distill_with_grad_in_place(xs.view_mut(), tv.clone(), lv, &opts),
        &xs,
        infoloss::distill_with_grad(xv.clone(), tv.clone(), lv, &opts),
    );
    let _ = infoloss::distill_backward(xv.clone(), tv.clone(), lv, &opts, &grad_of(&up));
    // Top-k teacher.
    let k = u.int_in_range(0usize..=classes.min(8) + 1)?;
    let krows = if u.ratio(1u8, 8)? { dim(u)? } else { rows };
    // The rows of a huge empty student: one stored row of the teacher, broadcast.
    let stored = if krows.saturating_mul(k) > MAX_NUMEL { 1 } else { krows };
    let mut idx = Vec::with_capacity(stored * k);
    for _ in 0..stored * k {
        idx.push(match u.int_in_range(0u8..=15)? {
            0 => *u.choose(&[-1i64, classes as i64, i64::MAX])?,
            _ => u.int_in_range(0..=(classes.max(1) as i64 - 1))?,
        });
    }
    let bad = || arbitrary::Error::IncorrectFormat;
    let idx = Array2::from_shape_vec((stored, k), idx).map_err(|_| bad())?;
    let mut lp = Vec::with_capacity(stored * k);
    for _ in 0..stored * k {
        lp.push(conv::<T>(-prob(u)? * 5.0));
    }
    let lp = Array2::from_shape_vec((stored, k), lp).map_err(|_| bad())?;
    let teacher = infoloss::SparseTeacher {
        indices: idx.broadcast((krows, k)).ok_or_else(bad)?,
        logprobs: lp.broadcast((krows, k)).ok_or_else(bad)?,
        add_tail: u.arbitrary()?,
    };
    check_fused(
        "distill_topk",
        infoloss::distill_topk(xv.clone(), &teacher, lv, &opts),
        || infoloss::distill_topk_with_grad(xv.clone(), &teacher, lv, &opts).map(|(l, g)| (l, g.into_dyn())),
        opts.reduction,
        None,
        xv.shape(),
        None,
    );
    let mut xs = xv.to_owned();
    check_in_place(
        "distill_topk_with_grad_in_place",
        infoloss::distill_topk_with_grad_in_place(xs.view_mut(), &teacher, lv, &opts),
        &xs,
        infoloss::distill_topk_with_grad(xv.clone(), &teacher, lv, &opts),
    );
    let _ = infoloss::distill_topk_backward(xv, &teacher, lv, &opts, &grad_of(&up));
    Ok(())
}

/// An in-place `*_with_grad` succeeds exactly when the allocating one does, with the same loss and the
/// same gradient (now in `student`), bit for bit (NaN where NaN).
fn check_in_place<T: Element, D: infoloss::ndarray::Dimension>(
    what: &str,
    in_place: R<Loss<T>>,
    student: &infoloss::ndarray::Array<T, D>,
    alloc: R<(Loss<T>, Array2<T>)>,
) {
    let same = |a: T, b: T| {
        let (a, b) = (a.to_acc().f64(), b.to_acc().f64());
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    };
    match (in_place, alloc) {
        (Ok(l), Ok((l2, g))) => {
            match (&l, &l2) {
                (Loss::Scalar(a), Loss::Scalar(b)) => assert!(same(*a, *b), "{what}: loss {a:?} vs {b:?}"),
                (Loss::Elementwise(a), Loss::Elementwise(b)) => {
                    assert_eq!(a.shape(), b.shape(), "{what}: loss shape");
                    assert!(
                        a.iter().zip(b.iter()).all(|(x, y)| same(*x, *y)),
                        "{what}: per-row losses differ"
                    );
                }
                _ => panic!("{what}: loss kinds differ"),
            }
            assert_eq!(student.len(), g.len(), "{what}: gradient size");
            assert!(student.iter().zip(g.iter()).all(|(x, y)| same(*x, *y)), "{what}: gradients differ");
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("{what}: in place {:?}, allocating {:?}", a.err(), b.err()),
    }
}

fn uda_t<T: Element>(u: &mut Unstructured<'_>) -> Result<()> {
    use infoloss::uda::UdaOptions;
    let pair = Pair::<T>::new(u, (1, 3), value, value)?;
    let (ov, av) = pair.views();
    let opts: UdaOptions = catalog_options(u)?;
    if let Ok(out) = infoloss::uda_consistency_with_grad(ov.clone(), av.clone(), &opts) {
        assert_eq!(out.grad.shape(), av.shape());
        assert!(out.kept <= out.mask.len());
    }
    Ok(())
}

fn linear_t<T: infoloss::LinearFloat>(u: &mut Unstructured<'_>) -> Result<()> {
    let n = dim(u)?;
    let h = dim(u)?;
    let v = dim(u)?;
    let hid = array::<T>(u, &[n, h])?;
    let hv = view(u, &hid)?;
    let ws = if u.ratio(1u8, 8)? { vec![dim(u)?, dim(u)?] } else { vec![v, h] };
    let w = array::<T>(u, &ws)?;
    let wv = view(u, &w)?;
    let bias = if u.arbitrary::<bool>()? {
        let bn = if u.ratio(1u8, 8)? { dim(u)? } else { v };
        Some(Array1::from(array::<T>(u, &[bn])?.iter().copied().collect::<Vec<_>>()))
    } else {
        None
    };
    let ii = ignore_index(u)?;
    let t = targets(u, &[n], v, ii)?;
    let ce = infoloss::CrossEntropyExtrasOptions {
        weight: None,
        ignore_index: ii,
        reduction: reduction(u)?,
        label_smoothing: smoothing(u)?,
        lse_square_scale: *u.choose(&[0.0, 1e-4])?,
        softcap: *u.choose(&[None, Some(30.0)])?,
        return_lse: u.arbitrary()?,
        return_token_accuracy: u.arbitrary()?,
    };
    let chunk = *u.choose(&[None, Some(1), Some(2), Some(3), Some(0), Some(usize::MAX), Some(1 << 40)])?;
    let opts = infoloss::LinearCrossEntropyOptions { ce, chunk_size: chunk };
    if let Ok(out) = infoloss::linear_cross_entropy(
        hv.clone(),
        wv.clone(),
        bias.as_ref().map(|b| b.view()),
        t.view(),
        &opts,
    ) {
        assert_eq!(out.grad_hidden.shape(), hv.shape());
        assert_eq!(out.grad_weight.shape(), wv.shape());
    }
    // Student and teacher heads.
    let ht = dim(u)?;
    let th = array::<T>(u, &[n, ht])?;
    let tw = array::<T>(u, &[v, ht])?;
    let dopts = infoloss::LinearDistillOptions { distill: distill_opts(u)?, chunk_size: chunk };
    let labels = targets(u, &[n], v, dopts.distill.ignore_index)?;
    let lv = labels.view().into_dimensionality::<infoloss::ndarray::Ix1>().ok();
    if let Ok(out) = infoloss::linear_distill(hv.clone(), wv.clone(), th.view(), tw.view(), lv, &dopts) {
        assert_eq!(out.grad_hidden.shape(), hv.shape());
    }
    // The matrix product on arbitrary strided views (transposed, reversed axes).
    let (ar, ac, br, bc) = (dim(u)?, dim(u)?, dim(u)?, dim(u)?);
    let a = array::<T>(u, &[ar, ac])?;
    let b = array::<T>(u, &[br, bc])?;
    let mut av = a
        .view()
        .into_dimensionality::<infoloss::ndarray::Ix2>()
        .map_err(|_| arbitrary::Error::IncorrectFormat)?;
    let mut bv = b
        .view()
        .into_dimensionality::<infoloss::ndarray::Ix2>()
        .map_err(|_| arbitrary::Error::IncorrectFormat)?;
    if u.arbitrary::<bool>()? {
        av = av.reversed_axes();
    }
    if u.arbitrary::<bool>()? {
        bv.invert_axis(Axis(0));
    }
    let mut d = Array2::<T>::zeros((av.nrows(), bv.ncols()));
    let mut dv = d.view_mut();
    if u.ratio(1u8, 4)? {
        dv.invert_axis(Axis(1));
    }
    if infoloss::linear::matmul(dv, av, bv, u.arbitrary()?).is_ok() {
        assert_eq!(d.shape(), &[av.nrows(), bv.ncols()]);
    }
    Ok(())
}

fn kernels_t(u: &mut Unstructured<'_>) -> Result<()> {
    use infoloss::kernels::{Isa, Kernels};
    let n = match u.int_in_range(0u8..=3)? {
        0 => u.int_in_range(0usize..=3)?,
        1 => u.int_in_range(4usize..=40)?,
        _ => u.int_in_range(0usize..=300)?,
    };
    let mut x = Vec::with_capacity(n);
    for _ in 0..n {
        x.push(value(u)? as f32);
    }
    let x64: Vec<f64> = x.iter().map(|&v| v as f64 * 1.000_000_1).collect();
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        t.push(prob(u)? as f32);
    }
    let target = u.int_in_range(0usize..=n)?;
    let eps = smoothing(u)?;
    let scale = value(u)? as f32;
    let weight: Option<Vec<f32>> = if u.arbitrary()? { Some(t.clone()) } else { None };
    let mut reference: Option<(Vec<u32>, Vec<u32>)> = None;
    for isa in Isa::available() {
        let Some(k) = Kernels::with_isa(isa) else { continue };
        let mut e = vec![0f32; n];
        let mut l = vec![0f32; n];
        let _ = k.exp_f32(&x, &mut e);
        let _ = k.ln_f32(&x, &mut l);
        // exp/ln are documented bit-identical at every instruction-set level.
        let bits = (
            e.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            l.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        );
        match &reference {
            None => reference = Some(bits),
            Some(r) => {
                let same =
                    |a: u32, b: u32| a == b || (f32::from_bits(a).is_nan() && f32::from_bits(b).is_nan());
                for (i, xi) in x.iter().enumerate() {
                    assert!(same(r.0[i], bits.0[i]), "exp_f32({xi}) differs at {isa:?}");
                    assert!(same(r.1[i], bits.1[i]), "ln_f32({xi}) differs at {isa:?}");
                }
            }
        }
        let mut xi = x.clone();
        k.exp_f32_in_place(&mut xi);
        let mut xi = x.clone();
        k.ln_f32_in_place(&mut xi);
        let mut d = vec![0f64; n];
        let _ = k.exp_f64(&x64, &mut d);
        let _ = k.ln_f64(&x64, &mut d);
        let _ = k.max_f32(&x);
        let _ = k.max_sum_exp_f32(&x);
        let _ = k.logsumexp_f32(&x);
        let m = k.max_f32(&x);
        let mut o = vec![0f32; n];
        let _ = k.exp_sub_sum_f32(&x, m, &mut o);
        let mut xs = x.clone();
        k.scale_f32(&mut xs, scale);
        let _ = k.softmax_f32(&x, &mut o);
        let _ = k.log_softmax_f32(&x, &mut o);
        // Wrong output lengths must be errors.
        let mut short = vec![0f32; n / 2];
        assert!(n < 2 || k.softmax_f32(&x, &mut short).is_err());
        let mut g = vec![0f32; n];
        let _ = k.cross_entropy_row_f32(&x, target, weight.as_deref(), eps, Some(&mut g), scale);
        let _ = k.cross_entropy_row_f32(&x, target, weight.as_deref(), eps, None, scale);
        let _ = k.cross_entropy_probs_row_f32(&x, &t, weight.as_deref(), eps, Some(&mut g), scale);
        let _ = k.cross_entropy_probs_row_f32(&x, &t, weight.as_deref(), eps, Some(&mut short), scale);
    }
    Ok(())
}

/// Every catalog loss has its target (run by `tests/fuzz_corpus.rs`, which includes this file).
#[test]
fn every_catalog_loss_is_fuzzed() {
    let losses: Vec<&str> = infoloss::options::catalog().iter().map(|l| l.name).collect();
    let listed: Vec<&str> = CATALOG_TARGETS.iter().map(|(l, _)| *l).collect();
    assert_eq!(listed, losses, "CATALOG_TARGETS must list the catalog's losses, in its order");
    for (loss, target) in CATALOG_TARGETS {
        assert!(TARGETS.contains(target), "{loss}: no fuzz target {target}");
    }
}
