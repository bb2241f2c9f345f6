"""MaxPool2d: the layer that halves FCN's resolution five times (224 -> 7, 1/32)."""

from __future__ import annotations

from typing import Any

from .. import fast
from .. import functional as F
from ..fast import plan
from ..functional._checks import pair
from .module import Module


class MaxPool2d(Module):
    """(N, C, H, W) -> (N, C, Ho, Wo), Ho = floor_or_ceil((H + 2P - D(K-1) - 1) / S) + 1.

    ``stride`` defaults to ``kernel_size``. Backward sends each gradient to the first maximum of
    its window (see ``tinyfcn.functional.pool`` for the tie rule); with the engine on, FCN's 2x2
    windows take ``fast.pool2x2`` (the same maxima and winners).
    """

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding, self.dilation = pair(padding, "padding"), pair(dilation, "dilation")
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Any) -> Any:
        args = (x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        engine = fast.is_enabled()
        y, cache = plan.max_pool2d_forward(*args) if engine else F.max_pool2d_forward(*args)
        self._save((engine, cache))
        return y

    def backward(self, dy: Any) -> Any:
        engine, cache = self._take_cache()
        if engine:
            return plan.max_pool2d_backward(dy, cache)
        return F.max_pool2d_backward(dy, cache)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )
