"""PyTorch drop-ins for CPU tensors: swap ``F.cross_entropy`` for ``infoloss.torch.cross_entropy`` and
``loss.backward()``, ``torch.compile``, autocast and ``torch.set_num_threads`` work as with torch's own losses.

Every ``torch.nn.functional`` name has its signature, defaults and warnings; :func:`linear_cross_entropy` has
``F.linear_cross_entropy``'s (plus the z-loss, softcap and chunk size). The distillation and UDA losses
(:func:`distill`, :func:`distill_topk`, :func:`uda_consistency`, :func:`linear_distill`,
:func:`linear_distill_topk`) and :func:`cross_entropy_extras` take the NumPy API's arguments; their gradient flows to the student (the augmented
logits for UDA) only: the teacher (the original logits) is a constant, as if detached. Gradients flow to the input
and, where torch defines one, to the target (probability targets of ``cross_entropy``, ``kl_div``, both BCEs).
Supported dtypes: float16, bfloat16 (computed in float32 and rounded once, as infoloss does for bfloat16), float32,
float64; CPU tensors only.

**Torch operators.** Each function is a thin argument-resolving wrapper around a ``torch.library`` custom operator
in the ``infoloss`` namespace (``torch.ops.infoloss.cross_entropy``, ...) with a fake (shape) implementation, an
autograd formula and an autocast rule, so ``torch.compile(model, fullgraph=True)`` traces them without graph
breaks and gives the eager numbers. Tensors are handed to infoloss without copying (``tensor.numpy()``). For
reduced losses the gradient is computed together with the loss in the forward operator (only when a gradient is
needed) and scaled by the upstream gradient in the backward pass; unreduced losses (and ``uda_consistency``, whose
backward applies the upstream gradient inside infoloss, rounding once) run a backward operator
(``torch.ops.infoloss.<name>_backward``) with the upstream gradient.

**Double backward** is not supported: a gradient computed with ``create_graph=True`` is correct, but
differentiating it again (a gradient penalty ``loss + λ‖∇loss‖²``) raises ``RuntimeError: infoloss.<name>: double
backward is not supported`` instead of returning a silently wrong second derivative.

**Autocast.** Under ``torch.autocast("cpu", ...)`` (bfloat16 or float16) the losses follow torch's CPU autocast
policy: ``cross_entropy``, ``nll_loss``, ``kl_div``, ``binary_cross_entropy`` and
``binary_cross_entropy_with_logits`` run in float32 (their inputs are cast to float32, the loss is float32, the
gradients flow back in the inputs' dtypes), as torch's do; ``log_softmax``, ``softmax`` and ``logsumexp`` are not
autocast on CPU by torch, so they run in their input's dtype. The infoloss-only losses follow their torch building
blocks, which are float32 ops (``kl_div``, ``cross_entropy``): ``distill``, ``distill_topk``, ``uda_consistency``,
``cross_entropy_extras``, ``linear_cross_entropy``, ``linear_distill`` and ``linear_distill_topk`` run in float32.
(``F.linear_cross_entropy`` computes its logits in the autocast dtype and the loss in float32; the fused kernel
computes both in float32, so it is the more precise of the two.)

**Threads.** Called through ``infoloss.torch``, infoloss computes with torch's thread count
(``torch.get_num_threads()``, read on every call, so ``torch.set_num_threads(n)`` reaches infoloss, and DataLoader
workers, where torch uses one thread, use one) unless :func:`infoloss.set_num_threads` was called, which wins.

Example:
    >>> import torch, infoloss.torch as itorch
    >>> x = torch.zeros(2, 3, requires_grad=True)
    >>> loss = itorch.cross_entropy(x, torch.tensor([0, 2]))
    >>> loss.backward(); round(loss.item(), 6), [round(v, 6) for v in x.grad[0].tolist()]
    (1.098612, [-0.333333, 0.166667, 0.166667])
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

try:
    import torch
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "infoloss.torch needs PyTorch, which is not installed (pip install torch); "
        "the NumPy API in `infoloss` works without it"
    ) from _e

from . import _common as c
from . import _distill as _D
from . import _linear as _L

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "cross_entropy_extras",
    "distill",
    "distill_topk",
    "kl_div",
    "linear_cross_entropy",
    "linear_distill",
    "linear_distill_topk",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
    "uda_consistency",
]


# importing it registers the custom ops under torch.ops.infoloss
from ._torch_ops import _call, _check, _check_tensors, _no_weight_grad  # noqa: E402

# the teacher cache as a torch Dataset (not operators: left out of __all__, which lists the custom ops)
from ._cache_torch import TeacherCacheDataset, distill_topk_args  # noqa: E402,F401
# the vocab-parallel losses run torch.distributed collectives between infoloss steps: autograd Functions, not
# custom operators (a process group is not an operator argument); left out of __all__ with the cache helpers
from ._vocab_parallel import (  # noqa: E402,F401
    global_token_count,
    vocab_parallel_cross_entropy,
    vocab_parallel_distill,
    vocab_parallel_linear_cross_entropy,
)


# ---------------------------------------------------------------------------------------------------- losses


@c.catalog_options("cross_entropy")
def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    **extra: Any,
) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` computed by infoloss (see :func:`infoloss.cross_entropy`).

    Class-index targets (any integer dtype) or class-probability targets of the input's shape; gradients flow to
    the input and to probability targets. Operator: ``torch.ops.infoloss.cross_entropy``.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> x = torch.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
        >>> loss = itorch.cross_entropy(x, torch.tensor([0]), label_smoothing=0.1)
        >>> loss.backward(); round(loss.item(), 6), x.grad.shape
        (0.391311, torch.Size([1, 3]))
    """
    op = "cross_entropy"
    red = c.resolve_reduction(size_average, reduce, reduction, 2)
    _check_tensors(op, (input, target, weight))
    _no_weight_grad(op, ("weight", weight))
    opts = c.option_tuple(op, extra, ignore_index=ignore_index, reduction=red, label_smoothing=label_smoothing)
    return _call(op, (input, target, weight), opts)[0]


@c.catalog_options("nll_loss")
def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    **extra: Any,
) -> torch.Tensor:
    """``torch.nn.functional.nll_loss`` computed by infoloss (see :func:`infoloss.nll_loss`).

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> lp = torch.log(torch.tensor([[0.25, 0.75]]))
        >>> round(itorch.nll_loss(lp, torch.tensor([1])).item(), 6)
        0.287682
    """
    op = "nll_loss"
    red = c.resolve_reduction(size_average, reduce, reduction, 2)
    _check_tensors(op, (input, target, weight))
    _no_weight_grad(op, ("weight", weight))
    opts = c.option_tuple(op, extra, ignore_index=ignore_index, reduction=red)
    return _call(op, (input, target, weight), opts)[0]


@c.catalog_options("kl_div")
def kl_div(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    log_target: bool = False,
    **extra: Any,
) -> torch.Tensor:
    """``torch.nn.functional.kl_div`` computed by infoloss (see :func:`infoloss.kl_div`), with torch's warnings;
    gradients flow to the input and the target.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> lp = torch.log(torch.tensor([[0.5, 0.5]])); q = torch.tensor([[0.25, 0.75]])
        >>> round(itorch.kl_div(lp, q, reduction="batchmean").item(), 6)
        0.130812
    """
    op = "kl_div"
    _check_tensors(op, (input, target))
    red, divide = c.resolve_kl_reduction(size_average, reduce, reduction, input.dim(), 2)
    opts = c.option_tuple(op, extra, reduction=red, log_target=log_target)
    return _call(op, (input, target), opts + (bool(divide),))[0]


@c.catalog_options("binary_cross_entropy")
def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    **extra: Any,
) -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy`` computed by infoloss (see
    :func:`infoloss.binary_cross_entropy`); gradients flow to the input and the target.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> round(itorch.binary_cross_entropy(torch.tensor([0.8]), torch.tensor([1.0])).item(), 6)
        0.223144
    """
    op = "binary_cross_entropy"
    red = c.resolve_reduction(size_average, reduce, reduction, 2)
    _check_tensors(op, (input, target, weight))
    _no_weight_grad(op, ("weight", weight))
    return _call(op, (input, target, weight), c.option_tuple(op, extra, reduction=red))[0]


@c.catalog_options("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    pos_weight: Optional[torch.Tensor] = None,
    **extra: Any,
) -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits`` computed by infoloss (see
    :func:`infoloss.binary_cross_entropy_with_logits`); gradients flow to the input and the target.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> round(itorch.binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0])).item(), 6)
        0.693147
    """
    op = "binary_cross_entropy_with_logits"
    red = c.resolve_reduction(size_average, reduce, reduction, 2)
    _check_tensors(op, (input, target, weight, pos_weight))
    _no_weight_grad(op, ("weight", weight), ("pos_weight", pos_weight))
    return _call(op, (input, target, weight, pos_weight), c.option_tuple(op, extra, reduction=red))[0]


# ----------------------------------------------------------------------------------------- row functions


def _rows(name: str, input: torch.Tensor, dim: Optional[int], stacklevel: int, dtype: Any) -> torch.Tensor:
    _check(input, name, "input")
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        dim = c.get_softmax_dim(name, input.dim(), stacklevel + 1)
    return _call(name, (input,), (c.as_int(dim, name, "dim"),))[0]


def log_softmax(input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> torch.Tensor:
    """``torch.nn.functional.log_softmax`` computed by infoloss (see :func:`infoloss.log_softmax`).

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> [round(v, 6) for v in itorch.log_softmax(torch.zeros(2), 0).tolist()]
        [-0.693147, -0.693147]
    """
    return _rows("log_softmax", input, dim, _stacklevel, dtype)


def softmax(input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> torch.Tensor:
    """``torch.nn.functional.softmax`` computed by infoloss (see :func:`infoloss.softmax`).

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> itorch.softmax(torch.zeros(1, 2), 1).tolist()
        [[0.5, 0.5]]
    """
    return _rows("softmax", input, dim, _stacklevel, dtype)


def logsumexp(input: torch.Tensor, dim: Any, keepdim: bool = False) -> torch.Tensor:
    """``torch.logsumexp`` computed by infoloss (see :func:`infoloss.logsumexp`); ``dim`` is an int or a sequence
    of ints.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> round(itorch.logsumexp(torch.log(torch.tensor([1.0, 3.0])), 0).item(), 6)
        1.386294
    """
    op = "logsumexp"
    _check(input, op, "input")
    dims = [c.as_int(d, op, "dim") for d in dim] if isinstance(dim, (list, tuple)) else [c.as_int(dim, op, "dim")]
    if not dims:
        raise ValueError(f"{op}: dim must name at least one dimension")
    n = max(input.dim(), 1)
    for d in dims:
        if not -n <= d < n:
            raise IndexError(f"{op}: invalid dim = {d}: dimension out of range (expected to be in range of "
                             f"[{-n}, {n - 1}])")
    if len({d % n for d in dims}) != len(dims):
        raise ValueError(f"{op}: a dim appears multiple times in the list of dims {dims}")
    return _call(op, (input,), (dims, bool(keepdim)))[0]


# ------------------------------------------------------------------------------------- distillation and UDA


@c.catalog_options("distill")
def distill(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    **extra: Any,
) -> torch.Tensor:
    """:func:`infoloss.distill` as a torch operator: the gradient flows to ``student_logits`` only. PyTorch
    equivalent (forward KL): ``F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean",
    log_target=True) * T**2`` (see :func:`infoloss.distill` for the other divergences and the hard-label term).

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> s = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
        >>> loss = itorch.distill(s, torch.tensor([[0.5, 1.5, 2.0]]), temperature=2.0)
        >>> loss.backward(); s.grad.shape
        torch.Size([1, 3])
    """
    op = "distill"
    opts = _D._distill_options(op, extra)
    _check_tensors(op, (student_logits, teacher_logits, labels))
    return _call(op, (student_logits, teacher_logits, labels), opts)[0]


@c.catalog_options("distill")
def distill_topk(
    student_logits: torch.Tensor,
    topk_indices: torch.Tensor,
    topk_logprobs: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    add_tail: bool = False,
    **extra: Any,
) -> torch.Tensor:
    """:func:`infoloss.distill_topk` as a torch operator: the gradient flows to ``student_logits`` only. PyTorch
    equivalent (forward KL, no tail): ``F.kl_div(F.log_softmax(s / T, 1).gather(1, topk_indices), topk_logprobs,
    reduction="batchmean", log_target=True) * T**2``.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> s = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
        >>> lq, idx = torch.topk(torch.log_softmax(torch.tensor([[0.5, 1.5, 2.0]]), 1), 2, 1)
        >>> loss = itorch.distill_topk(s, idx, lq, add_tail=True)
        >>> loss.backward(); s.grad.shape
        torch.Size([1, 3])
    """
    op = "distill_topk"
    opts = _D._distill_options(op, extra)
    _check_tensors(op, (student_logits, topk_indices, topk_logprobs, labels))
    return _call(op, (student_logits, topk_indices, topk_logprobs, labels), opts + (bool(add_tail),))[0]


@c.catalog_options("uda_consistency")
def uda_consistency(
    ori_logits: torch.Tensor,
    aug_logits: torch.Tensor,
    **extra: Any,
) -> torch.Tensor:
    """The loss of :func:`infoloss.uda_consistency` as a torch operator (a 0-d tensor); the gradient flows to
    ``aug_logits`` only and is computed in the backward pass by :func:`infoloss.uda_consistency_backward` with the
    upstream gradient (e.g. ``uda_coeff``), rounded once. For the mask and the kept-row count call
    :func:`infoloss.uda_consistency` on NumPy arrays. PyTorch equivalent: see :func:`infoloss.uda_consistency`.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> aug = torch.zeros(2, 3, requires_grad=True)
        >>> loss = itorch.uda_consistency(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), aug)
        >>> loss.backward(); round(loss.item(), 6), aug.grad[1].tolist()
        (0.21652, [0.0, 0.0, 0.0])
    """
    op = "uda_consistency"
    _check_tensors(op, (ori_logits, aug_logits))
    opts = _D._uda_options(extra)
    return _call(op, (ori_logits, aug_logits), opts)[0]


# ------------------------------------------------------------------------------------- cross_entropy_extras


class CrossEntropyExtrasOutput(NamedTuple):
    """What :func:`cross_entropy_extras` returns (a named tuple).

    ``loss`` (cross-entropy + z-loss; differentiable), ``z_loss`` (the z-loss part, reduced like the loss),
    ``lse`` (``(N,)`` log-sum-exp of the capped logits with ``return_lse=True``, else ``None``) and
    ``token_accuracy`` (with ``return_token_accuracy=True``: a Python float for ``'mean'``/``'sum'`` — a float64
    0-d tensor inside ``torch.compile``, which cannot return a Python number without a graph break — or ``(N,)``
    float64 1/0 indicators for ``'none'``; else ``None``). ``z_loss`` and ``lse`` are for logging: no gradient
    flows through them (the z-loss's gradient is part of ``loss``'s)."""

    loss: torch.Tensor
    z_loss: torch.Tensor
    lse: Optional[torch.Tensor]
    token_accuracy: Any


@c.catalog_options("cross_entropy_extras")
def cross_entropy_extras(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    **extra: Any,
) -> CrossEntropyExtrasOutput:
    r""":func:`infoloss.cross_entropy_extras` as a torch operator: cross-entropy on logits ``(N, C)`` with class
    indices ``(N,)``, plus the z-loss ``lse_square_scale·lse²``, logit softcapping, the per-row log-sum-exp and the
    token accuracy; the gradient of ``loss`` flows to ``input``. Returns a :class:`CrossEntropyExtrasOutput`
    ``(loss, z_loss, lse, token_accuracy)``. PyTorch equivalent (``'mean'``)::

        xc = c * torch.tanh(x / c); lse = torch.logsumexp(xc, 1); keep = y != ignore_index
        loss = F.cross_entropy(xc, y, weight=w, ignore_index=ii, label_smoothing=eps) \
               + torch.where(keep, s * lse.pow(2), 0).sum() / keep.sum()
        acc = (xc.argmax(1) == y)[keep].float().mean()

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], requires_grad=True)
        >>> r = itorch.cross_entropy_extras(x, torch.tensor([2, 0]), lse_square_scale=0.01, softcap=2.0,
        ...                                 return_token_accuracy=True)
        >>> r.loss.backward(); round(r.loss.item(), 6), round(r.z_loss.item(), 6), r.token_accuracy, x.grad.shape
        (1.13666, 0.051175, 0.5, torch.Size([2, 3]))
    """
    op = "cross_entropy_extras"
    red = c.get_enum(reduction, 2)
    _check_tensors(op, (input, target, weight))
    _no_weight_grad(op, ("weight", weight))
    opts = c.option_tuple(op, extra, ignore_index=ignore_index, reduction=red, label_smoothing=label_smoothing)
    loss, z, lse, acc = _call(op, (input, target, weight), opts)
    if not c.option(op, opts, "return_token_accuracy"):
        acc = None
    elif red != "none" and not torch.compiler.is_compiling():
        acc = acc.item()  # a fraction of counts, exact in float64: not rounded to the input's dtype
    return CrossEntropyExtrasOutput(loss, z, lse if c.option(op, opts, "return_lse") else None, acc)


# ------------------------------------------------------------------------------------------ fused linear losses


@c.catalog_options("linear_cross_entropy", left_out=("return_lse", "return_token_accuracy"))
def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: Optional[torch.Tensor] = None,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    ignore_index: Optional[int] = None,
    label_smoothing: float = 0.0,
    options: Any = None,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    chunk_size: Optional[int] = None,
    **extra: Any,
) -> torch.Tensor:
    """``torch.nn.functional.linear_cross_entropy`` computed by infoloss's fused kernel (see
    :func:`infoloss.linear_cross_entropy`); gradients flow to ``input``, ``linear_weight`` and ``linear_bias``.

    Torch's signature: ``ignore_index=None`` means -100, as in ``F.linear_cross_entropy``. ``options`` (an
    ``nn.LinearCrossEntropyOptions``) is accepted for compatibility; its ``batch_chunk_size`` is used as
    ``chunk_size`` when that is not given. Beyond torch: ``lse_square_scale`` (z-loss), ``softcap``.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> x = torch.randn(4, 3, requires_grad=True); w = torch.randn(5, 3, requires_grad=True)
        >>> loss = itorch.linear_cross_entropy(x, w, torch.tensor([0, 4, 1, 2]))
        >>> loss.backward(); x.grad.shape, w.grad.shape
        (torch.Size([4, 3]), torch.Size([5, 3]))
    """
    op = "linear_cross_entropy"
    red = c.get_enum(reduction, 2)
    _check_tensors(op, (input, linear_weight, target, linear_bias, weight))
    _no_weight_grad(op, ("the class weight", weight))
    if chunk_size is None and options is not None:
        chunk_size = getattr(options, "batch_chunk_size", None)
    opts = _L._linear_ce_options(extra, ignore_index=ignore_index, reduction=red, label_smoothing=label_smoothing,
                                 lse_square_scale=lse_square_scale, softcap=softcap, chunk_size=chunk_size)
    return _call(op, (input, linear_weight, target, linear_bias, weight), opts)[0]


@c.catalog_options("linear_distill")
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
    **extra: Any,
) -> torch.Tensor:
    """:func:`infoloss.linear_distill` as a torch operator: gradients flow to ``student_hidden``,
    ``student_weight`` and ``student_bias`` (the teacher is a constant). Any upstream gradient works, also a
    per-row one for ``reduction='none'``. PyTorch equivalent: :func:`distill` of ``F.linear(student_hidden,
    student_weight, student_bias)`` and ``F.linear(teacher_hidden, teacher_weight, teacher_bias)``, fused.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> xs = torch.randn(4, 3, requires_grad=True); ws = torch.randn(6, 3, requires_grad=True)
        >>> bs = torch.zeros(6, requires_grad=True)
        >>> loss = itorch.linear_distill(xs, ws, torch.randn(4, 2), torch.randn(6, 2), student_bias=bs,
        ...                              teacher_topk=3, add_tail=True, reduction="none")
        >>> (loss * torch.arange(4.0)).sum().backward(); bs.grad.shape, xs.grad[0].abs().sum().item()
        (torch.Size([6]), 0.0)
    """
    op = "linear_distill"
    opts = _D._distill_options(op, extra, loss="linear_distill")
    tensors = (student_hidden, student_weight, teacher_hidden, teacher_weight, labels, student_bias, teacher_bias)
    _check_tensors(op, tensors)
    k = None if teacher_topk is None else c.as_int(teacher_topk, op, "teacher_topk")
    return _call(op, tensors, opts + (k, bool(add_tail)))[0]


@c.catalog_options("linear_distill_topk")
def linear_distill_topk(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    topk_indices: torch.Tensor,
    topk_logprobs: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    student_bias: Optional[torch.Tensor] = None,
    add_tail: bool = False,
    **extra: Any,
) -> torch.Tensor:
    """:func:`infoloss.linear_distill_topk` as a torch operator: the student head ``F.linear(student_hidden,
    student_weight, student_bias)`` distilled against a stored top-k teacher (``topk_indices``, ``topk_logprobs``,
    e.g. from :class:`TeacherCacheDataset`), fused; gradients flow to ``student_hidden``, ``student_weight`` and
    ``student_bias`` (the teacher is a constant), for any upstream gradient. PyTorch equivalent:
    :func:`distill_topk` of ``F.linear(student_hidden, student_weight, student_bias)``.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> xs = torch.randn(4, 3, requires_grad=True); ws = torch.randn(6, 3, requires_grad=True)
        >>> lq, idx = torch.topk(torch.log_softmax(torch.randn(4, 6), 1), 2, 1)
        >>> loss = itorch.linear_distill_topk(xs, ws, idx, lq, add_tail=True, temperature=2.0)
        >>> loss.backward(); xs.grad.shape, ws.grad.shape
        (torch.Size([4, 3]), torch.Size([6, 3]))
    """
    op = "linear_distill_topk"
    opts = _D._distill_options(op, extra, loss="linear_distill_topk")
    tensors = (student_hidden, student_weight, topk_indices, topk_logprobs, labels, student_bias)
    _check_tensors(op, tensors)
    return _call(op, tensors, opts + (bool(add_tail),))[0]

