"""Winograd F(2x2, 3x3) and F(4x4, 3x3) equal the textbook's conv2d, its dX and dW (float64,
<= 1e-12 relative) on awkward shapes and in every block shape; float32 within 2e-6 (m = 2) and
3e-5 (m = 4) of the largest value of each on VGG-like layers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close, assert_same_as_textbook
from tinyfcn import functional as F
from tinyfcn.fast.winograd import (
    _block_shape,
    filter_transform,
    transform_matrices,
    winograd_conv3x3,
    winograd_conv3x3_keeping_v,
    winograd_input_grad,
    winograd_v_size,
    winograd_weight_grad,
)

# (N, C, O, H, W, padding): odd sizes (a cropped tile row or column), maps smaller than the
# kernel made whole by padding, batch 1 and 3, C != O, one channel, padding 0 to 3 and a pair
CASES = {
    "odd-7x9-pad1-batch3-C2-O5": (3, 2, 5, 7, 9, 1),
    "1-channel-5x5-pad1": (1, 1, 1, 5, 5, 1),
    "1x2-map-pad2-batch2": (2, 3, 4, 1, 2, 2),
    "2x1-map-pad1-C2-O3": (1, 2, 3, 2, 1, 1),
    "4x4-pad0-C4-O3": (1, 4, 3, 4, 4, 0),
    "3x3-pad0-one-output": (1, 2, 2, 3, 3, 0),
    "6x11-pad0-batch3": (3, 3, 2, 6, 11, 0),
    "5x8-pad2": (1, 3, 2, 5, 8, 2),
    "6x4-pad0x2-batch2": (2, 2, 3, 6, 4, (0, 2)),
    "6x5-pad3-dX-crops-dy": (2, 3, 2, 6, 5, 3),
}
IDS = list(CASES)
BUDGETS = {"whole": None, "tile-row": 1, "20kB": 20_000}
TILES = [2, 4]  # m of F(m x m, 3x3)
FLOAT32_REL = {2: 2e-6, 4: 3e-5}


def arrays(xp, name: str, seed: int):
    """x, w, b, dy (float64), padding, and the textbook's y, dx, dw."""
    N, C, O, H, W, p = CASES[name]
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal((N, C, H, W)))
    w = xp.asarray(rng.standard_normal((O, C, 3, 3)) / np.sqrt(9 * C))
    b = xp.asarray(rng.standard_normal(O))
    y, cache = F.conv2d_forward(x, w, b, 1, p)
    dy = xp.asarray(rng.standard_normal(y.shape))
    return (x, w, b, dy, p), (y,) + F.conv2d_backward(dy, cache)[:2]


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("threads", [1, 3])  # 3: the blocks shared out among threads
def test_forward_equals_textbook(xp, name, budget, m, threads):
    (x, w, b, _, p), (y, _, _) = arrays(xp, name, seed=IDS.index(name))
    x_before = x.copy()
    ours = winograd_conv3x3(x, w, b, p, BUDGETS[budget], m, threads)
    assert_same_as_textbook(ours, y, f"{name} y ({threads} threads)")
    no_b = y - b.reshape(1, -1, 1, 1)
    assert_same_as_textbook(winograd_conv3x3(x, w, None, p, m=m), no_b, "no b")
    assert_close(x, x_before, f"{name} x unchanged", rtol=0, atol=0)


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("threads", [1, 3])
def test_input_grad_equals_textbook(xp, name, budget, m, threads):
    (_, w, _, dy, p), (_, dx, _) = arrays(xp, name, seed=50 + IDS.index(name))
    dy_before = dy.copy()
    ours = winograd_input_grad(dy, w, p, BUDGETS[budget], m, threads)
    assert_same_as_textbook(ours, dx, f"{name} dx ({threads} threads)")
    assert_close(dy, dy_before, f"{name} dy unchanged", rtol=0, atol=0)


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("threads", [1, 3])  # 3: dU summed over the shares
def test_weight_grad_equals_textbook(xp, name, budget, m, threads):
    (x, _, _, dy, p), (_, _, dw) = arrays(xp, name, seed=80 + IDS.index(name))
    x_before, dy_before = x.copy(), dy.copy()
    ours = winograd_weight_grad(x, dy, p, BUDGETS[budget], m, threads)
    assert_same_as_textbook(ours, dw, f"{name} dw ({threads} threads)")
    assert_close(x, x_before, f"{name} x unchanged", rtol=0, atol=0)
    assert_close(dy, dy_before, f"{name} dy unchanged", rtol=0, atol=0)


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("threads", [1, 3])
def test_weight_grad_from_the_forwards_kept_v_equals_textbook(xp, name, budget, m, threads):
    """The forward hands over its input transform V, block by block; dW from it is the
    textbook's, the forward's y unchanged by keeping it; a spare buffer of the right size and
    dtype is filled and used, any other is not."""
    (x, w, b, dy, p), (y, _, dw) = arrays(xp, name, seed=110 + IDS.index(name))
    ours_y, kept = winograd_conv3x3_keeping_v(x, w, b, p, BUDGETS[budget], m, threads)
    assert_same_as_textbook(ours_y, y, f"{name} y keeping V ({threads} threads)")
    assert kept.buffer.size == winograd_v_size(x.shape, y.shape[2:], m)
    assert sum(v.size for v in kept.v) == kept.buffer.size
    if xp is np:  # views of the one flat array (CuPy keeps its own notion of a view's base)
        assert all(v.base is kept.buffer for v in kept.v)
    x_garbage = xp.full_like(x, np.nan)  # V alone carries x: dW must not read x again
    out = xp.full(dw.shape, np.nan)  # overwritten, never read
    ours = winograd_weight_grad(x_garbage, dy, p, BUDGETS[budget], m, threads, v=kept, out=out)
    assert ours is out
    assert_same_as_textbook(ours, dw, f"{name} dw from the kept V ({threads} threads)")
    spare = xp.full(kept.buffer.size, np.nan)
    _, again = winograd_conv3x3_keeping_v(x, w, b, p, BUDGETS[budget], m, threads, spare)
    assert again.buffer is spare
    assert_close(spare, kept.buffer, f"{name} V in the spare", rtol=0, atol=0)
    wrong = (xp.empty(spare.size + 1), spare.astype(np.float32))
    for buffer in wrong:
        _, fresh = winograd_conv3x3_keeping_v(x, w, b, p, BUDGETS[budget], m, threads, buffer)
        assert fresh.buffer is not buffer


def test_weight_grad_refuses_a_v_of_another_input(xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((1, 2, 6, 6)))
    w = xp.ones((3, 2, 3, 3))
    y, kept = winograd_conv3x3_keeping_v(x, w, None, 1, m=2)
    with pytest.raises(ValueError, match="kept V does not belong"):
        winograd_weight_grad(x[:, :1], y, 1, m=2, v=kept)


@pytest.mark.parametrize("m", TILES)
def test_every_block_shape_gives_the_same_output(xp, m):
    """Budgets from one tile row to the whole batch: blocks of rows within a sample and blocks
    of samples both occur, and all give the textbook's output."""
    rng = np.random.default_rng(7)
    x = xp.asarray(rng.standard_normal((3, 2, 4 * m + 1, 4 * m + 2)))
    w = xp.asarray(rng.standard_normal((4, 2, 3, 3)))
    y = F.conv2d(x, w, None, 1, 1)
    shapes = {}
    for budget in np.geomspace(1, 10**6, 60).astype(int):
        shapes.setdefault(_block_shape(3, 5, 5, 2, 4, 8, int(budget), m), int(budget))
    assert any(1 < rows < 5 for n, rows in shapes) and any(1 < n < 3 for n, rows in shapes)
    dy = xp.asarray(rng.standard_normal(y.shape))
    dw = F.conv2d_weight_grad(dy, F.im2col(x, 3, 1, 1), w.shape)
    for (n, rows), budget in shapes.items():
        ours = winograd_conv3x3(x, w, None, 1, budget, m)
        assert_same_as_textbook(ours, y, f"blocks of {n} samples x {rows} tile rows")
        ours = winograd_weight_grad(x, dy, 1, budget, m)
        assert_same_as_textbook(ours, dw, f"dw, blocks of {n} samples x {rows} tile rows")


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("N, C, O, size", [(1, 64, 64, 20), (2, 128, 96, 9), (1, 3, 16, 11)])
def test_float32_error_on_vgg_like_layers(xp, N, C, O, size, m):
    """He-scaled weights, post-ReLU inputs (RGB-like for 3 channels): y, dx and dw in float32
    within FLOAT32_REL[m] of max |y| (|dx|, |dw|) of the float64 textbook; measured at most 7e-7
    (m = 2) and 1.7e-5 (m = 4) on 16-512 channel layers at 28 to 224 pixels."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((N, C, size, size))
    x = x * 60 if C == 3 else np.maximum(x, 0)
    w = rng.standard_normal((O, C, 3, 3)) * np.sqrt(2 / (9 * C))
    b = rng.standard_normal(O) * 0.1
    y, cache = F.conv2d_forward(x, w, b, 1, 1)
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = F.conv2d_backward(dy, cache)
    x32, w32, b32, dy32 = (xp.asarray(a, dtype=np.float32) for a in (x, w, b, dy))
    y32 = winograd_conv3x3(x32, w32, b32, 1, m=m)
    dx32 = winograd_input_grad(dy32, w32, 1, m=m)
    dw32 = winograd_weight_grad(x32, dy32, 1, m=m)
    assert y32.dtype == dx32.dtype == dw32.dtype == np.float32
    for ours, textbook, what in ((y32, y, "y"), (dx32, dx, "dx"), (dw32, dw, "dw")):
        assert_same_as_textbook(ours, textbook, f"float32 {what}", rel=FLOAT32_REL[m])


def test_transform_matrices_satisfy_the_tile_identity():
    """For one tile and one channel, A^T [(G g G^T) * (B^T d B)] A is the 3x3 correlation of d
    with g (every output of the m x m block), and the kron forms are the per-tile transforms."""
    rng = np.random.default_rng(3)
    for m in TILES:
        kb, kg, ka = transform_matrices(m)
        d, g = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
        y = ka @ ((kg @ g.ravel()) * (kb @ d.ravel()))
        expected = [(d[i : i + 3, j : j + 3] * g).sum() for i in range(m) for j in range(m)]
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
        u = filter_transform(g.reshape(1, 1, 3, 3), m)
        np.testing.assert_allclose(u.ravel(), kg @ g.ravel(), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"m in \(2, 4\), got 3"):
        transform_matrices(3)


def test_errors_name_the_problem():
    x, w = np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match="3x3 convolutions only, got a 5x5"):
        winograd_conv3x3(x, np.zeros((3, 2, 5, 5)))
    with pytest.raises(ValueError, match="expected input with 2 channels"):
        winograd_conv3x3(np.zeros((1, 4, 5, 5)), w)
    with pytest.raises(ValueError, match="expected dy with 3 channels"):
        winograd_input_grad(np.zeros((1, 2, 5, 5)), w)
    with pytest.raises(ValueError, match=r"expected dy of shape .* \(1, 3, 3, 3\)"):
        winograd_weight_grad(x, np.zeros((1, 3, 5, 5)), padding=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        winograd_input_grad(np.zeros((1, 3, 5, 5), dtype=np.int64), w)
