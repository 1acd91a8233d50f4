"""Type stubs of the private extension module (called by the Python layer with validated, converted arguments)."""

from typing import Any, Optional, Protocol, Tuple, Union

import numpy as np
from numpy.typing import NDArray

__version__: str

_A = NDArray[Any]
_Out = Tuple[Any, Optional[_A], Optional[_A]]
#: A loss's scalar options in the order of the core's catalog (``_catalog()``), each ``None``, ``bool``, ``int``,
#: ``float`` or ``str``; set by name through the catalog, so the extension's signatures do not list them.
_Options = Tuple[Any, ...]

class _Loss(Protocol):
    """The six losses of ``src/losses.rs``: ``(loss or None, grad_input or None, grad_target or None)``."""

    def __call__(
        self, input: _A, target: _A, options: _Options, weight: Optional[_A] = None, pos_weight: Optional[_A] = None,
        grad_output: Optional[_A] = None, loss: bool = True, grad: bool = False, target_grad: bool = False,
    ) -> _Out: ...

cross_entropy: _Loss
cross_entropy_probs: _Loss
nll_loss: _Loss
kl_div: _Loss
binary_cross_entropy: _Loss
binary_cross_entropy_with_logits: _Loss

def distill(
    student_logits: _A, teacher_logits: _A, labels: Optional[_A], options: _Options,
    grad_output: Optional[_A], loss: bool, grad: bool,
) -> _Out: ...
def distill_topk(
    student_logits: _A, topk_indices: _A, topk_logprobs: _A, labels: Optional[_A], add_tail: bool,
    options: _Options, grad_output: Optional[_A], loss: bool, grad: bool,
) -> _Out: ...
def cross_entropy_in_place(input: _A, target: _A, weight: Optional[_A], options: _Options, probs: bool) -> Any: ...
def elementwise_in_place(
    loss: str, input: _A, target: _A, weight: Optional[_A], pos_weight: Optional[_A], options: _Options,
) -> Any: ...
def distill_in_place(student_logits: _A, teacher_logits: _A, labels: Optional[_A], options: _Options) -> Any: ...
def distill_topk_in_place(
    student_logits: _A, topk_indices: _A, topk_logprobs: _A, labels: Optional[_A], add_tail: bool,
    options: _Options,
) -> Any: ...
def uda_consistency(
    ori_logits: _A, aug_logits: _A, options: _Options, want_grad: bool = True,
) -> Union[Tuple[float, _A, _A, int, _A], Tuple[float, _A, int, _A]]: ...
def uda_consistency_backward(ori_logits: _A, aug_logits: _A, grad_output: _A, options: _Options) -> _A: ...
def cross_entropy_extras(
    input: _A, target: _A, weight: Optional[_A], options: _Options, grad_output: Optional[_A], grad: bool,
) -> Any: ...
def linear_cross_entropy(
    input: _A, linear_weight: _A, target: _A, linear_bias: Optional[_A], weight: Optional[_A], options: _Options,
    grad_output: Optional[_A],
) -> Any: ...
def linear_distill(
    student_hidden: _A, student_weight: _A, teacher_hidden: _A, teacher_weight: _A, labels: Optional[_A],
    options: _Options, student_bias: Optional[_A] = None, teacher_bias: Optional[_A] = None,
    teacher_topk: Optional[int] = None, add_tail: bool = False, grad_output: Optional[_A] = None,
) -> Any: ...
def log_softmax(input: _A, dim: int) -> _A: ...
def softmax(input: _A, dim: int) -> _A: ...
def logsumexp(input: _A, dim: int) -> _A: ...
def log_softmax_backward(output: _A, grad_output: _A, dim: int) -> _A: ...
def softmax_backward(output: _A, grad_output: _A, dim: int) -> _A: ...
def logsumexp_backward(input: _A, grad_output: _A, dim: int) -> _A: ...
def entr(x: _A, grad_output: Optional[_A] = None) -> _A: ...
def rel_entr(x: _A, y: _A, grad_output: Optional[_A] = None) -> Any: ...
def entropy(pk: _A, qk: Optional[_A], options: _Options, grad_output: Optional[_A] = None) -> Any: ...
def shannon_cross_entropy(pk: _A, qk: _A, options: _Options, grad_output: Optional[_A] = None) -> Any: ...
def jensenshannon(p: _A, q: _A, options: _Options, grad_output: Optional[_A] = None) -> Any: ...
def self_information(p: _A, base: Optional[float], grad_output: Optional[_A] = None) -> _A: ...
def set_num_threads(n: int) -> None:
    """Sets the pool's size to ``n`` threads (1 to 4096) for good: later ``_set_default_num_threads`` calls are
    ignored, in this process and in its forked children."""
def get_num_threads() -> int:
    """The pool's size: the explicit count, else the default count (``RAYON_NUM_THREADS`` or one per CPU, until
    ``_set_default_num_threads`` moves it)."""
def _set_default_num_threads(n: int) -> None:
    """Sets the pool's size to ``n`` (1 to 4096) unless ``set_num_threads`` was ever called (the explicit call
    wins). ``infoloss.torch`` calls it with ``torch.get_num_threads()`` before each op, so ``torch.set_num_threads``
    reaches infoloss; a no-op (one uncontended lock) when ``n`` is already the size. The pool is rebuilt lazily,
    on the next computation, when the size changed. ``ValueError`` for ``n`` out of range."""
def _panic_for_tests() -> None: ...
def _catalog() -> list[dict[str, Any]]:
    """The core's option catalog: one dict per loss (``name``, ``options_type``, ``grads``, ``in_place``,
    ``pytorch``, ``options``: dicts ``name``, ``type``, ``default``, ``choices``, ``doc``)."""
def _hold_pool_lock_for_tests(seconds: float) -> None: ...
