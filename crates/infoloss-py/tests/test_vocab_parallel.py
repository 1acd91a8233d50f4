"""Vocab-parallel losses on torch.distributed (gloo, CPU): 2 and 3 processes under ``torchrun`` and as plain
processes; the loss and the gathered gradient equal the single-process infoloss result (and torch's own for
plain cross-entropy) for every option; a dead, hanging or mismatched rank is a RuntimeError within the timeout.

Tolerance: float64 1e-12 relative (only the order of the sums differs: by slice, then across slices); float32 a
few float32 roundings (the vocab-parallel path computes in float64 and rounds once, the single-process float32
path sums in float32 lanes); bfloat16 one bfloat16 rounding of the result (both compute in float32 or better).
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import infoloss.torch as itorch  # noqa: E402

HERE = Path(__file__).parent
WORKER = HERE / "vocab_parallel_worker.py"
sys.path.insert(0, str(HERE))
import vocab_parallel_worker as W  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world, out, mode="cases", timeout_s=20):
    """``world`` plain processes with the env torchrun would set; returns their exit codes."""
    port = free_port()
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
               VP_TIMEOUT=str(timeout_s), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(out), mode], env=dict(env, RANK=str(r)),
                              stderr=subprocess.PIPE) for r in range(world)]
    codes = []
    for p in procs:
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        codes.append(p.returncode)
    return codes, [p.stderr.read().decode() for p in procs]


def torchrun(world, out):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}", str(WORKER), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]


def gathered(out, world):
    ranks = [dict(np.load(out / f"rank{r}.npz")) for r in range(world)]
    assert [int(r["lo"]) for r in ranks] == [int(b) for b in np.linspace(0, W.VOCAB, world + 1)][:-1]
    return ranks


def check(name, ranks, loss, grad, rtol, atol, lse=None, axis=1):
    for r in ranks:
        np.testing.assert_array_equal(r[name + "/loss"], ranks[0][name + "/loss"])  # the same bits everywhere
    np.testing.assert_allclose(ranks[0][name + "/loss"], loss, rtol=rtol, atol=atol, err_msg=name)
    g = np.concatenate([r[name + "/grad"] for r in ranks], axis=axis)
    scale = max(np.abs(grad).max(), 1e-300)
    np.testing.assert_allclose(g, grad, rtol=rtol, atol=atol * scale, err_msg=name + " grad")
    if lse is not None:
        np.testing.assert_allclose(ranks[0][name + "/lse"], lse, rtol=rtol, atol=atol, err_msg=name + " lse")


TOL = {"": (1e-12, 1e-14), "_f32": (2e-6, 1e-6), "_bf16": (8e-3, 8e-3)}
DTYPES = {"": torch.float64, "_f32": torch.float32, "_bf16": torch.bfloat16}


def reference(tag):
    """Every case on the whole vocabulary, in one process: name -> (loss, grad, lse or None)."""
    x, t, y, w = W.inputs(DTYPES[tag])
    ref = {}
    for name, o in W.ce_cases():
        o = dict(o)
        xs = x.clone().requires_grad_(True)
        weight = w if o.pop("weighted", False) else None
        yy = torch.full_like(y, -100) if o.pop("all_ignored", False) else y
        r = itorch.cross_entropy_extras(xs, yy, weight=weight, return_lse=True, **o)
        (r.loss.sum() if r.loss.dim() else r.loss).backward()
        ref[name] = (r.loss.detach().double().numpy(), xs.grad.double().numpy(), r.lse.double().numpy())
    for name, o in W.distill_cases():
        o = dict(o)
        xs = x.clone().requires_grad_(True)
        labels = y if o.pop("labels", False) else None
        if o.get("normalizer") == "global":
            o["normalizer"] = float((y != -100).sum())
        loss = itorch.distill(xs, t, labels, **o)
        (loss.sum() if loss.dim() else loss).backward()
        ref[name] = (loss.detach().double().numpy(), xs.grad.double().numpy(), None)
    return ref


def linear_reference(tag):
    """The linear cases on the gathered lm_head: name -> (loss, grad_weight, grad_hidden, grad_bias or None)."""
    _, _, y, cw = W.inputs(DTYPES[tag])
    h, wl, bl = W.linear_inputs(DTYPES[tag])
    ref = {}
    for name, o in W.linear_cases():
        o = dict(o)
        o.pop("chunk_size")
        hs, ws = h.clone().requires_grad_(True), wl.clone().requires_grad_(True)
        bs = bl.clone().requires_grad_(True) if o.pop("bias", False) else None
        weight = cw if o.pop("weighted", False) else None
        logits = hs @ ws.T if bs is None else torch.addmm(bs, hs, ws.T)
        loss = itorch.cross_entropy_extras(logits, y, weight=weight, **o).loss
        (loss * torch.arange(1, W.ROWS + 1, dtype=loss.dtype)).sum().backward() if loss.dim() else loss.backward()
        gb = None if bs is None else bs.grad.double().numpy()
        ref[name] = (loss.detach().double().numpy(), ws.grad.double().numpy(), hs.grad.double().numpy(), gb)
    return ref


@pytest.mark.parametrize("world", [2, 3])
def test_every_option_over_ranks_equals_one_process(tmp_path, world):
    codes, errs = launch(world, tmp_path)
    assert codes == [0] * world, errs
    ranks = gathered(tmp_path, world)
    cases = 0
    for tag in TOL:
        for name, (loss, grad, lse) in reference(tag).items():
            check(name + tag, ranks, loss, grad, *TOL[tag], lse=lse)
            cases += 1
        for name, (loss, gw, gh, gb) in linear_reference(tag).items():
            rtol, atol = TOL[tag]
            check(name + tag, ranks, loss, gw, rtol, atol, axis=0)  # weight rows are the vocabulary
            for r in ranks:  # grad_hidden is summed over the ranks: every rank holds all of it
                np.testing.assert_allclose(r[name + tag + "/grad_hidden"], gh, rtol=rtol,
                                           atol=atol * np.abs(gh).max(), err_msg=name + tag)
            if gb is not None:
                g = np.concatenate([r[name + tag + "/grad_bias"] for r in ranks])
                np.testing.assert_allclose(g, gb, rtol=rtol, atol=atol * np.abs(gb).max(), err_msg=name + tag)
            cases += 1
    assert cases == 3 * 13


def test_under_torchrun_and_against_torch(tmp_path):
    torchrun(2, tmp_path)
    ranks = gathered(tmp_path, 2)
    # torch's own F.cross_entropy on the gathered float64 logits
    x, _, y, w = W.inputs(torch.float64)
    xs = x.clone().requires_grad_(True)
    loss = F.cross_entropy(xs, y, weight=w, label_smoothing=0.1)
    loss.backward()
    check("ce_smooth_weight", ranks, loss.detach().numpy(), xs.grad.numpy(), 1e-12, 1e-14)


def read_report(out, rank):
    secs, msg = (out / f"rank{rank}.txt").read_text().split("\n", 1)
    return float(secs), msg.strip()


def test_a_dead_rank_is_an_error_at_once(tmp_path):
    codes, errs = launch(3, tmp_path, "die")
    assert codes[2] == 3
    for r in (0, 1):
        secs, msg = read_report(tmp_path, r)
        assert msg.startswith("RuntimeError: vocab_parallel_cross_entropy: rank %d: all-reduce (sum)" % r), msg
        assert secs < 20, secs


def test_a_hanging_rank_is_an_error_within_the_timeout(tmp_path):
    start = time.monotonic()
    codes, errs = launch(2, tmp_path, "hang", timeout_s=3)
    secs, msg = read_report(tmp_path, 0)
    assert msg.startswith("RuntimeError: vocab_parallel_cross_entropy: rank 0: all-reduce"), msg
    assert 2.5 < secs < 15, secs
    assert time.monotonic() - start < 120


def test_mismatched_slices_are_named(tmp_path):
    codes, errs = launch(2, tmp_path, "mismatch")
    assert codes == [0, 0], errs
    for r in (0, 1):
        _, msg = read_report(tmp_path, r)
        assert "rank 1's vocabulary slice [514, 1031) overlaps the previous slice at class 515" in msg, msg
