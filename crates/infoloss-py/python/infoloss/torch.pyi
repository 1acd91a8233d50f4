"""Type stubs of ``infoloss.torch`` (checked against the runtime by tests/test_stubs.py)."""

from typing import Any, Literal, NamedTuple, Optional, Sequence, Union

import torch

Reduction = Literal["none", "mean", "sum"]
KlReduction = Literal["none", "mean", "sum", "batchmean"]

def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor: ...
def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
) -> torch.Tensor: ...
def kl_div(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: KlReduction = "mean",
    log_target: bool = False,
) -> torch.Tensor: ...
def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
) -> torch.Tensor: ...
def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: Reduction = "mean",
    pos_weight: Optional[torch.Tensor] = None,
) -> torch.Tensor: ...
def log_softmax(
    input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Optional[torch.dtype] = None
) -> torch.Tensor: ...
def softmax(
    input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Optional[torch.dtype] = None
) -> torch.Tensor: ...
def logsumexp(input: torch.Tensor, dim: Union[int, Sequence[int]], keepdim: bool = False) -> torch.Tensor: ...
def distill(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Literal["forward_kl", "reverse_kl", "jsd", "tvd"] = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: KlReduction = "batchmean",
    normalizer: Optional[float] = None,
) -> torch.Tensor: ...
def distill_topk(
    student_logits: torch.Tensor,
    topk_indices: torch.Tensor,
    topk_logprobs: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Literal["forward_kl", "reverse_kl", "jsd", "tvd"] = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: KlReduction = "batchmean",
    normalizer: Optional[float] = None,
) -> torch.Tensor: ...
def uda_consistency(
    ori_logits: torch.Tensor,
    aug_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    sharpen: Literal["target", "augmented"] = "target",
    confidence_threshold: Optional[float] = None,
    normalize: Literal["kept_rows", "all_rows"] = "kept_rows",
) -> torch.Tensor: ...
class CrossEntropyExtrasOutput(NamedTuple):
    loss: torch.Tensor
    z_loss: torch.Tensor
    lse: Optional[torch.Tensor]
    token_accuracy: Union[float, torch.Tensor, None]

def cross_entropy_extras(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    return_token_accuracy: bool = False,
) -> CrossEntropyExtrasOutput: ...
def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: Optional[torch.Tensor] = None,
    weight: Optional[torch.Tensor] = None,
    reduction: Reduction = "mean",
    ignore_index: Optional[int] = None,
    label_smoothing: float = 0.0,
    options: Any = None,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    chunk_size: Optional[int] = None,
) -> torch.Tensor: ...
def linear_distill(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    student_bias: Optional[torch.Tensor] = None,
    teacher_bias: Optional[torch.Tensor] = None,
    teacher_topk: Optional[int] = None,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: Literal["forward_kl", "reverse_kl", "jsd", "tvd"] = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: KlReduction = "batchmean",
    normalizer: Optional[float] = None,
    chunk_size: Optional[int] = None,
) -> torch.Tensor: ...

__all__: list[str]
