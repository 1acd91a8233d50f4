//! Class-index targets: validated against the input's shape, the class count, `ignore_index` and the
//! per-class weight, as PyTorch's `nll_loss` and `cross_entropy` check them.

use ndarray::{ArrayView1, ArrayViewD};

use super::array::try_vec;
use super::shape::{ClassLayout, unravel};
use super::{Element, Error, Real, Result, Shape};

/// Validated class-index targets of a class-dimension-1 input.
#[derive(Debug, Clone)]
pub(crate) struct IndexTargets<A> {
    /// Layout of the input.
    pub(crate) layout: ClassLayout,
    /// Shape of the `reduction = none` output (the input shape without dimension 1; `[]` for 1-D input).
    pub(crate) out_shape: Vec<usize>,
    /// The class of every row (row-major over `out_shape`); `None` where the target is `ignore_index`.
    pub(crate) class: Vec<Option<usize>>,
    /// The per-class weight in the compute type.
    pub(crate) weight: Option<Vec<A>>,
    /// `W` = Σ over non-ignored rows of `weight[target]` (the count of non-ignored rows without weight).
    pub(crate) total_weight: f64,
}

impl<A: Real> IndexTargets<A> {
    /// The weight of class `c` (1 without a weight).
    #[inline]
    pub(crate) fn w(&self, c: usize) -> A {
        match &self.weight {
            Some(w) => w.get(c).copied().unwrap_or_else(A::one),
            None => A::one(),
        }
    }
}

/// Checks a per-class weight against the number of classes and converts it to the compute type.
pub(crate) fn check_class_weight<T: Element>(
    op: &'static str,
    input_shape: &[usize],
    weight: Option<&ArrayView1<'_, T>>,
    classes: usize,
) -> Result<Option<Vec<T::Acc>>> {
    match weight {
        None => Ok(None),
        Some(w) if w.len() == classes => Ok(Some(w.iter().map(|v| v.to_acc()).collect())),
        Some(w) => Err(Error::shape_mismatch(
            op,
            "weight",
            w.shape(),
            "input",
            input_shape,
            format!(
                "are not compatible: weight must have one entry per class ({classes} classes), but has {}",
                w.len()
            ),
        )),
    }
}

/// Validates the target shape against the input shape, the weight, and every target value
/// (after the `ignore_index` test, so `ignore_index` may lie outside `[0, C)`), and computes `W`.
pub(crate) fn index_targets<T: Element>(
    op: &'static str,
    input_shape: &[usize],
    target: &ArrayViewD<'_, i64>,
    weight: Option<&ArrayView1<'_, T>>,
    ignore_index: i64,
) -> Result<IndexTargets<T::Acc>> {
    let layout = ClassLayout::of(op, input_shape)?;
    let tshape = target.shape();
    let out_shape = layout.row_shape(input_shape);
    let wrong_target = if layout.batched {
        (tshape != out_shape.as_slice()).then(|| {
            format!(
                "are not compatible: the target must have shape {} (the input shape without the class dimension 1)",
                Shape(out_shape.clone())
            )
        })
    } else {
        (!(tshape.is_empty() || tshape == [1])).then(|| {
            "are not compatible: a 1-D input (one row of classes, no batch) takes a 0-d target (or one of shape [1])"
                .to_string()
        })
    };
    if let Some(detail) = wrong_target {
        return Err(Error::shape_mismatch(op, "input", input_shape, "target", tshape, detail));
    }
    let weight = check_class_weight(op, input_shape, weight, layout.classes)?;
    // One entry per target, allocated fallibly: an empty input may come with a huge (broadcast) target.
    // Read in logical order, without copying the target first.
    let mut class = try_vec(op, "target", target.len())?;
    let mut total_weight = 0f64;
    for (r, &v) in target.iter().enumerate() {
        if v == ignore_index {
            class.push(None);
            continue;
        }
        let c = usize::try_from(v)
            .ok()
            .filter(|&c| c < layout.classes)
            .ok_or_else(|| Error::target_out_of_range(op, &unravel(r, tshape), v, layout.classes))?;
        total_weight += match &weight {
            Some(w) => w.get(c).map_or(1.0, |x| x.f64()),
            None => 1.0,
        };
        class.push(Some(c));
    }
    Ok(IndexTargets { layout, out_shape, class, weight, total_weight })
}
