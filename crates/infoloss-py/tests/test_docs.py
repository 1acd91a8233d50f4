"""The examples in the docstrings run and print what they say (doctest)."""

from __future__ import annotations

import doctest
import importlib.util

import pytest

import infoloss
from infoloss import _distill, _functional, _linear, _scipy

MODULES = [infoloss, _functional, _scipy, _distill, _linear]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_torch_docstring_examples():
    import infoloss.torch as itorch

    result = doctest.testmod(itorch, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
