//! The `.safetensors` format (Hugging Face): an 8-byte little-endian header length, a JSON header naming
//! each tensor's dtype, shape and byte range, then the data. Parsed and validated by the `safetensors`
//! crate; the chosen tensor's bytes are borrowed in place.

use std::borrow::Cow;

use safetensors::{Dtype, SafeTensors};

use super::tensor::{StoredDType, Tensor, checked_size, choose_member};

/// Chooses a tensor (by `name`, or the only one when `name` is `None`) and returns its name and contents.
pub fn parse<'a>(bytes: &'a [u8], name: Option<&str>) -> Result<(String, Tensor<'a>), String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid .safetensors file: {e}"))?;
    let mut all: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    all.sort();
    let name = all[choose_member(&all, name, ("tensor", "file", "--tensor"))?].clone();
    let view = st.tensor(&name).map_err(|e| format!("cannot read tensor '{name}': {e}"))?;
    let dtype = match view.dtype() {
        Dtype::F16 => StoredDType::F16,
        Dtype::BF16 => StoredDType::BF16,
        Dtype::F32 => StoredDType::F32,
        Dtype::F64 => StoredDType::F64,
        Dtype::I8 => StoredDType::I8,
        Dtype::I16 => StoredDType::I16,
        Dtype::I32 => StoredDType::I32,
        Dtype::I64 => StoredDType::I64,
        Dtype::U8 => StoredDType::U8,
        Dtype::U16 => StoredDType::U16,
        Dtype::U32 => StoredDType::U32,
        Dtype::U64 => StoredDType::U64,
        Dtype::BOOL => StoredDType::Bool,
        other => {
            return Err(format!(
                "tensor '{name}' has unsupported dtype {other:?} (expected F16, BF16, F32, F64 or an integer type)"
            ));
        }
    };
    let shape = view.shape().to_vec();
    let (_, nbytes) = checked_size(&shape, dtype.size()).map_err(|e| format!("tensor '{name}': {e}"))?;
    let data: &'a [u8] = view.data();
    if data.len() != nbytes {
        return Err(format!(
            "tensor '{name}' has {} bytes of data but shape {shape:?} of {dtype} needs {nbytes}",
            data.len()
        ));
    }
    Ok((name, Tensor { dtype, shape, fortran: false, big_endian: false, data: Cow::Borrowed(data) }))
}
