//! Slice drivers for elementwise vector functions.
//!
//! The functions are passed as small `Copy` structs implementing [`VecMap`] / [`VecZip`] /
//! [`VecZip2`] with `#[inline(always)]` methods, never as closures or `fn` items: those are called
//! through `Fn::call` shims that are not reliably inlined into pulp's `#[target_feature]` context,
//! and a non-inlined call runs every vector operation out of line without AVX (a 10× slowdown).
//! Tails go through masked loads and stores, so every element sees the same code.

use pulp::Simd;

/// `v ↦ f(v)` on `f32` vectors.
pub(crate) trait VecMap: Copy {
    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s;
}

/// `(o, a) ↦ f(o, a)` on `f32` vectors.
pub(crate) trait VecZip: Copy {
    fn call<S: Simd>(self, simd: S, o: S::f32s, a: S::f32s) -> S::f32s;
}

/// `(o, a, b) ↦ f(o, a, b)` on `f32` vectors.
pub(crate) trait VecZip2: Copy {
    fn call<S: Simd>(self, simd: S, o: S::f32s, a: S::f32s, b: S::f32s) -> S::f32s;
}

/// `v ↦ f(v)` on `f64` vectors.
pub(crate) trait VecMap64: Copy {
    fn call<S: Simd>(self, simd: S, v: S::f64s) -> S::f64s;
}

/// `map_*` (`out[i] = f(x[i])`; `x` and `out` have the same length) and `map_in_place_*` (`x[i] =
/// f(x[i])`) for one lane type: the same code for `f32` and `f64` but for the vector type's names.
macro_rules! map_drivers {
    ($map:ident, $in_place:ident: $Map:ident, $t:ty, $as_simd:ident, $as_mut_simd:ident, $load:ident, $store:ident) => {
        /// `out[i] = f(x[i])`; `x` and `out` have the same length.
        #[inline(always)]
        pub(crate) fn $map<S: Simd, F: $Map>(simd: S, x: &[$t], out: &mut [$t], f: F) {
            let (xh, xt) = S::$as_simd(x);
            let (oh, ot) = S::$as_mut_simd(out);
            let mut xi = xh.chunks_exact(4);
            let mut oi = oh.chunks_exact_mut(4);
            for (o, x) in (&mut oi).zip(&mut xi) {
                // four independent vectors per iteration to hide the latency of long polynomials
                let (a, b, c, d) =
                    (f.call(simd, x[0]), f.call(simd, x[1]), f.call(simd, x[2]), f.call(simd, x[3]));
                o[0] = a;
                o[1] = b;
                o[2] = c;
                o[3] = d;
            }
            for (o, x) in oi.into_remainder().iter_mut().zip(xi.remainder()) {
                *o = f.call(simd, *x);
            }
            if !xt.is_empty() {
                simd.$store(ot, f.call(simd, simd.$load(xt)));
            }
        }

        /// `x[i] = f(x[i])`.
        #[inline(always)]
        pub(crate) fn $in_place<S: Simd, F: $Map>(simd: S, x: &mut [$t], f: F) {
            let (xh, xt) = S::$as_mut_simd(x);
            let mut xi = xh.chunks_exact_mut(4);
            for x in &mut xi {
                let (a, b, c, d) =
                    (f.call(simd, x[0]), f.call(simd, x[1]), f.call(simd, x[2]), f.call(simd, x[3]));
                x[0] = a;
                x[1] = b;
                x[2] = c;
                x[3] = d;
            }
            for x in xi.into_remainder() {
                *x = f.call(simd, *x);
            }
            if !xt.is_empty() {
                let v = f.call(simd, simd.$load(xt));
                simd.$store(xt, v);
            }
        }
    };
}

map_drivers!(map_f32, map_in_place_f32: VecMap, f32, as_simd_f32s, as_mut_simd_f32s, partial_load_f32s, partial_store_f32s);
map_drivers!(map_f64, map_in_place_f64: VecMap64, f64, as_simd_f64s, as_mut_simd_f64s, partial_load_f64s, partial_store_f64s);

/// The op `x[i] = f(x[i])` of an `f32` map `f`, to run at an instruction set.
pub(crate) struct MapInPlace<'a, F> {
    pub(crate) x: &'a mut [f32],
    pub(crate) f: F,
}

impl<F: VecMap> pulp::WithSimd for MapInPlace<'_, F> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        map_in_place_f32(simd, self.x, self.f);
    }
}

/// `o[i] = f(o[i], a[i])`; `o` and `a` have the same length.
#[inline(always)]
pub(crate) fn zip_in_place<S: Simd, F: VecZip>(simd: S, o: &mut [f32], a: &[f32], f: F) {
    let (oh, ot) = S::as_mut_simd_f32s(o);
    let (ah, at) = S::as_simd_f32s(a);
    let mut oi = oh.chunks_exact_mut(4);
    let mut ai = ah.chunks_exact(4);
    for (o, a) in (&mut oi).zip(&mut ai) {
        let (v0, v1, v2, v3) = (
            f.call(simd, o[0], a[0]),
            f.call(simd, o[1], a[1]),
            f.call(simd, o[2], a[2]),
            f.call(simd, o[3], a[3]),
        );
        o[0] = v0;
        o[1] = v1;
        o[2] = v2;
        o[3] = v3;
    }
    for (o, a) in oi.into_remainder().iter_mut().zip(ai.remainder()) {
        *o = f.call(simd, *o, *a);
    }
    if !ot.is_empty() {
        let v = f.call(simd, simd.partial_load_f32s(ot), simd.partial_load_f32s(at));
        simd.partial_store_f32s(ot, v);
    }
}

/// `o[i] = f(o[i], a[i], b[i])`; all three have the same length.
#[inline(always)]
pub(crate) fn zip2_in_place<S: Simd, F: VecZip2>(simd: S, o: &mut [f32], a: &[f32], b: &[f32], f: F) {
    let (oh, ot) = S::as_mut_simd_f32s(o);
    let (ah, at) = S::as_simd_f32s(a);
    let (bh, bt) = S::as_simd_f32s(b);
    for ((o, a), b) in oh.iter_mut().zip(ah).zip(bh) {
        *o = f.call(simd, *o, *a, *b);
    }
    if !ot.is_empty() {
        let v =
            f.call(simd, simd.partial_load_f32s(ot), simd.partial_load_f32s(at), simd.partial_load_f32s(bt));
        simd.partial_store_f32s(ot, v);
    }
}

/// `v·a + b` (fused).
#[derive(Clone, Copy)]
pub(crate) struct Affine {
    pub(crate) a: f32,
    pub(crate) b: f32,
}

impl VecMap for Affine {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        simd.mul_add_f32s(v, simd.splat_f32s(self.a), simd.splat_f32s(self.b))
    }
}

/// `v·a`.
#[derive(Clone, Copy)]
pub(crate) struct Scale(pub(crate) f32);

impl VecMap for Scale {
    #[inline(always)]
    fn call<S: Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        simd.mul_f32s(v, simd.splat_f32s(self.0))
    }
}
