"""MaxPool2d: parity with torch.nn.functional.max_pool2d, the loop reference, and the tie rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close, distinct_values, to_torch
from tinyfcn.backend import asnumpy
from tinyfcn.fast import plan
from tinyfcn.functional import max_pool2d, max_pool2d_backward, max_pool2d_forward
from tinyfcn.functional.pool import pool_output_size
from tinyfcn.functional.reference import max_pool2d_backward_reference, max_pool2d_reference
from tinyfcn.gradcheck import assert_gradcheck
from tinyfcn.nn import MaxPool2d

# id: (input shape, kernel_size, stride, padding, dilation, ceil_mode)
CONFIGS = {
    "k2s2-even-8x8-batch2": ((2, 3, 8, 8), 2, 2, 0, 1, False),
    "k2s2-ceil-odd-7x7-batch1": ((1, 2, 7, 7), 2, 2, 0, 1, True),
    "k2s2-floor-odd-7x9": ((2, 2, 7, 9), 2, 2, 0, 1, False),
    "fcn-k2s2-ceil-125x125": ((1, 2, 125, 125), 2, 2, 0, 1, True),
    "fcn-k2s2-ceil-63x125-batch2": ((2, 1, 63, 125), 2, 2, 0, 1, True),
    "overlap-k3s2-9x11": ((2, 2, 9, 11), 3, 2, 0, 1, False),
    "overlap-k3s2-ceil-10x9": ((2, 2, 10, 9), 3, 2, 0, 1, True),
    "overlap-k3s2-pad1-ceil-10x9": ((2, 2, 10, 9), 3, 2, 1, 1, True),
    "overlap-k3s2-pad1-floor-11x8": ((1, 3, 11, 8), 3, 2, 1, 1, False),
    "k3x2-s1x2-7x8": ((2, 3, 7, 8), (3, 2), (1, 2), 0, 1, False),
    "k2x3-s2x1-pad1x1-9x6": ((2, 2, 9, 6), (2, 3), (2, 1), (1, 1), 1, False),
    "k3x5-s2x3-pad1x2-ceil-11x13": ((2, 2, 11, 13), (3, 5), (2, 3), (1, 2), 1, True),
    "k5x3-s1-pad2x1-batch3": ((3, 1, 8, 7), (5, 3), 1, (2, 1), 1, False),
    "k1x3-s1x2-pad0x1": ((2, 2, 5, 9), (1, 3), (1, 2), (0, 1), 1, False),
    "k4s3-pad2-ceil-10x11": ((1, 2, 10, 11), 4, 3, 2, 1, True),
    "stride-gt-kernel-k2s3-ceil": ((2, 2, 10, 11), 2, 3, 0, 1, True),
    "dil2-k3s1-pad1-9x9": ((1, 2, 9, 9), 3, 1, 1, 2, False),
    "dil2x3-k2x3-s2x1-ceil-10x13": ((2, 2, 10, 13), (2, 3), (2, 1), 0, (2, 3), True),
    "dil3x2-k3x2-s2x3-pad1-ceil-12x11": ((2, 1, 12, 11), (3, 2), (2, 3), 1, (3, 2), True),
    "ceil-drops-window-in-right-pad-5x5": ((1, 2, 5, 5), 2, 2, 1, 1, True),
    "k1s1-identity": ((2, 2, 4, 5), 1, 1, 0, 1, False),
    "k3s3-pad1-ceil-odd-13x7": ((2, 2, 13, 7), 3, 3, 1, 1, True),
}
IDS = list(CONFIGS)
# Configurations small enough for the four-nested-loop reference and for central differences.
SMALL = [name for name, cfg in CONFIGS.items() if int(np.prod(cfg[0])) <= 600]


def signed_distinct(seed: int, shape) -> np.ndarray:
    """Distinct values (no ties) of both signs, so that zero padding instead of -inf would show."""
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape)
    return x - 0.07 * x.size


def run_ours_and_torch(xp, name: str, dtype=np.float64):
    shape, k, s, p, d, ceil = CONFIGS[name]
    x = signed_distinct(IDS.index(name), shape).astype(dtype)
    y, cache = max_pool2d_forward(xp.asarray(x), k, s, p, d, ceil)
    dy = np.random.default_rng(100 + IDS.index(name)).standard_normal(y.shape).astype(dtype)
    dx = max_pool2d_backward(xp.asarray(dy), cache)

    xt = to_torch(x, requires_grad=True)
    yt = F.max_pool2d(xt, k, s, p, d, ceil_mode=ceil)
    yt.backward(to_torch(dy))
    return y, dx, yt, xt.grad


@pytest.mark.parametrize("name", IDS)
def test_max_pool2d_matches_torch_float64(xp, name):
    y, dx, yt, dxt = run_ours_and_torch(xp, name)
    assert y.dtype == np.float64 and dx.dtype == np.float64
    assert_close(y, yt, f"{name} output")
    assert_close(dx, dxt, f"{name} dx")


@pytest.mark.parametrize(
    "name", ["fcn-k2s2-ceil-63x125-batch2", "overlap-k3s2-pad1-ceil-10x9", "dil2-k3s1-pad1-9x9"]
)
def test_max_pool2d_matches_torch_float32(xp, name):
    y, dx, yt, dxt = run_ours_and_torch(xp, name, dtype=np.float32)
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert_close(y, yt, f"{name} output", rtol=0, atol=0)  # a max is exact
    assert_close(dx, dxt, f"{name} dx", rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", SMALL)
def test_max_pool2d_matches_loop_reference(xp, name):
    shape, k, s, p, d, ceil = CONFIGS[name]
    x = signed_distinct(IDS.index(name), shape)
    y, cache = max_pool2d_forward(xp.asarray(x), k, s, p, d, ceil)
    y_ref, argmax_ref = max_pool2d_reference(x, k, s, p, d, ceil)
    assert_close(y, y_ref, f"{name} output vs reference")

    # The reference's flat indices follow torch's return_indices convention.
    _, indices = F.max_pool2d(to_torch(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    np.testing.assert_array_equal(argmax_ref, indices.numpy(), err_msg=f"{name} argmax")

    dy = np.random.default_rng(7).standard_normal(y_ref.shape)
    dx = max_pool2d_backward(xp.asarray(dy), cache)
    assert_close(dx, max_pool2d_backward_reference(dy, argmax_ref, x.shape), f"{name} dx vs ref")


@pytest.mark.parametrize("name", SMALL)
def test_max_pool2d_gradcheck(xp, name):
    shape, k, s, p, d, ceil = CONFIGS[name]
    x = xp.asarray(signed_distinct(IDS.index(name), shape))
    assert_gradcheck(MaxPool2d(k, s, p, d, ceil), x, seed=IDS.index(name))


def test_max_pool2d_layer_matches_functional(xp):
    x = xp.asarray(signed_distinct(0, (2, 3, 9, 7)))
    layer = MaxPool2d((3, 2), stride=(2, 1), padding=1, ceil_mode=True)
    y = layer(x)
    assert_close(y, max_pool2d(x, (3, 2), (2, 1), 1, 1, True), "layer vs functional")
    dy = xp.asarray(np.random.default_rng(1).standard_normal(y.shape))
    _, cache = max_pool2d_forward(x, (3, 2), (2, 1), 1, 1, True)
    assert_close(layer.backward(dy), max_pool2d_backward(dy, cache), "layer dx vs functional")


def test_max_pool2d_stride_defaults_to_kernel(xp):
    x = xp.asarray(signed_distinct(3, (1, 1, 6, 9)))
    assert MaxPool2d(3).stride == (3, 3)
    assert_close(max_pool2d(x, 3), F.max_pool2d(to_torch(x), 3), "stride=None output")


def test_backward_does_not_mutate_dy(xp):
    x = xp.asarray(signed_distinct(4, (1, 2, 7, 7)))
    y, cache = max_pool2d_forward(x, 3, 2, 1, 1, True)
    dy = xp.asarray(np.random.default_rng(2).standard_normal(y.shape))
    dy_before = asnumpy(dy).copy()
    max_pool2d_backward(dy, cache)
    np.testing.assert_array_equal(asnumpy(dy), dy_before)


def test_tie_rule_first_maximum_in_row_major_order_wins(xp):
    """Tie rule: when several taps of a window hold the window's maximum, the *first* one in
    row-major order over the window (top row left to right, then the next row) wins, as
    ``argmax`` does; the backward pass sends that window's whole gradient to it and nothing to
    the other tied pixels. Where windows overlap, a pixel that wins several windows receives
    the sum of their gradients. (PyTorch's CPU kernel picks the same pixels, checked below; its
    documentation does not promise a tie rule.)
    """
    x = np.array(
        [
            [5.0, 5.0, 1.0, 7.0],
            [5.0, 5.0, 7.0, 7.0],
            [3.0, 2.0, 0.0, 4.0],
            [3.0, 3.0, 4.0, 0.0],
        ]
    ).reshape(1, 1, 4, 4)
    y, cache = max_pool2d_forward(xp.asarray(x), 2, 2)
    np.testing.assert_array_equal(asnumpy(y)[0, 0], [[5.0, 7.0], [3.0, 4.0]])
    dy = np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 1, 2, 2)
    dx = asnumpy(max_pool2d_backward(xp.asarray(dy), cache))[0, 0]
    expected = np.zeros((4, 4))
    expected[0, 0] = 10.0  # four 5s: the top-left one
    expected[0, 3] = 20.0  # 7s at (0,3), (1,2), (1,3): (0,3) comes first in row-major order
    expected[2, 0] = 30.0  # 3s at (2,0), (3,0), (3,1): (2,0)
    expected[2, 3] = 40.0  # 4s at (2,3), (3,2): (2,3) comes before (3,2)
    np.testing.assert_array_equal(dx, expected)

    # Overlapping 3x3 stride-1 windows on a constant image: each window's top-left pixel wins,
    # and the reference and PyTorch's indices agree.
    flat = np.ones((1, 1, 4, 5))
    y, cache = max_pool2d_forward(xp.asarray(flat), 3, 1)
    dy = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    dx = asnumpy(max_pool2d_backward(xp.asarray(dy), cache))[0, 0]
    expected = np.zeros((4, 5))
    expected[:2, :3] = dy[0, 0]
    np.testing.assert_array_equal(dx, expected)
    _, argmax_ref = max_pool2d_reference(flat, 3, 1)
    np.testing.assert_array_equal(argmax_ref[0, 0], [[0, 1, 2], [5, 6, 7]])
    for image, k, s in ((x, 2, 2), (flat, 3, 1)):
        xt = to_torch(image, requires_grad=True)
        yt = F.max_pool2d(xt, k, s)
        g = np.random.default_rng(0).standard_normal(tuple(yt.shape))
        yt.backward(to_torch(g))
        _, cache = max_pool2d_forward(xp.asarray(image), k, s)
        assert_close(max_pool2d_backward(xp.asarray(g), cache), xt.grad, "tied dx vs torch")


def test_overlapping_windows_sum_their_gradients(xp):
    """The centre of a 5x5 image lies in all nine 3x3 stride-1 windows; as the maximum of each
    it receives the sum of their nine gradients, and every other pixel receives nothing."""
    x = -1.0 - signed_distinct(8, (1, 1, 5, 5)) ** 2
    x[0, 0, 2, 2] = 1.0
    y, cache = max_pool2d_forward(xp.asarray(x), 3, 1)
    assert y.shape == (1, 1, 3, 3)
    dy = np.random.default_rng(3).standard_normal((1, 1, 3, 3))
    dx = asnumpy(max_pool2d_backward(xp.asarray(dy), cache))
    expected = np.zeros_like(x)
    expected[0, 0, 2, 2] = dy.sum()
    assert_close(dx, expected, "overlapping windows dx", rtol=1e-14, atol=1e-14)
    xt = to_torch(x, requires_grad=True)
    F.max_pool2d(xt, 3, 1).backward(to_torch(dy))
    assert_close(dx, xt.grad, "overlapping windows dx vs torch")


def test_padding_is_minus_infinity_not_zero(xp):
    x = -1.0 - signed_distinct(5, (1, 1, 4, 4)) ** 2
    y = asnumpy(max_pool2d(xp.asarray(x), 3, 2, padding=1, ceil_mode=True))
    assert (y < 0).all(), f"padding leaked into the maximum: {y}"
    assert_close(y, F.max_pool2d(to_torch(x), 3, 2, 1, ceil_mode=True), "all-negative output")


def test_nan_propagates_like_torch(xp):
    x = signed_distinct(6, (1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    y = asnumpy(max_pool2d(xp.asarray(x), 2, 2))
    yt = F.max_pool2d(to_torch(x), 2, 2).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt))
    assert np.isnan(y[0, 0, 0, 0])


# ----------------------------------------------------------------------------------------------
# Output size


def test_pool_output_size_matches_torch_over_many_sizes():
    mismatches = []
    for size in range(1, 12):
        for kernel in range(1, 5):
            for stride in range(1, 4):
                for padding in range(kernel // 2 + 1):
                    for dilation in (1, 2):
                        if dilation * (kernel - 1) + 1 > size + 2 * padding:
                            continue
                        for ceil in (False, True):
                            ours = pool_output_size(size, kernel, stride, padding, dilation, ceil)
                            x = torch.zeros(1, 1, size, 1)
                            theirs = F.max_pool2d(
                                x, (kernel, 1), (stride, 1), (padding, 0), (dilation, 1), ceil
                            ).shape[2]
                            if ours != theirs:
                                mismatches.append(
                                    f"size={size} k={kernel} s={stride} p={padding} "
                                    f"d={dilation} ceil={ceil}: ours {ours} vs theirs {theirs}"
                                )
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, ceil, expected",
    [
        (7, 2, 2, 0, True, 4),  # FCN: the last window covers only the last pixel
        (7, 2, 2, 0, False, 3),
        (125, 2, 2, 0, True, 63),
        (63, 2, 2, 0, True, 32),
        (224, 2, 2, 0, True, 112),
        # ceil would give 4, but the 4th window would start at 6 >= size + padding = 6, that
        # is entirely in the right padding: PyTorch and Caffe drop it.
        (5, 2, 2, 1, True, 3),
        (5, 2, 2, 1, False, 3),
        (6, 3, 3, 1, True, 3),  # ceil gives 3 windows at 0, 3, 6; 6 < 6 + 1 so it stays
        (4, 3, 3, 1, True, 2),  # ceil gives 3, the third starts at 6 >= 4 + 1: dropped
    ],
    ids=lambda v: str(v),
)
def test_pool_output_size_known_values(size, kernel, stride, padding, ceil, expected):
    assert pool_output_size(size, kernel, stride, padding, 1, ceil) == expected
    x = torch.zeros(1, 1, size, size)
    assert F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil).shape[2] == expected


def test_fcn_pooling_chain_of_five_halvings():
    """VGG16 with padding 100 on a 500x500 image: five 2x2 s2 ceil-mode pools."""
    sizes = [698]
    for _ in range(5):
        sizes.append(pool_output_size(sizes[-1], 2, 2, 0, 1, True))
    assert sizes == [698, 349, 175, 88, 44, 22]


# ----------------------------------------------------------------------------------------------
# Bad input


def test_wrong_ndim_raises(xp):
    with pytest.raises(ValueError, match=r"4-d input.*got 3-d"):
        max_pool2d(xp.zeros((3, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"4-d input"):
        MaxPool2d(2)(xp.zeros((1, 1, 3, 8, 8)))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float16, np.bool_])
def test_non_float_dtype_raises_type_error_naming_it(xp, dtype):
    x = xp.zeros((1, 1, 4, 4), dtype=dtype)
    with pytest.raises(TypeError, match=str(np.dtype(dtype))):
        max_pool2d(x, 2)
    with pytest.raises(TypeError, match=str(np.dtype(dtype))):
        MaxPool2d(2)(x)


@pytest.mark.parametrize(
    "shape, kernel, padding, dilation",
    [((1, 1, 3, 8), 4, 0, 1), ((1, 1, 8, 2), (2, 5), (0, 1), 1), ((1, 1, 4, 4), 3, 0, 2)],
    ids=["k4-on-3-rows", "k5-on-2-cols-pad1", "dilated-k3d2-on-4"],
)
def test_kernel_larger_than_padded_input_raises(xp, shape, kernel, padding, dilation):
    with pytest.raises(ValueError, match="larger than the padded input"):
        max_pool2d(xp.zeros(shape), kernel, 1, padding, dilation)


@pytest.mark.parametrize(
    "kernel, padding", [(2, 2), (3, 2), ((3, 4), (1, 3)), ((1, 3), (1, 0))], ids=str
)
def test_padding_more_than_half_kernel_raises(xp, kernel, padding):
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        max_pool2d(xp.zeros((1, 1, 9, 9)), kernel, 1, padding)
    # and PyTorch refuses the same arguments
    with pytest.raises(RuntimeError):
        F.max_pool2d(torch.zeros(1, 1, 9, 9), kernel, 1, padding)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"kernel_size": 0}, ValueError),
        ({"kernel_size": 2, "stride": 0}, ValueError),
        ({"kernel_size": 2, "padding": -1}, ValueError),
        ({"kernel_size": 2, "dilation": 0}, ValueError),
        ({"kernel_size": 2.0}, TypeError),
        ({"kernel_size": (2, 2, 2)}, TypeError),
    ],
    ids=["kernel0", "stride0", "padding-1", "dilation0", "float-kernel", "triple-kernel"],
)
def test_bad_arguments_raise(xp, kwargs, error):
    with pytest.raises(error):
        max_pool2d(xp.zeros((1, 1, 6, 6)), **kwargs)


def test_backward_checks_dy_shape(xp):
    _, cache = max_pool2d_forward(xp.zeros((1, 2, 6, 6)), 2)
    with pytest.raises(ValueError, match=r"dy of shape \(1, 2, 3, 3\)"):
        max_pool2d_backward(xp.zeros((1, 2, 3, 4)), cache)


def test_layer_backward_without_forward_raises():
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        MaxPool2d(2).backward(np.zeros((1, 1, 2, 2)))


# ----------------------------------------------------------------------------------------------
# Ties and NaN: which input receives the gradient, in the textbook and in the engine

POOLS = {  # kernel, stride, padding, ceil_mode, input H x W
    "2x2-s2": (2, 2, 0, False, (6, 8)),
    "2x2-s2-odd-ceil": (2, 2, 0, True, (7, 5)),
    "2x2-s2-odd-floor": (2, 2, 0, False, (7, 5)),
    "3x3-s2-p1": (3, 2, 1, True, (7, 6)),
    "3x3-s1-overlap": (3, 1, 0, False, (5, 6)),
}


# the textbook's functions, and the engine's (the planner: 2x2 windows in two pairwise steps)
KERNELS = {
    "textbook": (max_pool2d_forward, max_pool2d_backward),
    "engine": (plan.max_pool2d_forward, plan.max_pool2d_backward),
}


@pytest.mark.parametrize("kernels", list(KERNELS))
@pytest.mark.parametrize("name", list(POOLS))
def test_ties_route_to_the_first_maximum_like_torch(xp, name, kernels):
    """After a ReLU most windows tie at 0: the first maximum in row-major order wins."""
    forward, backward = KERNELS[kernels]
    k, s, p, ceil, hw = POOLS[name]
    rng = np.random.default_rng(7)
    x = np.maximum(rng.integers(-2, 3, (2, 3) + hw), 0).astype(np.float64)
    y, cache = forward(xp.asarray(x), k, s, p, ceil_mode=ceil)
    dy = rng.standard_normal(y.shape)
    dx = backward(xp.asarray(dy), cache)
    xt = to_torch(x, requires_grad=True)
    yt = F.max_pool2d(xt, k, s, p, ceil_mode=ceil)
    yt.backward(to_torch(dy))
    assert_close(y, yt, f"{name} output")
    assert_close(dx, xt.grad, f"{name} dx with ties")
    _, argmax = max_pool2d_reference(x, k, s, p, ceil_mode=ceil)
    ref = max_pool2d_backward_reference(dy, argmax, x.shape)
    assert_close(dx, ref, f"{name} dx vs the loop reference")


@pytest.mark.parametrize("kernels", list(KERNELS))
@pytest.mark.parametrize("name", list(POOLS))
def test_nan_windows_route_to_their_last_nan_like_torch(xp, name, kernels):
    forward, backward = KERNELS[kernels]
    k, s, p, ceil, hw = POOLS[name]
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2) + hw)
    x[rng.random(x.shape) < 0.2] = np.nan
    y, cache = forward(xp.asarray(x), k, s, p, ceil_mode=ceil)
    dy = rng.standard_normal(y.shape)
    dx = asnumpy(backward(xp.asarray(dy), cache))
    xt = to_torch(x, requires_grad=True)
    yt = F.max_pool2d(xt, k, s, p, ceil_mode=ceil)
    yt.backward(to_torch(dy))
    np.testing.assert_array_equal(np.isnan(asnumpy(y)), np.isnan(yt.detach().numpy()))
    assert np.isnan(asnumpy(y)).any(), "the test needs NaN windows"
    assert_close(dx, xt.grad, f"{name} dx with NaN")
