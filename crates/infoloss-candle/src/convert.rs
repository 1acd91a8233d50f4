//! Between candle and infoloss: element types, storage + [`Layout`] → ndarray views, results → storage and
//! tensors, error conversion, and the CPU-only checks.
//!
//! A candle tensor is a storage (a flat `Vec` per dtype) plus a [`Layout`]: dims, strides **in elements** and a
//! start offset. [`view`] turns that triple into an ndarray view without copying (ndarray accepts any
//! non-negative strides for a read-only view, including the 0 strides of a broadcast); if ndarray ever
//! refuses a layout, the elements are gathered through the strides into a fresh array instead.
//!
//! The other direction moves buffers: an array the core returns in standard layout (every loss output and
//! gradient) becomes candle storage by handing over its `Vec` ([`into_row_major`]), so a gradient costs no
//! pass over its elements on the way to candle. Only an array in another layout is copied, once, lane by lane.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Shape, Storage, Tensor, WithDType};
use half::{bf16, f16};
use infoloss::Element;
use ndarray::{ArrayD, ArrayView, ArrayViewD, Axis, CowArray, IxDyn, ShapeBuilder};

/// The float types both crates know: `f32`, `f64`, `f16`, `bf16`.
pub(crate) trait Float: Element + WithDType {
    /// The array of this type held by a [`Host`], if it holds this type.
    fn host(h: &Host) -> Option<ArrayViewD<'_, Self>>;
    /// Wraps an owned array.
    fn into_host(a: ArrayD<Self>) -> Host;
}

macro_rules! float_impl {
    ($t:ty, $v:ident) => {
        impl Float for $t {
            fn host(h: &Host) -> Option<ArrayViewD<'_, Self>> {
                match h {
                    Host::$v(a) => Some(a.view()),
                    _ => None,
                }
            }
            fn into_host(a: ArrayD<Self>) -> Host {
                Host::$v(a)
            }
        }
    };
}
float_impl!(f32, F32);
float_impl!(f64, F64);
float_impl!(f16, F16);
float_impl!(bf16, BF16);

/// Runs `$body` with the type alias `$T` bound to the element type of the float dtype `$dtype`; any other
/// dtype is an error naming `$op`.
macro_rules! with_float {
    ($op:expr, $what:expr, $dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            candle_core::DType::F16 => {
                type $T = half::f16;
                $body
            }
            candle_core::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            d => Err($crate::convert::not_float($op, $what, d)),
        }
    };
}
pub(crate) use with_float;

/// An owned host array of one of the float types (weights, teacher log-probabilities: the constant
/// options an op carries).
#[derive(Debug, Clone)]
pub(crate) enum Host {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
}

impl Host {
    /// Copies a float tensor of dtype `want` (the input's dtype) to the host.
    pub(crate) fn from_tensor(
        op: &'static str,
        what: &str,
        t: &Tensor,
        want: DType,
    ) -> candle_core::Result<Host> {
        ensure_cpu(op, what, t)?;
        if t.dtype() != want {
            return Err(msg(format!(
                "{op}: {what} has dtype {:?} but the input has dtype {want:?}; they must be equal (convert with .to_dtype())",
                t.dtype()
            )));
        }
        with_float!(op, what, want, T => {
            let (guard, layout) = t.storage_and_layout();
            let v = view::<T>(op, what, cpu(op, what, &guard)?, layout)?;
            // an owned (gathered) array or a view that is contiguous in memory becomes owned without an
            // element loop; a strided or broadcast view is copied once, row-major
            let arr = if v.is_view() && v.as_slice_memory_order().is_none() {
                ArrayD::from_shape_vec(IxDyn(v.shape()), row_major(v.view()))
                    .map_err(|e| msg(format!("{op}: {what}: {e}")))?
            } else {
                v.into_owned()
            };
            Ok(T::into_host(arr))
        })
    }

    /// The array as a contiguous tensor of its own shape on `device`, its buffer moved, not copied.
    pub(crate) fn into_tensor(self, device: &Device) -> candle_core::Result<Tensor> {
        fn t<T: WithDType>(a: ArrayD<T>, device: &Device) -> candle_core::Result<Tensor> {
            let shape = Shape::from(a.shape().to_vec());
            Tensor::from_vec(into_row_major(a), shape, device)
        }
        match self {
            Host::F32(a) => t(a, device),
            Host::F64(a) => t(a, device),
            Host::F16(a) => t(a, device),
            Host::BF16(a) => t(a, device),
        }
    }

    /// The array as `T`, or an error if it holds another type.
    pub(crate) fn get<T: Float>(
        &self,
        op: &'static str,
        what: &str,
    ) -> candle_core::Result<ArrayViewD<'_, T>> {
        T::host(self).ok_or_else(|| {
            msg(format!("{op}: {what} does not have the input's dtype {:?}", <T as WithDType>::DTYPE))
        })
    }
}

/// A candle error carrying `text`.
pub(crate) fn msg(text: String) -> candle_core::Error {
    candle_core::Error::Msg(text)
}

/// An infoloss error as a candle error (same message).
pub(crate) fn core_err(e: infoloss::Error) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// The error for a non-float tensor where a float one is needed.
pub(crate) fn not_float(op: &'static str, what: &str, d: DType) -> candle_core::Error {
    msg(format!("{op}: {what} has dtype {d:?}; expected a float tensor (f32, f64, f16 or bf16)"))
}

/// Errors unless the tensor lives on the CPU (infoloss computes on the host only).
pub(crate) fn ensure_cpu(op: &'static str, what: &str, t: &Tensor) -> candle_core::Result<()> {
    match t.device() {
        Device::Cpu => Ok(()),
        d => Err(msg(format!(
            "{op}: {what} is on {:?}; infoloss-candle computes on the CPU only (move it with .to_device(&Device::Cpu))",
            d.location()
        ))),
    }
}

/// [`ensure_cpu`] for each (name, tensor) of an op's arguments, in order.
pub(crate) fn ensure_all_cpu(op: &'static str, args: &[(&str, &Tensor)]) -> candle_core::Result<()> {
    args.iter().try_for_each(|(what, t)| ensure_cpu(op, what, t))
}

/// The CPU storage behind a storage guard, or the CPU-only error.
pub(crate) fn cpu<'g>(op: &'static str, what: &str, s: &'g Storage) -> candle_core::Result<&'g CpuStorage> {
    match s {
        Storage::Cpu(c) => Ok(c),
        _ => Err(msg(format!(
            "{op}: {what} is not on the CPU; infoloss-candle computes on the CPU only (move it with .to_device(&Device::Cpu))"
        ))),
    }
}

/// A view of the elements `layout` selects from `storage` (strides in elements, start offset honoured).
/// Borrowed when ndarray accepts the layout, otherwise gathered into an owned array.
pub(crate) fn view<'a, T: WithDType>(
    op: &'static str,
    what: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<CowArray<'a, T, IxDyn>> {
    let data = T::cpu_storage_as_slice(storage).map_err(|_| {
        msg(format!("{op}: {what} has dtype {:?}, expected {:?}", storage.dtype(), <T as WithDType>::DTYPE))
    })?;
    strided(op, what, data, layout.dims(), layout.stride(), layout.start_offset())
}

/// [`view`] on a plain slice.
pub(crate) fn strided<'a, T: Copy>(
    op: &'static str,
    what: &str,
    data: &'a [T],
    dims: &[usize],
    strides: &[usize],
    offset: usize,
) -> candle_core::Result<CowArray<'a, T, IxDyn>> {
    let out_of_bounds = || {
        msg(format!(
            "{op}: {what}'s layout (dims {dims:?}, strides {strides:?}, offset {offset}) lies outside its storage of {} elements",
            data.len()
        ))
    };
    if dims.len() != strides.len() {
        return Err(out_of_bounds());
    }
    let empty = dims.contains(&0);
    let tail = if empty { &data[..0] } else { data.get(offset..).ok_or_else(out_of_bounds)? };
    if let Ok(v) = ArrayView::from_shape(IxDyn(dims).strides(IxDyn(strides)), tail) {
        return Ok(CowArray::from(v));
    }
    gather(data, dims, strides, offset).map(CowArray::from).ok_or_else(out_of_bounds)
}

/// Copies the elements a layout selects into a standard-layout array, bounds-checked (`None` if the layout
/// reaches outside `data`): the fallback of [`strided`] for layouts ndarray does not take as a view.
fn gather<T: Copy>(data: &[T], dims: &[usize], strides: &[usize], offset: usize) -> Option<ArrayD<T>> {
    if dims.len() != strides.len() {
        return None;
    }
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let mut at = offset;
        for (&i, &s) in idx.iter().zip(strides) {
            at = at.checked_add(i.checked_mul(s)?)?;
        }
        out.push(*data.get(at)?);
        for (i, &d) in idx.iter_mut().zip(dims).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    ArrayD::from_shape_vec(IxDyn(dims), out).ok()
}

/// Class-index targets of any integer dtype as `i64` (borrowed for `i64`, converted otherwise).
pub(crate) fn index_view<'a>(
    op: &'static str,
    what: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<CowArray<'a, i64, IxDyn>> {
    fn widen<T: WithDType + Into<i64>>(
        op: &'static str,
        what: &str,
        s: &CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<CowArray<'static, i64, IxDyn>> {
        Ok(CowArray::from(view::<T>(op, what, s, l)?.mapv(Into::into)))
    }
    match storage.dtype() {
        DType::I64 => view::<i64>(op, what, storage, layout),
        DType::U32 => widen::<u32>(op, what, storage, layout),
        DType::I32 => widen::<i32>(op, what, storage, layout),
        DType::I16 => widen::<i16>(op, what, storage, layout),
        DType::U8 => widen::<u8>(op, what, storage, layout),
        d => Err(msg(format!(
            "{op}: {what} has dtype {d:?}; class-index targets must be an integer tensor (u8, u32, i16, i32 or i64)"
        ))),
    }
}

/// The elements of `a` in logical row-major order, as candle storage wants them. An array in standard
/// layout gives up its own buffer (no copy; if it starts past the buffer's beginning, its elements are moved
/// down in place); any other layout is copied once, lane by lane along the last axis.
pub(crate) fn into_row_major<T: Copy>(a: ArrayD<T>) -> Vec<T> {
    if !a.is_standard_layout() {
        return row_major(a.view());
    }
    let n = a.len();
    let (mut v, offset) = a.into_raw_vec_and_offset();
    // standard layout: the `n` elements lie contiguously from `offset` (`None` only when there are none)
    let start = offset.unwrap_or(0).min(v.len());
    v.truncate(start.saturating_add(n));
    v.drain(..start);
    v
}

/// A row-major copy of a view: one `memcpy` when it is in standard layout, otherwise lane by lane along the
/// last axis (a slice copy per lane where that axis is contiguous, a strided run where it is not).
pub(crate) fn row_major<T: Copy>(a: ArrayViewD<'_, T>) -> Vec<T> {
    if let Some(s) = a.as_slice() {
        return s.to_vec();
    }
    let mut out = Vec::with_capacity(a.len());
    // not in standard layout, so at least one dimension (a 0-d view always is)
    for lane in a.lanes(Axis(a.ndim() - 1)) {
        match lane.as_slice() {
            Some(s) => out.extend_from_slice(s),
            None => out.extend(lane.iter().copied()),
        }
    }
    out
}

/// An owned array as candle CPU storage and shape (logical row-major order), its buffer moved.
pub(crate) fn to_storage<T: WithDType>(a: ArrayD<T>) -> (CpuStorage, Shape) {
    let shape = Shape::from(a.shape().to_vec());
    (T::to_cpu_storage_owned(into_row_major(a)), shape)
}

/// An owned array as a tensor on `device`, checked to have the shape of the argument it is the gradient of.
pub(crate) fn grad_tensor<T: WithDType>(
    op: &'static str,
    what: &str,
    a: ArrayD<T>,
    like: &Tensor,
) -> candle_core::Result<Tensor> {
    if a.shape() != like.dims() {
        return Err(msg(format!(
            "{op}: internal error: gradient of {what} has shape {:?}, the {what} has {:?}",
            a.shape(),
            like.dims()
        )));
    }
    let shape = Shape::from(a.shape().to_vec());
    Tensor::from_vec(into_row_major(a), shape, like.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gather fallback reads every layout exactly as the in-place view does.
    #[test]
    fn gather_matches_the_view() {
        let data: Vec<f64> = (0..40).map(f64::from).collect();
        let layouts: [(&[usize], &[usize], usize); 6] = [
            (&[3, 4], &[4, 1], 0),       // contiguous
            (&[4, 3], &[1, 4], 0),       // transposed
            (&[2, 3], &[8, 1], 9),       // narrowed: offset and a wider row stride
            (&[3, 4], &[0, 1], 5),       // broadcast row
            (&[2, 0, 3], &[0, 3, 1], 0), // empty
            (&[], &[], 7),               // 0-d
        ];
        for (dims, strides, off) in layouts {
            let v = strided("t", "x", &data, dims, strides, off).unwrap();
            let g = gather(&data, dims, strides, off).unwrap();
            assert_eq!(v.shape(), dims);
            assert_eq!(v.view(), g.view(), "{dims:?} {strides:?} {off}");
        }
        let t = strided("t", "x", &data, &[4, 3], &[1, 4], 0).unwrap();
        assert_eq!(t[[1, 2]], 9.0);
        assert_eq!(strided("t", "x", &data, &[], &[], 7).unwrap()[IxDyn(&[])], 7.0);
    }

    /// A standard-layout result hands its buffer to candle: the tensor's storage is the array's own `Vec`.
    #[test]
    fn results_in_standard_layout_move_their_buffer() {
        let a =
            ArrayD::from_shape_vec(IxDyn(&[3, 4]), (0..12).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
        let like = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        let ptr = a.as_ptr();
        let t = grad_tensor("t", "input", a, &like).unwrap();
        let (g, l) = t.storage_and_layout();
        let data = f32::cpu_storage_as_slice(cpu("t", "x", &g).unwrap()).unwrap();
        assert_eq!((data.as_ptr(), l.start_offset(), l.is_contiguous()), (ptr, 0, true));
        assert_eq!(data, (0..12).map(|i| i as f32).collect::<Vec<_>>());
        drop(g);

        let b = ArrayD::from_shape_vec(IxDyn(&[5]), vec![1.0f64, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let ptr = b.as_ptr();
        let (s, shape) = to_storage(b);
        assert_eq!((f64::cpu_storage_as_slice(&s).unwrap().as_ptr(), shape.dims()), (ptr, &[5usize][..]));
    }

    /// Every other layout comes out in row-major order: transposed, reversed, sliced (an offset into the
    /// buffer, standard or not), broadcast views, empty and 0-d arrays.
    #[test]
    fn other_layouts_come_out_row_major() {
        use ndarray::{Array3, s};
        let base = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (100 * i + 10 * j + k) as i32).into_dyn();
        let want = |v: ArrayViewD<'_, i32>| v.iter().copied().collect::<Vec<_>>();
        let cases: Vec<ArrayD<i32>> = vec![
            base.clone(),
            base.clone().reversed_axes(),
            base.clone().permuted_axes(IxDyn(&[1, 0, 2])),
            base.slice(s![1.., .., ..]).to_owned().into_dyn(),
            base.clone().slice_move(s![1.., 1.., ..]).into_dyn(), // standard layout, offset into its buffer
            base.clone().slice_move(s![.., .., 1..3]).into_dyn(), // offset and gaps
            base.clone().slice_move(s![.., ..;-1, ..]).into_dyn(), // negative stride
            ArrayD::from_shape_vec(IxDyn(&[2, 0, 3]), vec![]).unwrap(),
            ArrayD::from_elem(IxDyn(&[]), 7),
        ];
        for a in cases {
            let w = want(a.view());
            assert_eq!(row_major(a.view()), w, "{:?} {:?}", a.shape(), a.strides());
            assert_eq!(into_row_major(a.clone()), w, "{:?} {:?}", a.shape(), a.strides());
        }
        let row = base.slice(s![.., 1..2, ..]);
        let broadcast = row.broadcast(IxDyn(&[2, 5, 4])).unwrap(); // stride 0 along dimension 1
        assert_eq!(row_major(broadcast.view()), want(broadcast.view()));
    }

    /// A layout reaching outside the storage is an error, never a panic.
    #[test]
    fn out_of_bounds_layouts_are_errors() {
        let data = [1.0f32, 2.0, 3.0];
        assert!(gather(&data, &[2, 2], &[2, 1], 0).is_none());
        assert!(gather(&data, &[2], &[usize::MAX, 1], 0).is_none());
        let e = strided("kl_div", "input", &data, &[2, 2], &[2, 1], 0).unwrap_err().to_string();
        assert!(e.contains("kl_div: input's layout (dims [2, 2], strides [2, 1], offset 0) lies outside its storage of 3 elements"), "{e}");
        assert!(strided("kl_div", "input", &data, &[2], &[1], 9).is_err());
    }
}
