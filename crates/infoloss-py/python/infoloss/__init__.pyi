"""Type stubs of the public NumPy API of infoloss (checked against the runtime by tests/test_stubs.py)."""

from typing import Any, Literal, NamedTuple, Optional, Sequence, Tuple, Union, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__version__: str

Floats = NDArray[np.floating[Any]]
#: A reduced loss is a Python float; an unreduced one (``reduction='none'``) an array.
LossValue = Union[float, Floats]
#: SciPy's convention: 0-d results are NumPy scalars.
Measure = Union[np.floating[Any], Floats]
Reduction = Literal["none", "mean", "sum"]
KlReduction = Literal["none", "mean", "sum", "batchmean"]
DistillReduction = Literal["batchmean", "mean", "sum", "none"]
Divergence = Literal["forward_kl", "reverse_kl", "jsd", "tvd"]

# ------------------------------------------------------------------------------------------- torch-style losses

def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> LossValue: ...
@overload
def cross_entropy_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = ...,
    size_average: Optional[bool] = ...,
    ignore_index: int = ...,
    reduce: Optional[bool] = ...,
    reduction: Reduction = ...,
    label_smoothing: float = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[LossValue, Floats]: ...
@overload
def cross_entropy_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = ...,
    size_average: Optional[bool] = ...,
    ignore_index: int = ...,
    reduce: Optional[bool] = ...,
    reduction: Reduction = ...,
    label_smoothing: float = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[LossValue, Floats, Optional[Floats]]: ...
def cross_entropy_with_grad_in_place(
    input: Floats,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> LossValue: ...
def kl_div_with_grad_in_place(
    input: Floats,
    target: ArrayLike,
    reduction: KlReduction = "mean",
    log_target: bool = False,
) -> LossValue: ...
def binary_cross_entropy_with_grad_in_place(
    input: Floats,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    reduction: Reduction = "mean",
) -> LossValue: ...
def binary_cross_entropy_with_logits_with_grad_in_place(
    input: Floats,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    reduction: Reduction = "mean",
    pos_weight: Optional[ArrayLike] = None,
) -> LossValue: ...
def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
) -> LossValue: ...
def nll_loss_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
    *,
    grad_output: Optional[ArrayLike] = None,
) -> Tuple[LossValue, Floats]: ...
def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: KlReduction = "mean",
    log_target: bool = False,
) -> LossValue: ...
@overload
def kl_div_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: KlReduction = ...,
    log_target: bool = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[LossValue, Floats]: ...
@overload
def kl_div_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: KlReduction = ...,
    log_target: bool = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[LossValue, Floats, Floats]: ...
def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
) -> LossValue: ...
@overload
def binary_cross_entropy_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = ...,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: Reduction = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[LossValue, Floats]: ...
@overload
def binary_cross_entropy_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = ...,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: Reduction = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[LossValue, Floats, Floats]: ...
def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
    pos_weight: Optional[ArrayLike] = None,
) -> LossValue: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = ...,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: Reduction = ...,
    pos_weight: Optional[ArrayLike] = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[LossValue, Floats]: ...
@overload
def binary_cross_entropy_with_logits_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = ...,
    size_average: Optional[bool] = ...,
    reduce: Optional[bool] = ...,
    reduction: Reduction = ...,
    pos_weight: Optional[ArrayLike] = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[LossValue, Floats, Floats]: ...

# ------------------------------------------------------------------------------------------ distillation and UDA

def distill(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
) -> LossValue: ...
def distill_with_grad(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
    grad_output: Optional[ArrayLike] = None,
) -> Tuple[LossValue, Floats]: ...
def distill_topk(
    student_logits: ArrayLike,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
) -> LossValue: ...
def distill_topk_with_grad(
    student_logits: ArrayLike,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
    grad_output: Optional[ArrayLike] = None,
) -> Tuple[LossValue, Floats]: ...

def distill_with_grad_in_place(
    student_logits: Floats,
    teacher_logits: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
) -> LossValue: ...
def distill_topk_with_grad_in_place(
    student_logits: Floats,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
) -> LossValue: ...

class UdaResult(NamedTuple):
    loss: float
    grad_aug: Floats
    mask: Floats
    kept: int
    row_kl: Floats

def uda_consistency(
    ori_logits: ArrayLike,
    aug_logits: ArrayLike,
    *,
    temperature: float = 1.0,
    sharpen: Literal["target", "augmented"] = "target",
    confidence_threshold: Optional[float] = None,
    normalize: Literal["kept_rows", "all_rows"] = "kept_rows",
) -> UdaResult: ...
class UdaLossResult(NamedTuple):
    loss: float
    mask: Floats
    kept: int
    row_kl: Floats

def uda_consistency_loss(
    ori_logits: ArrayLike,
    aug_logits: ArrayLike,
    *,
    temperature: float = 1.0,
    sharpen: Literal["target", "augmented"] = "target",
    confidence_threshold: Optional[float] = None,
    normalize: Literal["kept_rows", "all_rows"] = "kept_rows",
) -> UdaLossResult: ...
def uda_consistency_backward(
    ori_logits: ArrayLike,
    aug_logits: ArrayLike,
    grad_output: ArrayLike,
    *,
    temperature: float = 1.0,
    sharpen: Literal["target", "augmented"] = "target",
    confidence_threshold: Optional[float] = None,
    normalize: Literal["kept_rows", "all_rows"] = "kept_rows",
) -> Floats: ...

# ------------------------------------------------------------------------- cross-entropy extras, fused linear losses

class CrossEntropyExtrasResult(NamedTuple):
    loss: LossValue
    grad_input: Optional[Floats]
    z_loss: LossValue
    lse: Optional[Floats]
    token_accuracy: Optional[LossValue]

def cross_entropy_extras(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    return_token_accuracy: bool = False,
) -> CrossEntropyExtrasResult: ...
def cross_entropy_extras_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    return_token_accuracy: bool = False,
    grad_output: Optional[ArrayLike] = None,
) -> CrossEntropyExtrasResult: ...

class LinearCrossEntropyResult(NamedTuple):
    loss: LossValue
    grad_input: Floats
    grad_linear_weight: Floats
    grad_linear_bias: Optional[Floats]
    z_loss: LossValue
    lse: Optional[Floats]
    token_accuracy: Optional[LossValue]

def linear_cross_entropy(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: Optional[ArrayLike] = None,
    weight: Optional[ArrayLike] = None,
    reduction: Reduction = "mean",
    ignore_index: Optional[int] = -100,
    label_smoothing: float = 0.0,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    chunk_size: Optional[int] = None,
) -> LossValue: ...
def linear_cross_entropy_with_grad(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: Optional[ArrayLike] = None,
    weight: Optional[ArrayLike] = None,
    reduction: Reduction = "mean",
    ignore_index: Optional[int] = -100,
    label_smoothing: float = 0.0,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    chunk_size: Optional[int] = None,
    return_lse: bool = False,
    return_token_accuracy: bool = False,
    grad_output: Optional[ArrayLike] = None,
) -> LinearCrossEntropyResult: ...
class LinearDistillResult(NamedTuple):
    loss: LossValue
    grad_student_hidden: Floats
    grad_student_weight: Floats
    grad_student_bias: Optional[Floats]

def linear_distill(
    student_hidden: ArrayLike,
    student_weight: ArrayLike,
    teacher_hidden: ArrayLike,
    teacher_weight: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    student_bias: Optional[ArrayLike] = None,
    teacher_bias: Optional[ArrayLike] = None,
    teacher_topk: Optional[int] = None,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
    chunk_size: Optional[int] = None,
) -> LossValue: ...
def linear_distill_with_grad(
    student_hidden: ArrayLike,
    student_weight: ArrayLike,
    teacher_hidden: ArrayLike,
    teacher_weight: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    student_bias: Optional[ArrayLike] = None,
    teacher_bias: Optional[ArrayLike] = None,
    teacher_topk: Optional[int] = None,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: DistillReduction = "batchmean",
    normalizer: Optional[float] = None,
    chunk_size: Optional[int] = None,
    grad_output: Optional[ArrayLike] = None,
) -> LinearDistillResult: ...

# ------------------------------------------------------------------------------------------------ row functions

def log_softmax(
    input: ArrayLike, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Optional[DTypeLike] = None
) -> Floats: ...
def log_softmax_with_grad(
    input: ArrayLike,
    dim: Optional[int] = None,
    _stacklevel: int = 3,
    dtype: Optional[DTypeLike] = None,
    *,
    grad_output: Optional[ArrayLike] = None,
) -> Tuple[Floats, Floats]: ...
def softmax(
    input: ArrayLike, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Optional[DTypeLike] = None
) -> Floats: ...
def softmax_with_grad(
    input: ArrayLike,
    dim: Optional[int] = None,
    _stacklevel: int = 3,
    dtype: Optional[DTypeLike] = None,
    *,
    grad_output: Optional[ArrayLike] = None,
) -> Tuple[Floats, Floats]: ...
def logsumexp(input: ArrayLike, dim: Union[int, Sequence[int]], keepdim: bool = False) -> Measure: ...
def logsumexp_with_grad(
    input: ArrayLike,
    dim: Union[int, Sequence[int]],
    keepdim: bool = False,
    *,
    grad_output: Optional[ArrayLike] = None,
) -> Tuple[Measure, Floats]: ...

# ------------------------------------------------------------------------------------------- SciPy-style measures

def entr(x: ArrayLike) -> Measure: ...
def entr_with_grad(x: ArrayLike, *, grad_output: Optional[ArrayLike] = None) -> Tuple[Measure, Floats]: ...
def rel_entr(x: ArrayLike, y: ArrayLike) -> Measure: ...
@overload
def rel_entr_with_grad(
    x: ArrayLike,
    y: ArrayLike,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[Measure, Floats]: ...
@overload
def rel_entr_with_grad(
    x: ArrayLike,
    y: ArrayLike,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[Measure, Floats, Floats]: ...
def self_information(p: ArrayLike, base: Optional[float] = None) -> Measure: ...
def self_information_with_grad(
    p: ArrayLike, base: Optional[float] = None, *, grad_output: Optional[ArrayLike] = None
) -> Tuple[Measure, Floats]: ...
def entropy(
    pk: ArrayLike,
    qk: Optional[ArrayLike] = None,
    base: Optional[float] = None,
    axis: Optional[int] = 0,
    *,
    nan_policy: Literal["propagate", "raise", "omit"] = "propagate",
    keepdims: bool = False,
) -> Measure: ...
@overload
def entropy_with_grad(
    pk: ArrayLike,
    qk: Optional[ArrayLike] = ...,
    base: Optional[float] = ...,
    axis: Optional[int] = ...,
    *,
    nan_policy: Literal["propagate", "raise", "omit"] = ...,
    keepdims: bool = ...,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[Measure, Floats]: ...
@overload
def entropy_with_grad(
    pk: ArrayLike,
    qk: Optional[ArrayLike] = ...,
    base: Optional[float] = ...,
    axis: Optional[int] = ...,
    *,
    nan_policy: Literal["propagate", "raise", "omit"] = ...,
    keepdims: bool = ...,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[Measure, Floats, Optional[Floats]]: ...
def shannon_cross_entropy(
    pk: ArrayLike,
    qk: ArrayLike,
    base: Optional[float] = None,
    axis: Optional[int] = 0,
    *,
    keepdims: bool = False,
) -> Measure: ...
@overload
def shannon_cross_entropy_with_grad(
    pk: ArrayLike,
    qk: ArrayLike,
    base: Optional[float] = ...,
    axis: Optional[int] = ...,
    *,
    keepdims: bool = ...,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[Measure, Floats]: ...
@overload
def shannon_cross_entropy_with_grad(
    pk: ArrayLike,
    qk: ArrayLike,
    base: Optional[float] = ...,
    axis: Optional[int] = ...,
    *,
    keepdims: bool = ...,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[Measure, Floats, Floats]: ...
def jensenshannon(
    p: ArrayLike,
    q: ArrayLike,
    base: Optional[float] = None,
    axis: Optional[int] = 0,
    keepdims: bool = False,
) -> Measure: ...
@overload
def jensenshannon_with_grad(
    p: ArrayLike,
    q: ArrayLike,
    base: Optional[float] = ...,
    axis: Optional[int] = ...,
    keepdims: bool = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[False] = ...,
) -> Tuple[Measure, Floats]: ...
@overload
def jensenshannon_with_grad(
    p: ArrayLike,
    q: ArrayLike,
    base: Optional[float] = ...,
    axis: Optional[int] = ...,
    keepdims: bool = ...,
    *,
    grad_output: Optional[ArrayLike] = ...,
    return_target_grad: Literal[True],
) -> Tuple[Measure, Floats, Floats]: ...

# ------------------------------------------------------------------------------------------------------ threads

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

__all__: list[str]
