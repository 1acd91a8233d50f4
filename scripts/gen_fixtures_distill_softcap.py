#!/usr/bin/env python3
"""Generate the PyTorch 2.15 fixtures of linear_distill_topk and of the student logit scale / softcap.

Writes exactly two files::

    testdata/linear_distill_topk.json   linear_distill_topk: a fused student head against a stored top-k teacher
    testdata/distill_softcap.json       logit_scale and softcap in distill, distill_topk and linear_distill

    python scripts/gen_fixtures_distill_softcap.py            # write
    python scripts/gen_fixtures_distill_softcap.py --check    # fail if the files on disk differ

The cases are built in ``fixtures/distill_softcap.py`` (torch expressions in its docstring) in the layout of
``gen_fixtures_linear.py`` (``expected`` = torch in the case's dtype; float32 cases also hold the float64 result
on the same inputs and its float32-ulp spread, written as ``f32_reference`` rows by ``to_schema``).
linear_distill_topk cases: inputs ``student_hidden``, ``student_weight``, ``student_bias`` (or null),
``topk_indices`` (N, k), ``topk_logprobs`` (N, k), ``labels``; the options of linear_distill plus ``add_tail``;
``chunk_sizes``; a non-unit ``grad_output``; ``expected`` output, grad_hidden, grad_weight (and grad_bias).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures.common import deterministic_torch, versions, write_or_check  # noqa: E402
from fixtures.distill_softcap import gen_linear_distill_topk, gen_softcap  # noqa: E402
from gen_fixtures_linear import document as linear_document  # noqa: E402


def document(family, cases):
    return linear_document(family, cases, "scripts/gen_fixtures_distill_softcap.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if the files on disk differ from a fresh run")
    args = ap.parse_args()
    deterministic_torch()
    ltk, cap = [], []
    gen_linear_distill_topk(ltk)
    gen_softcap(cap)
    docs = {"linear_distill_topk.json": document("linear_distill_topk", ltk),
            "distill_softcap.json": document("distill_softcap", cap)}
    bad = write_or_check(docs, args.check)
    print(f"{len(ltk)} linear_distill_topk cases, {len(cap)} softcap / logit scale cases")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
