"""ReLU, Dropout and Dropout2d: parity with PyTorch, masks, modes, seeding and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tinyfcn
from tests.helpers import assert_close, to_torch
from tinyfcn.backend import asnumpy
from tinyfcn.functional import (
    dropout2d_forward,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
)
from tinyfcn.gradcheck import assert_gradcheck
from tinyfcn.nn import Dropout, Dropout2d, Module, ReLU

# ----------------------------------------------------------------------------------------------
# ReLU

SHAPES = {"nchw-2x3x5x7": (2, 3, 5, 7), "batch1-1x4x9x2": (1, 4, 9, 2), "vector-11": (11,)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_relu_matches_torch(xp, shape, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    layer = ReLU()
    y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    assert y.dtype == dtype and dx.dtype == dtype

    xt = to_torch(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(to_torch(dy))
    assert_close(y, yt, "relu output", rtol=0, atol=0)
    assert_close(dx, xt.grad, "relu dx", rtol=0, atol=0)


def test_relu_special_values_match_torch(xp):
    """-inf -> 0 (not nan), +inf -> inf, nan -> nan; the gradient is 0 wherever x <= 0."""
    x = np.array([-np.inf, -1.0, -0.0, 0.0, 1e-300, 2.0, np.inf, np.nan])
    dy = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    y, mask = relu_forward(xp.asarray(x))
    yt = torch.relu(to_torch(x))
    np.testing.assert_array_equal(asnumpy(y), yt.numpy())
    dx = relu_backward(xp.asarray(dy), mask)
    np.testing.assert_array_equal(asnumpy(dx), [0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0, 0.0])

    # An infinite or nan upstream gradient at a blocked position is blocked, as in PyTorch.
    # A nan or inf that reaches an open position passes through.
    x = np.array([-1.0, 0.0, 2.0, 1.0, 3.0])
    dy = np.array([np.inf, np.nan, 3.0, np.nan, -np.inf])
    xt = to_torch(x, requires_grad=True)
    torch.relu(xt).backward(to_torch(dy))
    dx = relu_backward(xp.asarray(dy), relu_forward(xp.asarray(x))[1])
    np.testing.assert_array_equal(asnumpy(dx), xt.grad.numpy())


def test_relu_gradcheck(xp):
    # keep inputs away from the kink at 0, where central differences are meaningless
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5
    assert_gradcheck(ReLU(), xp.asarray(x))


def test_relu_does_not_modify_input_or_dy(xp):
    x = xp.asarray(np.random.default_rng(2).standard_normal((2, 2, 3, 3)))
    dy = xp.asarray(np.random.default_rng(3).standard_normal((2, 2, 3, 3)))
    x0, dy0 = asnumpy(x).copy(), asnumpy(dy).copy()
    layer = ReLU()
    layer(x)
    layer.backward(dy)
    np.testing.assert_array_equal(asnumpy(x), x0)
    np.testing.assert_array_equal(asnumpy(dy), dy0)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float16, np.bool_])
def test_relu_rejects_non_float_dtypes(xp, dtype):
    with pytest.raises(TypeError, match=str(np.dtype(dtype))):
        ReLU()(xp.zeros((1, 2, 3, 3), dtype=dtype))


def test_relu_rejects_non_arrays():
    with pytest.raises(TypeError, match="NumPy or CuPy array, got list"):
        relu_forward([1.0, -1.0])


def test_relu_backward_without_forward_raises():
    with pytest.raises(RuntimeError, match="ReLU.backward"):
        ReLU().backward(np.zeros(3))


# ----------------------------------------------------------------------------------------------
# Dropout and Dropout2d


@pytest.mark.parametrize("cls", [Dropout, Dropout2d])
def test_dropout_is_identity_in_eval_mode(xp, cls):
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 4)))
    dy = xp.asarray(np.random.default_rng(1).standard_normal((2, 3, 4, 4)))
    layer = cls(p=0.5, seed=0).eval()
    assert not layer.training
    y = layer(x)
    assert y is x
    assert layer.backward(dy) is dy


@pytest.mark.parametrize("cls", [Dropout, Dropout2d])
def test_dropout_p0_is_identity_in_train_mode(xp, cls):
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 4)))
    dy = xp.asarray(np.random.default_rng(1).standard_normal((2, 3, 4, 4)))
    layer = cls(p=0.0, seed=0)
    assert layer.training
    np.testing.assert_array_equal(asnumpy(layer(x)), asnumpy(x))
    np.testing.assert_array_equal(asnumpy(layer.backward(dy)), asnumpy(dy))
    # the functional forms with p=0 keep everything, unscaled
    for fn in (dropout_forward, dropout2d_forward):
        y, mask = fn(x, 0.0, np.random.default_rng(0))
        np.testing.assert_array_equal(asnumpy(y), asnumpy(x))
        assert (asnumpy(mask) == 1).all()


@pytest.mark.parametrize("cls", [Dropout, Dropout2d])
def test_dropout_same_seed_same_mask(xp, cls):
    x = xp.asarray(np.random.default_rng(0).standard_normal((4, 8, 5, 5)) + 10.0)
    a, b, c = cls(0.3, seed=123), cls(0.3, seed=123), cls(0.3, seed=124)
    ya, yb, yc = asnumpy(a(x)), asnumpy(b(x)), asnumpy(c(x))
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc), "different seeds gave the same mask"
    # successive calls draw fresh masks, in the same sequence for the same seed
    ya2, yb2 = asnumpy(a(x)), asnumpy(b(x))
    np.testing.assert_array_equal(ya2, yb2)
    assert not np.array_equal(ya, ya2)


@pytest.mark.parametrize("cls", [Dropout, Dropout2d])
def test_dropout_unseeded_follows_manual_seed(cls):
    x = np.ones((4, 8, 5, 5))
    tinyfcn.manual_seed(7)
    first = cls(0.5)(x)
    tinyfcn.manual_seed(7)
    second = cls(0.5)(x)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_fraction_and_scale(xp, p):
    x = xp.asarray(np.random.default_rng(0).uniform(1.0, 2.0, size=(4, 16, 100, 100)))
    y = asnumpy(Dropout(p, seed=1)(x))
    x = asnumpy(x)
    dropped = y == 0
    # 640_000 Bernoulli draws: the standard deviation of the fraction is <= 0.000625
    assert abs(dropped.mean() - p) < 0.005, f"dropped {dropped.mean():.4f}, expected {p}"
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=1e-15)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout2d_drops_whole_channels(xp, p):
    x = xp.asarray(np.random.default_rng(0).uniform(1.0, 2.0, size=(50, 200, 3, 4)))
    y, mask = dropout2d_forward(x, p, np.random.default_rng(5))
    y, x, mask = asnumpy(y), asnumpy(x), asnumpy(mask)
    assert mask.shape == (50, 200, 1, 1)
    channel_dropped = (y == 0).all(axis=(2, 3))
    channel_kept = (y != 0).all(axis=(2, 3))
    assert (channel_dropped | channel_kept).all(), "a channel was partly dropped"
    # 10_000 channels: the standard deviation of the fraction is <= 0.005
    assert abs(channel_dropped.mean() - p) < 0.025, f"dropped {channel_dropped.mean():.3f}"
    np.testing.assert_allclose(y[channel_kept], x[channel_kept] / (1 - p), rtol=1e-15)


@pytest.mark.parametrize("cls", [Dropout, Dropout2d])
def test_dropout_backward_uses_the_forward_mask(xp, cls):
    p = 0.4
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 2.0, size=(3, 6, 5, 4))  # no zeros: y == 0 exactly where dropped
    dy = rng.standard_normal(x.shape)
    layer = cls(p, seed=3)
    y = asnumpy(layer(xp.asarray(x)))
    dx = asnumpy(layer.backward(xp.asarray(dy)))
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(dx == 0, ~kept)
    np.testing.assert_allclose(dx[kept], dy[kept] / (1 - p), rtol=1e-15)
    # forward and backward are the same linear map: y = m * x and dx = m * dy
    np.testing.assert_allclose(dx * x, y * dy, rtol=1e-14)


def test_dropout_backward_function_uses_given_mask(xp):
    x = xp.asarray(np.random.default_rng(0).uniform(1.0, 2.0, size=(2, 3, 4, 4)))
    y, mask = dropout_forward(x, 0.5, np.random.default_rng(0))
    dy = xp.asarray(np.random.default_rng(1).standard_normal((2, 3, 4, 4)))
    np.testing.assert_array_equal(asnumpy(dropout_backward(dy, mask)), asnumpy(dy * mask))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dropout_keeps_dtype(xp, dtype):
    x = xp.asarray(np.ones((2, 3, 4, 4), dtype=dtype))
    for layer in (Dropout(0.3, seed=0), Dropout2d(0.3, seed=0)):
        y = layer(x)
        assert y.dtype == dtype
        assert layer.backward(xp.ones_like(x)).dtype == dtype


class FixedMaskDropout(Module):
    """A dropout whose generator is reseeded before each forward: the same mask every call,
    so that central differences see one fixed linear map."""

    def __init__(self, layer: Dropout, seed: int) -> None:
        super().__init__()
        self.layer, self.seed = layer, seed

    def forward(self, x):
        self.layer.rng = np.random.default_rng(self.seed)
        return self.layer(x)

    def backward(self, dy):
        return self.layer.backward(dy)


@pytest.mark.parametrize("cls", [Dropout, Dropout2d])
def test_dropout_gradcheck_with_fixed_mask(xp, cls):
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 4, 3, 3)))
    wrapper = FixedMaskDropout(cls(0.5), seed=11)
    y = asnumpy(wrapper(x))
    assert (y == 0).any() and (y != 0).any(), "the fixed mask should drop some but not all"
    assert_gradcheck(wrapper, x)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_invalid_p_raises(xp, p):
    for cls in (Dropout, Dropout2d):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: dropout probability.*\[0, 1\)"):
            cls(p)
    x = xp.ones((1, 2, 3, 3))
    with pytest.raises(ValueError, match="dropout probability"):
        dropout_forward(x, p, np.random.default_rng(0))
    with pytest.raises(ValueError, match="dropout2d: dropout probability"):
        dropout2d_forward(x, p, np.random.default_rng(0))


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16])
def test_dropout_rejects_non_float_dtypes(xp, dtype):
    x = xp.ones((1, 2, 3, 3), dtype=dtype)
    for layer in (Dropout(0.5, seed=0), Dropout2d(0.5, seed=0)):
        with pytest.raises(TypeError, match=str(np.dtype(dtype))):
            layer(x)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (1, 2, 3, 4, 5)], ids=["2d", "3d", "5d"])
def test_dropout2d_rejects_wrong_ndim(xp, shape):
    with pytest.raises(ValueError, match=r"dropout2d expected a 4-d input"):
        Dropout2d(0.5, seed=0)(xp.ones(shape))


def test_elementwise_dropout_accepts_any_ndim(xp):
    y = asnumpy(Dropout(0.5, seed=0)(xp.ones((1000,))))
    assert set(np.unique(y)) <= {0.0, 2.0}


@pytest.mark.parametrize("cls", [Dropout, Dropout2d])
def test_dropout_backward_without_forward_raises(cls):
    with pytest.raises(RuntimeError, match=f"{cls.__name__}.backward"):
        cls(0.5, seed=0).backward(np.zeros((1, 1, 2, 2)))
