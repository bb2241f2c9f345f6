"""ConvTranspose2d, every method, against PyTorch, the scatter-loop reference, central differences,
each other, and the adjoint identity <conv2d(x, W), y> == <x, conv_transpose2d(y, W)>.

Every tensor (y, dX, dW, db) is compared with ``torch.nn.functional.conv_transpose2d`` in float64
over awkward configurations (non-square kernels, unequal strides and paddings, output_padding,
dilation, odd sizes, batch 1 and >1, no bias) and FCN's upsampling layers (k4 s2, k16 s8, k32 s16,
k64 s32, with and without padding k/4) at 21 classes in and out on small inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close, to_torch
from tinyfcn import functional
from tinyfcn.backend import asnumpy
from tinyfcn.fast import plan
from tinyfcn.fast.subpixel import supports_subpixel
from tinyfcn.functional import conv2d, conv2d_backward, conv2d_forward, conv_transpose_output_size
from tinyfcn.functional.reference import conv_transpose2d_reference
from tinyfcn.gradcheck import assert_gradcheck
from tinyfcn.nn import ConvTranspose2d, manual_seed, no_grad

METHODS = ["adjoint", "zero_insertion", "subpixel"]


def conv_transpose2d_forward(*args, method: str = "auto", **kwargs):
    """The textbook's function for its two methods; the planner's for "subpixel" and "auto"."""
    if method in functional.conv_transpose.METHODS:
        return functional.conv_transpose2d_forward(*args, method=method, **kwargs)
    return plan.conv_transpose2d_forward(*args, method=method, **kwargs)


def conv_transpose2d_backward(dy, cache):
    if isinstance(cache, plan.SubpixelCache):
        return plan.conv_transpose2d_backward(dy, cache)
    return functional.conv_transpose2d_backward(dy, cache)


def conv_transpose2d(*args, **kwargs):
    return conv_transpose2d_forward(*args, **kwargs)[0]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def applies(method: str, k, s, d=1) -> bool:
    """Method "subpixel" needs every kernel size a multiple of its stride, and no dilation."""
    return method != "subpixel" or supports_subpixel(_pair(k), _pair(s), _pair(d))


def with_methods(ids) -> list[tuple[str, str]]:
    """(case name, method) for every method that applies to each of these CASES."""
    return [(n, m) for n in ids for m in METHODS if applies(m, CASES[n].k, CASES[n].s, CASES[n].d)]


class TCase(NamedTuple):
    """x (N, Cin, H, W) upsampled by a weight (Cin, Cout, kh, kw): stride s, padding p,
    output_padding op, dilation d."""

    N: int
    Cin: int
    Cout: int
    H: int
    W: int
    k: int | tuple[int, int]
    s: int | tuple[int, int] = 1
    p: int | tuple[int, int] = 0
    op: int | tuple[int, int] = 0
    d: int | tuple[int, int] = 1
    bias: bool = True

    @property
    def kwargs(self) -> dict:
        return dict(stride=self.s, padding=self.p, output_padding=self.op, dilation=self.d)

    @property
    def out_hw(self) -> tuple[int, int]:
        k, s, p, op, d = (_pair(v) for v in (self.k, self.s, self.p, self.op, self.d))
        return tuple(
            conv_transpose_output_size((self.H, self.W)[a], k[a], s[a], p[a], op[a], d[a])
            for a in range(2)
        )

    @property
    def zero_insertion_cols(self) -> int:
        """Entries of the im2col matrix the zero-insertion path builds: N*Cout*kh*kw*Ho*Wo."""
        kh, kw = _pair(self.k)
        return self.N * self.Cout * kh * kw * self.out_hw[0] * self.out_hw[1]

    def arrays(self, seed: int):
        """x, weight, bias (None without bias): float64 NumPy."""
        rng = np.random.default_rng(seed)
        kh, kw = _pair(self.k)
        x = rng.standard_normal((self.N, self.Cin, self.H, self.W))
        w = rng.standard_normal((self.Cin, self.Cout, kh, kw)) / np.sqrt(self.Cin)
        b = rng.standard_normal(self.Cout) if self.bias else None
        return x, w, b

    def layer(self, xp, w, b, method: str, dtype=np.float64) -> ConvTranspose2d:
        """A ConvTranspose2d of this shape whose parameters are set to (w, b), on xp's device."""
        layer = ConvTranspose2d(
            self.Cin, self.Cout, self.k, bias=self.bias, method=method, dtype=dtype, **self.kwargs
        )
        layer.weight.data = xp.asarray(w)
        if self.bias:
            layer.bias.data = xp.asarray(b)
        return layer


CASES = {
    # FCN's upsampling: upscore2 (k4 s2), upscore8 (k16 s8), upscore16 (k32 s16), upscore32
    # (k64 s32); the reference nets pad 0 and crop later, padding k/4 gives exactly s*H.
    "fcn-upscore2-k4-s2-21ch-no-bias": TCase(1, 21, 21, 3, 3, 4, 2, bias=False),
    "fcn-upscore2-k4-s2-p1-21ch-batch2": TCase(2, 21, 21, 3, 4, 4, 2, 1),
    "fcn-upscore8-k16-s8-21ch-no-bias": TCase(1, 21, 21, 2, 2, 16, 8, bias=False),
    "fcn-upscore8-k16-s8-p4-21ch": TCase(1, 21, 21, 3, 2, 16, 8, 4),
    "fcn-upscore16-k32-s16-21ch-no-bias": TCase(1, 21, 21, 2, 2, 32, 16, bias=False),
    "fcn-upscore16-k32-s16-p8-21ch": TCase(1, 21, 21, 2, 2, 32, 16, 8),
    "fcn-upscore32-k64-s32-21ch-no-bias": TCase(1, 21, 21, 2, 2, 64, 32, bias=False),
    "fcn-upscore32-k64-s32-p16-21ch": TCase(1, 21, 21, 1, 2, 64, 32, 16),
    # the big kernels again with few channels, so that zero insertion stays affordable
    "fcn-upscore16-k32-s16-p8-3to2ch": TCase(1, 3, 2, 2, 2, 32, 16, 8),
    "fcn-upscore32-k64-s32-p16-2to1ch": TCase(1, 2, 1, 1, 2, 64, 32, 16),
    # awkward configurations
    "k3x2-s2x3-p1x0-op1x2": TCase(2, 3, 2, 4, 3, (3, 2), (2, 3), (1, 0), (1, 2)),
    "stride-gt-kernel-k2-s3-op2x1": TCase(2, 2, 3, 3, 4, 2, 3, 0, (2, 1)),
    "op-gt-p-k2-s2-op1": TCase(1, 2, 2, 3, 3, 2, 2, 0, 1),
    "dil2-s1-p1-op1-lt-dilation": TCase(1, 2, 3, 4, 5, 3, 1, 1, 1, 2),
    "dil2x3-k3x2-s2-p2x1-op1x0-no-bias": TCase(
        2, 3, 2, 3, 4, (3, 2), 2, (2, 1), (1, 0), (2, 3), bias=False
    ),
    "k1-s1-pointwise": TCase(2, 5, 21, 3, 4, 1),
    "k1-s2-op1": TCase(1, 3, 2, 3, 4, 1, 2, 0, 1),
    "k1-s1-p1-crops": TCase(1, 2, 3, 4, 5, 1, 1, 1),
    "pad-gt-kernel-span-k3-s3-p3": TCase(1, 2, 2, 4, 3, 3, 3, 3),
    "k5x3-s2-p2x1-op1x0-odd-batch3": TCase(3, 2, 3, 5, 7, (5, 3), 2, (2, 1), (1, 0)),
    "k3-s2-p1-op1-batch1-no-bias": TCase(1, 3, 4, 5, 5, 3, 2, 1, 1, bias=False),
}
IDS = list(CASES)
# Zero insertion convolves a mostly-zero image densely, with an im2col matrix of
# N*Cout*kh*kw*Ho*Wo entries: beyond this many (72 MB), a case runs the adjoint method only.
ZERO_INSERTION_BUDGET = 9_000_000
CASE_METHODS = [
    pytest.param(name, method, id=f"{name}-{method}")
    for name in IDS
    for method in METHODS
    if applies(method, CASES[name].k, CASES[name].s, CASES[name].d)
    and (method != "zero_insertion" or CASES[name].zero_insertion_cols <= ZERO_INSERTION_BUDGET)
]
BOTH_METHODS = [name for name in IDS if CASES[name].zero_insertion_cols <= ZERO_INSERTION_BUDGET]
# The scatter loop runs N*Cin*H*W*kh*kw Python iterations: keep it under ~40k.
REFERENCE_IDS = [
    name
    for name, c in CASES.items()
    if c.N * c.Cin * c.H * c.W * int(np.prod(_pair(c.k))) <= 40_000
]


def torch_conv_transpose2d(case: TCase, x, w, b, seed: int):
    """torch's y, and its (dx, dw, db) for a random upstream gradient dy (returned too)."""
    xt, wt = to_torch(x, requires_grad=True), to_torch(w, requires_grad=True)
    bt = None if b is None else to_torch(b, requires_grad=True)
    yt = F.conv_transpose2d(xt, wt, bt, **case.kwargs)
    dy = np.random.default_rng(seed).standard_normal(tuple(yt.shape))
    yt.backward(to_torch(dy))
    return yt, dy, xt.grad, wt.grad, None if bt is None else bt.grad


def assert_close_rel(ours, theirs, name: str, tol: float) -> None:
    """Within ``tol`` relative to the largest entry of theirs (float32 comparisons)."""
    theirs_np = theirs.detach().numpy() if torch.is_tensor(theirs) else asnumpy(theirs)
    scale = float(np.abs(theirs_np).max())
    assert_close(ours, theirs, name, rtol=tol, atol=tol * max(scale, 1e-30))


def test_every_fcn_upsampling_layer_runs_both_methods_somewhere():
    """The budget must not silently drop zero insertion for a kernel size FCN uses."""
    kernels = {_pair(CASES[name].k) for name in BOTH_METHODS}
    assert {(4, 4), (16, 16), (32, 32), (64, 64)} <= kernels
    assert "fcn-upscore8-k16-s8-21ch-no-bias" in BOTH_METHODS  # 21 classes, both methods


# --- parity with PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("name, method", CASE_METHODS)
def test_conv_transpose2d_functional_matches_torch(xp, name, method):
    case = CASES[name]
    x, w, b = case.arrays(seed=IDS.index(name))
    yt, dy, dxt, dwt, dbt = torch_conv_transpose2d(case, x, w, b, seed=1000 + IDS.index(name))
    # copies (xp.array copies, even NumPy to NumPy): x and dy stay as the untouched originals
    X, Wt, B, DY = (None if a is None else xp.array(a) for a in (x, w, b, dy))

    y, cache = conv_transpose2d_forward(X, Wt, B, method=method, **case.kwargs)
    assert y.shape == (case.N, case.Cout) + case.out_hw
    assert y.dtype == np.float64
    assert_close(y, yt, f"{name} {method} output")
    dx, dw, db = conv_transpose2d_backward(DY, cache)
    assert_close(dx, dxt, f"{name} {method} dx")
    assert_close(dw, dwt, f"{name} {method} dw")
    if case.bias:
        assert_close(db, dbt, f"{name} {method} db")
    else:
        assert db is None
    assert_close(DY, dy, f"{name} {method} dy after backward (must be unchanged)", rtol=0, atol=0)
    assert_close(X, x, f"{name} {method} x after backward (must be unchanged)", rtol=0, atol=0)
    y_only = conv_transpose2d(X, Wt, B, method=method, **case.kwargs)
    assert_close(y_only, yt, f"{name} {method} conv_transpose2d() output")


@pytest.mark.parametrize("name, method", CASE_METHODS)
def test_conv_transpose2d_layer_matches_torch_layer(xp, name, method):
    case = CASES[name]
    x, w, b = case.arrays(seed=IDS.index(name))
    layer = case.layer(xp, w, b, method)
    tlayer = torch.nn.ConvTranspose2d(
        case.Cin, case.Cout, case.k, bias=case.bias, dtype=torch.float64, **case.kwargs
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
    assert_close(y, yt, f"{name} {method} ConvTranspose2d output")
    dx = layer.backward(DY)
    assert dx.dtype == np.float64
    assert_close(dx, xt.grad, f"{name} {method} ConvTranspose2d dx")
    assert_close(X, x, f"{name} {method} input after backward (unchanged)", rtol=0, atol=0)
    assert_close(DY, dy, f"{name} {method} dy after backward (unchanged)", rtol=0, atol=0)
    assert_close(layer.weight.grad, tlayer.weight.grad, f"{name} {method} weight.grad")
    if case.bias:
        assert_close(layer.bias.grad, tlayer.bias.grad, f"{name} {method} bias.grad")
    else:
        assert layer.bias is None


def test_layer_weight_shapes_match_torch():
    ours = ConvTranspose2d(3, 5, (2, 3), stride=2)
    theirs = torch.nn.ConvTranspose2d(3, 5, (2, 3), stride=2)
    assert ours.weight.shape == tuple(theirs.weight.shape) == (3, 5, 2, 3)  # (in, out, kh, kw)
    assert ours.bias.shape == tuple(theirs.bias.shape)
    assert ConvTranspose2d(3, 5, 4, bias=False).bias is None


# --- the two methods agree, and both match the scatter loop ----------------------------------


WHAT = ("output", "dx", "dw", "db")


@pytest.mark.parametrize("name", BOTH_METHODS)
def test_the_methods_agree(xp, name):
    case = CASES[name]
    x, w, b = case.arrays(seed=3000 + IDS.index(name))
    X, Wt, B = (None if a is None else xp.asarray(a) for a in (x, w, b))
    results = {}
    for method in (m for m in METHODS if applies(m, case.k, case.s, case.d)):
        y, cache = conv_transpose2d_forward(X, Wt, B, method=method, **case.kwargs)
        if not results:
            dy = xp.asarray(np.random.default_rng(3).standard_normal(y.shape))
        results[method] = (y,) + conv_transpose2d_backward(dy, cache)
    first, *others = results
    for other in others:
        for what, a, z in zip(WHAT, results[first], results[other], strict=True):
            if what == "db" and not case.bias:
                assert a is None and z is None
                continue
            assert_close(a, z, f"{name} {what}: {first} vs {other}")


@pytest.mark.parametrize("name, method", with_methods(REFERENCE_IDS))
def test_conv_transpose2d_matches_scatter_reference(xp, name, method):
    case = CASES[name]
    if method == "zero_insertion" and name not in BOTH_METHODS:
        pytest.skip("zero insertion is over the memory budget for this case")
    x, w, b = case.arrays(seed=4000 + IDS.index(name))
    expected = conv_transpose2d_reference(x, w, b, **case.kwargs)
    B = None if b is None else xp.asarray(b)
    y = conv_transpose2d(xp.asarray(x), xp.asarray(w), B, method=method, **case.kwargs)
    assert_close(y, expected, f"{name} {method} fast vs scatter reference")
    # the oracle itself agrees with torch
    bt = None if b is None else to_torch(b)
    yt = F.conv_transpose2d(to_torch(x), to_torch(w), bt, **case.kwargs)
    assert_close(expected, yt, f"{name} scatter reference vs torch")


# --- the adjoint identity --------------------------------------------------------------------

# id: (x shape (N, C, H, W), O, kernel, stride, padding, dilation); W has shape (O, C, kh, kw)
ADJOINT_CASES = {
    "k3-s1-p1": ((2, 3, 5, 6), 4, 3, 1, 1, 1),
    "k4-s2-p1-fcn-upscore2": ((1, 3, 8, 6), 2, 4, 2, 1, 1),
    "k2x3-s2x1-p1x0": ((2, 2, 7, 6), 3, (2, 3), (2, 1), (1, 0), 1),
    "stride-gt-kernel-k2-s3-leftover-rows": ((1, 2, 8, 10), 2, 2, 3, 0, 1),
    "stride-gt-kernel-k1x2-s3x4-p2": ((2, 1, 7, 9), 3, (1, 2), (3, 4), 2, 1),
    "dil2-k3-p2": ((1, 2, 8, 7), 2, 3, 1, 2, 2),
    "dil2x3-k3x2-s2-p1x3": ((2, 2, 9, 10), 3, (3, 2), 2, (1, 3), (2, 3)),
    "k7-p3-fc6": ((1, 2, 4, 5), 3, 7, 1, 3, 1),
    "k5x1-s3x2-p2x0-odd": ((2, 1, 11, 13), 2, (5, 1), (3, 2), (2, 0), 1),
    "k16-s8-p4-fcn-upscore8": ((1, 2, 17, 16), 2, 16, 8, 4, 1),
    "k1-s1": ((2, 3, 4, 3), 5, 1, 1, 0, 1),
    "k1-s2-odd": ((1, 3, 5, 4), 2, 1, 2, 0, 1),
}


@pytest.mark.parametrize(
    "name, method",
    [(n, m) for n, c in ADJOINT_CASES.items() for m in METHODS if applies(m, c[2], c[3], c[5])],
)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(xp, name, method):
    """<conv2d(x, W), y> == <x, conv_transpose2d(y, W)> with the same array W (O, C, kh, kw): the
    conv's weight (out, in) read as the transposed conv's (in, out), mapping O channels back to C.
    output_padding picks, among the sizes the stride makes ambiguous, the one equal to x's."""
    shape, O, k, s, p, d = ADJOINT_CASES[name]
    N, C, H, W = shape
    (kh, kw), sp, pp, dp = _pair(k), _pair(s), _pair(p), _pair(d)
    rng = np.random.default_rng(list(ADJOINT_CASES).index(name))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((O, C, kh, kw))
    y = conv2d(xp.asarray(x), xp.asarray(w), None, s, p, d)
    g = rng.standard_normal(y.shape)

    # the rows (columns) that the conv's last window did not reach
    op = tuple(((H, W)[a] + 2 * pp[a] - dp[a] * ((kh, kw)[a] - 1) - 1) % sp[a] for a in range(2))
    back = conv_transpose2d(xp.asarray(g), xp.asarray(w), None, s, p, op, d, method=method)
    assert back.shape == x.shape

    lhs = float(np.vdot(asnumpy(y), g))
    rhs = float(np.vdot(x, asnumpy(back)))
    scale = float(np.abs(x).ravel() @ np.abs(asnumpy(back)).ravel())
    assert abs(lhs - rhs) <= 1e-12 * scale, (
        f"{name} {method}: <conv2d(x, W), y> = {lhs!r} vs <x, conv_transpose2d(y, W)> = {rhs!r}"
    )
    # hence conv2d's input gradient is this very transposed convolution of dy
    _, cache = conv2d_forward(xp.asarray(x), xp.asarray(w), None, s, p, d)
    dx, _, _ = conv2d_backward(xp.asarray(g), cache)
    assert_close(dx, back, f"{name} {method}: conv2d dx vs conv_transpose2d(dy)")


# --- central differences ---------------------------------------------------------------------

GRADCHECK_CASES = {
    "k4-s2-p1-fcn-upscore2": TCase(1, 2, 2, 3, 3, 4, 2, 1),
    "k3x2-s2x3-p1x0-op1x2": TCase(2, 2, 1, 3, 2, (3, 2), (2, 3), (1, 0), (1, 2)),
    "dil2-s1-op1-no-bias": TCase(1, 2, 1, 3, 3, 3, 1, 0, 1, 2, bias=False),
    "k1-s1-pointwise": TCase(1, 3, 2, 3, 2, 1),
    "k1-s2-op1": TCase(1, 2, 2, 3, 2, 1, 2, 0, 1),
    "k16-s8-p4-fcn-upscore8": TCase(1, 1, 1, 2, 2, 16, 8, 4),
}


@pytest.mark.parametrize(
    "name, method",
    [(n, m) for n, c in GRADCHECK_CASES.items() for m in METHODS if applies(m, c.k, c.s, c.d)],
)
def test_conv_transpose2d_gradcheck(xp, device, name, method):
    case = GRADCHECK_CASES[name]
    manual_seed(list(GRADCHECK_CASES).index(name))
    layer = ConvTranspose2d(
        case.Cin, case.Cout, case.k, bias=case.bias, method=method, **case.kwargs
    ).double()
    layer.to(device)
    x = np.random.default_rng(7).standard_normal((case.N, case.Cin, case.H, case.W))
    result = assert_gradcheck(layer, xp.asarray(x), seed=11)
    expected = {"input", "weight"} | ({"bias"} if case.bias else set())
    assert set(result.errors) == expected


# --- dtypes ----------------------------------------------------------------------------------


FLOAT32_IDS = [
    "fcn-upscore2-k4-s2-p1-21ch-batch2",
    "fcn-upscore8-k16-s8-p4-21ch",
    "k3x2-s2x3-p1x0-op1x2",
]


@pytest.mark.parametrize("name, method", with_methods(FLOAT32_IDS))
def test_conv_transpose2d_float32_layer_matches_torch_float32(xp, name, method):
    case = CASES[name]
    x, w, b = (a.astype(np.float32) for a in case.arrays(seed=IDS.index(name)))
    layer = case.layer(xp, w, b, method, dtype=np.float32)
    xt, wt, bt = (to_torch(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv_transpose2d(xt, wt, bt, **case.kwargs)
    dy = np.random.default_rng(5000).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(to_torch(dy))

    y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == np.float32
    assert_close_rel(y, yt, f"{name} {method} float32 output", 1e-5)
    assert_close_rel(dx, xt.grad, f"{name} {method} float32 dx", 1e-5)
    assert_close_rel(layer.weight.grad, wt.grad, f"{name} {method} float32 weight.grad", 1e-5)
    assert_close_rel(layer.bias.grad, bt.grad, f"{name} {method} float32 bias.grad", 1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_conv_transpose2d_layer_computes_in_the_weight_dtype(xp, method):
    """float64 weights: float32 input is computed in float64, y is float64, dx comes back float32.
    float32 weights: float64 input is computed in float32, y is float32, dx comes back float64."""
    case = CASES["k3x2-s2x3-p1x0-op1x2" if method != "subpixel" else "fcn-upscore8-k16-s8-p4-21ch"]
    x, w, b = case.arrays(seed=8)
    x32 = x.astype(np.float32)
    yt, dy, dxt, dwt, dbt = torch_conv_transpose2d(case, x32.astype(np.float64), w, b, seed=9)

    layer = case.layer(xp, w, b, method, dtype=np.float32)  # built float32, given float64 arrays
    y = layer(xp.asarray(x32))
    assert y.dtype == np.float64
    assert_close(y, yt, f"{method} float64 weights, float32 input: output")
    dx = layer.backward(xp.asarray(dy))
    assert dx.dtype == np.float32
    assert_close(dx, dxt.numpy().astype(np.float32), f"{method} dx", rtol=1e-6, atol=1e-6)
    assert layer.weight.grad.dtype == layer.bias.grad.dtype == np.float64
    assert_close(layer.weight.grad, dwt, f"{method} float64 weights: weight.grad")
    assert_close(layer.bias.grad, dbt, f"{method} float64 weights: bias.grad")

    w32, b32 = w.astype(np.float32), b.astype(np.float32)
    layer = case.layer(xp, w32, b32, method, dtype=np.float32)
    xt = to_torch(x32, requires_grad=True)
    yt = F.conv_transpose2d(xt, to_torch(w32), to_torch(b32), **case.kwargs)
    yt.backward(to_torch(dy.astype(np.float32)))
    y = layer(xp.asarray(x))  # float64 input into a float32 layer
    assert y.dtype == np.float32
    assert_close_rel(y, yt, f"{method} float32 weights, float64 input: output", 1e-5)
    dx = layer.backward(xp.asarray(dy))  # a float64 dy is cast to the weight dtype too
    assert dx.dtype == np.float64
    assert_close_rel(dx, xt.grad, f"{method} float32 weights: dx", 1e-5)


# --- consecutive steps and no_grad -----------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_conv_transpose2d_consecutive_steps_and_no_grad(xp, method):
    case = CASES["fcn-upscore2-k4-s2-p1-21ch-batch2"]
    x1, w, b = case.arrays(seed=20)
    layer = case.layer(xp, w, b, method)
    with no_grad():
        y0 = layer(xp.asarray(x1))
    assert_close(y0, torch_conv_transpose2d(case, x1, w, b, 0)[0], f"{method} output in no_grad")
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        layer.backward(xp.asarray(np.zeros(y0.shape)))

    for seed in (21, 22):  # two normal steps with different inputs, after the no_grad forward
        x = case.arrays(seed=seed)[0]
        yt, dy, dxt, dwt, dbt = torch_conv_transpose2d(case, x, w, b, seed=seed)
        layer.zero_grad()
        y = layer(xp.asarray(x))
        dx = layer.backward(xp.asarray(dy))
        assert_close(y, yt, f"{method} step {seed} output")
        assert_close(dx, dxt, f"{method} step {seed} dx")
        assert_close(layer.weight.grad, dwt, f"{method} step {seed} weight.grad")
        assert_close(layer.bias.grad, dbt, f"{method} step {seed} bias.grad")
        with no_grad():
            layer(xp.asarray(x1))


# --- errors that name the problem ------------------------------------------------------------


def test_conv_transpose2d_layer_rejects_bad_input(xp, device):
    layer = ConvTranspose2d(3, 4, 4, stride=2, padding=1, dtype=np.float64).to(device)
    rng = np.random.default_rng(40)
    with pytest.raises(
        ValueError, match=r"ConvTranspose2d expected a 4-d input \(N, C, H, W\), got 3-d input"
    ):
        layer(xp.asarray(rng.standard_normal((3, 8, 8))))
    with pytest.raises(
        ValueError,
        match=r"ConvTranspose2d expected input with 3 channels, got 21 \(shape \(1, 21, 8, 8\)\)",
    ):
        layer(xp.asarray(rng.standard_normal((1, 21, 8, 8))))
    with pytest.raises(TypeError, match=r"expected input of dtype float32 or float64, got int"):
        layer(xp.asarray(np.ones((1, 3, 8, 8), dtype=np.int32)))
    with pytest.raises(
        TypeError, match=r"float32 or float64, got float16 \(shape \(1, 3, 8, 8\)\)"
    ):
        layer(xp.asarray(np.ones((1, 3, 8, 8), dtype=np.float16)))
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        layer.backward(xp.asarray(np.zeros((1, 4, 16, 16))))
    layer(xp.asarray(rng.standard_normal((1, 3, 8, 8))))
    with pytest.raises(
        ValueError,
        match=r"conv_transpose2d backward expected dy of shape \(1, 4, 16, 16\), "
        r"got \(1, 4, 16, 15\)",
    ):
        layer.backward(xp.asarray(np.zeros((1, 4, 16, 15))))
    cropped_away = ConvTranspose2d(3, 4, 4, stride=2, padding=4, dtype=np.float64).to(device)
    with pytest.raises(ValueError, match=r"gives an empty output -4x-2; reduce the padding"):
        cropped_away(xp.asarray(rng.standard_normal((1, 3, 1, 2))))


def test_conv_transpose2d_layer_rejects_bad_arguments():
    with pytest.raises(
        ValueError,
        match=r"output_padding \(2, 2\) must be smaller than either stride \(2, 2\) or dilation",
    ):
        ConvTranspose2d(21, 21, 4, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"output_padding \(0, 1\) must be smaller than either"):
        ConvTranspose2d(3, 3, 3, output_padding=(0, 1))  # stride 1, dilation 1
    ConvTranspose2d(3, 3, 3, output_padding=1, dilation=2)  # allowed: smaller than the dilation
    with pytest.raises(ValueError, match=r"output_padding must be >= 0, got \(-1, 0\)"):
        conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), output_padding=(-1, 0))
    with pytest.raises(
        ValueError,
        match=r"method must be one of \('auto', 'adjoint', 'zero_insertion', 'subpixel'\)",
    ):
        ConvTranspose2d(3, 3, 4, stride=2, method="scatter")
    with pytest.raises(ValueError, match=r"'subpixel' needs every kernel size a multiple of its"):
        ConvTranspose2d(3, 3, 3, stride=2, method="subpixel")
    with pytest.raises(ValueError, match=r"dilation \(2, 2\); use 'adjoint'"):
        ConvTranspose2d(3, 3, 4, stride=2, dilation=2, method="subpixel")


@pytest.mark.parametrize(
    "k, s, d, expected",
    [(4, 2, 1, "subpixel"), (16, 8, 1, "subpixel"), ((4, 3), (2, 1), 1, "subpixel"),
     (3, 2, 1, "adjoint"), (4, 2, 2, "adjoint"), ((4, 3), 2, 1, "adjoint")],
)  # fmt: skip
def test_auto_picks_subpixel_where_the_kernel_is_a_multiple_of_the_stride(k, s, d, expected):
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    w = np.random.default_rng(1).standard_normal((2, 3) + _pair(k))
    _, cache = conv_transpose2d_forward(x, w, stride=s, dilation=d)  # method "auto"
    assert cache.method == expected
    assert ConvTranspose2d(2, 3, k, stride=s, dilation=d).method == "auto"


def test_conv_transpose2d_functional_rejects_bad_input(xp):
    rng = np.random.default_rng(41)
    x = xp.asarray(rng.standard_normal((2, 3, 4, 5)))
    w = xp.asarray(rng.standard_normal((3, 2, 4, 4)))  # (in, out, kh, kw)
    b = xp.asarray(rng.standard_normal(2))
    with pytest.raises(ValueError, match=r"conv_transpose2d expected a 4-d input .*got 2-d input"):
        conv_transpose2d(x[0, 0], w, stride=2)
    with pytest.raises(
        ValueError,
        match=r"conv_transpose2d expected input with 3 channels \(weight \(3, 2, 4, 4\) is "
        r"\(in, out, kh, kw\)\), got 2 \(shape \(2, 2, 4, 5\)\)",
    ):
        conv_transpose2d(x[:, :2], w, stride=2)
    with pytest.raises(TypeError, match=r"expected input of dtype float32 or float64, got int"):
        conv_transpose2d(x.astype(np.int64), w, stride=2)
    with pytest.raises(TypeError, match=r"expected input of dtype float32 or float64, got float16"):
        conv_transpose2d(x.astype(np.float16), w, stride=2)
    with pytest.raises(
        TypeError,
        match=r"conv_transpose2d needs one floating dtype for all arrays, got input float64, "
        r"weight float32",
    ):
        conv_transpose2d(x, w.astype(np.float32), stride=2)
    with pytest.raises(TypeError, match=r"got input float64, weight float64, bias float32"):
        conv_transpose2d(x, w, b.astype(np.float32), stride=2)
    for method in METHODS:
        with pytest.raises(
            ValueError,
            match=r"output_padding \(1, 1\) must be smaller than either stride \(1, 1\) or "
            r"dilation \(1, 1\)",
        ):
            conv_transpose2d(x, w, output_padding=1, method=method)
        with pytest.raises(
            ValueError, match=r"output_padding \(2, 0\) must be smaller than either stride \(2, 2\)"
        ):
            conv_transpose2d(x, w, stride=2, output_padding=(2, 0), method=method)
    with pytest.raises(ValueError, match=r"method must be one of .*got 'scatter'"):
        conv_transpose2d(x, w, stride=2, method="scatter")
