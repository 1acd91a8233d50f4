"""Vocab-parallel losses on ``torch.distributed``: each rank holds the logits of its slice of the vocabulary
(a tensor-parallel ``lm_head``), and the loss needs only a few numbers per row from the other ranks.

infoloss computes every local step; ``torch.distributed.all_reduce`` carries the row statistics between them
(all-reduce MAX of the row maxima, then one SUM of the concatenated row sums, and one more SUM for generalized
JSD with ``0 < beta < 1`` and total variation), plus one SUM before the first step that checks that every rank has
the same rows, targets and options and that the slices tile the vocabulary (a mismatch is a ``RuntimeError``
naming the rank). The backward pass needs no communication: each rank's gradient is its slice.

**Faults.** A peer that dies or raises mid-step makes the collective fail on the other ranks: gloo reports a
closed connection at once, and a peer that hangs is reported when the process group's timeout (the ``timeout=``
of ``torch.distributed.init_process_group``; torch's default is 30 minutes, the tests use 20 seconds) runs out.
infoloss turns either into ``RuntimeError: vocab_parallel_…: rank R: all-reduce (max|sum) of N values failed: …``.

**Engines.** CPU tensors with the gloo backend. With NCCL the statistics (not the logits) are copied to the
current CUDA device for each all-reduce and back; the computation itself stays on the CPU (this path has not been
run here: no GPU).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from . import _common as c
from . import _distill as _D
from . import _infoloss as _C

_LOW = (torch.float16, torch.bfloat16)


class _Group:
    """The collective infoloss calls back: ``all_reduce(buf, "max" | "sum")`` in place on a float64 NumPy buffer
    over ``group`` (the default group when ``None``)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" \
            else None

    def all_reduce(self, buf: np.ndarray, how: str) -> None:
        op = dist.ReduceOp.MAX if how == "max" else dist.ReduceOp.SUM
        t = torch.from_numpy(buf)
        if self.device is None:
            dist.all_reduce(t, op=op, group=self.group)
        else:  # pragma: no cover - needs NCCL and a GPU
            d = t.to(self.device)
            dist.all_reduce(d, op=op, group=self.group)
            t.copy_(d.cpu())


def _vocab_size(width: int, vocab_size: Optional[int], group: Any) -> int:
    """The whole vocabulary: as given, or the sum of every rank's slice width (one all-reduce)."""
    if vocab_size is not None:
        return int(vocab_size)
    t = torch.tensor([width], dtype=torch.int64)
    dist.all_reduce(t, group=group)
    return int(t.item())


def _np(t: torch.Tensor, name: str, op: str) -> np.ndarray:
    """A CPU tensor as NumPy without a copy (float16/bfloat16 widened to float32)."""
    if t.device.type != "cpu":
        raise ValueError(f"{op}: {name} must be a CPU tensor (infoloss computes on the CPU), got {t.device}")
    t = t.detach()
    if t.dtype in _LOW:
        t = t.float()
    return t.contiguous().numpy()


def _tensor(v: Any, dtype: torch.dtype) -> torch.Tensor:
    """A result of the extension (a Python float for a reduced loss, else an array) as a tensor of ``dtype``,
    rounded once (``torch.as_tensor`` of a Python float would round it to float32 first)."""
    return torch.from_numpy(np.asarray(v, dtype=np.float64)).to(dtype)


_CE = "cross_entropy_extras"
#: The cross-entropy options the vocab-parallel losses do not offer (the argmax would need one more collective).
_NOT_SHARDED = ("return_token_accuracy",)


def _ce_options(op: str, options: dict, reduction: str, lse_square_scale: float) -> tuple:
    """The options tuple of ``cross_entropy_extras`` for a vocab-parallel cross-entropy: the reduction resolved
    as torch does, the z-loss scale as given (the linear loss rescales it), no token accuracy."""
    for name in _NOT_SHARDED:
        if name in options:
            raise TypeError(f"{op}() got an unexpected keyword argument '{name}'")
    given = dict(options, reduction=c.resolve_reduction(None, None, reduction, 4), lse_square_scale=lse_square_scale)
    return c.option_tuple(_CE, given, op=op)


def _scale(grad: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The saved gradient (for an upstream gradient of 1) times the upstream gradient: a scalar, or one per row."""
    return grad * (g if g.dim() == 0 else g.reshape(-1, 1))


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                vocab_start: int, vocab_size: int, options: tuple, group: Any) -> Any:
        op = "vocab_parallel_cross_entropy"
        w = None if weight is None else _np(weight.to(logits.dtype), "weight", op)
        loss, z, lse, grad = _C.vocab_parallel_cross_entropy(
            _np(logits, "logits", op), _np(target, "target", op), w, vocab_start, vocab_size, options,
            _Group(group), logits.requires_grad)
        ctx.save_for_backward(None if grad is None else torch.from_numpy(grad).to(logits.dtype))
        out = tuple(_tensor(v, logits.dtype) for v in (loss, z, lse))
        ctx.mark_non_differentiable(out[1], out[2])
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor, _gz: Any, _gl: Any) -> Any:
        (grad,) = ctx.saved_tensors
        return _scale(grad, g), None, None, None, None, None, None


class _Distill(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, student: torch.Tensor, teacher: torch.Tensor, labels: Optional[torch.Tensor],
                vocab_start: int, vocab_size: int, options: tuple, group: Any) -> torch.Tensor:
        op = "vocab_parallel_distill"
        lab = None if labels is None else _np(labels, "labels", op)
        loss, grad = _C.vocab_parallel_distill(
            _np(student, "student", op), _np(teacher.to(student.dtype), "teacher", op), lab, vocab_start,
            vocab_size, options, _Group(group), student.requires_grad)
        ctx.save_for_backward(None if grad is None else torch.from_numpy(grad).to(student.dtype))
        return _tensor(loss, student.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        (grad,) = ctx.saved_tensors
        return _scale(grad, g), None, None, None, None, None, None


@c.catalog_options("cross_entropy_extras", left_out=_NOT_SHARDED)
def vocab_parallel_cross_entropy(
    logits_shard: torch.Tensor,
    target: torch.Tensor,
    *,
    vocab_start: int,
    vocab_size: Optional[int] = None,
    group: Any = None,
    weight: Optional[torch.Tensor] = None,
    **options: Any,
) -> Any:
    r"""Cross-entropy of logits whose vocabulary is split across the ranks of ``group``.

    This rank holds ``logits_shard`` ``(N, V_local)``, the columns ``[vocab_start, vocab_start + V_local)`` of
    the ``(N, vocab_size)`` logits; every rank passes the same ``target`` ``(N,)`` (classes of the whole
    vocabulary) and options. ``weight`` is this rank's slice ``(V_local,)`` of the class weights. The loss is
    :func:`infoloss.torch.cross_entropy_extras` of the gathered logits — ``F.cross_entropy`` with label smoothing
    over the **whole** vocabulary (Megatron smooths over the local slice only), plus the z-loss
    ``lse_square_scale·lse²`` and the softcap ``c·tanh(x/c)`` — the same value on every rank; the gradient flows
    to this rank's slice. ``vocab_size`` defaults to the sum of the ranks' widths (one more all-reduce).

    Returns the loss, or ``(loss, lse)`` with ``return_lse`` (the per-row log-sum-exp over the whole vocabulary).

    Example (one process; with ``torchrun --nproc-per-node 2`` each rank passes its half)::

        >>> import torch, torch.distributed as dist, infoloss.torch as itorch
        >>> x = torch.randn(4, 10, requires_grad=True); y = torch.tensor([0, 9, 3, 5])
        >>> # dist.init_process_group("gloo") ... on each rank:
        >>> # loss = itorch.vocab_parallel_cross_entropy(x[:, 5 * rank:5 * rank + 5], y, vocab_start=5 * rank)
    """
    op = "vocab_parallel_cross_entropy"
    opts = _ce_options(op, options, options.get("reduction", "mean"), options.get("lse_square_scale", 0.0))
    total = _vocab_size(logits_shard.shape[-1], vocab_size, group)
    loss, _, lse = _CrossEntropy.apply(logits_shard, target, weight, int(vocab_start), total, opts, group)
    return (loss, lse) if c.option(_CE, opts, "return_lse") else loss


def vocab_parallel_distill(
    student_shard: torch.Tensor,
    teacher_shard: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    vocab_start: int,
    vocab_size: Optional[int] = None,
    group: Any = None,
    **options: Any,
) -> torch.Tensor:
    r"""Knowledge distillation of student and teacher logits whose vocabulary is split across the ranks of
    ``group``: this rank holds the columns ``[vocab_start, vocab_start + V_local)`` of both; every rank passes the
    same ``labels`` (if any) and options.

    The options are :func:`infoloss.torch.distill`'s (``temperature``, ``t2_scaling``, ``divergence``, ``beta``,
    ``alpha``, ``ignore_index``, ``reduction``, ``normalizer``, ``logit_scale``, ``softcap``); the loss is
    ``distill`` of the gathered logits, the same on every rank, and the gradient flows to this rank's student
    slice (the teacher is a constant). For data parallelism pass ``normalizer=global_token_count(labels)``.
    """
    op = "vocab_parallel_distill"
    opts = _D._distill_options(op, options)
    total = _vocab_size(student_shard.shape[-1], vocab_size, group)
    return _Distill.apply(student_shard, teacher_shard, labels, int(vocab_start), total, opts, group)


def global_token_count(labels: torch.Tensor, ignore_index: int = -100, group: Any = None) -> float:
    """The number of non-ignored labels over every rank of ``group`` (one all-reduce): the ``normalizer`` of a
    data-parallel or gradient-accumulation step, so each rank's loss is its share of the global token mean."""
    n = (labels != ignore_index).sum().to(torch.float64).reshape(1)
    dist.all_reduce(n, group=group)
    return float(n.item())


def _linear_pass(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], target: torch.Tensor,
                 class_weight: Optional[np.ndarray], vocab_start: int, vocab_size: int, options: tuple,
                 group: _Group, chunk: int, row_scale: Optional[torch.Tensor], want_grad: bool) -> Any:
    """The chunked pass of :func:`vocab_parallel_linear_cross_entropy`: per chunk of rows the logits of this rank's
    slice (``h @ W.T + b``), the vocab-parallel step and, with ``want_grad``, the chunk's gradient pushed through
    the two GEMMs (each row scaled by ``row_scale``, the upstream gradient of ``'none'``). Returns the per-chunk
    losses, z-losses and lse, and ``(grad_hidden, grad_weight, grad_bias)`` — grad_hidden is this rank's part, to
    be summed over the ranks."""
    op = "vocab_parallel_linear_cross_entropy"
    n = hidden.shape[0]
    losses, zs, lses = [], [], []
    gh = torch.zeros_like(hidden) if want_grad else None
    gw = torch.zeros_like(weight) if want_grad else None
    gb = torch.zeros_like(bias) if want_grad and bias is not None else None
    for lo in range(0, max(n, 1), chunk):
        h = hidden[lo:lo + chunk]
        logits = h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)
        loss, z, lse, g = _C.vocab_parallel_cross_entropy(
            _np(logits, "logits", op), _np(target[lo:lo + chunk], "target", op), class_weight, vocab_start,
            vocab_size, options, group, want_grad)
        losses.append(np.atleast_1d(loss))
        zs.append(np.atleast_1d(z))
        lses.append(lse)
        if want_grad:
            g = torch.from_numpy(g).to(hidden.dtype)
            if row_scale is not None:
                g = g * row_scale[lo:lo + chunk].reshape(-1, 1)
            gh[lo:lo + chunk] = g @ weight
            gw += g.T @ h
            if gb is not None:
                gb += g.sum(0)
    return losses, zs, lses, (gh, gw, gb)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                target: torch.Tensor, class_weight: Optional[torch.Tensor], vocab_start: int, vocab_size: int,
                cfg: tuple, group: Any) -> Any:
        op, opts, chunk = cfg
        grp = _Group(group)
        dtype = hidden.dtype
        h, w = hidden.detach(), weight.detach()
        b = None if bias is None else bias.detach()
        if dtype in _LOW:
            h, w, b = h.float(), w.float(), None if b is None else b.float()
        cw = None if class_weight is None else _np(class_weight.to(h.dtype), "class_weight", op)
        red = c.option(_CE, opts, "reduction")
        keep = target != c.option(_CE, opts, "ignore_index")
        count = int(keep.sum())
        # The mean divides the cross-entropy by the kept rows' class weight W and the z-loss by their count n; the
        # chunks run as 'sum' with the z-loss scale s·W/n, so dividing everything by W gives both at once.
        total_w = float(count)
        if class_weight is not None and count:
            y = target[keep] - vocab_start
            mine = (y >= 0) & (y < w.shape[0])
            t = torch.tensor([float(class_weight.double()[y[mine]].sum())], dtype=torch.float64)
            dist.all_reduce(t, group=group)
            total_w = float(t.item())
        s = c.option(_CE, opts, "lse_square_scale")
        scale_z = s * total_w / count if red == "mean" and count else s
        options = _ce_options(op, {n: c.option(_CE, opts, n) for n in ("ignore_index", "label_smoothing", "softcap")},
                              "none" if red == "none" else "sum", scale_z)
        want = red != "none" and any(ctx.needs_input_grad[:3])
        losses, zs, lses, grads = _linear_pass(h, w, b, target, cw, vocab_start, vocab_size, options, grp,
                                               chunk, None, want)
        div = (total_w if count else float("nan")) if red == "mean" else 1.0
        if red == "none":
            loss = torch.from_numpy(np.concatenate(losses)[:hidden.shape[0]])
        else:
            loss = torch.tensor(sum(float(x.sum()) for x in losses) / div, dtype=torch.float64)
        gh, gw, gb = grads
        if want:
            dist.all_reduce(gh, group=group)
            if red == "mean":
                inv = 0.0 if not count else 1.0 / div
                gh, gw = gh * inv, gw * inv
                gb = None if gb is None else gb * inv
        ctx.cfg = (h, w, b, target, cw, vocab_start, vocab_size, options, group, chunk, red, dtype)
        ctx.grads = (gh, gw, gb) if want else None
        lse = (torch.from_numpy(np.concatenate(lses)) if lses else torch.zeros(0)).to(dtype)
        ctx.mark_non_differentiable(lse)
        return loss.to(dtype), lse

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor, _glse: Any) -> Any:
        h, w, b, target, cw, lo, total, options, group, chunk, red, dtype = ctx.cfg
        if red == "none":  # the upstream gradient scales each row inside the GEMMs
            _, _, _, (gh, gw, gb) = _linear_pass(h, w, b, target, cw, lo, total, options, _Group(group), chunk,
                                                 g.to(h.dtype), True)
            dist.all_reduce(gh, group=group)
        else:
            gh, gw, gb = ctx.grads
            gh, gw, gb = gh * g, gw * g, None if gb is None else gb * g
        cast = (lambda t: None if t is None else t.to(dtype))
        return cast(gh), cast(gw), cast(gb), None, None, None, None, None, None


@c.catalog_options("cross_entropy_extras", left_out=_NOT_SHARDED)
def vocab_parallel_linear_cross_entropy(
    hidden: torch.Tensor,
    weight_shard: torch.Tensor,
    target: torch.Tensor,
    *,
    vocab_start: int,
    vocab_size: Optional[int] = None,
    group: Any = None,
    bias_shard: Optional[torch.Tensor] = None,
    class_weight: Optional[torch.Tensor] = None,
    chunk_size: int = 1024,
    **options: Any,
) -> Any:
    r"""Cross-entropy of a tensor-parallel ``lm_head``: ``hidden`` ``(N, H)`` is the same on every rank, this rank
    holds the rows ``[vocab_start, vocab_start + V_local)`` of the output layer, ``weight_shard`` ``(V_local, H)``
    (and ``bias_shard`` ``(V_local,)``). The logits are computed ``chunk_size`` rows at a time and never whole;
    each chunk runs the vocab-parallel cross-entropy (:func:`vocab_parallel_cross_entropy`'s options, with
    ``class_weight`` this rank's slice of the class weights) and its gradient goes through the two GEMMs at once.
    ``grad_hidden`` is summed over the ranks (one all-reduce of ``(N, H)``, as Cut Cross-Entropy's vocab-parallel
    mode does); the weight and bias gradients stay on their rank.

    Equals ``F.cross_entropy(hidden @ W.T + b, target, ...)`` with ``W`` the gathered weight (plus the z-loss and
    softcap of :func:`infoloss.torch.cross_entropy_extras`). Returns the loss, or ``(loss, lse)`` with ``return_lse``.
    """
    op = "vocab_parallel_linear_cross_entropy"
    if chunk_size < 1:
        raise ValueError(f"{op}: invalid chunk_size = {chunk_size}: must be >= 1")
    opts = _ce_options(op, options, options.get("reduction", "mean"), options.get("lse_square_scale", 0.0))
    total = _vocab_size(weight_shard.shape[0], vocab_size, group)
    loss, lse = _LinearCrossEntropy.apply(hidden, weight_shard, bias_shard, target, class_weight,
                                          int(vocab_start), total, (op, opts, int(chunk_size)), group)
    return (loss, lse) if c.option(_CE, opts, "return_lse") else loss
