"""Conv2d against PyTorch, the loop reference, central differences and the im2col adjoint identity.

Every tensor (y, dX, dW, db) is compared with ``torch.nn.functional.conv2d`` in float64 over awkward
configurations (non-square kernels, unequal strides and paddings, dilation, odd sizes, batch 1 and
>1, no bias) and FCN's own shapes. Tests take the ``xp`` fixture so that they also run on CuPy where
a GPU is present; torch tensors are always built on the CPU from NumPy copies.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close, to_torch
from tinyfcn import fast
from tinyfcn.backend import asnumpy
from tinyfcn.fast import workspace
from tinyfcn.functional import col2im, conv2d, conv2d_backward, conv2d_forward, im2col
from tinyfcn.functional.reference import conv2d_reference
from tinyfcn.gradcheck import assert_gradcheck
from tinyfcn.nn import Conv2d, manual_seed, no_grad


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class ConvCase(NamedTuple):
    """x (N, C, H, W) convolved with a weight (O, C, kh, kw): stride s, padding p, dilation d."""

    N: int
    C: int
    O: int
    H: int
    W: int
    k: int | tuple[int, int]
    s: int | tuple[int, int] = 1
    p: int | tuple[int, int] = 0
    d: int | tuple[int, int] = 1
    bias: bool = True

    def arrays(self, seed: int):
        """x, weight, bias (None without bias): float64 NumPy, weight scaled by 1/sqrt(fan_in)."""
        rng = np.random.default_rng(seed)
        kh, kw = _pair(self.k)
        x = rng.standard_normal((self.N, self.C, self.H, self.W))
        w = rng.standard_normal((self.O, self.C, kh, kw)) / np.sqrt(self.C * kh * kw)
        b = rng.standard_normal(self.O) if self.bias else None
        return x, w, b

    def layer(self, xp, w, b, dtype=np.float64) -> Conv2d:
        """A Conv2d of this shape whose parameters are set to (w, b), on xp's device."""
        layer = Conv2d(self.C, self.O, self.k, self.s, self.p, self.d, self.bias, dtype=dtype)
        layer.weight.data = xp.asarray(w)
        if self.bias:
            layer.bias.data = xp.asarray(b)
        return layer


CASES = {
    # FCN's own shapes: VGG's 3x3 pad 1, conv1_1's pad 100, fc6 as a 7x7 conv with and without
    # padding (padding 3 keeps a 1x1 input at 1x1), the 1x1 score layers over 21 classes.
    "fcn-3x3-pad1": ConvCase(2, 3, 4, 7, 6, 3, 1, 1),
    "fcn-conv1_1-3x3-pad100": ConvCase(1, 3, 2, 4, 4, 3, 1, 100),
    "fcn-fc6-7x7-pad0": ConvCase(1, 3, 4, 9, 8, 7),
    "fcn-fc6-7x7-pad3": ConvCase(2, 2, 3, 5, 6, 7, 1, 3),
    "fcn-fc6-7x7-pad3-1x1-input": ConvCase(1, 2, 3, 1, 1, 7, 1, 3),
    "fcn-score-1x1-to-21": ConvCase(2, 6, 21, 4, 3, 1),
    "1x1-no-bias-batch1": ConvCase(1, 5, 21, 3, 5, 1, bias=False),
    "1x1-stride2": ConvCase(2, 3, 4, 7, 6, 1, 2),
    "1x1-stride2x3-pad1": ConvCase(1, 3, 2, 5, 7, 1, (2, 3), 1),
    "k2x3-s2x1-p1x0": ConvCase(2, 3, 4, 8, 7, (2, 3), (2, 1), (1, 0)),
    "k3x2-s1x3-p0x2-no-bias": ConvCase(1, 2, 3, 6, 9, (3, 2), (1, 3), (0, 2), bias=False),
    "k5x1-s3x2-p2x0-odd-batch3": ConvCase(3, 2, 2, 11, 13, (5, 1), (3, 2), (2, 0)),
    "dil2-k3-p2": ConvCase(2, 3, 2, 9, 8, 3, 1, 2, 2),
    "dil2x3-k3x2-s2-p1x3": ConvCase(1, 2, 3, 10, 11, (3, 2), 2, (1, 3), (2, 3)),
    "stride-gt-kernel-k2-s3-p1": ConvCase(2, 3, 2, 8, 10, 2, 3, 1),
    "pad-gt-kernel-k3-s2-p4x2-no-bias": ConvCase(1, 2, 2, 3, 4, 3, 2, (4, 2), bias=False),
    "kernel-fills-padded-input-k5x3-p1x0": ConvCase(1, 2, 3, 3, 5, (5, 3), 1, (1, 0)),
}
IDS = list(CASES)
# The four-nested-loop reference is slow: leave out conv1_1's 202x202 output.
REFERENCE_IDS = [name for name in IDS if name != "fcn-conv1_1-3x3-pad100"]


def torch_conv2d(case: ConvCase, x, w, b, seed: int):
    """torch's y, and its (dx, dw, db) for a random upstream gradient dy (returned too)."""
    xt, wt = to_torch(x, requires_grad=True), to_torch(w, requires_grad=True)
    bt = None if b is None else to_torch(b, requires_grad=True)
    yt = F.conv2d(xt, wt, bt, stride=case.s, padding=case.p, dilation=case.d)
    dy = np.random.default_rng(seed).standard_normal(tuple(yt.shape))
    yt.backward(to_torch(dy))
    return yt, dy, xt.grad, wt.grad, None if bt is None else bt.grad


def assert_close_rel(ours, theirs, name: str, tol: float) -> None:
    """Within ``tol`` relative to the largest entry of theirs (float32 comparisons)."""
    theirs_np = theirs.detach().numpy() if torch.is_tensor(theirs) else asnumpy(theirs)
    scale = float(np.abs(theirs_np).max())
    assert_close(ours, theirs, name, rtol=tol, atol=tol * max(scale, 1e-30))


# --- parity with PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_conv2d_functional_matches_torch(xp, name):
    case = CASES[name]
    x, w, b = case.arrays(seed=IDS.index(name))
    yt, dy, dxt, dwt, dbt = torch_conv2d(case, x, w, b, seed=1000 + IDS.index(name))
    # copies (xp.array copies, even NumPy to NumPy): x and dy stay as the untouched originals
    X, Wt, B, DY = (None if a is None else xp.array(a) for a in (x, w, b, dy))

    y, cache = conv2d_forward(X, Wt, B, case.s, case.p, case.d)
    assert y.dtype == np.float64
    assert_close(y, yt, f"{name} output")
    dx, dw, db = conv2d_backward(DY, cache)
    assert_close(dx, dxt, f"{name} dx")
    assert_close(dw, dwt, f"{name} dw")
    if case.bias:
        assert_close(db, dbt, f"{name} db")
    else:
        assert db is None
    # backward reads dy and x; it must not write into them
    assert_close(DY, dy, f"{name} dy after backward (must be unchanged)", rtol=0, atol=0)
    assert_close(X, x, f"{name} x after backward (must be unchanged)", rtol=0, atol=0)
    # the forward-only function gives the same output
    assert_close(conv2d(X, Wt, B, case.s, case.p, case.d), yt, f"{name} conv2d() output")


@pytest.mark.parametrize("name", IDS)
def test_conv2d_layer_matches_torch_layer(xp, name):
    case = CASES[name]
    x, w, b = case.arrays(seed=IDS.index(name))
    layer = case.layer(xp, w, b)
    tlayer = torch.nn.Conv2d(
        case.C, case.O, case.k, case.s, case.p, case.d, bias=case.bias, dtype=torch.float64
    )
    with torch.no_grad():
        tlayer.weight.copy_(torch.from_numpy(w))
        if case.bias:
            tlayer.bias.copy_(torch.from_numpy(b))
    xt = to_torch(x, requires_grad=True)
    yt = tlayer(xt)
    dy = np.random.default_rng(2000 + IDS.index(name)).standard_normal(tuple(yt.shape))
    yt.backward(to_torch(dy))

    X, DY = xp.array(x), xp.array(dy)  # copies: x and dy stay as the untouched originals
    y = layer(X)
    assert_close(y, yt, f"{name} Conv2d output")
    dx = layer.backward(DY)
    assert dx.dtype == np.float64
    assert_close(dx, xt.grad, f"{name} Conv2d dx")
    assert_close(X, x, f"{name} Conv2d input after backward (must be unchanged)", rtol=0, atol=0)
    assert_close(DY, dy, f"{name} Conv2d dy after backward (must be unchanged)", rtol=0, atol=0)
    assert_close(layer.weight.grad, tlayer.weight.grad, f"{name} Conv2d weight.grad")
    if case.bias:
        assert_close(layer.bias.grad, tlayer.bias.grad, f"{name} Conv2d bias.grad")
    else:
        assert layer.bias is None


def test_layer_weight_shapes_match_torch():
    ours = Conv2d(3, 5, (2, 3))
    theirs = torch.nn.Conv2d(3, 5, (2, 3))
    assert ours.weight.shape == tuple(theirs.weight.shape) == (5, 3, 2, 3)
    assert ours.bias.shape == tuple(theirs.bias.shape)
    assert Conv2d(3, 5, 1, bias=False).bias is None


# --- the loop reference ----------------------------------------------------------------------


@pytest.mark.parametrize("name", REFERENCE_IDS)
def test_conv2d_matches_loop_reference(xp, name):
    case = CASES[name]
    x, w, b = case.arrays(seed=3000 + IDS.index(name))
    expected = conv2d_reference(x, w, b, case.s, case.p, case.d)
    B = None if b is None else xp.asarray(b)
    y = conv2d(xp.asarray(x), xp.asarray(w), B, case.s, case.p, case.d)
    assert_close(y, expected, f"{name} fast vs loop reference")
    # the oracle itself agrees with torch
    bt = None if b is None else to_torch(b)
    yt = F.conv2d(to_torch(x), to_torch(w), bt, stride=case.s, padding=case.p, dilation=case.d)
    assert_close(expected, yt, f"{name} loop reference vs torch")


# --- im2col and col2im -----------------------------------------------------------------------

# id: (x shape, kernel, stride, padding, dilation)
UNFOLD_CASES = {
    "k3-s1-p1": ((2, 3, 5, 6), 3, 1, 1, 1),
    "k2x3-s2x1-p1x0": ((2, 2, 7, 6), (2, 3), (2, 1), (1, 0), 1),
    "stride-gt-kernel-k2-s3": ((1, 2, 8, 9), 2, 3, 0, 1),
    "stride-gt-kernel-k1x2-s3x4-p2": ((2, 1, 7, 9), (1, 2), (3, 4), 2, 1),
    "dil2-k3-p2": ((1, 2, 8, 7), 3, 1, 2, 2),
    "dil2x3-k3x2-s2-p1x3": ((2, 2, 9, 10), (3, 2), 2, (1, 3), (2, 3)),
    "k7-p3-fc6": ((1, 2, 4, 5), 7, 1, 3, 1),
    "k5x1-s3x2-p2x0-odd": ((2, 1, 11, 13), (5, 1), (3, 2), (2, 0), 1),
    "k1-s1": ((2, 3, 4, 3), 1, 1, 0, 1),
}


@pytest.mark.parametrize("name", list(UNFOLD_CASES))
def test_col2im_is_the_adjoint_of_im2col(xp, name):
    """<im2col(x), c> == <x, col2im(c)> for random x, c: col2im is im2col's adjoint, not inverse."""
    shape, k, s, p, d = UNFOLD_CASES[name]
    rng = np.random.default_rng(list(UNFOLD_CASES).index(name))
    x = rng.standard_normal(shape)
    cols = im2col(xp.asarray(x), k, s, p, d)
    c = rng.standard_normal(cols.shape)
    back = col2im(xp.asarray(c), shape, k, s, p, d)
    assert back.shape == shape

    lhs = float(np.vdot(asnumpy(cols), c))
    rhs = float(np.vdot(x, asnumpy(back)))
    scale = float(np.abs(asnumpy(cols)).ravel() @ np.abs(c).ravel())
    assert abs(lhs - rhs) <= 1e-12 * scale, (
        f"{name}: <im2col(x), c> = {lhs!r} vs <x, col2im(c)> = {rhs!r}"
    )

    # both also match torch's unfold / fold, which use the same (c, i, j) row order but keep the
    # batch as a leading axis: ours (C*kh*kw, N*L) is theirs (N, C*kh*kw, L) with N moved inside
    kw = dict(kernel_size=k, dilation=d, padding=p, stride=s)
    N, rows = shape[0], cols.shape[0]
    theirs = F.unfold(to_torch(x), **kw).permute(1, 0, 2).reshape(rows, -1)
    assert_close(cols, theirs, f"{name} im2col vs torch unfold")
    c_batched = to_torch(c.reshape(rows, N, -1).transpose(1, 0, 2))
    assert_close(back, F.fold(c_batched, output_size=shape[2:], **kw), f"{name} col2im vs fold")


# --- central differences ---------------------------------------------------------------------

GRADCHECK_CASES = {
    "3x3-pad1": ConvCase(2, 2, 3, 5, 4, 3, 1, 1),
    "k2x3-s2x1-p1x0": ConvCase(2, 2, 2, 5, 6, (2, 3), (2, 1), (1, 0)),
    "dil2-k3-p2-no-bias": ConvCase(1, 2, 2, 6, 5, 3, 1, 2, 2, bias=False),
    "fc6-7x7-pad3": ConvCase(1, 1, 2, 4, 3, 7, 1, 3),
    "1x1-pointwise": ConvCase(2, 3, 4, 3, 2, 1),
    "1x1-stride2": ConvCase(1, 3, 2, 5, 4, 1, 2),
    "stride-gt-kernel-k2-s3": ConvCase(1, 2, 2, 7, 8, 2, 3),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_conv2d_gradcheck(xp, device, name):
    case = GRADCHECK_CASES[name]
    manual_seed(list(GRADCHECK_CASES).index(name))
    layer = Conv2d(case.C, case.O, case.k, case.s, case.p, case.d, bias=case.bias).double()
    layer.to(device)
    x = np.random.default_rng(7).standard_normal((case.N, case.C, case.H, case.W))
    result = assert_gradcheck(layer, xp.asarray(x), seed=11)
    expected = {"input", "weight"} | ({"bias"} if case.bias else set())
    assert set(result.errors) == expected


# --- dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["fcn-3x3-pad1", "fcn-fc6-7x7-pad3", "fcn-score-1x1-to-21", "k2x3-s2x1-p1x0"]
)
def test_conv2d_float32_layer_matches_torch_float32(xp, name):
    case = CASES[name]
    x, w, b = (a.astype(np.float32) for a in case.arrays(seed=IDS.index(name)))
    layer = case.layer(xp, w, b, dtype=np.float32)
    xt, wt, bt = (to_torch(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv2d(xt, wt, bt, stride=case.s, padding=case.p, dilation=case.d)
    dy = np.random.default_rng(4000).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(to_torch(dy))

    y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == np.float32
    assert_close_rel(y, yt, f"{name} float32 output", 1e-5)
    assert_close_rel(dx, xt.grad, f"{name} float32 dx", 1e-5)
    assert_close_rel(layer.weight.grad, wt.grad, f"{name} float32 weight.grad", 1e-5)
    assert_close_rel(layer.bias.grad, bt.grad, f"{name} float32 bias.grad", 1e-5)


def test_conv2d_layer_computes_in_the_weight_dtype(xp):
    """float64 weights: float32 input is computed in float64, y is float64, dx comes back float32.
    float32 weights: float64 input is computed in float32, y is float32, dx comes back float64."""
    case = CASES["k2x3-s2x1-p1x0"]
    x, w, b = case.arrays(seed=8)
    x32 = x.astype(np.float32)
    yt, dy, dxt, dwt, dbt = torch_conv2d(case, x32.astype(np.float64), w, b, seed=9)

    layer = case.layer(xp, w, b, dtype=np.float32)  # built float32, then given float64 arrays
    y = layer(xp.asarray(x32))
    assert y.dtype == np.float64
    assert_close(y, yt, "float64 weights, float32 input: output")
    dx = layer.backward(xp.asarray(dy))
    assert dx.dtype == np.float32
    assert_close(dx, dxt.numpy().astype(np.float32), "float64 weights: dx", rtol=1e-6, atol=1e-6)
    assert layer.weight.grad.dtype == layer.bias.grad.dtype == np.float64
    assert_close(layer.weight.grad, dwt, "float64 weights: weight.grad")
    assert_close(layer.bias.grad, dbt, "float64 weights: bias.grad")

    w32, b32 = w.astype(np.float32), b.astype(np.float32)
    layer = case.layer(xp, w32, b32, dtype=np.float32)
    xt = to_torch(x32, requires_grad=True)
    yt = F.conv2d(xt, to_torch(w32), to_torch(b32), stride=case.s, padding=case.p)
    yt.backward(to_torch(dy.astype(np.float32)))
    y = layer(xp.asarray(x))  # float64 input into a float32 layer
    assert y.dtype == np.float32
    assert_close_rel(y, yt, "float32 weights, float64 input: output", 1e-5)
    dx = layer.backward(xp.asarray(dy))  # a float64 dy is cast to the weight dtype too
    assert dx.dtype == np.float64
    assert_close_rel(dx, xt.grad, "float32 weights: dx", 1e-5)


# --- the 1x1 path, buffers, no_grad ----------------------------------------------------------


def test_pointwise_conv_is_a_dense_layer_at_every_pixel(xp):
    """A 1x1 convolution applies one dense layer W @ x + b to the channel vector of every pixel;
    its gradients are the dense layer's, summed over the pixels."""
    rng = np.random.default_rng(12)
    N, C, O, H, W = 2, 5, 7, 3, 4
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C, 1, 1))
    b = rng.standard_normal(O)
    dy = rng.standard_normal((N, O, H, W))
    dense = w[:, :, 0, 0]  # (O, C)

    y_expected = np.empty((N, O, H, W))
    dx_expected, dw_expected = np.empty_like(x), np.zeros((O, C))
    for n in range(N):
        for i in range(H):
            for j in range(W):
                y_expected[n, :, i, j] = dense @ x[n, :, i, j] + b
                dx_expected[n, :, i, j] = dense.T @ dy[n, :, i, j]
                dw_expected += np.outer(dy[n, :, i, j], x[n, :, i, j])

    y, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b))
    assert_close(y, y_expected, "1x1 conv vs per-pixel W @ x + b")
    dx, dw, db = conv2d_backward(xp.asarray(dy), cache)
    assert_close(dx, dx_expected, "1x1 conv dx vs per-pixel W^T @ dy")
    assert_close(dw, dw_expected[:, :, None, None], "1x1 conv dw vs sum of dy x^T")
    assert_close(db, dy.sum(axis=(0, 2, 3)), "1x1 conv db")

    # with stride 2 the same dense layer sees every other pixel
    y2 = conv2d(xp.asarray(x), xp.asarray(w), xp.asarray(b), stride=2)
    assert_close(y2, y_expected[:, :, ::2, ::2], "1x1 stride-2 conv vs per-pixel product")


def _step(layer, x, dy):
    """One forward + backward; NumPy copies of (y, dx)."""
    y = layer(x)
    return asnumpy(y).copy(), asnumpy(layer.backward(dy)).copy()


@pytest.mark.parametrize(
    "name", ["fcn-3x3-pad1", "k2x3-s2x1-p1x0", "1x1-stride2", "fcn-score-1x1-to-21"]
)
def test_conv2d_layer_reuses_im2col_buffer_without_stale_values(xp, name):
    """After backward the layer keeps its im2col matrix for the next forward: a second step with a
    different input must equal a fresh layer's, and must not change what the first step returned."""
    case = CASES[name]
    x1, w, b = case.arrays(seed=20)
    x2, x3 = case.arrays(seed=21)[0], case.arrays(seed=22)[0] * 3.0
    out_shape = F.conv2d(to_torch(x1), to_torch(w), None, case.s, case.p, case.d).shape
    rng = np.random.default_rng(23)
    dy1, dy2 = (rng.standard_normal(tuple(out_shape)) for _ in range(2))
    X1, X2, X3 = (xp.array(a) for a in (x1, x2, x3))  # copies: x1, x2, x3 stay untouched

    layer = case.layer(xp, w, b)
    y1 = layer(X1)
    dx1 = layer.backward(xp.asarray(dy1))
    y1_seen, dx1_seen = asnumpy(y1).copy(), asnumpy(dx1).copy()
    grad1 = asnumpy(layer.weight.grad).copy()
    pointwise = _pair(case.k) == (1, 1) and _pair(case.s) == (1, 1) and _pair(case.p) == (0, 0)
    if fast.is_enabled():  # the engine keeps the matrix as the layer's spare (not a pointwise
        assert (workspace.spare_of(layer) is None) == pointwise  # conv's: that is its input)

    y2, dx2 = _step(layer, X2, xp.asarray(dy2))
    fresh = case.layer(xp, w, b)
    y2_fresh, dx2_fresh = _step(fresh, X2, xp.asarray(dy2))
    assert_close(y2, y2_fresh, f"{name} second step output vs fresh layer")
    assert_close(dx2, dx2_fresh, f"{name} second step dx vs fresh layer")
    # gradients accumulate across the two steps, as in torch
    assert_close(layer.weight.grad, grad1 + asnumpy(fresh.weight.grad), f"{name} accumulated dw")
    # nothing the first step returned was overwritten, and the inputs are untouched
    assert_close(y1, y1_seen, f"{name} first output after the second step", rtol=0, atol=0)
    assert_close(dx1, dx1_seen, f"{name} first dx after the second step", rtol=0, atol=0)
    assert_close(X1, x1, f"{name} first input after the second step", rtol=0, atol=0)

    # a third step against torch, after a forward at another batch size (buffer does not fit)
    layer(xp.asarray(np.concatenate([x1, x2])))
    layer.backward(xp.asarray(np.concatenate([dy1, dy2])))
    layer.zero_grad()
    yt, dy3, dxt, dwt, _ = torch_conv2d(case, x3, w, b, seed=24)
    y3, dx3 = _step(layer, X3, xp.asarray(dy3))
    assert_close(y3, yt, f"{name} third step output")
    assert_close(dx3, dxt, f"{name} third step dx")
    assert_close(layer.weight.grad, dwt, f"{name} third step weight.grad")

    # a forward whose backward never runs (its buffer is recycled), then a full step
    layer.zero_grad()
    y_abandoned = layer(X1)
    y_abandoned_seen = asnumpy(y_abandoned).copy()
    y3, dx3 = _step(layer, X3, xp.asarray(dy3))
    assert_close(y3, yt, f"{name} output after an abandoned forward")
    assert_close(dx3, dxt, f"{name} dx after an abandoned forward")
    assert_close(layer.weight.grad, dwt, f"{name} weight.grad after an abandoned forward")
    assert_close(y_abandoned, y_abandoned_seen, f"{name} abandoned output", rtol=0, atol=0)


@pytest.mark.parametrize("name", ["fcn-3x3-pad1", "1x1-stride2", "fcn-score-1x1-to-21"])
def test_conv2d_forward_under_no_grad_then_normal_forward(xp, name):
    case = CASES[name]
    x1, w, b = case.arrays(seed=30)
    x2, x3 = case.arrays(seed=31)[0], case.arrays(seed=32)[0]
    layer = case.layer(xp, w, b)

    with no_grad():
        y0 = layer(xp.asarray(x1))
    assert_close(y0, torch_conv2d(case, x1, w, b, 0)[0], f"{name} output under no_grad")
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        layer.backward(xp.asarray(np.zeros(y0.shape)))

    for x in (x2, x3):  # normal steps, each after a forward under no_grad
        yt, dy, dxt, dwt, dbt = torch_conv2d(case, x, w, b, seed=33)
        layer.zero_grad()
        y = layer(xp.asarray(x))
        dx = layer.backward(xp.asarray(dy))
        assert_close(y, yt, f"{name} output after a no_grad forward")
        assert_close(dx, dxt, f"{name} dx after a no_grad forward")
        assert_close(layer.weight.grad, dwt, f"{name} weight.grad after a no_grad forward")
        assert_close(layer.bias.grad, dbt, f"{name} bias.grad after a no_grad forward")
        with no_grad():
            layer(xp.asarray(x1 * 2.0))

    # a no_grad forward between a forward and its backward leaves that forward's cache alone
    # (its im2col matrix must not be recycled as the no_grad forward's buffer)
    yt, dy, dxt, dwt, _ = torch_conv2d(case, x2, w, b, seed=34)
    layer.zero_grad()
    layer(xp.asarray(x2))
    with no_grad():
        layer(xp.asarray(x3))
    dx = layer.backward(xp.asarray(dy))
    assert_close(dx, dxt, f"{name} dx with a no_grad forward in between")
    assert_close(layer.weight.grad, dwt, f"{name} weight.grad with a no_grad forward in between")


# --- errors that name the problem ------------------------------------------------------------


def test_conv2d_layer_rejects_bad_input(xp, device):
    layer = Conv2d(3, 4, 3, padding=1, dtype=np.float64).to(device)
    rng = np.random.default_rng(40)
    with pytest.raises(
        ValueError, match=r"4-d input \(N, C, H, W\), got 3-d input of shape \(3, 8"
    ):
        layer(xp.asarray(rng.standard_normal((3, 8, 8))))
    with pytest.raises(
        ValueError, match=r"Conv2d expected input with 3 channels, got 4 \(shape \(1, 4, 8, 8\)\)"
    ):
        layer(xp.asarray(rng.standard_normal((1, 4, 8, 8))))
    with pytest.raises(
        TypeError, match=r"Conv2d expected input of dtype float32 or float64, got int"
    ):
        layer(xp.asarray(np.ones((1, 3, 8, 8), dtype=np.int64)))
    with pytest.raises(
        TypeError, match=r"float32 or float64, got float16 \(shape \(1, 3, 8, 8\)\)"
    ):
        layer(xp.asarray(np.ones((1, 3, 8, 8), dtype=np.float16)))

    big = Conv2d(3, 4, 7, dtype=np.float64).to(device)
    with pytest.raises(
        ValueError,
        match=r"kernel \(7, 7\) .*spans 7 pixels along H, larger than the padded input \(4x9",
    ):
        big(xp.asarray(rng.standard_normal((1, 3, 4, 9))))
    dilated = Conv2d(3, 4, (1, 3), dilation=(1, 3), padding=(0, 1), dtype=np.float64).to(device)
    with pytest.raises(
        ValueError, match=r"spans 7 pixels along W, larger than the padded input .*= 6x6\)"
    ):
        dilated(xp.asarray(rng.standard_normal((1, 3, 6, 4))))
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        Conv2d(3, 4, 3).backward(xp.asarray(np.zeros((1, 4, 6, 6), dtype=np.float32)))


def test_conv2d_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1, got \(0, 3\)"):
        Conv2d(3, 4, (0, 3))
    with pytest.raises(ValueError, match=r"stride must be >= 1, got \(0, 0\)"):
        Conv2d(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match=r"padding must be >= 0, got \(1, -1\)"):
        Conv2d(3, 4, 3, padding=(1, -1))
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got 2.5"):
        Conv2d(3, 4, 2.5)


def test_conv2d_functional_rejects_bad_input(xp):
    rng = np.random.default_rng(41)
    x = xp.asarray(rng.standard_normal((2, 3, 6, 5)))
    w = xp.asarray(rng.standard_normal((4, 3, 3, 3)))
    b = xp.asarray(rng.standard_normal(4))
    with pytest.raises(ValueError, match=r"conv2d expected a 4-d input \(N, C, H, W\), got 2-d"):
        conv2d(x[0, 0], w)
    with pytest.raises(ValueError, match=r"conv2d expected a 4-d weight, got shape \(4, 3, 3\)"):
        conv2d(x, w[:, :, 0])
    with pytest.raises(
        ValueError,
        match=r"conv2d expected input with 3 channels \(weight \(4, 3, 3, 3\)\), "
        r"got 2 \(shape \(2, 2, 6, 5\)\)",
    ):
        conv2d(x[:, :2], w)
    with pytest.raises(
        TypeError, match=r"conv2d expected input of dtype float32 or float64, got int"
    ):
        conv2d(x.astype(np.int32), w)
    with pytest.raises(TypeError, match=r"expected input of dtype float32 or float64, got float16"):
        conv2d(x.astype(np.float16), w)
    with pytest.raises(
        TypeError,
        match=r"conv2d needs one floating dtype for all arrays, got input float32, weight float64",
    ):
        conv2d(x.astype(np.float32), w)
    with pytest.raises(TypeError, match=r"got input float64, weight float64, bias float32"):
        conv2d(x, w, b.astype(np.float32))
    with pytest.raises(
        ValueError, match=r"kernel \(3, 3\) with dilation \(3, 3\) spans 7 pixels along H"
    ):
        conv2d(x, w, dilation=3)
    _, cache = conv2d_forward(x, w, b, padding=1)
    with pytest.raises(
        ValueError, match=r"conv2d backward expected dy of shape \(2, 4, 6, 5\), got \(2, 4, 5, 6\)"
    ):
        conv2d_backward(xp.zeros((2, 4, 5, 6)), cache)


@pytest.mark.parametrize("batch", [1, 3])
def test_weight_grad_is_written_into_the_zeroed_grad_buffer(xp, batch):
    """After zero_grad the weight-gradient GEMM writes straight into .grad (no temporary); a
    second backward without zero_grad still accumulates."""
    rng = np.random.default_rng(40)
    layer = Conv2d(3, 4, (3, 2), padding=1).double().to("cpu" if xp is np else "cuda")
    x = xp.asarray(rng.standard_normal((batch, 3, 6, 5)))
    dy = xp.asarray(rng.standard_normal((batch, 4, 6, 6)))
    layer(x)
    layer.backward(dy)
    first = layer.weight.grad.copy()
    buffer = layer.weight.grad
    layer.zero_grad()
    assert layer.weight.writable_grad() is buffer
    layer(x)
    layer.backward(dy)
    assert layer.weight.grad is buffer and layer.weight.writable_grad() is None
    assert_close(buffer, first, "dW written in place")
    layer(x)
    layer.backward(dy)
    assert_close(layer.weight.grad, 2 * first, "dW accumulated over two backward passes")
