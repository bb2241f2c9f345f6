"""The pieces of the sub-pixel transposed convolution: pixel shuffle against PyTorch's, its inverse
and adjoint, and the kernel rearrangement (the whole method is tested in test_conv_transpose.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import assert_close
from tinyfcn.fast.subpixel import (
    pixel_shuffle,
    pixel_unshuffle,
    subpixel_weight,
    supports_subpixel,
    weight_from_subpixel,
)


@pytest.mark.parametrize("s", [2, 3, 8])
def test_pixel_shuffle_matches_torch(xp, s):
    x = np.random.default_rng(s).standard_normal((2, 3 * s * s, 4, 5))
    y = pixel_shuffle(xp.asarray(x), (s, s))
    assert y.shape == (2, 3, 4 * s, 5 * s)
    assert_close(y, F.pixel_shuffle(torch.from_numpy(x), s), f"pixel_shuffle s={s}")
    assert_close(pixel_unshuffle(y, (s, s)), x, "unshuffle(shuffle(x)) == x", rtol=0, atol=0)


def test_pixel_unshuffle_is_the_adjoint_of_pixel_shuffle(xp):
    """A permutation's adjoint is its inverse: <shuffle(a), b> == <a, unshuffle(b)>."""
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((2, 2 * 2 * 3, 3, 4)))
    b = xp.asarray(rng.standard_normal((2, 2, 6, 12)))
    lhs = float((pixel_shuffle(a, (2, 3)) * b).sum())
    rhs = float((a * pixel_unshuffle(b, (2, 3))).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_subpixel_weight_round_trip_and_taps():
    """W'[(o, r, q), c, t, u] == weight[c, o, (m-1-t)*S + r, (m-1-u)*S + q], non-square."""
    (sh, sw), (mh, mw), Cin, Cout = (2, 3), (2, 3), 3, 4
    w = np.random.default_rng(1).standard_normal((Cin, Cout, mh * sh, mw * sw))
    w2 = subpixel_weight(w, (sh, sw))
    assert w2.shape == (Cout * sh * sw, Cin, mh, mw)
    w2_6 = w2.reshape(Cout, sh, sw, Cin, mh, mw)
    for o, r, q, c, t, u in [(0, 0, 0, 0, 0, 0), (3, 1, 2, 2, 1, 2), (1, 0, 1, 1, 0, 1)]:
        assert w2_6[o, r, q, c, t, u] == w[c, o, (mh - 1 - t) * sh + r, (mw - 1 - u) * sw + q]
    assert_close(weight_from_subpixel(w2, w.shape, (sh, sw)), w, "round trip", rtol=0, atol=0)


def test_supports_subpixel():
    assert supports_subpixel((16, 16), (8, 8), (1, 1))
    assert supports_subpixel((4, 3), (2, 1), (1, 1))
    assert not supports_subpixel((3, 3), (2, 2), (1, 1))
    assert not supports_subpixel((4, 4), (2, 2), (2, 1))
