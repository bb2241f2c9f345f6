"""FCN's max-pool (2x2 windows, stride 2) in two pairwise steps, and a backward that writes.

The textbook (``functional.pool``) takes the maximum over the k*k taps one at a time, remembering
the winner. For 2x2 windows the same maximum and the same winner come from two pairwise steps:
left vs right in each window row, then top vs bottom row. A strict ``<`` keeps the first maximum
in row-major order, the textbook's tie rule. Where windows do not overlap, every input pixel
belongs to one window, so the backward writes each tap's gradient instead of adding it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..functional.conv import _window_slices
from ..functional.pool import MaxPool2dCache, padded_hw


def max_pool_2x2(x_pad: Any):
    """(y, argmax) of 2x2 windows at stride 2: x_pad (N, C, 2Ho, 2Wo) -> (N, C, Ho, Wo) twice;
    argmax holds the winning tap 2 * row + column, as the textbook's."""
    xp = get_array_module(x_pad)
    left, right = x_pad[..., 0::2], x_pad[..., 1::2]
    row_max = xp.maximum(left, right)  # (N, C, 2Ho, Wo)
    right_wins = (left < right).view(np.uint8)
    top, bottom = row_max[:, :, 0::2], row_max[:, :, 1::2]
    y = xp.maximum(top, bottom)
    bottom_wins = top < bottom
    argmax = xp.where(bottom_wins, right_wins[:, :, 1::2], right_wins[:, :, 0::2])
    argmax += bottom_wins.view(np.uint8)  # + 2 * bottom_wins: the tap's row
    argmax += bottom_wins.view(np.uint8)
    return y, argmax


def max_pool2d_backward_disjoint(dy: Any, cache: MaxPool2dCache) -> Any:
    """The textbook backward for windows that do not overlap: each tap's share written, not
    added (``multiply(dy, won, out=...)``), into a frame nobody else writes."""
    xp = get_array_module(dy, cache.argmax)
    k, s, p, d = cache.args
    N, C, H, W = cache.x_shape
    out_hw = tuple(cache.argmax.shape[2:])
    Hp, Wp = padded_hw((H, W), p, k, s, d, out_hw)
    dx_pad = xp.zeros((N, C, Hp, Wp), dtype=dy.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, out_hw, s, d)
            xp.multiply(dy, cache.argmax == i * k[1] + j, out=dx_pad[:, :, rows, columns])
    if (Hp, Wp) == (H, W):
        return dx_pad
    return xp.ascontiguousarray(dx_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W])
