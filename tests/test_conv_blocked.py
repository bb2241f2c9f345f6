"""The blocked training convolution equals conv2d_forward/backward, and Conv2d takes it for thin
layers on large images (the thresholds are lowered here so that small tests reach it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F

from tests.helpers import assert_close, to_torch
from tinyfcn.functional import conv2d_backward, conv2d_forward, conv2d_input_grad
from tinyfcn.functional import conv_blocked as cb
from tinyfcn.functional.conv import normalize_conv_args
from tinyfcn.nn import Conv2d, manual_seed

# (N, C, O, H, W, kernel, stride, padding, dilation)
CASES = {
    "k3-s1-p1-batch2": (2, 3, 4, 11, 9, 3, 1, 1, 1),
    "k3-s1-p1-dx-as-conv": (2, 5, 4, 9, 10, 3, 1, 1, 1),  # O <= C: dX as a convolution
    "k3x2-s2x1-p1x0": (3, 2, 5, 13, 8, (3, 2), (2, 1), (1, 0), 1),
    "k3-dil2-p2": (1, 2, 3, 10, 12, 3, 1, 2, 2),
    "k5-s3-p2-odd": (2, 3, 2, 17, 14, 5, 3, 2, 1),
}


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of one or two output rows, and the path taken for any matrix size."""
    monkeypatch.setitem(cb.BLOCKED, "block_bytes", 1)
    monkeypatch.setitem(cb.BLOCKED, "min_pixels", 0)
    monkeypatch.setitem(cb.BLOCKED, "min_cols_bytes", 0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("block_bytes", [1, 600, 10**9], ids=["row", "rows", "whole"])
def test_blocked_equals_conv2d(xp, name, block_bytes, monkeypatch):
    monkeypatch.setitem(cb.BLOCKED, "block_bytes", block_bytes)
    monkeypatch.setitem(cb.BLOCKED, "min_pixels", 0)
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


# (N, C, O, H, W, kernel, padding, dilation): stride 1, every padding from 0 to D(K-1)
AS_CONV_CASES = {
    "k3-p1": (2, 3, 4, 9, 11, 3, 1, 1),
    "k3-p0": (1, 2, 5, 7, 6, 3, 0, 1),
    "k3-p2-full": (1, 3, 2, 6, 5, 3, 2, 1),
    "k3x2-p1x0": (3, 2, 3, 8, 9, (3, 2), (1, 0), 1),
    "k3-dil2-p3": (2, 2, 3, 10, 9, 3, 3, 2),
    "k7-p3-small-map": (1, 4, 3, 4, 4, 7, 3, 1),
    "k2-p0-subpixel": (2, 6, 8, 5, 5, 2, 0, 1),
    "k3-long-patch": (1, 2, 60, 5, 6, 3, 1, 1),  # O*kh*kw > max_patch: im2col_budget blocks
}


@pytest.mark.parametrize("name", list(AS_CONV_CASES))
@pytest.mark.parametrize("block_bytes", [1, 10**9], ids=["rows", "whole"])
def test_input_grad_as_conv_equals_col2im(xp, name, block_bytes, monkeypatch):
    """dX = conv2d(dY, flip_transpose(W), padding D(K-1) - P, dilation D) at stride 1."""
    monkeypatch.setitem(cb.BLOCKED, "block_bytes", block_bytes)
    monkeypatch.setitem(cb.BLOCKED, "min_pixels", 0)
    N, C, O, H, W, k, p, d = AS_CONV_CASES[name]
    rng = np.random.default_rng(len(name))
    k, s, p, d = normalize_conv_args(k, 1, p, d)
    w = xp.asarray(rng.standard_normal((O, C) + k))
    y_shape = conv2d_forward(xp.zeros((N, C, H, W)), w, None, s, p, d)[0].shape
    dy = xp.asarray(rng.standard_normal(y_shape))
    ref = conv2d_input_grad(dy, w, (N, C, H, W), s, p, d)
    assert_close(cb.conv2d_input_grad_as_conv(dy, w, k, p, d), ref, name)
    xt = to_torch(rng.standard_normal((N, C, H, W)), requires_grad=True)
    F.conv2d(xt, to_torch(w), None, s, p, d).backward(to_torch(dy))
    assert_close(ref, xt.grad, f"{name} (torch)")


def test_when_input_grad_is_a_conv():
    def rule(x_shape, w_shape, k, s, p, d=1):
        return cb.input_grad_is_conv(w_shape, x_shape, *normalize_conv_args(k, s, p, d))

    conv1_2 = rule((8, 16, 128, 128), (16, 16, 3, 3), 3, 1, 1)
    strided = rule((8, 16, 128, 128), (16, 16, 3, 3), 3, 2, 1)
    over_padded = rule((8, 16, 128, 128), (16, 16, 1, 1), 1, 1, 1)
    fc6 = rule((1, 512, 7, 7), (4096, 512, 7, 7), 7, 1, 3)  # W is 411 MB: no flipped copy
    dilated = rule((1, 8, 32, 32), (8, 8, 3, 3), 3, 1, 4, 2)
    conv1_1 = rule((1, 3, 224, 224), (64, 3, 3, 3), 3, 1, 1)  # im2col(dY) 21x im2col(x)
    cases = (conv1_2, strided, over_padded, fc6, dilated, conv1_1)
    assert cases == (True, False, False, False, True, False)


def test_conv2d_layer_input_grad_as_conv_without_blocks(xp, device):
    """A wide layer keeps its im2col matrix for dW and takes dX as a convolution."""
    manual_seed(0)
    layer = Conv2d(6, 5, 3, padding=1, dilation=1).double().to(device)
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((2, 6, 7, 8)), rng.standard_normal((2, 5, 7, 8))
    layer(xp.asarray(x))
    assert not isinstance(layer.__dict__["_cache"][0], cb.BlockedConvCache)
    dx = layer.backward(xp.asarray(dy))
    xt = to_torch(x, requires_grad=True)
    wt = to_torch(layer.weight.data, requires_grad=True)
    F.conv2d(xt, wt, to_torch(layer.bias.data), padding=1).backward(to_torch(dy))
    assert_close(dx, xt.grad, "dx")
    assert_close(layer.weight.grad, wt.grad, "weight.grad")
