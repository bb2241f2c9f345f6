"""Every engine convolution kernel equals the textbook's (float64, <= 1e-12 relative), forward
and every gradient, on the awkward configurations of test_conv.py; and the planner's choices."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch.nn.functional as TF

from tests.helpers import assert_close, assert_same_as_textbook, to_torch
from tests.test_conv import CASES
from tinyfcn import fast
from tinyfcn import functional as F
from tinyfcn.fast import plan, workspace
from tinyfcn.fast.conv_blocked import (
    BlockedConvCache,
    conv2d_blocked_backward,
    conv2d_blocked_forward,
    conv2d_input_grad_as_conv,
)
from tinyfcn.fast.conv_chunked import conv2d_chunked
from tinyfcn.fast.conv_kept import conv2d_kept_backward, conv2d_kept_forward
from tinyfcn.fast.conv_shifted import ShiftedConvCache
from tinyfcn.fast.gemm import matmul_in_bands, weight_grad_gemm
from tinyfcn.functional.conv import check_conv2d_args, normalize_conv_args
from tinyfcn.nn import Conv2d, manual_seed, no_grad

IDS = list(CASES)
BLOCKS = {"row": 1, "rows": 600, "whole": 10**9}  # bytes of im2col matrix per block


def textbook_and_args(xp, name: str, seed: int):
    """(x, w, b, dy), the textbook's (y, dx, dw, db), and the checked (k, s, p, d), (Ho, Wo)."""
    case = CASES[name]
    x, w, b = (None if a is None else xp.asarray(a) for a in case.arrays(seed))
    args, out_hw = check_conv2d_args("conv2d", x, w, b, case.s, case.p, case.d)
    y, cache = F.conv2d_forward(x, w, b, case.s, case.p, case.d)
    dy = xp.asarray(np.random.default_rng(seed + 1).standard_normal(y.shape))
    return (x, w, b, dy), (y,) + F.conv2d_backward(dy, cache), args, out_hw


def dx_options(args) -> dict:
    """col2im always; dX as a convolution where it is defined (stride 1, P <= D(K-1))."""
    k, s, p, d = args
    options = {"col2im": None}
    if s == (1, 1) and all(p[a] <= d[a] * (k[a] - 1) for a in range(2)):
        options.update({"conv-rows": 1, "conv-whole": 10**9})
    return options


def check_grads(name, ours, textbook) -> None:
    for what, a, t in zip(("dx", "dw", "db"), ours, textbook[1:], strict=True):
        if t is None:
            assert a is None, f"{name} {what}: expected None"
        else:
            assert_same_as_textbook(a, t, f"{name} {what}")


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("block", list(BLOCKS))
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunked_forward_equals_textbook(xp, name, block, threads):
    (x, w, b, _), textbook, args, out_hw = textbook_and_args(xp, name, seed=IDS.index(name))
    y = conv2d_chunked(x, w, b, *args, out_hw, BLOCKS[block], threads)
    assert_same_as_textbook(y, textbook[0], f"{name} chunked ({block}, {threads} threads)")


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("block", list(BLOCKS))
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocked_training_conv_equals_textbook(xp, name, block, threads):
    """Also with the samples shared out among threads (shares.py): dW summed over shares."""
    (x, w, b, dy), textbook, args, out_hw = textbook_and_args(xp, name, seed=100 + IDS.index(name))
    x_before, dy_before = x.copy(), dy.copy()
    for dw_transposed in (False, True):
        for dx_name, dx_block in dx_options(args).items():
            y, cache = conv2d_blocked_forward(x, w, b, *args, out_hw, BLOCKS[block], threads)
            assert_same_as_textbook(y, textbook[0], f"{name} blocked output")
            grads = conv2d_blocked_backward(dy, cache, dw_transposed, dx_block)
            what = f"{name} blocked ({block}, {threads} threads, dW^T {dw_transposed}, {dx_name})"
            check_grads(what, grads, textbook)
    assert_close(x, x_before, f"{name} x unchanged", rtol=0, atol=0)
    assert_close(dy, dy_before, f"{name} dy unchanged", rtol=0, atol=0)


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kept_training_conv_equals_textbook(xp, name, threads):
    """The im2col matrix written into a reused spare, dW into a given array, W2^T @ dY2 into the
    dead matrix: the textbook's numbers, and the input (a 1x1 conv's "matrix") never written.
    Also with every GEMM in bands shared out among threads (fc6 at batch 1)."""
    (x, w, b, dy), textbook, args, out_hw = textbook_and_args(xp, name, seed=200 + IDS.index(name))
    x_before = x.copy()
    owner = Conv2d(1, 1, 1)  # any object that can be weakly referenced keys the spare
    for dw_transposed in (False, True):
        for dx_name, dx_block in dx_options(args).items():
            y, cache = conv2d_kept_forward(x, w, b, *args, out_hw, owner, threads)
            assert_same_as_textbook(y, textbook[0], f"{name} kept output ({threads} threads)")
            dw_out = xp.full(w.shape, np.nan)  # overwritten, never read
            grads = conv2d_kept_backward(dy, cache, dw_transposed, dx_block, dw_out)
            assert grads[1] is dw_out
            what = f"{name} kept ({threads} threads, dW^T {dw_transposed}, {dx_name})"
            check_grads(what, grads, textbook)
    assert_close(x, x_before, f"{name} x unchanged", rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in IDS if CASES[n].s == 1])
def test_input_grad_as_conv_equals_textbook_and_torch(xp, name):
    """dX = conv2d(dY, flip_transpose(W), padding D(K-1) - P, dilation D) at stride 1."""
    (x, w, b, dy), textbook, (k, s, p, d), _ = textbook_and_args(xp, name, seed=300)
    if not all(p[a] <= d[a] * (k[a] - 1) for a in range(2)):
        pytest.skip("padding beyond D(K-1): dX is not a convolution of dY")
    for block in BLOCKS.values():
        dx = conv2d_input_grad_as_conv(dy, w, k, p, d, block)
        assert_same_as_textbook(dx, textbook[1], f"{name} dX as a conv ({block} B blocks)")
    xt = to_torch(x, requires_grad=True)
    TF.conv2d(xt, to_torch(w), None, s, p, d).backward(to_torch(dy))
    assert_close(textbook[1], xt.grad, f"{name} textbook dX vs torch")


@pytest.mark.parametrize("O, K, M", [(4, 9, 300), (600, 9, 300), (4, 9, 20)])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("threads", [1, 2])  # 2: the direct order in bands
def test_weight_grad_gemm_both_orders_give_dy2_cols_t(xp, O, K, M, accumulate, threads):
    rng = np.random.default_rng(O + M)
    dy2, cols = xp.asarray(rng.standard_normal((O, M))), xp.asarray(rng.standard_normal((K, M)))
    start = xp.asarray(rng.standard_normal((O, K)))
    for transposed in (False, True):
        dw2 = start.copy()
        weight_grad_gemm(dy2, cols, dw2, transposed, accumulate=accumulate, threads=threads)
        expected = dy2 @ cols.T + (start if accumulate else 0)
        assert_same_as_textbook(dw2, expected, f"dW ({O}x{K} on {M} px, transposed {transposed})")


@pytest.mark.parametrize("M, bands, threads", [(7, 1, 2), (7, 3, 2), (10, 8, 2), (5, 9, 3)])
def test_matmul_in_bands_equals_one_matmul(xp, M, bands, threads):
    """Every row of out written once, by the same dot products; more bands than rows is fine; a
    transposed (strided) a, as in dX = W2^T @ dY2, too."""
    rng = np.random.default_rng(M + bands)
    a, b = xp.asarray(rng.standard_normal((M, 6))), xp.asarray(rng.standard_normal((6, 4)))
    out = xp.full((M, 4), np.nan)
    assert matmul_in_bands(a, b, out, threads, bands) is out
    assert_same_as_textbook(out, a @ b, f"{M} rows in {bands} bands, {threads} threads")
    out_t = xp.full((6, 4), np.nan)
    matmul_in_bands(a.T, a[:, :4], out_t, threads, bands)
    assert_same_as_textbook(out_t, a.T @ a[:, :4], f"a^T in {bands} bands")


# --- the planner's choices -------------------------------------------------------------------


def test_planner_conv_kernels():
    args = normalize_conv_args(3, 1, 1, 1)
    kernel = plan.conv2d_kernel
    assert kernel((8, 16, 128, 128), (16, 16, 3, 3), args, 4, True) == "blocked"  # thin, big
    assert kernel((1, 256, 56, 56), (256, 256, 3, 3), args, 4, True) == "winograd"  # wide
    assert kernel((1, 256, 56, 56), (256, 256, 3, 3), args, 4, False) == "winograd"
    assert kernel((1, 512, 14, 14), (512, 512, 3, 3), args, 4, True) == "kept"  # small map
    assert kernel((1, 64, 224, 224), (64, 64, 3, 3), args, 4, True) == "winograd"  # big map
    assert kernel((8, 64, 32, 32), (64, 64, 3, 3), args, 4, True) == "kept"  # 64 ch, 32x32
    # samples shared out among threads: blocked, whatever the patch (not a 1x1 conv)
    assert kernel((8, 64, 32, 32), (64, 64, 3, 3), args, 4, True, threads=2) == "blocked"
    assert kernel((8, 64, 32, 32), (64, 64, 3, 3), args, 4, False, threads=2) == "chunked"
    tile = plan.winograd_tile
    assert [tile((c, c, 3, 3), args, (s, s)) for c, s in ((64, 56), (128, 28), (512, 14))] == [
        4,
        2,
        None,
    ]
    strided = normalize_conv_args(3, 2, 1, 1)
    assert kernel((1, 256, 56, 56), (256, 256, 3, 3), strided, 4, True) == "kept"
    assert kernel((1, 16, 8, 8), (16, 16, 3, 3), args, 4, True) == "kept"  # small
    pointwise = normalize_conv_args(1, 1, 0, 1)
    assert kernel((8, 16, 128, 128), (16, 16, 1, 1), pointwise, 4, True) == "kept"
    assert kernel((8, 16, 128, 128), (16, 16, 3, 3), args, 4, False) == "chunked"  # no_grad


def test_planner_input_grad_as_conv_rule():
    def rule(x_shape, w_shape, k, s, p, d=1):
        return plan.dx_conv_block_bytes(w_shape, x_shape, normalize_conv_args(k, s, p, d), 4)

    assert rule((8, 16, 128, 128), (16, 16, 3, 3), 3, 1, 1) is not None  # conv1_2, width 1/4
    assert rule((8, 16, 128, 128), (16, 16, 3, 3), 3, 2, 1) is None  # strided
    assert rule((8, 16, 128, 128), (16, 16, 1, 1), 1, 1, 1) is None  # P > D(K-1)
    assert rule((1, 512, 7, 7), (4096, 512, 7, 7), 7, 1, 3) is None  # fc6: W 411 MB
    assert rule((1, 8, 32, 32), (8, 8, 3, 3), 3, 1, 4, 2) is not None  # dilated
    assert rule((1, 3, 224, 224), (64, 3, 3, 3), 3, 1, 1) is None  # conv1_1: O > C


def test_planner_dw_order():
    assert plan.transposed_dw(16, 16384) and plan.transposed_dw(128, 256)
    assert not plan.transposed_dw(512, 50176) and not plan.transposed_dw(16, 8)


def test_planner_shares_samples_of_thin_convs_among_blas_threads(monkeypatch):
    """Threads = OpenBLAS's count for a conv (patch >= 64, >= 32x32 pixels) of >= 2 samples in
    NumPy; one otherwise (conv1_1's patch of 27, a 16x16 map, one sample, one BLAS thread)."""
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 2)
    x = np.zeros((8, 16, 1, 1), np.float32)  # only its shape and array type are read
    assert plan.share_threads(x[:1]) == 2  # Winograd's blocks: any batch
    assert plan.sample_threads(x, 16 * 9, (128, 128)) == 2
    assert plan.sample_threads(x, 16 * 9, (64, 64)) == 2
    assert plan.sample_threads(x, 32 * 9, (32, 32)) == 2
    assert plan.sample_threads(x, 64 * 9, (16, 16)) == 1
    assert plan.sample_threads(x, 3 * 9, (128, 128)) == 1
    assert plan.sample_threads(x[:1], 16 * 9, (128, 128)) == 1
    monkeypatch.setattr(plan, "get_blas_threads", lambda: None)  # no OpenBLAS found
    assert plan.sample_threads(x, 16 * 9, (128, 128)) == 1
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 1)  # the demo's single thread
    assert plan.sample_threads(x, 16 * 9, (128, 128)) == 1
    # each thread's forward block within the budget
    patch = 16 * 9
    assert plan.forward_block_bytes(patch, 4, 2) == plan.forward_block_bytes(patch, 4)
    monkeypatch.setattr(plan, "im2col_budget", lambda: 10**6)
    assert plan.forward_block_bytes(patch, 4, 4) == 250_000


def test_planner_bands_only_the_huge_weight_gemms_on_few_pixels(monkeypatch):
    """fc6 and fc7 of the full-width net at batch 1 (411 and 67 MB weights, 49 pixels); not at
    batch 2 (98 pixels: > 64), not fc6 at width 1/4 (26 MB), not without OpenBLAS's threads."""
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 2)
    x1, x2 = np.zeros((1, 1, 1, 1), np.float32), np.zeros((2, 1, 1, 1), np.float32)
    assert plan.banded_gemm_threads(x1, (4096, 512, 7, 7), (7, 7)) == 2
    assert plan.banded_gemm_threads(x1, (4096, 4096, 1, 1), (7, 7)) == 2
    assert plan.banded_gemm_threads(x2, (4096, 512, 7, 7), (7, 7)) == 1
    assert plan.banded_gemm_threads(x1, (1024, 128, 7, 7), (4, 4)) == 1
    assert plan.banded_gemm_threads(x1.astype(np.float64), (2048, 512, 7, 7), (7, 7)) == 2
    monkeypatch.setattr(plan, "get_blas_threads", lambda: None)
    assert plan.banded_gemm_threads(x1, (4096, 512, 7, 7), (7, 7)) == 1


@pytest.mark.parametrize(
    "x_shape, w_shape, padding, need_backward",
    [
        ((8, 16, 64, 64), (16, 16, 3, 3), 1, True),  # shifted, samples shared out
        ((8, 16, 64, 64), (16, 16, 3, 3), 1, False),  # shifted, shared out, forward only
        ((8, 16, 64, 64), (16, 16, 3, 3), 0, True),  # P = 0 <= K - 1: shifted too
        ((1, 16, 64, 64), (16, 16, 3, 3), 1, True),  # blocked, one sample
        ((1, 64, 56, 56), (64, 64, 3, 3), 1, True),  # Winograd F(4x4)
        ((2, 128, 28, 28), (128, 128, 3, 3), 1, False),  # Winograd F(2x2)
        ((1, 64, 7, 7), (256, 64, 7, 7), 3, True),  # kept (fc6's shape, narrower)
        ((1, 1024, 7, 7), (4096, 1024, 3, 3), 1, True),  # kept, GEMMs in bands (144 MiB)
    ],
)
def test_describe_conv2d_names_the_kernel_that_runs(
    monkeypatch, x_shape, w_shape, padding, need_backward
):
    """The planner's words for a convolution agree with what conv2d_forward then does."""
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    words = plan.describe_conv2d(x, w_shape, 1, padding, need_backward=need_backward)
    _, cache = plan.conv2d_forward(x, w, None, 1, padding, need_backward=need_backward)
    if isinstance(cache, plan.WinogradCache):
        assert words == f"winograd F({cache.m}x{cache.m}), 2 threads"
    elif isinstance(cache, BlockedConvCache):
        assert words == "blocked" + (f", {cache.threads} threads" if cache.threads > 1 else "")
    elif isinstance(cache, ShiftedConvCache):
        assert words == f"shifted, {cache.threads} threads" and cache.threads == 2
    elif cache is None:
        shared = x_shape[0] > 1
        forward_only = "shifted" if shared else "chunked"
        assert words.startswith("winograd" if min(w_shape[:2]) >= 128 else forward_only)
        assert words.endswith("2 threads") == shared
    else:
        assert words == "kept" + (f", {cache.threads} threads" if cache.threads > 1 else "")
        assert cache.threads == (2 if w.nbytes >= 32 * 2**20 else 1)


def test_describe_transposed_conv_and_pool():
    x = np.zeros((1, 21, 28, 28), np.float32)
    assert plan.describe_conv_transpose2d(x, (21, 21, 16, 16), 8, 4) == "subpixel (kept)"
    words = plan.describe_conv_transpose2d(x, (21, 21, 16, 16), 8, 4, need_backward=False)
    assert words == "subpixel (chunked)"
    assert plan.describe_conv_transpose2d(x, (21, 21, 3, 3), 2, 1) == "textbook adjoint"
    assert plan.describe_max_pool2d(2) == "pool2x2"
    assert plan.describe_max_pool2d(3, 2) == "textbook"


# --- through the layer -----------------------------------------------------------------------


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of one or two output rows, and the blocked kernel taken for any matrix size."""
    monkeypatch.setitem(plan.RULES, "block_bytes", 1)
    monkeypatch.setitem(plan.RULES, "block_min_pixels", 0)
    monkeypatch.setitem(plan.RULES, "blocked_min_cols_bytes", 0)


def test_conv2d_layer_takes_the_blocked_kernel_and_matches_torch(xp, device, tiny_blocks):
    manual_seed(0)
    layer = Conv2d(3, 4, 3, padding=1).double().to(device)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 10))
    dy = rng.standard_normal((2, 4, 9, 10))
    with fast.enabled():
        for _ in range(2):  # gradients accumulate across two backward passes, as in torch
            y = layer(xp.asarray(x))
            assert isinstance(layer.__dict__["_cache"][1], BlockedConvCache)
            dx = layer.backward(xp.asarray(dy))
    xt = to_torch(x, requires_grad=True)
    wt = to_torch(layer.weight.data, requires_grad=True)
    bt = to_torch(layer.bias.data, requires_grad=True)
    for _ in range(2):
        TF.conv2d(xt, wt, bt, padding=1).backward(to_torch(dy))
    assert_close(y, TF.conv2d(to_torch(x), wt.detach(), bt.detach(), padding=1), "output")
    assert_close(dx, xt.grad / 2, "dx")
    assert_close(layer.weight.grad, wt.grad, "weight.grad (two steps)")
    assert_close(layer.bias.grad, bt.grad, "bias.grad (two steps)")


@pytest.mark.parametrize("shifted", [True, False])
def test_conv2d_layer_shares_samples_among_threads_and_matches_torch(
    xp, device, tiny_blocks, monkeypatch, shifted
):
    """Training and inference through the layer with samples shared out among 3 threads, by
    shifted views (NumPy) or im2col blocks: the cache says so, and two accumulated steps equal
    torch's."""
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 3)
    monkeypatch.setitem(plan.RULES, "shifted_conv", shifted)
    monkeypatch.setitem(plan.RULES, "shared_min_patch", 0)
    monkeypatch.setitem(plan.RULES, "shared_min_pixels", 0)
    manual_seed(0)
    layer = Conv2d(3, 4, 3, padding=1).double().to(device)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, 9, 10))
    dy = rng.standard_normal((5, 4, 9, 10))
    expected_threads = 3 if xp is np else 1  # CuPy: no sharing
    with fast.enabled():
        for _ in range(2):
            y = layer(xp.asarray(x))
            cache = layer.__dict__["_cache"][1]
            assert cache.threads == expected_threads
            kind = ShiftedConvCache if shifted and xp is np else BlockedConvCache
            assert type(cache) is kind
            dx = layer.backward(xp.asarray(dy))
        with no_grad():
            y_inference = layer(xp.asarray(x))
    xt = to_torch(x, requires_grad=True)
    wt = to_torch(layer.weight.data, requires_grad=True)
    bt = to_torch(layer.bias.data, requires_grad=True)
    for _ in range(2):
        TF.conv2d(xt, wt, bt, padding=1).backward(to_torch(dy))
    y_torch = TF.conv2d(to_torch(x), wt.detach(), bt.detach(), padding=1)
    assert_close(y, y_torch, "output")
    assert_close(y_inference, y_torch, "output under no_grad")
    assert_close(dx, xt.grad / 2, "dx")
    assert_close(layer.weight.grad, wt.grad, "weight.grad (two steps)")
    assert_close(layer.bias.grad, bt.grad, "bias.grad (two steps)")


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("keep_v", [True, False])
def test_conv2d_layer_takes_winograd_and_equals_the_textbook(
    xp, device, monkeypatch, padding, tile, keep_v
):
    """Small layers reach the Winograd kernel when its thresholds are lowered: two steps (dW
    accumulating), forward, dx, dW and db equal to the textbook's; the forward's V kept for dW
    (where the rule allows), its memory the layer's spare, reused by the next step."""
    if not keep_v:
        monkeypatch.setitem(plan.RULES, "winograd_keep_v_max_bytes", 0)
    for m in (4, 2):
        monkeypatch.setitem(plan.RULES, f"winograd_f{m}_min_channels", 1)
        monkeypatch.setitem(plan.RULES, f"winograd_f{m}_min_side", 1 if m == tile else 10**6)
    manual_seed(0)
    layer = Conv2d(3, 4, 3, padding=padding).double().to(device)
    rng = np.random.default_rng(3)
    x = xp.asarray(rng.standard_normal((2, 3, 9, 10)))
    dy = xp.asarray(rng.standard_normal((2, 4, 7 + 2 * padding, 8 + 2 * padding)))
    results = {}
    for engine in (True, False):
        layer.zero_grad()
        with fast.enabled() if engine else fast.disabled():
            buffers = []
            for _ in range(2):
                y = layer(x)
                cache = layer.__dict__["_cache"][1]
                kind = type(cache).__name__
                if engine:
                    assert (cache.v is not None) == keep_v
                    buffers.append(cache.v.buffer if keep_v else None)
                dx = layer.backward(dy)
                if engine and keep_v:
                    assert workspace.spare_of(layer) is cache.v.buffer
            assert not engine or buffers[0] is buffers[1]
        grads = (layer.weight.grad.copy(), layer.bias.grad.copy())
        results[engine] = (y, dx, *grads, kind, getattr(cache, "m", None))
    assert results[True][4:] == ("WinogradCache", tile) and results[False][4] == "Conv2dCache"
    for what, a, t in zip(("y", "dx", "dw", "db"), results[True], results[False], strict=False):
        assert_same_as_textbook(a, t, f"winograd layer {what}")


def test_conv2d_layer_uses_blocks_under_no_grad(xp, device):
    layer = Conv2d(3, 4, 3, padding=1).double().to(device)
    x = xp.asarray(np.random.default_rng(1).standard_normal((1, 3, 40, 30)))
    old = fast.im2col_budget()
    try:
        fast.set_im2col_budget(1000)  # far below this layer's 259 KB matrix: blocks of 4 rows
        with fast.enabled(), no_grad():
            chunked = layer(x)
        with fast.disabled():
            full = layer(x)  # the textbook: one matrix
    finally:
        fast.set_im2col_budget(old)
    assert_same_as_textbook(chunked, full, "layer output, blocks vs one matrix")
    with pytest.raises(ValueError, match="positive"):
        fast.set_im2col_budget(0)


def test_the_spare_matrix_follows_its_layer(xp, device):
    """A layer's im2col matrix becomes its spare after backward, is handed out once, and goes
    when the layer goes (a weak reference)."""
    layer = Conv2d(2, 3, 3, padding=1).double().to(device)
    x = xp.asarray(np.random.default_rng(2).standard_normal((1, 2, 6, 5)))
    with fast.enabled():
        layer(x)
        assert workspace.spare_of(layer) is None
        layer.backward(xp.ones((1, 3, 6, 5)))
        spare = workspace.spare_of(layer)
        assert spare is not None and spare.shape == (18, 30)
        layer(x)
        assert workspace.spare_of(layer) is None  # in use by this forward's cache
        assert layer.__dict__["_cache"][1].cols is spare
        layer.backward(xp.ones((1, 3, 6, 5)))
    assert workspace.spare_of(layer) is spare
    layer_ref, spare_ref = weakref.ref(layer), weakref.ref(spare)
    del layer, spare
    gc.collect()
    assert layer_ref() is None and spare_ref() is None  # no layer, no spare
