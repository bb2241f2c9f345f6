"""ReLU on several threads (tinyfcn.fast.relu) gives the textbook's y, mask and dx element for
element, NaN and inf included; the planner and the layer take it only for large contiguous NumPy
arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tinyfcn import fast
from tinyfcn import functional as F
from tinyfcn.fast import plan, relu
from tinyfcn.fast.shares import runs
from tinyfcn.nn import ReLU


def signed(shape, seed=0, dtype=np.float64):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    x.reshape(-1)[::7] = 0  # exact zeros: the mask says False, the subgradient 0
    return x


def test_runs_cover_every_item_once_in_order():
    assert runs(10, 3) == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert runs(2, 5) == [slice(0, 1), slice(1, 2)]
    assert runs(0, 2) == [slice(0, 0)]
    for n in (1, 7, 100):
        covered = np.concatenate([np.arange(n)[r] for r in runs(n, 3)])
        np.testing.assert_array_equal(covered, np.arange(n))


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (1, 1, 1, 1), (7,), (2, 1025)])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_relu_equals_textbook(shape, threads, dtype):
    x = signed(shape, dtype=dtype)
    y_ref, mask_ref = F.relu_forward(x)
    y, mask = relu.relu_forward(x, threads)
    assert y.dtype == x.dtype and mask.dtype == bool
    assert_close(y, y_ref, "y", rtol=0, atol=0)
    np.testing.assert_array_equal(mask, mask_ref)
    dy = signed(shape, seed=1, dtype=dtype)
    assert_close(
        relu.relu_backward(dy, mask, threads), F.relu_backward(dy, mask_ref), "dx", rtol=0, atol=0
    )


def test_threaded_relu_keeps_the_textbooks_nan_and_inf_rules():
    """NaN in x propagates to y; inf in dy where the mask is False gives 0, not inf * 0 = nan,
    in whichever run it falls; a NaN in dy where the mask is True stays NaN."""
    x = signed((4, 1000))
    x[0, 3], x[3, 999] = np.nan, -np.inf
    y_ref, mask_ref = F.relu_forward(x)
    y, mask = relu.relu_forward(x, 3)
    np.testing.assert_array_equal(y, y_ref)  # nan == nan here
    np.testing.assert_array_equal(mask, mask_ref)
    dy = signed((4, 1000), seed=2)
    off = np.flatnonzero(~mask.reshape(-1))
    on = np.flatnonzero(mask.reshape(-1))
    dy.reshape(-1)[off[[0, -1]]] = np.inf
    dy.reshape(-1)[on[len(on) // 2]] = np.nan
    with np.errstate(invalid="ignore"):  # inf * 0, in both, before the exact where
        dx = relu.relu_backward(dy, mask, 3)
        np.testing.assert_array_equal(dx, F.relu_backward(dy, mask_ref))
    assert np.isnan(dx).sum() == 1 and not np.isinf(dx).any()


def test_planner_threads_only_large_contiguous_numpy_arrays(monkeypatch):
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 2)
    big = np.zeros(plan.RULES["threaded_elementwise_min_elements"], np.float32)
    assert plan.elementwise_threads(big) == plan.relu_threads(big) == 2
    assert plan.elementwise_threads(big[:-1]) == 1
    huge = np.broadcast_to(np.float32(0), (plan.RULES["threaded_relu_max_elements"] + 1,))
    assert plan.elementwise_threads(huge) == 2 and plan.relu_threads(huge) == 1  # pools only
    calls = []
    monkeypatch.setattr(relu, "relu_forward", lambda x, t: calls.append(t) or F.relu_forward(x))
    plan.relu_forward(big)
    plan.relu_forward(big.reshape(2, -1)[:, ::2])  # not contiguous: the textbook
    plan.relu_forward(big[:10])  # small: the textbook
    assert calls == [2]
    with pytest.raises(TypeError):
        plan.relu_forward(np.zeros(big.size, np.int32))  # the textbook's check, first


@pytest.mark.parametrize("engine", [True, False])
def test_relu_layer_on_threads_equals_the_textbook(monkeypatch, engine):
    monkeypatch.setattr(plan, "get_blas_threads", lambda: 3)
    monkeypatch.setitem(plan.RULES, "threaded_elementwise_min_elements", 1)
    x, dy = signed((2, 3, 10, 9)), signed((2, 3, 10, 9), seed=4)
    layer = ReLU()
    with fast.enabled() if engine else fast.disabled():
        y = layer(x)
        dx = layer.backward(dy)
    y_ref, mask = F.relu_forward(x)
    assert_close(y, y_ref, "y", rtol=0, atol=0)
    assert_close(dx, F.relu_backward(dy, mask), "dx", rtol=0, atol=0)
