"""Crop: align a larger score map with a smaller one (FCN's skip branches and final output).

x (N, C, H, W), offset (oh, ow), size (h, w) -> y = x[:, :, oh:oh+h, ow:ow+w]
backward: dx = zeros(N, C, H, W) with dx[:, :, oh:oh+h, ow:ow+w] = dy   (zero-pad back)
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ._checks import check_nchw, pair


def crop_forward(x: Any, offset, size) -> Any:
    """The (h, w) window of ``x`` starting at ``offset``; a view of ``x``."""
    check_nchw(x, "crop")
    (oh, ow), (h, w) = pair(offset, "offset"), pair(size, "size")
    H, W = x.shape[2:]
    if oh < 0 or ow < 0 or oh + h > H or ow + w > W or h < 1 or w < 1:
        raise ValueError(
            f"crop: a {h}x{w} window at offset ({oh}, {ow}) does not fit in the input of "
            f"shape {tuple(x.shape)}"
        )
    return x[:, :, oh : oh + h, ow : ow + w]


def crop_backward(dy: Any, x_shape: tuple, offset) -> Any:
    """Zero-pad dy (N, C, h, w) back to x_shape at ``offset``: the adjoint of the crop."""
    xp = get_array_module(dy)
    oh, ow = pair(offset, "offset")
    h, w = dy.shape[2:]
    if tuple(dy.shape[:2]) != tuple(x_shape[:2]) or oh + h > x_shape[2] or ow + w > x_shape[3]:
        raise ValueError(
            f"crop backward: dy of shape {tuple(dy.shape)} at offset ({oh}, {ow}) does not fit "
            f"in the input shape {tuple(x_shape)}"
        )
    dx = xp.zeros(x_shape, dtype=dy.dtype)
    dx[:, :, oh : oh + h, ow : ow + w] = dy
    return dx
