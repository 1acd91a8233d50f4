"""Many Python threads calling infoloss at once (issue 24, item 5).

The extension releases the GIL while it computes, so calls from different Python threads run in the shared pool
at the same time (with their own scratch rows and output buffers). Each must still give exactly the bits of the
same call made alone: 8 threads × 200 mixed calls, allocating and in-place, float16/32/64, while another thread
keeps changing the pool's thread count (every count gives the same bits).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

import infoloss

THREADS = 8
CALLS = 200


def _digest(v) -> str:
    """The exact bits of a result (nested tuples of floats and arrays), with types and shapes."""
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, tuple):
            for e in x:
                feed(e)
        elif isinstance(x, (np.ndarray, np.generic)):
            a = np.asarray(x)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(repr((type(x).__name__, x)).encode())

    feed(v)
    return h.hexdigest()


def _calls():
    """``(name, fn)`` pairs: each ``fn()`` makes one call on fixed inputs (in-place calls on a fresh copy) and
    returns everything it produced."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((96, 700)).astype(np.float32)
    t = rng.standard_normal((96, 700)).astype(np.float32)
    y = rng.integers(0, 700, 96)
    y_ign = np.where(rng.random(96) < 0.2, -100, y)
    p = rng.dirichlet(np.ones(700), 96)
    q = rng.dirichlet(np.ones(700), 96)
    b = rng.random((64, 300)).astype(np.float32)
    z = rng.standard_normal((64, 300)).astype(np.float32)
    x16 = x.astype(np.float16)
    x64 = x.astype(np.float64)
    topk_i = np.argsort(-t, axis=1)[:, :20].copy()
    topk_lp = np.take_along_axis(infoloss.log_softmax(t, 1), topk_i, 1)

    def in_place(fn, base, *args, **kw):
        buf = base.copy()  # a distinct array for every call
        return fn(buf, *args, **kw), buf

    return [
        ("ce", lambda: infoloss.cross_entropy(x, y_ign, label_smoothing=0.1)),
        ("ce_grad", lambda: infoloss.cross_entropy_with_grad(x, y)),
        ("ce_f16", lambda: infoloss.cross_entropy_with_grad(x16, y)),
        ("ce_f64_none", lambda: infoloss.cross_entropy_with_grad(x64, y, reduction="none")),
        ("ce_probs", lambda: infoloss.cross_entropy_with_grad(x64, p, return_target_grad=True)),
        ("nll", lambda: infoloss.nll_loss_with_grad(infoloss.log_softmax(x, 1), y_ign)),
        ("kl", lambda: infoloss.kl_div_with_grad(np.log(p), q, reduction="batchmean", return_target_grad=True)),
        ("bce", lambda: infoloss.binary_cross_entropy_with_grad(b, (z > 0).astype(np.float32))),
        ("bce_logits", lambda: infoloss.binary_cross_entropy_with_logits_with_grad(z, b, pos_weight=b[0] + 0.5)),
        ("distill", lambda: infoloss.distill_with_grad(x, t, y, temperature=2.0, alpha=0.7)),
        ("distill_jsd", lambda: infoloss.distill(x, t, divergence="jsd", temperature=4.0)),
        ("distill_topk", lambda: infoloss.distill_topk_with_grad(x, topk_i, topk_lp, y)),
        ("entropy", lambda: infoloss.entropy_with_grad(p, q, axis=1)),
        ("entropy_base2", lambda: infoloss.entropy(p, base=2, axis=1)),
        ("jensenshannon", lambda: infoloss.jensenshannon_with_grad(p, q, axis=1)),
        ("log_softmax", lambda: infoloss.log_softmax_with_grad(x, 1)),
        ("logsumexp", lambda: infoloss.logsumexp(x64, 1)),
        ("ce_in_place", lambda: in_place(infoloss.cross_entropy_with_grad_in_place, x, y, label_smoothing=0.1)),
        ("ce_in_place_f16", lambda: in_place(infoloss.cross_entropy_with_grad_in_place, x16, y)),
        ("kl_in_place", lambda: in_place(infoloss.kl_div_with_grad_in_place, np.log(p), q, "batchmean")),
        ("bce_logits_in_place", lambda: in_place(infoloss.binary_cross_entropy_with_logits_with_grad_in_place, z, b)),
        ("distill_in_place", lambda: in_place(infoloss.distill_with_grad_in_place, x, t, y, temperature=2.0)),
    ]


def test_threads_give_the_serial_results():
    calls = _calls()
    expected = [_digest(fn()) for _, fn in calls]
    # the same serial call again: the reference itself is deterministic
    assert expected == [_digest(fn()) for _, fn in calls]

    failures = []
    start = threading.Barrier(THREADS + 2)  # the workers, the resizer and this thread
    stop = threading.Event()

    def worker(k):
        start.wait()
        for i in range(CALLS):
            j = (7 * k + 3 * i + i // len(calls)) % len(calls)  # each thread its own order of the calls
            name, fn = calls[j]
            try:
                got = _digest(fn())
            except Exception as e:  # noqa: BLE001 - reported below with the call's name
                failures.append(f"thread {k} call {i} ({name}): {e!r}")
                continue
            if got != expected[j]:
                failures.append(f"thread {k} call {i} ({name}): bits differ from the serial call")

    def resizer():
        # The pool is rebuilt under the running calls; every thread count gives the same bits.
        start.wait()
        i = 0
        while not stop.is_set():
            infoloss._infoloss._set_default_num_threads(1 + i % 3)
            i += 1
            stop.wait(0.002)

    before = infoloss.get_num_threads()
    workers = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    churn = threading.Thread(target=resizer)
    for w in workers + [churn]:
        w.start()
    start.wait()
    for w in workers:
        w.join(timeout=600)
    stop.set()
    churn.join()
    infoloss._infoloss._set_default_num_threads(before)
    assert not any(w.is_alive() for w in workers), "a worker thread did not finish"
    assert not failures, f"{len(failures)} of {THREADS * CALLS} calls failed; first: {failures[:5]}"


def test_calls_overlap():
    # The GIL is released while computing: a long call in one thread does not stop another thread's Python code.
    x = np.random.default_rng(1).standard_normal((4096, 2000)).astype(np.float32)
    y = np.zeros(4096, dtype=np.int64)
    ticks = []
    done = threading.Event()

    def compute():
        for _ in range(5):
            infoloss.cross_entropy_with_grad(x, y)
        done.set()

    t = threading.Thread(target=compute)
    t.start()
    while not done.is_set():
        ticks.append(1)
        done.wait(0.0005)
    t.join()
    # With the GIL held during the calls the main thread would tick about once per call.
    assert len(ticks) > 20, len(ticks)
