"""The teacher cache's Python API (``infoloss.cache``): round trips in both modes, the values against a float64
reference, the stock ``safetensors`` package reading a shard, zero-copy read-only views, resuming an interrupted
writer, damaged shards, and the size of packed rows. The torch side (reference values, ``Dataset``, ``DataLoader``
workers, a training step) is in ``test_cache_torch.py``."""

from __future__ import annotations

import doctest
import os
import pickle
import shutil

import numpy as np
import pytest

import infoloss.cache as icache
from infoloss.cache import TeacherCache, TeacherCacheWriter, select_topk

V, K = 50, 6


def logits(rows: int, v: int = V, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(rows, v)) * scale).astype(np.float32)


def reference(x: np.ndarray, k: int, t: float = 1.0):
    """float64 log_softmax(x / T) at the k largest (ties: lower index first), and log1p(-Σ exp)."""
    z = x.astype(np.float64) / t
    lp = z - z.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    idx = np.argsort(-x.astype(np.float64) / t, axis=1, kind="stable")[:, :k]
    v = np.take_along_axis(lp, idx, 1)
    return idx, v, np.log1p(-np.exp(v).sum(1))


def write(path, x, *, mode="lossless", rows_per_shard=7, t=1.0, k=K, pushes=(3, 9, 1)):
    """Writes x in pushes of uneven sizes (the remainder last)."""
    with TeacherCacheWriter(path, x.shape[1], k, temperature=t, mode=mode, rows_per_shard=rows_per_shard,
                            source="test") as w:
        at = 0
        for n in pushes:
            w.push_logits(x[at:at + n])
            at += n
        w.push_logits(x[at:])
    return TeacherCache(path)


def shard(cache: TeacherCache, i: int) -> str:
    return os.path.join(cache.path, cache.index["shards"][i]["file"])


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_lossless_round_trip_equals_the_reference(tmp_path, t):
    x = logits(30)
    cache = write(tmp_path / "c", x, t=t)
    assert (len(cache), cache.k, cache.vocab_size, cache.temperature, cache.mode) == (30, K, V, t, "lossless")
    assert cache.complete and cache.index["source"] == "test" and len(cache.index["shards"]) == 5
    got = cache.read(0, 30)
    idx, v, tail = reference(x, K, t)
    assert got.indices.dtype == np.uint32 and got.logprobs.dtype == np.float32 and got.tail.dtype == np.float32
    np.testing.assert_array_equal(got.indices, idx)
    np.testing.assert_allclose(got.logprobs, v, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(got.tail, tail, rtol=1e-5, atol=1e-6)
    # the reader gives what select_topk gives, bit for bit
    direct = select_topk(x, K, t)
    for a, b in zip(got, direct):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float16", "float64", "bfloat16"])
def test_other_logit_dtypes(tmp_path, dtype):
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dt = np.dtype(ml_dtypes.bfloat16)
    else:
        dt = np.dtype(dtype)
    x = logits(12).astype(dt)
    cache = write(tmp_path / "c", x, t=1.5)
    idx, v, tail = reference(x.astype(np.float32), K, 1.5)  # computed from the float32 values, as torch's .float()
    got = cache.read(0, 12)
    np.testing.assert_array_equal(got.indices, idx)
    np.testing.assert_allclose(got.logprobs, v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.tail, tail, rtol=1e-4, atol=1e-5)
    # a strided (non-contiguous) input gives the same rows
    np.testing.assert_array_equal(select_topk(np.asfortranarray(x), K, 1.5).indices, idx)


@pytest.mark.parametrize("bits", [4, 8, 12])
def test_packed_round_trip(tmp_path, bits):
    x = logits(30)
    exact = write(tmp_path / "l", x)
    cache = write(tmp_path / "p", x, mode=f"packed{bits}")
    assert cache.mode == f"packed{bits}"
    a, b = exact.read(0, 30), cache.read(0, 30)
    order = np.argsort(a.indices, axis=1)  # packed rows hold the same classes, in ascending order
    np.testing.assert_array_equal(np.sort(b.indices, 1), np.take_along_axis(a.indices, order, 1))
    got = np.take_along_axis(b.logprobs, np.argsort(b.indices, 1), 1)
    want = np.take_along_axis(a.logprobs, order, 1)
    span = (a.logprobs.max(1) - a.logprobs.min(1))[:, None]
    assert np.all(np.abs(got - want) <= span / (2**bits - 1) + 1e-3)
    np.testing.assert_array_equal(b.tail, a.tail)  # the tail is stored exactly
    # and the top-k mass is the stored one: Σ exp(lp) = 1 − exp(tail)
    np.testing.assert_allclose(np.exp(b.logprobs.astype(np.float64)).sum(1), -np.expm1(b.tail), rtol=1e-5)
    # packed arrays are fresh and writable; lossless ones within a shard are read-only views
    assert cache.read(0, 7).logprobs.flags.writeable and not exact.read(0, 7).logprobs.flags.writeable


def test_rows_by_index_slice_and_blocks(tmp_path):
    x = logits(30)
    cache = write(tmp_path / "c", x)
    whole = select_topk(x, K)
    row = cache[17]
    np.testing.assert_array_equal(row.indices, whole.indices[17])
    assert row.tail.shape == () and row.tail == whole.tail[17]
    np.testing.assert_array_equal(cache[-1].logprobs, whole.logprobs[29])
    np.testing.assert_array_equal(cache[np.int64(3)].indices, whole.indices[3])
    for key in (slice(5, 20), slice(None, None, 3), slice(25, 2, -4), slice(40, 50), slice(3, 3)):
        got = cache[key]
        for a, b in zip(got, whole):
            np.testing.assert_array_equal(a, b[key])
    blocks = list(cache)
    assert [len(b.tail) for b in blocks] == [7, 7, 7, 7, 2]
    np.testing.assert_array_equal(np.concatenate([b.indices for b in cache.blocks(4)]), whole.indices)
    with pytest.raises(IndexError):
        cache[30]
    with pytest.raises(IndexError, match="not within"):
        cache.read(10, 31)
    with pytest.raises(TypeError):
        cache["a"]


def test_stock_safetensors_reads_a_shard(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    x = logits(30)
    cache = write(tmp_path / "c", x)
    t = st.load_file(shard(cache, 2))
    got = cache.read(14, 21)
    assert set(t) == {"indices", "logprobs", "tail"}
    for name in ("indices", "logprobs", "tail"):
        np.testing.assert_array_equal(t[name], getattr(got, name))
    packed = write(tmp_path / "p", x, mode="packed6")
    assert set(st.load_file(shard(packed, 0))) == {"data", "offsets", "range", "tail"}


def test_lossless_views_are_zero_copy_and_read_only(tmp_path):
    cache = write(tmp_path / "c", logits(30))
    r = cache.read(7, 14)  # exactly shard 1
    for a in r:
        assert isinstance(a.base, np.memmap), type(a.base)
        assert not a.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0
    # a range within one shard is a view too; across shards it is a copy
    assert isinstance(cache.read(8, 10).indices.base, np.memmap)
    assert not isinstance(cache.read(5, 10).indices.base, np.memmap)
    # two reads share the one mapping
    assert np.shares_memory(cache.read(7, 9).logprobs, cache.read(8, 14).logprobs)


def test_resume_after_a_writer_dropped_without_finish(tmp_path):
    x = logits(30)
    w = TeacherCacheWriter(tmp_path / "c", V, K, rows_per_shard=7)
    w.push_logits(x[:17])
    assert (w.rows_written, w.rows_accepted) == (14, 17)
    del w  # killed: the 3 buffered rows are lost, the 2 complete shards stay
    (tmp_path / "c" / "shard-000002.safetensors.tmp").write_bytes(b"half a shard")  # what a kill may leave
    assert len(TeacherCache(tmp_path / "c")) == 14 and not TeacherCache(tmp_path / "c").complete
    w = TeacherCacheWriter.resume(tmp_path / "c")
    assert w.rows_written == 14
    w.push_logits(x[w.rows_written:])
    index = w.finish()
    assert index["complete"] and index["rows"] == 30
    assert not (tmp_path / "c" / "shard-000002.safetensors.tmp").exists()
    resumed = TeacherCache(tmp_path / "c")
    whole = write(tmp_path / "u", x)
    for i in range(5):  # byte for byte what an uninterrupted writer writes
        assert open(shard(resumed, i), "rb").read() == open(shard(whole, i), "rb").read()
    with pytest.raises(ValueError, match="finished"):
        w.push_logits(x)


def test_context_manager_leaves_a_resumable_cache_after_an_exception(tmp_path):
    x = logits(30)
    with pytest.raises(RuntimeError, match="boom"):
        with TeacherCacheWriter(tmp_path / "c", V, K, rows_per_shard=7) as w:
            w.push_logits(x[:10])
            raise RuntimeError("boom")
    assert not TeacherCache(tmp_path / "c").complete
    with TeacherCacheWriter.resume(tmp_path / "c") as w:
        w.push_logits(x[w.rows_written:])
    assert TeacherCache(tmp_path / "c").complete


@pytest.mark.parametrize("mode", ["lossless", "packed8"])
def test_a_flipped_byte_raises_naming_the_shard(tmp_path, mode):
    cache = write(tmp_path / "c", logits(30), mode=mode)
    victim = shard(cache, 1)
    data = bytearray(open(victim, "rb").read())
    data[len(data) - 5] ^= 0x10
    open(victim, "wb").write(bytes(data))
    fresh = TeacherCache(tmp_path / "c")
    fresh.read(0, 7)  # shard 0 is fine
    with pytest.raises(ValueError, match=r"shard-000001\.safetensors.*checksum"):
        fresh.read(8, 9)
    with pytest.raises(ValueError, match=r"shard-000001\.safetensors"):
        fresh[10]
    with pytest.raises(ValueError, match=r"shard-000001\.safetensors"):
        fresh.verify()
    # a truncated shard too
    open(victim, "wb").write(bytes(data[:-3]))
    with pytest.raises(ValueError, match=r"shard-000001\.safetensors.*(truncated|bytes)"):
        TeacherCache(tmp_path / "c").read(7, 14)


def test_push_hidden_and_push_topk(tmp_path):
    rng = np.random.default_rng(1)
    h = rng.normal(size=(20, 8)).astype(np.float32)
    w = rng.normal(size=(V, 8)).astype(np.float32)
    b = rng.normal(size=V).astype(np.float32)
    with TeacherCacheWriter(tmp_path / "h", V, K, temperature=2.0) as cw:
        cw.push_hidden(h[:5], w, b)
        cw.push_hidden(h[5:], w, b)
    got = TeacherCache(tmp_path / "h").read(0, 20)
    want = select_topk(h.astype(np.float64) @ w.T.astype(np.float64) + b, K, 2.0)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.logprobs, want.logprobs, rtol=1e-5, atol=1e-5)
    # rows selected elsewhere, stored as given
    with TeacherCacheWriter(tmp_path / "t", V, K) as cw:
        cw.push_topk(want.indices.astype(np.int64), want.logprobs.astype(np.float64), want.tail)
    again = TeacherCache(tmp_path / "t").read(0, 20)
    for a, b2 in zip(again, want):
        np.testing.assert_array_equal(a, b2)


def test_errors(tmp_path):
    x = logits(4)
    write(tmp_path / "c", x)
    with pytest.raises(ValueError, match="already holds"):
        TeacherCacheWriter(tmp_path / "c", V, K)
    with pytest.raises(FileNotFoundError, match="index.json"):
        TeacherCache(tmp_path / "nothing")
    with pytest.raises(ValueError, match="mode"):
        TeacherCacheWriter(tmp_path / "m", V, K, mode="packed1")
    with pytest.raises(ValueError, match="k must be"):
        TeacherCacheWriter(tmp_path / "k", V, V + 1)
    with pytest.raises(ValueError, match="at least 1"):
        TeacherCacheWriter(tmp_path / "z", 0, K)
    w = TeacherCacheWriter(tmp_path / "w", V, K)
    with pytest.raises(ValueError, match="vocabulary"):
        w.push_logits(logits(2, V + 1))
    with pytest.raises(TypeError, match="floating-point"):
        w.push_logits(np.zeros((2, V), np.int32))
    with pytest.raises(TypeError, match="float32"):
        w.push_hidden(np.zeros((2, 3)), np.zeros((V, 3)))
    with pytest.raises(ValueError, match="below the vocabulary"):
        w.push_topk(np.full((1, K), V), np.zeros((1, K)), np.zeros(1))
    with pytest.raises(ValueError, match="twice"):
        w.push_topk(np.zeros((1, K), np.int64), np.zeros((1, K)), np.zeros(1))
    with pytest.raises(ValueError, match="0 to 2"):
        w.push_topk(np.full((1, K), -1), np.zeros((1, K)), np.zeros(1))
    with pytest.raises(ValueError, match="row 1"):
        bad = logits(3)
        bad[1, 4] = np.nan
        w.push_logits(bad)
    w.finish()
    with pytest.raises(ValueError, match="finished"):
        w.finish()


def test_packed7_bytes_per_token_at_k128_v8192(tmp_path):
    rows, k, v = 512, 128, 8192
    x = logits(rows, v, seed=3, scale=4.0)
    sizes = {}
    for mode in ("lossless", "packed7"):
        with TeacherCacheWriter(tmp_path / mode, v, k, mode=mode, rows_per_shard=rows) as w:
            w.push_logits(x)
        sizes[mode] = sum(s["bytes"] for s in TeacherCache(tmp_path / mode).index["shards"]) / rows
    assert sizes["lossless"] >= 8 * k + 4
    # about k·(log2(V/k) + 1.5 + B)/8 + 13 = 245 bytes per token
    assert sizes["packed7"] < 260, sizes
    assert sizes["packed7"] < 0.3 * (8 * k + 4), sizes


def test_pickles_as_its_path(tmp_path):
    cache = write(tmp_path / "c", logits(30))
    cache.read(0, 30)
    again = pickle.loads(pickle.dumps(cache))
    np.testing.assert_array_equal(again.read(3, 20).logprobs, cache.read(3, 20).logprobs)


def test_moved_cache_reads_from_its_new_place(tmp_path):
    want = np.array(write(tmp_path / "c", logits(30)).read(0, 30).indices)
    shutil.move(str(tmp_path / "c"), str(tmp_path / "d"))
    np.testing.assert_array_equal(TeacherCache(tmp_path / "d").read(0, 30).indices, want)


def test_docstring_examples():
    result = doctest.testmod(icache, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
