"""The teacher cache (:mod:`infoloss.cache`) for torch training loops: :class:`TeacherCacheDataset` and
:func:`distill_topk_args`, exported by ``infoloss.torch``."""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np
import torch

from .cache import TeacherCache

__all__ = ["TeacherCacheDataset", "distill_topk_args"]


class TeacherCacheDataset(torch.utils.data.Dataset):
    """The rows of a teacher cache (:class:`infoloss.cache.TeacherCache`) as a ``torch.utils.data.Dataset``:
    item ``i`` is ``{"indices": int64 (k,), "logprobs": float32 (k,), "tail": float32 scalar}``, the teacher's
    top-k for token ``i`` (indices as ``torch.topk`` gives them, the int64 that :func:`distill_topk` takes).

    Works with ``DataLoader(num_workers=n)``: the dataset pickles as its path, and each worker process maps and
    checks (CRC-32) the shards it reads itself, on first use. The default collate stacks the items (``indices``
    ``(B, k)``, ``logprobs`` ``(B, k)``, ``tail`` ``(B,)``), as :meth:`collate` does; :func:`distill_topk_args`
    turns a batch into the teacher arguments of :func:`distill_topk`. Distill at the cache's :attr:`temperature`.

    Example:
        >>> import tempfile, numpy as np, torch, infoloss.torch as itorch
        >>> from infoloss.cache import TeacherCacheWriter
        >>> d = tempfile.mkdtemp()
        >>> with TeacherCacheWriter(d, vocab_size=5, k=2, temperature=2.0) as w:
        ...     w.push_logits(np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32))
        >>> ds = itorch.TeacherCacheDataset(d)
        >>> batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
        >>> batch["indices"].shape, batch["indices"].dtype, batch["tail"].shape
        (torch.Size([4, 2]), torch.int64, torch.Size([4]))
        >>> student = torch.zeros(4, 5, requires_grad=True)
        >>> loss = itorch.distill_topk(student, *itorch.distill_topk_args(batch), add_tail=True,
        ...                            temperature=ds.temperature)
        >>> loss.backward(); student.grad.shape
        torch.Size([4, 5])
    """

    def __init__(self, path: Any) -> None:
        self.cache = TeacherCache(path)

    @property
    def temperature(self) -> float:
        """The temperature the cached log-probabilities were taken at."""
        return self.cache.temperature

    @property
    def k(self) -> int:
        """Entries per row."""
        return self.cache.k

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        r = self.cache[i]
        return {
            "indices": torch.from_numpy(r.indices.astype(np.int64)),
            "logprobs": torch.from_numpy(np.array(r.logprobs, dtype=np.float32)),
            "tail": torch.tensor(float(r.tail), dtype=torch.float32),
        }

    @staticmethod
    def collate(samples: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """Stacks items into a batch: ``indices`` ``(B, k)``, ``logprobs`` ``(B, k)``, ``tail`` ``(B,)``."""
        return {key: torch.stack([s[key] for s in samples]) for key in ("indices", "logprobs", "tail")}


def distill_topk_args(batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(topk_indices, topk_logprobs)`` of a batch of :class:`TeacherCacheDataset`, the teacher arguments of
    :func:`distill_topk`: ``distill_topk(student_logits, *distill_topk_args(batch), add_tail=True,
    temperature=dataset.temperature)``.

    Example:
        >>> import torch, infoloss.torch as itorch
        >>> batch = {"indices": torch.tensor([[1, 0]]), "logprobs": torch.tensor([[-0.1, -2.5]]),
        ...          "tail": torch.tensor([-4.0])}
        >>> [t.shape for t in itorch.distill_topk_args(batch)]
        [torch.Size([1, 2]), torch.Size([1, 2])]
    """
    return batch["indices"], batch["logprobs"]
