//! The reference oracle: every SIMD fast path of the crate is checked against the straightforward
//! reference implementation it replaces (`infoloss::with_reference_path`), as RustFFT keeps its naive
//! DFT. One helper runs the sweeps: [`Oracle`] walks row lengths crossing the lane (8/16), chunk (512),
//! tile (1024) and task (2^15, 2^16) boundaries and magnitudes from 1e-30 to 1e30, runs each call on both
//! paths, and compares every output with the tolerance its family states (NaN and ±inf exactly where
//! the reference has them). With thread counts it also checks that the fast results are bit-identical
//! on rayon pools of that many threads. A failure names the oracle, the call, the case (rows, length,
//! magnitude, dtype, threads), the element and both values.
//!
//! The families live in the submodules; each states its tolerance and why.

mod cross_entropy;
mod distill;
mod elementwise;
mod info;
mod rows;

use infoloss::ndarray::{Array, Dimension};
use infoloss::{Element, Loss, Real, with_fast_path, with_reference_path};
use rayon::{ThreadPool, ThreadPoolBuilder};

pub use crate::support::{EPS32, LENGTHS, Rng, SCALES, on_threads};

/// [`LENGTHS`] and the empty row.
pub const LENGTHS_0: &[usize] =
    &[0, 1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 32, 33, 127, 128, 129, 1023, 1024, 1025, 32000];
/// Whole-array sizes around the parallel task size (65,536 elements) as (rows, length).
pub const TASK_SIZES: &[(usize, usize)] = &[(1, 65535), (1, 65536), (1, 65537), (2, 32769), (3, 70001)];

/// A sweep of one family over its cases.
pub struct Oracle {
    name: &'static str,
    shapes: Vec<(usize, usize)>,
    magnitudes: Vec<f64>,
    skip: fn(usize, f64) -> bool,
    pools: Vec<(usize, ThreadPool)>,
}

impl Oracle {
    /// One case of no particular shape and magnitude (the inputs are the closure's), on the ambient pool.
    pub fn new(name: &'static str) -> Self {
        Oracle { name, shapes: vec![(0, 0)], magnitudes: vec![1.0], skip: |_, _| false, pools: Vec::new() }
    }

    /// Rows of these lengths, `rows(length)` of them.
    pub fn sizes(mut self, lengths: &[usize], rows: fn(usize) -> usize) -> Self {
        self.shapes = lengths.iter().map(|&c| (rows(c), c)).collect();
        self
    }

    /// Arrays of these (rows, length).
    pub fn shapes(mut self, shapes: &[(usize, usize)]) -> Self {
        self.shapes = shapes.to_vec();
        self
    }

    /// Each shape at each of these magnitudes.
    pub fn magnitudes(mut self, magnitudes: &[f64]) -> Self {
        self.magnitudes = magnitudes.to_vec();
        self
    }

    /// Leaves out the (length, magnitude) pairs for which `skip` holds.
    pub fn skip(mut self, skip: fn(usize, f64) -> bool) -> Self {
        self.skip = skip;
        self
    }

    /// Runs every fast call on rayon pools of these sizes and requires the same bits from each (the
    /// reference runs on the first).
    pub fn threads(mut self, threads: &[usize]) -> Self {
        let pool = |t| ThreadPoolBuilder::new().num_threads(t).build().expect("thread pool");
        self.pools = threads.iter().map(|&t| (t, pool(t))).collect();
        self
    }

    /// Runs `body` once per case (length outer, magnitude inner); what it compares is summed up.
    pub fn check(&self, mut body: impl FnMut(&mut Run<'_>)) -> Summary {
        let mut summary = Summary::default();
        let mut index = 0;
        for &(rows, size) in &self.shapes {
            for &magnitude in &self.magnitudes {
                if (self.skip)(size, magnitude) {
                    continue;
                }
                let mut run = Run { oracle: self, rows, size, magnitude, index, summary: Summary::default() };
                body(&mut run);
                summary.add(&run.summary);
                index += 1;
            }
        }
        summary
    }
}

/// What a sweep compared.
#[derive(Default, Debug)]
pub struct Summary {
    /// Values compared.
    pub values: usize,
    /// Values whose fast and reference bits differ.
    pub differ: usize,
    /// The largest ratio of a difference to its allowance.
    pub worst: f64,
}

impl Summary {
    /// Adds another sweep's counts.
    pub fn add(&mut self, o: &Summary) {
        self.values += o.values;
        self.differ += o.differ;
        self.worst = self.worst.max(o.worst);
    }

    /// The two paths compute differently somewhere (other `exp`/`ln`, other summation order): equal bits
    /// everywhere would mean the fast path is not wired in.
    pub fn assert_fast_path_taken(&self, what: &str) {
        assert!(self.differ > 0, "{what}: the fast path never differed from the reference");
    }
}

/// One case of a sweep.
pub struct Run<'o> {
    oracle: &'o Oracle,
    /// Rows of the case's arrays.
    pub rows: usize,
    /// Their length (the reduced dimension).
    pub size: usize,
    /// The inputs' magnitude.
    pub magnitude: f64,
    /// The case's position in the sweep (for seeds).
    pub index: u64,
    summary: Summary,
}

impl Run<'_> {
    fn case(&self, func: &str, dtype: &str, threads: Option<usize>) -> String {
        let threads = threads.map_or("ambient".to_string(), |t| t.to_string());
        format!(
            "{} {func}: rows={} length={} magnitude={:e} dtype={dtype} threads={threads}",
            self.oracle.name, self.rows, self.size, self.magnitude
        )
    }

    /// `f` on the fast path: on each pool, all giving the same bits, or on the ambient one.
    fn fast<R: Outputs + Send>(&self, func: &str, f: &(impl Fn() -> R + Sync)) -> R {
        let Some(((t0, p0), rest)) = self.oracle.pools.split_first() else { return with_fast_path(f) };
        let bits = |r: &R| -> Vec<u64> {
            r.outputs().iter().flat_map(|o| o.values.iter().map(|v| v.to_bits())).collect()
        };
        let fast = p0.install(|| with_fast_path(f));
        let want = bits(&fast);
        for (t, p) in rest {
            let got = bits(&p.install(|| with_fast_path(f)));
            if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
                let (g, w) =
                    (got.get(i).map(|b| f64::from_bits(*b)), want.get(i).map(|b| f64::from_bits(*b)));
                panic!("{}: element {i} is {g:?}, on {t0} threads {w:?}", self.case(func, "-", Some(*t)));
            }
        }
        fast
    }

    /// `f` on the reference path (on the first pool, if any).
    fn reference<R: Send>(&self, f: &(impl Fn() -> R + Sync)) -> R {
        match self.oracle.pools.first() {
            None => with_reference_path(f),
            Some((_, p)) => p.install(|| with_reference_path(f)),
        }
    }

    /// Runs `f` on both paths and compares its outputs (one per tolerance, in order) with their
    /// tolerances; returns the fast result.
    pub fn compare<'a, R: Outputs + Send>(
        &mut self,
        func: &str,
        f: impl Fn() -> R + Sync,
        tols: impl IntoIterator<Item = Tol<'a>>,
    ) -> R {
        self.compare_by(func, f, |_| tols.into_iter().collect())
    }

    /// [`Run::compare`] with tolerances made from the reference's result.
    pub fn compare_by<'a, R: Outputs + Send>(
        &mut self,
        func: &str,
        f: impl Fn() -> R + Sync,
        tols: impl FnOnce(&R) -> Vec<Tol<'a>>,
    ) -> R {
        let (fast, reference) = (self.fast(func, &f), self.reference(&f));
        let tols = tols(&reference);
        let (fo, ro) = (fast.outputs(), reference.outputs());
        assert_eq!(tols.len(), fo.len(), "{func}: one tolerance per output");
        for ((f, r), tol) in fo.iter().zip(&ro).zip(&tols) {
            let what = if tol.part.is_empty() { func.to_string() } else { format!("{func} {}", tol.part) };
            let case = || self.case(&what, f.dtype, self.oracle.pools.first().map(|p| p.0));
            let s = compare(&f.values, &r.values, tol, case);
            self.summary.add(&s);
        }
        fast
    }

    /// Runs `f` on the fast path on each pool and requires the same bits (needs [`Oracle::threads`]).
    pub fn identical<R: Outputs + Send>(&mut self, func: &str, f: impl Fn() -> R + Sync) {
        assert!(self.oracle.pools.len() > 1, "{func}: identical needs thread counts");
        let fast = self.fast(func, &f);
        self.summary.values += fast.outputs().iter().map(|o| o.values.len()).sum::<usize>();
    }
}

/// How far a fast value may be from the reference's: `allowed(i, fast, reference)`, a NaN allowance
/// asking for equality. Non-finite reference values must be matched exactly (NaN by NaN, ±inf by the
/// same infinity) in every tolerance.
pub struct Tol<'a> {
    part: &'static str,
    allowed: Box<dyn Fn(usize, f64, f64) -> f64 + 'a>,
    exact: bool,
}

impl<'a> Tol<'a> {
    /// The same bits.
    pub fn exact() -> Self {
        Tol { part: "", allowed: Box::new(|_, _, _| 0.0), exact: true }
    }

    /// `atol + rtol·|reference|`.
    pub fn close(atol: f64, rtol: f64) -> Self {
        Self::by(move |_, _, r| atol + rtol * r.abs())
    }

    /// `atol + rtol·|reference| + k·terms[i]` (0 past the end of `terms`): `terms` the magnitude of the
    /// terms a formula cancels, whose roundings the two paths need not share.
    pub fn terms(atol: f64, rtol: f64, k: f64, terms: Vec<f64>) -> Self {
        Self::by(move |i, _, r| atol + rtol * r.abs() + k * terms.get(i).copied().unwrap_or(0.0))
    }

    /// Any allowance `allowed(i, fast, reference)`.
    pub fn by(allowed: impl Fn(usize, f64, f64) -> f64 + 'a) -> Self {
        Tol { part: "", allowed: Box::new(allowed), exact: false }
    }

    /// Names the output this tolerance is for ("loss", "grad", …).
    pub fn on(mut self, part: &'static str) -> Self {
        self.part = part;
        self
    }
}

/// Compares `fast` with `reference` under `tol`, panicking with `case()` and the element on a mismatch.
pub fn compare(fast: &[f64], reference: &[f64], tol: &Tol<'_>, case: impl Fn() -> String) -> Summary {
    assert_eq!(fast.len(), reference.len(), "{}: lengths", case());
    let mut s = Summary { values: fast.len(), ..Default::default() };
    for (i, (&f, &r)) in fast.iter().zip(reference).enumerate() {
        if f.to_bits() == r.to_bits() {
            continue;
        }
        s.differ += 1;
        let (ok, allowed) = if tol.exact {
            (false, 0.0)
        } else if f.is_nan() || r.is_nan() {
            (f.is_nan() && r.is_nan(), f64::NAN)
        } else if f.is_infinite() || r.is_infinite() {
            (f == r, f64::NAN)
        } else {
            let a = (tol.allowed)(i, f, r);
            let a = if a.is_nan() { 0.0 } else { a };
            let d = (f - r).abs();
            s.worst = s.worst.max(if a > 0.0 { d / a } else { f64::INFINITY });
            (d <= a, a)
        };
        assert!(
            ok,
            "{}, element {i}: fast {f:e}, reference {r:e}, difference {:e}, allowed {allowed:e}",
            case(),
            (f - r).abs()
        );
    }
    s
}

/// `f` on the fast and on the reference path, for the checks that are not comparisons of values.
pub fn both<R>(f: impl Fn() -> R) -> (R, R) {
    (with_fast_path(&f), with_reference_path(&f))
}

/// One output of a call: its element type's name and its values, widened to `f64` (exactly).
pub struct Output {
    pub dtype: &'static str,
    pub values: Vec<f64>,
}

/// A value the oracle can compare: arrays, losses, vectors.
pub trait Values {
    fn output(&self) -> Output;
}

/// The outputs of a call: one [`Values`] or a tuple of them.
pub trait Outputs {
    fn outputs(&self) -> Vec<Output>;
}

fn dtype<T: Element>() -> &'static str {
    match T::DTYPE {
        infoloss::DType::F16 => "f16",
        infoloss::DType::BF16 => "bf16",
        infoloss::DType::F32 => "f32",
        infoloss::DType::F64 => "f64",
    }
}

/// `x` widened to `f64` (exact for every element type).
pub fn wide<T: Element>(x: T) -> f64 {
    x.to_acc().f64()
}

/// `x` rounded to `T`.
pub fn narrow<T: Element>(x: f64) -> T {
    T::from_acc(<T::Acc as Real>::c(x))
}

impl<T: Element, D: Dimension> Values for Array<T, D> {
    fn output(&self) -> Output {
        Output { dtype: dtype::<T>(), values: self.iter().map(|&v| wide(v)).collect() }
    }
}

impl<T: Element> Values for Loss<T> {
    fn output(&self) -> Output {
        match self {
            Loss::Scalar(v) => Output { dtype: dtype::<T>(), values: vec![wide(*v)] },
            Loss::Elementwise(a) => a.output(),
        }
    }
}

impl<T: Element> Values for Vec<T> {
    fn output(&self) -> Output {
        Output { dtype: dtype::<T>(), values: self.iter().map(|&v| wide(v)).collect() }
    }
}

impl<V: Values> Outputs for V {
    fn outputs(&self) -> Vec<Output> {
        vec![self.output()]
    }
}

macro_rules! tuple_outputs {
    ($($v:ident $i:tt),+) => {
        impl<$($v: Values),+> Outputs for ($($v,)+) {
            fn outputs(&self) -> Vec<Output> {
                vec![$(self.$i.output()),+]
            }
        }
    };
}
tuple_outputs!(A 0, B 1);
tuple_outputs!(A 0, B 1, C 2);
tuple_outputs!(A 0, B 1, C 2, D 3);
tuple_outputs!(A 0, B 1, C 2, D 3, E 4);

/// The values of `x`, widened to `f64`.
pub fn vals(x: &(impl Values + ?Sized)) -> Vec<f64> {
    x.output().values
}

/// The bit patterns of `x`'s values (widened to `f64`: distinct values stay distinct).
pub fn bits(x: &(impl Values + ?Sized)) -> Vec<u64> {
    vals(x).iter().map(|v| v.to_bits()).collect()
}

#[test]
#[should_panic(expected = "case, element 1: fast 1.5e0, reference 1e0, difference 5e-1, allowed 2.5e-1")]
fn a_value_past_its_allowance_fails_naming_the_case_and_element() {
    compare(&[1.0, 1.5], &[1.0, 1.0], &Tol::close(0.0, 0.25), || "case".to_string());
}

#[test]
#[should_panic(expected = "fast NaN, reference 1e0")]
fn nan_and_infinities_only_where_the_reference_has_them() {
    let s =
        compare(&[f64::NAN, f64::INFINITY], &[f64::NAN, f64::INFINITY], &Tol::close(0.0, 0.0), String::new);
    assert_eq!((s.values, s.differ), (2, 0));
    compare(&[f64::NAN], &[1.0], &Tol::by(|_, _, _| f64::INFINITY), String::new);
}

#[test]
#[should_panic(expected = "allowed 0e0")]
fn a_nan_allowance_asks_for_equality() {
    compare(&[1.0 + 1e-15], &[1.0], &Tol::by(|_, _, _| f64::NAN), String::new);
}
