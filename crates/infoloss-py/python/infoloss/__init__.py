"""infoloss: information-theoretic losses computed exactly as PyTorch 2.15 does, forward and backward.

The functions take NumPy arrays (float16, float32, float64 or ``ml_dtypes.bfloat16``, any strides; class indices
of any integer dtype) and return NumPy arrays, or Python floats for reduced losses.

- ``torch.nn.functional`` names, argument order, defaults and warnings: :func:`cross_entropy`,
  :func:`nll_loss`, :func:`kl_div`, :func:`binary_cross_entropy`, :func:`binary_cross_entropy_with_logits`,
  :func:`log_softmax`, :func:`softmax`, :func:`logsumexp` (as ``torch.logsumexp``).
- SciPy-compatible measures: :func:`entropy` (``scipy.stats.entropy``), :func:`rel_entr`, :func:`entr`
  (``scipy.special``), :func:`jensenshannon` (``scipy.spatial.distance``), plus :func:`self_information` and
  :func:`shannon_cross_entropy`.
- Distillation and semi-supervised losses: :func:`distill`, :func:`distill_topk` (sparse top-k teacher),
  :func:`uda_consistency` (:func:`uda_consistency_loss` for the loss alone, :func:`uda_consistency_backward` for an
  upstream gradient); the option names are the
  Rust core's.
- Large-vocabulary losses: :func:`cross_entropy_extras` (z-loss, softcap, log-sum-exp, token accuracy) and the
  fused linear losses :func:`linear_cross_entropy` (``torch.nn.functional.linear_cross_entropy``'s signature),
  :func:`linear_distill` and :func:`linear_distill_topk` (against a stored top-k teacher), which never hold the
  ``(rows, classes)`` logits.
- Gradients: ``<name>_with_grad(..., grad_output=None, return_target_grad=False)`` returns
  ``(loss, grad_input)`` or ``(loss, grad_input, grad_target)``.
- ``infoloss.torch``: ``torch.autograd.Function`` drop-ins for CPU tensors (imported on first use; needs torch).
- ``infoloss.cache`` (``import infoloss.cache``): the teacher cache for offline distillation, a teacher's top-k
  log-probabilities stored on disk (``TeacherCacheWriter``, ``TeacherCache`` with zero-copy reads,
  ``select_topk``); ``infoloss.torch.TeacherCacheDataset`` reads it in a ``DataLoader``.
- The GIL is released while computing (threads may call infoloss concurrently); :func:`set_num_threads` sets
  the number of threads. Forked children (``multiprocessing``, ``DataLoader`` workers) compute normally.
- ``ml_dtypes.bfloat16`` arrays (optional ``ml_dtypes`` package) are accepted wherever float arrays are, and
  computed as ``infoloss.torch`` computes bfloat16: in float32, each result rounded once to bfloat16.

Errors raise ``ValueError`` (shapes, options, values), ``IndexError`` (class index out of range),
``TypeError`` (dtypes) or ``MemoryError`` with infoloss's messages.

Example:
    >>> import numpy as np, infoloss
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], dtype=np.float32)
    >>> round(infoloss.cross_entropy(logits, np.array([0, 1])), 4)
    0.3185
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _infoloss
from ._distill import (
    UdaLossResult,
    UdaResult,
    distill,
    distill_topk,
    distill_topk_with_grad,
    distill_topk_with_grad_in_place,
    distill_with_grad,
    distill_with_grad_in_place,
    uda_consistency,
    uda_consistency_backward,
    uda_consistency_loss,
)
from ._functional import (
    binary_cross_entropy,
    binary_cross_entropy_with_grad,
    binary_cross_entropy_with_grad_in_place,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_with_grad,
    binary_cross_entropy_with_logits_with_grad_in_place,
    cross_entropy,
    cross_entropy_with_grad,
    cross_entropy_with_grad_in_place,
    kl_div,
    kl_div_with_grad,
    kl_div_with_grad_in_place,
    log_softmax,
    log_softmax_with_grad,
    logsumexp,
    logsumexp_with_grad,
    nll_loss,
    nll_loss_with_grad,
    softmax,
    softmax_with_grad,
)
from ._linear import (
    CrossEntropyExtrasResult,
    LinearCrossEntropyResult,
    LinearDistillResult,
    cross_entropy_extras,
    cross_entropy_extras_with_grad,
    linear_cross_entropy,
    linear_cross_entropy_with_grad,
    linear_distill,
    linear_distill_topk,
    linear_distill_topk_with_grad,
    linear_distill_with_grad,
)
from ._scipy import (
    entr,
    entr_with_grad,
    entropy,
    entropy_with_grad,
    jensenshannon,
    jensenshannon_with_grad,
    rel_entr,
    rel_entr_with_grad,
    self_information,
    self_information_with_grad,
    shannon_cross_entropy,
    shannon_cross_entropy_with_grad,
)

__version__: str = _infoloss.__version__


def set_num_threads(n: int) -> None:
    """Sets the number of threads infoloss computes with (``n ≥ 1``), like ``torch.set_num_threads``.

    Until it is called, infoloss uses ``RAYON_NUM_THREADS`` or one thread per CPU, and the ``infoloss.torch``
    functions set infoloss's count to torch's (``torch.get_num_threads()``, so ``torch.set_num_threads`` reaches
    infoloss) before each op. An explicit ``set_num_threads`` wins over torch's count for the rest of the process.

    infoloss computes in its own thread pool (never rayon's global one), so it works in forked children
    (``multiprocessing``, ``DataLoader(num_workers > 0)``): a child rebuilds the pool on its first call, with the
    same number of threads. Results are the same bits for every thread count.

    Example:
        >>> import infoloss
        >>> infoloss.set_num_threads(2); infoloss.get_num_threads()
        2
    """
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__}")
    _infoloss.set_num_threads(int(n.__index__()))


def get_num_threads() -> int:
    """The number of threads infoloss computes with (see :func:`set_num_threads`).

    Example:
        >>> import infoloss
        >>> infoloss.get_num_threads() >= 1
        True
    """
    return int(_infoloss.get_num_threads())


def __getattr__(name: str) -> Any:
    # `infoloss.torch` is imported on first use, so `import infoloss` never imports torch.
    if name == "torch":
        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'infoloss' has no attribute {name!r}")


__all__ = [
    "CrossEntropyExtrasResult",
    "LinearCrossEntropyResult",
    "LinearDistillResult",
    "UdaLossResult",
    "UdaResult",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_grad_in_place",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "binary_cross_entropy_with_logits_with_grad_in_place",
    "cross_entropy",
    "cross_entropy_extras",
    "cross_entropy_extras_with_grad",
    "cross_entropy_with_grad",
    "cross_entropy_with_grad_in_place",
    "distill",
    "distill_topk",
    "distill_topk_with_grad",
    "distill_topk_with_grad_in_place",
    "distill_with_grad",
    "distill_with_grad_in_place",
    "entr",
    "entr_with_grad",
    "entropy",
    "entropy_with_grad",
    "get_num_threads",
    "jensenshannon",
    "jensenshannon_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "kl_div_with_grad_in_place",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "linear_distill",
    "linear_distill_topk",
    "linear_distill_topk_with_grad",
    "linear_distill_with_grad",
    "log_softmax",
    "log_softmax_with_grad",
    "logsumexp",
    "logsumexp_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
    "rel_entr",
    "rel_entr_with_grad",
    "self_information",
    "self_information_with_grad",
    "set_num_threads",
    "shannon_cross_entropy",
    "shannon_cross_entropy_with_grad",
    "softmax",
    "softmax_with_grad",
    "uda_consistency",
    "uda_consistency_backward",
    "uda_consistency_loss",
]
