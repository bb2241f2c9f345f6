"""Shared fixtures: ``xp`` runs a test on NumPy and, where a GPU is present, on CuPy."""

from __future__ import annotations

import numpy as np
import pytest

from tinyfcn.backend import cupy_available

try:
    import cupy
except Exception:
    cupy = None


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    """The array module under test; the CuPy variant skips cleanly without CuPy and a GPU."""
    if request.param == "numpy":
        return np
    if not cupy_available():
        pytest.skip("CuPy with a CUDA device is not available")
    return cupy


@pytest.fixture
def device(xp):
    """``"cpu"`` or ``"cuda"``, matching ``xp``."""
    return "cpu" if xp is np else "cuda"
