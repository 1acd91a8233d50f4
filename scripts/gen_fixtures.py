#!/usr/bin/env python3
"""Generate the PyTorch / SciPy reference fixtures in ``testdata/``.

Run from anywhere with torch 2.15, SciPy 1.17 and NumPy 2.4 installed::

    python scripts/gen_fixtures.py            # writes <repo>/testdata/*.json
    python scripts/gen_fixtures.py --check    # regenerates in memory, fails if a file differs

Everything is deterministic: every family has its own fixed seed (``SEEDS`` in ``fixtures/family.py``) and torch
runs single-threaded. The files are in the common fixture schema (``fixture_schema.py``), documented in
``testdata/README.md`` (which this script writes, ``fixtures/readme.py``); the conformance runners
(``crates/infoloss-conformance`` and every front end's adapter) read them.

This file only puts the families together; ``fixtures/family.py`` holds the case builder and each family's cases
are in ``fixtures/softmax_ce.py`` (softmax, nll_loss, cross_entropy), ``fixtures/kl_bce.py`` (kl_div, the two
binary cross-entropies, the SEEDS.md numbers) and ``fixtures/info.py`` (information measures).

Values and gradients of the losses come from torch (forward, then ``torch.autograd.grad`` with the recorded upstream
gradient). The information measures take their values from SciPy and their gradients from torch autograd of the same
formulas in float64 (see ``info_*`` in ``fixtures/info.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_schema  # noqa: E402  (the common layout of every file in testdata/)
from fixtures.common import deterministic_torch, versions, write_or_check  # noqa: E402
from fixtures.info import gen_info  # noqa: E402
from fixtures.kl_bce import add_seeds, gen_bce, gen_bce_logits, gen_kl_div  # noqa: E402
from fixtures.readme import write_readme  # noqa: E402
from fixtures.softmax_ce import gen_cross_entropy, gen_nll, gen_softmax  # noqa: E402


def build() -> dict[str, dict]:
    fams = {
        "softmax": gen_softmax(),
        "nll_loss": gen_nll(),
        "cross_entropy": gen_cross_entropy(),
        "kl_div": gen_kl_div(),
        "binary_cross_entropy": gen_bce(),
        "binary_cross_entropy_with_logits": gen_bce_logits(),
    }
    add_seeds(fams["binary_cross_entropy"], fams["binary_cross_entropy_with_logits"], fams["kl_div"],
              fams["cross_entropy"])
    info = gen_info()
    if info is not None:
        fams["info"] = info
    return {name: fam.document() for name, fam in fams.items()}


def dumps(doc: dict) -> str:
    return fixture_schema.dumps({k: v for k, v in doc.items() if k != "cases"}, doc["cases"])

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if the files on disk differ from a fresh run")
    args = ap.parse_args()
    deterministic_torch()
    docs = build()
    texts = {name: dumps(doc) for name, doc in docs.items()}
    bad = write_or_check({f"{name}.json": text for name, text in texts.items()}, args.check)
    if not write_readme(docs, texts, args.check):
        bad.append("README.md")
    total = 0
    for name, doc in docs.items():
        total += doc["count"]
        n_err = sum(1 for c in doc["cases"] if c.get("error"))
        print(f"{name + '.json':42s} {doc['count']:5d} cases ({n_err} error cases), {len(texts[name]) / 1024:8.1f} KiB")
    print(f"total {total} cases; versions {versions()}")
    if bad:
        print("out of date:", ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
