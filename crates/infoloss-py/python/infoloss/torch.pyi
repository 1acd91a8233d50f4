"""Type stubs of ``infoloss.torch`` (checked against the runtime by tests/test_stubs.py)."""

from typing import Any, Literal, Optional, Sequence, Union

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

__all__: list[str]
