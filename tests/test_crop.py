"""Crop: a slice at an offset forward, zero-padding back (its adjoint) backward."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close, to_torch
from tinyfcn.backend import asnumpy
from tinyfcn.functional import crop_backward, crop_forward
from tinyfcn.gradcheck import assert_gradcheck
from tinyfcn.nn import Crop

# id: (input shape, offset, (h, w))
CASES = {
    "fcn32-offset19": ((1, 3, 64, 70), 19, (26, 31)),
    "fcn8-offset31-batch2": ((2, 2, 50, 45), 31, (19, 14)),
    "unequal-offset-5x9": ((2, 3, 20, 21), (5, 9), (11, 7)),
    "zero-offset": ((2, 1, 7, 6), 0, (7, 6)),
    "bottom-right-corner": ((1, 2, 9, 8), (6, 3), (3, 5)),
    "single-pixel": ((3, 1, 5, 5), (4, 0), (1, 1)),
}


def make_case(xp, name):
    shape, offset, size = CASES[name]
    rng = np.random.default_rng(list(CASES).index(name))
    return xp.asarray(rng.standard_normal(shape)), offset, size, rng


@pytest.mark.parametrize("name", list(CASES))
def test_crop_forward_backward_match_torch_slicing(xp, name):
    x, offset, (h, w), rng = make_case(xp, name)
    oh, ow = (offset, offset) if isinstance(offset, int) else offset
    y = crop_forward(x, offset, (h, w))
    dy = rng.standard_normal(y.shape)
    dx = crop_backward(xp.asarray(dy), x.shape, offset)

    xt = to_torch(x, requires_grad=True)
    yt = xt[:, :, oh : oh + h, ow : ow + w]
    yt.backward(to_torch(dy))
    assert_close(y, yt, f"{name} output", rtol=0, atol=0)
    assert_close(dx, xt.grad, f"{name} dx", rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_crop_backward_is_the_adjoint(xp, name):
    """<crop(x), y> == <x, crop_backward(y)> for random x and y."""
    x, offset, size, rng = make_case(xp, name)
    y = xp.asarray(rng.standard_normal(x.shape[:2] + size))
    left = float((crop_forward(x, offset, size) * y).sum())
    right = float((x * crop_backward(y, x.shape, offset)).sum())
    assert abs(left - right) <= 1e-12 * max(1.0, abs(left)), f"{left} vs {right}"


def test_crop_backward_is_zero_outside_the_window(xp):
    dy = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 5)) + 10.0)
    dx = asnumpy(crop_backward(dy, (2, 3, 9, 8), (2, 1)))
    assert dx.shape == (2, 3, 9, 8)
    inside = np.zeros(dx.shape, dtype=bool)
    inside[:, :, 2:6, 1:6] = True
    assert (dx[~inside] == 0).all()
    np.testing.assert_array_equal(dx[inside].reshape(2, 3, 4, 5), asnumpy(dy))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_crop_keeps_dtype(xp, dtype):
    x = xp.zeros((1, 2, 6, 6), dtype=dtype)
    layer = Crop(1)
    y = layer(x, (3, 4))
    assert y.dtype == dtype and y.shape == (1, 2, 3, 4)
    assert layer.backward(xp.ones_like(y)).dtype == dtype


def test_crop_layer_with_reference_array_or_size(xp):
    x, _, _, rng = make_case(xp, "unequal-offset-5x9")
    like = xp.zeros((7, 1, 11, 7))  # only its last two axes matter, like Caffe's second bottom
    by_array = Crop((5, 9))(x, like)
    by_size = Crop((5, 9))(x, (11, 7))
    expected = asnumpy(x)[:, :, 5:16, 9:16]
    np.testing.assert_array_equal(asnumpy(by_array), expected)
    np.testing.assert_array_equal(asnumpy(by_size), expected)
    square = Crop(2)(x, 4)  # an int size means a square window
    np.testing.assert_array_equal(asnumpy(square), asnumpy(x)[:, :, 2:6, 2:6])


def test_crop_layer_backward_pads_to_the_forward_input_shape(xp):
    x, _, _, rng = make_case(xp, "fcn8-offset31-batch2")
    layer = Crop(31)
    y = layer(x, (19, 14))
    dy = xp.asarray(rng.standard_normal(y.shape))
    dx = layer.backward(dy)
    assert_close(dx, crop_backward(dy, x.shape, 31), "layer dx vs functional", rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="Crop.backward"):
        layer.backward(dy)  # the cache is consumed by the first backward


@pytest.mark.parametrize("name", ["unequal-offset-5x9", "bottom-right-corner"])
def test_crop_gradcheck(xp, name):
    shape, offset, size = CASES[name]
    x = xp.asarray(np.random.default_rng(3).standard_normal(shape))
    assert_gradcheck(Crop(offset), x, size)


@pytest.mark.parametrize(
    "offset, size",
    [
        ((0, 0), (9, 8)),  # one row too tall
        ((0, 0), (8, 9)),  # one column too wide
        ((2, 0), (7, 8)),  # fits in size but not at this offset
        ((0, 5), (3, 4)),
        ((-1, 0), (3, 3)),  # negative offsets
        ((0, -2), (3, 3)),
        ((0, 0), (0, 3)),  # empty window
        ((0, 0), (3, 0)),
    ],
    ids=lambda v: "x".join(map(str, v)),
)
def test_crop_window_that_does_not_fit_raises(xp, offset, size):
    x = xp.zeros((1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"does not fit in the input of shape \(1, 2, 8, 8\)"):
        crop_forward(x, offset, size)
    with pytest.raises(ValueError, match="does not fit"):
        Crop(offset)(x, size)


def test_crop_bad_input_raises(xp):
    with pytest.raises(ValueError, match="4-d input"):
        crop_forward(xp.zeros((2, 8, 8)), 0, (4, 4))
    with pytest.raises(TypeError, match="int64"):
        crop_forward(xp.zeros((1, 1, 8, 8), dtype=np.int64), 0, (4, 4))
    with pytest.raises(TypeError, match="offset must be an int or a pair"):
        Crop((1, 2, 3))
    with pytest.raises(TypeError, match="offset must be an int or a pair"):
        Crop(1.5)
