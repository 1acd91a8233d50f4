//! Axis layout, SciPy's broadcasting of the two distributions, and the drivers that run the rows over
//! every lane and sum gradients back to the inputs' shapes.

use super::*;
use crate::base::shape::ensure_shapes;

/// A row-major array seen as `outer × n × inner`, rows running along the middle axis.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) n: usize,
    pub(crate) inner: usize,
    pub(crate) rows: usize,
}

impl Layout {
    /// The layout of `shape` along `axis` (a 0-dimensional shape is one row of one element).
    pub(crate) fn new(op: &'static str, shape: &[usize], axis: usize) -> Result<Self> {
        if shape.is_empty() {
            return Ok(Layout { n: 1, inner: 1, rows: 1 });
        }
        let (before, rest) = shape.split_at(axis.min(shape.len()));
        let (&n, after) =
            rest.split_first().ok_or_else(|| Error::invalid_option(op, "axis", axis, "axis out of range"))?;
        let outer = checked_numel(op, "input", before)?;
        let inner = checked_numel(op, "input", after)?;
        let rows = outer
            .checked_mul(inner)
            .ok_or_else(|| Error::too_large(op, "output", format!("shape {shape:?}")))?;
        checked_numel(op, "input", shape)?;
        Ok(Layout { n, inner, rows })
    }

    pub(crate) fn start(&self, r: usize) -> usize {
        (r / self.inner) * self.n * self.inner + r % self.inner
    }

    /// Copies row `r` of `data` into `out`.
    pub(crate) fn gather<A: Copy>(&self, data: &[A], r: usize, out: &mut Vec<A>) {
        out.clear();
        out.extend(data.iter().skip(self.start(r)).step_by(self.inner).take(self.n).copied());
    }

    /// Writes `src` (f64-widened) into row `r` of `data`.
    pub(crate) fn scatter<A: Real>(&self, src: &[A], r: usize, data: &mut [f64]) {
        for (d, s) in data.iter_mut().skip(self.start(r)).step_by(self.inner).take(self.n).zip(src) {
            *d = s.f64();
        }
    }
}

/// Resolves a SciPy `axis` (negative from the end) for an array called `name` of shape `shape`;
/// a 0-dimensional array accepts 0 and −1, as NumPy does.
pub(crate) fn resolve_axis(op: &'static str, name: &str, axis: isize, shape: &[usize]) -> Result<usize> {
    let nd = shape.len().max(1) as isize;
    let a = if axis < 0 { axis.checked_add(nd) } else { Some(axis) };
    match a {
        Some(a) if (0..nd).contains(&a) => Ok(a as usize),
        _ => Err(Error::invalid_option(
            op,
            "axis",
            axis,
            format!("out of bounds for {name} of shape {shape:?} ({} dimensions)", shape.len()),
        )),
    }
}

/// `ln(base)` of a validated base, 1 for `None`.
pub(crate) fn log_base(op: &'static str, base: Option<f64>, below_one_ok: bool) -> Result<f64> {
    let Some(b) = base else { return Ok(1.0) };
    if b.is_nan() || b <= 0.0 || b == 1.0 {
        return Err(Error::invalid_option(
            op,
            "base",
            b,
            "must be a positive number other than 1 (the result is divided by ln(base))",
        ));
    }
    if !below_one_ok && b < 1.0 {
        return Err(Error::invalid_option(
            op,
            "base",
            b,
            "must be greater than 1 (with ln(base) < 0 the divergence is negative and has no square root; SciPy returns NaN)",
        ));
    }
    Ok(b.ln())
}

/// NumPy broadcast shape of `a` and `b`, or an error naming both.
pub(crate) fn broadcast_shape(
    op: &'static str,
    a_name: &'static str,
    a: &[usize],
    b_name: &'static str,
    b: &[usize],
) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let (oa, ob) = (n - a.len(), n - b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i >= oa { a.get(i - oa).copied().unwrap_or(1) } else { 1 };
        let db = if i >= ob { b.get(i - ob).copied().unwrap_or(1) } else { 1 };
        let d = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape_mismatch(
                op,
                a_name,
                a,
                b_name,
                b,
                "cannot be broadcast together (NumPy broadcasting rules)",
            ));
        };
        out.push(d);
    }
    checked_numel(op, "broadcast shape", &out)?;
    Ok(out)
}

/// `v` broadcast to `shape` (known to be its broadcast with something).
pub(crate) fn broadcast_view<'b, T>(
    op: &'static str,
    name: &'static str,
    v: &'b ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayViewD<'b, T>> {
    v.broadcast(IxDyn(shape))
        .ok_or_else(|| Error::shape_mismatch(op, name, v.shape(), "broadcast", shape, "cannot be broadcast"))
}

/// Row-major values of `v` broadcast to `shape`, in the compute type.
pub(crate) fn widen<T: Element>(
    op: &'static str,
    name: &'static str,
    v: &ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<Vec<T::Acc>> {
    let b = broadcast_view(op, name, v, shape)?;
    let mut out = try_vec(op, name, b.len())?;
    out.extend(b.iter().map(|x| x.to_acc()));
    Ok(out)
}

/// `n` zeros (a gradient accumulator), allocated fallibly.
pub(crate) fn zeros_f64(op: &'static str, n: usize) -> Result<Vec<f64>> {
    let mut v = try_vec(op, "gradient", n)?;
    v.resize(n, 0.0);
    Ok(v)
}

/// An upstream gradient for an elementwise function: exactly `shape`, or 0-dimensional.
pub(crate) fn grad_into<'b, T>(
    op: &'static str,
    g: &'b ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayViewD<'b, T>> {
    if g.shape() == shape || g.ndim() == 0 {
        if let Some(v) = g.broadcast(IxDyn(shape)) {
            return Ok(v);
        }
    }
    Err(Error::shape_mismatch(
        op,
        "grad_output",
        g.shape(),
        "output",
        shape,
        "must be equal (or grad_output 0-dimensional)",
    ))
}

/// One upstream gradient per output row: `g` has the output shape, or is 0-dimensional.
pub(crate) fn row_grads<T: Element>(
    op: &'static str,
    g: &ArrayViewD<'_, T>,
    out_shape: &[usize],
    rows: usize,
) -> Result<Vec<T::Acc>> {
    let v = grad_into(op, g, out_shape)?;
    let mut out = try_vec(op, "grad_output", v.len())?;
    out.extend(v.iter().map(|x| x.to_acc()));
    ensure_shapes(out.len() == rows, op, ("grad_output", g.shape()), ("output", out_shape), "must be equal")?;
    Ok(out)
}

/// Builds an owned array of `shape` from row-major values.
pub(crate) fn to_array<T>(op: &'static str, shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::too_large(op, "output", e.to_string()))
}

/// Sums a row-major f64 gradient of the broadcast shape `from` back to `to` (the adjoint of
/// broadcasting), still in f64.
pub(crate) fn sum_to_shape_f64(
    op: &'static str,
    from: &[usize],
    g: Vec<f64>,
    to: &[usize],
) -> Result<Vec<f64>> {
    if from == to {
        return Ok(g);
    }
    if g.is_empty() {
        // Sums over nothing: zeros, without visiting the (possibly huge) broadcast dimensions.
        return zeros_f64(op, checked_numel(op, "gradient", to)?);
    }
    let mut a = to_array(op, from, g)?;
    while a.ndim() > to.len() {
        a = a.sum_axis(Axis(0));
    }
    for (i, &d) in to.iter().enumerate() {
        if d == 1 && a.shape().get(i).copied() != Some(1) {
            a = a.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    if a.shape() != to {
        return Err(Error::shape_mismatch(op, "gradient", a.shape(), "input", to, "internal: cannot reduce"));
    }
    Ok(a.iter().copied().collect())
}

/// [`sum_to_shape_f64`], rounded once to `T`.
pub(crate) fn sum_to_shape<T: Element>(
    op: &'static str,
    from: &[usize],
    g: Vec<f64>,
    to: &[usize],
) -> Result<ArrayD<T>> {
    let v = sum_to_shape_f64(op, from, g, to)?;
    to_array(op, to, v.into_iter().map(|x| T::from_acc(T::Acc::c(x))).collect())
}

/// Validated inputs of the entropy family, broadcast to a common shape.
pub(crate) struct Family<A> {
    pub(crate) ln_b: f64,
    pub(crate) shape: Vec<usize>,
    pub(crate) layout: Layout,
    pub(crate) out_shape: Vec<usize>,
    pub(crate) p: Vec<A>,
    pub(crate) q: Option<Vec<A>>,
}

pub(crate) fn family_prepare<T: Element>(
    op: &'static str,
    pk: &ArrayViewD<'_, T>,
    qk: Option<&ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
) -> Result<Family<T::Acc>> {
    let ln_b = log_base(op, opts.base, true)?;
    let shape = match qk {
        Some(q) => broadcast_shape(op, "pk", pk.shape(), "qk", q.shape())?,
        None => {
            checked_numel(op, "pk", pk.shape())?;
            pk.shape().to_vec()
        }
    };
    let name = if qk.is_some() { "the broadcast of pk and qk" } else { "pk" };
    let axis = resolve_axis(op, name, opts.axis, &shape)?;
    let layout = Layout::new(op, &shape, axis)?;
    let mut out_shape = shape.clone();
    if !out_shape.is_empty() {
        out_shape.remove(axis);
    }
    let p = widen(op, "pk", pk, &shape)?;
    let q = match qk {
        Some(q) => Some(widen(op, "qk", q, &shape)?),
        None => None,
    };
    Ok(Family { ln_b, shape, layout, out_shape, p, q })
}

#[inline(never)]
pub(crate) fn entropy_family<T: Element>(
    op: &'static str,
    kind: Kind,
    pk: ArrayViewD<'_, T>,
    qk: Option<ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
) -> Result<ArrayD<T>> {
    if let Some(out) = fast::family(op, kind, &pk, qk.as_ref(), opts)? {
        return Ok(out);
    }
    let f = family_prepare(op, &pk, qk.as_ref(), opts)?;
    let l = f.layout;
    if f.p.is_empty() {
        // Every row is empty (or there is none): one value for all, without visiting them.
        let v = T::from_acc(T::Acc::c(family_row::<T::Acc>(kind, &[], &[]) / f.ln_b));
        return try_full(op, "output", &f.out_shape, v);
    }
    let mut out = try_vec(op, "output", l.rows)?;
    let (mut bp, mut bq) = (Vec::new(), Vec::new());
    for r in 0..l.rows {
        l.gather(&f.p, r, &mut bp);
        normalize_row(&mut bp);
        if let Some(q) = &f.q {
            l.gather(q, r, &mut bq);
            normalize_row(&mut bq);
        }
        let v = family_row(kind, &bp, &bq);
        out.push(T::from_acc(T::Acc::c(v / f.ln_b)));
    }
    to_array(op, &f.out_shape, out)
}

#[inline(never)]
pub(crate) fn entropy_family_backward<T: Element>(
    op: &'static str,
    kind: Kind,
    pk: ArrayViewD<'_, T>,
    qk: Option<ArrayViewD<'_, T>>,
    opts: &EntropyOptions,
    grad_output: ArrayViewD<'_, T>,
) -> Result<(ArrayD<T>, Option<ArrayD<T>>)> {
    if let Some(out) = fast::family_backward(op, kind, &pk, qk.as_ref(), opts, &grad_output)? {
        return Ok(out);
    }
    let f = family_prepare(op, &pk, qk.as_ref(), opts)?;
    let l = f.layout;
    if f.p.is_empty() {
        // No element receives a gradient: zeros of each input's shape, without visiting the rows.
        grad_into(op, &grad_output, &f.out_shape)?;
        let zero = T::from_acc(T::Acc::c(0.0));
        let dq = match &qk {
            Some(q) => Some(try_full(op, "gradient", q.shape(), zero)?),
            None => None,
        };
        return Ok((try_full(op, "gradient", pk.shape(), zero)?, dq));
    }
    let g = row_grads::<T>(op, &grad_output, &f.out_shape, l.rows)?;
    let n = f.p.len();
    let mut dp = zeros_f64(op, n)?;
    let mut dq = if f.q.is_some() { zeros_f64(op, n)? } else { Vec::new() };
    let (mut bp, mut bq, mut rp, mut rq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, &g) in g.iter().enumerate() {
        l.gather(&f.p, r, &mut bp);
        let sp = normalize_row(&mut bp);
        let sq = match &f.q {
            Some(q) => {
                l.gather(q, r, &mut bq);
                normalize_row(&mut bq)
            }
            None => T::Acc::one(),
        };
        let v = family_row(kind, &bp, &bq);
        let gs = T::Acc::c(g.f64() / f.ln_b);
        family_row_backward(kind, &bp, &bq, sp, sq, v, gs, &mut rp, &mut rq);
        l.scatter(&rp, r, &mut dp);
        if f.q.is_some() {
            l.scatter(&rq, r, &mut dq);
        }
    }
    let dp = sum_to_shape::<T>(op, &f.shape, dp, pk.shape())?;
    let dq = match &qk {
        Some(q) => Some(sum_to_shape::<T>(op, &f.shape, dq, q.shape())?),
        None => None,
    };
    Ok((dp, dq))
}

/// One input of [`jensenshannon`], normalized along the axis in its own shape.
pub(crate) struct JsSide<A> {
    pub(crate) shape: Vec<usize>,
    pub(crate) layout: Layout,
    /// The normalized values, row-major in `shape`.
    pub(crate) hat: Vec<A>,
    /// The normalizer of each row.
    pub(crate) sums: Vec<A>,
}

impl<A: Real> JsSide<A> {
    pub(crate) fn new<T: Element<Acc = A>>(
        op: &'static str,
        name: &'static str,
        v: &ArrayViewD<'_, T>,
        axis: isize,
    ) -> Result<Self> {
        let shape = v.shape().to_vec();
        let ax = resolve_axis(op, name, axis, &shape)?;
        let layout = Layout::new(op, &shape, ax)?;
        let mut data = try_vec(op, name, v.len())?;
        data.extend(v.iter().map(|x| x.to_acc()));
        let mut hat = try_vec(op, name, data.len())?;
        hat.resize(data.len(), A::zero());
        // An empty input has only empty rows (or none): nothing to normalize, no row to visit.
        let rows = if data.is_empty() { 0 } else { layout.rows };
        let mut sums = try_vec(op, name, rows)?;
        let mut buf = Vec::new();
        for r in 0..rows {
            layout.gather(&data, r, &mut buf);
            sums.push(normalize_row(&mut buf));
            // Write back in the compute type (scatter works on f64, so do it by hand).
            for (d, s) in hat.iter_mut().skip(layout.start(r)).step_by(layout.inner).take(layout.n).zip(&buf)
            {
                *d = *s;
            }
        }
        Ok(JsSide { shape, layout, hat, sums })
    }

    /// The normalized values broadcast to `shape`, row-major.
    pub(crate) fn broadcast(&self, op: &'static str, name: &'static str, shape: &[usize]) -> Result<Vec<A>> {
        let v = ArrayViewD::from_shape(IxDyn(&self.shape), &self.hat)
            .map_err(|e| Error::too_large(op, name, e.to_string()))?;
        let b = broadcast_view(op, name, &v, shape)?;
        let mut out = try_vec(op, name, b.len())?;
        out.extend(b.iter().copied());
        Ok(out)
    }

    /// Gradient wrt the raw input from `g`, the gradient wrt the normalized values in the broadcast shape.
    pub(crate) fn backward<T: Element<Acc = A>>(
        &self,
        op: &'static str,
        from: &[usize],
        g: Vec<f64>,
    ) -> Result<ArrayD<T>> {
        let g = sum_to_shape_f64(op, from, g, &self.shape)?;
        let g: Vec<A> = g.into_iter().map(A::c).collect();
        let mut out = zeros_f64(op, g.len())?;
        let (mut bh, mut bg) = (Vec::new(), Vec::new());
        for (r, &s) in self.sums.iter().enumerate() {
            self.layout.gather(&self.hat, r, &mut bh);
            self.layout.gather(&g, r, &mut bg);
            normalize_backward_row(&bh, s, &mut bg);
            self.layout.scatter(&bg, r, &mut out);
        }
        to_array(op, &self.shape, out.into_iter().map(|x| T::from_acc(A::c(x))).collect())
    }
}

/// Validated inputs of [`jensenshannon`].
pub(crate) struct JsPrepared<A> {
    pub(crate) ln_b: f64,
    pub(crate) p: JsSide<A>,
    pub(crate) q: JsSide<A>,
    /// Broadcast shape.
    pub(crate) shape: Vec<usize>,
    pub(crate) layout: Layout,
    pub(crate) out_shape: Vec<usize>,
    pub(crate) pb: Vec<A>,
    pub(crate) qb: Vec<A>,
}

pub(crate) fn js_prepare<T: Element>(
    op: &'static str,
    p: ArrayViewD<'_, T>,
    q: ArrayViewD<'_, T>,
    opts: &JensenShannonOptions,
) -> Result<JsPrepared<T::Acc>> {
    let ln_b = log_base(op, opts.base, false)?;
    let shape = broadcast_shape(op, "p", p.shape(), "q", q.shape())?;
    let ps = JsSide::new(op, "p", &p, opts.axis)?;
    let qs = JsSide::new(op, "q", &q, opts.axis)?;
    let axis = resolve_axis(op, "the broadcast of p and q", opts.axis, &shape)?;
    let layout = Layout::new(op, &shape, axis)?;
    let mut out_shape = shape.clone();
    if !out_shape.is_empty() {
        if opts.keepdims {
            if let Some(d) = out_shape.get_mut(axis) {
                *d = 1;
            }
        } else {
            out_shape.remove(axis);
        }
    }
    let pb = ps.broadcast(op, "p", &shape)?;
    let qb = qs.broadcast(op, "q", &shape)?;
    Ok(JsPrepared { ln_b, p: ps, q: qs, shape, layout, out_shape, pb, qb })
}

compiled_here! {
    entropy_family: fn(&'static str, Kind, ArrayViewD<'_, T>, Option<ArrayViewD<'_, T>>, &EntropyOptions) -> Result<ArrayD<T>>;
    entropy_family_backward: fn(
        &'static str,
        Kind,
        ArrayViewD<'_, T>,
        Option<ArrayViewD<'_, T>>,
        &EntropyOptions,
        ArrayViewD<'_, T>,
    ) -> Result<(ArrayD<T>, Option<ArrayD<T>>)>;
    jensenshannon_dyn: fn(ArrayViewD<'_, T>, ArrayViewD<'_, T>, &JensenShannonOptions) -> Result<ArrayD<T>>;
    jensenshannon_backward_dyn: fn(
        ArrayViewD<'_, T>,
        ArrayViewD<'_, T>,
        &JensenShannonOptions,
        ArrayViewD<'_, T>,
    ) -> Result<(ArrayD<T>, ArrayD<T>)>;
}
