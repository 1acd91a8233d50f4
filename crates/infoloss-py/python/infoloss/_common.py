"""Argument handling shared by the NumPy API and ``infoloss.torch``: array conversion, dtypes, reductions, warnings."""

from __future__ import annotations

import inspect
import operator
import sys
import warnings
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

import numpy as np

from . import _infoloss

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
MAX_NDIM = 32
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


# ---------------------------------------------------------------------------------------------------- bfloat16


_BF16: Optional[np.dtype] = None


def bf16() -> Optional[np.dtype]:
    """``ml_dtypes.bfloat16`` as a NumPy dtype if ``ml_dtypes`` has been imported, else ``None``.

    Never imports ``ml_dtypes`` (an optional dependency): whoever holds a bfloat16 array has imported it already.
    Every call of the extension asks, so the dtype is looked up once and kept.
    """
    global _BF16
    if _BF16 is None:
        mod = sys.modules.get("ml_dtypes")
        bf = getattr(mod, "bfloat16", None) if mod is not None else None
        if bf is not None:
            _BF16 = np.dtype(bf)
    return _BF16


def is_float(dt: np.dtype) -> bool:
    """Whether ``dt`` is a float dtype infoloss computes with: float16/32/64 (either byte order) or bfloat16.

    ``ml_dtypes.bfloat16`` has NumPy kind ``'V'``, so ``dtype.kind == 'f'`` does not see it.
    """
    if native(dt) in FLOAT_DTYPES:
        return True
    bf = bf16()
    return bf is not None and dt == bf  # never `dt == None`: NumPy reads None as float64


def _is_bf16_array(a: Any, bf: np.dtype) -> bool:
    return isinstance(a, np.ndarray) and a.dtype == bf


def _round_bf16(v: Any, bf: np.dtype) -> Any:
    """A result computed in float32 rounded once to bfloat16, in the container the float16 path returns: a
    Python float stays a Python float (of the bfloat16 value), arrays and NumPy scalars become bfloat16."""
    if isinstance(v, float):
        return float(bf.type(v))
    if isinstance(v, (np.ndarray, np.generic)) and v.dtype == np.float32:
        return v.astype(bf)
    if isinstance(v, tuple):
        return tuple(_round_bf16(e, bf) for e in v)
    return v


# Outputs that are not values in the compute dtype and so must not be rounded: token accuracy (a fraction of
# counts) at this position of the result tuple.
_NOT_ROUNDED = {"cross_entropy_extras": 3, "linear_cross_entropy": 3}


def _bf16_call(name: str, fn: Callable[..., Any], bf: np.dtype, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """Calls the extension with bfloat16 operands, as ``infoloss.torch`` does for bfloat16 tensors: every bfloat16
    array is widened exactly to float32, the float32 kernel runs, and every float result is rounded once to
    bfloat16. The core computes ``bf16`` in float32 and rounds once too, so these are the bits it would give.

    The ``*_in_place`` kernels write the float32 gradient over the widened copy of the logits (the first bfloat16
    argument); it is rounded into the caller's array only after the kernel succeeded, so on an error the caller's
    array is unchanged, as on the other dtypes.
    """
    wide = [a.astype(np.float32) if _is_bf16_array(a, bf) else a for a in args]
    wide_kw = {k: (v.astype(np.float32) if _is_bf16_array(v, bf) else v) for k, v in kwargs.items()}
    out = fn(*wide, **wide_kw)
    if name.endswith("_in_place"):
        i = next(i for i, a in enumerate(args) if _is_bf16_array(a, bf))
        args[i][...] = wide[i]  # NumPy's float32 -> bfloat16 cast: round to nearest even, as torch's .to()
    keep = _NOT_ROUNDED.get(name)
    if keep is not None and isinstance(out, tuple):
        return tuple(e if k == keep else _round_bf16(e, bf) for k, e in enumerate(out))
    return _round_bf16(out, bf)


class _Kernels:
    """The extension module's functions as the Python layer calls them (``from ._common import kernels as _C``).

    Arguments reach the extension already converted to one compute dtype. NumPy has no bfloat16, so the extension
    takes float16/32/64 only; a call whose compute dtype is ``ml_dtypes.bfloat16`` goes through
    :func:`_bf16_call`. Any other call reaches the extension function unchanged after one dtype check.
    """

    def __getattr__(self, name: str) -> Any:
        fn = getattr(_infoloss, name)
        if not callable(fn):
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            bf = bf16()
            if bf is not None:
                for a in (*args, *kwargs.values()):
                    if _is_bf16_array(a, bf):
                        return _bf16_call(name, fn, bf, args, kwargs)
            return fn(*args, **kwargs)

        call.__name__ = name
        call.__doc__ = fn.__doc__
        setattr(self, name, call)  # found by normal lookup from now on
        return call


#: The extension's functions, with bfloat16 support (see :class:`_Kernels`).
kernels: Any = _Kernels()


# ---------------------------------------------------------------------------------------------------- catalog

#: The core's option catalog (``infoloss::options::catalog()``): loss name -> {option name -> its spec dict}.
CATALOG: Dict[str, Dict[str, Dict[str, Any]]] = {
    loss["name"]: {o["name"]: o for o in loss["options"]} for loss in _infoloss._catalog()
}


def choices(loss: str, option: str) -> Tuple[str, ...]:
    """The spellings a choice option of the catalog accepts, in the core's order."""
    return tuple(CATALOG[loss][option]["choices"])


#: The catalog type of the array options (class and element weights), which the extension takes as arrays.
_ARRAY = "Optional[ArrayLike]"


def _option_value(spec: Dict[str, Any], v: Any, op: str) -> Any:
    """``v`` as the extension takes an option of ``spec``'s type: a Python ``bool``, ``int``, ``float``, ``str``
    or ``None`` (a NumPy scalar becomes the Python one), with the errors of :func:`as_int` / :func:`as_float`;
    a choice is passed on as given, for the core to check."""
    name, kind = spec["name"], spec["type"]
    if kind.startswith("Optional[") and v is None:
        return None
    if kind == "bool":
        return bool(v)
    if kind in ("int", "Optional[int]"):
        return as_int(v, op, name)
    if kind in ("float", "Optional[float]"):
        return as_float(v, op, name)
    return v


def option_tuple(loss: str, extra: Dict[str, Any], /, *, op: Optional[str] = None, **given: Any) -> Tuple[Any, ...]:
    """The scalar options of ``loss`` as the extension and the torch operators take them: one tuple in the
    catalog's order.

    ``given``: the options the Python function spells in its signature (resolved: the reduction after torch's
    rules); ``extra``: the ``**options`` it takes by name through :func:`catalog_options`; every other option
    gets the catalog's default. An ``extra`` name that is not an option of ``loss`` is a ``TypeError``, as an
    unknown keyword argument is. ``op`` (default ``loss``) names the function in errors.
    """
    op = op or loss
    specs = CATALOG[loss]
    for name in extra:
        if name not in specs or specs[name]["type"] == _ARRAY:
            raise TypeError(f"{op}() got an unexpected keyword argument '{name}'")
    out = []
    for name, spec in specs.items():
        if spec["type"] == _ARRAY:
            continue
        v = given[name] if name in given else extra.get(name, spec["default"])
        out.append(_option_value(spec, v, op))
    return tuple(out)


def scalar_options(loss: str) -> Tuple[Dict[str, Any], ...]:
    """The specs of the scalar options of ``loss`` (those of :func:`option_tuple`), in the catalog's order."""
    return tuple(s for s in CATALOG[loss].values() if s["type"] != _ARRAY)


def option(loss: str, options: Tuple[Any, ...], name: str) -> Any:
    """The option ``name`` in a tuple of :func:`option_tuple`."""
    return options[[s["name"] for s in scalar_options(loss)].index(name)]


def replace_options(loss: str, options: Tuple[Any, ...], **changes: Any) -> Tuple[Any, ...]:
    """A tuple of :func:`option_tuple` with the options ``changes`` names set to their values."""
    return tuple(changes.get(s["name"], v) for s, v in zip(scalar_options(loss), options))


_F = TypeVar("_F", bound=Callable[..., Any])


#: The keyword-only arguments of the ``*_with_grad`` twins, which stay last, after the catalog's options.
_TWIN_ARGS = ("grad_output", "return_target_grad")


def catalog_options(loss: str, *, left_out: Tuple[str, ...] = ()) -> Callable[[_F], _F]:
    """Declares that a public function takes every option of the catalog's ``loss``.

    The options the function spells (PyTorch's order, positional as in torch) stay as they are; every other
    scalar option of the catalog except ``left_out`` becomes a keyword-only parameter of its ``__signature__``
    with the catalog's type, default and doc line (in the catalog's order, before ``grad_output`` and
    ``return_target_grad``), and reaches the function through its ``**options``, which it hands to
    :func:`option_tuple`. So an option added to a loss in the core needs no edit here. The function itself is
    returned (no wrapper), so warnings keep pointing at the caller.
    """

    def decorate(fn: _F) -> _F:
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            spec for name, spec in CATALOG[loss].items()
            if name not in sig.parameters and name not in left_out and spec["type"] != _ARRAY
        ]
        at = next(
            (i for i, p in enumerate(params) if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name in _TWIN_ARGS),
            len(params),
        )
        params[at:at] = [
            inspect.Parameter(s["name"], inspect.Parameter.KEYWORD_ONLY, default=s["default"], annotation=s["type"])
            for s in added
        ]
        fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        if added and fn.__doc__:
            lines = "\n".join(f"    ``{s['name']}``: {s['doc']}" for s in added)
            fn.__doc__ += f"\n\n    Options (the core's catalog):\n\n{lines}\n"
        return fn

    return decorate


# ------------------------------------------------------------------------------------- a function and its twin

#: What the declaration of a public function returns: its kernel call with the public arguments resolved,
#: ``call(grad_output=None, *, grad=False[, target_grad=False]) -> (value, grad_input, grad_target)``.
Call = Callable[..., Tuple[Any, Any, Any]]


def _named(fn: _F, spec: Callable[..., Any], name: str, doc: Optional[str], sig: inspect.Signature) -> _F:
    """``fn`` presented as the public function ``name`` of ``spec``'s module (doctest finds its examples there)."""
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__module__ = spec.__module__
    fn.__doc__ = doc
    fn.__signature__ = sig  # type: ignore[attr-defined]
    return fn


def public(loss: Optional[str] = None, *, returns: str = "Any") -> Callable[[Callable[..., Call]], Callable[..., Any]]:
    """Makes a public function from its declaration ``spec``, which carries the public name, parameters and
    docstring, resolves the arguments and returns the kernel's :data:`Call`; the function returns the call's
    value, and :func:`with_grad` makes its ``*_with_grad`` twin from the same declaration, so the parameters and
    their resolution are written once. ``loss`` names the catalog entry whose options the function takes (see
    :func:`catalog_options`); ``returns`` is its return annotation.

    The declaration runs one frame below the public function: warnings it raises while resolving pass
    ``stacklevel=3`` to point at the caller.
    """

    def decorate(spec: Callable[..., Call]) -> Callable[..., Any]:
        def fn(*args: Any, **kwargs: Any) -> Any:
            return spec(*args, **kwargs)()[0]

        sig = inspect.signature(spec).replace(return_annotation=returns)
        fn = _named(fn, spec, spec.__name__, spec.__doc__, sig)
        fn._declaration = (spec, loss)  # type: ignore[attr-defined]
        return fn if loss is None else catalog_options(loss)(fn)

    return decorate


def with_grad(fn: Callable[..., Any], doc: str, *, target_grad: bool = False) -> Callable[..., Any]:
    """The ``*_with_grad`` twin of a :func:`public` function ``fn``: the same parameters, then the keyword-only
    ``grad_output`` (the upstream gradient) and, with ``target_grad``, ``return_target_grad``; it returns
    ``(value, grad_input)``, or ``(value, grad_input, grad_target)`` when the target gradient is asked for.
    ``doc`` is its docstring."""
    spec, loss = fn._declaration  # type: ignore[attr-defined]
    sig = inspect.signature(spec)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    extra = [("grad_output", None, "Optional[ArrayLike]")]
    if target_grad:
        extra.append(("return_target_grad", False, "bool"))
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, d, a in extra]
    value = inspect.signature(fn).return_annotation
    returns = "Tuple[Any, ...]" if target_grad else f"Tuple[{value}, np.ndarray]"

    def twin(*args: Any, grad_output: Any = None, **kwargs: Any) -> Tuple[Any, ...]:
        if not target_grad:
            out, gi, _ = spec(*args, **kwargs)(grad_output, grad=True)
            return out, gi
        want = kwargs.pop("return_target_grad", False)
        out, gi, gt = spec(*args, **kwargs)(grad_output, grad=True, target_grad=want)
        return (out, gi, gt) if want else (out, gi)

    twin = _named(twin, spec, f"{spec.__name__}_with_grad", doc, sig.replace(parameters=params + rest,
                                                                              return_annotation=returns))
    return twin if loss is None else catalog_options(loss)(twin)


# ---------------------------------------------------------------------------------------------------- arrays


def _describe(dt: np.dtype) -> str:
    return f"dtype {dt}"


def asarray(x: Any, op: str, name: str) -> np.ndarray:
    """``np.asarray`` with a clear error for objects NumPy cannot convert."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise type(e)(f"{op}: {name} cannot be converted to a NumPy array: {e}") from e


def ready(a: np.ndarray, op: str, name: str) -> np.ndarray:
    """What the extension needs: native byte order, aligned data, at most 32 dimensions (any strides)."""
    if a.ndim > MAX_NDIM:
        raise ValueError(f"{op}: {name} has {a.ndim} dimensions; at most {MAX_NDIM} are supported")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if not a.flags.aligned:
        a = a.copy()
    return a


def native(dt: np.dtype) -> np.dtype:
    """The dtype in native byte order (``>f4`` on a little-endian machine is float32 as far as values go)."""
    return dt if dt.isnative else dt.newbyteorder("=")


def float_input(x: Any, op: str, name: str = "input") -> np.ndarray:
    """The main operand of a torch-style function: must already be floating point (as torch requires)."""
    a = asarray(x, op, name)
    if not is_float(a.dtype):
        raise TypeError(_float_dtype_error(op, name, a.dtype))
    return ready(a, op, name)


def _float_dtype_error(op: str, name: str, dt: np.dtype) -> str:
    kinds = {
        "b": "a boolean",
        "i": "an integer",
        "u": "an unsigned integer",
        "c": "a complex",
        "O": "an object",
        "U": "a string",
        "S": "a bytes",
    }
    what = kinds.get(dt.kind, "an unsupported")
    return (
        f"{op}: {name} must be a floating-point array (float16, float32, float64 or ml_dtypes.bfloat16), "
        f"got {what} array of dtype {dt}"
    )


def is_strong(x: Any) -> bool:
    """NumPy arrays and scalars take part in dtype promotion; Python numbers and lists adopt the input's dtype."""
    return isinstance(x, (np.ndarray, np.generic))


def numeric(x: Any, op: str, name: str, *, allow_bool: bool = True) -> np.ndarray:
    """A real-valued operand (target, weight, grad_output): floating, integer or (optionally) boolean."""
    a = asarray(x, op, name)
    k = a.dtype.kind
    if is_float(a.dtype):
        return a
    if k in "iu" or (k == "b" and allow_bool):
        return a
    raise TypeError(_float_dtype_error(op, name, a.dtype))


def cast(a: np.ndarray, dtype: np.dtype, op: str, name: str) -> np.ndarray:
    return ready(np.asarray(a).astype(dtype, copy=False), op, name)


def promote(op: str, x: np.ndarray, *others: Tuple[Any, np.ndarray]) -> np.dtype:
    """The compute dtype: the input's, promoted with every *floating* NumPy array among ``others``.

    ``others`` are ``(original object, converted array)`` pairs; Python lists and numbers do not promote.
    """
    dt = native(x.dtype)
    for orig, a in others:
        if a is not None and is_strong(orig) and is_float(a.dtype):
            # ml_dtypes registers torch's promotions: bfloat16 with float16 or float32 gives float32
            dt = np.result_type(dt, native(a.dtype))
    if not is_float(dt):  # e.g. longdouble
        raise TypeError(f"{op}: unsupported dtype {dt} (float16, float32, float64 or ml_dtypes.bfloat16 only)")
    return dt


def index_target(x: Any, op: str, name: str = "target") -> np.ndarray:
    """Class indices as int64 (int8/16/32/64 and uint8/16/32/64 are accepted; bool and floats are not)."""
    a = asarray(x, op, name)
    k = a.dtype.kind
    if k == "i":
        return ready(a.astype(np.int64, copy=False), op, name)
    if k == "u":
        if a.dtype.itemsize == 8 and a.size and int(a.max()) > _INT64_MAX:
            raise IndexError(f"{op}: {name} value {int(a.max())} is out of range for int64 class indices")
        return ready(a.astype(np.int64), op, name)
    if k == "f":
        raise TypeError(
            f"{op}: {name} must hold integer class indices, got dtype {a.dtype} "
            "(a floating-point target is read as class probabilities only when it has the input's shape)"
        )
    raise TypeError(f"{op}: {name} must hold integer class indices, got dtype {a.dtype}")


def grad_output_array(g: Any, dtype: np.dtype, op: str) -> Optional[np.ndarray]:
    """The upstream gradient in the compute dtype (a scalar becomes a 0-d array)."""
    if g is None:
        return None
    return cast(numeric(g, op, "grad_output", allow_bool=False), dtype, op, "grad_output")


def cast_grad(g: Optional[np.ndarray], dtype: np.dtype) -> Optional[np.ndarray]:
    """A gradient computed in the compute dtype, in the dtype of the argument it belongs to (``None`` stays)."""
    return None if g is None else g.astype(dtype, copy=False)


def upstream(g: Any, out: np.ndarray, op: str) -> np.ndarray:
    """The upstream gradient of ``out`` for a backward kernel: ones by default, a scalar broadcast to ``out``'s
    shape, else the array as given (in ``out``'s dtype)."""
    if g is None:
        return np.ones(out.shape, out.dtype)
    go = grad_output_array(g, out.dtype, op)
    return np.broadcast_to(go, out.shape) if go.ndim == 0 and out.ndim else go


def as_int(v: Any, op: str, name: str) -> int:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    try:
        i = operator.index(v)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an integer, got {type(v).__name__}") from None
    if not (_INT64_MIN <= i <= _INT64_MAX):
        raise ValueError(f"{op}: {name} = {i} does not fit in int64")
    return i


def as_float(v: Any, op: str, name: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a real number, got {type(v).__name__}") from None


def as_base(base: Any, op: str) -> Optional[float]:
    return None if base is None else as_float(base, op, "base")


def unbroadcast(g: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sums a gradient of a broadcast shape back to ``shape`` (the shape of the operand)."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)), dtype=g.dtype)
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True, dtype=g.dtype)
    return g.reshape(shape)


def scalar_or_array(a: Any) -> Any:
    """SciPy's convention: a 0-d result is returned as a NumPy scalar."""
    if isinstance(a, np.ndarray) and a.ndim == 0:
        return a[()]
    return a


# ------------------------------------------------------------------------------------------------ reductions

_LEGACY_WARNING = "size_average and reduce args will be deprecated, please use reduction='{}' instead."
KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def legacy_get_string(size_average: Any, reduce: Any, stacklevel: int, emit_warning: bool = True) -> str:
    """``torch.nn._reduction.legacy_get_string``: the reduction the deprecated arguments stand for."""
    if size_average is None:
        size_average = True
    if reduce is None:
        reduce = True
    if size_average and reduce:
        ret = "mean"
    elif reduce:
        ret = "sum"
    else:
        ret = "none"
    if emit_warning:
        warnings.warn(_LEGACY_WARNING.format(ret), UserWarning, stacklevel=stacklevel + 1)
    return ret


def get_enum(reduction: Any, stacklevel: int) -> str:
    """``torch.nn._reduction.get_enum``, returning the canonical name."""
    if isinstance(reduction, str):
        if reduction in ("none", "mean", "sum"):
            return reduction
        if reduction == "elementwise_mean":
            warnings.warn(
                "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
                UserWarning,
                stacklevel=stacklevel + 1,
            )
            return "mean"
    raise ValueError(f"{reduction} is not a valid value for reduction")


def resolve_reduction(size_average: Any, reduce: Any, reduction: Any, stacklevel: int) -> str:
    """The reduction of every loss but ``kl_div``, with torch's warnings; ``stacklevel`` is the caller's frame."""
    if size_average is not None or reduce is not None:
        reduction = legacy_get_string(size_average, reduce, stacklevel + 1)
    return get_enum(reduction, stacklevel + 1)


def resolve_kl_reduction(size_average: Any, reduce: Any, reduction: Any, ndim: int, stacklevel: int) -> Tuple[str, bool]:
    """``F.kl_div``'s reduction logic: returns (reduction for the kernel, divide the result by ``input.shape[0]``).

    ``'batchmean'`` goes to the kernel as such; the division flag is only set in torch's odd corner where the
    legacy arguments are combined with ``reduction='batchmean'`` (torch then divides the legacy result by the
    batch size).
    """
    if size_average is not None or reduce is not None:
        red = get_enum(legacy_get_string(size_average, reduce, stacklevel + 1), stacklevel + 1)
        return red, (isinstance(reduction, str) and reduction == "batchmean" and ndim != 0)
    if isinstance(reduction, str) and reduction == "mean":
        warnings.warn(KL_MEAN_WARNING, UserWarning, stacklevel=stacklevel + 1)
    if isinstance(reduction, str) and reduction == "batchmean":
        return "batchmean", False
    return get_enum(reduction, stacklevel + 1), False


def get_softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    """``torch.nn.functional._get_softmax_dim``: the implicit dimension, with torch's deprecation warning."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def in_place_logits(x: Any, op: str, name: str) -> np.ndarray:
    """The logits of an in-place call: the caller's own writeable float16/32/64 or bfloat16 NumPy array, never a
    copy (a bfloat16 array receives its gradient through :func:`_bf16_call`).

    A conversion would write the gradient into a temporary the caller never sees, so nothing is converted: a
    list, an integer or non-native-byte-order array, a read-only or misaligned array is an error.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{op}: {name} must be a NumPy array (the gradient is written over it), got {type(x).__name__}"
        )
    if x.dtype not in FLOAT_DTYPES and not (x.dtype.isnative and is_float(x.dtype)):
        raise TypeError(_float_dtype_error(op, name, x.dtype) + " in native byte order")
    if not x.flags.writeable:
        raise ValueError(f"{op}: {name} is read-only; the in-place call writes the gradient over it")
    if not x.flags.aligned:
        raise ValueError(f"{op}: {name} is not aligned in memory; the gradient cannot be written over it")
    if x.ndim > MAX_NDIM:
        raise ValueError(f"{op}: {name} has {x.ndim} dimensions; at most {MAX_NDIM} are supported")
    return x


def not_sharing(x: np.ndarray, op: str, name: str, **others: Optional[np.ndarray]) -> None:
    """Refuses operands that may share memory with ``x``, which an in-place call overwrites while reading them."""
    for other_name, a in others.items():
        if a is not None and np.may_share_memory(x, a):
            raise ValueError(
                f"{op}: {other_name} shares memory with {name}, which the in-place call overwrites with the "
                f"gradient; pass a copy"
            )
