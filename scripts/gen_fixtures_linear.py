#!/usr/bin/env python3
"""Generate the PyTorch 2.15 fixtures of the cross-entropy extras and the fused linear losses.

Writes exactly two files::

    testdata/ce_extras.json   cross_entropy_extras: z-loss, softcap, lse, token accuracy
    testdata/linear.json      linear_cross_entropy and linear_distill

Run with the torch 2.15 environment (deterministic: fixed seeds, one torch thread)::

    python scripts/gen_fixtures_linear.py            # write
    python scripts/gen_fixtures_linear.py --check    # fail if the files on disk differ

Both files are in the common fixture schema (testdata/README.md; written through ``fixture_schema.py``). The
values are computed here as::

    case = {"name", "function", "dtype": "float32" | "float64",
            "inputs": {name: array}, "options": {...}, "grad_output": array | null,
            "expected": {name: array},          # torch evaluated in `dtype`
            "exact": {name: array},             # float32 only: the same expression in float64 on the same inputs
            "spread": {name: array},            # float32 only: see below
            "chunk_sizes": [...]}               # linear functions: run once per chunk size
    error case = {"name", "function", "dtype", "inputs", "options", "error": true, "message": torch's or ours}

and ``to_schema`` writes ``exact``/``spread`` as ``f32_reference`` rows ``[index, exact, 2·spread]``. The cases are
built in ``fixtures/ce_extras.py``, ``fixtures/linear_ce.py`` and ``fixtures/linear_distill.py``.

Tolerances: float64 |got − expected| ≤ 1e-12 + 1e-12·|expected|. float32: within 1e-7 + 1e-6·|expected| of torch's
float32 value, or within 1e-7 + 1e-6·|exact| + 2·spread of the exact (float64) value, where ``spread`` is the largest
change of the float64 result when every float32 input moves by at most one float32 ulp (4 random trials): the
element's inherent float32 uncertainty. (The fused linear losses run their GEMMs in float32 with another summation
order than torch's BLAS; float32 rounding of the logits alone moves the results by about that much.) Non-finite
values must match exactly.

The torch expressions (``xc`` = capped logits; ``keep`` = target != ignore_index)::

    xc   = c * torch.tanh(x / c)            (or x)
    lse  = torch.logsumexp(xc, 1)
    z    = torch.where(keep, s * lse.pow(2), 0)
    loss = F.cross_entropy(xc, y, weight, ignore_index, reduction, label_smoothing)
           + {mean: z.sum() / keep.sum(), sum: z.sum(), none: z}        (no z term when s == 0)
    acc  = (xc.argmax(1) == y)[keep].float().mean()   (none: torch.where(keep, (argmax == y).float(), 0))
    linear: x = F.linear(hidden, weight, bias), gradients wrt hidden, weight, bias by autograd
    linear_distill: s = F.linear(xs, ws), t = F.linear(xt, wt), then the distillation expression of
            infoloss::distill (F.kl_div(log_softmax(s/T), log_softmax(t/T), log_target=True)·T², TRL's JSD, TVD,
            + (1 − alpha)·F.cross_entropy(s, labels)), gradients wrt xs and ws.
    linear_distill, "ldx_" cases (appended last): s = F.linear(xs, ws, bs), t = F.linear(xt, wt, bt) (inputs
            "student_bias", "teacher_bias", either may be null), an optional sparse teacher (case key
            "teacher_topk": {"k", "add_tail"}: idx = t.topk(k, 1).indices, lq = log_softmax(t/T, 1).gather(1, idx),
            lp = (s/T).gather(1, idx) − logsumexp(s/T, 1), plus the tail buckets
            logsumexp(s/T over the other classes) − logsumexp(s/T) and log1mexp(logsumexp(lq)) with add_tail), and
            a non-unit "grad_output" (a scalar, or (N,) for 'none'): gradients wrt xs, ws and bs
            ("grad_bias") by torch.autograd.grad(loss, ..., grad_output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_schema  # noqa: E402  (the common layout of every file in testdata/)
from fixtures.ce_extras import gen_ce_extras  # noqa: E402
from fixtures.common import deterministic_torch, versions, write_or_check  # noqa: E402
from fixtures.linear_ce import gen_linear_ce  # noqa: E402
from fixtures.linear_distill import gen_linear_distill, gen_linear_distill_extras, gen_linear_issue24  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------


def to_schema(case):
    """The common layout (scripts/fixture_schema.py): the loss is ``output``, the class weight of
    ``cross_entropy_extras`` an option as in ``cross_entropy`` (and ``teacher_topk`` an option of
    ``linear_distill``), the float32 ``exact``/``spread`` pairs become
    ``f32_reference`` rows, and torch's own ``F.linear_cross_entropy`` result (compared in float64 only; the
    generator asserts the float32 agreement) becomes an ``also_expected`` entry."""
    c = dict(case)
    ren = lambda d: {("output" if k == "loss" else k): v for k, v in d.items()}
    if c["function"] == "cross_entropy_extras":
        inputs = dict(c["inputs"])
        c["options"] = dict(c["options"], weight=inputs.pop("weight"))
        c["inputs"] = inputs
    if "teacher_topk" in c:
        c["options"] = dict(c["options"], teacher_topk=c.pop("teacher_topk"))
    if "expected" in c:
        c["expected"] = ren(c["expected"])
    exact, spread = c.pop("exact", None), c.pop("spread", None)
    if exact is not None:
        rows = fixture_schema.f32_reference_rows(c["expected"], ren(exact), ren(spread))
        if rows:
            c["f32_reference"] = rows
    torch_lce = c.pop("torch_linear_cross_entropy", None)
    if torch_lce is not None and c["dtype"] == "float64":
        c["also_expected"] = [dict(source="torch F.linear_cross_entropy", **fixture_schema.TOLERANCES["float64"],
                                   expected=ren(torch_lce))]
    return c


def document(family, cases, generator="scripts/gen_fixtures_linear.py"):
    head = fixture_schema.header(family, generator, versions(with_scipy=False), len(cases))
    return fixture_schema.dumps(head, [to_schema(c) for c in cases])

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the files on disk differ from a fresh run")
    args = ap.parse_args()
    deterministic_torch()
    lin = []
    gen_linear_ce(lin)
    gen_linear_distill(lin)
    gen_linear_distill_extras(lin)
    gen_linear_issue24(lin)
    docs = {"ce_extras.json": document("ce_extras", gen_ce_extras()), "linear.json": document("linear", lin)}
    bad = write_or_check(docs, args.check)
    for name, text in docs.items():
        print(f"{name} ({text.count(chr(10)) - 2} cases)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
