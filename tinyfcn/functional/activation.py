"""Element-wise layers: ReLU, and the two dropouts with the masks their backward passes reuse.

    relu:       y = max(x, 0)                 dx = dy * (x > 0)
    dropout:    y = x * m / (1 - p)           m ~ Bernoulli(1 - p) per element
    dropout2d:  y = x * m / (1 - p)           m ~ Bernoulli(1 - p) per (n, c), shared over H, W
                dx = dy * m / (1 - p)         (the same mask)

Masks are drawn from a NumPy ``Generator`` (seedable, and the same on CPU and GPU), then moved to
the input's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ._checks import check_float_array


def relu_forward(x: Any):
    """y = max(x, 0); the cache is the mask x > 0. Any shape."""
    check_float_array(x, "input", "relu")
    xp = get_array_module(x)
    mask = x > 0
    # maximum, not x * mask: -inf * 0 would be nan; NaN propagates, as in PyTorch
    return xp.maximum(x, x.dtype.type(0)), mask


def relu_backward(dy: Any, mask: Any):
    """dx = dy where the input was positive, else 0 (the subgradient at 0 is taken as 0).

    Computed as dy * mask, which NumPy vectorises well. Where dy holds inf or nan at a masked
    position the product is nan (inf * 0), not 0: only then, seen as a nan in the result, the
    exact ``where`` runs instead.
    """
    xp = get_array_module(dy, mask)
    dx = dy * mask
    if xp.isnan(dx).any():
        return xp.where(mask, dy, dy.dtype.type(0))
    return dx


def _check_p(p: float, op: str) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: dropout probability must be in [0, 1), got {p}")
    return float(p)


def dropout_mask(shape: tuple, p: float, rng: np.random.Generator, like: Any, op: str = "dropout"):
    """The scaled keep-mask ``m / (1 - p)`` of ``shape``, on the device and dtype of ``like``."""
    p = _check_p(p, op)
    keep = (rng.random(shape) >= p).astype(like.dtype) / np.asarray(1.0 - p, like.dtype)
    return get_array_module(like).asarray(keep)


def dropout_forward(x: Any, p: float, rng: np.random.Generator):
    """y = x * mask, mask zero with probability p and 1/(1-p) otherwise, per element."""
    check_float_array(x, "input", "dropout")
    mask = dropout_mask(x.shape, p, rng, x)
    return x * mask, mask


def dropout2d_forward(x: Any, p: float, rng: np.random.Generator):
    """Whole channels dropped: x (N, C, H, W), mask (N, C, 1, 1) broadcast over H, W."""
    check_float_array(x, "input", "dropout2d")
    if x.ndim != 4:
        raise ValueError(f"dropout2d expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}")
    mask = dropout_mask(x.shape[:2] + (1, 1), p, rng, x, "dropout2d")
    return x * mask, mask


def dropout_backward(dy: Any, mask: Any):
    """dx = dy * mask (the forward mask, already scaled by 1/(1-p))."""
    get_array_module(dy, mask)
    return dy * mask
