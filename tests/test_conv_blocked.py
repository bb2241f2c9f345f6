"""The blocked training convolution equals conv2d_forward/backward, and Conv2d takes it for thin
layers on large images (the thresholds are lowered here so that small tests reach it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F

from tests.helpers import assert_close, to_torch
from tinyfcn.functional import conv2d_backward, conv2d_forward
from tinyfcn.functional import conv_blocked as cb
from tinyfcn.functional.conv import normalize_conv_args
from tinyfcn.nn import Conv2d, manual_seed

# (N, C, O, H, W, kernel, stride, padding, dilation)
CASES = {
    "k3-s1-p1-batch2": (2, 3, 4, 11, 9, 3, 1, 1, 1),
    "k3x2-s2x1-p1x0": (3, 2, 5, 13, 8, (3, 2), (2, 1), (1, 0), 1),
    "k3-dil2-p2": (1, 2, 3, 10, 12, 3, 1, 2, 2),
    "k5-s3-p2-odd": (2, 3, 2, 17, 14, 5, 3, 2, 1),
}


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of one or two output rows, and the path taken for any matrix size."""
    monkeypatch.setitem(cb.BLOCKED, "block_bytes", 1)
    monkeypatch.setitem(cb.BLOCKED, "min_cols_bytes", 0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("block_bytes", [1, 600, 10**9], ids=["row", "rows", "whole"])
def test_blocked_equals_conv2d(xp, name, block_bytes, monkeypatch):
    monkeypatch.setitem(cb.BLOCKED, "block_bytes", block_bytes)
    N, C, O, H, W, k, s, p, d = CASES[name]
    rng = np.random.default_rng(len(name))
    x = xp.asarray(rng.standard_normal((N, C, H, W)))
    kh, kw = normalize_conv_args(k, s, p, d)[0]
    w = xp.asarray(rng.standard_normal((O, C, kh, kw)))
    b = xp.asarray(rng.standard_normal(O))
    args = normalize_conv_args(k, s, p, d)
    y_ref, cache_ref = conv2d_forward(x, w, b, s, p, d)
    y, cache = cb.conv2d_blocked_forward(x, w, b, *args)
    assert_close(y, y_ref, f"{name} output")
    dy = xp.asarray(rng.standard_normal(y.shape))
    ours, ref = cb.conv2d_blocked_backward(dy, cache), conv2d_backward(dy, cache_ref)
    for a, r, what in zip(ours, ref, ("dx", "dw", "db"), strict=True):
        assert_close(a, r, f"{name} {what}")


def test_conv2d_layer_takes_the_blocked_path_and_matches_torch(xp, device, tiny_blocks):
    manual_seed(0)
    layer = Conv2d(3, 4, 3, padding=1).double().to(device)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 10))
    dy = rng.standard_normal((2, 4, 9, 10))
    for _ in range(2):  # gradients accumulate across two backward passes, as in torch
        y = layer(xp.asarray(x))
        assert isinstance(layer.__dict__["_cache"][0], cb.BlockedConvCache)
        dx = layer.backward(xp.asarray(dy))
    xt = to_torch(x, requires_grad=True)
    wt = to_torch(layer.weight.data, requires_grad=True)
    bt = to_torch(layer.bias.data, requires_grad=True)
    for _ in range(2):
        F.conv2d(xt, wt, bt, padding=1).backward(to_torch(dy))
    assert_close(y, F.conv2d(to_torch(x), wt.detach(), bt.detach(), padding=1), "output")
    assert_close(dx, xt.grad / 2, "dx")
    assert_close(layer.weight.grad, wt.grad, "weight.grad (two steps)")
    assert_close(layer.bias.grad, bt.grad, "bias.grad (two steps)")


def test_thresholds():
    k, s, p, d = normalize_conv_args(3, 1, 1, 1)
    thin_big = cb.use_blocked((8, 16, 128, 128), (16, 16, 3, 3), k, s, p, d, 4)
    wide = cb.use_blocked((1, 256, 56, 56), (256, 256, 3, 3), k, s, p, d, 4)
    small = cb.use_blocked((1, 16, 8, 8), (16, 16, 3, 3), k, s, p, d, 4)
    pointwise = cb.use_blocked((8, 16, 128, 128), (16, 16, 1, 1), (1, 1), s, (0, 0), d, 4)
    assert (thin_big, wide, small, pointwise) == (True, False, False, False)
