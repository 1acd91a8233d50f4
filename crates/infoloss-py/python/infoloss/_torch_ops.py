"""The machinery behind :mod:`infoloss.torch`: tensor <-> NumPy conversion, the registry that turns one table
row per loss into a ``torch.library`` custom op (kernel, fake implementation, autograd formula, autocast policy,
double-backward guard), and the row of every loss. Importing it registers the ops under ``torch.ops.infoloss``;
the public drop-ins in :mod:`infoloss.torch` call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import _common as c
from . import _distill as _D
from . import _functional as _F
from . import _infoloss as _C
from . import _linear as _L

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


#: The schema type of a catalog option type.
_SCHEMA_TYPES = {"bool": "bool", "int": "int", "float": "float", "str": "str", "Optional[float]": "float?",
                 "Optional[int]": "int?"}


def _catalog_schema(loss: str, *extra: str) -> str:
    """The schema arguments of ``loss``'s scalar options in the catalog's order (the tuple of
    :func:`infoloss._common.option_tuple`, which the operator passes on to the NumPy layer as it is), then the
    front end's ``extra`` arguments."""
    return ", ".join([f"{_SCHEMA_TYPES[o['type']]} {o['name']}" for o in c.scalar_options(loss)] + list(extra))


def _reduction(loss: str) -> Callable[[tuple], str]:
    """The reduction in an operator's options tuple."""
    return lambda o: c.option(loss, o, "reduction")


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


def _check_tensors(op: str, tensors: Sequence[Any]) -> None:
    """``TypeError`` unless the operator's tensor arguments, in its schema's order, are tensors (``None`` for the
    optional ones, ``?`` in the schema)."""
    for t, n in zip(tensors, _OPS[op].tensors):
        _check(t, op, n.rstrip("?"), optional=n.endswith("?"))


def _no_weight_grad(op: str, *named: Tuple[str, Optional[torch.Tensor]]) -> None:
    for name, t in named:
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(f"{op}: infoloss.torch has no gradient wrt {name}")


def _rows_shape(t: torch.Tensor) -> Tuple[int, ...]:
    return tuple(t.shape[:1])


# ------------------------------------------------------------------------------------------ loss definitions


def _ce_kernel(a, o, g, out, loss, want):
    lo, gi, gt = _F._cross_entropy(a[0], a[1], a[2], o, g, loss=loss, grad=want[0], target_grad=want[1])
    return lo, [gi, gt], []


def _ce_meta(t, o):
    x, y = t[0], t[1]
    dt = _float_dtype(x, y if y.dtype.is_floating_point else None)
    if _reduction("cross_entropy")(o) != "none":
        return (), dt
    if y.shape == x.shape:  # probabilities: the input's shape without the class dimension
        return (tuple(x.shape[:1]) + tuple(x.shape[2:]) if x.dim() > 1 else ()), dt
    return tuple(y.shape), dt


def _reduced(loss: str) -> Callable[[tuple], bool]:
    """Whether the operator's loss is reduced (then its gradients are computed with the forward)."""
    return lambda o: _reduction(loss)(o) != "none"


_register(_Op("cross_entropy", ("input", "target", "weight?"), _catalog_schema("cross_entropy"), (0, 1), _ce_kernel,
              _ce_meta, _reduced("cross_entropy")))


def _nll_kernel(a, o, g, out, loss, want):
    lo, gi, _ = _F._nll_loss(a[0], a[1], a[2], o, g, loss=loss, grad=want[0])
    return lo, [gi], []


_register(_Op("nll_loss", ("input", "target", "weight?"), _catalog_schema("nll_loss"), (0,), _nll_kernel,
              lambda t, o: (() if _reduced("nll_loss")(o) else tuple(t[1].shape), t[0].dtype),
              _reduced("nll_loss")))


def _elementwise_kernel(name, weights=()):
    """The kernel of ``kl_div`` or a binary cross-entropy: ``weights`` name the optional tensors after the target;
    ``kl_div``'s options end with torch's legacy ``divide`` flag."""

    def kernel(a, o, g, out, loss, want):
        divide = bool(o[-1]) if name == "kl_div" else False
        opts = o[:-1] if name == "kl_div" else o
        lo, gi, gt = _F._elementwise(name, a[0], a[1], dict(zip(weights, a[2:])), opts, g, divide=divide, loss=loss,
                                     grad=want[0], target_grad=want[1])
        return lo, [gi, gt], []

    return kernel


def _broadcast_meta(loss):
    def meta(t, o):
        dt = _float_dtype(t[0], t[1])
        if _reduced(loss)(o):
            return (), dt
        return tuple(torch.broadcast_shapes(*[tuple(x.shape) for x in t if x is not None])), dt

    return meta


_register(_Op("kl_div", ("input", "target"), _catalog_schema("kl_div", "bool divide"), (0, 1),
              _elementwise_kernel("kl_div"), _broadcast_meta("kl_div"), _reduced("kl_div")))
_register(_Op("binary_cross_entropy", ("input", "target", "weight?"), _catalog_schema("binary_cross_entropy"),
              (0, 1), _elementwise_kernel("binary_cross_entropy", ("weight",)),
              _broadcast_meta("binary_cross_entropy"), _reduced("binary_cross_entropy")))
_register(_Op("binary_cross_entropy_with_logits", ("input", "target", "weight?", "pos_weight?"),
              _catalog_schema("binary_cross_entropy_with_logits"), (0, 1),
              _elementwise_kernel("binary_cross_entropy_with_logits", ("weight", "pos_weight")),
              _broadcast_meta("binary_cross_entropy_with_logits"), _reduced("binary_cross_entropy_with_logits")))


def _distill_kernel(a, o, g, out, loss, want):
    lo, gi, _ = _D._distill(a[0], a[1], a[2], o, g, loss=loss, grad=want[0])
    return lo, [gi], []


def _distill_meta(loss_dtype_of):
    def meta(t, o):
        return (() if _reduced("distill")(o) else _rows_shape(t[0])), loss_dtype_of(t)

    return meta


_register(_Op("distill", ("student_logits", "teacher_logits", "labels?"), _catalog_schema("distill"), (0,),
              _distill_kernel, _distill_meta(lambda t: _float_dtype(t[0], t[1])), _reduced("distill")))


def _topk_kernel(a, o, g, out, loss, want):
    opts, add_tail = o[:-1], o[-1]
    lo, gi, _ = _D._distill_topk(a[0], a[1], a[2], a[3], add_tail, opts, g, loss=loss, grad=want[0])
    return lo, [gi], []


_register(_Op("distill_topk", ("student_logits", "topk_indices", "topk_logprobs", "labels?"),
              _catalog_schema("distill", "bool add_tail"), (0,), _topk_kernel,
              _distill_meta(lambda t: _float_dtype(t[0], t[2])), _reduced("distill")))


def _uda_kernel(a, o, g, out, loss, want):
    ori, aug = a
    if not loss:
        # the backward pass hands the upstream gradient to infoloss, which applies it rounding once
        return None, [_D._uda_backward(ori, aug, g, o)], []
    return _D._uda_loss(ori, aug, o).loss, [None], []  # the loss alone: no gradient computed or allocated


_register(_Op("uda_consistency", ("ori_logits", "aug_logits"), _catalog_schema("uda_consistency"), (1,),
              _uda_kernel, lambda t, o: ((), _float_dtype(t[1], t[0])), lambda o: False))


def _ce_extras_kernel(a, o, g, out, loss, want):
    if not loss:  # the backward pass wants the gradient alone
        o = c.replace_options("cross_entropy_extras", o, return_lse=False, return_token_accuracy=False)
    r = _L._ce_extras(a[0], a[1], a[2], o, g, grad=want[0])
    return r.loss, [r.grad_input], [r.z_loss, r.lse, r.token_accuracy]


def _ce_extras_meta(t, o):
    return (() if _reduced("cross_entropy_extras")(o) else _rows_shape(t[0])), t[0].dtype


def _ce_extras_extras(t, o):
    rows, dt = _rows_shape(t[0]), t[0].dtype
    red_shape = () if _reduced("cross_entropy_extras")(o) else rows
    lse, acc = (c.option("cross_entropy_extras", o, n) for n in ("return_lse", "return_token_accuracy"))
    return [(red_shape, dt), (rows if lse else (0,), dt), (red_shape if acc else (0,), torch.float64)]


_register(_Op("cross_entropy_extras", ("input", "target", "weight?"), _catalog_schema("cross_entropy_extras"), (0,),
              _ce_extras_kernel, _ce_extras_meta, _reduced("cross_entropy_extras"), extras=_ce_extras_extras,
              n_extras=3))


def _linear_ce_kernel(a, o, g, out, loss, want):
    x, w, y, b, cw = a
    r = _L._linear_ce(x, w, y, b, cw, o, grad_output=g)
    return r.loss, [r.grad_input, r.grad_linear_weight, r.grad_linear_bias], []


# the fused kernels compute the gradients with the loss in any case: the forward always keeps them
_register(_Op("linear_cross_entropy", ("input", "linear_weight", "target", "linear_bias?", "weight?"),
              _catalog_schema("linear_cross_entropy"), (0, 1, 3), _linear_ce_kernel,
              lambda t, o: (() if _reduced("linear_cross_entropy")(o) else tuple(t[2].shape),
                            _float_dtype(t[0], t[1], t[3], t[4])),
              lambda o: True))


def _student_grads(r) -> tuple:
    """A fused distillation's kernel result: the loss and the student head's gradients."""
    return r.loss, [r.grad_student_hidden, r.grad_student_weight, r.grad_student_bias], []


def _fused_distill_meta(loss: str, *floats: int) -> Callable:
    """The loss's shape (one per row for ``'none'``) and dtype (of the float tensors at ``floats``)."""
    return lambda t, o: (() if _reduced(loss)(o) else _rows_shape(t[0]), _float_dtype(*(t[i] for i in floats)))


def _linear_distill_kernel(a, o, g, out, loss, want):
    xs, ws, xt, wt, y, bs, bt = a
    opts, k, tail = o[:-2], o[-2], o[-1]
    return _student_grads(_L._linear_distill(xs, ws, xt, wt, y, opts, g, bs, bt, k, tail))


_register(_Op("linear_distill", ("student_hidden", "student_weight", "teacher_hidden", "teacher_weight", "labels?",
                                 "student_bias?", "teacher_bias?"),
              _catalog_schema("linear_distill", "int? teacher_topk", "bool add_tail"), (0, 1, 5),
              _linear_distill_kernel, _fused_distill_meta("linear_distill", 0, 1, 2, 3, 5, 6), lambda o: True))


def _linear_distill_topk_kernel(a, o, g, out, loss, want):
    xs, ws, idx, lq, y, bs = a
    return _student_grads(_L._linear_distill_topk(xs, ws, idx, lq, y, o[:-1], g, bs, o[-1]))


_register(_Op("linear_distill_topk", ("student_hidden", "student_weight", "topk_indices", "topk_logprobs",
                                      "labels?", "student_bias?"),
              _catalog_schema("linear_distill_topk", "bool add_tail"), (0, 1, 5), _linear_distill_topk_kernel,
              _fused_distill_meta("linear_distill_topk", 0, 1, 3, 5), lambda o: True))


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
