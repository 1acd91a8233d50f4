#!/usr/bin/env python3
"""Prints the conformance table: for every fixture family (testdata/*.json) and every front end that ran it, the
cases passed / not supported / failed, from the tallies the conformance adapters write to
<target>/conformance/<front end>/<file> (target: $CARGO_TARGET_DIR, else the workspace's target/).

Exits 1 if a tally records a failed case or does not account for every case of its file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORDER = ("core", "candle", "cli", "python", "python-torch")


def main() -> int:
    root = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "conformance"
    tallies = {}
    for path in sorted(root.glob("*/*.json")):
        t = json.loads(path.read_text())
        tallies[(t["front_end"], t["file"])] = t
    if not tallies:
        print(f"no conformance tallies under {root}", file=sys.stderr)
        return 1
    fronts = sorted({f for f, _ in tallies}, key=lambda f: (ORDER.index(f) if f in ORDER else len(ORDER), f))
    files = sorted(p.name for p in (REPO / "testdata").glob("*.json"))
    counts = {f: json.loads((REPO / "testdata" / f).read_text())["count"] for f in files}
    bad = []
    rows = [["family (cases)"] + [f"{f}: passed / n.s. / failed" for f in fronts]]
    totals = {f: [0, 0, 0] for f in fronts}
    for file in files:
        row = [f"{file[:-5]} ({counts[file]})"]
        for front in fronts:
            t = tallies.get((front, file))
            if t is None:
                row.append("not run")
                bad.append(f"{front} did not run {file}")
                continue
            p, s, x = t["passed"], t["not_supported"], t["failed"]
            row.append(f"{p} / {s} / {x}")
            totals[front] = [a + b for a, b in zip(totals[front], (p, s, x))]
            if x or p + s + x != counts[file]:
                bad.append(f"{front} {file}: {x} failed, {p + s + x} of {counts[file]} cases accounted for")
        rows.append(row)
    rows.append([f"total ({sum(counts.values())})"] + [" / ".join(map(str, totals[f])) for f in fronts])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(rows[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows[1:]:
        print(line(r))
    for b in bad:
        print("conformance:", b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
