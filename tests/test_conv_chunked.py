"""Inference convolution in bounded im2col blocks equals the one-matrix convolution."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tinyfcn.backend import asnumpy
from tinyfcn.functional import conv2d
from tinyfcn.functional.conv_chunked import (
    cols_nbytes,
    conv2d_chunked,
    im2col_budget,
    set_im2col_budget,
)
from tinyfcn.nn import Conv2d, no_grad

CASES = {
    "3x3-p1": ((2, 3, 13, 11), (4, 3, 3, 3), 1, 1, 1),
    "paper-conv1_1-p100": ((1, 3, 5, 7), (2, 3, 3, 3), 1, 100, 1),
    "k5x3-s2x1-p2x0-d1x2": ((2, 2, 17, 12), (3, 2, 5, 3), (2, 1), (2, 0), (1, 2)),
    "fc6-7x7": ((1, 4, 9, 8), (5, 4, 7, 7), 1, 0, 1),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("budget", [1, 500, 10**9], ids=["one-row", "few-rows", "whole"])
def test_chunked_equals_whole_matrix(xp, name, budget):
    x_shape, w_shape, s, p, d = CASES[name]
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.standard_normal(x_shape),
        rng.standard_normal(w_shape),
        rng.standard_normal(w_shape[0]),
    )
    expected = conv2d(x, w, b, s, p, d)
    got = conv2d_chunked(xp.asarray(x), xp.asarray(w), xp.asarray(b), s, p, d, budget=budget)
    assert_close(asnumpy(got), expected, f"{name} chunked (budget {budget} B)", 1e-12, 1e-12)


def test_conv2d_layer_uses_blocks_under_no_grad_only(xp):
    layer = Conv2d(3, 4, 3, padding=1).double().to("cpu" if xp is np else "cuda")
    x = xp.asarray(np.random.default_rng(1).standard_normal((1, 3, 40, 30)))
    assert cols_nbytes(x.shape, layer.weight.shape, 1, 1, 1, 8) == 27 * 1200 * 8
    old = im2col_budget()
    try:
        set_im2col_budget(1000)  # far below this layer's 259 KB matrix: blocks of 4 rows
        with no_grad():
            chunked = layer(x)
        full = layer(x)  # with gradients: one matrix, cached for backward
        assert layer._spare_cols is None and layer.__dict__["_cache"] is not None
    finally:
        set_im2col_budget(old)
    assert_close(
        asnumpy(chunked), asnumpy(full), "layer output, blocks vs one matrix", 1e-12, 1e-12
    )
    with pytest.raises(ValueError, match="positive"):
        set_im2col_budget(0)
