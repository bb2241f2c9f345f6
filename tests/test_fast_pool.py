"""The engine's max-pool (2x2 windows in two pairwise steps; a backward that writes where windows
do not overlap) equals the textbook's on every configuration of test_pool.py: the same maxima,
the same winners, the same gradients."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_close
from tests.test_pool import CONFIGS, IDS, signed_distinct
from tinyfcn import functional as F
from tinyfcn.fast import plan


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("threads", [1, 2, 3])  # > 1: samples, or channels, shared out
def test_engine_pool_equals_textbook(xp, name, ties, threads, monkeypatch):
    monkeypatch.setattr(plan, "get_blas_threads", lambda: threads)
    monkeypatch.setitem(plan.RULES, "threaded_elementwise_min_elements", 1)
    shape, k, s, p, d, ceil = CONFIGS[name]
    x = signed_distinct(IDS.index(name), shape)
    if ties:  # after a ReLU most windows tie at 0
        x = np.maximum(np.round(x / x.max() * 2), 0)
    x = xp.asarray(x)
    y_ref, cache_ref = F.max_pool2d_forward(x, k, s, p, d, ceil)
    y, cache = plan.max_pool2d_forward(x, k, s, p, d, ceil)
    assert_close(y, y_ref, f"{name} output", rtol=0, atol=0)
    assert_close(cache.argmax, cache_ref.argmax, f"{name} winning taps", rtol=0, atol=0)
    dy = xp.asarray(np.random.default_rng(1).standard_normal(y.shape))
    dx_ref = F.max_pool2d_backward(dy, cache_ref)
    assert_close(plan.max_pool2d_backward(dy, cache), dx_ref, f"{name} dx", rtol=0, atol=0)


def test_engine_pool_rejects_a_wrong_gradient_shape(xp):
    y, cache = plan.max_pool2d_forward(xp.zeros((1, 1, 4, 4)), 2, 2)
    with pytest.raises(
        ValueError, match=r"max_pool2d backward expected dy of shape \(1, 1, 2, 2\)"
    ):
        plan.max_pool2d_backward(xp.zeros((1, 1, 2, 3)), cache)
