"""SciPy-compatible information measures for NumPy arrays.

Integer and boolean inputs are converted to float64 as SciPy does; float16/32/64 are computed in their own
precision (SciPy computes float16 in float32). Results of 0 dimensions are NumPy scalars, as in SciPy.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _common as c
from ._common import kernels as _C

ArrayLike = Any


def _arr(x: Any, op: str, name: str) -> np.ndarray:
    a = c.asarray(x, op, name)
    if c.is_float(a.dtype):
        return c.ready(a, op, name)
    if a.dtype.kind in "iub":
        return a.astype(np.float64)
    raise TypeError(
        f"{op}: {name} must be real-valued (float16, float32, float64, ml_dtypes.bfloat16, integer or bool), "
        f"got dtype {a.dtype}"
    )


def _weak(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _common_dtype(op: str, pairs) -> np.dtype:
    strong = [c.native(a.dtype) for orig, a in pairs if not _weak(orig)]
    dt = np.result_type(*strong) if strong else np.dtype(np.float64)
    if not c.is_float(dt):
        raise TypeError(f"{op}: unsupported dtype {dt} (float16, float32, float64 or ml_dtypes.bfloat16 only)")
    return dt


def _axis(axis: Any, op: str) -> Optional[int]:
    return None if axis is None else c.as_int(axis, op, "axis")


def _nan_policy(nan_policy: Any, op: str, *arrays: Optional[np.ndarray]) -> None:
    if nan_policy == "propagate":
        return
    if nan_policy == "raise":
        for a in arrays:
            if a is not None and np.isnan(a).any():
                raise ValueError("The input contains nan values")
        return
    if nan_policy == "omit":
        raise NotImplementedError(f"{op}: nan_policy='omit' is not supported; use 'propagate' or 'raise'")
    raise ValueError(f"nan_policy must be one of {{'propagate', 'raise', 'omit'}}, got {nan_policy!r}")


# ---------------------------------------------------------------------------------------------- elementwise


def _pointwise(
    op: str, args: Tuple[Any, ...], grad_output: Any = None, *, grad: bool = False, target_grad: bool = False
) -> Tuple[Any, Optional[np.ndarray], Optional[np.ndarray]]:
    """``(output, grad_x, grad_y)`` of the elementwise measure ``op`` of ``args`` (its kernel's arguments): the
    kernel given an upstream gradient returns the gradient wrt ``x`` (and ``y``, for ``rel_entr``). The gradients
    are ``None`` without ``grad``."""
    kernel = getattr(_C, op)
    out = kernel(*args)
    if not grad:
        return c.scalar_or_array(out), None, None
    g = kernel(*args, c.upstream(grad_output, out, op))
    gx, gy = g if isinstance(g, tuple) else (g, None)
    return c.scalar_or_array(out), gx, gy


@c.public()
def entr(x: ArrayLike) -> c.Call:
    r"""``−x·ln x`` elementwise, as ``scipy.special.entr``: 0 at ``x = 0``, ``-inf`` for ``x < 0``.

    Example:
        >>> import infoloss
        >>> round(float(infoloss.entr(0.5)), 6)
        0.346574
    """
    a = c.ready(_arr(x, "entr", "x"), "entr", "x")
    return functools.partial(_pointwise, "entr", (a,))


entr_with_grad = c.with_grad(
    entr,
    """:func:`entr` and its gradient ``g·(−ln x − 1)``: ``(output, grad_x)`` (``grad_output`` defaults to ones).

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.entr_with_grad(np.array([1.0]))[1].tolist()
        [-1.0]
    """,
)


def _rel_entr_args(x: Any, y: Any) -> Tuple[np.ndarray, np.ndarray]:
    op = "rel_entr"
    a, b = _arr(x, op, "x"), _arr(y, op, "y")
    dt = _common_dtype(op, [(x, a), (y, b)])
    return c.cast(a, dt, op, "x"), c.cast(b, dt, op, "y")


@c.public()
def rel_entr(x: ArrayLike, y: ArrayLike) -> c.Call:
    r"""``x·ln(x/y)`` elementwise with SciPy's cases, as ``scipy.special.rel_entr`` (``x`` and ``y`` broadcast).

    ``0`` where ``x = 0, y ≥ 0``; ``+inf`` where ``x > 0, y = 0`` or either is negative.

    Example:
        >>> import infoloss
        >>> round(float(infoloss.rel_entr(1.0, 2.0)), 6)
        -0.693147
    """
    return functools.partial(_pointwise, "rel_entr", _rel_entr_args(x, y))


rel_entr_with_grad = c.with_grad(
    rel_entr,
    """:func:`rel_entr` and its gradients: ``(output, grad_x)`` or ``(output, grad_x, grad_y)``.

    ``grad_x = g·(ln(x/y) + 1)``, ``grad_y = −g·x/y``, each in its argument's shape.

    Example:
        >>> import numpy as np, infoloss
        >>> out, gx, gy = infoloss.rel_entr_with_grad(np.array([1.0]), np.array([2.0]), return_target_grad=True)
        >>> gy.tolist()
        [-0.5]
    """,
    target_grad=True,
)


@c.public()
def self_information(p: ArrayLike, base: Optional[float] = None) -> c.Call:
    r"""Self-information ``I(p) = −log_base p`` elementwise (nats by default, bits with ``base=2``).

    Example:
        >>> import infoloss
        >>> float(infoloss.self_information(0.25, base=2))
        2.0
    """
    op = "self_information"
    a = c.ready(_arr(p, op, "p"), op, "p")
    return functools.partial(_pointwise, op, (a, c.as_base(base, op)))


self_information_with_grad = c.with_grad(
    self_information,
    """:func:`self_information` and its gradient ``−g/(p·ln base)``: ``(output, grad_p)``.

    Example:
        >>> import numpy as np, infoloss
        >>> infoloss.self_information_with_grad(np.array([0.5]))[1].tolist()
        [-2.0]
    """,
)


# ----------------------------------------------------------------------------------------------- reductions


def _dist_args(op: str, p: Any, q: Any, pn: str, qn: str, axis: Any):
    """Converts, promotes and broadcasts two distributions; ``axis=None`` flattens them (as SciPy)."""
    a = _arr(p, op, pn)
    b = None if q is None else _arr(q, op, qn)
    dt = _common_dtype(op, [(p, a)] + ([] if b is None else [(q, b)]))
    a = a.astype(dt, copy=False)
    if b is not None:
        b = b.astype(dt, copy=False)
        a, b = np.broadcast_arrays(a, b)
    shape = a.shape
    ax = _axis(axis, op)
    if ax is None:
        a = a.reshape(-1)
        b = None if b is None else b.reshape(-1)
        ax = 0
    return c.ready(a, op, pn), (None if b is None else c.ready(b, op, qn)), ax, shape


def _keep(out: np.ndarray, axis: Any, shape: Tuple[int, ...], keepdims: bool) -> np.ndarray:
    if not keepdims:
        return out
    if axis is None:
        return out.reshape((1,) * len(shape))
    n = max(len(shape), 1)
    return np.expand_dims(out, axis % n) if len(shape) else out


def _measure(
    op: str,
    p: Any,
    q: Any,
    names: Tuple[str, str],
    base: Any,
    axis: Any,
    keepdims: Any,
    extra: Dict[str, Any],
    grad_output: Any = None,
    *,
    nan_policy: Optional[str] = None,
    grad: bool = False,
    target_grad: bool = False,
) -> Tuple[Any, Optional[np.ndarray], Optional[np.ndarray]]:
    """The shared body of :func:`entropy`, :func:`shannon_cross_entropy` and :func:`jensenshannon` (``op``):
    ``(result, grad_p, grad_q)``, ``grad_p`` ``None`` without ``grad``, ``grad_q`` without ``target_grad`` (or
    ``q``). SciPy's ``keepdims`` and ``nan_policy`` are applied here, around the core's measure."""
    if nan_policy is not None:
        _nan_policy(nan_policy, op)
    a, b, ax, shape = _dist_args(op, p, q, *names, axis)
    if nan_policy is not None:
        _nan_policy(nan_policy, op, a, b)
    given = {"base": c.as_base(base, op), "axis": ax}
    if op == "jensenshannon":
        given["keepdims"] = False
    opts = c.option_tuple(op, extra, **given)
    kernel = getattr(_C, op)
    out = kernel(a, b, opts)
    res = c.scalar_or_array(_keep(out, axis, shape, bool(keepdims)))
    if not grad:
        return res, None, None
    go = c.upstream(grad_output, out, op)
    if go.shape != out.shape and go.size == out.size:  # keepdims-shaped upstream gradient
        go = go.reshape(out.shape)
    gp, gq = kernel(a, b, opts, go)
    gp = c.unbroadcast(gp.reshape(shape), np.shape(np.asarray(p)))
    if gq is None or not target_grad:
        return res, gp, None
    return res, gp, c.unbroadcast(gq.reshape(shape), np.shape(np.asarray(q)))


@c.public("entropy")
def entropy(
    pk: ArrayLike,
    qk: Optional[ArrayLike] = None,
    base: Optional[float] = None,
    axis: Optional[int] = 0,
    *,
    nan_policy: str = "propagate",
    keepdims: bool = False,
    **options: Any,
) -> c.Call:
    r"""Shannon entropy, or relative entropy (KL) when ``qk`` is given, as ``scipy.stats.entropy``.

    ``H = −Σ p̂·log p̂`` or ``D = Σ p̂·log(p̂/q̂)`` along ``axis``, after normalizing ``p̂ = pk/Σpk`` (and
    ``q̂``); ``base`` changes the unit (2 gives bits); ``axis=None`` flattens. ``nan_policy`` may be
    ``'propagate'`` or ``'raise'``.

    Example:
        >>> import infoloss
        >>> round(float(infoloss.entropy([0.5, 0.5], base=2)), 6)
        1.0
    """
    return functools.partial(_measure, "entropy", pk, qk, ("pk", "qk"), base, axis, keepdims, options,
                             nan_policy=nan_policy)


entropy_with_grad = c.with_grad(
    entropy,
    """:func:`entropy` and its gradients through the normalization: ``(H, grad_pk)`` or ``(H, grad_pk, grad_qk)``.

    ``grad_qk`` is ``None`` when ``qk`` is not given.

    Example:
        >>> import numpy as np, infoloss
        >>> h, g = infoloss.entropy_with_grad(np.array([0.5, 0.5]))
        >>> g.tolist()
        [0.0, 0.0]
    """,
    target_grad=True,
)


@c.public("shannon_cross_entropy")
def shannon_cross_entropy(
    pk: ArrayLike,
    qk: ArrayLike,
    base: Optional[float] = None,
    axis: Optional[int] = 0,
    *,
    keepdims: bool = False,
    **options: Any,
) -> c.Call:
    r"""Cross-entropy of two distributions ``H(p, q) = −Σ p̂·log q̂`` along ``axis`` (normalized like :func:`entropy`).

    Equals ``entropy(pk) + entropy(pk, qk)``.

    Example:
        >>> import infoloss
        >>> round(float(infoloss.shannon_cross_entropy([0.0, 0.0, 1.0], [0.3, 0.3, 0.4])), 6)
        0.916291
    """
    return functools.partial(_measure, "shannon_cross_entropy", pk, qk, ("pk", "qk"), base, axis, keepdims, options)


shannon_cross_entropy_with_grad = c.with_grad(
    shannon_cross_entropy,
    """:func:`shannon_cross_entropy` and its gradients through the normalization: ``(H, grad_pk[, grad_qk])``.

    Example:
        >>> import numpy as np, infoloss
        >>> h, gp, gq = infoloss.shannon_cross_entropy_with_grad(np.array([1.0, 1.0]), np.array([1.0, 1.0]),
        ...                                                      return_target_grad=True)
        >>> gq.tolist()
        [0.0, 0.0]
    """,
    target_grad=True,
)


@c.public("jensenshannon")
def jensenshannon(
    p: ArrayLike,
    q: ArrayLike,
    base: Optional[float] = None,
    axis: Optional[int] = 0,
    keepdims: bool = False,
    **options: Any,
) -> c.Call:
    r"""Jensen–Shannon **distance** (the square root of the divergence), as ``scipy.spatial.distance.jensenshannon``.

    ``sqrt((KL(p̂‖m) + KL(q̂‖m))/2)`` with ``m = (p̂ + q̂)/2``, after normalizing along ``axis``;
    ``base`` changes the unit.

    Example:
        >>> import infoloss
        >>> round(float(infoloss.jensenshannon([1.0, 0.0], [0.0, 1.0], base=2)), 6)
        1.0
    """
    return functools.partial(_measure, "jensenshannon", p, q, ("p", "q"), base, axis, keepdims, options)


jensenshannon_with_grad = c.with_grad(
    jensenshannon,
    """:func:`jensenshannon` and its gradients: ``(js, grad_p)`` or ``(js, grad_p, grad_q)``.

    Example:
        >>> import numpy as np, infoloss
        >>> js, gp = infoloss.jensenshannon_with_grad(np.array([0.25, 0.75]), np.array([0.75, 0.25]))
        >>> gp.shape
        (2,)
    """,
    target_grad=True,
)
