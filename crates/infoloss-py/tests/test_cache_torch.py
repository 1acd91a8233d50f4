"""The teacher cache with torch (skipped without torch): the stored rows equal ``torch.log_softmax(x / T,
-1).topk(k)``, ``infoloss.torch.TeacherCacheDataset`` through ``DataLoader(num_workers=2)`` gives the reader's
rows, and a distillation training step on a batch of it matches ``infoloss.torch.distill_topk`` on the arrays read
directly."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import infoloss.torch as itorch  # noqa: E402
from infoloss.cache import TeacherCache, TeacherCacheWriter, select_topk  # noqa: E402

V, K, T = 64, 8, 2.0


def make(path, rows=70, mode="lossless", seed=0):
    logits = torch.randn(rows, V, generator=torch.Generator().manual_seed(seed)) * 3
    with TeacherCacheWriter(path, V, K, temperature=T, mode=mode, rows_per_shard=16) as w:
        w.push_logits(logits[:33].numpy())
        w.push_logits(logits[33:].numpy())
    return logits, TeacherCache(path)


def top_lower_first(lp):
    """``lp.topk(K)`` with ties in the lower class first: torch.topk leaves the order of ties unspecified (and
    does not put the lower index first on CPU), a stable descending sort does."""
    v, i = torch.sort(lp, dim=-1, descending=True, stable=True)
    return v[:, :K], i[:, :K]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_lossless_equals_torch_log_softmax_topk(tmp_path, dtype):
    logits = (torch.randn(40, V, generator=torch.Generator().manual_seed(1)) * 4).to(dtype)
    if dtype == torch.bfloat16:  # NumPy has no bfloat16: the same bits as ml_dtypes.bfloat16
        ml_dtypes = pytest.importorskip("ml_dtypes")
        arr = logits.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    else:
        arr = logits.numpy()
    with TeacherCacheWriter(tmp_path, V, K, temperature=T) as w:
        w.push_logits(arr)
    got = TeacherCache(tmp_path).read(0, 40)
    v, i = top_lower_first(torch.log_softmax(logits.float() / T, -1))
    np.testing.assert_array_equal(got.indices, i.numpy())
    np.testing.assert_allclose(got.logprobs, v.numpy(), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(got.tail, torch.log1p(-v.double().exp().sum(-1)).numpy(), rtol=1e-5, atol=1e-6)


def test_ties_lower_index_first():
    # integer logits: many ties, the lower class first; the values are torch.topk's
    x = torch.randint(0, 4, (50, V), generator=torch.Generator().manual_seed(2)).float()
    top = select_topk(x.numpy(), K, 1.0)
    lp = torch.log_softmax(x, -1)
    v, i = top_lower_first(lp)
    np.testing.assert_array_equal(top.indices, i.numpy())
    np.testing.assert_array_equal(top.indices, np.argsort(-x.numpy(), axis=1, kind="stable")[:, :K])
    np.testing.assert_allclose(top.logprobs, lp.topk(K).values.numpy(), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(top.logprobs, v.numpy(), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("mode", ["lossless", "packed8"])
def test_dataloader_with_two_workers_gives_the_readers_rows(tmp_path, mode):
    _, cache = make(tmp_path, mode=mode)
    cache.read(0, 20)  # the parent maps (and checks) shards before the fork
    ds = itorch.TeacherCacheDataset(tmp_path)
    assert len(ds) == 70 and ds.k == K and ds.temperature == T
    item = ds[5]
    assert item["indices"].dtype == torch.int64 and item["indices"].shape == (K,)
    assert item["logprobs"].dtype == torch.float32 and item["tail"].shape == () and item["tail"].dtype == torch.float32
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    want = cache.read(0, 70)
    np.testing.assert_array_equal(torch.cat([b["indices"] for b in batches]).numpy(), want.indices.astype(np.int64))
    np.testing.assert_array_equal(torch.cat([b["logprobs"] for b in batches]).numpy(), want.logprobs)
    np.testing.assert_array_equal(torch.cat([b["tail"] for b in batches]).numpy(), want.tail)
    # the dataset's collate is the default one
    own = list(torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=itorch.TeacherCacheDataset.collate))
    for a, b in zip(own, batches):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_distill_training_step_on_a_batch(tmp_path):
    _, cache = make(tmp_path)
    ds = itorch.TeacherCacheDataset(tmp_path)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_sampler=[list(range(24, 36))], num_workers=2)))
    torch.manual_seed(0)
    model = torch.nn.Linear(5, V)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hidden = torch.randn(12, 5)
    student = model(hidden)
    loss = itorch.distill_topk(student, *itorch.distill_topk_args(batch), add_tail=True, temperature=ds.temperature)
    opt.zero_grad()
    loss.backward()
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()
    # the same loss on the arrays read directly
    rows = cache.read(24, 36)
    direct = itorch.distill_topk(student.detach(), torch.from_numpy(rows.indices.astype(np.int64)),
                                 torch.from_numpy(np.array(rows.logprobs)), add_tail=True, temperature=T)
    assert loss.item() == direct.item()
    before = model.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.weight)


def test_docstring_examples_and_annotations():
    import doctest
    import inspect

    from infoloss import _cache_torch

    result = doctest.testmod(_cache_torch, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
    assert itorch.TeacherCacheDataset is _cache_torch.TeacherCacheDataset
    cls = itorch.TeacherCacheDataset
    for f in (itorch.distill_topk_args, cls.__init__, cls.__len__, cls.__getitem__, cls.collate):
        sig = inspect.signature(f)
        assert sig.return_annotation is not inspect.Signature.empty, f
        assert all(p.annotation is not p.empty for p in sig.parameters.values() if p.name != "self"), f
