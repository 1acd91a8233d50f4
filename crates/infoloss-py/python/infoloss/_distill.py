"""Knowledge distillation (dense and top-k teacher) and the UDA consistency loss, for NumPy arrays.

The option names are those of the Rust core (``infoloss::distill::DistillOptions``,
``infoloss::uda::UdaOptions``). Each public function validates its options, converts the arrays and calls a private
``_<name>`` wrapper, which ``infoloss.torch`` reuses.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from . import _common as c
from ._common import kernels as _C  # bfloat16-aware (see _common._Kernels)

ArrayLike = Any

DIVERGENCES = c.choices("distill", "divergence")
DISTILL_REDUCTIONS = ("batchmean", "mean", "sum", "none")


def _choice(v: Any, allowed, op: str, name: str) -> str:
    if not isinstance(v, str):
        options = ", ".join(map(repr, allowed))
        raise TypeError(f"{op}: {name} must be a string, one of {options}; got {type(v).__name__}")
    if v not in allowed:
        raise ValueError(f"{op}: invalid {name} = {v!r}: expected one of {', '.join(map(repr, allowed))}")
    return v


def _checked(op: str, extra: Dict[str, Any], choices: Dict[str, Tuple[str, ...]]) -> Dict[str, Any]:
    """``extra`` with its choice options checked against ``choices`` (option -> the spellings, in the order the
    error message lists them)."""
    return {k: _choice(v, choices[k], op, k) if k in choices else v for k, v in extra.items()}


def _distill_options(op: str, extra: Dict[str, Any], *, loss: str = "distill") -> tuple:
    """The options as the extension takes them: one tuple in the catalog's order of ``loss``'s options
    (``DistillOptions``, or ``LinearDistillOptions``), types and choices validated (the core checks the values).
    ``extra``: the catalog options the function takes by name."""
    extra = _checked(op, extra, {"divergence": DIVERGENCES, "reduction": DISTILL_REDUCTIONS})
    return c.option_tuple(loss, extra, op=op)


def _labels(labels: Any, op: str) -> Optional[np.ndarray]:
    return None if labels is None else c.index_target(labels, op, "labels")


def _student_teacher(op: str, student_logits: ArrayLike, teacher: ArrayLike, name: str,
                     grad_output: Optional[ArrayLike]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """``(student, student, teacher, grad_output)``: the student logits as given, then the student and the teacher
    array ``name`` in their promoted dtype, and the upstream gradient in that dtype."""
    s = c.float_input(student_logits, op, "student_logits")
    t = c.float_input(teacher, op, name)
    dt = c.promote(op, s, (teacher, t))
    return s, c.cast(s, dt, op, "student_logits"), c.cast(t, dt, op, name), c.grad_output_array(grad_output, dt, op)


# ---------------------------------------------------------------------------------------------------- distill


def _distill(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: Optional[ArrayLike],
    options: tuple,
    grad_output: Optional[ArrayLike] = None,
    *,
    loss: bool = True,
    grad: bool = False,
):
    """``(loss, grad_student, None)`` with the options already validated by :func:`_distill_options`."""
    op = "distill"
    s, sc, tc, go = _student_teacher(op, student_logits, teacher_logits, "teacher_logits", grad_output)
    lo, gi, _ = _C.distill(sc, tc, _labels(labels, op), options, go, loss, grad)
    return lo, c.cast_grad(gi, s.dtype), None


@c.public("distill")
def distill(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: Optional[ArrayLike] = None,
    **options: Any,
) -> c.Call:
    r"""Knowledge-distillation loss between student and teacher logits, both ``(rows, classes)``.

    With ``p = softmax(student / T)``, ``q = softmax(teacher / T)`` (``T = temperature``) the row loss is
    ``alpha·c·D(q, p) + (1 − alpha)·cross_entropy(student, labels)``, ``c = T²`` if ``t2_scaling`` (Hinton's
    factor) else 1. ``divergence``:

    - ``'forward_kl'`` ``KL(q‖p)``: ``F.kl_div(lp, lq, reduction='none', log_target=True).sum(1)``;
    - ``'reverse_kl'`` ``KL(p‖q)``: ``F.kl_div(lq, lp, reduction='none', log_target=True).sum(1)``;
    - ``'jsd'``: TRL's generalized Jensen–Shannon divergence ``β·KL(q‖m) + (1−β)·KL(p‖m)``,
      ``m = β·q + (1−β)·p`` (``beta = 0`` is forward KL, ``1`` reverse KL, ``0.5`` the ordinary JSD);
    - ``'tvd'``: total variation ``½·Σ|p − q|``

    (``lp = F.log_softmax(student / T, 1)``, ``lq = F.log_softmax(teacher / T, 1)``). ``labels`` (``(rows,)``,
    integers) are needed when ``alpha < 1``; rows labelled ``ignore_index`` are dropped from both terms.
    ``reduction``: ``'batchmean'`` (sum over kept rows ÷ their number ``n``), ``'mean'`` (the soft part also
    ÷ classes, as ``F.kl_div``'s ``'mean'``), ``'sum'``, ``'none'`` (per row, 0 at ignored rows).
    ``normalizer`` replaces ``n`` in ``'batchmean'``/``'mean'`` (e.g. a global token count). With no kept rows
    ``'batchmean'``/``'mean'`` give NaN.

    The forward-KL, batchmean, no-ignored-rows loss equals::

        alpha * F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction='batchmean',
                         log_target=True) * T**2 + (1 - alpha) * F.cross_entropy(s, labels)

    The gradient (:func:`distill_with_grad`) is taken wrt the student only; for forward KL it is
    ``alpha·c·(p − q)/(T·n) + (1 − alpha)·(softmax(s) − onehot(y))/n``. Computed in float64 whatever the
    dtype, rounded once. Returns a float (an array of shape ``(rows,)`` for ``'none'``).

    Example:
        >>> import numpy as np, infoloss
        >>> s = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.2]])
        >>> t = np.array([[0.5, 1.5, 2.0], [0.0, -0.5, 3.0]])
        >>> round(infoloss.distill(s, t, temperature=2.0), 9)
        0.273417042
        >>> round(infoloss.distill(s, t, np.array([1, -100]), temperature=2.0, alpha=0.5), 9)
        0.461389689
    """
    opts = _distill_options("distill", options)
    return functools.partial(_distill, student_logits, teacher_logits, labels, opts)


distill_with_grad = c.with_grad(
    distill,
    """:func:`distill` and its gradient wrt the student logits: ``(loss, grad_student)``, ``grad_student`` of
    shape ``(rows, classes)`` in the student's dtype (zero in ignored rows).

    ``grad_output`` is the upstream gradient: a scalar for the reduced losses, ``(rows,)`` (or a scalar for
    every row) for ``'none'``; default 1. The teacher is a constant (no gradient).

    Example:
        >>> import numpy as np, infoloss
        >>> s = np.array([[1.0, 2.0, 0.5]]); t = np.array([[0.5, 1.5, 2.0]])
        >>> loss, g = infoloss.distill_with_grad(s, t)
        >>> np.round(g, 6).tolist()  # softmax(s) − softmax(t)
        [[0.109272, 0.297033, -0.406305]]
    """,
)


# ----------------------------------------------------------------------------------------------- distill_topk


def _distill_topk(
    student_logits: ArrayLike,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike],
    add_tail: Any,
    options: tuple,
    grad_output: Optional[ArrayLike] = None,
    *,
    loss: bool = True,
    grad: bool = False,
):
    op = "distill_topk"
    s, sc, lqc, go = _student_teacher(op, student_logits, topk_logprobs, "topk_logprobs", grad_output)
    idx = c.index_target(topk_indices, op, "topk_indices")
    lo, gi, _ = _C.distill_topk(sc, idx, lqc, _labels(labels, op), bool(add_tail), options, go, loss, grad)
    return lo, c.cast_grad(gi, s.dtype), None


@c.public("distill")
def distill_topk(
    student_logits: ArrayLike,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    add_tail: bool = False,
    **options: Any,
) -> c.Call:
    r""":func:`distill` against a sparse top-k teacher stored offline (e.g. vLLM ``logprobs``).

    ``topk_indices`` ``(rows, k)``: the teacher's top-k classes per row (integers in ``[0, classes)``, no repeats
    within a row); ``topk_logprobs`` ``(rows, k)``: the teacher's log-probabilities there, **already at the
    distillation temperature** (used as given; only the student is divided by ``temperature``). The divergence
    is computed over the k buckets; ``add_tail=True`` adds one bucket with the missing mass on both sides
    (teacher ``1 − Σ q_j``, student the softmax mass outside the top-k; TRL's ``loss_add_tail``). Without the
    tail the student mass outside the top-k is not compared. Every other option is :func:`distill`'s.

    Forward KL without tail equals ``F.kl_div(lp.gather(1, idx), logprobs, reduction='batchmean',
    log_target=True) * T**2`` with ``lp = F.log_softmax(s / T, 1)``; with ``k = classes`` and no tail it equals
    the dense :func:`distill`.

    Example:
        >>> import numpy as np, infoloss
        >>> s = np.array([[1.0, 2.0, 0.5, -1.0]])
        >>> round(infoloss.distill_topk(s, np.array([[2, 1]]), np.array([[-0.4, -1.5]]), add_tail=True), 9)
        0.752284139
    """
    opts = _distill_options("distill_topk", options)
    return functools.partial(_distill_topk, student_logits, topk_indices, topk_logprobs, labels, add_tail, opts)


distill_topk_with_grad = c.with_grad(
    distill_topk,
    """:func:`distill_topk` and its gradient wrt the (dense) student logits: ``(loss, grad_student)``.

    With the tail bucket the classes outside the top-k share the tail's gradient in proportion to their
    probability. ``grad_output`` as in :func:`distill_with_grad`.

    Example:
        >>> import numpy as np, infoloss
        >>> s = np.array([[1.0, 2.0, 0.5, -1.0]])
        >>> _, g = infoloss.distill_topk_with_grad(s, np.array([[2, 1]]), np.array([[-0.4, -1.5]]), add_tail=True)
        >>> round(float(g[0, 2]), 9), abs(float(g.sum())) < 1e-15
        (-0.53433113, True)
    """,
)


@c.catalog_options("distill")
def distill_with_grad_in_place(
    student_logits: np.ndarray,
    teacher_logits: ArrayLike,
    labels: Optional[ArrayLike] = None,
    **options: Any,
) -> Any:
    """:func:`distill_with_grad` for the training path: the gradient wrt the student logits is written **over**
    ``student_logits`` and only the loss is returned (a float, or ``(rows,)`` for ``'none'``).

    Loss and gradient equal :func:`distill_with_grad`'s bit for bit (upstream gradient 1). ``student_logits``
    must be the caller's own writeable float16/32/64 NumPy array of shape ``(rows, classes)`` (nothing is
    converted: a copy would receive the gradient instead); the teacher is cast to its dtype (no promotion).
    Operands sharing memory with the student are refused; on any error the student is left unchanged. Rust:
    ``infoloss::distill_with_grad_in_place``.

    Example:
        >>> import numpy as np, infoloss
        >>> s = np.array([[1.0, 2.0, 0.5]]); t = np.array([[0.5, 1.5, 2.0]])
        >>> loss = infoloss.distill_with_grad_in_place(s, t)
        >>> np.round(s, 6).tolist()  # softmax(s) − softmax(t), written over s
        [[0.109272, 0.297033, -0.406305]]
    """
    op = "distill_with_grad_in_place"
    opts = _distill_options(op, options)
    s = c.in_place_logits(student_logits, op, "student_logits")
    t = c.cast(c.float_input(teacher_logits, op, "teacher_logits"), s.dtype, op, "teacher_logits")
    y = _labels(labels, op)
    c.not_sharing(s, op, "student_logits", teacher_logits=t, labels=y)
    return _C.distill_in_place(s, t, y, opts)


@c.catalog_options("distill")
def distill_topk_with_grad_in_place(
    student_logits: np.ndarray,
    topk_indices: ArrayLike,
    topk_logprobs: ArrayLike,
    labels: Optional[ArrayLike] = None,
    *,
    add_tail: bool = False,
    **options: Any,
) -> Any:
    """:func:`distill_topk_with_grad` for the training path: the gradient wrt the dense student logits is written
    **over** ``student_logits`` and only the loss is returned.

    The rules of :func:`distill_with_grad_in_place` apply (the caller's own writeable float array, no
    conversion, ``topk_logprobs`` cast to its dtype, no shared memory, unchanged on error); the result equals
    :func:`distill_topk_with_grad`'s bit for bit. Rust: ``infoloss::distill_topk_with_grad_in_place``.

    Example:
        >>> import numpy as np, infoloss
        >>> s = np.array([[1.0, 2.0, 0.5, -1.0]])
        >>> loss = infoloss.distill_topk_with_grad_in_place(s, np.array([[2, 1]]), np.array([[-0.4, -1.5]]),
        ...                                                 add_tail=True)
        >>> round(loss, 9), round(float(s[0, 2]), 9)
        (0.752284139, -0.53433113)
    """
    op = "distill_topk_with_grad_in_place"
    opts = _distill_options(op, options)
    s = c.in_place_logits(student_logits, op, "student_logits")
    lq = c.cast(c.float_input(topk_logprobs, op, "topk_logprobs"), s.dtype, op, "topk_logprobs")
    idx = c.index_target(topk_indices, op, "topk_indices")
    y = _labels(labels, op)
    c.not_sharing(s, op, "student_logits", topk_indices=idx, topk_logprobs=lq, labels=y)
    return _C.distill_topk_in_place(s, idx, lq, y, bool(add_tail), opts)


# -------------------------------------------------------------------------------------------- uda_consistency


class UdaResult(NamedTuple):
    """What :func:`uda_consistency` returns (a named tuple: unpack it or use the fields).

    Fields: ``loss`` (float), ``grad_aug`` (``(rows, classes)``, the gradient of ``loss`` wrt the augmented
    logits, zero in masked rows), ``mask`` (``(rows,)`` float 0/1 confidence mask), ``kept`` (int, ``Σ mask``),
    ``row_kl`` (``(rows,)`` per-row KL before masking).

    Example:
        >>> import numpy as np, infoloss
        >>> r = infoloss.uda_consistency(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))
        >>> r.loss, r.kept, r.mask.tolist()
        (0.0, 1, [1.0])
    """

    loss: float
    grad_aug: np.ndarray
    mask: np.ndarray
    kept: int
    row_kl: np.ndarray


class UdaLossResult(NamedTuple):
    """What :func:`uda_consistency_loss` returns: :class:`UdaResult` without ``grad_aug``.

    Example:
        >>> import numpy as np, infoloss
        >>> r = infoloss.uda_consistency_loss(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))
        >>> r.loss, r.kept, r.row_kl.tolist()
        (0.0, 1, [0.0])
    """

    loss: float
    mask: np.ndarray
    kept: int
    row_kl: np.ndarray


SHARPEN = c.choices("uda_consistency", "sharpen")
UDA_NORMALIZE = c.choices("uda_consistency", "normalize")


def _uda_options(extra: Dict[str, Any]) -> tuple:
    """``UdaOptions`` in the catalog's order, the choices validated (the core checks the values)."""
    op = "uda_consistency"
    return c.option_tuple(op, _checked(op, extra, {"sharpen": SHARPEN, "normalize": UDA_NORMALIZE}))


def _uda_inputs(ori_logits: ArrayLike, aug_logits: ArrayLike) -> tuple:
    """``(aug array, compute dtype, ori, aug in that dtype)`` of the UDA functions."""
    op = "uda_consistency"
    o = c.float_input(ori_logits, op, "ori_logits")
    a = c.float_input(aug_logits, op, "aug_logits")
    dt = c.promote(op, a, (ori_logits, o))
    return a, dt, c.cast(o, dt, op, "ori_logits"), c.cast(a, dt, op, "aug_logits")


def _uda(ori_logits: ArrayLike, aug_logits: ArrayLike, options: tuple) -> UdaResult:
    a, _, oc, ac = _uda_inputs(ori_logits, aug_logits)
    loss, grad, mask, kept, row_kl = _C.uda_consistency(oc, ac, options)
    return UdaResult(loss, grad.astype(a.dtype, copy=False), mask, int(kept), row_kl)


def _uda_loss(ori_logits: ArrayLike, aug_logits: ArrayLike, options: tuple) -> UdaLossResult:
    _, _, oc, ac = _uda_inputs(ori_logits, aug_logits)
    loss, mask, kept, row_kl = _C.uda_consistency(oc, ac, options, want_grad=False)
    return UdaLossResult(loss, mask, int(kept), row_kl)


def _uda_backward(ori_logits: ArrayLike, aug_logits: ArrayLike, grad_output: Any, options: tuple) -> np.ndarray:
    a, dt, oc, ac = _uda_inputs(ori_logits, aug_logits)
    go = c.grad_output_array(grad_output, dt, "uda_consistency")
    return _C.uda_consistency_backward(oc, ac, go, options).astype(a.dtype, copy=False)


@c.catalog_options("uda_consistency")
def uda_consistency(
    ori_logits: ArrayLike,
    aug_logits: ArrayLike,
    **options: Any,
) -> UdaResult:
    r"""The UDA consistency loss (Xie et al. 2019) between original and augmented logits, both ``(rows, classes)``,
    with its gradient wrt the augmented logits; returns a :class:`UdaResult` ``(loss, grad_aug, mask, kept,
    row_kl)``.

    ``target = softmax(ori / T_o)`` (a constant), ``row_kl = KL(target ‖ softmax(aug / T_x))``, ``mask = 1`` where
    ``max softmax(ori) > confidence_threshold`` (strictly; every row without a threshold), and
    ``loss = Σ row_kl·mask / max(Σ mask, 1)`` (``normalize='kept_rows'``) or ``/ rows`` (``'all_rows'``, Google's
    ``tf.reduce_mean``). ``sharpen='target'`` puts the temperature on the original side (``T_o = T``, ``T_x = 1``:
    Google's UDA), ``'augmented'`` on the augmented side (``T_o = 1``, ``T_x = T``: the PyTorch port). Gradient:
    ``mask/denominator·(softmax(aug/T_x) − target)/T_x``. For the loss alone (no gradient computed or allocated)
    call :func:`uda_consistency_loss`. PyTorch equivalent of the default, ``sharpen='target'``::

        with torch.no_grad():
            ori_prob = F.softmax(ori_logits, dim=-1)
            mask = (ori_prob.max(dim=-1)[0] > thresh).float()    # torch.ones(rows) without a threshold
            target = F.softmax(ori_logits / T, dim=-1)
        aug_log_prob = F.log_softmax(aug_logits, dim=-1)
        row_kl = torch.sum(nn.KLDivLoss(reduction='none')(aug_log_prob, target), dim=-1)
        loss = torch.sum(row_kl * mask) / torch.max(torch.sum(mask), torch.tensor(1.))   # 'all_rows': / rows

    and of ``sharpen='augmented'`` (the PyTorch port; the target is untempered, the student divided by ``T``)::

        with torch.no_grad():
            ori_prob = F.softmax(ori_logits, dim=-1)
            mask = (ori_prob.max(dim=-1)[0] > thresh).float()
        aug_log_prob = F.log_softmax(aug_logits / T, dim=-1)
        row_kl = torch.sum(nn.KLDivLoss(reduction='none')(aug_log_prob, ori_prob), dim=-1)
        loss = torch.sum(row_kl * mask) / torch.max(torch.sum(mask), torch.tensor(1.))

    Example:
        >>> import numpy as np, infoloss
        >>> ori = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.0]])
        >>> aug = np.array([[1.0, 1.0, -0.5], [0.3, -0.2, 0.4]])
        >>> r = infoloss.uda_consistency(ori, aug, temperature=0.4, confidence_threshold=0.5)
        >>> round(r.loss, 9), r.mask.tolist(), r.kept
        (0.685771385, [1.0, 0.0], 1)
        >>> r.grad_aug[1].tolist()
        [0.0, 0.0, 0.0]
    """
    opts = _uda_options(options)
    return _uda(ori_logits, aug_logits, opts)


@c.catalog_options("uda_consistency")
def uda_consistency_loss(
    ori_logits: ArrayLike,
    aug_logits: ArrayLike,
    **options: Any,
) -> UdaLossResult:
    r"""The loss of :func:`uda_consistency` without its gradient (evaluation, logging, a forward pass whose
    backward comes later from :func:`uda_consistency_backward`): returns a :class:`UdaLossResult` ``(loss, mask,
    kept, row_kl)``, the same values as :func:`uda_consistency`'s, and allocates no ``(rows, classes)`` array.
    Options and the PyTorch equivalent (under ``torch.no_grad()``) as in :func:`uda_consistency`.

    Example:
        >>> import numpy as np, infoloss
        >>> ori = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.0]])
        >>> aug = np.array([[1.0, 1.0, -0.5], [0.3, -0.2, 0.4]])
        >>> r = infoloss.uda_consistency_loss(ori, aug, temperature=0.4, confidence_threshold=0.5)
        >>> round(r.loss, 9), r.mask.tolist(), r.kept
        (0.685771385, [1.0, 0.0], 1)
    """
    opts = _uda_options(options)
    return _uda_loss(ori_logits, aug_logits, opts)


@c.catalog_options("uda_consistency")
def uda_consistency_backward(
    ori_logits: ArrayLike,
    aug_logits: ArrayLike,
    grad_output: ArrayLike,
    **options: Any,
) -> np.ndarray:
    r"""The gradient of ``grad_output · uda_consistency(ori_logits, aug_logits).loss`` wrt ``aug_logits``
    (``(rows, classes)``), for a scalar upstream gradient ``grad_output`` (a number or a 0-d array) — what
    ``loss.backward(grad_output)`` leaves in ``aug_logits.grad`` in PyTorch.

    ``grad = grad_output · mask/denominator · (softmax(aug/T_x) − target)/T_x`` (see :func:`uda_consistency`). The
    upstream gradient enters the float64 row coefficient, so a float32 result is rounded once (multiplying
    ``uda_consistency(...).grad_aug`` by ``grad_output`` rounds twice). Options as in :func:`uda_consistency`.

    Example:
        >>> import numpy as np, infoloss
        >>> ori = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.0]])
        >>> aug = np.array([[1.0, 1.0, -0.5], [0.3, -0.2, 0.4]])
        >>> g = infoloss.uda_consistency_backward(ori, aug, -2.5, temperature=0.4, confidence_threshold=0.5)
        >>> round(float(g[0, 0]), 9), g[1].tolist()
        (1.316696845, [0.0, 0.0, 0.0])
    """
    opts = _uda_options(options)
    return _uda_backward(ori_logits, aug_logits, grad_output, opts)
