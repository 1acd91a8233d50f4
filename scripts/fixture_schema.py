"""The one layout every fixture file in testdata/ is written in (documented in testdata/README.md, "Schema").

The generators compute their values their own way; this module only puts them into the common layout, so that one
case reader per language (crates/infoloss-conformance, crates/infoloss-py/tests/conformance.py) reads every file.
"""

from __future__ import annotations

import json
import math

SCHEMA_VERSION = 2

TOLERANCES = {"float32": {"rtol": 1e-6, "atol": 1e-7}, "float64": {"rtol": 1e-12, "atol": 1e-12}}


def header(family: str, generator: str, versions: dict, count: int, seed=None, tolerances=None) -> dict:
    head = {"schema_version": SCHEMA_VERSION, "family": family, "generator": generator}
    if seed is not None:
        head["seed"] = seed
    head["versions"] = versions
    head["tolerances"] = tolerances or TOLERANCES
    head["count"] = count
    return head


def dumps(head: dict, cases: list) -> str:
    """The file's text: the header, then one case per line (readable diffs, small files)."""
    lines = [json.dumps(head, allow_nan=False)[:-1] + ', "cases": [']
    for i, c in enumerate(cases):
        lines.append(json.dumps(c, allow_nan=False, separators=(",", ":")) + ("," if i + 1 < len(cases) else ""))
    lines.append("]}")
    return "\n".join(lines) + "\n"


def record(shape, data, integer=False) -> dict:
    """An array record; ``data`` is already flat (numbers, or "nan"/"inf"/"-inf")."""
    rec = {"shape": [int(d) for d in shape]}
    if integer:
        rec["dtype"] = "int64"
        rec["data"] = [int(v) for v in data]
    else:
        rec["data"] = list(data)
    return rec


def _finite(v) -> bool:
    return not isinstance(v, str) and math.isfinite(v)


def f32_reference_rows(expected: dict, exact: dict, spread: dict) -> dict:
    """``f32_reference`` rows ``[index, exact, slack]`` from a float64 ``exact`` value and an inherent float32
    ``spread`` per element (slack = 2·spread): the rule "within tolerance of torch's float32 value, or within
    tolerance + 2·spread of the exact value" as the common reader applies it. An element whose exact value equals
    the expected one with no spread adds nothing to the plain comparison and is left out."""
    out = {}
    for field, rec in expected.items():
        if rec is None or field not in exact:
            continue
        rows = []
        for i, (e, x, s) in enumerate(zip(rec["data"], exact[field]["data"], spread[field]["data"])):
            if _finite(e) and _finite(x) and not (x == e and s == 0):
                rows.append([i, x, 2.0 * s])
        if rows:
            out[field] = rows
    return out
