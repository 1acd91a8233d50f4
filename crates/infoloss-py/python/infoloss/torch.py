"""``torch.autograd.Function`` drop-ins for CPU tensors: swap ``F.cross_entropy`` for
``infoloss.torch.cross_entropy`` and ``loss.backward()`` works.

Every ``torch.nn.functional`` name has its signature, defaults and warnings; :func:`linear_cross_entropy` has
``F.linear_cross_entropy``'s (plus the z-loss, softcap and chunk size). The distillation and UDA losses
(:func:`distill`, :func:`distill_topk`, :func:`uda_consistency`, :func:`linear_distill`) take the NumPy API's
arguments; their gradient flows to the student (the augmented logits for UDA) only: the teacher (the original
logits) is a constant, as if detached. Tensors are handed to infoloss
without copying (``tensor.detach().numpy()``), results come back as tensors of the computation's dtype. Gradients
flow to the input and, where torch defines one, to the target (probability targets of ``cross_entropy``,
``kl_div``, both BCEs). For reduced losses the gradient is computed together with the loss in the forward pass
(when a gradient is needed) and scaled by the upstream gradient in the backward pass. Double backward is not
supported. Supported dtypes: float16, bfloat16 (computed in float32 and rounded once, as infoloss does for
bfloat16), float32, float64; CPU tensors only.

Example:
    >>> import torch, infoloss.torch as itorch
    >>> x = torch.zeros(2, 3, requires_grad=True)
    >>> loss = itorch.cross_entropy(x, torch.tensor([0, 2]))
    >>> loss.backward(); round(loss.item(), 6), [round(v, 6) for v in x.grad[0].tolist()]
    (1.098612, [-0.333333, 0.166667, 0.166667])
"""

from __future__ import annotations

from typing import Any, Callable, Optional

try:
    import torch
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "infoloss.torch needs PyTorch, which is not installed (pip install torch); "
        "the NumPy API in `infoloss` works without it"
    ) from _e

import numpy as np
from torch.autograd.function import once_differentiable

from . import _common as c
from . import _distill as _D
from . import _functional as _F
from . import _linear as _L

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "distill",
    "distill_topk",
    "kl_div",
    "linear_cross_entropy",
    "linear_distill",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
    "uda_consistency",
]

_SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _np(t: Any, op: str, name: str) -> Any:
    """A CPU tensor as a NumPy array sharing its memory; ``None`` stays ``None``."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise TypeError(f"{op}: {name} is on {t.device}; infoloss.torch supports CPU tensors only")
    if t.is_complex():
        raise TypeError(f"{op}: {name} must be real, got dtype {t.dtype}")
    if t.dtype.is_floating_point and t.dtype not in _SUPPORTED:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}; infoloss supports float16, bfloat16, float32 and float64")
    t = t.detach()
    if t.is_sparse or t.layout != torch.strided:
        t = t.to_dense()
    if t.dtype == torch.bfloat16:
        # NumPy has no bfloat16: widen exactly to float32. infoloss computes bfloat16 in float32 and rounds once,
        # so computing the float32 values and rounding the results to bfloat16 gives the very same numbers.
        t = t.float()
    return t.resolve_conj().resolve_neg().numpy()


def _as(t: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """``t`` in ``dtype`` (no copy when it already is)."""
    return t if t is None or t.dtype == dtype else t.to(dtype)


def _result_dtype(input: torch.Tensor, target: torch.Tensor) -> torch.dtype:
    if target.dtype.is_floating_point:
        return torch.promote_types(input.dtype, target.dtype)
    return input.dtype


def _tensor(v: Any, dtype: Optional[np.dtype]) -> Optional[torch.Tensor]:
    """A result as a tensor: Python floats (reduced losses) in the computation's dtype, arrays without copy."""
    if v is None:
        return None
    if isinstance(v, float):
        return torch.tensor(v, dtype=_TORCH_DTYPE[np.dtype(dtype)])
    v = np.asarray(v)
    return torch.from_numpy(v if v.flags.writeable else np.array(v))


_TORCH_DTYPE = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                np.dtype(np.float64): torch.float64}


class _Loss(torch.autograd.Function):
    """One autograd node for every loss. ``kernel(x, t, extras, grad_output, loss, grad, target_grad)`` is a
    private infoloss wrapper returning ``(loss, grad_input, grad_target)`` as NumPy values."""

    @staticmethod
    def forward(ctx, kernel, reduced, target_differentiable, op, grad_enabled, input, target, *extras):  # type: ignore[override]
        x = _np(input, op, "input")
        t = _np(target, op, "target")
        ex = [_np(e, op, "weight") for e in extras]
        # forward runs with grad mode off: whether a graph is recorded was decided by the caller's mode
        want_gi = grad_enabled and bool(ctx.needs_input_grad[5])
        want_gt = grad_enabled and bool(ctx.needs_input_grad[6]) and target_differentiable
        for i, e in enumerate(extras):
            if isinstance(e, torch.Tensor) and e.requires_grad:
                raise NotImplementedError(f"{op}: infoloss.torch has no gradient wrt weights (argument {i + 3})")
        ctx.op, ctx.kernel, ctx.n_extras = op, kernel, len(extras)
        ctx.dtypes = (input.dtype, target.dtype)
        ctx.want = (want_gi, want_gt)
        if reduced and (want_gi or want_gt):
            loss, gi, gt = kernel(x, t, ex, None, True, want_gi, want_gt)
            ctx.grads = (gi, gt)
        else:
            loss, _, _ = kernel(x, t, ex, None, True, False, False)
            ctx.grads = None
        if want_gi or want_gt:
            ctx.save_for_backward(input, target, *extras)
        out = _tensor(loss, _loss_dtype(x, t))
        return _as(out, _result_dtype(input, target))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        want_gi, want_gt = ctx.want
        g = _np(grad_output, ctx.op, "grad_output")
        # The gradients of the forward pass are handed to autograd without a copy (autograd may then accumulate
        # into them in place), so they serve one backward pass; another one (retain_graph) recomputes them.
        grads, ctx.grads = ctx.grads, None
        if grads is not None:
            gi, gt = grads
            if not (g.ndim == 0 and g == 1):
                gi = None if gi is None else (gi * g.astype(gi.dtype)).astype(gi.dtype, copy=False)
                gt = None if gt is None else (gt * g.astype(gt.dtype)).astype(gt.dtype, copy=False)
        else:
            input, target, *extras = ctx.saved_tensors
            x, t = _np(input, ctx.op, "input"), _np(target, ctx.op, "target")
            ex = [_np(e, ctx.op, "weight") for e in extras]
            _, gi, gt = ctx.kernel(x, t, ex, g, False, want_gi, want_gt)
        gi_t = _tensor(gi, None) if want_gi else None
        gt_t = _tensor(gt, None) if want_gt else None
        gi_t = _as(gi_t, ctx.dtypes[0])
        gt_t = _as(gt_t, ctx.dtypes[1])
        return (None, None, None, None, None, gi_t, gt_t) + (None,) * ctx.n_extras


def _loss_dtype(x: np.ndarray, t: Any) -> np.dtype:
    """The dtype of a reduced loss: the input's, promoted with a floating-point target's."""
    if isinstance(t, np.ndarray) and t.dtype.kind == "f":
        return np.result_type(x.dtype, t.dtype)
    return x.dtype


def _apply(kernel: Callable, reduced: bool, target_differentiable: bool, op: str, input, target, *extras):
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{op}: target must be a torch.Tensor, got {type(target).__name__}")
    return _Loss.apply(kernel, reduced, target_differentiable, op, torch.is_grad_enabled(), input, target, *extras)


# ---------------------------------------------------------------------------------------------------- losses


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` computed by infoloss (see :func:`infoloss.cross_entropy`).

    Class-index targets (any integer dtype) or class-probability targets of the input's shape; gradients flow to
    the input and to probability targets.
    """
    red = c.resolve_reduction(size_average, reduce, reduction, 2)

    def kernel(x, t, ex, g, loss, grad, target_grad):
        return _F._cross_entropy(x, t, ex[0], ignore_index, red, label_smoothing, g, loss=loss, grad=grad,
                                 target_grad=target_grad)

    probs = isinstance(target, torch.Tensor) and isinstance(input, torch.Tensor) and target.shape == input.shape
    return _apply(kernel, red != "none", probs, "cross_entropy", input, target, weight)


def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """``torch.nn.functional.nll_loss`` computed by infoloss (see :func:`infoloss.nll_loss`)."""
    red = c.resolve_reduction(size_average, reduce, reduction, 2)

    def kernel(x, t, ex, g, loss, grad, target_grad):
        return _F._nll_loss(x, t, ex[0], ignore_index, red, g, loss=loss, grad=grad)

    return _apply(kernel, red != "none", False, "nll_loss", input, target, weight)


def kl_div(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> torch.Tensor:
    """``torch.nn.functional.kl_div`` computed by infoloss (see :func:`infoloss.kl_div`), with torch's warnings;
    gradients flow to the input and the target."""
    ndim = input.dim() if isinstance(input, torch.Tensor) else 0
    red, divide = c.resolve_kl_reduction(size_average, reduce, reduction, ndim, 2)

    def kernel(x, t, ex, g, loss, grad, target_grad):
        return _F._kl_div(x, t, red, log_target, g, divide=divide, loss=loss, grad=grad, target_grad=target_grad)

    return _apply(kernel, red != "none", True, "kl_div", input, target)


def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy`` computed by infoloss (see
    :func:`infoloss.binary_cross_entropy`); gradients flow to the input and the target."""
    red = c.resolve_reduction(size_average, reduce, reduction, 2)

    def kernel(x, t, ex, g, loss, grad, target_grad):
        return _F._bce(x, t, ex[0], red, g, loss=loss, grad=grad, target_grad=target_grad)

    return _apply(kernel, red != "none", True, "binary_cross_entropy", input, target, weight)


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    pos_weight: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits`` computed by infoloss (see
    :func:`infoloss.binary_cross_entropy_with_logits`); gradients flow to the input and the target."""
    red = c.resolve_reduction(size_average, reduce, reduction, 2)

    def kernel(x, t, ex, g, loss, grad, target_grad):
        return _F._bce_logits(x, t, ex[0], red, ex[1], g, loss=loss, grad=grad, target_grad=target_grad)

    return _apply(kernel, red != "none", True, "binary_cross_entropy_with_logits", input, target, weight, pos_weight)


# ----------------------------------------------------------------------------------------- row functions


class _Rows(torch.autograd.Function):
    """``log_softmax`` / ``softmax``: the backward works from the saved output."""

    @staticmethod
    def forward(ctx, name, dim, input):  # type: ignore[override]
        from . import _infoloss as _C

        x = _np(input, name, "input")
        x = c.float_input(x, name)
        out = (_C.log_softmax if name == "log_softmax" else _C.softmax)(x, dim)
        ctx.name, ctx.dim = name, dim
        result = _as(torch.from_numpy(out), input.dtype)
        ctx.save_for_backward(result)
        return result

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        from . import _infoloss as _C

        (out,) = ctx.saved_tensors
        y = _np(out, ctx.name, "output")
        g = _np(grad_output, ctx.name, "grad_output").astype(y.dtype, copy=False)
        bwd = _C.log_softmax_backward if ctx.name == "log_softmax" else _C.softmax_backward
        gi = torch.from_numpy(bwd(y, c.ready(g, ctx.name, "grad_output"), ctx.dim))
        return None, None, _as(gi, out.dtype)


def _rows(name: str, input: torch.Tensor, dim: Optional[int], stacklevel: int, dtype: Any) -> torch.Tensor:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name}: input must be a torch.Tensor, got {type(input).__name__}")
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        dim = c.get_softmax_dim(name, input.dim(), stacklevel + 1)
    return _Rows.apply(name, c.as_int(dim, name, "dim"), input)


def log_softmax(input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> torch.Tensor:
    """``torch.nn.functional.log_softmax`` computed by infoloss (see :func:`infoloss.log_softmax`)."""
    return _rows("log_softmax", input, dim, _stacklevel, dtype)


def softmax(input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> torch.Tensor:
    """``torch.nn.functional.softmax`` computed by infoloss (see :func:`infoloss.softmax`)."""
    return _rows("softmax", input, dim, _stacklevel, dtype)


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dim, keepdim, input):  # type: ignore[override]
        x = _np(input, "logsumexp", "input")
        out = _F.logsumexp(x, dim, keepdim)
        ctx.dim, ctx.keepdim = dim, keepdim
        ctx.save_for_backward(input)
        result = torch.from_numpy(np.asarray(out))
        return _as(result, input.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        (input,) = ctx.saved_tensors
        x = _np(input, "logsumexp", "input")
        go = _np(grad_output, "logsumexp", "grad_output")
        _, g = _F.logsumexp_with_grad(x, ctx.dim, ctx.keepdim, grad_output=go)
        gi = torch.from_numpy(np.ascontiguousarray(g))
        return None, None, _as(gi, input.dtype)


def logsumexp(input: torch.Tensor, dim: Any, keepdim: bool = False) -> torch.Tensor:
    """``torch.logsumexp`` computed by infoloss (see :func:`infoloss.logsumexp`)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"logsumexp: input must be a torch.Tensor, got {type(input).__name__}")
    return _LogSumExp.apply(dim, bool(keepdim), input)


# ------------------------------------------------------------------------------------- distillation and UDA


def _check(t: Any, op: str, name: str, optional: bool = False) -> None:
    if t is None and optional:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def distill(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "batchmean",
    normalizer: Optional[float] = None,
) -> torch.Tensor:
    """:func:`infoloss.distill` as an autograd function: the gradient flows to ``student_logits`` only.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> s = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
        >>> loss = itorch.distill(s, torch.tensor([[0.5, 1.5, 2.0]]), temperature=2.0)
        >>> loss.backward(); s.grad.shape
        torch.Size([1, 3])
    """
    op = "distill"
    opts = _D._distill_options(op, temperature, t2_scaling, divergence, beta, alpha, ignore_index, reduction,
                               normalizer)
    _check(student_logits, op, "student_logits")
    _check(teacher_logits, op, "teacher_logits")
    _check(labels, op, "labels", optional=True)

    def kernel(x, t, ex, g, loss, grad, target_grad):
        return _D._distill(x, t, ex[0], opts, g, loss=loss, grad=grad)

    return _apply(kernel, opts[6] != "none", False, op, student_logits, teacher_logits, labels)


def distill_topk(
    student_logits: torch.Tensor,
    topk_indices: torch.Tensor,
    topk_logprobs: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    add_tail: bool = False,
    temperature: float = 1.0,
    t2_scaling: bool = True,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "batchmean",
    normalizer: Optional[float] = None,
) -> torch.Tensor:
    """:func:`infoloss.distill_topk` as an autograd function: the gradient flows to ``student_logits`` only."""
    op = "distill_topk"
    opts = _D._distill_options(op, temperature, t2_scaling, divergence, beta, alpha, ignore_index, reduction,
                               normalizer)
    _check(student_logits, op, "student_logits")
    _check(topk_indices, op, "topk_indices")
    _check(topk_logprobs, op, "topk_logprobs")
    _check(labels, op, "labels", optional=True)

    def kernel(x, t, ex, g, loss, grad, target_grad):
        return _D._distill_topk(x, ex[0], t, ex[1], add_tail, opts, g, loss=loss, grad=grad)

    return _apply(kernel, opts[6] != "none", False, op, student_logits, topk_logprobs, topk_indices, labels)


def uda_consistency(
    ori_logits: torch.Tensor,
    aug_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    sharpen: str = "target",
    confidence_threshold: Optional[float] = None,
    normalize: str = "kept_rows",
) -> torch.Tensor:
    """The loss of :func:`infoloss.uda_consistency` as an autograd function (a 0-d tensor); the gradient flows to
    ``aug_logits`` only and is computed in the backward pass by :func:`infoloss.uda_consistency_backward` with the
    upstream gradient (e.g. ``uda_coeff``), rounded once. For the mask and the kept-row count call
    :func:`infoloss.uda_consistency` on NumPy arrays.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> aug = torch.zeros(2, 3, requires_grad=True)
        >>> loss = itorch.uda_consistency(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), aug)
        >>> loss.backward(); round(loss.item(), 6), aug.grad[1].tolist()
        (0.21652, [0.0, 0.0, 0.0])
    """
    op = "uda_consistency"
    _check(ori_logits, op, "ori_logits")
    _check(aug_logits, op, "aug_logits")

    def kernel(x, t, ex, g, loss, grad, target_grad):
        if g is not None and not loss:
            # a backward pass with the upstream gradient: infoloss applies it (rounded once)
            return None, _D._uda_backward(t, x, g, temperature, sharpen, confidence_threshold, normalize), None
        r = _D._uda(t, x, temperature, sharpen, confidence_threshold, normalize)
        return r.loss, (r.grad_aug if grad else None), None

    # not precomputed in the forward pass: the backward pass hands the upstream gradient to infoloss
    return _apply(kernel, False, False, op, aug_logits, ori_logits)


# ------------------------------------------------------------------------------------------ fused linear losses


def _float_dtypes(tensors) -> torch.dtype:
    """The promoted dtype of the floating-point tensors among ``tensors``."""
    dt = None
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.dtype.is_floating_point:
            dt = t.dtype if dt is None else torch.promote_types(dt, t.dtype)
    return dt if dt is not None else torch.get_default_dtype()


class _Fused(torch.autograd.Function):
    """The fused linear losses. ``kernel(arrays, grad_output) -> (loss, grads)`` returns one gradient per
    differentiable tensor (the first ``n_diff`` of ``tensors``). For reduced losses (and a uniform upstream
    gradient) the forward's gradients are scaled in the backward pass (once; another backward pass recomputes
    them); a per-row upstream gradient of ``reduction='none'`` reruns the kernel with it when ``per_row`` (else
    it is refused)."""

    @staticmethod
    def forward(ctx, kernel, per_row, op, grad_enabled, names, n_diff, *tensors):  # type: ignore[override]
        first = 6
        arrays = [_np(t, op, n) for t, n in zip(tensors, names)]
        want = [grad_enabled and t is not None and bool(ctx.needs_input_grad[first + i])
                for i, t in enumerate(tensors[:n_diff])]
        loss, grads = kernel(arrays, None)
        ctx.op, ctx.kernel, ctx.per_row, ctx.names = op, kernel, per_row, names
        ctx.want, ctx.n_diff, ctx.n_tensors = want, n_diff, len(tensors)
        ctx.dtypes = [None if t is None else t.dtype for t in tensors[:n_diff]]
        ctx.grads = grads if any(want) else None
        if any(want):
            ctx.save_for_backward(*tensors)
        floats = [a.dtype for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        out = _tensor(loss, np.result_type(*floats))
        return _as(out, _float_dtypes(tensors))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        g = _np(grad_output, ctx.op, "grad_output")
        flat = g.reshape(-1)
        if g.ndim == 0 or flat.size == 0 or bool(np.all(flat == flat[0])):
            # a uniform upstream gradient: scale the gradients of the forward pass. They are handed to autograd
            # without a copy (it may accumulate into them in place), so another backward pass recomputes them.
            grads, ctx.grads = ctx.grads, None
            if grads is None:
                _, grads = ctx.kernel([_np(t, ctx.op, n) for t, n in zip(ctx.saved_tensors, ctx.names)], None)
            s = float(flat[0]) if flat.size else 1.0
            grads = [a if (a is None or s == 1.0) else a * np.asarray(s, dtype=a.dtype) for a in grads]
        elif ctx.per_row:
            arrays = [_np(t, ctx.op, n) for t, n in zip(ctx.saved_tensors, ctx.names)]
            _, grads = ctx.kernel(arrays, g)
        else:
            raise RuntimeError(f"{ctx.op}: the fused loss supports only a uniform upstream gradient for "
                               "reduction='none' (e.g. loss.sum().backward())")
        out = tuple(_as(_tensor(a, None), dt) if (w and a is not None) else None
                    for a, w, dt in zip(grads, ctx.want, ctx.dtypes))
        return (None,) * 6 + out + (None,) * (ctx.n_tensors - ctx.n_diff)


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
) -> torch.Tensor:
    """``torch.nn.functional.linear_cross_entropy`` computed by infoloss's fused kernel (see
    :func:`infoloss.linear_cross_entropy`); gradients flow to ``input``, ``linear_weight`` and ``linear_bias``.

    ``options`` (an ``nn.LinearCrossEntropyOptions``) is accepted for compatibility; its ``batch_chunk_size``
    is used as ``chunk_size`` when that is not given. Beyond torch: ``lse_square_scale`` (z-loss), ``softcap``.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> x = torch.randn(4, 3, requires_grad=True); w = torch.randn(5, 3, requires_grad=True)
        >>> loss = itorch.linear_cross_entropy(x, w, torch.tensor([0, 4, 1, 2]))
        >>> loss.backward(); x.grad.shape, w.grad.shape
        (torch.Size([4, 3]), torch.Size([5, 3]))
    """
    op = "linear_cross_entropy"
    red = c.get_enum(reduction, 2)
    for t, n, opt in ((input, "input", False), (linear_weight, "linear_weight", False), (target, "target", False),
                      (linear_bias, "linear_bias", True), (weight, "weight", True)):
        _check(t, op, n, opt)
    if weight is not None and weight.requires_grad:
        raise NotImplementedError(f"{op}: infoloss.torch has no gradient wrt the class weight")
    if chunk_size is None and options is not None:
        chunk_size = getattr(options, "batch_chunk_size", None)

    def kernel(arrays, g):
        x, w, b, y, cw = arrays
        r = _L._linear_ce(x, w, y, b, cw, red, ignore_index, label_smoothing, lse_square_scale, softcap, chunk_size,
                          grad_output=g)
        return r.loss, (r.grad_input, r.grad_linear_weight, r.grad_linear_bias)

    names = ("input", "linear_weight", "linear_bias", "target", "weight")
    return _Fused.apply(kernel, True, op, torch.is_grad_enabled(), names, 3, input, linear_weight, linear_bias,
                        target, weight)


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
    divergence: str = "forward_kl",
    beta: float = 0.5,
    alpha: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "batchmean",
    normalizer: Optional[float] = None,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """:func:`infoloss.linear_distill` as an autograd function: gradients flow to ``student_hidden``,
    ``student_weight`` and ``student_bias`` (the teacher is a constant). Any upstream gradient works, also a
    per-row one for ``reduction='none'``.

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
    opts = _D._distill_options(op, temperature, t2_scaling, divergence, beta, alpha, ignore_index, reduction,
                               normalizer)
    names = ("student_hidden", "student_weight", "student_bias", "teacher_hidden", "teacher_weight",
             "teacher_bias", "labels")
    tensors = (student_hidden, student_weight, student_bias, teacher_hidden, teacher_weight, teacher_bias, labels)
    for t, n in zip(tensors, names):
        _check(t, op, n, optional=n in ("student_bias", "teacher_bias", "labels"))

    def kernel(arrays, g):
        xs, ws, bs, xt, wt, bt, y = arrays
        r = _L._linear_distill(xs, ws, xt, wt, y, opts, chunk_size, g, bs, bt, teacher_topk, add_tail)
        return r.loss, (r.grad_student_hidden, r.grad_student_weight, r.grad_student_bias)

    return _Fused.apply(kernel, True, op, torch.is_grad_enabled(), names, 3, *tensors)
