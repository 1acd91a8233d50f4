"""One rank of the vocab-parallel tests (run by ``test_vocab_parallel.py`` under ``torchrun`` — ``python -m torch.distributed.run`` — or as plain processes
with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``): computes every case on this rank's slice of the
vocabulary and saves the losses and gradient slices to ``OUT/rank{R}.npz``.

Usage: ``python vocab_parallel_worker.py OUT [cases|die|hang|mismatch]``.
"""

import datetime
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

import infoloss.torch as itorch

ROWS, VOCAB = 7, 1031
TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("VP_TIMEOUT", "20")))


def inputs(dtype):
    g = torch.Generator().manual_seed(1234)
    x = (3 * torch.randn(ROWS, VOCAB, generator=g, dtype=torch.float64)).to(dtype)
    t = (3 * torch.randn(ROWS, VOCAB, generator=g, dtype=torch.float64)).to(dtype)
    # targets in every rank's slice, an ignored row
    y = torch.tensor([0, 1030, 400, -100, 700, 5, 1000])
    w = torch.linspace(0.5, 2.0, VOCAB, dtype=torch.float64).to(dtype)
    return x, t, y, w


def ce_cases():
    yield "ce_plain", {}
    yield "ce_smooth_weight", {"label_smoothing": 0.1, "weighted": True}
    yield "ce_z_cap_sum", {"lse_square_scale": 1e-3, "softcap": 5.0, "reduction": "sum"}
    yield "ce_none", {"label_smoothing": 0.2, "reduction": "none"}
    yield "ce_all_ignored", {"all_ignored": True}


def distill_cases():
    yield "kd_fkl", {"temperature": 2.0}
    yield "kd_rkl_labels", {"divergence": "reverse_kl", "alpha": 0.6, "labels": True}
    yield "kd_jsd", {"divergence": "jsd", "beta": 0.3, "labels": True, "softcap": 4.0, "logit_scale": 1.5}
    yield "kd_tvd_none", {"divergence": "tvd", "reduction": "none"}
    yield "kd_normalizer", {"labels": True, "normalizer": "global"}


HIDDEN = 16


def linear_inputs(dtype):
    g = torch.Generator().manual_seed(99)
    h = torch.randn(ROWS, HIDDEN, generator=g, dtype=torch.float64).to(dtype)
    w = (0.5 * torch.randn(VOCAB, HIDDEN, generator=g, dtype=torch.float64)).to(dtype)
    b = (0.1 * torch.randn(VOCAB, generator=g, dtype=torch.float64)).to(dtype)
    return h, w, b


def linear_cases():
    yield "lin_mean", {"label_smoothing": 0.1, "lse_square_scale": 1e-3, "weighted": True, "chunk_size": 3}
    yield "lin_bias_sum", {"bias": True, "softcap": 6.0, "reduction": "sum", "chunk_size": 2}
    yield "lin_none", {"reduction": "none", "chunk_size": 4}


def slice_of(rank, world):
    bounds = [int(b) for b in np.linspace(0, VOCAB, world + 1)]
    return bounds[rank], bounds[rank + 1]


def run_cases(out, rank, world):
    res = {}
    for dtype, tag in [(torch.float64, ""), (torch.float32, "_f32"), (torch.bfloat16, "_bf16")]:
        x, t, y, w = inputs(dtype)
        lo, hi = slice_of(rank, world)
        for name, o in ce_cases():
            o = dict(o)
            xs = x[:, lo:hi].clone().requires_grad_(True)
            weight = w[lo:hi] if o.pop("weighted", False) else None
            yy = torch.full_like(y, -100) if o.pop("all_ignored", False) else y
            loss, lse = itorch.vocab_parallel_cross_entropy(xs, yy, vocab_start=lo, weight=weight, return_lse=True,
                                                            **o)
            (loss.sum() if loss.dim() else loss).backward()
            res[name + tag + "/loss"] = loss.detach().double().numpy()
            res[name + tag + "/lse"] = lse.double().numpy()
            res[name + tag + "/grad"] = xs.grad.double().numpy()
        for name, o in distill_cases():
            o = dict(o)
            xs = x[:, lo:hi].clone().requires_grad_(True)
            labels = y if o.pop("labels", False) else None
            if o.get("normalizer") == "global":
                # each rank holds half the rows' labels in a data-parallel step: the count is global
                o["normalizer"] = itorch.global_token_count(y[rank::world])
            loss = itorch.vocab_parallel_distill(xs, t[:, lo:hi], labels, vocab_start=lo, vocab_size=VOCAB, **o)
            (loss.sum() if loss.dim() else loss).backward()
            res[name + tag + "/loss"] = loss.detach().double().numpy()
            res[name + tag + "/grad"] = xs.grad.double().numpy()
        h, wl, bl = linear_inputs(dtype)
        for name, o in linear_cases():
            o = dict(o)
            hs = h.clone().requires_grad_(True)
            ws = wl[lo:hi].clone().requires_grad_(True)
            bs = bl[lo:hi].clone().requires_grad_(True) if o.pop("bias", False) else None
            cw = w[lo:hi] if o.pop("weighted", False) else None
            loss = itorch.vocab_parallel_linear_cross_entropy(hs, ws, y, vocab_start=lo, bias_shard=bs,
                                                              class_weight=cw, **o)
            # a non-uniform upstream gradient for 'none'
            (loss * torch.arange(1, ROWS + 1, dtype=loss.dtype)).sum().backward() if loss.dim() else loss.backward()
            res[name + tag + "/loss"] = loss.detach().double().numpy()
            res[name + tag + "/grad"] = ws.grad.double().numpy()
            res[name + tag + "/grad_hidden"] = hs.grad.double().numpy()
            if bs is not None:
                res[name + tag + "/grad_bias"] = bs.grad.double().numpy()
    np.savez(os.path.join(out, f"rank{rank}.npz"), lo=lo, hi=hi, **res)


def main():
    out, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "cases")
    dist.init_process_group("gloo", timeout=TIMEOUT)
    rank, world = dist.get_rank(), dist.get_world_size()
    if mode == "cases":
        run_cases(out, rank, world)
    else:
        x, _, y, _ = inputs(torch.float32)
        lo, hi = slice_of(rank, world)
        if rank == world - 1 and mode == "die":
            os._exit(3)  # a rank that dies before its first collective
        if rank == world - 1 and mode == "hang":
            time.sleep(3 * TIMEOUT.total_seconds())  # longer than the peers wait, then gone
        if rank == world - 1 and mode == "mismatch":
            lo -= 1  # an overlapping slice
        start = time.monotonic()
        try:
            itorch.vocab_parallel_cross_entropy(x[:, lo:hi], y, vocab_start=lo, vocab_size=VOCAB)
            msg = "ok"
        except RuntimeError as e:
            msg = f"RuntimeError: {e}"
        with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
            f.write(f"{time.monotonic() - start:.3f}\n{msg}\n")
        os._exit(0)  # no barrier: a dead or hanging peer must not hold this rank
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
