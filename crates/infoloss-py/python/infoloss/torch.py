"""PyTorch drop-ins for CPU tensors: swap ``F.cross_entropy`` for ``infoloss.torch.cross_entropy`` and
``loss.backward()``, ``torch.compile``, autocast and ``torch.set_num_threads`` work as with torch's own losses.

Every ``torch.nn.functional`` name has its signature, defaults and warnings; :func:`linear_cross_entropy` has
``F.linear_cross_entropy``'s (plus the z-loss, softcap and chunk size). The distillation and UDA losses
(:func:`distill`, :func:`distill_topk`, :func:`uda_consistency`, :func:`linear_distill`) and
:func:`cross_entropy_extras` take the NumPy API's arguments; their gradient flows to the student (the augmented
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
``cross_entropy_extras``, ``linear_cross_entropy`` and ``linear_distill`` run in float32. (``F.linear_cross_entropy``
computes its logits in the autocast dtype and the loss in float32; the fused kernel computes both in float32, so it
is the more precise of the two.)

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

from dataclasses import dataclass
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

try:
    import torch
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "infoloss.torch needs PyTorch, which is not installed (pip install torch); "
        "the NumPy API in `infoloss` works without it"
    ) from _e

import numpy as np

from . import _common as c
from . import _distill as _D
from . import _functional as _F
from . import _infoloss as _C
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
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
    "uda_consistency",
]

_SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# ------------------------------------------------------------------------------------------ tensor <-> NumPy


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


_TORCH_DTYPE = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                np.dtype(np.float64): torch.float64}


def _out(v: Any, dtype: torch.dtype, np_dtype: Any = None, inputs: Sequence[Any] = ()) -> torch.Tensor:
    """A kernel's result as a contiguous tensor of ``dtype`` that shares no memory with the operator's inputs
    ``inputs`` (what the fake implementations promise; the kernels' arrays are fresh, so this rarely copies).

    A Python float (a reduced loss) is first made a tensor of the computation's dtype ``np_dtype`` (it holds a
    value of that dtype), then cast, so a bfloat16 result is rounded once from its float32 value."""
    if isinstance(v, float):
        src = _TORCH_DTYPE.get(np.dtype(np_dtype), torch.float64) if np_dtype is not None else torch.float64
        return torch.tensor(v, dtype=src).to(dtype)
    a = np.asarray(v)
    if not (a.flags.c_contiguous and a.flags.writeable) or any(
            isinstance(i, np.ndarray) and np.may_share_memory(a, i) for i in inputs):
        a = np.array(a, order="C")
    return torch.from_numpy(a).to(dtype)


def _float_dtype(*tensors: Optional[torch.Tensor]) -> torch.dtype:
    """The promoted dtype of the floating-point tensors among ``tensors`` (the loss's dtype)."""
    dt = None
    for t in tensors:
        if t is not None and t.dtype.is_floating_point:
            dt = t.dtype if dt is None else torch.promote_types(dt, t.dtype)
    return dt if dt is not None else torch.get_default_dtype()


def _compute_dtype(*arrays: Any) -> Any:
    """NumPy's promoted dtype of the floating arrays (the dtype a kernel's Python-float result was computed in)."""
    floats = [a.dtype for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


_SET_DEFAULT_THREADS = getattr(_C, "_set_default_num_threads", None)


def _sync_threads() -> None:
    """Gives infoloss torch's thread count unless ``infoloss.set_num_threads`` was called (the extension keeps an
    explicit count). Runs inside the operators, so it also runs in compiled graphs."""
    if _SET_DEFAULT_THREADS is not None:
        _SET_DEFAULT_THREADS(max(1, torch.get_num_threads()))


def _eager(*tensors: torch.Tensor) -> bool:
    """True for plain tensors outside any tracing (torch.compile / export / make_fx), where data-dependent fast
    paths (a unit upstream gradient, a uniform one) may look at values."""
    if torch.compiler.is_compiling():
        return False
    if any(type(t) is not torch.Tensor for t in tensors):  # fake, functional and proxy tensors are subclasses
        return False
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return get_proxy_mode() is None


# ---------------------------------------------------------------------------------------------- the registry


@dataclass
class _Op:
    """One infoloss loss as two torch operators, ``infoloss::<name>`` and ``infoloss::<name>_backward``.

    ``tensors``: the schema's tensor arguments (``"weight?"`` is optional). ``options``: the schema's other
    arguments. ``diff``: indices of the differentiable tensors. ``kernel(arrays, opts, g, out, loss, want)`` returns
    ``(loss, [grad per diff tensor], [extra outputs])`` as NumPy values: the forward call has ``g=None, loss=True``,
    the backward call ``g`` (the upstream gradient) and ``loss=False``. ``meta(tensors, opts)`` gives the loss's
    shape and dtype (and ``extras(tensors, opts)`` the extra outputs' shapes and dtypes) for the fake
    implementation. ``precompute(opts)``: the forward call computes the gradients (for reduced losses: the backward
    pass only scales them). ``save_output``: the backward kernel reads the forward's output (softmax).
    ``autocast``: run in float32 under CPU autocast (torch's policy for its losses)."""

    name: str
    tensors: Tuple[str, ...]
    options: str
    diff: Tuple[int, ...]
    kernel: Callable
    meta: Callable
    precompute: Callable[[tuple], bool]
    extras: Optional[Callable] = None
    n_extras: int = 0
    save_output: bool = False
    autocast: bool = True
    forward: Any = None
    backward: Any = None

    @property
    def n_tensors(self) -> int:
        return len(self.tensors)


_OPS: dict = {}
_LIB = "infoloss"


def _schema_args(op: _Op) -> str:
    tensors = ", ".join(f"Tensor? {n[:-1]}" if n.endswith("?") else f"Tensor {n}" for n in op.tensors)
    return tensors + (", " + op.options if op.options else "")


def _register(op: _Op) -> None:
    n_t, n_d = op.n_tensors, len(op.diff)
    outs = ", ".join(["Tensor"] * (1 + op.n_extras + n_d))
    grads = ", ".join(["Tensor"] * n_d)  # one gradient: "(Tensor)" is a single Tensor, not a tuple
    fwd_schema = f"({_schema_args(op)}, bool[] want) -> ({outs})"
    bwd_schema = f"({_schema_args(op)}, Tensor output, Tensor grad_output, bool[] want) -> ({grads})"

    def split(args):
        return list(args[:n_t]), tuple(args[n_t:-1]), list(args[-1])

    def fwd_impl(*args):
        tensors, opts, want = split(args)
        _sync_threads()
        arrays = [_np(t, op.name, n.rstrip("?")) for t, n in zip(tensors, op.tensors)]
        pre = op.precompute(opts)
        loss, grads, extras = op.kernel(arrays, opts, None, None, True, want if pre else [False] * n_d)
        shape, dtype = op.meta(tensors, opts)
        result = [_out(loss, dtype, _compute_dtype(*arrays)).reshape(shape)]
        if op.n_extras:
            for v, (sh, dt) in zip(extras, op.extras(tensors, opts)):
                # a float64 extra (token accuracy: a fraction of counts) is not a value of the computation's dtype
                src = None if dt == torch.float64 else _compute_dtype(*arrays)
                result.append(torch.empty(0, dtype=dt) if v is None else _out(v, dt, src).reshape(sh))
        for k, i in enumerate(op.diff):
            t = tensors[i]
            ok = pre and want[k] and grads[k] is not None
            result.append(_out(grads[k], t.dtype, inputs=arrays) if ok else torch.empty(0, dtype=_grad_dtype(t)))
        return tuple(result)

    def fwd_fake(*args):
        tensors, opts, want = split(args)
        shape, dtype = op.meta(tensors, opts)
        result = [tensors[0].new_empty(shape, dtype=dtype)]
        if op.n_extras:
            for sh, dt in op.extras(tensors, opts):
                result.append(tensors[0].new_empty(sh, dtype=dt))
        pre = op.precompute(opts)
        for k, i in enumerate(op.diff):
            t = tensors[i]
            result.append(t.new_empty(t.shape) if (pre and want[k] and t is not None)
                          else tensors[0].new_empty(0, dtype=_grad_dtype(t)))
        return tuple(result)

    def split_bwd(args):
        return list(args[:n_t]), tuple(args[n_t:-3]), args[-3], args[-2], list(args[-1])

    def bwd_impl(*args):
        tensors, opts, out, g, want = split_bwd(args)
        _sync_threads()
        arrays = [_np(t, op.name, n.rstrip("?")) for t, n in zip(tensors, op.tensors)]
        go = _np(g, op.name, "grad_output")
        o = _np(out, op.name, "output") if op.save_output else None
        _, grads, _ = op.kernel(arrays, opts, go, o, False, want)
        return _single(tuple(_out(grads[k], tensors[i].dtype, inputs=arrays) if (want[k] and grads[k] is not None)
                             else torch.empty(0, dtype=_grad_dtype(tensors[i])) for k, i in enumerate(op.diff)))

    def bwd_fake(*args):
        tensors, _, _, _, want = split_bwd(args)
        return _single(tuple(tensors[i].new_empty(tensors[i].shape) if want[k]
                             else tensors[0].new_empty(0, dtype=_grad_dtype(tensors[i])) for k, i in enumerate(op.diff)))

    fwd = torch.library.custom_op(f"{_LIB}::{op.name}", fwd_impl, mutates_args=(), schema=fwd_schema)
    fwd.register_fake(fwd_fake)
    bwd = torch.library.custom_op(f"{_LIB}::{op.name}_backward", bwd_impl, mutates_args=(), schema=bwd_schema)
    bwd.register_fake(bwd_fake)

    def setup_context(ctx, inputs, output):
        tensors, opts, want = split(inputs)
        ctx.opts, ctx.want = opts, want
        ctx.mark_non_differentiable(*output[1:])
        # no zero-filled upstream gradients for the gradient outputs (as large as the inputs) in backward
        ctx.set_materialize_grads(False)
        saved = list(tensors) + ([output[0]] if op.save_output else [])
        if any(want):
            ctx.save_for_backward(*saved)
        pre = op.precompute(opts) and any(want)
        # Kept as an attribute, not a saved tensor, so that a backward pass may hand them to autograd and drop them.
        ctx.grads = list(output[1 + op.n_extras:]) if pre else None

    def backward(ctx, g, *_):
        want, opts = ctx.want, ctx.opts
        if g is None or not any(want):  # only constants (a teacher, a class weight under no_grad rules) require grad
            return (None,) * (n_t + len(opts) + 1)
        saved = ctx.saved_tensors
        tensors = list(saved[:n_t])
        eager = _eager(g)
        grads = ctx.grads
        if grads is not None and (g.dim() == 0 or (eager and _uniform(g))):
            if eager and not torch.is_grad_enabled() and g.dim() == 0 and g.item() == 1:
                # The forward's gradients go to autograd without a copy (it may accumulate into them in place),
                # so they serve one backward pass; another one (retain_graph) recomputes them.
                ctx.grads = None
                result = grads
            else:
                # a uniform upstream gradient of an unreduced fused loss: one factor (none at all for no rows)
                s = g if g.dim() == 0 else (g.reshape(-1)[0] if g.numel() else g.new_ones(()))
                result = [gr * s.to(gr.dtype) if w else None for gr, w in zip(grads, want)]
        else:
            out = saved[n_t] if op.save_output else tensors[0].new_empty(0)
            r = bwd(*tensors, *opts, out, g, want)
            result = [r] if isinstance(r, torch.Tensor) else list(r)
        result = [r if w else None for r, w in zip(result, want)]
        if eager and torch.is_grad_enabled():
            result = _no_double_backward(op.name, result, [tensors[i] for i in op.diff])
        full: List[Any] = [None] * (n_t + len(opts) + 1)
        for k, i in enumerate(op.diff):
            full[i] = result[k]
        return tuple(full)

    fwd.register_autograd(backward, setup_context=setup_context)
    if op.autocast:
        fwd.register_autocast("cpu", torch.float32)
    op.forward, op.backward = fwd, bwd
    _OPS[op.name] = op


def _single(t: tuple) -> Any:
    return t[0] if len(t) == 1 else t


def _grad_dtype(t: Optional[torch.Tensor]) -> torch.dtype:
    return t.dtype if (t is not None and t.dtype.is_floating_point) else torch.float32


def _uniform(g: torch.Tensor) -> bool:
    flat = g.reshape(-1)
    return flat.numel() == 0 or bool((flat == flat[0]).all())


def _no_double_backward(name: str, grads: List[Optional[torch.Tensor]],
                        anchors: Sequence[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """The gradients of a ``create_graph=True`` backward pass, correct to first order, behind an autograd node that
    raises if they are differentiated again (what ``once_differentiable`` does, also when no upstream gradient
    requires grad: the gradient depends on the inputs, which do). The node's inputs include ``anchors`` (the
    differentiable inputs of the forward), so a later ``torch.autograd.grad(..., inputs)`` reaches it and raises
    instead of reporting the inputs unused."""
    present = [g for g in grads if g is not None]
    anchors = [a for a in anchors if a is not None and a.requires_grad]
    if not present:
        return grads
    err = torch._C._functions.DelayedError(
        f"infoloss.{name}: double backward is not supported (the gradient of its gradient is not implemented); "
        f"use torch.nn.functional's loss for gradient penalties or other higher-order derivatives".encode(),
        len(present) + len(anchors),
    )
    wrapped = err(*[g.detach().requires_grad_(True) for g in present], *anchors)
    if isinstance(wrapped, torch.Tensor):
        wrapped = (wrapped,)
    it = iter(wrapped[: len(present)])
    return [None if g is None else next(it) for g in grads]


def _call(name: str, tensors: Sequence[Optional[torch.Tensor]], opts: Sequence[Any]):
    """Runs ``infoloss::<name>``: the gradients wanted are those of differentiable tensors requiring grad."""
    op = _OPS[name]
    grad_on = torch.is_grad_enabled()
    want = [bool(grad_on and tensors[i] is not None and tensors[i].requires_grad
                 and tensors[i].dtype.is_floating_point) for i in op.diff]
    outs = op.forward(*tensors, *opts, want)
    return outs[: 1 + op.n_extras]


def _check(t: Any, op: str, name: str, optional: bool = False) -> None:
    if t is None and optional:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def _no_weight_grad(op: str, *named: Tuple[str, Optional[torch.Tensor]]) -> None:
    for name, t in named:
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(f"{op}: infoloss.torch has no gradient wrt {name}")


def _rows_shape(t: torch.Tensor) -> Tuple[int, ...]:
    return tuple(t.shape[:1])


# ------------------------------------------------------------------------------------------ loss definitions


def _ce_kernel(a, o, g, out, loss, want):
    ii, red, ls = o
    lo, gi, gt = _F._cross_entropy(a[0], a[1], a[2], ii, red, ls, g, loss=loss, grad=want[0], target_grad=want[1])
    return lo, [gi, gt], []


def _ce_meta(t, o):
    x, y = t[0], t[1]
    dt = _float_dtype(x, y if y.dtype.is_floating_point else None)
    if o[1] != "none":
        return (), dt
    if y.shape == x.shape:  # probabilities: the input's shape without the class dimension
        return (tuple(x.shape[:1]) + tuple(x.shape[2:]) if x.dim() > 1 else ()), dt
    return tuple(y.shape), dt


_register(_Op("cross_entropy", ("input", "target", "weight?"), "int ignore_index, str reduction, float label_smoothing",
              (0, 1), _ce_kernel, _ce_meta, lambda o: o[1] != "none"))


def _nll_kernel(a, o, g, out, loss, want):
    ii, red = o
    lo, gi, _ = _F._nll_loss(a[0], a[1], a[2], ii, red, g, loss=loss, grad=want[0])
    return lo, [gi], []


_register(_Op("nll_loss", ("input", "target", "weight?"), "int ignore_index, str reduction", (0,), _nll_kernel,
              lambda t, o: (() if o[1] != "none" else tuple(t[1].shape), t[0].dtype), lambda o: o[1] != "none"))


def _kl_kernel(a, o, g, out, loss, want):
    red, log_target, divide = o
    lo, gi, gt = _F._kl_div(a[0], a[1], red, log_target, g, divide=divide, loss=loss, grad=want[0],
                            target_grad=want[1])
    return lo, [gi, gt], []


def _broadcast_meta(t, reduction):
    shapes = [tuple(x.shape) for x in t if x is not None]
    return (() if reduction != "none" else tuple(torch.broadcast_shapes(*shapes[:2]))), _float_dtype(t[0], t[1])


_register(_Op("kl_div", ("input", "target"), "str reduction, bool log_target, bool divide", (0, 1), _kl_kernel,
              lambda t, o: _broadcast_meta(t, o[0]), lambda o: o[0] != "none"))


def _bce_kernel(a, o, g, out, loss, want):
    lo, gi, gt = _F._bce(a[0], a[1], a[2], o[0], g, loss=loss, grad=want[0], target_grad=want[1])
    return lo, [gi, gt], []


def _bce_meta(t, o):
    dt = _float_dtype(t[0], t[1])
    if o[0] != "none":
        return (), dt
    return tuple(torch.broadcast_shapes(*[tuple(x.shape) for x in t if x is not None])), dt


_register(_Op("binary_cross_entropy", ("input", "target", "weight?"), "str reduction", (0, 1), _bce_kernel,
              _bce_meta, lambda o: o[0] != "none"))


def _bce_logits_kernel(a, o, g, out, loss, want):
    lo, gi, gt = _F._bce_logits(a[0], a[1], a[2], o[0], a[3], g, loss=loss, grad=want[0], target_grad=want[1])
    return lo, [gi, gt], []


_register(_Op("binary_cross_entropy_with_logits", ("input", "target", "weight?", "pos_weight?"), "str reduction",
              (0, 1), _bce_logits_kernel, _bce_meta, lambda o: o[0] != "none"))

_DISTILL_OPTS = ("float temperature, bool t2_scaling, str divergence, float beta, float alpha, int ignore_index, "
                 "str reduction, float? normalizer")


def _distill_kernel(a, o, g, out, loss, want):
    lo, gi, _ = _D._distill(a[0], a[1], a[2], o, g, loss=loss, grad=want[0])
    return lo, [gi], []


def _distill_meta(loss_dtype_of):
    def meta(t, o):
        return (() if o[-2] != "none" else _rows_shape(t[0])), loss_dtype_of(t)

    return meta


_register(_Op("distill", ("student_logits", "teacher_logits", "labels?"), _DISTILL_OPTS, (0,), _distill_kernel,
              _distill_meta(lambda t: _float_dtype(t[0], t[1])), lambda o: o[6] != "none"))


def _topk_kernel(a, o, g, out, loss, want):
    add_tail, opts = o[0], o[1:]
    lo, gi, _ = _D._distill_topk(a[0], a[1], a[2], a[3], add_tail, opts, g, loss=loss, grad=want[0])
    return lo, [gi], []


_register(_Op("distill_topk", ("student_logits", "topk_indices", "topk_logprobs", "labels?"),
              "bool add_tail, " + _DISTILL_OPTS, (0,), _topk_kernel,
              _distill_meta(lambda t: _float_dtype(t[0], t[2])), lambda o: o[7] != "none"))


def _uda_kernel(a, o, g, out, loss, want):
    ori, aug = a
    if not loss:
        # the backward pass hands the upstream gradient to infoloss, which applies it rounding once
        return None, [_D._uda_backward(ori, aug, g, *o)], []
    return _D._uda_loss(ori, aug, *o).loss, [None], []  # the loss alone: no gradient computed or allocated


_register(_Op("uda_consistency", ("ori_logits", "aug_logits"),
              "float temperature, str sharpen, float? confidence_threshold, str normalize", (1,), _uda_kernel,
              lambda t, o: ((), _float_dtype(t[1], t[0])), lambda o: False))


def _ce_extras_kernel(a, o, g, out, loss, want):
    ii, red, ls, z, cap, ret_lse, ret_acc = o
    r = _L._ce_extras(a[0], a[1], a[2], ii, red, ls, z, cap, ret_lse and loss, ret_acc and loss, g,
                      grad=want[0])
    return r.loss, [r.grad_input], [r.z_loss, r.lse, r.token_accuracy]


def _ce_extras_meta(t, o):
    return (() if o[1] != "none" else _rows_shape(t[0])), t[0].dtype


def _ce_extras_extras(t, o):
    rows, dt = _rows_shape(t[0]), t[0].dtype
    red_shape = () if o[1] != "none" else rows
    return [(red_shape, dt), (rows if o[5] else (0,), dt), (red_shape if o[6] else (0,), torch.float64)]


_register(_Op("cross_entropy_extras", ("input", "target", "weight?"),
              "int ignore_index, str reduction, float label_smoothing, float lse_square_scale, float? softcap, "
              "bool return_lse, bool return_token_accuracy", (0,), _ce_extras_kernel, _ce_extras_meta,
              lambda o: o[1] != "none", extras=_ce_extras_extras, n_extras=3))


def _linear_ce_kernel(a, o, g, out, loss, want):
    x, w, y, b, cw = a
    red, ii, ls, z, cap, chunk = o
    r = _L._linear_ce(x, w, y, b, cw, red, ii, ls, z, cap, chunk, grad_output=g)
    return r.loss, [r.grad_input, r.grad_linear_weight, r.grad_linear_bias], []


# the fused kernels compute the gradients with the loss in any case: the forward always keeps them
_register(_Op("linear_cross_entropy", ("input", "linear_weight", "target", "linear_bias?", "weight?"),
              "str reduction, int ignore_index, float label_smoothing, float lse_square_scale, float? softcap, "
              "int? chunk_size", (0, 1, 3), _linear_ce_kernel,
              lambda t, o: (() if o[0] != "none" else tuple(t[2].shape), _float_dtype(t[0], t[1], t[3], t[4])),
              lambda o: True))


def _linear_distill_kernel(a, o, g, out, loss, want):
    xs, ws, xt, wt, y, bs, bt = a
    opts, chunk, k, tail = o[:8], o[8], o[9], o[10]
    r = _L._linear_distill(xs, ws, xt, wt, y, opts, chunk, g, bs, bt, k, tail)
    return r.loss, [r.grad_student_hidden, r.grad_student_weight, r.grad_student_bias], []


_register(_Op("linear_distill", ("student_hidden", "student_weight", "teacher_hidden", "teacher_weight", "labels?",
                                 "student_bias?", "teacher_bias?"),
              _DISTILL_OPTS + ", int? chunk_size, int? teacher_topk, bool add_tail", (0, 1, 5),
              _linear_distill_kernel,
              lambda t, o: (() if o[6] != "none" else _rows_shape(t[0]),
                            _float_dtype(t[0], t[1], t[2], t[3], t[5], t[6])),
              lambda o: True))


def _rows_kernel(name):
    def kernel(a, o, g, out, loss, want):
        (dim,) = o
        if loss:
            x = c.float_input(a[0], name)
            return (_C.log_softmax if name == "log_softmax" else _C.softmax)(x, dim), [None], []
        bwd = _C.log_softmax_backward if name == "log_softmax" else _C.softmax_backward
        return None, [bwd(out, c.ready(g.astype(out.dtype, copy=False), name, "grad_output"), dim)], []

    return kernel


for _name in ("log_softmax", "softmax"):
    _register(_Op(_name, ("input",), "int dim", (0,), _rows_kernel(_name),
                  lambda t, o: (tuple(t[0].shape), t[0].dtype), lambda o: False, save_output=True, autocast=False))


def _lse_kernel(a, o, g, out, loss, want):
    dim, keepdim = o
    d = dim[0] if len(dim) == 1 else tuple(dim)
    if loss:
        return _F.logsumexp(a[0], d, keepdim), [None], []
    return None, [_F.logsumexp_with_grad(a[0], d, keepdim, grad_output=g)[1]], []


def _lse_meta(t, o):
    dim, keepdim = o
    x = t[0]
    n = max(x.dim(), 1)
    dims = {d % n for d in dim} if x.dim() else set()
    shape = [1 if i in dims else s for i, s in enumerate(x.shape)] if keepdim else \
        [s for i, s in enumerate(x.shape) if i not in dims]
    return tuple(shape), x.dtype


_register(_Op("logsumexp", ("input",), "int[] dim, bool keepdim", (0,), _lse_kernel, _lse_meta, lambda o: False,
              autocast=False))


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
    _check(input, op, "input")
    _check(target, op, "target")
    _check(weight, op, "weight", optional=True)
    _no_weight_grad(op, ("weight", weight))
    ii = c.as_int(ignore_index, op, "ignore_index")
    return _call(op, (input, target, weight), (ii, red, c.as_float(label_smoothing, op, "label_smoothing")))[0]


def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    ignore_index: int = -100,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
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
    _check(input, op, "input")
    _check(target, op, "target")
    _check(weight, op, "weight", optional=True)
    _no_weight_grad(op, ("weight", weight))
    return _call(op, (input, target, weight), (c.as_int(ignore_index, op, "ignore_index"), red))[0]


def kl_div(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
    log_target: bool = False,
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
    _check(input, op, "input")
    _check(target, op, "target")
    red, divide = c.resolve_kl_reduction(size_average, reduce, reduction, input.dim(), 2)
    return _call(op, (input, target), (red, bool(log_target), bool(divide)))[0]


def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    size_average: Optional[bool] = None,
    reduce: Optional[bool] = None,
    reduction: str = "mean",
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
    _check(input, op, "input")
    _check(target, op, "target")
    _check(weight, op, "weight", optional=True)
    _no_weight_grad(op, ("weight", weight))
    return _call(op, (input, target, weight), (red,))[0]


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
    :func:`infoloss.binary_cross_entropy_with_logits`); gradients flow to the input and the target.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> round(itorch.binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0])).item(), 6)
        0.693147
    """
    op = "binary_cross_entropy_with_logits"
    red = c.resolve_reduction(size_average, reduce, reduction, 2)
    _check(input, op, "input")
    _check(target, op, "target")
    _check(weight, op, "weight", optional=True)
    _check(pos_weight, op, "pos_weight", optional=True)
    _no_weight_grad(op, ("weight", weight), ("pos_weight", pos_weight))
    return _call(op, (input, target, weight, pos_weight), (red,))[0]


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
    opts = _D._distill_options(op, temperature, t2_scaling, divergence, beta, alpha, ignore_index, reduction,
                               normalizer)
    _check(student_logits, op, "student_logits")
    _check(teacher_logits, op, "teacher_logits")
    _check(labels, op, "labels", optional=True)
    return _call(op, (student_logits, teacher_logits, labels), opts)[0]


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
    opts = _D._distill_options(op, temperature, t2_scaling, divergence, beta, alpha, ignore_index, reduction,
                               normalizer)
    _check(student_logits, op, "student_logits")
    _check(topk_indices, op, "topk_indices")
    _check(topk_logprobs, op, "topk_logprobs")
    _check(labels, op, "labels", optional=True)
    return _call(op, (student_logits, topk_indices, topk_logprobs, labels), (bool(add_tail),) + opts)[0]


def uda_consistency(
    ori_logits: torch.Tensor,
    aug_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    sharpen: str = "target",
    confidence_threshold: Optional[float] = None,
    normalize: str = "kept_rows",
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
    _check(ori_logits, op, "ori_logits")
    _check(aug_logits, op, "aug_logits")
    opts = (c.as_float(temperature, op, "temperature"), _D._choice(sharpen, _D.SHARPEN, op, "sharpen"),
            _D._opt_float(confidence_threshold, op, "confidence_threshold"),
            _D._choice(normalize, _D.UDA_NORMALIZE, op, "normalize"))
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


def cross_entropy_extras(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    lse_square_scale: float = 0.0,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    return_token_accuracy: bool = False,
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
    _check(input, op, "input")
    _check(target, op, "target")
    _check(weight, op, "weight", optional=True)
    _no_weight_grad(op, ("weight", weight))
    opts = (c.as_int(ignore_index, op, "ignore_index"), red, c.as_float(label_smoothing, op, "label_smoothing"),
            c.as_float(lse_square_scale, op, "lse_square_scale"), _L._opt_float(softcap, op, "softcap"),
            bool(return_lse), bool(return_token_accuracy))
    loss, z, lse, acc = _call(op, (input, target, weight), opts)
    if not return_token_accuracy:
        acc = None
    elif red != "none" and not torch.compiler.is_compiling():
        acc = acc.item()  # a fraction of counts, exact in float64: not rounded to the input's dtype
    return CrossEntropyExtrasOutput(loss, z, lse if return_lse else None, acc)


# ------------------------------------------------------------------------------------------ fused linear losses


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
    for t, n, opt in ((input, "input", False), (linear_weight, "linear_weight", False), (target, "target", False),
                      (linear_bias, "linear_bias", True), (weight, "weight", True)):
        _check(t, op, n, opt)
    _no_weight_grad(op, ("the class weight", weight))
    if chunk_size is None and options is not None:
        chunk_size = getattr(options, "batch_chunk_size", None)
    ii = -100 if ignore_index is None else c.as_int(ignore_index, op, "ignore_index")
    opts = (red, ii, c.as_float(label_smoothing, op, "label_smoothing"),
            c.as_float(lse_square_scale, op, "lse_square_scale"), _L._opt_float(softcap, op, "softcap"),
            _L._chunk(chunk_size, op))
    return _call(op, (input, linear_weight, target, linear_bias, weight), opts)[0]


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
    opts = _D._distill_options(op, temperature, t2_scaling, divergence, beta, alpha, ignore_index, reduction,
                               normalizer)
    names = ("student_hidden", "student_weight", "teacher_hidden", "teacher_weight", "labels", "student_bias",
             "teacher_bias")
    tensors = (student_hidden, student_weight, teacher_hidden, teacher_weight, labels, student_bias, teacher_bias)
    for t, n in zip(tensors, names):
        _check(t, op, n, optional=n in ("student_bias", "teacher_bias", "labels"))
    k = None if teacher_topk is None else c.as_int(teacher_topk, op, "teacher_topk")
    return _call(op, tensors, opts + (_L._chunk(chunk_size, op), k, bool(add_tail)))[0]
