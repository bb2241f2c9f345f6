"""2-d max pooling with padding, dilation and ``ceil_mode``, and its backward pass.

Shapes::

    x (N, C, H, W) -> y (N, C, Ho, Wo)
    Ho = floor_or_ceil((H + 2P - D(K-1) - 1) / S) + 1
    with ceil_mode, the last window must start inside the input or its left padding:
    if (Ho - 1) * S >= H + P then Ho -= 1                       (PyTorch's and Caffe's rule)

Each output is the maximum of its window; the padding counts as -inf. The backward pass routes
each output gradient to the position of its window's maximum. Tie rule: the *first* maximum in
row-major order within the window wins (as ``argmax``); a window holding NaN outputs NaN and routes
its gradient to its last NaN (both as PyTorch); where windows overlap, a pixel that is the maximum
of several windows receives the sum of their gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module
from ._checks import check_nchw
from .conv import _window_slices, normalize_conv_args


def pool_output_size(
    size: int,
    kernel: int,
    stride: int,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length along one axis, with PyTorch's ceil_mode rule (see module docstring)."""
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - span
    out = (-(-numerator // stride) if ceil_mode else numerator // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pool_args(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    check_nchw(x, op)
    k, s, p, d = normalize_conv_args(
        kernel_size, kernel_size if stride is None else stride, padding, dilation
    )
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half of kernel_size {k}")
    H, W = x.shape[2:]
    out = []
    for a in range(2):
        span = d[a] * (k[a] - 1) + 1
        if span > (H, W)[a] + 2 * p[a]:
            raise ValueError(
                f"{op}: kernel {k} with dilation {d} spans {span} pixels along {'HW'[a]}, larger "
                f"than the padded input ({H}x{W} plus padding {p}); shape {tuple(x.shape)}"
            )
        out.append(pool_output_size((H, W)[a], k[a], s[a], p[a], d[a], ceil_mode))
    return k, s, p, d, (out[0], out[1])


def _padded_with(x, p, k, s, d, out_hw, value):
    """Pad by P on the top/left and by whatever the last (ceil-mode) window needs bottom/right."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    need = [(out_hw[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 for a in range(2)]
    Hp, Wp = max(need[0], H + 2 * p[0]), max(need[1], W + 2 * p[1])
    if (Hp, Wp) == (H, W):
        return x
    out = xp.full((N, C, Hp, Wp), value, dtype=x.dtype)
    out[:, :, p[0] : p[0] + H, p[1] : p[1] + W] = x
    return out


@dataclass
class MaxPool2dCache:
    argmax: Any  # (N, C, Ho, Wo): index kh_i * kw + kw_j of the winning tap in each window
    x_shape: tuple
    args: tuple  # (kernel, stride, padding, dilation) as pairs


def max_pool2d_forward(
    x: Any, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False
):
    """y = max over each window, and the cache (the winning tap of every window).

    One pass per kernel tap over strided views: ``y = maximum(y, tap)``, remembering the tap
    where a strictly greater value appears (so the first maximum wins ties).
    """
    xp = get_array_module(x)
    k, s, p, d, out_hw = _pool_args(
        "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode
    )
    x_pad = _padded_with(x, p, k, s, d, out_hw, -np.inf)
    if k == s == (2, 2) and d == (1, 1):
        y, argmax = _max_pool_2x2(x_pad[:, :, : 2 * out_hw[0], : 2 * out_hw[1]])
    else:
        taps = k[0] * k[1]
        argmax = xp.zeros(x.shape[:2] + out_hw, dtype=np.uint8 if taps <= 256 else np.int32)
        y = None
        for i in range(k[0]):
            for j in range(k[1]):
                rows, columns = _window_slices(i, j, out_hw, s, d)
                tap = x_pad[:, :, rows, columns]
                if y is None:
                    y = tap.copy()
                    continue
                better = tap > y
                xp.copyto(argmax, i * k[1] + j, where=better)
                xp.maximum(y, tap, out=y)  # maximum (not where): NaN propagates like PyTorch
    if xp.isnan(y).any():  # rare: route each NaN window's gradient to its last NaN, as PyTorch
        for i in range(k[0]):
            for j in range(k[1]):
                rows, columns = _window_slices(i, j, out_hw, s, d)
                tap = x_pad[:, :, rows, columns]
                xp.copyto(argmax, i * k[1] + j, where=xp.isnan(tap))
    return y, MaxPool2dCache(argmax, tuple(x.shape), (k, s, p, d))


def _max_pool_2x2(x: Any):
    """FCN's pool (2x2 windows, stride 2) in two pairwise steps: (y, argmax), x (N, C, 2Ho, 2Wo).

    The maximum of each window row first (left vs right), then of the two rows (top vs bottom);
    a strict ``<`` keeps the first maximum in row-major order, as the general loop does. Half the
    time of four strided taps (conv1_2's output in the educational model: 11.5 -> 5.3 ms).
    """
    xp = get_array_module(x)
    left, right = x[..., 0::2], x[..., 1::2]
    row_max = xp.maximum(left, right)  # (N, C, 2Ho, Wo)
    right_wins = (left < right).view(np.uint8)
    top, bottom = row_max[:, :, 0::2], row_max[:, :, 1::2]
    y = xp.maximum(top, bottom)
    bottom_wins = top < bottom
    argmax = xp.where(bottom_wins, right_wins[:, :, 1::2], right_wins[:, :, 0::2])
    argmax += bottom_wins.view(np.uint8)  # tap index 2 * row + column
    argmax += bottom_wins.view(np.uint8)
    return y, argmax


def max_pool2d(x: Any, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
    """Forward only, as ``torch.nn.functional.max_pool2d``."""
    return max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)[0]


def max_pool2d_backward(dy: Any, cache: MaxPool2dCache):
    """dx: each dy[n, c, oh, ow] added to the input pixel that won its window.

    The mirror of the forward loop: per kernel tap, add ``dy`` where that tap won (a col2im of
    the one-hot winner mask).
    """
    xp = get_array_module(dy, cache.argmax)
    k, s, p, d = cache.args
    N, C, H, W = cache.x_shape
    out_hw = tuple(cache.argmax.shape[2:])
    if tuple(dy.shape) != (N, C) + out_hw:
        raise ValueError(
            f"max_pool2d backward expected dy of shape {(N, C) + out_hw}, got {tuple(dy.shape)}"
        )
    need = [(out_hw[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 for a in range(2)]
    Hp, Wp = max(need[0], H + 2 * p[0]), max(need[1], W + 2 * p[1])
    dx_pad = xp.zeros((N, C, Hp, Wp), dtype=dy.dtype)
    # windows that do not overlap (FCN's 2x2 stride 2) touch each pixel once: write, don't add
    disjoint = all(s[a] >= d[a] * (k[a] - 1) + 1 for a in range(2))
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, out_hw, s, d)
            won = cache.argmax == i * k[1] + j
            if disjoint:
                xp.multiply(dy, won, out=dx_pad[:, :, rows, columns])
            else:
                dx_pad[:, :, rows, columns] += dy * won
    if (Hp, Wp) == (H, W):
        return dx_pad
    return xp.ascontiguousarray(dx_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W])
