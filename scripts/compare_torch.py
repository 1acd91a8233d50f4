#!/usr/bin/env python3
"""Run the same losses in PyTorch (when importable) and in infoloss, print both timings and the ratio.

infoloss is timed by its own CLI (`infoloss bench --json`, built in release mode), torch in this process with the
same thread count. Forward + backward in both, median of --reps runs.

    /path/to/venv-with-torch/bin/python scripts/compare_torch.py --sizes 4096x32000 --threads 2
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_ops(torch, F):
    def ce(x, t, **kw):
        x = x.detach().requires_grad_()
        F.cross_entropy(x, t, **kw).backward()

    def ce_probs(x, p):
        x = x.detach().requires_grad_()
        F.cross_entropy(x, p).backward()

    def nll(lp, t):
        lp = lp.detach().requires_grad_()
        F.nll_loss(lp, t).backward()

    def kl(lp, q, log_target=False):
        lp = lp.detach().requires_grad_()
        F.kl_div(lp, q, reduction="batchmean", log_target=log_target).backward()

    def bce(x, y):
        x = x.detach().requires_grad_()
        F.binary_cross_entropy(x, y).backward()

    def bce_logits(x, y, pw):
        x = x.detach().requires_grad_()
        F.binary_cross_entropy_with_logits(x, y, pos_weight=pw).backward()

    def entropy(p):
        torch.special.entr(p).sum(1)

    def kd(s, t, mode="forward", labels=None):
        # distill_with_grad, T = 2 with T² scaling: the torch spelling of the anchor
        s = s.detach().requires_grad_()
        ls, lt = F.log_softmax(s / 2, 1), F.log_softmax(t / 2, 1)
        if mode == "forward":
            loss = F.kl_div(ls, lt, reduction="batchmean", log_target=True) * 4
        else:  # reverse KL(p‖q)
            loss = F.kl_div(lt, ls, reduction="batchmean", log_target=True) * 4
        if labels is not None:
            loss = 0.5 * loss + 0.5 * F.cross_entropy(s, labels)
        loss.backward()

    def uda(ori, aug):
        # uda_consistency, T = 0.4 on the augmented side, confidence threshold 0.5 (mean over kept rows)
        aug = aug.detach().requires_grad_()
        with torch.no_grad():
            p = F.softmax(ori, 1)
            mask = (p.max(1).values > 0.5).to(p.dtype)
        row = F.kl_div(F.log_softmax(aug / 0.4, 1), p, reduction="none").sum(1)
        ((row * mask).sum() / mask.sum().clamp(min=1)).backward()

    def js(p, q):
        m = 0.5 * (p + q)
        (0.5 * (F.kl_div(m.log(), p, reduction="none").sum(1) + F.kl_div(m.log(), q, reduction="none").sum(1))).sqrt()

    return {
        "ce": lambda d: ce(d["logits"], d["targets"]),
        "ce-ls": lambda d: ce(d["logits"], d["targets"], label_smoothing=0.1),
        "ce-weight": lambda d: ce(d["logits"], d["targets"], weight=d["weight"]),
        "ce-probs": lambda d: ce_probs(d["logits"], d["probs"]),
        "ce-inplace": lambda d: ce(d["logits"], d["targets"]),
        "ce-probs-inplace": lambda d: ce_probs(d["logits"], d["probs"]),
        "nll": lambda d: nll(d["logp"], d["targets"]),
        "log-softmax": lambda d: F.log_softmax(d["logits"], 1),
        "softmax": lambda d: F.softmax(d["logits"], 1),
        "logsumexp": lambda d: torch.logsumexp(d["logits"], 1),
        "log-softmax-bwd": lambda d: torch.ops.aten._log_softmax_backward_data(d["logits2"], d["logp"], 1, d["logp"].dtype),
        "kl": lambda d: kl(d["logp"], d["probs2"]),
        "kl-log": lambda d: kl(d["logp"], d["logq"], True),
        "kl-inplace": lambda d: kl(d["logp"], d["probs2"]),
        "bce": lambda d: bce(d["unit"], d["binary"]),
        "bce-inplace": lambda d: bce(d["unit"], d["binary"]),
        "bce-logits": lambda d: bce_logits(d["logits"], d["binary"], d["pos_weight"]),
        "bce-logits-inplace": lambda d: bce_logits(d["logits"], d["binary"], d["pos_weight"]),
        "entropy": lambda d: entropy(d["probs"]),
        "rel-entropy": lambda d: torch.special.xlogy(d["probs"], d["probs"] / d["probs2"]).sum(1),
        "js": lambda d: js(d["probs"], d["probs2"]),
        "kd": lambda d: kd(d["logits"], d["logits2"]),
        "kd-reverse": lambda d: kd(d["logits"], d["logits2"], "reverse"),
        "kd-mix": lambda d: kd(d["logits"], d["logits2"], labels=d["targets"]),
        "uda": lambda d: uda(d["logits2"], d["logits"]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4096x32000")
    ap.add_argument("--ops", default="ce,ce-ls,ce-probs,nll,kl,kl-log,bce,bce-logits")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--infoloss", default=os.path.join(ROOT, "target", "release", "infoloss"))
    args = ap.parse_args()

    if not os.path.exists(args.infoloss):
        subprocess.run(["cargo", "build", "--release", "-p", "infoloss-cli"], cwd=ROOT, check=True)
    out = subprocess.run(
        [args.infoloss, "bench", "--json", "--ops", args.ops, "--sizes", args.sizes, "--dtypes", args.dtype,
         "--threads", str(args.threads), "--reps", str(args.reps)],
        check=True, capture_output=True, text=True,
    ).stdout
    ours = {(r["op"], r["rows"], r["classes"]): r for r in json.loads(out)["results"]}

    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
        print("torch is not importable: printing infoloss only", file=sys.stderr)

    print(f"{'op':<16} {'size':>11} {'infoloss ms':>12} {'copy ratio':>10} {'torch ms':>10} {'torch/infoloss':>15}"
          f"  dtype={args.dtype} threads={args.threads}")
    for size in args.sizes.split(","):
        n, v = (int(s) for s in size.lower().split("x"))
        data = None
        if torch is not None:
            torch.set_num_threads(args.threads)
            g = torch.Generator().manual_seed(0)
            logits = torch.rand(n, v, generator=g) * 8 - 4
            logits2 = torch.rand(n, v, generator=g) * 8 - 4
            logp = torch.log_softmax(logits, 1)
            logq = torch.log_softmax(torch.rand(n, v, generator=g) * 8 - 4, 1)
            data = {
                "logits": logits, "logits2": logits2, "logp": logp, "logq": logq, "probs": logp.exp(), "probs2": logq.exp(),
                "targets": torch.randint(0, v, (n,), generator=g),
                "unit": torch.rand(n, v, generator=g) * 0.998 + 0.001,
                "binary": (torch.rand(n, v, generator=g) < 0.3).float(),
                "weight": torch.rand(v, generator=g) * 1.5 + 0.5,
                "pos_weight": torch.rand(v, generator=g) * 2 + 1,
            }
            if args.dtype == "bf16":
                data = {k: (t.to(torch.bfloat16) if t.is_floating_point() else t) for k, t in data.items()}
            ops = torch_ops(torch, F)
        for op in args.ops.split(","):
            r = ours.get((op, n, v))
            mine = r["median_s"] * 1e3 if r else float("nan")
            ratio = r["ratio_to_copy"] if r else float("nan")
            theirs = float("nan")
            if data is not None:
                ops[op](data)
                ts = []
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    ops[op](data)
                    ts.append(time.perf_counter() - t0)
                theirs = sorted(ts)[len(ts) // 2] * 1e3
            print(f"{op:<16} {size:>11} {mine:>12.1f} {ratio:>10.2f} {theirs:>10.1f} {theirs / mine:>15.2f}", flush=True)


if __name__ == "__main__":
    main()
