"""The Python side of the conformance runner: the one case reader and comparison of the fixtures in testdata/
(schema in testdata/README.md), and the tally of a front end written for scripts/conformance_table.py.

A front end's adapter (tests/test_fixtures.py) runs every case of every file: it compares its results with
``Checker.field`` (the file's tolerances, NaN and ±inf exactly, ``f32_reference`` and ``also_expected`` as the
schema says) or answers ``NOT_SUPPORTED``; ``Tally`` counts passed / not supported / failed per family and writes
``<target>/conformance/<front end>/<file>``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from functools import lru_cache

import numpy as np
import pytest

from conftest import REPO, TESTDATA, mismatches

#: Every fixture file in testdata/ (the directory is the list: a new file runs with no edit here).
FILES = tuple(sorted(p.name for p in TESTDATA.glob("*.json")))

NOT_SUPPORTED = "not supported"


@lru_cache(maxsize=None)
def load(file):
    doc = json.loads((TESTDATA / file).read_text())
    assert doc["schema_version"] == 2, f"{file}: schema_version"
    assert doc["count"] == len(doc["cases"]), f"{file}: count field"
    return doc


def params():
    """Every case of every file, as pytest parameters ``(file, case)``."""
    return [pytest.param(f, c, id=f"{f[:-5]}:{c['name']}") for f in FILES for c in load(f)["cases"]]


def array(rec, dtype=np.float64):
    """An array record as a NumPy array (int64 records stay int64); None for null."""
    if rec is None:
        return None
    shape = tuple(int(s) for s in rec["shape"])
    if rec.get("dtype") == "int64":
        return np.array([int(v) for v in rec["data"]], dtype=np.int64).reshape(shape)
    return np.array([float(v) for v in rec["data"]], dtype=np.float64).reshape(shape).astype(dtype)


def dtype_of(case):
    return np.dtype(case["dtype"])


def distill_kwargs(o):
    """A distill case's ``options`` as the keyword arguments of ``distill`` (NumPy and torch)."""
    return dict(temperature=float(o["temperature"]), t2_scaling=o["t2_scaling"], divergence=o["divergence"],
                beta=float(o["beta"]), alpha=float(o["alpha"]), ignore_index=o["ignore_index"],
                reduction=o["reduction"], normalizer=o["normalizer"],
                logit_scale=float(o.get("logit_scale", 1.0)), softcap=o.get("softcap"))


class Checker:
    """Compares one case's results; collects the failures (field, flat index, got, expected)."""

    def __init__(self, file, case):
        self.case = case
        tol = load(file)["tolerances"][case["dtype"]]
        self.rtol, self.atol = float(tol["rtol"]), float(tol["atol"])
        self.failures = []

    def field(self, field, got, what=None):
        """``got`` against ``expected[field]`` and every ``also_expected`` value of the field."""
        what = what or field
        rec = (self.case.get("expected") or {}).get(field)
        if rec is None:
            self.failures.append(f"{what}: computed, but the case has no expected.{field}")
            return
        alts = {int(r[0]): (float(r[1]), float(r[2])) for r in (self.case.get("f32_reference") or {}).get(field, [])}
        self.compare(what, got, array(rec), self.rtol, self.atol, alts)
        for also in self.case.get("also_expected") or []:
            if field in also["expected"]:
                self.compare(f"{what} (vs {also['source']})", got, array(also["expected"][field]),
                             float(also["rtol"]), float(also["atol"]))

    def compare(self, what, got, want, rtol, atol, alternatives=None):
        if got is None:
            self.failures.append(f"{what}: missing")
            return
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            self.failures.append(f"{what}: shape {got.shape}, expected {want.shape}")
            return
        bad = mismatches(got, want, rtol, atol, alternatives)
        if bad:
            i = bad[0]
            idx = np.unravel_index(i, want.shape) if want.shape else ()
            self.failures.append(f"{what}: {len(bad)} of {want.size} differ; first at {tuple(map(int, idx))}: "
                                 f"got {got.reshape(-1)[i]!r}, expected {want.reshape(-1)[i]!r}")

    def done(self):
        assert not self.failures, f"{self.case['name']}:\n" + "\n".join(self.failures)


class Tally:
    """passed / not supported / failed per file and function of one front end."""

    def __init__(self, front_end):
        self.front_end = front_end
        self.counts = defaultdict(lambda: defaultdict(lambda: {"passed": 0, "not_supported": 0, "failed": 0}))

    def record(self, file, case, outcome):
        self.counts[file][case["function"]][outcome] += 1

    def write(self):
        target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
        out = os.path.join(target, "conformance", self.front_end)
        os.makedirs(out, exist_ok=True)
        for file, functions in self.counts.items():
            doc = load(file)
            total = {k: sum(f[k] for f in functions.values()) for k in ("passed", "not_supported", "failed")}
            with open(os.path.join(out, file), "w") as f:
                json.dump(dict(front_end=self.front_end, file=file, family=doc["family"], cases=doc["count"],
                               **total, functions=functions), f, indent=2)
                f.write("\n")

    def run(self, file, case, adapter):
        """Runs ``adapter(checker, case)`` and records the outcome; re-raises a failure."""
        ck = Checker(file, case)
        try:
            result = adapter(ck, case)
            if result != NOT_SUPPORTED:
                ck.done()
        except BaseException:
            self.record(file, case, "failed")
            raise
        self.record(file, case, "not_supported" if result == NOT_SUPPORTED else "passed")
