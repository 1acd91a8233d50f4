"""The SciPy-compatible measures against SciPy itself (skipped when SciPy is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

scipy = pytest.importorskip("scipy")
from scipy import special, stats  # noqa: E402
from scipy.spatial import distance  # noqa: E402

import infoloss  # noqa: E402
from conftest import assert_close  # noqa: E402

RNG = np.random.default_rng(99)


def dist(*shape):
    return RNG.uniform(0.0, 1.0, size=shape)


@pytest.mark.parametrize("axis", [0, 1, -1, None])
@pytest.mark.parametrize("base", [None, 2.0, 10])
def test_entropy_matches_scipy(axis, base):
    p, q = dist(4, 6), dist(4, 6)
    p[0, 0] = 0.0
    assert_close(infoloss.entropy(p, base=base, axis=axis), stats.entropy(p, base=base, axis=axis), rtol=1e-13)
    assert_close(infoloss.entropy(p, q, base=base, axis=axis), stats.entropy(p, q, base=base, axis=axis), rtol=1e-13)
    for keepdims in (False, True):
        got = infoloss.entropy(p, q, base=base, axis=axis, keepdims=keepdims)
        want = stats.entropy(p, q, base=base, axis=axis, keepdims=keepdims)
        assert np.shape(got) == np.shape(want)


def test_entropy_types_broadcasting_and_integers():
    v = infoloss.entropy([1, 2, 3])
    assert isinstance(v, np.float64) and v == pytest.approx(stats.entropy([1, 2, 3]), rel=1e-15)
    p, q = dist(3, 1), dist(1, 5)
    assert_close(infoloss.entropy(p, q, axis=0), stats.entropy(p, q, axis=0), rtol=1e-13)
    v32 = infoloss.entropy(np.float32([1, 2, 3]))
    assert isinstance(v32, np.float32) and v32 == pytest.approx(stats.entropy(np.float32([1, 2, 3])), rel=1e-6)
    # q = 0 where p > 0: infinite relative entropy
    assert infoloss.entropy([0.5, 0.5], [1.0, 0.0]) == np.inf


def test_elementwise_functions_match_scipy():
    x = np.array([0.0, 1e-300, 0.3, 1.0, 2.5, -1.0, np.inf, np.nan])
    y = np.array([0.0, 0.5, 0.0, 1.0, 3.0, 1.0, 2.0, 1.0])
    assert_close(infoloss.entr(x), special.entr(x), rtol=1e-14)
    assert_close(infoloss.rel_entr(x, y), special.rel_entr(x, y), rtol=1e-14)
    assert_close(infoloss.rel_entr(x[:, None], y[None, :]), special.rel_entr(x[:, None], y[None, :]), rtol=1e-14)
    assert isinstance(infoloss.entr(0.5), np.float64)
    assert float(infoloss.rel_entr(2, 1)) == pytest.approx(special.rel_entr(2, 1), rel=1e-15)


@pytest.mark.parametrize("axis", [0, 1, None])
@pytest.mark.parametrize("keepdims", [False, True])
def test_jensenshannon_matches_scipy(axis, keepdims):
    p, q = dist(3, 5), dist(3, 5)
    for base in (None, 2.0):
        got = infoloss.jensenshannon(p, q, base=base, axis=axis, keepdims=keepdims)
        want = distance.jensenshannon(p, q, base=base, axis=axis, keepdims=keepdims)
        assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_shannon_cross_entropy_is_entropy_plus_kl():
    p, q = dist(4, 7), dist(4, 7)
    got = infoloss.shannon_cross_entropy(p, q, axis=1)
    assert_close(got, stats.entropy(p, axis=1) + stats.entropy(p, q, axis=1), rtol=1e-13)
    assert_close(infoloss.self_information(p, base=2), -np.log2(p), rtol=1e-14)
