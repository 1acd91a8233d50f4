"""Fork safety (issue 24, item 1): a forked child computes, with the parent's results bit for bit, and never hangs.

Before the fix the extension ran on rayon's global pool, whose threads do not exist in a forked child, so the
child's first parallel call waited forever. Each scenario runs in its own interpreter (``subprocess`` with a
timeout), so a regression fails the test instead of hanging the suite, and a child's state cannot leak into the
other tests. The arrays are large enough that the core splits them over several threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")

# A wedged child must fail the test well within the suite's patience.
TIMEOUT = 120

# Shared by every scenario: the inputs, a mixed set of calls whose results are compared as raw bytes, and a
# helper that runs a function in a forked child (multiprocessing's fork context, as DataLoader and Pool use) and
# returns what it returned, failing if the child does not finish in time.
PRELUDE = textwrap.dedent(
    """
    import hashlib, multiprocessing as mp, os, sys, warnings
    import numpy as np
    import infoloss

    # Python >= 3.12 warns that forking a multi-threaded process may deadlock: that is the situation tested.
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    rng = np.random.default_rng(24)
    X = rng.standard_normal((4096, 1000)).astype(np.float32)
    Y = rng.integers(0, 1000, 4096)
    T = rng.standard_normal((4096, 1000)).astype(np.float32)
    P = rng.random((512, 700))

    def results():
        '''Digests of the bytes of the losses and gradients of a mix of calls (parallel in the core at these
        sizes); digests, so that a child's answer fits in the pipe before the parent reads it.'''
        out = []
        loss, grad = infoloss.cross_entropy_with_grad(X, Y, label_smoothing=0.1)
        out += [np.float64(loss).tobytes(), grad.tobytes()]
        loss, grad = infoloss.kl_div_with_grad(np.log(P), P[::-1].copy(), reduction="batchmean")
        out += [np.float64(loss).tobytes(), grad.tobytes()]
        loss, grad = infoloss.distill_with_grad(X, T, Y, temperature=2.0)
        out += [np.float64(loss).tobytes(), grad.tobytes()]
        x = X.copy()
        out += [np.float64(infoloss.cross_entropy_with_grad_in_place(x, Y)).tobytes(), x.tobytes()]
        out += [np.asarray(infoloss.entropy(P, axis=1)).tobytes()]
        out += [np.asarray(infoloss.jensenshannon(P, P[::-1], axis=1)).tobytes()]
        return [hashlib.sha256(b).hexdigest() for b in out]

    SMALL_X, SMALL_Y = X[:256].copy(), Y[:256].copy()

    def small_loss():
        '''The bytes of a small call's loss: quick enough to repeat while other threads or children compute.'''
        return np.float64(infoloss.cross_entropy(SMALL_X, SMALL_Y)).tobytes()

    def in_child(fn, timeout=60):
        '''Runs ``fn`` in a forked child and returns its result; fails if the child hangs or dies.'''
        ctx = mp.get_context("fork")
        q = ctx.SimpleQueue()
        p = ctx.Process(target=lambda: q.put(fn()))
        p.start()
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            raise SystemExit(f"the forked child did not finish within {timeout} s")
        assert p.exitcode == 0, f"the forked child exited with {p.exitcode}"
        return q.get()
    """
)


def run(body: str) -> str:
    """Runs ``PRELUDE + body`` in a fresh interpreter; returns its stdout, failing on a timeout or an error."""
    code = PRELUDE + textwrap.dedent(body)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung: no result within {TIMEOUT} s\nstdout: {e.stdout!r}\nstderr: {e.stderr!r}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def test_issue_repro_fork_after_use():
    # The issue's program: the parent uses the pool once, then a forked child computes.
    out = run(
        """
        parent = infoloss.cross_entropy(X, Y)
        child = in_child(lambda: infoloss.cross_entropy(X, Y), timeout=20)
        assert np.float64(child).tobytes() == np.float64(parent).tobytes(), (child, parent)
        print("ok", child)
        """
    )
    assert out.startswith("ok ")


def test_fork_after_use_same_bits():
    out = run(
        """
        parent = results()
        child = in_child(results)
        assert len(child) == len(parent)
        for i, (c, p) in enumerate(zip(child, parent)):
            assert c == p, f"result {i} differs in the child"
        print("ok")
        """
    )
    assert out == "ok\n"


def test_fork_before_first_use():
    # The child is the first to compute (and builds the pool); the parent computes afterwards.
    out = run(
        """
        child = in_child(results)
        parent = results()
        assert child == parent
        print("ok")
        """
    )
    assert out == "ok\n"


def test_forked_child_forks_again():
    # The child rebuilds its pool, uses it, and forks a grandchild that must rebuild again.
    out = run(
        """
        parent = results()
        def child():
            mine = results()
            grandchild = in_child(results)
            return mine == parent, grandchild == parent, infoloss.get_num_threads()
        same_child, same_grandchild, threads = in_child(child)
        assert same_child and same_grandchild, (same_child, same_grandchild)
        assert threads == infoloss.get_num_threads()
        print("ok")
        """
    )
    assert out == "ok\n"


def test_thread_count_survives_fork_and_set_num_threads_in_child():
    # An explicit count set in the parent is kept by the child's rebuilt pool (and still wins over the default
    # that infoloss.torch passes); the child can set its own; neither changes a bit of the results.
    out = run(
        """
        infoloss.set_num_threads(3)
        parent = results()
        def child():
            inherited = infoloss.get_num_threads()
            infoloss._infoloss._set_default_num_threads(1)
            after_default = infoloss.get_num_threads()
            same = results() == parent
            infoloss.set_num_threads(2)
            return inherited, after_default, same, infoloss.get_num_threads(), results() == parent
        inherited, after_default, same, set_to, same_after = in_child(child)
        assert (inherited, after_default, set_to) == (3, 3, 2), (inherited, after_default, set_to)
        assert same and same_after
        assert infoloss.get_num_threads() == 3  # the child's call did not reach the parent
        print("ok")
        """
    )
    assert out == "ok\n"


def test_default_thread_count_survives_fork():
    # Without an explicit call, the default set through _set_default_num_threads is kept by the child.
    out = run(
        """
        infoloss._infoloss._set_default_num_threads(2)
        parent = results()
        threads, same = in_child(lambda: (infoloss.get_num_threads(), results() == parent))
        assert (threads, same) == (2, True), (threads, same)
        print("ok")
        """
    )
    assert out == "ok\n"


def test_fork_while_other_threads_use_the_pool():
    # Other threads keep computing and changing the thread count (each takes the pool's lock) while the main
    # thread forks: a child forked while another thread held the lock must not inherit it locked.
    out = run(
        """
        import threading
        expected = small_loss()
        stop = threading.Event()
        def busy(k):
            i = 0
            while not stop.is_set():
                small_loss()
                infoloss._infoloss._set_default_num_threads(1 + (i + k) % 3)
                i += 1
        workers = [threading.Thread(target=busy, args=(k,)) for k in range(2)]
        for w in workers:
            w.start()
        try:
            for _ in range(20):
                got = in_child(small_loss, timeout=30)
                assert got == expected
        finally:
            stop.set()
            for w in workers:
                w.join()
        print("ok")
        """
    )
    assert out == "ok\n"


def test_fork_while_another_thread_holds_the_pool_lock():
    # Deterministic: another thread holds the pool's lock (without the GIL) when the main thread forks. The
    # pthread_atfork handler waits for it, so the child starts with an unlocked state; without the handler the
    # child would inherit the lock held by a thread it does not have, and its first call would wait forever.
    out = run(
        """
        import threading, time
        expected = small_loss()
        holder = threading.Thread(target=infoloss._infoloss._hold_pool_lock_for_tests, args=(1.0,))
        holder.start()
        time.sleep(0.3)  # the lock is held now
        got = in_child(small_loss, timeout=20)
        holder.join()
        assert got == expected
        print("ok")
        """
    )
    assert out == "ok\n"


def test_dataloader_workers():
    # torch's DataLoader with worker processes (forked on Linux) whose dataset calls infoloss.
    pytest.importorskip("torch")
    out = run(
        """
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Losses(Dataset):
            def __len__(self):
                return 8
            def __getitem__(self, i):
                rows = slice(512 * i, 512 * (i + 1))
                loss, grad = infoloss.cross_entropy_with_grad(X[rows], Y[rows])
                return torch.tensor(loss, dtype=torch.float64), torch.from_numpy(grad)

        infoloss.cross_entropy(X, Y)  # the parent's pool exists before the workers fork
        serial = [Losses()[i] for i in range(8)]
        loader = DataLoader(Losses(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60)
        got = list(loader)
        assert len(got) == 8
        for (gl, gg), (sl, sg) in zip(got, serial):
            assert gl.item() == sl.item()
            assert torch.equal(gg, sg)
        print("ok")
        """
    )
    assert out == "ok\n"


def test_set_default_num_threads():
    # The entry point infoloss.torch calls with torch.get_num_threads(): moves the count until an explicit
    # set_num_threads, then never again; bad counts are a ValueError.
    out = run(
        """
        core = infoloss._infoloss
        core._set_default_num_threads(3)
        assert infoloss.get_num_threads() == 3
        core._set_default_num_threads(3)  # unchanged: a no-op
        core._set_default_num_threads(1)
        assert infoloss.get_num_threads() == 1
        first = results()
        infoloss.set_num_threads(2)
        core._set_default_num_threads(4)
        assert infoloss.get_num_threads() == 2
        assert results() == first
        for bad in (0, -1, 10**6):
            try:
                core._set_default_num_threads(bad)
            except ValueError as e:
                assert "_set_default_num_threads" in str(e)
            else:
                raise AssertionError(f"no error for {bad}")
        print("ok")
        """
    )
    assert out == "ok\n"
