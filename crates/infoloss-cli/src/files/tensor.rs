//! A tensor as a file stores it: element type, byte order, shape, memory order, and its bytes.
//!
//! The readers (`npy`, `npz`, `st`) produce a [`Tensor`] that borrows the bytes of the file (a memory
//! map for large files); [`Tensor::floats`] and [`Tensor::indices`] turn it into an array the library
//! accepts, viewing the bytes in place when the element type, byte order and alignment allow, and
//! converting into a new array (allocated fallibly) otherwise.
//!
//! This file depends on nothing else of the command line, so the fuzz targets include it as it is.

use std::borrow::Cow;
use std::fmt;

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn, ShapeBuilder};

/// The element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDType {
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// Signed integers of 1, 2, 4, 8 bytes.
    I8,
    /// 16-bit signed.
    I16,
    /// 32-bit signed.
    I32,
    /// 64-bit signed.
    I64,
    /// Unsigned integers of 1, 2, 4, 8 bytes.
    U8,
    /// 16-bit unsigned.
    U16,
    /// 32-bit unsigned.
    U32,
    /// 64-bit unsigned.
    U64,
    /// One byte, 0 or 1.
    Bool,
}

impl StoredDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        use StoredDType::*;
        match self {
            I8 | U8 | Bool => 1,
            F16 | BF16 | I16 | U16 => 2,
            F32 | I32 | U32 => 4,
            F64 | I64 | U64 => 8,
        }
    }

    /// Whether the type is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, StoredDType::F16 | StoredDType::BF16 | StoredDType::F32 | StoredDType::F64)
    }

    /// NumPy's name.
    pub fn name(self) -> &'static str {
        use StoredDType::*;
        match self {
            F16 => "float16",
            BF16 => "bfloat16",
            F32 => "float32",
            F64 => "float64",
            I8 => "int8",
            I16 => "int16",
            I32 => "int32",
            I64 => "int64",
            U8 => "uint8",
            U16 => "uint16",
            U32 => "uint32",
            U64 => "uint64",
            Bool => "bool",
        }
    }
}

impl fmt::Display for StoredDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor as stored: the bytes of exactly `numel · size` elements.
#[derive(Debug, Clone)]
pub struct Tensor<'a> {
    /// Element type.
    pub dtype: StoredDType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Column-major (Fortran) element order instead of row-major.
    pub fortran: bool,
    /// Big-endian elements.
    pub big_endian: bool,
    /// The element bytes (exactly `numel · dtype.size()`).
    pub data: Cow<'a, [u8]>,
}

/// The number of elements of `shape` and its size in bytes, or an error if either overflows or the array
/// could not be addressed (more than `isize::MAX` bytes).
pub fn checked_size(shape: &[usize], item: usize) -> Result<(usize, usize), String> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .ok_or_else(|| format!("shape {shape:?} has more elements than can be addressed"))?;
    }
    // ndarray also requires the product of the non-zero axis lengths to fit in isize.
    let mut nz: usize = 1;
    for &d in shape {
        if d != 0 {
            nz = nz
                .checked_mul(d)
                .filter(|&v| v <= isize::MAX as usize)
                .ok_or_else(|| format!("shape {shape:?} is too large to index"))?;
        }
    }
    let bytes = n
        .checked_mul(item)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| format!("shape {shape:?} is too large ({n} elements of {item} bytes)"))?;
    Ok((n, bytes))
}

/// An element type the library computes in, built from any stored element.
pub trait FromStored: Copy + bytemuck::Pod + 'static {
    /// The stored type that can be viewed in place as `Self`.
    const STORED: StoredDType;
    /// Rounds an `f64` to `Self` (once).
    fn from_f64(v: f64) -> Self;
    /// Converts from `f32` (exact for f32/f64, rounded once for f16/bf16).
    fn from_f32(v: f32) -> Self;
    /// Converts from `f16` (exact except f16 → bf16, which rounds once).
    fn from_f16(v: f16) -> Self;
    /// Converts from `bf16` (exact except bf16 → f16, which rounds once).
    fn from_bf16(v: bf16) -> Self;
    /// Widens to `f64` (exact).
    fn to_f64(self) -> f64;
}

impl FromStored for f32 {
    const STORED: StoredDType = StoredDType::F32;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn from_f16(v: f16) -> Self {
        v.to_f32()
    }
    fn from_bf16(v: bf16) -> Self {
        v.to_f32()
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl FromStored for f64 {
    const STORED: StoredDType = StoredDType::F64;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    fn from_f16(v: f16) -> Self {
        v.to_f64()
    }
    fn from_bf16(v: bf16) -> Self {
        v.to_f64()
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// A half type `$t` (stored as `$stored`): converted from `f64` and `f32` by its own rounding, from itself
/// as is (`$own`), and from the other half type `$o` (`$from_other`) through `f32`, which holds both exactly.
macro_rules! half_from_stored {
    ($t:ident = $stored:ident, $own:ident; $from_other:ident($o:ident)) => {
        impl FromStored for $t {
            const STORED: StoredDType = StoredDType::$stored;
            fn from_f64(v: f64) -> Self {
                $t::from_f64(v)
            }
            fn from_f32(v: f32) -> Self {
                $t::from_f32(v)
            }
            fn $own(v: $t) -> Self {
                v
            }
            fn $from_other(v: $o) -> Self {
                $t::from_f32(v.to_f32())
            }
            fn to_f64(self) -> f64 {
                self.to_f64()
            }
        }
    };
}

half_from_stored!(f16 = F16, from_f16; from_bf16(bf16));
half_from_stored!(bf16 = BF16, from_bf16; from_f16(f16));

/// Reads `N` bytes at `i·N` in the given byte order.
#[inline]
fn chunk<const N: usize>(data: &[u8], i: usize, big_endian: bool) -> [u8; N] {
    let mut b = [0u8; N];
    if let Some(s) = data.get(i * N..i * N + N) {
        b.copy_from_slice(s);
    }
    if big_endian {
        b.reverse();
    }
    b
}

/// A new vector of `n` elements, or an error naming the bytes that could not be allocated.
pub fn try_vec<T>(n: usize) -> Result<Vec<T>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        format!("cannot allocate {} bytes to convert the array", n.saturating_mul(std::mem::size_of::<T>()))
    })?;
    Ok(v)
}

impl<'a> Tensor<'a> {
    /// Number of elements (the readers have checked it does not overflow).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The ndarray shape, with Fortran strides when the file is column-major.
    fn nd_shape(&self) -> ndarray::StrideShape<IxDyn> {
        IxDyn(&self.shape).set_f(self.fortran).into()
    }

    /// Wraps converted elements (in file order) into an array of the tensor's shape and memory order.
    fn wrap<T>(&self, v: Vec<T>) -> Result<ArrayD<T>, String> {
        ArrayD::from_shape_vec(self.nd_shape(), v)
            .map_err(|e| format!("internal: cannot shape the array: {e}"))
    }

    /// The elements as `T`: a view of the bytes in place when the stored type is `T`, little-endian (on a
    /// little-endian machine) and aligned, otherwise converted (exactly when widening) into a new array.
    ///
    /// Integer and boolean tensors convert to their values (the callers decide whether they accept them).
    /// Errors only when the conversion cannot be allocated.
    pub fn into_floats<T: FromStored>(self) -> Result<CowArray<'a, T, IxDyn>, String> {
        if self.dtype == T::STORED && self.big_endian == cfg!(target_endian = "big") {
            if let Cow::Borrowed(bytes) = self.data {
                if let Ok(s) = bytemuck::try_cast_slice::<u8, T>(bytes) {
                    let v = ArrayViewD::from_shape(self.nd_shape(), s)
                        .map_err(|e| format!("internal: cannot view the array: {e}"))?;
                    return Ok(CowArray::from(v));
                }
            }
        }
        let numel = self.numel();
        let mut out: Vec<T> = try_vec(numel)?;
        let d = &self.data;
        let be = self.big_endian;
        use StoredDType::*;
        for i in 0..numel {
            let v = match self.dtype {
                F16 => T::from_f16(f16::from_le_bytes(chunk::<2>(d, i, be))),
                BF16 => T::from_bf16(bf16::from_le_bytes(chunk::<2>(d, i, be))),
                F32 => T::from_f32(f32::from_le_bytes(chunk::<4>(d, i, be))),
                F64 => T::from_f64(f64::from_le_bytes(chunk::<8>(d, i, be))),
                I8 => T::from_f64(i8::from_le_bytes(chunk::<1>(d, i, be)) as f64),
                I16 => T::from_f64(i16::from_le_bytes(chunk::<2>(d, i, be)) as f64),
                I32 => T::from_f64(i32::from_le_bytes(chunk::<4>(d, i, be)) as f64),
                I64 => T::from_f64(i64::from_le_bytes(chunk::<8>(d, i, be)) as f64),
                U8 | Bool => T::from_f64(u8::from_le_bytes(chunk::<1>(d, i, be)) as f64),
                U16 => T::from_f64(u16::from_le_bytes(chunk::<2>(d, i, be)) as f64),
                U32 => T::from_f64(u32::from_le_bytes(chunk::<4>(d, i, be)) as f64),
                U64 => T::from_f64(u64::from_le_bytes(chunk::<8>(d, i, be)) as f64),
            };
            out.push(v);
        }
        Ok(CowArray::from(self.wrap(out)?))
    }

    /// The elements as class indices (`i64`): viewed in place for aligned native int64, converted from
    /// any other integer type; floating-point tensors are rejected (as PyTorch does: "expected target
    /// dtype to be Long"), as are unsigned values above `i64::MAX`.
    pub fn into_indices(self) -> Result<CowArray<'a, i64, IxDyn>, String> {
        use StoredDType::*;
        if self.dtype.is_float() {
            return Err(format!(
                "wrong dtype {}: class indices must be integers (int64 or int32)",
                self.dtype
            ));
        }
        let numel = self.numel();
        if self.dtype == I64 && self.big_endian == cfg!(target_endian = "big") {
            if let Cow::Borrowed(bytes) = self.data {
                if let Ok(s) = bytemuck::try_cast_slice::<u8, i64>(bytes) {
                    let v = ArrayViewD::from_shape(self.nd_shape(), s)
                        .map_err(|e| format!("internal: cannot view the array: {e}"))?;
                    return Ok(CowArray::from(v));
                }
            }
        }
        let mut out: Vec<i64> = try_vec(numel)?;
        let d = &self.data;
        let be = self.big_endian;
        for i in 0..numel {
            let v = match self.dtype {
                I8 => i8::from_le_bytes(chunk::<1>(d, i, be)) as i64,
                I16 => i16::from_le_bytes(chunk::<2>(d, i, be)) as i64,
                I32 => i32::from_le_bytes(chunk::<4>(d, i, be)) as i64,
                I64 => i64::from_le_bytes(chunk::<8>(d, i, be)),
                U8 | Bool => u8::from_le_bytes(chunk::<1>(d, i, be)) as i64,
                U16 => u16::from_le_bytes(chunk::<2>(d, i, be)) as i64,
                U32 => u32::from_le_bytes(chunk::<4>(d, i, be)) as i64,
                U64 => {
                    let u = u64::from_le_bytes(chunk::<8>(d, i, be));
                    i64::try_from(u)
                        .map_err(|_| format!("class index {u} at element {i} does not fit in int64"))?
                }
                F16 | BF16 | F32 | F64 => 0,
            };
            out.push(v);
        }
        Ok(CowArray::from(self.wrap(out)?))
    }
}

/// The index of the member of a container (an `.npz` archive, a `.safetensors` file) holding `names` to
/// read: the one named `wanted`, or the only one. `(item, container, flag)` name them in the errors
/// (`("array", "archive", "--key")`).
pub fn choose_member(
    names: &[String],
    wanted: Option<&str>,
    (item, container, flag): (&str, &str, &str),
) -> Result<usize, String> {
    let list = || names.join(", ");
    match wanted {
        Some(w) => names
            .iter()
            .position(|n| n == w)
            .ok_or_else(|| format!("no {item} '{w}' in the {container} (it holds: {})", list())),
        None => match names.len() {
            1 => Ok(0),
            0 => Err(format!("the {container} holds no {item}s")),
            n => Err(format!(
                "the {container} holds {n} {item}s ({}): choose one with {flag} NAME or FILE#NAME",
                list()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dtype: StoredDType, shape: &[usize], fortran: bool, be: bool, data: Vec<u8>) -> Tensor<'static> {
        Tensor { dtype, shape: shape.to_vec(), fortran, big_endian: be, data: Cow::Owned(data) }
    }

    #[test]
    fn views_aligned_native_data_in_place() {
        let vals = [1.5f32, -2.0, 3.25, 0.0];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        // Copy into f32 storage so the bytes are aligned for f32.
        let store: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let tensor = Tensor {
            dtype: StoredDType::F32,
            shape: vec![2, 2],
            fortran: false,
            big_endian: false,
            data: Cow::Borrowed(bytemuck::cast_slice(&store)),
        };
        let a = tensor.clone().into_floats::<f32>().unwrap();
        assert!(a.is_view(), "same dtype, aligned: no copy");
        assert_eq!(a[[1, 0]], 3.25);
        let b = tensor.clone().into_floats::<f64>().unwrap();
        assert!(!b.is_view());
        assert_eq!(b[[0, 1]], -2.0);
    }

    #[test]
    fn converts_big_endian_and_fortran_order() {
        // Column-major [[1, 2], [3, 4]] is stored 1, 3, 2, 4.
        let bytes: Vec<u8> = [1.0f64, 3.0, 2.0, 4.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let a = t(StoredDType::F64, &[2, 2], true, true, bytes).clone().into_floats::<f64>().unwrap();
        // Logical (row-major) order.
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!((a[[0, 1]], a[[1, 0]]), (2.0, 3.0));
    }

    #[test]
    fn indices_from_int32_and_rejections() {
        let bytes: Vec<u8> = [3i32, -100, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = t(StoredDType::I32, &[3], false, false, bytes).into_indices().unwrap();
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![3, -100, 0]);
        let e = t(StoredDType::F32, &[1], false, false, vec![0; 4]).into_indices().unwrap_err();
        assert!(e.contains("wrong dtype float32"), "{e}");
        let e = t(StoredDType::U64, &[1], false, false, u64::MAX.to_le_bytes().to_vec())
            .into_indices()
            .unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
    }

    #[test]
    fn sizes_that_overflow_are_errors() {
        assert!(checked_size(&[usize::MAX, 2], 4).is_err());
        assert!(checked_size(&[1 << 62, 0, 1 << 62], 4).is_err());
        assert!(checked_size(&[1 << 61], 8).is_err());
        assert_eq!(checked_size(&[0, 1 << 40], 8).unwrap(), (0, 0));
        assert_eq!(checked_size(&[], 8).unwrap(), (1, 8));
    }
}
