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
from .conv import _window_slices, check_grad_shape, normalize_conv_args


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


def check_pool_args(op, x, kernel_size, stride, padding, dilation, ceil_mode):
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


def padded_hw(hw, p, k, s, d, out_hw) -> tuple[int, int]:
    """The padded frame: P on the top/left, and bottom/right whatever the last (ceil-mode)
    window needs beyond P."""
    need = [(out_hw[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 for a in range(2)]
    return max(need[0], hw[0] + 2 * p[0]), max(need[1], hw[1] + 2 * p[1])


def pad_for_windows(x, p, k, s, d, out_hw, value):
    """``x`` in its padded frame (see ``padded_hw``), the padding filled with ``value``."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Hp, Wp = padded_hw((H, W), p, k, s, d, out_hw)
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
    k, s, p, d, out_hw = check_pool_args(
        "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode
    )
    x_pad = pad_for_windows(x, p, k, s, d, out_hw, -np.inf)
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
    route_nan_windows(y, argmax, x_pad, k, s, d)
    return y, MaxPool2dCache(argmax, tuple(x.shape), (k, s, p, d))


def route_nan_windows(y: Any, argmax: Any, x_pad: Any, k, s, d) -> None:
    """Where a window holds NaN (its output is NaN), point ``argmax`` at its last NaN, as PyTorch.

    Rare, so checked once on the output: a NaN-free forward pays one ``isnan`` pass.
    """
    xp = get_array_module(y)
    if not xp.isnan(y).any():
        return
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, tuple(y.shape[2:]), s, d)
            xp.copyto(argmax, i * k[1] + j, where=xp.isnan(x_pad[:, :, rows, columns]))


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
    check_grad_shape("max_pool2d", dy, (N, C) + out_hw)
    Hp, Wp = padded_hw((H, W), p, k, s, d, out_hw)
    dx_pad = xp.zeros((N, C, Hp, Wp), dtype=dy.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            rows, columns = _window_slices(i, j, out_hw, s, d)
            dx_pad[:, :, rows, columns] += dy * (cache.argmax == i * k[1] + j)
    if (Hp, Wp) == (H, W):
        return dx_pad
    return xp.ascontiguousarray(dx_pad[:, :, p[0] : p[0] + H, p[1] : p[1] + W])
