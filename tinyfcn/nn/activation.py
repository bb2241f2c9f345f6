"""ReLU, Dropout and Dropout2d layers (the masks are their caches)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fast
from ..fast import plan
from ..functional._checks import check_float_array
from ..functional.activation import (
    _check_p,
    dropout2d_forward,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
)
from . import init
from .module import Module


class ReLU(Module):
    """y = max(x, 0); dx = dy * (x > 0). While the engine is on, ``fast.plan`` spreads large
    arrays over CPU threads (the same numbers)."""

    def forward(self, x: Any) -> Any:
        y, mask = (plan.relu_forward if fast.is_enabled() else relu_forward)(x)
        self._save(mask)
        return y

    def backward(self, dy: Any) -> Any:
        mask = self._take_cache()
        return (plan.relu_backward if fast.is_enabled() else relu_backward)(dy, mask)


class Dropout(Module):
    """Zero each element with probability p, scale the rest by 1/(1-p); identity in eval mode.

    ``seed`` makes the masks reproducible; without it they come from ``tinyfcn.manual_seed``'s
    generator.
    """

    _forward_fn = staticmethod(dropout_forward)

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        self.p = _check_p(p, type(self).__name__)
        child = init.default_generator() if seed is None else np.random.default_rng(seed)
        self.rng = np.random.default_rng(child.integers(2**63)) if seed is None else child

    def forward(self, x: Any) -> Any:
        check_float_array(x, "input", type(self).__name__)
        if not self.training or self.p == 0.0:
            self._save((None,))  # identity: no mask
            return x
        y, mask = type(self)._forward_fn(x, self.p, self.rng)
        self._save((mask,))
        return y

    def backward(self, dy: Any) -> Any:
        (mask,) = self._take_cache()
        return dy if mask is None else dropout_backward(dy, mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Zero whole channels (N, C) with probability p: mask (N, C, 1, 1) broadcast over H, W."""

    _forward_fn = staticmethod(dropout2d_forward)
