"""The engine's transposed convolution (subpixel: a stride-1 conv and a pixel shuffle, through the
planner's conv kernels) equals the textbook's adjoint, forward and every gradient, in float64 to
1e-12, on every configuration of test_conv_transpose.py where K is a multiple of S."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_same_as_textbook
from tests.test_conv_transpose import CASES, applies
from tinyfcn import fast
from tinyfcn import functional as F
from tinyfcn.fast import plan
from tinyfcn.nn import no_grad

SUBPIXEL = [name for name, c in CASES.items() if applies("subpixel", c.k, c.s, c.d)]


@pytest.mark.parametrize("name", SUBPIXEL)
def test_subpixel_equals_the_textbook_adjoint(xp, name):
    case = CASES[name]
    x, w, b = (None if a is None else xp.asarray(a) for a in case.arrays(seed=len(name)))
    y_ref, cache_ref = F.conv_transpose2d_forward(x, w, b, method="adjoint", **case.kwargs)
    dy = xp.asarray(np.random.default_rng(1).standard_normal(y_ref.shape))
    textbook = (y_ref,) + F.conv_transpose2d_backward(dy, cache_ref)
    y, cache = plan.conv_transpose2d_forward(x, w, b, method="subpixel", **case.kwargs)
    assert isinstance(cache, plan.SubpixelCache)
    engine = (y,) + plan.conv_transpose2d_backward(dy, cache)
    for what, a, t in zip(("output", "dx", "dw", "db"), engine, textbook, strict=True):
        if t is None:
            assert a is None
        else:
            assert_same_as_textbook(a, t, f"{name} subpixel {what}")
    with no_grad():  # forward only: the inner convolution in blocks, no cache
        y_only, none = plan.conv_transpose2d_forward(
            x, w, b, method="subpixel", need_backward=False, **case.kwargs
        )
    assert none.conv_cache is None
    assert_same_as_textbook(y_only, y_ref, f"{name} subpixel forward only")


def test_the_switch_maps_engine_methods_to_the_textbook(xp, device):
    """Under disabled() "auto" and "subpixel" run the textbook's adjoint; "zero_insertion" runs
    as itself in both modes."""
    from tinyfcn.nn import ConvTranspose2d

    x = xp.asarray(np.random.default_rng(0).standard_normal((1, 2, 3, 4)))
    for method, textbook in (("auto", "adjoint"), ("subpixel", "adjoint"), ("zero_insertion",) * 2):
        layer = ConvTranspose2d(2, 3, 4, stride=2, padding=1, method=method).double().to(device)
        with fast.disabled():
            layer(x)
            assert layer.__dict__["_cache"][1].method == textbook
        layer(x)
        engine_method = "subpixel" if method != "zero_insertion" else method
        assert layer.__dict__["_cache"][1].method == engine_method
