"""The teacher cache: a teacher's top-k log-probabilities per token, selected once from its logits, stored on disk
compressed and crash-safely, and read back by row range to distill a student offline.

Every row stores, for logits ``x`` (one token's row of ``V`` teacher logits) at temperature ``T``:

- ``indices``: the classes of the ``k`` largest logits, best first (ties: the lower class first, as ``torch.topk``);
- ``logprobs``: ``log_softmax(x / T)`` at them;
- ``tail``: ``ln(1 − Σ_top exp(logprobs))``, the log of the mass outside the top-k, summed directly over the other
  ``V − k`` classes (so a tail of 1e-12 keeps its digits); ``-inf`` when the top-k holds all the mass.

PyTorch equivalent of one row block::

    lp = torch.log_softmax(logits.float() / T, -1)
    logprobs, indices = lp.topk(k)            # sorted, ties: lower index first
    tail = torch.log1p(-logprobs.exp().sum(-1))

A cache is a directory: ``index.json`` and shards ``shard-000000.safetensors``, ... (plain safetensors files; the
stock ``safetensors`` package reads them). Two modes:

- ``"lossless"``: ``uint32`` indices and ``float32`` log-probabilities as selected, ``8·k + 4`` bytes per row. The
  reader hands out **zero-copy, read-only NumPy views** of the memory-mapped shards (each shard's CRC-32 is checked
  against ``index.json`` once per process before any view of it is handed out).
- ``"packedB"`` (``B`` = 2 to 16): indices Rice-coded as gaps, log-probabilities quantized to ``B`` bits on a
  per-row range and renormalized on reading to the exactly stored top-k mass; about
  ``k·(log2(V/k) + 1.5 + B)/8 + 13`` bytes per row (``packed7`` at ``k = 128``, ``V = 128k``: about 310 bytes
  instead of 1028). Decoded (and checked) by the Rust reader into fresh arrays.

A writer killed at any moment leaves a cache whose index lists complete, checksummed shards only:
:meth:`TeacherCacheWriter.resume` reopens it and :attr:`TeacherCacheWriter.rows_written` says from which input row
to continue. A damaged shard raises an error naming the file; never a wrong value.

Errors: ``FileNotFoundError`` / ``OSError`` for I/O, ``ValueError`` for arguments that do not fit the cache and
for damaged files, ``TypeError`` for dtypes, ``IndexError`` for rows outside the cache.

Example:
    >>> import tempfile, numpy as np
    >>> from infoloss.cache import TeacherCache, TeacherCacheWriter
    >>> d = tempfile.mkdtemp()
    >>> logits = np.array([[2.0, 0.5, -1.0, 0.0], [0.0, 3.0, 1.0, 0.5]], dtype=np.float32)
    >>> with TeacherCacheWriter(d, vocab_size=4, k=2, temperature=2.0) as w:
    ...     w.push_logits(logits)
    >>> cache = TeacherCache(d)
    >>> len(cache), cache.k, cache.mode
    (2, 2, 'lossless')
    >>> cache[1].indices.tolist()
    [1, 2]
    >>> indices, logprobs, tail = cache.read(0, 2)
    >>> bool(np.allclose(np.log1p(-np.exp(logprobs).sum(1)), tail, atol=1e-6))
    True
"""

from __future__ import annotations

import copy
import json
import operator
import os
import threading
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple, Type, Union

import numpy as np

from . import _common as c
from . import _infoloss as _C

__all__ = ["TeacherCache", "TeacherCacheWriter", "TopkRows", "select_topk"]

#: A path: ``str`` or ``os.PathLike``.
PathLike = Union[str, "os.PathLike[str]"]

# Bytes checksummed at a time (zlib.crc32 of a memory-mapped shard, in pieces so no piece is copied twice).
_CRC_CHUNK = 16 << 20

# The tensors of a lossless shard: name, safetensors dtype, NumPy dtype, and whether it has a k axis.
_LOSSLESS = (("indices", "U32", np.dtype("<u4"), True), ("logprobs", "F32", np.dtype("<f4"), True),
             ("tail", "F32", np.dtype("<f4"), False))


class TopkRows(NamedTuple):
    """A block of cached rows: ``indices`` uint32 ``(n, k)``, ``logprobs`` float32 ``(n, k)``, ``tail`` float32
    ``(n,)`` (for one row, :meth:`TeacherCache.__getitem__` with an int: ``(k,)``, ``(k,)`` and a float32 scalar)."""

    indices: np.ndarray
    logprobs: np.ndarray
    tail: Any


def _rows(parts: Tuple[np.ndarray, np.ndarray, np.ndarray]) -> TopkRows:
    return TopkRows(*parts)


def _logits(x: Any, op: str) -> np.ndarray:
    """Teacher logits for the extension: float16/32/64 as they are, ``ml_dtypes.bfloat16`` as its uint16 bits."""
    a = c.asarray(x, op, "logits")
    bf = c.bf16()
    if bf is not None and a.dtype == bf:
        return c.ready(a, op, "logits").view(np.uint16)
    if not c.is_float(a.dtype):
        raise TypeError(c._float_dtype_error(op, "logits", a.dtype))
    return c.ready(a, op, "logits")


def _float32(x: Any, op: str, name: str) -> np.ndarray:
    """A float32 operand (other float dtypes are converted, as stored values are float32)."""
    a = c.asarray(x, op, name)
    if not c.is_float(a.dtype):
        raise TypeError(c._float_dtype_error(op, name, a.dtype))
    return c.cast(a, np.dtype(np.float32), op, name)


def _count(v: Any, op: str, name: str, minimum: int = 1) -> int:
    i = c.as_int(v, op, name)
    if i < minimum:
        raise ValueError(f"{op}: {name} must be at least {minimum}, got {i}")
    return i


def select_topk(logits: Any, k: int, temperature: float = 1.0) -> TopkRows:
    """The top-``k`` of ``log_softmax(logits / temperature)`` for every row of ``logits`` ``(rows, V)`` (float16,
    float32, float64 or ``ml_dtypes.bfloat16``; computed in float32 as torch computes ``logits.float()``), without
    the ``(rows, V)`` log-softmax: what :meth:`TeacherCacheWriter.push_logits` stores.

    Returns :class:`TopkRows`: ``indices`` uint32 ``(rows, k)`` best first (ties: the lower class first),
    ``logprobs`` float32 ``(rows, k)``, ``tail`` float32 ``(rows,)`` ``= ln Σ_{i ∉ top-k} softmax(logits / T)_i``.

    PyTorch equivalent: ``v, i = torch.log_softmax(logits.float() / T, -1).topk(k)``,
    ``tail = torch.log1p(-v.exp().sum(-1))`` (summed directly over the other classes here, so a tiny tail keeps its
    digits).

    Example:
        >>> import numpy as np
        >>> from infoloss.cache import select_topk
        >>> top = select_topk(np.array([[1.0, 3.0, 2.0, 0.0]], dtype=np.float32), 2)
        >>> top.indices.tolist(), [round(v, 4) for v in top.logprobs[0].tolist()], round(float(top.tail[0]), 4)
        ([[1, 2]], [-0.4402, -1.4402], -2.1269)
    """
    op = "select_topk"
    t = c.as_float(temperature, op, "temperature")
    return _rows(_C.cache_select_topk(_logits(logits, op), _count(k, op, "k"), t))


class TeacherCacheWriter:
    """Writes a teacher cache in the directory ``path`` (created if missing; it must not hold a cache already).

    Rows are buffered until a shard of ``rows_per_shard`` rows is full; the shard is then written under a
    temporary name, synced, renamed into place, and only then listed in ``index.json`` (itself replaced
    atomically). Used as a context manager, the writer finishes when the block ends without an exception; after an
    exception (or a crash) the cache keeps its complete shards and :meth:`resume` continues it.

    Args:
        path: the cache directory.
        vocab_size: the teacher's vocabulary size ``V`` (every stored index is below it).
        k: entries kept per row, 1 to ``V``.
        temperature: ``T``: rows store ``log_softmax(logits / T)``.
        mode: ``"lossless"`` or ``"packedB"`` (``B`` = 2 to 16 bits per log-probability).
        rows_per_shard: rows per shard file (the last may hold fewer).
        source: a description of the input (file, tensor, shape), kept in the index.

    Example:
        >>> import tempfile, numpy as np
        >>> from infoloss.cache import TeacherCacheWriter
        >>> w = TeacherCacheWriter(tempfile.mkdtemp(), vocab_size=4, k=2, rows_per_shard=2)
        >>> w.push_logits(np.array([[1, 3, 2, 0], [0, 0, 5, 1], [2, 1, 0, 0]], dtype=np.float32))
        >>> w.rows_written, w.rows_accepted  # one full shard is on disk, one row waits
        (2, 3)
        >>> w.finish()["rows"]
        3
    """

    def __init__(
        self,
        path: PathLike,
        vocab_size: int,
        k: int,
        *,
        temperature: float = 1.0,
        mode: str = "lossless",
        rows_per_shard: int = 4096,
        source: str = "",
    ) -> None:
        op = "TeacherCacheWriter"
        if not isinstance(mode, str) or not isinstance(source, str):
            raise TypeError(f"{op}: mode and source must be strings")
        self._path = os.fspath(path)
        self._w = _C.cache_writer_create(
            self._path, _count(vocab_size, op, "vocab_size"), _count(k, op, "k"),
            c.as_float(temperature, op, "temperature"), mode, _count(rows_per_shard, op, "rows_per_shard"), source,
        )

    @classmethod
    def resume(cls, path: PathLike) -> "TeacherCacheWriter":
        """Reopens the unfinished cache in ``path`` after an interruption: removes what a killed writer may have
        left (temporary files, unlisted shards), checks the listed shards' sizes, and continues after
        :attr:`rows_written` rows (feed the input again from that row)."""
        w = cls.__new__(cls)
        w._path = os.fspath(path)
        w._w = _C.cache_writer_resume(w._path)
        return w

    @property
    def path(self) -> str:
        """The cache directory."""
        return self._path

    @property
    def rows_written(self) -> int:
        """Rows on disk in complete shards: after a crash, the input row to continue from."""
        return int(self._w.rows_written())

    @property
    def rows_accepted(self) -> int:
        """Rows accepted (written or buffered)."""
        return int(self._w.rows_accepted())

    @property
    def index(self) -> Dict[str, Any]:
        """The index as written so far (the contents of ``index.json``)."""
        return json.loads(self._w.index_json())

    def push_logits(self, logits: Any) -> None:
        """Selects the top-k of teacher logits ``(rows, V)`` (float16, float32, float64 or ``ml_dtypes.bfloat16``)
        at the cache's temperature (:func:`select_topk`) and appends them; writes every shard that becomes full."""
        self._w.push_logits(_logits(logits, "push_logits"))

    def push_hidden(self, hidden: Any, weight: Any, bias: Optional[Any] = None) -> None:
        """Selects the top-k of ``hidden @ weight.T + bias`` (``F.linear``: ``hidden`` float32 ``(rows, H)``, the
        teacher's output layer ``weight`` ``(V, H)`` and ``bias`` ``(V,)``) and appends them; the logits are
        computed a chunk of rows at a time, never whole."""
        op = "push_hidden"
        args = [c.asarray(a, op, n) for a, n in ((hidden, "hidden"), (weight, "weight"))]
        if bias is not None:
            args.append(c.asarray(bias, op, "bias"))
        for a, n in zip(args, ("hidden", "weight", "bias")):
            if c.native(a.dtype) != np.float32:
                raise TypeError(f"{op}: {n} must be a float32 array, got dtype {a.dtype}")
        self._w.push_hidden(*(c.ready(a, op, n) for a, n in zip(args, ("hidden", "weight", "bias"))))

    def push_topk(self, indices: Any, logprobs: Any, tail: Any) -> None:
        """Appends rows selected elsewhere: ``indices`` ``(n, k)`` of any integer dtype (distinct per row, below
        the vocabulary size), ``logprobs`` ``(n, k)`` and ``tail`` ``(n,)`` (stored as float32), as
        :func:`select_topk` returns them."""
        op = "push_topk"
        i = c.asarray(indices, op, "indices")
        if i.dtype.kind not in "iu":
            raise TypeError(f"{op}: indices must hold integer class indices, got dtype {i.dtype}")
        if i.size and (int(i.min()) < 0 or int(i.max()) > np.iinfo(np.uint32).max):
            raise ValueError(f"{op}: indices must be 0 to 2^32 − 1, got values from {int(i.min())} to {int(i.max())}")
        self._w.push_topk(c.cast(i, np.dtype(np.uint32), op, "indices"), _float32(logprobs, op, "logprobs"),
                          _float32(tail, op, "tail"))

    def finish(self) -> Dict[str, Any]:
        """Writes the buffered rows as the last shard, marks the cache complete and returns its index. The writer
        cannot be used after."""
        return json.loads(self._w.finish())

    def __enter__(self) -> "TeacherCacheWriter":
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        # after an exception the cache stays unfinished (its complete shards kept): resume() continues it
        if exc_type is None and not self._w.finished():
            self.finish()

    def __repr__(self) -> str:
        state = "finished" if self._w.finished() else f"{self.rows_accepted} rows accepted"
        return f"TeacherCacheWriter({self._path!r}, {state})"


class _Views:
    """The zero-copy views (``np.memmap``) of one lossless shard, checked (size, CRC-32, header) before they are made."""

    def __init__(self, path: Path, entry: Dict[str, Any], k: int) -> None:
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            raise ValueError(f"{path}: truncated or overwritten: {size} bytes, the index says {entry['bytes']}")
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        crc = 0
        for at in range(0, size, _CRC_CHUNK):
            crc = zlib.crc32(mm[at:at + _CRC_CHUNK], crc)
        if f"{crc:08x}" != entry["crc32"]:
            raise ValueError(f"{path}: checksum mismatch: CRC-32 {crc:08x}, the index says {entry['crc32']}")
        # safetensors: an 8-byte little-endian header length, the JSON header, then the tensors' bytes
        n = int.from_bytes(bytes(mm[:8]), "little")
        try:
            header = json.loads(bytes(mm[8:8 + n]))
        except ValueError as e:
            raise ValueError(f"{path}: header: {e}") from None
        rows = entry["rows"]
        views = []
        for name, st_dtype, dtype, with_k in _LOSSLESS:
            t = header.get(name) or {}
            shape = [rows, k] if with_k else [rows]
            begin, end = (t.get("data_offsets") or [0, -1])[:2]
            fits = end - begin == dtype.itemsize * int(np.prod(shape)) and 0 <= begin and 8 + n + end <= size
            if t.get("dtype") != st_dtype or t.get("shape") != shape or not fits:
                raise ValueError(
                    f"{path}: tensor `{name}` is {t.get('dtype')} {t.get('shape')} at bytes {begin}..{end}, "
                    f"expected {st_dtype} {shape}"
                )
            views.append(mm[8 + n + begin:8 + n + end].view(dtype).reshape(shape))
        self.indices, self.logprobs, self.tail = views


class _State:
    """What a process holds of an open cache: the Rust reader and the checked shard views. A forked child builds
    its own (locks and checks are per process)."""

    def __init__(self, path: str) -> None:
        self.pid = os.getpid()
        self.reader = _C.cache_reader_open(path)
        self.index: Dict[str, Any] = json.loads(self.reader.index_json())
        self.views: Dict[int, _Views] = {}
        self.lock = threading.Lock()


class TeacherCache:
    """Reads the teacher cache in ``path``: any row range, in any order, from memory-mapped shards.

    - ``cache.read(start, stop)`` → :class:`TopkRows` of rows ``start..stop``; ``cache[i]`` one row,
      ``cache[a:b]`` (any step) a block; ``len(cache)`` rows.
    - Iterating yields blocks of ``rows_per_shard`` rows in order (:meth:`blocks` for another size).
    - Lossless caches: arrays are zero-copy, read-only views of the memory-mapped shard when the rows lie in one
      shard (a range across shards is concatenated, i.e. copied). Each shard's size, CRC-32 and header are checked
      against ``index.json`` the first time a process touches it, so a damaged shard raises ``ValueError`` naming
      the file instead of returning wrong data. Packed caches are decoded (and checked) by the Rust reader.
    - :meth:`verify` checks every shard whole (every row too).

    Safe to share between threads and with forked ``DataLoader`` workers (each process maps and checks the shards
    it touches itself); pickles as its path.

    Example:
        >>> import tempfile, numpy as np
        >>> from infoloss.cache import TeacherCache, TeacherCacheWriter
        >>> d = tempfile.mkdtemp()
        >>> with TeacherCacheWriter(d, vocab_size=3, k=1, mode="packed8") as w:
        ...     w.push_logits(np.array([[0.0, 2.0, 1.0]], dtype=np.float32))
        >>> rows = TeacherCache(d).read(0, 1)
        >>> rows.indices.tolist()
        [[1]]
        >>> bool(abs(np.exp(rows.logprobs[0, 0]) - (1 - np.exp(rows.tail[0]))) < 1e-6)  # the top-1 mass is exact
        True
    """

    #: The teacher's vocabulary size ``V``.
    vocab_size: int
    #: Entries per row.
    k: int
    #: The temperature ``T`` of the stored ``log_softmax(logits / T)``.
    temperature: float
    #: ``"lossless"`` or ``"packedB"``.
    mode: str
    #: Rows per shard (the last may hold fewer).
    rows_per_shard: int

    def __init__(self, path: PathLike) -> None:
        self._path = os.fspath(path)
        self._state: Optional[_State] = None
        ix = self._st().index
        m = ix["mode"]
        self.vocab_size, self.k, self.rows_per_shard = int(ix["vocab_size"]), int(ix["k"]), int(ix["rows_per_shard"])
        self.temperature = float(ix["temperature"])
        self.mode = "lossless" if m["kind"] == "lossless" else f"packed{m['value_bits']}"

    def _st(self) -> _State:
        st = self._state
        if st is None or st.pid != os.getpid():
            st = self._state = _State(self._path)
        return st

    def __getstate__(self) -> Dict[str, Any]:
        return {"path": self._path}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    @property
    def path(self) -> str:
        """The cache directory."""
        return self._path

    @property
    def index(self) -> Dict[str, Any]:
        """The checked contents of ``index.json`` (``vocab_size``, ``k``, ``temperature``, ``mode``,
        ``rows_per_shard``, ``source``, ``rows``, ``complete``, ``shards``)."""
        return copy.deepcopy(self._st().index)

    @property
    def complete(self) -> bool:
        """Whether the writer finished (an unfinished cache shows its complete shards)."""
        return bool(self._st().index["complete"])

    def __len__(self) -> int:
        return int(self._st().index["rows"])

    def __repr__(self) -> str:
        return f"TeacherCache({self._path!r}, rows={len(self)}, k={self.k}, mode={self.mode!r})"

    def _views(self, st: _State, i: int) -> _Views:
        v = st.views.get(i)
        if v is None:
            with st.lock:
                v = st.views.get(i)
                if v is None:
                    entry = st.index["shards"][i]
                    v = st.views[i] = _Views(Path(self._path) / entry["file"], entry, int(st.index["k"]))
        return v

    def read(self, start: int, stop: int) -> TopkRows:
        """Rows ``start..stop`` (``0 ≤ start ≤ stop ≤ len(self)``): ``indices`` uint32 ``(n, k)``, ``logprobs``
        float32 ``(n, k)``, ``tail`` float32 ``(n,)``; read-only views for a lossless cache when the rows lie in
        one shard."""
        st = self._st()
        start, stop = c.as_int(start, "read", "start"), c.as_int(stop, "read", "stop")
        rows = int(st.index["rows"])
        if not 0 <= start <= stop <= rows:
            raise IndexError(f"read: rows {start}..{stop} are not within the cache's {rows} rows")
        if st.index["mode"]["kind"] != "lossless":
            return _rows(st.reader.read(start, stop))
        per = int(st.index["rows_per_shard"])
        parts: List[TopkRows] = []
        row = start
        while row < stop:
            i = row // per
            first = i * per
            end = min(first + int(st.index["shards"][i]["rows"]), stop)
            v = self._views(st, i)
            a, b = row - first, end - first
            # plain ndarrays whose base is the np.memmap (no subclass leaks into results computed from them)
            parts.append(TopkRows(*(np.asarray(t[a:b]) for t in (v.indices, v.logprobs, v.tail))))
            row = end
        if len(parts) == 1:
            return parts[0]
        if not parts:
            k = int(st.index["k"])
            return TopkRows(np.zeros((0, k), np.uint32), np.zeros((0, k), np.float32), np.zeros(0, np.float32))
        return TopkRows(*(np.concatenate(p) for p in zip(*parts)))

    def __getitem__(self, key: Union[int, slice]) -> TopkRows:
        """``cache[i]``: row ``i`` (negative counts from the end) as ``(k,)``, ``(k,)`` and a float32 scalar;
        ``cache[a:b:s]``: those rows as a block (views for a lossless cache and step 1 within one shard)."""
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self.read(start, max(start, stop))
            rows = np.arange(start, stop, step)
            if rows.size == 0:
                return self.read(0, 0)
            lo, hi = int(rows.min()), int(rows.max()) + 1
            block = self.read(lo, hi)
            return TopkRows(*(a[rows - lo] for a in block))
        try:
            i = operator.index(key)
        except TypeError:
            raise TypeError(f"TeacherCache indices must be integers or slices, not {type(key).__name__}") from None
        if not -n <= i < n:
            raise IndexError(f"TeacherCache index {i} is out of range for {n} rows")
        i %= n
        r = self.read(i, i + 1)
        return TopkRows(r.indices[0], r.logprobs[0], r.tail[0])

    def blocks(self, rows: Optional[int] = None) -> Iterator[TopkRows]:
        """The rows in order, ``rows`` at a time (default ``rows_per_shard``: each block one shard, zero-copy for
        a lossless cache); the last block may be shorter."""
        step = self.rows_per_shard if rows is None else _count(rows, "blocks", "rows")
        n = len(self)
        for start in range(0, n, step):
            yield self.read(start, min(start + step, n))

    def __iter__(self) -> Iterator[TopkRows]:
        return self.blocks()

    def verify(self) -> None:
        """Reads every shard whole, checking its size, CRC-32, header and every row (indices below the vocabulary,
        distinct); raises ``ValueError`` naming the first damaged file."""
        self._st().reader.verify()
