"""Cross-entropy with extras (z-loss, softcap, log-sum-exp, token accuracy) and the fused linear losses
(``linear_cross_entropy``, ``linear_distill``, ``linear_distill_topk``) for NumPy arrays.

The fused losses compute ``hidden·weightᵀ (+ bias)`` chunk by chunk and never hold the ``(rows, classes)`` logits.
Their kernels exist in float32 and float64; float16 arrays are computed in float32 (GEMMs included) and the results
rounded once to float16.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from . import _common as c
from ._common import kernels as _C  # bfloat16-aware (see _common._Kernels)
from ._distill import _distill_options, _labels

ArrayLike = Any
_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)


# ---------------------------------------------------------------------------------------- cross_entropy_extras


class CrossEntropyExtrasResult(NamedTuple):
    """What :func:`cross_entropy_extras` and :func:`cross_entropy_extras_with_grad` return (a named tuple).

    Fields: ``loss`` (cross-entropy + z-loss: a float, or ``(N,)`` for ``'none'``), ``grad_input`` (``(N, C)``,
    ``None`` from :func:`cross_entropy_extras`), ``z_loss`` (the z-loss part alone, reduced like the loss),
    ``lse`` (``(N,)`` log-sum-exp of the capped logits of every row, with ``return_lse=True``, else ``None``),
    ``token_accuracy`` (with ``return_token_accuracy=True``: the fraction of non-ignored rows whose argmax is the
    target, or ``(N,)`` 1/0 indicators for ``'none'``; else ``None``).

    Example:
        >>> import numpy as np, infoloss
        >>> r = infoloss.cross_entropy_extras(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0]),
        ...                                   return_token_accuracy=True)
        >>> r.token_accuracy, r.grad_input is None
        (0.5, True)
    """

    loss: Any
    grad_input: Optional[np.ndarray]
    z_loss: Any
    lse: Optional[np.ndarray]
    token_accuracy: Any


def _ce_extras(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike], options: tuple,
               grad_output: Optional[ArrayLike] = None, *, grad: bool = False) -> CrossEntropyExtrasResult:
    op = "cross_entropy_extras"
    x = c.float_input(input, op)
    t = c.index_target(target, op)
    dt = x.dtype
    wc = None if weight is None else c.cast(c.numeric(weight, op, "weight", allow_bool=False), dt, op, "weight")
    go = c.grad_output_array(grad_output, dt, op)
    loss, z, lse, acc, gi = _C.cross_entropy_extras(x, t, wc, options, go, grad)
    return CrossEntropyExtrasResult(loss, gi, z, lse, acc)


@c.catalog_options("cross_entropy_extras")
def cross_entropy_extras(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    **options: Any,
) -> CrossEntropyExtrasResult:
    r"""Cross-entropy with the extras of large-vocabulary training (Liger-Kernel's ``LigerCrossEntropyLoss``):
    z-loss, logit softcapping, the per-row log-sum-exp and the token accuracy, on logits ``(N, C)`` with class
    indices ``(N,)``. Returns a :class:`CrossEntropyExtrasResult` (``grad_input`` is ``None``; see
    :func:`cross_entropy_extras_with_grad`).

    With ``x̃ = softcap·tanh(x / softcap)`` (``x̃ = x`` without a softcap) and ``lse = logsumexp(x̃, 1)``:
    ``loss = F.cross_entropy(x̃, target, weight, ignore_index, reduction, label_smoothing) + Z``, where the z-loss
    ``Z`` is ``lse_square_scale·lse²`` over the non-ignored rows, divided by their **count** for ``'mean'`` (not
    weighted by the class weights nor smoothed, as Liger). PyTorch::

        xc = c * torch.tanh(x / c); lse = torch.logsumexp(xc, 1); keep = y != ignore_index
        loss = F.cross_entropy(xc, y, weight=w, ignore_index=ii, reduction=red, label_smoothing=eps) \
               + (torch.where(keep, s * lse.pow(2), 0)).sum() / keep.sum()        # 'mean'
        acc = (xc.argmax(1) == y)[keep].float().mean()

    Gradient: ``{[(1−ε)·w_y·(p − e_y) + (ε/C)·(p·Σw − w)]/W + 2·s·lse·p/n}·(1 − tanh²(x/c))``,
    ``p = softmax(x̃)``.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]); y = np.array([2, 0])
        >>> r = infoloss.cross_entropy_extras(x, y, lse_square_scale=0.01, softcap=2.0)
        >>> round(r.loss, 9), round(r.z_loss, 9)
        (1.136660108, 0.051174822)
    """
    red = c.get_enum(reduction, 2)
    opts = c.option_tuple("cross_entropy_extras", options, ignore_index=ignore_index, reduction=red,
                          label_smoothing=label_smoothing)
    return _ce_extras(input, target, weight, opts)


@c.catalog_options("cross_entropy_extras")
def cross_entropy_extras_with_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    grad_output: Optional[ArrayLike] = None,
    **options: Any,
) -> CrossEntropyExtrasResult:
    """:func:`cross_entropy_extras` with ``grad_input``, the gradient of the total loss (cross-entropy + z-loss)
    wrt the logits, in the input's dtype; ``loss, grad_input = result[:2]``.

    ``grad_output``: a scalar for ``'mean'``/``'sum'``, ``(N,)`` (or a scalar for every row) for ``'none'``;
    default 1.

    Example:
        >>> import numpy as np, infoloss
        >>> r = infoloss.cross_entropy_extras_with_grad(np.zeros((1, 2)), np.array([0]), lse_square_scale=1.0)
        >>> np.round(r.grad_input, 6).tolist()  # softmax − onehot + 2·lse·softmax
        [[0.193147, 1.193147]]
    """
    red = c.get_enum(reduction, 2)
    opts = c.option_tuple("cross_entropy_extras", options, ignore_index=ignore_index, reduction=red,
                          label_smoothing=label_smoothing)
    return _ce_extras(input, target, weight, opts, grad_output, grad=True)


# ---------------------------------------------------------------------------------------- linear_cross_entropy


class LinearCrossEntropyResult(NamedTuple):
    """What :func:`linear_cross_entropy_with_grad` returns (a named tuple).

    Fields: ``loss`` (float, or an array of the target's shape for ``'none'``), ``grad_input`` (the input's
    shape), ``grad_linear_weight`` (``(C, H)``), ``grad_linear_bias`` (``(C,)``, ``None`` without a bias),
    ``z_loss``, ``lse`` and ``token_accuracy`` as in :class:`CrossEntropyExtrasResult`.

    Example:
        >>> import numpy as np, infoloss
        >>> r = infoloss.linear_cross_entropy_with_grad(np.ones((2, 3)), np.zeros((4, 3)), np.array([0, 1]))
        >>> round(r.loss, 6), r.grad_input.shape, r.grad_linear_weight.shape, r.grad_linear_bias
        (1.386294, (2, 3), (4, 3), None)
    """

    loss: Any
    grad_input: np.ndarray
    grad_linear_weight: np.ndarray
    grad_linear_bias: Optional[np.ndarray]
    z_loss: Any
    lse: Optional[np.ndarray]
    token_accuracy: Any


def _linear_ce_options(extra: Dict[str, Any], *, ignore_index: Any, **given: Any) -> tuple:
    """``LinearCrossEntropyOptions`` in the catalog's order; ``ignore_index=None`` is -100 (torch spells it so)."""
    ignore_index = -100 if ignore_index is None else ignore_index
    return c.option_tuple("linear_cross_entropy", extra, ignore_index=ignore_index, **given)


def _linear_ce(input: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, linear_bias: Optional[ArrayLike],
               weight: Optional[ArrayLike], options: tuple,
               grad_output: Optional[ArrayLike] = None) -> LinearCrossEntropyResult:
    """The fused loss with the reduction resolved; a 1-D input is one row."""
    op = "linear_cross_entropy"
    x = c.float_input(input, op, "input")
    w = c.float_input(linear_weight, op, "linear_weight")
    t_arr = c.asarray(target, op, "target")
    if t_arr.dtype.kind == "f":
        raise TypeError(f"{op}: target must hold integer class indices (the fused loss has no class-probability "
                        f"targets), got dtype {t_arr.dtype}")
    t = c.index_target(t_arr, op)
    b = None if linear_bias is None else c.numeric(linear_bias, op, "linear_bias", allow_bool=False)
    cw = None if weight is None else c.numeric(weight, op, "weight", allow_bool=False)
    if x.ndim not in (1, 2):
        raise ValueError(f"{op}: expected input with dimensionality 1 or 2, got {x.ndim} (shape {list(x.shape)})")
    lead = x.shape[:-1]
    if t.shape != lead:
        raise ValueError(f"{op}: input shape {list(x.shape)} and target shape {list(t.shape)} are not compatible: "
                         "the target must have one class index per row of the input")
    dt = c.promote(op, x, (linear_weight, w), (linear_bias, b), (weight, cw))
    kdt = _F32 if dt == _F16 else dt
    xc = c.cast(x.reshape(lead[0] if lead else 1, x.shape[-1]), kdt, op, "input")
    wc = c.cast(w, kdt, op, "linear_weight")
    bc = None if b is None else c.cast(b, kdt, op, "linear_bias")
    cwc = None if cw is None else c.cast(cw, kdt, op, "weight")
    go = c.grad_output_array(grad_output, kdt, op)
    reduction = c.option("linear_cross_entropy", options, "reduction")
    if go is not None and go.ndim > 0 and reduction == "none" and go.shape == lead:
        go = c.ready(go.reshape(-1), op, "grad_output")
    loss, z, lse, acc, gx, gw, gb = _C.linear_cross_entropy(xc, wc, t.reshape(-1), bc, cwc, options, go)

    def rows(a):  # a per-row result back in the target's shape and the computation's dtype
        return a if not isinstance(a, np.ndarray) else a.reshape(lead).astype(dt, copy=False)

    return LinearCrossEntropyResult(
        rows(loss),
        gx.reshape(x.shape).astype(x.dtype, copy=False),
        gw.astype(w.dtype, copy=False),
        None if gb is None else gb.astype(c.native(b.dtype) if (c.is_strong(linear_bias) and c.is_float(b.dtype))
                                          else dt, copy=False),
        rows(z),
        rows(lse),
        rows(acc),
    )


@c.catalog_options("linear_cross_entropy", left_out=('return_lse', 'return_token_accuracy'))
def linear_cross_entropy(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: Optional[ArrayLike] = None,
    weight: Optional[ArrayLike] = None,
    reduction: str = "mean",
    ignore_index: Optional[int] = -100,
    label_smoothing: float = 0.0,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    chunk_size: Optional[int] = None,
    **options: Any,
) -> Any:
    r"""A linear layer followed by cross-entropy, fused, as ``torch.nn.functional.linear_cross_entropy`` (torch
    2.15; same argument names, order and defaults): the ``(rows, C)`` logits are never held whole.

    ``input (N, H)`` or ``(H,)``, ``linear_weight (C, H)``, ``target (N,)`` or ``()`` (class indices),
    ``linear_bias (C,)``; ``weight``, ``reduction``, ``ignore_index`` (default -100 as everywhere in infoloss;
    ``None``, ``F.linear_cross_entropy``'s spelling of the same default, is accepted) and ``label_smoothing`` are
    :func:`cross_entropy`'s. Equals::

        F.cross_entropy(F.linear(input, linear_weight, linear_bias), target, weight=weight,
                        ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)

    plus, beyond torch, :func:`cross_entropy_extras`'s ``lse_square_scale`` (z-loss) and ``softcap``.
    ``chunk_size`` sets the rows per chunk (default: automatic, at least 64 MiB of logits). As in torch, the input
    has 1 or 2 dimensions; class-probability targets and multi-dimensional ``linear_weight`` are not supported.
    Float16 is computed in float32. Gradients: :func:`linear_cross_entropy_with_grad`.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]])
        >>> w = np.array([[0.2, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]])
        >>> b = np.array([0.0, 0.1, -0.1, 0.2])
        >>> round(infoloss.linear_cross_entropy(x, w, np.array([1, 2, -100]), linear_bias=b), 9)
        0.80152802
    """
    red = c.get_enum(reduction, 2)
    opts = _linear_ce_options(options, ignore_index=ignore_index, reduction=red, label_smoothing=label_smoothing,
                              lse_square_scale=lse_square_scale, softcap=softcap, chunk_size=chunk_size)
    return _linear_ce(input, linear_weight, target, linear_bias, weight, opts).loss


@c.catalog_options("linear_cross_entropy")
def linear_cross_entropy_with_grad(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: Optional[ArrayLike] = None,
    weight: Optional[ArrayLike] = None,
    reduction: str = "mean",
    ignore_index: Optional[int] = -100,
    label_smoothing: float = 0.0,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    chunk_size: Optional[int] = None,
    return_lse: bool = False,
    return_token_accuracy: bool = False,
    grad_output: Optional[ArrayLike] = None,
    **options: Any,
) -> LinearCrossEntropyResult:
    """:func:`linear_cross_entropy` and its gradients wrt ``input``, ``linear_weight`` and ``linear_bias``: a
    :class:`LinearCrossEntropyResult` ``(loss, grad_input, grad_linear_weight, grad_linear_bias, z_loss, lse,
    token_accuracy)``.

    With ``G = ∂loss/∂logits``: ``grad_input = G·W``, ``grad_linear_weight = Gᵀ·X``,
    ``grad_linear_bias = Σ_rows G``. ``grad_output``: a scalar for ``'mean'``/``'sum'``, an array of the target's
    shape (or a scalar) for ``'none'``; default 1.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]])
        >>> w = np.array([[0.2, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]])
        >>> r = infoloss.linear_cross_entropy_with_grad(x, w, np.array([1, 2, -100]), linear_bias=np.zeros(4))
        >>> r.grad_input.shape, r.grad_linear_weight.shape, r.grad_linear_bias.shape
        ((3, 2), (4, 2), (4,))
    """
    red = c.get_enum(reduction, 2)
    opts = _linear_ce_options(options, ignore_index=ignore_index, reduction=red, label_smoothing=label_smoothing,
                              lse_square_scale=lse_square_scale, softcap=softcap, chunk_size=chunk_size,
                              return_lse=return_lse, return_token_accuracy=return_token_accuracy)
    return _linear_ce(input, linear_weight, target, linear_bias, weight, opts, grad_output)


# ---------------------------------------------------------------------------------------------- linear_distill


class LinearDistillResult(NamedTuple):
    """What :func:`linear_distill_with_grad` returns (a named tuple).

    Fields: ``loss`` (float, or ``(N,)`` for ``'none'``), ``grad_student_hidden`` (``(N, Hs)``),
    ``grad_student_weight`` (``(V, Hs)``), ``grad_student_bias`` (``(V,)``, ``None`` without a student bias). The
    teacher gets no gradient.

    Example:
        >>> import numpy as np, infoloss
        >>> x = np.array([[1.0, -0.5], [0.25, 2.0]]); w = np.array([[0.5, 0.1], [-0.3, 0.2], [0.0, 1.0]])
        >>> r = infoloss.linear_distill_with_grad(x, w, x, w, student_bias=np.zeros(3))
        >>> abs(r.loss) < 1e-15, r.grad_student_weight.shape, r.grad_student_bias.shape
        (True, (3, 2), (3,))
    """

    loss: Any
    grad_student_hidden: np.ndarray
    grad_student_weight: np.ndarray
    grad_student_bias: Optional[np.ndarray]


def _fused_distill(op: str, floats: Tuple[Tuple[str, ArrayLike], ...], biases: Tuple[Tuple[str, Any], ...],
                   labels: Optional[ArrayLike], grad_output: Optional[ArrayLike], call: Callable) -> LinearDistillResult:
    """The NumPy side of a fused distillation: the float arrays ``floats`` (``(name, value)``, the student's hidden
    states and weight first) and the optional ``biases`` (the student's first) in one computation dtype (float16
    computed in float32), then ``call(*floats, *biases, labels, grad_output)`` → ``(loss, gx, gw, gb)``, whose
    results come back in the dtypes of the student's arrays."""
    arrs = [c.float_input(v, op, n) for n, v in floats]
    bias = [None if v is None else c.numeric(v, op, n, allow_bool=False) for n, v in biases]
    dt = c.promote(op, arrs[0], *zip([v for _, v in floats[1:]], arrs[1:]), *zip([v for _, v in biases], bias))
    kdt = _F32 if dt == _F16 else dt
    conv = [c.cast(a, kdt, op, n) for a, (n, _) in zip(arrs, floats)]
    conv += [None if b is None else c.cast(b, kdt, op, n) for b, (n, _) in zip(bias, biases)]
    loss, gx, gw, gb = call(*conv, _labels(labels, op), c.grad_output_array(grad_output, kdt, op))
    if isinstance(loss, np.ndarray):
        loss = loss.astype(dt, copy=False)
    if gb is not None:
        bs, orig = bias[0], biases[0][1]
        gb = gb.astype(c.native(bs.dtype) if (c.is_strong(orig) and c.is_float(bs.dtype)) else dt, copy=False)
    return LinearDistillResult(loss, gx.astype(arrs[0].dtype, copy=False), gw.astype(arrs[1].dtype, copy=False), gb)


def _linear_distill(student_hidden: ArrayLike, student_weight: ArrayLike, teacher_hidden: ArrayLike,
                    teacher_weight: ArrayLike, labels: Optional[ArrayLike], options: tuple,
                    grad_output: Optional[ArrayLike] = None, student_bias: Optional[ArrayLike] = None,
                    teacher_bias: Optional[ArrayLike] = None, teacher_topk: Optional[int] = None,
                    add_tail: bool = False) -> LinearDistillResult:
    """The fused loss and its gradients for the upstream gradient ``grad_output`` (``None`` = 1)."""
    op = "linear_distill"
    k = None if teacher_topk is None else c.as_int(teacher_topk, op, "teacher_topk")
    floats = (("student_hidden", student_hidden), ("student_weight", student_weight),
              ("teacher_hidden", teacher_hidden), ("teacher_weight", teacher_weight))
    biases = (("student_bias", student_bias), ("teacher_bias", teacher_bias))
    return _fused_distill(op, floats, biases, labels, grad_output,
                          lambda xs, ws, xt, wt, bs, bt, y, go:
                          _C.linear_distill(xs, ws, xt, wt, y, options, bs, bt, k, bool(add_tail), go))


def _linear_distill_topk(student_hidden: ArrayLike, student_weight: ArrayLike, topk_indices: ArrayLike,
                         topk_logprobs: ArrayLike, labels: Optional[ArrayLike], options: tuple,
                         grad_output: Optional[ArrayLike] = None, student_bias: Optional[ArrayLike] = None,
                         add_tail: bool = False) -> LinearDistillResult:
    """The fused loss against a stored top-k teacher and its gradients (``grad_output=None`` = 1)."""
    op = "linear_distill_topk"
    floats = (("student_hidden", student_hidden), ("student_weight", student_weight),
              ("topk_logprobs", topk_logprobs))
    idx = c.index_target(topk_indices, op, "topk_indices")
    return _fused_distill(op, floats, (("student_bias", student_bias),), labels, grad_output,
                          lambda xs, ws, lq, bs, y, go:
                          _C.linear_distill_topk(xs, ws, idx, lq, y, options, bs, bool(add_tail), go))


@c.catalog_options("linear_distill")
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
    **options: Any,
) -> Any:
    r"""Fused linear heads + :func:`distill`: student logits ``student_hidden (N, Hs) · student_weightᵀ (V, Hs)
    (+ student_bias)``, teacher logits ``teacher_hidden (N, Ht) · teacher_weightᵀ (V, Ht) (+ teacher_bias)``,
    computed chunk by chunk and never held whole; the loss is :func:`distill` of those logits (every option of
    :func:`distill`, same meaning).

    ``teacher_topk=k`` keeps only the teacher's ``k`` largest logits per row: the loss is then :func:`distill_topk`
    with ``topk_indices = t.topk(k).indices`` and ``topk_logprobs = log_softmax(t / T)`` at them (``add_tail`` adds
    the bucket of the remaining mass); ``k = V`` without the tail equals the dense loss.

    PyTorch (forward KL)::

        s = F.linear(xs, ws, bs); t = F.linear(xt, wt, bt)
        loss = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction='batchmean',
                        log_target=True) * T**2

    Gradients (wrt the student's hidden states, weight and bias only): :func:`linear_distill_with_grad`. Float16
    is computed in float32.

    Example:
        >>> import numpy as np, infoloss
        >>> xs = np.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]])
        >>> ws = np.array([[0.2, -0.1], [0.4, 0.3], [-0.3, 0.8]])
        >>> xt = np.array([[0.3], [1.0], [-1.0]]); wt = np.array([[1.0], [-1.0], [0.5]])
        >>> round(infoloss.linear_distill(xs, ws, xt, wt, temperature=2.0), 9)
        0.429576663
    """
    opts = _distill_options("linear_distill", options, loss="linear_distill")
    return _linear_distill(student_hidden, student_weight, teacher_hidden, teacher_weight, labels, opts, None,
                           student_bias, teacher_bias, teacher_topk, add_tail).loss


@c.catalog_options("linear_distill")
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
    grad_output: Optional[ArrayLike] = None,
    **options: Any,
) -> LinearDistillResult:
    """:func:`linear_distill` and its gradients: a :class:`LinearDistillResult` ``(loss, grad_student_hidden,
    grad_student_weight, grad_student_bias)``.

    With ``G = grad_output ⊙ ∂loss/∂S`` (:func:`distill_with_grad`'s gradient on the student logits ``S``, the
    upstream gradient applied per row and rounded once): ``grad_student_hidden = G·Ws``,
    ``grad_student_weight = Gᵀ·Xs``, ``grad_student_bias = Σ_rows G``. The teacher is a constant.
    ``grad_output``: a scalar (default 1) for the reduced losses; for ``'none'`` an ``(N,)`` array or a scalar
    for every row.

    Example:
        >>> import numpy as np, infoloss
        >>> xs = np.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]])
        >>> ws = np.array([[0.2, -0.1], [0.4, 0.3], [-0.3, 0.8]])
        >>> xt = np.array([[0.3], [1.0], [-1.0]]); wt = np.array([[1.0], [-1.0], [0.5]])
        >>> _, gx, gw, _ = infoloss.linear_distill_with_grad(xs, ws, xt, wt, temperature=2.0)
        >>> round(float(gx[0, 1]), 9), round(float(gw[2, 0]), 9)
        (0.002323632, -0.085890086)
        >>> ws4 = np.array([[0.2, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]])
        >>> wt4 = np.array([[1.0], [-1.0], [0.5], [2.0]])
        >>> r = infoloss.linear_distill_with_grad(xs, ws4, xt, wt4, student_bias=np.array([0.1, -0.2, 0.0, 0.3]),
        ...     teacher_bias=np.array([0.0, 0.5, -0.4, 0.2]), teacher_topk=2, add_tail=True, temperature=2.0,
        ...     chunk_size=2, grad_output=0.5)
        >>> round(r.loss, 9), round(float(r.grad_student_bias[1]), 9)
        (0.69359238, -0.068379313)
    """
    opts = _distill_options("linear_distill", options, loss="linear_distill")
    return _linear_distill(student_hidden, student_weight, teacher_hidden, teacher_weight, labels, opts,
                           grad_output, student_bias, teacher_bias, teacher_topk, add_tail)


# ----------------------------------------------------------------------------------------- linear_distill_topk


@c.catalog_options("linear_distill_topk")
def linear_distill_topk(
    student_hidden: ArrayLike,
    student_weight: ArrayLike,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    student_bias: Optional[ArrayLike] = None,
    add_tail: bool = False,
    **options: Any,
) -> Any:
    r"""Fused linear head + :func:`distill_topk`: the student logits ``student_hidden (N, H) · student_weightᵀ
    (V, H) (+ student_bias)``, computed chunk by chunk and never held whole, distilled against a teacher's
    **stored** top-k (what a teacher cache holds): ``topk_indices (N, k)``, its classes per row, and
    ``topk_logprobs (N, k)``, its log-probabilities there at the distillation temperature (``log_softmax(t / T)``
    at the indices). Every option of :func:`distill_topk`, same meaning; ``add_tail`` adds the bucket of the
    remaining mass.

    PyTorch (forward KL, no tail)::

        s = F.linear(xs, ws, bs)
        loss = F.kl_div(F.log_softmax(s / T, 1).gather(1, topk_indices), topk_logprobs, reduction='batchmean',
                        log_target=True) * T**2

    Gradients (wrt the student's hidden states, weight and bias): :func:`linear_distill_topk_with_grad`.
    Float16 is computed in float32.

    Example:
        >>> import numpy as np, infoloss
        >>> xs = np.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]])
        >>> ws = np.array([[0.2, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]])
        >>> idx = np.array([[1, 3], [0, 2], [3, 1]]); lq = np.array([[-0.5, -1.5], [-0.3, -2.0], [-0.9, -1.1]])
        >>> round(infoloss.linear_distill_topk(xs, ws, idx, lq, student_bias=np.array([0.1, -0.2, 0.0, 0.3]),
        ...                                    add_tail=True, temperature=2.0), 9)
        1.703408892
    """
    opts = _distill_options("linear_distill_topk", options, loss="linear_distill_topk")
    return _linear_distill_topk(student_hidden, student_weight, topk_indices, topk_logprobs, labels, opts, None,
                                student_bias, add_tail).loss


@c.catalog_options("linear_distill_topk")
def linear_distill_topk_with_grad(
    student_hidden: ArrayLike,
    student_weight: ArrayLike,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    student_bias: Optional[ArrayLike] = None,
    add_tail: bool = False,
    grad_output: Optional[ArrayLike] = None,
    **options: Any,
) -> LinearDistillResult:
    """:func:`linear_distill_topk` and its gradients: a :class:`LinearDistillResult` ``(loss,
    grad_student_hidden, grad_student_weight, grad_student_bias)``, as :func:`linear_distill_with_grad`'s (``G``:
    :func:`distill_topk_with_grad`'s gradient on the student logits). The stored teacher gets none.

    Example:
        >>> import numpy as np, infoloss
        >>> xs = np.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]])
        >>> ws = np.array([[0.2, -0.1], [0.4, 0.3], [-0.3, 0.8], [0.1, 0.1]])
        >>> idx = np.array([[1, 3], [0, 2], [3, 1]]); lq = np.array([[-0.5, -1.5], [-0.3, -2.0], [-0.9, -1.1]])
        >>> r = infoloss.linear_distill_topk_with_grad(xs, ws, idx, lq, student_bias=np.array([0.1, -0.2, 0.0, 0.3]),
        ...     add_tail=True, temperature=2.0, chunk_size=2, grad_output=0.5)
        >>> round(r.loss, 9), round(float(r.grad_student_bias[1]), 9)
        (1.703408892, -0.108064792)
    """
    opts = _distill_options("linear_distill_topk", options, loss="linear_distill_topk")
    return _linear_distill_topk(student_hidden, student_weight, topk_indices, topk_logprobs, labels, opts,
                                grad_output, student_bias, add_tail)
