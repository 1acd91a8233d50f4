"""The ``torch.nn.functional``-style API for NumPy arrays.

Each public function resolves its arguments exactly as ``torch.nn.functional`` does (legacy ``size_average`` /
``reduce``, warnings, probability-vs-index dispatch) and calls a private ``_<name>`` kernel wrapper, which
``infoloss.torch`` reuses with the arguments already resolved.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _common as c
from ._common import kernels as _C

ArrayLike = Any

# ------------------------------------------------------------------------------------------------- helpers


def _scale(dtype: np.dtype, loss: Any, n: int) -> Any:
    """``loss / n`` rounded in ``dtype`` (torch's ``reduced / input.size(0)``)."""
    bf = c.bf16()
    if bf is not None and dtype == bf:  # (`dtype == None` would be true for float64: np.dtype(None) is float64)
        # torch divides a bfloat16 tensor in float32 and rounds once; bfloat16(n) itself may be inexact (n > 256)
        q = np.asarray(loss, dtype=np.float32) / np.float32(n)
        return float(dtype.type(q)) if isinstance(loss, float) else q.astype(dtype)
    if isinstance(loss, float):
        return float(dtype.type(loss) / dtype.type(n))
    return (loss / dtype.type(n)).astype(dtype, copy=False)


# ------------------------------------------------------------------------------------------- cross_entropy


def _check_probabilities(op: str, x: np.ndarray, t: np.ndarray, options: Tuple[Any, ...]) -> None:
    """A target of the input's shape holds class probabilities: it must be floating point, and there is no class
    index to ignore (torch's errors)."""
    if not c.is_float(t.dtype):
        raise TypeError(
            f"{op}: a target with the input's shape {list(x.shape)} holds class probabilities and must be "
            f"floating point, got dtype {t.dtype} (class indices have the input's shape without dimension 1)"
        )
    ignore_index = c.option("cross_entropy", options, "ignore_index")
    if ignore_index >= 0:
        raise ValueError(f"{op}: ignore_index is not supported for floating point target (got {ignore_index})")


def _cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike],
    options: Tuple[Any, ...],
    grad_output: Optional[ArrayLike] = None,
    *,
    loss: bool = True,
    grad: bool = False,
    target_grad: bool = False,
) -> Tuple[Any, Optional[np.ndarray], Optional[np.ndarray]]:
    """(loss, grad_input, grad_target); ``options``: :func:`infoloss._common.option_tuple`'s, the reduction
    resolved."""
    op = "cross_entropy"
    x = c.float_input(input, op)
    t_arr = c.asarray(target, op, "target")
    w_arr = None if weight is None else c.numeric(weight, op, "weight", allow_bool=False)
    if t_arr.shape == x.shape:
        # Class probabilities, as torch dispatches: whenever the target has the input's shape.
        _check_probabilities(op, x, t_arr, options)
        dt = c.promote(op, x, (target, t_arr))
        xc = c.cast(x, dt, op, "input")
        tc = c.cast(t_arr, dt, op, "target")
        wc = None if w_arr is None else c.cast(w_arr, dt, op, "weight")
        go = c.grad_output_array(grad_output, dt, op)
        lo, gi, gt = _C.cross_entropy_probs(xc, tc, options, wc, None, go, loss, grad, target_grad)
        return lo, c.cast_grad(gi, x.dtype), c.cast_grad(gt, c.native(t_arr.dtype) if c.is_strong(target) else dt)
    return _class_indices(op, x, t_arr, w_arr, options, grad_output, loss, grad)


def _class_indices(
    name: str, x: np.ndarray, target: Any, weight: Optional[np.ndarray], options: Tuple[Any, ...],
    grad_output: Optional[ArrayLike], loss: bool, grad: bool,
) -> Tuple[Any, Optional[np.ndarray], None]:
    """A class-index loss (``cross_entropy``, ``nll_loss``) of the float input ``x``: the targets become int64,
    the weight and the upstream gradient take the input's dtype (no promotion, as torch)."""
    t = c.index_target(target, name)
    dt = x.dtype
    wc = None if weight is None else c.cast(weight, dt, name, "weight")
    go = c.grad_output_array(grad_output, dt, name)
    lo, gi, _ = getattr(_C, name)(x, t, options, wc, None, go, loss, grad)
    return lo, gi, None


@c.public("cross_entropy")
def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    **options: Any,
) -> c.Call:
    r"""Cross-entropy between logits and class indices or class probabilities, as ``torch.nn.functional.cross_entropy``.

    Args:
        input: logits of shape ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` (class dimension 1), float16/32/64 or
            ``ml_dtypes.bfloat16`` (computed in float32, results rounded once to bfloat16).
        target: class indices of shape ``()``, ``(N)`` or ``(N, d1, ..., dK)`` (any integer dtype), or class
            probabilities of the input's shape (floating point). As in torch, a target with exactly the input's
            shape is read as probabilities.
        weight: per-class weights of shape ``(C)``.
        size_average, reduce: deprecated; if either is given it overrides ``reduction`` (with torch's warning).
        ignore_index: class index whose targets contribute nothing (class-index targets only).
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``. ``'mean'`` divides by the summed weight of the
            non-ignored targets for class indices and by the number of rows for probabilities.
        label_smoothing: ε in ``[0, 1]``; the target becomes ``(1 − ε)·target + ε/C``.

    Returns:
        A Python float for ``'mean'``/``'sum'``, an array of the target's (row) shape for ``'none'``.

    The loss per row is ``−Σ_c w_c t_c log_softmax(x)_c``; its gradient wrt the logits is
    ``softmax(x)·Σ_c w_c t_c − w⊙t`` (scaled by the reduction). See :func:`cross_entropy_with_grad`.

    Example:
        >>> import numpy as np, infoloss
        >>> round(infoloss.cross_entropy(np.log(np.array([[0.3, 0.3, 0.4]])), np.array([2])), 6)
        0.916291
    """
    red = c.resolve_reduction(size_average, reduce, reduction, 3)
    opts = c.option_tuple("cross_entropy", options, ignore_index=ignore_index, reduction=red,
                          label_smoothing=label_smoothing)
    return functools.partial(_cross_entropy, input, target, weight, opts)


cross_entropy_with_grad = c.with_grad(
    cross_entropy,
    """:func:`cross_entropy` and its gradients: ``(loss, grad_input)`` or ``(loss, grad_input, grad_target)``.

    ``grad_output`` is the upstream gradient (``loss.backward(grad_output)``): a scalar for reduced losses, an
    array of the loss's shape (or a scalar for every element) for ``'none'``; default 1. ``grad_target`` (with
    ``return_target_grad=True``) is the gradient wrt probability targets, and ``None`` for class indices, which
    are not differentiable. Gradients have the dtype of the argument they belong to.

    Example:
        >>> import numpy as np, infoloss
        >>> loss, g = infoloss.cross_entropy_with_grad(np.zeros((1, 2)), np.array([0]))
        >>> g.tolist()
        [[-0.5, 0.5]]
    """,
    target_grad=True,
)


@c.catalog_options("cross_entropy")
def cross_entropy_with_grad_in_place(
    input: np.ndarray,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    **options: Any,
) -> Any:
    r""":func:`cross_entropy_with_grad` for the training path: the gradient wrt the logits is written **over**
    ``input`` and only the loss is returned (a float, or an array of the row shape for ``'none'``).

    The logits are usually dead after the loss, so no second ``input``-sized array is allocated: on this
    project's benchmark machine the in-place call runs within 1.5× of a memory copy of the logits, where the
    allocating call also pays for a fresh gradient buffer (see BENCHMARKS.md). Loss and gradient equal
    :func:`cross_entropy_with_grad`'s bit for bit (upstream gradient 1, or ones for ``'none'``).

    ``input`` must be the caller's own writeable float16/32/64 NumPy array (``(C)``, ``(N, C)`` or
    ``(N, C, d1, ..., dK)``, any strides): nothing is converted, since a converted copy would receive the
    gradient instead. ``target``: class indices (any integer dtype) or, with exactly the input's shape,
    probabilities; probabilities and ``weight`` are cast to the input's dtype (no promotion: the result is
    computed in the input's precision). Operands that share memory with ``input`` are refused. On any error
    ``input`` is left unchanged. Rust: ``infoloss::cross_entropy_with_grad_in_place``.

    An ``ml_dtypes.bfloat16`` ``input`` works too (every ``*_with_grad_in_place`` function): it is computed in a
    float32 copy and the gradient is rounded once to bfloat16 into ``input`` — the same bits as the allocating
    call, but with a float32 temporary, so without the memory saving.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.zeros((1, 2), dtype=np.float32)
        >>> round(infoloss.cross_entropy_with_grad_in_place(x, np.array([0])), 6)
        0.693147
        >>> x.tolist()
        [[-0.5, 0.5]]
    """
    op = "cross_entropy_with_grad_in_place"
    red = c.resolve_reduction(None, None, reduction, 2)
    x = c.in_place_logits(input, op, "input")
    opts = c.option_tuple("cross_entropy", options, op=op, ignore_index=ignore_index, reduction=red,
                          label_smoothing=label_smoothing)
    t_arr = c.asarray(target, op, "target")
    w_arr = None if weight is None else c.numeric(weight, op, "weight", allow_bool=False)
    probs = t_arr.shape == x.shape
    if probs:
        _check_probabilities(op, x, t_arr, opts)
        t = c.cast(t_arr, x.dtype, op, "target")
    else:
        t = c.index_target(t_arr, op)
    wc = None if w_arr is None else c.cast(w_arr, x.dtype, op, "weight")
    c.not_sharing(x, op, "input", target=t, weight=wc)
    return _C.cross_entropy_in_place(x, t, wc, opts, probs)


# ------------------------------------------------------------------------------------------------ nll_loss


def _nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike],
    options: Tuple[Any, ...],
    grad_output: Optional[ArrayLike] = None,
    *,
    loss: bool = True,
    grad: bool = False,
) -> Tuple[Any, Optional[np.ndarray], None]:
    op = "nll_loss"
    x = c.float_input(input, op)
    t = c.index_target(target, op)
    w = None if weight is None else c.numeric(weight, op, "weight", allow_bool=False)
    return _class_indices(op, x, t, w, options, grad_output, loss, grad)


@c.public("nll_loss")
def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    **options: Any,
) -> c.Call:
    r"""Negative log-likelihood of class indices, as ``torch.nn.functional.nll_loss``.

    ``input`` holds log-probabilities ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``; ``target`` integer class
    indices ``()``, ``(N)`` or ``(N, d1, ..., dK)``. Per element ``l_i = −w[y_i]·x[i, y_i]`` (0 where
    ``y_i == ignore_index``); ``'mean'`` divides by the summed weight of the non-ignored targets (NaN when all are
    ignored, as torch). The gradient is ``−w[y_i]`` at ``[i, y_i]`` (divided by that sum for ``'mean'``).
    ``size_average``/``reduce`` are deprecated overrides of ``reduction``. Out-of-range targets raise
    ``IndexError``.

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.nll_loss(np.array([[-1.0, -2.0], [-3.0, -0.5]]), np.array([0, 1]))
        0.75
    """
    red = c.resolve_reduction(size_average, reduce, reduction, 3)
    opts = c.option_tuple("nll_loss", options, ignore_index=ignore_index, reduction=red)
    return functools.partial(_nll_loss, input, target, weight, opts)


nll_loss_with_grad = c.with_grad(
    nll_loss,
    """:func:`nll_loss` and its gradient wrt ``input``: ``(loss, grad_input)`` (targets are not differentiable).

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.nll_loss_with_grad(np.array([[-1.0, -2.0]]), np.array([1]))[1].tolist()
        [[0.0, -1.0]]
    """,
)


# -------------------------------------------------------------------------------------------------- kl_div


def _elementwise(
    name: str,
    input: ArrayLike,
    target: ArrayLike,
    weights: Dict[str, Optional[ArrayLike]],
    options: Tuple[Any, ...],
    grad_output: Optional[ArrayLike] = None,
    *,
    divide: bool = False,
    loss: bool = True,
    grad: bool = False,
    target_grad: bool = False,
) -> Tuple[Any, Optional[np.ndarray], Optional[np.ndarray]]:
    """(loss, grad_input, grad_target) of ``kl_div`` or a binary cross-entropy (``name``): the target is promoted
    with the input, the ``weights`` (argument name -> array or ``None``) are cast to that dtype. ``divide``:
    torch's ``reduced / input.size(0)`` of ``kl_div``'s legacy arguments with ``'batchmean'``."""
    op = name
    x = c.float_input(input, op)
    t_arr = c.numeric(target, op, "target")
    dt = c.promote(op, x, (target, t_arr))
    xc = c.cast(x, dt, op, "input")
    tc = c.cast(t_arr, dt, op, "target")
    wc = {k: None if w is None else c.cast(c.numeric(w, op, k), dt, op, k) for k, w in weights.items()}
    n = x.shape[0] if (divide and x.ndim) else 1
    if divide and (grad or target_grad):
        # torch's `reduced / input.size(0)`: the upstream gradient is divided before the kernel's backward.
        g = np.asarray(1.0 if grad_output is None else grad_output)
        go = c.cast(c.numeric(g, op, "grad_output", allow_bool=False), dt, op, "grad_output")
        go = np.asarray(go / dt.type(n), dtype=dt)
    else:
        go = c.grad_output_array(grad_output, dt, op)
    kernel = getattr(_C, name)
    lo, gi, gt = kernel(xc, tc, options, grad_output=go, loss=loss, grad=grad, target_grad=target_grad, **wc)
    if divide and lo is not None:
        lo = _scale(dt, lo, n)
    t_dt = c.native(t_arr.dtype) if (c.is_strong(target) and c.is_float(t_arr.dtype)) else dt
    return lo, c.cast_grad(gi, x.dtype), c.cast_grad(gt, t_dt)


@c.public("kl_div")
def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    log_target: bool = False,
    **options: Any,
) -> c.Call:
    r"""KL divergence ``KL(target ‖ exp(input))``, as ``torch.nn.functional.kl_div``.

    ``input`` holds **log**-probabilities; ``target`` probabilities (or log-probabilities with
    ``log_target=True``); the target broadcasts against the input as in torch. Per element
    ``xlogy(t, t) − t·input`` (``exp(t)·(t − input)`` with ``log_target``). Reductions: ``'none'``, ``'sum'``,
    ``'mean'`` (over all elements, with torch's warning that it is not the true KL), ``'batchmean'`` (sum divided
    by ``input.shape[0]``: the mathematical KL). ``size_average``/``reduce`` are deprecated overrides.

    Example:
        >>> import numpy as np, infoloss
        >>> p = np.array([[0.25, 0.75]]); q = np.array([[0.5, 0.5]])
        >>> round(infoloss.kl_div(np.log(q), p, reduction='batchmean'), 6)
        0.130812
    """
    x = c.float_input(input, "kl_div")
    red, divide = c.resolve_kl_reduction(size_average, reduce, reduction, x.ndim, 3)
    opts = c.option_tuple("kl_div", options, reduction=red, log_target=log_target)
    return functools.partial(_elementwise, "kl_div", x, target, {}, opts, divide=divide)


kl_div_with_grad = c.with_grad(
    kl_div,
    """:func:`kl_div` and its gradients: ``(loss, grad_input)`` or ``(loss, grad_input, grad_target)``.

    ``grad_input = −t·g`` (``−exp(t)·g`` with ``log_target``), scaled by the reduction; ``grad_target =
    g·(log t + 1 − input)``, NaN where ``t == 0`` exactly as torch (``x·log x`` is not differentiable at 0).

    Example:
        >>> import numpy as np, infoloss
        >>> _, gi = infoloss.kl_div_with_grad(np.log([0.5, 0.5]), np.array([0.25, 0.75]), reduction='sum')
        >>> gi.tolist()
        [-0.25, -0.75]
    """,
    target_grad=True,
)


# ------------------------------------------------------------------------------------- binary_cross_entropy


@c.public("binary_cross_entropy")
def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    **options: Any,
) -> c.Call:
    r"""Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    ``input`` holds probabilities in ``[0, 1]`` (anything else, NaN included, raises ``ValueError`` as torch
    does); ``target`` has the input's shape (soft labels allowed); ``weight`` broadcasts into that shape.
    Per element ``−w·[t·max(log x, −100) + (1 − t)·max(log1p(−x), −100)]``. The gradient wrt the input is
    ``w·(x − t)/max(x(1 − x), 1e-12)`` (torch's float epsilon), wrt the target ``−w·logit(x)``.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.array([[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]]); t = np.array([[0., 1, 0], [0, 0, 1]])
        >>> round(infoloss.binary_cross_entropy(x, t), 6)
        0.59123
    """
    red = c.resolve_reduction(size_average, reduce, reduction, 3)
    opts = c.option_tuple("binary_cross_entropy", options, reduction=red)
    return functools.partial(_elementwise, "binary_cross_entropy", input, target, {"weight": weight}, opts)


binary_cross_entropy_with_grad = c.with_grad(
    binary_cross_entropy,
    """:func:`binary_cross_entropy` and its gradients: ``(loss, grad_input)`` or ``(loss, grad_input, grad_target)``.

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.binary_cross_entropy_with_grad(np.array([0.5]), np.array([1.0]))[1].tolist()
        [-2.0]
    """,
    target_grad=True,
)


@c.public("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    pos_weight: Optional[ArrayLike] = None,
    **options: Any,
) -> c.Call:
    r"""Binary cross-entropy on logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Per element ``(1 − t)·x − (1 + (pw − 1)·t)·log σ(x)``, times ``weight``. ``weight`` and ``pos_weight``
    broadcast *into* the input's shape (``pos_weight`` of shape ``(C,)`` acts on the last dimension, as in
    torch). Gradient wrt the input ``w·[(pw·t + 1 − t)·σ(x) − pw·t]``; wrt the target
    ``w·(log σ(−x) − pw·log σ(x))``.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.array([[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]]); t = np.array([[0., 1, 0], [0, 0, 1]])
        >>> round(infoloss.binary_cross_entropy_with_logits(x, t), 6)
        0.767847
    """
    red = c.resolve_reduction(size_average, reduce, reduction, 3)
    opts = c.option_tuple("binary_cross_entropy_with_logits", options, reduction=red)
    weights = {"weight": weight, "pos_weight": pos_weight}
    return functools.partial(_elementwise, "binary_cross_entropy_with_logits", input, target, weights, opts)


binary_cross_entropy_with_logits_with_grad = c.with_grad(
    binary_cross_entropy_with_logits,
    """:func:`binary_cross_entropy_with_logits` and its gradients: ``(loss, grad_input[, grad_target])``.

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.binary_cross_entropy_with_logits_with_grad(np.array([0.0]), np.array([1.0]))[1].tolist()
        [-0.5]
    """,
    target_grad=True,
)



def _elementwise_in_place(
    loss: str, input: np.ndarray, target: ArrayLike, weights: Dict[str, Optional[ArrayLike]], options: Dict[str, Any],
    **given: Any,
) -> Any:
    """The shared body of the elementwise ``*_with_grad_in_place`` calls: ``input`` must be the caller's own
    writeable float array; ``target`` and the ``weights`` are cast to its dtype (no promotion) and must not share
    its memory."""
    op = f"{loss}_with_grad_in_place"
    x = c.in_place_logits(input, op, "input")
    t = c.cast(c.numeric(target, op, "target"), x.dtype, op, "target")
    w = {k: None if v is None else c.cast(c.numeric(v, op, k), x.dtype, op, k) for k, v in weights.items()}
    c.not_sharing(x, op, "input", target=t, **w)
    opts = c.option_tuple(loss, options, op=op, **given)
    return _C.elementwise_in_place(loss, x, t, w.get("weight"), w.get("pos_weight"), opts)


@c.catalog_options("kl_div")
def kl_div_with_grad_in_place(
    input: np.ndarray,
    target: ArrayLike,
    reduction: str = "mean",
    log_target: bool = False,
    **options: Any,
) -> Any:
    r""":func:`kl_div_with_grad` for the training path: the gradient wrt ``input`` is written **over** ``input``
    (whose log-probabilities are dead after the loss) and only the loss is returned.

    No ``input``-sized gradient array is allocated. Loss and gradient equal :func:`kl_div_with_grad`'s bit for
    bit (upstream gradient 1). ``input`` must be the caller's own writeable float16/32/64 NumPy array (nothing is
    converted); ``target`` is cast to its dtype and may broadcast against it, but not to a larger shape (the
    gradient must fit in ``input``). Operands sharing memory with ``input`` are refused; on any error ``input`` is
    left unchanged. Rust: ``infoloss::kl_div_with_grad_in_place``.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.log(np.array([0.5, 0.5], dtype=np.float32))
        >>> round(infoloss.kl_div_with_grad_in_place(x, np.array([0.25, 0.75]), reduction='sum'), 6)
        0.130812
        >>> x.tolist()
        [-0.25, -0.75]
    """
    x = c.in_place_logits(input, "kl_div_with_grad_in_place", "input")
    red, _ = c.resolve_kl_reduction(None, None, reduction, x.ndim, 2)
    return _elementwise_in_place("kl_div", x, target, {}, options, reduction=red, log_target=log_target)


@c.catalog_options("binary_cross_entropy")
def binary_cross_entropy_with_grad_in_place(
    input: np.ndarray,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    reduction: str = "mean",
    **options: Any,
) -> Any:
    r""":func:`binary_cross_entropy_with_grad` for the training path: the gradient wrt ``input`` is written
    **over** ``input`` and only the loss is returned.

    Loss and gradient equal :func:`binary_cross_entropy_with_grad`'s bit for bit. ``input`` must be the caller's
    own writeable float array; ``target`` (the input's shape) and ``weight`` (broadcasting into it) are cast to its
    dtype. Values outside ``[0, 1]`` raise ``ValueError`` naming the first one, and ``input`` is left unchanged
    (the domain is checked before anything is written). Rust: ``infoloss::binary_cross_entropy_with_grad_in_place``.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.array([0.5], dtype=np.float32)
        >>> round(infoloss.binary_cross_entropy_with_grad_in_place(x, np.array([1.0])), 6)
        0.693147
        >>> x.tolist()
        [-2.0]
    """
    red = c.resolve_reduction(None, None, reduction, 2)
    return _elementwise_in_place("binary_cross_entropy", input, target, {"weight": weight}, options, reduction=red)


@c.catalog_options("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits_with_grad_in_place(
    input: np.ndarray,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    reduction: str = "mean",
    pos_weight: Optional[ArrayLike] = None,
    **options: Any,
) -> Any:
    r""":func:`binary_cross_entropy_with_logits_with_grad` for the training path: the gradient wrt the logits is
    written **over** ``input`` and only the loss is returned.

    Loss and gradient equal :func:`binary_cross_entropy_with_logits_with_grad`'s bit for bit. ``input`` must be
    the caller's own writeable float array; ``target`` (the input's shape), ``weight`` and ``pos_weight``
    (broadcasting into it) are cast to its dtype. On any error ``input`` is left unchanged. Rust:
    ``infoloss::binary_cross_entropy_with_logits_with_grad_in_place``.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.zeros(2, dtype=np.float32)
        >>> round(infoloss.binary_cross_entropy_with_logits_with_grad_in_place(x, np.array([1.0, 0.0])), 6)
        0.693147
        >>> x.tolist()
        [-0.25, 0.25]
    """
    red = c.resolve_reduction(None, None, reduction, 2)
    weights = {"weight": weight, "pos_weight": pos_weight}
    return _elementwise_in_place("binary_cross_entropy_with_logits", input, target, weights, options, reduction=red)


# ---------------------------------------------------------------------------- softmax, log_softmax, logsumexp


def _softmax_input(input: ArrayLike, dtype: Any, op: str) -> np.ndarray:
    if dtype is not None:
        x = c.asarray(input, op, "input")
        dt = np.dtype(dtype)
        if not c.is_float(dt):
            raise TypeError(f"{op}: dtype must be float16, float32, float64 or ml_dtypes.bfloat16, got {dt}")
        if x.dtype.kind not in "fiub" and not c.is_float(x.dtype):
            raise TypeError(c._float_dtype_error(op, "input", x.dtype))
        return c.ready(x.astype(dt, copy=False), op, "input")
    return c.float_input(input, op)


def _row_fn(
    name: str, input: ArrayLike, dim: Any, stacklevel: int, dtype: Any, grad_output: Any = None, *, grad: bool = False
) -> Tuple[np.ndarray, Optional[np.ndarray], None]:
    """``(output, grad_input, None)`` of ``softmax`` or ``log_softmax`` (``name``), ``grad_input`` ``None``
    without ``grad``."""
    x = _softmax_input(input, dtype, name)
    if dim is None:
        dim = c.get_softmax_dim(name, x.ndim, stacklevel + 1)
    dim = c.as_int(dim, name, "dim")
    fwd = _C.log_softmax if name == "log_softmax" else _C.softmax
    out = fwd(x, dim)
    if not grad:
        return out, None, None
    bwd = _C.log_softmax_backward if name == "log_softmax" else _C.softmax_backward
    return out, bwd(out, c.upstream(grad_output, out, name), dim), None


@c.public(returns="np.ndarray")
def log_softmax(input: ArrayLike, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> c.Call:
    r"""Log-softmax along ``dim``, as ``torch.nn.functional.log_softmax``: ``(x − m) − log Σ exp(x − m)``.

    ``dim=None`` picks torch's implicit dimension (0 for 0-, 1- and 3-D input, else 1) with its deprecation
    warning; ``dtype`` casts the input first. Rows that are all ``-inf`` give NaN. Gradient:
    ``g − exp(y)·Σ_dim g``.

    Example:
        >>> import numpy as np, infoloss
        >>> np.round(infoloss.log_softmax(np.array([0.0, 0.0]), 0), 6).tolist()
        [-0.693147, -0.693147]
    """
    return functools.partial(_row_fn, "log_softmax", input, dim, _stacklevel, dtype)


log_softmax_with_grad = c.with_grad(
    log_softmax,
    """:func:`log_softmax` and the gradient of ``Σ grad_output·log_softmax(input)``: ``(output, grad_input)``.

    ``grad_output`` defaults to ones.

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.log_softmax_with_grad(np.array([0.0, 0.0]), 0)[1].tolist()
        [0.0, 0.0]
    """,
)


@c.public(returns="np.ndarray")
def softmax(input: ArrayLike, dim: Optional[int] = None, _stacklevel: int = 3, dtype: Any = None) -> c.Call:
    r"""Softmax along ``dim``, as ``torch.nn.functional.softmax``: ``exp(x − m) / Σ exp(x − m)``.

    ``dim=None`` picks torch's implicit dimension with its deprecation warning; ``dtype`` casts the input
    first. Gradient: ``s·(g − Σ_dim g·s)``.

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.softmax(np.array([[1.0, 1.0]]), dim=1).tolist()
        [[0.5, 0.5]]
    """
    return functools.partial(_row_fn, "softmax", input, dim, _stacklevel, dtype)


softmax_with_grad = c.with_grad(
    softmax,
    """:func:`softmax` and the gradient of ``Σ grad_output·softmax(input)``: ``(output, grad_input)``.

    Example:
        >>> import numpy as np, infoloss
        >>> s, g = infoloss.softmax_with_grad(np.array([0.0, 0.0]), 0, grad_output=np.array([1.0, 0.0]))
        >>> g.tolist()
        [0.25, -0.25]
    """,
)


def _dims(dim: Sequence[Any], ndim: int, op: str) -> Tuple[int, ...]:
    """A sequence of dims, normalized (negative counts from the end), checked for range and repeats."""
    if len(dim) == 0:
        raise ValueError(f"{op}: dim must name at least one dimension")
    n = max(ndim, 1)
    out = []
    for d in (c.as_int(d, op, "dim") for d in dim):
        if not -n <= d < n:
            raise np.exceptions.AxisError(
                f"{op}: invalid dim = {d}: dimension out of range (expected to be in range of [{-n}, {n - 1}])"
            )
        d %= n
        if d in out:
            raise ValueError(f"{op}: dim {d} appears multiple times in the list of dims")
        out.append(d)
    return tuple(out)


def _logsumexp(
    input: ArrayLike, dim: Any, keepdim: Any, grad_output: Any = None, *, grad: bool = False
) -> Tuple[Any, Optional[np.ndarray], None]:
    """``(output, grad_input, None)`` of ``logsumexp``, ``grad_input`` ``None`` without ``grad``."""
    op = "logsumexp"
    x = c.float_input(input, op)
    if isinstance(dim, (list, tuple)):
        dims = _dims(dim, x.ndim, op)
        dim = dims[0] if len(dims) == 1 else dims
    if isinstance(dim, tuple):
        # Several dimensions: move them to the end and merge them into one.
        keep = [i for i in range(x.ndim) if i not in dim]
        moved = keep + sorted(dim)
        y = np.transpose(x, moved).reshape([x.shape[i] for i in keep] + [math.prod(x.shape[i] for i in dim)])
        d_core = -1
        axes = tuple(sorted(dim))
    else:
        d_core = c.as_int(dim, op, "dim")
        y, moved = x, None
        axes = (d_core % x.ndim,) if x.ndim and -x.ndim <= d_core < x.ndim else ()
    out = _C.logsumexp(y, d_core)
    result = np.expand_dims(out, axes) if (keepdim and axes) else out
    result = c.scalar_or_array(result)
    if not grad:
        return result, None, None
    go = c.upstream(grad_output, out, op)
    if keepdim and axes and go.shape == np.shape(result):
        go = go.reshape(out.shape)  # a keepdim-shaped upstream gradient
    g = _C.logsumexp_backward(y, go, d_core)
    if moved is not None:
        g = np.transpose(g.reshape([x.shape[i] for i in moved]), np.argsort(moved))
    return result, g, None


@c.public(returns="Any")
def logsumexp(input: ArrayLike, dim: Union[int, Sequence[int]], keepdim: bool = False) -> c.Call:
    r"""``log Σ exp(input)`` over ``dim`` (an int or a sequence of ints), as ``torch.logsumexp``.

    Computed stably as ``m + log Σ exp(x − m)``; ``keepdim`` keeps the reduced dimensions with size 1. A 0-d
    result is returned as a NumPy scalar. Gradient: ``g·softmax(x)`` over ``dim``.

    Example:
        >>> import numpy as np, infoloss
        >>> round(float(infoloss.logsumexp(np.log(np.array([1.0, 3.0])), 0)), 6)
        1.386294
    """
    return functools.partial(_logsumexp, input, dim, keepdim)


logsumexp_with_grad = c.with_grad(
    logsumexp,
    """:func:`logsumexp` and the gradient of ``Σ grad_output·logsumexp(input)``: ``(output, grad_input)``.

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.logsumexp_with_grad(np.array([0.0, 0.0]), 0)[1].tolist()
        [0.5, 0.5]
    """,
)
