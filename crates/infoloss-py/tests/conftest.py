"""Shared helpers of the Python tests: paths, tolerances, element-wise comparison with exact NaN/inf positions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

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


def check_against_torch(got, want, tol, what):
    """``got`` (a tensor, an array or a number) equals the torch tensor ``want`` within ``tol = (rtol, atol)``, shape
    included."""
    rtol, atol = tol
    got = np.asarray(got.detach().numpy() if hasattr(got, "detach") else got, dtype=np.float64)
    want = want.detach().double().numpy()
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs torch {want.shape}"
    bad = mismatches(got, want, rtol, atol)
    assert not bad, f"{what}: {len(bad)} elements differ, e.g. {got.reshape(-1)[bad[0]]!r} vs {want.reshape(-1)[bad[0]]!r}"


def assert_close(got, expected, rtol=1e-12, atol=1e-12, what="value"):
    got_a = np.asarray(got)
    exp_a = np.asarray(expected)
    assert got_a.shape == exp_a.shape, f"{what}: shape {got_a.shape}, expected {exp_a.shape}"
    bad = mismatches(got_a, exp_a, rtol, atol)
    assert not bad, (
        f"{what}: {len(bad)} of {exp_a.size} elements differ, first at {bad[0]}: "
        f"got {got_a.reshape(-1)[bad[0]]!r}, expected {exp_a.reshape(-1)[bad[0]]!r}"
    )


# ---------------------------------------------------------------------------------------- required packages

# scripts/test.sh (what CI runs) sets INFOLOSS_REQUIRE_TORCH=1: there torch 2.15, ml_dtypes and SciPy are installed,
# and a test skipped for want of one of them would pass CI without testing anything. Locally, without the variable,
# those tests skip as usual.
REQUIRE_TORCH = os.environ.get("INFOLOSS_REQUIRE_TORCH") == "1"
_OPTIONAL = ("torch", "ml_dtypes", "scipy")


def pytest_configure(config):
    if not REQUIRE_TORCH:
        return
    try:
        import ml_dtypes  # noqa: F401
        import scipy  # noqa: F401
        import torch
    except ImportError as e:
        raise pytest.UsageError(f"INFOLOSS_REQUIRE_TORCH=1 but {e.name} cannot be imported: {e}") from e
    if not torch.__version__.startswith("2.15."):
        raise pytest.UsageError(f"INFOLOSS_REQUIRE_TORCH=1 needs torch 2.15, found {torch.__version__}")


def _fail_if_missing_package(report):
    """Turns a skip for a missing optional package into a failure under INFOLOSS_REQUIRE_TORCH=1 (belt and braces
    with the import check above, e.g. for an ``importorskip`` with a minimum version)."""
    if not (REQUIRE_TORCH and report.skipped):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(f"'{m}'" in reason or f"{m} is not installed" in reason for m in _OPTIONAL):
        report.outcome = "failed"
        report.longrepr = f"skipped under INFOLOSS_REQUIRE_TORCH=1: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    _fail_if_missing_package((yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # module-level importorskip
    _fail_if_missing_package((yield).get_result())
