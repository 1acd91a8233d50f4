"""Shared helpers of the Python tests: paths, tolerances, element-wise comparison with exact NaN/inf positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
TESTDATA = REPO / "testdata"
SEEDS_MD = REPO.parent / "shared" / "SEEDS.md"

TOL = {
    np.dtype(np.float16): (1e-3, 1e-3),
    np.dtype(np.float32): (1e-6, 1e-7),
    np.dtype(np.float64): (1e-12, 1e-12),
}


def mismatches(got, expected, rtol, atol, alternatives=None):
    """Flat indices where ``got`` differs from ``expected``: ``|g − e| ≤ atol + rtol·|e|``, NaN and ±inf exactly.

    ``alternatives`` maps a flat index to ``(value, slack)`` that is accepted as well.
    """
    g = np.asarray(got, dtype=np.float64).reshape(-1)
    e = np.asarray(expected, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        ok = np.where(
            np.isnan(e),
            np.isnan(g),
            np.where(np.isinf(e), g == e, np.isfinite(g) & (np.abs(g - e) <= atol + rtol * np.abs(e))),
        )
    bad = [int(i) for i in np.flatnonzero(~ok)]
    if alternatives:
        keep = []
        for i in bad:
            alt = alternatives.get(i)
            if alt is not None and np.isfinite(g[i]) and abs(g[i] - alt[0]) <= atol + alt[1] + rtol * abs(alt[0]):
                continue
            keep.append(i)
        bad = keep
    return bad


def assert_close(got, expected, rtol=1e-12, atol=1e-12, what="value"):
    got_a = np.asarray(got)
    exp_a = np.asarray(expected)
    assert got_a.shape == exp_a.shape, f"{what}: shape {got_a.shape}, expected {exp_a.shape}"
    bad = mismatches(got_a, exp_a, rtol, atol)
    assert not bad, (
        f"{what}: {len(bad)} of {exp_a.size} elements differ, first at {bad[0]}: "
        f"got {got_a.reshape(-1)[bad[0]]!r}, expected {exp_a.reshape(-1)[bad[0]]!r}"
    )
