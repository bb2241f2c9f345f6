"""Reading and setting OpenBLAS's thread count at run time (skipped where NumPy's BLAS is not an
OpenBLAS this module can find)."""

from __future__ import annotations

import pytest

from tinyfcn.blas import blas_threads, get_blas_threads, set_blas_threads

pytestmark = pytest.mark.skipif(get_blas_threads() is None, reason="no OpenBLAS found")


def test_blas_threads_sets_and_restores():
    before = get_blas_threads()
    with blas_threads(1):
        assert get_blas_threads() == 1
    assert get_blas_threads() == before
    with pytest.raises(RuntimeError), blas_threads(1):
        raise RuntimeError("restored on the way out of an error too")
    assert get_blas_threads() == before


def test_none_leaves_the_count_and_zero_is_refused():
    before = get_blas_threads()
    with blas_threads(None):
        assert get_blas_threads() == before
    with pytest.raises(ValueError, match="at least 1 thread"):
        set_blas_threads(0)
