#!/usr/bin/env python3
"""Time per step and bytes communicated of the vocab-parallel losses on torch.distributed (gloo, CPU), against the
single-process loss, in the same run.

    .venv-test/bin/python scripts/vocab_parallel_bench.py --rows 4096 --vocab 128256 --ranks 1 2 3

Each configuration runs under ``torchrun --standalone --nproc-per-node N`` with ``OMP_NUM_THREADS`` = cores / N and
``infoloss.set_num_threads`` likewise; a step is forward + backward of ``vocab_parallel_cross_entropy`` (and
``vocab_parallel_distill``, forward KL) on this rank's slice of float32 logits; the median of ``--reps`` steps is
reported with the bytes every rank sent through ``all_reduce`` (counted by wrapping the collective). ``--ranks 1``
times the single-process infoloss.torch loss on the whole vocabulary.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def steps(x, losses, reps, before, sent):
    """name -> median seconds of forward + backward of ``losses[name](leaf copy of x)`` over ``reps`` steps (after
    one warm-up step), and the
    bytes ``sent()`` reports after the last one; ``before()`` runs before each timed step."""
    out = {}
    for name, loss_of in losses.items():
        times = []
        for _ in range(reps + 1):  # the first step warms up (thread pools, page faults) and is not counted
            xs = x.clone().requires_grad_(True)
            before()
            t0 = time.perf_counter()
            loss_of(xs).backward()
            times.append(time.perf_counter() - t0)
        times = times[1:]
        out[name] = {"median_s": sorted(times)[len(times) // 2], "bytes_sent": sent()}
    return out


def worker(args):
    import numpy as np
    import torch
    import torch.distributed as dist

    import infoloss
    import infoloss.torch as itorch
    from infoloss import _vocab_parallel as vp

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    threads = max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    infoloss.set_num_threads(threads)
    sent = [0]
    base = vp._Group.all_reduce

    def counting(self, buf, how):
        sent[0] += buf.nbytes
        base(self, buf, how)

    vp._Group.all_reduce = counting
    bounds = [int(b) for b in np.linspace(0, args.vocab, world + 1)]
    lo, hi = bounds[rank], bounds[rank + 1]
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(args.rows, hi - lo, generator=g)
    t = torch.randn(args.rows, hi - lo, generator=g)
    y = torch.randint(0, args.vocab, (args.rows,), generator=torch.Generator().manual_seed(7))
    def before():
        sent[0] = 0
        dist.barrier()

    losses = {
        "cross_entropy": lambda xs: itorch.vocab_parallel_cross_entropy(xs, y, vocab_start=lo, vocab_size=args.vocab),
        "distill": lambda xs: itorch.vocab_parallel_distill(xs, t, vocab_start=lo, vocab_size=args.vocab),
    }
    out = steps(x, losses, args.reps, before, lambda: sent[0])
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()


def single(args):
    import torch

    import infoloss.torch as itorch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.vocab, generator=g)
    t = torch.randn(args.rows, args.vocab, generator=g)
    y = torch.randint(0, args.vocab, (args.rows,), generator=torch.Generator().manual_seed(7))
    losses = {"cross_entropy": lambda xs: itorch.cross_entropy(xs, y), "distill": lambda xs: itorch.distill(xs, t)}
    out = steps(x, losses, args.reps, lambda: None, lambda: 0)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for n in args.ranks:
        if n == 1:
            res = single(args)
        else:
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", __file__, "--worker", "--out", f.name,
                       "--rows", str(args.rows), "--vocab", str(args.vocab), "--reps", str(args.reps)]
                subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(max(1, os.cpu_count() // n))))
                res = json.load(open(f.name))
        for name, r in res.items():
            rows.append((name, n, r["median_s"], r["bytes_sent"]))
    print(f"{'loss':<14} {'ranks':>5} {'step (s)':>9} {'bytes sent per rank':>20} {'formula':>10}")
    for name, n, s, b in rows:
        # f64 values: the layout check (5 per rank), then max and sums (CE: N + 4N + 1; forward KL: 3N + 6N)
        values = 5 * n + (5 * args.rows + 1 if name == "cross_entropy" else 9 * args.rows)
        formula = 8 * values if n > 1 else 0
        print(f"{name:<14} {n:>5} {s:>9.3f} {b:>20,} {formula:>10,}")


if __name__ == "__main__":
    main()
