"""The shifted-view convolution (tinyfcn.fast.conv_shifted) equals the textbook's conv2d, dX and
dW (float64, <= 1e-12 relative) on every stride-1 case of test_conv.py it accepts, with the samples
shared out among 1-3 threads; and the one BLAS call it is built on (tinyfcn.fast.cblas)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close, assert_same_as_textbook
from tests.test_conv import CASES
from tinyfcn import functional as F
from tinyfcn.fast import cblas, conv_shifted, plan
from tinyfcn.fast.conv_shifted import (
    ShiftedConvCache,
    conv2d_shifted_backward,
    conv2d_shifted_forward,
    shifted_conv2d,
    supports_shifted,
)
from tinyfcn.functional.conv import check_conv2d_args

pytestmark = pytest.mark.skipif(
    not cblas.available(np.zeros(1)), reason="no cblas_dgemm found in NumPy's BLAS"
)


def accepted(name: str) -> bool:
    c = CASES[name]
    x, w, b = c.arrays(0)
    args, _ = check_conv2d_args("conv2d", x, w, b, c.s, c.p, c.d)
    return supports_shifted(args)


IDS = [name for name in CASES if accepted(name)]


def test_the_accepted_cases_are_the_stride_1_ones_with_p_at_most_d_k_minus_1():
    assert "fcn-3x3-pad1" in IDS and "dil2-k3-p2" in IDS and "fcn-fc6-7x7-pad3" in IDS
    assert "fcn-conv1_1-3x3-pad100" not in IDS  # P = 100 > K - 1: dX would crop dY
    assert "1x1-stride2" not in IDS and "k2x3-s2x1-p1x0" not in IDS
    assert len(IDS) >= 8


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("chunk", ["sample", "row"])  # a chunk of output rows: all, or one
def test_shifted_training_conv_equals_textbook(name, threads, chunk, monkeypatch):
    if chunk == "row":
        monkeypatch.setattr(conv_shifted, "CHUNK_BYTES", 1)
    case = CASES[name]
    x, w, b = case.arrays(400 + IDS.index(name))
    args, _ = check_conv2d_args("conv2d", x, w, b, case.s, case.p, case.d)
    y, cache = F.conv2d_forward(x, w, b, case.s, case.p, case.d)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(dy, cache)
    x_before, dy_before = x.copy(), dy.copy()
    ours, ours_cache = conv2d_shifted_forward(x, w, b, *args, threads)
    assert isinstance(ours_cache, ShiftedConvCache) and ours_cache.threads == threads
    assert_same_as_textbook(ours, y, f"{name} y ({threads} threads)")
    dw_out = np.full(w.shape, np.nan)  # overwritten, never read
    grads = conv2d_shifted_backward(dy, ours_cache, dw_out)
    assert grads[1] is dw_out
    for what, a, t in zip(("dx", "dw", "db"), grads, (dx, dw, db), strict=True):
        if t is None:
            assert a is None
        else:
            assert_same_as_textbook(a, t, f"{name} {what} ({threads} threads)")
    no_bias = shifted_conv2d(x, w, None, args[2], args[3], threads)
    expected = y if b is None else y - b.reshape(1, -1, 1, 1)
    assert_same_as_textbook(no_bias, expected, f"{name} y without bias")
    assert_close(x, x_before, f"{name} x unchanged", rtol=0, atol=0)
    assert_close(dy, dy_before, f"{name} dy unchanged", rtol=0, atol=0)


def test_float32_is_within_rounding_of_the_float64_textbook():
    """A VGG-like thin layer (16 -> 32 channels, 3x3, pad 1) on 3 samples: y, dx, dw in float32
    within 2e-6 of the largest value of each (measured ~4e-7)."""
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((3, 16, 20, 18)), 0)
    w = rng.standard_normal((32, 16, 3, 3)) * np.sqrt(2 / 144)
    y, cache = F.conv2d_forward(x, w, None, 1, 1)
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = F.conv2d_backward(dy, cache)
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    args = ((3, 3), (1, 1), (1, 1), (1, 1))
    y32, cache32 = conv2d_shifted_forward(x32, w32, None, *args, threads=2)
    dx32, dw32, _ = conv2d_shifted_backward(dy32, cache32)
    for what, a, t in (("y", y32, y), ("dx", dx32, dx), ("dw", dw32, dw)):
        assert a.dtype == np.float32
        assert np.abs(a - t).max() <= 2e-6 * np.abs(t).max(), what


def test_planner_takes_shifted_views_for_shared_stride_1_convs(monkeypatch):
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 2)
    x = np.zeros((8, 16, 64, 64), np.float32)
    pad1 = ((3, 3), (1, 1), (1, 1), (1, 1))
    strided = ((3, 3), (2, 2), (1, 1), (1, 1))
    assert plan.conv2d_choice(x, (16, 16, 3, 3), pad1, (64, 64), True) == ("shifted", None, 2)
    assert plan.conv2d_choice(x, (16, 16, 3, 3), pad1, (64, 64), False) == ("shifted", None, 2)
    assert plan.conv2d_choice(x, (16, 16, 3, 3), strided, (32, 32), True)[0] == "blocked"
    assert plan.conv2d_choice(x[:1], (16, 16, 3, 3), pad1, (64, 64), True)[0] == "kept"  # 1 sample
    monkeypatch.setitem(plan.RULES, "shifted_conv", False)
    assert plan.conv2d_choice(x, (16, 16, 3, 3), pad1, (64, 64), True) == ("blocked", None, 2)


# --- cblas.gemm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_adds_into_c_and_reads_offset_and_transposed_views(dtype):
    rng = np.random.default_rng(0)
    big = rng.standard_normal((5, 40)).astype(dtype)
    a = rng.standard_normal((3, 5)).astype(dtype)
    c = rng.standard_normal((3, 7)).astype(dtype)
    start = c.copy()
    b = big[:, 11:18]  # an offset view: pointer + leading dimension 40
    assert cblas.gemm(a, b, c, 1.0) is c
    np.testing.assert_allclose(c, a @ b + start, rtol=1e-6)
    cblas.gemm(a, b, c)  # beta 0 overwrites
    np.testing.assert_allclose(c, a @ b, rtol=1e-6)
    bt = big[:4, 2:7].T  # transposed view (5, 4): columns contiguous
    out = np.full((3, 4), np.nan, dtype)  # beta 0: the nans are never read
    cblas.gemm(a, bt, out)
    np.testing.assert_allclose(out, a @ bt, rtol=1e-6)
    wide = np.zeros((3, 10), dtype)
    cblas.gemm(a, b, wide[:, 2:9])  # an output view with contiguous rows
    np.testing.assert_allclose(wide[:, 2:9], a @ b, rtol=1e-6)
    assert not wide[:, :2].any() and not wide[:, 9:].any()


def test_gemm_names_what_it_cannot_take():
    a, b = np.ones((2, 3)), np.ones((3, 4))
    with pytest.raises(ValueError, match="do not match"):
        cblas.gemm(a, b, np.ones((2, 5)))
    with pytest.raises(ValueError, match="neither contiguous rows nor contiguous columns"):
        cblas.gemm(np.ones((2, 6))[:, ::2], b, np.ones((2, 4)))
    with pytest.raises(ValueError, match="output's rows must be contiguous"):
        cblas.gemm(a, b, np.ones((4, 2)).T)
    with pytest.raises(TypeError, match="one dtype"):
        cblas.gemm(a.astype(np.float32), b, np.ones((2, 4)))
    assert cblas.available(np.ones(1, np.float32)) and not cblas.available(np.ones(1, np.int64))
    assert not cblas.available([1.0])
