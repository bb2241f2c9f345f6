"""FCN's max-pool (2x2 windows, stride 2) in two pairwise steps, and a backward that writes.

The textbook (``functional.pool``) takes the maximum over the k*k taps one at a time, remembering
the winner. For 2x2 windows the same maximum and the same winner come from two pairwise steps:
left vs right in each window row, then top vs bottom row. A strict ``<`` keeps the first maximum
in row-major order, the textbook's tie rule. Where windows do not overlap, every input pixel
belongs to one window, so the backward writes each tap's gradient instead of adding it. Both run
on several threads where the planner says (``relu.py`` says why), each on its own samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..functional.conv import _window_slices
from ..functional.pool import MaxPool2dCache, padded_hw
from .shares import run_shares, runs


def max_pool_2x2(x_pad: Any, threads: int = 1):
    """(y, argmax) of 2x2 windows at stride 2: x_pad (N, C, 2Ho, 2Wo) -> (N, C, Ho, Wo) twice;
    argmax holds the winning tap 2 * row + column, as the textbook's. ``threads`` > 1: the
    samples (or, for fewer samples, the channels) shared out among that many threads."""
    xp = get_array_module(x_pad)
    N, C, H2, W2 = x_pad.shape
    y = xp.empty((N, C, H2 // 2, W2 // 2), dtype=x_pad.dtype)
    argmax = xp.empty(y.shape, dtype=np.uint8)
    parts = _parts(N, C, threads)

    def pool(share: int, indices: range) -> None:
        for i in indices:
            _pool_into(x_pad[parts[i]], y[parts[i]], argmax[parts[i]])

    run_shares(pool, len(parts), threads)
    return y, argmax


def _parts(N: int, C: int, threads: int) -> list[tuple]:
    """Index tuples cutting (N, C, ...) into ``threads`` runs of samples, or of channels."""
    if threads <= 1:
        return [(slice(None),)]
    if N >= threads:
        return [(r,) for r in runs(N, threads)]
    return [(slice(None), r) for r in runs(C, threads)]


def _pool_into(x_pad: Any, y: Any, argmax: Any) -> None:
    """The two pairwise steps, into y and argmax."""
    xp = get_array_module(x_pad)
    left, right = x_pad[..., 0::2], x_pad[..., 1::2]
    row_max = xp.maximum(left, right)  # (N, C, 2Ho, Wo)
    right_wins = (left < right).view(np.uint8)
    top, bottom = row_max[:, :, 0::2], row_max[:, :, 1::2]
    xp.maximum(top, bottom, out=y)
    bottom_wins = top < bottom
    argmax[...] = xp.where(bottom_wins, right_wins[:, :, 1::2], right_wins[:, :, 0::2])
    argmax += bottom_wins.view(np.uint8)  # + 2 * bottom_wins: the tap's row
    argmax += bottom_wins.view(np.uint8)


def max_pool2d_backward_disjoint(dy: Any, cache: MaxPool2dCache, threads: int = 1) -> Any:
    """The textbook backward for windows that do not overlap: each tap's share written, not
    added (``multiply(dy, won, out=...)``), into a frame nobody else writes; ``threads`` > 1:
    shared out as the forward."""
    xp = get_array_module(dy, cache.argmax)
    k, s, p, d = cache.args
    N, C, H, W = cache.x_shape
    out_hw = tuple(cache.argmax.shape[2:])
    Hp, Wp = padded_hw((H, W), p, k, s, d, out_hw)
    dx_pad = xp.zeros((N, C, Hp, Wp), dtype=dy.dtype)
    parts = _parts(N, C, threads)

    def unpool(share: int, indices: range) -> None:
        for n in indices:
            dy_n, argmax_n, dx_n = dy[parts[n]], cache.argmax[parts[n]], dx_pad[parts[n]]
            for i in range(k[0]):
                for j in range(k[1]):
                    rows, columns = _window_slices(i, j, out_hw, s, d)
                    xp.multiply(dy_n, argmax_n == i * k[1] + j, out=dx_n[:, :, rows, columns])

    run_shares(unpool, len(parts), threads)
    if (Hp, Wp) == (H, W):
        return dx_pad
    return xp.ascontiguousarray(dx_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W])
