//! Helpers shared by the integration tests: a small deterministic RNG, thread pools, and comparisons
//! that treat NaN and infinities exactly.
#![allow(dead_code)]

use infoloss::ndarray::{ArrayD, IxDyn};

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in (−1, 1).
    pub fn sym(&mut self) -> f64 {
        2.0 * self.unit() - 1.0
    }
    /// Uniform in `0..n` (0 for `n = 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// Roughly standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    /// An array of `shape` whose elements `draw` takes from this generator, in logical order.
    pub fn array(&mut self, shape: &[usize], mut draw: impl FnMut(&mut Self) -> f64) -> ArrayD<f64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || draw(self))
    }
    /// An array of `shape`, uniform in `[lo, hi)`.
    pub fn uniform(&mut self, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
        self.array(shape, |r| lo + (hi - lo) * r.unit())
    }
}

/// Row lengths crossing the SIMD lane (4/8/16), chunk (512) and block (1024) boundaries.
pub const LENGTHS: &[usize] =
    &[1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 32, 33, 127, 128, 129, 1023, 1024, 1025, 32000];
/// Magnitudes of the inputs.
pub const SCALES: &[f64] = &[1e-30, 1e-3, 1.0, 30.0, 1e4, 1e30];

/// One f32 rounding.
pub const EPS32: f64 = 1.0 / (1u64 << 24) as f64;

/// Runs `f` on a rayon pool of `threads` threads.
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool").install(f)
}

/// `rows × c` nonnegative `f32` values `scale·u` (u uniform in [0, 1)) with about one in five an exact zero;
/// with `special` (and at least 4 rows), row 0 holds a NaN, row 1 an `inf`, row 2 a negative entry, and row 3
/// is all zero. The distributions of the information-measure tests.
pub fn info_dist(
    rows: usize,
    c: usize,
    scale: f64,
    special: bool,
    seed: u64,
) -> infoloss::ndarray::Array2<f32> {
    let mut rng = Rng(seed);
    let mut x = infoloss::ndarray::Array2::from_shape_fn((rows, c), |_| {
        if rng.below(5) == 0 { 0.0 } else { (scale * rng.unit()) as f32 }
    });
    if special && rows >= 4 {
        let mut p = || rng.below(c);
        x[[0, p()]] = f32::NAN;
        x[[1, p()]] = f32::INFINITY;
        x[[2, p()]] = -(scale as f32);
        x.row_mut(3).fill(0.0);
    }
    x
}
