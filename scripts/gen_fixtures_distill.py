#!/usr/bin/env python3
"""Fixtures for infoloss's distillation and UDA losses, computed by PyTorch (forward and autograd gradient).

Writes testdata/distill.json (dense and top-k distillation) and testdata/uda.json (UDA consistency) in the common
fixture schema (testdata/README.md; `to_schema` below maps the values onto it; the references and the cases are
in `fixtures/distill.py`). Every case holds its inputs (float32 cases store float32-exact values), the "exact"
result as `expected` (the same PyTorch code run in float64 on the same upcast inputs) and, for float32 cases, the
result PyTorch computes in float32 as an `also_expected` entry with its own, wider tolerance (PyTorch rounds every
intermediate). For float64 cases the two coincide.

    python scripts/gen_fixtures_distill.py            # with torch 2.15
    python scripts/gen_fixtures_distill.py --check    # fail if the files on disk differ

Each loss is written as the PyTorch expression users write:

- forward KL:  F.kl_div(F.log_softmax(s/T, 1), F.log_softmax(t/T, 1), reduction=..., log_target=True) * T**2
- reverse KL:  F.kl_div(lq, lp, reduction='none', log_target=True)
- generalized JSD: TRL's GKDTrainer.generalized_jsd_loss (beta == 0 / 1 special-cased as forward / reverse KL)
- total variation: 0.5 * (lp.exp() - lq.exp()).abs()
- hard+soft: alpha * soft + (1 - alpha) * F.cross_entropy(s, labels, ignore_index=...)
- top-k: the same divergences over the buckets (top-k classes [+ tail]) built densely with gather/logsumexp
- UDA: the articles' PyTorch code (softmax / confidence mask under no_grad, KLDivLoss(reduction='none').sum(-1),
  masked sum / max(count, 1)) and Google's target-sharpening variant. Every UDA case also holds the gradient for a
  non-unit upstream gradient (`upstream`; `loss.backward(upstream)` by autograd): `grad_upstream` (float64) and
  `grad_upstream_torch` (the case's dtype).
"""

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_schema  # noqa: E402  (the common layout of every file in testdata/)
from fixtures.common import write_or_check  # noqa: E402
from fixtures.distill import distill_cases, enc, uda_cases  # noqa: E402

# float64 results are compared with the exact value at atol 1e-13 (one order tighter than the other files)
TOLERANCES = {"float32": {"rtol": 1e-6, "atol": 1e-7}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


def torch_f32_tolerance(name):
    """PyTorch's own float32 result is further from the exact value than infoloss's: within 1.05x (rtol 1e-6,
    atol 1e-7) of it for ordinary logits, 21x for the logits of scale 60 (`large_logits`), where each float32
    log-probability of size ~45 carries an absolute rounding error of ~4e-6."""
    return {"rtol": 5e-5, "atol": 5e-6} if "large_logits" in name else {"rtol": 2e-6, "atol": 2e-7}


def to_schema(c):
    """One case of this generator in the common layout (scripts/fixture_schema.py)."""
    rec = fixture_schema.record
    dtype = {"f32": "float32", "f64": "float64"}[c["dtype"]]
    rows, cols = c["shape"]
    out = {"name": c["name"], "dtype": dtype}
    torch_f32 = {}
    if "ori" in c:  # UDA consistency
        out["function"] = "uda_consistency"
        out["inputs"] = {"ori": rec(c["shape"], c["ori"]), "aug": rec(c["shape"], c["aug"])}
        out["options"] = c["options"]
        out["grad_output"] = rec([], enc(c["upstream"]))
        out["expected"] = {
            "output": rec([], c["loss"]),
            "grad_input": rec(c["shape"], c["grad_upstream"]),
            "grad_input_unit": rec(c["shape"], c["grad"]),
            "row_kl": rec([rows], c["row_kl"]),
            "mask": rec([rows], c["mask"]),
            "kept": rec([], [c["kept"]], integer=True),
        }
        torch_f32 = {
            "output": rec([], c["loss_torch"]),
            "grad_input": rec(c["shape"], c["grad_upstream_torch"]),
            "grad_input_unit": rec(c["shape"], c["grad_torch"]),
            "row_kl": rec([rows], c["row_kl_torch"]),
        }
    else:
        inputs = {"student": rec(c["shape"], c["student"])}
        tk = c.get("topk")
        if tk is None:
            out["function"] = "distill"
            inputs["teacher"] = rec(c["shape"], c["teacher"])
            options = dict(c["options"])
        else:
            out["function"] = "distill_topk"
            inputs["topk_indices"] = rec([rows, tk["k"]], tk["indices"], integer=True)
            inputs["topk_logprobs"] = rec([rows, tk["k"]], tk["logprobs"])
            if "dense_teacher" in c:
                inputs["dense_teacher"] = rec(c["shape"], c["dense_teacher"])
            options = dict(c["options"], add_tail=tk["add_tail"])
        if c["labels"] is not None:
            inputs["labels"] = rec([rows], c["labels"], integer=True)
        out["inputs"] = inputs
        out["options"] = options
        loss_shape = [rows] if options["reduction"] == "none" else []
        out["grad_output"] = None if c["upstream"] is None else rec(loss_shape, c["upstream"])
        out["expected"] = {"output": rec(loss_shape, c["loss"]), "grad_input": rec(c["shape"], c["grad"])}
        torch_f32 = {"output": rec(loss_shape, c["loss_torch"]), "grad_input": rec(c["shape"], c["grad_torch"])}
    if dtype == "float32":
        out["also_expected"] = [dict(source="torch float32", **torch_f32_tolerance(c["name"]), expected=torch_f32)]
    return out


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="reduction: 'mean' divides")
    versions = {"torch": torch.__version__}
    d = distill_cases()
    u = uda_cases()
    texts = {}
    for family, cases in [("distill", d), ("uda", u)]:
        head = fixture_schema.header(family, "scripts/gen_fixtures_distill.py", versions, len(cases),
                                     tolerances=TOLERANCES)
        texts[family + ".json"] = fixture_schema.dumps(head, [to_schema(c) for c in cases])
    bad = write_or_check(texts, "--check" in sys.argv[1:])
    print(f"{len(d)} distillation cases and {len(u)} UDA cases (torch {torch.__version__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
