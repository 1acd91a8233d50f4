"""Type stubs of the private extension module (called by the Python layer with validated, converted arguments)."""

from typing import Any, Optional, Tuple, Union

import numpy as np
from numpy.typing import NDArray

__version__: str

_A = NDArray[Any]
_Out = Tuple[Any, Optional[_A], Optional[_A]]
#: The scalar options of ``infoloss::DistillOptions`` in catalog order: temperature, t2_scaling, divergence, beta,
#: alpha, ignore_index, reduction, normalizer (read by name through the core's catalog).
_DistillOptions = Tuple[float, bool, str, float, float, int, str, Optional[float]]
#: The options of ``infoloss::UdaOptions`` in catalog order: temperature, sharpen, confidence_threshold, normalize.
_UdaOptions = Tuple[float, str, Optional[float], str]

def cross_entropy(
    input: _A, target: _A, weight: Optional[_A], ignore_index: int, reduction: str, label_smoothing: float,
    grad_output: Optional[_A], loss: bool, grad: bool,
) -> _Out: ...
def cross_entropy_probs(
    input: _A, target: _A, weight: Optional[_A], reduction: str, label_smoothing: float, grad_output: Optional[_A],
    loss: bool, grad: bool, target_grad: bool,
) -> _Out: ...
def nll_loss(
    input: _A, target: _A, weight: Optional[_A], ignore_index: int, reduction: str, grad_output: Optional[_A],
    loss: bool, grad: bool,
) -> _Out: ...
def kl_div(
    input: _A, target: _A, reduction: str, log_target: bool, grad_output: Optional[_A], loss: bool, grad: bool,
    target_grad: bool,
) -> _Out: ...
def binary_cross_entropy(
    input: _A, target: _A, weight: Optional[_A], reduction: str, grad_output: Optional[_A], loss: bool, grad: bool,
    target_grad: bool,
) -> _Out: ...
def binary_cross_entropy_with_logits(
    input: _A, target: _A, weight: Optional[_A], pos_weight: Optional[_A], reduction: str,
    grad_output: Optional[_A], loss: bool, grad: bool, target_grad: bool,
) -> _Out: ...
def distill(
    student_logits: _A, teacher_logits: _A, labels: Optional[_A], options: _DistillOptions,
    grad_output: Optional[_A], loss: bool, grad: bool,
) -> _Out: ...
def distill_topk(
    student_logits: _A, topk_indices: _A, topk_logprobs: _A, labels: Optional[_A], add_tail: bool,
    options: _DistillOptions, grad_output: Optional[_A], loss: bool, grad: bool,
) -> _Out: ...
def cross_entropy_in_place(
    input: _A, target: _A, weight: Optional[_A], ignore_index: int, reduction: str, label_smoothing: float,
    probs: bool,
) -> Any: ...
def elementwise_in_place(
    loss: str, input: _A, target: _A, weight: Optional[_A], pos_weight: Optional[_A], reduction: str,
    log_target: bool,
) -> Any: ...
def distill_in_place(student_logits: _A, teacher_logits: _A, labels: Optional[_A], options: _DistillOptions) -> Any: ...
def distill_topk_in_place(
    student_logits: _A, topk_indices: _A, topk_logprobs: _A, labels: Optional[_A], add_tail: bool,
    options: _DistillOptions,
) -> Any: ...
def uda_consistency(
    ori_logits: _A, aug_logits: _A, options: _UdaOptions, want_grad: bool = True,
) -> Union[Tuple[float, _A, _A, int, _A], Tuple[float, _A, int, _A]]: ...
def uda_consistency_backward(ori_logits: _A, aug_logits: _A, grad_output: _A, options: _UdaOptions) -> _A: ...
def cross_entropy_extras(
    input: _A, target: _A, weight: Optional[_A], ignore_index: int, reduction: str, label_smoothing: float,
    lse_square_scale: float, softcap: Optional[float], return_lse: bool, return_token_accuracy: bool,
    grad_output: Optional[_A], grad: bool,
) -> Tuple[Any, Any, Optional[_A], Any, Optional[_A]]: ...
def linear_cross_entropy(
    input: _A, linear_weight: _A, target: _A, linear_bias: Optional[_A], weight: Optional[_A], ignore_index: int,
    reduction: str, label_smoothing: float, lse_square_scale: float, softcap: Optional[float], return_lse: bool,
    return_token_accuracy: bool, chunk_size: Optional[int], grad_output: Optional[_A],
) -> Tuple[Any, Any, Optional[_A], Any, _A, _A, Optional[_A]]: ...
def linear_distill(
    student_hidden: _A, student_weight: _A, teacher_hidden: _A, teacher_weight: _A, labels: Optional[_A],
    options: _DistillOptions, chunk_size: Optional[int], student_bias: Optional[_A] = None,
    teacher_bias: Optional[_A] = None, teacher_topk: Optional[int] = None, add_tail: bool = False,
    grad_output: Optional[_A] = None,
) -> Tuple[Any, _A, _A, Optional[_A]]: ...
def log_softmax(input: _A, dim: int) -> _A: ...
def softmax(input: _A, dim: int) -> _A: ...
def logsumexp(input: _A, dim: int) -> _A: ...
def log_softmax_backward(output: _A, grad_output: _A, dim: int) -> _A: ...
def softmax_backward(output: _A, grad_output: _A, dim: int) -> _A: ...
def logsumexp_backward(input: _A, grad_output: _A, dim: int) -> _A: ...
def entr(x: _A, grad_output: Optional[_A] = None) -> _A: ...
def rel_entr(x: _A, y: _A, grad_output: Optional[_A] = None) -> Any: ...
def entropy(pk: _A, qk: Optional[_A], base: Optional[float], axis: int, grad_output: Optional[_A] = None) -> Any: ...
def shannon_cross_entropy(
    pk: _A, qk: _A, base: Optional[float], axis: int, grad_output: Optional[_A] = None
) -> Any: ...
def jensenshannon(
    p: _A, q: _A, base: Optional[float], axis: int, keepdims: bool, grad_output: Optional[_A] = None
) -> Any: ...
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
